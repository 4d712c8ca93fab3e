-- Distribution step 6: the installation's health report on a distributed installation. The same
-- fields as on one server, each read by a statement of its own (Citus 13.2 crashes the backend
-- planning the one-statement report, which mixes subqueries over reference tables, distributed
-- tables and the catalog). Placeholders: :TS.
CREATE OR REPLACE FUNCTION :TS.tenant_secret_health()
RETURNS jsonb
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = '' AS $$
DECLARE
  v_app text[];
  v_ops text[];
  v_version integer;
  v_foreign jsonb;
  v_unexpected jsonb;
  v_missing jsonb;
  v_unprotected jsonb;
  v_logging jsonb;
  v_registered jsonb;
  v_owner text;
  v_sealer jsonb;
  v_oldest timestamptz;
  v_nodigest bigint;
  v_anchors jsonb;
BEGIN
  PERFORM :TS._ts_require_operator();
  v_app := ARRAY(SELECT g.role_name FROM :TS.tenant_secret_grants g WHERE g.kind = 'app');
  v_ops := ARRAY(SELECT g.role_name FROM :TS.tenant_secret_grants g WHERE g.kind = 'operator');
  SELECT pg_catalog.max(m.id) INTO v_version FROM :TS.tenant_secret_migrations m;
  SELECT COALESCE(pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object('kind', f.kind, 'table', f.table_name, 'name', f.object_name)), '[]'::jsonb)
    INTO v_foreign FROM :TS._ts_foreign_objects() f;
  SELECT COALESCE(pg_catalog.jsonb_agg(u), '[]'::jsonb) INTO v_unexpected FROM :TS._ts_unexpected_privileges(v_app, v_ops) u;
  SELECT COALESCE(pg_catalog.jsonb_agg(m ORDER BY m.object, m.grantee), '[]'::jsonb) INTO v_missing FROM :TS._ts_missing_privileges(v_app, v_ops) m;
  SELECT COALESCE(pg_catalog.jsonb_agg(c.oid::regclass::text ORDER BY c.relname), '[]'::jsonb) INTO v_unprotected
    FROM pg_catalog.pg_class c WHERE c.oid IN (:OUR_TABLES) AND (NOT c.relrowsecurity OR :GUARDS_MISSING);
  SELECT pg_catalog.jsonb_object_agg(s.name, pg_catalog.jsonb_build_object('value', s.reset_val, 'session', s.setting)) INTO v_logging
    FROM pg_catalog.pg_settings s
   WHERE s.name IN ('log_statement', 'log_min_duration_statement', 'log_parameter_max_length',
                    'log_parameter_max_length_on_error', 'log_min_error_statement');
  SELECT COALESCE(pg_catalog.jsonb_agg(m.master_key_id ORDER BY m.master_key_id), '[]'::jsonb) INTO v_registered
    FROM :TS.tenant_secret_master_keys m;
  SELECT pg_catalog.pg_get_userbyid(p.proowner) INTO v_owner FROM pg_catalog.pg_proc p WHERE p.oid = ':TS.tenant_secret_quiet()'::regprocedure;
  v_sealer := :TS._ts_sealer_state();
  SELECT pg_catalog.min(p.occurred_at) INTO v_oldest FROM :TS.tenant_secret_audit_pending p;
  SELECT pg_catalog.count(*) INTO v_nodigest FROM :TS.tenant_secret_keys k
   WHERE k.state = 'active' AND (k.access_digest IS NULL OR k.dek_check IS NULL);
  SELECT pg_catalog.jsonb_build_object('count', pg_catalog.count(*), 'newest', pg_catalog.max(a.counter), 'newest_at', pg_catalog.max(a.created_at))
    INTO v_anchors FROM :TS.tenant_secret_audit_anchors a;
  RETURN pg_catalog.jsonb_build_object(
    'schema_version', v_version,
    'functions', :TS._ts_function_drift(),
    'foreign_objects', v_foreign,
    'unexpected_privileges', v_unexpected,
    'missing_privileges', v_missing,
    'unprotected_tables', v_unprotected,
    'grants', pg_catalog.jsonb_build_object('app', pg_catalog.to_jsonb(v_app), 'operator', pg_catalog.to_jsonb(v_ops)),
    'logging', v_logging,
    'quiet_success_path', :TS._ts_owner_may_quiet(),
    'auto_explain', CASE WHEN COALESCE(pg_catalog.current_setting('auto_explain.log_min_duration', true), '-1') <> '-1'
                         THEN pg_catalog.jsonb_build_object('log_min_duration', pg_catalog.current_setting('auto_explain.log_min_duration', true),
                                                             'suppressed', :TS._ts_owner_may_set('auto_explain.log_min_duration')) END,
    'pgaudit_log_parameter', pg_catalog.current_setting('pgaudit.log_parameter', true),
    'registered_master_keys', v_registered,
    'owner', v_owner,
    'sealer', v_sealer || pg_catalog.jsonb_build_object('oldest_pending', v_oldest),
    'audit_sequence_moved', :TS._ts_audit_sequence_moved(),
    'keys_without_access_digest', v_nodigest,
    'anchors', v_anchors,
    'now', pg_catalog.clock_timestamp());
END
$$;
