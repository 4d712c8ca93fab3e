import type { Reporter, TestRunEndReason } from 'vitest/node';
import { RUN_PASSED_ENV } from './pgbouncer.js';

/**
 * For runs through PgBouncer: on failure, names PgBouncer's log (kept in its temporary directory);
 * on success, lets the global teardown remove that directory.
 */
export default class PgBouncerReporter implements Reporter {
  onTestRunEnd(_modules: unknown, _errors: unknown, reason: TestRunEndReason): void {
    if (reason === 'passed') {
      process.env[RUN_PASSED_ENV] = '1';
      return;
    }
    const log = process.env.TENANT_SECRETS_PGBOUNCER_LOG;
    if (log) console.error(`\nThe run failed; PgBouncer's log: ${log}\n`);
  }
}
