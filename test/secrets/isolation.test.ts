import { beforeAll, describe, expect, it } from 'vitest';
import { InvalidInputError, type SecretsManager } from '../../src/index.js';
import { setupManager } from '../support/db.js';

let manager: SecretsManager;
beforeAll(async () => {
  ({ manager } = await setupManager());
});

describe('tenant isolation', () => {
  it('tenants with the same key name see only their own value', async () => {
    await manager.set('tenant-a', 'stripe/api-key', 'value-of-a');
    await manager.set('tenant-b', 'stripe/api-key', 'value-of-b');
    expect(await manager.get('tenant-a', 'stripe/api-key')).toBe('value-of-a');
    expect(await manager.get('tenant-b', 'stripe/api-key')).toBe('value-of-b');
    expect(await manager.get('tenant-c', 'stripe/api-key')).toBeNull();
  });

  it('list and versions are scoped to the tenant', async () => {
    await manager.set('tenant-a', 'only-a', 'x');
    expect((await manager.list('tenant-a')).map((s) => s.keyName)).toEqual(['only-a', 'stripe/api-key']);
    expect((await manager.list('tenant-b')).map((s) => s.keyName)).toEqual(['stripe/api-key']);
    await expect(manager.versions('tenant-b', 'only-a')).rejects.toMatchObject({ code: 'NOT_FOUND' });
  });

  it('rotating or deleting in one tenant leaves the other untouched', async () => {
    await manager.rotate('tenant-a', 'stripe/api-key', 'rotated-a');
    await manager.delete('tenant-a', 'stripe/api-key');
    expect(await manager.get('tenant-a', 'stripe/api-key')).toBeNull();
    expect(await manager.get('tenant-b', 'stripe/api-key')).toBe('value-of-b');
  });

  it('uuid tenant ids work as well as text ids', async () => {
    const id = '6f1c2a9e-3b7d-4e8f-9a0b-1c2d3e4f5a6b';
    await manager.set(id, 'k', 'v');
    expect(await manager.get(id, 'k')).toBe('v');
  });

  it.each([
    ['empty tenant', '', 'k', 'tenantId'],
    ['tenant with a space', 'tenant 1', 'k', 'tenantId'],
    ['tenant starting with _ (reserved)', '_system', 'k', 'tenantId'],
    ['tenant with SQL', "t'; DROP TABLE tenant_secrets;--", 'k', 'tenantId'],
    ['tenant too long', 'a'.repeat(129), 'k', 'tenantId'],
    ['empty key name', 't', '', 'keyName'],
    ['key name with ..% wildcards', 't', 'a%b', 'keyName'],
    ['key name with a newline', 't', 'a\nb', 'keyName'],
    ['key name too long', 't', 'k'.repeat(257), 'keyName'],
  ])('rejects %s with a typed error and stores nothing', async (_label, tenant, key, field) => {
    const error = await manager.set(tenant, key, 'v').catch((e: unknown) => e);
    expect(error).toBeInstanceOf(InvalidInputError);
    expect((error as InvalidInputError).field).toBe(field);
    await expect(manager.get(tenant, key)).rejects.toBeInstanceOf(InvalidInputError);
  });

  it('rejects non-string values with a typed error', async () => {
    // @ts-expect-error deliberately wrong type from untyped callers
    await expect(manager.set('t', 'k', 42)).rejects.toMatchObject({ code: 'INVALID_INPUT', field: 'value' });
    // @ts-expect-error deliberately wrong type
    await expect(manager.set('t', 'k', null)).rejects.toMatchObject({ code: 'INVALID_INPUT' });
  });
});
