import type { PoolLike } from '../../db/queryable.js';
import { table } from '../io.js';
import { chainLabel, type DemoStep, rows } from './context.js';

/** Demo steps about the audit trail: sealing, verification, a tampered record and a rewritten chain. */

/** A SQL string literal (for the demo's own constant text). */
const literal = (text: string) => `'${text.replace(/'/g, "''")}'`;

/**
 * What someone with write access to the database and the published formulas can do: rewrite the
 * actor of `chainId`'s record `seq`, then recompute that record's digest, every later record's link
 * and the chain's head, so the chain is consistent again (sql/functions/30_audit_append.sql).
 */
async function rewriteChain(pool: PoolLike, chainId: string, seq: number, actor: string): Promise<void> {
  await pool.query(`DO $demo$
DECLARE
  r record;
  v_prev bytea;
  v_digest bytea;
BEGIN
  SELECT a.hash INTO v_prev FROM tenant_secret_audit a WHERE a.chain_id = ${literal(chainId)} AND a.seq = ${seq - 1};
  FOR r IN SELECT * FROM tenant_secret_audit a WHERE a.chain_id = ${literal(chainId)} AND a.seq >= ${seq} ORDER BY a.seq LOOP
    v_digest := _ts_audit_digest(r.chain_id, r.occurred_at, r.tenant_id, r.db_role,
      CASE WHEN r.seq = ${seq} THEN ${literal(actor)} ELSE r.actor END, r.action, r.key_name, r.version,
      r.outcome, r.error_code, r.request_id, r.context, r.details);
    v_prev := _ts_audit_link(v_prev, r.chain_id, r.seq, v_digest);
    UPDATE tenant_secret_audit a
       SET actor = CASE WHEN r.seq = ${seq} THEN ${literal(actor)} ELSE r.actor END, digest = v_digest, hash = v_prev
     WHERE a.chain_id = r.chain_id AND a.seq = r.seq;
  END LOOP;
  UPDATE tenant_secret_audit_heads h SET hash = v_prev WHERE h.chain_id = ${literal(chainId)};
END
$demo$`);
}

export const auditTrail: DemoStep = {
  title: 'The audit trail: appended, then sealed into hash chains',
  async run({ manager, pool, say }) {
    const count = async (table: string) =>
      Number((await rows<{ n: string }>(pool, `SELECT count(*) AS n FROM ${table}`))[0]?.n ?? 0);
    say(
      `${await count('tenant_secret_audit_pending')} records wait in tenant_secret_audit_pending: each operation appended its record in its own`,
    );
    say(
      'transaction, sharing no lock with other operations, with a SHA-256 digest of its content and no seq.',
    );
    say('Refused attempts are recorded too: the stranger, the tampered read, the missing secret.');
    const sealed = await manager.auditTrail.seal();
    say();
    say(
      `sealAudit() -> ${sealed.sealed} records sealed; ${await count('tenant_secret_audit_pending')} pending`,
    );
    const trail = await rows<{
      partition: string;
      chain_id: string;
      seq: string | null;
      action: string;
      outcome: string;
      key_name: string | null;
      error_code: string | null;
      actor: string;
      hash: Buffer | null;
    }>(
      pool,
      `SELECT tableoid::regclass::text AS partition, chain_id, seq, action, outcome, key_name, error_code, actor, hash
         FROM tenant_secret_audit ORDER BY chain_id, seq NULLS LAST, id`,
    );
    say();
    for (const line of table(
      ['CHAIN', 'SEQ', 'ACTION', 'OUTCOME', 'KEY', 'ACTOR', 'HASH'],
      trail.map((r) => [
        chainLabel(r.chain_id),
        r.seq ?? '-',
        r.action,
        r.outcome + (r.error_code ? ` (${r.error_code})` : ''),
        r.key_name ?? '-',
        r.actor,
        r.hash ? `${r.hash.toString('hex').slice(0, 12)}…` : '(pending)',
      ]),
    ).split('\n'))
      say(line);
    say();
    const waiting = trail.filter((r) => r.seq === null);
    if (waiting.length > 0 && waiting.every((r) => r.action === 'audit.chain_started')) {
      say(
        `(${waiting.length} pending: the audit.chain_started records this pass appended to register new chains; the next pass seals them.)`,
      );
    }
    const partitions = [...new Set(trail.filter((r) => r.seq !== null).map((r) => r.partition))];
    say(`Sealed records live in ${partitions.join(', ')} (one partition per sealing day).`);
    say(
      'One chain per tenant: hash = SHA-256(label | previous hash | chain | seq | digest). Values never appear.',
    );
    say('The library seals about a second after operations; this demo seals when asked, to show both steps.');
  },
};

export const verifyAudit: DemoStep = {
  title: 'Verify the audit trail',
  async run({ manager, say }) {
    const result = await manager.auditTrail.verify();
    if (!result.ok) throw new Error('demo: the audit trail failed verification');
    say(
      `verifyAudit() -> ok: ${result.chains} chains, ${result.records} records (${result.sealed} pending sealed first): every digest and link recomputed`,
    );
    const heads = [...result.heads].sort((a, b) => (a.chainId < b.chainId ? -1 : 1));
    for (const head of heads)
      say(`  head ${chainLabel(head.chainId)} seq ${head.seq} ${head.hash.slice(0, 16)}…`);
    say(
      'Each verified head gets a checkpoint signed with a key derived from the master key, which the database never sees.',
    );
  },
};

export const tamperedAuditRecord: DemoStep = {
  title: 'A tampered audit record is detected',
  async run({ manager, pool, tenantA, say }) {
    const [row] = await rows<{ id: string; actor: string; partition: string }>(
      pool,
      `SELECT id, actor, tableoid::regclass::text AS partition FROM tenant_secret_audit WHERE chain_id = $1 AND seq = 2`,
      [tenantA],
    );
    if (!row) throw new Error('demo: no audit record to tamper with');
    const verifyFails = async (what: string) => {
      const result = await manager.auditTrail.verify();
      const bad = result.firstBad;
      if (result.ok || !bad) throw new Error(`demo: ${what} was not detected`);
      say(
        `verifyAudit() -> ok: false, first bad record: chain ${chainLabel(bad.chainId)}, seq ${bad.seq}, ${bad.id === null ? '' : `id ${bad.id}, `}${bad.reason}`,
      );
    };
    const verifiesAgain = async () => {
      const result = await manager.auditTrail.verify();
      if (!result.ok) throw new Error('demo: the restored audit trail does not verify');
      return result.ok;
    };

    await pool.query(
      `UPDATE tenant_secret_audit SET actor = 'innocent-bystander' WHERE chain_id = $1 AND seq = 2`,
      [tenantA],
    );
    say(
      `UPDATE tenant_secret_audit SET actor = 'innocent-bystander' WHERE chain_id = '${tenantA}' AND seq = 2;`,
    );
    say(`  -- a sealed record (id ${row.id}, in ${row.partition}), rewritten by a superuser`);
    await verifyFails('an edited audit record');
    say('The record no longer matches its digest. (`tenant-secrets audit verify` exits 5 and names it.)');
    await pool.query('UPDATE tenant_secret_audit SET actor = $1 WHERE chain_id = $2 AND seq = 2', [
      row.actor,
      tenantA,
    ]);
    say(`put the original actor back: verifyAudit() -> ok: ${await verifiesAgain()}`);

    say();
    await rewriteChain(pool, tenantA, 2, 'innocent-bystander');
    say(`Now the same edit, plus a new digest for the record, every later link and ${tenantA}'s chain head,`);
    say('recomputed with SQL from the published formulas: the chain is consistent again, and yet');
    await verifyFails('a rewritten audit chain');
    say(
      'The checkpoint signed at the last verification no longer matches, and only the master key can sign a new one.',
    );
    await rewriteChain(pool, tenantA, 2, row.actor);
    say(`rewrote it back: verifyAudit() -> ok: ${await verifiesAgain()}`);
  },
};
