import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import { createSecretsManager } from '../../src/index.js';
import { adminQuery, setupManager, TEST_KEY, urlFor } from '../support/db.js';

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

    // Every partition of the trail: pending records (which the sealer would chain), each sealing
    // day, the 0.1 records; and the sealer's state.
    const partitions = (
      await adminQuery<{ name: string }>(
        db.name,
        `SELECT c.relname AS name FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
          WHERE i.inhparent = 'tenant_secret_audit'::regclass ORDER BY 1`,
      )
    ).map((r) => r.name);
    expect(partitions).toEqual(
      expect.arrayContaining([
        'tenant_secret_audit_pending',
        'tenant_secret_audit_v1',
        expect.stringMatching(/^tenant_secret_audit_p\d{8}$/),
      ]),
    );
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
        'tenant_secret_audit_sealer',
        ...partitions,
      ]) {
        const column = table === 'tenant_secret_audit_sealer' ? 'passes' : 'chain_id';
        await refused(`UPDATE ${table} SET ${column} = ${column}`);
        await refused(`DELETE FROM ${table}`);
        await refused(`TRUNCATE ${table}`);
        await refused(`SELECT * FROM ${table}`);
      }
      await refused(
        `INSERT INTO tenant_secret_audit (chain_id, seq, occurred_at, db_role, actor, action, outcome, prev_hash, hash)
         VALUES ('t1', 99, now(), 'x', 'x', 'secret.read', 'success', '\\x00', '\\x00')`,
      );
      await refused(
        `INSERT INTO tenant_secret_audit_pending (chain_id, occurred_at, db_role, actor, action, outcome, digest, sealed_at)
         VALUES ('t1', now(), 'x', 'x', 'secret.read', 'success', '\\x00', 'infinity')`,
      );
      // Internal helpers (the append itself, the hash, a sealing pass at a chosen time) are not executable either.
      await refused(`SELECT _ts_audit('t1', 'secret.read', 'k', 1, 'success', NULL, '{}'::jsonb, NULL)`);
      await refused(`SELECT _ts_audit_seal_batch(10, now() + interval '1 year')`);
      // Sealing itself is open to application roles: it only chains what operations wrote.
      expect(
        (await client.query('SELECT sealed, busy FROM tenant_secret_audit_seal(10, true)')).rows,
      ).toHaveLength(1);
    } finally {
      await client.end();
    }
    const rows = await adminQuery(
      db.name,
      `SELECT count(*)::int AS n FROM tenant_secret_audit WHERE chain_id = 't1'`,
    );
    expect(rows[0]?.n).toBe(2);
    // TRUNCATE of a partition is refused even to a role that was granted it outside migrate().
    const day = partitions.find((p) => /^tenant_secret_audit_p\d{8}$/.test(p)) as string;
    await adminQuery(db.name, `GRANT TRUNCATE ON ${day} TO ${role}`);
    const again = new pg.Client({ connectionString: url.toString() });
    await again.connect();
    try {
      await expect(again.query(`TRUNCATE ${day}`)).rejects.toMatchObject({ code: '42501' });
    } finally {
      await again.end();
    }
    await manager.migrate();
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
    // (The system chain also holds migrate()'s master_key.registered record.)
    const system = (await manager.audit(null, { action: 'audit.queried' })).records;
    expect(system.map((r) => [r.action, r.outcome, r.errorCode, r.actor])).toEqual([
      ['audit.queried', 'failure', 'INVALID_INPUT', 'sql-user'],
    ]);
  });
});
