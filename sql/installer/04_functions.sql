-- Installer step 4: functions are code. When the recorded source fingerprint differs from this
-- release, or any function's catalog definition (or owner) differs from what the last install
-- recorded, every function of this release is created again from source, and the new catalog
-- fingerprints are recorded. When nothing differs, nothing is touched.
--
-- Functions are replaced in place (CREATE OR REPLACE keeps each function's OID): a process of the
-- previous release calling one while this runs goes on with the old body, and its next call finds
-- the new one, never a function that went missing. Only a function whose signature or result this
-- release changed is dropped and created (PostgreSQL cannot replace it in place), one owned by
-- another role is dropped first (replacing keeps the owner), and functions of ours that this release
-- no longer has are dropped at the end. Function calls take no lock, so this never waits on the
-- application.
-- Placeholders: :TS, :FUNCTIONS_DIGEST (a literal), :FUNCTION_SOURCES (dollar-quoted statements).
DO $ts_functions$
DECLARE
  v_pgc text := :PGC_LOOKUP;
  v_state jsonb;
  v_drift jsonb;
  v_before jsonb;
  v_dropped text[] := '{}';
  v_recreated text[] := '{}';
  v_kept text[] := '{}';
  v_name text;
  v_probe oid;
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
  -- A function of ours owned by another role: replacing it would keep that owner. Dropped, so that
  -- it is created again, owned by the installing role.
  FOR r IN SELECT p.oid::pg_catalog.regprocedure AS fn FROM pg_catalog.pg_proc p
            WHERE :OUR_FUNCTION AND p.proowner <> (SELECT u.oid FROM pg_catalog.pg_roles u WHERE u.rolname = current_user) LOOP
    EXECUTE pg_catalog.format('DROP FUNCTION %s', r.fn);
    v_dropped := v_dropped || r.fn::text;
  END LOOP;
  -- Every function of ours as it is now, to tell afterwards which ones this release did not replace
  -- (a replaced function's catalog row is a new row version: another xmin).
  SELECT COALESCE(pg_catalog.jsonb_object_agg(p.oid::text, p.xmin::text), '{}'::jsonb) INTO v_before
    FROM pg_catalog.pg_proc p WHERE :OUR_FUNCTION;
  FOREACH s IN ARRAY v_sources LOOP
    s := pg_catalog.replace(s, ':PGC', v_pgc);
    BEGIN
      EXECUTE s;
    EXCEPTION WHEN invalid_function_definition OR wrong_object_type THEN
      -- This release changed the function's result, parameter names or defaults: PostgreSQL replaces
      -- it only by dropping it. The signature comes from the source, created once under a probe name.
      v_name := pg_catalog.substr(pg_catalog.split_part(s, '(', 1), pg_catalog.length('CREATE OR REPLACE FUNCTION ') + 1);
      EXECUTE pg_catalog.replace(s, 'FUNCTION ' || v_name || '(', 'FUNCTION :TS._ts_install_probe(');
      SELECT p.oid INTO v_probe FROM pg_catalog.pg_proc p
       WHERE p.pronamespace = pg_catalog.to_regnamespace(':TS') AND p.proname = '_ts_install_probe';
      EXECUTE pg_catalog.format('DROP FUNCTION %s(%s)', v_name, pg_catalog.pg_get_function_identity_arguments(v_probe));
      EXECUTE pg_catalog.format('DROP FUNCTION %s', v_probe::pg_catalog.regprocedure);
      EXECUTE s;
      v_recreated := v_recreated || v_name;
    WHEN OTHERS THEN
      RAISE EXCEPTION 'tenant-secrets: installing "%" failed: %', pg_catalog.split_part(s, '(', 1), SQLERRM
        USING ERRCODE = SQLSTATE;
    END;
  END LOOP;
  -- Functions of ours this release does not have (or someone added): neither replaced nor new.
  FOR r IN SELECT p.oid::pg_catalog.regprocedure AS fn FROM pg_catalog.pg_proc p
            WHERE :OUR_FUNCTION AND v_before->>(p.oid::text) = p.xmin::text LOOP
    BEGIN
      EXECUTE pg_catalog.format('DROP FUNCTION %s', r.fn);
      v_dropped := v_dropped || r.fn::text;
    EXCEPTION WHEN dependent_objects_still_exist THEN
      v_kept := v_kept || r.fn::text;  -- something else depends on it: left as it is
    END;
  END LOOP;
  INSERT INTO :TS.tenant_secret_schema_state AS st (key, value, updated_at)
  SELECT 'functions', pg_catalog.jsonb_build_object(
           'source', :FUNCTIONS_DIGEST,
           'dropped', pg_catalog.to_jsonb(v_dropped),
           'recreated', pg_catalog.to_jsonb(v_recreated),
           'kept', pg_catalog.to_jsonb(v_kept),
           'catalog', pg_catalog.jsonb_object_agg(p.proname || '(' || pg_catalog.pg_get_function_identity_arguments(p.oid) || ')',
             pg_catalog.md5(pg_catalog.pg_get_functiondef(p.oid) || pg_catalog.pg_get_userbyid(p.proowner)))),
         pg_catalog.now()
    FROM pg_catalog.pg_proc p WHERE :OUR_FUNCTION
  ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, updated_at = EXCLUDED.updated_at;
END
$ts_functions$;
