import type pg from 'pg';
import { parseConnectionTarget } from './connection-string.js';
import { createTargetedPool } from './host-selection.js';
import type { PoolLike } from './queryable.js';

export interface OwnedPoolOptions {
  connectionString: string;
  max?: number;
  connectionTimeoutMillis?: number;
}

/**
 * A pool owned (and closed) by tenant-secrets. It keeps no session state: every call's log
 * suppression is transaction-local (see executor.ts), so it is safe behind PgBouncer or Supavisor
 * in transaction mode. A connection string may list several hosts with `target_session_attrs`, as
 * libpq reads it (host-selection.ts): each new connection then goes to the host that fits.
 * @throws {ConfigurationError} a malformed host list, port or `target_session_attrs`.
 */
export function createOwnedPool(options: OwnedPoolOptions): PoolLike & pg.Pool {
  const pool = createTargetedPool(parseConnectionTarget(options.connectionString), {
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
