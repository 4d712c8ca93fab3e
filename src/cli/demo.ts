import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type pg from 'pg';
import { createSecretsManager, type SecretsManager } from '../api/manager.js';
import { IntegrityError, UnauthorizedError, UnknownMasterKeyError } from '../base/errors.js';
import { Keyring } from '../crypto/keyring.js';
import { MasterKey } from '../crypto/master-key.js';
import { schemaExecutor } from '../db/executor.js';
import { createOwnedPool } from '../db/pool.js';
import type { PoolLike } from '../db/queryable.js';
import { migrate } from '../schema/migrate.js';
import type { VersionInfo } from '../secrets/operations.js';
import { resolveDataDir, startEmbedded } from './embedded.js';
import { table } from './io.js';
import { createProgress } from './progress.js';
import { addCleanup } from './signals.js';

/** What every demo step can use. */
export interface DemoContext {
  /** Seals audit records only when asked (`sealAudit()`, or verification), so steps can show both states. */
  readonly manager: SecretsManager;
  /** Superuser pool on the throwaway database, for showing (and tampering with) what is stored. */
  readonly pool: PoolLike & pg.Pool;
  readonly tenantA: string;
  readonly tenantB: string;
  /** The throwaway master key of `manager`. */
  readonly masterKey: MasterKey;
  /** Prints an indented line of the step's narration. */
  say(line?: string): void;
}

/** One step of `tenant-secrets demo`. Add a step by appending to DEMO_STEPS. */
export interface DemoStep {
  readonly title: string;
  run(ctx: DemoContext): Promise<void>;
}

const A = 'acme';
const B = 'globex';

/** Shortened hex of a byte string: head…tail (n bytes). */
export function shortHex(bytes: Buffer, keep = 12): string {
  const hex = bytes.toString('hex');
  if (bytes.length <= keep * 2) return `\\x${hex}`;
  return `\\x${hex.slice(0, keep * 2)}…${hex.slice(-8)} (${bytes.length} bytes)`;
}

async function rows<R>(pool: PoolLike, sql: string, params: unknown[] = []): Promise<R[]> {
  return (await pool.query(sql, params)).rows as R[];
}

/** A SQL string literal (for the demo's own constant text). */
const literal = (text: string) => `'${text.replace(/'/g, "''")}'`;

/**
 * What someone with write access to the database and the published formulas can do: rewrite the
 * actor of `chainId`'s record `seq`, then recompute that record's digest, every later record's link
 * and the chain's head, so the chain is consistent again (sql/functions/30_audit_append.sql).
 */
async function rewriteChain(pool: PoolLike, chainId: string, seq: number, actor: string): Promise<void> {
  await pool.query(`DO $demo$
DECLARE
  r record;
  v_prev bytea;
  v_digest bytea;
BEGIN
  SELECT a.hash INTO v_prev FROM tenant_secret_audit a WHERE a.chain_id = ${literal(chainId)} AND a.seq = ${seq - 1};
  FOR r IN SELECT * FROM tenant_secret_audit a WHERE a.chain_id = ${literal(chainId)} AND a.seq >= ${seq} ORDER BY a.seq LOOP
    v_digest := _ts_audit_digest(r.chain_id, r.occurred_at, r.tenant_id, r.db_role,
      CASE WHEN r.seq = ${seq} THEN ${literal(actor)} ELSE r.actor END, r.action, r.key_name, r.version,
      r.outcome, r.error_code, r.request_id, r.context, r.details);
    v_prev := _ts_audit_link(v_prev, r.chain_id, r.seq, v_digest);
    UPDATE tenant_secret_audit a
       SET actor = CASE WHEN r.seq = ${seq} THEN ${literal(actor)} ELSE r.actor END, digest = v_digest, hash = v_prev
     WHERE a.chain_id = r.chain_id AND a.seq = r.seq;
  END LOOP;
  UPDATE tenant_secret_audit_heads h SET hash = v_prev WHERE h.chain_id = ${literal(chainId)};
END
$demo$`);
}

const chainLabel = (chainId: string) => chainId || '(system)';

function printHistory(history: VersionInfo[], say: (line?: string) => void): void {
  for (const line of table(
    ['VERSION', 'ORIGIN', 'STATE', 'MARK'],
    history.map((v) => [
      String(v.version),
      v.origin,
      v.state,
      v.isCurrent ? 'current' : v.isPrevious ? 'previous' : '',
    ]),
  ).split('\n'))
    say(line);
}

export const DEMO_STEPS: DemoStep[] = [
  {
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
  },
  {
    title: 'Read a secret',
    async run({ manager, tenantA, tenantB, say }) {
      say(`get ${tenantA} stripe/api-key   = ${await manager.get(tenantA, 'stripe/api-key')}`);
      say(`get ${tenantB} stripe/api-key = ${await manager.get(tenantB, 'stripe/api-key')}`);
    },
  },
  {
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
  },
  {
    title: 'Tenant isolation',
    async run({ manager, tenantA, tenantB, say }) {
      const leaked = await manager.get(tenantB, 'github/deploy-token');
      if (leaked !== null) throw new Error('demo: tenant isolation failed');
      say(`get ${tenantB} github/deploy-token -> not found (it belongs to ${tenantA})`);
      say(
        `${tenantB}'s key can only ever open ${tenantB}'s rows: tenant id, key name and version are bound into every ciphertext.`,
      );
    },
  },
  {
    title: 'A master key the database does not know acts for no tenant',
    async run({ pool, tenantA, say }) {
      const stranger = createSecretsManager({
        pool,
        keyring: new Keyring(MasterKey.generate()),
        actor: 'stranger',
        auditSealIntervalMs: 0,
      });
      try {
        for (const [label, attempt] of [
          [`get ${tenantA} stripe/api-key`, () => stranger.get(tenantA, 'stripe/api-key')],
          ['set initech db/password', () => stranger.set('initech', 'db/password', 'hunter2')],
        ] as const) {
          try {
            await attempt();
            throw new Error('demo: an unregistered master key was let through');
          } catch (error) {
            if (!(error instanceof UnauthorizedError)) throw error;
            say(`${label} -> ${error.name} [${error.code}]`);
          }
        }
      } finally {
        await stranger.close();
      }
      say(
        "Every function checks the caller's key bundle first: it must unwrap the tenant's data key, or carry",
      );
      say(
        'a proof from a master key registered by migrate. Same answer whether the secret or tenant exists.',
      );
    },
  },
  {
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
  },
  {
    title: 'Tampering is detected',
    async run({ manager, pool, tenantA, say }) {
      const flip = `UPDATE tenant_secrets SET encrypted_value = set_byte(encrypted_value, 20, get_byte(encrypted_value, 20) # 1)
                     WHERE tenant_id = $1 AND key_name = 'stripe/api-key'`;
      await pool.query(flip, [tenantA]);
      say(
        `flipped one bit of ${tenantA} stripe/api-key's ciphertext with SQL (as a database superuser could)`,
      );
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
  },
  {
    title: 'The audit trail: appended, then sealed into hash chains',
    async run({ manager, pool, say }) {
      const count = async (table: string) =>
        Number((await rows<{ n: string }>(pool, `SELECT count(*) AS n FROM ${table}`))[0]?.n ?? 0);
      say(
        `${await count('tenant_secret_audit_pending')} records wait in tenant_secret_audit_pending: each operation appended its record in its own`,
      );
      say(
        'transaction, sharing no lock with other operations, with a SHA-256 digest of its content and no seq.',
      );
      say('Refused attempts are recorded too: the stranger, the tampered read, the missing secret.');
      const sealed = await manager.sealAudit();
      say();
      say(
        `sealAudit() -> ${sealed.sealed} records sealed; ${await count('tenant_secret_audit_pending')} pending`,
      );
      const trail = await rows<{
        partition: string;
        chain_id: string;
        seq: string | null;
        action: string;
        outcome: string;
        key_name: string | null;
        error_code: string | null;
        actor: string;
        hash: Buffer | null;
      }>(
        pool,
        `SELECT tableoid::regclass::text AS partition, chain_id, seq, action, outcome, key_name, error_code, actor, hash
           FROM tenant_secret_audit ORDER BY chain_id, seq NULLS LAST, id`,
      );
      say();
      for (const line of table(
        ['CHAIN', 'SEQ', 'ACTION', 'OUTCOME', 'KEY', 'ACTOR', 'HASH'],
        trail.map((r) => [
          chainLabel(r.chain_id),
          r.seq ?? '-',
          r.action,
          r.outcome + (r.error_code ? ` (${r.error_code})` : ''),
          r.key_name ?? '-',
          r.actor,
          r.hash ? `${r.hash.toString('hex').slice(0, 12)}…` : '(pending)',
        ]),
      ).split('\n'))
        say(line);
      say();
      const waiting = trail.filter((r) => r.seq === null);
      if (waiting.length > 0 && waiting.every((r) => r.action === 'audit.chain_started')) {
        say(
          `(${waiting.length} pending: the audit.chain_started records this pass appended to register new chains; the next pass seals them.)`,
        );
      }
      const partitions = [...new Set(trail.filter((r) => r.seq !== null).map((r) => r.partition))];
      say(`Sealed records live in ${partitions.join(', ')} (one partition per sealing day).`);
      say(
        'One chain per tenant: hash = SHA-256(label | previous hash | chain | seq | digest). Values never appear.',
      );
      say(
        'The library seals about a second after operations; this demo seals when asked, to show both steps.',
      );
    },
  },
  {
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
  },
  {
    title: 'Verify the audit trail',
    async run({ manager, say }) {
      const result = await manager.verifyAudit();
      if (!result.ok) throw new Error('demo: the audit trail failed verification');
      say(
        `verifyAudit() -> ok: ${result.chains} chains, ${result.records} records (${result.sealed} pending sealed first): every digest and link recomputed`,
      );
      const heads = [...result.heads].sort((a, b) => (a.chainId < b.chainId ? -1 : 1));
      for (const head of heads)
        say(`  head ${chainLabel(head.chainId)} seq ${head.seq} ${head.hash.slice(0, 16)}…`);
      say(
        'Each verified head gets a checkpoint signed with a key derived from the master key, which the database never sees.',
      );
    },
  },
  {
    title: 'A tampered audit record is detected',
    async run({ manager, pool, tenantA, say }) {
      const [row] = await rows<{ id: string; actor: string; partition: string }>(
        pool,
        `SELECT id, actor, tableoid::regclass::text AS partition FROM tenant_secret_audit WHERE chain_id = $1 AND seq = 2`,
        [tenantA],
      );
      if (!row) throw new Error('demo: no audit record to tamper with');
      const verifyFails = async (what: string) => {
        const result = await manager.verifyAudit();
        const bad = result.firstBad;
        if (result.ok || !bad) throw new Error(`demo: ${what} was not detected`);
        say(
          `verifyAudit() -> ok: false, first bad record: chain ${chainLabel(bad.chainId)}, seq ${bad.seq}, ${bad.id === null ? '' : `id ${bad.id}, `}${bad.reason}`,
        );
      };
      const verifiesAgain = async () => {
        const result = await manager.verifyAudit();
        if (!result.ok) throw new Error('demo: the restored audit trail does not verify');
        return result.ok;
      };

      await pool.query(
        `UPDATE tenant_secret_audit SET actor = 'innocent-bystander' WHERE chain_id = $1 AND seq = 2`,
        [tenantA],
      );
      say(
        `UPDATE tenant_secret_audit SET actor = 'innocent-bystander' WHERE chain_id = '${tenantA}' AND seq = 2;`,
      );
      say(`  -- a sealed record (id ${row.id}, in ${row.partition}), rewritten by a superuser`);
      await verifyFails('an edited audit record');
      say('The record no longer matches its digest. (`tenant-secrets audit verify` exits 5 and names it.)');
      await pool.query('UPDATE tenant_secret_audit SET actor = $1 WHERE chain_id = $2 AND seq = 2', [
        row.actor,
        tenantA,
      ]);
      say(`put the original actor back: verifyAudit() -> ok: ${await verifiesAgain()}`);

      say();
      await rewriteChain(pool, tenantA, 2, 'innocent-bystander');
      say(
        `Now the same edit, plus a new digest for the record, every later link and ${tenantA}'s chain head,`,
      );
      say('recomputed with SQL from the published formulas: the chain is consistent again, and yet');
      await verifyFails('a rewritten audit chain');
      say(
        'The checkpoint signed at the last verification no longer matches, and only the master key can sign a new one.',
      );
      await rewriteChain(pool, tenantA, 2, row.actor);
      say(`rewrote it back: verifyAudit() -> ok: ${await verifiesAgain()}`);
    },
  },
  {
    title: 'Rotate the master key',
    async run({ manager, pool, masterKey, tenantA, say }) {
      const extra = Array.from({ length: 150 }, (_, i) => `tenant-${String(i).padStart(3, '0')}`);
      for (let i = 0; i < extra.length; i += 25) {
        await Promise.all(extra.slice(i, i + 25).map((t) => manager.set(t, 'db/password', `pw-${t}`)));
      }
      const newKey = MasterKey.generate();
      say(
        `${extra.length} more tenants stored; new master key ${newKey.id}, the old one ${masterKey.id} kept as previous`,
      );
      const rotating = createSecretsManager({
        pool,
        keyring: new Keyring(newKey, [masterKey]),
        actor: 'demo',
        auditSealIntervalMs: 0,
      });
      const onlyNew = createSecretsManager({
        pool,
        keyring: new Keyring(newKey),
        actor: 'demo',
        auditSealIntervalMs: 0,
      });
      try {
        const progressStream = process.stdout.isTTY
          ? process.stdout
          : // not a terminal: plain progress lines, indented like the rest
            ({
              isTTY: false,
              write: (text: string) => {
                say(text.trimEnd());
                return true;
              },
            } as unknown as NodeJS.WritableStream);
        let progress: ReturnType<typeof createProgress> | undefined;
        const result = await rotating.rotateMasterKey({
          batchSize: 10,
          onProgress: async ({ done, total }) => {
            progress ??= createProgress({
              label: '  re-wrapping data keys',
              total,
              stream: progressStream,
              step: 0.25,
            });
            progress.update(done);
            await new Promise((resolve) => setTimeout(resolve, 15)); // slow enough to watch the bar
          },
        });
        progress?.stop();
        say(
          `rotateMasterKey() -> ${result.rewrapped} data keys re-wrapped in ${result.batches} batches; no secret re-encrypted`,
        );
        const status = await rotating.keyStatus();
        say(
          `keyStatus() -> ${Object.entries(status.byMasterKey)
            .map(([id, u]) => `${id}: ${u.keys} keys`)
            .join(', ')}; readyToDropPrevious: ${status.readyToDropPrevious}`,
        );
        say(
          `with only the new key: get ${tenantA} stripe/api-key = ${await onlyNew.get(tenantA, 'stripe/api-key')}`,
        );
        try {
          await manager.get(tenantA, 'stripe/api-key');
          throw new Error('demo: the old key still reads after the rotation');
        } catch (error) {
          if (!(error instanceof UnknownMasterKeyError)) throw error;
          say(`with only the old key: ${error.name} [${error.code}]`);
        }
      } finally {
        await rotating.close();
        await onlyNew.close();
      }
    },
  },
];

/**
 * Runs the guided demo on a throwaway embedded PostgreSQL (a temporary directory, removed at the
 * end) and a throwaway master key. Ignores DATABASE_URL and TENANT_SECRETS_MASTER_KEY.
 */
export async function runDemo(
  write: (line: string) => void,
  steps: readonly DemoStep[] = DEMO_STEPS,
): Promise<void> {
  const t0 = performance.now();
  const base = mkdtempSync(join(tmpdir(), 'tenant-secrets-demo-'));
  chmodSync(base, 0o755);
  try {
    const key = MasterKey.generate();
    write('tenant-secrets demo: a throwaway database and key, removed at the end.');
    write('');
    const { dir } = resolveDataDir(join(base, 'pgdata'));
    const db = await startEmbedded(dir, { persistent: false });
    // Ctrl-C: stop the throwaway server and remove its files before exiting.
    const disposeCleanup = addCleanup(async () => {
      await db.stop();
      rmSync(base, { recursive: true, force: true });
    });
    try {
      write(`  embedded PostgreSQL at ${dir} (not for production)`);
      write(`  initdb ${Math.round(db.initMs)} ms, start ${Math.round(db.startMs)} ms`);
      write(`  master key ${key.id} (its id is a fingerprint; the key itself stays in this process)`);
      const pool = createOwnedPool({ connectionString: db.url, max: 4 });
      try {
        const result = await migrate(schemaExecutor(pool, '"public"'), {
          schema: 'public',
          keyring: new Keyring(key),
        });
        write(`  schema installed: ${result.applied.join(', ')} (version ${result.version})`);
        write(`  master key ${result.registered.join(', ')} registered: it may vouch for new tenants`);
        const manager = createSecretsManager({
          pool,
          keyring: new Keyring(key),
          actor: 'demo',
          auditSealIntervalMs: 0,
        });
        const ctx: DemoContext = {
          manager,
          pool,
          tenantA: A,
          tenantB: B,
          masterKey: key,
          say: (line = '') => write(line === '' ? '' : `  ${line}`),
        };
        try {
          for (const [index, step] of steps.entries()) {
            write('');
            write(`== ${index + 1}. ${step.title}`);
            await step.run(ctx);
          }
        } finally {
          await manager.close();
        }
      } finally {
        await pool.end().catch(() => undefined);
      }
    } finally {
      await db.stop();
      disposeCleanup();
    }
    write('');
    write(`Done in ${((performance.now() - t0) / 1000).toFixed(1)} s. The database and the key are gone.`);
    write(
      'Next: export TENANT_SECRETS_MASTER_KEY="$(tenant-secrets keygen)" and try `tenant-secrets --help`.',
    );
  } finally {
    rmSync(base, { recursive: true, force: true });
  }
}
