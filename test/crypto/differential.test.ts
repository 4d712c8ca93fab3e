import { randomBytes } from 'node:crypto';
import fc from 'fast-check';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  accessToken,
  dataKeyCheck,
  openSecret,
  sealSecret,
  unwrapDataKey,
  wrapDataKey,
} from '../../src/crypto/sealed.js';
import { createSecretsManager } from '../../src/index.js';
import { directUrlFor, freshDatabase, TEST_KEY } from '../support/db.js';

/**
 * The library opens in Node what pgcrypto sealed (reads hand the database no key), and pgcrypto opens
 * what the SQL interface reads: both must agree on every byte. Properties over random plaintexts,
 * tenants, key names, versions and key versions, with both data-key sizes (64-byte keys since 0.2,
 * 32-byte keys of 0.1): sealed by pgcrypto → opened in Node; sealed in Node → opened by pgcrypto; one
 * bit flipped anywhere → refused by both; wrapped data keys both ways; access tokens and data-key
 * checks equal. The SQL side is the installed functions themselves (called as the owner).
 */

let client: pg.Client;

beforeAll(async () => {
  const db = await freshDatabase('diff');
  const manager = createSecretsManager({ connectionString: db.url, masterKey: TEST_KEY });
  await manager.migrate();
  await manager.close();
  client = new pg.Client({ connectionString: directUrlFor(db.name) });
  await client.connect();
});
afterAll(() => client?.end());

const tenant = fc.stringMatching(/^[A-Za-z0-9][A-Za-z0-9._:@-]{0,40}$/);
const keyName = fc.stringMatching(/^[A-Za-z0-9_][A-Za-z0-9_./-]{0,60}$/);
const version = fc.integer({ min: 1, max: 999_999_999 });
const plaintext = fc.uint8Array({ minLength: 0, maxLength: 300 }).map((a) => Buffer.from(a));
const dek = fc.constantFrom(32, 64).map((n) => randomBytes(n));
const masterKeyId = fc.stringMatching(/^mk_[0-9a-f]{16}$/);

async function sqlOpen(blob: Buffer, key: Buffer, t: string, k: string, v: number, kv: number) {
  const { rows } = await client.query<{ plain: Buffer | null }>(
    'SELECT public._ts_open_secret($1, $2, $3, $4, $5, $6) AS plain',
    [blob, key, t, k, v, kv],
  );
  return rows[0]?.plain ?? null;
}

async function sqlSeal(plain: Buffer, key: Buffer, t: string, k: string, v: number, kv: number) {
  const { rows } = await client.query<{ sealed: Buffer }>(
    'SELECT public._ts_seal_secret($1, $2, $3, $4, $5, $6) AS sealed',
    [plain, key, t, k, v, kv],
  );
  return rows[0]?.sealed as Buffer;
}

/** One bit flipped at a random position (never a no-op, unlike setting a byte to some value). */
const flip = (blob: Buffer, at: number, bit: number) => {
  const out = Buffer.from(blob);
  const i = at % out.length;
  out[i] = (out[i] as number) ^ (1 << bit);
  return out;
};

describe('sealed values: pgcrypto and Node agree both ways', () => {
  it('sealed by pgcrypto, opened in Node (every size, tenant, name, version and key version)', async () => {
    await fc.assert(
      fc.asyncProperty(
        plaintext.filter((p) => p.length > 0),
        dek,
        tenant,
        keyName,
        version,
        version,
        async (p, key, t, k, v, kv) => {
          const sealed = await sqlSeal(p, key, t, k, v, kv);
          expect(openSecret(sealed, key, t, k, v, kv)?.equals(p)).toBe(true);
          // The same ciphertext under any other binding is refused.
          expect(openSecret(sealed, key, t, k, v + 1 > 999_999_999 ? v - 1 : v + 1, kv)).toBeUndefined();
          expect(openSecret(sealed, key, `${t}x`, k, v, kv)).toBeUndefined();
        },
      ),
      { numRuns: 60 },
    );
  });

  it("sealed in Node's format, opened by pgcrypto", async () => {
    await fc.assert(
      fc.asyncProperty(plaintext, dek, tenant, keyName, version, version, async (p, key, t, k, v, kv) => {
        const sealed = sealSecret(p, key, t, k, v, kv);
        const opened = await sqlOpen(sealed, key, t, k, v, kv);
        expect(opened?.equals(p)).toBe(true);
        expect(await sqlOpen(sealed, key, t, `${k}x`, v, kv)).toBeNull();
      }),
      { numRuns: 60 },
    );
  });

  it('a flipped bit anywhere (version byte, IV, ciphertext, tag) is refused by both, and neither throws', async () => {
    await fc.assert(
      fc.asyncProperty(
        plaintext.filter((p) => p.length > 0),
        dek,
        tenant,
        keyName,
        version,
        fc.nat(),
        fc.integer({ min: 0, max: 7 }),
        fc.boolean(),
        async (p, key, t, k, v, at, bit, nodeSealed) => {
          const sealed = nodeSealed ? sealSecret(p, key, t, k, v, 1) : await sqlSeal(p, key, t, k, v, 1);
          const tampered = flip(sealed, at, bit);
          expect(openSecret(tampered, key, t, k, v, 1)).toBeUndefined();
          expect(await sqlOpen(tampered, key, t, k, v, 1)).toBeNull();
        },
      ),
      { numRuns: 80 },
    );
  });

  it('truncated, extended or empty input and a wrong key are refused by both', async () => {
    const key = randomBytes(64);
    const sealed = sealSecret(Buffer.from('value'), key, 't', 'k', 1, 1);
    for (const bad of [
      Buffer.alloc(0),
      sealed.subarray(0, sealed.length - 1),
      sealed.subarray(0, 48),
      Buffer.concat([sealed, Buffer.alloc(16)]),
    ]) {
      expect(openSecret(bad, key, 't', 'k', 1, 1)).toBeUndefined();
      expect(await sqlOpen(bad, key, 't', 'k', 1, 1)).toBeNull();
    }
    const other = randomBytes(64);
    expect(openSecret(sealed, other, 't', 'k', 1, 1)).toBeUndefined();
    expect(await sqlOpen(sealed, other, 't', 'k', 1, 1)).toBeNull();
  });
});

describe('wrapped data keys, access tokens and data-key checks agree', () => {
  it('a data key wrapped by pgcrypto unwraps in Node, and the reverse', async () => {
    await fc.assert(
      fc.asyncProperty(dek, tenant, version, masterKeyId, async (key, t, kv, mk) => {
        const kek = randomBytes(64);
        const { rows } = await client.query<{ wrapped: Buffer }>(
          'SELECT public._ts_wrap_dek($1, $2, $3, $4, $5) AS wrapped',
          [t, kv, key, mk, kek],
        );
        const wrapped = rows[0]?.wrapped as Buffer;
        expect(unwrapDataKey(wrapped, kek, t, kv, mk)?.equals(key)).toBe(true);
        expect(unwrapDataKey(wrapped, kek, t, kv + 1, mk)).toBeUndefined();
        const nodeWrapped = wrapDataKey(key, kek, t, kv, mk);
        const back = await client.query<{ dek: Buffer | null }>(
          'SELECT public._ts_unwrap_dek($1, $2, $3, $4, $5) AS dek',
          [t, kv, mk, nodeWrapped, kek],
        );
        expect(back.rows[0]?.dek?.equals(key)).toBe(true);
        const tampered = flip(nodeWrapped, kv, kv % 8);
        const refused = await client.query<{ dek: Buffer | null }>(
          'SELECT public._ts_unwrap_dek($1, $2, $3, $4, $5) AS dek',
          [t, kv, mk, tampered, kek],
        );
        expect(refused.rows[0]?.dek).toBeNull();
        expect(unwrapDataKey(tampered, kek, t, kv, mk)).toBeUndefined();
      }),
      { numRuns: 40 },
    );
  });

  it('access tokens, their digests and data-key checks are the same bytes in SQL and in Node', async () => {
    await fc.assert(
      fc.asyncProperty(dek, async (key) => {
        const kek = randomBytes(64);
        const { rows } = await client.query<{ token: Buffer; check: Buffer }>(
          'SELECT public._ts_access_token($1) AS token, public._ts_dek_check($2) AS check',
          [kek, key],
        );
        expect(rows[0]?.token.equals(accessToken(kek))).toBe(true);
        expect(rows[0]?.check.equals(dataKeyCheck(key))).toBe(true);
      }),
      { numRuns: 30 },
    );
  });
});
