import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { TLSSocket } from 'node:tls';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  createSecretsManager,
  DatabaseReadOnlyError,
  DatabaseTimeoutError,
  DatabaseUnavailableError,
  PoolExhaustedError,
  type SecretsManager,
  TenantSecretsError,
} from '../../src/index.js';
import {
  adminQuery,
  directUrlFor,
  freshDatabase,
  OTHER_KEY,
  setupManager,
  TEST_KEY,
  viaPgBouncer,
} from '../support/db.js';

const suffix = `${process.pid}_${Date.now() % 100000}`;

function managerOn(url: string, options: Parameters<typeof createSecretsManager>[0] = {}): SecretsManager {
  return createSecretsManager({
    connectionString: url,
    masterKey: TEST_KEY,
    auditSealIntervalMs: 0,
    env: {},
    ...options,
  });
}

function loginUrl(database: string, role: string): string {
  const url = new URL(directUrlFor(database));
  url.username = role;
  url.password = 'pw';
  return url.toString();
}

/** The backend of `database` run by the library (application_name) that waits on a lock, once it does. */
async function waitingBackend(database: string): Promise<number> {
  for (let i = 0; i < 1000; i++) {
    const rows = await adminQuery<{ pid: number }>(
      'postgres',
      `SELECT pid FROM pg_stat_activity WHERE datname = $1 AND application_name = 'tenant-secrets' AND wait_event_type = 'Lock'`,
      [database],
    );
    if (rows[0]) return rows[0].pid;
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  throw new Error('no backend of the library waits on a lock');
}

async function holdRow(database: string, tenant: string, key: string): Promise<pg.Client> {
  const holder = new pg.Client({ connectionString: directUrlFor(database) });
  await holder.connect();
  await holder.query('BEGIN');
  await holder.query('SELECT 1 FROM tenant_secrets WHERE tenant_id = $1 AND key_name = $2 FOR UPDATE', [
    tenant,
    key,
  ]);
  return holder;
}

describe('commit uncertainty: mayHaveCommitted', () => {
  it('is false when nothing was sent: connection refused, pool exhausted', async () => {
    const down = managerOn('postgres://postgres@127.0.0.1:1/nowhere');
    try {
      const error = await down.set('t', 'k', 'v').catch((e: unknown) => e);
      expect(error).toBeInstanceOf(DatabaseUnavailableError);
      expect(error).toMatchObject({ code: 'DATABASE_UNAVAILABLE', mayHaveCommitted: false });
      expect((error as Error).cause).toMatchObject({ code: 'ECONNREFUSED' });
    } finally {
      await down.close();
    }
  });

  it('is true when the connection is lost while a write waits for its result; versions() tells, ifVersion retries safely', async () => {
    const { manager, db } = await setupManager({ auditSealIntervalMs: 0 });
    await manager.set('cu', 'k', 'one');
    const holder = await holdRow(db.name, 'cu', 'k');
    let error: unknown;
    try {
      const write = manager.set('cu', 'k', 'two').catch((e: unknown) => e);
      const pid = await waitingBackend(db.name);
      await adminQuery('postgres', 'SELECT pg_terminate_backend($1, 10000)', [pid]);
      error = await write;
    } finally {
      await holder.query('COMMIT');
      await holder.end();
    }
    expect(error).toBeInstanceOf(DatabaseUnavailableError);
    expect(error).toMatchObject({ code: 'DATABASE_UNAVAILABLE', mayHaveCommitted: true });
    expect((error as Error).message).toMatch(/may have committed/);
    // Direct, the server says it was terminated (57P01); through PgBouncer the pooler may report the
    // lost server connection itself (08P01).
    const causeCode = ((error as Error).cause as { code?: string }).code;
    expect(viaPgBouncer() ? ['57P01', '08P01'] : ['57P01']).toContain(causeCode);
    // The documented check: it did not commit here (the backend died waiting), so retry with ifVersion.
    expect((await manager.versions('cu', 'k')).map((v) => v.version)).toEqual([1]);
    expect(await manager.set('cu', 'k', 'two', { ifVersion: 1 })).toMatchObject({ version: 2 });
    // Retrying the same check-and-set again (as after a lost answer that did commit) cannot write twice.
    await expect(manager.set('cu', 'k', 'two', { ifVersion: 1 })).rejects.toMatchObject({ code: 'CONFLICT' });
    expect(await manager.getWithVersion('cu', 'k')).toMatchObject({ value: 'two', version: 2 });
  });
});

describe('read-only databases', () => {
  let db: { name: string; url: string };
  const role = `ts_ro_${suffix}`;

  beforeAll(async () => {
    db = await freshDatabase('readonly');
    const owner = managerOn(db.url);
    await owner.migrate();
    await adminQuery('postgres', `CREATE ROLE ${role} LOGIN PASSWORD 'pw'`);
    await owner.migrate({ grantTo: [role], grantOperatorTo: [] });
    await owner.set('ro', 'k', 'value');
    await owner.close();
  });
  afterAll(async () => {
    await adminQuery('postgres', `DROP OWNED BY ${role} CASCADE`).catch(() => undefined);
    await adminQuery(db.name, `DROP OWNED BY ${role} CASCADE`).catch(() => undefined);
    await adminQuery('postgres', `DROP ROLE IF EXISTS ${role}`).catch(() => undefined);
  });

  async function expectReadOnly(
    m: SecretsManager,
    calls: Record<string, () => Promise<unknown>>,
  ): Promise<void> {
    for (const [name, call] of Object.entries(calls)) {
      const error = await call().then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(error, name).toBeInstanceOf(DatabaseReadOnlyError);
      expect(error, name).toMatchObject({ code: 'DATABASE_READ_ONLY' });
      expect((error as Error).message, name).toMatch(/read-only.*audit record/);
      expect((error as Error).cause, name).toMatchObject({ code: '25006' });
    }
    void m;
  }

  // Direct connections: a database default applies to sessions opened after it is set, and a
  // transaction pooler keeps the server sessions it opened before.
  it('default_transaction_read_only on the database: every call fails with DatabaseReadOnlyError', async () => {
    await adminQuery('postgres', `ALTER DATABASE ${db.name} SET default_transaction_read_only = on`);
    const m = managerOn(directUrlFor(db.name));
    try {
      await expectReadOnly(m, {
        get: () => m.get('ro', 'k'),
        getMany: () => m.getMany('ro', ['k']),
        set: () => m.set('ro', 'k', 'other'),
        list: () => m.list('ro'),
        versions: () => m.versions('ro', 'k'),
        delete: () => m.delete('ro', 'k'),
        rotateTenantKey: () => m.rotateTenantKey('ro'),
        sealAudit: () => m.sealAudit(),
        verifyAudit: () => m.verifyAudit(),
        migrate: () => m.migrate(),
      });
      // status() only reads: it works, and says why nothing else will.
      const status = await m.status();
      expect(status.problems).toContainEqual(
        expect.objectContaining({ code: 'read_only', severity: 'error' }),
      );
    } finally {
      await m.close();
      await adminQuery('postgres', `ALTER DATABASE ${db.name} RESET default_transaction_read_only`);
    }
    const back = managerOn(directUrlFor(db.name));
    try {
      expect(await back.get('ro', 'k')).toBe('value');
    } finally {
      await back.close();
    }
  });

  it('a read-only role (ALTER ROLE … SET default_transaction_read_only): the same, for that role only', async () => {
    await adminQuery(
      'postgres',
      `ALTER ROLE ${role} IN DATABASE ${db.name} SET default_transaction_read_only = on`,
    );
    const m = managerOn(loginUrl(db.name, role));
    try {
      await expectReadOnly(m, {
        get: () => m.get('ro', 'k'),
        set: () => m.set('ro', 'k2', 'other'),
        getMany: () => m.getMany('ro', ['k']),
      });
    } finally {
      await m.close();
    }
  });
});

describe('pool exhausted and server down are told apart', () => {
  it('all connections busy: PoolExhaustedError names the pool size and the wait; nothing was sent', async () => {
    const { manager, db } = await setupManager({ auditSealIntervalMs: 0 });
    await manager.set('pool', 'k', 'one');
    const small = managerOn(db.url, { maxConnections: 1, connectionTimeoutMillis: 200 });
    const holder = await holdRow(db.name, 'pool', 'k');
    try {
      // A write waits on the row lock, holding the pool's only connection.
      const write = small.set('pool', 'k', 'two');
      await waitingBackend(db.name);
      const error = await small.get('pool', 'k').catch((e: unknown) => e);
      expect(error).toBeInstanceOf(PoolExhaustedError);
      expect(error).toBeInstanceOf(DatabaseUnavailableError);
      expect(error).toMatchObject({ code: 'POOL_EXHAUSTED', mayHaveCommitted: false });
      expect((error as Error).message).toMatch(
        /all 1 connections of the pool stayed busy for 0\.2 s during get/,
      );
      await holder.query('COMMIT');
      await expect(write).resolves.toMatchObject({ version: 2 });
    } finally {
      await holder.end();
      await small.close();
    }
  });

  it('a server that accepts but never answers: DatabaseUnavailableError (could not connect), not PoolExhaustedError', async () => {
    const sockets: Socket[] = [];
    const silent = createServer((socket) => sockets.push(socket));
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    const port = (silent.address() as { port: number }).port;
    const m = managerOn(`postgres://postgres@127.0.0.1:${port}/db`, { connectionTimeoutMillis: 200 });
    try {
      const error = await m.get('t', 'k').catch((e: unknown) => e);
      expect(error).toBeInstanceOf(DatabaseUnavailableError);
      expect(error).not.toBeInstanceOf(PoolExhaustedError);
      expect(error).toMatchObject({ code: 'DATABASE_UNAVAILABLE', mayHaveCommitted: false });
      expect((error as Error).message).toMatch(/could not connect within 0\.2 s/);
    } finally {
      await m.close();
      for (const s of sockets) s.destroy();
      await new Promise((resolve) => silent.close(resolve));
    }
  });

  it('server down: DatabaseUnavailableError, not PoolExhaustedError', async () => {
    const m = managerOn('postgres://postgres@127.0.0.1:1/nowhere', { maxConnections: 1 });
    try {
      const error = await m.get('t', 'k').catch((e: unknown) => e);
      expect(error).toBeInstanceOf(DatabaseUnavailableError);
      expect(error).not.toBeInstanceOf(PoolExhaustedError);
    } finally {
      await m.close();
    }
  });
});

describe('statement_timeout', () => {
  const SEALS_PER_STATEMENT = 4;
  const role = `ts_slow_${suffix}`;
  let db: { name: string; url: string };
  const tenants = Array.from({ length: 30 }, (_, i) => `st-${i}`);

  beforeAll(async () => {
    db = await freshDatabase('timeout');
    await adminQuery('postgres', `CREATE ROLE ${role} LOGIN PASSWORD 'pw'`);
    const owner = managerOn(db.url);
    await owner.migrate({ grantOperatorTo: [role] });
    for (const t of tenants) await owner.set(t, 'k', `value ${t}`);
    for (let i = 0; i < 30; i++) await owner.set('st-big', `k${i}`, `big ${i}`);
    await owner.close();
    // The limits are made deterministic rather than left to the clock (a busy machine makes any
    // statement slow): sealing a ciphertext (wrapping a key, encrypting a value) now sleeps 10 ms,
    // so a real statement_timeout of 5 ms cancels any statement that seals; and a statement that
    // seals more than SEALS_PER_STATEMENT values is cancelled with SQLSTATE 57014, exactly as a
    // role's statement_timeout cancels a batch too large for it, whatever the machine's speed.
    await adminQuery(
      db.name,
      `DO $$DECLARE d text;
       BEGIN
         SELECT pg_get_functiondef('public._ts_seal(bytea, bytea, bytea, bytea)'::regprocedure) INTO d;
         EXECUTE regexp_replace(d, E'\\nBEGIN\\n', E'\\nBEGIN\\n' ||
           E'  PERFORM pg_catalog.pg_sleep(0.01);\\n' ||
           E'  IF pg_catalog.current_setting(''ts_test.statement'', true) IS DISTINCT FROM pg_catalog.statement_timestamp()::text THEN\\n' ||
           E'    PERFORM pg_catalog.set_config(''ts_test.statement'', pg_catalog.statement_timestamp()::text, true);\\n' ||
           E'    PERFORM pg_catalog.set_config(''ts_test.seals'', ''0'', true);\\n' ||
           E'  END IF;\\n' ||
           E'  PERFORM pg_catalog.set_config(''ts_test.seals'', (pg_catalog.current_setting(''ts_test.seals'')::int + 1)::text, true);\\n' ||
           E'  IF pg_catalog.current_setting(''ts_test.seals'')::int > ${SEALS_PER_STATEMENT} THEN\\n' ||
           E'    RAISE EXCEPTION ''canceling statement due to statement timeout'' USING ERRCODE = ''query_canceled'';\\n' ||
           E'  END IF;\\n');
       END$$`,
    );
  });
  afterAll(async () => {
    await adminQuery(db.name, `DROP OWNED BY ${role} CASCADE`).catch(() => undefined);
    await adminQuery('postgres', `DROP ROLE IF EXISTS ${role}`).catch(() => undefined);
  });

  it('a statement cancelled by statement_timeout is a DatabaseTimeoutError (57014); nothing committed', async () => {
    await adminQuery('postgres', `ALTER ROLE ${role} IN DATABASE ${db.name} SET statement_timeout = '5ms'`);
    const m = managerOn(loginUrl(db.name, role));
    try {
      // A write seals its value (10 ms here): over the limit.
      const error = await m.set('st-new', 'k', 'x').catch((e: unknown) => e);
      expect(error).toBeInstanceOf(DatabaseTimeoutError);
      expect(error).toMatchObject({ code: 'TIMEOUT', sqlState: '57014' });
      expect((error as Error).message).toMatch(/statement_timeout.*nothing was committed/);
      expect((error as Error).cause).toMatchObject({ code: '57014' });
    } finally {
      await m.close();
      await adminQuery('postgres', `ALTER ROLE ${role} IN DATABASE ${db.name} RESET statement_timeout`);
    }
    const owner = managerOn(db.url);
    try {
      expect(await owner.get('st-new', 'k')).toBeNull();
    } finally {
      await owner.close();
    }
  });

  it('master-key rotation halves its batch until a batch fits, and reports the size used', async () => {
    const m = managerOn(loginUrl(db.name, role), { masterKey: OTHER_KEY, previousMasterKeys: [TEST_KEY] });
    try {
      const result = await m.rotateMasterKey();
      expect(result.rewrapped).toBe(tenants.length + 1);
      expect(result.batchSize).toBeLessThanOrEqual(SEALS_PER_STATEMENT);
      expect(result.batchSize).toBeGreaterThanOrEqual(1);
      for (const t of tenants) expect(await m.get(t, 'k')).toBe(`value ${t}`);
      console.info(`statement_timeout: master-key rotation ended with batchSize ${result.batchSize}`);
    } finally {
      await m.close();
    }
  });

  it('tenant-key rotation halves its batch too; even a batch of 1 over the limit says what to raise', async () => {
    const m = managerOn(loginUrl(db.name, role), { masterKey: OTHER_KEY, previousMasterKeys: [TEST_KEY] });
    try {
      const result = await m.rotateTenantKey('st-big');
      expect(result.reencrypted).toBe(60);
      expect(result.batchSize).toBeLessThanOrEqual(SEALS_PER_STATEMENT);
      for (let i = 0; i < 30; i++) expect(await m.get('st-big', `k${i}`)).toBe(`big ${i}`);
      console.info(`statement_timeout: tenant-key rotation ended with batchSize ${result.batchSize}`);
      await adminQuery('postgres', `ALTER ROLE ${role} IN DATABASE ${db.name} SET statement_timeout = '5ms'`);
      const strict = managerOn(loginUrl(db.name, role), { masterKey: OTHER_KEY });
      try {
        const error = await strict.rotateTenantKey('st-big').catch((e: unknown) => e);
        expect(error).toBeInstanceOf(DatabaseTimeoutError);
        expect(error).toMatchObject({ code: 'TIMEOUT', sqlState: '57014' });
        expect((error as Error).message).toMatch(/statement_timeout/);
        expect(await m.get('st-big', 'k0')).toBe('big 0');
      } finally {
        await strict.close();
      }
    } finally {
      await adminQuery('postgres', `ALTER ROLE ${role} IN DATABASE ${db.name} RESET statement_timeout`);
      await m.close();
    }
  });
});

describe('TLS failures keep their cause', () => {
  it('sslmode=require against a server without TLS', async () => {
    const url = new URL(directUrlFor('postgres'));
    url.searchParams.set('sslmode', 'require');
    url.searchParams.set('uselibpqcompat', 'true');
    const m = managerOn(url.toString());
    try {
      const error = await m.get('t', 'k').catch((e: unknown) => e);
      expect(error).toBeInstanceOf(DatabaseUnavailableError);
      expect((error as Error).message).toMatch(/TLS/);
      expect((error as Error).cause).toBeInstanceOf(Error);
      expect(((error as Error).cause as Error).message).toMatch(/does not support SSL/);
    } finally {
      await m.close();
    }
  });

  const hasOpenssl = spawnSync('openssl', ['version'], { stdio: 'ignore' }).status === 0;
  it.skipIf(!hasOpenssl)('a certificate the configured CA did not sign', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'ts-tls-'));
    const make = (name: string) =>
      execFileSync(
        'openssl',
        [
          'req',
          '-x509',
          '-newkey',
          'ec',
          '-pkeyopt',
          'ec_paramgen_curve:prime256v1',
          '-nodes',
          '-days',
          '2',
          '-subj',
          `/CN=${name}`,
          '-addext',
          'subjectAltName=IP:127.0.0.1',
          '-keyout',
          join(dir, `${name}.key`),
          '-out',
          join(dir, `${name}.crt`),
        ],
        { stdio: 'ignore' },
      );
    make('server');
    make('other-ca');
    // A server that answers the SSLRequest with 'S' and completes a TLS handshake with its own
    // self-signed certificate, which the client's CA (another certificate) did not sign.
    const server: Server = createServer((socket) => {
      socket.once('data', () => {
        socket.write('S');
        const tls = new TLSSocket(socket, {
          isServer: true,
          key: readFileSync(join(dir, 'server.key')),
          cert: readFileSync(join(dir, 'server.crt')),
        });
        tls.on('error', () => socket.destroy());
      });
      socket.on('error', () => undefined);
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const port = (server.address() as { port: number }).port;
    const m = managerOn(
      `postgres://postgres@127.0.0.1:${port}/db?sslmode=verify-full&sslrootcert=${encodeURIComponent(join(dir, 'other-ca.crt'))}`,
    );
    try {
      const error = await m.get('t', 'k').catch((e: unknown) => e);
      expect(error).toBeInstanceOf(DatabaseUnavailableError);
      expect(error).toBeInstanceOf(TenantSecretsError);
      expect((error as Error).message).toMatch(/TLS/);
      const cause = (error as Error).cause as { code?: string };
      expect(cause).toBeInstanceOf(Error);
      expect(cause.code).toMatch(/SELF_SIGNED|UNABLE_TO_VERIFY|CERT/);
    } finally {
      await m.close();
      await new Promise((resolve) => server.close(resolve));
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
