import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  createSecretsManager,
  MasterKey,
  OperationAbortedError,
  type SecretsManager,
  UnknownMasterKeyError,
} from '../../src/index.js';
import { adminQuery, OTHER_KEY, setupManager, TEST_KEY } from '../support/db.js';

const TENANTS = 200;
const tenant = (i: number) => `tenant-${String(i).padStart(4, '0')}`;
const oldId = MasterKey.parse(TEST_KEY).id;
const newId = MasterKey.parse(OTHER_KEY).id;

/** A manager on `url` with the given ring; closed by the caller. */
function managerWith(url: string, masterKey: string, previous: string[] = []): SecretsManager {
  return createSecretsManager({
    connectionString: url,
    masterKey,
    previousMasterKeys: previous,
    actor: 'test',
  });
}

async function seed(manager: SecretsManager): Promise<void> {
  for (let i = 0; i < TENANTS; i += 20) {
    await Promise.all(
      Array.from({ length: 20 }, async (_, j) => {
        const t = tenant(i + j);
        await manager.set(t, 'api-key', `value-${t}`);
        if ((i + j) % 10 === 0) await manager.rotate(t, 'api-key', `value-${t}-v2`);
      }),
    );
  }
}

const expected = (i: number) => (i % 10 === 0 ? `value-${tenant(i)}-v2` : `value-${tenant(i)}`);

describe('master-key rotation', () => {
  let db: { name: string; url: string };

  beforeAll(async () => {
    const setup = await setupManager();
    db = setup.db;
    await seed(setup.manager);
  });

  it('re-wraps every tenant key while reads and writes run, with zero failed reads', async () => {
    const rotated = managerWith(db.url, OTHER_KEY, [TEST_KEY]);
    try {
      const before = await rotated.keyStatus();
      expect(before.byMasterKey[oldId]?.keys).toBe(TENANTS);
      expect(before.readyToDropPrevious).toBe(false);

      let running = true;
      let reads = 0;
      let writes = 0;
      const failures: unknown[] = [];
      let wake: (() => void) | undefined;
      const loop = (async () => {
        let i = 0;
        while (running) {
          const n = (i * 37) % TENANTS;
          try {
            const value = await rotated.get(tenant(n), 'api-key');
            if (value !== expected(n)) failures.push(new Error(`read ${tenant(n)} gave a wrong value`));
            reads++;
            await rotated.set(tenant(n), `extra-${i % 5}`, `x${i}`);
            writes++;
          } catch (error) {
            failures.push(error);
          }
          i++;
          wake?.();
        }
      })();
      const readsAtBatch: number[] = [];
      const progress: { done: number; total: number }[] = [];
      const result = await rotated
        .rotateMasterKey({
          batchSize: 10,
          onProgress: async (p) => {
            progress.push({ done: p.done, total: p.total });
            readsAtBatch.push(reads);
            // Let the read/write loop complete at least one more round before the next batch, so
            // reads and writes provably interleave with the rotation's batches.
            const target = reads + 1;
            while (reads < target && running) await new Promise<void>((resolve) => (wake = resolve));
          },
        })
        .finally(async () => {
          running = false;
          wake?.();
          await loop;
        });

      expect(failures).toEqual([]);
      expect(result.rewrapped).toBe(TENANTS);
      expect(result.failed).toBe(0);
      expect(result.total).toBe(TENANTS);
      expect(result.batches).toBe(TENANTS / 10);
      expect(result.remainingByMasterKey).toEqual({});
      expect(progress.at(-1)).toEqual({ done: TENANTS, total: TENANTS });
      // reads happened between every two batches
      for (let k = 1; k < readsAtBatch.length; k++) {
        expect(readsAtBatch[k]).toBeGreaterThan(readsAtBatch[k - 1] ?? 0);
      }
      expect(reads).toBeGreaterThanOrEqual(TENANTS / 10);
      expect(writes).toBe(reads);
      console.info(
        `master-key rotation: ${TENANTS} tenants, ${result.batches} batches, ${reads} reads + ${writes} writes during rotation, ${failures.length} failures`,
      );

      const after = await rotated.keyStatus();
      expect(after.readyToDropPrevious).toBe(true);
      expect(Object.keys(after.byMasterKey)).toEqual([newId]);
      expect(after.byMasterKey[newId]?.keys).toBe(TENANTS);
      expect(after.unknownMasterKeyIds).toEqual([]);
    } finally {
      await rotated.close();
    }
  });

  it('reads everything with only the new key after the old one is dropped from the ring', async () => {
    const onlyNew = managerWith(db.url, OTHER_KEY);
    try {
      for (let i = 0; i < TENANTS; i++) {
        expect(await onlyNew.get(tenant(i), 'api-key')).toBe(expected(i));
      }
      expect(await onlyNew.get(tenant(0), 'api-key', { version: 1 })).toBe(`value-${tenant(0)}`);
      await onlyNew.set(tenant(1), 'api-key', 'after-drop');
      expect(await onlyNew.get(tenant(1), 'api-key')).toBe('after-drop');
    } finally {
      await onlyNew.close();
    }
  });

  it('fails with UnknownMasterKeyError naming the missing key id when the ring lacks it', async () => {
    const onlyOld = managerWith(db.url, TEST_KEY);
    try {
      const error = await onlyOld.get(tenant(2), 'api-key').catch((e: unknown) => e);
      expect(error).toBeInstanceOf(UnknownMasterKeyError);
      expect((error as UnknownMasterKeyError).masterKeyId).toBe(newId);
      expect((error as Error).message).toContain(newId);
      // rotating "back" without the newer key in the ring names it too, and changes nothing
      const rotateError = await onlyOld.rotateMasterKey({ batchSize: 50 }).catch((e: unknown) => e);
      expect(rotateError).toBeInstanceOf(UnknownMasterKeyError);
      expect((rotateError as Error).message).toContain(newId);
      const rows = await adminQuery<{ n: string }>(
        db.name,
        `SELECT count(*) AS n FROM tenant_secret_keys WHERE master_key_id = $1`,
        [newId],
      );
      expect(Number(rows[0]?.n)).toBe(TENANTS);
    } finally {
      await onlyOld.close();
    }
  });

  it('audits one tenant_key.rewrapped per key and one master_key.rotated, without key material', async () => {
    const rewrapped = await adminQuery<{ chain_id: string; details: Record<string, unknown> }>(
      db.name,
      `SELECT chain_id, details FROM tenant_secret_audit WHERE action = 'tenant_key.rewrapped' AND outcome = 'success'`,
    );
    expect(rewrapped).toHaveLength(TENANTS);
    expect(new Set(rewrapped.map((r) => r.chain_id)).size).toBe(TENANTS);
    expect(rewrapped[0]?.details).toEqual({ from_master_key_id: oldId, to_master_key_id: newId });
    const system = await adminQuery<{
      chain_id: string;
      tenant_id: string | null;
      details: Record<string, unknown>;
    }>(
      db.name,
      `SELECT chain_id, tenant_id, details FROM tenant_secret_audit WHERE action = 'master_key.rotated' AND outcome = 'success'`,
    );
    expect(system).toHaveLength(1);
    expect(system[0]?.chain_id).toBe('');
    expect(system[0]?.tenant_id).toBeNull();
    expect(system[0]?.details).toMatchObject({ rewrapped: TENANTS, failed: 0, to_master_key_id: newId });

    const audit = await adminQuery<{ text: string }>(
      db.name,
      `SELECT string_agg(coalesce(details::text, '') || coalesce(context::text, '') || coalesce(error_code, ''), ' ') AS text
         FROM tenant_secret_audit`,
    );
    const text = audit[0]?.text ?? '';
    const wrapped = await adminQuery<{ hex: string; b64: string }>(
      db.name,
      `SELECT encode(wrapped_key, 'hex') AS hex, encode(wrapped_key, 'base64') AS b64 FROM tenant_secret_keys LIMIT 5`,
    );
    const material = [
      TEST_KEY,
      OTHER_KEY,
      Buffer.from(TEST_KEY, 'base64').toString('hex'),
      Buffer.from(OTHER_KEY, 'base64').toString('hex'),
      MasterKey.parse(OTHER_KEY).deriveTenantKek(tenant(3)).toString('hex'),
      ...wrapped.flatMap((w) => [w.hex.slice(0, 40), w.b64.slice(0, 40)]),
    ];
    for (const m of material) expect(text).not.toContain(m);
  });
});

describe('master-key rotation interrupted', () => {
  it('resumes after the rotating process is killed mid-way, and after an abort', async () => {
    const { manager, db } = await setupManager();
    for (let i = 0; i < 40; i++) await manager.set(tenant(i), 'k', `v${i}`);

    const child = spawn(
      process.execPath,
      ['--import', 'tsx', fileURLToPath(new URL('../support/rotate-child.ts', import.meta.url))],
      {
        env: {
          ...process.env,
          CHILD_DATABASE_URL: db.url,
          CHILD_MASTER_KEY: OTHER_KEY,
          CHILD_PREVIOUS_KEY: TEST_KEY,
          CHILD_BATCH: '5',
        },
        stdio: ['ignore', 'pipe', 'inherit'],
      },
    );
    const exited = new Promise<NodeJS.Signals | null>((resolve) =>
      child.on('exit', (_code, signal) => resolve(signal)),
    );
    const firstLine = await new Promise<string>((resolve, reject) => {
      createInterface({ input: child.stdout }).once('line', resolve);
      child.once('exit', () => reject(new Error('child exited before reporting progress')));
    });
    expect(firstLine).toBe('progress 5/40');
    child.kill('SIGKILL');
    expect(await exited).toBe('SIGKILL');

    const rotated = managerWith(db.url, OTHER_KEY, [TEST_KEY]);
    try {
      const mid = await rotated.keyStatus();
      expect(mid.byMasterKey[newId]?.keys).toBe(5);
      expect(mid.byMasterKey[oldId]?.keys).toBe(35);
      expect(mid.readyToDropPrevious).toBe(false);
      // the half-rotated state is fully readable
      for (let i = 0; i < 40; i++) expect(await rotated.get(tenant(i), 'k')).toBe(`v${i}`);

      // abort after the next batch
      const controller = new AbortController();
      const aborted = await rotated
        .rotateMasterKey({ batchSize: 5, signal: controller.signal, onProgress: () => controller.abort() })
        .catch((e: unknown) => e);
      expect(aborted).toBeInstanceOf(OperationAbortedError);
      expect((aborted as OperationAbortedError).done).toBe(5);
      expect((await rotated.keyStatus()).byMasterKey[oldId]?.keys).toBe(30);

      // onProgress throwing stops it too
      const thrown = await rotated
        .rotateMasterKey({
          batchSize: 5,
          onProgress: () => {
            throw new Error('stop');
          },
        })
        .catch((e: unknown) => e);
      expect(thrown).toBeInstanceOf(OperationAbortedError);

      const result = await rotated.rotateMasterKey({ batchSize: 5 });
      expect(result.rewrapped).toBe(25);
      expect(result.total).toBe(25);
      expect((await rotated.keyStatus()).readyToDropPrevious).toBe(true);
      const audited = await adminQuery<{ n: string }>(
        db.name,
        `SELECT count(*) AS n FROM tenant_secret_audit WHERE action = 'tenant_key.rewrapped' AND outcome = 'success'`,
      );
      expect(Number(audited[0]?.n)).toBe(40);
      // nothing left to do: a second run is a no-op
      expect((await rotated.rotateMasterKey()).rewrapped).toBe(0);
    } finally {
      await rotated.close();
    }
    const onlyNew = managerWith(db.url, OTHER_KEY);
    try {
      for (let i = 0; i < 40; i++) expect(await onlyNew.get(tenant(i), 'k')).toBe(`v${i}`);
    } finally {
      await onlyNew.close();
    }
  });

  it('touches no secret row', async () => {
    const { manager, db } = await setupManager();
    for (let i = 0; i < 5; i++) await manager.set(tenant(i), 'k', `v${i}`);
    const snapshot = `SELECT md5(string_agg(encode(encrypted_value, 'hex') || xmin::text, ',' ORDER BY tenant_id, key_name)) AS h FROM tenant_secrets`;
    const versions = `SELECT md5(string_agg(encode(encrypted_value, 'hex') || xmin::text, ',' ORDER BY tenant_id, key_name, version)) AS h FROM tenant_secret_versions`;
    const before = [await adminQuery(db.name, snapshot), await adminQuery(db.name, versions)];
    const rotated = managerWith(db.url, OTHER_KEY, [TEST_KEY]);
    try {
      expect((await rotated.rotateMasterKey()).rewrapped).toBe(5);
    } finally {
      await rotated.close();
    }
    expect([await adminQuery(db.name, snapshot), await adminQuery(db.name, versions)]).toEqual(before);
  });
});

describe('concurrent master-key rotations', () => {
  it('two runs at once re-wrap every key once and report truthful checkpoint counts', async () => {
    const { manager, db } = await setupManager({ auditSealIntervalMs: 0 });
    const tenants = Array.from({ length: 40 }, (_, i) => tenant(i));
    for (const t of tenants) await manager.set(t, 'api-key', `value-${t}`);
    // Signed checkpoints at every chain's end, under the old key.
    expect((await manager.verifyAudit()).ok).toBe(true);
    const [checkpoints] = await adminQuery<{ n: number }>(
      db.name,
      `SELECT count(*)::int AS n FROM tenant_secret_audit_checkpoints WHERE master_key_id = $1`,
      [oldId],
    );
    const total = checkpoints?.n ?? 0;
    expect(total).toBeGreaterThan(tenants.length);

    const a = managerWith(db.url, OTHER_KEY, [TEST_KEY]);
    const b = managerWith(db.url, OTHER_KEY, [TEST_KEY]);
    try {
      const [ra, rb] = await Promise.all([
        a.rotateMasterKey({ batchSize: 3 }),
        b.rotateMasterKey({ batchSize: 3 }),
      ]);
      // Every key re-wrapped exactly once, by one run or the other.
      expect(ra.rewrapped + rb.rewrapped).toBe(tenants.length);
      expect(ra.failed + rb.failed).toBe(0);
      // Every checkpoint re-signed exactly once; each run accounts for every checkpoint it saw.
      expect(ra.auditCheckpoints.resigned + rb.auditCheckpoints.resigned).toBe(total);
      for (const r of [ra, rb]) {
        expect(r.auditCheckpoints.invalid).toBe(0);
        expect(r.auditCheckpoints.resigned + r.auditCheckpoints.alreadyCurrent).toBe(total);
      }
      console.info(
        `concurrent rotations: run A ${JSON.stringify(ra.auditCheckpoints)} rewrapped ${ra.rewrapped}, run B ${JSON.stringify(rb.auditCheckpoints)} rewrapped ${rb.rewrapped}`,
      );
      // A third run finds nothing to do, and says so.
      const again = await a.rotateMasterKey();
      expect(again).toMatchObject({
        rewrapped: 0,
        auditCheckpoints: { resigned: 0, alreadyCurrent: total, invalid: 0 },
      });
    } finally {
      await a.close();
      await b.close();
    }
    const fresh = managerWith(db.url, OTHER_KEY);
    try {
      expect((await fresh.keyStatus()).readyToDropPrevious).toBe(true);
      for (const t of tenants) expect(await fresh.get(t, 'api-key')).toBe(`value-${t}`);
      expect((await fresh.verifyAudit()).ok).toBe(true);
    } finally {
      await fresh.close();
    }
  });
});
