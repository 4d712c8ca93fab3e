import { InvalidInputError } from '../base/errors.js';
import { assertKeyName, assertTenantId, MAX_VALUE_BYTES } from '../base/validation.js';
import { exitInterrupted } from './report.js';
import { jsonText, safe, safeLines } from './safe-text.js';
import { onInterrupt } from './signals.js';

/** Machine output: one JSON document on stdout (control characters escaped, C1 and U+2028/9 included). */
export function printJson(data: unknown): void {
  process.stdout.write(`${jsonText(data, 2)}\n`);
}

/**
 * Data for humans (tables, reports): stdout. Control characters are shown escaped (`\x1b`), so text
 * from the database cannot act on the terminal; `\n` separates lines (escape it in cells: {@link table}).
 */
export function out(line = ''): void {
  process.stdout.write(`${safeLines(line)}\n`);
}

/** Messages for humans (confirmations, warnings, notices): stderr, so stdout stays data only. One line. */
export function note(line: string): void {
  process.stderr.write(`tenant-secrets: ${safe(line)}\n`);
}

export function warn(line: string): void {
  process.stderr.write(`tenant-secrets: warning: ${safe(line)}\n`);
}

/** Removes exactly one trailing line ending (`\n` or `\r\n`), as `echo` or a heredoc adds. */
export function stripOneNewline(text: string): string {
  if (text.endsWith('\r\n')) return text.slice(0, -2);
  if (text.endsWith('\n')) return text.slice(0, -1);
  return text;
}

/** A value larger than a secret can be: nothing is stored. */
function tooLarge(): InvalidInputError {
  return new InvalidInputError(
    `the value is larger than ${MAX_VALUE_BYTES} bytes, the most a secret holds; nothing was stored`,
    'value',
  );
}

/**
 * The most bytes a value read from standard input may have: the largest value plus a trailing line
 * ending (`\n`, or `\r\n`), which is removed.
 */
export const MAX_STDIN_BYTES = MAX_VALUE_BYTES + 2;

/**
 * Reads `stream` to its end, but stops as soon as more than `limit` bytes have arrived and throws
 * (INVALID_INPUT): a 100 MB pipe is neither buffered nor read to its end.
 */
export async function readBounded(stream: NodeJS.ReadableStream, limit = MAX_STDIN_BYTES): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  // Leaving the loop early (the throw) destroys the stream: nothing more is read.
  for await (const chunk of stream) {
    const bytes = typeof chunk === 'string' ? Buffer.from(chunk) : (chunk as Buffer);
    size += bytes.length;
    if (size > limit) throw tooLarge();
    chunks.push(bytes);
  }
  return Buffer.concat(chunks, size);
}

/**
 * The secret value of `set` / `rotate`: `--value` (with a warning), else standard input when it is
 * not a terminal (one trailing newline stripped), else a hidden prompt. Never echoed.
 */
export async function readSecretValue(flagValue: string | undefined, label: string): Promise<string> {
  if (flagValue !== undefined) {
    warn(
      '--value puts the secret in your shell history and in the process list (ps); pipe it on standard input instead',
    );
    return checkValue(flagValue);
  }
  if (!process.stdin.isTTY) {
    const bytes = await readBounded(process.stdin);
    let text: string;
    try {
      text = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
    } catch {
      throw new InvalidInputError('the value on standard input is not valid UTF-8', 'value');
    }
    return checkValue(stripOneNewline(text));
  }
  const { default: password } = await import('@inquirer/password');
  const value = await password(
    { message: `Value for ${label} (hidden):`, mask: false },
    { output: process.stderr },
  );
  return checkValue(value);
}

/** Refuses an empty value (with how to give one) and one larger than a secret can be. */
function checkValue(value: string): string {
  if (Buffer.byteLength(value, 'utf8') > MAX_VALUE_BYTES) throw tooLarge();
  if (value === '') {
    throw new InvalidInputError(
      'the value is empty: pipe it on standard input (e.g. `printf %s "$VALUE" | tenant-secrets set ...`) or type it at the prompt',
      'value',
    );
  }
  return value;
}

/** Parses `k=v` pairs of repeatable `--label` options. */
export function parseLabels(pairs: readonly string[] | undefined): Record<string, string> | undefined {
  if (!pairs || pairs.length === 0) return undefined;
  const labels: Record<string, string> = {};
  for (const pair of pairs) {
    const at = pair.indexOf('=');
    if (at <= 0)
      throw new InvalidInputError(`--label must be key=value, got ${JSON.stringify(pair)}`, 'labels');
    labels[pair.slice(0, at)] = pair.slice(at + 1);
  }
  return labels;
}

/** Parses a positive integer option (versions). */
export function parseVersion(text: string, flag: string, allowZero = false): number {
  const min = allowZero ? 0 : 1;
  if (!/^\d{1,9}$/.test(text) || Number(text) < min) {
    throw new InvalidInputError(`${flag} must be an integer from ${min} to 999999999`, flag);
  }
  return Number(text);
}

/** Parses an ISO 8601 instant option. */
export function parseDate(text: string | undefined, flag: string): Date | undefined {
  if (text === undefined) return undefined;
  const date = new Date(text);
  if (Number.isNaN(date.getTime())) {
    throw new InvalidInputError(`${flag} must be an ISO 8601 date, e.g. 2030-01-31T00:00:00Z`, flag);
  }
  return date;
}

/** A plain text table (no colours; stable for scripts that still read it). */
export function table(headers: readonly string[], cells: readonly (readonly string[])[]): string {
  // Cells hold text from the database: escape control characters before measuring and joining.
  const rows = cells.map((row) => row.map(safe));
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: readonly string[]) =>
    cells
      .map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i] ?? 0)))
      .join('  ')
      .trimEnd();
  return [line(headers), ...rows.map(line)].join('\n');
}

export const iso = (date: Date | null | undefined): string => (date ? date.toISOString() : '-');

/** Rejects a malformed tenant id / key name before any database is opened (the library's own rules). */
export function checkNames(tenant: string, key?: string): void {
  assertTenantId(tenant);
  if (key !== undefined) assertKeyName(key);
}

/**
 * Confirms an irreversible operation: `--yes` skips it; on a terminal the operator types `expected`
 * (on stderr); otherwise (a script without --yes) it refuses with INVALID_INPUT (exit 2).
 */
export async function confirmIrreversible(
  what: string,
  expected: string,
  yes: boolean | undefined,
): Promise<void> {
  if (yes) return;
  if (!process.stdin.isTTY) {
    throw new InvalidInputError(
      `${what} is irreversible: pass --yes to confirm (standard input is not a terminal)`,
      'yes',
    );
  }
  const { createInterface } = await import('node:readline/promises');
  const rl = createInterface({ input: process.stdin, output: process.stderr });
  try {
    const answer = await rl.question(
      `${what} is irreversible. Type ${JSON.stringify(expected)} to confirm: `,
    );
    if (answer.trim() !== expected) throw new InvalidInputError(`not confirmed: ${what} was not done`, 'yes');
  } finally {
    rl.close();
  }
}

/** Parses a positive integer option within [min, max]. */
export function parseCount(
  text: string | undefined,
  flag: string,
  min: number,
  max: number,
): number | undefined {
  if (text === undefined) return undefined;
  if (!/^\d{1,9}$/.test(text) || Number(text) < min || Number(text) > max) {
    throw new InvalidInputError(`${flag} must be an integer from ${min} to ${max}`, flag);
  }
  return Number(text);
}

/** Parses `--older-than`: an ISO 8601 instant, or a duration before now like `90d`, `12h`, `30m`. */
export function parseAge(text: string, flag: string): Date {
  const match = /^(\d{1,6})([dhm])$/.exec(text);
  if (match) {
    const unit = { d: 86_400_000, h: 3_600_000, m: 60_000 }[match[2] as 'd' | 'h' | 'm'];
    return new Date(Date.now() - Number(match[1]) * unit);
  }
  const date = new Date(text);
  if (!/^\d{4}-\d{2}-\d{2}/.test(text) || Number.isNaN(date.getTime())) {
    throw new InvalidInputError(
      `${flag} must be an ISO 8601 date (e.g. 2030-01-31) or an age like 90d, 12h, 30m`,
      flag,
    );
  }
  return date;
}

/**
 * An AbortSignal aborted by the first SIGINT (Ctrl-C), SIGTERM or SIGHUP, for long operations that
 * stop cleanly between batches. `dispose` stops listening.
 */
export function interruptSignal(): { signal: AbortSignal; dispose(): void } {
  const controller = new AbortController();
  const dispose = onInterrupt((name) => {
    if (controller.signal.aborted) {
      // A second Ctrl-C: stop now. The batch in flight rolls back with the connection; still resumable.
      exitInterrupted(`${name} again: exiting now; run again to resume`);
    }
    note(`${name}: stopping after the current batch (again to exit at once)...`);
    controller.abort(name);
  });
  return { signal: controller.signal, dispose };
}
