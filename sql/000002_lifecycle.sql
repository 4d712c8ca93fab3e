-- tenant-secrets migration 000002: secret lifecycle (issue 3).
--
-- rollback, restore, destroy, destroy_versions, purge_deleted, read_many, update_metadata.
-- Same hardening as 000001: SECURITY DEFINER, search_path = '', every name qualified; domain outcomes
-- are returned as a status (never raised) so that the failure's audit record commits; exactly one
-- audit record per operation (per secret for read_many and purge_deleted). Writes lock the secret row
-- FOR UPDATE after taking the tenant's active data key (FOR KEY SHARE), in the same order as
-- tenant_secret_write, so the two cannot deadlock. docs/lifecycle.md describes the semantics.

-- ---------------------------------------------------------------------------------------------
-- Rollback: write an old version's value as a new version (HashiCorp Vault KV v2 semantics)
-- ---------------------------------------------------------------------------------------------

-- The old version is decrypted and re-sealed under the tenant's ACTIVE data key for the new version
-- number (its tag binds the version, so the old ciphertext can never be copied).
-- p_options: if_version (check-and-set on the current version), max_versions (default 10),
-- grace_seconds (how long the replaced version stays readable as "previous"; default 86400).
CREATE FUNCTION :TS.tenant_secret_rollback(
  p_tenant_id text, p_key_name text, p_version integer, p_key_ids text[], p_keks bytea[],
  p_options jsonb DEFAULT '{}'::jsonb, p_ctx jsonb DEFAULT '{}'::jsonb)
RETURNS TABLE (status text, version integer, detail text)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = '' AS $$
#variable_conflict use_column
DECLARE
  v_opts jsonb := COALESCE(p_options, '{}'::jsonb);
  v_if integer := (v_opts->>'if_version')::integer;
  v_max integer := COALESCE((v_opts->>'max_versions')::integer, 10);
  v_grace integer := COALESCE((v_opts->>'grace_seconds')::integer, 86400);
  v_actor text := :TS._ts_ctx_actor(p_ctx);
  v_invalid text := :TS._ts_invalid_input(p_tenant_id, p_key_name);
  v_key record;
  v_row :TS.tenant_secrets%ROWTYPE;
  v_old record;
  v_unwrap record;
  v_plain bytea;
  v_status text;
  v_new integer;
  v_sealed bytea;
  v_destroyed integer[];
BEGIN
  IF v_invalid IS NULL AND (p_key_name IS NULL OR p_version IS NULL OR p_version < 1) THEN
    v_invalid := CASE WHEN p_key_name IS NULL THEN 'key_name' ELSE 'version' END;
  END IF;
  IF v_invalid IS NOT NULL THEN
    PERFORM :TS._ts_audit(CASE WHEN v_invalid = 'tenant_id' THEN NULL ELSE p_tenant_id END, 'secret.rolled_back',
      CASE WHEN v_invalid IN ('tenant_id', 'key_name') THEN NULL ELSE p_key_name END, NULL, 'failure', 'INVALID_INPUT',
      p_ctx, pg_catalog.jsonb_build_object('field', v_invalid));
    RETURN QUERY SELECT 'invalid_input'::text, NULL::integer, v_invalid;
    RETURN;
  END IF;

  SELECT * INTO v_key FROM :TS._ts_active_dek(p_tenant_id, p_key_ids, p_keks);
  IF v_key.status <> 'ok' THEN
    PERFORM :TS._ts_audit(p_tenant_id, 'secret.rolled_back', p_key_name, NULL, 'failure', pg_catalog.upper(v_key.status),
      p_ctx, pg_catalog.jsonb_build_object('from_version', p_version, 'master_key_id', v_key.master_key_id));
    RETURN QUERY SELECT v_key.status, NULL::integer, v_key.master_key_id;
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

  -- The target version and its data key in one statement (one snapshot).
  SELECT tv.state, tv.encrypted_value AS blob, tv.key_version, k.wrapped_key, k.master_key_id
    INTO v_old
    FROM :TS.tenant_secret_versions tv
    LEFT JOIN :TS.tenant_secret_keys k ON k.tenant_id = tv.tenant_id AND k.version = tv.key_version
   WHERE tv.tenant_id = p_tenant_id AND tv.key_name = p_key_name AND tv.version = p_version;
  IF v_old.state IS DISTINCT FROM 'enabled' THEN
    v_status := 'not_found';
  ELSE
    SELECT * INTO v_unwrap FROM :TS._ts_unwrap_dek(p_tenant_id, v_old.key_version, v_old.master_key_id,
                                                   v_old.wrapped_key, p_key_ids, p_keks);
    v_status := CASE WHEN v_unwrap.status = 'key_destroyed' THEN 'integrity' ELSE v_unwrap.status END;
    IF v_status = 'ok' THEN
      v_plain := :TS._ts_open_secret(v_old.blob, v_unwrap.dek, p_tenant_id, p_key_name, p_version, v_old.key_version);
      IF v_plain IS NULL THEN v_status := 'integrity'; END IF;
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
                                        v_actor, v_max);
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

-- ---------------------------------------------------------------------------------------------
-- Restore a soft-deleted secret within its recovery window
-- ---------------------------------------------------------------------------------------------

CREATE FUNCTION :TS.tenant_secret_restore(p_tenant_id text, p_key_name text, p_ctx jsonb DEFAULT '{}'::jsonb)
RETURNS TABLE (status text, version integer)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = '' AS $$
#variable_conflict use_column
DECLARE
  v_invalid text := :TS._ts_invalid_input(p_tenant_id, p_key_name);
  v_row :TS.tenant_secrets%ROWTYPE;
BEGIN
  IF v_invalid IS NULL AND p_key_name IS NULL THEN v_invalid := 'key_name'; END IF;
  IF v_invalid IS NOT NULL THEN
    PERFORM :TS._ts_audit(CASE WHEN v_invalid = 'tenant_id' THEN NULL ELSE p_tenant_id END, 'secret.restored',
      NULL, NULL, 'failure', 'INVALID_INPUT', p_ctx, pg_catalog.jsonb_build_object('field', v_invalid));
    RETURN QUERY SELECT 'invalid_input'::text, NULL::integer;
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

-- ---------------------------------------------------------------------------------------------
-- Destroy: immediate and irreversible removal of a secret (live or soft-deleted) and all versions
-- ---------------------------------------------------------------------------------------------

-- Returns versions_destroyed (versions whose ciphertext this call removed) and version_rows (all
-- version rows removed, including ones already destroyed by retention).
CREATE FUNCTION :TS.tenant_secret_destroy(p_tenant_id text, p_key_name text, p_ctx jsonb DEFAULT '{}'::jsonb)
RETURNS TABLE (status text, versions_destroyed integer, version_rows integer)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = '' AS $$
#variable_conflict use_column
DECLARE
  v_invalid text := :TS._ts_invalid_input(p_tenant_id, p_key_name);
  v_row :TS.tenant_secrets%ROWTYPE;
  v_live integer;
  v_total integer;
BEGIN
  IF v_invalid IS NULL AND p_key_name IS NULL THEN v_invalid := 'key_name'; END IF;
  IF v_invalid IS NOT NULL THEN
    PERFORM :TS._ts_audit(CASE WHEN v_invalid = 'tenant_id' THEN NULL ELSE p_tenant_id END, 'secret.destroyed',
      NULL, NULL, 'failure', 'INVALID_INPUT', p_ctx, pg_catalog.jsonb_build_object('field', v_invalid));
    RETURN QUERY SELECT 'invalid_input'::text, NULL::integer, NULL::integer;
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
  -- The versions go with the secret row (ON DELETE CASCADE).
  DELETE FROM :TS.tenant_secrets s WHERE s.tenant_id = p_tenant_id AND s.key_name = p_key_name;
  PERFORM :TS._ts_audit(p_tenant_id, 'secret.destroyed', p_key_name, v_row.current_version, 'success', NULL, p_ctx,
    pg_catalog.jsonb_build_object('versions_destroyed', v_live, 'version_rows', v_total,
                                  'was_deleted', v_row.deleted_at IS NOT NULL));
  RETURN QUERY SELECT 'ok'::text, v_live, v_total;
END
$$;

-- ---------------------------------------------------------------------------------------------
-- Destroy specific versions (Vault's "destroy"): ciphertext removed, version metadata kept
-- ---------------------------------------------------------------------------------------------

-- The current version cannot be destroyed this way (status invalid_input, detail 'versions'): use
-- tenant_secret_destroy, or write a new version first. Versions that do not exist or are already
-- destroyed are ignored; `destroyed` lists the versions this call destroyed.
CREATE FUNCTION :TS.tenant_secret_destroy_versions(
  p_tenant_id text, p_key_name text, p_versions integer[], p_ctx jsonb DEFAULT '{}'::jsonb)
RETURNS TABLE (status text, destroyed integer[])
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = '' AS $$
#variable_conflict use_column
DECLARE
  v_invalid text := :TS._ts_invalid_input(p_tenant_id, p_key_name);
  v_row :TS.tenant_secrets%ROWTYPE;
  v_gone integer[];
BEGIN
  IF v_invalid IS NULL AND p_key_name IS NULL THEN v_invalid := 'key_name'; END IF;
  IF v_invalid IS NULL AND (p_versions IS NULL OR pg_catalog.cardinality(p_versions) NOT BETWEEN 1 AND 100
      OR EXISTS (SELECT 1 FROM pg_catalog.unnest(p_versions) x(v) WHERE x.v IS NULL OR x.v < 1)) THEN
    v_invalid := 'versions';
  END IF;
  IF v_invalid IS NOT NULL THEN
    PERFORM :TS._ts_audit(CASE WHEN v_invalid = 'tenant_id' THEN NULL ELSE p_tenant_id END, 'secret.versions_destroyed',
      CASE WHEN v_invalid IN ('tenant_id', 'key_name') THEN NULL ELSE p_key_name END, NULL, 'failure', 'INVALID_INPUT',
      p_ctx, pg_catalog.jsonb_build_object('field', v_invalid));
    RETURN QUERY SELECT 'invalid_input'::text, NULL::integer[];
    RETURN;
  END IF;
  SELECT * INTO v_row FROM :TS.tenant_secrets s WHERE s.tenant_id = p_tenant_id AND s.key_name = p_key_name FOR UPDATE;
  IF NOT FOUND OR v_row.deleted_at IS NOT NULL THEN
    PERFORM :TS._ts_audit(p_tenant_id, 'secret.versions_destroyed', p_key_name, NULL, 'failure', 'NOT_FOUND', p_ctx,
      pg_catalog.jsonb_build_object('requested', pg_catalog.to_jsonb(p_versions)));
    RETURN QUERY SELECT 'not_found'::text, NULL::integer[];
    RETURN;
  END IF;
  IF v_row.current_version = ANY (p_versions) THEN
    PERFORM :TS._ts_audit(p_tenant_id, 'secret.versions_destroyed', p_key_name, v_row.current_version, 'failure',
      'INVALID_INPUT', p_ctx, pg_catalog.jsonb_build_object('field', 'versions', 'reason', 'current_version',
                                                            'requested', pg_catalog.to_jsonb(p_versions)));
    RETURN QUERY SELECT 'invalid_input'::text, NULL::integer[];
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
  RETURN QUERY SELECT 'ok'::text, v_gone;
END
$$;

-- ---------------------------------------------------------------------------------------------
-- Purge soft-deleted secrets whose recovery window has passed
-- ---------------------------------------------------------------------------------------------

-- One call purges every due secret (of one tenant when p_tenant_id is given), each with its own
-- secret.purged audit record in its tenant's chain. Rows are taken in (tenant, name) order with
-- SKIP LOCKED, so concurrent purges split the work instead of waiting or deadlocking.
CREATE FUNCTION :TS.tenant_secret_purge_deleted(p_tenant_id text DEFAULT NULL, p_ctx jsonb DEFAULT '{}'::jsonb)
RETURNS TABLE (status text, purged integer)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = '' AS $$
#variable_conflict use_column
DECLARE
  r record;
  v_count integer := 0;
  v_live integer;
BEGIN
  IF p_tenant_id IS NOT NULL AND :TS._ts_invalid_input(p_tenant_id, NULL) IS NOT NULL THEN
    PERFORM :TS._ts_audit(NULL, 'secret.purged', NULL, NULL, 'failure', 'INVALID_INPUT', p_ctx,
      pg_catalog.jsonb_build_object('field', 'tenant_id'));
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

-- ---------------------------------------------------------------------------------------------
-- Bulk read: many secrets of one tenant in one round trip
-- ---------------------------------------------------------------------------------------------

-- Calls tenant_secret_read once per distinct name (so each read is audited on its own, with the
-- same rules as a single read), in the order the names were given. At most 100 names. p_options:
-- allow_expired (a requested version does not apply to a bulk read and is ignored).
CREATE FUNCTION :TS.tenant_secret_read_many(
  p_tenant_id text, p_key_names text[], p_key_ids text[], p_keks bytea[],
  p_options jsonb DEFAULT '{}'::jsonb, p_ctx jsonb DEFAULT '{}'::jsonb)
RETURNS TABLE (key_name text, status text, value bytea, version integer, detail text)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = '' AS $$
#variable_conflict use_column
DECLARE
  v_opts jsonb := COALESCE(p_options, '{}'::jsonb) - 'version';
  v_invalid text := :TS._ts_invalid_input(p_tenant_id, NULL);
  n record;
BEGIN
  IF v_invalid IS NULL AND (p_key_names IS NULL OR pg_catalog.cardinality(p_key_names) NOT BETWEEN 1 AND 100) THEN
    v_invalid := 'key_names';
  END IF;
  IF v_invalid IS NOT NULL THEN
    PERFORM :TS._ts_audit(CASE WHEN v_invalid = 'tenant_id' THEN NULL ELSE p_tenant_id END, 'secret.read', NULL, NULL,
      'failure', 'INVALID_INPUT', p_ctx, pg_catalog.jsonb_build_object('field', v_invalid));
    RETURN QUERY SELECT NULL::text, 'invalid_input'::text, NULL::bytea, NULL::integer, v_invalid;
    RETURN;
  END IF;
  -- A loop rather than a LATERAL join so that the reads (and their audit records) happen in the
  -- order the names were given, which a join does not guarantee.
  FOR n IN
    SELECT d.name FROM (SELECT DISTINCT ON (u.name) u.name, u.ord
                          FROM pg_catalog.unnest(p_key_names) WITH ORDINALITY AS u(name, ord)
                         ORDER BY u.name, u.ord) d
     ORDER BY d.ord
  LOOP
    RETURN QUERY
      SELECT n.name, r.status, r.value, r.version, r.detail
        FROM :TS.tenant_secret_read(p_tenant_id, n.name, p_key_ids, p_keks, v_opts, p_ctx) r;
  END LOOP;
END
$$;

-- ---------------------------------------------------------------------------------------------
-- Metadata update without a new version
-- ---------------------------------------------------------------------------------------------

-- p_metadata: any of description (string or null), labels (object of strings; replaces all labels),
-- expires_at, rotate_after (ISO timestamps or null to clear). p_options: if_version (check-and-set on
-- the current version). The audit record lists the fields changed, not their values.
CREATE FUNCTION :TS.tenant_secret_update_metadata(
  p_tenant_id text, p_key_name text, p_metadata jsonb, p_options jsonb DEFAULT '{}'::jsonb,
  p_ctx jsonb DEFAULT '{}'::jsonb)
RETURNS TABLE (status text, version integer, detail text)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = '' AS $$
#variable_conflict use_column
DECLARE
  v_md jsonb := p_metadata;
  v_if integer := (COALESCE(p_options, '{}'::jsonb)->>'if_version')::integer;
  v_invalid text := :TS._ts_invalid_input(p_tenant_id, p_key_name);
  v_expires timestamptz;
  v_rotate timestamptz;
  v_fields jsonb;
  v_row :TS.tenant_secrets%ROWTYPE;
BEGIN
  IF v_invalid IS NULL AND p_key_name IS NULL THEN v_invalid := 'key_name'; END IF;
  IF v_invalid IS NULL AND (v_md IS NULL OR pg_catalog.jsonb_typeof(v_md) <> 'object' OR v_md = '{}'::jsonb
      OR EXISTS (SELECT 1 FROM pg_catalog.jsonb_object_keys(v_md) k(name)
                  WHERE k.name NOT IN ('description', 'labels', 'expires_at', 'rotate_after'))) THEN
    v_invalid := 'metadata';
  END IF;
  IF v_invalid IS NULL AND v_md ? 'description' AND pg_catalog.jsonb_typeof(v_md->'description') <> 'null'
     AND (pg_catalog.jsonb_typeof(v_md->'description') <> 'string' OR pg_catalog.length(v_md->>'description') > 1000) THEN
    v_invalid := 'description';
  END IF;
  -- Labels: at most 50, keys as src/secrets/metadata.ts allows, string values of at most 256 characters.
  IF v_invalid IS NULL AND v_md ? 'labels' AND (pg_catalog.jsonb_typeof(v_md->'labels') <> 'object'
      OR (SELECT pg_catalog.count(*) FROM pg_catalog.jsonb_object_keys(v_md->'labels')) > 50
      OR EXISTS (SELECT 1 FROM pg_catalog.jsonb_each(v_md->'labels') e(k, val)
                  WHERE e.k !~ '^[A-Za-z0-9_./-]{1,63}$' OR pg_catalog.jsonb_typeof(e.val) <> 'string'
                     OR pg_catalog.length(e.val #>> '{}') > 256)) THEN
    v_invalid := 'labels';
  END IF;
  IF v_invalid IS NULL THEN
    BEGIN
      v_invalid := 'expires_at';
      v_expires := (v_md->>'expires_at')::timestamptz;
      v_invalid := 'rotate_after';
      v_rotate := (v_md->>'rotate_after')::timestamptz;
      v_invalid := NULL;
    EXCEPTION WHEN invalid_datetime_format OR datetime_field_overflow OR invalid_text_representation
                   OR invalid_parameter_value THEN
      NULL; -- v_invalid names the field that failed to parse
    END;
  END IF;
  IF v_invalid IS NOT NULL THEN
    PERFORM :TS._ts_audit(CASE WHEN v_invalid = 'tenant_id' THEN NULL ELSE p_tenant_id END, 'secret.metadata_updated',
      CASE WHEN v_invalid IN ('tenant_id', 'key_name') THEN NULL ELSE p_key_name END, NULL, 'failure', 'INVALID_INPUT',
      p_ctx, pg_catalog.jsonb_build_object('field', v_invalid));
    RETURN QUERY SELECT 'invalid_input'::text, NULL::integer, v_invalid;
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
      labels = CASE WHEN v_md ? 'labels' THEN v_md->'labels' ELSE s.labels END,
      expires_at = CASE WHEN v_md ? 'expires_at' THEN v_expires ELSE s.expires_at END,
      rotate_after = CASE WHEN v_md ? 'rotate_after' THEN v_rotate ELSE s.rotate_after END,
      updated_at = pg_catalog.now(), updated_by = :TS._ts_ctx_actor(p_ctx)
   WHERE s.tenant_id = p_tenant_id AND s.key_name = p_key_name;
  SELECT pg_catalog.jsonb_agg(k.name ORDER BY k.name) INTO v_fields FROM pg_catalog.jsonb_object_keys(v_md) k(name);
  PERFORM :TS._ts_audit(p_tenant_id, 'secret.metadata_updated', p_key_name, v_row.current_version, 'success', NULL,
    p_ctx, pg_catalog.jsonb_build_object('fields', v_fields));
  RETURN QUERY SELECT 'ok'::text, v_row.current_version, NULL::text;
END
$$;

COMMENT ON FUNCTION :TS.tenant_secret_rollback(text, text, integer, text[], bytea[], jsonb, jsonb) IS
  'tenant-secrets: make an old version current by re-sealing its value as a new version (origin rollback); returns a status.';
COMMENT ON FUNCTION :TS.tenant_secret_restore(text, text, jsonb) IS
  'tenant-secrets: undo a soft delete within its recovery window; returns a status.';
COMMENT ON FUNCTION :TS.tenant_secret_destroy(text, text, jsonb) IS
  'tenant-secrets: immediately and irreversibly remove a secret (live or soft-deleted) and every version; returns a status.';
COMMENT ON FUNCTION :TS.tenant_secret_destroy_versions(text, text, integer[], jsonb) IS
  'tenant-secrets: destroy the ciphertext of specific non-current versions (metadata kept); returns a status.';
COMMENT ON FUNCTION :TS.tenant_secret_purge_deleted(text, jsonb) IS
  'tenant-secrets: destroy every soft-deleted secret whose recovery window has passed (optionally of one tenant); returns the count.';
COMMENT ON FUNCTION :TS.tenant_secret_read_many(text, text[], text[], bytea[], jsonb, jsonb) IS
  'tenant-secrets: read up to 100 secrets of one tenant in one call, one audited read each; returns a status per name.';
COMMENT ON FUNCTION :TS.tenant_secret_update_metadata(text, text, jsonb, jsonb, jsonb) IS
  'tenant-secrets: change description, labels, expires_at or rotate_after without a new version; returns a status.';
