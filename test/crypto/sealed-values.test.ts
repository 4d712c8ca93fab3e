import fc from 'fast-check';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  createSecretsManager,
  IntegrityError,
  InvalidInputError,
  MAX_VALUE_BYTES,
  type SecretsManager,
  UnauthorizedError,
  UnknownMasterKeyError,
} from '../../src/index.js';
import { adminQuery, OTHER_KEY, setupManager } from '../support/db.js';

let manager: SecretsManager;
let db: { name: string; url: string };

beforeAll(async () => {
  ({ manager, db } = await setupManager());
});

const stored = async (tenant: string, key: string) =>
  (
    await adminQuery<{ encrypted_value: Buffer }>(
      db.name,
      'SELECT encrypted_value FROM tenant_secrets WHERE tenant_id = $1 AND key_name = $2',
      [tenant, key],
    )
  )[0]?.encrypted_value;

describe('round trip', () => {
  it.each([
    ['ascii', 'sk_live_51H8xYz'],
    ['unicode', 'pässwörd 🔐 密码 \u{1F600} \u00e9\u0301'],
    ['newlines and quotes', 'line1\nline2\r\n\'"\\ $1 %s'],
    ['json', JSON.stringify({ client_id: 'abc', client_secret: 'def' })],
  ])('%s', async (_label, value) => {
    await manager.set('tenant-rt', 'k', value);
    expect(await manager.get('tenant-rt', 'k')).toBe(value);
  });

  it('largest allowed value (64 KiB of UTF-8) round trips; one byte more is refused and stores nothing', async () => {
    const value = 'é'.repeat(MAX_VALUE_BYTES / 2);
    await manager.set('tenant-rt', 'large', value);
    expect(await manager.get('tenant-rt', 'large')).toBe(value);
    await expect(manager.set('tenant-rt', 'too-large', `${value}x`)).rejects.toBeInstanceOf(
      InvalidInputError,
    );
    expect(await manager.get('tenant-rt', 'too-large')).toBeNull();
  });

  it('refuses an empty value (an unset variable, an empty file) and stores nothing', async () => {
    await expect(manager.set('tenant-rt', 'empty', '')).rejects.toMatchObject({
      code: 'INVALID_INPUT',
      field: 'value',
    });
    expect(await manager.get('tenant-rt', 'empty')).toBeNull();
  });

  it('refuses lone surrogates and NUL-free is not required (NUL round trips)', async () => {
    await expect(manager.set('tenant-rt', 'bad', 'a\ud800b')).rejects.toMatchObject({
      code: 'INVALID_INPUT',
      field: 'value',
    });
    await manager.set('tenant-rt', 'nul', 'a\u0000b');
    expect(await manager.get('tenant-rt', 'nul')).toBe('a\u0000b');
  });

  it('property: any well-formed string round trips exactly', async () => {
    await fc.assert(
      fc.asyncProperty(fc.string({ unit: 'binary', minLength: 1, maxLength: 300 }), async (value) => {
        await manager.set('tenant-prop', 'p', value);
        expect(await manager.get('tenant-prop', 'p')).toBe(value);
      }),
      { numRuns: 40 },
    );
  });
});

describe('ciphertext', () => {
  it("is stored in the original interface's column, never as plaintext, in the sealed format", async () => {
    await manager.set('tenant-123', 'api-key', 'secret-value');
    const rows = await adminQuery<{ encrypted_value: Buffer }>(
      db.name,
      "SELECT encrypted_value FROM tenant_secrets WHERE tenant_id = 'tenant-123'",
    );
    expect(rows).toHaveLength(1);
    const blob = rows[0]?.encrypted_value as Buffer;
    expect(blob[0]).toBe(1); // format version
    expect(blob.length).toBe(1 + 16 + 16 + 32); // version, IV, one AES block, HMAC-SHA256 tag
    expect(blob.includes(Buffer.from('secret-value'))).toBe(false);
  });

  it('the same value stored twice gives different ciphertext (random IV per write, per tenant keys)', async () => {
    await manager.set('tenant-a', 'same', 'identical value');
    await manager.set('tenant-b', 'same', 'identical value');
    await manager.set('tenant-a', 'same2', 'identical value');
    const a = await stored('tenant-a', 'same');
    const b = await stored('tenant-b', 'same');
    const a2 = await stored('tenant-a', 'same2');
    expect(a?.equals(b as Buffer)).toBe(false);
    expect(a?.equals(a2 as Buffer)).toBe(false);
    expect(a?.subarray(1, 17).equals(a2?.subarray(1, 17) as Buffer)).toBe(false); // distinct IVs
    await manager.set('tenant-a', 'same', 'identical value');
    expect((await stored('tenant-a', 'same'))?.equals(a as Buffer)).toBe(false); // no IV reuse on update
  });

  it('data keys are stored only wrapped, one per tenant, tagged with the master key id', async () => {
    const keys = await adminQuery<{ tenant_id: string; master_key_id: string; wrapped_key: Buffer }>(
      db.name,
      "SELECT tenant_id, master_key_id, wrapped_key FROM tenant_secret_keys WHERE tenant_id IN ('tenant-a', 'tenant-b')",
    );
    expect(keys).toHaveLength(2);
    for (const key of keys) {
      expect(key.master_key_id).toBe(manager.masterKeyIds[0]);
      // A 64-byte data key (AES key and MAC key) pads to 5 AES blocks.
      expect(key.wrapped_key.length).toBe(1 + 16 + 80 + 32);
    }
  });
});

describe('tampering is detected, never returned as garbage', () => {
  beforeAll(async () => {
    await manager.set('victim', 'token', 'victim-secret');
    await manager.set('victim', 'other-name', 'other-secret');
    await manager.set('attacker', 'token', 'attacker-secret');
  });

  const expectIntegrity = async (tenant: string, key: string) => {
    const error = await manager.get(tenant, key).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(IntegrityError);
    expect(String((error as Error).message)).not.toContain('secret');
  };

  it('flipping any single bit of the ciphertext', async () => {
    const original = (await stored('victim', 'token')) as Buffer;
    for (const byte of [0, 5, 20, 40, original.length - 1]) {
      const tampered = Buffer.from(original);
      tampered[byte] = (tampered[byte] as number) ^ 0x01;
      await adminQuery(
        db.name,
        "UPDATE tenant_secrets SET encrypted_value = $1 WHERE tenant_id = 'victim' AND key_name = 'token'",
        [tampered],
      );
      await expectIntegrity('victim', 'token');
    }
    await adminQuery(
      db.name,
      "UPDATE tenant_secrets SET encrypted_value = $1 WHERE tenant_id = 'victim' AND key_name = 'token'",
      [original],
    );
    expect(await manager.get('victim', 'token')).toBe('victim-secret');
  });

  it('truncated or empty ciphertext', async () => {
    await manager.set('victim', 'short', 'x');
    await adminQuery(
      db.name,
      "UPDATE tenant_secrets SET encrypted_value = substring(encrypted_value, 1, 40) WHERE tenant_id = 'victim' AND key_name = 'short'",
    );
    await expectIntegrity('victim', 'short');
    await adminQuery(
      db.name,
      "UPDATE tenant_secrets SET encrypted_value = ''::bytea WHERE tenant_id = 'victim' AND key_name = 'short'",
    );
    await expectIntegrity('victim', 'short');
  });

  it('moving a ciphertext to another key name of the same tenant', async () => {
    await adminQuery(
      db.name,
      `UPDATE tenant_secrets t SET encrypted_value = s.encrypted_value FROM tenant_secrets s
        WHERE s.tenant_id = 'victim' AND s.key_name = 'token' AND t.tenant_id = 'victim' AND t.key_name = 'other-name'`,
    );
    await expectIntegrity('victim', 'other-name');
  });

  it('moving a ciphertext and its data key to another tenant', async () => {
    // The attacker copies the victim's row *and* the victim's wrapped data key into their own tenant.
    await adminQuery(
      db.name,
      `UPDATE tenant_secret_keys a SET wrapped_key = v.wrapped_key FROM tenant_secret_keys v
        WHERE v.tenant_id = 'victim' AND a.tenant_id = 'attacker'`,
    );
    await expectIntegrity('attacker', 'token');
    await adminQuery(
      db.name,
      `UPDATE tenant_secrets a SET encrypted_value = v.encrypted_value FROM tenant_secrets v
        WHERE v.tenant_id = 'victim' AND v.key_name = 'token' AND a.tenant_id = 'attacker' AND a.key_name = 'token'`,
    );
    await expectIntegrity('attacker', 'token');
  });

  it("replaying an older version's ciphertext as the current one", async () => {
    await manager.set('replay', 'k', 'old value');
    await manager.set('replay', 'k', 'new value');
    await adminQuery(
      db.name,
      `UPDATE tenant_secrets s SET encrypted_value = v.encrypted_value FROM tenant_secret_versions v
        WHERE v.tenant_id = 'replay' AND v.key_name = 'k' AND v.version = 1 AND s.tenant_id = 'replay' AND s.key_name = 'k'`,
    );
    await expectIntegrity('replay', 'k');
    // Older versions themselves stay intact and readable by number.
    expect(await manager.get('replay', 'k', { version: 1 })).toBe('old value');
  });

  it('flipping a bit of the wrapped data key', async () => {
    await manager.set('wrapped', 'k', 'v');
    await adminQuery(
      db.name,
      "UPDATE tenant_secret_keys SET wrapped_key = set_byte(wrapped_key, 30, get_byte(wrapped_key, 30) # 1) WHERE tenant_id = 'wrapped'",
    );
    await expectIntegrity('wrapped', 'k');
    await expect(manager.set('wrapped', 'k2', 'v')).rejects.toBeInstanceOf(IntegrityError);
  });

  it('failures are audited in the same transaction', async () => {
    const rows = await adminQuery<{ n: number }>(
      db.name,
      "SELECT count(*)::int AS n FROM tenant_secret_audit WHERE tenant_id = 'victim' AND outcome = 'failure' AND error_code = 'INTEGRITY'",
    );
    expect(rows[0]?.n).toBeGreaterThanOrEqual(6);
  });
});

describe('master keys', () => {
  it('another master key: refused as unauthorized (as for a missing tenant) until registered, then a typed error naming the missing key id', async () => {
    await manager.set('mk-tenant', 'k', 'v');
    const other = createSecretsManager({ connectionString: db.url, masterKey: OTHER_KEY });
    try {
      // Not registered: nothing speaks for the tenant, the same answer as for a tenant that does not exist.
      for (const tenant of ['mk-tenant', 'mk-no-such-tenant']) {
        await expect(other.get(tenant, 'k')).rejects.toBeInstanceOf(UnauthorizedError);
        await expect(other.set(tenant, 'k2', 'v')).rejects.toBeInstanceOf(UnauthorizedError);
      }
      // Registered (another application sharing the database): it may create tenants of its own, and
      // is told which master key the tenant's data is under; it still reads and writes nothing.
      await other.registerMasterKey();
      for (const name of ['k', 'no-such-key']) {
        const error = await other.get('mk-tenant', name).catch((e: unknown) => e);
        expect(error).toBeInstanceOf(UnknownMasterKeyError);
        expect((error as UnknownMasterKeyError).masterKeyId).toBe(manager.masterKeyIds[0]);
        expect((error as Error).message).toContain(manager.masterKeyIds[0]);
        await expect(other.set('mk-tenant', name, 'v')).rejects.toBeInstanceOf(UnknownMasterKeyError);
      }
      await other.set('mk-other-tenant', 'k', 'theirs');
      await expect(manager.get('mk-other-tenant', 'k')).rejects.toBeInstanceOf(UnknownMasterKeyError);
    } finally {
      await other.close();
    }
    expect(await manager.get('mk-tenant', 'k')).toBe('v');
  });

  it('a data key stored under an unknown key id is refused even if the bytes were right', async () => {
    await manager.set('relabel', 'k', 'v');
    await adminQuery(
      db.name,
      "UPDATE tenant_secret_keys SET master_key_id = 'mk_0000000000000000' WHERE tenant_id = 'relabel'",
    );
    await expect(manager.get('relabel', 'k')).rejects.toMatchObject({
      code: 'UNKNOWN_MASTER_KEY',
      masterKeyId: 'mk_0000000000000000',
    });
  });

  it('a malformed master key id written into a row (100 KB, escape sequences) never reaches a message or status', async () => {
    await manager.set('relabel-garbage', 'k', 'v');
    const garbage = `\u001b[31mmk_${'x'.repeat(100_000)}`;
    await adminQuery(
      db.name,
      "UPDATE tenant_secret_keys SET master_key_id = $1 WHERE tenant_id = 'relabel-garbage'",
      [garbage],
    );
    const error = await manager.get('relabel-garbage', 'k').catch((e: unknown) => e);
    expect(error).toBeInstanceOf(UnknownMasterKeyError);
    expect((error as UnknownMasterKeyError).masterKeyId).toBeUndefined();
    expect((error as Error).message).not.toContain('\u001b');
    expect((error as Error).message.length).toBeLessThan(300);
    const status = await manager.status();
    expect(status.masterKeysInUse.map((k) => k.id)).toContain('invalid');
    expect(JSON.stringify(status)).not.toContain('xxxxxxxxxx');
    expect(status.problems.map((p) => p.code)).toContain('invalid_master_key_id');
    await adminQuery(db.name, "DELETE FROM tenant_secret_keys WHERE tenant_id = 'relabel-garbage'");
  });

  it('the master key never reaches the database: no column, row or function body contains it', async () => {
    const { TEST_KEY } = await import('../support/db.js');
    const raw = Buffer.from(TEST_KEY, 'base64');
    const dump = await adminQuery<{ blob: Buffer }>(
      db.name,
      `SELECT convert_to(string_agg(t::text, ' '), 'UTF8') AS blob FROM (
         SELECT row_to_json(k)::text AS t FROM tenant_secret_keys k
         UNION ALL SELECT row_to_json(s)::text FROM tenant_secrets s
         UNION ALL SELECT row_to_json(v)::text FROM tenant_secret_versions v
         UNION ALL SELECT row_to_json(m)::text FROM tenant_secret_master_keys m
         UNION ALL SELECT row_to_json(a)::text FROM tenant_secret_audit a) x`,
    );
    const text = String(dump[0]?.blob);
    expect(text).not.toContain(TEST_KEY);
    expect(text).not.toContain(raw.toString('hex'));
  });
});
