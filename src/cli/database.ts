import { userInfo } from 'node:os';
import { join } from 'node:path';
import type pg from 'pg';
import { resolveActor, resolveKeyring, resolveSchema } from '../api/config.js';
import { createSecretsManager, type SecretsManager } from '../api/manager.js';
import { sealAudit } from '../api/seal-audit.js';
import type { SealResult } from '../audit/seal.js';
import { ConfigurationError } from '../base/errors.js';
import type { Keyring } from '../crypto/keyring.js';
import { schemaExecutor } from '../db/executor.js';
import { createOwnedPool } from '../db/pool.js';
import type { PoolLike } from '../db/queryable.js';
import { quoteSchema } from '../db/schema-name.js';
import { LATEST_SCHEMA_VERSION, migrate, schemaVersion } from '../schema/migrate.js';
import type { EmbeddedDatabase } from './embedded.js';
import { note } from './io.js';
import { addCleanup } from './signals.js';

/** A database connection for one CLI invocation. */
export interface CliDatabase {
  readonly pool: PoolLike & pg.Pool;
  /** Unquoted schema of tenant-secrets' objects (TENANT_SECRETS_SCHEMA, default `public`). */
  readonly schema: string;
  /** Quoted schema, for SQL text. */
  readonly qs: string;
  /** Set when the local embedded PostgreSQL is in use (`--embedded`). */
  readonly embedded?: EmbeddedDatabase;
}

const env = process.env;

/**
 * Where this invocation's data lives: DATABASE_URL, or the local embedded PostgreSQL when the
 * operator asked for it with `--embedded`. Never the embedded one by default: a command that stored a
 * production secret in a throwaway local database, and said "stored", would lose it silently.
 */
export type DatabaseTarget = { readonly kind: 'url'; readonly url: string } | { readonly kind: 'embedded' };

let embeddedRequested = false;

/** Records whether `--embedded` was given (program.ts, before the command runs). */
export function requestEmbedded(on: boolean): void {
  embeddedRequested = on;
}

/**
 * The database of this invocation.
 * @throws ConfigurationError (exit 6) naming DATABASE_URL and `--embedded` when neither is given.
 */
export function databaseTarget(): DatabaseTarget {
  if (embeddedRequested) return { kind: 'embedded' };
  const url = env.DATABASE_URL;
  if (url) return { kind: 'url', url };
  throw new ConfigurationError(
    `DATABASE_URL is ${url === undefined ? 'not set' : 'empty'}: set it to the PostgreSQL connection string (postgres://user:password@host:5432/database), or pass --embedded to try tenant-secrets on a local embedded PostgreSQL (not for production)`,
  );
}

/** TENANT_SECRETS_SCHEMA, else `public` (the library's resolver). */
export function cliSchema(): string {
  return resolveSchema(undefined, env);
}

/**
 * The keyring from TENANT_SECRETS_MASTER_KEY (+ _PREVIOUS_MASTER_KEYS), by the library's resolver.
 * Errors name the variable, never the value.
 */
export function cliKeyring(): Keyring {
  return resolveKeyring({}, env);
}

/** Audit actor of CLI calls: TENANT_SECRETS_ACTOR, else `cli:<os user>`. */
function cliActor(): string {
  let fallback = 'cli';
  try {
    fallback = `cli:${userInfo().username}`.slice(0, 200);
  } catch {
    // no user name (container without passwd entry): `cli`
  }
  return resolveActor(undefined, env, fallback);
}

/** Default location of the embedded database's files. */
export function defaultDataDir(): string {
  return env.TENANT_SECRETS_DATA_DIR || join(process.cwd(), '.tenant-secrets', 'pgdata');
}

/**
 * Starts (or joins) the embedded PostgreSQL in TENANT_SECRETS_DATA_DIR, announced on stderr and
 * migrated automatically. Loaded only with `--embedded`.
 */
async function openEmbedded(schema: string, migrateFirst: boolean): Promise<EmbeddedDatabase> {
  const [{ startEmbedded }, { resolveDataDir }] = await Promise.all([
    import('./embedded.js'),
    import('./embedded/data-dir.js'),
  ]);
  const { dir, fallbackFrom } = resolveDataDir(defaultDataDir());
  if (fallbackFrom) {
    note(`${fallbackFrom} is not reachable by the postgres user (running as root); using ${dir} instead`);
  }
  note(`using embedded PostgreSQL at ${dir} (--embedded: not for production)`);
  if (env.DATABASE_URL) note('--embedded: DATABASE_URL is ignored');
  // A fresh (or older) embedded database is migrated while no other command uses it: migrate()
  // locks every table, which would deadlock with another command's operation.
  const prepare = migrateFirst
    ? async (embeddedUrl: string) => {
        const setup = createOwnedPool({ connectionString: embeddedUrl, max: 1 });
        const executor = schemaExecutor(setup, quoteSchema(schema));
        try {
          const current = await schemaVersion(executor, schema).catch(() => 0);
          if (current < LATEST_SCHEMA_VERSION) {
            const keyring = env.TENANT_SECRETS_MASTER_KEY ? cliKeyring() : undefined;
            await migrate(executor, { schema, ...(keyring && { keyring }) });
          }
        } finally {
          await setup.end().catch(() => undefined);
        }
      }
    : undefined;
  return startEmbedded(dir, { notify: note, prepare });
}

/**
 * Opens DATABASE_URL, or with `--embedded` the local embedded PostgreSQL (see openEmbedded); with
 * neither, fails (ConfigurationError) before connecting anywhere. Runs `fn`, then closes the pool and
 * leaves the embedded server.
 */
export async function withDatabase<T>(
  fn: (db: CliDatabase) => Promise<T>,
  options: { migrate?: boolean } = {},
): Promise<T> {
  const schema = cliSchema();
  const target = databaseTarget();
  let embedded: EmbeddedDatabase | undefined;
  let url: string;
  if (target.kind === 'url') url = target.url;
  else {
    embedded = await openEmbedded(schema, options.migrate !== false);
    url = embedded.url;
  }
  // Interrupted (Ctrl-C) outside a long operation: leave the embedded server (the last one out stops it).
  const release = embedded?.stop;
  const disposeCleanup = release ? addCleanup(release) : () => false;
  const pool = createOwnedPool({ connectionString: url, max: 4 });
  try {
    const db: CliDatabase = { pool, schema, qs: quoteSchema(schema), embedded };
    return await fn(db);
  } finally {
    await pool.end().catch(() => undefined);
    await release?.();
    disposeCleanup();
  }
}

/**
 * Seals every committed pending audit record with the library's keyless `sealAudit()` (the entry
 * point of a periodic job): batches until none is left, waiting for a sealer already running. Needs no
 * master key: a job that only seals never holds one.
 */
export function sealPending(db: CliDatabase): Promise<SealResult> {
  return sealAudit({ pool: db.pool, schema: db.schema, env: {} });
}

/** A secrets manager on the CLI's database; the master key is checked before any database is touched. */
export async function withManager<T>(
  fn: (manager: SecretsManager, db: CliDatabase) => Promise<T>,
  /** `migrate: false`: do not migrate an embedded database first (import-legacy migrates itself). */
  options: { migrate?: boolean } = {},
): Promise<T> {
  const keyring = cliKeyring();
  return withDatabase(async (db) => {
    const manager = createSecretsManager({ pool: db.pool, keyring, schema: db.schema, actor: cliActor() });
    try {
      // The embedded development database registers whatever key the developer configures.
      if (db.embedded && options.migrate !== false) await manager.keys.register();
      return await fn(manager, db);
    } finally {
      await manager.close();
    }
  }, options);
}
