-- Our tables (audit partitions included): names starting with tenant_secret in our schema. A
-- relation list, for `c.oid IN (...)` and `LOCK TABLE`.
SELECT c.oid FROM pg_catalog.pg_class c
 WHERE c.relnamespace = pg_catalog.to_regnamespace(':TS') AND c.relkind IN ('r', 'p') AND c.relname LIKE 'tenant\_secret%'
