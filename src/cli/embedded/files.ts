import { chmodSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';

/** The files of one embedded PostgreSQL: its data directory and what tenant-secrets keeps beside and in it. */
export interface Paths {
  /** The data directory. */
  dir: string;
  /** `<dir>.lock`: held while a command initialises, starts, joins, leaves or stops the server. */
  lock: string;
  /** `<dir>.owners.json`: the commands using the server. */
  owners: string;
  /** `<dir>.init.json`: present from before initdb until the cluster and its credentials are complete. */
  init: string;
  /** In the data directory: the server's password, written once the cluster is complete. */
  credentials: string;
  /** In the data directory: PostgreSQL's own log. */
  log: string;
}

export const CREDENTIALS_FILE = 'tenant-secrets-embedded.json';
const SERVER_LOG = 'tenant-secrets-server.log';

export function pathsOf(dir: string): Paths {
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

/** The JSON in `path`, or undefined when it is missing or not JSON. */
export function readJson(path: string): unknown {
  try {
    return JSON.parse(readFileSync(path, 'utf8'));
  } catch {
    return undefined;
  }
}

/** Writes a file whole or not at all (a killed process leaves the old content or the new). */
export function writeAtomically(path: string, text: string): void {
  const temporary = `${path}.${process.pid}.tmp`;
  writeFileSync(temporary, text, { mode: 0o600 });
  chmodSync(temporary, 0o600);
  renameSync(temporary, path);
}
