import { DatabaseError, SchemaNotReadyError } from '../base/errors.js';
import { MASTER_KEY_ID_PATTERN } from '../crypto/master-key.js';
import { type SqlExecutor, schemaExecutor } from '../db/executor.js';
import type { PoolLike } from '../db/queryable.js';
import { quoteSchema } from '../db/schema-name.js';
import { LATEST_SCHEMA_VERSION, schemaVersion } from './migrate.js';
import { FUNCTIONS_DIGEST } from './sql-meta.generated.js';

/** One thing `status()` found wrong or worth knowing. `error`s make the CLI's `status` exit non-zero. */
export interface StatusProblem {
  severity: 'error' | 'warning';
  /** Stable identifier: `schema_outdated`, `function_drift`, `foreign_object`, `unexpected_privilege`, ... */
  code: string;
  message: string;
}

/** What `status()` reports: metadata and counts only, never a value or key. */
export interface DatabaseStatus {
  schema: string;
  /** Schema version installed in the database (0: tenant-secrets is not installed). */
  schemaVersion: number;
  /** The schema version this library expects. */
  libraryVersion: number;
  /** Data keys per master key fingerprint id (tenant_secret_keys), by id. */
  masterKeysInUse: { id: string; dataKeys: number }[];
  /** Master key ids registered to vouch for new tenants. */
  registeredMasterKeys: string[];
  counts: { tenants: number; secrets: number; deletedSecrets: number };
  logging: {
    logStatement: string;
    logMinDurationStatement: string;
    logParameterMaxLength: string;
    logParameterMaxLengthOnError: string;
    /** Whether the library's calls keep bind parameters out of non-error statement logs (the owner may set it). */
    suppressedOnSuccess: boolean;
    /** Whether the server may log the library's bind parameters (tenant KEKs, values) on success. */
    mayLogParameters: boolean;
    /**
     * auto_explain, when it is loaded and active: it logs plans with bind parameters (and values of
     * function variables, for nested statements). `suppressed`: the library's calls switch it off per
     * transaction (the schema owner may set it).
     */
    autoExplain: { logMinDuration: string; suppressed: boolean } | null;
    /** pgaudit's `log_parameter` when pgaudit is loaded: `on` logs every parameter, the library's included. */
    pgauditLogParameter: string | null;
  };
  /** Functions that differ from what `migrate()` installed, and whether this library's are newer. */
  drift: { missing: string[]; changed: string[]; unexpected: string[]; outdated: boolean };
  /** Triggers, rules and policies on tenant-secrets' tables, and foreign keys to them, that it did not create. */
  foreignObjects: { kind: string; table: string; name: string }[];
  /** Privileges on tenant-secrets' objects that `migrate()` did not grant. */
  unexpectedPrivileges: { object: string; grantee: string; privilege: string }[];
  /** Privileges the configured application and operator roles should hold but do not (revoked by hand). */
  missingPrivileges: { object: string; grantee: string; privilege: string }[];
  /** Tables without row-level security or the TRUNCATE guard. */
  unprotectedTables: string[];
  /** Roles `migrate()` grants to. */
  grants: { app: string[]; operator: string[] };
  /** The audit sealer, by the database's clock: its health, and what waits (the unsealed window). */
  sealer: SealerStatus;
  /** The audit id sequence was moved towards its end by hand (migrate() puts it back). */
  auditSequenceMoved: boolean;
  /** Signed audit anchors: how many, the newest counter and when it was made. */
  anchors: { count: number; newest: number | null; newestAt: Date | null };
  /** Active data keys of earlier releases not yet given an access digest (the library does at first use). */
  keysWithoutAccessDigest: number;
  problems: StatusProblem[];
}

/** The audit sealer's state; times and ages by the database's clock. */
export interface SealerStatus {
  lastSealedAt: Date | null;
  /** When a sealing pass last ran, successful or not. */
  lastAttemptAt: Date | null;
  /** The error code of the last pass when it failed (null after a success). */
  lastError: string | null;
  /** Passes that failed in a row. */
  consecutiveFailures: number;
  /** The batch size sealing last used (it shrinks after statement timeouts). */
  batchLimit: number | null;
  /** Whether a sealer holds the sealer's lock right now. */
  lockHeld: boolean;
  pending: number;
  oldestPending: Date | null;
  /** Age of the oldest pending record, in seconds. */
  oldestPendingAgeSeconds: number;
  /** Seconds since the last successful pass (null: never). */
  sinceLastSealSeconds: number | null;
  /**
   * When a sealing pass last gave up waiting for the sealer's lock (held by another session) since
   * the last pass that ran; null when none did. Set: the sealer is stalled now.
   */
  blockedAt: Date | null;
}

interface HealthJson {
  functions: { source: string | null; missing: string[]; changed: string[]; unexpected: string[] };
  foreign_objects: { kind: string; table: string; name: string }[];
  unexpected_privileges: { object: string; grantee: string; privilege: string }[];
  missing_privileges?: { object: string; grantee: string; privilege: string }[];
  unprotected_tables: string[];
  grants: { app: string[]; operator: string[] };
  logging: Record<string, { value: string; session: string }>;
  quiet_success_path: boolean;
  auto_explain: { log_min_duration: string; suppressed: boolean } | null;
  pgaudit_log_parameter: string | null;
  registered_master_keys: string[];
  owner: string;
  sealer: {
    lock_held: boolean;
    last_sealed_at: string | null;
    last_attempt_at: string | null;
    last_error: string | null;
    consecutive_failures: number;
    batch_limit: number | null;
    pending: number;
    oldest_pending: string | null;
    oldest_pending_age_seconds: number | null;
    since_last_seal_seconds: number | null;
    blocked_at?: string | null;
  };
  audit_sequence_moved: boolean;
  keys_without_access_digest: number;
  anchors: { count: number; newest: number | null; newest_at: string | null };
}

/** Seconds of unsealed audit records above which `status` warns (no sealer failing or blocked). */
const SEALER_WARN_SECONDS = 60;
/** Seconds the sealer's lock may be held with records waiting before `status` calls it stalled. */
const SEALER_STALLED_SECONDS = 10;

/** The exact remedy when the schema owner cannot keep bind parameters out of the statement log. */
export function parameterLoggingRemedy(owner: string, roles: readonly string[]): string {
  const quote = (name: string) => `"${name.replace(/"/g, '""')}"`;
  const who = [...new Set(roles)].filter((r) => r !== '').map(quote);
  return `as a superuser, either GRANT SET ON PARAMETER log_parameter_max_length TO ${quote(owner)} (PostgreSQL 15+: then every call keeps its parameters out of the log), or ${
    who.length > 0
      ? who.map((r) => `ALTER ROLE ${r} SET log_parameter_max_length = 0`).join('; ')
      : 'ALTER ROLE <each role using tenant-secrets> SET log_parameter_max_length = 0'
  }; where neither is possible (a managed service without superuser, e.g. Supabase), keep statement logging with parameters off (log_statement = 'none' or 'ddl', log_min_duration_statement = -1) for these roles`;
}

/**
 * Schema version, drift, hostile objects and privileges, logging settings, sealer backlog, master-key
 * ids in use and counts. Needs no master key (operators run it before configuring one) but the
 * operator grants (or the owner): an application role checks readiness with `ready()` instead.
 * @throws {DatabaseUnavailableError} the database cannot be reached.
 * @throws {DatabaseError} SQLSTATE 42501 for a role without operator grants.
 */
export async function statusOn(executor: SqlExecutor, schema: string): Promise<DatabaseStatus> {
  const qs = quoteSchema(schema);
  const version = await schemaVersion(executor, schema);
  const settings = await executor.plain<{ name: string; reset_val: string }>(
    'status',
    `SELECT name, reset_val FROM pg_catalog.pg_settings
      WHERE name IN ('log_statement', 'log_min_duration_statement', 'log_parameter_max_length', 'log_parameter_max_length_on_error')`,
  );
  const setting = (name: string, fallback: string) =>
    settings.find((s) => s.name === name)?.reset_val ?? fallback;
  const problems: StatusProblem[] = [];
  const base: DatabaseStatus = {
    schema,
    schemaVersion: version,
    libraryVersion: LATEST_SCHEMA_VERSION,
    masterKeysInUse: [],
    registeredMasterKeys: [],
    counts: { tenants: 0, secrets: 0, deletedSecrets: 0 },
    logging: {
      logStatement: setting('log_statement', 'none'),
      logMinDurationStatement: setting('log_min_duration_statement', '-1'),
      logParameterMaxLength: setting('log_parameter_max_length', '-1'),
      logParameterMaxLengthOnError: setting('log_parameter_max_length_on_error', '0'),
      suppressedOnSuccess: false,
      mayLogParameters: false,
      autoExplain: null,
      pgauditLogParameter: null,
    },
    drift: { missing: [], changed: [], unexpected: [], outdated: false },
    foreignObjects: [],
    unexpectedPrivileges: [],
    missingPrivileges: [],
    unprotectedTables: [],
    grants: { app: [], operator: [] },
    sealer: {
      lastSealedAt: null,
      lastAttemptAt: null,
      lastError: null,
      consecutiveFailures: 0,
      batchLimit: null,
      lockHeld: false,
      pending: 0,
      oldestPending: null,
      oldestPendingAgeSeconds: 0,
      sinceLastSealSeconds: null,
      blockedAt: null,
    },
    auditSequenceMoved: false,
    anchors: { count: 0, newest: null, newestAt: null },
    keysWithoutAccessDigest: 0,
    problems,
  };
  const logsStatements =
    base.logging.logStatement === 'all' || Number(base.logging.logMinDurationStatement) >= 0;
  // Every operation, reads included, writes its audit record: a read-only session can do nothing.
  const [access] = await executor.plain<{ read_only: boolean; standby: boolean }>(
    'status',
    `SELECT pg_catalog.current_setting('transaction_read_only') = 'on' AS read_only, pg_catalog.pg_is_in_recovery() AS standby`,
  );
  if (access?.read_only) {
    problems.push({
      severity: 'error',
      code: 'read_only',
      message: access.standby
        ? 'this server is a hot standby (read-only): every operation, reads included, writes its audit record, so tenant-secrets needs the primary'
        : 'sessions of this role in this database are read-only (default_transaction_read_only): every operation, reads included, writes its audit record; connect as a role with write access',
    });
  }
  if (version === 0) {
    base.logging.mayLogParameters = logsStatements && base.logging.logParameterMaxLength !== '0';
    problems.push({
      severity: 'error',
      code: 'not_installed',
      message: 'tenant-secrets is not installed in this database: run `tenant-secrets migrate`',
    });
    return base;
  }
  if (version < LATEST_SCHEMA_VERSION) {
    problems.push({
      severity: 'warning',
      code: 'schema_outdated',
      message: `schema version ${version} is older than this library's (${LATEST_SCHEMA_VERSION}): run \`tenant-secrets migrate\``,
    });
    return base;
  }
  const health = (
    await executor.plain<{ h: HealthJson }>('status', `SELECT ${qs}.tenant_secret_health() AS h`)
  )[0]?.h;
  if (!health) throw new SchemaNotReadyError('status: the health function returned nothing; run migrate()');
  base.drift = {
    missing: health.functions.missing,
    changed: health.functions.changed,
    unexpected: health.functions.unexpected,
    outdated: health.functions.source !== FUNCTIONS_DIGEST,
  };
  base.foreignObjects = health.foreign_objects;
  base.unexpectedPrivileges = health.unexpected_privileges;
  base.missingPrivileges = health.missing_privileges ?? [];
  base.unprotectedTables = health.unprotected_tables;
  base.grants = health.grants;
  base.registeredMasterKeys = health.registered_master_keys;
  const sealer = health.sealer;
  const date = (value: string | null) => (value ? new Date(value) : null);
  base.sealer = {
    lastSealedAt: date(sealer.last_sealed_at),
    lastAttemptAt: date(sealer.last_attempt_at),
    lastError: sealer.last_error,
    consecutiveFailures: Number(sealer.consecutive_failures ?? 0),
    batchLimit: sealer.batch_limit === null ? null : Number(sealer.batch_limit),
    lockHeld: sealer.lock_held === true,
    pending: Number(sealer.pending),
    oldestPending: date(sealer.oldest_pending),
    oldestPendingAgeSeconds: Number(sealer.oldest_pending_age_seconds ?? 0),
    sinceLastSealSeconds:
      sealer.since_last_seal_seconds === null ? null : Number(sealer.since_last_seal_seconds),
    blockedAt: date(sealer.blocked_at ?? null),
  };
  base.auditSequenceMoved = health.audit_sequence_moved === true;
  base.keysWithoutAccessDigest = Number(health.keys_without_access_digest ?? 0);
  base.anchors = {
    count: Number(health.anchors?.count ?? 0),
    newest:
      health.anchors?.newest === null || health.anchors?.newest === undefined
        ? null
        : Number(health.anchors.newest),
    newestAt: date(health.anchors?.newest_at ?? null),
  };
  base.logging.suppressedOnSuccess = health.quiet_success_path;
  base.logging.autoExplain = health.auto_explain
    ? { logMinDuration: health.auto_explain.log_min_duration, suppressed: health.auto_explain.suppressed }
    : null;
  base.logging.pgauditLogParameter = health.pgaudit_log_parameter ?? null;
  base.logging.mayLogParameters =
    logsStatements && base.logging.logParameterMaxLength !== '0' && !health.quiet_success_path;

  const keys = await executor.plain<{ id: string; n: string }>(
    'status',
    `SELECT m.key AS id, (m.value->>'keys') AS n FROM pg_catalog.jsonb_each(${qs}.tenant_secret_key_status()->'by_master_key') m ORDER BY 1`,
  );
  // Ids come from table rows: a malformed one (written by hand) is reported, never printed as is.
  base.masterKeysInUse = keys.map((k) => ({
    id: MASTER_KEY_ID_PATTERN.test(k.id) ? k.id : 'invalid',
    dataKeys: Number(k.n),
  }));
  if (base.masterKeysInUse.some((k) => k.id === 'invalid')) {
    problems.push({
      severity: 'error',
      code: 'invalid_master_key_id',
      message:
        'tenant_secret_keys holds data keys under a malformed master key id (changed by hand): they cannot be unwrapped',
    });
  }
  const [c] = await executor.plain<{ status: { tenants: number; secrets: number; deleted_secrets: number } }>(
    'status',
    `SELECT ${qs}.tenant_secret_key_status() AS status`,
  );
  const deleted = Number(c?.status.deleted_secrets ?? 0);
  base.counts = {
    tenants: Number(c?.status.tenants ?? 0),
    secrets: Number(c?.status.secrets ?? 0) - deleted,
    deletedSecrets: deleted,
  };

  const d = base.drift;
  if (d.missing.length + d.changed.length + d.unexpected.length > 0) {
    problems.push({
      severity: 'error',
      code: 'function_drift',
      message: `functions differ from what migrate() installed (missing: ${d.missing.join(', ') || 'none'}; changed: ${d.changed.join(', ') || 'none'}; unexpected: ${d.unexpected.join(', ') || 'none'}): run migrate() to restore them`,
    });
  } else if (d.outdated) {
    problems.push({
      severity: 'error',
      code: 'functions_outdated',
      message: 'the installed functions are from another release of tenant-secrets: run migrate()',
    });
  }
  for (const o of base.foreignObjects) {
    problems.push({
      severity: 'error',
      code: 'foreign_object',
      message:
        o.kind === 'foreign_key'
          ? `foreign key ${JSON.stringify(o.name)} on ${o.table} references tenant-secrets' tables (its checks tell whether a secret exists, and can block deletions): run migrate() to remove it`
          : `${o.kind} ${JSON.stringify(o.name)} on ${o.table} was not created by tenant-secrets (its code would run with the rights of whoever writes the table): run migrate() to remove it`,
    });
  }
  for (const p of base.unexpectedPrivileges) {
    problems.push({
      severity: 'error',
      code: 'unexpected_privilege',
      message: `${p.grantee} holds ${p.privilege} on ${p.object}, which migrate() did not grant: run migrate() to revoke it`,
    });
  }
  for (const p of base.missingPrivileges) {
    problems.push({
      severity: 'error',
      code: 'missing_privilege',
      message: `${p.grantee} lacks ${p.privilege} on ${p.object}, which the configuration grants it: run migrate() to grant it again`,
    });
  }
  for (const t of base.unprotectedTables) {
    problems.push({
      severity: 'error',
      code: 'unprotected_table',
      message: `${t} lacks row-level security or the TRUNCATE guard: run migrate()`,
    });
  }
  if (base.logging.mayLogParameters) {
    problems.push({
      severity: 'warning',
      code: 'parameters_logged',
      message: `the server logs statements (log_statement=${base.logging.logStatement}, log_min_duration_statement=${base.logging.logMinDurationStatement}) with their bind parameters (log_parameter_max_length=${base.logging.logParameterMaxLength}), and the schema owner ${health.owner} may not suppress them per call: written values and data keys would reach the log. Remedy: ${parameterLoggingRemedy(health.owner, [...base.grants.app, ...base.grants.operator])}`,
    });
  }
  if (base.logging.logParameterMaxLengthOnError !== '0') {
    problems.push({
      severity: 'warning',
      code: 'parameters_logged_on_error',
      message: `log_parameter_max_length_on_error=${base.logging.logParameterMaxLengthOnError}: the library's calls suppress it per transaction, but SQL-side callers (RPC) would have their parameters logged when a call fails`,
    });
  }
  if (base.logging.autoExplain && !base.logging.autoExplain.suppressed) {
    problems.push({
      severity: 'warning',
      code: 'plans_logged',
      message: `auto_explain is active (auto_explain.log_min_duration=${base.logging.autoExplain.logMinDuration}) and the schema owner may not switch it off per call: it logs bind parameters (tenant KEKs, values) and the values of function variables; grant the owner SET on auto_explain.log_min_duration (PostgreSQL 15+, as a superuser) or do not load auto_explain for the roles using tenant-secrets`,
    });
  }
  if (base.logging.pgauditLogParameter === 'on') {
    problems.push({
      severity: 'warning',
      code: 'pgaudit_logs_parameters',
      message:
        "pgaudit.log_parameter=on: pgaudit logs every statement's parameters, tenant KEKs and values included; turn it off for the roles using tenant-secrets (ALTER ROLE ... SET pgaudit.log_parameter = off)",
    });
  }
  // Ages by the database's clock: an application server whose clock is off changes nothing here.
  const s = base.sealer;
  const age = s.oldestPendingAgeSeconds;
  if (s.consecutiveFailures > 0) {
    problems.push({
      severity: 'error',
      code: 'sealer_failing',
      message: `the audit sealer failed ${s.consecutiveFailures} time(s) in a row (last error ${s.lastError ?? 'unknown'}${s.lastAttemptAt ? ` at ${s.lastAttemptAt.toISOString()}` : ''}); ${s.pending} record(s) wait, the oldest for ${Math.round(age)} s. A statement timeout shrinks its batches by itself (now ${s.batchLimit ?? '?'}); otherwise see the sealer runbook`,
    });
  }
  if (
    s.lockHeld &&
    (s.blockedAt !== null ||
      (s.pending > 0 && (s.sinceLastSealSeconds === null || s.sinceLastSealSeconds > SEALER_STALLED_SECONDS)))
  ) {
    problems.push({
      severity: 'error',
      code: 'sealer_stalled',
      message: `a session holds the audit sealer's lock${s.blockedAt ? ` (a sealing pass gave up waiting for it at ${s.blockedAt.toISOString()})` : ''} and nothing was sealed for ${s.sinceLastSealSeconds === null ? 'ever' : `${Math.round(s.sinceLastSealSeconds)} s`}; ${s.pending} record(s) wait, the oldest for ${Math.round(age)} s. Find the session (pg_stat_activity, a long transaction) and end it`,
    });
  }
  if (age > SEALER_WARN_SECONDS && s.consecutiveFailures === 0 && !s.lockHeld) {
    problems.push({
      severity: 'warning',
      code: 'audit_unsealed',
      message: `${s.pending} audit record(s) have waited ${Math.round(age)} s to be sealed: run sealAudit() (\`tenant-secrets audit seal\`) periodically when no application process runs`,
    });
  }
  if (base.auditSequenceMoved) {
    problems.push({
      severity: 'error',
      code: 'audit_sequence_moved',
      message:
        'the audit id sequence was moved towards its end by hand (a role held UPDATE on it): operations go on (it cycles), and migrate() puts it back and revokes the grant',
    });
  }
  return base;
}

/** What `ready()` reports to an application role. */
export interface ReadyStatus {
  schemaVersion: number;
  libraryVersion: number;
  /** The configured master key ids that are registered (the current one must be, to create tenants). */
  registeredMasterKeyIds: string[];
  /** Whether the success-path suppression of bind parameters works for this installation. */
  suppressedOnSuccess: boolean;
  /** Functions that differ from what migrate() installed (empty when ready). */
  drift: { missing: string[]; changed: string[]; unexpected: string[] };
  /** What is worth fixing although the application can run (e.g. parameters that may reach the log). */
  problems: StatusProblem[];
}

/**
 * Readiness for an application role (works with `migrate({ grantTo })`'s grants): the schema is
 * installed at this library's version, its functions are the released ones, and the current master
 * key is registered.
 * @throws {SchemaNotReadyError} any of those is not the case (the message says what to run).
 */
export async function readiness(
  executor: SqlExecutor,
  schema: string,
  masterKeyIds: readonly string[],
): Promise<ReadyStatus> {
  const qs = quoteSchema(schema);
  let raw:
    | {
        schema_version: number;
        functions: HealthJson['functions'];
        registered: string[];
        quiet_success_path: boolean;
        owner: string;
        caller: string;
        logging: Record<string, string>;
      }
    | undefined;
  try {
    raw = (
      await executor.plain<{ r: NonNullable<typeof raw> }>(
        'ready',
        `SELECT ${qs}.tenant_secret_ready($1::text[]) AS r`,
        [[...masterKeyIds]],
      )
    )[0]?.r;
  } catch (error) {
    if (
      error instanceof SchemaNotReadyError ||
      (error instanceof DatabaseError && error.sqlState === '42501')
    ) {
      throw new SchemaNotReadyError(
        'tenant-secrets is not installed for this role (missing schema, or no grant): the schema owner runs migrate({ grantTo: [<this role>] }) or `tenant-secrets migrate --grant-to <role>`',
        { cause: error },
      );
    }
    throw error;
  }
  if (!raw) throw new SchemaNotReadyError('ready: the database returned nothing; run migrate()');
  const status: ReadyStatus = {
    schemaVersion: raw.schema_version,
    libraryVersion: LATEST_SCHEMA_VERSION,
    registeredMasterKeyIds: raw.registered,
    suppressedOnSuccess: raw.quiet_success_path,
    drift: {
      missing: raw.functions.missing,
      changed: raw.functions.changed,
      unexpected: raw.functions.unexpected,
    },
    problems: [],
  };
  const logging = raw.logging ?? {};
  const logsStatements =
    logging.log_statement === 'all' || Number(logging.log_min_duration_statement ?? -1) >= 0;
  if (logsStatements && logging.log_parameter_max_length !== '0' && !raw.quiet_success_path) {
    status.problems.push({
      severity: 'warning',
      code: 'parameters_logged',
      message: `the server logs this role's statements with their bind parameters (log_statement=${logging.log_statement}, log_min_duration_statement=${logging.log_min_duration_statement}, log_parameter_max_length=${logging.log_parameter_max_length}) and the schema owner ${raw.owner} may not suppress them per call: written values and data keys would reach the log. Remedy: ${parameterLoggingRemedy(raw.owner, [raw.caller])}`,
    });
  }
  if (status.schemaVersion < LATEST_SCHEMA_VERSION || raw.functions.source !== FUNCTIONS_DIGEST) {
    throw new SchemaNotReadyError(
      `the database has tenant-secrets schema ${status.schemaVersion} with functions from another release; the owner runs migrate() with this release`,
    );
  }
  const drift = status.drift;
  if (drift.missing.length + drift.changed.length + drift.unexpected.length > 0) {
    throw new SchemaNotReadyError(
      'tenant-secrets functions were changed by hand in this database; the owner runs migrate() to restore them',
    );
  }
  if (masterKeyIds[0] !== undefined && !status.registeredMasterKeyIds.includes(masterKeyIds[0])) {
    throw new SchemaNotReadyError(
      `the current master key ${masterKeyIds[0]} is not registered in this database, so new tenants cannot be created: the owner runs migrate() (or \`tenant-secrets migrate\`) with it configured, or registerMasterKey()`,
    );
  }
  return status;
}

/**
 * {@link DatabaseStatus} of a database, without a master key (operators run it before configuring
 * one). Needs the owner or operator grants.
 * @throws {DatabaseUnavailableError} the database cannot be reached.
 */
export function databaseStatus(pool: PoolLike, schema = 'public'): Promise<DatabaseStatus> {
  return statusOn(schemaExecutor(pool, quoteSchema(schema)), schema);
}
