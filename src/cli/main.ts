#!/usr/bin/env node
import { buildProgram } from './program.js';
import { argvHasFlag, commandExit, reportError, setJsonErrors } from './report.js';
import { installSignalHandlers } from './signals.js';

async function main(argv: string[]): Promise<number> {
  const program = buildProgram();
  // Usage errors happen before any option is parsed: go by the raw arguments first, then (in the
  // program's preAction hook) by the options of the command that actually runs.
  setJsonErrors(argvHasFlag(argv, '--json'));
  try {
    await program.parseAsync(argv);
    return commandExit();
  } catch (error) {
    const debug = Boolean(program.opts().debug) || argvHasFlag(argv, '--debug');
    return reportError(error, debug);
  }
}

installSignalHandlers();

// `tenant-secrets list | head -1`: a closed pipe is not an error of ours; finish and clean up.
process.stdout.on('error', () => undefined);

const code = await main(process.argv);
// Exit explicitly, so that nothing left behind (a timer, a socket) keeps the process alive.
// Writes to pipes and files are synchronous on Linux; the callback covers the other cases.
process.exitCode = code;
process.stdout.write('', () => process.exit(code));
