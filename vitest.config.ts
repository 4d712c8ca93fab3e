import { readdirSync, readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { defineConfig } from 'vitest/config';
import PgBouncerReporter from './test/support/pgbouncer-reporter.js';

/**
 * One config; one project per test folder, and the folders mirror the layers of src/ (base, crypto,
 * db, schema, secrets, audit, keys, legacy, api, cli) plus package/ (the npm tarball) and suite/ (the
 * suite's own exit code). `npx vitest run --project audit` runs one layer. One more project, `faults`,
 * holds the files that stop a node of a Citus cluster (FAULT_FILES): it runs after all the others.
 *
 * Stages (`.ci/run` runs all three). A test file is in every stage unless it says why not, on a line
 * of its own near the top:
 *   // suite-scope: once — <why>     runs only in the first stage (what does not depend on the server)
 *   // suite-scope: direct — <why>   not through PgBouncer
 *
 *   npm test                                   every file; embedded PostgreSQL 18, or TEST_DATABASE_URL
 *   TEST_STAGE=server TEST_DATABASE_URL=… …    a second server: every file but the `once` ones
 *   TEST_STAGE=pooler …                        through PgBouncer in transaction mode (also sets
 *                                              TEST_VIA_PGBOUNCER): every file but `once` and `direct`
 *   TEST_STAGE=citus TEST_DATABASE_URL=… TEST_CITUS_URL=…   the files of CITUS_FILES on a Citus
 *                                              cluster: every database made a Citus database and
 *                                              migrated with { distribute: true } (support/db.ts);
 *                                              TEST_CITUS_DIR (the cluster's directory) lets the
 *                                              fault files stop and start a worker
 */
const STAGE = process.env.TEST_STAGE ?? 'all';
if (!['all', 'server', 'pooler', 'citus'].includes(STAGE)) {
  throw new Error(`TEST_STAGE must be all, server, pooler or citus (got ${STAGE})`);
}

/**
 * Files that stop and restart a node of the Citus cluster: a project of their own, run alone after
 * every other file (groupOrder), in every stage (without a cluster they skip, saying why).
 */
const FAULT_FILES = ['test/schema/distributed-faults.test.ts'];

/** The library files the Citus stage runs, distributed on a 3-node cluster (docs/scaling.md). */
const CITUS_FILES = [
  ...FAULT_FILES,
  'test/schema/distributed.test.ts',
  'test/api/original-interface.test.ts',
  'test/secrets/isolation.test.ts',
  'test/secrets/smoke.test.ts',
  'test/secrets/lifecycle.test.ts',
  'test/audit/records.test.ts',
  'test/keys/tenant-key-rotation.test.ts',
];
if (STAGE === 'pooler') process.env.TEST_VIA_PGBOUNCER = '1';

const SCOPE = /^\/\/ suite-scope: (once|direct) — \S/m;
const FOLDERS = readdirSync('test', { withFileTypes: true })
  .filter((entry) => entry.isDirectory() && !['support', 'fixtures'].includes(entry.name))
  .map((entry) => entry.name);

/** Files of `folder` this stage leaves out, by their own scope line. */
function leftOut(folder: string): string[] {
  if (STAGE === 'all') return [];
  const out: string[] = [];
  for (const name of readdirSync(join('test', folder), { recursive: true, encoding: 'utf8' })) {
    if (!name.endsWith('.test.ts')) continue;
    const path = join('test', folder, name);
    const scope = SCOPE.exec(readFileSync(path, 'utf8').slice(0, 2000))?.[1];
    if (scope === 'once' || (scope === 'direct' && STAGE === 'pooler')) out.push(path);
  }
  return out;
}

/**
 * Timeouts are sized from measured durations: the whole suite run beside four other jobs on this
 * 2-core machine, once at load average 10-16 and once at about 20. Slowest test per folder at load
 * 20: cli 106 s (child processes, embedded servers), package 60 s (tsc on the installed package),
 * schema 45 s, secrets 44 s, db 42 s, suite 41 s, keys 27 s, the others under 15 s (idle: a few
 * seconds each). Every timeout is at least twice the slowest test at load 20; the few largest
 * tests (test/audit/scale, partitions) set their own. A timeout is not a speed check (the bench
 * is): it catches a hang. A test that times out also stops, since its connections and child
 * processes end with it (test/support/db.ts connectForTest, test/support/cli.ts killWhenTestEnds).
 */
const TEST_TIMEOUT_MS: Record<string, number> = { cli: 300_000, package: 240_000 };

export default defineConfig({
  test: {
    // Once for every project: the server (and PgBouncer) the whole run uses.
    globalSetup: ['test/support/global-setup.ts'],
    pool: 'forks',
    // Each test file has a database of its own, and much of a file's time is spent waiting (child
    // processes, the server): two files at once even on two cores. Measured on a 2-core machine,
    // whole suite: 417 s with one worker (vitest's default there), 299 s with two, 273 s with three.
    maxWorkers: Math.max(2, availableParallelism() - 1),
    minWorkers: 1,
    reporters: STAGE === 'pooler' ? ['default', new PgBouncerReporter()] : ['default'],
    projects: [
      ...FOLDERS.map((folder) => ({
        test: {
          name: folder,
          include:
            STAGE === 'citus'
              ? CITUS_FILES.filter((file) => file.startsWith(`test/${folder}/`))
              : [`test/${folder}/**/*.test.ts`],
          exclude: ['**/node_modules/**', ...FAULT_FILES, ...leftOut(folder)],
          testTimeout: TEST_TIMEOUT_MS[folder] ?? 120_000,
          hookTimeout: 240_000,
        },
      })),
      {
        test: {
          name: 'faults',
          include: FAULT_FILES,
          exclude: ['**/node_modules/**', ...leftOut('schema')],
          sequence: { groupOrder: 1 },
          // A worker stopped, recovered and started again on a loaded 2-core machine: generous.
          testTimeout: 600_000,
          hookTimeout: 240_000,
        },
      },
    ],
  },
});
