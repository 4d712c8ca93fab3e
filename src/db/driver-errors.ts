import {
  ConfigurationError,
  ConflictError,
  DatabaseError,
  DatabaseReadOnlyError,
  DatabaseTimeoutError,
  DatabaseUnavailableError,
  IntegrityError,
  InvalidInputError,
  LegacySchemaError,
  PoolExhaustedError,
  SchemaDriftError,
  SchemaNotReadyError,
  SecretExpiredError,
  TenantSecretsError,
  UnauthorizedError,
  UnknownMasterKeyError,
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
const UNAVAILABLE_SQLSTATES = new Set(['57P01', '57P02', '57P03', '53300', '3D000', '58030']);
const SCHEMA_SQLSTATES = new Set(['42883', '42P01', '3F000']);
const TIMEOUT_SQLSTATES = new Set(['57014', '55P03', '25P03']);

/** What the caller knows about the failed call, to say what happened precisely. */
export interface ErrorContext {
  /** Operation name for the message (`get`, `migrate`, ...). */
  operation: string;
  /** Keep the server's message: only for operations whose SQL and parameters hold no secret. */
  keepServerMessage?: boolean;
  /** The request was written to the server before the failure (a write may have committed). */
  sent?: boolean;
  /** Pool facts when connecting failed: its size and how long the caller waited. */
  pool?: { max: number; total: number; timeoutMs: number };
}

function isConnectionLoss(code: string | undefined, message: string): boolean {
  if (
    code &&
    (UNAVAILABLE_NODE_CODES.has(code) || UNAVAILABLE_SQLSTATES.has(code) || code.startsWith('08'))
  ) {
    return true;
  }
  return /Connection terminated|connection error|Connection refused|server closed the connection|Client has encountered a connection error|Client was closed/i.test(
    message,
  );
}

const TLS_CODE = /^(ERR_TLS|ERR_SSL|DEPTH_ZERO|SELF_SIGNED|UNABLE_TO|CERT_|ERR_OSSL|HOSTNAME_MISMATCH)/;
/** node-postgres's own TLS failures, which carry no code: fixed texts, no data. */
const TLS_MESSAGE =
  /^(The server does not support SSL connections|There was an error establishing an SSL connection)$/;

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
  if (sqlState && TIMEOUT_SQLSTATES.has(sqlState)) {
    const what =
      sqlState === '55P03'
        ? 'a lock was not granted within lock_timeout'
        : sqlState === '25P03'
          ? 'the transaction stayed idle longer than idle_in_transaction_session_timeout'
          : 'the statement was cancelled (statement_timeout, or a cancel request)';
    return new DatabaseTimeoutError(`${operation} timed out: ${what}; nothing was committed`, sqlState, {
      cause,
    });
  }
  if (isConnectionLoss(sqlState, message)) {
    const mayHaveCommitted = ctx.sent === true;
    return new DatabaseUnavailableError(
      mayHaveCommitted
        ? `the connection was lost during ${operation} after the request reached the server${sqlState ? ` (${sqlState})` : ''}: it may have committed; check before retrying a write (docs/errors.md)`
        : `database unavailable during ${operation}${sqlState ? ` (${sqlState})` : ''}; check DATABASE_URL and that PostgreSQL is running`,
      { cause, mayHaveCommitted },
    );
  }
  if (sqlState === '25006') {
    return new DatabaseReadOnlyError(
      `the database is read-only during ${operation} (a hot standby, default_transaction_read_only, or a read-only role): every operation, reads included, writes its audit record, so tenant-secrets needs a writable primary`,
      { cause },
    );
  }
  if (sqlState === '28P01' || sqlState === '28000') {
    return new ConfigurationError(`database authentication failed during ${operation} (${sqlState})`, {
      cause,
    });
  }
  if (sqlState === 'TSLEG') {
    return new LegacySchemaError(`${serverText(error).replace(/^tenant-secrets: /, '')}`, { cause });
  }
  if (sqlState === 'TSNEW') {
    return new SchemaNotReadyError('the database schema is newer than this library; upgrade tenant-secrets', {
      cause,
    });
  }
  if (sqlState === 'TSSEC') {
    return new SchemaDriftError(
      `${operation} stopped: a trigger tenant-secrets did not create is attached to one of its tables (it would run with the owner's rights); run migrate() to remove it, status() names it`,
      { cause },
    );
  }
  if (sqlState && SCHEMA_SQLSTATES.has(sqlState)) {
    return new SchemaNotReadyError(
      `the tenant-secrets schema is missing, out of date or changed by hand (SQLSTATE ${sqlState} during ${operation}); run migrate() or \`tenant-secrets migrate\``,
      { cause },
    );
  }
  switch (sqlState) {
    case 'TS400':
      return new InvalidInputError(`invalid input rejected by the database during ${operation}`, 'input');
    case 'TS401':
      return new UnauthorizedError('?');
    case 'TS409':
      return new ConflictError('?', '?', undefined, undefined);
    case 'TS410':
      return new SecretExpiredError('?', '?');
    case 'TSKEY':
      return new UnknownMasterKeyError(undefined);
    case 'TSINT':
      return new IntegrityError(`integrity check failed during ${operation}`, { cause });
    default:
      return new DatabaseError(
        operation,
        sqlState,
        ctx.keepServerMessage ? serverText(error) : undefined,
        cause,
      );
  }
}

function serverText(error: unknown): string {
  const e = error as { message?: string; position?: string; where?: string };
  return [e.message, e.position ? `at position ${e.position}` : '', e.where ?? ''].filter(Boolean).join(' ');
}
