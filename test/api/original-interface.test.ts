import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  closeDefaultSecretsManager,
  getTenantSecret,
  IntegrityError,
  rotateTenantSecret,
  SecretNotFoundError,
  type SecretsManager,
  setTenantSecret,
} from '../../src/index.js';
import { adminQuery, setupManager, TEST_KEY } from '../support/db.js';

const run = promisify(execFile);
let manager: SecretsManager;
let db: { name: string; url: string };
const saved = { ...process.env };

beforeAll(async () => {
  ({ manager, db } = await setupManager());
  process.env.DATABASE_URL = db.url;
  process.env.TENANT_SECRETS_MASTER_KEY = TEST_KEY;
});

afterAll(async () => {
  await closeDefaultSecretsManager();
  process.env = saved;
});

describe('the original interface', () => {
  it('setTenantSecret / getTenantSecret / rotateTenantSecret from the environment', async () => {
    await setTenantSecret('tenant-123', 'api-key', 'secret-value');
    expect(await getTenantSecret('tenant-123', 'api-key')).toBe('secret-value');
    await rotateTenantSecret('tenant-123', 'api-key', 'new-secret-value');
    expect(await getTenantSecret('tenant-123', 'api-key')).toBe('new-secret-value');
    expect(await getTenantSecret('tenant-123', 'no-such-key')).toBeNull();
    await expect(rotateTenantSecret('tenant-123', 'no-such-key', 'x')).rejects.toBeInstanceOf(
      SecretNotFoundError,
    );
    const audit = await adminQuery<{ action: string }>(
      db.name,
      "SELECT action FROM tenant_secret_audit WHERE tenant_id = 'tenant-123' AND outcome = 'success' ORDER BY seq",
    );
    expect(audit.map((a) => a.action)).toEqual([
      'secret.created',
      'secret.read',
      'secret.rotated',
      'secret.read',
    ]);
  });

  it("the original interface's verification query shows ciphertext", async () => {
    const rows = await adminQuery<{ encrypted_value: Buffer }>(
      db.name,
      "SELECT encrypted_value FROM tenant_secrets WHERE tenant_id = 'tenant-123';",
    );
    expect(rows).toHaveLength(1);
    expect(rows[0]?.encrypted_value.includes(Buffer.from('new-secret-value'))).toBe(false);
  });

  it('SQL functions upsert_tenant_secret / get_tenant_secret take the key bundle (one bytea), never the master key', async () => {
    const bundle = manager.tenantKeyBundle('tenant-sql');
    const [set] = await adminQuery<{ v: number }>(
      db.name,
      'SELECT upsert_tenant_secret($1, $2, $3, $4) AS v',
      ['tenant-sql', 'api-key', 'from sql ✓', bundle.bytes],
    );
    expect(set?.v).toBe(1);
    expect(await manager.get('tenant-sql', 'api-key')).toBe('from sql ✓');
    const [got] = await adminQuery<{ v: string | null }>(
      db.name,
      'SELECT get_tenant_secret($1, $2, $3) AS v',
      ['tenant-sql', 'api-key', bundle.bytes],
    );
    expect(got?.v).toBe('from sql ✓');
    // The bundle as `\x…` text, as callers that pass bytea as text (supabase.rpc) send it.
    const [asText] = await adminQuery<{ v: string | null }>(
      db.name,
      'SELECT get_tenant_secret($1, $2, $3::bytea) AS v',
      ['tenant-sql', 'api-key', bundle.toSqlHex()],
    );
    expect(asText?.v).toBe('from sql ✓');
    const [missing] = await adminQuery<{ v: string | null }>(
      db.name,
      'SELECT get_tenant_secret($1, $2, $3) AS v',
      ['tenant-sql', 'nope', bundle.bytes],
    );
    expect(missing?.v).toBeNull();
    // Another tenant's bundle does not speak for this tenant: a typed SQLSTATE (TS401), the same
    // for an existing and a missing secret, never a value or NULL.
    const other = manager.tenantKeyBundle('tenant-123');
    for (const name of ['api-key', 'nope']) {
      const error = await adminQuery(db.name, 'SELECT get_tenant_secret($1, $2, $3) AS v', [
        'tenant-sql',
        name,
        other.bytes,
      ]).catch((e: { code?: string }) => e);
      expect((error as { code?: string }).code).toBe('TS401');
      const write = await adminQuery(db.name, 'SELECT upsert_tenant_secret($1, $2, $3, $4) AS v', [
        'tenant-sql',
        name,
        'overwrite',
        other.bytes,
      ]).catch((e: { code?: string }) => e);
      expect((write as { code?: string }).code).toBe('TS401');
    }
    expect(await manager.get('tenant-sql', 'api-key')).toBe('from sql ✓');
  });

  it('concurrent upsert_tenant_secret calls of one secret: one version each, and exactly 10 kept', async () => {
    const bundle = manager.tenantKeyBundle('tenant-race');
    await adminQuery(db.name, 'SELECT upsert_tenant_secret($1, $2, $3, $4)', [
      'tenant-race',
      'k',
      'v0',
      bundle.bytes,
    ]);
    // 24 sessions at once: each waits for the row lock of the one before it.
    const versions = await Promise.all(
      Array.from({ length: 24 }, async (_, i) => {
        const [row] = await adminQuery<{ v: number }>(
          db.name,
          'SELECT upsert_tenant_secret($1, $2, $3, $4) AS v',
          ['tenant-race', 'k', `v${i + 1}`, bundle.bytes],
        );
        return row?.v;
      }),
    );
    expect(versions.sort((a, b) => (a ?? 0) - (b ?? 0))).toEqual(Array.from({ length: 24 }, (_, i) => i + 2));
    // Retention (10 by default) destroyed versions 1..15 as they fell out, each said so in the trail.
    const kept = await adminQuery<{ version: number }>(
      db.name,
      `SELECT version FROM tenant_secret_versions
        WHERE tenant_id = 'tenant-race' AND key_name = 'k' AND encrypted_value IS NOT NULL ORDER BY version`,
    );
    expect(kept.map((r) => r.version)).toEqual(Array.from({ length: 10 }, (_, i) => i + 16));
    await manager.sealAudit();
    const destroyed = await adminQuery<{ v: number }>(
      db.name,
      `SELECT jsonb_array_elements(details->'destroyed_versions')::int AS v FROM tenant_secret_audit
        WHERE tenant_id = 'tenant-race' ORDER BY 1`,
    );
    expect(destroyed.map((r) => r.v)).toEqual(Array.from({ length: 15 }, (_, i) => i + 1));
  });

  it('a tampered secret read through the env function throws, it does not return null', async () => {
    await setTenantSecret('tenant-123', 'tampered', 'v');
    await adminQuery(
      db.name,
      "UPDATE tenant_secrets SET encrypted_value = set_byte(encrypted_value, 20, get_byte(encrypted_value, 20) # 1) WHERE key_name = 'tampered'",
    );
    await expect(getTenantSecret('tenant-123', 'tampered')).rejects.toBeInstanceOf(IntegrityError);
  });

  it("the original interface's `node -e` commands work against the built package (npm test builds first)", async () => {
    const env = { ...process.env, DATABASE_URL: db.url, TENANT_SECRETS_MASTER_KEY: TEST_KEY };
    const set = `import { setTenantSecret, getTenantSecret } from 'tenant-secrets';
await setTenantSecret('tenant-123', 'api-key', 'secret-value');
const value = await getTenantSecret('tenant-123', 'api-key');
console.log('Secret value:', value);`;
    const out = await run('node', ['--input-type=module', '-e', set], { env });
    expect(out.stdout.trim()).toBe('Secret value: secret-value');
    const rotate = `import { rotateTenantSecret } from 'tenant-secrets';
await rotateTenantSecret('tenant-123', 'api-key', 'new-secret-value');`;
    await run('node', ['--input-type=module', '-e', rotate], { env });
    expect(await manager.get('tenant-123', 'api-key')).toBe('new-secret-value');
  });
});
