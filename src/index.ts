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
} from './adapters.js';
export type { AuditContext } from './audit/context.js';
export { auditRecordToJsonLine, type ExportAuditOptions } from './audit/export.js';
export type { AuditOperations } from './audit/operations.js';
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
export type { SecretsManagerOptions } from './config.js';
export type { Settings } from './core.js';
export {
  exportSchemaSql,
  LATEST_SCHEMA_VERSION,
  type MigrateOptions,
  type MigrateResult,
} from './db/migrate.js';
export type { PoolClientLike, PoolLike, Queryable, QueryResultLike } from './db/queryable.js';
export {
  closeDefaultSecretsManager,
  defaultSecretsManager,
  getTenantSecret,
  rotateTenantSecret,
  setTenantSecret,
} from './env.js';
export * from './errors.js';
export { Keyring, type TenantKeyBundle } from './keys/keyring.js';
export { generateMasterKey, MASTER_KEY_ID_PATTERN, MasterKey } from './keys/master-key.js';
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
export { createSecretsManager, type SecretsManager, type TransactionSecrets } from './manager.js';
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
export {
  type DatabaseStatus,
  databaseStatus,
  type ManagerStatus,
  type ReadyStatus,
  type StatusProblem,
} from './status.js';
export type { OperationEvent, OperationLogger } from './telemetry.js';
export { KEY_NAME_PATTERN, MAX_VALUE_BYTES, TENANT_ID_PATTERN } from './validation.js';
