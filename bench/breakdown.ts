/** `--breakdown`: per-statement costs of get, set and the baselines, from pg_stat_statements. */
import type pg from 'pg';
import type { SecretsManager } from '../src/index.js';
import { fmt, log, table } from './figures.js';

/** Per-statement costs of get and set inside their functions (pg_stat_statements, nested statements tracked). */
export async function breakdown(
  pool: pg.Pool,
  manager: SecretsManager,
  schema: string,
  spread: string[],
  value: string,
  baselines: Record<string, (i: number) => Promise<unknown>>,
): Promise<void> {
  const has = await pool.query(`SELECT 1 FROM pg_settings WHERE name = 'pg_stat_statements.track'`);
  if (has.rows.length === 0) {
    log('\n[breakdown] pg_stat_statements is not loaded on this server (embedded: --breakdown preloads it)');
    return;
  }
  await pool.query('CREATE EXTENSION IF NOT EXISTS pg_stat_statements');
  const ops: [string, (i: number) => Promise<unknown>][] = [
    ['get', (i) => manager.get(spread[i % 16] as string, 'k-01')],
    ['set', (i) => manager.set(spread[i % 16] as string, 'k-06', value)],
    ...Object.entries(baselines),
  ];
  for (const [label, op] of ops) {
    await pool.query('SELECT pg_stat_statements_reset()');
    const n = 2000;
    const started = performance.now();
    for (let i = 0; i < n; i++) await op(i);
    const clientMs = (performance.now() - started) / n;
    const rows = await pool.query(
      `SELECT round((total_exec_time / ${n})::numeric, 4) AS ms_per_op, round(calls::numeric / ${n}, 2) AS calls_per_op,
              round(wal_bytes / ${n}, 0) AS wal_per_op, round(wal_fpi::numeric / ${n}, 3) AS fpi_per_op,
              left(regexp_replace(query, '\\s+', ' ', 'g'), 110) AS query
         FROM pg_stat_statements WHERE query NOT LIKE '%pg_stat_statements%' ORDER BY total_exec_time DESC LIMIT 14`,
    );
    process.stdout.write(
      `\n### Breakdown: ${label} (${n} sequential calls, ${fmt(clientMs)} ms each as the client saw it; schema ${schema}; nested statements included)\n\n`,
    );
    process.stdout.write(
      `${table(
        ['ms/op', 'calls/op', 'WAL bytes/op', 'full pages/op', 'statement'],
        rows.rows.map((r) => [
          String(r.ms_per_op),
          String(r.calls_per_op),
          String(r.wal_per_op),
          String(r.fpi_per_op),
          String(r.query),
        ]),
      )}\n`,
    );
  }
}
