import type { Command } from 'commander';
import { withManager } from '../database.js';
import { examples } from '../help.js';
import { checkNames, confirmIrreversible, interruptSignal, note, parseCount, printJson } from '../io.js';
import { lazyProgress } from '../progress.js';

const RESUME_HELP = `
Ctrl-C (SIGINT) or SIGTERM stops it cleanly after the current batch (exit 130); every finished batch
is committed, so running the same command again resumes where it stopped.`;

export function rotateMasterKey(program: Command): void {
  program
    .command('rotate-master-key')
    .description(
      'Re-wrap every tenant data key under the current master key (TENANT_SECRETS_MASTER_KEY), the old key being in TENANT_SECRETS_PREVIOUS_MASTER_KEYS. No secret is re-encrypted; online and resumable.',
    )
    .option('--batch-size <n>', 'tenants per transaction, 1-10000 (default 100)')
    .option('--json', 'print the result as JSON')
    .addHelpText(
      'after',
      `${RESUME_HELP}\n${examples(
        'export TENANT_SECRETS_MASTER_KEY="$NEW_KEY" TENANT_SECRETS_PREVIOUS_MASTER_KEYS="$OLD_KEY"',
        'tenant-secrets rotate-master-key',
        'tenant-secrets rotate-master-key --batch-size 500 --json',
        'tenant-secrets status        # keys: ready to drop the previous master key: yes',
      )}`,
    )
    .action(async (opts: { batchSize?: string; json?: boolean }) => {
      const batchSize = parseCount(opts.batchSize, '--batch-size', 1, 10_000);
      const progress = lazyProgress('re-wrapping data keys');
      const interrupt = interruptSignal();
      const result = await withManager(async (manager) => {
        note(`re-wrapping data keys under master key ${manager.masterKeyIds[0]} (Ctrl-C stops; resumable)`);
        return manager.keys.rotateMaster({
          batchSize,
          signal: interrupt.signal,
          onProgress: ({ done, total }) => progress.update(done, total),
        });
      }).finally(() => {
        progress.stop();
        interrupt.dispose();
      });
      if (opts.json) return printJson(result);
      const remaining = Object.entries(result.remainingByMasterKey).filter(([, n]) => n > 0);
      note(
        `re-wrapped ${result.rewrapped} data key(s) under ${result.masterKeyId} in ${result.batches} batch(es)`,
      );
      if (remaining.length === 0) {
        note(
          'no data key depends on another master key: remove the old key from TENANT_SECRETS_PREVIOUS_MASTER_KEYS (keep it for old backups)',
        );
      } else {
        note(`still wrapped under other keys: ${remaining.map(([id, n]) => `${id} (${n})`).join(', ')}`);
      }
    });
}

export function rotateTenantKey(program: Command): void {
  program
    .command('rotate-tenant-key')
    .description(
      "Rotate a tenant's data key: a new key becomes active, every ciphertext of the tenant is re-encrypted to it batch by batch, then the old key is destroyed. Online and resumable.",
    )
    .argument('<tenant>', 'tenant id')
    .option('--batch-size <n>', 'ciphertexts per transaction, 1-10000 (default 100)')
    .option('--json', 'print the result as JSON')
    .addHelpText(
      'after',
      `${RESUME_HELP}\n${examples('tenant-secrets rotate-tenant-key tenant-123', 'tenant-secrets rotate-tenant-key tenant-123 --batch-size 1000 --json')}`,
    )
    .action(async (tenant: string, opts: { batchSize?: string; json?: boolean }) => {
      checkNames(tenant);
      const batchSize = parseCount(opts.batchSize, '--batch-size', 1, 10_000);
      const progress = lazyProgress('re-encrypting ciphertexts');
      const interrupt = interruptSignal();
      const result = await withManager((manager) =>
        manager.keys.rotateTenant(tenant, {
          batchSize,
          signal: interrupt.signal,
          onProgress: ({ done, total }) => progress.update(done, total),
        }),
      ).finally(() => {
        progress.stop();
        interrupt.dispose();
      });
      if (opts.json) return printJson({ tenant, ...result });
      note(
        `${result.resumed ? 'finished the interrupted rotation' : 'rotated'} ${tenant}'s data key to version ${result.keyVersion} (from ${result.previousKeyVersion}); re-encrypted ${result.reencrypted} ciphertext(s); destroyed key version(s) ${result.destroyedKeyVersions.join(', ') || '-'}`,
      );
    });
}

export function purgeTenant(program: Command): void {
  program
    .command('purge-tenant')
    .description(
      'Crypto-shred a tenant: delete its data keys, secrets and versions in one transaction (its audit chain stays). Irreversible: asks for confirmation on a terminal; needs --yes otherwise.',
    )
    .argument('<tenant>', 'tenant id')
    .option('-y, --yes', 'do not ask for confirmation (required when standard input is not a terminal)')
    .option('--json', 'print { tenant, keys, secrets, versions } as JSON')
    .addHelpText(
      'after',
      `
Backups taken before the purge still hold the tenant's wrapped keys: see docs/runbooks/rotate-secrets.md.
${examples('tenant-secrets purge-tenant tenant-123            # asks: type the tenant id to confirm', 'tenant-secrets purge-tenant tenant-123 --yes --json')}`,
    )
    .action(async (tenant: string, opts: { yes?: boolean; json?: boolean }) => {
      checkNames(tenant);
      await confirmIrreversible(`purging tenant ${tenant} (every secret and data key)`, tenant, opts.yes);
      const result = await withManager((manager) => manager.keys.purgeTenant(tenant));
      if (opts.json) return printJson({ tenant, ...result });
      note(
        `purged tenant ${tenant}: ${result.keys} data key(s), ${result.secrets} secret(s), ${result.versions} version(s)`,
      );
    });
}

export function unregisterMasterKey(program: Command): void {
  program
    .command('unregister-master-key')
    .description(
      "Take a master key's power to vouch for tenants away (a retired or leaked key, once its successor is registered): it can no longer create a tenant's first data key or prove a tenant. Data keys it still wraps keep working for holders of that key until rotate-master-key moves them. Owner or operator role.",
    )
    .argument(
      '<master-key-id>',
      "the key's id, mk_ followed by 16 hex digits (tenant-secrets status lists them)",
    )
    .option(
      '--force',
      'also unregister the only registered key (no new tenant can be created until one is registered)',
    )
    .option('--json', 'print { masterKeyId, unregistered } as JSON')
    .addHelpText(
      'after',
      `
A leaked key: deploy a new current key, rotate-master-key, then unregister the old id (see
docs/runbooks/master-key-registration.md).
${examples('tenant-secrets unregister-master-key mk_0123456789abcdef', 'tenant-secrets unregister-master-key mk_0123456789abcdef --json')}`,
    )
    .action(async (id: string, opts: { force?: boolean; json?: boolean }) => {
      const result = await withManager((manager) =>
        manager.keys.unregister(id, { force: opts.force === true }),
      );
      if (opts.json) return printJson(result);
      note(
        result.unregistered
          ? `unregistered master key ${result.masterKeyId}: it can no longer vouch for tenants`
          : `master key ${result.masterKeyId} was not registered: nothing changed`,
      );
    });
}
