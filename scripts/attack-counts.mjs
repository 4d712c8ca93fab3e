// Counts the attacks held as tests, by kind, from a vitest JSON report, and writes them into
// SECURITY.md (between the attack-counts markers), so the published numbers are never typed by hand.
//
//   npx vitest run --reporter=json --outputFile=attacks.json $(node scripts/attack-counts.mjs --files)
//   node scripts/attack-counts.mjs attacks.json [more.json…]  rewrite the block in SECURITY.md
//   node scripts/attack-counts.mjs attacks.json --check   exit 1 when SECURITY.md differs
//
// One attack = one test case (a case of a table-driven test counts once per case). Only passing
// cases count as held; a failing or skipped one is listed as such and makes the script exit 1.
import { readFileSync, writeFileSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');

/** Each kind of attack, and the test files that hold it. */
export const KINDS = [
  {
    kind: 'capability',
    what: "another application's master key, an unregistered key, a forged or another tenant's key bundle, existence oracles, pins",
    files: ['test/secrets/capability.test.ts', 'test/secrets/isolation.test.ts'],
  },
  {
    kind: 'hostile grant',
    what: 'GRANT ALL to anon / authenticated / service_role (BYPASSRLS), pg_temp triggers, foreign defaults, policies and rules, locks any login can take, sequences, forged cached reads',
    files: [
      'test/schema/hostile-grants.test.ts',
      'test/schema/attacks.test.ts',
      'test/schema/attacks-privileged.test.ts',
      'test/schema/privileges.test.ts',
      'test/audit/privileges.test.ts',
    ],
  },
  {
    kind: 'audit tampering',
    what: 'records, heads, checkpoints and anchors edited, deleted, rolled back or replaced by the schema owner, without and with an anchor',
    files: ['test/audit/history.test.ts', 'test/audit/tamper.test.ts', 'test/audit/chain-removal.test.ts'],
  },
  {
    kind: 'log',
    what: 'values, keys and bundles searched for in the server log, the WAL, pg_stat_statements and errors',
    files: ['test/db/leaks.test.ts'],
  },
  {
    kind: 'bad input',
    what: 'names, values, contexts, metadata and SQL-side inputs out of range, weak master keys, secret names that would become loader variables',
    files: [
      'test/schema/sql-inputs.test.ts',
      'test/secrets/properties.test.ts',
      'test/crypto/master-key-quality.test.ts',
      'test/cli/run.test.ts',
    ],
  },
];

const START = '<!-- attack-counts:start (scripts/attack-counts.mjs writes this block) -->';
const END = '<!-- attack-counts:end -->';

function block(reports) {
  // A file in a later report replaces its results from an earlier one (a file run again).
  const byFile = new Map();
  for (const report of reports) {
    for (const file of report.testResults ?? []) {
      byFile.set(relative(root, file.name).split('\\').join('/'), file.assertionResults ?? []);
    }
  }
  const problems = [];
  const rows = [];
  let total = 0;
  for (const { kind, what, files } of KINDS) {
    let held = 0;
    for (const file of files) {
      const results = byFile.get(file);
      if (!results) {
        problems.push(`${file}: not in the report`);
        continue;
      }
      for (const r of results) {
        if (r.status === 'passed') held++;
        else problems.push(`${file}: ${r.status}: ${r.fullName ?? r.title}`);
      }
    }
    total += held;
    rows.push(`| ${kind} | ${held} | ${what} | ${files.map((f) => `\`${f}\``).join(', ')} |`);
  }
  const text = [
    START,
    `${total} attacks held: test cases that passed in the run counted here (each fails if its defence breaks; CI runs the same files on PostgreSQL 15 and 18, and through PgBouncer where they apply).${problems.length > 0 ? ` Not held in that run: ${problems.length} (listed by the script).` : ''}`,
    '',
    '| kind | attacks | what | tests |',
    '|---|---|---|---|',
    ...rows,
    END,
  ].join('\n');
  return { text, problems };
}

const args = process.argv.slice(2);
if (args.includes('--files')) {
  console.log(KINDS.flatMap((k) => k.files).join(' '));
  process.exit(0);
}
const reportPaths = args.filter((a) => !a.startsWith('--'));
if (reportPaths.length === 0) {
  console.error('usage: node scripts/attack-counts.mjs <vitest-json-report>... [--check] | --files');
  process.exit(2);
}
const { text, problems } = block(reportPaths.map((p) => JSON.parse(readFileSync(p, 'utf8'))));
for (const p of problems) console.error(`not held: ${p}`);
const path = join(root, 'SECURITY.md');
const doc = readFileSync(path, 'utf8');
const from = doc.indexOf(START);
const to = doc.indexOf(END);
if (from < 0 || to < 0) {
  console.error('SECURITY.md has no attack-counts block');
  process.exit(1);
}
const next = doc.slice(0, from) + text + doc.slice(to + END.length);
if (args.includes('--check')) {
  if (next !== doc) {
    console.error(
      'SECURITY.md attack counts differ from the report: run node scripts/attack-counts.mjs <report>',
    );
    process.exit(1);
  }
} else if (next !== doc) {
  writeFileSync(path, next);
  console.log('wrote the attack counts to SECURITY.md');
}
process.exit(problems.length > 0 ? 1 : 0);
