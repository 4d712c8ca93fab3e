// suite-scope: once — compares src/api/interfaces.ts with docs/api.md; no server involved
/**
 * docs/api.md names every member of the public interfaces, in the spelling users call it
 * (`auditTrail.verify(`, `keys.pin(`, `set(`), and the deprecated 0.2 names with what replaces them.
 */
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const source = readFileSync(join(root, 'src/api/interfaces.ts'), 'utf8');
const docs = readFileSync(join(root, 'docs/api.md'), 'utf8');

/** The method and property names declared in one interface of interfaces.ts. */
function members(name: string): { name: string; deprecated: boolean }[] {
  const start = source.indexOf(`export interface ${name} `);
  expect(start, name).toBeGreaterThanOrEqual(0);
  const body = source.slice(source.indexOf('{', start) + 1, source.indexOf('\n}', start));
  const out: { name: string; deprecated: boolean }[] = [];
  let deprecated = false;
  for (const line of body.split('\n')) {
    if (line.includes('@deprecated')) deprecated = true;
    const match = /^ {2}(?:readonly )?([a-zA-Z]+)[(?:<]/.exec(line);
    if (match?.[1]) {
      out.push({ name: match[1], deprecated });
      deprecated = false;
    }
  }
  return out;
}

describe('docs/api.md', () => {
  it.each([
    ['SecretsApi', ''],
    ['AuditTrailApi', 'auditTrail.'],
    ['KeysApi', 'keys.'],
    ['InstallationApi', 'installation.'],
  ])('documents every member of %s', (name, prefix) => {
    const found = members(name);
    expect(found.length).toBeGreaterThan(4);
    for (const member of found)
      expect(docs, `${prefix}${member.name}`).toContain(`\`${prefix}${member.name}(`);
  });

  it('documents the manager itself and maps every deprecated name', () => {
    const found = members('SecretsManager');
    for (const member of found.filter((m) => !m.deprecated)) {
      expect(docs, member.name).toMatch(new RegExp(`\`${member.name}[(\`]`));
    }
    const deprecated = found.filter((m) => m.deprecated).map((m) => m.name);
    expect(deprecated.length).toBeGreaterThanOrEqual(17);
    const table = docs.slice(docs.indexOf('## Names of release 0.2'));
    for (const name of deprecated) expect(table, name).toContain(`\`${name}\``);
  });
});
