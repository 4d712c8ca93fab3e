import { ERROR_TABLE, EXIT, exitCodeForCode } from '../base/error-table.js';
import { TenantSecretsError } from '../base/errors.js';

/** The CLI's documented exit codes (src/base/error-table.ts). Stable: scripts branch on them. */
export { EXIT };

/** Exit code for anything thrown by a command. */
export function exitCodeFor(error: unknown): number {
  if (error instanceof TenantSecretsError) return exitCodeForCode(error.code);
  return EXIT.ERROR;
}

/** What each exit code means; the error codes that lead to it are appended from the table. */
const MEANING: Record<number, string> = {
  [EXIT.OK]: 'success',
  [EXIT.ERROR]: 'any other error',
  [EXIT.USAGE]: 'usage error, invalid input, or an irreversible command not confirmed',
  [EXIT.NOT_FOUND]: 'not found',
  [EXIT.CONFLICT]: 'version conflict',
  [EXIT.INTEGRITY]:
    'integrity failure, unknown master key, audit tampering found, the installation changed by hand (status), or a legacy import stopped on a row',
  [EXIT.CONFIGURATION]:
    'configuration error (master key, connection string: the database does not exist, authentication failed), the master key does not authorise the tenant, or tenant-secrets is not installed (status) or not ready in this database',
  [EXIT.UNAVAILABLE]:
    'the database is unavailable, read-only, out of connections or disk space, or a statement timed out, waited too long for a lock, deadlocked or failed to serialize; nothing was committed unless the connection was lost after the request was sent',
  [EXIT.PERMISSION]:
    'permission denied: the database role lacks the grant (migrate --grant-to for the data plane, --grant-operator-to for operator commands) or is not the schema owner',
  [EXIT.INTERRUPTED]:
    'interrupted (Ctrl-C, SIGTERM) or cancelled; finished batches are committed, run the command again to resume',
};

/** Words of `text` in lines of at most `width` characters, each prefixed with `indent`. */
function wrap(text: string, width: number, indent: string): string[] {
  const lines: string[] = [];
  let line = '';
  for (const word of text.split(' ')) {
    if (line && indent.length + line.length + 1 + word.length > width) {
      lines.push(line);
      line = word;
    } else line = line ? `${line} ${word}` : word;
  }
  if (line) lines.push(line);
  return lines.map((l, i) => (i === 0 ? l : `${indent}${l}`));
}

function exitCodesHelp(): string {
  const lines = ['Exit codes:'];
  for (const exit of Object.values(EXIT).sort((a, b) => a - b)) {
    const codes = [...new Set(ERROR_TABLE.filter((row) => row.exitCode === exit).map((row) => row.code))];
    const text = `${MEANING[exit]}${codes.length > 0 ? ` (${codes.join(', ')})` : ''}`;
    lines.push(`  ${String(exit).padEnd(5)}${wrap(text, 100, '       ').join('\n')}`);
  }
  return lines.join('\n');
}

/** The table printed by `tenant-secrets --help` and copied into docs/cli.md: derived from the error table. */
export const EXIT_CODES_HELP = exitCodesHelp();
