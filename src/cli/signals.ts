import { exitInterrupted } from './report.js';

/**
 * SIGINT, SIGTERM and SIGHUP for the whole CLI. The newest handler registered with
 * {@link onInterrupt} gets them (a long operation stops between batches, `run` forwards them to
 * its command). With none, the CLI releases what it holds (the embedded PostgreSQL, see
 * {@link addCleanup}) and exits 130; a second signal exits at once.
 */

export type InterruptHandler = (signal: NodeJS.Signals) => void;

const handlers: InterruptHandler[] = [];
const cleanups = new Set<() => Promise<void>>();
let exiting = false;

function dispatch(signal: NodeJS.Signals): void {
  const handler = handlers.at(-1);
  if (handler) {
    handler(signal);
    return;
  }
  if (exiting) exitInterrupted(`${signal} again: exiting now`);
  exiting = true;
  void Promise.allSettled([...cleanups].map((cleanup) => cleanup())).finally(() =>
    exitInterrupted(`${signal}: interrupted`),
  );
}

let installed = false;

/** Installs the process-wide handlers (once). */
export function installSignalHandlers(): void {
  if (installed) return;
  installed = true;
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.on(signal, dispatch);
}

/** Routes the signals to `handler` until the returned function is called. */
export function onInterrupt(handler: InterruptHandler): () => void {
  installSignalHandlers();
  handlers.push(handler);
  return () => {
    const at = handlers.lastIndexOf(handler);
    if (at >= 0) handlers.splice(at, 1);
  };
}

/** Runs `cleanup` before exiting on a signal that no handler takes, until the returned function is called. */
export function addCleanup(cleanup: () => Promise<void>): () => void {
  installSignalHandlers();
  cleanups.add(cleanup);
  return () => cleanups.delete(cleanup);
}
