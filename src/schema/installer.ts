import { quoteSchema } from '../db/schema-name.js';
import { isGrantableRole } from './roles.js';
import { FUNCTIONS, INSTALLER_STEPS, MIGRATIONS } from './sql.generated.js';
import { FUNCTIONS_DIGEST, LATEST_SCHEMA_VERSION } from './sql-meta.generated.js';

/**
 * The installer: one SQL script that brings a database to this library's schema, whatever state it is
 * in. `migrate()` runs it in one transaction; `exportSchemaSql()` / `tenant-secrets sql` print it for
 * migration tools (Supabase). It is idempotent, so re-applying it (or a newer one) is always safe:
 *
 * 1. prologue (sql/installer/01_prologue.sql): schema, pgcrypto (found wherever it is installed,
 *    e.g. Supabase's `extensions`), refusal to touch a `tenant_secrets` table it did not create, one
 *    migrator at a time (a table lock only the owner can take);
 * 2. guard (02_guard.sql), before anything is written: every table of ours locked up front, never
 *    waiting for one lock while holding another, within one lock_timeout budget (ACCESS EXCLUSIVE only on
 *    the tables this run changes: see relationsAlteredBy), foreign triggers, rules, policies, defaults
 *    and foreign keys removed, table privileges revoked, so that no code of a grantee's making runs in
 *    the steps after it;
 * 3. every table migration not yet recorded, in id order (03_migration.sql);
 * 4. functions (04_functions.sql): when the catalog differs from what the last install recorded,
 *    every function is created again from source, in place (CREATE OR REPLACE keeps its OID, so a
 *    process of the previous release calling it never finds it missing); only changed signatures are
 *    dropped first, and functions this release no longer has are dropped;
 * 5. lock-down (05_lockdown.sql): row-level security and guards on every table, EXECUTE only for
 *    the configured application and operator roles, the audit id sequence checked.
 */

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

/**
 * Fills an installer step's placeholders in one pass, so that text put in (function sources, migration
 * SQL) is never scanned again. `:TS` (our schema) is substituted in the values by their producers.
 */
function fill(step: string, values: Record<string, string>): string {
  const template = INSTALLER_STEPS[step];
  if (template === undefined) throw new Error(`internal: no installer step ${step}`);
  return template.replace(/:[A-Z][A-Z0-9_]*\b/g, (token) => values[token.slice(1)] ?? token);
}

function rolesArray(roles: readonly string[]): string {
  for (const role of roles) {
    if (!isGrantableRole(role)) throw new Error(`invalid role name ${JSON.stringify(role)}`);
  }
  return roles.length === 0 ? `'{}'::text[]` : `ARRAY[${roles.map(literal).join(', ')}]::text[]`;
}

function setGrants(ts: string, options: InstallerOptions): string {
  const one = (kind: 'app' | 'operator', roles: readonly string[] | undefined) =>
    roles === undefined
      ? ''
      : `  DELETE FROM ${ts}.tenant_secret_grants g WHERE g.kind = '${kind}';
  INSERT INTO ${ts}.tenant_secret_grants (role_name, kind) SELECT DISTINCT u.role_name, '${kind}' FROM pg_catalog.unnest(${rolesArray(roles)}) AS u(role_name);`;
  return [one('app', options.grantTo), one('operator', options.grantOperatorTo)].filter(Boolean).join('\n');
}

/**
 * The relations a table migration alters (by name, in its own schema), found in its text: tables
 * altered, dropped, truncated, indexed, partitioned, referenced by a new foreign key or given a
 * trigger or policy; indexes and sequences altered or dropped (the installer locks their tables).
 * The guard takes ACCESS EXCLUSIVE locks on these up front when the migration is pending, and only
 * ROW EXCLUSIVE on every other table. (Tables a migration creates are in it too; they do not exist
 * yet when the guard runs, and nobody else can see them.)
 */
export function relationsAlteredBy(sql: string): string[] {
  const text = sql.replace(/--[^\n]*/g, ' ');
  const name = String.raw`:TS\.("?)([A-Za-z_][A-Za-z0-9_$]*)\1`;
  const patterns = [
    String.raw`\bALTER\s+(?:TABLE|INDEX|SEQUENCE)\s+(?:IF\s+EXISTS\s+)?(?:ONLY\s+)?${name}`,
    String.raw`\bDROP\s+(?:TABLE|INDEX|SEQUENCE)\s+(?:CONCURRENTLY\s+)?(?:IF\s+EXISTS\s+)?${name}`,
    String.raw`\bTRUNCATE\s+(?:TABLE\s+)?(?:ONLY\s+)?${name}`,
    String.raw`\bCREATE\s+(?:UNIQUE\s+)?INDEX\b[^;]*?\bON\s+(?:ONLY\s+)?${name}`,
    String.raw`\b(?:CREATE|DROP|ALTER)\s+(?:CONSTRAINT\s+)?(?:TRIGGER|POLICY|RULE)\b[^;]*?\bON\s+${name}`,
    String.raw`\b(?:PARTITION\s+OF|ATTACH\s+PARTITION|DETACH\s+PARTITION|REFERENCES|INHERITS\s*\()\s*${name}`,
    String.raw`\bCOMMENT\s+ON\s+(?:TABLE|COLUMN|INDEX|SEQUENCE)\s+${name}`,
    String.raw`\b(?:CLUSTER|REINDEX\s+TABLE|VACUUM(?:\s+FULL)?)\s+${name}`,
  ];
  const found = new Set<string>();
  for (const pattern of patterns) {
    for (const match of text.matchAll(new RegExp(pattern, 'gi'))) found.add(match[2] as string);
  }
  return [...found].sort();
}

/** A query of (id, relation name): what each of `migrations` alters. */
function migrationLocks(migrations: readonly { id: number; sql: string }[]): string {
  const rows = migrations.flatMap((m) =>
    relationsAlteredBy(m.sql).map((rel) => `(${m.id}, ${literal(rel)})`),
  );
  return rows.length === 0
    ? 'SELECT NULL::integer, NULL::text WHERE false'
    : `SELECT v.id, v.rel FROM (VALUES ${rows.join(', ')}) AS v(id, rel)`;
}

/** The statements of the installer, in order (each one runs on its own; all in one transaction). */
export function installerStatements(options: InstallerOptions): string[] {
  const ts = quoteSchema(options.schema);
  const withSchema = (sql: string) => sql.replace(/:TS\b/g, ts);
  const common = {
    TS: ts,
    TS_NAME: literal(options.schema),
    LATEST_VERSION: String(LATEST_SCHEMA_VERSION),
    MIGRATION_IDS: MIGRATIONS.map((m) => m.id).join(', '),
    MIGRATION_LOCKS: migrationLocks(MIGRATIONS),
  };
  const migrations = MIGRATIONS.filter((m) => m.id > (options.fromVersion ?? 0)).map((m) =>
    fill('migration', {
      ...common,
      MIGRATION_ID: String(m.id),
      MIGRATION_NAME: literal(m.name),
      MIGRATION_SQL: dollar(withSchema(m.sql)),
    }),
  );
  const sources = FUNCTIONS.map((f) =>
    dollar(withSchema(f.sql).replace(/^CREATE FUNCTION /, 'CREATE OR REPLACE FUNCTION ')),
  ).join(',\n');
  return [
    fill('prologue', common),
    fill('guard', common),
    ...migrations,
    fill('functions', { ...common, FUNCTIONS_DIGEST: literal(FUNCTIONS_DIGEST), FUNCTION_SOURCES: sources }),
    fill('lockdown', { ...common, SET_GRANTS: setGrants(ts, options) }),
  ];
}
