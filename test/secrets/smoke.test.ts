import { describe, expect, it } from 'vitest';
import { setupManager } from '../support/db.js';

describe('smoke', () => {
  it('round trips', async () => {
    const { manager } = await setupManager();
    await manager.set('tenant-123', 'api-key', 'secret-value');
    expect(await manager.get('tenant-123', 'api-key')).toBe('secret-value');
    await manager.rotate('tenant-123', 'api-key', 'v2');
    expect(await manager.get('tenant-123', 'api-key')).toBe('v2');
    expect(await manager.get('tenant-123', 'api-key', { version: 'previous' })).toBe('secret-value');
    expect(await manager.list('tenant-123')).toHaveLength(1);
  });
});
