import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  ConfigurationError,
  ConflictError,
  createSecretsManager,
  Keyring,
  SecretExpiredError,
  SecretNotFoundError,
  type SecretsManager,
} from '../../src/index.js';
import {
  adminQuery,
  CITUS_STAGE,
  connectForTest,
  directUrlFor,
  freshDatabase,
  TEST_KEY,
} from '../support/db.js';

/**
 * Pools whose connections count the statements calling `single` and `batch` (function names), so
 * that a test can tell how many statements its calls became.
 */
function statementCounter(single: string, batch: string) {
  const sent = { single: 0, batch: 0 };
  const pools: pg.Pool[] = [];
  return {
    sent,
    pool(url: string, max: number): pg.Pool {
      const pool = new pg.Pool({ connectionString: url, max });
      pool.on('connect', (client) => {
        const query = client.query.bind(client) as (...args: unknown[]) => unknown;
        (client as unknown as { query: (...args: unknown[]) => unknown }).query = (...args: unknown[]) => {
          const text = String((args[0] as { text?: unknown } | undefined)?.text ?? args[0]);
          if (text.includes(`.${batch}(`)) sent.batch++;
          else if (text.includes(`.${single}(`)) sent.single++;
          return query(...args);
        };
      });
      pools.push(pool);
      return pool;
    },
    async counted(work: () => Promise<unknown>): Promise<{ single: number; batch: number }> {
      const before = { ...sent };
      await work();
      return { single: sent.single - before.single, batch: sent.batch - before.batch };
    },
    async end(): Promise<void> {
      for (const pool of pools) await pool.end();
    },
  };
}

/**
 * Concurrent reads beyond `concurrentReads` go to the database together (tenant_secret_fetch_batch):
 * each keeps its own authorisation, audit record, context and outcome, and a batch the database
 * refuses falls back to one call per read.
 */
describe.skipIf(CITUS_STAGE)('reads sent together', () => {
  let db: { name: string; url: string };
  let manager: SecretsManager;
  const TENANTS = Array.from({ length: 8 }, (_, i) => `rb-${i}`);

  /** Read statements this block's managers sent, counted on their connections. */
  const counter = statementCounter('tenant_secret_fetch', 'tenant_secret_fetch_batch');
  const { counted } = counter;
  const countingPool = () => counter.pool(db.url, 4);

  beforeAll(async () => {
    db = await freshDatabase();
    manager = createSecretsManager({
      pool: countingPool(),
      masterKey: TEST_KEY,
      actor: 'test',
      auditSealIntervalMs: 0,
      concurrentReads: 1,
      maxConnections: 4,
    });
    await manager.migrate();
    for (const tenant of TENANTS) {
      for (let k = 0; k < 4; k++) await manager.set(tenant, `k${k}`, `${tenant}/k${k}`);
    }
  });
  afterAll(async () => {
    await manager?.close();
    await counter.end();
  });

  it('answers each of many concurrent reads with its own value, in fewer statements than reads', async () => {
    const reads = Array.from({ length: 64 }, (_, i) => ({
      tenant: TENANTS[i % 8] as string,
      key: `k${i % 4}`,
    }));
    let values: (string | null)[] = [];
    const statements = await counted(async () => {
      values = await Promise.all(reads.map((r) => manager.get(r.tenant, r.key)));
    });
    expect(values).toEqual(reads.map((r) => `${r.tenant}/${r.key}`));
    expect(statements.batch).toBeGreaterThan(0);
    expect(statements.batch + statements.single).toBeLessThan(reads.length / 2);
  });

  it('records every read on its own tenant chain with its own context, and the trail verifies', async () => {
    const reads = Array.from({ length: 40 }, (_, i) => ({
      tenant: TENANTS[i % 8] as string,
      key: `k${i % 4}`,
      request: `req-${i}`,
    }));
    await Promise.all(
      reads.map((r) =>
        manager.withContext({ requestId: r.request, actor: `user-${r.request}` }).get(r.tenant, r.key),
      ),
    );
    await manager.sealAudit();
    const rows = await adminQuery<{
      request_id: string;
      tenant_id: string;
      key_name: string;
      actor: string;
      outcome: string;
      version: number;
    }>(
      db.name,
      `SELECT request_id, tenant_id, key_name, actor, outcome, version FROM tenant_secret_audit
        WHERE action = 'secret.read' AND request_id LIKE 'req-%'`,
    );
    expect(rows).toHaveLength(reads.length);
    for (const r of reads) {
      const record = rows.find((row) => row.request_id === r.request);
      expect(record).toMatchObject({
        tenant_id: r.tenant,
        key_name: r.key,
        actor: `user-${r.request}`,
        outcome: 'success',
        version: 1,
      });
    }
    expect((await manager.verifyAudit()).ok).toBe(true);
  });

  it('gives each read its own outcome: missing, expired and present secrets in one burst', async () => {
    await manager.set('rb-0', 'gone-by', 'old', { expiresAt: new Date(Date.now() + 1500) });
    await new Promise((resolve) => setTimeout(resolve, 1600));
    const outcomes = await Promise.allSettled(
      Array.from({ length: 30 }, (_, i) =>
        i % 3 === 0
          ? manager.get('rb-1', 'k1')
          : i % 3 === 1
            ? manager.get('rb-2', `missing-${i}`)
            : manager.get('rb-0', 'gone-by'),
      ),
    );
    outcomes.forEach((o, i) => {
      if (i % 3 === 0) expect(o).toEqual({ status: 'fulfilled', value: 'rb-1/k1' });
      else if (i % 3 === 1) expect(o).toEqual({ status: 'fulfilled', value: null });
      else {
        expect(o.status).toBe('rejected');
        expect((o as PromiseRejectedResult).reason).toBeInstanceOf(SecretExpiredError);
      }
    });
    await manager.sealAudit();
    const failures = await adminQuery<{ error_code: string; n: string }>(
      db.name,
      `SELECT error_code, count(*) AS n FROM tenant_secret_audit
        WHERE action = 'secret.read' AND outcome = 'failure' AND (key_name LIKE 'missing-%' OR key_name = 'gone-by') GROUP BY 1 ORDER BY 1`,
    );
    expect(failures).toEqual([
      { error_code: 'EXPIRED', n: '10' },
      { error_code: 'NOT_FOUND', n: '10' },
    ]);
  });

  it('releases nothing and records nothing for an item its credentials do not authorise; the others are answered', async () => {
    const ring = Keyring.parse(TEST_KEY);
    const good = ring.credentialsBytes('rb-3');
    const before = await adminQuery<{ n: string }>(
      db.name,
      'SELECT count(*) AS n FROM tenant_secret_audit_pending',
    );
    // Item 2 presents rb-3's credentials for rb-4: another tenant's token.
    const rows = await adminQuery<{
      ord: number;
      status: string;
      sealed: Buffer | null;
      wrapped_key: Buffer | null;
    }>(
      db.name,
      `SELECT ord, status, sealed, wrapped_key FROM tenant_secret_fetch_batch($1::text[], $2::text[], $3::bytea[], $4::boolean[], $5::jsonb[])`,
      [
        ['rb-3', 'rb-4', 'rb-3'],
        ['k0', 'k0', 'nope'],
        [good, good, good],
        [false, false, false],
        ['{}', '{}', '{}'],
      ],
    );
    expect(rows.map((r) => [r.ord, r.status])).toEqual([
      [1, 'ok'],
      [2, 'single'],
      [3, 'not_found'],
    ]);
    expect(rows[1]?.sealed).toBeNull();
    expect(rows[1]?.wrapped_key).toBeNull();
    expect(rows[0]?.sealed).not.toBeNull();
    const after = await adminQuery<{ n: string }>(
      db.name,
      'SELECT count(*) AS n FROM tenant_secret_audit_pending',
    );
    expect(Number(after[0]?.n) - Number(before[0]?.n)).toBe(2);
    await expect(
      adminQuery(
        db.name,
        `SELECT * FROM tenant_secret_fetch_batch($1::text[], $2::text[], $3::bytea[], $4::boolean[], $5::jsonb[])`,
        [['rb-3'], ['k0', 'k1'], [good], [false], ['{}']],
      ),
    ).rejects.toMatchObject({ code: '22023' });
  });

  it('reads inside a caller transaction one statement at a time', async () => {
    const client = new pg.Client({ connectionString: db.url });
    await client.connect();
    try {
      await client.query('BEGIN');
      const tx = manager.inTransaction(client);
      const values = await Promise.all([tx.get('rb-5', 'k0'), tx.get('rb-6', 'k1'), tx.get('rb-7', 'k2')]);
      await client.query('COMMIT');
      expect(values).toEqual(['rb-5/k0', 'rb-6/k1', 'rb-7/k2']);
    } finally {
      await client.end();
    }
    await manager.sealAudit();
    const recorded = await adminQuery<{ n: string }>(
      db.name,
      `SELECT count(*) AS n FROM tenant_secret_audit WHERE action = 'secret.read' AND tenant_id IN ('rb-5', 'rb-6', 'rb-7') AND key_name IN ('k0', 'k1', 'k2') AND tenant_id || key_name IN ('rb-5k0', 'rb-6k1', 'rb-7k2')`,
    );
    expect(Number(recorded[0]?.n)).toBeGreaterThanOrEqual(3);
  });

  it('falls back to one call per read when the database refuses batches, and stops batching', async () => {
    const other = createSecretsManager({
      pool: countingPool(),
      masterKey: TEST_KEY,
      actor: 'test',
      auditSealIntervalMs: 0,
      concurrentReads: 1,
      maxConnections: 4,
    });
    // What a distributed installation records: batches of several tenants are refused there (0A000).
    await adminQuery(
      db.name,
      `INSERT INTO tenant_secret_schema_state (key, value, updated_at) VALUES ('citus_variants', '{}'::jsonb, now())`,
    );
    try {
      for (let round = 0; round < 2; round++) {
        const values = await Promise.all(TENANTS.map((t) => other.get(t, 'k3')));
        expect(values).toEqual(TENANTS.map((t) => `${t}/k3`));
      }
      const statements = await counted(() => Promise.all(TENANTS.map((t) => other.get(t, 'k2'))));
      expect(statements.batch).toBe(0);
      expect(statements.single).toBeGreaterThanOrEqual(TENANTS.length);
    } finally {
      await adminQuery(db.name, `DELETE FROM tenant_secret_schema_state WHERE key = 'citus_variants'`);
      await other.close();
    }
  });

  it('sends every read on its own with concurrentReads: 0, and refuses a bad setting', async () => {
    const unbatched = createSecretsManager({
      pool: countingPool(),
      masterKey: TEST_KEY,
      auditSealIntervalMs: 0,
      concurrentReads: 0,
    });
    try {
      // One call first: behind a transaction pooler, a new manager's first named statement may be
      // refused and sent again unnamed, which would count twice.
      await unbatched.get('rb-0', 'k1');
      const statements = await counted(() => Promise.all(TENANTS.map((t) => unbatched.get(t, 'k0'))));
      // At least one statement per read (behind a transaction pooler a refused named statement is sent
      // again, and counted again), and never a batch.
      expect(statements.batch).toBe(0);
      expect(statements.single).toBeGreaterThanOrEqual(TENANTS.length);
    } finally {
      await unbatched.close();
    }
    for (const bad of [-1, 1.5, 1001, '4']) {
      expect(() =>
        createSecretsManager({
          connectionString: db.url,
          masterKey: TEST_KEY,
          concurrentReads: bad as number,
        }),
      ).toThrow(ConfigurationError);
    }
  });
});

/**
 * Concurrent plain writes beyond `concurrentWrites` go together (tenant_secret_put_batch): each is
 * checked, versioned, retained and audited on its own; a write the batch cannot make alone (new,
 * conflicting, missing, or a row another transaction holds) is made by a call of its own.
 */
describe.skipIf(CITUS_STAGE)('writes sent together', () => {
  let db: { name: string; url: string };
  let manager: SecretsManager;
  const counter = statementCounter('tenant_secret_put', 'tenant_secret_put_batch');
  const { sent, counted } = counter;
  const TENANTS = Array.from({ length: 8 }, (_, i) => `wb-${i}`);

  beforeAll(async () => {
    db = await freshDatabase();
    const pool = counter.pool(db.url, 6);
    manager = createSecretsManager({
      pool,
      masterKey: TEST_KEY,
      actor: 'test',
      auditSealIntervalMs: 0,
      concurrentWrites: 1,
    });
    await manager.migrate();
    for (const tenant of TENANTS) {
      for (let k = 0; k < 4; k++) await manager.set(tenant, `k${k}`, `${tenant}/k${k}/v1`);
    }
  });
  afterAll(async () => {
    await manager?.close();
    await counter.end();
  });

  it('writes each of many concurrent sets, in fewer statements than writes; every value reads back at its version', async () => {
    const writes = Array.from({ length: 32 }, (_, i) => ({
      tenant: TENANTS[i % 8] as string,
      key: `k${Math.floor(i / 8)}`,
    }));
    let results: { version: number }[] = [];
    const statements = await counted(async () => {
      results = await Promise.all(writes.map((w) => manager.set(w.tenant, w.key, `${w.tenant}/${w.key}/v2`)));
    });
    expect(results.map((r) => r.version)).toEqual(writes.map(() => 2));
    expect(statements.batch).toBeGreaterThan(0);
    expect(statements.batch + statements.single).toBeLessThan(writes.length / 2);
    for (const w of writes) {
      expect(await manager.get(w.tenant, w.key)).toBe(`${w.tenant}/${w.key}/v2`);
      expect(await manager.get(w.tenant, w.key, { version: 'previous' })).toBe(`${w.tenant}/${w.key}/v1`);
    }
  });

  it('gives concurrent writes of one secret one version each, in order, each audited; the trail verifies', async () => {
    const before = (await manager.getWithVersion('wb-0', 'k0'))?.version ?? 0;
    const results = await Promise.all(
      Array.from({ length: 24 }, (_, i) =>
        manager.withContext({ requestId: `same-${i}` }).set('wb-0', 'k0', `same-${i}`),
      ),
    );
    const versions = results.map((r) => r.version).sort((a, b) => a - b);
    expect(versions).toEqual(Array.from({ length: 24 }, (_, i) => before + 1 + i));
    const kept = results.filter((r) => r.version > before + 24 - 10);
    for (const [i, r] of results.entries()) {
      if (kept.includes(r)) expect(await manager.get('wb-0', 'k0', { version: r.version })).toBe(`same-${i}`);
    }
    await manager.sealAudit();
    const records = await adminQuery<{
      request_id: string;
      version: number;
      details: { destroyed_versions?: number[] } | null;
    }>(
      db.name,
      `SELECT request_id, version, details FROM tenant_secret_audit WHERE action = 'secret.updated' AND request_id LIKE 'same-%'`,
    );
    expect(records).toHaveLength(24);
    for (const [i, r] of results.entries()) {
      expect(records.find((x) => x.request_id === `same-${i}`)?.version).toBe(r.version);
    }
    // Retention (10 versions by default) destroyed the oldest as the versions were written, and said so.
    const destroyed = records.flatMap((r) => r.details?.destroyed_versions ?? []).sort((a, b) => a - b);
    expect(destroyed).toEqual(Array.from({ length: before + 24 - 10 }, (_, i) => i + 1));
    expect((await manager.verifyAudit()).ok).toBe(true);
  });

  it('answers each write on its own: a rotate of a missing secret and a stale expectedVersion fail, the rest are written', async () => {
    const current = (await manager.getWithVersion('wb-2', 'k1'))?.version as number;
    const k3 = (await manager.getWithVersion('wb-2', 'k3'))?.version;
    // Every call made in one turn, so that they go together.
    const outcomes = await Promise.allSettled([
      ...TENANTS.map((t) => manager.rotate(t, 'k2', `${t}/rotated`)),
      manager.rotate('wb-3', 'no-such-secret', 'x'),
      manager.rotate('wb-2', 'k1', 'stale', { expectedVersion: current - 1 }),
      manager.rotate('wb-2', 'k3', 'checked', { expectedVersion: k3 }),
    ]);
    for (const o of outcomes.slice(0, TENANTS.length)) expect(o.status).toBe('fulfilled');
    expect((outcomes[TENANTS.length] as PromiseRejectedResult).reason).toBeInstanceOf(SecretNotFoundError);
    expect((outcomes[TENANTS.length + 1] as PromiseRejectedResult).reason).toBeInstanceOf(ConflictError);
    expect(outcomes[TENANTS.length + 2]?.status).toBe('fulfilled');
    for (const t of TENANTS) expect(await manager.get(t, 'k2')).toBe(`${t}/rotated`);
    expect(await manager.get('wb-2', 'k1')).not.toBe('stale');
    await manager.sealAudit();
    const rotated = await adminQuery<{ n: string }>(
      db.name,
      `SELECT count(*) AS n FROM tenant_secret_audit WHERE action = 'secret.rotated' AND key_name = 'k2' AND outcome = 'success'`,
    );
    expect(Number(rotated[0]?.n)).toBe(TENANTS.length);
  });

  it('never waits on a row another transaction holds: that write waits alone, the others are written', async () => {
    const holder = new pg.Client({ connectionString: db.url });
    await holder.connect();
    try {
      await holder.query('BEGIN');
      await holder.query(
        `SELECT 1 FROM tenant_secrets WHERE tenant_id = 'wb-5' AND key_name = 'k3' FOR UPDATE`,
      );
      // All in one turn: the first leaves at once, the rest (wb-5's among them) as one batch.
      const before = { ...sent };
      const all = TENANTS.map((t) =>
        manager.set(t, 'k3', t === 'wb-5' ? 'after the holder' : `${t}/k3/free`),
      );
      const held = all[5] as Promise<unknown>;
      const others = await Promise.all(all.filter((_, i) => i !== 5));
      expect(others).toHaveLength(TENANTS.length - 1);
      let settled = false;
      void held.then(() => {
        settled = true;
      });
      await new Promise((resolve) => setTimeout(resolve, 200));
      expect(settled).toBe(false);
      await holder.query('COMMIT');
      await held;
      // wb-5's write left the batch and went alone: a batch that had waited on the row would have
      // failed at the lock timeout and been sent again write by write.
      // (Behind a transaction pooler a refused named statement is sent again and counted again: hence
      // bounds rather than exact counts. Waiting on the row, the batch would have failed at the lock
      // timeout and all seven writes would have been sent again one by one.)
      expect(sent.batch - before.batch).toBeGreaterThanOrEqual(1);
      expect(sent.single - before.single).toBeGreaterThanOrEqual(2);
      expect(sent.single - before.single).toBeLessThanOrEqual(4);
      expect(await manager.get('wb-5', 'k3')).toBe('after the holder');
    } finally {
      await holder.end();
    }
  });

  it('writes nothing for an item whose data key does not match its tenant', async () => {
    const snapshot = () =>
      adminQuery<{ v: number }>(
        db.name,
        `SELECT current_version AS v FROM tenant_secrets WHERE tenant_id = 'wb-6' AND key_name = 'k0'`,
      );
    const before = await snapshot();
    const rows = await adminQuery<{ ord: number; status: string; version: number | null }>(
      db.name,
      `SELECT * FROM tenant_secret_put_batch($1::text[], $2::text[], $3::bytea[], $4::integer[], $5::bytea[], $6::text[], $7::integer[], $8::integer[], $9::integer[], $10::jsonb[])`,
      [
        ['wb-6'],
        ['k0'],
        [Buffer.from('forged')],
        [1],
        [Buffer.alloc(32, 7)],
        ['set'],
        [null],
        [10],
        [0],
        ['{}'],
      ],
    );
    expect(rows).toEqual([{ ord: 1, status: 'single', version: null }]);
    expect(await snapshot()).toEqual(before);
    await expect(
      adminQuery(
        db.name,
        `SELECT * FROM tenant_secret_put_batch($1::text[], $2::text[], $3::bytea[], $4::integer[], $5::bytea[], $6::text[], $7::integer[], $8::integer[], $9::integer[], $10::jsonb[])`,
        [
          ['wb-6'],
          ['k0', 'k1'],
          [Buffer.from('x')],
          [1],
          [Buffer.alloc(32)],
          ['set'],
          [null],
          [10],
          [0],
          ['{}'],
        ],
      ),
    ).rejects.toMatchObject({ code: '22023' });
  });

  it('writes one call per secret when the database refuses batches', async () => {
    await adminQuery(
      db.name,
      `INSERT INTO tenant_secret_schema_state (key, value, updated_at) VALUES ('citus_variants', '{}'::jsonb, now())`,
    );
    try {
      for (let round = 0; round < 2; round++) {
        const results = await Promise.all(TENANTS.map((t) => manager.set(t, 'k1', `${t}/refused-${round}`)));
        expect(results).toHaveLength(TENANTS.length);
      }
      const statements = await counted(() =>
        Promise.all(TENANTS.map((t) => manager.set(t, 'k1', `${t}/alone`))),
      );
      expect(statements.batch).toBe(0);
      expect(statements.single).toBeGreaterThanOrEqual(TENANTS.length);
      for (const t of TENANTS) expect(await manager.get(t, 'k1')).toBe(`${t}/alone`);
    } finally {
      await adminQuery(db.name, `DELETE FROM tenant_secret_schema_state WHERE key = 'citus_variants'`);
    }
  });
});

/**
 * A batch reads the versions table with the snapshot its statement started with, and locks each row
 * later. When other writers commit new versions of a secret in between, that snapshot cannot see them,
 * so the batch's retention would leave them out: the batch sends such a secret back to be written by a
 * call of its own. To make the interval as long as the test needs, the data-key check the batch makes
 * before locking (and only that of the held connections) waits on a lock the test holds.
 */
describe.skipIf(CITUS_STAGE)('a batched write of a secret that others write meanwhile', () => {
  let db: { name: string; url: string };
  let writer: SecretsManager;
  let held: SecretsManager;
  let heldPool: pg.Pool | undefined;
  const HOLD = 77_001;

  beforeAll(async () => {
    db = await freshDatabase();
    writer = createSecretsManager({
      connectionString: db.url,
      masterKey: TEST_KEY,
      auditSealIntervalMs: 0,
      maxVersions: 2,
    });
    await writer.migrate();
    // The check, renamed, and a wrapper that first waits for the test's lock on held connections.
    await adminQuery(
      db.name,
      `ALTER FUNCTION _ts_dek_check(bytea) RENAME TO _ts_dek_check_unheld;
       CREATE FUNCTION _ts_dek_check(p_dek bytea) RETURNS bytea LANGUAGE plpgsql VOLATILE SET search_path = '' AS $$
       BEGIN
         IF pg_catalog.current_setting('application_name') = 'held-writer' THEN
           PERFORM pg_catalog.pg_advisory_xact_lock_shared(${HOLD});
         END IF;
         RETURN public._ts_dek_check_unheld(p_dek);
       END $$;`,
    );
    // Direct, never through a pooler: a pooler's server connections could carry the name to the
    // other manager's calls.
    heldPool = new pg.Pool({
      connectionString: directUrlFor(db.name),
      max: 4,
      application_name: 'held-writer',
    });
    held = createSecretsManager({
      pool: heldPool,
      masterKey: TEST_KEY,
      auditSealIntervalMs: 0,
      maxVersions: 2,
      concurrentWrites: 1,
    });
    for (const key of ['s', 'a0', 'a1']) await writer.set('hb', key, `${key}/1`);
    // The held manager learns the tenant's data key while nothing holds it.
    await held.set('hb', 'a0', 'a0/2');
  });
  afterAll(async () => {
    await held?.close();
    await heldPool?.end();
    await writer?.close();
  });

  it('keeps exactly maxVersions versions, and the trail says which were destroyed', async () => {
    const lock = await connectForTest(directUrlFor(db.name));
    await lock.query(`SELECT pg_advisory_lock(${HOLD})`);
    // One write alone (its slot stalls), then two that go together once it has stalled: a batch.
    const heldWrites = Promise.all([
      held.set('hb', 'a0', 'a0/3'),
      held.set('hb', 's', 's/held'),
      held.set('hb', 'a1', 'a1/2'),
    ]);
    const waiting = async () =>
      Number(
        (
          await lock.query(
            `SELECT count(*) AS n FROM pg_locks WHERE locktype = 'advisory' AND objid = ${HOLD} AND NOT granted`,
          )
        ).rows[0].n,
      );
    for (let i = 0; i < 200 && (await waiting()) < 2; i++) await new Promise((r) => setTimeout(r, 25));
    expect(await waiting()).toBe(2);
    // Meanwhile three versions of the same secret are written and committed.
    for (let v = 2; v <= 4; v++) expect((await writer.set('hb', 's', `s/${v}`)).version).toBe(v);
    await lock.query(`SELECT pg_advisory_unlock(${HOLD})`);
    const [, written] = await heldWrites;
    expect(written.version).toBe(5);
    const kept = await adminQuery<{ version: number }>(
      db.name,
      `SELECT version FROM tenant_secret_versions
        WHERE tenant_id = 'hb' AND key_name = 's' AND encrypted_value IS NOT NULL ORDER BY version`,
    );
    expect(kept.map((r) => r.version)).toEqual([4, 5]);
    expect(await writer.get('hb', 's', { version: 4 })).toBe('s/4');
    expect(await writer.get('hb', 's')).toBe('s/held');
    await writer.sealAudit();
    const destroyed = await adminQuery<{ v: number }>(
      db.name,
      `SELECT jsonb_array_elements(details->'destroyed_versions')::int AS v FROM tenant_secret_audit
        WHERE tenant_id = 'hb' AND key_name = 's' ORDER BY 1`,
    );
    expect(destroyed.map((r) => r.v)).toEqual([1, 2, 3]);
    expect((await writer.verifyAudit()).ok).toBe(true);
  });
});
