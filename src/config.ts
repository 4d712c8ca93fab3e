import type { AuditContext } from './audit/context.js';
import type { Settings } from './core.js';
import { createOwnedPool } from './db/pool.js';
import type { PoolLike } from './db/queryable.js';
import { DEFAULT_SCHEMA, quoteSchema } from './db/schema-name.js';
import { ConfigurationError } from './errors.js';
import { Keyring } from './keys/keyring.js';
import type { MasterKey } from './keys/master-key.js';
import { assertAuditText } from './validation.js';

/** Options of {@link createSecretsManager}. Each falls back to an environment variable, then a default. */
export interface SecretsManagerOptions {
  /** PostgreSQL connection string. Env: `DATABASE_URL`. */
  connectionString?: string;
  /** An existing `pg` Pool (or compatible) to use instead; `close()` leaves it open. */
  pool?: PoolLike;
  /** Current master key (base64 / hex of 32 bytes, or a MasterKey). Env: `TENANT_SECRETS_MASTER_KEY`. */
  masterKey?: string | MasterKey;
  /** Older master keys still accepted for unwrapping. Env: `TENANT_SECRETS_PREVIOUS_MASTER_KEYS` (comma-separated). */
  previousMasterKeys?: readonly (string | MasterKey)[];
  /** A ready keyring (takes precedence over masterKey / previousMasterKeys). */
  keyring?: Keyring;
  /** Name recorded as the actor of audit records. Env: `TENANT_SECRETS_ACTOR`. Default `app`. */
  actor?: string;
  /** Schema holding tenant-secrets' objects. Env: `TENANT_SECRETS_SCHEMA`. Default `public`. */
  schema?: string;
  /** Versions kept per secret, 2-1000 (default 10). */
  maxVersions?: number;
  /** Seconds the replaced version stays readable as `previous` (default 86400). */
  previousVersionGraceSeconds?: number;
  /** Days a deleted secret can be restored (default 30). */
  recoveryWindowDays?: number;
  /** Maximum connections of the pool tenant-secrets creates (default 10). */
  maxConnections?: number;
  /** Environment to read fallbacks from (default `process.env`). */
  env?: Record<string, string | undefined>;
}

export interface ResolvedConfig {
  pool: PoolLike;
  ownsPool: boolean;
  schema: string;
  keyring: Keyring;
  context: AuditContext;
  settings: Settings;
}

function resolveKeyring(options: SecretsManagerOptions, env: Record<string, string | undefined>): Keyring {
  if (options.keyring) return options.keyring;
  const current = options.masterKey ?? env.TENANT_SECRETS_MASTER_KEY;
  if (current === undefined || current === '') {
    throw new ConfigurationError(
      'no master key: pass `masterKey` or set TENANT_SECRETS_MASTER_KEY (32 random bytes as base64 or hex; `npx tenant-secrets keygen` makes one)',
    );
  }
  const previous = options.previousMasterKeys ?? env.TENANT_SECRETS_PREVIOUS_MASTER_KEYS?.split(',') ?? [];
  const asString = (key: string | MasterKey) => key;
  const parsedCurrent = typeof current === 'string' ? Keyring.parse(current).current : current;
  const parsedPrevious = previous
    .map(asString)
    .filter((key) => typeof key !== 'string' || key.trim() !== '')
    .map((key, index) =>
      typeof key === 'string'
        ? Keyring.parse(key, [], {
            current: `TENANT_SECRETS_PREVIOUS_MASTER_KEYS (entry ${index + 1})`,
            previous: '',
          }).current
        : key,
    );
  return new Keyring(parsedCurrent, parsedPrevious);
}

function integerSetting(
  value: number | undefined,
  fallback: number,
  min: number,
  max: number,
  name: string,
): number {
  const result = value ?? fallback;
  if (!Number.isInteger(result) || result < min || result > max) {
    throw new ConfigurationError(`${name} must be an integer from ${min} to ${max}`);
  }
  return result;
}

/**
 * Resolves options in one fixed order: explicit option, then environment, then default.
 * Everything is checked here, at start-up, so a bad key fails before the first request.
 * @throws {ConfigurationError}
 */
export function resolveConfig(options: SecretsManagerOptions = {}): ResolvedConfig {
  const env = options.env ?? process.env;
  const keyring = resolveKeyring(options, env);
  const schema = options.schema ?? env.TENANT_SECRETS_SCHEMA ?? DEFAULT_SCHEMA;
  quoteSchema(schema);
  const actor = options.actor ?? env.TENANT_SECRETS_ACTOR ?? 'app';
  try {
    assertAuditText(actor, 'actor');
  } catch {
    throw new ConfigurationError('actor must be 1-200 printable characters');
  }
  const settings: Settings = {
    maxVersions: integerSetting(options.maxVersions, 10, 2, 1000, 'maxVersions'),
    previousVersionGraceSeconds: integerSetting(
      options.previousVersionGraceSeconds,
      86_400,
      0,
      31_536_000,
      'previousVersionGraceSeconds',
    ),
    recoveryWindowDays: integerSetting(options.recoveryWindowDays, 30, 0, 3650, 'recoveryWindowDays'),
  };
  let pool = options.pool;
  let ownsPool = false;
  if (!pool) {
    const connectionString = options.connectionString ?? env.DATABASE_URL;
    if (!connectionString) {
      throw new ConfigurationError('no database: pass `connectionString` or `pool`, or set DATABASE_URL');
    }
    pool = createOwnedPool({ connectionString, max: options.maxConnections });
    ownsPool = true;
  }
  return { pool, ownsPool, schema, keyring, context: { actor }, settings };
}
