import fc from 'fast-check';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { InvalidInputError, type SecretsManager } from '../../src/index.js';
import { adminQuery, setupManager } from '../support/db.js';

/**
 * Property-based tests: names, values, audit contexts and metadata either round-trip exactly or are
 * refused with a typed error (InvalidInputError naming the field), through the library and through
 * the SQL functions directly (a status, never a raised database error).
 */
let manager: SecretsManager;
let db: { name: string; url: string };
let client: pg.Client;
let run = 0;
/** A fresh tenant per property run, so runs do not see each other's records. */
const tenant = () => `prop-${process.pid}-${++run}`;

beforeAll(async () => {
  ({ manager, db } = await setupManager({ auditSealIntervalMs: 0 }));
  client = new pg.Client({ connectionString: db.url });
  await client.connect();
});
afterAll(() => client.end());

/** Strings of any UTF-16 code units: lone surrogates, NUL, C0 and C1 controls, astral characters. */
const anyUnits = (maxLength: number) =>
  fc.string({ unit: fc.integer({ min: 0, max: 0xffff }).map((c) => String.fromCharCode(c)), maxLength });
const anyText = (maxLength: number) =>
  fc.oneof(
    fc.string({ unit: 'binary', maxLength }),
    anyUnits(maxLength),
    fc.string({ unit: 'grapheme-ascii', maxLength }),
  );

/** Runs `op`: its result, or the field of the InvalidInputError it threw; any other error fails. */
async function outcome<T>(op: () => Promise<T>): Promise<{ ok: T } | { refused: string }> {
  try {
    return { ok: await op() };
  } catch (error) {
    if (error instanceof InvalidInputError) return { refused: error.field };
    throw error;
  }
}

const RUNS = { numRuns: 60 };

describe('through the library', () => {
  it('tenant ids and key names: stored and listed exactly, or refused as tenantId / keyName', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.oneof(anyText(140), fc.stringMatching(/^[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}$/)),
        fc.oneof(anyText(270), fc.stringMatching(/^[A-Za-z0-9_][A-Za-z0-9_./-]{0,255}$/)),
        async (tenantId, keyName) => {
          const result = await outcome(() => manager.set(tenantId, keyName, 'v'));
          if ('refused' in result) {
            expect(['tenantId', 'keyName']).toContain(result.refused);
            return;
          }
          expect(await manager.get(tenantId, keyName)).toBe('v');
          expect((await manager.list(tenantId, { prefix: keyName })).map((s) => s.keyName)).toContain(
            keyName,
          );
          await manager.destroy(tenantId, keyName);
        },
      ),
      RUNS,
    );
  });

  it('values: read back exactly, or refused as value (empty, lone surrogate, over 64 KiB)', async () => {
    const t = tenant();
    await fc.assert(
      fc.asyncProperty(
        fc.oneof(anyText(3000), fc.constant(''), fc.constant('x'.repeat(65_537))),
        async (value) => {
          const result = await outcome(() => manager.set(t, 'v', value));
          if ('refused' in result) {
            expect(result.refused).toBe('value');
            expect(value === '' || !value.isWellFormed() || Buffer.byteLength(value) > 65_536).toBe(true);
            return;
          }
          expect(await manager.get(t, 'v')).toBe(value);
        },
      ),
      RUNS,
    );
  });

  it('audit contexts: recorded exactly, or refused naming the field', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.record(
          { actor: anyText(220), requestId: anyText(220), ip: anyText(70), userAgent: anyText(530) },
          { requiredKeys: [] },
        ),
        async (context) => {
          const t = tenant();
          const result = await outcome(() => manager.set(t, 'k', 'v', { context }));
          if ('refused' in result) {
            expect(['actor', 'requestId', 'ip', 'userAgent', 'context']).toContain(result.refused);
            return;
          }
          const [record] = await adminQuery<{
            actor: string;
            request_id: string | null;
            context: Record<string, string> | null;
          }>(
            db.name,
            'SELECT actor, request_id, context FROM tenant_secret_audit WHERE chain_id = $1 ORDER BY id DESC LIMIT 1',
            [t],
          );
          expect(record?.actor).toBe(context.actor || 'test'); // setupManager's actor
          expect(record?.request_id ?? undefined).toBe(context.requestId || undefined);
          expect(record?.context?.ip).toBe(context.ip || undefined);
          expect(record?.context?.user_agent).toBe(context.userAgent || undefined);
        },
      ),
      RUNS,
    );
  });

  it('list filters (prefix, labels, after, limit): a list, or refused naming the option', async () => {
    const t = tenant();
    await manager.set(t, 'a/b', 'v', { labels: { env: 'prod' } });
    await fc.assert(
      fc.asyncProperty(
        fc.record(
          {
            prefix: fc.oneof(anyText(300), fc.constant('a/')),
            labels: fc.dictionary(
              fc.oneof(anyText(10), fc.constant('env')),
              fc.oneof(anyText(10), fc.constant('prod')),
              { maxKeys: 2 },
            ),
            after: anyText(20),
            limit: fc.oneof(fc.integer(), fc.constant(10)),
          },
          { requiredKeys: [] },
        ),
        async (options) => {
          const result = await outcome(() => manager.list(t, options));
          if ('refused' in result) {
            expect(['prefix', 'labels', 'keyName', 'limit']).toContain(result.refused);
            return;
          }
          for (const item of result.ok) expect(item.keyName.startsWith(options.prefix ?? '')).toBe(true);
        },
      ),
      RUNS,
    );
  });

  it('metadata: listed exactly, or refused naming the field', async () => {
    const date = fc.oneof(
      fc.date({
        min: new Date(-8_640_000_000_000_000),
        max: new Date(8_640_000_000_000_000),
        noInvalidDate: false,
      }),
      fc.date({ min: new Date('1970-01-01T00:00:00Z'), max: new Date('9999-12-31T23:59:59.999Z') }),
      fc.constant(null),
    );
    await fc.assert(
      fc.asyncProperty(
        fc.record(
          {
            description: fc.oneof(anyText(1100), fc.constant(null)),
            labels: fc.dictionary(
              fc.oneof(anyText(70), fc.stringMatching(/^[A-Za-z0-9_./-]{1,63}$/)),
              anyText(270),
              {
                maxKeys: 55,
              },
            ),
            expiresAt: date,
            rotateAfter: date,
          },
          { requiredKeys: [] },
        ),
        async (metadata) => {
          const t = tenant();
          const result = await outcome(() => manager.set(t, 'k', 'v', metadata));
          if ('refused' in result) {
            expect(['description', 'labels', 'expiresAt', 'rotateAfter']).toContain(result.refused);
            return;
          }
          const [listed] = await manager.list(t);
          expect(listed?.description).toBe(metadata.description ?? null);
          expect(listed?.labels).toEqual(metadata.labels ?? {});
          expect(listed?.expiresAt?.getTime() ?? null).toBe(metadata.expiresAt?.getTime() ?? null);
          expect(listed?.rotateAfter?.getTime() ?? null).toBe(metadata.rotateAfter?.getTime() ?? null);
          // The same metadata through updateMetadata.
          const updated = await outcome(() =>
            manager.updateMetadata(t, 'k', { description: metadata.description ?? null }),
          );
          expect('ok' in updated).toBe(true);
        },
      ),
      RUNS,
    );
  });
});

describe('through the SQL functions directly (a SQL-side caller)', () => {
  /** The status a call answers, or 'raised <SQLSTATE>' when it raised instead. */
  async function sqlStatus(sql: string, params: unknown[]): Promise<string> {
    try {
      const r = await client.query(sql, params);
      return String(r.rows[0]?.status);
    } catch (e) {
      return `raised ${(e as { code?: string }).code}`;
    }
  }

  it('any options text for a write: ok, or a status (invalid_input, conflict), never a raised error', async () => {
    const t = tenant();
    const bundle = manager.tenantKeyBundle(t).bytes;
    await fc.assert(
      fc.asyncProperty(
        fc.oneof(
          anyUnits(200).filter((s) => !s.includes('\u0000')),
          fc.json({ maxDepth: 3 }),
          fc
            .record(
              {
                description: fc.oneof(anyText(50), fc.integer(), fc.constant(null)),
                labels: fc.oneof(
                  fc.dictionary(anyText(10), fc.oneof(anyText(10), fc.integer())),
                  fc.string(),
                ),
                expires_at: fc.oneof(
                  anyText(30),
                  fc.date({ noInvalidDate: true }).map((d) => d.toISOString()),
                  fc.constant('infinity'),
                ),
                rotate_after: fc.oneof(
                  fc.constant('10000-01-01'),
                  fc.constant('1969-12-31T23:59:59Z'),
                  fc.constant('now'),
                ),
                if_version: fc.oneof(fc.integer(), fc.double(), fc.string()),
                max_versions: fc.oneof(fc.integer(), fc.constant('10')),
                grace_seconds: fc.integer(),
              },
              { requiredKeys: [] },
            )
            .map((o) => JSON.stringify(o)),
        ),
        async (options) => {
          const status = await sqlStatus(
            `SELECT status FROM tenant_secret_write($1, 'k', '\\x41', $2, 'set', $3)`,
            [t, bundle, options],
          );
          expect(['ok', 'invalid_input', 'conflict']).toContain(status);
        },
      ),
      RUNS,
    );
  });

  it('any metadata text for update_metadata: ok or invalid_input (audited), never a raised error', async () => {
    const t = tenant();
    await manager.set(t, 'k', 'v');
    const bundle = manager.tenantKeyBundle(t).bytes;
    await fc.assert(
      fc.asyncProperty(
        fc.oneof(
          anyUnits(100).filter((s) => !s.includes('\u0000')),
          fc.json({ maxDepth: 3 }),
          fc
            .dictionary(
              fc.constantFrom('description', 'labels', 'expires_at', 'rotate_after', 'other'),
              fc.jsonValue({ maxDepth: 2 }),
            )
            .map((o) => JSON.stringify(o)),
        ),
        async (metadata) => {
          const status = await sqlStatus('SELECT status FROM tenant_secret_update_metadata($1, $2, $3, $4)', [
            t,
            'k',
            metadata,
            bundle,
          ]);
          expect(['ok', 'invalid_input']).toContain(status);
        },
      ),
      RUNS,
    );
  });

  it('any audit context: ok or invalid_input, never a raised error, and refused text never recorded', async () => {
    const t = tenant();
    const bundle = manager.tenantKeyBundle(t).bytes;
    await fc.assert(
      fc.asyncProperty(
        fc.oneof(
          fc.dictionary(
            fc.oneof(fc.constantFrom('actor', 'request_id', 'ip', 'user_agent'), anyText(12)),
            fc.jsonValue({ maxDepth: 2 }),
            { maxKeys: 5 },
          ),
          fc.record(
            { actor: anyText(250).filter((s) => !s.includes('\u0000') && s.isWellFormed()) },
            { requiredKeys: [] },
          ),
        ),
        async (ctx) => {
          const marker = `ctx-${++run}`;
          const status = await sqlStatus(
            `SELECT status FROM tenant_secret_read($1, $2, $3, '{}', $4::jsonb)`,
            [t, marker, bundle, JSON.stringify(ctx)],
          );
          if (status.startsWith('raised')) {
            // Only text jsonb cannot hold at all (NUL, lone surrogates) is refused, by the cast of the
            // parameter itself, before any function runs: nothing to audit, nothing stored.
            expect(['raised 22P02', 'raised 22P05']).toContain(status);
            return;
          }
          expect(['not_found', 'invalid_input']).toContain(status);
          const [record] = await adminQuery<{ t: string }>(
            db.name,
            'SELECT row_to_json(a)::text AS t FROM tenant_secret_audit a WHERE chain_id = $1 AND key_name = $2',
            [t, marker],
          );
          expect(record).toBeDefined();
          if (status === 'invalid_input') {
            for (const value of Object.values(ctx)) {
              if (typeof value === 'string' && value.length > 3)
                expect(record?.t).not.toContain(JSON.stringify(value).slice(1, -1));
            }
          }
        },
      ),
      RUNS,
    );
  });
});
