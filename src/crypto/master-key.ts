import { createHmac, createSecretKey, hkdfSync, type KeyObject, randomBytes } from 'node:crypto';
import { inspect } from 'node:util';
import { ConfigurationError } from '../base/errors.js';
import { isDigestOfCommonWord } from './weak-keys.js';

/** How to make a valid key, quoted in every key error. */
export const KEYGEN_HINT =
  "generate one with `npx tenant-secrets keygen` or `node -e \"console.log(require('node:crypto').randomBytes(32).toString('base64'))\"`";

const HEX_64 = /^[0-9a-fA-F]{64}$/;
const BASE64_32 = /^[A-Za-z0-9+/]{43}=?$/;
const BASE64URL_32 = /^[A-Za-z0-9_-]{43}=?$/;
/** A random 32-byte key has ~27 distinct byte values; fewer than 12 means it was typed, not generated. */
const MIN_DISTINCT_BYTES = 12;
/** Master key fingerprint ids: `mk_` and 16 lowercase hex digits. */
export const MASTER_KEY_ID_PATTERN = /^mk_[0-9a-f]{16}$/;

/** A byte of text: printable ASCII, a tab, a newline or a carriage return. */
const isTextByte = (b: number) => (b >= 0x20 && b <= 0x7e) || b === 0x09 || b === 0x0a || b === 0x0d;
/**
 * Bytes of text (or a trailing NUL) above which 32 bytes are text, not a key: a passphrase encoded as
 * a key, `echo … | base64` (its newline included), a C string with its NUL. Each byte of a random key
 * is one of these with probability 98/256, so 30 or more of 32 happens about once in 10^10 keys.
 */
const MIN_TEXT_BYTES = 30;

/** Why 32 bytes are evidently not random, or undefined. */
function notRandom(bytes: Buffer): string | undefined {
  if (new Set(bytes).size < MIN_DISTINCT_BYTES) return 'too few distinct bytes';
  const text = bytes.filter((b, i) => isTextByte(b) || (b === 0 && i === bytes.length - 1)).length;
  if (text >= MIN_TEXT_BYTES) {
    return `it is text (${text} of its 32 bytes are printable characters${bytes[31] === 0x0a ? ', ending in a newline' : bytes[31] === 0 ? ', ending in a NUL' : ''}), not random bytes`;
  }
  if (isDigestOfCommonWord(bytes)) return 'it is the SHA-256 of a common password or word';
  // A short pattern repeated (period of at most 8 bytes).
  for (let period = 1; period <= 8; period++) {
    if (bytes.every((b, i) => i < period || b === bytes[i - period])) return 'it repeats a short pattern';
  }
  // Sequential bytes (constant step, e.g. 00 01 02 ... or 1f 1e 1d ...).
  const step = ((bytes[1] ?? 0) - (bytes[0] ?? 0) + 256) % 256;
  if (bytes.every((b, i) => i === 0 || (b - (bytes[i - 1] ?? 0) + 256) % 256 === step))
    return 'its bytes are sequential';
  return undefined;
}

/**
 * A 256-bit master key. The bytes live in a private field: `console.log`, `util.inspect`,
 * `JSON.stringify` and error reporters see only the key's fingerprint id.
 */
export class MasterKey {
  readonly #bytes: Buffer;
  /**
   * The same bytes as a KeyObject, made once: HKDF given a Buffer makes one per call (about 2.3 of
   * its ~10.7 µs, measured here), and every first call for a tenant derives its KEK.
   */
  readonly #hkdfKey: KeyObject;
  /** Public fingerprint, `mk_` + 16 hex digits of HMAC-SHA256(key, label). Safe to log and store. */
  readonly id: string;

  private constructor(bytes: Buffer) {
    this.#bytes = bytes;
    this.#hkdfKey = createSecretKey(bytes);
    this.id = `mk_${createHmac('sha256', bytes).update('tenant-secrets:key-id:v1').digest('hex').slice(0, 16)}`;
  }

  /**
   * Parses a key given as 64 hex characters or base64/base64url of exactly 32 bytes.
   * @param source names the setting in error messages (never the value).
   * @throws {ConfigurationError} for anything else: short, long, passphrases, keys that are evidently
   *   not random (few distinct bytes, printable text, a repeated pattern, sequential bytes).
   */
  static parse(encoded: string, source = 'TENANT_SECRETS_MASTER_KEY'): MasterKey {
    if (typeof encoded !== 'string') {
      throw new ConfigurationError(
        `${source} must be a string (base64 or hex of 32 random bytes); ${KEYGEN_HINT}`,
      );
    }
    const text = encoded.trim();
    if (text === '') {
      throw new ConfigurationError(`${source} is not set; ${KEYGEN_HINT}`);
    }
    let bytes: Buffer | undefined;
    if (HEX_64.test(text)) bytes = Buffer.from(text, 'hex');
    else if (BASE64_32.test(text)) bytes = Buffer.from(text, 'base64');
    else if (BASE64URL_32.test(text)) bytes = Buffer.from(text, 'base64url');
    if (bytes?.length !== 32) {
      throw new ConfigurationError(
        `${source} must be exactly 32 random bytes, encoded as base64 (44 characters) or hex (64 characters); the value given is neither (${text.length} characters) - ${KEYGEN_HINT}`,
      );
    }
    const reason = notRandom(bytes);
    if (reason) {
      throw new ConfigurationError(`${source} does not look random (${reason}); ${KEYGEN_HINT}`);
    }
    return new MasterKey(bytes);
  }

  /** A fresh random key. */
  static generate(): MasterKey {
    for (;;) {
      const bytes = randomBytes(32);
      if (!notRandom(bytes)) return new MasterKey(bytes);
    }
  }

  /** The key as base64, for `keygen` only. Anything else should pass the object around. */
  export(): string {
    return this.#bytes.toString('base64');
  }

  /**
   * The 64-byte key-encryption key for one tenant (32 bytes AES-256 key ‖ 32 bytes HMAC key),
   * HKDF-SHA256 (RFC 5869) with the tenant id in `info`. Only this narrow key reaches the database.
   */
  deriveTenantKek(tenantId: string): Buffer {
    return Buffer.from(
      hkdfSync(
        'sha256',
        this.#hkdfKey,
        'tenant-secrets:kek-salt:v1',
        `tenant-secrets:kek:v1\u0000${tenantId}`,
        64,
      ),
    );
  }

  /**
   * The proof key the database keeps for this master key (registered by `migrate()`): it verifies
   * tenant proofs, and derives nothing else.
   */
  deriveProofKey(): Buffer {
    return Buffer.from(
      hkdfSync('sha256', this.#hkdfKey, 'tenant-secrets:proof-salt:v1', 'tenant-secrets:proof-key:v1', 32),
    );
  }

  /**
   * HMAC-SHA256(proof key, "tenant-secrets:tenant-proof:v1" ‖ len ‖ tenant id): shows the database
   * that the caller holds this master key, for one tenant only ('' is the system pseudo-tenant).
   */
  tenantProof(tenantId: string, proofKey = this.deriveProofKey()): Buffer {
    const label = Buffer.from('tenant-secrets:tenant-proof:v1', 'utf8');
    const tenant = Buffer.from(tenantId, 'utf8');
    const header = Buffer.alloc(4);
    const lengths = Buffer.alloc(4);
    header.writeUInt32BE(label.length);
    lengths.writeUInt32BE(tenant.length);
    return createHmac('sha256', proofKey)
      .update(header)
      .update(label)
      .update(lengths)
      .update(tenant)
      .digest();
  }

  /** An HMAC key for signing audit checkpoints; never sent to the database. */
  deriveAuditKey(): Buffer {
    return Buffer.from(
      hkdfSync('sha256', this.#hkdfKey, 'tenant-secrets:audit-salt:v1', 'tenant-secrets:audit:v1', 32),
    );
  }

  toJSON(): { id: string } {
    return { id: this.id };
  }

  toString(): string {
    return `MasterKey(${this.id})`;
  }

  [inspect.custom](): string {
    return this.toString();
  }
}

/** Returns a new random master key, base64-encoded, ready for `TENANT_SECRETS_MASTER_KEY`. */
export function generateMasterKey(): string {
  return MasterKey.generate().export();
}
