import { inspect } from 'node:util';
import { ConfigurationError } from '../base/errors.js';
import { MasterKey } from './master-key.js';
import { accessToken } from './sealed.js';

/**
 * What the SQL functions take to act for one tenant: for every master key of the ring (current
 * first), its fingerprint id, the tenant's KEK under it and the tenant proof under it, packed into one
 * `bytea` (layout in sql/functions/10_crypto.sql). Treat it as a secret: it is the capability for
 * that tenant. It never holds a master key.
 */
export interface TenantKeyBundle {
  readonly tenantId: string;
  /** Fingerprint ids of the master keys in the bundle, current first. */
  readonly masterKeyIds: readonly string[];
  /** The packed bundle, for the SQL functions' `p_bundle` / `p_key_bundle` parameter. */
  readonly bytes: Buffer;
  /** `\x…` hex text of the bundle, for callers that pass bytea as text (e.g. `supabase.rpc`). */
  toSqlHex(): string;
}

const ENTRY = 19 + 64 + 32;
const CREDENTIALS_ENTRY = 19 + 32 + 32;
/**
 * Bundles and credentials kept per keyring: derivation (HKDF + HMACs per master key, ~10 µs) is
 * skipped for tenants seen recently. About 250 bytes each; the limit is `keyCacheEntries`.
 */
export const DEFAULT_KEY_CACHE_ENTRIES = 100_000;

/** A map that forgets its least recently used entry beyond `limit`. */
class Recent<V> {
  readonly #map = new Map<string, V>();
  constructor(readonly limit: number) {}
  get(key: string): V | undefined {
    const value = this.#map.get(key);
    if (value !== undefined) {
      this.#map.delete(key);
      this.#map.set(key, value);
    }
    return value;
  }
  set(key: string, value: V): void {
    this.#map.delete(key);
    if (this.#map.size >= this.limit) {
      const oldest = this.#map.keys().next().value;
      if (oldest !== undefined) this.#map.delete(oldest);
    }
    this.#map.set(key, value);
  }
  clear(): void {
    this.#map.clear();
  }
}

/**
 * The current master key plus older keys still accepted for unwrapping (during a master-key
 * rotation). New data keys are always wrapped under `current`.
 */
export class Keyring {
  readonly current: MasterKey;
  readonly previous: readonly MasterKey[];
  readonly #proofKeys: Buffer[];
  readonly #bundles: Recent<Buffer>;
  readonly #credentials: Recent<Buffer>;
  /** Tenant KEKs of the current master key: a read derives it for the credentials, then opens the data key with it. */
  readonly #keks: Recent<Buffer>;

  constructor(
    current: MasterKey,
    previous: readonly MasterKey[] = [],
    cacheEntries = DEFAULT_KEY_CACHE_ENTRIES,
  ) {
    if (!(current instanceof MasterKey)) {
      throw new ConfigurationError('the current master key must be a MasterKey (or a base64/hex string)');
    }
    this.current = current;
    const seen = new Set([current.id]);
    this.previous = previous.filter((key) => {
      if (!(key instanceof MasterKey)) {
        throw new ConfigurationError(
          'previous master keys must be MasterKey objects (or base64/hex strings)',
        );
      }
      return !seen.has(key.id) && seen.add(key.id);
    });
    if (this.previous.length > 15) throw new ConfigurationError('at most 15 previous master keys');
    this.#proofKeys = this.keys.map((key) => key.deriveProofKey());
    this.#bundles = new Recent(cacheEntries);
    this.#credentials = new Recent(cacheEntries);
    this.#keks = new Recent(cacheEntries);
  }

  /**
   * Builds a keyring from encoded keys.
   * @throws {ConfigurationError} when a key is missing or malformed (the message names the setting, not the key).
   */
  static parse(
    current: string | undefined,
    previous: string | readonly string[] | undefined = undefined,
    names = { current: 'TENANT_SECRETS_MASTER_KEY', previous: 'TENANT_SECRETS_PREVIOUS_MASTER_KEYS' },
  ): Keyring {
    if (current === undefined) throw new ConfigurationError(`${names.current} is not set`);
    const list = typeof previous === 'string' ? previous.split(',') : (previous ?? []);
    const parsed = list
      .map((item) => (typeof item === 'string' ? item.trim() : item))
      .filter((item) => item !== '')
      .map((item, index) => MasterKey.parse(item, `${names.previous} (entry ${index + 1})`));
    return new Keyring(MasterKey.parse(current, names.current), parsed);
  }

  /** All keys, current first. */
  get keys(): readonly MasterKey[] {
    return [this.current, ...this.previous];
  }

  get ids(): string[] {
    return this.keys.map((key) => key.id);
  }

  has(id: string): boolean {
    return this.keys.some((key) => key.id === id);
  }

  /** The packed key bundle of one tenant ('' = the system pseudo-tenant, for master-key proofs). */
  bundleBytes(tenantId: string): Buffer {
    const cached = this.#bundles.get(tenantId);
    if (cached) return cached;
    const keys = this.keys;
    const out = Buffer.alloc(2 + ENTRY * keys.length);
    out[0] = 1;
    out[1] = keys.length;
    keys.forEach((key, i) => {
      const at = 2 + ENTRY * i;
      out.write(key.id, at, 'ascii');
      this.#kekOf(key, tenantId).copy(out, at + 19);
      key.tenantProof(tenantId, this.#proofKeys[i]).copy(out, at + 83);
    });
    this.#bundles.set(tenantId, out);
    return out;
  }

  /**
   * The tenant's credentials for the library's data path (layout in sql/functions/56_access.sql):
   * for every master key of the ring, its id, the tenant's access token and the tenant proof. No KEK:
   * they let the database release ciphertext, never decrypt it.
   */
  credentialsBytes(tenantId: string): Buffer {
    const cached = this.#credentials.get(tenantId);
    if (cached) return cached;
    const keys = this.keys;
    const out = Buffer.alloc(2 + CREDENTIALS_ENTRY * keys.length);
    out[0] = 2;
    out[1] = keys.length;
    keys.forEach((key, i) => {
      const at = 2 + CREDENTIALS_ENTRY * i;
      out.write(key.id, at, 'ascii');
      accessToken(this.#kekOf(key, tenantId)).copy(out, at + 19);
      key.tenantProof(tenantId, this.#proofKeys[i]).copy(out, at + 51);
    });
    this.#credentials.set(tenantId, out);
    return out;
  }

  /** The tenant's KEK under master key `masterKeyId`, or undefined when the ring does not hold it. */
  kek(tenantId: string, masterKeyId: string): Buffer | undefined {
    const key = this.keys.find((k) => k.id === masterKeyId);
    return key && this.#kekOf(key, tenantId);
  }

  /**
   * A tenant's KEK (HKDF, ~11 µs), kept for the current master key only: the one every cold read of
   * a tenant needs twice (credentials, then its data key). The bundle cache holds the same bytes.
   */
  #kekOf(key: MasterKey, tenantId: string): Buffer {
    if (key !== this.current) return key.deriveTenantKek(tenantId);
    const cached = this.#keks.get(tenantId);
    if (cached) return cached;
    const kek = key.deriveTenantKek(tenantId);
    this.#keks.set(tenantId, kek);
    return kek;
  }

  /** The tenant's key bundle (see {@link TenantKeyBundle}). */
  bundleFor(tenantId: string): TenantKeyBundle {
    const bytes = this.bundleBytes(tenantId);
    const bundle = { tenantId, masterKeyIds: this.ids, toSqlHex: () => `\\x${bytes.toString('hex')}` };
    // Not enumerable, and not printed: logging the bundle shows ids only.
    Object.defineProperty(bundle, 'bytes', { value: bytes, enumerable: false });
    Object.defineProperty(bundle, inspect.custom, {
      value: () => `TenantKeyBundle(${tenantId}, [${this.ids.join(', ')}])`,
      enumerable: false,
    });
    Object.defineProperty(bundle, 'toJSON', {
      value: () => ({ tenantId, masterKeyIds: this.ids }),
      enumerable: false,
    });
    return bundle as unknown as TenantKeyBundle;
  }

  /** Proof key of each master key of the ring, for registration (current first). */
  proofKeys(): { id: string; proofKey: Buffer }[] {
    return this.keys.map((key, i) => ({ id: key.id, proofKey: this.#proofKeys[i] as Buffer }));
  }

  toJSON(): { current: string; previous: string[] } {
    return { current: this.current.id, previous: this.previous.map((key) => key.id) };
  }

  [inspect.custom](): string {
    return `Keyring(current=${this.current.id}, previous=[${this.previous.map((key) => key.id).join(', ')}])`;
  }
}
