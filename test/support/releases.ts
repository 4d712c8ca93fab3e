import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** Released versions of tenant-secrets, by the commit each was cut from. */
export const RELEASES = { '0.1.0': '7b39631', '0.2.0': '4474822' } as const;
export type ReleaseName = keyof typeof RELEASES;

const repoRoot = join(dirname(fileURLToPath(import.meta.url)), '..', '..');

/**
 * The released code of `release`, built (npm ci + its own build script) in a directory under the
 * system's temporary directory, keyed by its full commit: a later run finds it built and returns at
 * once. Needs the repository's history (a fresh clone has it). Returns the directory; its
 * `dist/index.js` is that release's library.
 */
export function buildRelease(release: ReleaseName): string {
  const commit = execFileSync('git', ['rev-parse', `${RELEASES[release]}^{commit}`], {
    cwd: repoRoot,
    encoding: 'utf8',
  }).trim();
  const dir = join(tmpdir(), `tenant-secrets-release-${release}-${commit}`);
  if (existsSync(join(dir, '.built'))) return dir;
  const work = `${dir}.${process.pid}.tmp`;
  rmSync(work, { recursive: true, force: true });
  mkdirSync(work, { recursive: true });
  const run = (command: string, args: string[], cwd = work) =>
    execFileSync(command, args, { cwd, stdio: ['ignore', 'ignore', 'pipe'], timeout: 600_000 });
  execFileSync('sh', ['-c', `git archive --format=tar ${commit} | tar -x -C "${work}"`], {
    cwd: repoRoot,
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  run('npm', ['ci', '--no-audit', '--no-fund', '--prefer-offline', '--ignore-scripts']);
  run('npm', ['run', 'build']);
  writeFileSync(join(work, '.built'), `${release} ${commit}\n`);
  try {
    renameSync(work, dir);
  } catch (error) {
    // Another run finished first: use its copy.
    rmSync(work, { recursive: true, force: true });
    if (!existsSync(join(dir, '.built'))) throw error;
  }
  return dir;
}
