-- The same fast path for the tables a write writes (FOREIGN_TRIGGER_ON_WRITES).
NOT EXISTS (SELECT FROM pg_catalog.pg_trigger t
             WHERE t.tgrelid IN (':TS.tenant_secrets'::pg_catalog.regclass, ':TS.tenant_secret_versions'::pg_catalog.regclass,
                                 ':TS.tenant_secret_audit_pending'::pg_catalog.regclass)
               AND NOT t.tgisinternal
               AND t.tgfoid <> ALL (ARRAY[':TS._ts_guard_truncate()'::pg_catalog.regprocedure,
                                          ':TS._ts_guard_write()'::pg_catalog.regprocedure]::pg_catalog.oid[]))
