-- tenant-secrets functions: reading the audit trail (audited, once per query, on the system chain).

-- ---------------------------------------------------------------------------------------------
-- Query
-- ---------------------------------------------------------------------------------------------

-- One page of one chain, ascending seq, for tenant_secret_audit_query. A chain's records lie in many
-- day partitions. Planned freely (and on partitions sealed in bulk, not analyzed yet), this became an
-- append of every partition's remaining records of the chain and a sort of them, for every page: an
-- export or a paged query cost grew with the square of the chain's length (100,000 records of one
-- chain: 14 s on PostgreSQL 15). Here the partitions' (chain_id, seq) index scans are merged in seq
-- order, so a page reads about its own records whatever the chain's length. The settings hold for
-- this query only (a function with SET clauses is never inlined; they end with it).
CREATE FUNCTION :TS._ts_audit_chain_page(
  p_chain text, p_after bigint, p_since timestamptz, p_until timestamptz, p_opts jsonb, p_limit integer)
RETURNS TABLE (id bigint, chain_id text, seq bigint, occurred_at timestamptz, tenant_id text, db_role text,
               actor text, action text, key_name text, version integer, outcome text, error_code text,
               request_id text, context jsonb, details jsonb, prev_hash bytea, hash bytea, digest bytea)
LANGUAGE sql STABLE
SET search_path = '' SET enable_sort = off SET enable_bitmapscan = off SET enable_seqscan = off
SET max_parallel_workers_per_gather = 0 SET jit = off AS $$
  SELECT a.id, a.chain_id, a.seq, a.occurred_at, a.tenant_id, a.db_role, a.actor, a.action, a.key_name,
         a.version, a.outcome, a.error_code, a.request_id, a.context, a.details, a.prev_hash, a.hash, a.digest
    FROM :TS.tenant_secret_audit a
   WHERE a.chain_id = p_chain AND a.seq > p_after AND a.sealed_at < 'infinity'
     AND (p_since IS NULL OR (a.occurred_at >= p_since AND a.sealed_at >= p_since))
     AND (p_until IS NULL OR a.occurred_at < p_until)
     AND (p_opts->>'action' IS NULL OR a.action = p_opts->>'action')
     AND (p_opts->>'key_name' IS NULL OR a.key_name = p_opts->>'key_name')
     AND (p_opts->>'actor' IS NULL OR a.actor = p_opts->>'actor')
     AND (p_opts->>'outcome' IS NULL OR a.outcome = p_opts->>'outcome')
   ORDER BY a.seq
   LIMIT p_limit
$$;

-- One page of one chain, ascending seq. p_tenant_id NULL reads the system chain (''). p_options:
-- since (inclusive), until (exclusive) timestamps; action, key_name, actor, outcome (exact match);
-- after (seq to continue after); limit (1-1000, default 100; up to 10000 for exports); purpose
-- ('query' or 'export', naming the audit record written for a first page), all_chains (export of
-- every chain). A first page (no `after`) writes that record. Only sealed records are returned: the
-- library seals pending ones first, in bounded batches (tenant_secret_audit_seal).
CREATE FUNCTION :TS.tenant_secret_audit_query(p_tenant_id text, p_options jsonb DEFAULT '{}'::jsonb,
                                               p_ctx jsonb DEFAULT '{}'::jsonb)
RETURNS TABLE (id bigint, chain_id text, seq bigint, occurred_at timestamptz, tenant_id text, db_role text,
               actor text, action text, key_name text, version integer, outcome text, error_code text,
               request_id text, context jsonb, details jsonb, prev_hash bytea, hash bytea, digest bytea)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = '' AS $$
#variable_conflict use_column
DECLARE
  v_opts jsonb := COALESCE(p_options, '{}'::jsonb);
  v_chain text := COALESCE(p_tenant_id, '');
  v_after bigint;
  v_since timestamptz;
  v_until timestamptz;
  v_limit integer;
  v_action text := CASE WHEN v_opts->>'purpose' = 'export' THEN 'audit.exported' ELSE 'audit.queried' END;
  v_count integer;
BEGIN
  PERFORM :TS._ts_guard(true);
  PERFORM :TS._ts_require_operator();
  BEGIN
    v_after := COALESCE((v_opts->>'after')::bigint, 0);
    v_since := (v_opts->>'since')::timestamptz;
    v_until := (v_opts->>'until')::timestamptz;
    v_limit := LEAST(GREATEST(COALESCE((v_opts->>'limit')::integer, 100), 1),
                     CASE WHEN v_opts->>'purpose' = 'export' THEN 10000 ELSE 1000 END);
  EXCEPTION WHEN OTHERS THEN
    v_limit := NULL;
  END;
  IF v_limit IS NULL OR :TS._ts_ctx_invalid(p_ctx) IS NOT NULL
     OR (p_tenant_id IS NOT NULL AND :TS._ts_invalid_input(p_tenant_id, NULL) IS NOT NULL) THEN
    PERFORM :TS._ts_audit(NULL, v_action, NULL, NULL, 'failure', 'INVALID_INPUT', :TS._ts_ctx_safe(p_ctx),
      pg_catalog.jsonb_build_object('field', CASE WHEN v_limit IS NULL THEN 'options'
                                                  WHEN :TS._ts_ctx_invalid(p_ctx) IS NOT NULL THEN 'context' ELSE 'tenant_id' END));
    RETURN;
  END IF;
  RETURN QUERY SELECT * FROM :TS._ts_audit_chain_page(v_chain, v_after, v_since, v_until, v_opts, v_limit);
  GET DIAGNOSTICS v_count = ROW_COUNT;
  IF v_opts->>'after' IS NULL THEN
    PERFORM :TS._ts_audit(NULL, v_action, NULL, NULL, 'success', NULL, p_ctx,
      pg_catalog.jsonb_strip_nulls(pg_catalog.jsonb_build_object(
        'chain_id', CASE WHEN (v_opts->>'all_chains')::boolean THEN NULL ELSE v_chain END,
        'all_chains', CASE WHEN (v_opts->>'all_chains')::boolean THEN true END, 'since', v_since, 'until', v_until,
        'action', v_opts->>'action', 'key_name', v_opts->>'key_name', 'actor', v_opts->>'actor',
        'outcome', v_opts->>'outcome', 'first_page_count', v_count)));
  END IF;
END
$$;

-- Every chain id with a head, after p_after (keyset), up to p_limit: for exports of every chain.
CREATE FUNCTION :TS.tenant_secret_audit_chains(p_after text DEFAULT NULL, p_limit integer DEFAULT 10000)
RETURNS SETOF text
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = '' AS $$
BEGIN
  PERFORM :TS._ts_require_operator();
  -- Dynamic SQL, planned with its values: on a distributed (Citus) installation the heads are
  -- sharded, and Citus refuses the same page as a parameterised statement of a function (0A000).
  RETURN QUERY EXECUTE
    'SELECT h.chain_id FROM :TS.tenant_secret_audit_heads h
      WHERE $1::text IS NULL OR h.chain_id > $1::text
      ORDER BY h.chain_id LIMIT LEAST(GREATEST(COALESCE($2::integer, 10000), 1), 100000)'
    USING p_after, p_limit;
END
$$;

COMMENT ON FUNCTION :TS.tenant_secret_audit_query(text, jsonb, jsonb) IS
  'tenant-secrets: one keyset page of a tenant''s audit chain (NULL tenant = system chain); audited once per query on the system chain.';
COMMENT ON FUNCTION :TS.tenant_secret_audit_chains(text, integer) IS
  'tenant-secrets: audit chain ids with a head, in order (keyset pagination).';
