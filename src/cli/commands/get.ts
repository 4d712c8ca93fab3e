import type { Command } from 'commander';
import { SecretNotFoundError } from '../../errors.js';
import { withManager } from '../database.js';
import { checkNames, parseVersion, printJson } from '../io.js';
import { examples } from '../program.js';

interface GetOpts {
  version?: string;
  allowExpired?: boolean;
  newline: boolean;
  json?: boolean;
}

export function get(program: Command): void {
  program
    .command('get')
    .description("Print a tenant's secret value on stdout (nothing else goes to stdout).")
    .argument('<tenant>', 'tenant id')
    .argument('<key>', 'key name')
    .option(
      '--version <n|previous>',
      'a version number, or previous (the version replaced by the last write)',
    )
    .option('--allow-expired', 'read the secret even if its expiry has passed')
    .option('--no-newline', 'do not print a newline after the value')
    .option('--json', 'print { tenant, key, version, value } as JSON')
    .addHelpText(
      'after',
      examples(
        'tenant-secrets get tenant-a stripe/api-key',
        'tenant-secrets get tenant-a stripe/api-key --version previous',
        'STRIPE_KEY="$(tenant-secrets get tenant-a stripe/api-key --no-newline)"',
      ),
    )
    .action(async (tenant: string, key: string, opts: GetOpts) => {
      checkNames(tenant, key);
      const version =
        opts.version === undefined || opts.version === 'previous'
          ? opts.version
          : parseVersion(opts.version, '--version');
      const found = await withManager((manager) =>
        manager.getWithVersion(tenant, key, { version, allowExpired: opts.allowExpired }),
      );
      if (found === null) {
        throw new SecretNotFoundError(
          tenant,
          key,
          version === undefined ? 'secret not found' : `version ${version} not found`,
        );
      }
      if (opts.json) printJson({ tenant, key, version: found.version, value: found.value });
      else process.stdout.write(opts.newline ? `${found.value}\n` : found.value);
    });
}
