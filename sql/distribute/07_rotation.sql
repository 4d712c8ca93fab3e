-- Distribution step 7: master-key rotation on a distributed installation. A batch names many tenants
-- (on several nodes): each tenant's data keys are re-wrapped on its worker by this release's own
-- function over its shards, one tenant at a time (master_run_on_worker), each tenant atomic on its
-- node; the run resumes from the data like on one server (tenant_secret_rewrap_pending). Functions of
-- the coordinator whose arguments hold no key material are planned with their values
-- (plan_cache_mode force_custom_plan): Citus cannot plan their multi-shard statements generically.
-- Placeholders: :TS, :TS_NAME.
CREATE OR REPLACE FUNCTION :TS.tenant_secret_rewrap_keys(p_tenants text[], p_bundles bytea, p_ctx jsonb DEFAULT '{}'::jsonb)
RETURNS TABLE (tenant_id text, key_version integer, status text, from_master_key_id text)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = '' AS $$
#variable_conflict use_column
DECLARE
  v_n integer := pg_catalog.cardinality(p_tenants);
  v_first bytea;
  v_shard bigint;
  v_node record;
  v_out record;
  i integer;
BEGIN
  PERFORM :TS._ts_require_operator();
  v_first := :TS._ts_bundle_at(p_bundles, 1);
  IF v_n IS NULL OR v_n < 1 OR v_n > 10000 OR NOT COALESCE(:TS._ts_bundle_ids_valid(v_first), false)
     OR pg_catalog.octet_length(p_bundles) <> v_n * pg_catalog.octet_length(v_first)
     OR EXISTS (SELECT 1 FROM pg_catalog.unnest(p_tenants) t(id) WHERE :TS._ts_invalid_input(t.id, NULL) IS NOT NULL) THEN
    RAISE EXCEPTION 'tenant-secrets: malformed rewrap batch' USING ERRCODE = 'TS400';
  END IF;
  FOR i IN 1 .. v_n LOOP
    v_shard := pg_catalog.get_shard_id_for_distribution_column(':TS.tenant_secrets', p_tenants[i]);
    SELECT n.nodename, n.nodeport INTO v_node
      FROM pg_catalog.pg_dist_placement pl JOIN pg_catalog.pg_dist_node n ON n.groupid = pl.groupid
     WHERE pl.shardid = v_shard AND n.isactive AND n.noderole = 'primary' LIMIT 1;
    SELECT r.success, r.result INTO v_out FROM pg_catalog.master_run_on_worker(
      ARRAY[v_node.nodename], ARRAY[v_node.nodeport],
      ARRAY[pg_catalog.format(
        'SELECT COALESCE(pg_catalog.json_agg(t), %L::json) FROM (SELECT pg_catalog.set_config(''citus.enable_manual_changes_to_shards'', ''on'', false) AS c, %s._ts_citus_instantiate(%s) AS ok) i, '
        '%I.tenant_secret_rewrap_keys(CASE WHEN i.ok AND i.c = ''on'' THEN ARRAY[%L] END, %L::bytea, %L::jsonb) t',
        '[]', ':TS', v_shard, '_ts_s' || v_shard, p_tenants[i], :TS._ts_bundle_at(p_bundles, i), p_ctx)],
      false) r;
    IF NOT v_out.success THEN
      RAISE EXCEPTION 'tenant-secrets: the worker %:% could not re-wrap a tenant''s keys: %', v_node.nodename, v_node.nodeport,
        pg_catalog.left(pg_catalog.regexp_replace(v_out.result, '\\x[0-9a-f]+', '\x…', 'g'), 200) USING ERRCODE = '58000';
    END IF;
    RETURN QUERY SELECT r.tenant_id, r.key_version, r.status, r.from_master_key_id
                   FROM pg_catalog.json_to_recordset(v_out.result::json)
                        AS r(tenant_id text, key_version integer, status text, from_master_key_id text);
  END LOOP;
END
$$;

DO $ts_distribute_rotation$
DECLARE
  r record;
BEGIN
  FOR r IN SELECT p.oid::pg_catalog.regprocedure AS fn FROM pg_catalog.pg_proc p
            WHERE p.pronamespace = pg_catalog.to_regnamespace(:TS_NAME)
              AND p.proname IN ('tenant_secret_finish_master_rotation', 'tenant_secret_purge_deleted')
              AND NOT ('plan_cache_mode=force_custom_plan' = ANY (COALESCE(p.proconfig, '{}'))) LOOP
    EXECUTE pg_catalog.format('ALTER FUNCTION %s SET plan_cache_mode = force_custom_plan', r.fn);
  END LOOP;
END
$ts_distribute_rotation$;
