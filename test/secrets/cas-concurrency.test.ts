import pg from 'pg';
import { describe, expect, it } from 'vitest';
import { ConflictError } from '../../src/index.js';
import { adminQuery, setupManager } from '../support/db.js';

const WORKERS = 20;
const INCREMENTS = 10;

describe('check-and-set under concurrency', () => {
  it(`${WORKERS} writers x ${INCREMENTS} read-modify-write increments: no lost update, sequential versions, exact audit`, async () => {
    const { manager, db } = await setupManager({ maxConnections: 10 });
    const tenant = 'cas-tenant';
    const key = 'counter';
    expect(await manager.set(tenant, key, '0', { ifVersion: 0 })).toEqual({ version: 1 });

    let conflicts = 0;
    let attempts = 0;
    const worker = async (id: number) => {
      const writer = manager.withContext({ actor: `worker-${id}` });
      for (let i = 0; i < INCREMENTS; i++) {
        for (;;) {
          const current = await writer.getWithVersion(tenant, key);
          if (current === null) throw new Error('counter vanished');
          attempts++;
          try {
            await writer.set(tenant, key, String(Number(current.value) + 1), { ifVersion: current.version });
            break;
          } catch (error) {
            if (!(error instanceof ConflictError)) throw error;
            conflicts++;
          }
        }
      }
    };
    await Promise.all(Array.from({ length: WORKERS }, (_, id) => worker(id)));

    const total = WORKERS * INCREMENTS;
    // No lost update: the counter saw every increment.
    expect(await manager.getWithVersion(tenant, key)).toEqual({
      value: String(total),
      version: total + 1,
      expiresAt: null,
    });
    expect(attempts).toBe(total + conflicts);
    // The test is only meaningful if writers actually collided.
    expect(conflicts).toBeGreaterThan(0);

    // Versions strictly sequential 1..N without gaps (older ones destroyed by retention, rows kept).
    const versions = await adminQuery<{ version: number }>(
      db.name,
      'SELECT version FROM tenant_secret_versions WHERE tenant_id = $1 AND key_name = $2 ORDER BY version',
      [tenant, key],
    );
    expect(versions.map((v) => v.version)).toEqual(Array.from({ length: total + 1 }, (_, i) => i + 1));
    const listed = await manager.versions(tenant, key);
    expect(listed.map((v) => v.version)).toEqual(Array.from({ length: total + 1 }, (_, i) => total + 1 - i));
    expect(listed.filter((v) => v.state === 'enabled')).toHaveLength(10);

    // Audit: exactly one success per increment, one failure per conflict, nothing else.
    const counts = await adminQuery<{
      action: string;
      outcome: string;
      error_code: string | null;
      n: number;
    }>(
      db.name,
      `SELECT action, outcome, error_code, count(*)::int AS n FROM tenant_secret_audit
        WHERE chain_id = $1 AND action IN ('secret.created', 'secret.updated')
        GROUP BY 1, 2, 3 ORDER BY 1, 2`,
      [tenant],
    );
    expect(counts).toEqual([
      { action: 'secret.created', outcome: 'success', error_code: null, n: 1 },
      { action: 'secret.updated', outcome: 'failure', error_code: 'CONFLICT', n: conflicts },
      { action: 'secret.updated', outcome: 'success', error_code: null, n: total },
    ]);
    // Each successful write recorded the version it created, each exactly once.
    const written = await adminQuery<{ version: number }>(
      db.name,
      `SELECT version FROM tenant_secret_audit WHERE chain_id = $1 AND outcome = 'success'
          AND action IN ('secret.created', 'secret.updated') ORDER BY version`,
      [tenant],
    );
    expect(written.map((w) => w.version)).toEqual(Array.from({ length: total + 1 }, (_, i) => i + 1));
    // The chain itself has no gap either (once every pending record is sealed into it).
    await manager.sealAudit();
    const [chain] = await adminQuery<{ n: number; max: number }>(
      db.name,
      'SELECT count(*)::int AS n, max(seq)::int AS max FROM tenant_secret_audit WHERE chain_id = $1',
      [tenant],
    );
    expect(chain?.n).toBe(chain?.max);
    console.info(`cas-concurrency: ${total} increments, ${conflicts} conflicts, ${attempts} attempts`);
  });

  it('concurrent rollbacks with the same ifVersion: exactly one wins', async () => {
    const { manager, db } = await setupManager({ maxConnections: 8, lockTimeoutMs: 300_000 });
    const tenant = 'cas-rollback';
    for (const v of ['a', 'b', 'c']) await manager.set(tenant, 'k', v);
    // Hold the secret's row lock so that all rollbacks are in flight at once, then release it.
    const holder = new pg.Client({ connectionString: db.url });
    await holder.connect();
    let results: PromiseSettledResult<unknown>[];
    try {
      await holder.query('BEGIN');
      await holder.query(`SELECT 1 FROM tenant_secrets WHERE tenant_id = $1 AND key_name = 'k' FOR UPDATE`, [
        tenant,
      ]);
      let settled = 0;
      const calls = Array.from({ length: 8 }, () =>
        manager.rollback(tenant, 'k', 1, { ifVersion: 3 }).finally(() => settled++),
      );
      // Wait (a synchronisation, not a timing assertion) until all 8 block on the lock, or finish.
      for (let i = 0; i < 1000 && settled < 8; i++) {
        const [row] = (
          await holder.query<{ n: number }>(
            `SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'`,
          )
        ).rows;
        if ((row?.n ?? 0) >= 8) break;
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
      await holder.query('COMMIT');
      results = await Promise.allSettled(calls);
    } finally {
      await holder.end();
    }
    const won = results.filter((r) => r.status === 'fulfilled');
    const lost = results.filter((r) => r.status === 'rejected');
    expect(won).toHaveLength(1);
    expect(lost.map((r) => (r.status === 'rejected' ? r.reason : null))).toEqual(
      Array.from({ length: 7 }, () => expect.any(ConflictError)),
    );
    expect(await manager.getWithVersion(tenant, 'k')).toEqual({ value: 'a', version: 4, expiresAt: null });
    const audit = await adminQuery<{ outcome: string; error_code: string | null; n: number }>(
      db.name,
      `SELECT outcome, error_code, count(*)::int AS n FROM tenant_secret_audit
        WHERE chain_id = $1 AND action = 'secret.rolled_back' GROUP BY 1, 2 ORDER BY 1`,
      [tenant],
    );
    expect(audit).toEqual([
      { outcome: 'failure', error_code: 'CONFLICT', n: 7 },
      { outcome: 'success', error_code: null, n: 1 },
    ]);
  });

  it('set() without ifVersion racing destroy() never throws ConflictError: the last write wins or the secret is gone', async () => {
    const { manager } = await setupManager({ maxConnections: 12, auditSealIntervalMs: 0 });
    const tenant = 'cas-destroy';
    const ROUNDS = 40;
    const failures: unknown[] = [];
    let sets = 0;
    let destroys = 0;
    let notFound = 0;
    const setter = async (id: number) => {
      for (let i = 0; i < ROUNDS; i++) {
        try {
          await manager.set(tenant, 'contested', `w${id}-${i}`);
          sets++;
        } catch (error) {
          failures.push(error);
        }
      }
    };
    const destroyer = async () => {
      for (let i = 0; i < ROUNDS; i++) {
        try {
          await manager.destroy(tenant, 'contested');
          destroys++;
        } catch (error) {
          if ((error as { code?: string }).code === 'NOT_FOUND') notFound++;
          else failures.push(error);
        }
      }
    };
    await Promise.all([
      ...Array.from({ length: 6 }, (_, id) => setter(id)),
      ...Array.from({ length: 4 }, destroyer),
    ]);
    expect(failures).toEqual([]);
    expect(sets).toBe(6 * ROUNDS);
    expect(destroys + notFound).toBe(4 * ROUNDS);
    // Whatever the interleaving, what is left is consistent: nothing, or one current version that reads.
    const left = await manager.getWithVersion(tenant, 'contested');
    if (left !== null) {
      expect(left.value).toMatch(/^w\d-\d+$/);
      const versions = await manager.versions(tenant, 'contested');
      expect(versions.filter((v) => v.isCurrent)).toEqual([
        expect.objectContaining({ version: left.version }),
      ]);
    }
    console.info(`set/destroy race: ${sets} sets, ${destroys} destroys, ${notFound} destroys found nothing`);
  });
});
