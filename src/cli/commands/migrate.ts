import type { Command } from 'commander';
import { schemaExecutor } from '../../db/executor.js';
import { migrate } from '../../schema/migrate.js';
import { cliKeyring, sealPending, withDatabase } from '../database.js';
import { examples } from '../help.js';
import { note, printJson } from '../io.js';

export function migrateCommand(program: Command): void {
  program
    .command('migrate')
    .description(
      'Install or upgrade the schema in DATABASE_URL, repair what was changed by hand, and register TENANT_SECRETS_MASTER_KEY when set (idempotent; safe to run concurrently). Run it as the schema owner.',
    )
    .option(
      '--grant-to <role...>',
      'application roles: EXECUTE on the data-plane functions only (no table access)',
    )
    .option(
      '--grant-operator-to <role...>',
      'operator roles: also audit, key rotation, purge and legacy import',
    )
    .option(
      '--distribute',
      'on a Citus coordinator: distribute the installation by tenant (tables, reference tables, delegated functions; docs/scaling.md)',
    )
    .option('--json', 'print { applied, version, functionsInstalled, removed, registered } as JSON')
    .addHelpText(
      'after',
      examples(
        'DATABASE_URL=postgres://... tenant-secrets migrate',
        'tenant-secrets migrate --grant-to app_rw --json',
      ),
    )
    .action(
      async (opts: {
        grantTo?: string[];
        grantOperatorTo?: string[];
        distribute?: boolean;
        json?: boolean;
      }) => {
        const keyring = process.env.TENANT_SECRETS_MASTER_KEY ? cliKeyring() : undefined;
        const result = await withDatabase(async (db) => {
          const executor = schemaExecutor(db.pool, db.qs);
          const migrated = await migrate(executor, {
            schema: db.schema,
            grantTo: opts.grantTo,
            grantOperatorTo: opts.grantOperatorTo,
            ...(opts.distribute && { distribute: true }),
            ...(keyring && { keyring }),
          });
          // A registration is audited on the system chain: seal it now rather than leave it pending
          // until some application process seals (status would warn about it after a minute).
          if (migrated.registered.length > 0) await sealPending(db);
          return migrated;
        });
        if (opts.json) printJson(result);
        else {
          if (result.applied.length === 0) note(`schema is up to date (version ${result.version})`);
          else note(`applied ${result.applied.join(', ')}; schema version ${result.version}`);
          if (result.functionsInstalled) note('functions installed from this release');
          if (result.distributed)
            note(
              'distributed on Citus: tables by tenant, functions delegated to the worker holding the tenant',
            );
          for (const r of result.removed)
            note(`removed ${r.kind} ${JSON.stringify(r.name)} on ${r.table} (not created by tenant-secrets)`);
          if (result.registered.length > 0) note(`registered master key ${result.registered.join(', ')}`);
          if (!keyring)
            note(
              'TENANT_SECRETS_MASTER_KEY is not set: no master key was registered (new tenants need a registered key)',
            );
        }
      },
    );
}
