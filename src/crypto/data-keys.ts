import { inspect } from 'node:util';
import type { Keyring } from './keyring.js';
import { unwrapDataKey } from './sealed.js';

/** A tenant's data key of one version, as the database holds it wrapped. */
export interface WrappedDataKey {
  readonly keyVersion: number;
  readonly masterKeyId: string;
  readonly wrapped: Buffer;
}

/** Why a wrapped data key did not open: the ring lacks its master key, or it does not authenticate. */
export type UnwrapFailure = 'unknown_master_key' | 'integrity';

interface Entry {
  masterKeyId: string;
  wrapped: Buffer;
  dek: Buffer;
}

/**
 * Unwrapped data keys, by tenant and key version, plus the version each tenant writes with. The
 * library opens what the database releases with them, and sends the active one with writes instead
 * of the tenant's KEK. An entry is used only while the database still releases the same wrapped
 * bytes (a master-key rotation re-wraps: the next read unwraps again). Keys live in a private map,
 * never printed; the least recently used are dropped beyond `limit`.
 */
export class DataKeys {
  readonly #entries = new Map<string, Entry>();
  readonly #active = new Map<string, number>();
  readonly #keyring: Keyring;
  readonly #limit: number;

  constructor(keyring: Keyring, limit: number) {
    this.#keyring = keyring;
    this.#limit = Math.max(1, limit);
  }

  /** The data key of `key`, unwrapped with the tenant's KEK (from the ring), or why it cannot be. */
  open(tenantId: string, key: WrappedDataKey): Buffer | UnwrapFailure {
    const id = `${tenantId}\u0000${key.keyVersion}`;
    const hit = this.#entries.get(id);
    if (hit && hit.masterKeyId === key.masterKeyId && hit.wrapped.equals(key.wrapped)) {
      this.#entries.delete(id);
      this.#entries.set(id, hit);
      return hit.dek;
    }
    const kek = this.#keyring.kek(tenantId, key.masterKeyId);
    if (!kek) return 'unknown_master_key';
    const dek = unwrapDataKey(key.wrapped, kek, tenantId, key.keyVersion, key.masterKeyId);
    if (!dek) return 'integrity';
    this.#remember(id, { masterKeyId: key.masterKeyId, wrapped: Buffer.from(key.wrapped), dek });
    return dek;
  }

  /** Records that `key` is the tenant's active key (what writes use), and returns its data key. */
  activate(tenantId: string, key: WrappedDataKey): Buffer | UnwrapFailure {
    const dek = this.open(tenantId, key);
    if (Buffer.isBuffer(dek)) this.#active.set(tenantId, key.keyVersion);
    return dek;
  }

  /** The key version and data key writes of this tenant use, when known. */
  active(tenantId: string): { keyVersion: number; dek: Buffer } | undefined {
    const keyVersion = this.#active.get(tenantId);
    if (keyVersion === undefined) return undefined;
    const entry = this.#entries.get(`${tenantId}\u0000${keyVersion}`);
    if (!entry) {
      this.#active.delete(tenantId);
      return undefined;
    }
    return { keyVersion, dek: entry.dek };
  }

  /** Forgets a tenant's keys (after a purge or a key rotation by this process). */
  forget(tenantId: string): void {
    this.#active.delete(tenantId);
    for (const id of [...this.#entries.keys()]) {
      if (id.startsWith(`${tenantId}\u0000`)) this.#entries.delete(id);
    }
  }

  clear(): void {
    this.#entries.clear();
    this.#active.clear();
  }

  #remember(id: string, entry: Entry): void {
    this.#entries.delete(id);
    while (this.#entries.size >= this.#limit) {
      const oldest = this.#entries.keys().next().value;
      if (oldest === undefined) break;
      this.#entries.delete(oldest);
      this.#active.delete(oldest.slice(0, oldest.indexOf('\u0000')));
    }
    this.#entries.set(id, entry);
  }

  toJSON(): { entries: number } {
    return { entries: this.#entries.size };
  }

  [inspect.custom](): string {
    return `DataKeys(${this.#entries.size} entries)`;
  }
}
