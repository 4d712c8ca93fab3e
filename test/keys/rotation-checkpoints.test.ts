import { describe, expect, it } from 'vitest';
import { createSecretsManager, generateMasterKey } from '../../src/index.js';
import { adminQuery, freshDatabase } from '../support/db.js';

/**
 * Master-key rotation and the audit trail's signed checkpoints: after a rotation, nothing (neither a
 * data key nor a checkpoint) depends on the old key, so dropping it keeps the trail verifiable.
 */
describe('master-key rotation re-signs audit checkpoints', () => {
  it('verification still passes after the old key is dropped from the ring', async () => {
    const db = await freshDatabase();
    const oldKey = generateMasterKey();
    const newKey = generateMasterKey();
    const before = createSecretsManager({ connectionString: db.url, masterKey: oldKey });
    await before.migrate();
    for (const tenant of ['t1', 't2', 't3']) await before.set(tenant, 'api-key', `value-${tenant}`);
    const first = await before.verifyAudit();
    expect(first.ok).toBe(true);
    await before.close();

    const during = createSecretsManager({
      connectionString: db.url,
      masterKey: newKey,
      previousMasterKeys: [oldKey],
    });
    const status = await during.keyStatus();
    expect(status.readyToDropPrevious).toBe(false);
    expect(Object.keys(status.checkpointsByMasterKey)).toEqual([before.masterKeyIds[0]]);
    // Row versions (xmin, ctid) of every secret and version: a master-key rotation rewrites none.
    const secretRows = () =>
      adminQuery(
        db.name,
        `SELECT xmin::text, ctid::text FROM tenant_secrets UNION ALL SELECT xmin::text, ctid::text FROM tenant_secret_versions ORDER BY 1, 2`,
      );
    const secretsBefore = await secretRows();
    const result = await during.rotateMasterKey({ batchSize: 2 });
    expect(await secretRows()).toEqual(secretsBefore);
    expect(result.rewrapped).toBe(3);
    expect(result.auditCheckpoints.resigned).toBeGreaterThan(0);
    expect(result.auditCheckpoints.invalid).toBe(0);
    const after = await during.keyStatus();
    expect(after.readyToDropPrevious).toBe(true);
    expect(Object.keys(after.checkpointsByMasterKey)).toEqual([during.masterKeyIds[0]]);
    await during.close();

    const only = createSecretsManager({ connectionString: db.url, masterKey: newKey });
    try {
      const verified = await only.verifyAudit();
      expect(verified.problems).toEqual([]);
      expect(verified.ok).toBe(true);
      expect(await only.get('t2', 'api-key')).toBe('value-t2');
    } finally {
      await only.close();
    }
  });
});
