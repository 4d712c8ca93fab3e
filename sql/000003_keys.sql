-- tenant-secrets migration 000003: key management (issue 4).
--
--   * master-key rotation: re-wrap tenant data keys under the current master key, batch by batch
--     (tenant_secret_rewrap_keys), then one system audit record (tenant_secret_finish_master_rotation);
--   * key status: tenant_secret_key_status is in 000005 (it also counts audit checkpoints, 000004);
--   * tenant-key rotation: new data-key version (tenant_secret_rotate_key), re-encryption of the
--     tenant's secrets and versions in batches (tenant_secret_reencrypt_batch), destruction of
--     retired keys nothing references any more (tenant_secret_destroy_retired_keys);
--   * crypto-shredding of a tenant (tenant_secret_purge_tenant);
--   * import of the seed's legacy table (tenant_secret_import_legacy, tenant_secret_finish_legacy_import).
--
-- Same conventions as 000001: SECURITY DEFINER with search_path = '', qualified names, domain
-- outcomes returned as a status so the failure's audit record commits, no key material or values in
-- audit records (master key fingerprint ids and counts only).

-- ---------------------------------------------------------------------------------------------
-- Master-key rotation
-- ---------------------------------------------------------------------------------------------

-- Re-wraps every data key (active or retired, not destroyed) of the given tenants that is not
-- wrapped under the current master key p_key_ids[1]. p_keks holds, per tenant of p_tenants and in
-- the same order, the tenant's KEK under every master key of p_key_ids (stride = cardinality of
-- p_key_ids). Only wrapped_key / master_key_id change, with a plain UPDATE: the row lock
-- (FOR NO KEY UPDATE) does not conflict with writers' FOR KEY SHARE, and no secret row is touched.
-- Each re-wrapped key is unwrapped again and compared before the UPDATE. One audit record per key
-- in the tenant's chain. A key wrapped under a master key outside the ring is reported
-- ('unknown_master_key', with its id) and left as it is.
CREATE FUNCTION :TS.tenant_secret_rewrap_keys(
  p_tenants text[], p_key_ids text[], p_keks bytea[], p_ctx jsonb DEFAULT '{}'::jsonb)
RETURNS TABLE (tenant_id text, key_version integer, status text, from_master_key_id text)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = '' AS $$
#variable_conflict use_column
DECLARE
  v_stride integer := pg_catalog.cardinality(p_key_ids);
  v_current text := p_key_ids[1];
  r record;
  v_pos integer;
  v_keks bytea[];
  v_old record;
  v_new bytea;
  v_check record;
BEGIN
  IF v_stride IS NULL OR v_stride = 0 OR v_current IS NULL
     OR pg_catalog.cardinality(p_keks) <> v_stride * pg_catalog.cardinality(p_tenants) THEN
    RAISE EXCEPTION 'tenant-secrets: malformed key bundle' USING ERRCODE = 'TS400';
  END IF;
  FOR r IN
    SELECT k.tenant_id, k.version, k.master_key_id, k.wrapped_key
      FROM :TS.tenant_secret_keys k
     WHERE k.tenant_id = ANY (p_tenants) AND k.wrapped_key IS NOT NULL AND k.master_key_id <> v_current
     ORDER BY k.tenant_id, k.version
       FOR NO KEY UPDATE OF k
  LOOP
    v_pos := pg_catalog.array_position(p_tenants, r.tenant_id);
    v_keks := p_keks[(v_pos - 1) * v_stride + 1 : v_pos * v_stride];
    SELECT * INTO v_old FROM :TS._ts_unwrap_dek(r.tenant_id, r.version, r.master_key_id, r.wrapped_key, p_key_ids, v_keks);
    IF v_old.status <> 'ok' THEN
      PERFORM :TS._ts_audit(r.tenant_id, 'tenant_key.rewrapped', NULL, r.version, 'failure', pg_catalog.upper(v_old.status),
        p_ctx, pg_catalog.jsonb_build_object('from_master_key_id', r.master_key_id, 'to_master_key_id', v_current));
      RETURN QUERY SELECT r.tenant_id, r.version, v_old.status, r.master_key_id;
      CONTINUE;
    END IF;
    v_new := :TS._ts_wrap_dek(r.tenant_id, r.version, v_old.dek, v_current, v_keks[1]);
    SELECT * INTO v_check FROM :TS._ts_unwrap_dek(r.tenant_id, r.version, v_current, v_new, p_key_ids, v_keks);
    IF v_check.status <> 'ok' OR v_check.dek <> v_old.dek THEN
      RAISE EXCEPTION 'tenant-secrets: re-wrapped data key failed verification' USING ERRCODE = 'TSINT';
    END IF;
    UPDATE :TS.tenant_secret_keys k SET wrapped_key = v_new, master_key_id = v_current
     WHERE k.tenant_id = r.tenant_id AND k.version = r.version;
    PERFORM :TS._ts_audit(r.tenant_id, 'tenant_key.rewrapped', NULL, r.version, 'success', NULL, p_ctx,
      pg_catalog.jsonb_build_object('from_master_key_id', r.master_key_id, 'to_master_key_id', v_current));
    RETURN QUERY SELECT r.tenant_id, r.version, 'ok'::text, r.master_key_id;
  END LOOP;
END
$$;

-- The next p_limit tenants (by id, after p_after: keyset pagination) that have a data key not
-- wrapped under p_current_id. Progress is the data itself, so a new run simply starts again.
CREATE FUNCTION :TS.tenant_secret_rewrap_pending(p_current_id text, p_after text, p_limit integer)
RETURNS SETOF text
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = '' AS $$
  SELECT k.tenant_id FROM :TS.tenant_secret_keys k
   WHERE k.wrapped_key IS NOT NULL AND k.master_key_id <> p_current_id AND k.tenant_id > COALESCE(p_after, '')
   GROUP BY k.tenant_id ORDER BY k.tenant_id LIMIT LEAST(GREATEST(p_limit, 1), 10000)
$$;

-- The system audit record closing a master-key rotation run (tenant NULL: the system chain), with
-- what the run did and what still depends on other master keys afterwards.
CREATE FUNCTION :TS.tenant_secret_finish_master_rotation(
  p_current_id text, p_rewrapped integer, p_failed integer, p_batches integer, p_ctx jsonb DEFAULT '{}'::jsonb)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = '' AS $$
DECLARE
  v_remaining jsonb;
  v_details jsonb;
BEGIN
  SELECT COALESCE(pg_catalog.jsonb_object_agg(m.master_key_id, m.keys), '{}'::jsonb) INTO v_remaining
    FROM (SELECT k.master_key_id, pg_catalog.count(*) AS keys FROM :TS.tenant_secret_keys k
           WHERE k.wrapped_key IS NOT NULL AND k.master_key_id <> p_current_id GROUP BY k.master_key_id) m;
  v_details := pg_catalog.jsonb_build_object('to_master_key_id', p_current_id, 'rewrapped', p_rewrapped,
    'failed', p_failed, 'batches', p_batches, 'remaining_by_master_key', v_remaining);
  PERFORM :TS._ts_audit(NULL, 'master_key.rotated', NULL, NULL,
    CASE WHEN p_failed = 0 AND v_remaining = '{}'::jsonb THEN 'success' ELSE 'failure' END,
    CASE WHEN p_failed = 0 AND v_remaining = '{}'::jsonb THEN NULL ELSE 'INCOMPLETE' END, p_ctx, v_details);
  RETURN v_details;
END
$$;

-- ---------------------------------------------------------------------------------------------
-- Tenant-key rotation
-- ---------------------------------------------------------------------------------------------

-- Makes a new data-key version the tenant's active key and retires the old one. Takes FOR UPDATE on
-- the active key row first, so it waits for writers that hold FOR KEY SHARE on it and no writer
-- can encrypt under the old key after this commits. When an earlier rotation is unfinished (a
-- retired key still holds key material), returns 'resumed' and creates nothing: the caller then
-- finishes that rotation. 'not_found' when the tenant has no data key at all.
CREATE FUNCTION :TS.tenant_secret_rotate_key(
  p_tenant_id text, p_key_ids text[], p_keks bytea[], p_ctx jsonb DEFAULT '{}'::jsonb)
RETURNS TABLE (status text, key_version integer, previous_key_version integer)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = '' AS $$
#variable_conflict use_column
DECLARE
  v_old record;
  v_new integer;
  v_retired integer;
BEGIN
  IF :TS._ts_invalid_input(p_tenant_id, NULL) IS NOT NULL OR p_key_ids IS NULL
     OR pg_catalog.cardinality(p_key_ids) = 0 OR pg_catalog.octet_length(p_keks[1]) IS DISTINCT FROM 64 THEN
    PERFORM :TS._ts_audit(NULL, 'tenant_key.rotated', NULL, NULL, 'failure', 'INVALID_INPUT', p_ctx, NULL);
    RETURN QUERY SELECT 'invalid_input'::text, NULL::integer, NULL::integer;
    RETURN;
  END IF;
  -- A concurrent rotation may retire the row we wait for: then look again (a new statement sees
  -- the key it activated).
  FOR v_attempt IN 1..3 LOOP
    SELECT k.version, k.master_key_id INTO v_old
      FROM :TS.tenant_secret_keys k WHERE k.tenant_id = p_tenant_id AND k.state = 'active' FOR UPDATE;
    EXIT WHEN FOUND OR NOT EXISTS (SELECT 1 FROM :TS.tenant_secret_keys k WHERE k.tenant_id = p_tenant_id);
  END LOOP;
  IF v_old.version IS NULL THEN
    PERFORM :TS._ts_audit(p_tenant_id, 'tenant_key.rotated', NULL, NULL, 'failure', 'NOT_FOUND', p_ctx, NULL);
    RETURN QUERY SELECT 'not_found'::text, NULL::integer, NULL::integer;
    RETURN;
  END IF;
  SELECT pg_catalog.max(k.version) INTO v_retired
    FROM :TS.tenant_secret_keys k WHERE k.tenant_id = p_tenant_id AND k.state = 'retired';
  IF v_retired IS NOT NULL THEN
    RETURN QUERY SELECT 'resumed'::text, v_old.version, v_retired;
    RETURN;
  END IF;
  SELECT pg_catalog.max(k.version) + 1 INTO v_new FROM :TS.tenant_secret_keys k WHERE k.tenant_id = p_tenant_id;
  UPDATE :TS.tenant_secret_keys k SET state = 'retired', retired_at = pg_catalog.now()
   WHERE k.tenant_id = p_tenant_id AND k.version = v_old.version;
  INSERT INTO :TS.tenant_secret_keys (tenant_id, version, state, master_key_id, wrapped_key)
  VALUES (p_tenant_id, v_new, 'active', p_key_ids[1],
          :TS._ts_wrap_dek(p_tenant_id, v_new, :PGC.gen_random_bytes(32), p_key_ids[1], p_keks[1]));
  PERFORM :TS._ts_audit(p_tenant_id, 'tenant_key.rotated', NULL, v_new, 'success', NULL, p_ctx,
    pg_catalog.jsonb_build_object('previous_key_version', v_old.version, 'master_key_id', p_key_ids[1]));
  RETURN QUERY SELECT 'ok'::text, v_new, v_old.version;
END
$$;

-- Opens one ciphertext with the data-key version it names and seals it again under the active data
-- key (the key version is part of the AAD, so the new ciphertext is bound to it). Returns the new
-- ciphertext, or NULL with status 'integrity' (detail: the key name) or 'unknown_master_key'
-- (detail: the missing master key id).
CREATE FUNCTION :TS._ts_reseal(
  p_tenant text, p_name text, p_version integer, p_old_key_version integer, p_blob bytea,
  p_key_ids text[], p_keks bytea[], p_new_dek bytea, p_new_key_version integer,
  OUT sealed bytea, OUT status text, OUT detail text)
LANGUAGE plpgsql VOLATILE SET search_path = '' AS $$
DECLARE
  v_old record;
  v_plain bytea;
BEGIN
  SELECT * INTO v_old FROM :TS.tenant_secret_keys k, :TS._ts_unwrap_dek(p_tenant, k.version, k.master_key_id,
      k.wrapped_key, p_key_ids, p_keks) u WHERE k.tenant_id = p_tenant AND k.version = p_old_key_version;
  v_plain := CASE WHEN v_old.status = 'ok'
                  THEN :TS._ts_open_secret(p_blob, v_old.dek, p_tenant, p_name, p_version, p_old_key_version) END;
  IF v_plain IS NULL THEN
    status := CASE WHEN v_old.status = 'unknown_master_key' THEN 'unknown_master_key' ELSE 'integrity' END;
    detail := CASE WHEN status = 'unknown_master_key' THEN v_old.master_key_id ELSE p_name END;
    RETURN;
  END IF;
  sealed := :TS._ts_seal_secret(v_plain, p_new_dek, p_tenant, p_name, p_version, p_new_key_version);
  status := 'ok';
END
$$;

-- Re-encrypts up to p_limit ciphertexts (current values in tenant_secrets, then enabled rows of
-- tenant_secret_versions) of one tenant that are not under its active data key: open with the old
-- key version in the AAD, seal again with the active one. Rows are locked FOR UPDATE (as writers
-- do) and the active key row FOR KEY SHARE (as writers do). Returns how many were re-encrypted and
-- how many remain; a ciphertext that does not open stops the batch with 'integrity' (detail: the
-- key name), a data key under a master key outside the ring with 'unknown_master_key' (detail: its id).
CREATE FUNCTION :TS.tenant_secret_reencrypt_batch(
  p_tenant_id text, p_key_ids text[], p_keks bytea[], p_limit integer, p_ctx jsonb DEFAULT '{}'::jsonb)
RETURNS TABLE (status text, secrets integer, versions integer, remaining bigint, detail text)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = '' AS $$
#variable_conflict use_column
DECLARE
  v_active record;
  v_new record;
  v_re record;
  v_secrets integer := 0;
  v_versions integer := 0;
  v_status text := 'ok';
  v_detail text;
  v_remaining bigint;
  r record;
BEGIN
  SELECT k.version, k.master_key_id, k.wrapped_key INTO v_active
    FROM :TS.tenant_secret_keys k WHERE k.tenant_id = p_tenant_id AND k.state = 'active' FOR KEY SHARE;
  IF NOT FOUND THEN
    RETURN QUERY SELECT 'not_found'::text, 0, 0, 0::bigint, NULL::text;
    RETURN;
  END IF;
  SELECT * INTO v_new FROM :TS._ts_unwrap_dek(p_tenant_id, v_active.version, v_active.master_key_id,
                                             v_active.wrapped_key, p_key_ids, p_keks);
  IF v_new.status <> 'ok' THEN
    v_status := v_new.status;
    v_detail := CASE WHEN v_status = 'unknown_master_key' THEN v_active.master_key_id END;
  END IF;

  <<work>>
  FOR r IN
    SELECT s.key_name, s.current_version AS version, s.key_version, s.encrypted_value AS blob
      FROM :TS.tenant_secrets s
     WHERE v_status = 'ok' AND s.tenant_id = p_tenant_id AND s.key_version <> v_active.version
     ORDER BY s.key_name LIMIT GREATEST(p_limit, 1) FOR UPDATE OF s
  LOOP
    SELECT * INTO v_re FROM :TS._ts_reseal(p_tenant_id, r.key_name, r.version, r.key_version, r.blob,
                                           p_key_ids, p_keks, v_new.dek, v_active.version);
    IF v_re.status <> 'ok' THEN
      v_status := v_re.status;
      v_detail := v_re.detail;
      EXIT work;
    END IF;
    UPDATE :TS.tenant_secrets s
       SET encrypted_value = v_re.sealed, key_version = v_active.version
     WHERE s.tenant_id = p_tenant_id AND s.key_name = r.key_name;
    v_secrets := v_secrets + 1;
  END LOOP;

  IF v_status = 'ok' AND v_secrets < p_limit THEN
    <<work2>>
    FOR r IN
      SELECT v.key_name, v.version, v.key_version, v.encrypted_value AS blob
        FROM :TS.tenant_secret_versions v
       WHERE v.tenant_id = p_tenant_id AND v.encrypted_value IS NOT NULL AND v.key_version <> v_active.version
       ORDER BY v.key_name, v.version LIMIT GREATEST(p_limit - v_secrets, 1) FOR UPDATE OF v
    LOOP
      SELECT * INTO v_re FROM :TS._ts_reseal(p_tenant_id, r.key_name, r.version, r.key_version, r.blob,
                                             p_key_ids, p_keks, v_new.dek, v_active.version);
      IF v_re.status <> 'ok' THEN
        v_status := v_re.status;
        v_detail := v_re.detail;
        EXIT work2;
      END IF;
      UPDATE :TS.tenant_secret_versions v
         SET encrypted_value = v_re.sealed, key_version = v_active.version
       WHERE v.tenant_id = p_tenant_id AND v.key_name = r.key_name AND v.version = r.version;
      v_versions := v_versions + 1;
    END LOOP;
  END IF;

  SELECT (SELECT pg_catalog.count(*) FROM :TS.tenant_secrets s
           WHERE s.tenant_id = p_tenant_id AND s.key_version <> v_active.version)
       + (SELECT pg_catalog.count(*) FROM :TS.tenant_secret_versions v
           WHERE v.tenant_id = p_tenant_id AND v.encrypted_value IS NOT NULL AND v.key_version <> v_active.version)
    INTO v_remaining;
  IF v_secrets + v_versions > 0 OR v_status <> 'ok' THEN
    PERFORM :TS._ts_audit(p_tenant_id, 'tenant_key.reencrypted', NULL, v_active.version,
      CASE WHEN v_status = 'ok' THEN 'success' ELSE 'failure' END,
      CASE WHEN v_status = 'ok' THEN NULL ELSE pg_catalog.upper(v_status) END, p_ctx,
      pg_catalog.jsonb_strip_nulls(pg_catalog.jsonb_build_object('secrets', v_secrets, 'versions', v_versions,
        'remaining', v_remaining, 'master_key_id', CASE WHEN v_status = 'unknown_master_key' THEN v_detail END,
        'key_name', CASE WHEN v_status = 'integrity' THEN v_detail END)));
  END IF;
  RETURN QUERY SELECT v_status, v_secrets, v_versions, v_remaining, v_detail;
END
$$;

-- Destroys the tenant's retired data keys that no ciphertext references any more: each key row is
-- locked FOR UPDATE and checked against tenant_secrets and tenant_secret_versions in the same
-- transaction, then its wrapped key is erased (state 'destroyed'). Returns the destroyed versions
-- and the retired versions still in use.
CREATE FUNCTION :TS.tenant_secret_destroy_retired_keys(p_tenant_id text, p_ctx jsonb DEFAULT '{}'::jsonb)
RETURNS TABLE (destroyed integer[], still_used integer[])
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = '' AS $$
#variable_conflict use_column
DECLARE
  r record;
  v_destroyed integer[] := '{}';
  v_used integer[] := '{}';
BEGIN
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
  RETURN QUERY SELECT v_destroyed, v_used;
END
$$;

-- ---------------------------------------------------------------------------------------------
-- Crypto-shredding
-- ---------------------------------------------------------------------------------------------

-- Deletes a tenant's data keys, secrets and versions in one transaction (key rows locked FOR UPDATE
-- first, so in-flight writers finish before). The audit chain stays, with one 'tenant.purged'
-- record holding counts only. Idempotent: purging an unknown tenant succeeds with zero counts.
CREATE FUNCTION :TS.tenant_secret_purge_tenant(p_tenant_id text, p_ctx jsonb DEFAULT '{}'::jsonb)
RETURNS TABLE (status text, keys integer, secrets integer, versions integer)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = '' AS $$
#variable_conflict use_column
DECLARE
  v_keys integer;
  v_secrets integer;
  v_versions integer;
BEGIN
  IF :TS._ts_invalid_input(p_tenant_id, NULL) IS NOT NULL THEN
    PERFORM :TS._ts_audit(NULL, 'tenant.purged', NULL, NULL, 'failure', 'INVALID_INPUT', p_ctx, NULL);
    RETURN QUERY SELECT 'invalid_input'::text, 0, 0, 0;
    RETURN;
  END IF;
  PERFORM 1 FROM :TS.tenant_secret_keys k WHERE k.tenant_id = p_tenant_id FOR UPDATE;
  DELETE FROM :TS.tenant_secret_versions v WHERE v.tenant_id = p_tenant_id;
  GET DIAGNOSTICS v_versions = ROW_COUNT;
  DELETE FROM :TS.tenant_secrets s WHERE s.tenant_id = p_tenant_id;
  GET DIAGNOSTICS v_secrets = ROW_COUNT;
  DELETE FROM :TS.tenant_secret_keys k WHERE k.tenant_id = p_tenant_id;
  GET DIAGNOSTICS v_keys = ROW_COUNT;
  PERFORM :TS._ts_audit(p_tenant_id, 'tenant.purged', NULL, NULL, 'success', NULL, p_ctx,
    pg_catalog.jsonb_build_object('keys', v_keys, 'secrets', v_secrets, 'versions', v_versions));
  RETURN QUERY SELECT 'ok'::text, v_keys, v_secrets, v_versions;
END
$$;

-- ---------------------------------------------------------------------------------------------
-- Legacy import (the seed's table, renamed to tenant_secrets_legacy by the library first)
-- ---------------------------------------------------------------------------------------------

-- Imports the named legacy rows of one tenant: decrypt with the seed's scheme
-- (decrypt(decode(encrypted_value, 'base64'), key::bytea, 'aes-cbc'), then UTF-8), store as version 1
-- of our secret (origin 'import'), read it back through the stored wrapped key and compare, then
-- delete the legacy row: all in the caller's transaction. Stops at the first row that fails and
-- returns its status ('legacy_decrypt', 'invalid_input', 'conflict' when the secret already exists,
-- 'integrity', 'unknown_master_key'); that row stays in the legacy table. The legacy key arrives as
-- a bind parameter: it is the old, already exposed key (the seed sent it with every call).
CREATE FUNCTION :TS.tenant_secret_import_legacy(
  p_tenant_id text, p_key_names text[], p_legacy_key text, p_key_ids text[], p_keks bytea[],
  p_ctx jsonb DEFAULT '{}'::jsonb)
RETURNS TABLE (status text, key_name text, version integer)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = '' AS $$
#variable_conflict use_column
DECLARE
  v_name text;
  v_row record;
  v_plain bytea;
  v_key record;
  v_sealed bytea;
  v_back record;
  v_actor text := :TS._ts_ctx_actor(p_ctx);
  v_fail text;
BEGIN
  FOREACH v_name IN ARRAY p_key_names LOOP
    v_fail := NULL;
    SELECT l.encrypted_value, l.rotated_at INTO v_row FROM :TS.tenant_secrets_legacy l
     WHERE l.tenant_id::text = p_tenant_id AND l.key_name = v_name FOR UPDATE;
    CONTINUE WHEN NOT FOUND;  -- imported meanwhile by another run
    IF :TS._ts_invalid_input(p_tenant_id, v_name) IS NOT NULL THEN
      v_fail := 'invalid_input';
    ELSE
      BEGIN
        v_plain := :PGC.decrypt(pg_catalog.decode(v_row.encrypted_value, 'base64'), p_legacy_key::bytea, 'aes-cbc');
        PERFORM pg_catalog.convert_from(v_plain, 'UTF8');
      EXCEPTION WHEN OTHERS THEN
        v_fail := 'legacy_decrypt';
      END;
      IF v_fail IS NULL AND (v_plain IS NULL OR pg_catalog.octet_length(v_plain) > 65536) THEN
        v_fail := CASE WHEN v_plain IS NULL THEN 'legacy_decrypt' ELSE 'invalid_input' END;
      END IF;
    END IF;
    IF v_fail IS NULL THEN
      SELECT * INTO v_key FROM :TS._ts_active_dek(p_tenant_id, p_key_ids, p_keks);
      IF v_key.status <> 'ok' THEN
        v_fail := v_key.status;
      ELSIF EXISTS (SELECT 1 FROM :TS.tenant_secrets s WHERE s.tenant_id = p_tenant_id AND s.key_name = v_name) THEN
        v_fail := 'conflict';
      END IF;
    END IF;
    IF v_fail IS NULL THEN
      v_sealed := :TS._ts_seal_secret(v_plain, v_key.dek, p_tenant_id, v_name, 1, v_key.key_version);
      INSERT INTO :TS.tenant_secrets (tenant_id, key_name, current_version, encrypted_value, key_version,
                                      created_by, updated_by, rotated_at, description)
      VALUES (p_tenant_id, v_name, 1, v_sealed, v_key.key_version, v_actor, v_actor, v_row.rotated_at,
              'imported from the legacy tenant_secrets table');
      PERFORM :TS._ts_store_version(p_tenant_id, v_name, v_sealed, 1, v_key.key_version, 'import', v_actor, 10);
      -- Read back from the tables, through the stored wrapped key, and compare.
      SELECT u.status, :TS._ts_open_secret(s.encrypted_value, u.dek, s.tenant_id, s.key_name, s.current_version, s.key_version) AS plain
        INTO v_back
        FROM :TS.tenant_secrets s
        JOIN :TS.tenant_secret_keys k ON k.tenant_id = s.tenant_id AND k.version = s.key_version
        CROSS JOIN LATERAL :TS._ts_unwrap_dek(k.tenant_id, k.version, k.master_key_id, k.wrapped_key, p_key_ids, p_keks) u
       WHERE s.tenant_id = p_tenant_id AND s.key_name = v_name;
      IF v_back.status IS DISTINCT FROM 'ok' OR v_back.plain IS DISTINCT FROM v_plain THEN
        RAISE EXCEPTION 'tenant-secrets: imported secret failed read-back verification' USING ERRCODE = 'TSINT';
      END IF;
      DELETE FROM :TS.tenant_secrets_legacy l WHERE l.tenant_id::text = p_tenant_id AND l.key_name = v_name;
      PERFORM :TS._ts_audit(p_tenant_id, 'secret.imported', v_name, 1, 'success', NULL, p_ctx,
        pg_catalog.jsonb_build_object('origin', 'legacy'));
      RETURN QUERY SELECT 'ok'::text, v_name, 1;
    ELSE
      PERFORM :TS._ts_audit(p_tenant_id, 'secret.imported', CASE WHEN v_fail = 'invalid_input' THEN NULL ELSE v_name END,
        NULL, 'failure', pg_catalog.upper(v_fail), p_ctx, pg_catalog.jsonb_build_object('origin', 'legacy'));
      RETURN QUERY SELECT v_fail, v_name, NULL::integer;
      RETURN;
    END IF;
  END LOOP;
END
$$;

-- Ends an import: drops the legacy table when it is empty (locked first, so no row can arrive
-- between the check and the drop) and writes one system audit record. Returns the rows left.
CREATE FUNCTION :TS.tenant_secret_finish_legacy_import(p_imported integer, p_ctx jsonb DEFAULT '{}'::jsonb)
RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = '' AS $$
DECLARE
  v_left bigint;
BEGIN
  IF pg_catalog.to_regclass(':TS.tenant_secrets_legacy') IS NULL THEN
    RETURN 0;
  END IF;
  LOCK TABLE :TS.tenant_secrets_legacy IN ACCESS EXCLUSIVE MODE;
  SELECT pg_catalog.count(*) INTO v_left FROM :TS.tenant_secrets_legacy;
  IF v_left = 0 THEN
    DROP TABLE :TS.tenant_secrets_legacy;
  END IF;
  PERFORM :TS._ts_audit(NULL, 'legacy.import_finished', NULL, NULL,
    CASE WHEN v_left = 0 THEN 'success' ELSE 'failure' END, CASE WHEN v_left = 0 THEN NULL ELSE 'INCOMPLETE' END, p_ctx,
    pg_catalog.jsonb_build_object('imported', p_imported, 'left', v_left, 'table_dropped', v_left = 0));
  RETURN v_left;
END
$$;

COMMENT ON FUNCTION :TS.tenant_secret_rewrap_keys(text[], text[], bytea[], jsonb) IS
  'tenant-secrets: re-wrap the given tenants'' data keys under the current master key (master-key rotation batch); touches no secret.';
COMMENT ON FUNCTION :TS.tenant_secret_rewrap_pending(text, text, integer) IS
  'tenant-secrets: next tenants with a data key not wrapped under the given master key (keyset pagination).';
COMMENT ON FUNCTION :TS.tenant_secret_finish_master_rotation(text, integer, integer, integer, jsonb) IS
  'tenant-secrets: write the system audit record that ends a master-key rotation run.';
COMMENT ON FUNCTION :TS.tenant_secret_rotate_key(text, text[], bytea[], jsonb) IS
  'tenant-secrets: make a new data-key version active for a tenant and retire the old one.';
COMMENT ON FUNCTION :TS.tenant_secret_reencrypt_batch(text, text[], bytea[], integer, jsonb) IS
  'tenant-secrets: re-encrypt a batch of a tenant''s ciphertexts under its active data key.';
COMMENT ON FUNCTION :TS.tenant_secret_destroy_retired_keys(text, jsonb) IS
  'tenant-secrets: erase retired data keys that no ciphertext references any more.';
COMMENT ON FUNCTION :TS.tenant_secret_purge_tenant(text, jsonb) IS
  'tenant-secrets: crypto-shred a tenant: delete its data keys, secrets and versions; the audit trail stays.';
COMMENT ON FUNCTION :TS.tenant_secret_import_legacy(text, text[], text, text[], bytea[], jsonb) IS
  'tenant-secrets: convert rows of the seed''s legacy table (tenant_secrets_legacy) to sealed secrets, verified, then delete them.';
COMMENT ON FUNCTION :TS.tenant_secret_finish_legacy_import(integer, jsonb) IS
  'tenant-secrets: drop the legacy table once empty and audit the end of the import.';
