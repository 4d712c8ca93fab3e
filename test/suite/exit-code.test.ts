import { spawnSync } from 'node:child_process';
import { describe, expect, test } from 'vitest';

/**
 * The suite's exit code is CI's only signal. Each fixture in test/fixtures/exit-code must make a
 * child vitest exit non-zero with a summary that says so, in this run's own stage: the default path
 * (the embedded PostgreSQL the global setup starts, whose package installs process exit hooks) when
 * the run is `npm test`, else the stage's server (TEST_DATABASE_URL, TEST_STAGE=pooler through
 * PgBouncer). Each stage checks its own path; the default one is checked by the stage that runs it,
 * so the others do not start an embedded server three more times. A regression here once let
 * failing tests exit 0.
 */
const FIXTURES = {
  failing: /Tests\s+1 failed \(1\)/,
  'load-error': /Test Files\s+1 failed \(1\)/,
  'hook-timeout': /Hook timed out/,
} as const;

interface Stage {
  name: string;
  env: Record<string, string>;
}

const own: Record<string, string> = {};
for (const name of ['TEST_DATABASE_URL', 'TEST_SERVER_LOG', 'TEST_STAGE']) {
  const value = process.env[name];
  if (value) own[name] = value;
}
const stages: Stage[] =
  own.TEST_DATABASE_URL || own.TEST_STAGE
    ? [{ name: `this run's stage (${Object.keys(own).join(', ')})`, env: own }]
    : [{ name: 'embedded PostgreSQL (the default path)', env: {} }];

function runFixture(fixture: string, stage: Stage) {
  const env: NodeJS.ProcessEnv = { ...process.env, EXIT_CODE_FIXTURE: fixture, CI: '1', NO_COLOR: '1' };
  const inherited = ['TEST_DATABASE_URL', 'TEST_SERVER_LOG', 'TEST_VIA_PGBOUNCER', 'TEST_STAGE'];
  for (const name of [...inherited, 'VITEST', 'VITEST_POOL_ID', 'VITEST_WORKER_ID']) delete env[name];
  Object.assign(env, stage.env);
  const child = spawnSync(
    process.execPath,
    ['node_modules/vitest/vitest.mjs', 'run', '-c', 'test/fixtures/exit-code/vitest.config.ts'],
    { env, encoding: 'utf8', timeout: 120_000 },
  );
  return { status: child.status, signal: child.signal, output: `${child.stdout}\n${child.stderr}` };
}

describe.each(stages)('a failing run exits non-zero: $name', (stage) => {
  test.each(Object.entries(FIXTURES))(
    '%s',
    (fixture, summary) => {
      const run = runFixture(fixture, stage);
      expect(run.signal, run.output).toBeNull();
      expect(run.status, run.output).toBe(1);
      expect(run.output).toMatch(/Test Files\s+1 failed/);
      expect(run.output).toMatch(summary);
    },
    150_000,
  );
});
