import { beforeAll, describe, expect, it } from 'vitest';
import type { AuditRecord, SecretsManager } from '../../src/index.js';
import { adminQuery, setupManager } from '../support/db.js';

/**
 * Every core operation appends exactly one record to its tenant's chain, with the caller's
 * context and the right outcome, and never the value.
 */
const TENANT = 'acme-audit';
const VALUES = ['first-plaintext-Zq9', 'second-plaintext-Xw7', 'rotated-plaintext-Kp3'];

let manager: SecretsManager;
let db: { name: string; url: string };
let n = 0;

function ctx(label: string) {
  n += 1;
  return {
    actor: `alice-${label}`,
    requestId: `req-${label}-${n}`,
    ip: '203.0.113.7',
    userAgent: 'audit-test/1.0',
  };
}

async function chain(): Promise<AuditRecord[]> {
  const out: AuditRecord[] = [];
  let cursor: string | undefined;
  do {
    const page = await manager.audit(TENANT, { limit: 1000, ...(cursor && { cursor }) });
    out.push(...page.records);
    cursor = page.nextCursor ?? undefined;
  } while (cursor);
  return out;
}

/** Runs `op` under a fresh context and returns the one record it produced. */
async function recordOf(label: string, op: (m: SecretsManager) => Promise<unknown>): Promise<AuditRecord> {
  const c = ctx(label);
  const before = await chain();
  await op(manager.withContext(c)).catch(() => undefined);
  const after = await chain();
  const added = after.slice(before.length);
  expect(added).toHaveLength(1);
  const record = added[0] as AuditRecord;
  expect(record.requestId).toBe(c.requestId);
  expect(record.actor).toBe(c.actor);
  expect(record.context).toEqual({ ip: c.ip, user_agent: c.userAgent });
  expect(record.tenantId).toBe(TENANT);
  expect(record.chainId).toBe(TENANT);
  return record;
}

beforeAll(async () => {
  ({ manager, db } = await setupManager());
});

describe('audit records of core operations', () => {
  it('set (create) yields secret.created', async () => {
    const r = await recordOf('create', (m) => m.set(TENANT, 'db/password', VALUES[0] as string));
    expect(r).toMatchObject({
      action: 'secret.created',
      keyName: 'db/password',
      version: 1,
      outcome: 'success',
      errorCode: null,
    });
  });

  it('set (update) yields secret.updated', async () => {
    const r = await recordOf('update', (m) => m.set(TENANT, 'db/password', VALUES[1] as string));
    expect(r).toMatchObject({ action: 'secret.updated', version: 2, outcome: 'success' });
    expect(r.details).toMatchObject({ previous_version: 1 });
  });

  it('set with a stale ifVersion yields a CONFLICT failure', async () => {
    const r = await recordOf('conflict', (m) => m.set(TENANT, 'db/password', 'nope-value', { ifVersion: 1 }));
    expect(r).toMatchObject({ action: 'secret.updated', outcome: 'failure', errorCode: 'CONFLICT' });
  });

  it('get yields secret.read success', async () => {
    const r = await recordOf('get', async (m) => expect(await m.get(TENANT, 'db/password')).toBe(VALUES[1]));
    expect(r).toMatchObject({
      action: 'secret.read',
      keyName: 'db/password',
      version: 2,
      outcome: 'success',
    });
  });

  it('get of a missing secret yields a NOT_FOUND failure', async () => {
    const r = await recordOf('missing', async (m) => expect(await m.get(TENANT, 'nope')).toBeNull());
    expect(r).toMatchObject({
      action: 'secret.read',
      keyName: 'nope',
      outcome: 'failure',
      errorCode: 'NOT_FOUND',
    });
  });

  it('rotate yields secret.rotated; rotating a missing secret yields NOT_FOUND', async () => {
    const r = await recordOf('rotate', (m) => m.rotate(TENANT, 'db/password', VALUES[2] as string));
    expect(r).toMatchObject({ action: 'secret.rotated', version: 3, outcome: 'success' });
    const f = await recordOf('rotate-missing', (m) => m.rotate(TENANT, 'absent', 'x-value'));
    expect(f).toMatchObject({ action: 'secret.rotated', outcome: 'failure', errorCode: 'NOT_FOUND' });
  });

  it('list and versions yield secret.listed and secret.versions_listed', async () => {
    const l = await recordOf('list', (m) => m.list(TENANT));
    expect(l).toMatchObject({ action: 'secret.listed', outcome: 'success', details: { count: 1 } });
    const v = await recordOf('versions', (m) => m.versions(TENANT, 'db/password'));
    expect(v).toMatchObject({ action: 'secret.versions_listed', keyName: 'db/password', outcome: 'success' });
    const vm = await recordOf('versions-missing', (m) => m.versions(TENANT, 'absent'));
    expect(vm).toMatchObject({
      action: 'secret.versions_listed',
      outcome: 'failure',
      errorCode: 'NOT_FOUND',
    });
  });

  it('get of an expired secret yields an EXPIRED failure', async () => {
    await manager.set(TENANT, 'expiring', 'expiring-plaintext');
    await adminQuery(
      db.name,
      `UPDATE tenant_secrets SET expires_at = now() - interval '1 hour' WHERE key_name = 'expiring'`,
    );
    const r = await recordOf('expired', async (m) => {
      await expect(m.get(TENANT, 'expiring')).rejects.toMatchObject({ code: 'EXPIRED' });
    });
    expect(r).toMatchObject({
      action: 'secret.read',
      keyName: 'expiring',
      outcome: 'failure',
      errorCode: 'EXPIRED',
    });
  });

  it('get of a tampered ciphertext: the release, then the INTEGRITY failure the library found', async () => {
    await manager.set(TENANT, 'tampered', 'tampered-plaintext');
    await adminQuery(
      db.name,
      `UPDATE tenant_secrets SET encrypted_value = set_byte(encrypted_value, 20, get_byte(encrypted_value, 20) # 1)
        WHERE key_name = 'tampered'`,
    );
    const c = ctx('integrity');
    const before = await chain();
    await expect(manager.withContext(c).get(TENANT, 'tampered')).rejects.toMatchObject({ code: 'INTEGRITY' });
    const added = (await chain()).slice(before.length);
    expect(added.map((r) => [r.action, r.keyName, r.outcome, r.errorCode, r.requestId])).toEqual([
      ['secret.read', 'tampered', 'success', null, c.requestId],
      ['secret.read', 'tampered', 'failure', 'INTEGRITY', c.requestId],
    ]);
    expect(added[1]?.details).toMatchObject({ found_by: 'library', failed: 'value' });
  });

  it('delete yields secret.deleted; deleting again yields NOT_FOUND', async () => {
    const r = await recordOf('delete', (m) => m.delete(TENANT, 'db/password'));
    expect(r).toMatchObject({
      action: 'secret.deleted',
      keyName: 'db/password',
      version: 3,
      outcome: 'success',
    });
    const f = await recordOf('delete-again', (m) => m.delete(TENANT, 'db/password'));
    expect(f).toMatchObject({ action: 'secret.deleted', outcome: 'failure', errorCode: 'NOT_FOUND' });
  });

  it('no record holds a value, and the chain verifies', async () => {
    const raw = await adminQuery(db.name, 'SELECT row_to_json(a)::text AS j FROM tenant_secret_audit a');
    const text = raw.map((row) => row.j).join('\n');
    for (const value of [...VALUES, 'expiring-plaintext', 'tampered-plaintext', 'nope-value']) {
      expect(text).not.toContain(value);
      expect(text).not.toContain(Buffer.from(value).toString('hex'));
    }
    const records = await chain();
    expect(records.map((r) => r.seq)).toEqual(records.map((_, i) => i + 1));
    const result = await manager.verifyAudit({ tenantId: TENANT });
    expect(result).toMatchObject({ ok: true, chains: 1, records: records.length });
  });

  it('audit queries filter and paginate by seq, and are audited once per query on the system chain', async () => {
    const failures = await manager.audit(TENANT, { outcome: 'failure' });
    expect(failures.records.length).toBeGreaterThanOrEqual(6);
    expect(failures.records.every((r) => r.outcome === 'failure')).toBe(true);
    const reads = await manager.audit(TENANT, { action: 'secret.read', keyName: 'db/password' });
    expect(reads.records.map((r) => r.action)).toEqual(['secret.read']);
    const byActor = await manager.audit(TENANT, { actor: 'alice-rotate' });
    expect(byActor.records).toHaveLength(1);
    const all = await chain();
    const middle = all[5] as AuditRecord;
    const since = await manager.audit(TENANT, {
      since: middle.occurredAt,
      until: new Date(Date.now() + 60_000),
    });
    expect(since.records[0]?.seq).toBe(middle.seq);

    const systemBefore = (await manager.audit(null, { limit: 1000 })).records.length;
    const pages: number[][] = [];
    let page = await manager.audit(TENANT, { limit: 4 });
    pages.push(page.records.map((r) => r.seq));
    while (page.nextCursor) {
      page = await manager.audit(TENANT, { limit: 4, cursor: page.nextCursor });
      pages.push(page.records.map((r) => r.seq));
    }
    expect(pages.flat()).toEqual(all.map((r) => r.seq));
    expect(pages.length).toBeGreaterThan(2);
    const system = (await manager.audit(null, { limit: 1000 })).records;
    // One record for the first audit(null) call (appended after its own page was read), and one
    // for the whole paged query (its first page only).
    expect(system.length - systemBefore).toBe(2);
    expect(system.at(-1)).toMatchObject({ action: 'audit.queried', tenantId: null, chainId: '' });
    expect(system.at(-1)?.details).toMatchObject({ chain_id: TENANT, first_page_count: 4 });
    await expect(manager.audit(TENANT, { cursor: 'x' })).rejects.toMatchObject({ code: 'INVALID_INPUT' });
  });
});
