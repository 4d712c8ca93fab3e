#!/usr/bin/env node
// `npm run build`: the generated SQL modules (scripts/build-sql.mjs), then one set of sources, two
// module formats.
//
//   dist/          ES modules (tsconfig.build.json): the library (`import`) and the CLI (`bin`)
//   dist/cjs/      CommonJS (tsconfig.cjs.json): the library only (`require`), with its own
//                  declarations; dist/cjs/package.json says `"type": "commonjs"`, so Node and
//                  TypeScript read every .js / .d.ts below it as CommonJS
//
// dist/ is emptied first, so files of an earlier build (renamed modules, source maps) never reach
// the package. No source maps are emitted: their sources (src/) are not shipped, and the compiled
// JavaScript keeps the sources' module layout and names.
import { execFileSync } from 'node:child_process';
import { chmodSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');
const run = (project) =>
  execFileSync(process.execPath, [tsc, '-p', project], { cwd: root, stdio: 'inherit' });

// The SQL modules first: editing sql/ and running `npm run build` (or `npm test`, which builds) never
// compiles or tests stale SQL.
execFileSync(process.execPath, [join(root, 'scripts', 'build-sql.mjs')], { cwd: root, stdio: 'inherit' });
rmSync(join(root, 'dist'), { recursive: true, force: true });
try {
  run('tsconfig.build.json');
  run('tsconfig.cjs.json');
} catch {
  // tsc has printed the diagnostics
  process.exit(1);
}
writeFileSync(
  join(root, 'dist', 'cjs', 'package.json'),
  `${JSON.stringify({ type: 'commonjs' }, null, 2)}\n`,
);
chmodSync(join(root, 'dist', 'cli', 'main.js'), 0o755);
