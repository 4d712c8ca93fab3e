#!/usr/bin/env node
/**
 * Failover of a real high-availability pair under load, end to end (docs/scaling.md, "High
 * availability"). Needs pg_auto_failover (`pg_autoctl`) and its PostgreSQL extension, and the built
 * library (`npm run build`): `node scripts/ha-failover.mjs`.
 *
 * 1. Starts a pg_auto_failover monitor, a primary and a synchronous standby on this machine, on free
 *    ports, in a temporary directory (run as the `postgres` user when started as root).
 * 2. Points several managers (separate pools, as separate application instances) at the formation
 *    URI the monitor gives, and runs a mixed workload on them: sets (check-and-set), gets and
 *    rotates, over several tenants, from several concurrent loops. Every acknowledged write goes into
 *    a ledger; a write that fails with `mayHaveCommitted` is resolved by reading, as docs/errors.md says.
 * 3. Kills the primary (SIGKILL of its postgres and of its pg_autoctl, as a machine lost), and keeps
 *    the workload running through the promotion of the standby.
 * 4. Checks: every acknowledged write reads back with its value at its version, no version exists
 *    that was not acknowledged, every acknowledged operation has exactly one audit record (by its
 *    request id) and no failed write has one, and `verifyAudit()` is ok.
 *
 * Prints the figures (time to promotion, client errors by type, the stall, operations acknowledged
 * and lost) and exits non-zero when a check fails. Options:
 *   --defaults       pg_auto_failover's default timeouts (the run tunes the monitor's health checks)
 *   --keep           keep the directory (data, logs) afterwards; it is always kept on failure
 *   --json FILE      also write the figures as JSON
 *   --seconds-before N / --seconds-after N   workload before the kill / after the first write that
 *                    succeeds after it (default 5 / 5)
 */
import { execFileSync, spawn } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import {
  chownSync,
  existsSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import pg from 'pg';

const { values: args } = parseArgs({
  options: {
    defaults: { type: 'boolean', default: false },
    keep: { type: 'boolean', default: false },
    json: { type: 'string' },
    'seconds-before': { type: 'string', default: '5' },
    'seconds-after': { type: 'string', default: '5' },
  },
});

const lib = await import('../dist/index.js').catch(() => {
  fail('the library is not built: run `npm run build` first');
});
const { createSecretsManager, ConflictError, DatabaseUnavailableError, TenantSecretsError } = lib;

const CLIENTS = 4;
const LOOPS_PER_CLIENT = 3;
const KEYS_PER_LOOP = 3;
const TENANTS = 6;
/** The monitor's health checks, tuned (unless --defaults); pg_auto_failover's defaults in comments. */
const TUNED_MONITOR = {
  'pgautofailover.health_check_period': 1000, // 5000 ms
  'pgautofailover.health_check_timeout': 1000, // 5000 ms
  'pgautofailover.health_check_max_retries': 1, // 2
  'pgautofailover.health_check_retry_delay': 500, // 2000 ms
  'pgautofailover.node_considered_unhealthy_timeout': 2000, // 20000 ms
  // How long the monitor keeps the promoted standby read-only, waiting for the old primary to demote
  // itself; it must stay above the keepers' network_partition_timeout (below), or a primary cut off
  // from the monitor could still accept writes while the standby does.
  'pgautofailover.primary_demote_timeout': 5000, // 30000 ms
};
/** The keepers' side of the same trade (seconds): a primary cut off from the monitor and its standby demotes itself after this. */
const TUNED_KEEPER = { 'timeout.network_partition_timeout': '3' }; // 20 s

const t0 = performance.now();
const since = (t = performance.now()) => ((t - t0) / 1000).toFixed(1);
const log = (message) => console.log(`[ha ${since()} s] ${message}`);
function fail(message) {
  console.error(`ha-failover: ${message}`);
  process.exit(1);
}

// ---------------------------------------------------------------------------------------------
// The formation

function findPgCtl() {
  if (process.env.HA_PG_CTL) return process.env.HA_PG_CTL;
  const root = '/usr/lib/postgresql';
  const versions = existsSync(root) ? readdirSync(root).filter((v) => /^\d+$/.test(v)) : [];
  for (const v of versions.sort((a, b) => Number(b) - Number(a))) {
    const control = `/usr/share/postgresql/${v}/extension/pgautofailover.control`;
    if (existsSync(control) && existsSync(`${root}/${v}/bin/pg_ctl`)) return `${root}/${v}/bin/pg_ctl`;
  }
  return undefined;
}

function freePort() {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

const asRoot = process.getuid?.() === 0;
const pgCtl = findPgCtl();
try {
  execFileSync('pg_autoctl', ['--version'], { stdio: 'ignore' });
} catch {
  fail(
    'pg_autoctl is not installed (Debian: apt-get install pg-auto-failover-cli postgresql-15-auto-failover)',
  );
}
if (!pgCtl) fail('no PostgreSQL with the pgautofailover extension found (set HA_PG_CTL to its pg_ctl)');

const dir = mkdtempSync(join(tmpdir(), 'tenant-secrets-ha-'));
if (asRoot) chownSync(dir, ...postgresIds());
const env = { ...process.env, XDG_CONFIG_HOME: join(dir, 'config'), XDG_DATA_HOME: join(dir, 'share') };
const groups = new Map(); // name → process group id of its pg_autoctl

function postgresIds() {
  const line = readFileSync('/etc/passwd', 'utf8')
    .split('\n')
    .find((l) => l.startsWith('postgres:'));
  if (!line) fail('running as root needs a `postgres` user to run PostgreSQL as');
  const [, , uid, gid] = line.split(':');
  return [Number(uid), Number(gid)];
}

function autoctl(argv, options = {}) {
  const [cmd, list] = asRoot
    ? ['runuser', ['-u', 'postgres', '--', 'pg_autoctl', ...argv]]
    : ['pg_autoctl', argv];
  if (!options.name)
    return execFileSync(cmd, list, { env, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  const out = openSync(join(dir, `${options.name}.log`), 'a');
  const child = spawn(cmd, list, { env, detached: true, stdio: ['ignore', out, out] });
  groups.set(options.name, child.pid);
  child.unref();
  return child;
}

async function until(what, check, timeoutMs = 120_000, everyMs = 200) {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    try {
      const result = await check();
      if (result) return result;
    } catch {
      // not yet
    }
    if (performance.now() > deadline) throw new Error(`timed out waiting for ${what} (logs: ${dir})`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

async function sql(url, text, params = []) {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 2000 });
  client.on('error', () => undefined);
  await client.connect();
  try {
    return (await client.query(text, params)).rows;
  } finally {
    await client.end().catch(() => undefined);
  }
}

const ports = { monitor: await freePort(), node1: await freePort(), node2: await freePort() };
const monitorUrl = `postgres://autoctl_node@127.0.0.1:${ports.monitor}/pg_auto_failover?sslmode=disable`;
const superUrl = (port, db = 'postgres') => `postgres://postgres@127.0.0.1:${port}/${db}`;
const nodeStates = () =>
  sql(monitorUrl, 'SELECT nodename, reportedstate, goalstate FROM pgautofailover.node ORDER BY nodeid');

async function startFormation() {
  log(`starting a pg_auto_failover formation in ${dir} (${pgCtl})`);
  autoctl(
    [
      'create',
      'monitor',
      '--pgctl',
      pgCtl,
      '--pgdata',
      join(dir, 'monitor'),
      '--pgport',
      String(ports.monitor),
      '--hostname',
      '127.0.0.1',
      '--auth',
      'trust',
      '--no-ssl',
      '--run',
    ],
    { name: 'monitor' },
  );
  await until('the monitor', () => sql(monitorUrl, 'SELECT 1 FROM pgautofailover.formation'));
  if (!args.defaults) {
    for (const [name, value] of Object.entries(TUNED_MONITOR)) {
      await sql(superUrl(ports.monitor, 'pg_auto_failover'), `ALTER SYSTEM SET ${name} = ${value}`);
    }
    await sql(superUrl(ports.monitor, 'pg_auto_failover'), 'SELECT pg_reload_conf()');
  }
  const monitorSettings = await sql(
    superUrl(ports.monitor, 'pg_auto_failover'),
    "SELECT name, setting FROM pg_settings WHERE name LIKE 'pgautofailover.%' ORDER BY name",
  );
  for (const node of ['node1', 'node2']) {
    autoctl(
      [
        'create',
        'postgres',
        '--pgctl',
        pgCtl,
        '--pgdata',
        join(dir, node),
        '--pgport',
        String(ports[node]),
        '--listen',
        '127.0.0.1',
        '--hostname',
        '127.0.0.1',
        '--name',
        node,
        '--auth',
        'trust',
        '--no-ssl',
        '--monitor',
        monitorUrl,
        '--run',
      ],
      { name: node },
    );
    // The first node registered becomes the primary: node1, once the monitor has it (the standby can
    // be created while node1 is still initialising: it waits for it).
    if (node === 'node1') {
      await until('the first node to register', async () =>
        (await nodeStates()).some((n) => n.nodename === 'node1'),
      );
    }
  }
  await until(
    'a primary and a synchronous secondary',
    async () => {
      const states = await nodeStates();
      return (
        states.find((n) => n.nodename === 'node1')?.reportedstate === 'primary' &&
        states.find((n) => n.nodename === 'node2')?.reportedstate === 'secondary'
      );
    },
    180_000,
  );
  if (!args.defaults) {
    for (const node of ['node1', 'node2']) {
      for (const [name, value] of Object.entries(TUNED_KEEPER)) {
        autoctl(['config', 'set', '--pgdata', join(dir, node), name, value]);
      }
      autoctl(['reload', '--pgdata', join(dir, node)]);
    }
  }
  const [{ uri }] = await sql(
    monitorUrl,
    "SELECT pgautofailover.formation_uri('default', 'default', 'disable') AS uri",
  );
  const [{ standbys }] = await sql(superUrl(ports.node1), 'SHOW synchronous_standby_names').then((rows) =>
    rows.map((r) => ({ standbys: r.synchronous_standby_names })),
  );
  log(`formation ready: ${uri} (synchronous_standby_names = ${standbys})`);
  const keeperSettings = Object.fromEntries(
    Object.keys(TUNED_KEEPER).map((name) => [
      name,
      autoctl(['config', 'get', '--pgdata', join(dir, 'node2'), name]).trim(),
    ]),
  );
  return { uri, standbys, monitorSettings, keeperSettings };
}

/** SIGKILL of the node's postgres and of its pg_autoctl (which would otherwise restart postgres in place). */
function killNode(node) {
  const postmaster = Number(readFileSync(join(dir, node, 'postmaster.pid'), 'utf8').split('\n')[0]);
  const group = Number(readFileSync(`/proc/${postmaster}/stat`, 'utf8').split(') ')[1].split(' ')[2]);
  if (group === process.pid || group !== groups.get(node)) {
    throw new Error(`postgres ${postmaster} of ${node} is not in its pg_autoctl's process group`);
  }
  process.kill(postmaster, 'SIGKILL');
  process.kill(-group, 'SIGKILL');
  groups.delete(node);
  return postmaster;
}

async function stopFormation() {
  for (const [name, group] of [...groups].reverse()) {
    try {
      process.kill(-group, 'SIGTERM');
    } catch {
      groups.delete(name);
    }
  }
  const deadline = performance.now() + 20_000;
  while (groups.size > 0 && performance.now() < deadline) {
    for (const [name, group] of groups) {
      try {
        process.kill(-group, 0);
      } catch {
        groups.delete(name);
      }
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  for (const group of groups.values()) {
    try {
      process.kill(-group, 'SIGKILL');
    } catch {
      // gone
    }
  }
  // A postgres left behind by a killed pg_autoctl (its own group) must not outlive the run.
  for (const node of ['monitor', 'node1', 'node2']) {
    const pidFile = join(dir, node, 'postmaster.pid');
    if (!existsSync(pidFile)) continue;
    const pid = Number(readFileSync(pidFile, 'utf8').split('\n')[0]);
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // not running
    }
  }
}

// ---------------------------------------------------------------------------------------------
// The workload

const ledger = { writes: [], reads: [], failedWrites: [], unresolvedReads: [] };
const errorsByType = new Map();
const anomalies = [];
let uncertainNotCommitted = 0;
const acks = [];
let stopping = false;

function countError(error, phase) {
  const type =
    error instanceof TenantSecretsError
      ? `${error.constructor.name}${error.mayHaveCommitted ? ' (mayHaveCommitted)' : ''}`
      : `untyped ${error?.name ?? typeof error}`;
  const entry = errorsByType.get(type) ?? {
    count: 0,
    phases: new Set(),
    first: Infinity,
    last: 0,
    messages: new Map(),
  };
  entry.count++;
  entry.phases.add(phase);
  const at = performance.now() - (killedAt ?? 0);
  entry.first = Math.min(entry.first, at);
  entry.last = Math.max(entry.last, at);
  // Messages name hosts and ports, which differ per run: counted by their shape.
  const shape = String(error?.message)
    .replace(/127\.0\.0\.1:\d+/g, 'HOST')
    .replace(/\d+(\.\d+)? s\b/g, 'N s');
  entry.messages.set(shape, (entry.messages.get(shape) ?? 0) + 1);
  errorsByType.set(type, entry);
  if (!(error instanceof TenantSecretsError)) anomalies.push(`untyped error: ${error?.stack ?? error}`);
  return type;
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
let phase = 'before the kill';
let killedAt;

/** Reads until the database answers (each read is an operation of its own, audited). */
async function readUntilAnswered(m, slot) {
  const deadline = performance.now() + 120_000;
  for (;;) {
    if (performance.now() > deadline)
      throw new Error(`no answer for 120 s reading ${slot.tenant}/${slot.key}`);
    const requestId = randomUUID();
    try {
      const found = await m.getWithVersion(slot.tenant, slot.key, { context: { requestId } });
      ledger.reads.push({ ...slot, requestId });
      acks.push(performance.now());
      return found;
    } catch (error) {
      countError(error, phase);
      if (error instanceof DatabaseUnavailableError && error.mayHaveCommitted) {
        ledger.unresolvedReads.push(requestId);
      }
      await sleep(100);
    }
  }
}

async function workLoop(m, slots, random) {
  while (!stopping) {
    const slot = slots[Math.floor(random() * slots.length)];
    const roll = random();
    const op = slot.version === 0 ? 'set' : roll < 0.4 ? 'get' : roll < 0.75 ? 'set' : 'rotate';
    const requestId = randomUUID();
    const context = { requestId };
    const started = performance.now();
    if (op === 'get') {
      try {
        const found = await m.getWithVersion(slot.tenant, slot.key, { context });
        ledger.reads.push({ tenant: slot.tenant, key: slot.key, requestId });
        acks.push(performance.now());
        if (found?.version !== slot.version || found?.value !== slot.value) {
          anomalies.push(
            `read ${slot.tenant}/${slot.key}: version ${found?.version} where the last acknowledged write made ${slot.version}`,
          );
        }
      } catch (error) {
        countError(error, phase);
        if (error instanceof DatabaseUnavailableError && error.mayHaveCommitted) {
          ledger.unresolvedReads.push(requestId);
        }
        await sleep(100);
      }
      continue;
    }
    const value = `${op} ${requestId}`;
    const expected = slot.version;
    try {
      const result =
        op === 'set'
          ? await m.set(slot.tenant, slot.key, value, { ifVersion: expected, context })
          : await m.rotate(slot.tenant, slot.key, value, { expectedVersion: expected, context });
      acknowledge(slot, op, value, result.version, requestId, 'answered', started);
    } catch (error) {
      const type = countError(error, phase);
      if (error instanceof ConflictError)
        anomalies.push(`conflict on ${slot.tenant}/${slot.key}, which only this loop writes`);
      if (error instanceof DatabaseUnavailableError && error.mayHaveCommitted) {
        // docs/errors.md: read, and compare with what this write would have made.
        const found = await readUntilAnswered(m, slot);
        if (found?.version === expected + 1 && found.value === value) {
          acknowledge(slot, op, value, found.version, requestId, 'resolved by reading', started);
          continue;
        }
        if (found?.version !== expected)
          anomalies.push(`after an uncertain ${op} of ${slot.tenant}/${slot.key}: version ${found?.version}`);
        uncertainNotCommitted++;
      }
      ledger.failedWrites.push({ tenant: slot.tenant, key: slot.key, requestId, type });
      await sleep(100);
    }
  }
}

function acknowledge(slot, op, value, version, requestId, how, started) {
  if (version !== slot.version + 1) {
    anomalies.push(`${op} of ${slot.tenant}/${slot.key} made version ${version} after ${slot.version}`);
  }
  slot.version = version;
  slot.value = value;
  const at = performance.now();
  ledger.writes.push({ tenant: slot.tenant, key: slot.key, op, value, version, requestId, how, at, started });
  acks.push(at);
}

/** Runs `work` over `items`, a few at a time (the verifier's pool has 4 connections). */
async function inParallel(items, work, width = 4) {
  let next = 0;
  await Promise.all(
    Array.from({ length: width }, async () => {
      while (next < items.length) await work(items[next++]);
    }),
  );
}

function seeded(seed) {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

// ---------------------------------------------------------------------------------------------
// The run

const masterKey = randomBytes(32).toString('base64');
const managers = [];
let passed = false;
const figures = {};
try {
  const formation = await startFormation();
  figures.formationStartSeconds = Number(since());
  // node-postgres reads sslmode=prefer as "require"; this formation has no TLS (--no-ssl), hence
  // sslmode=disable in the URI asked of the monitor. The user is the formation's superuser.
  const uri = formation.uri.replace('postgres://', 'postgres://postgres@');
  const options = { connectionString: uri, masterKey, maxVersions: 1000, maxConnections: 4, env: {} };
  const admin = createSecretsManager({ ...options, actor: 'ha-admin' });
  managers.push(admin);
  await admin.installation.migrate();

  const slots = [];
  const loops = [];
  for (let c = 0; c < CLIENTS; c++) {
    const m = createSecretsManager({ ...options, actor: `client-${c}` });
    managers.push(m);
    for (let l = 0; l < LOOPS_PER_CLIENT; l++) {
      const mine = [];
      for (let k = 0; k < KEYS_PER_LOOP; k++) {
        const n = (c * LOOPS_PER_CLIENT + l) * KEYS_PER_LOOP + k;
        mine.push({ tenant: `tenant-${n % TENANTS}`, key: `key-${c}-${l}-${k}`, version: 0, value: null });
      }
      slots.push(...mine);
      loops.push(workLoop(m, mine, seeded(c * 100 + l + 1)));
    }
  }
  log(
    `workload: ${CLIENTS} managers × ${LOOPS_PER_CLIENT} loops, ${slots.length} secrets over ${TENANTS} tenants`,
  );
  await sleep(Number(args['seconds-before']) * 1000);

  // Under load the tuned health checks may already have failed over: kill whichever node is primary now.
  const roles = await until('one primary and one secondary', async () => {
    const states = await nodeStates();
    const primary = states.find((n) => n.reportedstate === 'primary' && n.goalstate === 'primary');
    const standby = states.find((n) => n.reportedstate === 'secondary' && n.goalstate === 'secondary');
    return primary && standby && { primary: primary.nodename, standby: standby.nodename };
  });
  const acksBeforeKill = acks.length;
  killedAt = performance.now();
  phase = 'after the kill';
  const postmaster = killNode(roles.primary);
  log(
    `killed the primary (${roles.primary}: postgres ${postmaster} and its pg_autoctl) after ${acksBeforeKill} acknowledged operations`,
  );

  // The standby's own view: when it leaves recovery, and when pg_auto_failover lets it take writes
  // (until then it keeps default_transaction_read_only on, so that target_session_attrs=read-write
  // clients do not write to it while the old primary may still be alive).
  let promotedAt;
  const writableAt = await until(
    'the standby to be promoted and writable',
    async () => {
      const [row] = await sql(
        superUrl(ports[roles.standby]),
        "SELECT pg_is_in_recovery() AS recovery, current_setting('default_transaction_read_only') AS ro",
      );
      if (!row.recovery) promotedAt ??= performance.now();
      return !row.recovery && row.ro === 'off' && performance.now();
    },
    180_000,
    100,
  );
  log(
    `${roles.standby} promoted ${((promotedAt - killedAt) / 1000).toFixed(1)} s after the kill, writable after ${((writableAt - killedAt) / 1000).toFixed(1)} s`,
  );
  const firstWriteAfter = await until(
    'a write sent after the kill to be acknowledged',
    () => ledger.writes.find((w) => w.started > killedAt)?.at,
    120_000,
    50,
  );
  log(
    `first write sent after the kill acknowledged ${((firstWriteAfter - killedAt) / 1000).toFixed(1)} s after it`,
  );
  phase = 'after promotion';
  await sleep(Number(args['seconds-after']) * 1000);
  stopping = true;
  await Promise.all(loops);
  const states = await nodeStates();
  log(`monitor: ${states.map((n) => `${n.nodename} ${n.reportedstate}/${n.goalstate}`).join(', ')}`);

  // ------------------------------------------------------------------- checks, on a fresh pool
  const checksStarted = performance.now();
  const verifier = createSecretsManager({ ...options, actor: 'ha-verifier' });
  managers.push(verifier);
  for (let i = 0; i < 20; i++) {
    const sealed = await verifier.auditTrail.seal({ wait: true });
    if (sealed.pending === 0) break;
  }
  const verification = await verifier.auditTrail.verify();

  let lost = 0;
  const wrong = [];
  await inParallel(ledger.writes, async (w) => {
    const found = await verifier.getWithVersion(w.tenant, w.key, { version: w.version });
    if (found === null) lost++;
    else if (found.value !== w.value) wrong.push(`${w.tenant}/${w.key} v${w.version}`);
  });
  let phantomVersions = 0;
  await inParallel(slots, async (slot) => {
    const versions = await verifier.versions(slot.tenant, slot.key);
    const acknowledged = ledger.writes.filter((w) => w.tenant === slot.tenant && w.key === slot.key).length;
    if (versions.length > acknowledged) phantomVersions += versions.length - acknowledged;
    const current = await verifier.getWithVersion(slot.tenant, slot.key);
    if (slot.version > 0 && (current?.version !== slot.version || current?.value !== slot.value)) {
      wrong.push(`${slot.tenant}/${slot.key} current`);
    }
  });

  const records = new Map();
  for (let t = 0; t < TENANTS; t++) {
    let cursor;
    do {
      const page = await verifier.auditTrail.query(`tenant-${t}`, { limit: 1000, ...(cursor && { cursor }) });
      for (const r of page.records) {
        if (r.requestId) records.set(r.requestId, [...(records.get(r.requestId) ?? []), r]);
      }
      cursor = page.nextCursor;
    } while (cursor);
  }
  const auditProblems = [];
  for (const op of [...ledger.writes, ...ledger.reads]) {
    const found = records.get(op.requestId) ?? [];
    if (found.length !== 1 || found[0].outcome !== 'success') {
      auditProblems.push(
        `${op.requestId}: ${found.length} record(s) ${found.map((r) => r.outcome).join(',')}`,
      );
    }
  }
  for (const f of ledger.failedWrites) {
    if (records.has(f.requestId)) auditProblems.push(`failed write ${f.requestId} has an audit record`);
  }
  const auditedUnansweredReads = ledger.unresolvedReads.filter((id) => records.has(id)).length;

  // ------------------------------------------------------------------- figures
  const sorted = [...acks].sort((a, b) => a - b);
  let stall = 0;
  let stallFrom = 0;
  for (let i = 1; i < sorted.length; i++) {
    if (sorted[i] - sorted[i - 1] > stall) {
      stall = sorted[i] - sorted[i - 1];
      stallFrom = sorted[i - 1];
    }
  }
  Object.assign(figures, {
    pgAutoFailoverTimeouts: args.defaults ? 'defaults' : 'tuned',
    monitorSettings: Object.fromEntries(formation.monitorSettings.map((s) => [s.name, s.setting])),
    synchronousStandbyNames: formation.standbys,
    keeperSettings: formation.keeperSettings,
    secondsToPromotion: Number(((promotedAt - killedAt) / 1000).toFixed(2)),
    secondsToWritable: Number(((writableAt - killedAt) / 1000).toFixed(2)),
    secondsToFirstWriteAfterKill: Number(((firstWriteAfter - killedAt) / 1000).toFixed(2)),
    longestStallSeconds: Number((stall / 1000).toFixed(2)),
    stallStartsSecondsAfterKill: Number(((stallFrom - killedAt) / 1000).toFixed(2)),
    acknowledged: {
      writes: ledger.writes.length,
      writesResolvedByReading: ledger.writes.filter((w) => w.how === 'resolved by reading').length,
      uncertainWritesFoundNotCommitted: uncertainNotCommitted,
      reads: ledger.reads.length,
      beforeKill: acksBeforeKill,
    },
    failedWritesNotCommitted: ledger.failedWrites.length,
    readsUnansweredButAudited: auditedUnansweredReads,
    clientErrors: Object.fromEntries(
      [...errorsByType].map(([type, e]) => [
        type,
        {
          count: e.count,
          when: [...e.phases].join(', '),
          secondsAfterKill: [Number((e.first / 1000).toFixed(2)), Number((e.last / 1000).toFixed(2))],
          messages: Object.fromEntries(e.messages),
        },
      ]),
    ),
    lostWrites: lost,
    wrongValues: wrong.length,
    phantomVersions,
    auditProblems: auditProblems.length,
    verifyAudit: { ok: verification.ok, chains: verification.chains, records: verification.records },
    anomalies: anomalies.length,
    checksSeconds: Number(((performance.now() - checksStarted) / 1000).toFixed(1)),
    totalSeconds: Number(since()),
  });
  const checks = [
    ['every acknowledged write reads back at its version', lost === 0 && wrong.length === 0],
    ['no version exists that was not acknowledged', phantomVersions === 0],
    [
      'each acknowledged operation has exactly one audit record; failed writes none',
      auditProblems.length === 0,
    ],
    ['verifyAudit() is ok', verification.ok],
    [
      'every client error is typed, no conflict, reads saw the last acknowledged write',
      anomalies.length === 0,
    ],
    ['the workload went on after the failover', ledger.writes.some((w) => w.started > writableAt)],
  ];
  console.log(JSON.stringify(figures, null, 2));
  for (const a of anomalies.slice(0, 10)) console.log(`anomaly: ${a}`);
  for (const p of auditProblems.slice(0, 10)) console.log(`audit: ${p}`);
  for (const [name, ok] of checks) console.log(`${ok ? 'ok  ' : 'FAIL'} ${name}`);
  const failed = checks.filter(([, ok]) => !ok).length;
  console.log(`ha-failover: ${checks.length - failed} passed, ${failed} failed`);
  if (args.json) writeFileSync(args.json, `${JSON.stringify(figures, null, 2)}\n`);
  passed = failed === 0;
} catch (error) {
  console.error(error);
} finally {
  stopping = true;
  for (const m of managers) await m.close().catch(() => undefined);
  await stopFormation();
  if (passed && !args.keep) rmSync(dir, { recursive: true, force: true });
  else log(`kept ${dir} (data and logs)`);
}
process.exit(passed ? 0 : 1);
