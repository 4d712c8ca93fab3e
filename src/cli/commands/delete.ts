import type { Command } from 'commander';
import { withManager } from '../database.js';
import { examples } from '../help.js';
import { checkNames, note, parseVersion, printJson } from '../io.js';

export function del(program: Command): void {
  program
    .command('delete')
    .description('Soft-delete a secret: it reads as not found and is purged after the recovery window.')
    .argument('<tenant>', 'tenant id')
    .argument('<key>', 'key name')
    .option('--recovery-window <days>', 'days before the secret is purged (default 30)')
    .option('--json', 'print { tenant, key, version, purgeAfter } as JSON')
    .addHelpText(
      'after',
      examples(
        'tenant-secrets delete tenant-a stripe/api-key',
        'tenant-secrets delete tenant-a old/token --json',
      ),
    )
    .action(async (tenant: string, key: string, opts: { recoveryWindow?: string; json?: boolean }) => {
      checkNames(tenant, key);
      const recoveryWindowDays =
        opts.recoveryWindow === undefined
          ? undefined
          : parseVersion(opts.recoveryWindow, '--recovery-window', true);
      const result = await withManager((manager) => manager.delete(tenant, key, { recoveryWindowDays }));
      if (opts.json) printJson({ tenant, key, version: result.version, purgeAfter: result.purgeAfter });
      else
        note(
          `deleted ${tenant} ${key} (version ${result.version}); purged after ${result.purgeAfter.toISOString()}`,
        );
    });
}
