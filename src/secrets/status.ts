import {
  ConflictError,
  IntegrityError,
  InvalidInputError,
  SecretExpiredError,
  SecretNotFoundError,
  type TenantSecretsError,
  UnauthorizedError,
  UnknownMasterKeyError,
} from '../base/errors.js';

/** The outcome the SQL functions return instead of raising (so failure audit records commit). */
export type SqlStatus =
  | 'ok'
  | 'not_found'
  | 'conflict'
  | 'expired'
  | 'invalid_input'
  | 'integrity'
  | 'unauthorized'
  | 'unknown_master_key';

export interface StatusContext {
  tenantId: string;
  keyName: string;
  /** For conflicts: the version the caller expected. */
  expectedVersion?: number | undefined;
  /** The version the database reported, if any. */
  version?: number | null;
  /** Extra detail the function returned: the missing master key id, the invalid field. */
  detail?: string | null;
}

/** Maps a non-ok status to the typed error a caller sees. */
export function statusError(status: SqlStatus | string, ctx: StatusContext): TenantSecretsError {
  switch (status) {
    case 'not_found':
      return new SecretNotFoundError(ctx.tenantId, ctx.keyName);
    case 'conflict':
      return new ConflictError(ctx.tenantId, ctx.keyName, ctx.expectedVersion, ctx.version ?? undefined);
    case 'expired':
      return new SecretExpiredError(ctx.tenantId, ctx.keyName);
    case 'invalid_input':
      return new InvalidInputError(
        `the database rejected ${ctx.detail ?? 'the input'}`,
        ctx.detail ?? 'input',
      );
    case 'unknown_master_key':
      return new UnknownMasterKeyError(ctx.detail ?? undefined);
    case 'unauthorized':
      return new UnauthorizedError(ctx.tenantId);
    default:
      return new IntegrityError(
        `integrity check failed for tenant "${ctx.tenantId}", key "${ctx.keyName}": the stored ciphertext or its data key was modified, moved, or written by another installation`,
      );
  }
}
