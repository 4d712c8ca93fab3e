// suite-scope: once — master-key validation, no database
import { createHash, randomBytes, randomInt } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ConfigurationError, generateMasterKey, MasterKey } from '../../src/index.js';

/**
 * Master keys that are evidently not random (text, short repeating patterns, sequential bytes, few
 * distinct bytes) are refused with a message naming `keygen`; random keys never are.
 */
function refusal(bytes: Buffer, encoding: 'base64' | 'hex' | 'base64url' = 'base64'): string {
  const text = bytes.toString(encoding);
  try {
    MasterKey.parse(text);
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigurationError);
    const message = (error as Error).message;
    expect(message).toContain('keygen');
    expect(message).not.toContain(text);
    expect(message).not.toContain(bytes.toString('hex'));
    return message;
  }
  return 'accepted';
}

const printable = (n: number) => Buffer.from(Array.from({ length: n }, () => 0x20 + randomInt(95)));

describe('keys that are evidently not random are refused, naming keygen', () => {
  it.each([
    [
      'base64 of a 31-character passphrase and the newline `echo` adds',
      Buffer.from('my very secret passphrase 2026!\n', 'ascii'),
    ],
    ['31 characters of text and a trailing NUL', Buffer.concat([printable(31), Buffer.from([0])])],
    ['text with two bytes that are not printable', Buffer.concat([printable(30), Buffer.from([0x01, 0x0a])])],
  ])('text-like bytes: %s', (_label, bytes) => {
    expect(bytes).toHaveLength(32);
    for (const encoding of ['base64', 'hex', 'base64url'] as const) {
      expect(refusal(bytes, encoding)).toMatch(/is text/);
    }
  });

  it.each(['password', 'secret', 'changeme', 'hello', 'correcthorsebatterystaple', 'Password', 'admin'])(
    'the SHA-256 of a common word (%s), with or without the newline of `echo`',
    (word) => {
      for (const text of [word, `${word}\n`]) {
        const bytes = createHash('sha256').update(text).digest();
        for (const encoding of ['base64', 'hex'] as const) {
          expect(refusal(bytes, encoding)).toMatch(/SHA-256 of a common password or word/);
        }
      }
    },
  );

  it.each([
    ['a 32-character passphrase', Buffer.from('correct horse battery staple 123', 'ascii')],
    ['32 random printable ASCII characters', printable(32)],
    ['a 32-character hex string taken as bytes', Buffer.from(randomBytes(16).toString('hex'), 'ascii')],
    ['a 32-character base64 string taken as bytes', Buffer.from(randomBytes(24).toString('base64'), 'ascii')],
  ])('printable text: %s', (_label, bytes) => {
    expect(bytes).toHaveLength(32);
    for (const encoding of ['base64', 'hex', 'base64url'] as const) {
      expect(refusal(bytes, encoding)).toMatch(/is text|distinct/);
    }
  });

  it.each([1, 2, 3, 4, 5, 6, 7, 8])('a pattern of %i byte(s) repeated', (period) => {
    const pattern = randomBytes(period);
    const bytes = Buffer.from(Array.from({ length: 32 }, (_, i) => pattern[i % period] as number));
    expect(refusal(bytes)).toMatch(/repeats a short pattern|distinct/);
  });

  it.each([
    ['ascending from 0', 0, 1],
    ['descending from 0x1f', 0x1f, -1],
    ['ascending by 3 from a random start, wrapping past 0xff', 0xf0, 3],
    ['descending by 7 from a random start', randomInt(256), -7],
    ['ascending by 13 from a random start', randomInt(256), 13],
  ])('sequential bytes: %s', (_label, start, step) => {
    const bytes = Buffer.from(Array.from({ length: 32 }, (_, i) => (((start + step * i) % 256) + 256) % 256));
    expect(refusal(bytes)).toMatch(/sequential|distinct/);
  });

  it('few distinct bytes', () => {
    const alphabet = randomBytes(11);
    const bytes = Buffer.from(Array.from({ length: 32 }, () => alphabet[randomInt(11)] as number));
    expect(refusal(bytes)).toMatch(/distinct/);
    expect(refusal(Buffer.alloc(32))).toMatch(/distinct/);
  });

  it('the rules are narrow: one non-printable byte among printable ones is not "text"', () => {
    for (let i = 0; i < 50; i++) {
      const bytes = printable(32);
      bytes[randomInt(32)] = 0x80 + randomInt(128);
      // Still refused only if another rule applies (it practically never does for these).
      expect(refusal(bytes)).not.toMatch(/printable text/);
    }
  });
});

describe('random keys are never refused', () => {
  it('property: any uniformly random 32 bytes parse, in base64, base64url and hex, to the same key', () => {
    fc.assert(
      fc.property(fc.noBias(fc.uint8Array({ minLength: 32, maxLength: 32 })), (array) => {
        const bytes = Buffer.from(array);
        const id = MasterKey.parse(bytes.toString('base64')).id;
        expect(MasterKey.parse(bytes.toString('base64url')).id).toBe(id);
        expect(MasterKey.parse(bytes.toString('hex')).id).toBe(id);
      }),
      { numRuns: 20_000 },
    );
  });

  it('100 000 keys from the system generator all parse, and generateMasterKey() always gives a usable key', () => {
    for (let i = 0; i < 100_000; i++) MasterKey.parse(randomBytes(32).toString('base64'));
    for (let i = 0; i < 1_000; i++)
      expect(MasterKey.parse(generateMasterKey()).id).toMatch(/^mk_[0-9a-f]{16}$/);
  });
});
