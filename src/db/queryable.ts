/**
 * The few driver methods tenant-secrets uses, typed structurally (as kysely does) so any `pg`-compatible
 * pool works, including one the application already has.
 */
export interface QueryResultLike<R> {
  rows: R[];
  rowCount?: number | null;
}

export interface Queryable {
  // biome-ignore lint/suspicious/noExplicitAny: rows are typed per call site
  query<R = any>(text: string, values?: unknown[]): Promise<QueryResultLike<R>>;
}

export interface PoolClientLike extends Queryable {
  release(error?: Error | boolean): void;
}

export interface PoolLike extends Queryable {
  connect(): Promise<PoolClientLike>;
  end(): Promise<void>;
}

/** Runs `work` inside one transaction on one pooled connection. */
export async function withTransaction<T>(
  pool: PoolLike,
  work: (client: PoolClientLike) => Promise<T>,
): Promise<T> {
  const client = await pool.connect();
  let broken = false;
  try {
    await client.query('BEGIN');
    const result = await work(client);
    await client.query('COMMIT');
    return result;
  } catch (error) {
    try {
      await client.query('ROLLBACK');
    } catch {
      broken = true;
    }
    throw error;
  } finally {
    client.release(broken);
  }
}
