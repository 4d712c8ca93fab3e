// suite-scope: once — the CLI's front end (arguments, prompts, output, exit codes, signals) behaves the same on any server; the library's files run every SQL path it reaches on each server
import { CommanderError } from 'commander';
import pg from 'pg';
import { afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { reportError, setJsonErrors } from '../../src/cli/report.js';
import {
  createSecretsManager,
  IntegrityError,
  OperationAbortedError,
  SecretNotFoundError,
} from '../../src/index.js';
import { finishCli, hasScript, runCli, runOnTerminal, startCli } from '../support/cli.js';
import { adminQuery, freshDatabase, OTHER_KEY, TEST_KEY } from '../support/db.js';

/** `--json` error documents and terminal-safe output, driven through the built CLI. */

let env: Record<string, string>;
let dbName: string;

function cli(args: string[], options: { input?: string; env?: Record<string, string | undefined> } = {}) {
  return runCli(args, { input: options.input, env: options.env ?? env });
}

/** stdout parsed as exactly one JSON document (JSON.parse fails on anything after it). */
function oneDocument(stdout: string): {
  error: { code: string; message: string; exitCode: number; details?: unknown };
} {
  return JSON.parse(stdout);
}

// biome-ignore lint/suspicious/noControlCharactersInRegex: looking for raw control characters is the point
const RAW_CONTROL = /[\u0000-\u0009\u000b-\u001f\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069]/;

beforeAll(async () => {
  const db = await freshDatabase('cli_out');
  dbName = db.name;
  env = { DATABASE_URL: db.url, TENANT_SECRETS_MASTER_KEY: TEST_KEY, TENANT_SECRETS_ACTOR: 'output-test' };
  expect((await cli(['migrate'])).code).toBe(0);
});

describe('--json: every failure is one JSON document on stdout, with the usual exit code', () => {
  it('library errors: not found (3), invalid input (2), configuration (6), unavailable (7)', async () => {
    const missing = await cli(['get', 'tenant-j', 'missing', '--json']);
    expect(missing.code).toBe(3);
    expect(oneDocument(missing.stdout)).toEqual({
      error: {
        code: 'NOT_FOUND',
        message: 'secret not found: tenant "tenant-j", key "missing"',
        exitCode: 3,
      },
    });
    expect(missing.stderr).toContain('[NOT_FOUND]'); // humans still get the line on stderr

    const invalid = await cli(['get', 'bad tenant!', 'k', '--json']);
    expect(invalid.code).toBe(2);
    expect(oneDocument(invalid.stdout).error).toMatchObject({ code: 'INVALID_INPUT', exitCode: 2 });

    const badKey = 'hunter2-not-a-real-key';
    const config = await cli(['get', 'tenant-j', 'k', '--json'], {
      env: { ...env, TENANT_SECRETS_MASTER_KEY: badKey },
    });
    expect(config.code).toBe(6);
    expect(oneDocument(config.stdout).error).toMatchObject({ code: 'CONFIGURATION', exitCode: 6 });
    expect(config.stdout + config.stderr).not.toContain('hunter2');

    const unavailable = await cli(['list', 'tenant-j', '--json'], {
      env: { ...env, DATABASE_URL: 'postgres://nobody:pw@127.0.0.1:1/nothing' },
    });
    expect(unavailable.code).toBe(7);
    expect(oneDocument(unavailable.stdout).error).toMatchObject({
      code: 'DATABASE_UNAVAILABLE',
      exitCode: 7,
    });
    expect(unavailable.stdout).not.toContain('pw@');
  });

  it('usage errors found by the argument parser: INVALID_INPUT, exit 2', async () => {
    for (const args of [
      ['get', 'tenant-j', '--json'], // missing argument
      ['get', 'tenant-j', 'k', '--no-such-option', '--json'],
      ['no-such-command', '--json'],
      ['audit', 'export', '--json'], // a command without --json
    ]) {
      const result = await cli(args);
      expect(result.code, args.join(' ')).toBe(2);
      const doc = oneDocument(result.stdout);
      expect(doc.error.code, args.join(' ')).toBe('INVALID_INPUT');
      expect(doc.error.exitCode).toBe(2);
      expect(doc.error.message).not.toMatch(/^error:/);
    }
    expect(oneDocument((await cli(['get', 'tenant-j', '--json'])).stdout).error.message).toBe(
      "missing required argument 'key'",
    );
  });

  it('without --json stdout stays empty on errors, as before', async () => {
    for (const args of [['get', 'tenant-j', 'missing'], ['get', 'tenant-j'], ['no-such-command']]) {
      const result = await cli(args);
      expect(result.code).not.toBe(0);
      expect(result.stdout).toBe('');
    }
  });

  it('audit verify --json on a tampered trail: the error document carries the verification', async () => {
    await cli(['set', 'tenant-jt', 'k'], { input: 'v' });
    await cli(['get', 'tenant-jt', 'k']);
    await adminQuery(
      dbName,
      `UPDATE tenant_secret_audit SET actor = 'someone-else' WHERE chain_id = 'tenant-jt' AND seq = 2`,
    );
    const bad = await cli(['audit', 'verify', '--tenant', 'tenant-jt', '--json']);
    expect(bad.code).toBe(5);
    const doc = oneDocument(bad.stdout);
    expect(doc.error).toMatchObject({ code: 'INTEGRITY', exitCode: 5 });
    expect(doc.error.message).toContain('chain tenant-jt at seq 2');
    expect(doc.error.details).toMatchObject({
      verification: { ok: false, firstBad: { chainId: 'tenant-jt', seq: 2, reason: 'hash_mismatch' } },
    });
  });

  it('an interrupted rotation (Ctrl-C, then Ctrl-C again) is an ABORTED document, exit 130', async () => {
    // Tenants with data keys under TEST_KEY; the rotation to OTHER_KEY waits on a row lock held here.
    const manager = createSecretsManager({ connectionString: env.DATABASE_URL, masterKey: TEST_KEY });
    try {
      for (const t of ['rot-1', 'rot-2', 'rot-3']) await manager.set(t, 'k', `value-${t}`);
    } finally {
      await manager.close();
    }
    const locker = new pg.Client({ connectionString: env.DATABASE_URL });
    await locker.connect();
    try {
      await locker.query('BEGIN');
      await locker.query('SELECT 1 FROM tenant_secret_keys FOR UPDATE');
      const rotateEnv = {
        ...env,
        TENANT_SECRETS_MASTER_KEY: OTHER_KEY,
        TENANT_SECRETS_PREVIOUS_MASTER_KEYS: TEST_KEY,
      };
      const child = startCli(['rotate-master-key', '--batch-size', '1', '--json'], rotateEnv);
      let exited = false;
      child.on('exit', () => {
        exited = true;
      });
      // Wait until the rotation waits on the lock (a separate connection: inside a transaction the
      // statistics views would show one snapshot).
      const waiting = async () =>
        (
          await adminQuery<{ n: string }>(
            dbName,
            `SELECT count(*) AS n FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'`,
          )
        )[0]?.n !== '0';
      while (!exited && !(await waiting())) await new Promise((resolve) => setTimeout(resolve, 50));
      let stderr = '';
      let again = false;
      child.stderr.on('data', (d: Buffer) => {
        stderr += d.toString('utf8');
        if (!again && stderr.includes('SIGINT: stopping after the current batch')) {
          again = true;
          child.kill('SIGINT'); // the second Ctrl-C: exit at once
        }
      });
      child.kill('SIGINT');
      const result = await finishCli(child);
      expect(result.code, result.stderr).toBe(130);
      expect(oneDocument(result.stdout).error).toMatchObject({ code: 'ABORTED', exitCode: 130 });
      expect(stderr).toContain('SIGINT again: exiting now; run again to resume');
    } finally {
      await locker.query('ROLLBACK');
      await locker.end();
    }
  });
});

describe('the error reporter', () => {
  let stdout = '';
  let stderr = '';
  const capture = () => {
    stdout = '';
    stderr = '';
    vi.spyOn(process.stdout, 'write').mockImplementation((chunk: string | Uint8Array) => {
      stdout += String(chunk);
      return true;
    });
    vi.spyOn(process.stderr, 'write').mockImplementation((chunk: string | Uint8Array) => {
      stderr += String(chunk);
      return true;
    });
  };
  afterEach(() => {
    vi.restoreAllMocks();
    setJsonErrors(false);
  });

  it('an unexpected error: generic message and code UNEXPECTED, its text only with --debug', () => {
    capture();
    setJsonErrors(true);
    const code = reportError(new TypeError('cannot read sk_live_do_not_show'), false);
    vi.restoreAllMocks();
    expect(code).toBe(1);
    expect(JSON.parse(stdout)).toEqual({
      error: {
        code: 'UNEXPECTED',
        message: 'unexpected error (TypeError); run with --debug for details',
        exitCode: 1,
      },
    });
    expect(stdout + stderr).not.toContain('sk_live_do_not_show');

    capture();
    setJsonErrors(true);
    reportError(new TypeError('cannot read property x'), true);
    vi.restoreAllMocks();
    expect(JSON.parse(stdout).error.message).toBe('unexpected error (TypeError): cannot read property x');
    expect(stderr).toMatch(/\n\s+at /);
  });

  it('prompt cancellation, aborted operations and usage errors', () => {
    const cases: [unknown, string, number][] = [
      [Object.assign(new Error('User force closed the prompt'), { name: 'ExitPromptError' }), 'ABORTED', 130],
      [new OperationAbortedError('master-key rotation', 3), 'ABORTED', 130],
      [
        new CommanderError(1, 'commander.missingArgument', "error: missing required argument 'key'"),
        'INVALID_INPUT',
        2,
      ],
      [new SecretNotFoundError('t', 'k'), 'NOT_FOUND', 3],
    ];
    for (const [error, expected, exitCode] of cases) {
      capture();
      setJsonErrors(true);
      const code = reportError(error, false);
      vi.restoreAllMocks();
      expect(code).toBe(exitCode);
      expect(JSON.parse(stdout).error).toMatchObject({ code: expected, exitCode });
    }
    capture();
    setJsonErrors(true);
    expect(reportError(new CommanderError(0, 'commander.helpDisplayed', '(outputHelp)'), false)).toBe(0);
    vi.restoreAllMocks();
    expect(stdout).toBe('');
  });

  it('escapes control characters in messages shown to humans; JSON escapes C1 and U+2028 too', () => {
    capture();
    setJsonErrors(true);
    reportError(new IntegrityError('bad record \u001b[2J\nforged line \u009b31m \u2028'), false);
    vi.restoreAllMocks();
    expect(stderr).toBe(
      'tenant-secrets: error [INTEGRITY]: bad record \\x1b[2J\\x0aforged line \\x9b31m \\u2028\n',
    );
    expect(stdout).not.toMatch(RAW_CONTROL);
    expect(stdout).toContain('\\u009b31m \\u2028');
    expect(JSON.parse(stdout).error.message).toBe('bad record \u001b[2J\nforged line \u009b31m \u2028');
  });
});

describe('terminal-safe output of what the database holds', () => {
  const ESC_LABEL = 'prod\u001b[2J\nFORGED-ROW';
  const C1_ACTOR = 'ops\u009b2J\u2028\u202eevil';
  const ESC_ACTOR = 'evil\u001b]0;owned\u0007\r\nFORGED';

  it('the library and the SQL functions refuse control characters in labels, descriptions and actors', async () => {
    const label = await cli(['set', 'tenant-esc', 'k', '--label', `env=${ESC_LABEL}`], { input: 'v' });
    expect(label.code).toBe(2);
    expect(label.stderr).toContain('[INVALID_INPUT]');
    const description = await cli(['set', 'tenant-esc', 'k', '--description', 'desc\u0085'], {
      input: 'v',
    });
    expect(description.code).toBe(2);
    expect(description.stderr).toContain('[INVALID_INPUT]');
    const actor = await cli(['set', 'tenant-esc', 'k'], {
      input: 'v',
      env: { ...env, TENANT_SECRETS_ACTOR: C1_ACTOR },
    });
    expect(actor.code).toBe(6); // the actor is configuration: refused before anything is sent
    expect(actor.stderr).toContain('[CONFIGURATION]');
    expect(actor.stderr).not.toMatch(RAW_CONTROL);
    expect((await cli(['get', 'tenant-esc', 'k'])).code).toBe(3); // nothing was stored
  });

  // What the functions refuse can still be written around them, as the owner or a superuser could
  // (or an older release did): what the CLI prints of it must stay inert on a terminal.
  it('list and versions tables escape labels and actors written around the library; one row stays one line', async () => {
    const set = await cli(['set', 'tenant-esc', 'k', '--label', 'env=prod', '--description', 'desc'], {
      input: 'v',
    });
    expect(set.code, set.stderr).toBe(0);
    await adminQuery(
      dbName,
      `UPDATE tenant_secrets SET labels = jsonb_build_object('env', $1::text), description = $2
        WHERE tenant_id = 'tenant-esc' AND key_name = 'k'`,
      [ESC_LABEL, 'desc\u0085\u2029'],
    );
    await adminQuery(
      dbName,
      `UPDATE tenant_secret_versions SET created_by = $1 WHERE tenant_id = 'tenant-esc' AND key_name = 'k'`,
      [C1_ACTOR],
    );

    const list = await cli(['list', 'tenant-esc']);
    expect(list.code).toBe(0);
    expect(list.stdout).not.toMatch(RAW_CONTROL);
    expect(list.stdout).toContain('env=prod\\x1b[2J\\x0aFORGED-ROW');
    expect(list.stdout.trimEnd().split('\n')).toHaveLength(2); // header + one row

    const versions = await cli(['versions', 'tenant-esc', 'k']);
    expect(versions.code).toBe(0);
    expect(versions.stdout).not.toMatch(RAW_CONTROL);
    expect(versions.stdout).toContain('ops\\x9b2J\\u2028\\u202eevil');
    expect(versions.stdout.trimEnd().split('\n')).toHaveLength(2);
  });

  it('JSON output escapes DEL, C1 and U+2028/2029, and parses back to the stored text', async () => {
    const list = await cli(['list', 'tenant-esc', '--json']);
    expect(list.code).toBe(0);
    expect(list.stdout).not.toMatch(RAW_CONTROL);
    expect(list.stdout).toContain('\\u0085\\u2029');
    const [secret] = JSON.parse(list.stdout);
    expect(secret.description).toBe('desc\u0085\u2029');
    expect(secret.labels.env).toBe(ESC_LABEL);
  });

  it('audit table, export and verify escape stored actors written around the library', async () => {
    await cli(['get', 'tenant-esc', 'k']);
    // Records the functions would have refused, written by hand into the sealed partitions (the CLI
    // sealed its records before it exited): one record's actor rewritten, one record forged in.
    const [sealed] = await adminQuery<{ n: string }>(
      dbName,
      `SELECT count(*) AS n FROM tenant_secret_audit WHERE chain_id = 'tenant-esc' AND seq IS NULL`,
    );
    expect(sealed?.n).toBe('0');
    await adminQuery(
      dbName,
      `UPDATE tenant_secret_audit SET actor = $1 WHERE chain_id = 'tenant-esc' AND action = 'secret.read'`,
      [ESC_ACTOR],
    );
    await adminQuery(
      dbName,
      `INSERT INTO tenant_secret_audit (chain_id, seq, occurred_at, tenant_id, db_role, actor, action, key_name,
          outcome, hash, digest, sealed_at)
       SELECT chain_id, seq + 1, occurred_at, tenant_id, db_role, $1, 'secret.listed', NULL, 'success', hash, digest, sealed_at
         FROM tenant_secret_audit WHERE chain_id = 'tenant-esc' ORDER BY seq DESC LIMIT 1`,
      [C1_ACTOR],
    );
    const records = JSON.parse((await cli(['audit', 'tenant-esc', '--json'])).stdout).records;
    expect(records.map((r: { actor: string }) => r.actor)).toEqual(
      expect.arrayContaining([ESC_ACTOR, C1_ACTOR]),
    );
    const table = await cli(['audit', 'tenant-esc']);
    expect(table.code, table.stderr).toBe(0);
    expect(table.stdout).not.toMatch(RAW_CONTROL);
    expect(table.stdout).toContain('evil\\x1b]0;owned\\x07\\x0d\\x0aFORGED');
    expect(table.stdout).toContain('ops\\x9b2J\\u2028\\u202eevil');
    expect(table.stdout.trimEnd().split('\n')).toHaveLength(records.length + 1); // header + one line each

    const exported = await cli(['audit', 'export', '--tenant', 'tenant-esc']);
    expect(exported.code).toBe(0);
    expect(exported.stdout).not.toMatch(RAW_CONTROL);
    const actors = exported.stdout
      .trimEnd()
      .split('\n')
      .map((line) => JSON.parse(line).actor);
    expect(actors).toContain(C1_ACTOR);
    expect(actors).toContain(ESC_ACTOR);

    // The forgeries are tampering, of course; the report of it is terminal-safe too.
    for (const args of [
      ['audit', 'verify', '--tenant', 'tenant-esc'],
      ['audit', 'verify', '--tenant', 'tenant-esc', '--json'],
    ]) {
      const verify = await cli(args);
      expect(verify.code, args.join(' ')).toBe(5);
      expect(verify.stdout + verify.stderr).not.toMatch(RAW_CONTROL);
    }
  });
});

describe.runIf(hasScript)('get: the value on a terminal', () => {
  it('is raw into a pipe; escaped on a terminal with a note; raw with --raw', async () => {
    const value = 'line one\n\tindented \u001b[31mred\u001b[0m\r\u009b2J';
    expect((await cli(['set', 'tenant-tty', 'k'], { input: value })).code).toBe(0);

    const piped = await cli(['get', 'tenant-tty', 'k', '--no-newline']);
    expect(piped.stdout).toBe(value);
    expect(piped.stderr).toBe('');

    const shown = await runOnTerminal(['get', 'tenant-tty', 'k'], env);
    expect(shown.code, shown.output).toBe(0);
    expect(shown.output).not.toContain('\u001b');
    expect(shown.output).not.toContain('\u009b');
    expect(shown.output).toContain('\\x1b[31mred\\x1b[0m\\x0d\\x9b2J');
    expect(shown.output).toMatch(/line one\r?\n\tindented/); // newlines and tabs kept
    expect(shown.output).toContain('--raw prints them as they are');

    const raw = await runOnTerminal(['get', 'tenant-tty', 'k', '--raw'], env);
    expect(raw.code).toBe(0);
    expect(raw.output).toContain('\u001b[31mred\u001b[0m');
    expect(raw.output).not.toContain('--raw prints them');
  });
});
