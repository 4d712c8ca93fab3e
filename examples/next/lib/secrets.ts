import 'server-only';
import { randomUUID } from 'node:crypto';
import { type AuditContext, createSecretsManager, type SecretsManager } from 'tenant-secrets';

/**
 * One SecretsManager, and so one connection pool, per server process.
 *
 * Every manager owns a pool of up to `maxConnections` connections: a manager per request (or per
 * module copy) multiplies them. In development, hot reload evaluates this module again on every
 * edit, so the manager is kept on `globalThis`, not in a module variable; it is kept there in
 * production too, which costs nothing and also covers a module bundled into several routes.
 *
 * Created on first use, not at import: `next build` imports route modules and must not need the
 * master key. Configuration comes from the environment: DATABASE_URL and TENANT_SECRETS_MASTER_KEY
 * (plus TENANT_SECRETS_PREVIOUS_MASTER_KEYS while rotating the master key).
 */
const cache = globalThis as typeof globalThis & { __tenantSecretsManager?: SecretsManager };

export function secrets(): SecretsManager {
  cache.__tenantSecretsManager ??= createSecretsManager({
    actor: 'next-example',
    // Small on purpose: serverless platforms run many instances, each with its own pool. Put a
    // pooler in transaction mode (PgBouncer, Supavisor) in front of PostgreSQL. See docs/serverless.md.
    maxConnections: 3,
  });
  return cache.__tenantSecretsManager;
}

/** Printable text of at most `max` characters, or undefined (audit context fields are validated). */
function printable(value: string | null, max: number): string | undefined {
  const text = value?.replace(/\p{Cc}/gu, '').trim();
  return text ? text.slice(0, max) : undefined;
}

/**
 * The audit context of one request: who acts (from your authentication, never from a header the
 * client controls), the request id, the client's address and user agent. Every audit record the
 * request causes carries it.
 */
export function auditContext(headers: Headers, actor: string): AuditContext {
  // X-Forwarded-For is only as trustworthy as the proxy that sets it: behind your own load
  // balancer, its first entry is the client.
  const forwarded = headers.get('x-forwarded-for')?.split(',')[0]?.trim() ?? headers.get('x-real-ip');
  const ip = forwarded && /^[0-9A-Fa-f:.]{2,64}$/.test(forwarded) ? forwarded : undefined;
  return {
    actor,
    requestId: printable(headers.get('x-request-id'), 200) ?? randomUUID(),
    ip,
    userAgent: printable(headers.get('user-agent'), 512),
  };
}
