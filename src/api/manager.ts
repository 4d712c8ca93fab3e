import { auditOperations } from '../audit/operations.js';
import { createBackgroundSealer, SealBatch, sealOperations } from '../audit/seal.js';
import type { AuditContext } from '../base/audit-context.js';
import { ConfigurationError, InvalidInputError } from '../base/errors.js';
import { createTelemetry, type Telemetry } from '../base/telemetry.js';
import { assertTenantId } from '../base/validation.js';
import { type Core, createCore } from '../core/core.js';
import type { BatchedRead, BatchedWrite, FetchRow, PutRow } from '../core/rows.js';
import { DataKeys } from '../crypto/data-keys.js';
import { CallBatches } from '../db/call-batches.js';
import { poolExecutor, quietPrelude, type SqlExecutor, transactionExecutor } from '../db/executor.js';
import type { Queryable } from '../db/queryable.js';
import { quoteSchema } from '../db/schema-name.js';
import { pinOperations } from '../keys/pins.js';
import { purgeOperations } from '../keys/purge.js';
import { registrationOperations } from '../keys/registration.js';
import { keyOperations } from '../keys/rotation.js';
import { legacyOperations } from '../legacy/import.js';
import { exportSchemaSql, migrate } from '../schema/migrate.js';
import { readiness, statusOn } from '../schema/status.js';
import { SecretCache } from '../secrets/cache.js';
import { lifecycleOperations } from '../secrets/lifecycle.js';
import {
  type GetOptions,
  type ReadResult,
  type SecretOperations,
  secretOperations,
} from '../secrets/operations.js';
import { resolveConfig, type SecretsManagerOptions } from './config.js';
import type {
  AuditTrailApi,
  InstallationApi,
  KeysApi,
  MigrateInstallOptions,
  SecretsApi,
  SecretsManager,
  TransactionSecrets,
} from './interfaces.js';

export type {
  AuditTrailApi,
  InstallationApi,
  KeysApi,
  ManagerStatus,
  SecretsApi,
  SecretsManager,
  TransactionSecrets,
} from './interfaces.js';

/** A telemetry span around one operation, under its one public name. */
type Span = <A extends unknown[], R>(
  name: string,
  fn: (...args: A) => Promise<R>,
) => (...args: A) => Promise<R>;

function spans(telemetry: Telemetry): Span {
  return (name, fn) =>
    (...args) =>
      telemetry.run(name, () => fn(...args));
}

/** What a value-changing operation makes stale in the manager's read cache. */
interface Forget {
  /** The operation, followed by forgetting its secret (whatever the outcome). */
  secret<A extends [string, string, ...unknown[]], R>(
    fn: (...args: A) => Promise<R>,
  ): (...args: A) => Promise<R>;
  /** The operation, followed by forgetting every secret of its tenant. */
  tenant<A extends [string, ...unknown[]], R>(fn: (...args: A) => Promise<R>): (...args: A) => Promise<R>;
}

function forgetting(cache: SecretCache | undefined): Forget {
  const after =
    (drop: (args: unknown[]) => void) =>
    <A extends unknown[], R>(fn: (...args: A) => Promise<R>) =>
    async (...args: A): Promise<R> => {
      try {
        return await fn(...args);
      } finally {
        drop(args);
      }
    };
  if (!cache) return { secret: (fn) => fn, tenant: (fn) => fn };
  return {
    secret: after(([tenantId, keyName]) => {
      if (typeof tenantId === 'string' && typeof keyName === 'string') cache.invalidate(tenantId, keyName);
    }),
    tenant: after(([tenantId]) => {
      if (typeof tenantId === 'string') cache.invalidate(tenantId);
    }),
  };
}

/**
 * `get` and `getWithVersion` through the read cache: a hit is answered from memory (and its audit
 * record written in the next flush), a miss reads and fills the cache unless a write to the same
 * secret raced it (read tickets). Either way the span carries the operation's own name.
 */
function cachedReads(
  getWithVersion: SecretOperations['getWithVersion'],
  cache: SecretCache,
  telemetry: Telemetry,
  actorOf: (context: AuditContext | undefined) => string,
): Pick<SecretsApi, 'get' | 'getWithVersion'> {
  const usable = (options: GetOptions) =>
    options.version === undefined && options.allowExpired !== true && options.fresh !== true;
  const miss = async (tenantId: string, keyName: string, options: GetOptions) => {
    if (!usable(options)) return getWithVersion(tenantId, keyName, options);
    const ticket = cache.beginRead();
    let found: ReadResult | null;
    try {
      found = await getWithVersion(tenantId, keyName, options);
    } catch (error) {
      cache.done(ticket);
      throw error;
    }
    if (found) cache.set(tenantId, keyName, found.value, found.version, found.expiresAt, ticket);
    else cache.done(ticket);
    return found;
  };
  const read = (name: string, tenantId: string, keyName: string, options: GetOptions = {}) => {
    if (usable(options)) {
      assertTenantId(tenantId);
      const hit = cache.get(tenantId, keyName);
      if (hit) {
        cache.recordHit(tenantId, keyName, hit.version, actorOf(options.context));
        const result: ReadResult = { value: hit.value, version: hit.version, expiresAt: hit.expiresAt };
        return telemetry.run(name, async () => result, { cached: true });
      }
    }
    return telemetry.run(name, () => miss(tenantId, keyName, options));
  };
  return {
    getWithVersion: (tenantId, keyName, options) => read('getWithVersion', tenantId, keyName, options),
    get: async (tenantId, keyName, options) => (await read('get', tenantId, keyName, options))?.value ?? null,
  };
}

/** The data plane on one core; reads go through `readCache` when given, writes always forget. */
function dataPlane(
  core: Core,
  telemetry: Telemetry,
  cache: SecretCache | undefined,
  readCache: boolean,
): SecretsApi {
  const span = spans(telemetry);
  const forget = forgetting(cache);
  const secrets = secretOperations(core);
  const lifecycle = lifecycleOperations(core);
  const reads =
    cache && readCache
      ? cachedReads(
          secrets.getWithVersion,
          cache,
          telemetry,
          (context) => core.sqlContext(context).actor ?? 'app',
        )
      : { get: span('get', secrets.get), getWithVersion: span('getWithVersion', secrets.getWithVersion) };
  return {
    set: span('set', forget.secret(secrets.set)),
    get: reads.get,
    getWithVersion: reads.getWithVersion,
    getMany: span('getMany', lifecycle.getMany),
    rotate: span('rotate', forget.secret(secrets.rotate)),
    delete: span('delete', forget.secret(secrets.delete)),
    restore: span('restore', forget.secret(lifecycle.restore)),
    rollback: span('rollback', forget.secret(lifecycle.rollback)),
    destroy: span('destroy', forget.secret(lifecycle.destroy)),
    destroyVersions: span('destroyVersions', forget.secret(lifecycle.destroyVersions)),
    updateMetadata: span('updateMetadata', forget.secret(lifecycle.updateMetadata)),
    list: span('list', secrets.list),
    versions: span('versions', secrets.versions),
    purgeDeleted: span('purgeDeleted', lifecycle.purgeDeleted),
  };
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

function transactionSecrets(core: Core, shared: Shared): TransactionSecrets {
  const span = spans(shared.telemetry);
  // Reads see the caller's transaction, never the cache; writes still make the cache forget.
  return {
    ...dataPlane(core, shared.telemetry, shared.cache, false),
    purgeTenant: span('purgeTenant', forgetting(shared.cache).tenant(purgeOperations(core).purgeTenant)),
    withContext: (context) => transactionSecrets(core.withContext(context), shared),
  };
}

function auditTrailOf(core: Core, shared: Shared): AuditTrailApi {
  const span = spans(shared.telemetry);
  const audit = auditOperations(core, shared.sealBatch);
  return {
    seal: span('sealAudit', audit.sealAudit),
    query: span('audit', audit.audit),
    // A generator: each record is yielded as it is read, so it is not one span.
    export: audit.exportAudit,
    verify: span('verifyAudit', audit.verifyAudit),
    prune: span('pruneAudit', audit.pruneAudit),
    resignCheckpoints: span('resignAuditCheckpoints', audit.resignAuditCheckpoints),
  };
}

function keysOf(core: Core, shared: Shared, auditTrail: AuditTrailApi): KeysApi {
  const span = spans(shared.telemetry);
  const forget = forgetting(shared.cache);
  const registration = registrationOperations(core);
  const rotation = keyOperations(core, {
    resignAuditCheckpoints: auditTrail.resignCheckpoints,
    registerMasterKey: registration.registerMasterKey,
  });
  const pins = pinOperations(core);
  return {
    register: span('registerMasterKey', registration.registerMasterKey),
    unregister: span('unregisterMasterKey', registration.unregisterMasterKey),
    rotateMaster: span('rotateMasterKey', rotation.rotateMasterKey),
    rotateTenant: span('rotateTenantKey', forget.tenant(rotation.rotateTenantKey)),
    purgeTenant: span('purgeTenant', forget.tenant(purgeOperations(core).purgeTenant)),
    status: span('keyStatus', rotation.keyStatus),
    bundle(tenantId) {
      assertTenantId(tenantId);
      return core.keyring.bundleFor(tenantId);
    },
    pin: span('pinTenant', pins.pinTenant),
    unpin: span('unpinTenant', pins.unpinTenant),
    pins: span('tenantPins', pins.tenantPins),
  };
}

function installationOf(core: Core, shared: Shared, keys: KeysApi): InstallationApi {
  const span = spans(shared.telemetry);
  return {
    migrate: span('migrate', (options: MigrateInstallOptions = {}) =>
      migrate(shared.base, {
        schema: core.schema,
        grantTo: options.grantTo,
        grantOperatorTo: options.grantOperatorTo,
        ...(options.distribute !== undefined && { distribute: options.distribute }),
        keyring: core.keyring,
        context: core.sqlContext(),
      }),
    ),
    ready: span('ready', () => readiness(shared.base, core.schema, core.keyring.ids)),
    status: span('status', async () => {
      const base = await statusOn(shared.base, core.schema);
      const ready = base.schemaVersion >= base.libraryVersion;
      return { ...base, keys: ready ? await keys.status() : null };
    }),
    importLegacy: span('importLegacy', legacyOperations(core).importLegacy),
    sql: (options = {}) => exportSchemaSql({ ...options, schema: core.schema }),
  };
}

function build(core: Core, shared: Shared): SecretsManager {
  const auditTrail = auditTrailOf(core, shared);
  const keys = keysOf(core, shared, auditTrail);
  const installation = installationOf(core, shared, keys);
  return {
    ...dataPlane(core, shared.telemetry, shared.cache, true),
    schema: core.schema,
    get masterKeyIds() {
      return core.keyring.ids;
    },
    auditTrail,
    keys,
    installation,
    withContext: (context) => build(core.withContext(context), shared),
    inTransaction(db: Queryable) {
      if (typeof db !== 'object' || db === null || typeof (db as Queryable).query !== 'function') {
        throw new InvalidInputError('inTransaction needs an object with query(text, values)', 'db');
      }
      return transactionSecrets(core.withExecutor(transactionExecutor(db, () => shared.prelude)), shared);
    },
    close: shared.close,
    // The names of release 0.2, kept for one release.
    migrate: installation.migrate,
    ready: installation.ready,
    status: installation.status,
    importLegacy: installation.importLegacy,
    sealAudit: auditTrail.seal,
    audit: auditTrail.query,
    exportAudit: auditTrail.export,
    verifyAudit: auditTrail.verify,
    pruneAudit: auditTrail.prune,
    resignAuditCheckpoints: auditTrail.resignCheckpoints,
    registerMasterKey: keys.register,
    unregisterMasterKey: keys.unregister,
    rotateMasterKey: keys.rotateMaster,
    rotateTenantKey: keys.rotateTenant,
    purgeTenant: keys.purgeTenant,
    keyStatus: keys.status,
    tenantKeyBundle: keys.bundle,
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
  const prelude = quietPrelude(qs, config.lockTimeoutMs);
  const dataKeys = new DataKeys(config.keyring, config.keyCacheEntries);
  const sealBatch = new SealBatch();
  const base = poolExecutor(config.pool, () => prelude, {
    preparedStatements: config.preparedStatements,
    lockTimeoutMs: config.lockTimeoutMs,
  });
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
  const reads = new CallBatches<BatchedRead, FetchRow | undefined>(config.concurrentReads, async (items) =>
    (
      await core.query<FetchRow & { ord: number }>(
        'get',
        `SELECT * FROM ${qs}.tenant_secret_fetch_batch($1::text[], $2::text[], $3::bytea[], $4::boolean[], $5::text[]::jsonb[])`,
        [
          items.map((i) => i.tenantId),
          items.map((i) => i.keyName),
          items.map((i) => i.credentials),
          items.map((i) => i.allowExpired),
          items.map((i) => i.context),
        ],
      )
    ).map((row) => ({ ord: row.ord, status: row.status, row: { ...row, detail: null } })),
  );
  const writes = new CallBatches<BatchedWrite, PutRow | undefined>(config.concurrentWrites, async (items) =>
    (
      await core.query<{ ord: number; status: string; version: number | null }>(
        'set',
        `SELECT * FROM ${qs}.tenant_secret_put_batch($1::text[], $2::text[], $3::bytea[], $4::integer[], $5::bytea[], $6::text[], $7::integer[], $8::integer[], $9::integer[], $10::text[]::jsonb[])`,
        [
          items.map((i) => i.tenantId),
          items.map((i) => i.keyName),
          items.map((i) => i.value),
          items.map((i) => i.keyVersion),
          items.map((i) => i.dek),
          items.map((i) => i.mode),
          items.map((i) => i.ifVersion),
          items.map((i) => i.maxVersions),
          items.map((i) => i.graceSeconds),
          items.map((i) => i.context),
        ],
      )
    ).map((row) => ({
      ord: row.ord,
      status: row.status,
      row: {
        status: 'ok' as const,
        version: row.version,
        detail: null,
        key_version: null,
        master_key_id: null,
        wrapped_key: null,
      },
    })),
  );
  const core: Core = createCore({
    executor: base,
    schema: config.schema,
    qs,
    keyring: config.keyring,
    dataKeys,
    settings: config.settings,
    reads,
    writes,
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
