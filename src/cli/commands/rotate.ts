import type { Command } from 'commander';
import { withManager } from '../database.js';
import { examples } from '../help.js';
import { checkNames, note, parseVersion, printJson, readSecretValue } from '../io.js';

interface RotateOpts {
  value?: string;
  expectedVersion?: string;
  gracePeriod?: string;
  json?: boolean;
}

export function rotate(program: Command): void {
  program
    .command('rotate')
    .description(
      'Replace an existing secret with a new version; the old one stays readable as `previous` during the grace period. The value comes from standard input or a hidden prompt.',
    )
    .argument('<tenant>', 'tenant id')
    .argument('<key>', 'key name')
    .option('--value <value>', 'the value on the command line (discouraged: visible in shell history and ps)')
    .option('--expected-version <n>', 'check-and-set: only if the current version is n')
    .option('--grace-period <seconds>', 'how long the replaced version stays readable as previous')
    .option('--json', 'print { tenant, key, version } as JSON')
    .addHelpText(
      'after',
      examples(
        "printf %s 'sk_live_456' | tenant-secrets rotate tenant-a stripe/api-key",
        'tenant-secrets rotate tenant-a stripe/api-key --expected-version 3 < new-key.txt',
      ),
    )
    .action(async (tenant: string, key: string, opts: RotateOpts) => {
      checkNames(tenant, key);
      const options = {
        expectedVersion:
          opts.expectedVersion === undefined
            ? undefined
            : parseVersion(opts.expectedVersion, '--expected-version'),
        gracePeriodSeconds:
          opts.gracePeriod === undefined ? undefined : parseVersion(opts.gracePeriod, '--grace-period', true),
      };
      const value = await readSecretValue(opts.value, `${tenant}/${key}`);
      const result = await withManager((manager) => manager.rotate(tenant, key, value, options));
      if (opts.json) printJson({ tenant, key, version: result.version });
      else note(`rotated ${tenant} ${key} to version ${result.version}`);
    });
}
