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

export function assertOptionalDate(value: unknown, field: string): asserts value is Date | null | undefined {
  if (value === undefined || value === null) return;
  if (!(value instanceof Date) || Number.isNaN(value.getTime())) {
    throw new InvalidInputError(`${field} must be a valid Date`, field);
  }
}

/** Short free-text audit fields (actor, request id): printable, bounded, no control characters. */
export function assertAuditText(
  value: unknown,
  field: string,
  max = 200,
): asserts value is string | undefined {
  if (value === undefined) return;
  if (typeof value !== 'string' || value.length === 0 || value.length > max || hasControlCharacter(value)) {
    throw new InvalidInputError(`${field} must be 1-${max} printable characters`, field);
  }
}

function hasControlCharacter(text: string): boolean {
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i);
    if (code < 0x20 || code === 0x7f) return true;
  }
  return false;
}
