import type { AuditContext } from '../base/audit-context.js';
import { InvalidInputError } from '../base/errors.js';
import { assertOptionalDate, assertTenantId } from '../base/validation.js';
import type { Core } from '../core/core.js';
import { type AuditRecord, queryPage } from './query.js';

export interface ExportAuditOptions {
  /** One tenant's chain; `null` = the system chain; omitted = every chain. */
  tenantId?: string | null;
  /** Records that occurred at or after this time. */
  since?: Date;
  /** Records that occurred before this time. */
  until?: Date;
  /** Records fetched per database round trip (1-10000, default 5000); memory stays bounded by it. */
  pageSize?: number;
  /** Audit context for this call only. */
  context?: AuditContext;
}

/** Field order of an exported line; stable across versions (new fields are only appended). */
export function auditRecordToJsonLine(record: AuditRecord): string {
  return JSON.stringify({
    id: record.id,
    chainId: record.chainId,
    seq: record.seq,
    occurredAt: record.occurredAt.toISOString(),
    tenantId: record.tenantId,
    dbRole: record.dbRole,
    actor: record.actor,
    action: record.action,
    keyName: record.keyName,
    version: record.version,
    outcome: record.outcome,
    errorCode: record.errorCode,
    requestId: record.requestId,
    context: record.context,
    details: record.details,
    prevHash: record.prevHash,
    hash: record.hash,
    digest: record.digest,
  });
}

export function exportOperations(core: Core, sealAll: () => Promise<unknown>) {
  return {
    /**
     * Streams audit records as JSON Lines (one record per string, no trailing newline), chain by
     * chain, oldest first, fetching `pageSize` records at a time. Hashes are hex, so a log system can
     * re-check the chain. Starting an export appends one `audit.exported` record to the system chain.
     * @throws {InvalidInputError} bad tenant id or option (when iteration starts).
     * @throws {DatabaseUnavailableError} the database cannot be reached.
     */
    async *exportAudit(options: ExportAuditOptions = {}): AsyncGenerator<string, void, undefined> {
      if (options.tenantId !== undefined && options.tenantId !== null) assertTenantId(options.tenantId);
      assertOptionalDate(options.since, 'since');
      assertOptionalDate(options.until, 'until');
      const pageSize = options.pageSize ?? 5000;
      if (!Number.isInteger(pageSize) || pageSize < 1 || pageSize > 10_000) {
        throw new InvalidInputError('pageSize must be an integer from 1 to 10000', 'pageSize');
      }
      const all = options.tenantId === undefined;
      let first = true;
      async function* chainIds(): AsyncGenerator<string> {
        if (!all) {
          yield options.tenantId ?? '';
          return;
        }
        let after: string | null = null;
        for (;;) {
          const page: { chain_id: string }[] = await core.plain<{ chain_id: string }>(
            'exportAudit',
            `SELECT t AS chain_id FROM ${core.qs}.tenant_secret_audit_chains($1, $2) t`,
            [after, 1000],
          );
          for (const row of page) yield row.chain_id;
          const last = page[page.length - 1];
          if (!last || page.length < 1000) return;
          after = last.chain_id;
        }
      }
      // Seal first (in bounded batches), so the export holds every record committed so far, and the
      // list of chains includes chains whose first records were still pending.
      await sealAll();
      for await (const chain of chainIds()) {
        let after: string | undefined = first ? undefined : '0';
        first = false;
        for (;;) {
          const records = await queryPage(
            core,
            'exportAudit',
            chain === '' ? null : chain,
            {
              since: options.since?.toISOString(),
              until: options.until?.toISOString(),
              limit: pageSize,
              after,
              purpose: 'export',
              all_chains: all || undefined,
            },
            options.context,
          );
          for (const record of records) yield auditRecordToJsonLine(record);
          const last = records.at(-1);
          if (!last || records.length < pageSize) break;
          after = String(last.seq);
        }
      }
    },
  };
}
