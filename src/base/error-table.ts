/**
 * The one table of tenant-secrets' errors: for every error class, its stable `code`, the status a SQL
 * function returns for it, the SQLSTATEs that become it, the CLI's exit code, whether retrying may
 * help, and what it means. The driver mapping (db/driver-errors.ts), the SQL status mapping
 * (secrets/status.ts) and the CLI's exit codes and help (cli/exit-codes.ts) are derived from it;
 * tests hold the SQL functions (`_ts_raise_status`) and docs/errors.md to it.
 */
import {
  ConfigurationError,
  ConflictError,
  DatabaseError,
  DatabaseReadOnlyError,
  DatabaseTimeoutError,
  DatabaseUnavailableError,
  DeadlockError,
  DiskFullError,
  type ErrorCode,
  IntegrityError,
  InvalidInputError,
  LegacyImportError,
  LegacySchemaError,
  LockTimeoutError,
  type MissingGrant,
  OperationAbortedError,
  PermissionDeniedError,
  PoolExhaustedError,
  SchemaDriftError,
  SchemaNotReadyError,
  SecretExpiredError,
  SecretNotFoundError,
  SerializationFailureError,
  TenantNotFoundError,
  type TenantSecretsError,
  UnauthorizedError,
  UnknownMasterKeyError,
} from './errors.js';

/** The CLI's exit codes. Stable: scripts branch on them. */
export const EXIT = {
  OK: 0,
  ERROR: 1,
  USAGE: 2,
  NOT_FOUND: 3,
  CONFLICT: 4,
  INTEGRITY: 5,
  CONFIGURATION: 6,
  UNAVAILABLE: 7,
  PERMISSION: 8,
  /** Interrupted (Ctrl-C / SIGINT, SIGTERM) or cancelled at a prompt: 128 + SIGINT, as shells report it. */
  INTERRUPTED: 130,
} as const;

/**
 * What a failed call knows, to build the error that names the problem. Never the server's message
 * (it can quote parameters), except `serverMessage` for calls that carry no secret (migrations).
 */
export interface ErrorFacts {
  /** Operation name for the message (`get`, `migrate`, ...). */
  operation: string;
  sqlState?: string | undefined;
  /** The sanitised cause (db/driver-errors.ts `sanitizedCause`). */
  cause?: unknown;
  tenantId?: string | undefined;
  keyName?: string | undefined;
  /** For conflicts: the version the caller expected, and the one found. */
  expectedVersion?: number | undefined;
  version?: number | undefined;
  /** Extra detail a SQL function returned: the invalid field, the missing master key id. */
  detail?: string | undefined;
  /** The login role and database of the connection, when known (never a password). */
  role?: string | undefined;
  database?: string | undefined;
  /** The tenant-secrets function a statement called, and which grant it needs. */
  functionName?: string | undefined;
  grant?: MissingGrant | undefined;
  /** For `grant: 'owner'`: what only the owner may do (e.g. "prune the audit trail"). */
  ownerAction?: string | undefined;
  /** The request reached the server before the connection was lost: a write may have committed. */
  sent?: boolean | undefined;
  /** The call ran inside a transaction the caller owns (`inTransaction`). */
  inCallerTransaction?: boolean | undefined;
  serverMessage?: string | undefined;
}

type ErrorClass = abstract new (...args: never[]) => TenantSecretsError;

export interface ErrorKind {
  /** `error.code`: stable, what programs branch on. */
  readonly code: ErrorCode;
  /** The class's literal `name` (and exported class name). */
  readonly name: string;
  readonly type: ErrorClass;
  /** The status a tenant-secrets SQL function returns instead of raising (so the failure's audit record commits). */
  readonly sqlStatus?: string;
  /**
   * The SQLSTATE `_ts_raise_status` raises for `sqlStatus` (the original interface's functions raise);
   * undefined when it has no case of its own for that status.
   */
  readonly raisedAs?: string;
  /** SQLSTATEs that become this class; a two-character entry is a whole SQLSTATE class (`08`). */
  readonly sqlStates: readonly string[];
  readonly exitCode: number;
  /** Whether the same call, unchanged, may succeed when run again (`error.retryable`). */
  readonly retryable: boolean;
  /** When it happens (docs/errors.md). */
  readonly description: string;
  /** Builds it from a SQLSTATE or SQL status and what the call knows; absent for errors the library raises by itself. */
  readonly create?: (facts: ErrorFacts) => TenantSecretsError;
}

const causeOf = (f: ErrorFacts) => (f.cause === undefined ? undefined : { cause: f.cause });
const inRole = (f: ErrorFacts) => (f.role === undefined ? '' : ` for role "${f.role}"`);
const retryHow = (f: ErrorFacts) =>
  f.inCallerTransaction ? 'roll back and retry your whole transaction' : 'retry the call';

/** The table. Order is the order of docs/errors.md. */
export const ERROR_TABLE = [
  {
    code: 'INVALID_INPUT',
    name: 'InvalidInputError',
    type: InvalidInputError,
    sqlStatus: 'invalid_input',
    raisedAs: 'TS400',
    sqlStates: ['TS400'],
    exitCode: EXIT.USAGE,
    retryable: false,
    description:
      'malformed tenant id, key name, value (empty, > 64 KiB, lone surrogate), version, metadata, option, or a role name `migrate()` cannot grant to (`field` names the argument)',
    create: (f) =>
      // A status row may name the rejected field; a raised TS400 names nothing.
      f.sqlState === undefined
        ? new InvalidInputError(`the database rejected ${f.detail ?? 'the input'}`, f.detail ?? 'input')
        : new InvalidInputError(`invalid input rejected by the database during ${f.operation}`, 'input'),
  },
  {
    code: 'CONFIGURATION',
    name: 'ConfigurationError',
    type: ConfigurationError,
    sqlStates: ['28P01', '28000', '3D000', 'TSDST', '0A000'],
    exitCode: EXIT.CONFIGURATION,
    retryable: false,
    description:
      "missing or malformed master key, an option of the wrong type or out of range, an unknown option name; the database named in the connection string does not exist (3D000); authentication failed for its role (28P01, 28000); on a Citus installation, an operation not supported distributed (0A000) or a call that could not run on the tenant's worker (TSDST)",
    create: (f) => {
      if (f.sqlState === 'TSDST') {
        return new ConfigurationError(
          `${f.operation} could not run on the worker holding the tenant (SQLSTATE TSDST): on a distributed installation, Citus delegates a call made on its own or first in a transaction; run it in a transaction of its own`,
          causeOf(f),
        );
      }
      if (f.sqlState === '0A000') {
        return new ConfigurationError(
          `${f.operation} is not supported by this installation (SQLSTATE 0A000): on a distributed (Citus) installation, docs/scaling.md lists what runs distributed`,
          causeOf(f),
        );
      }
      if (f.sqlState === '3D000') {
        return new ConfigurationError(
          `the database ${f.database === undefined ? 'named in the connection string' : `"${f.database}" named in the connection string`} does not exist on the server (SQLSTATE 3D000, during ${f.operation}); check DATABASE_URL, or create it`,
          causeOf(f),
        );
      }
      if (f.sqlState === '28P01') {
        return new ConfigurationError(
          `database authentication failed${inRole(f)} (SQLSTATE 28P01, during ${f.operation}): check the user and password in DATABASE_URL`,
          causeOf(f),
        );
      }
      return new ConfigurationError(
        `the server refused the connection${inRole(f)} (SQLSTATE ${f.sqlState ?? '28000'}, during ${f.operation}): the role does not exist, may not log in, or no pg_hba.conf entry allows it; check DATABASE_URL`,
        causeOf(f),
      );
    },
  },
  {
    code: 'NOT_FOUND',
    name: 'SecretNotFoundError',
    type: SecretNotFoundError,
    sqlStatus: 'not_found',
    raisedAs: 'TS404',
    sqlStates: ['TS404'],
    exitCode: EXIT.NOT_FOUND,
    retryable: false,
    description:
      '`rotate` / `delete` / `versions` of a missing or deleted secret (`get` returns `null` instead)',
    create: (f) => new SecretNotFoundError(f.tenantId, f.keyName),
  },
  {
    code: 'NOT_FOUND',
    name: 'TenantNotFoundError',
    type: TenantNotFoundError,
    sqlStates: [],
    exitCode: EXIT.NOT_FOUND,
    retryable: false,
    description: '`rotateTenantKey` of a tenant without a data key',
  },
  {
    code: 'CONFLICT',
    name: 'ConflictError',
    type: ConflictError,
    sqlStatus: 'conflict',
    raisedAs: 'TS409',
    sqlStates: ['TS409'],
    exitCode: EXIT.CONFLICT,
    retryable: false,
    description: 'check-and-set (`ifVersion`) found another version: read it, then decide',
    create: (f) => new ConflictError(f.tenantId, f.keyName, f.expectedVersion, f.version),
  },
  {
    code: 'EXPIRED',
    name: 'SecretExpiredError',
    type: SecretExpiredError,
    sqlStatus: 'expired',
    raisedAs: 'TS410',
    sqlStates: ['TS410'],
    exitCode: EXIT.ERROR,
    retryable: false,
    description: '`get` of a secret whose `expiresAt` passed (unless `allowExpired`)',
    create: (f) => new SecretExpiredError(f.tenantId, f.keyName),
  },
  {
    code: 'INTEGRITY',
    name: 'IntegrityError',
    type: IntegrityError,
    sqlStatus: 'integrity',
    raisedAs: 'TSINT',
    sqlStates: ['TSINT'],
    exitCode: EXIT.INTEGRITY,
    retryable: false,
    description: 'ciphertext or wrapped key failed authentication (tampered, moved, other installation)',
    create: (f) => {
      const what = [
        f.tenantId === undefined ? '' : `tenant "${f.tenantId}"`,
        f.keyName === undefined ? '' : `key "${f.keyName}"`,
      ]
        .filter(Boolean)
        .join(', ');
      return new IntegrityError(
        `integrity check failed ${what ? `for ${what}` : `during ${f.operation}`}: the stored ciphertext or its data key was modified, moved, or written by another installation`,
        causeOf(f),
      );
    },
  },
  {
    code: 'UNAUTHORIZED',
    name: 'UnauthorizedError',
    type: UnauthorizedError,
    sqlStatus: 'unauthorized',
    raisedAs: 'TS401',
    sqlStates: ['TS401'],
    exitCode: EXIT.CONFIGURATION,
    retryable: false,
    description:
      'the key bundle does not speak for this tenant (master key not registered, or not the tenant’s)',
    create: (f) => new UnauthorizedError(f.tenantId),
  },
  {
    code: 'UNKNOWN_MASTER_KEY',
    name: 'UnknownMasterKeyError',
    type: UnknownMasterKeyError,
    sqlStatus: 'unknown_master_key',
    raisedAs: 'TSKEY',
    sqlStates: ['TSKEY'],
    exitCode: EXIT.INTEGRITY,
    retryable: false,
    description: 'data wrapped under a master key not in the keyring (`masterKeyId`)',
    create: (f) => new UnknownMasterKeyError(f.detail),
  },
  {
    code: 'PERMISSION_DENIED',
    name: 'PermissionDeniedError',
    type: PermissionDeniedError,
    sqlStatus: 'forbidden',
    sqlStates: ['42501'],
    exitCode: EXIT.PERMISSION,
    retryable: false,
    description:
      'the connected role lacks a grant (`role`, `grant`): an application role calling an operator function needs `migrate({ grantOperatorTo })`, a role without `migrate({ grantTo })` the data plane; schema changes and pruning are the owner’s',
    create: (f) =>
      new PermissionDeniedError({
        operation: f.operation,
        role: f.role,
        grant: f.grant,
        functionName: f.functionName,
        ownerAction: f.ownerAction,
        cause: f.cause,
      }),
  },
  {
    code: 'DATABASE_UNAVAILABLE',
    name: 'DatabaseUnavailableError',
    type: DatabaseUnavailableError,
    sqlStates: ['08', '57P01', '57P02', '57P03', '53300', '58030'],
    exitCode: EXIT.UNAVAILABLE,
    retryable: true,
    description:
      'connection refused, reset, lost or not completed in time; server shutting down or out of connection slots; TLS failure (`mayHaveCommitted`)',
    create: (f) => {
      const mayHaveCommitted = f.sent === true && f.inCallerTransaction !== true;
      const code = f.sqlState ? ` (${f.sqlState})` : '';
      return new DatabaseUnavailableError(
        mayHaveCommitted
          ? `the connection was lost during ${f.operation} after the request reached the server${code}: it may have committed; check before retrying a write (docs/errors.md)`
          : `database unavailable during ${f.operation}${code}; check DATABASE_URL and that PostgreSQL is running`,
        { cause: f.cause, mayHaveCommitted },
      );
    },
  },
  {
    code: 'POOL_EXHAUSTED',
    name: 'PoolExhaustedError',
    type: PoolExhaustedError,
    sqlStates: [],
    exitCode: EXIT.UNAVAILABLE,
    retryable: true,
    description: 'every connection of the pool stayed busy for `connectionTimeoutMillis`; nothing was sent',
  },
  {
    code: 'DATABASE_READ_ONLY',
    name: 'DatabaseReadOnlyError',
    type: DatabaseReadOnlyError,
    sqlStates: ['25006'],
    exitCode: EXIT.UNAVAILABLE,
    retryable: false,
    description: 'hot standby, `default_transaction_read_only`, read-only role or transaction',
    create: (f) =>
      new DatabaseReadOnlyError(
        `the database is read-only during ${f.operation} (a hot standby, default_transaction_read_only, or a read-only role): every operation, reads included, writes its audit record, so tenant-secrets needs a writable primary`,
        causeOf(f),
      ),
  },
  {
    code: 'TIMEOUT',
    name: 'DatabaseTimeoutError',
    type: DatabaseTimeoutError,
    sqlStates: ['57014', '25P03'],
    exitCode: EXIT.UNAVAILABLE,
    retryable: true,
    description:
      '`statement_timeout` or a cancel request (57014), `idle_in_transaction_session_timeout` (25P03); nothing committed (`sqlState`, `mayHaveCommitted` false)',
    create: (f) =>
      new DatabaseTimeoutError(
        `${f.operation} timed out: ${
          f.sqlState === '25P03'
            ? 'the transaction stayed idle longer than idle_in_transaction_session_timeout'
            : 'the statement was cancelled (statement_timeout, or a cancel request)'
        }; nothing was committed, ${retryHow(f)}`,
        f.sqlState,
        causeOf(f),
      ),
  },
  {
    code: 'LOCK_TIMEOUT',
    name: 'LockTimeoutError',
    type: LockTimeoutError,
    sqlStatus: 'busy',
    sqlStates: ['55P03'],
    exitCode: EXIT.UNAVAILABLE,
    retryable: true,
    description:
      'a lock was not granted within `lock_timeout` (55P03): another transaction held what the call needed; nothing committed',
    create: (f) =>
      new LockTimeoutError(
        `${f.operation} timed out waiting for a lock (lock_timeout, SQLSTATE 55P03): another transaction holds a row or table it needs; nothing was committed, ${retryHow(f)} once that transaction has finished`,
        '55P03',
        causeOf(f),
      ),
  },
  {
    code: 'DEADLOCK',
    name: 'DeadlockError',
    type: DeadlockError,
    sqlStates: ['40P01'],
    exitCode: EXIT.UNAVAILABLE,
    retryable: true,
    description: 'PostgreSQL broke a deadlock (40P01) by rolling this transaction back; nothing committed',
    create: (f) =>
      new DeadlockError(
        `deadlock during ${f.operation} (SQLSTATE 40P01): PostgreSQL rolled ${f.inCallerTransaction ? 'your' : 'its'} transaction back to break a cycle of transactions waiting on each other; nothing was committed, ${retryHow(f)}`,
        causeOf(f),
      ),
  },
  {
    code: 'SERIALIZATION_FAILURE',
    name: 'SerializationFailureError',
    type: SerializationFailureError,
    sqlStates: ['40001'],
    exitCode: EXIT.UNAVAILABLE,
    retryable: true,
    description:
      'a `REPEATABLE READ` / `SERIALIZABLE` transaction collided with a concurrent one (40001); nothing committed, retry the whole transaction',
    create: (f) =>
      new SerializationFailureError(
        `serialization failure during ${f.operation} (SQLSTATE 40001): a concurrent transaction changed what ${f.inCallerTransaction ? 'your' : 'this'} REPEATABLE READ or SERIALIZABLE transaction read; nothing was committed, ${f.inCallerTransaction ? 'roll back and retry your whole transaction' : 'retry the call'}`,
        causeOf(f),
      ),
  },
  {
    code: 'DISK_FULL',
    name: 'DiskFullError',
    type: DiskFullError,
    sqlStates: ['53100'],
    exitCode: EXIT.UNAVAILABLE,
    retryable: false,
    description:
      'the database server is out of disk space (53100); nothing committed; retry once space is freed',
    create: (f) =>
      new DiskFullError(
        `the database server is out of disk space (SQLSTATE 53100, during ${f.operation}); nothing was committed: free space on the server (data directory, WAL volume), then retry`,
        causeOf(f),
      ),
  },
  {
    code: 'SCHEMA_NOT_READY',
    name: 'SchemaNotReadyError',
    type: SchemaNotReadyError,
    sqlStates: ['42883', '42P01', '3F000', 'TSNEW'],
    exitCode: EXIT.CONFIGURATION,
    retryable: false,
    description:
      'schema missing, older than the library, newer than it (TSNEW), or a function dropped by hand: run `migrate()`',
    create: (f) =>
      f.sqlState === 'TSNEW'
        ? new SchemaNotReadyError(
            'the database schema is newer than this library; upgrade tenant-secrets',
            causeOf(f),
          )
        : new SchemaNotReadyError(
            `the tenant-secrets schema is missing, out of date or changed by hand (SQLSTATE ${f.sqlState} during ${f.operation}); run migrate() or \`tenant-secrets migrate\``,
            causeOf(f),
          ),
  },
  {
    code: 'SCHEMA_DRIFT',
    name: 'SchemaDriftError',
    type: SchemaDriftError,
    sqlStates: ['TSSEC'],
    exitCode: EXIT.INTEGRITY,
    retryable: false,
    description:
      'a trigger, rule or policy tenant-secrets did not create sits on one of its tables (TSSEC): run `migrate()`',
    create: (f) =>
      new SchemaDriftError(
        `${f.operation} stopped: a trigger tenant-secrets did not create is attached to one of its tables (it would run with the owner's rights); run migrate() to remove it, status() names it`,
        causeOf(f),
      ),
  },
  {
    code: 'LEGACY_SCHEMA',
    name: 'LegacySchemaError',
    type: LegacySchemaError,
    sqlStates: ['TSLEG'],
    exitCode: EXIT.CONFIGURATION,
    retryable: false,
    description:
      '`migrate()` found a `tenant_secrets` table it did not create, e.g. the original code’s (TSLEG)',
    create: (f) =>
      new LegacySchemaError(
        // migrate() keeps the installer's own text, which says which kind of table it found.
        (
          f.serverMessage ??
          'a "tenant_secrets" table tenant-secrets did not create is in the way; nothing was changed. If it is the original code\'s, convert it with "tenant-secrets import-legacy" (docs/runbooks/legacy-import.md); otherwise rename it, or install tenant-secrets in another schema'
        ).replace(/^tenant-secrets: /, ''),
        causeOf(f),
      ),
  },
  {
    code: 'LEGACY_IMPORT',
    name: 'LegacyImportError',
    type: LegacyImportError,
    sqlStates: [],
    exitCode: EXIT.INTEGRITY,
    retryable: false,
    description:
      '`importLegacy` stopped at a row (`reason`, `tenantId`, `keyName`; docs/runbooks/legacy-import.md)',
  },
  {
    code: 'ABORTED',
    name: 'OperationAbortedError',
    type: OperationAbortedError,
    sqlStates: [],
    exitCode: EXIT.INTERRUPTED,
    retryable: true,
    description:
      'a batched operation’s `signal` aborted or its `onProgress` threw (`done`); run it again to resume',
  },
  {
    code: 'DATABASE',
    name: 'DatabaseError',
    type: DatabaseError,
    sqlStates: [],
    exitCode: EXIT.ERROR,
    retryable: false,
    description: 'any other database error; only the SQLSTATE is kept (`sqlState`)',
    create: (f) => new DatabaseError(f.operation, f.sqlState, f.serverMessage, f.cause),
  },
] as const satisfies readonly ErrorKind[];

// Every code has a row: a code added to ErrorCode without one fails to compile here.
type Covered = (typeof ERROR_TABLE)[number]['code'];
const everyCodeCovered: Exclude<ErrorCode, Covered> extends never ? true : never = true;
void everyCodeCovered;

const rows: readonly ErrorKind[] = ERROR_TABLE;
const BY_SQLSTATE = new Map<string, ErrorKind>();
const BY_STATUS = new Map<string, ErrorKind>();
const BY_CODE = new Map<ErrorCode, ErrorKind>();
for (const row of rows) {
  for (const state of row.sqlStates) BY_SQLSTATE.set(state, row);
  if (row.sqlStatus !== undefined) BY_STATUS.set(row.sqlStatus, row);
  if (!BY_CODE.has(row.code)) BY_CODE.set(row.code, row);
}

/** The row for a SQLSTATE (exact, then its two-character class), or undefined. */
export function kindForSqlState(sqlState: string | undefined): ErrorKind | undefined {
  if (sqlState === undefined) return undefined;
  return BY_SQLSTATE.get(sqlState) ?? BY_SQLSTATE.get(sqlState.slice(0, 2));
}

/** The row for a status a SQL function returned (`not_found`, `conflict`, ...), or undefined. */
export function kindForStatus(status: string): ErrorKind | undefined {
  return BY_STATUS.get(status);
}

/** The row of a class (by its literal name). */
export function kindNamed(name: (typeof ERROR_TABLE)[number]['name']): ErrorKind {
  return rows.find((row) => row.name === name) as ErrorKind;
}

/** The CLI's exit code for an error code. */
export function exitCodeForCode(code: ErrorCode): number {
  return BY_CODE.get(code)?.exitCode ?? EXIT.ERROR;
}
