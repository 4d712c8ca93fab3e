/**
 * Sizes that must not slow an operation: set() on a key at many versions against a key at 20, and
 * gets over many tenants (100,000 x 10 secrets by default) against the same load over 1/100 of them.
 */
import { randomInt } from 'node:crypto';
import type { SecretsManager } from '../../src/index.js';
import { type BenchContext, MAX_CLIENTS } from '../context.js';
import { figure, fmt, log, TARGETS } from '../figures.js';
import { compare } from '../load.js';

export async function versions(ctx: BenchContext, manager: SecretsManager, value: string): Promise<void> {
  const n = ctx.sizes.versions;
  log(`\n[scale] set() at ${n} versions of one key (1 client)`);
  // One key written n times; then writes to it alternate with writes to a key with 20 versions, so
  // that both sides see the same moment's load: flat means a ratio near 1.
  const mean = (xs: number[]) => xs.reduce((s, x) => s + x, 0) / xs.length;
  const first: number[] = [];
  for (let i = 0; i < n; i++) {
    const t = performance.now();
    await manager.set('versions', 'many-versions', value);
    if (i >= 10 && i < 210) first.push(performance.now() - t);
  }
  for (let i = 0; i < 20; i++) await manager.set('versions', 'few-versions', value);
  const many: number[] = [];
  const few: number[] = [];
  for (let i = 0; i < (ctx.sizes.quick ? 100 : 500); i++) {
    let t = performance.now();
    await manager.set('versions', 'many-versions', value);
    many.push(performance.now() - t);
    t = performance.now();
    await manager.set('versions', 'few-versions', value);
    few.push(performance.now() - t);
  }
  figure(
    `set(): a key at ${n} versions / a key at 20 versions (alternating writes)`,
    mean(many) / mean(few),
    'x',
    TARGETS.versions,
    `${fmt(mean(many))} vs ${fmt(mean(few))} ms per write; writes 10-210 of the first key took ${fmt(mean(first))} ms`,
  );
}

/**
 * Fills `tenants` x `secrets` in schema `schema` through the SQL interface, many secrets per
 * statement (upsert_tenant_secret with each tenant's key bundle), on two connections.
 */
async function fill(
  ctx: BenchContext,
  manager: SecretsManager,
  schema: string,
  tenants: number,
  secrets: number,
  value: string,
) {
  const qs = `"${schema}"`;
  const names = Array.from({ length: secrets }, (_, k) => `k-${String(k).padStart(2, '0')}`);
  const batch = Math.max(1, Math.floor(2000 / secrets));
  let next = 0;
  await Promise.all(
    Array.from({ length: 2 }, async () => {
      for (let from = next; from < tenants; from = next) {
        next += batch;
        const ids = Array.from(
          { length: Math.min(batch, tenants - from) },
          (_, i) => `s-${String(from + i).padStart(7, '0')}`,
        );
        await ctx.pool.query(
          `SELECT count(${qs}.upsert_tenant_secret(x.t, k.k, $3, x.b))
             FROM unnest($1::text[], $2::bytea[]) AS x(t, b) CROSS JOIN unnest($4::text[]) AS k(k)`,
          [ids, ids.map((t) => manager.tenantKeyBundle(t).bytes), value, names],
        );
      }
    }),
  );
}

export async function manyTenants(ctx: BenchContext, value: string): Promise<void> {
  const { scaleTenants: large, scaleSecrets: secrets } = ctx.sizes;
  const small = Math.max(10, Math.round(large / 100));
  log(`\n[scale] gets over ${large} tenants x ${secrets} secrets vs over ${small} tenants (16 clients)`);
  const L = `${ctx.prefix}_tenants_l`;
  const S = `${ctx.prefix}_tenants_s`;
  const ml = ctx.newManager(L);
  const ms = ctx.newManager(S);
  await ml.migrate();
  await ms.migrate();
  const t = performance.now();
  await fill(ctx, ml, L, large, secrets, value);
  await fill(ctx, ms, S, small, secrets, value);
  await ml.sealAudit();
  await ms.sealAudit();
  log(`    filled in ${fmt((performance.now() - t) / 1000)} s`);
  // The figure is the steady state at this size. Right after a bulk load, autovacuum's first pass
  // over a million fresh rows (and the hint bits every first read sets) would run during the
  // phases instead: vacuum and checkpoint now, as an operator does after loading data.
  const v = performance.now();
  for (const schema of [L, S]) {
    const tables = await ctx.pool.query<{ t: string }>(
      `SELECT pg_catalog.format('%I.%I', n.nspname, c.relname) AS t FROM pg_catalog.pg_class c
         JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = $1 AND c.relkind = 'r'`,
      [schema],
    );
    for (const { t: table } of tables.rows) await ctx.pool.query(`VACUUM (ANALYZE) ${table}`);
  }
  const checkpointed = await ctx.pool.query('CHECKPOINT').then(
    () => 'and checkpointed',
    () => '(CHECKPOINT refused: not a superuser)',
  );
  log(`    vacuumed (ANALYZE) ${checkpointed} in ${fmt((performance.now() - v) / 1000)} s`);
  const pick = (n: number) => `s-${String(randomInt(n)).padStart(7, '0')}`;
  const key = () => `k-${String(randomInt(secrets)).padStart(2, '0')}`;
  // A service that has run for a while has read every tenant once: each tenant's key is derived and
  // its data key unwrapped at its first read, then kept (keyCacheEntries, 100,000 by default). The
  // phases below measure that steady state; this pass reads every tenant once first, and its own
  // throughput, the first reads, is reported beside it.
  const firstReads = async (manager: SecretsManager, tenants: number) => {
    // In random order: in id order, neighbouring tenants share pages and the pass reads faster.
    const order = Array.from({ length: tenants }, (_, i) => i);
    for (let i = tenants - 1; i > 0; i--) {
      const j = randomInt(i + 1);
      [order[i], order[j]] = [order[j] as number, order[i] as number];
    }
    const t0 = performance.now();
    let next = 0;
    await Promise.all(
      Array.from({ length: MAX_CLIENTS }, async () => {
        for (let i = next++; i < tenants; i = next++)
          await manager.get(`s-${String(order[i]).padStart(7, '0')}`, key());
      }),
    );
    return tenants / ((performance.now() - t0) / 1000);
  };
  const cold = await firstReads(ml, large);
  await firstReads(ms, small);
  // The pass left a record per tenant to seal: sealed now, not during the phases.
  await ml.sealAudit();
  await ms.sealAudit();
  const r = await compare(
    'tenants',
    MAX_CLIENTS,
    { name: `get, ${large} tenants`, op: () => ml.get(pick(large), key()) },
    { name: `get, ${small} tenants`, op: () => ms.get(pick(small), key()) },
  );
  figure(
    `get over ${large} tenants x ${secrets} secrets / over ${small} tenants`,
    r.ratio,
    'x',
    TARGETS.manyTenants,
    `${fmt(r.a.perSecond)} vs ${fmt(r.b.perSecond)} /s; tenants and keys drawn at random, every tenant read once before`,
  );
  figure(
    `get, the first read of each of ${large} tenants (key derived, data key unwrapped) / steady state over ${small} tenants`,
    cold / r.b.perSecond,
    'x',
    undefined,
    `${fmt(cold)} vs ${fmt(r.b.perSecond)} /s; each tenant once, in random order, ${MAX_CLIENTS} clients`,
  );
  await ctx.dropSchema(L);
  await ctx.dropSchema(S);
}
