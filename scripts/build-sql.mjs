#!/usr/bin/env node
// Builds the SQL sources into TypeScript modules, so the library never reads files at run time
// (bundlers such as Next.js's do not ship package-relative files). `npm run build` runs it first;
// `--check` fails when a generated module is out of date (CI runs it).
//
//   sql/NNNNNN_name.sql     table migrations: forward-only, each applied once (released ones never change)
//   sql/functions/*.sql     functions: code, re-created by migrate() whenever the catalog differs
//   sql/installer/*.sql     the installer's steps (prologue, guard, functions, lock-down), templates
//   sql/shared/*.sql        fragments substituted into the above as :NAME (one source for each query)
//   sql/distribute/*.sql    the steps of migrate({ distribute: true }) on a Citus coordinator (templates)
//
// Outputs:
//   src/schema/sql.generated.ts       the SQL itself, as String.raw literals (loaded only to migrate)
//   src/schema/sql-meta.generated.ts  versions and digests (small: status() and ready() need only these)
//   src/schema/distribute.generated.ts  the distribution steps (loaded only to distribute)
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const sqlDir = join(root, 'sql');
const outFile = join(root, 'src', 'schema', 'sql.generated.ts');
const metaFile = join(root, 'src', 'schema', 'sql-meta.generated.ts');
const distributeFile = join(root, 'src', 'schema', 'distribute.generated.ts');
const read = (...parts) => readFileSync(join(sqlDir, ...parts), 'utf8');
const list = (dir, pattern) =>
  readdirSync(join(sqlDir, dir))
    .filter((name) => pattern.test(name))
    .sort();

// Ids must be unique and increasing; gaps are allowed (the runner applies every id not yet recorded).
let lastId = 0;
const migrations = list('.', /^\d{6}_[a-z0-9_]+\.sql$/).map((file) => {
  const id = Number(file.slice(0, 6));
  if (id <= lastId) throw new Error(`migration ids must be unique and increasing; ${file} is out of place`);
  lastId = id;
  return { id, name: file.slice(7, -4), sql: read(file) };
});

/** Shared fragments (`sql/shared/name.sql` → `:NAME`), substituted into functions and installer steps. */
const shared = Object.fromEntries(
  list('shared', /^[a-z0-9_]+\.sql$/).map((file) => [
    `:${file.slice(0, -4).toUpperCase()}`,
    read('shared', file)
      .replace(/^(\s*--[^\n]*\n)+/, '')
      .trim(),
  ]),
);
function withShared(text) {
  // Fragments may use other fragments: substitute until nothing changes (a cycle would not end).
  for (let depth = 0; depth < 5; depth++) {
    const next = text.replace(/:[A-Z][A-Z0-9_]*\b/g, (token) => shared[token] ?? token);
    if (next === text) return text;
    text = next;
  }
  throw new Error('sql/shared fragments refer to each other in a cycle');
}

/**
 * Splits an SQL file into statements at top-level semicolons, skipping comments, quoted strings and
 * dollar-quoted bodies. Comment-only chunks are dropped.
 */
export function splitStatements(text) {
  const out = [];
  let start = 0;
  let i = 0;
  while (i < text.length) {
    const c = text[i];
    if (c === '-' && text[i + 1] === '-') {
      const end = text.indexOf('\n', i);
      i = end === -1 ? text.length : end + 1;
    } else if (c === '/' && text[i + 1] === '*') {
      const end = text.indexOf('*/', i + 2);
      if (end === -1) throw new Error('unterminated block comment');
      i = end + 2;
    } else if (c === "'") {
      i += 1;
      while (i < text.length) {
        if (text[i] === "'" && text[i + 1] === "'") i += 2;
        else if (text[i] === "'") break;
        else i += 1;
      }
      i += 1;
    } else if (c === '$') {
      const tag = /^\$[A-Za-z_]*\$/.exec(text.slice(i))?.[0];
      if (tag) {
        const end = text.indexOf(tag, i + tag.length);
        if (end === -1) throw new Error(`unterminated dollar quote ${tag}`);
        i = end + tag.length;
      } else {
        i += 1;
      }
    } else if (c === ';') {
      out.push(text.slice(start, i + 1));
      start = i + 1;
      i += 1;
    } else {
      i += 1;
    }
  }
  out.push(text.slice(start));
  const meaningful = (s) => s.replace(/--[^\n]*\n?/g, '').trim() !== '';
  return out.map((s) => s.trim()).filter(meaningful);
}

const functions = list('functions', /^\d{2}_[a-z0-9_]+\.sql$/).flatMap((file) =>
  splitStatements(withShared(read('functions', file))).map((statement) => {
    // Leading comments document the source; the catalog does not keep them.
    const sql = statement.replace(/^(\s*--[^\n]*\n|\s*\n)+/, '');
    if (sql.includes('$ts_sql$')) throw new Error(`${file}: the tag $ts_sql$ is reserved for the installer`);
    if (!/^(CREATE FUNCTION|COMMENT ON FUNCTION)\s/.test(sql)) {
      throw new Error(
        `${file}: only CREATE FUNCTION and COMMENT ON FUNCTION statements belong here:\n${sql.slice(0, 200)}`,
      );
    }
    return { file, sql };
  }),
);
const functionsDigest = createHash('sha256')
  .update(JSON.stringify(functions.map((f) => f.sql)))
  .digest('hex');

const installer = Object.fromEntries(
  list('installer', /^\d{2}_[a-z0-9_]+\.sql$/).map((file) => [
    file.slice(3, -4),
    // The leading comments document the step (and name its placeholders): not part of the script.
    withShared(read('installer', file)).replace(/^(\s*--[^\n]*\n)+/, ''),
  ]),
);

const distribute = Object.fromEntries(
  list('distribute', /^\d{2}_[a-z0-9_]+\.sql$/).map((file) => [
    file.slice(3, -4),
    splitStatements(withShared(read('distribute', file))).map((statement) =>
      statement.replace(/^(\s*--[^\n]*\n|\s*\n)+/, ''),
    ),
  ]),
);

/** A String.raw literal of `text`: readable in the generated file, exact in the string. */
function raw(text) {
  // The only characters a raw template cannot hold as they are: a backtick and `${`; each becomes a
  // substitution of itself as a string.
  const open = '$' + '{';
  const escaped = text.replace(/`|\$\{/g, (m) => (m === '`' ? `${open}'\`'}` : `${open}'${open}'}`));
  return `String.raw\`${escaped}\``;
}
for (const m of migrations) {
  // Round trip: String.raw of the escaped text must give the text back.
  const back = Function(`return ${raw(m.sql)}`)();
  if (back !== m.sql) throw new Error(`internal: migration ${m.id} does not survive String.raw`);
}

const header =
  '// Generated by scripts/build-sql.mjs from sql/. Do not edit: edit sql/ and run `npm run build:sql` (npm run build does).';
const body = `${header}
export interface Migration {
  readonly id: number;
  readonly name: string;
  readonly sql: string;
}

export interface FunctionStatement {
  /** The source file under sql/functions. */
  readonly file: string;
  /** One CREATE FUNCTION or COMMENT ON FUNCTION statement, with placeholders :TS and :PGC. */
  readonly sql: string;
}

export const MIGRATIONS: readonly Migration[] = [
${migrations.map((m) => `  {\n    id: ${m.id},\n    name: ${JSON.stringify(m.name)},\n    sql: ${raw(m.sql)},\n  },`).join('\n')}
];

export const FUNCTIONS: readonly FunctionStatement[] = [
${functions.map((f) => `  {\n    file: ${JSON.stringify(f.file)},\n    sql: ${raw(f.sql)},\n  },`).join('\n')}
];

/** The installer's steps (sql/installer/*.sql), in order, with placeholders. */
export const INSTALLER_STEPS: Readonly<Record<string, string>> = {
${Object.entries(installer)
  .map(([name, text]) => `  ${JSON.stringify(name)}: ${raw(text)},`)
  .join('\n')}
};
`;

const meta = `${header}
/** The newest table migration: the schema version this library installs. */
export const LATEST_SCHEMA_VERSION = ${lastId};

/** Table migrations by id (names as recorded in tenant_secret_migrations). */
export const MIGRATION_NAMES: Readonly<Record<number, string>> = ${JSON.stringify(
  Object.fromEntries(migrations.map((m) => [m.id, m.name])),
)};

/** SHA-256 of the function sources (before placeholders are substituted). */
export const FUNCTIONS_DIGEST = ${JSON.stringify(functionsDigest)};
`;

const distributeBody = `${header}
/** The steps of migrate({ distribute: true }) (sql/distribute/*.sql), in order: each a list of statements, with placeholders. */
export const DISTRIBUTE_STEPS: Readonly<Record<string, readonly string[]>> = {
${Object.entries(distribute)
  .map(
    ([name, statements]) =>
      `  ${JSON.stringify(name)}: [\n${statements.map((t) => `    ${raw(t)},`).join('\n')}\n  ],`,
  )
  .join('\n')}
};
`;

const outputs = [
  [outFile, body],
  [metaFile, meta],
  [distributeFile, distributeBody],
];
if (process.argv.includes('--check')) {
  let stale = false;
  for (const [file, text] of outputs) {
    let current = '';
    try {
      current = readFileSync(file, 'utf8');
    } catch {}
    if (current !== text) {
      console.error(`${file.slice(root.length + 1)} is out of date: run \`npm run build:sql\``);
      stale = true;
    }
  }
  if (stale) process.exit(1);
  console.log(
    `generated SQL modules up to date (${migrations.length} migrations, ${functions.length} function statements)`,
  );
} else {
  for (const [file, text] of outputs) writeFileSync(file, text);
  console.log(
    `wrote ${migrations.length} migrations, ${functions.length} function statements and ${Object.keys(installer).length} installer steps to src/schema/`,
  );
}
