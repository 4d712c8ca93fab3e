// Child process for the rolling-upgrade test (test/schema/rolling-upgrade.test.ts): the library of a
// released version (RELEASE_DIR/dist/index.js) serving traffic. Plain JavaScript run by node, so it
// loads that release's own build and nothing of this checkout.
//
//   WORKER_MODE=migrate  install that release's schema (its own migrate()) and exit
//   WORKER_MODE=serve    fill this worker's secrets in every tenant, report `ready`, then run a
//                        set/get/rotate mix until told to stop; answer with what it saw
//
// Worker n owns the keys `w<n>-a` and `w<n>-b` of every tenant: nobody else writes them, so each
// read knows the value it must return, and every acknowledged write is reported back (tenant, key,
// version, value) for the test to read after the upgrade with this release's library.
import { pathToFileURL } from 'node:url';

const env = process.env;
const lib = await import(pathToFileURL(`${env.RELEASE_DIR}/dist/index.js`).href);
const manager = lib.createSecretsManager({
  connectionString: env.WORKER_DATABASE_URL,
  masterKey: env.WORKER_MASTER_KEY,
  actor: `worker-${env.WORKER_ID ?? 'migrate'}`,
  maxConnections: 2,
});

if (env.WORKER_MODE === 'migrate') {
  await manager.migrate();
  await manager.close();
  process.exit(0);
}

const id = Number(env.WORKER_ID);
const tenants = Array.from(
  { length: Number(env.WORKER_TENANTS) },
  (_, i) => `tenant-${String(i).padStart(3, '0')}`,
);
const keys = [`w${id}-a`, `w${id}-b`];
/** Acknowledged writes: [tenant, key, version, value]. */
const acked = [];
/** The value each (tenant, key) must read as: its last acknowledged write. */
const current = new Map();
const errors = [];
const mismatches = [];
/** [started, ended] of every operation during the loop (ms since the epoch). */
const ops = [];
let seq = 0;
let stopping = false;

const describe = (error) => ({
  name: error?.constructor?.name ?? typeof error,
  code: error?.code,
  sqlState: error?.sqlState,
  retryable: error?.retryable,
  message: String(error?.message ?? error).slice(0, 300),
  // The server's own message (a test database holds nothing secret), to tell what went wrong.
  cause: error?.cause?.message ? String(error.cause.message).slice(0, 200) : undefined,
  at: Date.now(),
});

async function write(kind, tenant, key) {
  const value = `${tenant}/${key}/${id}/${seq++}/${Math.random().toString(36).slice(2)}`;
  const result =
    kind === 'set' ? await manager.set(tenant, key, value) : await manager.rotate(tenant, key, value);
  acked.push([tenant, key, result.version, value]);
  current.set(`${tenant}\u0000${key}`, value);
}

for (const tenant of tenants) for (const key of keys) await write('set', tenant, key);
process.send?.({ type: 'ready' });
process.on('message', (message) => {
  if (message?.type === 'stop') stopping = true;
});

while (!stopping) {
  const tenant = tenants[Math.floor(Math.random() * tenants.length)];
  const key = keys[Math.floor(Math.random() * keys.length)];
  const roll = Math.random();
  const started = Date.now();
  try {
    if (roll < 0.5) {
      const value = await manager.get(tenant, key);
      const expected = current.get(`${tenant}\u0000${key}`);
      if (value !== expected) mismatches.push({ tenant, key, expected, value, at: Date.now() });
    } else {
      await write(roll < 0.8 ? 'set' : 'rotate', tenant, key);
    }
  } catch (error) {
    errors.push(describe(error));
    // An unacknowledged write may or may not have committed: learn the current value again.
    try {
      current.set(`${tenant}\u0000${key}`, await manager.get(tenant, key));
    } catch (again) {
      errors.push(describe(again));
    }
  }
  ops.push([started, Date.now()]);
}

await manager.close();
process.send?.({ type: 'done', acked, errors, mismatches, ops }, () => process.exit(0));
