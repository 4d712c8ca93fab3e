import { ConfigurationError } from '../base/errors.js';

/**
 * Which server of a multi-host connection string a connection may use, as libpq's
 * `target_session_attrs`. Only the values that can serve tenant-secrets are accepted: every operation,
 * reads included, writes its audit record, so a session on a standby would fail every call.
 */
export type TargetSessionAttrs = 'any' | 'read-write' | 'primary';

/** One host of a connection string; `undefined` fields fall back to node-postgres's defaults. */
export interface HostSpec {
  host: string | undefined;
  port: number | undefined;
}

/** What a connection string says about where to connect. */
export interface ConnectionTarget {
  /**
   * A connection string node-postgres reads for everything but the host and port (user, password,
   * database, TLS, options): the given one, with only its first host and without the parameters
   * handled here.
   */
  connectionString: string;
  /** The hosts, in the order given (at least one). */
  hosts: readonly HostSpec[];
  targetSessionAttrs: TargetSessionAttrs;
  /** libpq's `load_balance_hosts`: `random` tries the hosts in a random order per connection. */
  loadBalanceHosts: 'disable' | 'random';
  /**
   * True when the string was used as given (one host, none of the parameters above): node-postgres
   * alone reads it, host and port included.
   */
  unchanged: boolean;
}

const URL_FORM = /^(postgres(?:ql)?:\/\/)([^/?#]*)(.*)$/is;
const KEYWORD_FORM = /^\s*[A-Za-z_]+\s*=/;
const HANDLED = new Set(['target_session_attrs', 'load_balance_hosts', 'host', 'port']);
const REFUSED_ATTRS: Record<string, string> = {
  'read-only': 'a read-only session',
  standby: 'a standby',
  'prefer-standby': 'a standby',
};

/**
 * Reads a connection string in libpq's syntax, with several hosts where libpq allows them:
 * `postgres://user@h1:5432,h2:5433/db?target_session_attrs=read-write`,
 * `postgres:///db?host=h1,h2&port=5432,5433`, or the keyword form `host=h1,h2 port=5432,5433 dbname=db`.
 * Messages never quote the string (it may hold a password).
 * @throws {ConfigurationError} malformed host list, port, or parameter value.
 */
export function parseConnectionTarget(connectionString: string): ConnectionTarget {
  if (KEYWORD_FORM.test(connectionString) && !URL_FORM.test(connectionString)) {
    return parseUrl(keywordsToUrl(connectionString), false);
  }
  const match = URL_FORM.exec(connectionString);
  if (!match) {
    // A socket path or something node-postgres reads in its own way: left to it, as before.
    return single(connectionString);
  }
  return parseUrl(connectionString, true);
}

function single(connectionString: string): ConnectionTarget {
  return {
    connectionString,
    hosts: [{ host: undefined, port: undefined }],
    targetSessionAttrs: 'any',
    loadBalanceHosts: 'disable',
    unchanged: true,
  };
}

function parseUrl(url: string, given: boolean): ConnectionTarget {
  const [, scheme = '', authority = '', rest = ''] = URL_FORM.exec(url) ?? [];
  const at = authority.lastIndexOf('@');
  const userinfo = authority.slice(0, at + 1);
  const hostList = authority.slice(at + 1);
  const queryStart = rest.indexOf('?');
  const hashStart = rest.indexOf('#');
  const path =
    queryStart === -1 ? (hashStart === -1 ? rest : rest.slice(0, hashStart)) : rest.slice(0, queryStart);
  const query =
    queryStart === -1 ? '' : rest.slice(queryStart + 1, hashStart > queryStart ? hashStart : undefined);
  const kept: string[] = [];
  const params = new Map<string, string>();
  for (const segment of query.split('&')) {
    if (segment === '') continue;
    const eq = segment.indexOf('=');
    const key = decodeParam(eq === -1 ? segment : segment.slice(0, eq));
    if (HANDLED.has(key)) params.set(key, decodeParam(eq === -1 ? '' : segment.slice(eq + 1)));
    else kept.push(segment);
  }

  const entries = hostList.split(',').map((entry, index, all) => parseHostEntry(entry, index, all.length));
  let hosts: HostSpec[] = entries;
  const queryHosts = params.get('host');
  if (queryHosts !== undefined) {
    hosts = queryHosts.split(',').map((host) => ({ host: host === '' ? undefined : host, port: undefined }));
    // A port written in the authority applies to the hosts of the parameter, as libpq reads it.
    const authorityPort = entries.length === 1 ? entries[0]?.port : undefined;
    if (authorityPort !== undefined) hosts = hosts.map((h) => ({ ...h, port: authorityPort }));
  }
  const queryPorts = params.get('port');
  if (queryPorts !== undefined) {
    const ports = queryPorts.split(',').map((port, index, all) => parsePort(port, index, all.length));
    if (ports.length !== 1 && ports.length !== hosts.length) {
      throw new ConfigurationError(
        `connection string: ${ports.length} ports for ${hosts.length} hosts (give one port for all hosts, or one per host)`,
      );
    }
    hosts = hosts.map((h, i) => ({ ...h, port: ports[ports.length === 1 ? 0 : i] ?? h.port }));
  }

  const targetSessionAttrs = targetAttrs(params.get('target_session_attrs'));
  const balance = params.get('load_balance_hosts') ?? 'disable';
  if (balance !== 'disable' && balance !== 'random') {
    throw new ConfigurationError(
      `connection string: load_balance_hosts must be disable or random (got ${JSON.stringify(balance.slice(0, 40))})`,
    );
  }
  // One host and none of the parameters above: node-postgres reads the string exactly as before.
  if (given && hosts.length === 1 && params.size === 0) return single(url);
  // node-postgres reads the rest of the string: give it the first host only (a host it can parse),
  // and none of the parameters read here. The host and port of each connection are set per attempt.
  const first = hostList.split(',')[0] ?? '';
  const firstEntry = queryHosts === undefined ? first : 'localhost';
  const tail = `${kept.length > 0 ? `?${kept.join('&')}` : ''}${hashStart === -1 ? '' : rest.slice(hashStart)}`;
  return {
    connectionString: `${scheme}${userinfo}${firstEntry}${path}${tail}`,
    hosts,
    targetSessionAttrs,
    loadBalanceHosts: balance,
    unchanged: false,
  };
}

function decodeParam(text: string): string {
  try {
    return decodeURIComponent(text.replace(/\+/g, ' '));
  } catch {
    throw new ConfigurationError('connection string: a parameter is not valid percent-encoding');
  }
}

function targetAttrs(value: string | undefined): TargetSessionAttrs {
  if (value === undefined || value === 'any' || value === 'read-write' || value === 'primary') {
    return value ?? 'any';
  }
  const refused = REFUSED_ATTRS[value];
  if (refused) {
    throw new ConfigurationError(
      `connection string: target_session_attrs=${value} would connect tenant-secrets to ${refused}, where every operation fails (each one, reads included, writes its audit record); use read-write`,
    );
  }
  throw new ConfigurationError(
    `connection string: target_session_attrs must be any, read-write or primary (got ${JSON.stringify(value.slice(0, 40))})`,
  );
}

function parseHostEntry(entry: string, index: number, count: number): HostSpec {
  const where = count > 1 ? ` (host ${index + 1} of ${count})` : '';
  const bracketed = /^\[([^\]]*)\](?::(.*))?$/.exec(entry);
  const plain = bracketed ? null : /^([^:[\]]*)(?::(.*))?$/.exec(entry);
  const parts = bracketed ?? plain;
  if (!parts) {
    throw new ConfigurationError(`connection string: a host is not host[:port] or [ipv6][:port]${where}`);
  }
  let host: string;
  try {
    host = decodeURIComponent(parts[1] ?? '');
  } catch {
    throw new ConfigurationError(`connection string: a host is not valid percent-encoding${where}`);
  }
  const port = parts[2] === undefined || parts[2] === '' ? undefined : parsePort(parts[2], index, count);
  return { host: host === '' ? undefined : host, port };
}

function parsePort(text: string, index: number, count: number): number | undefined {
  if (text === '') return undefined;
  const port = /^\d{1,5}$/.test(text) ? Number(text) : Number.NaN;
  if (!(port >= 1 && port <= 65_535)) {
    const where = count > 1 ? ` (port ${index + 1} of ${count})` : '';
    throw new ConfigurationError(`connection string: a port must be a number from 1 to 65535${where}`);
  }
  return port;
}

/**
 * libpq's keyword/value form (`host=h1,h2 port=5432 dbname=app user=app`), quoting and escapes
 * included, as the equivalent URL.
 */
function keywordsToUrl(text: string): string {
  const values = new Map<string, string>();
  let i = 0;
  const skipSpace = () => {
    while (i < text.length && /\s/.test(text.charAt(i))) i++;
  };
  for (;;) {
    skipSpace();
    if (i >= text.length) break;
    const key = /^[A-Za-z_]+/.exec(text.slice(i))?.[0];
    if (!key) throw new ConfigurationError('connection string: expected keyword=value pairs');
    i += key.length;
    skipSpace();
    if (text.charAt(i) !== '=') {
      throw new ConfigurationError(`connection string: missing "=" after ${JSON.stringify(key)}`);
    }
    i++;
    skipSpace();
    let value = '';
    const quoted = text.charAt(i) === "'";
    if (quoted) i++;
    for (;;) {
      if (i >= text.length) {
        if (quoted) throw new ConfigurationError('connection string: unterminated quoted value');
        break;
      }
      const c = text.charAt(i);
      if (quoted ? c === "'" : /\s/.test(c)) {
        if (quoted) i++;
        break;
      }
      if (c === '\\' && i + 1 < text.length) {
        value += text.charAt(i + 1);
        i += 2;
        continue;
      }
      value += c;
      i++;
    }
    values.set(key, value);
  }
  const take = (key: string) => {
    const value = values.get(key);
    values.delete(key);
    return value;
  };
  const user = take('user');
  const password = take('password');
  const dbname = take('dbname');
  const hostParam = take('host');
  const portParam = take('port');
  const hosts = (hostParam ?? '').split(',');
  const ports = portParam === undefined ? [] : portParam.split(',');
  if (ports.length > 1 && ports.length !== hosts.length) {
    throw new ConfigurationError(
      `connection string: ${ports.length} ports for ${hosts.length} hosts (give one port for all hosts, or one per host)`,
    );
  }
  const authority = hosts
    .map((host, index) => {
      const name = host.includes(':') && !host.startsWith('/') ? `[${host}]` : encodeURIComponent(host);
      const port = ports.length === 1 ? ports[0] : ports[index];
      return port ? `${name}:${port}` : name;
    })
    .join(',');
  const credentials =
    user !== undefined || password !== undefined
      ? `${encodeURIComponent(user ?? '')}${password !== undefined ? `:${encodeURIComponent(password)}` : ''}@`
      : '';
  const query = [...values].map(([key, value]) => `${key}=${encodeURIComponent(value)}`).join('&');
  return `postgresql://${credentials}${authority}/${encodeURIComponent(dbname ?? '')}${query ? `?${query}` : ''}`;
}
