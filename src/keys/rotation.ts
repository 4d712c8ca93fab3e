import type { AuditContext } from '../base/audit-context.js';
import {
  DatabaseTimeoutError,
  IntegrityError,
  InvalidInputError,
  OperationAbortedError,
  TenantNotFoundError,
  UnauthorizedError,
  UnknownMasterKeyError,
} from '../base/errors.js';
import { assertOptions, assertTenantId } from '../base/validation.js';
import type { Core } from '../core/core.js';
import { MASTER_KEY_ID_PATTERN } from '../crypto/master-key.js';
import { waitForTransactionsInFlight } from './in-flight.js';

/** Progress of a batched key operation: units done so far out of the units found at the start. */
export interface KeyProgress {
  done: number;
  total: number;
  /** Batches committed so far. */
  batches: number;
}

export interface BatchOptions {
  /**
   * Tenants (master-key rotation) or ciphertexts (tenant-key rotation) per transaction; default 100.
   * When a batch exceeds the server's `statement_timeout`, it is retried at half the size, down to 1.
   */
  batchSize?: number;
  /**
   * Called after every committed batch. If it throws (or returns a rejected promise), the operation
   * stops with {@link OperationAbortedError}; finished batches stay committed.
   */
  onProgress?: (progress: KeyProgress) => void | Promise<void>;
  /** Aborting stops the operation before the next batch ({@link OperationAbortedError}). */
  signal?: AbortSignal;
  /** Audit context for this call only. */
  context?: AuditContext;
}

export interface RotateMasterKeyResult {
  /** Fingerprint id of the current master key, which now wraps the re-wrapped keys. */
  masterKeyId: string;
  /** Data keys re-wrapped by this run. */
  rewrapped: number;
  /** Data keys that could not be re-wrapped (wrapped under a key outside the ring); 0 on success. */
  failed: number;
  /** Keys found not under the current master key when the run started. */
  total: number;
  batches: number;
  /** Wrapped data keys still depending on other master keys after the run, per key id. */
  remainingByMasterKey: Record<string, number>;
  /** Signed audit checkpoints re-signed under the current key (see {@link ResignResult}). */
  auditCheckpoints: ResignResult;
  /** The batch size the run ended with (smaller than asked when batches hit statement_timeout). */
  batchSize: number;
}

/**
 * What re-signing audit checkpoints did: `resigned` by this call, `alreadyCurrent` (signed under the
 * current key, e.g. by a concurrent run), `invalid` (signature does not verify, or signed by a key not
 * in the ring: `verifyAudit()` reports those).
 */
export interface ResignResult {
  resigned: number;
  alreadyCurrent: number;
  invalid: number;
}

/** Work other modules attach to key operations (composed in manager.ts). */
export interface KeyOperationHooks {
  /** Re-signs audit checkpoints under the current master key; run at the end of a master-key rotation. */
  resignAuditCheckpoints?: () => Promise<ResignResult>;
  /** Registers the current master key (run before a master-key rotation re-wraps anything). */
  registerMasterKey?: () => Promise<unknown>;
}

export interface MasterKeyUsage {
  /** Wrapped (not destroyed) data keys under this master key. */
  keys: number;
  /** Active data keys under this master key. */
  activeKeys: number;
  tenants: number;
  /** Whether this key is in the configured keyring. */
  inKeyring: boolean;
}

export interface KeyStatus {
  currentMasterKeyId: string;
  /** Usage per master key fingerprint id (keys that wrap at least one data key). */
  byMasterKey: Record<string, MasterKeyUsage>;
  /** Tenants with at least one wrapped data key. */
  tenants: number;
  /** Secret rows (including soft-deleted ones). */
  secrets: number;
  /** Version rows still holding ciphertext. */
  versions: number;
  /** Signed audit checkpoints per master key id; those under other keys need re-signing before a drop. */
  checkpointsByMasterKey: Record<string, number>;
  /** Retired data keys not yet destroyed (an unfinished tenant-key rotation). */
  retiredKeys: number;
  destroyedKeys: number;
  /** Master key ids data depends on that are not in the keyring: that data is unreadable. */
  unknownMasterKeyIds: string[];
  /** Master key ids registered in the database (allowed to vouch for new tenants). */
  registeredMasterKeyIds: string[];
  /**
   * True when no data key is wrapped, and no audit checkpoint signed, under anything but the current
   * master key: the previous keys can be removed from `TENANT_SECRETS_PREVIOUS_MASTER_KEYS`.
   */
  readyToDropPrevious: boolean;
}

export interface RotateTenantKeyResult {
  /** The active data-key version after the call. */
  keyVersion: number;
  /** The version it replaced (or, when resuming, the newest retired version). */
  previousKeyVersion: number;
  /** True when this call finished an earlier, interrupted rotation instead of starting a new one. */
  resumed: boolean;
  /** Ciphertexts (current values and versions) re-encrypted by this call. */
  reencrypted: number;
  batches: number;
  /** Retired data-key versions destroyed by this call. */
  destroyedKeyVersions: number[];
  /** The batch size the run ended with (smaller than asked when batches hit statement_timeout). */
  batchSize: number;
}

const DEFAULT_BATCH = 100;

function batchSizeOf(options: BatchOptions, method: string): number {
  assertOptions(options, ['batchSize', 'onProgress', 'signal', 'context'], method);
  if (options.onProgress !== undefined && typeof options.onProgress !== 'function') {
    throw new InvalidInputError('onProgress must be a function', 'onProgress');
  }
  const size = options.batchSize ?? DEFAULT_BATCH;
  if (!Number.isInteger(size) || size < 1 || size > 10_000) {
    throw new InvalidInputError('batchSize must be an integer from 1 to 10000', 'batchSize');
  }
  return size;
}

/** Runs the progress callback; a throw becomes OperationAbortedError. */
async function report(operation: string, options: BatchOptions, progress: KeyProgress): Promise<void> {
  if (!options.onProgress) return;
  try {
    await options.onProgress(progress);
  } catch (error) {
    throw new OperationAbortedError(operation, progress.done, { cause: error });
  }
}

function checkSignal(operation: string, options: BatchOptions, done: number): void {
  if (options.signal?.aborted)
    throw new OperationAbortedError(operation, done, { cause: options.signal.reason });
}

/**
 * Runs one batch; when the server cancels it for statement_timeout, halves the batch and tries again,
 * down to 1. Returns the batch's result and the size that worked.
 */
async function withShrinkingBatch<T>(
  operation: string,
  size: number,
  run: (size: number) => Promise<T>,
): Promise<{ result: T; size: number }> {
  let current = size;
  for (;;) {
    try {
      return { result: await run(current), size: current };
    } catch (error) {
      if (!(error instanceof DatabaseTimeoutError) || error.sqlState !== '57014') throw error;
      if (current === 1) {
        throw new DatabaseTimeoutError(
          `${operation}: even a batch of 1 exceeds the server's statement_timeout; raise statement_timeout for this role (e.g. SET statement_timeout = '30s' for the operator role) and run it again to resume`,
          error.sqlState,
          { cause: error },
        );
      }
      current = Math.max(1, Math.floor(current / 2));
    }
  }
}

interface StatusJson {
  by_master_key: Record<string, { keys: number; tenants: number; active_keys: number }>;
  checkpoints_by_master_key: Record<string, number>;
  registered_master_keys?: string[];
  tenants: number;
  secrets: number;
  versions: number;
  retired_keys: number;
  destroyed_keys: number;
}

/** Master-key rotation, key status and tenant-key rotation, bound to one manager core. */
export function keyOperations(core: Core, hooks: KeyOperationHooks = {}) {
  const { qs } = core;

  async function keyStatus(): Promise<KeyStatus> {
    const rows = await core.plain<{ status: StatusJson }>(
      'keyStatus',
      `SELECT ${qs}.tenant_secret_key_status() AS status`,
    );
    const raw = rows[0]?.status;
    if (!raw) throw new IntegrityError('key status returned nothing');
    const current = core.keyring.current.id;
    const byMasterKey: Record<string, MasterKeyUsage> = {};
    for (const [rawId, usage] of Object.entries(raw.by_master_key)) {
      // Ids come from table rows: a malformed one (written by hand) is never printed as is.
      const id = MASTER_KEY_ID_PATTERN.test(rawId) ? rawId : 'invalid';
      const seen = byMasterKey[id];
      byMasterKey[id] = {
        keys: Number(usage.keys) + (seen?.keys ?? 0),
        activeKeys: Number(usage.active_keys) + (seen?.activeKeys ?? 0),
        tenants: Number(usage.tenants) + (seen?.tenants ?? 0),
        inKeyring: core.keyring.has(id),
      };
    }
    const ids = Object.keys(byMasterKey);
    const checkpointsByMasterKey = Object.fromEntries(
      Object.entries(raw.checkpoints_by_master_key ?? {}).map(([id, n]) => [
        MASTER_KEY_ID_PATTERN.test(id) ? id : 'invalid',
        Number(n),
      ]),
    );
    return {
      currentMasterKeyId: current,
      byMasterKey,
      tenants: Number(raw.tenants),
      secrets: Number(raw.secrets),
      versions: Number(raw.versions),
      retiredKeys: Number(raw.retired_keys),
      destroyedKeys: Number(raw.destroyed_keys),
      checkpointsByMasterKey,
      unknownMasterKeyIds: ids.filter((id) => !core.keyring.has(id)),
      registeredMasterKeyIds: raw.registered_master_keys ?? [],
      readyToDropPrevious: [...ids, ...Object.keys(checkpointsByMasterKey)].every((id) => id === current),
    };
  }

  return {
    /**
     * Re-wraps every tenant data key that is not under the current master key, batch by batch, each
     * batch in its own transaction. Touches no secret (cost grows with tenants, not secrets), does not
     * block concurrent reads or writes, and is resumable: the data itself records progress, so
     * running it again after a crash, kill or abort continues where it stopped. Audits one
     * `tenant_key.rewrapped` per key (tenant chain) and one `master_key.rotated` (system chain).
     *
     * Deploy the new key as `TENANT_SECRETS_MASTER_KEY` and the old one in
     * `TENANT_SECRETS_PREVIOUS_MASTER_KEYS` first (docs/runbooks/rotate-secrets.md).
     * @throws {UnknownMasterKeyError} some data key is wrapped under a key not in the ring (names it);
     *   every other key was still re-wrapped.
     * @throws {OperationAbortedError} `signal` aborted or `onProgress` threw; resume by running again.
     * @throws {IntegrityError} a wrapped data key fails authentication (batch rolled back).
     * @throws {InvalidInputError} bad `batchSize`.
     * @throws {DatabaseUnavailableError} the database cannot be reached; resume by running again.
     */
    async rotateMasterKey(options: BatchOptions = {}): Promise<RotateMasterKeyResult> {
      const operation = 'rotateMasterKey';
      let size = batchSizeOf(options, 'rotateMasterKey');
      const ctx = JSON.stringify(core.sqlContext(options.context));
      const current = core.keyring.current.id;
      await hooks.registerMasterKey?.();
      const before = await keyStatus();
      const total = Object.entries(before.byMasterKey)
        .filter(([id]) => id !== current)
        .reduce((sum, [, usage]) => sum + usage.keys, 0);
      let after = '';
      let done = 0;
      let rewrapped = 0;
      let failed = 0;
      let batches = 0;
      const missing = new Set<string>();
      for (;;) {
        checkSignal(operation, options, done);
        const step = await withShrinkingBatch(operation, size, async (n) => {
          const pending = await core.plain<{ tenant_id: string }>(
            operation,
            `SELECT t AS tenant_id FROM ${qs}.tenant_secret_rewrap_pending($1, $2, $3) t`,
            [current, after, n],
          );
          if (pending.length === 0) return { tenants: [] as string[], rows: [] };
          const tenants = pending.map((row) => row.tenant_id);
          const bundles = Buffer.concat(tenants.map((tenant) => core.keyring.bundleBytes(tenant)));
          const rows = await core.query<{ status: string; from_master_key_id: string }>(
            operation,
            `SELECT status, from_master_key_id FROM ${qs}.tenant_secret_rewrap_keys($1::text[], $2, $3::text::jsonb)`,
            [tenants, bundles, ctx],
          );
          return { tenants, rows };
        });
        size = step.size;
        const { tenants, rows } = step.result;
        if (tenants.length === 0) break;
        for (const row of rows) {
          if (row.status === 'ok') rewrapped++;
          else {
            failed++;
            if (row.status === 'unknown_master_key') missing.add(row.from_master_key_id);
          }
        }
        done += rows.length;
        batches++;
        after = tenants[tenants.length - 1] ?? after;
        await report(operation, options, { done, total: Math.max(total, done), batches });
      }
      // Checkpoints signed under an old key would become unverifiable once it leaves the ring.
      const auditCheckpoints = (await hooks.resignAuditCheckpoints?.()) ?? {
        resigned: 0,
        alreadyCurrent: 0,
        invalid: 0,
      };
      const finish = await core.plain<{ details: { remaining_by_master_key: Record<string, number> } }>(
        operation,
        `SELECT ${qs}.tenant_secret_finish_master_rotation($1, $2, $3, $4, $5::text::jsonb) AS details`,
        [current, rewrapped, failed, batches, ctx],
      );
      const remaining = finish[0]?.details.remaining_by_master_key ?? {};
      if (missing.size > 0) throw new UnknownMasterKeyError([...missing].sort().join(', '));
      if (failed > 0) {
        throw new IntegrityError(`${failed} data key(s) failed authentication and were not re-wrapped`);
      }
      return {
        masterKeyId: current,
        rewrapped,
        failed,
        total,
        batches,
        remainingByMasterKey: Object.fromEntries(
          Object.entries(remaining).map(([id, keys]) => [id, Number(keys)]),
        ),
        auditCheckpoints,
        batchSize: size,
      };
    },

    /**
     * Counts of wrapped data keys per master key id, tenants and secrets, and whether anything still
     * depends on a master key other than the current one (`readyToDropPrevious`). Metadata only.
     * @throws {DatabaseUnavailableError} the database cannot be reached.
     */
    keyStatus,

    /**
     * Rotates a tenant's data key: a new data-key version becomes active (new writes use it at
     * once), every ciphertext of the tenant (current values, soft-deleted secrets and kept versions)
     * is re-encrypted to it batch by batch, then the retired data key, no longer referenced, is
     * destroyed. Audits `tenant_key.rotated`, `tenant_key.reencrypted` per batch and
     * `tenant_key.destroyed`. If an earlier rotation of this tenant was interrupted, this call
     * finishes it (and does not create another key): `resumed` is then true.
     * @throws {TenantNotFoundError} the tenant has no data key.
     * @throws {IntegrityError} a ciphertext fails authentication (its key name is in the message).
     * @throws {UnknownMasterKeyError} a data key is wrapped under a master key not in the ring.
     * @throws {OperationAbortedError} `signal` aborted or `onProgress` threw; run again to resume.
     * @throws {InvalidInputError} bad tenant id or `batchSize`.
     */
    async rotateTenantKey(tenantId: string, options: BatchOptions = {}): Promise<RotateTenantKeyResult> {
      const operation = 'rotateTenantKey';
      assertTenantId(tenantId);
      let size = batchSizeOf(options, 'rotateTenantKey');
      const ctx = JSON.stringify(core.sqlContext(options.context));
      const bundle = core.keyring.bundleBytes(tenantId);
      const started = await core.query<{
        status: string;
        key_version: number | null;
        previous_key_version: number | null;
      }>(
        operation,
        `SELECT status, key_version, previous_key_version FROM ${qs}.tenant_secret_rotate_key($1, $2, $3::text::jsonb)`,
        [tenantId, bundle, ctx],
      );
      const head = started[0];
      if (head?.status === 'not_found') throw new TenantNotFoundError(tenantId);
      if (head?.status === 'unauthorized') throw new UnauthorizedError(tenantId);
      if (head?.status === 'unknown_master_key') throw new UnknownMasterKeyError(undefined);
      if (head?.status === 'invalid_input') throw new InvalidInputError('invalid tenant id', 'tenantId');
      if (!head || head.key_version === null || head.previous_key_version === null) {
        throw new IntegrityError(
          `tenant-key rotation stopped: the active data key of tenant "${tenantId}" fails authentication`,
        );
      }
      // Writes that began before the switch may still commit under the old key: wait for them, so
      // that the re-encryption below sees their rows and the old key is destroyed only when unused.
      await waitForTransactionsInFlight(core, operation, { signal: options.signal });
      core.dataKeys.forget(tenantId);
      let done = 0;
      let batches = 0;
      let total = -1;
      for (;;) {
        checkSignal(operation, options, done);
        const step = await withShrinkingBatch(operation, size, (n) =>
          core.query<{
            status: string;
            secrets: number;
            versions: number;
            remaining: string;
            detail: string | null;
          }>(
            operation,
            `SELECT status, secrets, versions, remaining, detail FROM ${qs}.tenant_secret_reencrypt_batch($1, $2, $3, $4::text::jsonb)`,
            [tenantId, bundle, n, ctx],
          ),
        );
        size = step.size;
        const row = step.result[0];
        if (!row || row.status === 'not_found') throw new TenantNotFoundError(tenantId);
        if (row.status === 'unauthorized') throw new UnauthorizedError(tenantId);
        if (row.status === 'unknown_master_key') throw new UnknownMasterKeyError(row.detail ?? undefined);
        if (row.status !== 'ok') {
          throw new IntegrityError(
            `tenant-key rotation stopped: the ciphertext of tenant "${tenantId}", key "${row.detail ?? '?'}" fails authentication`,
          );
        }
        const stepCount = row.secrets + row.versions;
        const remaining = Number(row.remaining);
        if (total < 0) total = stepCount + remaining;
        done += stepCount;
        if (stepCount > 0) {
          batches++;
          await report(operation, options, { done, total: Math.max(total, done), batches });
        }
        if (remaining === 0 || stepCount === 0) break;
      }
      const destroyed = await core.query<{ status: string; destroyed: number[]; still_used: number[] }>(
        operation,
        `SELECT status, destroyed, still_used FROM ${qs}.tenant_secret_destroy_retired_keys($1, $2, $3::text::jsonb)`,
        [tenantId, bundle, ctx],
      );
      return {
        keyVersion: head.key_version,
        previousKeyVersion: head.previous_key_version,
        resumed: head.status === 'resumed',
        reencrypted: done,
        batches,
        destroyedKeyVersions: destroyed[0]?.destroyed ?? [],
        batchSize: size,
      };
    },
  };
}

export type KeyOperations = ReturnType<typeof keyOperations>;
