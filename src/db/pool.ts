import pg from 'pg';
import type { PoolLike } from './queryable.js';

export interface OwnedPoolOptions {
  connectionString: string;
  max?: number;
  connectionTimeoutMillis?: number;
}

/**
 * Keeps bind parameters (tenant KEKs and plaintext values travel as parameters) out of the server
 * log when the role is allowed to change that setting (superusers; PostgreSQL 15+ `GRANT SET`).
 * Others get the check in `status()` and the advice in docs/security-model.md.
 */
const QUIET_PARAMETERS_SQL = `DO $$BEGIN
  PERFORM pg_catalog.set_config('log_parameter_max_length', '0', false);
EXCEPTION WHEN insufficient_privilege OR undefined_object OR invalid_parameter_value THEN NULL;
END$$`;

/** A pool owned (and closed) by tenant-secrets. */
export function createOwnedPool(options: OwnedPoolOptions): PoolLike & pg.Pool {
  const pool = new pg.Pool({
    connectionString: options.connectionString,
    max: options.max ?? 10,
    connectionTimeoutMillis: options.connectionTimeoutMillis ?? 10_000,
    idleTimeoutMillis: 30_000,
    // Scripts (the seed's `node -e` commands) must exit when done, not wait for idle clients to time out.
    allowExitOnIdle: true,
    application_name: 'tenant-secrets',
    // Awaited by pg-pool before the client is handed out, so it never races the first query.
    onConnect: async (client: pg.ClientBase) => {
      await client.query(QUIET_PARAMETERS_SQL).catch(() => undefined);
    },
  });
  // An idle client losing its connection must not crash the process; the next query reports it.
  pool.on('error', () => undefined);
  return pool;
}
