-- tenant-secrets functions: import of the original code's table (renamed tenant_secrets_legacy by
-- the library first). Its rows hold pgcrypto encrypt(value, key::bytea, 'aes-cbc') (zero IV, no
-- MAC), stored either as base64 text (encode(..., 'base64'), as the original code did) or as raw
-- bytea (deployments that kept encrypt()'s result as is).

-- The legacy ciphertext stored as base64 text, or NULL when the text is not base64.
CREATE FUNCTION :TS._ts_legacy_base64(p_value text) RETURNS bytea
LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
  RETURN pg_catalog.decode(p_value, 'base64');
EXCEPTION WHEN OTHERS THEN
  RETURN NULL;
END
$$;

-- Imports the given legacy rows (by ctid, each checked to still be p_tenant_id's row of that key
-- name) of one tenant: decrypt with the original scheme, store as version 1 of our secret (origin
-- 'import'), read it back through the stored wrapped key and compare, then delete the legacy row; all
-- in the caller's transaction. Stops at the first row that fails and returns its status
-- ('not_base64', 'legacy_decrypt', 'invalid_input', 'conflict' when the secret already exists,
-- 'integrity', 'unknown_master_key', 'unauthorized'); that row stays in the legacy table. The legacy
-- key arrives as a bind parameter: it is the old, already exposed key (the original code sent it
-- with every call). p_form: 'text' (base64) or 'bytea'.
CREATE FUNCTION :TS.tenant_secret_import_legacy(
  p_tenant_id text, p_rows tid[], p_key_names text[], p_legacy_key text, p_form text, p_bundle bytea,
  p_ctx jsonb DEFAULT '{}'::jsonb)
RETURNS TABLE (status text, key_name text, version integer)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = '' SET plan_cache_mode = force_generic_plan AS $$
#variable_conflict use_column
DECLARE
  v_bad text := :TS._ts_check_call(p_tenant_id, NULL, false, p_bundle, true, p_ctx);
  v_i integer;
  v_name text;
  v_row record;
  v_cipher bytea;
  v_plain bytea;
  v_key record;
  v_sealed bytea;
  v_back bytea;
  v_actor text;
  v_fail text;
  v_found integer;
  v_done integer := 0;
BEGIN
  PERFORM :TS._ts_guard(true);
  IF v_bad IS NULL AND (p_form IS NULL OR p_form NOT IN ('text', 'bytea') OR p_legacy_key IS NULL OR p_legacy_key = ''
      OR pg_catalog.cardinality(p_rows) IS DISTINCT FROM pg_catalog.cardinality(p_key_names)
      OR pg_catalog.cardinality(p_rows) > 10000) THEN
    v_bad := 'batch';
  END IF;
  IF v_bad IS NOT NULL THEN
    PERFORM :TS._ts_audit_invalid(p_tenant_id, 'secret.imported', NULL, v_bad, p_ctx);
    RETURN QUERY SELECT 'invalid_input'::text, NULL::text, NULL::integer;
    RETURN;
  END IF;
  v_actor := :TS._ts_ctx_actor(p_ctx);
  SELECT * INTO v_key FROM :TS._ts_writer_key(p_tenant_id, p_bundle);

  FOR v_i IN 1..COALESCE(pg_catalog.cardinality(p_rows), 0) LOOP
    v_name := p_key_names[v_i];
    v_fail := NULL;
    EXECUTE CASE WHEN p_form = 'bytea'
      THEN 'SELECT l.encrypted_value AS raw, NULL::text AS value, l.rotated_at FROM :TS.tenant_secrets_legacy l
             WHERE l.ctid = $1 AND l.tenant_id::text = $2 AND l.key_name = $3 FOR UPDATE'
      ELSE 'SELECT NULL::bytea AS raw, l.encrypted_value AS value, l.rotated_at FROM :TS.tenant_secrets_legacy l
             WHERE l.ctid = $1 AND l.tenant_id::text = $2 AND l.key_name = $3 FOR UPDATE' END
      INTO v_row USING p_rows[v_i], p_tenant_id, v_name;
    GET DIAGNOSTICS v_found = ROW_COUNT;
    CONTINUE WHEN v_found = 0;  -- imported or changed meanwhile: a later batch sees it again
    IF v_key.status <> 'ok' THEN
      v_fail := :TS._ts_auth_failure(v_key.status);
    ELSIF :TS._ts_invalid_input(p_tenant_id, v_name) IS NOT NULL THEN
      v_fail := 'invalid_input';
    ELSE
      v_cipher := CASE WHEN p_form = 'bytea' THEN v_row.raw ELSE :TS._ts_legacy_base64(v_row.value) END;
      IF v_cipher IS NULL THEN
        v_fail := 'not_base64';
      ELSE
        BEGIN
          -- p_legacy_key::bytea, exactly as the original code cast its key.
          v_plain := :PGC.decrypt(v_cipher, p_legacy_key::bytea, 'aes-cbc');
          PERFORM pg_catalog.convert_from(v_plain, 'UTF8');
        EXCEPTION WHEN OTHERS THEN
          v_fail := 'legacy_decrypt';
        END;
      END IF;
      IF v_fail IS NULL AND (v_plain IS NULL OR pg_catalog.octet_length(v_plain) NOT BETWEEN 1 AND 65536) THEN
        v_fail := CASE WHEN v_plain IS NULL THEN 'legacy_decrypt' ELSE 'invalid_input' END;
      END IF;
      IF v_fail IS NULL AND EXISTS (SELECT 1 FROM :TS.tenant_secrets s WHERE s.tenant_id = p_tenant_id AND s.key_name = v_name) THEN
        v_fail := 'conflict';
      END IF;
    END IF;
    IF v_fail IS NOT NULL THEN
      PERFORM :TS._ts_audit(p_tenant_id, 'secret.imported', CASE WHEN v_fail = 'invalid_input' THEN NULL ELSE v_name END,
        NULL, 'failure', pg_catalog.upper(v_fail), p_ctx, pg_catalog.jsonb_build_object('origin', 'legacy'));
      UPDATE :TS.tenant_secret_legacy_import s SET imported = s.imported + v_done, updated_at = pg_catalog.now() WHERE s.id = 1;
      RETURN QUERY SELECT v_fail, v_name, NULL::integer;
      RETURN;
    END IF;
    v_sealed := :TS._ts_seal_secret(v_plain, v_key.dek, p_tenant_id, v_name, 1, v_key.key_version);
    INSERT INTO :TS.tenant_secrets (tenant_id, key_name, current_version, encrypted_value, key_version,
                                    created_by, updated_by, rotated_at, description)
    VALUES (p_tenant_id, v_name, 1, v_sealed, v_key.key_version, v_actor, v_actor, v_row.rotated_at,
            'imported from the legacy tenant_secrets table');
    PERFORM :TS._ts_store_version(p_tenant_id, v_name, v_sealed, 1, v_key.key_version, 'import', v_actor, 10);
    -- Read back from the tables, through the stored wrapped key, and compare.
    SELECT :TS._ts_open_secret(s.encrypted_value,
             :TS._ts_unwrap_dek(k.tenant_id, k.version, k.master_key_id, k.wrapped_key,
                                :TS._ts_bundle_kek_for(p_bundle, k.master_key_id)),
             s.tenant_id, s.key_name, s.current_version, s.key_version)
      INTO v_back
      FROM :TS.tenant_secrets s
      JOIN :TS.tenant_secret_keys k ON k.tenant_id = s.tenant_id AND k.version = s.key_version
     WHERE s.tenant_id = p_tenant_id AND s.key_name = v_name;
    IF v_back IS DISTINCT FROM v_plain THEN
      RAISE EXCEPTION 'tenant-secrets: imported secret failed read-back verification' USING ERRCODE = 'TSINT';
    END IF;
    EXECUTE 'DELETE FROM :TS.tenant_secrets_legacy l WHERE l.ctid = $1' USING p_rows[v_i];
    PERFORM :TS._ts_audit(p_tenant_id, 'secret.imported', v_name, 1, 'success', NULL, p_ctx,
      pg_catalog.jsonb_build_object('origin', 'legacy', 'form', p_form));
    v_done := v_done + 1;
    RETURN QUERY SELECT 'ok'::text, v_name, 1;
  END LOOP;
  UPDATE :TS.tenant_secret_legacy_import s SET imported = s.imported + v_done, updated_at = pg_catalog.now() WHERE s.id = 1;
END
$$;

-- Ends an import run: drops the legacy table when it is empty (locked first, so no row can arrive
-- between the check and the drop) and writes one system audit record with the rows imported by this
-- run and by every run so far. Returns the rows left.
CREATE FUNCTION :TS.tenant_secret_finish_legacy_import(p_imported integer, p_ctx jsonb DEFAULT '{}'::jsonb)
RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = '' SET plan_cache_mode = force_generic_plan AS $$
DECLARE
  v_left bigint := 0;
  v_total bigint;
BEGIN
  PERFORM :TS._ts_guard(true);
  PERFORM :TS._ts_require_operator();
  IF pg_catalog.to_regclass(':TS.tenant_secrets_legacy') IS NOT NULL THEN
    LOCK TABLE :TS.tenant_secrets_legacy IN ACCESS EXCLUSIVE MODE;
    EXECUTE 'SELECT pg_catalog.count(*) FROM :TS.tenant_secrets_legacy' INTO v_left;
    IF v_left = 0 THEN
      DROP TABLE :TS.tenant_secrets_legacy;
    END IF;
  END IF;
  UPDATE :TS.tenant_secret_legacy_import s SET runs = s.runs + 1, updated_at = pg_catalog.now() WHERE s.id = 1
  RETURNING s.imported INTO v_total;
  PERFORM :TS._ts_audit(NULL, 'legacy.import_finished', NULL, NULL,
    CASE WHEN v_left = 0 THEN 'success' ELSE 'failure' END, CASE WHEN v_left = 0 THEN NULL ELSE 'INCOMPLETE' END,
    :TS._ts_ctx_safe(p_ctx),
    pg_catalog.jsonb_build_object('imported', p_imported, 'imported_total', v_total, 'left', v_left,
                                  'table_dropped', v_left = 0));
  RETURN v_left;
END
$$;

COMMENT ON FUNCTION :TS.tenant_secret_import_legacy(text, tid[], text[], text, text, bytea, jsonb) IS
  'tenant-secrets: convert rows of the legacy table (tenant_secrets_legacy) to sealed secrets, verified, then delete them.';
COMMENT ON FUNCTION :TS.tenant_secret_finish_legacy_import(integer, jsonb) IS
  'tenant-secrets: drop the legacy table once empty and audit the end of the import (rows imported across runs).';
