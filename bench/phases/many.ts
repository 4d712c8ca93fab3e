/** getMany(100) against single gets, and the opt-in in-process cache. */
import type { BenchContext } from '../context.js';
import { MAX_CLIENTS } from '../context.js';
import { figure, fmt, log, TARGETS } from '../figures.js';
import type { Fixture } from '../fixture.js';
import { compare } from '../load.js';

export async function many(ctx: BenchContext, f: Fixture): Promise<void> {
  log('\n[many] getMany(100) vs single gets (16 clients)');
  const { manager } = f;
  const keys = f.many;
  const bulk = await compare(
    'getMany',
    MAX_CLIENTS,
    { name: 'getMany(100)', op: () => manager.getMany('many', keys) },
    { name: 'get', op: (w, i) => manager.get('many', keys[(w * 7 + i + 100) % 100] as string) },
  );
  figure(
    'getMany(100) secrets/s / single gets/s (concurrent gets sent together, the default)',
    (bulk.a.perSecond * 100) / bulk.b.perSecond,
    'x',
    TARGETS.getMany,
    `${fmt(bulk.a.perSecond * 100)} vs ${fmt(bulk.b.perSecond)} secrets/s`,
  );
  // The same against gets that each go as a statement of their own (concurrentReads: 0), as every
  // get did before concurrent ones were sent together: what one call for 100 names saves over 100 calls.
  const alone = ctx.newManager(f.schema, { concurrentReads: 0 });
  const bulkAlone = await compare(
    'getMany vs gets sent alone',
    MAX_CLIENTS,
    { name: 'getMany(100)', op: () => manager.getMany('many', keys) },
    {
      name: 'get, each its own statement',
      op: (w, i) => alone.get('many', keys[(w * 7 + i + 100) % 100] as string),
    },
  );
  figure(
    'getMany(100) secrets/s / single gets/s, each get its own statement (concurrentReads: 0)',
    (bulkAlone.a.perSecond * 100) / bulkAlone.b.perSecond,
    'x',
    TARGETS.getMany,
    `${fmt(bulkAlone.a.perSecond * 100)} vs ${fmt(bulkAlone.b.perSecond)} secrets/s`,
  );
  // The opt-in in-process cache: reads served from memory, audited in aggregate.
  const cachedManager = ctx.newManager(f.schema, { cache: { ttlMs: 60_000, maxEntries: 1000 } });
  const cachedRun = await compare(
    'cached get',
    MAX_CLIENTS,
    {
      name: 'get, cache on',
      op: (w, i) => cachedManager.get('many', keys[(w * 7 + i + 100) % 100] as string),
    },
    { name: 'get', op: (w, i) => manager.get('many', keys[(w * 7 + i + 100) % 100] as string) },
  );
  figure(
    'cached get (cache on, 100 secrets read over and over) ops/s',
    cachedRun.a.perSecond,
    '/s',
    undefined,
    `${fmt(cachedRun.ratio)} x the uncached get (${fmt(cachedRun.b.perSecond)}/s); one audit record per secret and interval`,
  );
}
