import { readFileSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import pg from 'pg';
import { DatabaseUnavailableError } from '../../base/errors.js';
import { freePort } from '../free-port.js';
import type { PostgresIds } from './data-dir.js';
import type { Paths } from './files.js';
import { isAlive, sleep, waitForExit, worksIn } from './processes.js';
import { type Binaries, type RunResult, runProgram, withDetails } from './programs.js';

/** Starting, finding and stopping the server of a data directory (pg_ctl, postmaster.pid). */

export interface RunningServer {
  pid: number;
  port: number;
  ready: boolean;
}

/** The server running on `dir`, from its `postmaster.pid` (a stale file or a reused pid is not one). */
export function runningServer(dir: string): RunningServer | undefined {
  let lines: string[];
  try {
    lines = readFileSync(join(dir, 'postmaster.pid'), 'utf8').split('\n');
  } catch {
    return undefined;
  }
  const pid = Number(lines[0]);
  if (!Number.isInteger(pid) || pid <= 0 || !isAlive({ pid }) || !worksIn(pid, dir)) return undefined;
  return { pid, port: Number(lines[3]), ready: (lines[7] ?? '').trim() === 'ready' };
}

export async function waitUntilReady(dir: string, timeoutMs: number): Promise<RunningServer | undefined> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const server = runningServer(dir);
    if (!server || server.ready || Date.now() > deadline) return server;
    await sleep(100);
  }
}

export async function canConnect(url: string): Promise<boolean> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 15_000 });
  client.on('error', () => undefined);
  try {
    await client.connect();
    await client.query('SELECT 1');
    return true;
  } catch {
    return false;
  } finally {
    await client.end().catch(() => undefined);
  }
}

function logTail(paths: Paths): string {
  try {
    return readFileSync(paths.log, 'utf8').trim().split('\n').slice(-20).join('\n');
  } catch {
    return '';
  }
}

/** Fast shutdown (`pg_ctl stop -m fast`; SIGINT to the postmaster if that fails), waiting for the exit. */
export async function stopServer(
  bins: Binaries,
  paths: Paths,
  server: RunningServer,
  ids: PostgresIds | undefined,
): Promise<void> {
  const result = await runProgram(
    bins.pgCtl,
    ['stop', '-D', paths.dir, '-m', 'fast', '-w', '-t', '60'],
    dirname(paths.dir),
    ids,
  ).catch((error: unknown) => ({ code: null, signal: null, output: String(error) }) as RunResult);
  if (result.code === 0 && (await waitForExit({ pid: server.pid }, 60_000))) return;
  try {
    process.kill(server.pid, 'SIGINT');
  } catch {
    return; // gone
  }
  if (!(await waitForExit({ pid: server.pid }, 60_000))) {
    throw withDetails(
      new DatabaseUnavailableError(
        `could not stop the embedded PostgreSQL at ${paths.dir} (postgres pid ${server.pid}); stop it (kill ${server.pid}) and try again`,
      ),
      result.output,
    );
  }
}

/** Starts the server on a free port (`pg_ctl start -w`), its output going to a log file in the data directory. */
export async function startServer(
  bins: Binaries,
  paths: Paths,
  ids: PostgresIds | undefined,
  persistent: boolean,
): Promise<number> {
  // No server runs here: a postmaster.pid left by a crash (or naming a pid now reused) would stop PostgreSQL.
  rmSync(join(paths.dir, 'postmaster.pid'), { force: true });
  rmSync(paths.log, { force: true });
  for (let attempt = 1; ; attempt++) {
    const port = await freePort();
    const options = [
      `-p ${port}`,
      '-c listen_addresses=127.0.0.1',
      '-c unix_socket_directories=',
      // A throwaway database (the demo) does not need durability.
      ...(persistent ? [] : ['-c fsync=off', '-c synchronous_commit=off']),
    ];
    const result = await runProgram(
      bins.pgCtl,
      ['start', '-D', paths.dir, '-l', paths.log, '-w', '-t', '120', '-o', options.join(' ')],
      dirname(paths.dir),
      ids,
    );
    if (result.code === 0) return port;
    const log = logTail(paths);
    const left = runningServer(paths.dir);
    if (left) await stopServer(bins, paths, left, ids);
    if (attempt < 3 && /could not bind|already in use/i.test(log)) continue; // the port was taken meanwhile
    throw withDetails(
      new DatabaseUnavailableError(`the embedded PostgreSQL at ${paths.dir} did not start`),
      `${result.output}\n--- PostgreSQL log ---\n${log}`,
    );
  }
}
