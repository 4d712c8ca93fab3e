-- tenant-secrets migration 000005: key status: what depends on which master key.
--
-- Wrapped (not destroyed) data keys and their tenants per master key id, signed audit checkpoints per
-- master key id, and totals; metadata only. It comes after 000004 because audit checkpoints are signed
-- in the library with a key derived from a master key: once that key leaves the ring they can no
-- longer be verified, so "ready to drop the previous key" must consider them as well as data keys.
CREATE FUNCTION :TS.tenant_secret_key_status()
RETURNS jsonb
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = '' AS $$
  SELECT pg_catalog.jsonb_build_object(
    'by_master_key', COALESCE((
      SELECT pg_catalog.jsonb_object_agg(m.master_key_id,
               pg_catalog.jsonb_build_object('keys', m.keys, 'tenants', m.tenants, 'active_keys', m.active_keys))
        FROM (SELECT k.master_key_id, pg_catalog.count(*) AS keys, pg_catalog.count(DISTINCT k.tenant_id) AS tenants,
                     pg_catalog.count(*) FILTER (WHERE k.state = 'active') AS active_keys
                FROM :TS.tenant_secret_keys k WHERE k.wrapped_key IS NOT NULL GROUP BY k.master_key_id) m),
      '{}'::jsonb),
    'checkpoints_by_master_key', COALESCE((
      SELECT pg_catalog.jsonb_object_agg(c.master_key_id, c.n)
        FROM (SELECT cp.master_key_id, pg_catalog.count(*) AS n
                FROM :TS.tenant_secret_audit_checkpoints cp GROUP BY cp.master_key_id) c),
      '{}'::jsonb),
    'tenants', (SELECT pg_catalog.count(DISTINCT k.tenant_id) FROM :TS.tenant_secret_keys k WHERE k.wrapped_key IS NOT NULL),
    'retired_keys', (SELECT pg_catalog.count(*) FROM :TS.tenant_secret_keys k WHERE k.state = 'retired'),
    'destroyed_keys', (SELECT pg_catalog.count(*) FROM :TS.tenant_secret_keys k WHERE k.state = 'destroyed'),
    'secrets', (SELECT pg_catalog.count(*) FROM :TS.tenant_secrets s),
    'versions', (SELECT pg_catalog.count(*) FROM :TS.tenant_secret_versions v WHERE v.encrypted_value IS NOT NULL))
$$;

COMMENT ON FUNCTION :TS.tenant_secret_key_status() IS
  'tenant-secrets: wrapped data keys and audit checkpoints per master key id, and totals (metadata only).';
