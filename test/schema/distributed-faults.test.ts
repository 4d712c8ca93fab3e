// suite-scope: direct — stops and restarts a worker of the Citus cluster (TEST_CITUS_DIR); never through PgBouncer
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  createSecretsManager,
  DatabaseUnavailableError,
  type SecretsManager,
  TenantSecretsError,
} from '../../src/index.js';
import { CITUS_SKIP_REASON, CITUS_URL, type CitusNode, citusDatabase, queryOn } from '../support/citus.js';

/**
 * A worker of the Citus cluster lost under load (docs/scaling.md, "Faults"): while write loops run on
 * tenants of both workers and a tenant-key rotation runs on a tenant of one, that worker's PostgreSQL
 * is stopped at once (pg_ctl stop -m immediate: no shutdown checkpoint, crash recovery at the next
 * start), then started again. Checked: every failed call failed with a typed error; the tenants of the
 * other worker kept working; every acknowledged write reads back with its value at its version and
 * has exactly one audit record; the interrupted rotation resumes and finishes; the audit trail verifies.
 *
 * It needs the directory the cluster was started in (TEST_CITUS_DIR: `cluster.sh start DIR …`, whose
 * nodes are DIR/node0…2), to stop and start the worker as the owner of its data directory, and runs
 * alone, after every other file of the stage (vitest.config.ts), since it takes a worker away.
 * Nothing here measures time: every wait polls for a state, with a generous limit.
 */
const CITUS_DIR = process.env.TEST_CITUS_DIR ?? '';
/** Why this process cannot stop and start the cluster's nodes (it runs them as the owner of their data). */
function controlProblem(): string {
  if (!existsSync(join(CITUS_DIR, 'node1', 'postmaster.opts')))
    return `TEST_CITUS_DIR (${CITUS_DIR}) holds no node started by cluster.sh (node1/postmaster.opts)`;
  const uid = process.getuid?.();
  if (uid !== 0 && uid !== statSync(join(CITUS_DIR, 'node1')).uid)
    return 'stopping and starting a node needs root or the owner of its data directory';
  return '';
}
const SKIP_REASON = !CITUS_URL
  ? CITUS_SKIP_REASON
  : !CITUS_DIR
    ? 'TEST_CITUS_DIR is not set: it names the directory the Citus cluster was started in (cluster.sh start DIR …; .ci/run sets it), to stop and start a worker'
    : controlProblem();
if (SKIP_REASON) console.log(`test/schema/distributed-faults.test.ts skipped: ${SKIP_REASON}`);

const run = promisify(execFile);

/** A node's data directory and how it was started (postmaster.opts: the server binary and its options). */
interface NodeDir {
  data: string;
  log: string;
  bin: string;
  options: string[];
  owner: { uid: number; gid: number };
}

/** The data directory of the node listening on `port`, among CITUS_DIR/node*. */
function nodeDir(port: number): NodeDir {
  for (const name of readdirSync(CITUS_DIR)) {
    const data = join(CITUS_DIR, name);
    const opts = join(data, 'postmaster.opts');
    if (!existsSync(opts)) continue;
    const args = [...readFileSync(opts, 'utf8').matchAll(/"((?:[^"\\]|\\.)*)"|(\S+)/g)].map(
      (m) => m[1] ?? m[2] ?? '',
    );
    const [bin, ...rest] = args;
    const options: string[] = [];
    let found = false;
    for (let i = 0; i < rest.length; i++) {
      if (rest[i] === '-D') {
        i++;
        continue;
      }
      if (rest[i] === '-p' && rest[i + 1] === String(port)) found = true;
      options.push(rest[i] as string);
    }
    if (found && bin) {
      const { uid, gid } = statSync(data);
      return { data, log: join(CITUS_DIR, `${name}.log`), bin, options, owner: { uid, gid } };
    }
  }
  throw new Error(`no node directory in ${CITUS_DIR} was started on port ${port}`);
}

/** The home directory of user `uid` (/etc/passwd), as `su` would set it. */
function homeOf(uid: number): string | undefined {
  for (const line of readFileSync('/etc/passwd', 'utf8').split('\n')) {
    const fields = line.split(':');
    if (fields[2] === String(uid)) return fields[5];
  }
  return undefined;
}

/**
 * pg_ctl as the owner of the data directory (the test runs as root in CI, or as that owner), with
 * that user's HOME: the server's own connections to the other nodes (libpq) read ~/.postgresql, which
 * another user's HOME would make unreadable.
 */
async function pgCtl(node: NodeDir, args: string[]): Promise<void> {
  const own = process.getuid?.() === node.owner.uid;
  const home = own ? process.env.HOME : (homeOf(node.owner.uid) ?? node.data);
  await run(join(dirname(node.bin), 'pg_ctl'), ['-D', node.data, ...args], {
    ...(own ? {} : { uid: node.owner.uid, gid: node.owner.gid }),
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: home, LC_ALL: 'C' },
    timeout: 180_000,
  });
}

const shellQuote = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;

async function stopImmediately(node: NodeDir): Promise<void> {
  await pgCtl(node, ['-m', 'immediate', '-w', 'stop']);
}

async function start(node: NodeDir): Promise<void> {
  await pgCtl(node, [
    '-o',
    node.options.map(shellQuote).join(' '),
    '-l',
    node.log,
    '-w',
    '-t',
    '170',
    'start',
  ]);
}

const isRunning = (node: NodeDir) => existsSync(join(node.data, 'postmaster.pid'));

/** Polls `check` until it is true; fails with `what` after `limitMs` (a hang, not a speed check). */
async function until(
  what: string,
  check: () => boolean | Promise<boolean>,
  limitMs = 180_000,
): Promise<void> {
  const deadline = Date.now() + limitMs;
  for (;;) {
    if (await check()) return;
    if (Date.now() > deadline) throw new Error(`gave up waiting: ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

const pause = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

interface Attempt {
  tenant: string;
  key: string;
  op: 'set' | 'rotate';
  /** The version the write makes: a set creates its key (1), the rotate after it makes 2. */
  version: 1 | 2;
  value: string;
  requestId: string;
  /** What the worker was when the call started. */
  startedIn: Phase;
}
type Phase = 'before' | 'down' | 'restarted';
interface Failure extends Attempt {
  error: unknown;
}

describe.skipIf(SKIP_REASON !== '')('a Citus worker lost under load', () => {
  const masterKey = randomBytes(32).toString('base64');
  let db: Awaited<ReturnType<typeof citusDatabase>>;
  let manager: SecretsManager;
  let victim: NodeDir | undefined;

  /** The worker holding `tenant`'s shard group. */
  const workerOf = async (tenant: string): Promise<CitusNode> => {
    const [row] = await queryOn<{ port: number }>(
      db.url,
      `SELECT n.nodeport AS port FROM pg_dist_placement pl JOIN pg_dist_node n ON n.groupid = pl.groupid
        WHERE pl.shardid = get_shard_id_for_distribution_column('tenant_secrets', $1::text)`,
      [tenant],
    );
    const node = db.nodes.find((n) => n.port === row?.port);
    if (!node || node.groupId === 0) throw new Error(`no worker placement for ${tenant}`);
    return node;
  };

  beforeAll(async () => {
    db = await citusDatabase();
    manager = createSecretsManager({
      connectionString: db.url,
      masterKey,
      actor: 'faults',
      auditSealIntervalMs: 0,
    });
    afterAll(() => manager.close());
    expect((await manager.installation.migrate({ distribute: true })).distributed).toBe(true);
  }, 240_000);

  // Whatever happens in the test, the worker is running again for what follows.
  afterAll(async () => {
    if (victim && !isRunning(victim)) await start(victim);
  }, 240_000);

  it('typed errors while it is down, the other worker unaffected; after its restart nothing acknowledged is lost, the rotation resumes, the trail verifies', async () => {
    // Tenants by worker: the rotated tenant decides which worker is stopped.
    const byWorker = new Map<number, string[]>();
    for (let i = 0; byWorker.size < 2 || [...byWorker.values()].some((l) => l.length < 4); i++) {
      const tenant = `fault-${i}`;
      const port = (await workerOf(tenant)).port;
      byWorker.set(port, [...(byWorker.get(port) ?? []), tenant]);
      if (i > 200) throw new Error('tenants did not spread over both workers');
    }
    const rotated = 'fault-0';
    const victimPort = (await workerOf(rotated)).port;
    const down = (byWorker.get(victimPort) as string[]).slice(0, 4);
    const otherPort = [...byWorker.keys()].find((p) => p !== victimPort) as number;
    const up = (byWorker.get(otherPort) as string[]).slice(0, 3);
    expect(down[0]).toBe(rotated);
    const node = nodeDir(victimPort);
    victim = node;

    // The rotated tenant's own secrets: enough for several batches.
    const ROTATED_SECRETS = 24;
    for (let i = 0; i < ROTATED_SECRETS; i++) await manager.set(rotated, `r${i}`, `rotated-${i}`);

    const acks: Attempt[] = [];
    const failures: Failure[] = [];
    let phase: Phase = 'before';
    let stop = false;
    let seq = 0;
    const times: Record<string, number> = {};
    const mark = (name: string) => {
      times[name] = Date.now();
    };

    const write = async (tenant: string, key: string, op: 'set' | 'rotate'): Promise<boolean> => {
      const attempt: Attempt = {
        tenant,
        key,
        op,
        version: op === 'set' ? 1 : 2,
        value: `${tenant}/${key}/${op}`,
        requestId: `w-${++seq}`,
        startedIn: phase,
      };
      const m = manager.withContext({ requestId: attempt.requestId });
      try {
        const { version } =
          op === 'set' ? await m.set(tenant, key, attempt.value) : await m.rotate(tenant, key, attempt.value);
        expect({ tenant, key, version }).toEqual({ tenant, key, version: attempt.version });
        acks.push(attempt);
        return true;
      } catch (error) {
        failures.push({ ...attempt, error });
        return false;
      }
    };
    /** One application loop: creates a key, rotates it, next key; after a failure, pauses and goes on. */
    const loop = async (tenant: string) => {
      for (let i = 0; !stop; i++) {
        const key = `k${i}`;
        const ok = (await write(tenant, key, 'set')) && !stop && (await write(tenant, key, 'rotate'));
        await pause(ok ? 50 : 250);
      }
    };
    const ackedIn = (tenant: string, p: Phase) =>
      acks.filter((a) => a.tenant === tenant && a.startedIn === p).length;
    const loops = [...down, ...up].map((t) => loop(t));
    try {
      await until('every loop acknowledged a write', () =>
        [...down, ...up].every((t) => ackedIn(t, 'before') > 0),
      );

      // The rotation: its first batch commits, then the worker is stopped from the progress callback,
      // so the rotation is interrupted between batches, whatever the machine's speed.
      let stopped = false;
      const interrupted = await manager
        .rotateTenantKey(rotated, {
          batchSize: 4,
          onProgress: async () => {
            if (stopped) return;
            stopped = true;
            mark('stop');
            await stopImmediately(node);
            mark('stopped');
            phase = 'down';
          },
        })
        .then(
          () => undefined,
          (error: unknown) => error,
        );
      expect(stopped).toBe(true);
      expect(interrupted).toBeInstanceOf(DatabaseUnavailableError);

      // While it is down: each call on one of its tenants fails, typed; the other worker's tenants
      // keep working (two acknowledged writes each, started while the worker was down).
      await until(
        'a failure on each tenant of the stopped worker, two writes on each of the other',
        () =>
          down.every((t) => failures.some((f) => f.tenant === t && f.startedIn === 'down')) &&
          up.every((t) => ackedIn(t, 'down') >= 2),
      );
      for (const tenant of down) {
        await expect(manager.get(tenant, 'k0')).rejects.toBeInstanceOf(DatabaseUnavailableError);
        await expect(manager.set(tenant, 'while-down', 'x')).rejects.toBeInstanceOf(DatabaseUnavailableError);
      }
      await expect(manager.rotateTenantKey(rotated)).rejects.toBeInstanceOf(DatabaseUnavailableError);
      for (const tenant of up) {
        const last = acks.filter((a) => a.tenant === tenant && a.key === 'k0').at(-1);
        expect(await manager.get(tenant, 'k0')).toBe(last?.value);
      }

      mark('start');
      await start(node);
      mark('started');
      phase = 'restarted';
      // The coordinator's connections to the worker went with it: the first calls may still fail.
      await until('a write on each tenant of the restarted worker is acknowledged', () =>
        down.every((t) => ackedIn(t, 'restarted') > 0),
      );
      mark('recovered');
    } finally {
      stop = true;
      await Promise.allSettled(loops);
    }
    await Promise.all(loops);

    // Every failure was typed: the worker unreachable or lost, reported by the coordinator.
    const classes = new Map<string, number>();
    for (const f of failures) {
      expect(f.error, `${f.op} ${f.tenant}/${f.key}`).toBeInstanceOf(TenantSecretsError);
      const name = `${(f.error as Error).name}${(f.error as { mayHaveCommitted?: boolean }).mayHaveCommitted ? ' (mayHaveCommitted)' : ''}`;
      classes.set(name, (classes.get(name) ?? 0) + 1);
    }
    expect([...classes.keys()].every((name) => name.startsWith('DatabaseUnavailableError'))).toBe(true);
    // No failure on the other worker's tenants.
    expect(failures.filter((f) => up.includes(f.tenant)).map((f) => `${f.op} ${f.tenant}/${f.key}`)).toEqual(
      [],
    );

    // Every acknowledged write reads back at its version with its value; a write that failed is
    // there exactly when it committed (it may have: the coordinator cannot tell), with its own value.
    let uncertainCommitted = 0;
    const committed = new Set(acks.map((a) => a.requestId));
    for (const a of acks) expect(await manager.get(a.tenant, a.key, { version: a.version })).toBe(a.value);
    for (const f of failures) {
      const found = await manager.get(f.tenant, f.key, { version: f.version });
      if (found === null) continue;
      expect(found).toBe(f.value);
      expect((f.error as { mayHaveCommitted?: boolean }).mayHaveCommitted, f.requestId).toBe(true);
      committed.add(f.requestId);
      uncertainCommitted++;
    }
    // The rotated tenant's secrets too.
    for (let i = 0; i < ROTATED_SECRETS; i++)
      expect(await manager.get(rotated, `r${i}`)).toBe(`rotated-${i}`);

    // The interrupted rotation resumes where it stopped and finishes: the old key destroyed, unused.
    const resumed = await manager.rotateTenantKey(rotated, { batchSize: 4 });
    expect(resumed).toMatchObject({
      keyVersion: 2,
      previousKeyVersion: 1,
      resumed: true,
      destroyedKeyVersions: [1],
    });
    const inUse = await queryOn<{ key_version: number }>(
      db.url,
      `SELECT DISTINCT key_version FROM (
         SELECT key_version FROM tenant_secrets WHERE tenant_id = $1
         UNION ALL SELECT key_version FROM tenant_secret_versions WHERE tenant_id = $1 AND encrypted_value IS NOT NULL) u
       ORDER BY key_version`,
      [rotated],
    );
    expect(inUse.map((r) => r.key_version)).toEqual([2]);
    for (let i = 0; i < ROTATED_SECRETS; i++)
      expect(await manager.get(rotated, `r${i}`)).toBe(`rotated-${i}`);

    // Every write that committed has exactly one audit record (its request id), and no other write has one.
    await until('every audit record sealed', async () => (await manager.sealAudit()).pending === 0);
    const records = await queryOn<{ request_id: string; n: number }>(
      db.url,
      `SELECT request_id, count(*)::int AS n FROM tenant_secret_audit
        WHERE chain_id = ANY ($1::text[]) AND request_id LIKE 'w-%' GROUP BY request_id`,
      [[...down, ...up]],
    );
    const audited = new Map(records.map((r) => [r.request_id, r.n]));
    expect([...committed].filter((id) => audited.get(id) !== 1)).toEqual([]);
    expect([...audited.keys()].filter((id) => !committed.has(id))).toEqual([]);

    // A full verification, without storing checkpoints (not supported distributed): every chain walked.
    const verified = await manager.verifyAudit({ checkpoint: false });
    expect(verified.problems).toEqual([]);
    expect(verified.ok).toBe(true);

    const s = (from: string, to: string) =>
      `${(((times[to] ?? 0) - (times[from] ?? 0)) / 1000).toFixed(1)} s`;
    console.log(
      [
        'distributed-faults:',
        `worker :${victimPort} stopped (pg_ctl -m immediate) in ${s('stop', 'stopped')}, down ${s('stopped', 'start')},`,
        `started (crash recovery) in ${s('start', 'started')}, first writes on each of its tenants ${s('started', 'recovered')} after;`,
        `writes acknowledged ${acks.length} (on the other worker while down: ${up.map((t) => ackedIn(t, 'down')).join('+')}),`,
        `failed ${failures.length} (${[...classes].map(([k, v]) => `${k}: ${v}`).join(', ')}),`,
        `of which committed after all ${uncertainCommitted};`,
        `rotation resumed: ${resumed.reencrypted} re-encrypted in ${resumed.batches} batches;`,
        `verifyAudit: ${verified.chains} chains, ${verified.records} records, ok`,
      ].join(' '),
    );
  });
});
