/**
 * Load: client loops (`run`), A/B comparisons interleaved round by round (`compare`), and memory
 * sampling. Every phase's throughput and latencies are kept in `phases` for the report.
 */
import { fmt, log } from './figures.js';

export interface Phase {
  name: string;
  clients: number;
  ops: number;
  seconds: number;
  perSecond: number;
  p50: number;
  p99: number;
  max: number;
}

export const phases: Phase[] = [];

/** Seconds per phase and rounds per side of a comparison (set once by run.ts). */
export const loadSettings = { seconds: 5, rounds: 2 };

export type Op = (worker: number, i: number) => Promise<unknown>;

export function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? 0;
}

/** Runs `op(worker, i)` on `clients` workers for `seconds` (after one warm-up call each). */
export async function run(name: string, clients: number, seconds: number, op: Op): Promise<Phase> {
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

export function merge(parts: Phase[]): Phase {
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

/** A vs B, interleaved `rounds` times (A B A B), so drift and outside load hit both; returns A/B throughput. */
export async function compare(
  label: string,
  clients: number,
  a: { name: string; op: Op },
  b: { name: string; op: Op },
): Promise<{ a: Phase; b: Phase; ratio: number }> {
  const pa: Phase[] = [];
  const pb: Phase[] = [];
  for (let r = 0; r < loadSettings.rounds; r++) {
    pa.push(await run(a.name, clients, loadSettings.seconds, a.op));
    pb.push(await run(b.name, clients, loadSettings.seconds, b.op));
  }
  const ma = merge(pa);
  const mb = merge(pb);
  phases.push(ma, mb);
  log(
    `  ${label}: ${ma.name} ${fmt(ma.perSecond)}/s vs ${mb.name} ${fmt(mb.perSecond)}/s (${clients} clients)`,
  );
  return { a: ma, b: mb, ratio: ma.perSecond / mb.perSecond };
}

export const mb = (bytes: number) => bytes / 1024 / 1024;
export const gc = (globalThis as { gc?: () => void }).gc;
export const heapAfter = () => {
  gc?.();
  return process.memoryUsage().heapUsed;
};

/** Samples RSS and heap every 25 ms while `work` runs; returns the peak growth over the start. */
export async function sampled<T>(
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
