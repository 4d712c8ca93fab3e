import pg from 'pg';
import { beforeAll, describe, expect, it } from 'vitest';
import { checkpointMac } from '../../src/audit/verify.js';
import { createSecretsManager, exportSchemaSql, MasterKey, type SecretsManager } from '../../src/index.js';
import { MIGRATIONS } from '../../src/schema/sql.generated.js';
import { adminQuery, directUrlFor, freshDatabase, TEST_KEY } from '../support/db.js';

/**
 * Upgrade from release 0.1.0: a database made by the released migrations 000001-000005 and filled
 * through the 0.1.0 SQL functions (as the 0.1.0 library called them: per-tenant KEKs derived from the
 * master key), with several versions, metadata, a deletion, a destroyed version, reads, and an audit
 * trail verified and checkpointed as 0.1.0 did. Then the current migrate() runs on it.
 */

const key = MasterKey.parse(TEST_KEY);
const TENANTS = ['old-a', 'old-b', 'old-c'];
const KEYS = ['db/password', 'api/token', 'smtp'];
const secretValue = (tenant: string, name: string, version: number) => `${tenant}:${name}:v${version} ✓`;

let db: { name: string; url: string };
let client: pg.Client;
let oldRecords = 0;
let oldCheckpoints = 0;

/** A call to a 0.1.0 function, with the KEK arrays 0.1.0 sent. */
async function old<R extends pg.QueryResultRow>(
  sql: string,
  tenant: string,
  params: unknown[],
): Promise<R[]> {
  return (
    await client.query<R>(sql.replace('$KEYS', '$2::text[], $3::bytea[]'), [
      tenant,
      [key.id],
      [key.deriveTenantKek(tenant)],
      ...params,
    ])
  ).rows;
}

async function installRelease010(): Promise<void> {
  await client.query('CREATE EXTENSION IF NOT EXISTS pgcrypto');
  await client.query(`CREATE TABLE public.tenant_secret_migrations (
    id integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())`);
  for (const m of MIGRATIONS.filter((m) => m.id <= 5)) {
    await client.query(m.sql.replace(/:TS\b/g, '"public"').replace(/:PGC\b/g, '"public"'));
    await client.query('INSERT INTO public.tenant_secret_migrations (id, name) VALUES ($1, $2)', [
      m.id,
      m.name,
    ]);
  }
}

async function populate(): Promise<void> {
  const ctx = JSON.stringify({ actor: 'release-0.1.0' });
  for (const tenant of TENANTS) {
    for (const name of KEYS) {
      for (let v = 1; v <= 3; v++) {
        const [row] = await old<{ status: string; version: number }>(
          `SELECT * FROM public.tenant_secret_write($1, $4, convert_to($5, 'UTF8'), $KEYS, 'set', $6::jsonb, $7::jsonb)`,
          tenant,
          [
            name,
            secretValue(tenant, name, v),
            JSON.stringify(v === 1 ? { description: `${name} of ${tenant}`, labels: { env: 'prod' } } : {}),
            ctx,
          ],
        );
        expect(row).toMatchObject({ status: 'ok', version: v });
      }
      const [read] = await old<{ status: string; value: Buffer }>(
        `SELECT * FROM public.tenant_secret_read($1, $4, $KEYS, '{}'::jsonb, $5::jsonb)`,
        tenant,
        [name, ctx],
      );
      expect(read?.value.toString('utf8')).toBe(secretValue(tenant, name, 3));
    }
    // A soft deletion and a destroyed version.
    await client.query(`SELECT * FROM public.tenant_secret_delete($1, 'smtp', '{}'::jsonb, $2::jsonb)`, [
      tenant,
      ctx,
    ]);
    await client.query(
      `SELECT * FROM public.tenant_secret_destroy_versions($1, 'api/token', ARRAY[1], $2::jsonb)`,
      [tenant, ctx],
    );
  }
  // The audit trail, verified as 0.1.0 did, with a signed checkpoint at each chain's end.
  const chains = (
    await client.query<{ chain_id: string }>(`SELECT chain_id FROM public.tenant_secret_audit_chains()`)
  ).rows;
  for (const { chain_id } of chains) {
    const [page] = (
      await client.query<{ last_seq: string; last_hash: Buffer; done: boolean; reason: string | null }>(
        `SELECT * FROM public.tenant_secret_audit_verify_page($1, NULL, NULL, 100000)`,
        [chain_id],
      )
    ).rows;
    expect(page, chain_id).toMatchObject({ done: true, reason: null });
    if (!page) continue;
    const added = await client.query<{ ok: boolean }>(
      `SELECT public.tenant_secret_audit_checkpoint_add($1, $2, $3, $4, $5) AS ok`,
      [
        chain_id,
        page.last_seq,
        page.last_hash,
        key.id,
        checkpointMac(key, chain_id, BigInt(page.last_seq), page.last_hash),
      ],
    );
    expect(added.rows[0]?.ok).toBe(true);
  }
  await client.query(`SELECT public.tenant_secret_audit_verified(true, '{"chains": 4}'::jsonb, $1::jsonb)`, [
    ctx,
  ]);
  oldRecords = Number(
    (await client.query(`SELECT count(*) AS n FROM public.tenant_secret_audit`)).rows[0]?.n,
  );
  oldCheckpoints = Number(
    (await client.query(`SELECT count(*) AS n FROM public.tenant_secret_audit_checkpoints`)).rows[0]?.n,
  );
}

/** Catalog rows of tenant-secrets' objects with their row versions: any rewrite shows. */
const catalog = () =>
  adminQuery<{ what: string }>(
    db.name,
    `SELECT 'fn ' || p.oid::regprocedure::text || ' ' || p.xmin::text || ' ' || coalesce(p.proacl::text, '') AS what
       FROM pg_proc p WHERE p.pronamespace = 'public'::regnamespace AND (p.proname LIKE 'tenant\\_secret%' OR p.proname LIKE '\\_ts\\_%')
     UNION ALL
     SELECT 'rel ' || c.oid::regclass::text || ' ' || c.xmin::text FROM pg_class c
      WHERE c.relnamespace = 'public'::regnamespace AND c.relname LIKE 'tenant\\_secret%'
     UNION ALL
     SELECT 'trigger ' || t.tgname || ' ' || t.xmin::text FROM pg_trigger t
      WHERE t.tgrelid IN (SELECT c.oid FROM pg_class c WHERE c.relnamespace = 'public'::regnamespace)
     ORDER BY 1`,
  );

const wrappedLengths = async (tenant: string) =>
  (
    await adminQuery<{ state: string; len: number | null }>(
      db.name,
      `SELECT state, octet_length(wrapped_key) AS len FROM tenant_secret_keys WHERE tenant_id = $1 ORDER BY version`,
      [tenant],
    )
  ).map((r) => [r.state, r.len]);

describe('upgrade from release 0.1.0 with data', () => {
  let manager: SecretsManager;

  beforeAll(async () => {
    db = await freshDatabase('upgrade');
    client = new pg.Client({ connectionString: directUrlFor(db.name) });
    await client.connect();
    try {
      await installRelease010();
      await populate();
    } finally {
      await client.end();
    }
    manager = createSecretsManager({
      connectionString: db.url,
      masterKey: TEST_KEY,
      auditSealIntervalMs: 0,
      env: {},
    });
    return () => manager.close();
  });

  it('migrate() applies the round-2 migration and installs the functions', async () => {
    expect(oldRecords).toBeGreaterThan(40);
    const result = await manager.migrate();
    expect(result).toMatchObject({
      applied: ['audit_sealing_key_proofs', 'access_tokens_anchors_guards'],
      functionsInstalled: true,
      registered: [key.id],
    });
    const status = await manager.status();
    expect(status.problems.filter((p) => p.severity === 'error')).toEqual([]);
  });

  it('every value, version and piece of metadata reads back', async () => {
    for (const tenant of TENANTS) {
      expect(await manager.get(tenant, 'db/password')).toBe(secretValue(tenant, 'db/password', 3));
      for (let v = 1; v <= 3; v++) {
        expect(await manager.get(tenant, 'db/password', { version: v })).toBe(
          secretValue(tenant, 'db/password', v),
        );
      }
      expect(await manager.get(tenant, 'api/token', { version: 1 })).toBeNull();
      expect(await manager.get(tenant, 'api/token', { version: 2 })).toBe(
        secretValue(tenant, 'api/token', 2),
      );
      const versions = await manager.versions(tenant, 'api/token');
      expect(versions.map((v) => [v.version, v.state, v.origin, v.createdBy])).toEqual([
        [3, 'enabled', 'set', 'release-0.1.0'],
        [2, 'enabled', 'set', 'release-0.1.0'],
        [1, 'destroyed', 'set', 'release-0.1.0'],
      ]);
      const listed = await manager.list(tenant);
      expect(listed.map((s) => [s.keyName, s.currentVersion, s.description, s.labels])).toEqual([
        ['api/token', 3, `api/token of ${tenant}`, { env: 'prod' }],
        ['db/password', 3, `db/password of ${tenant}`, { env: 'prod' }],
      ]);
      // The deletion made by 0.1.0 is still a deletion, and can be undone.
      expect(await manager.get(tenant, 'smtp')).toBeNull();
      expect(await manager.restore(tenant, 'smtp')).toEqual({ version: 3 });
      expect(await manager.get(tenant, 'smtp')).toBe(secretValue(tenant, 'smtp', 3));
    }
  });

  it('the 0.1.0 audit records and checkpoints verify together with new records', async () => {
    await manager.set('old-a', 'db/password', 'after the upgrade');
    const [v1] = await adminQuery<{ n: number }>(
      db.name,
      `SELECT count(*)::int AS n FROM tenant_secret_audit_v1`,
    );
    expect(v1?.n).toBe(oldRecords);
    const result = await manager.verifyAudit();
    expect(result.ok).toBe(true);
    expect(result.records).toBeGreaterThan(oldRecords);
    expect(result.checkpoints).toBeGreaterThanOrEqual(oldCheckpoints);
    const chain = await manager.audit('old-a', { limit: 1000 });
    const sealed = chain.records.filter((r) => r.action === 'secret.updated' && r.keyName === 'db/password');
    expect(sealed.map((r) => r.version)).toEqual([2, 3, 4]);
  });

  it('0.1.0 data keys (32 bytes) keep working; new tenants get 64-byte keys; an old tenant rotates', async () => {
    // Wrapped lengths: 0x01 ‖ IV ‖ AES-CBC(key) ‖ MAC = 97 bytes for 32, 129 for 64.
    expect(await wrappedLengths('old-b')).toEqual([['active', 97]]);
    await manager.set('old-b', 'new-key', 'written after the upgrade');
    expect(await manager.get('old-b', 'new-key')).toBe('written after the upgrade');
    expect(await wrappedLengths('old-b')).toEqual([['active', 97]]);
    await manager.set('brand-new', 'k', 'fresh');
    expect(await wrappedLengths('brand-new')).toEqual([['active', 129]]);

    const rotated = await manager.rotateTenantKey('old-b');
    expect(rotated).toMatchObject({ keyVersion: 2, previousKeyVersion: 1, destroyedKeyVersions: [1] });
    expect(await wrappedLengths('old-b')).toEqual([
      ['destroyed', null],
      ['active', 129],
    ]);
    for (let v = 1; v <= 3; v++) {
      expect(await manager.get('old-b', 'db/password', { version: v })).toBe(
        secretValue('old-b', 'db/password', v),
      );
    }
    expect(await manager.get('old-b', 'new-key')).toBe('written after the upgrade');
    expect((await manager.verifyAudit()).ok).toBe(true);
  });

  it('the exported installer re-applied is a no-op, and so is migrate()', async () => {
    const before = await catalog();
    const script = await exportSchemaSql({ schema: 'public' });
    const c = new pg.Client({ connectionString: directUrlFor(db.name) });
    await c.connect();
    try {
      await c.query(script);
    } finally {
      await c.end();
    }
    expect(await catalog()).toEqual(before);
    expect(await manager.migrate()).toMatchObject({ applied: [], functionsInstalled: false, removed: [] });
    expect(await catalog()).toEqual(before);
    expect(await manager.get('old-c', 'db/password')).toBe(secretValue('old-c', 'db/password', 3));
  });
});
