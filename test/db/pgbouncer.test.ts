import { randomBytes } from 'node:crypto';
import { accessSync, constants, readFileSync } from 'node:fs';
import pg from 'pg';
import { describe, expect, inject, it } from 'vitest';
import { createSecretsManager } from '../../src/index.js';
import { runCli } from '../support/cli.js';
import {
  adminQuery,
  freshDatabase,
  OTHER_KEY,
  pgbouncerConsole,
  setupManager,
  TEST_KEY,
  viaPgBouncer,
} from '../support/db.js';

/**
 * Runs only when the suite runs through PgBouncer (TEST_VIA_PGBOUNCER=1, as `.ci/run`'s PgBouncer stages
 * do); skipped otherwise, since without a pooler there is nothing to prove. It shows that the pooler is
 * really in the library's path and multiplexing, and that session state does not follow a client from
 * one transaction to the next, so the library must not depend on it.
 */
const poolSize = inject('pgbouncerPoolSize');

interface PoolRow {
  database: string;
  user: string;
  cl_active: string | number;
  cl_waiting: string | number;
  sv_active: string | number;
  sv_idle: string | number;
  sv_used: string | number;
  sv_tested: string | number;
  sv_login: string | number;
  pool_mode: string;
}

async function poolOf(database: string): Promise<PoolRow | undefined> {
  const rows = await pgbouncerConsole<PoolRow>('SHOW POOLS');
  return rows.find((r) => r.database === database && r.user === 'postgres');
}

const serverConnections = (row: PoolRow | undefined) =>
  row
    ? Number(row.sv_active) +
      Number(row.sv_idle) +
      Number(row.sv_used) +
      Number(row.sv_tested) +
      Number(row.sv_login)
    : 0;

/** Backends on `database`, but for the direct connections named (the pooler's server connections). */
async function backends(database: string, directPids: number[]): Promise<number> {
  const [row] = await adminQuery<{ n: number }>(
    database,
    `SELECT count(*)::int AS n FROM pg_stat_activity
      WHERE datname = current_database() AND backend_type = 'client backend'
        AND pid <> pg_backend_pid() AND pid <> ALL ($1::int[])`,
    [directPids],
  );
  return row?.n ?? 0;
}

/** Waits (a synchronisation, not a timing assertion) until `ready` holds; fails after many polls. */
async function until(what: string, ready: () => Promise<boolean>): Promise<void> {
  for (let i = 0; i < 2000; i++) {
    if (await ready()) return;
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  throw new Error(`never reached: ${what}`);
}

async function connect(url: string): Promise<pg.Client> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  return client;
}

describe.skipIf(!viaPgBouncer())('through PgBouncer in transaction pooling mode', () => {
  it('the library goes through the pooler: twice as many clients as server connections, all calls succeed', async () => {
    const clients = 2 * poolSize;
    const { manager, db } = await setupManager({ maxConnections: clients });
    const tenant = 'pooled';
    await manager.set(tenant, 'k0', 'v0');
    expect((await poolOf(db.name))?.pool_mode).toBe('transaction');

    // Hold a lock on the secrets table, directly, that every write conflicts with (SHARE against a
    // writer's ROW EXCLUSIVE): the first `poolSize` calls block in the server, occupying every server
    // connection, and the others wait inside PgBouncer.
    const holder = new pg.Client({ connectionString: new URL(`/${db.name}`, inject('adminUrl')).toString() });
    await holder.connect();
    const holderPid =
      (await holder.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]?.pid ?? 0;
    let calls: Promise<{ version: number }>[] = [];
    try {
      await holder.query('BEGIN');
      await holder.query('LOCK TABLE public.tenant_secrets IN SHARE MODE');
      calls = Array.from({ length: clients }, (_, i) => manager.set(tenant, `k${i + 1}`, `v${i + 1}`));
      await until(
        `${poolSize} calls in the server and ${clients - poolSize} waiting in PgBouncer`,
        async () => {
          const pool = await poolOf(db.name);
          return Number(pool?.sv_active) === poolSize && Number(pool?.cl_waiting) === clients - poolSize;
        },
      );
      const pool = await poolOf(db.name);
      expect(Number(pool?.cl_active) + Number(pool?.cl_waiting)).toBe(clients);
      expect(serverConnections(pool)).toBe(poolSize);
      expect(await backends(db.name, [holderPid])).toBe(poolSize);
      await holder.query('COMMIT');
    } finally {
      await holder.end();
    }
    const results = await Promise.all(calls);
    expect(results.map((r) => r.version)).toEqual(Array.from({ length: clients }, () => 1));
    expect(await manager.getMany(tenant, ['k1', `k${clients}`])).toEqual({
      k1: 'v1',
      [`k${clients}`]: `v${clients}`,
    });
    expect(serverConnections(await poolOf(db.name))).toBeLessThanOrEqual(poolSize);
    expect(await backends(db.name, [])).toBeLessThanOrEqual(poolSize);
    const audit = await adminQuery<{ action: string; n: number }>(
      db.name,
      `SELECT action, count(*)::int AS n FROM tenant_secret_audit
        WHERE chain_id = $1 AND action LIKE 'secret.%' GROUP BY action ORDER BY action`,
      [tenant],
    );
    expect(audit).toEqual([
      { action: 'secret.created', n: clients + 1 },
      { action: 'secret.read', n: 2 },
    ]);
  });

  it('a session-level SET stays on a server connection: another client gets it, its author does not', async () => {
    const db = await freshDatabase('bouncer_session');
    const author = await connect(db.url);
    const others: pg.Client[] = [];
    try {
      // One statement is one transaction: the setting lands on the server connection that ran it.
      const [set] = (
        await author.query<{ pid: number }>(
          "SELECT set_config('ts_test.marker', 'author', false), pg_backend_pid() AS pid",
        )
      ).rows;
      // Occupy every server connection of the pool with an open transaction each: one of them is the author's.
      for (let i = 0; i < poolSize; i++) {
        const client = await connect(db.url);
        others.push(client);
        await client.query('BEGIN');
      }
      const seen = await Promise.all(
        others.map(
          async (c) =>
            (
              await c.query<{ pid: number; marker: string | null }>(
                "SELECT pg_backend_pid() AS pid, current_setting('ts_test.marker', true) AS marker",
              )
            ).rows[0],
        ),
      );
      expect(new Set(seen.map((s) => s?.pid)).size).toBe(poolSize);
      const heir = seen.findIndex((s) => s?.pid === set?.pid);
      expect(heir).toBeGreaterThanOrEqual(0);
      // Another client's transaction sees the author's session setting…
      expect(seen[heir]?.marker).toBe('author');
      for (const [i, client] of others.entries()) if (i !== heir) await client.query('COMMIT');
      // …and while that client holds the connection, the author's next transaction runs elsewhere, without it.
      const [again] = (
        await author.query<{ pid: number; marker: string | null }>(
          "SELECT pg_backend_pid() AS pid, current_setting('ts_test.marker', true) AS marker",
        )
      ).rows;
      expect(again?.pid).not.toBe(set?.pid);
      expect(again?.marker ?? '').toBe('');
      await others[heir]?.query('COMMIT');
    } finally {
      await author.end();
      await Promise.all(others.map((c) => c.end()));
    }
  });

  it('the library works on server connections left with foreign session settings', async () => {
    const { manager, db } = await setupManager();
    // Another application sharing the pool leaves session settings on every server connection. (PgBouncer
    // itself restores only the parameters it tracks per client: client_encoding, DateStyle, TimeZone,
    // standard_conforming_strings, application_name; everything else stays with the server connection.)
    const polluters: pg.Client[] = [];
    try {
      for (let i = 0; i < poolSize; i++) {
        const client = await connect(db.url);
        polluters.push(client);
        await client.query('BEGIN');
      }
      for (const client of polluters)
        await client.query(
          `SET SESSION search_path = pg_temp; SET SESSION bytea_output = 'escape';
           SET SESSION log_parameter_max_length = -1`,
        );
      for (const client of polluters) await client.query('COMMIT');
    } finally {
      await Promise.all(polluters.map((c) => c.end()));
    }
    const check = await connect(db.url);
    try {
      expect((await check.query('SHOW search_path')).rows[0]?.search_path).toBe('pg_temp');
      expect((await check.query('SHOW bytea_output')).rows[0]?.bytea_output).toBe('escape');
    } finally {
      await check.end();
    }

    await manager.set('polluted', 'a', 'value-a', { labels: { env: 'prod' } });
    expect(await manager.get('polluted', 'a')).toBe('value-a');
    await manager.rotate('polluted', 'a', 'value-a2');
    expect(await manager.get('polluted', 'a', { version: 'previous' })).toBe('value-a');
    expect((await manager.versions('polluted', 'a')).map((v) => v.version)).toEqual([2, 1]);
    expect((await manager.list('polluted')).map((i) => i.keyName)).toEqual(['a']);
    await manager.delete('polluted', 'a');
    await manager.restore('polluted', 'a');
    expect(await manager.getMany('polluted', ['a', 'missing'])).toEqual({ a: 'value-a2', missing: null });
    const { records } = await manager.audit('polluted');
    expect(records.map((r) => r.action)).toContain('secret.restored');
    expect(await manager.verifyAudit()).toMatchObject({ ok: true });
  });

  it('bind parameters stay out of the server log after PgBouncer replaces its server connections, on success and on error', async () => {
    const serverLog = inject('serverLog');
    try {
      accessSync(serverLog, constants.R_OK);
    } catch {
      throw new Error('server log not readable: set TEST_SERVER_LOG to the PostgreSQL log file');
    }
    const db = await freshDatabase('bouncer_log');
    await adminQuery(
      'postgres',
      `ALTER DATABASE ${db.name} SET log_statement = 'all';
       ALTER DATABASE ${db.name} SET log_parameter_max_length_on_error = -1`,
    );
    const manager = createSecretsManager({ connectionString: db.url, masterKey: TEST_KEY });
    try {
      await manager.migrate();
      // What server_lifetime does every hour: server connections are closed once released and new ones
      // are opened, while the library's own connections (to PgBouncer) stay open. Whatever the library
      // set up per session when it connected is gone.
      await pgbouncerConsole(`RECONNECT ${db.name}`);
      const before = readFileSync(serverLog).length;
      const marker = `pooled-marker-${randomBytes(8).toString('hex')}`;
      const failing = `pooled-failing-${randomBytes(8).toString('hex')}`;
      await manager.set('log-tenant', 'k', marker);
      expect(await manager.get('log-tenant', 'k')).toBe(marker);
      // The error path: every audit append fails (a constraint added by hand), so the write errors.
      await adminQuery(
        db.name,
        'ALTER TABLE tenant_secret_audit_pending ADD CONSTRAINT pooled_fail CHECK (action IS NULL) NOT VALID',
      );
      try {
        await expect(manager.set('log-tenant', 'k', failing)).rejects.toMatchObject({ sqlState: '23514' });
      } finally {
        await adminQuery(db.name, 'ALTER TABLE tenant_secret_audit_pending DROP CONSTRAINT pooled_fail');
      }
      // Positive controls: a client that does not quiet bind parameters leaks them into this log, on
      // success and (only there: success-path parameters off) on error.
      const control = `pooled-control-${randomBytes(8).toString('hex')}`;
      const errorControl = `pooled-error-control-${randomBytes(8).toString('hex')}`;
      const client = await connect(db.url);
      try {
        await client.query('BEGIN');
        await client.query("SELECT set_config('log_parameter_max_length', '0', true)");
        await client.query('SELECT $1::text, 1 / 0', [errorControl]).catch(() => undefined);
        await client.query('ROLLBACK');
        await client.query('SELECT $1::text AS v', [control]);
      } finally {
        await client.end();
      }
      let text = '';
      for (let i = 0; i < 50 && !text.includes(control); i++) {
        await new Promise((resolve) => setTimeout(resolve, 100));
        text = readFileSync(serverLog).subarray(before).toString('utf8');
      }
      expect(text).toContain(control); // the log is written and scanned, parameters included
      expect(text).toContain(errorControl); // …on the error path too
      expect(text).toContain('tenant_secret_write'); // the library's statements are logged...
      expect(text).toContain('pooled_fail'); // ...the failing one too...
      for (const value of [marker, failing]) {
        expect(text).not.toContain(value); // ...without their parameters: no value, as text...
        expect(text).not.toContain(Buffer.from(value).toString('hex')); // ...or as the bytea it is sent as...
      }
      const bundle = manager.tenantKeyBundle('log-tenant').bytes;
      expect(text).not.toContain(bundle.subarray(21, 85).toString('hex')); // ...and no tenant KEK...
      expect(text).not.toContain(bundle.subarray(85, 117).toString('hex')); // ...or tenant proof
    } finally {
      await manager.close();
    }
  });

  it('the library leaves no setting of its own on the server connections other clients get next', async () => {
    const { manager, db } = await setupManager();
    await pgbouncerConsole(`RECONNECT ${db.name}`);
    // Every server connection of the pool serves the library at least once.
    await Promise.all(
      Array.from({ length: 2 * poolSize }, (_, i) => manager.set('no-leak', `k${i}`, `v${i}`)),
    );
    await Promise.all(Array.from({ length: 2 * poolSize }, (_, i) => manager.get('no-leak', `k${i}`)));
    const others: pg.Client[] = [];
    try {
      for (let i = 0; i < poolSize; i++) {
        const client = await connect(db.url);
        others.push(client);
        await client.query('BEGIN');
      }
      const seen = await Promise.all(
        others.map(
          async (c) =>
            (
              await c.query<{ pid: number; changed: string[] }>(
                `SELECT pg_backend_pid() AS pid, ARRAY(
                   SELECT name || '=' || setting FROM pg_settings
                    WHERE source = 'session' AND (name LIKE 'log%' OR name LIKE 'tenant_secrets.%')
                   UNION ALL
                   SELECT 'tenant_secrets.quiet_success=' || current_setting('tenant_secrets.quiet_success', true)
                    WHERE COALESCE(current_setting('tenant_secrets.quiet_success', true), '') <> '') AS changed`,
              )
            ).rows[0],
        ),
      );
      expect(new Set(seen.map((s) => s?.pid)).size).toBe(poolSize);
      for (const s of seen) expect(s?.changed).toEqual([]);
    } finally {
      for (const client of others) await client.query('COMMIT').catch(() => undefined);
      await Promise.all(others.map((c) => c.end()));
    }
  });
  it('the CLI goes through the pooler too: migrate, set, rotate, get, both key rotations, audit verify', async () => {
    const db = await freshDatabase('pgb_cli');
    const env = {
      DATABASE_URL: db.url,
      TENANT_SECRETS_MASTER_KEY: TEST_KEY,
      TENANT_SECRETS_ACTOR: 'pgb-cli',
    };
    const ok = async (args: string[], input?: string, withEnv: Record<string, string> = env) => {
      const result = await runCli(args, { input, env: withEnv });
      expect(result.code, `${args.join(' ')}: ${result.stderr}`).toBe(0);
      return result;
    };
    expect(db.url).toContain(`:${new URL(inject('poolerUrl')).port}/`);
    await ok(['migrate']);
    await ok(['set', 'tenant-cli', 'api/key'], 'first');
    await ok(['rotate', 'tenant-cli', 'api/key'], 'second');
    expect((await ok(['get', 'tenant-cli', 'api/key'])).stdout).toBe('second\n');
    await ok(['rotate-tenant-key', 'tenant-cli']);
    await ok(['rotate-master-key'], undefined, {
      ...env,
      TENANT_SECRETS_MASTER_KEY: OTHER_KEY,
      TENANT_SECRETS_PREVIOUS_MASTER_KEYS: TEST_KEY,
    });
    const onlyNew = { ...env, TENANT_SECRETS_MASTER_KEY: OTHER_KEY };
    expect((await ok(['get', 'tenant-cli', 'api/key', '--version', '1'], undefined, onlyNew)).stdout).toBe(
      'first\n',
    );
    await ok(['audit', 'verify'], undefined, onlyNew);
    expect((await poolOf(db.name))?.pool_mode).toBe('transaction');
  });
});
