import type { Command } from 'commander';
import { toTenantSecretsError } from '../../db/errors.js';
import { LATEST_SCHEMA_VERSION, schemaVersion } from '../../db/migrate.js';
import { type CliDatabase, cliKeyring, withDatabase } from '../database.js';
import { note, out, printJson, warn } from '../io.js';
import { examples } from '../program.js';

export interface StatusReport {
  database: { embedded: boolean; dataDir: string | null };
  schema: string;
  schemaVersion: number;
  libraryVersion: number;
  masterKeys: {
    /** Fingerprint ids from TENANT_SECRETS_MASTER_KEY (+ previous keys), current first; empty when unset. */
    configured: string[];
    /** Data keys per master key id, from tenant_secret_keys. */
    inUse: { id: string; dataKeys: number; configured: boolean }[];
  };
  counts: { tenants: number; secrets: number; deletedSecrets: number };
  logging: {
    logStatement: string;
    logMinDurationStatement: string;
    logParameterMaxLength: string;
    /** Whether this connection suppresses bind parameters in the server log (the library tries to). */
    sessionSuppressesParameters: boolean;
    /** Whether statements of other connections may be logged with their bind parameters (tenant KEKs, values). */
    mayLogParameters: boolean;
  };
}

async function collect(db: CliDatabase, configured: string[]): Promise<StatusReport> {
  const q = async <R>(sql: string): Promise<R[]> => {
    try {
      return (await db.pool.query(sql)).rows as R[];
    } catch (error) {
      throw toTenantSecretsError(error, 'status');
    }
  };
  let version: number;
  try {
    version = await schemaVersion(db.pool, db.schema);
  } catch (error) {
    throw toTenantSecretsError(error, 'status');
  }
  const settings = await q<{ name: string; reset_val: string; setting: string }>(
    `SELECT name, reset_val, setting FROM pg_catalog.pg_settings
      WHERE name IN ('log_statement', 'log_min_duration_statement', 'log_parameter_max_length')`,
  );
  const setting = (name: string) => settings.find((s) => s.name === name);
  const logStatement = setting('log_statement')?.reset_val ?? 'none';
  const logMinDuration = setting('log_min_duration_statement')?.reset_val ?? '-1';
  const logParamLength = setting('log_parameter_max_length')?.reset_val ?? '-1';
  const logging = {
    logStatement,
    logMinDurationStatement: logMinDuration,
    logParameterMaxLength: logParamLength,
    sessionSuppressesParameters: setting('log_parameter_max_length')?.setting === '0',
    mayLogParameters: logParamLength !== '0' && (logStatement === 'all' || Number(logMinDuration) >= 0),
  };
  let inUse: StatusReport['masterKeys']['inUse'] = [];
  let counts = { tenants: 0, secrets: 0, deletedSecrets: 0 };
  if (version > 0) {
    const keys = await q<{ id: string; n: string }>(
      `SELECT master_key_id AS id, count(*) AS n FROM ${db.qs}.tenant_secret_keys
        WHERE master_key_id IS NOT NULL GROUP BY master_key_id ORDER BY master_key_id`,
    );
    inUse = keys.map((k) => ({ id: k.id, dataKeys: Number(k.n), configured: configured.includes(k.id) }));
    const [c] = await q<{ tenants: string; secrets: string; deleted: string }>(
      `SELECT (SELECT count(DISTINCT tenant_id) FROM ${db.qs}.tenant_secret_keys) AS tenants,
              count(*) FILTER (WHERE deleted_at IS NULL) AS secrets,
              count(*) FILTER (WHERE deleted_at IS NOT NULL) AS deleted
         FROM ${db.qs}.tenant_secrets`,
    );
    counts = { tenants: Number(c?.tenants), secrets: Number(c?.secrets), deletedSecrets: Number(c?.deleted) };
  }
  return {
    database: { embedded: db.embedded !== undefined, dataDir: db.embedded?.dir ?? null },
    schema: db.schema,
    schemaVersion: version,
    libraryVersion: LATEST_SCHEMA_VERSION,
    masterKeys: { configured, inUse },
    counts,
    logging,
  };
}

export function status(program: Command): void {
  program
    .command('status')
    .description(
      'Show the schema version, master-key ids configured and in use, counts of tenants and secrets, and whether the server may log bind parameters.',
    )
    .option('--json', 'print the status report as JSON')
    .addHelpText('after', examples('tenant-secrets status', 'tenant-secrets status --json'))
    .action(async (opts: { json?: boolean }) => {
      const configured = process.env.TENANT_SECRETS_MASTER_KEY ? cliKeyring().ids : [];
      const report = await withDatabase((db) => collect(db, configured));
      const unknown = report.masterKeys.inUse.filter((k) => !k.configured);
      if (report.logging.mayLogParameters) {
        warn(
          `the server may log statements with their bind parameters (log_statement=${report.logging.logStatement}, log_min_duration_statement=${report.logging.logMinDurationStatement}, log_parameter_max_length=${report.logging.logParameterMaxLength}); set log_parameter_max_length = 0 for the roles using tenant-secrets`,
        );
      }
      if (report.schemaVersion < report.libraryVersion) {
        warn(
          `schema version ${report.schemaVersion} is older than this library's (${report.libraryVersion}): run \`tenant-secrets migrate\``,
        );
      }
      if (configured.length > 0 && unknown.length > 0) {
        warn(
          `data keys are wrapped under master keys not configured here: ${unknown.map((k) => k.id).join(', ')}`,
        );
      }
      if (opts.json) return printJson(report);
      const yes = (b: boolean) => (b ? 'yes' : 'no');
      out(
        `database          ${report.database.embedded ? `embedded (${report.database.dataDir})` : 'DATABASE_URL'}`,
      );
      out(
        `schema            ${report.schema}, version ${report.schemaVersion} (library ${report.libraryVersion})`,
      );
      out(
        `master keys       ${configured.length ? configured.join(', ') : '(TENANT_SECRETS_MASTER_KEY not set)'}`,
      );
      out(
        `keys in use       ${
          report.masterKeys.inUse
            .map((k) => `${k.id} (${k.dataKeys} data keys${k.configured ? '' : ', NOT CONFIGURED'})`)
            .join(', ') || '(none)'
        }`,
      );
      out(`tenants           ${report.counts.tenants}`);
      out(`secrets           ${report.counts.secrets} (+ ${report.counts.deletedSecrets} deleted)`);
      out(
        `server logging    log_statement=${report.logging.logStatement} log_min_duration_statement=${report.logging.logMinDurationStatement} log_parameter_max_length=${report.logging.logParameterMaxLength}`,
      );
      out(
        `params may be logged  ${yes(report.logging.mayLogParameters)} (this connection suppresses them: ${yes(report.logging.sessionSuppressesParameters)})`,
      );
      if (report.schemaVersion === 0)
        note('tenant-secrets is not installed in this database: run `tenant-secrets migrate`');
    });
}
