import cliProgress from 'cli-progress';

/** Progress of a long operation (rotations, audit verification and export, purges). */
export interface Progress {
  /** Sets the number of items done. */
  update(done: number): void;
  /** Adds to the number of items done. */
  increment(by?: number): void;
  /** Final line / bar; call once, also on failure. */
  stop(): void;
}

export interface ProgressOptions {
  /** What is being counted, e.g. `re-wrapping data keys`. */
  label: string;
  total: number;
  /** Default process.stderr (stdout carries data). */
  stream?: NodeJS.WritableStream & { isTTY?: boolean };
  /** Non-terminal output: print a line each time this fraction of the total is passed (default 0.1). */
  step?: number;
}

/** A cli-progress bar when the stream is a terminal, else plain `label: done/total` lines. */
export function createProgress(options: ProgressOptions): Progress {
  const stream = options.stream ?? process.stderr;
  const total = Math.max(0, options.total);
  let done = 0;
  if (stream.isTTY) {
    const bar = new cliProgress.SingleBar(
      {
        format: `${options.label} [{bar}] {value}/{total} {percentage}% eta {eta_formatted}`,
        stream,
        hideCursor: true,
      },
      cliProgress.Presets.shades_classic,
    );
    bar.start(total, 0);
    return {
      update: (n) => {
        done = n;
        bar.update(n);
      },
      increment: (by = 1) => {
        done += by;
        bar.update(done);
      },
      stop: () => bar.stop(),
    };
  }
  const every = Math.max(1, Math.ceil(total * (options.step ?? 0.1)));
  let printed = -1;
  const print = () => {
    if (done === printed) return;
    printed = done;
    stream.write(`${options.label}: ${done}/${total}\n`);
  };
  print();
  const maybePrint = () => {
    if (done >= total || done - Math.max(printed, 0) >= every) print();
  };
  return {
    update: (n) => {
      done = n;
      maybePrint();
    },
    increment: (by = 1) => {
      done += by;
      maybePrint();
    },
    stop: print,
  };
}

/**
 * A progress display created on the first report, when the total is known (library operations
 * report `{ done, total }` after each batch). `stop` is a no-op when nothing was reported.
 */
export function lazyProgress(label: string): { update(done: number, total: number): void; stop(): void } {
  let progress: Progress | undefined;
  return {
    update(done, total) {
      progress ??= createProgress({ label, total });
      progress.update(done);
    },
    stop() {
      progress?.stop();
    },
  };
}

export interface CounterOptions {
  /** What is being counted, e.g. `verifying audit chains`. */
  label: string;
  /** Default process.stderr (stdout carries data). */
  stream?: NodeJS.WritableStream & { isTTY?: boolean };
  /** Non-terminal output: at most one line per this many milliseconds, plus the last (default 1000). */
  intervalMs?: number;
}

/**
 * Progress of an operation whose total is not known in advance (audit verification walks chains
 * page by page): `label: <what is done so far>`. On a terminal one line rewritten in place; otherwise
 * a plain line at most every `intervalMs`, and the final state at `stop()` (when anything was reported).
 */
export function createCounter(options: CounterOptions): { update(text: string): void; stop(): void } {
  const stream = options.stream ?? process.stderr;
  const interval = options.intervalMs ?? 1000;
  let current: string | undefined;
  let printed: string | undefined;
  let lastAt = 0;
  const line = (text: string) => `${options.label}: ${text}`;
  if (stream.isTTY) {
    return {
      update(text) {
        current = text;
        stream.write(`\r\x1b[K${line(text)}`);
      },
      stop() {
        if (current !== undefined) stream.write('\n');
        current = undefined;
      },
    };
  }
  const print = () => {
    if (current === undefined || current === printed) return;
    printed = current;
    lastAt = Date.now();
    stream.write(`${line(current)}\n`);
  };
  return {
    update(text) {
      current = text;
      if (printed === undefined || Date.now() - lastAt >= interval) print();
    },
    stop: print,
  };
}
