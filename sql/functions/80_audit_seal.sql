-- tenant-secrets functions: the audit sealer's entry point and its health.
--
-- One sealer at a time, by a row lock on tenant_secret_audit_sealer (a table only the owner can
-- reach): no lock any other login can take governs sealing (an advisory lock could be taken by any
-- role that can connect, and held for ever). A waiting call is bounded by lock_timeout.

-- Takes the sealer's lock: waits (bounded by lock_timeout, 30 s when the session has none) when
-- p_wait, else gives up at once. Returns whether it holds the lock.
--
-- Release 0.2 serialised its sealer, its full seal and its retention on an advisory lock instead of
-- this row. A 0.2 pass that was running when the upgrade to this release committed finishes with 0.2's
-- code (one that took its lock, then waited for a table the upgrade held, goes on once the upgrade
-- commits), and a sealer of this release beside it would chain the same records a second time. So for
-- an hour after an upgrade from 0.2, a sealer takes that advisory lock as well, first, as 0.2's code
-- did: the two never overlap. Any login can take an advisory lock; one that holds it in that hour
-- stalls sealing (records wait, nothing is lost, status() shows the stall) until it lets go or the
-- hour ends. Release 0.1 chained at append time under each head's row lock, which this sealer's
-- head updates wait for.
CREATE FUNCTION :TS._ts_sealer_lock(p_wait boolean) RETURNS boolean
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
  IF p_wait AND pg_catalog.current_setting('lock_timeout') = '0' THEN
    PERFORM pg_catalog.set_config('lock_timeout', '30s', true);
  END IF;
  IF EXISTS (SELECT 1 FROM :TS.tenant_secret_migrations m
              WHERE m.id = 7 AND m.applied_at > pg_catalog.now() - interval '1 hour'
                AND EXISTS (SELECT 1 FROM :TS.tenant_secret_migrations e WHERE e.id = 6 AND e.applied_at < m.applied_at)) THEN
    IF p_wait THEN
      PERFORM pg_catalog.pg_advisory_xact_lock(1951622706, pg_catalog.hashtext(':TS'));
    ELSIF NOT pg_catalog.pg_try_advisory_xact_lock(1951622706, pg_catalog.hashtext(':TS')) THEN
      RETURN false;
    END IF;
  END IF;
  IF p_wait THEN
    PERFORM 1 FROM :TS.tenant_secret_audit_sealer s WHERE s.id = 1 FOR UPDATE;
    RETURN true;
  END IF;
  PERFORM 1 FROM :TS.tenant_secret_audit_sealer s WHERE s.id = 1 FOR UPDATE SKIP LOCKED;
  RETURN FOUND;
END
$$;

-- Seals committed pending records, up to p_limit per call (1-100000). With p_wait false (the
-- library's background sealer) it gives up at once when another sealer is running (busy = true);
-- with p_wait true it waits for it (bounded). Returns what it sealed, what is still pending and
-- since when. Callable by application roles: sealing only chains what operations wrote. A caller
-- that needs everything sealed calls it until pending is 0; each call is one bounded transaction.
CREATE FUNCTION :TS.tenant_secret_audit_seal(p_limit integer DEFAULT 10000, p_wait boolean DEFAULT false)
RETURNS TABLE (sealed integer, pending bigint, oldest_pending timestamptz, busy boolean)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = '' SET enable_seqscan = off SET jit = off AS $$
#variable_conflict use_column
DECLARE
  v_n integer;
  v_limit integer := LEAST(GREATEST(COALESCE(p_limit, 10000), 1), 100000);
BEGIN
  PERFORM :TS._ts_guard(true);
  IF NOT :TS._ts_sealer_lock(COALESCE(p_wait, false)) THEN
    RETURN QUERY SELECT 0, NULL::bigint, NULL::timestamptz, true;
    RETURN;
  END IF;
  v_n := :TS._ts_audit_seal_batch(v_limit, pg_catalog.clock_timestamp());
  UPDATE :TS.tenant_secret_audit_sealer s
     SET last_attempt_at = pg_catalog.clock_timestamp(), last_error = NULL, consecutive_failures = 0, batch_limit = v_limit
   WHERE s.id = 1;
  RETURN QUERY SELECT v_n, pg_catalog.count(*), pg_catalog.min(p.occurred_at), false
                 FROM :TS.tenant_secret_audit_pending p;
END
$$;

-- Records a failed sealing pass (its own transaction rolled back): the library calls it, so that
-- status() can tell at once that sealing fails, and why (an error code, never server text).
CREATE FUNCTION :TS.tenant_secret_audit_seal_failed(p_error text, p_batch_limit integer)
RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = '' AS $$
BEGIN
  PERFORM :TS._ts_guard(true);
  IF p_error IS NULL OR pg_catalog.octet_length(p_error) > 64 OR p_error !~ '^[A-Za-z0-9_]*$' THEN
    RAISE EXCEPTION 'tenant-secrets: invalid sealer error code' USING ERRCODE = 'TS400';
  END IF;
  -- The sealer's row is what a stuck sealer (or any session of the owner's) holds: never wait for it
  -- here. When it is held, the failure is recorded beside it, and status() reports the sealer as
  -- stalled at once.
  PERFORM 1 FROM :TS.tenant_secret_audit_sealer s WHERE s.id = 1 FOR UPDATE SKIP LOCKED;
  IF NOT FOUND THEN
    INSERT INTO :TS.tenant_secret_schema_state AS st (key, value, updated_at)
    VALUES ('sealer_blocked', pg_catalog.jsonb_build_object('error', p_error), pg_catalog.clock_timestamp())
    ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, updated_at = EXCLUDED.updated_at;
    RETURN;
  END IF;
  UPDATE :TS.tenant_secret_audit_sealer s
     SET last_attempt_at = pg_catalog.clock_timestamp(), last_error = p_error,
         consecutive_failures = s.consecutive_failures + 1,
         batch_limit = LEAST(GREATEST(COALESCE(p_batch_limit, s.batch_limit), 1), 100000)
   WHERE s.id = 1;
END
$$;

-- The sealer's state for status(), by the database's clock: whether a sealer holds the lock now,
-- when it last sealed and last tried, its last error and consecutive failures, the batch size it
-- uses, and the backlog (count, age of the oldest pending record in seconds). Reads only (it works on
-- a read-only server): a held row lock shows as the row's xmax naming a transaction still running.
CREATE FUNCTION :TS._ts_sealer_state() RETURNS jsonb
LANGUAGE sql STABLE SET enable_seqscan = off SET jit = off AS $$
  SELECT pg_catalog.jsonb_build_object(
    'lock_held', EXISTS (SELECT 1 FROM pg_catalog.pg_locks l
                          WHERE l.locktype = 'transactionid' AND l.granted AND l.mode = 'ExclusiveLock'
                            AND l.transactionid = s.xmax AND s.xmax <> '0'::xid),
    'last_sealed_at', s.last_sealed_at, 'last_attempt_at', s.last_attempt_at,
    'last_error', s.last_error, 'consecutive_failures', s.consecutive_failures, 'batch_limit', s.batch_limit,
    'sealed_total', s.sealed_total,
    'pending', (SELECT pg_catalog.count(*) FROM :TS.tenant_secret_audit_pending p),
    'oldest_pending_age_seconds', (SELECT EXTRACT(EPOCH FROM pg_catalog.clock_timestamp() - pg_catalog.min(p.occurred_at))
                                     FROM :TS.tenant_secret_audit_pending p),
    'since_last_seal_seconds', EXTRACT(EPOCH FROM pg_catalog.clock_timestamp() - s.last_sealed_at),
    -- A sealing pass that gave up waiting for the sealer's row after the last successful pass.
    'blocked_at', (SELECT st.updated_at FROM :TS.tenant_secret_schema_state st
                    WHERE st.key = 'sealer_blocked' AND st.updated_at > COALESCE(s.last_sealed_at, '-infinity')
                      AND st.updated_at > COALESCE(s.last_attempt_at, '-infinity')),
    'now', pg_catalog.clock_timestamp())
    FROM :TS.tenant_secret_audit_sealer s WHERE s.id = 1
$$;

COMMENT ON FUNCTION :TS.tenant_secret_audit_seal(integer, boolean) IS
  'tenant-secrets: chain committed pending audit records (a batch); run by the library, or periodically when SQL callers write.';
COMMENT ON FUNCTION :TS.tenant_secret_audit_seal_failed(text, integer) IS
  'tenant-secrets: record a failed sealing pass (error code only), for status().';
