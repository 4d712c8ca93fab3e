import { describe, expect, it } from 'vitest';
import { IntegrityError, Keyring, OperationAbortedError, TenantNotFoundError } from '../../src/index.js';
import {
  adminQuery,
  CITUS_STAGE,
  connectForTest,
  directUrlFor,
  setupManager,
  TEST_KEY,
} from '../support/db.js';

interface KeyRow {
  version: number;
  state: string;
  wrapped: boolean;
  master_key_id: string | null;
}

const keyRows = (db: string, tenant: string) =>
  adminQuery<KeyRow>(
    db,
    `SELECT version, state, wrapped_key IS NOT NULL AS wrapped, master_key_id FROM tenant_secret_keys
      WHERE tenant_id = $1 ORDER BY version`,
    [tenant],
  );

const keyVersionsInUse = async (db: string, tenant: string) =>
  (
    await adminQuery<{ key_version: number }>(
      db,
      `SELECT DISTINCT key_version FROM (
         SELECT key_version FROM tenant_secrets WHERE tenant_id = $1
         UNION ALL SELECT key_version FROM tenant_secret_versions WHERE tenant_id = $1 AND encrypted_value IS NOT NULL) u
       ORDER BY key_version`,
      [tenant],
    )
  ).map((r) => r.key_version);

describe('tenant-key rotation', () => {
  it('re-encrypts every ciphertext to a new data key, destroys the old key, keeps all versions readable', async () => {
    const { manager, db } = await setupManager();
    const t = 'acme';
    await manager.set(t, 'a', 'a1');
    await manager.rotate(t, 'a', 'a2');
    await manager.rotate(t, 'a', 'a3');
    await manager.set(t, 'b', 'b1');
    await manager.set(t, 'gone', 'g1');
    await manager.delete(t, 'gone');
    await manager.set('other', 'a', 'other-a');
    const otherBefore = await adminQuery(
      db.name,
      `SELECT * FROM tenant_secret_keys WHERE tenant_id = 'other'`,
    );

    expect(await keyRows(db.name, t)).toEqual([expect.objectContaining({ version: 1, state: 'active' })]);
    const progress: number[] = [];
    const result = await manager.rotateTenantKey(t, {
      batchSize: 2,
      onProgress: async ({ done }) => {
        progress.push(done);
        // a write during the rotation goes to the new key at once
        if (progress.length === 1) await manager.set(t, 'during', 'd1');
      },
    });
    // 3 current values (a, b, gone) + 5 versions (a1..a3, b1, g1)
    expect(result).toEqual({
      keyVersion: 2,
      previousKeyVersion: 1,
      resumed: false,
      reencrypted: 8,
      batches: 4,
      destroyedKeyVersions: [1],
      batchSize: 2,
    });
    expect(progress).toEqual([2, 4, 6, 8]);
    expect(await keyRows(db.name, t)).toEqual([
      { version: 1, state: 'destroyed', wrapped: false, master_key_id: null },
      expect.objectContaining({ version: 2, state: 'active', wrapped: true }),
    ]);
    expect(await keyVersionsInUse(db.name, t)).toEqual([2]);

    expect(await manager.get(t, 'a')).toBe('a3');
    expect(await manager.get(t, 'a', { version: 1 })).toBe('a1');
    expect(await manager.get(t, 'a', { version: 2 })).toBe('a2');
    expect(await manager.get(t, 'a', { version: 'previous' })).toBe('a2');
    expect(await manager.get(t, 'b')).toBe('b1');
    expect(await manager.get(t, 'during')).toBe('d1');
    expect(await manager.get(t, 'gone')).toBeNull();
    // the other tenant is untouched
    expect(await adminQuery(db.name, `SELECT * FROM tenant_secret_keys WHERE tenant_id = 'other'`)).toEqual(
      otherBefore,
    );
    expect(await manager.get('other', 'a')).toBe('other-a');

    const audit = await adminQuery<{ action: string; version: number | null; details: unknown }>(
      db.name,
      `SELECT action, version, details FROM tenant_secret_audit
        WHERE chain_id = $1 AND action LIKE 'tenant\\_key.%' ORDER BY seq`,
      [t],
    );
    expect(audit.map((a) => a.action)).toEqual([
      'tenant_key.rotated',
      'tenant_key.reencrypted',
      'tenant_key.reencrypted',
      'tenant_key.reencrypted',
      'tenant_key.reencrypted',
      'tenant_key.destroyed',
    ]);
    expect(audit[0]?.details).toMatchObject({ previous_key_version: 1 });
    expect(audit.at(-1)?.version).toBe(1);
    const text = JSON.stringify(audit);
    expect(text).not.toContain(TEST_KEY);
    expect(text).not.toMatch(/[0-9a-f]{64}/);
  });

  it('resumes an interrupted rotation instead of starting another', async () => {
    const { manager, db } = await setupManager();
    const t = 'resume-me';
    for (let i = 0; i < 6; i++) await manager.set(t, `k${i}`, `v${i}`);
    const stopped = await manager
      .rotateTenantKey(t, {
        batchSize: 4,
        onProgress: () => {
          throw new Error('interrupted');
        },
      })
      .catch((e: unknown) => e);
    expect(stopped).toBeInstanceOf(OperationAbortedError);
    expect((stopped as OperationAbortedError).done).toBe(4);
    expect(await keyVersionsInUse(db.name, t)).toEqual([1, 2]);
    expect((await keyRows(db.name, t)).map((k) => k.state)).toEqual(['retired', 'active']);
    // mid-way, everything is readable, one by one and in one batch (values under both key versions)
    for (let i = 0; i < 6; i++) expect(await manager.get(t, `k${i}`)).toBe(`v${i}`);
    expect(await manager.getMany(t, ['k0', 'k1', 'k2', 'k3', 'k4', 'k5', 'none'])).toEqual({
      k0: 'v0',
      k1: 'v1',
      k2: 'v2',
      k3: 'v3',
      k4: 'v4',
      k5: 'v5',
      none: null,
    });
    expect((await manager.keyStatus()).retiredKeys).toBe(1);

    const resumed = await manager.rotateTenantKey(t, { batchSize: 4 });
    expect(resumed).toMatchObject({ keyVersion: 2, previousKeyVersion: 1, resumed: true, reencrypted: 8 });
    expect(resumed.destroyedKeyVersions).toEqual([1]);
    expect(await keyVersionsInUse(db.name, t)).toEqual([2]);
    for (let i = 0; i < 6; i++) expect(await manager.get(t, `k${i}`)).toBe(`v${i}`);

    // the next call is a new rotation
    const again = await manager.rotateTenantKey(t);
    expect(again).toMatchObject({ keyVersion: 3, previousKeyVersion: 2, resumed: false, reencrypted: 12 });
    expect((await keyRows(db.name, t)).map((k) => k.state)).toEqual(['destroyed', 'destroyed', 'active']);
    for (let i = 0; i < 6; i++) expect(await manager.get(t, `k${i}`, { version: 1 })).toBe(`v${i}`);
  });

  it('a rotation that starts while another holds the key row joins it instead of failing', async () => {
    // The interleaving made certain: the first rotation's transaction stays open after retiring the
    // key, the second starts, waits on the key row, and only then does the first commit.
    const { manager, db } = await setupManager();
    const t = 'racing';
    for (let i = 0; i < 4; i++) await manager.set(t, `k${i}`, `v${i}`);
    const bundle = Keyring.parse(TEST_KEY).bundleBytes(t);
    const first = await connectForTest(directUrlFor(db.name));
    const second = await connectForTest(directUrlFor(db.name));
    const rotate = `SELECT status, key_version, previous_key_version FROM tenant_secret_rotate_key($1, $2, '{}')`;
    await first.query('BEGIN');
    const began = await first.query(rotate, [t, bundle]);
    expect(began.rows).toEqual([{ status: 'ok', key_version: 2, previous_key_version: 1 }]);
    // Distributed, the wait is on the worker holding the tenant, by a backend serving the second
    // session: Citus names both by the session's global process id.
    const [secondPid, waiting] = CITUS_STAGE
      ? [
          (await second.query('SELECT citus_backend_gpid()::text AS pid')).rows[0].pid as string,
          `SELECT count(*)::int AS n FROM citus_stat_activity WHERE global_pid = $1::bigint AND wait_event_type = 'Lock'`,
        ]
      : [
          (await second.query('SELECT pg_backend_pid()::text AS pid')).rows[0].pid as string,
          `SELECT count(*)::int AS n FROM pg_stat_activity WHERE pid = $1::int AND wait_event_type = 'Lock'`,
        ];
    const joined = second.query(rotate, [t, bundle]);
    // Its outcome is awaited below; if the wait is never seen, the test fails there, not as an
    // unhandled rejection when the connection closes.
    joined.catch(() => undefined);
    for (let waited = 0; ; waited++) {
      const [row] = await adminQuery<{ n: number }>(db.name, waiting, [secondPid]);
      if (row?.n === 1) break;
      if (waited > 600) throw new Error('the second rotation never waited on the key row');
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    await first.query('COMMIT');
    expect((await joined).rows).toEqual([{ status: 'resumed', key_version: 2, previous_key_version: 1 }]);
    expect((await keyRows(db.name, t)).map((k) => [k.version, k.state])).toEqual([
      [1, 'retired'],
      [2, 'active'],
    ]);
    // The library finishes the rotation both joined.
    expect(await manager.rotateTenantKey(t)).toMatchObject({
      keyVersion: 2,
      resumed: true,
      destroyedKeyVersions: [1],
    });
    expect(await keyVersionsInUse(db.name, t)).toEqual([2]);
    for (let i = 0; i < 4; i++) expect(await manager.get(t, `k${i}`)).toBe(`v${i}`);
  });

  it('two concurrent rotations of one tenant both succeed, and reads during them never fail', async () => {
    const { manager, db } = await setupManager();
    const t = 'busy';
    for (let i = 0; i < 20; i++) await manager.set(t, `k${i}`, `v${i}`);
    let running = true;
    let reads = 0;
    const failures: unknown[] = [];
    const reader = (async () => {
      while (running) {
        const i = reads % 20;
        try {
          if ((await manager.get(t, `k${i}`)) !== `v${i}`) failures.push(new Error(`wrong value k${i}`));
        } catch (error) {
          failures.push(error);
        }
        reads++;
      }
    })();
    const results = await Promise.allSettled([
      manager.rotateTenantKey(t, { batchSize: 3 }),
      manager.rotateTenantKey(t, { batchSize: 3 }),
    ]).finally(async () => {
      running = false;
      await reader;
    });
    // A rejection is shown with its error, not only as 'rejected'.
    expect(results.map((r) => (r.status === 'fulfilled' ? r.status : String(r.reason)))).toEqual([
      'fulfilled',
      'fulfilled',
    ]);
    expect(failures).toEqual([]);
    expect(reads).toBeGreaterThan(0);
    const states = (await keyRows(db.name, t)).map((k) => k.state);
    expect(states.at(-1)).toBe('active');
    expect(states.slice(0, -1).every((s) => s === 'destroyed')).toBe(true);
    expect(await keyVersionsInUse(db.name, t)).toEqual([states.length]);
    for (let i = 0; i < 20; i++) expect(await manager.get(t, `k${i}`)).toBe(`v${i}`);
  });

  it('stops at a ciphertext that does not open, names its key, loses nothing, and resumes once it is repaired', async () => {
    const { manager, db } = await setupManager();
    for (const key of ['a', 'b', 'c']) await manager.set('tamper-rk', key, `value-${key}`);
    await manager.set('tamper-rk', 'b', 'value-b2');
    const [original] = await adminQuery<{ encrypted_value: Buffer }>(
      db.name,
      "SELECT encrypted_value FROM tenant_secret_versions WHERE tenant_id = 'tamper-rk' AND key_name = 'b' AND version = 1",
    );
    await adminQuery(
      db.name,
      `UPDATE tenant_secret_versions SET encrypted_value = set_byte(encrypted_value, 20, get_byte(encrypted_value, 20) # 1)
        WHERE tenant_id = 'tamper-rk' AND key_name = 'b' AND version = 1`,
    );
    const error = await manager.rotateTenantKey('tamper-rk').catch((e: unknown) => e);
    expect(error).toBeInstanceOf(IntegrityError);
    expect((error as Error).message).toContain('"b"');
    expect((error as Error).message).not.toContain('value-');
    for (const key of ['a', 'c']) expect(await manager.get('tamper-rk', key)).toBe(`value-${key}`);
    expect(await manager.get('tamper-rk', 'b')).toBe('value-b2');
    await adminQuery(
      db.name,
      "UPDATE tenant_secret_versions SET encrypted_value = $1 WHERE tenant_id = 'tamper-rk' AND key_name = 'b' AND version = 1",
      [original?.encrypted_value],
    );
    const resumed = await manager.rotateTenantKey('tamper-rk');
    expect(resumed.resumed).toBe(true);
    expect(await keyVersionsInUse(db.name, 'tamper-rk')).toEqual([resumed.keyVersion]);
    expect(await manager.get('tamper-rk', 'b', { version: 1 })).toBe('value-b');
  });

  it('refuses a tenant without a data key', async () => {
    const { manager } = await setupManager();
    await expect(manager.rotateTenantKey('nobody')).rejects.toBeInstanceOf(TenantNotFoundError);
  });
});

describe('purgeTenant', () => {
  it('crypto-shreds keys, secrets and versions; reads return null; the audit trail stays', async () => {
    const { manager, db } = await setupManager();
    const t = 'leaving';
    await manager.set(t, 'a', 'a1');
    await manager.rotate(t, 'a', 'a2');
    await manager.set(t, 'b', 'b1');
    await manager.set('staying', 'a', 'keep');
    await manager.rotateTenantKey(t);
    await manager.sealAudit();
    const auditBefore = await adminQuery<{ n: string }>(
      db.name,
      `SELECT count(*) AS n FROM tenant_secret_audit WHERE chain_id = $1`,
      [t],
    );

    expect(await manager.purgeTenant(t)).toEqual({ keys: 2, secrets: 2, versions: 3 });

    expect(await manager.get(t, 'a')).toBeNull();
    expect(await manager.get(t, 'a', { version: 1 })).toBeNull();
    expect(await manager.get(t, 'b')).toBeNull();
    expect(await manager.list(t)).toEqual([]);
    for (const table of ['tenant_secret_keys', 'tenant_secrets', 'tenant_secret_versions']) {
      const rows = await adminQuery<{ n: string }>(
        db.name,
        `SELECT count(*) AS n FROM ${table} WHERE tenant_id = $1`,
        [t],
      );
      expect(Number(rows[0]?.n), table).toBe(0);
    }
    expect(await manager.get('staying', 'a')).toBe('keep');

    await manager.sealAudit();
    const purged = await adminQuery<{ seq: string; details: unknown; tenant_id: string }>(
      db.name,
      `SELECT seq, details, tenant_id FROM tenant_secret_audit WHERE chain_id = $1 AND action = 'tenant.purged'`,
      [t],
    );
    expect(purged).toHaveLength(1);
    expect(purged[0]?.tenant_id).toBe(t);
    expect(purged[0]?.details).toEqual({ keys: 2, secrets: 2, versions: 3 });
    // the records before the purge are all still there, the purge record follows them
    expect(Number(purged[0]?.seq)).toBe(Number(auditBefore[0]?.n) + 1);
    const kept = await adminQuery<{ n: string }>(
      db.name,
      `SELECT count(*) AS n FROM tenant_secret_audit WHERE chain_id = $1 AND seq <= $2`,
      [t, purged[0]?.seq],
    );
    expect(Number(kept[0]?.n)).toBe(Number(auditBefore[0]?.n) + 1);

    // idempotent, and the tenant can start again with a fresh key
    expect(await manager.purgeTenant(t)).toEqual({ keys: 0, secrets: 0, versions: 0 });
    await manager.set(t, 'a', 'fresh');
    expect(await manager.get(t, 'a')).toBe('fresh');
    expect(await manager.get(t, 'a', { version: 2 })).toBeNull();
  });
});
