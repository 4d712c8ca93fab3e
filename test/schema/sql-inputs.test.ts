import { randomBytes } from 'node:crypto';
import { beforeAll, describe, expect, it } from 'vitest';
import { Keyring, type SecretsManager } from '../../src/index.js';
import { adminQuery, connectForTest, directUrlFor, setupManager, TEST_KEY } from '../support/db.js';

/**
 * Audit context is data, not control, and the SQL write path enforces the library's rules: a SQL-side
 * caller (RPC) passing an 8 MB context, escape sequences, unknown fields, or metadata the library would
 * refuse gets `invalid_input` (a status, not a raised error), the refusal is audited, and the offending
 * text is recorded nowhere.
 *
 * The loops here are long (a few hundred SQL calls each): every test runs on a connection of its own
 * and checks its abort signal, so a test that times out on a slow machine stops at its next call
 * instead of running on into the tests after it.
 */
let manager: SecretsManager;
let db: { name: string; url: string };
const T = 'sql-inputs';
let bundle: Buffer;

beforeAll(async () => {
  ({ manager, db } = await setupManager({ auditSealIntervalMs: 0 }));
  await manager.set(T, 'k', 'v1');
  await manager.set(T, 'k', 'v2');
  bundle = manager.tenantKeyBundle(T).bytes;
});

/** Hostile contexts, each carrying a marker that must never be recorded. */
function hostileContexts(): { label: string; marker: string; ctx: string }[] {
  const m = () => `MARK${randomBytes(6).toString('hex')}`;
  const cases: { label: string; marker: string; ctx: (mk: string) => unknown }[] = [
    { label: '8 MB actor', marker: '', ctx: (mk) => ({ actor: mk + 'A'.repeat(8 * 1024 * 1024) }) },
    { label: 'ANSI escape sequence', marker: '', ctx: (mk) => ({ actor: `${mk}\u001b[2J\u001b[31mred` }) },
    { label: 'C1 control (CSI)', marker: '', ctx: (mk) => ({ user_agent: `${mk}\u009b31m` }) },
    { label: 'forged log line', marker: '', ctx: (mk) => ({ request_id: `${mk}\r\nLOG:  forged` }) },
    { label: 'unknown field', marker: '', ctx: (mk) => ({ actor: 'ok', [mk]: 'x' }) },
    { label: 'unknown field with a valid name in its value', marker: '', ctx: (mk) => ({ role: mk }) },
    { label: 'non-string value', marker: '', ctx: (mk) => ({ actor: { nested: mk } }) },
    { label: 'too long ip', marker: '', ctx: (mk) => ({ ip: mk + '1'.repeat(80) }) },
    { label: 'empty actor', marker: '', ctx: () => ({ actor: '' }) },
    { label: 'an array', marker: '', ctx: (mk) => [mk] },
    { label: 'a string', marker: '', ctx: (mk) => mk },
  ];
  return cases.map((c) => {
    const marker = m();
    return { label: c.label, marker, ctx: JSON.stringify(c.ctx(marker)) };
  });
}

const ctxParam = '$4::jsonb';
/** Every entry point taking a context: SQL with $1 tenant, $2 key, $3 bundle, $4 context. */
const ENTRY_POINTS: { action: string; sql: string }[] = [
  {
    action: 'secret.updated',
    sql: `SELECT status, detail FROM tenant_secret_write($1, $2, '\\x41', $3, 'set', '{}', ${ctxParam})`,
  },
  {
    action: 'secret.read',
    sql: `SELECT status, detail FROM tenant_secret_read($1, $2, $3, '{}', ${ctxParam})`,
  },
  {
    action: 'secret.read',
    sql: `SELECT status, detail FROM tenant_secret_read_many($1, ARRAY[$2], $3, '{}', ${ctxParam})`,
  },
  { action: 'secret.deleted', sql: `SELECT status FROM tenant_secret_delete($1, $2, $3, '{}', ${ctxParam})` },
  {
    action: 'secret.listed',
    sql: `SELECT status, key_name AS detail FROM tenant_secret_list($1, $3, '{}', ${ctxParam}) WHERE $2::text IS NOT NULL`,
  },
  {
    action: 'secret.versions_listed',
    sql: `SELECT status, state AS detail FROM tenant_secret_list_versions($1, $2, $3, ${ctxParam})`,
  },
  {
    action: 'secret.rolled_back',
    sql: `SELECT status, detail FROM tenant_secret_rollback($1, $2, 1, $3, '{}', ${ctxParam})`,
  },
  { action: 'secret.restored', sql: `SELECT status FROM tenant_secret_restore($1, $2, $3, ${ctxParam})` },
  { action: 'secret.destroyed', sql: `SELECT status FROM tenant_secret_destroy($1, $2, $3, ${ctxParam})` },
  {
    action: 'secret.versions_destroyed',
    sql: `SELECT status, detail FROM tenant_secret_destroy_versions($1, $2, ARRAY[1], $3, ${ctxParam})`,
  },
  {
    action: 'secret.metadata_updated',
    sql: `SELECT status, detail FROM tenant_secret_update_metadata($1, $2, '{"labels":{}}', $3, '{}', ${ctxParam})`,
  },
  {
    action: 'secret.read',
    sql: `SELECT status FROM tenant_secret_audit_cached_reads($1, $3, ARRAY[$2], ARRAY[1], ARRAY[1], now(), now(), ${ctxParam})`,
  },
  {
    action: 'tenant_key.rotated',
    sql: `SELECT status FROM tenant_secret_rotate_key($1, $3, ${ctxParam}) WHERE $2::text IS NOT NULL`,
  },
  {
    action: 'tenant_key.reencrypted',
    sql: `SELECT status, detail FROM tenant_secret_reencrypt_batch($1, $3, 10, ${ctxParam}) WHERE $2::text IS NOT NULL`,
  },
  {
    action: 'tenant_key.destroyed',
    sql: `SELECT status FROM tenant_secret_destroy_retired_keys($1, $3, ${ctxParam}) WHERE $2::text IS NOT NULL`,
  },
  {
    action: 'secret.purged',
    sql: `SELECT status FROM tenant_secret_purge_deleted($1, ${ctxParam}) WHERE $2::text IS NOT NULL AND $3::bytea IS NOT NULL`,
  },
  {
    action: 'tenant.purged',
    sql: `SELECT status FROM tenant_secret_purge_tenant($1, ${ctxParam}) WHERE $2::text IS NOT NULL AND $3::bytea IS NOT NULL`,
  },
];

/**
 * Reads of the audit trail, on one direct superuser connection per test (a new connection per read
 * made these loops of a few hundred calls slow enough to time out on a busy machine).
 */
async function auditReader(signal: AbortSignal) {
  const admin = await connectForTest(directUrlFor(db.name));
  return {
    /** The newest audit record's id. */
    lastId: async () => {
      signal.throwIfAborted();
      const r = await admin.query<{ id: string }>(
        'SELECT coalesce(max(id), 0) AS id FROM tenant_secret_audit',
      );
      return Number(r.rows[0]?.id);
    },
    /** Every audit record written since `fromId`, as text. */
    recordsSince: async (
      fromId: number,
    ): Promise<
      { action: string; error_code: string | null; details: { field?: string } | null; t: string }[]
    > =>
      (
        await admin.query(
          'SELECT action, error_code, details, row_to_json(a)::text AS t FROM tenant_secret_audit a WHERE id > $1 ORDER BY id',
          [fromId],
        )
      ).rows,
  };
}

describe('audit context is data, not control', () => {
  it('every entry point refuses hostile contexts as invalid_input, audited without the offending text', async ({
    signal,
  }) => {
    const client = await connectForTest(db.url);
    const { lastId, recordsSince } = await auditReader(signal);
    const before = await adminQuery<{ t: string }>(
      db.name,
      "SELECT json_agg(s)::text AS t FROM tenant_secrets s WHERE tenant_id = 'sql-inputs'",
    );
    let tried = 0;
    for (const { label, marker, ctx } of hostileContexts()) {
      signal.throwIfAborted();
      for (const { action, sql } of ENTRY_POINTS) {
        signal.throwIfAborted();
        const from = await lastId();
        const r = await client.query(sql, [T, 'k', bundle, ctx]);
        tried++;
        const row = r.rows[0] ?? {};
        expect.soft(row.status, `${label} / ${sql}`).toBe('invalid_input');
        if ('detail' in row && row.detail !== null)
          expect.soft(row.detail, `${label} / ${sql}`).toBe('context');
        const records = await recordsSince(from);
        expect
          .soft(
            records.map((x) => [x.action, x.error_code, x.details?.field]),
            `${label} / ${sql}`,
          )
          .toEqual([[action, 'INVALID_INPUT', 'context']]);
        for (const record of records) expect.soft(record.t, `${label} / ${sql}`).not.toContain(marker);
      }
    }
    expect(tried).toBe(11 * ENTRY_POINTS.length);
    const after = await adminQuery<{ t: string }>(
      db.name,
      "SELECT json_agg(s)::text AS t FROM tenant_secrets s WHERE tenant_id = 'sql-inputs'",
    );
    expect(after).toEqual(before);
    expect(await manager.get(T, 'k')).toBe('v2');
  });

  it('operator entry points that proceed record the call without the offending context', async ({
    signal,
  }) => {
    const client = await connectForTest(db.url);
    const { lastId, recordsSince } = await auditReader(signal);
    for (const { marker, ctx } of hostileContexts()) {
      signal.throwIfAborted();
      const from = await lastId();
      await client.query('SELECT tenant_secret_audit_verified(true, $1, $2::jsonb)', ['{"checked": 0}', ctx]);
      await client.query('SELECT tenant_secret_finish_master_rotation($1, 0, 0, 0, $2::jsonb)', [
        manager.masterKeyIds[0],
        ctx,
      ]);
      const q = await client.query(
        "SELECT count(*)::int AS n FROM tenant_secret_audit_query($1, '{}', $2::jsonb)",
        [T, ctx],
      );
      expect(q.rows[0]?.n).toBe(0); // refused: nothing read
      const register = await client.query(
        'SELECT tenant_secret_register_master_key($1, $2, NULL, $3::jsonb) AS s',
        [`mk_${randomBytes(8).toString('hex')}`, randomBytes(32), ctx],
      );
      expect(register.rows[0]?.s).toBe('invalid_input');
      const records = await recordsSince(from);
      expect(records.map((r) => r.action)).toEqual([
        'audit.verified',
        'master_key.rotated',
        'audit.queried',
        'master_key.registered',
      ]);
      for (const record of records) expect(record.t).not.toContain(marker);
    }
    expect(await adminQuery(db.name, 'SELECT 1 FROM tenant_secret_master_keys')).toHaveLength(1);
  });
});

describe('the SQL write path enforces the metadata rules of update_metadata', () => {
  const BAD: { label: string; metadata: string; field: string }[] = [
    {
      label: 'description over 1000 characters',
      metadata: JSON.stringify({ description: 'd'.repeat(1001) }),
      field: 'description',
    },
    {
      label: 'description with an escape sequence',
      metadata: JSON.stringify({ description: 'MARKd\u001b[2J' }),
      field: 'description',
    },
    { label: 'description not a string', metadata: JSON.stringify({ description: 5 }), field: 'description' },
    {
      label: '51 labels',
      metadata: JSON.stringify({
        labels: Object.fromEntries(Array.from({ length: 51 }, (_, i) => [`l${i}`, 'v'])),
      }),
      field: 'labels',
    },
    {
      label: 'label key with a space',
      metadata: JSON.stringify({ labels: { 'MARK bad': 'v' } }),
      field: 'labels',
    },
    {
      label: 'label key over 63 characters',
      metadata: JSON.stringify({ labels: { ['k'.repeat(64)]: 'v' } }),
      field: 'labels',
    },
    {
      label: 'label value over 256 characters',
      metadata: JSON.stringify({ labels: { k: 'v'.repeat(257) } }),
      field: 'labels',
    },
    {
      label: 'label value with a bell',
      metadata: JSON.stringify({ labels: { k: 'MARK\u0007' } }),
      field: 'labels',
    },
    { label: 'label value not a string', metadata: JSON.stringify({ labels: { k: 1 } }), field: 'labels' },
    { label: 'labels not an object', metadata: JSON.stringify({ labels: ['MARK'] }), field: 'labels' },
    {
      label: 'expires_at before 1970',
      metadata: JSON.stringify({ expires_at: '1969-12-31T23:59:59Z' }),
      field: 'expires_at',
    },
    {
      label: 'expires_at in year 10000',
      metadata: JSON.stringify({ expires_at: '10000-01-01T00:00:00Z' }),
      field: 'expires_at',
    },
    {
      label: 'expires_at infinity',
      metadata: JSON.stringify({ expires_at: 'infinity' }),
      field: 'expires_at',
    },
    { label: 'expires_at not a date', metadata: JSON.stringify({ expires_at: 'MARK' }), field: 'expires_at' },
    { label: 'rotate_after a number', metadata: JSON.stringify({ rotate_after: 1 }), field: 'rotate_after' },
    { label: 'NUL in the description (JSON escape)', metadata: '{"description":"MARK\\u0000"}', field: '*' },
    { label: 'a lone surrogate (JSON escape)', metadata: '{"description":"MARK\\ud800"}', field: '*' },
    { label: 'not JSON', metadata: '{"description": MARK', field: '*' },
  ];

  it('tenant_secret_write and tenant_secret_update_metadata refuse the same metadata, audited, nothing stored', async ({
    signal,
  }) => {
    const client = await connectForTest(db.url);
    const { lastId, recordsSince } = await auditReader(signal);
    for (const { label, metadata, field } of BAD) {
      signal.throwIfAborted();
      const from = await lastId();
      const write = await client.query(
        `SELECT status, detail FROM tenant_secret_write($1, 'new-name', '\\x41', $2, 'set', $3)`,
        [T, bundle, metadata],
      );
      const update = await client.query(
        'SELECT status, detail FROM tenant_secret_update_metadata($1, $2, $3, $4)',
        [T, 'k', metadata, bundle],
      );
      expect
        .soft(write.rows[0], label)
        .toEqual({ status: 'invalid_input', detail: field === '*' ? 'options' : field });
      expect
        .soft(update.rows[0], label)
        .toEqual({ status: 'invalid_input', detail: field === '*' ? 'metadata' : field });
      const records = await recordsSince(from);
      expect
        .soft(
          records.map((r) => [r.action, r.error_code]),
          label,
        )
        .toEqual([
          ['secret.updated', 'INVALID_INPUT'],
          ['secret.metadata_updated', 'INVALID_INPUT'],
        ]);
      for (const record of records) expect.soft(record.t, label).not.toContain('MARK');
    }
    expect(await manager.get(T, 'new-name')).toBeNull();
    const [row] = await manager.list(T);
    expect(row?.description).toBeNull();
    expect(row?.labels).toEqual({});
  });

  it('the library refuses the same metadata in Node (typed InvalidInputError), before anything is sent', async ({
    signal,
  }) => {
    const { lastId, recordsSince } = await auditReader(signal);
    const cases: [string, Parameters<SecretsManager['set']>[3]][] = [
      ['description', { description: 'd'.repeat(1001) }],
      ['description', { description: 'a\u0000b' }],
      ['description', { description: 'a\u001b[2J' }],
      ['description', { description: 'a\ud800' }],
      ['labels', { labels: { k: 'a\u0085' } }],
      ['labels', { labels: { 'bad key': 'v' } }],
      ['expiresAt', { expiresAt: new Date('1969-12-31T23:59:59Z') }],
      ['expiresAt', { expiresAt: new Date(Date.UTC(10000, 0, 1)) }],
      ['rotateAfter', { rotateAfter: new Date(Number.NaN) }],
    ];
    const from = await lastId();
    for (const [field, options] of cases) {
      signal.throwIfAborted();
      await expect(manager.set(T, 'k', 'v3', options)).rejects.toMatchObject({
        code: 'INVALID_INPUT',
        field,
      });
    }
    expect(await recordsSince(from)).toEqual([]); // refused in Node: no call reached the database
    // Descriptions may hold tabs and newlines.
    await manager.set(T, 'k', 'v3', { description: 'line 1\n\tline 2' });
    expect((await manager.list(T))[0]?.description).toBe('line 1\n\tline 2');
  });
});

describe('master key ids are validated wherever they are accepted', () => {
  it('register, readiness, rewrap, master-rotation, checkpoint functions refuse malformed ids', async ({
    signal,
  }) => {
    const client = await connectForTest(db.url);
    const proof = Keyring.parse(TEST_KEY).bundleBytes('');
    const BAD_IDS = [
      `mk_${'a'.repeat(100_000)}`,
      'mk_0123456789abcde\u0007',
      'mk_0123456789ABCDEF',
      'mk_',
      '',
      'mk_0123456789abcdef ',
      'MK_0123456789abcdef',
    ];
    for (const id of BAD_IDS) {
      signal.throwIfAborted();
      const raised = (sql: string, params: unknown[]) =>
        client.query(sql, params).then(
          (r) => String(Object.values(r.rows[0] ?? {})[0]),
          (e: { code?: string }) => `raised ${e.code}`,
        );
      expect
        .soft(
          await raised('SELECT tenant_secret_register_master_key($1, $2, $3)', [id, randomBytes(32), proof]),
        )
        .toBe('invalid_input');
      expect.soft(await raised('SELECT tenant_secret_ready($1::text[])', [[id]])).toBe('raised TS400');
      expect
        .soft(await raised('SELECT * FROM tenant_secret_rewrap_pending($1, NULL, 10)', [id]))
        .toBe('raised TS400');
      expect
        .soft(await raised('SELECT tenant_secret_finish_master_rotation($1, 0, 0, 0)', [id]))
        .toBe('raised TS400');
      expect
        .soft(
          await raised(
            "SELECT tenant_secret_audit_checkpoint_add(ARRAY['x'], ARRAY[1::bigint], ARRAY['\\x00'::bytea], $1, ARRAY['\\x00'::bytea])",
            [id],
          ),
        )
        .toBe('raised TS400');
    }
    const records = await adminQuery<{ t: string }>(
      db.name,
      "SELECT row_to_json(a)::text AS t FROM tenant_secret_audit a WHERE action = 'master_key.registered'",
    );
    for (const r of records) expect(r.t).not.toContain('aaaaaaaaaa');
  });
});
