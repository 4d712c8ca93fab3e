import type { Command } from 'commander';
import { SchemaDriftError, SchemaNotReadyError } from '../../base/errors.js';
import type { KeyStatus } from '../../keys/rotation.js';
import { type DatabaseStatus, databaseStatus, type StatusProblem } from '../../schema/status.js';
import { type CliDatabase, cliKeyring, withDatabase, withManager } from '../database.js';
import { examples } from '../help.js';
import { note, out, printJson } from '../io.js';
import { withJsonDetails } from '../report.js';
import { safe } from '../safe-text.js';

export interface StatusReport extends Omit<DatabaseStatus, 'masterKeysInUse'> {
  database: { embedded: boolean; dataDir: string | null };
  masterKeys: {
    /** Fingerprint ids from TENANT_SECRETS_MASTER_KEY (+ previous keys), current first; empty when unset. */
    configured: string[];
    /** Data keys per master key id, from tenant_secret_keys. */
    inUse: { id: string; dataKeys: number; configured: boolean; registered: boolean }[];
  };
  /** The library's keyStatus() (wrapped keys per master key id, readyToDropPrevious); null without a master key or before migrate. */
  keys: KeyStatus | null;
}

function toReport(
  db: CliDatabase,
  configured: string[],
  st: DatabaseStatus & { keys?: KeyStatus | null },
): StatusReport {
  const { masterKeysInUse, ...rest } = st;
  return {
    database: { embedded: db.embedded !== undefined, dataDir: db.embedded?.dir ?? null },
    ...rest,
    masterKeys: {
      configured,
      inUse: masterKeysInUse.map((k) => ({
        ...k,
        configured: configured.includes(k.id),
        registered: st.registeredMasterKeys.includes(k.id),
      })),
    },
    keys: st.keys ?? null,
  };
}

const list = (items: readonly string[]) => (items.length ? items.map((i) => safe(i)).join(', ') : 'none');

export function status(program: Command): void {
  program
    .command('status')
    .description(
      'Check the installation (schema version, functions, triggers and privileges changed by hand, logging of bind parameters, the audit sealer, master keys, counts). Exits 5 when the installation was changed (`tenant-secrets migrate` repairs it), 6 when tenant-secrets is not installed or its schema is older than this CLI.',
    )
    .option(
      '--json',
      'print the status report as JSON (exit 5 or 6: the error document, with the report in error.details.status)',
    )
    .addHelpText(
      'after',
      `
Problems are listed on stderr. Errors (exit 5): a function dropped or replaced by hand, functions of
another release, a trigger, rule or policy tenant-secrets did not create, a privilege it did not
grant, a table without row-level security. Warnings (exit 0): bind parameters may be logged, audit
records waiting more than a minute to be sealed, the current master key not registered, data keys
under a master key not configured here.
${examples('tenant-secrets status', 'tenant-secrets status --json | jq .problems')}`,
    )
    .action(async (opts: { json?: boolean }) => {
      const configured = process.env.TENANT_SECRETS_MASTER_KEY ? cliKeyring().ids : [];
      // With a master key: the manager's status() (adds keyStatus()); without: databaseStatus().
      const report = configured.length
        ? await withManager(async (manager, db) =>
            toReport(db, configured, await manager.installation.status()),
          )
        : await withDatabase(async (db) =>
            toReport(db, configured, await databaseStatus(db.pool, db.schema)),
          );
      const unknown = report.masterKeys.inUse.filter((k) => !k.configured);
      const problems: StatusProblem[] = [...report.problems];
      if (configured.length > 0 && unknown.length > 0) {
        problems.push({
          severity: 'warning',
          code: 'unconfigured_master_key',
          message: `data keys are wrapped under master keys not configured here: ${unknown.map((k) => k.id).join(', ')}`,
        });
      }
      if (
        configured[0] !== undefined &&
        report.schemaVersion > 0 &&
        !report.registeredMasterKeys.includes(configured[0])
      ) {
        problems.push({
          severity: 'warning',
          code: 'master_key_unregistered',
          message: `the current master key ${configured[0]} is not registered: new tenants cannot be created until \`tenant-secrets migrate\` runs with it`,
        });
      }
      const errors = problems.filter((p) => p.severity === 'error');
      // Not installed (or older than this CLI) is not a damaged installation: exit 6, as every other
      // command on that database.
      const notInstalled = problems.some((p) => p.code === 'not_installed');
      const outdated = problems.some((p) => p.code === 'schema_outdated');
      if (!opts.json) {
        const yes = (b: boolean) => (b ? 'yes' : 'no');
        out(
          `database          ${report.database.embedded ? `embedded (${safe(report.database.dataDir ?? '')})` : 'DATABASE_URL'}`,
        );
        out(
          `schema            ${safe(report.schema)}, version ${report.schemaVersion} (library ${report.libraryVersion})`,
        );
        const drifted =
          report.drift.missing.length + report.drift.changed.length + report.drift.unexpected.length > 0 ||
          report.drift.outdated;
        out(
          `functions         ${
            report.schemaVersion === 0
              ? 'not installed'
              : report.schemaVersion < report.libraryVersion
                ? 'not checked (the schema is older than this library)'
                : drifted
                  ? 'CHANGED (see problems)'
                  : 'as installed by migrate()'
          }`,
        );
        out(
          `master keys       ${configured.length ? configured.join(', ') : '(TENANT_SECRETS_MASTER_KEY not set)'}`,
        );
        out(`registered        ${list(report.registeredMasterKeys)}`);
        out(
          `keys in use       ${
            report.masterKeys.inUse
              .map((k) => `${safe(k.id)} (${k.dataKeys} data keys${k.configured ? '' : ', NOT CONFIGURED'})`)
              .join(', ') || '(none)'
          }`,
        );
        if (report.keys) {
          const usage = Object.entries(report.keys.byMasterKey)
            .map(
              ([id, u]) =>
                `${safe(id)}${id === report.keys?.currentMasterKeyId ? ' (current)' : ''}: ${u.keys} wrapped (${u.activeKeys} active), ${u.tenants} tenants`,
            )
            .join('; ');
          out(`wrapped keys      ${usage || '(none)'}`);
          out(
            `drop previous     ${report.keys.readyToDropPrevious ? 'ready: every data key and checkpoint is under the current master key' : 'not yet: run `tenant-secrets rotate-master-key`'}`,
          );
          if (report.keys.retiredKeys > 0) {
            out(
              `retired keys      ${report.keys.retiredKeys} (unfinished tenant-key rotations: run rotate-tenant-key again)`,
            );
          }
        }
        out(`tenants           ${report.counts.tenants}`);
        out(`secrets           ${report.counts.secrets} (+ ${report.counts.deletedSecrets} deleted)`);
        out(`grants            app: ${list(report.grants.app)}; operator: ${list(report.grants.operator)}`);
        out(
          `server logging    log_statement=${safe(report.logging.logStatement)} log_min_duration_statement=${safe(report.logging.logMinDurationStatement)} log_parameter_max_length=${safe(report.logging.logParameterMaxLength)} log_parameter_max_length_on_error=${safe(report.logging.logParameterMaxLengthOnError)}`,
        );
        out(
          `params logged     ${yes(report.logging.mayLogParameters)} (suppressed per call on success: ${yes(report.logging.suppressedOnSuccess)}; on error: yes)`,
        );
        out(
          `audit sealer      last run ${report.sealer.lastSealedAt ? report.sealer.lastSealedAt.toISOString() : 'never'}; ${report.sealer.pending} pending${report.sealer.oldestPending ? ` since ${report.sealer.oldestPending.toISOString()}` : ''}`,
        );
        for (const p of problems) note(`${p.severity}: ${p.message}`);
      }
      if (notInstalled || outdated) {
        throw withJsonDetails(
          new SchemaNotReadyError(
            notInstalled
              ? `tenant-secrets is not installed in schema ${report.schema} of this database: run \`tenant-secrets migrate\` as the schema owner`
              : `the schema (version ${report.schemaVersion}) is older than this CLI's (${report.libraryVersion}): run \`tenant-secrets migrate\` as the schema owner`,
          ),
          { status: { ...report, problems } },
        );
      }
      if (errors.length > 0) {
        throw withJsonDetails(
          new SchemaDriftError(
            `status found ${errors.length} problem(s) with the installation (${[...new Set(errors.map((e) => e.code))].join(', ')}): run \`tenant-secrets migrate\` as the schema owner to repair`,
          ),
          { status: { ...report, problems } },
        );
      }
      if (opts.json) printJson({ ...report, problems });
    });
}
