import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import {
  createSecretsManager,
  exportSchemaSql,
  generateMasterKey,
  InvalidInputError,
} from '../../src/index.js';

/**
 * Role names are validated the same way by exportSchemaSql() (the script for migration tools) and by
 * migrate(), before anything reaches a database: an unreachable database tells them apart (a name
 * migrate() accepts fails to connect; a name it refuses fails first, with InvalidInputError).
 */
const offline = createSecretsManager({
  connectionString: 'postgres://tenant_secrets@127.0.0.1:1/none',
  masterKey: generateMasterKey(),
  connectionTimeoutMillis: 100,
  auditSealIntervalMs: 0,
});
afterAll(() => offline.close());

type Verdict = 'accepted' | `refused:${string}`;

async function exported(roles: { grantTo?: string[]; grantOperatorTo?: string[] }): Promise<Verdict> {
  try {
    await exportSchemaSql({ schema: 'public', ...roles });
    return 'accepted';
  } catch (error) {
    if (error instanceof InvalidInputError) return `refused:${error.field}`;
    throw error;
  }
}

async function migrated(roles: { grantTo?: string[]; grantOperatorTo?: string[] }): Promise<Verdict> {
  try {
    await offline.migrate(roles);
    throw new Error('an unreachable database cannot be migrated');
  } catch (error) {
    if (error instanceof InvalidInputError) return `refused:${error.field}`;
    if ((error as { code?: string }).code === 'DATABASE_UNAVAILABLE') return 'accepted';
    throw error;
  }
}

const roleName = fc.oneof(
  fc.stringMatching(/^[A-Za-z_][A-Za-z0-9_$-]{0,70}$/),
  fc.string({ unit: 'binary', maxLength: 80 }),
  fc.constantFrom(
    'public',
    'PUBLIC',
    'none',
    'current_user',
    'session_user',
    'current_role',
    'pg_monitor',
    'pg_write_server_files',
    'anon',
    'service_role',
    'a"b',
    "a'b",
    'a b',
    'x'.repeat(64),
  ),
);

describe('role names', () => {
  it('property: exportSchemaSql() and migrate() accept and refuse exactly the same role names', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(roleName, { maxLength: 3 }),
        fc.array(roleName, { maxLength: 3 }),
        async (grantTo, grantOperatorTo) => {
          expect(await migrated({ grantTo, grantOperatorTo })).toBe(
            await exported({ grantTo, grantOperatorTo }),
          );
        },
      ),
      { numRuns: 300 },
    );
  });

  it.each([
    'public',
    'PUBLIC',
    'none',
    'current_user',
    'session_user',
    'current_role',
    'pg_monitor',
    'pg_write_server_files',
  ])(
    'refuses the reserved name %s (GRANT ... TO public would hand the functions to every role)',
    async (role) => {
      expect(await exported({ grantTo: [role] })).toBe('refused:grantTo');
      expect(await migrated({ grantOperatorTo: [role] })).toBe('refused:grantOperatorTo');
    },
  );

  it('refuses names that are not arrays of strings', async () => {
    for (const bad of ['app', [1], [null], {}] as unknown as string[][]) {
      expect(await exported({ grantTo: bad })).toBe('refused:grantTo');
      expect(await migrated({ grantTo: bad })).toBe('refused:grantTo');
    }
  });
});
