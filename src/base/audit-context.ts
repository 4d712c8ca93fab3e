import { InvalidInputError } from './errors.js';
import { assertAuditText } from './validation.js';

/**
 * Who is acting and on whose behalf, recorded with every audit record. Never put secrets here:
 * audit records are readable by operators and exported to log systems.
 */
export interface AuditContext {
  /** Who performs the operation (a service, user or job name). Default: the manager's `actor`. */
  actor?: string;
  /** A request or correlation id to find the record from the caller's own logs. */
  requestId?: string;
  /** Caller's IP address, if the operation serves a remote request. */
  ip?: string;
  /** Caller's user agent. */
  userAgent?: string;
}

/** The JSON object the SQL functions take as `p_ctx`. */
export function toSqlContext(context: AuditContext): Record<string, string> {
  assertAuditText(context.actor, 'actor');
  assertAuditText(context.requestId, 'requestId');
  assertAuditText(context.ip, 'ip', 64);
  assertAuditText(context.userAgent, 'userAgent', 512);
  const out: Record<string, string> = {};
  if (context.actor) out.actor = context.actor;
  if (context.requestId) out.request_id = context.requestId;
  if (context.ip) out.ip = context.ip;
  if (context.userAgent) out.user_agent = context.userAgent;
  return out;
}

export function mergeContext(base: AuditContext, extra: AuditContext | undefined): AuditContext {
  if (extra === undefined) return base;
  if (typeof extra !== 'object' || extra === null)
    throw new InvalidInputError('context must be an object', 'context');
  return { ...base, ...Object.fromEntries(Object.entries(extra).filter(([, v]) => v !== undefined)) };
}
