/**
 * Every error a caller can meet is a {@link TenantSecretsError} with a stable `code`.
 *
 * Messages are written here, never copied from the database driver, so they cannot carry a secret
 * value, key material or SQL parameters. Programs branch on `code` (or `instanceof`), not on text.
 */

export type ErrorCode =
  | 'INVALID_INPUT'
  | 'CONFIGURATION'
  | 'NOT_FOUND'
  | 'CONFLICT'
  | 'EXPIRED'
  | 'INTEGRITY'
  | 'UNKNOWN_MASTER_KEY'
  | 'DATABASE_UNAVAILABLE'
  | 'DATABASE'
  | 'SCHEMA_NOT_READY'
  | 'LEGACY_SCHEMA'
  | 'ABORTED'
  | 'LEGACY_IMPORT';

export abstract class TenantSecretsError extends Error {
  abstract readonly code: ErrorCode;
  override get name(): string {
    return this.constructor.name;
  }
}

/** An argument is malformed (tenant id, key name, value, option). Nothing was changed. */
export class InvalidInputError extends TenantSecretsError {
  readonly code = 'INVALID_INPUT';
  constructor(
    message: string,
    /** Which argument was rejected, e.g. `tenantId`. */
    readonly field: string,
  ) {
    super(message);
  }
}

/** Configuration is missing or unusable (master key, connection settings). */
export class ConfigurationError extends TenantSecretsError {
  readonly code = 'CONFIGURATION';
}

/** The secret (or the requested version of it) does not exist, or was deleted. */
export class SecretNotFoundError extends TenantSecretsError {
  readonly code = 'NOT_FOUND';
  constructor(
    readonly tenantId: string,
    readonly keyName: string,
    detail = 'secret not found',
  ) {
    super(`${detail}: tenant "${tenantId}", key "${keyName}"`);
  }
}

/** A check-and-set write found another current version than the one expected. */
export class ConflictError extends TenantSecretsError {
  readonly code = 'CONFLICT';
  constructor(
    readonly tenantId: string,
    readonly keyName: string,
    readonly expectedVersion: number | undefined,
    readonly currentVersion: number | undefined,
  ) {
    super(
      `version conflict on tenant "${tenantId}", key "${keyName}": expected ${
        expectedVersion === 0 ? 'no existing secret' : `version ${expectedVersion}`
      }, found ${currentVersion === undefined ? 'none or a deleted secret' : `version ${currentVersion}`}`,
    );
  }
}

/** The secret's `expiresAt` has passed; read it with `{ allowExpired: true }` to get it anyway. */
export class SecretExpiredError extends TenantSecretsError {
  readonly code = 'EXPIRED';
  constructor(
    readonly tenantId: string,
    readonly keyName: string,
  ) {
    super(`secret expired: tenant "${tenantId}", key "${keyName}"`);
  }
}

/**
 * Stored ciphertext or a wrapped key failed authentication: it was modified, moved to another
 * tenant/key/version, or belongs to another installation. No plaintext was produced.
 */
export class IntegrityError extends TenantSecretsError {
  readonly code = 'INTEGRITY';
}

/** Data is wrapped under a master key that is not in the configured keyring. */
export class UnknownMasterKeyError extends TenantSecretsError {
  readonly code = 'UNKNOWN_MASTER_KEY';
  constructor(
    /** The fingerprint id of the missing key (never the key itself). */
    readonly masterKeyId: string | undefined,
  ) {
    super(
      masterKeyId
        ? `data is wrapped under master key ${masterKeyId}, which is not in the keyring (TENANT_SECRETS_MASTER_KEY / TENANT_SECRETS_PREVIOUS_MASTER_KEYS)`
        : 'no usable master key in the keyring',
    );
  }
}

/** The database could not be reached, or dropped the connection. Retrying later may succeed. */
export class DatabaseUnavailableError extends TenantSecretsError {
  readonly code = 'DATABASE_UNAVAILABLE';
}

/** The database reported an error. Only its SQLSTATE is kept: its text could quote parameters. */
export class DatabaseError extends TenantSecretsError {
  readonly code = 'DATABASE';
  constructor(
    operation: string,
    /** PostgreSQL's SQLSTATE, e.g. `42501` for insufficient privilege. */
    readonly sqlState: string | undefined,
    /** The server's own message, only for operations that carry no secret (migrations). */
    serverMessage?: string,
  ) {
    super(
      `database error during ${operation}${sqlState ? ` (SQLSTATE ${sqlState})` : ''}${serverMessage ? `: ${serverMessage}` : ''}`,
    );
  }
}

/** The tenant-secrets schema is missing or older than this library: run `migrate()`. */
export class SchemaNotReadyError extends TenantSecretsError {
  readonly code = 'SCHEMA_NOT_READY';
}

/** `migrate()` found a table in the shape of the seed's original code; see docs/runbooks/legacy-import.md. */
export class LegacySchemaError extends TenantSecretsError {
  readonly code = 'LEGACY_SCHEMA';
}

/** The tenant has no data key (it never stored a secret, or was purged). */
export class TenantNotFoundError extends TenantSecretsError {
  readonly code = 'NOT_FOUND';
  constructor(readonly tenantId: string) {
    super(`tenant "${tenantId}" has no data key (no secret was ever stored, or the tenant was purged)`);
  }
}

/**
 * A long-running operation (key rotation, import) stopped because its `signal` was aborted or its
 * `onProgress` callback threw. Every finished batch is committed: running it again resumes.
 */
export class OperationAbortedError extends TenantSecretsError {
  readonly code = 'ABORTED';
  constructor(
    operation: string,
    /** Units (keys, ciphertexts, rows) done before stopping. */
    readonly done: number,
    options?: { cause?: unknown },
  ) {
    super(
      `${operation} stopped after ${done} item(s); finished batches are committed, run it again to resume`,
      options,
    );
  }
}

/** Why a legacy import stopped (see docs/runbooks/legacy-import.md). */
export type LegacyImportFailure =
  | 'wrong_key'
  | 'legacy_decrypt'
  | 'invalid_input'
  | 'conflict'
  | 'integrity'
  | 'unknown_master_key'
  | 'no_legacy_table';

/**
 * The legacy import stopped. Nothing is lost: rows already imported were verified and committed,
 * the failing row (named here, never its value) is still in `tenant_secrets_legacy`.
 */
export class LegacyImportError extends TenantSecretsError {
  readonly code = 'LEGACY_IMPORT';
  constructor(
    readonly reason: LegacyImportFailure,
    message: string,
    readonly tenantId?: string,
    readonly keyName?: string,
  ) {
    super(message);
  }
}
