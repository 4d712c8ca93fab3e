import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { afterAll } from 'vitest';
import { adminQuery, urlFor } from './db.js';

/**
 * Login roles for privilege tests: created on the server (roles are cluster-wide), dropped after the
 * file. Their URLs go through PgBouncer when the suite does (PgBouncer looks them up with auth_query).
 */
export async function loginRoles<const N extends readonly string[]>(
  ...names: N
): Promise<{ [K in keyof N]: string }> {
  const suffix = randomBytes(4).toString('hex');
  const roles = names.map((n) => `ts_${n}_${suffix}`);
  for (const role of roles) await adminQuery('postgres', `CREATE ROLE ${role} LOGIN PASSWORD 'pw'`);
  afterAll(async () => {
    for (const role of roles) {
      await adminQuery('postgres', `DROP OWNED BY ${role} CASCADE`).catch(() => undefined);
      await adminQuery('postgres', `DROP ROLE IF EXISTS ${role}`).catch(() => undefined);
    }
  });
  return roles as { [K in keyof N]: string };
}

/** Supabase's API roles (NOLOGIN, cluster-wide), created when missing. */
export async function supabaseRoles(): Promise<void> {
  await adminQuery(
    'postgres',
    `DO $$BEGIN
       IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'anon') THEN CREATE ROLE anon NOLOGIN; END IF;
       IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'authenticated') THEN CREATE ROLE authenticated NOLOGIN; END IF;
       IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'service_role') THEN CREATE ROLE service_role NOLOGIN; END IF;
     END$$`,
  ).catch(() => undefined); // a concurrent file may create them first
}

/** `database`'s URL for a role made by `loginRoles`. */
export function roleUrl(database: string, role: string): string {
  const url = new URL(urlFor(database));
  url.username = role;
  url.password = 'pw';
  return url.toString();
}

/** Runs `work` with a client logged in as `role` on `database` (through PgBouncer when the suite is). */
export async function asRole<T>(
  database: string,
  role: string,
  work: (client: pg.Client) => Promise<T>,
): Promise<T> {
  const client = new pg.Client({ connectionString: roleUrl(database, role) });
  await client.connect();
  try {
    return await work(client);
  } finally {
    await client.end();
  }
}

/** The SQLSTATE a query fails with, or 'ok'. */
export const sqlState = (promise: Promise<unknown>): Promise<string> =>
  promise.then(
    () => 'ok',
    (e: { code?: string }) => e.code ?? String(e),
  );
