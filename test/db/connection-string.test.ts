// suite-scope: once — parses connection strings and picks hosts; no server involved
import { describe, expect, it } from 'vitest';
import { ConfigurationError } from '../../src/base/errors.js';
import { parseConnectionTarget } from '../../src/db/connection-string.js';
import { HostSelector, RECHECK_MS } from '../../src/db/host-selection.js';
import { createSecretsManager } from '../../src/index.js';
import { TEST_KEY } from '../support/db.js';

const parse = parseConnectionTarget;

describe('parseConnectionTarget', () => {
  it('leaves a one-host string without target_session_attrs exactly as it was', () => {
    for (const url of [
      'postgres://app:p%40ss@db.internal:6432/app?sslmode=require&application_name=x',
      'postgresql://localhost/app',
      'postgres://%2Fvar%2Frun%2Fpostgresql/app',
      'postgres://[::1]:5433/app',
    ]) {
      const target = parse(url);
      expect(target.unchanged, url).toBe(true);
      expect(target.connectionString).toBe(url);
      expect(target.hosts).toHaveLength(1);
      expect(target.targetSessionAttrs).toBe('any');
    }
  });

  it('reads a pg_auto_failover formation URI: hosts in order, each with its port, the rest for node-postgres', () => {
    const target = parse(
      'postgres://app:s3cret@10.0.0.1:5432,10.0.0.2:5433/app?target_session_attrs=read-write&sslmode=require',
    );
    expect(target.hosts).toEqual([
      { host: '10.0.0.1', port: 5432 },
      { host: '10.0.0.2', port: 5433 },
    ]);
    expect(target.targetSessionAttrs).toBe('read-write');
    expect(target.loadBalanceHosts).toBe('disable');
    expect(target.connectionString).toBe('postgres://app:s3cret@10.0.0.1:5432/app?sslmode=require');
  });

  it('hosts without a port, IPv6 in brackets, socket paths, and a default host', () => {
    const target = parse('postgresql://u@a,[fd00::2]:5433,%2Ftmp%2Fpg,:6000/db?target_session_attrs=primary');
    expect(target.hosts).toEqual([
      { host: 'a', port: undefined },
      { host: 'fd00::2', port: 5433 },
      { host: '/tmp/pg', port: undefined },
      { host: undefined, port: 6000 },
    ]);
    expect(target.targetSessionAttrs).toBe('primary');
  });

  it('host and port lists as query parameters (one port for all hosts, or one each)', () => {
    expect(parse('postgres:///db?host=h1,h2&port=7000').hosts).toEqual([
      { host: 'h1', port: 7000 },
      { host: 'h2', port: 7000 },
    ]);
    expect(parse('postgres:///db?host=h1,h2&port=7000,7001').hosts).toEqual([
      { host: 'h1', port: 7000 },
      { host: 'h2', port: 7001 },
    ]);
    expect(() => parse('postgres:///db?host=h1,h2,h3&port=7000,7001')).toThrow(/2 ports for 3 hosts/);
  });

  it("reads libpq's keyword form, quoting and escapes included", () => {
    const target = parse(
      "host=h1,h2 port=5432,5433 dbname=app user=app password='it\\'s \\\\ here' target_session_attrs=read-write sslmode=disable",
    );
    expect(target.hosts).toEqual([
      { host: 'h1', port: 5432 },
      { host: 'h2', port: 5433 },
    ]);
    expect(target.targetSessionAttrs).toBe('read-write');
    const url = new URL(target.connectionString);
    expect(url.hostname).toBe('h1');
    expect(url.pathname).toBe('/app');
    expect(url.searchParams.get('sslmode')).toBe('disable');
    expect(decodeURIComponent(url.password)).toBe("it's \\ here");
  });

  it('load_balance_hosts=random is accepted; other values are not', () => {
    expect(parse('postgres://a,b/db?load_balance_hosts=random').loadBalanceHosts).toBe('random');
    expect(() => parse('postgres://a,b/db?load_balance_hosts=sometimes')).toThrow(ConfigurationError);
  });

  it('refuses target_session_attrs that would put tenant-secrets on a standby, saying why', () => {
    for (const value of ['standby', 'read-only', 'prefer-standby']) {
      expect(() => parse(`postgres://a,b/db?target_session_attrs=${value}`)).toThrow(
        /every operation fails .*writes its audit record.*use read-write/,
      );
    }
    expect(() => parse('postgres://a,b/db?target_session_attrs=readwrite')).toThrow(
      /must be any, read-write or primary/,
    );
  });

  it('bad hosts and ports are configuration errors that never quote the string (it may hold a password)', () => {
    for (const bad of [
      'postgres://u:hunter2@h1:99999,h2/db',
      'postgres://u:hunter2@h1:54x2,h2/db',
      'postgres://u:hunter2@h1:5432:1,h2/db',
      'postgres://u:hunter2@[::1,h2/db',
      "host=h1 password='hunter2",
      'host=h1 password hunter2',
    ]) {
      let error: unknown;
      try {
        parse(bad);
      } catch (e) {
        error = e;
      }
      expect(error, bad).toBeInstanceOf(ConfigurationError);
      expect((error as Error).message).not.toContain('hunter2');
    }
  });

  it('createSecretsManager reports a malformed host list at start-up, not at the first call', () => {
    expect(() =>
      createSecretsManager({
        connectionString: 'postgres://u@h1:0,h2/db?target_session_attrs=read-write',
        masterKey: TEST_KEY,
        env: {},
      }),
    ).toThrow(/port must be a number from 1 to 65535 \(port 1 of 2\)/);
    expect(() =>
      createSecretsManager({
        connectionString: 'postgres://u@h1,h2/db?target_session_attrs=standby',
        masterKey: TEST_KEY,
        env: {},
      }),
    ).toThrow(ConfigurationError);
  });
});

describe('HostSelector', () => {
  const hosts = [
    { host: 'a', port: 1 },
    { host: 'b', port: 2 },
    { host: 'c', port: 3 },
  ];

  it('tries hosts in order; a host that failed goes last until RECHECK_MS has passed', () => {
    let now = 1000;
    const selector = new HostSelector({ hosts, loadBalanceHosts: 'disable' }, () => now);
    expect(selector.pick()).toBe(0);
    selector.markFailed(0, true);
    expect(selector.pick()).toBe(1);
    now += 1;
    selector.markFailed(1, true);
    expect(selector.pick()).toBe(2);
    now += 1;
    selector.markFailed(2, true);
    // All failed recently: the one that failed longest ago first.
    expect(selector.pick()).toBe(0);
    now += RECHECK_MS;
    expect(selector.pick()).toBe(0);
    selector.markGood(0);
    expect(selector.pick()).toBe(0);
  });

  it('a connection opened before its host failed is stale; one opened after is not', () => {
    let now = 0;
    const selector = new HostSelector({ hosts, loadBalanceHosts: 'disable' }, () => now);
    const openedEarly = now;
    now = 5;
    selector.markFailed(1, true);
    expect(selector.isStale(1, openedEarly)).toBe(true);
    expect(selector.isStale(0, openedEarly)).toBe(false);
    now = 6;
    expect(selector.isStale(1, now)).toBe(false);
    // A refusal by a running server (too many connections, a wrong password) reorders the hosts but
    // leaves the connections already open in use.
    now = 7;
    selector.markFailed(0, false);
    expect(selector.pick()).toBe(2);
    expect(selector.isStale(0, openedEarly)).toBe(false);
  });

  it('load_balance_hosts=random spreads new connections over the hosts that have not failed', () => {
    const selector = new HostSelector({ hosts, loadBalanceHosts: 'random' });
    selector.markFailed(2, true);
    const seen = new Set<number>();
    for (let i = 0; i < 200; i++) seen.add(selector.pick());
    expect([...seen].sort()).toEqual([0, 1]);
  });
});
