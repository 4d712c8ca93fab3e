import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createSecretsManager, type SecretsManager } from '../../src/index.js';
import { adminQuery, directUrlFor, freshDatabase, OTHER_KEY, TEST_KEY } from '../support/db.js';
import { asRole, loginRoles, sqlState, supabaseRoles } from '../support/roles.js';

/**
 * Attacks by roles that hold something: CONNECT only (locks), a BYPASSRLS role with every table
 * grant (Supabase's service_role after `GRANT ALL`), UPDATE on our sequences, forged cached-read
 * records, and another registered master key against a pinned tenant.
 */
let db: { name: string; url: string };
let manager: SecretsManager;
let connectOnly: string;
let bypass: string;

/** Every table and partition of ours. */
async function ourTables(): Promise<string[]> {
  const rows = await adminQuery<{ t: string }>(
    db.name,
    `SELECT c.relname AS t FROM pg_class c WHERE c.relnamespace = 'public'::regnamespace
        AND c.relkind IN ('r', 'p') AND c.relname LIKE 'tenant\\_secret%' ORDER BY 1`,
  );
  return rows.map((r) => r.t);
}

/** What no attack here may change: every row of every table of ours but the audit trail's own growth. */
async function snapshot(): Promise<string> {
  const [row] = await adminQuery<{ t: string }>(
    db.name,
    `SELECT json_build_object(
       'secrets', (SELECT json_agg(s ORDER BY s.tenant_id, s.key_name) FROM tenant_secrets s),
       'versions', (SELECT json_agg(v.* ORDER BY v.tenant_id, v.key_name, v.version) FROM tenant_secret_versions v),
       'keys', (SELECT json_agg(k ORDER BY k.tenant_id, k.version) FROM tenant_secret_keys k),
       'master_keys', (SELECT json_agg(m ORDER BY m::text) FROM tenant_secret_master_keys m),
       'grants', (SELECT json_agg(g ORDER BY g.role_name, g.kind) FROM tenant_secret_grants g),
       'checkpoints', (SELECT json_agg(c ORDER BY c.chain_id) FROM tenant_secret_audit_checkpoints c),
       'sealed', (SELECT json_agg(json_build_array(a.chain_id, a.seq, a.hash) ORDER BY a.chain_id, a.seq)
                    FROM tenant_secret_audit a WHERE a.sealed_at <> 'infinity'))::text AS t`,
  );
  return row?.t ?? '';
}

beforeAll(async () => {
  db = await freshDatabase('atkp');
  await supabaseRoles();
  [connectOnly, bypass] = await loginRoles('connect_only', 'bypass');
  await adminQuery('postgres', `ALTER ROLE ${bypass} BYPASSRLS`);
  manager = createSecretsManager({
    connectionString: db.url,
    masterKey: TEST_KEY,
    auditSealIntervalMs: 0,
    lockTimeoutMs: 1000,
    actor: 'owner',
  });
  await manager.migrate();
  await manager.set('victim', 'token', 'v1');
  await manager.set('victim', 'token', 'v2');
  await manager.auditTrail.verify();
});

afterAll(() => manager.close());

describe('locks: a role with CONNECT only governs nothing; every wait is bounded', () => {
  it("no function of ours takes an advisory lock but the sealer's, in the hour after an upgrade from 0.2", async () => {
    const rows = await adminQuery<{ fn: string }>(
      db.name,
      `SELECT p.proname AS fn FROM pg_proc p WHERE p.pronamespace = 'public'::regnamespace
          AND (p.proname LIKE 'tenant\\_secret%' OR p.proname LIKE '\\_ts\\_%') AND p.prosrc ~* 'advisory'`,
    );
    // That one is covered in test/schema/rolling-upgrade.test.ts; on this installation (never 0.2),
    // the test below holds its key too.
    expect(rows).toEqual([{ fn: '_ts_sealer_lock' }]);
  });

  it('holding an advisory lock on every number found in our functions stalls neither writes, sealing nor verification', async () => {
    const [found] = await adminQuery<{ keys: string[] }>(
      db.name,
      `SELECT array_agg(DISTINCT m[1]) AS keys
         FROM pg_proc p, regexp_matches(p.prosrc, '(-?[0-9]{2,19})', 'g') m
        WHERE p.pronamespace = 'public'::regnamespace AND (p.proname LIKE 'tenant\\_secret%' OR p.proname LIKE '\\_ts\\_%')`,
    );
    const keys = (found?.keys ?? []).filter((k) => {
      const n = BigInt(k);
      return n >= -(2n ** 63n) && n < 2n ** 63n;
    });
    expect(keys.length).toBeGreaterThan(10);
    // Direct: a session of its own, holding the locks until the end.
    const url = new URL(directUrlFor(db.name));
    url.username = connectOnly;
    url.password = 'pw';
    const holder = new pg.Client({ connectionString: url.toString() });
    await holder.connect();
    try {
      await holder.query('SELECT pg_advisory_lock(k::bigint) FROM unnest($1::text[]) k', [keys]);
      // The 32-bit pair form too, for every pair of small numbers among them.
      const small = keys.filter((k) => Math.abs(Number(k)) < 2 ** 31).slice(0, 40);
      await holder.query(
        'SELECT pg_advisory_lock(a::int, b::int) FROM unnest($1::text[]) a, unnest($1::text[]) b',
        [small],
      );
      // Release 0.2's sealer lock, which a sealer takes only in the hour after an upgrade from 0.2.
      await holder.query(`SELECT pg_advisory_lock(1951622706, hashtext('"public"'))`);
      await manager.set('victim', 'locked-out', 'no');
      expect(await manager.getWithVersion('victim', 'locked-out', { fresh: true })).toMatchObject({
        value: 'no',
      });
      expect((await manager.auditTrail.seal()).pending).toBe(0);
      expect((await manager.auditTrail.verify()).ok).toBe(true);
      await manager.set('newcomer', 'k', 'v');
      const status = await manager.installation.status();
      expect(status.problems.filter((p) => p.code.startsWith('sealer'))).toEqual([]);
    } finally {
      await holder.end();
    }
  });

  it("a session holding the sealer's row: seal() and verify() fail with LOCK_TIMEOUT, status() reports the sealer at once", async () => {
    await manager.set('victim', 'waiting', 'v'); // a pending record
    const holder = new pg.Client({ connectionString: directUrlFor(db.name) });
    await holder.connect();
    try {
      await holder.query('BEGIN');
      await holder.query('SELECT 1 FROM tenant_secret_audit_sealer WHERE id = 1 FOR UPDATE');
      await expect(manager.auditTrail.seal()).rejects.toMatchObject({ code: 'LOCK_TIMEOUT' });
      await expect(manager.auditTrail.verify()).rejects.toMatchObject({ code: 'LOCK_TIMEOUT' });
      const status = await manager.installation.status();
      expect(status.sealer.lockHeld).toBe(true);
      expect(status.problems.map((p) => p.code)).toEqual(
        expect.arrayContaining([expect.stringMatching(/^sealer_(stalled|failing)$/)]),
      );
      // Writes go on meanwhile: the data plane never waits for the sealer.
      await manager.set('victim', 'during', 'v');
    } finally {
      await holder.query('ROLLBACK').catch(() => undefined);
      await holder.end();
    }
    expect((await manager.auditTrail.seal()).pending).toBe(0);
    const after = await manager.installation.status();
    expect(after.problems.filter((p) => p.code.startsWith('sealer'))).toEqual([]);
  });

  it('a session holding a table lock: writes, seal() and verify() fail with LOCK_TIMEOUT instead of waiting', async () => {
    const holder = new pg.Client({ connectionString: directUrlFor(db.name) });
    await holder.connect();
    try {
      await holder.query('BEGIN');
      await holder.query('LOCK TABLE tenant_secret_audit_pending IN SHARE MODE');
      await expect(manager.set('victim', 'blocked', 'v')).rejects.toMatchObject({ code: 'LOCK_TIMEOUT' });
      await expect(manager.auditTrail.seal()).rejects.toMatchObject({ code: 'LOCK_TIMEOUT' });
      await expect(manager.auditTrail.verify()).rejects.toMatchObject({ code: 'LOCK_TIMEOUT' });
    } finally {
      await holder.query('ROLLBACK').catch(() => undefined);
      await holder.end();
    }
    await manager.set('victim', 'blocked', 'v');
    expect((await manager.auditTrail.verify()).ok).toBe(true);
  });
});

describe('a BYPASSRLS role with GRANT ALL on every table and sequence', () => {
  beforeAll(async () => {
    await adminQuery(
      db.name,
      `GRANT USAGE ON SCHEMA public TO ${bypass};
       GRANT ALL ON ALL TABLES IN SCHEMA public TO ${bypass};
       GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO ${bypass}`,
    );
  });

  it('reads every row (documented: proof keys, wrapped keys, ciphertext, the audit trail)', async () => {
    const n = await asRole(db.name, bypass, async (c) => {
      const keys = await c.query('SELECT * FROM tenant_secret_master_keys');
      const secrets = await c.query('SELECT * FROM tenant_secret_versions');
      return [keys.rowCount, secrets.rowCount];
    });
    expect(n[0]).toBeGreaterThan(0);
    expect(n[1]).toBeGreaterThan(0);
  });

  it('cannot insert, update, delete, merge or truncate a row of any table or audit partition', async () => {
    const before = await snapshot();
    const tables = await ourTables();
    expect(tables).toEqual(
      expect.arrayContaining([
        'tenant_secret_master_keys',
        'tenant_secret_keys',
        'tenant_secret_audit_pending',
        'tenant_secret_audit_checkpoints',
      ]),
    );
    const accepted: string[] = [];
    const firstColumn = new Map(
      (
        await adminQuery<{ t: string; col: string }>(
          db.name,
          `SELECT c.relname AS t, a.attname AS col FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = 1
            WHERE c.relnamespace = 'public'::regnamespace AND c.relname LIKE 'tenant\\_secret%'`,
        )
      ).map((r) => [r.t, r.col]),
    );
    await asRole(db.name, bypass, async (c) => {
      for (const t of tables) {
        const col = firstColumn.get(t);
        for (const sql of [
          `INSERT INTO ${t} SELECT * FROM ${t} LIMIT 1`,
          `INSERT INTO ${t} DEFAULT VALUES`,
          `INSERT INTO ${t} SELECT * FROM ${t} LIMIT 1 ON CONFLICT DO NOTHING`,
          `UPDATE ${t} SET ${col} = ${col} WHERE false`,
          `UPDATE ${t} SET ${col} = ${col}`,
          `DELETE FROM ${t}`,
          `WITH d AS (DELETE FROM ${t} RETURNING 1) SELECT count(*) FROM d`,
          `MERGE INTO ${t} USING (SELECT 1) s ON true WHEN MATCHED THEN DELETE`,
          `MERGE INTO ${t} USING (SELECT 1) s ON true WHEN MATCHED THEN UPDATE SET ${col} = ${col}`,
          `TRUNCATE ${t} CASCADE`,
        ]) {
          const state = await sqlState(c.query(sql));
          // 42501 from the guards (RLS does not apply to this role), whatever the statement.
          if (state !== '42501') accepted.push(`${sql}: ${state}`);
        }
      }
    });
    expect(accepted).toEqual([]);
    expect(await snapshot()).toBe(before);
  });

  it('cannot plant a proof key, replace a data key, or delete and forge a pending audit record that verification accepts', async () => {
    await manager.set('victim', 'pending', 'v'); // a genuine pending record
    const before = await snapshot();
    const [pendingBefore] = await adminQuery<{ n: number }>(
      db.name,
      'SELECT count(*)::int AS n FROM tenant_secret_audit_pending',
    );
    const states = await asRole(db.name, bypass, async (c) => [
      await sqlState(
        c.query(
          "INSERT INTO tenant_secret_master_keys SELECT 'mk_ffffffffffffffff', proof_key, now(), 'x' FROM tenant_secret_master_keys LIMIT 1",
        ),
      ),
      await sqlState(c.query("UPDATE tenant_secret_keys SET state = state WHERE tenant_id = 'victim'")),
      await sqlState(c.query("DELETE FROM tenant_secret_audit_pending WHERE tenant_id = 'victim'")),
      await sqlState(
        c.query(
          `INSERT INTO tenant_secret_audit_pending SELECT * FROM tenant_secret_audit_pending WHERE tenant_id = 'victim' LIMIT 1`,
        ),
      ),
      await sqlState(
        c.query(
          "UPDATE tenant_secret_audit SET actor = 'someone-else' WHERE tenant_id = 'victim' AND sealed_at <> 'infinity'",
        ),
      ),
    ]);
    expect(states).toEqual(['42501', '42501', '42501', '42501', '42501']);
    expect(await snapshot()).toBe(before);
    const [pendingAfter] = await adminQuery<{ n: number }>(
      db.name,
      'SELECT count(*)::int AS n FROM tenant_secret_audit_pending',
    );
    expect(pendingAfter?.n).toBe(pendingBefore?.n);
    const verified = await manager.auditTrail.verify();
    expect(verified.ok).toBe(true);
    const page = await manager.auditTrail.query('victim', { limit: 1000 });
    expect(page.records.filter((r) => r.actor === 'someone-else')).toEqual([]);
  });
});

describe('sequences: GRANT ALL ON ALL SEQUENCES, then setval to the end', () => {
  it('the data plane keeps working, status() reports it, migrate() puts it back', async () => {
    await adminQuery(
      db.name,
      'GRANT USAGE ON SCHEMA public TO anon; GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO anon',
    );
    const seqs = await adminQuery<{ s: string }>(
      db.name,
      `SELECT c.relname AS s FROM pg_class c WHERE c.relnamespace = 'public'::regnamespace AND c.relkind = 'S'
          AND c.relname LIKE 'tenant\\_secret%' ORDER BY 1`,
    );
    expect(seqs.map((r) => r.s)).toContain('tenant_secret_audit_id_seq');
    const attacker = (await loginRoles('seq'))[0];
    await adminQuery('postgres', `GRANT anon TO ${attacker}`);
    const moved = await asRole(db.name, attacker, async (c) => {
      const out: string[] = [];
      for (const { s } of seqs) {
        out.push(
          await sqlState(
            c.query(
              `SET ROLE anon; SELECT setval('public.${s}', (SELECT seqmax FROM pg_sequence WHERE seqrelid = 'public.${s}'::regclass), true)`,
            ),
          ),
        );
      }
      return out;
    });
    expect(moved.every((s) => s === 'ok')).toBe(true);
    // Reads and writes go on (the audit sequence cycles).
    await manager.set('victim', 'after-setval', 'v');
    expect(await manager.getWithVersion('victim', 'after-setval', { fresh: true })).toMatchObject({
      value: 'v',
    });
    expect(await manager.list('victim')).toEqual(
      expect.arrayContaining([expect.objectContaining({ keyName: 'after-setval' })]),
    );
    expect((await manager.auditTrail.verify()).ok).toBe(true);
    // It cycled back; moved into the upper half of its range instead, it shows.
    await asRole(db.name, attacker, (c) =>
      c.query(
        "SET ROLE anon; SELECT setval('public.tenant_secret_audit_id_seq', (SELECT seqmax - 1000000 FROM pg_sequence WHERE seqrelid = 'public.tenant_secret_audit_id_seq'::regclass), true)",
      ),
    );
    await manager.set('victim', 'after-setval', 'v2');
    const status = await manager.installation.status();
    expect(status.auditSequenceMoved).toBe(true);
    expect(status.problems.map((p) => p.code)).toContain('audit_sequence_moved');
    await manager.installation.migrate();
    const repaired = await manager.installation.status();
    expect(repaired.auditSequenceMoved).toBe(false);
    expect(repaired.unexpectedPrivileges).toEqual([]);
    await manager.set('victim', 'after-migrate', 'v');
    expect((await manager.auditTrail.verify()).ok).toBe(true);
  });
});

describe('forged cached-read records are refused by SQL validation', () => {
  it('nonexistent secret, version -5 or 0, a count of 2e9 or 0, a reversed or out-of-range time span', async () => {
    const bundle = manager.tenantKeyBundle('victim').bytes;
    const [v] = await adminQuery<{ version: number }>(
      db.name,
      "SELECT max(version)::int AS version FROM tenant_secret_versions WHERE tenant_id = 'victim' AND key_name = 'token'",
    );
    const version = v?.version ?? 1;
    const call = (key: string, ver: number, count: number, since: string, until: string) =>
      adminQuery<{ status: string }>(
        db.name,
        `SELECT status FROM tenant_secret_audit_cached_reads('victim', $1, ARRAY[$2], ARRAY[$3::int], ARRAY[$4::int], $5::timestamptz, $6::timestamptz)`,
        [bundle, key, ver, count, since, until],
      ).then((rows) => rows[0]?.status);
    const now = "now() - interval '1 second'";
    const [t] = await adminQuery<{ recent: string; old: string; future: string; now: string }>(
      db.name,
      `SELECT (${now})::text AS recent, (now() - interval '2 days')::text AS old,
              (now() + interval '1 hour')::text AS future, now()::text AS now`,
    );
    if (!t) throw new Error('no times');
    const countCached = async () =>
      (
        await adminQuery<{ n: number }>(
          db.name,
          "SELECT count(*)::int AS n FROM tenant_secret_audit WHERE tenant_id = 'victim' AND details->>'cached' = 'true' AND outcome = 'success'",
        )
      )[0]?.n;
    const before = await countCached();
    // The control: a genuine report is accepted.
    expect(await call('token', version, 3, t.recent, t.now)).toBe('ok');
    const forged: [string, Promise<string | undefined>][] = [
      ['nonexistent secret', call('no-such-secret', 1, 1, t.recent, t.now)],
      ['version -5', call('token', -5, 1, t.recent, t.now)],
      ['version 0', call('token', 0, 1, t.recent, t.now)],
      ['a version that does not exist', call('token', version + 100, 1, t.recent, t.now)],
      ['count 2e9', call('token', version, 2_000_000_000, t.recent, t.now)],
      ['count 0', call('token', version, 0, t.recent, t.now)],
      ['count -1', call('token', version, -1, t.recent, t.now)],
      ['until before since', call('token', version, 1, t.now, t.recent)],
      ['since two days ago', call('token', version, 1, t.old, t.now)],
      ['until in the future', call('token', version, 1, t.recent, t.future)],
    ];
    const answers: Record<string, string | undefined> = {};
    for (const [name, p] of forged) answers[name] = await p;
    expect(answers).toEqual(Object.fromEntries(forged.map(([name]) => [name, 'invalid_input'])));
    await manager.auditTrail.seal();
    expect(await countCached()).toBe((before ?? 0) + 1);
  });
});

describe('pins: another registered master key cannot create a pinned tenant first', () => {
  it('a pinned tenant id and a pinned prefix refuse the other key; the pinned key creates them', async () => {
    const other = createSecretsManager({
      connectionString: db.url,
      masterKey: OTHER_KEY,
      auditSealIntervalMs: 0,
      actor: 'other-app',
    });
    try {
      await other.migrate(); // registers the other key: it may create tenants of its own
      await other.set('others-tenant', 'k', 'v');
      await manager.keys.pin('pinned-tenant');
      await manager.keys.pin('billing:', { prefix: true });
      for (const tenant of ['pinned-tenant', 'billing:acme']) {
        const outcome = await other.set(tenant, 'k', 'planted').then(
          () => 'created',
          (e: { code?: string }) => e.code,
        );
        expect(outcome, tenant).not.toBe('created');
        const [keys] = await adminQuery<{ n: number }>(
          db.name,
          'SELECT count(*)::int AS n FROM tenant_secret_keys WHERE tenant_id = $1',
          [tenant],
        );
        expect(keys?.n, tenant).toBe(0);
      }
      await manager.set('pinned-tenant', 'k', 'mine');
      await manager.set('billing:acme', 'k', 'mine');
      expect(await manager.get('pinned-tenant', 'k')).toBe('mine');
      await expect(other.get('pinned-tenant', 'k')).rejects.toBeDefined();
    } finally {
      await other.close();
    }
  });
});
