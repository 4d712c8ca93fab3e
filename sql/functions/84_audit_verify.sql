-- tenant-secrets functions: verification of the audit trail, per-chain checkpoints and the signed
-- anchors over all of them.

-- ---------------------------------------------------------------------------------------------
-- Verification
-- ---------------------------------------------------------------------------------------------

-- Verifies the next p_limit sealed records in (chain_id, seq) order after (p_after_chain,
-- p_after_seq), of one chain (p_chain) or of every chain (p_chain NULL), recomputing each record's
-- digest and link in the database. p_after_chain NULL starts at the beginning; p_after_seq NULL
-- starts after the whole chain p_after_chain; p_after_hash is the hash of the record the page
-- continues from. p_until_chain (with p_chain NULL) ends the walk after that chain: the page then
-- answers for the chains in (p_after_chain, p_until_chain] only, and is done at its end, so that
-- ranges of chains can be verified side by side over several connections. Returns rows of four kinds:
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
  p_chain text, p_after_chain text, p_after_seq bigint, p_after_hash bytea, p_limit integer DEFAULT 5000,
  p_until_chain text DEFAULT NULL)
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
       -- The range's end as an index bound (an OR with p_until_chain IS NULL would be a filter, and
       -- the range's last page would scan every later chain's records): without a range, the
       -- greatest chain id of this snapshot's sealed records (the pending partition, which has no
       -- index, is not read).
       AND a.chain_id <= COALESCE(p_until_chain, (SELECT pg_catalog.max(m.chain_id) FROM :TS.tenant_secret_audit m
                                                   WHERE m.sealed_at < 'infinity'))
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
           CASE WHEN p_chain IS NOT NULL THEN p_chain WHEN s.n < v_limit THEN p_until_chain ELSE l.chain_id END AS top
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
     WHERE h.chain_id >= v_lo_chain AND p_chain IS NULL AND p_until_chain IS NULL AND (SELECT b.hi IS NULL FROM b)),
  kr AS (
    SELECT k.* FROM :TS.tenant_secret_audit_checkpoints k
     WHERE k.chain_id >= v_lo_chain AND k.chain_id <= (SELECT b.top FROM b)
    UNION ALL
    SELECT k.* FROM :TS.tenant_secret_audit_checkpoints k
     WHERE k.chain_id >= v_lo_chain AND p_chain IS NULL AND p_until_chain IS NULL AND (SELECT b.hi IS NULL FROM b))
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
-- Anchors: signed checkpoints of the whole trail
-- ---------------------------------------------------------------------------------------------
-- Each anchor signs (in the library, with the audit key) the digest of every chain's checkpoint,
-- a counter and the previous anchor's MAC:
--   heads_digest = SHA-256( for each checkpoint row in (chain_id, seq) order: lp(chain_id) || int8(seq) || hash )
-- (a chain holds several checkpoints after a prune: seq orders them, not where the rows lie on disk)
--   mac = HMAC-SHA256(audit key, "tenant-secrets:anchor:v1" || int8(counter) || lp(master key id)
--                     || int8(chains) || int8(records) || heads_digest || prev_mac)
-- Deleting or editing checkpoint rows changes the digest; deleting the newest anchors rolls the
-- counter back, which whoever keeps the newest anchor outside the database detects.

-- The digest of the checkpoint rows as they are now, with how many chains and records (the sum of
-- the checkpointed seqs) they cover.
CREATE FUNCTION :TS.tenant_secret_audit_checkpoint_digest(OUT chains bigint, OUT records bigint, OUT heads_digest bytea)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = '' AS $$
  SELECT :TS._ts_require_operator();
  SELECT pg_catalog.count(*), COALESCE(pg_catalog.sum(c.seq), 0)::bigint,
         :PGC.digest(COALESCE(pg_catalog.string_agg(
           pg_catalog.int4send(pg_catalog.octet_length(pg_catalog.convert_to(c.chain_id, 'UTF8'))) || pg_catalog.convert_to(c.chain_id, 'UTF8')
             || pg_catalog.int8send(c.seq) || c.hash, ''::bytea ORDER BY c.chain_id COLLATE "C", c.seq), ''::bytea), 'sha256')
    FROM :TS.tenant_secret_audit_checkpoints c
$$;

-- Anchors from counter p_from on (at most 10000), oldest first; the newest alone when p_from is NULL.
CREATE FUNCTION :TS.tenant_secret_audit_anchors(p_from bigint DEFAULT NULL)
RETURNS TABLE (counter bigint, created_at timestamptz, master_key_id text, chains bigint, records bigint,
               heads_digest bytea, prev_mac bytea, mac bytea)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = '' AS $$
  SELECT :TS._ts_require_operator();
  (SELECT a.counter, a.created_at, a.master_key_id, a.chains, a.records, a.heads_digest, a.prev_mac, a.mac
     FROM :TS.tenant_secret_audit_anchors a
    WHERE p_from IS NOT NULL AND a.counter >= p_from ORDER BY a.counter LIMIT 10000)
  UNION ALL
  (SELECT a.counter, a.created_at, a.master_key_id, a.chains, a.records, a.heads_digest, a.prev_mac, a.mac
     FROM :TS.tenant_secret_audit_anchors a
    WHERE p_from IS NULL ORDER BY a.counter DESC LIMIT 1)
$$;

-- Appends the next anchor, signed by the library. Refused ('conflict') unless p_counter follows the
-- newest anchor and p_prev_mac is its MAC (another verification anchored meanwhile), and ('stale')
-- unless the checkpoints still have the digest, chains and records signed. Returns the status.
-- Serialises the writers of checkpoints and anchors: SHARE ROW EXCLUSIVE on both tables, taken in
-- OID order as _ts_guard takes its ROW EXCLUSIVE locks (a different order lets a guard that holds one
-- table wait on this lock's holder for the other: a deadlock). Bounded like every wait of ours:
-- 30 s when the session sets no lock_timeout.
CREATE FUNCTION :TS._ts_lock_anchors() RETURNS void
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
  IF pg_catalog.current_setting('lock_timeout') = '0' THEN
    PERFORM pg_catalog.set_config('lock_timeout', '30s', true);
  END IF;
  EXECUTE 'LOCK TABLE ' || (SELECT pg_catalog.string_agg(t::pg_catalog.regclass::text, ', ' ORDER BY t)
                              FROM pg_catalog.unnest(ARRAY[':TS.tenant_secret_audit_anchors'::pg_catalog.regclass::pg_catalog.oid,
                                                           ':TS.tenant_secret_audit_checkpoints'::pg_catalog.regclass::pg_catalog.oid]) t)
       || ' IN SHARE ROW EXCLUSIVE MODE';
END
$$;

-- The first statement of every transaction that writes checkpoints and an anchor (verification's
-- last step, re-signing, pruning): such transactions queue here before holding any other lock,
-- instead of both holding ROW EXCLUSIVE and deadlocking when they upgrade.
CREATE FUNCTION :TS.tenant_secret_audit_anchor_lock()
RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = '' AS $$
BEGIN
  PERFORM :TS._ts_require_operator();
  PERFORM :TS._ts_lock_anchors();
END
$$;

CREATE FUNCTION :TS.tenant_secret_audit_anchor_add(
  p_counter bigint, p_master_key_id text, p_chains bigint, p_records bigint, p_heads_digest bytea,
  p_prev_mac bytea, p_mac bytea)
RETURNS text
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = '' AS $$
DECLARE
  v_last record;
  v_now record;
BEGIN
  -- Before the guard's ROW EXCLUSIVE locks: no upgrade (a no-op after tenant_secret_audit_anchor_lock()).
  PERFORM :TS._ts_require_operator();
  PERFORM :TS._ts_lock_anchors();
  PERFORM :TS._ts_guard(true);
  IF NOT :TS._ts_master_key_id_valid(p_master_key_id) OR p_counter IS NULL OR p_counter < 1
     OR pg_catalog.octet_length(p_heads_digest) IS DISTINCT FROM 32 OR pg_catalog.octet_length(p_prev_mac) IS DISTINCT FROM 32
     OR pg_catalog.octet_length(p_mac) IS DISTINCT FROM 32 OR p_chains < 0 OR p_records < 0 THEN
    RAISE EXCEPTION 'tenant-secrets: malformed audit anchor' USING ERRCODE = 'TS400';
  END IF;
  SELECT a.counter, a.mac INTO v_last FROM :TS.tenant_secret_audit_anchors a ORDER BY a.counter DESC LIMIT 1;
  IF p_counter <> COALESCE(v_last.counter, 0) + 1
     OR p_prev_mac <> COALESCE(v_last.mac, '\x0000000000000000000000000000000000000000000000000000000000000000'::bytea) THEN
    RETURN 'conflict';
  END IF;
  SELECT * INTO v_now FROM :TS.tenant_secret_audit_checkpoint_digest();
  IF v_now.heads_digest <> p_heads_digest OR v_now.chains <> p_chains OR v_now.records <> p_records THEN
    RETURN 'stale';
  END IF;
  INSERT INTO :TS.tenant_secret_audit_anchors (counter, master_key_id, chains, records, heads_digest, prev_mac, mac)
  VALUES (p_counter, p_master_key_id, p_chains, p_records, p_heads_digest, p_prev_mac, p_mac);
  RETURN 'ok';
END
$$;

COMMENT ON FUNCTION :TS.tenant_secret_audit_verify_page(text, text, bigint, bytea, integer, text) IS
  'tenant-secrets: recompute and check one page of audit records in (chain, seq) order (digests, links, heads, checkpoints), optionally of the chains up to p_until_chain only.';
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
COMMENT ON FUNCTION :TS.tenant_secret_audit_checkpoint_digest() IS
  'tenant-secrets: digest of every chain''s checkpoint (what an audit anchor signs).';
COMMENT ON FUNCTION :TS.tenant_secret_audit_anchors(bigint) IS
  'tenant-secrets: signed audit anchors from a counter on (or the newest).';
COMMENT ON FUNCTION :TS.tenant_secret_audit_anchor_lock() IS
  'tenant-secrets: first statement of a transaction that writes checkpoints and an audit anchor (orders such transactions).';
COMMENT ON FUNCTION :TS.tenant_secret_audit_anchor_add(bigint, text, bigint, bigint, bytea, bytea, bytea) IS
  'tenant-secrets: append the next signed audit anchor (the library signs it).';
