/**
 * tenant-secrets benchmark: `npm run bench` (a script, not a test: it asserts nothing, it prints
 * each figure with its target and "meets" / "misses").
 *
 *   npm run bench                 full run (about 10 minutes on 2 cores)
 *   npm run bench -- --quick      short smoke run (small sizes, 1 s phases)
 *   npm run bench -- --json       the same figures as one JSON document on stdout (compare runs)
 *   npm run bench -- --breakdown  also per-statement costs of get/set (needs pg_stat_statements)
 *
 * Server: an embedded PostgreSQL (fsync and synchronous_commit on, as PostgreSQL ships) unless
 * BENCH_DATABASE_URL names another one (the bench then works in fresh schemas there and drops them).
 * The server's fsync, synchronous_commit and wal_sync_method are printed; a run with fsync or
 * synchronous_commit off is labelled NOT DURABLE. BENCH_FSYNC=off runs the embedded server without.
 *
 * Every ratio compares with a baseline measured in the same run, on the same pool, at the same
 * concurrency, with phases interleaved (A B A B) so that drift and other load hit both sides:
 *   - hot tenant: 16 clients on ONE tenant vs the same load over 16 tenants (get, set);
 *   - get vs the one-statement audited read: WITH a AS (INSERT INTO audit ...) SELECT encrypted_value
 *     FROM t WHERE pk, inserting a row of the same shape into a table with the same indexes as the
 *     pending partition our get appends to (none), at 4 and 16 clients;
 *   - set / rotate vs a one-statement upsert + audit insert, at 4 and 16 clients;
 *   - getMany(100) secrets/s vs single gets; cached get ops/s (the opt-in cache).
 * Then: a get while another transaction holds an uncommitted write of the same tenant; the unsealed
 * window under load; audit storage per record and WAL per get; set() at 10,000 versions of one key;
 * RSS across 200,000 operations; master-key rotation of 10,000 tenants; and two 3-million-record
 * trails sealed over 30 days (few long chains, 100,000 short ones): verifyAudit rate and memory,
 * pruning one day of 30, export.
 *
 * Sizes: BENCH_SECONDS (per phase, default 5), BENCH_TRAIL_RECORDS (3,000,000), BENCH_SHORT_CHAINS
 * (100,000), BENCH_ROTATION_TENANTS (10,000), BENCH_VERSIONS (10,000), BENCH_RSS_OPS (200,000).
 * Other work on the machine perturbs the figures: the load average is printed at start and end.
 */
import { randomBytes } from 'node:crypto';
import * as os from 'node:os';
import pg from 'pg';
import { createSecretsManager, generateMasterKey, type SecretsManager } from '../src/index.js';
import { startEmbeddedPostgres } from './embedded.js';

const argv = new Set(process.argv.slice(2));
const JSON_OUT = argv.has('--json');
const QUICK = argv.has('--quick');
const BREAKDOWN = argv.has('--breakdown');
for (const a of argv) {
  if (!['--json', '--quick', '--breakdown'].includes(a)) {
    console.error(`unknown argument ${a} (known: --quick, --json, --breakdown)`);
    process.exit(2);
  }
}
const num = (name: string, full: number, quick: number) =>
  Number(process.env[name] ?? (QUICK ? quick : full));
const SECONDS = num('BENCH_SECONDS', 5, 1);
const TRAIL_RECORDS = num('BENCH_TRAIL_RECORDS', 3_000_000, 60_000);
const SHORT_CHAINS = num('BENCH_SHORT_CHAINS', 100_000, 2_000);
const ROTATION_TENANTS = num('BENCH_ROTATION_TENANTS', 10_000, 300);
const VERSIONS = num('BENCH_VERSIONS', 10_000, 600);
const RSS_OPS = num('BENCH_RSS_OPS', 200_000, 5_000);
const DAYS = 30;
const LONG_CHAINS = 10;
const MAX_CLIENTS = 16;
const ROUNDS = QUICK ? 1 : 2;

const log = (line: string) => process.stderr.write(`${line}\n`);

// ---------------------------------------------------------------------------------------------
// Figures
// ---------------------------------------------------------------------------------------------

interface Figure {
  name: string;
  value: number;
  unit: string;
  /** e.g. '>= 0.9'; absent for figures printed without a target. */
  target?: string;
  meets?: boolean;
  note?: string;
}
const figures: Figure[] = [];
function figure(
  name: string,
  value: number,
  unit: string,
  target?: { op: '>=' | '<=' | '<'; bound: number },
  note?: string,
) {
  const f: Figure = { name, value, unit };
  if (target) {
    f.target = `${target.op} ${target.bound}`;
    f.meets =
      target.op === '>='
        ? value >= target.bound
        : target.op === '<='
          ? value <= target.bound
          : value < target.bound;
  }
  if (note) f.note = note;
  figures.push(f);
  log(
    `  ${name}: ${fmt(value)} ${unit}${f.target ? ` (target ${f.target}: ${f.meets ? 'meets' : 'MISSES'})` : ''}`,
  );
}
const fmt = (n: number) =>
  !Number.isFinite(n)
    ? String(n)
    : Math.abs(n) >= 100
      ? n.toFixed(0)
      : Math.abs(n) >= 1
        ? n.toFixed(2)
        : n.toFixed(3);

// ---------------------------------------------------------------------------------------------
// Load phases
// ---------------------------------------------------------------------------------------------

interface Phase {
  name: string;
  clients: number;
  ops: number;
  seconds: number;
  perSecond: number;
  p50: number;
  p99: number;
  max: number;
}
const phases: Phase[] = [];

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? 0;
}

/** Runs `op(worker, i)` on `clients` workers for `seconds` (after one warm-up call each). */
async function run(
  name: string,
  clients: number,
  seconds: number,
  op: (worker: number, i: number) => Promise<unknown>,
): Promise<Phase> {
  await Promise.all(Array.from({ length: clients }, (_, w) => op(w, -1)));
  const latencies: number[] = [];
  const started = performance.now();
  const deadline = started + seconds * 1000;
  await Promise.all(
    Array.from({ length: clients }, async (_, w) => {
      for (let i = 0; performance.now() < deadline; i++) {
        const t = performance.now();
        await op(w, i);
        latencies.push(performance.now() - t);
      }
    }),
  );
  const elapsed = (performance.now() - started) / 1000;
  latencies.sort((a, b) => a - b);
  return {
    name,
    clients,
    ops: latencies.length,
    seconds: elapsed,
    perSecond: latencies.length / elapsed,
    p50: percentile(latencies, 50),
    p99: percentile(latencies, 99),
    max: latencies.at(-1) ?? 0,
  };
}

function merge(parts: Phase[]): Phase {
  const first = parts[0] as Phase;
  const ops = parts.reduce((s, p) => s + p.ops, 0);
  const seconds = parts.reduce((s, p) => s + p.seconds, 0);
  return {
    name: first.name,
    clients: first.clients,
    ops,
    seconds,
    perSecond: ops / seconds,
    p50: parts.reduce((s, p) => s + p.p50 * p.ops, 0) / ops,
    p99: Math.max(...parts.map((p) => p.p99)),
    max: Math.max(...parts.map((p) => p.max)),
  };
}

/** A vs B, interleaved ROUNDS times (A B A B), so drift and outside load hit both; returns A/B throughput. */
async function compare(
  label: string,
  clients: number,
  a: { name: string; op: (w: number, i: number) => Promise<unknown> },
  b: { name: string; op: (w: number, i: number) => Promise<unknown> },
): Promise<{ a: Phase; b: Phase; ratio: number }> {
  const pa: Phase[] = [];
  const pb: Phase[] = [];
  for (let r = 0; r < ROUNDS; r++) {
    pa.push(await run(a.name, clients, SECONDS, a.op));
    pb.push(await run(b.name, clients, SECONDS, b.op));
  }
  const ma = merge(pa);
  const mb = merge(pb);
  phases.push(ma, mb);
  log(
    `  ${label}: ${ma.name} ${fmt(ma.perSecond)}/s vs ${mb.name} ${fmt(mb.perSecond)}/s (${clients} clients)`,
  );
  return { a: ma, b: mb, ratio: ma.perSecond / mb.perSecond };
}

// ---------------------------------------------------------------------------------------------
// Memory
// ---------------------------------------------------------------------------------------------

const mb = (bytes: number) => bytes / 1024 / 1024;
const gc = (globalThis as { gc?: () => void }).gc;
const heapAfter = () => {
  gc?.();
  return process.memoryUsage().heapUsed;
};

/** Samples RSS and heap every 25 ms while `work` runs; returns the peak growth over the start. */
async function sampled<T>(
  work: () => Promise<T>,
): Promise<{ result: T; rssStart: number; rssPeak: number; heapPeak: number; heapStart: number }> {
  gc?.();
  const start = process.memoryUsage();
  let rssPeak = start.rss;
  let heapPeak = start.heapUsed;
  const timer = setInterval(() => {
    const m = process.memoryUsage();
    rssPeak = Math.max(rssPeak, m.rss);
    heapPeak = Math.max(heapPeak, m.heapUsed);
  }, 25);
  try {
    const result = await work();
    const m = process.memoryUsage();
    rssPeak = Math.max(rssPeak, m.rss);
    heapPeak = Math.max(heapPeak, m.heapUsed);
    return { result, rssStart: start.rss, rssPeak, heapPeak, heapStart: start.heapUsed };
  } finally {
    clearInterval(timer);
  }
}

// ---------------------------------------------------------------------------------------------
// Trail generation (set-based SQL, sealed with explicit times across 30 days)
// ---------------------------------------------------------------------------------------------

const DAY_MS = 86_400_000;
function utcMidnight(daysAgo: number): Date {
  const now = new Date();
  return new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), now.getUTCDate()) - daysAgo * DAY_MS);
}

/**
 * Appends `perDay` records per day for DAYS days as operations append them (pending, with the
 * content digest), and seals each day's records at 23:00 that day through the owner's internal
 * _ts_audit_seal_batch(limit, now) under the sealer's lock. `chainOf` is an SQL expression of i.
 */
async function generateTrail(
  pool: pg.Pool,
  schema: string,
  perDay: number,
  chainOf: string,
): Promise<{ seconds: number; sealSeconds: number; firstDay: Date }> {
  const q = `"${schema}"`;
  const started = performance.now();
  const firstDay = utcMidnight(DAYS);
  let sealSeconds = 0;
  for (let d = DAYS; d >= 1; d--) {
    // Days counted from the first one (a run may cross midnight UTC).
    const day = new Date(firstDay.getTime() + (DAYS - d) * DAY_MS);
    await pool.query(
      `INSERT INTO ${q}.tenant_secret_audit_pending (chain_id, occurred_at, tenant_id, db_role, actor, action, key_name,
         version, outcome, error_code, request_id, context, details, digest, sealed_at)
       SELECT g.chain, g.at, g.chain, 'app', g.actor, g.action, g.key, g.version, g.outcome, g.err, g.req, g.ctx, NULL,
              ${q}._ts_audit_digest(g.chain, g.at, g.chain, 'app', g.actor, g.action, g.key, g.version, g.outcome, g.err,
                                    g.req, g.ctx, NULL),
              'infinity'
         FROM (SELECT ${chainOf} AS chain,
                      $1::timestamptz + make_interval(secs => i * (79200.0 / $2)) AS at,
                      'svc-' || (i % 7) AS actor,
                      CASE WHEN i % 10 = 0 THEN 'secret.updated' ELSE 'secret.read' END AS action,
                      'db/password-' || (i % 20) AS key, (i % 5) + 1 AS version,
                      CASE WHEN i % 50 = 0 THEN 'failure' ELSE 'success' END AS outcome,
                      CASE WHEN i % 50 = 0 THEN 'NOT_FOUND' END AS err,
                      'req-' || $3::int || '-' || i AS req,
                      jsonb_build_object('ip', '10.0.' || (i % 250) || '.' || (i % 200)) AS ctx
                 FROM generate_series(1, $2::int) i) g
        ORDER BY g.at`,
      [day, perDay, d],
    );
    const client = await pool.connect();
    const t = performance.now();
    try {
      await client.query('BEGIN');
      await client.query('SELECT pg_advisory_xact_lock(1951622706, hashtext($1))', [q]);
      for (;;) {
        const n = Number(
          (
            await client.query(`SELECT ${q}._ts_audit_seal_batch(100000, $1) AS n`, [
              new Date(day.getTime() + 23 * 3_600_000),
            ])
          ).rows[0]?.n,
        );
        if (n < 100_000) break;
      }
      await client.query('COMMIT');
    } catch (error) {
      await client.query('ROLLBACK').catch(() => undefined);
      throw error;
    } finally {
      client.release();
    }
    sealSeconds += (performance.now() - t) / 1000;
    if (d % 5 === 0) log(`    day -${d} generated and sealed`);
  }
  return { seconds: (performance.now() - started) / 1000, sealSeconds, firstDay };
}

async function relationBytes(
  pool: pg.Pool,
  schema: string,
  pattern: string,
): Promise<{ bytes: number; heap: number; index: number; records: number }> {
  const rows = await pool.query(
    `SELECT COALESCE(sum(pg_total_relation_size(c.oid)), 0)::bigint AS bytes,
            COALESCE(sum(pg_relation_size(c.oid)), 0)::bigint AS heap,
            COALESCE(sum(pg_indexes_size(c.oid)), 0)::bigint AS index
       FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
      WHERE i.inhparent = ('"${schema}".tenant_secret_audit')::regclass AND c.relname ~ $1`,
    [pattern],
  );
  const count = await pool.query(
    `SELECT count(*)::bigint AS n FROM "${schema}".tenant_secret_audit WHERE sealed_at >= '1970-01-01' AND sealed_at < 'infinity'`,
  );
  const r = rows.rows[0];
  return {
    bytes: Number(r.bytes),
    heap: Number(r.heap),
    index: Number(r.index),
    records: Number(count.rows[0]?.n),
  };
}

// ---------------------------------------------------------------------------------------------
// Main
// ---------------------------------------------------------------------------------------------

async function main(): Promise<void> {
  const startedAt = performance.now();
  const external = process.env.BENCH_DATABASE_URL;
  const server = external
    ? undefined
    : await startEmbeddedPostgres({ durable: process.env.BENCH_FSYNC !== 'off', statements: BREAKDOWN });
  const url = external ?? server?.url ?? '';
  const prefix = `ts_bench_${randomBytes(3).toString('hex')}`;
  const S = `${prefix}_ops`;
  const pool = new pg.Pool({ connectionString: url, max: MAX_CLIENTS + 4 });
  pool.on('error', () => undefined);
  const schemas: string[] = [];
  const managers: SecretsManager[] = [];
  const newManager = (schema: string, options: Record<string, unknown> = {}) => {
    if (!schemas.includes(schema)) schemas.push(schema);
    const m = createSecretsManager({ pool, schema, masterKey, actor: 'bench', ...options });
    managers.push(m);
    return m;
  };
  const masterKey = generateMasterKey();
  const load = [os.loadavg()[0] ?? 0];

  try {
    const settings = (
      await pool.query(
        `SELECT split_part(version(), ' on ', 1) AS version, current_setting('fsync') AS fsync,
                current_setting('synchronous_commit') AS synchronous_commit, current_setting('wal_sync_method') AS wal_sync_method,
                current_setting('full_page_writes') AS full_page_writes, current_setting('shared_buffers') AS shared_buffers,
                current_setting('work_mem') AS work_mem, current_setting('max_connections') AS max_connections`,
      )
    ).rows[0] as Record<string, string>;
    const durable = settings.fsync === 'on' && settings.synchronous_commit !== 'off';
    const machine = {
      cpus: os.cpus().length,
      cpuModel: os.cpus()[0]?.model ?? 'unknown',
      memoryGb: Math.round(os.totalmem() / 1024 ** 3),
      platform: `${os.platform()} ${os.release()}`,
      node: process.version,
    };
    log(
      `tenant-secrets bench${QUICK ? ' (quick)' : ''}: ${external ? 'BENCH_DATABASE_URL' : 'embedded PostgreSQL'} ${settings.version}; ` +
        `fsync=${settings.fsync} synchronous_commit=${settings.synchronous_commit} wal_sync_method=${settings.wal_sync_method} ` +
        `full_page_writes=${settings.full_page_writes} shared_buffers=${settings.shared_buffers}` +
        `${durable ? '' : '  *** NOT DURABLE: figures are not production figures ***'}`,
    );
    log(
      `machine: ${machine.cpus} x ${machine.cpuModel}, ${machine.memoryGb} GB, ${machine.platform}, node ${machine.node}; load ${fmt(load[0] ?? 0)}`,
    );
    log(`phases of ${SECONDS} s, ${ROUNDS} round(s) each side; pool of ${MAX_CLIENTS + 4} connections`);

    // -------------------------------------------------------------------------------------------
    log('\n[1] setup');
    // The background sealer's passes (their duration and outcome), to explain the unsealed window.
    const sealPasses: { at: number; ms: number; ok: boolean }[] = [];
    const manager = newManager(S, {
      logger: (e: { operation: string; outcome: string; durationMs: number }) => {
        if (e.operation === 'sealAudit')
          sealPasses.push({ at: performance.now(), ms: e.durationMs, ok: e.outcome === 'success' });
      },
    });
    await manager.migrate();
    const value = randomBytes(48).toString('base64');
    const spread = Array.from({ length: MAX_CLIENTS }, (_, i) => `t-${String(i).padStart(2, '0')}`);
    const keys = Array.from({ length: MAX_CLIENTS }, (_, i) => `k-${String(i).padStart(2, '0')}`);
    const many = Array.from({ length: 100 }, (_, i) => `m-${String(i).padStart(3, '0')}`);
    await Promise.all(
      [...spread, 'hot'].map(async (tenant) => {
        for (const key of keys) await manager.set(tenant, key, value);
      }),
    );
    for (let i = 0; i < many.length; i += 10) {
      await Promise.all(many.slice(i, i + 10).map((k) => manager.set('many', k, value)));
    }
    const q = `"${S}"`;
    await pool.query(`CREATE TABLE ${q}.bench_secrets (tenant_id text, key_name text, version integer NOT NULL DEFAULT 1,
                        encrypted_value bytea NOT NULL, PRIMARY KEY (tenant_id, key_name))`);
    await pool.query(
      `INSERT INTO ${q}.bench_secrets SELECT tenant_id, key_name, current_version, encrypted_value FROM ${q}.tenant_secrets`,
    );
    // The same columns, defaults (the same id sequence) and constraints as the pending partition, and
    // like it no index.
    await pool.query(
      `CREATE TABLE ${q}.bench_audit (LIKE ${q}.tenant_secret_audit_pending INCLUDING DEFAULTS INCLUDING CONSTRAINTS)`,
    );
    const sealedLength = Number(
      (await pool.query(`SELECT max(octet_length(encrypted_value)) AS n FROM ${q}.tenant_secrets`)).rows[0]
        ?.n,
    );
    const blob = randomBytes(sealedLength);
    const digest = randomBytes(32);
    await manager.sealAudit();
    const auditedRead = (tenant: string, key: string) =>
      pool.query(
        `WITH a AS (INSERT INTO ${q}.bench_audit (chain_id, occurred_at, tenant_id, db_role, actor, action, key_name, version,
                      outcome, error_code, request_id, context, details, digest, sealed_at)
                    VALUES ($1, clock_timestamp(), $1, session_user, 'bench', 'secret.read', $2, 1, 'success', NULL, NULL, NULL,
                            NULL, $3, 'infinity'))
         SELECT encrypted_value FROM ${q}.bench_secrets WHERE tenant_id = $1 AND key_name = $2`,
        [tenant, key, digest],
      );
    const upsertAudited = (tenant: string, key: string, action = 'secret.updated') =>
      pool.query(
        `WITH a AS (INSERT INTO ${q}.bench_audit (chain_id, occurred_at, tenant_id, db_role, actor, action, key_name, version,
                      outcome, error_code, request_id, context, details, digest, sealed_at)
                    VALUES ($1, clock_timestamp(), $1, session_user, 'bench', $5, $2, NULL, 'success', NULL, NULL, NULL,
                            NULL, $4, 'infinity'))
         INSERT INTO ${q}.bench_secrets AS s (tenant_id, key_name, encrypted_value) VALUES ($1, $2, $3)
         ON CONFLICT (tenant_id, key_name) DO UPDATE SET encrypted_value = EXCLUDED.encrypted_value, version = s.version + 1`,
        [tenant, key, blob, digest, action],
      );

    // The unsealed window under load: the age of the oldest pending record, sampled every 200 ms.
    const windowSamples: number[] = [];
    const sampler = setInterval(() => {
      pool
        .query(
          `SELECT COALESCE(EXTRACT(EPOCH FROM clock_timestamp() - min(occurred_at)), 0)::float8 AS age FROM ${q}.tenant_secret_audit_pending`,
        )
        .then((r) => windowSamples.push(Number(r.rows[0]?.age)))
        .catch(() => undefined);
    }, 200);

    // -------------------------------------------------------------------------------------------
    log('\n[2] one hot tenant vs the same load over 16 tenants (16 clients)');
    const hotGet = await compare(
      'get',
      MAX_CLIENTS,
      { name: 'get, one tenant', op: (w) => manager.get('hot', keys[w] as string) },
      { name: 'get, 16 tenants', op: (w) => manager.get(spread[w] as string, 'k-00') },
    );
    figure('get: one hot tenant / 16 tenants', hotGet.ratio, 'x', { op: '>=', bound: 0.9 });
    const hotSet = await compare(
      'set',
      MAX_CLIENTS,
      { name: 'set, one tenant', op: (w) => manager.set('hot', keys[w] as string, value) },
      { name: 'set, 16 tenants', op: (w) => manager.set(spread[w] as string, 'k-00', value) },
    );
    figure('set: one hot tenant / 16 tenants', hotSet.ratio, 'x', { op: '>=', bound: 0.9 });

    // -------------------------------------------------------------------------------------------
    log('\n[3] get / set / rotate vs one-statement baselines (same pool, same clients)');
    for (const clients of [4, 16]) {
      const g = await compare(
        `get @${clients}`,
        clients,
        { name: 'get', op: (w) => manager.get(spread[w] as string, 'k-01') },
        { name: 'audited read (1 statement)', op: (w) => auditedRead(spread[w] as string, 'k-01') },
      );
      figure(
        `get / audited read, ${clients} clients`,
        g.ratio,
        'x',
        { op: '>=', bound: 0.8 },
        `${fmt(g.a.perSecond)} vs ${fmt(g.b.perSecond)} /s`,
      );
      const s = await compare(
        `set @${clients}`,
        clients,
        { name: 'set', op: (w) => manager.set(spread[w] as string, 'k-02', value) },
        { name: 'upsert + audit (1 statement)', op: (w) => upsertAudited(spread[w] as string, 'k-02') },
      );
      figure(
        `set / upsert + audit, ${clients} clients`,
        s.ratio,
        'x',
        { op: '>=', bound: 0.7 },
        `${fmt(s.a.perSecond)} vs ${fmt(s.b.perSecond)} /s`,
      );
      const r = await compare(
        `rotate @${clients}`,
        clients,
        { name: 'rotate', op: (w) => manager.rotate(spread[w] as string, 'k-03', value) },
        {
          name: 'upsert + audit (1 statement)',
          op: (w) => upsertAudited(spread[w] as string, 'k-03', 'secret.rotated'),
        },
      );
      figure(
        `rotate / upsert + audit, ${clients} clients`,
        r.ratio,
        'x',
        { op: '>=', bound: 0.7 },
        `${fmt(r.a.perSecond)} vs ${fmt(r.b.perSecond)} /s`,
      );
    }

    // -------------------------------------------------------------------------------------------
    log('\n[4] getMany(100) vs single gets (16 clients)');
    const bulk = await compare(
      'getMany',
      MAX_CLIENTS,
      { name: 'getMany(100)', op: () => manager.getMany('many', many) },
      { name: 'get', op: (w, i) => manager.get('many', many[(w * 7 + i + 100) % 100] as string) },
    );
    figure(
      'getMany(100) secrets/s / single gets/s',
      (bulk.a.perSecond * 100) / bulk.b.perSecond,
      'x',
      { op: '>=', bound: 20 },
      `${fmt(bulk.a.perSecond * 100)} vs ${fmt(bulk.b.perSecond)} secrets/s`,
    );
    // The opt-in in-process cache: reads served from memory, audited in aggregate.
    {
      const cachedManager = newManager(S, { cache: { ttlMs: 60_000, maxEntries: 1000 } });
      const cachedRun = await compare(
        'cached get',
        MAX_CLIENTS,
        {
          name: 'get, cache on',
          op: (w, i) => cachedManager.get('many', many[(w * 7 + i + 100) % 100] as string),
        },
        { name: 'get', op: (w, i) => manager.get('many', many[(w * 7 + i + 100) % 100] as string) },
      );
      figure(
        'cached get (cache on, 100 secrets read over and over) ops/s',
        cachedRun.a.perSecond,
        '/s',
        undefined,
        `${fmt(cachedRun.ratio)} x the uncached get (${fmt(cachedRun.b.perSecond)}/s); one audit record per secret and interval`,
      );
    }
    clearInterval(sampler);
    windowSamples.sort((a, b) => a - b);
    figure(
      'unsealed window under load (age of the oldest pending record), max',
      windowSamples.at(-1) ?? 0,
      's',
      undefined,
      `p50 ${fmt(percentile(windowSamples, 50))} s, p99 ${fmt(percentile(windowSamples, 99))} s, ${windowSamples.length} samples; ` +
        `background sealer every 1 s: ${sealPasses.length} passes, ${sealPasses.filter((p) => !p.ok).length} failed, ` +
        `longest ${fmt(Math.max(0, ...sealPasses.map((p) => p.ms)))} ms, longest gap ${fmt(
          Math.max(0, ...sealPasses.slice(1).map((p, i) => (p.at - (sealPasses[i]?.at ?? p.at)) / 1000)),
        )} s`,
    );

    // -------------------------------------------------------------------------------------------
    log('\n[5] a get while another transaction holds an uncommitted write of the same tenant');
    {
      const holder = new pg.Client({ connectionString: url });
      await holder.connect();
      const lat: number[] = [];
      try {
        await holder.query('BEGIN');
        await manager.inTransaction(holder).set('hot', 'held', value);
        for (let i = 0; i < (QUICK ? 50 : 300); i++) {
          const t = performance.now();
          await manager.get('hot', keys[i % MAX_CLIENTS] as string);
          lat.push(performance.now() - t);
        }
      } finally {
        await holder.query('ROLLBACK').catch(() => undefined);
        await holder.end();
      }
      lat.sort((a, b) => a - b);
      figure(
        `get during an open write of the same tenant, slowest of ${lat.length}`,
        lat.at(-1) ?? 0,
        'ms',
        { op: '<', bound: 50 },
        `p50 ${fmt(percentile(lat, 50))} ms, p99 ${fmt(percentile(lat, 99))} ms`,
      );
    }

    // -------------------------------------------------------------------------------------------
    log('\n[6] audit storage and WAL');
    {
      // In a schema of its own, with no background sealer: nothing but the measured calls writes.
      const W = `${prefix}_wal`;
      const quiet = newManager(W, { auditSealIntervalMs: 0 });
      await quiet.migrate();
      for (const tenant of spread) for (const key of ['k-01', 'k-04']) await quiet.set(tenant, key, value);
      await quiet.sealAudit();
      await manager.sealAudit();
      const lsn = async () =>
        String((await pool.query('SELECT pg_current_wal_insert_lsn()::text AS l')).rows[0]?.l);
      const walDiff = async (from: string) =>
        Number(
          (
            await pool.query('SELECT pg_wal_lsn_diff(pg_current_wal_insert_lsn(), $1::pg_lsn)::float8 AS d', [
              from,
            ])
          ).rows[0]?.d,
        );
      const n = QUICK ? 200 : 2000;
      let from = await lsn();
      for (let i = 0; i < n; i++) await quiet.get(spread[i % MAX_CLIENTS] as string, 'k-01');
      const walGet = (await walDiff(from)) / n;
      from = await lsn();
      await quiet.sealAudit();
      const walSeal = (await walDiff(from)) / n;
      from = await lsn();
      for (let i = 0; i < n; i++) await auditedRead(spread[i % MAX_CLIENTS] as string, 'k-01');
      const walBase = (await walDiff(from)) / n;
      from = await lsn();
      for (let i = 0; i < n; i++) await quiet.set(spread[i % MAX_CLIENTS] as string, 'k-04', value);
      const walSet = (await walDiff(from)) / n;
      const cluster = external ? '; cluster-wide WAL position: other sessions on that server count too' : '';
      figure(
        'WAL per get (the operation, its record appended)',
        walGet,
        'bytes',
        undefined,
        `audited-read baseline ${fmt(walBase)} bytes${cluster}`,
      );
      figure(
        'WAL per record sealed (moved to its day partition, chained)',
        walSeal,
        'bytes',
        undefined,
        cluster.slice(2) || undefined,
      );
      figure('WAL per set', walSet, 'bytes', undefined, cluster.slice(2) || undefined);
      await manager.sealAudit();
      const st = await relationBytes(pool, S, '^tenant_secret_audit_p[0-9]{8}$');
      figure(
        'audit storage per sealed record (table + indexes), live records',
        st.bytes / st.records,
        'bytes',
        undefined,
        `${st.records} records; heap ${fmt(st.heap / st.records)}, index ${fmt(st.index / st.records)}`,
      );
    }

    // -------------------------------------------------------------------------------------------
    log(`\n[7] set() at ${VERSIONS} versions of one key (1 client)`);
    {
      // One key written VERSIONS times; then writes to it alternate with writes to a key with 20
      // versions, so that both sides see the same moment's load: flat means a ratio near 1.
      const mean = (xs: number[]) => xs.reduce((s, x) => s + x, 0) / xs.length;
      const first: number[] = [];
      for (let i = 0; i < VERSIONS; i++) {
        const t = performance.now();
        await manager.set('versions', 'many-versions', value);
        if (i >= 10 && i < 210) first.push(performance.now() - t);
      }
      for (let i = 0; i < 20; i++) await manager.set('versions', 'few-versions', value);
      const many: number[] = [];
      const few: number[] = [];
      for (let i = 0; i < (QUICK ? 100 : 500); i++) {
        let t = performance.now();
        await manager.set('versions', 'many-versions', value);
        many.push(performance.now() - t);
        t = performance.now();
        await manager.set('versions', 'few-versions', value);
        few.push(performance.now() - t);
      }
      figure(
        `set(): a key at ${VERSIONS} versions / a key at 20 versions (alternating writes)`,
        mean(many) / mean(few),
        'x',
        { op: '<=', bound: 1.25 },
        `${fmt(mean(many))} vs ${fmt(mean(few))} ms per write; writes 10-210 of the first key took ${fmt(mean(first))} ms`,
      );
    }

    // -------------------------------------------------------------------------------------------
    log(`\n[8] RSS across ${RSS_OPS} operations (16 clients, 90% get / 10% set)`);
    {
      gc?.();
      const before = process.memoryUsage();
      let done = 0;
      await Promise.all(
        Array.from({ length: MAX_CLIENTS }, async (_, w) => {
          for (let i = 0; done < RSS_OPS; i++) {
            done++;
            if (i % 10 === 0) await manager.set(spread[w] as string, 'k-05', value);
            else await manager.get(spread[w] as string, keys[i % MAX_CLIENTS] as string);
          }
        }),
      );
      gc?.();
      const after = process.memoryUsage();
      figure(
        `RSS after ${RSS_OPS} operations - before`,
        mb(after.rss - before.rss),
        'MB',
        { op: '<=', bound: 64 },
        `${fmt(mb(before.rss))} MB -> ${fmt(mb(after.rss))} MB; heap ${fmt(mb(before.heapUsed))} -> ${fmt(mb(after.heapUsed))} MB${gc ? ' (after gc)' : ''}`,
      );
    }

    // -------------------------------------------------------------------------------------------
    log(`\n[9] master-key rotation of ${ROTATION_TENANTS} tenants`);
    {
      const R = `${prefix}_rot`;
      const m1 = newManager(R);
      await m1.migrate();
      let next = 0;
      await Promise.all(
        Array.from({ length: MAX_CLIENTS }, async () => {
          for (let i = next++; i < ROTATION_TENANTS; i = next++)
            await m1.set(`r-${String(i).padStart(6, '0')}`, 'api-key', value);
        }),
      );
      const r = `"${R}"`;
      await pool.query(`CREATE TABLE ${r}.bench_before AS
        SELECT 's' AS t, tenant_id || '/' || key_name AS k, xmin::text || ctid::text AS v FROM ${r}.tenant_secrets
        UNION ALL SELECT 'v', tenant_id || '/' || key_name || '/' || version, xmin::text || ctid::text FROM ${r}.tenant_secret_versions
        UNION ALL SELECT 'k', tenant_id || '/' || version, xmin::text || ctid::text FROM ${r}.tenant_secret_keys`);
      const m2 = createSecretsManager({
        pool,
        schema: R,
        masterKey: generateMasterKey(),
        previousMasterKeys: [masterKey],
        actor: 'bench',
      });
      managers.push(m2);
      const t = performance.now();
      const result = await m2.rotateMasterKey();
      const seconds = (performance.now() - t) / 1000;
      const touched = (
        await pool.query(`SELECT b.t, count(*) FILTER (WHERE n.v IS DISTINCT FROM b.v)::int AS changed, count(*)::int AS rows
            FROM ${r}.bench_before b
            LEFT JOIN (SELECT 's' AS t, tenant_id || '/' || key_name AS k, xmin::text || ctid::text AS v FROM ${r}.tenant_secrets
                       UNION ALL SELECT 'v', tenant_id || '/' || key_name || '/' || version, xmin::text || ctid::text FROM ${r}.tenant_secret_versions
                       UNION ALL SELECT 'k', tenant_id || '/' || version, xmin::text || ctid::text FROM ${r}.tenant_secret_keys) n
              ON n.t = b.t AND n.k = b.k GROUP BY b.t ORDER BY b.t`)
      ).rows as { t: string; changed: number; rows: number }[];
      const changed = (t: string) => touched.find((x) => x.t === t)?.changed ?? 0;
      figure(
        `master-key rotation of ${ROTATION_TENANTS} tenants, wall time`,
        seconds,
        's',
        undefined,
        `${result.rewrapped} data keys re-wrapped in ${result.batches} batch(es), ${fmt(result.rewrapped / seconds)} keys/s`,
      );
      figure(
        'master-key rotation: secret and version rows touched',
        changed('s') + changed('v'),
        'rows',
        { op: '<=', bound: 0 },
        `data-key rows touched ${changed('k')} of ${touched.find((x) => x.t === 'k')?.rows}`,
      );
    }

    // -------------------------------------------------------------------------------------------
    for (const shape of ['long', 'short'] as const) {
      const T = `${prefix}_${shape}`;
      const chains = shape === 'long' ? LONG_CHAINS : SHORT_CHAINS;
      const perDay = Math.floor(TRAIL_RECORDS / DAYS);
      log(
        `\n[10${shape === 'long' ? 'a' : 'b'}] a trail of ${TRAIL_RECORDS} records over ${DAYS} sealing days on ${chains} chains`,
      );
      const m = newManager(T);
      await m.migrate();
      const chainExpr =
        shape === 'long'
          ? `'long-' || (i % ${LONG_CHAINS})`
          : `'short-' || lpad((i % ${SHORT_CHAINS})::text, 6, '0')`;
      const gen = await generateTrail(pool, T, perDay, chainExpr);
      log(`    generated in ${fmt(gen.seconds)} s, of which sealing ${fmt(gen.sealSeconds)} s`);
      figure(`sealer throughput (${shape} chains)`, (perDay * DAYS) / gen.sealSeconds, 'records/s');
      const storage = await relationBytes(pool, T, '^tenant_secret_audit_p[0-9]{8}$');
      figure(
        `audit storage per record, ${shape} chains (table + indexes)`,
        storage.bytes / storage.records,
        'bytes',
        undefined,
        `${storage.records} records, ${fmt(mb(storage.bytes))} MB`,
      );

      // The first verification signs a checkpoint at the end of every chain; the second checks them.
      let t0 = performance.now();
      const first = await sampled(() => m.verifyAudit({ heads: false }));
      const firstSeconds = (performance.now() - t0) / 1000;
      t0 = performance.now();
      const again = await sampled(() => m.verifyAudit({ heads: false, checkpoint: false }));
      const againSeconds = (performance.now() - t0) / 1000;
      for (const r of [first.result, again.result])
        if (!r.ok) log(`    VERIFICATION FAILED: ${JSON.stringify(r.firstBad)}`);
      figure(
        `verifyAudit, ${shape} chains, signing a checkpoint per chain`,
        first.result.records / firstSeconds,
        'records/s',
        { op: '>=', bound: 100_000 },
        `${first.result.records} records of ${first.result.chains} chains in ${fmt(firstSeconds)} s, ok=${first.result.ok}`,
      );
      figure(
        `verifyAudit, ${shape} chains, checking ${again.result.checkpoints} checkpoints`,
        again.result.records / againSeconds,
        'records/s',
        { op: '>=', bound: 100_000 },
        `${again.result.records} records in ${fmt(againSeconds)} s, ok=${again.result.ok}`,
      );
      figure(
        `verifyAudit memory, ${shape} chains: peak RSS growth`,
        mb(Math.max(first.rssPeak - first.rssStart, again.rssPeak - again.rssStart)),
        'MB',
        { op: '<=', bound: 100 },
        `heap peak growth ${fmt(mb(Math.max(first.heapPeak - first.heapStart, again.heapPeak - again.heapStart)))} MB, ${fmt(mb(heapAfter() - first.heapStart))} MB after gc, over ${again.result.records} records`,
      );

      // Export of one chain: its first 100,000 records (long), or a whole short chain (30 records:
      // the cost of the call itself: sealing, the first page's audit.exported record).
      {
        const tenant = shape === 'long' ? 'long-3' : 'short-000042';
        let lines = 0;
        const t = performance.now();
        for await (const _ of m.exportAudit({ tenantId: tenant })) {
          lines++;
          if (lines >= 100_000) break;
        }
        const ms = performance.now() - t;
        figure(
          `exportAudit, one ${shape} chain`,
          lines / (ms / 1000),
          'records/s',
          undefined,
          `${lines} records in ${fmt(ms)} ms`,
        );
      }

      // Prune the oldest day of 30, while operations on this schema go on.
      {
        await m.set(`${shape}-live`, 'k', value);
        let stop = false;
        const lat: number[] = [];
        const during = Array.from({ length: 4 }, async () => {
          while (!stop) {
            const t = performance.now();
            await m.get(`${shape}-live`, 'k');
            lat.push(performance.now() - t);
          }
        });
        const t = performance.now();
        let pruned: Awaited<ReturnType<SecretsManager['pruneAudit']>> | undefined;
        let failure: unknown;
        try {
          pruned = await m.pruneAudit({
            olderThan: new Date(gen.firstDay.getTime() + DAY_MS),
            verifyFirst: false,
          });
        } catch (error) {
          failure = error;
        } finally {
          stop = true;
        }
        const seconds = (performance.now() - t) / 1000;
        await Promise.all(during);
        lat.sort((a, b) => a - b);
        figure(
          `pruneAudit of 1 day out of ${DAYS}, ${shape} chains`,
          failure ? Number.POSITIVE_INFINITY : seconds,
          's',
          { op: '<=', bound: 10 },
          `${pruned ? `${pruned.records} records of ${pruned.chains} chains` : `FAILED after ${fmt(seconds)} s: ${String((failure as Error)?.message ?? failure)}`}; gets meanwhile: ${lat.length}, p99 ${fmt(percentile(lat, 99))} ms, slowest ${fmt(lat.at(-1) ?? 0)} ms`,
        );
        const check = await m.verifyAudit({
          tenantId: shape === 'long' ? 'long-3' : 'short-000042',
          checkpoint: false,
        });
        if (!check.ok) log(`    VERIFICATION AFTER PRUNE FAILED: ${JSON.stringify(check.firstBad)}`);
      }
      await m.close();
      managers.splice(managers.indexOf(m), 1);
      await pool.query(`DROP SCHEMA "${T}" CASCADE`);
      schemas.splice(schemas.indexOf(T), 1);
    }

    if (BREAKDOWN) {
      await breakdown(pool, manager, S, spread, value, {
        'audited read (baseline)': (i) => auditedRead(spread[i % 16] as string, 'k-01'),
        'upsert + audit (baseline)': (i) => upsertAudited(spread[i % 16] as string, 'k-06'),
      });
    }

    // -------------------------------------------------------------------------------------------
    load.push(os.loadavg()[0] ?? 0);
    const total = (performance.now() - startedAt) / 1000;
    const report = {
      durable,
      settings,
      machine,
      load: { start: load[0], end: load[1] },
      sizes: {
        seconds: SECONDS,
        rounds: ROUNDS,
        trailRecords: TRAIL_RECORDS,
        shortChains: SHORT_CHAINS,
        rotationTenants: ROTATION_TENANTS,
        versions: VERSIONS,
        rssOps: RSS_OPS,
        quick: QUICK,
      },
      figures,
      phases,
      seconds: total,
    };
    if (JSON_OUT) process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
    {
      // The readable report: on stdout, or on stderr next to the progress when stdout carries JSON.
      const out: string[] = [];
      out.push(`\n## tenant-secrets bench${QUICK ? ' (quick)' : ''}${durable ? '' : ' — NOT DURABLE'}\n`);
      out.push(
        `${settings.version}; fsync=${settings.fsync}, synchronous_commit=${settings.synchronous_commit}, wal_sync_method=${settings.wal_sync_method}, shared_buffers=${settings.shared_buffers}`,
      );
      out.push(
        `${machine.cpus} x ${machine.cpuModel}, ${machine.memoryGb} GB; load average ${fmt(load[0] ?? 0)} at start, ${fmt(load[1] ?? 0)} at end; ${fmt(total)} s\n`,
      );
      out.push(
        table(
          ['figure', 'value', 'target', '', 'note'],
          figures.map((f) => [
            f.name,
            `${fmt(f.value)} ${f.unit}`,
            f.target ?? '',
            f.target ? (f.meets ? 'meets' : 'misses') : '',
            f.note ?? '',
          ]),
        ),
      );
      out.push('\n### Phases\n');
      out.push(
        table(
          ['phase', 'clients', 'ops', 'ops/s', 'p50 ms', 'p99 ms', 'max ms'],
          phases.map((p) => [
            p.name,
            String(p.clients),
            String(p.ops),
            fmt(p.perSecond),
            fmt(p.p50),
            fmt(p.p99),
            fmt(p.max),
          ]),
        ),
      );
      (JSON_OUT ? process.stderr : process.stdout).write(`${out.join('\n')}\n`);
    }
  } finally {
    for (const m of managers) await m.close().catch(() => undefined);
    for (const s of schemas) await pool.query(`DROP SCHEMA IF EXISTS "${s}" CASCADE`).catch(() => undefined);
    await pool.end();
    await server?.stop();
  }
}

function table(headers: string[], rows: string[][]): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) => `| ${cells.map((c, i) => c.padEnd(widths[i] ?? 0)).join(' | ')} |`;
  return [line(headers), line(widths.map((w) => '-'.repeat(w))), ...rows.map(line)].join('\n');
}

/** Per-statement costs of get and set inside their functions (pg_stat_statements, nested statements tracked). */
async function breakdown(
  pool: pg.Pool,
  manager: SecretsManager,
  schema: string,
  spread: string[],
  value: string,
  baselines: Record<string, (i: number) => Promise<unknown>>,
): Promise<void> {
  const has = await pool.query(`SELECT 1 FROM pg_settings WHERE name = 'pg_stat_statements.track'`);
  if (has.rows.length === 0) {
    log('\n[breakdown] pg_stat_statements is not loaded on this server (embedded: --breakdown preloads it)');
    return;
  }
  await pool.query('CREATE EXTENSION IF NOT EXISTS pg_stat_statements');
  const ops: [string, (i: number) => Promise<unknown>][] = [
    ['get', (i) => manager.get(spread[i % 16] as string, 'k-01')],
    ['set', (i) => manager.set(spread[i % 16] as string, 'k-06', value)],
    ...Object.entries(baselines),
  ];
  for (const [label, op] of ops) {
    await pool.query('SELECT pg_stat_statements_reset()');
    const n = 2000;
    const started = performance.now();
    for (let i = 0; i < n; i++) await op(i);
    const clientMs = (performance.now() - started) / n;
    const rows = await pool.query(
      `SELECT round((total_exec_time / ${n})::numeric, 4) AS ms_per_op, round(calls::numeric / ${n}, 2) AS calls_per_op,
              round(wal_bytes / ${n}, 0) AS wal_per_op, round(wal_fpi::numeric / ${n}, 3) AS fpi_per_op,
              left(regexp_replace(query, '\\s+', ' ', 'g'), 110) AS query
         FROM pg_stat_statements WHERE query NOT LIKE '%pg_stat_statements%' ORDER BY total_exec_time DESC LIMIT 14`,
    );
    process.stdout.write(
      `\n### Breakdown: ${label} (${n} sequential calls, ${fmt(clientMs)} ms each as the client saw it; schema ${schema}; nested statements included)\n\n`,
    );
    process.stdout.write(
      `${table(
        ['ms/op', 'calls/op', 'WAL bytes/op', 'full pages/op', 'statement'],
        rows.rows.map((r) => [
          String(r.ms_per_op),
          String(r.calls_per_op),
          String(r.wal_per_op),
          String(r.fpi_per_op),
          String(r.query),
        ]),
      )}\n`,
    );
  }
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
