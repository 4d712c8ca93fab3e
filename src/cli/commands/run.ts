import { spawn } from 'node:child_process';
import { constants } from 'node:os';
import type { Command } from 'commander';
import type { SecretsManager } from '../../api/manager.js';
import { InvalidInputError, SecretNotFoundError } from '../../base/errors.js';
import { withManager } from '../database.js';
import { examples } from '../help.js';
import { checkNames, note, warn } from '../io.js';
import { setCommandExitCode } from '../report.js';
import { onInterrupt } from '../signals.js';
import { refusedKind, refusedVariablesHelp, variableFor } from './run-variables.js';

interface RunOpts {
  tenant: string;
  prefix?: string;
  map?: string[];
  allowExpired?: boolean;
  keepMasterKey?: boolean;
}

/** Names one `getMany` call reads at most. */
const READ_BATCH = 100;
/** Names one `list` page returns at most. */
const LIST_PAGE = 1000;
const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;
/** Never handed to the command unless --keep-master-key: they open every tenant's secrets. */
const KEY_VARIABLES = [
  'TENANT_SECRETS_MASTER_KEY',
  'TENANT_SECRETS_PREVIOUS_MASTER_KEYS',
  'TENANT_SECRETS_LEGACY_KEY',
] as const;

/** One secret to inject: its name and the environment variable that receives its value. */
interface Injection {
  name: string;
  variable: string;
}

/** `--map name=VARIABLE` entries, checked: valid names and variables, each at most once, under --prefix. */
function parseMaps(entries: readonly string[], tenant: string, prefix: string): Injection[] {
  const injections: Injection[] = [];
  for (const entry of entries) {
    const at = entry.indexOf('=');
    const name = at < 0 ? '' : entry.slice(0, at);
    const variable = at < 0 ? '' : entry.slice(at + 1);
    if (name === '' || variable === '') {
      throw new InvalidInputError(
        `--map must be secret-name=VARIABLE, e.g. stripe/api-key=STRIPE_KEY; got ${JSON.stringify(entry)}`,
        '--map',
      );
    }
    checkNames(tenant, name);
    if (!ENV_NAME.test(variable)) {
      throw new InvalidInputError(
        `--map ${name}=${variable}: ${JSON.stringify(variable)} is not a valid environment variable name (letters, digits and _, not starting with a digit)`,
        '--map',
      );
    }
    if (!name.startsWith(prefix)) {
      throw new InvalidInputError(
        `--map ${name}=${variable}: ${name} does not start with --prefix ${prefix}`,
        '--map',
      );
    }
    const twice = injections.find((i) => i.name === name || i.variable === variable);
    if (twice) {
      throw new InvalidInputError(
        twice.name === name
          ? `--map names secret ${name} twice`
          : `--map gives ${variable} twice (secrets ${twice.name} and ${name})`,
        '--map',
      );
    }
    injections.push({ name, variable });
  }
  return injections;
}

/** The tenant's secret names under `prefix`, page by page (names only, never values). */
async function listNames(manager: SecretsManager, tenant: string, prefix: string): Promise<string[]> {
  const names: string[] = [];
  for (;;) {
    const page = await manager.list(tenant, {
      prefix: prefix === '' ? undefined : prefix,
      after: names.at(-1),
      limit: LIST_PAGE,
    });
    names.push(...page.map((s) => s.keyName));
    if (page.length < LIST_PAGE) return names;
  }
}

/**
 * Variables derived from the names after the prefix. Refused (nothing read, nothing started): a name
 * that gives no variable, two that give the same, and names that give a variable which changes how
 * programs load or run (run-variables.ts), all of those named at once.
 */
function deriveVariables(names: readonly string[], prefix: string): Injection[] {
  const byVariable = new Map<string, string>();
  const injections: Injection[] = [];
  const refused: string[] = [];
  for (const name of names) {
    const variable = variableFor(name.slice(prefix.length));
    if (variable === '') {
      throw new InvalidInputError(
        `secret ${name} has no name after --prefix ${prefix}: give it one with --map ${name}=VARIABLE (with --map, only mapped secrets are injected)`,
        '--prefix',
      );
    }
    const kind = refusedKind(variable);
    if (kind !== undefined) {
      refused.push(`${name} -> ${variable} (${kind})`);
      continue;
    }
    const other = byVariable.get(variable);
    if (other !== undefined) {
      throw new InvalidInputError(
        `secrets ${other} and ${name} would both be ${variable}: choose their variables with --map (with --map, only mapped secrets are injected)`,
        '--map',
      );
    }
    byVariable.set(variable, name);
    injections.push({ name, variable });
  }
  if (refused.length > 0) {
    throw new InvalidInputError(
      `${refused.length === 1 ? 'a secret would set a variable' : `${refused.length} secrets would set variables`} that change${refused.length === 1 ? 's' : ''} how programs load or run, which run never takes from a secret's name: ${refused.join(', ')}. Set one on purpose with --map NAME=VARIABLE (with --map, only mapped secrets are injected), or leave it out with --prefix`,
      '--map',
    );
  }
  return injections;
}

/** Reads the values, at most READ_BATCH names per call (each read is an audited `secret.read`). */
async function readValues(
  manager: SecretsManager,
  tenant: string,
  injections: readonly Injection[],
  mapped: boolean,
  allowExpired: boolean,
): Promise<Map<string, string>> {
  const values = new Map<string, string>();
  for (let at = 0; at < injections.length; at += READ_BATCH) {
    const batch = injections.slice(at, at + READ_BATCH);
    const read = await manager.getMany(
      tenant,
      batch.map((i) => i.name),
      { allowExpired },
    );
    for (const { name, variable } of batch) {
      const value = read[name];
      if (value === null || value === undefined) {
        // Asked for by name: it must exist. Listed a moment ago: it was deleted meanwhile.
        if (mapped) throw new SecretNotFoundError(tenant, name);
        warn(`secret ${name} was deleted while starting; ${variable} is not set`);
        continue;
      }
      if (value.includes('\0')) {
        throw new InvalidInputError(
          `secret ${name} contains a NUL character, which an environment variable cannot hold`,
          'value',
        );
      }
      values.set(variable, value);
    }
  }
  return values;
}

/** Starts the command with stdio inherited; resolves to its exit code (128 + n when killed by signal n). */
function runChild(command: string, args: string[], env: NodeJS.ProcessEnv, count: number): Promise<number> {
  return new Promise((resolveCode, reject) => {
    let child: ReturnType<typeof spawn>;
    try {
      child = spawn(command, args, { stdio: 'inherit', env });
    } catch {
      // Thrown synchronously for arguments the OS cannot take; the message could quote the environment.
      reject(new InvalidInputError(`cannot run ${command}: invalid command or arguments`, 'command'));
      return;
    }
    const stopForwarding = onInterrupt((signal) => {
      child.kill(signal);
    });
    child.on('error', (error: NodeJS.ErrnoException) => {
      stopForwarding();
      const why =
        error.code === 'ENOENT'
          ? 'command not found'
          : error.code === 'EACCES'
            ? 'permission denied'
            : error.code === 'E2BIG'
              ? `the environment is too large for the operating system (${count} secrets): narrow it with --prefix or --map`
              : `the command could not be started (${error.code ?? 'error'})`;
      reject(new InvalidInputError(`cannot run ${command}: ${why}`, 'command'));
    });
    child.on('exit', (code, signal) => {
      stopForwarding();
      resolveCode(signal ? 128 + (constants.signals[signal] ?? 0) : (code ?? 1));
    });
  });
}

export function run(program: Command): void {
  program
    .command('run')
    .usage('[options] -- <command> [args...]')
    .description(
      "Run a command with a tenant's secrets as environment variables: each secret becomes the variable named after it (the part after --prefix, upper-cased, characters other than A-Z 0-9 _ replaced by _), or the one given with --map.",
    )
    .requiredOption('--tenant <tenant>', 'tenant id')
    .option(
      '--prefix <prefix>',
      'only secrets whose names start with prefix; variables are named after the rest',
    )
    .option(
      '--map <name=VARIABLE>',
      'inject secret name as VARIABLE; with --map, only the mapped secrets are injected (repeatable)',
      (entry: string, previous: string[] = []) => [...previous, entry],
    )
    .option(
      '--allow-expired',
      'inject secrets whose expiry has passed (otherwise the command does not start)',
    )
    .option(
      '--keep-master-key',
      'pass TENANT_SECRETS_MASTER_KEY (and the previous and legacy keys) on to the command',
    )
    .argument('<command>', 'the command to run (after --)')
    .argument('[args...]', 'its arguments')
    .passThroughOptions()
    .addHelpText(
      'after',
      `
Without --map, every secret of the tenant (under --prefix) is injected; two secrets that would get
the same variable, or a name that gives none, are refused (exit 2): choose their variables with
--map. With --map, exactly the mapped secrets are injected, and each must exist (exit 3).
Variables already set are overridden (a warning names them). Every secret read is audited
(secret.read). Values are never printed, not even with --debug.

Names never derived from a secret's name: whoever can write the tenant's secrets chooses their
names, and these variables change how the command (or a program it starts) is loaded or runs, e.g.
a secret node_options would become NODE_OPTIONS=--require ./evil.js. Without --map, a tenant
holding such a secret is refused (exit 2) before any value is read or the command starts; the
error names each secret (never its value) and its variable. Set one on purpose with --map
(--map node-flags=NODE_OPTIONS), or leave it out with --prefix. Compared without regard to case;
NAME* is a prefix, *NAME a suffix:
${refusedVariablesHelp()}

The command inherits the environment tenant-secrets was started with (PATH, HOME, DATABASE_URL
and everything else as it was), less TENANT_SECRETS_MASTER_KEY, TENANT_SECRETS_PREVIOUS_MASTER_KEYS
and TENANT_SECRETS_LEGACY_KEY (unless --keep-master-key), plus the secrets' variables; and this
terminal (stdin, stdout, stderr). SIGINT, SIGTERM and SIGHUP are passed on to it; its exit code is
tenant-secrets' exit code (128 + n when a signal n ended it). --json does not apply: the command
owns stdout. Errors before the command starts are reported as by any other command.
${examples(
  'tenant-secrets run --tenant acme -- node server.js',
  'tenant-secrets run --tenant acme --prefix stripe/ -- node server.js     # stripe/api-key -> API_KEY',
  'tenant-secrets run --tenant acme --map stripe/api-key=STRIPE_KEY --map db/password=PGPASSWORD -- npm start',
)}`,
    )
    .action(async (command: string, args: string[], opts: RunOpts) => {
      const tenant = opts.tenant;
      checkNames(tenant);
      const prefix = opts.prefix ?? '';
      const mapped = opts.map !== undefined && opts.map.length > 0;
      const fromMap = mapped ? parseMaps(opts.map ?? [], tenant, prefix) : undefined;
      const values = await withManager(async (manager) => {
        // Every name and variable is settled (and refused if need be) before any value is read.
        const injections = fromMap ?? deriveVariables(await listNames(manager, tenant, prefix), prefix);
        return readValues(manager, tenant, injections, mapped, opts.allowExpired === true);
      });
      // The database (an embedded server included) is released before the command starts.
      const env: NodeJS.ProcessEnv = { ...process.env };
      if (!opts.keepMasterKey) for (const name of KEY_VARIABLES) delete env[name];
      const overridden = [...values.keys()].filter((variable) => env[variable] !== undefined);
      if (overridden.length > 0) warn(`secrets override the inherited ${overridden.join(', ')}`);
      for (const [variable, value] of values) env[variable] = value;
      note(
        `running ${command} with ${values.size} secret(s) of tenant ${tenant}${values.size ? `: ${[...values.keys()].join(', ')}` : ''}`,
      );
      setCommandExitCode(await runChild(command, args, env, values.size));
    });
}
