import {
  ConfigurationError,
  DatabaseError,
  InvalidInputError,
  PermissionDeniedError,
} from '../base/errors.js';
import type { Keyring } from '../crypto/keyring.js';
import { sqlStateOf } from '../db/driver-errors.js';
import { quietPrelude, type SqlExecutor } from '../db/executor.js';
import { quoteSchema } from '../db/schema-name.js';
import type { InstallerOptions } from './installer.js';
import { isGrantableRole } from './roles.js';
import { LATEST_SCHEMA_VERSION } from './sql-meta.generated.js';

export interface MigrateOptions {
  /** Schema holding tenant-secrets' objects (default `public`). */
  schema: string;
  /**
   * Application roles: EXECUTE on the data-plane functions only (read, write, list, delete, restore,
   * rollback, destroy, metadata, bulk read, sealing, readiness, the two functions of the original
   * interface); no table privileges. Recorded in the database: a later `migrate()` without this
   * option keeps the recorded roles, and every privilege no recorded role should have is revoked.
   */
  grantTo?: readonly string[];
  /**
   * Operator roles: EXECUTE on every public function, i.e. also audit query/verification, key
   * rotation, tenant purge, purge of expired deletions and legacy import. (Pruning the audit trail
   * stays with the owner.) Recorded like `grantTo`.
   */
  grantOperatorTo?: readonly string[];
  /**
   * On a Citus coordinator: distribute the installation by tenant (docs/scaling.md): tenant tables
   * hash-distributed by tenant and co-located, global tables as reference tables, tenant-scoped
   * functions delegated to the worker holding the tenant. Idempotent; an installation already
   * distributed is upgraded as distributed whether or not this is set. Without it, a Citus
   * coordinator gets the local install of any other server.
   */
  distribute?: boolean;
}

export interface MigrateResult {
  /** Names of the table migrations applied by this call (empty when already up to date). */
  applied: string[];
  /** The schema version after the call. */
  version: number;
  /** True when this call (re-)created the functions: an upgrade, or a repair of hand-made changes. */
  functionsInstalled: boolean;
  /**
   * Triggers, rules, policies, column defaults (`name`: the column) and CHECK constraints on
   * tenant-secrets' tables, and foreign keys to them from other tables (`table`: the table carrying
   * it), that it did not create, removed by this call.
   */
  removed: {
    kind: 'trigger' | 'rule' | 'policy' | 'default' | 'check' | 'foreign_key';
    table: string;
    name: string;
  }[];
  /** Master key ids registered by this call (allowed to vouch for new tenants from now on). */
  registered: string[];
  /** Whether the installation is distributed on Citus (after this call). */
  distributed?: boolean;
}

export { LATEST_SCHEMA_VERSION };

/** The installer and the SQL it carries (a large module): loaded only to migrate or export the script. */
const loadInstaller = () => import('./installer.js');

function checkRoles(roles: readonly string[] | undefined, field: string): void {
  if (roles === undefined) return;
  if (!Array.isArray(roles)) throw new InvalidInputError(`${field} must be an array of role names`, field);
  for (const role of roles) {
    if (!isGrantableRole(role)) {
      throw new InvalidInputError(
        `${field}: invalid role name ${JSON.stringify(String(role)).slice(0, 80)} (letters, digits, _ $ -; at most 63; no quotes; not public, none, current_user, session_user, current_role or a pg_ role)`,
        field,
      );
    }
  }
}

/**
 * The installer as one SQL script (for Supabase migrations and other migration tools): idempotent, so
 * it can be applied again and again; `fromVersion` leaves out table migrations the database already
 * has (an incremental script for an upgrade). pgcrypto's schema is found when the script runs
 * (`public`, or Supabase's `extensions`).
 * @throws {InvalidInputError} a role name `migrate()` would refuse.
 */
export async function exportSchemaSql(options: {
  schema: string;
  grantTo?: readonly string[];
  grantOperatorTo?: readonly string[];
  /** Only table migrations newer than this schema version (default 0: all). */
  fromVersion?: number;
  /** Wrap the script in BEGIN/COMMIT (default true; migration tools that run each file in a transaction may not want it). */
  transaction?: boolean;
  /**
   * A role to own the schema and every object (created NOLOGIN when missing, granted to the role
   * applying the script): a non-superuser owner, so that a trigger someone manages to attach to a
   * table could at most act with that role's rights (recommended on Supabase, with a dedicated schema).
   */
  owner?: string;
}): Promise<string> {
  checkRoles(options.grantTo, 'grantTo');
  checkRoles(options.grantOperatorTo, 'grantOperatorTo');
  if (options.owner !== undefined) checkRoles([options.owner], 'owner');
  const from = options.fromVersion ?? 0;
  if (!Number.isInteger(from) || from < 0 || from > LATEST_SCHEMA_VERSION) {
    throw new InvalidInputError(
      `fromVersion must be an integer from 0 to ${LATEST_SCHEMA_VERSION}`,
      'fromVersion',
    );
  }
  const installer: InstallerOptions = {
    schema: options.schema,
    grantTo: options.grantTo,
    grantOperatorTo: options.grantOperatorTo,
    fromVersion: from,
  };
  const ts = quoteSchema(options.schema);
  const tx = options.transaction !== false;
  const owner = options.owner === undefined ? undefined : `"${options.owner}"`;
  const ownerPrologue = owner
    ? [
        `-- The objects are owned by ${owner}, a role that cannot log in and holds no other rights.`,
        `DO $ts_owner$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = ${`'${options.owner}'`}) THEN
    CREATE ROLE ${owner} NOLOGIN;
  END IF;
END
$ts_owner$;`,
        `GRANT ${owner} TO CURRENT_USER;`,
        `CREATE SCHEMA IF NOT EXISTS ${ts} AUTHORIZATION ${owner};`,
        `DO $ts_owner$
BEGIN
  -- pgcrypto lives here on Supabase; the owner calls its functions.
  IF EXISTS (SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = 'extensions') THEN
    EXECUTE 'GRANT USAGE ON SCHEMA extensions TO ${owner.replace(/'/g, "''")}';
  END IF;
END
$ts_owner$;`,
        tx ? `SET LOCAL ROLE ${owner};` : `SET ROLE ${owner};`,
      ]
    : [];
  const { installerStatements } = await loadInstaller();
  return [
    `-- tenant-secrets schema v${LATEST_SCHEMA_VERSION} in ${ts}${from > 0 ? `, upgrading from v${from}` : ''}. Generated by \`tenant-secrets sql\`.`,
    '-- Idempotent: applying it again (or a newer one) is safe. pgcrypto is found where it is installed',
    '-- (e.g. Supabase\'s "extensions" schema). Master keys are registered by `tenant-secrets migrate`',
    '-- (or registerMasterKey()) run with TENANT_SECRETS_MASTER_KEY set: never in this file.',
    tx ? 'BEGIN;' : '',
    ...ownerPrologue,
    ...installerStatements(installer),
    owner ? 'RESET ROLE;' : '',
    tx ? 'COMMIT;' : '',
  ]
    .filter((part) => part !== '')
    .join('\n\n')
    .concat('\n');
}

/**
 * How long one attempt of migrate() may wait for its locks, all of them together, and how long it keeps
 * trying. Each attempt takes every lock it needs up front, in one order (the installer's guard step);
 * the application queues behind it for at most that long, and a busy table only costs another
 * attempt. The first attempt waits 100 ms; each next one twice as long as the one before, up to 800 ms,
 * so that calls of the application that take longer than 100 ms (a loaded server) still let it through.
 * The guard never waits longer than 80% of the server's deadlock_timeout (default 1 s): a call caught
 * in a cycle with the migration is released by the migration's own timeout, before PostgreSQL's
 * deadlock check would roll the call back.
 */
const LOCK_TIMEOUT_MS = 100;
const LOCK_TIMEOUT_MAX_MS = 800;
const lockTimeoutFor = (attempt: number) =>
  Math.min(LOCK_TIMEOUT_MAX_MS, LOCK_TIMEOUT_MS * 2 ** Math.min(attempt - 1, 10));
const RETRY_FOR_MS = 60_000;

/**
 * SQLSTATEs after which a migrate() attempt is tried again: a lock not granted in time, a deadlock or
 * serialization failure, and a concurrent first install (the same schema or table created by another
 * migrator a moment earlier). Each rolls the attempt back entirely.
 */
const RETRY_STATES = new Set(['55P03', '40P01', '40001', '23505', '42P06', '42P07', '42710']);

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Brings the database to this library's schema (the installer, in one transaction; concurrent
 * migrators are safe), then registers the keyring's master keys. Re-running it repairs functions
 * dropped or replaced by hand, removes triggers, rules, policies and defaults it did not create
 * (before it writes anything), and revokes privileges it did not grant. It can run while the
 * application, or a previous release of it, serves traffic: every attempt takes its locks up front
 * with a short lock timeout and is tried again (for up to a minute) when a table is busy.
 * Must run as the role that owns (or will own) the objects.
 * @throws {LegacySchemaError} the schema holds a `tenant_secrets` table tenant-secrets did not create.
 * @throws {SchemaNotReadyError} the database's schema is newer than this library.
 * @throws {InvalidInputError} a role in grantTo / grantOperatorTo is malformed or does not exist.
 * @throws {PermissionDeniedError} (SQLSTATE 42501) the role may not create or alter the objects.
 */
export async function migrate(
  executor: SqlExecutor,
  options: MigrateOptions & { keyring?: Keyring; context?: Record<string, string> },
): Promise<MigrateResult> {
  const ts = quoteSchema(options.schema);
  checkRoles(options.grantTo, 'grantTo');
  checkRoles(options.grantOperatorTo, 'grantOperatorTo');
  const { installerStatements } = await loadInstaller();
  const statements = installerStatements({
    schema: options.schema,
    grantTo: options.grantTo,
    grantOperatorTo: options.grantOperatorTo,
  });
  const attempt = async (attempts: number): Promise<MigrateResult> =>
    executor.transaction(
      'migrate',
      async (query) => {
        await query(`SELECT pg_catalog.set_config('lock_timeout', '${lockTimeoutFor(attempts)}ms', true)`);
        await checkRolesExist(query, options);
        for (const sql of statements) await query(sql);
        const applied = await query<{ name: string }>(
          `SELECT name FROM ${ts}.tenant_secret_migrations WHERE applied_at = pg_catalog.now() ORDER BY id`,
        );
        const state = await query<{
          key: string;
          value: { removed?: MigrateResult['removed'] };
          fresh: boolean;
        }>(
          `SELECT key, value, updated_at = pg_catalog.now() AS fresh FROM ${ts}.tenant_secret_schema_state
          WHERE key IN ('functions', 'last_lockdown')`,
        );
        const registered: string[] = [];
        // Proof keys travel as parameters: keep them out of the server log from here on.
        if (options.keyring) await query(quietPrelude(ts, 0));
        for (const { id, proofKey } of options.keyring?.proofKeys() ?? []) {
          const rows = await query<{ status: string }>(
            `SELECT ${ts}.tenant_secret_register_master_key($1, $2, NULL, $3::text::jsonb) AS status`,
            [id, proofKey, JSON.stringify(options.context ?? {})],
          );
          if (rows[0]?.status === 'ok') registered.push(id);
          if (rows[0]?.status === 'conflict') {
            throw new ConfigurationError(
              `master key ${id} is registered in this database with another proof key`,
            );
          }
        }
        return {
          applied: applied.map((row) => row.name),
          version: LATEST_SCHEMA_VERSION,
          functionsInstalled: state.some((row) => row.key === 'functions' && row.fresh),
          removed: state.find((row) => row.key === 'last_lockdown' && row.fresh)?.value.removed ?? [],
          registered,
        };
      },
      { quiet: false, keepServerMessage: true },
    );
  const started = Date.now();
  for (let tries = 1; ; tries++) {
    try {
      const result: MigrateResult = await attempt(tries);
      if (await distributeIfAsked(executor, options)) result.distributed = true;
      return result;
    } catch (error) {
      const state = sqlStateOf(error);
      if (state === '42501' && error instanceof DatabaseError) {
        throw new PermissionDeniedError({
          operation: 'migrate',
          grant: 'owner',
          role: error instanceof PermissionDeniedError ? error.role : undefined,
          ownerAction:
            'install or upgrade it (run migrate() as that role; an application role checks readiness with ready() instead)',
          cause: error.cause,
        });
      }
      const retry = state !== undefined && RETRY_STATES.has(state) && Date.now() - started < RETRY_FOR_MS;
      if (!retry) throw error;
      // Back off with jitter, so that two migrators, or a migrator and a burst of traffic, drift apart.
      await sleep(Math.min(1000, 20 * 2 ** Math.min(tries, 6)) * (0.5 + Math.random()));
    }
  }
}

/**
 * Distributes the installation (or brings a distributed one up to date) when asked to, or when it
 * already is: its own transaction after the installer's, then every node instantiates the functions
 * for the shard groups it holds. Returns whether the installation is distributed.
 */
async function distributeIfAsked(executor: SqlExecutor, options: MigrateOptions): Promise<boolean> {
  const { DISTRIBUTED_PROBE, distributeStatements, instantiateStatement } = await import('./distribute.js');
  const probe = await executor.plain<{ citus: boolean; tbl: string | null }>(
    'migrate',
    DISTRIBUTED_PROBE(options.schema),
  );
  const citus = probe[0]?.citus === true;
  let distributed = false;
  if (citus && probe[0]?.tbl) {
    const rows = await executor.plain<{ distributed: boolean }>(
      'migrate',
      `SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_dist_partition d WHERE d.logicalrelid = $1::text::pg_catalog.regclass) AS distributed`,
      [probe[0].tbl],
    );
    distributed = rows[0]?.distributed === true;
  }
  if (!options.distribute && !distributed) return false;
  if (!citus) {
    throw new ConfigurationError(
      'migrate({ distribute: true }) needs a Citus coordinator: the Citus extension is not installed in this database (docs/scaling.md)',
    );
  }
  const statements = distributeStatements(options.schema);
  await executor.transaction(
    'migrate',
    async (query) => {
      for (const sql of statements) await query(sql);
    },
    { quiet: false, keepServerMessage: true },
  );
  const nodes = await executor.plain<{ nodeid: number; success: boolean; result: string }>(
    'migrate',
    instantiateStatement(options.schema),
  );
  const failed = nodes.filter((n) => !n.success);
  if (failed.length > 0) {
    throw new ConfigurationError(
      `migrate: the distributed functions could not be prepared on node ${failed.map((n) => n.nodeid).join(', ')} (pg_dist_node.nodeid) (${failed[0]?.result.slice(0, 200)}); run migrate again once every node is up`,
    );
  }
  return true;
}

/**
 * Every role named in grantTo / grantOperatorTo exists, before the installer grants to it: a missing
 * one would otherwise fail deep in the installer's PL/pgSQL with a message about its internals.
 */
async function checkRolesExist(
  query: <R>(sql: string, params?: readonly unknown[]) => Promise<R[]>,
  options: MigrateOptions,
): Promise<void> {
  for (const field of ['grantTo', 'grantOperatorTo'] as const) {
    const roles = options[field];
    if (!roles || roles.length === 0) continue;
    const missing = await query<{ role: string }>(
      `SELECT r AS role FROM pg_catalog.unnest($1::text[]) AS r
        WHERE NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = r)`,
      [roles],
    );
    if (missing.length > 0) {
      const names = missing.map((row) => `"${row.role}"`).join(', ');
      throw new InvalidInputError(
        `${field}: role ${names} does not exist on this server; create ${missing.length > 1 ? 'them' : 'it'} first (CREATE ROLE ... LOGIN), or correct the name`,
        field,
      );
    }
  }
}

/** Schema version recorded in the database (0 when tenant-secrets was never installed there). */
export async function schemaVersion(executor: SqlExecutor, schema: string): Promise<number> {
  const table = await executor.plain<{ exists: boolean }>(
    'status',
    `SELECT pg_catalog.to_regclass($1) IS NOT NULL AS exists`,
    [`${quoteSchema(schema)}.tenant_secret_migrations`],
  );
  if (!table[0]?.exists) return 0;
  try {
    const rows = await executor.plain<{ id: number | null }>(
      'status',
      `SELECT max(id) AS id FROM ${quoteSchema(schema)}.tenant_secret_migrations`,
    );
    return rows[0]?.id ?? 0;
  } catch (error) {
    if (error instanceof DatabaseError && error.sqlState === '42501') {
      // An operator role (migrate({ grantOperatorTo })) reads the version through the health function.
      const viaHealth = await executor
        .plain<{ v: string | null }>(
          'status',
          `SELECT (${quoteSchema(schema)}.tenant_secret_health()->>'schema_version') AS v`,
        )
        .then(
          (rows) => (rows[0]?.v ? Number(rows[0].v) : undefined),
          () => undefined,
        );
      if (viaHealth !== undefined) return viaHealth;
      throw new PermissionDeniedError({
        operation: 'status (an application role checks readiness with ready())',
        grant: 'grantOperatorTo',
        role: error instanceof PermissionDeniedError ? error.role : undefined,
        cause: error.cause,
      });
    }
    throw error;
  }
}
