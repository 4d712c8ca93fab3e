import type { Command } from 'commander';
import { runDemo } from '../demo.js';
import { examples } from '../help.js';
import { out } from '../io.js';

export function demo(program: Command): void {
  program
    .command('demo')
    .description(
      'A guided end-to-end run on a throwaway embedded PostgreSQL and a throwaway key: two tenants, set, get, rotate, isolation, an unregistered master key refused, the stored ciphertext, a tampering attempt, the audit trail appended then sealed into hash chains, rollback, audit verification, a tampered audit record and a rewritten chain caught by its signed checkpoint, a master-key rotation with progress.',
    )
    .addHelpText('after', examples('tenant-secrets demo', 'npm run demo'))
    .action(async () => {
      await runDemo(out);
    });
}
