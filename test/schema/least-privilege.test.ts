import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { createSecretsManager, DatabaseError, SchemaNotReadyError } from '../../src/index.js';
import { adminQuery, freshDatabase, TEST_KEY, urlFor } from '../support/db.js';

/**
 * The split the README recommends: an operator (the schema owner) runs migrate(); the application
 * connects as a role that only received the data-plane grants and checks readiness with ready().
 */
describe('least privilege at start-up', () => {
  it('the application role works with migrate({ grantTo }) grants only: ready() passes, migrate() and status() are refused with typed errors', async () => {
    const db = await freshDatabase('lp');
    const role = `app_${randomBytes(4).toString('hex')}`;
    await adminQuery(db.name, `CREATE ROLE ${role} LOGIN PASSWORD 'app'`);
    const appUrl = new URL(urlFor(db.name));
    appUrl.username = role;
    appUrl.password = 'app';

    const app = createSecretsManager({
      connectionString: appUrl.toString(),
      masterKey: TEST_KEY,
      actor: 'app',
    });
    try {
      // Before the operator migrated: ready() says what to do.
      const early = await app.ready().catch((e: unknown) => e);
      expect(early).toBeInstanceOf(SchemaNotReadyError);
      expect((early as Error).message).toMatch(/migrate/);

      const operator = createSecretsManager({
        connectionString: urlFor(db.name),
        masterKey: TEST_KEY,
        actor: 'operator',
      });
      try {
        const result = await operator.migrate({ grantTo: [role] });
        expect(result.registered).toEqual(operator.masterKeyIds);
      } finally {
        await operator.close();
      }

      const ready = await app.ready();
      expect(ready.registeredMasterKeyIds).toEqual([app.masterKeyIds[0]]);
      await app.set('acme', 'k', 'v');
      expect(await app.get('acme', 'k')).toBe('v');
      await app.sealAudit();

      const migrating = await app.migrate().catch((e: unknown) => e);
      expect(migrating).toBeInstanceOf(DatabaseError);
      expect((migrating as Error).message).toMatch(/owns the tenant-secrets schema.*ready\(\)/);
      const status = await app.status().catch((e: unknown) => e);
      expect(status).toBeInstanceOf(DatabaseError);
      expect((status as DatabaseError).sqlState).toBe('42501');
      // Operator functions are not granted to the application role.
      await expect(app.purgeTenant('acme')).rejects.toMatchObject({ sqlState: '42501' });
      await expect(app.verifyAudit()).rejects.toMatchObject({ sqlState: '42501' });
    } finally {
      await app.close();
    }
  });

  it('ready() refuses when the current master key is not registered, and names what to run', async () => {
    const db = await freshDatabase('lp');
    const operator = createSecretsManager({ connectionString: urlFor(db.name), masterKey: TEST_KEY });
    await operator.migrate();
    await operator.close();
    const newKey = randomBytes(32).toString('base64');
    const app = createSecretsManager({
      connectionString: urlFor(db.name),
      masterKey: newKey,
      previousMasterKeys: [TEST_KEY],
    });
    try {
      const error = await app.ready().catch((e: unknown) => e);
      expect(error).toBeInstanceOf(SchemaNotReadyError);
      expect((error as Error).message).toMatch(/not registered/);
      // The application holds the previous (registered) key: it may register the new one itself.
      expect((await app.registerMasterKey()).registered).toEqual([app.masterKeyIds[0]]);
      await app.ready();
    } finally {
      await app.close();
    }
  });
});
