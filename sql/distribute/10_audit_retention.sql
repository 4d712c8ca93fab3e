-- Distribution step 10: storing checkpoints and pruning the trail on a distributed installation. Both
-- run on the coordinator, in the caller's transaction, as statements Citus routes to the worker
-- holding the chains (each planned with its values, through EXECUTE): the checkpoints of one shard
-- group per statement, a chain's records per statement, and the day partitions as one distributed
-- statement per step (every shard group at once: joins on the chain id, which Citus runs on each
-- group's worker). Every write is part of the coordinator's distributed transaction, which Citus
-- commits on every worker it wrote to with two-phase commit: the records removed, the anchors
-- moved, the checkpoints replaced and the audit anchor appended commit together or not at all, as on
-- one server. Placeholders: :TS.

-- Stores checkpoints (the same contract as on one server): the chains grouped by shard group, in
-- shard order; in each group the heads are locked (FOR SHARE, in chain order: a concurrent prune of
-- these chains holds them) and the one-server statement runs on that group alone.
CREATE OR REPLACE FUNCTION :TS.tenant_secret_audit_checkpoint_add(
  p_chains text[], p_seqs bigint[], p_hashes bytea[], p_master_key_id text, p_macs bytea[])
RETURNS integer
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = '' AS $$
DECLARE
  v_n integer := 0;
  v_one integer;
  r record;
BEGIN
  PERFORM :TS._ts_guard(true);
  PERFORM :TS._ts_require_operator();
  IF NOT :TS._ts_master_key_id_valid(p_master_key_id) OR pg_catalog.cardinality(p_chains) > 100000
     OR pg_catalog.cardinality(p_chains) IS DISTINCT FROM pg_catalog.cardinality(p_seqs)
     OR pg_catalog.cardinality(p_chains) IS DISTINCT FROM pg_catalog.cardinality(p_hashes)
     OR pg_catalog.cardinality(p_chains) IS DISTINCT FROM pg_catalog.cardinality(p_macs) THEN
    RAISE EXCEPTION 'tenant-secrets: malformed checkpoint batch' USING ERRCODE = 'TS400';
  END IF;
  FOR r IN SELECT g.shard, pg_catalog.array_agg(g.chain_id ORDER BY g.chain_id, g.ord) AS chains,
                  pg_catalog.array_agg(g.seq ORDER BY g.chain_id, g.ord) AS seqs,
                  pg_catalog.array_agg(g.hash ORDER BY g.chain_id, g.ord) AS hashes,
                  pg_catalog.array_agg(g.mac ORDER BY g.chain_id, g.ord) AS macs
             FROM (SELECT u.chain_id, u.seq, u.hash, u.mac, u.ord,
                          pg_catalog.get_shard_id_for_distribution_column(':TS.tenant_secret_audit_heads', u.chain_id) AS shard
                     FROM ROWS FROM (pg_catalog.unnest(p_chains), pg_catalog.unnest(p_seqs), pg_catalog.unnest(p_hashes),
                                     pg_catalog.unnest(p_macs)) WITH ORDINALITY AS u(chain_id, seq, hash, mac, ord)
                    WHERE u.chain_id IS NOT NULL) g
            GROUP BY g.shard ORDER BY g.shard LOOP
    -- Wait for a concurrent prune of these chains (it holds their heads FOR UPDATE).
    EXECUTE 'SELECT 1 FROM :TS.tenant_secret_audit_heads h WHERE h.chain_id = ANY ($1) ORDER BY h.chain_id FOR SHARE'
      USING r.chains;
    EXECUTE
      'WITH c AS (
         SELECT u.chain_id, u.seq, u.hash, u.mac
           FROM ROWS FROM (pg_catalog.unnest($1::text[]), pg_catalog.unnest($2::bigint[]), pg_catalog.unnest($3::bytea[]),
                           pg_catalog.unnest($5::bytea[])) AS u(chain_id, seq, hash, mac)
           JOIN :TS.tenant_secret_audit_heads h ON h.chain_id = u.chain_id
          WHERE h.chain_id = ANY ($1) AND pg_catalog.octet_length(u.hash) = 32 AND pg_catalog.octet_length(u.mac) = 32 AND u.seq > 0
            AND ((u.seq = h.seq AND u.hash = h.hash) OR (u.seq = h.anchor_seq AND u.hash = h.anchor_hash))),
       gone AS (
         DELETE FROM :TS.tenant_secret_audit_checkpoints k USING c
          WHERE k.chain_id = ANY ($1) AND k.chain_id = c.chain_id AND k.seq < c.seq RETURNING 1),
       ins AS (
         INSERT INTO :TS.tenant_secret_audit_checkpoints AS k (chain_id, seq, hash, master_key_id, mac)
         SELECT c.chain_id, c.seq, c.hash, $4, c.mac FROM c
         ON CONFLICT (chain_id, seq) DO NOTHING RETURNING 1)
       SELECT pg_catalog.count(*)::integer FROM ins'
      INTO v_one USING r.chains, r.seqs, r.hashes, p_master_key_id, r.macs;
    v_n := v_n + v_one;
  END LOOP;
  RETURN v_n;
END
$$;

-- One chain's records up to the last one that occurred before p_older_than (of release 0.1 only when
-- p_v1_only) deleted, its anchor moved there, its checkpoints below the anchor deleted: the
-- one-server steps, each a statement routed to the chain's worker, its head locked first.
CREATE OR REPLACE FUNCTION :TS._ts_citus_prune_chain(p_chain text, p_older_than timestamptz, p_v1_only boolean)
RETURNS TABLE (status text, chain_id text, pruned bigint, anchor_seq bigint, anchor_hash bytea)
LANGUAGE plpgsql VOLATILE SET search_path = '' AS $$
#variable_conflict use_column
DECLARE
  v_head text;
  v_seq bigint;
  v_hash bytea;
  v_n bigint;
BEGIN
  EXECUTE 'SELECT h.chain_id FROM :TS.tenant_secret_audit_heads h WHERE h.chain_id = $1 FOR UPDATE' INTO v_head USING p_chain;
  IF v_head IS NULL THEN
    RETURN;
  END IF;
  IF p_v1_only THEN
    EXECUTE 'SELECT a.seq, a.hash FROM :TS.tenant_secret_audit_v1 a
              WHERE a.chain_id = $1 AND a.occurred_at < $2 ORDER BY a.seq DESC LIMIT 1'
      INTO v_seq, v_hash USING p_chain, p_older_than;
  ELSE
    EXECUTE 'SELECT a.seq, a.hash FROM :TS.tenant_secret_audit a
              WHERE a.chain_id = $1 AND a.occurred_at < $2 AND a.sealed_at < ''infinity'' ORDER BY a.seq DESC LIMIT 1'
      INTO v_seq, v_hash USING p_chain, p_older_than;
  END IF;
  IF v_seq IS NULL THEN
    RETURN;
  END IF;
  EXECUTE 'DELETE FROM :TS.tenant_secret_audit a WHERE a.chain_id = $1 AND a.seq <= $2 AND a.sealed_at < ''infinity'''
    USING p_chain, v_seq;
  GET DIAGNOSTICS v_n = ROW_COUNT;
  EXECUTE 'UPDATE :TS.tenant_secret_audit_heads h SET anchor_seq = $2, anchor_hash = $3 WHERE h.chain_id = $1'
    USING p_chain, v_seq, v_hash;
  EXECUTE 'DELETE FROM :TS.tenant_secret_audit_checkpoints c WHERE c.chain_id = $1 AND c.seq < $2' USING p_chain, v_seq;
  RETURN QUERY SELECT 'ok'::text, p_chain, v_n, v_seq, v_hash;
END
$$;

-- The given day partitions dropped (the one-server steps and locking): each chain's last record in
-- them found, its anchor moved there and its checkpoints below it deleted (each a distributed
-- statement joining on the chain id: every shard group on its worker), then the partitions locked in
-- short attempts and dropped (Citus drops their shards on every worker, in this transaction).
-- Raises lock_not_available when the lock was not obtained; the caller rolls the anchors back with it.
CREATE OR REPLACE FUNCTION :TS._ts_citus_drop_days(p_parts regclass[], p_lock_timeout_ms integer)
RETURNS TABLE (status text, chain_id text, pruned bigint, anchor_seq bigint, anchor_hash bytea)
LANGUAGE plpgsql VOLATILE SET search_path = '' AS $$
#variable_conflict use_column
DECLARE
  v_until timestamptz := (pg_catalog.to_date(pg_catalog.substring(p_parts[pg_catalog.cardinality(p_parts)]::text, '([0-9]{8})$'), 'YYYYMMDD') + 1)::timestamp AT TIME ZONE 'UTC';
  v_from timestamptz := '1970-01-01 00:00:00+00';
  v_lock text := pg_catalog.current_setting('lock_timeout');
  v_deadline timestamptz := pg_catalog.clock_timestamp() + pg_catalog.make_interval(secs => p_lock_timeout_ms / 1000.0);
  v_c text[];
  v_n bigint[];
  v_s bigint[];
  v_h bytea[];
  v_part regclass;
  -- Each chain's last record in those days (records sealed from 1970, after release 0.1's, to the end
  -- of the last day dropped), grouped by the chain id: computed on each shard group's worker.
  v_last text := 'SELECT a.chain_id, pg_catalog.count(*) AS n, pg_catalog.max(a.seq) AS seq,
                         (pg_catalog.array_agg(a.hash ORDER BY a.seq DESC))[1] AS hash
                    FROM :TS.tenant_secret_audit a WHERE a.sealed_at >= $1 AND a.sealed_at < $2 GROUP BY a.chain_id';
BEGIN
  EXECUTE 'SELECT pg_catalog.array_agg(t.chain_id ORDER BY t.chain_id), pg_catalog.array_agg(t.n ORDER BY t.chain_id),
                  pg_catalog.array_agg(t.seq ORDER BY t.chain_id), pg_catalog.array_agg(t.hash ORDER BY t.chain_id)
             FROM (' || v_last || ') t'
    INTO v_c, v_n, v_s, v_h USING v_from, v_until;
  EXECUTE 'UPDATE :TS.tenant_secret_audit_heads h SET anchor_seq = t.seq, anchor_hash = t.hash
             FROM (' || v_last || ') t WHERE h.chain_id = t.chain_id AND t.seq > h.anchor_seq'
    USING v_from, v_until;
  EXECUTE 'DELETE FROM :TS.tenant_secret_audit_checkpoints k USING (' || v_last || ') t
            WHERE k.chain_id = t.chain_id AND k.seq < t.seq'
    USING v_from, v_until;

  LOOP
    BEGIN
      PERFORM pg_catalog.set_config('lock_timeout',
        GREATEST(1, LEAST(25, (EXTRACT(EPOCH FROM v_deadline - pg_catalog.clock_timestamp()) * 1000)::integer))::text, true);
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
  -- The workers drop the days' shards in this transaction, and a statement a worker runs on its own
  -- shard (a verification page) is not seen by the locks above: bound the workers' waits by what is
  -- left of the deadline too. Citus sends a SET LOCAL to every node of the transaction when
  -- citus.propagate_set_commands is 'local'.
  PERFORM pg_catalog.set_config('citus.propagate_set_commands', 'local', true);
  EXECUTE pg_catalog.format('SET LOCAL lock_timeout = %L',
    GREATEST(100, (EXTRACT(EPOCH FROM v_deadline - pg_catalog.clock_timestamp()) * 1000)::integer)::text || 'ms');
  FOREACH v_part IN ARRAY p_parts LOOP
    EXECUTE pg_catalog.format('DROP TABLE %s', v_part);
  END LOOP;
  EXECUTE pg_catalog.format('SET LOCAL lock_timeout = %L', v_lock);
  RETURN QUERY SELECT 'ok'::text, u.c, u.n, u.s, u.h
                 FROM ROWS FROM (pg_catalog.unnest(v_c), pg_catalog.unnest(v_n), pg_catalog.unnest(v_s), pg_catalog.unnest(v_h)) AS u(c, n, s, h);
END
$$;

-- Prunes as on one server (the same contract, rows and 'audit.pruned' record); one chain, and the
-- records of release 0.1, chain by chain through routed statements; whole days through
-- _ts_citus_drop_days. Runs in the caller's transaction: the library stores the checkpoints at the
-- new anchors and appends the audit anchor in it, and Citus commits it on every node at once.
CREATE OR REPLACE FUNCTION :TS.tenant_secret_audit_prune(p_older_than timestamptz, p_chain_id text DEFAULT NULL,
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
  v_chain text;
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
    FOR r IN SELECT * FROM :TS._ts_citus_prune_chain(p_chain_id, p_older_than, false) LOOP
      v_c := v_c || r.chain_id; v_n := v_n || r.pruned; v_s := v_s || r.anchor_seq; v_h := v_h || r.anchor_hash;
    END LOOP;
  ELSE
    -- Records of release 0.1 first: they precede every sealed partition in every chain. (Without
    -- any, no walk over every chain's head.)
    IF EXISTS (SELECT 1 FROM :TS.tenant_secret_audit_v1 a LIMIT 1) THEN
      -- Chain by chain, in chain order (each chain's statements routed to its worker).
      FOR v_chain IN SELECT DISTINCT a.chain_id FROM :TS.tenant_secret_audit_v1 a ORDER BY a.chain_id LOOP
        FOR r IN SELECT * FROM :TS._ts_citus_prune_chain(v_chain, p_older_than, true) LOOP
          v_c := v_c || r.chain_id; v_n := v_n || r.pruned; v_s := v_s || r.anchor_seq; v_h := v_h || r.anchor_hash;
        END LOOP;
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
            FROM :TS._ts_citus_drop_days(v_parts_list, GREATEST(COALESCE(p_lock_timeout_ms, 2000), 1)) d;
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
