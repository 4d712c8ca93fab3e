import type { Command } from 'commander';
import { migrate } from '../../db/migrate.js';
import { withDatabase } from '../database.js';
import { note, printJson } from '../io.js';
import { examples } from '../program.js';

export function migrateCommand(program: Command): void {
  program
    .command('migrate')
    .description('Apply pending schema migrations to DATABASE_URL (idempotent; safe to run concurrently).')
    .option(
      '--grant-to <role...>',
      'application roles: EXECUTE on the data-plane functions only (no table access)',
    )
    .option(
      '--grant-operator-to <role...>',
      'operator roles: also audit, key rotation, purge and legacy import',
    )
    .option('--json', 'print { applied, version } as JSON')
    .addHelpText(
      'after',
      examples(
        'DATABASE_URL=postgres://... tenant-secrets migrate',
        'tenant-secrets migrate --grant-to app_rw --json',
      ),
    )
    .action(async (opts: { grantTo?: string[]; grantOperatorTo?: string[]; json?: boolean }) => {
      const result = await withDatabase((db) =>
        migrate(db.pool, { schema: db.schema, grantTo: opts.grantTo, grantOperatorTo: opts.grantOperatorTo }),
      );
      if (opts.json) printJson(result);
      else if (result.applied.length === 0) note(`schema is up to date (version ${result.version})`);
      else note(`applied ${result.applied.join(', ')}; schema version ${result.version}`);
    });
}
