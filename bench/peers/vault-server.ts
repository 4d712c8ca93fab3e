/**
 * A throw-away PostgreSQL 15 server with Supabase Vault preloaded, for `npm run bench -- --peers`:
 * in a temporary directory under os.tmpdir(), on a port of its own, with fsync and synchronous_commit
 * on (as PostgreSQL ships), run as the `postgres` operating-system user when the bench runs as root.
 * Vault is built into the machine's PostgreSQL 15 by ../shared/peers/supabase-vault/install.sh.
 * BENCH_VAULT_LOG=FILE keeps a copy of the server's log.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, chownSync, copyFileSync, existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';
import { freePort } from '../../src/cli/free-port.js';

const PG15 = '/usr/lib/postgresql/15';

/** Why Vault cannot be measured here, or undefined when it can. */
export function vaultMissing(): string | undefined {
  if (!existsSync(join(PG15, 'bin', 'initdb'))) return `no PostgreSQL 15 server binaries in ${PG15}/bin`;
  const lib = spawnSync(join(PG15, 'bin', 'pg_config'), ['--pkglibdir'], { encoding: 'utf8' });
  const libdir = lib.status === 0 ? lib.stdout.trim() : join(PG15, 'lib');
  if (!existsSync(join(libdir, 'supabase_vault.so'))) {
    return `Supabase Vault is not installed in ${libdir} (run ../shared/peers/supabase-vault/install.sh as root)`;
  }
  return undefined;
}

export interface VaultServer {
  url: string;
  stop(): Promise<void>;
}

/** Starts the server (initdb, then pg_ctl start -w); `stop` stops it and removes its directory. */
export async function startVaultServer(): Promise<VaultServer> {
  const base = mkdtempSync(join(tmpdir(), 'tenant-secrets-bench-vault-'));
  const data = join(base, 'data');
  const root = userInfo().uid === 0;
  const pwd = spawnSync('getent', ['passwd', 'postgres'], { encoding: 'utf8' }).stdout.split(':');
  const [uid, gid] = [Number(pwd[2]), Number(pwd[3])];
  if (root && !Number.isInteger(uid)) throw new Error('running as root, but there is no postgres user');
  if (root) chownSync(base, uid, gid);
  chmodSync(base, 0o700);
  // vault.getkey_script: prints a throw-away 64-hex-digit root key (as write-getkey.sh writes it).
  const getkey = join(base, 'getkey.sh');
  writeFileSync(getkey, `#!/bin/sh\necho ${randomBytes(32).toString('hex')}\n`, { mode: 0o755 });
  if (root) chownSync(getkey, uid, gid);
  const as = (cmd: string, args: string[]) =>
    root
      ? execFileSync('runuser', ['-u', 'postgres', '--', cmd, ...args], { stdio: 'pipe', cwd: base })
      : execFileSync(cmd, args, { stdio: 'pipe', cwd: base });
  as(join(PG15, 'bin', 'initdb'), [
    '-D',
    data,
    '-U',
    'postgres',
    '--auth=trust',
    '-E',
    'UTF8',
    '--no-instructions',
  ]);
  const port = await freePort();
  const options = [
    `-p ${port}`,
    '-c listen_addresses=127.0.0.1',
    `-c unix_socket_directories=${base}`,
    '-c max_connections=100',
    '-c fsync=on',
    '-c synchronous_commit=on',
    '-c shared_preload_libraries=supabase_vault',
    `-c vault.getkey_script=${getkey}`,
  ].join(' ');
  as(join(PG15, 'bin', 'pg_ctl'), ['-D', data, '-o', options, '-l', join(base, 'server.log'), '-w', 'start']);
  return {
    url: `postgres://postgres@127.0.0.1:${port}/postgres`,
    async stop() {
      try {
        as(join(PG15, 'bin', 'pg_ctl'), ['-D', data, '-m', 'fast', '-w', 'stop']);
      } finally {
        // BENCH_VAULT_LOG=FILE keeps the server's log (to see what the server said during the run).
        if (process.env.BENCH_VAULT_LOG) copyFileSync(join(base, 'server.log'), process.env.BENCH_VAULT_LOG);
        rmSync(base, { recursive: true, force: true });
      }
    },
  };
}
