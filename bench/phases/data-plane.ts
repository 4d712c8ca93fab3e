/**
 * get / set / rotate against the one-statement baselines at 4 and 16 clients; a get while another
 * transaction holds an open write of the same tenant; WAL per operation and audit storage.
 */
import pg from 'pg';
import { type BenchContext, MAX_CLIENTS } from '../context.js';
import { figure, fmt, log, TARGETS } from '../figures.js';
import type { Fixture } from '../fixture.js';
import { compare, percentile } from '../load.js';
import { relationBytes } from '../trail.js';

export async function dataPlane(f: Fixture): Promise<void> {
  const { manager, spread, value } = f;
  log('\n[data-plane] get / set / rotate vs one-statement baselines (same pool, same clients)');
  for (const clients of [4, 16]) {
    const g = await compare(
      `get @${clients}`,
      clients,
      { name: 'get', op: (w) => manager.get(spread[w] as string, 'k-01') },
      { name: 'audited read (1 statement)', op: (w) => f.auditedRead(spread[w] as string, 'k-01') },
    );
    figure(
      `get / audited read, ${clients} clients`,
      g.ratio,
      'x',
      clients === 4 ? TARGETS.getVsAuditedRead4 : TARGETS.getVsAuditedRead16,
      `${fmt(g.a.perSecond)} vs ${fmt(g.b.perSecond)} /s`,
    );
    const s = await compare(
      `set @${clients}`,
      clients,
      { name: 'set', op: (w) => manager.set(spread[w] as string, 'k-02', value) },
      { name: 'upsert + audit (1 statement)', op: (w) => f.upsertAudited(spread[w] as string, 'k-02') },
    );
    figure(
      `set / upsert + audit, ${clients} clients`,
      s.ratio,
      'x',
      clients === 16 ? TARGETS.writeVsUpsert16 : undefined,
      `${fmt(s.a.perSecond)} vs ${fmt(s.b.perSecond)} /s`,
    );
    const r = await compare(
      `rotate @${clients}`,
      clients,
      { name: 'rotate', op: (w) => manager.rotate(spread[w] as string, 'k-03', value) },
      {
        name: 'upsert + audit (1 statement)',
        op: (w) => f.upsertAudited(spread[w] as string, 'k-03', 'secret.rotated'),
      },
    );
    figure(
      `rotate / upsert + audit, ${clients} clients`,
      r.ratio,
      'x',
      clients === 16 ? TARGETS.writeVsUpsert16 : undefined,
      `${fmt(r.a.perSecond)} vs ${fmt(r.b.perSecond)} /s`,
    );
  }
}

/** A get while another transaction holds an uncommitted write of the same tenant. */
export async function blockedRead(ctx: BenchContext, f: Fixture): Promise<void> {
  log('\n[data-plane] a get while another transaction holds an uncommitted write of the same tenant');
  const holder = new pg.Client({ connectionString: ctx.url });
  await holder.connect();
  const lat: number[] = [];
  try {
    // What this measures is a read behind an uncommitted write, not the sealer working off the records
    // the 16-client phases just appended (at their rate, seconds of them): seal those first.
    await f.manager.sealAudit();
    await holder.query('BEGIN');
    await f.manager.inTransaction(holder).set('hot', 'held', f.value);
    for (let i = 0; i < (ctx.sizes.quick ? 50 : 300); i++) {
      const t = performance.now();
      await f.manager.get('hot', f.keys[i % MAX_CLIENTS] as string);
      lat.push(performance.now() - t);
    }
  } finally {
    await holder.query('ROLLBACK').catch(() => undefined);
    await holder.end();
  }
  lat.sort((a, b) => a - b);
  figure(
    `get during an open write of the same tenant, slowest of ${lat.length}`,
    lat.at(-1) ?? 0,
    'ms',
    TARGETS.blockedGetMs,
    `p50 ${fmt(percentile(lat, 50))} ms, p99 ${fmt(percentile(lat, 99))} ms`,
  );
}

/** WAL per get, per record sealed and per set; audit storage per sealed record. */
export async function walAndStorage(ctx: BenchContext, f: Fixture): Promise<void> {
  log('\n[data-plane] audit storage and WAL');
  const { pool } = ctx;
  const { spread, value } = f;
  // In a schema of its own, with no background sealer: nothing but the measured calls writes.
  const W = `${ctx.prefix}_wal`;
  const quiet = ctx.newManager(W, { auditSealIntervalMs: 0 });
  await quiet.migrate();
  for (const tenant of spread) for (const key of ['k-01', 'k-04']) await quiet.set(tenant, key, value);
  await quiet.sealAudit();
  await f.manager.sealAudit();
  const lsn = async () =>
    String((await pool.query('SELECT pg_current_wal_insert_lsn()::text AS l')).rows[0]?.l);
  const walDiff = async (from: string) =>
    Number(
      (
        await pool.query('SELECT pg_wal_lsn_diff(pg_current_wal_insert_lsn(), $1::pg_lsn)::float8 AS d', [
          from,
        ])
      ).rows[0]?.d,
    );
  const n = ctx.sizes.quick ? 200 : 2000;
  let from = await lsn();
  for (let i = 0; i < n; i++) await quiet.get(spread[i % MAX_CLIENTS] as string, 'k-01');
  const walGet = (await walDiff(from)) / n;
  from = await lsn();
  await quiet.sealAudit();
  const walSeal = (await walDiff(from)) / n;
  from = await lsn();
  for (let i = 0; i < n; i++) await f.auditedRead(spread[i % MAX_CLIENTS] as string, 'k-01');
  const walBase = (await walDiff(from)) / n;
  from = await lsn();
  for (let i = 0; i < n; i++) await quiet.set(spread[i % MAX_CLIENTS] as string, 'k-04', value);
  const walSet = (await walDiff(from)) / n;
  const cluster = ctx.external ? '; cluster-wide WAL position: other sessions on that server count too' : '';
  figure(
    'WAL per get (the operation, its record appended)',
    walGet,
    'bytes',
    undefined,
    `audited-read baseline ${fmt(walBase)} bytes${cluster}`,
  );
  figure(
    'WAL per record sealed (moved to its day partition, chained)',
    walSeal,
    'bytes',
    undefined,
    cluster.slice(2) || undefined,
  );
  figure('WAL per set', walSet, 'bytes', undefined, cluster.slice(2) || undefined);
  await f.manager.sealAudit();
  const st = await relationBytes(pool, f.schema, '^tenant_secret_audit_p[0-9]{8}$');
  figure(
    'audit storage per sealed record (table + indexes), live records',
    st.bytes / st.records,
    'bytes',
    undefined,
    `${st.records} records; heap ${fmt(st.heap / st.records)}, index ${fmt(st.index / st.records)}`,
  );
}
