import { randomBytes } from 'node:crypto';
import { inspect } from 'node:util';
import { describe, expect, it } from 'vitest';
import {
  ConfigurationError,
  createSecretsManager,
  generateMasterKey,
  Keyring,
  MasterKey,
} from '../src/index.js';

const good = randomBytes(32);

describe('master key parsing', () => {
  it.each([
    ['base64', good.toString('base64')],
    ['base64 without padding', good.toString('base64').replace(/=$/, '')],
    ['base64url', good.toString('base64url')],
    ['hex', good.toString('hex')],
    ['hex upper case', good.toString('hex').toUpperCase()],
    ['surrounding whitespace', `  ${good.toString('base64')}\n`],
  ])('accepts %s', (_label, text) => {
    expect(MasterKey.parse(text).id).toBe(MasterKey.parse(good.toString('hex')).id);
  });

  it.each([
    ['empty', ''],
    ['a one-letter key (the seed accepted "k")', 'k'],
    ['a passphrase', 'correct horse battery staple'],
    ['16 bytes (AES-128 size)', randomBytes(16).toString('base64')],
    ['33 bytes', randomBytes(33).toString('base64')],
    ['64 bytes (silently truncated by pgcrypto)', randomBytes(64).toString('hex')],
    ['63 hex characters', good.toString('hex').slice(1)],
    ['not random (all zero)', Buffer.alloc(32).toString('base64')],
    ['not random (repeated pattern)', 'ab'.repeat(32)],
  ])(
    'rejects %s with a ConfigurationError that says how to generate a key and never echoes it',
    (_label, text) => {
      let error: unknown;
      try {
        MasterKey.parse(text);
      } catch (e) {
        error = e;
      }
      expect(error).toBeInstanceOf(ConfigurationError);
      const message = (error as Error).message;
      expect(message).toContain('keygen');
      expect(message).toContain('TENANT_SECRETS_MASTER_KEY');
      if (text.length > 3) expect(message).not.toContain(text.trim());
    },
  );

  it('createSecretsManager rejects a bad key at start-up, before touching the database', () => {
    expect(() =>
      createSecretsManager({
        connectionString: 'postgres://127.0.0.1:1/none',
        env: { TENANT_SECRETS_MASTER_KEY: 'short' },
      }),
    ).toThrow(ConfigurationError);
    expect(() => createSecretsManager({ connectionString: 'postgres://127.0.0.1:1/none', env: {} })).toThrow(
      /no master key/,
    );
    expect(() =>
      createSecretsManager({
        connectionString: 'postgres://127.0.0.1:1/none',
        env: {
          TENANT_SECRETS_MASTER_KEY: generateMasterKey(),
          TENANT_SECRETS_PREVIOUS_MASTER_KEYS: `${generateMasterKey()},oops`,
        },
      }),
    ).toThrow(/PREVIOUS_MASTER_KEYS \(entry 2\)/);
  });

  it('requires a database setting', () => {
    expect(() => createSecretsManager({ env: { TENANT_SECRETS_MASTER_KEY: generateMasterKey() } })).toThrow(
      /DATABASE_URL/,
    );
  });

  it('validates tunables and the schema name', () => {
    const base = { connectionString: 'postgres://127.0.0.1:1/none', masterKey: generateMasterKey() };
    expect(() => createSecretsManager({ ...base, maxVersions: 1 })).toThrow(ConfigurationError);
    expect(() => createSecretsManager({ ...base, schema: 'Robert"; DROP TABLE x;--' })).toThrow(
      ConfigurationError,
    );
  });
});

describe('key material never prints', () => {
  it('inspect, String and JSON show only the fingerprint id', () => {
    const text = generateMasterKey();
    const key = MasterKey.parse(text);
    const ring = new Keyring(key, [MasterKey.generate()]);
    const hex = Buffer.from(text, 'base64').toString('hex');
    for (const printed of [
      inspect(key),
      String(key),
      JSON.stringify(key),
      inspect(ring, { depth: 5 }),
      JSON.stringify(ring),
      inspect({ key }, { showHidden: true, depth: 5 }),
    ]) {
      expect(printed).not.toContain(text);
      expect(printed).not.toContain(hex);
      expect(printed).toContain(key.id);
    }
    expect(key.id).toMatch(/^mk_[0-9a-f]{16}$/);
  });

  it('a manager shows no key either', () => {
    const text = generateMasterKey();
    const manager = createSecretsManager({
      connectionString: 'postgres://127.0.0.1:1/none',
      masterKey: text,
    });
    const printed = inspect(manager, { depth: 8, showHidden: true }) + JSON.stringify(manager);
    expect(printed).not.toContain(text);
    expect(printed).not.toContain(Buffer.from(text, 'base64').toString('hex'));
  });

  it('derives distinct per-tenant KEKs and distinct ids per key', () => {
    const a = MasterKey.generate();
    const b = MasterKey.generate();
    expect(a.id).not.toBe(b.id);
    expect(a.deriveTenantKek('t1').equals(a.deriveTenantKek('t2'))).toBe(false);
    expect(a.deriveTenantKek('t1').equals(b.deriveTenantKek('t1'))).toBe(false);
    expect(a.deriveTenantKek('t1').length).toBe(64);
  });
});
