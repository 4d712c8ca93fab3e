// suite-scope: once — reads README.md and docs/ from the working tree; no server involved
/**
 * The README stays short, and no link in the documentation leads nowhere.
 *
 * README.md is read on GitHub, on npmjs.com and in node_modules/tenant-secrets (the tarball ships it, not
 * docs/), so its links to other files are absolute URLs into the repository; docs/ is read in the
 * repository only, so its links are relative. Both kinds are checked against the working tree: the file
 * must exist and, for a `#fragment`, a heading of that file must have that anchor (GitHub's rule: the
 * heading's text, lower-cased, punctuation dropped, spaces turned into hyphens, `-1`, `-2`… on repeats).
 */
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const REPOSITORY = 'https://github.com/tenant-secrets/tenant-secrets';
const README_MAX_LINES = 250;

/** Markdown files whose links are checked: the README, the changelog, the security policy, and docs/. */
function markdownFiles(): string[] {
  const walk = (dir: string): string[] =>
    readdirSync(dir).flatMap((name) => {
      const path = join(dir, name);
      if (statSync(path).isDirectory()) return walk(path);
      return name.endsWith('.md') ? [path] : [];
    });
  return [
    ...['README.md', 'CHANGELOG.md', 'SECURITY.md'].map((name) => join(root, name)),
    ...walk(join(root, 'docs')),
  ];
}

/** The text outside fenced code blocks, line by line (code lines become empty: they hold no links). */
function proseLines(text: string): string[] {
  let fence: string | null = null;
  return text.split('\n').map((line) => {
    const marker = /^\s*(`{3,}|~{3,})/.exec(line)?.[1];
    if (marker && (fence === null || marker.startsWith(fence))) {
      fence = fence === null ? marker : null;
      return '';
    }
    return fence === null ? line : '';
  });
}

const withoutCodeSpans = (line: string) => line.replace(/(`+)[^`]*?\1/g, '');

/** GitHub's anchor for a heading's text. */
function slug(heading: string): string {
  const text = heading
    .replace(/!?\[([^\]]*)\]\([^)]*\)/g, '$1') // a link or image: its text
    .replace(/[`*_]{1,3}([^`*_]+)[`*_]{1,3}/g, '$1') // code spans, emphasis
    .replace(/<[^>]+>/g, '');
  return text
    .trim()
    .toLowerCase()
    .replace(/[^\p{L}\p{M}\p{N}\p{Pc} -]/gu, '')
    .replace(/ /g, '-');
}

const anchorCache = new Map<string, Set<string>>();

/** Every anchor a Markdown file offers: its headings' slugs and explicit `<a id|name="…">`. */
function anchorsOf(file: string): Set<string> {
  const cached = anchorCache.get(file);
  if (cached) return cached;
  const anchors = new Set<string>();
  const seen = new Map<string, number>();
  const text = readFileSync(file, 'utf8');
  for (const line of proseLines(text)) {
    const heading = /^ {0,3}#{1,6}\s+(.*?)(?:\s+#+)?\s*$/.exec(line)?.[1];
    if (heading !== undefined) {
      const base = slug(heading);
      const count = seen.get(base) ?? 0;
      seen.set(base, count + 1);
      anchors.add(count === 0 ? base : `${base}-${count}`);
    }
    for (const [, id] of line.matchAll(/<a\s+(?:id|name)="([^"]+)"/g)) if (id) anchors.add(id);
  }
  anchorCache.set(file, anchors);
  return anchors;
}

interface Link {
  file: string;
  line: number;
  target: string;
}

const DEFINITION = /^ {0,3}\[([^\]]+)\]:\s*<?([^\s>]+)>?(?:\s+"[^"]*")?\s*$/;

/**
 * Every link target outside code: inline links `[text](target)`, `<https://…>` autolinks, and the
 * definitions `[label]: target` that reference links `[text][label]` use.
 */
function linksOf(file: string): Link[] {
  const links: Link[] = [];
  proseLines(readFileSync(file, 'utf8')).forEach((raw, index) => {
    const definition = DEFINITION.exec(raw);
    if (definition?.[2]) {
      links.push({ file, line: index + 1, target: definition[2] });
      return;
    }
    const line = withoutCodeSpans(raw);
    for (const [, target] of line.matchAll(/\]\(\s*<?([^)\s>]+)>?(?:\s+"[^"]*")?\s*\)/g)) {
      if (target) links.push({ file, line: index + 1, target });
    }
    for (const [, target] of line.matchAll(/<(https?:\/\/[^>\s]+)>/g)) {
      if (target) links.push({ file, line: index + 1, target });
    }
  });
  return links;
}

/** Reference links `[text][label]` and `[label][]` whose label has no definition in the file. */
function undefinedReferences(file: string): string[] {
  const lines = proseLines(readFileSync(file, 'utf8'));
  const defined = new Set(
    lines.flatMap((line) => {
      const label = DEFINITION.exec(line)?.[1];
      return label ? [label.toLowerCase()] : [];
    }),
  );
  const missing: string[] = [];
  lines.forEach((raw, index) => {
    if (DEFINITION.test(raw)) return;
    for (const [, text, label] of withoutCodeSpans(raw).matchAll(/\[([^\]]+)\]\[([^\]]*)\]/g)) {
      const name = (label || text || '').toLowerCase();
      if (!defined.has(name)) missing.push(`${relative(root, file)}:${index + 1}: [${name}] is not defined`);
    }
  });
  return missing;
}

/**
 * The working-tree path a link names, or null when it leaves the repository (another site). Links
 * into this repository's GitHub pages (`/blob/main/…`, `/tree/main/…`) name working-tree files.
 */
function localTarget(link: Link): { path: string; fragment: string | undefined } | null {
  const [location = '', fragment] = link.target.split('#', 2) as [string, string | undefined];
  if (/^[a-z][a-z0-9+.-]*:/i.test(location)) {
    const ours = new RegExp(`^${REPOSITORY.replace(/[.]/g, '\\.')}(?:/(?:blob|tree)/main/(.*))?/?$`).exec(
      location,
    );
    if (!ours) return null;
    return { path: join(root, decodeURIComponent(ours[1] ?? '')), fragment };
  }
  if (location === '') return { path: link.file, fragment };
  return { path: resolve(dirname(link.file), decodeURIComponent(location)), fragment };
}

function problem(link: Link): string | null {
  const target = localTarget(link);
  if (!target) return null;
  const where = `${relative(root, link.file)}:${link.line}: ${link.target}`;
  const rel = relative(root, target.path);
  if (rel.startsWith('..')) return `${where} leaves the repository`;
  if (!existsSync(target.path)) return `${where}: ${rel || '.'} does not exist`;
  if (target.fragment !== undefined && target.path.endsWith('.md')) {
    if (!anchorsOf(target.path).has(target.fragment))
      return `${where}: no heading #${target.fragment} in ${rel}`;
  }
  return null;
}

describe('README.md', () => {
  const readme = readFileSync(join(root, 'README.md'), 'utf8');

  it(`has at most ${README_MAX_LINES} lines (deep dives and tables belong in docs/)`, () => {
    expect(readme.trimEnd().split('\n').length).toBeLessThanOrEqual(README_MAX_LINES);
  });

  it('keeps the fresh-machine commands near the top: the demo end to end, and the whole suite', () => {
    const top = readme.split('\n').slice(0, 40).join('\n');
    expect(top).toMatch(/npm run demo/);
    expect(top).toMatch(/npm test/);
  });

  it('links to other files by repository URL: the tarball ships the README without docs/', () => {
    const relativeFileLinks = linksOf(join(root, 'README.md'))
      .filter((link) => !/^[a-z][a-z0-9+.-]*:/i.test(link.target) && !link.target.startsWith('#'))
      .map((link) => `README.md:${link.line}: ${link.target}`);
    expect(relativeFileLinks).toEqual([]);
  });
});

describe('links in README.md, CHANGELOG.md, SECURITY.md and docs/', () => {
  it('the checker finds links and anchors, and sees a broken one', () => {
    const readmeLinks = linksOf(join(root, 'README.md'));
    expect(readmeLinks.length).toBeGreaterThan(10);
    expect(anchorsOf(join(root, 'docs', 'supabase.md')).size).toBeGreaterThan(3);
    expect(slug('Deploy step and start-up: `migrate()` and `ready()`')).toBe(
      'deploy-step-and-start-up-migrate-and-ready',
    );
    const file = join(root, 'docs', 'supabase.md');
    expect(problem({ file, line: 1, target: 'missing-page.md' })).toMatch(/does not exist/);
    expect(problem({ file, line: 1, target: 'configuration.md#no-such-heading' })).toMatch(/no heading/);
    expect(problem({ file, line: 1, target: `${REPOSITORY}/blob/main/docs/nope.md` })).toMatch(
      /does not exist/,
    );
    expect(problem({ file, line: 1, target: 'configuration.md#environment-variables' })).toBeNull();
  });

  it('lead to a file that exists and, with a #fragment, to a heading it has', () => {
    const problems = markdownFiles()
      .flatMap(linksOf)
      .map(problem)
      .filter((p): p is string => p !== null);
    expect(problems).toEqual([]);
  });

  it('use only reference labels that are defined', () => {
    expect(markdownFiles().flatMap(undefinedReferences)).toEqual([]);
  });

  it('name only repository files that exist (test files, sources, SQL, scripts), in prose and in code', () => {
    // Paths in code spans are not links, so a move of the tree (test/<layer>/…) leaves them stale unseen.
    const named = /(?<![\w./-])((?:src|test|sql|scripts|bench|examples|\.ci)\/[A-Za-z0-9_./-]*[A-Za-z0-9_])/g;
    const missing = markdownFiles().flatMap((file) => {
      const text = readFileSync(file, 'utf8');
      return [...text.matchAll(named)]
        .map((match) => match[1] ?? '')
        .filter((path) => !path.includes('NNNNNN')) // a pattern (sql/NNNNNN_name.sql), not a file
        .filter((path) => {
          // `./src/index.js` in an example run by tsx names src/index.ts.
          const candidates = [path, path.replace(/\.js$/, '.ts')];
          return !candidates.some((candidate) => existsSync(join(root, candidate)));
        })
        .map((path) => `${relative(root, file)}: ${path}`);
    });
    expect([...new Set(missing)]).toEqual([]);
  });
});
