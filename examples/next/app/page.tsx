import { headers } from 'next/headers';
import { type SecretMetadata, TenantSecretsError } from 'tenant-secrets';
import { requireUser } from '@/lib/auth';
import { auditContext, secrets } from '@/lib/secrets';
import { saveSecret } from './actions';

export const runtime = 'nodejs';

interface Props {
  searchParams: Promise<Record<string, string | string[] | undefined>>;
}

const one = (value: string | string[] | undefined): string | undefined =>
  typeof value === 'string' ? value : undefined;

/** A tenant's secrets by name and version (metadata only: `list` never returns values). */
export default async function Page({ searchParams }: Props) {
  const query = await searchParams;
  const tenant = one(query.tenant) ?? 'acme';
  const user = await requireUser(tenant);
  let listed: SecretMetadata[] = [];
  let failure = one(query.error);
  try {
    listed = await secrets()
      .withContext(auditContext(await headers(), user.actor))
      .list(tenant, { limit: 50 });
  } catch (error) {
    if (!(error instanceof TenantSecretsError)) throw error;
    failure = error.code;
  }
  const saved = one(query.saved);

  return (
    <main>
      <h1>Secrets of tenant “{tenant}”</h1>
      {saved && <p role="status">Saved {saved}.</p>}
      {failure && <p role="alert">Failed: {failure}</p>}
      <table>
        <thead>
          <tr>
            <th>name</th>
            <th>version</th>
            <th>updated</th>
            <th>by</th>
          </tr>
        </thead>
        <tbody>
          {listed.map((secret) => (
            <tr key={secret.keyName}>
              <td>{secret.keyName}</td>
              <td>{secret.currentVersion}</td>
              <td>{secret.updatedAt.toISOString()}</td>
              <td>{secret.updatedBy}</td>
            </tr>
          ))}
        </tbody>
      </table>

      <h2>Store a secret</h2>
      <form action={saveSecret}>
        <input type="hidden" name="tenant" value={tenant} />
        <label>
          name <input name="name" required pattern="[A-Za-z0-9_][A-Za-z0-9_.\/\-]{0,255}" />
        </label>
        <label>
          value <input name="value" type="password" required autoComplete="off" />
        </label>
        <button type="submit">Save</button>
      </form>
    </main>
  );
}
