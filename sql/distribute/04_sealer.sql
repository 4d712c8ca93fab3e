-- Distribution step 4: the audit sealer on a distributed installation. The sealer runs on the
-- coordinator (it touches every chain); each worker chains the pending records of the shard groups it
-- holds, with this release's own batch function on its own shards. Placeholders: :TS, :TS_NAME.
--
-- A pass: (1) one sealer at a time (the row lock on the sealer's reference-table row); (2) chains
-- sealed for the first time get their 'audit.chain_started' record on the system chain (appended
-- here, sealed with them in step 3, once: a registration already pending is not repeated); (3) every
-- worker seals its shard groups' pending records (run_command_on_workers: each worker's batch commits
-- on its own, so a failed worker leaves its records pending for the next pass, and nothing sealed
-- elsewhere is lost); (4) the sealer's state; (5) tomorrow's partition created ahead (a partition of
-- a distributed table cannot be created while workers seal into it in the same pass; a day whose
-- partition is missing is created first and sealed in the next pass).

-- Seals the shard groups of this node (run on every worker by the sealer). Each group is sealed at
-- this node's time, taken just before its batch, as one server seals at the time it takes after the
-- sealer's lock: a record is never sealed before it occurred (a query by time relies on it), though
-- it may have been committed after the coordinator's pass began (the registrations and the
-- connection to this node take that long). p_now, the coordinator's time, is the floor, and stays
-- the time when this node's clock is already on the next UTC day (whose partition the pass may not
-- have yet).
CREATE OR REPLACE FUNCTION :TS._ts_citus_seal_local(p_limit integer, p_now timestamptz) RETURNS integer
LANGUAGE plpgsql VOLATILE SET search_path = '' AS $$
DECLARE
  v_n integer := 0;
  v_one integer;
  v_at timestamptz;
  r record;
BEGIN
  FOR r IN SELECT d.shardid FROM pg_catalog.pg_dist_shard d JOIN pg_catalog.pg_dist_placement pl ON pl.shardid = d.shardid
            WHERE d.logicalrelid = ':TS.tenant_secrets'::pg_catalog.regclass
              AND pl.groupid = (SELECT g.groupid FROM pg_catalog.pg_dist_local_group g)
            ORDER BY d.shardid LOOP
    PERFORM :TS._ts_citus_instantiate(r.shardid);
    v_at := GREATEST(p_now, pg_catalog.clock_timestamp());
    IF (v_at AT TIME ZONE 'UTC')::date <> (p_now AT TIME ZONE 'UTC')::date THEN
      v_at := p_now;
    END IF;
    EXECUTE pg_catalog.format('SELECT %I._ts_audit_seal_batch($1, $2)', '_ts_s' || r.shardid) INTO v_one USING p_limit, v_at;
    v_n := v_n + COALESCE(v_one, 0);
  END LOOP;
  RETURN v_n;
END
$$;

-- Appends the 'audit.chain_started' records of chains with pending records and no head yet, once.
CREATE OR REPLACE FUNCTION :TS._ts_citus_register_chains(p_now timestamptz) RETURNS integer
LANGUAGE plpgsql VOLATILE SET search_path = '' AS $$
DECLARE
  v_new text[];
  v_pending text[];
  v_n integer := 0;
  r record;
BEGIN
  SELECT pg_catalog.array_agg(DISTINCT p.chain_id) INTO v_new FROM :TS.tenant_secret_audit_pending p
   WHERE p.chain_id <> '' AND NOT EXISTS (SELECT 1 FROM :TS.tenant_secret_audit_heads h WHERE h.chain_id = p.chain_id);
  IF v_new IS NOT NULL THEN
    SELECT pg_catalog.array_agg(p.details->>'chain_id') INTO v_pending FROM :TS.tenant_secret_audit_pending p
     WHERE p.chain_id = '' AND p.action = 'audit.chain_started';
    FOR r IN SELECT c.id FROM pg_catalog.unnest(v_new) AS c(id)
              WHERE c.id <> ALL (COALESCE(v_pending, '{}'::text[])) ORDER BY c.id LOOP
      v_n := v_n + 1;
      INSERT INTO :TS.tenant_secret_audit_pending
        (chain_id, occurred_at, tenant_id, db_role, actor, action, key_name, version, outcome, error_code,
         request_id, context, details, digest, sealed_at)
      VALUES ('', p_now, NULL, session_user, 'tenant-secrets:sealer', 'audit.chain_started', NULL, NULL, 'success', NULL,
              NULL, NULL, pg_catalog.jsonb_build_object('chain_id', r.id),
              :TS._ts_audit_digest('', p_now, NULL, session_user, 'tenant-secrets:sealer', 'audit.chain_started', NULL, NULL,
                                   'success', NULL, NULL, NULL, pg_catalog.jsonb_build_object('chain_id', r.id)),
              'infinity');
    END LOOP;
  END IF;
  RETURN v_n;
END
$$;

CREATE OR REPLACE FUNCTION :TS._ts_citus_seal(p_limit integer, p_now timestamptz) RETURNS integer
LANGUAGE plpgsql VOLATILE SET search_path = '' AS $$
DECLARE
  v_day date;
  v_n integer := 0;
  r record;
BEGIN
  PERFORM pg_catalog.set_config('citus.enable_unsafe_triggers', 'on', true);
  SELECT (GREATEST(p_now, COALESCE(s.last_sealed_at, p_now)) AT TIME ZONE 'UTC')::date INTO v_day
    FROM :TS.tenant_secret_audit_sealer s WHERE s.id = 1;
  IF pg_catalog.to_regclass(':TS.' || pg_catalog.quote_ident('tenant_secret_audit_p' || pg_catalog.to_char(v_day, 'YYYYMMDD'))) IS NULL THEN
    PERFORM :TS._ts_audit_partition(v_day);
    RETURN 0;
  END IF;
  -- Registrations first, committed on a connection of their own: the workers see them.
  FOR r IN SELECT c.success, c.result FROM pg_catalog.run_command_on_coordinator(
             pg_catalog.format('SELECT %s._ts_citus_register_chains(%L)', ':TS', p_now)) c LOOP
    IF NOT r.success THEN
      RAISE EXCEPTION 'tenant-secrets: new audit chains could not be registered: %', pg_catalog.left(r.result, 200)
        USING ERRCODE = '58000';
    END IF;
  END LOOP;
  FOR r IN SELECT w.success, w.result FROM pg_catalog.run_command_on_workers(
             pg_catalog.format('SELECT %s._ts_citus_seal_local(%s, %L)', ':TS', p_limit, p_now)) w LOOP
    IF NOT r.success THEN
      RAISE EXCEPTION 'tenant-secrets: a worker could not seal its audit records: %', pg_catalog.left(r.result, 200)
        USING ERRCODE = '58000';
    END IF;
    v_n := v_n + r.result::integer;
  END LOOP;
  RETURN v_n;
END
$$;

CREATE OR REPLACE FUNCTION :TS.tenant_secret_audit_seal(p_limit integer DEFAULT 10000, p_wait boolean DEFAULT false)
RETURNS TABLE (sealed integer, pending bigint, oldest_pending timestamptz, busy boolean)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = '' AS $$
#variable_conflict use_column
DECLARE
  v_n integer;
  v_limit integer := LEAST(GREATEST(COALESCE(p_limit, 10000), 1), 100000);
  v_now timestamptz;
  v_last timestamptz;
  v_tomorrow date;
BEGIN
  PERFORM :TS._ts_guard(true);
  IF NOT :TS._ts_sealer_lock(COALESCE(p_wait, false)) THEN
    RETURN QUERY SELECT 0, NULL::bigint, NULL::timestamptz, true;
    RETURN;
  END IF;
  -- The pass's time once it holds the lock (it may have waited for another sealer meanwhile).
  v_now := pg_catalog.clock_timestamp();
  SELECT s.last_sealed_at INTO v_last FROM :TS.tenant_secret_audit_sealer s WHERE s.id = 1;
  v_now := GREATEST(v_now, COALESCE(v_last, v_now));
  v_n := :TS._ts_citus_seal(v_limit, v_now);
  UPDATE :TS.tenant_secret_audit_sealer s
     SET last_attempt_at = v_now, last_error = NULL, consecutive_failures = 0, batch_limit = v_limit,
         last_sealed_at = CASE WHEN v_n > 0 THEN v_now ELSE s.last_sealed_at END,
         sealed_total = s.sealed_total + v_n, passes = s.passes + CASE WHEN v_n > 0 THEN 1 ELSE 0 END
   WHERE s.id = 1;
  v_tomorrow := (v_now AT TIME ZONE 'UTC')::date + 1;
  IF pg_catalog.to_regclass(':TS.' || pg_catalog.quote_ident('tenant_secret_audit_p' || pg_catalog.to_char(v_tomorrow, 'YYYYMMDD'))) IS NULL THEN
    PERFORM pg_catalog.set_config('citus.enable_unsafe_triggers', 'on', true);
    PERFORM :TS._ts_audit_partition(v_tomorrow);
  END IF;
  RETURN QUERY SELECT v_n, pg_catalog.count(*), pg_catalog.min(p.occurred_at), false
                 FROM :TS.tenant_secret_audit_pending p;
END
$$;

CREATE OR REPLACE FUNCTION :TS.tenant_secret_audit_seal_failed(p_error text, p_batch_limit integer)
RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = '' AS $$
DECLARE
  v_now timestamptz := pg_catalog.clock_timestamp();
  v_limit integer;
BEGIN
  PERFORM :TS._ts_guard(true);
  IF p_error IS NULL OR pg_catalog.octet_length(p_error) > 64 OR p_error !~ '^[A-Za-z0-9_]*$' THEN
    RAISE EXCEPTION 'tenant-secrets: invalid sealer error code' USING ERRCODE = 'TS400';
  END IF;
  SELECT LEAST(GREATEST(COALESCE(p_batch_limit, s.batch_limit), 1), 100000) INTO v_limit
    FROM :TS.tenant_secret_audit_sealer s WHERE s.id = 1;
  UPDATE :TS.tenant_secret_audit_sealer s
     SET last_attempt_at = v_now, last_error = p_error, consecutive_failures = s.consecutive_failures + 1, batch_limit = v_limit
   WHERE s.id = 1;
END
$$;

DO $ts_distribute_sealer$
DECLARE
  v_today date := (pg_catalog.now() AT TIME ZONE 'UTC')::date;
BEGIN
  PERFORM pg_catalog.create_distributed_function(':TS._ts_citus_seal_local(integer, timestamptz)'::pg_catalog.regprocedure);
  -- Today's and tomorrow's partitions, so that the first pass seals.
  PERFORM pg_catalog.set_config('citus.enable_unsafe_triggers', 'on', true);
  PERFORM :TS._ts_audit_partition(v_today);
  PERFORM :TS._ts_audit_partition(v_today + 1);
END
$ts_distribute_sealer$;
