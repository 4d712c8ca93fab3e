import { describe, expect, it } from 'vitest';
import { createSecretsManager, databaseStatus, LATEST_SCHEMA_VERSION, MasterKey } from '../../src/index.js';
import { freshDatabase, setupManager, TEST_KEY } from '../support/db.js';

describe('status()', () => {
  it('reports schema, master keys in use, counts and keyStatus(), metadata only', async () => {
    const { manager } = await setupManager();
    await manager.set('tenant-s1', 'a', 'value-a');
    await manager.set('tenant-s1', 'b', 'value-b');
    await manager.set('tenant-s2', 'a', 'value-c');
    await manager.delete('tenant-s2', 'a');
    const status = await manager.status();
    const id = MasterKey.parse(TEST_KEY).id;
    expect(status).toMatchObject({
      schema: 'public',
      schemaVersion: LATEST_SCHEMA_VERSION,
      libraryVersion: LATEST_SCHEMA_VERSION,
      masterKeysInUse: [{ id, dataKeys: 2 }],
      counts: { tenants: 2, secrets: 2, deletedSecrets: 1 },
      keys: { currentMasterKeyId: id, readyToDropPrevious: true, tenants: 2 },
    });
    expect(JSON.stringify(status)).not.toContain('value-');
  });

  it('works without a master key (databaseStatus) and before migrate', async () => {
    const db = await freshDatabase('status_empty');
    const manager = createSecretsManager({ connectionString: db.url, masterKey: TEST_KEY });
    try {
      const status = await manager.status();
      expect(status).toMatchObject({ schemaVersion: 0, keys: null, counts: { tenants: 0, secrets: 0 } });
      const pg = await import('pg');
      const pool = new pg.default.Pool({ connectionString: db.url });
      try {
        expect(await databaseStatus(pool, 'public')).toMatchObject({ schemaVersion: 0, masterKeysInUse: [] });
      } finally {
        await pool.end();
      }
    } finally {
      await manager.close();
    }
  });

  it('verifyAudit() returns the verified heads', async () => {
    const { manager } = await setupManager();
    await manager.set('tenant-h', 'a', 'v');
    const result = await manager.verifyAudit({ tenantId: 'tenant-h' });
    expect(result.heads).toEqual([
      { chainId: 'tenant-h', seq: 1, hash: expect.stringMatching(/^[0-9a-f]{64}$/) },
    ]);
  });
});
