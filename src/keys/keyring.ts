import { inspect } from 'node:util';
import { ConfigurationError } from '../errors.js';
import { MasterKey } from './master-key.js';

/** What the SQL functions need to unwrap a tenant's data keys: one KEK per master key, current first. */
export interface TenantKeyBundle {
  readonly ids: string[];
  readonly keks: Buffer[];
}

/**
 * The current master key plus older keys still accepted for unwrapping (during a master-key
 * rotation). New data keys are always wrapped under `current`.
 */
export class Keyring {
  readonly current: MasterKey;
  readonly previous: readonly MasterKey[];

  constructor(current: MasterKey, previous: readonly MasterKey[] = []) {
    this.current = current;
    const seen = new Set([current.id]);
    this.previous = previous.filter((key) => !seen.has(key.id) && seen.add(key.id));
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
      .map((item) => item.trim())
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

  /** The tenant's KEK under every key in the ring, current first. */
  bundleFor(tenantId: string): TenantKeyBundle {
    return { ids: this.ids, keks: this.keys.map((key) => key.deriveTenantKek(tenantId)) };
  }

  toJSON(): { current: string; previous: string[] } {
    return { current: this.current.id, previous: this.previous.map((key) => key.id) };
  }

  [inspect.custom](): string {
    return `Keyring(current=${this.current.id}, previous=[${this.previous.map((key) => key.id).join(', ')}])`;
  }
}
