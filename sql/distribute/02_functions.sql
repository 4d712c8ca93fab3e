-- Distribution step 2: the data plane runs where the tenant's shards are. Every tenant-scoped
-- function (SECURITY DEFINER, tenant id first) becomes a Citus distributed function, delegated by its
-- tenant argument (co-located with tenant_secrets, force_delegation: also inside a transaction), so a
-- call is one round trip from the coordinator to the worker holding the tenant. On that worker it is
-- a dispatcher: it runs this release's own function, instantiated for that shard group in a schema of
-- its own (_ts_s<shard id>, no USAGE for anyone), whose statements name the local shards. So every
-- statement runs as plain PostgreSQL on the node's own shards, with the same plans, locks,
-- constraints, triggers and atomicity as on a single server (the distributed planner refuses much of
-- it: data-modifying CTEs feeding INSERT ... SELECT, non-immutable functions in UPDATE, generic plans
-- that need recursive planning). Placeholders: :TS, :TS_NAME, :VARIANT_SOURCES (a dollar-quoted JSON
-- document: digest and sources), :DELEGATED (a text[] literal of the delegated functions' names).

-- The schema holding the instantiated functions for the tenant's shard group, on this node. Raises
-- when the shard is not here: a call that Citus did not delegate (a caller transaction that touched
-- another node first) reaches the coordinator, which holds no shard.
CREATE OR REPLACE FUNCTION :TS._ts_citus_variant(p_tenant text) RETURNS text
LANGUAGE plpgsql VOLATILE SET search_path = '' AS $$
DECLARE
  v_shard bigint;
  v_schema text;
BEGIN
  -- A malformed tenant id is refused here, unaudited: on one server its failure is recorded on the
  -- system chain, whose shard is on another node than the one the call reached.
  IF :TS._ts_invalid_input(p_tenant, NULL) IS NOT NULL THEN
    RAISE EXCEPTION 'tenant-secrets: invalid tenant id' USING ERRCODE = 'TS400';
  END IF;
  v_shard := pg_catalog.get_shard_id_for_distribution_column(':TS.tenant_secrets', p_tenant);
  IF pg_catalog.to_regclass(':TS.' || pg_catalog.quote_ident('tenant_secrets_' || v_shard)) IS NULL THEN
    RAISE EXCEPTION 'tenant-secrets: the call was not delegated to the node holding the tenant (Citus delegates a call made on its own or first in a transaction; a transaction that already touched another node cannot): run it in a transaction of its own'
      USING ERRCODE = 'TSDST';
  END IF;
  v_schema := '_ts_s' || v_shard;
  IF pg_catalog.to_regnamespace(v_schema) IS NULL THEN
    PERFORM :TS._ts_citus_instantiate(v_shard);  -- a shard split or moved here since the last migrate()
  END IF;
  RETURN pg_catalog.quote_ident(v_schema);
END
$$;

-- Creates (or refreshes) this release's functions for shard group p_shard on this node, from the
-- sources migrate() stored in the reference table tenant_secret_schema_state: tenant tables become
-- the shard group's shards, reference tables their local copy, function calls stay in the group.
CREATE OR REPLACE FUNCTION :TS._ts_citus_instantiate(p_shard bigint) RETURNS boolean
LANGUAGE plpgsql VOLATILE SET search_path = '' AS $$
DECLARE
  v_schema text := '_ts_s' || p_shard;
  v_src jsonb;
  v_pgc text := :PGC_LOOKUP;
  v_min text;
  v_map jsonb;
  s text;
  t text;
BEGIN
  SELECT st.value INTO v_src FROM :TS.tenant_secret_schema_state st WHERE st.key = 'citus_variants';
  IF v_src IS NULL THEN
    RETURN false;
  END IF;
  -- Local objects: not propagated to the other nodes.
  PERFORM pg_catalog.set_config('citus.enable_ddl_propagation', 'off', true);
  SELECT d.shardminvalue INTO v_min FROM pg_catalog.pg_dist_shard d WHERE d.shardid = p_shard;
  SELECT pg_catalog.jsonb_object_agg(c.relname,
           (SELECT pg_catalog.min(d.shardid) FROM pg_catalog.pg_dist_shard d
             WHERE d.logicalrelid = c.oid AND (p.partmethod = 'n' OR d.shardminvalue = v_min)))
    INTO v_map
    FROM pg_catalog.pg_dist_partition p JOIN pg_catalog.pg_class c ON c.oid = p.logicalrelid
   WHERE c.relnamespace = pg_catalog.to_regnamespace(:TS_NAME);
  -- Citus leaves sequence defaults (the audit record id) off the shards: put them on this group's.
  PERFORM pg_catalog.set_config('citus.enable_manual_changes_to_shards', 'on', true);
  FOR t, s IN SELECT pg_catalog.format('ALTER TABLE :TS.%I ALTER COLUMN %I SET DEFAULT %s', c.relname || '_' || (v_map->>c.relname), a.attname,
                                       pg_catalog.pg_get_expr(d.adbin, d.adrelid)), c.relname
               FROM pg_catalog.pg_attrdef d JOIN pg_catalog.pg_class c ON c.oid = d.adrelid
               JOIN pg_catalog.pg_attribute a ON a.attrelid = d.adrelid AND a.attnum = d.adnum
              WHERE c.relnamespace = pg_catalog.to_regnamespace(:TS_NAME) AND v_map ? c.relname
                AND pg_catalog.pg_get_expr(d.adbin, d.adrelid) LIKE 'nextval(%' LOOP
    -- Only where missing: a shard created or moved here since (a rebalance re-creates it without).
    IF pg_catalog.to_regclass(':TS.' || pg_catalog.quote_ident(s || '_' || (v_map->>s))) IS NOT NULL
       AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_attrdef x JOIN pg_catalog.pg_attribute y ON y.attrelid = x.adrelid AND y.attnum = x.adnum
                        WHERE x.adrelid = pg_catalog.to_regclass(':TS.' || pg_catalog.quote_ident(s || '_' || (v_map->>s)))
                          AND y.attname = pg_catalog.split_part(pg_catalog.split_part(t, ' ALTER COLUMN ', 2), ' SET DEFAULT', 1)) THEN
      EXECUTE t;
    END IF;
  END LOOP;
  IF pg_catalog.obj_description(pg_catalog.to_regnamespace(v_schema), 'pg_namespace') IS NOT DISTINCT FROM v_src->>'digest' THEN
    RETURN true;
  END IF;
  EXECUTE pg_catalog.format('CREATE SCHEMA IF NOT EXISTS %I', v_schema);
  EXECUTE pg_catalog.format('REVOKE ALL ON SCHEMA %I FROM PUBLIC', v_schema);
  FOR s IN SELECT e FROM pg_catalog.jsonb_array_elements_text(v_src->'sources') e LOOP
    FOR t IN SELECT DISTINCT m[1] FROM pg_catalog.regexp_matches(s, ':TAB\{([a-z0-9_]+)\}', 'g') m LOOP
      s := pg_catalog.replace(s, ':TAB{' || t || '}',
             CASE WHEN v_map->>t IS NULL THEN ':TS.' || t
                  ELSE ':TS.' || pg_catalog.quote_ident(t || '_' || (v_map->>t)) END);
    END LOOP;
    s := pg_catalog.replace(pg_catalog.replace(s, ':VARIANT', pg_catalog.quote_ident(v_schema)), ':PGC', v_pgc);
    EXECUTE s;
  END LOOP;
  EXECUTE pg_catalog.format('REVOKE ALL ON ALL FUNCTIONS IN SCHEMA %I FROM PUBLIC', v_schema);
  EXECUTE pg_catalog.format('COMMENT ON SCHEMA %I IS %L', v_schema, v_src->>'digest');
  RETURN true;
END
$$;

-- Instantiates the functions for every shard group with a placement on this node (run on every node
-- by migrate(), through run_command_on_all_nodes). Returns how many groups it (re)created or checked.
CREATE OR REPLACE FUNCTION :TS._ts_citus_instantiate_local() RETURNS integer
LANGUAGE plpgsql VOLATILE SET search_path = '' AS $$
DECLARE
  v_n integer := 0;
  r record;
BEGIN
  FOR r IN SELECT d.shardid FROM pg_catalog.pg_dist_shard d JOIN pg_catalog.pg_dist_placement pl ON pl.shardid = d.shardid
            WHERE d.logicalrelid = ':TS.tenant_secrets'::pg_catalog.regclass
              AND pl.groupid = (SELECT g.groupid FROM pg_catalog.pg_dist_local_group g)
            ORDER BY d.shardid LOOP
    PERFORM :TS._ts_citus_instantiate(r.shardid);
    v_n := v_n + 1;
  END LOOP;
  RETURN v_n;
END
$$;

DO $ts_distribute_functions$
DECLARE
  r record;
  v_in text;
  v_using text;
  v_call text;
  v_body text;
  v_out text;
BEGIN
  PERFORM pg_catalog.set_config('citus.enable_unsafe_triggers', 'on', true);
  INSERT INTO :TS.tenant_secret_schema_state AS st (key, value, updated_at)
  VALUES ('citus_variants', :VARIANT_SOURCES::jsonb, pg_catalog.now())
  ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, updated_at = EXCLUDED.updated_at
   WHERE st.value->>'digest' IS DISTINCT FROM EXCLUDED.value->>'digest';
  -- The helpers exist on every node (distributed without a distribution argument).
  PERFORM pg_catalog.create_distributed_function(':TS._ts_citus_instantiate(bigint)'::pg_catalog.regprocedure);
  PERFORM pg_catalog.create_distributed_function(':TS._ts_citus_instantiate_local()'::pg_catalog.regprocedure);
  PERFORM pg_catalog.create_distributed_function(':TS._ts_citus_variant(text)'::pg_catalog.regprocedure);
  FOR r IN SELECT p.oid, p.oid::pg_catalog.regprocedure AS fn, p.proname::text AS name, p.proretset, p.prorettype,
                  pg_catalog.pg_get_function_arguments(p.oid) AS args, pg_catalog.pg_get_function_result(p.oid) AS result,
                  p.proargnames, p.proargmodes, p.pronargs, p.proconfig
             FROM pg_catalog.pg_proc p
            WHERE p.pronamespace = pg_catalog.to_regnamespace(:TS_NAME) AND p.prosecdef
              AND p.proname = ANY (:DELEGATED) AND p.proargnames[1] = 'p_tenant_id'
            ORDER BY 2::text LOOP
    -- Input arguments ($1..$n, by name) and output columns of the function.
    SELECT pg_catalog.string_agg('$' || i, ', ' ORDER BY i), pg_catalog.string_agg(pg_catalog.quote_ident(r.proargnames[k]), ', ' ORDER BY i)
      INTO v_call, v_using
      FROM (SELECT k, pg_catalog.row_number() OVER (ORDER BY k) AS i
              FROM pg_catalog.generate_subscripts(COALESCE(r.proargmodes, pg_catalog.array_fill('i'::"char", ARRAY[r.pronargs])), 1) k
             WHERE COALESCE(r.proargmodes[k], 'i') IN ('i', 'b', 'v')) a;
    SELECT pg_catalog.string_agg(pg_catalog.quote_ident(r.proargnames[k]), ', ' ORDER BY k) INTO v_out
      FROM pg_catalog.generate_subscripts(r.proargmodes, 1) k WHERE r.proargmodes[k] IN ('o', 'b');
    v_in := pg_catalog.format('%s.%I(%s)', '''' || ' || :TS._ts_citus_variant(p_tenant_id) || ''', r.name, v_call);
    v_body := CASE
      WHEN r.proretset THEN pg_catalog.format('RETURN QUERY EXECUTE ''SELECT * FROM %s'' USING %s;', v_in, v_using)
      WHEN v_out IS NOT NULL THEN pg_catalog.format('EXECUTE ''SELECT * FROM %s'' INTO %s USING %s;', v_in, v_out, v_using)
      WHEN r.prorettype = 'pg_catalog.void'::pg_catalog.regtype THEN pg_catalog.format('EXECUTE ''SELECT %s'' USING %s;', v_in, v_using)
      ELSE pg_catalog.format('EXECUTE ''SELECT %s'' INTO v_r USING %s; RETURN v_r;', v_in, v_using) END;
    -- The function's own settings kept (search_path, plan_cache_mode): the dispatcher is as hardened.
    EXECUTE pg_catalog.format(
      'CREATE OR REPLACE FUNCTION :TS.%I(%s) RETURNS %s LANGUAGE plpgsql VOLATILE SECURITY DEFINER %s AS %L',
      r.name, r.args, r.result,
      (SELECT pg_catalog.string_agg(pg_catalog.format('SET %I = %s', pg_catalog.split_part(c, '=', 1),
           CASE WHEN pg_catalog.substr(c, pg_catalog.strpos(c, '=') + 1) = '""' THEN ''''''
                ELSE pg_catalog.quote_literal(pg_catalog.substr(c, pg_catalog.strpos(c, '=') + 1)) END), ' ')
         FROM pg_catalog.unnest(r.proconfig) c),
      CASE WHEN r.proretset OR v_out IS NOT NULL OR r.prorettype = 'pg_catalog.void'::pg_catalog.regtype THEN ''
           ELSE 'DECLARE v_r ' || pg_catalog.format_type(r.prorettype, NULL) || '; ' END
      || 'BEGIN ' || v_body || ' END');
    PERFORM pg_catalog.create_distributed_function(r.fn, '$1', colocate_with := ':TS.tenant_secrets', force_delegation := true);
  END LOOP;
END
$ts_distribute_functions$;
