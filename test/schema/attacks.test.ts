// suite-scope: direct — the attacker keeps a session of its own (its pg_temp functions live as long as that session), which PgBouncer in transaction mode does not give
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createSecretsManager, type SecretsManager } from '../../src/index.js';
import { adminQuery, directUrlFor, freshDatabase, TEST_KEY } from '../support/db.js';
import { loginRoles, supabaseRoles } from '../support/roles.js';

/**
 * Code of a grantee's making never runs inside tenant-secrets. After `GRANT ALL ON ALL TABLES IN SCHEMA
 * … TO anon` (which includes TRIGGER), any login that may `SET ROLE anon` creates a trigger function
 * in pg_temp (TEMP is PUBLIC's; no CREATE on any schema needed) and attaches it to every table of ours,
 * tenant_secret_grants first. Whoever writes such a table would run it with their own rights: the
 * migrating role (a superuser, or the schema owner) inside migrate() or the installer script, the
 * owner inside every SECURITY DEFINER function.
 *
 * The payload proves whether it ran in a way no rollback hides: it calls nextval() on a sequence the
 * test reads afterwards (sequences are not transactional). It also tries to make the attacker a
 * superuser and to copy the proof keys, as the reported attack did.
 */
let db: { name: string; url: string };
let attacker: string;
let owner: string;

/** The attacker's session: direct, kept open (its pg_temp dies with it, and its triggers with it). */
let session: pg.Client;

function directRoleUrl(role: string): string {
  const url = new URL(directUrlFor(db.name));
  url.username = role;
  url.password = 'pw';
  return url.toString();
}

/** How many times any payload ran (a sequence: no rollback undoes it). */
async function payloadRuns(): Promise<number> {
  const [row] = await adminQuery<{ n: string; called: boolean }>(
    db.name,
    'SELECT last_value AS n, is_called AS called FROM loot.ran',
  );
  return row?.called ? Number(row.n) : 0;
}

async function resetPayloadRuns(): Promise<void> {
  await adminQuery(db.name, "SELECT setval('loot.ran', 1, false); DELETE FROM loot.stolen");
}

async function attackerIsSuperuser(): Promise<boolean> {
  const [row] = await adminQuery<{ s: boolean }>(
    'postgres',
    'SELECT rolsuper AS s FROM pg_roles WHERE rolname = $1',
    [attacker],
  );
  return row?.s === true;
}

/** Our tables in `schema`, tenant_secret_grants first (what migrate() wrote first in release 0.2). */
async function tablesOf(schema: string): Promise<string[]> {
  const rows = await adminQuery<{ t: string }>(
    db.name,
    `SELECT format('%I.%I', n.nspname, c.relname) AS t FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE n.nspname = $1 AND c.relkind IN ('r', 'p') AND c.relname LIKE 'tenant\\_secret%'
      ORDER BY c.relname <> 'tenant_secret_grants', c.relname`,
    [schema],
  );
  return rows.map((r) => r.t);
}

/**
 * As anon, in the attacker's session: a trigger function in pg_temp, attached to every table of
 * `schema` as a statement trigger (INSERT, UPDATE, DELETE, TRUNCATE) and an AFTER row trigger.
 * Returns the triggers as migrate() reports them.
 */
async function attachTriggers(schema: string): Promise<{ kind: string; table: string; name: string }[]> {
  await session.query('RESET ROLE');
  await session.query('SET ROLE anon');
  await session.query(`
    CREATE OR REPLACE FUNCTION pg_temp.ts_evil() RETURNS trigger LANGUAGE plpgsql AS $f$
    BEGIN
      PERFORM nextval('loot.ran');
      BEGIN
        EXECUTE format('ALTER ROLE %I SUPERUSER', '${attacker}');
      EXCEPTION WHEN OTHERS THEN NULL;
      END;
      BEGIN
        EXECUTE format('INSERT INTO loot.stolen SELECT encode(proof_key, ''hex'') FROM %I.tenant_secret_master_keys', '${schema}');
      EXCEPTION WHEN OTHERS THEN NULL;
      END;
      RETURN NULL;
    END $f$`);
  const out: { kind: string; table: string; name: string }[] = [];
  for (const [i, table] of (await tablesOf(schema)).entries()) {
    await session.query(
      `CREATE OR REPLACE TRIGGER ts_evil_stmt_${i} BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE ON ${table}
         FOR EACH STATEMENT EXECUTE FUNCTION pg_temp.ts_evil()`,
    );
    await session.query(
      `CREATE OR REPLACE TRIGGER ts_evil_row_${i} AFTER INSERT OR UPDATE OR DELETE ON ${table}
         FOR EACH ROW EXECUTE FUNCTION pg_temp.ts_evil()`,
    );
    out.push(
      { kind: 'trigger', table, name: `ts_evil_row_${i}` },
      { kind: 'trigger', table, name: `ts_evil_stmt_${i}` },
    );
  }
  await session.query('RESET ROLE');
  return out;
}

async function hostileGrants(schema: string): Promise<void> {
  await adminQuery(
    db.name,
    `GRANT USAGE ON SCHEMA ${schema} TO anon, authenticated, service_role;
     GRANT ALL ON ALL TABLES IN SCHEMA ${schema} TO anon, authenticated, service_role;
     GRANT ALL ON ALL SEQUENCES IN SCHEMA ${schema} TO anon, authenticated, service_role;
     GRANT ALL ON ALL FUNCTIONS IN SCHEMA ${schema} TO anon, authenticated, service_role`,
  );
}

/** Whether the control works: the payload runs when anyone writes a table under it outside our code. */
async function payloadArmed(schema: string, role?: string): Promise<boolean> {
  const before = await payloadRuns();
  // Rolled back: the payload's ALTER ROLE with it (its nextval() stays).
  await adminQuery(
    db.name,
    `BEGIN; ${role ? `SET LOCAL ROLE ${role};` : ''}
     UPDATE ${schema}.tenant_secret_grants SET role_name = role_name WHERE false; ROLLBACK`,
  );
  return (await payloadRuns()) > before;
}

beforeAll(async () => {
  db = await freshDatabase('atk');
  await supabaseRoles();
  [attacker, owner] = await loginRoles('attacker', 'owner');
  await adminQuery('postgres', `GRANT anon TO ${attacker}`);
  await adminQuery(
    db.name,
    `CREATE SCHEMA loot;
     CREATE SEQUENCE loot.ran;
     CREATE TABLE loot.stolen (proof text);
     GRANT USAGE ON SCHEMA loot TO PUBLIC;
     GRANT ALL ON SEQUENCE loot.ran TO PUBLIC;
     GRANT ALL ON TABLE loot.stolen TO PUBLIC;
     CREATE SCHEMA extensions;
     CREATE EXTENSION pgcrypto WITH SCHEMA extensions;
     GRANT USAGE ON SCHEMA extensions TO PUBLIC;
     GRANT CREATE ON DATABASE ${db.name} TO ${owner}`,
  );
  session = new pg.Client({ connectionString: directRoleUrl(attacker) });
  await session.connect();
});

afterAll(async () => {
  await session?.end();
});

describe('pg_temp triggers of a grantee, superuser migrating (schema public)', () => {
  let manager: SecretsManager;
  beforeAll(async () => {
    manager = createSecretsManager({
      connectionString: directUrlFor(db.name),
      masterKey: TEST_KEY,
      auditSealIntervalMs: 0,
      actor: 'owner',
    });
    await manager.migrate({ grantTo: ['service_role'] });
    await manager.set('victim', 'token', 'v1');
    await manager.auditTrail.verify();
  });
  afterAll(() => manager.close());

  it('migrate() never runs them (tenant_secret_grants first), removes every one and reports it', async () => {
    await hostileGrants('public');
    await resetPayloadRuns();
    const attached = await attachTriggers('public');
    expect(attached.length).toBeGreaterThan(20);
    expect(await payloadArmed('public')).toBe(true); // the control: the payload works
    await resetPayloadRuns();
    const result = await manager.installation.migrate({ grantTo: ['service_role'] });
    expect(await payloadRuns()).toBe(0);
    expect(await attackerIsSuperuser()).toBe(false);
    expect(await adminQuery(db.name, 'SELECT * FROM loot.stolen')).toEqual([]);
    for (const trigger of attached) expect(result.removed).toContainEqual(trigger);
    expect((await manager.installation.status()).foreignObjects).toEqual([]);
    expect(await manager.get('victim', 'token')).toBe('v1');
  });

  it('status() names every one of them and runs none', async () => {
    await hostileGrants('public');
    await resetPayloadRuns();
    const attached = await attachTriggers('public');
    const status = await manager.installation.status();
    expect(await payloadRuns()).toBe(0);
    for (const trigger of attached) expect(status.foreignObjects).toContainEqual(trigger);
    expect(status.problems.some((p) => p.code === 'foreign_object' && p.severity === 'error')).toBe(true);
  });

  it('every operation of the library refuses before any of them runs (SCHEMA_DRIFT or a refusal, never the payload)', async () => {
    // Triggers of the previous test are still attached.
    await resetPayloadRuns();
    const operations: [string, () => Promise<unknown>][] = [
      ['set', () => manager.set('victim', 'token', 'v2')],
      ['getWithVersion', () => manager.getWithVersion('victim', 'token', { fresh: true })],
      ['list', () => manager.list('victim')],
      ['versions', () => manager.versions('victim', 'token')],
      ['delete', () => manager.delete('victim', 'token')],
      ['destroy', () => manager.destroy('victim', 'token')],
      ['set (new tenant)', () => manager.set('newcomer', 'k', 'v')],
      ['auditTrail.seal', () => manager.auditTrail.seal()],
      ['auditTrail.verify', () => manager.auditTrail.verify()],
      ['auditTrail.query', () => manager.auditTrail.query('victim')],
      ['keys.rotateTenant', () => manager.keys.rotateTenant('victim')],
      ['keys.pin', () => manager.keys.pin('pinned-later')],
      ['keys.purgeTenant', () => manager.keys.purgeTenant('nobody')],
    ];
    const ran: string[] = [];
    for (const [name, op] of operations) {
      const before = await payloadRuns();
      await op().catch(() => undefined);
      if ((await payloadRuns()) > before) ran.push(name);
    }
    expect(ran).toEqual([]);
    expect(await attackerIsSuperuser()).toBe(false);
  });

  it('every entry function of ours (all but the owner-only _ts_ helpers), called by the owner with NULL arguments, runs none of them', async () => {
    await resetPayloadRuns();
    const fns = await adminQuery<{ sig: string; nargs: number }>(
      db.name,
      `SELECT p.oid::regprocedure::text AS sig, p.pronargs AS nargs FROM pg_proc p
        WHERE p.pronamespace = 'public'::regnamespace AND p.prokind = 'f' AND p.prorettype <> 'trigger'::regtype
          AND (p.proname LIKE 'tenant\\_secret%' OR p.proname IN ('upsert_tenant_secret', 'get_tenant_secret'))
        ORDER BY 1`,
    );
    expect(fns.length).toBeGreaterThan(40);
    const ran: string[] = [];
    const client = new pg.Client({ connectionString: directUrlFor(db.name) });
    await client.connect();
    try {
      await client.query("SET statement_timeout = '5s'; SET lock_timeout = '2s'");
      for (const fn of fns) {
        const name = fn.sig.slice(0, fn.sig.indexOf('('));
        const args = Array.from({ length: fn.nargs }, () => 'NULL').join(', ');
        const before = await payloadRuns();
        await client.query(`SELECT * FROM ${name}(${args})`).catch(() => undefined);
        if ((await payloadRuns()) > before) ran.push(fn.sig);
      }
    } finally {
      await client.end();
    }
    expect(ran).toEqual([]);
    expect(await attackerIsSuperuser()).toBe(false);
  });

  it('the exported installer script, applied as a superuser, never runs them and removes them', async () => {
    await hostileGrants('public');
    await resetPayloadRuns();
    const attached = await attachTriggers('public');
    const script = await manager.installation.sql({ grantTo: ['service_role'] });
    const client = new pg.Client({ connectionString: directUrlFor(db.name) });
    await client.connect();
    try {
      await client.query(script);
    } finally {
      await client.end();
    }
    expect(await payloadRuns()).toBe(0);
    expect(await attackerIsSuperuser()).toBe(false);
    const left = await adminQuery(db.name, "SELECT tgname FROM pg_trigger WHERE tgname LIKE 'ts\\_evil%'");
    expect(left).toEqual([]);
    expect(attached.length).toBeGreaterThan(0);
    expect(await manager.get('victim', 'token').catch(() => 'gone')).not.toBe('v1-tampered');
  });

  it('a column default (through a function or an operator), a policy, a rule and a CHECK constraint put on our tables by hand never run inside migrate(); it removes them and reports them', async () => {
    await resetPayloadRuns();
    // Only an owner may add these (a grantee cannot): e.g. a member of the owner's role, or a dashboard.
    await adminQuery(
      db.name,
      `CREATE FUNCTION loot.evil_text() RETURNS text LANGUAGE plpgsql AS $f$
         BEGIN PERFORM nextval('loot.ran'); RETURN 'x'; END $f$;
       CREATE FUNCTION loot.evil_bool() RETURNS boolean LANGUAGE plpgsql AS $f$
         BEGIN PERFORM nextval('loot.ran'); RETURN true; END $f$;
       CREATE FUNCTION loot.evil_op(timestamptz, integer) RETURNS timestamptz LANGUAGE plpgsql AS $f$
         BEGIN PERFORM nextval('loot.ran'); RETURN $1; END $f$;
       CREATE OPERATOR loot.## (FUNCTION = loot.evil_op, LEFTARG = timestamptz, RIGHTARG = integer);
       ALTER TABLE public.tenant_secret_schema_state ALTER COLUMN updated_at SET DEFAULT (now() OPERATOR(loot.##) 0);
       ALTER TABLE public.tenant_secret_migrations ALTER COLUMN applied_at SET DEFAULT (now() OPERATOR(loot.##) 1);
       ALTER TABLE public.tenant_secret_grants ALTER COLUMN role_name SET DEFAULT loot.evil_text();
       CREATE POLICY evil_policy ON public.tenant_secret_grants USING (loot.evil_bool());
       ALTER TABLE public.tenant_secret_grants FORCE ROW LEVEL SECURITY;
       CREATE RULE evil_rule AS ON UPDATE TO public.tenant_secret_schema_state DO ALSO SELECT loot.evil_bool();
       ALTER TABLE public.tenant_secret_schema_state ADD CONSTRAINT evil_check CHECK (loot.evil_bool())`,
    );
    // The control: each runs when the table is written outside our code.
    await adminQuery(
      db.name,
      `BEGIN;
       INSERT INTO public.tenant_secret_schema_state (key, value) VALUES ('probe', '{}');
       ROLLBACK`,
    );
    expect(await payloadRuns()).toBeGreaterThan(0);
    await resetPayloadRuns();
    const status = await manager.installation.status();
    const expected = [
      { kind: 'default', table: 'public.tenant_secret_schema_state', name: 'updated_at' },
      { kind: 'default', table: 'public.tenant_secret_migrations', name: 'applied_at' },
      { kind: 'default', table: 'public.tenant_secret_grants', name: 'role_name' },
      { kind: 'policy', table: 'public.tenant_secret_grants', name: 'evil_policy' },
      { kind: 'rule', table: 'public.tenant_secret_schema_state', name: 'evil_rule' },
      { kind: 'check', table: 'public.tenant_secret_schema_state', name: 'evil_check' },
    ];
    expect(status.foreignObjects).toEqual(expect.arrayContaining(expected));
    const result = await manager.installation.migrate({ grantTo: ['service_role', 'authenticated'] });
    expect(await payloadRuns()).toBe(0);
    for (const o of expected) expect(result.removed).toContainEqual(o);
    expect((await manager.installation.status()).foreignObjects).toEqual([]);
    await manager.installation.migrate({ grantTo: ['service_role'] });
    expect(await payloadRuns()).toBe(0);
  });
});

describe('pg_temp triggers of a grantee, a schema owner that is not a superuser (schema vault)', () => {
  let manager: SecretsManager;
  beforeAll(async () => {
    const url = new URL(directUrlFor(db.name));
    url.username = owner;
    url.password = 'pw';
    manager = createSecretsManager({
      connectionString: url.toString(),
      schema: 'vault',
      masterKey: TEST_KEY,
      auditSealIntervalMs: 0,
      actor: 'owner',
    });
    await manager.migrate({ grantTo: ['service_role'] });
    await manager.set('victim', 'token', 'v1');
    await manager.auditTrail.verify();
  });
  afterAll(() => manager.close());

  it('migrate(), status() and every operation run none of them; migrate() removes them', async () => {
    await hostileGrants('vault');
    await resetPayloadRuns();
    const attached = await attachTriggers('vault');
    expect(await payloadArmed('vault', owner)).toBe(true);
    await resetPayloadRuns();
    const status = await manager.installation.status();
    for (const trigger of attached) expect(status.foreignObjects).toContainEqual(trigger);
    const refused: string[] = [];
    for (const op of [
      () => manager.set('victim', 'token', 'v2'),
      () => manager.getWithVersion('victim', 'token', { fresh: true }),
      () => manager.list('victim'),
      () => manager.delete('victim', 'token'),
      () => manager.auditTrail.seal(),
      () => manager.auditTrail.verify(),
    ]) {
      const outcome = await op().then(
        () => 'done',
        (e: { code?: string }) => e.code ?? 'error',
      );
      refused.push(outcome);
    }
    expect(await payloadRuns()).toBe(0);
    expect(refused.every((o) => o === 'SCHEMA_DRIFT')).toBe(true);
    const result = await manager.installation.migrate();
    expect(await payloadRuns()).toBe(0);
    expect(await adminQuery(db.name, 'SELECT * FROM loot.stolen')).toEqual([]);
    for (const trigger of attached) expect(result.removed).toContainEqual(trigger);
    expect(await manager.get('victim', 'token')).toBe('v1');
    expect(await payloadRuns()).toBe(0);
  });
});
