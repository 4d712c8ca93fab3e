-- Distribution step 5: audit verification on a distributed installation. A page of one chain is
-- verified on the worker holding the chain, by this release's own page function over its shards (one
-- statement, one snapshot, as on a single server), through master_run_on_worker (a read: no
-- transaction to share). A verification of every chain goes chain by chain, in chain order: each call
-- verifies a page of one chain; when that chain is done, the cursor names the next chain (seq -1:
-- from its start) and says not done. Placeholders: :TS, :TS_NAME.

-- The page of chain p_chain (from its start when p_after_chain is NULL), as verified on its worker.
CREATE OR REPLACE FUNCTION :TS._ts_citus_verify_chain_page(
  p_chain text, p_after_chain text, p_after_seq bigint, p_after_hash bytea, p_limit integer)
RETURNS TABLE (kind text, chain_id text, seq bigint, hash bytea, id bigint, reason text, checked bigint,
               master_key_id text, mac bytea, current_hash bytea, done boolean)
LANGUAGE plpgsql VOLATILE SET search_path = '' AS $$
DECLARE
  v_shard bigint := pg_catalog.get_shard_id_for_distribution_column(':TS.tenant_secrets', p_chain);
  v_node record;
  v_out record;
BEGIN
  SELECT n.nodename, n.nodeport INTO v_node
    FROM pg_catalog.pg_dist_placement pl JOIN pg_catalog.pg_dist_node n ON n.groupid = pl.groupid
   WHERE pl.shardid = v_shard AND n.isactive AND n.noderole = 'primary' LIMIT 1;
  SELECT r.success, r.result INTO v_out FROM pg_catalog.master_run_on_worker(
    ARRAY[v_node.nodename], ARRAY[v_node.nodeport],
    ARRAY[pg_catalog.format(
      'SELECT COALESCE(pg_catalog.json_agg(t), %L::json) FROM (SELECT pg_catalog.set_config(''citus.enable_manual_changes_to_shards'', ''on'', false) AS c, %s._ts_citus_instantiate(%s) AS ok) i, '
      '%I.tenant_secret_audit_verify_page(CASE WHEN i.ok AND i.c = ''on'' THEN %L END, %L, %L, %L, %s) t',
      '[]', ':TS', v_shard, '_ts_s' || v_shard, p_chain, p_after_chain, p_after_seq, p_after_hash, COALESCE(p_limit, 5000))],
    false) r;
  IF NOT v_out.success THEN
    RAISE EXCEPTION 'tenant-secrets: the worker %:% could not verify an audit chain: %', v_node.nodename, v_node.nodeport,
      pg_catalog.left(v_out.result, 200) USING ERRCODE = '58000';
  END IF;
  RETURN QUERY SELECT r.kind, r.chain_id, r.seq, r.hash, r.id, r.reason, r.checked, r.master_key_id, r.mac, r.current_hash, r.done
                 FROM pg_catalog.json_to_recordset(v_out.result::json)
                      AS r(kind text, chain_id text, seq bigint, hash bytea, id bigint, reason text, checked bigint,
                           master_key_id text, mac bytea, current_hash bytea, done boolean);
END
$$;

-- The first chain after p_after (NULL: the first) with sealed records, a head or a checkpoint.
CREATE OR REPLACE FUNCTION :TS._ts_citus_next_chain(p_after text) RETURNS text
LANGUAGE plpgsql STABLE SET search_path = '' AS $$
DECLARE
  a text;
  b text;
  c text;
BEGIN
  SELECT pg_catalog.min(x.chain_id) INTO a FROM :TS.tenant_secret_audit x
   WHERE x.sealed_at < 'infinity' AND (p_after IS NULL OR x.chain_id > p_after);
  SELECT pg_catalog.min(h.chain_id) INTO b FROM :TS.tenant_secret_audit_heads h WHERE p_after IS NULL OR h.chain_id > p_after;
  SELECT pg_catalog.min(k.chain_id) INTO c FROM :TS.tenant_secret_audit_checkpoints k WHERE p_after IS NULL OR k.chain_id > p_after;
  RETURN LEAST(a, b, c);
END
$$;

-- The same signature as on a single server (replaced in place), and the same cursor protocol: a range
-- of chains (p_after_chain, p_until_chain] when the library verifies ranges side by side. A call with
-- p_after_chain and no p_after_seq starts after that chain; seq -1 in a cursor names a chain to start
-- from its beginning.
CREATE OR REPLACE FUNCTION :TS.tenant_secret_audit_verify_page(
  p_chain text, p_after_chain text, p_after_seq bigint, p_after_hash bytea, p_limit integer DEFAULT 5000,
  p_until_chain text DEFAULT NULL)
RETURNS TABLE (kind text, chain_id text, seq bigint, hash bytea, id bigint, reason text, checked bigint,
               master_key_id text, mac bytea, current_hash bytea, done boolean)
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = '' AS $$
#variable_conflict use_column
DECLARE
  v_chain text;
  v_from_start boolean;
  v_next text;
  r record;
BEGIN
  PERFORM :TS._ts_require_operator();
  IF p_chain IS NOT NULL THEN
    RETURN QUERY SELECT * FROM :TS._ts_citus_verify_chain_page(p_chain, p_after_chain, p_after_seq, p_after_hash, p_limit);
    RETURN;
  END IF;
  -- Every chain (of the range): continue the cursor's chain, start the cursor's (seq -1), or start the
  -- first chain after p_after_chain (none: the first of all).
  v_from_start := p_after_chain IS NULL OR p_after_seq IS NULL OR p_after_seq = -1;
  v_chain := CASE WHEN p_after_chain IS NOT NULL AND p_after_seq IS NOT NULL THEN p_after_chain
                  ELSE :TS._ts_citus_next_chain(p_after_chain) END;
  IF v_chain IS NULL OR v_chain > p_until_chain THEN
    RETURN QUERY SELECT 'cursor'::text, NULL::text, NULL::bigint, NULL::bytea, NULL::bigint, NULL::text, 0::bigint,
                        NULL::text, NULL::bytea, NULL::bytea, true;
    RETURN;
  END IF;
  FOR r IN SELECT * FROM :TS._ts_citus_verify_chain_page(
             v_chain, CASE WHEN v_from_start THEN NULL ELSE p_after_chain END,
             CASE WHEN v_from_start THEN NULL ELSE p_after_seq END,
             CASE WHEN v_from_start THEN NULL ELSE p_after_hash END, p_limit) LOOP
    IF r.kind = 'cursor' AND r.done THEN
      v_next := :TS._ts_citus_next_chain(v_chain);
      IF v_next IS NOT NULL AND (p_until_chain IS NULL OR v_next <= p_until_chain) THEN
        r.chain_id := v_next;
        r.seq := -1;
        r.hash := NULL;
        r.done := false;
      END IF;
    END IF;
    kind := r.kind; chain_id := r.chain_id; seq := r.seq; hash := r.hash; id := r.id; reason := r.reason;
    checked := r.checked; master_key_id := r.master_key_id; mac := r.mac; current_hash := r.current_hash; done := r.done;
    RETURN NEXT;
  END LOOP;
END
$$;

DO $ts_distribute_verify$
BEGIN
  PERFORM pg_catalog.create_distributed_function(':TS._ts_citus_instantiate(bigint)'::pg_catalog.regprocedure);
END
$ts_distribute_verify$;
