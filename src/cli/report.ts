import { CommanderError } from 'commander';
import { OperationAbortedError, TenantSecretsError } from '../base/errors.js';
import { EXIT, exitCodeFor } from './exit-codes.js';
import { jsonText, safe, safeLines } from './safe-text.js';

/**
 * How a failed command is reported. On stderr always, as a line for humans; with `--json` also as
 * exactly one JSON document on stdout, `{ "error": { code, message, exitCode } }`, so a script that
 * parses stdout gets a document whatever went wrong. The exit code is the same either way.
 */

/** The JSON document printed on stdout when a command run with `--json` fails. */
export interface ErrorDocument {
  error: {
    /** A library error code (`NOT_FOUND`, `INVALID_INPUT`, `ABORTED`, ...), or `UNEXPECTED`. */
    code: string;
    /** Never contains a secret value or key. */
    message: string;
    exitCode: number;
    /** Command-specific facts about the failure (e.g. the audit verification result). */
    details?: unknown;
  };
}

/** The `code` of an error that is not one of the library's (a bug): its text is shown only with --debug. */
export const UNEXPECTED = 'UNEXPECTED';

let jsonMode = false;
let commandExitCode = 0;

/** The exit code of a command that succeeded on its own terms (`run`: its command's exit code). */
export function setCommandExitCode(code: number): void {
  commandExitCode = code;
}

export function commandExit(): number {
  return commandExitCode;
}

/** Whether failures are also reported as a JSON document on stdout (the command runs with --json). */
export function setJsonErrors(on: boolean): void {
  jsonMode = on;
}

export function jsonErrors(): boolean {
  return jsonMode;
}

/**
 * Whether `flag` (e.g. `--json`) is among the arguments before `--` (everything after belongs to
 * another program). Used before the arguments are parsed, so that usage errors follow it too.
 */
export function argvHasFlag(argv: readonly string[], flag: string): boolean {
  const end = argv.indexOf('--');
  return (end < 0 ? argv : argv.slice(0, end)).includes(flag);
}

/** Facts to attach to an error for its `--json` document (never secret). */
export function withJsonDetails<E extends Error>(error: E, details: unknown): E {
  Object.defineProperty(error, 'jsonDetails', { value: details, enumerable: false });
  return error;
}

interface Failure {
  code: string;
  message: string;
  exitCode: number;
  /** The stderr line (without the `tenant-secrets: ` prefix); undefined when already printed (commander). */
  human?: string;
}

const isPromptCancel = (error: unknown): boolean =>
  error instanceof Error && (error.name === 'ExitPromptError' || error.name === 'AbortPromptError');

function describe(error: unknown, debug: boolean): Failure | undefined {
  if (error instanceof CommanderError) {
    // Commander has printed its own message (or the help) on stderr already.
    if (error.code === 'commander.helpDisplayed' || error.code === 'commander.version') return undefined;
    const message =
      error.code === 'commander.help'
        ? 'no command given (run with --help for usage)'
        : error.message.replace(/^error: /, '');
    return { code: 'INVALID_INPUT', message, exitCode: EXIT.USAGE };
  }
  if (isPromptCancel(error)) {
    return { code: 'ABORTED', message: 'cancelled', exitCode: EXIT.INTERRUPTED, human: 'cancelled' };
  }
  if (error instanceof OperationAbortedError) {
    return {
      code: error.code,
      message: error.message,
      exitCode: exitCodeFor(error),
      human: `interrupted after ${error.done}; run again to resume`,
    };
  }
  if (error instanceof TenantSecretsError) {
    return {
      code: error.code,
      message: error.message,
      exitCode: exitCodeFor(error),
      human: `error [${error.code}]: ${error.message}`,
    };
  }
  // Not one of ours: its message could quote anything, so it is only shown with --debug.
  const kind = error instanceof Error ? error.name : typeof error;
  const message =
    debug && error instanceof Error
      ? `unexpected error (${kind}): ${error.message}`
      : `unexpected error (${kind}); run with --debug for details`;
  return { code: UNEXPECTED, message, exitCode: EXIT.ERROR, human: message };
}

/** Writes the `--json` error document (when in JSON mode). */
function printDocument(failure: Failure, details: unknown): void {
  if (!jsonMode) return;
  const doc: ErrorDocument = {
    error: { code: failure.code, message: failure.message, exitCode: failure.exitCode },
  };
  if (details !== undefined) doc.error.details = details;
  process.stdout.write(`${jsonText(doc, 2)}\n`);
}

/** Reports anything a command threw (stderr; with --json also stdout) and returns the exit code. */
export function reportError(error: unknown, debug: boolean): number {
  const failure = describe(error, debug);
  if (failure === undefined) return EXIT.OK;
  if (failure.human !== undefined) process.stderr.write(`tenant-secrets: ${safe(failure.human)}\n`);
  printDocument(failure, (error as { jsonDetails?: unknown } | null | undefined)?.jsonDetails);
  if (debug) {
    const details = (error as { debugDetails?: string } | null | undefined)?.debugDetails;
    process.stderr.write(`${safeLines(error instanceof Error ? (error.stack ?? '') : String(error))}\n`);
    if (details) process.stderr.write(`${safeLines(details)}\n`);
  }
  return failure.exitCode;
}

/**
 * Exits at once, outside the normal error path (a second Ctrl-C during a long operation): the
 * message goes to stderr and, with --json, an `ABORTED` document to stdout.
 */
export function exitInterrupted(message: string): never {
  process.stderr.write(`tenant-secrets: ${safe(message)}\n`);
  printDocument({ code: 'ABORTED', message, exitCode: EXIT.INTERRUPTED }, undefined);
  process.exit(EXIT.INTERRUPTED);
}
