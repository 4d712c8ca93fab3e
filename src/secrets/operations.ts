import type { AuditContext } from '../base/audit-context.js';
import { InvalidInputError, SecretNotFoundError } from '../base/errors.js';
import {
  assertKeyName,
  assertOptions,
  assertTenantId,
  assertVersion,
  encodeValue,
} from '../base/validation.js';
import { callChecked, type StatusRow } from '../core/call.js';
import type { Core } from '../core/core.js';
import { type SqlStatus, statusError } from '../core/status.js';
import { dataPath } from './data-path.js';
import {
  metadataOptions,
  type SecretMetadata,
  type SecretMetadataInput,
  type SecretMetadataRow,
  toSecretMetadata,
} from './metadata.js';

export interface CallOptions {
  /** Audit context for this call only (merged over the manager's). */
  context?: AuditContext;
}

export interface SetOptions extends CallOptions, SecretMetadataInput {
  /**
   * Check-and-set: succeed only if the current version is this one; `0` means "create only".
   * A mismatch throws `ConflictError` and changes nothing.
   */
  ifVersion?: number;
}

export interface RotateOptions extends CallOptions, SecretMetadataInput {
  /** Check-and-set on rotation: the version being replaced. */
  expectedVersion?: number;
  /** How long the replaced version stays readable as `previous` (default: the manager's setting). */
  gracePeriodSeconds?: number;
}

export interface GetOptions extends CallOptions {
  /** A version number, or `'previous'` for the version replaced by the last write (during its grace period). */
  version?: number | 'previous';
  /** Return an expired secret instead of throwing `SecretExpiredError`. */
  allowExpired?: boolean;
  /** Read from the database even when the in-process cache (option `cache`) holds the value. */
  fresh?: boolean;
}

export interface DeleteOptions extends CallOptions {
  /** Days the secret can be restored before it is purged (default: the manager's setting, 30). */
  recoveryWindowDays?: number;
}

export interface ListOptions extends CallOptions {
  /** Only names starting with this prefix. */
  prefix?: string;
  /** Only secrets carrying all these labels. */
  labels?: Record<string, string>;
  /** Only secrets due for rotation (`rotateAfter` passed and not rotated since). */
  due?: boolean;
  /** Only secrets whose `expiresAt` has passed. */
  expired?: boolean;
  /** Include soft-deleted secrets. */
  includeDeleted?: boolean;
  /** Continue after this key name (the last name of the previous page). */
  after?: string;
  /** Page size, 1-1000 (default 100). */
  limit?: number;
}

export interface WriteResult {
  /** The version this write created. */
  version: number;
}

export interface DeleteResult {
  /** The version that was current when deleted. */
  version: number;
  /** When the secret will be purged unless restored. */
  purgeAfter: Date;
}

export interface VersionInfo {
  version: number;
  state: 'enabled' | 'destroyed';
  origin: 'set' | 'rotate' | 'rollback' | 'import';
  createdAt: Date;
  createdBy: string;
  destroyedAt: Date | null;
  isCurrent: boolean;
  isPrevious: boolean;
}

interface WriteRow {
  status: SqlStatus;
  version: number | null;
  detail: string | null;
}
interface ReadRow extends WriteRow {
  value: Buffer | null;
  expires_at: Date | null;
}

/** A value read, with the version it came from and when it expires. */
export interface ReadResult {
  value: string;
  version: number;
  /** When the secret stops being readable without `allowExpired` (null: never). */
  expiresAt: Date | null;
}

const METADATA_KEYS = ['description', 'labels', 'expiresAt', 'rotateAfter'];
const GET_OPTIONS = ['version', 'allowExpired', 'fresh', 'context'];
const SET_OPTIONS = ['ifVersion', 'context', ...METADATA_KEYS];
const ROTATE_OPTIONS = ['expectedVersion', 'gracePeriodSeconds', 'context', ...METADATA_KEYS];
const DELETE_OPTIONS = ['recoveryWindowDays', 'context'];
const LIST_OPTIONS = ['prefix', 'labels', 'due', 'expired', 'includeDeleted', 'after', 'limit', 'context'];
const CALL_OPTIONS = ['context'];

/** The secret operations (write, read, rotate, delete, list, versions), bound to one manager core. */
export function secretOperations(core: Core) {
  const { qs } = core;
  const data = dataPath(core);

  async function write(
    mode: 'set' | 'rotate',
    tenantId: string,
    keyName: string,
    value: string,
    options: Record<string, unknown>,
    expectedVersion: number | undefined,
    context: AuditContext | undefined,
  ): Promise<WriteResult> {
    assertTenantId(tenantId);
    assertKeyName(keyName);
    const bytes = encodeValue(value);
    const { max_versions, grace_seconds, if_version, ...metadata } = options;
    const written = await data.put(mode, tenantId, keyName, bytes, {
      ifVersion: if_version as number | undefined,
      maxVersions: max_versions as number,
      graceSeconds: grace_seconds as number,
      metadata: Object.keys(metadata).length > 0 ? metadata : undefined,
      expectedVersion,
      context,
    });
    if (written !== 'bundle') return written;
    // The tenant has no data key yet, or one from an earlier release: write once with the key
    // bundle, which creates it (or fills its access digest and data-key check).
    const ctx = core.sqlContext(context);
    const row = await callChecked<WriteRow>(
      core,
      mode,
      `SELECT status, version, detail FROM ${qs}.tenant_secret_write($1, $2, $3, $4, $5, $6, $7::text::jsonb)`,
      [
        tenantId,
        keyName,
        bytes,
        core.keyring.bundleBytes(tenantId),
        mode,
        JSON.stringify(options),
        JSON.stringify(ctx),
      ],
      { about: { tenantId, keyName, expectedVersion }, required: ['version'] },
    );
    return { version: row.version as number };
  }

  const settingsOptions = (grace?: number) => {
    if (grace !== undefined && (!Number.isInteger(grace) || grace < 0 || grace > 31_536_000)) {
      throw new InvalidInputError(
        'gracePeriodSeconds must be an integer from 0 to 31536000',
        'gracePeriodSeconds',
      );
    }
    return {
      max_versions: core.settings.maxVersions,
      grace_seconds: grace ?? core.settings.previousVersionGraceSeconds,
    };
  };

  /** Like `get`, also returning which version was read. */
  async function getWithVersion(
    tenantId: string,
    keyName: string,
    options: GetOptions = {},
  ): Promise<ReadResult | null> {
    assertTenantId(tenantId);
    assertKeyName(keyName);
    assertOptions(options, GET_OPTIONS, 'get');
    if (options.version !== undefined && options.version !== 'previous') assertVersion(options.version);
    if (options.allowExpired !== undefined && typeof options.allowExpired !== 'boolean') {
      throw new InvalidInputError('allowExpired must be a boolean', 'allowExpired');
    }
    const fetched = await data.fetch(tenantId, keyName, options);
    if (fetched === null) return null;
    if (fetched !== 'enroll') {
      return {
        value: fetched.value.toString('utf8'),
        version: fetched.version,
        expiresAt: fetched.expiresAt,
      };
    }
    // A key of an earlier release: read once with the key bundle, which fills its access digest.
    const ctx = core.sqlContext(options.context);
    const opts = {
      version: options.version === undefined ? undefined : String(options.version),
      allow_expired: options.allowExpired,
    };
    const rows = await core.query<ReadRow>(
      'get',
      `SELECT status, value, version, detail, expires_at FROM ${qs}.tenant_secret_read($1, $2, $3, $4::text::jsonb, $5::text::jsonb)`,
      [tenantId, keyName, core.keyring.bundleBytes(tenantId), JSON.stringify(opts), JSON.stringify(ctx)],
    );
    const row = rows[0];
    if (row?.status === 'ok' && row.value !== null && row.version !== null) {
      return { value: row.value.toString('utf8'), version: row.version, expiresAt: row.expires_at };
    }
    if (row?.status === 'not_found') return null;
    throw statusError(row?.status ?? 'integrity', {
      tenantId,
      keyName,
      version: row?.version,
      detail: row?.detail,
    });
  }

  return {
    /**
     * Creates the secret, or stores `value` as its new current version.
     * @throws {InvalidInputError} bad tenant id, key name, value (empty, > 64 KiB, lone surrogates) or metadata.
     * @throws {ConflictError} `ifVersion` did not match.
     * @throws {UnauthorizedError} the configured master key does not authorise this tenant.
     * @throws {UnknownMasterKeyError} the tenant's data key is wrapped under a key not in the ring.
     * @throws {IntegrityError} the tenant's wrapped data key fails authentication.
     * @throws {DatabaseUnavailableError} the database cannot be reached.
     */
    async set(
      tenantId: string,
      keyName: string,
      value: string,
      options: SetOptions = {},
    ): Promise<WriteResult> {
      assertOptions(options, SET_OPTIONS, 'set');
      if (options.ifVersion !== undefined) assertVersion(options.ifVersion, 'ifVersion', true);
      return write(
        'set',
        tenantId,
        keyName,
        value,
        { ...settingsOptions(), ...metadataOptions(options), if_version: options.ifVersion },
        options.ifVersion,
        options.context,
      );
    },

    /**
     * Reads a secret: the current version, or `options.version`.
     * @returns the value, or `null` when the secret (or that version) does not exist, was deleted
     *   or destroyed. Every other failure throws: a broken database never looks like a missing secret.
     * @throws {SecretExpiredError} `expiresAt` has passed (pass `allowExpired` to read anyway).
     * @throws {IntegrityError} the ciphertext or the data key was tampered with or moved.
     * @throws {UnknownMasterKeyError} the data key is wrapped under a master key not in the ring.
     * @throws {UnauthorizedError} the configured master key does not authorise this tenant.
     * @throws {DatabaseUnavailableError} the database cannot be reached.
     */
    async get(tenantId: string, keyName: string, options: GetOptions = {}): Promise<string | null> {
      const found = await getWithVersion(tenantId, keyName, options);
      return found === null ? null : found.value;
    },

    getWithVersion,

    /**
     * Replaces an existing secret's value with a new version, in one transaction with its
     * `secret.rotated` audit record. The replaced version stays readable as `previous` for the grace period.
     * @throws {SecretNotFoundError} the secret does not exist (or is deleted).
     * @throws {ConflictError} `expectedVersion` did not match.
     */
    async rotate(
      tenantId: string,
      keyName: string,
      newValue: string,
      options: RotateOptions = {},
    ): Promise<WriteResult> {
      assertOptions(options, ROTATE_OPTIONS, 'rotate');
      if (options.expectedVersion !== undefined) assertVersion(options.expectedVersion, 'expectedVersion');
      return write(
        'rotate',
        tenantId,
        keyName,
        newValue,
        {
          ...settingsOptions(options.gracePeriodSeconds),
          ...metadataOptions(options),
          if_version: options.expectedVersion,
        },
        options.expectedVersion,
        options.context,
      );
    },

    /**
     * Soft-deletes a secret: it reads as not found, and can be restored within the recovery window.
     * @throws {SecretNotFoundError} no such (undeleted) secret.
     */
    async delete(tenantId: string, keyName: string, options: DeleteOptions = {}): Promise<DeleteResult> {
      assertOptions(options, DELETE_OPTIONS, 'delete');
      assertTenantId(tenantId);
      assertKeyName(keyName);
      const days = options.recoveryWindowDays ?? core.settings.recoveryWindowDays;
      if (!Number.isInteger(days) || days < 0 || days > 3650) {
        throw new InvalidInputError(
          'recoveryWindowDays must be an integer from 0 to 3650',
          'recoveryWindowDays',
        );
      }
      const row = await callChecked<StatusRow & { purge_after: Date | null }>(
        core,
        'delete',
        `SELECT status, version, purge_after FROM ${qs}.tenant_secret_delete($1, $2, $3, $4::text::jsonb, $5::text::jsonb)`,
        [
          tenantId,
          keyName,
          core.keyring.bundleBytes(tenantId),
          JSON.stringify({ recovery_days: days }),
          JSON.stringify(core.sqlContext(options.context)),
        ],
        { about: { tenantId, keyName }, required: ['version', 'purge_after'] },
      );
      return { version: row.version as number, purgeAfter: row.purge_after as Date };
    },

    /** Names and metadata of a tenant's secrets, ordered by name; never values. */
    async list(tenantId: string, options: ListOptions = {}): Promise<SecretMetadata[]> {
      assertOptions(options, LIST_OPTIONS, 'list');
      assertTenantId(tenantId);
      if (
        options.limit !== undefined &&
        (!Number.isInteger(options.limit) || options.limit < 1 || options.limit > 1000)
      ) {
        throw new InvalidInputError('limit must be an integer from 1 to 1000', 'limit');
      }
      if (
        options.prefix !== undefined &&
        (typeof options.prefix !== 'string' ||
          options.prefix.length > 256 ||
          // What jsonb cannot hold would fail the call's parameter (an opaque error): refuse it here.
          !options.prefix.isWellFormed() ||
          options.prefix.includes('\u0000'))
      ) {
        throw new InvalidInputError('prefix must be a string of at most 256 characters', 'prefix');
      }
      if (options.after !== undefined) assertKeyName(options.after);
      const labels = options.labels === undefined ? {} : metadataOptions({ labels: options.labels });
      const opts = {
        prefix: options.prefix,
        ...labels,
        due: options.due,
        expired: options.expired,
        include_deleted: options.includeDeleted,
        after: options.after,
        limit: options.limit,
      };
      const rows = await core.query<SecretMetadataRow & { status: SqlStatus }>(
        'list',
        `SELECT * FROM ${qs}.tenant_secret_list($1, $2, $3::text::jsonb, $4::text::jsonb)`,
        [
          tenantId,
          core.keyring.bundleBytes(tenantId),
          JSON.stringify(opts),
          JSON.stringify(core.sqlContext(options.context)),
        ],
      );
      const refused = rows.find((row) => row.status !== 'ok');
      if (refused) throw statusError(refused.status, { tenantId, keyName: '', detail: refused.key_name });
      return rows.map(toSecretMetadata);
    },

    /**
     * Version history of a secret, newest first (metadata only).
     * @throws {SecretNotFoundError} no such (undeleted) secret.
     */
    async versions(tenantId: string, keyName: string, options: CallOptions = {}): Promise<VersionInfo[]> {
      assertOptions(options, CALL_OPTIONS, 'versions');
      assertTenantId(tenantId);
      assertKeyName(keyName);
      const rows = await core.query<{
        status: SqlStatus;
        version: number;
        state: VersionInfo['state'];
        origin: VersionInfo['origin'];
        created_at: Date;
        created_by: string;
        destroyed_at: Date | null;
        is_current: boolean;
        is_previous: boolean;
      }>('versions', `SELECT * FROM ${qs}.tenant_secret_list_versions($1, $2, $3, $4::text::jsonb)`, [
        tenantId,
        keyName,
        core.keyring.bundleBytes(tenantId),
        JSON.stringify(core.sqlContext(options.context)),
      ]);
      const refused = rows.find((row) => row.status !== 'ok');
      if (refused?.status === 'not_found' || rows.length === 0)
        throw new SecretNotFoundError(tenantId, keyName);
      if (refused) throw statusError(refused.status, { tenantId, keyName, detail: refused.state });
      return rows.map((r) => ({
        version: r.version,
        state: r.state,
        origin: r.origin,
        createdAt: r.created_at,
        createdBy: r.created_by,
        destroyedAt: r.destroyed_at,
        isCurrent: r.is_current,
        isPrevious: r.is_previous,
      }));
    },
  };
}

export type SecretOperations = ReturnType<typeof secretOperations>;
