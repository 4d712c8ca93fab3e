import type { Core } from '../core.js';
import { toTenantSecretsError } from '../db/errors.js';
import { migrate } from '../db/migrate.js';
import { withTransaction } from '../db/queryable.js';
import { quoteSchema } from '../db/schema-name.js';
import {
  IntegrityError,
  InvalidInputError,
  LegacyImportError,
  type LegacyImportFailure,
  OperationAbortedError,
  UnknownMasterKeyError,
} from '../errors.js';
import type { BatchOptions, KeyProgress } from '../keys/rotation.js';

export interface ImportLegacyOptions extends BatchOptions {
  /**
   * The master key the seed's code used (`TENANT_SECRETS_MASTER_KEY` of the old deployment), as the
   * text that code passed to `p_master_key`. It is sent to the database as a bind parameter, as the
   * seed did with every call: treat it as already exposed, and retire it after the import.
   */
  legacyKey: string;
}

export interface ImportLegacyResult {
  /** Legacy rows converted by this call. */
  imported: number;
  batches: number;
  /** Whether the (now empty) legacy table was dropped. */
  legacyTableDropped: boolean;
}

/** How many legacy rows are decrypted before anything is changed, to check the legacy key. */
const SAMPLE_ROWS = 20;

const MESSAGES: Record<LegacyImportFailure, string> = {
  wrong_key: 'the legacy key does not decrypt the legacy rows',
  legacy_decrypt: 'a legacy row does not decrypt to UTF-8 text with the legacy key (corrupt row?)',
  invalid_input: 'a legacy row has a key name or value tenant-secrets does not accept',
  conflict: 'a secret with the same tenant and key name already exists',
  integrity: 'the tenant data key fails authentication',
  unknown_master_key: 'the tenant data key is wrapped under a master key not in the keyring',
  no_legacy_table: 'no legacy table found',
};

function failure(reason: LegacyImportFailure, tenantId?: string, keyName?: string): LegacyImportError {
  const where = tenantId ? ` (tenant "${tenantId}"${keyName ? `, key "${keyName}"` : ''})` : '';
  return new LegacyImportError(
    reason,
    `legacy import stopped: ${MESSAGES[reason]}${where}; nothing was lost, the row is still in tenant_secrets_legacy`,
    tenantId,
    keyName,
  );
}

/** Import of the seed's legacy `tenant_secrets` table, bound to one manager core. */
export function legacyOperations(core: Core) {
  const { qs, schema } = core;
  const operation = 'importLegacy';

  /** Which table holds legacy rows: the seed-shaped `tenant_secrets`, `tenant_secrets_legacy`, or none. */
  async function locate(): Promise<'tenant_secrets' | 'tenant_secrets_legacy' | null> {
    const rows = await core.query<{ table_name: string; column_name: string }>(
      operation,
      `SELECT table_name, column_name FROM information_schema.columns
        WHERE table_schema = $1 AND table_name IN ('tenant_secrets', 'tenant_secrets_legacy')`,
      [schema],
    );
    const columns = (table: string) =>
      new Set(rows.filter((row) => row.table_name === table).map((row) => row.column_name));
    const main = columns('tenant_secrets');
    if (main.has('encrypted_value') && main.has('tenant_id') && !main.has('current_version')) {
      return 'tenant_secrets';
    }
    return columns('tenant_secrets_legacy').size > 0 ? 'tenant_secrets_legacy' : null;
  }

  /** Decrypts a sample with the legacy key; only lengths come back, never plaintext. */
  async function checkKey(table: string, legacyKey: string): Promise<void> {
    const pgc = await core.query<{ schema: string }>(
      operation,
      `SELECT n.nspname AS schema FROM pg_catalog.pg_extension e
         JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace WHERE e.extname = 'pgcrypto'`,
    );
    const pgcSchema = pgc[0]?.schema;
    if (!pgcSchema) throw failure('wrong_key');
    const sample = await core.query<{ tenant_id: string; key_name: string }>(
      operation,
      `SELECT tenant_id::text AS tenant_id, key_name FROM ${qs}.${table} ORDER BY tenant_id, key_name LIMIT ${SAMPLE_ROWS}`,
    );
    let failed = 0;
    for (const row of sample) {
      try {
        await core.pool.query(
          `SELECT pg_catalog.octet_length(pg_catalog.convert_from(${quoteSchema(pgcSchema)}.decrypt(
              pg_catalog.decode(encrypted_value, 'base64'), $1::text::bytea, 'aes-cbc'), 'UTF8')) AS n
             FROM ${qs}.${table} WHERE tenant_id::text = $2 AND key_name = $3`,
          [legacyKey, row.tenant_id, row.key_name],
        );
      } catch {
        failed++;
      }
    }
    if (sample.length > 0 && failed === sample.length) throw failure('wrong_key');
  }

  /** Renames the seed's table (and its indexes, whose names would clash with ours) in one transaction. */
  async function renameLegacy(): Promise<void> {
    try {
      await withTransaction(core.pool, async (client) => {
        await client.query(`ALTER TABLE ${qs}.tenant_secrets RENAME TO tenant_secrets_legacy`);
        await client.query(`DO $rename$
DECLARE r record;
BEGIN
  FOR r IN SELECT i.indexrelid::regclass AS idx, c.relname FROM pg_catalog.pg_index i
             JOIN pg_catalog.pg_class c ON c.oid = i.indexrelid
            WHERE i.indrelid = '${qs}.tenant_secrets_legacy'::regclass LOOP
    EXECUTE pg_catalog.format('ALTER INDEX %s RENAME TO %I', r.idx,
      'tenant_secrets_legacy_' || pg_catalog.left(pg_catalog.md5(r.relname), 12));
  END LOOP;
END
$rename$`);
      });
    } catch (error) {
      throw toTenantSecretsError(error, operation);
    }
  }

  return {
    /**
     * Converts the seed's legacy table (`tenant_secrets` with `encrypted_value` = base64 of pgcrypto
     * `encrypt(value, key::bytea, 'aes-cbc')`) to tenant-secrets' format:
     * 1. decrypts a sample with `legacyKey` (wrong key: {@link LegacyImportError} `wrong_key`, nothing changed);
     * 2. renames the table to `tenant_secrets_legacy` (if not already) and runs `migrate()`;
     * 3. batch by batch, per row in one transaction: decrypt, store as version 1 (origin `import`,
     *    audit `secret.imported`), read back and compare, delete the legacy row;
     * 4. drops the legacy table once empty.
     * Resumable: running it again continues with the rows left. Returns zero counts when there is
     * no legacy table.
     * @throws {LegacyImportError} wrong key, a row that does not decrypt to UTF-8, an unacceptable key
     *   name or value, or a secret that already exists: names the tenant and key, never the value.
     * @throws {OperationAbortedError} `signal` aborted or `onProgress` threw; run again to resume.
     * @throws {InvalidInputError} empty `legacyKey` or bad `batchSize`.
     */
    async importLegacy(options: ImportLegacyOptions): Promise<ImportLegacyResult> {
      if (typeof options?.legacyKey !== 'string' || options.legacyKey === '') {
        throw new InvalidInputError('legacyKey must be a non-empty string', 'legacyKey');
      }
      const size = options.batchSize ?? 100;
      if (!Number.isInteger(size) || size < 1 || size > 10_000) {
        throw new InvalidInputError('batchSize must be an integer from 1 to 10000', 'batchSize');
      }
      const table = await locate();
      if (table === null) {
        await migrate(core.pool, { schema });
        return { imported: 0, batches: 0, legacyTableDropped: false };
      }
      await checkKey(table, options.legacyKey);
      if (table === 'tenant_secrets') await renameLegacy();
      await migrate(core.pool, { schema });

      const ctx = JSON.stringify(core.sqlContext(options.context));
      const counted = await core.query<{ n: string }>(
        operation,
        `SELECT pg_catalog.count(*) AS n FROM ${qs}.tenant_secrets_legacy`,
      );
      const total = Number(counted[0]?.n ?? 0);
      let done = 0;
      let batches = 0;
      for (;;) {
        if (options.signal?.aborted) {
          throw new OperationAbortedError(operation, done, { cause: options.signal.reason });
        }
        const rows = await core.query<{ tenant_id: string; key_name: string }>(
          operation,
          `SELECT tenant_id::text AS tenant_id, key_name FROM ${qs}.tenant_secrets_legacy
            ORDER BY tenant_id, key_name LIMIT $1`,
          [size],
        );
        if (rows.length === 0) break;
        const byTenant = new Map<string, string[]>();
        for (const row of rows) {
          const names = byTenant.get(row.tenant_id) ?? [];
          names.push(row.key_name);
          byTenant.set(row.tenant_id, names);
        }
        let stopped: { status: string; tenantId: string; keyName: string } | undefined;
        let imported = 0;
        try {
          await withTransaction(core.pool, async (client) => {
            for (const [tenantId, names] of byTenant) {
              const bundle = core.keyring.bundleFor(tenantId);
              const result = await client.query<{ status: string; key_name: string }>(
                `SELECT status, key_name FROM ${qs}.tenant_secret_import_legacy($1, $2::text[], $3, $4::text[], $5::bytea[], $6::jsonb)`,
                [tenantId, names, options.legacyKey, bundle.ids, bundle.keks, ctx],
              );
              for (const row of result.rows) {
                if (row.status === 'ok') imported++;
                else stopped = { status: row.status, tenantId, keyName: row.key_name };
              }
              if (stopped) break;
            }
          });
        } catch (error) {
          throw toTenantSecretsError(error, operation);
        }
        done += imported;
        batches++;
        if (stopped) {
          if (stopped.status === 'unknown_master_key') throw new UnknownMasterKeyError(undefined);
          const reason = (stopped.status in MESSAGES ? stopped.status : 'integrity') as LegacyImportFailure;
          throw failure(reason, stopped.tenantId, stopped.keyName);
        }
        const progress: KeyProgress = { done, total: Math.max(total, done), batches };
        if (options.onProgress) {
          try {
            await options.onProgress(progress);
          } catch (error) {
            throw new OperationAbortedError(operation, done, { cause: error });
          }
        }
      }
      const left = await core.query<{ left: string }>(
        operation,
        `SELECT ${qs}.tenant_secret_finish_legacy_import($1, $2::jsonb) AS left`,
        [done, ctx],
      );
      const dropped = Number(left[0]?.left ?? 1) === 0;
      if (!dropped) throw new IntegrityError('legacy rows appeared during the import; run it again');
      return { imported: done, batches, legacyTableDropped: dropped };
    },
  };
}

export type LegacyOperations = ReturnType<typeof legacyOperations>;
