-- tenant-secrets functions: key management.
--   * master-key rotation: re-wrap tenants' data keys under the current master key, batch by batch
--     (tenant_secret_rewrap_keys), then one system audit record (tenant_secret_finish_master_rotation);
--   * tenant-key rotation: a new data-key version (tenant_secret_rotate_key), re-encryption of the
--     tenant's ciphertexts in batches (tenant_secret_reencrypt_batch), destruction of retired keys no
--     ciphertext references (tenant_secret_destroy_retired_keys);
--   * crypto-shredding of a tenant (tenant_secret_purge_tenant);
--   * key status (tenant_secret_key_status).
-- Audit records hold master key fingerprint ids and counts, never key material.

-- Bundle i of p_bundles, the concatenation of equally long key bundles (one per tenant).
CREATE FUNCTION :TS._ts_bundle_at(p_bundles bytea, p_i integer) RETURNS bytea
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT pg_catalog.substring(p_bundles, (p_i - 1) * (2 + 115 * pg_catalog.get_byte(p_bundles, 1)) + 1,
                              2 + 115 * pg_catalog.get_byte(p_bundles, 1))
$$;

-- Re-wraps every data key (active or retired, not destroyed) of the given tenants that is not wrapped
-- under the bundles' current master key (their first entry). p_bundles holds one key bundle per
-- tenant of p_tenants, in the same order. Only wrapped_key / master_key_id change, with a plain
-- UPDATE that does not conflict with writers; no secret row is touched. Each re-wrapped key is
-- unwrapped again and compared before the UPDATE. One audit record per key in the tenant's chain.
-- A key wrapped under a master key the bundles lack is reported ('unknown_master_key', its id).
CREATE FUNCTION :TS.tenant_secret_rewrap_keys(p_tenants text[], p_bundles bytea, p_ctx jsonb DEFAULT '{}'::jsonb)
RETURNS TABLE (tenant_id text, key_version integer, status text, from_master_key_id text)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = '' SET plan_cache_mode = force_generic_plan AS $$
#variable_conflict use_column
DECLARE
  v_n integer := pg_catalog.cardinality(p_tenants);
  v_first bytea;
  v_current text;
  v_ctx jsonb := :TS._ts_ctx_safe(p_ctx);
  r record;
  v_bundle bytea;
  v_old bytea;
  v_new bytea;
BEGIN
  PERFORM :TS._ts_guard(true);
  v_first := :TS._ts_bundle_at(p_bundles, 1);
  IF v_n IS NULL OR v_n < 1 OR v_n > 10000 OR NOT COALESCE(:TS._ts_bundle_ids_valid(v_first), false)
     OR pg_catalog.octet_length(p_bundles) <> v_n * pg_catalog.octet_length(v_first)
     OR EXISTS (SELECT 1 FROM pg_catalog.unnest(p_tenants) t(id) WHERE :TS._ts_invalid_input(t.id, NULL) IS NOT NULL) THEN
    RAISE EXCEPTION 'tenant-secrets: malformed rewrap batch' USING ERRCODE = 'TS400';
  END IF;
  v_current := :TS._ts_bundle_id(v_first, 1);
  FOR r IN
    SELECT k.tenant_id, k.version, k.master_key_id, k.wrapped_key, t.ord
      FROM :TS.tenant_secret_keys k
      JOIN pg_catalog.unnest(p_tenants) WITH ORDINALITY AS t(id, ord) ON t.id = k.tenant_id
     WHERE k.wrapped_key IS NOT NULL AND k.master_key_id <> v_current
     ORDER BY k.tenant_id, k.version
       FOR NO KEY UPDATE OF k
  LOOP
    v_bundle := :TS._ts_bundle_at(p_bundles, r.ord::integer);
    IF :TS._ts_bundle_kek_for(v_bundle, r.master_key_id) IS NULL THEN
      PERFORM :TS._ts_audit(r.tenant_id, 'tenant_key.rewrapped', NULL, r.version, 'failure', 'UNKNOWN_MASTER_KEY',
        v_ctx, pg_catalog.jsonb_build_object('from_master_key_id', r.master_key_id, 'to_master_key_id', v_current));
      RETURN QUERY SELECT r.tenant_id, r.version, 'unknown_master_key'::text, r.master_key_id;
      CONTINUE;
    END IF;
    v_old := :TS._ts_unwrap_dek(r.tenant_id, r.version, r.master_key_id, r.wrapped_key,
                                :TS._ts_bundle_kek_for(v_bundle, r.master_key_id));
    IF v_old IS NULL THEN
      PERFORM :TS._ts_audit(r.tenant_id, 'tenant_key.rewrapped', NULL, r.version, 'failure', 'INTEGRITY',
        v_ctx, pg_catalog.jsonb_build_object('from_master_key_id', r.master_key_id, 'to_master_key_id', v_current));
      RETURN QUERY SELECT r.tenant_id, r.version, 'integrity'::text, r.master_key_id;
      CONTINUE;
    END IF;
    v_new := :TS._ts_wrap_dek(r.tenant_id, r.version, v_old, v_current, :TS._ts_bundle_kek(v_bundle, 1));
    IF :TS._ts_unwrap_dek(r.tenant_id, r.version, v_current, v_new, :TS._ts_bundle_kek(v_bundle, 1)) IS DISTINCT FROM v_old THEN
      RAISE EXCEPTION 'tenant-secrets: re-wrapped data key failed verification' USING ERRCODE = 'TSINT';
    END IF;
    UPDATE :TS.tenant_secret_keys k SET wrapped_key = v_new, master_key_id = v_current,
           access_digest = :TS._ts_access_digest(:TS._ts_bundle_kek(v_bundle, 1)), dek_check = COALESCE(k.dek_check, :TS._ts_dek_check(v_old))
     WHERE k.tenant_id = r.tenant_id AND k.version = r.version;
    PERFORM :TS._ts_audit(r.tenant_id, 'tenant_key.rewrapped', NULL, r.version, 'success', NULL, v_ctx,
      pg_catalog.jsonb_build_object('from_master_key_id', r.master_key_id, 'to_master_key_id', v_current));
    RETURN QUERY SELECT r.tenant_id, r.version, 'ok'::text, r.master_key_id;
  END LOOP;
END
$$;

-- The next p_limit tenants (by id, after p_after) with a data key not wrapped under p_current_id.
-- Progress is the data itself, so a new run simply starts again.
CREATE FUNCTION :TS.tenant_secret_rewrap_pending(p_current_id text, p_after text, p_limit integer)
RETURNS SETOF text
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = '' AS $$
BEGIN
  PERFORM :TS._ts_require_operator();
  IF NOT :TS._ts_master_key_id_valid(p_current_id) THEN
    RAISE EXCEPTION 'tenant-secrets: invalid master key id' USING ERRCODE = 'TS400';
  END IF;
  RETURN QUERY
    SELECT k.tenant_id FROM :TS.tenant_secret_keys k
     WHERE k.wrapped_key IS NOT NULL AND k.master_key_id <> p_current_id AND k.tenant_id > COALESCE(p_after, '')
     GROUP BY k.tenant_id ORDER BY k.tenant_id LIMIT LEAST(GREATEST(p_limit, 1), 10000);
END
$$;

-- The system audit record closing a master-key rotation run, with what the run did and what still
-- depends on other master keys afterwards.
CREATE FUNCTION :TS.tenant_secret_finish_master_rotation(
  p_current_id text, p_rewrapped integer, p_failed integer, p_batches integer, p_ctx jsonb DEFAULT '{}'::jsonb)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = '' SET plan_cache_mode = force_generic_plan AS $$
DECLARE
  v_remaining jsonb;
  v_details jsonb;
BEGIN
  PERFORM :TS._ts_guard(true);
  PERFORM :TS._ts_require_operator();
  IF NOT :TS._ts_master_key_id_valid(p_current_id) THEN
    RAISE EXCEPTION 'tenant-secrets: invalid master key id' USING ERRCODE = 'TS400';
  END IF;
  SELECT COALESCE(pg_catalog.jsonb_object_agg(m.master_key_id, m.keys), '{}'::jsonb) INTO v_remaining
    FROM (SELECT k.master_key_id, pg_catalog.count(*) AS keys FROM :TS.tenant_secret_keys k
           WHERE k.wrapped_key IS NOT NULL AND k.master_key_id <> p_current_id GROUP BY k.master_key_id) m;
  v_details := pg_catalog.jsonb_build_object('to_master_key_id', p_current_id, 'rewrapped', p_rewrapped,
    'failed', p_failed, 'batches', p_batches, 'remaining_by_master_key', v_remaining);
  PERFORM :TS._ts_audit(NULL, 'master_key.rotated', NULL, NULL,
    CASE WHEN p_failed = 0 AND v_remaining = '{}'::jsonb THEN 'success' ELSE 'failure' END,
    CASE WHEN p_failed = 0 AND v_remaining = '{}'::jsonb THEN NULL ELSE 'INCOMPLETE' END, :TS._ts_ctx_safe(p_ctx), v_details);
  RETURN v_details;
END
$$;

-- ---------------------------------------------------------------------------------------------
-- Tenant-key rotation
-- ---------------------------------------------------------------------------------------------

-- Makes a new data-key version the tenant's active key and retires the old one. Writers whose
-- statement started before this commits may still write under the old key: the library waits for
-- every transaction open at that moment to end (tenant_secret_open_transactions) before it
-- re-encrypts and destroys the old key. When an earlier rotation is unfinished (a retired key still
-- holds key material), returns 'resumed' and creates nothing: the caller then finishes that rotation.
-- Two rotations of one tenant at once: the retiring UPDATE locks the active key row, the second
-- waits on it, then finds the row no longer active and joins the first ('resumed') instead of
-- inserting a second key version of the same number.
CREATE FUNCTION :TS.tenant_secret_rotate_key(p_tenant_id text, p_bundle bytea, p_ctx jsonb DEFAULT '{}'::jsonb)
RETURNS TABLE (status text, key_version integer, previous_key_version integer)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = '' SET plan_cache_mode = force_generic_plan AS $$
#variable_conflict use_column
DECLARE
  v_bad text := :TS._ts_check_call(p_tenant_id, NULL, false, p_bundle, true, p_ctx);
  v_auth record;
  v_new integer;
  v_retired integer;
  v_dek bytea;
BEGIN
  IF v_bad IS NOT NULL THEN
    PERFORM :TS._ts_audit_invalid(p_tenant_id, 'tenant_key.rotated', NULL, v_bad, p_ctx);
    RETURN QUERY SELECT 'invalid_input'::text, NULL::integer, NULL::integer;
    RETURN;
  END IF;
  SELECT * INTO v_auth FROM :TS._ts_authorize(p_tenant_id, p_bundle);
  IF v_auth.status <> 'ok' THEN
    PERFORM :TS._ts_audit(p_tenant_id, 'tenant_key.rotated', NULL, NULL, 'failure',
      pg_catalog.upper(CASE WHEN v_auth.status = 'no_key' THEN 'not_found' ELSE :TS._ts_auth_failure(v_auth.status) END), p_ctx,
      CASE WHEN v_auth.status = 'unknown_master_key' THEN pg_catalog.jsonb_build_object('master_key_id', v_auth.master_key_id) END);
    RETURN QUERY SELECT CASE WHEN v_auth.status = 'no_key' THEN 'not_found' ELSE :TS._ts_auth_failure(v_auth.status) END,
      NULL::integer, NULL::integer;
    RETURN;
  END IF;
  SELECT pg_catalog.max(k.version) INTO v_retired
    FROM :TS.tenant_secret_keys k WHERE k.tenant_id = p_tenant_id AND k.state = 'retired';
  IF v_retired IS NOT NULL THEN
    RETURN QUERY SELECT 'resumed'::text, v_auth.key_version, v_retired;
    RETURN;
  END IF;
  UPDATE :TS.tenant_secret_keys k SET state = 'retired', retired_at = pg_catalog.now()
   WHERE k.tenant_id = p_tenant_id AND k.version = v_auth.key_version AND k.state = 'active';
  IF NOT FOUND THEN
    -- A concurrent rotation retired it first and has committed (this statement waited for it): its
    -- new key is active now, which this statement's snapshot did not show. Join that rotation.
    SELECT pg_catalog.max(k.version) FILTER (WHERE k.state = 'active'), pg_catalog.max(k.version) FILTER (WHERE k.state = 'retired')
      INTO v_new, v_retired
      FROM :TS.tenant_secret_keys k WHERE k.tenant_id = p_tenant_id;
    RETURN QUERY SELECT 'resumed'::text, v_new, COALESCE(v_retired, v_auth.key_version);
    RETURN;
  END IF;
  SELECT pg_catalog.max(k.version) + 1 INTO v_new FROM :TS.tenant_secret_keys k WHERE k.tenant_id = p_tenant_id;
  v_dek := :PGC.gen_random_bytes(64);
  INSERT INTO :TS.tenant_secret_keys (tenant_id, version, state, master_key_id, wrapped_key, access_digest, dek_check)
  VALUES (p_tenant_id, v_new, 'active', :TS._ts_bundle_id(p_bundle, 1),
          :TS._ts_wrap_dek(p_tenant_id, v_new, v_dek, :TS._ts_bundle_id(p_bundle, 1), :TS._ts_bundle_kek(p_bundle, 1)),
          :TS._ts_access_digest(:TS._ts_bundle_kek(p_bundle, 1)), :TS._ts_dek_check(v_dek));
  PERFORM :TS._ts_audit(p_tenant_id, 'tenant_key.rotated', NULL, v_new, 'success', NULL, p_ctx,
    pg_catalog.jsonb_build_object('previous_key_version', v_auth.key_version, 'master_key_id', :TS._ts_bundle_id(p_bundle, 1)));
  RETURN QUERY SELECT 'ok'::text, v_new, v_auth.key_version;
END
$$;

-- Opens one ciphertext with the data-key version it names and seals it again under the active data
-- key. Returns the new ciphertext, or NULL with status 'integrity' (detail: the key name) or
-- 'unknown_master_key' (detail: the missing master key id).
CREATE FUNCTION :TS._ts_reseal(
  p_tenant text, p_name text, p_version integer, p_old_key_version integer, p_blob bytea,
  p_bundle bytea, p_new_dek bytea, p_new_key_version integer,
  OUT sealed bytea, OUT status text, OUT detail text)
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
  k record;
  v_kek bytea;
  v_plain bytea;
BEGIN
  SELECT x.wrapped_key, x.master_key_id INTO k FROM :TS.tenant_secret_keys x
   WHERE x.tenant_id = p_tenant AND x.version = p_old_key_version;
  v_kek := :TS._ts_bundle_kek_for(p_bundle, k.master_key_id);
  IF k.wrapped_key IS NOT NULL AND v_kek IS NULL THEN
    status := 'unknown_master_key';
    detail := k.master_key_id;
    RETURN;
  END IF;
  v_plain := :TS._ts_open_secret(p_blob, :TS._ts_unwrap_dek(p_tenant, p_old_key_version, k.master_key_id, k.wrapped_key, v_kek),
                                 p_tenant, p_name, p_version, p_old_key_version);
  IF v_plain IS NULL THEN
    status := 'integrity';
    detail := p_name;
    RETURN;
  END IF;
  sealed := :TS._ts_seal_secret(v_plain, p_new_dek, p_tenant, p_name, p_version, p_new_key_version);
  status := 'ok';
END
$$;

-- Re-encrypts up to p_limit ciphertexts (current values, then live versions) of one tenant that are
-- not under its active data key. Rows are locked FOR UPDATE, as writers do. Returns how many were
-- re-encrypted and how many remain; a ciphertext that does not open stops the batch ('integrity',
-- detail: the key name), a data key under a master key outside the bundle too ('unknown_master_key').
CREATE FUNCTION :TS.tenant_secret_reencrypt_batch(p_tenant_id text, p_bundle bytea, p_limit integer, p_ctx jsonb DEFAULT '{}'::jsonb)
RETURNS TABLE (status text, secrets integer, versions integer, remaining bigint, detail text)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = '' SET plan_cache_mode = force_generic_plan AS $$
#variable_conflict use_column
DECLARE
  v_bad text := :TS._ts_check_call(p_tenant_id, NULL, false, p_bundle, true, p_ctx);
  v_auth record;
  v_re record;
  v_limit integer := LEAST(GREATEST(COALESCE(p_limit, 100), 1), 10000);
  v_secrets integer := 0;
  v_versions integer := 0;
  v_status text := 'ok';
  v_detail text;
  v_remaining bigint;
  r record;
BEGIN
  IF v_bad IS NOT NULL THEN
    PERFORM :TS._ts_audit_invalid(p_tenant_id, 'tenant_key.reencrypted', NULL, v_bad, p_ctx);
    RETURN QUERY SELECT 'invalid_input'::text, 0, 0, 0::bigint, v_bad;
    RETURN;
  END IF;
  SELECT * INTO v_auth FROM :TS._ts_authorize(p_tenant_id, p_bundle);
  IF v_auth.status <> 'ok' THEN
    v_status := CASE WHEN v_auth.status = 'no_key' THEN 'not_found' ELSE :TS._ts_auth_failure(v_auth.status) END;
    IF v_status <> 'not_found' THEN
      PERFORM :TS._ts_audit(p_tenant_id, 'tenant_key.reencrypted', NULL, NULL, 'failure', pg_catalog.upper(v_status), p_ctx,
        CASE WHEN v_status = 'unknown_master_key' THEN pg_catalog.jsonb_build_object('master_key_id', v_auth.master_key_id) END);
    END IF;
    RETURN QUERY SELECT v_status, 0, 0, 0::bigint, CASE WHEN v_status = 'unknown_master_key' THEN v_auth.master_key_id END;
    RETURN;
  END IF;

  <<work>>
  FOR r IN
    SELECT s.key_name, s.current_version AS version, s.key_version, s.encrypted_value AS blob
      FROM :TS.tenant_secrets s
     WHERE s.tenant_id = p_tenant_id AND s.key_version <> v_auth.key_version
     ORDER BY s.key_name LIMIT v_limit FOR UPDATE OF s
  LOOP
    SELECT * INTO v_re FROM :TS._ts_reseal(p_tenant_id, r.key_name, r.version, r.key_version, r.blob,
                                           p_bundle, v_auth.dek, v_auth.key_version);
    IF v_re.status <> 'ok' THEN
      v_status := v_re.status;
      v_detail := v_re.detail;
      EXIT work;
    END IF;
    UPDATE :TS.tenant_secrets s SET encrypted_value = v_re.sealed, key_version = v_auth.key_version
     WHERE s.tenant_id = p_tenant_id AND s.key_name = r.key_name;
    v_secrets := v_secrets + 1;
  END LOOP;

  IF v_status = 'ok' AND v_secrets < v_limit THEN
    <<work2>>
    FOR r IN
      SELECT v.key_name, v.version, v.key_version, v.encrypted_value AS blob
        FROM :TS.tenant_secret_versions v
       WHERE v.tenant_id = p_tenant_id AND v.encrypted_value IS NOT NULL AND v.key_version <> v_auth.key_version
       ORDER BY v.key_name, v.version LIMIT v_limit - v_secrets FOR UPDATE OF v
    LOOP
      SELECT * INTO v_re FROM :TS._ts_reseal(p_tenant_id, r.key_name, r.version, r.key_version, r.blob,
                                             p_bundle, v_auth.dek, v_auth.key_version);
      IF v_re.status <> 'ok' THEN
        v_status := v_re.status;
        v_detail := v_re.detail;
        EXIT work2;
      END IF;
      UPDATE :TS.tenant_secret_versions v SET encrypted_value = v_re.sealed, key_version = v_auth.key_version
       WHERE v.tenant_id = p_tenant_id AND v.key_name = r.key_name AND v.version = r.version;
      v_versions := v_versions + 1;
    END LOOP;
  END IF;

  SELECT (SELECT pg_catalog.count(*) FROM :TS.tenant_secrets s
           WHERE s.tenant_id = p_tenant_id AND s.key_version <> v_auth.key_version)
       + (SELECT pg_catalog.count(*) FROM :TS.tenant_secret_versions v
           WHERE v.tenant_id = p_tenant_id AND v.encrypted_value IS NOT NULL AND v.key_version <> v_auth.key_version)
    INTO v_remaining;
  IF v_secrets + v_versions > 0 OR v_status <> 'ok' THEN
    PERFORM :TS._ts_audit(p_tenant_id, 'tenant_key.reencrypted', NULL, v_auth.key_version,
      CASE WHEN v_status = 'ok' THEN 'success' ELSE 'failure' END,
      CASE WHEN v_status = 'ok' THEN NULL ELSE pg_catalog.upper(v_status) END, p_ctx,
      pg_catalog.jsonb_strip_nulls(pg_catalog.jsonb_build_object('secrets', v_secrets, 'versions', v_versions,
        'remaining', v_remaining, 'master_key_id', CASE WHEN v_status = 'unknown_master_key' THEN v_detail END,
        'key_name', CASE WHEN v_status = 'integrity' THEN v_detail END)));
  END IF;
  RETURN QUERY SELECT v_status, v_secrets, v_versions, v_remaining, v_detail;
END
$$;

-- Destroys the tenant's retired data keys that no ciphertext references any more, erasing their
-- wrapped key (state 'destroyed'). The library calls it once every transaction that was open when the
-- key was retired has ended, so no writer still encrypts under it.
CREATE FUNCTION :TS.tenant_secret_destroy_retired_keys(p_tenant_id text, p_bundle bytea, p_ctx jsonb DEFAULT '{}'::jsonb)
RETURNS TABLE (status text, destroyed integer[], still_used integer[])
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = '' SET plan_cache_mode = force_generic_plan AS $$
#variable_conflict use_column
DECLARE
  v_bad text := :TS._ts_check_call(p_tenant_id, NULL, false, p_bundle, true, p_ctx);
  v_auth record;
  r record;
  v_destroyed integer[] := '{}';
  v_used integer[] := '{}';
BEGIN
  IF v_bad IS NOT NULL THEN
    PERFORM :TS._ts_audit_invalid(p_tenant_id, 'tenant_key.destroyed', NULL, v_bad, p_ctx);
    RETURN QUERY SELECT 'invalid_input'::text, NULL::integer[], NULL::integer[];
    RETURN;
  END IF;
  SELECT * INTO v_auth FROM :TS._ts_authorize(p_tenant_id, p_bundle);
  IF NOT :TS._ts_may_act(v_auth.status) THEN
    PERFORM :TS._ts_audit(p_tenant_id, 'tenant_key.destroyed', NULL, NULL, 'failure', pg_catalog.upper(:TS._ts_auth_failure(v_auth.status)), p_ctx, NULL);
    RETURN QUERY SELECT :TS._ts_auth_failure(v_auth.status), NULL::integer[], NULL::integer[];
    RETURN;
  END IF;
  FOR r IN SELECT k.version FROM :TS.tenant_secret_keys k
            WHERE k.tenant_id = p_tenant_id AND k.state = 'retired' ORDER BY k.version FOR UPDATE
  LOOP
    IF EXISTS (SELECT 1 FROM :TS.tenant_secrets s WHERE s.tenant_id = p_tenant_id AND s.key_version = r.version)
       OR EXISTS (SELECT 1 FROM :TS.tenant_secret_versions v
                   WHERE v.tenant_id = p_tenant_id AND v.key_version = r.version AND v.encrypted_value IS NOT NULL) THEN
      v_used := v_used || r.version;
      CONTINUE;
    END IF;
    UPDATE :TS.tenant_secret_keys k
       SET state = 'destroyed', wrapped_key = NULL, master_key_id = NULL, destroyed_at = pg_catalog.now()
     WHERE k.tenant_id = p_tenant_id AND k.version = r.version;
    PERFORM :TS._ts_audit(p_tenant_id, 'tenant_key.destroyed', NULL, r.version, 'success', NULL, p_ctx, NULL);
    v_destroyed := v_destroyed || r.version;
  END LOOP;
  RETURN QUERY SELECT 'ok'::text, v_destroyed, v_used;
END
$$;

-- ---------------------------------------------------------------------------------------------
-- Crypto-shredding
-- ---------------------------------------------------------------------------------------------

-- Crypto-shreds a tenant: deletes its data keys, secrets and versions. The audit chain stays, with one
-- 'tenant.purged' record holding counts only. An operator function: no key bundle needed (a tenant
-- whose keys are lost can still be shredded). In two phases, so that no writer in flight leaves a row
-- behind: p_phase 'begin' records the purge (no data key can be created for the tenant meanwhile)
-- and retires its active key (writers stop finding it); the library then waits for every transaction
-- open at that moment to end, and calls 'finish', which deletes. 'all' does both at once (inside a
-- caller's transaction, where there is nobody to wait for: a concurrent writer may then leave a row
-- under a deleted key, unreadable; a later purge removes it). Idempotent.
CREATE FUNCTION :TS.tenant_secret_purge_tenant(p_tenant_id text, p_phase text, p_ctx jsonb)
RETURNS TABLE (status text, keys integer, secrets integer, versions integer)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = '' SET plan_cache_mode = force_generic_plan AS $$
#variable_conflict use_column
DECLARE
  v_keys integer;
  v_secrets integer;
  v_versions integer;
BEGIN
  PERFORM :TS._ts_guard(true);
  PERFORM :TS._ts_require_operator();
  IF :TS._ts_invalid_input(p_tenant_id, NULL) IS NOT NULL OR :TS._ts_ctx_invalid(p_ctx) IS NOT NULL
     OR p_phase IS NULL OR p_phase NOT IN ('begin', 'finish', 'all') THEN
    PERFORM :TS._ts_audit_invalid(p_tenant_id, 'tenant.purged', NULL,
      CASE WHEN :TS._ts_ctx_invalid(p_ctx) IS NOT NULL THEN 'context' WHEN :TS._ts_invalid_input(p_tenant_id, NULL) IS NOT NULL THEN 'tenant_id'
           ELSE 'phase' END, p_ctx);
    RETURN QUERY SELECT 'invalid_input'::text, 0, 0, 0;
    RETURN;
  END IF;
  IF p_phase IN ('begin', 'all') THEN
    INSERT INTO :TS.tenant_secret_purges AS g (tenant_id, requested_by) VALUES (p_tenant_id, :TS._ts_ctx_actor(:TS._ts_ctx_safe(p_ctx)))
    ON CONFLICT (tenant_id) DO NOTHING;
    UPDATE :TS.tenant_secret_keys k SET state = 'retired', retired_at = pg_catalog.now()
     WHERE k.tenant_id = p_tenant_id AND k.state = 'active';
    IF p_phase = 'begin' THEN
      RETURN QUERY SELECT 'begun'::text, 0, 0, 0;
      RETURN;
    END IF;
  END IF;
  IF NOT EXISTS (SELECT 1 FROM :TS.tenant_secret_purges g WHERE g.tenant_id = p_tenant_id) THEN
    RETURN QUERY SELECT 'not_begun'::text, 0, 0, 0;
    RETURN;
  END IF;
  DELETE FROM :TS.tenant_secret_versions v WHERE v.tenant_id = p_tenant_id;
  GET DIAGNOSTICS v_versions = ROW_COUNT;
  DELETE FROM :TS.tenant_secrets s WHERE s.tenant_id = p_tenant_id;
  GET DIAGNOSTICS v_secrets = ROW_COUNT;
  DELETE FROM :TS.tenant_secret_keys k WHERE k.tenant_id = p_tenant_id;
  GET DIAGNOSTICS v_keys = ROW_COUNT;
  DELETE FROM :TS.tenant_secret_purges g WHERE g.tenant_id = p_tenant_id;
  PERFORM :TS._ts_audit(p_tenant_id, 'tenant.purged', NULL, NULL, 'success', NULL, p_ctx,
    pg_catalog.jsonb_build_object('keys', v_keys, 'secrets', v_secrets, 'versions', v_versions));
  RETURN QUERY SELECT 'ok'::text, v_keys, v_secrets, v_versions;
END
$$;

-- Release 0.2's signature: both phases at once.
CREATE FUNCTION :TS.tenant_secret_purge_tenant(p_tenant_id text, p_ctx jsonb DEFAULT '{}'::jsonb)
RETURNS TABLE (status text, keys integer, secrets integer, versions integer)
LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = '' AS $$
  SELECT * FROM :TS.tenant_secret_purge_tenant(p_tenant_id, 'all', p_ctx)
$$;

-- ---------------------------------------------------------------------------------------------
-- Waiting for transactions in flight
-- ---------------------------------------------------------------------------------------------

-- The transactions open in this database now (their virtual transaction ids, from pg_locks, which
-- every role may read), except the caller's own. A key switch or purge commits first, then the
-- library takes this list and waits until tenant_secret_transactions_open says none of them is left:
-- after that, every write that could have used the old key has committed (and is seen) or rolled back.
CREATE FUNCTION :TS.tenant_secret_open_transactions()
RETURNS text[]
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = '' AS $$
  SELECT COALESCE(pg_catalog.array_agg(l.virtualxid), '{}')
    FROM pg_catalog.pg_locks l
    JOIN pg_catalog.pg_stat_activity a ON a.pid = l.pid
   WHERE l.locktype = 'virtualxid' AND l.granted AND l.pid <> pg_catalog.pg_backend_pid()
     AND a.datid = (SELECT d.oid FROM pg_catalog.pg_database d WHERE d.datname = pg_catalog.current_database())
$$;

-- How many of the given transactions are still open.
CREATE FUNCTION :TS.tenant_secret_transactions_open(p_transactions text[])
RETURNS integer
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = '' AS $$
  SELECT pg_catalog.count(*)::integer FROM pg_catalog.pg_locks l
   WHERE l.locktype = 'virtualxid' AND l.granted AND l.virtualxid = ANY (p_transactions)
$$;

-- ---------------------------------------------------------------------------------------------
-- Key status
-- ---------------------------------------------------------------------------------------------

-- Wrapped data keys and audit checkpoints per master key id, registered master keys, and totals;
-- metadata only.
CREATE FUNCTION :TS.tenant_secret_key_status()
RETURNS jsonb
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = '' AS $$
  SELECT :TS._ts_require_operator();
  SELECT pg_catalog.jsonb_build_object(
    'by_master_key', COALESCE((
      SELECT pg_catalog.jsonb_object_agg(m.master_key_id,
               pg_catalog.jsonb_build_object('keys', m.keys, 'tenants', m.tenants, 'active_keys', m.active_keys))
        FROM (SELECT k.master_key_id, pg_catalog.count(*) AS keys, pg_catalog.count(DISTINCT k.tenant_id) AS tenants,
                     pg_catalog.count(*) FILTER (WHERE k.state = 'active') AS active_keys
                FROM :TS.tenant_secret_keys k WHERE k.wrapped_key IS NOT NULL GROUP BY k.master_key_id) m),
      '{}'::jsonb),
    'checkpoints_by_master_key', COALESCE((
      SELECT pg_catalog.jsonb_object_agg(c.master_key_id, c.n)
        FROM (SELECT cp.master_key_id, pg_catalog.count(*) AS n
                FROM :TS.tenant_secret_audit_checkpoints cp GROUP BY cp.master_key_id) c),
      '{}'::jsonb),
    'registered_master_keys', COALESCE((
      SELECT pg_catalog.jsonb_agg(m.master_key_id ORDER BY m.master_key_id) FROM :TS.tenant_secret_master_keys m), '[]'::jsonb),
    'tenants', (SELECT pg_catalog.count(DISTINCT k.tenant_id) FROM :TS.tenant_secret_keys k WHERE k.wrapped_key IS NOT NULL),
    'retired_keys', (SELECT pg_catalog.count(*) FROM :TS.tenant_secret_keys k WHERE k.state = 'retired'),
    'destroyed_keys', (SELECT pg_catalog.count(*) FROM :TS.tenant_secret_keys k WHERE k.state = 'destroyed'),
    'secrets', (SELECT pg_catalog.count(*) FROM :TS.tenant_secrets s),
    'deleted_secrets', (SELECT pg_catalog.count(*) FROM :TS.tenant_secrets s WHERE s.deleted_at IS NOT NULL),
    'versions', (SELECT pg_catalog.count(*) FROM :TS.tenant_secret_versions v WHERE v.encrypted_value IS NOT NULL))
$$;

COMMENT ON FUNCTION :TS.tenant_secret_rewrap_keys(text[], bytea, jsonb) IS
  'tenant-secrets: re-wrap the given tenants'' data keys under the current master key (master-key rotation batch); touches no secret.';
COMMENT ON FUNCTION :TS.tenant_secret_rewrap_pending(text, text, integer) IS
  'tenant-secrets: next tenants with a data key not wrapped under the given master key (keyset pagination).';
COMMENT ON FUNCTION :TS.tenant_secret_finish_master_rotation(text, integer, integer, integer, jsonb) IS
  'tenant-secrets: write the system audit record that ends a master-key rotation run.';
COMMENT ON FUNCTION :TS.tenant_secret_rotate_key(text, bytea, jsonb) IS
  'tenant-secrets: make a new data-key version active for a tenant and retire the old one.';
COMMENT ON FUNCTION :TS.tenant_secret_reencrypt_batch(text, bytea, integer, jsonb) IS
  'tenant-secrets: re-encrypt a batch of a tenant''s ciphertexts under its active data key.';
COMMENT ON FUNCTION :TS.tenant_secret_destroy_retired_keys(text, bytea, jsonb) IS
  'tenant-secrets: erase retired data keys that no ciphertext references any more.';
COMMENT ON FUNCTION :TS.tenant_secret_purge_tenant(text, text, jsonb) IS
  'tenant-secrets: crypto-shred a tenant in two phases (begin, then finish once transactions in flight ended): delete its data keys, secrets and versions; the audit trail stays.';
COMMENT ON FUNCTION :TS.tenant_secret_purge_tenant(text, jsonb) IS
  'tenant-secrets: crypto-shred a tenant in one call (release 0.2 signature); the audit trail stays.';
COMMENT ON FUNCTION :TS.tenant_secret_open_transactions() IS
  'tenant-secrets: virtual transaction ids of the transactions open in this database (to wait for them after a key switch).';
COMMENT ON FUNCTION :TS.tenant_secret_transactions_open(text[]) IS
  'tenant-secrets: how many of the given transactions are still open.';
COMMENT ON FUNCTION :TS.tenant_secret_key_status() IS
  'tenant-secrets: wrapped data keys and audit checkpoints per master key id, registered master keys, and totals (metadata only).';
