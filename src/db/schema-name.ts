import { ConfigurationError } from '../base/errors.js';

const SCHEMA_PATTERN = /^[a-z_][a-z0-9_]{0,62}$/;

/** The default keeps the original code's `SELECT encrypted_value FROM tenant_secrets` working unqualified. */
export const DEFAULT_SCHEMA = 'public';

/** Quotes an SQL identifier after checking it is a plain lower-case name. */
export function quoteSchema(schema: string): string {
  if (!SCHEMA_PATTERN.test(schema)) {
    throw new ConfigurationError(
      'schema must be a lower-case SQL identifier (letters, digits, _; at most 63)',
    );
  }
  return `"${schema}"`;
}
