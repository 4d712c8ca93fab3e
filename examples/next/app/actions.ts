'use server';

import { headers } from 'next/headers';
import { redirect } from 'next/navigation';
import { TenantSecretsError } from 'tenant-secrets';
import { requireUser } from '@/lib/auth';
import { auditContext, secrets } from '@/lib/secrets';

const field = (form: FormData, name: string): string => {
  const value = form.get(name);
  return typeof value === 'string' ? value : '';
};

/**
 * Stores the secret typed into the form as a new version. The value goes from the browser to the
 * server only; the page it redirects to shows names and versions, never values.
 */
export async function saveSecret(form: FormData): Promise<void> {
  const tenant = field(form, 'tenant');
  const name = field(form, 'name');
  const user = await requireUser(tenant);
  const back = new URLSearchParams({ tenant });
  try {
    const { version } = await secrets()
      .withContext(auditContext(await headers(), user.actor))
      .set(tenant, name, field(form, 'value'));
    back.set('saved', `${name} (version ${version})`);
  } catch (error) {
    if (!(error instanceof TenantSecretsError)) throw error;
    back.set('error', error.code);
  }
  // redirect() throws to end the action: outside the try block.
  redirect(`/?${back}`);
}
