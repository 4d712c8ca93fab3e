-- tenant-secrets functions: the two functions of the original interface, upsert_tenant_secret and
-- get_tenant_secret.

-- ---------------------------------------------------------------------------------------------
-- The original interface, for SQL-side callers (e.g. Supabase RPC). Callers pass the tenant's key
-- bundle (the library's tenantKeyBundle()), never a master key. Failures are raised with
-- tenant-secrets' SQLSTATEs (docs/errors.md): a raised error rolls back the caller's transaction,
-- including the failure's audit record; tenant_secret_read / tenant_secret_write return a status.
-- ---------------------------------------------------------------------------------------------

CREATE FUNCTION :TS._ts_raise_status(p_status text) RETURNS void
LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
  CASE p_status
    WHEN 'ok' THEN RETURN;
    WHEN 'not_found' THEN RAISE EXCEPTION 'tenant-secrets: secret not found' USING ERRCODE = 'TS404';
    WHEN 'conflict' THEN RAISE EXCEPTION 'tenant-secrets: version conflict' USING ERRCODE = 'TS409';
    WHEN 'expired' THEN RAISE EXCEPTION 'tenant-secrets: secret expired' USING ERRCODE = 'TS410';
    WHEN 'invalid_input' THEN RAISE EXCEPTION 'tenant-secrets: invalid input' USING ERRCODE = 'TS400';
    WHEN 'unauthorized' THEN RAISE EXCEPTION 'tenant-secrets: the key bundle does not authorise this tenant' USING ERRCODE = 'TS401';
    WHEN 'unknown_master_key' THEN RAISE EXCEPTION 'tenant-secrets: data is wrapped under a master key that is not in the key bundle' USING ERRCODE = 'TSKEY';
    ELSE RAISE EXCEPTION 'tenant-secrets: integrity check failed' USING ERRCODE = 'TSINT';
  END CASE;
END
$$;

CREATE FUNCTION :TS.upsert_tenant_secret(p_tenant_id text, p_key_name text, p_plain_value text, p_key_bundle bytea)
RETURNS integer
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = '' SET plan_cache_mode = force_generic_plan AS $$
DECLARE
  r record;
BEGIN
  SELECT * INTO r FROM :TS.tenant_secret_write(p_tenant_id, p_key_name, pg_catalog.convert_to(p_plain_value, 'UTF8'),
                                                p_key_bundle, 'set', '{}', '{}'::jsonb);
  PERFORM :TS._ts_raise_status(r.status);
  RETURN r.version;
END
$$;

CREATE FUNCTION :TS.get_tenant_secret(p_tenant_id text, p_key_name text, p_key_bundle bytea)
RETURNS text
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = '' SET plan_cache_mode = force_generic_plan AS $$
DECLARE
  r record;
BEGIN
  SELECT * INTO r FROM :TS.tenant_secret_read(p_tenant_id, p_key_name, p_key_bundle, '{}'::jsonb, '{}'::jsonb);
  IF r.status = 'not_found' THEN
    RETURN NULL;
  END IF;
  PERFORM :TS._ts_raise_status(r.status);
  RETURN pg_catalog.convert_from(r.value, 'UTF8');
END
$$;

COMMENT ON FUNCTION :TS.upsert_tenant_secret(text, text, text, bytea) IS
  'tenant-secrets: create or replace a secret (original interface). Pass the tenant key bundle from tenantKeyBundle(); never a master key.';
COMMENT ON FUNCTION :TS.get_tenant_secret(text, text, bytea) IS
  'tenant-secrets: read a secret; NULL only when it does not exist (original interface).';
