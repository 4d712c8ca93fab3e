-- Installer step 5: privileges and guards. The roles migrate() was given are recorded (or the
-- recorded ones kept); every table of ours gets row-level security (no policy) and its two guards;
-- EXECUTE goes only to the recorded roles (internal helpers: the owner only); a tampered audit id
-- sequence is put back. Step 2 already removed foreign objects and revoked table privileges.
-- Placeholders: :TS, :TS_NAME, :SET_GRANTS (statements recording grantTo / grantOperatorTo, or nothing).
DO $ts_lockdown$
DECLARE
  r record;
  g text;
  v_app text[];
  v_ops text[];
BEGIN
:SET_GRANTS
  v_app := ARRAY(SELECT g.role_name FROM :TS.tenant_secret_grants g WHERE g.kind = 'app');
  v_ops := ARRAY(SELECT g.role_name FROM :TS.tenant_secret_grants g WHERE g.kind = 'operator');

  FOR r IN SELECT c.oid::pg_catalog.regclass AS obj FROM pg_catalog.pg_class c
            WHERE c.relnamespace = pg_catalog.to_regnamespace(':TS') AND c.relkind IN ('r', 'p', 'v', 'S')
              AND c.relname LIKE 'tenant\_secret%' LOOP
    PERFORM :TS._ts_lock_down_table(r.obj);
  END LOOP;
  PERFORM :TS._ts_repair_audit_sequence();

  -- Functions: EXECUTE only for the configured roles (internal helpers: the owner only). Grants the
  -- configuration calls for are left in place (revoking and granting them again rewrites the catalog).
  FOR r IN SELECT DISTINCT p.oid::pg_catalog.regprocedure AS fn,
                  CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE pg_catalog.quote_ident(pg_catalog.pg_get_userbyid(a.grantee)) END AS grantee
             FROM pg_catalog.pg_proc p, LATERAL pg_catalog.aclexplode(COALESCE(p.proacl, pg_catalog.acldefault('f', p.proowner))) a
            WHERE :OUR_FUNCTION AND a.grantee <> p.proowner
              AND NOT (a.grantee <> 0 AND p.proname NOT LIKE '\_ts\_%'
                       AND (pg_catalog.pg_get_userbyid(a.grantee)::text = ANY (v_ops)
                            OR (pg_catalog.pg_get_userbyid(a.grantee)::text = ANY (v_app) AND :TS._ts_is_app_function(p.proname)))) LOOP
    EXECUTE pg_catalog.format('REVOKE ALL ON FUNCTION %s FROM %s', r.fn, r.grantee);
  END LOOP;
  -- Grants, only where missing (a migrate() that changes nothing writes no catalog row).
  FOREACH g IN ARRAY v_app || v_ops LOOP
    IF NOT pg_catalog.has_schema_privilege(g, :TS_NAME, 'USAGE') THEN
      EXECUTE pg_catalog.format('GRANT USAGE ON SCHEMA %s TO %I', ':TS', g);
    END IF;
  END LOOP;
  FOR r IN SELECT p.oid::pg_catalog.regprocedure AS fn, p.oid, p.proname FROM pg_catalog.pg_proc p
            WHERE :OUR_FUNCTION AND p.proname NOT LIKE '\_ts\_%' LOOP
    FOREACH g IN ARRAY v_ops || CASE WHEN :TS._ts_is_app_function(r.proname) THEN v_app ELSE '{}'::text[] END LOOP
      IF NOT pg_catalog.has_function_privilege(g, r.oid, 'EXECUTE') THEN
        EXECUTE pg_catalog.format('GRANT EXECUTE ON FUNCTION %s TO %I', r.fn, g);
      END IF;
    END LOOP;
  END LOOP;

  INSERT INTO :TS.tenant_secret_schema_state AS st (key, value, updated_at)
  VALUES ('last_lockdown', pg_catalog.jsonb_build_object(
            'removed', COALESCE(NULLIF(pg_catalog.current_setting('tenant_secrets.removed', true), '')::jsonb, '[]'::jsonb),
            'app', pg_catalog.to_jsonb(v_app), 'operator', pg_catalog.to_jsonb(v_ops)), pg_catalog.now())
  ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, updated_at = EXCLUDED.updated_at;
END
$ts_lockdown$;
