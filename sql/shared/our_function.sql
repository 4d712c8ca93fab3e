-- Whether function p (a pg_proc row in scope as p) is one of ours.
(p.pronamespace = pg_catalog.to_regnamespace(':TS')
 AND (p.proname LIKE 'tenant\_secret%' OR p.proname LIKE '\_ts\_%' OR p.proname IN ('upsert_tenant_secret', 'get_tenant_secret')))
