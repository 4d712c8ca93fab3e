/**
 * Every error a caller can meet is a {@link TenantSecretsError} with a stable `code`.
 *
 * Messages are written here, never copied from the database driver, so they cannot carry a secret
 * value, key material or SQL parameters. Programs branch on `code` (or `instanceof`), not on text.
 * Which SQLSTATE, SQL status and CLI exit code belong to which class is one table:
 * src/base/error-table.ts (docs/errors.md is checked against it).
 *
 * Each class returns its `name` as a literal: bundlers that minify (Next.js does) rename classes, so
 * `constructor.name` would print as `t` or `e` in production logs.
 */

export type ErrorCode =
  | 'INVALID_INPUT'
  | 'CONFIGURATION'
  | 'NOT_FOUND'
  | 'CONFLICT'
  | 'EXPIRED'
  | 'PERMISSION_DENIED'
  | 'INTEGRITY'
  | 'UNAUTHORIZED'
  | 'UNKNOWN_MASTER_KEY'
  | 'DATABASE_UNAVAILABLE'
  | 'DATABASE_READ_ONLY'
  | 'POOL_EXHAUSTED'
  | 'TIMEOUT'
  | 'LOCK_TIMEOUT'
  | 'DEADLOCK'
  | 'SERIALIZATION_FAILURE'
  | 'DISK_FULL'
  | 'DATABASE'
  | 'SCHEMA_NOT_READY'
  | 'SCHEMA_DRIFT'
  | 'LEGACY_SCHEMA'
  | 'ABORTED'
  | 'LEGACY_IMPORT';

export abstract class TenantSecretsError extends Error {
  abstract readonly code: ErrorCode;
  /** The class's name, as a literal that survives minification. */
  abstract override get name(): string;
  /**
   * Whether running the same call again, unchanged, may succeed (a dropped connection, a deadlock, a
   * timeout). False when something must change first (input, configuration, grants, disk space).
   * A write that failed with `mayHaveCommitted` true is retryable only after checking (docs/errors.md).
   */
  get retryable(): boolean {
    return false;
  }
}

/** An operation's name, and the tenant and key it was about when the library knows them. */
const about = (tenantId: string | undefined, keyName: string | undefined): string =>
  [tenantId === undefined ? '' : `tenant "${tenantId}"`, keyName === undefined ? '' : `key "${keyName}"`]
    .filter(Boolean)
    .join(', ');

/** An argument is malformed (tenant id, key name, value, option). Nothing was changed. */
export class InvalidInputError extends TenantSecretsError {
  readonly code = 'INVALID_INPUT';
  override get name(): string {
    return 'InvalidInputError';
  }
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
  override get name(): string {
    return 'ConfigurationError';
  }
}

/** The secret (or the requested version of it) does not exist, or was deleted. */
export class SecretNotFoundError extends TenantSecretsError {
  readonly code = 'NOT_FOUND';
  override get name(): string {
    return 'SecretNotFoundError';
  }
  constructor(
    /** Undefined only when raised by SQL the library did not call with a tenant (original interface). */
    readonly tenantId: string | undefined,
    readonly keyName: string | undefined,
    detail = 'secret not found',
  ) {
    const what = about(tenantId, keyName);
    super(what ? `${detail}: ${what}` : detail);
  }
}

/** A check-and-set write found another current version than the one expected. */
export class ConflictError extends TenantSecretsError {
  readonly code = 'CONFLICT';
  override get name(): string {
    return 'ConflictError';
  }
  constructor(
    readonly tenantId: string | undefined,
    readonly keyName: string | undefined,
    readonly expectedVersion: number | undefined,
    readonly currentVersion: number | undefined,
  ) {
    const what = about(tenantId, keyName);
    super(
      expectedVersion === undefined && currentVersion === undefined
        ? `version conflict${what ? ` on ${what}` : ''}: another write got there first`
        : `version conflict${what ? ` on ${what}` : ''}: expected ${
            expectedVersion === 0
              ? 'no existing secret'
              : expectedVersion === undefined
                ? 'another version'
                : `version ${expectedVersion}`
          }, found ${currentVersion === undefined ? 'none or a deleted secret' : `version ${currentVersion}`}`,
    );
  }
}

/** The secret's `expiresAt` has passed; read it with `{ allowExpired: true }` to get it anyway. */
export class SecretExpiredError extends TenantSecretsError {
  readonly code = 'EXPIRED';
  override get name(): string {
    return 'SecretExpiredError';
  }
  constructor(
    readonly tenantId: string | undefined,
    readonly keyName: string | undefined,
  ) {
    const what = about(tenantId, keyName);
    super(what ? `secret expired: ${what}` : 'secret expired');
  }
}

/**
 * Stored ciphertext or a wrapped key failed authentication: it was modified, moved to another
 * tenant/key/version, or belongs to another installation. No plaintext was produced.
 */
export class IntegrityError extends TenantSecretsError {
  readonly code = 'INTEGRITY';
  override get name(): string {
    return 'IntegrityError';
  }
}

/**
 * The key bundle does not authorise this tenant: the application's master key is not the one this
 * tenant's data was written with, or (for a tenant without data) it is not registered in this
 * database (`migrate()` registers it). The answer is the same whether the secret or the tenant
 * exists: nothing about the tenant is revealed.
 */
export class UnauthorizedError extends TenantSecretsError {
  readonly code = 'UNAUTHORIZED';
  override get name(): string {
    return 'UnauthorizedError';
  }
  constructor(readonly tenantId: string | undefined) {
    super(
      `the configured master key does not authorise ${tenantId === undefined ? 'this tenant' : `tenant "${tenantId}"`}: it is not the key this tenant's data was written with, or it is not registered in this database (run migrate() with it, or registerMasterKey())`,
    );
  }
}

/** Data is wrapped under a master key that is not in the configured keyring. */
export class UnknownMasterKeyError extends TenantSecretsError {
  readonly code = 'UNKNOWN_MASTER_KEY';
  override get name(): string {
    return 'UnknownMasterKeyError';
  }
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
  override get name(): string {
    return 'DatabaseUnavailableError';
  }
  override get retryable(): boolean {
    return true;
  }
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
  override get name(): string {
    return 'PoolExhaustedError';
  }
}

/**
 * The database is read-only (a hot standby, `default_transaction_read_only`, or a read-only role).
 * Every operation, reads included, writes its audit record in the same transaction, so operations
 * need a writable primary (docs/scaling.md).
 */
export class DatabaseReadOnlyError extends TenantSecretsError {
  readonly code = 'DATABASE_READ_ONLY';
  override get name(): string {
    return 'DatabaseReadOnlyError';
  }
}

/**
 * The server cancelled the statement: `statement_timeout` or a cancel request (57014), or ended an
 * idle transaction (`idle_in_transaction_session_timeout`, 25P03). Its transaction was rolled back:
 * nothing was committed (`mayHaveCommitted` is false), and the call may be retried as it is. Batch
 * operations name the smaller `batchSize` to use.
 */
export class DatabaseTimeoutError extends TenantSecretsError {
  readonly code: 'TIMEOUT' | 'LOCK_TIMEOUT' = 'TIMEOUT';
  override get name(): string {
    return 'DatabaseTimeoutError';
  }
  override get retryable(): boolean {
    return true;
  }
  /** Always false: a cancelled statement's transaction is rolled back. */
  readonly mayHaveCommitted = false;
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
 * A lock was not granted within `lock_timeout` (SQLSTATE 55P03): another transaction held a row or
 * table this call needed. Nothing was committed; retry once the other transaction has finished (a
 * long `inTransaction` block, a migration, an audit prune).
 */
export class LockTimeoutError extends DatabaseTimeoutError {
  override readonly code = 'LOCK_TIMEOUT';
  override get name(): string {
    return 'LockTimeoutError';
  }
}

/**
 * PostgreSQL found a deadlock (SQLSTATE 40P01) and rolled this transaction back to break it.
 * Nothing was committed; retry the call (inside `inTransaction`, retry your whole transaction).
 */
export class DeadlockError extends TenantSecretsError {
  readonly code = 'DEADLOCK';
  override get name(): string {
    return 'DeadlockError';
  }
  override get retryable(): boolean {
    return true;
  }
  /** Always false: the transaction was rolled back. */
  readonly mayHaveCommitted = false;
  readonly sqlState = '40P01';
}

/**
 * A `REPEATABLE READ` or `SERIALIZABLE` transaction could not be serialized with a concurrent one
 * (SQLSTATE 40001). Nothing was committed; retry the whole transaction (PostgreSQL's advice for this
 * SQLSTATE). The library's own calls run at the default `READ COMMITTED` level; this comes from a
 * caller's transaction (`inTransaction`) or `default_transaction_isolation`.
 */
export class SerializationFailureError extends TenantSecretsError {
  readonly code = 'SERIALIZATION_FAILURE';
  override get name(): string {
    return 'SerializationFailureError';
  }
  override get retryable(): boolean {
    return true;
  }
  /** Always false: the transaction was rolled back. */
  readonly mayHaveCommitted = false;
  readonly sqlState = '40001';
}

/**
 * The database server ran out of disk space (SQLSTATE 53100). Nothing was committed. Retrying does
 * not help until space is freed on the server (its data directory or WAL volume).
 */
export class DiskFullError extends TenantSecretsError {
  readonly code = 'DISK_FULL';
  override get name(): string {
    return 'DiskFullError';
  }
  /** Always false: the failing statement's transaction was rolled back. */
  readonly mayHaveCommitted = false;
  readonly sqlState = '53100';
}

/**
 * The database reported an error. Only its SQLSTATE is kept in the message (its text could quote
 * parameters); `cause` keeps the SQLSTATE, severity and object names for adapters.
 */
export class DatabaseError extends TenantSecretsError {
  readonly code: 'DATABASE' | 'PERMISSION_DENIED' = 'DATABASE';
  override get name(): string {
    return 'DatabaseError';
  }
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

/**
 * Which grant a role lacks: `grantTo` (the data-plane functions an application calls), `grantOperatorTo`
 * (audit, key rotation, purges, legacy import, status), or `owner` (schema changes, pruning the audit
 * trail, registering a master key without holding a registered one).
 */
export type MissingGrant = 'grantTo' | 'grantOperatorTo' | 'owner';

const GRANT_ADVICE: Record<Exclude<MissingGrant, 'owner'>, { what: string; flag: string }> = {
  grantTo: { what: 'has no data-plane grant', flag: '--grant-to' },
  grantOperatorTo: { what: 'is not an operator role', flag: '--grant-operator-to' },
};

/**
 * The connected role may not do this (SQLSTATE 42501). The message names the role (when the library
 * knows it) and the grant it lacks: `migrate({ grantTo })` grants the data plane,
 * `migrate({ grantOperatorTo })` the operator functions; the rest is the schema owner's. Nothing was
 * changed. A {@link DatabaseError} with `sqlState` 42501, for code written against earlier releases.
 */
export class PermissionDeniedError extends DatabaseError {
  override readonly code = 'PERMISSION_DENIED';
  override get name(): string {
    return 'PermissionDeniedError';
  }
  /** The login role that was refused, when known. */
  readonly role: string | undefined;
  /** The grant it lacks, when the library can tell. */
  readonly grant: MissingGrant | undefined;
  /** The tenant-secrets function it was refused, when known (e.g. `tenant_secret_rotate_key`). */
  readonly functionName: string | undefined;
  constructor(options: {
    operation: string;
    role?: string | undefined;
    grant?: MissingGrant | undefined;
    functionName?: string | undefined;
    /** What only the owner may do, for `grant: 'owner'` (e.g. "prune the audit trail"). */
    ownerAction?: string | undefined;
    cause?: unknown;
  }) {
    super(options.operation, '42501', undefined, options.cause);
    this.role = options.role;
    this.grant = options.grant;
    this.functionName = options.functionName;
    const who =
      options.role === undefined ? 'the connected database role' : `the database role "${options.role}"`;
    const name = options.role ?? '<role>';
    const fn = options.functionName ? ` (EXECUTE on ${options.functionName})` : '';
    let advice: string;
    if (options.grant === 'owner') {
      advice = `${who} does not own the tenant-secrets schema, and only the role that owns the tenant-secrets schema may ${options.ownerAction ?? 'do this'}`;
    } else if (options.grant) {
      const g = GRANT_ADVICE[options.grant];
      advice = `${who} ${g.what}${fn}: the schema owner grants it with migrate({ ${options.grant}: ['${name}'] }) or \`tenant-secrets migrate ${g.flag} ${name}\``;
    } else {
      advice = `${who} lacks a privilege it needs: the schema owner grants the data plane with migrate({ grantTo }), the operator functions with migrate({ grantOperatorTo }); other changes need the owner`;
    }
    this.message = `permission denied during ${options.operation}: ${advice}`;
  }
}

/** The tenant-secrets schema is missing or older than this library: run `migrate()`. */
export class SchemaNotReadyError extends TenantSecretsError {
  readonly code = 'SCHEMA_NOT_READY';
  override get name(): string {
    return 'SchemaNotReadyError';
  }
}

/**
 * The installed schema differs from what `migrate()` installed: a function was dropped or replaced by
 * hand, or a trigger tenant-secrets did not create sits on one of its tables (it would run with the
 * owner's rights). Operations stop instead of running it. `migrate()` repairs; `status()` names it.
 */
export class SchemaDriftError extends TenantSecretsError {
  readonly code = 'SCHEMA_DRIFT';
  override get name(): string {
    return 'SchemaDriftError';
  }
}

/** `migrate()` found a table in the shape of the original code's; see docs/runbooks/legacy-import.md. */
export class LegacySchemaError extends TenantSecretsError {
  readonly code = 'LEGACY_SCHEMA';
  override get name(): string {
    return 'LegacySchemaError';
  }
}

/** The tenant has no data key (it never stored a secret, or was purged). */
export class TenantNotFoundError extends TenantSecretsError {
  readonly code = 'NOT_FOUND';
  override get name(): string {
    return 'TenantNotFoundError';
  }
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
  override get name(): string {
    return 'OperationAbortedError';
  }
  /** Running it again resumes where it stopped. */
  override get retryable(): boolean {
    return true;
  }
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
  override get name(): string {
    return 'LegacyImportError';
  }
  constructor(
    readonly reason: LegacyImportFailure,
    message: string,
    readonly tenantId?: string,
    readonly keyName?: string,
  ) {
    super(message);
  }
}
