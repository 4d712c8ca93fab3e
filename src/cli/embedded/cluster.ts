import { randomBytes } from 'node:crypto';
import { chownSync, existsSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { ConfigurationError } from '../../base/errors.js';
import { makeDirectories, type PostgresIds } from './data-dir.js';
import { CREDENTIALS_FILE, type Paths, readJson, writeAtomically } from './files.js';
import { isAlive, parseProcessId, postgresProcessesIn, SELF, startTimeOf, waitForExit } from './processes.js';
import { type Binaries, runProgram, withDetails } from './programs.js';

/**
 * The cluster in a data directory: made by initdb with a random password, which is written (to the
 * credentials file, atomically) only once initdb has succeeded. `<dir>.init.json` is written before
 * initdb starts and removed after the credentials: while it exists, whatever is in the directory is
 * an unfinished first start of ours, and is cleared and redone.
 */

export interface Credentials {
  password: string;
}

/** `ready`: a complete cluster of ours; `empty`: nothing yet; `half-made`: an interrupted first start. */
type DirState = 'ready' | 'empty' | 'half-made';

/** Whether tenant-secrets made this directory (complete: credentials; unfinished: the init marker). */
export function isOurs(paths: Paths): boolean {
  return existsSync(paths.credentials) || existsSync(paths.init);
}

export function foreignDirectory(paths: Paths): ConfigurationError {
  return new ConfigurationError(
    `${paths.dir} holds a PostgreSQL data directory that tenant-secrets did not create (it has no ${CREDENTIALS_FILE}): choose another TENANT_SECRETS_DATA_DIR; if it was left by an interrupted first start of an older tenant-secrets and holds nothing you need, delete it`,
  );
}

export function dirState(paths: Paths): DirState {
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
export async function clearHalfMade(paths: Paths): Promise<void> {
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
export async function initialise(
  bins: Binaries,
  paths: Paths,
  ids: PostgresIds | undefined,
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

export function readCredentials(paths: Paths): Credentials {
  const data = readJson(paths.credentials) as Partial<Credentials> | undefined;
  if (typeof data?.password !== 'string') {
    throw new ConfigurationError(
      `${paths.credentials} is unreadable; choose another TENANT_SECRETS_DATA_DIR`,
    );
  }
  return { password: data.password };
}

/** The connection string of the cluster's server on `port` (127.0.0.1 only). */
export function urlFor(credentials: Credentials, port: number): string {
  return `postgres://postgres:${encodeURIComponent(credentials.password)}@127.0.0.1:${port}/postgres`;
}
