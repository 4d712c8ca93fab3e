import pg from 'pg';
import { beforeAll, describe, expect, it } from 'vitest';
import { ConfigurationError, type OperationEvent, type SecretsManager, sealAudit } from '../../src/index.js';
import { setupManager } from '../support/db.js';

/**
 * The manager's surface: the data plane at the top, the audit trail, keys and installation grouped as
 * the database grants are; the names of release 0.2 are the same functions; one telemetry name per
 * public operation; a keyless `sealAudit` for jobs.
 */
describe('grouped API', () => {
  const events: OperationEvent[] = [];
  let manager: SecretsManager;
  let url: string;
  beforeAll(async () => {
    const setup = await setupManager({
      logger: (event) => events.push(event),
      auditSealIntervalMs: 0,
      cache: { ttlMs: 60_000 },
    });
    manager = setup.manager;
    url = setup.db.url;
  });

  it('groups hold the operations; the 0.2 names are the same functions', () => {
    const aliases: [unknown, unknown][] = [
      [manager.migrate, manager.installation.migrate],
      [manager.ready, manager.installation.ready],
      [manager.status, manager.installation.status],
      [manager.importLegacy, manager.installation.importLegacy],
      [manager.sealAudit, manager.auditTrail.seal],
      [manager.audit, manager.auditTrail.query],
      [manager.exportAudit, manager.auditTrail.export],
      [manager.verifyAudit, manager.auditTrail.verify],
      [manager.pruneAudit, manager.auditTrail.prune],
      [manager.resignAuditCheckpoints, manager.auditTrail.resignCheckpoints],
      [manager.registerMasterKey, manager.keys.register],
      [manager.unregisterMasterKey, manager.keys.unregister],
      [manager.rotateMasterKey, manager.keys.rotateMaster],
      [manager.rotateTenantKey, manager.keys.rotateTenant],
      [manager.purgeTenant, manager.keys.purgeTenant],
      [manager.keyStatus, manager.keys.status],
      [manager.tenantKeyBundle, manager.keys.bundle],
    ];
    for (const [old, grouped] of aliases) {
      expect(typeof grouped).toBe('function');
      expect(old).toBe(grouped);
    }
  });

  it('works through the groups: write, audit, verify, keys, pins, status, installer script', async () => {
    await manager.set('grp-acme', 'stripe', 'sk_grouped_1');
    await manager.rotate('grp-acme', 'stripe', 'sk_grouped_2');
    expect(await manager.get('grp-acme', 'stripe')).toBe('sk_grouped_2');

    const sealed = await manager.auditTrail.seal();
    expect(sealed.pending).toBe(0);
    const page = await manager.auditTrail.query('grp-acme');
    expect(page.records.map((r) => r.action)).toEqual(
      expect.arrayContaining(['secret.created', 'secret.rotated']),
    );
    const verified = await manager.auditTrail.verify();
    expect(verified.ok).toBe(true);

    const keyStatus = await manager.keys.status();
    expect(keyStatus.currentMasterKeyId).toBe(manager.masterKeyIds[0]);
    expect(keyStatus.tenants).toBeGreaterThanOrEqual(1);

    await manager.keys.pin('grp-pinned');
    expect((await manager.keys.pins()).map((p) => p.pattern)).toEqual(['grp-pinned']);
    await manager.keys.unpin('grp-pinned');
    expect(await manager.keys.pins()).toHaveLength(0);

    const status = await manager.installation.status();
    expect(status.schemaVersion).toBe(status.libraryVersion);
    expect(status.keys?.currentMasterKeyId).toBe(manager.masterKeyIds[0]);
    expect((await manager.installation.ready()).schemaVersion).toBe(status.libraryVersion);
    expect(await manager.installation.sql({ transaction: false })).toContain('tenant_secrets');
  });

  it('one telemetry name per public operation: a cache miss and a cache hit of get are both `get`', async () => {
    await manager.set('grp-otel', 'k', 'v1');
    events.length = 0;
    expect(await manager.get('grp-otel', 'k')).toBe('v1'); // miss: read from the database
    expect(await manager.get('grp-otel', 'k')).toBe('v1'); // hit
    await manager.getWithVersion('grp-otel', 'k', { fresh: true });
    await manager.keys.status();
    await manager.auditTrail.verify({ tenantId: 'grp-otel' });
    expect(events.map((e) => [e.operation, e.cached === true])).toEqual([
      ['get', false],
      ['get', true],
      ['getWithVersion', false],
      ['keyStatus', false],
      ['verifyAudit', false],
    ]);
  });

  it('writes in a caller transaction make the read cache forget the secret', async () => {
    await manager.set('grp-tx', 'k', 'before');
    expect(await manager.get('grp-tx', 'k')).toBe('before'); // cached now
    const client = new pg.Client({ connectionString: url });
    await client.connect();
    try {
      await client.query('BEGIN');
      await manager.inTransaction(client).set('grp-tx', 'k', 'after');
      await client.query('COMMIT');
    } finally {
      await client.end();
    }
    expect(await manager.get('grp-tx', 'k')).toBe('after');
  });

  it('sealAudit() seals without a master key (a job that holds none)', async () => {
    await manager.set('grp-seal', 'a', 'v');
    await manager.set('grp-seal', 'b', 'v');
    const result = await sealAudit({ connectionString: url, env: {} });
    expect(result.sealed).toBeGreaterThanOrEqual(2);
    expect(result.pending).toBe(0);
    expect((await sealAudit({ connectionString: url, env: {} })).sealed).toBe(0);
    await expect(sealAudit({ env: {} })).rejects.toThrow(ConfigurationError);
    await expect(sealAudit({ connectionString: url, env: {}, limit: 0 })).rejects.toMatchObject({
      code: 'INVALID_INPUT',
    });
    await expect(sealAudit({ connectionString: url, env: {}, masterKey: 'x' } as never)).rejects.toThrow(
      /unknown option "masterKey"/,
    );
  });
});
