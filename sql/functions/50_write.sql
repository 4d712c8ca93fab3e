-- tenant-secrets functions: writing a secret with the tenant's key bundle (the SQL interface), and the write core the library's data-key path shares.
--
-- Entry points are SECURITY DEFINER with search_path = '' and qualified names, and plan their
-- statements generically (plan_cache_mode): a custom plan would see key material and values as
-- constants, and could fold cryptographic expressions into the plan (where an EXPLAIN-logging
-- extension could print them), besides re-planning every call. Domain outcomes are returned as a
-- status, not raised, so a failure's audit record commits with the attempt. Every tenant-scoped
-- function authorises the caller first and reveals nothing, not even whether a secret exists, to a
-- caller it does not authorise.

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
RETURNS text LANGUAGE sql VOLATILE AS $$  -- VOLATILE as _ts_guard (a function declared less volatile than its body is not inlined)
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

-- The write, once the caller is authorised and the data key p_dek of version p_kv (the tenant's
-- active key) is known: shared by tenant_secret_write (the key unwrapped with the caller's bundle)
-- and tenant_secret_put (the key sent by the library, checked against dek_check). p_if, p_max,
-- p_grace and p_opts as validated by the caller. Checks for foreign triggers first.
CREATE FUNCTION :TS._ts_write_keyed(
  p_tenant_id text, p_key_name text, p_value bytea, p_dek bytea, p_kv integer, p_mode text, p_opts jsonb,
  p_if bigint, p_max bigint, p_grace bigint, p_ctx jsonb,
  OUT status text, OUT version integer, OUT detail text)
LANGUAGE plpgsql VOLATILE AS $$
#variable_conflict use_column
DECLARE
  v_action text := CASE p_mode WHEN 'rotate' THEN 'secret.rotated' ELSE 'secret.updated' END;
  v_opts jsonb := p_opts;
  v_if bigint := p_if;
  v_max bigint := p_max;
  v_grace bigint := p_grace;
  v_actor text := :TS._ts_ctx_actor(p_ctx);
  v_kv integer := p_kv;
  v_dek bytea := p_dek;
  v_row :TS.tenant_secrets%ROWTYPE;
  v_new integer;
  v_sealed bytea;
  v_destroyed integer[];
  v_done boolean := :TS._ts_guard(false);
  v_prev integer;
  v_attempt integer := 0;
BEGIN
  -- Concurrent writers of one secret queue here, on its row, before the statement below takes its
  -- snapshot: a statement that waited for the row inside would see the versions written by the
  -- writers it waited for only through the row itself, and leave them out of retention. (A caller
  -- that holds the row already, tenant_secret_put, passes straight through.)
  PERFORM 1 FROM :TS.tenant_secrets s WHERE s.tenant_id = p_tenant_id AND s.key_name = p_key_name FOR UPDATE;
  -- Usual case, one statement: replace the value of an existing secret (its conditions are
  -- re-checked on the row as it now stands), store the version, destroy what falls out of
  -- retention. Any other case falls through to the loop below.
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
DECLARE
  v_action text := CASE p_mode WHEN 'rotate' THEN 'secret.rotated' ELSE 'secret.updated' END;
  v_opts jsonb := :TS._ts_json(p_options);
  v_bad text := :TS._ts_check_call(p_tenant_id, p_key_name, true, p_bundle, true, p_ctx);
  v_if bigint;
  v_max bigint;
  v_grace bigint;
  v_key record;
  v_done boolean;
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

  -- The tenant's active data key, unwrapped with the bundle's KEK (which authorises the caller), or a
  -- first data key when the bundle proves a tenant that has none.
  v_key := :TS._ts_writer_key(p_tenant_id, p_bundle);
  IF v_key.status <> 'ok' THEN
    v_done := :TS._ts_audit(p_tenant_id, v_action, p_key_name, NULL, 'failure', pg_catalog.upper(:TS._ts_auth_failure(v_key.status)), p_ctx,
      CASE WHEN v_key.status = 'unknown_master_key' THEN pg_catalog.jsonb_build_object('master_key_id', v_key.master_key_id)
           WHEN v_key.status = 'purging' THEN '{"reason":"tenant_purge"}'::jsonb END);
    status := :TS._ts_auth_failure(v_key.status);
    detail := CASE WHEN v_key.status = 'unknown_master_key' THEN v_key.master_key_id WHEN v_key.status = 'purging' THEN 'tenant_purge' END;
    RETURN;
  END IF;
  SELECT w.status, w.version, w.detail INTO status, version, detail
    FROM :TS._ts_write_keyed(p_tenant_id, p_key_name, p_value, v_key.dek, v_key.key_version, p_mode, v_opts,
                             v_if, v_max, v_grace, p_ctx) w;
END
$$;

COMMENT ON FUNCTION :TS.tenant_secret_write(text, text, bytea, bytea, text, text, jsonb) IS
  'tenant-secrets: create, replace or rotate a secret; returns a status instead of raising so the audit record commits.';
