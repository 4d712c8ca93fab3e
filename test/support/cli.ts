import { type ChildProcessWithoutNullStreams, spawn, spawnSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { onTestFinished } from 'vitest';

/** The built CLI (`npm test` builds first), driven as a subprocess, as an operator would. */
export const CLI = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'dist', 'cli', 'main.js');

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/**
 * A child started inside a test is killed when the test ends (passed, failed or timed out), so a test
 * that timed out on a slow machine leaves no process behind working on its database. Started from a
 * hook, it is the hook's to stop.
 */
export function killWhenTestEnds<
  T extends { exitCode: number | null; signalCode: string | null; kill(signal: NodeJS.Signals): boolean },
>(child: T): T {
  try {
    onTestFinished(() => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    });
  } catch {
    // Not inside a test (a hook or the file's top level).
  }
  return child;
}

/** Starts the CLI with a clean environment: nothing inherited but PATH and HOME. */
export function startCli(
  args: string[],
  env: Record<string, string | undefined> = {},
): ChildProcessWithoutNullStreams {
  return killWhenTestEnds(
    spawn(process.execPath, [CLI, ...args], {
      env: { PATH: process.env.PATH, HOME: process.env.HOME, ...env },
      stdio: ['pipe', 'pipe', 'pipe'],
    }),
  );
}

/** Writes `input` to the child's stdin (not a terminal), then collects its output and exit code. */
export function finishCli(child: ChildProcessWithoutNullStreams, input = ''): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => {
      stdout += d;
    });
    child.stderr.setEncoding('utf8').on('data', (d: string) => {
      stderr += d;
    });
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
    child.stdin.end(input);
  });
}

export function runCli(
  args: string[],
  options: { input?: string; env?: Record<string, string | undefined> } = {},
): Promise<CliResult> {
  return finishCli(startCli(args, options.env), options.input);
}

/** util-linux `script` gives the CLI a pseudo-terminal, so its prompts can be driven. */
export const hasScript = spawnSync('script', ['--version'], { stdio: 'ignore' }).status === 0;

/**
 * Runs the CLI on a pseudo-terminal; when its output first shows `prompt`, types `answer` and Enter
 * (no prompt: types nothing). Returns the exit code and everything the terminal showed.
 */
export function runOnTerminal(
  args: string[],
  env: Record<string, string | undefined>,
  prompt?: string,
  answer = '',
): Promise<{ code: number | null; output: string }> {
  const command = [process.execPath, CLI, ...args].join(' ');
  return new Promise((resolve, reject) => {
    const child = killWhenTestEnds(
      spawn('script', ['-qefc', command, '/dev/null'], {
        env: { PATH: process.env.PATH, HOME: process.env.HOME, ...env },
        stdio: ['pipe', 'pipe', 'pipe'],
      }),
    );
    let output = '';
    let sent = false;
    const collect = (d: Buffer) => {
      output += d.toString('utf8');
      if (!sent && prompt !== undefined && output.includes(prompt)) {
        sent = true;
        child.stdin.write(`${answer}\r`);
      }
    };
    child.stdout.on('data', collect);
    child.stderr.on('data', collect);
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, output }));
  });
}
