/** What the permanent listener of a watched connection saw. */
interface Watch {
  failure: Error | undefined;
}

const watches = new WeakMap<object, Watch>();
const watchedPools = new WeakSet<object>();

interface ErrorEmitter {
  on(event: 'error', listener: (err: Error) => void): unknown;
}

const isEmitter = (x: unknown): x is ErrorEmitter =>
  typeof x === 'object' && x !== null && typeof (x as { on?: unknown }).on === 'function';

/**
 * Gives a connection an 'error' listener for the rest of its life (once per connection) and returns
 * what it saw. node-postgres emits 'error' on a client whose connection drops, and Node ends the
 * process when nobody listens. A listener attached only while a call holds the connection leaves
 * gaps: pg-pool hands a new client out in the same synchronous run that reads its startup's last
 * message, so a FATAL read in the same chunk is emitted before any caller could listen; and a
 * connection handed back to the pool may still emit while it is being closed. The first error is
 * kept: a connection that saw one is unusable, and whoever holds it next must not send on it.
 * Objects that are not event emitters (other drivers' connections) are left as they are.
 */
export function watchConnection(connection: unknown): { failure(): Error | undefined } {
  if (!isEmitter(connection)) return { failure: () => undefined };
  let watch = watches.get(connection);
  if (!watch) {
    const created: Watch = { failure: undefined };
    watch = created;
    watches.set(connection, created);
    connection.on('error', (err: Error) => {
      created.failure ??= err;
    });
  }
  const seen = watch;
  return { failure: () => seen.failure };
}

/**
 * Watches every connection a node-postgres pool opens, from the moment it is connected: pg-pool
 * emits 'connect' with the new client before it hands it to anyone (and before it removes its own
 * listener), which is the earliest point a caller's pool lets us reach. A pool without `on` (another
 * driver's) is left alone; its connections are watched when checked out.
 */
export function watchPoolConnections(pool: unknown): void {
  if (!isEmitter(pool) || watchedPools.has(pool)) return;
  watchedPools.add(pool);
  (pool as unknown as { on(event: 'connect', listener: (client: unknown) => void): unknown }).on(
    'connect',
    (client) => {
      watchConnection(client);
    },
  );
}

/** The login role and database a connection uses (never its password), for messages. */
