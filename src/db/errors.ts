import {
  ConfigurationError,
  ConflictError,
  DatabaseError,
  DatabaseUnavailableError,
  IntegrityError,
  InvalidInputError,
  SchemaNotReadyError,
  SecretExpiredError,
  TenantSecretsError,
  UnknownMasterKeyError,
} from '../errors.js';

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
const UNAVAILABLE_SQLSTATES = new Set(['57P01', '57P02', '57P03', '53300', '3D000']);
const SCHEMA_SQLSTATES = new Set(['42883', '42P01', '3F000']);

function isUnavailable(code: string | undefined, message: string): boolean {
  if (
    code &&
    (UNAVAILABLE_NODE_CODES.has(code) || UNAVAILABLE_SQLSTATES.has(code) || code.startsWith('08'))
  ) {
    return true;
  }
  return /Connection terminated|timeout exceeded when trying to connect|connection error|Connection refused|server closed the connection/i.test(
    message,
  );
}

/**
 * Turns anything a driver throws into a typed error. The driver's message is *not* kept: PostgreSQL
 * quotes offending input in some messages, and input may be a secret.
 */
export function toTenantSecretsError(
  error: unknown,
  operation: string,
  /** Keep the server's message: only for operations whose SQL and parameters hold no secret. */
  keepServerMessage = false,
): TenantSecretsError {
  if (error instanceof TenantSecretsError) return error;
  const code = typeof error === 'object' && error !== null ? (error as { code?: unknown }).code : undefined;
  const sqlState = typeof code === 'string' ? code : undefined;
  const message = error instanceof Error ? error.message : String(error);
  if (isUnavailable(sqlState, message)) {
    return new DatabaseUnavailableError(
      `database unavailable during ${operation}${sqlState ? ` (${sqlState})` : ''}; check DATABASE_URL and that PostgreSQL is running`,
    );
  }
  if (sqlState === '28P01' || sqlState === '28000') {
    return new ConfigurationError(`database authentication failed during ${operation} (${sqlState})`);
  }
  if (sqlState && SCHEMA_SQLSTATES.has(sqlState)) {
    return new SchemaNotReadyError(
      `the tenant-secrets schema is missing or out of date (SQLSTATE ${sqlState} during ${operation}); run migrate() or \`tenant-secrets migrate\``,
    );
  }
  switch (sqlState) {
    case 'TS400':
      return new InvalidInputError(`invalid input rejected by the database during ${operation}`, 'input');
    case 'TS409':
      return new ConflictError('?', '?', undefined, undefined);
    case 'TS410':
      return new SecretExpiredError('?', '?');
    case 'TSKEY':
      return new UnknownMasterKeyError(undefined);
    case 'TSINT':
      return new IntegrityError(`integrity check failed during ${operation}`);
    default:
      return new DatabaseError(operation, sqlState, keepServerMessage ? serverMessage(error) : undefined);
  }
}

function serverMessage(error: unknown): string {
  const e = error as { message?: string; position?: string; where?: string };
  return [e.message, e.position ? `at position ${e.position}` : '', e.where ?? ''].filter(Boolean).join(' ');
}
