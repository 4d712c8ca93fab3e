import type { TenantSecretsError } from '../base/errors.js';
import type { Core } from './core.js';
import { type SqlStatus, type StatusContext, statusError } from './status.js';

/** The row a tenant-secrets SQL function answers with: a status, and what it reports with it. */
export interface StatusRow {
  status: SqlStatus;
  version?: number | null;
  detail?: string | null;
}

export interface CallCheck<R> {
  /** Tenant, key and what the caller expected, for the error's message. */
  about: StatusContext;
  /** Columns an `ok` row must carry (non-null); an `ok` row without them is an integrity failure. */
  required?: readonly (keyof R)[];
  /** A more precise error of the caller's for some statuses, else undefined. */
  refine?: (row: R) => TenantSecretsError | undefined;
}

/**
 * Calls one SQL function that answers with one status row (the functions return a status instead of
 * raising, so a refusal's audit record commits) and returns that row when its status is `ok`.
 * Anything else becomes the typed error of the status (src/base/error-table.ts), naming the tenant,
 * key, version and detail; no row, or an `ok` row missing a required column, is an integrity failure:
 * the answer cannot be trusted.
 */
export async function callChecked<R extends StatusRow>(
  core: Pick<Core, 'query'>,
  operation: string,
  sql: string,
  params: readonly unknown[],
  check: CallCheck<R>,
): Promise<R> {
  const rows = await core.query<R>(operation, sql, params);
  const row = rows[0];
  if (row?.status === 'ok' && (check.required ?? []).every((column) => row[column] != null)) return row;
  const refined = row && row.status !== 'ok' ? check.refine?.(row) : undefined;
  if (refined) throw refined;
  throw statusError(row?.status === 'ok' ? 'integrity' : (row?.status ?? 'integrity'), {
    ...check.about,
    version: row?.version ?? check.about.version,
    detail: row?.detail ?? check.about.detail,
  });
}
