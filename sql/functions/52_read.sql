-- tenant-secrets functions: reading secrets with the tenant's key bundle, opened by pgcrypto (the SQL interface).
--
-- Entry points are SECURITY DEFINER with search_path = '' and qualified names, and plan their
-- statements generically (plan_cache_mode): a custom plan would see key material and values as
-- constants, and could fold cryptographic expressions into the plan (where an EXPLAIN-logging
-- extension could print them), besides re-planning every call. Domain outcomes are returned as a
-- status, not raised, so a failure's audit record commits with the attempt. Every tenant-scoped
-- function authorises the caller first and reveals nothing, not even whether a secret exists, to a
-- caller it does not authorise.

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
       request_id, context, details, sealed_at)
    SELECT p_tenant_id, x.at, p_tenant_id, session_user, x.actor, 'secret.read', r.name, r.current_version,
           CASE WHEN r.st = 'ok' THEN 'success' ELSE 'failure' END, CASE WHEN r.st = 'ok' THEN NULL ELSE pg_catalog.upper(r.st) END,
           x.request, x.context, x.details, 'infinity'
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

COMMENT ON FUNCTION :TS.tenant_secret_read(text, text, bytea, jsonb, jsonb) IS
  'tenant-secrets: read the current, a numbered or the previous version of a secret; returns a status.';
COMMENT ON FUNCTION :TS.tenant_secret_read_many(text, text[], bytea, jsonb, jsonb) IS
  'tenant-secrets: read up to 100 secrets of one tenant in one call, one audited read each; returns a status per name.';
