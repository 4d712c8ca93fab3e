-- tenant-secrets functions: delete, list, versions.
--
-- Entry points are SECURITY DEFINER with search_path = '' and qualified names, and plan their
-- statements generically (plan_cache_mode): a custom plan would see key material and values as
-- constants, and could fold cryptographic expressions into the plan (where an EXPLAIN-logging
-- extension could print them), besides re-planning every call. Domain outcomes are returned as a
-- status, not raised, so a failure's audit record commits with the attempt. Every tenant-scoped
-- function authorises the caller first and reveals nothing, not even whether a secret exists, to a
-- caller it does not authorise.

-- Soft delete: the secret reads as not found from now on and can be restored until purge_after
-- (p_options.recovery_days, 0-3650, default 30); then tenant_secret_purge_deleted destroys it.
CREATE FUNCTION :TS.tenant_secret_delete(
  p_tenant_id text, p_key_name text, p_bundle bytea, p_options jsonb DEFAULT '{}'::jsonb, p_ctx jsonb DEFAULT '{}'::jsonb)
RETURNS TABLE (status text, version integer, purge_after timestamptz)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = '' SET plan_cache_mode = force_generic_plan AS $$
#variable_conflict use_column
DECLARE
  v_bad text := :TS._ts_check_call(p_tenant_id, p_key_name, true, p_bundle, true, p_ctx);
  v_days bigint;
  v_auth record;
  v_version integer;
  v_purge timestamptz;
BEGIN
  IF v_bad IS NULL AND pg_catalog.jsonb_typeof(p_options) IS DISTINCT FROM 'object' THEN v_bad := 'options'; END IF;
  IF v_bad IS NULL THEN
    v_days := COALESCE(:TS._ts_json_int(p_options, 'recovery_days', 0, 3650), 30);
    IF v_days = -9223372036854775808 THEN v_bad := 'recovery_days'; END IF;
  END IF;
  IF v_bad IS NOT NULL THEN
    PERFORM :TS._ts_audit_invalid(p_tenant_id, 'secret.deleted', p_key_name, v_bad, p_ctx);
    RETURN QUERY SELECT 'invalid_input'::text, NULL::integer, NULL::timestamptz;
    RETURN;
  END IF;
  SELECT * INTO v_auth FROM :TS._ts_authorize(p_tenant_id, p_bundle);
  IF NOT :TS._ts_may_act(v_auth.status) THEN
    PERFORM :TS._ts_audit(p_tenant_id, 'secret.deleted', p_key_name, NULL, 'failure', pg_catalog.upper(:TS._ts_auth_failure(v_auth.status)), p_ctx, NULL);
    RETURN QUERY SELECT :TS._ts_auth_failure(v_auth.status), NULL::integer, NULL::timestamptz;
    RETURN;
  END IF;
  UPDATE :TS.tenant_secrets s
     SET deleted_at = pg_catalog.now(), purge_after = pg_catalog.now() + pg_catalog.make_interval(days => v_days::integer),
         updated_at = pg_catalog.now(), updated_by = :TS._ts_ctx_actor(p_ctx)
   WHERE s.tenant_id = p_tenant_id AND s.key_name = p_key_name AND s.deleted_at IS NULL
  RETURNING s.current_version, s.purge_after INTO v_version, v_purge;
  IF NOT FOUND THEN
    PERFORM :TS._ts_audit(p_tenant_id, 'secret.deleted', p_key_name, NULL, 'failure', 'NOT_FOUND', p_ctx, NULL);
    RETURN QUERY SELECT 'not_found'::text, NULL::integer, NULL::timestamptz;
    RETURN;
  END IF;
  PERFORM :TS._ts_audit(p_tenant_id, 'secret.deleted', p_key_name, v_version, 'success', NULL, p_ctx,
    pg_catalog.jsonb_build_object('purge_after', v_purge));
  RETURN QUERY SELECT 'ok'::text, v_version, v_purge;
END
$$;

-- Names and metadata of a tenant's secrets, never values. p_options: prefix, labels (object the
-- secret's labels must contain), due (rotate_after passed and not rotated since), expired,
-- include_deleted, after (key name to continue after), limit (1-1000, default 100). The first row's
-- status says whether the call was refused ('unauthorized', 'invalid_input': no other rows).
CREATE FUNCTION :TS.tenant_secret_list(p_tenant_id text, p_bundle bytea, p_options jsonb DEFAULT '{}'::jsonb, p_ctx jsonb DEFAULT '{}'::jsonb)
RETURNS TABLE (status text, key_name text, current_version integer, previous_version integer, description text, labels jsonb,
               expires_at timestamptz, rotate_after timestamptz, created_at timestamptz, created_by text,
               updated_at timestamptz, updated_by text, rotated_at timestamptz, deleted_at timestamptz,
               purge_after timestamptz, key_version integer)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = '' SET plan_cache_mode = force_generic_plan AS $$
#variable_conflict use_column
DECLARE
  v_opts jsonb := COALESCE(p_options, '{}'::jsonb);
  v_bad text := :TS._ts_check_call(p_tenant_id, NULL, false, p_bundle, true, p_ctx);
  v_prefix text := v_opts->>'prefix';
  v_limit bigint;
  v_auth record;
  v_count integer;
BEGIN
  IF v_bad IS NULL AND pg_catalog.jsonb_typeof(v_opts) <> 'object' THEN v_bad := 'options'; END IF;
  IF v_bad IS NULL AND v_opts ? 'labels' AND pg_catalog.jsonb_typeof(v_opts->'labels') <> 'object' THEN v_bad := 'labels'; END IF;
  IF v_bad IS NULL AND v_prefix IS NOT NULL AND pg_catalog.length(v_prefix) > 256 THEN v_bad := 'prefix'; END IF;
  IF v_bad IS NULL AND v_opts->>'after' IS NOT NULL AND :TS._ts_invalid_input(p_tenant_id, v_opts->>'after') IS NOT NULL THEN v_bad := 'after'; END IF;
  IF v_bad IS NULL THEN
    v_limit := COALESCE(:TS._ts_json_int(v_opts, 'limit', 1, 1000), 100);
    IF v_limit = -9223372036854775808 THEN v_bad := 'limit'; END IF;
  END IF;
  IF v_bad IS NOT NULL THEN
    PERFORM :TS._ts_audit_invalid(p_tenant_id, 'secret.listed', NULL, v_bad, p_ctx);
    RETURN QUERY SELECT 'invalid_input'::text, v_bad, NULL::integer, NULL::integer, NULL::text, NULL::jsonb, NULL::timestamptz,
      NULL::timestamptz, NULL::timestamptz, NULL::text, NULL::timestamptz, NULL::text, NULL::timestamptz, NULL::timestamptz,
      NULL::timestamptz, NULL::integer;
    RETURN;
  END IF;
  SELECT * INTO v_auth FROM :TS._ts_authorize(p_tenant_id, p_bundle);
  IF NOT :TS._ts_may_act(v_auth.status) THEN
    PERFORM :TS._ts_audit(p_tenant_id, 'secret.listed', NULL, NULL, 'failure', pg_catalog.upper(:TS._ts_auth_failure(v_auth.status)), p_ctx, NULL);
    RETURN QUERY SELECT :TS._ts_auth_failure(v_auth.status),
      CASE WHEN v_auth.status = 'unknown_master_key' THEN v_auth.master_key_id END, NULL::integer, NULL::integer, NULL::text, NULL::jsonb, NULL::timestamptz,
      NULL::timestamptz, NULL::timestamptz, NULL::text, NULL::timestamptz, NULL::text, NULL::timestamptz, NULL::timestamptz,
      NULL::timestamptz, NULL::integer;
    RETURN;
  END IF;
  RETURN QUERY
    SELECT 'ok'::text, s.key_name, s.current_version, s.previous_version, s.description, s.labels, s.expires_at, s.rotate_after,
           s.created_at, s.created_by, s.updated_at, s.updated_by, s.rotated_at, s.deleted_at, s.purge_after, s.key_version
      FROM :TS.tenant_secrets s
     WHERE s.tenant_id = p_tenant_id
       AND (v_prefix IS NULL OR pg_catalog.starts_with(s.key_name, v_prefix))
       AND (NOT v_opts ? 'labels' OR s.labels @> (v_opts->'labels'))
       AND (COALESCE((v_opts->>'include_deleted')::boolean, false) OR s.deleted_at IS NULL)
       AND (NOT COALESCE((v_opts->>'due')::boolean, false)
            OR (s.rotate_after <= pg_catalog.now() AND (s.rotated_at IS NULL OR s.rotated_at < s.rotate_after)))
       AND (NOT COALESCE((v_opts->>'expired')::boolean, false) OR s.expires_at <= pg_catalog.now())
       AND (v_opts->>'after' IS NULL OR s.key_name > v_opts->>'after')
     ORDER BY s.key_name
     LIMIT v_limit;
  GET DIAGNOSTICS v_count = ROW_COUNT;
  PERFORM :TS._ts_audit(p_tenant_id, 'secret.listed', NULL, NULL, 'success', NULL, p_ctx,
    pg_catalog.jsonb_strip_nulls(pg_catalog.jsonb_build_object('count', v_count, 'prefix', v_prefix)));
END
$$;

-- Version metadata of one secret (never values), newest first. The first row's status says whether
-- the call was refused or the secret was not found (no other rows then).
CREATE FUNCTION :TS.tenant_secret_list_versions(p_tenant_id text, p_key_name text, p_bundle bytea, p_ctx jsonb DEFAULT '{}'::jsonb)
RETURNS TABLE (status text, version integer, state text, origin text, created_at timestamptz, created_by text,
               destroyed_at timestamptz, is_current boolean, is_previous boolean)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = '' SET plan_cache_mode = force_generic_plan AS $$
#variable_conflict use_column
DECLARE
  v_bad text := :TS._ts_check_call(p_tenant_id, p_key_name, true, p_bundle, true, p_ctx);
  v_auth record;
  v_count integer;
BEGIN
  IF v_bad IS NOT NULL THEN
    PERFORM :TS._ts_audit_invalid(p_tenant_id, 'secret.versions_listed', p_key_name, v_bad, p_ctx);
    RETURN QUERY SELECT 'invalid_input'::text, NULL::integer, v_bad, NULL::text, NULL::timestamptz, NULL::text,
      NULL::timestamptz, NULL::boolean, NULL::boolean;
    RETURN;
  END IF;
  SELECT * INTO v_auth FROM :TS._ts_authorize(p_tenant_id, p_bundle);
  IF NOT :TS._ts_may_act(v_auth.status) THEN
    PERFORM :TS._ts_audit(p_tenant_id, 'secret.versions_listed', p_key_name, NULL, 'failure', pg_catalog.upper(:TS._ts_auth_failure(v_auth.status)), p_ctx, NULL);
    RETURN QUERY SELECT :TS._ts_auth_failure(v_auth.status), NULL::integer, NULL::text, NULL::text, NULL::timestamptz, NULL::text,
      NULL::timestamptz, NULL::boolean, NULL::boolean;
    RETURN;
  END IF;
  RETURN QUERY
    SELECT 'ok'::text, v.version, v.state, v.origin, v.created_at, v.created_by, v.destroyed_at,
           v.version = s.current_version,
           COALESCE(v.version = s.previous_version AND s.previous_expires_at > pg_catalog.now(), false)
      FROM :TS.tenant_secret_versions v
      JOIN :TS.tenant_secrets s ON s.tenant_id = v.tenant_id AND s.key_name = v.key_name
     WHERE v.tenant_id = p_tenant_id AND v.key_name = p_key_name AND s.deleted_at IS NULL
     ORDER BY v.version DESC;
  GET DIAGNOSTICS v_count = ROW_COUNT;
  IF v_count = 0 THEN
    PERFORM :TS._ts_audit(p_tenant_id, 'secret.versions_listed', p_key_name, NULL, 'failure', 'NOT_FOUND', p_ctx, NULL);
    RETURN QUERY SELECT 'not_found'::text, NULL::integer, NULL::text, NULL::text, NULL::timestamptz, NULL::text,
      NULL::timestamptz, NULL::boolean, NULL::boolean;
    RETURN;
  END IF;
  PERFORM :TS._ts_audit(p_tenant_id, 'secret.versions_listed', p_key_name, NULL, 'success', NULL, p_ctx,
    pg_catalog.jsonb_build_object('count', v_count));
END
$$;

COMMENT ON FUNCTION :TS.tenant_secret_delete(text, text, bytea, jsonb, jsonb) IS
  'tenant-secrets: soft-delete a secret with a recovery window.';
COMMENT ON FUNCTION :TS.tenant_secret_list(text, bytea, jsonb, jsonb) IS
  'tenant-secrets: list names and metadata of a tenant''s secrets (never values).';
COMMENT ON FUNCTION :TS.tenant_secret_list_versions(text, text, bytea, jsonb) IS
  'tenant-secrets: list version metadata of a secret (never values).';
