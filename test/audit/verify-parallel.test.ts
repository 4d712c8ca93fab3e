import { createHmac } from 'node:crypto';
import fc from 'fast-check';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type AuditVerification, createSecretsManager, type SecretsManager } from '../../src/index.js';
import { adminQuery, freshDatabase, TEST_KEY } from '../support/db.js';

/**
 * verifyAudit() over several connections (`parallel`) walks ranges of chains side by side; its result
 * must be the one a walk over every chain on one connection gives: the same problems in the same
 * order, the same heads in chain order (and their digest), the same counts, on an untouched trail
 * and on a trail tampered with in many chains at once, including the first and the last chain and
 * chains next to where ranges are cut, for any page size.
 */
const CHAINS = 60;
const chain = (i: number) => `c-${String(i).padStart(3, '0')}`;
/** Records of chain i: 3 to 41, so that pages end inside chains and across them. */
const lengthOf = (i: number) => 3 + ((i * 7) % 39);

let manager: SecretsManager;
let pool: pg.Pool;
let db: { name: string; url: string };
/** Connections the manager's pool had checked out at once, at most, since the last reset. */
let busy = 0;
let busiest = 0;

beforeAll(async () => {
  db = await freshDatabase();
  pool = new pg.Pool({ connectionString: db.url, max: 6 });
  pool.on('acquire', () => {
    busy++;
    busiest = Math.max(busiest, busy);
  });
  pool.on('release', () => {
    busy--;
  });
  manager = createSecretsManager({ pool, masterKey: TEST_KEY, actor: 'test', auditSealIntervalMs: 0 });
  await manager.migrate();
  const lengths = Array.from({ length: CHAINS }, (_, i) => lengthOf(i));
  await adminQuery(
    db.name,
    `INSERT INTO tenant_secret_audit_pending (chain_id, occurred_at, tenant_id, db_role, actor, action, key_name, version,
                                              outcome, request_id, context, digest, sealed_at)
     SELECT c, at, c, 'postgres', 'loadgen', 'secret.read', 'key-' || (j % 5), 1, 'success', 'req-' || j,
            '{"ip": "198.51.100.4"}'::jsonb,
            _ts_audit_digest(c, at, c, 'postgres', 'loadgen', 'secret.read', 'key-' || (j % 5), 1, 'success', NULL,
                             'req-' || j, '{"ip": "198.51.100.4"}'::jsonb, NULL),
            'infinity'
       FROM unnest($1::int[]) WITH ORDINALITY AS l(n, i),
            LATERAL (SELECT 'c-' || lpad((i - 1)::text, 3, '0') AS c) cc,
            generate_series(1, l.n) j,
            LATERAL (SELECT now() - interval '1 hour' + make_interval(secs => j) AS at) t
      ORDER BY at, c`,
    [lengths],
  );
  await manager.sealAudit({ limit: 100_000 });
  // Checkpoints at the end of every chain, and an anchor over them.
  const first = await manager.verifyAudit({ parallel: 1 });
  expect(first.ok).toBe(true);
}, 120_000);

afterAll(async () => {
  await manager?.close();
  await pool?.end();
});

/**
 * What two verifications of the same trail share: every verification appends its own record to the
 * system chain (sealed by the next one), so the system chain's head is left out (`both` checks that
 * the second one verified one record more).
 */
function comparable(result: AuditVerification) {
  return {
    ok: result.ok,
    chains: result.chains,
    checkpoints: result.checkpoints,
    problems: result.problems,
    heads: result.heads.filter((h) => h.chainId !== ''),
  };
}

/**
 * Ranges start pages of their own, so a chain's last record and its end may fall on different pages
 * than in one walk: a head problem found on the page after the chain's last record names no record
 * id (as with any page size). Every other field must be the same.
 */
function paged(c: ReturnType<typeof comparable>) {
  return {
    ...c,
    problems: c.problems.map((p) =>
      p.reason === 'head_mismatch' || p.reason === 'head_missing' ? { ...p, id: null } : p,
    ),
  };
}

/** The digest of the heads as documented: in chain order, one line each. */
function headsDigestOf(result: AuditVerification): string {
  const hash = createHmac('sha256', 'tenant-secrets:heads-digest:v1');
  for (const h of result.heads) hash.update(`${h.chainId}\u0000${h.seq}\u0000${h.hash}\n`);
  return hash.digest('hex');
}

async function both(pageSize: number, parallel: number) {
  const one = await manager.verifyAudit({ checkpoint: false, parallel: 1, pageSize });
  busiest = 0;
  const many = await manager.verifyAudit({ checkpoint: false, parallel, pageSize });
  expect(many.records).toBe(one.records + 1);
  return { one, many, busiest };
}

describe('verifyAudit over several connections', () => {
  it('gives the result of one connection on an untouched trail, verifying ranges side by side', async () => {
    const { one, many, busiest: used } = await both(10_000, 4);
    expect(one.ok).toBe(true);
    expect(comparable(many)).toEqual(comparable(one));
    expect(many.headsDigest).toBe(headsDigestOf(many));
    expect(many.heads.map((h) => h.chainId)).toEqual([
      '',
      ...Array.from({ length: CHAINS }, (_, i) => chain(i)),
    ]);
    const system = one.heads.find((h) => h.chainId === '')?.seq ?? 0;
    expect(one.records - system).toBe(
      Array.from({ length: CHAINS }, (_, i) => lengthOf(i)).reduce((a, b) => a + b),
    );
    expect(used).toBeGreaterThan(1);
  });

  it('rejects a parallel option out of range', async () => {
    await expect(manager.verifyAudit({ parallel: 0 })).rejects.toThrow(/parallel/);
    await expect(manager.verifyAudit({ parallel: 1.5 })).rejects.toThrow(/parallel/);
  });

  it('finds the same problems, in the same order, on a trail tampered with in many chains', async () => {
    const q = (sql: string) => adminQuery(db.name, sql);
    // The first chain, an edited field.
    await q(`UPDATE tenant_secret_audit SET actor = 'mallory' WHERE chain_id = '${chain(0)}' AND seq = 1`);
    // A deleted middle record; a deleted tail record (and the checkpoint's record with it).
    await q(`DELETE FROM tenant_secret_audit WHERE chain_id = '${chain(11)}' AND seq = 3`);
    await q(`DELETE FROM tenant_secret_audit WHERE chain_id = '${chain(17)}' AND seq = ${lengthOf(17)}`);
    // A rewritten head; a deleted head; a chain deleted entirely (records and head).
    await q(`UPDATE tenant_secret_audit_heads SET hash = '\\x00' WHERE chain_id = '${chain(23)}'`);
    await q(`DELETE FROM tenant_secret_audit_heads WHERE chain_id = '${chain(29)}'`);
    await q(`DELETE FROM tenant_secret_audit WHERE chain_id = '${chain(31)}'`);
    await q(`DELETE FROM tenant_secret_audit_heads WHERE chain_id = '${chain(31)}'`);
    // A forged checkpoint; records of two neighbouring chains edited; the last chain's tail deleted.
    await q(
      `UPDATE tenant_secret_audit_checkpoints SET mac = set_byte(mac, 0, get_byte(mac, 0) # 1) WHERE chain_id = '${chain(37)}'`,
    );
    await q(
      `UPDATE tenant_secret_audit SET key_name = 'x' WHERE chain_id IN ('${chain(44)}', '${chain(45)}') AND seq = 2`,
    );
    await q(
      `DELETE FROM tenant_secret_audit WHERE chain_id = '${chain(CHAINS - 1)}' AND seq = ${lengthOf(CHAINS - 1)}`,
    );

    const { one, many } = await both(10_000, 4);
    expect(one.ok).toBe(false);
    const found = new Set(one.problems.map((p) => `${p.chainId} ${p.reason}`));
    for (const expected of [
      `${chain(0)} hash_mismatch`,
      `${chain(11)} missing_records`,
      `${chain(17)} tail_missing`,
      `${chain(23)} head_mismatch`,
      `${chain(29)} head_missing`,
      `${chain(31)} chain_missing`,
      `${chain(37)} checkpoint_forged`,
      `${chain(44)} hash_mismatch`,
      `${chain(45)} hash_mismatch`,
      `${chain(CHAINS - 1)} tail_missing`,
    ]) {
      expect(found).toContain(expected);
    }
    expect(comparable(many)).toEqual(comparable(one));
    expect(many.firstBad).toEqual(one.firstBad);

    // Any page size, any number of connections: the same result as one connection with that page size.
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 5, max: 60 }),
        fc.integer({ min: 2, max: 6 }),
        async (pageSize, parallel) => {
          const r = await both(pageSize, parallel);
          expect(paged(comparable(r.many))).toEqual(paged(comparable(r.one)));
          // (Across page sizes, a chain's end found on the page after its last record names no record id.)
          const where = (v: AuditVerification) => v.problems.map((p) => `${p.chainId} ${p.seq} ${p.reason}`);
          expect(where(r.many)).toEqual(where(one));
          expect(r.many.headsDigest).toBe(headsDigestOf(r.many));
        },
      ),
      { numRuns: 8 },
    );
  }, 120_000);
});
