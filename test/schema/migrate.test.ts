import pg from 'pg';
import { describe, expect, it } from 'vitest';
import {
  createSecretsManager,
  exportSchemaSql,
  LATEST_SCHEMA_VERSION,
  LegacySchemaError,
} from '../../src/index.js';
import { adminQuery, freshDatabase, TEST_KEY } from '../support/db.js';

describe('migrate', () => {
  it('is idempotent: the second run applies nothing and data survives', async () => {
    const db = await freshDatabase();
    const manager = createSecretsManager({ connectionString: db.url, masterKey: TEST_KEY });
    try {
      const first = await manager.migrate();
      expect(first.applied.length).toBeGreaterThan(0);
      expect(first.version).toBe(LATEST_SCHEMA_VERSION);
      await manager.set('t', 'k', 'v');
      const second = await manager.migrate();
      expect(second.applied).toEqual([]);
      expect(await manager.get('t', 'k')).toBe('v');
    } finally {
      await manager.close();
    }
  });

  it('is safe when ten processes run it at once', async () => {
    const db = await freshDatabase();
    const managers = Array.from({ length: 10 }, () =>
      createSecretsManager({ connectionString: db.url, masterKey: TEST_KEY, maxConnections: 1 }),
    );
    try {
      const results = await Promise.all(managers.map((m) => m.migrate()));
      expect(results.filter((r) => r.applied.length > 0)).toHaveLength(1);
      const rows = await adminQuery<{ n: number }>(
        db.name,
        'SELECT count(*)::int AS n FROM tenant_secret_migrations',
      );
      expect(rows[0]?.n).toBe(results.find((r) => r.applied.length > 0)?.applied.length);
      await managers[0]?.set('t', 'k', 'v');
      expect(await managers[9]?.get('t', 'k')).toBe('v');
    } finally {
      await Promise.all(managers.map((m) => m.close()));
    }
  });

  it("stops with a clear message on a table in the seed's original shape, changing nothing", async () => {
    const db = await freshDatabase();
    await adminQuery(
      db.name,
      `CREATE EXTENSION IF NOT EXISTS pgcrypto;
       CREATE TABLE tenant_secrets (tenant_id uuid, key_name text, encrypted_value text, rotated_at timestamptz,
         PRIMARY KEY (tenant_id, key_name));
       INSERT INTO tenant_secrets VALUES ('6f1c2a9e-3b7d-4e8f-9a0b-1c2d3e4f5a6b', 'api-key',
         encode(encrypt('legacy'::bytea, 'k'::bytea, 'aes-cbc'), 'base64'), now());`,
    );
    const manager = createSecretsManager({ connectionString: db.url, masterKey: TEST_KEY });
    try {
      const error = await manager.migrate().catch((e: unknown) => e);
      expect(error).toBeInstanceOf(LegacySchemaError);
      expect((error as Error).message).toMatch(/import-legacy/);
      const tables = await adminQuery<{ relname: string }>(
        db.name,
        "SELECT relname FROM pg_class WHERE relname LIKE 'tenant_secret%' AND relkind = 'r'",
      );
      expect(tables.map((t) => t.relname)).toEqual(['tenant_secrets']);
      expect(await adminQuery(db.name, 'SELECT * FROM tenant_secrets')).toHaveLength(1);
    } finally {
      await manager.close();
    }
  });

  it('installs into a custom schema and works there', async () => {
    const db = await freshDatabase();
    const manager = createSecretsManager({
      connectionString: db.url,
      masterKey: TEST_KEY,
      schema: 'secrets',
    });
    try {
      await manager.migrate();
      await manager.set('t', 'k', 'v');
      expect(await manager.get('t', 'k')).toBe('v');
      const rows = await adminQuery(db.name, "SELECT 1 FROM secrets.tenant_secrets WHERE tenant_id = 't'");
      expect(rows).toHaveLength(1);
      expect(
        await adminQuery(db.name, "SELECT to_regclass('public.tenant_secrets') IS NULL AS absent"),
      ).toEqual([{ absent: true }]);
    } finally {
      await manager.close();
    }
  });

  it('the exported SQL file installs a working schema (as a Supabase migration would)', async () => {
    const db = await freshDatabase();
    const sql = await exportSchemaSql({ schema: 'public' });
    expect(sql).toContain('CREATE FUNCTION "public".upsert_tenant_secret');
    expect(sql).not.toMatch(/:TS\b/);
    // pgcrypto's schema is looked up when the script runs (wherever the extension is installed).
    const code = sql
      .split('\n')
      .filter((l) => !/^\s*--/.test(l))
      .join('\n');
    expect(code.replace(/:PGC\.\w+\(|':PGC'/g, '')).not.toMatch(/:PGC\b/);
    const client = new pg.Client({ connectionString: db.url });
    await client.connect();
    await client.query(sql);
    await client.end();
    const manager = createSecretsManager({ connectionString: db.url, masterKey: TEST_KEY });
    try {
      expect((await manager.migrate()).applied).toEqual([]);
      expect((await manager.migrate()).functionsInstalled).toBe(false);
      await manager.set('tenant-123', 'api-key', 'secret-value');
      expect(await manager.get('tenant-123', 'api-key')).toBe('secret-value');
    } finally {
      await manager.close();
    }
  });
});
