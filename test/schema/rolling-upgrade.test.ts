// suite-scope: direct — the released 0.1.0 library predates transaction pooling, and what this file measures is migrate()'s locks against old processes on the server itself
import { type ChildProcess, fork } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createSecretsManager, LATEST_SCHEMA_VERSION, type SecretsManager } from '../../src/index.js';
import { adminQuery, directUrlFor, freshDatabase, TEST_KEY } from '../support/db.js';
import { buildRelease, type ReleaseName } from '../support/releases.js';

/**
 * A rolling upgrade: a database installed by a released version and filled (50 tenants) while 8
 * processes running that release's library serve a set/get/rotate mix, and this release's migrate()
 * runs in the middle of it. migrate() must succeed without a deadlock, the old processes must lose
 * nothing they were told was written and keep working on the upgraded schema, and the audit trail
 * must verify. The longest wait an old process saw is printed (not asserted against a time).
 */

const WORKERS = 8;
const TENANTS = 50;
const WORKER_SCRIPT = join(dirname(fileURLToPath(import.meta.url)), '..', 'support', 'rolling-worker.mjs');
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

interface WorkerError {
  name: string;
  code?: string;
  sqlState?: string;
  message: string;
  cause?: string;
  at: number;
}
interface WorkerReport {
  acked: [string, string, number, string][];
  errors: WorkerError[];
  mismatches: unknown[];
  ops: [number, number][];
}

const dirs: Partial<Record<ReleaseName, string>> = {};
const children = new Set<ChildProcess>();

beforeAll(() => {
  // Built once per commit under the temporary directory (about a minute the first time).
  dirs['0.1.0'] = buildRelease('0.1.0');
  dirs['0.2.0'] = buildRelease('0.2.0');
}, 900_000);

afterAll(() => {
  for (const child of children) child.kill('SIGKILL');
});

function start(release: ReleaseName, url: string, env: Record<string, string>): ChildProcess {
  const child = fork(WORKER_SCRIPT, [], {
    env: {
      ...process.env,
      RELEASE_DIR: dirs[release],
      WORKER_DATABASE_URL: url,
      WORKER_MASTER_KEY: TEST_KEY,
      WORKER_TENANTS: String(TENANTS),
      ...env,
    },
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  children.add(child);
  child.on('exit', () => children.delete(child));
  return child;
}

function exited(child: ChildProcess): Promise<number | null> {
  return new Promise((resolve) => {
    if (child.exitCode !== null) resolve(child.exitCode);
    else child.once('exit', (code) => resolve(code));
  });
}

function message<T>(child: ChildProcess, type: string): Promise<T> {
  return new Promise((resolve, reject) => {
    const onMessage = (m: { type: string }) => {
      if (m?.type !== type) return;
      child.off('message', onMessage);
      resolve(m as T);
    };
    child.on('message', onMessage);
    child.once('exit', (code) => reject(new Error(`worker exited (${code}) before "${type}"`)));
  });
}

const percentile = (sorted: number[], p: number) =>
  sorted.length === 0 ? 0 : (sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))] ?? 0);

// ROLLING_ONLY=0.2.0 runs the upgrade from one release only (when working on this file).
describe.each((process.env.ROLLING_ONLY?.split(',') ?? ['0.1.0', '0.2.0']) as ReleaseName[])(
  'rolling upgrade from %s with 8 old workers serving',
  (release) => {
    let manager: SecretsManager;
    let reports: WorkerReport[] = [];
    const window = { start: 0, end: 0 };
    let migrateResult: Awaited<ReturnType<SecretsManager['migrate']>> | undefined;
    let migrateError: unknown;
    let attempts = 0;
    let pool: pg.Pool | undefined;

    beforeAll(async () => {
      // The installer module (large) loaded before the clock starts, as in a deployed process.
      await import('../../src/schema/installer.js');
      const db = await freshDatabase('rolling');
      const url = directUrlFor(db.name);
      // That release installs its own schema.
      expect(await exited(start(release, url, { WORKER_MODE: 'migrate' }))).toBe(0);
      const workers = Array.from({ length: WORKERS }, (_, i) =>
        start(release, url, { WORKER_MODE: 'serve', WORKER_ID: String(i) }),
      );
      await Promise.all(workers.map((w) => message(w, 'ready')));
      const done = workers.map((w) => message<WorkerReport & { type: string }>(w, 'done'));
      await sleep(1000);

      // The upgrading process's own pool: each transaction migrate() begins on it is one attempt.
      pool = new pg.Pool({ connectionString: url, max: 2 });
      pool.on('connect', (client) => {
        const query = client.query.bind(client) as (...args: unknown[]) => unknown;
        (client as unknown as { query: (...args: unknown[]) => unknown }).query = (...args: unknown[]) => {
          if (args[0] === 'BEGIN') attempts++;
          return query(...args);
        };
      });
      manager = createSecretsManager({ pool, masterKey: TEST_KEY, actor: 'upgrade' });
      window.start = Date.now();
      try {
        migrateResult = await manager.migrate();
      } catch (error) {
        migrateError = error;
      }
      window.end = Date.now();
      // The old release keeps serving on the upgraded schema.
      await sleep(2000);
      for (const w of workers) w.send({ type: 'stop' });
      reports = await Promise.all(done);
      await Promise.all(workers.map(exited));
    }, 300_000);

    afterAll(async () => {
      await manager?.close();
      await pool?.end();
    });

    it('migrate() succeeds while the old release serves traffic (no deadlock)', () => {
      expect(migrateError).toBeUndefined();
      expect(migrateResult).toMatchObject({ version: LATEST_SCHEMA_VERSION, functionsInstalled: true });
      const all = reports.flatMap((r) => r.ops);
      const during = all.filter(([, end]) => end >= window.start && end <= window.end).length;
      const after = all.filter(([start]) => start > window.end).length;
      const latencies = all.map(([s, e]) => e - s).sort((a, b) => a - b);
      const overlapping = all
        .filter(([s, e]) => e >= window.start && s <= window.end)
        .map(([s, e]) => e - s)
        .sort((a, b) => a - b);
      const outside = all
        .filter(([s, e]) => e < window.start || s > window.end)
        .map(([s, e]) => e - s)
        .sort((a, b) => a - b);
      console.info(
        `rolling upgrade from ${release}: migrate() ${window.end - window.start} ms in ${attempts} attempt(s); ` +
          `old workers: ${all.length} operations (${during} completed during migrate(), ${after} after it), ` +
          `p50 ${percentile(latencies, 0.5)} ms, p99 ${percentile(latencies, 0.99)} ms, ` +
          `longest stall ${latencies.at(-1)} ms overall, ${overlapping.at(-1) ?? 0} ms overlapping migrate() ` +
          `(outside it: p99 ${percentile(outside, 0.99)} ms, longest ${outside.at(-1) ?? 0} ms); ` +
          `errors: ${reports.reduce((n, r) => n + r.errors.length, 0)}`,
      );
    });

    it('the old workers saw no deadlock and no wrong value, and lost no acknowledged write', async () => {
      const errors = reports.flatMap((r) => r.errors);
      for (const e of errors)
        console.info(
          `  old worker error: ${e.name} ${e.code} ${e.sqlState ?? ''} ${e.message} [${e.cause ?? ''}] at ${e.at - window.end} ms after migrate()`,
        );
      expect(errors.filter((e) => e.sqlState === '40P01' || /deadlock/i.test(e.message))).toEqual([]);
      expect(reports.flatMap((r) => r.mismatches)).toEqual([]);
      // Every acknowledged write reads back with this release's library (each worker owns its keys).
      const latest = new Map<string, [number, string]>();
      let checked = 0;
      for (const [tenant, key, version, value] of reports.flatMap((r) => r.acked)) {
        const id = `${tenant}\u0000${key}`;
        if ((latest.get(id)?.[0] ?? 0) < version) latest.set(id, [version, value]);
      }
      expect(latest.size).toBe(WORKERS * 2 * TENANTS);
      for (const [id, [version, value]] of latest) {
        const [tenant, key] = id.split('\u0000') as [string, string];
        expect(await manager.getWithVersion(tenant, key)).toMatchObject({ version, value });
        checked++;
      }
      // Older acknowledged versions, where retention kept them.
      for (const [tenant, key, version, value] of reports.flatMap((r) => r.acked)) {
        if (latest.get(`${tenant}\u0000${key}`)?.[0] === version) continue;
        const read = await manager.get(tenant, key, { version, allowExpired: true }).catch(() => undefined);
        if (read !== null && read !== undefined) {
          expect(read).toBe(value);
          checked++;
        }
      }
      expect(checked).toBeGreaterThanOrEqual(latest.size);
    }, 120_000);

    // 0.1.0 sent each tenant's key-encryption key to the database; 0.2.0 removed those functions, so a
    // 0.1.0 process cannot work on a newer schema by design: every call fails, typed, with
    // SCHEMA_NOT_READY (its own code for a missing function), and writes nothing.
    it.runIf(release === '0.1.0')(
      '0.1.0 processes get a typed SCHEMA_NOT_READY error once the upgrade commits',
      () => {
        const after = reports.flatMap((r) => r.ops).filter(([start]) => start > window.end + 200);
        expect(after.length).toBeGreaterThan(0);
        const errors = reports.flatMap((r) => r.errors).filter((e) => e.at > window.end + 200);
        expect(errors.length).toBeGreaterThan(0);
        for (const e of errors)
          expect(e).toMatchObject({ name: 'SchemaNotReadyError', code: 'SCHEMA_NOT_READY' });
        // Before the upgrade committed, none.
        expect(reports.flatMap((r) => r.errors).filter((e) => e.at < window.start)).toEqual([]);
      },
    );

    it.runIf(release !== '0.1.0')(
      `${release} processes keep working on the upgraded schema, without an error`,
      () => {
        const after = reports.flatMap((r) => r.ops).filter(([start]) => start > window.end);
        expect(after.length).toBeGreaterThan(0);
        expect(reports.flatMap((r) => r.errors)).toEqual([]);
      },
    );

    it('the audit trail verifies', async () => {
      const result = await manager.verifyAudit();
      // On failure, say what broke (chain ids, seqs and reasons: nothing secret), so that a failure seen
      // once in CI can be read from its log.
      expect(
        result.ok,
        JSON.stringify({ firstBad: result.firstBad, problems: result.problems.slice(0, 10) }),
      ).toBe(true);
    }, 120_000);
  },
);

/** Lock modes by strength; a lock taken later is covered by one held when it is no stronger. */
const MODES = [
  'AccessShareLock',
  'RowShareLock',
  'RowExclusiveLock',
  'ShareUpdateExclusiveLock',
  'ShareLock',
  'ShareRowExclusiveLock',
  'ExclusiveLock',
  'AccessExclusiveLock',
];

/**
 * Runs the installer statement by statement in one transaction and returns every lock on a table of
 * ours that existed before it (an index or sequence counts as its table) taken after the guard step
 * in a mode stronger than the guard took: a lock the migration would wait for while holding others.
 */
async function locksAfterGuard(url: string): Promise<{ late: string[]; strong: string[] }> {
  const { installerStatements } = await import('../../src/schema/installer.js');
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  const held = `SELECT COALESCE(i.indrelid, d.refobjid, c.oid)::regclass::text AS rel, l.mode
                  FROM pg_locks l JOIN pg_class c ON c.oid = l.relation
                  LEFT JOIN pg_index i ON i.indexrelid = c.oid
                  LEFT JOIN pg_depend d ON c.relkind = 'S' AND d.classid = 'pg_class'::regclass AND d.objid = c.oid
                       AND d.refclassid = 'pg_class'::regclass AND d.deptype IN ('a', 'i')
                 WHERE l.pid = pg_backend_pid() AND l.locktype = 'relation' AND l.granted
                   AND c.relnamespace = 'public'::regnamespace AND c.relname LIKE 'tenant\\_secret%'`;
  try {
    await client.query('BEGIN');
    await client.query(`SET LOCAL lock_timeout = '5s'`);
    const [prologue, guard, ...rest] = installerStatements({ schema: 'public' });
    await client.query(prologue as string);
    const existing = new Set(
      (
        await client.query<{ rel: string }>(
          `SELECT oid::regclass::text AS rel FROM pg_class WHERE relnamespace = 'public'::regnamespace AND relkind IN ('r', 'p') AND relname LIKE 'tenant\\_secret%'`,
        )
      ).rows.map((r) => r.rel),
    );
    await client.query(guard as string);
    const strongest = new Map<string, number>();
    for (const { rel, mode } of (await client.query<{ rel: string; mode: string }>(held)).rows) {
      strongest.set(rel, Math.max(strongest.get(rel) ?? -1, MODES.indexOf(mode)));
    }
    for (const sql of rest) await client.query(sql);
    const late = (await client.query<{ rel: string; mode: string }>(held)).rows.filter(
      ({ rel, mode }) => existing.has(rel) && MODES.indexOf(mode) > (strongest.get(rel) ?? -1),
    );
    await client.query('COMMIT');
    return {
      late: late.map(({ rel, mode }) => `${rel} ${mode}`).sort(),
      // Tables the guard locked against the application (stronger than its own writes' ROW EXCLUSIVE);
      // the migrations table's SHARE ROW EXCLUSIVE (the prologue's) only orders migrators: the application
      // only reads it.
      strong: [...strongest]
        .filter(([rel]) => rel !== 'tenant_secret_migrations')
        .filter(([, mode]) => mode > MODES.indexOf('RowExclusiveLock'))
        .map(([rel]) => rel)
        .sort(),
    };
  } finally {
    await client.end();
  }
}

describe('migrate() takes every table lock up front, in the guard step', () => {
  it.each(['0.1.0', '0.2.0'] as const)('upgrading from %s', async (release) => {
    const db = await freshDatabase('locks');
    const url = directUrlFor(db.name);
    expect(await exited(start(release, url, { WORKER_MODE: 'migrate' }))).toBe(0);
    const { late, strong } = await locksAfterGuard(url);
    expect(late).toEqual([]);
    // Every table of an earlier release gets its guards (and migration 000007 alters the key table).
    expect(strong).toContain('tenant_secret_keys');
  });

  it('on an installed schema, none the application waits for, also when the functions are installed again', async () => {
    const db = await freshDatabase('locks');
    const url = directUrlFor(db.name);
    const manager = createSecretsManager({ connectionString: url, masterKey: TEST_KEY });
    try {
      await manager.migrate();
      await manager.set('t', 'k', 'v');
      // Nothing to change: no lock the application waits for.
      expect(await locksAfterGuard(url)).toEqual({ late: [], strong: [] });
      // New function sources and no table migration (a patch release): still none.
      await adminQuery(
        db.name,
        `UPDATE tenant_secret_schema_state SET value = value || '{"source": "older"}' WHERE key = 'functions'`,
      );
      expect(await locksAfterGuard(url)).toEqual({ late: [], strong: [] });
    } finally {
      await manager.close();
    }
  });
});

describe('the relations a table migration alters, read from its text', () => {
  it('000007 alters the key table, the sealer and the audit id sequence; it creates the rest', async () => {
    const { relationsAlteredBy } = await import('../../src/schema/installer.js');
    const { MIGRATIONS } = await import('../../src/schema/sql.generated.js');
    const m7 = MIGRATIONS.find((m) => m.id === 7);
    expect(relationsAlteredBy(m7?.sql ?? '')).toEqual(
      expect.arrayContaining([
        'tenant_secret_keys',
        'tenant_secret_audit_sealer',
        'tenant_secret_audit_id_seq',
      ]),
    );
    expect(relationsAlteredBy(m7?.sql ?? '')).not.toContain('tenant_secrets');
    expect(relationsAlteredBy(m7?.sql ?? '')).not.toContain('tenant_secret_versions');
    expect(
      relationsAlteredBy(`-- ALTER TABLE :TS.in_a_comment
        CREATE INDEX x ON :TS.a (b); ALTER TABLE ONLY :TS.c ADD COLUMN d int; CREATE TABLE :TS.e (f int REFERENCES :TS.g);
        DROP INDEX IF EXISTS :TS.h; ALTER SEQUENCE :TS.i CYCLE; CREATE TABLE :TS.j PARTITION OF :TS.k DEFAULT`),
    ).toEqual(['a', 'c', 'g', 'h', 'i', 'k']);
  });
});

describe('functions are replaced in place', () => {
  it('a reinstall keeps every function (same OID); a changed result is recreated; a function this release lacks is dropped', async () => {
    const db = await freshDatabase('inplace');
    const url = directUrlFor(db.name);
    const manager = createSecretsManager({ connectionString: url, masterKey: TEST_KEY });
    const oids = () =>
      adminQuery<{ fn: string; oid: number }>(
        db.name,
        `SELECT p.oid::regprocedure::text AS fn, p.oid::int AS oid FROM pg_proc p
          WHERE p.pronamespace = 'public'::regnamespace AND (p.proname LIKE 'tenant\\_secret%' OR p.proname LIKE '\\_ts\\_%') ORDER BY 1`,
      );
    try {
      await manager.migrate();
      await manager.set('t', 'k', 'v');
      const before = await oids();
      // A new release's sources (another fingerprint): every function is created again from source.
      await adminQuery(
        db.name,
        `UPDATE tenant_secret_schema_state SET value = value || '{"source": "older"}' WHERE key = 'functions'`,
      );
      expect(await manager.migrate()).toMatchObject({ functionsInstalled: true });
      expect(await oids()).toEqual(before);
      // A function whose result differs from this release's, and one this release does not have.
      const [target] = before.filter((f) => f.fn.startsWith('tenant_secret_key_status('));
      expect(target).toBeDefined();
      await adminQuery(
        db.name,
        `DROP FUNCTION public.tenant_secret_key_status();
         CREATE FUNCTION public.tenant_secret_key_status() RETURNS integer LANGUAGE sql AS 'SELECT 1';
         CREATE FUNCTION public.tenant_secret_obsolete(integer) RETURNS integer LANGUAGE sql AS 'SELECT $1'`,
      );
      expect(await manager.migrate()).toMatchObject({ functionsInstalled: true });
      const after = await oids();
      expect(after.map((f) => f.fn)).toEqual(before.map((f) => f.fn));
      expect(after.filter((f) => f.fn !== target?.fn)).toEqual(before.filter((f) => f.fn !== target?.fn));
      expect((await manager.status()).drift).toMatchObject({ missing: [], changed: [], unexpected: [] });
      expect(await manager.get('t', 'k')).toBe('v');
    } finally {
      await manager.close();
    }
  });
});

/**
 * Release 0.2 sealers serialise on an advisory lock; this release's on the sealer's row. A 0.2.0
 * sealing pass that took its lock and then waited for a table the upgrade holds goes on, with 0.2.0's
 * code, once the upgrade commits: a sealer of this release must not chain the same records beside it
 * (each would register the new chains on the system chain under the same seqs, or move a head back).
 */
describe('a 0.2.0 sealing pass caught by the upgrade, and a sealer of this release at once', () => {
  it('chain every record once: the trail verifies, each chain is registered once', async () => {
    const db = await freshDatabase('sealrace');
    const url = directUrlFor(db.name);
    expect(await exited(start('0.2.0', url, { WORKER_MODE: 'migrate' }))).toBe(0);
    // A trail already in use (today's partition exists), then records appended by 0.2.0's own append
    // function on 200 tenants whose chains start with them.
    await adminQuery(
      db.name,
      `SELECT public._ts_audit('warm', 'secret.read', 'k', 1, 'success', NULL, '{}'::jsonb);
       SELECT * FROM public.tenant_secret_audit_seal(100, true);`,
    );
    await adminQuery(
      db.name,
      `SELECT public._ts_audit('race-' || (i % 200), 'secret.read', 'k', 1, 'success', NULL, '{}'::jsonb)
         FROM pg_catalog.generate_series(1, 20000) i`,
    );
    const { installerStatements } = await import('../../src/schema/installer.js');
    const [prologue, guard, ...rest] = installerStatements({ schema: 'public' });
    const upgrader = new pg.Client({ connectionString: url });
    const old = new pg.Client({ connectionString: url });
    const current = new pg.Client({ connectionString: url });
    const background = new pg.Client({ connectionString: url });
    await Promise.all([upgrader.connect(), old.connect(), current.connect(), background.connect()]);
    try {
      await upgrader.query('BEGIN');
      await upgrader.query(prologue as string);
      await upgrader.query(guard as string);
      // The 0.2.0 pass starts now: it takes 0.2.0's lock, then waits for the tables the upgrade holds.
      const oldPid = (await old.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]?.pid;
      const oldPass = old.query('SELECT * FROM public.tenant_secret_audit_seal(100000, false)');
      for (let waited = 0; ; waited += 20) {
        const [row] = await adminQuery<{ n: number }>(
          db.name,
          'SELECT count(*)::int AS n FROM pg_locks WHERE pid = $1 AND NOT granted',
          [oldPid],
        );
        if ((row?.n ?? 0) > 0) break;
        if (waited > 10_000) throw new Error('the 0.2.0 sealing pass never waited for the upgrade');
        await sleep(20);
      }
      for (const sql of rest) await upgrader.query(sql);
      await upgrader.query('COMMIT');
      // Sealers of this release at once, while the 0.2.0 pass goes on: the library's background
      // pass (gives up when busy) and a pass that waits, with a batch small enough to finish first.
      const passes = await Promise.allSettled([
        oldPass,
        current.query('SELECT * FROM public.tenant_secret_audit_seal(100, true)'),
        background.query('SELECT * FROM public.tenant_secret_audit_seal(100, false)'),
      ]);
      expect(passes.filter((p) => p.status === 'rejected')).toEqual([]);
    } finally {
      await Promise.all([upgrader.end(), old.end(), current.end(), background.end()]);
    }
    const manager = createSecretsManager({ connectionString: url, masterKey: TEST_KEY });
    try {
      const result = await manager.verifyAudit();
      expect(
        result.ok,
        JSON.stringify({ firstBad: result.firstBad, problems: result.problems.slice(0, 10) }),
      ).toBe(true);
      const registered = await adminQuery<{ chain: string; n: number }>(
        db.name,
        `SELECT details->>'chain_id' AS chain, count(*)::int AS n FROM public.tenant_secret_audit
          WHERE action = 'audit.chain_started' GROUP BY 1 HAVING count(*) > 1`,
      );
      expect(registered).toEqual([]);
      const [sealed] = await adminQuery<{ n: number }>(
        db.name,
        `SELECT count(*)::int AS n FROM public.tenant_secret_audit WHERE chain_id LIKE 'race-%' AND sealed_at < 'infinity'`,
      );
      expect(sealed?.n).toBe(20_000);
    } finally {
      await manager.close();
    }
  }, 120_000);

  it("0.2.0's lock counts for an hour after the upgrade only: held meanwhile, sealing waits and loses nothing", async () => {
    const db = await freshDatabase('sealwindow');
    const url = directUrlFor(db.name);
    expect(await exited(start('0.2.0', url, { WORKER_MODE: 'migrate' }))).toBe(0);
    const manager = createSecretsManager({
      connectionString: url,
      masterKey: TEST_KEY,
      auditSealIntervalMs: 0,
    });
    const holder = new pg.Client({ connectionString: url });
    await holder.connect();
    const seal = async () =>
      (
        await adminQuery<{ sealed: number; pending: string; busy: boolean }>(
          db.name,
          'SELECT * FROM public.tenant_secret_audit_seal(10000, false)',
        )
      )[0];
    try {
      await manager.migrate();
      await manager.set('t', 'k', 'v');
      await holder.query(`SELECT pg_advisory_lock(1951622706, hashtext('"public"'))`);
      // In the hour after the upgrade: busy, and the record waits.
      expect(await seal()).toMatchObject({ sealed: 0, busy: true });
      await expect(manager.auditTrail.seal()).rejects.toMatchObject({ code: 'LOCK_TIMEOUT' });
      // The upgrade two hours ago: that lock no longer counts.
      await adminQuery(
        db.name,
        `UPDATE public.tenant_secret_migrations SET applied_at = applied_at - interval '2 hours'`,
      );
      expect(await seal()).toMatchObject({ busy: false, pending: '0' });
      expect((await manager.verifyAudit()).ok).toBe(true);
      const [created] = await adminQuery<{ n: number }>(
        db.name,
        `SELECT count(*)::int AS n FROM public.tenant_secret_audit WHERE chain_id = 't' AND sealed_at < 'infinity'`,
      );
      expect(created?.n).toBeGreaterThan(0);
    } finally {
      await holder.end();
      await manager.close();
    }
  }, 120_000);
});
