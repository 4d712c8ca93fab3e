-- Installer step 4: functions are code. When the recorded source fingerprint differs from this
-- release, or any function's catalog definition (or owner) differs from what the last install
-- recorded, every function of ours is dropped and created again from source, and the new catalog
-- fingerprints are recorded. When nothing differs, nothing is touched. Function calls take no lock, so
-- this never waits on the application; the guard triggers' functions are replaced in place.
-- Placeholders: :TS, :FUNCTIONS_DIGEST (a literal), :FUNCTION_SOURCES (dollar-quoted statements).
DO $ts_functions$
DECLARE
  v_pgc text := :PGC_LOOKUP;
  v_state jsonb;
  v_drift jsonb;
  v_kept text[] := '{}';
  r record;
  s text;
  v_sources text[] := ARRAY[
:FUNCTION_SOURCES
  ];
BEGIN
  SELECT st.value INTO v_state FROM :TS.tenant_secret_schema_state st WHERE st.key = 'functions';
  IF v_state->>'source' = :FUNCTIONS_DIGEST
     AND pg_catalog.to_regprocedure(':TS._ts_function_drift()') IS NOT NULL THEN
    EXECUTE 'SELECT :TS._ts_function_drift()' INTO v_drift;
    IF v_drift->'missing' = '[]'::jsonb AND v_drift->'changed' = '[]'::jsonb AND v_drift->'unexpected' = '[]'::jsonb THEN
      RETURN;  -- installed, and nobody changed them
    END IF;
  END IF;
  -- Drop every function of ours (the guards' trigger functions are replaced in place: triggers depend
  -- on them). A function something else depends on is replaced in place too.
  FOR r IN SELECT p.oid::pg_catalog.regprocedure AS fn FROM pg_catalog.pg_proc p
            WHERE :OUR_FUNCTION AND p.proname NOT IN ('_ts_guard_truncate', '_ts_guard_write') LOOP
    BEGIN
      EXECUTE pg_catalog.format('DROP FUNCTION %s', r.fn);
    EXCEPTION WHEN dependent_objects_still_exist THEN
      v_kept := v_kept || r.fn::text;
    END;
  END LOOP;
  FOREACH s IN ARRAY v_sources LOOP
    BEGIN
      EXECUTE pg_catalog.replace(s, ':PGC', v_pgc);
    EXCEPTION WHEN OTHERS THEN
      RAISE EXCEPTION 'tenant-secrets: installing "%" failed: %', pg_catalog.split_part(s, '(', 1), SQLERRM
        USING ERRCODE = SQLSTATE;
    END;
  END LOOP;
  INSERT INTO :TS.tenant_secret_schema_state AS st (key, value, updated_at)
  SELECT 'functions', pg_catalog.jsonb_build_object(
           'source', :FUNCTIONS_DIGEST,
           'kept_in_place', pg_catalog.to_jsonb(v_kept),
           'catalog', pg_catalog.jsonb_object_agg(p.proname || '(' || pg_catalog.pg_get_function_identity_arguments(p.oid) || ')',
             pg_catalog.md5(pg_catalog.pg_get_functiondef(p.oid) || pg_catalog.pg_get_userbyid(p.proowner)))),
         pg_catalog.now()
    FROM pg_catalog.pg_proc p WHERE :OUR_FUNCTION
  ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, updated_at = EXCLUDED.updated_at;
END
$ts_functions$;
