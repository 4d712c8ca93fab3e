import {
  DatabaseError,
  IntegrityError,
  InvalidInputError,
  LegacyImportError,
  type LegacyImportFailure,
  OperationAbortedError,
  UnknownMasterKeyError,
} from '../base/errors.js';
import type { Core } from '../core/core.js';
import type { BatchOptions, KeyProgress } from '../keys/rotation.js';
import { migrate } from '../schema/migrate.js';

export interface ImportLegacyOptions extends BatchOptions {
  /**
   * The master key the original code used (`TENANT_SECRETS_MASTER_KEY` of the old deployment), as the
   * text that code passed to `p_master_key`. It is sent to the database as a bind parameter, as the
   * original code did with every call: treat it as already exposed, and retire it after the import.
   */
  legacyKey: string;
}

export interface ImportLegacyResult {
  /** Legacy rows converted by this call. */
  imported: number;
  /** Legacy rows converted by every run so far (this one included). */
  importedTotal: number;
  batches: number;
  /** Whether the (now empty) legacy table was dropped. */
  legacyTableDropped: boolean;
  /** How the legacy table stored ciphertexts: base64 `text` (as the original code did) or raw `bytea`. */
  storage: 'text' | 'bytea' | null;
}

/** How many legacy rows are decrypted before anything is changed, to check the legacy key. */
const SAMPLE_ROWS = 20;

const MESSAGES: Record<LegacyImportFailure, string> = {
  wrong_key: 'the legacy key does not decrypt the legacy rows',
  not_base64:
    "a legacy row stored as text is not base64 (the original code stored encode(encrypt(...), 'base64'))",
  legacy_decrypt: 'a legacy row does not decrypt to UTF-8 text with the legacy key (corrupt row?)',
  invalid_input:
    'a legacy row has a key name or value tenant-secrets does not accept (empty, or over 64 KiB)',
  conflict: 'a secret with the same tenant and key name already exists',
  integrity: 'the tenant data key fails authentication',
  unknown_master_key: 'the tenant data key is wrapped under a master key not in the keyring',
  unauthorized:
    'the configured master key does not authorise this tenant (is it registered? run migrate() with it)',
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

/** Import of the original code's legacy `tenant_secrets` table, bound to one manager core. */
export function legacyOperations(core: Core) {
  const { qs, schema } = core;
  const operation = 'importLegacy';

  /**
   * Which table holds legacy rows (the original-shaped `tenant_secrets`, `tenant_secrets_legacy`, or
   * none) and how it stores ciphertexts.
   */
  async function locate(): Promise<{
    table: 'tenant_secrets' | 'tenant_secrets_legacy';
    form: 'text' | 'bytea';
  } | null> {
    const rows = await core.plain<{ table_name: string; column_name: string; data_type: string }>(
      operation,
      `SELECT table_name, column_name, data_type FROM information_schema.columns
        WHERE table_schema = $1 AND table_name IN ('tenant_secrets', 'tenant_secrets_legacy')`,
      [schema],
    );
    const columns = (table: string) => rows.filter((row) => row.table_name === table);
    const formOf = (table: string) =>
      columns(table).find((c) => c.column_name === 'encrypted_value')?.data_type === 'bytea'
        ? 'bytea'
        : 'text';
    const main = new Set(columns('tenant_secrets').map((c) => c.column_name));
    if (main.has('encrypted_value') && main.has('tenant_id') && !main.has('current_version')) {
      return { table: 'tenant_secrets', form: formOf('tenant_secrets') };
    }
    return columns('tenant_secrets_legacy').length > 0
      ? { table: 'tenant_secrets_legacy', form: formOf('tenant_secrets_legacy') }
      : null;
  }

  /** Decrypts a sample with the legacy key; only lengths come back, never plaintext. */
  async function checkKey(table: string, form: 'text' | 'bytea', legacyKey: string): Promise<void> {
    const pgc = await core.plain<{ schema: string }>(
      operation,
      `SELECT pg_catalog.quote_ident(n.nspname) AS schema FROM pg_catalog.pg_extension e
         JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace WHERE e.extname = 'pgcrypto'`,
    );
    const pgcSchema = pgc[0]?.schema;
    if (!pgcSchema) throw failure('wrong_key');
    const cipher = form === 'bytea' ? 'l.encrypted_value' : `pg_catalog.decode(l.encrypted_value, 'base64')`;
    const sample = await core.plain<{ c: string }>(
      operation,
      `SELECT l.ctid::text AS c FROM ${qs}.${table} l ORDER BY l.ctid LIMIT ${SAMPLE_ROWS}`,
    );
    let failed = 0;
    let notBase64 = 0;
    // Only a row the database refuses (not base64, does not decrypt) counts against the key: a lost
    // connection, a timeout or a read-only database is reported as such.
    const refused = (error: unknown) => {
      if (!(error instanceof DatabaseError)) throw error;
    };
    for (const row of sample) {
      if (form === 'text') {
        try {
          await core.plain(
            operation,
            `SELECT pg_catalog.decode(l.encrypted_value, 'base64') FROM ${qs}.${table} l WHERE l.ctid = $1::tid`,
            [row.c],
          );
        } catch (error) {
          refused(error);
          notBase64++;
          failed++;
          continue;
        }
      }
      try {
        // The legacy key is the old, already exposed key: it is sent as the original code sent it.
        // The schema (and its log-suppression function) may not be installed yet: the setting is
        // made here, for this transaction.
        await core.transaction(
          operation,
          async (query) => {
            await query(`SET LOCAL log_parameter_max_length_on_error = 0`);
            await query(
              `SELECT pg_catalog.octet_length(pg_catalog.convert_from(${pgcSchema}.decrypt(${cipher}, $1::text::bytea, 'aes-cbc'), 'UTF8'))
                 FROM ${qs}.${table} l WHERE l.ctid = $2::tid`,
              [legacyKey, row.c],
            );
          },
          { quiet: false },
        );
      } catch (error) {
        refused(error);
        failed++;
      }
    }
    if (sample.length > 0 && notBase64 === sample.length) throw failure('not_base64');
    if (sample.length > 0 && failed === sample.length) throw failure('wrong_key');
  }

  /** Renames the original table (and its indexes, whose names would clash with ours) in one transaction. */
  async function renameLegacy(): Promise<void> {
    await core.transaction(
      operation,
      async (query) => {
        await query(`ALTER TABLE ${qs}.tenant_secrets RENAME TO tenant_secrets_legacy`);
        await query(`DO $rename$
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
      },
      { quiet: false },
    );
  }

  return {
    /**
     * Converts the original code's table (`tenant_secrets` whose `encrypted_value` holds pgcrypto
     * `encrypt(value, key::bytea, 'aes-cbc')`, as base64 text or as raw bytea) to tenant-secrets' format:
     * 1. decrypts a sample with `legacyKey` (wrong key: {@link LegacyImportError} `wrong_key`, nothing changed);
     * 2. renames the table to `tenant_secrets_legacy` (if not already) and runs `migrate()`;
     * 3. batch by batch (rows by physical position, so each batch costs the same however many rows are
     *    left), per row in one transaction: decrypt, store as version 1 (origin `import`, audit
     *    `secret.imported`), read back and compare, delete the legacy row;
     * 4. drops the legacy table once empty; `legacy.import_finished` counts rows imported by every run.
     * Resumable: running it again continues with the rows left. Returns zero counts when there is
     * no legacy table.
     * @throws {LegacyImportError} wrong key, a row that is not base64 or does not decrypt to UTF-8, an
     *   unacceptable key name or value, or a secret that already exists: names the tenant and key, never the value.
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
      const found = await locate();
      if (found === null) {
        await migrate(core.executor, { schema, keyring: core.keyring });
        const totals = await core.plain<{ imported: string }>(
          operation,
          `SELECT imported FROM ${qs}.tenant_secret_legacy_import WHERE id = 1`,
        );
        return {
          imported: 0,
          importedTotal: Number(totals[0]?.imported ?? 0),
          batches: 0,
          legacyTableDropped: false,
          storage: null,
        };
      }
      await checkKey(found.table, found.form, options.legacyKey);
      if (found.table === 'tenant_secrets') await renameLegacy();
      await migrate(core.executor, { schema, keyring: core.keyring });

      const ctx = JSON.stringify(core.sqlContext(options.context));
      const counted = await core.plain<{ n: string }>(
        operation,
        `SELECT pg_catalog.count(*) AS n FROM ${qs}.tenant_secrets_legacy`,
      );
      const total = Number(counted[0]?.n ?? 0);
      let done = 0;
      let batches = 0;
      // Rows are read in physical order a window of pages at a time, so each batch reads only the
      // pages it imports from: `ctid > $after ORDER BY ctid LIMIT n` alone sorts every row left.
      const [sized] = await core.plain<{ pages: string }>(
        operation,
        `SELECT pg_catalog.pg_relation_size($1::regclass) / pg_catalog.current_setting('block_size')::bigint AS pages`,
        [`${qs}.tenant_secrets_legacy`],
      );
      const pages = Number(sized?.pages ?? 0);
      let after = '(0,0)'; // exclusive lower bound
      let page = 0; // first page not yet read to its end
      type LegacyRow = { c: string; tenant_id: string; key_name: string };
      const nextRows = async (): Promise<LegacyRow[]> => {
        const rows: LegacyRow[] = [];
        let window = 8;
        while (rows.length < size && page < pages) {
          const needed = size - rows.length;
          const upper = `(${page + window},0)`;
          const got = await core.plain<LegacyRow>(
            operation,
            `SELECT l.ctid::text AS c, l.tenant_id::text AS tenant_id, l.key_name FROM ${qs}.tenant_secrets_legacy l
              WHERE l.ctid > $1::tid AND l.ctid < $2::tid ORDER BY l.ctid LIMIT $3`,
            [after, upper, needed],
          );
          rows.push(...got);
          if (got.length < needed) {
            // The window is read to its end: move past it, wider (rows already imported leave gaps).
            page += window;
            after = upper;
            window = Math.min(window * 2, 8192);
          } else {
            after = got[got.length - 1]?.c ?? after;
            page = Number(/^\((\d+),/.exec(after)?.[1] ?? page);
          }
        }
        return rows;
      };
      for (;;) {
        if (options.signal?.aborted) {
          throw new OperationAbortedError(operation, done, { cause: options.signal.reason });
        }
        const rows = await nextRows();
        if (rows.length === 0) break;
        const byTenant = new Map<string, { ctids: string[]; names: string[] }>();
        for (const row of rows) {
          const entry = byTenant.get(row.tenant_id) ?? { ctids: [], names: [] };
          entry.ctids.push(row.c);
          entry.names.push(row.key_name);
          byTenant.set(row.tenant_id, entry);
        }
        let stopped: { status: string; tenantId: string; keyName: string } | undefined;
        const imported = await core.transaction(operation, async (query) => {
          let n = 0;
          for (const [tenantId, entry] of byTenant) {
            const result = await query<{ status: string; key_name: string }>(
              `SELECT status, key_name FROM ${qs}.tenant_secret_import_legacy($1, $2::tid[], $3::text[], $4, $5, $6, $7::text::jsonb)`,
              [
                tenantId,
                entry.ctids,
                entry.names,
                options.legacyKey,
                found.form,
                core.keyring.bundleBytes(tenantId),
                ctx,
              ],
            );
            for (const row of result) {
              if (row.status === 'ok') n++;
              else stopped = { status: row.status, tenantId, keyName: row.key_name };
            }
            if (stopped) break;
          }
          return n;
        });
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
      const left = await core.plain<{ left: string }>(
        operation,
        `SELECT ${qs}.tenant_secret_finish_legacy_import($1, $2::text::jsonb) AS left`,
        [done, ctx],
      );
      const totals = await core.plain<{ imported: string }>(
        operation,
        `SELECT imported FROM ${qs}.tenant_secret_legacy_import WHERE id = 1`,
      );
      core.onAudited();
      const dropped = Number(left[0]?.left ?? 1) === 0;
      if (!dropped) throw new IntegrityError('legacy rows appeared during the import; run it again');
      return {
        imported: done,
        importedTotal: Number(totals[0]?.imported ?? done),
        batches,
        legacyTableDropped: dropped,
        storage: found.form,
      };
    },
  };
}

export type LegacyOperations = ReturnType<typeof legacyOperations>;
