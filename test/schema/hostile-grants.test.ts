import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createSecretsManager, type SecretsManager } from '../../src/index.js';
import { adminQuery, freshDatabase, TEST_KEY } from '../support/db.js';
import { loginRoles, roleUrl, sqlState, supabaseRoles } from '../support/roles.js';

/**
 * The schema survives hostile grants. Supabase tutorials run
 *   GRANT ALL ON ALL TABLES / FUNCTIONS / SEQUENCES IN SCHEMA public TO anon, authenticated
 * after migrations, and Supabase's default privileges hand every new table and function to anon,
 * authenticated and service_role. Here the API roles are reached the way PostgREST does: a login role
 * that is a member of them and sets one per transaction (SET LOCAL ROLE).
 */
let db: { name: string; url: string };
let owner: SecretsManager;
let api: string;
let app: string;
let operator: string;

const API_ROLES = 'anon, authenticated, service_role';

/** Runs `work` as `role` (anon, authenticated, service_role) in one transaction, rolled back unless `commit`. */
async function asApiRole<T>(
  role: string,
  work: (client: pg.Client) => Promise<T>,
  commit = false,
): Promise<T> {
  const client = new pg.Client({ connectionString: roleUrl(db.name, api) });
  await client.connect();
  try {
    await client.query('BEGIN');
    await client.query(`SET LOCAL ROLE ${role}`);
    const result = await work(client);
    await client.query(commit ? 'COMMIT' : 'ROLLBACK');
    return result;
  } finally {
    await client.end();
  }
}

/** One statement as `role`, in a transaction of its own: its SQLSTATE, or 'ok'. */
const stateAs = (role: string, sql: string, params: unknown[] = []) =>
  asApiRole(role, (c) => sqlState(c.query(sql, params)), true).catch(
    (e: { code?: string }) => e.code ?? String(e),
  );

async function ourTables(): Promise<string[]> {
  const rows = await adminQuery<{ relname: string }>(
    db.name,
    `SELECT relname FROM pg_class WHERE relnamespace = 'public'::regnamespace AND relkind IN ('r', 'p')
        AND relname LIKE 'tenant\\_secret%' ORDER BY relname`,
  );
  return rows.map((r) => r.relname);
}

async function hostileGrants(): Promise<void> {
  await adminQuery(
    db.name,
    `GRANT USAGE ON SCHEMA public TO ${API_ROLES};
     GRANT ALL ON ALL TABLES IN SCHEMA public TO ${API_ROLES};
     GRANT ALL ON ALL FUNCTIONS IN SCHEMA public TO ${API_ROLES};
     GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO ${API_ROLES}`,
  );
}

/** Rows of the victim tenant and the audit trail's size: what a hostile role must not change. */
async function state(): Promise<string> {
  const [row] = await adminQuery<{ t: string }>(
    db.name,
    `SELECT json_build_object(
       'secrets', (SELECT json_agg(s ORDER BY s.tenant_id, s.key_name) FROM tenant_secrets s),
       'versions', (SELECT count(*) FROM tenant_secret_versions),
       'keys', (SELECT json_agg(k ORDER BY k.tenant_id, k.version) FROM tenant_secret_keys k),
       'master_keys', (SELECT count(*) FROM tenant_secret_master_keys),
       'checkpoints', (SELECT count(*) FROM tenant_secret_audit_checkpoints),
       'audit', (SELECT count(*) FROM tenant_secret_audit WHERE action NOT IN ('audit.queried', 'audit.verified', 'audit.pruned')))::text AS t`,
  );
  return row?.t ?? '';
}

beforeAll(async () => {
  db = await freshDatabase();
  await supabaseRoles();
  [api, app, operator] = await loginRoles('api', 'hostile_app', 'hostile_operator');
  await adminQuery('postgres', `GRANT ${API_ROLES} TO ${api}`);
  // Supabase's default privileges: every table, function and sequence the owner creates in public.
  await adminQuery(
    db.name,
    `GRANT USAGE ON SCHEMA public TO ${API_ROLES};
     ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT ALL ON TABLES TO ${API_ROLES};
     ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT ALL ON FUNCTIONS TO ${API_ROLES};
     ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT ALL ON SEQUENCES TO ${API_ROLES}`,
  );
  owner = createSecretsManager({ connectionString: db.url, masterKey: TEST_KEY, auditSealIntervalMs: 0 });
  await owner.migrate({ grantTo: [app, 'service_role'], grantOperatorTo: [operator] });
  await owner.set('victim', 'token', 'victim-secret');
  await owner.set('victim', 'token', 'victim-secret-2');
  await owner.verifyAudit(); // seals, and signs checkpoints
});

afterAll(async () => {
  await owner.close();
});

describe('default privileges (Supabase) do not survive migrate()', () => {
  it('service_role named in grantTo holds the data-plane functions only; anon and authenticated nothing', async () => {
    const rows = await adminQuery<{ role: string; fn: string }>(
      db.name,
      `SELECT r.rolname AS role, p.proname AS fn
         FROM pg_proc p, aclexplode(p.proacl) a JOIN pg_roles r ON r.oid = a.grantee
        WHERE p.pronamespace = 'public'::regnamespace AND r.rolname IN ('anon', 'authenticated', 'service_role')
          AND (p.proname LIKE 'tenant\\_secret%' OR p.proname LIKE '\\_ts\\_%' OR p.proname IN ('upsert_tenant_secret', 'get_tenant_secret'))
        ORDER BY 1, 2`,
    );
    expect(rows.filter((r) => r.role !== 'service_role')).toEqual([]);
    const service = rows.map((r) => r.fn);
    expect(service).toContain('tenant_secret_read');
    for (const operatorOnly of [
      'tenant_secret_purge_tenant',
      'tenant_secret_audit_prune',
      'tenant_secret_audit_query',
      'tenant_secret_rotate_key',
      'tenant_secret_rewrap_keys',
      'tenant_secret_health',
      'tenant_secret_purge_deleted',
    ]) {
      expect(service).not.toContain(operatorOnly);
    }
    expect(service.filter((f) => f.startsWith('_ts_'))).toEqual([]);
    expect(await stateAs('service_role', "SELECT * FROM tenant_secret_purge_tenant('victim')")).toBe('42501');
    const tables = await adminQuery<{ n: number }>(
      db.name,
      `SELECT count(*)::int AS n FROM pg_class c, aclexplode(c.relacl) a JOIN pg_roles r ON r.oid = a.grantee
        WHERE c.relnamespace = 'public'::regnamespace AND c.relname LIKE 'tenant\\_secret%'
          AND r.rolname IN ('anon', 'authenticated', 'service_role')`,
    );
    expect(tables[0]?.n).toBe(0);
  });

  it('audit partitions the sealer creates come out locked down although default privileges grant ALL to anon', async () => {
    // The partition of a later sealing day, created as the sealer creates it (as the owner).
    await adminQuery(db.name, "SELECT _ts_audit_partition((now() AT TIME ZONE 'UTC')::date + 3)");
    const [part] = await adminQuery<{ relname: string; acl: string | null; rls: boolean; guard: boolean }>(
      db.name,
      `SELECT c.relname, c.relacl::text AS acl, c.relrowsecurity AS rls,
              EXISTS (SELECT 1 FROM pg_trigger t WHERE t.tgrelid = c.oid AND t.tgname = 'tenant_secrets_guard_truncate') AS guard
         FROM pg_class c JOIN pg_inherits i ON i.inhrelid = c.oid
        WHERE i.inhparent = 'tenant_secret_audit'::regclass AND c.relname ~ '_p[0-9]{8}$' ORDER BY c.relname DESC LIMIT 1`,
    );
    expect(part?.relname).toMatch(/^tenant_secret_audit_p\d{8}$/);
    expect(part?.acl ?? '').not.toMatch(/anon|authenticated|service_role/);
    expect(part?.rls).toBe(true);
    expect(part?.guard).toBe(true);
    const status = await owner.status();
    expect(status.unexpectedPrivileges).toEqual([]);
    expect(status.unprotectedTables).toEqual([]);
  });
});

describe('after GRANT ALL ON ALL TABLES / FUNCTIONS / SEQUENCES TO anon, authenticated', () => {
  beforeAll(hostileGrants);

  it('anon cannot TRUNCATE any table or partition (the guard refuses every role but the owner)', async () => {
    const before = await state();
    for (const table of await ourTables()) {
      expect.soft(await stateAs('anon', `TRUNCATE ${table} CASCADE`), table).toBe('42501');
      // (ONLY on the partitioned parent is refused before any trigger: 42809.)
      expect
        .soft(['42501', '42809'], table)
        .toContain(await stateAs('authenticated', `TRUNCATE ONLY ${table} CASCADE`));
    }
    expect(await state()).toBe(before);
  });

  it('row-level security hides every row from anon, and the write guard refuses its DML outright', async () => {
    const before = await state();
    await asApiRole(
      'anon',
      async (c) => {
        expect((await c.query('SELECT * FROM tenant_secrets')).rows).toEqual([]);
        expect((await c.query('SELECT * FROM tenant_secret_keys')).rows).toEqual([]);
        expect((await c.query('SELECT * FROM tenant_secret_master_keys')).rows).toEqual([]);
      },
      true,
    );
    for (const dml of [
      'DELETE FROM tenant_secret_audit',
      'DELETE FROM tenant_secret_audit_pending',
      "UPDATE tenant_secrets SET labels = '{}'",
      'DELETE FROM tenant_secret_keys',
    ]) {
      expect(await stateAs('anon', dml)).toBe('42501');
    }
    expect(
      await stateAs(
        'anon',
        "INSERT INTO tenant_secret_master_keys VALUES ('mk_0000000000000000', '\\x00', now(), 'x')",
      ),
    ).toBe('42501');
    expect(await state()).toBe(before);
  });

  it('status() names every privilege migrate() did not grant', async () => {
    const status = await owner.status();
    const grantees = new Set(status.unexpectedPrivileges.map((p) => p.grantee));
    expect(grantees).toEqual(new Set(['anon', 'authenticated', 'service_role']));
    expect(status.problems.some((p) => p.code === 'unexpected_privilege' && p.severity === 'error')).toBe(
      true,
    );
  });

  it('anon cannot run operator functions it was handed by the grant (purge, audit query, checkpoints, audit records)', async () => {
    const before = await state();
    const attempts = [
      "SELECT * FROM tenant_secret_purge_tenant('victim')",
      'SELECT * FROM tenant_secret_purge_deleted(NULL)',
      "SELECT * FROM tenant_secret_audit_query('victim')",
      'SELECT tenant_secret_audit_verified(true, \'{"forged":true}\')',
      "SELECT tenant_secret_finish_master_rotation('mk_0000000000000000', 0, 0, 0)",
      'SELECT tenant_secret_finish_legacy_import(0)',
      "SELECT tenant_secret_audit_checkpoint_add(ARRAY['victim'], ARRAY[1::bigint], ARRAY['\\x00'::bytea], 'mk_0000000000000000', ARRAY['\\x00'::bytea])",
      'SELECT tenant_secret_health()',
      'SELECT tenant_secret_key_status()',
      "SELECT * FROM tenant_secret_rewrap_pending('mk_0000000000000000', NULL, 10)",
      'SELECT * FROM tenant_secret_audit_checkpoint_list()',
      'SELECT * FROM tenant_secret_audit_verify_page(NULL, NULL, NULL, NULL, 10)',
      'SELECT * FROM tenant_secret_audit_chains()',
      'SELECT * FROM tenant_secret_audit_missing_chains()',
    ];
    const answers: Record<string, string> = {};
    for (const sql of attempts) answers[sql] = await stateAs('anon', sql);
    expect(answers).toEqual(Object.fromEntries(attempts.map((sql) => [sql, '42501'])));
    expect(await state()).toBe(before);
    // Pruning checks the owner itself, and records the refused attempt.
    const pruned = await asApiRole(
      'anon',
      async (c) =>
        (await c.query("SELECT status FROM tenant_secret_audit_prune(now() - interval '1 hour')")).rows,
      true,
    );
    expect(pruned).toEqual([{ status: 'forbidden' }]);
    expect(await owner.get('victim', 'token')).toBe('victim-secret-2');
  });

  it("a row trigger made of tenant-secrets' own guard function cannot silently drop audit records or writes", async () => {
    // No CREATE privilege needed: the TRUNCATE guard is a trigger function anon may execute now.
    const created = await stateAs(
      'anon',
      'CREATE TRIGGER drop_audit BEFORE INSERT ON tenant_secret_audit_pending FOR EACH ROW EXECUTE FUNCTION _ts_guard_truncate()',
    );
    expect(created).toBe('ok'); // the TRIGGER privilege allows it…
    try {
      const before = await adminQuery<{ n: number }>(
        db.name,
        "SELECT count(*)::int AS n FROM tenant_secret_audit WHERE tenant_id = 'victim'",
      );
      // …but an operation under it fails rather than go unaudited.
      const outcome = await owner.set('victim', 'token', 'unaudited?').then(
        () => 'stored',
        (e: { code?: string }) => e.code,
      );
      const after = await adminQuery<{ n: number }>(
        db.name,
        "SELECT count(*)::int AS n FROM tenant_secret_audit WHERE tenant_id = 'victim'",
      );
      expect(outcome).not.toBe('stored');
      expect(after[0]?.n).toBe(before[0]?.n);
      expect(await owner.get('victim', 'token').catch(() => 'refused')).not.toBe('unaudited?');
    } finally {
      await adminQuery(db.name, 'DROP TRIGGER IF EXISTS drop_audit ON tenant_secret_audit_pending');
    }
  });

  it('a policy and a rule added by hand (e.g. a dashboard "enable read access" template) are reported, then removed by migrate()', async () => {
    await adminQuery(
      db.name,
      `CREATE POLICY read_all ON tenant_secrets FOR SELECT TO anon USING (true);
       CREATE RULE keep_copy AS ON INSERT TO tenant_secret_versions DO ALSO NOTHING`,
    );
    // The policy hands anon every row (ciphertext and metadata) through the grant.
    const seen = await asApiRole(
      'anon',
      async (c) => (await c.query('SELECT tenant_id FROM tenant_secrets')).rowCount,
    );
    expect(seen).toBeGreaterThan(0);
    const expected = [
      { kind: 'policy', table: 'public.tenant_secrets', name: 'read_all' },
      { kind: 'rule', table: 'public.tenant_secret_versions', name: 'keep_copy' },
    ];
    const status = await owner.status();
    for (const o of expected) expect(status.foreignObjects).toContainEqual(o);
    const result = await owner.migrate();
    for (const o of expected) expect(result.removed).toContainEqual(o);
    expect((await owner.status()).foreignObjects).toEqual([]);
    await hostileGrants();
    expect(
      await asApiRole('anon', async (c) => (await c.query('SELECT tenant_id FROM tenant_secrets')).rowCount),
    ).toBe(0);
  });

  describe('with CREATE on the schema as well (GRANT ALL ON SCHEMA public TO anon)', () => {
    beforeAll(async () => {
      await adminQuery(db.name, `GRANT CREATE ON SCHEMA public TO ${API_ROLES}`);
    });
    afterAll(async () => {
      await adminQuery(db.name, `REVOKE CREATE ON SCHEMA public FROM ${API_ROLES}`);
    });

    it('a trigger anon attaches never runs: operations refuse to start (SCHEMA_DRIFT) until migrate() removes it; status() names it; migrate() reports it', async () => {
      const created = await stateAs(
        'anon',
        `CREATE TABLE public.loot (who text, what text);
         CREATE FUNCTION public.steal() RETURNS trigger LANGUAGE plpgsql AS $f$
         BEGIN
           INSERT INTO public.loot SELECT current_user::text, (SELECT count(*)::text FROM public.tenant_secret_master_keys);
           RETURN NEW;
         END $f$;
         CREATE TRIGGER steal AFTER INSERT ON public.tenant_secret_audit_pending FOR EACH ROW EXECUTE FUNCTION public.steal()`,
      );
      expect(created).toBe('ok');
      // Without the guard, the next operation would run anon's code as the owner, who sees through RLS.
      await expect(owner.set('victim', 'window', 'v')).rejects.toMatchObject({ code: 'SCHEMA_DRIFT' });
      await expect(owner.get('victim', 'window')).rejects.toMatchObject({ code: 'SCHEMA_DRIFT' });
      const loot = await adminQuery<{ who: string; what: string }>(
        db.name,
        'SELECT who, what FROM public.loot',
      );
      expect(loot).toEqual([]);
      // The per-table helper refuses such a table as well…
      expect(
        await adminQuery(
          db.name,
          "SELECT _ts_refuse_foreign_trigger(_ts_foreign_trigger_on(ARRAY['tenant_secret_audit_pending'::regclass]::oid[]))",
        ).then(
          () => 'ok',
          (e: { code?: string }) => e.code,
        ),
      ).toBe('TSSEC');
      // …status() names it, and migrate() removes it and says so.
      const status = await owner.status();
      const steal = { kind: 'trigger', table: 'public.tenant_secret_audit_pending', name: 'steal' };
      expect(status.foreignObjects).toContainEqual(steal);
      expect(status.problems.some((p) => p.code === 'foreign_object' && p.message.includes('steal'))).toBe(
        true,
      );
      const result = await owner.migrate();
      expect(result.removed).toContainEqual(steal);
      await adminQuery(db.name, 'TRUNCATE public.loot');
      await owner.set('victim', 'window', 'v2');
      expect(await adminQuery(db.name, 'SELECT 1 FROM public.loot')).toEqual([]);
      expect((await owner.status()).foreignObjects).toEqual([]);
      await hostileGrants(); // migrate() revoked them; the rest of this file runs with them again
    });

    it('a foreign key anon declares on our tables is no existence oracle and blocks nothing after migrate()', async () => {
      const declared = await stateAs(
        'anon',
        'CREATE TABLE public.probe (t text, k text, FOREIGN KEY (t, k) REFERENCES public.tenant_secrets (tenant_id, key_name))',
      );
      expect(declared).toBe('ok'); // REFERENCES came with GRANT ALL
      const probe = (tenant: string, key: string) =>
        stateAs('anon', 'INSERT INTO public.probe VALUES ($1, $2)', [tenant, key]);
      // Before: the constraint answers whether a tenant has a secret of that name (its check runs as
      // the referenced table's owner, through row-level security).
      expect([await probe('victim', 'token'), await probe('victim', 'no-such-token')]).toEqual([
        'ok',
        '23503',
      ]);
      const status = await owner.status();
      expect(status.foreignObjects).toContainEqual({
        kind: 'foreign_key',
        table: 'public.probe',
        name: 'probe_t_k_fkey',
      });
      const result = await owner.migrate();
      expect(result.removed).toContainEqual({
        kind: 'foreign_key',
        table: 'public.probe',
        name: 'probe_t_k_fkey',
      });
      // Both answer the same: the constraint is gone.
      expect(await probe('victim', 'token')).toBe(await probe('victim', 'no-such-token'));
      await owner.set('victim', 'fk-target', 'v');
      await expect(owner.destroy('victim', 'fk-target')).resolves.toMatchObject({ versionsDestroyed: 1 });
      await hostileGrants();
    });

    it("a table anon creates under an audit partition's name is reported, and sealing names it instead of failing obscurely", async () => {
      expect(await stateAs('anon', 'CREATE TABLE public.tenant_secret_audit_p20991231 (x int)')).toBe('ok');
      try {
        expect((await owner.status()).unprotectedTables).toContain('public.tenant_secret_audit_p20991231');
        const error = await adminQuery(db.name, "SELECT _ts_audit_partition('2099-12-31')").catch(
          (e: { code?: string; message?: string }) => e,
        );
        expect(error).toMatchObject({
          code: 'TSSEC',
          message: expect.stringContaining('tenant_secret_audit_p20991231'),
        });
      } finally {
        await adminQuery(db.name, 'DROP TABLE public.tenant_secret_audit_p20991231');
      }
    });

    it('a write under a foreign trigger is refused before the trigger runs', async () => {
      await stateAs(
        'anon',
        'CREATE TRIGGER steal2 AFTER INSERT ON public.tenant_secret_audit_pending FOR EACH ROW EXECUTE FUNCTION public.steal()',
      );
      try {
        await expect(owner.set('victim', 'window', 'v3')).rejects.toMatchObject({ code: 'SCHEMA_DRIFT' });
      } finally {
        await adminQuery(db.name, 'DROP TRIGGER IF EXISTS steal2 ON tenant_secret_audit_pending');
      }
    });
  });
});
