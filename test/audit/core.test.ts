import pg from 'pg';
import { beforeAll, describe, expect, it } from 'vitest';
import type { SecretsManager } from '../../src/index.js';
import { adminQuery, directUrlFor, setupManager } from '../support/db.js';

let manager: SecretsManager;
let db: { name: string };

interface Row {
  seq: string;
  action: string;
  outcome: string;
  error_code: string | null;
  key_name: string | null;
  version: number | null;
  actor: string;
  request_id: string | null;
  context: Record<string, string> | null;
}

/** A tenant's records, sealed first (pending records have no seq yet). */
const trail = async (tenant: string) => {
  await manager.sealAudit();
  return adminQuery<Row>(
    db.name,
    'SELECT seq, action, outcome, error_code, key_name, version, actor, request_id, context FROM tenant_secret_audit WHERE tenant_id = $1 ORDER BY seq',
    [tenant],
  );
};

beforeAll(async () => {
  ({ manager, db } = await setupManager());
});

describe('audit records (core operations)', () => {
  it('one record per operation and per failure, with actor and outcome, in order', async () => {
    const m = manager.withContext({
      actor: 'billing-service',
      requestId: 'req-42',
      ip: '203.0.113.7',
      userAgent: 'jest',
    });
    await m.set('audited', 'api-key', 'value-1');
    await m.set('audited', 'api-key', 'value-2');
    await m.get('audited', 'api-key');
    await m.rotate('audited', 'api-key', 'value-3');
    await m.get('audited', 'missing');
    await m.rotate('audited', 'missing', 'value-x').catch(() => undefined);
    await m.set('audited', 'api-key', 'value-4', { ifVersion: 1 }).catch(() => undefined);
    await m.list('audited');
    await m.versions('audited', 'api-key');
    await m.delete('audited', 'api-key');
    const rows = await trail('audited');
    expect(rows.map((r) => [r.action, r.outcome, r.error_code, r.version])).toEqual([
      ['secret.created', 'success', null, 1],
      ['secret.updated', 'success', null, 2],
      ['secret.read', 'success', null, 2],
      ['secret.rotated', 'success', null, 3],
      ['secret.read', 'failure', 'NOT_FOUND', null],
      ['secret.rotated', 'failure', 'NOT_FOUND', null],
      ['secret.updated', 'failure', 'CONFLICT', 3],
      ['secret.listed', 'success', null, null],
      ['secret.versions_listed', 'success', null, null],
      ['secret.deleted', 'success', null, 3],
    ]);
    expect(rows.map((r) => Number(r.seq))).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
    for (const row of rows) {
      expect(row.actor).toBe('billing-service');
      expect(row.request_id).toBe('req-42');
      expect(row.context).toEqual({ ip: '203.0.113.7', user_agent: 'jest' });
    }
  });

  it('no audit record contains a value', async () => {
    const all = await adminQuery<{ t: string }>(
      db.name,
      'SELECT row_to_json(a)::text AS t FROM tenant_secret_audit a',
    );
    const text = all.map((r) => r.t).join('\n');
    for (const value of ['value-1', 'value-2', 'value-3', 'value-4', 'value-x'])
      expect(text).not.toContain(value);
  });

  it('if the audit record cannot be written, the operation fails and nothing is stored', async () => {
    // A constraint an administrator added (a trigger would be refused earlier: see hostile-grants).
    await adminQuery(
      db.name,
      `ALTER TABLE tenant_secret_audit ADD CONSTRAINT refuse_audit CHECK (tenant_id IS DISTINCT FROM 'unauditable')`,
    );
    await expect(manager.set('unauditable', 'k', 'v')).rejects.toMatchObject({ code: 'DATABASE' });
    const rows = await adminQuery(db.name, "SELECT 1 FROM tenant_secrets WHERE tenant_id = 'unauditable'");
    expect(rows).toHaveLength(0);
    const keys = await adminQuery(
      db.name,
      "SELECT 1 FROM tenant_secret_keys WHERE tenant_id = 'unauditable'",
    );
    expect(keys).toHaveLength(0);
    await adminQuery(db.name, 'ALTER TABLE tenant_secret_audit DROP CONSTRAINT refuse_audit');
  });

  it('a record is never without its operation: a rolled-back or crashed operation leaves neither', async () => {
    const client = new pg.Client({ connectionString: directUrlFor(db.name) });
    await client.connect();
    try {
      await client.query('BEGIN');
      await manager.inTransaction(client).set('rolled-back', 'k', 'never-stored');
      // Inside the transaction, the pending record is there with the secret...
      expect(
        (
          await client.query(
            `SELECT count(*)::int AS n FROM tenant_secret_audit WHERE tenant_id = 'rolled-back'`,
          )
        ).rows[0].n,
      ).toBe(1);
      await client.query('ROLLBACK');
    } finally {
      await client.end();
    }
    // ...and a backend killed in the middle of its transaction leaves nothing either.
    const victim = new pg.Client({ connectionString: directUrlFor(db.name) });
    await victim.connect();
    victim.on('error', () => undefined);
    const pid = (await victim.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]?.pid;
    await victim.query('BEGIN');
    await manager.inTransaction(victim).set('crashed', 'k', 'never-stored');
    await adminQuery(db.name, 'SELECT pg_terminate_backend($1)', [pid]);
    await victim.end().catch(() => undefined);
    await manager.sealAudit();
    for (const tenant of ['rolled-back', 'crashed']) {
      expect(
        await adminQuery(db.name, 'SELECT 1 FROM tenant_secret_audit WHERE tenant_id = $1', [tenant]),
      ).toEqual([]);
      expect(
        await adminQuery(db.name, 'SELECT 1 FROM tenant_secrets WHERE tenant_id = $1', [tenant]),
      ).toEqual([]);
    }
  });

  it('the chain links each record to its predecessor: hash = link(previous hash, chain, seq, digest of the content)', async () => {
    await manager.sealAudit();
    const rows = await adminQuery<{ n: number; links: boolean; digests: boolean; prev_null: boolean }>(
      db.name,
      `SELECT count(*)::int AS n,
              bool_and(a.hash = _ts_audit_link(COALESCE(p.hash, h.anchor_hash), a.chain_id, a.seq, a.digest)) AS links,
              bool_and(a.digest = _ts_audit_digest(a.chain_id, a.occurred_at, a.tenant_id, a.db_role, a.actor, a.action,
                         a.key_name, a.version, a.outcome, a.error_code, a.request_id, a.context, a.details)) AS digests,
              bool_and(a.prev_hash IS NULL) AS prev_null
         FROM tenant_secret_audit a
         JOIN tenant_secret_audit_heads h ON h.chain_id = a.chain_id
         LEFT JOIN tenant_secret_audit p ON p.chain_id = a.chain_id AND p.seq = a.seq - 1
        WHERE a.chain_id = 'audited'`,
    );
    expect(rows[0]).toEqual({ n: 10, links: true, digests: true, prev_null: true });
    expect(await manager.verifyAudit({ tenantId: 'audited' })).toMatchObject({ ok: true, records: 10 });
  });
});
