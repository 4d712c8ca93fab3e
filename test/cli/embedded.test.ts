// suite-scope: once — the CLI's own embedded PostgreSQL 18, which never uses TEST_DATABASE_URL or a pooler
import { type ChildProcess, spawn } from 'node:child_process';
import {
  chmodSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  statSync,
  utimesSync,
} from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startEmbedded } from '../../src/cli/embedded.js';
import { createSecretsManager } from '../../src/index.js';
import { CLI, finishCli, runCli, startCli } from '../support/cli.js';
import { TEST_KEY } from '../support/db.js';

/**
 * The CLI's embedded PostgreSQL (`--embedded`) under faults: a command killed mid-way, a first
 * start killed during initdb, a missing parent directory, several first commands at once, and its
 * children kept off the CLI's stdout.
 */

let base = '';
beforeAll(() => {
  base = mkdtempSync(join(tmpdir(), 'tenant-secrets-embedded-'));
  chmodSync(base, 0o755); // the postgres user (when running as root) must reach the data directories
});
afterAll(() => rmSync(base, { recursive: true, force: true }));

const envFor = (dataDir: string) => ({
  TENANT_SECRETS_MASTER_KEY: TEST_KEY,
  TENANT_SECRETS_DATA_DIR: dataDir,
});

/** The pid in `postmaster.pid` when that process is alive: a server runs on the directory. */
function serverPid(dataDir: string): number | undefined {
  let pid: number;
  try {
    pid = Number(readFileSync(join(dataDir, 'postmaster.pid'), 'utf8').split('\n')[0]);
  } catch {
    return undefined;
  }
  try {
    process.kill(pid, 0);
    return pid;
  } catch {
    return undefined;
  }
}

const owners = (dataDir: string): number[] => {
  try {
    return JSON.parse(readFileSync(`${dataDir}.owners.json`, 'utf8')).owners.map(
      (o: { pid: number }) => o.pid,
    );
  } catch {
    return [];
  }
};

const tick = () => new Promise((resolve) => setTimeout(resolve, 20));

function exited(child: ChildProcess): Promise<void> {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) resolve();
    else child.once('exit', () => resolve());
  });
}

/** Nothing of ours is left running or locked once the last command is done. */
function expectReleased(dataDir: string): void {
  expect(serverPid(dataDir)).toBeUndefined();
  expect(existsSync(`${dataDir}.lock`)).toBe(false);
  expect(existsSync(`${dataDir}.owners.json`)).toBe(false);
}

describe('embedded PostgreSQL: sharing and taking over', () => {
  it('a command joins the server another live process runs, and leaves it running for it', async () => {
    const dataDir = join(base, 'shared');
    const holder = await startEmbedded(dataDir);
    try {
      const pid = serverPid(dataDir);
      expect(pid).toBeDefined();
      const set = await runCli(['--embedded', 'set', 'tenant-s', 'k'], {
        env: envFor(dataDir),
        input: 'shared-value',
      });
      expect(set.code, set.stderr).toBe(0);
      const get = await runCli(['--embedded', 'get', 'tenant-s', 'k'], { env: envFor(dataDir) });
      expect(get.stdout).toBe('shared-value\n');
      // Still the holder's server, still answering it
      expect(serverPid(dataDir)).toBe(pid);
      const client = new pg.Client({ connectionString: holder.url });
      await client.connect();
      await client.end();
      expect(owners(dataDir)).toEqual([process.pid]);
    } finally {
      await holder.stop();
    }
    expectReleased(dataDir);
  });

  it('a command SIGKILLed mid-way leaves its server running; the next command takes it over, then stops it', async () => {
    const dataDir = join(base, 'killed');
    const env = envFor(dataDir);
    expect((await runCli(['--embedded', 'set', 'tenant-k', 'k'], { env, input: 'kept' })).code).toBe(0);
    // Enough audit records that `audit export` cannot finish while nobody reads its stdout.
    const db = await startEmbedded(dataDir);
    const manager = createSecretsManager({ connectionString: db.url, masterKey: TEST_KEY });
    try {
      for (let i = 0; i < 20; i++) {
        await manager.getMany(
          'tenant-k',
          Array.from({ length: 100 }, (_, n) => `k${n === 0 ? '' : n}`),
        );
      }
    } finally {
      await manager.close();
      await db.stop();
    }
    expectReleased(dataDir);

    const child = startCli(['--embedded', 'audit', 'export'], env); // its stdout is never read: it blocks mid-export
    while (!owners(dataDir).includes(child.pid as number)) {
      expect(child.exitCode, 'audit export ended before it was killed').toBeNull();
      await tick();
    }
    const pid = serverPid(dataDir);
    expect(pid).toBeDefined();
    child.kill('SIGKILL');
    await exited(child);
    // The server outlives its owner (and never held the owner's stdout: 'close' came).
    expect(serverPid(dataDir)).toBe(pid);

    const get = await runCli(['--embedded', 'get', 'tenant-k', 'k'], { env });
    expect(get.code, get.stderr).toBe(0);
    expect(get.stdout).toBe('kept\n');
    expect(get.stderr).toContain(
      'taking over the embedded PostgreSQL left running by a tenant-secrets command that is gone',
    );
    expectReleased(dataDir); // the taker was the last one out
    // and the directory keeps working
    expect((await runCli(['--embedded', 'get', 'tenant-k', 'k'], { env })).stdout).toBe('kept\n');
  });

  it('Ctrl-C (SIGINT) mid-command: the command leaves the server and exits 130 (--json: ABORTED)', async () => {
    const dataDir = join(base, 'interrupted');
    const holder = await startEmbedded(dataDir);
    // No background sealer: its own wait on the lock below must not pass for the command's.
    const manager = createSecretsManager({
      connectionString: holder.url,
      masterKey: TEST_KEY,
      auditSealIntervalMs: 0,
    });
    const locker = new pg.Client({ connectionString: holder.url });
    try {
      await manager.installation.migrate();
      await manager.set('tenant-x', 'k', 'v');
      await locker.connect();
      await locker.query('BEGIN');
      await locker.query('LOCK TABLE tenant_secrets IN ACCESS EXCLUSIVE MODE');
      const child = startCli(['--embedded', 'get', 'tenant-x', 'k', '--json'], envFor(dataDir));
      const done = finishCli(child);
      // Wait until the command waits on the lock: it has joined the server and is mid-command.
      const waiting = async () => {
        const client = new pg.Client({ connectionString: holder.url });
        await client.connect();
        try {
          const { rows } = await client.query(
            `SELECT count(*)::int AS n FROM pg_stat_activity WHERE wait_event_type = 'Lock'`,
          );
          return rows[0].n > 0;
        } finally {
          await client.end();
        }
      };
      while (!(owners(dataDir).includes(child.pid as number) && (await waiting()))) await tick();
      expect(owners(dataDir)).toEqual([process.pid, child.pid]);
      child.kill('SIGINT');
      const result = await done;
      expect(result.code, result.stderr).toBe(130);
      expect(JSON.parse(result.stdout).error).toMatchObject({ code: 'ABORTED', exitCode: 130 });
      expect(result.stderr).toContain('SIGINT: interrupted');
      expect(owners(dataDir)).toEqual([process.pid]); // it left; the server stays for its other owner
      expect(serverPid(dataDir)).toBeDefined();
    } finally {
      await locker.end().catch(() => undefined);
      await manager.close();
      await holder.stop();
    }
    expectReleased(dataDir);
  });

  it('a command waits for the live holder of the lock, and takes the lock over once its holder is killed', async () => {
    const dataDir = join(base, 'stale-lock');
    expect(
      (await runCli(['--embedded', 'set', 'tenant-l', 'k'], { env: envFor(dataDir), input: 'v' })).code,
    ).toBe(0);
    // Another process takes the lock (as a command starting the server would), and keeps it.
    const holder = spawn(
      process.execPath,
      [
        '-e',
        `require(process.argv[1]).lockSync(process.argv[2], { lockfilePath: process.argv[2] + '.lock', realpath: false, stale: 10000, update: 2000 }); process.stdout.write('locked\\n'); setInterval(() => undefined, 1000);`,
        createRequire(import.meta.url).resolve('proper-lockfile'),
        dataDir,
      ],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    await new Promise<void>((resolve) => holder.stdout?.once('data', () => resolve()));
    const waiter = startCli(['--embedded', 'get', 'tenant-l', 'k'], envFor(dataDir));
    const done = finishCli(waiter);
    let stderr = '';
    waiter.stderr.on('data', (d: Buffer) => {
      stderr += d.toString('utf8');
    });
    while (!stderr.includes('waiting for another tenant-secrets command')) {
      expect(waiter.exitCode, 'the command did not wait for the lock').toBeNull();
      await tick();
    }
    holder.kill('SIGKILL');
    await exited(holder);
    // The killed holder's lock is no longer refreshed: once stale, the waiting command takes it over.
    const get = await done;
    expect(get.code, get.stderr).toBe(0);
    expect(get.stdout).toBe('v\n');
    expectReleased(dataDir);
  });

  it('a lock left long ago (its mtime old) is taken over at once', async () => {
    const dataDir = join(base, 'old-lock');
    expect(
      (await runCli(['--embedded', 'set', 'tenant-o', 'k'], { env: envFor(dataDir), input: 'v' })).code,
    ).toBe(0);
    mkdirSync(`${dataDir}.lock`);
    const longAgo = new Date(Date.now() - 3_600_000);
    utimesSync(`${dataDir}.lock`, longAgo, longAgo);
    const get = await runCli(['--embedded', 'get', 'tenant-o', 'k'], { env: envFor(dataDir) });
    expect(get.code, get.stderr).toBe(0);
    expect(get.stdout).toBe('v\n');
    expect(get.stderr).not.toContain('waiting for another');
    expectReleased(dataDir);
  });
});

describe('embedded PostgreSQL: an interrupted first start', () => {
  /** Starts a first `set` in its own process group and waits until initdb has begun writing. */
  async function firstStartUntilInitdb(dataDir: string): Promise<ChildProcess> {
    const child = spawn(process.execPath, [CLI, '--embedded', 'set', 'tenant-i', 'k'], {
      env: { PATH: process.env.PATH, HOME: process.env.HOME, ...envFor(dataDir) },
      stdio: ['pipe', 'ignore', 'ignore'],
      detached: true,
    });
    child.stdin?.end('value-after-redo');
    while (!existsSync(join(dataDir, 'PG_VERSION'))) await tick();
    return child;
  }

  async function expectRedone(dataDir: string): Promise<void> {
    // Half-made: initdb began, the cluster's credentials (written last) are missing.
    expect(existsSync(join(dataDir, 'PG_VERSION'))).toBe(true);
    expect(existsSync(join(dataDir, 'tenant-secrets-embedded.json'))).toBe(false);
    const set = await runCli(['--embedded', 'set', 'tenant-i', 'k'], {
      env: envFor(dataDir),
      input: 'value-after-redo',
    });
    expect(set.code, set.stderr).toBe(0);
    expect(set.stderr).toContain('was interrupted; initialising it again');
    expect(set.stderr).not.toContain('did not create');
    const get = await runCli(['--embedded', 'get', 'tenant-i', 'k'], { env: envFor(dataDir) });
    expect(get.stdout).toBe('value-after-redo\n');
    expectReleased(dataDir);
  }

  it('killed with initdb (the whole process group, as a closed terminal does): redone', async () => {
    const dataDir = join(base, 'initdb-group');
    const child = await firstStartUntilInitdb(dataDir);
    process.kill(-(child.pid as number), 'SIGKILL');
    await exited(child);
    await expectRedone(dataDir);
  });

  it('the CLI killed alone (initdb goes on as an orphan): redone', async () => {
    const dataDir = join(base, 'initdb-orphan');
    const child = await firstStartUntilInitdb(dataDir);
    child.kill('SIGKILL');
    await exited(child);
    await expectRedone(dataDir);
  });
});

describe('embedded PostgreSQL: a data directory tenant-secrets did not make', () => {
  it('is refused (exit 6), never stopped, wiped or redone, running or not', async () => {
    const dataDir = join(base, 'foreign');
    const other = await startEmbedded(dataDir);
    // Without tenant-secrets' credentials file (and no unfinished-start marker), it is somebody else's.
    rmSync(join(dataDir, 'tenant-secrets-embedded.json'));
    const pid = serverPid(dataDir);
    try {
      const running = await runCli(['--embedded', 'get', 'tenant-f', 'k'], { env: envFor(dataDir) });
      expect(running.code).toBe(6);
      expect(running.stderr).toContain('did not create');
      expect(serverPid(dataDir)).toBe(pid);
    } finally {
      await other.stop();
    }
    const stopped = await runCli(['--embedded', 'get', 'tenant-f', 'k'], { env: envFor(dataDir) });
    expect(stopped.code).toBe(6);
    expect(existsSync(join(dataDir, 'PG_VERSION'))).toBe(true);
    expect(existsSync(join(dataDir, 'base'))).toBe(true);
  });
});

describe('embedded PostgreSQL: concurrency and output', () => {
  it('several first commands at once on one directory all succeed', async () => {
    const dataDir = join(base, 'concurrent');
    const env = envFor(dataDir);
    const results = await Promise.all(
      [1, 2, 3, 4].map((n) =>
        finishCli(startCli(['--embedded', 'set', 'tenant-c', `k${n}`], env), `value-${n}`),
      ),
    );
    for (const result of results) expect(result.code, result.stderr).toBe(0);
    expect(results.map((r) => r.stderr).join('')).not.toContain('could not initialise');
    const list = JSON.parse((await runCli(['--embedded', 'list', 'tenant-c', '--json'], { env })).stdout);
    expect(list.map((s: { keyName: string }) => s.keyName)).toEqual(['k1', 'k2', 'k3', 'k4']);
    expectReleased(dataDir);
  });

  it('KEY=$(tenant-secrets ...) captures only the value, initdb and server start included', async () => {
    const dataDir = join(base, 'capture');
    const script = `KEY=$(printf %s "$VALUE" | "$NODE" "$CLI" --embedded set tenant-o k && "$NODE" "$CLI" get tenant-o k --no-newline --embedded) && printf '[%s]' "$KEY"`;
    const result = await new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
      const child = spawn('bash', ['-c', script], {
        env: {
          PATH: process.env.PATH,
          HOME: process.env.HOME,
          NODE: process.execPath,
          CLI,
          VALUE: 'only-this',
          ...envFor(dataDir),
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
      child.on('close', (code) => resolve({ code, stdout, stderr }));
    });
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout).toBe('[only-this]');
    expect(result.stderr).toContain('using embedded PostgreSQL');
  });
});

describe.runIf(process.getuid?.() === 0)('embedded PostgreSQL as root', () => {
  it('creates a missing parent directory, owned by the postgres user, instead of moving to /tmp', async () => {
    const requested = join(base, 'missing', 'parents', 'pgdata');
    const set = await runCli(['--embedded', 'set', 'tenant-p', 'k'], {
      env: envFor(requested),
      input: 'in-place',
    });
    expect(set.code, set.stderr).toBe(0);
    expect(set.stderr).not.toContain('is not reachable');
    expect(set.stderr).toContain(`using embedded PostgreSQL at ${requested} `);
    const postgresUid = statSync(requested).uid;
    expect(postgresUid).not.toBe(0);
    expect(statSync(join(base, 'missing')).uid).toBe(postgresUid);
    expect(statSync(join(base, 'missing', 'parents')).uid).toBe(postgresUid);
    expect((await runCli(['--embedded', 'get', 'tenant-p', 'k'], { env: envFor(requested) })).stdout).toBe(
      'in-place\n',
    );
  });
});
