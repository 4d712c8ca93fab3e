import { defineConfig, mergeConfig } from 'vitest/config';
import PgBouncerReporter from './test/support/pgbouncer-reporter.js';
import base from './vitest.config.js';

/**
 * The suite through PgBouncer in transaction pooling mode (`.ci/run` runs it on PostgreSQL 15 and 18):
 * `npm run build && npx vitest run -c vitest.pgbouncer.config.ts`, with TEST_DATABASE_URL as usual.
 *
 * Every file that talks to the database through the library or the CLI runs through the pooler: every
 * operation, migrations and concurrent migrators, master-key and tenant-key rotation, purge, legacy
 * import, the audit trail and its sealer, faults, the CLI's commands, plus test/pgbouncer.test.ts,
 * which is skipped in direct runs. The library, the CLI and every URL a test hands them go through
 * PgBouncer; the tests' own administration (`adminQuery`: CREATE/DROP DATABASE, tampering, inspection)
 * stays direct. Files left out, each with why it runs direct only (the direct runs cover them):
 */
const DIRECT_ONLY = [
  // Reads the server's WAL files and log. Its positive control (a plain client's bind parameters do
  // reach the log) assumes the client gets a session of its own; through a transaction pooler that
  // client inherits whatever session settings the previous user of the server connection left, here
  // the library's own quieting, so the control cannot hold. What the file checks through a pooler is
  // checked by test/pgbouncer.test.ts ('bind parameters stay out of the server log…').
  'test/leaks.test.ts',
  // The CLI's own embedded PostgreSQL (no DATABASE_URL): never reaches the server under test.
  'test/cli-embedded.test.ts',
  // No database at all: option and key validation, progress rendering.
  'test/config.test.ts',
  'test/cli-progress.test.ts',
  'test/master-key-quality.test.ts',
  // The CLI's input and output layer (bounded stdin, --json error documents on every path, the `run`
  // command's environment handling): what they check happens in the CLI process before or after the
  // database call, identical whichever way it is connected; the commands themselves run through the
  // pooler in test/cli.test.ts and test/cli-ops.test.ts.
  'test/cli-stdin.test.ts',
  'test/cli-output.test.ts',
  'test/cli-run.test.ts',
  // The npm tarball's contents and module formats; its one database call is a smoke test.
  'test/packaging.test.ts',
];

process.env.TEST_VIA_PGBOUNCER = '1';

export default mergeConfig(
  base,
  defineConfig({
    test: {
      exclude: [...DIRECT_ONLY, '**/node_modules/**'],
      reporters: ['default', new PgBouncerReporter()],
    },
  }),
);
