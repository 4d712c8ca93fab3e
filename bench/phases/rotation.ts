/** Master-key rotation of many tenants: wall time, and that no secret or version row is rewritten. */
import { createSecretsManager, generateMasterKey } from '../../src/index.js';
import { type BenchContext, MAX_CLIENTS } from '../context.js';
import { figure, fmt, log, TARGETS } from '../figures.js';

export async function rotation(ctx: BenchContext, value: string): Promise<void> {
  const tenants = ctx.sizes.rotationTenants;
  log(`\n[rotation] master-key rotation of ${tenants} tenants`);
  const { pool } = ctx;
  const R = `${ctx.prefix}_rot`;
  const m1 = ctx.newManager(R);
  await m1.migrate();
  let next = 0;
  await Promise.all(
    Array.from({ length: MAX_CLIENTS }, async () => {
      for (let i = next++; i < tenants; i = next++)
        await m1.set(`r-${String(i).padStart(6, '0')}`, 'api-key', value);
    }),
  );
  const r = `"${R}"`;
  const rows = `SELECT 's' AS t, tenant_id || '/' || key_name AS k, xmin::text || ctid::text AS v FROM ${r}.tenant_secrets
      UNION ALL SELECT 'v', tenant_id || '/' || key_name || '/' || version, xmin::text || ctid::text FROM ${r}.tenant_secret_versions
      UNION ALL SELECT 'k', tenant_id || '/' || version, xmin::text || ctid::text FROM ${r}.tenant_secret_keys`;
  await pool.query(`CREATE TABLE ${r}.bench_before AS ${rows}`);
  const m2 = createSecretsManager({
    pool,
    schema: R,
    masterKey: generateMasterKey(),
    previousMasterKeys: [ctx.masterKey],
    actor: 'bench',
  });
  try {
    const t = performance.now();
    const result = await m2.rotateMasterKey();
    const seconds = (performance.now() - t) / 1000;
    const touched = (
      await pool.query(`SELECT b.t, count(*) FILTER (WHERE n.v IS DISTINCT FROM b.v)::int AS changed, count(*)::int AS rows
          FROM ${r}.bench_before b LEFT JOIN (${rows}) n ON n.t = b.t AND n.k = b.k GROUP BY b.t ORDER BY b.t`)
    ).rows as { t: string; changed: number; rows: number }[];
    const changed = (t: string) => touched.find((x) => x.t === t)?.changed ?? 0;
    figure(
      `master-key rotation of ${tenants} tenants, wall time`,
      seconds,
      's',
      undefined,
      `${result.rewrapped} data keys re-wrapped in ${result.batches} batch(es), ${fmt(result.rewrapped / seconds)} keys/s`,
    );
    figure(
      'master-key rotation: secret and version rows touched',
      changed('s') + changed('v'),
      'rows',
      TARGETS.rotationRowsTouched,
      `data-key rows touched ${changed('k')} of ${touched.find((x) => x.t === 'k')?.rows}`,
    );
  } finally {
    await m2.close();
    await ctx.dropSchema(R);
  }
}
