import type { Core } from '../core/core.js';
import { exportOperations } from './export.js';
import { pruneOperations } from './prune.js';
import { queryOperations } from './query.js';
import { SealBatch, sealOperations } from './seal.js';
import { verifyOperations } from './verify.js';

/** The audit-trail operations (seal, query, export, verify, checkpoints, prune), bound to one core. */
export function auditOperations(core: Core, batch = new SealBatch()) {
  const seal = sealOperations(core, batch);
  const sealAll = (options: { context?: Core['context'] } = {}) =>
    seal.sealAudit({ ...options, all: true, wait: true });
  const verify = verifyOperations(core, sealAll);
  return {
    ...seal,
    ...queryOperations(core, sealAll),
    ...exportOperations(core, sealAll),
    ...verify,
    ...pruneOperations(core, verify),
  };
}

export type AuditOperations = ReturnType<typeof auditOperations>;
