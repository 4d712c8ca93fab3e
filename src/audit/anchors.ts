import { createHmac, timingSafeEqual } from 'node:crypto';
import { InvalidInputError } from '../base/errors.js';
import type { Keyring } from '../crypto/keyring.js';
import { MASTER_KEY_ID_PATTERN } from '../crypto/master-key.js';
import type { TxQuery } from '../db/executor.js';

/**
 * Audit anchors: signed checkpoints of the whole trail (sql/functions/84_audit_verify.sql).
 *
 * Each chain's checkpoint (the seq and hash verification last saw at its end) is one row; an anchor
 * signs, with an audit key derived from the master key (never in the database), the digest of all of
 * those rows, a counter, and the previous anchor's MAC. Every write of checkpoints appends an anchor
 * in the same transaction. So:
 * - a checkpoint row deleted, edited or rolled back no longer matches the newest anchor's digest;
 * - a record changed below a checkpoint no longer has the checkpoint's hash at its seq;
 * - deleting the newest anchors (and restoring older checkpoint rows to match) goes unnoticed in the
 *   database, but the counter goes back: whoever kept the newest anchor outside the database (the
 *   CLI's anchor file, a `publish` hook) detects it. That is what the anchor is for.
 */

/** The newest anchor as verification returns it: small, signed, safe to publish (no key, no value). */
export interface AuditAnchor {
  /** Format version. */
  readonly v: 1;
  /** Position in the database's chain of anchors (1, 2, 3, …). */
  readonly counter: number;
  /** When the database recorded it (its clock). */
  readonly createdAt: string;
  /** The master key whose audit key signed it. */
  readonly masterKeyId: string;
  /** Chains and records (sum of the checkpointed seqs) it covers. */
  readonly chains: number;
  readonly records: number;
  /** SHA-256 of every chain's checkpoint, hex. */
  readonly headsDigest: string;
  /** HMAC-SHA256 under the audit key, hex. */
  readonly mac: string;
}

export interface AnchorRow {
  counter: string;
  created_at: Date;
  master_key_id: string;
  chains: string;
  records: string;
  heads_digest: Buffer;
  prev_mac: Buffer;
  mac: Buffer;
}

const ZERO_MAC = Buffer.alloc(32);

/** The MAC of an anchor (see the format above). */
export function anchorMac(
  auditKey: Buffer,
  fields: {
    counter: bigint;
    masterKeyId: string;
    chains: bigint;
    records: bigint;
    headsDigest: Buffer;
    prevMac: Buffer;
  },
): Buffer {
  const int8 = (n: bigint) => {
    const b = Buffer.alloc(8);
    b.writeBigInt64BE(n);
    return b;
  };
  const id = Buffer.from(fields.masterKeyId, 'utf8');
  const len = Buffer.alloc(4);
  len.writeUInt32BE(id.length);
  return createHmac('sha256', auditKey)
    .update('tenant-secrets:anchor:v1\u0000')
    .update(int8(fields.counter))
    .update(len)
    .update(id)
    .update(int8(fields.chains))
    .update(int8(fields.records))
    .update(fields.headsDigest)
    .update(fields.prevMac)
    .digest();
}

export function toAnchor(row: AnchorRow): AuditAnchor {
  return {
    v: 1,
    counter: Number(row.counter),
    createdAt: new Date(row.created_at).toISOString(),
    masterKeyId: row.master_key_id,
    chains: Number(row.chains),
    records: Number(row.records),
    headsDigest: row.heads_digest.toString('hex'),
    mac: row.mac.toString('hex'),
  };
}

/**
 * Parses an anchor kept outside the database (the object, or its JSON).
 * @throws {InvalidInputError} not an anchor of this format.
 */
export function parseAnchor(input: unknown): AuditAnchor {
  let value = input;
  if (typeof value === 'string') {
    try {
      value = JSON.parse(value);
    } catch {
      throw new InvalidInputError('anchor must be the JSON of an audit anchor', 'anchor');
    }
  }
  const a = value as Partial<Record<keyof AuditAnchor, unknown>> | null;
  const hex64 = (x: unknown) => typeof x === 'string' && /^[0-9a-f]{64}$/.test(x);
  const count = (x: unknown) => typeof x === 'number' && Number.isSafeInteger(x) && x >= 0;
  if (
    typeof a !== 'object' ||
    a === null ||
    a.v !== 1 ||
    !count(a.counter) ||
    (a.counter as number) < 1 ||
    typeof a.createdAt !== 'string' ||
    typeof a.masterKeyId !== 'string' ||
    !MASTER_KEY_ID_PATTERN.test(a.masterKeyId) ||
    !count(a.chains) ||
    !count(a.records) ||
    !hex64(a.headsDigest) ||
    !hex64(a.mac)
  ) {
    throw new InvalidInputError('anchor is not an audit anchor of this format (v 1)', 'anchor');
  }
  return a as AuditAnchor;
}

/** Whether `row`'s MAC verifies under the ring's key of its master key id: 'ok', 'forged' or 'unknown_key'. */
export function checkAnchorMac(keyring: Keyring, row: AnchorRow): 'ok' | 'forged' | 'unknown_key' {
  const key = keyring.keys.find((k) => k.id === row.master_key_id);
  if (!key) return 'unknown_key';
  const expected = anchorMac(key.deriveAuditKey(), {
    counter: BigInt(row.counter),
    masterKeyId: row.master_key_id,
    chains: BigInt(row.chains),
    records: BigInt(row.records),
    headsDigest: row.heads_digest,
    prevMac: row.prev_mac,
  });
  return row.mac.length === 32 && timingSafeEqual(row.mac, expected) ? 'ok' : 'forged';
}

/**
 * The first statement of a transaction that will write checkpoints and an anchor: such transactions
 * queue on this lock before holding any other, so they never deadlock on a lock upgrade.
 */
export async function lockAnchors(query: TxQuery, qs: string): Promise<void> {
  await query(`SELECT ${qs}.tenant_secret_audit_anchor_lock()`);
}

/**
 * Appends the next anchor over the checkpoint rows as they are in this transaction, signed with the
 * current master key's audit key. Call it in the transaction that changed the checkpoints.
 */
export async function appendAnchor(query: TxQuery, qs: string, keyring: Keyring): Promise<AuditAnchor> {
  const auditKey = keyring.current.deriveAuditKey();
  for (let attempt = 0; attempt < 5; attempt++) {
    const [latest] = await query<AnchorRow>(`SELECT * FROM ${qs}.tenant_secret_audit_anchors(NULL)`);
    const [digest] = await query<{ chains: string; records: string; heads_digest: Buffer }>(
      `SELECT * FROM ${qs}.tenant_secret_audit_checkpoint_digest()`,
    );
    if (!digest) throw new Error('internal: no checkpoint digest');
    const counter = BigInt(latest?.counter ?? 0) + 1n;
    const prevMac = latest?.mac ?? ZERO_MAC;
    const mac = anchorMac(auditKey, {
      counter,
      masterKeyId: keyring.current.id,
      chains: BigInt(digest.chains),
      records: BigInt(digest.records),
      headsDigest: digest.heads_digest,
      prevMac,
    });
    const [added] = await query<{ status: string }>(
      `SELECT ${qs}.tenant_secret_audit_anchor_add($1::bigint, $2, $3::bigint, $4::bigint, $5, $6, $7) AS status`,
      [String(counter), keyring.current.id, digest.chains, digest.records, digest.heads_digest, prevMac, mac],
    );
    // 'conflict' / 'stale': another transaction anchored or checkpointed in between; the add took the
    // lock that orders them, so the next round reads a settled state.
    if (added?.status !== 'ok') continue;
    const [row] = await query<AnchorRow>(`SELECT * FROM ${qs}.tenant_secret_audit_anchors(NULL)`);
    if (!row) throw new Error('internal: the anchor just added is gone');
    return toAnchor(row);
  }
  throw new Error('internal: could not append an audit anchor after 5 attempts');
}
