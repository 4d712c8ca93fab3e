import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createSecretsManager } from '../api/manager.js';
import { Keyring } from '../crypto/keyring.js';
import { MasterKey } from '../crypto/master-key.js';
import { schemaExecutor } from '../db/executor.js';
import { createOwnedPool } from '../db/pool.js';
import { migrate } from '../schema/migrate.js';
import { auditTrail, tamperedAuditRecord, verifyAudit } from './demo/audit.js';
import type { DemoContext, DemoStep } from './demo/context.js';
import { rotateMasterKey, unregisteredMasterKey } from './demo/keys.js';
import {
  readSecret,
  rollbackVersion,
  rotateSecret,
  storeSecrets,
  tamperingDetected,
  tenantIsolation,
  whatIsStored,
} from './demo/secrets.js';
import { resolveDataDir } from './embedded/data-dir.js';
import { startEmbedded } from './embedded.js';
import { addCleanup } from './signals.js';

const A = 'acme';
const B = 'globex';

/** The steps of `tenant-secrets demo`, in order. Add a step by writing it in demo/ and listing it here. */
export const DEMO_STEPS: readonly DemoStep[] = [
  storeSecrets,
  readSecret,
  rotateSecret,
  tenantIsolation,
  unregisteredMasterKey,
  whatIsStored,
  tamperingDetected,
  auditTrail,
  rollbackVersion,
  verifyAudit,
  tamperedAuditRecord,
  rotateMasterKey,
];

/**
 * Runs the guided demo on a throwaway embedded PostgreSQL (a temporary directory, removed at the
 * end) and a throwaway master key. Ignores DATABASE_URL and TENANT_SECRETS_MASTER_KEY.
 */
export async function runDemo(
  write: (line: string) => void,
  steps: readonly DemoStep[] = DEMO_STEPS,
): Promise<void> {
  const t0 = performance.now();
  const base = mkdtempSync(join(tmpdir(), 'tenant-secrets-demo-'));
  chmodSync(base, 0o755);
  try {
    const key = MasterKey.generate();
    write('tenant-secrets demo: a throwaway database and key, removed at the end.');
    write('');
    const { dir } = resolveDataDir(join(base, 'pgdata'));
    const db = await startEmbedded(dir, { persistent: false });
    // Ctrl-C: stop the throwaway server and remove its files before exiting.
    const disposeCleanup = addCleanup(async () => {
      await db.stop();
      rmSync(base, { recursive: true, force: true });
    });
    try {
      write(`  embedded PostgreSQL at ${dir} (not for production)`);
      write(`  initdb ${Math.round(db.initMs)} ms, start ${Math.round(db.startMs)} ms`);
      write(`  master key ${key.id} (its id is a fingerprint; the key itself stays in this process)`);
      const pool = createOwnedPool({ connectionString: db.url, max: 4 });
      try {
        const result = await migrate(schemaExecutor(pool, '"public"'), {
          schema: 'public',
          keyring: new Keyring(key),
        });
        write(`  schema installed: ${result.applied.join(', ')} (version ${result.version})`);
        write(`  master key ${result.registered.join(', ')} registered: it may vouch for new tenants`);
        const manager = createSecretsManager({
          pool,
          keyring: new Keyring(key),
          actor: 'demo',
          auditSealIntervalMs: 0,
        });
        const ctx: DemoContext = {
          manager,
          pool,
          tenantA: A,
          tenantB: B,
          masterKey: key,
          say: (line = '') => write(line === '' ? '' : `  ${line}`),
        };
        try {
          for (const [index, step] of steps.entries()) {
            write('');
            write(`== ${index + 1}. ${step.title}`);
            await step.run(ctx);
          }
        } finally {
          await manager.close();
        }
      } finally {
        await pool.end().catch(() => undefined);
      }
    } finally {
      await db.stop();
      disposeCleanup();
    }
    write('');
    write(`Done in ${((performance.now() - t0) / 1000).toFixed(1)} s. The database and the key are gone.`);
    write(
      'Next: export TENANT_SECRETS_MASTER_KEY="$(tenant-secrets keygen)" and try `tenant-secrets --help`.',
    );
  } finally {
    rmSync(base, { recursive: true, force: true });
  }
}
