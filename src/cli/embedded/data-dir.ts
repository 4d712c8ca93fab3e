import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chownSync, existsSync, mkdirSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { ConfigurationError } from '../../base/errors.js';
import { errorCode } from './processes.js';

/** The user and group PostgreSQL runs as when the CLI runs as root. */
export interface PostgresIds {
  uid: number;
  gid: number;
}

export const isRoot = (): boolean => typeof process.getuid === 'function' && process.getuid() === 0;

/** The `postgres` user's ids, creating the user (and its group) when missing: PostgreSQL refuses to run as root. */
export function postgresIds(): PostgresIds {
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
export function makeDirectories(dir: string, ids?: PostgresIds): void {
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
