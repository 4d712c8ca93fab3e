import { randomUUID } from 'node:crypto';
import { appendFileSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import type { TestProject } from 'vitest/node';
import { freePort } from '../../src/cli/free-port.js';
import { importEmbeddedPostgres } from './embedded-postgres.js';
import { RUN_PASSED_ENV, startPgBouncer } from './pgbouncer.js';

/**
 * Tests always run against a real PostgreSQL: TEST_DATABASE_URL when set (CI also runs the suite
 * against the machine's PostgreSQL 15), otherwise an embedded PostgreSQL started here.
 * Each test file then creates its own database on that server (support/db.ts).
 *
 * With TEST_VIA_PGBOUNCER=1, a PgBouncer in transaction pooling mode is started in front of that
 * server (support/pgbouncer.ts): the library's connections go through it, the tests' own
 * administration (CREATE/DROP DATABASE, tampering, inspection) stays direct.
 */

declare module 'vitest' {
  export interface ProvidedContext {
    /** The server's superuser, direct (never through PgBouncer). */
    adminUrl: string;
    /** The same superuser through PgBouncer (database `postgres`), or '' when the suite runs direct. */
    poolerUrl: string;
    /** PgBouncer's admin console URL, its log file and `default_pool_size` ('' / 0 when direct). */
    pgbouncerConsoleUrl: string;
    pgbouncerLog: string;
    pgbouncerPoolSize: number;
    /** A file the server's log goes to, when the suite can read it (empty string otherwise). */
    serverLog: string;
    serverKind: string;
    /** The comment every database this run creates carries (support/db.ts), for the final cleanup. */
    runTag: string;
  }
}

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const server = await startServer(project);
  if (process.env.TEST_VIA_PGBOUNCER !== '1') {
    project.provide('poolerUrl', '');
    project.provide('pgbouncerConsoleUrl', '');
    project.provide('pgbouncerLog', '');
    project.provide('pgbouncerPoolSize', 0);
    return server.stop;
  }
  let bouncer: Awaited<ReturnType<typeof startPgBouncer>>;
  try {
    bouncer = await startPgBouncer({ serverUrl: server.url, poolSize: 20 });
  } catch (error) {
    await server.stop();
    throw error;
  }
  process.env.TENANT_SECRETS_PGBOUNCER_LOG = bouncer.logFile;
  console.info(`PgBouncer (transaction pooling) on port ${bouncer.port} in front of ${server.kind} server`);
  project.provide('poolerUrl', bouncer.url);
  project.provide('pgbouncerConsoleUrl', bouncer.consoleUrl);
  project.provide('pgbouncerLog', bouncer.logFile);
  project.provide('pgbouncerPoolSize', bouncer.poolSize);
  return async () => {
    try {
      await bouncer.stop();
    } finally {
      await server.stop();
      if (process.env[RUN_PASSED_ENV] === '1') rmSync(bouncer.dir, { recursive: true, force: true });
      else console.error(`PgBouncer's log is kept: ${bouncer.logFile}`);
    }
  };
}

async function startServer(
  project: TestProject,
): Promise<{ url: string; kind: string; stop: () => Promise<void> }> {
  const external = process.env.TEST_DATABASE_URL;
  const runTag = `tenant-secrets test run ${randomUUID()}`;
  project.provide('runTag', runTag);
  if (external) {
    project.provide('adminUrl', external);
    project.provide('serverLog', process.env.TEST_SERVER_LOG ?? '');
    project.provide('serverKind', 'external');
    return {
      url: external,
      kind: 'external',
      stop: async () => {
        // On a Citus cluster (TEST_CITUS_URL), a test's database exists on every node: workers first.
        for (const worker of await citusWorkerUrls()) await dropRunDatabases(worker, runTag);
        await dropRunDatabases(external, runTag);
      },
    };
  }
  const EmbeddedPostgres = await importEmbeddedPostgres();
  const port = await freePort();
  const base = join(tmpdir(), `tenant-secrets-test-${process.pid}-${Date.now()}`);
  mkdirSync(base, { recursive: true });
  const logFile = join(base, 'server.log');
  writeFileSync(logFile, '');
  const pg = new EmbeddedPostgres({
    databaseDir: join(base, 'data'),
    port,
    user: 'postgres',
    password: 'postgres',
    persistent: false,
    createPostgresUser: true,
    // Through PgBouncer, roles looked up with auth_query log in with SCRAM pass-through, which a
    // server asking for a cleartext password (embedded-postgres's default) cannot accept.
    ...(process.env.TEST_VIA_PGBOUNCER === '1' ? { authMethod: 'scram-sha-256' as const } : {}),
    postgresFlags: ['-c', 'fsync=off', '-c', 'max_connections=200'],
    onLog: (message) => appendFileSync(logFile, message),
    onError: (message) => appendFileSync(logFile, String(message)),
  });
  await pg.initialise();
  await pg.start();
  const url = `postgres://postgres:postgres@127.0.0.1:${port}/postgres`;
  project.provide('adminUrl', url);
  project.provide('serverLog', logFile);
  project.provide('serverKind', 'embedded');
  return {
    url,
    kind: 'embedded',
    stop: async () => {
      await pg.stop();
      rmSync(base, { recursive: true, force: true });
    },
  };
}

/** The workers of the Citus cluster TEST_CITUS_URL names (their `postgres` database), if any. */
async function citusWorkerUrls(): Promise<string[]> {
  const base = process.env.TEST_CITUS_URL;
  if (!base) return [];
  const client = new pg.Client({ connectionString: base });
  await client.connect();
  try {
    const { rows } = await client.query<{ host: string; port: number }>(
      `SELECT nodename AS host, nodeport AS port FROM pg_catalog.pg_dist_node
        WHERE noderole = 'primary' AND groupid <> 0 ORDER BY groupid`,
    );
    return rows.map(({ host, port }) => {
      const url = new URL(base);
      url.hostname = host;
      url.port = String(port);
      url.pathname = '/postgres';
      return url.toString();
    });
  } finally {
    await client.end();
  }
}

/** Drops every database this run created on a server it does not own (labelled by support/db.ts). */
async function dropRunDatabases(adminUrl: string, runTag: string): Promise<void> {
  const client = new pg.Client({ connectionString: adminUrl });
  await client.connect();
  try {
    const { rows } = await client.query<{ name: string }>(
      `SELECT d.datname AS name FROM pg_database d
         JOIN pg_shdescription s ON s.objoid = d.oid AND s.classoid = 'pg_database'::regclass
        WHERE s.description = $1`,
      [runTag],
    );
    for (const { name } of rows) {
      await client.query(`DROP DATABASE IF EXISTS ${pg.escapeIdentifier(name)} WITH (FORCE)`);
    }
  } finally {
    await client.end();
  }
}
