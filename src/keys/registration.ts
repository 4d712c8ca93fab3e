import { ConfigurationError, DatabaseError, InvalidInputError } from '../base/errors.js';
import type { Core } from '../core/core.js';
import { MASTER_KEY_ID_PATTERN } from '../crypto/master-key.js';

/** What `registerMasterKey()` did, per master key id of the ring. */
export interface RegistrationResult {
  /** Registered by this call. */
  registered: string[];
  /** Registered before. */
  alreadyRegistered: string[];
}

/** What `unregisterMasterKey()` did. */
export interface UnregistrationResult {
  masterKeyId: string;
  /** False when the key was not registered (nothing changed). */
  unregistered: boolean;
}

/**
 * Registration of the keyring's master keys: the database keeps, per master key, a proof key derived
 * from it, which lets it check tenant proofs (and so allow a key to vouch for a tenant with no data
 * key yet) without being able to derive anything that decrypts.
 */
export function registrationOperations(core: Core) {
  const { qs } = core;
  return {
    /**
     * Registers the configured master keys. The schema owner may always; another role may when one of
     * its keys is registered already (it proves that key), e.g. an application whose new current key
     * is deployed next to the previous one. Idempotent. Audited as `master_key.registered`.
     * @throws {DatabaseError} SQLSTATE 42501: neither the owner nor holding a registered key.
     * @throws {ConfigurationError} a key id is registered with another proof key.
     */
    async registerMasterKey(): Promise<RegistrationResult> {
      const out: RegistrationResult = { registered: [], alreadyRegistered: [] };
      const proof = core.keyring.bundleBytes('');
      const ctx = JSON.stringify(core.sqlContext());
      for (const { id, proofKey } of core.keyring.proofKeys()) {
        const rows = await core.query<{ status: string }>(
          'registerMasterKey',
          `SELECT ${qs}.tenant_secret_register_master_key($1, $2, $3, $4::text::jsonb) AS status`,
          [id, proofKey, proof, ctx],
        );
        const status = rows[0]?.status;
        if (status === 'ok') out.registered.push(id);
        else if (status === 'exists') out.alreadyRegistered.push(id);
        else if (status === 'conflict') {
          throw new ConfigurationError(
            `master key ${id} is registered in this database with another proof key`,
          );
        } else {
          throw new DatabaseError(
            'registerMasterKey (only the schema owner, or a caller holding an already registered master key, may register one)',
            '42501',
          );
        }
      }
      return out;
    },

    /**
     * Unregisters a master key by id: it can no longer vouch for tenants (create a tenant's first data
     * key, or prove a tenant whose data key it does not wrap). Data keys it still wraps keep working
     * for whoever holds that key — `rotateMasterKey()` moves them; this is the step that takes a
     * retired or leaked key's remaining power away once its successor is registered. Schema owner or
     * operator roles (`migrate({ grantOperatorTo })`). Audited as `master_key.unregistered`.
     * @param options.force also unregister the only registered key (no new tenant can then be created
     *   until a key is registered again).
     * @throws {InvalidInputError} not a master key id (`mk_` + 16 hex digits).
     * @throws {ConfigurationError} it is the only registered key and `force` is not set.
     * @throws {DatabaseError} SQLSTATE 42501: neither the owner nor an operator role.
     */
    async unregisterMasterKey(
      masterKeyId: string,
      options: { force?: boolean } = {},
    ): Promise<UnregistrationResult> {
      if (typeof masterKeyId !== 'string' || !MASTER_KEY_ID_PATTERN.test(masterKeyId)) {
        throw new InvalidInputError(
          'masterKeyId must be a master key id (mk_ followed by 16 hex digits)',
          'masterKeyId',
        );
      }
      const force = options.force ?? false;
      if (typeof force !== 'boolean') throw new InvalidInputError('force must be a boolean', 'force');
      const rows = await core.query<{ status: string }>(
        'unregisterMasterKey',
        `SELECT ${qs}.tenant_secret_unregister_master_key($1, $2, $3::text::jsonb) AS status`,
        [masterKeyId, force, JSON.stringify(core.sqlContext())],
      );
      const status = rows[0]?.status;
      if (status === 'ok') return { masterKeyId, unregistered: true };
      if (status === 'not_registered') return { masterKeyId, unregistered: false };
      if (status === 'last_key') {
        throw new ConfigurationError(
          `master key ${masterKeyId} is the only registered master key: register its successor first (migrate() or registerMasterKey() with it configured), or pass force`,
        );
      }
      throw new InvalidInputError('masterKeyId is not a valid master key id', 'masterKeyId');
    },
  };
}
