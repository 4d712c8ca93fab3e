// Child process for test/db/kill-window.test.ts. A crash (Node's "Unhandled 'error' event") ends
// this process with a non-zero exit code, which the parent checks; nothing here catches one.
//
// Between the library and PostgreSQL sits a small TCP proxy. At the Nth ReadyForQuery the server
// sends (counted over every connection, the startup's included), the proxy holds that message back,
// terminates the backend (pg_terminate_backend), waits for the server's FATAL 57P01 and the end of
// the connection, and only then writes ReadyForQuery and the FATAL together, in one write. The client
// reads both in one chunk, so it handles them in one synchronous run: whatever it does when a
// statement (or the connection's startup) completes, it does with no I/O between that and the
// FATAL. That is the narrowest window a real kill can hit, made deterministic. N runs from 1 until a
// run of the operation no longer reaches N, so every statement boundary of the operation is hit.
import * as net from 'node:net';
import pg from 'pg';
import { createSecretsManager, type SecretsManager, TenantSecretsError } from '../../src/index.js';

interface Config {
  /** Direct URL of the test database (the proxy connects there; the admin connection too). */
  url: string;
  masterKey: string;
  /** `owned`: the library's own pool; `callerPool`: a pg.Pool of the caller's, with no 'error' listener. */
  pool: 'owned' | 'callerPool';
  operation: 'rotateTenantKey' | 'getMany';
  tenant: string;
  keys: string[];
  /** Stop after this many kill points (a guard against a run that never ends). */
  maxPoints: number;
}

const config = JSON.parse(process.env.KILL_WINDOW_CONFIG ?? '{}') as Config;
const emit = (event: Record<string, unknown>) => process.stdout.write(`${JSON.stringify(event)}\n`);
const target = new URL(config.url);

const admin = new pg.Client({ connectionString: config.url, application_name: 'kill-window-admin' });
admin.on('error', () => undefined);
await admin.connect();

let readyCount = 0;
let killAt = 0;
let killed = 0;
/** Kill points reached (the proxy held a ReadyForQuery back), counted when reached. */
let reached = 0;
const kills: Promise<unknown>[] = [];

function concat(parts: Buffer[]): Buffer {
  return parts.length === 1 ? (parts[0] as Buffer) : Buffer.concat(parts);
}

const proxy = net.createServer((down) => {
  const up = net.connect(Number(target.port || 5432), target.hostname);
  down.on('data', (data) => up.write(data));
  down.on('end', () => up.end());
  down.on('error', () => up.destroy());
  up.on('error', () => down.destroy());
  let pending: Buffer = Buffer.alloc(0);
  let pid: number | undefined;
  let held: Buffer[] | undefined;
  up.on('data', (chunk: Buffer) => {
    if (held) {
      held.push(chunk);
      return;
    }
    pending = concat([pending, chunk]);
    const out: Buffer[] = [];
    while (pending.length >= 5) {
      const length = pending.readInt32BE(1);
      if (pending.length < 1 + length) break;
      const message = pending.subarray(0, 1 + length);
      pending = pending.subarray(1 + length);
      const type = String.fromCharCode(message[0] ?? 0);
      if (type === 'K') pid = message.readInt32BE(5);
      if (type === 'Z' && ++readyCount === killAt && pid !== undefined) {
        reached++;
        held = [message, pending];
        pending = Buffer.alloc(0);
        const victim = pid;
        const point = killAt;
        kills.push(
          admin
            .query('SELECT pg_terminate_backend($1, 10000) AS ok', [victim])
            .then((r) => {
              if (r.rows[0]?.ok) killed++;
              else emit({ t: 'injector-error', message: `backend ${victim} not terminated`, point });
            })
            .catch((error: unknown) => emit({ t: 'injector-error', message: String(error), point })),
        );
        break;
      }
      out.push(message);
    }
    if (out.length > 0) down.write(concat(out));
  });
  // The FATAL has arrived and the server closed: ReadyForQuery and the FATAL go out in one write.
  up.on('close', () => {
    if (held) down.end(concat(held));
    else down.end();
  });
});
await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
const proxied = new URL(config.url);
proxied.hostname = '127.0.0.1';
proxied.port = String((proxy.address() as net.AddressInfo).port);

const value = (key: string) => `value ${config.tenant}/${key} ✓`;

function managerFor(url: string, pool?: pg.Pool): SecretsManager {
  return createSecretsManager({
    ...(pool ? { pool } : { connectionString: url, maxConnections: 3 }),
    masterKey: config.masterKey,
    auditSealIntervalMs: 0,
    env: {},
  });
}

async function once(m: SecretsManager): Promise<void> {
  if (config.operation === 'rotateTenantKey') {
    await m.rotateTenantKey(config.tenant, { batchSize: 2 });
  } else {
    const read = await m.getMany(config.tenant, config.keys);
    for (const key of config.keys) {
      if (read[key] !== value(key)) throw new Error(`read back ${key} differs`);
    }
  }
}

const codes = new Map<string, number>();
let points = 0;
for (killAt = 1; points < config.maxPoints; killAt++) {
  readyCount = 0;
  const before = reached;
  // A fresh pool each time: the count starts at the first connection's startup.
  const callerPool =
    config.pool === 'callerPool' ? new pg.Pool({ connectionString: proxied.toString(), max: 3 }) : undefined;
  const m = managerFor(proxied.toString(), callerPool);
  let attempts = 0;
  for (;;) {
    attempts++;
    try {
      await once(m);
      break;
    } catch (error) {
      const typed = error instanceof TenantSecretsError;
      const code = typed ? error.code : String((error as Error)?.name);
      codes.set(code, (codes.get(code) ?? 0) + 1);
      emit({
        t: 'error',
        killAt,
        typed,
        code,
        mayHaveCommitted: (error as { mayHaveCommitted?: unknown }).mayHaveCommitted,
        message: String((error as Error)?.message).slice(0, 200),
      });
      if (!typed || attempts > 5) throw error;
    }
  }
  await m.close();
  await callerPool?.end();
  if (reached === before) break;
  points++;
}

await Promise.all(kills);
// Everything reads back over a connection without faults.
const check = managerFor(config.url);
const read = await check.getMany(config.tenant, config.keys);
const mismatches = config.keys.filter((key) => read[key] !== value(key)).length;
await check.close();
await admin.end();
proxy.close();
emit({ t: 'done', points, killed, mismatches, codes: Object.fromEntries(codes) });
