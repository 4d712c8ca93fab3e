// suite-scope: direct — reads the server's WAL and log, and its positive control (a plain client's parameters do reach the log) needs a session of its own, which a transaction pooler does not give; db/pgbouncer.test.ts checks the log through the pooler
import { randomBytes } from 'node:crypto';
import { accessSync, constants, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { createSecretsManager, DatabaseTimeoutError, Keyring, type SecretsManager } from '../../src/index.js';
import { adminQuery, directUrlFor, freshDatabase, TEST_KEY } from '../support/db.js';
import { loginRoles, roleUrl } from '../support/roles.js';

/**
 * Nothing secret in plain text anywhere: not in the WAL (so not in replicas or PITR archives), not in
 * the server log even with `log_statement = all` and `log_parameter_max_length_on_error = -1` set for
 * the database, the role or the session, on the success path and on the error path, for the schema
 * owner, an application role and an operator role. Values and keys travel as bytea parameters, which
 * the server logs hex-encoded (`\x…`): every needle is searched as text and as hex. Each check has a
 * positive control proving the scan would see a leak.
 */
let db: { name: string; url: string };
let owner: SecretsManager;
let walDir = '';
let app: string;
let operator: string;
const serverLog = inject('serverLog');
const closers: SecretsManager[] = [];

function readable(path: string): boolean {
  try {
    accessSync(path, constants.R_OK);
    return true;
  } catch {
    return false;
  }
}

function walContains(needle: Buffer): boolean {
  return readdirSync(walDir)
    .filter((f) => /^[0-9A-F]{24}$/.test(f))
    .some((f) => readFileSync(join(walDir, f)).includes(needle));
}

const hex = (b: Buffer | string) => (typeof b === 'string' ? Buffer.from(b, 'utf8') : b).toString('hex');

/** Log text written since `offset`, once `control` (written last) has reached the file. */
async function logSince(offset: number, control: string): Promise<string> {
  let text = '';
  for (let i = 0; i < 100 && !text.includes(control); i++) {
    await new Promise((r) => setTimeout(r, 100));
    text = readFileSync(serverLog).subarray(offset).toString('utf8');
  }
  return text;
}

const logSize = () => readFileSync(serverLog).length;

/** The KEK and tenant proof of every entry of a bundle. */
function bundleParts(bundle: Buffer): Buffer[] {
  const parts: Buffer[] = [];
  for (let i = 0; i < (bundle[1] ?? 0); i++) {
    const at = 2 + 115 * i;
    parts.push(bundle.subarray(at + 19, at + 83), bundle.subarray(at + 83, at + 115));
  }
  return parts;
}

function manager(
  url: string,
  extra: Partial<Parameters<typeof createSecretsManager>[0]> = {},
): SecretsManager {
  const m = createSecretsManager({
    connectionString: url,
    masterKey: TEST_KEY,
    auditSealIntervalMs: 0,
    ...extra,
  });
  closers.push(m);
  return m;
}

/** The URL with session settings given at connection start (the `options` startup parameter). */
function withSessionSettings(url: string, settings: Record<string, string>): string {
  const u = new URL(url);
  u.searchParams.set(
    'options',
    Object.entries(settings)
      .map(([k, v]) => `-c ${k}=${v}`)
      .join(' '),
  );
  return u.toString();
}

let logStart = 0;

beforeAll(async () => {
  if (!serverLog || !readable(serverLog)) {
    throw new Error('server log not readable: set TEST_SERVER_LOG to the PostgreSQL log file');
  }
  logStart = logSize();
  db = await freshDatabase();
  [app, operator] = await loginRoles('leak_app', 'leak_operator');
  // Log every statement in this database, as a careless operator might, with every parameter of a
  // failing statement, for the database and for the application role.
  await adminQuery(
    'postgres',
    `ALTER DATABASE ${db.name} SET log_statement = 'all';
     ALTER DATABASE ${db.name} SET log_parameter_max_length_on_error = -1;
     ALTER DATABASE ${db.name} SET log_parameter_max_length = -1;
     ALTER ROLE ${app} IN DATABASE ${db.name} SET log_parameter_max_length_on_error = -1`,
  );
  owner = manager(db.url);
  // Registration sends the proof keys: they must stay out of the log as well.
  await owner.migrate({ grantTo: [app], grantOperatorTo: [operator] });
  const [dir] = await adminQuery<{ setting: string }>(
    db.name,
    "SELECT setting FROM pg_settings WHERE name = 'data_directory'",
  );
  walDir = join(dir?.setting ?? '', 'pg_wal');
});

afterAll(async () => {
  for (const m of closers) await m.close();
});

describe('no plaintext in the write-ahead log', () => {
  it('values and tenant KEKs never reach the WAL; a plaintext control does', async () => {
    if (!readable(walDir))
      throw new Error(`cannot read ${walDir}: run the suite on the database host as root`);
    const marker = `wal-marker-${randomBytes(8).toString('hex')}`;
    const control = `wal-control-${randomBytes(8).toString('hex')}`;
    // A slot that reserves the WAL from here on: without it, a checkpoint (another test's, or the
    // server's own) may remove the segments this test wrote once the server has moved past them, and
    // the scan below would find neither the control nor, vacuously, the marker.
    const slot = `leaks_${randomBytes(6).toString('hex')}`;
    await adminQuery('postgres', 'SELECT pg_catalog.pg_create_physical_replication_slot($1, true)', [slot]);
    try {
      await owner.set('wal-tenant', 'k', marker);
      await owner.rotate('wal-tenant', 'k', `${marker}-2`);
      expect(await owner.get('wal-tenant', 'k')).toBe(`${marker}-2`);
      await adminQuery(db.name, 'CREATE TABLE plain_control (v text)');
      await adminQuery(db.name, 'INSERT INTO plain_control VALUES ($1)', [control]);
      await adminQuery(db.name, 'CHECKPOINT');
      expect(walContains(Buffer.from(control))).toBe(true); // the scan works
      expect(walContains(Buffer.from(marker))).toBe(false);
      for (const part of bundleParts(owner.tenantKeyBundle('wal-tenant').bytes).filter(
        (_, i) => i % 2 === 0,
      )) {
        expect(walContains(part)).toBe(false); // KEKs
      }
    } finally {
      await adminQuery('postgres', 'SELECT pg_catalog.pg_drop_replication_slot($1)', [slot]);
    }
  });
});

/** Positive controls: a plain client's parameters reach this log, on success, on error, and as hex. */
async function controls(): Promise<{ success: string; error: string; bytea: string; last: string }> {
  const c = {
    success: `control-success-${randomBytes(8).toString('hex')}`,
    error: `control-error-${randomBytes(8).toString('hex')}`,
    bytea: `control-bytea-${randomBytes(8).toString('hex')}`,
    last: `control-last-${randomBytes(8).toString('hex')}`,
  };
  const client = new pg.Client({ connectionString: directUrlFor(db.name) });
  await client.connect();
  try {
    await client.query('SELECT $1::text AS v', [c.success]);
    await client.query('SELECT $1::bytea AS v', [Buffer.from(c.bytea)]);
    // Only the error path may log this one: success-path parameters are off for this session.
    await client.query('SET log_parameter_max_length = 0');
    await client.query('SELECT $1::text, 1 / 0', [c.error]).catch(() => undefined);
    await client.query('RESET log_parameter_max_length');
    await client.query('SELECT $1::text AS v', [c.last]);
  } finally {
    await client.end();
  }
  return c;
}

function expectClean(text: string, values: string[], bundles: Buffer[]): void {
  for (const value of values) {
    expect.soft(text, 'a value, as text').not.toContain(value);
    expect.soft(text, 'a value, as hex').not.toContain(hex(value));
  }
  for (const bundle of bundles) {
    expect.soft(text, 'a whole bundle').not.toContain(hex(bundle).slice(0, 64));
    for (const part of bundleParts(bundle))
      expect.soft(text, 'a KEK or tenant proof').not.toContain(hex(part));
  }
  const raw = Buffer.from(TEST_KEY, 'base64');
  expect.soft(text).not.toContain(TEST_KEY);
  expect.soft(text).not.toContain(hex(raw));
  for (const { proofKey } of Keyring.parse(TEST_KEY).proofKeys()) {
    expect.soft(text, 'a proof key').not.toContain(hex(proofKey));
  }
}

describe('no secret in the server log, with log_statement = all and parameters logged on error', () => {
  /**
   * Runs every operation that carries a value or key material through `m`, plus a write that fails
   * on a statement timeout and one that fails on a constraint, and returns the values it sent.
   */
  async function exercise(m: SecretsManager, timeoutUrl: string, tenant: string): Promise<string[]> {
    const values = Array.from({ length: 4 }, (_, i) => `log-marker-${i}-${randomBytes(8).toString('hex')}`);
    const [v1, v2, v3, v4] = values as [string, string, string, string];
    await m.set(tenant, 'k', v1, { labels: { env: 'prod' }, description: 'not secret' });
    expect(await m.get(tenant, 'k')).toBe(v1);
    await m.rotate(tenant, 'k', v2);
    expect(await m.get(tenant, 'k', { version: 'previous' })).toBe(v1);
    expect(await m.getMany(tenant, ['k', 'missing'])).toEqual({ k: v2, missing: null });
    await m.rollback(tenant, 'k', 1);
    await m.updateMetadata(tenant, 'k', { labels: { env: 'dev' } });
    await m.list(tenant);
    await m.versions(tenant, 'k');
    expect(await m.get(tenant, 'missing')).toBeNull();

    // Error path 1: a statement timeout while another transaction holds the secret's row.
    const holder = new pg.Client({ connectionString: directUrlFor(db.name) });
    await holder.connect();
    const timed = manager(timeoutUrl);
    try {
      await holder.query('BEGIN');
      await holder.query('SELECT 1 FROM tenant_secrets WHERE tenant_id = $1 AND key_name = $2 FOR UPDATE', [
        tenant,
        'k',
      ]);
      await expect(timed.set(tenant, 'k', v3)).rejects.toBeInstanceOf(DatabaseTimeoutError);
      await holder.query('ROLLBACK');
    } finally {
      await holder.end();
    }
    // Error path 2: every audit append fails (a constraint added by hand), so every call errors.
    await adminQuery(
      db.name,
      'ALTER TABLE tenant_secret_audit_pending ADD CONSTRAINT leak_test_fail CHECK (action IS NULL) NOT VALID',
    );
    try {
      await expect(m.set(tenant, 'k', v4)).rejects.toMatchObject({ code: 'DATABASE', sqlState: '23514' });
      await expect(m.get(tenant, 'k')).rejects.toMatchObject({ code: 'DATABASE', sqlState: '23514' });
    } finally {
      await adminQuery(db.name, 'ALTER TABLE tenant_secret_audit_pending DROP CONSTRAINT leak_test_fail');
    }
    return values;
  }

  it('positive controls: parameters of a plain client are logged on success, on error and hex-encoded as bytea', async () => {
    const before = logSize();
    const c = await controls();
    const text = await logSince(before, c.last);
    expect(text).toContain(c.success);
    expect(text).toContain(c.error); // only through the error path
    expect(text).not.toContain(c.bytea); // a bytea parameter is not logged as text…
    expect(text).toContain(hex(c.bytea)); // …but hex-encoded
  });

  for (const who of ['owner', 'application role', 'application role, settings from the session'] as const) {
    it(`${who}: values, tenant KEKs, proofs and keys stay out, on the success and the error path`, async () => {
      const before = logSize();
      const tenant = `log-${who.replaceAll(/[^a-z]/g, '')}`;
      let url = who === 'owner' ? db.url : roleUrl(db.name, app);
      if (who === 'application role, settings from the session') {
        url = withSessionSettings(url, { log_parameter_max_length_on_error: '-1' });
      }
      const m = who === 'owner' ? owner : manager(url);
      const values = await exercise(m, withSessionSettings(url, { statement_timeout: '300' }), tenant);
      const c = await controls();
      const text = await logSince(before, c.last);
      expect(text).toContain(c.success); // the log is written and scanned, parameters included
      expect(text).toContain(c.error);
      expect(text).toContain('tenant_secret_write'); // our statements are logged…
      expect(text).toContain('canceling statement due to statement timeout'); // …the failures happened…
      expect(text).toContain('leak_test_fail');
      expectClean(text, values, [m.tenantKeyBundle(tenant).bytes]); // …without their parameters
    });
  }

  it('operator role: tenant-key rotation and re-encryption send bundles, which stay out', async () => {
    const before = logSize();
    await owner.set('log-operator', 'k', 'operator-value-1');
    const op = manager(roleUrl(db.name, operator));
    await op.rotateTenantKey('log-operator');
    const c = await controls();
    const text = await logSince(before, c.last);
    expect(text).toContain('tenant_secret_rotate_key');
    expectClean(text, ['operator-value-1'], [op.tenantKeyBundle('log-operator').bytes]);
  });

  it('migrate() registration since the start of this file: no proof key or master key in the log', async () => {
    const c = await controls();
    const text = await logSince(logStart, c.last);
    expect(text).toContain('tenant_secret_register_master_key');
    expectClean(text, [], []);
  });
});

describe('a schema owner that is not a superuser (as on Supabase)', () => {
  it('without SET on log_parameter_max_length: status() says success-path parameters may be logged; with it, they are not', async () => {
    const [ownerRole, appRole] = await loginRoles('leak_owner', 'leak_owner_app');
    const other = await freshDatabase();
    await adminQuery(
      other.name,
      `CREATE EXTENSION IF NOT EXISTS pgcrypto;
       CREATE SCHEMA ts_owned AUTHORIZATION ${ownerRole};
       GRANT CREATE ON DATABASE ${other.name} TO ${ownerRole};`,
    );
    await adminQuery(
      'postgres',
      `ALTER DATABASE ${other.name} SET log_statement = 'all';
       ALTER DATABASE ${other.name} SET log_parameter_max_length_on_error = -1`,
    );
    const ownerManager = manager(roleUrl(other.name, ownerRole), { schema: 'ts_owned' });
    await ownerManager.migrate({ grantTo: [appRole] });
    const appManager = manager(roleUrl(other.name, appRole), { schema: 'ts_owned' });

    let status = await ownerManager.status();
    expect(status.logging.suppressedOnSuccess).toBe(false);
    expect(status.logging.mayLogParameters).toBe(true);
    expect(status.problems.map((p) => p.code)).toEqual(
      expect.arrayContaining(['parameters_logged', 'parameters_logged_on_error']),
    );
    expect((await appManager.ready()).suppressedOnSuccess).toBe(false);

    const [version] = await adminQuery<{ v: number }>('postgres', 'SELECT current_setting($1)::int AS v', [
      'server_version_num',
    ]);
    if ((version?.v ?? 0) < 150000) return; // SET on a parameter can be granted from PostgreSQL 15 on
    await adminQuery('postgres', `GRANT SET ON PARAMETER log_parameter_max_length TO ${ownerRole}`);
    try {
      status = await ownerManager.status();
      expect(status.logging.suppressedOnSuccess).toBe(true);
      expect(status.logging.mayLogParameters).toBe(false);
      expect(status.problems.map((p) => p.code)).not.toContain('parameters_logged');
      const before = logSize();
      const value = `owner-granted-${randomBytes(8).toString('hex')}`;
      await appManager.set('t', 'k', value);
      expect(await appManager.get('t', 'k')).toBe(value);
      const c = await controls();
      const text = await logSince(before, c.last);
      expect(text).toContain('tenant_secret_write');
      expect(text).toContain(c.success);
      expectClean(text, [value], [appManager.tenantKeyBundle('t').bytes]);
    } finally {
      await adminQuery('postgres', `REVOKE SET ON PARAMETER log_parameter_max_length FROM ${ownerRole}`);
    }
  });
});

describe('auto_explain loaded for the database (it logs plans, bind parameters and nested statements)', () => {
  it('the library switches it off for its own transactions: no value or key in the plans it logs', async () => {
    const other = await freshDatabase();
    await adminQuery(
      'postgres',
      `ALTER DATABASE ${other.name} SET session_preload_libraries = 'auto_explain';
       ALTER DATABASE ${other.name} SET auto_explain.log_min_duration = 0;
       ALTER DATABASE ${other.name} SET auto_explain.log_nested_statements = on`,
    );
    const m = manager(directUrlFor(other.name));
    await m.migrate();
    const status = await m.status();
    expect(status.logging.autoExplain).toEqual({ logMinDuration: '0', suppressed: true });
    expect(status.problems.map((p) => p.code)).not.toContain('plans_logged');
    const before = logSize();
    const value = `auto-explain-${randomBytes(8).toString('hex')}`;
    await m.set('ae', 'k', value);
    expect(await m.get('ae', 'k')).toBe(value);
    expect(await m.getMany('ae', ['k'])).toEqual({ k: value });
    await m.rotate('ae', 'k', `${value}-2`);
    // Positive control: a plain client's statement is explained, with its parameters from PostgreSQL 16 on.
    const control = `auto-explain-control-${randomBytes(8).toString('hex')}`;
    const client = new pg.Client({ connectionString: directUrlFor(other.name) });
    await client.connect();
    const [{ v }] = (
      await client.query<{ v: number }>("SELECT current_setting('server_version_num')::int AS v")
    ).rows as [{ v: number }];
    await client.query('SELECT $1::text AS c', [control]);
    await client.end();
    const c = await controls();
    const text = await logSince(before, c.last);
    expect(text).toMatch(/duration: [0-9.]+ ms\s+plan:/);
    if (v >= 160000) expect(text).toContain(control);
    expectClean(text, [value, `${value}-2`], [m.tenantKeyBundle('ae').bytes]);
  });
});
