import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import {
  accessSync,
  chmodSync,
  chownSync,
  constants,
  mkdtempSync,
  readFileSync,
  writeFileSync,
} from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { freePort } from '../../src/cli/free-port.js';

/**
 * A PgBouncer in transaction pooling mode, started (and stopped) by the test setup in front of the
 * suite's PostgreSQL, as production deployments put PgBouncer or Supavisor in front of theirs.
 *
 * - Its files (ini, auth file, log) live in a temporary directory of their own, kept after a failed run.
 * - PgBouncer refuses to run as root: when the suite runs as root, it runs as the `postgres` user.
 * - Clients authenticate with SCRAM. The server's superuser is in the auth file with its plain password
 *   (PgBouncer needs it to log in to a SCRAM server; against a `trust` server, where the URL has no
 *   password, a generated one is used between the tests and PgBouncer only). Every other role (the
 *   tests create login roles) is looked up with `auth_query` as that superuser, so their SCRAM secrets
 *   come from the server and PgBouncer passes the client's proof through.
 * - `[databases] * = …` routes every database name to the server, so each test file's fresh database
 *   is reachable through the pooler without reconfiguring it.
 */
export interface PgBouncerOptions {
  /** Direct URL of the server's superuser (any database). */
  serverUrl: string;
  /** Server connections per (database, user) pair: small, so that pooling really multiplexes. */
  poolSize?: number;
  /**
   * Server connections per user across all databases (default twice `poolSize`). Each test file has a
   * database, so a pool, of its own: without this cap their idle server connections would add up to
   * more than a server's max_connections (100 on Debian's PostgreSQL); at the cap PgBouncer closes the
   * longest-idle one of another pool.
   */
  maxUserConnections?: number;
}

export interface PgBouncer {
  /** The superuser's URL through PgBouncer, database `postgres`; swap the path for another database. */
  url: string;
  /** The admin console (`SHOW POOLS`, `SHOW STATS`, …): database `pgbouncer`, same credentials. */
  consoleUrl: string;
  port: number;
  poolSize: number;
  /** Directory holding pgbouncer.ini, userlist.txt and pgbouncer.log. */
  dir: string;
  logFile: string;
  stop(): Promise<void>;
}

/** Set by support/pgbouncer-reporter.ts when every test passed, so the PgBouncer files can go. */
export const RUN_PASSED_ENV = 'TENANT_SECRETS_TEST_RUN_PASSED';

/**
 * $1 = pgbouncer, $2 = its ini. Exits with PgBouncer's status when PgBouncer exits on its own (so a
 * start-up failure is seen), and stops it when standard input reaches its end. (A background job's
 * standard input is /dev/null unless redirected, hence descriptor 3.)
 */
const WATCHDOG = `exec 3<&0
"$1" "$2" </dev/null &
pid=$!
{ cat >/dev/null; kill -TERM "$pid" 2>/dev/null; } <&3 &
exec 3<&-
wait "$pid"`;

const quote = (s: string) => `"${s.replaceAll('"', '""')}"`;

/** `pgbouncer` on PATH, else Debian's /usr/sbin/pgbouncer (not on a normal user's PATH), or PGBOUNCER_BIN. */
export function pgbouncerBinary(): string {
  const candidates = [
    process.env.PGBOUNCER_BIN,
    ...(process.env.PATH ?? '').split(delimiter).map((d) => join(d, 'pgbouncer')),
    '/usr/sbin/pgbouncer',
  ];
  for (const candidate of candidates) {
    if (!candidate) continue;
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {}
  }
  throw new Error('TEST_VIA_PGBOUNCER=1 but pgbouncer is not installed (apt-get install -y pgbouncer)');
}

/** The uid/gid PgBouncer runs as: the current user, or `postgres` when the suite runs as root. */
function runAs(): { uid: number; gid: number } | undefined {
  if (process.getuid?.() !== 0) return undefined;
  try {
    const uid = Number(execFileSync('id', ['-u', 'postgres'], { encoding: 'utf8' }).trim());
    const gid = Number(execFileSync('id', ['-g', 'postgres'], { encoding: 'utf8' }).trim());
    return { uid, gid };
  } catch {
    throw new Error('PgBouncer refuses to run as root and there is no `postgres` user to run it as');
  }
}

function waitForPort(port: number, child: ChildProcess, logFile: string): Promise<void> {
  const deadline = Date.now() + 15_000;
  return new Promise((resolve, reject) => {
    const attempt = () => {
      if (child.exitCode !== null || child.signalCode !== null) {
        reject(
          new Error(`pgbouncer exited at start-up (${child.exitCode ?? child.signalCode}); log: ${logFile}`),
        );
        return;
      }
      const socket = connect(port, '127.0.0.1');
      socket.once('connect', () => {
        socket.destroy();
        resolve();
      });
      socket.once('error', () => {
        socket.destroy();
        if (Date.now() > deadline) reject(new Error(`pgbouncer did not listen on ${port}; log: ${logFile}`));
        else setTimeout(attempt, 50);
      });
    };
    attempt();
  });
}

export async function startPgBouncer(options: PgBouncerOptions): Promise<PgBouncer> {
  const binary = pgbouncerBinary();
  const server = new URL(options.serverUrl);
  const user = decodeURIComponent(server.username || 'postgres');
  // Between the tests and PgBouncer a password is always used (SCRAM); a trust server ignores it.
  const password = decodeURIComponent(server.password) || 'pgbouncer-test';
  const poolSize = options.poolSize ?? 20;
  const maxUserConnections = options.maxUserConnections ?? 2 * poolSize;
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'tenant-secrets-pgbouncer-'));
  const logFile = join(dir, 'pgbouncer.log');
  const authFile = join(dir, 'userlist.txt');
  const iniFile = join(dir, 'pgbouncer.ini');

  writeFileSync(authFile, `${quote(user)} ${quote(password)}\n`, { mode: 0o600 });
  writeFileSync(logFile, '', { mode: 0o600 });
  writeFileSync(
    iniFile,
    `[databases]
* = host=${server.hostname} port=${server.port || '5432'}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = ${port}
unix_socket_dir =
logfile = ${logFile}
auth_type = scram-sha-256
auth_file = ${authFile}
auth_user = ${user}
auth_query = SELECT usename, passwd FROM pg_shadow WHERE usename = $1
admin_users = ${user}
stats_users = ${user}
pool_mode = transaction
max_client_conn = 1000
default_pool_size = ${poolSize}
min_pool_size = 0
reserve_pool_size = 0
max_user_connections = ${maxUserConnections}
server_idle_timeout = 30
ignore_startup_parameters = extra_float_digits,options
; a client waiting for a server connection gets an error after a minute instead of hanging the suite
query_wait_timeout = 60
log_connections = 0
log_disconnections = 0
`,
    { mode: 0o600 },
  );

  const owner = runAs();
  if (owner) {
    for (const file of [dir, authFile, logFile, iniFile]) chownSync(file, owner.uid, owner.gid);
    chmodSync(dir, 0o700);
  }

  // PgBouncer runs under a small shell that stops it when its standard input closes: when stop() closes
  // it, and equally when the test run dies without cleaning up (SIGKILL included), so none is left behind.
  const child = spawn('/bin/sh', ['-c', WATCHDOG, 'pgbouncer-watchdog', binary, iniFile], {
    cwd: dir,
    stdio: ['pipe', 'ignore', 'pipe'],
    // Its own process group, so a last-resort SIGKILL reaches the shell, PgBouncer and `cat` alike.
    detached: true,
    ...(owner ?? {}),
  });
  let stderr = '';
  child.stderr?.setEncoding('utf8').on('data', (d: string) => {
    stderr += d;
  });
  const killGroup = () => {
    try {
      if (child.pid) process.kill(-child.pid, 'SIGKILL');
    } catch {}
  };
  process.once('exit', killGroup);

  try {
    await waitForPort(port, child, logFile);
  } catch (error) {
    killGroup();
    process.removeListener('exit', killGroup);
    const log = readLog(logFile);
    throw new Error(`${(error as Error).message}\n${stderr}${log}`);
  }

  const url = new URL(options.serverUrl);
  url.hostname = '127.0.0.1';
  url.port = String(port);
  url.username = encodeURIComponent(user);
  url.password = encodeURIComponent(password);
  url.pathname = '/postgres';
  const consoleUrl = new URL(url);
  consoleUrl.pathname = '/pgbouncer';

  return {
    url: url.toString(),
    consoleUrl: consoleUrl.toString(),
    port,
    poolSize,
    dir,
    logFile,
    stop: async () => {
      process.removeListener('exit', killGroup);
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
      // End of input: the shell sends PgBouncer SIGTERM (immediate shutdown) and waits for it.
      child.stdin?.end();
      const timer = setTimeout(killGroup, 5_000);
      await exited;
      clearTimeout(timer);
    },
  };
}

function readLog(logFile: string): string {
  try {
    return readFileSync(logFile, 'utf8');
  } catch {
    return '';
  }
}
