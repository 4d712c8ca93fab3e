import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import type { AuditAnchor, SecretsManager } from '../../src/index.js';
import { adminQuery, setupManager } from '../support/db.js';

/**
 * The schema owner rewrites history. Each case starts from a trail that a verification anchored
 * (checkpoints signed, an anchor kept "outside the database" by the test), tampers with it as the
 * owner (who can change every row and knows the scheme, but never holds the master key), then
 * verifies twice: without an anchor, and with the anchor the last verification returned.
 *
 * CASES is the table docs/audit.md publishes ("What verification detects"): the last test checks
 * that the document states exactly these outcomes.
 */

/** Digest of a record's content, as the library computes it (SQL over alias a). */
const DIGEST = `_ts_audit_digest(a.chain_id, a.occurred_at, a.tenant_id, a.db_role, a.actor, a.action, a.key_name,
  a.version, a.outcome, a.error_code, a.request_id, a.context, a.details)`;

/** Recomputes every digest and hash of `chain` from `fromSeq` on, and its head: a self-consistent chain. */
const rehash = (chain: string, fromSeq: number) => `DO $$
DECLARE a record; v_prev bytea; v_digest bytea; v_hash bytea;
BEGIN
  SELECT hash INTO v_prev FROM tenant_secret_audit WHERE chain_id = '${chain}' AND seq = ${fromSeq - 1};
  FOR a IN SELECT * FROM tenant_secret_audit WHERE chain_id = '${chain}' AND seq >= ${fromSeq} ORDER BY seq LOOP
    v_digest := ${DIGEST};
    v_hash := _ts_audit_link(v_prev, a.chain_id, a.seq, v_digest);
    UPDATE tenant_secret_audit SET digest = v_digest, hash = v_hash WHERE id = a.id;
    v_prev := v_hash;
  END LOOP;
  UPDATE tenant_secret_audit_heads SET seq = (SELECT max(seq) FROM tenant_secret_audit WHERE chain_id = '${chain}'),
         hash = v_prev WHERE chain_id = '${chain}';
END $$`;

/** Rolls chain `chain` back to `seq`: the records after it deleted, the head pointing at it. */
const truncateTo = (chain: string, seq: number) => `
  DELETE FROM tenant_secret_audit WHERE chain_id = '${chain}' AND seq > ${seq};
  UPDATE tenant_secret_audit_heads SET seq = ${seq},
         hash = (SELECT hash FROM tenant_secret_audit WHERE chain_id = '${chain}' AND seq = ${seq})
   WHERE chain_id = '${chain}'`;

interface Case {
  /** The row of the table in docs/audit.md. */
  tampering: string;
  /** What the owner does, after `acme` has 6 records checkpointed and 3 more sealed since. */
  tamper: (sql: (text: string) => Promise<unknown>) => Promise<unknown>;
  /** Detected by a verification without an anchor / with the anchor of the last verification. */
  withoutAnchor: boolean;
  withAnchor: boolean;
  /**
   * `latest`: the anchor given is the one the last verification returned (over all 9 records);
   * `previous`: the trail was verified again after it, so the anchor given is one step behind.
   */
  anchor?: 'latest' | 'previous';
}

/** The owner's copies of the rows of the earlier verification, restored to roll the trail back. */
const SAVE_EARLIER = `
  CREATE TABLE public.saved_checkpoints AS SELECT * FROM tenant_secret_audit_checkpoints;
  CREATE TABLE public.saved_anchors AS SELECT * FROM tenant_secret_audit_anchors`;

const CASES: Case[] = [
  {
    tampering: 'a record edited',
    tamper: (sql) => sql(`UPDATE tenant_secret_audit SET actor = 'x' WHERE chain_id = 'acme' AND seq = 3`),
    withoutAnchor: true,
    withAnchor: true,
  },
  {
    tampering: 'a record edited, its chain rehashed (digests, links, head)',
    tamper: async (sql) => {
      await sql(`UPDATE tenant_secret_audit SET actor = 'x' WHERE chain_id = 'acme' AND seq = 3`);
      await sql(rehash('acme', 3));
    },
    withoutAnchor: true,
    withAnchor: true,
  },
  {
    tampering: "a record edited, its chain rehashed, the chain's checkpoint deleted",
    tamper: async (sql) => {
      await sql(`UPDATE tenant_secret_audit SET actor = 'x' WHERE chain_id = 'acme' AND seq = 3`);
      await sql(rehash('acme', 3));
      await sql(`DELETE FROM tenant_secret_audit_checkpoints WHERE chain_id = 'acme'`);
    },
    withoutAnchor: true,
    withAnchor: true,
  },
  {
    tampering: "a record edited, its chain rehashed, the chain's checkpoint and every anchor deleted",
    tamper: async (sql) => {
      await sql(`UPDATE tenant_secret_audit SET actor = 'x' WHERE chain_id = 'acme' AND seq = 3`);
      await sql(rehash('acme', 3));
      await sql(`DELETE FROM tenant_secret_audit_checkpoints WHERE chain_id = 'acme'`);
      await sql('DELETE FROM tenant_secret_audit_anchors');
    },
    withoutAnchor: false,
    withAnchor: true,
  },
  {
    tampering: 'a record deleted',
    tamper: (sql) => sql(`DELETE FROM tenant_secret_audit WHERE chain_id = 'acme' AND seq = 4`),
    withoutAnchor: true,
    withAnchor: true,
  },
  {
    tampering: 'a checkpoint deleted',
    tamper: (sql) => sql(`DELETE FROM tenant_secret_audit_checkpoints WHERE chain_id = 'acme'`),
    withoutAnchor: true,
    withAnchor: true,
  },
  {
    tampering: 'the newest anchor deleted',
    tamper: (sql) =>
      sql(
        'DELETE FROM tenant_secret_audit_anchors WHERE counter = (SELECT max(counter) FROM tenant_secret_audit_anchors)',
      ),
    withoutAnchor: true,
    withAnchor: true,
  },
  {
    tampering: 'the head rolled back (records kept)',
    tamper: (sql) =>
      sql(`UPDATE tenant_secret_audit_heads SET seq = 7,
             hash = (SELECT hash FROM tenant_secret_audit WHERE chain_id = 'acme' AND seq = 7) WHERE chain_id = 'acme'`),
    withoutAnchor: true,
    withAnchor: true,
  },
  {
    tampering: 'the tail truncated below a checkpoint, the head rolled back',
    tamper: (sql) => sql(truncateTo('acme', 7)),
    withoutAnchor: true,
    withAnchor: true,
  },
  {
    tampering:
      'the tail truncated, the head rolled back, checkpoints and anchors put back as an earlier verification left them',
    anchor: 'latest',
    tamper: async (sql) => {
      await sql(truncateTo('acme', 7));
      await sql(`DELETE FROM tenant_secret_audit_checkpoints;
                 INSERT INTO tenant_secret_audit_checkpoints SELECT * FROM public.saved_checkpoints;
                 DELETE FROM tenant_secret_audit_anchors;
                 INSERT INTO tenant_secret_audit_anchors SELECT * FROM public.saved_anchors`);
    },
    withoutAnchor: false,
    withAnchor: true,
  },
  {
    tampering: 'records sealed after the last verification truncated, the head rolled back',
    anchor: 'previous',
    tamper: (sql) => sql(truncateTo('acme', 9)),
    withoutAnchor: false,
    withAnchor: false,
  },
  {
    tampering: 'the whole trail replaced (records, heads, checkpoints, anchors deleted; a new trail begun)',
    tamper: (sql) =>
      sql(`TRUNCATE tenant_secret_audit, tenant_secret_audit_heads, tenant_secret_audit_checkpoints,
                    tenant_secret_audit_anchors, tenant_secret_audit_pending`),
    withoutAnchor: false,
    withAnchor: true,
  },
];

/**
 * A fresh database: `acme` gets 6 records and a verification (checkpoints, anchor 1: the "earlier"
 * rows are saved), then 3 more records and a second verification (anchor 2, the latest). For an
 * `anchor: 'previous'` case, 2 more records are sealed after anchor 2 and anchor 2 is the one given.
 */
async function anchoredTrail(): Promise<{
  manager: SecretsManager;
  db: { name: string };
  latest: AuditAnchor;
}> {
  const { manager, db } = await setupManager({ auditSealIntervalMs: 0 });
  await manager.set('acme', 'k', 'v1');
  for (let i = 0; i < 5; i++) await manager.getWithVersion('acme', 'k', { fresh: true });
  await manager.set('beta', 'k', 'v1');
  const first = await manager.auditTrail.verify();
  expect(first.ok).toBe(true);
  await adminQuery(db.name, SAVE_EARLIER);
  for (let i = 0; i < 3; i++) await manager.getWithVersion('acme', 'k', { fresh: true });
  const second = await manager.auditTrail.verify();
  expect(second.ok).toBe(true);
  if (!second.anchor) throw new Error('no anchor');
  return { manager, db, latest: second.anchor };
}

describe('the schema owner rewrites history: what verification detects, without and with an anchor', () => {
  for (const c of CASES) {
    it(`${c.tampering}: ${c.withoutAnchor ? 'detected' : 'NOT detected'} without an anchor, ${c.withAnchor ? 'detected' : 'NOT detected'} with one`, async () => {
      const { manager, db, latest } = await anchoredTrail();
      const [head] = await adminQuery<{ seq: number }>(
        db.name,
        "SELECT seq::int FROM tenant_secret_audit_heads WHERE chain_id = 'acme'",
      );
      expect(head?.seq).toBe(9);
      if (c.anchor === 'previous') {
        // Records sealed after the newest anchor; the "latest" anchor is now one verification old.
        await manager.getWithVersion('acme', 'k', { fresh: true });
        await manager.getWithVersion('acme', 'k', { fresh: true });
        await manager.auditTrail.seal();
      }
      await c.tamper((text) => adminQuery(db.name, text));
      const without = await manager.auditTrail.verify({ checkpoint: false });
      const withAnchor = await manager.auditTrail.verify({ checkpoint: false, anchor: latest });
      expect({ without: !without.ok, with: !withAnchor.ok }).toEqual({
        without: c.withoutAnchor,
        with: c.withAnchor,
      });
      if (c.withAnchor && !c.withoutAnchor) {
        expect(withAnchor.problems.map((p) => p.reason)).toContain('anchor_rolled_back');
      }
      // A verification that stores checkpoints never signs over a detected forgery.
      if (c.withoutAnchor) {
        const signing = await manager.auditTrail.verify();
        expect(signing.ok).toBe(false);
      }
    });
  }

  it('docs/audit.md states exactly these outcomes', () => {
    const doc = readFileSync('docs/audit.md', 'utf8');
    for (const c of CASES) {
      const row = `| ${c.tampering} | ${c.withoutAnchor ? 'detected' : '**not detected**'} | ${c.withAnchor ? 'detected' : '**not detected**'} |`;
      expect(doc, c.tampering).toContain(row);
    }
  });
});
