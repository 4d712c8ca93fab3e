/** RSS across many operations (16 clients, 90% get / 10% set): flat means no leak. */
import { type BenchContext, MAX_CLIENTS } from '../context.js';
import { figure, fmt, log, TARGETS } from '../figures.js';
import type { Fixture } from '../fixture.js';
import { gc, mb } from '../load.js';

export async function memory(ctx: BenchContext, f: Fixture): Promise<void> {
  const ops = ctx.sizes.rssOps;
  log(`\n[memory] RSS across ${ops} operations (16 clients, 90% get / 10% set)`);
  gc?.();
  const before = process.memoryUsage();
  let done = 0;
  await Promise.all(
    Array.from({ length: MAX_CLIENTS }, async (_, w) => {
      for (let i = 0; done < ops; i++) {
        done++;
        if (i % 10 === 0) await f.manager.set(f.spread[w] as string, 'k-05', f.value);
        else await f.manager.get(f.spread[w] as string, f.keys[i % MAX_CLIENTS] as string);
      }
    }),
  );
  gc?.();
  const after = process.memoryUsage();
  figure(
    `RSS after ${ops} operations - before`,
    mb(after.rss - before.rss),
    'MB',
    TARGETS.rssGrowthMb,
    `${fmt(mb(before.rss))} MB -> ${fmt(mb(after.rss))} MB; heap ${fmt(mb(before.heapUsed))} -> ${fmt(mb(after.heapUsed))} MB${gc ? ' (after gc)' : ''}`,
  );
}
