-- The same for the tables a write writes: secrets, versions, the pending audit partition.
(SELECT t.tgrelid FROM pg_catalog.pg_trigger t
  WHERE t.tgrelid IN (':TS.tenant_secrets'::pg_catalog.regclass, ':TS.tenant_secret_versions'::pg_catalog.regclass,
                      ':TS.tenant_secret_audit_pending'::pg_catalog.regclass)
    AND NOT t.tgisinternal
    AND t.tgfoid NOT IN (SELECT p.oid FROM pg_catalog.pg_proc p
                          WHERE p.pronamespace = pg_catalog.to_regnamespace(':TS')
                            AND p.proname IN ('_ts_guard_truncate', '_ts_guard_write'))
  LIMIT 1)
