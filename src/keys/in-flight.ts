import { DatabaseTimeoutError } from '../base/errors.js';
import type { Core } from '../core/core.js';

/**
 * Waits until every transaction that is open in the database now (other than this call's own) has
 * ended. Writers take no lock on their tenant (any lock an unprivileged role could take could also be
 * held against them), so a key switch or a purge commits first and then waits here: a writer whose
 * statement saw the old key was inside one of those transactions, and once they have all ended, its
 * row is committed (and seen) or rolled back. Polls pg_locks (every role may read it) with a backoff;
 * holds no transaction of its own while it waits.
 * @throws {DatabaseTimeoutError} some of them are still open after `timeoutMs` (a long transaction
 *   elsewhere): nothing is lost, the operation resumes when run again.
 */
export async function waitForTransactionsInFlight(
  core: Core,
  operation: string,
  options: { timeoutMs?: number; signal?: AbortSignal | undefined } = {},
): Promise<void> {
  const timeoutMs = options.timeoutMs ?? 120_000;
  const [row] = await core.plain<{ open: string[] }>(
    operation,
    `SELECT ${core.qs}.tenant_secret_open_transactions() AS open`,
  );
  const open = row?.open ?? [];
  if (open.length === 0) return;
  const started = Date.now();
  for (let delay = 5; ; delay = Math.min(delay * 2, 500)) {
    const [left] = await core.plain<{ n: number }>(
      operation,
      `SELECT ${core.qs}.tenant_secret_transactions_open($1::text[]) AS n`,
      [open],
    );
    const n = left?.n ?? 0;
    if (n === 0) return;
    if (Date.now() - started > timeoutMs || options.signal?.aborted) {
      throw new DatabaseTimeoutError(
        `${operation}: ${n} transaction(s) that were open when the key changed are still open after ${Math.round((Date.now() - started) / 1000)} s (a long transaction elsewhere in this database); nothing was lost: run it again to resume`,
        undefined,
      );
    }
    await new Promise((resolve) => setTimeout(resolve, delay));
  }
}
