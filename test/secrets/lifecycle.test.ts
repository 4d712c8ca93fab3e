import pg from 'pg';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  ConflictError,
  createSecretsManager,
  IntegrityError,
  InvalidInputError,
  SecretExpiredError,
  SecretNotFoundError,
  type SecretsManager,
  UnauthorizedError,
  UnknownMasterKeyError,
} from '../../src/index.js';
import { adminQuery, CITUS_STAGE, OTHER_KEY, setupManager, TEST_KEY, viaPgBouncer } from '../support/db.js';

interface AuditRow {
  action: string;
  outcome: string;
  error_code: string | null;
  version: number | null;
  key_name: string | null;
  details: Record<string, unknown> | null;
}

let manager: SecretsManager;
let db: { name: string; url: string };

beforeAll(async () => {
  ({ manager, db } = await setupManager());
});

let tenantSeq = 0;
/** A tenant id of its own for each test, so audit chains and secrets never mix. */
const newTenant = () => `lc-${process.pid}-${++tenantSeq}`;

async function audit(tenant: string, action?: string): Promise<AuditRow[]> {
  await manager.sealAudit();
  return adminQuery<AuditRow & pg.QueryResultRow>(
    db.name,
    `SELECT action, outcome, error_code, version, key_name, details FROM tenant_secret_audit
      WHERE chain_id = $1 AND ($2::text IS NULL OR action = $2) ORDER BY seq`,
    [tenant, action ?? null],
  );
}

async function versionRows(tenant: string, key: string) {
  return adminQuery<{
    version: number;
    state: string;
    origin: string;
    has_ct: boolean;
    key_version: number | null;
  }>(
    db.name,
    `SELECT version, state, origin, encrypted_value IS NOT NULL AS has_ct, key_version
       FROM tenant_secret_versions WHERE tenant_id = $1 AND key_name = $2 ORDER BY version`,
    [tenant, key],
  );
}

async function tamperVersion(tenant: string, key: string, version: number): Promise<void> {
  // Flip one byte of the ciphertext body (after the 0x01 header and the IV).
  await adminQuery(
    db.name,
    `UPDATE tenant_secret_versions SET encrypted_value = set_byte(encrypted_value, 20, get_byte(encrypted_value, 20) # 1)
      WHERE tenant_id = $1 AND key_name = $2 AND version = $3`,
    [tenant, key, version],
  );
  await adminQuery(
    db.name,
    `UPDATE tenant_secrets s SET encrypted_value = v.encrypted_value FROM tenant_secret_versions v
      WHERE s.tenant_id = $1 AND s.key_name = $2 AND v.tenant_id = s.tenant_id AND v.key_name = s.key_name
        AND v.version = $3 AND s.current_version = $3`,
    [tenant, key, version],
  );
}

describe('rollback', () => {
  it('writes the old value as a new version (origin rollback), re-sealed, and audits from_version', async () => {
    const t = newTenant();
    await manager.set(t, 'db/password', 'one');
    await manager.set(t, 'db/password', 'two');
    await manager.set(t, 'db/password', 'three');

    expect(await manager.rollback(t, 'db/password', 1)).toEqual({ version: 4 });
    expect(await manager.get(t, 'db/password')).toBe('one');
    expect(await manager.getWithVersion(t, 'db/password')).toEqual({
      value: 'one',
      version: 4,
      expiresAt: null,
    });
    // The replaced version is the previous one, readable during the grace period.
    expect(await manager.get(t, 'db/password', { version: 'previous' })).toBe('three');
    // Older versions are untouched.
    expect(await manager.get(t, 'db/password', { version: 2 })).toBe('two');

    const rows = await versionRows(t, 'db/password');
    expect(rows.map((r) => [r.version, r.origin, r.state])).toEqual([
      [1, 'set', 'enabled'],
      [2, 'set', 'enabled'],
      [3, 'set', 'enabled'],
      [4, 'rollback', 'enabled'],
    ]);
    // A new ciphertext, not a copy of version 1's (whose tag binds version 1).
    const [blobs] = await adminQuery<{ same: boolean }>(
      db.name,
      `SELECT a.encrypted_value = b.encrypted_value AS same FROM tenant_secret_versions a, tenant_secret_versions b
        WHERE a.tenant_id = $1 AND b.tenant_id = $1 AND a.key_name = 'db/password' AND b.key_name = 'db/password'
          AND a.version = 1 AND b.version = 4`,
      [t],
    );
    expect(blobs?.same).toBe(false);

    const versions = await manager.versions(t, 'db/password');
    expect(versions[0]).toMatchObject({ version: 4, origin: 'rollback', isCurrent: true });
    expect(versions[1]).toMatchObject({ version: 3, isPrevious: true });

    const records = await audit(t, 'secret.rolled_back');
    expect(records).toHaveLength(1);
    expect(records[0]).toMatchObject({ outcome: 'success', version: 4, key_name: 'db/password' });
    expect(records[0]?.details).toMatchObject({ from_version: 1, previous_version: 3 });
    expect(JSON.stringify(records)).not.toContain('one');
  });

  it('refuses a destroyed, missing or deleted target as not found, audited', async () => {
    const t = newTenant();
    await manager.set(t, 'k', 'a');
    await manager.set(t, 'k', 'b');
    await manager.set(t, 'k', 'c');
    await manager.destroyVersions(t, 'k', [1]);

    await expect(manager.rollback(t, 'k', 1)).rejects.toBeInstanceOf(SecretNotFoundError);
    await expect(manager.rollback(t, 'k', 99)).rejects.toBeInstanceOf(SecretNotFoundError);
    await expect(manager.rollback(t, 'missing', 1)).rejects.toBeInstanceOf(SecretNotFoundError);
    await manager.delete(t, 'k');
    await expect(manager.rollback(t, 'k', 2)).rejects.toBeInstanceOf(SecretNotFoundError);

    const records = await audit(t, 'secret.rolled_back');
    expect(records.map((r) => [r.outcome, r.error_code, r.details?.from_version])).toEqual([
      ['failure', 'NOT_FOUND', 1],
      ['failure', 'NOT_FOUND', 99],
      ['failure', 'NOT_FOUND', 1],
      ['failure', 'NOT_FOUND', 2],
    ]);
    // Nothing was written.
    expect((await versionRows(t, 'k')).map((r) => r.version)).toEqual([1, 2, 3]);
  });

  it('check-and-set: a stale ifVersion throws ConflictError and changes nothing', async () => {
    const t = newTenant();
    await manager.set(t, 'k', 'a');
    await manager.set(t, 'k', 'b');
    const error = await manager.rollback(t, 'k', 1, { ifVersion: 1 }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ConflictError);
    expect(error).toMatchObject({ expectedVersion: 1, currentVersion: 2 });
    expect(await manager.getWithVersion(t, 'k')).toEqual({ value: 'b', version: 2, expiresAt: null });
    expect(await manager.rollback(t, 'k', 1, { ifVersion: 2 })).toEqual({ version: 3 });
    const records = await audit(t, 'secret.rolled_back');
    expect(records.map((r) => [r.outcome, r.error_code])).toEqual([
      ['failure', 'CONFLICT'],
      ['success', null],
    ]);
  });

  it('a tampered old version fails with IntegrityError, audited, and writes nothing', async () => {
    const t = newTenant();
    await manager.set(t, 'k', 'a');
    await manager.set(t, 'k', 'b');
    await tamperVersion(t, 'k', 1);
    await expect(manager.rollback(t, 'k', 1)).rejects.toBeInstanceOf(IntegrityError);
    expect((await versionRows(t, 'k')).map((r) => r.version)).toEqual([1, 2]);
    const records = await audit(t, 'secret.rolled_back');
    expect(records.map((r) => [r.outcome, r.error_code])).toEqual([['failure', 'INTEGRITY']]);
  });

  it('validates its arguments before touching the database', async () => {
    const t = newTenant();
    await expect(manager.rollback(t, 'k', 0)).rejects.toBeInstanceOf(InvalidInputError);
    await expect(manager.rollback(t, 'bad name', 1)).rejects.toBeInstanceOf(InvalidInputError);
    await expect(manager.rollback(t, 'k', 1, { ifVersion: -1 })).rejects.toBeInstanceOf(InvalidInputError);
  });
});

describe('restore', () => {
  it('undoes a soft delete within the window; audited', async () => {
    const t = newTenant();
    await manager.set(t, 'k', 'a');
    await manager.set(t, 'k', 'b');
    await manager.delete(t, 'k');
    expect(await manager.get(t, 'k')).toBeNull();
    expect(await manager.restore(t, 'k')).toEqual({ version: 2 });
    expect(await manager.getWithVersion(t, 'k')).toEqual({ value: 'b', version: 2, expiresAt: null });
    expect(await manager.get(t, 'k', { version: 1 })).toBe('a');
    const [listed] = await manager.list(t);
    expect(listed).toMatchObject({ keyName: 'k', deletedAt: null, purgeAfter: null });
    const records = await audit(t, 'secret.restored');
    expect(records).toHaveLength(1);
    expect(records[0]).toMatchObject({ outcome: 'success', version: 2 });
  });

  it('not deleted, missing, or past its window: SecretNotFoundError, audited', async () => {
    const t = newTenant();
    await manager.set(t, 'live', 'a');
    await manager.set(t, 'gone', 'a');
    await manager.delete(t, 'gone', { recoveryWindowDays: 0 });
    await expect(manager.restore(t, 'live')).rejects.toBeInstanceOf(SecretNotFoundError);
    await expect(manager.restore(t, 'missing')).rejects.toBeInstanceOf(SecretNotFoundError);
    await expect(manager.restore(t, 'gone')).rejects.toBeInstanceOf(SecretNotFoundError);
    expect(await manager.get(t, 'gone')).toBeNull();
    const records = await audit(t, 'secret.restored');
    expect(records.map((r) => [r.key_name, r.outcome, r.error_code, r.details?.reason])).toEqual([
      ['live', 'failure', 'NOT_FOUND', 'not_deleted'],
      ['missing', 'failure', 'NOT_FOUND', 'missing'],
      ['gone', 'failure', 'NOT_FOUND', 'window_passed'],
    ]);
  });
});

describe('destroy', () => {
  it('removes a live secret and every version immediately; audited with the count', async () => {
    const t = newTenant();
    for (const v of ['a', 'b', 'c']) await manager.set(t, 'k', v);
    expect(await manager.destroy(t, 'k')).toEqual({ versionsDestroyed: 3 });
    expect(await manager.get(t, 'k')).toBeNull();
    expect(await manager.get(t, 'k', { version: 1 })).toBeNull();
    await expect(manager.versions(t, 'k')).rejects.toBeInstanceOf(SecretNotFoundError);
    await expect(manager.restore(t, 'k')).rejects.toBeInstanceOf(SecretNotFoundError);
    const [left] = await adminQuery<{ secrets: number; versions: number }>(
      db.name,
      `SELECT (SELECT count(*)::int FROM tenant_secrets WHERE tenant_id = $1) AS secrets,
              (SELECT count(*)::int FROM tenant_secret_versions WHERE tenant_id = $1) AS versions`,
      [t],
    );
    expect(left).toEqual({ secrets: 0, versions: 0 });
    await expect(manager.destroy(t, 'k')).rejects.toBeInstanceOf(SecretNotFoundError);
    const records = await audit(t, 'secret.destroyed');
    expect(records.map((r) => [r.outcome, r.error_code, r.version])).toEqual([
      ['success', null, 3],
      ['failure', 'NOT_FOUND', null],
    ]);
    expect(records[0]?.details).toEqual({ versions_destroyed: 3, version_rows: 3, was_deleted: false });
    // The name is free again: a new secret starts at version 1.
    expect(await manager.set(t, 'k', 'new', { ifVersion: 0 })).toEqual({ version: 1 });
  });

  it('destroys a soft-deleted secret too', async () => {
    const t = newTenant();
    await manager.set(t, 'k', 'a');
    await manager.delete(t, 'k');
    expect(await manager.destroy(t, 'k')).toEqual({ versionsDestroyed: 1 });
    await expect(manager.restore(t, 'k')).rejects.toBeInstanceOf(SecretNotFoundError);
    const [record] = await audit(t, 'secret.destroyed');
    expect(record?.details).toMatchObject({ was_deleted: true, versions_destroyed: 1 });
    expect(await manager.list(t, { includeDeleted: true })).toEqual([]);
  });
});

describe('destroyVersions', () => {
  it('destroys non-current versions: ciphertext gone, metadata kept, reads return null; audited', async () => {
    const t = newTenant();
    for (const v of ['a', 'b', 'c', 'd']) await manager.set(t, 'k', v);
    expect(await manager.destroyVersions(t, 'k', [1, 3, 42])).toEqual({ destroyed: [1, 3] });
    expect(await manager.get(t, 'k', { version: 1 })).toBeNull();
    expect(await manager.get(t, 'k', { version: 'previous' })).toBeNull();
    expect(await manager.get(t, 'k', { version: 2 })).toBe('b');
    expect(await manager.get(t, 'k')).toBe('d');
    const rows = await versionRows(t, 'k');
    expect(rows.map((r) => [r.version, r.state, r.has_ct])).toEqual([
      [1, 'destroyed', false],
      [2, 'enabled', true],
      [3, 'destroyed', false],
      [4, 'enabled', true],
    ]);
    const versions = await manager.versions(t, 'k');
    expect(versions.find((v) => v.version === 3)).toMatchObject({ state: 'destroyed', isPrevious: false });
    // Destroying again is a no-op.
    expect(await manager.destroyVersions(t, 'k', [1])).toEqual({ destroyed: [] });
    const records = await audit(t, 'secret.versions_destroyed');
    expect(records.map((r) => [r.outcome, r.details?.destroyed_versions])).toEqual([
      ['success', [1, 3]],
      ['success', []],
    ]);
  });

  it('refuses the current version, and missing or deleted secrets', async () => {
    const t = newTenant();
    await manager.set(t, 'k', 'a');
    await manager.set(t, 'k', 'b');
    await expect(manager.destroyVersions(t, 'k', [1, 2])).rejects.toBeInstanceOf(InvalidInputError);
    expect(await manager.get(t, 'k', { version: 1 })).toBe('a');
    await expect(manager.destroyVersions(t, 'missing', [1])).rejects.toBeInstanceOf(SecretNotFoundError);
    await expect(manager.destroyVersions(t, 'k', [])).rejects.toBeInstanceOf(InvalidInputError);
    const records = await audit(t, 'secret.versions_destroyed');
    expect(records.map((r) => [r.key_name, r.outcome, r.error_code])).toEqual([
      ['k', 'failure', 'INVALID_INPUT'],
      ['missing', 'failure', 'NOT_FOUND'],
    ]);
  });
});

describe('purgeDeleted', () => {
  it('purges every deletion whose window passed, one call, one audit record per secret in its chain', async () => {
    // Its own database: purge without a tenant sees every tenant.
    const { manager: m, db: pdb } = await setupManager();
    await m.set('tenant-a', 'due', 'x');
    await m.set('tenant-a', 'due', 'y');
    await m.set('tenant-a', 'kept', 'x');
    await m.set('tenant-a', 'shifted', 'x');
    await m.set('tenant-a', 'live', 'x');
    await m.set('tenant-b', 'due', 'x');
    await m.delete('tenant-a', 'due', { recoveryWindowDays: 0 });
    await m.delete('tenant-a', 'kept', { recoveryWindowDays: 30 });
    await m.delete('tenant-a', 'shifted', { recoveryWindowDays: 30 });
    await m.delete('tenant-b', 'due', { recoveryWindowDays: 0 });

    expect(await m.purgeDeleted({ tenantId: 'tenant-a' })).toBe(1);
    expect(await m.purgeDeleted({ tenantId: 'tenant-a' })).toBe(0);
    // Move one window into the past (no sleeping).
    await adminQuery(
      pdb.name,
      `UPDATE tenant_secrets SET deleted_at = now() - interval '31 days', purge_after = now() - interval '1 second'
        WHERE tenant_id = 'tenant-a' AND key_name = 'shifted'`,
    );
    // The tenants with something to purge, a page at a time (what a distributed installation purges
    // tenant by tenant, on each tenant's worker, since one statement cannot lock rows on every worker).
    const page = (after: string | null) =>
      adminQuery<{ tenant_id: string }>(
        pdb.name,
        'SELECT tenant_id FROM tenant_secret_purgeable_tenants($1, 1)',
        [after],
      );
    expect(await page(null)).toEqual([{ tenant_id: 'tenant-a' }]);
    expect(await page('tenant-a')).toEqual([{ tenant_id: 'tenant-b' }]);
    expect(await page('tenant-b')).toEqual([]);
    expect(await m.purgeDeleted()).toBe(2);
    expect(await m.purgeDeleted()).toBe(0);

    const remaining = await adminQuery<{ tenant_id: string; key_name: string }>(
      pdb.name,
      'SELECT tenant_id, key_name FROM tenant_secrets ORDER BY 1, 2',
    );
    expect(remaining).toEqual([
      { tenant_id: 'tenant-a', key_name: 'kept' },
      { tenant_id: 'tenant-a', key_name: 'live' },
    ]);
    const [orphans] = await adminQuery<{ n: number }>(
      pdb.name,
      `SELECT count(*)::int AS n FROM tenant_secret_versions v
        WHERE NOT EXISTS (SELECT 1 FROM tenant_secrets s WHERE s.tenant_id = v.tenant_id AND s.key_name = v.key_name)`,
    );
    expect(orphans?.n).toBe(0);
    const purged = await adminQuery<{
      chain_id: string;
      key_name: string;
      version: number;
      details: { versions_destroyed: number };
    }>(
      pdb.name,
      `SELECT chain_id, key_name, version, details FROM tenant_secret_audit WHERE action = 'secret.purged'
        ORDER BY chain_id, seq`,
    );
    expect(purged.map((r) => [r.chain_id, r.key_name, r.version, r.details.versions_destroyed])).toEqual([
      ['tenant-a', 'due', 2, 2],
      ['tenant-a', 'shifted', 1, 1],
      ['tenant-b', 'due', 1, 1],
    ]);
    await expect(m.restore('tenant-a', 'kept')).resolves.toEqual({ version: 1 });
  });
});

describe('getMany', () => {
  it('reads many secrets in one round trip, null for missing or deleted, every read audited', async () => {
    const t = newTenant();
    await manager.set(t, 'a', 'value-a');
    await manager.set(t, 'b', 'value-b');
    await manager.set(t, '__proto__', 'proto-value');
    await manager.set(t, 'deleted', 'x');
    await manager.delete(t, 'deleted');

    // A manager on a pool that counts the statements sent on its connections (the log-suppression
    // prelude travels with the call, in the same round trip).
    const pool = new pg.Pool({ connectionString: db.url, max: 2 });
    let statements = 0;
    const counting = {
      query: (text: string, values?: unknown[]) => {
        statements++;
        return pool.query(text, values);
      },
      connect: async () => {
        const client = await pool.connect();
        const query = client.query.bind(client) as (...args: unknown[]) => unknown;
        (client as unknown as { query: (...args: unknown[]) => unknown }).query = (...args: unknown[]) => {
          statements++;
          return query(...args);
        };
        return client;
      },
      end: () => pool.end(),
    };
    const m = createSecretsManager({
      pool: counting,
      masterKey: TEST_KEY,
      actor: 'bulk',
      auditSealIntervalMs: 0,
      // Through PgBouncer 1.18 a server connection may already hold this statement's name (42P05):
      // the first call would then be retried unprepared, a second round trip this test does not
      // count (test/prepared-statements.test.ts covers that fallback).
      preparedStatements: !viaPgBouncer(),
    });
    try {
      const result = await m.getMany(t, ['b', 'a', 'missing', 'deleted', '__proto__', 'a']);
      expect(statements).toBe(1);
      expect(result).toEqual({
        b: 'value-b',
        a: 'value-a',
        missing: null,
        deleted: null,
        ['__proto__']: 'proto-value',
      });
      expect(Object.keys(result)).toEqual(['b', 'a', 'missing', 'deleted', '__proto__']);
      expect(Object.getPrototypeOf(result)).toBe(Object.prototype);
      expect(await m.getMany(t, [])).toEqual({});
      expect(statements).toBe(1);
    } finally {
      await pool.end();
    }

    const reads = await audit(t, 'secret.read');
    expect(reads.map((r) => [r.key_name, r.outcome, r.error_code]).sort()).toEqual(
      [
        ['__proto__', 'success', null],
        ['a', 'success', null],
        ['b', 'success', null],
        ['deleted', 'failure', 'NOT_FOUND'],
        ['missing', 'failure', 'NOT_FOUND'],
      ].sort(),
    );
  });

  it('expired secrets throw unless allowExpired; tampered ones fail the batch; all reads audited', async () => {
    const t = newTenant();
    await manager.set(t, 'ok', 'fine');
    await manager.set(t, 'old', 'stale', { expiresAt: new Date(Date.now() - 60_000) });
    await expect(manager.getMany(t, ['ok', 'old'])).rejects.toBeInstanceOf(SecretExpiredError);
    expect(await manager.getMany(t, ['ok', 'old'], { allowExpired: true })).toEqual({
      ok: 'fine',
      old: 'stale',
    });

    await manager.set(t, 'bad', 'x');
    await tamperVersion(t, 'bad', 1);
    await expect(manager.getMany(t, ['ok', 'bad'])).rejects.toBeInstanceOf(IntegrityError);

    // The tampered value was released (its ciphertext only) and failed authentication in the
    // library, which records the failure right after the release.
    const reads = await audit(t, 'secret.read');
    expect(reads.map((r) => [r.key_name, r.outcome, r.error_code])).toEqual([
      ['ok', 'success', null],
      ['old', 'failure', 'EXPIRED'],
      ['ok', 'success', null],
      ['old', 'success', null],
      ['ok', 'success', null],
      ['bad', 'success', null],
      ['bad', 'failure', 'INTEGRITY'],
    ]);
  });

  it('refuses more than 100 names and invalid names', async () => {
    const t = newTenant();
    const names = Array.from({ length: 101 }, (_, i) => `k${i}`);
    await expect(manager.getMany(t, names)).rejects.toBeInstanceOf(InvalidInputError);
    await expect(manager.getMany(t, ['ok', 'not ok'])).rejects.toBeInstanceOf(InvalidInputError);
    expect(await manager.getMany(t, names.slice(0, 100))).toEqual(
      Object.fromEntries(names.slice(0, 100).map((n) => [n, null])),
    );
    expect(await audit(t, 'secret.read')).toHaveLength(100);
  });
});

describe('master key not in the ring', () => {
  it('getMany and rollback throw UnknownMasterKeyError, audited, and write nothing', async () => {
    const t = newTenant();
    await manager.set(t, 'k', 'a');
    await manager.set(t, 'k', 'b');
    const stranger = createSecretsManager({
      connectionString: db.url,
      masterKey: OTHER_KEY,
      actor: 'stranger',
    });
    try {
      // Registered, the stranger's key vouches for the tenant (a proof), but the tenant's data key is
      // wrapped under another master key: UnknownMasterKeyError (unregistered, it would be UnauthorizedError).
      await expect(stranger.getMany(t, ['k'])).rejects.toBeInstanceOf(UnauthorizedError);
      await stranger.registerMasterKey();
      await expect(stranger.getMany(t, ['k'])).rejects.toBeInstanceOf(UnknownMasterKeyError);
      await expect(stranger.rollback(t, 'k', 1)).rejects.toBeInstanceOf(UnknownMasterKeyError);
    } finally {
      await stranger.close();
    }
    expect((await versionRows(t, 'k')).map((r) => r.version)).toEqual([1, 2]);
    const records = (await audit(t)).filter(
      (r) => r.action === 'secret.read' || r.action === 'secret.rolled_back',
    );
    expect(records.map((r) => [r.action, r.outcome, r.error_code])).toEqual([
      ['secret.read', 'failure', 'UNAUTHORIZED'],
      ['secret.read', 'failure', 'UNKNOWN_MASTER_KEY'],
      ['secret.rolled_back', 'failure', 'UNKNOWN_MASTER_KEY'],
    ]);
  });
});

describe('updateMetadata', () => {
  it('changes metadata without a new version; null clears; audited with field names only', async () => {
    const t = newTenant();
    await manager.set(t, 'k', 'v', { description: 'first', labels: { env: 'dev' } });
    const rotateAfter = new Date(Date.now() - 1000);
    expect(
      await manager.updateMetadata(t, 'k', { labels: { env: 'prod', team: 'pay' }, rotateAfter }),
    ).toEqual({ version: 1 });
    let [meta] = await manager.list(t);
    expect(meta).toMatchObject({
      currentVersion: 1,
      description: 'first',
      labels: { env: 'prod', team: 'pay' },
    });
    expect(meta?.rotateAfter?.getTime()).toBe(rotateAfter.getTime());
    expect((await manager.list(t, { due: true })).map((s) => s.keyName)).toEqual(['k']);
    expect((await manager.list(t, { labels: { env: 'prod' } })).map((s) => s.keyName)).toEqual(['k']);

    await manager.updateMetadata(t, 'k', { description: null, rotateAfter: null });
    [meta] = await manager.list(t);
    expect(meta).toMatchObject({
      description: null,
      rotateAfter: null,
      labels: { env: 'prod', team: 'pay' },
    });
    expect(await manager.list(t, { due: true })).toEqual([]);
    expect((await versionRows(t, 'k')).map((r) => r.version)).toEqual([1]);

    const records = await audit(t, 'secret.metadata_updated');
    expect(records.map((r) => [r.outcome, r.version, r.details?.fields])).toEqual([
      ['success', 1, ['labels', 'rotate_after']],
      ['success', 1, ['description', 'rotate_after']],
    ]);
    expect(JSON.stringify(records)).not.toContain('pay');
  });

  it('expiresAt set in the past makes reads throw SecretExpiredError (documented choice)', async () => {
    const t = newTenant();
    await manager.set(t, 'k', 'v');
    await manager.updateMetadata(t, 'k', { expiresAt: new Date(Date.now() - 1000) });
    await expect(manager.get(t, 'k')).rejects.toBeInstanceOf(SecretExpiredError);
    expect(await manager.get(t, 'k', { allowExpired: true })).toBe('v');
    expect((await manager.list(t, { expired: true })).map((s) => s.keyName)).toEqual(['k']);
    await manager.updateMetadata(t, 'k', { expiresAt: null });
    expect(await manager.get(t, 'k')).toBe('v');
  });

  it('check-and-set, missing and deleted secrets, empty metadata', async () => {
    const t = newTenant();
    await manager.set(t, 'k', 'a');
    await manager.set(t, 'k', 'b');
    await expect(
      manager.updateMetadata(t, 'k', { description: 'x' }, { ifVersion: 1 }),
    ).rejects.toBeInstanceOf(ConflictError);
    expect(await manager.updateMetadata(t, 'k', { description: 'x' }, { ifVersion: 2 })).toEqual({
      version: 2,
    });
    await expect(manager.updateMetadata(t, 'missing', { description: 'x' })).rejects.toBeInstanceOf(
      SecretNotFoundError,
    );
    await expect(manager.updateMetadata(t, 'k', {})).rejects.toBeInstanceOf(InvalidInputError);
    await manager.delete(t, 'k');
    await expect(manager.updateMetadata(t, 'k', { description: 'y' })).rejects.toBeInstanceOf(
      SecretNotFoundError,
    );
    const records = await audit(t, 'secret.metadata_updated');
    expect(records.map((r) => [r.key_name, r.outcome, r.error_code])).toEqual([
      ['k', 'failure', 'CONFLICT'],
      ['k', 'success', null],
      ['missing', 'failure', 'NOT_FOUND'],
      ['k', 'failure', 'NOT_FOUND'],
    ]);
  });
});

describe('retention and grace', () => {
  it('keeps the last maxVersions versions: older ciphertext NULL, unreadable, destruction audited', async () => {
    const { manager: m, db: rdb } = await setupManager({ maxVersions: 3 });
    const t = 'retention';
    for (const v of ['v1', 'v2', 'v3', 'v4', 'v5']) await m.set(t, 'k', v);
    const rows = await adminQuery<{ version: number; state: string; has_ct: boolean }>(
      rdb.name,
      `SELECT version, state, encrypted_value IS NOT NULL AS has_ct FROM tenant_secret_versions
        WHERE tenant_id = $1 ORDER BY version`,
      [t],
    );
    expect(rows.map((r) => [r.version, r.state, r.has_ct])).toEqual([
      [1, 'destroyed', false],
      [2, 'destroyed', false],
      [3, 'enabled', true],
      [4, 'enabled', true],
      [5, 'enabled', true],
    ]);
    expect(await m.get(t, 'k', { version: 1 })).toBeNull();
    expect(await m.get(t, 'k', { version: 2 })).toBeNull();
    expect(await m.get(t, 'k', { version: 3 })).toBe('v3');
    await expect(m.rollback(t, 'k', 2)).rejects.toBeInstanceOf(SecretNotFoundError);
    const writes = await adminQuery<{ version: number; details: { destroyed_versions?: number[] } | null }>(
      rdb.name,
      `SELECT version, details FROM tenant_secret_audit WHERE chain_id = $1 AND action IN ('secret.created', 'secret.updated')
        ORDER BY seq`,
      [t],
    );
    expect(writes.map((w) => [w.version, w.details?.destroyed_versions ?? null])).toEqual([
      [1, null],
      [2, null],
      [3, null],
      [4, [1]],
      [5, [2]],
    ]);
    // A rollback is a write like any other: retention applies to it too.
    await m.rollback(t, 'k', 3);
    expect(await m.get(t, 'k', { version: 3 })).toBeNull();
    expect(await m.get(t, 'k')).toBe('v3');
  });

  it('the previous version is readable during its grace period, not after', async () => {
    const t = newTenant();
    await manager.set(t, 'k', 'old');
    await manager.rotate(t, 'k', 'new', { gracePeriodSeconds: 3600 });
    expect(await manager.get(t, 'k', { version: 'previous' })).toBe('old');
    // End the grace period by moving its deadline into the past (no sleeping).
    await adminQuery(
      db.name,
      `UPDATE tenant_secrets SET previous_expires_at = now() - interval '1 second' WHERE tenant_id = $1`,
      [t],
    );
    expect(await manager.get(t, 'k', { version: 'previous' })).toBeNull();
    // The version itself is still there by number; only the "previous" alias has lapsed.
    expect(await manager.get(t, 'k', { version: 1 })).toBe('old');
    expect((await manager.versions(t, 'k')).find((v) => v.version === 1)?.isPrevious).toBe(false);

    await manager.rotate(t, 'k', 'newer', { gracePeriodSeconds: 0 });
    expect(await manager.get(t, 'k', { version: 'previous' })).toBeNull();
  });
});

describe('SQL interface', () => {
  const bundleParams = (m: SecretsManager, t: string) => {
    return m.tenantKeyBundle(t).bytes;
  };

  it('rollback, restore and destroy work when called directly in SQL with the tenant key bundle', async () => {
    const t = newTenant();
    await manager.set(t, 'k', 'first');
    await manager.set(t, 'k', 'second');
    const bundle = bundleParams(manager, t);

    const [rolled] = await adminQuery(
      db.name,
      `SELECT * FROM tenant_secret_rollback($1, 'k', 1, $2, '{}'::jsonb, '{"actor":"sql-admin"}'::jsonb)`,
      [t, bundle],
    );
    expect(rolled).toEqual({ status: 'ok', version: 3, detail: null });
    expect(await manager.get(t, 'k')).toBe('first');

    const [conflict] = await adminQuery(
      db.name,
      `SELECT * FROM tenant_secret_rollback($1, 'k', 1, $2, '{"if_version": 1}'::jsonb)`,
      [t, bundle],
    );
    expect(conflict).toMatchObject({ status: 'conflict', version: 3 });

    await manager.delete(t, 'k');
    const [restored] = await adminQuery(db.name, `SELECT * FROM tenant_secret_restore($1, 'k', $2)`, [
      t,
      bundle,
    ]);
    expect(restored).toEqual({ status: 'ok', version: 3 });
    const [again] = await adminQuery(db.name, `SELECT * FROM tenant_secret_restore($1, 'k', $2)`, [
      t,
      bundle,
    ]);
    expect(again).toEqual({ status: 'not_found', version: null });

    const [many] = await adminQuery(
      db.name,
      `SELECT key_name, status, convert_from(value, 'UTF8') AS value FROM tenant_secret_read_many($1, ARRAY['k'], $2)`,
      [t, bundle],
    );
    expect(many).toEqual({ key_name: 'k', status: 'ok', value: 'first' });

    const [destroyed] = await adminQuery(db.name, `SELECT * FROM tenant_secret_destroy($1, 'k', $2)`, [
      t,
      bundle,
    ]);
    expect(destroyed).toEqual({ status: 'ok', versions_destroyed: 3, version_rows: 3 });
    expect(await manager.get(t, 'k')).toBeNull();

    const [badLabels] = await adminQuery(
      db.name,
      `SELECT * FROM tenant_secret_update_metadata($1, 'k', '{"labels": {"env": 1}}', $2)`,
      [t, bundle],
    );
    expect(badLabels).toEqual({ status: 'invalid_input', version: null, detail: 'labels' });
    const [badDate] = await adminQuery(
      db.name,
      `SELECT * FROM tenant_secret_update_metadata($1, 'k', '{"expires_at": "not a date"}', $2)`,
      [t, bundle],
    );
    expect(badDate).toEqual({ status: 'invalid_input', version: null, detail: 'expires_at' });

    const destroyInvalid = adminQuery(db.name, `SELECT * FROM tenant_secret_destroy('', 'k', $1)`, [bundle]);
    if (CITUS_STAGE) {
      // Distributed, the dispatcher refuses a malformed tenant id itself, unaudited (docs/scaling.md).
      await expect(destroyInvalid).rejects.toMatchObject({ code: 'TS400' });
    } else {
      expect((await destroyInvalid)[0]).toMatchObject({ status: 'invalid_input' });
    }

    const records = await audit(t);
    expect(
      records
        .filter(
          (r) => r.action !== 'secret.created' && r.action !== 'secret.updated' && r.action !== 'secret.read',
        )
        .map((r) => [r.action, r.outcome]),
    ).toEqual([
      ['secret.rolled_back', 'success'],
      ['secret.rolled_back', 'failure'],
      ['secret.deleted', 'success'],
      ['secret.restored', 'success'],
      ['secret.restored', 'failure'],
      ['secret.destroyed', 'success'],
      ['secret.metadata_updated', 'failure'],
      ['secret.metadata_updated', 'failure'],
    ]);
  });

  it('every lifecycle function is hardened, commented and not executable by PUBLIC', async () => {
    const names = [
      'tenant_secret_rollback',
      'tenant_secret_restore',
      'tenant_secret_destroy',
      'tenant_secret_destroy_versions',
      'tenant_secret_purge_deleted',
      'tenant_secret_read_many',
      'tenant_secret_update_metadata',
    ];
    await adminQuery(
      db.name,
      `DO $$BEGIN CREATE ROLE ts_nobody NOLOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END$$`,
    );
    const rows = await adminQuery<{
      proname: string;
      prosecdef: boolean;
      proconfig: string[] | null;
      comment: string | null;
      nobody: boolean;
    }>(
      db.name,
      `SELECT p.proname, p.prosecdef, p.proconfig, obj_description(p.oid, 'pg_proc') AS comment,
              has_function_privilege('ts_nobody', p.oid, 'EXECUTE') AS nobody
         FROM pg_proc p WHERE p.pronamespace = 'public'::regnamespace AND p.proname = ANY($1) ORDER BY p.proname`,
      [names],
    );
    expect(rows.map((r) => r.proname).sort()).toEqual([...names].sort());
    for (const row of rows) {
      expect(row.prosecdef, row.proname).toBe(true);
      // Distributed, purge runs on the coordinator, planned with its values (no key material in its
      // arguments): Citus cannot plan its multi-shard statements generically (sql/distribute/07_rotation.sql).
      const plans =
        CITUS_STAGE && row.proname === 'tenant_secret_purge_deleted'
          ? 'force_custom_plan'
          : 'force_generic_plan';
      expect(row.proconfig, row.proname).toEqual(['search_path=""', `plan_cache_mode=${plans}`]);
      expect(row.comment, row.proname).toMatch(/^tenant-secrets: /);
      expect(row.nobody, row.proname).toBe(false);
    }
  });
});
