import pg from 'pg';
import { parseConnectionTarget } from './connection-string.js';
import { createTargetedPool } from './host-selection.js';
import type { PoolLike } from './queryable.js';
import { watchConnection } from './watch.js';

export interface OwnedPoolOptions {
  connectionString: string;
  max?: number;
  connectionTimeoutMillis?: number;
}

export interface ConnectionTarget {
  user?: string | undefined;
  database?: string | undefined;
}

const nonEmpty = (s: string | undefined) => (s === undefined || s === '' ? undefined : s);

function fromUrl(connectionString: unknown): ConnectionTarget {
  if (typeof connectionString !== 'string' || !/^postgres(ql)?:\/\//i.test(connectionString)) return {};
  try {
    const url = new URL(connectionString);
    return {
      user: nonEmpty(decodeURIComponent(url.username)),
      database: nonEmpty(decodeURIComponent(url.pathname.slice(1))),
    };
  } catch {
    return {};
  }
}

/**
 * The role and database a node-postgres pool (or client) connects as, resolved the way node-postgres
 * does: the connection string first, then `user` / `database`, then PGUSER / PGDATABASE, then the
 * operating-system user (and a database named after the role). Empty for other drivers.
 */
export function connectionTarget(poolOrClient: unknown): ConnectionTarget {
  const p = poolOrClient as {
    options?: { connectionString?: unknown; user?: unknown; database?: unknown };
    user?: unknown;
    database?: unknown;
  } | null;
  if (typeof p?.user === 'string' || typeof p?.database === 'string') {
    // A node-postgres client has resolved them already.
    return {
      user: typeof p.user === 'string' ? p.user : undefined,
      database: typeof p.database === 'string' ? p.database : undefined,
    };
  }
  const options = p?.options;
  if (typeof options !== 'object' || options === null) return {};
  const url = fromUrl(options.connectionString);
  const user =
    url.user ??
    (typeof options.user === 'string' ? nonEmpty(options.user) : undefined) ??
    nonEmpty(process.env.PGUSER) ??
    nonEmpty(pg.defaults.user ?? undefined);
  const database =
    url.database ??
    (typeof options.database === 'string' ? nonEmpty(options.database) : undefined) ??
    nonEmpty(process.env.PGDATABASE) ??
    user;
  return { user, database };
}

/** A node-postgres client watched from its construction, so even its connection attempt has a listener. */
export class WatchedClient extends pg.Client {
  constructor(config?: string | pg.ClientConfig) {
    super(config);
    watchConnection(this);
  }
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
    Client: WatchedClient as unknown as new () => pg.ClientBase,
  });
  // An idle client losing its connection must not crash the process; the next query reports it.
  pool.on('error', () => undefined);
  return pool;
}
