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
  | 'UNAUTHORIZED'
  | 'UNKNOWN_MASTER_KEY'
  | 'DATABASE_UNAVAILABLE'
  | 'DATABASE_READ_ONLY'
  | 'POOL_EXHAUSTED'
  | 'TIMEOUT'
  | 'DATABASE'
  | 'SCHEMA_NOT_READY'
  | 'SCHEMA_DRIFT'
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

/**
 * The key bundle does not authorise this tenant: the application's master key is not the one this
 * tenant's data was written with, or (for a tenant without data) it is not registered in this
 * database (`migrate()` registers it). The answer is the same whether the secret or the tenant
 * exists: nothing about the tenant is revealed.
 */
export class UnauthorizedError extends TenantSecretsError {
  readonly code = 'UNAUTHORIZED';
  constructor(readonly tenantId: string) {
    super(
      `the configured master key does not authorise tenant "${tenantId}": it is not the key this tenant's data was written with, or it is not registered in this database (run migrate() with it, or registerMasterKey())`,
    );
  }
}

/** Data is wrapped under a master key that is not in the configured keyring. */
export class UnknownMasterKeyError extends TenantSecretsError {
  readonly code = 'UNKNOWN_MASTER_KEY';
  /** The fingerprint id of the missing key (never the key itself); undefined when unknown or malformed. */
  readonly masterKeyId: string | undefined;
  constructor(masterKeyId: string | undefined) {
    // The id comes from a table row: only a well-formed id (`mk_` + 16 hex) reaches a message or a log.
    const id =
      typeof masterKeyId === 'string' && /^mk_[0-9a-f]{16}$/.test(masterKeyId) ? masterKeyId : undefined;
    super(
      id
        ? `data is wrapped under master key ${id}, which is not in the keyring (TENANT_SECRETS_MASTER_KEY / TENANT_SECRETS_PREVIOUS_MASTER_KEYS)`
        : 'no usable master key in the keyring',
    );
    this.masterKeyId = id;
  }
}

/**
 * The database could not be reached, or dropped the connection. Retrying later may succeed.
 *
 * `mayHaveCommitted` is true when the connection was lost after the call reached the server: a write
 * may then have committed even though no answer came back. Retry writes safely with check-and-set
 * (`ifVersion`) or check `versions()` first (docs/errors.md, "Retrying after a lost connection").
 */
export class DatabaseUnavailableError extends TenantSecretsError {
  readonly code: 'DATABASE_UNAVAILABLE' | 'POOL_EXHAUSTED' = 'DATABASE_UNAVAILABLE';
  readonly mayHaveCommitted: boolean;
  constructor(message: string, options: { cause?: unknown; mayHaveCommitted?: boolean } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.mayHaveCommitted = options.mayHaveCommitted ?? false;
  }
}

/**
 * Every connection of the pool stayed busy for the whole connection timeout (`maxConnections`
 * connections, `connectionTimeoutMillis`). Nothing was sent. Raise `maxConnections`, shorten the
 * transactions holding connections, or put PgBouncer in front (docs/serverless.md).
 */
export class PoolExhaustedError extends DatabaseUnavailableError {
  override readonly code = 'POOL_EXHAUSTED';
}

/**
 * The database is read-only (a hot standby, `default_transaction_read_only`, or a read-only role).
 * Every operation, reads included, writes its audit record in the same transaction, so operations
 * need a writable primary (docs/scaling.md).
 */
export class DatabaseReadOnlyError extends TenantSecretsError {
  readonly code = 'DATABASE_READ_ONLY';
}

/**
 * The server cancelled the statement: `statement_timeout`, `lock_timeout`, or
 * `idle_in_transaction_session_timeout`. Nothing was committed. Batch operations name the smaller
 * `batchSize` to use.
 */
export class DatabaseTimeoutError extends TenantSecretsError {
  readonly code = 'TIMEOUT';
  constructor(
    message: string,
    /** PostgreSQL's SQLSTATE: 57014 (statement timeout / cancel), 55P03 (lock timeout), 25P03 (idle in transaction). */
    readonly sqlState: string | undefined,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/**
 * The database reported an error. Only its SQLSTATE is kept in the message (its text could quote
 * parameters); `cause` keeps the SQLSTATE, severity and object names for adapters.
 */
export class DatabaseError extends TenantSecretsError {
  readonly code = 'DATABASE';
  constructor(
    operation: string,
    /** PostgreSQL's SQLSTATE, e.g. `42501` for insufficient privilege. */
    readonly sqlState: string | undefined,
    /** The server's own message, only for operations that carry no secret (migrations). */
    serverMessage?: string,
    cause?: unknown,
  ) {
    super(
      `database error during ${operation}${sqlState ? ` (SQLSTATE ${sqlState})` : ''}${serverMessage ? `: ${serverMessage}` : ''}`,
      cause === undefined ? undefined : { cause },
    );
  }
}

/** The tenant-secrets schema is missing or older than this library: run `migrate()`. */
export class SchemaNotReadyError extends TenantSecretsError {
  readonly code = 'SCHEMA_NOT_READY';
}

/**
 * The installed schema differs from what `migrate()` installed: a function was dropped or replaced by
 * hand, or a trigger tenant-secrets did not create sits on one of its tables (it would run with the
 * owner's rights). Operations stop instead of running it. `migrate()` repairs; `status()` names it.
 */
export class SchemaDriftError extends TenantSecretsError {
  readonly code = 'SCHEMA_DRIFT';
}

/** `migrate()` found a table in the shape of the original code's; see docs/runbooks/legacy-import.md. */
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
  | 'not_base64'
  | 'legacy_decrypt'
  | 'invalid_input'
  | 'conflict'
  | 'integrity'
  | 'unknown_master_key'
  | 'unauthorized'
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
