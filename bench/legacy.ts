/**
 * Legacy import at scale (`npm run bench:legacy`): fills a table in the original code's shape with
 * BENCH_LEGACY_ROWS rows (default 100000, over 1000 tenants) encrypted as that code did, imports it
 * with importLegacy(), and reports the cost per row of the first and of the last tenth of the rows.
 * The import walks rows by physical position (ctid), so the ratio stays near 1 however many rows
 * are left; a scan from the start of the table for each batch would make the last tenth far slower.
 *
 * Starts its own embedded PostgreSQL unless BENCH_DATABASE_URL is set (then it works in a fresh
 * schema there and drops it afterwards). BENCH_LEGACY_FORM=bytea stores encrypt()'s output as bytea
 * instead of base64 text; BENCH_LEGACY_BATCH sets the batch size (default 100, as importLegacy).
 */
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { createSecretsManager } from '../src/index.js';
import { startEmbeddedPostgres } from './embedded.js';

const ROWS = Number(process.env.BENCH_LEGACY_ROWS ?? 100_000);
const FORM = process.env.BENCH_LEGACY_FORM === 'bytea' ? 'bytea' : 'text';
const BATCH = Number(process.env.BENCH_LEGACY_BATCH ?? 100);
const TENANTS = 1000;
const LEGACY_KEY = 'legacy-master-key-of-the-original-code';

async function main(): Promise<void> {
  const external = process.env.BENCH_DATABASE_URL;
  const server = external ? undefined : await startEmbeddedPostgres();
  const url = external ?? server?.url ?? '';
  const schema = `ts_legacy_${randomBytes(4).toString('hex')}`;
  const pool = new pg.Pool({ connectionString: url, max: 4 });
  pool.on('error', () => undefined);
  const manager = createSecretsManager({
    pool,
    schema,
    masterKey: randomBytes(32).toString('base64'),
    actor: 'bench-legacy',
    auditSealIntervalMs: 0,
  });
  try {
    process.stderr.write(
      `tenant-secrets legacy import bench: ${external ? 'BENCH_DATABASE_URL' : 'embedded PostgreSQL'}, ${ROWS} rows (${FORM}), batches of ${BATCH}\n`,
    );
    await pool.query(`CREATE EXTENSION IF NOT EXISTS pgcrypto`);
    await pool.query(`CREATE SCHEMA "${schema}"`);
    await pool.query(
      `CREATE TABLE "${schema}".tenant_secrets (tenant_id uuid NOT NULL, key_name text NOT NULL,
         encrypted_value ${FORM} NOT NULL, rotated_at timestamptz, PRIMARY KEY (tenant_id, key_name))`,
    );
    const cipher = `encrypt(convert_to('legacy value ' || i, 'UTF8'), $1::bytea, 'aes-cbc')`;
    const fillStarted = performance.now();
    for (let from = 1; from <= ROWS; from += 50_000) {
      await pool.query(
        `INSERT INTO "${schema}".tenant_secrets
         SELECT ('00000000-0000-4000-8000-' || lpad((i % ${TENANTS})::text, 12, '0'))::uuid, 'key-' || i,
                ${FORM === 'bytea' ? cipher : `encode(${cipher}, 'base64')`}, now()
           FROM generate_series($2::int, $3::int) i`,
        [LEGACY_KEY, from, Math.min(ROWS, from + 49_999)],
      );
    }
    process.stderr.write(`  filled in ${((performance.now() - fillStarted) / 1000).toFixed(1)} s\n`);

    // Time per committed batch: progress is reported after each one.
    const marks: { done: number; at: number }[] = [];
    const started = performance.now();
    marks.push({ done: 0, at: started });
    const result = await manager.importLegacy({
      legacyKey: LEGACY_KEY,
      batchSize: BATCH,
      onProgress: ({ done }) => {
        marks.push({ done, at: performance.now() });
        if (marks.length % 20 === 0) process.stderr.write(`  ${done}/${ROWS}\n`);
      },
    });
    const seconds = (performance.now() - started) / 1000;
    if (result.importedTotal !== ROWS || !result.legacyTableDropped) {
      throw new Error(`import incomplete: ${JSON.stringify(result)}`);
    }
    // Cost per row over a slice of the run, from the batch marks that bound it.
    const perRow = (fromRow: number, toRow: number): number => {
      const first = marks.filter((m) => m.done <= fromRow).at(-1) ?? marks[0];
      const last = marks.find((m) => m.done >= toRow) ?? marks.at(-1);
      if (!first || !last || last.done === first.done) return Number.NaN;
      return (last.at - first.at) / (last.done - first.done);
    };
    const tenth = Math.floor(ROWS / 10);
    const early = perRow(0, tenth);
    const late = perRow(ROWS - tenth, ROWS);
    // Spot check: a sample of rows reads back.
    const sample = [1, Math.floor(ROWS / 2), ROWS];
    for (const i of sample) {
      const tenant = `00000000-0000-4000-8000-${String(i % TENANTS).padStart(12, '0')}`;
      const value = await manager.get(tenant, `key-${i}`);
      if (value !== `legacy value ${i}`) throw new Error(`row ${i} did not read back`);
    }
    const tenths = Array.from({ length: 10 }, (_, i) => perRow(i * tenth, (i + 1) * tenth).toFixed(2));
    const lines = [
      `| rows | form | batch | seconds | rows/s | ms/row first 10% | ms/row last 10% | last/first |`,
      `|---|---|---|---|---|---|---|---|`,
      `| ${ROWS} | ${FORM} | ${BATCH} | ${seconds.toFixed(1)} | ${(ROWS / seconds).toFixed(0)} | ${early.toFixed(3)} | ${late.toFixed(3)} | ${(late / early).toFixed(2)} |`,
      '',
      `ms/row by tenth of the rows: ${tenths.join(' ')}`,
    ];
    process.stdout.write(`${lines.join('\n')}\n`);
  } finally {
    await manager.close();
    await pool.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`).catch(() => undefined);
    await pool.end();
    await server?.stop();
  }
}

main().catch((error: unknown) => {
  process.stderr.write(`${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
  process.exit(1);
});
