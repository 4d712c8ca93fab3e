// suite-scope: once — the CLI's front end (arguments, prompts, output, exit codes, signals) behaves the same on any server; the library's files run every SQL path it reaches on each server
import type { ChildProcessWithoutNullStreams } from 'node:child_process';
import { beforeAll, describe, expect, it } from 'vitest';
import { MAX_VALUE_BYTES } from '../../src/index.js';
import { type CliResult, runCli, startCli } from '../support/cli.js';
import { freshDatabase, TEST_KEY } from '../support/db.js';

/** Values read from standard input are bounded: a huge pipe is refused early, never buffered. */

let env: Record<string, string>;

beforeAll(async () => {
  const db = await freshDatabase('cli_stdin');
  env = { DATABASE_URL: db.url, TENANT_SECRETS_MASTER_KEY: TEST_KEY };
  expect((await runCli(['migrate'], { env })).code).toBe(0);
});

/**
 * Offers `total` bytes on the child's stdin in 64 KiB chunks, each written only once the previous
 * one was taken (so nothing piles up in this process), and stops when the child closes its end.
 * Returns the result and how many bytes the pipe accepted: what the child read plus at most the
 * pipe's buffer.
 */
function offer(
  child: ChildProcessWithoutNullStreams,
  total: number,
): Promise<CliResult & { accepted: number }> {
  return new Promise((resolve, reject) => {
    let stdout = '';
    let stderr = '';
    let accepted = 0;
    let closed = false;
    const chunk = Buffer.alloc(65_536, 'x');
    child.stdout.setEncoding('utf8').on('data', (d: string) => {
      stdout += d;
    });
    child.stderr.setEncoding('utf8').on('data', (d: string) => {
      stderr += d;
    });
    child.stdin.on('error', () => {
      closed = true; // EPIPE: the child stopped reading
    });
    const next = () => {
      if (closed) return;
      if (accepted >= total) {
        child.stdin.end();
        return;
      }
      child.stdin.write(chunk, (error) => {
        if (error) {
          closed = true;
          return;
        }
        accepted += chunk.length;
        next();
      });
    };
    next();
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr, accepted }));
  });
}

describe('bounded standard input', () => {
  const TWENTY_MB = 20 * 1024 * 1024;

  it('set: refuses a 20 MB pipe with INVALID_INPUT (exit 2) after reading little of it', async () => {
    const result = await offer(startCli(['set', 'tenant-big', 'k'], env), TWENTY_MB);
    expect(result.code, result.stderr).toBe(2);
    expect(result.stderr).toContain(`[INVALID_INPUT]: the value is larger than ${MAX_VALUE_BYTES} bytes`);
    // The child read about 64 KiB; the pipe holds at most 1 MiB more. Nowhere near 20 MB.
    expect(result.accepted).toBeLessThan(2 * 1024 * 1024);
    expect((await runCli(['get', 'tenant-big', 'k'], { env })).code).toBe(3);
  });

  it('rotate and import-legacy are bounded too; --json gets the error document', async () => {
    await runCli(['set', 'tenant-big', 'r'], { env, input: 'small' });
    const rotate = await offer(startCli(['rotate', 'tenant-big', 'r', '--json'], env), TWENTY_MB);
    expect(rotate.code).toBe(2);
    expect(JSON.parse(rotate.stdout).error).toMatchObject({ code: 'INVALID_INPUT', exitCode: 2 });
    expect(rotate.accepted).toBeLessThan(2 * 1024 * 1024);
    expect((await runCli(['get', 'tenant-big', 'r'], { env })).stdout).toBe('small\n');

    const legacy = await offer(startCli(['import-legacy'], env), TWENTY_MB);
    expect(legacy.code).toBe(2);
    expect(legacy.accepted).toBeLessThan(2 * 1024 * 1024);
  });

  it('the largest value passes, with its trailing newline or CRLF; one byte more is refused', async () => {
    const largest = 'v'.repeat(MAX_VALUE_BYTES);
    for (const [key, input] of [
      ['lf', `${largest}\n`],
      ['crlf', `${largest}\r\n`],
      ['bare', largest],
    ] as const) {
      const set = await runCli(['set', 'tenant-edge', key], { env, input });
      expect(set.code, `${key}: ${set.stderr}`).toBe(0);
      const got = await runCli(['get', 'tenant-edge', key, '--no-newline'], { env });
      expect(got.stdout.length).toBe(MAX_VALUE_BYTES);
    }
    for (const input of [`${largest}v`, `${largest}v\n`, `${largest}\n\n`]) {
      const refused = await runCli(['set', 'tenant-edge', 'over'], { env, input });
      expect(refused.code).toBe(2);
      expect(refused.stderr).toContain('larger than');
    }
    // multi-byte characters count as bytes
    const wide = await runCli(['set', 'tenant-edge', 'wide'], {
      env,
      input: 'é'.repeat(MAX_VALUE_BYTES / 2 + 1),
    });
    expect(wide.code).toBe(2);
  });

  it('--value is held to the same limit; an empty value keeps its own message', async () => {
    const over = await runCli(['set', 'tenant-edge', 'flag', '--value', 'x'.repeat(MAX_VALUE_BYTES + 1)], {
      env,
    });
    expect(over.code).toBe(2);
    expect(over.stderr).toContain('larger than');
    const empty = await runCli(['set', 'tenant-edge', 'empty'], { env, input: '\n' });
    expect(empty.code).toBe(2);
    expect(empty.stderr).toContain('the value is empty');
  });
});
