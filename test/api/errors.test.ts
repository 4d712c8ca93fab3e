import { describe, expect, it } from 'vitest';
import {
  createSecretsManager,
  DatabaseUnavailableError,
  SchemaNotReadyError,
  SecretNotFoundError,
  TenantSecretsError,
} from '../../src/index.js';
import { freshDatabase, setupManager, TEST_KEY } from '../support/db.js';

describe('failures are typed, never null', () => {
  it('database down: get throws DatabaseUnavailableError instead of returning null', async () => {
    const manager = createSecretsManager({
      connectionString: 'postgres://postgres@127.0.0.1:1/nowhere',
      masterKey: TEST_KEY,
      env: {},
    });
    try {
      const error = await manager.get('tenant-123', 'api-key').catch((e: unknown) => e);
      expect(error).toBeInstanceOf(DatabaseUnavailableError);
      expect((error as TenantSecretsError).code).toBe('DATABASE_UNAVAILABLE');
      await expect(manager.set('tenant-123', 'api-key', 'super-secret-value')).rejects.toSatisfy(
        (e: unknown) =>
          e instanceof DatabaseUnavailableError &&
          !String((e as Error).message).includes('super-secret-value'),
      );
    } finally {
      await manager.close();
    }
  });

  it('database that does not exist: typed unavailable error', async () => {
    const { url } = await freshDatabase();
    const manager = createSecretsManager({
      connectionString: url.replace(/\/[^/]+$/, '/no_such_db_xyz'),
      masterKey: TEST_KEY,
    });
    try {
      await expect(manager.get('t', 'k')).rejects.toBeInstanceOf(DatabaseUnavailableError);
    } finally {
      await manager.close();
    }
  });

  it('schema not migrated: SchemaNotReadyError says to run migrate', async () => {
    const { url } = await freshDatabase();
    const manager = createSecretsManager({ connectionString: url, masterKey: TEST_KEY });
    try {
      const error = await manager.get('t', 'k').catch((e: unknown) => e);
      expect(error).toBeInstanceOf(SchemaNotReadyError);
      expect((error as Error).message).toMatch(/migrate/);
    } finally {
      await manager.close();
    }
  });

  it('rotate of a missing secret is a typed not-found error', async () => {
    const { manager } = await setupManager();
    const error = await manager.rotate('tenant-123', 'missing', 'new-secret-value').catch((e: unknown) => e);
    expect(error).toBeInstanceOf(SecretNotFoundError);
    expect((error as Error).message).not.toContain('new-secret-value');
    await expect(manager.delete('tenant-123', 'missing')).rejects.toBeInstanceOf(SecretNotFoundError);
  });

  it('every error class carries a stable code and a name', async () => {
    const { manager } = await setupManager();
    const error = (await manager.set('bad tenant', 'k', 'v').catch((e: unknown) => e)) as TenantSecretsError;
    expect(error).toBeInstanceOf(TenantSecretsError);
    expect(error.name).toBe('InvalidInputError');
    expect(error.code).toBe('INVALID_INPUT');
  });
});
