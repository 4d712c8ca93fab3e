import { type AuditContext, mergeContext, toSqlContext } from './audit/context.js';
import { toTenantSecretsError } from './db/errors.js';
import type { PoolLike } from './db/queryable.js';
import type { Keyring } from './keys/keyring.js';

/** Tunables with production defaults (see docs/configuration.md). */
export interface Settings {
  /** Versions kept per secret; older ones are destroyed (default 10, as HashiCorp Vault KV v2). */
  readonly maxVersions: number;
  /** How long the version replaced by a write stays readable as `previous` (default 86400 s). */
  readonly previousVersionGraceSeconds: number;
  /** How long a deleted secret can be restored before it is purged (default 30 days, as AWS). */
  readonly recoveryWindowDays: number;
}

/**
 * What every operation module needs: the pool, the schema, the keyring, settings and the audit
 * context. Modules (secrets, lifecycle, keys, audit) are functions of a core, composed in manager.ts.
 */
export interface Core {
  readonly pool: PoolLike;
  /** Unquoted schema name. */
  readonly schema: string;
  /** Quoted schema name, for SQL text. */
  readonly qs: string;
  readonly keyring: Keyring;
  readonly settings: Settings;
  readonly context: AuditContext;
  /** The audit context as the SQL functions take it, merged with a per-call context. */
  sqlContext(extra?: AuditContext): Record<string, string>;
  /** Runs one statement; driver errors become typed errors without the driver's text. */
  query<R>(operation: string, sql: string, params?: unknown[]): Promise<R[]>;
  /** The same core with another audit context. */
  withContext(context: AuditContext): Core;
}

export function createCore(base: Omit<Core, 'sqlContext' | 'query' | 'withContext'>): Core {
  const core: Core = {
    ...base,
    sqlContext: (extra) => toSqlContext(mergeContext(base.context, extra)),
    async query<R>(operation: string, sql: string, params: unknown[] = []): Promise<R[]> {
      try {
        const result = await base.pool.query<R>(sql, params);
        return result.rows;
      } catch (error) {
        throw toTenantSecretsError(error, operation);
      }
    },
    withContext: (context) => createCore({ ...base, context: mergeContext(base.context, context) }),
  };
  return core;
}
