import { randomBytes } from 'node:crypto';
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  createSecretsManager,
  Keyring,
  type SecretsManager,
  UnauthorizedError,
  UnknownMasterKeyError,
} from '../../src/index.js';
import { adminQuery, freshDatabase, OTHER_KEY, TEST_KEY } from '../support/db.js';
import { asRole, loginRoles, roleUrl } from '../support/roles.js';

/**
 * A tenant's key bundle is the capability for that tenant, and nothing else is. Every tenant-scoped
 * SQL function is called directly, as a SQL-side caller holding the application grants would, with
 * bundles that do not speak for the tenant: none at all (forged bytes), another tenant's, one of a
 * master key that is not registered, one of a master key registered by another application sharing
 * the database. Each must be refused, change nothing, and answer the same for an existing and a
 * missing secret.
 */
const VICTIM = 'victim';
const EMPTY_TENANT = 'victim-without-secrets';
const THIRD_KEY = randomBytes(32).toString('base64');

let db: { name: string; url: string };
let owner: SecretsManager;
let app: string;
let operator: string;

const ENTRY = 19 + 64 + 32;
/** A bundle in the documented layout with the given entries. */
function packBundle(entries: { id: string; kek: Buffer; proof: Buffer }[]): Buffer {
  const out = Buffer.alloc(2 + ENTRY * entries.length);
  out[0] = 1;
  out[1] = entries.length;
  entries.forEach((e, i) => {
    const at = 2 + ENTRY * i;
    out.write(e.id, at, 'ascii');
    e.kek.copy(out, at + 19);
    e.proof.copy(out, at + 83);
  });
  return out;
}
const entryOf = (bundle: Buffer, i = 0) => ({
  id: bundle.subarray(2 + ENTRY * i, 2 + ENTRY * i + 19).toString('ascii'),
  kek: bundle.subarray(2 + ENTRY * i + 19, 2 + ENTRY * i + 83),
  proof: bundle.subarray(2 + ENTRY * i + 83, 2 + ENTRY * (i + 1)),
});

/** What every table holds about a tenant (rows as JSON), to show a refused call changed nothing. */
async function snapshot(tenant: string): Promise<string> {
  const rows = await adminQuery<{ t: string }>(
    db.name,
    `SELECT json_build_object(
       'secrets', (SELECT json_agg(s ORDER BY s.key_name) FROM tenant_secrets s WHERE s.tenant_id = $1),
       'versions', (SELECT json_agg(v ORDER BY v.key_name, v.version) FROM tenant_secret_versions v WHERE v.tenant_id = $1),
       'keys', (SELECT json_agg(k ORDER BY k.version) FROM tenant_secret_keys k WHERE k.tenant_id = $1))::text AS t`,
    [tenant],
  );
  return rows[0]?.t ?? '';
}

interface Attacker {
  name: string;
  /** The bundle the attacker passes for a tenant. */
  bundle(tenant: string): Buffer;
  /** The refusal it must get (the same for an existing and a missing secret). */
  refusal: string;
}

let attackers: Attacker[];
let otherApp: SecretsManager;
let registeredOther: SecretsManager;

beforeAll(async () => {
  db = await freshDatabase();
  [app, operator] = await loginRoles('cap_app', 'cap_operator');
  owner = createSecretsManager({ connectionString: db.url, masterKey: TEST_KEY, auditSealIntervalMs: 0 });
  await owner.migrate({ grantTo: [app], grantOperatorTo: [operator] });
  await owner.set(VICTIM, 'token', 'victim-secret-1', { labels: { env: 'prod' } });
  await owner.set(VICTIM, 'token', 'victim-secret-2');
  await owner.set(VICTIM, 'gone', 'victim-deleted');
  await owner.delete(VICTIM, 'gone');
  await owner.set(EMPTY_TENANT, 'tmp', 'x');
  await owner.destroy(EMPTY_TENANT, 'tmp');
  // An application with a master key that is not registered, and one whose key the owner registered
  // (another application sharing the database).
  otherApp = createSecretsManager({ connectionString: db.url, masterKey: OTHER_KEY, auditSealIntervalMs: 0 });
  registeredOther = createSecretsManager({
    connectionString: db.url,
    masterKey: THIRD_KEY,
    auditSealIntervalMs: 0,
  });
  await registeredOther.registerMasterKey();
  await registeredOther.set('neighbour', 'k', 'neighbour-secret');

  const victimId = owner.masterKeyIds[0] as string;
  attackers = [
    {
      name: 'forged bundle: random id, KEK and proof',
      bundle: () =>
        packBundle([
          { id: `mk_${randomBytes(8).toString('hex')}`, kek: randomBytes(64), proof: randomBytes(32) },
        ]),
      refusal: 'unauthorized',
    },
    {
      name: "forged bundle: the victim's (public) master key id, random KEK and proof",
      bundle: () => packBundle([{ id: victimId, kek: randomBytes(64), proof: randomBytes(32) }]),
      refusal: 'unauthorized',
    },
    {
      name: "another tenant's bundle",
      bundle: () => owner.tenantKeyBundle('attacker-tenant').bytes,
      refusal: 'unauthorized',
    },
    {
      name: "the system proof bundle ('') used for a tenant",
      bundle: () => ownerSystemBundle(),
      refusal: 'unauthorized',
    },
    {
      name: 'an application configured with another master key (not registered)',
      bundle: (tenant) => otherApp.tenantKeyBundle(tenant).bytes,
      refusal: 'unauthorized',
    },
    {
      name: 'an application configured with another master key registered in the same database',
      bundle: (tenant) => registeredOther.tenantKeyBundle(tenant).bytes,
      refusal: 'unknown_master_key',
    },
  ];
});

/** The owner's key bundle for the system pseudo-tenant '' (what proves a master key itself). */
const ownerSystemBundle = (): Buffer => Keyring.parse(TEST_KEY).bundleBytes('');

afterAll(async () => {
  await otherApp.close();
  await registeredOther.close();
  await owner.close();
});

/** One call of a tenant-scoped function: the status (or SQLSTATE when it raises) it answers. */
type Call = (client: pg.Client, tenant: string, name: string, bundle: Buffer) => Promise<string>;
const status =
  (sql: string, extra: unknown[] = []): Call =>
  async (client, tenant, name, bundle) => {
    try {
      const r = await client.query(sql, [tenant, name, bundle, ...extra]);
      const row = r.rows[0] ?? {};
      return [row.status ?? 'no row', row.detail ?? row.state ?? ''].join(':').replace(/:$/, '');
    } catch (e) {
      return `sqlstate ${(e as { code?: string }).code}`;
    }
  };

/** Data-plane functions, each with the name of a secret that exists and of one that does not. */
const DATA_PLANE: { op: string; call: Call; existing: string; tenant?: string }[] = [
  {
    op: 'read',
    existing: 'token',
    call: status('SELECT status, detail FROM tenant_secret_read($1, $2, $3)'),
  },
  {
    op: 'read a numbered version',
    existing: 'token',
    call: status(`SELECT status, detail FROM tenant_secret_read($1, $2, $3, '{"version":"1"}')`),
  },
  {
    op: 'read the previous version',
    existing: 'token',
    call: status(`SELECT status, detail FROM tenant_secret_read($1, $2, $3, '{"version":"previous"}')`),
  },
  {
    op: 'read an expired secret (allow_expired)',
    existing: 'token',
    call: status(`SELECT status, detail FROM tenant_secret_read($1, $2, $3, '{"allow_expired":true}')`),
  },
  {
    op: 'bulk read',
    existing: 'token',
    call: async (client, tenant, name, bundle) => {
      try {
        const r = await client.query(
          'SELECT key_name, status, detail FROM tenant_secret_read_many($1, ARRAY[$2], $3)',
          [tenant, name, bundle],
        );
        return r.rows.map((row) => `${row.key_name === null ? '' : 'per-name '}${row.status}`).join(',');
      } catch (e) {
        return `sqlstate ${(e as { code?: string }).code}`;
      }
    },
  },
  {
    op: 'write (replace)',
    existing: 'token',
    call: status(`SELECT status, detail FROM tenant_secret_write($1, $2, '\\x41', $3)`),
  },
  {
    op: 'write (rotate)',
    existing: 'token',
    call: status(`SELECT status, detail FROM tenant_secret_write($1, $2, '\\x41', $3, 'rotate')`),
  },
  {
    op: 'soft delete',
    existing: 'token',
    call: status('SELECT status FROM tenant_secret_delete($1, $2, $3)'),
  },
  { op: 'restore', existing: 'gone', call: status('SELECT status FROM tenant_secret_restore($1, $2, $3)') },
  { op: 'destroy', existing: 'token', call: status('SELECT status FROM tenant_secret_destroy($1, $2, $3)') },
  {
    op: 'destroy a soft-deleted secret',
    existing: 'gone',
    call: status('SELECT status FROM tenant_secret_destroy($1, $2, $3)'),
  },
  {
    op: 'destroy versions',
    existing: 'token',
    call: status('SELECT status, detail FROM tenant_secret_destroy_versions($1, $2, ARRAY[1], $3)'),
  },
  {
    op: 'expire through metadata',
    existing: 'token',
    call: status(
      `SELECT status, detail FROM tenant_secret_update_metadata($1, $2, '{"expires_at":"1971-01-01T00:00:00Z"}', $3)`,
    ),
  },
  {
    op: 'relabel',
    existing: 'token',
    call: status(
      `SELECT status, detail FROM tenant_secret_update_metadata($1, $2, '{"labels":{"env":"dev"}}', $3)`,
    ),
  },
  {
    op: 'version history',
    existing: 'token',
    call: status('SELECT status, state FROM tenant_secret_list_versions($1, $2, $3)'),
  },
  {
    op: 'rollback',
    existing: 'token',
    call: status('SELECT status, detail FROM tenant_secret_rollback($1, $2, 1, $3)'),
  },
  {
    op: 'audit cached reads',
    existing: 'token',
    call: status(
      'SELECT status FROM tenant_secret_audit_cached_reads($1, $3, ARRAY[$2], ARRAY[2], ARRAY[5], now(), now())',
    ),
  },
  {
    op: 'upsert_tenant_secret (original interface)',
    existing: 'token',
    call: status(`SELECT upsert_tenant_secret($1, $2, 'x', $3) AS status`),
  },
  {
    op: 'get_tenant_secret (original interface)',
    existing: 'token',
    call: async (client, tenant, name, bundle) => {
      try {
        const r = await client.query('SELECT get_tenant_secret($1, $2, $3) AS v', [tenant, name, bundle]);
        return r.rows[0]?.v === null ? 'null' : 'a value';
      } catch (e) {
        return `sqlstate ${(e as { code?: string }).code}`;
      }
    },
  },
];

/** Tenant-level functions: "existing" is a tenant with secrets, "missing" one without any. */
const TENANT_LEVEL: { op: string; call: Call; role: 'app' | 'operator' }[] = [
  // ($2, the key name, is unused by tenant-level functions but bound: typed so the statement parses.)
  {
    op: 'list names and labels',
    role: 'app',
    call: status(
      'SELECT status, key_name AS detail FROM tenant_secret_list($1, $3) WHERE $2::text IS NOT NULL',
    ),
  },
  {
    op: 'list deleted names',
    role: 'app',
    call: status(
      `SELECT status, key_name AS detail FROM tenant_secret_list($1, $3, '{"include_deleted":true}') WHERE $2::text IS NOT NULL`,
    ),
  },
  {
    op: 'rotate the tenant key',
    role: 'operator',
    call: status('SELECT status FROM tenant_secret_rotate_key($1, $3) WHERE $2::text IS NOT NULL'),
  },
  {
    op: 're-encrypt a batch',
    role: 'operator',
    call: status(
      'SELECT status, detail FROM tenant_secret_reencrypt_batch($1, $3, 10) WHERE $2::text IS NOT NULL',
    ),
  },
  {
    op: 'destroy retired keys',
    role: 'operator',
    call: status('SELECT status FROM tenant_secret_destroy_retired_keys($1, $3) WHERE $2::text IS NOT NULL'),
  },
];

describe('a bundle that does not speak for the tenant is refused, changes nothing, and tells nothing', () => {
  it('every data-plane function, for every kind of wrong bundle: the same refusal for an existing and a missing secret', async () => {
    const before = await snapshot(VICTIM);
    const answers: string[] = [];
    let tried = 0;
    await asRole(db.name, app, async (client) => {
      for (const attacker of attackers) {
        for (const { op, call, existing } of DATA_PLANE) {
          const bundle = attacker.bundle(VICTIM);
          const onExisting = await call(client, VICTIM, existing, bundle);
          const onMissing = await call(client, VICTIM, `no-such-${existing}`, bundle);
          tried += 2;
          answers.push(`${attacker.name} / ${op}: existing=${onExisting} missing=${onMissing}`);
          expect.soft(onExisting, `${attacker.name} / ${op}`).toBe(onMissing);
          expect
            .soft(onExisting, `${attacker.name} / ${op}`)
            .toMatch(
              new RegExp(
                `^(per-name )?(${attacker.refusal}|sqlstate (TS401|TSKEY|TSINT))(:mk_[0-9a-f]{16})?$`,
              ),
            );
        }
      }
    });
    expect(await snapshot(VICTIM)).toBe(before);
    expect(tried).toBe(attackers.length * DATA_PLANE.length * 2);
  });

  it('tenant-level functions (list, key rotation, re-encryption, retired-key destruction): the same refusal for a tenant with and without secrets', async () => {
    const before = await snapshot(VICTIM);
    const beforeEmpty = await snapshot(EMPTY_TENANT);
    for (const role of ['app', 'operator'] as const) {
      await asRole(db.name, role === 'app' ? app : operator, async (client) => {
        for (const attacker of attackers) {
          for (const { op, call } of TENANT_LEVEL.filter((t) => t.role === role)) {
            const onExisting = await call(client, VICTIM, 'x', attacker.bundle(VICTIM));
            const onEmpty = await call(client, EMPTY_TENANT, 'x', attacker.bundle(EMPTY_TENANT));
            expect.soft(onExisting, `${attacker.name} / ${op}`).toBe(onEmpty);
            expect
              .soft(onExisting, `${attacker.name} / ${op}`)
              .toMatch(new RegExp(`^${attacker.refusal}(:|$)`));
          }
        }
      });
    }
    expect(await snapshot(VICTIM)).toBe(before);
    expect(await snapshot(EMPTY_TENANT)).toBe(beforeEmpty);
  });

  it('the library with another master key gets typed errors, the same for existing and missing secrets', async () => {
    for (const [manager, ErrorClass] of [
      [otherApp, UnauthorizedError],
      [registeredOther, UnknownMasterKeyError],
    ] as const) {
      for (const name of ['token', 'no-such-token']) {
        await expect(manager.get(VICTIM, name)).rejects.toBeInstanceOf(ErrorClass);
        await expect(manager.set(VICTIM, name, 'overwrite')).rejects.toBeInstanceOf(ErrorClass);
        await expect(manager.delete(VICTIM, name)).rejects.toBeInstanceOf(ErrorClass);
        await expect(manager.destroy(VICTIM, name)).rejects.toBeInstanceOf(ErrorClass);
        await expect(manager.versions(VICTIM, name)).rejects.toBeInstanceOf(ErrorClass);
        await expect(manager.updateMetadata(VICTIM, name, { labels: {} })).rejects.toBeInstanceOf(ErrorClass);
        await expect(manager.getMany(VICTIM, [name])).rejects.toBeInstanceOf(ErrorClass);
      }
      await expect(manager.list(VICTIM)).rejects.toBeInstanceOf(ErrorClass);
    }
    expect(await owner.get(VICTIM, 'token')).toBe('victim-secret-2');
  });
});

describe("creating a tenant's first data key needs a registered master key", () => {
  it('forged proofs, proofs for another tenant and unregistered keys create nothing', async () => {
    const fresh = 'brand-new-tenant';
    const valid = entryOf(owner.tenantKeyBundle(fresh).bytes);
    const attempts: [string, Buffer][] = [
      ['random proof under the registered id', packBundle([{ ...valid, proof: randomBytes(32) }])],
      [
        "another tenant's proof under the registered id",
        packBundle([{ ...valid, proof: entryOf(owner.tenantKeyBundle('other').bytes).proof }]),
      ],
      ['the system proof', packBundle([{ ...valid, proof: entryOf(ownerSystemBundle()).proof }])],
      ['an unregistered master key', otherApp.tenantKeyBundle(fresh).bytes],
      [
        'an unregistered key first, then a forged entry for the registered id',
        packBundle([entryOf(otherApp.tenantKeyBundle(fresh).bytes), { ...valid, proof: randomBytes(32) }]),
      ],
    ];
    await asRole(db.name, app, async (client) => {
      for (const [label, bundle] of attempts) {
        const r = await client.query(`SELECT status FROM tenant_secret_write($1, 'k', '\\x41', $2)`, [
          fresh,
          bundle,
        ]);
        expect.soft(r.rows[0]?.status, label).toBe('unauthorized');
      }
    });
    const keys = await adminQuery(db.name, 'SELECT 1 FROM tenant_secret_keys WHERE tenant_id = $1', [fresh]);
    expect(keys).toHaveLength(0);
    // The genuine bundle does create it, wrapped under the bundle's first (current) master key.
    await asRole(db.name, app, async (client) => {
      const r = await client.query(`SELECT status FROM tenant_secret_write($1, 'k', '\\x41', $2)`, [
        fresh,
        owner.tenantKeyBundle(fresh).bytes,
      ]);
      expect(r.rows[0]?.status).toBe('ok');
    });
    expect(await owner.get(fresh, 'k')).toBe('A');
  });

  it('registering a master key needs the owner or a registered key: an application role without one is refused', async () => {
    const key = createSecretsManager({
      connectionString: roleUrl(db.name, app),
      masterKey: randomBytes(32).toString('base64'),
    });
    try {
      await expect(key.registerMasterKey()).rejects.toMatchObject({ code: 'DATABASE', sqlState: '42501' });
    } finally {
      await key.close();
    }
    await asRole(db.name, app, async (client) => {
      const register = (id: string, bundle: Buffer | null) =>
        client
          .query('SELECT tenant_secret_register_master_key($1, $2, $3) AS s', [id, randomBytes(32), bundle])
          .then((r) => r.rows[0]?.s as string);
      const id = `mk_${randomBytes(8).toString('hex')}`;
      expect(await register(id, null)).toBe('forbidden');
      expect(await register(id, owner.tenantKeyBundle('some-tenant').bytes)).toBe('forbidden'); // a tenant proof is not a key proof
      expect(
        await register(id, packBundle([{ ...entryOf(ownerSystemBundle()), proof: randomBytes(32) }])),
      ).toBe('forbidden');
      // Master key ids are validated wherever they are accepted.
      for (const bad of [
        'mk_0123',
        `mk_${'a'.repeat(100_000)}`,
        'mk_0123456789abcde\n',
        'MK_0123456789ABCDEF',
        'mk_0123456789abcdeg',
      ]) {
        expect(await register(bad, ownerSystemBundle())).toBe('invalid_input');
      }
    });
    const [row] = await adminQuery<{ n: number }>(
      db.name,
      'SELECT count(*)::int AS n FROM tenant_secret_master_keys',
    );
    expect(row?.n).toBe(2); // the owner's and the registered neighbour's
  });

  it('bundles with malformed master key ids or sizes are refused as invalid input and audited without the bundle', async () => {
    const valid = entryOf(owner.tenantKeyBundle(VICTIM).bytes);
    const bad: [string, Buffer][] = [
      ['control characters in the id', packBundle([{ ...valid, id: 'mk_0123456789abc\u001b[m' }])],
      ['upper-case id', packBundle([{ ...valid, id: valid.id.toUpperCase().replace('MK_', 'mk_') }])],
      ['100 KB bundle', Buffer.concat([owner.tenantKeyBundle(VICTIM).bytes, randomBytes(100_000)])],
      ['zero entries', Buffer.from([1, 0])],
      ['17 entries', Buffer.concat([Buffer.from([1, 17]), Buffer.alloc(17 * ENTRY)])],
      [
        'wrong format byte',
        Buffer.concat([Buffer.from([2]), owner.tenantKeyBundle(VICTIM).bytes.subarray(1)]),
      ],
      ['truncated', owner.tenantKeyBundle(VICTIM).bytes.subarray(0, 100)],
    ];
    await asRole(db.name, app, async (client) => {
      for (const [label, bundle] of bad) {
        const r = await client.query('SELECT status, detail FROM tenant_secret_read($1, $2, $3)', [
          VICTIM,
          'token',
          bundle,
        ]);
        expect.soft(`${r.rows[0]?.status}:${r.rows[0]?.detail}`, label).toBe('invalid_input:key_bundle');
      }
      const r = await client.query('SELECT status, detail FROM tenant_secret_read($1, $2, NULL)', [
        VICTIM,
        'token',
      ]);
      expect(r.rows[0]?.status).toBe('invalid_input');
    });
    await owner.sealAudit();
    const records = await adminQuery<{ t: string }>(
      db.name,
      `SELECT row_to_json(a)::text AS t FROM tenant_secret_audit a WHERE a.error_code = 'INVALID_INPUT' AND a.details->>'field' = 'key_bundle'`,
    );
    expect(records.length).toBeGreaterThanOrEqual(bad.length);
    for (const r of records) {
      expect(r.t).not.toContain(valid.kek.toString('hex'));
      expect(r.t).not.toContain('\\u001b');
    }
  });
});
