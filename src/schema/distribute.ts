import { createHash } from 'node:crypto';
import { quoteSchema } from '../db/schema-name.js';
import { DISTRIBUTE_STEPS } from './distribute.generated.js';
import { FUNCTIONS } from './sql.generated.js';

/**
 * Scale-out on Citus: `migrate({ distribute: true })` on a Citus coordinator (docs/scaling.md).
 *
 * After the installer has committed (the same installer as everywhere), three steps run in one
 * transaction (sql/distribute/*.sql):
 * 1. tables: tenant tables hash-distributed by their tenant column (chain_id for the audit trail),
 *    co-located with tenant_secrets; the global tables become reference tables;
 * 2. functions: every tenant-scoped function becomes a distributed function delegated by its tenant
 *    argument (force_delegation), whose body on the worker dispatches to this release's function
 *    instantiated for the tenant's shard group (statements naming the local shards: plain
 *    PostgreSQL, one round trip, the single-server guarantees);
 * 3. the catalog fingerprints recorded again.
 * Then every node instantiates the functions for the shard groups it holds (run_command_on_all_nodes).
 */

/** Global tables (one row per installation, or operator-made and few): reference tables. */
export const GLOBAL_TABLES = [
  'tenant_secret_migrations',
  'tenant_secret_schema_state',
  'tenant_secret_grants',
  'tenant_secret_master_keys',
  'tenant_secret_audit_sealer',
  'tenant_secret_legacy_import',
  'tenant_secret_audit_anchors',
  'tenant_secret_pins',
] as const;

/**
 * Tenant-scoped functions delegated to the worker holding the tenant. Not delegated (they run on
 * the coordinator; see docs/scaling.md): tenant_secret_purge_deleted (every tenant when the tenant
 * is omitted: refused distributed, the library then purges tenant by tenant), tenant_secret_import_legacy (reads the legacy table, writes the import state) and
 * tenant_secret_audit_query (NULL is the system chain: Citus 13.2 crashes the backend planning a
 * delegated set-returning function called with a NULL distribution argument).
 */
export const DELEGATED_FUNCTIONS = [
  'get_tenant_secret',
  'upsert_tenant_secret',
  'tenant_secret_audit_cached_reads',
  'tenant_secret_delete',
  'tenant_secret_destroy',
  'tenant_secret_destroy_retired_keys',
  'tenant_secret_destroy_versions',
  'tenant_secret_fetch',
  'tenant_secret_fetch_many',
  'tenant_secret_list',
  'tenant_secret_list_versions',
  'tenant_secret_purge_tenant',
  'tenant_secret_put',
  'tenant_secret_read',
  'tenant_secret_read_many',
  'tenant_secret_reencrypt_batch',
  'tenant_secret_report',
  'tenant_secret_restore',
  'tenant_secret_rollback',
  'tenant_secret_rotate_key',
  'tenant_secret_update_metadata',
  'tenant_secret_write',
] as const;

/**
 * The batch sealer of one shard group, on its worker: the coordinator's sealer creates the day
 * partitions, registers new chains on the system chain (another shard group) and keeps the sealer's
 * state (a reference table, written through the coordinator only).
 */
const SEAL_BATCH_EDITS: readonly (readonly [string, string])[] = [
  ["IF NOT :VARIANT._ts_audit_partition((v_now AT TIME ZONE 'UTC')::date) THEN", 'IF false THEN'],
  ["WHERE c.id <> '' AND NOT EXISTS", "WHERE false AND c.id <> '' AND NOT EXISTS"],
  [
    `UPDATE :TAB{tenant_secret_audit_sealer} s
     SET last_sealed_at = v_now, sealed_total = s.sealed_total + v_n, passes = s.passes + 1
   WHERE s.id = 1;`,
    '',
  ],
];

const literal = (text: string) => `'${text.replace(/'/g, "''")}'`;
const textArray = (items: readonly string[]) => `ARRAY[${items.map(literal).join(', ')}]::text[]`;

function dollar(text: string): string {
  if (text.includes('$ts_dist$')) throw new Error('SQL source contains the reserved tag $ts_dist$');
  return `$ts_dist$${text}$ts_dist$`;
}

/**
 * The function sources as templates for one shard group: `:TS.<table>` becomes `:TAB{<table>}` (the
 * group's shard, or the reference table's local copy, filled in on the node), other `:TS.` names the
 * group's schema (`:VARIANT`), and a bare `:TS` (catalog lookups by schema) stays the real schema.
 */
export function variantSources(schema: string): { digest: string; sources: string[] } {
  const ts = quoteSchema(schema);
  const sources = FUNCTIONS.filter((f) => f.sql.startsWith('CREATE FUNCTION ')).map((f) => {
    let sql = f.sql
      .replace(/^CREATE FUNCTION /, 'CREATE OR REPLACE FUNCTION ')
      .replace(/:TS\.(tenant_secrets?|tenant_secret_[a-z0-9_]+)\b(?!\()/g, ':TAB{$1}')
      .replace(/:TS\./g, ':VARIANT.')
      .replace(/:TS\b/g, ts);
    if (sql.startsWith('CREATE OR REPLACE FUNCTION :VARIANT._ts_audit_seal_batch(')) {
      for (const [from, to] of SEAL_BATCH_EDITS) {
        if (!sql.includes(from)) throw new Error(`internal: _ts_audit_seal_batch no longer contains ${from}`);
        sql = sql.replace(from, to);
      }
    }
    return sql;
  });
  const digest = createHash('sha256')
    .update(JSON.stringify([schema, sources]))
    .digest('hex');
  return { digest, sources };
}

/** The statements of the distribution transaction, in order. */
export function distributeStatements(schema: string): string[] {
  const ts = quoteSchema(schema);
  const values: Record<string, string> = {
    TS: ts,
    TS_NAME: literal(schema),
    GLOBAL_TABLES: textArray(GLOBAL_TABLES),
    DELEGATED: textArray(DELEGATED_FUNCTIONS),
    VARIANT_SOURCES: dollar(JSON.stringify(variantSources(schema))),
  };
  const out: string[] = [];
  for (const step of [
    'tables',
    'functions',
    'sealer',
    'verify',
    'status',
    'rotation',
    'checkpoints',
    'audit_retention',
    'record',
  ]) {
    const statements = DISTRIBUTE_STEPS[step];
    if (statements === undefined) throw new Error(`internal: no distribution step ${step}`);
    for (const statement of statements) {
      // One pass, so that text put in (the sources) is never scanned again.
      out.push(statement.replace(/:[A-Z][A-Z0-9_]*\b/g, (token) => values[token.slice(1)] ?? token));
    }
  }
  return out;
}

/** Run on every node (run_command_on_all_nodes) after the distribution transaction committed. */
export function instantiateStatement(schema: string): string {
  const command = `SELECT ${quoteSchema(schema)}._ts_citus_instantiate_local()`;
  return `SELECT r.nodeid, r.success, r.result FROM pg_catalog.run_command_on_all_nodes(${literal(command)}) r`;
}

/** Whether the database has Citus and our tables are distributed (checks that never fail). */
export const DISTRIBUTED_PROBE = (schema: string) =>
  `SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_extension e WHERE e.extname = 'citus') AS citus,
          pg_catalog.to_regclass(${literal(`${quoteSchema(schema)}.tenant_secrets`)}) AS tbl`;
