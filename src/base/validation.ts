import { InvalidInputError } from './errors.js';

/**
 * Input rules. The SQL functions enforce the same rules (sql/000001_core.sql, `_ts_invalid_input`)
 * for callers that bypass this library.
 */

/** Tenant ids: 1–128 characters, letters, digits and `. _ : @ -`, starting with a letter or digit. UUIDs fit. */
export const TENANT_ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}$/;
/** Key names: 1–256 characters, letters, digits and `_ . / -`; `/` lets names form prefixes (`stripe/api-key`). */
export const KEY_NAME_PATTERN = /^[A-Za-z0-9_][A-Za-z0-9_./-]{0,255}$/;
/** Largest secret value, in UTF-8 bytes (AWS Secrets Manager's limit). */
export const MAX_VALUE_BYTES = 65_536;

export function assertTenantId(tenantId: unknown): asserts tenantId is string {
  if (typeof tenantId !== 'string' || !TENANT_ID_PATTERN.test(tenantId)) {
    throw new InvalidInputError(
      'tenantId must be 1-128 characters of letters, digits and . _ : @ -, starting with a letter or digit',
      'tenantId',
    );
  }
}

export function assertKeyName(keyName: unknown): asserts keyName is string {
  if (typeof keyName !== 'string' || !KEY_NAME_PATTERN.test(keyName)) {
    throw new InvalidInputError(
      'keyName must be 1-256 characters of letters, digits and _ . / -, starting with a letter, digit or _',
      'keyName',
    );
  }
}

/** Returns the UTF-8 bytes of a valid secret value. The message never includes the value. */
export function encodeValue(value: unknown): Buffer {
  if (typeof value !== 'string') {
    throw new InvalidInputError('value must be a string', 'value');
  }
  // An empty value is almost always a mistake (an unset variable, an empty file): refused, as the CLI does.
  if (value === '') {
    throw new InvalidInputError('value must not be empty', 'value');
  }
  // A lone surrogate would silently become U+FFFD in UTF-8: refuse rather than store something else.
  if (!value.isWellFormed()) {
    throw new InvalidInputError('value must be well-formed Unicode (it contains a lone surrogate)', 'value');
  }
  const bytes = Buffer.from(value, 'utf8');
  if (bytes.length > MAX_VALUE_BYTES) {
    throw new InvalidInputError(`value must be at most ${MAX_VALUE_BYTES} bytes of UTF-8`, 'value');
  }
  return bytes;
}

export function assertVersion(
  version: unknown,
  field = 'version',
  allowZero = false,
): asserts version is number {
  const min = allowZero ? 0 : 1;
  if (typeof version !== 'number' || !Number.isInteger(version) || version < min || version > 999_999_999) {
    throw new InvalidInputError(`${field} must be an integer from ${min} to 999999999`, field);
  }
}

/** Dates the database stores and the library accepts: 1970-01-01 to 9999-12-31 (UTC). */
const MIN_DATE = Date.UTC(1970, 0, 1);
const MAX_DATE = Date.UTC(10000, 0, 1);

export function assertOptionalDate(value: unknown, field: string): asserts value is Date | null | undefined {
  if (value === undefined || value === null) return;
  if (!(value instanceof Date) || Number.isNaN(value.getTime())) {
    throw new InvalidInputError(`${field} must be a valid Date`, field);
  }
  // Rejected here rather than by the server, so no out-of-range value ever reaches it.
  if (value.getTime() < MIN_DATE || value.getTime() >= MAX_DATE) {
    throw new InvalidInputError(`${field} must be between 1970-01-01 and 9999-12-31`, field);
  }
}

/** Short free-text audit fields (actor, request id): printable, bounded, no control characters. */
export function assertAuditText(
  value: unknown,
  field: string,
  max = 200,
): asserts value is string | undefined {
  if (value === undefined) return;
  if (typeof value !== 'string' || value.length === 0 || characters(value) > max || !isPrintable(value)) {
    throw new InvalidInputError(`${field} must be 1-${max} printable characters`, field);
  }
}

/**
 * Text stored in clear (audit context, descriptions, labels) as the SQL functions accept it: well-formed
 * Unicode (a lone surrogate cannot be stored) without control characters (C0, DEL, C1), so that a
 * terminal or log viewer shows what was stored. `allowTabAndNewline` for descriptions.
 */
export function isPrintable(text: string, allowTabAndNewline = false): boolean {
  if (!text.isWellFormed()) return false;
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i);
    if (allowTabAndNewline && (code === 0x09 || code === 0x0a)) continue;
    if (code < 0x20 || (code >= 0x7f && code <= 0x9f)) return false;
  }
  return true;
}

/** Length in characters (code points), as PostgreSQL's length() counts them. */
export function characters(text: string): number {
  let n = 0;
  for (const _ of text) n++;
  return n;
}

/**
 * Refuses option objects that are not plain objects or carry names the method does not know (a typo
 * like `{ versoin: 2 }` would otherwise be ignored silently).
 */
export function assertOptions(options: unknown, known: readonly string[], method: string): void {
  if (options === undefined) return;
  if (typeof options !== 'object' || options === null || Array.isArray(options)) {
    throw new InvalidInputError(`${method}: options must be an object`, 'options');
  }
  for (const name of Object.keys(options)) {
    if (!known.includes(name)) {
      throw new InvalidInputError(
        `${method}: unknown option ${JSON.stringify(name.slice(0, 40))} (known: ${known.join(', ')})`,
        'options',
      );
    }
  }
}
