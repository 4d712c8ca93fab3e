-- tenant-secrets functions: the secret operations (write, read, bulk read, delete, list, versions)
-- and the two functions of the original interface (upsert_tenant_secret, get_tenant_secret).
--
-- Entry points are SECURITY DEFINER with search_path = '' and qualified names, and plan their
-- statements generically (plan_cache_mode): a custom plan would see key material and values as
-- constants, and could fold cryptographic expressions into the plan (where an EXPLAIN-logging
-- extension could print them), besides re-planning every call. Domain outcomes are
-- returned as a status, not raised, so a failure's audit record commits with the attempt. Every
-- tenant-scoped function authorises the key bundle first (40_tenant_keys.sql) and reveals nothing,
-- not even whether a secret exists, to a caller it does not authorise.

-- Records an input failure: on the tenant's chain when the tenant id is valid, else on the system
-- chain; never the offending text (the key name only when it is valid, the context only when valid).
CREATE FUNCTION :TS._ts_audit_invalid(
  p_tenant text, p_action text, p_key text, p_field text, p_ctx jsonb) RETURNS boolean
LANGUAGE sql VOLATILE AS $$
  SELECT :TS._ts_audit(
    CASE WHEN :TS._ts_invalid_input(p_tenant, NULL) IS NULL THEN p_tenant END, p_action,
    CASE WHEN :TS._ts_invalid_input(p_tenant, p_key) IS NULL THEN p_key END, NULL, 'failure', 'INVALID_INPUT',
    :TS._ts_ctx_safe(p_ctx), pg_catalog.jsonb_build_object('field', p_field))
$$;

-- First input check shared by the tenant-scoped entry points: context, tenant id, key name (when
-- p_need_key), bundle shape (when p_need_bundle). Returns the offending field, or NULL. One
-- expression, inlined into its callers; it runs the trigger guard first (see _ts_guard).
CREATE FUNCTION :TS._ts_check_call(p_tenant text, p_key text, p_need_key boolean, p_bundle bytea, p_need_bundle boolean, p_ctx jsonb)
RETURNS text LANGUAGE sql STABLE AS $$  -- STABLE as _ts_guard (a function declared less volatile than its body is not inlined)
  SELECT CASE
    WHEN NOT :TS._ts_guard(false) THEN 'guard'  -- raises when a foreign trigger is attached
    WHEN :TS._ts_ctx_invalid(p_ctx) IS NOT NULL THEN 'context'
    WHEN :TS._ts_invalid_input(p_tenant, p_key) IS NOT NULL THEN :TS._ts_invalid_input(p_tenant, p_key)
    WHEN p_need_key AND p_key IS NULL THEN 'key_name'
    WHEN p_need_bundle AND NOT :TS._ts_bundle_ids_valid(p_bundle) THEN 'key_bundle'
  END
$$;

-- Stores p_sealed as version p_version (the secret row is locked by the caller, or being created),
-- and destroys the live versions that fall out of the retention limit. Only live versions are read
-- (partial index), so the cost does not grow with the number of versions ever written.
CREATE FUNCTION :TS._ts_store_version(
  p_tenant text, p_name text, p_sealed bytea, p_version integer, p_key_version integer,
  p_origin text, p_actor text, p_max_versions integer, OUT destroyed integer[])
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
  INSERT INTO :TS.tenant_secret_versions (tenant_id, key_name, version, encrypted_value, key_version, state, origin, created_by)
  VALUES (p_tenant, p_name, p_version, p_sealed, p_key_version, 'enabled', p_origin, p_actor);
  IF p_version > GREATEST(p_max_versions, 2) THEN
    WITH gone AS (
      UPDATE :TS.tenant_secret_versions v
         SET encrypted_value = NULL, key_version = NULL, state = 'destroyed', destroyed_at = pg_catalog.now()
       WHERE v.tenant_id = p_tenant AND v.key_name = p_name AND v.encrypted_value IS NOT NULL
         AND v.version <= p_version - GREATEST(p_max_versions, 2)
      RETURNING v.version)
    SELECT pg_catalog.array_agg(g.version ORDER BY g.version) INTO destroyed FROM gone g;
  END IF;
END
$$;

-- ---------------------------------------------------------------------------------------------
-- Write
-- ---------------------------------------------------------------------------------------------

-- Create or replace (p_mode 'set') or replace an existing secret (p_mode 'rotate'). p_options (JSON
-- text): if_version (0 = create only), max_versions (2-1000, default 10), grace_seconds (0-31536000,
-- default 86400: how long the replaced version stays readable as "previous"), and metadata:
-- description, labels, expires_at, rotate_after (JSON null clears). Values: 1 to 65536 bytes.
CREATE FUNCTION :TS.tenant_secret_write(
  p_tenant_id text, p_key_name text, p_value bytea, p_bundle bytea,
  p_mode text DEFAULT 'set', p_options text DEFAULT '{}', p_ctx jsonb DEFAULT '{}'::jsonb,
  OUT status text, OUT version integer, OUT detail text)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = '' SET plan_cache_mode = force_generic_plan AS $$
#variable_conflict use_column
-- Hot path: helpers are called as expressions (inlined SQL, or one plpgsql call) rather than as
-- queries, and the function returns one row through its OUT parameters.
DECLARE
  v_action text := CASE p_mode WHEN 'rotate' THEN 'secret.rotated' ELSE 'secret.updated' END;
  v_opts jsonb := :TS._ts_json(p_options);
  v_bad text := :TS._ts_check_call(p_tenant_id, p_key_name, true, p_bundle, true, p_ctx);
  v_if bigint;
  v_max bigint;
  v_grace bigint;
  v_actor text;
  v_key record;
  v_row :TS.tenant_secrets%ROWTYPE;
  v_new integer;
  v_sealed bytea;
  v_destroyed integer[];
  v_done boolean;
  v_kv integer;
  v_mk text;
  v_wrapped bytea;
  v_kek bytea;
  v_dek bytea;
  v_prev integer;
  v_attempt integer := 0;
BEGIN
  IF v_bad IS NULL AND (p_mode IS NULL OR p_mode NOT IN ('set', 'rotate')) THEN v_bad := 'mode'; END IF;
  IF v_bad IS NULL AND (p_value IS NULL OR pg_catalog.octet_length(p_value) NOT BETWEEN 1 AND 65536) THEN v_bad := 'value'; END IF;
  IF v_bad IS NULL AND (v_opts IS NULL OR pg_catalog.jsonb_typeof(v_opts) <> 'object') THEN v_bad := 'options'; END IF;
  IF v_bad IS NULL AND v_opts <> '{}'::jsonb THEN
    v_if := :TS._ts_json_int(v_opts, 'if_version', 0, 999999999);
    v_max := :TS._ts_json_int(v_opts, 'max_versions', 2, 1000);
    v_grace := :TS._ts_json_int(v_opts, 'grace_seconds', 0, 31536000);
    v_bad := CASE WHEN v_if = -9223372036854775808 THEN 'if_version'
                  WHEN v_max = -9223372036854775808 THEN 'max_versions'
                  WHEN v_grace = -9223372036854775808 THEN 'grace_seconds'
                  ELSE :TS._ts_metadata_invalid(v_opts) END;
  END IF;
  IF v_bad IS NOT NULL THEN
    v_done := :TS._ts_audit_invalid(p_tenant_id, v_action, p_key_name, v_bad, p_ctx);
    status := 'invalid_input';
    detail := v_bad;
    RETURN;
  END IF;
  v_max := COALESCE(v_max, 10);
  v_grace := COALESCE(v_grace, 86400);
  v_actor := :TS._ts_ctx_actor(p_ctx);

  v_done := :TS._ts_tenant_lock(p_tenant_id, false);
  -- The tenant's active data key, unwrapped with the bundle's KEK (which authorises the caller);
  -- anything else (no key yet, a tenant proof, failures) takes _ts_writer_key.
  SELECT k.version, k.wrapped_key, k.master_key_id INTO v_kv, v_wrapped, v_mk
    FROM :TS.tenant_secret_keys k WHERE k.tenant_id = p_tenant_id AND k.state = 'active';
  IF v_kv IS NOT NULL THEN
    v_kek := :TS._ts_bundle_kek_for(p_bundle, v_mk);
    v_dek := :TS._ts_unwrap_dek(p_tenant_id, v_kv, v_mk, v_wrapped, v_kek);
  END IF;
  IF v_dek IS NULL THEN
    v_key := :TS._ts_writer_key(p_tenant_id, p_bundle);
    IF v_key.status <> 'ok' THEN
      v_done := :TS._ts_audit(p_tenant_id, v_action, p_key_name, NULL, 'failure', pg_catalog.upper(:TS._ts_auth_failure(v_key.status)), p_ctx,
        CASE WHEN v_key.status = 'unknown_master_key' THEN pg_catalog.jsonb_build_object('master_key_id', v_key.master_key_id) END);
      status := :TS._ts_auth_failure(v_key.status);
      detail := CASE WHEN v_key.status = 'unknown_master_key' THEN v_key.master_key_id END;
      RETURN;
    END IF;
    v_kv := v_key.key_version;
    v_dek := v_key.dek;
  END IF;

  -- Usual case, one statement: replace the value of an existing secret (the row lock of the UPDATE
  -- orders concurrent writers; its conditions are re-checked on the row it finally locks), store the
  -- version, destroy what falls out of retention. Any other case falls through to the loop below.
  WITH upd AS (
    UPDATE :TS.tenant_secrets s SET
        current_version = s.current_version + 1,
        encrypted_value = :TS._ts_seal_secret(p_value, v_dek, p_tenant_id, p_key_name, s.current_version + 1, v_kv),
        key_version = v_kv,
        previous_version = CASE WHEN s.deleted_at IS NULL THEN s.current_version END,
        previous_expires_at = CASE WHEN s.deleted_at IS NULL
                                   THEN pg_catalog.now() + pg_catalog.make_interval(secs => v_grace) END,
        description = CASE WHEN v_opts ? 'description' THEN v_opts->>'description' ELSE s.description END,
        labels = CASE WHEN v_opts ? 'labels' THEN COALESCE(NULLIF(v_opts->'labels', 'null'::jsonb), '{}'::jsonb) ELSE s.labels END,
        expires_at = CASE WHEN v_opts ? 'expires_at' THEN (v_opts->>'expires_at')::timestamptz ELSE s.expires_at END,
        rotate_after = CASE WHEN v_opts ? 'rotate_after' THEN (v_opts->>'rotate_after')::timestamptz ELSE s.rotate_after END,
        updated_at = pg_catalog.now(), updated_by = v_actor,
        rotated_at = CASE WHEN p_mode = 'rotate' THEN pg_catalog.now() ELSE s.rotated_at END,
        deleted_at = NULL, purge_after = NULL
     WHERE s.tenant_id = p_tenant_id AND s.key_name = p_key_name
       AND (p_mode = 'set' OR s.deleted_at IS NULL)
       AND (v_if IS NULL OR (s.current_version = v_if AND s.deleted_at IS NULL))
    RETURNING s.current_version, s.encrypted_value, s.previous_version),
  ver AS (
    INSERT INTO :TS.tenant_secret_versions (tenant_id, key_name, version, encrypted_value, key_version, state, origin, created_by)
    SELECT p_tenant_id, p_key_name, u.current_version, u.encrypted_value, v_kv, 'enabled', p_mode, v_actor FROM upd u),
  gone AS (
    UPDATE :TS.tenant_secret_versions v
       SET encrypted_value = NULL, key_version = NULL, state = 'destroyed', destroyed_at = pg_catalog.now()
     WHERE v.tenant_id = p_tenant_id AND v.key_name = p_key_name AND v.encrypted_value IS NOT NULL
       AND v.version <= (SELECT u.current_version FROM upd u) - GREATEST(v_max, 2)
    RETURNING v.version)
  SELECT u.current_version, u.previous_version, (SELECT pg_catalog.array_agg(g.version ORDER BY g.version) FROM gone g)
    INTO v_new, v_prev, v_destroyed
    FROM upd u;
  IF v_new IS NOT NULL THEN
    v_done := :TS._ts_audit(p_tenant_id, v_action, p_key_name, v_new, 'success', NULL, p_ctx,
      pg_catalog.jsonb_strip_nulls(pg_catalog.jsonb_build_object(
        'previous_version', v_new - 1,
        'destroyed_versions', pg_catalog.to_jsonb(v_destroyed),
        'undeleted', CASE WHEN v_prev IS NULL THEN true END)));
    status := 'ok';
    version := v_new;
    RETURN;
  END IF;

  -- A concurrent create, delete or destroy of this name can change what the row lock finds: try again.
  -- Each retry follows another transaction's commit on this name, so a set without if_version keeps
  -- trying until it writes (it never reports a conflict); other writes stop after three tries.
  LOOP
    v_attempt := v_attempt + 1;
    EXIT WHEN v_attempt > 3 AND NOT (p_mode = 'set' AND v_if IS NULL);
    SELECT * INTO v_row FROM :TS.tenant_secrets s WHERE s.tenant_id = p_tenant_id AND s.key_name = p_key_name FOR UPDATE;
    IF NOT FOUND THEN
      IF p_mode = 'rotate' OR COALESCE(v_if, 0) <> 0 THEN
        v_done := :TS._ts_audit(p_tenant_id, v_action, p_key_name, NULL, 'failure',
          CASE WHEN p_mode = 'rotate' THEN 'NOT_FOUND' ELSE 'CONFLICT' END, p_ctx,
          CASE WHEN v_if IS NOT NULL THEN pg_catalog.jsonb_build_object('expected_version', v_if) END);
        status := CASE WHEN p_mode = 'rotate' THEN 'not_found' ELSE 'conflict' END;
        RETURN;
      END IF;
      v_sealed := :TS._ts_seal_secret(p_value, v_dek, p_tenant_id, p_key_name, 1, v_kv);
      INSERT INTO :TS.tenant_secrets AS s (tenant_id, key_name, current_version, encrypted_value, key_version,
          description, labels, expires_at, rotate_after, created_by, updated_by)
      VALUES (p_tenant_id, p_key_name, 1, v_sealed, v_kv,
          CASE WHEN pg_catalog.jsonb_typeof(v_opts->'description') = 'string' THEN v_opts->>'description' END,
          CASE WHEN pg_catalog.jsonb_typeof(v_opts->'labels') = 'object' THEN v_opts->'labels' ELSE '{}'::jsonb END,
          (v_opts->>'expires_at')::timestamptz, (v_opts->>'rotate_after')::timestamptz, v_actor, v_actor)
      ON CONFLICT (tenant_id, key_name) DO NOTHING;
      IF FOUND THEN
        INSERT INTO :TS.tenant_secret_versions (tenant_id, key_name, version, encrypted_value, key_version, state, origin, created_by)
        VALUES (p_tenant_id, p_key_name, 1, v_sealed, v_kv, 'enabled', 'set', v_actor);
        v_done := :TS._ts_audit(p_tenant_id, 'secret.created', p_key_name, 1, 'success', NULL, p_ctx, NULL);
        status := 'ok';
        version := 1;
        RETURN;
      END IF;
      CONTINUE;
    END IF;

    IF p_mode = 'rotate' AND v_row.deleted_at IS NOT NULL THEN
      v_done := :TS._ts_audit(p_tenant_id, v_action, p_key_name, NULL, 'failure', 'NOT_FOUND', p_ctx,
        pg_catalog.jsonb_build_object('deleted', true));
      status := 'not_found';
      RETURN;
    END IF;
    IF v_if IS NOT NULL AND (v_if <> v_row.current_version OR v_row.deleted_at IS NOT NULL) THEN
      v_done := :TS._ts_audit(p_tenant_id, v_action, p_key_name, v_row.current_version, 'failure', 'CONFLICT', p_ctx,
        pg_catalog.jsonb_build_object('expected_version', v_if));
      status := 'conflict';
      version := v_row.current_version;
      RETURN;
    END IF;

    v_new := v_row.current_version + 1;
    v_sealed := :TS._ts_seal_secret(p_value, v_dek, p_tenant_id, p_key_name, v_new, v_kv);
    INSERT INTO :TS.tenant_secret_versions (tenant_id, key_name, version, encrypted_value, key_version, state, origin, created_by)
    VALUES (p_tenant_id, p_key_name, v_new, v_sealed, v_kv, 'enabled', p_mode, v_actor);
    -- Retention: destroy the live versions that fall out of the limit (only live versions are read,
    -- through a partial index, so the cost does not grow with the number of versions ever written).
    IF v_new > GREATEST(v_max, 2) THEN
      WITH gone AS (
        UPDATE :TS.tenant_secret_versions v
           SET encrypted_value = NULL, key_version = NULL, state = 'destroyed', destroyed_at = pg_catalog.now()
         WHERE v.tenant_id = p_tenant_id AND v.key_name = p_key_name AND v.encrypted_value IS NOT NULL
           AND v.version <= v_new - GREATEST(v_max, 2)
        RETURNING v.version)
      SELECT pg_catalog.array_agg(g.version ORDER BY g.version) INTO v_destroyed FROM gone g;
    END IF;
    UPDATE :TS.tenant_secrets s SET
        current_version = v_new, encrypted_value = v_sealed, key_version = v_kv,
        previous_version = CASE WHEN v_row.deleted_at IS NULL THEN v_row.current_version END,
        previous_expires_at = CASE WHEN v_row.deleted_at IS NULL
                                   THEN pg_catalog.now() + pg_catalog.make_interval(secs => v_grace) END,
        description = CASE WHEN v_opts ? 'description' THEN v_opts->>'description' ELSE s.description END,
        labels = CASE WHEN v_opts ? 'labels' THEN COALESCE(NULLIF(v_opts->'labels', 'null'::jsonb), '{}'::jsonb) ELSE s.labels END,
        expires_at = CASE WHEN v_opts ? 'expires_at' THEN (v_opts->>'expires_at')::timestamptz ELSE s.expires_at END,
        rotate_after = CASE WHEN v_opts ? 'rotate_after' THEN (v_opts->>'rotate_after')::timestamptz ELSE s.rotate_after END,
        updated_at = pg_catalog.now(), updated_by = v_actor,
        rotated_at = CASE WHEN p_mode = 'rotate' THEN pg_catalog.now() ELSE s.rotated_at END,
        deleted_at = NULL, purge_after = NULL
     WHERE s.tenant_id = p_tenant_id AND s.key_name = p_key_name;
    v_done := :TS._ts_audit(p_tenant_id, v_action, p_key_name, v_new, 'success', NULL, p_ctx,
      CASE WHEN v_destroyed IS NOT NULL OR v_row.deleted_at IS NOT NULL THEN
        pg_catalog.jsonb_strip_nulls(pg_catalog.jsonb_build_object(
          'previous_version', v_row.current_version,
          'destroyed_versions', pg_catalog.to_jsonb(v_destroyed),
          'undeleted', CASE WHEN v_row.deleted_at IS NOT NULL THEN true END))
      ELSE pg_catalog.jsonb_build_object('previous_version', v_row.current_version) END);
    status := 'ok';
    version := v_new;
    RETURN;
  END LOOP;
  v_done := :TS._ts_audit(p_tenant_id, v_action, p_key_name, NULL, 'failure', 'CONFLICT', p_ctx,
    pg_catalog.jsonb_build_object('reason', 'concurrent_changes'));
  status := 'conflict';
END
$$;

-- ---------------------------------------------------------------------------------------------
-- Read
-- ---------------------------------------------------------------------------------------------

-- Read the current version (default), a numbered version (p_options.version, digits) or the previous
-- version while its grace period lasts (p_options.version = 'previous'). An expired secret is refused
-- with 'expired' unless p_options.allow_expired. One statement reads the tenant's active key, the
-- secret and the key that encrypts it, so a concurrent key rotation cannot slip between them.
CREATE FUNCTION :TS.tenant_secret_read(
  p_tenant_id text, p_key_name text, p_bundle bytea,
  p_options jsonb DEFAULT '{}'::jsonb, p_ctx jsonb DEFAULT '{}'::jsonb,
  OUT status text, OUT value bytea, OUT version integer, OUT detail text, OUT expires_at timestamptz)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = '' SET plan_cache_mode = force_generic_plan AS $$
#variable_conflict use_column
DECLARE
  v_want text := p_options->>'version';
  v_bad text := :TS._ts_check_call(p_tenant_id, p_key_name, true, p_bundle, true, p_ctx);
  v record;
  v_kek bytea;
  v_adek bytea;
  v_dek bytea;
  v_plain bytea;
  v_status text;
  v_done boolean;
  v_denied boolean := false;
  v_smk text;
BEGIN
  IF v_bad IS NULL AND (pg_catalog.jsonb_typeof(p_options) IS DISTINCT FROM 'object'
      OR (v_want IS NOT NULL AND v_want <> 'previous' AND v_want !~ '^[1-9][0-9]{0,8}$')) THEN
    v_bad := 'version';
  END IF;
  IF v_bad IS NOT NULL THEN
    v_done := :TS._ts_audit_invalid(p_tenant_id, 'secret.read', p_key_name, v_bad, p_ctx);
    status := 'invalid_input';
    detail := v_bad;
    RETURN;
  END IF;

  IF v_want IS NULL THEN
    SELECT a.version AS akv, a.wrapped_key AS awrapped, a.master_key_id AS amk,
           s.deleted_at, s.expires_at, s.current_version AS ver, 'enabled'::text AS vstate,
           s.encrypted_value AS blob, s.key_version AS skv, k.wrapped_key AS swrapped, k.master_key_id AS smk
      INTO v
      FROM (SELECT) z
      LEFT JOIN :TS.tenant_secret_keys a ON a.tenant_id = p_tenant_id AND a.state = 'active'
      LEFT JOIN :TS.tenant_secrets s ON s.tenant_id = p_tenant_id AND s.key_name = p_key_name
      LEFT JOIN :TS.tenant_secret_keys k ON k.tenant_id = p_tenant_id AND k.version = s.key_version
                                        AND s.key_version IS DISTINCT FROM a.version;
  ELSE
    SELECT a.version AS akv, a.wrapped_key AS awrapped, a.master_key_id AS amk,
           s.deleted_at, s.expires_at, tv.version AS ver, tv.state AS vstate,
           tv.encrypted_value AS blob, tv.key_version AS skv, k.wrapped_key AS swrapped, k.master_key_id AS smk
      INTO v
      FROM (SELECT) z
      LEFT JOIN :TS.tenant_secret_keys a ON a.tenant_id = p_tenant_id AND a.state = 'active'
      LEFT JOIN :TS.tenant_secrets s ON s.tenant_id = p_tenant_id AND s.key_name = p_key_name
      LEFT JOIN :TS.tenant_secret_versions tv ON tv.tenant_id = p_tenant_id AND tv.key_name = p_key_name
           AND tv.version = CASE WHEN v_want = 'previous'
                                 THEN CASE WHEN s.previous_expires_at > pg_catalog.now() THEN s.previous_version END
                                 ELSE v_want::integer END
      LEFT JOIN :TS.tenant_secret_keys k ON k.tenant_id = p_tenant_id AND k.version = tv.key_version
                                        AND tv.key_version IS DISTINCT FROM a.version;
  END IF;

  -- Authorise: unwrap the active key with the bundle's KEK, else a tenant proof.
  IF v.akv IS NOT NULL THEN
    v_kek := :TS._ts_bundle_kek_for(p_bundle, v.amk);
    IF v_kek IS NOT NULL THEN
      v_adek := :TS._ts_unwrap_dek(p_tenant_id, v.akv, v.amk, v.awrapped, v_kek);
    END IF;
  END IF;
  -- A caller that cannot unwrap the tenant's active key learns nothing about its secrets: the same
  -- answer whether the secret exists or not (a proof only says which master key it lacks).
  IF v_adek IS NULL AND (v.akv IS NOT NULL OR NOT :TS._ts_proof_ok(p_tenant_id, p_bundle)) THEN
    v_status := CASE WHEN v.akv IS NULL OR NOT :TS._ts_proof_ok(p_tenant_id, p_bundle) THEN 'unauthorized'
                     WHEN v_kek IS NULL THEN 'unknown_master_key' ELSE 'integrity' END;
    v_denied := true;
    v_smk := CASE WHEN v_status = 'unknown_master_key' THEN v.amk END;
  ELSIF v.ver IS NULL OR v.deleted_at IS NOT NULL OR v.vstate <> 'enabled' THEN
    v_status := 'not_found';
  ELSIF v.expires_at IS NOT NULL AND v.expires_at <= pg_catalog.now()
        AND NOT COALESCE((p_options->>'allow_expired')::boolean, false) THEN
    v_status := 'expired';
  ELSE
    IF v.skv = v.akv THEN
      v_dek := v_adek;
      v_status := CASE WHEN v_adek IS NOT NULL THEN 'ok' WHEN v_kek IS NULL THEN 'unknown_master_key' ELSE 'integrity' END;
    ELSIF v.swrapped IS NULL THEN
      v_status := 'integrity';
    ELSE
      v_kek := :TS._ts_bundle_kek_for(p_bundle, v.smk);
      v_dek := :TS._ts_unwrap_dek(p_tenant_id, v.skv, v.smk, v.swrapped, v_kek);
      v_status := CASE WHEN v_dek IS NOT NULL THEN 'ok' WHEN v_kek IS NULL THEN 'unknown_master_key' ELSE 'integrity' END;
    END IF;
    IF v_status = 'ok' THEN
      v_plain := :TS._ts_open_secret(v.blob, v_dek, p_tenant_id, p_key_name, v.ver, v.skv);
      IF v_plain IS NULL THEN v_status := 'integrity'; END IF;
    END IF;
  END IF;

  IF v_status = 'ok' THEN
    v_done := :TS._ts_audit(p_tenant_id, 'secret.read', p_key_name, v.ver, 'success', NULL, p_ctx,
      CASE WHEN v_want = 'previous' THEN '{"stage":"previous"}'::jsonb END);
    status := 'ok';
    value := v_plain;
    version := v.ver;
    expires_at := v.expires_at;
    RETURN;
  END IF;
  IF NOT v_denied AND v_status = 'unknown_master_key' THEN
    v_smk := COALESCE(CASE WHEN v.skv = v.akv THEN v.amk END, v.smk);
  END IF;
  v_done := :TS._ts_audit(p_tenant_id, 'secret.read', p_key_name,
    CASE WHEN NOT v_denied THEN v.ver END, 'failure', pg_catalog.upper(v_status), p_ctx,
    pg_catalog.jsonb_strip_nulls(pg_catalog.jsonb_build_object('requested_version', v_want, 'master_key_id', v_smk)));
  status := v_status;
  version := CASE WHEN NOT v_denied THEN v.ver END;
  detail := v_smk;
END
$$;

-- Bulk read: up to 100 distinct names of one tenant in one call, with the rules of a single read
-- (current versions; p_options.allow_expired), one authorisation, one audited 'secret.read' record
-- per name in the order the names were given.
CREATE FUNCTION :TS.tenant_secret_read_many(
  p_tenant_id text, p_key_names text[], p_bundle bytea,
  p_options jsonb DEFAULT '{}'::jsonb, p_ctx jsonb DEFAULT '{}'::jsonb)
RETURNS TABLE (key_name text, status text, value bytea, version integer, detail text)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = '' SET plan_cache_mode = force_generic_plan AS $$
#variable_conflict use_column
DECLARE
  v_bad text := :TS._ts_check_call(p_tenant_id, NULL, false, p_bundle, true, p_ctx);
  v_auth record;
  v_allow_expired boolean;
BEGIN
  IF v_bad IS NULL AND (p_key_names IS NULL OR pg_catalog.cardinality(p_key_names) NOT BETWEEN 1 AND 100
      OR EXISTS (SELECT 1 FROM pg_catalog.unnest(p_key_names) n(name) WHERE :TS._ts_invalid_input(p_tenant_id, n.name) IS NOT NULL
                                                                          OR n.name IS NULL)) THEN
    v_bad := 'key_names';
  END IF;
  IF v_bad IS NULL AND pg_catalog.jsonb_typeof(p_options) IS DISTINCT FROM 'object' THEN
    v_bad := 'options';
  END IF;
  IF v_bad IS NOT NULL THEN
    PERFORM :TS._ts_audit_invalid(p_tenant_id, 'secret.read', NULL, v_bad, p_ctx);
    RETURN QUERY SELECT NULL::text, 'invalid_input'::text, NULL::bytea, NULL::integer, v_bad;
    RETURN;
  END IF;
  v_allow_expired := COALESCE((p_options->>'allow_expired')::boolean, false);
  SELECT * INTO v_auth FROM :TS._ts_authorize(p_tenant_id, p_bundle);
  IF NOT :TS._ts_may_act(v_auth.status) THEN
    PERFORM :TS._ts_audit(p_tenant_id, 'secret.read', NULL, NULL, 'failure', pg_catalog.upper(:TS._ts_auth_failure(v_auth.status)), p_ctx,
      pg_catalog.jsonb_build_object('names', pg_catalog.cardinality(p_key_names)));
    RETURN QUERY SELECT NULL::text, :TS._ts_auth_failure(v_auth.status), NULL::bytea, NULL::integer,
      CASE WHEN v_auth.status = 'unknown_master_key' THEN v_auth.master_key_id END;
    RETURN;
  END IF;

  RETURN QUERY
  WITH names AS (
    SELECT d.name, d.ord FROM (SELECT DISTINCT ON (u.name) u.name, u.ord
                                 FROM pg_catalog.unnest(p_key_names) WITH ORDINALITY AS u(name, ord)
                                ORDER BY u.name, u.ord) d),
  sec AS (
    SELECT n.name, n.ord, s.current_version, s.encrypted_value, s.key_version, s.deleted_at, s.expires_at
      FROM names n LEFT JOIN :TS.tenant_secrets s ON s.tenant_id = p_tenant_id AND s.key_name = n.name),
  deks AS (
    SELECT kv.key_version, k.master_key_id,
           CASE WHEN kv.key_version = v_auth.key_version THEN v_auth.dek
                ELSE :TS._ts_unwrap_dek(p_tenant_id, k.version, k.master_key_id, k.wrapped_key,
                                        :TS._ts_bundle_kek_for(p_bundle, k.master_key_id)) END AS dek,
           CASE WHEN kv.key_version = v_auth.key_version THEN v_auth.status = 'unknown_master_key'
                ELSE :TS._ts_bundle_kek_for(p_bundle, k.master_key_id) IS NULL END AS missing_kek
      FROM (SELECT DISTINCT sec.key_version FROM sec WHERE sec.key_version IS NOT NULL) kv
      LEFT JOIN :TS.tenant_secret_keys k ON k.tenant_id = p_tenant_id AND k.version = kv.key_version),
  opened AS (
    SELECT sec.name, sec.ord, sec.current_version,
           CASE WHEN sec.current_version IS NULL OR sec.deleted_at IS NOT NULL THEN NULL
                ELSE :TS._ts_open_secret(sec.encrypted_value, d.dek, p_tenant_id, sec.name, sec.current_version, sec.key_version) END AS plain,
           sec.deleted_at, sec.expires_at, d.dek IS NULL AS no_dek, d.missing_kek, d.master_key_id
      FROM sec LEFT JOIN deks d ON d.key_version = sec.key_version),
  res AS (
    SELECT o.name, o.ord, o.current_version,
           CASE WHEN o.current_version IS NULL OR o.deleted_at IS NOT NULL THEN 'not_found'
                WHEN o.expires_at IS NOT NULL AND o.expires_at <= pg_catalog.now() AND NOT v_allow_expired THEN 'expired'
                WHEN o.no_dek AND o.missing_kek THEN 'unknown_master_key'
                WHEN o.plain IS NULL THEN 'integrity'
                ELSE 'ok' END AS st,
           o.plain, o.master_key_id
      FROM opened o),
  audited AS (
    INSERT INTO :TS.tenant_secret_audit_pending
      (chain_id, occurred_at, tenant_id, db_role, actor, action, key_name, version, outcome, error_code,
       request_id, context, details, digest, sealed_at)
    SELECT p_tenant_id, x.at, p_tenant_id, session_user, x.actor, 'secret.read', r.name, r.current_version,
           CASE WHEN r.st = 'ok' THEN 'success' ELSE 'failure' END, CASE WHEN r.st = 'ok' THEN NULL ELSE pg_catalog.upper(r.st) END,
           x.request, x.context, x.details,
           :TS._ts_audit_digest(p_tenant_id, x.at, p_tenant_id, session_user, x.actor, 'secret.read', r.name, r.current_version,
             CASE WHEN r.st = 'ok' THEN 'success' ELSE 'failure' END, CASE WHEN r.st = 'ok' THEN NULL ELSE pg_catalog.upper(r.st) END,
             x.request, x.context, x.details),
           'infinity'
      FROM res r
      CROSS JOIN LATERAL (SELECT pg_catalog.clock_timestamp() AS at,
                                 COALESCE(NULLIF(p_ctx->>'actor', ''), 'db:' || session_user) AS actor,
                                 NULLIF(p_ctx->>'request_id', '') AS request,
                                 NULLIF(COALESCE(p_ctx, '{}'::jsonb) - 'actor' - 'request_id', '{}'::jsonb) AS context,
                                 CASE WHEN r.st = 'unknown_master_key' THEN pg_catalog.jsonb_build_object('master_key_id', r.master_key_id)
                                      ELSE '{"bulk":true}'::jsonb END AS details) x
     ORDER BY r.ord
    RETURNING 1)  -- a data-modifying WITH runs to completion whether or not it is read
  SELECT r.name, r.st, CASE WHEN r.st = 'ok' THEN r.plain END,
         CASE WHEN r.st = 'not_found' THEN NULL ELSE r.current_version END,
         CASE WHEN r.st = 'unknown_master_key' THEN r.master_key_id END
    FROM res r
   ORDER BY r.ord;
END
$$;

-- ---------------------------------------------------------------------------------------------
-- Delete, list, versions
-- ---------------------------------------------------------------------------------------------

-- Soft delete: the secret reads as not found from now on and can be restored until purge_after
-- (p_options.recovery_days, 0-3650, default 30); then tenant_secret_purge_deleted destroys it.
CREATE FUNCTION :TS.tenant_secret_delete(
  p_tenant_id text, p_key_name text, p_bundle bytea, p_options jsonb DEFAULT '{}'::jsonb, p_ctx jsonb DEFAULT '{}'::jsonb)
RETURNS TABLE (status text, version integer, purge_after timestamptz)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = '' SET plan_cache_mode = force_generic_plan AS $$
#variable_conflict use_column
DECLARE
  v_bad text := :TS._ts_check_call(p_tenant_id, p_key_name, true, p_bundle, true, p_ctx);
  v_days bigint;
  v_auth record;
  v_version integer;
  v_purge timestamptz;
BEGIN
  IF v_bad IS NULL AND pg_catalog.jsonb_typeof(p_options) IS DISTINCT FROM 'object' THEN v_bad := 'options'; END IF;
  IF v_bad IS NULL THEN
    v_days := COALESCE(:TS._ts_json_int(p_options, 'recovery_days', 0, 3650), 30);
    IF v_days = -9223372036854775808 THEN v_bad := 'recovery_days'; END IF;
  END IF;
  IF v_bad IS NOT NULL THEN
    PERFORM :TS._ts_audit_invalid(p_tenant_id, 'secret.deleted', p_key_name, v_bad, p_ctx);
    RETURN QUERY SELECT 'invalid_input'::text, NULL::integer, NULL::timestamptz;
    RETURN;
  END IF;
  SELECT * INTO v_auth FROM :TS._ts_authorize(p_tenant_id, p_bundle);
  IF NOT :TS._ts_may_act(v_auth.status) THEN
    PERFORM :TS._ts_audit(p_tenant_id, 'secret.deleted', p_key_name, NULL, 'failure', pg_catalog.upper(:TS._ts_auth_failure(v_auth.status)), p_ctx, NULL);
    RETURN QUERY SELECT :TS._ts_auth_failure(v_auth.status), NULL::integer, NULL::timestamptz;
    RETURN;
  END IF;
  UPDATE :TS.tenant_secrets s
     SET deleted_at = pg_catalog.now(), purge_after = pg_catalog.now() + pg_catalog.make_interval(days => v_days::integer),
         updated_at = pg_catalog.now(), updated_by = :TS._ts_ctx_actor(p_ctx)
   WHERE s.tenant_id = p_tenant_id AND s.key_name = p_key_name AND s.deleted_at IS NULL
  RETURNING s.current_version, s.purge_after INTO v_version, v_purge;
  IF NOT FOUND THEN
    PERFORM :TS._ts_audit(p_tenant_id, 'secret.deleted', p_key_name, NULL, 'failure', 'NOT_FOUND', p_ctx, NULL);
    RETURN QUERY SELECT 'not_found'::text, NULL::integer, NULL::timestamptz;
    RETURN;
  END IF;
  PERFORM :TS._ts_audit(p_tenant_id, 'secret.deleted', p_key_name, v_version, 'success', NULL, p_ctx,
    pg_catalog.jsonb_build_object('purge_after', v_purge));
  RETURN QUERY SELECT 'ok'::text, v_version, v_purge;
END
$$;

-- Names and metadata of a tenant's secrets, never values. p_options: prefix, labels (object the
-- secret's labels must contain), due (rotate_after passed and not rotated since), expired,
-- include_deleted, after (key name to continue after), limit (1-1000, default 100). The first row's
-- status says whether the call was refused ('unauthorized', 'invalid_input': no other rows).
CREATE FUNCTION :TS.tenant_secret_list(p_tenant_id text, p_bundle bytea, p_options jsonb DEFAULT '{}'::jsonb, p_ctx jsonb DEFAULT '{}'::jsonb)
RETURNS TABLE (status text, key_name text, current_version integer, previous_version integer, description text, labels jsonb,
               expires_at timestamptz, rotate_after timestamptz, created_at timestamptz, created_by text,
               updated_at timestamptz, updated_by text, rotated_at timestamptz, deleted_at timestamptz,
               purge_after timestamptz, key_version integer)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = '' SET plan_cache_mode = force_generic_plan AS $$
#variable_conflict use_column
DECLARE
  v_opts jsonb := COALESCE(p_options, '{}'::jsonb);
  v_bad text := :TS._ts_check_call(p_tenant_id, NULL, false, p_bundle, true, p_ctx);
  v_prefix text := v_opts->>'prefix';
  v_limit bigint;
  v_auth record;
  v_count integer;
BEGIN
  IF v_bad IS NULL AND pg_catalog.jsonb_typeof(v_opts) <> 'object' THEN v_bad := 'options'; END IF;
  IF v_bad IS NULL AND v_opts ? 'labels' AND pg_catalog.jsonb_typeof(v_opts->'labels') <> 'object' THEN v_bad := 'labels'; END IF;
  IF v_bad IS NULL AND v_prefix IS NOT NULL AND pg_catalog.length(v_prefix) > 256 THEN v_bad := 'prefix'; END IF;
  IF v_bad IS NULL AND v_opts->>'after' IS NOT NULL AND :TS._ts_invalid_input(p_tenant_id, v_opts->>'after') IS NOT NULL THEN v_bad := 'after'; END IF;
  IF v_bad IS NULL THEN
    v_limit := COALESCE(:TS._ts_json_int(v_opts, 'limit', 1, 1000), 100);
    IF v_limit = -9223372036854775808 THEN v_bad := 'limit'; END IF;
  END IF;
  IF v_bad IS NOT NULL THEN
    PERFORM :TS._ts_audit_invalid(p_tenant_id, 'secret.listed', NULL, v_bad, p_ctx);
    RETURN QUERY SELECT 'invalid_input'::text, v_bad, NULL::integer, NULL::integer, NULL::text, NULL::jsonb, NULL::timestamptz,
      NULL::timestamptz, NULL::timestamptz, NULL::text, NULL::timestamptz, NULL::text, NULL::timestamptz, NULL::timestamptz,
      NULL::timestamptz, NULL::integer;
    RETURN;
  END IF;
  SELECT * INTO v_auth FROM :TS._ts_authorize(p_tenant_id, p_bundle);
  IF NOT :TS._ts_may_act(v_auth.status) THEN
    PERFORM :TS._ts_audit(p_tenant_id, 'secret.listed', NULL, NULL, 'failure', pg_catalog.upper(:TS._ts_auth_failure(v_auth.status)), p_ctx, NULL);
    RETURN QUERY SELECT :TS._ts_auth_failure(v_auth.status),
      CASE WHEN v_auth.status = 'unknown_master_key' THEN v_auth.master_key_id END, NULL::integer, NULL::integer, NULL::text, NULL::jsonb, NULL::timestamptz,
      NULL::timestamptz, NULL::timestamptz, NULL::text, NULL::timestamptz, NULL::text, NULL::timestamptz, NULL::timestamptz,
      NULL::timestamptz, NULL::integer;
    RETURN;
  END IF;
  RETURN QUERY
    SELECT 'ok'::text, s.key_name, s.current_version, s.previous_version, s.description, s.labels, s.expires_at, s.rotate_after,
           s.created_at, s.created_by, s.updated_at, s.updated_by, s.rotated_at, s.deleted_at, s.purge_after, s.key_version
      FROM :TS.tenant_secrets s
     WHERE s.tenant_id = p_tenant_id
       AND (v_prefix IS NULL OR pg_catalog.starts_with(s.key_name, v_prefix))
       AND (NOT v_opts ? 'labels' OR s.labels @> (v_opts->'labels'))
       AND (COALESCE((v_opts->>'include_deleted')::boolean, false) OR s.deleted_at IS NULL)
       AND (NOT COALESCE((v_opts->>'due')::boolean, false)
            OR (s.rotate_after <= pg_catalog.now() AND (s.rotated_at IS NULL OR s.rotated_at < s.rotate_after)))
       AND (NOT COALESCE((v_opts->>'expired')::boolean, false) OR s.expires_at <= pg_catalog.now())
       AND (v_opts->>'after' IS NULL OR s.key_name > v_opts->>'after')
     ORDER BY s.key_name
     LIMIT v_limit;
  GET DIAGNOSTICS v_count = ROW_COUNT;
  PERFORM :TS._ts_audit(p_tenant_id, 'secret.listed', NULL, NULL, 'success', NULL, p_ctx,
    pg_catalog.jsonb_strip_nulls(pg_catalog.jsonb_build_object('count', v_count, 'prefix', v_prefix)));
END
$$;

-- Version metadata of one secret (never values), newest first. The first row's status says whether
-- the call was refused or the secret was not found (no other rows then).
CREATE FUNCTION :TS.tenant_secret_list_versions(p_tenant_id text, p_key_name text, p_bundle bytea, p_ctx jsonb DEFAULT '{}'::jsonb)
RETURNS TABLE (status text, version integer, state text, origin text, created_at timestamptz, created_by text,
               destroyed_at timestamptz, is_current boolean, is_previous boolean)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = '' SET plan_cache_mode = force_generic_plan AS $$
#variable_conflict use_column
DECLARE
  v_bad text := :TS._ts_check_call(p_tenant_id, p_key_name, true, p_bundle, true, p_ctx);
  v_auth record;
  v_count integer;
BEGIN
  IF v_bad IS NOT NULL THEN
    PERFORM :TS._ts_audit_invalid(p_tenant_id, 'secret.versions_listed', p_key_name, v_bad, p_ctx);
    RETURN QUERY SELECT 'invalid_input'::text, NULL::integer, v_bad, NULL::text, NULL::timestamptz, NULL::text,
      NULL::timestamptz, NULL::boolean, NULL::boolean;
    RETURN;
  END IF;
  SELECT * INTO v_auth FROM :TS._ts_authorize(p_tenant_id, p_bundle);
  IF NOT :TS._ts_may_act(v_auth.status) THEN
    PERFORM :TS._ts_audit(p_tenant_id, 'secret.versions_listed', p_key_name, NULL, 'failure', pg_catalog.upper(:TS._ts_auth_failure(v_auth.status)), p_ctx, NULL);
    RETURN QUERY SELECT :TS._ts_auth_failure(v_auth.status), NULL::integer, NULL::text, NULL::text, NULL::timestamptz, NULL::text,
      NULL::timestamptz, NULL::boolean, NULL::boolean;
    RETURN;
  END IF;
  RETURN QUERY
    SELECT 'ok'::text, v.version, v.state, v.origin, v.created_at, v.created_by, v.destroyed_at,
           v.version = s.current_version,
           COALESCE(v.version = s.previous_version AND s.previous_expires_at > pg_catalog.now(), false)
      FROM :TS.tenant_secret_versions v
      JOIN :TS.tenant_secrets s ON s.tenant_id = v.tenant_id AND s.key_name = v.key_name
     WHERE v.tenant_id = p_tenant_id AND v.key_name = p_key_name AND s.deleted_at IS NULL
     ORDER BY v.version DESC;
  GET DIAGNOSTICS v_count = ROW_COUNT;
  IF v_count = 0 THEN
    PERFORM :TS._ts_audit(p_tenant_id, 'secret.versions_listed', p_key_name, NULL, 'failure', 'NOT_FOUND', p_ctx, NULL);
    RETURN QUERY SELECT 'not_found'::text, NULL::integer, NULL::text, NULL::text, NULL::timestamptz, NULL::text,
      NULL::timestamptz, NULL::boolean, NULL::boolean;
    RETURN;
  END IF;
  PERFORM :TS._ts_audit(p_tenant_id, 'secret.versions_listed', p_key_name, NULL, 'success', NULL, p_ctx,
    pg_catalog.jsonb_build_object('count', v_count));
END
$$;

-- ---------------------------------------------------------------------------------------------
-- The original interface, for SQL-side callers (e.g. Supabase RPC). Callers pass the tenant's key
-- bundle (the library's tenantKeyBundle()), never a master key. Failures are raised with
-- tenant-secrets' SQLSTATEs (docs/errors.md): a raised error rolls back the caller's transaction,
-- including the failure's audit record; tenant_secret_read / tenant_secret_write return a status.
-- ---------------------------------------------------------------------------------------------

CREATE FUNCTION :TS._ts_raise_status(p_status text) RETURNS void
LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
  CASE p_status
    WHEN 'ok' THEN RETURN;
    WHEN 'not_found' THEN RAISE EXCEPTION 'tenant-secrets: secret not found' USING ERRCODE = 'TS404';
    WHEN 'conflict' THEN RAISE EXCEPTION 'tenant-secrets: version conflict' USING ERRCODE = 'TS409';
    WHEN 'expired' THEN RAISE EXCEPTION 'tenant-secrets: secret expired' USING ERRCODE = 'TS410';
    WHEN 'invalid_input' THEN RAISE EXCEPTION 'tenant-secrets: invalid input' USING ERRCODE = 'TS400';
    WHEN 'unauthorized' THEN RAISE EXCEPTION 'tenant-secrets: the key bundle does not authorise this tenant' USING ERRCODE = 'TS401';
    WHEN 'unknown_master_key' THEN RAISE EXCEPTION 'tenant-secrets: data is wrapped under a master key that is not in the key bundle' USING ERRCODE = 'TSKEY';
    ELSE RAISE EXCEPTION 'tenant-secrets: integrity check failed' USING ERRCODE = 'TSINT';
  END CASE;
END
$$;

CREATE FUNCTION :TS.upsert_tenant_secret(p_tenant_id text, p_key_name text, p_plain_value text, p_key_bundle bytea)
RETURNS integer
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = '' SET plan_cache_mode = force_generic_plan AS $$
DECLARE
  r record;
BEGIN
  SELECT * INTO r FROM :TS.tenant_secret_write(p_tenant_id, p_key_name, pg_catalog.convert_to(p_plain_value, 'UTF8'),
                                                p_key_bundle, 'set', '{}', '{}'::jsonb);
  PERFORM :TS._ts_raise_status(r.status);
  RETURN r.version;
END
$$;

CREATE FUNCTION :TS.get_tenant_secret(p_tenant_id text, p_key_name text, p_key_bundle bytea)
RETURNS text
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = '' SET plan_cache_mode = force_generic_plan AS $$
DECLARE
  r record;
BEGIN
  SELECT * INTO r FROM :TS.tenant_secret_read(p_tenant_id, p_key_name, p_key_bundle, '{}'::jsonb, '{}'::jsonb);
  IF r.status = 'not_found' THEN
    RETURN NULL;
  END IF;
  PERFORM :TS._ts_raise_status(r.status);
  RETURN pg_catalog.convert_from(r.value, 'UTF8');
END
$$;

COMMENT ON FUNCTION :TS.upsert_tenant_secret(text, text, text, bytea) IS
  'tenant-secrets: create or replace a secret (original interface). Pass the tenant key bundle from tenantKeyBundle(); never a master key.';
COMMENT ON FUNCTION :TS.get_tenant_secret(text, text, bytea) IS
  'tenant-secrets: read a secret; NULL only when it does not exist (original interface).';
COMMENT ON FUNCTION :TS.tenant_secret_write(text, text, bytea, bytea, text, text, jsonb) IS
  'tenant-secrets: create, replace or rotate a secret; returns a status instead of raising so the audit record commits.';
COMMENT ON FUNCTION :TS.tenant_secret_read(text, text, bytea, jsonb, jsonb) IS
  'tenant-secrets: read the current, a numbered or the previous version of a secret; returns a status.';
COMMENT ON FUNCTION :TS.tenant_secret_read_many(text, text[], bytea, jsonb, jsonb) IS
  'tenant-secrets: read up to 100 secrets of one tenant in one call, one audited read each; returns a status per name.';
COMMENT ON FUNCTION :TS.tenant_secret_delete(text, text, bytea, jsonb, jsonb) IS
  'tenant-secrets: soft-delete a secret with a recovery window.';
COMMENT ON FUNCTION :TS.tenant_secret_list(text, bytea, jsonb, jsonb) IS
  'tenant-secrets: list names and metadata of a tenant''s secrets (never values).';
COMMENT ON FUNCTION :TS.tenant_secret_list_versions(text, text, bytea, jsonb) IS
  'tenant-secrets: list version metadata of a secret (never values).';
