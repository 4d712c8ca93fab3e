import { existsSync, rmSync } from 'node:fs';
import { DatabaseUnavailableError } from '../../base/errors.js';
import {
  type Credentials,
  clearHalfMade,
  dirState,
  foreignDirectory,
  initialise,
  isOurs,
  readCredentials,
  urlFor,
} from './cluster.js';
import type { PostgresIds } from './data-dir.js';
import { type Paths, readJson, writeAtomically } from './files.js';
import { isAlive, type ProcessId, parseProcessId, SELF, sameProcess } from './processes.js';
import type { Binaries } from './programs.js';
import { canConnect, runningServer, startServer, stopServer, waitUntilReady } from './server.js';

/**
 * One server per data directory, shared by the commands that run at the same time: `<dir>.owners.json`
 * lists them (pid and start time). The first starts the server, the last one out stops it; a server
 * whose owners are all gone (killed commands) is taken over by the next command. Every function here
 * runs holding the lock (lock.ts).
 */

/** What a command needs to join or leave the server of one data directory. */
export interface Cluster {
  bins: Binaries;
  paths: Paths;
  ids: PostgresIds | undefined;
  /** false: a throwaway cluster (the demo), without durability, deleted when its server stops. */
  persistent: boolean;
  notify: (line: string) => void;
}

export interface Joined {
  url: string;
  initMs: number;
  startMs: number;
  origin: 'started' | 'shared' | 'taken-over';
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

/** Leaves the server: the last command out stops it (and deletes a throwaway cluster). */
export async function leaveServer({ bins, paths, ids, persistent }: Cluster): Promise<void> {
  const others = readOwners(paths).filter((owner) => !sameProcess(owner, SELF) && isAlive(owner));
  if (others.length > 0) {
    writeOwners(paths, others); // still in use by them
    return;
  }
  const server = runningServer(paths.dir);
  if (server) await stopServer(bins, paths, server, ids);
  writeOwners(paths, []);
  if (!persistent) rmSync(paths.dir, { recursive: true, force: true });
}

/**
 * Joins the running server (another live command's, or one left by commands that are gone), or
 * starts it, running initdb first on an empty directory and again after an interrupted first start.
 */
export async function joinServer(cluster: Cluster): Promise<Joined> {
  const { bins, paths, ids, notify } = cluster;
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
      return { url, initMs: 0, startMs: 0, origin: owners.length > 0 ? 'shared' : 'taken-over' };
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
  const port = await startServer(bins, paths, ids, cluster.persistent);
  const startMs = performance.now() - t1;
  writeOwners(paths, [SELF]);
  return { url: urlFor(credentials, port), initMs, startMs, origin: 'started' };
}
