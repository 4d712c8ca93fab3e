import { createHmac, timingSafeEqual } from 'node:crypto';
import type { Core } from '../core.js';
import { InvalidInputError } from '../errors.js';
import type { MasterKey } from '../keys/master-key.js';
import { assertTenantId } from '../validation.js';
import type { AuditContext } from './context.js';

/**
 * Why a chain failed verification:
 * - `missing_records`: a record's seq does not follow its predecessor's (records deleted before it).
 * - `broken_link`: a record's prev_hash is not its predecessor's hash (reordered, inserted, or the
 *   predecessor was rewritten with a recomputed hash).
 * - `hash_mismatch`: the record's content does not hash to its stored hash (edited).
 * - `tail_missing`: the head says the chain is longer than its records (tail deleted); `seq` is the first missing one.
 * - `head_mismatch`: the last record is not the one the head names (records appended, or the head rewritten).
 * - `head_missing`: records exist, but the chain's head row does not.
 * - `checkpoint_mismatch`: the chain holds another hash at a signed checkpoint's seq (chain rewritten).
 * - `checkpoint_record_missing`: the record a signed checkpoint names is gone (deleted, tail truncated,
 *   or the anchor moved past it other than by `pruneAudit`).
 * - `checkpoint_forged`: a checkpoint's signature does not verify (forged or altered).
 * - `checkpoint_unknown_key`: a checkpoint is signed by a master key not in the keyring.
 */
export type AuditProblemReason =
  | 'missing_records'
  | 'broken_link'
  | 'hash_mismatch'
  | 'tail_missing'
  | 'head_mismatch'
  | 'head_missing'
  | 'checkpoint_mismatch'
  | 'checkpoint_record_missing'
  | 'checkpoint_forged'
  | 'checkpoint_unknown_key';

export interface AuditProblem {
  /** The chain: a tenant id, or `''` for the system chain. */
  chainId: string;
  /** The first bad position in the chain. */
  seq: number | null;
  /** The bad record's id, when a record is at fault (not for missing records). */
  id: number | null;
  reason: AuditProblemReason;
  /** For checkpoint problems: the key id that signed it. */
  masterKeyId?: string;
}

export interface VerifyAuditProgress {
  chainId: string;
  /** Records verified so far, over all chains. */
  records: number;
  /** Chains finished so far. */
  chainsDone: number;
  chainsTotal: number;
}

export interface VerifyAuditOptions {
  /** One tenant's chain; `null` = the system chain; omitted = every chain. */
  tenantId?: string | null;
  /** Called after every page. */
  onProgress?: (progress: VerifyAuditProgress) => void;
  /** Records per database call (default 5000). */
  pageSize?: number;
  /** Store a signed checkpoint at the end of each chain that verified (default true). */
  checkpoint?: boolean;
  /** Audit context for this call only. */
  context?: AuditContext;
}

export interface AuditVerification {
  /** True when every chain and every checkpoint verified. */
  ok: boolean;
  chains: number;
  records: number;
  /** Signed checkpoints checked. */
  checkpoints: number;
  /** The first problem found (the lowest seq of the first bad chain, chains in id order). */
  firstBad?: AuditProblem;
  /** One problem per bad chain for the chain walk, plus every bad checkpoint (at most 100). */
  problems: AuditProblem[];
  /** The last record (seq, hex hash) of every chain that verified, in chain order; empty chains omitted. */
  heads: { chainId: string; seq: number; hash: string }[];
}

interface PageRow {
  checked: number;
  last_seq: string;
  last_hash: Buffer;
  done: boolean;
  bad_seq: string | null;
  bad_id: string | null;
  reason: AuditProblemReason | null;
}

interface CheckpointRow {
  chain_id: string;
  seq: string;
  hash: Buffer;
  master_key_id: string;
  mac: Buffer;
  current_hash: Buffer | null;
  anchor_seq: string | null;
}

const MAX_PROBLEMS = 100;

/** HMAC-SHA256 over a length-prefixed (chain, seq, hash), under the audit key of `key`. Node only. */
export function checkpointMac(key: MasterKey, chainId: string, seq: number | bigint, hash: Buffer): Buffer {
  const chain = Buffer.from(chainId, 'utf8');
  const header = Buffer.alloc(4);
  header.writeUInt32BE(chain.length);
  const seqBytes = Buffer.alloc(8);
  seqBytes.writeBigInt64BE(BigInt(seq));
  return createHmac('sha256', key.deriveAuditKey())
    .update('tenant-secrets:audit-checkpoint:v1\u0000')
    .update(header)
    .update(chain)
    .update(seqBytes)
    .update(hash)
    .digest();
}

function macMatches(key: MasterKey, row: CheckpointRow): boolean {
  const expected = checkpointMac(key, row.chain_id, BigInt(row.seq), row.hash);
  return row.mac.length === expected.length && timingSafeEqual(row.mac, expected);
}

export function verifyOperations(core: Core) {
  const { qs, keyring } = core;
  const keyById = (id: string) => keyring.keys.find((key) => key.id === id);

  function checkCheckpoint(row: CheckpointRow): AuditProblem | undefined {
    const seq = Number(row.seq);
    const problem = (reason: AuditProblemReason): AuditProblem => ({
      chainId: row.chain_id,
      seq,
      id: null,
      reason,
      masterKeyId: row.master_key_id,
    });
    const key = keyById(row.master_key_id);
    if (!key) return problem('checkpoint_unknown_key');
    if (!macMatches(key, row)) return problem('checkpoint_forged');
    // A checkpoint below the anchor: pruneAudit deletes those in the same transaction that moves
    // the anchor, so the anchor was moved some other way (records deleted as if pruned).
    if (row.current_hash === null) return problem('checkpoint_record_missing');
    if (!row.current_hash.equals(row.hash)) return problem('checkpoint_mismatch');
    return undefined;
  }

  async function sign(chainId: string, seq: number, hash: Buffer): Promise<boolean> {
    const mac = checkpointMac(keyring.current, chainId, seq, hash);
    const rows = await core.query<{ ok: boolean }>(
      'verifyAudit',
      `SELECT ${qs}.tenant_secret_audit_checkpoint_add($1, $2, $3, $4, $5) AS ok`,
      [chainId, String(seq), hash, keyring.current.id, mac],
    );
    return rows[0]?.ok === true;
  }

  return {
    /**
     * Verifies the audit trail: for each chain, recomputes every record's hash in the database
     * (page by page), checks seq continuity from the chain's anchor, every prev_hash link and the
     * head row; then checks every signed checkpoint against the keyring and the chain. When a chain
     * verifies, stores a new checkpoint at its last record, signed in this process with a key
     * derived from the current master key. Appends one `audit.verified` record to the system chain.
     * @returns `ok`, counts, and the first bad record (`firstBad`) when tampering is found.
     * @throws {InvalidInputError} bad tenant id or page size.
     * @throws {DatabaseUnavailableError} the database cannot be reached.
     */
    async verifyAudit(options: VerifyAuditOptions = {}): Promise<AuditVerification> {
      if (options.tenantId !== undefined && options.tenantId !== null) assertTenantId(options.tenantId);
      const pageSize = options.pageSize ?? 5000;
      if (!Number.isInteger(pageSize) || pageSize < 1 || pageSize > 100_000) {
        throw new InvalidInputError('pageSize must be an integer from 1 to 100000', 'pageSize');
      }
      const chains =
        options.tenantId === undefined
          ? (
              await core.query<{ chain_id: string }>(
                'verifyAudit',
                `SELECT chain_id FROM ${qs}.tenant_secret_audit_chains()`,
              )
            ).map((row) => row.chain_id)
          : [options.tenantId ?? ''];
      const problems: AuditProblem[] = [];
      const heads: AuditVerification['heads'] = [];
      let firstBad: AuditProblem | undefined;
      let records = 0;
      let checkpoints = 0;
      let chainsDone = 0;
      for (const chainId of chains) {
        const chainProblems: AuditProblem[] = [];
        let afterSeq: string | null = null;
        let afterHash: Buffer | null = null;
        let lastSeq = 0;
        let lastHash: Buffer | null = null;
        for (;;) {
          const rows: PageRow[] = await core.query<PageRow>(
            'verifyAudit',
            `SELECT * FROM ${qs}.tenant_secret_audit_verify_page($1, $2, $3, $4)`,
            [chainId, afterSeq, afterHash, pageSize],
          );
          const page = rows[0];
          if (!page) break;
          records += page.checked;
          lastSeq = Number(page.last_seq);
          lastHash = page.last_hash;
          afterSeq = page.last_seq;
          afterHash = page.last_hash;
          options.onProgress?.({ chainId, records, chainsDone, chainsTotal: chains.length });
          if (page.reason) {
            chainProblems.push({
              chainId,
              seq: page.bad_seq === null ? null : Number(page.bad_seq),
              id: page.bad_id === null ? null : Number(page.bad_id),
              reason: page.reason,
            });
          }
          if (page.done) break;
        }
        const marks = await core.query<CheckpointRow>(
          'verifyAudit',
          `SELECT * FROM ${qs}.tenant_secret_audit_checkpoint_list($1)`,
          [chainId],
        );
        checkpoints += marks.length;
        for (const mark of marks) {
          const problem = checkCheckpoint(mark);
          if (problem) chainProblems.push(problem);
        }
        chainProblems.sort((a, b) => (a.seq ?? 0) - (b.seq ?? 0));
        if (chainProblems.length === 0) {
          if (lastSeq > 0 && lastHash) heads.push({ chainId, seq: lastSeq, hash: lastHash.toString('hex') });
          const newest = marks.at(-1);
          if (options.checkpoint !== false && lastSeq > 0 && lastHash && Number(newest?.seq ?? 0) < lastSeq) {
            await sign(chainId, lastSeq, lastHash);
          }
        } else {
          firstBad ??= chainProblems[0];
          for (const problem of chainProblems) if (problems.length < MAX_PROBLEMS) problems.push(problem);
        }
        chainsDone += 1;
        options.onProgress?.({ chainId, records, chainsDone, chainsTotal: chains.length });
      }
      const result: AuditVerification = {
        ok: firstBad === undefined,
        chains: chains.length,
        records,
        checkpoints,
        problems,
        heads,
      };
      if (firstBad) result.firstBad = firstBad;
      await core.query('verifyAudit', `SELECT ${qs}.tenant_secret_audit_verified($1, $2::jsonb, $3::jsonb)`, [
        result.ok,
        JSON.stringify({
          scope: options.tenantId === undefined ? 'all' : (options.tenantId ?? ''),
          chains: result.chains,
          records,
          checkpoints,
          problems: problems.length,
          first_bad: firstBad && { chain_id: firstBad.chainId, seq: firstBad.seq, reason: firstBad.reason },
        }),
        JSON.stringify(core.sqlContext(options.context)),
      ]);
      return result;
    },

    /**
     * Re-signs every checkpoint signed under a previous master key of the ring with the current key
     * (call after a master-key rotation, before dropping the old key from the ring). A checkpoint
     * whose signature does not verify, or whose key is not in the ring, is left as it is and counted
     * in `skipped`; `verifyAudit()` reports it.
     * @throws {DatabaseUnavailableError} the database cannot be reached.
     */
    async resignAuditCheckpoints(): Promise<{ resigned: number; skipped: number }> {
      const rows = await core.query<CheckpointRow>(
        'resignAuditCheckpoints',
        `SELECT * FROM ${qs}.tenant_secret_audit_checkpoint_list(NULL)`,
      );
      let resigned = 0;
      let skipped = 0;
      for (const row of rows) {
        if (row.master_key_id === keyring.current.id) continue;
        const key = keyById(row.master_key_id);
        if (!key || !macMatches(key, row)) {
          skipped += 1;
          continue;
        }
        const mac = checkpointMac(keyring.current, row.chain_id, BigInt(row.seq), row.hash);
        const done = await core.query<{ ok: boolean }>(
          'resignAuditCheckpoints',
          `SELECT ${qs}.tenant_secret_audit_checkpoint_resign($1, $2, $3, $4, $5, $6) AS ok`,
          [row.chain_id, row.seq, row.master_key_id, row.mac, keyring.current.id, mac],
        );
        if (done[0]?.ok) resigned += 1;
        else skipped += 1;
      }
      return { resigned, skipped };
    },
  };
}
