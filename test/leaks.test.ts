import { randomBytes } from 'node:crypto';
import { accessSync, constants, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import pg from 'pg';
import { beforeAll, describe, expect, inject, it } from 'vitest';
import { createSecretsManager, type SecretsManager } from '../src/index.js';
import { adminQuery, freshDatabase, TEST_KEY } from './support/db.js';

/**
 * Nothing secret in plain text anywhere: not in the WAL (so not in replicas or PITR archives), not in
 * the server log even with `log_statement = all`. Each check has a positive control proving the scan
 * would see a leak.
 */
let db: { name: string; url: string };
let manager: SecretsManager;
let walDir = '';
const serverLog = inject('serverLog');

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

beforeAll(async () => {
  db = await freshDatabase();
  // Log every statement in this database, as a careless operator might.
  await adminQuery('postgres', `ALTER DATABASE ${db.name} SET log_statement = 'all'`);
  manager = createSecretsManager({ connectionString: db.url, masterKey: TEST_KEY });
  await manager.migrate();
  const [dir] = await adminQuery<{ setting: string }>(
    db.name,
    "SELECT setting FROM pg_settings WHERE name = 'data_directory'",
  );
  walDir = join(dir?.setting ?? '', 'pg_wal');
  return () => manager.close();
});

describe('no plaintext in the write-ahead log', () => {
  it('values never reach the WAL; a plaintext control does', async () => {
    if (!readable(walDir))
      throw new Error(`cannot read ${walDir}: run the suite on the database host as root`);
    const marker = `wal-marker-${randomBytes(8).toString('hex')}`;
    const control = `wal-control-${randomBytes(8).toString('hex')}`;
    await manager.set('wal-tenant', 'k', marker);
    await manager.rotate('wal-tenant', 'k', `${marker}-2`);
    expect(await manager.get('wal-tenant', 'k')).toBe(`${marker}-2`);
    await adminQuery(db.name, 'CREATE TABLE plain_control (v text)');
    await adminQuery(db.name, 'INSERT INTO plain_control VALUES ($1)', [control]);
    await adminQuery(db.name, 'CHECKPOINT');
    expect(walContains(Buffer.from(control))).toBe(true); // the scan works
    expect(walContains(Buffer.from(marker))).toBe(false);
  });
});

describe('no secret in the server log, even with log_statement = all', () => {
  it('values, master key and tenant KEKs stay out; the same call through a careless client would leak', async () => {
    if (!serverLog || !readable(serverLog)) {
      throw new Error('server log not readable: set TEST_SERVER_LOG to the PostgreSQL log file');
    }
    const marker = `log-marker-${randomBytes(8).toString('hex')}`;
    const before = readFileSync(serverLog).length;
    await manager.set('log-tenant', 'k', marker);
    expect(await manager.get('log-tenant', 'k')).toBe(marker);
    await manager.get('log-tenant', 'missing');
    // Positive control: a client that does not quiet bind parameters leaks them into this log.
    const control = `log-control-${randomBytes(8).toString('hex')}`;
    const client = new pg.Client({ connectionString: db.url });
    await client.connect();
    await client.query('SELECT $1::text AS v', [control]);
    await client.end();
    let text = '';
    for (let i = 0; i < 50 && !text.includes(control); i++) {
      await new Promise((r) => setTimeout(r, 100));
      text = readFileSync(serverLog).subarray(before).toString('utf8');
    }
    expect(text).toContain(control); // the log is being written and scanned
    expect(text).toContain('tenant_secret_write'); // our statements are logged...
    expect(text).not.toContain(marker); // ...without their parameters
    const kek = manager.tenantKeyBundle('log-tenant').keks[0]?.toString('hex') as string;
    expect(text).not.toContain(kek);
    expect(text).not.toContain(TEST_KEY);
    expect(text).not.toContain(Buffer.from(TEST_KEY, 'base64').toString('hex'));
  });
});
