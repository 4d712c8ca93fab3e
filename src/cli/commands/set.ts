import type { Command } from 'commander';
import { withManager } from '../database.js';
import { examples } from '../help.js';
import { checkNames, note, parseDate, parseLabels, parseVersion, printJson, readSecretValue } from '../io.js';

interface SetOpts {
  value?: string;
  description?: string;
  label?: string[];
  expiresAt?: string;
  rotateAfter?: string;
  ifVersion?: string;
  json?: boolean;
}

export function set(program: Command): void {
  program
    .command('set')
    .description(
      "Create a tenant's secret, or store a new version of it. The value comes from standard input (one trailing newline removed) or a hidden prompt.",
    )
    .argument('<tenant>', 'tenant id')
    .argument('<key>', 'key name, e.g. stripe/api-key')
    .option('--value <value>', 'the value on the command line (discouraged: visible in shell history and ps)')
    .option('--description <text>', 'description (stored in clear)')
    .option('--label <key=value...>', 'labels for filtering (stored in clear; replaces all labels)')
    .option('--expires-at <iso-date>', 'reads fail after this instant')
    .option('--rotate-after <iso-date>', 'the secret is due for rotation after this instant')
    .option('--if-version <n>', 'check-and-set: only if the current version is n (0: only create)')
    .option('--json', 'print { tenant, key, version } as JSON')
    .addHelpText(
      'after',
      examples(
        "printf %s 'sk_live_123' | tenant-secrets set tenant-a stripe/api-key",
        'tenant-secrets set tenant-a stripe/api-key < key.txt',
        'tenant-secrets set tenant-a db/password            # hidden prompt',
        'tenant-secrets set tenant-a github/token --label env=prod --if-version 0 < token.txt',
      ),
    )
    .action(async (tenant: string, key: string, opts: SetOpts) => {
      checkNames(tenant, key);
      const options = {
        description: opts.description,
        labels: parseLabels(opts.label),
        expiresAt: parseDate(opts.expiresAt, '--expires-at'),
        rotateAfter: parseDate(opts.rotateAfter, '--rotate-after'),
        ifVersion:
          opts.ifVersion === undefined ? undefined : parseVersion(opts.ifVersion, '--if-version', true),
      };
      const value = await readSecretValue(opts.value, `${tenant}/${key}`);
      const result = await withManager((manager) => manager.set(tenant, key, value, options));
      if (opts.json) printJson({ tenant, key, version: result.version });
      else note(`stored ${tenant} ${key} as version ${result.version}`);
    });
}
