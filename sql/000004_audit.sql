-- tenant-secrets migration 000004: audit trail query, verification, signed checkpoints, pruning.
--
-- The chain itself (tenant_secret_audit, tenant_secret_audit_heads, _ts_audit_hash, _ts_audit) is
-- defined in 000001 and unchanged here. This migration adds:
--   * tenant_secret_audit_checkpoints: (chain, seq, hash) triples signed IN NODE with an HMAC key
--     derived from the master key (MasterKey.deriveAuditKey()); the key never reaches the database,
--     so whoever controls the database can delete checkpoints but cannot forge or move them.
--   * tenant_secret_audit_query: filtered, keyset-paginated reads of one chain.
--   * tenant_secret_audit_chains / tenant_secret_audit_verify_page: recompute every hash in SQL,
--     page by page, checking seq continuity from the anchor, prev_hash links and the head.
--   * tenant_secret_audit_prune: drop old records and move the chain's anchor in one transaction.
--
-- Reading the audit trail is itself audited, once per query (not per page) and on the system chain
-- ('') so that paging through a tenant's chain never changes that chain: 'audit.queried' for the
-- first page of a query, 'audit.exported' for the start of an export, 'audit.verified' after a
-- verification and 'audit.pruned' for a prune.

-- _ts_audit_hash, redefined with the SAME signature and the SAME bytes (test/audit-hash.test.ts
-- compares it with 000001's composition of _ts_lpt calls), but written as one expression and without
-- a SET clause, so PostgreSQL inlines it: 000001's version made 13 non-inlinable helper calls per
-- record (~115 us), which made verifying 100,000 records take ~12 s of hashing alone. It is only
-- reached from functions that pin search_path = '' (or by the owner), and every name is qualified.
CREATE OR REPLACE FUNCTION :TS._ts_audit_hash(
  p_prev bytea, p_chain text, p_seq bigint, p_at timestamptz, p_tenant text, p_db_role text, p_actor text,
  p_action text, p_key text, p_version integer, p_outcome text, p_error text, p_request text,
  p_context jsonb, p_details jsonb)
RETURNS bytea LANGUAGE sql STABLE PARALLEL SAFE AS $$
  SELECT :PGC.digest(
    p_prev || '\x00000017'::bytea || pg_catalog.convert_to('tenant-secrets:audit:v1', 'UTF8')
    || CASE WHEN p_chain IS NULL THEN '\xffffffff'::bytea ELSE pg_catalog.int4send(pg_catalog.octet_length(pg_catalog.convert_to(p_chain, 'UTF8'))) || pg_catalog.convert_to(p_chain, 'UTF8') END
    || pg_catalog.int8send(p_seq)
    || pg_catalog.int8send((EXTRACT(EPOCH FROM p_at) * 1000000)::bigint)
    || CASE WHEN p_tenant IS NULL THEN '\xffffffff'::bytea ELSE pg_catalog.int4send(pg_catalog.octet_length(pg_catalog.convert_to(p_tenant, 'UTF8'))) || pg_catalog.convert_to(p_tenant, 'UTF8') END
    || CASE WHEN p_db_role IS NULL THEN '\xffffffff'::bytea ELSE pg_catalog.int4send(pg_catalog.octet_length(pg_catalog.convert_to(p_db_role, 'UTF8'))) || pg_catalog.convert_to(p_db_role, 'UTF8') END
    || CASE WHEN p_actor IS NULL THEN '\xffffffff'::bytea ELSE pg_catalog.int4send(pg_catalog.octet_length(pg_catalog.convert_to(p_actor, 'UTF8'))) || pg_catalog.convert_to(p_actor, 'UTF8') END
    || CASE WHEN p_action IS NULL THEN '\xffffffff'::bytea ELSE pg_catalog.int4send(pg_catalog.octet_length(pg_catalog.convert_to(p_action, 'UTF8'))) || pg_catalog.convert_to(p_action, 'UTF8') END
    || CASE WHEN p_key IS NULL THEN '\xffffffff'::bytea ELSE pg_catalog.int4send(pg_catalog.octet_length(pg_catalog.convert_to(p_key, 'UTF8'))) || pg_catalog.convert_to(p_key, 'UTF8') END
    || CASE WHEN p_version IS NULL THEN '\xffffffff'::bytea ELSE pg_catalog.int4send(pg_catalog.octet_length(pg_catalog.convert_to(p_version::text, 'UTF8'))) || pg_catalog.convert_to(p_version::text, 'UTF8') END
    || CASE WHEN p_outcome IS NULL THEN '\xffffffff'::bytea ELSE pg_catalog.int4send(pg_catalog.octet_length(pg_catalog.convert_to(p_outcome, 'UTF8'))) || pg_catalog.convert_to(p_outcome, 'UTF8') END
    || CASE WHEN p_error IS NULL THEN '\xffffffff'::bytea ELSE pg_catalog.int4send(pg_catalog.octet_length(pg_catalog.convert_to(p_error, 'UTF8'))) || pg_catalog.convert_to(p_error, 'UTF8') END
    || CASE WHEN p_request IS NULL THEN '\xffffffff'::bytea ELSE pg_catalog.int4send(pg_catalog.octet_length(pg_catalog.convert_to(p_request, 'UTF8'))) || pg_catalog.convert_to(p_request, 'UTF8') END
    || CASE WHEN p_context IS NULL THEN '\xffffffff'::bytea ELSE pg_catalog.int4send(pg_catalog.octet_length(pg_catalog.convert_to(p_context::text, 'UTF8'))) || pg_catalog.convert_to(p_context::text, 'UTF8') END
    || CASE WHEN p_details IS NULL THEN '\xffffffff'::bytea ELSE pg_catalog.int4send(pg_catalog.octet_length(pg_catalog.convert_to(p_details::text, 'UTF8'))) || pg_catalog.convert_to(p_details::text, 'UTF8') END,
    'sha256')
$$;

CREATE TABLE :TS.tenant_secret_audit_checkpoints (
  chain_id       text        NOT NULL,
  seq            bigint      NOT NULL CHECK (seq > 0),
  hash           bytea       NOT NULL CHECK (octet_length(hash) = 32),
  master_key_id  text        NOT NULL,
  mac            bytea       NOT NULL CHECK (octet_length(mac) = 32),
  created_at     timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (chain_id, seq)
);
COMMENT ON TABLE :TS.tenant_secret_audit_checkpoints IS
  'tenant-secrets: signed audit checkpoints: mac = HMAC-SHA256(audit key derived from master key master_key_id, chain || seq || hash), computed by the library; the key never reaches the database.';

-- ---------------------------------------------------------------------------------------------
-- Query
-- ---------------------------------------------------------------------------------------------

-- One page of one chain, ascending seq. p_tenant_id NULL reads the system chain (''). p_options:
-- since (inclusive), until (exclusive) timestamps; action, key_name, actor, outcome (exact match);
-- after (seq to continue after: keyset pagination); limit (1-1000, default 100; up to 10000 for exports);
-- purpose ('query' or 'export', naming the audit record written for a first page), all_chains
-- (export of every chain: noted in that record). Only a call without `after` (a first page) writes
-- that record, so paging never grows the system chain; a caller can skip it by passing a cursor.
CREATE FUNCTION :TS.tenant_secret_audit_query(p_tenant_id text, p_options jsonb DEFAULT '{}'::jsonb,
                                               p_ctx jsonb DEFAULT '{}'::jsonb)
RETURNS TABLE (id bigint, chain_id text, seq bigint, occurred_at timestamptz, tenant_id text, db_role text,
               actor text, action text, key_name text, version integer, outcome text, error_code text,
               request_id text, context jsonb, details jsonb, prev_hash bytea, hash bytea)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = '' AS $$
#variable_conflict use_column
DECLARE
  v_opts jsonb := COALESCE(p_options, '{}'::jsonb);
  v_chain text := COALESCE(p_tenant_id, '');
  v_after bigint := COALESCE((v_opts->>'after')::bigint, 0);
  v_since timestamptz := (v_opts->>'since')::timestamptz;
  v_until timestamptz := (v_opts->>'until')::timestamptz;
  v_limit integer := LEAST(GREATEST(COALESCE((v_opts->>'limit')::integer, 100), 1),
                           CASE WHEN v_opts->>'purpose' = 'export' THEN 10000 ELSE 1000 END);
  v_action text := CASE WHEN v_opts->>'purpose' = 'export' THEN 'audit.exported' ELSE 'audit.queried' END;
  v_count integer;
BEGIN
  IF p_tenant_id IS NOT NULL AND :TS._ts_invalid_input(p_tenant_id, NULL) IS NOT NULL THEN
    PERFORM :TS._ts_audit(NULL, v_action, NULL, NULL, 'failure', 'INVALID_INPUT', p_ctx,
      pg_catalog.jsonb_build_object('field', 'tenant_id'));
    RETURN; -- no rows; not raised, so the failure record commits
  END IF;
  RETURN QUERY
    SELECT a.id, a.chain_id, a.seq, a.occurred_at, a.tenant_id, a.db_role, a.actor, a.action, a.key_name,
           a.version, a.outcome, a.error_code, a.request_id, a.context, a.details, a.prev_hash, a.hash
      FROM :TS.tenant_secret_audit a
     WHERE a.chain_id = v_chain AND a.seq > v_after
       AND (v_since IS NULL OR a.occurred_at >= v_since)
       AND (v_until IS NULL OR a.occurred_at < v_until)
       AND (v_opts->>'action' IS NULL OR a.action = v_opts->>'action')
       AND (v_opts->>'key_name' IS NULL OR a.key_name = v_opts->>'key_name')
       AND (v_opts->>'actor' IS NULL OR a.actor = v_opts->>'actor')
       AND (v_opts->>'outcome' IS NULL OR a.outcome = v_opts->>'outcome')
     ORDER BY a.seq
     LIMIT v_limit;
  GET DIAGNOSTICS v_count = ROW_COUNT;
  IF v_opts->>'after' IS NULL THEN
    PERFORM :TS._ts_audit(NULL, v_action, NULL, NULL, 'success', NULL, p_ctx,
      pg_catalog.jsonb_strip_nulls(pg_catalog.jsonb_build_object(
        'chain_id', CASE WHEN (v_opts->>'all_chains')::boolean THEN NULL ELSE v_chain END,
        'all_chains', CASE WHEN (v_opts->>'all_chains')::boolean THEN true END, 'since', v_since, 'until', v_until, 'action', v_opts->>'action',
        'key_name', v_opts->>'key_name', 'actor', v_opts->>'actor', 'outcome', v_opts->>'outcome',
        'first_page_count', v_count)));
  END IF;
END
$$;

-- ---------------------------------------------------------------------------------------------
-- Verification
-- ---------------------------------------------------------------------------------------------

-- Every chain: those with a head row, and any chain that has records but lost its head. The
-- distinct chain ids of the records come from a loose index scan on (chain_id, seq): one index
-- probe per chain, not a scan of every record.
CREATE FUNCTION :TS.tenant_secret_audit_chains()
RETURNS TABLE (chain_id text, head_seq bigint, anchor_seq bigint, has_head boolean)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = '' AS $$
  WITH RECURSIVE ids AS (
    SELECT (SELECT a.chain_id FROM :TS.tenant_secret_audit a ORDER BY a.chain_id, a.seq LIMIT 1) AS id
    UNION ALL
    SELECT (SELECT a.chain_id FROM :TS.tenant_secret_audit a WHERE a.chain_id > ids.id
             ORDER BY a.chain_id, a.seq LIMIT 1)
      FROM ids WHERE ids.id IS NOT NULL)
  SELECT h.chain_id, h.seq, h.anchor_seq, true FROM :TS.tenant_secret_audit_heads h
  UNION ALL
  SELECT ids.id, NULL::bigint, NULL::bigint, false FROM ids
   WHERE ids.id IS NOT NULL
     AND NOT EXISTS (SELECT 1 FROM :TS.tenant_secret_audit_heads h WHERE h.chain_id = ids.id)
  ORDER BY 1
$$;

-- Verifies up to p_limit records of one chain after (p_after_seq, p_after_hash), or from the chain's
-- anchor when p_after_seq is NULL. One statement, one snapshot: the page and the head row are read
-- together, so a concurrent append cannot look like a missing or extra record.
-- Returns the number checked, the last verified (seq, hash), done = the end of the chain was reached,
-- and the first bad record with a reason:
--   missing_records   seq does not follow its predecessor (records deleted before it)
--   broken_link       prev_hash is not the predecessor's hash (reordered, inserted, or predecessor rewritten)
--   hash_mismatch     the record's content does not hash to its stored hash (edited)
--   tail_missing      the head says the chain is longer than its records (tail deleted); bad_seq = first missing
--   head_mismatch     the last record is not the one the head names (records appended or head rewritten)
--   head_missing      records exist but the chain has no head row
CREATE FUNCTION :TS.tenant_secret_audit_verify_page(
  p_chain_id text, p_after_seq bigint, p_after_hash bytea, p_limit integer DEFAULT 5000)
RETURNS TABLE (checked integer, last_seq bigint, last_hash bytea, done boolean,
               bad_seq bigint, bad_id bigint, reason text)
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = '' AS $$
#variable_conflict use_column
DECLARE
  v_limit integer := LEAST(GREATEST(COALESCE(p_limit, 5000), 1), 100000);
  r record;
BEGIN
  WITH h AS (
    SELECT hh.seq, hh.hash, hh.anchor_seq, hh.anchor_hash FROM :TS.tenant_secret_audit_heads hh
     WHERE hh.chain_id = p_chain_id),
  start AS (
    SELECT COALESCE(p_after_seq, (SELECT h.anchor_seq FROM h), 0) AS s,
           COALESCE(CASE WHEN p_after_seq IS NOT NULL THEN p_after_hash END, (SELECT h.anchor_hash FROM h),
                    '\x0000000000000000000000000000000000000000000000000000000000000000'::bytea) AS hs),
  page AS (
    SELECT a.* FROM :TS.tenant_secret_audit a
     WHERE a.chain_id = p_chain_id AND a.seq > (SELECT start.s FROM start)
     ORDER BY a.seq LIMIT v_limit),
  chk AS (
    SELECT p.id, p.seq, p.hash,
           CASE
             WHEN p.seq <> pg_catalog.lag(p.seq, 1, st.s) OVER w + 1 THEN 'missing_records'
             WHEN p.prev_hash IS DISTINCT FROM pg_catalog.lag(p.hash, 1, st.hs) OVER w THEN 'broken_link'
             WHEN p.hash IS DISTINCT FROM :TS._ts_audit_hash(p.prev_hash, p.chain_id, p.seq, p.occurred_at,
                    p.tenant_id, p.db_role, p.actor, p.action, p.key_name, p.version, p.outcome, p.error_code,
                    p.request_id, p.context, p.details) THEN 'hash_mismatch'
           END AS reason
      FROM page p CROSS JOIN start st
    WINDOW w AS (ORDER BY p.seq))
  SELECT (SELECT pg_catalog.count(*)::integer FROM chk) AS n,
         (SELECT c.seq FROM chk c ORDER BY c.seq DESC LIMIT 1) AS lseq,
         (SELECT c.hash FROM chk c ORDER BY c.seq DESC LIMIT 1) AS lhash,
         (SELECT c.id FROM chk c ORDER BY c.seq DESC LIMIT 1) AS lid,
         (SELECT c.seq FROM chk c WHERE c.reason IS NOT NULL ORDER BY c.seq LIMIT 1) AS bseq,
         (SELECT c.id FROM chk c WHERE c.reason IS NOT NULL ORDER BY c.seq LIMIT 1) AS bid,
         (SELECT c.reason FROM chk c WHERE c.reason IS NOT NULL ORDER BY c.seq LIMIT 1) AS breason,
         (SELECT start.s FROM start) AS ss, (SELECT start.hs FROM start) AS shs,
         (SELECT h.seq FROM h) AS hseq, (SELECT h.hash FROM h) AS hhash,
         EXISTS (SELECT 1 FROM h) AS has_head
    INTO r;

  checked := r.n;
  last_seq := COALESCE(r.lseq, r.ss);
  last_hash := COALESCE(r.lhash, r.shs);
  bad_seq := r.bseq;
  bad_id := r.bid;
  reason := r.breason;
  done := r.n < v_limit;
  IF reason IS NULL AND NOT r.has_head AND (r.n > 0 OR p_after_seq IS NOT NULL) THEN
    bad_seq := COALESCE(r.lseq, p_after_seq);
    reason := 'head_missing';
  ELSIF reason IS NULL AND done THEN
    IF r.hseq > last_seq THEN
      bad_seq := last_seq + 1;
      reason := 'tail_missing';
    ELSIF r.hseq < last_seq OR r.hhash IS DISTINCT FROM last_hash THEN
      bad_seq := last_seq;
      bad_id := r.lid;
      reason := 'head_mismatch';
    END IF;
  END IF;
  IF reason IS NOT NULL THEN
    done := true;
  END IF;
  RETURN NEXT;
END
$$;

-- ---------------------------------------------------------------------------------------------
-- Checkpoints (signed by the library)
-- ---------------------------------------------------------------------------------------------

-- Stores a checkpoint the library signed after verifying the chain up to (p_seq, p_hash). Refused
-- (returns false) unless the chain still holds that hash at that seq.
CREATE FUNCTION :TS.tenant_secret_audit_checkpoint_add(
  p_chain_id text, p_seq bigint, p_hash bytea, p_master_key_id text, p_mac bytea)
RETURNS boolean
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = '' AS $$
BEGIN
  -- Wait for a concurrent prune of this chain (it holds the head FOR UPDATE), then check against
  -- what it left: a checkpoint is never stored below a chain's anchor.
  PERFORM 1 FROM :TS.tenant_secret_audit_heads h WHERE h.chain_id = p_chain_id FOR SHARE;
  IF NOT EXISTS (SELECT 1 FROM :TS.tenant_secret_audit a
                  WHERE a.chain_id = p_chain_id AND a.seq = p_seq AND a.hash = p_hash)
     AND NOT EXISTS (SELECT 1 FROM :TS.tenant_secret_audit_heads h
                      WHERE h.chain_id = p_chain_id AND h.anchor_seq = p_seq AND h.anchor_hash = p_hash) THEN
    RETURN false;
  END IF;
  INSERT INTO :TS.tenant_secret_audit_checkpoints AS c (chain_id, seq, hash, master_key_id, mac)
  VALUES (p_chain_id, p_seq, p_hash, p_master_key_id, p_mac)
  ON CONFLICT (chain_id, seq) DO NOTHING;
  RETURN true;
END
$$;

-- A chain's checkpoints with what the chain holds now at each checkpoint's seq: the record's hash,
-- or the anchor hash when the checkpoint sits on the anchor (records at or before it were pruned).
CREATE FUNCTION :TS.tenant_secret_audit_checkpoint_list(p_chain_id text)
RETURNS TABLE (chain_id text, seq bigint, hash bytea, master_key_id text, mac bytea, created_at timestamptz,
               current_hash bytea, anchor_seq bigint)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = '' AS $$
  SELECT c.chain_id, c.seq, c.hash, c.master_key_id, c.mac, c.created_at,
         CASE WHEN c.seq = h.anchor_seq THEN h.anchor_hash ELSE a.hash END,
         h.anchor_seq
    FROM :TS.tenant_secret_audit_checkpoints c
    LEFT JOIN :TS.tenant_secret_audit_heads h ON h.chain_id = c.chain_id
    LEFT JOIN :TS.tenant_secret_audit a ON a.chain_id = c.chain_id AND a.seq = c.seq
   WHERE p_chain_id IS NULL OR c.chain_id = p_chain_id
   ORDER BY c.chain_id, c.seq
$$;

-- Replaces a checkpoint's signature (master-key rotation: re-sign under the current key). Only
-- when the row still carries the expected old key id and mac (the library checked that old mac).
CREATE FUNCTION :TS.tenant_secret_audit_checkpoint_resign(
  p_chain_id text, p_seq bigint, p_old_master_key_id text, p_old_mac bytea, p_master_key_id text, p_mac bytea)
RETURNS boolean
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = '' AS $$
BEGIN
  UPDATE :TS.tenant_secret_audit_checkpoints c SET master_key_id = p_master_key_id, mac = p_mac
   WHERE c.chain_id = p_chain_id AND c.seq = p_seq AND c.master_key_id = p_old_master_key_id AND c.mac = p_old_mac;
  RETURN FOUND;
END
$$;

-- Records the outcome of a verification on the system chain (never a value; reasons and counts only).
CREATE FUNCTION :TS.tenant_secret_audit_verified(p_ok boolean, p_details jsonb, p_ctx jsonb DEFAULT '{}'::jsonb)
RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = '' AS $$
BEGIN
  PERFORM :TS._ts_audit(NULL, 'audit.verified', NULL, NULL, CASE WHEN p_ok THEN 'success' ELSE 'failure' END,
    CASE WHEN p_ok THEN NULL ELSE 'TAMPERED' END, p_ctx, p_details);
END
$$;

-- ---------------------------------------------------------------------------------------------
-- Retention
-- ---------------------------------------------------------------------------------------------

-- Deletes, per chain (one chain when p_chain_id is given; '' is the system chain), every record up
-- to the last one that occurred before p_older_than, and moves the chain's anchor to that record's
-- (seq, hash) in the same transaction, so the remaining chain still verifies from its anchor.
-- Checkpoints before the new anchor go too. One 'audit.pruned' record (system chain) per call.
-- Owner only (status 'forbidden' otherwise, audited as a FORBIDDEN failure).
CREATE FUNCTION :TS.tenant_secret_audit_prune(p_older_than timestamptz, p_chain_id text DEFAULT NULL,
                                               p_ctx jsonb DEFAULT '{}'::jsonb)
RETURNS TABLE (status text, chain_id text, pruned bigint, anchor_seq bigint, anchor_hash bytea)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = '' AS $$
#variable_conflict use_column
DECLARE
  v_owner oid := (SELECT c.relowner FROM pg_catalog.pg_class c WHERE c.oid = ':TS.tenant_secret_audit'::regclass);
  h record;
  v_seq bigint;
  v_hash bytea;
  v_n bigint;
  v_total bigint := 0;
  v_chains integer := 0;
BEGIN
  -- Pruning moves anchors, so a pruned trail still verifies: only the owner (or a member of the
  -- owning role, e.g. the migrating operator) may do it, never an application role granted EXECUTE
  -- by migrate({ grantTo }), which could otherwise erase its own tracks.
  IF NOT pg_catalog.pg_has_role(session_user, v_owner, 'USAGE') THEN
    PERFORM :TS._ts_audit(NULL, 'audit.pruned', NULL, NULL, 'failure', 'FORBIDDEN', p_ctx, NULL);
    RETURN QUERY SELECT 'forbidden'::text, NULL::text, NULL::bigint, NULL::bigint, NULL::bytea;
    RETURN;
  END IF;
  IF p_older_than IS NULL OR p_older_than > pg_catalog.now() THEN
    PERFORM :TS._ts_audit(NULL, 'audit.pruned', NULL, NULL, 'failure', 'INVALID_INPUT', p_ctx,
      pg_catalog.jsonb_build_object('field', 'older_than'));
    RETURN QUERY SELECT 'invalid_input'::text, NULL::text, NULL::bigint, NULL::bigint, NULL::bytea;
    RETURN;
  END IF;
  FOR h IN SELECT hh.chain_id FROM :TS.tenant_secret_audit_heads hh
            WHERE p_chain_id IS NULL OR hh.chain_id = p_chain_id
            ORDER BY hh.chain_id FOR UPDATE LOOP
    SELECT a.seq, a.hash INTO v_seq, v_hash FROM :TS.tenant_secret_audit a
     WHERE a.chain_id = h.chain_id AND a.occurred_at < p_older_than
     ORDER BY a.seq DESC LIMIT 1;
    CONTINUE WHEN v_seq IS NULL;
    DELETE FROM :TS.tenant_secret_audit a WHERE a.chain_id = h.chain_id AND a.seq <= v_seq;
    GET DIAGNOSTICS v_n = ROW_COUNT;
    UPDATE :TS.tenant_secret_audit_heads hh SET anchor_seq = v_seq, anchor_hash = v_hash
     WHERE hh.chain_id = h.chain_id;
    DELETE FROM :TS.tenant_secret_audit_checkpoints c WHERE c.chain_id = h.chain_id AND c.seq < v_seq;
    v_total := v_total + v_n;
    v_chains := v_chains + 1;
    RETURN QUERY SELECT 'ok'::text, h.chain_id, v_n, v_seq, v_hash;
  END LOOP;
  PERFORM :TS._ts_audit(NULL, 'audit.pruned', NULL, NULL, 'success', NULL, p_ctx,
    pg_catalog.jsonb_strip_nulls(pg_catalog.jsonb_build_object(
      'older_than', p_older_than, 'chain_id', p_chain_id, 'chains', v_chains, 'records', v_total)));
END
$$;

COMMENT ON FUNCTION :TS.tenant_secret_audit_query(text, jsonb, jsonb) IS
  'tenant-secrets: one keyset page of a tenant''s audit chain (NULL tenant = system chain); audited once per query on the system chain.';
COMMENT ON FUNCTION :TS.tenant_secret_audit_chains() IS
  'tenant-secrets: every audit chain (heads, and chains whose head row is missing).';
COMMENT ON FUNCTION :TS.tenant_secret_audit_verify_page(text, bigint, bytea, integer) IS
  'tenant-secrets: recompute and check one page of an audit chain (seq continuity, links, hashes, head).';
COMMENT ON FUNCTION :TS.tenant_secret_audit_checkpoint_add(text, bigint, bytea, text, bytea) IS
  'tenant-secrets: store a checkpoint signed by the library, if the chain holds that hash at that seq.';
COMMENT ON FUNCTION :TS.tenant_secret_audit_checkpoint_list(text) IS
  'tenant-secrets: audit checkpoints with the hash the chain holds now at each checkpoint''s seq.';
COMMENT ON FUNCTION :TS.tenant_secret_audit_checkpoint_resign(text, bigint, text, bytea, text, bytea) IS
  'tenant-secrets: replace a checkpoint''s signature after a master-key rotation (compare-and-set on the old one).';
COMMENT ON FUNCTION :TS.tenant_secret_audit_verified(boolean, jsonb, jsonb) IS
  'tenant-secrets: append the outcome of an audit verification to the system chain.';
COMMENT ON FUNCTION :TS.tenant_secret_audit_prune(timestamptz, text, jsonb) IS
  'tenant-secrets: delete audit records older than a cutoff per chain and move each chain''s anchor in the same transaction.';
