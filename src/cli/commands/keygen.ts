import type { Command } from 'commander';
import { MasterKey } from '../../crypto/master-key.js';
import { examples } from '../help.js';
import { note, out, printJson } from '../io.js';

export function keygen(program: Command): void {
  program
    .command('keygen')
    .description('Generate a new random master key (32 bytes, base64) and print it on stdout.')
    .option('--json', 'print { masterKey, id } as JSON')
    .addHelpText(
      'after',
      examples('export TENANT_SECRETS_MASTER_KEY="$(tenant-secrets keygen)"', 'tenant-secrets keygen --json'),
    )
    .action((opts: { json?: boolean }) => {
      const key = MasterKey.generate();
      if (opts.json) {
        printJson({ masterKey: key.export(), id: key.id });
        return;
      }
      out(key.export());
      if (process.stdout.isTTY) {
        note(
          `new master key ${key.id}: store it in a secret manager and set TENANT_SECRETS_MASTER_KEY; losing it loses every secret`,
        );
      }
    });
}
