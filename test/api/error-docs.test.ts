// suite-scope: once — the error table against docs/errors.md, the CLI help and a minified bundle; no server
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { build } from 'esbuild';
import { describe, expect, it } from 'vitest';
import { ERROR_TABLE, type ErrorKind, EXIT } from '../../src/base/error-table.js';
import { EXIT_CODES_HELP } from '../../src/cli/exit-codes.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const DOC = join(ROOT, 'docs', 'errors.md');
const START = '<!-- error-table:start (generated from src/base/error-table.ts; see the note below it) -->';
const END = '<!-- error-table:end -->';
const rows: readonly ErrorKind[] = ERROR_TABLE;

/** The table of docs/errors.md, as the error table says it is. */
function renderTable(): string {
  const cell = (s: string) => s.replace(/\|/g, '\\|');
  const lines = [
    '| class | `code` | SQL status | SQLSTATE | CLI exit | retryable | when |',
    '|---|---|---|---|---|---|---|',
  ];
  for (const row of rows) {
    const states = row.sqlStates.map((s) => (s.length === 2 ? `${s}xxx` : s)).join(', ');
    lines.push(
      `| \`${row.name}\` | \`${row.code}\` | ${row.sqlStatus ? `\`${row.sqlStatus}\`` : '—'} | ${states || '—'} | ${row.exitCode} | ${row.retryable ? 'yes' : 'no'} | ${cell(row.description)} |`,
    );
  }
  return lines.join('\n');
}

describe('docs/errors.md and the CLI help are the error table', () => {
  it('the table in docs/errors.md is the one in src/base/error-table.ts (TENANT_SECRETS_UPDATE_DOCS=1 rewrites it)', () => {
    const doc = readFileSync(DOC, 'utf8');
    const start = doc.indexOf(START);
    const end = doc.indexOf(END);
    expect(start, `docs/errors.md has the marker ${START}`).toBeGreaterThanOrEqual(0);
    expect(end).toBeGreaterThan(start);
    const expected = `${START}\n${renderTable()}\n${END}`;
    const actual = doc.slice(start, end + END.length);
    if (actual !== expected && process.env.TENANT_SECRETS_UPDATE_DOCS === '1') {
      writeFileSync(DOC, doc.slice(0, start) + expected + doc.slice(end + END.length));
      return;
    }
    expect(actual).toBe(expected);
  });

  it('`tenant-secrets --help` lists every code under its exit code, and every exit code once', () => {
    const help = EXIT_CODES_HELP.split('\n').slice(1);
    // Entries start with two spaces and the exit code; continuation lines are indented further.
    const entries = new Map<number, string>();
    let current: number | undefined;
    for (const line of help) {
      const head = /^ {2}(\d+)\s+(.*)$/.exec(line);
      if (head) {
        current = Number(head[1]);
        expect(entries.has(current), `exit ${current} listed once`).toBe(false);
        entries.set(current, head[2] ?? '');
      } else if (current !== undefined) entries.set(current, `${entries.get(current)} ${line.trim()}`);
    }
    expect([...entries.keys()].sort((a, b) => a - b)).toEqual(Object.values(EXIT).sort((a, b) => a - b));
    for (const row of rows) {
      const text = entries.get(row.exitCode) ?? '';
      expect(text, `${row.code} under exit ${row.exitCode}`).toMatch(new RegExp(`[(, ]${row.code}[,)]`));
      for (const [exit, other] of entries) {
        if (exit !== row.exitCode)
          expect(other, `${row.code} only under ${row.exitCode}`).not.toMatch(
            new RegExp(`[(, ]${row.code}[,)]`),
          );
      }
    }
    // docs/cli.md is generated from the help (npm run docs:cli).
    expect(readFileSync(join(ROOT, 'docs', 'cli.md'), 'utf8')).toContain(EXIT_CODES_HELP);
  });
});

describe('error names survive minification', () => {
  it('in a minified bundle (classes renamed), every error still reports its own name', async () => {
    const dir = join(ROOT, 'node_modules', '.tenant-secrets-minified');
    mkdirSync(dir, { recursive: true });
    const file = join(dir, `index-${process.pid}.mjs`);
    try {
      await build({
        entryPoints: [join(ROOT, 'src', 'index.ts')],
        bundle: true,
        minify: true,
        format: 'esm',
        platform: 'node',
        packages: 'external',
        outfile: file,
        logLevel: 'silent',
      });
      const mod = (await import(pathToFileURL(file).href)) as Record<string, unknown>;
      let renamed = 0;
      for (const row of rows) {
        const cls = mod[row.name] as (abstract new (...args: never[]) => Error) | undefined;
        expect(cls, `${row.name} is exported`).toBeTypeOf('function');
        if (!cls) continue;
        if (cls.name !== row.name) renamed++;
        const instance = Object.create(cls.prototype) as Error & { code?: string };
        expect(instance.name, `${row.name} after minification (class now "${cls.name}")`).toBe(row.name);
      }
      // The minifier did rename the classes: the check above is not vacuous.
      expect(renamed).toBeGreaterThan(rows.length / 2);
      // A real error thrown by the minified library.
      const create = mod.createSecretsManager as (options: Record<string, unknown>) => unknown;
      let thrown: unknown;
      try {
        create({ connectionString: 'postgres://127.0.0.1:1/x', masterKey: 'too-short', env: {} });
      } catch (error) {
        thrown = error;
      }
      expect(thrown).toMatchObject({ name: 'ConfigurationError', code: 'CONFIGURATION' });
      expect(String(thrown)).toMatch(/^ConfigurationError: /);
    } finally {
      rmSync(file, { force: true });
    }
  });
});
