-- Installer step 2, before anything is written: make sure no code of anyone else's making can run.
--
-- A trigger, rule, policy or column default attached to one of our tables by a role holding TRIGGER
-- (a `GRANT ALL ON ALL TABLES` hands it out) would run with the rights of whoever writes that table:
-- inside this installer, the migrating role's. So, before the first write:
--   1. lock every table of ours, in one statement and one fixed order (by name), in ROW EXCLUSIVE
--      mode: it does not block the application, but no trigger, rule, policy or default can be added
--      or changed until this transaction ends (those take stronger locks);
--      in ACCESS EXCLUSIVE mode at once when this run changes tables (a migration to apply, foreign
--      objects to remove, guards or row-level security to put in place), so that every lock it needs
--      is taken up front and in order: nothing can deadlock with the application;
--   2. remove what we did not create, and revoke every privilege on our relations that we did not
--      grant (nobody keeps TRIGGER or REFERENCES from here on).
-- Placeholders: :TS, :TS_NAME, :MIGRATION_IDS (ids of this library's table migrations).
DO $ts_guard$
DECLARE
  v_tables text;
  v_strong boolean;
  v_removed jsonb := '[]'::jsonb;
  r record;
BEGIN
  SELECT pg_catalog.string_agg(c.oid::pg_catalog.regclass::text, ', ' ORDER BY c.relname) INTO v_tables
    FROM pg_catalog.pg_class c WHERE c.oid IN (:OUR_TABLES);
  IF v_tables IS NULL THEN
    RETURN;  -- a first install: nothing to guard yet
  END IF;
  v_strong := EXISTS (SELECT 1 FROM pg_catalog.unnest(ARRAY[:MIGRATION_IDS]) AS m(id)
                       WHERE m.id NOT IN (SELECT t.id FROM :TS.tenant_secret_migrations t))
           OR EXISTS (:FOREIGN_OBJECTS)
           OR EXISTS (SELECT 1 FROM pg_catalog.pg_class c
                       WHERE c.oid IN (:OUR_TABLES) AND (NOT c.relrowsecurity OR :GUARDS_MISSING));
  EXECUTE pg_catalog.format('LOCK TABLE %s IN %s MODE', v_tables, CASE WHEN v_strong THEN 'ACCESS EXCLUSIVE' ELSE 'ROW EXCLUSIVE' END);
  IF NOT v_strong AND EXISTS (:FOREIGN_OBJECTS) THEN
    -- Attached between the check and the lock.
    EXECUTE pg_catalog.format('LOCK TABLE %s IN ACCESS EXCLUSIVE MODE', v_tables);
  END IF;
  FOR r IN :FOREIGN_OBJECTS LOOP
    BEGIN
      EXECUTE pg_catalog.format(CASE r.kind WHEN 'trigger' THEN 'DROP TRIGGER %1$I ON %2$s'
                                            WHEN 'rule' THEN 'DROP RULE %1$I ON %2$s'
                                            WHEN 'policy' THEN 'DROP POLICY %1$I ON %2$s'
                                            WHEN 'default' THEN 'ALTER TABLE %2$s ALTER COLUMN %1$I DROP DEFAULT'
                                            ELSE 'ALTER TABLE %2$s DROP CONSTRAINT %1$I' END, r.object_name, r.table_name);
    EXCEPTION WHEN insufficient_privilege THEN
      RAISE EXCEPTION 'tenant-secrets: % % on % was not created by tenant-secrets and this role may not drop it; drop it as its owner or a superuser, then run migrate() again',
        r.kind, r.object_name, r.table_name USING ERRCODE = 'TSSEC';
    END;
    v_removed := v_removed || pg_catalog.jsonb_build_object('kind', r.kind, 'table', r.table_name, 'name', r.object_name);
  END LOOP;
  -- Privileges on our tables, partitions, views and sequences: the owner's only (catalog rows; no
  -- lock, no code of anyone else runs).
  FOR r IN SELECT DISTINCT c.oid::pg_catalog.regclass AS obj,
                  CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE pg_catalog.quote_ident(pg_catalog.pg_get_userbyid(a.grantee)) END AS grantee,
                  CASE WHEN c.relkind = 'S' THEN 'SEQUENCE ' ELSE '' END AS what
             FROM pg_catalog.pg_class c, LATERAL pg_catalog.aclexplode(c.relacl) a
            WHERE c.relnamespace = pg_catalog.to_regnamespace(':TS') AND c.relkind IN ('r', 'p', 'v', 'S')
              AND c.relname LIKE 'tenant\_secret%' AND a.grantee <> c.relowner LOOP
    EXECUTE pg_catalog.format('REVOKE ALL ON %s%s FROM %s', r.what, r.obj, r.grantee);
  END LOOP;
  -- For the lock-down step to report (this transaction only).
  PERFORM pg_catalog.set_config('tenant_secrets.removed', v_removed::text, true);
END
$ts_guard$;
