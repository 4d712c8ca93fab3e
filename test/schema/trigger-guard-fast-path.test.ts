import { describe, expect, it } from 'vitest';
import { TenantSecretsError } from '../../src/index.js';
import { adminQuery, setupManager } from '../support/db.js';

/**
 * The data path's trigger check has a fast path: the guard functions' oids are resolved once per
 * session (when the statement is first planned), and only a trigger calling something else makes it
 * look closer. These tests keep one session across a change of those oids and of the triggers.
 */
describe('the trigger check of the data path, in a session that planned it earlier', () => {
  it('guard functions re-created with new oids: reads and writes still work, a foreign trigger is still refused', async () => {
    const { manager, db } = await setupManager({ maxConnections: 1 });
    await manager.set('acme', 'k', 'v1');
    expect(await manager.get('acme', 'k')).toBe('v1');
    const oids = async () =>
      (
        await adminQuery<{ oid: number }>(
          db.name,
          `SELECT p.oid::int AS oid FROM pg_proc p WHERE p.proname IN ('_ts_guard_truncate', '_ts_guard_write') ORDER BY p.proname`,
        )
      ).map((r) => r.oid);
    const before = await oids();

    // The owner re-creates both guard functions (new oids) and puts the guards back on every table.
    const defs = await adminQuery<{ def: string }>(
      db.name,
      `SELECT pg_get_functiondef(p.oid) AS def FROM pg_proc p WHERE p.proname IN ('_ts_guard_truncate', '_ts_guard_write')`,
    );
    await adminQuery(db.name, 'DROP FUNCTION _ts_guard_truncate(), _ts_guard_write() CASCADE');
    for (const { def } of defs) await adminQuery(db.name, def);
    await adminQuery(
      db.name,
      `SELECT _ts_lock_down_table(c.oid) FROM pg_class c
        WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'p') AND c.relname LIKE 'tenant\\_secret%'`,
    );
    const after = await oids();
    expect(after).toHaveLength(2);
    expect(after.some((oid) => before.includes(oid))).toBe(false);

    // The same session (one connection), whose cached plans hold the old oids.
    expect(await manager.get('acme', 'k')).toBe('v1');
    await manager.set('acme', 'k', 'v2');
    expect(await manager.get('acme', 'k')).toBe('v2');
    expect(await manager.getMany('acme', ['k'])).toEqual({ k: 'v2' });

    // A trigger that is not ours, on the table every read writes: refused, before it runs.
    await adminQuery(db.name, 'CREATE TABLE IF NOT EXISTS public.payload_runs (n int)');
    await adminQuery(
      db.name,
      `CREATE FUNCTION public.ts_payload() RETURNS trigger LANGUAGE plpgsql AS $f$
       BEGIN INSERT INTO public.payload_runs VALUES (1); RETURN NULL; END $f$`,
    );
    await adminQuery(
      db.name,
      'CREATE TRIGGER zz_payload AFTER INSERT ON tenant_secret_audit_pending FOR EACH STATEMENT EXECUTE FUNCTION public.ts_payload()',
    );
    const refused = await manager.get('acme', 'k').catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(TenantSecretsError);
    expect((refused as TenantSecretsError).code).toBe('SCHEMA_DRIFT');
    const wrote = await manager.set('acme', 'k', 'v3').catch((e: unknown) => e);
    expect((wrote as TenantSecretsError).code).toBe('SCHEMA_DRIFT');
    expect(await adminQuery(db.name, 'SELECT * FROM public.payload_runs')).toEqual([]);

    // migrate() removes it; the same session reads again.
    await manager.migrate();
    expect(await manager.get('acme', 'k')).toBe('v2');
  });
});
