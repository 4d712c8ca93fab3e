-- tenant-secrets functions: secret lifecycle (rollback, restore, destroy, destroy versions, purge of
-- expired deletions, metadata). Same conventions as 50_secrets.sql: SECURITY DEFINER entry points,
-- statuses instead of raised errors, one audit record per operation, the key bundle authorised first.
-- Writers take the secret row lock (no tenant lock: see 40_tenant_keys.sql).

-- Rollback (HashiCorp Vault KV v2 semantics): the old version's value is decrypted and sealed again
-- under the tenant's active data key as a new version (its tag binds the version number).
-- p_options: if_version, max_versions, grace_seconds (as tenant_secret_write).
CREATE FUNCTION :TS.tenant_secret_rollback(
  p_tenant_id text, p_key_name text, p_version integer, p_bundle bytea,
  p_options jsonb DEFAULT '{}'::jsonb, p_ctx jsonb DEFAULT '{}'::jsonb)
RETURNS TABLE (status text, version integer, detail text)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = '' SET plan_cache_mode = force_generic_plan AS $$
#variable_conflict use_column
DECLARE
  v_bad text := :TS._ts_check_call(p_tenant_id, p_key_name, true, p_bundle, true, p_ctx);
  v_if bigint;
  v_max bigint;
  v_grace bigint;
  v_actor text := :TS._ts_ctx_actor(:TS._ts_ctx_safe(p_ctx));
  v_key record;
  v_row :TS.tenant_secrets%ROWTYPE;
  v_old record;
  v_dek bytea;
  v_plain bytea;
  v_status text;
  v_new integer;
  v_sealed bytea;
  v_destroyed integer[];
BEGIN
  IF v_bad IS NULL AND (p_version IS NULL OR p_version < 1) THEN v_bad := 'version'; END IF;
  IF v_bad IS NULL AND pg_catalog.jsonb_typeof(p_options) IS DISTINCT FROM 'object' THEN v_bad := 'options'; END IF;
  IF v_bad IS NULL THEN
    v_if := :TS._ts_json_int(p_options, 'if_version', 1, 999999999);
    v_max := COALESCE(:TS._ts_json_int(p_options, 'max_versions', 2, 1000), 10);
    v_grace := COALESCE(:TS._ts_json_int(p_options, 'grace_seconds', 0, 31536000), 86400);
    v_bad := CASE WHEN v_if = -9223372036854775808 THEN 'if_version'
                  WHEN v_max = -9223372036854775808 THEN 'max_versions'
                  WHEN v_grace = -9223372036854775808 THEN 'grace_seconds' END;
  END IF;
  IF v_bad IS NOT NULL THEN
    PERFORM :TS._ts_audit_invalid(p_tenant_id, 'secret.rolled_back', p_key_name, v_bad, p_ctx);
    RETURN QUERY SELECT 'invalid_input'::text, NULL::integer, v_bad;
    RETURN;
  END IF;

  SELECT * INTO v_key FROM :TS._ts_authorize(p_tenant_id, p_bundle);
  IF v_key.status <> 'ok' THEN
    PERFORM :TS._ts_audit(p_tenant_id, 'secret.rolled_back', p_key_name, NULL, 'failure',
      pg_catalog.upper(CASE WHEN v_key.status = 'no_key' THEN 'not_found' ELSE :TS._ts_auth_failure(v_key.status) END), p_ctx,
      pg_catalog.jsonb_strip_nulls(pg_catalog.jsonb_build_object('from_version', p_version,
        'master_key_id', CASE WHEN v_key.status = 'unknown_master_key' THEN v_key.master_key_id END)));
    RETURN QUERY SELECT CASE WHEN v_key.status = 'no_key' THEN 'not_found' ELSE :TS._ts_auth_failure(v_key.status) END,
      NULL::integer, CASE WHEN v_key.status = 'unknown_master_key' THEN v_key.master_key_id END;
    RETURN;
  END IF;

  SELECT * INTO v_row FROM :TS.tenant_secrets s WHERE s.tenant_id = p_tenant_id AND s.key_name = p_key_name FOR UPDATE;
  IF NOT FOUND OR v_row.deleted_at IS NOT NULL THEN
    PERFORM :TS._ts_audit(p_tenant_id, 'secret.rolled_back', p_key_name, NULL, 'failure', 'NOT_FOUND', p_ctx,
      pg_catalog.jsonb_build_object('from_version', p_version));
    RETURN QUERY SELECT 'not_found'::text, NULL::integer, NULL::text;
    RETURN;
  END IF;
  IF v_if IS NOT NULL AND v_if <> v_row.current_version THEN
    PERFORM :TS._ts_audit(p_tenant_id, 'secret.rolled_back', p_key_name, v_row.current_version, 'failure', 'CONFLICT',
      p_ctx, pg_catalog.jsonb_build_object('from_version', p_version, 'expected_version', v_if));
    RETURN QUERY SELECT 'conflict'::text, v_row.current_version, NULL::text;
    RETURN;
  END IF;

  SELECT tv.state, tv.encrypted_value AS blob, tv.key_version, k.wrapped_key, k.master_key_id
    INTO v_old
    FROM :TS.tenant_secret_versions tv
    LEFT JOIN :TS.tenant_secret_keys k ON k.tenant_id = tv.tenant_id AND k.version = tv.key_version
   WHERE tv.tenant_id = p_tenant_id AND tv.key_name = p_key_name AND tv.version = p_version;
  IF v_old.state IS DISTINCT FROM 'enabled' THEN
    v_status := 'not_found';
  ELSE
    v_dek := CASE WHEN v_old.key_version = v_key.key_version THEN v_key.dek
                  ELSE :TS._ts_unwrap_dek(p_tenant_id, v_old.key_version, v_old.master_key_id, v_old.wrapped_key,
                                          :TS._ts_bundle_kek_for(p_bundle, v_old.master_key_id)) END;
    IF v_dek IS NULL THEN
      v_status := CASE WHEN v_old.master_key_id IS NOT NULL AND :TS._ts_bundle_kek_for(p_bundle, v_old.master_key_id) IS NULL
                       THEN 'unknown_master_key' ELSE 'integrity' END;
    ELSE
      v_plain := :TS._ts_open_secret(v_old.blob, v_dek, p_tenant_id, p_key_name, p_version, v_old.key_version);
      v_status := CASE WHEN v_plain IS NULL THEN 'integrity' ELSE 'ok' END;
    END IF;
  END IF;
  IF v_status <> 'ok' THEN
    PERFORM :TS._ts_audit(p_tenant_id, 'secret.rolled_back', p_key_name, v_row.current_version, 'failure',
      pg_catalog.upper(v_status), p_ctx, pg_catalog.jsonb_strip_nulls(pg_catalog.jsonb_build_object(
        'from_version', p_version,
        'master_key_id', CASE WHEN v_status = 'unknown_master_key' THEN v_old.master_key_id END)));
    RETURN QUERY SELECT v_status, v_row.current_version,
      CASE WHEN v_status = 'unknown_master_key' THEN v_old.master_key_id END;
    RETURN;
  END IF;

  v_new := v_row.current_version + 1;
  v_sealed := :TS._ts_seal_secret(v_plain, v_key.dek, p_tenant_id, p_key_name, v_new, v_key.key_version);
  v_destroyed := :TS._ts_store_version(p_tenant_id, p_key_name, v_sealed, v_new, v_key.key_version, 'rollback',
                                        v_actor, v_max::integer);
  UPDATE :TS.tenant_secrets s SET
      current_version = v_new, encrypted_value = v_sealed, key_version = v_key.key_version,
      previous_version = v_row.current_version,
      previous_expires_at = pg_catalog.now() + pg_catalog.make_interval(secs => v_grace),
      updated_at = pg_catalog.now(), updated_by = v_actor
   WHERE s.tenant_id = p_tenant_id AND s.key_name = p_key_name;
  PERFORM :TS._ts_audit(p_tenant_id, 'secret.rolled_back', p_key_name, v_new, 'success', NULL, p_ctx,
    pg_catalog.jsonb_strip_nulls(pg_catalog.jsonb_build_object(
      'from_version', p_version,
      'previous_version', v_row.current_version,
      'destroyed_versions', pg_catalog.to_jsonb(v_destroyed))));
  RETURN QUERY SELECT 'ok'::text, v_new, NULL::text;
END
$$;

-- Undo a soft delete while its recovery window lasts.
CREATE FUNCTION :TS.tenant_secret_restore(p_tenant_id text, p_key_name text, p_bundle bytea, p_ctx jsonb DEFAULT '{}'::jsonb)
RETURNS TABLE (status text, version integer)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = '' SET plan_cache_mode = force_generic_plan AS $$
#variable_conflict use_column
DECLARE
  v_bad text := :TS._ts_check_call(p_tenant_id, p_key_name, true, p_bundle, true, p_ctx);
  v_auth record;
  v_row :TS.tenant_secrets%ROWTYPE;
BEGIN
  IF v_bad IS NOT NULL THEN
    PERFORM :TS._ts_audit_invalid(p_tenant_id, 'secret.restored', p_key_name, v_bad, p_ctx);
    RETURN QUERY SELECT 'invalid_input'::text, NULL::integer;
    RETURN;
  END IF;
  SELECT * INTO v_auth FROM :TS._ts_authorize(p_tenant_id, p_bundle);
  IF NOT :TS._ts_may_act(v_auth.status) THEN
    PERFORM :TS._ts_audit(p_tenant_id, 'secret.restored', p_key_name, NULL, 'failure', pg_catalog.upper(:TS._ts_auth_failure(v_auth.status)), p_ctx, NULL);
    RETURN QUERY SELECT :TS._ts_auth_failure(v_auth.status), NULL::integer;
    RETURN;
  END IF;
  SELECT * INTO v_row FROM :TS.tenant_secrets s WHERE s.tenant_id = p_tenant_id AND s.key_name = p_key_name FOR UPDATE;
  -- Not deleted, or its window has passed (it is waiting for purge_deleted): nothing to restore.
  IF NOT FOUND OR v_row.deleted_at IS NULL OR v_row.purge_after <= pg_catalog.now() THEN
    PERFORM :TS._ts_audit(p_tenant_id, 'secret.restored', p_key_name, v_row.current_version, 'failure', 'NOT_FOUND',
      p_ctx, pg_catalog.jsonb_strip_nulls(pg_catalog.jsonb_build_object(
        'reason', CASE WHEN v_row.tenant_id IS NULL THEN 'missing'
                       WHEN v_row.deleted_at IS NULL THEN 'not_deleted' ELSE 'window_passed' END)));
    RETURN QUERY SELECT 'not_found'::text, NULL::integer;
    RETURN;
  END IF;
  UPDATE :TS.tenant_secrets s
     SET deleted_at = NULL, purge_after = NULL, updated_at = pg_catalog.now(), updated_by = :TS._ts_ctx_actor(p_ctx)
   WHERE s.tenant_id = p_tenant_id AND s.key_name = p_key_name;
  PERFORM :TS._ts_audit(p_tenant_id, 'secret.restored', p_key_name, v_row.current_version, 'success', NULL, p_ctx,
    pg_catalog.jsonb_build_object('deleted_at', v_row.deleted_at));
  RETURN QUERY SELECT 'ok'::text, v_row.current_version;
END
$$;

-- Immediate and irreversible removal of a secret (live or soft-deleted) and every version.
-- versions_destroyed: versions whose ciphertext this call removed; version_rows: all version rows removed.
CREATE FUNCTION :TS.tenant_secret_destroy(p_tenant_id text, p_key_name text, p_bundle bytea, p_ctx jsonb DEFAULT '{}'::jsonb)
RETURNS TABLE (status text, versions_destroyed integer, version_rows integer)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = '' SET plan_cache_mode = force_generic_plan AS $$
#variable_conflict use_column
DECLARE
  v_bad text := :TS._ts_check_call(p_tenant_id, p_key_name, true, p_bundle, true, p_ctx);
  v_auth record;
  v_row :TS.tenant_secrets%ROWTYPE;
  v_live integer;
  v_total integer;
BEGIN
  IF v_bad IS NOT NULL THEN
    PERFORM :TS._ts_audit_invalid(p_tenant_id, 'secret.destroyed', p_key_name, v_bad, p_ctx);
    RETURN QUERY SELECT 'invalid_input'::text, NULL::integer, NULL::integer;
    RETURN;
  END IF;
  SELECT * INTO v_auth FROM :TS._ts_authorize(p_tenant_id, p_bundle);
  IF NOT :TS._ts_may_act(v_auth.status) THEN
    PERFORM :TS._ts_audit(p_tenant_id, 'secret.destroyed', p_key_name, NULL, 'failure', pg_catalog.upper(:TS._ts_auth_failure(v_auth.status)), p_ctx, NULL);
    RETURN QUERY SELECT :TS._ts_auth_failure(v_auth.status), NULL::integer, NULL::integer;
    RETURN;
  END IF;
  SELECT * INTO v_row FROM :TS.tenant_secrets s WHERE s.tenant_id = p_tenant_id AND s.key_name = p_key_name FOR UPDATE;
  IF NOT FOUND THEN
    PERFORM :TS._ts_audit(p_tenant_id, 'secret.destroyed', p_key_name, NULL, 'failure', 'NOT_FOUND', p_ctx, NULL);
    RETURN QUERY SELECT 'not_found'::text, NULL::integer, NULL::integer;
    RETURN;
  END IF;
  SELECT pg_catalog.count(*) FILTER (WHERE tv.encrypted_value IS NOT NULL), pg_catalog.count(*)
    INTO v_live, v_total
    FROM :TS.tenant_secret_versions tv WHERE tv.tenant_id = p_tenant_id AND tv.key_name = p_key_name;
  DELETE FROM :TS.tenant_secrets s WHERE s.tenant_id = p_tenant_id AND s.key_name = p_key_name;  -- versions cascade
  PERFORM :TS._ts_audit(p_tenant_id, 'secret.destroyed', p_key_name, v_row.current_version, 'success', NULL, p_ctx,
    pg_catalog.jsonb_build_object('versions_destroyed', v_live, 'version_rows', v_total,
                                  'was_deleted', v_row.deleted_at IS NOT NULL));
  RETURN QUERY SELECT 'ok'::text, v_live, v_total;
END
$$;

-- Destroy the ciphertext of specific non-current versions (metadata kept). The current version is
-- refused (invalid_input, detail 'current_version'); missing or already destroyed versions are ignored.
CREATE FUNCTION :TS.tenant_secret_destroy_versions(
  p_tenant_id text, p_key_name text, p_versions integer[], p_bundle bytea, p_ctx jsonb DEFAULT '{}'::jsonb)
RETURNS TABLE (status text, destroyed integer[], detail text)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = '' SET plan_cache_mode = force_generic_plan AS $$
#variable_conflict use_column
DECLARE
  v_bad text := :TS._ts_check_call(p_tenant_id, p_key_name, true, p_bundle, true, p_ctx);
  v_auth record;
  v_row :TS.tenant_secrets%ROWTYPE;
  v_gone integer[];
BEGIN
  IF v_bad IS NULL AND (p_versions IS NULL OR pg_catalog.cardinality(p_versions) NOT BETWEEN 1 AND 100
      OR EXISTS (SELECT 1 FROM pg_catalog.unnest(p_versions) x(v) WHERE x.v IS NULL OR x.v < 1)) THEN
    v_bad := 'versions';
  END IF;
  IF v_bad IS NOT NULL THEN
    PERFORM :TS._ts_audit_invalid(p_tenant_id, 'secret.versions_destroyed', p_key_name, v_bad, p_ctx);
    RETURN QUERY SELECT 'invalid_input'::text, NULL::integer[], v_bad;
    RETURN;
  END IF;
  SELECT * INTO v_auth FROM :TS._ts_authorize(p_tenant_id, p_bundle);
  IF NOT :TS._ts_may_act(v_auth.status) THEN
    PERFORM :TS._ts_audit(p_tenant_id, 'secret.versions_destroyed', p_key_name, NULL, 'failure', pg_catalog.upper(:TS._ts_auth_failure(v_auth.status)), p_ctx, NULL);
    RETURN QUERY SELECT :TS._ts_auth_failure(v_auth.status), NULL::integer[], NULL::text;
    RETURN;
  END IF;
  SELECT * INTO v_row FROM :TS.tenant_secrets s WHERE s.tenant_id = p_tenant_id AND s.key_name = p_key_name FOR UPDATE;
  IF NOT FOUND OR v_row.deleted_at IS NOT NULL THEN
    PERFORM :TS._ts_audit(p_tenant_id, 'secret.versions_destroyed', p_key_name, NULL, 'failure', 'NOT_FOUND', p_ctx,
      pg_catalog.jsonb_build_object('requested', pg_catalog.to_jsonb(p_versions)));
    RETURN QUERY SELECT 'not_found'::text, NULL::integer[], NULL::text;
    RETURN;
  END IF;
  IF v_row.current_version = ANY (p_versions) THEN
    PERFORM :TS._ts_audit(p_tenant_id, 'secret.versions_destroyed', p_key_name, v_row.current_version, 'failure',
      'INVALID_INPUT', p_ctx, pg_catalog.jsonb_build_object('field', 'versions', 'reason', 'current_version',
                                                            'requested', pg_catalog.to_jsonb(p_versions)));
    RETURN QUERY SELECT 'invalid_input'::text, NULL::integer[], 'current_version'::text;
    RETURN;
  END IF;
  WITH gone AS (
    UPDATE :TS.tenant_secret_versions tv
       SET encrypted_value = NULL, key_version = NULL, state = 'destroyed', destroyed_at = pg_catalog.now()
     WHERE tv.tenant_id = p_tenant_id AND tv.key_name = p_key_name AND tv.state = 'enabled'
       AND tv.version = ANY (p_versions)
    RETURNING tv.version)
  SELECT COALESCE(pg_catalog.array_agg(g.version ORDER BY g.version), '{}'::integer[]) INTO v_gone FROM gone g;
  IF v_row.previous_version = ANY (v_gone) THEN
    UPDATE :TS.tenant_secrets s SET previous_version = NULL, previous_expires_at = NULL
     WHERE s.tenant_id = p_tenant_id AND s.key_name = p_key_name;
  END IF;
  PERFORM :TS._ts_audit(p_tenant_id, 'secret.versions_destroyed', p_key_name, v_row.current_version, 'success', NULL,
    p_ctx, pg_catalog.jsonb_build_object('requested', pg_catalog.to_jsonb(p_versions),
                                         'destroyed_versions', pg_catalog.to_jsonb(v_gone)));
  RETURN QUERY SELECT 'ok'::text, v_gone, NULL::text;
END
$$;

-- Destroys every soft-deleted secret whose recovery window has passed (of one tenant when
-- p_tenant_id is given), each with a secret.purged record in its tenant's chain. An operator task:
-- it needs no key bundle (the secrets were deleted by someone who had one, and the window passed).
-- Rows are taken in (tenant, name) order with SKIP LOCKED, so concurrent purges split the work.
CREATE FUNCTION :TS.tenant_secret_purge_deleted(p_tenant_id text DEFAULT NULL, p_ctx jsonb DEFAULT '{}'::jsonb)
RETURNS TABLE (status text, purged integer)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = '' SET plan_cache_mode = force_generic_plan AS $$
#variable_conflict use_column
DECLARE
  r record;
  v_count integer := 0;
  v_live integer;
BEGIN
  PERFORM :TS._ts_guard(true);
  PERFORM :TS._ts_require_operator();
  IF :TS._ts_ctx_invalid(p_ctx) IS NOT NULL OR (p_tenant_id IS NOT NULL AND :TS._ts_invalid_input(p_tenant_id, NULL) IS NOT NULL) THEN
    PERFORM :TS._ts_audit(NULL, 'secret.purged', NULL, NULL, 'failure', 'INVALID_INPUT', :TS._ts_ctx_safe(p_ctx),
      pg_catalog.jsonb_build_object('field', CASE WHEN :TS._ts_ctx_invalid(p_ctx) IS NOT NULL THEN 'context' ELSE 'tenant_id' END));
    RETURN QUERY SELECT 'invalid_input'::text, 0;
    RETURN;
  END IF;
  FOR r IN
    SELECT s.tenant_id, s.key_name, s.current_version, s.deleted_at, s.purge_after
      FROM :TS.tenant_secrets s
     WHERE s.purge_after <= pg_catalog.now() AND (p_tenant_id IS NULL OR s.tenant_id = p_tenant_id)
     ORDER BY s.tenant_id, s.key_name
       FOR UPDATE SKIP LOCKED
  LOOP
    SELECT pg_catalog.count(*) FILTER (WHERE tv.encrypted_value IS NOT NULL) INTO v_live
      FROM :TS.tenant_secret_versions tv WHERE tv.tenant_id = r.tenant_id AND tv.key_name = r.key_name;
    DELETE FROM :TS.tenant_secrets s WHERE s.tenant_id = r.tenant_id AND s.key_name = r.key_name;
    PERFORM :TS._ts_audit(r.tenant_id, 'secret.purged', r.key_name, r.current_version, 'success', NULL, p_ctx,
      pg_catalog.jsonb_build_object('versions_destroyed', v_live, 'deleted_at', r.deleted_at,
                                    'purge_after', r.purge_after));
    v_count := v_count + 1;
  END LOOP;
  RETURN QUERY SELECT 'ok'::text, v_count;
END
$$;

-- Change description, labels (replaces all labels), expires_at or rotate_after without a new version.
-- p_metadata (JSON text); p_options: if_version. The audit record lists the fields changed, not values.
CREATE FUNCTION :TS.tenant_secret_update_metadata(
  p_tenant_id text, p_key_name text, p_metadata text, p_bundle bytea,
  p_options jsonb DEFAULT '{}'::jsonb, p_ctx jsonb DEFAULT '{}'::jsonb)
RETURNS TABLE (status text, version integer, detail text)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = '' SET plan_cache_mode = force_generic_plan AS $$
#variable_conflict use_column
DECLARE
  v_md jsonb := :TS._ts_json(p_metadata);
  v_bad text := :TS._ts_check_call(p_tenant_id, p_key_name, true, p_bundle, true, p_ctx);
  v_if bigint;
  v_auth record;
  v_fields jsonb;
  v_row :TS.tenant_secrets%ROWTYPE;
BEGIN
  IF v_bad IS NULL AND (v_md IS NULL OR pg_catalog.jsonb_typeof(v_md) <> 'object' OR v_md = '{}'::jsonb
      OR EXISTS (SELECT 1 FROM pg_catalog.jsonb_object_keys(v_md) k(name)
                  WHERE k.name NOT IN ('description', 'labels', 'expires_at', 'rotate_after'))) THEN
    v_bad := 'metadata';
  END IF;
  IF v_bad IS NULL THEN v_bad := :TS._ts_metadata_invalid(v_md); END IF;
  IF v_bad IS NULL AND pg_catalog.jsonb_typeof(p_options) IS DISTINCT FROM 'object' THEN v_bad := 'options'; END IF;
  IF v_bad IS NULL THEN
    v_if := :TS._ts_json_int(p_options, 'if_version', 1, 999999999);
    IF v_if = -9223372036854775808 THEN v_bad := 'if_version'; END IF;
  END IF;
  IF v_bad IS NOT NULL THEN
    PERFORM :TS._ts_audit_invalid(p_tenant_id, 'secret.metadata_updated', p_key_name, v_bad, p_ctx);
    RETURN QUERY SELECT 'invalid_input'::text, NULL::integer, v_bad;
    RETURN;
  END IF;
  SELECT * INTO v_auth FROM :TS._ts_authorize(p_tenant_id, p_bundle);
  IF NOT :TS._ts_may_act(v_auth.status) THEN
    PERFORM :TS._ts_audit(p_tenant_id, 'secret.metadata_updated', p_key_name, NULL, 'failure', pg_catalog.upper(:TS._ts_auth_failure(v_auth.status)), p_ctx, NULL);
    RETURN QUERY SELECT :TS._ts_auth_failure(v_auth.status), NULL::integer, NULL::text;
    RETURN;
  END IF;
  SELECT * INTO v_row FROM :TS.tenant_secrets s WHERE s.tenant_id = p_tenant_id AND s.key_name = p_key_name FOR UPDATE;
  IF NOT FOUND OR v_row.deleted_at IS NOT NULL THEN
    PERFORM :TS._ts_audit(p_tenant_id, 'secret.metadata_updated', p_key_name, NULL, 'failure', 'NOT_FOUND', p_ctx, NULL);
    RETURN QUERY SELECT 'not_found'::text, NULL::integer, NULL::text;
    RETURN;
  END IF;
  IF v_if IS NOT NULL AND v_if <> v_row.current_version THEN
    PERFORM :TS._ts_audit(p_tenant_id, 'secret.metadata_updated', p_key_name, v_row.current_version, 'failure',
      'CONFLICT', p_ctx, pg_catalog.jsonb_build_object('expected_version', v_if));
    RETURN QUERY SELECT 'conflict'::text, v_row.current_version, NULL::text;
    RETURN;
  END IF;
  UPDATE :TS.tenant_secrets s SET
      description = CASE WHEN v_md ? 'description' THEN v_md->>'description' ELSE s.description END,
      labels = CASE WHEN v_md ? 'labels' THEN COALESCE(NULLIF(v_md->'labels', 'null'::jsonb), '{}'::jsonb) ELSE s.labels END,
      expires_at = CASE WHEN v_md ? 'expires_at' THEN (v_md->>'expires_at')::timestamptz ELSE s.expires_at END,
      rotate_after = CASE WHEN v_md ? 'rotate_after' THEN (v_md->>'rotate_after')::timestamptz ELSE s.rotate_after END,
      updated_at = pg_catalog.now(), updated_by = :TS._ts_ctx_actor(p_ctx)
   WHERE s.tenant_id = p_tenant_id AND s.key_name = p_key_name;
  SELECT pg_catalog.jsonb_agg(k.name ORDER BY k.name) INTO v_fields FROM pg_catalog.jsonb_object_keys(v_md) k(name);
  PERFORM :TS._ts_audit(p_tenant_id, 'secret.metadata_updated', p_key_name, v_row.current_version, 'success', NULL,
    p_ctx, pg_catalog.jsonb_build_object('fields', v_fields));
  RETURN QUERY SELECT 'ok'::text, v_row.current_version, NULL::text;
END
$$;

COMMENT ON FUNCTION :TS.tenant_secret_rollback(text, text, integer, bytea, jsonb, jsonb) IS
  'tenant-secrets: make an old version current by re-sealing its value as a new version (origin rollback); returns a status.';
COMMENT ON FUNCTION :TS.tenant_secret_restore(text, text, bytea, jsonb) IS
  'tenant-secrets: undo a soft delete within its recovery window; returns a status.';
COMMENT ON FUNCTION :TS.tenant_secret_destroy(text, text, bytea, jsonb) IS
  'tenant-secrets: immediately and irreversibly remove a secret (live or soft-deleted) and every version; returns a status.';
COMMENT ON FUNCTION :TS.tenant_secret_destroy_versions(text, text, integer[], bytea, jsonb) IS
  'tenant-secrets: destroy the ciphertext of specific non-current versions (metadata kept); returns a status.';
-- The tenants that have soft-deleted secrets past their recovery window, in tenant order, a page at a
-- time (after p_after, at most p_limit, 1-10000). An operator function: on a distributed (Citus)
-- installation, where one statement cannot purge every tenant (it would lock rows on every worker),
-- the library lists them with it and purges each tenant on its worker. Dynamic SQL, so that Citus
-- plans it with its values.
CREATE FUNCTION :TS.tenant_secret_purgeable_tenants(p_after text DEFAULT NULL, p_limit integer DEFAULT 1000)
RETURNS TABLE (tenant_id text)
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = '' AS $$
BEGIN
  PERFORM :TS._ts_require_operator();
  RETURN QUERY EXECUTE
    'SELECT DISTINCT s.tenant_id FROM :TS.tenant_secrets s
      WHERE s.purge_after <= pg_catalog.now() AND ($1::text IS NULL OR s.tenant_id > $1::text)
      ORDER BY s.tenant_id LIMIT LEAST(GREATEST(COALESCE($2::integer, 1000), 1), 10000)'
    USING p_after, p_limit;
END
$$;

COMMENT ON FUNCTION :TS.tenant_secret_purge_deleted(text, jsonb) IS
  'tenant-secrets: destroy every soft-deleted secret whose recovery window has passed (optionally of one tenant); returns the count.';
COMMENT ON FUNCTION :TS.tenant_secret_update_metadata(text, text, text, bytea, jsonb, jsonb) IS
  'tenant-secrets: change description, labels, expires_at or rotate_after without a new version; returns a status.';
COMMENT ON FUNCTION :TS.tenant_secret_purgeable_tenants(text, integer) IS
  'tenant-secrets: tenants with soft-deleted secrets past their recovery window, a page at a time (operators).';
