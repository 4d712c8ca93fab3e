// Child process for the fault-injection tests (test/faults.test.ts). It runs one multi-statement
// operation of the library, and terminates the PostgreSQL backend under it at pseudo-random points
// (from a fixed seed): a statement is picked with probability FAULT_P, and its backend is terminated
// with pg_terminate_backend from a separate admin connection, either before the statement is sent
// (the checked-out connection drops while idle inside the operation) or right after it is sent (the
// connection drops while the statement runs or waits on a lock). Every error the operation throws is
// reported on stdout as a JSON line, and the operation is run again (it must resume) until it
// succeeds. Nothing here catches an uncaught exception: a crash (e.g. Node's "Unhandled 'error'
// event") ends the process with a non-zero exit code, which the parent test checks.
import { createWriteStream } from 'node:fs';
import pg from 'pg';
import { createSecretsManager, type SecretsManager, TenantSecretsError } from '../../src/index.js';

interface Config {
  scenario: string;
  url: string;
  adminUrl: string;
  masterKey: string;
  previousMasterKeys?: string[];
  seed: number;
  /** Probability that a statement of the operation is a fault point. */
  p: number;
  /** Faults injected at most (then the operation is left to finish). */
  maxFaults: number;
  maxAttempts: number;
  /** Statements (1-based, counted over the whole run) that are fault points whatever the draw. */
  forced?: { at: number; mode: 'before' | 'during'; delayMs?: number }[];
  /** Random faults only from this statement on (default 1). */
  randomFrom?: number;
  /** Scenario parameters. */
  params: Record<string, unknown>;
}

const config = JSON.parse(process.env.FAULT_CONFIG ?? '{}') as Config;

function emit(event: Record<string, unknown>): void {
  process.stdout.write(`${JSON.stringify(event)}\n`);
}

/** mulberry32: a small deterministic PRNG. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const random = prng(config.seed);
const admin = new pg.Client({ connectionString: config.adminUrl, application_name: 'fault-injector' });
await admin.connect();
let adminQueue: Promise<unknown> = Promise.resolve();
/** Serialises admin statements (one connection). */
function adminRun<T>(work: () => Promise<T>): Promise<T> {
  const next = adminQueue.then(work, work);
  adminQueue = next.catch(() => undefined);
  return next;
}

let armed = false;
/** Statements of the caller's own (not the library's): never fault points. */
let callerStatement = false;
let statements = 0;
let faults = 0;
let budget = config.maxFaults;
const forced = new Map((config.forced ?? []).map((f) => [f.at, f]));

async function terminate(pid: number, wait: boolean, delayMs = 0): Promise<void> {
  if (delayMs > 0) await new Promise((resolve) => setTimeout(resolve, delayMs));
  const rows = await adminRun(() =>
    admin.query<{ ok: boolean }>(
      wait ? 'SELECT pg_terminate_backend($1, 10000) AS ok' : 'SELECT pg_terminate_backend($1) AS ok',
      [pid],
    ),
  );
  if (rows.rows[0]?.ok) faults++;
}

type QueryFn = (...args: unknown[]) => unknown;
const originalQuery = pg.Client.prototype.query as unknown as QueryFn;
(pg.Client.prototype as unknown as { query: QueryFn }).query = function (
  this: pg.Client,
  ...args: unknown[]
) {
  if (this === admin || !armed || callerStatement) return originalQuery.apply(this, args);
  statements++;
  const pid = (this as unknown as { processID?: number }).processID;
  const force = forced.get(statements);
  const draw = random();
  const mode: 'before' | 'during' = force?.mode ?? (random() < 0.5 ? 'before' : 'during');
  const drawn = statements >= (config.randomFrom ?? 1) && budget > 0 && draw < config.p;
  if (pid === undefined || (!force && !drawn)) return originalQuery.apply(this, args);
  budget--;
  emit({ t: 'fault', statement: statements, mode });
  if (mode === 'during') {
    const result = originalQuery.apply(this, args);
    void terminate(pid, false, force?.delayMs).catch((error: unknown) =>
      emit({ t: 'injector-error', message: String(error) }),
    );
    return result;
  }
  // Before: the backend is gone (the client sees its connection drop while idle), then the statement is sent.
  const sent = terminate(pid, true)
    .catch((error: unknown) => emit({ t: 'injector-error', message: String(error) }))
    .then(() => originalQuery.apply(this, args));
  const first = args[0] as { submit?: unknown } | undefined;
  if (first && typeof first.submit === 'function') return first;
  if (typeof args[args.length - 1] === 'function') return undefined;
  return sent;
};

/** An error of a statement the caller sent itself (BEGIN, COMMIT), not of the library. */
class CallerStatementError extends Error {
  constructor(readonly original: unknown) {
    super(`caller statement failed: ${String((original as Error)?.message ?? original)}`);
  }
}

function describeError(error: unknown): Record<string, unknown> {
  if (error instanceof CallerStatementError) return { ...describeError(error.original), caller: true };
  const e = error as { code?: unknown; mayHaveCommitted?: unknown; message?: unknown; cause?: unknown };
  return {
    name: error instanceof Error ? error.name : typeof error,
    code: e?.code,
    typed: error instanceof TenantSecretsError,
    mayHaveCommitted: e?.mayHaveCommitted,
    message: String(e?.message ?? error).slice(0, 300),
    causeCode: (e?.cause as { code?: unknown } | undefined)?.code,
  };
}

function manager(options: { masterKey?: string; previous?: string[] } = {}): SecretsManager {
  return createSecretsManager({
    connectionString: config.url,
    masterKey: options.masterKey ?? config.masterKey,
    previousMasterKeys: options.previous ?? config.previousMasterKeys ?? [],
    actor: 'fault-child',
    auditSealIntervalMs: 0,
    maxConnections: 4,
    env: {},
  });
}

const value = (tenant: string, key: string) => `value ${tenant}/${key} ✓`;

/** Keeps retrying one call until it succeeds (the attempt loop below retries whole operations). */
async function untilDone<T>(work: () => Promise<T>, onError?: (error: unknown) => Promise<void>): Promise<T> {
  for (let i = 0; ; i++) {
    try {
      return await work();
    } catch (error) {
      emit({ t: 'error', inner: true, ...describeError(error) });
      if (!(error instanceof TenantSecretsError) || i >= config.maxAttempts) throw error;
      await onError?.(error);
    }
  }
}

const p = config.params;
const m = manager();
/** One run of the scenario's operation; throws on a fault, and is called again to resume. */
let operation: () => Promise<unknown>;
switch (config.scenario) {
  case 'rotateMasterKey':
    operation = () => m.rotateMasterKey({ batchSize: Number(p.batchSize ?? 5) });
    break;
  case 'rotateTenantKey':
    operation = () => m.rotateTenantKey(String(p.tenant), { batchSize: Number(p.batchSize ?? 10) });
    break;
  case 'importLegacy':
    operation = () =>
      m.importLegacy({ legacyKey: String(p.legacyKey), batchSize: Number(p.batchSize ?? 20) });
    break;
  case 'migrate':
    operation = () => m.migrate();
    break;
  case 'verifyAudit':
    operation = async () => {
      const result = await m.verifyAudit({ pageSize: Number(p.pageSize ?? 50) });
      if (!result.ok) throw new Error(`verification failed: ${JSON.stringify(result.firstBad)}`);
      return { ok: result.ok, records: result.records, chains: result.chains };
    };
    break;
  case 'pruneAudit': {
    // One chain at a time (row deletes), then every chain: resumes with the chain it stopped at.
    const tenants = p.tenants as string[];
    const olderThan = new Date(String(p.olderThan));
    let next = 0;
    let records = 0;
    operation = async () => {
      for (; next < tenants.length; next++) {
        records += (await m.pruneAudit({ olderThan, tenantId: tenants[next] ?? '' })).records;
      }
      await m.pruneAudit({ olderThan });
      return { chains: next, records };
    };
    break;
  }
  case 'exportAudit':
    operation = async () => {
      const file = String(p.file);
      const out = createWriteStream(file);
      let lines = 0;
      try {
        for await (const line of m.exportAudit({ pageSize: Number(p.pageSize ?? 25) })) {
          out.write(`${line}\n`);
          lines++;
        }
      } finally {
        await new Promise((resolve) => out.end(resolve));
      }
      return { lines };
    };
    break;
  case 'getMany': {
    const tenants = p.tenants as string[];
    const keys = p.keys as string[];
    let next = 0;
    let verified = 0;
    let mismatches = 0;
    operation = async () => {
      for (; next < tenants.length * 2; next++) {
        const tenant = tenants[next % tenants.length] ?? '';
        const read = await m.getMany(tenant, keys);
        for (const key of keys) {
          verified++;
          if (read[key] !== value(tenant, key)) mismatches++;
        }
      }
      return { calls: next, verified, mismatches };
    };
    break;
  }
  case 'inTransaction': {
    // The caller's own pool and transactions; the library's statements inside them are fault points.
    const pool = new pg.Pool({
      connectionString: config.url,
      max: 2,
      application_name: 'tenant-secrets-caller',
    });
    pool.on('error', () => undefined);
    const tenant = String(p.tenant);
    const items = Number(p.items ?? 20);
    const state: ('pending' | 'acked' | 'unknown')[] = Array.from({ length: items }, () => 'pending');
    let next = 0;
    // The caller's own statements: not fault points; their errors are the caller's (node-postgres's).
    const caller = async <T>(work: () => Promise<T>): Promise<T> => {
      callerStatement = true;
      try {
        return await work();
      } catch (error) {
        throw new CallerStatementError(error);
      } finally {
        callerStatement = false;
      }
    };
    operation = async () => {
      for (; next < items; next++) {
        const client = await caller(() => pool.connect());
        // A careful caller listens for errors on the client it holds (node-postgres's advice), except
        // while a library call runs: then the library must keep the process alive by itself.
        const callerListener = () => undefined;
        client.on('error', callerListener);
        const library = async <T>(work: () => Promise<T>): Promise<T> => {
          client.removeListener('error', callerListener);
          try {
            return await work();
          } finally {
            client.on('error', callerListener);
          }
        };
        let commitSent = false;
        try {
          await caller(() => client.query('BEGIN'));
          const secrets = m.inTransaction(client);
          await library(() => secrets.set(tenant, `k${next}`, value(tenant, `k${next}`)));
          await library(() => secrets.set(tenant, `k${next}-pair`, value(tenant, `k${next}-pair`)));
          const both = await library(() => secrets.getMany(tenant, [`k${next}`, `k${next}-pair`]));
          if (both[`k${next}`] !== value(tenant, `k${next}`))
            throw new Error('read inside the transaction differs');
          commitSent = true;
          await caller(() => client.query('COMMIT'));
          state[next] = 'acked';
          client.release();
        } catch (error) {
          if (commitSent) state[next] = 'unknown';
          await caller(() => client.query('ROLLBACK')).catch(() => undefined);
          client.release(true);
          emit({ t: 'item', item: next, state: state[next], commitSent });
          throw error;
        }
      }
      await pool.end();
      return { items, acked: state.filter((s) => s === 'acked').length };
    };
    break;
  }
  case 'casWrites': {
    // A chain of check-and-set writes; after a lost connection the documented recipe decides
    // whether the write committed: read the current version, and skip the write if it is ours.
    const tenant = String(p.tenant);
    const key = String(p.key);
    const writes = Number(p.writes ?? 30);
    let done = 0;
    let checkedAfterLoss = 0;
    operation = async () => {
      while (done < writes) {
        const n = done + 1;
        try {
          await m.set(tenant, key, `w${n}`, { ifVersion: n - 1 });
          done = n;
        } catch (error) {
          const maybe = (error as { mayHaveCommitted?: boolean }).mayHaveCommitted === true;
          if (maybe) {
            checkedAfterLoss++;
            const current = await untilDone(() => m.getWithVersion(tenant, key, { fresh: true }));
            if (current?.version === n && current.value === `w${n}`) {
              done = n;
              emit({ t: 'committed-despite-error', write: n });
              continue;
            }
          }
          throw error;
        }
      }
      return { writes: done, checkedAfterLoss };
    };
    break;
  }
  default:
    throw new Error(`unknown scenario ${config.scenario}`);
}

let result: unknown;
let attempt = 0;
for (; attempt < config.maxAttempts; attempt++) {
  armed = true;
  try {
    result = await operation();
    armed = false;
    break;
  } catch (error) {
    armed = false;
    emit({ t: 'error', attempt: attempt + 1, ...describeError(error) });
    if (!(error instanceof TenantSecretsError) && !(error instanceof CallerStatementError)) break;
  }
}
armed = false;
await adminQueue;
emit({ t: 'done', ok: result !== undefined, attempts: attempt + 1, result, faults, statements });
await m.close();
await admin.end();
