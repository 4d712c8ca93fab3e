import type { ExportAuditOptions } from '../audit/export.js';
import type { PruneAuditOptions, PruneAuditResult } from '../audit/prune.js';
import type { AuditPage, AuditQueryOptions } from '../audit/query.js';
import type { SealOptions, SealResult } from '../audit/seal.js';
import type { AuditVerification, VerifyAuditOptions } from '../audit/verify.js';
import type { AuditContext } from '../base/audit-context.js';
import type { TenantKeyBundle } from '../crypto/keyring.js';
import type { Queryable } from '../db/queryable.js';
import type { PinOptions, TenantPin } from '../keys/pins.js';
import type { PurgeTenantResult } from '../keys/purge.js';
import type { RegistrationResult, UnregistrationResult } from '../keys/registration.js';
import type {
  BatchOptions,
  KeyStatus,
  ResignResult,
  RotateMasterKeyResult,
  RotateTenantKeyResult,
} from '../keys/rotation.js';
import type { ImportLegacyOptions, ImportLegacyResult } from '../legacy/import.js';
import type { MigrateResult } from '../schema/migrate.js';
import type { DatabaseStatus, ReadyStatus } from '../schema/status.js';
import type {
  DestroyResult,
  DestroyVersionsResult,
  GetManyOptions,
  PurgeOptions,
  RestoreResult,
  RollbackOptions,
  UpdateMetadataOptions,
} from '../secrets/lifecycle.js';
import type { SecretMetadata, SecretMetadataInput } from '../secrets/metadata.js';
import type {
  CallOptions,
  DeleteOptions,
  DeleteResult,
  GetOptions,
  ListOptions,
  ReadResult,
  RotateOptions,
  SetOptions,
  VersionInfo,
  WriteResult,
} from '../secrets/operations.js';

/**
 * The public surface of tenant-secrets, declared by hand and grouped as the database grants are:
 * the data plane (what `migrate({ grantTo })` grants an application), the audit trail and the keys
 * (what `grantOperatorTo` adds), and the installation (the schema owner's).
 */

/** The data plane: one tenant's secrets. Every call is one audited database call (or a few). */
export interface SecretsApi {
  /**
   * Creates the secret, or stores `value` as its new current version.
   * @throws {InvalidInputError} bad tenant id, key name, value (empty, > 64 KiB, lone surrogates) or metadata.
   * @throws {ConflictError} `ifVersion` did not match (or the tenant is being purged).
   * @throws {UnauthorizedError} the configured master key does not authorise this tenant.
   * @throws {UnknownMasterKeyError} the tenant's data key is wrapped under a key not in the ring.
   * @throws {IntegrityError} the tenant's wrapped data key fails authentication.
   * @throws {DatabaseUnavailableError} the database cannot be reached.
   */
  set(tenantId: string, keyName: string, value: string, options?: SetOptions): Promise<WriteResult>;
  /**
   * Reads a secret: the current version, or `options.version` (a number, or `'previous'`).
   * @returns the value, or `null` when the secret (or that version) does not exist, was deleted or
   *   destroyed. Every other failure throws: a broken database never looks like a missing secret.
   * @throws {SecretExpiredError} `expiresAt` has passed (pass `allowExpired` to read anyway).
   * @throws {IntegrityError} the ciphertext or its data key was tampered with or moved (audited).
   * @throws {UnknownMasterKeyError} the data key is wrapped under a master key not in the ring.
   * @throws {UnauthorizedError} the configured master key does not authorise this tenant.
   * @throws {DatabaseUnavailableError} the database cannot be reached.
   */
  get(tenantId: string, keyName: string, options?: GetOptions): Promise<string | null>;
  /** Like `get`, also returning the version read and when it expires. */
  getWithVersion(tenantId: string, keyName: string, options?: GetOptions): Promise<ReadResult | null>;
  /**
   * Up to 100 current values of one tenant in one call; a missing secret is `null`.
   * @throws {SecretExpiredError} one of them expired (unless `allowExpired`).
   * @throws {IntegrityError} one of them fails authentication.
   */
  getMany(
    tenantId: string,
    keyNames: readonly string[],
    options?: GetManyOptions,
  ): Promise<Record<string, string | null>>;
  /**
   * Replaces an existing secret's value with a new version, audited as `secret.rotated`; the
   * replaced version stays readable as `previous` for the grace period.
   * @throws {SecretNotFoundError} the secret does not exist (or is deleted).
   * @throws {ConflictError} `expectedVersion` did not match.
   */
  rotate(tenantId: string, keyName: string, newValue: string, options?: RotateOptions): Promise<WriteResult>;
  /**
   * Soft-deletes a secret: it reads as not found, and can be restored within the recovery window.
   * @throws {SecretNotFoundError} no such (undeleted) secret.
   */
  delete(tenantId: string, keyName: string, options?: DeleteOptions): Promise<DeleteResult>;
  /**
   * Undoes a soft delete within its recovery window.
   * @throws {SecretNotFoundError} nothing to restore.
   */
  restore(tenantId: string, keyName: string, options?: CallOptions): Promise<RestoreResult>;
  /**
   * Writes version `version`'s value as a new version (history is never rewritten).
   * @throws {SecretNotFoundError} the secret or that version is missing, deleted or destroyed.
   * @throws {ConflictError} `ifVersion` did not match.
   */
  rollback(
    tenantId: string,
    keyName: string,
    version: number,
    options?: RollbackOptions,
  ): Promise<WriteResult>;
  /**
   * Removes a secret and every version at once, irreversibly.
   * @throws {SecretNotFoundError} no such secret.
   */
  destroy(tenantId: string, keyName: string, options?: CallOptions): Promise<DestroyResult>;
  /** Destroys the ciphertext of some versions (not the current one). */
  destroyVersions(
    tenantId: string,
    keyName: string,
    versions: readonly number[],
    options?: CallOptions,
  ): Promise<DestroyVersionsResult>;
  /** Changes description, labels, `expiresAt`, `rotateAfter` without a new version. */
  updateMetadata(
    tenantId: string,
    keyName: string,
    metadata: SecretMetadataInput,
    options?: UpdateMetadataOptions,
  ): Promise<WriteResult>;
  /** Names and metadata of a tenant's secrets, ordered by name; never values. */
  list(tenantId: string, options?: ListOptions): Promise<SecretMetadata[]>;
  /**
   * Version history of a secret, newest first (metadata only).
   * @throws {SecretNotFoundError} no such (undeleted) secret.
   */
  versions(tenantId: string, keyName: string, options?: CallOptions): Promise<VersionInfo[]>;
  /** Destroys deleted secrets whose recovery window has passed; returns how many. */
  purgeDeleted(options?: PurgeOptions): Promise<number>;
}

/** The audit trail (operator grants; sealing is the application's too). */
export interface AuditTrailApi {
  /**
   * Chains committed pending records into their tenants' hash chains, in bounded batches (smaller
   * after a statement timeout). The manager does it by itself; needs no master key.
   */
  seal(options?: SealOptions): Promise<SealResult>;
  /** One page of a tenant's chain (`null`: the system chain), oldest first. */
  query(tenantId: string | null, options?: AuditQueryOptions): Promise<AuditPage>;
  /** Every record (or one tenant's) as JSON Lines, one string per record. */
  export(options?: ExportAuditOptions): AsyncGenerator<string, void, undefined>;
  /**
   * Verifies every chain (or one), its checkpoints and the signed anchors; stores checkpoints and a
   * new anchor, and returns it (keep it outside the database, pass it as `anchor` next time).
   */
  verify(options?: VerifyAuditOptions): Promise<AuditVerification>;
  /** Removes records older than a date (whole sealing days), keeping every chain verifiable. Owner only. */
  prune(options: PruneAuditOptions): Promise<PruneAuditResult>;
  /** Re-signs checkpoints and the newest anchor under the current master key (after a rotation). */
  resignCheckpoints(): Promise<ResignResult>;
}

/** Master keys, tenant keys, pins and crypto-shredding (operator grants). */
export interface KeysApi {
  /** Registers the ring's master keys so they may vouch for new tenants (`migrate()` does it too). */
  register(): Promise<RegistrationResult>;
  /** Unregisters a master key (retiring or containing a leaked one). */
  unregister(masterKeyId: string, options?: { force?: boolean }): Promise<UnregistrationResult>;
  /** Re-wraps every data key under the current master key, in resumable batches. */
  rotateMaster(options?: BatchOptions): Promise<RotateMasterKeyResult>;
  /** A new data key for one tenant; its ciphertexts re-encrypted, the old key destroyed. */
  rotateTenant(tenantId: string, options?: BatchOptions): Promise<RotateTenantKeyResult>;
  /** Crypto-shreds a tenant (its keys, secrets and versions); its audit chain stays. */
  purgeTenant(tenantId: string, options?: { context?: AuditContext }): Promise<PurgeTenantResult>;
  /** Data keys per master key, and whether anything still needs the previous ones. */
  status(): Promise<KeyStatus>;
  /** The tenant's key bundle for SQL-side callers (`supabase.rpc`); never the master key. */
  bundle(tenantId: string): TenantKeyBundle;
  /** Pins a tenant id (or a prefix) to master keys: only they may create its first data key. */
  pin(tenantIdOrPrefix: string, options?: PinOptions): Promise<void>;
  /** Removes a pin. */
  unpin(tenantIdOrPrefix: string, options?: Omit<PinOptions, 'masterKeyIds'>): Promise<void>;
  /** Every pin. */
  pins(): Promise<TenantPin[]>;
}

/** `status()`: the database's state and, once the schema is up to date, the keys' status. */
export interface ManagerStatus extends DatabaseStatus {
  /** `keys.status()` (per master key usage, `readyToDropPrevious`); null while the schema is not up to date. */
  keys: KeyStatus | null;
}

/** Roles `migrate()` grants to (recorded in the database; omitted, the recorded roles are kept). */
export interface MigrateCallOptions {
  /** Application roles: EXECUTE on the data-plane functions only. */
  grantTo?: readonly string[];
  /** Operator roles: also audit, key rotation, purge, pins and import. */
  grantOperatorTo?: readonly string[];
}

/** `installation.migrate()`: also scale-out on Citus. */
export interface MigrateInstallOptions extends MigrateCallOptions {
  /**
   * On a Citus coordinator: distribute the installation by tenant (docs/scaling.md). An installation
   * already distributed stays distributed (and is upgraded as such) without it.
   */
  distribute?: boolean;
}

/** `installation.sql()`: the installer script's options (the schema is the manager's). */
export interface SchemaSqlOptions extends MigrateCallOptions {
  /** Only table migrations newer than this schema version (default 0: all). */
  fromVersion?: number;
  /** A NOLOGIN role to own the schema and every object (recommended on Supabase). */
  owner?: string;
  /** Wrap the script in BEGIN/COMMIT (default true). */
  transaction?: boolean;
}

/** Installing, upgrading and checking the schema (the owner's; `ready()` is the application's). */
export interface InstallationApi {
  /**
   * Brings the database to this library's schema, repairs what was changed by hand (removing foreign
   * triggers, rules, policies and defaults before it writes anything), revokes what it did not grant,
   * and registers the configured master keys. Safe while the application (or its previous release)
   * serves traffic. Run it as the owner of the schema.
   */
  migrate(options?: MigrateInstallOptions): Promise<MigrateResult>;
  /**
   * The application's start-up check: schema version, functions as released, master key registered;
   * `problems` lists what is worth fixing although the application can run.
   * @throws {SchemaNotReadyError} what is missing, and what the owner should run.
   */
  ready(): Promise<ReadyStatus>;
  /** Drift, foreign objects, privileges, logging, the sealer's health, keys (operator grants). */
  status(): Promise<ManagerStatus>;
  /** Converts a table of the original code (zero-IV AES-CBC, no MAC) into tenant-secrets. */
  importLegacy(options: ImportLegacyOptions): Promise<ImportLegacyResult>;
  /** The installer as one idempotent SQL script for this manager's schema (migration tools). */
  sql(options?: SchemaSqlOptions): Promise<string>;
}

/** The data-plane operations bound to a transaction the caller owns (see `inTransaction`). */
export interface TransactionSecrets extends SecretsApi {
  /** Crypto-shreds a tenant within the caller's transaction. */
  purgeTenant(tenantId: string, options?: { context?: AuditContext }): Promise<PurgeTenantResult>;
  /** The same, with another audit context. */
  withContext(context: AuditContext): TransactionSecrets;
}

/**
 * A secrets manager: the data plane at the top, the other roles grouped. The names of release 0.2
 * (`verifyAudit`, `rotateTenantKey`, `migrate`, …) remain for one release, as deprecated aliases.
 */
export interface SecretsManager extends SecretsApi {
  /** Schema holding tenant-secrets' objects. */
  readonly schema: string;
  /** Fingerprint ids of the configured master keys, current first (never the keys). */
  readonly masterKeyIds: readonly string[];
  readonly auditTrail: AuditTrailApi;
  readonly keys: KeysApi;
  readonly installation: InstallationApi;
  /** A manager sharing this one's pool whose audit records carry `context`. */
  withContext(context: AuditContext): SecretsManager;
  /**
   * The data-plane operations bound to a transaction the caller owns: a `pg` client between BEGIN
   * and COMMIT, or an adapter for Kysely, Drizzle or postgres.js (docs/transactions.md).
   */
  inTransaction(db: Queryable): TransactionSecrets;
  /** Seals this process's pending records, flushes cached-read records, closes the pool it created. */
  close(): Promise<void>;

  /** @deprecated since 0.3.0: `installation.migrate()`. */
  migrate(options?: MigrateInstallOptions): Promise<MigrateResult>;
  /** @deprecated since 0.3.0: `installation.ready()`. */
  ready(): Promise<ReadyStatus>;
  /** @deprecated since 0.3.0: `installation.status()`. */
  status(): Promise<ManagerStatus>;
  /** @deprecated since 0.3.0: `installation.importLegacy()`. */
  importLegacy(options: ImportLegacyOptions): Promise<ImportLegacyResult>;
  /** @deprecated since 0.3.0: `auditTrail.seal()`. */
  sealAudit(options?: SealOptions): Promise<SealResult>;
  /** @deprecated since 0.3.0: `auditTrail.query()`. */
  audit(tenantId: string | null, options?: AuditQueryOptions): Promise<AuditPage>;
  /** @deprecated since 0.3.0: `auditTrail.export()`. */
  exportAudit(options?: ExportAuditOptions): AsyncGenerator<string, void, undefined>;
  /** @deprecated since 0.3.0: `auditTrail.verify()`. */
  verifyAudit(options?: VerifyAuditOptions): Promise<AuditVerification>;
  /** @deprecated since 0.3.0: `auditTrail.prune()`. */
  pruneAudit(options: PruneAuditOptions): Promise<PruneAuditResult>;
  /** @deprecated since 0.3.0: `auditTrail.resignCheckpoints()`. */
  resignAuditCheckpoints(): Promise<ResignResult>;
  /** @deprecated since 0.3.0: `keys.register()`. */
  registerMasterKey(): Promise<RegistrationResult>;
  /** @deprecated since 0.3.0: `keys.unregister()`. */
  unregisterMasterKey(masterKeyId: string, options?: { force?: boolean }): Promise<UnregistrationResult>;
  /** @deprecated since 0.3.0: `keys.rotateMaster()`. */
  rotateMasterKey(options?: BatchOptions): Promise<RotateMasterKeyResult>;
  /** @deprecated since 0.3.0: `keys.rotateTenant()`. */
  rotateTenantKey(tenantId: string, options?: BatchOptions): Promise<RotateTenantKeyResult>;
  /** @deprecated since 0.3.0: `keys.purgeTenant()`. */
  purgeTenant(tenantId: string, options?: { context?: AuditContext }): Promise<PurgeTenantResult>;
  /** @deprecated since 0.3.0: `keys.status()`. */
  keyStatus(): Promise<KeyStatus>;
  /** @deprecated since 0.3.0: `keys.bundle()`. */
  tenantKeyBundle(tenantId: string): TenantKeyBundle;
}
