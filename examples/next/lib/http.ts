import 'server-only';
import { TenantSecretsError } from 'tenant-secrets';

/** Responses about secrets are never cached, by the browser or by a CDN. */
export const NO_STORE = { 'Cache-Control': 'no-store' } as const;

const STATUS: Record<string, number> = {
  INVALID_INPUT: 400,
  NOT_FOUND: 404,
  CONFLICT: 409,
  EXPIRED: 410,
  DATABASE_UNAVAILABLE: 503,
};

/**
 * A JSON error response with the error's stable `code`. tenant-secrets writes its own messages and
 * never puts a value, key material or SQL parameters in them, so an invalid input's message (which
 * argument, why) can go back to the caller; anything else is logged and answered generically.
 */
export function errorResponse(error: unknown): Response {
  if (error instanceof TenantSecretsError) {
    const status = STATUS[error.code] ?? 500;
    if (status >= 500) console.error(error);
    const body =
      error.code === 'INVALID_INPUT' ? { error: error.code, message: error.message } : { error: error.code };
    return Response.json(body, { status, headers: NO_STORE });
  }
  console.error(error);
  return Response.json({ error: 'INTERNAL' }, { status: 500, headers: NO_STORE });
}
