import type { AuditContext } from '../base/audit-context.js';
import { IntegrityError, InvalidInputError } from '../base/errors.js';
import { assertTenantId } from '../base/validation.js';
import type { Core } from '../core/core.js';
import { waitForTransactionsInFlight } from './in-flight.js';

export interface PurgeTenantResult {
  /** Data keys deleted (every version, active, retired or destroyed). */
  keys: number;
  /** Secret rows deleted (including soft-deleted ones). */
  secrets: number;
  /** Version rows deleted. */
  versions: number;
}

/** Crypto-shredding, bound to one manager core. */
export function purgeOperations(core: Core) {
  return {
    /**
     * Crypto-shreds a tenant: deletes its data keys, secrets and versions and audits `tenant.purged`
     * (counts only) in the tenant's chain, which stays. Afterwards every read of the tenant returns
     * `null`. First it marks the tenant (writes are refused meanwhile with `ConflictError`) and waits
     * for the transactions open at that moment to end, so no write in flight survives it.
     * Idempotent (zero counts when there is nothing left).
     *
     * Backups and WAL archives taken before the purge still hold the tenant's wrapped data keys,
     * readable with the master key of that time: to shred those copies too, rotate the master key
     * and destroy the old one once every backup made under it has expired
     * (docs/runbooks/rotate-secrets.md, "Crypto-shredding and backups").
     * @throws {InvalidInputError} bad tenant id.
     * @throws {DatabaseUnavailableError} the database cannot be reached (nothing was deleted).
     */
    async purgeTenant(
      tenantId: string,
      options: { context?: AuditContext } = {},
    ): Promise<PurgeTenantResult> {
      assertTenantId(tenantId);
      const ctx = JSON.stringify(core.sqlContext(options.context));
      const phase = (name: 'begin' | 'finish' | 'all') =>
        core.query<{ status: string; keys: number; secrets: number; versions: number }>(
          'purgeTenant',
          `SELECT status, keys, secrets, versions FROM ${core.qs}.tenant_secret_purge_tenant($1, $2, $3::text::jsonb)`,
          [tenantId, name, ctx],
        );
      let rows: Awaited<ReturnType<typeof phase>>;
      if (core.executor.inCallerTransaction) {
        // Inside a caller's transaction nobody else sees the purge before it commits: one phase.
        rows = await phase('all');
      } else {
        // Mark the tenant (no new data key, its key retired), let writes that began before end, then
        // delete: no writer in flight leaves a row behind under a deleted key.
        const begun = await phase('begin');
        if (begun[0]?.status === 'invalid_input')
          throw new InvalidInputError('invalid tenant id', 'tenantId');
        await waitForTransactionsInFlight(core, 'purgeTenant');
        rows = await phase('finish');
      }
      core.dataKeys.forget(tenantId);
      const row = rows[0];
      if (row?.status === 'invalid_input') throw new InvalidInputError('invalid tenant id', 'tenantId');
      if (row?.status !== 'ok') throw new IntegrityError('tenant purge returned no result');
      return { keys: row.keys, secrets: row.secrets, versions: row.versions };
    },
  };
}

export type PurgeOperations = ReturnType<typeof purgeOperations>;
