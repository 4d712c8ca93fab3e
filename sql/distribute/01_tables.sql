-- Distribution step 1 (migrate({ distribute: true }) on a Citus coordinator, after the installer has
-- committed): every table of ours becomes a Citus table. Tables keyed by tenant (a chain_id or a
-- tenant_id column) are hash-distributed by that column and co-located with tenant_secrets, so one
-- tenant's secrets, versions, data keys, purge marker, audit records (every partition), audit head and
-- checkpoints live in shards of the same index, on the same node; the global tables (schema version,
-- function fingerprints, grants, master keys, pins, sealer and legacy-import state, anchors) become
-- reference tables (a copy on every node). Idempotent: what is already distributed is left alone.
-- Placeholders: :TS, :TS_NAME, :GLOBAL_TABLES (a text[] literal of the global tables' names).
DO $ts_distribute_tables$
DECLARE
  r record;
  v_col text;
  v_done boolean := false;
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_extension e WHERE e.extname = 'citus') THEN
    RAISE EXCEPTION 'tenant-secrets: distribute needs the Citus extension in this database (CREATE EXTENSION citus on every node, then add the workers)'
      USING ERRCODE = 'TSCIT';
  END IF;
  IF NOT pg_catalog.citus_is_coordinator() THEN
    RAISE EXCEPTION 'tenant-secrets: distribute runs on the Citus coordinator (this node is not it, or has no workers: SELECT citus_set_coordinator_host(...), citus_add_node(...))'
      USING ERRCODE = 'TSCIT';
  END IF;
  -- The guard triggers (a statement trigger refusing writes by anyone but the owner, one refusing
  -- TRUNCATE) stay on every shard: Citus creates triggers on distributed tables only with this set.
  PERFORM pg_catalog.set_config('citus.enable_unsafe_triggers', 'on', true);
  PERFORM pg_catalog.set_config('citus.multi_shard_modify_mode', 'sequential', true);
  -- tenant_secrets first (the co-location group), then the other tenant tables by name.
  FOR r IN SELECT c.oid::pg_catalog.regclass AS tbl, c.relname::text AS name
             FROM pg_catalog.pg_class c
            WHERE c.relnamespace = pg_catalog.to_regnamespace(:TS_NAME) AND c.relkind IN ('r', 'p')
              AND NOT c.relispartition AND c.relname LIKE 'tenant\_secret%'
              AND c.relname <> ALL (:GLOBAL_TABLES)
              AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_dist_partition d WHERE d.logicalrelid = c.oid)
            ORDER BY c.relname <> 'tenant_secrets', c.relname LOOP
    SELECT a.attname INTO v_col FROM pg_catalog.pg_attribute a
     WHERE a.attrelid = r.tbl AND a.attname IN ('chain_id', 'tenant_id') AND NOT a.attisdropped
     ORDER BY a.attname = 'chain_id' DESC LIMIT 1;
    IF v_col IS NULL THEN
      RAISE EXCEPTION 'tenant-secrets: table % has no tenant column; it cannot be distributed', r.tbl USING ERRCODE = 'TSCIT';
    END IF;
    IF r.name = 'tenant_secrets' THEN
      PERFORM pg_catalog.create_distributed_table(r.tbl, v_col, colocate_with := 'none');
    ELSE
      PERFORM pg_catalog.create_distributed_table(r.tbl, v_col, colocate_with := ':TS.tenant_secrets');
    END IF;
    v_done := true;
  END LOOP;
  FOR r IN SELECT c.oid::pg_catalog.regclass AS tbl FROM pg_catalog.pg_class c
            WHERE c.relnamespace = pg_catalog.to_regnamespace(:TS_NAME) AND c.relkind IN ('r', 'p')
              AND NOT c.relispartition AND c.relname = ANY (:GLOBAL_TABLES)
              AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_dist_partition d WHERE d.logicalrelid = c.oid)
            ORDER BY c.relname LOOP
    PERFORM pg_catalog.create_reference_table(r.tbl);
    v_done := true;
  END LOOP;
  IF v_done THEN
    -- The rows were copied into the shards; the coordinator's own copies are no longer read: empty them.
    FOR r IN SELECT d.logicalrelid AS tbl FROM pg_catalog.pg_dist_partition d JOIN pg_catalog.pg_class c ON c.oid = d.logicalrelid
              WHERE c.relnamespace = pg_catalog.to_regnamespace(:TS_NAME) AND c.relname LIKE 'tenant\_secret%'
                AND c.relkind = 'r' LOOP
      PERFORM pg_catalog.truncate_local_data_after_distributing_table(r.tbl);
    END LOOP;
  END IF;
END
$ts_distribute_tables$;
