import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { createProgress } from '../src/cli/progress.js';

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
});
