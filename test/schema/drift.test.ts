import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createSecretsManager, SchemaNotReadyError, type SecretsManager } from '../../src/index.js';
import { adminQuery, freshDatabase, TEST_KEY } from '../support/db.js';

/**
 * Changes made by hand to an installed schema: `status()` names each one, `migrate()` repairs each
 * one, and a second `migrate()` changes nothing.
 */

const app = `ts_drift_app_${process.pid}`;
let db: { name: string; url: string };
let manager: SecretsManager;

/** What a repairing migrate() must leave as it was: functions, triggers, policies, privileges. */
const catalog = (database: string) =>
  adminQuery<{ what: string }>(
    database,
    `SELECT 'fn ' || p.oid::regprocedure::text || ' ' || md5(pg_get_functiondef(p.oid)) || ' ' || coalesce(p.proacl::text, '') || ' ' || p.xmin::text AS what
       FROM pg_proc p WHERE p.pronamespace = 'public'::regnamespace AND (p.proname LIKE 'tenant\\_secret%' OR p.proname LIKE '\\_ts\\_%')
     UNION ALL
     SELECT 'trigger ' || t.tgrelid::regclass::text || ' ' || t.tgname || ' ' || t.xmin::text FROM pg_trigger t
      WHERE t.tgrelid IN (SELECT c.oid FROM pg_class c WHERE c.relnamespace = 'public'::regnamespace AND c.relname LIKE 'tenant\\_secret%')
     UNION ALL
     SELECT 'policy ' || pol.polrelid::regclass::text || ' ' || pol.polname FROM pg_policy pol
     UNION ALL
     SELECT 'table ' || c.oid::regclass::text || ' ' || coalesce(c.relacl::text, '') || ' ' || c.relrowsecurity::text || ' ' || c.xmin::text
       FROM pg_class c WHERE c.relnamespace = 'public'::regnamespace AND c.relname LIKE 'tenant\\_secret%'
     ORDER BY 1`,
  );

beforeAll(async () => {
  db = await freshDatabase('drift');
  await adminQuery('postgres', `CREATE ROLE ${app} NOLOGIN`);
  manager = createSecretsManager({
    connectionString: db.url,
    masterKey: TEST_KEY,
    auditSealIntervalMs: 0,
    env: {},
  });
  await manager.migrate({ grantTo: [app] });
  await manager.set('drift', 'k', 'value');
});
afterAll(async () => {
  await manager.close();
  await adminQuery(db.name, `DROP OWNED BY ${app}`).catch(() => undefined);
  await adminQuery('postgres', `DROP ROLE IF EXISTS ${app}`).catch(() => undefined);
});

describe('schema drift', () => {
  it('a clean installation reports nothing, and migrate() changes nothing', async () => {
    const status = await manager.status();
    expect(status.problems.filter((p) => p.severity === 'error')).toEqual([]);
    const before = await catalog(db.name);
    expect(await manager.migrate()).toMatchObject({ applied: [], functionsInstalled: false, removed: [] });
    expect(await catalog(db.name)).toEqual(before);
  });

  it('status() names each change made by hand, migrate() repairs each, a second migrate() does nothing', async () => {
    // 1. a function dropped
    await adminQuery(db.name, `DROP FUNCTION public.tenant_secret_list(text, bytea, jsonb, jsonb)`);
    // 2. a function's body replaced (same signature)
    await adminQuery(
      db.name,
      `DO $$DECLARE d text;
       BEGIN
         SELECT pg_get_functiondef('public.tenant_secret_key_status()'::regprocedure) INTO d;
         EXECUTE replace(d, 'SELECT pg_catalog.jsonb_build_object(', 'SELECT /* changed by hand */ pg_catalog.jsonb_build_object(');
       END$$`,
    );
    // 3. an unexpected overload of one of our functions
    await adminQuery(
      db.name,
      `CREATE FUNCTION public.tenant_secret_read(p_tenant_id text) RETURNS text LANGUAGE sql AS $$ SELECT 'shadow' $$`,
    );
    // 4. the TRUNCATE guard trigger of a table dropped
    await adminQuery(db.name, `DROP TRIGGER tenant_secrets_guard_truncate ON public.tenant_secret_versions`);
    // 5. a grant the configuration says exists, revoked
    await adminQuery(
      db.name,
      `REVOKE EXECUTE ON FUNCTION public.tenant_secret_read(text, text, bytea, jsonb, jsonb) FROM ${app}`,
    );
    // 6. a policy tenant-secrets did not create
    await adminQuery(db.name, `CREATE POLICY foreign_policy ON public.tenant_secrets USING (true)`);

    const status = await manager.status();
    expect(status.drift.missing).toEqual([
      'tenant_secret_list(p_tenant_id text, p_bundle bytea, p_options jsonb, p_ctx jsonb)',
    ]);
    expect(status.drift.changed).toEqual(['tenant_secret_key_status()']);
    expect(status.drift.unexpected).toEqual(['tenant_secret_read(p_tenant_id text)']);
    expect(status.unprotectedTables).toEqual(['public.tenant_secret_versions']);
    expect(status.missingPrivileges).toEqual([
      {
        object: 'public.tenant_secret_read(text,text,bytea,jsonb,jsonb)',
        grantee: app,
        privilege: 'EXECUTE',
      },
    ]);
    expect(status.foreignObjects).toEqual([
      { kind: 'policy', table: 'public.tenant_secrets', name: 'foreign_policy' },
    ]);
    // The overload was created with PostgreSQL's default EXECUTE for PUBLIC: named too.
    expect(status.unexpectedPrivileges).toEqual([
      { object: 'public.tenant_secret_read(text)', grantee: 'PUBLIC', privilege: 'EXECUTE' },
    ]);
    const codes = status.problems.filter((p) => p.severity === 'error').map((p) => p.code);
    expect(codes.sort()).toEqual(
      [
        'foreign_object',
        'function_drift',
        'missing_privilege',
        'unexpected_privilege',
        'unprotected_table',
      ].sort(),
    );
    const message = status.problems.map((p) => p.message).join('\n');
    for (const name of [
      'tenant_secret_list',
      'tenant_secret_key_status',
      'tenant_secret_read(p_tenant_id text)',
      'foreign_policy',
      'tenant_secret_versions',
    ]) {
      expect(message).toContain(name);
    }
    // Calls of a dropped function fail typed, and readiness says what to run.
    await expect(manager.list('drift')).rejects.toBeInstanceOf(SchemaNotReadyError);
    await expect(manager.ready()).rejects.toThrow(/migrate\(\)/);

    const repaired = await manager.migrate();
    expect(repaired).toMatchObject({ applied: [], functionsInstalled: true });
    expect(repaired.removed).toEqual([
      // (migrate() names the table as the connection's search_path shows it)
      { kind: 'policy', table: expect.stringMatching(/^(public\.)?tenant_secrets$/), name: 'foreign_policy' },
    ]);
    const after = await manager.status();
    expect(after.problems.filter((p) => p.severity === 'error')).toEqual([]);
    expect(after.drift).toMatchObject({ missing: [], changed: [], unexpected: [] });
    expect(after.missingPrivileges).toEqual([]);
    expect(after.unexpectedPrivileges).toEqual([]);
    expect(after.unprotectedTables).toEqual([]);
    expect(after.foreignObjects).toEqual([]);
    expect(await manager.list('drift')).toHaveLength(1);
    expect(await manager.get('drift', 'k')).toBe('value');
    const granted = await adminQuery<{ ok: boolean }>(
      db.name,
      `SELECT has_function_privilege($1, 'public.tenant_secret_read(text, text, bytea, jsonb, jsonb)', 'EXECUTE') AS ok`,
      [app],
    );
    expect(granted[0]?.ok).toBe(true);

    const before = await catalog(db.name);
    expect(await manager.migrate()).toMatchObject({ applied: [], functionsInstalled: false, removed: [] });
    expect(await catalog(db.name)).toEqual(before);
  });
});
