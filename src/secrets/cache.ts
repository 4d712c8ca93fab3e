import { inspect } from 'node:util';
import { ConfigurationError } from '../base/errors.js';

/**
 * Options of the opt-in in-process cache of values read by `get` / `getWithVersion`.
 *
 * A value is served from memory for at most `ttlMs` after it was read (and never after the secret's
 * `expiresAt`); writes made through this manager drop it at once. Changes made by other processes
 * are therefore seen within `ttlMs`: that is the staleness bound. Reads served from the cache are
 * audited in aggregate: every `auditIntervalMs` (and at `close()`), one `secret.read` record per
 * secret, version and actor, with `details: { cached: true, count, since, until }`.
 */
export interface CacheOptions {
  /** How long a value is served from memory, 1-86400000 ms (default 60000). */
  ttlMs?: number;
  /** Most values held, least recently used dropped first, 1-1000000 (default 1000). */
  maxEntries?: number;
  /** How often cached reads are written to the audit trail, 1000-3600000 ms (default 60000). */
  auditIntervalMs?: number;
}

/** A cached value: held in a private field, so logging a cache entry never prints it. */
class CachedValue {
  readonly #value: string;
  constructor(value: string) {
    this.#value = value;
  }
  get value(): string {
    return this.#value;
  }
  [inspect.custom](): string {
    return 'CachedValue(<redacted>)';
  }
  toJSON(): string {
    return '<redacted>';
  }
}

interface Entry {
  value: CachedValue;
  version: number;
  expiresAt: Date | null;
  until: number;
}

/** Cache hits of one secret, version and actor since the last flush. */
export interface CachedReads {
  tenantId: string;
  keyName: string;
  version: number;
  actor: string;
  count: number;
  /** When the first and the last of these hits happened (`performance.now()`: a monotonic clock). */
  first: number;
  last: number;
}

/** What a read started, for `set()`: the cache's clock when the read began. */
export type ReadTicket = number;

const key = (tenantId: string, keyName: string) => `${tenantId}\u0000${keyName}`;

function setting(value: unknown, fallback: number, min: number, max: number, name: string): number {
  const result = value ?? fallback;
  if (typeof result !== 'number' || !Number.isInteger(result) || result < min || result > max) {
    throw new ConfigurationError(`cache.${name} must be an integer from ${min} to ${max}`);
  }
  return result;
}

export class SecretCache {
  readonly ttlMs: number;
  readonly maxEntries: number;
  readonly auditIntervalMs: number;
  readonly #entries = new Map<string, Entry>();
  readonly #hits = new Map<string, CachedReads>();
  /**
   * A write of this process may finish while its own read of the same secret is still in flight: the
   * read must not then put the value it got (older than the write) back into the cache. Every
   * invalidation is stamped with a counter; a read notes the counter when it starts, and its result is
   * cached only if nothing it covers was invalidated since. Stamps older than every read in flight are
   * forgotten.
   */
  #clock = 0;
  readonly #invalidated = new Map<string, number>();
  readonly #reading = new Map<number, number>();

  constructor(options: CacheOptions) {
    const known = new Set(['ttlMs', 'maxEntries', 'auditIntervalMs']);
    const unknown = Object.keys(options).filter((k) => !known.has(k));
    if (unknown.length > 0)
      throw new ConfigurationError(`unknown cache option ${JSON.stringify(unknown[0]?.slice(0, 40))}`);
    this.ttlMs = setting(options.ttlMs, 60_000, 1, 86_400_000, 'ttlMs');
    this.maxEntries = setting(options.maxEntries, 1000, 1, 1_000_000, 'maxEntries');
    this.auditIntervalMs = setting(options.auditIntervalMs, 60_000, 1000, 3_600_000, 'auditIntervalMs');
  }

  /** The cached value when fresh (and marks it recently used). */
  get(
    tenantId: string,
    keyName: string,
  ): { value: string; version: number; expiresAt: Date | null } | undefined {
    const k = key(tenantId, keyName);
    const entry = this.#entries.get(k);
    if (!entry) return undefined;
    if (Date.now() >= entry.until) {
      this.#entries.delete(k);
      return undefined;
    }
    this.#entries.delete(k);
    this.#entries.set(k, entry);
    return { value: entry.value.value, version: entry.version, expiresAt: entry.expiresAt };
  }

  /** Call before reading from the database; pass the ticket to `set()` (or `done()` on failure). */
  beginRead(): ReadTicket {
    const ticket = this.#clock;
    this.#reading.set(ticket, (this.#reading.get(ticket) ?? 0) + 1);
    return ticket;
  }

  /** A read that will not call `set()` (it failed, or found nothing). */
  done(ticket: ReadTicket): void {
    const n = (this.#reading.get(ticket) ?? 1) - 1;
    if (n > 0) this.#reading.set(ticket, n);
    else this.#reading.delete(ticket);
    if (this.#reading.size === 0) this.#invalidated.clear();
  }

  #invalidatedSince(tenantId: string, keyName: string, ticket: ReadTicket): boolean {
    return (
      (this.#invalidated.get(key(tenantId, keyName)) ?? -1) >= ticket ||
      (this.#invalidated.get(`${tenantId}\u0000`) ?? -1) >= ticket
    );
  }

  set(
    tenantId: string,
    keyName: string,
    value: string,
    version: number,
    expiresAt: Date | null,
    ticket: ReadTicket,
  ): void {
    const stale = this.#invalidatedSince(tenantId, keyName, ticket);
    this.done(ticket);
    if (stale) return;
    const until = Math.min(
      Date.now() + this.ttlMs,
      expiresAt ? expiresAt.getTime() : Number.POSITIVE_INFINITY,
    );
    if (until <= Date.now()) return;
    const k = key(tenantId, keyName);
    this.#entries.delete(k);
    this.#entries.set(k, { value: new CachedValue(value), version, expiresAt, until });
    while (this.#entries.size > this.maxEntries) {
      const oldest = this.#entries.keys().next().value;
      if (oldest === undefined) break;
      this.#entries.delete(oldest);
    }
  }

  /** Drops one secret, or every secret of a tenant; reads in flight will not put them back. */
  invalidate(tenantId: string, keyName?: string): void {
    if (this.#reading.size > 0) {
      this.#invalidated.set(
        keyName === undefined ? `${tenantId}\u0000` : key(tenantId, keyName),
        this.#clock,
      );
    }
    this.#clock++;
    if (keyName !== undefined) {
      this.#entries.delete(key(tenantId, keyName));
      return;
    }
    const prefix = `${tenantId}\u0000`;
    for (const k of [...this.#entries.keys()]) if (k.startsWith(prefix)) this.#entries.delete(k);
  }

  clear(): void {
    this.#entries.clear();
  }

  get size(): number {
    return this.#entries.size;
  }

  recordHit(tenantId: string, keyName: string, version: number, actor: string): void {
    const k = `${key(tenantId, keyName)}\u0000${version}\u0000${actor}`;
    const now = performance.now();
    const hit = this.#hits.get(k);
    if (hit) {
      hit.count++;
      hit.last = now;
    } else this.#hits.set(k, { tenantId, keyName, version, actor, count: 1, first: now, last: now });
  }

  /** The hits since the last call, cleared. */
  drainHits(): CachedReads[] {
    const out = [...this.#hits.values()];
    this.#hits.clear();
    return out;
  }

  /** Puts hits back after a failed flush (they are reported with the next one). */
  restoreHits(hits: CachedReads[]): void {
    for (const hit of hits) {
      const k = `${key(hit.tenantId, hit.keyName)}\u0000${hit.version}\u0000${hit.actor}`;
      const current = this.#hits.get(k);
      if (current) {
        current.count += hit.count;
        current.first = Math.min(current.first, hit.first);
        current.last = Math.max(current.last, hit.last);
      } else this.#hits.set(k, { ...hit });
    }
  }

  [inspect.custom](): string {
    return `SecretCache(${this.#entries.size} entries, ttl ${this.ttlMs} ms)`;
  }

  toJSON(): { entries: number } {
    return { entries: this.#entries.size };
  }
}
