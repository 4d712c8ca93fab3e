import { availableParallelism } from 'node:os';
import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    globalSetup: ['test/support/global-setup.ts'],
    testTimeout: 60_000,
    hookTimeout: 120_000,
    pool: 'forks',
    // Each test file has a database of its own, and much of a file's time is spent waiting (child
    // processes, the server): two files at once even on two cores. Measured on a 2-core machine,
    // whole suite: 417 s with one worker (vitest's default there), 299 s with two, 273 s with three.
    maxWorkers: Math.max(2, availableParallelism() - 1),
    minWorkers: 1,
  },
});
