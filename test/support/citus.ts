import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { afterAll, inject } from 'vitest';

/**
 * A Citus cluster for the distributed tests (docs/scaling.md): TEST_CITUS_URL names its coordinator
 * (`../shared/citus/cluster.sh start DIR PORT DB` prints it; `.ci/run` starts one). Each test file gets
 * a database of its own on every node, with the extension created and the workers added, as an
 * operator prepares one (citus_set_coordinator_host, citus_add_node).
 */
export const CITUS_URL = process.env.TEST_CITUS_URL ?? '';
export const CITUS_SKIP_REASON = CITUS_URL
  ? ''
  : 'no Citus cluster: set TEST_CITUS_URL to a coordinator (../shared/citus/cluster.sh start DIR PORT DB prints one; .ci/run starts it)';

/** Shards per distributed table in the test databases (see prepareCitusDatabase). */
const TEST_SHARD_COUNT = 4;

export interface CitusNode {
  host: string;
  port: number;
  /** 0 for the coordinator. */
  groupId: number;
}

function urlOn(base: string, node: { host: string; port: number } | null, database: string): string {
  const url = new URL(base);
  if (node) {
    url.hostname = node.host;
    url.port = String(node.port);
  }
  url.pathname = `/${database}`;
  return url.toString();
}

export async function queryOn<R extends pg.QueryResultRow = pg.QueryResultRow>(
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

/** The nodes of the cluster TEST_CITUS_URL (or `base`) belongs to: the coordinator first. */
export async function citusNodes(base = CITUS_URL): Promise<CitusNode[]> {
  const rows = await queryOn<{ host: string; port: number; group_id: number }>(
    base,
    `SELECT nodename AS host, nodeport AS port, groupid AS group_id FROM pg_catalog.pg_dist_node
      WHERE noderole = 'primary' ORDER BY groupid`,
  );
  return rows.map((r) => ({ host: r.host, port: r.port, groupId: r.group_id }));
}

/**
 * Creates database `name` on every node of the cluster and makes it a Citus database there (the
 * coordinator's URL `base`): extension on every node, coordinator host set, workers added. `label`
 * is its comment on every node: the run's tag, by which the global teardown drops what a test file
 * left (a database made inside a test, whose own afterAll does not run).
 */
export async function prepareCitusDatabase(
  name: string,
  base = CITUS_URL,
  label?: string,
): Promise<CitusNode[]> {
  const nodes = await citusNodes(base);
  for (const node of nodes) {
    await queryOn(urlOn(base, node, 'postgres'), `CREATE DATABASE ${name}`);
    if (label !== undefined) {
      await queryOn(
        urlOn(base, node, 'postgres'),
        `COMMENT ON DATABASE ${name} IS ${pg.escapeLiteral(label)}`,
      );
    }
    await queryOn(urlOn(base, node, name), 'CREATE EXTENSION IF NOT EXISTS citus');
  }
  const coordinator = nodes.find((n) => n.groupId === 0);
  if (!coordinator) throw new Error(`no coordinator in pg_dist_node of ${base}`);
  const url = urlOn(base, coordinator, name);
  // Four shards per distributed table instead of Citus's default 32: two per worker still spread the
  // tenants over both, and distributing an installation (every table's shards made on the workers)
  // takes about half as long (measured: 4.8 s -> 2.6 s per database), which most of this stage's
  // time is. Production keeps the default (docs/scaling.md).
  await queryOn(
    urlOn(base, coordinator, 'postgres'),
    `ALTER DATABASE ${name} SET citus.shard_count = ${TEST_SHARD_COUNT}`,
  );
  await setUp(() =>
    queryOn(url, 'SELECT pg_catalog.citus_set_coordinator_host($1, $2)', [
      coordinator.host,
      coordinator.port,
    ]),
  );
  for (const node of nodes.filter((n) => n.groupId !== 0)) {
    await setUp(() => queryOn(url, 'SELECT pg_catalog.citus_add_node($1, $2)', [node.host, node.port]));
  }
  return nodes;
}

/**
 * A setup step run again when the coordinator could not reach a worker for it. Every test file makes
 * its databases at once when the stage starts, each with a Citus maintenance daemon per node, and
 * adding a node opens connections to it: a worker may refuse one for a moment (CI once saw "failure
 * on connection marked as essential" there). Both steps are idempotent. Said on stderr when it happens.
 */
async function setUp<T>(step: () => Promise<T>): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await step();
    } catch (error) {
      const message = String((error as Error)?.message ?? error);
      const transient = /connection marked as essential|could not connect|too many clients|starting up/i.test(
        message,
      );
      if (!transient || attempt >= 6) throw error;
      console.warn(`citus setup: ${message}; trying again (${attempt})`);
      await new Promise((resolve) => setTimeout(resolve, 500 * attempt));
    }
  }
}

/** Drops database `name` on every node (workers first). */
export async function dropCitusDatabase(name: string, nodes: CitusNode[], base = CITUS_URL): Promise<void> {
  for (const node of [...nodes].reverse()) {
    await queryOn(urlOn(base, node, 'postgres'), `DROP DATABASE IF EXISTS ${name} WITH (FORCE)`).catch(
      () => {},
    );
  }
}

/** A fresh Citus database for this test file (dropped after it): the coordinator's URL and the nodes. */
export async function citusDatabase(): Promise<{
  name: string;
  url: string;
  nodes: CitusNode[];
  urlOf: (node: CitusNode) => string;
}> {
  const name = `tsc_${randomBytes(6).toString('hex')}`;
  const nodes = await prepareCitusDatabase(name, CITUS_URL, inject('runTag'));
  afterAll(() => dropCitusDatabase(name, nodes));
  const coordinator = nodes.find((n) => n.groupId === 0) as CitusNode;
  return {
    name,
    url: urlOn(CITUS_URL, coordinator, name),
    nodes,
    urlOf: (node) => urlOn(CITUS_URL, node, name),
  };
}
