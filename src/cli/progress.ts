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
