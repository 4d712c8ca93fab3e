import type { AuditContext } from './audit/context.js';
import { type AuditOperations, auditOperations } from './audit/operations.js';
import { resolveConfig, type SecretsManagerOptions } from './config.js';
import { type Core, createCore } from './core.js';
import { type MigrateResult, migrate } from './db/migrate.js';
import { quoteSchema } from './db/schema-name.js';
import type { TenantKeyBundle } from './keys/keyring.js';
import { type PurgeOperations, purgeOperations } from './keys/purge.js';
import { type KeyOperations, keyOperations } from './keys/rotation.js';
import { type LegacyOperations, legacyOperations } from './legacy/import.js';
import { type LifecycleOperations, lifecycleOperations } from './secrets/lifecycle.js';
import { type SecretOperations, secretOperations } from './secrets/operations.js';
import { databaseStatus, type ManagerStatus } from './status.js';
import { assertTenantId } from './validation.js';

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
   * Applies pending schema migrations (idempotent; safe when several processes run it at once).
   * @param options.grantTo application roles: EXECUTE on the data-plane functions only.
   * @param options.grantOperatorTo operator roles: also audit, key rotation, purge and import.
   */
  migrate(options?: {
    grantTo?: readonly string[];
    grantOperatorTo?: readonly string[];
  }): Promise<MigrateResult>;
  /** A manager sharing this one's pool whose audit records carry `context` (actor, request id, ip, user agent). */
  withContext(context: AuditContext): SecretsManager;
  /**
   * The tenant's key bundle for SQL-side callers of `upsert_tenant_secret` / `get_tenant_secret`
   * (e.g. Supabase RPC): narrow per-tenant keys, never the master key. Treat it as a secret.
   */
  tenantKeyBundle(tenantId: string): TenantKeyBundle;
  /**
   * Schema version, master-key ids in use, counts, the server's logging settings, and `keyStatus()`
   * (null while the schema is older than this library). Metadata only.
   * @throws {DatabaseUnavailableError} the database cannot be reached.
   */
  status(): Promise<ManagerStatus>;
  /** Closes the pool if tenant-secrets created it. */
  close(): Promise<void>;
}

function build(core: Core, close: () => Promise<void>): SecretsManager {
  const audit = auditOperations(core);
  const keys = keyOperations(core, { resignAuditCheckpoints: audit.resignAuditCheckpoints });
  return {
    ...secretOperations(core),
    ...lifecycleOperations(core),
    ...audit,
    ...keys,
    ...purgeOperations(core),
    ...legacyOperations(core),
    schema: core.schema,
    masterKeyIds: core.keyring.ids,
    migrate: (options = {}) =>
      migrate(core.pool, {
        schema: core.schema,
        grantTo: options.grantTo,
        grantOperatorTo: options.grantOperatorTo,
      }),
    withContext: (context) => build(core.withContext(context), close),
    async status() {
      const base = await databaseStatus(core.pool, core.schema);
      const ready = base.schemaVersion >= base.libraryVersion;
      return { ...base, keys: ready ? await keys.keyStatus() : null };
    },
    tenantKeyBundle(tenantId) {
      assertTenantId(tenantId);
      return core.keyring.bundleFor(tenantId);
    },
    close,
  };
}

/**
 * Creates a secrets manager on an explicit configuration. Options fall back to environment
 * variables (`DATABASE_URL`, `TENANT_SECRETS_MASTER_KEY`, ...), then defaults; all are validated
 * now, so a bad key fails at start-up.
 * @throws {ConfigurationError} missing or malformed master key, database settings or tunables.
 */
export function createSecretsManager(options: SecretsManagerOptions = {}): SecretsManager {
  const config = resolveConfig(options);
  const core = createCore({
    pool: config.pool,
    schema: config.schema,
    qs: quoteSchema(config.schema),
    keyring: config.keyring,
    settings: config.settings,
    context: config.context,
  });
  let closed: Promise<void> | undefined;
  const close = () => {
    closed ??= config.ownsPool ? config.pool.end() : Promise.resolve();
    return closed;
  };
  return build(core, close);
}
