-- tenant-secrets functions: guards that hold even when someone grants our tables to other roles.
--
-- Tables are reached only through SECURITY DEFINER functions. migrate() revokes every privilege it
-- did not grant, but a later `GRANT ALL ON ALL TABLES IN SCHEMA ... TO anon` (a common tutorial step)
-- hands out INSERT, UPDATE, DELETE, TRUNCATE and TRIGGER again until the next migrate(). Row-level
-- security (enabled, no policy) turns other roles' reads and writes into nothing, except for roles
-- with BYPASSRLS (Supabase's service_role). So every table also carries two guards that fire
-- whatever RLS says: one refuses INSERT, UPDATE and DELETE to every role but the owner, the other
-- TRUNCATE. And every function that writes checks first that no trigger it did not create is attached
-- to a table it writes (such a trigger would run with the owner's rights inside our functions).

-- BEFORE TRUNCATE trigger of every table: only the owner (or a member of its role) may truncate.
-- Attached to anything else (a role holding TRIGGER and EXECUTE after a hostile grant could make it a
-- row trigger, whose NULL would silently skip our inserts) it raises instead.
CREATE FUNCTION :TS._ts_guard_truncate() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP <> 'TRUNCATE' OR TG_LEVEL <> 'STATEMENT' OR TG_NAME <> 'tenant_secrets_guard_truncate' THEN
    RAISE EXCEPTION 'tenant-secrets: trigger % on % was not created by tenant-secrets; run migrate() to remove it', TG_NAME, TG_TABLE_NAME
      USING ERRCODE = 'TSSEC';
  END IF;
  IF NOT pg_catalog.pg_has_role(current_user,
       (SELECT c.relowner FROM pg_catalog.pg_class c WHERE c.oid = TG_RELID), 'MEMBER') THEN
    RAISE EXCEPTION 'tenant-secrets: TRUNCATE of % is reserved to its owner', TG_TABLE_NAME
      USING ERRCODE = '42501';
  END IF;
  RETURN NULL;
END
$$;

-- BEFORE INSERT OR UPDATE OR DELETE trigger of every table, for each statement, called only when the
-- role running the statement is not the table's owner (its WHEN clause names the owner, so the owner's
-- own statements, which is every statement of our SECURITY DEFINER functions, never call it): such a
-- role holds table grants, and may hold BYPASSRLS, but writes nothing.
CREATE FUNCTION :TS._ts_guard_write() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'tenant-secrets: % on % is reserved to the owner of the tenant-secrets schema; use the tenant-secrets functions', TG_OP, TG_TABLE_NAME
    USING ERRCODE = '42501';
END
$$;

-- Owner-only access to one of our relations: every other grant revoked; for tables, RLS on and both
-- guards in place (the write guard re-created when the owner changed).
CREATE FUNCTION :TS._ts_lock_down_table(p_table regclass) RETURNS void
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
  r record;
  c record;
BEGIN
  FOR r IN SELECT DISTINCT CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE pg_catalog.quote_ident(pg_catalog.pg_get_userbyid(a.grantee)) END AS grantee,
                  CASE WHEN x.relkind = 'S' THEN 'SEQUENCE ' ELSE '' END AS what
             FROM pg_catalog.pg_class x, LATERAL pg_catalog.aclexplode(x.relacl) a
            WHERE x.oid = p_table AND a.grantee <> x.relowner LOOP
    EXECUTE pg_catalog.format('REVOKE ALL ON %s%s FROM %s', r.what, p_table, r.grantee);
  END LOOP;
  SELECT * INTO c FROM pg_catalog.pg_class x WHERE x.oid = p_table;
  -- Only what is missing: ALTER TABLE and CREATE TRIGGER take locks that a migrate() run while the
  -- application works must not take when nothing changes.
  IF c.relkind IN ('r', 'p') THEN
    IF NOT c.relrowsecurity THEN
      EXECUTE pg_catalog.format('ALTER TABLE %s ENABLE ROW LEVEL SECURITY', p_table);
    END IF;
    IF :GUARDS_MISSING THEN
      EXECUTE pg_catalog.format('DROP TRIGGER IF EXISTS tenant_secrets_guard_truncate ON %s', p_table);
      EXECUTE pg_catalog.format('CREATE TRIGGER tenant_secrets_guard_truncate BEFORE TRUNCATE ON %s FOR EACH STATEMENT EXECUTE FUNCTION :TS._ts_guard_truncate()', p_table);
      EXECUTE pg_catalog.format('DROP TRIGGER IF EXISTS tenant_secrets_guard_write ON %s', p_table);
      EXECUTE pg_catalog.format('CREATE TRIGGER tenant_secrets_guard_write BEFORE INSERT OR UPDATE OR DELETE ON %s FOR EACH STATEMENT '
                                'WHEN (CURRENT_USER OPERATOR(pg_catalog.<>) %L::pg_catalog.name) EXECUTE FUNCTION :TS._ts_guard_write()',
                                p_table, pg_catalog.pg_get_userbyid(c.relowner));
    END IF;
  END IF;
END
$$;

-- Puts the audit id sequence back when a role that was granted UPDATE on it (GRANT ALL ON ALL
-- SEQUENCES) moved it towards its end: ids only order pending records, so the next id after the
-- highest pending one will do. The sequence cycles (migration 000007), so operations never stopped;
-- status() reports a moved sequence. Returns whether it was put back.
CREATE FUNCTION :TS._ts_repair_audit_sequence() RETURNS boolean
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
  IF :TS._ts_audit_sequence_moved() THEN
    PERFORM pg_catalog.setval(':TS.tenant_secret_audit_id_seq',
      COALESCE((SELECT pg_catalog.max(p.id) FROM :TS.tenant_secret_audit_pending p WHERE p.id < 4611686018427387904), 0) + 1, false);
    RETURN true;
  END IF;
  RETURN false;
END
$$;

-- Whether the audit id sequence sits in the upper half of its range, where no honest use takes it.
CREATE FUNCTION :TS._ts_audit_sequence_moved() RETURNS boolean
LANGUAGE sql STABLE AS $$
  SELECT s.last_value >= 4611686018427387904 FROM :TS.tenant_secret_audit_id_seq s
$$;

-- Our tables (including audit partitions): names starting with tenant_secret in our schema.
CREATE FUNCTION :TS._ts_tables() RETURNS SETOF regclass
LANGUAGE sql STABLE AS $$
  SELECT c.oid::regclass FROM pg_catalog.pg_class c
   WHERE c.relnamespace = ':TS'::regnamespace AND c.relkind IN ('r', 'p') AND c.relname LIKE 'tenant\_secret%'
$$;

-- Triggers, rules, policies, defaults and foreign keys on our tables that tenant-secrets did not
-- create (sql/shared/foreign_objects.sql: the installer runs the same query before it writes).
CREATE FUNCTION :TS._ts_foreign_objects()
RETURNS TABLE (kind text, table_name text, object_name text)
LANGUAGE sql STABLE AS $$
  SELECT f.kind, f.table_name, f.object_name FROM (:FOREIGN_OBJECTS) f ORDER BY 1, 2, 3
$$;

-- Whether a trigger tenant-secrets did not create sits on one of the given tables. A trigger is ours
-- when its function is one of our two guard functions (harmless wherever it is attached).
CREATE FUNCTION :TS._ts_foreign_trigger_on(p_tables pg_catalog.oid[]) RETURNS pg_catalog.oid
LANGUAGE plpgsql STABLE AS $$  -- plpgsql: a query with sublinks is never inlined as SQL
BEGIN
  RETURN (SELECT t.tgrelid FROM pg_catalog.pg_trigger t
           WHERE t.tgrelid = ANY (p_tables) AND NOT t.tgisinternal
             AND t.tgfoid NOT IN (SELECT p.oid FROM pg_catalog.pg_proc p
                                   WHERE p.pronamespace = pg_catalog.to_regnamespace(':TS')
                                     AND p.proname IN ('_ts_guard_truncate', '_ts_guard_write'))
           LIMIT 1);
END
$$;

-- Raises when a foreign trigger was found (p_table not NULL); true otherwise. An expression for the
-- main query of a single-statement entry function, whose data-modifying WITH clauses run after it.
CREATE FUNCTION :TS._ts_refuse_foreign_trigger(p_table pg_catalog.oid) RETURNS boolean
LANGUAGE plpgsql STABLE AS $$
BEGIN
  IF p_table IS NOT NULL THEN
    RAISE EXCEPTION 'tenant-secrets: a trigger tenant-secrets did not create is attached to %; run migrate() to remove it', p_table::regclass
      USING ERRCODE = 'TSSEC';
  END IF;
  RETURN true;
END
$$;

-- Run first by every multi-statement entry function that writes (every operation appends an audit
-- record): the tables it may write are locked in ROW EXCLUSIVE mode (never waits on the application,
-- which takes the same mode), so that no trigger can be attached to them until the call's transaction
-- ends, and then checked for foreign triggers. p_all = false covers the tables the tenant-scoped
-- functions write; true every table of ours, audit partitions included. Returns true.
CREATE FUNCTION :TS._ts_guard(p_all boolean) RETURNS boolean
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
  v_tables pg_catalog.oid[];
BEGIN
  IF p_all THEN
    v_tables := ARRAY(:OUR_TABLES ORDER BY 1);
    EXECUTE 'LOCK TABLE ' || (SELECT pg_catalog.string_agg(t::pg_catalog.regclass::text, ', ') FROM pg_catalog.unnest(v_tables) t)
         || ' IN ROW EXCLUSIVE MODE';
  ELSE
    LOCK TABLE :TS.tenant_secrets, :TS.tenant_secret_versions, :TS.tenant_secret_keys, :TS.tenant_secret_audit_pending,
               :TS.tenant_secret_purges IN ROW EXCLUSIVE MODE;
    v_tables := ARRAY[':TS.tenant_secrets'::pg_catalog.regclass, ':TS.tenant_secret_versions'::pg_catalog.regclass,
                      ':TS.tenant_secret_keys'::pg_catalog.regclass, ':TS.tenant_secret_audit_pending'::pg_catalog.regclass,
                      ':TS.tenant_secret_purges'::pg_catalog.regclass]::pg_catalog.oid[];
  END IF;
  RETURN :TS._ts_refuse_foreign_trigger(:TS._ts_foreign_trigger_on(v_tables));
END
$$;

-- Operator functions (audit trail, purges, key status, health) also run this first, so that EXECUTE
-- handed out by a hostile `GRANT ALL ON ALL FUNCTIONS` (before the next migrate() revokes it) buys
-- nothing: the caller must be the owner or a member of a role migrate() was told to grant operator
-- functions to. The caller is the role set with SET ROLE (PostgREST sets anon, authenticated, ...),
-- else the session's user: inside a SECURITY DEFINER function current_user is the owner.
CREATE FUNCTION :TS._ts_require_operator() RETURNS void
LANGUAGE plpgsql STABLE AS $$
DECLARE
  v_role text := pg_catalog.current_setting('role');
  v_caller name := CASE WHEN v_role IS NULL OR v_role = 'none' THEN session_user ELSE v_role::name END;
BEGIN
  IF pg_catalog.pg_has_role(v_caller, (SELECT c.relowner FROM pg_catalog.pg_class c WHERE c.oid = ':TS.tenant_secret_grants'::regclass), 'MEMBER')
     OR EXISTS (SELECT 1 FROM :TS.tenant_secret_grants g JOIN pg_catalog.pg_roles r ON r.rolname = g.role_name
                 WHERE g.kind = 'operator' AND pg_catalog.pg_has_role(v_caller, r.oid, 'MEMBER')) THEN
    RETURN;
  END IF;
  RAISE EXCEPTION 'tenant-secrets: operator function called by a role migrate() did not grant it to'
    USING ERRCODE = '42501';
END
$$;
