-- Distribution step 8: the coordinator's audit functions written in SQL, whose parameters Citus cannot
-- plan (a SQL function's statements are planned generically): the same queries in PL/pgSQL, planned
-- with their values, in steps Citus can run (the system chain's registrations read first, then the
-- heads of the chains they name). Placeholders: :TS.
CREATE OR REPLACE FUNCTION :TS.tenant_secret_audit_checkpoint_list(p_after_chain text DEFAULT NULL, p_after_seq bigint DEFAULT NULL,
                                                                   p_limit integer DEFAULT 10000)
RETURNS TABLE (chain_id text, seq bigint, hash bytea, master_key_id text, mac bytea, created_at timestamptz)
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = '' AS $$
BEGIN
  PERFORM :TS._ts_require_operator();
  RETURN QUERY EXECUTE
    'SELECT c.chain_id, c.seq, c.hash, c.master_key_id, c.mac, c.created_at
       FROM :TS.tenant_secret_audit_checkpoints c
      WHERE $1::text IS NULL OR (c.chain_id, c.seq) > ($1::text, COALESCE($2::bigint, 0))
      ORDER BY c.chain_id, c.seq LIMIT LEAST(GREATEST(COALESCE($3::integer, 10000), 1), 100000)'
    USING p_after_chain, p_after_seq, p_limit;
END
$$;

CREATE OR REPLACE FUNCTION :TS.tenant_secret_audit_missing_chains(p_after_seq bigint DEFAULT 0, p_limit integer DEFAULT 10000)
RETURNS TABLE (chain_id text, registered_seq bigint, last_seq bigint)
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = '' AS $$
DECLARE
  v_chains text[];
  v_seqs bigint[];
  v_max bigint;
  v_have text[];
BEGIN
  PERFORM :TS._ts_require_operator();
  EXECUTE 'SELECT pg_catalog.array_agg(x.chain_id ORDER BY x.seq), pg_catalog.array_agg(x.seq ORDER BY x.seq), pg_catalog.max(x.seq)
             FROM (SELECT a.details->>''chain_id'' AS chain_id, a.seq FROM :TS.tenant_secret_audit a
                    WHERE a.chain_id = '''' AND a.seq > COALESCE($1::bigint, 0) AND a.sealed_at < ''infinity''
                      AND a.action = ''audit.chain_started''
                    ORDER BY a.seq LIMIT LEAST(GREATEST(COALESCE($2::integer, 10000), 1), 100000)) x'
    INTO v_chains, v_seqs, v_max USING p_after_seq, p_limit;
  IF v_chains IS NOT NULL THEN
    EXECUTE 'SELECT pg_catalog.array_agg(h.chain_id) FROM :TS.tenant_secret_audit_heads h WHERE h.chain_id = ANY ($1::text[])'
      INTO v_have USING v_chains;
    RETURN QUERY SELECT u.c, u.s, v_max FROM ROWS FROM (pg_catalog.unnest(v_chains), pg_catalog.unnest(v_seqs)) AS u(c, s)
                  WHERE u.c IS NOT NULL AND u.c <> ALL (COALESCE(v_have, '{}'::text[]));
  END IF;
  RETURN QUERY SELECT NULL::text, NULL::bigint, v_max;
END
$$;
