import { beforeAll, describe, expect, it } from 'vitest';
import type { SecretsManager } from '../src/index.js';
import { adminQuery, setupManager } from './support/db.js';

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

const trail = (tenant: string) =>
  adminQuery<Row>(
    db.name,
    'SELECT seq, action, outcome, error_code, key_name, version, actor, request_id, context FROM tenant_secret_audit WHERE tenant_id = $1 ORDER BY seq',
    [tenant],
  );

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
    await adminQuery(
      db.name,
      `CREATE FUNCTION refuse_audit() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN RAISE EXCEPTION 'audit store full'; END$$;
       CREATE TRIGGER refuse_audit BEFORE INSERT ON tenant_secret_audit FOR EACH ROW
         WHEN (NEW.tenant_id = 'unauditable') EXECUTE FUNCTION refuse_audit();`,
    );
    await expect(manager.set('unauditable', 'k', 'v')).rejects.toMatchObject({ code: 'DATABASE' });
    const rows = await adminQuery(db.name, "SELECT 1 FROM tenant_secrets WHERE tenant_id = 'unauditable'");
    expect(rows).toHaveLength(0);
    const keys = await adminQuery(
      db.name,
      "SELECT 1 FROM tenant_secret_keys WHERE tenant_id = 'unauditable'",
    );
    expect(keys).toHaveLength(0);
  });

  it('the chain links each record to its predecessor', async () => {
    const rows = await adminQuery<{ ok: boolean }>(
      db.name,
      `SELECT bool_and(a.prev_hash = p.hash) AS ok FROM tenant_secret_audit a
         JOIN tenant_secret_audit p ON p.chain_id = a.chain_id AND p.seq = a.seq - 1 WHERE a.chain_id = 'audited'`,
    );
    expect(rows[0]?.ok).toBe(true);
  });
});
