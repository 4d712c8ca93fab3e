import { type ErrorFacts, kindForSqlState, kindNamed } from '../base/error-table.js';
import {
  DatabaseError,
  DatabaseUnavailableError,
  type MissingGrant,
  PoolExhaustedError,
  TenantSecretsError,
} from '../base/errors.js';

const UNAVAILABLE_NODE_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ENOTFOUND',
  'EAI_AGAIN',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EPIPE',
]);

/** A PostgreSQL SQLSTATE (five digits or upper-case letters), as opposed to a Node error code. */
const SQLSTATE = /^[0-9A-Z]{5}$/;

/**
 * The functions an application role is granted by `migrate({ grantTo })`; every other public function
 * is an operator's (`grantOperatorTo`). The database's own list is `_ts_is_app_function`
 * (sql/functions/95_admin.sql); test/db/error-table.test.ts holds the two together.
 */
export const DATA_PLANE_FUNCTIONS: ReadonlySet<string> = new Set([
  'tenant_secret_write',
  'tenant_secret_read',
  'tenant_secret_read_many',
  'tenant_secret_delete',
  'tenant_secret_restore',
  'tenant_secret_rollback',
  'tenant_secret_destroy',
  'tenant_secret_destroy_versions',
  'tenant_secret_update_metadata',
  'tenant_secret_list',
  'tenant_secret_list_versions',
  'upsert_tenant_secret',
  'get_tenant_secret',
  'tenant_secret_audit_seal',
  'tenant_secret_register_master_key',
  'tenant_secret_ready',
  'tenant_secret_quiet',
  'tenant_secret_audit_cached_reads',
  'tenant_secret_fetch',
  'tenant_secret_fetch_many',
  'tenant_secret_fetch_batch',
  'tenant_secret_put',
  'tenant_secret_put_batch',
  'tenant_secret_report',
  'tenant_secret_open_transactions',
  'tenant_secret_transactions_open',
]);

/** The tenant-secrets function a library statement calls (`SELECT ... FROM "s".tenant_secret_x(...)`). */
const CALLED_FUNCTION =
  /^\s*SELECT\b[\s\S]*?(?:^|[^\w$"])"?(tenant_secret_[a-z_]+|upsert_tenant_secret|get_tenant_secret)"?\s*\(/;

/** Which grant a statement needs, from the function it calls; undefined for other statements. */
export function grantFor(
  statement: string | undefined,
): { functionName: string; grant: MissingGrant } | undefined {
  const fn = statement === undefined ? undefined : CALLED_FUNCTION.exec(statement)?.[1];
  if (fn === undefined) return undefined;
  return { functionName: fn, grant: DATA_PLANE_FUNCTIONS.has(fn) ? 'grantTo' : 'grantOperatorTo' };
}

/** What the caller knows about the failed call, to say what happened precisely. */
export interface ErrorContext {
  /** Operation name for the message (`get`, `migrate`, ...). */
  operation: string;
  /** The tenant and key the call was about, when the library knows them. */
  tenantId?: string | undefined;
  keyName?: string | undefined;
  /** Keep the server's message: only for operations whose SQL and parameters hold no secret. */
  keepServerMessage?: boolean;
  /** The request was written to the server before the failure (a write may have committed). */
  sent?: boolean;
  /** The call ran in a transaction the caller owns (`inTransaction`): nothing commits before the caller's COMMIT. */
  inCallerTransaction?: boolean;
  /** Pool facts when connecting failed: its size and how long the caller waited. */
  pool?: { max: number; total: number; timeoutMs: number };
  /** The connection's login role and database (from the connection settings; never a password). */
  target?: { user?: string | undefined; database?: string | undefined } | undefined;
  /** The statement that failed: only to tell which function (and grant) a 42501 was about; never shown. */
  statement?: string | undefined;
}

function isConnectionLoss(code: string | undefined, message: string): boolean {
  if (code && UNAVAILABLE_NODE_CODES.has(code)) return true;
  return /Connection terminated|connection error|Connection refused|server closed the connection|Client has encountered a connection error|Client was closed/i.test(
    message,
  );
}

const TLS_CODE = /^(ERR_TLS|ERR_SSL|DEPTH_ZERO|SELF_SIGNED|UNABLE_TO|CERT_|ERR_OSSL|HOSTNAME_MISMATCH)/;
/** node-postgres's own TLS failures, which carry no code: fixed texts, no data. */
const TLS_MESSAGE =
  /^(The server does not support SSL connections|There was an error establishing an SSL connection)$/;

/** The SQLSTATE behind a typed error, if any: its own field, or its driver cause's code. */
export function sqlStateOf(error: unknown): string | undefined {
  const own = (error as { sqlState?: unknown } | null)?.sqlState;
  if (typeof own === 'string') return own;
  const cause = (error as { cause?: { code?: unknown } } | null)?.cause?.code;
  return typeof cause === 'string' && /^[0-9A-Z]{5}$/.test(cause) ? cause : undefined;
}

/**
 * The cause kept on a typed error, for adapters and debugging. A PostgreSQL error keeps its SQLSTATE
 * and the names of objects and the server routine, never its text (messages, details and context
 * can quote parameters, and parameters may be secrets). Network and TLS errors are kept as they are
 * (they carry hosts and certificate facts, not data).
 */
export function sanitizedCause(error: unknown): unknown {
  if (error instanceof TenantSecretsError) return error;
  if (typeof error !== 'object' || error === null) return undefined;
  const e = error as Record<string, unknown>;
  if (typeof e.severity === 'string' && typeof e.code === 'string') {
    const cause = new Error(
      `PostgreSQL ${e.severity} ${e.code}${typeof e.routine === 'string' ? ` (${e.routine})` : ''}`,
    );
    for (const field of [
      'code',
      'severity',
      'routine',
      'schema',
      'table',
      'column',
      'constraint',
      'dataType',
    ]) {
      if (typeof e[field] === 'string')
        Object.defineProperty(cause, field, { value: e[field], enumerable: true });
    }
    cause.name = 'PostgresError';
    return cause;
  }
  if (
    error instanceof Error &&
    ((typeof e.code === 'string' && (UNAVAILABLE_NODE_CODES.has(e.code) || TLS_CODE.test(e.code))) ||
      TLS_MESSAGE.test(error.message))
  ) {
    return error;
  }
  if (error instanceof Error) {
    const cause = new Error(`${error.name} (message withheld)`);
    cause.name = error.name;
    return cause;
  }
  return undefined;
}

/**
 * Turns anything a driver throws into a typed error. The driver's message is not kept: PostgreSQL
 * quotes offending input in some messages, and input may be a secret.
 */
export function toTenantSecretsError(error: unknown, context: ErrorContext | string): TenantSecretsError {
  const ctx: ErrorContext = typeof context === 'string' ? { operation: context } : context;
  const { operation } = ctx;
  if (error instanceof TenantSecretsError) return error;
  const code = typeof error === 'object' && error !== null ? (error as { code?: unknown }).code : undefined;
  const sqlState = typeof code === 'string' ? code : undefined;
  const message = error instanceof Error ? error.message : String(error);
  const cause = sanitizedCause(error);
  // pg-pool: "timeout exceeded when trying to connect" while waiting for a busy pool's connection,
  // "Connection terminated due to connection timeout" when a new connection did not complete in time.
  if (ctx.pool && /timeout exceeded when trying to connect|due to connection timeout/i.test(message)) {
    if (/timeout exceeded when trying to connect/i.test(message) && ctx.pool.total >= ctx.pool.max) {
      return new PoolExhaustedError(
        `all ${ctx.pool.max} connections of the pool stayed busy for ${ctx.pool.timeoutMs / 1000} s during ${operation}; nothing was sent (raise maxConnections, shorten transactions, or use PgBouncer)`,
        { cause },
      );
    }
    return new DatabaseUnavailableError(
      `could not connect within ${ctx.pool.timeoutMs / 1000} s during ${operation}; check DATABASE_URL and that PostgreSQL is running`,
      { cause },
    );
  }
  if (TLS_MESSAGE.test(message)) {
    return new DatabaseUnavailableError(
      `TLS connection to the database failed during ${operation}: ${message.charAt(0).toLowerCase()}${message.slice(1)} (the sslmode of the connection string requires TLS)`,
      { cause },
    );
  }
  if (sqlState && TLS_CODE.test(sqlState)) {
    return new DatabaseUnavailableError(
      `TLS connection to the database failed during ${operation} (${sqlState})`,
      {
        cause,
      },
    );
  }
  const facts: ErrorFacts = {
    operation,
    sqlState,
    cause,
    tenantId: ctx.tenantId,
    keyName: ctx.keyName,
    role: ctx.target?.user,
    database: ctx.target?.database,
    sent: ctx.sent,
    inCallerTransaction: ctx.inCallerTransaction,
    ...(sqlState === '42501' && grantFor(ctx.statement)),
    serverMessage: ctx.keepServerMessage ? serverText(error) : undefined,
  };
  const kind = sqlState !== undefined && SQLSTATE.test(sqlState) ? kindForSqlState(sqlState) : undefined;
  if (kind?.create) return kind.create(facts);
  if (isConnectionLoss(sqlState, message)) {
    return kindNamed('DatabaseUnavailableError').create?.(facts) as TenantSecretsError;
  }
  return new DatabaseError(operation, sqlState, facts.serverMessage, cause);
}

/**
 * The server's own message, for calls that carry no secret. Not its PL/pgSQL context (`where`): it
 * points into the installer's code ("inline_code_block line 48"), which tells a user nothing.
 */
function serverText(error: unknown): string {
  const e = error as { message?: string; position?: string };
  return [e.message, e.position ? `at position ${e.position}` : ''].filter(Boolean).join(' ');
}
