-- tenant-secrets functions: guards that hold even when someone grants our tables to other roles.
--
-- Tables are reached only through SECURITY DEFINER functions. migrate() revokes every privilege it
-- did not grant, but a later `GRANT ALL ON ALL TABLES IN SCHEMA ... TO anon` (a common tutorial step)
-- hands out TRUNCATE and TRIGGER again until the next migrate(). Row-level security (enabled, no
-- policy) already turns other roles' INSERT/UPDATE/DELETE/SELECT into nothing; these guards cover the
-- rest: TRUNCATE is refused for everyone but the owner, and every function that writes checks that no
-- trigger, rule or policy it did not create is attached to our tables (such a trigger would run with
-- the owner's rights inside our functions).

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

-- Owner-only access to one of our tables: every other grant revoked, RLS on, TRUNCATE guard in place.
CREATE FUNCTION :TS._ts_lock_down_table(p_table regclass) RETURNS void
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
  r record;
BEGIN
  FOR r IN SELECT DISTINCT CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE pg_catalog.quote_ident(pg_catalog.pg_get_userbyid(a.grantee)) END AS grantee
             FROM pg_catalog.pg_class c, LATERAL pg_catalog.aclexplode(c.relacl) a
            WHERE c.oid = p_table AND a.grantee <> c.relowner LOOP
    EXECUTE pg_catalog.format('REVOKE ALL ON %s FROM %s', p_table, r.grantee);
  END LOOP;
  -- Only what is missing: ALTER TABLE takes an exclusive lock, which a migrate() run while the
  -- application works must not take when nothing changes.
  IF (SELECT c.relkind FROM pg_catalog.pg_class c WHERE c.oid = p_table) IN ('r', 'p') THEN
    IF NOT (SELECT c.relrowsecurity FROM pg_catalog.pg_class c WHERE c.oid = p_table) THEN
      EXECUTE pg_catalog.format('ALTER TABLE %s ENABLE ROW LEVEL SECURITY', p_table);
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_trigger t WHERE t.tgrelid = p_table AND t.tgname = 'tenant_secrets_guard_truncate') THEN
      EXECUTE pg_catalog.format('CREATE TRIGGER tenant_secrets_guard_truncate BEFORE TRUNCATE ON %s FOR EACH STATEMENT EXECUTE FUNCTION :TS._ts_guard_truncate()', p_table);
    END IF;
  END IF;
END
$$;

-- Our tables (including audit partitions): names starting with tenant_secret in our schema.
CREATE FUNCTION :TS._ts_tables() RETURNS SETOF regclass
LANGUAGE sql STABLE AS $$
  SELECT c.oid::regclass FROM pg_catalog.pg_class c
   WHERE c.relnamespace = ':TS'::regnamespace AND c.relkind IN ('r', 'p') AND c.relname LIKE 'tenant\_secret%'
$$;

-- Triggers, rules, policies and foreign keys on our tables that tenant-secrets did not create. Tables are named
-- schema-qualified whatever the caller's search_path (migrate() and status() report the same names).
CREATE FUNCTION :TS._ts_foreign_objects()
RETURNS TABLE (kind text, table_name text, object_name text)
LANGUAGE sql STABLE AS $$
  SELECT 'trigger', pg_catalog.format('%I.%I', ':TS'::regnamespace::name, c.relname), t.tgname::text
    FROM pg_catalog.pg_trigger t JOIN pg_catalog.pg_class c ON c.oid = t.tgrelid
   WHERE t.tgrelid IN (SELECT :TS._ts_tables()) AND NOT t.tgisinternal
     AND t.tgname <> 'tenant_secrets_guard_truncate'
     AND t.tgparentid = 0
  UNION ALL
  SELECT 'rule', pg_catalog.format('%I.%I', ':TS'::regnamespace::name, c.relname), r.rulename::text
    FROM pg_catalog.pg_rewrite r JOIN pg_catalog.pg_class c ON c.oid = r.ev_class
   WHERE r.ev_class IN (SELECT :TS._ts_tables()) AND r.rulename <> '_RETURN'
  UNION ALL
  SELECT 'policy', pg_catalog.format('%I.%I', ':TS'::regnamespace::name, c.relname), p.polname::text
    FROM pg_catalog.pg_policy p JOIN pg_catalog.pg_class c ON c.oid = p.polrelid
   WHERE p.polrelid IN (SELECT :TS._ts_tables())
  UNION ALL
  -- A foreign key from another table to ours (REFERENCES came with a hostile GRANT ALL): its checks
  -- read our tables as their owner, through row-level security, so inserting into that table tells
  -- whether a tenant has a secret of some name, and its NO ACTION blocks our deletes. Named by the
  -- table that carries it.
  SELECT 'foreign_key', pg_catalog.format('%I.%I', n.nspname, c.relname), k.conname::text
    FROM pg_catalog.pg_constraint k
    JOIN pg_catalog.pg_class c ON c.oid = k.conrelid
    JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
   WHERE k.contype = 'f' AND k.confrelid IN (SELECT :TS._ts_tables()) AND k.conrelid NOT IN (SELECT :TS._ts_tables())
  ORDER BY 1, 2, 3
$$;

-- Raised by writing functions when a foreign trigger sits on a table they are about to write: the
-- operation stops before that trigger could run with the owner's rights.
CREATE FUNCTION :TS._ts_check_no_foreign_triggers(p_table regclass) RETURNS void
LANGUAGE plpgsql STABLE AS $$
BEGIN
  IF EXISTS (SELECT 1 FROM pg_catalog.pg_trigger t
              WHERE t.tgrelid = p_table AND NOT t.tgisinternal AND t.tgname <> 'tenant_secrets_guard_truncate') THEN
    RAISE EXCEPTION 'tenant-secrets: a trigger tenant-secrets did not create is attached to %; run migrate() to remove it', p_table
      USING ERRCODE = 'TSSEC';
  END IF;
END
$$;

-- Run first by every entry function that writes (every operation appends an audit record): a trigger
-- someone attached to one of our tables (TRIGGER privilege handed out by a hostile grant, until the
-- next migrate() revokes it) would run with the owner's rights inside our functions, so nothing runs
-- while one is there. p_all = false checks the tables the tenant-scoped functions write (one index
-- probe each: the hot path pays ~10 µs); true checks every table of ours, audit partitions included.
CREATE FUNCTION :TS._ts_guard(p_all boolean) RETURNS boolean
LANGUAGE plpgsql STABLE AS $$
DECLARE
  v_table regclass;
BEGIN
  IF p_all THEN
    SELECT t.tgrelid INTO v_table FROM pg_catalog.pg_trigger t
     WHERE t.tgrelid IN (SELECT :TS._ts_tables()) AND NOT t.tgisinternal AND t.tgname <> 'tenant_secrets_guard_truncate'
     LIMIT 1;
  ELSE
    SELECT t.tgrelid INTO v_table FROM pg_catalog.pg_trigger t
     WHERE t.tgrelid = ANY (ARRAY[':TS.tenant_secrets'::regclass, ':TS.tenant_secret_versions'::regclass,
                                  ':TS.tenant_secret_keys'::regclass, ':TS.tenant_secret_audit_pending'::regclass,
                                  ':TS.tenant_secret_legacy_import'::regclass]::pg_catalog.oid[])
       AND NOT t.tgisinternal AND t.tgname <> 'tenant_secrets_guard_truncate'
     LIMIT 1;
  END IF;
  IF v_table IS NOT NULL THEN
    RAISE EXCEPTION 'tenant-secrets: a trigger tenant-secrets did not create is attached to %; run migrate() to remove it', v_table
      USING ERRCODE = 'TSSEC';
  END IF;
  RETURN true;
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
