import type { Command } from 'commander';
import { ConfigurationError } from '../../base/errors.js';
import { withManager } from '../database.js';
import { examples } from '../help.js';
import { interruptSignal, note, parseCount, printJson, readSecretValue } from '../io.js';
import { lazyProgress } from '../progress.js';

/** The legacy key: TENANT_SECRETS_LEGACY_KEY, else standard input, else a hidden prompt. Never argv. */
async function legacyKey(): Promise<string> {
  const fromEnv = process.env.TENANT_SECRETS_LEGACY_KEY;
  if (fromEnv !== undefined) {
    if (fromEnv === '') throw new ConfigurationError('TENANT_SECRETS_LEGACY_KEY is set but empty');
    return fromEnv;
  }
  return readSecretValue(undefined, 'the legacy master key');
}

export function importLegacy(program: Command): void {
  program
    .command('import-legacy')
    .description(
      "Convert a legacy tenant_secrets table (the original code's: pgcrypto aes-cbc under one key) to tenant-secrets, row by row with read-back verification; migrates the schema; resumable. The legacy key comes from TENANT_SECRETS_LEGACY_KEY, standard input or a hidden prompt.",
    )
    .option('--batch-size <n>', 'legacy rows per transaction, 1-10000 (default 100)')
    .option(
      '--json',
      'print { imported, importedTotal, batches, legacyTableDropped, storage } as JSON (importedTotal counts every run; storage is how the legacy table held ciphertexts: text or bytea)',
    )
    .addHelpText(
      'after',
      `
A wrong legacy key changes nothing (exit 5, LEGACY_IMPORT). A row that cannot be imported stops the
import (exit 5) naming its tenant and key; rows already imported stay, the rest stay in
tenant_secrets_legacy. Ctrl-C stops after the current batch (exit 130); run again to resume.
See docs/runbooks/legacy-import.md.
${examples(
  'TENANT_SECRETS_LEGACY_KEY="$OLD_KEY" tenant-secrets import-legacy',
  'tenant-secrets import-legacy < old-key.txt',
  'tenant-secrets import-legacy          # hidden prompt',
)}`,
    )
    .action(async (opts: { batchSize?: string; json?: boolean }) => {
      const batchSize = parseCount(opts.batchSize, '--batch-size', 1, 10_000);
      const key = await legacyKey();
      const progress = lazyProgress('importing legacy rows');
      const interrupt = interruptSignal();
      const result = await withManager(
        (manager) =>
          manager.installation.importLegacy({
            legacyKey: key,
            batchSize,
            signal: interrupt.signal,
            onProgress: ({ done, total }) => progress.update(done, total),
          }),
        { migrate: false },
      ).finally(() => {
        progress.stop();
        interrupt.dispose();
      });
      if (opts.json) return printJson(result);
      if (result.imported === 0 && !result.legacyTableDropped)
        note(
          `no legacy table found: nothing to import${result.importedTotal > 0 ? ` (${result.importedTotal} legacy secret(s) imported by earlier runs)` : ''}`,
        );
      else
        note(
          `imported ${result.imported} legacy secret(s) in ${result.batches} batch(es); legacy table dropped: ${result.legacyTableDropped ? 'yes' : 'no'}. Retire the legacy key and rotate the imported secrets (docs/runbooks/rotate-secrets.md).`,
        );
    });
}
