import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import { createSecretsManager } from '../src/index.js';
import { adminQuery, setupManager, TEST_KEY, urlFor } from './support/db.js';

/**
 * A login role granted EXECUTE through migrate({ grantOperatorTo }) can use the library (and so the audit
 * functions), but cannot UPDATE, DELETE, TRUNCATE or INSERT audit rows, heads or checkpoints directly.
 */
describe('audit tables refuse direct writes by non-owners', () => {
  it('refuses UPDATE / DELETE / TRUNCATE / INSERT to an operator role that can still run every operation', async () => {
    const { manager, db } = await setupManager();
    const role = `ts_app_${randomBytes(4).toString('hex')}`;
    await adminQuery('postgres', `CREATE ROLE ${role} LOGIN PASSWORD 'app-pw'`);
    afterAll(async () => {
      await adminQuery('postgres', `DROP OWNED BY ${role} CASCADE`).catch(() => undefined);
      await adminQuery(db.name, `DROP OWNED BY ${role} CASCADE`).catch(() => undefined);
      await adminQuery('postgres', `DROP ROLE IF EXISTS ${role}`).catch(() => undefined);
    });
    await manager.migrate({ grantOperatorTo: [role] });
    const url = new URL(urlFor(db.name));
    url.username = role;
    url.password = 'app-pw';

    const app = createSecretsManager({
      connectionString: url.toString(),
      masterKey: TEST_KEY,
      actor: 'app-role',
    });
    try {
      await app.set('t1', 'k', 'app-value');
      expect(await app.get('t1', 'k')).toBe('app-value');
      const verification = await app.verifyAudit();
      expect(verification).toMatchObject({ ok: true });
      // Pruning is the owner's: an app role could otherwise erase its own tracks. The refusal is audited.
      await expect(app.pruneAudit({ olderThan: new Date(), verifyFirst: false })).rejects.toMatchObject({
        code: 'DATABASE',
        sqlState: '42501',
      });
      const refusals = (await app.audit(null, { action: 'audit.pruned' })).records;
      expect(refusals.map((r) => [r.outcome, r.errorCode, r.dbRole])).toEqual([
        ['failure', 'FORBIDDEN', role],
      ]);
      const page = await app.audit('t1');
      expect(page.records.map((r) => [r.action, r.dbRole])).toEqual([
        ['secret.created', role],
        ['secret.read', role],
      ]);
    } finally {
      await app.close();
    }

    const client = new pg.Client({ connectionString: url.toString() });
    await client.connect();
    try {
      const refused = async (sql: string) => {
        await expect(client.query(sql)).rejects.toMatchObject({ code: '42501' });
      };
      for (const table of [
        'tenant_secret_audit',
        'tenant_secret_audit_heads',
        'tenant_secret_audit_checkpoints',
      ]) {
        await refused(`UPDATE ${table} SET chain_id = chain_id`);
        await refused(`DELETE FROM ${table}`);
        await refused(`TRUNCATE ${table}`);
        await refused(`SELECT * FROM ${table}`);
      }
      await refused(
        `INSERT INTO tenant_secret_audit (chain_id, seq, occurred_at, db_role, actor, action, outcome, prev_hash, hash)
         VALUES ('t1', 99, now(), 'x', 'x', 'secret.read', 'success', '\\x00', '\\x00')`,
      );
      // Internal helpers (the append itself, the hash) are not executable either.
      await refused(`SELECT _ts_audit('t1', 'secret.read', 'k', 1, 'success', NULL, '{}'::jsonb, NULL)`);
    } finally {
      await client.end();
    }
    const rows = await adminQuery(
      db.name,
      `SELECT count(*)::int AS n FROM tenant_secret_audit WHERE chain_id = 't1'`,
    );
    expect(rows[0]?.n).toBe(2);
    expect(await manager.verifyAudit()).toMatchObject({ ok: true });
  });
});

describe('audit query called directly in SQL', () => {
  it('records an invalid tenant id as a failure instead of raising (the record commits)', async () => {
    const { manager, db } = await setupManager();
    const rows = await adminQuery(
      db.name,
      `SELECT * FROM tenant_secret_audit_query('bad tenant!', '{}', '{"actor":"sql-user"}')`,
    );
    expect(rows).toEqual([]);
    const system = (await manager.audit(null)).records;
    expect(system.map((r) => [r.action, r.outcome, r.errorCode, r.actor])).toEqual([
      ['audit.queried', 'failure', 'INVALID_INPUT', 'sql-user'],
    ]);
  });
});
