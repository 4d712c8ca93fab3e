/** Roles as `migrate()` accepts them: PostgreSQL identifiers without quotes. */
export const ROLE_PATTERN = /^[A-Za-z_][A-Za-z0-9_$-]{0,62}$/;

/**
 * Names that are not one role: `public` (GRANT ... TO public hands the functions to every role),
 * `none` and the CURRENT_USER-like keywords, and PostgreSQL's predefined `pg_` roles.
 */
const RESERVED_ROLE = /^(public|none|current_user|session_user|current_role|pg_.*)$/i;

/** Whether `migrate()` and `exportSchemaSql()` accept `role` for grantTo / grantOperatorTo. */
export function isGrantableRole(role: unknown): role is string {
  return typeof role === 'string' && ROLE_PATTERN.test(role) && !RESERVED_ROLE.test(role);
}
