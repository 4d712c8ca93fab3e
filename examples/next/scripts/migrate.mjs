// Applies tenant-secrets' schema migrations (idempotent; safe when several deploys run it at once).
// Run it as the role that should own the objects, before starting the app: `npm run migrate`.
// Same as `npx tenant-secrets migrate`. Reads DATABASE_URL and TENANT_SECRETS_MASTER_KEY.
import { createSecretsManager } from 'tenant-secrets';

const secrets = createSecretsManager({ actor: 'migrate' });
try {
  const { applied, version } = await secrets.installation.migrate();
  console.error(
    `tenant-secrets schema version ${version}${applied.length ? `; applied ${applied.join(', ')}` : ''}`,
  );
} finally {
  await secrets.close();
}
