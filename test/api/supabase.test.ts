import pg from 'pg';
import { describe, expect, it } from 'vitest';
import { createSecretsManager, exportSchemaSql, LATEST_SCHEMA_VERSION } from '../../src/index.js';
import { adminQuery, freshDatabase, TEST_KEY, urlFor } from '../support/db.js';
import { supabaseShape } from '../support/supabase.js';

/** Applies a script the way a migration tool does: one simple-protocol query. */
async function apply(database: string, sql: string): Promise<void> {
  await adminQuery(database, sql);
}

/** Runs `sql` as `role` the way PostgREST does: log in as authenticator, SET ROLE. */
async function asRole<R extends pg.QueryResultRow>(
  database: string,
  role: string,
  sql: string,
  params: unknown[] = [],
) {
  const url = new URL(urlFor(database));
  url.username = 'authenticator';
  url.password = 'authenticator';
  const client = new pg.Client({ connectionString: url.toString() });
  await client.connect();
  try {
    await client.query(`SET ROLE ${role}`);
    return (await client.query<R>(sql, params)).rows;
  } finally {
    await client.end();
  }
}

describe('Supabase-shaped database', () => {
  it('the exported script installs in public with pgcrypto in "extensions", re-applies as a no-op, and upgrades incrementally', async () => {
    const db = await freshDatabase('supa');
    await supabaseShape(db.name);
    const script = await exportSchemaSql({ schema: 'public', grantTo: ['service_role'] });
    await apply(db.name, script);
    await apply(db.name, script); // a second `supabase db push` of the same file
    const [pgc] = await adminQuery<{ n: string }>(
      db.name,
      `SELECT n.nspname AS n FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace WHERE e.extname = 'pgcrypto'`,
    );
    expect(pgc?.n).toBe('extensions');
    // An incremental script from the current version: functions and grants only.
    const incremental = await exportSchemaSql({
      schema: 'public',
      grantTo: ['service_role'],
      fromVersion: LATEST_SCHEMA_VERSION,
    });
    expect(incremental).not.toContain('tenant_secret_audit_pending PARTITION OF');
    await apply(db.name, incremental);

    // The application (as postgres, the owner) registers its key and works.
    const manager = createSecretsManager({ connectionString: db.url, masterKey: TEST_KEY, actor: 'app' });
    try {
      expect((await manager.registerMasterKey()).registered).toEqual(manager.masterKeyIds);
      await manager.set('acme', 'stripe/api-key', 'sk_live_supabase');
      const ready = await manager.ready();
      expect(ready.schemaVersion).toBe(LATEST_SCHEMA_VERSION);

      // supabase.rpc('get_tenant_secret', { p_tenant_id, p_key_name, p_key_bundle }) as service_role:
      // PostgREST passes bytea as its hex text form.
      const bundle = manager.tenantKeyBundle('acme').toSqlHex();
      const [read] = await asRole<{ v: string }>(
        db.name,
        'service_role',
        'SELECT public.get_tenant_secret($1, $2, $3::bytea) AS v',
        ['acme', 'stripe/api-key', bundle],
      );
      expect(read?.v).toBe('sk_live_supabase');
      const [written] = await asRole<{ v: number }>(
        db.name,
        'service_role',
        'SELECT public.upsert_tenant_secret($1, $2, $3, $4::bytea) AS v',
        ['acme', 'stripe/api-key', 'sk_live_rotated', bundle],
      );
      expect(written?.v).toBe(2);

      // anon and authenticated hold nothing, despite Supabase's default privileges.
      for (const role of ['anon', 'authenticated']) {
        await expect(
          asRole(db.name, role, 'SELECT public.get_tenant_secret($1, $2, $3::bytea)', [
            'acme',
            'stripe/api-key',
            bundle,
          ]),
        ).rejects.toThrow(/permission denied/);
        await expect(asRole(db.name, role, 'SELECT count(*) FROM public.tenant_secrets')).rejects.toThrow(
          /permission denied/,
        );
      }
      // Nor on the audit partitions the sealer creates later (default privileges would grant them).
      await manager.sealAudit();
      const grants = await adminQuery<{ n: string }>(
        db.name,
        `SELECT count(*)::text AS n FROM pg_class c, aclexplode(c.relacl) a
          WHERE c.relname LIKE 'tenant\\_secret%' AND a.grantee IN (SELECT oid FROM pg_roles WHERE rolname IN ('anon', 'authenticated', 'service_role'))`,
      );
      expect(grants[0]?.n).toBe('0');
      const status = await manager.status();
      expect(status.problems.filter((p) => p.severity === 'error')).toEqual([]);
    } finally {
      await manager.close();
    }
  });

  it('with a dedicated schema and a non-superuser owner: anon cannot even see the schema', async () => {
    const db = await freshDatabase('supa');
    await supabaseShape(db.name);
    await apply(
      db.name,
      await exportSchemaSql({
        schema: 'tenant_secrets',
        owner: 'tenant_secrets_owner',
        grantTo: ['service_role'],
      }),
    );
    const owners = await adminQuery<{ owner: string; super: boolean }>(
      db.name,
      `SELECT DISTINCT pg_get_userbyid(c.relowner) AS owner, r.rolsuper AS super FROM pg_class c JOIN pg_roles r ON r.oid = c.relowner
        WHERE c.relnamespace = 'tenant_secrets'::regnamespace`,
    );
    expect(owners).toEqual([{ owner: 'tenant_secrets_owner', super: false }]);
    const manager = createSecretsManager({
      connectionString: db.url,
      masterKey: TEST_KEY,
      schema: 'tenant_secrets',
    });
    try {
      await manager.registerMasterKey();
      await manager.set('acme', 'k', 'v');
      expect(await manager.get('acme', 'k')).toBe('v');
      await expect(
        asRole(db.name, 'anon', 'SELECT count(*) FROM tenant_secrets.tenant_secrets'),
      ).rejects.toThrow(/permission denied/);
      const bundle = manager.tenantKeyBundle('acme').toSqlHex();
      const [read] = await asRole<{ v: string }>(
        db.name,
        'service_role',
        'SELECT tenant_secrets.get_tenant_secret($1, $2, $3::bytea) AS v',
        ['acme', 'k', bundle],
      );
      expect(read?.v).toBe('v');
    } finally {
      await manager.close();
    }
  });
});
