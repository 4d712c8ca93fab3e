import { type AuditOperations, auditOperations } from '../audit/operations.js';
import { createBackgroundSealer, SealBatch, sealOperations } from '../audit/seal.js';
import type { AuditContext } from '../base/audit-context.js';
import { ConfigurationError, InvalidInputError } from '../base/errors.js';
import { createTelemetry, type Telemetry } from '../base/telemetry.js';
import { assertTenantId } from '../base/validation.js';
import { type Core, createCore } from '../core/core.js';
import { DataKeys } from '../crypto/data-keys.js';
import type { TenantKeyBundle } from '../crypto/keyring.js';
import { poolExecutor, type SqlExecutor, transactionExecutor } from '../db/executor.js';
import type { Queryable } from '../db/queryable.js';
import { quoteSchema } from '../db/schema-name.js';
import { type PurgeOperations, purgeOperations } from '../keys/purge.js';
import {
  type RegistrationResult,
  registrationOperations,
  type UnregistrationResult,
} from '../keys/registration.js';
import { type KeyOperations, type KeyStatus, keyOperations } from '../keys/rotation.js';
import { type LegacyOperations, legacyOperations } from '../legacy/import.js';
import { type MigrateResult, migrate } from '../schema/migrate.js';
import { type DatabaseStatus, type ReadyStatus, readiness, statusOn } from '../schema/status.js';
import { SecretCache } from '../secrets/cache.js';
import { type LifecycleOperations, lifecycleOperations } from '../secrets/lifecycle.js';
import { type GetOptions, type SecretOperations, secretOperations } from '../secrets/operations.js';
import { resolveConfig, type SecretsManagerOptions } from './config.js';

/** `status()`: the database's state and, once the schema is up to date, `keyStatus()`. */
export interface ManagerStatus extends DatabaseStatus {
  /** `keyStatus()` (per master key usage, `readyToDropPrevious`); null while the schema is not up to date. */
  keys: KeyStatus | null;
}

/** The operations that run inside a caller's transaction (see `inTransaction`). */
export type TransactionSecrets = SecretOperations &
  LifecycleOperations &
  Pick<PurgeOperations, 'purgeTenant'> & {
    /** The same, with another audit context. */
    withContext(context: AuditContext): TransactionSecrets;
  };

export interface SecretsManager
  extends SecretOperations,
    LifecycleOperations,
    AuditOperations,
    KeyOperations,
    PurgeOperations,
    LegacyOperations {
  /** Schema holding tenant-secrets' objects. */
  readonly schema: string;
  /** Fingerprint ids of the configured master keys, current first (never the keys). */
  readonly masterKeyIds: readonly string[];
  /**
   * Brings the schema to this library's version, repairs what was changed by hand, removes triggers,
   * rules and policies it did not create, revokes privileges it did not grant, and registers the
   * configured master keys (idempotent; safe when several processes run it at once). Run it as the
   * role that owns the schema (an operator step); application roles call `ready()`.
   * @param options.grantTo application roles: EXECUTE on the data-plane functions only.
   * @param options.grantOperatorTo operator roles: also audit, key rotation, purge and import.
   *   Both are recorded in the database; omitted, the recorded roles are kept.
   */
  migrate(options?: {
    grantTo?: readonly string[];
    grantOperatorTo?: readonly string[];
  }): Promise<MigrateResult>;
  /** A manager sharing this one's pool whose audit records carry `context` (actor, request id, ip, user agent). */
  withContext(context: AuditContext): SecretsManager;
  /**
   * The data-plane operations bound to a transaction the caller owns, so they commit or roll back
   * with the caller's own statements. `db` is anything with `query(text, values) → { rows }` on that
   * transaction: a `pg` client between BEGIN and COMMIT, or a three-line adapter for Kysely, Drizzle
   * or postgres.js (docs/transactions.md). A refused call (not found, conflict, ...) does not abort
   * the transaction; a database error does.
   */
  inTransaction(db: Queryable): TransactionSecrets;
  /**
   * The tenant's key bundle for SQL-side callers of `upsert_tenant_secret` / `get_tenant_secret`
   * (e.g. Supabase RPC): narrow per-tenant keys and proofs, never the master key. Treat it as a
   * secret (it is the capability for that tenant) and keep it server-side.
   */
  tenantKeyBundle(tenantId: string): TenantKeyBundle;
  /**
   * Schema version, drift, foreign triggers/rules/policies, unexpected privileges, logging settings,
   * the audit sealer's backlog, `keyStatus()`, and a list of `problems`. Needs operator grants.
   * @throws {DatabaseUnavailableError} the database cannot be reached.
   */
  status(): Promise<ManagerStatus>;
  /**
   * Readiness check for an application role (works with `migrate({ grantTo })`'s grants): schema
   * version, functions as released, current master key registered.
   * @throws {SchemaNotReadyError} what is missing, and what the owner should run.
   */
  ready(): Promise<ReadyStatus>;
  /**
   * Registers the keyring's master keys in the database so they may vouch for new tenants. The owner
   * may always; another role may when its keyring holds an already registered key (e.g. an
   * application during a master-key rotation). `migrate()` and `rotateMasterKey()` do it.
   */
  registerMasterKey(): Promise<RegistrationResult>;
  /**
   * Unregisters a master key by id so it can no longer vouch for tenants: the last step of retiring a
   * key (or of containing a leaked one) once its successor is registered. Owner or operator roles.
   * Data keys it still wraps keep working for holders of that key until `rotateMasterKey()` moves
   * them. Refused for the only registered key unless `force`.
   */
  unregisterMasterKey(masterKeyId: string, options?: { force?: boolean }): Promise<UnregistrationResult>;
  /** Seals what this process left pending, writes cached-read audit records, closes the pool if tenant-secrets created it. */
  close(): Promise<void>;
}

/** Operation names that are not calls of their own (not wrapped by telemetry). */
const NOT_TRACED = new Set(['exportAudit']);

/** Wraps every async method of `ops` in a telemetry span. */
function traced<T extends object>(ops: T, telemetry: Telemetry): T {
  const out: Record<string, unknown> = {};
  for (const [name, value] of Object.entries(ops)) {
    if (typeof value !== 'function' || NOT_TRACED.has(name)) {
      out[name] = value;
      continue;
    }
    out[name] = (...args: unknown[]) =>
      telemetry.run(name, () => (value as (...a: unknown[]) => Promise<unknown>)(...args));
  }
  return out as T;
}

/** Value-changing operations, and what they make stale in the cache. */
const INVALIDATES_SECRET = [
  'set',
  'rotate',
  'delete',
  'destroy',
  'rollback',
  'restore',
  'updateMetadata',
  'destroyVersions',
];
const INVALIDATES_TENANT = ['purgeTenant', 'rotateTenantKey'];

function cached<T extends SecretOperations & Record<string, unknown>>(
  ops: T,
  cache: SecretCache,
  telemetry: Telemetry,
  actorOf: (context: AuditContext | undefined) => string,
): T {
  const out: Record<string, unknown> = { ...ops };
  const usable = (options: GetOptions) =>
    options.version === undefined && options.allowExpired !== true && options.fresh !== true;
  const getWithVersion = async (tenantId: string, keyName: string, options: GetOptions = {}) => {
    if (usable(options)) {
      assertTenantId(tenantId);
      const hit = cache.get(tenantId, keyName);
      if (hit) {
        cache.recordHit(tenantId, keyName, hit.version, actorOf(options.context));
        return telemetry.run(
          'get',
          async () => ({ value: hit.value, version: hit.version, expiresAt: hit.expiresAt }),
          {
            cached: true,
          },
        );
      }
    }
    if (!usable(options)) return ops.getWithVersion(tenantId, keyName, options);
    const ticket = cache.beginRead();
    let found: Awaited<ReturnType<typeof ops.getWithVersion>>;
    try {
      found = await ops.getWithVersion(tenantId, keyName, options);
    } catch (error) {
      cache.done(ticket);
      throw error;
    }
    if (found) cache.set(tenantId, keyName, found.value, found.version, found.expiresAt, ticket);
    else cache.done(ticket);
    return found;
  };
  out.getWithVersion = getWithVersion;
  out.get = async (tenantId: string, keyName: string, options: GetOptions = {}) =>
    (await getWithVersion(tenantId, keyName, options))?.value ?? null;
  for (const name of INVALIDATES_SECRET) {
    const fn = ops[name] as
      | ((tenantId: string, keyName: string, ...rest: unknown[]) => Promise<unknown>)
      | undefined;
    if (!fn) continue;
    out[name] = async (tenantId: string, keyName: string, ...rest: unknown[]) => {
      try {
        return await fn(tenantId, keyName, ...rest);
      } finally {
        if (typeof tenantId === 'string' && typeof keyName === 'string') cache.invalidate(tenantId, keyName);
      }
    };
  }
  for (const name of INVALIDATES_TENANT) {
    const fn = ops[name] as ((tenantId: string, ...rest: unknown[]) => Promise<unknown>) | undefined;
    if (!fn) continue;
    out[name] = async (tenantId: string, ...rest: unknown[]) => {
      try {
        return await fn(tenantId, ...rest);
      } finally {
        if (typeof tenantId === 'string') cache.invalidate(tenantId);
      }
    };
  }
  return out as T;
}

interface Shared {
  base: SqlExecutor;
  /** The quiet prelude's statement (it carries the lock timeout). */
  prelude: string;
  /** The batch size every sealing call of this manager uses (it adapts to statement timeouts). */
  sealBatch: SealBatch;
  telemetry: Telemetry;
  cache: SecretCache | undefined;
  close: () => Promise<void>;
}

function transactionSecrets(core: Core, telemetry: Telemetry): TransactionSecrets {
  return {
    ...traced(
      {
        ...secretOperations(core),
        ...lifecycleOperations(core),
        purgeTenant: purgeOperations(core).purgeTenant,
      },
      telemetry,
    ),
    withContext: (context) => transactionSecrets(core.withContext(context), telemetry),
  };
}

function build(core: Core, shared: Shared): SecretsManager {
  const { telemetry, cache } = shared;
  const audit = auditOperations(core, shared.sealBatch);
  const registration = registrationOperations(core);
  const keys = keyOperations(core, {
    resignAuditCheckpoints: audit.resignAuditCheckpoints,
    registerMasterKey: registration.registerMasterKey,
  });
  let ops = traced(
    {
      ...secretOperations(core),
      ...lifecycleOperations(core),
      ...audit,
      ...keys,
      ...purgeOperations(core),
      ...legacyOperations(core),
      ...registration,
    },
    telemetry,
  );
  if (cache) ops = cached(ops, cache, telemetry, (context) => core.sqlContext(context).actor ?? 'app');
  return {
    ...ops,
    schema: core.schema,
    masterKeyIds: core.keyring.ids,
    migrate: (options = {}) =>
      telemetry.run('migrate', () =>
        migrate(shared.base, {
          schema: core.schema,
          grantTo: options.grantTo,
          grantOperatorTo: options.grantOperatorTo,
          keyring: core.keyring,
          context: core.sqlContext(),
        }),
      ),
    withContext: (context) => build(core.withContext(context), shared),
    inTransaction(db: Queryable) {
      if (typeof db !== 'object' || db === null || typeof (db as Queryable).query !== 'function') {
        throw new InvalidInputError('inTransaction needs an object with query(text, values)', 'db');
      }
      return transactionSecrets(core.withExecutor(transactionExecutor(db, () => shared.prelude)), telemetry);
    },
    async status() {
      return telemetry.run('status', async () => {
        const base = await statusOn(shared.base, core.schema);
        const ready = base.schemaVersion >= base.libraryVersion;
        return { ...base, keys: ready ? await keys.keyStatus() : null };
      });
    },
    ready: () => telemetry.run('ready', () => readiness(shared.base, core.schema, core.keyring.ids)),
    tenantKeyBundle(tenantId) {
      assertTenantId(tenantId);
      return core.keyring.bundleFor(tenantId);
    },
    close: shared.close,
  };
}

/**
 * Creates a secrets manager on an explicit configuration. Options fall back to environment
 * variables (`DATABASE_URL`, `TENANT_SECRETS_MASTER_KEY`, ...), then defaults; all are validated
 * now (unknown option names included), so a bad key or setting fails at start-up.
 * @throws {ConfigurationError} missing or malformed master key, database settings or tunables.
 */
export function createSecretsManager(options: SecretsManagerOptions = {}): SecretsManager {
  const config = resolveConfig(options);
  const qs = quoteSchema(config.schema);
  const prelude = `SELECT FROM ${qs}.tenant_secret_quiet(${config.lockTimeoutMs})`;
  const dataKeys = new DataKeys(config.keyring, config.keyCacheEntries);
  const sealBatch = new SealBatch();
  const base = poolExecutor(config.pool, () => prelude, { preparedStatements: config.preparedStatements });
  const telemetry = createTelemetry({ openTelemetry: config.openTelemetry, logger: config.logger });
  const cache = config.cache === false ? undefined : new SecretCache(config.cache);
  let closed: Promise<void> | undefined;
  const sealCore = createCore({
    executor: base,
    schema: config.schema,
    qs,
    keyring: config.keyring,
    dataKeys,
    settings: config.settings,
    context: config.context,
    telemetry,
    onAudited: () => undefined,
  });
  // Each background pass seals batch after batch until one is not full, so the sealer keeps up with
  // bursts (a getMany appends 100 records) instead of sealing one batch per interval.
  const sealer = createBackgroundSealer(
    (limit, wait) => sealOperations(sealCore, sealBatch).sealAudit({ limit, wait, all: true }),
    config.auditSealIntervalMs,
    telemetry,
  );
  const core = createCore({
    executor: base,
    schema: config.schema,
    qs,
    keyring: config.keyring,
    dataKeys,
    settings: config.settings,
    context: config.context,
    telemetry,
    onAudited: () => sealer.touch(),
    onAuditedInCallerTransaction: () => sealer.touchInCallerTransaction(),
  });
  let flushTimer: ReturnType<typeof setInterval> | undefined;
  const flushCachedReads = async () => {
    if (!cache) return;
    const hits = cache.drainHits();
    if (hits.length === 0) return;
    const byCall = new Map<string, typeof hits>();
    for (const hit of hits) {
      const k = `${hit.tenantId}\u0000${hit.actor}`;
      byCall.set(k, [...(byCall.get(k) ?? []), hit]);
    }
    // Ages, not times: the database places them by its own clock.
    const now = performance.now();
    for (const group of byCall.values()) {
      const first = group[0];
      if (!first) continue;
      try {
        for (let i = 0; i < group.length; i += 1000) {
          const batch = group.slice(i, i + 1000);
          await core.query(
            'auditCachedReads',
            `SELECT status FROM ${qs}.tenant_secret_audit_cached_reads($1, $2, $3::text[], $4::integer[], $5::integer[], $6::bigint[], $7::bigint[], $8::text::jsonb)`,
            [
              first.tenantId,
              config.keyring.credentialsBytes(first.tenantId),
              batch.map((h) => h.keyName),
              batch.map((h) => h.version),
              batch.map((h) => h.count),
              batch.map((h) => Math.max(0, Math.round(now - h.first))),
              batch.map((h) => Math.max(0, Math.round(now - h.last))),
              JSON.stringify({ actor: first.actor }),
            ],
          );
        }
      } catch (error) {
        cache.restoreHits(group);
        telemetry.report({
          operation: 'auditCachedReads',
          outcome: 'failure',
          errorCode: (error as { code?: string }).code ?? 'UNEXPECTED',
          durationMs: 0,
        });
      }
    }
  };
  if (cache) {
    flushTimer = setInterval(() => void flushCachedReads(), cache.auditIntervalMs);
    flushTimer.unref?.();
  }
  const close = () => {
    closed ??= (async () => {
      if (flushTimer) clearInterval(flushTimer);
      await flushCachedReads().catch(() => undefined);
      cache?.clear();
      await sealer.stop();
      if (config.ownsPool) await config.pool.end();
    })();
    return closed;
  };
  if (config.pool === undefined) throw new ConfigurationError('no pool');
  return build(core, { base, prelude, sealBatch, telemetry, cache, close });
}
