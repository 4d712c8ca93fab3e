import pg from 'pg';
import { describe, expect, it } from 'vitest';
import { createSecretsManager, type SecretsManager } from '../../src/index.js';
import { MIGRATIONS } from '../../src/schema/sql.generated.js';
import { appendPending, dayPartitions, sealAt } from '../support/audit.js';
import { adminQuery, directUrlFor, freshDatabase, setupManager, TEST_KEY } from '../support/db.js';

/**
 * The trail is partitioned by sealing day: pruning every chain drops whole days (anchors move in the
 * same transaction, checkpoints below them go); verification of many short chains is set-based (a
 * few round trips per page, never one per chain); records of release 0.1 (partition
 * tenant_secret_audit_v1, chained with the 0.1 formula) verify together with the new ones.
 */
const DAY = 86_400_000;
const utcMidnight = (daysAgo: number) => {
  const now = new Date();
  return new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), now.getUTCDate()) - daysAgo * DAY);
};

describe('pruning every chain drops whole sealing days', () => {
  it('drops the days sealed before the cutoff, moves each chain anchor to its last dropped record, removes checkpoints below it, and the trail still verifies', async () => {
    const { manager, db } = await setupManager({ auditSealIntervalMs: 0 });
    const chains = ['c1', 'c2', 'c3'];
    // Three records per chain on each of four days (5, 4, 3 and 2 days ago), sealed that day.
    for (const daysAgo of [5, 4, 3, 2]) {
      await appendPending(db.name, chains, 3, new Date(utcMidnight(daysAgo).getTime() + 3_600_000));
      await sealAt(db.name, new Date(utcMidnight(daysAgo).getTime() + 12 * 3_600_000));
      // Checkpoints at seq 3 (end of the first day): below the anchors the prune will set.
      if (daysAgo === 5) expect(await manager.verifyAudit()).toMatchObject({ ok: true });
    }
    // The four days, and today's (created by the verification's own sealing pass).
    const before = await dayPartitions((sql) => adminQuery(db.name, sql));
    expect(before).toHaveLength(5);
    const checkpointsBefore = await adminQuery(
      db.name,
      `SELECT chain_id, seq::int FROM tenant_secret_audit_checkpoints WHERE chain_id LIKE 'c%' ORDER BY 1`,
    );
    expect(checkpointsBefore).toEqual(chains.map((chain_id) => ({ chain_id, seq: 3 })));

    const result = await manager.pruneAudit({ olderThan: utcMidnight(3), verifyFirst: false });
    // Two days dropped: six records per chain, and the system chain's records of those days.
    const tenantAnchors = result.anchors
      .filter((a) => a.chainId !== '')
      .sort((a, b) => (a.chainId < b.chainId ? -1 : 1));
    expect(tenantAnchors).toEqual(chains.map((chainId) => ({ chainId, seq: 6 })));
    expect(result.records).toBeGreaterThanOrEqual(18);
    const after = await dayPartitions((sql) => adminQuery(db.name, sql));
    expect(after).toEqual(before.slice(2));
    const heads = await adminQuery(
      db.name,
      `SELECT chain_id, anchor_seq::int, seq::int FROM tenant_secret_audit_heads WHERE chain_id LIKE 'c%' ORDER BY 1`,
    );
    expect(heads).toEqual(chains.map((chain_id) => ({ chain_id, anchor_seq: 6, seq: 12 })));
    // The checkpoints at 3 went with the days; the library signed one at each new anchor.
    expect(
      await adminQuery(
        db.name,
        `SELECT chain_id, seq::int FROM tenant_secret_audit_checkpoints WHERE chain_id LIKE 'c%' ORDER BY 1, 2`,
      ),
    ).toEqual(chains.map((chain_id) => ({ chain_id, seq: 6 })));
    expect((await manager.audit('c1')).records.map((r) => r.seq)).toEqual([7, 8, 9, 10, 11, 12]);
    const pruned = (await manager.audit(null, { action: 'audit.pruned' })).records.at(-1);
    expect(pruned?.details).toMatchObject({ partitions: 2, records: result.records });

    // A prune that really pruned is not tampering, and the next records continue the chains.
    expect(await manager.verifyAudit()).toMatchObject({ ok: true, problems: [] });
    await manager.set('c1', 'k', 'value-after-prune');
    expect(await manager.verifyAudit()).toMatchObject({ ok: true });
    expect((await manager.audit('c1')).records.at(-1)?.seq).toBe(13);
    // A cutoff inside a day keeps that day: 2 days ago + 12 h drops the day before it only.
    const next = await manager.pruneAudit({ olderThan: new Date(utcMidnight(2).getTime() + 12 * 3_600_000) });
    expect(next).toMatchObject({ chains: 3, records: 9 });
    expect(next.anchors).toEqual(expect.arrayContaining(chains.map((chainId) => ({ chainId, seq: 9 }))));
    expect(await manager.verifyAudit()).toMatchObject({ ok: true });
  });
});

describe('pruning while the trail is in use', () => {
  it('gives up (TIMEOUT, 55P03) when a reader holds the trail, changes nothing, and lets operations through while it waits', async () => {
    const { manager, db } = await setupManager({ auditSealIntervalMs: 0 });
    await appendPending(db.name, ['r1', 'r2'], 3, new Date(utcMidnight(3).getTime() + 3_600_000));
    await sealAt(db.name, new Date(utcMidnight(3).getTime() + 12 * 3_600_000));
    await manager.set('r1', 'k', 'value-r1');
    await manager.sealAudit();
    const heads = () =>
      adminQuery(db.name, 'SELECT chain_id, anchor_seq::int FROM tenant_secret_audit_heads ORDER BY 1');
    const headsBefore = await heads();
    const days = await dayPartitions((sql) => adminQuery(db.name, sql));

    const reader = new pg.Client({ connectionString: directUrlFor(db.name) });
    await reader.connect();
    try {
      await reader.query('BEGIN');
      await reader.query('SELECT count(*) FROM tenant_secret_audit');
      const prune = manager.pruneAudit({
        olderThan: utcMidnight(2),
        verifyFirst: false,
        lockTimeoutMs: 1500,
      });
      // Operations keep going while the prune tries to lock the trail.
      for (let i = 0; i < 5; i++) expect(await manager.get('r1', 'k')).toBe('value-r1');
      await expect(prune).rejects.toMatchObject({ code: 'TIMEOUT', sqlState: '55P03' });
    } finally {
      await reader.query('COMMIT');
      await reader.end();
    }
    expect(await heads()).toEqual(headsBefore);
    expect(await dayPartitions((sql) => adminQuery(db.name, sql))).toEqual(days);
    const failed = (await manager.audit(null, { action: 'audit.pruned' })).records.at(-1);
    expect(failed).toMatchObject({ outcome: 'failure', errorCode: 'BUSY' });
    // Once the reader is gone, the same prune goes through, even while (auto)vacuum works on a day
    // that stays (SHARE UPDATE EXCLUSIVE, as VACUUM takes).
    const vacuum = new pg.Client({ connectionString: directUrlFor(db.name) });
    await vacuum.connect();
    let done: Awaited<ReturnType<SecretsManager['pruneAudit']>>;
    try {
      await vacuum.query('BEGIN');
      await vacuum.query(`LOCK TABLE ${days.at(-1)} IN SHARE UPDATE EXCLUSIVE MODE`);
      done = await manager.pruneAudit({ olderThan: utcMidnight(2), verifyFirst: false, lockTimeoutMs: 1500 });
    } finally {
      await vacuum.query('COMMIT');
      await vacuum.end();
    }
    expect(done.anchors).toEqual(
      expect.arrayContaining([
        { chainId: 'r1', seq: 3 },
        { chainId: 'r2', seq: 3 },
      ]),
    );
    expect(await manager.verifyAudit()).toMatchObject({ ok: true });
  });
});

describe('verification at scale', () => {
  it('verifies 8,000 chains of 5 records with a few calls per page, never one per chain', async () => {
    const db = await freshDatabase();
    const pool = new pg.Pool({ connectionString: db.url, max: 4 });
    let calls = 0;
    pool.on('acquire', () => {
      calls += 1;
    });
    const manager = createSecretsManager({
      pool,
      masterKey: TEST_KEY,
      actor: 'test',
      auditSealIntervalMs: 0,
    });
    try {
      await manager.migrate();
      const chains = Array.from({ length: 8_000 }, (_, i) => `short-${String(i).padStart(5, '0')}`);
      await appendPending(db.name, chains, 5, new Date(Date.now() - 3_600_000));
      expect((await manager.sealAudit({ limit: 100_000 })).pending).toBe(0);
      calls = 0;
      const result = await manager.verifyAudit({ heads: false });
      expect(result).toMatchObject({ ok: true, problems: [], heads: [] });
      expect(result.chains).toBe(8_001); // and the system chain
      // 40,000 records, 8,000 registrations and migrate()'s record on the system chain. (8,000 chains:
      // enough for several pages; 20,000 took 70 s on a loaded 2-core machine for the same property.)
      expect(result.records).toBe(48_001);
      // Pages of 10,000 records (5), one checkpoint batch per page, the registry, sealing, the record.
      expect(calls).toBeLessThan(25);
      // Every chain got a checkpoint; a second verification checks them all.
      const again = await manager.verifyAudit({ heads: false, checkpoint: false });
      expect(again).toMatchObject({ ok: true, checkpoints: 8_001 });
      // One record edited among them is found.
      await adminQuery(
        db.name,
        `UPDATE tenant_secret_audit SET key_name = 'x' WHERE chain_id = 'short-05432' AND seq = 4`,
      );
      expect((await manager.verifyAudit({ heads: false, checkpoint: false })).problems).toEqual([
        expect.objectContaining({ chainId: 'short-05432', seq: 4, reason: 'hash_mismatch' }),
      ]);
    } finally {
      await manager.close();
      await pool.end();
    }
  }, 240_000);
});

describe('verification pages', () => {
  it('give the same answer whatever the page size: every chain end checked, every problem found', async () => {
    const { manager, db } = await setupManager({ auditSealIntervalMs: 0 });
    const chains = ['pg-1', 'pg-2', 'pg-3', 'pg-4', 'pg-5'];
    await appendPending(db.name, chains, 1, new Date(Date.now() - 3_600_000));
    for (const [i, chain] of chains.entries())
      await appendPending(db.name, [chain], i, new Date(Date.now() - 1_800_000));
    expect((await manager.sealAudit()).pending).toBe(0);
    await manager.verifyAudit(); // checkpoints at every end
    const reference = await manager.verifyAudit({ checkpoint: false });
    expect(reference).toMatchObject({ ok: true, chains: 6 });
    for (let pageSize = 1; pageSize <= 17; pageSize++) {
      const result = await manager.verifyAudit({ checkpoint: false, pageSize });
      expect(
        { ok: result.ok, chains: result.chains, checkpoints: result.checkpoints },
        `pageSize ${pageSize}`,
      ).toEqual({
        ok: true,
        chains: 6,
        checkpoints: 6,
      });
      // The same heads, apart from the system chain (each verification appends to it).
      expect(
        result.heads.filter((h) => h.chainId !== ''),
        `pageSize ${pageSize}`,
      ).toEqual(reference.heads.filter((h) => h.chainId !== ''));
    }
    // Tampering with three chains: a middle record, a tail record, a checkpoint.
    await adminQuery(db.name, `DELETE FROM tenant_secret_audit WHERE chain_id = 'pg-3' AND seq = 2`);
    await adminQuery(db.name, `DELETE FROM tenant_secret_audit WHERE chain_id = 'pg-4' AND seq = 4`);
    await adminQuery(
      db.name,
      `UPDATE tenant_secret_audit_checkpoints SET mac = '\\x${'00'.repeat(32)}' WHERE chain_id = 'pg-5'`,
    );
    for (let pageSize = 1; pageSize <= 17; pageSize++) {
      const result = await manager.verifyAudit({ checkpoint: false, pageSize });
      expect(
        result.problems.map((p) => [p.chainId, p.seq, p.reason]),
        `pageSize ${pageSize}`,
      ).toEqual([
        ['pg-3', 3, 'missing_records'],
        ['pg-4', 4, 'tail_missing'],
        ['pg-4', 4, 'checkpoint_record_missing'],
        ['pg-5', 5, 'checkpoint_forged'],
      ]);
    }
  });
});

describe('records of release 0.1', () => {
  it('verify together with records sealed since, on the same chains', async () => {
    const db = await freshDatabase();
    // A 0.1.0 database: migrations 000001-000005 (which held the 0.1 functions), and records
    // appended by the 0.1 _ts_audit (chained at append time under the head lock, prev_hash stored).
    const client = new pg.Client({ connectionString: db.url });
    await client.connect();
    try {
      await client.query('CREATE EXTENSION IF NOT EXISTS pgcrypto');
      await client.query(
        'CREATE TABLE tenant_secret_migrations (id integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())',
      );
      for (const m of MIGRATIONS.filter((x) => x.id <= 5)) {
        await client.query(m.sql.replace(/:TS\b/g, '"public"').replaceAll(':PGC', '"public"'));
        await client.query('INSERT INTO tenant_secret_migrations (id, name) VALUES ($1, $2)', [m.id, m.name]);
      }
      for (let i = 0; i < 4; i++) {
        await client.query(
          `SELECT _ts_audit('legacy-t', 'secret.read', 'k', 1, 'success', NULL, '{"actor": "app-0.1", "ip": "192.0.2.1"}', NULL)`,
        );
      }
      await client.query(
        `SELECT _ts_audit(NULL, 'audit.verified', NULL, NULL, 'success', NULL, '{}', '{"records": 4}')`,
      );
    } finally {
      await client.end();
    }

    const manager = createSecretsManager({
      connectionString: db.url,
      masterKey: TEST_KEY,
      actor: 'test',
      auditSealIntervalMs: 0,
    });
    try {
      await manager.migrate();
      const v1 = await adminQuery(db.name, 'SELECT count(*)::int AS n FROM tenant_secret_audit_v1');
      expect(v1[0]?.n).toBe(5);
      await manager.set('legacy-t', 'k', 'value-0.2');
      await manager.get('legacy-t', 'k');
      const result = await manager.verifyAudit();
      expect(result).toMatchObject({ ok: true, problems: [] });
      const records = (await manager.audit('legacy-t')).records;
      expect(records.map((r) => [r.seq, r.prevHash !== null, r.digest !== null])).toEqual([
        [1, true, false],
        [2, true, false],
        [3, true, false],
        [4, true, false],
        [5, false, true],
        [6, false, true],
      ]);
      expect(records[0]?.actor).toBe('app-0.1');
      // A checkpoint covers both kinds; an edit of a 0.1 record is found with the 0.1 formula.
      await adminQuery(
        db.name,
        `UPDATE tenant_secret_audit_v1 SET actor = 'mallory' WHERE chain_id = 'legacy-t' AND seq = 2`,
      );
      expect((await manager.verifyAudit({ tenantId: 'legacy-t', checkpoint: false })).firstBad).toMatchObject(
        {
          chainId: 'legacy-t',
          seq: 2,
          reason: 'hash_mismatch',
        },
      );
      await adminQuery(
        db.name,
        `UPDATE tenant_secret_audit_v1 SET actor = 'app-0.1' WHERE chain_id = 'legacy-t' AND seq = 2`,
      );
      // Pruning every chain removes 0.1 records row by row (they precede every sealing day).
      const pruned = await manager.pruneAudit({ olderThan: new Date() });
      expect(pruned.anchors).toEqual(
        expect.arrayContaining([
          { chainId: 'legacy-t', seq: 4 },
          { chainId: '', seq: 1 },
        ]),
      );
      expect((await manager.audit('legacy-t')).records.map((r) => r.seq)).toEqual([5, 6]);
      expect(await manager.verifyAudit()).toMatchObject({ ok: true });
    } finally {
      await manager.close();
    }
  });
});

describe('pruning records of release 0.1 and whole days in one call', () => {
  it('gives one row per chain: the records of both removed, the anchor at the last of them', async () => {
    const db = await freshDatabase();
    // A 0.1.0 database with four 0.1 records on chain 'legacy-t', as in the test above.
    const client = new pg.Client({ connectionString: db.url });
    await client.connect();
    try {
      await client.query('CREATE EXTENSION IF NOT EXISTS pgcrypto');
      await client.query(
        'CREATE TABLE tenant_secret_migrations (id integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())',
      );
      for (const m of MIGRATIONS.filter((x) => x.id <= 5)) {
        await client.query(m.sql.replace(/:TS\b/g, '"public"').replaceAll(':PGC', '"public"'));
        await client.query('INSERT INTO tenant_secret_migrations (id, name) VALUES ($1, $2)', [m.id, m.name]);
      }
      for (let i = 0; i < 4; i++) {
        await client.query(
          `SELECT _ts_audit('legacy-t', 'secret.read', 'k', 1, 'success', NULL, '{"actor": "app-0.1"}', NULL)`,
        );
      }
    } finally {
      await client.end();
    }
    const manager = createSecretsManager({
      connectionString: db.url,
      masterKey: TEST_KEY,
      actor: 'test',
      auditSealIntervalMs: 0,
    });
    try {
      await manager.migrate();
      // Then three records on 'legacy-t' and on 'new-t' sealed 3 days ago, two more 1 day ago.
      await appendPending(db.name, ['legacy-t', 'new-t'], 3, new Date(utcMidnight(3).getTime() + 3_600_000));
      await sealAt(db.name, new Date(utcMidnight(3).getTime() + 12 * 3_600_000));
      await appendPending(db.name, ['legacy-t', 'new-t'], 2, new Date(utcMidnight(1).getTime() + 3_600_000));
      await sealAt(db.name, new Date(utcMidnight(1).getTime() + 12 * 3_600_000));
      // The 0.1 records occurred before the cutoff (moved back in time: this changes their content,
      // which only the pruning below, without verifying first, does not look at).
      await adminQuery(
        db.name,
        `UPDATE tenant_secret_audit_v1 SET occurred_at = occurred_at - interval '4 days' WHERE chain_id = 'legacy-t'`,
      );

      // The 0.1 records (seq 1-4) go row by row, the day 3 days ago (seq 5-7) with its partition.
      const result = await manager.pruneAudit({ olderThan: utcMidnight(1), verifyFirst: false });
      expect(result.anchors.filter((a) => a.chainId !== '')).toEqual([
        { chainId: 'legacy-t', seq: 7 },
        { chainId: 'new-t', seq: 3 },
      ]);
      const chains = new Set(result.anchors.map((a) => a.chainId));
      expect(result.chains).toBe(chains.size);
      expect((await manager.audit('legacy-t')).records.map((r) => r.seq)).toEqual([8, 9]);
      expect((await manager.audit('new-t')).records.map((r) => r.seq)).toEqual([4, 5]);
      expect(
        await adminQuery(
          db.name,
          `SELECT chain_id, anchor_seq::int FROM tenant_secret_audit_heads WHERE chain_id LIKE '%-t' ORDER BY 1`,
        ),
      ).toEqual([
        { chain_id: 'legacy-t', anchor_seq: 7 },
        { chain_id: 'new-t', anchor_seq: 3 },
      ]);
      const pruned = (await manager.audit(null, { action: 'audit.pruned' })).records.at(-1);
      expect(pruned?.details).toMatchObject({
        partitions: 1,
        chains: result.chains,
        records: result.records,
      });
      // 4 + 3 records of legacy-t, 3 of new-t, and the system chain's records of those days.
      expect(result.records).toBeGreaterThanOrEqual(10);
      expect(await manager.verifyAudit()).toMatchObject({ ok: true, problems: [] });
    } finally {
      await manager.close();
    }
  });
});

describe('paging through one chain across day partitions', () => {
  it('a page of a query or export reads about its own records, not the rest of the chain', async () => {
    const { manager, db } = await setupManager({ auditSealIntervalMs: 0 });
    try {
      // Ten chains of 12,000 records over six sealing days, the partitions sealed in bulk and not
      // analyzed (as after a backlog or an upgrade); pages of chain 'long' are read.
      const chains = ['long', ...Array.from({ length: 9 }, (_, i) => `other-${i}`)];
      for (const daysAgo of [7, 6, 5, 4, 3, 2]) {
        await appendPending(db.name, chains, 2000, new Date(utcMidnight(daysAgo).getTime() + 3_600_000));
        await sealAt(db.name, new Date(utcMidnight(daysAgo).getTime() + 12 * 3_600_000));
      }
      const client = new pg.Client({ connectionString: directUrlFor(db.name) });
      await client.connect();
      try {
        // Tuples the page's statement read from the trail's partitions, counted in its transaction.
        const tuplesRead = async (options: Record<string, unknown>) => {
          await client.query('BEGIN');
          try {
            const page = await client.query('SELECT seq FROM tenant_secret_audit_query($1, $2::jsonb)', [
              'long',
              JSON.stringify(options),
            ]);
            const [stats] = (
              await client.query<{ n: string }>(
                `SELECT COALESCE(sum(seq_tup_read + COALESCE(idx_tup_fetch, 0)), 0) AS n FROM pg_stat_xact_user_tables
                  WHERE relname ~ '^tenant_secret_audit_(p[0-9]{8}|v1)$'`,
              )
            ).rows;
            return { seqs: page.rows.map((r) => Number(r.seq)), read: Number(stats?.n) };
          } finally {
            await client.query('ROLLBACK');
          }
        };
        const early = await tuplesRead({ after: 1000, limit: 100 });
        expect(early.seqs).toEqual(Array.from({ length: 100 }, (_, i) => 1001 + i));
        // A plan that gathered the chain's remaining records and sorted them read about 11,000 here.
        expect(early.read).toBeLessThan(400);
        const late = await tuplesRead({ after: 11_000, limit: 100, purpose: 'export' });
        expect(late.seqs).toEqual(Array.from({ length: 100 }, (_, i) => 11_001 + i));
        expect(late.read).toBeLessThan(400);
      } finally {
        await client.end();
      }
      // And the library's export reads the whole chain in order.
      let expected = 1;
      for await (const line of manager.exportAudit({ tenantId: 'long', pageSize: 1000 })) {
        expect(JSON.parse(line).seq).toBe(expected++);
      }
      expect(expected - 1).toBe(12_000);
    } finally {
      await manager.close();
    }
  });
});
