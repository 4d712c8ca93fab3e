import { Command, CommanderError, Option } from 'commander';
import { audit } from './commands/audit.js';
import { del } from './commands/delete.js';
import { demo } from './commands/demo.js';
import { get } from './commands/get.js';
import { importLegacy } from './commands/import-legacy.js';
import { keygen } from './commands/keygen.js';
import { purgeTenant, rotateMasterKey, rotateTenantKey, unregisterMasterKey } from './commands/keys.js';
import { destroy, purgeDeleted, restore, rollback } from './commands/lifecycle.js';
import { list } from './commands/list.js';
import { migrateCommand } from './commands/migrate.js';
import { rotate } from './commands/rotate.js';
import { run } from './commands/run.js';
import { set } from './commands/set.js';
import { sql } from './commands/sql.js';
import { status } from './commands/status.js';
import { versions } from './commands/versions.js';
import { databaseTarget, requestEmbedded } from './database.js';
import { EXIT_CODES_HELP } from './exit-codes.js';
import { setJsonErrors } from './report.js';
import { packageVersion } from './version.js';

/** Adds one command to the program. A new command is a module exporting one of these, plus a line below. */
export type RegisterCommand = (program: Command) => void;

const COMMANDS: readonly RegisterCommand[] = [
  keygen,
  migrateCommand,
  sql,
  set,
  get,
  run,
  list,
  versions,
  rotate,
  rollback,
  del,
  restore,
  destroy,
  purgeDeleted,
  audit,
  rotateMasterKey,
  unregisterMasterKey,
  rotateTenantKey,
  purgeTenant,
  importLegacy,
  status,
  demo,
];

/** Commands that never open a database: they run without DATABASE_URL and without --embedded. */
const NO_DATABASE = new Set(['keygen', 'sql', 'demo']);

export const ENVIRONMENT_HELP = `Environment:
  DATABASE_URL                         PostgreSQL connection string. Every command that reads or
                                       changes data needs it (exit 6 without it), unless --embedded
  TENANT_SECRETS_DATA_DIR              data directory of the embedded PostgreSQL (--embedded)
                                       (default ./.tenant-secrets/pgdata)
  TENANT_SECRETS_MASTER_KEY            current master key (from \`tenant-secrets keygen\`)
  TENANT_SECRETS_PREVIOUS_MASTER_KEYS  older master keys still accepted, comma-separated
  TENANT_SECRETS_SCHEMA                schema of the tenant-secrets objects (default public)
  TENANT_SECRETS_ACTOR                 actor recorded in the audit trail (default cli:<user>)
  TENANT_SECRETS_LEGACY_KEY            the legacy table's old master key, read by import-legacy only`;

/** The command as typed first (`audit` for `audit verify`). */
function topLevel(command: Command): Command {
  let current = command;
  while (current.parent?.parent) current = current.parent;
  return current;
}

/**
 * Runs before every command's action: settles --json and --embedded, and refuses a command that
 * needs a database when there is none, before it reads a value from standard input or a prompt.
 */
function beforeAction(_program: Command, command: Command): void {
  const opts = command.optsWithGlobals();
  setJsonErrors(command.opts().json === true);
  requestEmbedded(opts.embedded === true);
  if (!NO_DATABASE.has(topLevel(command).name())) databaseTarget();
}

export function buildProgram(): Command {
  const program = new Command('tenant-secrets');
  program
    .description('Per-tenant secrets encrypted in PostgreSQL with pgcrypto: operator CLI.')
    .option('-V, --version', 'print the version of tenant-secrets')
    .option(
      '--embedded',
      'use a local embedded PostgreSQL (TENANT_SECRETS_DATA_DIR) instead of DATABASE_URL: for trying tenant-secrets, not for production',
    )
    .option('--debug', 'show stack traces of errors')
    .helpCommand(false)
    .configureHelp({ helpWidth: 100, sortSubcommands: false })
    .exitOverride()
    .showHelpAfterError('(run with --help for usage)')
    .addHelpText(
      'after',
      `
Values are read from standard input (one trailing newline removed) or a hidden prompt; a value
holds at most 65536 bytes, and a longer input is refused (exit 2) without being read to its end.
Data goes to stdout, messages to stderr. Commands that print data accept --json. Text from the
database (names, labels, actors, audit fields) is printed with control characters escaped (\\x1b,
\\u202e), so it cannot act on your terminal; JSON output escapes them as \\u001b.

With --json, a command that fails prints one JSON document on stdout instead of its result:
  {"error": {"code": "NOT_FOUND", "message": "...", "exitCode": 3}}
code is the one shown in brackets on stderr (INVALID_INPUT for usage errors, ABORTED when
interrupted), or UNEXPECTED for an internal error; the exit code is the same as without --json.

${ENVIRONMENT_HELP}

Without DATABASE_URL, a command that reads or changes data stops before doing anything (exit 6,
CONFIGURATION): it never falls back to a local database on its own. --embedded (before or after
the command) asks for the local embedded PostgreSQL, DATABASE_URL or not; \`demo\` always uses a
throwaway one. keygen, sql, --help and --version need no database.

Embedded PostgreSQL (--embedded): commands running at the same time share one server, which the
last of them stops. A server left running by a killed command is taken over by the next one, and
an interrupted first start (initdb) is done again. Next to the data directory DIR live DIR.lock
(a directory; one left by a killed command is taken over after 10 s) and DIR.owners.json (and
DIR.init.json during a first start). PostgreSQL's own log is DIR/tenant-secrets-server.log.

${EXIT_CODES_HELP}

Quick start:
  tenant-secrets demo
  export TENANT_SECRETS_MASTER_KEY="$(tenant-secrets keygen)"
  printf %s 'sk_live_123' | tenant-secrets --embedded set tenant-a stripe/api-key
  tenant-secrets --embedded get tenant-a stripe/api-key`,
    );
  // Read when asked, not at every start: a damaged installation still runs its commands.
  program.on('option:version', () => {
    const version = packageVersion();
    process.stdout.write(`${version}\n`);
    throw new CommanderError(0, 'commander.version', version);
  });
  // Options belong to the command they follow, so `audit --json` and `audit verify --json` stay apart.
  program.enablePositionalOptions();
  for (const register of COMMANDS) register(program);
  // --debug (main.ts looks for it in argv) and --embedded (beforeAction reads it with the globals)
  // are accepted after the command too: declare them, hidden, on every subcommand.
  const addGlobals = (command: Command) => {
    for (const sub of command.commands) {
      sub.addOption(new Option('--debug', 'show stack traces of errors').hideHelp());
      sub.addOption(new Option('--embedded', 'use the local embedded PostgreSQL').hideHelp());
      addGlobals(sub);
    }
  };
  addGlobals(program);
  program.hook('preAction', beforeAction);
  return program;
}
