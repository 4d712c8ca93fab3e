/**
 * CPU time the database server's processes used, read from /proc when the server runs on this
 * machine (the embedded server, or BENCH_DATABASE_URL on localhost): a figure of work done that
 * other load on a shared machine does not change, unlike throughput. undefined when /proc does not
 * show the server's processes.
 */
import { readFileSync } from 'node:fs';
import type pg from 'pg';

/** Clock ticks per second of /proc/<pid>/stat (USER_HZ: 100 on Linux). */
const TICKS = 100;

function ticksOf(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the command (which may contain spaces): state is field 3; utime 14, stime 15.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return Number(fields[11]) + Number(fields[12]);
  } catch {
    return undefined;
  }
}

/** Ticks per server process (every backend and background process pg_stat_activity lists). */
export async function serverTicks(pool: pg.Pool): Promise<Map<number, number> | undefined> {
  const pids = (await pool.query('SELECT pid FROM pg_stat_activity')).rows.map((r) => Number(r.pid));
  const out = new Map<number, number>();
  for (const pid of pids) {
    const t = ticksOf(pid);
    if (t !== undefined) out.set(pid, t);
  }
  return out.size > 0 ? out : undefined;
}

/**
 * Server CPU seconds spent while `work` ran: by the processes seen at the end, counted from what they
 * had at the start (0 for processes started meanwhile). Processes that ended meanwhile are missed.
 */
export async function serverCpuDuring<T>(
  pool: pg.Pool,
  work: () => Promise<T>,
): Promise<{ result: T; cpuSeconds?: number }> {
  const before = await serverTicks(pool);
  const result = await work();
  const after = await serverTicks(pool);
  if (!before || !after) return { result };
  let ticks = 0;
  for (const [pid, t] of after) ticks += t - (before.get(pid) ?? 0);
  return { result, cpuSeconds: ticks / TICKS };
}
