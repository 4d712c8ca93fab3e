import { describe, expect, it } from 'vitest';
import {
  createSecretsManager,
  LegacyImportError,
  LegacySchemaError,
  OperationAbortedError,
  type SecretsManager,
} from '../../src/index.js';
import { adminQuery, freshDatabase, TEST_KEY } from '../support/db.js';

const LEGACY_KEY = 'old-master-key-from-the-seed';

/** The seed's table and its upsert function, verbatim (docs: seed/per-tenant-secrets-task.md). */
const SEED_SQL = `
CREATE EXTENSION IF NOT EXISTS pgcrypto;
CREATE TABLE tenant_secrets (
  tenant_id UUID NOT NULL,
  key_name TEXT NOT NULL,
  encrypted_value TEXT NOT NULL,
  rotated_at TIMESTAMPTZ,
  PRIMARY KEY (tenant_id, key_name)
);
CREATE OR REPLACE FUNCTION upsert_tenant_secret(
  p_tenant_id UUID,
  p_key_name TEXT,
  p_plain_value TEXT,
  p_master_key TEXT
)
RETURNS VOID
LANGUAGE plpgsql
SECURITY DEFINER
AS $$
BEGIN
  INSERT INTO tenant_secrets (tenant_id, key_name, encrypted_value, rotated_at)
  VALUES (
    p_tenant_id,
    p_key_name,
    encode(encrypt(p_plain_value::bytea, p_master_key::bytea, 'aes-cbc'), 'base64'),
    now()
  )
  ON CONFLICT (tenant_id, key_name)
  DO UPDATE SET
    encrypted_value = encode(encrypt(p_plain_value::bytea, p_master_key::bytea, 'aes-cbc'), 'base64'),
    rotated_at = now();
END;
$$;
`;

const TENANTS = [
  '6f1c2a7e-3b9d-4c11-9a3e-0c5d2f8b7a10',
  '9b2e4d6f-1a3c-4e5f-8a7b-6c5d4e3f2a1b',
  'c0ffee00-0000-4000-8000-000000000001',
  'deadbeef-1111-4222-8333-444455556666',
];
const ROWS = TENANTS.flatMap((tenant, i) =>
  Array.from({ length: i + 2 }, (_, j) => ({ tenant, name: `svc-${j}/api-key`, value: `värde ${i}.${j} ✓` })),
);

async function legacyDatabase(): Promise<{ name: string; url: string }> {
  const db = await freshDatabase('legacy');
  await adminQuery(db.name, SEED_SQL);
  for (const row of ROWS) {
    await adminQuery(db.name, 'SELECT upsert_tenant_secret($1, $2, $3, $4)', [
      row.tenant,
      row.name,
      row.value,
      LEGACY_KEY,
    ]);
  }
  return db;
}

const snapshot = (db: string) =>
  adminQuery(
    db,
    `SELECT (SELECT json_agg(c.relname ORDER BY c.relname) FROM pg_class c
              WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'i', 'S', 'v')) AS relations,
            (SELECT json_agg(t ORDER BY t.tenant_id, t.key_name) FROM tenant_secrets t) AS rows`,
  );

function managerOn(url: string): SecretsManager {
  return createSecretsManager({ connectionString: url, masterKey: TEST_KEY, actor: 'importer' });
}

describe('legacy import', () => {
  it('migrate() on a legacy table throws LegacySchemaError and changes nothing', async () => {
    const db = await legacyDatabase();
    const manager = managerOn(db.url);
    try {
      const before = await snapshot(db.name);
      await expect(manager.migrate()).rejects.toBeInstanceOf(LegacySchemaError);
      expect(await snapshot(db.name)).toEqual(before);
    } finally {
      await manager.close();
    }
  });

  it('a wrong legacy key is refused before anything changes', async () => {
    const db = await legacyDatabase();
    const manager = managerOn(db.url);
    try {
      const before = await snapshot(db.name);
      const error = await manager.importLegacy({ legacyKey: 'not-the-key' }).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(LegacyImportError);
      expect((error as LegacyImportError).reason).toBe('wrong_key');
      expect((error as Error).message).not.toContain('not-the-key');
      expect(await snapshot(db.name)).toEqual(before);
    } finally {
      await manager.close();
    }
  });

  it('imports every row end to end: verified, audited, legacy table dropped', async () => {
    const db = await legacyDatabase();
    const manager = managerOn(db.url);
    try {
      const progress: number[] = [];
      const result = await manager.importLegacy({
        legacyKey: LEGACY_KEY,
        batchSize: 3,
        onProgress: ({ done, total }) => {
          expect(total).toBe(ROWS.length);
          progress.push(done);
        },
      });
      expect(result).toEqual({
        imported: ROWS.length,
        importedTotal: ROWS.length,
        batches: Math.ceil(ROWS.length / 3),
        legacyTableDropped: true,
        storage: 'text',
      });
      expect(progress.at(-1)).toBe(ROWS.length);
      for (const row of ROWS) expect(await manager.get(row.tenant, row.name)).toBe(row.value);
      const versions = await manager.versions(TENANTS[0] ?? '', 'svc-0/api-key');
      expect(versions).toEqual([expect.objectContaining({ version: 1, origin: 'import', isCurrent: true })]);
      const legacy = await adminQuery(db.name, `SELECT to_regclass('public.tenant_secrets_legacy') AS t`);
      expect(legacy[0]?.t).toBeNull();
      const audit = await adminQuery<{ n: string; text: string }>(
        db.name,
        `SELECT count(*) AS n, string_agg(coalesce(details::text, '') || coalesce(context::text, ''), ' ') AS text
           FROM tenant_secret_audit WHERE action = 'secret.imported' AND outcome = 'success'`,
      );
      expect(Number(audit[0]?.n)).toBe(ROWS.length);
      expect(audit[0]?.text).not.toContain(LEGACY_KEY);
      expect(audit[0]?.text).not.toContain('värde');
      const finished = await adminQuery<{ details: unknown }>(
        db.name,
        `SELECT details FROM tenant_secret_audit WHERE action = 'legacy.import_finished'`,
      );
      expect(finished[0]?.details).toEqual({
        imported: ROWS.length,
        imported_total: ROWS.length,
        left: 0,
        table_dropped: true,
      });
      // ciphertexts are ours now (random IV + MAC): the same value for two tenants differs
      await manager.set(TENANTS[0] ?? '', 'same', 'x');
      await manager.set(TENANTS[1] ?? '', 'same', 'x');
      const same = await adminQuery<{ n: string }>(
        db.name,
        `SELECT count(DISTINCT encrypted_value) AS n FROM tenant_secrets WHERE key_name = 'same'`,
      );
      expect(Number(same[0]?.n)).toBe(2);
      // running it again is a no-op
      expect(await manager.importLegacy({ legacyKey: LEGACY_KEY })).toEqual({
        imported: 0,
        importedTotal: ROWS.length,
        batches: 0,
        legacyTableDropped: false,
        storage: null,
      });
    } finally {
      await manager.close();
    }
  });

  it('stops at a row that does not decrypt to UTF-8, loses nothing, and resumes', async () => {
    const db = await legacyDatabase();
    // a row whose plaintext is not UTF-8, encrypted exactly as the seed did
    const bad = { tenant: TENANTS[1] ?? '', name: 'svc-0/zzz-broken' };
    await adminQuery(
      db.name,
      `INSERT INTO tenant_secrets (tenant_id, key_name, encrypted_value, rotated_at)
       VALUES ($1, $2, encode(encrypt('\\xfffe'::bytea, $3::bytea, 'aes-cbc'), 'base64'), now())`,
      [bad.tenant, bad.name, LEGACY_KEY],
    );
    const manager = managerOn(db.url);
    try {
      const error = await manager
        .importLegacy({ legacyKey: LEGACY_KEY, batchSize: 4 })
        .catch((e: unknown) => e);
      expect(error).toBeInstanceOf(LegacyImportError);
      expect(error).toMatchObject({ reason: 'legacy_decrypt', tenantId: bad.tenant, keyName: bad.name });
      // rows of tenant 0 (first batch) are imported; the bad row and later ones are still in the legacy table
      const left = await adminQuery<{ tenant_id: string; key_name: string }>(
        db.name,
        `SELECT tenant_id::text, key_name FROM tenant_secrets_legacy ORDER BY tenant_id, key_name`,
      );
      expect(left).toContainEqual({ tenant_id: bad.tenant, key_name: bad.name });
      const imported = ROWS.filter(
        (r) => !left.some((l) => l.tenant_id === r.tenant && l.key_name === r.name),
      );
      expect(imported.length).toBeGreaterThan(0);
      expect(imported.length + left.length).toBe(ROWS.length + 1);
      for (const row of imported) expect(await manager.get(row.tenant, row.name)).toBe(row.value);
      const failure = await adminQuery<{ error_code: string; key_name: string }>(
        db.name,
        `SELECT error_code, key_name FROM tenant_secret_audit WHERE action = 'secret.imported' AND outcome = 'failure'`,
      );
      expect(failure).toEqual([{ error_code: 'LEGACY_DECRYPT', key_name: bad.name }]);

      // the operator removes (or fixes) the bad row, then runs the import again: it resumes
      await adminQuery(db.name, `DELETE FROM tenant_secrets_legacy WHERE key_name = $1`, [bad.name]);
      const rest = await manager.importLegacy({ legacyKey: LEGACY_KEY, batchSize: 4 });
      expect(rest.imported).toBe(ROWS.length - imported.length);
      expect(rest.legacyTableDropped).toBe(true);
      for (const row of ROWS) expect(await manager.get(row.tenant, row.name)).toBe(row.value);
    } finally {
      await manager.close();
    }
  });

  it('imports a table that stored encrypt() output as bytea, and counts rows across interrupted runs', async () => {
    const db = await freshDatabase('legacy');
    await adminQuery(
      db.name,
      `CREATE EXTENSION IF NOT EXISTS pgcrypto;
       CREATE TABLE tenant_secrets (tenant_id uuid NOT NULL, key_name text NOT NULL, encrypted_value bytea NOT NULL,
                                    rotated_at timestamptz, PRIMARY KEY (tenant_id, key_name))`,
    );
    for (const row of ROWS) {
      await adminQuery(
        db.name,
        `INSERT INTO tenant_secrets VALUES ($1, $2, encrypt(convert_to($3, 'UTF8'), $4::bytea, 'aes-cbc'), now())`,
        [row.tenant, row.name, row.value, LEGACY_KEY],
      );
    }
    const manager = managerOn(db.url);
    try {
      // A wrong key is refused in this form too.
      await expect(manager.importLegacy({ legacyKey: 'not-the-key' })).rejects.toMatchObject({
        reason: 'wrong_key',
      });
      // Stopped after the first batch (as an operator would with Ctrl-C), then resumed.
      const abort = new AbortController();
      const stopped = await manager
        .importLegacy({
          legacyKey: LEGACY_KEY,
          batchSize: 4,
          signal: abort.signal,
          onProgress: () => abort.abort(),
        })
        .catch((e: unknown) => e);
      expect(stopped).toBeInstanceOf(OperationAbortedError);
      const first = (stopped as OperationAbortedError).done;
      expect(first).toBeGreaterThan(0);
      const rest = await manager.importLegacy({ legacyKey: LEGACY_KEY, batchSize: 4 });
      expect(rest).toMatchObject({
        imported: ROWS.length - first,
        importedTotal: ROWS.length,
        legacyTableDropped: true,
        storage: 'bytea',
      });
      for (const row of ROWS) expect(await manager.get(row.tenant, row.name)).toBe(row.value);
      await manager.sealAudit();
      const finished = await adminQuery<{ outcome: string; details: Record<string, unknown> }>(
        db.name,
        `SELECT outcome, details FROM tenant_secret_audit WHERE action = 'legacy.import_finished' ORDER BY seq`,
      );
      expect(finished.at(-1)).toEqual({
        outcome: 'success',
        details: { imported: ROWS.length - first, imported_total: ROWS.length, left: 0, table_dropped: true },
      });
      const imported = await adminQuery<{ form: string; n: number }>(
        db.name,
        `SELECT details->>'form' AS form, count(*)::int AS n FROM tenant_secret_audit
          WHERE action = 'secret.imported' AND outcome = 'success' GROUP BY 1`,
      );
      expect(imported).toEqual([{ form: 'bytea', n: ROWS.length }]);
    } finally {
      await manager.close();
    }
  });

  it('a text row that is not base64 is reported precisely: reason, tenant and key; nothing lost', async () => {
    const db = await legacyDatabase();
    const bad = { tenant: TENANTS[2] ?? '', name: 'svc-9/not-base64' };
    await adminQuery(
      db.name,
      `INSERT INTO tenant_secrets (tenant_id, key_name, encrypted_value, rotated_at) VALUES ($1, $2, 'this is not base64!', now())`,
      [bad.tenant, bad.name],
    );
    const manager = managerOn(db.url);
    try {
      const error = await manager
        .importLegacy({ legacyKey: LEGACY_KEY, batchSize: 50 })
        .catch((e: unknown) => e);
      expect(error).toBeInstanceOf(LegacyImportError);
      expect(error).toMatchObject({ reason: 'not_base64', tenantId: bad.tenant, keyName: bad.name });
      expect((error as Error).message).toContain(bad.name);
      expect((error as Error).message).toMatch(/not base64/);
      expect((error as Error).message).not.toContain('this is not base64!');
      const left = await adminQuery<{ key_name: string }>(
        db.name,
        `SELECT key_name FROM tenant_secrets_legacy`,
      );
      expect(left.map((r) => r.key_name)).toContain(bad.name);
      await manager.sealAudit();
      const failure = await adminQuery<{ error_code: string; key_name: string }>(
        db.name,
        `SELECT error_code, key_name FROM tenant_secret_audit WHERE action = 'secret.imported' AND outcome = 'failure'`,
      );
      expect(failure).toEqual([{ error_code: 'NOT_BASE64', key_name: bad.name }]);
      // Repaired by the operator (here: the row removed), the import resumes and finishes.
      await adminQuery(db.name, `DELETE FROM tenant_secrets_legacy WHERE key_name = $1`, [bad.name]);
      const rest = await manager.importLegacy({ legacyKey: LEGACY_KEY });
      expect(rest.legacyTableDropped).toBe(true);
      expect(rest.importedTotal).toBe(ROWS.length);
      for (const row of ROWS) expect(await manager.get(row.tenant, row.name)).toBe(row.value);
    } finally {
      await manager.close();
    }
  });
});
