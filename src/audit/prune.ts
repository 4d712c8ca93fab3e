import type { AuditContext } from '../base/audit-context.js';
import { DatabaseError, DatabaseTimeoutError, IntegrityError, InvalidInputError } from '../base/errors.js';
import { assertTenantId } from '../base/validation.js';
import type { Core } from '../core/core.js';
import { appendAnchor, lockAnchors } from './anchors.js';
import { storeCheckpoints, type verifyOperations } from './verify.js';

export interface PruneAuditOptions {
  /** Records that occurred before this time are deleted (per chain: every record up to the last such one). */
  olderThan: Date;
  /** One tenant's chain; `null` = the system chain; omitted = every chain. */
  tenantId?: string | null;
  /**
   * Verify the chains first and refuse to prune if they fail, so pruning never destroys evidence
   * of tampering (default true).
   */
  verifyFirst?: boolean;
  /** Audit context for this call only. */
  context?: AuditContext;
  /**
   * How long to try to lock the trail to drop whole days before giving up (default 2000 ms), in
   * 25 ms attempts so that operations are never held longer. A transaction holding the trail (a
   * long export page, a caller's open transaction that read it) or vacuum of a day to drop delays
   * the drop; nothing of those days changes then, run it again.
   */
  lockTimeoutMs?: number;
}

export interface PruneAuditResult {
  /** Chains that lost records. */
  chains: number;
  /** Records deleted. */
  records: number;
  /**
   * Each pruned chain's new anchor (the seq the chain now starts after), up to 10000 of them
   * (`chains` counts them all).
   */
  anchors: { chainId: string; seq: number }[];
}

const MAX_ANCHORS = 10_000;

export function pruneOperations(core: Core, verify: ReturnType<typeof verifyOperations>) {
  const { qs, keyring } = core;
  return {
    /**
     * Deletes audit records older than `olderThan`, chain by chain, and moves each chain's anchor
     * to the last deleted record's (seq, hash) in the same transaction, so the remaining records
     * still verify. Each new anchor gets a signed checkpoint. Appends one `audit.pruned` record to
     * the system chain.
     * @throws {InvalidInputError} `olderThan` is not a past Date, or bad tenant id.
     * @throws {IntegrityError} `verifyFirst` found tampering; nothing was deleted.
     * @throws {DatabaseError} SQLSTATE 42501: the connected role does not own the schema (pruning
     *   is an operator task; application roles granted EXECUTE by `migrate({ grantTo })` may not prune).
     * @throws {DatabaseUnavailableError} the database cannot be reached.
     */
    async pruneAudit(options: PruneAuditOptions): Promise<PruneAuditResult> {
      const olderThan = options?.olderThan;
      if (
        !(olderThan instanceof Date) ||
        Number.isNaN(olderThan.getTime()) ||
        olderThan.getTime() > Date.now()
      ) {
        throw new InvalidInputError('olderThan must be a Date in the past', 'olderThan');
      }
      if (options.tenantId !== undefined && options.tenantId !== null) assertTenantId(options.tenantId);
      const lockTimeout = options.lockTimeoutMs ?? 2000;
      if (!Number.isInteger(lockTimeout) || lockTimeout < 1 || lockTimeout > 600_000) {
        throw new InvalidInputError('lockTimeoutMs must be an integer from 1 to 600000', 'lockTimeoutMs');
      }
      if (options.verifyFirst !== false) {
        const check = await verify.verifyAudit({
          ...(options.tenantId !== undefined && { tenantId: options.tenantId }),
          ...(options.context && { context: options.context }),
          heads: false,
        });
        if (!check.ok) {
          throw new IntegrityError(
            `refusing to prune: the audit trail fails verification (${check.firstBad?.reason} in chain ${JSON.stringify(check.firstBad?.chainId)} at seq ${check.firstBad?.seq})`,
          );
        }
      }
      type PruneRow = {
        status: 'ok' | 'forbidden' | 'invalid_input' | 'busy';
        chain_id: string;
        pruned: string;
        anchor_seq: string;
        anchor_hash: Buffer;
      };
      // The prune, a signed checkpoint at each new chain anchor (so a later verification notices an
      // anchor moved other than by pruning), and an audit anchor over the checkpoints as they now are:
      // one transaction, so the newest anchor always signs the checkpoints that exist.
      const { result, rows } = await core.transaction(
        'pruneAudit',
        async (query) => {
          await lockAnchors(query, qs);
          const result = await query<PruneRow>(
            `SELECT * FROM ${qs}.tenant_secret_audit_prune($1, $2, $3::text::jsonb, $4)`,
            [
              olderThan,
              options.tenantId === undefined ? null : (options.tenantId ?? ''),
              JSON.stringify(core.sqlContext(options.context)),
              lockTimeout,
            ],
          );
          const rows = result.filter((row) => row.status === 'ok');
          if (result.some((row) => row.status === 'forbidden' || row.status === 'invalid_input')) {
            return { result, rows };
          }
          await storeCheckpoints(
            query,
            qs,
            keyring.current,
            keyring.current.deriveAuditKey(),
            rows.map((r) => ({ chainId: r.chain_id, seq: r.anchor_seq, hash: r.anchor_hash })),
          );
          if (rows.length > 0) await appendAnchor(query, qs, keyring);
          return { result, rows };
        },
        { quiet: false },
      );
      if (result.some((row) => row.status === 'forbidden')) {
        // Same SQLSTATE PostgreSQL uses for insufficient privilege.
        throw new DatabaseError(
          'pruneAudit (only the owner of the tenant-secrets schema may prune)',
          '42501',
        );
      }
      if (result.some((row) => row.status === 'invalid_input')) {
        throw new InvalidInputError('olderThan must be a Date in the past', 'olderThan');
      }
      if (result.some((row) => row.status === 'busy')) {
        throw new DatabaseTimeoutError(
          `pruneAudit: the audit trail stayed locked by another transaction (a reader, or vacuum of a day to drop) for ${lockTimeout} ms; no day was dropped${rows.length > 0 ? ` (${rows.length} chain(s) lost records of release 0.1)` : ''}, run it again`,
          '55P03',
        );
      }
      return {
        chains: rows.length,
        records: rows.reduce((sum, row) => sum + Number(row.pruned), 0),
        anchors: rows
          .slice(0, MAX_ANCHORS)
          .map((row) => ({ chainId: row.chain_id, seq: Number(row.anchor_seq) })),
      };
    },
  };
}
