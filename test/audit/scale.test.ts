import { createHash } from 'node:crypto';
import { beforeAll, describe, expect, it } from 'vitest';
import type { AuditRecord, SecretsManager } from '../../src/index.js';
import { adminQuery, setupManager } from '../support/db.js';

/**
 * A trail of 100,000 records (appended in SQL as the superuser, with the digest the library
 * computes, then sealed) verifies; prune then verify passes; export lines parse and match the
 * records, and their hashes can be re-checked outside the database.
 */
const TENANT = 'bulk-tenant';
const COUNT = 100_000;
const PRUNE_BEFORE = 40_000; // records 1..39,999 occurred before the cutoff

let manager: SecretsManager;
let db: { name: string; url: string };
let base: Date;

beforeAll(async () => {
  ({ manager, db } = await setupManager({ auditSealIntervalMs: 0 }));
  const rows = await adminQuery(db.name, `SELECT date_trunc('second', now() - interval '2 days') AS base`);
  base = rows[0]?.base as Date;
  // One record per second from `base`, appended as operations append them (pending, with the digest
  // _ts_audit computes), in one set-based statement; then sealed by the sealer.
  await adminQuery(
    db.name,
    `INSERT INTO tenant_secret_audit_pending (chain_id, occurred_at, tenant_id, db_role, actor, action, key_name, version,
                                              outcome, request_id, context, digest, sealed_at)
     SELECT '${TENANT}', at, '${TENANT}', 'postgres', 'loadgen', 'secret.read', 'key-' || (i % 50), 1, 'success',
            'req-' || i, '{"ip": "198.51.100.4"}'::jsonb,
            _ts_audit_digest('${TENANT}', at, '${TENANT}', 'postgres', 'loadgen', 'secret.read', 'key-' || (i % 50), 1,
                             'success', NULL, 'req-' || i, '{"ip": "198.51.100.4"}'::jsonb, NULL),
            'infinity'
       FROM generate_series(1, ${COUNT}) i, LATERAL (SELECT $1::timestamptz + make_interval(secs => i) AS at) t
      ORDER BY i`,
    [base],
  );
  const sealed = await manager.sealAudit({ limit: 100_000 });
  expect(sealed.sealed).toBeGreaterThanOrEqual(COUNT);
  // Real operations continue the generated chain.
  await manager.set(TENANT, 'live', 'live-value');
  await manager.get(TENANT, 'live');
}, 300_000);

/** What a log system receiving the export can recompute: the link of a record sealed since 0.2. */
function link(prev: Buffer, chain: string, seq: number, digest: Buffer): string {
  const label = Buffer.from('tenant-secrets:chain:v2');
  const chainBytes = Buffer.from(chain, 'utf8');
  const u32 = (n: number) => {
    const b = Buffer.alloc(4);
    b.writeUInt32BE(n);
    return b;
  };
  const i64 = Buffer.alloc(8);
  i64.writeBigInt64BE(BigInt(seq));
  return createHash('sha256')
    .update(Buffer.concat([u32(label.length), label, prev, u32(chainBytes.length), chainBytes, i64, digest]))
    .digest('hex');
}

describe('audit trail at scale', () => {
  it('verifies an untouched trail of 100,000 records', async () => {
    const progress: number[] = [];
    const started = performance.now();
    const result = await manager.verifyAudit({ onProgress: (p) => progress.push(p.records) });
    const seconds = (performance.now() - started) / 1000;
    console.log(`verifyAudit: ${result.records} records in ${seconds.toFixed(2)} s`);
    expect(result).toMatchObject({ ok: true, problems: [] });
    expect(result.records).toBeGreaterThanOrEqual(COUNT + 2);
    expect(progress.length).toBeGreaterThan(COUNT / 10_000); // one call per page of 10,000 (the default)
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
      'digest',
    ]);
    const page = await manager.audit(TENANT, { limit: 3 });
    const asJson = (r: AuditRecord) =>
      JSON.parse(JSON.stringify({ ...r, occurredAt: r.occurredAt.toISOString() }));
    expect(lines.slice(0, 3).map((l) => JSON.parse(l))).toEqual(page.records.map(asJson));
    expect(first).toMatchObject({ seq: 1, requestId: 'req-1', context: { ip: '198.51.100.4' } });
    expect(first.prevHash).toBeNull();
    // The exported lines carry the chain: each hash links the previous line's hash (32 zero bytes
    // before the first record) to the record's seq and digest.
    let prev = Buffer.alloc(32);
    let broken = 0;
    for (const line of lines) {
      const record = JSON.parse(line);
      if (link(prev, record.chainId, record.seq, Buffer.from(record.digest, 'hex')) !== record.hash)
        broken += 1;
      prev = Buffer.from(record.hash, 'hex');
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
    expect(everything.filter((l) => JSON.parse(l).chainId === TENANT)).toHaveLength(COUNT + 2);
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
    // Every chain at once: whole sealing days only, and today's is not over, so nothing goes yet.
    expect(await m.pruneAudit({ olderThan: new Date() })).toEqual({ chains: 0, records: 0, anchors: [] });
    // One chain: its records up to the cutoff, row by row.
    const result = await m.pruneAudit({ olderThan: new Date(), tenantId: 't-all' });
    expect(result).toEqual({ chains: 1, records: 2, anchors: [{ chainId: 't-all', seq: 2 }] });
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
