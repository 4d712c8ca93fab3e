/**
 * The data-plane fixture: a schema with 17 tenants x 16 secrets and 100 secrets of one tenant, the
 * one-statement baselines beside it (a plain table of the same rows and an audit table shaped like
 * the pending partition our operations append to), and the sampler of the unsealed window.
 */
import { randomBytes } from 'node:crypto';
import type pg from 'pg';
import type { SecretsManager } from '../src/index.js';
import { type BenchContext, MAX_CLIENTS } from './context.js';

export interface Baselines {
  /** WITH a AS (INSERT INTO audit ...) SELECT encrypted_value FROM t WHERE pk. */
  auditedRead(tenant: string, key: string): Promise<unknown>;
  /** WITH a AS (INSERT INTO audit ...) INSERT ... ON CONFLICT DO UPDATE. */
  upsertAudited(tenant: string, key: string, action?: string): Promise<unknown>;
}

/**
 * Creates the baseline tables in schema `qs` (quoted) from its tenant_secrets, and returns the two
 * baseline statements. The audit table has the same columns, defaults (the same id sequence) and
 * constraints as the pending partition, and like it no index.
 */
export async function createBaselines(pool: pg.Pool, qs: string): Promise<Baselines> {
  await pool.query(`CREATE TABLE ${qs}.bench_secrets (tenant_id text, key_name text, version integer NOT NULL DEFAULT 1,
                      encrypted_value bytea NOT NULL, PRIMARY KEY (tenant_id, key_name))`);
  await pool.query(
    `INSERT INTO ${qs}.bench_secrets SELECT tenant_id, key_name, current_version, encrypted_value FROM ${qs}.tenant_secrets`,
  );
  await pool.query(
    `CREATE TABLE ${qs}.bench_audit (LIKE ${qs}.tenant_secret_audit_pending INCLUDING DEFAULTS INCLUDING CONSTRAINTS)`,
  );
  const sealedLength = Number(
    (await pool.query(`SELECT max(octet_length(encrypted_value)) AS n FROM ${qs}.tenant_secrets`)).rows[0]?.n,
  );
  const blob = randomBytes(sealedLength);
  const digest = randomBytes(32);
  return {
    auditedRead: (tenant, key) =>
      pool.query(
        `WITH a AS (INSERT INTO ${qs}.bench_audit (chain_id, occurred_at, tenant_id, db_role, actor, action, key_name, version,
                      outcome, error_code, request_id, context, details, digest, sealed_at)
                    VALUES ($1, clock_timestamp(), $1, session_user, 'bench', 'secret.read', $2, 1, 'success', NULL, NULL, NULL,
                            NULL, $3, 'infinity'))
         SELECT encrypted_value FROM ${qs}.bench_secrets WHERE tenant_id = $1 AND key_name = $2`,
        [tenant, key, digest],
      ),
    upsertAudited: (tenant, key, action = 'secret.updated') =>
      pool.query(
        `WITH a AS (INSERT INTO ${qs}.bench_audit (chain_id, occurred_at, tenant_id, db_role, actor, action, key_name, version,
                      outcome, error_code, request_id, context, details, digest, sealed_at)
                    VALUES ($1, clock_timestamp(), $1, session_user, 'bench', $5, $2, NULL, 'success', NULL, NULL, NULL,
                            NULL, $4, 'infinity'))
         INSERT INTO ${qs}.bench_secrets AS s (tenant_id, key_name, encrypted_value) VALUES ($1, $2, $3)
         ON CONFLICT (tenant_id, key_name) DO UPDATE SET encrypted_value = EXCLUDED.encrypted_value, version = s.version + 1`,
        [tenant, key, blob, digest, action],
      ),
  };
}

export interface Fixture extends Baselines {
  schema: string;
  manager: SecretsManager;
  value: string;
  /** 16 tenants, one per client. */
  spread: string[];
  /** 16 key names. */
  keys: string[];
  /** 100 key names of the tenant 'many'. */
  many: string[];
  /** The background sealer's passes (their duration and outcome), to explain the unsealed window. */
  sealPasses: { at: number; ms: number; ok: boolean }[];
  /** Age of the oldest pending record, sampled every 200 ms until `stopSampling`. */
  windowSamples: number[];
  stopSampling(): void;
}

/** Tenants, secrets and baselines in schema `<prefix>_ops`, shared by the data-plane phases. */
export async function createFixture(ctx: BenchContext, schema = `${ctx.prefix}_ops`): Promise<Fixture> {
  const sealPasses: Fixture['sealPasses'] = [];
  const manager = ctx.newManager(schema, {
    logger: (e: { operation: string; outcome: string; durationMs: number }) => {
      if (e.operation === 'sealAudit')
        sealPasses.push({ at: performance.now(), ms: e.durationMs, ok: e.outcome === 'success' });
    },
  });
  await manager.migrate();
  const value = randomBytes(48).toString('base64');
  const spread = Array.from({ length: MAX_CLIENTS }, (_, i) => `t-${String(i).padStart(2, '0')}`);
  const keys = Array.from({ length: MAX_CLIENTS }, (_, i) => `k-${String(i).padStart(2, '0')}`);
  const many = Array.from({ length: 100 }, (_, i) => `m-${String(i).padStart(3, '0')}`);
  await Promise.all(
    [...spread, 'hot'].map(async (tenant) => {
      for (const key of keys) await manager.set(tenant, key, value);
    }),
  );
  for (let i = 0; i < many.length; i += 10) {
    await Promise.all(many.slice(i, i + 10).map((k) => manager.set('many', k, value)));
  }
  const qs = `"${schema}"`;
  const baselines = await createBaselines(ctx.pool, qs);
  await manager.sealAudit();
  const windowSamples: number[] = [];
  const sampler = setInterval(() => {
    ctx.pool
      .query(
        `SELECT COALESCE(EXTRACT(EPOCH FROM clock_timestamp() - min(occurred_at)), 0)::float8 AS age FROM ${qs}.tenant_secret_audit_pending`,
      )
      .then((r) => windowSamples.push(Number(r.rows[0]?.age)))
      .catch(() => undefined);
  }, 200);
  return {
    ...baselines,
    schema,
    manager,
    value,
    spread,
    keys,
    many,
    sealPasses,
    windowSamples,
    stopSampling: () => clearInterval(sampler),
  };
}
