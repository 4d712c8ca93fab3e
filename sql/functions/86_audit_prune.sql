-- tenant-secrets functions: audit retention.

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
  -- The day partitions' chains (one row each, in chain order), kept apart from the rows above.
  v_dc text[] := '{}';
  v_dn bigint[] := '{}';
  v_ds bigint[] := '{}';
  v_dh bytea[] := '{}';
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
  -- Pruning and sealing both move chain heads: one at a time (the sealer's row lock, bounded).
  PERFORM :TS._ts_sealer_lock(true);

  IF p_chain_id IS NOT NULL THEN
    FOR r IN SELECT * FROM :TS._ts_audit_prune_rows(p_chain_id, p_older_than, false) LOOP
      v_c := v_c || r.chain_id; v_n := v_n || r.pruned; v_s := v_s || r.anchor_seq; v_h := v_h || r.anchor_hash;
    END LOOP;
  ELSE
    -- Records of release 0.1 first: they precede every sealed partition in every chain. (Without
    -- any, no walk over every chain's head.)
    IF EXISTS (SELECT 1 FROM :TS.tenant_secret_audit_v1 a LIMIT 1) THEN
      FOR r IN SELECT * FROM :TS._ts_audit_prune_rows(NULL, p_older_than, true) LOOP
        v_c := v_c || r.chain_id; v_n := v_n || r.pruned; v_s := v_s || r.anchor_seq; v_h := v_h || r.anchor_hash;
      END LOOP;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM :TS.tenant_secret_audit_v1 a LIMIT 1) THEN
      v_parts_list := ARRAY(
        SELECT c.oid::regclass
          FROM pg_catalog.pg_inherits i JOIN pg_catalog.pg_class c ON c.oid = i.inhrelid
         WHERE i.inhparent = ':TS.tenant_secret_audit'::regclass AND c.relname ~ '^tenant_secret_audit_p[0-9]{8}$'
           AND ((pg_catalog.to_date(pg_catalog.substring(c.relname, '([0-9]{8})$'), 'YYYYMMDD') + 1)::timestamp AT TIME ZONE 'UTC') <= p_older_than
         ORDER BY c.relname);
      IF pg_catalog.cardinality(v_parts_list) > 0 THEN
        BEGIN
          -- One row per chain, in chain order: collected in one statement, not row by row.
          SELECT COALESCE(pg_catalog.array_agg(d.chain_id), '{}'), COALESCE(pg_catalog.array_agg(d.pruned), '{}'),
                 COALESCE(pg_catalog.array_agg(d.anchor_seq), '{}'), COALESCE(pg_catalog.array_agg(d.anchor_hash), '{}')
            INTO v_dc, v_dn, v_ds, v_dh
            FROM :TS._ts_audit_drop_days(v_parts_list, GREATEST(COALESCE(p_lock_timeout_ms, 2000), 1)) d;
          v_parts := pg_catalog.cardinality(v_parts_list);
        EXCEPTION WHEN lock_not_available THEN
          -- Nothing of the days was changed (anchors included): a later run drops them.
          v_busy := true;
        END;
      END IF;
    END IF;
  END IF;
  -- One row per chain that lost records: the records it lost, and its last (highest) new anchor.
  IF pg_catalog.cardinality(v_c) = 0 THEN
    -- Only whole days dropped (the usual case): already one row per chain, in chain order.
    RETURN QUERY
      SELECT 'ok'::text, u.c, u.n, u.s, u.h
        FROM ROWS FROM (pg_catalog.unnest(v_dc), pg_catalog.unnest(v_dn), pg_catalog.unnest(v_ds), pg_catalog.unnest(v_dh)) AS u(c, n, s, h);
    SELECT pg_catalog.cardinality(v_dc), COALESCE((SELECT pg_catalog.sum(n) FROM pg_catalog.unnest(v_dn) n), 0)::bigint
      INTO v_chains, v_total;
  ELSE
    v_c := v_c || v_dc; v_n := v_n || v_dn; v_s := v_s || v_ds; v_h := v_h || v_dh;
    RETURN QUERY
      SELECT 'ok'::text, u.c, pg_catalog.sum(u.n)::bigint, (pg_catalog.array_agg(u.s ORDER BY u.s DESC))[1],
             (pg_catalog.array_agg(u.h ORDER BY u.s DESC))[1]
        FROM ROWS FROM (pg_catalog.unnest(v_c), pg_catalog.unnest(v_n), pg_catalog.unnest(v_s), pg_catalog.unnest(v_h)) AS u(c, n, s, h)
       GROUP BY u.c ORDER BY u.c;
    SELECT pg_catalog.count(DISTINCT u.c)::integer, COALESCE(pg_catalog.sum(u.n), 0)::bigint INTO v_chains, v_total
      FROM ROWS FROM (pg_catalog.unnest(v_c), pg_catalog.unnest(v_n)) AS u(c, n);
  END IF;
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


COMMENT ON FUNCTION :TS.tenant_secret_audit_prune(timestamptz, text, jsonb, integer) IS
  'tenant-secrets: drop audit records older than a cutoff (whole day partitions, or one chain''s records) and move anchors in the same transaction.';
