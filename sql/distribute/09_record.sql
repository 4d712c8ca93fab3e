-- Distribution step 3: the catalog fingerprints of our functions recorded again (the dispatchers
-- replaced the delegated functions' bodies, and the helpers are new), so that migrate() and status()
-- see what this step installed, and report any later change by hand as drift. (Computed first: Citus
-- does not write a reference table from a query over the local catalog.)
-- Placeholders: :TS.
DO $ts_distribute_record$
DECLARE
  v_catalog jsonb;
  r record;
BEGIN
  -- The helpers this distribution added are internal: the owner's only, like every _ts_ function.
  FOR r IN SELECT p.oid::pg_catalog.regprocedure AS fn FROM pg_catalog.pg_proc p
            WHERE p.pronamespace = pg_catalog.to_regnamespace(':TS') AND p.proname LIKE '\_ts\_citus\_%'
              AND pg_catalog.has_function_privilege('public', p.oid, 'EXECUTE') LOOP
    EXECUTE pg_catalog.format('REVOKE ALL ON FUNCTION %s FROM PUBLIC', r.fn);
  END LOOP;
  SELECT pg_catalog.jsonb_object_agg(p.proname || '(' || pg_catalog.pg_get_function_identity_arguments(p.oid) || ')',
           pg_catalog.md5(pg_catalog.pg_get_functiondef(p.oid) || pg_catalog.pg_get_userbyid(p.proowner)))
    INTO v_catalog FROM pg_catalog.pg_proc p WHERE :OUR_FUNCTION;
  UPDATE :TS.tenant_secret_schema_state st
     SET value = pg_catalog.jsonb_set(st.value, '{catalog}', v_catalog), updated_at = pg_catalog.now()
   WHERE st.key = 'functions' AND st.value->'catalog' IS DISTINCT FROM v_catalog;
END
$ts_distribute_record$;
