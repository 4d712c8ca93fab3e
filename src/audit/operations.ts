import type { Core } from '../core.js';
import { exportOperations } from './export.js';
import { pruneOperations } from './prune.js';
import { queryOperations } from './query.js';
import { verifyOperations } from './verify.js';

/** The audit-trail operations of issue 5 (query, export, verify, checkpoints, prune), bound to one core. */
export function auditOperations(core: Core) {
  const verify = verifyOperations(core);
  return {
    ...queryOperations(core),
    ...exportOperations(core),
    ...verify,
    ...pruneOperations(core, verify),
  };
}

export type AuditOperations = ReturnType<typeof auditOperations>;
