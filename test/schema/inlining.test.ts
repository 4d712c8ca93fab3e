import { describe, expect, it } from 'vitest';
import { createSecretsManager } from '../../src/index.js';
import { adminQuery, freshDatabase, TEST_KEY, viaPgBouncer } from '../support/db.js';

/**
 * The SQL-language helpers (crypto, validation, audit digests) are written to be inlined into the
 * entry functions' statements. One that is not inlined (declared less volatile than its body, or a
 * parameter used twice and given an expensive argument) runs as a query of its own at every call, and
 * the operation costs several times more. With track_functions = 'all', PostgreSQL counts calls of SQL
 * functions only when they are not inlined: after the hot operations, none of ours may have a count.
 */
describe.skipIf(viaPgBouncer())('hot paths inline their SQL helpers', () => {
  it('get, set, rotate, getMany, list and versions call no SQL-language helper as a function', async () => {
    const db = await freshDatabase('inline');
    await adminQuery('postgres', `ALTER DATABASE ${db.name} SET track_functions = 'all'`);
    const owner = createSecretsManager({
      connectionString: db.url,
      masterKey: TEST_KEY,
      auditSealIntervalMs: 0,
    });
    await owner.migrate(); // installing may call helpers as functions: not a hot path
    await owner.set('inline', 'warm-up', 'v');
    await owner.close();
    await waitFor(db.name, 'tenant_secret_write');
    await adminQuery(db.name, 'SELECT pg_stat_reset()');

    const manager = createSecretsManager({
      connectionString: db.url,
      masterKey: TEST_KEY,
      auditSealIntervalMs: 0,
    });
    try {
      await manager.set('inline', 'a', 'value-a');
      await manager.set('inline', 'b', 'value-b', { description: 'd', labels: { env: 'prod' } });
      for (let i = 0; i < 3; i++) {
        await manager.set('inline', 'a', `value-a${i}`);
        expect(await manager.get('inline', 'a')).toBe(`value-a${i}`);
      }
      await manager.rotate('inline', 'b', 'value-b2');
      const many = await manager.getMany('inline', ['a', 'b', 'missing']);
      expect(many).toEqual({ a: 'value-a2', b: 'value-b2', missing: null });
      await manager.list('inline');
      await manager.versions('inline', 'a');
    } finally {
      await manager.close(); // the backends exit and flush their statistics
    }
    await waitFor(db.name, 'tenant_secret_fetch');
    const rows = await adminQuery<{ proname: string; calls: string }>(
      db.name,
      `SELECT p.proname, s.calls::text AS calls
         FROM pg_stat_user_functions s JOIN pg_proc p ON p.oid = s.funcid
         JOIN pg_language l ON l.oid = p.prolang
        WHERE s.calls > 0 AND l.lanname = 'sql' AND p.pronamespace = 'public'::regnamespace AND p.proname LIKE '\\_ts\\_%'`,
    );
    expect(rows).toEqual([]);
  });
});

/** Waits until the statistics of closed backends show a call of `fn` (they arrive asynchronously). */
async function waitFor(database: string, fn: string): Promise<void> {
  for (let attempt = 0; attempt < 100; attempt++) {
    const seen = await adminQuery<{ n: string }>(
      database,
      'SELECT count(*) AS n FROM pg_stat_user_functions WHERE funcname = $1',
      [fn],
    );
    if (Number(seen[0]?.n) > 0) return;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(`no statistics for ${fn}`);
}
