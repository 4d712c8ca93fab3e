import type { Command } from 'commander';
import { InvalidInputError } from '../../base/errors.js';
import { withManager } from '../database.js';
import { examples } from '../help.js';
import { checkNames, confirmIrreversible, note, parseVersion, printJson } from '../io.js';

export function rollback(program: Command): void {
  program
    .command('rollback')
    .description(
      'Make an old version current again by writing its value as a new version (origin rollback); the replaced version stays readable as previous.',
    )
    .argument('<tenant>', 'tenant id')
    .argument('<key>', 'key name')
    .argument('<version>', 'the version whose value becomes current')
    .option('--if-version <n>', 'check-and-set: only if the current version is n')
    .option('--json', 'print { tenant, key, version, fromVersion } as JSON')
    .addHelpText(
      'after',
      examples(
        'tenant-secrets rollback tenant-a stripe/api-key 1',
        'tenant-secrets rollback tenant-a stripe/api-key 1 --if-version 3 --json',
      ),
    )
    .action(
      async (
        tenant: string,
        key: string,
        versionText: string,
        opts: { ifVersion?: string; json?: boolean },
      ) => {
        checkNames(tenant, key);
        const version = parseVersion(versionText, 'version');
        const ifVersion =
          opts.ifVersion === undefined ? undefined : parseVersion(opts.ifVersion, '--if-version');
        const result = await withManager((manager) => manager.rollback(tenant, key, version, { ifVersion }));
        if (opts.json) printJson({ tenant, key, version: result.version, fromVersion: version });
        else
          note(
            `rolled back ${tenant} ${key} to the value of version ${version}: now version ${result.version}`,
          );
      },
    );
}

export function restore(program: Command): void {
  program
    .command('restore')
    .description(
      'Undo a soft delete while the recovery window lasts; the secret is readable again at its version.',
    )
    .argument('<tenant>', 'tenant id')
    .argument('<key>', 'key name')
    .option('--json', 'print { tenant, key, version } as JSON')
    .addHelpText('after', examples('tenant-secrets restore tenant-a stripe/api-key'))
    .action(async (tenant: string, key: string, opts: { json?: boolean }) => {
      checkNames(tenant, key);
      const result = await withManager((manager) => manager.restore(tenant, key));
      if (opts.json) printJson({ tenant, key, version: result.version });
      else note(`restored ${tenant} ${key} (version ${result.version})`);
    });
}

/** `1,2,5` -> [1, 2, 5]. */
function parseVersionList(text: string): number[] {
  const parts = text.split(',').map((part) => part.trim());
  if (parts.length === 0 || parts.some((part) => part === '')) {
    throw new InvalidInputError(
      '--versions must be a comma-separated list of versions, e.g. 1,2',
      '--versions',
    );
  }
  return parts.map((part) => parseVersion(part, '--versions'));
}

export function destroy(program: Command): void {
  program
    .command('destroy')
    .description(
      'Irreversibly remove a secret (live or soft-deleted) with every version, or with --versions only the ciphertext of some non-current versions. Asks for confirmation on a terminal; needs --yes otherwise.',
    )
    .argument('<tenant>', 'tenant id')
    .argument('<key>', 'key name')
    .option('--versions <list>', 'destroy only these non-current versions, comma-separated (e.g. 1,2)')
    .option('-y, --yes', 'do not ask for confirmation (required when standard input is not a terminal)')
    .option('--json', 'print the result as JSON')
    .addHelpText(
      'after',
      examples(
        'tenant-secrets destroy tenant-a old/token            # asks: type the key name to confirm',
        'tenant-secrets destroy tenant-a stripe/api-key --versions 1,2 --yes',
      ),
    )
    .action(
      async (tenant: string, key: string, opts: { versions?: string; yes?: boolean; json?: boolean }) => {
        checkNames(tenant, key);
        const versions = opts.versions === undefined ? undefined : parseVersionList(opts.versions);
        const what = versions
          ? `destroying versions ${versions.join(', ')} of ${tenant} ${key}`
          : `destroying ${tenant} ${key} and all its versions`;
        await confirmIrreversible(what, key, opts.yes);
        if (versions) {
          const result = await withManager((manager) => manager.destroyVersions(tenant, key, versions));
          if (opts.json) printJson({ tenant, key, destroyed: result.destroyed });
          else
            note(
              result.destroyed.length
                ? `destroyed versions ${result.destroyed.join(', ')} of ${tenant} ${key}`
                : `nothing destroyed: versions ${versions.join(', ')} are missing or already destroyed`,
            );
          return;
        }
        const result = await withManager((manager) => manager.destroy(tenant, key));
        if (opts.json) printJson({ tenant, key, versionsDestroyed: result.versionsDestroyed });
        else
          note(`destroyed ${tenant} ${key} (${result.versionsDestroyed} version(s) of ciphertext removed)`);
      },
    );
}

export function purgeDeleted(program: Command): void {
  program
    .command('purge-deleted')
    .description('Destroy every soft-deleted secret whose recovery window has passed (e.g. from cron).')
    .option('--tenant <tenant>', 'only this tenant')
    .option('--json', 'print { purged } as JSON')
    .addHelpText(
      'after',
      examples('tenant-secrets purge-deleted', 'tenant-secrets purge-deleted --tenant tenant-a --json'),
    )
    .action(async (opts: { tenant?: string; json?: boolean }) => {
      if (opts.tenant !== undefined) checkNames(opts.tenant);
      const purged = await withManager((manager) => manager.purgeDeleted({ tenantId: opts.tenant }));
      if (opts.json) printJson({ purged });
      else note(`purged ${purged} soft-deleted secret(s) past their recovery window`);
    });
}
