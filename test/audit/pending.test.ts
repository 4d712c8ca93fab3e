import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { SecretsManager } from '../../src/index.js';
import { adminQuery, directUrlFor, setupManager } from '../support/db.js';

/**
 * The pending partition keeps the size its largest backlog gave it: the sealer deletes what it
 * chains, and VACUUM frees that space but cannot give it back while live records sit at the end. A
 * sealing pass (and so every audit query, export and verification, which seal first) must find
 * what is pending by its index, not by reading the whole partition.
 */
const BACKLOG = 100_000;

let manager: SecretsManager;
let db: { name: string; url: string };

beforeAll(async () => {
  ({ manager, db } = await setupManager({ auditSealIntervalMs: 0 }));
  // Autovacuum would be free to visit the partition between the sealing of the backlog and the write
  // below: the free space it records at the start then takes that write, and VACUUM can give back
  // every page after it (the partition shrinks to one page). The test needs the write at the end.
  await adminQuery(db.name, 'ALTER TABLE tenant_secret_audit_pending SET (autovacuum_enabled = false)');
  await adminQuery(
    db.name,
    `INSERT INTO tenant_secret_audit_pending (chain_id, occurred_at, tenant_id, db_role, actor, action, key_name, version,
                                              outcome, digest, sealed_at)
     SELECT 't-' || (i % 1000), clock_timestamp(), 't-' || (i % 1000), 'postgres', 'loadgen', 'secret.read', 'k', 1, 'success',
            NULL, 'infinity'
       FROM generate_series(1, ${BACKLOG}) i`,
  );
  expect((await manager.auditTrail.seal({ limit: 100_000 })).sealed).toBeGreaterThanOrEqual(BACKLOG);
  // A record pending at the partition's end, then VACUUM: the partition keeps its pages.
  await manager.set('t-live', 'k', 'v');
  await adminQuery(db.name, 'VACUUM tenant_secret_audit_pending');
}, 300_000);

afterAll(() => manager.close());

describe('the pending partition after a backlog', () => {
  it('keeps its size, and a sealing pass reads a few of its blocks, not all of them', async () => {
    const [size] = await adminQuery<{ pages: number }>(
      db.name,
      `SELECT (pg_relation_size('tenant_secret_audit_pending') / current_setting('block_size')::int)::int AS pages`,
    );
    expect(size?.pages).toBeGreaterThan(1000);
    const client = new pg.Client({ connectionString: directUrlFor(db.name) });
    await client.connect();
    try {
      await client.query('BEGIN');
      const [pass] = (await client.query('SELECT * FROM tenant_secret_audit_seal(10000, true)')).rows;
      expect(pass).toMatchObject({ pending: '0', busy: false });
      expect(pass?.sealed).toBeGreaterThan(0);
      const [read] = (
        await client.query<{ blocks: string }>(
          `SELECT pg_stat_get_xact_blocks_fetched('tenant_secret_audit_pending'::regclass)
                + (SELECT COALESCE(sum(pg_stat_get_xact_blocks_fetched(i.indexrelid)), 0) FROM pg_index i
                    WHERE i.indrelid = 'tenant_secret_audit_pending'::regclass) AS blocks`,
        )
      ).rows;
      await client.query('COMMIT');
      // Before the index, two full scans: 2 x the partition's pages.
      expect(Number(read?.blocks)).toBeLessThan(100);
    } finally {
      await client.end();
    }
    expect((await manager.verifyAudit()).ok).toBe(true);
  });
});
