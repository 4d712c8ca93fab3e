import { kindForStatus, kindNamed } from '../base/error-table.js';
import type { MissingGrant, TenantSecretsError } from '../base/errors.js';

/** The outcome the SQL functions return instead of raising (so failure audit records commit). */
export type SqlStatus =
  | 'ok'
  | 'not_found'
  | 'conflict'
  | 'expired'
  | 'invalid_input'
  | 'integrity'
  | 'unauthorized'
  | 'unknown_master_key'
  | 'forbidden'
  | 'busy';

export interface StatusContext {
  tenantId: string;
  keyName: string;
  /** Operation name for the message, when the status alone does not say enough (`forbidden`, `busy`). */
  operation?: string;
  /** For conflicts: the version the caller expected. */
  expectedVersion?: number | undefined;
  /** The version the database reported, if any. */
  version?: number | null;
  /** Extra detail the function returned: the missing master key id, the invalid field. */
  detail?: string | null;
  /** For `forbidden`: the grant the role lacks, and for `owner` what only the owner may do. */
  grant?: MissingGrant;
  ownerAction?: string;
}

/**
 * Maps a non-ok status to the typed error a caller sees (the status column of src/base/error-table.ts).
 * A status the table does not know is treated as an integrity failure: the function's answer cannot
 * be trusted.
 */
export function statusError(status: SqlStatus | string, ctx: StatusContext): TenantSecretsError {
  const kind = kindForStatus(status) ?? kindNamed('IntegrityError');
  const create = kind.create ?? kindNamed('IntegrityError').create;
  return (create as NonNullable<typeof create>)({
    operation: ctx.operation ?? 'this call',
    tenantId: ctx.tenantId,
    keyName: ctx.keyName,
    expectedVersion: ctx.expectedVersion,
    version: ctx.version ?? undefined,
    detail: ctx.detail ?? undefined,
    grant: ctx.grant,
    ownerAction: ctx.ownerAction,
  });
}
