-- tenant-secrets functions: readiness, health (drift, hostile objects, privileges, logging) and the
-- per-call suppression of bind parameters in the server log.

-- The data-plane functions an application role is granted (everything else is an operator's).
CREATE FUNCTION :TS._ts_is_app_function(p_name name) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT p_name IN ('tenant_secret_write', 'tenant_secret_read', 'tenant_secret_read_many', 'tenant_secret_delete',
                    'tenant_secret_restore', 'tenant_secret_rollback', 'tenant_secret_destroy',
                    'tenant_secret_destroy_versions', 'tenant_secret_update_metadata', 'tenant_secret_list',
                    'tenant_secret_list_versions', 'upsert_tenant_secret', 'get_tenant_secret',
                    'tenant_secret_audit_seal', 'tenant_secret_register_master_key', 'tenant_secret_ready',
                    'tenant_secret_quiet', 'tenant_secret_audit_cached_reads', 'tenant_secret_fetch',
                    'tenant_secret_fetch_many', 'tenant_secret_fetch_batch', 'tenant_secret_put', 'tenant_secret_put_batch', 'tenant_secret_report',
                    'tenant_secret_open_transactions', 'tenant_secret_transactions_open')
$$;

-- Called by the library at the start of every call's transaction, before the call's parameters are
-- bound (tenant KEKs and values travel as parameters): keeps them out of the server log for this
-- transaction only, on the error path (log_parameter_max_length_on_error, which any role may set) and
-- on the success path (log_parameter_max_length) when the owner of this function may set it (a
-- superuser, or SET granted on it): then it works for every role that calls it. auto_explain, when
-- loaded, logs plans with bind parameters ("Query Parameters") and, for nested statements, the
-- values of function variables: it is switched off for the transaction as well, when the owner may.
-- Transaction-local and nothing remembered in the session, so nothing leaks to other clients of a
-- pooler. p_lock_timeout_ms (the library's lockTimeoutMs) bounds every lock wait of the call, unless
-- the session already has a shorter one: no lock anyone holds can stall a call without end.
CREATE FUNCTION :TS.tenant_secret_quiet(p_lock_timeout_ms integer) RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = '' AS $$
DECLARE
  v text;  -- set_config() as expressions: cheaper than PERFORM queries, and this runs before every call
  v_lock integer;
BEGIN
  IF p_lock_timeout_ms > 0 THEN
    v := pg_catalog.current_setting('lock_timeout');
    v_lock := CASE WHEN v = '0' THEN 0
                   WHEN v ~ '^[0-9]+$' THEN v::integer
                   WHEN v ~ '^[0-9]+ms$' THEN pg_catalog.rtrim(v, 'ms')::integer
                   WHEN v ~ '^[0-9]+s$' THEN pg_catalog.rtrim(v, 's')::integer * 1000
                   WHEN v ~ '^[0-9]+min$' THEN pg_catalog.rtrim(v, 'min')::integer * 60000 END;
    IF v_lock IS NULL OR v_lock = 0 OR v_lock > p_lock_timeout_ms THEN
      v := pg_catalog.set_config('lock_timeout', p_lock_timeout_ms::text, true);
    END IF;
  END IF;
  v := pg_catalog.set_config('log_parameter_max_length_on_error', '0', true);
  IF :TS._ts_may_set('log_parameter_max_length') THEN
    v := pg_catalog.set_config('log_parameter_max_length', '0', true);
  END IF;
  IF COALESCE(pg_catalog.current_setting('auto_explain.log_min_duration', true), '-1') <> '-1'
     AND :TS._ts_may_set('auto_explain.log_min_duration') THEN
    v := pg_catalog.set_config('auto_explain.log_min_duration', '-1', true);
  END IF;
END
$$;

-- Release 0.2's signature (its clients call this): no lock timeout of its own.
CREATE FUNCTION :TS.tenant_secret_quiet() RETURNS void
LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = '' AS $$
  SELECT :TS.tenant_secret_quiet(0)
$$;

-- Whether the current user may set parameter p_name. Inside tenant_secret_quiet() (SECURITY DEFINER)
-- the current user is that function's owner.
CREATE FUNCTION :TS._ts_may_set(p_name text) RETURNS boolean
LANGUAGE plpgsql STABLE AS $$
BEGIN
  IF pg_catalog.current_setting('server_version_num')::integer >= 150000 THEN
    RETURN pg_catalog.has_parameter_privilege(p_name, 'SET');  -- true for a superuser
  END IF;
  RETURN COALESCE((SELECT r.rolsuper FROM pg_catalog.pg_roles r WHERE r.rolname = current_user), false);
END
$$;

-- Whether the owner of these functions may set log_parameter_max_length (then tenant_secret_quiet()
-- suppresses parameters on the success path for every role that calls it).
CREATE FUNCTION :TS._ts_owner_may_set(p_name text) RETURNS boolean
LANGUAGE plpgsql STABLE AS $$
DECLARE
  v_owner oid := (SELECT p.proowner FROM pg_catalog.pg_proc p WHERE p.oid = ':TS.tenant_secret_quiet()'::regprocedure);
BEGIN
  IF (SELECT r.rolsuper FROM pg_catalog.pg_roles r WHERE r.oid = v_owner) THEN
    RETURN true;
  END IF;
  IF pg_catalog.current_setting('server_version_num')::integer >= 150000 THEN
    RETURN pg_catalog.has_parameter_privilege(v_owner, p_name, 'SET');
  END IF;
  RETURN false;
END
$$;

CREATE FUNCTION :TS._ts_owner_may_quiet() RETURNS boolean
LANGUAGE sql STABLE AS $$
  SELECT :TS._ts_owner_may_set('log_parameter_max_length')
$$;

-- What an application needs to know at start-up, callable with the application's grants: the schema
-- version, whether the installed functions match what migrate() installed, whether the given master
-- key ids are registered, whether the success-path parameter suppression works, and the sealer's state.
CREATE FUNCTION :TS.tenant_secret_ready(p_master_key_ids text[] DEFAULT '{}')
RETURNS jsonb
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = '' AS $$
DECLARE
  v_ids text[] := COALESCE(p_master_key_ids, '{}');
BEGIN
  IF pg_catalog.cardinality(v_ids) > 16 OR EXISTS (SELECT 1 FROM pg_catalog.unnest(v_ids) i(id) WHERE NOT :TS._ts_master_key_id_valid(i.id)) THEN
    RAISE EXCEPTION 'tenant-secrets: invalid master key id' USING ERRCODE = 'TS400';
  END IF;
  RETURN pg_catalog.jsonb_build_object(
    'schema_version', (SELECT pg_catalog.max(m.id) FROM :TS.tenant_secret_migrations m),
    'functions', :TS._ts_function_drift(),
    'registered', (SELECT COALESCE(pg_catalog.jsonb_agg(m.master_key_id ORDER BY m.master_key_id), '[]'::jsonb)
                     FROM :TS.tenant_secret_master_keys m WHERE m.master_key_id = ANY (v_ids)),
    'quiet_success_path', :TS._ts_owner_may_quiet(),
    'owner', (SELECT pg_catalog.pg_get_userbyid(p.proowner) FROM pg_catalog.pg_proc p WHERE p.oid = ':TS.tenant_secret_quiet()'::regprocedure),
    'caller', COALESCE(NULLIF(pg_catalog.current_setting('role'), 'none'), session_user::text),
    'logging', (SELECT pg_catalog.jsonb_object_agg(s.name, s.setting) FROM pg_catalog.pg_settings s
                 WHERE s.name IN ('log_statement', 'log_min_duration_statement', 'log_parameter_max_length')),
    'sealer', (SELECT pg_catalog.jsonb_build_object('last_sealed_at', s.last_sealed_at, 'sealed_total', s.sealed_total)
                 FROM :TS.tenant_secret_audit_sealer s WHERE s.id = 1));
END
$$;

-- Functions of ours whose catalog definition differs from what migrate() installed (stored in
-- tenant_secret_schema_state 'functions'): missing, changed, unexpected; and the source fingerprint.
CREATE FUNCTION :TS._ts_function_drift() RETURNS jsonb
LANGUAGE sql STABLE AS $$
  WITH expected AS (
    SELECT e.key AS sig, e.value #>> '{}' AS digest
      FROM :TS.tenant_secret_schema_state s, pg_catalog.jsonb_each(s.value->'catalog') e
     WHERE s.key = 'functions'),
  actual AS (
    SELECT p.proname || '(' || pg_catalog.pg_get_function_identity_arguments(p.oid) || ')' AS sig,
           pg_catalog.md5(pg_catalog.pg_get_functiondef(p.oid) || pg_catalog.pg_get_userbyid(p.proowner)) AS digest
      FROM pg_catalog.pg_proc p
     WHERE p.pronamespace = ':TS'::regnamespace
       AND (p.proname LIKE 'tenant\_secret%' OR p.proname LIKE '\_ts\_%' OR p.proname IN ('upsert_tenant_secret', 'get_tenant_secret')))
  SELECT pg_catalog.jsonb_build_object(
    'source', (SELECT s.value->'source' FROM :TS.tenant_secret_schema_state s WHERE s.key = 'functions'),
    'missing', COALESCE((SELECT pg_catalog.jsonb_agg(e.sig ORDER BY e.sig) FROM expected e
                          WHERE NOT EXISTS (SELECT 1 FROM actual a WHERE a.sig = e.sig)), '[]'::jsonb),
    'changed', COALESCE((SELECT pg_catalog.jsonb_agg(e.sig ORDER BY e.sig) FROM expected e JOIN actual a ON a.sig = e.sig
                          WHERE a.digest <> e.digest), '[]'::jsonb),
    'unexpected', COALESCE((SELECT pg_catalog.jsonb_agg(a.sig ORDER BY a.sig) FROM actual a
                             WHERE NOT EXISTS (SELECT 1 FROM expected e WHERE e.sig = a.sig)), '[]'::jsonb))
$$;

-- Everything an operator should know about the installation's integrity and exposure (metadata only):
-- function drift, triggers/rules/policies tenant-secrets did not create, privileges on our tables,
-- sequences and functions that migrate() did not grant, tables without RLS or the TRUNCATE guard,
-- the server's logging settings, registered master keys and the audit sealer's backlog.
CREATE FUNCTION :TS.tenant_secret_health()
RETURNS jsonb
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = '' AS $$
DECLARE
  v_app text[] := ARRAY(SELECT g.role_name FROM :TS.tenant_secret_grants g WHERE g.kind = 'app');
  v_ops text[] := ARRAY(SELECT g.role_name FROM :TS.tenant_secret_grants g WHERE g.kind = 'operator');
BEGIN
  PERFORM :TS._ts_require_operator();
  RETURN pg_catalog.jsonb_build_object(
    'schema_version', (SELECT pg_catalog.max(m.id) FROM :TS.tenant_secret_migrations m),
    'functions', :TS._ts_function_drift(),
    'foreign_objects', COALESCE((SELECT pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object('kind', f.kind, 'table', f.table_name, 'name', f.object_name))
                                   FROM :TS._ts_foreign_objects() f), '[]'::jsonb),
    'unexpected_privileges', COALESCE((SELECT pg_catalog.jsonb_agg(u) FROM :TS._ts_unexpected_privileges(v_app, v_ops) u), '[]'::jsonb),
    'missing_privileges', COALESCE((SELECT pg_catalog.jsonb_agg(m ORDER BY m.object, m.grantee) FROM :TS._ts_missing_privileges(v_app, v_ops) m), '[]'::jsonb),
    'unprotected_tables', COALESCE((
      SELECT pg_catalog.jsonb_agg(c.oid::regclass::text ORDER BY c.relname)
        FROM pg_catalog.pg_class c
       WHERE c.oid IN (:OUR_TABLES) AND (NOT c.relrowsecurity OR :GUARDS_MISSING)),
      '[]'::jsonb),
    'grants', pg_catalog.jsonb_build_object('app', pg_catalog.to_jsonb(v_app), 'operator', pg_catalog.to_jsonb(v_ops)),
    'logging', (SELECT pg_catalog.jsonb_object_agg(s.name, pg_catalog.jsonb_build_object('value', s.reset_val, 'session', s.setting))
                  FROM pg_catalog.pg_settings s
                 WHERE s.name IN ('log_statement', 'log_min_duration_statement', 'log_parameter_max_length',
                                  'log_parameter_max_length_on_error', 'log_min_error_statement')),
    'quiet_success_path', :TS._ts_owner_may_quiet(),
    -- Loaded extensions that log statements with their parameters on their own terms.
    'auto_explain', CASE WHEN COALESCE(pg_catalog.current_setting('auto_explain.log_min_duration', true), '-1') <> '-1'
                         THEN pg_catalog.jsonb_build_object('log_min_duration', pg_catalog.current_setting('auto_explain.log_min_duration', true),
                                                             'suppressed', :TS._ts_owner_may_set('auto_explain.log_min_duration')) END,
    'pgaudit_log_parameter', pg_catalog.current_setting('pgaudit.log_parameter', true),
    'registered_master_keys', (SELECT COALESCE(pg_catalog.jsonb_agg(m.master_key_id ORDER BY m.master_key_id), '[]'::jsonb)
                                 FROM :TS.tenant_secret_master_keys m),
    'owner', (SELECT pg_catalog.pg_get_userbyid(p.proowner) FROM pg_catalog.pg_proc p WHERE p.oid = ':TS.tenant_secret_quiet()'::regprocedure),
    'sealer', :TS._ts_sealer_state() || pg_catalog.jsonb_build_object(
                'oldest_pending', (SELECT pg_catalog.min(p.occurred_at) FROM :TS.tenant_secret_audit_pending p)),
    'audit_sequence_moved', :TS._ts_audit_sequence_moved(),
    'keys_without_access_digest', (SELECT pg_catalog.count(*) FROM :TS.tenant_secret_keys k
                                    WHERE k.state = 'active' AND (k.access_digest IS NULL OR k.dek_check IS NULL)),
    'anchors', (SELECT pg_catalog.jsonb_build_object('count', pg_catalog.count(*), 'newest', pg_catalog.max(a.counter),
                                                     'newest_at', pg_catalog.max(a.created_at))
                  FROM :TS.tenant_secret_audit_anchors a),
    'now', pg_catalog.clock_timestamp());
END
$$;

-- Privileges on our objects held by roles other than the owner that migrate() would not grant:
-- any table, view or sequence privilege; EXECUTE on internal helpers; EXECUTE on data-plane functions
-- for roles outside p_app / p_ops; EXECUTE on operator functions for roles outside p_ops.
CREATE FUNCTION :TS._ts_unexpected_privileges(p_app text[], p_ops text[])
RETURNS TABLE (object text, grantee text, privilege text)
LANGUAGE sql STABLE AS $$
  SELECT c.oid::regclass::text, CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE pg_catalog.pg_get_userbyid(a.grantee)::text END, a.privilege_type
    FROM pg_catalog.pg_class c, LATERAL pg_catalog.aclexplode(c.relacl) a
   WHERE c.relnamespace = ':TS'::regnamespace AND c.relkind IN ('r', 'p', 'v', 'S') AND c.relname LIKE 'tenant\_secret%'
     AND a.grantee <> c.relowner
  UNION ALL
  SELECT p.oid::regprocedure::text, CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE pg_catalog.pg_get_userbyid(a.grantee)::text END, a.privilege_type
    FROM pg_catalog.pg_proc p, LATERAL pg_catalog.aclexplode(COALESCE(p.proacl, pg_catalog.acldefault('f', p.proowner))) a
   WHERE p.pronamespace = ':TS'::regnamespace
     AND (p.proname LIKE 'tenant\_secret%' OR p.proname LIKE '\_ts\_%' OR p.proname IN ('upsert_tenant_secret', 'get_tenant_secret'))
     AND a.grantee <> p.proowner
     AND NOT (a.grantee <> 0 AND p.proname NOT LIKE '\_ts\_%'
              AND (pg_catalog.pg_get_userbyid(a.grantee)::text = ANY (p_ops)
                   OR (pg_catalog.pg_get_userbyid(a.grantee)::text = ANY (p_app) AND :TS._ts_is_app_function(p.proname))))
$$;

-- Privileges the configuration calls for that are missing (revoked by hand): USAGE on the schema
-- and EXECUTE on the functions each configured role (that exists) should have. migrate() grants them.
CREATE FUNCTION :TS._ts_missing_privileges(p_app text[], p_ops text[])
RETURNS TABLE (object text, grantee text, privilege text)
LANGUAGE sql STABLE AS $$
  WITH roles AS (
    SELECT DISTINCT g.role_name, g.role_name = ANY (p_ops) AS operator
      FROM pg_catalog.unnest(p_app || p_ops) AS g(role_name)
     WHERE EXISTS (SELECT 1 FROM pg_catalog.pg_roles r WHERE r.rolname = g.role_name))
  SELECT ':TS'::regnamespace::text, r.role_name, 'USAGE'
    FROM roles r
   WHERE NOT pg_catalog.has_schema_privilege(r.role_name, ':TS'::regnamespace, 'USAGE')
  UNION ALL
  SELECT p.oid::regprocedure::text, r.role_name, 'EXECUTE'
    FROM pg_catalog.pg_proc p, roles r
   WHERE p.pronamespace = ':TS'::regnamespace
     AND (p.proname LIKE 'tenant\_secret%' OR p.proname IN ('upsert_tenant_secret', 'get_tenant_secret'))
     AND (r.operator OR :TS._ts_is_app_function(p.proname))
     AND NOT pg_catalog.has_function_privilege(r.role_name, p.oid, 'EXECUTE')
$$;

COMMENT ON FUNCTION :TS.tenant_secret_quiet(integer) IS
  'tenant-secrets: keep this transaction''s bind parameters out of the server log and bound its lock waits (called before every call that carries key material or values).';
COMMENT ON FUNCTION :TS.tenant_secret_quiet() IS
  'tenant-secrets: keep bind parameters out of the server log for the current transaction (called before each call).';
COMMENT ON FUNCTION :TS.tenant_secret_ready(text[]) IS
  'tenant-secrets: readiness for an application role: schema version, function drift, registered master keys, sealer state.';
COMMENT ON FUNCTION :TS.tenant_secret_health() IS
  'tenant-secrets: drift, hostile objects and privileges, unprotected tables, logging settings, sealer backlog (metadata only).';
