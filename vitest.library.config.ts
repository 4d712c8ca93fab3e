import { defineConfig, mergeConfig } from 'vitest/config';
import base from './vitest.config.js';

/**
 * The suite's library and SQL files: everything whose outcome can change with the PostgreSQL server
 * it runs against. `.ci/run` runs the whole suite on the embedded PostgreSQL 18, then this on the
 * machine's PostgreSQL 15 (`TEST_DATABASE_URL=… npx vitest run -c vitest.library.config.ts`);
 * `TEST_DATABASE_URL=… npm test` runs everything on your own server.
 *
 * Left out, because they test what happens in Node whatever the server (the library files run each
 * SQL path they reach on this server too):
 */
export const SERVER_INDEPENDENT = [
  // The CLI's front end: arguments, prompts, output, exit codes, stdin bounds, signals, `run`.
  'test/cli.test.ts',
  'test/cli-ops.test.ts',
  'test/cli-output.test.ts',
  'test/cli-stdin.test.ts',
  'test/cli-run.test.ts',
  'test/cli-progress.test.ts',
  // The CLI's own embedded PostgreSQL 18: never uses TEST_DATABASE_URL.
  'test/cli-embedded.test.ts',
  // The npm tarball: contents, module formats, type-checking a consumer.
  'test/packaging.test.ts',
  // No database: option and master-key validation.
  'test/config.test.ts',
  'test/master-key-quality.test.ts',
];

export default mergeConfig(
  base,
  defineConfig({
    test: { exclude: [...SERVER_INDEPENDENT, '**/node_modules/**'] },
  }),
);
