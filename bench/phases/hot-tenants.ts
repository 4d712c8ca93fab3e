/** One hot tenant vs the same load over 16 tenants: operations share no lock across a tenant. */
import { MAX_CLIENTS } from '../context.js';
import { figure, log, TARGETS } from '../figures.js';
import type { Fixture } from '../fixture.js';
import { compare } from '../load.js';

export async function hotTenants(f: Fixture): Promise<void> {
  log('\n[hot-tenants] one hot tenant vs the same load over 16 tenants (16 clients)');
  const { manager, keys, spread, value } = f;
  const hotGet = await compare(
    'get',
    MAX_CLIENTS,
    { name: 'get, one tenant', op: (w) => manager.get('hot', keys[w] as string) },
    { name: 'get, 16 tenants', op: (w) => manager.get(spread[w] as string, 'k-00') },
  );
  figure('get: one hot tenant / 16 tenants', hotGet.ratio, 'x', TARGETS.hotTenant);
  const hotSet = await compare(
    'set',
    MAX_CLIENTS,
    { name: 'set, one tenant', op: (w) => manager.set('hot', keys[w] as string, value) },
    { name: 'set, 16 tenants', op: (w) => manager.set(spread[w] as string, 'k-00', value) },
  );
  figure('set: one hot tenant / 16 tenants', hotSet.ratio, 'x', TARGETS.hotTenant);
}
