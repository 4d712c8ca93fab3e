import { createHash, randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { adminQuery, setupManager } from '../support/db.js';

const lp = (s: string) => {
  const b = Buffer.from(s, 'utf8');
  const n = Buffer.alloc(4);
  n.writeInt32BE(b.length);
  return Buffer.concat([n, b]);
};
const int8 = (v: number) => {
  const b = Buffer.alloc(8);
  b.writeBigInt64BE(BigInt(v));
  return b;
};

describe('the anchor digest of the checkpoints', () => {
  it('orders a chain holding several checkpoints by seq, not by where the rows lie on disk', async () => {
    const { manager, db } = await setupManager();
    await manager.set('acme', 'k', 'v');
    const rows = [
      { chain: 'acme', seq: 3, hash: randomBytes(32) },
      { chain: 'acme', seq: 9, hash: randomBytes(32) },
      { chain: 'zeta', seq: 2, hash: randomBytes(32) },
    ];
    await adminQuery(db.name, 'DELETE FROM tenant_secret_audit_checkpoints');
    // Inserted newest first, so that the heap order differs from the seq order.
    for (const r of [rows[1], rows[2], rows[0]]) {
      await adminQuery(
        db.name,
        `INSERT INTO tenant_secret_audit_checkpoints (chain_id, seq, hash, master_key_id, mac)
         VALUES ($1, $2, $3, 'mk_0000000000000000', $4)`,
        [r?.chain, r?.seq, r?.hash, randomBytes(32)],
      );
    }
    const digest = async () =>
      (
        await adminQuery<{ heads_digest: Buffer; chains: string; records: string }>(
          db.name,
          'SELECT * FROM tenant_secret_audit_checkpoint_digest()',
        )
      )[0];
    const expected = createHash('sha256')
      .update(Buffer.concat(rows.map((r) => Buffer.concat([lp(r.chain), int8(r.seq), r.hash]))))
      .digest();
    const first = await digest();
    expect(first?.heads_digest.equals(expected)).toBe(true);
    expect([Number(first?.chains), Number(first?.records)]).toEqual([3, 14]);
    // The same rows rewritten in place (what an UPDATE, VACUUM FULL or a restore does): a new heap order.
    await adminQuery(
      db.name,
      `UPDATE tenant_secret_audit_checkpoints SET hash = hash WHERE chain_id = 'acme' AND seq = 3`,
    );
    await adminQuery(
      db.name,
      `UPDATE tenant_secret_audit_checkpoints SET hash = hash WHERE chain_id = 'acme' AND seq = 9`,
    );
    await adminQuery(
      db.name,
      `UPDATE tenant_secret_audit_checkpoints SET hash = hash WHERE chain_id = 'acme' AND seq = 3`,
    );
    expect((await digest())?.heads_digest.equals(expected)).toBe(true);
  });
});
