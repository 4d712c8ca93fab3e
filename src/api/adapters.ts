import { InvalidInputError } from '../base/errors.js';
import type { Queryable, QueryResultLike } from '../db/queryable.js';

/**
 * Small adapters that turn another driver's transaction into the {@link Queryable} that
 * `secrets.inTransaction()` takes, so an application using Kysely, Drizzle or postgres.js runs
 * tenant-secrets' operations inside its own transaction without a second driver. Each is typed
 * structurally: tenant-secrets does not depend on these drivers. A `pg` client needs no adapter.
 */

/** The part of a postgres.js transaction (`sql.begin(async (tx) => ...)`) used here. */
export interface PostgresJsLike {
  unsafe(query: string, parameters?: unknown[]): PromiseLike<unknown>;
}

/** A postgres.js transaction (`sql.begin(async (tx) => secrets.inTransaction(fromPostgresJs(tx)))`). */
export function fromPostgresJs(tx: PostgresJsLike): Queryable {
  if (typeof tx?.unsafe !== 'function')
    throw new InvalidInputError('fromPostgresJs needs a postgres.js sql or transaction', 'tx');
  return {
    async query<R>(text: string, values: unknown[] = []): Promise<QueryResultLike<R>> {
      const rows = (await tx.unsafe(text, values)) as R[];
      return { rows: [...rows] };
    },
  };
}

/** The part of a Kysely transaction used here. */
export interface KyselyLike {
  executeQuery(query: unknown): Promise<{ rows: unknown[] }>;
}

/** Kysely's `CompiledQuery` class (pass it in: `import { CompiledQuery } from 'kysely'`). */
export interface CompiledQueryLike {
  raw(sql: string, parameters?: unknown[]): unknown;
}

/** A Kysely transaction (`db.transaction().execute(async (trx) => secrets.inTransaction(fromKysely(trx, CompiledQuery)))`). */
export function fromKysely(trx: KyselyLike, compiledQuery: CompiledQueryLike): Queryable {
  if (typeof trx?.executeQuery !== 'function' || typeof compiledQuery?.raw !== 'function') {
    throw new InvalidInputError('fromKysely needs a Kysely transaction and CompiledQuery', 'trx');
  }
  return {
    async query<R>(text: string, values: unknown[] = []): Promise<QueryResultLike<R>> {
      const result = await trx.executeQuery(compiledQuery.raw(text, values));
      return { rows: result.rows as R[] };
    },
  };
}

/** The part of a Drizzle transaction (node-postgres or postgres.js driver) used here. */
export interface DrizzleLike {
  execute(query: unknown): PromiseLike<unknown>;
}

/** Drizzle's `sql` tag (pass it in: `import { sql } from 'drizzle-orm'`). */
export interface DrizzleSqlLike {
  raw(text: string): unknown;
  join(chunks: unknown[]): unknown;
  param(value: unknown): unknown;
}

/**
 * A Drizzle transaction (`db.transaction(async (tx) => secrets.inTransaction(fromDrizzle(tx, sql)))`).
 * The statement's `$n` placeholders become Drizzle parameters, so values are still bound, never inlined.
 */
export function fromDrizzle(tx: DrizzleLike, sqlTag: DrizzleSqlLike): Queryable {
  if (
    typeof tx?.execute !== 'function' ||
    typeof sqlTag?.raw !== 'function' ||
    typeof sqlTag.param !== 'function'
  ) {
    throw new InvalidInputError('fromDrizzle needs a Drizzle transaction and its sql tag', 'tx');
  }
  return {
    async query<R>(text: string, values: unknown[] = []): Promise<QueryResultLike<R>> {
      const parts = text.split(/\$(\d+)/);
      const chunks = parts.map((part, i) =>
        i % 2 === 0 ? sqlTag.raw(part) : sqlTag.param(values[Number(part) - 1]),
      );
      const result = (await tx.execute(sqlTag.join(chunks))) as { rows?: R[] } | R[];
      return { rows: Array.isArray(result) ? result : (result.rows ?? []) };
    },
  };
}
