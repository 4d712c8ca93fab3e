import { requireUser } from '@/lib/auth';
import { errorResponse, NO_STORE } from '@/lib/http';
import { auditContext, secrets } from '@/lib/secrets';

// tenant-secrets needs Node.js (node:crypto HKDF, TCP to PostgreSQL): never the Edge runtime.
export const runtime = 'nodejs';

interface Context {
  params: Promise<{ tenant: string; name: string }>;
}

/**
 * Names may contain `/` (e.g. `stripe/api-key`): clients send it percent-encoded in one segment.
 * Neither a tenant id nor a key name can contain `%`, so decoding once more is harmless, and what
 * does not decode goes to the library as it is, which rejects it as invalid input.
 */
function decode(segment: string): string {
  try {
    return decodeURIComponent(segment);
  } catch {
    return segment;
  }
}

async function target(context: Context): Promise<{ tenant: string; name: string }> {
  const { tenant, name } = await context.params;
  return { tenant: decode(tenant), name: decode(name) };
}

/**
 * Metadata about the secret, never its value: the current version and the value's length. The
 * value is decrypted here (and the read is audited), and it stays on the server.
 */
export async function GET(request: Request, context: Context): Promise<Response> {
  try {
    const { tenant, name } = await target(context);
    const user = await requireUser(tenant);
    const found = await secrets()
      .withContext(auditContext(request.headers, user.actor))
      .getWithVersion(tenant, name);
    if (found === null) return Response.json({ error: 'NOT_FOUND' }, { status: 404, headers: NO_STORE });
    return Response.json(
      { tenant, name, version: found.version, length: found.value.length },
      { headers: NO_STORE },
    );
  } catch (error) {
    return errorResponse(error);
  }
}

/**
 * Stores a new version from a JSON body `{ "value": "…", "ifVersion"?: n }` (`ifVersion`:
 * check-and-set, `0` = create only). Answers with the version, never the value.
 */
export async function PUT(request: Request, context: Context): Promise<Response> {
  try {
    const { tenant, name } = await target(context);
    const user = await requireUser(tenant);
    const body: unknown = await request.json().catch(() => undefined);
    const { value, ifVersion } = (body ?? {}) as { value?: unknown; ifVersion?: unknown };
    if (typeof value !== 'string' || (ifVersion !== undefined && typeof ifVersion !== 'number')) {
      return Response.json(
        {
          error: 'INVALID_INPUT',
          message: 'the body must be JSON: { "value": string, "ifVersion"?: number }',
        },
        { status: 400, headers: NO_STORE },
      );
    }
    const { version } = await secrets()
      .withContext(auditContext(request.headers, user.actor))
      .set(tenant, name, value, ifVersion === undefined ? {} : { ifVersion });
    return Response.json({ tenant, name, version }, { status: version === 1 ? 201 : 200, headers: NO_STORE });
  } catch (error) {
    return errorResponse(error);
  }
}
