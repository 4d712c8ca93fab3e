import { createHash, createHmac } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { checkpointMac } from '../../src/audit/verify.js';
import { MasterKey } from '../../src/crypto/master-key.js';
import { adminQuery, setupManager, TEST_KEY } from '../support/db.js';

/**
 * Migration 000004 redefines _ts_audit_hash as one inlinable expression (for verification speed).
 * It must produce exactly the bytes of 000001's definition, the composition of _ts_lpt below;
 * otherwise every record written before the migration would fail verification.
 */
const ORIGINAL = `digest(
    $1 || _ts_lpt('tenant-secrets:audit:v1') || _ts_lpt($2) || int8send($3::bigint)
    || int8send((EXTRACT(EPOCH FROM $4::timestamptz) * 1000000)::bigint)
    || _ts_lpt($5) || _ts_lpt($6) || _ts_lpt($7) || _ts_lpt($8)
    || _ts_lpt($9) || _ts_lpt($10::integer::text) || _ts_lpt($11) || _ts_lpt($12)
    || _ts_lpt($13) || _ts_lpt($14::jsonb::text) || _ts_lpt($15::jsonb::text), 'sha256')`;
const CURRENT = `_ts_audit_hash($1, $2, $3::bigint, $4::timestamptz, $5, $6, $7, $8, $9, $10::integer, $11, $12, $13,
    $14::jsonb, $15::jsonb)`;

const cases: unknown[][] = [
  [
    Buffer.alloc(32),
    'acme',
    1,
    '2026-01-02T03:04:05.123456Z',
    'acme',
    'app',
    'svc',
    'secret.read',
    'db/pw',
    3,
    'success',
    null,
    'req-1',
    '{"ip":"203.0.113.7","user_agent":"x"}',
    null,
  ],
  [
    Buffer.alloc(32, 7),
    '',
    42,
    '1999-12-31T23:59:59Z',
    null,
    'postgres',
    'db:postgres',
    'audit.pruned',
    null,
    null,
    'failure',
    'INVALID_INPUT',
    null,
    null,
    '{"records":5,"chain_id":"a"}',
  ],
  [
    Buffer.alloc(32, 255),
    'ünïcødé-ten@nt',
    9_007_199_254_740_000,
    '2030-06-01T00:00:00Z',
    'ünïcødé-ten@nt',
    'r',
    '👩‍💻',
    'secret.created',
    'k/ü',
    999_999_999,
    'success',
    '',
    '',
    '{}',
    '[]',
  ],
];

const DIGEST_DEFINITION = `digest(
    _ts_lpt('tenant-secrets:audit:v2') || _ts_lpt($2) || int8send((EXTRACT(EPOCH FROM $4::timestamptz) * 1000000)::bigint)
    || _ts_lpt($5) || _ts_lpt($6) || _ts_lpt($7) || _ts_lpt($8) || _ts_lpt($9) || _ts_lpt($10::integer::text)
    || _ts_lpt($11) || _ts_lpt($12) || _ts_lpt($13) || _ts_lpt($14::jsonb::text) || _ts_lpt($15::jsonb::text), 'sha256')`;
const DIGEST = `_ts_audit_digest($2, $4::timestamptz, $5, $6, $7, $8, $9, $10::integer, $11, $12, $13, $14::jsonb, $15::jsonb)`;
const LINK_DEFINITION = `digest(_ts_lpt('tenant-secrets:chain:v2') || $1 || _ts_lpt($2) || int8send($3::bigint) || $16, 'sha256')`;
const LINK = `_ts_audit_link($1, $2, $3::bigint, $16)`;

describe('_ts_audit_digest and _ts_audit_link', () => {
  it('are byte-identical to their definitions in length-prefixed fields, NULLs and Unicode included', async () => {
    const { db } = await setupManager();
    for (const params of cases) {
      const digestParams = [...params, Buffer.alloc(32, 9)];
      const rows = await adminQuery(
        db.name,
        `SELECT ${DIGEST_DEFINITION} AS a, ${DIGEST} AS b, ${LINK_DEFINITION} AS c, ${LINK} AS d`,
        digestParams,
      );
      const row = rows[0] as { a: Buffer; b: Buffer; c: Buffer; d: Buffer };
      expect(row.b.toString('hex')).toBe(row.a.toString('hex'));
      expect(row.d.toString('hex')).toBe(row.c.toString('hex'));
    }
  });
});

describe('_ts_audit_hash', () => {
  it('is byte-identical to the original definition, NULLs and Unicode included', async () => {
    const { db } = await setupManager();
    for (const params of cases) {
      const rows = await adminQuery(db.name, `SELECT ${ORIGINAL} AS a, ${CURRENT} AS b`, params);
      const a = rows[0]?.a as Buffer;
      const b = rows[0]?.b as Buffer;
      expect(a).toBeInstanceOf(Buffer);
      expect(b.toString('hex')).toBe(a.toString('hex'));
    }
    // NULL and empty string must not collide (length prefix 0xffffffff vs 0).
    const nul = await adminQuery(db.name, `SELECT ${CURRENT} AS h`, cases[1]);
    const empty = await adminQuery(db.name, `SELECT ${CURRENT} AS h`, [
      ...(cases[1] as unknown[]).slice(0, 4),
      '',
      ...(cases[1] as unknown[]).slice(5),
    ]);
    const h1 = nul[0]?.h as Buffer;
    expect(h1.equals(empty[0]?.h as Buffer)).toBe(false);
  });
});

describe('checkpoint signatures', () => {
  it('are HMAC-SHA256 over label, length-prefixed UTF-8 chain id, int8 seq and hash, under the audit key', () => {
    const key = MasterKey.parse(TEST_KEY);
    const auditKey = key.deriveAuditKey();
    for (const [chain, seq] of [
      ['acme', 1],
      ['', 42],
      ['tënant-ü-😀', 2 ** 40 + 3],
    ] as const) {
      const hash = createHash('sha256').update(`${chain}:${seq}`).digest();
      const bytes = Buffer.from(chain, 'utf8');
      const length = Buffer.alloc(4);
      length.writeUInt32BE(bytes.length);
      const seqBytes = Buffer.alloc(8);
      seqBytes.writeBigInt64BE(BigInt(seq));
      const expected = createHmac('sha256', auditKey)
        .update('tenant-secrets:audit-checkpoint:v1\u0000')
        .update(length)
        .update(bytes)
        .update(seqBytes)
        .update(hash)
        .digest();
      expect(checkpointMac(key, chain, seq, hash).equals(expected)).toBe(true);
      expect(checkpointMac(key, chain, BigInt(seq), hash, auditKey).equals(expected)).toBe(true);
    }
  });
});
