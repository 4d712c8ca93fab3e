-- tenant-secrets functions: audit of reads served from the library's in-process cache.
--
-- A cached read does not reach the database, but is never silent: the library counts cache hits per
-- secret and reports them here periodically (and when the manager closes). One 'secret.read' record
-- per secret and interval, with details {cached: true, count, since, until}, authorised like a read.
-- Everything is validated as any other input: each (name, version) must be a version the tenant has
-- (the cache only holds what was read), counts are 1 to 1,000,000, and the interval lies within the
-- last day by the database's clock.

-- Validates and records one batch. p_since / p_until per entry. Returns the invalid field, or NULL
-- when the records were appended (the caller checked authorisation and the guard).
CREATE FUNCTION :TS._ts_record_cached_reads(
  p_tenant_id text, p_key_names text[], p_versions integer[], p_counts integer[],
  p_since timestamptz[], p_until timestamptz[], p_ctx jsonb) RETURNS text
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
  v_n integer := pg_catalog.cardinality(p_key_names);
BEGIN
  IF v_n IS NULL OR v_n NOT BETWEEN 1 AND 1000
     OR pg_catalog.cardinality(p_versions) IS DISTINCT FROM v_n OR pg_catalog.cardinality(p_counts) IS DISTINCT FROM v_n
     OR pg_catalog.cardinality(p_since) IS DISTINCT FROM v_n OR pg_catalog.cardinality(p_until) IS DISTINCT FROM v_n THEN
    RETURN 'cached_reads';
  END IF;
  IF EXISTS (SELECT 1 FROM ROWS FROM (pg_catalog.unnest(p_key_names), pg_catalog.unnest(p_counts)) u(name, n)
              WHERE u.name IS NULL OR :TS._ts_invalid_input(p_tenant_id, u.name) IS NOT NULL) THEN
    RETURN 'key_name';
  END IF;
  IF EXISTS (SELECT 1 FROM pg_catalog.unnest(p_counts) u(n) WHERE u.n IS NULL OR u.n NOT BETWEEN 1 AND 1000000) THEN
    RETURN 'count';
  END IF;
  IF EXISTS (SELECT 1 FROM ROWS FROM (pg_catalog.unnest(p_since), pg_catalog.unnest(p_until)) u(s, e)
              WHERE u.s IS NULL OR u.e IS NULL OR u.s > u.e
                 OR u.s < pg_catalog.now() - interval '1 day' OR u.e > pg_catalog.clock_timestamp() + interval '1 minute') THEN
    RETURN 'interval';
  END IF;
  IF EXISTS (SELECT 1 FROM ROWS FROM (pg_catalog.unnest(p_key_names), pg_catalog.unnest(p_versions)) u(name, version)
              WHERE u.version IS NULL OR u.version < 1
                 OR NOT EXISTS (SELECT 1 FROM :TS.tenant_secret_versions v
                                 WHERE v.tenant_id = p_tenant_id AND v.key_name = u.name AND v.version = u.version)) THEN
    RETURN 'version';
  END IF;
  INSERT INTO :TS.tenant_secret_audit_pending
    (chain_id, occurred_at, tenant_id, db_role, actor, action, key_name, version, outcome, error_code,
     request_id, context, details, sealed_at)
  SELECT p_tenant_id, pg_catalog.clock_timestamp(), p_tenant_id, session_user,
         COALESCE(NULLIF(p_ctx->>'actor', ''), 'db:' || session_user), 'secret.read', u.name, u.version, 'success', NULL,
         NULLIF(p_ctx->>'request_id', ''), NULLIF(COALESCE(p_ctx, '{}'::jsonb) - 'actor' - 'request_id', '{}'::jsonb),
         pg_catalog.jsonb_build_object('cached', true, 'count', u.n, 'since', u.s, 'until', u.e),
         'infinity'
    FROM ROWS FROM (pg_catalog.unnest(p_key_names), pg_catalog.unnest(p_versions), pg_catalog.unnest(p_counts),
                    pg_catalog.unnest(p_since), pg_catalog.unnest(p_until)) WITH ORDINALITY AS u(name, version, n, s, e, ord)
   ORDER BY u.ord;
  RETURN NULL;
END
$$;

-- The library's entry point, authorised by the access token. Times come as ages in milliseconds
-- (first and last hit), so the interval is placed by the database's clock, whatever the application
-- server's clock says.
CREATE FUNCTION :TS.tenant_secret_audit_cached_reads(
  p_tenant_id text, p_creds bytea, p_key_names text[], p_versions integer[], p_counts integer[],
  p_first_ago_ms bigint[], p_last_ago_ms bigint[], p_ctx jsonb DEFAULT '{}'::jsonb)
RETURNS TABLE (status text, recorded integer)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = '' SET plan_cache_mode = force_generic_plan AS $$
#variable_conflict use_column
DECLARE
  v_now timestamptz := pg_catalog.clock_timestamp();
  v_bad text := CASE WHEN :TS._ts_ctx_invalid(p_ctx) IS NOT NULL THEN 'context'
                     WHEN :TS._ts_invalid_input(p_tenant_id, NULL) IS NOT NULL THEN 'tenant_id'
                     WHEN NOT :TS._ts_creds_valid(p_creds) THEN 'credentials' END;
  v_a record;
  v_done boolean := :TS._ts_guard(false);
BEGIN
  IF v_bad IS NULL THEN
    SELECT a.access_digest IS NOT NULL AND :PGC.digest(:TS._ts_creds_token(p_creds, a.master_key_id), 'sha256') = a.access_digest AS ok
      INTO v_a FROM (SELECT) z LEFT JOIN :TS.tenant_secret_keys a ON a.tenant_id = p_tenant_id AND a.state = 'active';
    IF NOT COALESCE(v_a.ok, false) THEN
      PERFORM :TS._ts_audit(p_tenant_id, 'secret.read', NULL, NULL, 'failure', 'UNAUTHORIZED', p_ctx, '{"cached":true}'::jsonb);
      RETURN QUERY SELECT 'unauthorized'::text, 0;
      RETURN;
    END IF;
    IF pg_catalog.cardinality(p_first_ago_ms) IS DISTINCT FROM pg_catalog.cardinality(p_key_names)
       OR pg_catalog.cardinality(p_last_ago_ms) IS DISTINCT FROM pg_catalog.cardinality(p_key_names)
       OR EXISTS (SELECT 1 FROM ROWS FROM (pg_catalog.unnest(p_first_ago_ms), pg_catalog.unnest(p_last_ago_ms)) u(f, l)
                   WHERE u.f IS NULL OR u.l IS NULL OR u.l < 0 OR u.f < u.l OR u.f > 86400000) THEN
      v_bad := 'interval';
    ELSE
      v_bad := :TS._ts_record_cached_reads(p_tenant_id, p_key_names, p_versions, p_counts,
        ARRAY(SELECT v_now - pg_catalog.make_interval(secs => u.f / 1000.0) FROM pg_catalog.unnest(p_first_ago_ms) WITH ORDINALITY u(f, o) ORDER BY u.o),
        ARRAY(SELECT v_now - pg_catalog.make_interval(secs => u.l / 1000.0) FROM pg_catalog.unnest(p_last_ago_ms) WITH ORDINALITY u(l, o) ORDER BY u.o),
        p_ctx);
    END IF;
  END IF;
  IF v_bad IS NOT NULL THEN
    PERFORM :TS._ts_audit_invalid(p_tenant_id, 'secret.read', NULL, v_bad, p_ctx);
    RETURN QUERY SELECT 'invalid_input'::text, 0;
    RETURN;
  END IF;
  RETURN QUERY SELECT 'ok'::text, pg_catalog.cardinality(p_key_names);
END
$$;

-- Release 0.2's signature (its clients call it during an upgrade): key bundle, times from the caller.
CREATE FUNCTION :TS.tenant_secret_audit_cached_reads(
  p_tenant_id text, p_bundle bytea, p_key_names text[], p_versions integer[], p_counts integer[],
  p_since timestamptz, p_until timestamptz, p_ctx jsonb DEFAULT '{}'::jsonb)
RETURNS TABLE (status text, recorded integer)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = '' SET plan_cache_mode = force_generic_plan AS $$
#variable_conflict use_column
DECLARE
  v_bad text := :TS._ts_check_call(p_tenant_id, NULL, false, p_bundle, true, p_ctx);
  v_auth record;
BEGIN
  IF v_bad IS NULL THEN
    SELECT * INTO v_auth FROM :TS._ts_authorize(p_tenant_id, p_bundle);
    IF NOT :TS._ts_may_act(v_auth.status) THEN
      PERFORM :TS._ts_audit(p_tenant_id, 'secret.read', NULL, NULL, 'failure', pg_catalog.upper(:TS._ts_auth_failure(v_auth.status)), p_ctx,
        pg_catalog.jsonb_build_object('cached', true));
      RETURN QUERY SELECT :TS._ts_auth_failure(v_auth.status), 0;
      RETURN;
    END IF;
    v_bad := :TS._ts_record_cached_reads(p_tenant_id, p_key_names, p_versions, p_counts,
      pg_catalog.array_fill(p_since, ARRAY[COALESCE(pg_catalog.cardinality(p_key_names), 0)]),
      pg_catalog.array_fill(p_until, ARRAY[COALESCE(pg_catalog.cardinality(p_key_names), 0)]), p_ctx);
  END IF;
  IF v_bad IS NOT NULL THEN
    PERFORM :TS._ts_audit_invalid(p_tenant_id, 'secret.read', NULL, v_bad, p_ctx);
    RETURN QUERY SELECT 'invalid_input'::text, 0;
    RETURN;
  END IF;
  RETURN QUERY SELECT 'ok'::text, pg_catalog.cardinality(p_key_names);
END
$$;

COMMENT ON FUNCTION :TS.tenant_secret_audit_cached_reads(text, bytea, text[], integer[], integer[], bigint[], bigint[], jsonb) IS
  'tenant-secrets: audit reads served from the library''s cache, one record per secret and interval with the count (times by the database clock).';
COMMENT ON FUNCTION :TS.tenant_secret_audit_cached_reads(text, bytea, text[], integer[], integer[], timestamptz, timestamptz, jsonb) IS
  'tenant-secrets: audit reads served from the library''s cache (release 0.2 signature).';
