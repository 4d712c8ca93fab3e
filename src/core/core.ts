import { type AuditContext, mergeContext, toSqlContext } from '../base/audit-context.js';
import type { Telemetry } from '../base/telemetry.js';
import type { DataKeys } from '../crypto/data-keys.js';
import type { Keyring } from '../crypto/keyring.js';
import type { CallBatches } from '../db/call-batches.js';
import type { SqlExecutor, TxQuery } from '../db/executor.js';
import type { BatchedRead, BatchedWrite, FetchRow, PutRow } from './rows.js';

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
 * What every operation module needs: how to run SQL, the schema, the keyring, settings and the audit
 * context. Modules (secrets, lifecycle, keys, audit) are functions of a core, composed in manager.ts.
 */
export interface Core {
  readonly executor: SqlExecutor;
  /** Unquoted schema name. */
  readonly schema: string;
  /** Quoted schema name, for SQL text. */
  readonly qs: string;
  readonly keyring: Keyring;
  /** Unwrapped data keys of this manager (shared by its contexts and transactions). */
  readonly dataKeys: DataKeys;
  readonly settings: Settings;
  /** The manager's reads of current versions, sent together when more arrive than run at once. */
  readonly reads?: CallBatches<BatchedRead, FetchRow | undefined> | undefined;
  /** The manager's plain writes (set, rotate), the same way. */
  readonly writes?: CallBatches<BatchedWrite, PutRow | undefined> | undefined;
  readonly context: AuditContext;
  readonly telemetry: Telemetry;
  /** Called after every call that appended audit records (the manager's sealer seals them soon). */
  readonly onAudited: () => void;
  /**
   * The same, for calls made in a caller's transaction (`inTransaction`): their records become
   * visible to the sealer only when the caller commits, which the library does not see.
   */
  readonly onAuditedInCallerTransaction?: () => void;
  /** The audit context as the SQL functions take it, merged with a per-call context. */
  sqlContext(extra?: AuditContext): Record<string, string>;
  /** Runs one statement carrying key material or values; driver errors become typed errors. */
  query<R>(operation: string, sql: string, params?: readonly unknown[]): Promise<R[]>;
  /** Runs one statement that carries no secret (status, sealing, migrations). */
  plain<R>(operation: string, sql: string, params?: readonly unknown[]): Promise<R[]>;
  /** Runs `work` in one transaction (`quiet: false` skips the log-suppression prelude: nothing secret in it). */
  transaction<T>(
    operation: string,
    work: (query: TxQuery) => Promise<T>,
    options?: { quiet?: boolean },
  ): Promise<T>;
  /** The same core with another audit context. */
  withContext(context: AuditContext): Core;
  /** The same core running its SQL through another executor (a caller's transaction). */
  withExecutor(executor: SqlExecutor): Core;
}

export type CoreBase = Omit<
  Core,
  'sqlContext' | 'query' | 'plain' | 'transaction' | 'withContext' | 'withExecutor'
>;

export function createCore(base: CoreBase): Core {
  const core: Core = {
    ...base,
    sqlContext: (extra) => toSqlContext(mergeContext(base.context, extra)),
    async query<R>(operation: string, sql: string, params: readonly unknown[] = []): Promise<R[]> {
      const rows = await base.executor.query<R>(operation, sql, params);
      base.onAudited();
      return rows;
    },
    plain: (operation, sql, params = []) => base.executor.plain(operation, sql, params),
    async transaction<T>(
      operation: string,
      work: (query: TxQuery) => Promise<T>,
      options?: { quiet?: boolean },
    ): Promise<T> {
      const result = await base.executor.transaction(operation, work, options);
      base.onAudited();
      return result;
    },
    withContext: (context) => createCore({ ...base, context: mergeContext(base.context, context) }),
    withExecutor: (executor) =>
      createCore({ ...base, executor, onAudited: base.onAuditedInCallerTransaction ?? base.onAudited }),
  };
  return core;
}
