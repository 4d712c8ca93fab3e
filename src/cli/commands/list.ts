import type { Command } from 'commander';
import type { SecretMetadata } from '../../secrets/metadata.js';
import { withManager } from '../database.js';
import { examples } from '../help.js';
import { checkNames, iso, note, out, parseLabels, printJson, table } from '../io.js';

interface ListOpts {
  prefix?: string;
  label?: string[];
  due?: boolean;
  expired?: boolean;
  includeDeleted?: boolean;
  json?: boolean;
}

const PAGE = 1000;

export function list(program: Command): void {
  program
    .command('list')
    .description("List a tenant's secrets: names and metadata, never values.")
    .argument('<tenant>', 'tenant id')
    .option('--prefix <prefix>', 'only names starting with prefix')
    .option('--label <key=value...>', 'only secrets carrying all these labels')
    .option('--due', 'only secrets due for rotation')
    .option('--expired', 'only secrets whose expiry has passed')
    .option('--include-deleted', 'include soft-deleted secrets')
    .option('--json', 'print an array of secret metadata as JSON')
    .addHelpText(
      'after',
      examples(
        'tenant-secrets list tenant-a',
        'tenant-secrets list tenant-a --prefix stripe/ --label env=prod',
        'tenant-secrets list tenant-a --due --json',
      ),
    )
    .action(async (tenant: string, opts: ListOpts) => {
      checkNames(tenant);
      const filters = {
        prefix: opts.prefix,
        labels: parseLabels(opts.label),
        due: opts.due,
        expired: opts.expired,
        includeDeleted: opts.includeDeleted,
      };
      const secrets = await withManager(async (manager) => {
        const all: SecretMetadata[] = [];
        for (;;) {
          const page = await manager.list(tenant, { ...filters, limit: PAGE, after: all.at(-1)?.keyName });
          all.push(...page);
          if (page.length < PAGE) return all;
        }
      });
      if (opts.json) return printJson(secrets);
      if (secrets.length === 0) return note(`no secrets for tenant ${tenant}`);
      out(
        table(
          [
            'KEY',
            'VERSION',
            'PREVIOUS',
            'UPDATED',
            'EXPIRES',
            'LABELS',
            ...(opts.includeDeleted ? ['DELETED'] : []),
          ],
          secrets.map((s) => [
            s.keyName,
            String(s.currentVersion),
            s.previousVersion === null ? '-' : String(s.previousVersion),
            iso(s.updatedAt),
            iso(s.expiresAt),
            Object.entries(s.labels)
              .map(([k, v]) => `${k}=${v}`)
              .join(',') || '-',
            ...(opts.includeDeleted ? [iso(s.deletedAt)] : []),
          ]),
        ),
      );
    });
}
