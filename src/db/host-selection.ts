import { performance } from 'node:perf_hooks';
import pg from 'pg';
import { ConfigurationError, DatabaseReadOnlyError, DatabaseUnavailableError } from '../base/errors.js';
import type { ConnectionTarget, HostSpec, TargetSessionAttrs } from './connection-string.js';
import { sanitizedCause } from './driver-errors.js';
import { watchConnection } from './watch.js';

/**
 * Connections of a pool to the right server of a multi-host connection string, the way libpq's
 * `target_session_attrs` does it: each new connection tries the hosts in order, skips a host that
 * does not answer or refuses it, and (for `read-write` / `primary`) checks the session before the
 * pool hands it out, skipping a read-only server or a standby. node-postgres does neither by itself.
 *
 * Two additions over libpq, for failover: a host that failed is tried last for `RECHECK_MS` (as
 * pgjdbc's `hostRecheckSeconds`), so connections opened during an outage do not each wait on it
 * first; and a pooled connection is discarded, not reused, once its server answers SQLSTATE 25006
 * (read-only: a demoted primary) or once its host failed after it was opened.
 */

/** How long a host that failed stays at the back of the order (pgjdbc's `hostRecheckSeconds`: 10). */
export const RECHECK_MS = 10_000;

/** Why a host was skipped, in words fit for an error message (no server text, no data). */
interface HostFailure {
  host: string;
  reason: string;
  /** The server accepted the connection but the session does not fit `target_session_attrs`. */
  rejected: boolean;
  /** Authentication failed (28P01 / 28000): a configuration problem, not an outage. */
  auth: boolean;
  error: unknown;
}

const FAILURE = Symbol('tenant-secrets host failure');
type Tagged = { [FAILURE]?: HostFailure };

function tag(error: unknown, failure: HostFailure): void {
  if (typeof error === 'object' && error !== null) {
    Object.defineProperty(error, FAILURE, { value: failure, enumerable: false, configurable: true });
  }
}

function failureOf(error: unknown): HostFailure | undefined {
  const e = error as (Tagged & { cause?: Tagged }) | null | undefined;
  return e?.[FAILURE] ?? e?.cause?.[FAILURE];
}

/** The session did not fit `target_session_attrs`; replaced by a typed error before any caller sees it. */
class SessionRejected extends Error {}

/** A server's failure to connect, by its code only (server messages are not copied). */
function describe(error: unknown): string {
  const e = error as { code?: unknown; message?: unknown } | null;
  const code = typeof e?.code === 'string' ? e.code : undefined;
  const message = typeof e?.message === 'string' ? e.message : '';
  if (code === 'ECONNREFUSED') return 'connection refused (ECONNREFUSED)';
  if (code && /^E[A-Z]+$/.test(code)) return `network error (${code})`;
  if (code === '57P03') return 'not accepting connections (57P03: starting up, shutting down or in recovery)';
  if (code === '28P01' || code === '28000') return `authentication failed (${code})`;
  if (code === '53300') return 'too many connections (53300)';
  if (code) return `refused the connection (SQLSTATE ${code})`;
  if (/timeout/i.test(message)) return 'did not answer in time';
  if (/terminated/i.test(message)) return 'closed the connection';
  return 'could not be reached';
}

/**
 * Whether a failure to connect means the server is gone (no PostgreSQL answer at all, or one that is
 * shutting down or crashed), rather than a refusal by a running server (53300, 28P01, 3D000...).
 */
function isGone(code: unknown): boolean {
  return (
    typeof code !== 'string' || /^E[A-Z]+$/.test(code) || code.startsWith('57P') || code.startsWith('08')
  );
}

/** Which hosts to try, and which pooled connections to drop, for one pool. */
export class HostSelector {
  readonly #hosts: readonly HostSpec[];
  readonly #random: boolean;
  /** When each host last failed: it goes to the back of the order for `RECHECK_MS`. */
  readonly #marks = new Map<number, number>();
  /** When each host was last found gone or read-only: connections opened before then are not reused. */
  readonly #lostAt = new Map<number, number>();
  readonly #now: () => number;

  constructor(target: Pick<ConnectionTarget, 'hosts' | 'loadBalanceHosts'>, now = () => performance.now()) {
    this.#hosts = target.hosts;
    this.#random = target.loadBalanceHosts === 'random';
    this.#now = now;
  }

  get hosts(): readonly HostSpec[] {
    return this.#hosts;
  }

  /**
   * The host a new connection tries: the first one (or a random one, with `load_balance_hosts=random`)
   * not failed within `RECHECK_MS`; when all did, the one that failed longest ago.
   */
  pick(): number {
    const now = this.#now();
    const fresh: number[] = [];
    let oldest = 0;
    let oldestAt = Number.POSITIVE_INFINITY;
    for (let i = 0; i < this.#hosts.length; i++) {
      const at = this.#marks.get(i);
      if (at === undefined || now - at >= RECHECK_MS) fresh.push(i);
      else if (at < oldestAt) {
        oldest = i;
        oldestAt = at;
      }
    }
    if (fresh.length === 0) return oldest;
    return this.#random ? (fresh[Math.floor(Math.random() * fresh.length)] ?? 0) : (fresh[0] ?? 0);
  }

  /**
   * The host failed (did not connect, or its session did not fit): try it last for a while. `lost`:
   * the server is gone or no longer takes writes (network failure, shut down, read-only), so the
   * pool's connections to it are dropped too; a refusal such as too many connections or a wrong
   * password says nothing about the connections already open.
   */
  markFailed(index: number, lost: boolean): void {
    const now = this.#now();
    this.#marks.set(index, now);
    if (lost) this.#lostAt.set(index, now);
  }

  markGood(index: number): void {
    this.#marks.delete(index);
  }

  /** A connection to `index` opened at `openedAt` predates its host's loss: drop it. */
  isStale(index: number, openedAt: number): boolean {
    const at = this.#lostAt.get(index);
    return at !== undefined && at >= openedAt;
  }

  now(): number {
    return this.#now();
  }
}

interface ConnectionEvents {
  on(
    event: 'parameterStatus',
    listener: (msg: { parameterName: string; parameterValue: string }) => void,
  ): void;
  on(event: 'errorMessage', listener: (msg: { code?: string }) => void): void;
}

/** What the pool knows of one of its connections. */
interface Targeted {
  readonly hostIndex: number;
  readonly openedAt: number;
  readonly readOnlySeen: boolean;
}

function clientClass(selector: HostSelector, attrs: TargetSessionAttrs): typeof pg.Client {
  return class TargetedClient extends pg.Client implements Targeted {
    readonly hostIndex: number;
    openedAt = Number.POSITIVE_INFINITY;
    readOnlySeen = false;
    readonly #reported = new Map<string, string>();

    constructor(config?: pg.ClientConfig) {
      super(config);
      // An 'error' listener from construction on, as for every client the library creates (watch.ts).
      watchConnection(this);
      this.hostIndex = selector.pick();
      const spec = selector.hosts[this.hostIndex];
      // Read by Client#connect for the socket and TLS, and by pgpass for the password of this host.
      const params = (this as unknown as { connectionParameters: { host: string; port: number } })
        .connectionParameters;
      if (spec?.host !== undefined) this.host = params.host = spec.host;
      if (spec?.port !== undefined) this.port = params.port = spec.port;
      const events = this.connection as unknown as ConnectionEvents;
      events.on('parameterStatus', (msg) => this.#reported.set(msg.parameterName, msg.parameterValue));
      events.on('errorMessage', (msg) => {
        if (msg.code !== '25006') return;
        // The server refuses writes now (a primary demoted under us, or made read-only): this
        // connection is useless to tenant-secrets, and so are the others to this host.
        this.readOnlySeen = true;
        if (attrs !== 'any') selector.markFailed(this.hostIndex, true);
      });
    }

    get label(): string {
      return this.host?.startsWith('/') ? this.host : `${this.host}:${this.port}`;
    }

    override connect(): Promise<pg.Client>;
    override connect(callback: ((err: Error) => void) | ((err: null, c: pg.Client) => void)): void;
    override connect(
      callback?: ((err: Error) => void) | ((err: null, c: pg.Client) => void),
    ): Promise<pg.Client> | undefined {
      const done = this.#open();
      if (!callback) return done;
      const reply = callback as (err: Error | null, c?: pg.Client) => void;
      done.then(
        (client) => reply(null, client),
        (error: Error) => reply(error),
      );
      return undefined;
    }

    async #open(): Promise<pg.Client> {
      try {
        await super.connect();
      } catch (error) {
        const code = (error as { code?: unknown }).code;
        selector.markFailed(this.hostIndex, isGone(code));
        tag(error, {
          host: this.label,
          reason: describe(error),
          rejected: false,
          auth: code === '28P01' || code === '28000',
          error,
        });
        throw error;
      }
      let mismatch: string | undefined;
      try {
        mismatch = await this.#mismatch();
      } catch (error) {
        await this.end().catch(() => undefined);
        selector.markFailed(this.hostIndex, isGone((error as { code?: unknown }).code));
        tag(error, { host: this.label, reason: describe(error), rejected: false, auth: false, error });
        throw error;
      }
      if (mismatch !== undefined) {
        await this.end().catch(() => undefined);
        selector.markFailed(this.hostIndex, true);
        const error = new SessionRejected(`${this.label} is ${mismatch}`);
        tag(error, { host: this.label, reason: mismatch, rejected: true, auth: false, error: undefined });
        throw error;
      }
      selector.markGood(this.hostIndex);
      this.openedAt = selector.now();
      return this;
    }

    /**
     * Why this session does not fit `target_session_attrs`, or undefined. PostgreSQL 14 and later
     * report `in_hot_standby` and `default_transaction_read_only` when the session starts, so the check
     * costs nothing there; otherwise (older servers, some poolers) it asks, as libpq does.
     */
    async #mismatch(): Promise<string | undefined> {
      if (attrs === 'any') return undefined;
      const standby = this.#reported.get('in_hot_standby');
      if (attrs === 'primary') {
        if (standby !== undefined) return standby === 'on' ? 'a standby (in_hot_standby = on)' : undefined;
        const rows = (await super.query('SELECT pg_catalog.pg_is_in_recovery() AS recovery')).rows;
        return rows[0]?.recovery === true ? 'a standby (pg_is_in_recovery())' : undefined;
      }
      const readOnly = this.#reported.get('default_transaction_read_only');
      if (standby !== undefined && readOnly !== undefined) {
        if (standby === 'on') return 'read-only (a hot standby)';
        return readOnly === 'on' ? 'read-only (default_transaction_read_only = on)' : undefined;
      }
      const rows = (await super.query('SHOW transaction_read_only')).rows;
      return rows[0]?.transaction_read_only === 'on' ? 'read-only (transaction_read_only = on)' : undefined;
    }
  };
}

/** Thrown when no host gave a fitting connection in one pass over the hosts. */
function noHostError(failures: readonly HostFailure[], last: unknown, attrs: TargetSessionAttrs): unknown {
  const list = failures.map((f) => `${f.host}: ${f.reason}`).join('; ');
  const wanted = attrs === 'primary' ? 'a primary' : 'a server that accepts writes';
  if (failures.every((f) => f.rejected)) {
    return new DatabaseReadOnlyError(
      `no host of the connection string is ${wanted} (target_session_attrs=${attrs}): ${list}. Every tenant-secrets operation, reads included, writes its audit record, so it needs the primary; during a failover, retry once a standby is promoted`,
    );
  }
  // One host: the driver's own error, as without a host list (driver-errors.ts maps it).
  if (failures.length === 1) return last;
  if (failures.every((f) => f.auth)) {
    return new ConfigurationError(`database authentication failed on every host: ${list}`, {
      cause: sanitizedCause(failures[0]?.error),
    });
  }
  const network = failures.find((f) => !f.rejected)?.error;
  return new DatabaseUnavailableError(
    `no host of the connection string gave ${wanted} (target_session_attrs=${attrs}): ${list}; nothing was sent. During a failover this lasts until a standby is promoted: retry`,
    { cause: sanitizedCause(network) },
  );
}

/**
 * A pg Pool whose new connections go to the host `target_session_attrs` asks for, trying each host
 * at most once per checkout, and whose checkouts skip connections made stale by a failover.
 */
class TargetedPool extends pg.Pool {
  readonly #selector: HostSelector;
  readonly #attrs: TargetSessionAttrs;

  constructor(config: pg.PoolConfig, selector: HostSelector, attrs: TargetSessionAttrs) {
    super({ ...config, Client: clientClass(selector, attrs) as unknown as pg.PoolConfig['Client'] });
    this.#selector = selector;
    this.#attrs = attrs;
  }

  override connect(): Promise<pg.PoolClient>;
  override connect(
    callback: (
      err: Error | undefined,
      client: pg.PoolClient | undefined,
      done: (release?: unknown) => void,
    ) => void,
  ): void;
  override connect(
    callback?: (
      err: Error | undefined,
      client: pg.PoolClient | undefined,
      done: (release?: unknown) => void,
    ) => void,
  ): Promise<pg.PoolClient> | undefined {
    const done = this.#checkout();
    if (!callback) return done;
    done.then(
      (client) => callback(undefined, client, client.release as (release?: unknown) => void),
      (error: Error) => callback(error, undefined, () => undefined),
    );
    return undefined;
  }

  async #checkout(): Promise<pg.PoolClient> {
    const failures: HostFailure[] = [];
    const hosts = this.#selector.hosts.length;
    // Stale idle connections are dropped one by one; the bound only guards against a loop.
    for (let dropped = 0; dropped <= (this.options.max ?? 10) + hosts; ) {
      let client: pg.PoolClient;
      try {
        client = await super.connect();
      } catch (error) {
        const failure = failureOf(error);
        // The pool's own refusals (busy pool, pool ended) are not about a host.
        if (!failure) throw error;
        // pg-pool's connection timeout (it closes the socket): say so, not "closed the connection".
        const timedOut = /due to connection timeout/.test((error as Error).message);
        const seconds = (this.options.connectionTimeoutMillis ?? 0) / 1000;
        failures.push(timedOut ? { ...failure, reason: `did not answer within ${seconds} s` } : failure);
        if (failures.length >= hosts) throw noHostError(failures, error, this.#attrs);
        continue;
      }
      const targeted = client as unknown as Targeted;
      if (targeted.readOnlySeen || this.#selector.isStale(targeted.hostIndex, targeted.openedAt)) {
        client.release(new Error('connection to a host that failed over'));
        dropped++;
        continue;
      }
      const release = client.release;
      client.release = (error?: Error | boolean) =>
        release(error || (targeted.readOnlySeen ? new Error('the server turned read-only') : undefined));
      return client;
    }
    throw new DatabaseUnavailableError('no usable connection after dropping those to a failed host; retry');
  }
}

/**
 * A pg Pool for `target`: with one host and no `target_session_attrs`, node-postgres as it is, except
 * that a connection whose server answers 25006 is not reused.
 */
export function createTargetedPool(target: ConnectionTarget, config: pg.PoolConfig): pg.Pool {
  const selector = new HostSelector(target);
  return new TargetedPool(
    { ...config, connectionString: target.connectionString },
    selector,
    target.targetSessionAttrs,
  );
}
