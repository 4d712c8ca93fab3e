-- True when every trigger on the pending audit partition calls one of our guard functions, as they
-- were when this session first ran the statement (the function names are resolved to oids then):
-- one index probe of pg_trigger, the fast path of FOREIGN_TRIGGER_ON_PENDING. False means "look
-- closer" (a foreign trigger, or a guard function re-created since), never "refuse".
NOT EXISTS (SELECT FROM pg_catalog.pg_trigger t
             WHERE t.tgrelid = ':TS.tenant_secret_audit_pending'::pg_catalog.regclass AND NOT t.tgisinternal
               AND t.tgfoid <> ALL (ARRAY[':TS._ts_guard_truncate()'::pg_catalog.regprocedure,
                                          ':TS._ts_guard_write()'::pg_catalog.regprocedure]::pg_catalog.oid[]))
