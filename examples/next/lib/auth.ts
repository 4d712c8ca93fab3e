import 'server-only';

export interface User {
  /** Recorded as the actor of every audit record the request causes. */
  actor: string;
}

/**
 * REPLACE THIS with your authentication and authorization: look up the session (a cookie, not a
 * header the client can set freely) and check that the user may act for `tenant`, in every route
 * handler and every server action. The example lets everybody act as one demo user.
 */
export async function requireUser(tenant: string): Promise<User> {
  void tenant;
  return { actor: 'user:demo' };
}
