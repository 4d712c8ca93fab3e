import { beforeAll, describe, expect, it } from 'vitest';
import type { AuditRecord, SecretsManager } from '../src/index.js';
import { adminQuery, setupManager } from './support/db.js';

/**
 * A trail of 100,000 records (generated in SQL as the superuser, with the same hash function the
 * library uses) verifies; prune then verify passes; export lines parse and match the records.
 */
const TENANT = 'bulk-tenant';
const COUNT = 100_000;
const PRUNE_BEFORE = 40_000; // records 1..39,999 occurred before the cutoff

let manager: SecretsManager;
let db: { name: string; url: string };
let base: Date;

beforeAll(async () => {
  ({ manager, db } = await setupManager());
  const rows = await adminQuery(db.name, `SELECT date_trunc('second', now() - interval '2 days') AS base`);
  base = rows[0]?.base as Date;
  // One record per second from `base`: the same encoding _ts_audit writes, in one transaction.
  await adminQuery(
    db.name,
    `DO $$
DECLARE
  v_prev bytea := '\\x0000000000000000000000000000000000000000000000000000000000000000'::bytea;
  v_hash bytea;
  v_at timestamptz;
  v_ctx jsonb := '{"ip": "198.51.100.4"}';
  v_base timestamptz := '${base.toISOString()}';
BEGIN
  FOR i IN 1..${COUNT} LOOP
    v_at := v_base + make_interval(secs => i);
    v_hash := _ts_audit_hash(v_prev, '${TENANT}', i, v_at, '${TENANT}', 'postgres', 'loadgen', 'secret.read',
                             'key-' || (i % 50), 1, 'success', NULL, 'req-' || i, v_ctx, NULL);
    INSERT INTO tenant_secret_audit (chain_id, seq, occurred_at, tenant_id, db_role, actor, action, key_name, version,
                                     outcome, error_code, request_id, context, details, prev_hash, hash)
    VALUES ('${TENANT}', i, v_at, '${TENANT}', 'postgres', 'loadgen', 'secret.read', 'key-' || (i % 50), 1,
            'success', NULL, 'req-' || i, v_ctx, NULL, v_prev, v_hash);
    v_prev := v_hash;
  END LOOP;
  INSERT INTO tenant_secret_audit_heads (chain_id, seq, hash) VALUES ('${TENANT}', ${COUNT}, v_prev);
END $$`,
  );
  // Real operations continue the generated chain.
  await manager.set(TENANT, 'live', 'live-value');
  await manager.get(TENANT, 'live');
}, 300_000);

describe('audit trail at scale', () => {
  it('verifies an untouched trail of 100,000 records', async () => {
    const progress: number[] = [];
    const started = performance.now();
    const result = await manager.verifyAudit({ onProgress: (p) => progress.push(p.records) });
    const seconds = (performance.now() - started) / 1000;
    console.log(`verifyAudit: ${result.records} records in ${seconds.toFixed(2)} s`);
    expect(result).toMatchObject({ ok: true, problems: [] });
    expect(result.records).toBeGreaterThanOrEqual(COUNT + 2);
    expect(progress.length).toBeGreaterThan(COUNT / 5000);
    expect(progress).toEqual([...progress].sort((a, b) => a - b));
    // ...and finds a single flipped bit among them.
    await adminQuery(
      db.name,
      `UPDATE tenant_secret_audit SET request_id = 'req-x' WHERE chain_id = '${TENANT}' AND seq = 77777`,
    );
    const bad = await manager.verifyAudit({ tenantId: TENANT, checkpoint: false });
    expect(bad.firstBad).toMatchObject({ chainId: TENANT, seq: 77777, reason: 'hash_mismatch' });
    await adminQuery(
      db.name,
      `UPDATE tenant_secret_audit SET request_id = 'req-77777' WHERE chain_id = '${TENANT}' AND seq = 77777`,
    );
  });

  it('exports JSON Lines that parse, keep a stable field order and match the records', async () => {
    const lines: string[] = [];
    for await (const line of manager.exportAudit({ tenantId: TENANT })) lines.push(line);
    expect(lines).toHaveLength(COUNT + 2);
    const first = JSON.parse(lines[0] as string);
    expect(Object.keys(first)).toEqual([
      'id',
      'chainId',
      'seq',
      'occurredAt',
      'tenantId',
      'dbRole',
      'actor',
      'action',
      'keyName',
      'version',
      'outcome',
      'errorCode',
      'requestId',
      'context',
      'details',
      'prevHash',
      'hash',
    ]);
    const page = await manager.audit(TENANT, { limit: 3 });
    const asJson = (r: AuditRecord) =>
      JSON.parse(JSON.stringify({ ...r, occurredAt: r.occurredAt.toISOString() }));
    expect(lines.slice(0, 3).map((l) => JSON.parse(l))).toEqual(page.records.map(asJson));
    expect(first).toMatchObject({ seq: 1, requestId: 'req-1', context: { ip: '198.51.100.4' } });
    expect(first.prevHash).toMatch(/^0{64}$/);
    // The exported lines carry the chain: every prevHash is the previous line's hash.
    let prev = first.hash;
    let broken = 0;
    for (const line of lines.slice(1)) {
      const record = JSON.parse(line);
      if (record.prevHash !== prev) broken += 1;
      prev = record.hash;
    }
    expect(broken).toBe(0);
    const last = JSON.parse(lines.at(-1) as string);
    expect(last).toMatchObject({ action: 'secret.read', keyName: 'live', seq: COUNT + 2 });
    expect(lines.join('\n')).not.toContain('live-value');

    const since = new Date(base.getTime() + 10 * 1000);
    const until = new Date(base.getTime() + 20 * 1000);
    const window: string[] = [];
    for await (const line of manager.exportAudit({ tenantId: TENANT, since, until, pageSize: 3 }))
      window.push(line);
    expect(window.map((l) => JSON.parse(l).seq)).toEqual([10, 11, 12, 13, 14, 15, 16, 17, 18, 19]);

    const everything: string[] = [];
    for await (const line of manager.exportAudit()) everything.push(line);
    expect(new Set(everything.map((l) => JSON.parse(l).chainId))).toEqual(new Set(['', TENANT]));
    const exported = (await manager.audit(null, { action: 'audit.exported', limit: 100 })).records;
    expect(exported.length).toBe(3);
  });

  it('prunes old records, moves the anchor, and the chain still verifies', async () => {
    const cutoff = new Date(base.getTime() + PRUNE_BEFORE * 1000);
    const result = await manager.pruneAudit({ olderThan: cutoff, tenantId: TENANT });
    expect(result).toEqual({
      chains: 1,
      records: PRUNE_BEFORE - 1,
      anchors: [{ chainId: TENANT, seq: PRUNE_BEFORE - 1 }],
    });
    const heads = await adminQuery(
      db.name,
      'SELECT anchor_seq FROM tenant_secret_audit_heads WHERE chain_id = $1',
      [TENANT],
    );
    expect(Number(heads[0]?.anchor_seq)).toBe(PRUNE_BEFORE - 1);
    const page = await manager.audit(TENANT, { limit: 1 });
    expect(page.records[0]?.seq).toBe(PRUNE_BEFORE);
    const after = await manager.verifyAudit();
    expect(after).toMatchObject({ ok: true });
    expect(after.records).toBeGreaterThanOrEqual(COUNT + 2 - (PRUNE_BEFORE - 1));
    const pruned = (await manager.audit(null, { action: 'audit.pruned' })).records;
    expect(pruned.at(-1)).toMatchObject({
      outcome: 'success',
      details: { chain_id: TENANT, chains: 1, records: PRUNE_BEFORE - 1 },
    });
    // A deleted record right after the new anchor is still caught.
    await adminQuery(
      db.name,
      `DELETE FROM tenant_secret_audit WHERE chain_id = '${TENANT}' AND seq = ${PRUNE_BEFORE}`,
    );
    expect((await manager.verifyAudit({ tenantId: TENANT, checkpoint: false })).firstBad).toMatchObject({
      seq: PRUNE_BEFORE + 1,
      reason: 'missing_records',
    });
    // ...and prune refuses to destroy evidence of tampering.
    await expect(manager.pruneAudit({ olderThan: new Date(), tenantId: TENANT })).rejects.toMatchObject({
      code: 'INTEGRITY',
    });
    expect((await manager.audit(TENANT, { limit: 1 })).records[0]?.seq).toBe(PRUNE_BEFORE + 1);
  });

  it('a prune of everything leaves an empty chain that verifies, and new records continue it', async () => {
    const { manager: m } = await setupManager();
    await m.set('t-all', 'k', 'value-a');
    await m.get('t-all', 'k');
    await new Promise((resolve) => setTimeout(resolve, 5));
    const result = await m.pruneAudit({ olderThan: new Date() });
    expect(result.records).toBeGreaterThanOrEqual(2);
    expect((await m.audit('t-all')).records).toEqual([]);
    expect(await m.verifyAudit()).toMatchObject({ ok: true });
    await m.get('t-all', 'k');
    expect((await m.audit('t-all')).records.map((r) => r.seq)).toEqual([3]);
    expect(await m.verifyAudit()).toMatchObject({ ok: true });
    await expect(m.pruneAudit({ olderThan: new Date(Date.now() + 60_000) })).rejects.toMatchObject({
      code: 'INVALID_INPUT',
    });
  });
});
