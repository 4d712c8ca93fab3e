import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { afterAll, inject } from 'vitest';
import { createSecretsManager, type SecretsManager, type SecretsManagerOptions } from '../../src/index.js';

export const adminUrl = (): string => inject('adminUrl');

export function urlFor(database: string): string {
  const url = new URL(adminUrl());
  url.pathname = `/${database}`;
  return url.toString();
}

/** Runs SQL as the server's superuser on `database`. */
export async function adminQuery<R extends pg.QueryResultRow = pg.QueryResultRow>(
  database: string,
  sql: string,
  params: unknown[] = [],
): Promise<R[]> {
  const client = new pg.Client({ connectionString: urlFor(database) });
  await client.connect();
  try {
    return (await client.query<R>(sql, params)).rows;
  } finally {
    await client.end();
  }
}

/** A fresh, empty database for this test file, dropped after it. */
export async function freshDatabase(prefix = 'ts'): Promise<{ name: string; url: string }> {
  const name = `${prefix}_${randomBytes(6).toString('hex')}`;
  await adminQuery('postgres', `CREATE DATABASE ${name}`);
  afterAll(async () => {
    await adminQuery('postgres', `DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
  });
  return { name, url: urlFor(name) };
}

export const TEST_KEY = randomBytes(32).toString('base64');
export const OTHER_KEY = randomBytes(32).toString('base64');

/** A migrated database and a manager on it (closed after the file). */
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
  await manager.migrate();
  afterAll(() => manager.close());
  return { manager, db };
}
