import { type SealOptions, type SealResult, sealOperations } from '../audit/seal.js';
import { ConfigurationError } from '../base/errors.js';
import { schemaExecutor } from '../db/executor.js';
import { quoteSchema } from '../db/schema-name.js';
import { resolvePool, resolveSchema, type SecretsManagerOptions } from './config.js';

/** Options of {@link sealAudit}: where the database is, and how much to seal. No key. */
export interface SealAuditOptions
  extends Omit<SealOptions, 'context'>,
    Pick<SecretsManagerOptions, 'connectionString' | 'pool' | 'schema' | 'env'> {}

const KNOWN = new Set(['connectionString', 'pool', 'schema', 'env', 'limit', 'wait', 'all']);

/**
 * Seals committed pending audit records into their tenants' hash chains, in bounded batches (smaller
 * after a statement timeout), without a master key: the entry point of a periodic job (cron, a
 * Supabase scheduled function) when only SQL callers write, or for a process that must never hold a
 * key. A manager seals its own records by itself. Works with the application's grants.
 * @throws {ConfigurationError} no database (`connectionString`, `pool` or DATABASE_URL), bad schema.
 * @throws {InvalidInputError} bad `limit`.
 * @throws {DatabaseUnavailableError} the database cannot be reached.
 */
export async function sealAudit(options: SealAuditOptions = {}): Promise<SealResult> {
  if (typeof options !== 'object' || options === null || Array.isArray(options)) {
    throw new ConfigurationError('options must be an object');
  }
  const unknown = Object.keys(options).filter((key) => !KNOWN.has(key));
  if (unknown.length > 0) {
    throw new ConfigurationError(
      `unknown option ${JSON.stringify(unknown[0]?.slice(0, 40))} (known: ${[...KNOWN].join(', ')})`,
    );
  }
  const env = options.env ?? process.env;
  const qs = quoteSchema(resolveSchema(options.schema, env));
  const { pool, ownsPool } = resolvePool(options, env, { max: 1, connectionTimeoutMillis: 10_000 });
  const executor = schemaExecutor(pool, qs);
  try {
    return await sealOperations({
      qs,
      plain: (operation, sql, params = []) => executor.plain(operation, sql, params),
    }).sealAudit({
      limit: options.limit,
      wait: options.wait,
      all: options.all,
    });
  } finally {
    if (ownsPool) await pool.end().catch(() => undefined);
  }
}
