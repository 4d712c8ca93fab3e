import { createHash } from 'node:crypto';

/**
 * Common passwords and words whose SHA-256 (of the word, or of the word and a newline, as
 * `echo word | sha256sum` gives) has been seen used as a "random" 32-byte key. A key equal to one of
 * them is refused. Not a dictionary attack defence: a last check against the most frequent mistakes.
 */
const WORDS = `password passw0rd password1 password123 p@ssw0rd 123456 1234567 12345678 123456789 1234567890
qwerty qwerty123 abc123 letmein welcome welcome1 admin admin123 administrator root toor secret secret1 secretkey
secret-key secret_key mysecret topsecret changeme changeit default master masterkey master-key master_key key
apikey api-key api_key token test test123 testing demo example sample dev development staging prod production
local localhost postgres postgresql supabase tenant tenants tenant-secrets tenantsecrets vault encryption
encryptionkey encryption-key encryption_key crypto cipher aes aes256 sha256 hello hello123 helloworld
hello-world iloveyou monkey dragon football baseball soccer hockey batman superman trustno1 sunshine princess
shadow michael jennifer jordan hunter hunter2 ranger buster killer charlie thomas robert daniel starwars
whatever freedom computer internet access login guest user username pass pass123 passphrase 000000 111111
121212 123123 654321 666666 696969 7777777 888888 987654321 zaq12wsx 1q2w3e4r 1qaz2wsx asdfgh asdfghjkl
zxcvbnm qazwsx mustang access14 cheese summer winter spring autumn flower orange banana apple cookie
chocolate coffee computer1 correcthorsebatterystaple correct-horse-battery-staple nothing unknown none null
undefined empty blank temp temporary foo bar foobar baz qux lorem ipsum loremipsum random random123
changeme123 letmein123 welcome123 mypassword mysecretkey supersecret supersecretkey verysecret notsecret
insecure unsafe keyboard`.split(/\s+/);

let digests: Set<string> | undefined;

/** Whether `bytes` is the SHA-256 of a common password or word (with or without a trailing newline). */
export function isDigestOfCommonWord(bytes: Buffer): boolean {
  if (!digests) {
    digests = new Set();
    for (const word of WORDS) {
      for (const cased of [word, word.toUpperCase(), `${word[0]?.toUpperCase()}${word.slice(1)}`]) {
        for (const text of [cased, `${cased}\n`])
          digests.add(createHash('sha256').update(text).digest('hex'));
      }
    }
  }
  return digests.has(bytes.toString('hex'));
}
