-- Whether table c (a pg_class row in scope as c) lacks one of its two guards: the TRUNCATE guard, and
-- the write guard, which refuses INSERT, UPDATE and DELETE to every role but the table's current owner
-- (even one with BYPASSRLS and table grants). The write guard names the owner: a stale one (the owner
-- changed) counts as missing.
(NOT EXISTS (SELECT 1 FROM pg_catalog.pg_trigger t JOIN pg_catalog.pg_proc p ON p.oid = t.tgfoid
              WHERE t.tgrelid = c.oid AND t.tgname = 'tenant_secrets_guard_truncate'
                AND p.proname = '_ts_guard_truncate' AND p.pronamespace = c.relnamespace)
 OR NOT EXISTS (SELECT 1 FROM pg_catalog.pg_trigger t JOIN pg_catalog.pg_proc p ON p.oid = t.tgfoid
                 WHERE t.tgrelid = c.oid AND t.tgname = 'tenant_secrets_guard_write'
                   AND p.proname = '_ts_guard_write' AND p.pronamespace = c.relnamespace
                   AND pg_catalog.strpos(pg_catalog.pg_get_triggerdef(t.oid),
                         pg_catalog.quote_literal(pg_catalog.pg_get_userbyid(c.relowner)) || '::name') > 0))
