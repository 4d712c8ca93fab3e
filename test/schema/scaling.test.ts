import { describe, expect, it } from 'vitest';
import { adminQuery, setupManager } from '../support/db.js';

/**
 * docs/scaling.md explains how a deployment grows past one server: Citus distributes every table by
 * tenant id (co-located) and delegates each tenant-scoped function by its tenant argument. That rests
 * on one invariant, checked here: every key (primary key, unique index) of a tenant table starts with
 * the tenant id (the audit chain id is the tenant id), every foreign key includes it, and every
 * tenant-scoped function takes the tenant id as its first argument. The few global tables are listed.
 */
const GLOBAL_TABLES = [
  'tenant_secret_migrations', // schema version
  'tenant_secret_schema_state', // function fingerprints
  'tenant_secret_grants', // roles migrate() grants to
  'tenant_secret_master_keys', // registered master keys (proof keys)
  'tenant_secret_audit_sealer', // the sealer's state (one row)
  'tenant_secret_legacy_import', // legacy import progress (one row)
  'tenant_secret_audit_anchors', // signed checkpoints over every chain (one row per checkpoint)
  'tenant_secret_pins', // tenant ids or prefixes pinned to master keys (operator-made, few)
];
const TENANT_COLUMNS = ['tenant_id', 'chain_id'];

describe('every table is keyed by tenant first (the invariant scale-out rests on)', () => {
  it('keys start with the tenant id, foreign keys include it, and only the documented tables are global', async () => {
    const { manager, db } = await setupManager({ auditSealIntervalMs: 0 });
    await manager.set('t1', 'k', 'v');
    await manager.sealAudit(); // creates today's audit partition too
    const tables = await adminQuery<{ name: string; partition: boolean }>(
      db.name,
      `SELECT c.relname AS name, c.relispartition AS partition FROM pg_class c
        WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'p') AND c.relname LIKE 'tenant\\_secret%'
        ORDER BY 1`,
    );
    const tenantTables = tables.filter((t) => !GLOBAL_TABLES.includes(t.name)).map((t) => t.name);
    expect(tables.map((t) => t.name)).toEqual(expect.arrayContaining(GLOBAL_TABLES));
    expect(tenantTables).toEqual(
      expect.arrayContaining([
        'tenant_secrets',
        'tenant_secret_versions',
        'tenant_secret_keys',
        'tenant_secret_audit',
        'tenant_secret_audit_heads',
      ]),
    );
    const keys = await adminQuery<{ table_name: string; index_name: string; first_column: string }>(
      db.name,
      `SELECT t.relname AS table_name, i.relname AS index_name, a.attname AS first_column
         FROM pg_index x JOIN pg_class t ON t.oid = x.indrelid JOIN pg_class i ON i.oid = x.indexrelid
         JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = x.indkey[0]
        WHERE t.relnamespace = 'public'::regnamespace AND x.indisunique AND t.relname = ANY ($1)`,
      [tenantTables],
    );
    expect(keys.length).toBeGreaterThan(0);
    for (const key of keys)
      expect({ key: key.index_name, first: TENANT_COLUMNS.includes(key.first_column) }).toEqual({
        key: key.index_name,
        first: true,
      });
    const fks = await adminQuery<{ name: string; columns: string[] }>(
      db.name,
      `SELECT c.conname AS name, ARRAY(SELECT a.attname::text FROM unnest(c.conkey) k JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k) AS columns
         FROM pg_constraint c WHERE c.contype = 'f' AND c.connamespace = 'public'::regnamespace`,
    );
    for (const fk of fks) expect(fk.columns).toContain('tenant_id');
    // Tenant-scoped functions take the tenant id first (Citus delegates them by it).
    const functions = await adminQuery<{ name: string; first: string | null }>(
      db.name,
      `SELECT p.proname AS name, p.proargnames[1] AS first FROM pg_proc p
        WHERE p.pronamespace = 'public'::regnamespace AND p.prosecdef
          AND p.proname IN ('tenant_secret_write', 'tenant_secret_read', 'tenant_secret_read_many', 'tenant_secret_delete',
                            'tenant_secret_restore', 'tenant_secret_rollback', 'tenant_secret_destroy', 'tenant_secret_destroy_versions',
                            'tenant_secret_update_metadata', 'tenant_secret_list', 'tenant_secret_list_versions', 'upsert_tenant_secret',
                            'get_tenant_secret', 'tenant_secret_rotate_key', 'tenant_secret_reencrypt_batch',
                            'tenant_secret_destroy_retired_keys', 'tenant_secret_purge_tenant', 'tenant_secret_audit_cached_reads',
                            'tenant_secret_import_legacy', 'tenant_secret_fetch', 'tenant_secret_fetch_many',
                            'tenant_secret_put', 'tenant_secret_report')`,
    );
    // 23 names; two of them keep release 0.2's signature beside the new one.
    expect(functions).toHaveLength(25);
    for (const fn of functions)
      expect({ fn: fn.name, first: fn.first }).toEqual({ fn: fn.name, first: 'p_tenant_id' });
  });
});
