// suite-scope: direct — the proxy and the kills are in front of the server's own backends; through PgBouncer a kill ends a server connection the pooler replaces, not the library's
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { describe, expect, it } from 'vitest';
import { transactionExecutor } from '../../src/db/executor.js';
import { createSecretsManager, DatabaseUnavailableError } from '../../src/index.js';
import { adminQuery, directUrlFor, freshDatabase, TEST_KEY } from '../support/db.js';

/**
 * A backend terminated at the very moment a statement (or a connection's startup) completes: the
 * client reads ReadyForQuery and the FATAL 57P01 in one chunk (kill-window-child.ts arranges it with
 * a proxy, at every statement boundary of the operation in turn). node-postgres then emits 'error' on
 * the client in the same synchronous run in which pg-pool hands a new client out (before the caller
 * can attach a listener) or a query completes. The process must not die of an unhandled 'error'
 * event; each failure is a typed DatabaseUnavailableError, and a re-run finishes the operation.
 */

interface ChildResult {
  code: number | null;
  stderr: string;
  events: Record<string, unknown>[];
}

function runChild(config: Record<string, unknown>): Promise<ChildResult> {
  const child = spawn(
    process.execPath,
    ['--import', 'tsx', fileURLToPath(new URL('./kill-window-child.ts', import.meta.url))],
    {
      env: { ...process.env, KILL_WINDOW_CONFIG: JSON.stringify(config) },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => {
    stdout += d;
  });
  child.stderr.setEncoding('utf8').on('data', (d: string) => {
    stderr += d;
  });
  return new Promise((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code) => {
      const events = stdout
        .split('\n')
        .filter((l) => l.startsWith('{'))
        .map((l) => JSON.parse(l) as Record<string, unknown>);
      resolve({ code, stderr, events });
    });
  });
}

async function populated(tenant: string, keys: string[]): Promise<string> {
  const db = await freshDatabase('killwin');
  const m = createSecretsManager({ connectionString: directUrlFor(db.name), masterKey: TEST_KEY, env: {} });
  try {
    await m.migrate();
    for (const key of keys) {
      await m.set(tenant, key, `old ${key}`);
      await m.set(tenant, key, `value ${tenant}/${key} ✓`);
    }
  } finally {
    await m.close();
  }
  return directUrlFor(db.name);
}

function expectSurvived(run: ChildResult, label: string): Record<string, unknown> {
  expect(run.stderr, label).not.toMatch(/Unhandled 'error' event|uncaught/i);
  expect(run.code, `${label}: exit code (stderr: ${run.stderr.slice(0, 1500)})`).toBe(0);
  const done = run.events.find((e) => e.t === 'done');
  expect(done, label).toBeDefined();
  expect(run.events.filter((e) => e.t === 'injector-error')).toEqual([]);
  for (const error of run.events.filter((e) => e.t === 'error')) {
    expect(error, label).toMatchObject({ typed: true, code: 'DATABASE_UNAVAILABLE' });
  }
  expect(done?.mismatches, label).toBe(0);
  console.info(`${label}: ${JSON.stringify(done)}`);
  return done as Record<string, unknown>;
}

describe('a backend killed as a statement completes never crashes the process', () => {
  const keys = ['a', 'b', 'c', 'd', 'e'];

  for (const pool of ['owned', 'callerPool'] as const) {
    it(`rotateTenantKey, ${pool === 'owned' ? "the library's own pool" : "a caller's pg.Pool without an 'error' listener"}: every statement boundary`, async () => {
      const url = await populated('kw', keys);
      const run = await runChild({
        url,
        masterKey: TEST_KEY,
        pool,
        operation: 'rotateTenantKey',
        tenant: 'kw',
        keys,
        maxPoints: 60,
      });
      const done = expectSurvived(run, `rotateTenantKey/${pool}`);
      // The connection's startup and each statement of the rotation were kill points.
      expect(Number(done.points)).toBeGreaterThanOrEqual(6);
      expect(Number(done.killed)).toBe(Number(done.points));
    });
  }

  it('getMany on a fresh pool: the startup of each new connection', async () => {
    const url = await populated('kg', keys);
    const run = await runChild({
      url,
      masterKey: TEST_KEY,
      pool: 'owned',
      operation: 'getMany',
      tenant: 'kg',
      keys,
      maxPoints: 10,
    });
    const done = expectSurvived(run, 'getMany/owned');
    expect(Number(done.points)).toBeGreaterThanOrEqual(2);
  });

  it("a caller's connection lost between two statements of one library transaction: typed error, no crash", async () => {
    const { name } = await freshDatabase('killwin');
    const client = new pg.Client({ connectionString: directUrlFor(name) });
    await client.connect();
    // The caller listens for errors on its client, except while the library works on it.
    expect(client.listenerCount('error')).toBe(0);
    try {
      await client.query('BEGIN');
      const executor = transactionExecutor(client, () => 'SELECT 1');
      const error = await executor
        .transaction('test', async (query) => {
          await query('SELECT 1');
          // Between two statements the library may wait on other I/O; the backend dies meanwhile.
          const ended = new Promise((resolve) =>
            (client as unknown as { connection: { once(e: string, f: () => void): void } }).connection.once(
              'end',
              () => resolve(undefined),
            ),
          );
          await adminQuery(name, 'SELECT pg_terminate_backend($1, 10000)', [
            (client as unknown as { processID: number }).processID,
          ]);
          await ended;
          await query('SELECT 2');
        })
        .catch((e: unknown) => e);
      expect(error).toBeInstanceOf(DatabaseUnavailableError);
      expect(error).toMatchObject({ mayHaveCommitted: false });
      // The connection is dead: its listener stays (the client may still emit).
      expect(client.listenerCount('error')).toBe(1);
    } finally {
      await client.end().catch(() => undefined);
    }
  });
});
