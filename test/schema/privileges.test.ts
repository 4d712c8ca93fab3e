import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createSecretsManager, type SecretsManager } from '../../src/index.js';
import { adminQuery, freshDatabase, TEST_KEY, urlFor } from '../support/db.js';

/**
 * What a low-privilege database user (or Supabase's anon / authenticated) can do: nothing, unless
 * granted EXECUTE; and even then only through the functions, whose pinned search_path a caller
 * cannot subvert.
 */
const suffix = randomBytes(4).toString('hex');
const intruder = `ts_intruder_${suffix}`;
const app = `ts_app_${suffix}`;
const operator = `ts_operator_${suffix}`;
let db: { name: string; url: string };
let owner: SecretsManager;

const loginUrl = (role: string) => {
  const url = new URL(urlFor(db.name));
  url.username = role;
  url.password = 'pw';
  return url.toString();
};

async function asRole<T>(role: string, work: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: loginUrl(role) });
  await client.connect();
  try {
    return await work(client);
  } finally {
    await client.end();
  }
}

const sqlState = (promise: Promise<unknown>) =>
  promise.then(
    () => 'ok',
    (e: { code?: string }) => e.code,
  );

beforeAll(async () => {
  db = await freshDatabase();
  for (const role of [intruder, app, operator])
    await adminQuery('postgres', `CREATE ROLE ${role} LOGIN PASSWORD 'pw'`);
  // Supabase's roles, with Supabase's default privileges on public, which would hand them every new table.
  await adminQuery(
    'postgres',
    `DO $$BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'anon') THEN CREATE ROLE anon NOLOGIN; END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'authenticated') THEN CREATE ROLE authenticated NOLOGIN; END IF;
  END$$`,
  ).catch(() => undefined);
  await adminQuery(
    db.name,
    `GRANT USAGE ON SCHEMA public TO anon, authenticated, ${intruder};
    ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT ALL ON TABLES TO anon, authenticated, ${intruder};
    ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT ALL ON FUNCTIONS TO anon, authenticated;
    GRANT CREATE ON SCHEMA public TO ${intruder}`,
  );
  owner = createSecretsManager({ connectionString: db.url, masterKey: TEST_KEY });
  await owner.migrate({ grantTo: [app] });
  await owner.set('tenant-1', 'api-key', 'owner-secret');
});

afterAll(async () => {
  await owner.close();
  await adminQuery('postgres', `DROP DATABASE IF EXISTS ${db.name} WITH (FORCE)`);
  for (const role of [intruder, app, operator]) await adminQuery('postgres', `DROP ROLE IF EXISTS ${role}`);
});

/** Every table, partition and sequence of ours, as the catalog lists them. */
async function ourRelations(kinds: string): Promise<string[]> {
  const rows = await adminQuery<{ relname: string }>(
    db.name,
    `SELECT relname FROM pg_class WHERE relnamespace = 'public'::regnamespace AND relkind = ANY ($1::"char"[])
        AND relname LIKE 'tenant\\_secret%' ORDER BY relname`,
    [kinds.split('')],
  );
  return rows.map((r) => r.relname);
}

describe('PUBLIC and Supabase roles get nothing', () => {
  it('a role with no grants can neither read nor write any table, even with default privileges', async () => {
    await owner.sealAudit(); // the sealer creates the day's audit partition
    const tables = await ourRelations('rp');
    expect(tables).toEqual(
      expect.arrayContaining(['tenant_secrets', 'tenant_secret_keys', 'tenant_secret_master_keys']),
    );
    expect(tables.some((t) => /^tenant_secret_audit_p\d{8}$/.test(t))).toBe(true);
    await asRole(intruder, async (client) => {
      for (const table of tables) {
        expect.soft(await sqlState(client.query(`SELECT * FROM ${table}`)), table).toBe('42501');
        expect.soft(await sqlState(client.query(`TRUNCATE ${table}`)), table).toBe('42501');
      }
      for (const sequence of await ourRelations('S')) {
        expect.soft(await sqlState(client.query('SELECT nextval($1)', [sequence])), sequence).toBe('42501');
      }
      expect(await sqlState(client.query('DELETE FROM tenant_secret_audit'))).toBe('42501');
      expect(await sqlState(client.query("UPDATE tenant_secret_audit SET actor = 'x'"))).toBe('42501');
      expect(await sqlState(client.query('TRUNCATE tenant_secret_audit'))).toBe('42501');
    });
  });

  it('a role with no grants cannot execute any function, internal or public', async () => {
    const bundle = owner.tenantKeyBundle('tenant-1');
    await asRole(intruder, async (client) => {
      expect(
        await sqlState(
          client.query('SELECT get_tenant_secret($1, $2, $3)', ['tenant-1', 'api-key', bundle.bytes]),
        ),
      ).toBe('42501');
      expect(await sqlState(client.query("SELECT tenant_secret_list('tenant-1', NULL::bytea)"))).toBe(
        '42501',
      );
      expect(await sqlState(client.query('SELECT tenant_secret_quiet()'))).toBe('42501');
      expect(await sqlState(client.query("SELECT * FROM tenant_secret_purge_tenant('tenant-1')"))).toBe(
        '42501',
      );
      expect(
        await sqlState(
          client.query("SELECT _ts_audit('tenant-1', 'forged', NULL, NULL, 'success', NULL, '{}', NULL)"),
        ),
      ).toBe('42501');
    });
  });

  it('anon and authenticated hold no privilege on any tenant-secrets object', async () => {
    const rows = await adminQuery<{ n: number }>(
      db.name,
      `SELECT count(*)::int AS n FROM (
         SELECT 1 FROM information_schema.role_table_grants WHERE grantee IN ('anon', 'authenticated', 'PUBLIC') AND table_name LIKE 'tenant\\_secret%'
         UNION ALL
         SELECT 1 FROM information_schema.role_routine_grants WHERE grantee IN ('anon', 'authenticated', 'PUBLIC')
           AND (routine_name LIKE 'tenant\\_secret%' OR routine_name LIKE '\\_ts\\_%' OR routine_name IN ('get_tenant_secret', 'upsert_tenant_secret'))) g`,
    );
    expect(rows[0]?.n).toBe(0);
    const rls = await adminQuery<{ relname: string; relrowsecurity: boolean }>(
      db.name,
      "SELECT relname, relrowsecurity FROM pg_class WHERE relname LIKE 'tenant\\_secret%' AND relkind = 'r'",
    );
    expect(rls.length).toBeGreaterThanOrEqual(6);
    for (const table of rls) expect(table.relrowsecurity).toBe(true);
  });
});

describe('the service role (grantTo) works only through the functions', () => {
  it('can set and get through the library, but cannot select the tables or call internal helpers', async () => {
    const service = createSecretsManager({
      connectionString: loginUrl(app),
      masterKey: TEST_KEY,
      actor: 'svc',
    });
    try {
      await service.set('tenant-2', 'token', 'service-value');
      expect(await service.get('tenant-2', 'token')).toBe('service-value');
      expect(await service.get('tenant-1', 'api-key')).toBe('owner-secret');
    } finally {
      await service.close();
    }
    await asRole(app, async (client) => {
      expect(await sqlState(client.query('SELECT encrypted_value FROM tenant_secrets'))).toBe('42501');
      expect(
        await sqlState(
          client.query("SELECT _ts_seal('\\x00'::bytea, '\\x00'::bytea, '\\x00'::bytea, '\\x00'::bytea)"),
        ),
      ).toBe('42501');
    });
  });

  it('cannot subvert the functions by shadowing pgcrypto, operators or tables in its own search_path', async () => {
    // The intruder plants look-alikes that would leak or weaken crypto if our functions resolved
    // unqualified names: a constant IV generator, a table named like ours in pg_temp.
    await adminQuery(
      db.name,
      `GRANT EXECUTE ON FUNCTION tenant_secret_write(text, text, bytea, bytea, text, text, jsonb),
        tenant_secret_read(text, text, bytea, jsonb, jsonb) TO ${intruder}`,
    );
    const bundle = owner.tenantKeyBundle('tenant-3');
    await asRole(intruder, async (client) => {
      await client.query(`CREATE SCHEMA IF NOT EXISTS evil_${suffix}`).catch(async () => {
        await client.query('SELECT 1');
      });
      await client
        .query(
          `CREATE FUNCTION public.gen_random_bytes(integer) RETURNS bytea LANGUAGE sql AS $$ SELECT '\\x00000000000000000000000000000000'::bytea $$`,
        )
        .catch(() => undefined);
      await client.query('CREATE TEMP TABLE tenant_secrets (LIKE pg_catalog.pg_class)');
      await client.query('SET search_path = pg_temp, public');
      for (const key of ['a', 'b']) {
        const r = await client.query('SELECT status FROM tenant_secret_write($1, $2, $3, $4)', [
          'tenant-3',
          key,
          Buffer.from('same'),
          bundle.bytes,
        ]);
        expect(r.rows[0].status).toBe('ok');
      }
    });
    const ivs = await adminQuery<{ iv: Buffer }>(
      db.name,
      "SELECT substring(encrypted_value, 2, 16) AS iv FROM tenant_secrets WHERE tenant_id = 'tenant-3'",
    );
    expect(ivs).toHaveLength(2);
    expect(ivs[0]?.iv.equals(ivs[1]?.iv as Buffer)).toBe(false);
    expect(ivs[0]?.iv.equals(Buffer.alloc(16))).toBe(false);
    expect(await owner.get('tenant-3', 'a')).toBe('same');
  });

  it('the application role cannot run operator functions (purge a tenant, rotate keys, read the audit trail); an operator can', async () => {
    await owner.migrate({ grantOperatorTo: [operator] });
    const operatorOnly = [
      "SELECT * FROM tenant_secret_purge_tenant('tenant-1')",
      'SELECT tenant_secret_key_status()',
      "SELECT * FROM tenant_secret_audit_query('tenant-1')",
      'SELECT * FROM tenant_secret_purge_deleted(NULL)',
      "SELECT * FROM tenant_secret_audit_prune(now() - interval '1 day')",
      "SELECT * FROM tenant_secret_rotate_key('tenant-1', NULL)",
      'SELECT tenant_secret_health()',
    ];
    await asRole(app, async (client) => {
      for (const sql of operatorOnly) expect(await sqlState(client.query(sql))).toBe('42501');
    });
    await asRole(operator, async (client) => {
      expect(await sqlState(client.query('SELECT tenant_secret_key_status()'))).toBe('ok');
      expect(await sqlState(client.query("SELECT * FROM tenant_secret_audit_query('tenant-1')"))).toBe('ok');
      expect(await sqlState(client.query('SELECT encrypted_value FROM tenant_secrets'))).toBe('42501');
    });
    expect(await owner.get('tenant-1', 'api-key')).toBe('owner-secret');
    // status() works for an operator (it reads the schema version through the health function),
    // and stays refused to the application role, which checks readiness with ready().
    const asOperator = createSecretsManager({ connectionString: loginUrl(operator), masterKey: TEST_KEY });
    const asApp = createSecretsManager({ connectionString: loginUrl(app), masterKey: TEST_KEY });
    try {
      const status = await asOperator.status();
      expect(status.schemaVersion).toBe((await owner.status()).schemaVersion);
      await expect(asApp.status()).rejects.toMatchObject({ sqlState: '42501' });
    } finally {
      await asOperator.close();
      await asApp.close();
    }
  });

  it('every SECURITY DEFINER function pins search_path', async () => {
    const rows = await adminQuery<{ proname: string; proconfig: string[] | null }>(
      db.name,
      "SELECT proname, proconfig FROM pg_proc WHERE pronamespace = 'public'::regnamespace AND prosecdef",
    );
    expect(rows.length).toBeGreaterThan(5);
    for (const fn of rows) expect(fn.proconfig ?? []).toContain('search_path=""');
  });

  it('every function that takes key material plans generically (no custom plan holds keys or values as constants)', async () => {
    const rows = await adminQuery<{ proname: string; proconfig: string[] | null }>(
      db.name,
      `SELECT p.proname, p.proconfig FROM pg_proc p
        WHERE p.pronamespace = 'public'::regnamespace AND p.prosecdef AND p.prokind = 'f'
          AND EXISTS (SELECT 1 FROM unnest(p.proargnames) a(n) WHERE a.n IN ('p_bundle', 'p_key_bundle', 'p_bundles', 'p_proof_key', 'p_value', 'p_plain_value', 'p_legacy_key'))`,
    );
    expect(rows.map((r) => r.proname)).toEqual(
      expect.arrayContaining([
        'tenant_secret_read',
        'tenant_secret_write',
        'upsert_tenant_secret',
        'get_tenant_secret',
      ]),
    );
    for (const fn of rows) {
      expect({ fn: fn.proname, config: fn.proconfig }).toEqual({
        fn: fn.proname,
        config: expect.arrayContaining(['plan_cache_mode=force_generic_plan']),
      });
    }
  });
});
