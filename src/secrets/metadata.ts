import { InvalidInputError } from '../base/errors.js';
import { assertOptionalDate, characters, isPrintable } from '../base/validation.js';

/** Descriptive, non-secret attributes of a secret. Stored in clear: never put secret material here. */
export interface SecretMetadataInput {
  /** Free text, at most 1000 characters. `null` clears it. */
  description?: string | null;
  /** String labels for filtering, e.g. `{ env: 'prod', provider: 'stripe' }`. Replaces all labels. */
  labels?: Record<string, string>;
  /** After this instant reads fail with `SecretExpiredError` (unless `allowExpired`). `null` clears it. */
  expiresAt?: Date | null;
  /** The secret is due for rotation after this instant (`list({ due: true })`). `null` clears it. */
  rotateAfter?: Date | null;
}

const LABEL_KEY = /^[A-Za-z0-9_.\-/]{1,63}$/;
const MAX_LABELS = 50;

/** Validates metadata and returns the snake_case JSON fields the SQL functions take. */
export function metadataOptions(input: SecretMetadataInput): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  if (input.description !== undefined) {
    if (
      input.description !== null &&
      (typeof input.description !== 'string' ||
        characters(input.description) > 1000 ||
        !isPrintable(input.description, true))
    ) {
      throw new InvalidInputError(
        'description must be a string of at most 1000 printable characters (tabs and newlines allowed), or null',
        'description',
      );
    }
    out.description = input.description;
  }
  if (input.labels !== undefined) {
    const labels = input.labels;
    if (typeof labels !== 'object' || labels === null || Array.isArray(labels)) {
      throw new InvalidInputError('labels must be an object of string values', 'labels');
    }
    const entries = Object.entries(labels);
    if (entries.length > MAX_LABELS) throw new InvalidInputError(`at most ${MAX_LABELS} labels`, 'labels');
    for (const [key, value] of entries) {
      if (
        !LABEL_KEY.test(key) ||
        typeof value !== 'string' ||
        characters(value) > 256 ||
        !isPrintable(value)
      ) {
        throw new InvalidInputError(
          'label keys must be 1-63 characters of letters, digits and _ . - /, values strings of at most 256 printable characters',
          'labels',
        );
      }
    }
    out.labels = labels;
  }
  for (const [field, column] of [
    ['expiresAt', 'expires_at'],
    ['rotateAfter', 'rotate_after'],
  ] as const) {
    const value = input[field];
    if (value === undefined) continue;
    assertOptionalDate(value, field);
    out[column] = value === null ? null : value.toISOString();
  }
  return out;
}

/** Metadata of one secret, as `list()` returns it. Never contains the value. */
export interface SecretMetadata {
  keyName: string;
  currentVersion: number;
  /** The version readable as `previous` while its grace period lasts. */
  previousVersion: number | null;
  description: string | null;
  labels: Record<string, string>;
  expiresAt: Date | null;
  rotateAfter: Date | null;
  createdAt: Date;
  createdBy: string;
  updatedAt: Date;
  updatedBy: string;
  rotatedAt: Date | null;
  /** Set when soft-deleted (only listed with `includeDeleted`). */
  deletedAt: Date | null;
  /** When a soft-deleted secret will be purged. */
  purgeAfter: Date | null;
  /** Version of the tenant data key that encrypts the current value. */
  keyVersion: number;
}

export interface SecretMetadataRow {
  key_name: string;
  current_version: number;
  previous_version: number | null;
  description: string | null;
  labels: Record<string, string>;
  expires_at: Date | null;
  rotate_after: Date | null;
  created_at: Date;
  created_by: string;
  updated_at: Date;
  updated_by: string;
  rotated_at: Date | null;
  deleted_at: Date | null;
  purge_after: Date | null;
  key_version: number;
}

export function toSecretMetadata(row: SecretMetadataRow): SecretMetadata {
  return {
    keyName: row.key_name,
    currentVersion: row.current_version,
    previousVersion: row.previous_version,
    description: row.description,
    labels: row.labels,
    expiresAt: row.expires_at,
    rotateAfter: row.rotate_after,
    createdAt: row.created_at,
    createdBy: row.created_by,
    updatedAt: row.updated_at,
    updatedBy: row.updated_by,
    rotatedAt: row.rotated_at,
    deletedAt: row.deleted_at,
    purgeAfter: row.purge_after,
    keyVersion: row.key_version,
  };
}
