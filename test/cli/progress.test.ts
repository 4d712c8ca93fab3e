// suite-scope: once — the CLI's front end (arguments, prompts, output, exit codes, signals) behaves the same on any server; the library's files run every SQL path it reaches on each server
import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { createCounter, createProgress } from '../../src/cli/progress.js';

function capture(isTTY: boolean) {
  let text = '';
  const stream = Object.assign(
    new Writable({
      write(chunk, _encoding, done) {
        text += String(chunk);
        done();
      },
    }),
    { isTTY, columns: 80, cursorTo: () => true, clearLine: () => true, moveCursor: () => true },
  );
  return { stream, text: () => text };
}

describe('progress', () => {
  it('prints plain done/total lines when not on a terminal', () => {
    const out = capture(false);
    const progress = createProgress({ label: 're-wrapping', total: 20, stream: out.stream });
    for (let i = 0; i < 20; i++) progress.increment();
    progress.stop();
    const lines = out.text().trimEnd().split('\n');
    expect(lines[0]).toBe('re-wrapping: 0/20');
    expect(lines.at(-1)).toBe('re-wrapping: 20/20');
    expect(lines.length).toBe(11);
    expect(new Set(lines).size).toBe(lines.length);
  });

  it('draws a bar on a terminal', () => {
    const out = capture(true);
    const progress = createProgress({ label: 'verifying', total: 4, stream: out.stream });
    progress.update(2);
    progress.stop();
    expect(out.text()).toContain('verifying [');
    expect(out.text()).not.toContain('verifying: 2/4');
  });

  it('counts without a total: the first and the last state off a terminal, throttled between', () => {
    const out = capture(false);
    const counter = createCounter({ label: 'verifying', stream: out.stream, intervalMs: 60_000 });
    counter.update('10 record(s)');
    counter.update('20 record(s)'); // within the interval: not printed yet
    counter.update('30 record(s)');
    counter.stop();
    expect(out.text()).toBe('verifying: 10 record(s)\nverifying: 30 record(s)\n');

    const silent = capture(false);
    createCounter({ label: 'verifying', stream: silent.stream }).stop();
    expect(silent.text()).toBe(''); // nothing reported, nothing printed
  });

  it('counts in place on a terminal', () => {
    const out = capture(true);
    const counter = createCounter({ label: 'verifying', stream: out.stream });
    counter.update('1 record(s)');
    counter.update('2 record(s)');
    counter.stop();
    expect(out.text()).toBe('\r\x1b[Kverifying: 1 record(s)\r\x1b[Kverifying: 2 record(s)\n');
  });
});
