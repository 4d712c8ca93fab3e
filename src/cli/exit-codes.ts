import type { ErrorCode } from '../base/errors.js';
import { TenantSecretsError } from '../base/errors.js';

/** The CLI's documented exit codes. Stable: scripts branch on them. */
export const EXIT = {
  OK: 0,
  ERROR: 1,
  USAGE: 2,
  NOT_FOUND: 3,
  CONFLICT: 4,
  INTEGRITY: 5,
  CONFIGURATION: 6,
  UNAVAILABLE: 7,
  /** Interrupted (Ctrl-C / SIGINT, SIGTERM) or cancelled at a prompt: 128 + SIGINT, as shells report it. */
  INTERRUPTED: 130,
} as const;

const BY_CODE: Partial<Record<ErrorCode, number>> = {
  INVALID_INPUT: EXIT.USAGE,
  NOT_FOUND: EXIT.NOT_FOUND,
  CONFLICT: EXIT.CONFLICT,
  INTEGRITY: EXIT.INTEGRITY,
  UNKNOWN_MASTER_KEY: EXIT.INTEGRITY,
  // The installation differs from what migrate() installed (drift, a foreign trigger, a stray grant).
  SCHEMA_DRIFT: EXIT.INTEGRITY,
  CONFIGURATION: EXIT.CONFIGURATION,
  // The configured master key does not authorise the tenant (another key, or not registered).
  UNAUTHORIZED: EXIT.CONFIGURATION,
  SCHEMA_NOT_READY: EXIT.CONFIGURATION,
  LEGACY_SCHEMA: EXIT.CONFIGURATION,
  DATABASE_UNAVAILABLE: EXIT.UNAVAILABLE,
  POOL_EXHAUSTED: EXIT.UNAVAILABLE,
  DATABASE_READ_ONLY: EXIT.UNAVAILABLE,
  TIMEOUT: EXIT.UNAVAILABLE,
  // A legacy import stops on data it cannot convert safely (wrong key, undecryptable row, clash): the
  // data needs a look, like an integrity failure; nothing was lost.
  LEGACY_IMPORT: EXIT.INTEGRITY,
  ABORTED: EXIT.INTERRUPTED,
};

/** Exit code for anything thrown by a command. */
export function exitCodeFor(error: unknown): number {
  if (error instanceof TenantSecretsError) return BY_CODE[error.code] ?? EXIT.ERROR;
  return EXIT.ERROR;
}

/** The table printed by `tenant-secrets --help` and copied into docs/cli.md. */
export const EXIT_CODES_HELP = `Exit codes:
  0    success
  1    any other error (e.g. EXPIRED, DATABASE)
  2    usage error, invalid input, or an irreversible command not confirmed (INVALID_INPUT)
  3    not found (NOT_FOUND)
  4    version conflict (CONFLICT)
  5    integrity failure, unknown master key, audit tampering found, the installation changed by
       hand (status), or a legacy import stopped on a row (INTEGRITY, UNKNOWN_MASTER_KEY,
       SCHEMA_DRIFT, LEGACY_IMPORT)
  6    configuration error, the master key does not authorise the tenant, or tenant-secrets is
       not installed (status) or not ready in this database (CONFIGURATION, UNAUTHORIZED,
       SCHEMA_NOT_READY, LEGACY_SCHEMA)
  7    database unavailable, read-only, out of connections, or a statement timed out
       (DATABASE_UNAVAILABLE, DATABASE_READ_ONLY, POOL_EXHAUSTED, TIMEOUT)
  130  interrupted (Ctrl-C, SIGTERM) or cancelled (ABORTED): finished batches are committed;
       run the command again to resume`;
