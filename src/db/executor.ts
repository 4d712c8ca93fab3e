import { createHash } from 'node:crypto';
import pg from 'pg';
import { DatabaseUnavailableError, type TenantSecretsError } from '../base/errors.js';
import { toTenantSecretsError } from './driver-errors.js';
import { connectionTarget } from './pool.js';
import type { PoolClientLike, PoolLike, Queryable } from './queryable.js';
import { watchConnection, watchPoolConnections } from './watch.js';

/**
 * How tenant-secrets runs SQL. Every call that carries key material or a value is preceded, in the
 * same transaction, by `tenant_secret_quiet()`, which keeps bind parameters out of the server log for
 * that transaction only (on the error path for every role; on the success path when the schema owner
 * may). Being transaction-local, it holds behind PgBouncer/Supavisor in transaction mode and leaks
 * nothing to other clients of the pooler.
 *
 * With a node-postgres pool, the prelude and the call travel in one round trip: Parse/Bind/Execute
 * of the prelude, then of the call, then one Sync, which PostgreSQL runs as one implicit transaction.
 * Other drivers (or a caller's own transaction) run the prelude as a statement of its own.
 */
export interface SqlExecutor {
  /** Runs one statement (with the prelude) in its own transaction, or in the caller's. */
  query<R>(operation: Operation, sql: string, params?: readonly unknown[]): Promise<R[]>;
  /**
   * Runs `work` in one transaction on one connection (the prelude first). In a caller's transaction,
   * `work` runs inside it.
   */
  transaction<T>(
    operation: Operation,
    work: (query: TxQuery) => Promise<T>,
    options?: { quiet?: boolean; keepServerMessage?: boolean },
  ): Promise<T>;
  /** Runs SQL that carries no secret and needs no prelude (status, migrations, sealing). */
  plain<R>(operation: Operation, sql: string, params?: readonly unknown[]): Promise<R[]>;
  /** Whether this executor runs inside a transaction the caller owns. */
  readonly inCallerTransaction: boolean;
  /** How many connections its calls may hold at once: the pool's `max` when the pool says (1 in a caller's transaction). */
  readonly maxConnections?: number | undefined;
}

export type TxQuery = <R>(sql: string, params?: readonly unknown[]) => Promise<R[]>;

/**
 * An operation's name (`get`, `rotateTenantKey`, ...), or its name and the tenant and key it is about:
 * an error the database raises for it (a TS404 or TS409 from a SQL function) then names them.
 */
export type Operation =
  | string
  | { readonly name: string; readonly tenantId?: string; readonly keyName?: string };

/** The error context of an operation: its name, and its tenant and key when given. */
function about(operation: Operation): { operation: string; tenantId?: string; keyName?: string } {
  if (typeof operation === 'string') return { operation };
  return {
    operation: operation.name,
    ...(operation.tenantId !== undefined && { tenantId: operation.tenantId }),
    ...(operation.keyName !== undefined && { keyName: operation.keyName }),
  };
}

interface PgConnectionLike {
  parse(config: { text: string; name?: string; types?: unknown[] }): void;
  bind(config: { portal?: string; statement?: string; values?: unknown[]; valueMapper?: unknown }): void;
  execute(config: { portal?: string; rows?: number }): void;
}

/** Names of a call's two statements when they are sent as named prepared statements. */
interface StatementNames {
  prelude: string;
  main: string;
}

/** A statement's name: its text's hash, so one name always means one text (whoever parsed it). */
const statementName = (text: string) =>
  `tenant_secrets_${createHash('sha256').update(text).digest('hex').slice(0, 24)}`;

interface ParsedStatements {
  parsedStatements?: Record<string, string>;
}

/**
 * A node-postgres query preceded by the prelude statement, all before one Sync. With `names`, both
 * are named prepared statements: each is parsed (and planned) once per connection.
 */
class QuietQuery extends pg.Query {
  readonly #prelude: string;
  readonly #text: string;
  readonly #names: StatementNames | undefined;
  #preludeDone = false;
  /** Set once the messages are written: an error after this may hide a commit. */
  submitted = false;

  constructor(
    prelude: string,
    text: string,
    values: readonly unknown[],
    callback: (err: Error | null, res?: unknown) => void,
    names?: StatementNames,
  ) {
    super(
      {
        text,
        values: [...values],
        queryMode: 'extended',
        ...(names && { name: names.main }),
      } as pg.QueryConfig,
      undefined,
      callback as never,
    );
    this.#prelude = prelude;
    this.#text = text;
    this.#names = names;
  }

  prepare(connection: unknown): void {
    const con = connection as PgConnectionLike & ParsedStatements;
    const name = this.#names?.prelude ?? '';
    if (name === '' || con.parsedStatements?.[name] === undefined) con.parse({ text: this.#prelude, name });
    con.bind({ portal: '', statement: name, values: [] });
    con.execute({ portal: '' });
    (pg.Query.prototype as unknown as { prepare(c: unknown): void }).prepare.call(this, connection);
    this.submitted = true;
  }

  /** After success: both statements exist on this connection. */
  markParsed(connection: unknown): void {
    const parsed = (connection as ParsedStatements).parsedStatements;
    if (this.#names && parsed) {
      parsed[this.#names.prelude] = this.#prelude;
      parsed[this.#names.main] = this.#text;
    }
  }

  handleDataRow(msg: unknown): void {
    if (this.#preludeDone)
      (pg.Query.prototype as unknown as { handleDataRow(m: unknown): void }).handleDataRow.call(this, msg);
  }

  handleCommandComplete(msg: unknown, connection: unknown): void {
    if (!this.#preludeDone) {
      this.#preludeDone = true;
      return;
    }
    (
      pg.Query.prototype as unknown as { handleCommandComplete(m: unknown, c: unknown): void }
    ).handleCommandComplete.call(this, msg, connection);
  }
}

/**
 * SQLSTATEs by which a server (or a pooler in front of it) refuses a named statement before running
 * anything of the call: the statement is not on this server connection (a transaction pooler moved
 * us), or one of that name already is. Prepared statements are then switched off and the call retried.
 */
const PREPARED_REFUSED = new Set(['26000', '42P05']);
/** A prepared statement whose result type changed (functions re-created by an upgrade): retry once. */
const isStalePlan = (error: unknown) =>
  (error as { code?: unknown }).code === '0A000' &&
  String((error as { message?: unknown }).message).includes('cached plan must not change result type');

function isNodePostgresClient(client: unknown): boolean {
  const connection = (client as { connection?: Partial<PgConnectionLike> } | null)?.connection;
  return typeof connection?.parse === 'function' && typeof connection.bind === 'function';
}

interface PoolStats {
  max: number;
  total: number;
  timeoutMs: number;
}

function poolStats(pool: PoolLike): PoolStats | undefined {
  const p = pool as { totalCount?: number; options?: { max?: number; connectionTimeoutMillis?: number } };
  if (typeof p.totalCount !== 'number' || typeof p.options?.max !== 'number') return undefined;
  return { max: p.options.max, total: p.totalCount, timeoutMs: p.options.connectionTimeoutMillis ?? 0 };
}

/**
 * A checked-out client whose connection may drop at any moment. Its 'error' listener
 * (`watchConnection`) stays for the client's whole life, not just this checkout (Node's EventEmitter
 * throws on an unhandled 'error'): an error is recorded instead of crashing the process, and the
 * client is then released as broken. A failure recorded before the checkout (the connection died as
 * its startup completed) is seen at the first statement, before anything is sent.
 */
async function checkout(
  pool: PoolLike,
  operation: Operation,
): Promise<{ client: PoolClientLike; release(broken?: boolean): void; failure(): Error | undefined }> {
  let client: PoolClientLike;
  try {
    client = await pool.connect();
  } catch (error) {
    const stats = poolStats(pool);
    throw toTenantSecretsError(error, {
      ...about(operation),
      target: connectionTarget(pool),
      ...(stats && { pool: stats }),
    });
  }
  const watch = watchConnection(client);
  let released = false;
  return {
    client,
    failure: watch.failure,
    release(broken = false) {
      if (released) return;
      released = true;
      const failed = watch.failure();
      // A client that saw an error is destroyed, not returned to the pool.
      client.release(broken || failed !== undefined ? (failed ?? true) : undefined);
    },
  };
}

/** An executor over a pool: each call on a connection of its own. */
export function poolExecutor(
  pool: PoolLike,
  prelude: () => string,
  options: { preparedStatements?: boolean; lockTimeoutMs?: number } = {},
): SqlExecutor {
  watchPoolConnections(pool);
  // Calls without the quiet prelude (nothing secret in them) still bound their lock waits.
  const lockOnly = lockTimeoutPrelude(options.lockTimeoutMs ?? DEFAULT_LOCK_TIMEOUT_MS);
  let prepared = options.preparedStatements ?? false;
  const names = new Map<string, StatementNames>();
  const namesOf = (sql: string): StatementNames => {
    let found = names.get(sql);
    if (!found) {
      found = { prelude: statementName(prelude()), main: statementName(sql) };
      if (names.size < 1000) names.set(sql, found);
    }
    return found;
  };

  async function run<R>(
    operation: Operation,
    sql: string,
    params: readonly unknown[],
    quiet: boolean,
    retried = false,
  ): Promise<R[]> {
    const held = await checkout(pool, operation);
    let sent = false;
    let named = false;
    try {
      if (isNodePostgresClient(held.client)) {
        named = quiet && prepared;
        const query = await new Promise<{ rows: R[] }>((resolve, reject) => {
          const q = new QuietQuery(
            quiet ? prelude() : lockOnly,
            sql,
            params,
            (err, res) => {
              sent = q.submitted;
              if (err) reject(err);
              else {
                q.markParsed((held.client as unknown as { connection: unknown }).connection);
                resolve(res as { rows: R[] });
              }
            },
            named ? namesOf(sql) : undefined,
          );
          (held.client as unknown as { query(q: unknown): unknown }).query(q);
          sent = q.submitted;
        });
        return query.rows;
      }
      // Another driver: the prelude needs an explicit transaction to apply to the call. Nothing can
      // commit before COMMIT is sent.
      await held.client.query('BEGIN');
      try {
        await held.client.query(quiet ? prelude() : lockOnly);
        const result = await held.client.query<R>(sql, [...params]);
        notLost(held);
        sent = true;
        await held.client.query('COMMIT');
        return result.rows;
      } catch (error) {
        await held.client.query('ROLLBACK').catch(() => undefined);
        throw error;
      }
    } catch (error) {
      // After an error, which named statements exist on the connection is uncertain: drop it.
      held.release(named || isBroken(error, held.failure()));
      const code = (error as { code?: unknown } | null)?.code;
      if (named && !retried && held.failure() === undefined && typeof code === 'string') {
        // Refused at parse or bind: the call's implicit transaction ran nothing that commits.
        if (PREPARED_REFUSED.has(code)) {
          prepared = false;
          return run(operation, sql, params, quiet, true);
        }
        if (isStalePlan(error)) return run(operation, sql, params, quiet, true);
      }
      throw toTenantSecretsError(held.failure() ?? error, {
        ...about(operation),
        sent,
        statement: sql,
        target: connectionTarget(held.client),
      });
    } finally {
      held.release();
    }
  }

  return {
    inCallerTransaction: false,
    get maxConnections() {
      return poolStats(pool)?.max;
    },
    query: (operation, sql, params = []) => run(operation, sql, params, true),
    plain: (operation, sql, params = []) => run(operation, sql, params, false),
    async transaction<T>(
      operation: Operation,
      work: (query: TxQuery) => Promise<T>,
      options: { quiet?: boolean; keepServerMessage?: boolean } = {},
    ): Promise<T> {
      const held = await checkout(pool, operation);
      let sent = false;
      let began = false;
      let statement: string | undefined;
      try {
        await held.client.query('BEGIN');
        began = true;
        await held.client.query(options.quiet !== false ? prelude() : lockOnly);
        const query: TxQuery = async <R>(sql: string, params: readonly unknown[] = []) => {
          notLost(held);
          statement = sql;
          return (await held.client.query<R>(sql, [...params])).rows;
        };
        const result = await work(query);
        // Until COMMIT is sent, a lost connection rolls the transaction back: nothing committed.
        notLost(held);
        sent = true;
        await held.client.query('COMMIT');
        return result;
      } catch (error) {
        if (began && held.failure() === undefined) {
          await held.client.query('ROLLBACK').catch(() => undefined);
        }
        held.release(isBroken(error, held.failure()));
        throw toTenantSecretsError(held.failure() ?? error, {
          ...about(operation),
          sent,
          statement,
          target: connectionTarget(held.client),
          ...(options.keepServerMessage && { keepServerMessage: true }),
        });
      } finally {
        held.release();
      }
    },
  };
}

/** Throws the connection's failure, if it was lost while idle (before anything more is sent on it). */
function notLost(held: { failure(): Error | undefined }): void {
  const failure = held.failure();
  if (failure) throw failure;
}

function isBroken(error: unknown, failure: Error | undefined): boolean {
  if (failure) return true;
  const code = (error as { code?: unknown } | null)?.code;
  // A connection-level error leaves the client unusable; a statement error does not.
  return typeof code !== 'string' || code.startsWith('08') || code.startsWith('57P');
}

/**
 * An executor bound to a transaction the caller owns (a `pg` client between its BEGIN and COMMIT, a
 * Kysely/Drizzle transaction, postgres.js `sql.begin`): every call runs inside it, so it commits or
 * rolls back with the caller's own statements. An error aborts the caller's transaction (PostgreSQL
 * semantics); the caller rolls back.
 */
export function transactionExecutor(db: Queryable, prelude: () => string): SqlExecutor {
  type Guard = ReturnType<typeof guardCallerConnection>;
  async function run<R>(
    operation: Operation,
    sql: string,
    params: readonly unknown[],
    quiet: boolean,
    outer?: Guard,
  ): Promise<R[]> {
    const guard = outer ?? guardCallerConnection(db);
    try {
      // Lost between two statements of one `transaction`: send nothing more on it.
      notLost(guard);
      // Every time: the executor may outlive one transaction, and the setting ends with it.
      if (quiet) await db.query(prelude());
      const rows = (await db.query<R>(sql, [...params])).rows;
      if (!outer) guard.done(false);
      return rows;
    } catch (error) {
      // The role is not named: a caller's connection may have switched role (SET ROLE) since login.
      const typed = toTenantSecretsError(guard.failure() ?? error, {
        ...about(operation),
        sent: false,
        inCallerTransaction: true,
        statement: sql,
      });
      if (!outer) guard.done(typed instanceof DatabaseUnavailableError);
      // Inside the caller's transaction nothing commits before the caller's COMMIT: a lost
      // connection rolled it back (mayHaveCommitted stays false).
      throw typed;
    }
  }
  return {
    inCallerTransaction: true,
    maxConnections: 1,
    query: (operation, sql, params = []) => run(operation, sql, params, true),
    plain: (operation, sql, params = []) => run(operation, sql, params, false),
    async transaction<T>(
      operation: Operation,
      work: (query: TxQuery) => Promise<T>,
      options: { quiet?: boolean } = {},
    ): Promise<T> {
      const quiet = options.quiet !== false;
      // One listener for the whole of `work`, not one per statement: between two statements the
      // library may wait on other I/O, and a drop then must not find the caller's client unguarded.
      const guard = guardCallerConnection(db);
      const query: TxQuery = <R>(sql: string, params: readonly unknown[] = []) =>
        run<R>(operation, sql, params, quiet, guard);
      try {
        const result = await work(query);
        guard.done(false);
        return result;
      } catch (error) {
        guard.done(error instanceof DatabaseUnavailableError);
        throw error;
      }
    },
  };
}

/**
 * While a call runs on a connection the caller owns (a node-postgres client checked out of a pool has
 * no 'error' listener), a dropped connection must not crash the process with an unhandled 'error'
 * event: a listener is attached for the call. When the connection was lost, it stays (the client
 * emits 'error' again when its socket closes, and is unusable from then on); otherwise it is removed.
 */
function guardCallerConnection(db: unknown): { failure(): Error | undefined; done(lost: boolean): void } {
  const emitter = db as {
    on?(event: string, listener: (err: Error) => void): unknown;
    removeListener?(event: string, listener: (err: Error) => void): unknown;
  } | null;
  if (typeof emitter?.on !== 'function' || typeof emitter.removeListener !== 'function') {
    return { failure: () => undefined, done: () => undefined };
  }
  let failed: Error | undefined;
  const onError = (err: Error) => {
    failed = err;
  };
  emitter.on('error', onError);
  let finished = false;
  return {
    failure: () => failed,
    done(lost) {
      if (finished) return;
      finished = true;
      if (!lost && failed === undefined) emitter.removeListener?.('error', onError);
    },
  };
}

/** The longest lock wait of a call, unless configured (`lockTimeoutMs`). */
export const DEFAULT_LOCK_TIMEOUT_MS = 10_000;

/**
 * The statement that starts a call without the quiet prelude (nothing secret in it): it only bounds
 * the call's lock waits to `lockTimeoutMs`, unless the session's own lock_timeout is shorter. Reads
 * only catalog settings, so it works before tenant-secrets is installed.
 */
export function lockTimeoutPrelude(lockTimeoutMs: number): string {
  const ms = Math.trunc(lockTimeoutMs);
  return `SELECT pg_catalog.set_config('lock_timeout', '${ms}ms', true) FROM pg_catalog.pg_settings s WHERE s.name = 'lock_timeout' AND (s.setting::integer = 0 OR s.setting::integer > ${ms})`;
}

/** The executor the library uses on a pool for one schema (the prelude names that schema's function). */
/**
 * The statement that starts every call carrying a key or value: `tenant_secret_quiet()` keeps bind
 * parameters out of the server log for the rest of the transaction and bounds lock waits (0: keep
 * the session's lock_timeout). The one place it is written.
 */
export function quietPrelude(qs: string, lockTimeoutMs: number = DEFAULT_LOCK_TIMEOUT_MS): string {
  return `SELECT FROM ${qs}.tenant_secret_quiet(${Math.trunc(lockTimeoutMs)})`;
}

export function schemaExecutor(pool: PoolLike, qs: string): SqlExecutor {
  const prelude = quietPrelude(qs);
  return poolExecutor(pool, () => prelude);
}

export type { TenantSecretsError };
