import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  ConfigurationError,
  createSecretsManager,
  InvalidInputError,
  type SecretsManager,
  UnauthorizedError,
} from '../../src/index.js';
import { adminQuery, freshDatabase, OTHER_KEY, TEST_KEY } from '../support/db.js';
import { loginRoles, roleUrl } from '../support/roles.js';

/**
 * Retiring (or containing a leaked) master key: once unregistered, a key can no longer vouch for a
 * tenant — no first data key, no tenant proof — while data keys it still wraps keep working for its
 * holder until rotateMasterKey() moves them.
 */
let db: { name: string; url: string };
let owner: SecretsManager; // schema owner, current key TEST_KEY
let retired: SecretsManager; // an application still configured with OTHER_KEY only
let app: string;
let operator: string;

beforeAll(async () => {
  [app, operator] = await loginRoles('unreg_app', 'unreg_op');
  db = await freshDatabase('unreg');
  owner = createSecretsManager({ connectionString: db.url, masterKey: TEST_KEY, auditSealIntervalMs: 0 });
  await owner.migrate({ grantTo: [app], grantOperatorTo: [operator] });
  // The owner registers the second key (a manager whose ring holds both).
  const both = createSecretsManager({
    connectionString: db.url,
    masterKey: OTHER_KEY,
    previousMasterKeys: [TEST_KEY],
    auditSealIntervalMs: 0,
  });
  await both.registerMasterKey();
  await both.close();
  retired = createSecretsManager({ connectionString: db.url, masterKey: OTHER_KEY, auditSealIntervalMs: 0 });
  await retired.set('made-under-other', 'k', 'v1');
});

afterAll(async () => {
  await retired.close();
  await owner.close();
});

describe('unregisterMasterKey', () => {
  it('takes away the power to vouch for new tenants, keeps data keys the key wraps working, and is audited', async () => {
    const id = retired.masterKeyIds[0] as string;
    expect(await owner.unregisterMasterKey(id)).toEqual({ masterKeyId: id, unregistered: true });
    expect(
      await adminQuery(db.name, 'SELECT 1 FROM tenant_secret_master_keys WHERE master_key_id = $1', [id]),
    ).toEqual([]);
    // Its own tenant: the data key it wraps still unwraps.
    expect(await retired.get('made-under-other', 'k')).toBe('v1');
    await retired.set('made-under-other', 'k', 'v2');
    // A new tenant: refused, nothing created.
    await expect(retired.set('brand-new', 'k', 'v')).rejects.toBeInstanceOf(UnauthorizedError);
    expect(
      await adminQuery(db.name, "SELECT 1 FROM tenant_secret_keys WHERE tenant_id = 'brand-new'"),
    ).toEqual([]);
    // A second call changes nothing.
    expect(await owner.unregisterMasterKey(id)).toEqual({ masterKeyId: id, unregistered: false });
    await owner.sealAudit();
    const records = await adminQuery<{ outcome: string; error_code: string | null; details: unknown }>(
      db.name,
      "SELECT outcome, error_code, details FROM tenant_secret_audit WHERE action = 'master_key.unregistered' ORDER BY id",
    );
    expect(records).toEqual([
      { outcome: 'success', error_code: null, details: { master_key_id: id, data_keys_still_wrapped: 1 } },
      { outcome: 'failure', error_code: 'NOT_REGISTERED', details: { master_key_id: id } },
    ]);
  });

  it('refuses the only registered key unless forced; registering it again restores it', async () => {
    const id = owner.masterKeyIds[0] as string;
    await expect(owner.unregisterMasterKey(id)).rejects.toBeInstanceOf(ConfigurationError);
    expect(await owner.unregisterMasterKey(id, { force: true })).toEqual({
      masterKeyId: id,
      unregistered: true,
    });
    await expect(owner.set('after-force', 'k', 'v')).rejects.toBeInstanceOf(UnauthorizedError);
    expect((await owner.registerMasterKey()).registered).toEqual([id]);
    await owner.set('after-force', 'k', 'v');
    expect(await owner.get('after-force', 'k')).toBe('v');
  });

  it('validates its input and is reserved to the owner and operator roles', async () => {
    for (const bad of [
      'mk_0123',
      'MK_0123456789ABCDEF',
      `mk_${'a'.repeat(1000)}`,
      '',
      42 as unknown as string,
    ]) {
      await expect(owner.unregisterMasterKey(bad)).rejects.toBeInstanceOf(InvalidInputError);
    }
    await expect(
      owner.unregisterMasterKey('mk_0123456789abcdef', { force: 'yes' as unknown as boolean }),
    ).rejects.toBeInstanceOf(InvalidInputError);
    const asApp = createSecretsManager({ connectionString: roleUrl(db.name, app), masterKey: TEST_KEY });
    const asOperator = createSecretsManager({
      connectionString: roleUrl(db.name, operator),
      masterKey: TEST_KEY,
    });
    try {
      await expect(asApp.unregisterMasterKey('mk_0123456789abcdef')).rejects.toMatchObject({
        sqlState: '42501',
      });
      expect(await asOperator.unregisterMasterKey('mk_0123456789abcdef')).toEqual({
        masterKeyId: 'mk_0123456789abcdef',
        unregistered: false,
      });
    } finally {
      await asApp.close();
      await asOperator.close();
    }
  });
});
