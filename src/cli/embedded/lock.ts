import { lock } from 'proper-lockfile';
import { ConfigurationError, DatabaseUnavailableError } from '../../base/errors.js';
import type { Paths } from './files.js';
import { errorCode, sleep } from './processes.js';

/**
 * The lock that serialises the commands sharing one embedded PostgreSQL while they initialise,
 * start, join, leave or stop it: proper-lockfile's `<dir>.lock` directory (made with mkdir, which
 * is atomic). Its holder refreshes the directory's mtime every LOCK_UPDATE_MS; a lock not refreshed
 * for LOCK_STALE_MS was left by a killed command and is taken over. proper-lockfile also removes the
 * lock when this process exits holding it (a second Ctrl-C).
 */

/** How long a command waits for another one that initialises, starts or stops the server. */
const LOCK_TIMEOUT_MS = 180_000;
/** A lock not refreshed for this long was left by a command that is gone. */
const LOCK_STALE_MS = 10_000;
const LOCK_UPDATE_MS = 2_000;

/**
 * Runs `fn` holding `<dir>.lock`, released when `fn` settles. Waits for a live holder, at most
 * LOCK_TIMEOUT_MS, announcing the wait once through `notify`.
 *
 * If the lock is lost while `fn` runs (this process stalled past LOCK_STALE_MS and another command
 * took the lock over), what `fn` saw of the server may no longer be true: joining (`ifLost:
 * 'throw'`, before the command has done anything) fails with a DatabaseUnavailableError; leaving
 * (`'warn'`, after the command's work is done) says so through `notify`.
 */
export async function withLock<T>(
  paths: Paths,
  notify: (line: string) => void,
  ifLost: 'throw' | 'warn',
  fn: () => Promise<T>,
): Promise<T> {
  let compromised: Error | undefined;
  const started = Date.now();
  let announced = false;
  let release: () => Promise<void>;
  for (;;) {
    try {
      release = await lock(paths.dir, {
        lockfilePath: paths.lock,
        // The data directory may not exist yet (a first start); the lock lives beside it.
        realpath: false,
        stale: LOCK_STALE_MS,
        update: LOCK_UPDATE_MS,
        retries: 0,
        onCompromised: (error) => {
          compromised = error;
        },
      });
      break;
    } catch (error) {
      if (errorCode(error) !== 'ELOCKED') {
        throw new ConfigurationError(
          `cannot create the lock ${paths.lock} (${errorCode(error) ?? 'error'}); set TENANT_SECRETS_DATA_DIR to a writable place`,
        );
      }
    }
    if (Date.now() - started > LOCK_TIMEOUT_MS) {
      throw new DatabaseUnavailableError(
        `timed out waiting for ${paths.lock}: another tenant-secrets command is starting or stopping the embedded PostgreSQL at ${paths.dir}`,
      );
    }
    if (!announced) {
      announced = true;
      notify('waiting for another tenant-secrets command to start or stop the embedded PostgreSQL...');
    }
    await sleep(50 + Math.floor(Math.random() * 100));
  }
  try {
    const result = await fn();
    if (compromised) {
      const what = `lost the lock ${paths.lock} of the embedded PostgreSQL at ${paths.dir} (this process stalled for more than ${LOCK_STALE_MS / 1000} s)`;
      if (ifLost === 'throw')
        throw new DatabaseUnavailableError(`${what}; the command did not run, run it again`);
      notify(`${what} while leaving it; the next command will take the server over`);
    }
    return result;
  } finally {
    // Already released when compromised (ERELEASED): nothing of ours to remove.
    await release().catch(() => undefined);
  }
}
