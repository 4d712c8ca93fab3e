import { sql as drizzleSql } from 'drizzle-orm';
import { drizzle } from 'drizzle-orm/node-postgres';
import { CompiledQuery, Kysely, PostgresDialect } from 'kysely';
import pg from 'pg';
import postgres from 'postgres';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  createSecretsManager,
  fromDrizzle,
  fromKysely,
  fromPostgresJs,
  type Queryable,
  SecretNotFoundError,
  type SecretsManager,
  type TransactionSecrets,
} from '../../src/index.js';
import { adminQuery, setupManager, TEST_KEY } from '../support/db.js';

/**
 * A tenant row and its secrets commit or roll back together, whatever driver runs the application's
 * transaction: pg, Kysely, Drizzle, postgres.js.
 */
let manager: SecretsManager;
let db: { name: string; url: string };

beforeAll(async () => {
  ({ manager, db } = await setupManager({ auditSealIntervalMs: 0 }));
  await adminQuery(db.name, 'CREATE TABLE app_tenants (id text PRIMARY KEY, name text NOT NULL)');
});

/** Runs `work` in the driver's own transaction, committing unless `rollback`. */
type Driver = {
  name: string;
  run(work: (tx: Queryable) => Promise<void>, rollback: boolean): Promise<void>;
  close(): Promise<void>;
};

class Rollback extends Error {}

function drivers(url: string): Driver[] {
  const pool = new pg.Pool({ connectionString: url, max: 2 });
  const kysely = new Kysely<unknown>({
    dialect: new PostgresDialect({ pool: new pg.Pool({ connectionString: url, max: 2 }) }),
  });
  const drizzlePool = new pg.Pool({ connectionString: url, max: 2 });
  const drizzleDb = drizzle(drizzlePool);
  const sql = postgres(url, { max: 2, onnotice: () => undefined });
  const swallow = async (p: Promise<unknown>) => {
    try {
      await p;
    } catch (error) {
      if (!(error instanceof Rollback)) throw error;
    }
  };
  return [
    {
      name: 'pg client',
      async run(work, rollback) {
        const client = await pool.connect();
        try {
          await client.query('BEGIN');
          await work(client);
          await client.query(rollback ? 'ROLLBACK' : 'COMMIT');
        } catch (error) {
          await client.query('ROLLBACK');
          throw error;
        } finally {
          client.release();
        }
      },
      close: () => pool.end(),
    },
    {
      name: 'Kysely',
      run: (work, rollback) =>
        swallow(
          kysely.transaction().execute(async (trx) => {
            await work(fromKysely(trx, CompiledQuery));
            if (rollback) throw new Rollback();
          }),
        ),
      close: () => kysely.destroy(),
    },
    {
      name: 'Drizzle',
      run: (work, rollback) =>
        swallow(
          drizzleDb.transaction(async (tx) => {
            await work(fromDrizzle(tx, drizzleSql));
            if (rollback) throw new Rollback();
          }),
        ),
      close: () => drizzlePool.end(),
    },
    {
      name: 'postgres.js',
      run: (work, rollback) =>
        swallow(
          sql.begin(async (tx) => {
            await work(fromPostgresJs(tx));
            if (rollback) throw new Rollback();
          }),
        ),
      close: () => sql.end(),
    },
  ];
}

describe("operations in the caller's transaction", () => {
  let all: Driver[];
  beforeAll(() => {
    all = drivers(db.url);
  });
  afterAll(async () => {
    await Promise.all(all.map((d) => d.close()));
  });

  const tenantOf = (driver: Driver, suffix: string) =>
    `${driver.name.replace(/[^a-z]/gi, '').toLowerCase()}-${suffix}`;

  async function createTenant(tx: Queryable, secrets: TransactionSecrets, tenant: string) {
    await tx.query('INSERT INTO app_tenants (id, name) VALUES ($1, $2)', [tenant, `Tenant ${tenant}`]);
    await secrets.set(tenant, 'stripe/api-key', `sk_${tenant}`);
    await secrets.set(tenant, 'db/password', `pw_${tenant}`, { description: 'created with the tenant' });
    // Reads inside the transaction see its own writes.
    expect(await secrets.get(tenant, 'stripe/api-key')).toBe(`sk_${tenant}`);
  }

  it.each(['pg client', 'Kysely', 'Drizzle', 'postgres.js'])(
    '%s: commit keeps the tenant row and its secrets',
    async (name) => {
      const driver = all.find((d) => d.name === name) as Driver;
      const tenant = tenantOf(driver, 'commit');
      await driver.run((tx) => createTenant(tx, manager.inTransaction(tx), tenant), false);
      const rows = await adminQuery(db.name, 'SELECT id FROM app_tenants WHERE id = $1', [tenant]);
      expect(rows).toHaveLength(1);
      expect(await manager.get(tenant, 'stripe/api-key')).toBe(`sk_${tenant}`);
      expect(await manager.get(tenant, 'db/password')).toBe(`pw_${tenant}`);
      await manager.sealAudit();
      const audit = await manager.audit(tenant);
      expect(audit.records.map((r) => r.action)).toEqual(
        expect.arrayContaining(['secret.created', 'secret.created', 'secret.read']),
      );
    },
  );

  it.each(['pg client', 'Kysely', 'Drizzle', 'postgres.js'])(
    '%s: rollback leaves neither the row nor any secret, key or audit record',
    async (name) => {
      const driver = all.find((d) => d.name === name) as Driver;
      const tenant = tenantOf(driver, 'rollback');
      await driver.run((tx) => createTenant(tx, manager.inTransaction(tx), tenant), true);
      expect(await adminQuery(db.name, 'SELECT id FROM app_tenants WHERE id = $1', [tenant])).toHaveLength(0);
      expect(await manager.get(tenant, 'stripe/api-key')).toBeNull();
      const keys = await adminQuery(db.name, 'SELECT 1 FROM tenant_secret_keys WHERE tenant_id = $1', [
        tenant,
      ]);
      expect(keys).toHaveLength(0);
      await manager.sealAudit();
      const writes = await adminQuery(
        db.name,
        `SELECT 1 FROM tenant_secret_audit WHERE tenant_id = $1 AND action = 'secret.created'`,
        [tenant],
      );
      expect(writes).toHaveLength(0);
    },
  );

  it.each(['pg client', 'Kysely', 'Drizzle', 'postgres.js'])(
    '%s: a refused call throws a typed error and leaves the transaction usable',
    async (name) => {
      const driver = all.find((d) => d.name === name) as Driver;
      const tenant = tenantOf(driver, 'refused');
      await driver.run(async (tx) => {
        const secrets = manager.inTransaction(tx);
        await secrets.set(tenant, 'k', 'v1');
        await expect(secrets.rotate(tenant, 'missing', 'v')).rejects.toBeInstanceOf(SecretNotFoundError);
        await tx.query('INSERT INTO app_tenants (id, name) VALUES ($1, $2)', [
          tenant,
          'after a refused call',
        ]);
      }, false);
      expect(await adminQuery(db.name, 'SELECT id FROM app_tenants WHERE id = $1', [tenant])).toHaveLength(1);
      await manager.sealAudit();
      const failed = await adminQuery(
        db.name,
        `SELECT error_code FROM tenant_secret_audit WHERE tenant_id = $1 AND action = 'secret.rotated'`,
        [tenant],
      );
      expect(failed).toEqual([{ error_code: 'NOT_FOUND' }]);
    },
  );

  it("a database error inside the call aborts the caller's transaction (PostgreSQL semantics): it must roll back", async () => {
    const driver = all[0] as Driver;
    const tenant = 'pgclient-aborted';
    let afterError: unknown;
    await driver
      .run(async (tx) => {
        const secrets = manager.inTransaction(tx);
        await tx.query("SET LOCAL statement_timeout = '1ms'");
        await tx.query('SELECT pg_sleep(0.05)').catch(() => undefined);
        afterError = await secrets.set(tenant, 'k', 'v').catch((e: unknown) => e);
      }, false)
      .catch(() => undefined);
    expect((afterError as { code?: string }).code).toBe('DATABASE');
    expect(await manager.get(tenant, 'k')).toBeNull();
  });
});

describe('sealing records written in a caller transaction', () => {
  it('seals them after the caller commits, although the sealer ran while they were uncommitted', async () => {
    const sealing = createSecretsManager({
      connectionString: db.url,
      masterKey: TEST_KEY,
      actor: 'test',
      auditSealIntervalMs: 100,
    });
    const client = new pg.Client({ connectionString: db.url });
    await client.connect();
    const pendingOf = async (tenant: string) =>
      Number(
        (
          await adminQuery<{ n: string }>(
            db.name,
            'SELECT count(*) AS n FROM tenant_secret_audit_pending WHERE tenant_id = $1',
            [tenant],
          )
        )[0]?.n,
      );
    try {
      await client.query('BEGIN');
      await sealing.inTransaction(client).set('late-commit', 'k', 'v');
      await sealing.set('late-commit-other', 'k', 'v'); // a sealer run while the first is uncommitted
      await new Promise((resolve) => setTimeout(resolve, 400));
      await client.query('COMMIT');
      // The sealer keeps running on its interval: the late-committed record must be sealed by it
      // (not only by close()); it may already be by the time we look.
      const deadline = Date.now() + 5000;
      while ((await pendingOf('late-commit')) > 0 && Date.now() < deadline) {
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
      expect(await pendingOf('late-commit')).toBe(0);

      // And close() seals what a caller committed just before.
      await client.query('BEGIN');
      await sealing.inTransaction(client).set('late-commit', 'k2', 'v');
      await client.query('COMMIT');
      await sealing.close();
      expect(await pendingOf('late-commit')).toBe(0);
    } finally {
      await client.end();
      await sealing.close();
    }
  });
});
