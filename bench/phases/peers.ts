/**
 * Peers side by side (`--peers`): on a PostgreSQL 15 server with Supabase Vault preloaded, started
 * by the bench, the same one-statement baselines as ours, and against them, in the same run:
 *   - Supabase Vault: a read from vault.decrypted_secrets and an update through vault.update_secret,
 *     each with an audit insert in the same statement (Vault has one server-wide key, no tenants, no
 *     versions and no audit of its own);
 *   - a hand-written "naive pgcrypto" implementation: PL/pgSQL functions that decrypt or encrypt
 *     with pgp_sym_decrypt / pgp_sym_encrypt under a passphrase the application sends, and insert an
 *     audit row, as a typical hand-rolled implementation does;
 *   - tenant-secrets get and set on the same server.
 * Vault missing: says so and skips.
 */
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { createSecretsManager, type SecretsManager } from '../../src/index.js';
import type { BenchContext } from '../context.js';
import { figure, fmt, log } from '../figures.js';
import { createFixture } from '../fixture.js';
import { compare } from '../load.js';
import { startVaultServer, vaultMissing } from '../peers/vault-server.js';

export async function peers(ctx: BenchContext): Promise<void> {
  log('\n[peers] Supabase Vault and a hand-written pgcrypto implementation, beside tenant-secrets');
  const missing = vaultMissing();
  if (missing) {
    log(`  SKIPPED: ${missing}`);
    figure('peers: skipped (Supabase Vault not installed)', 0, '', undefined, missing);
    return;
  }
  const server = await startVaultServer();
  const pool = new pg.Pool({ connectionString: server.url, max: 20 });
  pool.on('error', () => undefined);
  const managers: SecretsManager[] = [];
  try {
    const settings = (
      await pool.query(
        `SELECT split_part(version(), ' on ', 1) AS version, current_setting('fsync') AS fsync,
                current_setting('synchronous_commit') AS synchronous_commit, current_setting('shared_buffers') AS shared_buffers`,
      )
    ).rows[0] as Record<string, string>;
    log(
      `  server: ${settings.version} with supabase_vault preloaded, its own port; fsync=${settings.fsync} synchronous_commit=${settings.synchronous_commit} shared_buffers=${settings.shared_buffers}`,
    );
    await pool.query('CREATE EXTENSION IF NOT EXISTS pgcrypto');
    await pool.query('CREATE EXTENSION IF NOT EXISTS supabase_vault CASCADE');
    const peerCtx: BenchContext = {
      ...ctx,
      pool,
      url: server.url,
      external: false,
      newManager: (schema, options = {}) => {
        const m = createSecretsManager({
          pool,
          schema,
          masterKey: ctx.masterKey,
          actor: 'bench',
          ...options,
        });
        managers.push(m);
        return m;
      },
      dropSchema: async () => undefined,
    };
    const f = await createFixture(peerCtx, `${ctx.prefix}_peer`);
    f.stopSampling();
    const qs = `"${f.schema}"`;
    const name = (tenant: string, key: string) => `${tenant}/${key}`;
    // Vault: one secret per (tenant, key), named after both.
    for (const tenant of f.spread) {
      for (const key of ['k-01', 'k-02']) {
        await pool.query('SELECT vault.create_secret($1, $2)', [f.value, name(tenant, key)]);
      }
    }
    const digest = randomBytes(32);
    const audit = (action: string) =>
      `INSERT INTO ${qs}.bench_audit (chain_id, occurred_at, tenant_id, db_role, actor, action, key_name, version,
                   outcome, error_code, request_id, context, details, digest, sealed_at)
       VALUES ($1, clock_timestamp(), $1, session_user, 'bench', '${action}', $2, 1, 'success', NULL, NULL, NULL, NULL, $3, 'infinity')`;
    const vaultRead = (tenant: string, key: string) =>
      pool.query(
        `WITH a AS (${audit('secret.read')})
         SELECT decrypted_secret FROM vault.decrypted_secrets WHERE name = $1 || '/' || $2`,
        [tenant, key, digest],
      );
    const vaultUpdate = (tenant: string, key: string) =>
      pool.query(
        `WITH a AS (${audit('secret.updated')})
         SELECT vault.update_secret((SELECT s.id FROM vault.secrets s WHERE s.name = $1 || '/' || $2), $4)`,
        [tenant, key, digest, f.value],
      );
    // Naive pgcrypto: the passphrase travels with every call, as in a typical hand-rolled implementation.
    const passphrase = randomBytes(24).toString('base64');
    await pool.query(`CREATE TABLE ${qs}.naive_secrets (tenant_id text, key_name text, encrypted_value bytea NOT NULL,
                        updated_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (tenant_id, key_name))`);
    await pool.query(`CREATE FUNCTION ${qs}.naive_get(p_tenant text, p_key text, p_pass text, p_digest bytea) RETURNS text
      LANGUAGE plpgsql AS $$
      DECLARE v text;
      BEGIN
        SELECT pgp_sym_decrypt(s.encrypted_value, p_pass) INTO v FROM ${qs}.naive_secrets s
         WHERE s.tenant_id = p_tenant AND s.key_name = p_key;
        INSERT INTO ${qs}.bench_audit (chain_id, occurred_at, tenant_id, db_role, actor, action, key_name, version,
                    outcome, error_code, request_id, context, details, digest, sealed_at)
        VALUES (p_tenant, clock_timestamp(), p_tenant, session_user, 'bench', 'secret.read', p_key, 1, 'success',
                NULL, NULL, NULL, NULL, p_digest, 'infinity');
        RETURN v;
      END $$`);
    await pool.query(`CREATE FUNCTION ${qs}.naive_set(p_tenant text, p_key text, p_value text, p_pass text, p_digest bytea)
      RETURNS void LANGUAGE plpgsql AS $$
      BEGIN
        INSERT INTO ${qs}.naive_secrets AS s (tenant_id, key_name, encrypted_value)
        VALUES (p_tenant, p_key, pgp_sym_encrypt(p_value, p_pass))
        ON CONFLICT (tenant_id, key_name) DO UPDATE SET encrypted_value = EXCLUDED.encrypted_value, updated_at = now();
        INSERT INTO ${qs}.bench_audit (chain_id, occurred_at, tenant_id, db_role, actor, action, key_name, version,
                    outcome, error_code, request_id, context, details, digest, sealed_at)
        VALUES (p_tenant, clock_timestamp(), p_tenant, session_user, 'bench', 'secret.updated', p_key, NULL, 'success',
                NULL, NULL, NULL, NULL, p_digest, 'infinity');
      END $$`);
    const naiveGet = (tenant: string, key: string) =>
      pool.query(`SELECT ${qs}.naive_get($1, $2, $3, $4)`, [tenant, key, passphrase, digest]);
    const naiveSet = (tenant: string, key: string) =>
      pool.query(`SELECT ${qs}.naive_set($1, $2, $3, $4, $5)`, [tenant, key, f.value, passphrase, digest]);
    for (const tenant of f.spread) for (const key of ['k-01', 'k-02']) await naiveSet(tenant, key);

    const t = (w: number) => f.spread[w] as string;
    for (const clients of [4, 16]) {
      const reads = [
        { label: 'Supabase Vault read + audit insert', op: (w: number) => vaultRead(t(w), 'k-01') },
        { label: 'naive pgcrypto read + audit insert', op: (w: number) => naiveGet(t(w), 'k-01') },
        { label: 'tenant-secrets get', op: (w: number) => f.manager.get(t(w), 'k-01') },
      ];
      for (const r of reads) {
        const c = await compare(
          `${r.label} @${clients}`,
          clients,
          { name: r.label, op: r.op },
          {
            name: 'audited read (1 statement)',
            op: (w) => f.auditedRead(t(w), 'k-01'),
          },
        );
        figure(
          `peers: ${r.label} / audited read, ${clients} clients`,
          c.ratio,
          'x',
          undefined,
          `${fmt(c.a.perSecond)} vs ${fmt(c.b.perSecond)} /s; ${settings.version}`,
        );
      }
      const writes = [
        {
          label: 'Supabase Vault update_secret + audit insert',
          op: (w: number) => vaultUpdate(t(w), 'k-02'),
        },
        { label: 'naive pgcrypto write + audit insert', op: (w: number) => naiveSet(t(w), 'k-02') },
        { label: 'tenant-secrets set', op: (w: number) => f.manager.set(t(w), 'k-02', f.value) },
      ];
      for (const r of writes) {
        const c = await compare(
          `${r.label} @${clients}`,
          clients,
          { name: r.label, op: r.op },
          {
            name: 'upsert + audit (1 statement)',
            op: (w) => f.upsertAudited(t(w), 'k-02'),
          },
        );
        figure(
          `peers: ${r.label} / upsert + audit, ${clients} clients`,
          c.ratio,
          'x',
          undefined,
          `${fmt(c.a.perSecond)} vs ${fmt(c.b.perSecond)} /s; ${settings.version}`,
        );
      }
    }
  } finally {
    for (const m of managers) await m.close().catch(() => undefined);
    await pool.end().catch(() => undefined);
    await server.stop();
  }
}
