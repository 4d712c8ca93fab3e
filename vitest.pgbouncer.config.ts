import { defineConfig } from 'vitest/config';
import PgBouncerReporter from './test/support/pgbouncer-reporter.js';
import base from './vitest.config.js';

/**
 * Through PgBouncer in transaction pooling mode (`.ci/run` runs it on PostgreSQL 15 and 18):
 * `npm run build && npx vitest run -c vitest.pgbouncer.config.ts`, with TEST_DATABASE_URL as usual.
 *
 * A subset: every operation, migrations (fresh, concurrent, from 0.1.0, drift repair), both key
 * rotations and master-key registration, the audit trail and its sealer, caller transactions,
 * prepared-statement fallback, faults and resource errors, and test/pgbouncer.test.ts (skipped in
 * direct runs), which proves the pooler is in the path and multiplexing, that session state does not
 * follow a client, and runs the CLI's commands through it. The library, the CLI and every URL a test
 * hands them go through PgBouncer; the tests' own administration (`adminQuery`: CREATE/DROP DATABASE,
 * tampering, inspection) stays direct.
 *
 * Not here: files that never connect through the library's pool (see vitest.library.config.ts), and
 * test/leaks.test.ts, which reads the server's WAL files and log: its positive control (a plain client's
 * bind parameters do reach the log) assumes the client gets a session of its own, which a transaction
 * pooler does not give; test/pgbouncer.test.ts checks the log through the pooler instead. The direct
 * runs cover the rest.
 */
export const THROUGH_POOLER = [
  'test/pgbouncer.test.ts',
  'test/smoke.test.ts',
  'test/lifecycle.test.ts',
  'test/seed-interface.test.ts',
  'test/errors.test.ts',
  'test/isolation.test.ts',
  'test/cache.test.ts',
  'test/migrate.test.ts',
  'test/upgrade.test.ts',
  'test/drift.test.ts',
  'test/status.test.ts',
  'test/master-key-rotation.test.ts',
  'test/master-key-unregistration.test.ts',
  'test/tenant-key-rotation.test.ts',
  'test/rotation-checkpoints.test.ts',
  'test/legacy-import.test.ts',
  'test/audit-core.test.ts',
  'test/audit-records.test.ts',
  'test/audit-concurrency.test.ts',
  'test/transactions.test.ts',
  'test/prepared-statements.test.ts',
  'test/faults.test.ts',
  'test/resource-faults.test.ts',
];

process.env.TEST_VIA_PGBOUNCER = '1';

// Spread, not mergeConfig: that would append this list to the base config's include.
export default defineConfig({
  ...base,
  test: {
    ...base.test,
    include: THROUGH_POOLER,
    reporters: ['default', new PgBouncerReporter()],
  },
});
