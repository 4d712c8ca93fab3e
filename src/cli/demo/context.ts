import type pg from 'pg';
import type { SecretsManager } from '../../api/manager.js';
import type { MasterKey } from '../../crypto/master-key.js';
import type { PoolLike } from '../../db/queryable.js';
import type { VersionInfo } from '../../secrets/operations.js';
import { table } from '../io.js';

/** What every demo step can use. */
export interface DemoContext {
  /** Seals audit records only when asked (`sealAudit()`, or verification), so steps can show both states. */
  readonly manager: SecretsManager;
  /** Superuser pool on the throwaway database, for showing (and tampering with) what is stored. */
  readonly pool: PoolLike & pg.Pool;
  readonly tenantA: string;
  readonly tenantB: string;
  /** The throwaway master key of `manager`. */
  readonly masterKey: MasterKey;
  /** Prints an indented line of the step's narration. */
  say(line?: string): void;
}

/** One step of `tenant-secrets demo`. Add a step by writing it in demo/ and listing it in DEMO_STEPS (demo.ts). */
export interface DemoStep {
  readonly title: string;
  run(ctx: DemoContext): Promise<void>;
}

/** Shortened hex of a byte string: head…tail (n bytes). */
export function shortHex(bytes: Buffer, keep = 12): string {
  const hex = bytes.toString('hex');
  if (bytes.length <= keep * 2) return `\\x${hex}`;
  return `\\x${hex.slice(0, keep * 2)}…${hex.slice(-8)} (${bytes.length} bytes)`;
}

/** The rows of one query on the demo's superuser pool. */
export async function rows<R>(pool: PoolLike, sql: string, params: unknown[] = []): Promise<R[]> {
  return (await pool.query(sql, params)).rows as R[];
}

/** Label of an audit chain (the system chain has the empty id). */
export const chainLabel = (chainId: string) => chainId || '(system)';

/** A version history as a table, one `say` per line. */
export function printHistory(history: VersionInfo[], say: (line?: string) => void): void {
  for (const line of table(
    ['VERSION', 'ORIGIN', 'STATE', 'MARK'],
    history.map((v) => [
      String(v.version),
      v.origin,
      v.state,
      v.isCurrent ? 'current' : v.isPrevious ? 'previous' : '',
    ]),
  ).split('\n'))
    say(line);
}
