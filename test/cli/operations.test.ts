// suite-scope: once — the CLI's front end (arguments, prompts, output, exit codes, signals) behaves the same on any server; the library's files run every SQL path it reaches on each server
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createSecretsManager, MasterKey, type SecretsManager } from '../../src/index.js';
import { type CliResult, finishCli, hasScript, runCli, runOnTerminal, startCli } from '../support/cli.js';
import { adminQuery, freshDatabase, OTHER_KEY, TEST_KEY } from '../support/db.js';

/** The CLI's operator commands (lifecycle, audit, key management, legacy import), driven as a subprocess. */
const start = startCli;
const finish = finishCli;

/** Runs the CLI with a clean environment (this file's database by default) and `input` on stdin. */
function cli(
  args: string[],
  options: { input?: string; env?: Record<string, string | undefined> } = {},
): Promise<CliResult> {
  return runCli(args, { input: options.input, env: options.env ?? env });
}

let env: Record<string, string>;
let dbName: string;

beforeAll(async () => {
  const db = await freshDatabase('cli_ops');
  dbName = db.name;
  env = { DATABASE_URL: db.url, TENANT_SECRETS_MASTER_KEY: TEST_KEY, TENANT_SECRETS_ACTOR: 'ops-test' };
  expect((await cli(['migrate'])).code).toBe(0);
});

describe('rollback, restore, destroy, purge-deleted', () => {
  it('rollback writes the old value as a new version; --if-version conflicts exit 4', async () => {
    await cli(['set', 'tenant-rb', 'k'], { input: 'one' });
    await cli(['rotate', 'tenant-rb', 'k'], { input: 'two' });
    const rolled = await cli(['rollback', 'tenant-rb', 'k', '1', '--json']);
    expect(rolled.code, rolled.stderr).toBe(0);
    expect(JSON.parse(rolled.stdout)).toEqual({ tenant: 'tenant-rb', key: 'k', version: 3, fromVersion: 1 });
    expect((await cli(['get', 'tenant-rb', 'k'])).stdout).toBe('one\n');
    const versions = JSON.parse((await cli(['versions', 'tenant-rb', 'k', '--json'])).stdout);
    expect(versions[0]).toMatchObject({ version: 3, origin: 'rollback', isCurrent: true });
    const conflict = await cli(['rollback', 'tenant-rb', 'k', '2', '--if-version', '1']);
    expect(conflict.code).toBe(4);
    expect((await cli(['rollback', 'tenant-rb', 'k', '9'])).code).toBe(3);
    expect((await cli(['rollback', 'tenant-rb', 'k', 'latest'])).code).toBe(2);
  });

  it('restore undoes a delete; restoring a live secret exits 3', async () => {
    await cli(['set', 'tenant-rs', 'k'], { input: 'kept' });
    await cli(['delete', 'tenant-rs', 'k']);
    expect((await cli(['get', 'tenant-rs', 'k'])).code).toBe(3);
    const restored = await cli(['restore', 'tenant-rs', 'k', '--json']);
    expect(restored.code, restored.stderr).toBe(0);
    expect(JSON.parse(restored.stdout)).toEqual({ tenant: 'tenant-rs', key: 'k', version: 1 });
    expect((await cli(['get', 'tenant-rs', 'k'])).stdout).toBe('kept\n');
    expect((await cli(['restore', 'tenant-rs', 'k'])).code).toBe(3);
  });

  it('destroy refuses without --yes when stdin is not a terminal (exit 2), then destroys', async () => {
    await cli(['set', 'tenant-ds', 'k'], { input: 'v1' });
    await cli(['rotate', 'tenant-ds', 'k'], { input: 'v2' });
    await cli(['rotate', 'tenant-ds', 'k'], { input: 'v3' });
    const refused = await cli(['destroy', 'tenant-ds', 'k']);
    expect(refused.code).toBe(2);
    expect(refused.stderr).toContain('--yes');
    expect((await cli(['get', 'tenant-ds', 'k'])).stdout).toBe('v3\n');

    const some = await cli(['destroy', 'tenant-ds', 'k', '--versions', '1,2', '--yes', '--json']);
    expect(some.code, some.stderr).toBe(0);
    expect(JSON.parse(some.stdout)).toEqual({ tenant: 'tenant-ds', key: 'k', destroyed: [1, 2] });
    expect((await cli(['get', 'tenant-ds', 'k', '--version', '1'])).code).toBe(3);
    expect((await cli(['destroy', 'tenant-ds', 'k', '--versions', '3', '--yes'])).code).toBe(2);
    expect((await cli(['destroy', 'tenant-ds', 'k', '--versions', '1,x', '--yes'])).code).toBe(2);

    const all = await cli(['destroy', 'tenant-ds', 'k', '--yes', '--json']);
    expect(all.code, all.stderr).toBe(0);
    expect(JSON.parse(all.stdout)).toMatchObject({ tenant: 'tenant-ds', key: 'k' });
    expect((await cli(['get', 'tenant-ds', 'k'])).code).toBe(3);
    expect((await cli(['destroy', 'tenant-ds', 'k', '--yes'])).code).toBe(3);
  });

  it('purge-deleted destroys secrets past their recovery window', async () => {
    await cli(['set', 'tenant-pd', 'old'], { input: 'x' });
    await cli(['set', 'tenant-pd', 'recent'], { input: 'y' });
    await cli(['delete', 'tenant-pd', 'old', '--recovery-window', '0']);
    await cli(['delete', 'tenant-pd', 'recent']);
    const purged = await cli(['purge-deleted', '--tenant', 'tenant-pd', '--json']);
    expect(purged.code, purged.stderr).toBe(0);
    expect(JSON.parse(purged.stdout)).toEqual({ purged: 1 });
    expect((await cli(['restore', 'tenant-pd', 'old'])).code).toBe(3);
    expect((await cli(['restore', 'tenant-pd', 'recent'])).code).toBe(0);
    expect((await cli(['purge-deleted', '--tenant', 'bad tenant!'])).code).toBe(2);
  });
});

describe('audit', () => {
  it('queries a tenant trail as a table and as JSON, with filters and cursors', async () => {
    await cli(['set', 'tenant-au', 'a'], { input: 'secret-value-a' });
    await cli(['get', 'tenant-au', 'a']);
    await cli(['get', 'tenant-au', 'missing']);
    const human = await cli(['audit', 'tenant-au']);
    expect(human.code, human.stderr).toBe(0);
    expect(human.stdout).toMatch(/^SEQ\s+AT\s+ACTION/);
    expect(human.stdout).toContain('secret.created');
    expect(human.stdout).toContain('ops-test');
    expect(human.stdout).not.toContain('secret-value-a');
    const reads = JSON.parse((await cli(['audit', 'tenant-au', '--action', 'secret.read', '--json'])).stdout);
    expect(reads.records.map((r: { outcome: string }) => r.outcome)).toEqual(['success', 'failure']);
    const failures = JSON.parse((await cli(['audit', 'tenant-au', '--outcome', 'failure', '--json'])).stdout);
    expect(failures.records).toEqual([
      expect.objectContaining({ errorCode: 'NOT_FOUND', keyName: 'missing' }),
    ]);
    const first = JSON.parse((await cli(['audit', 'tenant-au', '--limit', '1', '--json'])).stdout);
    expect(first.records).toHaveLength(1);
    expect(first.nextCursor).toBe('1');
    const second = JSON.parse(
      (await cli(['audit', 'tenant-au', '--limit', '1', '--cursor', first.nextCursor, '--json'])).stdout,
    );
    expect(second.records[0].seq).toBe(2);
    const system = JSON.parse(
      (await cli(['audit', '--system', '--action', 'audit.queried', '--json'])).stdout,
    );
    expect(system.records.length).toBeGreaterThan(0);
    expect((await cli(['audit'])).code).toBe(2);
    const byOption = JSON.parse(
      (await cli(['audit', '--tenant', 'tenant-au', '--limit', '1', '--json'])).stdout,
    );
    expect(byOption.records[0]).toMatchObject({ chainId: 'tenant-au', seq: 1 });
    expect((await cli(['audit', 'tenant-au', '--tenant', 'tenant-au'])).code).toBe(2);
    expect((await cli(['audit', 'tenant-au', '--outcome', 'maybe'])).code).toBe(2);
    expect((await cli(['audit', 'tenant-au', '--since', 'yesterday'])).code).toBe(2);
  });

  it('export streams JSON Lines that parse, one chain or all', async () => {
    const one = await cli(['audit', 'export', '--tenant', 'tenant-au']);
    expect(one.code, one.stderr).toBe(0);
    const lines = one.stdout.trimEnd().split('\n');
    const records = lines.map((line) => JSON.parse(line));
    expect(records.every((r) => r.chainId === 'tenant-au')).toBe(true);
    expect(records.map((r) => r.seq)).toEqual(records.map((_, i) => i + 1));
    expect(records[0]).toMatchObject({
      action: 'secret.created',
      hash: expect.stringMatching(/^[0-9a-f]{64}$/),
    });
    expect(one.stderr).toContain(`exported ${lines.length} audit record(s)`);
    const all = await cli(['audit', 'export', '--since', '2000-01-01']);
    const chains = new Set(
      all.stdout
        .trimEnd()
        .split('\n')
        .map((line) => JSON.parse(line).chainId),
    );
    expect(chains.has('tenant-au')).toBe(true);
    expect(chains.has('')).toBe(true);
  });

  it('verify passes and prints the verified heads; tampering exits 5 naming the first bad record', async () => {
    await cli(['set', 'tenant-tamper', 'k'], { input: 'v' });
    await cli(['get', 'tenant-tamper', 'k']);
    const ok = await cli(['audit', 'verify', '--tenant', 'tenant-tamper']);
    expect(ok.code, ok.stderr).toBe(0);
    expect(ok.stdout).toContain('verified 1 chain(s), 2 record(s)');
    expect(ok.stdout).toMatch(/head tenant-tamper seq 2 [0-9a-f]{64}/);
    // plain progress lines off a terminal (a running count: the total is not known in advance)
    expect(ok.stderr).toMatch(/verifying audit chains: 2 record\(s\) in 1 chain\(s\) checked\n/);

    const [row] = await adminQuery<{ id: string }>(
      dbName,
      `UPDATE tenant_secret_audit SET actor = 'someone-else' WHERE chain_id = 'tenant-tamper' AND seq = 2 RETURNING id`,
    );
    const bad = await cli(['audit', 'verify', '--tenant', 'tenant-tamper', '--json']);
    expect(bad.code).toBe(5);
    // --json: one document on stdout, the error, with the verification result in its details
    const { error } = JSON.parse(bad.stdout);
    expect(error).toMatchObject({ code: 'INTEGRITY', exitCode: 5 });
    const result = error.details.verification;
    expect(result.ok).toBe(false);
    expect(result.firstBad).toMatchObject({
      chainId: 'tenant-tamper',
      seq: 2,
      id: Number(row?.id),
      reason: 'hash_mismatch',
    });
    expect(bad.stderr).toContain('[INTEGRITY]');
    expect(bad.stderr).toContain(`chain tenant-tamper at seq 2 (record id ${row?.id}): hash_mismatch`);
    const all = await cli(['audit', 'verify']);
    expect(all.code).toBe(5);
    expect(all.stdout).toContain('TAMPERING DETECTED');
  });

  it('seal chains pending records; verify seals first and says so', async () => {
    // Records appended by a process that does not seal (as SQL callers without the library).
    const writer = createSecretsManager({
      connectionString: env.DATABASE_URL,
      masterKey: TEST_KEY,
      actor: 'sql-caller',
      auditSealIntervalMs: 0,
    });
    try {
      await writer.set('tenant-seal', 'k', 'v1');
      await writer.get('tenant-seal', 'k');
      await writer.rotate('tenant-seal', 'k', 'v2');
    } finally {
      await writer.close();
    }
    const pendingOf = async (chain: string) =>
      Number(
        (
          await adminQuery<{ n: string }>(
            dbName,
            'SELECT count(*) AS n FROM tenant_secret_audit_pending WHERE chain_id = $1',
            [chain],
          )
        )[0]?.n,
      );
    expect(await pendingOf('tenant-seal')).toBe(3);

    // A job that only seals holds no master key.
    const sealed = await cli(['audit', 'seal', '--json'], { env: { DATABASE_URL: env.DATABASE_URL } });
    expect(sealed.code, sealed.stderr).toBe(0);
    const result = JSON.parse(sealed.stdout);
    expect(result.sealed).toBeGreaterThanOrEqual(3);
    expect(result.busy).toBe(false);
    expect(await pendingOf('tenant-seal')).toBe(0);
    const [left] = await adminQuery<{ n: string }>(
      dbName,
      'SELECT count(*) AS n FROM tenant_secret_audit_pending',
    );
    expect(result.pending).toBe(Number(left?.n)); // what it reports as still waiting is what waits
    const chain = await adminQuery<{ seq: string; action: string; partition: string }>(
      dbName,
      `SELECT seq, action, tableoid::regclass::text AS partition FROM tenant_secret_audit
        WHERE chain_id = 'tenant-seal' ORDER BY seq`,
    );
    expect(chain.map((r) => [Number(r.seq), r.action])).toEqual([
      [1, 'secret.created'],
      [2, 'secret.read'],
      [3, 'secret.rotated'],
    ]);
    expect(chain.every((r) => /^tenant_secret_audit_p\d{8}$/.test(r.partition))).toBe(true);

    const again = await cli(['audit', 'seal']);
    expect(again.code).toBe(0);
    expect(again.stdout).toMatch(/^sealed \d+ record\(s\); \d+ pending/);

    // verify seals what is pending before it checks, and says so
    const writer2 = createSecretsManager({
      connectionString: env.DATABASE_URL,
      masterKey: TEST_KEY,
      auditSealIntervalMs: 0,
    });
    try {
      await writer2.get('tenant-seal', 'k');
    } finally {
      await writer2.close();
    }
    expect(await pendingOf('tenant-seal')).toBe(1);
    const verified = await cli(['audit', 'verify', '--tenant', 'tenant-seal']);
    expect(verified.code, verified.stderr).toBe(0);
    expect(verified.stderr).toMatch(/sealed [1-9]\d* pending record\(s\) before verifying/);
    expect(verified.stdout).toContain('verified 1 chain(s), 4 record(s)');
  });

  it('prune refuses a tampered trail (exit 5), validates --older-than, and prunes a clean one', async () => {
    expect((await cli(['audit', 'prune', '--older-than', 'soon'])).code).toBe(2);
    expect((await cli(['audit', 'prune'])).code).toBe(2);
    const refused = await cli(['audit', 'prune', '--older-than', '1m', '--tenant', 'tenant-tamper']);
    expect(refused.code).toBe(5);
    await cli(['set', 'tenant-prune', 'k'], { input: 'v1' });
    await cli(['rotate', 'tenant-prune', 'k'], { input: 'v2' });
    await new Promise((resolve) => setTimeout(resolve, 1100));
    await cli(['get', 'tenant-prune', 'k']);
    const cutoff = new Date(Date.now() - 500).toISOString();
    const pruned = await cli([
      'audit',
      'prune',
      '--older-than',
      cutoff,
      '--tenant',
      'tenant-prune',
      '--json',
    ]);
    expect(pruned.code, pruned.stderr).toBe(0);
    expect(JSON.parse(pruned.stdout)).toEqual({
      chains: 1,
      records: 2,
      anchors: [{ chainId: 'tenant-prune', seq: 2 }],
    });
    const left = JSON.parse((await cli(['audit', 'tenant-prune', '--json'])).stdout);
    expect(left.records.map((r: { seq: number }) => r.seq)).toEqual([3]);
    const human = await cli(['audit', 'prune', '--older-than', '90d', '--tenant', 'tenant-prune']);
    expect(human.code, human.stderr).toBe(0);
    expect(human.stderr).toContain('pruned 0 record(s)');
    expect((await cli(['audit', 'verify', '--tenant', 'tenant-prune'])).code).toBe(0);
  });
});

describe('key management', () => {
  const OLD_ID = MasterKey.parse(TEST_KEY).id;
  const NEW_ID = MasterKey.parse(OTHER_KEY).id;
  const TENANTS = 300;
  let keysEnv: Record<string, string>;
  let manager: SecretsManager;

  beforeAll(async () => {
    const db = await freshDatabase('cli_keys');
    keysEnv = { DATABASE_URL: db.url, TENANT_SECRETS_MASTER_KEY: TEST_KEY };
    manager = createSecretsManager({
      connectionString: db.url,
      masterKey: TEST_KEY,
      actor: 'setup',
      maxConnections: 8,
    });
    await manager.migrate();
    const ids = Array.from({ length: TENANTS }, (_, i) => `t-${String(i).padStart(4, '0')}`);
    for (let i = 0; i < ids.length; i += 20) {
      await Promise.all(ids.slice(i, i + 20).map((t) => manager.set(t, 'api/key', `value-of-${t}`)));
    }
  });
  afterAll(() => manager.close());

  it('status shows wrapped keys per master key and readyToDropPrevious', async () => {
    const result = await cli(['status', '--json'], { env: keysEnv });
    expect(result.code, result.stderr).toBe(0);
    const report = JSON.parse(result.stdout);
    expect(report.counts.tenants).toBe(TENANTS);
    expect(report.keys).toMatchObject({
      currentMasterKeyId: OLD_ID,
      readyToDropPrevious: true,
      byMasterKey: { [OLD_ID]: expect.objectContaining({ keys: TENANTS, tenants: TENANTS }) },
    });
    const human = await cli(['status'], { env: keysEnv });
    expect(human.stdout).toMatch(new RegExp(`wrapped keys\\s+${OLD_ID} \\(current\\): ${TENANTS} wrapped`));
    expect(human.stdout).toMatch(/drop previous\s+ready/);
  });

  it('rotate-master-key: SIGINT stops cleanly (exit 130), a re-run resumes, then reads need only the new key', async () => {
    const rotateEnv = {
      ...keysEnv,
      TENANT_SECRETS_MASTER_KEY: OTHER_KEY,
      TENANT_SECRETS_PREVIOUS_MASTER_KEYS: TEST_KEY,
    };
    // Make the run pause at tenant t-0010 (a row lock held here), so the real SIGINT surely lands
    // mid-rotation: sent after the first committed batch, the lock released once the CLI has seen it.
    const locker = new pg.Client({ connectionString: keysEnv.DATABASE_URL });
    await locker.connect();
    await locker.query('BEGIN');
    await locker.query(`SELECT 1 FROM tenant_secret_keys WHERE tenant_id = 't-0010' FOR UPDATE`);
    const child = start(['rotate-master-key', '--batch-size', '1'], rotateEnv);
    let seen = '';
    let sent = false;
    let released = false;
    child.stderr.on('data', (d: Buffer) => {
      seen += d.toString('utf8');
      if (!sent && /re-wrapping data keys: \d+\/\d+/.test(seen)) {
        sent = true;
        child.kill('SIGINT');
      }
      if (!released && seen.includes('SIGINT: stopping after the current batch')) {
        released = true;
        void locker.query('COMMIT');
      }
    });
    const interrupted = await finish(child);
    if (!released) await locker.query('ROLLBACK');
    await locker.end();
    expect(sent).toBe(true);
    expect(interrupted.code, interrupted.stderr).toBe(130);
    const done = Number(/interrupted after (\d+); run again to resume/.exec(interrupted.stderr)?.[1]);
    // stopped between batches, at the latest right after the batch held at t-0010
    expect(done).toBeGreaterThan(0);
    expect(done).toBeLessThanOrEqual(11);

    const half = JSON.parse((await cli(['status', '--json'], { env: rotateEnv })).stdout);
    expect(half.keys.readyToDropPrevious).toBe(false);
    expect(half.keys.byMasterKey[OLD_ID].keys).toBe(TENANTS - done);
    expect((await cli(['status'], { env: rotateEnv })).stdout).toMatch(/drop previous\s+not yet/);

    const resumed = await cli(['rotate-master-key', '--batch-size', '50', '--json'], { env: rotateEnv });
    expect(resumed.code, resumed.stderr).toBe(0);
    expect(JSON.parse(resumed.stdout)).toMatchObject({
      masterKeyId: NEW_ID,
      rewrapped: TENANTS - done,
      failed: 0,
      remainingByMasterKey: {},
    });
    expect(resumed.stderr).toContain(`re-wrapping data keys: ${TENANTS - done}/${TENANTS - done}`);

    const onlyNew = { DATABASE_URL: keysEnv.DATABASE_URL ?? '', TENANT_SECRETS_MASTER_KEY: OTHER_KEY };
    expect((await cli(['get', 't-0007', 'api/key'], { env: onlyNew })).stdout).toBe('value-of-t-0007\n');
    const after = JSON.parse((await cli(['status', '--json'], { env: onlyNew })).stdout);
    expect(after.keys).toMatchObject({
      currentMasterKeyId: NEW_ID,
      readyToDropPrevious: true,
      unknownMasterKeyIds: [],
    });
    // the old key alone no longer reads anything
    expect((await cli(['get', 't-0007', 'api/key'], { env: keysEnv })).code).toBe(5);
    keysEnv = onlyNew;
  });

  it('rotate-tenant-key re-encrypts a tenant; an unknown tenant exits 3', async () => {
    await cli(['set', 't-0001', 'second'], { env: keysEnv, input: 'two' });
    await cli(['rotate', 't-0001', 'second'], { env: keysEnv, input: 'three' });
    const rotated = await cli(['rotate-tenant-key', 't-0001', '--batch-size', '1', '--json'], {
      env: keysEnv,
    });
    expect(rotated.code, rotated.stderr).toBe(0);
    expect(JSON.parse(rotated.stdout)).toMatchObject({
      tenant: 't-0001',
      keyVersion: 2,
      previousKeyVersion: 1,
      resumed: false,
      reencrypted: 5, // 2 current values + 3 versions
      destroyedKeyVersions: [1],
    });
    expect(rotated.stderr).toContain('re-encrypting ciphertexts: 5/5');
    expect((await cli(['get', 't-0001', 'second', '--version', '1'], { env: keysEnv })).stdout).toBe('two\n');
    expect((await cli(['get', 't-0001', 'api/key'], { env: keysEnv })).stdout).toBe('value-of-t-0001\n');
    const unknown = await cli(['rotate-tenant-key', 'no-such-tenant'], { env: keysEnv });
    expect(unknown.code).toBe(3);
    expect((await cli(['rotate-tenant-key', 't-0001', '--batch-size', '0'], { env: keysEnv })).code).toBe(2);
  });

  it('purge-tenant needs --yes off a terminal, then crypto-shreds the tenant', async () => {
    const refused = await cli(['purge-tenant', 't-0002'], { env: keysEnv });
    expect(refused.code).toBe(2);
    expect(refused.stderr).toContain('--yes');
    expect((await cli(['get', 't-0002', 'api/key'], { env: keysEnv })).code).toBe(0);
    const purged = await cli(['purge-tenant', 't-0002', '--yes', '--json'], { env: keysEnv });
    expect(purged.code, purged.stderr).toBe(0);
    expect(JSON.parse(purged.stdout)).toEqual({ tenant: 't-0002', keys: 1, secrets: 1, versions: 1 });
    expect((await cli(['get', 't-0002', 'api/key'], { env: keysEnv })).code).toBe(3);
    const trail = JSON.parse(
      (await cli(['audit', 't-0002', '--action', 'tenant.purged', '--json'], { env: keysEnv })).stdout,
    );
    expect(trail.records).toHaveLength(1);
  });
});

describe('import-legacy', () => {
  const LEGACY_KEY = 'old-master-key-of-the-original-code';
  const TENANT = '6f1c2a7e-3b9d-4c11-9a3e-0c5d2f8b7a10';

  it('refuses a wrong key (exit 5), then imports from stdin and the env, resumably', async () => {
    const db = await freshDatabase('cli_legacy');
    // The original code's table shape and encryption (see test/legacy-import.test.ts).
    await adminQuery(
      db.name,
      `CREATE EXTENSION IF NOT EXISTS pgcrypto;
       CREATE TABLE tenant_secrets (tenant_id UUID NOT NULL, key_name TEXT NOT NULL,
         encrypted_value TEXT NOT NULL, rotated_at TIMESTAMPTZ, PRIMARY KEY (tenant_id, key_name));`,
    );
    for (let i = 0; i < 5; i++) {
      await adminQuery(
        db.name,
        `INSERT INTO tenant_secrets VALUES ($1, $2, encode(encrypt($3::bytea, $4::bytea, 'aes-cbc'), 'base64'), now())`,
        [TENANT, `svc-${i}/api-key`, `legacy värde ${i}`, LEGACY_KEY],
      );
    }
    const legacyEnv = { DATABASE_URL: db.url, TENANT_SECRETS_MASTER_KEY: TEST_KEY };
    const wrong = await cli(['import-legacy'], {
      env: { ...legacyEnv, TENANT_SECRETS_LEGACY_KEY: 'not-the-key' },
    });
    expect(wrong.code).toBe(5);
    expect(wrong.stderr).toContain('[LEGACY_IMPORT]');
    expect(wrong.stderr).not.toContain('not-the-key');
    expect((await cli(['import-legacy'], { env: legacyEnv, input: '' })).code).toBe(2);

    const imported = await cli(['import-legacy', '--batch-size', '2', '--json'], {
      env: legacyEnv,
      input: `${LEGACY_KEY}\n`,
    });
    expect(imported.code, imported.stderr).toBe(0);
    expect(JSON.parse(imported.stdout)).toEqual({
      imported: 5,
      importedTotal: 5,
      batches: 3,
      legacyTableDropped: true,
      storage: 'text',
    });
    expect(imported.stderr).toContain('importing legacy rows: 5/5');
    expect(imported.stderr + imported.stdout).not.toContain(LEGACY_KEY);
    expect((await cli(['get', TENANT, 'svc-3/api-key'], { env: legacyEnv })).stdout).toBe('legacy värde 3\n');
    const versions = JSON.parse(
      (await cli(['versions', TENANT, 'svc-0/api-key', '--json'], { env: legacyEnv })).stdout,
    );
    expect(versions[0]).toMatchObject({ version: 1, origin: 'import' });

    const again = await cli(['import-legacy'], {
      env: { ...legacyEnv, TENANT_SECRETS_LEGACY_KEY: LEGACY_KEY },
    });
    expect(again.code, again.stderr).toBe(0);
    expect(again.stderr).toContain('no legacy table found');
  });
});

const onTerminal = (args: string[], answer: string) => runOnTerminal(args, env, 'to confirm:', answer);

describe.runIf(hasScript)('confirmation on a terminal', () => {
  it('destroy asks to type the key name: a wrong answer changes nothing (exit 2), the right one destroys', async () => {
    await cli(['set', 'tenant-tty', 'doomed'], { input: 'v' });
    const wrong = await onTerminal(['destroy', 'tenant-tty', 'doomed'], 'nope');
    expect(wrong.code, wrong.output).toBe(2);
    expect(wrong.output).toContain('is irreversible. Type "doomed" to confirm:');
    expect(wrong.output).toContain('not confirmed');
    expect((await cli(['get', 'tenant-tty', 'doomed'])).stdout).toBe('v\n');
    const right = await onTerminal(['destroy', 'tenant-tty', 'doomed'], 'doomed');
    expect(right.code, right.output).toBe(0);
    expect(right.output).toContain('destroyed tenant-tty doomed');
    expect((await cli(['get', 'tenant-tty', 'doomed'])).code).toBe(3);
  });
});
