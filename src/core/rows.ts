import type { SqlStatus } from './status.js';

/**
 * A row of tenant_secret_fetch, and of tenant_secret_fetch_batch per item: what the data path
 * (src/secrets/data-path.ts) opens, and what the manager's read batches (src/db/call-batches.ts) hand it.
 */
export interface FetchRow {
  status: SqlStatus | 'enroll';
  version: number | null;
  key_version: number | null;
  master_key_id: string | null;
  wrapped_key: Buffer | null;
  sealed: Buffer | null;
  expires_at: Date | null;
  detail: string | null;
  active_key_version: number | null;
}

/** A row of tenant_secret_put, and of tenant_secret_put_batch per item ('ok' and its version). */
export interface PutRow {
  status: SqlStatus | 'enroll' | 'stale_key' | 'no_key';
  version: number | null;
  detail: string | null;
  key_version: number | null;
  master_key_id: string | null;
  wrapped_key: Buffer | null;
}

/** One read of a current version, as tenant_secret_fetch_batch takes it. */
export interface BatchedRead {
  tenantId: string;
  keyName: string;
  credentials: Buffer;
  allowExpired: boolean;
  /** The audit context, as JSON. */
  context: string;
}

/** One write (set or rotate, without metadata), as tenant_secret_put_batch takes it. */
export interface BatchedWrite {
  tenantId: string;
  keyName: string;
  value: Buffer;
  keyVersion: number;
  dek: Buffer;
  mode: 'set' | 'rotate';
  ifVersion: number | null;
  maxVersions: number;
  graceSeconds: number;
  /** The audit context, as JSON. */
  context: string;
}
