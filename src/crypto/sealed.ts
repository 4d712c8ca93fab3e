import {
  createCipheriv,
  createDecipheriv,
  createHash,
  createHmac,
  randomBytes,
  timingSafeEqual,
} from 'node:crypto';

/**
 * The sealed-value format of sql/functions/10_crypto.sql, in Node: byte for byte what pgcrypto
 * writes and reads, so that the library can open what the database released (it never sends the
 * database a key-encryption key to do it) and a differential test can check both implementations
 * against each other (test/crypto/differential.test.ts).
 *
 *   sealed = 0x01 ‖ iv (16) ‖ AES-256-CBC(PKCS#7) ‖ HMAC-SHA256(mac key, 0x01 ‖ aad ‖ iv ‖ ciphertext)
 *
 * Encrypt-then-MAC with separate keys; the tag is checked (in constant time) before anything is
 * decrypted. Only node:crypto primitives.
 */

const VERSION = 0x01;
const IV_BYTES = 16;
const TAG_BYTES = 32;
/** 1 version byte + IV + one block + tag: the shortest well-formed sealed value. */
const MIN_SEALED = 1 + IV_BYTES + 16 + TAG_BYTES;

/** `int4(byte length) ‖ bytes`, or 0xffffffff for NULL (the SQL functions' `_ts_lp`). */
function lp(bytes: Buffer | null): Buffer {
  if (bytes === null) return Buffer.from([0xff, 0xff, 0xff, 0xff]);
  const out = Buffer.allocUnsafe(4 + bytes.length);
  out.writeUInt32BE(bytes.length, 0);
  bytes.copy(out, 4);
  return out;
}

const lpText = (text: string) => lp(Buffer.from(text, 'utf8'));

function int4(n: number): Buffer {
  const out = Buffer.allocUnsafe(4);
  out.writeInt32BE(n, 0);
  return out;
}

const SECRET_LABEL = lpText('tenant-secrets:secret:v1');
const DEK_LABEL = lpText('tenant-secrets:dek:v1');

/**
 * Associated data of a secret's ciphertext: its tenant, key name, version and data-key version, i.e.
 * label ‖ lp(tenant) ‖ lp(key name) ‖ int4(version) ‖ int4(key version), written into one buffer
 * (every value opened builds one).
 */
export function secretAad(tenantId: string, keyName: string, version: number, keyVersion: number): Buffer {
  const tenantBytes = Buffer.byteLength(tenantId, 'utf8');
  const nameBytes = Buffer.byteLength(keyName, 'utf8');
  const out = Buffer.allocUnsafe(SECRET_LABEL.length + 4 + tenantBytes + 4 + nameBytes + 8);
  let at = SECRET_LABEL.copy(out, 0);
  at = out.writeUInt32BE(tenantBytes, at);
  at += out.write(tenantId, at, 'utf8');
  at = out.writeUInt32BE(nameBytes, at);
  at += out.write(keyName, at, 'utf8');
  at = out.writeInt32BE(version, at);
  out.writeInt32BE(keyVersion, at);
  return out;
}

/** Associated data of a wrapped data key: its tenant, key version and master key id. */
export function dekAad(tenantId: string, keyVersion: number, masterKeyId: string): Buffer {
  return Buffer.concat([DEK_LABEL, lpText(tenantId), int4(keyVersion), lpText(masterKeyId)]);
}

const VERSION_BYTE = Buffer.from([VERSION]);

function tag(macKey: Buffer, aad: Buffer, ivAndCiphertext: Buffer): Buffer {
  return createHmac('sha256', macKey).update(VERSION_BYTE).update(aad).update(ivAndCiphertext).digest();
}

/** Seals `plain` (as `_ts_seal`). `iv` is for tests that need a fixed one; leave it out otherwise. */
export function seal(
  plain: Buffer,
  encKey: Buffer,
  macKey: Buffer,
  aad: Buffer,
  iv: Buffer = randomBytes(IV_BYTES),
): Buffer {
  if (encKey.length !== 32 || macKey.length !== 32 || iv.length !== IV_BYTES) {
    throw new RangeError('seal needs a 32-byte encryption key, a 32-byte MAC key and a 16-byte IV');
  }
  const cipher = createCipheriv('aes-256-cbc', encKey, iv);
  const body = Buffer.concat([iv, cipher.update(plain), cipher.final()]);
  return Buffer.concat([VERSION_BYTE, body, tag(macKey, aad, body)]);
}

/**
 * Opens a sealed value (as `_ts_open`): the plaintext, or undefined when the value is malformed or
 * its tag does not match (nothing is decrypted then). Never throws on bad input.
 */
export function open(sealed: Buffer, encKey: Buffer, macKey: Buffer, aad: Buffer): Buffer | undefined {
  const n = sealed.length;
  if (n < MIN_SEALED || (n - 1 - TAG_BYTES) % 16 !== 0 || sealed[0] !== VERSION) return undefined;
  if (encKey.length !== 32 || macKey.length !== 32) return undefined;
  const body = sealed.subarray(1, n - TAG_BYTES);
  const expected = tag(macKey, aad, body);
  if (!timingSafeEqual(expected, sealed.subarray(n - TAG_BYTES))) return undefined;
  const decipher = createDecipheriv('aes-256-cbc', encKey, body.subarray(0, IV_BYTES));
  decipher.setAutoPadding(false);
  const padded = Buffer.concat([decipher.update(body.subarray(IV_BYTES)), decipher.final()]);
  // `_ts_unpad`: the last byte says how many to drop (1 to 16); anything else is malformed.
  const pad = padded[padded.length - 1] ?? 0;
  if (pad < 1 || pad > 16) return undefined;
  return padded.subarray(0, padded.length - pad);
}

/** HKDF-Expand of one block (`_ts_subkey`): HMAC-SHA256(key, label ‖ 0x01). */
function subkey(key: Buffer, label: string): Buffer {
  return createHmac('sha256', key)
    .update(Buffer.concat([Buffer.from(label, 'utf8'), Buffer.from([1])]))
    .digest();
}

/**
 * A data key's AES and MAC halves: a 64-byte key (since release 0.2) is both, drawn independently;
 * a 32-byte key (release 0.1) is expanded into them.
 */
export function dekKeys(dek: Buffer): { enc: Buffer; mac: Buffer } {
  if (dek.length === 64) return { enc: dek.subarray(0, 32), mac: dek.subarray(32, 64) };
  if (dek.length === 32)
    return { enc: subkey(dek, 'tenant-secrets:enc'), mac: subkey(dek, 'tenant-secrets:mac') };
  throw new RangeError('a data key is 32 or 64 bytes');
}

/** Unwraps a data key with the tenant's KEK (64 bytes: AES key ‖ MAC key); undefined when it does not authenticate. */
export function unwrapDataKey(
  wrapped: Buffer,
  kek: Buffer,
  tenantId: string,
  keyVersion: number,
  masterKeyId: string,
): Buffer | undefined {
  return open(wrapped, kek.subarray(0, 32), kek.subarray(32, 64), dekAad(tenantId, keyVersion, masterKeyId));
}

/** Wraps a data key (as `_ts_wrap_dek`). */
export function wrapDataKey(
  dek: Buffer,
  kek: Buffer,
  tenantId: string,
  keyVersion: number,
  masterKeyId: string,
): Buffer {
  return seal(dek, kek.subarray(0, 32), kek.subarray(32, 64), dekAad(tenantId, keyVersion, masterKeyId));
}

/** Opens a secret's ciphertext with its data key (as `_ts_open_secret`). */
export function openSecret(
  sealed: Buffer,
  dek: Buffer,
  tenantId: string,
  keyName: string,
  version: number,
  keyVersion: number,
): Buffer | undefined {
  const { enc, mac } = dekKeys(dek);
  return open(sealed, enc, mac, secretAad(tenantId, keyName, version, keyVersion));
}

/** Seals a secret's value (as `_ts_seal_secret`). */
export function sealSecret(
  plain: Buffer,
  dek: Buffer,
  tenantId: string,
  keyName: string,
  version: number,
  keyVersion: number,
  iv?: Buffer,
): Buffer {
  const { enc, mac } = dekKeys(dek);
  const aad = secretAad(tenantId, keyName, version, keyVersion);
  return iv === undefined ? seal(plain, enc, mac, aad) : seal(plain, enc, mac, aad, iv);
}

/**
 * The tenant's access token under one master key: HMAC-SHA256(KEK MAC half, "tenant-secrets:access:v1")
 * (`_ts_access_token`). The database keeps its SHA-256 and releases ciphertext only to its holder.
 */
export function accessToken(kek: Buffer): Buffer {
  return createHmac('sha256', kek.subarray(32, 64)).update('tenant-secrets:access:v1').digest();
}

/** SHA-256 of an access token, as the database stores it. */
export function accessDigest(kek: Buffer): Buffer {
  return createHash('sha256').update(accessToken(kek)).digest();
}

/** HMAC-SHA256(data key, "tenant-secrets:dek-check:v1") (`_ts_dek_check`). */
export function dataKeyCheck(dek: Buffer): Buffer {
  return createHmac('sha256', dek).update('tenant-secrets:dek-check:v1').digest();
}
