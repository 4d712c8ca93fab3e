import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, fsyncSync, openSync, readFileSync, renameSync, unlinkSync, writeSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import type { Command } from 'commander';
import { type AuditAnchor, parseAnchor } from '../../audit/anchors.js';
import type { AuditOutcome, AuditRecord } from '../../audit/query.js';
import { ConfigurationError, IntegrityError, InvalidInputError } from '../../base/errors.js';
import { sealPending, withDatabase, withManager } from '../database.js';
import { examples } from '../help.js';
import { checkNames, iso, note, out, parseAge, parseCount, parseDate, printJson, table } from '../io.js';
import { createCounter } from '../progress.js';
import { withJsonDetails } from '../report.js';
import { safe, safeJsonText } from '../safe-text.js';

interface QueryOpts {
  tenant?: string;
  system?: boolean;
  since?: string;
  until?: string;
  action?: string;
  key?: string;
  actor?: string;
  outcome?: string;
  limit?: string;
  cursor?: string;
  json?: boolean;
}

/** `--tenant t` / `--system` / neither (every chain) as the library's tenantId option. */
function chainOption(opts: { tenant?: string; system?: boolean }): { tenantId?: string | null } {
  if (opts.tenant !== undefined && opts.system) {
    throw new InvalidInputError('give either --tenant or --system, not both', '--system');
  }
  if (opts.tenant !== undefined) {
    checkNames(opts.tenant);
    return { tenantId: opts.tenant };
  }
  return opts.system ? { tenantId: null } : {};
}

const chainName = (chainId: string) => (chainId === '' ? '(system)' : safe(chainId));

function recordRow(r: AuditRecord): string[] {
  return [
    String(r.seq),
    iso(r.occurredAt),
    r.action,
    r.outcome + (r.errorCode ? ` (${r.errorCode})` : ''),
    r.keyName ?? '-',
    r.version === null ? '-' : String(r.version),
    r.actor,
  ];
}

/** The anchor kept in `path` by the previous verification, or undefined when the file does not exist. */
function readAnchorFile(path: string): AuditAnchor | undefined {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    if ((error as { code?: string }).code === 'ENOENT') return undefined;
    throw new ConfigurationError(
      `cannot read the anchor file ${safe(path)} (${safe(String((error as { code?: string }).code ?? 'error'))})`,
    );
  }
  try {
    return parseAnchor(text);
  } catch {
    throw new InvalidInputError(
      `the anchor file ${safe(path)} does not hold an audit anchor (was it replaced or damaged? restore it from where the anchor was published)`,
      '--anchor-file',
    );
  }
}

/** Replaces `path` with the anchor at once: a temporary file (mode 0600) in the same folder, renamed. */
function writeAnchorFile(path: string, anchor: AuditAnchor): void {
  const temp = join(dirname(path), `.${basename(path)}.${randomBytes(6).toString('hex')}.tmp`);
  try {
    const fd = openSync(temp, 'wx', 0o600);
    try {
      writeSync(fd, `${JSON.stringify(anchor)}\n`);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(temp, path);
  } catch (error) {
    try {
      unlinkSync(temp);
    } catch {
      // not created
    }
    throw new ConfigurationError(
      `cannot write the anchor file ${safe(path)} (${safe(String((error as { code?: string }).code ?? 'error'))}); the new anchor is still in the database`,
    );
  }
  try {
    const dir = openSync(dirname(path), 'r');
    try {
      fsyncSync(dir);
    } finally {
      closeSync(dir);
    }
  } catch {
    // A folder that cannot be opened or synced (some platforms): the rename is done.
  }
}

/** Runs the publish hook (through the shell) with the anchor as JSON on stdin; its output goes to stderr. */
async function publishAnchor(command: string, anchor: AuditAnchor): Promise<void> {
  const status = await new Promise<number | string>((resolve) => {
    const child = spawn(command, { shell: true, stdio: ['pipe', 2, 2] });
    child.on('error', (error) => resolve((error as { code?: string }).code ?? 'error'));
    child.on('close', (code, signal) => resolve(code ?? signal ?? 'error'));
    child.stdin?.on('error', () => undefined);
    child.stdin?.end(`${JSON.stringify(anchor)}\n`);
  });
  if (status !== 0) {
    throw new ConfigurationError(
      `the anchor command failed (${typeof status === 'number' ? `exit status ${status}` : safe(status)}): the new anchor ${anchor.counter} was not published (it is in the database, and in the anchor file, if one was given)`,
    );
  }
}

/** One exported JSON line (C1 controls and U+2028/9 escaped like every JSON the CLI prints). */
async function writeLine(line: string): Promise<void> {
  if (!process.stdout.write(`${safeJsonText(line)}\n`)) {
    await new Promise<void>((resolve) => process.stdout.once('drain', resolve));
  }
}

export function audit(program: Command): void {
  const command = program
    .command('audit')
    .description(
      "Query a tenant's audit trail (or the system chain's with --system), oldest first, one page at a time; subcommands export, verify, seal and prune it.",
    )
    .argument('[tenant]', 'tenant id (or --system)')
    .enablePositionalOptions()
    .option('--tenant <tenant>', 'the tenant, as an option (for a tenant named export, verify or prune)')
    .option('--system', 'the system chain (key rotations, audit queries, verifications)')
    .option('--since <iso-date>', 'records at or after this instant')
    .option('--until <iso-date>', 'records before this instant')
    .option('--action <action>', 'only this action, e.g. secret.read')
    .option('--key <key>', 'only this key name')
    .option('--actor <actor>', 'only this actor')
    .option('--outcome <outcome>', 'success or failure')
    .option('--limit <n>', 'page size, 1-1000 (default 100)')
    .option('--cursor <cursor>', 'the next-page cursor printed by the previous page')
    .option('--json', 'print { records, nextCursor } as JSON')
    .addHelpText(
      'after',
      examples(
        'tenant-secrets audit tenant-a',
        'tenant-secrets audit tenant-a --action secret.read --since 2030-01-01 --json',
        'tenant-secrets audit --system --outcome failure',
        'tenant-secrets audit tenant-a --limit 50 --cursor 50',
        'tenant-secrets audit --tenant verify        # a tenant whose id is a subcommand name',
      ),
    )
    .action(async (tenantArg: string | undefined, opts: QueryOpts) => {
      if (tenantArg !== undefined && opts.tenant !== undefined) {
        throw new InvalidInputError('give the tenant as an argument or with --tenant, not both', 'tenant');
      }
      const tenant = tenantArg ?? opts.tenant;
      if ((tenant === undefined) === !opts.system) {
        throw new InvalidInputError('give a tenant id or --system (not both)', 'tenant');
      }
      if (tenant !== undefined) checkNames(tenant);
      if (opts.outcome !== undefined && opts.outcome !== 'success' && opts.outcome !== 'failure') {
        throw new InvalidInputError('--outcome must be success or failure', '--outcome');
      }
      const page = await withManager((manager) =>
        manager.auditTrail.query(tenant ?? null, {
          since: parseDate(opts.since, '--since'),
          until: parseDate(opts.until, '--until'),
          action: opts.action,
          keyName: opts.key,
          actor: opts.actor,
          outcome: opts.outcome as AuditOutcome | undefined,
          limit: parseCount(opts.limit, '--limit', 1, 1000),
          cursor: opts.cursor,
        }),
      );
      if (opts.json) return printJson(page);
      if (page.records.length === 0) note('no audit records match');
      else
        out(
          table(['SEQ', 'AT', 'ACTION', 'OUTCOME', 'KEY', 'VERSION', 'ACTOR'], page.records.map(recordRow)),
        );
      if (page.nextCursor) note(`more records: run again with --cursor ${page.nextCursor}`);
    });

  command
    .command('export')
    .description(
      'Stream audit records as JSON Lines on stdout (every chain, or one), oldest first, with their hashes so a log system can re-check the chains.',
    )
    .option('--tenant <tenant>', "only this tenant's chain")
    .option('--system', 'only the system chain')
    .option('--since <iso-date>', 'records at or after this instant')
    .option('--until <iso-date>', 'records before this instant')
    .addHelpText(
      'after',
      examples(
        'tenant-secrets audit export > audit.jsonl',
        'tenant-secrets audit export --tenant tenant-a --since 2030-01-01 | jq .action',
      ),
    )
    .action(async (opts: { tenant?: string; system?: boolean; since?: string; until?: string }) => {
      const chain = chainOption(opts);
      const since = parseDate(opts.since, '--since');
      const until = parseDate(opts.until, '--until');
      let lines = 0;
      await withManager(async (manager) => {
        for await (const line of manager.auditTrail.export({ ...chain, since, until })) {
          await writeLine(line);
          lines++;
        }
      });
      note(`exported ${lines} audit record(s)`);
    });

  command
    .command('verify')
    .description(
      'Seal pending records, then verify the audit hash chains (every record against its digest and link, no record missing, heads) and their signed checkpoints; on success, sign a checkpoint at each chain head. Exit 5 names the first bad record.',
    )
    .option('--tenant <tenant>', "only this tenant's chain")
    .option('--system', 'only the system chain')
    .option(
      '--anchor-file <path>',
      'keep the signed anchor outside the database: verify against the anchor in PATH (when the file exists), then replace it with the new one (written to a temporary file, mode 0600, and renamed); a trail rolled back or truncated behind it fails (exit 5) and leaves the file as it was',
    )
    .option(
      '--anchor-command <command>',
      'publish each new anchor: run COMMAND through the shell with the anchor as JSON on stdin (write-once storage, a log, a ticket); its output goes to stderr; a failure exits 6',
    )
    .option(
      '--json',
      'print the verification result as JSON (tampering found: the error document, with the result in error.details.verification)',
    )
    .addHelpText(
      'after',
      examples(
        'tenant-secrets audit verify',
        'tenant-secrets audit verify --tenant tenant-a --json',
        'tenant-secrets audit verify --anchor-file /var/lib/tenant-secrets/anchor.json',
        "tenant-secrets audit verify --anchor-file anchor.json --anchor-command 'aws s3 cp - s3://audit-anchors/$(date +%s).json'",
      ),
    )
    .action(
      async (opts: {
        tenant?: string;
        system?: boolean;
        json?: boolean;
        anchorFile?: string;
        anchorCommand?: string;
      }) => {
        const chain = chainOption(opts);
        if (opts.anchorFile === '')
          throw new InvalidInputError('--anchor-file needs a path', '--anchor-file');
        const previous = opts.anchorFile === undefined ? undefined : readAnchorFile(opts.anchorFile);
        // The number of chains and records is not known before the walk: a running count.
        const progress = createCounter({ label: 'verifying audit chains' });
        const verification = await withManager(async (manager) => {
          try {
            return await manager.auditTrail.verify({
              ...chain,
              ...(previous && { anchor: previous }),
              onProgress: (p) =>
                progress.update(`${p.records} record(s) in ${p.chainsDone} chain(s) checked`),
            });
          } finally {
            progress.stop();
          }
        });
        const bad = verification.firstBad;
        if (verification.sealed > 0) note(`sealed ${verification.sealed} pending record(s) before verifying`);
        if (opts.json) {
          // One document on stdout: the result, or (tampering found) the error with the result in it.
          if (!bad) printJson(verification);
        } else {
          out(
            `verified ${verification.chains} chain(s), ${verification.records} record(s), ${verification.checkpoints} checkpoint(s): ${verification.ok ? 'OK' : 'TAMPERING DETECTED'}`,
          );
          const shown = verification.heads.slice(0, 20);
          for (const h of shown) out(`  head ${chainName(h.chainId)} seq ${h.seq} ${safe(h.hash)}`);
          if (verification.heads.length > shown.length) {
            out(
              `  ... and ${verification.heads.length - shown.length} more verified head(s) (--json lists all)`,
            );
          }
          for (const p of verification.problems) {
            out(
              `  ${safe(p.reason)} in chain ${chainName(p.chainId)} at seq ${p.seq ?? '-'}${p.id === null ? '' : ` (record id ${p.id})`}${p.masterKeyId ? ` (checkpoint key ${safe(p.masterKeyId)})` : ''}`,
            );
          }
        }
        if (bad) {
          throw withJsonDetails(
            new IntegrityError(
              `the audit trail fails verification: first bad record in chain ${chainName(bad.chainId)} at seq ${bad.seq ?? '-'}${bad.id === null ? '' : ` (record id ${bad.id})`}: ${bad.reason}`,
            ),
            { verification },
          );
        }
        const anchor = verification.anchor;
        if (anchor && opts.anchorFile !== undefined) {
          writeAnchorFile(opts.anchorFile, anchor);
          if (!opts.json) {
            note(
              `anchor ${anchor.counter} written to ${safe(opts.anchorFile)}${previous ? ` (the trail still extends anchor ${previous.counter})` : ' (no earlier anchor file: nothing to check against this time)'}`,
            );
          }
        }
        if (anchor && opts.anchorCommand !== undefined) await publishAnchor(opts.anchorCommand, anchor);
      },
    );

  command
    .command('seal')
    .description(
      "Chain the audit records operations appended since the last seal into their tenants' hash chains, and move them from the pending partition to the partition of the day (the library does this by itself about a second after operations, and before verify, export and queries; run this from a periodic job when SQL callers write without the library). Waits for a sealer already running; needs no master key.",
    )
    .option('--json', 'print { sealed, pending, oldestPending, busy } as JSON')
    .addHelpText(
      'after',
      examples('tenant-secrets audit seal', '*/1 * * * * tenant-secrets audit seal --json'),
    )
    .action(async (opts: { json?: boolean }) => {
      const result = await withDatabase(sealPending);
      if (opts.json) printJson(result);
      else {
        out(
          `sealed ${result.sealed} record(s); ${result.pending} pending${result.oldestPending ? ` (oldest ${result.oldestPending.toISOString()})` : ''}`,
        );
      }
    });

  command
    .command('prune')
    .description(
      'Delete audit records older than a date or age, verifying the chains first (exit 5 on tampering, nothing deleted). Every chain: whole days of sealed records are dropped (a day that ends after the cutoff stays); one chain (--tenant, --system): its records that occurred before the cutoff. Each pruned chain keeps a signed anchor, so what remains still verifies. Needs the schema owner.',
    )
    .requiredOption('--older-than <iso-date|age>', 'an ISO 8601 date, or an age such as 90d, 12h, 30m')
    .option('--tenant <tenant>', "only this tenant's chain")
    .option('--system', 'only the system chain')
    .option('--json', 'print { chains, records, anchors } as JSON')
    .addHelpText(
      'after',
      examples(
        'tenant-secrets audit prune --older-than 365d',
        'tenant-secrets audit prune --older-than 2030-01-01 --json',
      ),
    )
    .action(async (opts: { olderThan: string; tenant?: string; system?: boolean; json?: boolean }) => {
      const chain = chainOption(opts);
      const olderThan = parseAge(opts.olderThan, '--older-than');
      const result = await withManager((manager) => manager.auditTrail.prune({ ...chain, olderThan }));
      if (opts.json) printJson(result);
      else
        note(
          `pruned ${result.records} record(s) from ${result.chains} chain(s) older than ${olderThan.toISOString()}${chain.tenantId === undefined ? ' (whole days sealed before it)' : ''}`,
        );
    });
}
