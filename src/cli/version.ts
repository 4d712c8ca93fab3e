import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ConfigurationError } from '../base/errors.js';

const PACKAGE_NAME = 'tenant-secrets';

/**
 * The version in tenant-secrets' own package.json, read when asked: the nearest package.json named
 * tenant-secrets above this module (dist/cli/ when installed or built, src/cli/ in the repository).
 * @throws ConfigurationError when there is none (a damaged installation).
 */
export function packageVersion(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    let pkg: { name?: unknown; version?: unknown } | undefined;
    try {
      pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8'));
    } catch {
      pkg = undefined; // none here (or not JSON): look further up
    }
    if (pkg?.name === PACKAGE_NAME && typeof pkg.version === 'string') return pkg.version;
    const parent = dirname(dir);
    if (parent === dir) {
      throw new ConfigurationError(
        `no package.json of ${PACKAGE_NAME} above ${fileURLToPath(import.meta.url)}: reinstall tenant-secrets`,
      );
    }
    dir = parent;
  }
}
