import type { Core } from '../core.js';
import { DatabaseError, IntegrityError, InvalidInputError } from '../errors.js';
import { assertTenantId } from '../validation.js';
import type { AuditContext } from './context.js';
import { checkpointMac, type verifyOperations } from './verify.js';

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
}

export interface PruneAuditResult {
  /** Chains that lost records. */
  chains: number;
  /** Records deleted. */
  records: number;
  /** Each pruned chain's new anchor: the seq the chain now starts after. */
  anchors: { chainId: string; seq: number }[];
}

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
      if (options.verifyFirst !== false) {
        const check = await verify.verifyAudit({
          ...(options.tenantId !== undefined && { tenantId: options.tenantId }),
          ...(options.context && { context: options.context }),
        });
        if (!check.ok) {
          throw new IntegrityError(
            `refusing to prune: the audit trail fails verification (${check.firstBad?.reason} in chain ${JSON.stringify(check.firstBad?.chainId)} at seq ${check.firstBad?.seq})`,
          );
        }
      }
      const result = await core.query<{
        status: 'ok' | 'forbidden' | 'invalid_input';
        chain_id: string;
        pruned: string;
        anchor_seq: string;
        anchor_hash: Buffer;
      }>('pruneAudit', `SELECT * FROM ${qs}.tenant_secret_audit_prune($1, $2, $3::jsonb)`, [
        olderThan,
        options.tenantId === undefined ? null : (options.tenantId ?? ''),
        JSON.stringify(core.sqlContext(options.context)),
      ]);
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
      const rows = result.filter((row) => row.status === 'ok');
      for (const row of rows) {
        const mac = checkpointMac(keyring.current, row.chain_id, BigInt(row.anchor_seq), row.anchor_hash);
        await core.query(
          'pruneAudit',
          `SELECT ${qs}.tenant_secret_audit_checkpoint_add($1, $2, $3, $4, $5)`,
          [row.chain_id, row.anchor_seq, row.anchor_hash, keyring.current.id, mac],
        );
      }
      return {
        chains: rows.length,
        records: rows.reduce((sum, row) => sum + Number(row.pruned), 0),
        anchors: rows.map((row) => ({ chainId: row.chain_id, seq: Number(row.anchor_seq) })),
      };
    },
  };
}
