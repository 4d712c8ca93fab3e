import type { Core } from '../core/core.js';
import { exportOperations } from './export.js';
import { pruneOperations } from './prune.js';
import { queryOperations } from './query.js';
import { sealOperations } from './seal.js';
import { verifyOperations } from './verify.js';

/** The audit-trail operations (seal, query, export, verify, checkpoints, prune), bound to one core. */
export function auditOperations(core: Core) {
  const seal = sealOperations(core);
  const verify = verifyOperations(core, (options) => seal.sealAudit({ ...options, all: true, wait: true }));
  return {
    ...seal,
    ...queryOperations(core),
    ...exportOperations(core),
    ...verify,
    ...pruneOperations(core, verify),
  };
}

export type AuditOperations = ReturnType<typeof auditOperations>;
