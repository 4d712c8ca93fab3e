-- Installer step 2, before anything is written: make sure no code of anyone else's making can run.
--
-- A trigger, rule, policy or column default attached to one of our tables by a role holding TRIGGER
-- (a `GRANT ALL ON ALL TABLES` hands it out) would run with the rights of whoever writes that table:
-- inside this installer, the migrating role's. So, before the first write:
--   1. lock every table of ours (one wait at a time, never while holding another; otherwise in one
--      fixed order: by name, the audit tables last): in ROW EXCLUSIVE mode,
--      which does not block the application but lets no trigger, rule, policy or default be added
--      or changed until this transaction ends (those take stronger locks); in ACCESS EXCLUSIVE mode
--      the tables this run changes: those a pending migration alters (:MIGRATION_LOCKS, found in the
--      migrations' text by src/schema/installer.ts; a sequence counts as the table owning it), those
--      missing row-level security or a guard, and all of them when foreign objects are to be
--      removed. So every lock the later steps need is taken here, up front and in order: the
--      migration never waits for a lock while it holds another, and nothing can deadlock with the
--      application. All the waits together get the transaction's lock_timeout (migrate() sets a
--      short one and tries again): the application never queues behind this for longer;
--   2. remove what we did not create, and revoke every privilege on our relations that we did not
--      grant (nobody keeps TRIGGER or REFERENCES from here on).
-- Placeholders: :TS, :TS_NAME, :MIGRATION_IDS (ids of this library's table migrations),
-- :MIGRATION_LOCKS (a query of (id, relation name): what each migration alters).
DO $ts_guard$
DECLARE
  v_all boolean;
  v_strong oid[];
  v_budget_ms integer;
  v_started timestamptz;
  v_left integer;
  v_rels pg_catalog.regclass[];
  v_modes text[];
  v_wait integer;
  v_at integer;
  v_removed jsonb := '[]'::jsonb;
  r record;
BEGIN
  IF NOT EXISTS (:OUR_TABLES) THEN
    RETURN;  -- a first install: nothing to guard yet
  END IF;
  v_all := EXISTS (:FOREIGN_OBJECTS);
  -- What the pending migrations alter (an index counts as its table, a sequence as the table owning
  -- it), and tables missing row-level security or a guard (the lock-down step adds them).
  SELECT pg_catalog.array_agg(DISTINCT t.oid) INTO v_strong
    FROM (SELECT COALESCE(i.indrelid, d.refobjid, c.oid) AS oid
            FROM (:MIGRATION_LOCKS) AS m(id, rel)
            JOIN pg_catalog.pg_class c ON c.oid = pg_catalog.to_regclass(':TS.' || pg_catalog.quote_ident(m.rel))
            LEFT JOIN pg_catalog.pg_index i ON i.indexrelid = c.oid
            LEFT JOIN pg_catalog.pg_depend d ON c.relkind = 'S' AND d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass
                 AND d.objid = c.oid AND d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass AND d.deptype IN ('a', 'i')
           WHERE m.id NOT IN (SELECT t.id FROM :TS.tenant_secret_migrations t)
          UNION ALL
          SELECT c.oid FROM pg_catalog.pg_class c
           WHERE c.oid IN (:OUR_TABLES) AND (NOT c.relrowsecurity OR :GUARDS_MISSING)) t;
  -- One wait budget for all the locks: the lock_timeout in force (in milliseconds), at most 80% of
  -- deadlock_timeout: a call of the application waiting on a table locked here while holding one this
  -- waits for is released by this step's timeout, before PostgreSQL's deadlock check rolls it back.
  v_budget_ms := LEAST(
    COALESCE(NULLIF((SELECT s.setting::integer FROM pg_catalog.pg_settings s WHERE s.name = 'lock_timeout'), 0), 5000),
    GREATEST(1, (SELECT s.setting::integer FROM pg_catalog.pg_settings s WHERE s.name = 'deadlock_timeout') * 4 / 5));
  -- Never wait for one lock while holding another: each round waits for one table only (the one found
  -- busy in the round before), holding nothing else, then takes the others in order without waiting
  -- (NOWAIT). A table found busy releases everything this step took (the round is a subtransaction)
  -- and becomes the one to wait for next. A call of the application that holds one of our tables and
  -- needs another therefore never waits for this step while this step waits for it.
  SELECT pg_catalog.array_agg(c.oid::pg_catalog.regclass ORDER BY c.relname LIKE 'tenant\_secret\_audit%', c.relname),
         pg_catalog.array_agg(CASE WHEN v_all OR c.oid = ANY (COALESCE(v_strong, '{}')) THEN 'ACCESS EXCLUSIVE' ELSE 'ROW EXCLUSIVE' END
                              ORDER BY c.relname LIKE 'tenant\_secret\_audit%', c.relname)
    INTO v_rels, v_modes
    FROM pg_catalog.pg_class c WHERE c.oid IN (:OUR_TABLES);
  v_started := pg_catalog.clock_timestamp();
  LOOP
    v_left := v_budget_ms - (pg_catalog.date_part('epoch', pg_catalog.clock_timestamp() - v_started) * 1000)::integer;
    IF v_left < 1 THEN
      RAISE EXCEPTION 'tenant-secrets: table % was busy for % ms; nothing was changed (try again)',
        COALESCE(v_rels[v_wait]::text, '(any)'), v_budget_ms USING ERRCODE = 'lock_not_available';
    END IF;
    v_at := NULL;
    BEGIN
      IF v_wait IS NOT NULL THEN
        v_at := v_wait;
        PERFORM pg_catalog.set_config('lock_timeout', v_left || 'ms', true);
        EXECUTE pg_catalog.format('LOCK TABLE %s IN %s MODE', v_rels[v_wait], v_modes[v_wait]);
      END IF;
      FOR i IN 1 .. pg_catalog.array_length(v_rels, 1) LOOP
        CONTINUE WHEN i = v_wait;
        v_at := i;
        EXECUTE pg_catalog.format('LOCK TABLE %s IN %s MODE NOWAIT', v_rels[i], v_modes[i]);
      END LOOP;
      v_at := 0;
    EXCEPTION WHEN lock_not_available THEN
      -- Everything taken in this round is released; wait for the busy table first next round.
      v_wait := v_at;
    END;
    EXIT WHEN v_at = 0;
  END LOOP;
  PERFORM pg_catalog.set_config('lock_timeout', v_budget_ms || 'ms', true);
  IF NOT v_all AND EXISTS (:FOREIGN_OBJECTS) THEN
    -- Attached between the check and the locks: drop them under the strongest lock (another wait,
    -- bounded by lock_timeout; the attempt is tried again when it times out).
    FOR r IN SELECT c.oid::pg_catalog.regclass AS rel FROM pg_catalog.pg_class c WHERE c.oid IN (:OUR_TABLES) ORDER BY c.relname LOOP
      EXECUTE pg_catalog.format('LOCK TABLE %s IN ACCESS EXCLUSIVE MODE', r.rel);
    END LOOP;
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
