import type { AuditContext } from '../base/audit-context.js';
import { InvalidInputError } from '../base/errors.js';
import type { Telemetry } from '../base/telemetry.js';
import type { Core } from '../core/core.js';
import { sqlStateOf } from '../db/driver-errors.js';

/** What sealing needs: SQL that carries no secret, and the schema. No keyring: sealing holds no key. */
export type SealRunner = Pick<Core, 'plain' | 'qs'>;

/** What one `sealAudit()` call did. */
export interface SealResult {
  /** Records chained by this call. */
  sealed: number;
  /** Committed records still waiting (the call stops after `limit`, or another sealer held the lock). */
  pending: number;
  /** When the oldest waiting record occurred (its age is the unsealed window), or null. */
  oldestPending: Date | null;
  /** True when another sealer was running and `wait` was false: nothing was done. */
  busy: boolean;
}

export interface SealOptions {
  /** Records per transaction (1-100000, default 10000). */
  limit?: number;
  /** Wait for a sealer that is running instead of returning `busy` (default true). */
  wait?: boolean;
  /** Seal until nothing committed is left (default true). */
  all?: boolean;
  /** Audit context for this call only (sealing itself writes no record). */
  context?: AuditContext;
}

interface SealRow {
  sealed: number;
  pending: string | null;
  oldest_pending: Date | null;
  busy: boolean;
}

/**
 * The batch size sealing uses, shared by every sealing call of a manager. A statement timeout
 * (57014, e.g. a role's `statement_timeout`) halves it and the batch is tried again at once; each
 * success grows it back by half, up to the limit asked for. So sealing keeps up under any timeout that
 * lets one record through, instead of failing every pass while the backlog grows.
 */
export class SealBatch {
  #size: number;
  constructor(readonly max = 10_000) {
    this.#size = max;
  }
  get size(): number {
    return this.#size;
  }
  shrink(): boolean {
    if (this.#size <= 1) return false;
    this.#size = Math.max(1, Math.floor(this.#size / 2));
    return true;
  }
  grow(limit: number): void {
    this.#size = Math.min(limit, Math.max(this.#size + 1, Math.ceil(this.#size * 1.5)));
  }
  limitFor(requested: number): number {
    return Math.min(requested, this.#size);
  }
}

/**
 * Sealing chains pending audit records into their tenants' hash chains (sql/functions/30_audit_append.sql
 * and 80_audit_seal.sql). Operations append records without waiting for each other; the manager seals
 * in the background about once per `auditSealIntervalMs` after operations; verification, queries and
 * exports seal first; `sealAudit()` is there for jobs. Every call seals in bounded batches, one
 * transaction each, and a failed pass is recorded in the database for `status()`.
 */
export function sealOperations(core: SealRunner, batch = new SealBatch()) {
  const { qs } = core;
  async function sealOnce(limit: number, wait: boolean): Promise<SealResult> {
    const rows = await core.plain<SealRow>(
      'sealAudit',
      `SELECT * FROM ${qs}.tenant_secret_audit_seal($1, $2)`,
      [limit, wait],
    );
    const row = rows[0];
    return {
      sealed: row?.sealed ?? 0,
      pending: Number(row?.pending ?? 0),
      oldestPending: row?.oldest_pending ?? null,
      busy: row?.busy ?? false,
    };
  }

  /** Records a failed pass (an error code only), best effort: the failure itself is what the caller sees. */
  async function recordFailure(error: unknown, limit: number): Promise<void> {
    const code = String((error as { code?: unknown } | null)?.code ?? 'UNEXPECTED').replace(
      /[^A-Za-z0-9_]/g,
      '_',
    );
    await core
      .plain('sealAudit', `SELECT ${qs}.tenant_secret_audit_seal_failed($1, $2)`, [code.slice(0, 64), limit])
      .catch(() => undefined);
  }

  /** One pass: a batch, shrunk and tried again while it hits a statement timeout. */
  async function sealBatch(requested: number, wait: boolean): Promise<SealResult & { limit: number }> {
    for (;;) {
      const limit = batch.limitFor(requested);
      try {
        const result = await sealOnce(limit, wait);
        if (result.sealed === limit) batch.grow(requested);
        return { ...result, limit };
      } catch (error) {
        await recordFailure(error, limit);
        if (sqlStateOf(error) === '57014' && batch.shrink()) continue;
        throw error;
      }
    }
  }

  return {
    /**
     * Seals committed pending audit records (see {@link SealResult}), in batches of at most `limit`
     * records, one transaction each (smaller after a statement timeout). Callable by application
     * roles. Run it from a periodic job when only SQL callers write (the library seals by itself).
     * @throws {InvalidInputError} bad `limit`.
     * @throws {DatabaseUnavailableError} the database cannot be reached.
     */
    async sealAudit(options: SealOptions = {}): Promise<SealResult> {
      const limit = options.limit ?? 10_000;
      if (!Number.isInteger(limit) || limit < 1 || limit > 100_000) {
        throw new InvalidInputError('limit must be an integer from 1 to 100000', 'limit');
      }
      const wait = options.wait ?? true;
      let total = 0;
      for (;;) {
        const { limit: used, ...step } = await sealBatch(limit, wait);
        total += step.sealed;
        // A batch that was not full drained what was committed when it ran: done (a stream of new
        // records never keeps one call going).
        if (step.busy || options.all === false || step.sealed < used) return { ...step, sealed: total };
      }
    },
  };
}

export type SealOperations = ReturnType<typeof sealOperations>;

/**
 * The manager's background sealer: after operations, it seals once the interval has passed since its
 * last run, and arms an unreferenced timer so the last records before a quiet period are sealed too
 * (the timer never keeps the process alive). Failures are reported to telemetry and retried later.
 */
export function createBackgroundSealer(
  seal: (limit: number, wait: boolean) => Promise<SealResult>,
  intervalMs: number,
  telemetry: Telemetry,
) {
  let dirty = false;
  let running: Promise<void> | undefined;
  let timer: ReturnType<typeof setTimeout> | undefined;
  let lastRun = 0;
  let stopped = false;
  // Records appended in a caller's transaction become visible when the caller commits, which the
  // library does not see: keep sealing now and then for a while after such a call.
  let lateUntil = 0;
  const lateHorizonMs = Math.max(60_000, 10 * intervalMs);

  const run = (): Promise<void> => {
    if (running) return running;
    dirty = false;
    lastRun = Date.now();
    const started = performance.now();
    running = seal(10_000, false)
      .then(
        (result) => {
          if (result.pending > 0 && !result.busy) dirty = true;
          telemetry.report({
            operation: 'sealAudit',
            outcome: 'success',
            durationMs: performance.now() - started,
          });
        },
        (error: unknown) => {
          dirty = true;
          telemetry.report({
            operation: 'sealAudit',
            outcome: 'failure',
            errorCode: (error as { code?: string }).code ?? 'UNEXPECTED',
            durationMs: performance.now() - started,
          });
        },
      )
      .finally(() => {
        running = undefined;
        if ((dirty || Date.now() < lateUntil) && !stopped) arm();
      });
    return running;
  };

  const arm = () => {
    if (timer || stopped) return;
    timer = setTimeout(() => {
      timer = undefined;
      if (dirty || Date.now() < lateUntil) void run();
    }, intervalMs);
    timer.unref?.();
  };

  return {
    /** After an operation that appended audit records. */
    touch(): void {
      if (stopped || intervalMs <= 0) return;
      dirty = true;
      if (!running && Date.now() - lastRun >= intervalMs) void run();
      else arm();
    },
    /** After a call in a caller's transaction (its records appear when the caller commits). */
    touchInCallerTransaction(): void {
      if (stopped || intervalMs <= 0) return;
      lateUntil = Date.now() + lateHorizonMs;
      arm();
    },
    /** Stops the timer and seals what this process left pending (at close()). */
    async stop(): Promise<void> {
      stopped = true;
      if (timer) clearTimeout(timer);
      timer = undefined;
      await running;
      if ((dirty || lateUntil > 0) && intervalMs > 0)
        await seal(10_000, true).then(
          () => undefined,
          () => undefined,
        );
    },
  };
}
