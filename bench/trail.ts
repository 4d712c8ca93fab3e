/**
 * Audit trails generated in set-based SQL and sealed with explicit times across DAYS days, and the
 * storage they take.
 */
import type pg from 'pg';
import { log } from './figures.js';

export const DAYS = 30;
export const DAY_MS = 86_400_000;
export function utcMidnight(daysAgo: number): Date {
  const now = new Date();
  return new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), now.getUTCDate()) - daysAgo * DAY_MS);
}

/**
 * Appends `perDay` records per day for DAYS days as operations append them (pending, with the
 * content digest), and seals each day's records at 23:00 that day through the owner's internal
 * _ts_audit_seal_batch(limit, now) under the sealer's lock (its row lock, as the library's sealer takes it). `chainOf` is an SQL expression of i.
 */
export async function generateTrail(
  pool: pg.Pool,
  schema: string,
  perDay: number,
  chainOf: string,
): Promise<{ seconds: number; sealSeconds: number; firstDay: Date }> {
  const q = `"${schema}"`;
  const started = performance.now();
  const firstDay = utcMidnight(DAYS);
  let sealSeconds = 0;
  for (let d = DAYS; d >= 1; d--) {
    // Days counted from the first one (a run may cross midnight UTC).
    const day = new Date(firstDay.getTime() + (DAYS - d) * DAY_MS);
    await pool.query(
      `INSERT INTO ${q}.tenant_secret_audit_pending (chain_id, occurred_at, tenant_id, db_role, actor, action, key_name,
         version, outcome, error_code, request_id, context, details, digest, sealed_at)
       SELECT g.chain, g.at, g.chain, 'app', g.actor, g.action, g.key, g.version, g.outcome, g.err, g.req, g.ctx, NULL,
              ${q}._ts_audit_digest(g.chain, g.at, g.chain, 'app', g.actor, g.action, g.key, g.version, g.outcome, g.err,
                                    g.req, g.ctx, NULL),
              'infinity'
         FROM (SELECT ${chainOf} AS chain,
                      $1::timestamptz + make_interval(secs => i * (79200.0 / $2)) AS at,
                      'svc-' || (i % 7) AS actor,
                      CASE WHEN i % 10 = 0 THEN 'secret.updated' ELSE 'secret.read' END AS action,
                      'db/password-' || (i % 20) AS key, (i % 5) + 1 AS version,
                      CASE WHEN i % 50 = 0 THEN 'failure' ELSE 'success' END AS outcome,
                      CASE WHEN i % 50 = 0 THEN 'NOT_FOUND' END AS err,
                      'req-' || $3::int || '-' || i AS req,
                      jsonb_build_object('ip', '10.0.' || (i % 250) || '.' || (i % 200)) AS ctx
                 FROM generate_series(1, $2::int) i) g
        ORDER BY g.at`,
      [day, perDay, d],
    );
    const client = await pool.connect();
    const t = performance.now();
    try {
      await client.query('BEGIN');
      await client.query(`SELECT ${q}._ts_sealer_lock(true)`);
      for (;;) {
        const n = Number(
          (
            await client.query(`SELECT ${q}._ts_audit_seal_batch(100000, $1) AS n`, [
              new Date(day.getTime() + 23 * 3_600_000),
            ])
          ).rows[0]?.n,
        );
        if (n < 100_000) break;
      }
      await client.query('COMMIT');
    } catch (error) {
      await client.query('ROLLBACK').catch(() => undefined);
      throw error;
    } finally {
      client.release();
    }
    sealSeconds += (performance.now() - t) / 1000;
    if (d % 5 === 0) log(`    day -${d} generated and sealed`);
  }
  return { seconds: (performance.now() - started) / 1000, sealSeconds, firstDay };
}

export async function relationBytes(
  pool: pg.Pool,
  schema: string,
  pattern: string,
): Promise<{ bytes: number; heap: number; index: number; records: number }> {
  const rows = await pool.query(
    `SELECT COALESCE(sum(pg_total_relation_size(c.oid)), 0)::bigint AS bytes,
            COALESCE(sum(pg_relation_size(c.oid)), 0)::bigint AS heap,
            COALESCE(sum(pg_indexes_size(c.oid)), 0)::bigint AS index
       FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
      WHERE i.inhparent = ('"${schema}".tenant_secret_audit')::regclass AND c.relname ~ $1`,
    [pattern],
  );
  const count = await pool.query(
    `SELECT count(*)::bigint AS n FROM "${schema}".tenant_secret_audit WHERE sealed_at >= '1970-01-01' AND sealed_at < 'infinity'`,
  );
  const r = rows.rows[0];
  return {
    bytes: Number(r.bytes),
    heap: Number(r.heap),
    index: Number(r.index),
    records: Number(count.rows[0]?.n),
  };
}
