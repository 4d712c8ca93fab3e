// suite-scope: once — reads files and the generated module only; no server involved
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { MIGRATIONS } from '../../src/schema/sql.generated.js';

/**
 * Released table migrations never change: a database upgraded by a later release must have been made
 * by exactly the SQL that release shipped. Their SHA-256 is pinned here, taken from the release
 * commits (0.1.0 shipped 000001-000005, 0.2.0 added 000006, then named `000006_round2.sql`: the file
 * was renamed for what it holds, its bytes untouched; databases it made record it as `round2`).
 * Changing one of them fails this test; an upgrade is a new migration file.
 */
const RELEASED: Record<string, string> = {
  '000001_core.sql': 'a7da872237416e1781bc9af930de307089ce96edd45d76dff8efaedc1ef1e7a7',
  '000002_lifecycle.sql': 'd7b56729a8d9f807147d97da3b8aa674007ccfd3d93381d5811f40b2d3e3d2aa',
  '000003_keys.sql': '5a3c5130d287f685111a7fa2aa2d791c376fbac5921513a6d4ef3e5b5b35be17',
  '000004_audit.sql': '538a05a4cf7c173924aab0afa54129db2b9bd57085c2cbdc4c7f780e39d1a63d',
  '000005_key_status_checkpoints.sql': '295486855444219aa1a03314e40b6b3bb59e9901282858652a4bca5d0b127df5',
  '000006_audit_sealing_key_proofs.sql': 'e39c78fc1bf70cdfe083ee30ccf5e13ee047a4f73b8eae463656a4916c9b6b3a',
};
const SQL_DIR = join(import.meta.dirname, '..', '..', 'sql');
const sha256 = (text: string | Buffer) => createHash('sha256').update(text).digest('hex');

describe('released migrations', () => {
  it('are byte for byte what their release shipped', () => {
    for (const [file, digest] of Object.entries(RELEASED)) {
      expect.soft(sha256(readFileSync(join(SQL_DIR, file))), file).toBe(digest);
    }
  });

  it('keep their ids and names, and the module the library runs holds every migration file', () => {
    const files = readdirSync(SQL_DIR).filter((f) => /^\d{6}_[a-z0-9_]+\.sql$/.test(f));
    expect(files.slice(0, Object.keys(RELEASED).length)).toEqual(Object.keys(RELEASED));
    expect(MIGRATIONS.map((m) => `${String(m.id).padStart(6, '0')}_${m.name}.sql`)).toEqual(files);
    // Ids are consecutive from 1: migrate() applies them in order and records each id once.
    expect(MIGRATIONS.map((m) => m.id)).toEqual(files.map((_, i) => i + 1));
  });
});
