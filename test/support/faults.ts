import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { killWhenTestEnds } from './cli.js';
import { directUrlFor } from './db.js';

export interface ChildEvent {
  t: 'fault' | 'error' | 'done' | 'item' | 'committed-despite-error' | 'injector-error';
  [field: string]: unknown;
}

export interface ChildRun {
  code: number | null;
  signal: NodeJS.Signals | null;
  stderr: string;
  events: ChildEvent[];
  done: ChildEvent | undefined;
  errors: ChildEvent[];
  faults: number;
}

export interface ChildOptions {
  scenario: string;
  database: string;
  masterKey: string;
  previousMasterKeys?: string[];
  seed: number;
  p?: number;
  maxFaults?: number;
  maxAttempts?: number;
  forced?: { at: number; mode: 'before' | 'during'; delayMs?: number }[];
  randomFrom?: number;
  params?: Record<string, unknown>;
  /** Called for each event as it arrives (e.g. to release a lock after the first error). */
  onEvent?: (event: ChildEvent) => void;
}

/**
 * Runs test/support/fault-child.ts in its own Node process (so a crash shows as an exit code) on
 * `database`, directly (the faults are terminated backends of that server).
 */
export function runFaultChild(options: ChildOptions): Promise<ChildRun> {
  const config = {
    scenario: options.scenario,
    url: directUrlFor(options.database),
    adminUrl: directUrlFor(options.database),
    masterKey: options.masterKey,
    previousMasterKeys: options.previousMasterKeys ?? [],
    seed: options.seed,
    p: options.p ?? 0.15,
    maxFaults: options.maxFaults ?? 6,
    maxAttempts: options.maxAttempts ?? 40,
    // At least one fault whatever the draws: at an early statement chosen by the seed.
    forced: options.forced ?? [
      { at: 2 + (options.seed % 3), mode: options.seed % 2 === 0 ? 'during' : 'before' },
    ],
    randomFrom: options.randomFrom ?? 1,
    params: options.params ?? {},
  };
  const child = killWhenTestEnds(
    spawn(
      process.execPath,
      ['--import', 'tsx', fileURLToPath(new URL('./fault-child.ts', import.meta.url))],
      { env: { ...process.env, FAULT_CONFIG: JSON.stringify(config) }, stdio: ['ignore', 'pipe', 'pipe'] },
    ),
  );
  const events: ChildEvent[] = [];
  let stderr = '';
  child.stderr.setEncoding('utf8').on('data', (d: string) => {
    stderr += d;
  });
  createInterface({ input: child.stdout }).on('line', (line) => {
    let event: ChildEvent;
    try {
      event = JSON.parse(line) as ChildEvent;
    } catch {
      stderr += `(stdout) ${line}\n`;
      return;
    }
    events.push(event);
    options.onEvent?.(event);
  });
  return new Promise((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code, signal) => {
      const done = events.find((e) => e.t === 'done');
      resolve({
        code,
        signal,
        stderr,
        events,
        done,
        errors: events.filter((e) => e.t === 'error'),
        faults: Number(done?.faults ?? 0),
      });
    });
  });
}
