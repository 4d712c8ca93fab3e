/**
 * Data-plane figures on a Citus cluster beside a single PostgreSQL server on the same machine:
 * what routing by tenant costs (the coordinator hop, the worker's dispatcher), not scale-up (every
 * node shares the same cores here). A script: it prints figures, asserts nothing.
 *
 *   npx tsx bench/citus.ts                      both targets, 8 clients, 5 s per phase
 *   BENCH_CITUS_URL=postgres://…/db             the coordinator of a running cluster (its pg_dist_node
 *                                               names the workers; default 127.0.0.1:57100/citus)
 *   BENCH_SINGLE_URL=postgres://…/postgres      the single server (default 127.0.0.1:5432/postgres)
 *   BENCH_SECONDS=5 BENCH_CLIENTS=8 BENCH_TENANTS=64
 *
 * Each target gets a fresh database (on every node for Citus: extension, coordinator host, workers
 * added; installed with migrate({ distribute: true })); phases alternate single / Citus (A B A B) so
 * that other load on the machine hits both; the settings that decide durability (fsync,
 * synchronous_commit) are printed for every node.
 */
import { randomBytes } from 'node:crypto';
import * as os from 'node:os';
import pg from 'pg';
import { createSecretsManager, generateMasterKey, type SecretsManager } from '../src/index.js';

const CITUS_URL = process.env.BENCH_CITUS_URL ?? 'postgres://postgres@127.0.0.1:57100/citus';
const SINGLE_URL = process.env.BENCH_SINGLE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
const SECONDS = Number(process.env.BENCH_SECONDS ?? 5);
const CLIENTS = Number(process.env.BENCH_CLIENTS ?? 8);
const TENANTS = Number(process.env.BENCH_TENANTS ?? 64);

const withDb = (base: string, db: string, host?: string, port?: number) => {
  const url = new URL(base);
  url.pathname = `/${db}`;
  if (host) url.hostname = host;
  if (port) url.port = String(port);
  return url.toString();
};

async function query<R extends pg.QueryResultRow>(
  url: string,
  sql: string,
  params: unknown[] = [],
): Promise<R[]> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return (await client.query<R>(sql, params)).rows;
  } finally {
    await client.end();
  }
}

interface Target {
  name: string;
  db: string;
  url: string;
  nodes: { host: string; port: number }[];
  manager: SecretsManager;
}

async function setUp(kind: 'single' | 'citus', key: string): Promise<Target> {
  const db = `bench_${kind}_${randomBytes(4).toString('hex')}`;
  const base = kind === 'single' ? SINGLE_URL : CITUS_URL;
  let nodes: { host: string; port: number; group: number }[] = [];
  if (kind === 'citus') {
    nodes = await query(
      base,
      'SELECT nodename AS host, nodeport AS port, groupid AS group FROM pg_dist_node ORDER BY groupid',
    );
    for (const n of nodes) {
      await query(withDb(base, 'postgres', n.host, n.port), `CREATE DATABASE ${db}`);
      await query(withDb(base, db, n.host, n.port), 'CREATE EXTENSION citus');
    }
    const c = nodes[0] as { host: string; port: number };
    await query(withDb(base, db, c.host, c.port), 'SELECT citus_set_coordinator_host($1, $2)', [
      c.host,
      c.port,
    ]);
    for (const n of nodes.slice(1))
      await query(withDb(base, db, c.host, c.port), 'SELECT citus_add_node($1, $2)', [n.host, n.port]);
  } else {
    await query(withDb(base, 'postgres'), `CREATE DATABASE ${db}`);
    const u = new URL(base);
    nodes = [{ host: u.hostname, port: Number(u.port || 5432), group: 0 }];
  }
  const url = kind === 'citus' ? withDb(base, db, nodes[0]?.host, nodes[0]?.port) : withDb(base, db);
  const manager = createSecretsManager({
    connectionString: url,
    masterKey: key,
    actor: 'bench',
    auditSealIntervalMs: 0,
    maxConnections: CLIENTS + 2,
  });
  const started = Date.now();
  await manager.installation.migrate(kind === 'citus' ? { distribute: true } : {});
  console.log(
    `${kind}: migrate${kind === 'citus' ? ' --distribute' : ''} in ${((Date.now() - started) / 1000).toFixed(1)} s`,
  );
  for (let t = 0; t < TENANTS; t++) await manager.set(`tenant-${t}`, 'k', `value ${t}`);
  return { name: kind, db, url, nodes, manager };
}

async function tearDown(target: Target): Promise<void> {
  await target.manager.close();
  for (const n of [...target.nodes].reverse())
    await query(
      withDb(target.url, 'postgres', n.host, n.port),
      `DROP DATABASE IF EXISTS ${target.db} WITH (FORCE)`,
    ).catch(() => {});
}

/** ops/s of `op` run by CLIENTS concurrent loops for SECONDS, each op on a random tenant. */
async function phase(op: (tenant: string) => Promise<unknown>): Promise<number> {
  const until = Date.now() + SECONDS * 1000;
  let done = 0;
  await Promise.all(
    Array.from({ length: CLIENTS }, async () => {
      while (Date.now() < until) {
        await op(`tenant-${Math.floor(Math.random() * TENANTS)}`);
        done++;
      }
    }),
  );
  return done / SECONDS;
}

async function settings(target: Target): Promise<string> {
  const out: string[] = [];
  for (const n of target.nodes) {
    const [s] = await query<{ fsync: string; sc: string }>(
      withDb(target.url, target.db, n.host, n.port),
      `SELECT current_setting('fsync') AS fsync, current_setting('synchronous_commit') AS sc`,
    );
    out.push(`${n.host}:${n.port} fsync=${s?.fsync} synchronous_commit=${s?.sc}`);
  }
  return out.join('; ');
}

async function main(): Promise<void> {
  const key = generateMasterKey();
  console.log(
    `tenant-secrets bench/citus.ts: ${CLIENTS} clients, ${SECONDS} s per phase, ${TENANTS} tenants, ${os.cpus().length} cores, load ${os
      .loadavg()
      .map((l) => l.toFixed(2))
      .join(' ')}`,
  );
  const single = await setUp('single', key);
  const citus = await setUp('citus', key);
  console.log(`single: ${await settings(single)}`);
  console.log(`citus:  ${await settings(citus)}`);
  const ops: [string, (m: SecretsManager) => (t: string) => Promise<unknown>][] = [
    ['get', (m) => (t) => m.get(t, 'k')],
    ['set', (m) => (t) => m.set(t, 'k', 'new value')],
    ['list', (m) => (t) => m.list(t)],
  ];
  const rows: { op: string; single: number; citus: number }[] = [];
  for (const [name, make] of ops) {
    const s: number[] = [];
    const c: number[] = [];
    for (let round = 0; round < 2; round++) {
      s.push(await phase(make(single.manager)));
      c.push(await phase(make(citus.manager)));
    }
    const avg = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
    rows.push({ op: name, single: avg(s), citus: avg(c) });
  }
  const sealStart = Date.now();
  const sealed = await citus.manager.auditTrail.seal();
  const sealSeconds = (Date.now() - sealStart) / 1000;
  console.log('\nop     single ops/s   citus ops/s   citus/single');
  for (const r of rows)
    console.log(
      `${r.op.padEnd(6)} ${r.single.toFixed(0).padStart(12)} ${r.citus.toFixed(0).padStart(13)} ${(r.citus / r.single).toFixed(2).padStart(14)}`,
    );
  console.log(
    `\ncitus: sealed ${sealed.sealed} audit records in ${sealSeconds.toFixed(1)} s (${(sealed.sealed / sealSeconds).toFixed(0)} records/s)`,
  );
  console.log(
    `load at end ${os
      .loadavg()
      .map((l) => l.toFixed(2))
      .join(' ')}`,
  );
  await tearDown(single);
  await tearDown(citus);
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
