import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createSecretsManager, type SecretsManager } from '../../src/index.js';
import { dayPartitions, sealAt } from '../support/audit.js';
import { adminQuery, OTHER_KEY, setupManager, TEST_KEY } from '../support/db.js';

/**
 * Each tampering case, done as the database superuser (who can bypass every privilege), is found
 * by verifyAudit(), which names the first bad record. Each case uses its own tenant chain. Records
 * are sealed (chained) before they are tampered with, except where a case is about a pending record.
 */
let manager: SecretsManager;
let db: { name: string; url: string };

/** A sealed tenant chain of `count` records (set, then reads). */
async function makeChain(tenant: string, count = 6): Promise<void> {
  await manager.set(tenant, 'k', 'value-never-audited');
  for (let i = 1; i < count; i++) await manager.get(tenant, 'k');
  await manager.sealAudit();
}

/** Digest of a record's content and link, as the library computes them (SQL expressions over alias a). */
const DIGEST = `_ts_audit_digest(a.chain_id, a.occurred_at, a.tenant_id, a.db_role, a.actor, a.action, a.key_name,
  a.version, a.outcome, a.error_code, a.request_id, a.context, a.details)`;

async function recordId(tenant: string, seq: number): Promise<number> {
  const rows = await adminQuery(
    db.name,
    'SELECT id FROM tenant_secret_audit WHERE chain_id = $1 AND seq = $2',
    [tenant, seq],
  );
  return Number(rows[0]?.id);
}

/** What an owner who knows the scheme does: recompute every digest and hash from `fromSeq` on, and the head. */
async function rehash(tenant: string, fromSeq: number): Promise<void> {
  await adminQuery(
    db.name,
    `DO $$
DECLARE a record; v_prev bytea; v_digest bytea; v_hash bytea;
BEGIN
  SELECT hash INTO v_prev FROM tenant_secret_audit WHERE chain_id = '${tenant}' AND seq = ${fromSeq - 1};
  FOR a IN SELECT * FROM tenant_secret_audit WHERE chain_id = '${tenant}' AND seq >= ${fromSeq} AND seq IS NOT NULL ORDER BY seq LOOP
    v_digest := ${DIGEST};
    v_hash := _ts_audit_link(v_prev, a.chain_id, a.seq, v_digest);
    UPDATE tenant_secret_audit SET digest = v_digest, hash = v_hash WHERE id = a.id;
    v_prev := v_hash;
  END LOOP;
  UPDATE tenant_secret_audit_heads h SET seq = (SELECT max(seq) FROM tenant_secret_audit WHERE chain_id = '${tenant}'),
         hash = v_prev WHERE chain_id = '${tenant}';
END $$`,
  );
}

const verify = (tenantId: string | null) => manager.verifyAudit({ tenantId, checkpoint: false });

beforeAll(async () => {
  ({ manager, db } = await setupManager({ auditSealIntervalMs: 0 }));
});

describe('verifyAudit detects tampering', () => {
  // Cases share one database, and tampering with checkpoints is evidence every later verification
  // reports (checkpoints_changed) until an operator re-anchors after investigating: as each case's
  // investigation is its assertions, re-anchor after it (bad chains keep their evidence).
  afterEach(async () => {
    await manager.verifyAudit({ reanchor: true, heads: false });
  });

  it('passes on an untouched chain', async () => {
    await makeChain('t-clean');
    const result = await verify('t-clean');
    expect(result).toMatchObject({ ok: true, chains: 1, records: 6, problems: [] });
    const last = (await manager.audit('t-clean')).records.at(-1);
    expect(result.heads).toEqual([{ chainId: 't-clean', seq: 6, hash: last?.hash }]);
  });

  it('an edited field (hash_mismatch on that record)', async () => {
    await makeChain('t-edit');
    await adminQuery(
      db.name,
      `UPDATE tenant_secret_audit SET actor = 'mallory' WHERE chain_id = 't-edit' AND seq = 3`,
    );
    const result = await verify('t-edit');
    expect(result.ok).toBe(false);
    expect(result.firstBad).toEqual({
      chainId: 't-edit',
      seq: 3,
      id: await recordId('t-edit', 3),
      reason: 'hash_mismatch',
    });
  });

  it('an edited record whose own digest and hash were recomputed (broken_link on the next record)', async () => {
    await makeChain('t-edit2');
    await adminQuery(
      db.name,
      `UPDATE tenant_secret_audit SET outcome = 'failure' WHERE chain_id = 't-edit2' AND seq = 2`,
    );
    await adminQuery(
      db.name,
      `UPDATE tenant_secret_audit a SET digest = ${DIGEST},
              hash = _ts_audit_link((SELECT p.hash FROM tenant_secret_audit p WHERE p.chain_id = a.chain_id AND p.seq = 1),
                                    a.chain_id, a.seq, ${DIGEST})
       WHERE chain_id = 't-edit2' AND seq = 2`,
    );
    const result = await verify('t-edit2');
    expect(result.firstBad).toEqual({
      chainId: 't-edit2',
      seq: 3,
      id: await recordId('t-edit2', 3),
      reason: 'broken_link',
    });
  });

  it('a deleted middle record (missing_records on its successor)', async () => {
    await makeChain('t-del');
    await adminQuery(db.name, `DELETE FROM tenant_secret_audit WHERE chain_id = 't-del' AND seq = 4`);
    const result = await verify('t-del');
    expect(result.firstBad).toEqual({
      chainId: 't-del',
      seq: 5,
      id: await recordId('t-del', 5),
      reason: 'missing_records',
    });
  });

  it('a deleted first record (missing_records against the anchor)', async () => {
    await makeChain('t-del1');
    await adminQuery(db.name, `DELETE FROM tenant_secret_audit WHERE chain_id = 't-del1' AND seq = 1`);
    expect((await verify('t-del1')).firstBad).toMatchObject({ seq: 2, reason: 'missing_records' });
  });

  it('a deleted tail record (tail_missing against the head)', async () => {
    await makeChain('t-tail');
    await adminQuery(db.name, `DELETE FROM tenant_secret_audit WHERE chain_id = 't-tail' AND seq = 6`);
    expect((await verify('t-tail')).firstBad).toEqual({
      chainId: 't-tail',
      seq: 6,
      id: null,
      reason: 'tail_missing',
    });
  });

  it('a deleted tail record is found when a page ends right at the last record left (every page size)', async () => {
    await makeChain('t-tail2');
    await adminQuery(db.name, `DELETE FROM tenant_secret_audit WHERE chain_id = 't-tail2' AND seq = 6`);
    for (const pageSize of [1, 2, 3, 4, 5, 6, 7]) {
      const result = await manager.verifyAudit({ tenantId: 't-tail2', checkpoint: false, pageSize });
      expect(result.firstBad, `pageSize ${pageSize}`).toEqual({
        chainId: 't-tail2',
        seq: 6,
        id: null,
        reason: 'tail_missing',
      });
    }
    // An untouched chain reports its end (and is counted) whatever the page size.
    await makeChain('t-pages', 4);
    for (const pageSize of [1, 2, 3, 4, 5]) {
      const result = await manager.verifyAudit({ tenantId: 't-pages', checkpoint: false, pageSize });
      expect(result, `pageSize ${pageSize}`).toMatchObject({ ok: true, chains: 1, records: 4 });
      expect(result.heads.map((h) => h.seq)).toEqual([4]);
    }
  });

  it('two records swapped (reordered)', async () => {
    await makeChain('t-swap');
    // Swap everything but id and seq between records 2 and 3 (content, digest and hash).
    await adminQuery(
      db.name,
      `WITH a AS (SELECT * FROM tenant_secret_audit WHERE chain_id = 't-swap' AND seq = 2),
            b AS (SELECT * FROM tenant_secret_audit WHERE chain_id = 't-swap' AND seq = 3)
       UPDATE tenant_secret_audit t SET occurred_at = s.occurred_at, actor = s.actor, action = s.action,
              version = s.version, request_id = s.request_id, details = s.details, digest = s.digest, hash = s.hash
         FROM (SELECT 2 AS target, b.* FROM b UNION ALL SELECT 3, a.* FROM a) s
        WHERE t.chain_id = 't-swap' AND t.seq = s.target`,
    );
    expect((await verify('t-swap')).firstBad).toMatchObject({
      chainId: 't-swap',
      seq: 2,
      reason: 'broken_link',
    });
  });

  it('two records with their seq numbers exchanged', async () => {
    await makeChain('t-reorder');
    await adminQuery(
      db.name,
      `UPDATE tenant_secret_audit SET seq = -4 WHERE chain_id = 't-reorder' AND seq = 4`,
    );
    await adminQuery(
      db.name,
      `UPDATE tenant_secret_audit SET seq = 4 WHERE chain_id = 't-reorder' AND seq = 5`,
    );
    await adminQuery(
      db.name,
      `UPDATE tenant_secret_audit SET seq = 5 WHERE chain_id = 't-reorder' AND seq = -4`,
    );
    expect((await verify('t-reorder')).firstBad).toMatchObject({ seq: 4, reason: 'broken_link' });
  });

  it('a forged record appended with a correct digest and hash (head_mismatch)', async () => {
    await makeChain('t-insert');
    await adminQuery(
      db.name,
      `WITH f AS (
         SELECT h.chain_id, h.seq + 1 AS seq, h.hash AS prev,
                _ts_audit_digest(h.chain_id, now(), h.chain_id, 'postgres', 'forger', 'secret.read', NULL, NULL, 'success',
                                 NULL, NULL, NULL, NULL) AS digest
           FROM tenant_secret_audit_heads h WHERE h.chain_id = 't-insert')
       INSERT INTO tenant_secret_audit (chain_id, seq, occurred_at, tenant_id, db_role, actor, action, outcome, digest, hash, sealed_at)
       SELECT f.chain_id, f.seq, now(), f.chain_id, 'postgres', 'forger', 'secret.read', 'success', f.digest,
              _ts_audit_link(f.prev, f.chain_id, f.seq, f.digest), now()
         FROM f`,
    );
    expect((await verify('t-insert')).firstBad).toMatchObject({ seq: 7, reason: 'head_mismatch' });
  });

  it('a forged record inserted in the middle, seq shifted (hash_mismatch, or broken_link after it when its hash is right)', async () => {
    await makeChain('t-insert2');
    await adminQuery(
      db.name,
      `UPDATE tenant_secret_audit SET seq = seq + 100 WHERE chain_id = 't-insert2' AND seq >= 3`,
    );
    await adminQuery(
      db.name,
      `UPDATE tenant_secret_audit SET seq = seq - 99 WHERE chain_id = 't-insert2' AND seq >= 103`,
    );
    await adminQuery(
      db.name,
      `INSERT INTO tenant_secret_audit (chain_id, seq, occurred_at, tenant_id, db_role, actor, action, outcome, digest, hash, sealed_at)
       SELECT chain_id, 3, now(), chain_id, 'postgres', 'forger', 'secret.read', 'success', digest, hash, now()
         FROM tenant_secret_audit WHERE chain_id = 't-insert2' AND seq = 2`,
    );
    expect((await verify('t-insert2')).firstBad).toMatchObject({ seq: 3, reason: 'hash_mismatch' });
    // The forger computes the inserted record's digest and link: the record after it no longer links.
    await adminQuery(
      db.name,
      `UPDATE tenant_secret_audit a SET digest = ${DIGEST},
              hash = _ts_audit_link((SELECT p.hash FROM tenant_secret_audit p WHERE p.chain_id = a.chain_id AND p.seq = 2),
                                    a.chain_id, 3, ${DIGEST})
        WHERE chain_id = 't-insert2' AND seq = 3 AND actor = 'forger'`,
    );
    expect((await verify('t-insert2')).firstBad).toMatchObject({ seq: 4, reason: 'broken_link' });
  });

  it('a deleted head row (head_missing)', async () => {
    await makeChain('t-nohead');
    await adminQuery(db.name, `DELETE FROM tenant_secret_audit_heads WHERE chain_id = 't-nohead'`);
    expect((await verify('t-nohead')).firstBad).toMatchObject({
      chainId: 't-nohead',
      reason: 'head_missing',
    });
    // Verifying every chain also finds the chain that lost its head.
    const all = await manager.verifyAudit({ checkpoint: false });
    expect(all.problems).toContainEqual(
      expect.objectContaining({ chainId: 't-nohead', reason: 'head_missing' }),
    );
  });

  it('the owner rewriting a record and recomputing every hash after a checkpoint (checkpoint_mismatch)', async () => {
    await makeChain('t-rewrite');
    const signed = await manager.verifyAudit({ tenantId: 't-rewrite' });
    expect(signed).toMatchObject({ ok: true, checkpoints: 0 });
    await manager.get('t-rewrite', 'k');
    await manager.sealAudit();
    await adminQuery(
      db.name,
      `UPDATE tenant_secret_audit SET actor = 'someone-else' WHERE chain_id = 't-rewrite' AND seq = 2`,
    );
    await rehash('t-rewrite', 2);
    // The chain is self-consistent again: only the signed checkpoint at seq 6 shows the rewrite.
    const result = await verify('t-rewrite');
    expect(result.ok).toBe(false);
    expect(result.firstBad).toMatchObject({ chainId: 't-rewrite', seq: 6, reason: 'checkpoint_mismatch' });
    expect(result.problems).toHaveLength(1);
  });

  it('the owner truncating the tail and rewriting the head after a checkpoint (checkpoint_record_missing)', async () => {
    await makeChain('t-trunc');
    await manager.verifyAudit({ tenantId: 't-trunc' });
    await adminQuery(db.name, `DELETE FROM tenant_secret_audit WHERE chain_id = 't-trunc' AND seq >= 5`);
    await adminQuery(
      db.name,
      `UPDATE tenant_secret_audit_heads h SET seq = 4, hash = (SELECT hash FROM tenant_secret_audit WHERE chain_id = 't-trunc' AND seq = 4)
        WHERE chain_id = 't-trunc'`,
    );
    expect((await verify('t-trunc')).firstBad).toMatchObject({ seq: 6, reason: 'checkpoint_record_missing' });
    // Whatever the page size (a page may end right at the last record left).
    for (const pageSize of [1, 2, 4, 5]) {
      const result = await manager.verifyAudit({ tenantId: 't-trunc', checkpoint: false, pageSize });
      expect(result.firstBad, `pageSize ${pageSize}`).toMatchObject({
        seq: 6,
        reason: 'checkpoint_record_missing',
      });
    }
  });

  it('records deleted as if pruned (anchor moved by hand past a checkpoint), but not a real prune', async () => {
    await makeChain('t-fakeprune', 3);
    await manager.verifyAudit({ tenantId: 't-fakeprune' }); // checkpoint at 3
    for (let i = 0; i < 3; i++) await manager.get('t-fakeprune', 'k');
    await manager.sealAudit();
    await adminQuery(
      db.name,
      `UPDATE tenant_secret_audit_heads SET anchor_seq = 5,
              anchor_hash = (SELECT hash FROM tenant_secret_audit WHERE chain_id = 't-fakeprune' AND seq = 5)
        WHERE chain_id = 't-fakeprune'`,
    );
    await adminQuery(db.name, `DELETE FROM tenant_secret_audit WHERE chain_id = 't-fakeprune' AND seq <= 5`);
    expect((await verify('t-fakeprune')).firstBad).toMatchObject({
      seq: 3,
      reason: 'checkpoint_record_missing',
    });

    await makeChain('t-realprune', 3);
    await manager.verifyAudit({ tenantId: 't-realprune' });
    await manager.get('t-realprune', 'k');
    await manager.get('t-realprune', 'k');
    await new Promise((resolve) => setTimeout(resolve, 20));
    await manager.get('t-realprune', 'k');
    const fifth = (await manager.audit('t-realprune')).records[4];
    // occurredAt has µs precision in the database, ms in JS: 2 ms later is after record 5 and
    // (20 ms pause) before record 6.
    const pruned = await manager.pruneAudit({
      tenantId: 't-realprune',
      olderThan: new Date((fifth?.occurredAt.getTime() ?? 0) + 2),
    });
    expect(pruned).toMatchObject({ records: 5, anchors: [{ chainId: 't-realprune', seq: 5 }] });
    expect(await verify('t-realprune')).toMatchObject({ ok: true, records: 1 });
    // The checkpoint at 3 went with the records; the library signed one at the new anchor (and the
    // verification before the prune one at the head).
    expect(
      await adminQuery(
        db.name,
        `SELECT seq::int FROM tenant_secret_audit_checkpoints WHERE chain_id = 't-realprune' ORDER BY seq`,
      ),
    ).toEqual([{ seq: 5 }, { seq: 6 }]);
  });

  it('a forged or moved checkpoint (checkpoint_forged)', async () => {
    await makeChain('t-mark');
    await manager.verifyAudit({ tenantId: 't-mark' });
    await manager.get('t-mark', 'k');
    await manager.get('t-mark', 'k');
    await manager.sealAudit();
    // Move the checkpoint to another record, keeping its signature: the MAC binds chain, seq and hash.
    await adminQuery(
      db.name,
      `UPDATE tenant_secret_audit_checkpoints c SET seq = 8, hash = a.hash FROM tenant_secret_audit a
        WHERE c.chain_id = 't-mark' AND a.chain_id = 't-mark' AND a.seq = 8`,
    );
    expect((await verify('t-mark')).firstBad).toMatchObject({ seq: 8, reason: 'checkpoint_forged' });
  });

  it('NOT detected (the unsealed window): a pending record deleted, or rewritten with its digest, before sealing', async () => {
    await makeChain('t-window', 2);
    await manager.get('t-window', 'k');
    await manager.get('t-window', 'k');
    await adminQuery(
      db.name,
      `DELETE FROM tenant_secret_audit_pending WHERE chain_id = 't-window' AND id = (
      SELECT min(id) FROM tenant_secret_audit_pending WHERE chain_id = 't-window')`,
    );
    await adminQuery(
      db.name,
      `UPDATE tenant_secret_audit_pending SET actor = 'someone-else' WHERE chain_id = 't-window'`,
    );
    await adminQuery(
      db.name,
      `UPDATE tenant_secret_audit_pending a SET digest = ${DIGEST} WHERE chain_id = 't-window'`,
    );
    // docs/audit.md states it: until a record is sealed, who can write the database can remove or
    // rewrite it. The sealer keeps that window short (sealAudit().oldestPending measures it).
    const result = await verify('t-window');
    expect(result).toMatchObject({ ok: true, records: 3 });
    expect((await manager.audit('t-window')).records.map((r) => r.actor)).toEqual([
      'test',
      'test',
      'someone-else',
    ]);
  });

  it('a deleted chain whose checkpoint remains (chain_missing)', async () => {
    await makeChain('t-gone');
    await manager.verifyAudit({ tenantId: 't-gone' }); // checkpoint at 6
    await adminQuery(db.name, `DELETE FROM tenant_secret_audit WHERE chain_id = 't-gone'`);
    await adminQuery(db.name, `DELETE FROM tenant_secret_audit_heads WHERE chain_id = 't-gone'`);
    expect((await verify('t-gone')).firstBad).toMatchObject({
      chainId: 't-gone',
      seq: 6,
      reason: 'chain_missing',
    });
    const all = await manager.verifyAudit({ checkpoint: false });
    expect(all.problems).toContainEqual(
      expect.objectContaining({ chainId: 't-gone', reason: 'chain_missing' }),
    );
  });

  it("a deleted chain together with its checkpoint (chain_missing, from the system chain's audit.chain_started registry)", async () => {
    await makeChain('t-vanish');
    // The chain was registered on the system chain in the same sealing pass as its first records.
    const registered = await adminQuery(
      db.name,
      `SELECT seq FROM tenant_secret_audit WHERE chain_id = '' AND action = 'audit.chain_started'
          AND details->>'chain_id' = 't-vanish' AND seq IS NOT NULL`,
    );
    expect(registered).toHaveLength(1);
    await manager.verifyAudit({ tenantId: 't-vanish' });
    await adminQuery(db.name, `DELETE FROM tenant_secret_audit WHERE chain_id = 't-vanish'`);
    await adminQuery(db.name, `DELETE FROM tenant_secret_audit_heads WHERE chain_id = 't-vanish'`);
    await adminQuery(db.name, `DELETE FROM tenant_secret_audit_checkpoints WHERE chain_id = 't-vanish'`);
    // A verification of that one chain has nothing left to look at...
    expect(await verify('t-vanish')).toMatchObject({ ok: true, chains: 0, records: 0 });
    // ...a verification of every chain reads the registry.
    const all = await manager.verifyAudit({ checkpoint: false });
    expect(all.problems).toContainEqual({
      chainId: 't-vanish',
      seq: null,
      id: null,
      reason: 'chain_missing',
    });
    // Deleting the registration too breaks the system chain.
    await adminQuery(db.name, `DELETE FROM tenant_secret_audit WHERE chain_id = '' AND seq = $1`, [
      registered[0]?.seq,
    ]);
    const after = await verify(null);
    expect(after.firstBad).toMatchObject({
      chainId: '',
      seq: Number(registered[0]?.seq) + 1,
      reason: 'missing_records',
    });
  });

  it('checkpoints under an unknown key are reported; resignAuditCheckpoints re-signs under the new key', async () => {
    await makeChain('t-keys');
    await manager.verifyAudit({ tenantId: 't-keys' });
    const rotated = createSecretsManager({
      connectionString: db.url,
      masterKey: OTHER_KEY,
      previousMasterKeys: [TEST_KEY],
    });
    const onlyNew = createSecretsManager({ connectionString: db.url, masterKey: OTHER_KEY });
    try {
      expect((await onlyNew.verifyAudit({ tenantId: 't-keys', checkpoint: false })).firstBad).toMatchObject({
        seq: 6,
        reason: 'checkpoint_unknown_key',
        masterKeyId: manager.masterKeyIds[0],
      });
      const { resigned } = await rotated.resignAuditCheckpoints();
      expect(resigned).toBeGreaterThanOrEqual(1);
      expect(await onlyNew.verifyAudit({ tenantId: 't-keys', checkpoint: false })).toMatchObject({
        ok: true,
        checkpoints: 1,
      });
      const rows = await adminQuery(
        db.name,
        `SELECT master_key_id FROM tenant_secret_audit_checkpoints WHERE chain_id = 't-keys'`,
      );
      expect(rows.map((r) => r.master_key_id)).toEqual([onlyNew.masterKeyIds[0]]);
    } finally {
      await rotated.close();
      await onlyNew.close();
    }
  });

  it('reports no false positive while operations append to the chain being verified', async () => {
    await makeChain('t-busy', 30);
    let stop = false;
    const writers = Array.from({ length: 4 }, async (_, w) => {
      let n = 0;
      while (!stop) {
        await manager.get('t-busy', 'k');
        if (n++ % 5 === 0) await manager.set('t-busy', `w${w}`, 'busy-value');
      }
      return n;
    });
    const results = [];
    for (let i = 0; i < 5; i++) results.push(await manager.verifyAudit({ tenantId: 't-busy', pageSize: 7 }));
    stop = true;
    const counts = await Promise.all(writers);
    expect(counts.reduce((a, b) => a + b, 0)).toBeGreaterThan(0);
    expect(results.map((r) => r.ok)).toEqual([true, true, true, true, true]);
    const final = await verify('t-busy');
    expect(final.ok).toBe(true);
    expect(final.checkpoints).toBeGreaterThanOrEqual(1);
  });

  it('records the outcome of each verification on the system chain', async () => {
    await verify('t-edit');
    const system = (await manager.audit(null, { action: 'audit.verified', limit: 1000 })).records;
    expect(system.at(-1)).toMatchObject({
      outcome: 'failure',
      errorCode: 'TAMPERED',
      details: { scope: 't-edit', first_bad: { chain_id: 't-edit', seq: 3, reason: 'hash_mismatch' } },
    });
  });
});

describe('verifyAudit detects a day partition truncated or dropped', () => {
  const DAY = 86_400_000;

  /** Chains p-a and p-b with records sealed on three days (3, 2 and 1 day ago), verified and signed. */
  async function spreadOverDays(): Promise<{ m: SecretsManager; name: string; days: string[] }> {
    const { manager: m, db: d } = await setupManager({ auditSealIntervalMs: 0 });
    for (const [n, daysAgo] of [
      [1, 3],
      [2, 2],
      [2, 1],
    ] as const) {
      for (const tenant of ['p-a', 'p-b']) {
        if (n === 1) await m.set(tenant, 'k', 'value-never-audited');
        else for (let i = 0; i < n; i++) await m.get(tenant, 'k');
      }
      await sealAt(d.name, new Date(Date.now() - daysAgo * DAY));
    }
    expect(await m.verifyAudit()).toMatchObject({ ok: true });
    const days = await dayPartitions((sql) => adminQuery(d.name, sql));
    expect(days).toHaveLength(4); // three past days, and today's (the verification's own records)
    return { m, name: d.name, days };
  }

  it('a middle day truncated (missing_records on the first record after it, in every chain)', async () => {
    const { m, name, days } = await spreadOverDays();
    await adminQuery(name, `TRUNCATE ${days[1]}`);
    const result = await m.verifyAudit({ checkpoint: false });
    expect(result.ok).toBe(false);
    expect(result.problems).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ chainId: 'p-a', seq: 4, reason: 'missing_records' }),
        expect.objectContaining({ chainId: 'p-b', seq: 4, reason: 'missing_records' }),
      ]),
    );
  });

  it('the newest day dropped (tail_missing, and the signed checkpoints name records that are gone)', async () => {
    const { m, name, days } = await spreadOverDays();
    await adminQuery(name, `DROP TABLE ${days[2]}`);
    const result = await m.verifyAudit({ checkpoint: false });
    expect(result.problems).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ chainId: 'p-a', seq: 4, reason: 'tail_missing' }),
        expect.objectContaining({ chainId: 'p-b', reason: 'checkpoint_record_missing' }),
      ]),
    );
    // ...even when the heads are rewritten to the records that are left: the checkpoints remain.
    await adminQuery(
      name,
      `UPDATE tenant_secret_audit_heads h SET seq = a.seq, hash = a.hash
         FROM (SELECT DISTINCT ON (chain_id) chain_id, seq, hash FROM tenant_secret_audit
                WHERE seq IS NOT NULL ORDER BY chain_id, seq DESC) a
        WHERE h.chain_id = a.chain_id AND h.chain_id <> ''`,
    );
    const again = await m.verifyAudit({ checkpoint: false });
    expect(again.problems).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ chainId: 'p-a', seq: 5, reason: 'checkpoint_record_missing' }),
        expect.objectContaining({ chainId: 'p-b', seq: 5, reason: 'checkpoint_record_missing' }),
      ]),
    );
  });
});
