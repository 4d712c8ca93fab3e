-- tenant-secrets functions: audit of reads served from the library's in-process cache.
--
-- A cached read does not reach the database, but is never silent: the library counts cache hits per
-- secret and reports them here periodically (and when the manager closes). One 'secret.read' record
-- per secret and interval, with details {cached: true, count, since, until}, authorised like a read.
CREATE FUNCTION :TS.tenant_secret_audit_cached_reads(
  p_tenant_id text, p_bundle bytea, p_key_names text[], p_versions integer[], p_counts integer[],
  p_since timestamptz, p_until timestamptz, p_ctx jsonb DEFAULT '{}'::jsonb)
RETURNS TABLE (status text, recorded integer)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = '' SET plan_cache_mode = force_generic_plan AS $$
#variable_conflict use_column
DECLARE
  v_bad text := :TS._ts_check_call(p_tenant_id, NULL, false, p_bundle, true, p_ctx);
  v_auth record;
  v_n integer;
BEGIN
  IF v_bad IS NULL AND (p_key_names IS NULL OR pg_catalog.cardinality(p_key_names) NOT BETWEEN 1 AND 1000
      OR pg_catalog.cardinality(p_versions) IS DISTINCT FROM pg_catalog.cardinality(p_key_names)
      OR pg_catalog.cardinality(p_counts) IS DISTINCT FROM pg_catalog.cardinality(p_key_names)
      OR p_since IS NULL OR p_until IS NULL OR p_since > p_until
      OR EXISTS (SELECT 1 FROM ROWS FROM (pg_catalog.unnest(p_key_names), pg_catalog.unnest(p_counts)) u(name, n)
                  WHERE :TS._ts_invalid_input(p_tenant_id, u.name) IS NOT NULL OR u.name IS NULL OR u.n IS NULL OR u.n < 1)) THEN
    v_bad := 'cached_reads';
  END IF;
  IF v_bad IS NOT NULL THEN
    PERFORM :TS._ts_audit_invalid(p_tenant_id, 'secret.read', NULL, v_bad, p_ctx);
    RETURN QUERY SELECT 'invalid_input'::text, 0;
    RETURN;
  END IF;
  SELECT * INTO v_auth FROM :TS._ts_authorize(p_tenant_id, p_bundle);
  IF NOT :TS._ts_may_act(v_auth.status) THEN
    PERFORM :TS._ts_audit(p_tenant_id, 'secret.read', NULL, NULL, 'failure', pg_catalog.upper(:TS._ts_auth_failure(v_auth.status)), p_ctx,
      pg_catalog.jsonb_build_object('cached', true));
    RETURN QUERY SELECT :TS._ts_auth_failure(v_auth.status), 0;
    RETURN;
  END IF;
  INSERT INTO :TS.tenant_secret_audit_pending
    (chain_id, occurred_at, tenant_id, db_role, actor, action, key_name, version, outcome, error_code,
     request_id, context, details, digest, sealed_at)
  SELECT p_tenant_id, x.at, p_tenant_id, session_user, x.actor, 'secret.read', u.name, u.version, 'success', NULL,
         x.request, x.context, x.details,
         :TS._ts_audit_digest(p_tenant_id, x.at, p_tenant_id, session_user, x.actor, 'secret.read', u.name, u.version,
                              'success', NULL, x.request, x.context, x.details),
         'infinity'
    FROM ROWS FROM (pg_catalog.unnest(p_key_names), pg_catalog.unnest(p_versions), pg_catalog.unnest(p_counts)) WITH ORDINALITY AS u(name, version, n, ord)
    CROSS JOIN LATERAL (SELECT pg_catalog.clock_timestamp() AS at,
                               COALESCE(NULLIF(p_ctx->>'actor', ''), 'db:' || session_user) AS actor,
                               NULLIF(p_ctx->>'request_id', '') AS request,
                               NULLIF(COALESCE(p_ctx, '{}'::jsonb) - 'actor' - 'request_id', '{}'::jsonb) AS context,
                               pg_catalog.jsonb_build_object('cached', true, 'count', u.n, 'since', p_since, 'until', p_until) AS details) x
   ORDER BY u.ord;
  GET DIAGNOSTICS v_n = ROW_COUNT;
  RETURN QUERY SELECT 'ok'::text, v_n;
END
$$;

COMMENT ON FUNCTION :TS.tenant_secret_audit_cached_reads(text, bytea, text[], integer[], integer[], timestamptz, timestamptz, jsonb) IS
  'tenant-secrets: audit reads served from the library''s cache, one record per secret and interval with the count.';
