import { createSecretsManager } from '../../api/manager.js';
import { UnauthorizedError, UnknownMasterKeyError } from '../../base/errors.js';
import { Keyring } from '../../crypto/keyring.js';
import { MasterKey } from '../../crypto/master-key.js';
import { createProgress } from '../progress.js';
import type { DemoStep } from './context.js';

/** Demo steps about master keys: an unregistered key refused, and a rotation with progress. */

export const unregisteredMasterKey: DemoStep = {
  title: 'A master key the database does not know acts for no tenant',
  async run({ pool, tenantA, say }) {
    const stranger = createSecretsManager({
      pool,
      keyring: new Keyring(MasterKey.generate()),
      actor: 'stranger',
      auditSealIntervalMs: 0,
    });
    try {
      for (const [label, attempt] of [
        [`get ${tenantA} stripe/api-key`, () => stranger.get(tenantA, 'stripe/api-key')],
        ['set initech db/password', () => stranger.set('initech', 'db/password', 'hunter2')],
      ] as const) {
        try {
          await attempt();
          throw new Error('demo: an unregistered master key was let through');
        } catch (error) {
          if (!(error instanceof UnauthorizedError)) throw error;
          say(`${label} -> ${error.name} [${error.code}]`);
        }
      }
    } finally {
      await stranger.close();
    }
    say(
      "Every function checks the caller's key bundle first: it must unwrap the tenant's data key, or carry",
    );
    say('a proof from a master key registered by migrate. Same answer whether the secret or tenant exists.');
  },
};

export const rotateMasterKey: DemoStep = {
  title: 'Rotate the master key',
  async run({ manager, pool, masterKey, tenantA, say }) {
    const extra = Array.from({ length: 150 }, (_, i) => `tenant-${String(i).padStart(3, '0')}`);
    for (let i = 0; i < extra.length; i += 25) {
      await Promise.all(extra.slice(i, i + 25).map((t) => manager.set(t, 'db/password', `pw-${t}`)));
    }
    const newKey = MasterKey.generate();
    say(
      `${extra.length} more tenants stored; new master key ${newKey.id}, the old one ${masterKey.id} kept as previous`,
    );
    const rotating = createSecretsManager({
      pool,
      keyring: new Keyring(newKey, [masterKey]),
      actor: 'demo',
      auditSealIntervalMs: 0,
    });
    const onlyNew = createSecretsManager({
      pool,
      keyring: new Keyring(newKey),
      actor: 'demo',
      auditSealIntervalMs: 0,
    });
    try {
      const progressStream = process.stdout.isTTY
        ? process.stdout
        : // not a terminal: plain progress lines, indented like the rest
          ({
            isTTY: false,
            write: (text: string) => {
              say(text.trimEnd());
              return true;
            },
          } as unknown as NodeJS.WritableStream);
      let progress: ReturnType<typeof createProgress> | undefined;
      const result = await rotating.keys.rotateMaster({
        batchSize: 10,
        onProgress: async ({ done, total }) => {
          progress ??= createProgress({
            label: '  re-wrapping data keys',
            total,
            stream: progressStream,
            step: 0.25,
          });
          progress.update(done);
          await new Promise((resolve) => setTimeout(resolve, 15)); // slow enough to watch the bar
        },
      });
      progress?.stop();
      say(
        `rotateMasterKey() -> ${result.rewrapped} data keys re-wrapped in ${result.batches} batches; no secret re-encrypted`,
      );
      const status = await rotating.keys.status();
      say(
        `keyStatus() -> ${Object.entries(status.byMasterKey)
          .map(([id, u]) => `${id}: ${u.keys} keys`)
          .join(', ')}; readyToDropPrevious: ${status.readyToDropPrevious}`,
      );
      say(
        `with only the new key: get ${tenantA} stripe/api-key = ${await onlyNew.get(tenantA, 'stripe/api-key')}`,
      );
      try {
        await manager.get(tenantA, 'stripe/api-key');
        throw new Error('demo: the old key still reads after the rotation');
      } catch (error) {
        if (!(error instanceof UnknownMasterKeyError)) throw error;
        say(`with only the old key: ${error.name} [${error.code}]`);
      }
    } finally {
      await rotating.close();
      await onlyNew.close();
    }
  },
};
