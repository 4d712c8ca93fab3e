/**
 * Two trails sealed over 30 days (few long chains, many short ones): sealer throughput, storage,
 * verifyAudit() rate (over several connections, and on one for comparison) and memory, export of
 * one chain, pruning one day of 30 while operations go on.
 */
import type { SecretsManager } from '../../src/index.js';
import type { BenchContext } from '../context.js';
import { figure, fmt, log, TARGETS } from '../figures.js';
import { heapAfter, mb, percentile, sampled } from '../load.js';
import { serverCpuDuring } from '../server-cpu.js';
import { DAY_MS, DAYS, generateTrail, relationBytes } from '../trail.js';

const LONG_CHAINS = 10;

export async function auditTrails(ctx: BenchContext, value: string): Promise<void> {
  for (const shape of ['long', 'short'] as const) await trail(ctx, shape, value);
}

async function trail(ctx: BenchContext, shape: 'long' | 'short', value: string): Promise<void> {
  const { pool, sizes } = ctx;
  const T = `${ctx.prefix}_${shape}`;
  const chains = shape === 'long' ? LONG_CHAINS : sizes.shortChains;
  const perDay = Math.floor(sizes.trailRecords / DAYS);
  log(`\n[audit] a trail of ${sizes.trailRecords} records over ${DAYS} sealing days on ${chains} chains`);
  const m = ctx.newManager(T);
  await m.migrate();
  const chainExpr =
    shape === 'long'
      ? `'long-' || (i % ${LONG_CHAINS})`
      : `'short-' || lpad((i % ${sizes.shortChains})::text, 6, '0')`;
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

  // The first verification signs a checkpoint at the end of every chain; the next ones check them,
  // side by side (the default), on one connection (the walk before ranges were verified side by side),
  // and side by side again: A B A, so that drift in the machine's load hits both.
  const timed = async (options: Parameters<SecretsManager['verifyAudit']>[0]) => {
    const t0 = performance.now();
    const { result: s, cpuSeconds } = await serverCpuDuring(pool, () =>
      sampled(() => m.verifyAudit(options)),
    );
    return { ...s, seconds: (performance.now() - t0) / 1000, cpuSeconds };
  };
  const first = await timed({ heads: false });
  const again1 = await timed({ heads: false, checkpoint: false });
  const single = await timed({ heads: false, checkpoint: false, parallel: 1 });
  const again2 = await timed({ heads: false, checkpoint: false });
  for (const r of [first.result, again1.result, single.result, again2.result])
    if (!r.ok) log(`    VERIFICATION FAILED: ${JSON.stringify(r.firstBad)}`);
  const again = {
    ...again1,
    result: { ...again1.result, records: (again1.result.records + again2.result.records) / 2 },
    seconds: (again1.seconds + again2.seconds) / 2,
    rssPeak: Math.max(again1.rssPeak - again1.rssStart, again2.rssPeak - again2.rssStart) + again1.rssStart,
    heapPeak:
      Math.max(again1.heapPeak - again1.heapStart, again2.heapPeak - again2.heapStart) + again1.heapStart,
  };
  figure(
    `verifyAudit, ${shape} chains, signing a checkpoint per chain`,
    first.result.records / first.seconds,
    'records/s',
    TARGETS.verifyRecordsPerSecond,
    `${first.result.records} records of ${first.result.chains} chains in ${fmt(first.seconds)} s, ok=${first.result.ok}${first.cpuSeconds ? `; ${fmt(first.result.records / first.cpuSeconds)} records per server CPU-second` : ''}`,
  );
  figure(
    `verifyAudit, ${shape} chains, checking ${again.result.checkpoints} checkpoints`,
    again.result.records / again.seconds,
    'records/s',
    TARGETS.verifyRecordsPerSecond,
    `${again.result.records} records in ${fmt(again.seconds)} s (mean of two runs around the one below), ok=${again1.result.ok && again2.result.ok}${again1.cpuSeconds && again2.cpuSeconds ? `; ${fmt((2 * again.result.records) / (again1.cpuSeconds + again2.cpuSeconds))} records per server CPU-second` : ''}`,
  );
  figure(
    `verifyAudit, ${shape} chains, checking checkpoints on one connection (parallel: 1)`,
    single.result.records / single.seconds,
    'records/s',
    undefined,
    `${single.result.records} records in ${fmt(single.seconds)} s; side by side / one connection ${fmt(single.seconds / again.seconds)} x`,
  );
  // Work per record, whatever else runs on the machine: records per second of server CPU.
  if (again1.cpuSeconds && again2.cpuSeconds && single.cpuSeconds) {
    const parallelCpu = (again1.cpuSeconds + again2.cpuSeconds) / 2;
    figure(
      `verifyAudit, ${shape} chains: records per server CPU-second, one connection`,
      single.result.records / single.cpuSeconds,
      'records/s',
      undefined,
      `side by side: ${fmt(again.result.records / parallelCpu)} records per CPU-second; server CPU ${fmt(single.cpuSeconds)} s vs ${fmt(parallelCpu)} s (from /proc, the server's processes)`,
    );
  }
  figure(
    `verifyAudit memory, ${shape} chains: peak RSS growth`,
    mb(Math.max(first.rssPeak - first.rssStart, again.rssPeak - again.rssStart)),
    'MB',
    TARGETS.verifyRssMb,
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
    let cpuSeconds: number | undefined;
    try {
      // Server CPU meanwhile: the prune's, and the gets' (every server process is counted).
      ({ result: pruned, cpuSeconds } = await serverCpuDuring(pool, () =>
        m.pruneAudit({
          olderThan: new Date(gen.firstDay.getTime() + DAY_MS),
          verifyFirst: false,
        }),
      ));
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
      TARGETS.pruneSeconds,
      `${pruned ? `${pruned.records} records of ${pruned.chains} chains` : `FAILED after ${fmt(seconds)} s: ${String((failure as Error)?.message ?? failure)}`}; gets meanwhile: ${lat.length}, p99 ${fmt(percentile(lat, 99))} ms, slowest ${fmt(lat.at(-1) ?? 0)} ms${cpuSeconds === undefined ? '' : `; server CPU ${fmt(cpuSeconds)} s`}`,
    );
    const check = await m.verifyAudit({
      tenantId: shape === 'long' ? 'long-3' : 'short-000042',
      checkpoint: false,
    });
    if (!check.ok) log(`    VERIFICATION AFTER PRUNE FAILED: ${JSON.stringify(check.firstBad)}`);
  }
  await ctx.dropSchema(T);
}
