-- tenant-secrets functions: the audit trail's operator side: sealing, query, verification, signed
-- checkpoints and retention.
--
-- Reading the trail is itself audited, once per query (not per page) and on the system chain (''),
-- so paging through a tenant's chain never changes it: 'audit.queried', 'audit.exported',
-- 'audit.verified', 'audit.pruned'.

-- ---------------------------------------------------------------------------------------------
-- Sealing
-- ---------------------------------------------------------------------------------------------

-- Seals committed pending records, up to p_limit per call (1-100000). With p_wait false (the
-- library's background sealer) it gives up at once when another sealer is running (busy = true);
-- with p_wait true it waits for it. Returns what it sealed, what is still pending and since when.
-- Callable by application roles: sealing only chains what operations wrote.
CREATE FUNCTION :TS.tenant_secret_audit_seal(p_limit integer DEFAULT 10000, p_wait boolean DEFAULT false)
RETURNS TABLE (sealed integer, pending bigint, oldest_pending timestamptz, busy boolean)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = '' AS $$
#variable_conflict use_column
DECLARE
  v_n integer;
BEGIN
  PERFORM :TS._ts_guard(true);
  IF p_wait THEN
    PERFORM pg_catalog.pg_advisory_xact_lock(1951622706, pg_catalog.hashtext(':TS'));
  ELSIF NOT pg_catalog.pg_try_advisory_xact_lock(1951622706, pg_catalog.hashtext(':TS')) THEN
    RETURN QUERY SELECT 0, NULL::bigint, NULL::timestamptz, true;
    RETURN;
  END IF;
  v_n := :TS._ts_audit_seal_batch(LEAST(GREATEST(COALESCE(p_limit, 10000), 1), 100000), pg_catalog.clock_timestamp());
  RETURN QUERY SELECT v_n, pg_catalog.count(*), pg_catalog.min(p.occurred_at), false
                 FROM :TS.tenant_secret_audit_pending p;
END
$$;

-- Seals everything committed so far (used by queries and verification so they see every record).
CREATE FUNCTION :TS._ts_audit_seal_all() RETURNS void
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
  PERFORM pg_catalog.pg_advisory_xact_lock(1951622706, pg_catalog.hashtext(':TS'));
  LOOP
    EXIT WHEN :TS._ts_audit_seal_batch(20000, pg_catalog.clock_timestamp()) < 20000;
  END LOOP;
END
$$;

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
-- every chain). A first page (no `after`) seals pending records first and writes that record.
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
  IF v_opts->>'after' IS NULL THEN
    PERFORM :TS._ts_audit_seal_all();
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
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = '' AS $$
  SELECT :TS._ts_require_operator();
  SELECT h.chain_id FROM :TS.tenant_secret_audit_heads h
   WHERE p_after IS NULL OR h.chain_id > p_after
   ORDER BY h.chain_id LIMIT LEAST(GREATEST(COALESCE(p_limit, 10000), 1), 100000)
$$;

-- ---------------------------------------------------------------------------------------------
-- Verification
-- ---------------------------------------------------------------------------------------------

-- Verifies the next p_limit sealed records in (chain_id, seq) order after (p_after_chain,
-- p_after_seq), of one chain (p_chain) or of every chain (p_chain NULL), recomputing each record's
-- digest and link in the database. p_after_chain NULL starts at the beginning; p_after_seq NULL
-- starts after the whole chain p_after_chain; p_after_hash is the hash of the record the page
-- continues from. Returns rows of four kinds:
--   'problem'     the first bad record of a chain in this page (seq, id, reason):
--                 missing_records (seq does not follow), broken_link (the link does not chain to the
--                 previous record: reordered, inserted, or a record rewritten with its digest),
--                 hash_mismatch (content does not match its digest or hash: edited), tail_missing
--                 (the head says the chain is longer; seq = first missing), head_mismatch (the last
--                 record is not the one the head names), head_missing (records without a head row)
--   'end'         a chain that ends in this page and verified (seq, hash: its last record or anchor)
--   'checkpoint'  a signed checkpoint of a chain this page covers, with the hash the chain holds at
--                 its seq now (current_hash; NULL when that record is gone; reason 'chain_missing'
--                 when the chain itself is gone) for the library to check the signature and compare
--   'cursor'      one row: where the page stopped (chain_id, seq, hash), records checked, done
CREATE FUNCTION :TS.tenant_secret_audit_verify_page(
  p_chain text, p_after_chain text, p_after_seq bigint, p_after_hash bytea, p_limit integer DEFAULT 5000)
RETURNS TABLE (kind text, chain_id text, seq bigint, hash bytea, id bigint, reason text, checked bigint,
               master_key_id text, mac bytea, current_hash bytea, done boolean)
LANGUAGE plpgsql STABLE SECURITY DEFINER
-- Every read below is an index range scan whatever the statistics say: a day partition sealed in
-- bulk (after a backlog, or an upgrade) is not analyzed yet, and a plan built on its default
-- estimates (a sequential scan and sort of the partition, or a nested loop over the page) costs
-- seconds per page instead of milliseconds. No parallel workers (they sorted the whole key range
-- after the cursor). No JIT: the page's estimated cost passes the JIT threshold, and compiling the
-- hashing expressions took as long as running them (every page).
SET search_path = '' SET enable_seqscan = off SET enable_bitmapscan = off SET max_parallel_workers_per_gather = 0 SET jit = off AS $$
#variable_conflict use_column
DECLARE
  v_limit integer := LEAST(GREATEST(COALESCE(p_limit, 5000), 1), 100000);
  v_cont boolean := p_after_chain IS NOT NULL AND p_after_seq IS NOT NULL;
  -- The key range this page starts after; with one chain, that chain's range only.
  v_lo_chain text := COALESCE(p_after_chain, p_chain, '');
  v_lo_seq bigint := CASE WHEN p_after_chain IS NULL THEN -1 ELSE COALESCE(p_after_seq, 9223372036854775807) END;
BEGIN
  PERFORM :TS._ts_guard(true);
  PERFORM :TS._ts_require_operator();
  -- One statement, one snapshot: the page, the heads and the checkpoints are read together, so a
  -- concurrent seal cannot look like a missing or an extra record.
  RETURN QUERY
  WITH page AS (
    SELECT a.* FROM :TS.tenant_secret_audit a
     WHERE (a.chain_id, a.seq) > (v_lo_chain, v_lo_seq) AND a.sealed_at < 'infinity'
       AND (p_chain IS NULL OR a.chain_id = p_chain)
     ORDER BY a.chain_id, a.seq LIMIT v_limit),
  w AS (
    SELECT pg_catalog.row_number() OVER o AS ord, p.*,
           pg_catalog.lag(p.chain_id) OVER o AS pchain, pg_catalog.lag(p.seq) OVER o AS pseq,
           pg_catalog.lag(p.hash) OVER o AS phash
      FROM page p WINDOW o AS (ORDER BY p.chain_id, p.seq)),
  -- What each record must follow: its predecessor in the page, the record the page continues
  -- from, or the chain's anchor (looked up once per chain, at its first record in the page).
  x AS (
    SELECT w.*,
           CASE WHEN w.pchain IS NOT DISTINCT FROM w.chain_id THEN w.pseq + 1
                WHEN v_cont AND w.chain_id = p_after_chain THEN p_after_seq + 1
                ELSE COALESCE((SELECT h.anchor_seq FROM :TS.tenant_secret_audit_heads h WHERE h.chain_id = w.chain_id), 0) + 1
           END AS e_seq,
           CASE WHEN w.pchain IS NOT DISTINCT FROM w.chain_id THEN w.phash
                WHEN v_cont AND w.chain_id = p_after_chain THEN p_after_hash
                ELSE COALESCE((SELECT h.anchor_hash FROM :TS.tenant_secret_audit_heads h WHERE h.chain_id = w.chain_id),
                              '\x0000000000000000000000000000000000000000000000000000000000000000'::bytea)
           END AS e_prev
      FROM w),
  r AS (
    SELECT x.ord, x.id, x.chain_id, x.seq, x.hash,
           CASE
             WHEN x.seq IS DISTINCT FROM x.e_seq THEN 'missing_records'
             WHEN x.digest IS NULL AND x.prev_hash IS DISTINCT FROM x.e_prev THEN 'broken_link'
             WHEN x.digest IS NULL AND x.hash IS DISTINCT FROM :TS._ts_audit_hash(x.prev_hash, x.chain_id, x.seq, x.occurred_at,
                    x.tenant_id, x.db_role, x.actor, x.action, x.key_name, x.version, x.outcome, x.error_code,
                    x.request_id, x.context, x.details) THEN 'hash_mismatch'
             WHEN x.digest IS NOT NULL AND x.digest IS DISTINCT FROM :TS._ts_audit_digest(x.chain_id, x.occurred_at,
                    x.tenant_id, x.db_role, x.actor, x.action, x.key_name, x.version, x.outcome, x.error_code,
                    x.request_id, x.context, x.details) THEN 'hash_mismatch'
             WHEN x.digest IS NOT NULL AND x.hash IS DISTINCT FROM :TS._ts_audit_link(x.e_prev, x.chain_id, x.seq, x.digest)
                  THEN 'broken_link'
           END AS reason
      FROM x),
  -- The page's extent: hi is its last chain when the page is full (chains after it belong to later
  -- pages), NULL on the last page. top bounds the chains this page answers for (NULL: no bound).
  b AS (
    SELECT s.n, s.n < v_limit AS is_done, l.chain_id AS last_chain, l.seq AS last_seq, l.hash AS last_hash,
           CASE WHEN s.n < v_limit THEN NULL ELSE l.chain_id END AS hi,
           CASE WHEN p_chain IS NOT NULL THEN p_chain WHEN s.n < v_limit THEN NULL ELSE l.chain_id END AS top
      FROM (SELECT pg_catalog.count(*) AS n FROM r) s
      LEFT JOIN LATERAL (SELECT r.chain_id, r.seq, r.hash FROM r ORDER BY r.ord DESC LIMIT 1) l ON true),
  c AS (
    SELECT r.chain_id, pg_catalog.min(r.seq) AS first_seq, pg_catalog.max(r.seq) AS last_seq,
           NOT (v_cont AND r.chain_id = p_after_chain) AS starts_here,
           pg_catalog.bool_or(r.reason IS NOT NULL) AS bad,
           (SELECT b.is_done OR r.chain_id <> b.last_chain FROM b) AS ends_here
      FROM r GROUP BY r.chain_id),
  -- Heads and checkpoints of the chains in [v_lo_chain, top]: two range scans (the second one only
  -- on the last page of a verification of every chain), never a scan of every chain.
  hr AS (
    SELECT h.* FROM :TS.tenant_secret_audit_heads h
     WHERE h.chain_id >= v_lo_chain AND h.chain_id <= (SELECT b.top FROM b)
    UNION ALL
    SELECT h.* FROM :TS.tenant_secret_audit_heads h
     WHERE h.chain_id >= v_lo_chain AND p_chain IS NULL AND (SELECT b.hi IS NULL FROM b)),
  kr AS (
    SELECT k.* FROM :TS.tenant_secret_audit_checkpoints k
     WHERE k.chain_id >= v_lo_chain AND k.chain_id <= (SELECT b.top FROM b)
    UNION ALL
    SELECT k.* FROM :TS.tenant_secret_audit_checkpoints k
     WHERE k.chain_id >= v_lo_chain AND p_chain IS NULL AND (SELECT b.hi IS NULL FROM b))
  -- The first problem of each chain in the page.
  SELECT 'problem'::text, p.chain_id, p.seq, NULL::bytea, p.id, p.reason, NULL::bigint,
         NULL::text, NULL::bytea, NULL::bytea, NULL::boolean
    FROM (SELECT DISTINCT ON (r.chain_id) r.* FROM r WHERE r.reason IS NOT NULL ORDER BY r.chain_id, r.ord) p
  UNION ALL
  -- Chains ending in this page without a bad record: the last record against the head.
  SELECT CASE WHEN y.reason IS NULL THEN 'end' ELSE 'problem' END, y.chain_id,
         CASE WHEN y.reason = 'tail_missing' THEN y.seq + 1 ELSE y.seq END,
         y.hash, CASE WHEN y.reason IS NOT NULL AND y.reason <> 'tail_missing' THEN y.id END, y.reason, NULL::bigint,
         NULL::text, NULL::bytea, NULL::bytea, NULL::boolean
    FROM (SELECT t.chain_id, t.seq, t.hash, t.id,
                 CASE WHEN h.chain_id IS NULL THEN 'head_missing'
                      WHEN h.seq > t.seq THEN 'tail_missing'
                      WHEN h.seq < t.seq OR h.hash IS DISTINCT FROM t.hash THEN 'head_mismatch' END AS reason
            FROM c JOIN r t ON t.chain_id = c.chain_id AND t.seq = c.last_seq
            LEFT JOIN hr h ON h.chain_id = c.chain_id
           WHERE c.ends_here AND NOT c.bad) y
  UNION ALL
  -- The chain this page continues, when the previous page ended with its last record: its end is
  -- the cursor, checked against its head here.
  SELECT CASE WHEN y.reason IS NULL THEN 'end' ELSE 'problem' END, p_after_chain,
         CASE WHEN y.reason = 'tail_missing' THEN p_after_seq + 1 ELSE p_after_seq END,
         CASE WHEN y.reason IS NULL THEN p_after_hash END, NULL::bigint, y.reason, NULL::bigint,
         NULL::text, NULL::bytea, NULL::bytea, NULL::boolean
    FROM (SELECT CASE WHEN h.chain_id IS NULL THEN 'head_missing'
                      WHEN h.seq > p_after_seq THEN 'tail_missing'
                      WHEN h.seq < p_after_seq OR h.hash IS DISTINCT FROM p_after_hash THEN 'head_mismatch' END AS reason
            FROM (SELECT 1) one LEFT JOIN hr h ON h.chain_id = p_after_chain) y
   WHERE v_cont AND (p_chain IS NULL OR p_after_chain = p_chain)
     AND NOT EXISTS (SELECT 1 FROM c WHERE c.chain_id = p_after_chain)
  UNION ALL
  -- Chains with a head but no sealed record in the key range this page covered (fully pruned, or
  -- every record deleted).
  SELECT CASE WHEN h.seq > h.anchor_seq THEN 'problem' ELSE 'end' END, h.chain_id,
         CASE WHEN h.seq > h.anchor_seq THEN h.anchor_seq + 1 ELSE h.anchor_seq END,
         CASE WHEN h.seq > h.anchor_seq THEN NULL ELSE h.anchor_hash END, NULL::bigint,
         CASE WHEN h.seq > h.anchor_seq THEN 'tail_missing' END, NULL::bigint,
         NULL::text, NULL::bytea, NULL::bytea, NULL::boolean
    FROM hr h, b
   WHERE (p_chain IS NULL OR h.chain_id = p_chain)
     AND (h.chain_id, 9223372036854775807::bigint) > (v_lo_chain, v_lo_seq)
     AND (b.hi IS NULL OR h.chain_id < b.hi)
     AND NOT (v_cont AND h.chain_id = p_after_chain)
     AND NOT EXISTS (SELECT 1 FROM c WHERE c.chain_id = h.chain_id)
  UNION ALL
  -- Signed checkpoints of the chains this page covered, with the hash the chain holds at their seq.
  SELECT 'checkpoint'::text, k.chain_id, k.seq, k.hash, NULL::bigint,
         CASE WHEN h.chain_id IS NULL AND cc.chain_id IS NULL THEN 'chain_missing' END, NULL::bigint,
         k.master_key_id, k.mac,
         COALESCE(t.hash, CASE WHEN k.seq = h.anchor_seq THEN h.anchor_hash END), NULL::boolean
    FROM kr k
    CROSS JOIN b
    LEFT JOIN hr h ON h.chain_id = k.chain_id
    LEFT JOIN c cc ON cc.chain_id = k.chain_id
    LEFT JOIN r t ON t.chain_id = k.chain_id AND t.seq = k.seq
   WHERE (p_chain IS NULL OR k.chain_id = p_chain)
     AND (   t.chain_id IS NOT NULL
          OR (cc.chain_id IS NOT NULL AND cc.starts_here AND k.seq < cc.first_seq)
          OR (cc.chain_id IS NOT NULL AND cc.ends_here AND k.seq > cc.last_seq)
          OR (cc.chain_id IS NULL
              AND (k.chain_id, 9223372036854775807::bigint) > (v_lo_chain, v_lo_seq)
              AND (b.hi IS NULL OR k.chain_id < b.hi)
              AND NOT (v_cont AND k.chain_id = p_after_chain))
          -- the continued chain's checkpoints after the cursor, when it has no record left here
          OR (cc.chain_id IS NULL AND v_cont AND k.chain_id = p_after_chain AND k.seq > p_after_seq))
  UNION ALL
  SELECT 'cursor'::text, b.last_chain, b.last_seq, b.last_hash, NULL::bigint, NULL::text, b.n,
         NULL::text, NULL::bytea, NULL::bytea, b.is_done
    FROM b
  -- In key order (chain ends in particular: the library digests the heads in that order).
  ORDER BY 2, 3;
END
$$;

-- Chains registered on the system chain ('audit.chain_started') that have no head any more: a tenant
-- chain removed entirely. Pages by the registering record's seq.
CREATE FUNCTION :TS.tenant_secret_audit_missing_chains(p_after_seq bigint DEFAULT 0, p_limit integer DEFAULT 10000)
RETURNS TABLE (chain_id text, registered_seq bigint, last_seq bigint)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = '' AS $$
  SELECT :TS._ts_require_operator();
  WITH reg AS (
    SELECT a.details->>'chain_id' AS chain_id, a.seq
      FROM :TS.tenant_secret_audit a
     WHERE a.chain_id = '' AND a.seq > COALESCE(p_after_seq, 0) AND a.sealed_at < 'infinity'
       AND a.action = 'audit.chain_started'
     ORDER BY a.seq LIMIT LEAST(GREATEST(COALESCE(p_limit, 10000), 1), 100000))
  SELECT r.chain_id, r.seq, (SELECT pg_catalog.max(r2.seq) FROM reg r2)
    FROM reg r
   WHERE NOT EXISTS (SELECT 1 FROM :TS.tenant_secret_audit_heads h WHERE h.chain_id = r.chain_id)
  UNION ALL
  SELECT NULL, NULL, (SELECT pg_catalog.max(r2.seq) FROM reg r2)
$$;

-- ---------------------------------------------------------------------------------------------
-- Checkpoints (signed by the library, which holds the key)
-- ---------------------------------------------------------------------------------------------

-- Stores checkpoints the library signed after verifying chains up to (seq, hash): each is kept only
-- when it names the chain's head or its anchor as they are now, and replaces older checkpoints of
-- that chain (a later checkpoint commits to everything before it). Returns how many were stored.
CREATE FUNCTION :TS.tenant_secret_audit_checkpoint_add(
  p_chains text[], p_seqs bigint[], p_hashes bytea[], p_master_key_id text, p_macs bytea[])
RETURNS integer
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = '' AS $$
DECLARE
  v_n integer;
BEGIN
  PERFORM :TS._ts_guard(true);
  PERFORM :TS._ts_require_operator();
  IF NOT :TS._ts_master_key_id_valid(p_master_key_id) OR pg_catalog.cardinality(p_chains) > 100000
     OR pg_catalog.cardinality(p_chains) IS DISTINCT FROM pg_catalog.cardinality(p_seqs)
     OR pg_catalog.cardinality(p_chains) IS DISTINCT FROM pg_catalog.cardinality(p_hashes)
     OR pg_catalog.cardinality(p_chains) IS DISTINCT FROM pg_catalog.cardinality(p_macs) THEN
    RAISE EXCEPTION 'tenant-secrets: malformed checkpoint batch' USING ERRCODE = 'TS400';
  END IF;
  -- Wait for a concurrent prune of these chains (it holds their heads FOR UPDATE).
  PERFORM 1 FROM :TS.tenant_secret_audit_heads h WHERE h.chain_id = ANY (p_chains) ORDER BY h.chain_id FOR SHARE;
  WITH c AS (
    SELECT u.chain_id, u.seq, u.hash, u.mac FROM ROWS FROM (pg_catalog.unnest(p_chains), pg_catalog.unnest(p_seqs), pg_catalog.unnest(p_hashes), pg_catalog.unnest(p_macs)) AS u(chain_id, seq, hash, mac)
      JOIN :TS.tenant_secret_audit_heads h ON h.chain_id = u.chain_id
     WHERE pg_catalog.octet_length(u.hash) = 32 AND pg_catalog.octet_length(u.mac) = 32 AND u.seq > 0
       AND ((u.seq = h.seq AND u.hash = h.hash) OR (u.seq = h.anchor_seq AND u.hash = h.anchor_hash))),
  gone AS (
    DELETE FROM :TS.tenant_secret_audit_checkpoints k USING c
     WHERE k.chain_id = c.chain_id AND k.seq < c.seq RETURNING 1),
  ins AS (
    INSERT INTO :TS.tenant_secret_audit_checkpoints AS k (chain_id, seq, hash, master_key_id, mac)
    SELECT c.chain_id, c.seq, c.hash, p_master_key_id, c.mac FROM c
    ON CONFLICT (chain_id, seq) DO NOTHING RETURNING 1)
  SELECT pg_catalog.count(*) INTO v_n FROM ins;
  RETURN v_n;
END
$$;

-- Checkpoints in (chain_id, seq) order after (p_after_chain, p_after_seq), for re-signing.
CREATE FUNCTION :TS.tenant_secret_audit_checkpoint_list(p_after_chain text DEFAULT NULL, p_after_seq bigint DEFAULT NULL,
                                                         p_limit integer DEFAULT 10000)
RETURNS TABLE (chain_id text, seq bigint, hash bytea, master_key_id text, mac bytea, created_at timestamptz)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = '' AS $$
  SELECT :TS._ts_require_operator();
  SELECT c.chain_id, c.seq, c.hash, c.master_key_id, c.mac, c.created_at
    FROM :TS.tenant_secret_audit_checkpoints c
   WHERE p_after_chain IS NULL OR (c.chain_id, c.seq) > (p_after_chain, COALESCE(p_after_seq, 0))
   ORDER BY c.chain_id, c.seq LIMIT LEAST(GREATEST(COALESCE(p_limit, 10000), 1), 100000)
$$;

-- Replaces checkpoints' signatures (master-key rotation: re-sign under the current key), each only
-- when the row still carries the expected old key id and mac (the library checked that old mac).
-- Returns, per checkpoint, whether this call re-signed it.
CREATE FUNCTION :TS.tenant_secret_audit_checkpoint_resign(
  p_chains text[], p_seqs bigint[], p_old_master_key_ids text[], p_old_macs bytea[], p_master_key_id text, p_macs bytea[])
RETURNS TABLE (chain_id text, seq bigint, resigned boolean)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = '' AS $$
#variable_conflict use_column
BEGIN
  PERFORM :TS._ts_guard(true);
  PERFORM :TS._ts_require_operator();
  IF NOT :TS._ts_master_key_id_valid(p_master_key_id) OR pg_catalog.cardinality(p_chains) > 100000
     OR EXISTS (SELECT 1 FROM pg_catalog.unnest(p_old_master_key_ids) i(id) WHERE NOT :TS._ts_master_key_id_valid(i.id)) THEN
    RAISE EXCEPTION 'tenant-secrets: malformed checkpoint batch' USING ERRCODE = 'TS400';
  END IF;
  RETURN QUERY
  WITH u AS (SELECT * FROM ROWS FROM (pg_catalog.unnest(p_chains), pg_catalog.unnest(p_seqs), pg_catalog.unnest(p_old_master_key_ids), pg_catalog.unnest(p_old_macs), pg_catalog.unnest(p_macs))
                        AS u(chain_id, seq, old_id, old_mac, mac)),
  done AS (
    UPDATE :TS.tenant_secret_audit_checkpoints c SET master_key_id = p_master_key_id, mac = u.mac
      FROM u
     WHERE c.chain_id = u.chain_id AND c.seq = u.seq AND c.master_key_id = u.old_id AND c.mac = u.old_mac
       AND pg_catalog.octet_length(u.mac) = 32
    RETURNING c.chain_id, c.seq)
  SELECT u.chain_id, u.seq, EXISTS (SELECT 1 FROM done d WHERE d.chain_id = u.chain_id AND d.seq = u.seq) FROM u;
END
$$;

-- Records the outcome of a verification on the system chain (never a value; counts and reasons).
CREATE FUNCTION :TS.tenant_secret_audit_verified(p_ok boolean, p_details jsonb, p_ctx jsonb DEFAULT '{}'::jsonb)
RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = '' AS $$
BEGIN
  PERFORM :TS._ts_guard(true);
  PERFORM :TS._ts_require_operator();
  IF pg_catalog.octet_length(p_details::text) > 65536 THEN
    RAISE EXCEPTION 'tenant-secrets: verification details too large' USING ERRCODE = 'TS400';
  END IF;
  PERFORM :TS._ts_audit(NULL, 'audit.verified', NULL, NULL, CASE WHEN p_ok THEN 'success' ELSE 'failure' END,
    CASE WHEN p_ok THEN NULL ELSE 'TAMPERED' END, :TS._ts_ctx_safe(p_ctx), p_details);
END
$$;

-- ---------------------------------------------------------------------------------------------
-- Retention
-- ---------------------------------------------------------------------------------------------

-- Removes audit records that occurred before p_older_than and moves each affected chain's anchor to
-- the last removed record (seq, hash) in the same transaction, so what remains still verifies.
-- Every chain (p_chain_id NULL): records of release 0.1 are deleted row by row first; then every day
-- partition whose whole day was sealed before the cutoff is dropped (cost follows what is removed;
-- the day the cutoff falls in stays). One chain (p_chain_id; '' is the system chain): its records up
-- to the last one that occurred before the cutoff are deleted. Checkpoints below a new anchor go too.
-- Returns one row per chain that lost records (records removed, final anchor). One 'audit.pruned'
-- record per call. Owner only ('forbidden' otherwise, audited). 'busy' when the day partitions could
-- not be locked within p_lock_timeout_ms (a reader holds the trail): the days stay, with their
-- anchors unchanged, for a later run; what was pruned before them (0.1 records) stays pruned.
CREATE FUNCTION :TS.tenant_secret_audit_prune(p_older_than timestamptz, p_chain_id text DEFAULT NULL,
                                               p_ctx jsonb DEFAULT '{}'::jsonb, p_lock_timeout_ms integer DEFAULT 2000)
RETURNS TABLE (status text, chain_id text, pruned bigint, anchor_seq bigint, anchor_hash bytea)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = '' AS $$
#variable_conflict use_column
DECLARE
  v_owner oid := (SELECT c.relowner FROM pg_catalog.pg_class c WHERE c.oid = ':TS.tenant_secret_audit'::regclass);
  v_ctx jsonb := :TS._ts_ctx_safe(p_ctx);
  r record;
  v_c text[] := '{}';
  v_n bigint[] := '{}';
  v_s bigint[] := '{}';
  v_h bytea[] := '{}';
  v_parts_list regclass[];
  v_total bigint := 0;
  v_chains integer := 0;
  v_parts integer := 0;
  v_busy boolean := false;
BEGIN
  PERFORM :TS._ts_guard(true);
  IF NOT pg_catalog.pg_has_role(session_user, v_owner, 'MEMBER') THEN
    PERFORM :TS._ts_audit(NULL, 'audit.pruned', NULL, NULL, 'failure', 'FORBIDDEN', v_ctx, NULL);
    RETURN QUERY SELECT 'forbidden'::text, NULL::text, NULL::bigint, NULL::bigint, NULL::bytea;
    RETURN;
  END IF;
  IF p_older_than IS NULL OR p_older_than > pg_catalog.now()
     OR (p_chain_id IS NOT NULL AND p_chain_id <> '' AND :TS._ts_invalid_input(p_chain_id, NULL) IS NOT NULL) THEN
    PERFORM :TS._ts_audit(NULL, 'audit.pruned', NULL, NULL, 'failure', 'INVALID_INPUT', v_ctx,
      pg_catalog.jsonb_build_object('field', CASE WHEN p_older_than IS NULL OR p_older_than > pg_catalog.now() THEN 'older_than' ELSE 'chain_id' END));
    RETURN QUERY SELECT 'invalid_input'::text, NULL::text, NULL::bigint, NULL::bigint, NULL::bytea;
    RETURN;
  END IF;
  -- Pruning and sealing both move chain heads: one at a time.
  PERFORM pg_catalog.pg_advisory_xact_lock(1951622706, pg_catalog.hashtext(':TS'));

  IF p_chain_id IS NOT NULL THEN
    FOR r IN SELECT * FROM :TS._ts_audit_prune_rows(p_chain_id, p_older_than, false) LOOP
      v_c := v_c || r.chain_id; v_n := v_n || r.pruned; v_s := v_s || r.anchor_seq; v_h := v_h || r.anchor_hash;
    END LOOP;
  ELSE
    -- Records of release 0.1 first: they precede every sealed partition in every chain.
    FOR r IN SELECT * FROM :TS._ts_audit_prune_rows(NULL, p_older_than, true) LOOP
      v_c := v_c || r.chain_id; v_n := v_n || r.pruned; v_s := v_s || r.anchor_seq; v_h := v_h || r.anchor_hash;
    END LOOP;
    IF NOT EXISTS (SELECT 1 FROM :TS.tenant_secret_audit_v1 a LIMIT 1) THEN
      v_parts_list := ARRAY(
        SELECT c.oid::regclass
          FROM pg_catalog.pg_inherits i JOIN pg_catalog.pg_class c ON c.oid = i.inhrelid
         WHERE i.inhparent = ':TS.tenant_secret_audit'::regclass AND c.relname ~ '^tenant_secret_audit_p[0-9]{8}$'
           AND ((pg_catalog.to_date(pg_catalog.substring(c.relname, '([0-9]{8})$'), 'YYYYMMDD') + 1)::timestamp AT TIME ZONE 'UTC') <= p_older_than
         ORDER BY c.relname);
      IF pg_catalog.cardinality(v_parts_list) > 0 THEN
        BEGIN
          FOR r IN SELECT * FROM :TS._ts_audit_drop_days(v_parts_list, GREATEST(COALESCE(p_lock_timeout_ms, 2000), 1)) LOOP
            v_c := v_c || r.chain_id; v_n := v_n || r.pruned; v_s := v_s || r.anchor_seq; v_h := v_h || r.anchor_hash;
          END LOOP;
          v_parts := pg_catalog.cardinality(v_parts_list);
        EXCEPTION WHEN lock_not_available THEN
          -- Nothing of the days was changed (anchors included): a later run drops them.
          v_busy := true;
        END;
      END IF;
    END IF;
  END IF;
  -- One row per chain that lost records: the records it lost, and its last (highest) new anchor.
  RETURN QUERY
    SELECT 'ok'::text, u.c, pg_catalog.sum(u.n)::bigint, (pg_catalog.array_agg(u.s ORDER BY u.s DESC))[1],
           (pg_catalog.array_agg(u.h ORDER BY u.s DESC))[1]
      FROM ROWS FROM (pg_catalog.unnest(v_c), pg_catalog.unnest(v_n), pg_catalog.unnest(v_s), pg_catalog.unnest(v_h)) AS u(c, n, s, h)
     GROUP BY u.c ORDER BY u.c;
  SELECT pg_catalog.count(DISTINCT u.c)::integer, COALESCE(pg_catalog.sum(u.n), 0)::bigint INTO v_chains, v_total
    FROM ROWS FROM (pg_catalog.unnest(v_c), pg_catalog.unnest(v_n)) AS u(c, n);
  IF v_busy THEN
    RETURN QUERY SELECT 'busy'::text, NULL::text, NULL::bigint, NULL::bigint, NULL::bytea;
  END IF;
  PERFORM :TS._ts_audit(NULL, 'audit.pruned', NULL, NULL, CASE WHEN v_busy THEN 'failure' ELSE 'success' END,
    CASE WHEN v_busy THEN 'BUSY' END, v_ctx,
    pg_catalog.jsonb_strip_nulls(pg_catalog.jsonb_build_object(
      'older_than', p_older_than, 'chain_id', p_chain_id, 'partitions', v_parts, 'chains', v_chains, 'records', v_total)));
END
$$;

-- Deletes, per chain (one chain, or every chain of the 0.1 records when p_v1_only), every record up
-- to the last one that occurred before p_older_than, moving the anchor and dropping checkpoints below it.
CREATE FUNCTION :TS._ts_audit_prune_rows(p_chain text, p_older_than timestamptz, p_v1_only boolean)
RETURNS TABLE (status text, chain_id text, pruned bigint, anchor_seq bigint, anchor_hash bytea)
LANGUAGE plpgsql VOLATILE AS $$
#variable_conflict use_column
DECLARE
  h record;
  v_seq bigint;
  v_hash bytea;
  v_n bigint;
BEGIN
  FOR h IN SELECT hh.chain_id FROM :TS.tenant_secret_audit_heads hh
            WHERE (p_chain IS NULL OR hh.chain_id = p_chain)
              AND (NOT p_v1_only OR EXISTS (SELECT 1 FROM :TS.tenant_secret_audit_v1 a WHERE a.chain_id = hh.chain_id))
            ORDER BY hh.chain_id FOR UPDATE LOOP
    IF p_v1_only THEN
      SELECT a.seq, a.hash INTO v_seq, v_hash FROM :TS.tenant_secret_audit_v1 a
       WHERE a.chain_id = h.chain_id AND a.occurred_at < p_older_than ORDER BY a.seq DESC LIMIT 1;
    ELSE
      SELECT a.seq, a.hash INTO v_seq, v_hash FROM :TS.tenant_secret_audit a
       WHERE a.chain_id = h.chain_id AND a.occurred_at < p_older_than AND a.sealed_at < 'infinity' ORDER BY a.seq DESC LIMIT 1;
    END IF;
    CONTINUE WHEN v_seq IS NULL;
    DELETE FROM :TS.tenant_secret_audit a WHERE a.chain_id = h.chain_id AND a.seq <= v_seq AND a.sealed_at < 'infinity';
    GET DIAGNOSTICS v_n = ROW_COUNT;
    UPDATE :TS.tenant_secret_audit_heads hh SET anchor_seq = v_seq, anchor_hash = v_hash WHERE hh.chain_id = h.chain_id;
    DELETE FROM :TS.tenant_secret_audit_checkpoints c WHERE c.chain_id = h.chain_id AND c.seq < v_seq;
    RETURN QUERY SELECT 'ok'::text, h.chain_id, v_n, v_seq, v_hash;
  END LOOP;
END
$$;

-- Drops the given day partitions (the oldest days, every record sealed before p_parts' last day
-- ended): each chain's anchor moves to its last record in them, checkpoints below the new anchors go,
-- then the partitions are dropped. Returns one row per chain that lost records.
-- The anchors are computed before the partitions are locked: nothing writes a past day (the sealer,
-- which only writes its current day, waits for the prune's lock). Dropping a partition needs an ACCESS
-- EXCLUSIVE lock on the whole trail, which every operation's append waits for: it is taken in short
-- attempts (25 ms), letting operations through in between, for up to p_lock_timeout_ms, and held only
-- for the drops and the commit. Raises lock_not_available when the lock was not obtained; the caller
-- rolls the anchor changes back with it.
CREATE FUNCTION :TS._ts_audit_drop_days(p_parts regclass[], p_lock_timeout_ms integer)
RETURNS TABLE (status text, chain_id text, pruned bigint, anchor_seq bigint, anchor_hash bytea)
LANGUAGE plpgsql VOLATILE AS $$
#variable_conflict use_column
DECLARE
  v_until timestamptz := (pg_catalog.to_date(pg_catalog.substring(p_parts[pg_catalog.cardinality(p_parts)]::text, '([0-9]{8})$'), 'YYYYMMDD') + 1)::timestamp AT TIME ZONE 'UTC';
  v_lock text := pg_catalog.current_setting('lock_timeout');
  v_deadline timestamptz := pg_catalog.clock_timestamp() + pg_catalog.make_interval(secs => p_lock_timeout_ms / 1000.0);
  v_c text[];
  v_n bigint[];
  v_s bigint[];
  v_h bytea[];
  v_part regclass;
BEGIN
  -- The last record of each chain in those days: records sealed from 1970 (after release 0.1's) to
  -- the end of the last day dropped, read from those partitions only, in (chain, seq) order.
  SELECT pg_catalog.array_agg(t.chain_id ORDER BY t.chain_id), pg_catalog.array_agg(t.n ORDER BY t.chain_id),
         pg_catalog.array_agg(t.seq ORDER BY t.chain_id), pg_catalog.array_agg(t.hash ORDER BY t.chain_id)
    INTO v_c, v_n, v_s, v_h
    FROM (SELECT a.chain_id, a.seq, a.hash,
                 pg_catalog.count(*) OVER (PARTITION BY a.chain_id) AS n,
                 pg_catalog.lead(a.seq) OVER (PARTITION BY a.chain_id ORDER BY a.seq) AS next_seq
            FROM :TS.tenant_secret_audit a
           WHERE a.sealed_at >= '1970-01-01 00:00:00+00' AND a.sealed_at < v_until) t
   WHERE t.next_seq IS NULL;
  WITH t AS (SELECT * FROM ROWS FROM (pg_catalog.unnest(v_c), pg_catalog.unnest(v_s), pg_catalog.unnest(v_h)) AS u(chain_id, seq, hash)),
  moved AS (
    UPDATE :TS.tenant_secret_audit_heads h SET anchor_seq = t.seq, anchor_hash = t.hash
      FROM t WHERE h.chain_id = t.chain_id AND t.seq > h.anchor_seq RETURNING 1)
  DELETE FROM :TS.tenant_secret_audit_checkpoints k USING t WHERE k.chain_id = t.chain_id AND k.seq < t.seq;

  LOOP
    BEGIN
      PERFORM pg_catalog.set_config('lock_timeout',
        GREATEST(1, LEAST(25, (EXTRACT(EPOCH FROM v_deadline - pg_catalog.clock_timestamp()) * 1000)::integer))::text, true);
      -- ONLY: locking the parent alone (a lock on a partitioned table recurses to every partition,
      -- and would wait for autovacuum working on any day of the trail).
      EXECUTE pg_catalog.format('LOCK TABLE ONLY :TS.tenant_secret_audit, %s IN ACCESS EXCLUSIVE MODE',
        (SELECT pg_catalog.string_agg(x::text, ', ') FROM pg_catalog.unnest(p_parts) x));
      EXIT;
    EXCEPTION WHEN lock_not_available THEN
      IF pg_catalog.clock_timestamp() >= v_deadline THEN
        RAISE;
      END IF;
      PERFORM pg_catalog.pg_sleep(0.01);
    END;
  END LOOP;
  PERFORM pg_catalog.set_config('lock_timeout', v_lock, true);
  FOREACH v_part IN ARRAY p_parts LOOP
    EXECUTE pg_catalog.format('DROP TABLE %s', v_part);
  END LOOP;
  RETURN QUERY SELECT 'ok'::text, u.c, u.n, u.s, u.h
                 FROM ROWS FROM (pg_catalog.unnest(v_c), pg_catalog.unnest(v_n), pg_catalog.unnest(v_s), pg_catalog.unnest(v_h)) AS u(c, n, s, h);
END
$$;

COMMENT ON FUNCTION :TS.tenant_secret_audit_seal(integer, boolean) IS
  'tenant-secrets: chain committed pending audit records into their tenants'' hash chains (run periodically).';
COMMENT ON FUNCTION :TS.tenant_secret_audit_query(text, jsonb, jsonb) IS
  'tenant-secrets: one keyset page of a tenant''s audit chain (NULL tenant = system chain); audited once per query on the system chain.';
COMMENT ON FUNCTION :TS.tenant_secret_audit_chains(text, integer) IS
  'tenant-secrets: audit chain ids with a head, in order (keyset pagination).';
COMMENT ON FUNCTION :TS.tenant_secret_audit_verify_page(text, text, bigint, bytea, integer) IS
  'tenant-secrets: recompute and check one page of audit records in (chain, seq) order (digests, links, heads, checkpoints).';
COMMENT ON FUNCTION :TS.tenant_secret_audit_missing_chains(bigint, integer) IS
  'tenant-secrets: tenant chains registered on the system chain whose head is gone.';
COMMENT ON FUNCTION :TS.tenant_secret_audit_checkpoint_add(text[], bigint[], bytea[], text, bytea[]) IS
  'tenant-secrets: store checkpoints signed by the library at chain heads or anchors (replacing older ones).';
COMMENT ON FUNCTION :TS.tenant_secret_audit_checkpoint_list(text, bigint, integer) IS
  'tenant-secrets: audit checkpoints in (chain, seq) order (keyset pagination).';
COMMENT ON FUNCTION :TS.tenant_secret_audit_checkpoint_resign(text[], bigint[], text[], bytea[], text, bytea[]) IS
  'tenant-secrets: replace checkpoints'' signatures after a master-key rotation (compare-and-set on the old ones).';
COMMENT ON FUNCTION :TS.tenant_secret_audit_verified(boolean, jsonb, jsonb) IS
  'tenant-secrets: append the outcome of an audit verification to the system chain.';
COMMENT ON FUNCTION :TS.tenant_secret_audit_prune(timestamptz, text, jsonb, integer) IS
  'tenant-secrets: drop audit records older than a cutoff (whole day partitions, or one chain''s records) and move anchors in the same transaction.';
