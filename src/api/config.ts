import { inspect } from 'node:util';
import type { AuditContext } from '../base/audit-context.js';
import { ConfigurationError } from '../base/errors.js';
import type { OperationLogger } from '../base/telemetry.js';
import { assertAuditText } from '../base/validation.js';
import type { Settings } from '../core/core.js';
import { DEFAULT_KEY_CACHE_ENTRIES, Keyring } from '../crypto/keyring.js';
import { MasterKey } from '../crypto/master-key.js';
import { createOwnedPool } from '../db/pool.js';
import type { PoolLike } from '../db/queryable.js';
import { DEFAULT_SCHEMA, quoteSchema } from '../db/schema-name.js';
import type { CacheOptions } from '../secrets/cache.js';

/** Options of {@link createSecretsManager}. Each falls back to an environment variable, then a default. */
export interface SecretsManagerOptions {
  /**
   * PostgreSQL connection string. Env: `DATABASE_URL`. For a primary and its standbys, list every
   * host with `target_session_attrs=read-write` (libpq's syntax; docs/scaling.md, "High availability").
   */
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
  /** Seconds the replaced version stays readable as `previous`, 0-31536000 (default 86400). */
  previousVersionGraceSeconds?: number;
  /** Days a deleted secret can be restored, 0-3650 (default 30). */
  recoveryWindowDays?: number;
  /** Maximum connections of the pool tenant-secrets creates, 1-1000 (default 10). */
  maxConnections?: number;
  /** How long a call waits for a connection of that pool, 100-600000 ms (default 10000). */
  connectionTimeoutMillis?: number;
  /**
   * How soon after operations the manager seals their audit records into the hash chains, 100-3600000
   * ms, or 0 to leave sealing to `sealAudit()` / a periodic job (default 1000).
   */
  auditSealIntervalMs?: number;
  /**
   * Send the calls as named prepared statements, parsed once per connection (default true). Behind a
   * pooler that does not carry them across its server connections (PgBouncer before 1.21, or without
   * `max_prepared_statements`), the first refusal switches them off for this manager and the call is
   * retried unprepared; `false` never tries.
   */
  preparedStatements?: boolean;
  /**
   * Longest wait for a lock in any call, 100-600000 ms (default 10000); a wait that exceeds it fails
   * with a typed, retryable error. Shorter settings of the session are kept.
   */
  lockTimeoutMs?: number;
  /**
   * Tenants whose derived credentials and unwrapped data keys are kept in memory, 100-10000000
   * (default 100000; about 0.6 KB each). Beyond it, the least recently used are derived again.
   */
  keyCacheEntries?: number;
  /**
   * Read statements (current versions) this manager runs at once, 1-1000 (default 2). While any
   * runs, reads that arrive wait for the end of the event loop's turn (or for a free slot) and leave
   * together in one statement: one round trip and one commit for the lot, each read still
   * authorised, audited and answered on its own. Under load this keeps the server's CPUs on reads
   * rather than on per-statement overhead; a read made while none runs goes at once. 0 sends every
   * read as a statement of its own, as many at once as the pool allows.
   */
  concurrentReads?: number;
  /**
   * The same for plain writes (`set`, `rotate` without metadata, of existing secrets), 0-1000 (default
   * 2): each still checked, versioned and audited on its own. A write whose row another transaction
   * holds leaves the batch and waits on its own: the others never wait on it.
   */
  concurrentWrites?: number;
  /** Opt-in in-process cache of values read (default off). See docs/configuration.md. */
  cache?: CacheOptions | false;
  /** OpenTelemetry through `@opentelemetry/api` when installed: `'auto'` (default) or `false`. */
  openTelemetry?: 'auto' | false;
  /** Called after every operation with its name, outcome, error code and duration (never values). */
  logger?: OperationLogger;
  /** Environment to read fallbacks from (default `process.env`). */
  env?: Record<string, string | undefined>;
}

const KNOWN_OPTIONS = new Set<string>([
  'connectionString',
  'pool',
  'masterKey',
  'previousMasterKeys',
  'keyring',
  'actor',
  'schema',
  'maxVersions',
  'previousVersionGraceSeconds',
  'recoveryWindowDays',
  'maxConnections',
  'connectionTimeoutMillis',
  'auditSealIntervalMs',
  'preparedStatements',
  'lockTimeoutMs',
  'keyCacheEntries',
  'concurrentReads',
  'concurrentWrites',
  'cache',
  'openTelemetry',
  'logger',
  'env',
]);

export interface ResolvedConfig {
  pool: PoolLike;
  ownsPool: boolean;
  schema: string;
  keyring: Keyring;
  context: AuditContext;
  settings: Settings;
  auditSealIntervalMs: number;
  preparedStatements: boolean;
  lockTimeoutMs: number;
  keyCacheEntries: number;
  concurrentReads: number;
  concurrentWrites: number;
  cache: CacheOptions | false;
  openTelemetry: 'auto' | false;
  logger: OperationLogger | undefined;
}

/**
 * A keyring that is not configured: the manager can be created (a module-level
 * `createSecretsManager()` in an app whose build step has no key), and every use of a key fails with
 * this error instead. Printing it shows nothing.
 */
function unconfiguredKeyring(error: ConfigurationError): Keyring {
  return new Proxy(Object.create(Keyring.prototype) as Keyring, {
    get(_target, property) {
      if (property === inspect.custom || property === 'toJSON') return () => 'Keyring(not configured)';
      if (property === 'then') return undefined;
      throw error;
    },
  });
}

/** A pool that is not configured: every query fails with `error`; `end()` does nothing. */
function unconfiguredPool(error: ConfigurationError): PoolLike {
  return {
    query: () => Promise.reject(error),
    connect: () => Promise.reject(error),
    end: () => Promise.resolve(),
  };
}

const NO_MASTER_KEY =
  'no master key: TENANT_SECRETS_MASTER_KEY is not set and no `masterKey` option was given (32 random bytes as base64 or hex; `npx tenant-secrets keygen` makes one)';
const NO_DATABASE = 'no database: pass `connectionString` or `pool`, or set DATABASE_URL';

/**
 * The keyring from options, else from the environment (TENANT_SECRETS_MASTER_KEY and
 * TENANT_SECRETS_PREVIOUS_MASTER_KEYS). The library and the CLI both resolve keys here.
 * @param onMissing what to do when neither gives a current key: `'throw'` now, or `'defer'` to the
 *   first use of a key (an explicit empty or malformed key always throws now).
 * @throws {ConfigurationError} naming the setting, never the key.
 */
export function resolveKeyring(
  options: Pick<SecretsManagerOptions, 'keyring' | 'masterKey' | 'previousMasterKeys'>,
  env: Record<string, string | undefined>,
  cacheEntries: number = DEFAULT_KEY_CACHE_ENTRIES,
  onMissing: 'throw' | 'defer' = 'throw',
): Keyring {
  if (options.keyring !== undefined) {
    if (!(options.keyring instanceof Keyring)) throw new ConfigurationError('keyring must be a Keyring');
    return options.keyring;
  }
  const current = options.masterKey ?? env.TENANT_SECRETS_MASTER_KEY;
  if (current === undefined || current === '') {
    const error = new ConfigurationError(NO_MASTER_KEY);
    if (onMissing === 'defer' && options.masterKey === undefined) return unconfiguredKeyring(error);
    throw error;
  }
  if (typeof current !== 'string' && !(current instanceof MasterKey)) {
    throw new ConfigurationError(
      'masterKey must be a string (base64 or hex of 32 random bytes) or a MasterKey',
    );
  }
  const previous = options.previousMasterKeys ?? env.TENANT_SECRETS_PREVIOUS_MASTER_KEYS?.split(',') ?? [];
  if (!Array.isArray(previous)) {
    throw new ConfigurationError(
      'previousMasterKeys must be an array of keys (strings or MasterKey objects)',
    );
  }
  const parsedCurrent =
    typeof current === 'string' ? MasterKey.parse(current, 'masterKey / TENANT_SECRETS_MASTER_KEY') : current;
  const parsedPrevious = previous
    .filter((key) => typeof key !== 'string' || key.trim() !== '')
    .map((key, index) => {
      if (key instanceof MasterKey) return key;
      if (typeof key !== 'string') {
        throw new ConfigurationError(
          `previousMasterKeys (entry ${index + 1}) must be a string or a MasterKey`,
        );
      }
      return MasterKey.parse(key.trim(), `TENANT_SECRETS_PREVIOUS_MASTER_KEYS (entry ${index + 1})`);
    });
  return new Keyring(parsedCurrent, parsedPrevious, cacheEntries);
}

/**
 * The schema from options, else TENANT_SECRETS_SCHEMA, else `public`; checked as an identifier.
 * @throws {ConfigurationError}
 */
export function resolveSchema(schema: unknown, env: Record<string, string | undefined>): string {
  const resolved = schema ?? env.TENANT_SECRETS_SCHEMA ?? DEFAULT_SCHEMA;
  if (typeof resolved !== 'string') throw new ConfigurationError('schema must be a string');
  quoteSchema(resolved);
  return resolved;
}

/**
 * The audit actor from options, else TENANT_SECRETS_ACTOR, else `fallback`.
 * @throws {ConfigurationError} not 1-200 printable characters.
 */
export function resolveActor(
  actor: unknown,
  env: Record<string, string | undefined>,
  fallback = 'app',
): string {
  const resolved = actor ?? (env.TENANT_SECRETS_ACTOR || undefined) ?? fallback;
  try {
    assertAuditText(resolved, 'actor');
  } catch {
    throw new ConfigurationError('actor must be 1-200 printable characters');
  }
  return resolved as string;
}

/**
 * The pool: `options.pool`, else one created for `connectionString` or DATABASE_URL.
 * @param onMissing `'defer'`: when neither is set, a pool whose every query fails with the
 *   ConfigurationError (reported at first use, or by `ready()`).
 */
export function resolvePool(
  options: Pick<SecretsManagerOptions, 'pool' | 'connectionString'>,
  env: Record<string, string | undefined>,
  pool: { max: number; connectionTimeoutMillis: number },
  onMissing: 'throw' | 'defer' = 'throw',
): { pool: PoolLike; ownsPool: boolean } {
  if (options.pool !== undefined) {
    checkPool(options.pool);
    if (options.connectionString !== undefined) {
      throw new ConfigurationError('pass either `pool` or `connectionString`, not both');
    }
    return { pool: options.pool, ownsPool: false };
  }
  const connectionString = options.connectionString ?? env.DATABASE_URL;
  if (connectionString === undefined || connectionString === '') {
    const error = new ConfigurationError(NO_DATABASE);
    if (onMissing === 'defer' && options.connectionString === undefined) {
      return { pool: unconfiguredPool(error), ownsPool: false };
    }
    throw error;
  }
  if (typeof connectionString !== 'string') throw new ConfigurationError('connectionString must be a string');
  return { pool: createOwnedPool({ connectionString, ...pool }), ownsPool: true };
}

/** Reads of current versions a manager sends at once before it batches the rest (`concurrentReads`). */
export const DEFAULT_CONCURRENT_READS = 2;
/** The same for plain writes (`concurrentWrites`). */
export const DEFAULT_CONCURRENT_WRITES = 2;

function integerSetting(value: unknown, fallback: number, min: number, max: number, name: string): number {
  const result = value ?? fallback;
  if (typeof result !== 'number' || !Number.isInteger(result) || result < min || result > max) {
    throw new ConfigurationError(`${name} must be an integer from ${min} to ${max}`);
  }
  return result;
}

function checkPool(pool: unknown): asserts pool is PoolLike {
  const p = pool as Partial<PoolLike> | null;
  if (
    typeof p !== 'object' ||
    p === null ||
    typeof p.query !== 'function' ||
    typeof p.connect !== 'function' ||
    typeof p.end !== 'function'
  ) {
    throw new ConfigurationError('pool must be a pg Pool (or an object with query(), connect() and end())');
  }
}

/**
 * Resolves options in one fixed order: explicit option, then environment, then default. Everything
 * given is checked here, at start-up, so a bad key or setting fails before the first request; a key or
 * database the environment does not give fails at first use instead.
 * @throws {ConfigurationError}
 */
export function resolveConfig(options: SecretsManagerOptions = {}): ResolvedConfig {
  if (typeof options !== 'object' || options === null || Array.isArray(options)) {
    throw new ConfigurationError('options must be an object');
  }
  const unknown = Object.keys(options).filter((key) => !KNOWN_OPTIONS.has(key));
  if (unknown.length > 0) {
    throw new ConfigurationError(
      `unknown option${unknown.length > 1 ? 's' : ''} ${unknown.map((k) => JSON.stringify(k.slice(0, 40))).join(', ')} (known: ${[...KNOWN_OPTIONS].join(', ')})`,
    );
  }
  const env = options.env ?? process.env;
  if (typeof env !== 'object' || env === null) throw new ConfigurationError('env must be an object');
  const keyCacheEntries = integerSetting(
    options.keyCacheEntries,
    100_000,
    100,
    10_000_000,
    'keyCacheEntries',
  );
  const lockTimeoutMs = integerSetting(options.lockTimeoutMs, 10_000, 100, 600_000, 'lockTimeoutMs');
  const concurrentReads = integerSetting(
    options.concurrentReads,
    DEFAULT_CONCURRENT_READS,
    0,
    1000,
    'concurrentReads',
  );
  const concurrentWrites = integerSetting(
    options.concurrentWrites,
    DEFAULT_CONCURRENT_WRITES,
    0,
    1000,
    'concurrentWrites',
  );
  // A key or database missing from the environment is reported at first use (and by ready()), so
  // an app may create its manager at module level and still build without them; a key or setting
  // passed explicitly, or present and malformed, fails here.
  const keyring = resolveKeyring(options, env, keyCacheEntries, 'defer');
  const schema = resolveSchema(options.schema, env);
  const actor = resolveActor(options.actor, env);
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
  const maxConnections = integerSetting(options.maxConnections, 10, 1, 1000, 'maxConnections');
  const connectionTimeoutMillis = integerSetting(
    options.connectionTimeoutMillis,
    10_000,
    100,
    600_000,
    'connectionTimeoutMillis',
  );
  const auditSealIntervalMs = integerSetting(
    options.auditSealIntervalMs,
    1000,
    0,
    3_600_000,
    'auditSealIntervalMs',
  );
  if (auditSealIntervalMs > 0 && auditSealIntervalMs < 100) {
    throw new ConfigurationError('auditSealIntervalMs must be 0 (off) or from 100 to 3600000');
  }
  if (
    options.openTelemetry !== undefined &&
    options.openTelemetry !== 'auto' &&
    options.openTelemetry !== false
  ) {
    throw new ConfigurationError("openTelemetry must be 'auto' or false");
  }
  if (options.preparedStatements !== undefined && typeof options.preparedStatements !== 'boolean') {
    throw new ConfigurationError('preparedStatements must be true or false');
  }
  if (options.logger !== undefined && typeof options.logger !== 'function') {
    throw new ConfigurationError('logger must be a function receiving operation events');
  }
  const cache = options.cache ?? false;
  if (cache !== false && (typeof cache !== 'object' || cache === null || Array.isArray(cache))) {
    throw new ConfigurationError('cache must be false or an object { ttlMs, maxEntries }');
  }
  const { pool, ownsPool } = resolvePool(
    options,
    env,
    { max: maxConnections, connectionTimeoutMillis },
    'defer',
  );
  return {
    pool,
    ownsPool,
    schema,
    keyring,
    context: { actor },
    settings,
    auditSealIntervalMs,
    preparedStatements: options.preparedStatements ?? true,
    lockTimeoutMs,
    keyCacheEntries,
    concurrentReads,
    concurrentWrites,
    cache,
    openTelemetry: options.openTelemetry ?? 'auto',
    logger: options.logger,
  };
}
