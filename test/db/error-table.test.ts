import pg from 'pg';
import { beforeAll, describe, expect, it } from 'vitest';
import { ERROR_TABLE, type ErrorKind, EXIT } from '../../src/base/error-table.js';
import { TenantSecretsError } from '../../src/base/errors.js';
import { exitCodeFor } from '../../src/cli/exit-codes.js';
import { statusError } from '../../src/core/status.js';
import { DATA_PLANE_FUNCTIONS, toTenantSecretsError } from '../../src/db/driver-errors.js';
import { schemaExecutor } from '../../src/db/executor.js';
import { createOwnedPool } from '../../src/db/pool.js';
import { setupManager } from '../support/db.js';

/**
 * The error table (src/base/error-table.ts) against the database: the SQLSTATE each SQL status is
 * raised with, every SQLSTATE raised by a real server and mapped back to its class and exit code, and
 * the data-plane function list against the installed schema's own.
 */

const rows: readonly ErrorKind[] = ERROR_TABLE;
let url = '';

beforeAll(async () => {
  const { db } = await setupManager();
  url = db.url;
});

async function withClient<T>(work: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: url });
  client.on('error', () => undefined);
  await client.connect();
  try {
    return await work(client);
  } finally {
    await client.end();
  }
}

/** What a real server answers: the driver's error object for a statement, or undefined. */
const failureOf = (client: pg.Client, sql: string, params: unknown[] = []): Promise<unknown> =>
  client.query(sql, params).then(
    () => undefined,
    (error: unknown) => error,
  );

/** A concrete SQLSTATE for a table entry (a two-character entry is a whole class). */
const concrete = (state: string) => (state.length === 2 ? `${state}006` : state);

describe('the SQL side agrees with the table', () => {
  it('_ts_raise_status raises, for every status in the table, the SQLSTATE the table names', async () => {
    const statuses = rows.filter((row) => row.sqlStatus !== undefined);
    expect(statuses.length).toBeGreaterThanOrEqual(9);
    await withClient(async (client) => {
      // 'ok' raises nothing.
      expect(await failureOf(client, 'SELECT _ts_raise_status($1)', ['ok'])).toBeUndefined();
      for (const row of statuses) {
        const error = (await failureOf(client, 'SELECT _ts_raise_status($1)', [row.sqlStatus])) as {
          code?: string;
        };
        // A status without a case of its own falls to the catch-all, an integrity failure.
        expect(error?.code, `${row.sqlStatus} (${row.name})`).toBe(row.raisedAs ?? 'TSINT');
        // ... and that SQLSTATE maps back to the class the status maps to, unless it has no case.
        if (row.raisedAs !== undefined) {
          const viaSqlState = toTenantSecretsError(error, { operation: 'test', tenantId: 't', keyName: 'k' });
          const viaStatus = statusError(String(row.sqlStatus), { tenantId: 't', keyName: 'k' });
          expect(viaSqlState.name, String(row.sqlStatus)).toBe(viaStatus.name);
          expect(viaSqlState.name).toBe(row.name);
        }
      }
      // A status the function does not know is an integrity failure, as statusError treats it.
      expect(
        ((await failureOf(client, 'SELECT _ts_raise_status($1)', ['no_such_status'])) as { code?: string })
          .code,
      ).toBe('TSINT');
      expect(statusError('no_such_status', { tenantId: 't', keyName: 'k' }).name).toBe('IntegrityError');
    });
  });

  it('the data-plane function list is the database’s own (_ts_is_app_function), function by function', async () => {
    await withClient(async (client) => {
      const { rows: fns } = await client.query<{ name: string; app: boolean }>(
        `SELECT DISTINCT p.proname AS name, _ts_is_app_function(p.proname) AS app
           FROM pg_proc p WHERE p.pronamespace = 'public'::regnamespace
            AND (p.proname LIKE 'tenant\\_secret%' OR p.proname IN ('upsert_tenant_secret', 'get_tenant_secret'))`,
      );
      expect(fns.length).toBeGreaterThan(30);
      for (const fn of fns) expect(DATA_PLANE_FUNCTIONS.has(fn.name), fn.name).toBe(fn.app);
      for (const name of DATA_PLANE_FUNCTIONS) expect(fns.map((f) => f.name)).toContain(name);
    });
  });
});

describe('every SQLSTATE in the table round-trips: raised by PostgreSQL → class → exit code', () => {
  it('each SQLSTATE, raised by the server, becomes its class, code, exit code and retryability', async () => {
    let checked = 0;
    await withClient(async (client) => {
      for (const row of rows) {
        for (const state of row.sqlStates) {
          const sqlState = concrete(state);
          const raw = await failureOf(
            client,
            `DO $$BEGIN RAISE EXCEPTION 'tenant-secrets test: a secret-looking sk_live_do_not_show' USING ERRCODE = '${sqlState}'; END$$`,
          );
          expect((raw as { code?: string }).code).toBe(sqlState);
          const error = toTenantSecretsError(raw, { operation: 'test', tenantId: 't1', keyName: 'k1' });
          expect(error, `${sqlState} → ${row.name}`).toBeInstanceOf(row.type);
          expect(error.name, sqlState).toBe(row.name);
          expect(error.code, sqlState).toBe(row.code);
          expect(exitCodeFor(error), sqlState).toBe(row.exitCode);
          expect(error.retryable, sqlState).toBe(row.retryable);
          // Server text never reaches the message.
          expect(error.message, sqlState).not.toContain('sk_live_do_not_show');
          checked++;
        }
      }
    });
    expect(checked).toBeGreaterThanOrEqual(30);
  });

  it('a SQLSTATE the table does not name is a DatabaseError (exit 1) that keeps only the SQLSTATE', async () => {
    await withClient(async (client) => {
      const raw = await failureOf(client, 'SELECT 1/0');
      const error = toTenantSecretsError(raw, 'test');
      expect(error).toMatchObject({ name: 'DatabaseError', code: 'DATABASE', sqlState: '22012' });
      expect(exitCodeFor(error)).toBe(EXIT.ERROR);
    });
  });

  it('a real disk-full answer (COPY to /dev/full: ENOSPC) is a DiskFullError, not retryable, nothing committed', async () => {
    await withClient(async (client) => {
      const raw = (await failureOf(client, `COPY (SELECT 'x') TO '/dev/full'`)) as { code?: string };
      expect(raw.code).toBe('53100');
      const error = toTenantSecretsError(raw, 'set');
      expect(error).toMatchObject({
        name: 'DiskFullError',
        code: 'DISK_FULL',
        mayHaveCommitted: false,
        retryable: false,
      });
      expect(error.message).toMatch(/out of disk space.*free space/);
      expect(exitCodeFor(error)).toBe(EXIT.UNAVAILABLE);
    });
  });

  it('TS401 / TS404 / TS409 / TS410 name the tenant and key the caller passed (never "?")', async () => {
    await withClient(async (client) => {
      for (const state of ['TS401', 'TS404', 'TS409', 'TS410']) {
        const raw = await failureOf(
          client,
          `DO $$BEGIN RAISE EXCEPTION 'x' USING ERRCODE = '${state}'; END$$`,
        );
        const known = toTenantSecretsError(raw, { operation: 'get', tenantId: 'acme', keyName: 'stripe' });
        expect(known.message, state).toContain('"acme"');
        if (state !== 'TS401') expect(known.message, state).toContain('"stripe"');
        expect(known, state).toMatchObject({ tenantId: 'acme' });
        // Without them (a SQL caller's error passed through), the message says less, never '?'.
        const unknown = toTenantSecretsError(raw, 'get');
        expect(unknown.message, state).not.toMatch(/"\?"/);
        expect(unknown, state).toMatchObject({ tenantId: undefined });
      }
    });
  });
});

describe('the executor carries what the caller knows into the error', () => {
  it('an operation given with its tenant and key: a raised TS409 / TS404 names them', async () => {
    const pool = createOwnedPool({ connectionString: url, max: 1 });
    try {
      const executor = schemaExecutor(pool, '"public"');
      const raise = (state: string) => `DO $$BEGIN RAISE EXCEPTION 'x' USING ERRCODE = '${state}'; END$$`;
      const conflict = await executor
        .plain({ name: 'set', tenantId: 'acme', keyName: 'stripe/api-key' }, raise('TS409'))
        .catch((e: unknown) => e);
      expect(conflict).toMatchObject({ name: 'ConflictError', tenantId: 'acme', keyName: 'stripe/api-key' });
      expect((conflict as Error).message).toBe(
        'version conflict on tenant "acme", key "stripe/api-key": another write got there first',
      );
      const missing = await executor
        .transaction({ name: 'rotate', tenantId: 'acme', keyName: 'k' }, (query) => query(raise('TS404')), {
          quiet: false,
        })
        .catch((e: unknown) => e);
      expect(missing).toMatchObject({ name: 'SecretNotFoundError', tenantId: 'acme', keyName: 'k' });
      // A plain name still works, and says less.
      const anonymous = await executor.plain('get', raise('TS410')).catch((e: unknown) => e);
      expect((anonymous as Error).message).toBe('secret expired');
    } finally {
      await pool.end();
    }
  });
});

describe('the SQL statuses round-trip: status → class → exit code', () => {
  it('each status of the table becomes its class, and the class its exit code', () => {
    for (const row of rows.filter((r) => r.sqlStatus !== undefined)) {
      const error = statusError(String(row.sqlStatus), { tenantId: 't', keyName: 'k', operation: 'op' });
      expect(error, String(row.sqlStatus)).toBeInstanceOf(row.type);
      expect(error.name).toBe(row.name);
      expect(exitCodeFor(error)).toBe(row.exitCode);
    }
  });
});

describe('a forbidden status names the grant the caller knows is missing', () => {
  it("statusError('forbidden', { grant: 'owner' }) is a PermissionDeniedError saying what only the owner may do", () => {
    const error = statusError('forbidden', {
      tenantId: '',
      keyName: '',
      operation: 'pruneAudit',
      grant: 'owner',
      ownerAction: 'prune the audit trail',
    });
    expect(error).toMatchObject({ name: 'PermissionDeniedError', grant: 'owner', sqlState: '42501' });
    expect(error.message).toBe(
      'permission denied during pruneAudit: the connected database role does not own the tenant-secrets schema, and only the role that owns the tenant-secrets schema may prune the audit trail',
    );
    expect(exitCodeFor(error)).toBe(EXIT.PERMISSION);
  });
});

describe('the table is consistent', () => {
  it('one exit code and one class per code; every class has its own literal name', () => {
    const exitByCode = new Map<string, number>();
    for (const row of rows) {
      const seen = exitByCode.get(row.code);
      if (seen !== undefined) expect(row.exitCode, row.code).toBe(seen);
      exitByCode.set(row.code, row.exitCode);
      // The name is the class's own (on its prototype), not computed from constructor.name.
      const descriptor = Object.getOwnPropertyDescriptor(row.type.prototype, 'name');
      expect(descriptor?.get, `${row.name} defines its own name`).toBeTypeOf('function');
      expect(descriptor?.get?.call(Object.create(row.type.prototype))).toBe(row.name);
      expect(row.type.name).toBe(row.name);
      expect(row.type.prototype).toBeInstanceOf(TenantSecretsError);
    }
    expect(new Set(rows.map((r) => r.name)).size).toBe(rows.length);
    // Every SQLSTATE belongs to one class.
    const states = rows.flatMap((r) => r.sqlStates);
    expect(new Set(states).size).toBe(states.length);
  });
});
