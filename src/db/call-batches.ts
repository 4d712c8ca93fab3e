import { DatabaseUnavailableError } from '../base/errors.js';
import { sqlStateOf } from './driver-errors.js';

/**
 * Calls sent together when more arrive than the manager lets run at once (reads and writes each have
 * their own: `concurrentReads`, `concurrentWrites`).
 *
 * Every call is one statement: its audit record, its commit and its flush to disk, the call's entry
 * and prelude, one round trip. Under load those fixed costs, not the work of the call, fill the
 * server's CPUs. So a manager runs at most `limit` such statements at a time; calls that arrive while
 * they run wait, and the next free slot sends all waiting calls (up to 100, of any tenants) as one
 * statement (`tenant_secret_fetch_batch`, `tenant_secret_put_batch`). Nothing is delayed while fewer
 * than `limit` run: a quiet service sends each call as it comes.
 *
 * What each call keeps: its own authorisation (its tenant's token or data key), its own audit record
 * and context, committed before it is answered, and its own outcome. An item the batch does not
 * answer ('single': refused, invalid, a key of an earlier release, a write that is not a plain
 * replacement or whose row another transaction holds) is sent again as a call of its own, which
 * answers it exactly as an unbatched call would. A batch that fails without committing (an error of
 * the statement) is sent again call by call, so one call cannot fail another; a lost connection
 * fails every call of the batch as it would fail one (`mayHaveCommitted`).
 */

/** A batch's answer for item `ord` (1-based), or 'single' for a call to send on its own. */
export interface BatchRow<R> {
  ord: number;
  status: string;
  row: R;
}

interface Waiting<I, R> {
  item: I;
  single: () => Promise<R>;
  resolve: (row: R) => void;
  reject: (error: unknown) => void;
}

/** The largest batch: the function takes up to 100 items. */
const MAX_BATCH = 100;
/** How long a statement holds its slot (ordinary batches take a few milliseconds, under load tens). */
const STALLED_MS = 100;

export class CallBatches<I, R> {
  readonly #limit: number;
  readonly #send: (items: readonly I[]) => Promise<BatchRow<R>[]>;
  #inFlight = 0;
  #queue: Waiting<I, R>[] = [];
  #enabled = true;
  #drainScheduled = false;

  /**
   * @param limit statements run at once; 0 never batches (every call is its own statement).
   * @param send runs the batch function for the items.
   */
  constructor(limit: number, send: (items: readonly I[]) => Promise<BatchRow<R>[]>) {
    this.#limit = limit;
    this.#send = send;
  }

  /** Statements running now. */
  get inFlight(): number {
    return this.#inFlight;
  }

  /** Runs `single` now if a slot is free; otherwise the call waits and goes in the next batch. */
  run(item: I, single: () => Promise<R>): Promise<R> {
    if (!this.#enabled || this.#limit === 0) return single();
    // Nothing running: go now (a quiet service never waits).
    if (this.#inFlight === 0 && this.#queue.length === 0) return this.#slot(single);
    // Otherwise wait for the end of this turn of the event loop, so that the calls made in it (the
    // callers a statement just answered call again together) leave together.
    const answer = new Promise<R>((resolve, reject) => {
      this.#queue.push({ item, single, resolve, reject });
    });
    if (this.#inFlight < this.#limit) this.#scheduleDrain();
    return answer;
  }

  async #slot<T>(work: () => Promise<T>): Promise<T> {
    this.#inFlight++;
    // A statement still running after STALLED_MS (a write waiting on a row lock, a slow server) no
    // longer holds its slot: the calls behind it leave without it, so one held lock cannot hold up
    // every call of the manager for the whole lock timeout.
    let holding = true;
    const stalled = setTimeout(() => {
      holding = false;
      this.#inFlight--;
      this.#scheduleDrain();
    }, STALLED_MS);
    stalled.unref?.();
    try {
      return await work();
    } finally {
      clearTimeout(stalled);
      if (holding) this.#inFlight--;
      this.#scheduleDrain();
    }
  }

  /**
   * Drains once the callers answered by the statement that just ended have had their turn: they
   * usually call again at once, and their calls then join the next batch instead of the batch
   * leaving without them (which would send one call alone, then all of theirs after it).
   */
  #scheduleDrain(): void {
    if (this.#drainScheduled || this.#queue.length === 0) return;
    this.#drainScheduled = true;
    setImmediate(() => {
      this.#drainScheduled = false;
      this.#drain();
    });
  }

  #drain(): void {
    while (this.#inFlight < this.#limit && this.#queue.length > 0) {
      const batch = this.#queue.splice(0, MAX_BATCH);
      void this.#slot(() => this.#sendBatch(batch));
    }
  }

  async #sendBatch(batch: Waiting<I, R>[]): Promise<void> {
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
      // A lost connection or an unreachable server: every call of the batch fails as one would
      // (mayHaveCommitted says whether its record may have been written).
      if (error instanceof DatabaseUnavailableError) {
        for (const w of batch) w.reject(error);
        return;
      }
      // A distributed installation routes calls by tenant, which a batch of tenants cannot be.
      if (sqlStateOf(error) === '0A000') this.#enabled = false;
      // The statement failed, so nothing of it committed: each call goes on its own, with its own outcome.
      await Promise.all(batch.map(settle));
      return;
    }
    const byOrd = new Map(rows.map((r) => [r.ord, r]));
    const alone: Waiting<I, R>[] = [];
    batch.forEach((w, i) => {
      const answer = byOrd.get(i + 1);
      if (answer === undefined || answer.status === 'single') alone.push(w);
      else w.resolve(answer.row);
    });
    await Promise.all(alone.map(settle));
  }
}

function settle<I, R>(w: Waiting<I, R>): Promise<void> {
  return w.single().then(w.resolve, w.reject);
}
