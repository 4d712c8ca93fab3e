import pg from 'pg';
import { beforeAll, describe, expect, it } from 'vitest';
import { createSecretsManager, type SecretsManager } from '../../src/index.js';
import { adminQuery, directUrlFor, setupManager, TEST_KEY, urlFor } from '../support/db.js';

/**
 * Operations append their audit record without a lock shared with any other operation, and the
 * sealer chains what committed afterwards: no operation waits on another of the same tenant, and
 * every record still ends up in one valid chain per tenant, whoever seals (in the background, on
 * demand, or several sealers at once).
 */
let manager: SecretsManager;
let db: { name: string; url: string };

beforeAll(async () => {
  ({ manager, db } = await setupManager({ auditSealIntervalMs: 0 }));
});

/** Per chain: records sealed, distinct seqs, the largest seq, and the head's seq. */
async function chainShapes(): Promise<
  { chain_id: string; n: number; distinct_seqs: number; max_seq: number; head: number }[]
> {
  return adminQuery(
    db.name,
    `SELECT a.chain_id, count(*)::int AS n, count(DISTINCT a.seq)::int AS distinct_seqs, max(a.seq)::int AS max_seq,
            max(h.seq)::int AS head
       FROM tenant_secret_audit a JOIN tenant_secret_audit_heads h ON h.chain_id = a.chain_id
      WHERE a.seq IS NOT NULL GROUP BY a.chain_id ORDER BY a.chain_id`,
  );
}

describe('no operation waits on another of the same tenant', () => {
  it('reads, writes of other secrets, bulk reads, lists, sealing and verification complete while another transaction holds an uncommitted write of that tenant', async () => {
    await manager.set('t-open', 'b', 'b-value');
    await manager.set('t-open', 'c', 'c-value');
    const holder = new pg.Client({ connectionString: urlFor(db.name) });
    await holder.connect();
    try {
      await holder.query('BEGIN');
      const pid = (await holder.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]?.pid;
      await manager.inTransaction(holder).set('t-open', 'a', 'uncommitted-value');

      // Each call below returns while that transaction is open (a call that waited on it would never
      // return, since the transaction is only committed at the end).
      expect(await manager.get('t-open', 'b')).toBe('b-value');
      expect(await manager.get('t-open', 'a')).toBeNull();
      expect(await manager.set('t-open', 'c', 'c-value-2')).toEqual({ version: 2 });
      expect(await manager.getMany('t-open', ['b', 'c'])).toEqual({ b: 'b-value', c: 'c-value-2' });
      expect((await manager.list('t-open')).map((s) => s.keyName)).toEqual(['b', 'c']);
      const sealed = await manager.sealAudit();
      expect(sealed.pending).toBe(0); // the open transaction's record is not committed, so not visible
      expect(await manager.verifyAudit({ tenantId: 't-open' })).toMatchObject({ ok: true });
      expect((await manager.audit('t-open')).records.length).toBeGreaterThanOrEqual(6);

      // The other transaction was open the whole time.
      const state = await adminQuery(db.name, 'SELECT state FROM pg_stat_activity WHERE pid = $1', [pid]);
      if (!process.env.TEST_VIA_PGBOUNCER) expect(state).toEqual([{ state: 'idle in transaction' }]);
      await holder.query('COMMIT');
    } finally {
      await holder.end();
    }
    await manager.sealAudit();
    const records = (await manager.audit('t-open', { limit: 1000 })).records;
    // The read of 'a' that found nothing was sealed before the write that committed after it: a
    // chain's order is the order in which records were sealed, not the order operations started.
    expect(records.filter((r) => r.keyName === 'a').map((r) => [r.action, r.outcome])).toEqual([
      ['secret.read', 'failure'],
      ['secret.created', 'success'],
    ]);
    expect(records.map((r) => r.seq)).toEqual(records.map((_, i) => i + 1));
    expect(await manager.verifyAudit({ tenantId: 't-open' })).toMatchObject({ ok: true });
  });
});

describe('records of concurrent operations', () => {
  it('on one tenant are all sealed into one valid chain: one record per operation, seq without gap or repeat', async () => {
    const workers = 8;
    const perWorker = 30;
    await manager.set('t-hot', 'shared', 'shared-value');
    await manager.sealAudit();
    const before = (await chainShapes()).find((c) => c.chain_id === 't-hot')?.n ?? 0;
    await Promise.all(
      Array.from({ length: workers }, async (_, w) => {
        for (let i = 0; i < perWorker; i++) {
          if (i % 3 === 0) await manager.set('t-hot', `w${w}`, `value-${i}`);
          else await manager.get('t-hot', i % 2 === 0 ? 'shared' : `w${w}`);
          // Seal now and then, while the others keep appending.
          if (w === 0 && i % 10 === 5) await manager.sealAudit({ wait: false });
        }
      }),
    );
    await manager.sealAudit();
    const hot = (await chainShapes()).find((c) => c.chain_id === 't-hot');
    expect(hot).toEqual({
      chain_id: 't-hot',
      n: before + workers * perWorker,
      distinct_seqs: before + workers * perWorker,
      max_seq: before + workers * perWorker,
      head: before + workers * perWorker,
    });
    expect(await manager.verifyAudit({ tenantId: 't-hot' })).toMatchObject({
      ok: true,
      records: before + workers * perWorker,
    });
  });
});

describe('the sealer', () => {
  it('is safe to run concurrently: background sealers of several processes, explicit calls, and SQL callers', async () => {
    const background = Array.from({ length: 3 }, () =>
      createSecretsManager({
        connectionString: db.url,
        masterKey: TEST_KEY,
        actor: 'bg',
        auditSealIntervalMs: 100,
      }),
    );
    const sqlSealer = new pg.Pool({ connectionString: directUrlFor(db.name), max: 3 });
    let stop = false;
    const explicit: Promise<unknown>[] = [];
    try {
      const writers = background.flatMap((m, p) =>
        Array.from({ length: 3 }, async (_, w) => {
          for (let i = 0; i < 40; i++) {
            const tenant = `t-seal-${(p * 3 + w + i) % 10}`;
            if (i % 4 === 0) await m.set(tenant, `k${w}`, `v${i}`);
            else await m.get(tenant, `k${w}`);
          }
        }),
      );
      explicit.push(
        (async () => {
          while (!stop) await manager.sealAudit({ wait: false, limit: 7 });
        })(),
        (async () => {
          while (!stop) await manager.sealAudit({ limit: 13 });
        })(),
        ...Array.from({ length: 3 }, async () => {
          while (!stop) await sqlSealer.query('SELECT * FROM tenant_secret_audit_seal(5, true)');
        }),
      );
      await Promise.all(writers);
    } finally {
      stop = true;
      await Promise.all(explicit);
      await sqlSealer.end();
      await Promise.all(background.map((m) => m.close()));
    }
    expect(await manager.sealAudit()).toMatchObject({ pending: 0 });
    const shapes = (await chainShapes()).filter((c) => c.chain_id.startsWith('t-seal-'));
    expect(shapes).toHaveLength(10);
    for (const c of shapes) expect(c).toEqual({ ...c, distinct_seqs: c.n, max_seq: c.n, head: c.n });
    // Each operation appended exactly one record (3 processes x 3 writers x 40), each sealed once.
    const ops = shapes.reduce((sum, c) => sum + c.n, 0);
    expect(ops).toBe(360);
    const counted = await adminQuery<{ sealed: number; total: number }>(
      db.name,
      `SELECT (SELECT count(*)::int FROM tenant_secret_audit WHERE seq IS NOT NULL) AS sealed,
              (SELECT sealed_total::int FROM tenant_secret_audit_sealer) AS total`,
    );
    expect(counted[0]?.total).toBe(counted[0]?.sealed);
    expect(await manager.verifyAudit()).toMatchObject({ ok: true });
  });
});

describe('checkpoints and anchors written at once', () => {
  it('concurrent verifications, re-signings and prunes all succeed: they queue instead of deadlocking', async () => {
    for (let t = 0; t < 6; t++) await manager.set(`t-anchor-${t}`, 'k', 'v');
    await manager.auditTrail.seal();
    const before = (await manager.auditTrail.verify()).anchor?.counter ?? 0;
    const runs = await Promise.allSettled([
      ...Array.from({ length: 4 }, () => manager.auditTrail.verify()),
      ...Array.from({ length: 2 }, () => manager.auditTrail.resignCheckpoints()),
      manager.auditTrail.prune({ olderThan: new Date(Date.now() - 365 * 86_400_000) }),
      ...Array.from({ length: 6 }, (_, t) => manager.set(`t-anchor-${t}`, 'k', 'w')),
    ]);
    const failed = runs
      .filter((r) => r.status === 'rejected')
      .map((r) => (r as PromiseRejectedResult).reason);
    expect(failed).toEqual([]);
    const after = await manager.auditTrail.verify();
    expect(after.ok).toBe(true);
    // Each verification appended one anchor, in one chain (counter strictly increasing, no fork).
    expect(after.anchor?.counter ?? 0).toBeGreaterThanOrEqual(before + 5);
  });
});
