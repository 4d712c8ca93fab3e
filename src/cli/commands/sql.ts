import type { Command } from 'commander';
import { exportSchemaSql, LATEST_SCHEMA_VERSION } from '../../schema/migrate.js';
import { cliSchema } from '../database.js';
import { examples } from '../help.js';
import { parseCount, printJson } from '../io.js';

export function sql(program: Command): void {
  program
    .command('sql')
    .description(
      'Print the installer as one SQL script for migration tools (e.g. Supabase). Idempotent: applying it again, or a newer one, is safe. It finds pgcrypto wherever it is installed (Supabase: the "extensions" schema). Needs no database and holds no key.',
    )
    .option(
      '--schema <schema>',
      'schema of the tenant-secrets objects (default: TENANT_SECRETS_SCHEMA or public)',
    )
    .option(
      '--owner <role>',
      'a role (created NOLOGIN if missing) that owns the schema and every object, instead of the role applying the script; recommended with a dedicated schema',
    )
    .option('--grant-to <role...>', 'application roles: EXECUTE on the data-plane functions only')
    .option(
      '--grant-operator-to <role...>',
      'operator roles: also audit, key rotation, purge and legacy import',
    )
    .option(
      '--from <version>',
      'leave out table migrations up to this schema version (an incremental script for an upgrade; functions and grants are always included)',
    )
    .option(
      '--no-transaction',
      'do not wrap the script in BEGIN/COMMIT (for tools that run each file in a transaction)',
    )
    .option('--json', 'print { version, schema, fromVersion, sql } as JSON')
    .addHelpText(
      'after',
      examples(
        'tenant-secrets sql --schema tenant_secrets --owner tenant_secrets_owner --grant-to service_role > supabase/migrations/20260101000000_tenant_secrets.sql',
        'tenant-secrets sql --schema tenant_secrets --owner tenant_secrets_owner --grant-to service_role --from 6 > supabase/migrations/20261201000000_tenant_secrets.sql',
        'tenant-secrets sql > schema.sql',
      ),
    )
    .action(
      async (opts: {
        schema?: string;
        owner?: string;
        grantTo?: string[];
        grantOperatorTo?: string[];
        from?: string;
        transaction?: boolean;
        json?: boolean;
      }) => {
        const schema = opts.schema ?? cliSchema();
        const fromVersion = parseCount(opts.from, '--from', 0, LATEST_SCHEMA_VERSION) ?? 0;
        const text = await exportSchemaSql({
          schema,
          grantTo: opts.grantTo,
          grantOperatorTo: opts.grantOperatorTo,
          fromVersion,
          transaction: opts.transaction !== false,
          ...(opts.owner !== undefined && { owner: opts.owner }),
        });
        if (opts.json) {
          printJson({
            version: LATEST_SCHEMA_VERSION,
            schema,
            fromVersion,
            owner: opts.owner ?? null,
            sql: text,
          });
        } else {
          process.stdout.write(text.endsWith('\n') ? text : `${text}\n`);
        }
      },
    );
}
