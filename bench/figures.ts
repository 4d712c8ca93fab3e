/**
 * The bench's figures: each one a value with its unit, and, when it has one, its target and whether
 * the run meets it. Printed as they come (stderr), then as a table or JSON by run.ts.
 */

export interface Figure {
  name: string;
  value: number;
  unit: string;
  /** e.g. '>= 0.9'; absent for figures printed without a target. */
  target?: string;
  meets?: boolean;
  note?: string;
}

export interface Target {
  op: '>=' | '<=' | '<';
  bound: number;
}

/** The release's targets (docs/performance.md): ratios to baselines measured in the same run. */
export const TARGETS = {
  /** One hot tenant / the same load over 16 tenants (get and set). */
  hotTenant: { op: '>=', bound: 0.9 },
  /** `get` / the one-statement audited read, at 4 and at 16 clients. */
  getVsAuditedRead4: { op: '>=', bound: 0.8 },
  getVsAuditedRead16: { op: '>=', bound: 0.7 },
  /** `set` and `rotate` / the one-statement upsert + audit insert, at 16 clients. */
  writeVsUpsert16: { op: '>=', bound: 0.5 },
  /** getMany(100) secrets/s / single gets/s. */
  getMany: { op: '>=', bound: 20 },
  /** A get while another transaction holds an open write of the same tenant, slowest, ms. */
  blockedGetMs: { op: '<', bound: 50 },
  /** set() on a key at many versions / on a key at 20. */
  versions: { op: '<=', bound: 1.25 },
  /** Throughput over 100,000 tenants x 10 secrets / the same load over 1,000 tenants. */
  manyTenants: { op: '>=', bound: 0.9 },
  /** RSS growth across the memory phase, MB. */
  rssGrowthMb: { op: '<=', bound: 64 },
  /** Master-key rotation: secret and version rows touched. */
  rotationRowsTouched: { op: '<=', bound: 0 },
  /** verifyAudit() records/s, both trails. */
  verifyRecordsPerSecond: { op: '>=', bound: 150_000 },
  /** verifyAudit() peak RSS growth, MB. */
  verifyRssMb: { op: '<=', bound: 100 },
  /** pruneAudit() of one day of 30, s. */
  pruneSeconds: { op: '<=', bound: 10 },
} as const satisfies Record<string, Target>;

export const figures: Figure[] = [];

export const log = (line: string) => process.stderr.write(`${line}\n`);

export const fmt = (n: number) =>
  !Number.isFinite(n)
    ? String(n)
    : Math.abs(n) >= 100
      ? n.toFixed(0)
      : Math.abs(n) >= 1
        ? n.toFixed(2)
        : n.toFixed(3);

function meets(value: number, target: Target): boolean {
  if (target.op === '>=') return value >= target.bound;
  if (target.op === '<=') return value <= target.bound;
  return value < target.bound;
}

/** Records a figure and prints it with its target and "meets" / "MISSES". */
export function figure(name: string, value: number, unit: string, target?: Target, note?: string): void {
  const f: Figure = { name, value, unit };
  if (target) {
    f.target = `${target.op} ${target.bound}`;
    f.meets = meets(value, target);
  }
  if (note) f.note = note;
  figures.push(f);
  log(
    `  ${name}: ${fmt(value)} ${unit}${f.target ? ` (target ${f.target}: ${f.meets ? 'meets' : 'MISSES'})` : ''}`,
  );
}

/** A Markdown table. */
export function table(headers: string[], rows: string[][]): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) => `| ${cells.map((c, i) => c.padEnd(widths[i] ?? 0)).join(' | ')} |`;
  return [line(headers), line(widths.map((w) => '-'.repeat(w))), ...rows.map(line)].join('\n');
}

/** The figures as table rows. */
export function figureRows(): string[][] {
  return figures.map((f) => [
    f.name,
    `${fmt(f.value)} ${f.unit}`,
    f.target ?? '',
    f.target ? (f.meets ? 'meets' : 'misses') : '',
    f.note ?? '',
  ]);
}
