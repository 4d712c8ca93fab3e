// suite-scope: once — the CLI's front end (arguments, prompts, output, exit codes, signals) behaves the same on any server; the library's files run every SQL path it reaches on each server
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { refusedKind, variableFor } from '../../src/cli/commands/run-variables.js';
import { createSecretsManager, type SecretsManager } from '../../src/index.js';
import { type CliResult, finishCli, runCli, startCli } from '../support/cli.js';
import { freshDatabase, TEST_KEY } from '../support/db.js';

/** `tenant-secrets run`: a command started with a tenant's secrets as environment variables. */

const SECRETS: Record<string, string> = {
  'stripe/api-key': 'sk_live_run_4eC39HqLyjWDarjtT1zdp7dc',
  'stripe/webhook-secret': 'whsec_run_9fJ2kLmNoPqRsTuVwXyZ',
  'db/password': 'pg-run-password-correct-horse',
  '1st/token': 'first-token-value-0123456789',
  'multi.line': 'line one\nline two',
};
const VALUES = Object.values(SECRETS);

let env: Record<string, string>;
let manager: SecretsManager;
let dir = '';
let child = '';

beforeAll(async () => {
  const db = await freshDatabase('cli_run');
  env = { DATABASE_URL: db.url, TENANT_SECRETS_MASTER_KEY: TEST_KEY, TENANT_SECRETS_ACTOR: 'run-test' };
  manager = createSecretsManager({ connectionString: db.url, masterKey: TEST_KEY, actor: 'setup' });
  await manager.migrate();
  for (const [name, value] of Object.entries(SECRETS)) await manager.set('acme', name, value);
  dir = mkdtempSync(join(tmpdir(), 'tenant-secrets-run-'));
  chmodSync(dir, 0o755); // the postgres user (when running as root) must reach the embedded data directory
  // The command: writes its environment (the variables the test asks about) to a file, says hello
  // on stdout, then exits as told.
  child = join(dir, 'child.mjs');
  writeFileSync(
    child,
    `import { writeFileSync } from 'node:fs';
const names = (process.env.REPORT_NAMES ?? '').split(',').filter(Boolean);
writeFileSync(process.env.REPORT_FILE, JSON.stringify(Object.fromEntries(names.map((n) => [n, process.env[n] ?? null]))));
process.stdout.write('hello from the command\\n');
const mode = process.argv[2] ?? 'exit:0';
if (mode.startsWith('exit:')) process.exit(Number(mode.slice(5)));
if (mode.startsWith('kill:')) process.kill(process.pid, mode.slice(5));
if (mode === 'wait') {
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
    process.on(signal, () => {
      writeFileSync(process.env.REPORT_FILE + '.signal', signal);
      process.exit(40 + ['SIGINT', 'SIGTERM', 'SIGHUP'].indexOf(signal));
    });
  }
  process.stdout.write('waiting for a signal\\n');
  setInterval(() => undefined, 1000);
}
`,
  );
});

afterAll(async () => {
  await manager.close();
  rmSync(dir, { recursive: true, force: true });
});

let reports = 0;

/** Runs `tenant-secrets run <options> -- node child.mjs <mode>` and returns what the command saw. */
async function runWith(
  options: string[],
  names: string[],
  mode = 'exit:0',
  extraEnv: Record<string, string> = {},
): Promise<CliResult & { seen: Record<string, string | null> | undefined }> {
  const report = join(dir, `report-${++reports}.json`);
  const result = await runCli(['run', ...options, '--', process.execPath, child, mode], {
    env: { ...env, REPORT_FILE: report, REPORT_NAMES: names.join(','), ...extraEnv },
  });
  const seen = existsSync(report) ? JSON.parse(readFileSync(report, 'utf8')) : undefined;
  return { ...result, seen };
}

/** The CLI's own output (the command's hello removed) never shows a value. */
function expectNoValues(result: CliResult): void {
  const own = result.stdout.replace('hello from the command\n', '') + result.stderr;
  for (const value of VALUES) {
    expect(own).not.toContain(value);
    for (const line of value.split('\n')) expect(own).not.toContain(line);
  }
}

describe('run: variables', () => {
  it('derives names: upper case, other characters become _, a leading digit gets _', () => {
    expect(variableFor('api-key')).toBe('API_KEY');
    expect(variableFor('stripe/webhook.secret')).toBe('STRIPE_WEBHOOK_SECRET');
    expect(variableFor('1st/token')).toBe('_1ST_TOKEN');
    expect(variableFor('already_OK_9')).toBe('ALREADY_OK_9');
  });

  it('injects every secret of the tenant; the command inherits stdout; values are never printed', async () => {
    const names = ['STRIPE_API_KEY', 'STRIPE_WEBHOOK_SECRET', 'DB_PASSWORD', '_1ST_TOKEN', 'MULTI_LINE'];
    const result = await runWith(['--tenant', 'acme'], names);
    expect(result.code, result.stderr).toBe(0);
    expect(result.seen).toEqual({
      STRIPE_API_KEY: SECRETS['stripe/api-key'],
      STRIPE_WEBHOOK_SECRET: SECRETS['stripe/webhook-secret'],
      DB_PASSWORD: SECRETS['db/password'],
      _1ST_TOKEN: SECRETS['1st/token'],
      MULTI_LINE: SECRETS['multi.line'],
    });
    expect(result.stdout).toBe('hello from the command\n');
    expect(result.stderr).toContain('running');
    expect(result.stderr).toContain('STRIPE_API_KEY');
    expectNoValues(result);
  });

  it('--prefix: only secrets under it, named after the rest', async () => {
    const result = await runWith(
      ['--tenant', 'acme', '--prefix', 'stripe/'],
      ['API_KEY', 'WEBHOOK_SECRET', 'DB_PASSWORD', 'STRIPE_API_KEY'],
    );
    expect(result.code, result.stderr).toBe(0);
    expect(result.seen).toEqual({
      API_KEY: SECRETS['stripe/api-key'],
      WEBHOOK_SECRET: SECRETS['stripe/webhook-secret'],
      DB_PASSWORD: null,
      STRIPE_API_KEY: null,
    });
  });

  it('--map: exactly the mapped secrets, under the given names (and no value shown with --debug)', async () => {
    const result = await runWith(
      [
        '--tenant',
        'acme',
        '--map',
        'stripe/api-key=STRIPE_KEY',
        '--map',
        'db/password=PGPASSWORD',
        '--debug',
      ],
      ['STRIPE_KEY', 'PGPASSWORD', 'STRIPE_API_KEY', 'STRIPE_WEBHOOK_SECRET'],
    );
    expect(result.code, result.stderr).toBe(0);
    expect(result.seen).toEqual({
      STRIPE_KEY: SECRETS['stripe/api-key'],
      PGPASSWORD: SECRETS['db/password'],
      STRIPE_API_KEY: null,
      STRIPE_WEBHOOK_SECRET: null,
    });
    expectNoValues(result);
  });

  it('refuses colliding, missing and invalid names before reading anything or starting the command', async () => {
    await manager.set('clash', 'dup/a-b', 'value-dash');
    await manager.set('clash', 'dup/a_b', 'value-underscore');
    await manager.set('clash', 'dup/', 'value-of-the-prefix-itself');
    const before = (await manager.audit('clash', { action: 'secret.read' })).records.length;
    const collision = await runWith(['--tenant', 'clash', '--prefix', 'dup/a'], ['_B']);
    expect(collision.code).toBe(2);
    expect(collision.stderr).toMatch(/secrets dup\/a[-_]b and dup\/a[-_]b would both be _B/);
    expect(collision.seen).toBeUndefined(); // the command never started
    const empty = await runWith(['--tenant', 'clash', '--prefix', 'dup/'], []);
    expect(empty.code).toBe(2);
    expect(empty.stderr).toContain('secret dup/ has no name after --prefix dup/');
    expect((await manager.audit('clash', { action: 'secret.read' })).records.length).toBe(before);

    for (const [options, message] of [
      [['--map', 'dup/a-b=X', '--map', 'dup/a_b=X'], '--map gives X twice'],
      [['--map', 'dup/a-b=X', '--map', 'dup/a-b=Y'], '--map names secret dup/a-b twice'],
      [['--map', 'dup/a-b=BAD-NAME'], 'is not a valid environment variable name'],
      [['--map', 'dup/a-b=9LIVES'], 'is not a valid environment variable name'],
      [['--map', 'dup/a-b'], '--map must be secret-name=VARIABLE'],
      [['--prefix', 'other/', '--map', 'dup/a-b=X'], 'does not start with --prefix other/'],
    ] as const) {
      const refused = await runWith(['--tenant', 'clash', ...options], []);
      expect(refused.code, options.join(' ')).toBe(2);
      expect(refused.stderr).toContain(message);
      expect(refused.seen).toBeUndefined();
    }
    const missing = await runWith(['--tenant', 'clash', '--map', 'dup/nothing=X'], []);
    expect(missing.code).toBe(3);
    expect(missing.seen).toBeUndefined();
    const noTenant = await runWith([], []);
    expect(noTenant.code).toBe(2);
  });

  it('keeps the master keys from the command unless --keep-master-key; warns about overridden variables', async () => {
    const names = ['TENANT_SECRETS_MASTER_KEY', 'DATABASE_URL', 'PGPASSWORD'];
    const extra = { PGPASSWORD: 'inherited-not-secret' };
    const kept = await runWith(
      ['--tenant', 'acme', '--map', 'db/password=PGPASSWORD'],
      names,
      'exit:0',
      extra,
    );
    expect(kept.seen).toEqual({
      TENANT_SECRETS_MASTER_KEY: null,
      DATABASE_URL: env.DATABASE_URL,
      PGPASSWORD: SECRETS['db/password'],
    });
    expect(kept.stderr).toContain('warning: secrets override the inherited PGPASSWORD');
    expect(kept.stderr).not.toContain(TEST_KEY);
    const passed = await runWith(['--tenant', 'acme', '--map', 'db/password=X', '--keep-master-key'], names);
    expect(passed.seen?.TENANT_SECRETS_MASTER_KEY).toBe(TEST_KEY);
  });

  it('each secret read is an audited secret.read', async () => {
    await manager.set('audited', 'a', 'value-a');
    await manager.set('audited', 'b', 'value-b');
    const result = await runWith(['--tenant', 'audited'], ['A', 'B']);
    expect(result.seen).toEqual({ A: 'value-a', B: 'value-b' });
    const reads = (await manager.audit('audited', { action: 'secret.read' })).records;
    expect(reads.map((r) => [r.keyName, r.actor, r.outcome]).sort()).toEqual([
      ['a', 'run-test', 'success'],
      ['b', 'run-test', 'success'],
    ]);
  });

  it('reads more than one batch: 150 secrets, each under its variable', async () => {
    const names = Array.from({ length: 150 }, (_, i) => `bulk/s${String(i).padStart(3, '0')}`);
    for (const name of names) await manager.set('bulk', name, `value-of-${name}`);
    const variables = names.map((name) => variableFor(name.slice('bulk/'.length)));
    const result = await runWith(['--tenant', 'bulk', '--prefix', 'bulk/'], variables);
    expect(result.code, result.stderr).toBe(0);
    expect(Object.values(result.seen ?? {})).toEqual(names.map((name) => `value-of-${name}`));
  });

  it('a NUL character in a value is refused, naming the secret, never showing the value', async () => {
    await manager.set('nul', 'with-nul', 'before\0after-secret-part');
    const result = await runWith(['--tenant', 'nul', '--debug'], ['WITH_NUL']);
    expect(result.code).toBe(2);
    expect(result.stderr).toContain('secret with-nul contains a NUL character');
    expect(result.stderr).not.toContain('after-secret-part');
    expect(result.seen).toBeUndefined();
  });
});

describe('run: variables that change how programs load or run', () => {
  it('are refused whatever their case; ordinary secret variables are not', () => {
    for (const name of [
      'NODE_OPTIONS',
      'node_options',
      'Node_Path',
      'NODE_EXTRA_CA_CERTS',
      'LD_PRELOAD',
      'ld_library_path',
      'LD_AUDIT',
      'DYLD_INSERT_LIBRARIES',
      'PATH',
      'Path',
      'BASH_ENV',
      'BASH_FUNC_X',
      'ENV',
      'SHELLOPTS',
      'PS4',
      'IFS',
      'PYTHONPATH',
      'PYTHONSTARTUP',
      'PYTHONWARNINGS',
      'PERL5OPT',
      'PERL5LIB',
      'PERLLIB',
      'RUBYOPT',
      'RUBYLIB',
      'JAVA_TOOL_OPTIONS',
      '_JAVA_OPTIONS',
      'JDK_JAVA_OPTIONS',
      'CLASSPATH',
      'GCONV_PATH',
      'LOCPATH',
      'GLIBC_TUNABLES',
      'MALLOC_CHECK_',
      'GIT_SSH_COMMAND',
      'GIT_EXEC_PATH',
      'SSL_CERT_FILE',
      'SSL_CERT_DIR',
      'http_proxy',
      'HTTPS_PROXY',
      'ALL_PROXY',
      'NO_PROXY',
      'NPM_CONFIG_SCRIPT_SHELL',
      'npm_config_node_options',
      'OPENSSL_CONF',
      'DOTNET_STARTUP_HOOKS',
      'HOME',
      'TENANT_SECRETS_MASTER_KEY',
      '_',
    ]) {
      expect(refusedKind(name), name).toBeDefined();
    }
    for (const name of [
      'STRIPE_API_KEY',
      'API_KEY',
      'DATABASE_URL',
      'PGPASSWORD',
      'SSL_KEY',
      'GOOGLE_API_KEY',
      'AWS_SECRET_ACCESS_KEY',
      'NODE',
      'PATHS',
      'MY_PATH',
      'LDAP_PASSWORD',
      '_1ST_TOKEN',
    ]) {
      expect(refusedKind(name), name).toBeUndefined();
    }
  });

  it('a secret named node_options (ld_preload, path, http_proxy, ...) is refused before anything is read or run', async () => {
    const marker = join(dir, 'evil-ran');
    const evil = join(dir, 'evil.cjs');
    writeFileSync(evil, `require('node:fs').writeFileSync(${JSON.stringify(marker)}, 'ran');`);
    const dangerous: Record<string, string> = {
      node_options: `--require ${evil}`,
      'Ld.Preload': join(dir, 'evil.so'),
      path: dir,
      http_proxy: 'http://attacker.invalid:3128',
      pythonstartup: evil,
    };
    for (const [name, value] of Object.entries(dangerous)) await manager.set('evil', name, value);
    await manager.set('evil', 'api-key', 'harmless-api-key-value');
    const before = (await manager.audit('evil', { action: 'secret.read' })).records.length;

    const result = await runWith(['--tenant', 'evil', '--debug'], ['NODE_OPTIONS', 'API_KEY']);
    expect(result.code).toBe(2);
    expect(result.stderr).toContain('[INVALID_INPUT]');
    expect(result.stderr).toContain('5 secrets would set variables that change how programs load or run');
    for (const expected of [
      'node_options -> NODE_OPTIONS',
      'Ld.Preload -> LD_PRELOAD',
      'path -> PATH',
      'http_proxy -> HTTP_PROXY',
      'pythonstartup -> PYTHONSTARTUP',
    ]) {
      expect(result.stderr).toContain(expected);
    }
    expect(result.stderr).toContain('--map');
    for (const value of [...Object.values(dangerous), 'harmless-api-key-value']) {
      expect(result.stdout + result.stderr).not.toContain(value);
    }
    expect(result.seen).toBeUndefined(); // the command never started
    expect(existsSync(marker)).toBe(false);
    expect((await manager.audit('evil', { action: 'secret.read' })).records.length).toBe(before);

    // Under a prefix, the name after it counts.
    await manager.set('evil-prefixed', 'app/node_options', `--require ${evil}`);
    const prefixed = await runWith(['--tenant', 'evil-prefixed', '--prefix', 'app/'], []);
    expect(prefixed.code).toBe(2);
    expect(prefixed.stderr).toContain('app/node_options -> NODE_OPTIONS');
    expect(existsSync(marker)).toBe(false);
  });

  it('--prefix leaves such a secret out; --map sets the variable on purpose', async () => {
    await manager.set('mixed', 'app/api-key', 'mixed-api-key-value');
    await manager.set('mixed', 'node_options', '--max-old-space-size=123');
    const prefixed = await runWith(['--tenant', 'mixed', '--prefix', 'app/'], ['API_KEY', 'NODE_OPTIONS']);
    expect(prefixed.code, prefixed.stderr).toBe(0);
    expect(prefixed.seen).toEqual({ API_KEY: 'mixed-api-key-value', NODE_OPTIONS: null });

    const mapped = await runWith(
      ['--tenant', 'mixed', '--map', 'node_options=NODE_OPTIONS', '--map', 'app/api-key=API_KEY'],
      ['API_KEY', 'NODE_OPTIONS'],
    );
    expect(mapped.code, mapped.stderr).toBe(0);
    expect(mapped.seen).toEqual({ API_KEY: 'mixed-api-key-value', NODE_OPTIONS: '--max-old-space-size=123' });
  });
});

describe('run: the command', () => {
  it('passes its exit code through, and 128 + n when signal n ends it', async () => {
    expect((await runWith(['--tenant', 'acme'], [], 'exit:7')).code).toBe(7);
    expect((await runWith(['--tenant', 'acme'], [], 'kill:SIGTERM')).code).toBe(143);
    expect((await runWith(['--tenant', 'acme'], [], 'kill:SIGKILL')).code).toBe(137);
  });

  it('forwards SIGTERM, SIGINT and SIGHUP to the command', async () => {
    for (const [signal, code] of [
      ['SIGINT', 40],
      ['SIGTERM', 41],
      ['SIGHUP', 42],
    ] as const) {
      const report = join(dir, `signal-${signal}.json`);
      const cli = startCli(['run', '--tenant', 'acme', '--', process.execPath, child, 'wait'], {
        ...env,
        REPORT_FILE: report,
      });
      let out = '';
      cli.stdout.on('data', (d: Buffer) => {
        out += d.toString('utf8');
        if (out.includes('waiting for a signal')) cli.kill(signal);
      });
      const result = await finishCli(cli);
      expect(result.code, `${signal}: ${result.stderr}`).toBe(code);
      expect(readFileSync(`${report}.signal`, 'utf8')).toBe(signal);
    }
  });

  it('a command that does not exist: exit 2, a clear message', async () => {
    const result = await runCli(['run', '--tenant', 'acme', '--', join(dir, 'no-such-program')], { env });
    expect(result.code).toBe(2);
    expect(result.stderr).toContain('no-such-program: command not found');
    expectNoValues(result);
  });

  it('with the embedded PostgreSQL: the server is released before the command starts', async () => {
    const dataDir = join(dir, 'pgdata');
    const embeddedEnv = { TENANT_SECRETS_MASTER_KEY: TEST_KEY, TENANT_SECRETS_DATA_DIR: dataDir };
    expect(
      (await runCli(['--embedded', 'set', 'local', 'api-key'], { env: embeddedEnv, input: 'local-value' }))
        .code,
    ).toBe(0);
    // The command checks that no server runs on the data directory any more.
    const script = `const fs = require('node:fs'); let pid = 0; try { pid = Number(fs.readFileSync(process.argv[1] + '/postmaster.pid', 'utf8').split('\\n')[0]); } catch {} let alive = false; try { if (pid) { process.kill(pid, 0); alive = true; } } catch {} process.stdout.write(JSON.stringify({ alive, key: process.env.API_KEY === 'local-value' }));`;
    const result = await runCli(
      ['run', '--tenant', 'local', '--embedded', '--', process.execPath, '-e', script, dataDir],
      {
        env: embeddedEnv,
      },
    );
    expect(result.code, result.stderr).toBe(0);
    expect(JSON.parse(result.stdout)).toEqual({ alive: false, key: true });
  });
});
