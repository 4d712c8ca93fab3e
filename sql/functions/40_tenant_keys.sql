-- tenant-secrets functions: who may act for a tenant, and the tenant's data keys.
--
-- A caller acts for a tenant only with that tenant's key bundle:
--   * when the tenant has an active data key wrapped under a master key of the bundle, unwrapping it
--     with the bundle's KEK authenticates the caller (and yields the key);
--   * otherwise (no data key yet, data key under a master key the bundle lacks, a data key that fails
--     authentication), the bundle must carry a tenant proof HMAC(proof key, tenant id) under a master
--     key registered in tenant_secret_master_keys. The database holds proof keys, never anything that
--     derives a KEK.
-- Anything else is 'unauthorized', with the same answer whether the tenant or the secret exists.
--
-- Concurrency: writers take no lock on the tenant (no advisory lock either: any login can take one
-- of those, and hold it). A writer encrypts under the data key it finds active when its statement
-- starts; a tenant-key rotation switches the active key first and, before it destroys the old key,
-- waits until every transaction that was open at the switch has ended (the library does, from
-- pg_locks), then re-encrypts what those wrote. A purge marks the tenant first (no new data key for
-- it) and waits the same way before it deletes.
--
-- Besides the bundle, a key row carries what lets the library work without sending a KEK:
--   access_digest = SHA-256(HMAC-SHA256(KEK MAC half, "tenant-secrets:access:v1")), the digest of the
--                   tenant's access token under that row's master key;
--   dek_check     = HMAC-SHA256(data key, "tenant-secrets:dek-check:v1").
-- Both are set here when a key is created or unwrapped with a bundle (keys of earlier releases).

CREATE FUNCTION :TS._ts_access_token(p_kek bytea) RETURNS bytea
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT :PGC.hmac('\x74656e616e742d736563726574733a6163636573733a7631'::bytea, pg_catalog.substring(p_kek, 33, 32), 'sha256')
$$;

CREATE FUNCTION :TS._ts_access_digest(p_kek bytea) RETURNS bytea
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT :PGC.digest(:TS._ts_access_token(p_kek), 'sha256')
$$;

CREATE FUNCTION :TS._ts_dek_check(p_dek bytea) RETURNS bytea
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT :PGC.hmac('\x74656e616e742d736563726574733a64656b2d636865636b3a7631'::bytea, p_dek, 'sha256')
$$;

-- Whether a pin (tenant_secret_pins) keeps p_master_key_id from creating p_tenant's first data key.
CREATE FUNCTION :TS._ts_pinned_away(p_tenant text, p_master_key_id text) RETURNS boolean
LANGUAGE sql STABLE AS $$
  SELECT EXISTS (SELECT 1 FROM :TS.tenant_secret_pins p
                  WHERE ((p.kind = 'tenant' AND p.pattern = p_tenant) OR (p.kind = 'prefix' AND pg_catalog.starts_with(p_tenant, p.pattern)))
                    AND NOT (p_master_key_id = ANY (p.master_key_ids)))
$$;

-- status:  'ok'                 authorised; dek is the active data key (key_version, master_key_id)
--          'no_key'             authorised by proof; the tenant has no data key
--          'unknown_master_key' authorised by proof; the active key is under master_key_id, not in the bundle
--          'integrity'          authorised by proof; the active key fails authentication
--          'unauthorized'       nothing in the bundle speaks for this tenant
--          'invalid_bundle'     the bundle is malformed
CREATE FUNCTION :TS._ts_authorize(
  p_tenant text, p_bundle bytea,
  OUT status text, OUT key_version integer, OUT dek bytea, OUT master_key_id text)
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
  v_wrapped bytea;
  v_kek bytea;
  v_enrolled boolean;
BEGIN
  IF NOT COALESCE(:TS._ts_bundle_valid(p_bundle), false) THEN
    status := 'invalid_bundle';
    RETURN;
  END IF;
  SELECT k.version, k.wrapped_key, k.master_key_id, k.access_digest IS NOT NULL AND k.dek_check IS NOT NULL
    INTO key_version, v_wrapped, master_key_id, v_enrolled
    FROM :TS.tenant_secret_keys k WHERE k.tenant_id = p_tenant AND k.state = 'active';
  IF key_version IS NOT NULL THEN
    v_kek := :TS._ts_bundle_kek_for(p_bundle, master_key_id);
    IF v_kek IS NOT NULL THEN
      dek := :TS._ts_unwrap_dek(p_tenant, key_version, master_key_id, v_wrapped, v_kek);
      IF dek IS NOT NULL THEN
        IF NOT v_enrolled THEN
          -- A key of an earlier release, unwrapped with the bundle: from now on the library may read
          -- with the tenant's access token and write with the data key.
          UPDATE :TS.tenant_secret_keys k SET access_digest = :TS._ts_access_digest(v_kek), dek_check = :TS._ts_dek_check(dek)
           WHERE k.tenant_id = p_tenant AND k.version = _ts_authorize.key_version AND k.master_key_id = _ts_authorize.master_key_id;
        END IF;
        status := 'ok';
        RETURN;
      END IF;
    END IF;
  END IF;
  IF NOT :TS._ts_proof_ok(p_tenant, p_bundle) THEN
    status := 'unauthorized';
    key_version := NULL;
    master_key_id := NULL;
    RETURN;
  END IF;
  status := CASE WHEN key_version IS NULL THEN 'no_key' WHEN v_kek IS NULL THEN 'unknown_master_key' ELSE 'integrity' END;
END
$$;

-- The tenant's active data key for a writer, created under the bundle's first (current) master key
-- when the tenant has none and the bundle proves the tenant. The caller holds the tenant lock (shared).
CREATE FUNCTION :TS._ts_writer_key(
  p_tenant text, p_bundle bytea,
  OUT status text, OUT key_version integer, OUT dek bytea, OUT master_key_id text)
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
  a record;
  v_new bytea;
BEGIN
  FOR v_attempt IN 1..3 LOOP
    a := :TS._ts_authorize(p_tenant, p_bundle);
    status := a.status;
    key_version := a.key_version;
    dek := a.dek;
    master_key_id := a.master_key_id;
    IF a.status <> 'no_key' THEN
      RETURN;
    END IF;
    IF NOT :TS._ts_master_key_id_valid(:TS._ts_bundle_id(p_bundle, 1)) THEN
      status := 'invalid_bundle';
      RETURN;
    END IF;
    IF :TS._ts_pinned_away(p_tenant, :TS._ts_bundle_id(p_bundle, 1)) THEN
      status := 'unauthorized';
      key_version := NULL;
      RETURN;
    END IF;
    IF EXISTS (SELECT 1 FROM :TS.tenant_secret_purges g WHERE g.tenant_id = p_tenant) THEN
      status := 'purging';
      key_version := NULL;
      RETURN;
    END IF;
    -- First write for this tenant. A concurrent first writer may win the race: look again.
    SELECT COALESCE(pg_catalog.max(k.version), 0) + 1 INTO key_version FROM :TS.tenant_secret_keys k WHERE k.tenant_id = p_tenant;
    v_new := :PGC.gen_random_bytes(64);
    INSERT INTO :TS.tenant_secret_keys (tenant_id, version, state, master_key_id, wrapped_key, access_digest, dek_check)
    VALUES (p_tenant, key_version, 'active', :TS._ts_bundle_id(p_bundle, 1),
            :TS._ts_wrap_dek(p_tenant, key_version, v_new, :TS._ts_bundle_id(p_bundle, 1), :TS._ts_bundle_kek(p_bundle, 1)),
            :TS._ts_access_digest(:TS._ts_bundle_kek(p_bundle, 1)), :TS._ts_dek_check(v_new))
    ON CONFLICT DO NOTHING;
    IF FOUND THEN
      status := 'ok';
      dek := v_new;
      master_key_id := :TS._ts_bundle_id(p_bundle, 1);
      RETURN;
    END IF;
  END LOOP;
  status := 'conflict';
  key_version := NULL;
  dek := NULL;
  master_key_id := NULL;
END
$$;

-- Maps an authorisation status to what a caller is told: only an authorised caller learns about the
-- tenant's keys.
CREATE FUNCTION :TS._ts_auth_failure(p_status text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT CASE p_status WHEN 'invalid_bundle' THEN 'unauthorized' WHEN 'purging' THEN 'conflict' ELSE p_status END
$$;

-- Whether an authorisation lets the caller act on the tenant's secrets: the bundle unwrapped the
-- tenant's active data key ('ok'), or the tenant has no data key and the bundle proves the tenant
-- ('no_key': there is nothing to act on yet). A tenant proof alone (another registered master key,
-- a data key that fails authentication) never reaches secrets wrapped under a key the caller cannot
-- unwrap: such callers get the same refusal whether a secret exists or not.
CREATE FUNCTION :TS._ts_may_act(p_status text) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT p_status IS NOT NULL AND p_status IN ('ok', 'no_key')
$$;

-- ---------------------------------------------------------------------------------------------
-- Master key registration
-- ---------------------------------------------------------------------------------------------

-- Registers a master key (its fingerprint id and proof key) so that it may vouch for new tenants.
-- Allowed to the owner of the schema (migrate() runs as it), or to a caller whose bundle proves an
-- already registered master key (p_bundle: a key bundle of the system pseudo-tenant ''), e.g. the
-- application during a master-key rotation. Idempotent; an id registered with another proof key is a
-- conflict. Audited on the system chain (the proof key never is).
CREATE FUNCTION :TS.tenant_secret_register_master_key(
  p_master_key_id text, p_proof_key bytea, p_bundle bytea DEFAULT NULL, p_ctx jsonb DEFAULT '{}'::jsonb)
RETURNS text
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = '' SET plan_cache_mode = force_generic_plan AS $$
DECLARE
  v_owner oid := (SELECT c.relowner FROM pg_catalog.pg_class c WHERE c.oid = ':TS.tenant_secret_master_keys'::regclass);
  v_ctx jsonb := :TS._ts_ctx_safe(p_ctx);
  v_existing bytea;
  v_status text;
BEGIN
  PERFORM :TS._ts_guard(true);
  IF NOT :TS._ts_master_key_id_valid(p_master_key_id) OR pg_catalog.octet_length(p_proof_key) IS DISTINCT FROM 32
     OR :TS._ts_ctx_invalid(p_ctx) IS NOT NULL THEN
    v_status := 'invalid_input';
  ELSIF NOT pg_catalog.pg_has_role(session_user, v_owner, 'MEMBER')
        AND NOT (p_bundle IS NOT NULL AND :TS._ts_proof_ok('', p_bundle)) THEN
    v_status := 'forbidden';
  ELSE
    SELECT m.proof_key INTO v_existing FROM :TS.tenant_secret_master_keys m WHERE m.master_key_id = p_master_key_id;
    IF FOUND THEN
      v_status := CASE WHEN v_existing = p_proof_key THEN 'exists' ELSE 'conflict' END;
    ELSE
      INSERT INTO :TS.tenant_secret_master_keys (master_key_id, proof_key, registered_by)
      VALUES (p_master_key_id, p_proof_key, :TS._ts_ctx_actor(v_ctx))
      ON CONFLICT (master_key_id) DO NOTHING;
      v_status := CASE WHEN FOUND THEN 'ok' ELSE 'exists' END;
    END IF;
  END IF;
  IF v_status <> 'exists' THEN
    PERFORM :TS._ts_audit(NULL, 'master_key.registered', NULL, NULL,
      CASE WHEN v_status = 'ok' THEN 'success' ELSE 'failure' END,
      CASE WHEN v_status = 'ok' THEN NULL ELSE pg_catalog.upper(v_status) END, v_ctx,
      pg_catalog.jsonb_build_object('master_key_id',
        CASE WHEN :TS._ts_master_key_id_valid(p_master_key_id) THEN p_master_key_id END));
  END IF;
  RETURN v_status;
END
$$;

-- Unregisters a master key: it can no longer vouch for tenants (create a first data key, or prove a
-- tenant whose data key it does not wrap). Data keys it still wraps keep working for holders of that
-- key (unwrapping authorises them): rotateMasterKey() moves them. For a retired or leaked key, after
-- its successor is registered. Owner or operator roles. Refused for the only registered key (no new
-- tenant could be created), unless p_force. Audited on the system chain.
-- Returns 'ok', 'not_registered', 'last_key' or 'invalid_input'.
CREATE FUNCTION :TS.tenant_secret_unregister_master_key(
  p_master_key_id text, p_force boolean DEFAULT false, p_ctx jsonb DEFAULT '{}'::jsonb)
RETURNS text
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = '' SET plan_cache_mode = force_generic_plan AS $$
DECLARE
  v_ctx jsonb := :TS._ts_ctx_safe(p_ctx);
  v_status text;
  v_wrapping bigint;
BEGIN
  PERFORM :TS._ts_guard(true);
  PERFORM :TS._ts_require_operator();
  IF NOT :TS._ts_master_key_id_valid(p_master_key_id) OR p_force IS NULL THEN
    v_status := 'invalid_input';
  ELSE
    -- Serialise with registrations and other unregistrations (the last-key rule).
    PERFORM 1 FROM :TS.tenant_secret_master_keys m FOR UPDATE;
    IF NOT EXISTS (SELECT 1 FROM :TS.tenant_secret_master_keys m WHERE m.master_key_id = p_master_key_id) THEN
      v_status := 'not_registered';
    ELSIF NOT p_force AND NOT EXISTS (SELECT 1 FROM :TS.tenant_secret_master_keys m WHERE m.master_key_id <> p_master_key_id) THEN
      v_status := 'last_key';
    ELSE
      DELETE FROM :TS.tenant_secret_master_keys m WHERE m.master_key_id = p_master_key_id;
      v_status := 'ok';
    END IF;
  END IF;
  SELECT pg_catalog.count(*) INTO v_wrapping FROM :TS.tenant_secret_keys k
   WHERE k.master_key_id = p_master_key_id AND k.wrapped_key IS NOT NULL;
  PERFORM :TS._ts_audit(NULL, 'master_key.unregistered', NULL, NULL,
    CASE WHEN v_status = 'ok' THEN 'success' ELSE 'failure' END,
    CASE WHEN v_status = 'ok' THEN NULL ELSE pg_catalog.upper(v_status) END, v_ctx,
    pg_catalog.jsonb_strip_nulls(pg_catalog.jsonb_build_object(
      'master_key_id', CASE WHEN :TS._ts_master_key_id_valid(p_master_key_id) THEN p_master_key_id END,
      'data_keys_still_wrapped', CASE WHEN v_status = 'ok' THEN v_wrapping END,
      'forced', CASE WHEN p_force THEN true END)));
  RETURN v_status;
END
$$;

COMMENT ON FUNCTION :TS.tenant_secret_register_master_key(text, bytea, bytea, jsonb) IS
  'tenant-secrets: register a master key (id and proof key) allowed to vouch for new tenants; owner, or a caller proving a registered key.';
COMMENT ON FUNCTION :TS.tenant_secret_unregister_master_key(text, boolean, jsonb) IS
  'tenant-secrets: unregister a master key so it can no longer vouch for tenants (retired or leaked keys); owner or operator.';

-- ---------------------------------------------------------------------------------------------
-- Tenant pins
-- ---------------------------------------------------------------------------------------------
-- Several applications with their own master keys may share one installation; each registered key
-- may create the first data key of any tenant that has none. A pin (operators only) restricts that
-- for a tenant id (p_kind 'tenant') or every tenant id starting with a prefix ('prefix') to the given
-- master keys. Existing data keys are not affected: only the holder of the master key that wraps them
-- can use them anyway.

-- Creates or replaces a pin. Returns 'ok' or 'invalid_input'. Audited on the system chain.
CREATE FUNCTION :TS.tenant_secret_pin(p_kind text, p_pattern text, p_master_key_ids text[], p_ctx jsonb DEFAULT '{}'::jsonb)
RETURNS text
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = '' SET plan_cache_mode = force_generic_plan AS $$
DECLARE
  v_ctx jsonb := :TS._ts_ctx_safe(p_ctx);
  v_ok boolean;
BEGIN
  PERFORM :TS._ts_guard(true);
  PERFORM :TS._ts_require_operator();
  v_ok := p_kind IN ('tenant', 'prefix') AND p_pattern IS NOT NULL AND p_pattern <> ''
      AND pg_catalog.octet_length(p_pattern) <= 128 AND p_pattern ~ '^[A-Za-z0-9][A-Za-z0-9._:@-]*$'
      AND pg_catalog.cardinality(p_master_key_ids) BETWEEN 1 AND 16
      AND NOT EXISTS (SELECT 1 FROM pg_catalog.unnest(p_master_key_ids) i(id) WHERE NOT :TS._ts_master_key_id_valid(i.id))
      AND :TS._ts_ctx_invalid(p_ctx) IS NULL;
  IF NOT COALESCE(v_ok, false) THEN
    PERFORM :TS._ts_audit(NULL, 'tenant.pinned', NULL, NULL, 'failure', 'INVALID_INPUT', v_ctx, NULL);
    RETURN 'invalid_input';
  END IF;
  INSERT INTO :TS.tenant_secret_pins AS p (kind, pattern, master_key_ids, created_by)
  VALUES (p_kind, p_pattern, ARRAY(SELECT DISTINCT i.id FROM pg_catalog.unnest(p_master_key_ids) i(id) ORDER BY 1),
          :TS._ts_ctx_actor(v_ctx))
  ON CONFLICT (kind, pattern) DO UPDATE SET master_key_ids = EXCLUDED.master_key_ids, created_at = pg_catalog.now(),
                                            created_by = EXCLUDED.created_by;
  PERFORM :TS._ts_audit(NULL, 'tenant.pinned', NULL, NULL, 'success', NULL, v_ctx,
    pg_catalog.jsonb_build_object('kind', p_kind, 'pattern', p_pattern, 'master_key_ids', pg_catalog.to_jsonb(p_master_key_ids)));
  RETURN 'ok';
END
$$;

-- Removes a pin. Returns 'ok' or 'not_found'. Audited on the system chain.
CREATE FUNCTION :TS.tenant_secret_unpin(p_kind text, p_pattern text, p_ctx jsonb DEFAULT '{}'::jsonb)
RETURNS text
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = '' SET plan_cache_mode = force_generic_plan AS $$
DECLARE
  v_ctx jsonb := :TS._ts_ctx_safe(p_ctx);
BEGIN
  PERFORM :TS._ts_guard(true);
  PERFORM :TS._ts_require_operator();
  DELETE FROM :TS.tenant_secret_pins p WHERE p.kind = p_kind AND p.pattern = p_pattern;
  IF NOT FOUND THEN
    RETURN 'not_found';
  END IF;
  PERFORM :TS._ts_audit(NULL, 'tenant.unpinned', NULL, NULL, 'success', NULL, v_ctx,
    pg_catalog.jsonb_build_object('kind', p_kind, 'pattern', p_pattern));
  RETURN 'ok';
END
$$;

CREATE FUNCTION :TS.tenant_secret_pins_list()
RETURNS TABLE (kind text, pattern text, master_key_ids text[], created_at timestamptz, created_by text)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = '' AS $$
  SELECT :TS._ts_require_operator();
  SELECT p.kind, p.pattern, p.master_key_ids, p.created_at, p.created_by FROM :TS.tenant_secret_pins p ORDER BY p.kind, p.pattern
$$;

COMMENT ON FUNCTION :TS.tenant_secret_pin(text, text, text[], jsonb) IS
  'tenant-secrets: pin a tenant id (or a prefix) to the master keys allowed to create its first data key; operators.';
COMMENT ON FUNCTION :TS.tenant_secret_unpin(text, text, jsonb) IS
  'tenant-secrets: remove a tenant pin; operators.';
COMMENT ON FUNCTION :TS.tenant_secret_pins_list() IS
  'tenant-secrets: the tenant pins; operators.';
