import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createSecretsManager, type SecretsManager } from '../../src/index.js';
import { directUrlFor, freshDatabase, setupManager, TEST_KEY, viaPgBouncer } from '../support/db.js';

/**
 * Calls go out as named prepared statements (parsed and planned once per connection) unless
 * `preparedStatements: false`; where a transaction pooler cannot carry them across its server
 * connections, the first refusal switches them off and the call is retried, so no call fails.
 */
let db: { name: string; url: string };

beforeAll(async () => {
  ({ db } = await setupManager());
});

async function preparedOn(pool: pg.Pool): Promise<string[]> {
  const rows = await pool.query<{ name: string }>(
    "SELECT name FROM pg_prepared_statements WHERE name LIKE 'tenant\\_secrets\\_%' ORDER BY name",
  );
  return rows.rows.map((r) => r.name);
}

describe.skipIf(viaPgBouncer())('prepared statements on a direct connection', () => {
  let pool: pg.Pool;
  afterAll(async () => {
    await pool?.end();
  });

  it('a call parses its statements once per connection (prelude and call), not at every call', async () => {
    pool = new pg.Pool({ connectionString: directUrlFor(db.name), max: 1 });
    const manager = createSecretsManager({ pool, masterKey: TEST_KEY, auditSealIntervalMs: 0 });
    await manager.set('prepared', 'k', 'v1');
    for (let i = 0; i < 5; i++) expect(await manager.get('prepared', 'k')).toBe('v1');
    const names = await preparedOn(pool);
    // The prelude, the data-key write (which answered 'no_key' for this new tenant), the key-bundle
    // write that created the tenant's key, and the read: four statements for seven calls.
    expect(names).toHaveLength(4);
    await manager.set('prepared', 'k', 'v2');
    expect(await manager.get('prepared', 'k')).toBe('v2');
    expect(await preparedOn(pool)).toEqual(names);
    await manager.close();
  });

  it('preparedStatements: false sends unnamed statements only; a bad value is refused', async () => {
    const unprepared = new pg.Pool({ connectionString: directUrlFor(db.name), max: 1 });
    const manager = createSecretsManager({
      pool: unprepared,
      masterKey: TEST_KEY,
      auditSealIntervalMs: 0,
      preparedStatements: false,
    });
    try {
      await manager.set('unprepared', 'k', 'v');
      expect(await manager.get('unprepared', 'k')).toBe('v');
      expect(await preparedOn(unprepared)).toEqual([]);
    } finally {
      await manager.close();
      await unprepared.end();
    }
    expect(() =>
      createSecretsManager({
        connectionString: db.url,
        masterKey: TEST_KEY,
        preparedStatements: 'yes' as never,
      }),
    ).toThrow(/preparedStatements/);
  });

  it('a statement dropped from under the connection (DEALLOCATE) is refused once, then calls go on unprepared', async () => {
    const one = new pg.Pool({ connectionString: directUrlFor(db.name), max: 1 });
    const manager = createSecretsManager({ pool: one, masterKey: TEST_KEY, auditSealIntervalMs: 0 });
    try {
      await manager.set('dropped', 'k', 'v');
      expect(await manager.get('dropped', 'k')).toBe('v');
      // What a transaction pooler does to us: the next server connection does not have them.
      await one.query('DEALLOCATE ALL');
      expect(await manager.get('dropped', 'k')).toBe('v');
      expect(await manager.get('dropped', 'k')).toBe('v');
      expect(await preparedOn(one)).toEqual([]);
    } finally {
      await manager.close();
      await one.end();
    }
  });
});

describe.skipIf(!viaPgBouncer())('prepared statements through a transaction pooler', () => {
  let manager: SecretsManager;
  afterAll(async () => {
    await manager?.close();
  });

  it('many concurrent calls over few server connections all succeed (named statements switch off by themselves)', async () => {
    const fresh = await freshDatabase('prep_pool');
    manager = createSecretsManager({ connectionString: fresh.url, masterKey: TEST_KEY, maxConnections: 8 });
    await manager.migrate();
    await Promise.all(Array.from({ length: 8 }, (_, i) => manager.set('pooled', `k${i}`, `v${i}`)));
    for (let round = 0; round < 5; round++) {
      const values = await Promise.all(Array.from({ length: 8 }, (_, i) => manager.get('pooled', `k${i}`)));
      expect(values).toEqual(Array.from({ length: 8 }, (_, i) => `v${i}`));
    }
  });
});
