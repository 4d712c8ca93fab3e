import { spawnSync } from 'node:child_process';
import { describe, expect, test } from 'vitest';

/**
 * The suite's exit code is CI's only signal. Each fixture in test/fixtures/exit-code must make a
 * child vitest exit non-zero with a summary that says so, on the default path (the embedded
 * PostgreSQL the global setup starts, whose package installs process exit hooks) and, when this run
 * has one, against TEST_DATABASE_URL. A regression here once let failing tests exit 0.
 */
const FIXTURES = {
  failing: /Tests\s+1 failed \(1\)/,
  'load-error': /Test Files\s+1 failed \(1\)/,
  'hook-timeout': /Hook timed out/,
} as const;

function runFixture(fixture: string, databaseUrl: string | undefined) {
  const env: NodeJS.ProcessEnv = { ...process.env, EXIT_CODE_FIXTURE: fixture, CI: '1', NO_COLOR: '1' };
  for (const name of [
    'TEST_DATABASE_URL',
    'TEST_SERVER_LOG',
    'TEST_VIA_PGBOUNCER',
    'VITEST',
    'VITEST_POOL_ID',
    'VITEST_WORKER_ID',
  ]) {
    delete env[name];
  }
  if (databaseUrl) env.TEST_DATABASE_URL = databaseUrl;
  const child = spawnSync(
    process.execPath,
    ['node_modules/vitest/vitest.mjs', 'run', '-c', 'test/fixtures/exit-code/vitest.config.ts'],
    { env, encoding: 'utf8', timeout: 120_000 },
  );
  return { status: child.status, signal: child.signal, output: `${child.stdout}\n${child.stderr}` };
}

const paths: [string, string | undefined][] = [['embedded PostgreSQL (the default path)', undefined]];
if (process.env.TEST_DATABASE_URL) paths.push(['TEST_DATABASE_URL', process.env.TEST_DATABASE_URL]);

describe.each(paths)('a failing run exits non-zero: %s', (_label, databaseUrl) => {
  test.each(Object.entries(FIXTURES))(
    '%s',
    (fixture, summary) => {
      const run = runFixture(fixture, databaseUrl);
      expect(run.signal, run.output).toBeNull();
      expect(run.status, run.output).toBe(1);
      expect(run.output).toMatch(/Test Files\s+1 failed/);
      expect(run.output).toMatch(summary);
    },
    150_000,
  );
});
