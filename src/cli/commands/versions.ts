import type { Command } from 'commander';
import { withManager } from '../database.js';
import { examples } from '../help.js';
import { checkNames, iso, out, printJson, table } from '../io.js';

export function versions(program: Command): void {
  program
    .command('versions')
    .description('Version history of a secret, newest first (metadata only, never values).')
    .argument('<tenant>', 'tenant id')
    .argument('<key>', 'key name')
    .option('--json', 'print an array of versions as JSON')
    .addHelpText('after', examples('tenant-secrets versions tenant-a stripe/api-key'))
    .action(async (tenant: string, key: string, opts: { json?: boolean }) => {
      checkNames(tenant, key);
      const rows = await withManager((manager) => manager.versions(tenant, key));
      if (opts.json) return printJson(rows);
      out(
        table(
          ['VERSION', 'STATE', 'ORIGIN', 'CREATED', 'BY', 'MARK'],
          rows.map((v) => [
            String(v.version),
            v.state,
            v.origin,
            iso(v.createdAt),
            v.createdBy,
            v.isCurrent ? 'current' : v.isPrevious ? 'previous' : '',
          ]),
        ),
      );
    });
}
