import { type ChildProcessWithoutNullStreams, spawn } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createSecretsManager, MasterKey, type SecretsManager } from '../src/index.js';
import { adminQuery, freshDatabase, OTHER_KEY, TEST_KEY } from './support/db.js';

/** The CLI's operator commands (lifecycle, audit, key management, legacy import), driven as a subprocess. */
const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const CLI = join(root, 'dist', 'cli', 'main.js');

interface Result {
  code: number | null;
  stdout: string;
  stderr: string;
}

function start(args: string[], env: Record<string, string | undefined>): ChildProcessWithoutNullStreams {
  return spawn(process.execPath, [CLI, ...args], {
    env: { PATH: process.env.PATH, HOME: process.env.HOME, ...env },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
}

function finish(child: ChildProcessWithoutNullStreams, input = ''): Promise<Result> {
  return new Promise((resolve, reject) => {
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => {
      stdout += d;
    });
    child.stderr.setEncoding('utf8').on('data', (d: string) => {
      stderr += d;
    });
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
    child.stdin.end(input);
  });
}

/** Runs the CLI with a clean environment and `input` on stdin (not a terminal). */
function cli(
  args: string[],
  options: { input?: string; env?: Record<string, string | undefined> } = {},
): Promise<Result> {
  return finish(start(args, options.env ?? env), options.input);
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
    expect(ok.stderr).toMatch(/verifying audit chains: 1\/1/); // plain progress lines off a terminal

    const [row] = await adminQuery<{ id: string }>(
      dbName,
      `UPDATE tenant_secret_audit SET actor = 'someone-else' WHERE chain_id = 'tenant-tamper' AND seq = 2 RETURNING id`,
    );
    const bad = await cli(['audit', 'verify', '--tenant', 'tenant-tamper', '--json']);
    expect(bad.code).toBe(5);
    const result = JSON.parse(bad.stdout);
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
