/** What every phase of the bench gets: the pool, sizes, a manager factory, and the run's flags. */
import type pg from 'pg';
import type { SecretsManager } from '../src/index.js';

export interface Sizes {
  /** Seconds per load phase. */
  seconds: number;
  /** Rounds per side of each A/B comparison. */
  rounds: number;
  trailRecords: number;
  shortChains: number;
  rotationTenants: number;
  versions: number;
  rssOps: number;
  /** Tenants x secrets of the tenants-at-scale figure (compared with tenants / 100). */
  scaleTenants: number;
  scaleSecrets: number;
  quick: boolean;
}

export interface BenchContext {
  pool: pg.Pool;
  url: string;
  /** Whether the server is BENCH_DATABASE_URL's (shared), not the bench's own. */
  external: boolean;
  /** Prefix of the bench's schemas (dropped at the end). */
  prefix: string;
  sizes: Sizes;
  masterKey: string;
  /** A manager on `schema` of this pool (closed and its schema dropped at the end). */
  newManager(schema: string, options?: Record<string, unknown>): SecretsManager;
  /** Closes a manager and drops its schema now. */
  dropSchema(schema: string): Promise<void>;
}

/** Clients of the load phases (and the hot-tenant comparison). */
export const MAX_CLIENTS = 16;
