import type { AuditContext } from '../base/audit-context.js';
import { InvalidInputError, SecretNotFoundError } from '../base/errors.js';
import { assertTenantId } from '../base/validation.js';
import type { Core } from '../core/core.js';
import { MASTER_KEY_ID_PATTERN } from '../crypto/master-key.js';

/** A pin: which master keys may create the first data key of a tenant id, or of every id with a prefix. */
export interface TenantPin {
  kind: 'tenant' | 'prefix';
  pattern: string;
  masterKeyIds: string[];
  createdAt: Date;
  createdBy: string;
}

export interface PinOptions {
  /** Pin every tenant id starting with this prefix instead of one tenant id. */
  prefix?: boolean;
  /** The master keys allowed (default: this manager's current master key). */
  masterKeyIds?: readonly string[];
  context?: AuditContext;
}

/**
 * Tenant pins (operators). Several applications with their own master keys can share one
 * installation, and any registered master key may create the first data key of a tenant that has
 * none: a pin keeps tenant ids (or a prefix of them, e.g. `billing:`) for the master keys named.
 */
export function pinOperations(core: Core) {
  const { qs } = core;
  return {
    /**
     * Pins a tenant id (or, with `prefix`, every tenant id starting with it) to master keys: only they
     * may create its first data key from now on. Existing data keys are unaffected (only the holder of
     * the master key that wraps them can use them anyway). Replaces an existing pin of the same id.
     * Audited as `tenant.pinned` on the system chain. Operator grants needed.
     * @throws {InvalidInputError} a bad tenant id, prefix or master key id.
     */
    async pinTenant(tenantIdOrPrefix: string, options: PinOptions = {}): Promise<void> {
      assertTenantId(tenantIdOrPrefix);
      const ids = options.masterKeyIds ?? [core.keyring.current.id];
      if (
        !Array.isArray(ids) ||
        ids.length < 1 ||
        ids.length > 16 ||
        ids.some((id) => !MASTER_KEY_ID_PATTERN.test(String(id)))
      ) {
        throw new InvalidInputError(
          'masterKeyIds must be 1 to 16 master key ids (mk_ and 16 hex digits)',
          'masterKeyIds',
        );
      }
      const [row] = await core.plain<{ status: string }>(
        'pinTenant',
        `SELECT ${qs}.tenant_secret_pin($1, $2, $3::text[], $4::text::jsonb) AS status`,
        [
          options.prefix ? 'prefix' : 'tenant',
          tenantIdOrPrefix,
          [...ids],
          JSON.stringify(core.sqlContext(options.context)),
        ],
      );
      if (row?.status !== 'ok') throw new InvalidInputError('the database refused the pin', 'tenantId');
    },

    /**
     * Removes a pin. Audited as `tenant.unpinned`.
     * @throws {SecretNotFoundError} no such pin.
     */
    async unpinTenant(
      tenantIdOrPrefix: string,
      options: Omit<PinOptions, 'masterKeyIds'> = {},
    ): Promise<void> {
      assertTenantId(tenantIdOrPrefix);
      const [row] = await core.plain<{ status: string }>(
        'unpinTenant',
        `SELECT ${qs}.tenant_secret_unpin($1, $2, $3::text::jsonb) AS status`,
        [
          options.prefix ? 'prefix' : 'tenant',
          tenantIdOrPrefix,
          JSON.stringify(core.sqlContext(options.context)),
        ],
      );
      if (row?.status !== 'ok') throw new SecretNotFoundError(tenantIdOrPrefix, '(pin)');
    },

    /** Every pin. Operator grants needed. */
    async tenantPins(): Promise<TenantPin[]> {
      const rows = await core.plain<{
        kind: 'tenant' | 'prefix';
        pattern: string;
        master_key_ids: string[];
        created_at: Date;
        created_by: string;
      }>('tenantPins', `SELECT * FROM ${qs}.tenant_secret_pins_list()`);
      return rows.map((r) => ({
        kind: r.kind,
        pattern: r.pattern,
        masterKeyIds: r.master_key_ids,
        createdAt: r.created_at,
        createdBy: r.created_by,
      }));
    },
  };
}

export type PinOperations = ReturnType<typeof pinOperations>;
