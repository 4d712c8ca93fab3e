import { existsSync, readdirSync, readFileSync, readlinkSync, realpathSync } from 'node:fs';

/**
 * Processes, identified beyond their pid: on Linux a pid is paired with the process's start time,
 * so a pid the kernel has handed to another process is not mistaken for the one recorded.
 */

/** A process: its pid, and (Linux) its start time in clock ticks since boot. */
export interface ProcessId {
  pid: number;
  start?: string;
}

export const sleep = (ms: number): Promise<void> =>
  new Promise((resolveSleep) => setTimeout(resolveSleep, ms));
export const errorCode = (error: unknown): string | undefined =>
  (error as NodeJS.ErrnoException | undefined)?.code;

/** Fields 3 and on of /proc/<pid>/stat (state, ppid, ...), or undefined where there is no /proc. */
function procStat(pid: number): string[] | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  } catch {
    return undefined;
  }
}

/** Start time of a process (field 22 of /proc/<pid>/stat), or undefined where there is no /proc. */
export function startTimeOf(pid: number): string | undefined {
  return procStat(pid)?.[19];
}

export const HAS_PROC = existsSync('/proc/self/stat');

/** This process. */
export const SELF: ProcessId = { pid: process.pid, start: startTimeOf(process.pid) };

export function sameProcess(a: ProcessId, b: ProcessId): boolean {
  return a.pid === b.pid && a.start === b.start;
}

/** Whether the process still runs (and is the same process, not a reused pid; a zombie has ended). */
export function isAlive(p: ProcessId): boolean {
  try {
    process.kill(p.pid, 0);
  } catch (error) {
    if (errorCode(error) !== 'EPERM') return false;
  }
  const stat = procStat(p.pid);
  if (stat === undefined) return !HAS_PROC; // gone just now; or no /proc: the pid is all there is to go by
  if (stat[0] === 'Z') return false;
  return p.start === undefined || stat[19] === p.start;
}

/** A ProcessId read back from a file, or undefined when it is not one. */
export function parseProcessId(value: unknown): ProcessId | undefined {
  const v = value as { pid?: unknown; start?: unknown } | null;
  if (typeof v?.pid !== 'number' || !Number.isInteger(v.pid) || v.pid <= 0) return undefined;
  return typeof v.start === 'string' ? { pid: v.pid, start: v.start } : { pid: v.pid };
}

/** Waits until the process has ended; false when it still runs after `timeoutMs`. */
export async function waitForExit(p: ProcessId, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (isAlive(p)) {
    if (Date.now() > deadline) return false;
    await sleep(50);
  }
  return true;
}

/** Linux: the PostgreSQL processes (initdb, postgres) whose working directory is `dir`. */
export function postgresProcessesIn(dir: string): number[] {
  let real: string;
  let entries: string[];
  try {
    real = realpathSync(dir);
    entries = readdirSync('/proc');
  } catch {
    return [];
  }
  const found: number[] = [];
  for (const entry of entries) {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue;
    try {
      if (readlinkSync(`/proc/${entry}/cwd`) !== real) continue;
      const name = readFileSync(`/proc/${entry}/comm`, 'utf8').trim();
      if (name === 'postgres' || name === 'initdb') found.push(Number(entry));
    } catch {
      // gone, or another user's
    }
  }
  return found;
}

/** Whether `pid` is a process working in `dir` (a postmaster's working directory is its data directory). */
export function worksIn(pid: number, dir: string): boolean {
  if (!HAS_PROC) return true; // no /proc: the pid is all there is to go by
  try {
    return readlinkSync(`/proc/${pid}/cwd`) === realpathSync(dir);
  } catch {
    return false; // gone, or another user's process: not our server
  }
}
