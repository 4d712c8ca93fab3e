#!/usr/bin/env node
// Generates docs/cli.md from the built CLI's --help output, so the docs cannot drift from the CLI.
//   node scripts/cli-docs.mjs          write docs/cli.md (run `npm run build` first; `npm run docs:cli` does both)
//   node scripts/cli-docs.mjs --check  exit 1 when docs/cli.md differs from the CLI's help (CI)
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const cli = join(root, 'dist', 'cli', 'main.js');
const target = join(root, 'docs', 'cli.md');

if (!existsSync(cli)) {
  console.error('dist/cli/main.js is missing: run `npm run build` first');
  process.exit(1);
}

function help(path) {
  return execFileSync(process.execPath, [cli, ...path, '--help'], {
    encoding: 'utf8',
    env: { PATH: process.env.PATH ?? '' },
  }).trimEnd();
}

/** Command names listed under "Commands:" in a help text. */
function subcommands(text) {
  const lines = text.split('\n');
  const start = lines.indexOf('Commands:');
  if (start < 0) return [];
  const names = [];
  for (const line of lines.slice(start + 1)) {
    if (line.trim() === '') break;
    const match = /^ {2}([a-z][a-z0-9-]*)\b/.exec(line);
    if (match) names.push(match[1]);
  }
  return names;
}

const sections = [];
function walk(path) {
  const text = help(path);
  sections.push(`## \`tenant-secrets${path.map((p) => ` ${p}`).join('')}\`\n\n\`\`\`text\n${text}\n\`\`\`\n`);
  for (const name of subcommands(text)) walk([...path, name]);
}
walk([]);

const doc = `# tenant-secrets CLI reference

<!-- Generated from the CLI's --help by scripts/cli-docs.mjs: do not edit by hand. Run \`npm run docs:cli\`. -->

${sections.join('\n')}`;

if (process.argv.includes('--check')) {
  const current = existsSync(target) ? readFileSync(target, 'utf8') : '';
  if (current !== doc) {
    console.error(
      'docs/cli.md is out of date with the CLI --help: run `npm run docs:cli` and commit the result',
    );
    process.exit(1);
  }
  console.log('docs/cli.md is up to date');
} else {
  writeFileSync(target, doc);
  console.log(`wrote ${target}`);
}
