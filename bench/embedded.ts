import { mkdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from '../src/cli/free-port.js';
import { importEmbeddedPostgres } from '../test/support/embedded-postgres.js';

export interface EmbeddedOptions {
  /**
   * Production durability (default true): fsync and synchronous_commit on, as PostgreSQL ships.
   * false turns both off (the bench labels such a run NOT DURABLE).
   */
  durable?: boolean;
  /** Preload pg_stat_statements (per-statement cost breakdowns; adds a little overhead to every statement). */
  statements?: boolean;
}

/** Starts a throw-away embedded PostgreSQL for the bench, with PostgreSQL's default durability. */
export async function startEmbeddedPostgres(
  options: EmbeddedOptions = {},
): Promise<{ url: string; stop: () => Promise<void> }> {
  const EmbeddedPostgres = await importEmbeddedPostgres();
  const port = await freePort();
  const base = join(tmpdir(), `tenant-secrets-bench-${process.pid}-${Date.now()}`);
  mkdirSync(base, { recursive: true });
  const durable = options.durable !== false;
  const flags = ['-c', 'max_connections=200', '-c', `fsync=${durable ? 'on' : 'off'}`];
  if (!durable) flags.push('-c', 'synchronous_commit=off');
  if (options.statements) {
    flags.push('-c', 'shared_preload_libraries=pg_stat_statements', '-c', 'pg_stat_statements.track=all');
  }
  const pg = new EmbeddedPostgres({
    databaseDir: join(base, 'data'),
    port,
    user: 'postgres',
    password: 'postgres',
    persistent: false,
    createPostgresUser: true,
    postgresFlags: flags,
    onLog: () => undefined,
    onError: () => undefined,
  });
  await pg.initialise();
  await pg.start();
  return {
    url: `postgres://postgres:postgres@127.0.0.1:${port}/postgres`,
    stop: async () => {
      await pg.stop();
      rmSync(base, { recursive: true, force: true });
    },
  };
}
