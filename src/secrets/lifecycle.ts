import type { AuditContext } from '../base/audit-context.js';
import { InvalidInputError, SecretNotFoundError } from '../base/errors.js';
import { assertKeyName, assertOptions, assertTenantId, assertVersion } from '../base/validation.js';
import { callChecked, type StatusRow } from '../core/call.js';
import type { Core } from '../core/core.js';
import { statusError } from '../core/status.js';
import { sqlStateOf } from '../db/driver-errors.js';
import { dataPath } from './data-path.js';
import { metadataOptions, type SecretMetadataInput } from './metadata.js';
import type { CallOptions, WriteResult } from './operations.js';

/** Most names one `getMany` call reads (and versions one `destroyVersions` call destroys). */
export const MAX_BATCH = 100;

export interface RollbackOptions extends CallOptions {
  /** Check-and-set: succeed only if the current version is this one. A mismatch throws `ConflictError`. */
  ifVersion?: number;
}

export interface UpdateMetadataOptions extends CallOptions {
  /** Check-and-set: succeed only if the current version is this one. A mismatch throws `ConflictError`. */
  ifVersion?: number;
}

export interface GetManyOptions extends CallOptions {
  /** Return expired secrets instead of throwing `SecretExpiredError`. */
  allowExpired?: boolean;
}

export interface PurgeOptions extends CallOptions {
  /** Purge only this tenant's secrets (default: every tenant). */
  tenantId?: string;
}

export interface RestoreResult {
  /** The current version of the restored secret (restoring does not create a version). */
  version: number;
}

export interface DestroyResult {
  /** Versions whose ciphertext this call removed (versions already destroyed by retention excluded). */
  versionsDestroyed: number;
}

export interface DestroyVersionsResult {
  /** The versions this call destroyed, ascending. Missing or already destroyed versions are not listed. */
  destroyed: number[];
}

/** The secret lifecycle operations, bound to one manager core. */
export function lifecycleOperations(core: Core) {
  const { qs } = core;
  const data = dataPath(core);
  const ctxJson = (context: AuditContext | undefined) => JSON.stringify(core.sqlContext(context));
  const bundle = (tenantId: string) => core.keyring.bundleBytes(tenantId);

  return {
    /**
     * Makes an old version current again by writing its value as a new version (HashiCorp Vault KV v2
     * semantics; origin `rollback`). The old value is decrypted and re-encrypted under the tenant's
     * active data key. The replaced version stays readable as `previous` for the grace period, and
     * the retention limit applies as for any write. Audited as `secret.rolled_back` with `from_version`.
     * @returns the new version.
     * @throws {InvalidInputError} bad tenant id, key name, version or `ifVersion`.
     * @throws {SecretNotFoundError} the secret does not exist or is deleted, or that version is missing or destroyed.
     * @throws {ConflictError} `ifVersion` did not match the current version.
     * @throws {IntegrityError} the old version's ciphertext or its data key fails authentication.
     * @throws {UnknownMasterKeyError} a data key is wrapped under a master key not in the ring.
     * @throws {DatabaseUnavailableError} the database cannot be reached.
     */
    async rollback(
      tenantId: string,
      keyName: string,
      version: number,
      options: RollbackOptions = {},
    ): Promise<WriteResult> {
      assertOptions(options, ['ifVersion', 'context'], 'rollback');
      assertTenantId(tenantId);
      assertKeyName(keyName);
      assertVersion(version);
      if (options.ifVersion !== undefined) assertVersion(options.ifVersion, 'ifVersion');
      const opts = {
        if_version: options.ifVersion,
        max_versions: core.settings.maxVersions,
        grace_seconds: core.settings.previousVersionGraceSeconds,
      };
      const row = await callChecked<StatusRow>(
        core,
        'rollback',
        `SELECT status, version, detail FROM ${qs}.tenant_secret_rollback($1, $2, $3, $4, $5::text::jsonb, $6::text::jsonb)`,
        [tenantId, keyName, version, bundle(tenantId), JSON.stringify(opts), ctxJson(options.context)],
        { about: { tenantId, keyName, expectedVersion: options.ifVersion }, required: ['version'] },
      );
      return { version: row.version as number };
    },

    /**
     * Undoes a soft delete while the recovery window lasts; the secret is readable again at the
     * version it had. Audited as `secret.restored`.
     * @throws {InvalidInputError} bad tenant id or key name.
     * @throws {SecretNotFoundError} the secret does not exist, is not deleted, or its window has passed.
     * @throws {DatabaseUnavailableError} the database cannot be reached.
     */
    async restore(tenantId: string, keyName: string, options: CallOptions = {}): Promise<RestoreResult> {
      assertOptions(options, ['context'], 'restore');
      assertTenantId(tenantId);
      assertKeyName(keyName);
      const row = await callChecked<StatusRow>(
        core,
        'restore',
        `SELECT status, version FROM ${qs}.tenant_secret_restore($1, $2, $3, $4::text::jsonb)`,
        [tenantId, keyName, bundle(tenantId), ctxJson(options.context)],
        {
          about: { tenantId, keyName },
          required: ['version'],
          refine: (refused) =>
            refused.status === 'not_found'
              ? new SecretNotFoundError(tenantId, keyName, 'no deleted secret to restore')
              : undefined,
        },
      );
      return { version: row.version as number };
    },

    /**
     * Immediately and irreversibly removes a secret, live or soft-deleted: its row and every version
     * (all ciphertext) are deleted in one transaction. Audited as `secret.destroyed` with the number
     * of versions destroyed. (PostgreSQL reclaims the deleted tuples at the next VACUUM.)
     * @throws {InvalidInputError} bad tenant id or key name.
     * @throws {SecretNotFoundError} no such secret.
     * @throws {DatabaseUnavailableError} the database cannot be reached.
     */
    async destroy(tenantId: string, keyName: string, options: CallOptions = {}): Promise<DestroyResult> {
      assertOptions(options, ['context'], 'destroy');
      assertTenantId(tenantId);
      assertKeyName(keyName);
      const row = await callChecked<StatusRow & { versions_destroyed: number | null }>(
        core,
        'destroy',
        `SELECT status, versions_destroyed FROM ${qs}.tenant_secret_destroy($1, $2, $3, $4::text::jsonb)`,
        [tenantId, keyName, bundle(tenantId), ctxJson(options.context)],
        { about: { tenantId, keyName }, required: ['versions_destroyed'] },
      );
      return { versionsDestroyed: row.versions_destroyed as number };
    },

    /**
     * Destroys the ciphertext of specific non-current versions (Vault's `destroy`); their metadata
     * stays in `versions()` with state `destroyed`, and reading them returns `null`. Missing or already
     * destroyed versions are ignored. Audited as `secret.versions_destroyed`.
     * @param versions 1 to 100 version numbers, none of them the current version.
     * @throws {InvalidInputError} bad tenant id, key name or versions, or the current version is listed.
     * @throws {SecretNotFoundError} the secret does not exist or is deleted.
     * @throws {DatabaseUnavailableError} the database cannot be reached.
     */
    async destroyVersions(
      tenantId: string,
      keyName: string,
      versions: readonly number[],
      options: CallOptions = {},
    ): Promise<DestroyVersionsResult> {
      assertOptions(options, ['context'], 'destroyVersions');
      assertTenantId(tenantId);
      assertKeyName(keyName);
      if (!Array.isArray(versions) || versions.length === 0 || versions.length > MAX_BATCH) {
        throw new InvalidInputError(`versions must be an array of 1 to ${MAX_BATCH} versions`, 'versions');
      }
      for (const v of versions) assertVersion(v, 'versions');
      const row = await callChecked<StatusRow & { destroyed: number[] | null }>(
        core,
        'destroyVersions',
        `SELECT status, destroyed, detail FROM ${qs}.tenant_secret_destroy_versions($1, $2, $3::integer[], $4, $5::text::jsonb)`,
        [tenantId, keyName, [...new Set(versions)], bundle(tenantId), ctxJson(options.context)],
        {
          about: { tenantId, keyName },
          required: ['destroyed'],
          refine: (refused) =>
            refused.status === 'invalid_input' && refused.detail === 'current_version'
              ? new InvalidInputError(
                  'versions must not include the current version (destroy the secret, or write a new version first)',
                  'versions',
                )
              : undefined,
        },
      );
      return { destroyed: row.destroyed as number[] };
    },

    /**
     * Destroys every soft-deleted secret whose recovery window has passed, in one call (one
     * transaction). Each purged secret gets a `secret.purged` audit record in its tenant's chain.
     * Safe to run from several processes at once: they split the work.
     * @returns how many secrets were purged.
     * @throws {InvalidInputError} bad `tenantId`.
     * @throws {DatabaseUnavailableError} the database cannot be reached.
     */
    async purgeDeleted(options: PurgeOptions = {}): Promise<number> {
      assertOptions(options, ['tenantId', 'context'], 'purgeDeleted');
      if (options.tenantId !== undefined) assertTenantId(options.tenantId);
      const purge = async (tenantId: string | null) => {
        const row = await callChecked<StatusRow & { purged: number | null }>(
          core,
          'purgeDeleted',
          `SELECT status, purged FROM ${qs}.tenant_secret_purge_deleted($1, $2::text::jsonb)`,
          [tenantId, ctxJson(options.context)],
          { about: { tenantId: tenantId ?? '', keyName: '' }, required: ['purged'] },
        );
        return row.purged as number;
      };
      if (options.tenantId !== undefined) return purge(options.tenantId);
      try {
        return await purge(null);
      } catch (error) {
        // A distributed (Citus) installation cannot purge every tenant in one statement (0A000):
        // list the tenants with something to purge, and purge each on its worker.
        if (sqlStateOf(error) !== '0A000') throw error;
      }
      let purged = 0;
      let after: string | null = null;
      for (;;) {
        const page: { tenant_id: string }[] = await core.query<{ tenant_id: string }>(
          'purgeDeleted',
          `SELECT tenant_id FROM ${qs}.tenant_secret_purgeable_tenants($1, 1000)`,
          [after],
        );
        for (const { tenant_id } of page) purged += await purge(tenant_id);
        if (page.length < 1000) return purged;
        after = page[page.length - 1]?.tenant_id ?? null;
      }
    },

    /**
     * Reads up to 100 secrets of one tenant in one round trip; every secret read is audited on its
     * own (`secret.read`), exactly as `get` would be. Duplicate names are read once.
     * @returns an object with one property per requested name: the value, or `null` when that secret
     *   does not exist or is deleted.
     * @throws {InvalidInputError} bad tenant id or key name, or more than 100 names.
     * @throws {SecretExpiredError} one of the secrets has expired (unless `allowExpired`); the first one is named.
     * @throws {IntegrityError} one of the ciphertexts or data keys fails authentication: the whole batch
     *   fails, so that a tampered secret never looks missing. The other reads are still audited.
     * @throws {UnknownMasterKeyError} a data key is wrapped under a master key not in the ring.
     * @throws {DatabaseUnavailableError} the database cannot be reached.
     */
    async getMany(
      tenantId: string,
      keyNames: readonly string[],
      options: GetManyOptions = {},
    ): Promise<Record<string, string | null>> {
      assertOptions(options, ['allowExpired', 'context'], 'getMany');
      assertTenantId(tenantId);
      if (!Array.isArray(keyNames) || keyNames.length > MAX_BATCH) {
        throw new InvalidInputError(`keyNames must be an array of at most ${MAX_BATCH} names`, 'keyNames');
      }
      for (const name of keyNames) assertKeyName(name);
      const names = [...new Set(keyNames)];
      if (names.length === 0) return {};
      if (options.allowExpired !== undefined && typeof options.allowExpired !== 'boolean') {
        throw new InvalidInputError('allowExpired must be a boolean', 'allowExpired');
      }
      const fetched = await data.fetchMany(tenantId, names, options);
      const entries: [string, string | null][] = [];
      if (fetched !== 'enroll') {
        for (const name of names) {
          const found = fetched.get(name);
          if (found instanceof Error) throw found;
          if (found === undefined) throw statusError('integrity', { tenantId, keyName: name });
          entries.push([name, found === null ? null : found.value.toString('utf8')]);
        }
        // fromEntries defines own properties, so a key named `__proto__` cannot touch the prototype.
        return Object.fromEntries(entries);
      }
      // A key of an earlier release: read once with the key bundle, which fills its access digest.
      const rows = await core.query<StatusRow & { key_name: string | null; value: Buffer | null }>(
        'getMany',
        `SELECT key_name, status, value, version, detail FROM ${qs}.tenant_secret_read_many($1, $2::text[], $3, $4::text::jsonb, $5::text::jsonb)`,
        [
          tenantId,
          names,
          bundle(tenantId),
          JSON.stringify({ allow_expired: options.allowExpired }),
          ctxJson(options.context),
        ],
      );
      const refused = rows.find((row) => row.key_name === null);
      if (refused) throw statusError(refused.status, { tenantId, keyName: '', detail: refused.detail });
      for (const row of rows) {
        const keyName = row.key_name ?? '';
        if (row.status === 'ok' && row.value !== null) entries.push([keyName, row.value.toString('utf8')]);
        else if (row.status === 'not_found') entries.push([keyName, null]);
        else throw statusError(row.status, { tenantId, keyName, version: row.version, detail: row.detail });
      }
      if (entries.length !== names.length) {
        throw statusError('integrity', { tenantId, keyName: names.join(',') });
      }
      // fromEntries defines own properties, so a key named `__proto__` cannot touch the prototype.
      return Object.fromEntries(entries);
    },

    /**
     * Changes a secret's metadata (description, labels, `expiresAt`, `rotateAfter`) without creating a
     * version. Only the fields given change; `null` clears a field; `labels` replaces all labels.
     * Audited as `secret.metadata_updated` with the names of the changed fields (not their values).
     * @returns the (unchanged) current version.
     * @throws {InvalidInputError} bad tenant id, key name or metadata, or no field given.
     * @throws {SecretNotFoundError} the secret does not exist or is deleted.
     * @throws {ConflictError} `ifVersion` did not match the current version.
     * @throws {DatabaseUnavailableError} the database cannot be reached.
     */
    async updateMetadata(
      tenantId: string,
      keyName: string,
      metadata: SecretMetadataInput,
      options: UpdateMetadataOptions = {},
    ): Promise<WriteResult> {
      assertOptions(options, ['ifVersion', 'context'], 'updateMetadata');
      assertTenantId(tenantId);
      assertKeyName(keyName);
      if (typeof metadata !== 'object' || metadata === null || Array.isArray(metadata)) {
        throw new InvalidInputError('metadata must be an object', 'metadata');
      }
      assertOptions(
        metadata,
        ['description', 'labels', 'expiresAt', 'rotateAfter'],
        'updateMetadata (metadata)',
      );
      const md = metadataOptions(metadata);
      if (Object.keys(md).length === 0) {
        throw new InvalidInputError(
          'metadata must set at least one of description, labels, expiresAt, rotateAfter',
          'metadata',
        );
      }
      if (options.ifVersion !== undefined) assertVersion(options.ifVersion, 'ifVersion');
      const row = await callChecked<StatusRow>(
        core,
        'updateMetadata',
        `SELECT status, version, detail FROM ${qs}.tenant_secret_update_metadata($1, $2, $3, $4, $5::text::jsonb, $6::text::jsonb)`,
        [
          tenantId,
          keyName,
          JSON.stringify(md),
          bundle(tenantId),
          JSON.stringify({ if_version: options.ifVersion }),
          ctxJson(options.context),
        ],
        { about: { tenantId, keyName, expectedVersion: options.ifVersion }, required: ['version'] },
      );
      return { version: row.version as number };
    },
  };
}

export type LifecycleOperations = ReturnType<typeof lifecycleOperations>;
