import { IntegrityError } from '../../base/errors.js';
import { table } from '../io.js';
import { type DemoStep, printHistory, rows, shortHex } from './context.js';

/** Demo steps about secrets: store, read, rotate, isolation, what is stored, tampering, rollback. */

export const storeSecrets: DemoStep = {
  title: 'Store secrets for two tenants',
  async run({ manager, tenantA, tenantB, say }) {
    const a = await manager.set(tenantA, 'stripe/api-key', 'sk_live_acme_4eC39HqLyjWDarjtT1zdp7dc', {
      labels: { provider: 'stripe' },
    });
    say(`set ${tenantA} stripe/api-key      -> version ${a.version}`);
    const t = await manager.set(
      tenantA,
      'github/deploy-token',
      'ghp_acme_16C7e42F292c6912E7710c838347Ae178B4a',
    );
    say(`set ${tenantA} github/deploy-token -> version ${t.version}`);
    const b = await manager.set(tenantB, 'stripe/api-key', 'sk_live_globex_9fJ2kLmNoPqRsTuVwXyZ0aB1');
    say(`set ${tenantB} stripe/api-key    -> version ${b.version}`);
    say(
      'Each tenant gets its own data key, wrapped under a key-encryption key derived for that tenant only.',
    );
  },
};

export const readSecret: DemoStep = {
  title: 'Read a secret',
  async run({ manager, tenantA, tenantB, say }) {
    say(`get ${tenantA} stripe/api-key   = ${await manager.get(tenantA, 'stripe/api-key')}`);
    say(`get ${tenantB} stripe/api-key = ${await manager.get(tenantB, 'stripe/api-key')}`);
  },
};

export const rotateSecret: DemoStep = {
  title: 'Rotate, and read the previous version',
  async run({ manager, tenantA, say }) {
    const r = await manager.rotate(tenantA, 'stripe/api-key', 'sk_live_acme_NEW_7dQ2vBn8xKp3Lm5Rt9Wy', {
      expectedVersion: 1,
    });
    say(`rotate ${tenantA} stripe/api-key -> version ${r.version}`);
    say(`current  = ${await manager.get(tenantA, 'stripe/api-key')}`);
    say(
      `previous = ${await manager.get(tenantA, 'stripe/api-key', { version: 'previous' })}  (readable during the grace period)`,
    );
    const history = await manager.versions(tenantA, 'stripe/api-key');
    say();
    for (const line of table(
      ['VERSION', 'ORIGIN', 'MARK'],
      history.map((v) => [
        String(v.version),
        v.origin,
        v.isCurrent ? 'current' : v.isPrevious ? 'previous' : '',
      ]),
    ).split('\n'))
      say(line);
  },
};

export const tenantIsolation: DemoStep = {
  title: 'Tenant isolation',
  async run({ manager, tenantA, tenantB, say }) {
    const leaked = await manager.get(tenantB, 'github/deploy-token');
    if (leaked !== null) throw new Error('demo: tenant isolation failed');
    say(`get ${tenantB} github/deploy-token -> not found (it belongs to ${tenantA})`);
    say(
      `${tenantB}'s key can only ever open ${tenantB}'s rows: tenant id, key name and version are bound into every ciphertext.`,
    );
  },
};

export const whatIsStored: DemoStep = {
  title: 'What the database actually stores',
  async run({ pool, tenantA, say }) {
    const stored = await rows<{ key_name: string; current_version: number; encrypted_value: Buffer }>(
      pool,
      'SELECT key_name, current_version, encrypted_value FROM tenant_secrets WHERE tenant_id = $1 ORDER BY key_name',
      [tenantA],
    );
    say(
      `SELECT key_name, current_version, encrypted_value FROM tenant_secrets WHERE tenant_id = '${tenantA}';`,
    );
    say();
    for (const line of table(
      ['key_name', 'version', 'encrypted_value'],
      stored.map((r) => [r.key_name, String(r.current_version), shortHex(r.encrypted_value)]),
    ).split('\n'))
      say(line);
    say();
    say(
      'Layout: 0x01 | random IV (16) | AES-256-CBC ciphertext | HMAC-SHA256 tag (32). No plaintext, no key.',
    );
  },
};

export const tamperingDetected: DemoStep = {
  title: 'Tampering is detected',
  async run({ manager, pool, tenantA, say }) {
    const flip = `UPDATE tenant_secrets SET encrypted_value = set_byte(encrypted_value, 20, get_byte(encrypted_value, 20) # 1)
                   WHERE tenant_id = $1 AND key_name = 'stripe/api-key'`;
    await pool.query(flip, [tenantA]);
    say(`flipped one bit of ${tenantA} stripe/api-key's ciphertext with SQL (as a database superuser could)`);
    try {
      await manager.get(tenantA, 'stripe/api-key');
      throw new Error('demo: tampering was not detected');
    } catch (error) {
      if (!(error instanceof IntegrityError)) throw error;
      say(`get ${tenantA} stripe/api-key -> ${error.name} [${error.code}]`);
      say(`  "${error.message}"`);
    }
    await pool.query(flip, [tenantA]);
    say(`flipped it back: get = ${await manager.get(tenantA, 'stripe/api-key')}`);
  },
};

export const rollbackVersion: DemoStep = {
  title: 'Roll back to an earlier version',
  async run({ manager, tenantA, say }) {
    const r = await manager.rollback(tenantA, 'stripe/api-key', 1);
    say(
      `rollback ${tenantA} stripe/api-key 1 -> version ${r.version} (version 1's value, written as a new version)`,
    );
    say(`current = ${await manager.get(tenantA, 'stripe/api-key')}`);
    say();
    printHistory(await manager.versions(tenantA, 'stripe/api-key'), say);
  },
};
