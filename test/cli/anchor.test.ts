import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from '../support/cli.js';
import { adminQuery, freshDatabase, TEST_KEY } from '../support/db.js';

/**
 * `tenant-secrets audit verify --anchor-file PATH [--anchor-command CMD]`: the anchor kept outside the
 * database, read before and rewritten after each verification, and published by a hook.
 */
let db: { name: string; url: string };
let env: Record<string, string>;
let dir: string;

const cli = (args: string[], input?: string) => runCli(args, { env, ...(input !== undefined && { input }) });

beforeAll(async () => {
  db = await freshDatabase('anc');
  env = { DATABASE_URL: db.url, TENANT_SECRETS_MASTER_KEY: TEST_KEY, TENANT_SECRETS_ACTOR: 'anchor-test' };
  dir = mkdtempSync(join(tmpdir(), 'ts-anchor-'));
  expect((await cli(['migrate'])).code).toBe(0);
  expect((await cli(['set', 'acme', 'k'], 'v1')).code).toBe(0);
});

afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('audit verify --anchor-file', () => {
  it('first run: no file yet; it verifies and writes the new anchor, mode 0600, atomically (no temporary file left)', async () => {
    const file = join(dir, 'anchor.json');
    const result = await cli(['audit', 'verify', '--anchor-file', file]);
    expect(result.code, result.stderr).toBe(0);
    expect(result.stderr).toContain('nothing to check against');
    const anchor = JSON.parse(readFileSync(file, 'utf8'));
    expect(anchor).toMatchObject({
      v: 1,
      counter: expect.any(Number),
      mac: expect.stringMatching(/^[0-9a-f]{64}$/),
    });
    expect(statSync(file).mode & 0o777).toBe(0o600);
    expect(readdirSync(dir).filter((f) => f.endsWith('.tmp'))).toEqual([]);
  });

  it('next runs: verified against the file, which moves forward', async () => {
    const file = join(dir, 'anchor.json');
    const before = JSON.parse(readFileSync(file, 'utf8'));
    expect((await cli(['set', 'acme', 'k'], 'v2')).code).toBe(0);
    const result = await cli(['audit', 'verify', '--anchor-file', file, '--json']);
    expect(result.code, result.stderr).toBe(0);
    const verification = JSON.parse(result.stdout);
    expect(verification).toMatchObject({ ok: true, anchorChecked: true });
    const after = JSON.parse(readFileSync(file, 'utf8'));
    expect(after.counter).toBeGreaterThan(before.counter);
    expect(after).toEqual(verification.anchor);
  });

  it('a trail rolled back behind the file (anchors deleted, checkpoints put back): exit 5, anchor_rolled_back, the file kept as it was', async () => {
    const file = join(dir, 'rollback.json');
    expect((await cli(['audit', 'verify', '--anchor-file', file])).code).toBe(0);
    await adminQuery(
      db.name,
      `CREATE TABLE saved_checkpoints AS SELECT * FROM tenant_secret_audit_checkpoints;
       CREATE TABLE saved_anchors AS SELECT * FROM tenant_secret_audit_anchors`,
    );
    expect((await cli(['set', 'acme', 'k'], 'v3')).code).toBe(0);
    expect((await cli(['audit', 'verify', '--anchor-file', file])).code).toBe(0);
    const kept = readFileSync(file, 'utf8');
    // The owner rolls the trail back to the saved state: the newest records' chain cut, head and
    // checkpoints and anchors as they were.
    await adminQuery(
      db.name,
      `DELETE FROM tenant_secret_audit_checkpoints; INSERT INTO tenant_secret_audit_checkpoints SELECT * FROM saved_checkpoints;
       DELETE FROM tenant_secret_audit_anchors; INSERT INTO tenant_secret_audit_anchors SELECT * FROM saved_anchors;
       DROP TABLE saved_checkpoints, saved_anchors`,
    );
    const result = await cli(['audit', 'verify', '--anchor-file', file, '--json']);
    expect(result.code).toBe(5);
    const doc = JSON.parse(result.stdout);
    expect(doc.error).toMatchObject({ code: 'INTEGRITY', exitCode: 5 });
    expect(doc.error.details.verification.problems.map((p: { reason: string }) => p.reason)).toContain(
      'anchor_rolled_back',
    );
    expect(readFileSync(file, 'utf8')).toBe(kept);
    // Again: still refused (the file did not move to the rolled-back state).
    expect((await cli(['audit', 'verify', '--anchor-file', file])).code).toBe(5);
  });

  it('a file that is not an anchor: exit 2 (INVALID_INPUT), nothing verified or written', async () => {
    const file = join(dir, 'garbage.json');
    writeFileSync(file, '{"v":1,"counter":"x"}');
    const result = await cli(['audit', 'verify', '--anchor-file', file, '--json']);
    expect(result.code).toBe(2);
    expect(JSON.parse(result.stdout).error).toMatchObject({ code: 'INVALID_INPUT' });
    expect(readFileSync(file, 'utf8')).toBe('{"v":1,"counter":"x"}');
  });
});

describe('audit verify --anchor-command', () => {
  it('receives the new anchor as JSON on stdin; its output goes to stderr, stdout stays one JSON document', async () => {
    const published = join(dir, 'published.json');
    const result = await cli([
      'audit',
      'verify',
      '--json',
      '--anchor-command',
      `cat > '${published}' && echo published`,
    ]);
    expect(result.code, result.stderr).toBe(0);
    const verification = JSON.parse(result.stdout);
    expect(JSON.parse(readFileSync(published, 'utf8'))).toEqual(verification.anchor);
    expect(result.stderr).toContain('published');
  });

  it('a failing command: exit 6 (CONFIGURATION), and the anchor file was written first', async () => {
    const file = join(dir, 'with-hook.json');
    const result = await cli(['audit', 'verify', '--anchor-file', file, '--anchor-command', 'exit 3']);
    expect(result.code).toBe(6);
    expect(result.stderr).toContain('exit status 3');
    expect(existsSync(file)).toBe(true);
  });
});
