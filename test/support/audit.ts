import pg from 'pg';
import { directUrlFor } from './db.js';

/**
 * Seals every committed pending record as if the sealer ran at `when`, through the owner's internal
 * entry point `_ts_audit_seal_batch(limit, now)` under the sealer's lock. Sealing days never move
 * back: a `when` before the last sealing is taken as the last sealing time.
 */
export async function sealAt(database: string, when: Date, schema = 'public'): Promise<number> {
  const client = new pg.Client({ connectionString: directUrlFor(database) });
  await client.connect();
  try {
    await client.query('BEGIN');
    await client.query(`SELECT "${schema}"._ts_sealer_lock(true)`);
    let total = 0;
    for (;;) {
      const n = Number(
        (await client.query('SELECT _ts_audit_seal_batch(100000, $1) AS n', [when])).rows[0]?.n,
      );
      total += n;
      if (n < 100_000) break;
    }
    await client.query('COMMIT');
    return total;
  } finally {
    await client.end();
  }
}

/**
 * Appends `perChain` pending `secret.read` records to each chain, as operations append them (with
 * the content digest _ts_audit computes), occurring from `from` on, one second apart, in one
 * set-based statement.
 */
export async function appendPending(
  database: string,
  chains: string[],
  perChain: number,
  from: Date,
): Promise<void> {
  const client = new pg.Client({ connectionString: directUrlFor(database) });
  await client.connect();
  try {
    await client.query(
      `INSERT INTO tenant_secret_audit_pending (chain_id, occurred_at, tenant_id, db_role, actor, action, key_name, version,
                                                outcome, request_id, digest, sealed_at)
       SELECT c.id, t.at, c.id, 'postgres', 'loadgen', 'secret.read', 'k', 1, 'success', 'req-' || i,
              _ts_audit_digest(c.id, t.at, c.id, 'postgres', 'loadgen', 'secret.read', 'k', 1, 'success', NULL, 'req-' || i, NULL, NULL),
              'infinity'
         FROM generate_series(1, $2::int) i
        CROSS JOIN unnest($1::text[]) WITH ORDINALITY AS c(id, ord)
        CROSS JOIN LATERAL (SELECT $3::timestamptz + make_interval(secs => i) AS at) t
        ORDER BY i, c.ord`,
      [chains, perChain, from],
    );
  } finally {
    await client.end();
  }
}

/** Names of the day partitions of the trail, oldest first. */
export async function dayPartitions(query: (sql: string) => Promise<{ name: string }[]>): Promise<string[]> {
  const rows = await query(
    `SELECT c.relname AS name FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
      WHERE i.inhparent = 'tenant_secret_audit'::regclass AND c.relname ~ '^tenant_secret_audit_p[0-9]{8}$' ORDER BY 1`,
  );
  return rows.map((r) => r.name);
}
