import pg from 'pg';
import type { PoolLike } from './queryable.js';

export interface OwnedPoolOptions {
  connectionString: string;
  max?: number;
  connectionTimeoutMillis?: number;
}

/**
 * A pool owned (and closed) by tenant-secrets. It keeps no session state: every call's log
 * suppression is transaction-local (see executor.ts), so it is safe behind PgBouncer or Supavisor
 * in transaction mode.
 */
export function createOwnedPool(options: OwnedPoolOptions): PoolLike & pg.Pool {
  const pool = new pg.Pool({
    connectionString: options.connectionString,
    max: options.max ?? 10,
    connectionTimeoutMillis: options.connectionTimeoutMillis ?? 10_000,
    idleTimeoutMillis: 30_000,
    // Scripts (`node -e` one-liners) must exit when done, not wait for idle clients to time out.
    allowExitOnIdle: true,
    application_name: 'tenant-secrets',
  });
  // An idle client losing its connection must not crash the process; the next query reports it.
  pool.on('error', () => undefined);
  return pool;
}
