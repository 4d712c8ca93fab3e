import { toTenantSecretsError } from './db/errors.js';
import { LATEST_SCHEMA_VERSION, schemaVersion } from './db/migrate.js';
import type { Queryable } from './db/queryable.js';
import { quoteSchema } from './db/schema-name.js';
import type { KeyStatus } from './keys/rotation.js';

/** What `status()` reports: metadata and counts only, never a value or key. */
export interface DatabaseStatus {
  schema: string;
  /** Schema version installed in the database (0: tenant-secrets is not installed). */
  schemaVersion: number;
  /** The schema version this library expects. */
  libraryVersion: number;
  /** Data keys per master key fingerprint id (tenant_secret_keys), by id. */
  masterKeysInUse: { id: string; dataKeys: number }[];
  counts: { tenants: number; secrets: number; deletedSecrets: number };
  logging: {
    logStatement: string;
    logMinDurationStatement: string;
    logParameterMaxLength: string;
    /** Whether this connection suppresses bind parameters in the server log (the library tries to). */
    sessionSuppressesParameters: boolean;
    /** Whether statements of other connections may be logged with their bind parameters (tenant KEKs, values). */
    mayLogParameters: boolean;
  };
}

export interface ManagerStatus extends DatabaseStatus {
  /** `keyStatus()` (per master key usage, `readyToDropPrevious`); null while the schema is not up to date. */
  keys: KeyStatus | null;
}

/**
 * Schema version, master-key ids in use, counts and the server's logging settings. Needs no master
 * key (operators run it before configuring one); `SecretsManager.status()` adds `keyStatus()`.
 * @throws {DatabaseUnavailableError} the database cannot be reached.
 */
export async function databaseStatus(db: Queryable, schema: string): Promise<DatabaseStatus> {
  const qs = quoteSchema(schema);
  const q = async <R>(sql: string): Promise<R[]> => {
    try {
      return (await db.query<R>(sql)).rows;
    } catch (error) {
      throw toTenantSecretsError(error, 'status');
    }
  };
  let version: number;
  try {
    version = await schemaVersion(db, schema);
  } catch (error) {
    throw toTenantSecretsError(error, 'status');
  }
  const settings = await q<{ name: string; reset_val: string; setting: string }>(
    `SELECT name, reset_val, setting FROM pg_catalog.pg_settings
      WHERE name IN ('log_statement', 'log_min_duration_statement', 'log_parameter_max_length')`,
  );
  const setting = (name: string) => settings.find((s) => s.name === name);
  const logStatement = setting('log_statement')?.reset_val ?? 'none';
  const logMinDuration = setting('log_min_duration_statement')?.reset_val ?? '-1';
  const logParamLength = setting('log_parameter_max_length')?.reset_val ?? '-1';
  const logging = {
    logStatement,
    logMinDurationStatement: logMinDuration,
    logParameterMaxLength: logParamLength,
    sessionSuppressesParameters: setting('log_parameter_max_length')?.setting === '0',
    mayLogParameters: logParamLength !== '0' && (logStatement === 'all' || Number(logMinDuration) >= 0),
  };
  let masterKeysInUse: DatabaseStatus['masterKeysInUse'] = [];
  let counts = { tenants: 0, secrets: 0, deletedSecrets: 0 };
  if (version > 0) {
    const keys = await q<{ id: string; n: string }>(
      `SELECT master_key_id AS id, count(*) AS n FROM ${qs}.tenant_secret_keys
        WHERE master_key_id IS NOT NULL GROUP BY master_key_id ORDER BY master_key_id`,
    );
    masterKeysInUse = keys.map((k) => ({ id: k.id, dataKeys: Number(k.n) }));
    const [c] = await q<{ tenants: string; secrets: string; deleted: string }>(
      `SELECT (SELECT count(DISTINCT tenant_id) FROM ${qs}.tenant_secret_keys) AS tenants,
              count(*) FILTER (WHERE deleted_at IS NULL) AS secrets,
              count(*) FILTER (WHERE deleted_at IS NOT NULL) AS deleted
         FROM ${qs}.tenant_secrets`,
    );
    counts = { tenants: Number(c?.tenants), secrets: Number(c?.secrets), deletedSecrets: Number(c?.deleted) };
  }
  return {
    schema,
    schemaVersion: version,
    libraryVersion: LATEST_SCHEMA_VERSION,
    masterKeysInUse,
    counts,
    logging,
  };
}
