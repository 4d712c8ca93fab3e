import { readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import { createSecretsManager, type SecretsManager } from '../../src/index.js';
import { adminQuery, directUrlFor, freshDatabase, OTHER_KEY, TEST_KEY } from '../support/db.js';
import { type ChildRun, runFaultChild } from '../support/faults.js';

/**
 * Fault injection: each multi-statement operation runs in a child Node process whose PostgreSQL
 * backends are terminated (pg_terminate_backend from an admin connection) at pseudo-random statements
 * drawn from a fixed seed, before a statement is sent (the checked-out connection drops while idle)
 * or while it runs. The child must not crash, every error must be typed, re-running must resume, and
 * afterwards everything acknowledged reads back exactly. FAULT_SEED changes the seeds, to explore.
 */

const SEED = Number(process.env.FAULT_SEED ?? 0);
const value = (tenant: string, key: string) => `value ${tenant}/${key} ✓`;
const totals = { scenarios: 0, faults: 0, errors: 0, operations: 0, statements: 0, verified: 0, lost: 0 };

afterAll(() => {
  console.info(
    `fault injection totals: ${totals.scenarios} scenarios, ${totals.faults} faults injected, ${totals.errors} typed errors, ${totals.operations} operation runs, ${totals.statements} statements, ${totals.verified} values verified, lost: ${totals.lost}`,
  );
});

function managerOn(db: { url: string }, masterKey = TEST_KEY, previous: string[] = []): SecretsManager {
  return createSecretsManager({
    connectionString: db.url,
    masterKey,
    previousMasterKeys: previous,
    auditSealIntervalMs: 0,
    env: {},
  });
}

/** What every scenario must show: no crash, typed errors only, faults injected, and a final success. */
function expectSurvived(run: ChildRun, label: string): void {
  expect(run.stderr, `${label}: child stderr`).not.toMatch(/Unhandled|uncaught|ERR_UNHANDLED/i);
  expect(run.code, `${label}: child exit code (stderr: ${run.stderr.slice(0, 2000)})`).toBe(0);
  expect(run.done?.ok, `${label}: operation finished (${JSON.stringify(run.errors.slice(-3))})`).toBe(true);
  expect(run.faults, `${label}: faults injected`).toBeGreaterThan(0);
  for (const error of run.errors.filter((e) => e.caller !== true)) {
    expect(error.typed, `${label}: untyped error ${JSON.stringify(error)}`).toBe(true);
    expect(error.code, `${label}: ${JSON.stringify(error)}`).toBe('DATABASE_UNAVAILABLE');
  }
  expect(run.events.filter((e) => e.t === 'injector-error')).toEqual([]);
  totals.scenarios++;
  totals.faults += run.faults;
  totals.errors += run.errors.length;
  totals.operations += Number(run.done?.attempts ?? 0);
  totals.statements += Number(run.done?.statements ?? 0);
  if (process.env.FAULT_VERBOSE) console.info(JSON.stringify(run.events, null, 1));
  console.info(
    `faults ${label}: ${run.faults} fault(s), ${run.errors.length} error(s) [${[...new Set(run.errors.map((e) => `${e.name}${e.mayHaveCommitted ? ' mayHaveCommitted' : ''}`))].join(', ')}], ${run.done?.attempts} run(s), ${run.done?.statements} statement(s), result ${JSON.stringify(run.done?.result)}`,
  );
}

async function populate(db: { url: string }, tenants: string[], keys: string[], versions = 1): Promise<void> {
  const m = managerOn(db);
  try {
    await m.migrate();
    for (const t of tenants) {
      for (const k of keys) {
        for (let v = 1; v < versions; v++) await m.set(t, k, `${k} v${v}`);
        await m.set(t, k, value(t, k));
      }
    }
    await m.sealAudit();
  } finally {
    await m.close();
  }
}

/** Reads every value (and older versions) back with `m`; counts them. */
async function expectValues(
  m: SecretsManager,
  tenants: string[],
  keys: string[],
  versions = 1,
): Promise<void> {
  for (const t of tenants) {
    const read = await m.getMany(t, keys);
    for (const k of keys) {
      if (read[k] !== value(t, k)) totals.lost++;
      expect(read[k], `${t}/${k}`).toBe(value(t, k));
      totals.verified++;
      for (let v = 1; v < versions; v++) {
        expect(await m.get(t, k, { version: v }), `${t}/${k} v${v}`).toBe(`${k} v${v}`);
        totals.verified++;
      }
    }
  }
}

describe('terminated backends during multi-statement operations', () => {
  it('rotateMasterKey: no crash, resumes, every value reads back with the new key only', async () => {
    const db = await freshDatabase('faults');
    const tenants = Array.from({ length: 40 }, (_, i) => `mk-${i}`);
    await populate(db, tenants, ['a', 'b'], 2);
    const before = managerOn(db);
    await before.verifyAudit();
    await before.close();
    const run = await runFaultChild({
      scenario: 'rotateMasterKey',
      database: db.name,
      masterKey: OTHER_KEY,
      previousMasterKeys: [TEST_KEY],
      seed: SEED + 1001,
      params: { batchSize: 4 },
    });
    expectSurvived(run, 'rotateMasterKey');
    const fresh = managerOn(db, OTHER_KEY);
    try {
      expect((await fresh.keyStatus()).readyToDropPrevious).toBe(true);
      await expectValues(fresh, tenants, ['a', 'b'], 2);
      expect((await fresh.verifyAudit()).ok).toBe(true);
    } finally {
      await fresh.close();
    }
  });

  it('rotateTenantKey: no crash, resumes, one active key, every value and version reads back', async () => {
    const db = await freshDatabase('faults');
    const keys = Array.from({ length: 30 }, (_, i) => `k${i}`);
    await populate(db, ['tk'], keys, 3);
    const run = await runFaultChild({
      scenario: 'rotateTenantKey',
      database: db.name,
      masterKey: TEST_KEY,
      seed: SEED + 1002,
      p: 0.3,
      params: { tenant: 'tk', batchSize: 4 },
    });
    expectSurvived(run, 'rotateTenantKey');
    const keyRows = await adminQuery<{ state: string; n: number }>(
      db.name,
      `SELECT state, count(*)::int AS n FROM tenant_secret_keys WHERE tenant_id = 'tk' GROUP BY 1 ORDER BY 1`,
    );
    expect(keyRows.find((r) => r.state === 'active')?.n).toBe(1);
    expect(keyRows.find((r) => r.state === 'retired')).toBeUndefined();
    const m = managerOn(db);
    try {
      await expectValues(m, ['tk'], keys, 3);
      expect((await m.verifyAudit()).ok).toBe(true);
    } finally {
      await m.close();
    }
  });

  it('importLegacy: no crash, resumes, every legacy row imported exactly once and counted across runs', async () => {
    const db = await freshDatabase('faults');
    const rows = 120;
    const legacyKey = 'legacy-key-of-the-original-code';
    await adminQuery(
      db.name,
      `CREATE EXTENSION IF NOT EXISTS pgcrypto;
       CREATE TABLE tenant_secrets (tenant_id uuid NOT NULL, key_name text NOT NULL, encrypted_value text NOT NULL,
                                    rotated_at timestamptz, PRIMARY KEY (tenant_id, key_name))`,
    );
    await adminQuery(
      db.name,
      `INSERT INTO tenant_secrets
       SELECT ('00000000-0000-4000-8000-' || lpad((i % 7)::text, 12, '0'))::uuid, 'key-' || i,
              encode(encrypt(convert_to('legacy value ' || i || ' ✓', 'UTF8'), $1::bytea, 'aes-cbc'), 'base64'), now()
         FROM generate_series(1, $2::int) i`,
      [legacyKey, rows],
    );
    const run = await runFaultChild({
      scenario: 'importLegacy',
      database: db.name,
      masterKey: TEST_KEY,
      seed: SEED + 1003,
      params: { legacyKey, batchSize: 10 },
    });
    expectSurvived(run, 'importLegacy');
    expect(run.done?.result).toMatchObject({ importedTotal: rows, legacyTableDropped: true });
    const m = managerOn(db);
    try {
      for (let tenant = 0; tenant < 7; tenant++) {
        const t = `00000000-0000-4000-8000-${String(tenant).padStart(12, '0')}`;
        const names = Array.from({ length: rows }, (_, i) => i + 1).filter((i) => i % 7 === tenant);
        const read = await m.getMany(
          t,
          names.map((i) => `key-${i}`),
        );
        for (const i of names) {
          if (read[`key-${i}`] !== `legacy value ${i} ✓`) totals.lost++;
          expect(read[`key-${i}`]).toBe(`legacy value ${i} ✓`);
          totals.verified++;
        }
      }
      const [counter] = await adminQuery<{ imported: string }>(
        db.name,
        `SELECT imported FROM tenant_secret_legacy_import`,
      );
      expect(Number(counter?.imported)).toBe(rows);
      await m.sealAudit();
      const [imported] = await adminQuery<{ n: number }>(
        db.name,
        `SELECT count(*)::int AS n FROM tenant_secret_audit WHERE action = 'secret.imported' AND outcome = 'success'`,
      );
      expect(imported?.n).toBe(rows);
      const [finished] = await adminQuery<{ details: { imported_total: number } }>(
        db.name,
        `SELECT details FROM tenant_secret_audit WHERE action = 'legacy.import_finished' ORDER BY seq DESC LIMIT 1`,
      );
      expect(finished?.details.imported_total).toBe(rows);
      expect((await m.verifyAudit()).ok).toBe(true);
    } finally {
      await m.close();
    }
  });

  it('migrate: killed while waiting on its lock and at random points, no crash, a re-run installs everything', async () => {
    const db = await freshDatabase('faults');
    // Another migrator holds the lock, so the child's first migrate() waits on it when it is killed.
    const holder = new pg.Client({ connectionString: directUrlFor(db.name) });
    await holder.connect();
    // (on an empty database, a first install's CREATE TABLE of the migrations table waits for one
    // still uncommitted in another transaction, as two first installs at once do).
    await holder.query('BEGIN');
    await holder.query(
      'CREATE TABLE public.tenant_secret_migrations (id integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())',
    );
    let released = false;
    const release = () => {
      if (released) return;
      released = true;
      void holder.query('ROLLBACK').then(() => holder.end());
    };
    const run = await runFaultChild({
      scenario: 'migrate',
      database: db.name,
      masterKey: TEST_KEY,
      seed: SEED + 1004,
      p: 0.2,
      // Statement 1 is BEGIN, 2 the installer's prologue, which takes the lock.
      forced: [{ at: 2, mode: 'during', delayMs: 300 }],
      randomFrom: 3,
      onEvent: (event) => {
        if (event.t === 'error') release();
      },
    });
    release();
    expectSurvived(run, 'migrate');
    // The first failure happened inside the transaction (waiting on the lock), and every other one
    // before COMMIT was sent: nothing could have committed.
    expect(run.events.find((e) => e.t === 'fault')).toMatchObject({ statement: 2, mode: 'during' });
    expect(run.errors[0]).toMatchObject({ code: 'DATABASE_UNAVAILABLE', mayHaveCommitted: false });
    const m = managerOn(db);
    try {
      const status = await m.status();
      expect(status.problems.filter((p) => p.severity === 'error')).toEqual([]);
      const again = await m.migrate();
      expect(again).toMatchObject({ applied: [], functionsInstalled: false, removed: [] });
      await m.set('after-migrate', 'k', value('after-migrate', 'k'));
      await expectValues(m, ['after-migrate'], ['k']);
    } finally {
      await m.close();
    }
  });

  it('verifyAudit: no crash, a re-run verifies every chain', async () => {
    const db = await freshDatabase('faults');
    const tenants = Array.from({ length: 25 }, (_, i) => `va-${i}`);
    await populate(db, tenants, ['a', 'b'], 2);
    const run = await runFaultChild({
      scenario: 'verifyAudit',
      database: db.name,
      masterKey: TEST_KEY,
      seed: SEED + 1005,
      params: { pageSize: 5 },
    });
    expectSurvived(run, 'verifyAudit');
    expect(run.done?.result).toMatchObject({ ok: true });
    const m = managerOn(db);
    try {
      expect((await m.verifyAudit()).ok).toBe(true);
      await expectValues(m, tenants, ['a', 'b'], 2);
    } finally {
      await m.close();
    }
  });

  it('pruneAudit: no crash, a re-run prunes the rest, the chains still verify', async () => {
    const db = await freshDatabase('faults');
    const tenants = Array.from({ length: 12 }, (_, i) => `pa-${i}`);
    await populate(db, tenants, ['a'], 3);
    const [{ cutoff } = { cutoff: '' }] = await adminQuery<{ cutoff: string }>(
      db.name,
      `SELECT (clock_timestamp())::text AS cutoff`,
    );
    await populate(db, tenants, ['b']);
    const run = await runFaultChild({
      scenario: 'pruneAudit',
      database: db.name,
      masterKey: TEST_KEY,
      seed: SEED + 1006,
      params: { tenants, olderThan: cutoff },
    });
    expectSurvived(run, 'pruneAudit');
    const left = await adminQuery<{ n: number }>(
      db.name,
      `SELECT count(*)::int AS n FROM tenant_secret_audit WHERE chain_id LIKE 'pa-%' AND occurred_at < $1::timestamptz`,
      [cutoff],
    );
    expect(left[0]?.n).toBe(0);
    const m = managerOn(db);
    try {
      expect((await m.verifyAudit()).ok).toBe(true);
      await expectValues(m, tenants, ['a', 'b']);
    } finally {
      await m.close();
    }
  });

  it('exportAudit: no crash, a re-run exports every record of every chain once', async () => {
    const db = await freshDatabase('faults');
    const tenants = Array.from({ length: 15 }, (_, i) => `ex-${i}`);
    await populate(db, tenants, ['a', 'b']);
    const file = join(tmpdir(), `tenant-secrets-export-${process.pid}-${Date.now()}.jsonl`);
    const run = await runFaultChild({
      scenario: 'exportAudit',
      database: db.name,
      masterKey: TEST_KEY,
      seed: SEED + 1007,
      params: { file, pageSize: 7 },
    });
    expectSurvived(run, 'exportAudit');
    const lines = readFileSync(file, 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { chainId: string; seq: number });
    const [tenantRecords] = await adminQuery<{ n: number }>(
      db.name,
      `SELECT count(*)::int AS n FROM tenant_secret_audit WHERE chain_id <> ''`,
    );
    expect(lines.filter((l) => l.chainId !== '')).toHaveLength(tenantRecords?.n ?? -1);
    const byChain = new Map<string, number[]>();
    for (const line of lines)
      byChain.set(line.chainId, [...(byChain.get(line.chainId) ?? []), Number(line.seq)]);
    for (const [chain, seqs] of byChain) {
      expect(seqs, chain).toEqual(Array.from({ length: seqs.length }, (_, i) => (seqs[0] ?? 1) + i));
    }
    totals.verified += lines.length;
  });

  it('getMany: no crash, every read returns exactly what was written', async () => {
    const db = await freshDatabase('faults');
    const tenants = Array.from({ length: 15 }, (_, i) => `gm-${i}`);
    const keys = ['a', 'b', 'c', 'd'];
    await populate(db, tenants, keys);
    const run = await runFaultChild({
      scenario: 'getMany',
      database: db.name,
      masterKey: TEST_KEY,
      seed: SEED + 1008,
      params: { tenants, keys },
    });
    expectSurvived(run, 'getMany');
    const result = run.done?.result as { verified: number; mismatches: number };
    expect(result.mismatches).toBe(0);
    expect(result.verified).toBeGreaterThanOrEqual(tenants.length * 2 * keys.length);
    totals.verified += result.verified;
  });

  it("inTransaction: a caller's transaction loses its connection, no crash, acknowledged commits are all there", async () => {
    const db = await freshDatabase('faults');
    await populate(db, [], []);
    const items = 20;
    const run = await runFaultChild({
      scenario: 'inTransaction',
      database: db.name,
      masterKey: TEST_KEY,
      seed: SEED + 1009,
      params: { tenant: 'tx', items },
    });
    expectSurvived(run, 'inTransaction');
    // A failure before COMMIT was sent never says the write may have committed.
    for (const item of run.events.filter((e) => e.t === 'item' && e.commitSent === false)) {
      const error = run.events[run.events.indexOf(item) + 1];
      expect(error?.mayHaveCommitted, JSON.stringify(error)).toBe(false);
    }
    const m = managerOn(db);
    try {
      const keys = Array.from({ length: items }, (_, i) => [`k${i}`, `k${i}-pair`]).flat();
      await expectValues(m, ['tx'], keys);
      // Aborted transactions left nothing: every secret has exactly one version.
      const versions = await adminQuery<{ n: number }>(
        db.name,
        `SELECT count(*)::int AS n FROM tenant_secret_versions WHERE tenant_id = 'tx' GROUP BY key_name HAVING count(*) > 1`,
      );
      expect(versions).toEqual([]);
      expect((await m.verifyAudit()).ok).toBe(true);
    } finally {
      await m.close();
    }
  });

  it('check-and-set writes: a lost write is resolved with getWithVersion, no version is skipped or doubled', async () => {
    const db = await freshDatabase('faults');
    await populate(db, [], []);
    const writes = 30;
    const run = await runFaultChild({
      scenario: 'casWrites',
      database: db.name,
      masterKey: TEST_KEY,
      seed: SEED + 1010,
      p: 0.2,
      maxFaults: 10,
      params: { tenant: 'cas', key: 'counter', writes },
    });
    expectSurvived(run, 'casWrites');
    const m = managerOn(db);
    try {
      expect(await m.getWithVersion('cas', 'counter')).toMatchObject({
        value: `w${writes}`,
        version: writes,
      });
      const versions = await m.versions('cas', 'counter');
      expect(versions.map((v) => v.version).sort((a, b) => a - b)).toEqual(
        Array.from({ length: writes }, (_, i) => i + 1),
      );
      for (let v = Math.max(1, writes - 9); v <= writes; v++) {
        expect(await m.get('cas', 'counter', { version: v })).toBe(`w${v}`);
        totals.verified++;
      }
    } finally {
      await m.close();
    }
  });
});
