import { DatabaseUnavailableError } from '../base/errors.js';
import { sqlStateOf } from './driver-errors.js';

/**
 * Reads sent together when more arrive than the manager lets run at once.
 *
 * Every read is one statement: its audit record, its commit and its flush to disk, the call's entry
 * and prelude, one round trip. Under load those fixed costs, not the read itself, fill the server's
 * CPUs. So a manager runs at most `limit` read statements at a time; reads that arrive while they
 * run wait, and the next free slot sends all waiting reads (up to 100, of any tenants) as one
 * statement (`tenant_secret_fetch_batch`). Nothing is delayed while fewer than `limit` run: a quiet
 * service sends each read as it comes, as before.
 *
 * What each read keeps: its own authorisation (its tenant's access token), its own audit record and
 * context, committed before its value is released, and its own outcome. An item the batch does not
 * answer ('single': refused, invalid, or a key of an earlier release) is sent again as a call of its
 * own, which answers it exactly as an unbatched read would. A batch that fails without committing
 * (an error of the statement) is sent again read by read, so one read cannot fail another; a lost
 * connection fails every read of the batch as it would fail one (`mayHaveCommitted`).
 */

/** One read of a current version, as the batch takes it. */
export interface BatchedRead {
  tenantId: string;
  keyName: string;
  credentials: Buffer;
  allowExpired: boolean;
  /** The audit context, as JSON. */
  context: string;
}

/** A batch's answer for item `ord` (1-based), or 'single' for a read to send on its own. */
export interface BatchRow<R> {
  ord: number;
  status: string;
  row: R;
}

interface Waiting<R> {
  item: BatchedRead;
  single: () => Promise<R>;
  resolve: (row: R) => void;
  reject: (error: unknown) => void;
}

/** The largest batch: the function takes up to 100 items. */
const MAX_BATCH = 100;

export class ReadBatches<R> {
  readonly #limit: number;
  readonly #send: (items: readonly BatchedRead[]) => Promise<BatchRow<R>[]>;
  #inFlight = 0;
  #queue: Waiting<R>[] = [];
  #enabled = true;

  /**
   * @param limit read statements run at once; 0 never batches (every read is its own statement).
   * @param send runs `tenant_secret_fetch_batch` for the items.
   */
  constructor(limit: number, send: (items: readonly BatchedRead[]) => Promise<BatchRow<R>[]>) {
    this.#limit = limit;
    this.#send = send;
  }

  /** Read statements running now (for tests and telemetry). */
  get inFlight(): number {
    return this.#inFlight;
  }

  /** Runs `single` now if a slot is free; otherwise the read waits and goes in the next batch. */
  run(item: BatchedRead, single: () => Promise<R>): Promise<R> {
    if (!this.#enabled || this.#limit === 0) return single();
    if (this.#inFlight < this.#limit && this.#queue.length === 0) return this.#slot(single);
    return new Promise<R>((resolve, reject) => {
      this.#queue.push({ item, single, resolve, reject });
    });
  }

  async #slot<T>(work: () => Promise<T>): Promise<T> {
    this.#inFlight++;
    try {
      return await work();
    } finally {
      this.#inFlight--;
      this.#drain();
    }
  }

  #drain(): void {
    while (this.#inFlight < this.#limit && this.#queue.length > 0) {
      const batch = this.#queue.splice(0, MAX_BATCH);
      void this.#slot(() => this.#sendBatch(batch));
    }
  }

  async #sendBatch(batch: Waiting<R>[]): Promise<void> {
    const only = batch[0];
    if (batch.length === 1 && only) return settle(only);
    if (!this.#enabled) {
      await Promise.all(batch.map(settle));
      return;
    }
    let rows: BatchRow<R>[];
    try {
      rows = await this.#send(batch.map((w) => w.item));
    } catch (error) {
      // A lost connection or an unreachable server: every read of the batch fails as one would
      // (mayHaveCommitted says whether its record may have been written).
      if (error instanceof DatabaseUnavailableError) {
        for (const w of batch) w.reject(error);
        return;
      }
      // A distributed installation routes calls by tenant, which a batch of tenants cannot be.
      if (sqlStateOf(error) === '0A000') this.#enabled = false;
      // The statement failed, so nothing of it committed: each read goes on its own, with its own outcome.
      await Promise.all(batch.map(settle));
      return;
    }
    const byOrd = new Map(rows.map((r) => [r.ord, r]));
    const alone: Waiting<R>[] = [];
    batch.forEach((w, i) => {
      const answer = byOrd.get(i + 1);
      if (answer === undefined || answer.status === 'single') alone.push(w);
      else w.resolve(answer.row);
    });
    await Promise.all(alone.map(settle));
  }
}

function settle<R>(w: Waiting<R>): Promise<void> {
  return w.single().then(w.resolve, w.reject);
}
