import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { afterAll, inject, onTestFinished } from 'vitest';
import { getCurrentTest } from 'vitest/suite';
import { createSecretsManager, type SecretsManager, type SecretsManagerOptions } from '../../src/index.js';
import { dropCitusDatabase, prepareCitusDatabase } from './citus.js';

/**
 * TEST_STAGE=citus: every database a Citus database on the cluster, installed distributed. A test of
 * something documented as different distributed (docs/scaling.md) asserts that difference under it.
 */
export const CITUS_STAGE = process.env.TEST_STAGE === 'citus';

/**
 * Runs `cleanup` when the file ends; in the Citus stage, when the calling test ends if it was called
 * inside one. A Citus database is a database on every node with its shards (thousands of files):
 * those made inside tests are dropped as each test ends instead of piling up until the run's
 * teardown (an afterAll registered inside a test does not run).
 */
function afterScope(cleanup: () => Promise<void>): void {
  if (CITUS_STAGE && getCurrentTest()) onTestFinished(cleanup);
  else afterAll(cleanup);
}

/** The server's superuser, always direct (never through PgBouncer). */
export const adminUrl = (): string => inject('adminUrl');

/** True when the suite runs with TEST_VIA_PGBOUNCER=1: `urlFor` and `setupManager` go through PgBouncer. */
export const viaPgBouncer = (): boolean => inject('poolerUrl') !== '';

function withDatabase(base: string, database: string): string {
  const url = new URL(base);
  url.pathname = `/${database}`;
  return url.toString();
}

/** `database` on the server, direct: for administration and for checks that need one session. */
export function directUrlFor(database: string): string {
  return withDatabase(adminUrl(), database);
}

/**
 * The URL the library (and the CLI) is given for `database`: through PgBouncer in transaction
 * pooling mode when the suite runs with TEST_VIA_PGBOUNCER=1, direct otherwise.
 */
export function urlFor(database: string): string {
  return viaPgBouncer() ? withDatabase(inject('poolerUrl'), database) : directUrlFor(database);
}

/** Runs SQL as the server's superuser on `database`, always direct. */
export async function adminQuery<R extends pg.QueryResultRow = pg.QueryResultRow>(
  database: string,
  sql: string,
  params: unknown[] = [],
): Promise<R[]> {
  const client = new pg.Client({ connectionString: directUrlFor(database) });
  await client.connect();
  try {
    return (await client.query<R>(sql, params)).rows;
  } finally {
    await client.end();
  }
}

/**
 * A fresh, empty database for this test file, dropped after it. `url` is `urlFor(name)`. It is
 * labelled with this run's tag, so the global teardown drops it even when the file's own afterAll
 * did not run (a hook registered inside a test, a worker that died): a shared server keeps nothing.
 */
export async function freshDatabase(prefix = 'ts'): Promise<{ name: string; url: string }> {
  const name = `${prefix}_${randomBytes(6).toString('hex')}`;
  if (CITUS_STAGE) {
    const nodes = await prepareCitusDatabase(name, undefined, inject('runTag'));
    afterScope(() => dropCitusDatabase(name, nodes));
    return { name, url: urlFor(name) };
  }
  await adminQuery('postgres', `CREATE DATABASE ${name}`);
  await adminQuery('postgres', `COMMENT ON DATABASE ${name} IS ${pg.escapeLiteral(inject('runTag'))}`);
  afterAll(async () => {
    await adminQuery('postgres', `DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
  });
  return { name, url: urlFor(name) };
}

export const TEST_KEY = randomBytes(32).toString('base64');
export const OTHER_KEY = randomBytes(32).toString('base64');

/**
 * A connection that lives as long as the calling test: closed when the test ends, whether it passed,
 * failed or timed out. A test that timed out keeps running in the background (JavaScript cannot stop
 * it); with its own connection closed, its next query fails instead of interleaving with the next
 * test's work on a shared one. Call it inside a test, not in a hook.
 */
export async function connectForTest(url: string): Promise<pg.Client> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  onTestFinished(() => client.end().catch(() => undefined));
  return client;
}

/** A migrated database and a manager on it (closed after the file); through PgBouncer when the suite is. */
export async function setupManager(
  options: SecretsManagerOptions = {},
): Promise<{ manager: SecretsManager; db: { name: string; url: string } }> {
  const db = await freshDatabase();
  const manager = createSecretsManager({
    connectionString: db.url,
    masterKey: TEST_KEY,
    actor: 'test',
    ...options,
  });
  await manager.migrate(CITUS_STAGE ? { distribute: true } : undefined);
  afterScope(() => manager.close());
  return { manager, db };
}

/** PgBouncer's admin console (`SHOW POOLS`, `SHOW STATS`…), simple query protocol only. */
export async function pgbouncerConsole<R extends pg.QueryResultRow = pg.QueryResultRow>(
  command: string,
): Promise<R[]> {
  if (!viaPgBouncer()) throw new Error('the suite does not run through PgBouncer');
  const client = new pg.Client({ connectionString: inject('pgbouncerConsoleUrl') });
  await client.connect();
  try {
    return (await client.query<R>(command)).rows;
  } finally {
    await client.end();
  }
}
