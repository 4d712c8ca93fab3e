/**
 * tenant-secrets: per-tenant secrets encrypted in PostgreSQL with pgcrypto.
 * @packageDocumentation
 */
export {
  type CompiledQueryLike,
  type DrizzleLike,
  type DrizzleSqlLike,
  fromDrizzle,
  fromKysely,
  fromPostgresJs,
  type KyselyLike,
  type PostgresJsLike,
} from './api/adapters.js';
export type { SecretsManagerOptions } from './api/config.js';
export {
  closeDefaultSecretsManager,
  defaultSecretsManager,
  getTenantSecret,
  rotateTenantSecret,
  setTenantSecret,
} from './api/env.js';
export type {
  AuditTrailApi,
  InstallationApi,
  KeysApi,
  ManagerStatus,
  MigrateCallOptions,
  MigrateInstallOptions,
  SchemaSqlOptions,
  SecretsApi,
  SecretsManager,
  TransactionSecrets,
} from './api/interfaces.js';
export { createSecretsManager } from './api/manager.js';
export { type SealAuditOptions, sealAudit } from './api/seal-audit.js';
export { type AuditAnchor, parseAnchor } from './audit/anchors.js';
export { auditRecordToJsonLine, type ExportAuditOptions } from './audit/export.js';
export type { PruneAuditOptions, PruneAuditResult } from './audit/prune.js';
export type { AuditOutcome, AuditPage, AuditQueryOptions, AuditRecord } from './audit/query.js';
export type { SealOptions, SealResult } from './audit/seal.js';
export type {
  AuditProblem,
  AuditProblemReason,
  AuditVerification,
  VerifyAuditOptions,
  VerifyAuditProgress,
} from './audit/verify.js';
export type { AuditContext } from './base/audit-context.js';
export * from './base/errors.js';
export type { OperationEvent, OperationLogger } from './base/telemetry.js';
export { KEY_NAME_PATTERN, MAX_VALUE_BYTES, TENANT_ID_PATTERN } from './base/validation.js';
export type { Settings } from './core/core.js';
export { Keyring, type TenantKeyBundle } from './crypto/keyring.js';
export { generateMasterKey, MASTER_KEY_ID_PATTERN, MasterKey } from './crypto/master-key.js';
export type { PoolClientLike, PoolLike, Queryable, QueryResultLike } from './db/queryable.js';
export type { PinOptions, TenantPin } from './keys/pins.js';
export type { PurgeTenantResult } from './keys/purge.js';
export type { RegistrationResult, UnregistrationResult } from './keys/registration.js';
export type {
  BatchOptions,
  KeyProgress,
  KeyStatus,
  MasterKeyUsage,
  ResignResult,
  RotateMasterKeyResult,
  RotateTenantKeyResult,
} from './keys/rotation.js';
export type { ImportLegacyOptions, ImportLegacyResult } from './legacy/import.js';
export {
  exportSchemaSql,
  LATEST_SCHEMA_VERSION,
  type MigrateOptions,
  type MigrateResult,
} from './schema/migrate.js';
export {
  type DatabaseStatus,
  databaseStatus,
  type ReadyStatus,
  type SealerStatus,
  type StatusProblem,
} from './schema/status.js';
export type { CacheOptions } from './secrets/cache.js';
export type {
  DestroyResult,
  DestroyVersionsResult,
  GetManyOptions,
  PurgeOptions,
  RestoreResult,
  RollbackOptions,
  UpdateMetadataOptions,
} from './secrets/lifecycle.js';
export type { SecretMetadata, SecretMetadataInput } from './secrets/metadata.js';
export type {
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
} from './secrets/operations.js';
