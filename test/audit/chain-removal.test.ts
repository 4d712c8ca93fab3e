import { beforeAll, describe, expect, it } from 'vitest';
import type { SecretsManager } from '../../src/index.js';
import { adminQuery, setupManager } from '../support/db.js';

/**
 * A database writer removes a tenant's audit chain entirely (its records and its head): a full
 * verifyAudit() still notices, from the signed checkpoint that remains, or from the chain's
 * registration on the system chain when the checkpoint is removed too.
 */
let manager: SecretsManager;
let db: { name: string; url: string };

beforeAll(async () => {
  ({ manager, db } = await setupManager({ auditSealIntervalMs: 0 }));
});

async function removeChain(chain: string, withCheckpoint: boolean): Promise<void> {
  await adminQuery(
    db.name,
    `DELETE FROM tenant_secret_audit WHERE chain_id = $1;
     DELETE FROM tenant_secret_audit_heads WHERE chain_id = $1;
     ${withCheckpoint ? 'DELETE FROM tenant_secret_audit_checkpoints WHERE chain_id = $1;' : ''}`.replace(
      /\$1/g,
      `'${chain}'`,
    ),
  );
}

describe('a tenant chain removed entirely', () => {
  it('while its signed checkpoint remains: chain_missing', async () => {
    await manager.set('erased-1', 'k', 'v');
    expect((await manager.verifyAudit()).ok).toBe(true); // seals and signs checkpoints
    await removeChain('erased-1', false);
    const result = await manager.verifyAudit();
    expect(result.ok).toBe(false);
    expect(result.problems).toContainEqual(
      expect.objectContaining({ chainId: 'erased-1', reason: 'chain_missing' }),
    );
  });

  it('with its checkpoint: still reported, from its registration on the system chain', async () => {
    await manager.set('erased-2', 'k', 'v');
    expect((await manager.verifyAudit({ tenantId: 'erased-2' })).ok).toBe(true);
    await removeChain('erased-2', true);
    const result = await manager.verifyAudit();
    expect(result.ok).toBe(false);
    expect(result.problems).toContainEqual(
      expect.objectContaining({ chainId: 'erased-2', reason: 'chain_missing' }),
    );
  });
});
