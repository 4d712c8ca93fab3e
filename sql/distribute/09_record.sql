-- Distribution step 3: the catalog fingerprints of our functions recorded again (the dispatchers
-- replaced the delegated functions' bodies, and the helpers are new), so that migrate() and status()
-- see what this step installed, and report any later change by hand as drift. (Computed first: Citus
-- does not write a reference table from a query over the local catalog.)
-- Placeholders: :TS.
DO $ts_distribute_record$
DECLARE
  v_catalog jsonb;
BEGIN
  SELECT pg_catalog.jsonb_object_agg(p.proname || '(' || pg_catalog.pg_get_function_identity_arguments(p.oid) || ')',
           pg_catalog.md5(pg_catalog.pg_get_functiondef(p.oid) || pg_catalog.pg_get_userbyid(p.proowner)))
    INTO v_catalog FROM pg_catalog.pg_proc p WHERE :OUR_FUNCTION;
  UPDATE :TS.tenant_secret_schema_state st
     SET value = pg_catalog.jsonb_set(st.value, '{catalog}', v_catalog), updated_at = pg_catalog.now()
   WHERE st.key = 'functions' AND st.value->'catalog' IS DISTINCT FROM v_catalog;
END
$ts_distribute_record$;
