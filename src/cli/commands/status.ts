import type { Command } from 'commander';
import type { KeyStatus } from '../../keys/rotation.js';
import { type DatabaseStatus, databaseStatus } from '../../status.js';
import { type CliDatabase, cliKeyring, withDatabase, withManager } from '../database.js';
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
  /** The library's keyStatus() (wrapped keys per master key id, readyToDropPrevious); null without a master key or before migrate. */
  keys: KeyStatus | null;
}

function toReport(
  db: CliDatabase,
  configured: string[],
  st: DatabaseStatus & { keys?: KeyStatus | null },
): StatusReport {
  return {
    database: { embedded: db.embedded !== undefined, dataDir: db.embedded?.dir ?? null },
    schema: st.schema,
    schemaVersion: st.schemaVersion,
    libraryVersion: st.libraryVersion,
    masterKeys: {
      configured,
      inUse: st.masterKeysInUse.map((k) => ({ ...k, configured: configured.includes(k.id) })),
    },
    counts: st.counts,
    logging: st.logging,
    keys: st.keys ?? null,
  };
}

export function status(program: Command): void {
  program
    .command('status')
    .description(
      'Show the schema version, master-key ids configured and in use, counts of tenants and secrets, whether the server may log bind parameters, and (with a master key) wrapped keys per master key and whether the previous master key can be dropped.',
    )
    .option('--json', 'print the status report as JSON')
    .addHelpText('after', examples('tenant-secrets status', 'tenant-secrets status --json'))
    .action(async (opts: { json?: boolean }) => {
      const configured = process.env.TENANT_SECRETS_MASTER_KEY ? cliKeyring().ids : [];
      // With a master key: the manager's status() (adds keyStatus()); without: databaseStatus().
      const report = configured.length
        ? await withManager(async (manager, db) => toReport(db, configured, await manager.status()))
        : await withDatabase(async (db) =>
            toReport(db, configured, await databaseStatus(db.pool, db.schema)),
          );
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
      if (report.keys) {
        const usage = Object.entries(report.keys.byMasterKey)
          .map(
            ([id, u]) =>
              `${id}${id === report.keys?.currentMasterKeyId ? ' (current)' : ''}: ${u.keys} wrapped (${u.activeKeys} active), ${u.tenants} tenants`,
          )
          .join('; ');
        out(`wrapped keys      ${usage || '(none)'}`);
        out(
          `drop previous     ${report.keys.readyToDropPrevious ? 'ready: every data key is under the current master key' : 'not yet: run `tenant-secrets rotate-master-key`'}`,
        );
        if (report.keys.retiredKeys > 0)
          out(
            `retired keys      ${report.keys.retiredKeys} (unfinished tenant-key rotations: run rotate-tenant-key again)`,
          );
      }
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
