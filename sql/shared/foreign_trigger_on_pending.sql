-- A trigger tenant-secrets did not create on the pending audit partition (what every read writes), or
-- NULL: one scalar subquery, evaluated once per statement. Ours are those calling our guard functions.
(SELECT t.tgrelid FROM pg_catalog.pg_trigger t
  WHERE t.tgrelid = ':TS.tenant_secret_audit_pending'::pg_catalog.regclass AND NOT t.tgisinternal
    AND t.tgfoid NOT IN (SELECT p.oid FROM pg_catalog.pg_proc p
                          WHERE p.pronamespace = pg_catalog.to_regnamespace(':TS')
                            AND p.proname IN ('_ts_guard_truncate', '_ts_guard_write'))
  LIMIT 1)
