// suite-scope: once — option and master-key validation, no database
import { hkdfSync, randomBytes } from 'node:crypto';
import { inspect } from 'node:util';
import { describe, expect, it } from 'vitest';
import {
  ConfigurationError,
  createSecretsManager,
  generateMasterKey,
  Keyring,
  MasterKey,
} from '../../src/index.js';

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
    // An explicit empty key is a mistake in the code: refused now.
    expect(() =>
      createSecretsManager({ connectionString: 'postgres://127.0.0.1:1/none', masterKey: '', env: {} }),
    ).toThrow(/no master key/);
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

  // An app may create its manager at module level; a build step (next build) has no key or
  // database in its environment. What the environment lacks is reported when it is needed.
  it('a key or database missing from the environment is reported at first use and by ready(), not at creation', async () => {
    const noKey = createSecretsManager({ connectionString: 'postgres://127.0.0.1:1/none', env: {} });
    await expect(noKey.get('acme', 'stripe')).rejects.toThrow(ConfigurationError);
    await expect(noKey.set('acme', 'stripe', 'v')).rejects.toThrow(/TENANT_SECRETS_MASTER_KEY is not set/);
    await expect(noKey.ready()).rejects.toThrow(ConfigurationError);
    await expect(noKey.installation.ready()).rejects.toThrow(/TENANT_SECRETS_MASTER_KEY/);
    expect(() => noKey.masterKeyIds).toThrow(ConfigurationError);
    expect(() => noKey.keys.bundle('acme')).toThrow(ConfigurationError);
    expect(inspect(noKey)).not.toMatch(/undefined is not/);
    await noKey.close();

    const noDatabase = createSecretsManager({ env: { TENANT_SECRETS_MASTER_KEY: generateMasterKey() } });
    await expect(noDatabase.get('acme', 'stripe')).rejects.toThrow(/DATABASE_URL/);
    await expect(noDatabase.ready()).rejects.toThrow(ConfigurationError);
    await expect(noDatabase.auditTrail.seal()).rejects.toThrow(/DATABASE_URL/);
    await noDatabase.close();

    const neither = createSecretsManager({ env: {} });
    await expect(neither.getMany('acme', ['a'])).rejects.toThrow(ConfigurationError);
    await neither.close();
  });

  it('an explicit empty connection string is refused at creation', () => {
    expect(() =>
      createSecretsManager({ connectionString: '', env: { TENANT_SECRETS_MASTER_KEY: generateMasterKey() } }),
    ).toThrow(/DATABASE_URL/);
  });

  it('validates tunables and the schema name', () => {
    const base = { connectionString: 'postgres://127.0.0.1:1/none', masterKey: generateMasterKey() };
    expect(() => createSecretsManager({ ...base, maxVersions: 1 })).toThrow(ConfigurationError);
    expect(() => createSecretsManager({ ...base, schema: 'Robert"; DROP TABLE x;--' })).toThrow(
      ConfigurationError,
    );
  });
});

describe('every option is checked when the manager is created', () => {
  const base = { connectionString: 'postgres://127.0.0.1:1/none', masterKey: generateMasterKey(), env: {} };
  const bad: Record<string, unknown[]> = {
    connectionString: [0, -1, Number.NaN, 5432, {}, [], true],
    pool: [0, -1, Number.NaN, 'postgres://x', {}, [], true],
    masterKey: [0, -1, Number.NaN, 123, {}, [], true, Buffer.alloc(32, 7), new Uint8Array(32), 'short'],
    previousMasterKeys: [0, -1, Number.NaN, 'a,b', {}, [0], [{}], [Buffer.alloc(32, 7)], ['short'], true],
    keyring: [0, -1, Number.NaN, 'ring', {}, [], true],
    actor: [0, -1, Number.NaN, '', 'x'.repeat(201), 'bad\u0000actor', {}, []],
    schema: [0, -1, Number.NaN, '', 'a"b', 'x'.repeat(64), {}, []],
    maxVersions: [0, -1, Number.NaN, '10', 1.5, 1, 1001, Number.POSITIVE_INFINITY, {}, true],
    previousVersionGraceSeconds: [-1, Number.NaN, '60', 1.5, 31_536_001, {}, true],
    recoveryWindowDays: [-1, Number.NaN, '30', 0.5, 3651, {}, true],
    maxConnections: [0, -1, Number.NaN, '10', 1.5, 1001, {}, true],
    connectionTimeoutMillis: [0, -1, Number.NaN, '1000', 99, 600_001, 1.5, {}, true],
    auditSealIntervalMs: [-1, Number.NaN, '1000', 50, 99, 3_600_001, 1.5, {}, true],
    preparedStatements: [0, 1, 'true', 'false', null, {}, []],
    lockTimeoutMs: [0, -1, Number.NaN, '1000', 99, 600_001, 1.5, {}, true],
    keyCacheEntries: [0, -1, Number.NaN, '1000', 99, 10_000_001, 1.5, {}, true],
    concurrentReads: [-1, Number.NaN, '4', 1001, 1.5, {}, true],
    concurrentWrites: [-1, Number.NaN, '4', 1001, 1.5, {}, true],
    cache: [
      0,
      -1,
      Number.NaN,
      'on',
      true,
      [],
      { ttlMs: 0 },
      { ttlMs: Number.NaN },
      { maxEntries: -1 },
      { maxEntries: '5' },
      { auditIntervalMs: 0 },
      { nope: 1 },
    ],
    openTelemetry: [0, -1, Number.NaN, 'on', true, {}],
    logger: [0, -1, Number.NaN, 'console', {}, [], true],
    env: [0, -1, Number.NaN, 'DATABASE_URL=x', true],
  };

  it('covers every option the library knows', () => {
    const known = Object.keys(bad).sort();
    // An unknown name is refused with the list of known ones: the list is this table's keys.
    let message = '';
    try {
      createSecretsManager({ ...base, nope: 1 } as never);
    } catch (error) {
      message = (error as Error).message;
    }
    const listed = /known: (.*)\)$/.exec(message)?.[1]?.split(', ').sort();
    expect(listed).toEqual(known);
  });

  for (const [option, values] of Object.entries(bad)) {
    it(`refuses bad ${option} values with ConfigurationError`, () => {
      for (const value of values) {
        let error: unknown;
        try {
          const options = { ...base, [option]: value } as Record<string, unknown>;
          if (option === 'pool') delete options.connectionString;
          if (option === 'keyring') delete options.masterKey;
          createSecretsManager(options as never);
        } catch (e) {
          error = e;
        }
        expect(error, `${option}: ${String(value)}`).toBeInstanceOf(ConfigurationError);
        // The message names the option, never a key.
        expect((error as Error).message, `${option}: ${String(value)}`).toMatch(
          new RegExp(option === 'env' ? 'env' : option.replace(/([A-Z])/g, '.?$1'), 'i'),
        );
      }
    });
  }

  it('refuses unknown option names, and options that are not an object', () => {
    for (const extra of [{ nope: 1 }, { maxconnections: 5 }, { masterkey: 'x' }, { cache: { ttlms: 5 } }]) {
      expect(() => createSecretsManager({ ...base, ...extra } as never), JSON.stringify(extra)).toThrow(
        ConfigurationError,
      );
    }
    for (const options of [0, 'postgres://x', [], true]) {
      expect(() => createSecretsManager(options as never), String(options)).toThrow(ConfigurationError);
    }
  });

  it('accepts the bounds', () => {
    const managers = [
      createSecretsManager({
        ...base,
        maxConnections: 1,
        connectionTimeoutMillis: 100,
        auditSealIntervalMs: 0,
      }),
      createSecretsManager({
        ...base,
        maxVersions: 1000,
        recoveryWindowDays: 0,
        previousVersionGraceSeconds: 0,
      }),
      createSecretsManager({ ...base, cache: { ttlMs: 1, maxEntries: 1 }, openTelemetry: false }),
    ];
    return Promise.all(managers.map((m) => m.close()));
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

  it('derives the same keys as RFC 5869 HKDF over the key bytes (what every stored key was wrapped with)', () => {
    const raw = randomBytes(32);
    const key = MasterKey.parse(raw.toString('base64'));
    const hkdf = (salt: string, info: string, length: number) =>
      Buffer.from(hkdfSync('sha256', raw, salt, info, length));
    for (const tenant of ['t1', 'tenant-ü', '']) {
      expect(key.deriveTenantKek(tenant)).toEqual(
        hkdf('tenant-secrets:kek-salt:v1', `tenant-secrets:kek:v1\u0000${tenant}`, 64),
      );
    }
    expect(key.deriveProofKey()).toEqual(
      hkdf('tenant-secrets:proof-salt:v1', 'tenant-secrets:proof-key:v1', 32),
    );
    expect(key.deriveAuditKey()).toEqual(hkdf('tenant-secrets:audit-salt:v1', 'tenant-secrets:audit:v1', 32));
  });
});
