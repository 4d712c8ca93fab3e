import { beforeAll, describe, expect, it } from 'vitest';
import { createSecretsManager, type SecretsManager } from '../src/index.js';
import { adminQuery, OTHER_KEY, setupManager, TEST_KEY } from './support/db.js';

/**
 * Each tampering case, done as the database superuser (who can bypass every privilege), is found
 * by verifyAudit(), which names the first bad record. Each case uses its own tenant chain.
 */
let manager: SecretsManager;
let db: { name: string; url: string };

/** A tenant chain of `count` records (set, then reads). */
async function makeChain(tenant: string, count = 6): Promise<void> {
  await manager.set(tenant, 'k', 'value-never-audited');
  for (let i = 1; i < count; i++) await manager.get(tenant, 'k');
}

async function recordId(tenant: string, seq: number): Promise<number> {
  const rows = await adminQuery(
    db.name,
    'SELECT id FROM tenant_secret_audit WHERE chain_id = $1 AND seq = $2',
    [tenant, seq],
  );
  return Number(rows[0]?.id);
}

/** What an owner who knows the scheme does: recompute every hash from `fromSeq` on, and the head. */
async function rehash(tenant: string, fromSeq: number): Promise<void> {
  await adminQuery(
    db.name,
    `DO $$
DECLARE r record; v_prev bytea; v_hash bytea;
BEGIN
  SELECT hash INTO v_prev FROM tenant_secret_audit WHERE chain_id = '${tenant}' AND seq = ${fromSeq - 1};
  FOR r IN SELECT * FROM tenant_secret_audit WHERE chain_id = '${tenant}' AND seq >= ${fromSeq} ORDER BY seq LOOP
    v_hash := _ts_audit_hash(v_prev, r.chain_id, r.seq, r.occurred_at, r.tenant_id, r.db_role, r.actor, r.action,
      r.key_name, r.version, r.outcome, r.error_code, r.request_id, r.context, r.details);
    UPDATE tenant_secret_audit SET prev_hash = v_prev, hash = v_hash WHERE id = r.id;
    v_prev := v_hash;
  END LOOP;
  UPDATE tenant_secret_audit_heads h SET seq = (SELECT max(seq) FROM tenant_secret_audit WHERE chain_id = '${tenant}'),
         hash = v_prev WHERE chain_id = '${tenant}';
END $$`,
  );
}

const verify = (tenantId: string) => manager.verifyAudit({ tenantId, checkpoint: false });

beforeAll(async () => {
  ({ manager, db } = await setupManager());
});

describe('verifyAudit detects tampering', () => {
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

  it('an edited record whose own hash was recomputed (broken_link on the next record)', async () => {
    await makeChain('t-edit2');
    await adminQuery(
      db.name,
      `UPDATE tenant_secret_audit SET outcome = 'failure' WHERE chain_id = 't-edit2' AND seq = 2`,
    );
    await adminQuery(
      db.name,
      `UPDATE tenant_secret_audit a SET hash = _ts_audit_hash(a.prev_hash, a.chain_id, a.seq, a.occurred_at, a.tenant_id,
         a.db_role, a.actor, a.action, a.key_name, a.version, a.outcome, a.error_code, a.request_id, a.context, a.details)
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

  it('two records swapped (reordered)', async () => {
    await makeChain('t-swap');
    // Swap everything but id and seq between records 2 and 3.
    await adminQuery(
      db.name,
      `WITH a AS (SELECT * FROM tenant_secret_audit WHERE chain_id = 't-swap' AND seq = 2),
            b AS (SELECT * FROM tenant_secret_audit WHERE chain_id = 't-swap' AND seq = 3)
       UPDATE tenant_secret_audit t SET occurred_at = s.occurred_at, actor = s.actor, action = s.action,
              version = s.version, request_id = s.request_id, details = s.details, prev_hash = s.prev_hash, hash = s.hash
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

  it('a forged record appended with a correct hash (head_mismatch)', async () => {
    await makeChain('t-insert');
    await adminQuery(
      db.name,
      `INSERT INTO tenant_secret_audit (chain_id, seq, occurred_at, tenant_id, db_role, actor, action, outcome, prev_hash, hash)
       SELECT h.chain_id, h.seq + 1, '2026-01-01Z', h.chain_id, 'postgres', 'forger', 'secret.read', 'success', h.hash,
              _ts_audit_hash(h.hash, h.chain_id, h.seq + 1, '2026-01-01Z', h.chain_id, 'postgres', 'forger',
                             'secret.read', NULL, NULL, 'success', NULL, NULL, NULL, NULL)
         FROM tenant_secret_audit_heads h WHERE h.chain_id = 't-insert'`,
    );
    expect((await verify('t-insert')).firstBad).toMatchObject({ seq: 7, reason: 'head_mismatch' });
  });

  it('a forged record inserted in the middle (seq shifted)', async () => {
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
      `INSERT INTO tenant_secret_audit (chain_id, seq, occurred_at, tenant_id, db_role, actor, action, outcome, prev_hash, hash)
       SELECT chain_id, 3, now(), chain_id, 'postgres', 'forger', 'secret.read', 'success', hash, hash
         FROM tenant_secret_audit WHERE chain_id = 't-insert2' AND seq = 2`,
    );
    expect((await verify('t-insert2')).firstBad).toMatchObject({ seq: 3, reason: 'hash_mismatch' });
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
  });

  it('records deleted as if pruned (anchor moved by hand past a checkpoint), but not a real prune', async () => {
    await makeChain('t-fakeprune', 3);
    await manager.verifyAudit({ tenantId: 't-fakeprune' }); // checkpoint at 3
    for (let i = 0; i < 3; i++) await manager.get('t-fakeprune', 'k');
    await adminQuery(db.name, `DELETE FROM tenant_secret_audit WHERE chain_id = 't-fakeprune' AND seq <= 5`);
    await adminQuery(
      db.name,
      `UPDATE tenant_secret_audit_heads SET anchor_seq = 5,
              anchor_hash = (SELECT prev_hash FROM tenant_secret_audit WHERE chain_id = 't-fakeprune' AND seq = 6)
        WHERE chain_id = 't-fakeprune'`,
    );
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
  });

  it('a forged or moved checkpoint (checkpoint_forged)', async () => {
    await makeChain('t-mark');
    await manager.verifyAudit({ tenantId: 't-mark' });
    await manager.get('t-mark', 'k');
    await manager.get('t-mark', 'k');
    // Move the checkpoint to another record, keeping its signature: the MAC binds chain, seq and hash.
    await adminQuery(
      db.name,
      `UPDATE tenant_secret_audit_checkpoints c SET seq = 8, hash = a.hash FROM tenant_secret_audit a
        WHERE c.chain_id = 't-mark' AND a.chain_id = 't-mark' AND a.seq = 8`,
    );
    expect((await verify('t-mark')).firstBad).toMatchObject({ seq: 8, reason: 'checkpoint_forged' });
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
