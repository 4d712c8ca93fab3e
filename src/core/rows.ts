import type { SqlStatus } from './status.js';

/**
 * A row of tenant_secret_fetch, and of tenant_secret_fetch_batch per item: what the data path
 * (src/secrets/data-path.ts) opens, and what the manager's read batches (src/db/read-batches.ts) hand it.
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
