import type { Command } from 'commander';
import { SecretNotFoundError } from '../../base/errors.js';
import { withManager } from '../database.js';
import { examples } from '../help.js';
import { checkNames, note, parseVersion, printJson } from '../io.js';
import { hasUnsafe, safeLines } from '../safe-text.js';

interface GetOpts {
  version?: string;
  allowExpired?: boolean;
  newline: boolean;
  raw?: boolean;
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
    .option('--raw', 'on a terminal, print control characters in the value as they are (not escaped)')
    .option('--json', 'print { tenant, key, version, value } as JSON')
    .addHelpText(
      'after',
      `
The value is printed exactly as stored when stdout is a pipe or a file. On a terminal, control
characters in it (other than newline and tab: ESC, carriage return, ...) are shown escaped, e.g.
\\x1b, so a value cannot act on the terminal; --raw prints them as they are.
${examples(
  'tenant-secrets get tenant-a stripe/api-key',
  'tenant-secrets get tenant-a stripe/api-key --version previous',
  'STRIPE_KEY="$(tenant-secrets get tenant-a stripe/api-key --no-newline)"',
  'tenant-secrets get tenant-a tls/key --raw          # control characters unescaped on a terminal',
)}`,
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
      if (opts.json) return printJson({ tenant, key, version: found.version, value: found.value });
      // The value is the data asked for: raw into pipes and files; on a terminal, escaped unless --raw.
      let value = found.value;
      if (process.stdout.isTTY && !opts.raw && hasUnsafe(value, { tabs: true })) {
        value = safeLines(value, { tabs: true });
        note('the value contains control characters, shown escaped; --raw prints them as they are');
      }
      process.stdout.write(opts.newline ? `${value}\n` : value);
    });
}
