import { quoteSchema } from '../db/schema-name.js';
import { FUNCTIONS, FUNCTIONS_DIGEST, MIGRATIONS } from './sql.generated.js';

/**
 * The installer: one SQL script that brings a database to this library's schema, whatever state it is
 * in. `migrate()` runs it in one transaction; `exportSchemaSql()` / `tenant-secrets sql` print it for
 * migration tools (Supabase). It is idempotent, so re-applying it (or a newer one) is always safe:
 *
 * 1. prologue: advisory lock, schema, pgcrypto (found wherever it is installed, e.g. Supabase's
 *    `extensions`; created in `extensions` when that schema exists, else in ours), refusal to touch a
 *    `tenant_secrets` table it did not create;
 * 2. every table migration not yet recorded, in id order;
 * 3. functions: when the catalog differs from what the last install recorded (an upgrade, or a
 *    function dropped or replaced by hand), every function is dropped and created again from source,
 *    and the new catalog fingerprints are recorded;
 * 4. lock-down: triggers, rules, policies and foreign keys on our tables that we did not create are removed; every
 *    privilege on our tables and functions not granted by configuration is revoked; RLS and the
 *    TRUNCATE guard are in place; then EXECUTE is granted to the configured application and operator roles.
 */

/** Roles as `migrate()` accepts them: PostgreSQL identifiers without quotes. */
export const ROLE_PATTERN = /^[A-Za-z_][A-Za-z0-9_$-]{0,62}$/;

/**
 * Names that are not one role: `public` (GRANT ... TO public hands the functions to every role),
 * `none` and the CURRENT_USER-like keywords, and PostgreSQL's predefined `pg_` roles.
 */
const RESERVED_ROLE = /^(public|none|current_user|session_user|current_role|pg_.*)$/i;

/** Whether `migrate()` and `exportSchemaSql()` accept `role` for grantTo / grantOperatorTo. */
export function isGrantableRole(role: unknown): role is string {
  return typeof role === 'string' && ROLE_PATTERN.test(role) && !RESERVED_ROLE.test(role);
}

/** Arbitrary constant for pg_advisory_xact_lock; the second key is the schema name's hash. */
export const MIGRATE_LOCK_CLASS = 0x7453_6563; // "tSec"

export interface InstallerOptions {
  schema: string;
  /** Application roles (data-plane functions). `undefined` keeps what the database has recorded. */
  grantTo?: readonly string[] | undefined;
  /** Operator roles (every public function). `undefined` keeps what the database has recorded. */
  grantOperatorTo?: readonly string[] | undefined;
  /** Only migrations newer than this schema version (for incremental scripts). */
  fromVersion?: number;
}

const literal = (text: string) => `'${text.replace(/'/g, "''")}'`;

function dollar(text: string): string {
  if (text.includes('$ts_sql$')) throw new Error('SQL source contains the reserved tag $ts_sql$');
  return `$ts_sql$${text}$ts_sql$`;
}

/** Substitutes our schema for `:TS` (pgcrypto's `:PGC` is resolved when the script runs). */
function withSchema(sql: string, ts: string): string {
  return sql.replace(/:TS\b/g, ts);
}

function prologue(schema: string, ts: string): string {
  const ns = literal(schema);
  return `DO $ts_prologue$
DECLARE
  v_pgc text;
  v_cols text[];
BEGIN
  PERFORM pg_catalog.pg_advisory_xact_lock(${MIGRATE_LOCK_CLASS}, pg_catalog.hashtext(${ns}));
  IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_namespace n WHERE n.nspname = ${ns}) THEN
    EXECUTE 'CREATE SCHEMA ${ts.replace(/'/g, "''")}';
  END IF;
  SELECT n.nspname INTO v_pgc FROM pg_catalog.pg_extension e JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace
   WHERE e.extname = 'pgcrypto';
  IF v_pgc IS NULL THEN
    v_pgc := CASE WHEN EXISTS (SELECT 1 FROM pg_catalog.pg_namespace n WHERE n.nspname = 'extensions') THEN 'extensions' ELSE ${ns} END;
    EXECUTE pg_catalog.format('CREATE EXTENSION IF NOT EXISTS pgcrypto WITH SCHEMA %I', v_pgc);
    RAISE NOTICE 'tenant-secrets: installed pgcrypto in schema %', v_pgc;
  END IF;
  IF pg_catalog.to_regclass(${literal(`${ts}.tenant_secret_migrations`)}) IS NULL THEN
    SELECT pg_catalog.array_agg(c.column_name::text) INTO v_cols FROM information_schema.columns c
     WHERE c.table_schema = ${ns} AND c.table_name = 'tenant_secrets';
    IF v_cols IS NOT NULL THEN
      IF v_cols @> ARRAY['encrypted_value', 'tenant_id', 'key_name'] THEN
        RAISE EXCEPTION 'tenant-secrets: found a "%.tenant_secrets" table in the shape of the original code (zero-IV AES-CBC without a MAC); nothing was changed. Convert it with "tenant-secrets import-legacy" (docs/runbooks/legacy-import.md), or install tenant-secrets in another schema.', ${ns}
          USING ERRCODE = 'TSLEG';
      END IF;
      RAISE EXCEPTION 'tenant-secrets: a table "%.tenant_secrets" already exists and was not created by tenant-secrets; nothing was changed. Rename it, or install tenant-secrets in another schema.', ${ns}
        USING ERRCODE = 'TSLEG';
    END IF;
  END IF;
  CREATE TABLE IF NOT EXISTS ${ts}.tenant_secret_migrations (
    id integer PRIMARY KEY,
    name text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
  );
  IF (SELECT pg_catalog.max(m.id) FROM ${ts}.tenant_secret_migrations m) > ${Math.max(...MIGRATIONS.map((m) => m.id))} THEN
    RAISE EXCEPTION 'tenant-secrets: the database schema is newer than this library; upgrade tenant-secrets' USING ERRCODE = 'TSNEW';
  END IF;
END
$ts_prologue$;`;
}

/** pgcrypto's schema, quoted, as the script finds it when it runs. */
const PGC_LOOKUP = `(SELECT pg_catalog.quote_ident(n.nspname) FROM pg_catalog.pg_extension e
                     JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace WHERE e.extname = 'pgcrypto')`;

function migrationBlocks(ts: string, fromVersion: number): string[] {
  return MIGRATIONS.filter((m) => m.id > fromVersion).map(
    (m) => `DO $ts_migration$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM ${ts}.tenant_secret_migrations m WHERE m.id = ${m.id}) THEN
    EXECUTE pg_catalog.replace(${dollar(withSchema(m.sql, ts))}, ':PGC', ${PGC_LOOKUP});
    INSERT INTO ${ts}.tenant_secret_migrations (id, name) VALUES (${m.id}, ${literal(m.name)});
  END IF;
END
$ts_migration$;`,
  );
}

function functionsBlock(schema: string, ts: string): string {
  const statements = FUNCTIONS.map((f) =>
    dollar(withSchema(f.sql, ts).replace(/^CREATE FUNCTION /, 'CREATE OR REPLACE FUNCTION ')),
  );
  const ours = `p.pronamespace = ${literal(schema)}::regnamespace
       AND (p.proname LIKE 'tenant\\_secret%' OR p.proname LIKE '\\_ts\\_%' OR p.proname IN ('upsert_tenant_secret', 'get_tenant_secret'))`;
  return `DO $ts_functions$
DECLARE
  v_pgc text := ${PGC_LOOKUP};
  v_state jsonb;
  v_drift jsonb;
  v_kept text[] := '{}';
  r record;
  s text;
  v_sources text[] := ARRAY[
${statements.join(',\n')}
  ];
BEGIN
  SELECT st.value INTO v_state FROM ${ts}.tenant_secret_schema_state st WHERE st.key = 'functions';
  IF v_state->>'source' = ${literal(FUNCTIONS_DIGEST)}
     AND pg_catalog.to_regprocedure(${literal(`${ts}._ts_function_drift()`)}) IS NOT NULL THEN
    EXECUTE 'SELECT ${ts.replace(/'/g, "''")}._ts_function_drift()' INTO v_drift;
    IF v_drift->'missing' = '[]'::jsonb AND v_drift->'changed' = '[]'::jsonb AND v_drift->'unexpected' = '[]'::jsonb THEN
      RETURN;  -- installed, and nobody changed them
    END IF;
  END IF;
  -- Drop every function of ours (the TRUNCATE guard's trigger function is replaced in place: triggers
  -- depend on it). A function something else depends on is replaced in place too.
  FOR r IN SELECT p.oid::regprocedure AS fn FROM pg_catalog.pg_proc p
            WHERE ${ours} AND p.proname <> '_ts_guard_truncate' LOOP
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
  INSERT INTO ${ts}.tenant_secret_schema_state AS st (key, value, updated_at)
  SELECT 'functions', pg_catalog.jsonb_build_object(
           'source', ${literal(FUNCTIONS_DIGEST)},
           'kept_in_place', pg_catalog.to_jsonb(v_kept),
           'catalog', pg_catalog.jsonb_object_agg(p.proname || '(' || pg_catalog.pg_get_function_identity_arguments(p.oid) || ')',
             pg_catalog.md5(pg_catalog.pg_get_functiondef(p.oid) || pg_catalog.pg_get_userbyid(p.proowner)))),
         pg_catalog.now()
    FROM pg_catalog.pg_proc p WHERE ${ours}
  ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, updated_at = EXCLUDED.updated_at;
END
$ts_functions$;`;
}

function rolesArray(roles: readonly string[]): string {
  for (const role of roles) {
    if (!isGrantableRole(role)) throw new Error(`invalid role name ${JSON.stringify(role)}`);
  }
  return roles.length === 0 ? `'{}'::text[]` : `ARRAY[${roles.map(literal).join(', ')}]::text[]`;
}

function lockdownBlock(schema: string, ts: string, options: InstallerOptions): string {
  const ns = `${literal(schema)}::regnamespace`;
  const setGrants = (kind: 'app' | 'operator', roles: readonly string[] | undefined) =>
    roles === undefined
      ? ''
      : `  DELETE FROM ${ts}.tenant_secret_grants g WHERE g.kind = '${kind}';
  INSERT INTO ${ts}.tenant_secret_grants (role_name, kind) SELECT DISTINCT u.role_name, '${kind}' FROM pg_catalog.unnest(${rolesArray(roles)}) AS u(role_name);
`;
  return `DO $ts_lockdown$
DECLARE
  r record;
  g text;
  v_removed jsonb := '[]'::jsonb;
  v_app text[];
  v_ops text[];
BEGIN
${setGrants('app', options.grantTo)}${setGrants('operator', options.grantOperatorTo)}  v_app := ARRAY(SELECT g.role_name FROM ${ts}.tenant_secret_grants g WHERE g.kind = 'app');
  v_ops := ARRAY(SELECT g.role_name FROM ${ts}.tenant_secret_grants g WHERE g.kind = 'operator');

  -- Triggers, rules, policies and foreign keys on our tables that we did not create: a trigger would
  -- run with the owner's rights inside our functions; a foreign key's checks read our tables.
  FOR r IN SELECT * FROM ${ts}._ts_foreign_objects() LOOP
    BEGIN
      EXECUTE pg_catalog.format(CASE r.kind WHEN 'trigger' THEN 'DROP TRIGGER %1$I ON %2$s' WHEN 'rule' THEN 'DROP RULE %1$I ON %2$s'
                                            WHEN 'policy' THEN 'DROP POLICY %1$I ON %2$s'
                                            ELSE 'ALTER TABLE %2$s DROP CONSTRAINT %1$I' END, r.object_name, r.table_name);
    EXCEPTION WHEN insufficient_privilege THEN
      RAISE EXCEPTION 'tenant-secrets: % % on % depends on tenant-secrets'' tables and this role may not drop it; drop it as its owner or a superuser, then run migrate() again',
        r.kind, r.object_name, r.table_name USING ERRCODE = 'TSSEC';
    END;
    v_removed := v_removed || pg_catalog.jsonb_build_object('kind', r.kind, 'table', r.table_name, 'name', r.object_name);
  END LOOP;

  -- Tables (and audit partitions), views, sequences: the owner only; RLS and the TRUNCATE guard on tables.
  FOR r IN SELECT c.oid::regclass AS obj FROM pg_catalog.pg_class c
            WHERE c.relnamespace = ${ns} AND c.relkind IN ('r', 'p', 'v', 'S') AND c.relname LIKE 'tenant\\_secret%' LOOP
    PERFORM ${ts}._ts_lock_down_table(r.obj);
  END LOOP;

  -- Functions: EXECUTE only for the configured roles (internal helpers: the owner only). Grants the
  -- configuration calls for are left in place (revoking and granting them again rewrites the catalog).
  FOR r IN SELECT DISTINCT p.oid::regprocedure AS fn,
                  CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE pg_catalog.quote_ident(pg_catalog.pg_get_userbyid(a.grantee)) END AS grantee
             FROM pg_catalog.pg_proc p, LATERAL pg_catalog.aclexplode(COALESCE(p.proacl, pg_catalog.acldefault('f', p.proowner))) a
            WHERE p.pronamespace = ${ns} AND a.grantee <> p.proowner
              AND (p.proname LIKE 'tenant\\_secret%' OR p.proname LIKE '\\_ts\\_%' OR p.proname IN ('upsert_tenant_secret', 'get_tenant_secret'))
              AND NOT (a.grantee <> 0 AND p.proname NOT LIKE '\\_ts\\_%'
                       AND (pg_catalog.pg_get_userbyid(a.grantee)::text = ANY (v_ops)
                            OR (pg_catalog.pg_get_userbyid(a.grantee)::text = ANY (v_app) AND ${ts}._ts_is_app_function(p.proname)))) LOOP
    EXECUTE pg_catalog.format('REVOKE ALL ON FUNCTION %s FROM %s', r.fn, r.grantee);
  END LOOP;
  -- Grants, only where missing (a migrate() that changes nothing writes no catalog row).
  FOREACH g IN ARRAY v_app || v_ops LOOP
    IF NOT pg_catalog.has_schema_privilege(g, ${literal(schema)}, 'USAGE') THEN
      EXECUTE pg_catalog.format('GRANT USAGE ON SCHEMA %s TO %I', ${literal(ts)}, g);
    END IF;
  END LOOP;
  FOR r IN SELECT p.oid::regprocedure AS fn, p.oid, p.proname FROM pg_catalog.pg_proc p
            WHERE p.pronamespace = ${ns} AND (p.proname LIKE 'tenant\\_secret%' OR p.proname IN ('upsert_tenant_secret', 'get_tenant_secret')) LOOP
    FOREACH g IN ARRAY v_ops || CASE WHEN ${ts}._ts_is_app_function(r.proname) THEN v_app ELSE '{}'::text[] END LOOP
      IF NOT pg_catalog.has_function_privilege(g, r.oid, 'EXECUTE') THEN
        EXECUTE pg_catalog.format('GRANT EXECUTE ON FUNCTION %s TO %I', r.fn, g);
      END IF;
    END LOOP;
  END LOOP;

  INSERT INTO ${ts}.tenant_secret_schema_state AS st (key, value, updated_at)
  VALUES ('last_lockdown', pg_catalog.jsonb_build_object('removed', v_removed, 'app', pg_catalog.to_jsonb(v_app),
                                                         'operator', pg_catalog.to_jsonb(v_ops)), pg_catalog.now())
  ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, updated_at = EXCLUDED.updated_at;
END
$ts_lockdown$;`;
}

/** The statements of the installer, in order (each one runs on its own; all in one transaction). */
export function installerStatements(options: InstallerOptions): string[] {
  const ts = quoteSchema(options.schema);
  return [
    prologue(options.schema, ts),
    ...migrationBlocks(ts, options.fromVersion ?? 0),
    functionsBlock(options.schema, ts),
    lockdownBlock(options.schema, ts, options),
  ];
}
