import type { AuditContext } from '../base/audit-context.js';
import { InvalidInputError } from '../base/errors.js';
import { assertAuditText, assertKeyName, assertOptionalDate, assertTenantId } from '../base/validation.js';
import type { Core } from '../core/core.js';

export type AuditOutcome = 'success' | 'failure';

/** One audit record. Never holds a secret value or key material. */
export interface AuditRecord {
  id: number;
  /** The chain the record belongs to: the tenant id, or `''` for system events. */
  chainId: string;
  /** Position in the chain, 1, 2, 3, ... (continuing after pruned records). */
  seq: number;
  occurredAt: Date;
  /** `null` for system events (and for failures whose tenant id was invalid). */
  tenantId: string | null;
  /** The PostgreSQL role that ran the operation (`session_user`). */
  dbRole: string;
  /** The caller's actor (the manager's `actor` or the per-call context). */
  actor: string;
  /** `secret.created`, `secret.updated`, `secret.read`, `secret.rotated`, `secret.deleted`, ... */
  action: string;
  keyName: string | null;
  version: number | null;
  outcome: AuditOutcome;
  /** For failures: `NOT_FOUND`, `INTEGRITY`, `EXPIRED`, `CONFLICT`, `INVALID_INPUT`, ... */
  errorCode: string | null;
  requestId: string | null;
  /** Caller context other than actor and request id (ip, user_agent). */
  context: Record<string, unknown> | null;
  /** Action-specific details (versions, counts, key ids). */
  details: Record<string, unknown> | null;
  /**
   * Records written before release 0.2: hex SHA-256 of the previous record (the chain links through
   * it). Since 0.2, null: the link is `hash` = SHA-256(label ‖ previous hash ‖ chain ‖ seq ‖ digest)
   * (docs/audit.md), computed from the previous record's `hash`.
   */
  prevHash: string | null;
  /** Hex chain hash of this record. */
  hash: string;
  /** Since 0.2: hex SHA-256 of the record's content (null before). */
  digest: string | null;
}

export interface AuditQueryOptions {
  /** Records that occurred at or after this time. */
  since?: Date;
  /** Records that occurred before this time. */
  until?: Date;
  /** Exact action name, e.g. `secret.read`. */
  action?: string;
  keyName?: string;
  actor?: string;
  outcome?: AuditOutcome;
  /** Page size, 1-1000 (default 100). */
  limit?: number;
  /** `nextCursor` of the previous page. */
  cursor?: string;
  /** Audit context for this call only. */
  context?: AuditContext;
}

export interface AuditPage {
  records: AuditRecord[];
  /** Pass as `cursor` for the next page; `null` when this page was the last. */
  nextCursor: string | null;
}

/** Row shape of tenant_secret_audit_query. */
export interface AuditRow {
  id: string;
  chain_id: string;
  seq: string;
  occurred_at: Date;
  tenant_id: string | null;
  db_role: string;
  actor: string;
  action: string;
  key_name: string | null;
  version: number | null;
  outcome: AuditOutcome;
  error_code: string | null;
  request_id: string | null;
  context: Record<string, unknown> | null;
  details: Record<string, unknown> | null;
  prev_hash: Buffer | null;
  hash: Buffer;
  digest: Buffer | null;
}

const CURSOR = /^(0|[1-9][0-9]{0,17})$/;
const ACTION = /^[a-z_]+\.[a-z_]+$/;

export function toAuditRecord(row: AuditRow): AuditRecord {
  return {
    id: Number(row.id),
    chainId: row.chain_id,
    seq: Number(row.seq),
    occurredAt: row.occurred_at,
    tenantId: row.tenant_id,
    dbRole: row.db_role,
    actor: row.actor,
    action: row.action,
    keyName: row.key_name,
    version: row.version,
    outcome: row.outcome,
    errorCode: row.error_code,
    requestId: row.request_id,
    context: row.context,
    details: row.details,
    prevHash: row.prev_hash ? row.prev_hash.toString('hex') : null,
    hash: row.hash.toString('hex'),
    digest: row.digest ? row.digest.toString('hex') : null,
  };
}

/** Validates query options and turns them into tenant_secret_audit_query's p_options. */
export function queryOptions(options: AuditQueryOptions): Record<string, unknown> {
  if (typeof options !== 'object' || options === null) {
    throw new InvalidInputError('options must be an object', 'options');
  }
  assertOptionalDate(options.since, 'since');
  assertOptionalDate(options.until, 'until');
  if (options.action !== undefined && (typeof options.action !== 'string' || !ACTION.test(options.action))) {
    throw new InvalidInputError('action must look like `secret.read`', 'action');
  }
  if (options.keyName !== undefined) assertKeyName(options.keyName);
  assertAuditText(options.actor, 'actor');
  if (options.outcome !== undefined && options.outcome !== 'success' && options.outcome !== 'failure') {
    throw new InvalidInputError("outcome must be 'success' or 'failure'", 'outcome');
  }
  if (
    options.limit !== undefined &&
    (!Number.isInteger(options.limit) || options.limit < 1 || options.limit > 1000)
  ) {
    throw new InvalidInputError('limit must be an integer from 1 to 1000', 'limit');
  }
  if (options.cursor !== undefined && (typeof options.cursor !== 'string' || !CURSOR.test(options.cursor))) {
    throw new InvalidInputError('cursor must be a nextCursor returned by audit()', 'cursor');
  }
  return {
    since: options.since?.toISOString(),
    until: options.until?.toISOString(),
    action: options.action,
    key_name: options.keyName,
    actor: options.actor,
    outcome: options.outcome,
    limit: options.limit ?? 100,
    after: options.cursor,
  };
}

/** Runs one page of tenant_secret_audit_query. `chainTenant` null = the system chain. */
export async function queryPage(
  core: Core,
  operation: string,
  chainTenant: string | null,
  sqlOptions: Record<string, unknown>,
  context: AuditContext | undefined,
): Promise<AuditRecord[]> {
  const rows = await core.query<AuditRow>(
    operation,
    `SELECT * FROM ${core.qs}.tenant_secret_audit_query($1, $2::text::jsonb, $3::text::jsonb)`,
    [chainTenant, JSON.stringify(sqlOptions), JSON.stringify(core.sqlContext(context))],
  );
  return rows.map(toAuditRecord);
}

export function queryOperations(
  core: Core,
  sealAll: (options?: { context?: AuditContext }) => Promise<unknown>,
) {
  return {
    /**
     * One page of a tenant's audit trail (or the system chain's, for `tenantId` null), oldest first,
     * with keyset pagination on the record's `seq`. The first page of a query (no `cursor`) appends
     * one `audit.queried` record to the system chain; later pages append nothing.
     * @throws {InvalidInputError} bad tenant id or option.
     * @throws {DatabaseUnavailableError} the database cannot be reached.
     */
    async audit(tenantId: string | null, options: AuditQueryOptions = {}): Promise<AuditPage> {
      if (tenantId !== null) assertTenantId(tenantId);
      const sqlOptions = queryOptions(options);
      // A first page shows every record committed so far: seal them first, in bounded batches.
      if (options.cursor === undefined) await sealAll();
      const records = await queryPage(core, 'audit', tenantId, sqlOptions, options.context);
      const last = records.at(-1);
      return {
        records,
        nextCursor: last && records.length === sqlOptions.limit ? String(last.seq) : null,
      };
    },
  };
}
