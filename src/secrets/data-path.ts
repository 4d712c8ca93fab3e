import type { AuditContext } from '../base/audit-context.js';
import { ConflictError, IntegrityError, UnknownMasterKeyError } from '../base/errors.js';
import type { Core } from '../core/core.js';
import type { FetchRow, PutRow } from '../core/rows.js';
import { statusError } from '../core/status.js';
import type { UnwrapFailure, WrappedDataKey } from '../crypto/data-keys.js';
import { openSecret } from '../crypto/sealed.js';

/**
 * The library's data path: reads and writes that hand the database no key-encryption key.
 *
 * - A read presents the tenant's access token (credentials from the keyring); the database checks
 *   its digest, appends the audit record in the same statement, and releases the ciphertext and the
 *   wrapped data key, which are opened here (src/crypto/sealed.ts, byte-compatible with pgcrypto).
 *   An integrity failure found here is still audited (tenant_secret_report).
 * - A write sends the data key of the tenant's active key version (unwrapped here, cached in
 *   DataKeys); pgcrypto seals the value. Without a cached key, or after a key rotation, the database
 *   answers 'stale_key' with the active key, wrapped, and the write is sent again.
 * - Keys of an earlier release have no access digest yet ('enroll'), and a tenant without data key
 *   cannot be written this way ('no_key'): the call then goes once through the key-bundle functions
 *   (the SQL interface), which fill the digests or create the key. The next call takes this path.
 */

export interface FetchedValue {
  value: Buffer;
  version: number;
  expiresAt: Date | null;
}

/** `version` as the fetch functions take it: NULL current, 0 previous, n a version number. */
export type FetchVersion = number | 'previous' | undefined;

const toSqlVersion = (version: FetchVersion) =>
  version === undefined ? null : version === 'previous' ? 0 : version;

/** What a failed unwrap or open becomes for the caller (after it was recorded). */
function unwrapError(failure: UnwrapFailure, masterKeyId: string, tenantId: string, keyName: string): Error {
  return failure === 'unknown_master_key'
    ? new UnknownMasterKeyError(masterKeyId)
    : new IntegrityError(
        `integrity check failed for tenant "${tenantId}", key "${keyName}": the data key that wraps it does not authenticate under this master key`,
      );
}

export function dataPath(core: Core) {
  const { qs } = core;
  const ctxJson = (context: AuditContext | undefined) => JSON.stringify(core.sqlContext(context));

  /** Records a failure found here; never hides the failure itself if recording fails. */
  async function report(
    tenantId: string,
    keyName: string,
    version: number,
    what: 'value' | 'data_key' | 'unknown_master_key',
    context: AuditContext | undefined,
  ): Promise<void> {
    await core
      .query('get', `SELECT ${qs}.tenant_secret_report($1, $2, $3, $4, $5, $6::text::jsonb)`, [
        tenantId,
        keyName,
        core.keyring.credentialsBytes(tenantId),
        version,
        what,
        ctxJson(context),
      ])
      .catch(() => undefined);
  }

  /** Opens one released value: its data key (cached, or unwrapped with the ring), then the ciphertext. */
  async function openReleased(
    tenantId: string,
    keyName: string,
    row: { version: number; key: WrappedDataKey; sealed: Buffer; activeKeyVersion: number | null },
    context: AuditContext | undefined,
  ): Promise<Buffer> {
    const dek =
      row.activeKeyVersion === row.key.keyVersion
        ? core.dataKeys.activate(tenantId, row.key)
        : core.dataKeys.open(tenantId, row.key);
    if (!Buffer.isBuffer(dek)) {
      await report(
        tenantId,
        keyName,
        row.version,
        dek === 'integrity' ? 'data_key' : 'unknown_master_key',
        context,
      );
      throw unwrapError(dek, row.key.masterKeyId, tenantId, keyName);
    }
    const plain = openSecret(row.sealed, dek, tenantId, keyName, row.version, row.key.keyVersion);
    if (!plain) {
      await report(tenantId, keyName, row.version, 'value', context);
      throw new IntegrityError(
        `integrity check failed for tenant "${tenantId}", key "${keyName}": the stored ciphertext was modified, moved, or written by another installation`,
      );
    }
    return plain;
  }

  /**
   * One value: the current version, a version number, or 'previous'. null when there is none;
   * 'enroll' when the tenant's key predates access tokens (the caller reads with its bundle once).
   */
  async function fetch(
    tenantId: string,
    keyName: string,
    options: { version?: FetchVersion; allowExpired?: boolean; context?: AuditContext | undefined },
  ): Promise<FetchedValue | null | 'enroll'> {
    const credentials = core.keyring.credentialsBytes(tenantId);
    const context = ctxJson(options.context);
    const allowExpired = options.allowExpired === true;
    const single = async () =>
      (
        await core.query<FetchRow>(
          'get',
          `SELECT * FROM ${qs}.tenant_secret_fetch($1, $2, $3, $4::integer, $5::boolean, $6::text::jsonb)`,
          [tenantId, keyName, credentials, toSqlVersion(options.version), allowExpired, context],
        )
      )[0];
    // Reads of current versions on the manager's pool may go together with concurrent ones
    // (db/call-batches.ts); in a caller's transaction each read is its own statement.
    const row =
      options.version === undefined && core.reads !== undefined && !core.executor.inCallerTransaction
        ? await core.reads.run({ tenantId, keyName, credentials, allowExpired, context }, single)
        : await single();
    if (row?.status === 'enroll') return 'enroll';
    if (row?.status === 'not_found') return null;
    if (
      row?.status === 'ok' &&
      row.version !== null &&
      row.key_version !== null &&
      row.master_key_id !== null &&
      row.wrapped_key !== null &&
      row.sealed !== null
    ) {
      const value = await openReleased(
        tenantId,
        keyName,
        {
          version: row.version,
          key: { keyVersion: row.key_version, masterKeyId: row.master_key_id, wrapped: row.wrapped_key },
          sealed: row.sealed,
          activeKeyVersion: row.active_key_version,
        },
        options.context,
      );
      return { value, version: row.version, expiresAt: row.expires_at };
    }
    throw statusError(row?.status ?? 'integrity', {
      tenantId,
      keyName,
      version: row?.version,
      detail: row?.detail,
    });
  }

  /**
   * Up to 100 current values of one tenant, in one call; per name a value, null (not found) or an
   * error (expired, integrity). 'enroll' as for fetch.
   */
  async function fetchMany(
    tenantId: string,
    names: readonly string[],
    options: { allowExpired?: boolean; context?: AuditContext | undefined },
  ): Promise<Map<string, FetchedValue | null | Error> | 'enroll'> {
    const rows = await core.query<FetchRow & { key_name: string | null }>(
      'getMany',
      `SELECT * FROM ${qs}.tenant_secret_fetch_many($1, $2::text[], $3, $4::boolean, $5::text::jsonb)`,
      [
        tenantId,
        names,
        core.keyring.credentialsBytes(tenantId),
        options.allowExpired === true,
        ctxJson(options.context),
      ],
    );
    const refused = rows.find((row) => row.key_name === null);
    if (refused?.status === 'enroll') return 'enroll';
    if (refused) throw statusError(refused.status, { tenantId, keyName: '', detail: refused.detail });
    const out = new Map<string, FetchedValue | null | Error>();
    // The rows' data keys, each resolved once per call (most rows share the active one): the
    // usual row is then opened without touching the shared key cache or awaiting anything.
    const keys = new Map<number, { key: WrappedDataKey; dek: Buffer | UnwrapFailure }>();
    for (const row of rows) {
      const name = row.key_name as string;
      if (row.status === 'not_found') {
        out.set(name, null);
      } else if (
        row.status === 'ok' &&
        row.version !== null &&
        row.key_version !== null &&
        row.master_key_id !== null &&
        row.wrapped_key !== null &&
        row.sealed !== null
      ) {
        const key = { keyVersion: row.key_version, masterKeyId: row.master_key_id, wrapped: row.wrapped_key };
        let known = keys.get(key.keyVersion);
        if (!known || known.key.masterKeyId !== key.masterKeyId || !known.key.wrapped.equals(key.wrapped)) {
          const dek =
            row.active_key_version === key.keyVersion
              ? core.dataKeys.activate(tenantId, key)
              : core.dataKeys.open(tenantId, key);
          known = { key, dek };
          keys.set(key.keyVersion, known);
        }
        const plain = Buffer.isBuffer(known.dek)
          ? openSecret(row.sealed, known.dek, tenantId, name, row.version, key.keyVersion)
          : undefined;
        if (plain) {
          out.set(name, { value: plain, version: row.version, expiresAt: row.expires_at });
        } else {
          // Not opened: recorded, and answered as a single read would answer it.
          out.set(
            name,
            await openReleased(
              tenantId,
              name,
              { version: row.version, key, sealed: row.sealed, activeKeyVersion: row.active_key_version },
              options.context,
            ).then(
              (value) => ({ value, version: row.version as number, expiresAt: row.expires_at }),
              (error: unknown) => error as Error,
            ),
          );
        }
      } else {
        out.set(
          name,
          statusError(row.status, { tenantId, keyName: name, version: row.version, detail: row.detail }),
        );
      }
    }
    return out;
  }

  /**
   * A write with the tenant's active data key. Returns the new version, or 'bundle' when the tenant's
   * key predates access tokens or the tenant has none yet (the caller writes with its bundle once).
   */
  async function put(
    mode: 'set' | 'rotate',
    tenantId: string,
    keyName: string,
    value: Buffer,
    options: {
      ifVersion?: number | undefined;
      maxVersions: number;
      graceSeconds: number;
      metadata: Record<string, unknown> | undefined;
      expectedVersion?: number | undefined;
      context?: AuditContext | undefined;
    },
  ): Promise<{ version: number } | 'bundle'> {
    let key = core.dataKeys.active(tenantId);
    // A first try without a key fetches the active one ('stale_key'); a rotation by another process
    // answers the same way once: at most two more round trips.
    const credentials = core.keyring.credentialsBytes(tenantId);
    const context = ctxJson(options.context);
    for (let attempt = 0; attempt < 3; attempt++) {
      const sent = key;
      const single = async () =>
        (
          await core.query<PutRow>(
            mode,
            `SELECT * FROM ${qs}.tenant_secret_put($1, $2, $3, $4, $5::integer, $6, $7, $8::integer, $9::integer, $10::integer, $11::text::jsonb, $12::text::jsonb)`,
            [
              tenantId,
              keyName,
              value,
              credentials,
              sent?.keyVersion ?? null,
              sent?.dek ?? null,
              mode,
              options.ifVersion ?? null,
              options.maxVersions,
              options.graceSeconds,
              options.metadata === undefined ? null : JSON.stringify(options.metadata),
              context,
            ],
          )
        )[0];
      // A plain write with the tenant's data key on the manager's pool may go together with
      // concurrent ones (db/call-batches.ts); anything else is a statement of its own.
      const row =
        sent !== undefined &&
        options.metadata === undefined &&
        core.writes !== undefined &&
        !core.executor.inCallerTransaction
          ? await core.writes.run(
              {
                tenantId,
                keyName,
                value,
                keyVersion: sent.keyVersion,
                dek: sent.dek,
                mode,
                ifVersion: options.ifVersion ?? null,
                maxVersions: options.maxVersions,
                graceSeconds: options.graceSeconds,
                context,
              },
              single,
            )
          : await single();
      if (row?.status === 'ok' && row.version !== null) return { version: row.version };
      if (row?.status === 'enroll' || row?.status === 'no_key') return 'bundle';
      if (
        row?.status === 'stale_key' &&
        row.key_version !== null &&
        row.master_key_id !== null &&
        row.wrapped_key !== null
      ) {
        const dek = core.dataKeys.activate(tenantId, {
          keyVersion: row.key_version,
          masterKeyId: row.master_key_id,
          wrapped: row.wrapped_key,
        });
        if (!Buffer.isBuffer(dek)) throw unwrapError(dek, row.master_key_id, tenantId, keyName);
        key = { keyVersion: row.key_version, dek };
        continue;
      }
      throw statusError(row?.status ?? 'integrity', {
        tenantId,
        keyName,
        expectedVersion: options.expectedVersion,
        version: row?.version,
        detail: row?.detail,
      });
    }
    // The active key changed under every attempt (key rotations in a loop): a conflict, retryable.
    throw new ConflictError(tenantId, keyName, options.expectedVersion, undefined);
  }

  return { fetch, fetchMany, put };
}
