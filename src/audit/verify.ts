import { createHmac, timingSafeEqual } from 'node:crypto';
import type { AuditContext } from '../base/audit-context.js';
import { InvalidInputError } from '../base/errors.js';
import { assertTenantId } from '../base/validation.js';
import type { Core } from '../core/core.js';
import type { MasterKey } from '../crypto/master-key.js';
import { sqlStateOf } from '../db/driver-errors.js';
import type { TxQuery } from '../db/executor.js';
import type { ResignResult } from '../keys/rotation.js';
import {
  type AnchorRow,
  type AuditAnchor,
  appendAnchor,
  checkAnchorMac,
  lockAnchors,
  parseAnchor,
  toAnchor,
} from './anchors.js';
import type { SealResult } from './seal.js';

/**
 * Why a chain failed verification:
 * - `missing_records`: a record's seq does not follow its predecessor's (records deleted before it).
 * - `broken_link`: a record does not chain to its predecessor (reordered, inserted, or a record
 *   rewritten together with its digest).
 * - `hash_mismatch`: the record's content does not match its digest or hash (edited).
 * - `tail_missing`: the head says the chain is longer than its records (tail deleted); `seq` is the first missing one.
 * - `head_mismatch`: the last record is not the one the head names (records appended, or the head rewritten).
 * - `head_missing`: records exist, but the chain's head row does not.
 * - `chain_missing`: a chain registered on the system chain, or one with a signed checkpoint, is gone
 *   entirely (records, head and all).
 * - `checkpoint_mismatch`: the chain holds another hash at a signed checkpoint's seq (chain rewritten).
 * - `checkpoint_record_missing`: the record a signed checkpoint names is gone (deleted, tail truncated,
 *   or the anchor moved past it other than by `pruneAudit`).
 * - `checkpoint_forged`: a checkpoint's signature does not verify (forged or altered).
 * - `checkpoint_unknown_key`: a checkpoint is signed by a master key not in the keyring.
 * - `checkpoints_changed`: the checkpoints are not the ones the newest anchor signed (checkpoint rows
 *   deleted, edited or put back to older ones); `seq` is that anchor's counter.
 * - `anchor_forged` / `anchor_unknown_key`: the newest anchor's signature does not verify, or it is
 *   signed by a master key not in the keyring.
 * - `anchor_rolled_back`: the anchor given from outside the database (`anchor`) is not in its chain of
 *   anchors any more: anchors deleted, the trail rolled back (`seq`: the given counter).
 * - `anchor_chain_broken`: the anchors after the given one do not link to it, or to each other.
 */
export type AuditProblemReason =
  | 'missing_records'
  | 'broken_link'
  | 'hash_mismatch'
  | 'tail_missing'
  | 'head_mismatch'
  | 'head_missing'
  | 'chain_missing'
  | 'checkpoint_mismatch'
  | 'checkpoint_record_missing'
  | 'checkpoint_forged'
  | 'checkpoint_unknown_key'
  | 'checkpoints_changed'
  | 'anchor_forged'
  | 'anchor_unknown_key'
  | 'anchor_rolled_back'
  | 'anchor_chain_broken';

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
  /** The chain the last page ended in. */
  chainId: string;
  /** Records verified so far, over all chains. */
  records: number;
  /** Chains finished so far. */
  chainsDone: number;
}

export interface VerifyAuditOptions {
  /** One tenant's chain; `null` = the system chain; omitted = every chain. */
  tenantId?: string | null;
  /** Called after every page. */
  onProgress?: (progress: VerifyAuditProgress) => void;
  /** Records per database call (1-100000, default 10000). Memory stays bounded by it. */
  pageSize?: number;
  /**
   * Connections that verify ranges of chains side by side when every chain is verified (1-16; default
   * the pool's `max` − 1, at most 4; 1 in a caller's transaction or with one chain). Each range is
   * walked page by page exactly as one verification walks them all, so the result is the same as
   * with 1: the database's hashing runs on several server cores instead of one.
   */
  parallel?: number;
  /** Store a signed checkpoint at the end of each chain that verified (default true). */
  checkpoint?: boolean;
  /**
   * Return every verified chain's head in `heads` (default true). With millions of chains, pass
   * false and keep `headsDigest` instead.
   */
  heads?: boolean;
  /** Audit context for this call only. */
  context?: AuditContext;
  /**
   * The anchor a previous verification returned, kept outside the database (a file, another system):
   * verification checks that the database's anchors still extend it, which detects a trail rolled
   * back or truncated together with its checkpoints and anchors. The object or its JSON.
   */
  anchor?: AuditAnchor | string;
  /** Called with the new anchor once it is stored (publish it: write-once storage, a log, a ticket). */
  publishAnchor?: (anchor: AuditAnchor) => void | Promise<void>;
  /**
   * After an investigation of `checkpoints_changed` or an anchor problem: store checkpoints and a new
   * anchor over the checkpoints as they are now anyway, so later verifications start from here. The
   * problems are still reported by this call, and its `audit.verified` record says it re-anchored.
   */
  reanchor?: boolean;
}

export interface AuditVerification {
  /** True when every chain and every checkpoint verified. */
  ok: boolean;
  chains: number;
  records: number;
  /** Signed checkpoints checked. */
  checkpoints: number;
  /** Pending records sealed before verifying (see `sealAudit()`). */
  sealed: number;
  /** The first problem found (chains in id order). */
  firstBad?: AuditProblem;
  /** One problem per bad chain for the chain walk, plus every bad checkpoint (at most 100). */
  problems: AuditProblem[];
  /**
   * Where each chain that verified ends: its last record's seq and hex hash (the anchor when it has
   * no records). Keep these outside the database (with your logs): a later trail that no longer
   * holds these hashes at these seqs was rewritten, even after the last checkpoint.
   */
  heads: { chainId: string; seq: number; hash: string }[];
  /** SHA-256 (hex) over every verified head in chain order: one value to keep outside the database. */
  headsDigest: string;
  /**
   * The newest signed anchor after this verification (it appends one when it stores checkpoints):
   * keep it outside the database and pass it as `anchor` next time. null when none exists yet.
   */
  anchor: AuditAnchor | null;
  /** Whether an anchor from outside the database was given and checked. */
  anchorChecked: boolean;
}

interface PageRow {
  kind: 'problem' | 'end' | 'checkpoint' | 'cursor';
  chain_id: string | null;
  seq: string | null;
  hash: Buffer | null;
  id: string | null;
  reason: string | null;
  checked: string | null;
  master_key_id: string | null;
  mac: Buffer | null;
  current_hash: Buffer | null;
  done: boolean | null;
}

interface CheckpointRow {
  chain_id: string;
  seq: string;
  hash: Buffer;
  master_key_id: string;
  mac: Buffer;
}

const MAX_PROBLEMS = 100;
const SIGN_BATCH = 5000;
/** Chain ids listed per call when splitting every chain into ranges. */
const CHAIN_LIST_PAGE = 10_000;
/** Ranges per connection for a small trail; a large one gets a range per this many chains. */
const RANGES_PER_CONNECTION = 4;
const CHAINS_PER_RANGE = 2_500;

type ChainEnd = { chainId: string; seq: number; hash: Buffer };

/** What walking one range of chains found, in chain order. */
interface RangeWalk {
  problems: AuditProblem[];
  ends: ChainEnd[];
}

const CHECKPOINT_LABEL = Buffer.from('tenant-secrets:audit-checkpoint:v1\u0000', 'utf8');

/** HMAC-SHA256 over a length-prefixed (chain, seq, hash), under the audit key of `key`. Node only. */
export function checkpointMac(
  key: MasterKey,
  chainId: string,
  seq: number | bigint,
  hash: Buffer,
  auditKey = key.deriveAuditKey(),
): Buffer {
  // label || int4(chain bytes) || chain || int8(seq) || hash, written into one buffer and hashed in
  // one update: verification and pruning sign or check one per chain (100,000s per call).
  const chainLength = Buffer.byteLength(chainId, 'utf8');
  const message = Buffer.allocUnsafe(CHECKPOINT_LABEL.length + 4 + chainLength + 8 + hash.length);
  let at = CHECKPOINT_LABEL.copy(message, 0);
  at = message.writeUInt32BE(chainLength, at);
  at += message.write(chainId, at, 'utf8');
  at = message.writeBigInt64BE(BigInt(seq), at);
  hash.copy(message, at);
  return createHmac('sha256', auditKey).update(message).digest();
}

/**
 * Signs checkpoints at (chain, seq, hash) with `key` and stores them (tenant_secret_audit_checkpoint_add),
 * SIGN_BATCH per call. Each batch is signed while the database stores the previous one: one query at a
 * time on the transaction, the library's signing beside the database's inserts.
 */
export async function storeCheckpoints(
  query: TxQuery,
  qs: string,
  key: MasterKey,
  auditKey: Buffer,
  ends: readonly { chainId: string; seq: number | string; hash: Buffer }[],
): Promise<void> {
  let storing: Promise<unknown> | undefined;
  for (let i = 0; i < ends.length; i += SIGN_BATCH) {
    const batch = ends.slice(i, i + SIGN_BATCH);
    const params = [
      batch.map((e) => e.chainId),
      batch.map((e) => String(e.seq)),
      batch.map((e) => e.hash),
      key.id,
      batch.map((e) => checkpointMac(key, e.chainId, BigInt(e.seq), e.hash, auditKey)),
    ];
    // The previous batch's call is awaited before this one is sent (and before any other await:
    // its failure is always handled here).
    await storing;
    storing = query(
      `SELECT ${qs}.tenant_secret_audit_checkpoint_add($1::text[], $2::bigint[], $3::bytea[], $4, $5::bytea[])`,
      params,
    );
  }
  await storing;
}

export function verifyOperations(
  core: Core,
  seal: (options?: { context?: AuditContext }) => Promise<SealResult>,
) {
  const { qs, keyring } = core;
  // Derived at first use: a manager may be created before its key is configured.
  let derived: Map<string, Buffer> | undefined;
  const auditKeyOf = (id: string) => {
    derived ??= new Map(keyring.keys.map((key) => [key.id, key.deriveAuditKey()]));
    return derived.get(id);
  };
  const keyById = (id: string) => keyring.keys.find((key) => key.id === id);

  function macMatches(row: {
    chain_id: string;
    seq: string;
    hash: Buffer;
    master_key_id: string;
    mac: Buffer;
  }): boolean {
    const key = keyById(row.master_key_id);
    if (!key) return false;
    const expected = checkpointMac(key, row.chain_id, BigInt(row.seq), row.hash, auditKeyOf(key.id));
    return row.mac.length === expected.length && timingSafeEqual(row.mac, expected);
  }

  function checkCheckpoint(row: PageRow): AuditProblem | undefined {
    const chainId = row.chain_id ?? '';
    const problem = (reason: AuditProblemReason): AuditProblem => ({
      chainId,
      seq: Number(row.seq),
      id: null,
      reason,
      masterKeyId: row.master_key_id ?? undefined,
    });
    if (!row.hash || !row.mac || !row.master_key_id || row.seq === null) return problem('checkpoint_forged');
    if (!keyById(row.master_key_id)) return problem('checkpoint_unknown_key');
    if (
      !macMatches({
        chain_id: chainId,
        seq: row.seq,
        hash: row.hash,
        master_key_id: row.master_key_id,
        mac: row.mac,
      })
    ) {
      return problem('checkpoint_forged');
    }
    if (row.reason === 'chain_missing') return problem('chain_missing');
    if (row.current_hash === null) return problem('checkpoint_record_missing');
    if (!row.current_hash.equals(row.hash)) return problem('checkpoint_mismatch');
    return undefined;
  }

  async function signCheckpoints(
    ends: { chainId: string; seq: number; hash: Buffer }[],
    query: TxQuery,
  ): Promise<void> {
    const key = keyring.current;
    await storeCheckpoints(query, qs, key, auditKeyOf(key.id) ?? key.deriveAuditKey(), ends);
  }

  /**
   * The newest anchor against the checkpoints as they are, and an anchor given from outside the
   * database against the database's chain of anchors. Read in one statement (one snapshot).
   */
  async function checkAnchors(given: AuditAnchor | undefined): Promise<AuditProblem[]> {
    const out: AuditProblem[] = [];
    const problem = (
      reason: AuditProblemReason,
      counter: number | null,
      masterKeyId?: string,
    ): AuditProblem => ({
      chainId: '',
      seq: counter,
      id: null,
      reason,
      ...(masterKeyId && { masterKeyId }),
    });
    const [now] = await core.plain<AnchorRow & { d_chains: string; d_records: string; d_digest: Buffer }>(
      'verifyAudit',
      `SELECT a.*, d.chains AS d_chains, d.records AS d_records, d.heads_digest AS d_digest
         FROM ${qs}.tenant_secret_audit_checkpoint_digest() d LEFT JOIN ${qs}.tenant_secret_audit_anchors(NULL) a ON true`,
    );
    const newest = now && now.counter !== null ? now : undefined;
    if (newest) {
      const mac = checkAnchorMac(keyring, newest);
      if (mac !== 'ok') {
        out.push(
          problem(
            mac === 'forged' ? 'anchor_forged' : 'anchor_unknown_key',
            Number(newest.counter),
            newest.master_key_id,
          ),
        );
      } else if (
        !newest.heads_digest.equals(now?.d_digest ?? Buffer.alloc(0)) ||
        newest.chains !== now?.d_chains ||
        newest.records !== now?.d_records
      ) {
        out.push(problem('checkpoints_changed', Number(newest.counter)));
      }
    }
    if (given) {
      // The database's anchors from the given counter on must start with the given anchor and link,
      // one by one, to the newest (read in pages of at most 10,000).
      let from = BigInt(given.counter);
      let prev: AnchorRow | undefined;
      for (;;) {
        const rows = await core.plain<AnchorRow>(
          'verifyAudit',
          `SELECT * FROM ${qs}.tenant_secret_audit_anchors($1::bigint)`,
          [String(from)],
        );
        if (prev === undefined) {
          const first = rows[0];
          if (!first || Number(first.counter) !== given.counter || first.mac.toString('hex') !== given.mac) {
            out.push(problem('anchor_rolled_back', given.counter, given.masterKeyId));
            break;
          }
        }
        let broken = false;
        for (const row of rows) {
          if (prev && (BigInt(row.counter) !== BigInt(prev.counter) + 1n || !row.prev_mac.equals(prev.mac))) {
            out.push(problem('anchor_chain_broken', Number(row.counter)));
            broken = true;
            break;
          }
          prev = row;
        }
        if (broken || rows.length < 10_000 || !prev) break;
        from = BigInt(prev.counter) + 1n;
      }
    }
    return out;
  }

  /**
   * Where to cut every chain into ranges for `parallel` connections: the last chain id of each range
   * but the last (chains with a head, in the database's order; a chain without one still falls in a
   * range, since the ranges cover every chain id). A small trail gets a few ranges per connection, a
   * large one a range per CHAINS_PER_RANGE chains: ranges are handed out as connections free up.
   */
  async function chainBounds(parallel: number): Promise<string[]> {
    const bounds: string[] = [];
    let after: string | null = null;
    let step = 0;
    for (;;) {
      const ids: string[] = (
        await core.plain<{ id: string }>(
          'verifyAudit',
          `SELECT id FROM ${qs}.tenant_secret_audit_chains($1, $2) AS id`,
          [after, CHAIN_LIST_PAGE],
        )
      ).map((r) => r.id);
      if (step === 0) {
        step =
          ids.length < CHAIN_LIST_PAGE
            ? Math.max(1, Math.ceil(ids.length / (parallel * RANGES_PER_CONNECTION)))
            : CHAINS_PER_RANGE;
      }
      for (let i = step - 1; i < ids.length; i += step) bounds.push(ids[i] as string);
      if (ids.length < CHAIN_LIST_PAGE) break;
      after = ids[ids.length - 1] ?? null;
    }
    // The last chain ends the last range but one: the last range (after it, without end) then only
    // holds chains without a head, if any.
    return bounds;
  }

  return {
    /**
     * Verifies the audit trail. First seals every committed pending record (see `sealAudit()`), then
     * walks every chain in pages (or one chain): recomputes every record's digest and link in the
     * database, checks seq continuity from the chain's anchor and the head row; checks every signed
     * checkpoint against the keyring and the chain, and that every chain registered on the system
     * chain still exists. For each chain that verifies, stores a checkpoint at its end, signed in
     * this process with a key derived from the current master key (replacing older ones). Appends one
     * `audit.verified` record to the system chain. Memory stays bounded by `pageSize` (and `heads`).
     * @returns `ok`, counts, and the first bad record (`firstBad`) when tampering is found.
     * @throws {InvalidInputError} bad tenant id or page size.
     * @throws {DatabaseUnavailableError} the database cannot be reached.
     */
    async verifyAudit(options: VerifyAuditOptions = {}): Promise<AuditVerification> {
      if (options.tenantId !== undefined && options.tenantId !== null) assertTenantId(options.tenantId);
      const pageSize = options.pageSize ?? 10_000;
      if (!Number.isInteger(pageSize) || pageSize < 1 || pageSize > 100_000) {
        throw new InvalidInputError('pageSize must be an integer from 1 to 100000', 'pageSize');
      }
      const sealed = await seal(options.context === undefined ? {} : { context: options.context });
      const scope = options.tenantId === undefined ? null : (options.tenantId ?? '');
      const keepHeads = options.heads !== false;
      const problems: AuditProblem[] = [];
      const badChains = new Set<string>();
      const heads: AuditVerification['heads'] = [];
      const headsHash = createHmac('sha256', 'tenant-secrets:heads-digest:v1');
      const addProblem = (problem: AuditProblem) => {
        badChains.add(problem.chainId);
        if (problems.length < MAX_PROBLEMS) problems.push(problem);
      };
      let records = 0;
      let checkpoints = 0;
      let chains = 0;
      const given = options.anchor === undefined ? undefined : parseAnchor(options.anchor);
      // The newest anchor is checked by a full verification, and before any verification stores
      // checkpoints (a new anchor must never sign checkpoints changed behind the last one's back).
      const anchorProblems =
        scope === null || options.checkpoint !== false || given ? await checkAnchors(given) : [];
      for (const problem of anchorProblems) addProblem(problem);
      const verifiedEnds: ChainEnd[] = [];
      const parallel = options.parallel ?? defaultParallel(core.executor.maxConnections);
      if (!Number.isInteger(parallel) || parallel < 1 || parallel > 16) {
        throw new InvalidInputError('parallel must be an integer from 1 to 16', 'parallel');
      }
      // Ranges of chains (lo, until]: the first starts at the beginning, the last has no end. One range
      // is the walk of every chain (or of the one chain in scope) page after page.
      // On a distributed (Citus) installation each range's chains are verified on their workers. Where
      // the chain list cannot be read in pages (0A000: Citus refused it before it was dynamic SQL),
      // one range, walked on one connection.
      const bounds =
        scope === null && parallel > 1 && !core.executor.inCallerTransaction
          ? await chainBounds(parallel).catch((error: unknown) => {
              if (sqlStateOf(error) === '0A000') return [];
              throw error;
            })
          : [];
      const ranges = Array.from({ length: bounds.length + 1 }, (_, i) => ({
        lo: i === 0 ? null : (bounds[i - 1] ?? null),
        until: bounds[i] ?? null,
      }));
      let stopped = false;
      // Walks one range in pages; problems and verified chain ends are kept per range and merged in
      // range order, so that they come out as one walk over every chain would give them.
      const walk = async (lo: string | null, until: string | null): Promise<RangeWalk> => {
        const out: RangeWalk = { problems: [], ends: [] };
        let afterChain: string | null = lo;
        let afterSeq: string | null = null;
        let afterHash: Buffer | null = null;
        let walked: string | undefined;
        const problem = (p: AuditProblem) => {
          badChains.add(p.chainId);
          if (out.problems.length < MAX_PROBLEMS) out.problems.push(p);
        };
        while (!stopped) {
          const rows: PageRow[] =
            until === null
              ? await core.plain<PageRow>(
                  'verifyAudit',
                  `SELECT * FROM ${qs}.tenant_secret_audit_verify_page($1, $2, $3, $4, $5)`,
                  [scope, afterChain, afterSeq, afterHash, pageSize],
                )
              : await core.plain<PageRow>(
                  'verifyAudit',
                  `SELECT * FROM ${qs}.tenant_secret_audit_verify_page($1, $2, $3, $4, $5, $6)`,
                  [scope, afterChain, afterSeq, afterHash, pageSize, until],
                );
          let cursor: PageRow | undefined;
          for (const row of rows) {
            if (row.kind === 'cursor') cursor = row;
            else if (row.kind === 'problem') {
              problem({
                chainId: row.chain_id ?? '',
                seq: row.seq === null ? null : Number(row.seq),
                id: row.id === null ? null : Number(row.id),
                reason: row.reason as AuditProblemReason,
              });
            } else if (row.kind === 'checkpoint') {
              checkpoints++;
              const bad = checkCheckpoint(row);
              if (bad) problem(bad);
            }
          }
          for (const row of rows) {
            // A chain walked: its end or its first problem (rows come in chain order, and a chain
            // may go on in the next page).
            if (
              (row.kind === 'end' || row.kind === 'problem') &&
              row.chain_id !== null &&
              row.chain_id !== walked
            ) {
              walked = row.chain_id;
              chains++;
            }
            if (row.kind !== 'end' || row.chain_id === null || row.seq === null || !row.hash) continue;
            if (badChains.has(row.chain_id)) continue;
            out.ends.push({ chainId: row.chain_id, seq: Number(row.seq), hash: row.hash });
          }
          records += Number(cursor?.checked ?? 0);
          options.onProgress?.({ chainId: cursor?.chain_id ?? '', records, chainsDone: chains });
          if (!cursor || cursor.done || cursor.chain_id === null) break;
          afterChain = cursor.chain_id;
          afterSeq = cursor.seq;
          afterHash = cursor.hash;
        }
        return out;
      };
      // Finished ranges are taken in range order: heads digested, ends kept for the checkpoints.
      const walks: (RangeWalk | undefined)[] = [];
      let merged = 0;
      const take = () => {
        for (let done = walks[merged]; done !== undefined; done = walks[merged]) {
          for (const p of done.problems) if (problems.length < MAX_PROBLEMS) problems.push(p);
          for (const end of done.ends) {
            headsHash.update(`${end.chainId}\u0000${end.seq}\u0000${end.hash.toString('hex')}\n`);
            if (keepHeads) heads.push({ chainId: end.chainId, seq: end.seq, hash: end.hash.toString('hex') });
            if (options.checkpoint !== false) verifiedEnds.push(end);
          }
          walks[merged] = undefined;
          merged++;
        }
      };
      let next = 0;
      const worker = async () => {
        for (let i = next++; i < ranges.length && !stopped; i = next++) {
          const range = ranges[i] as { lo: string | null; until: string | null };
          walks[i] = await walk(range.lo, range.until);
          take();
        }
      };
      await Promise.all(
        Array.from({ length: Math.min(parallel, ranges.length) }, async () => {
          try {
            await worker();
          } catch (error) {
            stopped = true;
            throw error;
          }
        }),
      );
      // Chains registered on the system chain (when it was sealed for the first time) that are gone.
      if (scope === null) {
        let regAfter = 0;
        for (;;) {
          const gone = await core.plain<{
            chain_id: string | null;
            registered_seq: string | null;
            last_seq: string | null;
          }>('verifyAudit', `SELECT * FROM ${qs}.tenant_secret_audit_missing_chains($1, $2)`, [
            regAfter,
            10_000,
          ]);
          for (const row of gone) {
            if (row.chain_id !== null && !badChains.has(row.chain_id)) {
              addProblem({ chainId: row.chain_id, seq: null, id: null, reason: 'chain_missing' });
            }
          }
          const last = gone.find((row) => row.chain_id === null)?.last_seq;
          if (last === null || last === undefined) break;
          regAfter = Number(last);
        }
      }
      // Chain order, then seq; at one seq, what the chain walk found before what a checkpoint shows;
      // problems of the anchors (all chains at once) after every chain's.
      const rank = (p: AuditProblem) =>
        p.reason.startsWith('checkpoint_')
          ? 1
          : p.reason.startsWith('anchor_') || p.reason === 'checkpoints_changed'
            ? 2
            : 0;
      problems.sort((a, b) =>
        rank(a) === 2 || rank(b) === 2
          ? rank(a) - rank(b) || (a.seq ?? 0) - (b.seq ?? 0)
          : a.chainId < b.chainId
            ? -1
            : a.chainId > b.chainId
              ? 1
              : (a.seq ?? 0) - (b.seq ?? 0) || rank(a) - rank(b),
      );
      // The checkpoints of the chains that verified, and the anchor over every checkpoint, in one
      // transaction: the newest anchor always signs the checkpoints as they are.
      let anchor: AuditAnchor | null = null;
      if (options.checkpoint !== false && (anchorProblems.length === 0 || options.reanchor === true)) {
        anchor = await core.transaction(
          'verifyAudit',
          async (query) => {
            await lockAnchors(query, qs);
            await signCheckpoints(
              verifiedEnds.filter((e) => !badChains.has(e.chainId)),
              query,
            );
            return appendAnchor(query, qs, keyring);
          },
          { quiet: false },
        );
        await options.publishAnchor?.(anchor);
      } else {
        const [row] = await core.plain<AnchorRow>(
          'verifyAudit',
          `SELECT * FROM ${qs}.tenant_secret_audit_anchors(NULL)`,
        );
        anchor = row ? toAnchor(row) : null;
      }
      const firstBad = problems[0];
      const result: AuditVerification = {
        ok: firstBad === undefined,
        chains,
        records,
        checkpoints,
        sealed: sealed.sealed,
        problems,
        heads,
        headsDigest: headsHash.digest('hex'),
        anchor,
        anchorChecked: given !== undefined,
      };
      if (firstBad) result.firstBad = firstBad;
      await core.plain(
        'verifyAudit',
        `SELECT ${qs}.tenant_secret_audit_verified($1, $2::text::jsonb, $3::text::jsonb)`,
        [
          result.ok,
          JSON.stringify({
            scope: options.tenantId === undefined ? 'all' : (options.tenantId ?? ''),
            chains: result.chains,
            records,
            checkpoints,
            problems: problems.length,
            heads_digest: result.headsDigest,
            first_bad: firstBad && { chain_id: firstBad.chainId, seq: firstBad.seq, reason: firstBad.reason },
            anchor: anchor?.counter,
            anchor_checked: given !== undefined || undefined,
            reanchored: (options.reanchor === true && anchorProblems.length > 0) || undefined,
          }),
          JSON.stringify(core.sqlContext(options.context)),
        ],
      );
      core.onAudited();
      return result;
    },

    /**
     * Re-signs every checkpoint signed under a previous master key of the ring with the current key
     * (call after a master-key rotation, before dropping the old key from the ring; rotateMasterKey()
     * does). A checkpoint whose signature does not verify, or whose key is not in the ring, is left
     * as it is (`invalid`; `verifyAudit()` reports it). Safe to run concurrently: a checkpoint another
     * run re-signed first counts as `alreadyCurrent`.
     * @throws {DatabaseUnavailableError} the database cannot be reached.
     */
    async resignAuditCheckpoints(): Promise<ResignResult> {
      const out: ResignResult = { resigned: 0, alreadyCurrent: 0, invalid: 0 };
      const currentKey = auditKeyOf(keyring.current.id);
      let afterChain: string | null = null;
      let afterSeq: string | null = null;
      for (;;) {
        const rows: CheckpointRow[] = await core.plain<CheckpointRow>(
          'resignAuditCheckpoints',
          `SELECT chain_id, seq, hash, master_key_id, mac FROM ${qs}.tenant_secret_audit_checkpoint_list($1, $2, $3)`,
          [afterChain, afterSeq, SIGN_BATCH],
        );
        if (rows.length === 0) break;
        const todo = rows.filter((row) => {
          if (row.master_key_id === keyring.current.id) {
            if (macMatches(row)) out.alreadyCurrent++;
            else out.invalid++;
            return false;
          }
          if (!macMatches(row)) {
            out.invalid++;
            return false;
          }
          return true;
        });
        if (todo.length > 0) {
          const done = await core.plain<{ resigned: boolean }>(
            'resignAuditCheckpoints',
            `SELECT resigned FROM ${qs}.tenant_secret_audit_checkpoint_resign($1::text[], $2::bigint[], $3::text[], $4::bytea[], $5, $6::bytea[])`,
            [
              todo.map((r) => r.chain_id),
              todo.map((r) => r.seq),
              todo.map((r) => r.master_key_id),
              todo.map((r) => r.mac),
              keyring.current.id,
              todo.map((r) => checkpointMac(keyring.current, r.chain_id, BigInt(r.seq), r.hash, currentKey)),
            ],
          );
          for (const row of done) {
            if (row.resigned) out.resigned++;
            // Changed since it was listed: a concurrent run re-signed it (or it was replaced).
            else out.alreadyCurrent++;
          }
        }
        const last = rows[rows.length - 1];
        if (!last || rows.length < SIGN_BATCH) break;
        afterChain = last.chain_id;
        afterSeq = last.seq;
      }
      // The newest anchor is signed by the old key too: a new one, signed by the current key, links
      // to it, so the chain of anchors stays verifiable once the old key leaves the ring.
      const [newest] = await core.plain<AnchorRow>(
        'resignAuditCheckpoints',
        `SELECT * FROM ${qs}.tenant_secret_audit_anchors(NULL)`,
      );
      if (newest && newest.master_key_id !== keyring.current.id && checkAnchorMac(keyring, newest) === 'ok') {
        await core.transaction(
          'resignAuditCheckpoints',
          async (query) => {
            await lockAnchors(query, qs);
            return appendAnchor(query, qs, keyring);
          },
          { quiet: false },
        );
      }
      return out;
    },
  };
}

/** The pool's max connections less one for the application, at most 4; 1 when unknown. */
function defaultParallel(maxConnections: number | undefined): number {
  if (maxConnections === undefined || !Number.isFinite(maxConnections)) return 1;
  return Math.max(1, Math.min(4, Math.trunc(maxConnections) - 1));
}
