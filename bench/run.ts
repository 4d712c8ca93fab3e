/**
 * tenant-secrets benchmark: `npm run bench` (a script, not a test: it asserts nothing, it prints
 * each figure with its target and "meets" / "misses").
 *
 *   npm run bench                  full run (about 25 minutes on 2 cores; filling 100,000 tenants x 10
 *                                  secrets for the scale phase takes about 10 of them)
 *   npm run bench -- --quick       short smoke run (small sizes, 1 s phases, one round)
 *   npm run bench -- --json        the same figures as one JSON document on stdout (compare runs)
 *   npm run bench -- --peers       also Supabase Vault and a hand-written pgcrypto implementation,
 *                                  on a PostgreSQL 15 server with Vault the bench starts (phases/peers.ts)
 *   npm run bench -- --only=a,b    only these phases: hot-tenants, data-plane, many, scale, memory,
 *                                  rotation, audit, peers (peers implies --peers)
 *   npm run bench -- --breakdown   also per-statement costs of get/set (needs pg_stat_statements)
 *
 * Server: an embedded PostgreSQL (fsync and synchronous_commit on, as PostgreSQL ships) unless
 * BENCH_DATABASE_URL names another one (the bench then works in fresh schemas there and drops them).
 * The server's fsync, synchronous_commit and wal_sync_method are printed; a run with fsync or
 * synchronous_commit off is labelled NOT DURABLE. BENCH_FSYNC=off runs the embedded server without.
 *
 * Every ratio compares with a baseline measured in the same run, on the same pool, at the same
 * concurrency, with phases interleaved (A B A B) so that drift and other load hit both sides
 * (load.ts); the targets are in figures.ts. Phases (phases/*.ts):
 *   - hot-tenants: 16 clients on ONE tenant vs the same load over 16 tenants (get, set);
 *   - data-plane (the manager's defaults: concurrent calls sent together): get vs the one-statement audited read (WITH a AS (INSERT INTO audit ...) SELECT
 *     encrypted_value FROM t WHERE pk, into a table shaped like the pending partition our get
 *     appends to), set / rotate vs a one-statement upsert + audit insert, at 4 and 16 clients; a get
 *     while another transaction holds an open write of the same tenant; WAL and audit storage;
 *   - many: getMany(100) secrets/s vs single gets (as the manager sends them by default, and each its
 *     own statement); cached get ops/s (the opt-in cache);
 *   - scale: set() at 10,000 versions of one key; gets over 100,000 tenants x 10 secrets vs 1,000;
 *   - memory: RSS across 200,000 operations;
 *   - rotation: master-key rotation of 10,000 tenants;
 *   - audit: two 3-million-record trails sealed over 30 days (few long chains, 100,000 short ones):
 *     verifyAudit rate (side by side over several connections, and on one) and memory, pruning one
 *     day of 30, export;
 *   - peers (--peers): Supabase Vault and naive pgcrypto against the same baselines, same server.
 *
 * Sizes: BENCH_SECONDS (per phase, default 5), BENCH_ROUNDS (2), BENCH_TRAIL_RECORDS (3,000,000),
 * BENCH_SHORT_CHAINS (100,000), BENCH_ROTATION_TENANTS (10,000), BENCH_VERSIONS (10,000),
 * BENCH_RSS_OPS (200,000), BENCH_SCALE_TENANTS (100,000), BENCH_SCALE_SECRETS (10).
 * Other work on the machine perturbs the figures: the load average is printed at start and end.
 */
import { randomBytes } from 'node:crypto';
import * as os from 'node:os';
import pg from 'pg';
import { createSecretsManager, generateMasterKey, type SecretsManager } from '../src/index.js';
import { breakdown } from './breakdown.js';
import type { BenchContext, Sizes } from './context.js';
import { startEmbeddedPostgres } from './embedded.js';
import { figure, figureRows, figures, fmt, log, table } from './figures.js';
import { createFixture, type Fixture } from './fixture.js';
import { loadSettings, percentile, phases } from './load.js';
import { auditTrails } from './phases/audit.js';
import { blockedRead, dataPlane, walAndStorage } from './phases/data-plane.js';
import { hotTenants } from './phases/hot-tenants.js';
import { many } from './phases/many.js';
import { memory } from './phases/memory.js';
import { peers } from './phases/peers.js';
import { rotation } from './phases/rotation.js';
import { manyTenants, versions } from './phases/scale.js';

const PHASES = [
  'hot-tenants',
  'data-plane',
  'many',
  'scale',
  'memory',
  'rotation',
  'audit',
  'peers',
] as const;
type PhaseName = (typeof PHASES)[number];

interface Args {
  json: boolean;
  quick: boolean;
  breakdown: boolean;
  only: Set<PhaseName>;
}

function parseArgs(argv: string[]): Args {
  const args: Args = { json: false, quick: false, breakdown: false, only: new Set() };
  let withPeers = false;
  for (const a of argv) {
    if (a === '--json') args.json = true;
    else if (a === '--quick') args.quick = true;
    else if (a === '--breakdown') args.breakdown = true;
    else if (a === '--peers') withPeers = true;
    else if (a.startsWith('--only=')) {
      for (const name of a.slice('--only='.length).split(',')) {
        if (!(PHASES as readonly string[]).includes(name)) {
          console.error(`unknown phase ${name} (known: ${PHASES.join(', ')})`);
          process.exit(2);
        }
        args.only.add(name as PhaseName);
      }
    } else {
      console.error(`unknown argument ${a} (known: --quick, --json, --peers, --only=PHASES, --breakdown)`);
      process.exit(2);
    }
  }
  if (args.only.size === 0) {
    for (const p of PHASES) if (p !== 'peers' || withPeers) args.only.add(p);
  } else if (withPeers) {
    args.only.add('peers');
  }
  return args;
}

function sizesFor(quick: boolean): Sizes {
  const num = (name: string, full: number, short: number) =>
    Number(process.env[name] ?? (quick ? short : full));
  return {
    seconds: num('BENCH_SECONDS', 5, 1),
    rounds: num('BENCH_ROUNDS', 2, 1),
    trailRecords: num('BENCH_TRAIL_RECORDS', 3_000_000, 60_000),
    shortChains: num('BENCH_SHORT_CHAINS', 100_000, 2_000),
    rotationTenants: num('BENCH_ROTATION_TENANTS', 10_000, 300),
    versions: num('BENCH_VERSIONS', 10_000, 600),
    rssOps: num('BENCH_RSS_OPS', 200_000, 5_000),
    scaleTenants: num('BENCH_SCALE_TENANTS', 100_000, 3_000),
    scaleSecrets: num('BENCH_SCALE_SECRETS', 10, 3),
    quick,
  };
}

async function serverSettings(pool: pg.Pool): Promise<Record<string, string>> {
  return (
    await pool.query(
      `SELECT split_part(version(), ' on ', 1) AS version, current_setting('fsync') AS fsync,
              current_setting('synchronous_commit') AS synchronous_commit, current_setting('wal_sync_method') AS wal_sync_method,
              current_setting('full_page_writes') AS full_page_writes, current_setting('shared_buffers') AS shared_buffers,
              current_setting('work_mem') AS work_mem, current_setting('max_connections') AS max_connections`,
    )
  ).rows[0] as Record<string, string>;
}

/** The unsealed window seen while the data-plane phases ran, and the background sealer's passes. */
function unsealedWindow(f: Fixture): void {
  f.stopSampling();
  const samples = [...f.windowSamples].sort((a, b) => a - b);
  const passes = f.sealPasses;
  figure(
    'unsealed window under load (age of the oldest pending record), max',
    samples.at(-1) ?? 0,
    's',
    undefined,
    `p50 ${fmt(percentile(samples, 50))} s, p99 ${fmt(percentile(samples, 99))} s, ${samples.length} samples; ` +
      `background sealer every 1 s: ${passes.length} passes, ${passes.filter((p) => !p.ok).length} failed, ` +
      `longest ${fmt(Math.max(0, ...passes.map((p) => p.ms)))} ms, longest gap ${fmt(
        Math.max(0, ...passes.slice(1).map((p, i) => (p.at - (passes[i]?.at ?? p.at)) / 1000)),
      )} s`,
  );
}

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  const sizes = sizesFor(args.quick);
  loadSettings.seconds = sizes.seconds;
  loadSettings.rounds = sizes.rounds;
  const startedAt = performance.now();
  const load = [os.loadavg()[0] ?? 0];
  const external = process.env.BENCH_DATABASE_URL;
  const server = external
    ? undefined
    : await startEmbeddedPostgres({ durable: process.env.BENCH_FSYNC !== 'off', statements: args.breakdown });
  const url = external ?? server?.url ?? '';
  const pool = new pg.Pool({ connectionString: url, max: 20 });
  pool.on('error', () => undefined);
  const masterKey = generateMasterKey();
  const managers: { schema: string; manager: SecretsManager }[] = [];
  const schemas = new Set<string>();
  const ctx: BenchContext = {
    pool,
    url,
    external: external !== undefined,
    prefix: `ts_bench_${randomBytes(3).toString('hex')}`,
    sizes,
    masterKey,
    newManager(schema, options = {}) {
      schemas.add(schema);
      const manager = createSecretsManager({ pool, schema, masterKey, actor: 'bench', ...options });
      managers.push({ schema, manager });
      return manager;
    },
    async dropSchema(schema) {
      for (const m of managers.filter((x) => x.schema === schema)) {
        await m.manager.close().catch(() => undefined);
        managers.splice(managers.indexOf(m), 1);
      }
      await pool.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
      schemas.delete(schema);
    },
  };
  const on = (p: PhaseName) => args.only.has(p);

  try {
    const settings = await serverSettings(pool);
    const durable = settings.fsync === 'on' && settings.synchronous_commit !== 'off';
    const machine = {
      cpus: os.cpus().length,
      cpuModel: os.cpus()[0]?.model ?? 'unknown',
      memoryGb: Math.round(os.totalmem() / 1024 ** 3),
      platform: `${os.platform()} ${os.release()}`,
      node: process.version,
    };
    log(
      `tenant-secrets bench${args.quick ? ' (quick)' : ''}: ${external ? 'BENCH_DATABASE_URL' : 'embedded PostgreSQL'} ${settings.version}; ` +
        `fsync=${settings.fsync} synchronous_commit=${settings.synchronous_commit} wal_sync_method=${settings.wal_sync_method} ` +
        `full_page_writes=${settings.full_page_writes} shared_buffers=${settings.shared_buffers}` +
        `${durable ? '' : '  *** NOT DURABLE: figures are not production figures ***'}`,
    );
    log(
      `machine: ${machine.cpus} x ${machine.cpuModel}, ${machine.memoryGb} GB, ${machine.platform}, node ${machine.node}; load average ${fmt(load[0] ?? 0)}`,
    );
    log(
      `phases: ${[...args.only].join(', ')}; ${sizes.seconds} s each, ${sizes.rounds} round(s) each side; pool of 20 connections`,
    );

    const value = randomBytes(48).toString('base64');
    const needsFixture = ['hot-tenants', 'data-plane', 'many', 'scale', 'memory'].some((p) =>
      on(p as PhaseName),
    );
    let fixture: Fixture | undefined;
    if (needsFixture) {
      log('\n[setup] tenants, secrets and baselines');
      fixture = await createFixture(ctx);
    }
    if (fixture && on('hot-tenants')) await hotTenants(fixture);
    if (fixture && on('data-plane')) await dataPlane(fixture);
    if (fixture && on('many')) await many(ctx, fixture);
    if (fixture && (on('hot-tenants') || on('data-plane') || on('many'))) unsealedWindow(fixture);
    else fixture?.stopSampling();
    if (fixture && on('data-plane')) {
      await blockedRead(ctx, fixture);
      await walAndStorage(ctx, fixture);
    }
    if (fixture && on('scale')) {
      await versions(ctx, fixture.manager, value);
      await manyTenants(ctx, value);
    }
    if (fixture && on('memory')) await memory(ctx, fixture);
    if (on('rotation')) await rotation(ctx, value);
    if (on('audit')) await auditTrails(ctx, value);
    if (on('peers')) await peers(ctx);
    if (fixture && args.breakdown) {
      const f = fixture;
      await breakdown(pool, f.manager, f.schema, f.spread, value, {
        'audited read (baseline)': (i) => f.auditedRead(f.spread[i % 16] as string, 'k-01'),
        'upsert + audit (baseline)': (i) => f.upsertAudited(f.spread[i % 16] as string, 'k-06'),
      });
    }

    load.push(os.loadavg()[0] ?? 0);
    const total = (performance.now() - startedAt) / 1000;
    const report = {
      durable,
      settings,
      machine,
      load: { start: load[0], end: load[1] },
      sizes,
      phasesRun: [...args.only],
      figures,
      phases,
      seconds: total,
    };
    if (args.json) process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
    // The readable report: on stdout, or on stderr next to the progress when stdout carries JSON.
    const out: string[] = [];
    out.push(`\n## tenant-secrets bench${args.quick ? ' (quick)' : ''}${durable ? '' : ' — NOT DURABLE'}\n`);
    out.push(
      `${settings.version}; fsync=${settings.fsync}, synchronous_commit=${settings.synchronous_commit}, wal_sync_method=${settings.wal_sync_method}, shared_buffers=${settings.shared_buffers}`,
    );
    out.push(
      `${machine.cpus} x ${machine.cpuModel}, ${machine.memoryGb} GB; load average ${fmt(load[0] ?? 0)} at start, ${fmt(load[1] ?? 0)} at end; ${fmt(total)} s\n`,
    );
    out.push(table(['figure', 'value', 'target', '', 'note'], figureRows()));
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
    (args.json ? process.stderr : process.stdout).write(`${out.join('\n')}\n`);
  } finally {
    for (const m of managers) await m.manager.close().catch(() => undefined);
    for (const s of schemas) await pool.query(`DROP SCHEMA IF EXISTS "${s}" CASCADE`).catch(() => undefined);
    await pool.end();
    await server?.stop();
  }
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
