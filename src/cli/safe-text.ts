/**
 * Terminal-safe text. Names, labels, descriptions, actors, request ids and audit contexts come from
 * the database, where anyone who can write a secret or an audit context can put any character: a
 * stored ESC sequence could clear the screen or recolour the output, a stored newline could forge a
 * line of a table. Everything the CLI prints for humans goes through these escapes.
 */

/**
 * Characters a terminal acts on instead of showing: C0 controls, DEL, C1 controls (0x80-0x9f, e.g.
 * the single-byte CSI 0x9b), Unicode line and paragraph separators, and bidirectional controls
 * (which reorder what is shown around them).
 */
// biome-ignore lint/suspicious/noControlCharactersInRegex: finding control characters is the point
const UNSAFE = /[\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g;

/** The visible escape of one unsafe character: `\x1b` up to 0xff, `\u202e` above. */
function escapeChar(ch: string): string {
  const code = ch.charCodeAt(0);
  return code <= 0xff
    ? `\\x${code.toString(16).padStart(2, '0')}`
    : `\\u${code.toString(16).padStart(4, '0')}`;
}

/** `text` with every control character escaped as visible text (`\x1b`, `\x0a`, `\u202e`), newlines included. */
export function safe(text: string): string {
  return text.replace(UNSAFE, escapeChar);
}

/** Like {@link safe} but keeps `\n` (several lines of already-safe cells) and, with `tabs`, `\t`. */
export function safeLines(text: string, options: { tabs?: boolean } = {}): string {
  return text.replace(UNSAFE, (ch) => (ch === '\n' || (options.tabs && ch === '\t') ? ch : escapeChar(ch)));
}

/** Whether `text` holds a character {@link safeLines} would escape. */
export function hasUnsafe(text: string, options: { tabs?: boolean } = {}): boolean {
  return safeLines(text, options) !== text;
}

/** What JSON.stringify leaves raw but a terminal would act on (it escapes C0 controls itself). */
const JSON_UNSAFE = /[\u007f-\u009f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g;

/**
 * A JSON text (e.g. an exported audit line) with DEL, C1 controls, U+2028/U+2029 and bidirectional
 * controls written as `\uXXXX` escapes: the same strings for any JSON parser, and safe to show.
 * Outside strings JSON has only ASCII, so the escapes always land inside strings.
 */
export function safeJsonText(json: string): string {
  return json.replace(JSON_UNSAFE, (ch) => `\\u${ch.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

/** JSON.stringify, then {@link safeJsonText}. */
export function jsonText(data: unknown, indent?: number): string {
  return safeJsonText(JSON.stringify(data, null, indent));
}
