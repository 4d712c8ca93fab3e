/**
 * tenant-secrets: per-tenant secrets encrypted in PostgreSQL with pgcrypto.
 * @packageDocumentation
 */
export type { AuditContext } from './audit/context.js';
export { auditRecordToJsonLine, type ExportAuditOptions } from './audit/export.js';
export type { AuditOperations } from './audit/operations.js';
export type { PruneAuditOptions, PruneAuditResult } from './audit/prune.js';
export type { AuditOutcome, AuditPage, AuditQueryOptions, AuditRecord } from './audit/query.js';
export type {
  AuditProblem,
  AuditProblemReason,
  AuditVerification,
  VerifyAuditOptions,
  VerifyAuditProgress,
} from './audit/verify.js';
export type { SecretsManagerOptions } from './config.js';
export type { Settings } from './core.js';
export { exportSchemaSql, LATEST_SCHEMA_VERSION, type MigrateResult } from './db/migrate.js';
export type { PoolClientLike, PoolLike, Queryable } from './db/queryable.js';
export {
  closeDefaultSecretsManager,
  defaultSecretsManager,
  getTenantSecret,
  rotateTenantSecret,
  setTenantSecret,
} from './env.js';
export * from './errors.js';
export { Keyring, type TenantKeyBundle } from './keys/keyring.js';
export { generateMasterKey, MasterKey } from './keys/master-key.js';
export type { PurgeTenantResult } from './keys/purge.js';
export type {
  BatchOptions,
  KeyProgress,
  KeyStatus,
  MasterKeyUsage,
  RotateMasterKeyResult,
  RotateTenantKeyResult,
} from './keys/rotation.js';
export type { ImportLegacyOptions, ImportLegacyResult } from './legacy/import.js';
export { createSecretsManager, type SecretsManager } from './manager.js';
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
  RotateOptions,
  SetOptions,
  VersionInfo,
  WriteResult,
} from './secrets/operations.js';
export { type DatabaseStatus, databaseStatus, type ManagerStatus } from './status.js';
export { KEY_NAME_PATTERN, MAX_VALUE_BYTES, TENANT_ID_PATTERN } from './validation.js';
