import { inspect } from 'node:util';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { createSecretsManager } from '../../src/index.js';
import { adminQuery, setupManager, TEST_KEY } from '../support/db.js';

/**
 * The cache keeps time with Node's clock (Date.now). Tests that cross ttlMs or expiresAt fake that
 * clock alone (I/O timers stay real) and move it by hand, so a busy machine, where any call can take
 * longer than a short ttlMs, changes nothing.
 */
const fakeNodeClock = () => vi.useFakeTimers({ toFake: ['Date'] });
afterEach(() => {
  vi.useRealTimers();
});

async function readsOf(dbName: string, tenant: string) {
  return adminQuery<{ version: number; cached: boolean; count: number | null; actor: string }>(
    dbName,
    `SELECT version, COALESCE((details->>'cached')::boolean, false) AS cached, (details->>'count')::int AS count, actor
       FROM tenant_secret_audit WHERE tenant_id = $1 AND action = 'secret.read' ORDER BY id`,
    [tenant],
  );
}

describe('opt-in in-process cache', () => {
  it('serves repeated reads from memory, audits them in aggregate (count), and never silently', async () => {
    const { manager: writer, db } = await setupManager({ auditSealIntervalMs: 0 });
    await writer.set('cache-a', 'k', 'v1');
    const reader = createSecretsManager({
      connectionString: db.url,
      masterKey: TEST_KEY,
      actor: 'reader',
      auditSealIntervalMs: 0,
      cache: { ttlMs: 60_000, auditIntervalMs: 60_000 },
    });
    try {
      for (let i = 0; i < 5; i++) expect(await reader.get('cache-a', 'k')).toBe('v1');
      await writer.sealAudit();
      // One read reached the database; the four others are counted in memory.
      expect(await readsOf(db.name, 'cache-a')).toEqual([
        { version: 1, cached: false, count: null, actor: 'reader' },
      ]);
    } finally {
      await reader.close(); // flushes the aggregated record
    }
    await writer.sealAudit();
    const reads = await readsOf(db.name, 'cache-a');
    expect(reads).toEqual([
      { version: 1, cached: false, count: null, actor: 'reader' },
      { version: 1, cached: true, count: 4, actor: 'reader' },
    ]);
    const verified = await writer.verifyAudit({ tenantId: 'cache-a' });
    expect(verified.ok).toBe(true);
  });

  it("is invalidated by this process's own writes; other processes' writes are seen within ttlMs", async () => {
    const { manager: other, db } = await setupManager();
    const cached = createSecretsManager({
      connectionString: db.url,
      masterKey: TEST_KEY,
      cache: { ttlMs: 60_000 },
    });
    fakeNodeClock();
    try {
      await cached.set('cache-b', 'k', 'v1');
      expect(await cached.get('cache-b', 'k')).toBe('v1');
      await cached.set('cache-b', 'k', 'v2');
      expect(await cached.get('cache-b', 'k')).toBe('v2'); // own write: seen at once
      await other.set('cache-b', 'k', 'v3');
      expect(await cached.get('cache-b', 'k')).toBe('v2'); // another process's write: stale until ttlMs
      expect(await cached.get('cache-b', 'k', { fresh: true })).toBe('v3'); // unless asked fresh
      await other.set('cache-b', 'k', 'v4');
      vi.setSystemTime(Date.now() + 59_000);
      expect(await cached.get('cache-b', 'k')).toBe('v2'); // still within ttlMs (a fresh read bypasses the cache)
      vi.setSystemTime(Date.now() + 1_000);
      expect(await cached.get('cache-b', 'k')).toBe('v4'); // ttlMs over: read again
      await cached.delete('cache-b', 'k');
      expect(await cached.get('cache-b', 'k')).toBeNull();
    } finally {
      await cached.close();
    }
  });

  it('keeps at most maxEntries, never serves past expiresAt, and never prints values', async () => {
    const { db } = await setupManager();
    const cached = createSecretsManager({
      connectionString: db.url,
      masterKey: TEST_KEY,
      cache: { ttlMs: 60_000, maxEntries: 2 },
    });
    try {
      for (const k of ['a', 'b', 'c']) await cached.set('cache-c', k, `value-of-${k}-zq81`);
      for (const k of ['a', 'b', 'c']) await cached.get('cache-c', k);
      const shown = inspect(cached, { depth: 20, showHidden: true });
      expect(shown).not.toContain('zq81');
      expect(JSON.stringify(Object.entries(cached).filter(([, v]) => typeof v !== 'function'))).not.toContain(
        'zq81',
      );
      // Expiring in 30 s (well within ttlMs): the database's clock passes expiresAt only when the
      // test moves expires_at into the past; Node's clock, only when the test moves it.
      const expiresAt = new Date(Date.now() + 30_000);
      await cached.set('cache-c', 'soon', 'expiring', { expiresAt });
      fakeNodeClock();
      const first = await cached.getWithVersion('cache-c', 'soon'); // from the database
      const again = await cached.getWithVersion('cache-c', 'soon'); // from the cache: the same shape
      expect(first).toEqual({ value: 'expiring', version: 1, expiresAt });
      expect(again).toEqual(first);
      await adminQuery(
        db.name,
        `UPDATE tenant_secrets SET expires_at = now() - interval '1 second' WHERE tenant_id = 'cache-c' AND key_name = 'soon'`,
      );
      expect(await cached.get('cache-c', 'soon')).toBe('expiring'); // Node's clock: still before expiresAt
      vi.setSystemTime(expiresAt);
      // Past expiresAt the cache does not serve it (ttlMs has 30 s left): the database says it expired.
      await expect(cached.get('cache-c', 'soon')).rejects.toMatchObject({ code: 'EXPIRED' });
    } finally {
      await cached.close();
    }
  });

  it('refuses bad cache options at creation', () => {
    for (const cache of [{ ttlMs: 0 }, { maxEntries: -1 }, { ttlMs: 'x' }, { ttl: 5 }, 'yes']) {
      expect(() =>
        createSecretsManager({
          connectionString: 'postgres://x/y',
          masterKey: TEST_KEY,
          cache: cache as never,
        }),
      ).toThrow(/cache/);
    }
  });
});
