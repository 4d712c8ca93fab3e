import type { Command } from 'commander';
import { exportSchemaSql, LATEST_SCHEMA_VERSION } from '../../db/migrate.js';
import { cliSchema } from '../database.js';
import { printJson } from '../io.js';
import { examples } from '../program.js';

export function sql(program: Command): void {
  program
    .command('sql')
    .description(
      'Print the whole schema as one SQL script (for migration tools, e.g. Supabase). Needs no database.',
    )
    .option(
      '--schema <schema>',
      'schema of the tenant-secrets objects (default: TENANT_SECRETS_SCHEMA or public)',
    )
    .option('--pgcrypto-schema <schema>', 'schema where the pgcrypto extension lives (default: --schema)')
    .option('--grant-to <role...>', 'application roles: EXECUTE on the data-plane functions only')
    .option(
      '--grant-operator-to <role...>',
      'operator roles: also audit, key rotation, purge and legacy import',
    )
    .option('--json', 'print { version, schema, pgcryptoSchema, sql } as JSON')
    .addHelpText(
      'after',
      examples(
        'tenant-secrets sql > supabase/migrations/20260101000000_tenant_secrets.sql',
        'tenant-secrets sql --schema secrets --pgcrypto-schema extensions --grant-to service_role',
      ),
    )
    .action(
      (opts: {
        schema?: string;
        pgcryptoSchema?: string;
        grantTo?: string[];
        grantOperatorTo?: string[];
        json?: boolean;
      }) => {
        const schema = opts.schema ?? cliSchema();
        const text = exportSchemaSql({
          schema,
          pgcryptoSchema: opts.pgcryptoSchema,
          grantTo: opts.grantTo,
          grantOperatorTo: opts.grantOperatorTo,
        });
        if (opts.json) {
          printJson({
            version: LATEST_SCHEMA_VERSION,
            schema,
            pgcryptoSchema: opts.pgcryptoSchema ?? schema,
            sql: text,
          });
        } else {
          process.stdout.write(text.endsWith('\n') ? text : `${text}\n`);
        }
      },
    );
}
