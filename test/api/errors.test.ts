import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmdirSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { exitCodeFor } from '../../src/cli/exit-codes.js';
import {
  ConfigurationError,
  createSecretsManager,
  DatabaseError,
  DatabaseUnavailableError,
  DeadlockError,
  DiskFullError,
  InvalidInputError,
  LockTimeoutError,
  PermissionDeniedError,
  SchemaNotReadyError,
  SecretNotFoundError,
  type SecretsManager,
  SerializationFailureError,
  TenantSecretsError,
} from '../../src/index.js';
import { runCli } from '../support/cli.js';
import { adminQuery, directUrlFor, freshDatabase, setupManager, TEST_KEY } from '../support/db.js';
import { loginRoles, roleUrl } from '../support/roles.js';

/** Never the server's words: these appear in its messages and PL/pgSQL context, never in ours. */
const SERVER_TEXT = /inline_code_block|PL\/pgSQL|line \d+ at|permission denied for|does not exist\s*$/;

function managerOn(connectionString: string, extra: Record<string, unknown> = {}): SecretsManager {
  const m = createSecretsManager({ connectionString, masterKey: TEST_KEY, env: {}, ...extra });
  afterAll(() => m.close());
  return m;
}

describe('failures are typed, never null', () => {
  it('database down: get throws DatabaseUnavailableError instead of returning null', async () => {
    const manager = createSecretsManager({
      connectionString: 'postgres://postgres@127.0.0.1:1/nowhere',
      masterKey: TEST_KEY,
      env: {},
    });
    try {
      const error = await manager.get('tenant-123', 'api-key').catch((e: unknown) => e);
      expect(error).toBeInstanceOf(DatabaseUnavailableError);
      expect((error as TenantSecretsError).code).toBe('DATABASE_UNAVAILABLE');
      expect((error as TenantSecretsError).retryable).toBe(true);
      await expect(manager.set('tenant-123', 'api-key', 'super-secret-value')).rejects.toSatisfy(
        (e: unknown) =>
          e instanceof DatabaseUnavailableError &&
          !String((e as Error).message).includes('super-secret-value'),
      );
    } finally {
      await manager.close();
    }
  });

  it('schema not migrated: SchemaNotReadyError says to run migrate', async () => {
    const { url } = await freshDatabase();
    const manager = createSecretsManager({ connectionString: url, masterKey: TEST_KEY });
    try {
      const error = await manager.get('t', 'k').catch((e: unknown) => e);
      expect(error).toBeInstanceOf(SchemaNotReadyError);
      expect((error as Error).message).toMatch(/migrate/);
    } finally {
      await manager.close();
    }
  });

  it('rotate of a missing secret is a typed not-found error', async () => {
    const { manager } = await setupManager();
    const error = await manager.rotate('tenant-123', 'missing', 'new-secret-value').catch((e: unknown) => e);
    expect(error).toBeInstanceOf(SecretNotFoundError);
    expect((error as Error).message).not.toContain('new-secret-value');
    await expect(manager.delete('tenant-123', 'missing')).rejects.toBeInstanceOf(SecretNotFoundError);
  });

  it('every error class carries a stable code and a name', async () => {
    const { manager } = await setupManager();
    const error = (await manager.set('bad tenant', 'k', 'v').catch((e: unknown) => e)) as TenantSecretsError;
    expect(error).toBeInstanceOf(TenantSecretsError);
    expect(error.name).toBe('InvalidInputError');
    expect(error.code).toBe('INVALID_INPUT');
  });
});

describe('connection settings that are wrong are named, not quoted from the server', () => {
  it('a database that does not exist: ConfigurationError naming it (exit 6), not "unavailable"', async () => {
    const { name } = await freshDatabase();
    const url = directUrlFor(name).replace(/\/[^/]+$/, '/no_such_db_xyz');
    const manager = managerOn(url);
    const error = await manager.get('t', 'k').catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ConfigurationError);
    expect(error).toMatchObject({ code: 'CONFIGURATION', retryable: false });
    expect((error as Error).message).toMatch(
      /database "no_such_db_xyz" named in the connection string does not exist/,
    );
    expect((error as Error).cause).toMatchObject({ code: '3D000' });
    expect(exitCodeFor(error)).toBe(6);

    const cli = await runCli(['list', 't', '--json'], {
      env: { DATABASE_URL: url, TENANT_SECRETS_MASTER_KEY: TEST_KEY },
    });
    expect(cli.code).toBe(6);
    expect(JSON.parse(cli.stdout).error).toMatchObject({ code: 'CONFIGURATION', exitCode: 6 });
    expect(cli.stderr).toContain('"no_such_db_xyz"');
  });

  it('a role the server refuses (no such role, or a wrong password): ConfigurationError naming the role', async () => {
    const { name } = await freshDatabase();
    const url = new URL(directUrlFor(name));
    url.username = 'ts_no_such_role_q7';
    url.password = 'not-the-password-4ab';
    const error = await managerOn(url.toString())
      .get('t', 'k')
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ConfigurationError);
    // 28000 (trust / peer authentication: the role does not exist) or 28P01 (password authentication).
    expect(['28000', '28P01']).toContain(((error as Error).cause as { code?: string }).code);
    expect((error as Error).message).toContain('role "ts_no_such_role_q7"');
    expect((error as Error).message).not.toContain('not-the-password-4ab');
    expect(exitCodeFor(error)).toBe(6);
  });
});

describe('permissions: the grant that is missing is named', () => {
  let app = '';
  let bare = '';
  beforeAll(async () => {
    [app, bare] = await loginRoles('app', 'bare');
  });

  it('an application role calling operator functions gets PermissionDeniedError naming grantOperatorTo (exit 8)', async () => {
    const { manager, db } = await setupManager();
    await manager.migrate({ grantTo: [app] });
    await manager.set('acme', 'k', 'v');
    const asApp = managerOn(roleUrl(db.name, app));
    expect(await asApp.get('acme', 'k')).toBe('v');
    for (const call of [
      () => asApp.rotateTenantKey('acme'),
      () => asApp.verifyAudit(),
      () => asApp.purgeTenant('acme'),
    ]) {
      const error = await call().catch((e: unknown) => e);
      expect(error).toBeInstanceOf(PermissionDeniedError);
      // Still a DatabaseError with SQLSTATE 42501, as in earlier releases.
      expect(error).toBeInstanceOf(DatabaseError);
      expect(error).toMatchObject({
        name: 'PermissionDeniedError',
        code: 'PERMISSION_DENIED',
        sqlState: '42501',
        grant: 'grantOperatorTo',
        role: app,
        retryable: false,
      });
      expect((error as PermissionDeniedError).functionName).toMatch(/^tenant_secret_/);
      expect((error as Error).message).toContain(`migrate({ grantOperatorTo: ['${app}'] })`);
      expect((error as Error).message).toContain(`--grant-operator-to ${app}`);
      expect((error as Error).message).not.toMatch(SERVER_TEXT);
      expect(exitCodeFor(error)).toBe(8);
    }

    const cli = await runCli(['audit', 'verify', '--json'], {
      env: { DATABASE_URL: roleUrl(db.name, app), TENANT_SECRETS_MASTER_KEY: TEST_KEY },
    });
    expect(cli.code).toBe(8);
    expect(JSON.parse(cli.stdout).error).toMatchObject({ code: 'PERMISSION_DENIED', exitCode: 8 });
    expect(cli.stderr).toContain('--grant-operator-to');
  });

  it('a role without grantTo calling the data plane is told to get grantTo', async () => {
    const { db } = await setupManager();
    const error = await managerOn(roleUrl(db.name, bare))
      .get('acme', 'k')
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(PermissionDeniedError);
    expect(error).toMatchObject({ grant: 'grantTo', role: bare });
    expect((error as Error).message).toContain(`migrate({ grantTo: ['${bare}'] })`);
  });

  it('migrate() by a role that does not own the schema: PermissionDeniedError naming the owner', async () => {
    const { manager, db } = await setupManager();
    await manager.migrate({ grantTo: [app] });
    const error = await managerOn(roleUrl(db.name, app))
      .migrate()
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(PermissionDeniedError);
    expect(error).toMatchObject({ grant: 'owner', role: app });
    expect((error as Error).message).toMatch(/does not own the tenant-secrets schema/);
    expect((error as Error).message).not.toMatch(SERVER_TEXT);
  });

  it('migrate({ grantTo }) naming a role that does not exist: the role is named, nothing installed, no PL/pgSQL context', async () => {
    const { url, name } = await freshDatabase();
    const manager = managerOn(url);
    for (const field of ['grantTo', 'grantOperatorTo'] as const) {
      const error = await manager.migrate({ [field]: ['nosuchrole_x1'] }).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(InvalidInputError);
      expect(error).toMatchObject({ field });
      expect((error as Error).message).toContain('"nosuchrole_x1"');
      expect((error as Error).message).not.toMatch(SERVER_TEXT);
    }
    const tables = await adminQuery(name, `SELECT 1 FROM pg_class WHERE relname LIKE 'tenant\\_secret%'`);
    expect(tables).toEqual([]);

    const cli = await runCli(['migrate', '--grant-to', 'nosuchrole_x1'], {
      env: { DATABASE_URL: url, TENANT_SECRETS_MASTER_KEY: TEST_KEY },
    });
    expect(cli.code).toBe(2);
    expect(cli.stderr).toContain('"nosuchrole_x1"');
    expect(cli.stderr).not.toMatch(SERVER_TEXT);
  });
});

describe('conflicts between transactions: each has its own error, says nothing committed, and how to retry', () => {
  it('lock_timeout (55P03): LockTimeoutError; after the holder finishes, the same call succeeds', async () => {
    const db = await freshDatabase();
    await adminQuery('postgres', `ALTER DATABASE ${db.name} SET lock_timeout = '300ms'`);
    const manager = managerOn(db.url);
    await manager.migrate();
    await manager.set('acme', 'k', 'v1');
    const holder = new pg.Client({ connectionString: directUrlFor(db.name) });
    await holder.connect();
    try {
      await holder.query('BEGIN');
      await holder.query(`SELECT * FROM tenant_secrets WHERE tenant_id = 'acme' FOR UPDATE`);
      const error = await manager.set('acme', 'k', 'v2').catch((e: unknown) => e);
      expect(error).toBeInstanceOf(LockTimeoutError);
      expect(error).toMatchObject({
        code: 'LOCK_TIMEOUT',
        sqlState: '55P03',
        mayHaveCommitted: false,
        retryable: true,
      });
      expect((error as Error).message).toMatch(/lock.*nothing was committed.*retry/);
      expect(exitCodeFor(error)).toBe(7);
    } finally {
      await holder.query('ROLLBACK');
      await holder.end();
    }
    expect(await manager.get('acme', 'k', { fresh: true })).toBe('v1');
    await manager.set('acme', 'k', 'v2');
    expect(await manager.get('acme', 'k', { fresh: true })).toBe('v2');
  });

  it('a deadlock (40P01) between two callers’ transactions: DeadlockError for one, the other commits', async () => {
    const { manager, db } = await setupManager();
    await manager.set('acme', 'k1', 'a0');
    await manager.set('acme', 'k2', 'b0');
    const a = new pg.Client({ connectionString: directUrlFor(db.name) });
    const b = new pg.Client({ connectionString: directUrlFor(db.name) });
    await a.connect();
    await b.connect();
    try {
      await a.query('BEGIN');
      await b.query('BEGIN');
      const inA = manager.inTransaction(a);
      const inB = manager.inTransaction(b);
      await inA.set('acme', 'k1', 'a1');
      await inB.set('acme', 'k2', 'b1');
      // Each now waits for the other's row: PostgreSQL rolls one of them back.
      const results = await Promise.allSettled([inA.set('acme', 'k2', 'a2'), inB.set('acme', 'k1', 'b2')]);
      const failed = results.filter((r) => r.status === 'rejected');
      expect(failed).toHaveLength(1);
      const error = (failed[0] as PromiseRejectedResult).reason;
      expect(error).toBeInstanceOf(DeadlockError);
      expect(error).toMatchObject({
        code: 'DEADLOCK',
        sqlState: '40P01',
        mayHaveCommitted: false,
        retryable: true,
      });
      expect((error as Error).message).toMatch(/retry your whole transaction/);
      expect(exitCodeFor(error)).toBe(7);
      const winner = results[0]?.status === 'fulfilled' ? a : b;
      const loser = winner === a ? b : a;
      await loser.query('ROLLBACK');
      await winner.query('COMMIT');
      const expected = winner === a ? { k1: 'a1', k2: 'a2' } : { k1: 'b2', k2: 'b1' };
      expect(await manager.getMany('acme', ['k1', 'k2'])).toEqual(expected);
    } finally {
      await a.end();
      await b.end();
    }
  });

  it('a serialization failure (40001) in a REPEATABLE READ transaction: SerializationFailureError, retry the transaction', async () => {
    const { manager, db } = await setupManager();
    await manager.set('acme', 'k', 'v1');
    const client = new pg.Client({ connectionString: directUrlFor(db.name) });
    await client.connect();
    try {
      await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ');
      const tx = manager.inTransaction(client);
      expect(await tx.get('acme', 'k')).toBe('v1');
      await manager.set('acme', 'k', 'v2'); // another transaction commits meanwhile
      const error = await tx.set('acme', 'k', 'v3').catch((e: unknown) => e);
      expect(error).toBeInstanceOf(SerializationFailureError);
      expect(error).toMatchObject({
        code: 'SERIALIZATION_FAILURE',
        sqlState: '40001',
        mayHaveCommitted: false,
        retryable: true,
      });
      expect((error as Error).message).toMatch(/retry your whole transaction/);
      await client.query('ROLLBACK');
    } finally {
      await client.end();
    }
    expect(await manager.get('acme', 'k', { fresh: true })).toBe('v2');
  });
});

/**
 * A real full disk under a real write: the versions table moved to a tablespace on a 1 MiB tmpfs.
 * It needs to mount a file system (root) on the machine the server runs on; elsewhere the mapping of
 * a real ENOSPC is covered by test/db/error-table.test.ts (COPY to /dev/full).
 */
function tinyFileSystem(ownerUid: number): { dir: string; remove(): void } | undefined {
  if (process.getuid?.() !== 0) return undefined;
  const dir = mkdtempSync(join(tmpdir(), 'ts-diskfull-'));
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', `size=1m,uid=${ownerUid},mode=0700`, 'tmpfs', dir], {
      stdio: 'ignore',
    });
  } catch {
    rmdirSync(dir);
    return undefined;
  }
  return {
    dir,
    remove() {
      execFileSync('umount', ['-l', dir], { stdio: 'ignore' });
      rmdirSync(dir);
    },
  };
}

describe('a full disk', () => {
  it('a write on a full disk is a DiskFullError (nothing committed, not retryable as is); earlier values survive', async (context) => {
    const { manager, db } = await setupManager();
    const [where] = await adminQuery<{ dir: string; local: boolean }>(
      db.name,
      `SELECT current_setting('data_directory') AS dir, inet_server_addr() IS NULL OR host(inet_server_addr()) IN ('127.0.0.1', '::1') AS local`,
    );
    let owner: number | undefined;
    try {
      owner = where?.local ? statSync(String(where.dir)).uid : undefined;
    } catch {
      owner = undefined;
    }
    const fs = owner === undefined ? undefined : tinyFileSystem(owner);
    if (!fs) {
      context.skip('needs root and the server on this machine to mount a small file system');
      return;
    }
    const space = `ts_tiny_${db.name}`;
    try {
      await adminQuery(db.name, `CREATE TABLESPACE ${space} LOCATION '${fs.dir}'`);
      await adminQuery(db.name, `ALTER TABLE tenant_secret_versions SET TABLESPACE ${space}`);
      await manager.set('acme', 'first', 'kept');
      let error: unknown;
      for (let i = 0; i < 200 && error === undefined; i++) {
        const big = Buffer.from(
          Array.from({ length: 48_000 }, () => Math.floor(Math.random() * 256)),
        ).toString('base64');
        error = await manager.set('acme', `big-${i}`, big.slice(0, 60_000)).then(
          () => undefined,
          (e: unknown) => e,
        );
      }
      expect(error).toBeInstanceOf(DiskFullError);
      expect(error).toMatchObject({ code: 'DISK_FULL', mayHaveCommitted: false, retryable: false });
      expect((error as Error).message).toMatch(/out of disk space.*free space/);
      expect(exitCodeFor(error)).toBe(7);
      expect(await manager.get('acme', 'first', { fresh: true })).toBe('kept');
    } finally {
      await manager.close();
      await adminQuery('postgres', `DROP DATABASE IF EXISTS ${db.name} WITH (FORCE)`);
      await adminQuery('postgres', `DROP TABLESPACE IF EXISTS ${space}`);
      fs.remove();
    }
  });
});
