/**
 * tenant-secrets benchmark (`npm run bench`). Bounded runtime (~1 minute with defaults).
 *
 * Starts its own embedded PostgreSQL unless BENCH_DATABASE_URL is set (then it works in a fresh
 * schema there and drops it afterwards). Every figure is a ratio against a baseline measured in the
 * same run, on the same pool and concurrency, so results compare across machines:
 *   (a) audit-chain contention: N concurrent get/set on ONE tenant (one hash chain, whose head row
 *       every operation locks until commit) vs on N distinct tenants (N chains);
 *   (b) cost of get/set vs a plain SELECT / INSERT of a bytea row;
 *   (c) verifyAudit() throughput in records per second.
 * Settings: BENCH_CONCURRENCY (default 16), BENCH_SECONDS per phase (default 3), BENCH_VERIFY_RECORDS
 * (records generated for the verify phase, default 100000).
 */
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { createSecretsManager } from '../src/index.js';
import { startEmbeddedPostgres } from './embedded.js';

const CONCURRENCY = Number(process.env.BENCH_CONCURRENCY ?? 16);
const SECONDS = Number(process.env.BENCH_SECONDS ?? 3);
const VERIFY_RECORDS = Number(process.env.BENCH_VERIFY_RECORDS ?? 100_000);

interface PhaseResult {
  name: string;
  ops: number;
  perSecond: number;
  p50: number;
  p99: number;
}

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? 0;
}

/** Runs `op(worker, i)` on `CONCURRENCY` workers for `SECONDS`; returns throughput and latency. */
async function phase(
  name: string,
  op: (worker: number, i: number) => Promise<unknown>,
): Promise<PhaseResult> {
  // Warm-up: one call per worker (connections, plan caches).
  await Promise.all(Array.from({ length: CONCURRENCY }, (_, w) => op(w, -1)));
  const latencies: number[] = [];
  const started = performance.now();
  const deadline = started + SECONDS * 1000;
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async (_, w) => {
      for (let i = 0; performance.now() < deadline; i++) {
        const t = performance.now();
        await op(w, i);
        latencies.push(performance.now() - t);
      }
    }),
  );
  const elapsed = (performance.now() - started) / 1000;
  latencies.sort((a, b) => a - b);
  const result = {
    name,
    ops: latencies.length,
    perSecond: latencies.length / elapsed,
    p50: percentile(latencies, 50),
    p99: percentile(latencies, 99),
  };
  process.stderr.write(`  ${name}: ${result.perSecond.toFixed(0)} ops/s\n`);
  return result;
}

function table(headers: string[], rows: string[][]): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) => `| ${cells.map((c, i) => c.padEnd(widths[i] ?? 0)).join(' | ')} |`;
  return [line(headers), line(widths.map((w) => '-'.repeat(w))), ...rows.map(line)].join('\n');
}

async function main(): Promise<void> {
  const started = performance.now();
  const external = process.env.BENCH_DATABASE_URL;
  const server = external ? undefined : await startEmbeddedPostgres();
  const url = external ?? server?.url ?? '';
  const schema = `ts_bench_${randomBytes(4).toString('hex')}`;
  const pool = new pg.Pool({ connectionString: url, max: CONCURRENCY });
  pool.on('error', () => undefined);
  const manager = createSecretsManager({
    pool,
    schema,
    masterKey: randomBytes(32).toString('base64'),
    actor: 'bench',
  });
  try {
    process.stderr.write(
      `tenant-secrets bench: ${external ? 'BENCH_DATABASE_URL' : 'embedded PostgreSQL'}, concurrency ${CONCURRENCY}, ${SECONDS}s per phase\n`,
    );
    await manager.migrate();
    const value = randomBytes(48).toString('base64');
    const tenants = Array.from({ length: CONCURRENCY }, (_, i) => `bench-tenant-${i}`);
    for (const tenant of [...tenants, 'bench-hot']) await manager.set(tenant, 'api-key', value);
    await pool.query(
      `CREATE TABLE "${schema}".bench_plain (id bigserial PRIMARY KEY, payload bytea NOT NULL)`,
    );
    const payload = randomBytes(120);
    await pool.query(
      `INSERT INTO "${schema}".bench_plain (payload) SELECT $1 FROM generate_series(1, ${CONCURRENCY})`,
      [payload],
    );

    const r: Record<string, PhaseResult> = {};
    r.selectPlain = await phase('plain SELECT bytea', (w) =>
      pool.query(`SELECT payload FROM "${schema}".bench_plain WHERE id = $1`, [w + 1]),
    );
    r.insertPlain = await phase('plain INSERT bytea', () =>
      pool.query(`INSERT INTO "${schema}".bench_plain (payload) VALUES ($1)`, [payload]),
    );
    r.getDistinct = await phase('get, N distinct tenants', (w) =>
      manager.get(tenants[w] as string, 'api-key'),
    );
    r.getOne = await phase('get, ONE tenant', () => manager.get('bench-hot', 'api-key'));
    r.setDistinct = await phase('set, N distinct tenants', (w, i) =>
      manager.set(tenants[w] as string, `k-${i % 20}`, value),
    );
    r.setOne = await phase('set, ONE tenant (distinct keys)', (w, i) =>
      manager.set('bench-hot', `k-${w}-${i % 20}`, value),
    );

    // Verify phase: a chain of VERIFY_RECORDS generated in SQL, plus everything the phases wrote.
    await pool.query(`DO $$
DECLARE
  v_prev bytea := '\\x0000000000000000000000000000000000000000000000000000000000000000'::bytea;
  v_hash bytea;
  v_at timestamptz;
BEGIN
  FOR i IN 1..${VERIFY_RECORDS} LOOP
    v_at := now() - interval '1 day' + make_interval(secs => i);
    v_hash := "${schema}"._ts_audit_hash(v_prev, 'bench-verify', i, v_at, 'bench-verify', 'bench', 'bench',
      'secret.read', 'api-key', 1, 'success', NULL, 'req-' || i, '{"ip":"192.0.2.1"}'::jsonb, NULL);
    INSERT INTO "${schema}".tenant_secret_audit (chain_id, seq, occurred_at, tenant_id, db_role, actor, action,
      key_name, version, outcome, request_id, context, prev_hash, hash)
    VALUES ('bench-verify', i, v_at, 'bench-verify', 'bench', 'bench', 'secret.read', 'api-key', 1, 'success',
      'req-' || i, '{"ip":"192.0.2.1"}'::jsonb, v_prev, v_hash);
    v_prev := v_hash;
  END LOOP;
  INSERT INTO "${schema}".tenant_secret_audit_heads (chain_id, seq, hash) VALUES ('bench-verify', ${VERIFY_RECORDS}, v_prev);
END $$`);
    const verifyStarted = performance.now();
    const verification = await manager.verifyAudit();
    const verifySeconds = (performance.now() - verifyStarted) / 1000;
    let exported = 0;
    const exportStarted = performance.now();
    for await (const _line of manager.exportAudit({ tenantId: 'bench-verify' })) exported += 1;
    const exportSeconds = (performance.now() - exportStarted) / 1000;

    const fmt = (n: number) => n.toFixed(n >= 100 ? 0 : 2);
    console.log('\n## Throughput (same pool, same concurrency)\n');
    console.log(
      table(
        ['phase', 'ops', 'ops/s', 'p50 ms', 'p99 ms'],
        Object.values(r).map((p) => [p.name, String(p.ops), fmt(p.perSecond), fmt(p.p50), fmt(p.p99)]),
      ),
    );
    const ratio = (a: number, b: number) => (b === 0 ? 0 : a / b);
    const rows: [string, number, string][] = [
      [
        '(a) get: ONE tenant / N tenants (chain contention)',
        ratio(r.getOne.perSecond, r.getDistinct.perSecond),
        '>= 0.50',
      ],
      [
        '(a) set: ONE tenant / N tenants (chain contention)',
        ratio(r.setOne.perSecond, r.setDistinct.perSecond),
        '>= 0.50',
      ],
      ['(b) get / plain SELECT bytea', ratio(r.getDistinct.perSecond, r.selectPlain.perSecond), '>= 0.20'],
      ['(b) set / plain INSERT bytea', ratio(r.setDistinct.perSecond, r.insertPlain.perSecond), '>= 0.20'],
    ];
    console.log('\n## Ratios (throughput; 1.00 = as fast as the baseline)\n');
    console.log(
      table(
        ['ratio', 'value', 'target (indicative, not enforced)', 'meets'],
        rows.map(([name, v, target]) => [
          name,
          v.toFixed(2),
          target,
          v >= Number(target.slice(3)) ? 'yes' : 'no',
        ]),
      ),
    );
    console.log('\n## Audit verification and export\n');
    console.log(
      table(
        ['what', 'records', 'seconds', 'records/s', 'target', 'meets'],
        [
          [
            `verifyAudit (all ${verification.chains} chains, ok=${verification.ok})`,
            String(verification.records),
            verifySeconds.toFixed(2),
            fmt(verification.records / verifySeconds),
            '>= 20000/s',
            verification.records / verifySeconds >= 20_000 ? 'yes' : 'no',
          ],
          [
            'exportAudit (JSON Lines, one chain)',
            String(exported),
            exportSeconds.toFixed(2),
            fmt(exported / exportSeconds),
            '>= 20000/s',
            exported / exportSeconds >= 20_000 ? 'yes' : 'no',
          ],
        ],
      ),
    );
    console.log(`\ntotal bench time ${((performance.now() - started) / 1000).toFixed(1)} s`);
    if (!verification.ok) process.exitCode = 1;
  } finally {
    await pool.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`).catch(() => undefined);
    await manager.close();
    await pool.end();
    await server?.stop();
  }
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
