-- tenant-secrets functions: appending audit records, and sealing them into per-tenant hash chains.
--
-- An operation appends its record to the pending partition in its own transaction: one heap insert,
-- no lock shared with any other operation, so operations on one tenant never wait on each other.
-- The sealer (tenant_secret_audit_seal, run by the library every second, by verification and
-- queries, or by a periodic job) takes committed pending records in batches, computes each record's
-- digest (SHA-256 over a length-prefixed encoding of its content), chains them per tenant:
--   hash(seq) = SHA-256("tenant-secrets:chain:v2" || hash(seq - 1) || chain || seq || digest)
-- then moves them to the partition of the day they were sealed and advances the chain's head.
-- Release 0.2 computed the digest at append time. It protected nothing more: only the owner can
-- write a pending record (the write guard refuses every other role, BYPASSRLS included), and the
-- owner could recompute a digest as well as the record; until a record is sealed (and checkpointed),
-- its owner can change it either way. So operations no longer pay for it; records appended by 0.2
-- carry theirs, and the sealer keeps it.

-- Release 0.1 record hash (chained at append time, prev_hash stored). Still verified for those records.
CREATE FUNCTION :TS._ts_audit_hash(
  p_prev bytea, p_chain text, p_seq bigint, p_at timestamptz, p_tenant text, p_db_role text, p_actor text,
  p_action text, p_key text, p_version integer, p_outcome text, p_error text, p_request text,
  p_context jsonb, p_details jsonb)
RETURNS bytea LANGUAGE sql STABLE PARALLEL SAFE AS $$
  SELECT :PGC.digest(
    p_prev || '\x00000017'::bytea || pg_catalog.convert_to('tenant-secrets:audit:v1', 'UTF8')
    || :TS._ts_lpt(p_chain) || pg_catalog.int8send(p_seq)
    || pg_catalog.int8send((EXTRACT(EPOCH FROM p_at) * 1000000)::bigint)
    || :TS._ts_lpt(p_tenant) || :TS._ts_lpt(p_db_role) || :TS._ts_lpt(p_actor) || :TS._ts_lpt(p_action)
    || :TS._ts_lpt(p_key) || :TS._ts_lpt(p_version::text) || :TS._ts_lpt(p_outcome) || :TS._ts_lpt(p_error)
    || :TS._ts_lpt(p_request) || :TS._ts_lpt(p_context::text) || :TS._ts_lpt(p_details::text),
    'sha256')
$$;

-- Release 0.2 record digest: the record's content, without its position in the chain.
--   SHA-256(lp("tenant-secrets:audit:v2") || lp(chain) || int8(occurred_at in µs) || lp(tenant) ||
--           lp(db_role) || lp(actor) || lp(action) || lp(key) || lp(version text) || lp(outcome) ||
--           lp(error) || lp(request) || lp(context text) || lp(details text))
-- where lp(x) = int4(byte length of x in UTF-8) || x in UTF-8, and lp(NULL) = 0xffffffff: the same
-- bytes as the composition of _ts_lpt (test/audit-hash.test.ts compares them), written out so that
-- each field is converted once for its bytes and once for its length instead of three times, and the
-- label is a constant: every operation computes it, and verification recomputes it for every record.
CREATE FUNCTION :TS._ts_audit_digest(
  p_chain text, p_at timestamptz, p_tenant text, p_db_role text, p_actor text, p_action text, p_key text,
  p_version integer, p_outcome text, p_error text, p_request text, p_context jsonb, p_details jsonb)
RETURNS bytea LANGUAGE sql STABLE PARALLEL SAFE AS $$
  SELECT :PGC.digest(
    '\x0000001774656e616e742d736563726574733a61756469743a7632'::bytea
    || CASE WHEN p_chain IS NULL THEN '\xffffffff'::bytea ELSE pg_catalog.int4send(pg_catalog.octet_length(pg_catalog.convert_to(p_chain, 'UTF8'))) || pg_catalog.convert_to(p_chain, 'UTF8') END
    || pg_catalog.int8send((EXTRACT(EPOCH FROM p_at) * 1000000)::bigint)
    || CASE WHEN p_tenant IS NULL THEN '\xffffffff'::bytea ELSE pg_catalog.int4send(pg_catalog.octet_length(pg_catalog.convert_to(p_tenant, 'UTF8'))) || pg_catalog.convert_to(p_tenant, 'UTF8') END
    || CASE WHEN p_db_role IS NULL THEN '\xffffffff'::bytea ELSE pg_catalog.int4send(pg_catalog.octet_length(pg_catalog.convert_to(p_db_role, 'UTF8'))) || pg_catalog.convert_to(p_db_role, 'UTF8') END
    || CASE WHEN p_actor IS NULL THEN '\xffffffff'::bytea ELSE pg_catalog.int4send(pg_catalog.octet_length(pg_catalog.convert_to(p_actor, 'UTF8'))) || pg_catalog.convert_to(p_actor, 'UTF8') END
    || CASE WHEN p_action IS NULL THEN '\xffffffff'::bytea ELSE pg_catalog.int4send(pg_catalog.octet_length(pg_catalog.convert_to(p_action, 'UTF8'))) || pg_catalog.convert_to(p_action, 'UTF8') END
    || CASE WHEN p_key IS NULL THEN '\xffffffff'::bytea ELSE pg_catalog.int4send(pg_catalog.octet_length(pg_catalog.convert_to(p_key, 'UTF8'))) || pg_catalog.convert_to(p_key, 'UTF8') END
    || CASE WHEN p_version IS NULL THEN '\xffffffff'::bytea ELSE pg_catalog.int4send(pg_catalog.octet_length(p_version::text)) || pg_catalog.convert_to(p_version::text, 'UTF8') END
    || CASE WHEN p_outcome IS NULL THEN '\xffffffff'::bytea ELSE pg_catalog.int4send(pg_catalog.octet_length(pg_catalog.convert_to(p_outcome, 'UTF8'))) || pg_catalog.convert_to(p_outcome, 'UTF8') END
    || CASE WHEN p_error IS NULL THEN '\xffffffff'::bytea ELSE pg_catalog.int4send(pg_catalog.octet_length(pg_catalog.convert_to(p_error, 'UTF8'))) || pg_catalog.convert_to(p_error, 'UTF8') END
    || CASE WHEN p_request IS NULL THEN '\xffffffff'::bytea ELSE pg_catalog.int4send(pg_catalog.octet_length(pg_catalog.convert_to(p_request, 'UTF8'))) || pg_catalog.convert_to(p_request, 'UTF8') END
    || CASE WHEN p_context IS NULL THEN '\xffffffff'::bytea ELSE pg_catalog.int4send(pg_catalog.octet_length(pg_catalog.convert_to(p_context::text, 'UTF8'))) || pg_catalog.convert_to(p_context::text, 'UTF8') END
    || CASE WHEN p_details IS NULL THEN '\xffffffff'::bytea ELSE pg_catalog.int4send(pg_catalog.octet_length(pg_catalog.convert_to(p_details::text, 'UTF8'))) || pg_catalog.convert_to(p_details::text, 'UTF8') END,
    'sha256')
$$;

-- Release 0.2 chain link: SHA-256(lp("tenant-secrets:chain:v2") || previous hash || lp(chain) ||
-- int8(seq) || digest), the label a constant (as _ts_audit_digest).
CREATE FUNCTION :TS._ts_audit_link(p_prev bytea, p_chain text, p_seq bigint, p_digest bytea)
RETURNS bytea LANGUAGE sql STABLE PARALLEL SAFE AS $$
  SELECT :PGC.digest('\x0000001774656e616e742d736563726574733a636861696e3a7632'::bytea
                     || p_prev
                     || CASE WHEN p_chain IS NULL THEN '\xffffffff'::bytea ELSE pg_catalog.int4send(pg_catalog.octet_length(pg_catalog.convert_to(p_chain, 'UTF8'))) || pg_catalog.convert_to(p_chain, 'UTF8') END
                     || pg_catalog.int8send(p_seq) || p_digest, 'sha256')
$$;

-- Appends one record (pending). p_ctx carries the caller's audit context (validated by the entry
-- function: actor, request_id, ip, user_agent); a NULL tenant puts the record on the system chain.
-- Returns true, so that callers use it as an expression (`v := _ts_audit(...)`), which costs less
-- than a PERFORM query. One SQL statement, inlined into a plpgsql caller's expression.
CREATE FUNCTION :TS._ts_audit(
  p_tenant text, p_action text, p_key text, p_version integer, p_outcome text, p_error text,
  p_ctx jsonb, p_details jsonb DEFAULT NULL)
RETURNS boolean LANGUAGE plpgsql VOLATILE AS $$
BEGIN
  INSERT INTO :TS.tenant_secret_audit_pending
    (chain_id, occurred_at, tenant_id, db_role, actor, action, key_name, version, outcome, error_code,
     request_id, context, details, sealed_at)
  VALUES (COALESCE(p_tenant, ''), pg_catalog.clock_timestamp(), p_tenant, session_user,
          COALESCE(NULLIF(p_ctx->>'actor', ''), 'db:' || session_user), p_action, p_key, p_version, p_outcome, p_error,
          NULLIF(p_ctx->>'request_id', ''), NULLIF(COALESCE(p_ctx, '{}'::jsonb) - 'actor' - 'request_id', '{}'::jsonb), p_details,
          'infinity');
  RETURN true;
END
$$;

-- The caller's context as it may be recorded: when it is invalid (unknown fields, too long, control
-- characters), only the fact is recorded, never the offending text.
CREATE FUNCTION :TS._ts_ctx_safe(p_ctx jsonb) RETURNS jsonb
LANGUAGE sql IMMUTABLE AS $$
  SELECT CASE WHEN :TS._ts_ctx_invalid(p_ctx) IS NULL THEN p_ctx ELSE '{}'::jsonb END
$$;

-- ---------------------------------------------------------------------------------------------
-- Sealing
-- ---------------------------------------------------------------------------------------------

-- Makes sure the partition for records sealed on UTC day p_day exists: created empty, then attached
-- (ATTACH takes SHARE UPDATE EXCLUSIVE on the parent, which does not block any operation). Gives up
-- (false) when it cannot get that lock within a second; the sealer tries again on its next run.
CREATE FUNCTION :TS._ts_audit_partition(p_day date) RETURNS boolean
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
  v_name text := 'tenant_secret_audit_p' || pg_catalog.to_char(p_day, 'YYYYMMDD');
  v_from timestamptz := p_day::timestamp AT TIME ZONE 'UTC';
  v_to timestamptz := (p_day + 1)::timestamp AT TIME ZONE 'UTC';
  v_lock text := pg_catalog.current_setting('lock_timeout');
BEGIN
  IF pg_catalog.to_regclass(':TS.' || pg_catalog.quote_ident(v_name)) IS NOT NULL THEN
    -- A table of that name that is not our partition (created by a role with CREATE on the schema)
    -- would make every row of that day fail to route: say so instead.
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_inherits i
                    WHERE i.inhrelid = pg_catalog.to_regclass(':TS.' || pg_catalog.quote_ident(v_name))
                      AND i.inhparent = ':TS.tenant_secret_audit'::regclass) THEN
      RAISE EXCEPTION 'tenant-secrets: table % is not an audit partition and blocks sealing; drop it (it was not created by tenant-secrets)', v_name
        USING ERRCODE = 'TSSEC';
    END IF;
    RETURN true;
  END IF;
  BEGIN
    EXECUTE pg_catalog.format(
      'CREATE TABLE :TS.%I (LIKE :TS.tenant_secret_audit INCLUDING DEFAULTS INCLUDING CONSTRAINTS)', v_name);
    EXECUTE pg_catalog.format('ALTER TABLE :TS.%I ADD CONSTRAINT %I CHECK (sealed_at IS NOT NULL AND sealed_at >= %L AND sealed_at < %L)',
      v_name, v_name || '_bound', v_from, v_to);
    EXECUTE pg_catalog.format('CREATE INDEX %I ON :TS.%I (chain_id, seq)', v_name || '_chain', v_name);
    EXECUTE pg_catalog.format('ALTER TABLE :TS.%I ENABLE ROW LEVEL SECURITY', v_name);
    PERFORM :TS._ts_lock_down_table((':TS.' || pg_catalog.quote_ident(v_name))::regclass);
    PERFORM pg_catalog.set_config('lock_timeout', '1000', true);
    EXECUTE pg_catalog.format('ALTER TABLE :TS.tenant_secret_audit ATTACH PARTITION :TS.%I FOR VALUES FROM (%L) TO (%L)',
      v_name, v_from, v_to);
    PERFORM pg_catalog.set_config('lock_timeout', v_lock, true);
    EXECUTE pg_catalog.format('COMMENT ON TABLE :TS.%I IS %L', v_name,
      'tenant-secrets: audit records sealed on ' || p_day::text || ' (UTC).');
  EXCEPTION WHEN lock_not_available OR duplicate_table THEN
    RETURN pg_catalog.to_regclass(':TS.' || pg_catalog.quote_ident(v_name)) IS NOT NULL;
  END;
  RETURN true;
END
$$;

-- Seals up to p_limit committed pending records at time p_now, oldest first. The caller holds the
-- sealer's lock. Every read here is by index (enable_seqscan off): the pending partition through its
-- id index (a scan of the partition would read every page it ever grew to, live records or not), the
-- heads by their primary key, never a scan of all of them (27 MB over 100,000 chains); no JIT (the
-- disabled scans' costs would trigger it, and compiling takes longer than the pass).
-- Records of one chain are chained in the order they were appended (id). A chain sealed for the first
-- time gets an 'audit.chain_started' record on the system chain, sealed in the same pass as the
-- chain's first records, so that a full verification notices a tenant chain removed entirely
-- (records, head and checkpoint) from the moment any of its records is sealed.
CREATE FUNCTION :TS._ts_audit_seal_batch(p_limit integer, p_now timestamptz) RETURNS integer
LANGUAGE plpgsql VOLATILE SET enable_seqscan = off SET jit = off AS $$
DECLARE
  r record;
  v_now timestamptz;
  v_chain text;
  v_seq bigint;
  v_hash bytea;
  v_ctids tid[];
  v_ids bigint[];
  v_chains text[];
  v_digests bytea[];
  s_ctids tid[];
  s_ids bigint[];
  s_chains text[];
  s_digests bytea[];
  v_lids tid[] := '{}';  -- pending rows by position: ids order them, but need not be unique
  v_seqs bigint[] := '{}';
  v_hashes bytea[] := '{}';
  v_ldigests bytea[] := '{}';
  v_head_chains text[] := '{}';
  v_head_seqs bigint[] := '{}';
  v_head_hashes bytea[] := '{}';
  v_n integer;
BEGIN
  -- Sealing days only move forward, so every chain's records are sealed in day order and dropping
  -- the oldest day partitions removes a prefix of every chain.
  SELECT GREATEST(p_now, COALESCE(s.last_sealed_at, p_now)) INTO v_now FROM :TS.tenant_secret_audit_sealer s WHERE s.id = 1;
  IF NOT :TS._ts_audit_partition((v_now AT TIME ZONE 'UTC')::date) THEN
    RETURN 0;
  END IF;
  -- Records appended since release 0.3 carry no digest yet: it is computed here, set-based.
  SELECT pg_catalog.array_agg(b.ctid), pg_catalog.array_agg(b.id), pg_catalog.array_agg(b.chain_id),
         pg_catalog.array_agg(COALESCE(b.digest,
           :TS._ts_audit_digest(b.chain_id, b.occurred_at, b.tenant_id, b.db_role, b.actor, b.action, b.key_name, b.version,
                                b.outcome, b.error_code, b.request_id, b.context, b.details)))
    INTO v_ctids, v_ids, v_chains, v_digests
    FROM (SELECT p.* , p.ctid FROM :TS.tenant_secret_audit_pending p ORDER BY p.id LIMIT p_limit) b;
  IF v_ctids IS NULL THEN
    RETURN 0;
  END IF;
  -- Registrations of the chains that have no head yet, appended and sealed with this batch.
  WITH started AS (
    INSERT INTO :TS.tenant_secret_audit_pending
      (chain_id, occurred_at, tenant_id, db_role, actor, action, key_name, version, outcome, error_code,
       request_id, context, details, digest, sealed_at)
    SELECT '', v_now, NULL, session_user, 'tenant-secrets:sealer', 'audit.chain_started', NULL, NULL, 'success', NULL,
           NULL, NULL, pg_catalog.jsonb_build_object('chain_id', c.id),
           :TS._ts_audit_digest('', v_now, NULL, session_user, 'tenant-secrets:sealer', 'audit.chain_started', NULL, NULL,
                                'success', NULL, NULL, NULL, pg_catalog.jsonb_build_object('chain_id', c.id)),
           'infinity'
      FROM (SELECT DISTINCT u.id FROM pg_catalog.unnest(v_chains) AS u(id)) c
     WHERE c.id <> '' AND NOT EXISTS (SELECT 1 FROM :TS.tenant_secret_audit_heads h WHERE h.chain_id = c.id)
     ORDER BY c.id
    RETURNING ctid, id, chain_id, digest)
  SELECT pg_catalog.array_agg(st.ctid), pg_catalog.array_agg(st.id), pg_catalog.array_agg(st.chain_id), pg_catalog.array_agg(st.digest)
    INTO s_ctids, s_ids, s_chains, s_digests
    FROM started st;
  IF s_ctids IS NOT NULL THEN
    v_ctids := v_ctids || s_ctids;
    v_ids := v_ids || s_ids;
    v_chains := v_chains || s_chains;
    v_digests := v_digests || s_digests;
  END IF;
  v_n := pg_catalog.cardinality(v_ids);
  -- Each record with its chain's head as it stands (joined once, not looked up per chain: with many
  -- tenants, most records of a batch are on a chain of their own).
  FOR r IN
    SELECT u.ctid, u.id, u.chain_id, u.digest, h.seq AS head_seq, h.hash AS head_hash
      FROM ROWS FROM (pg_catalog.unnest(v_ctids), pg_catalog.unnest(v_ids), pg_catalog.unnest(v_chains), pg_catalog.unnest(v_digests))
           AS u(ctid, id, chain_id, digest)
      LEFT JOIN :TS.tenant_secret_audit_heads h ON h.chain_id = u.chain_id
     ORDER BY u.chain_id, u.id, u.ctid
  LOOP
    IF v_chain IS DISTINCT FROM r.chain_id THEN
      IF v_chain IS NOT NULL THEN
        v_head_chains := v_head_chains || v_chain;
        v_head_seqs := v_head_seqs || v_seq;
        v_head_hashes := v_head_hashes || v_hash;
      END IF;
      v_chain := r.chain_id;
      v_seq := COALESCE(r.head_seq, 0);
      v_hash := COALESCE(r.head_hash, '\x0000000000000000000000000000000000000000000000000000000000000000'::bytea);
    END IF;
    v_seq := v_seq + 1;
    v_hash := :TS._ts_audit_link(v_hash, v_chain, v_seq, r.digest);
    v_lids := v_lids || r.ctid;
    v_seqs := v_seqs || v_seq;
    v_hashes := v_hashes || v_hash;
    v_ldigests := v_ldigests || r.digest;
  END LOOP;
  v_head_chains := v_head_chains || v_chain;
  v_head_seqs := v_head_seqs || v_seq;
  v_head_hashes := v_head_hashes || v_hash;

  WITH moved AS (
    DELETE FROM :TS.tenant_secret_audit_pending p WHERE p.ctid = ANY (v_ctids) RETURNING p.ctid AS at_ctid, p.*)
  INSERT INTO :TS.tenant_secret_audit
    (id, chain_id, seq, occurred_at, tenant_id, db_role, actor, action, key_name, version, outcome, error_code,
     request_id, context, details, prev_hash, hash, digest, sealed_at)
  SELECT m.id, m.chain_id, u.seq, m.occurred_at, m.tenant_id, m.db_role, m.actor, m.action, m.key_name, m.version,
         m.outcome, m.error_code, m.request_id, m.context, m.details, NULL, u.hash, u.digest, v_now
    FROM moved m JOIN ROWS FROM (pg_catalog.unnest(v_lids), pg_catalog.unnest(v_seqs), pg_catalog.unnest(v_hashes), pg_catalog.unnest(v_ldigests))
                      AS u(at_ctid, seq, hash, digest) ON u.at_ctid = m.at_ctid;

  INSERT INTO :TS.tenant_secret_audit_heads AS h (chain_id, seq, hash)
  SELECT * FROM ROWS FROM (pg_catalog.unnest(v_head_chains), pg_catalog.unnest(v_head_seqs), pg_catalog.unnest(v_head_hashes))
  ON CONFLICT (chain_id) DO UPDATE SET seq = EXCLUDED.seq, hash = EXCLUDED.hash;

  UPDATE :TS.tenant_secret_audit_sealer s
     SET last_sealed_at = v_now, sealed_total = s.sealed_total + v_n, passes = s.passes + 1
   WHERE s.id = 1;
  RETURN v_n;
END
$$;
