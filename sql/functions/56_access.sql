-- tenant-secrets functions: the library's data path, which hands the database no key-encryption key.
--
--   tenant_secret_fetch       releases a secret's ciphertext and the wrapped data key that opens it,
--                             to a caller presenting the tenant's access token; the library opens
--                             both (byte-compatible with 10_crypto.sql). No plaintext, no KEK.
--   tenant_secret_fetch_many  the same for up to 100 names.
--   tenant_secret_fetch_batch the same for up to 100 concurrent reads of any tenants, in one statement.
--   tenant_secret_put         writes with the data key of the tenant's active key version, which the
--                             caller proves by the key itself (checked against dek_check); pgcrypto
--                             seals the value as on every path.
--   tenant_secret_put_batch   the same for up to 100 concurrent writes of existing secrets, in one statement.
--   tenant_secret_report      records an integrity failure the library found when opening a value.
--
-- Credentials (built by the library from its keyring): 0x02 || n (1..16) || n entries of
--   [ master key id (19 ASCII bytes) || access token (32) || tenant proof (32) ]
-- access token = HMAC-SHA256(KEK MAC half, "tenant-secrets:access:v1"), checked against the active
-- key row's access_digest (SHA-256 of it); the tenant proof (as in key bundles) only answers the
-- cases the token cannot: a tenant with no data key ('not_found' / 'no_key'), a key of an earlier
-- release ('enroll': the library then calls once with its key bundle, which fills the digests), or a
-- key under a master key the caller lacks ('unknown_master_key').
--
-- Every call is one statement on its usual path: authorisation, the lookups, and the audit record
-- (a data-modifying WITH clause). Its main query checks for foreign triggers before anything is
-- written: PostgreSQL runs a WITH clause that the main query does not read after the main query, and
-- the statement's locks, taken before it starts, keep a trigger from being attached in between.
-- Answers that only redirect the library ('enroll', 'stale_key', 'no_key') are not operations and
-- are not audited; the call the library makes next is.

CREATE FUNCTION :TS._ts_creds_valid(p bytea) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT p IS NOT NULL AND pg_catalog.octet_length(p) >= 85 AND pg_catalog.get_byte(p, 0) = 2
     AND pg_catalog.get_byte(p, 1) BETWEEN 1 AND 16 AND pg_catalog.octet_length(p) = 2 + 83 * pg_catalog.get_byte(p, 1)
$$;

-- The access token for master key p_id in the credentials, or NULL. The id must sit at the start of
-- an entry (an id inside token bytes is not an id).
CREATE FUNCTION :TS._ts_creds_token(p bytea, p_id text) RETURNS bytea
LANGUAGE sql STABLE PARALLEL SAFE AS $$  -- STABLE as convert_to (a function declared less volatile than its body is not inlined)
  SELECT CASE WHEN pg_catalog.position(p, pg_catalog.convert_to(p_id, 'UTF8')) > 0
               AND (pg_catalog.position(p, pg_catalog.convert_to(p_id, 'UTF8')) - 3) % 83 = 0
              THEN pg_catalog.substring(p, pg_catalog.position(p, pg_catalog.convert_to(p_id, 'UTF8')) + 19, 32) END
$$;

-- Whether some entry proves p_tenant under a registered master key.
CREATE FUNCTION :TS._ts_creds_proof_ok(p_tenant text, p bytea) RETURNS boolean
LANGUAGE plpgsql STABLE AS $$
DECLARE
  v_key bytea;
BEGIN
  IF NOT COALESCE(:TS._ts_creds_valid(p), false) THEN
    RETURN false;
  END IF;
  FOR i IN 1..pg_catalog.get_byte(p, 1) LOOP
    SELECT m.proof_key INTO v_key FROM :TS.tenant_secret_master_keys m
     WHERE m.master_key_id = pg_catalog.encode(pg_catalog.substring(p, 3 + 83 * (i - 1), 19), 'escape');
    IF FOUND AND :PGC.digest(:PGC.hmac(:TS._ts_proof_message(p_tenant), v_key, 'sha256'), 'sha256')
               = :PGC.digest(pg_catalog.substring(p, 3 + 83 * (i - 1) + 51, 32), 'sha256') THEN
      RETURN true;
    END IF;
  END LOOP;
  RETURN false;
END
$$;

-- What a caller that the token did not authorise is told, and recorded when it is an outcome:
-- 'not_found' (proven tenant without data), 'no_key' (the same, for a writer: create it with the
-- key bundle), 'enroll', 'unknown_master_key', 'unauthorized'.
CREATE FUNCTION :TS._ts_creds_refusal(
  p_tenant text, p_creds bytea, p_akv integer, p_amk text, p_adig bytea, p_writer boolean,
  OUT status text, OUT detail text)
LANGUAGE plpgsql STABLE AS $$
BEGIN
  IF NOT :TS._ts_creds_proof_ok(p_tenant, p_creds) THEN
    status := 'unauthorized';
  ELSIF p_akv IS NULL THEN
    status := CASE WHEN p_writer THEN 'no_key' ELSE 'not_found' END;
  ELSIF p_adig IS NULL THEN
    status := 'enroll';
  ELSIF :TS._ts_creds_token(p_creds, p_amk) IS NULL THEN
    status := 'unknown_master_key';
    detail := p_amk;
  ELSE
    -- The caller proves the tenant under a registered key, and holds that master key, yet its token
    -- does not match: the stored digest was changed.
    status := 'integrity';
  END IF;
END
$$;

-- ---------------------------------------------------------------------------------------------
-- Read
-- ---------------------------------------------------------------------------------------------

-- One secret's ciphertext, for the library to open: the current version (p_version NULL), a numbered
-- version (p_version > 0) or the previous version while its grace period lasts (p_version = 0). An
-- expired secret is refused ('expired') unless p_allow_expired. Returns the version, the data-key
-- version and master key that wrap its data key, the wrapped data key, the sealed value, and which
-- key version is active (the library then writes with it).
CREATE FUNCTION :TS.tenant_secret_fetch(
  p_tenant_id text, p_key_name text, p_creds bytea, p_version integer DEFAULT NULL,
  p_allow_expired boolean DEFAULT false, p_ctx jsonb DEFAULT '{}'::jsonb,
  OUT status text, OUT version integer, OUT key_version integer, OUT master_key_id text,
  OUT wrapped_key bytea, OUT sealed bytea, OUT expires_at timestamptz, OUT detail text,
  OUT active_key_version integer)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = '' SET plan_cache_mode = force_generic_plan AS $$
#variable_conflict use_column
DECLARE
  -- The audit context goes into every record, so it is checked first. The other inputs are checked
  -- only when the lookup finds nothing to release: a secret found under the tenant's token has a
  -- valid tenant id and name (both were checked when it was written), so on the usual path the
  -- rules cannot fail, and an invalid name is never written to the trail (it is 'invalid' below).
  v_bad text := CASE WHEN :TS._ts_ctx_invalid(p_ctx) IS NOT NULL THEN 'context' END;
  v_akv integer;
  v_amk text;
  v_adig bytea;
  v_done boolean;
  v_refusal record;
BEGIN
  IF v_bad IS NULL THEN
    WITH r AS (
      SELECT a.version AS akv, a.master_key_id AS amk, a.access_digest AS adig, a.wrapped_key AS awrapped,
             COALESCE(:TS._ts_creds_valid(p_creds)
                      AND :PGC.digest(:TS._ts_creds_token(p_creds, a.master_key_id), 'sha256') = a.access_digest, false) AS authorized,
             s.deleted_at, s.expires_at AS exp,
             COALESCE(tv.version, CASE WHEN p_version IS NULL THEN s.current_version END) AS ver,
             CASE WHEN p_version IS NULL THEN 'enabled' ELSE tv.state END AS vstate,
             CASE WHEN p_version IS NULL THEN s.encrypted_value ELSE tv.encrypted_value END AS blob,
             CASE WHEN p_version IS NULL THEN s.key_version ELSE tv.key_version END AS skv
        FROM (SELECT) z
        LEFT JOIN :TS.tenant_secret_keys a ON a.tenant_id = p_tenant_id AND a.state = 'active'
        LEFT JOIN :TS.tenant_secrets s ON s.tenant_id = p_tenant_id AND s.key_name = p_key_name
        LEFT JOIN :TS.tenant_secret_versions tv ON p_version IS NOT NULL AND tv.tenant_id = p_tenant_id AND tv.key_name = p_key_name
             AND tv.version = CASE WHEN p_version = 0
                                   THEN CASE WHEN s.previous_expires_at > pg_catalog.now() THEN s.previous_version END
                                   ELSE p_version END),
    -- The data key that wraps the value: the active one (already read) unless the value is older.
    k AS (
      SELECT r.*, CASE WHEN r.skv = r.akv THEN r.amk
                       ELSE (SELECT k.master_key_id FROM :TS.tenant_secret_keys k WHERE k.tenant_id = p_tenant_id AND k.version = r.skv) END AS kmk,
                  CASE WHEN r.skv = r.akv THEN r.awrapped
                       ELSE (SELECT k.wrapped_key FROM :TS.tenant_secret_keys k WHERE k.tenant_id = p_tenant_id AND k.version = r.skv) END AS kwrapped
        FROM r),
    res AS (
      SELECT k.akv, k.amk, k.adig, k.ver, k.exp, k.blob, k.skv, k.kmk, k.kwrapped,
             CASE WHEN NOT k.authorized THEN 'refused'
                  WHEN k.ver IS NULL OR k.deleted_at IS NOT NULL OR k.vstate IS DISTINCT FROM 'enabled' THEN
                       CASE WHEN p_key_name IS NULL OR p_version < 0 OR :TS._ts_invalid_input(p_tenant_id, p_key_name) IS NOT NULL
                            THEN 'invalid' ELSE 'not_found' END
                  WHEN k.exp IS NOT NULL AND k.exp <= pg_catalog.now() AND NOT COALESCE(p_allow_expired, false) THEN 'expired'
                  WHEN k.kwrapped IS NULL THEN 'integrity'
                  ELSE 'ok' END AS st
        FROM k),
    aud AS (
      INSERT INTO :TS.tenant_secret_audit_pending
        (chain_id, occurred_at, tenant_id, db_role, actor, action, key_name, version, outcome, error_code,
         request_id, context, details, sealed_at)
      SELECT p_tenant_id, pg_catalog.clock_timestamp(), p_tenant_id, session_user,
             COALESCE(NULLIF(p_ctx->>'actor', ''), 'db:' || session_user), 'secret.read', p_key_name,
             CASE WHEN res.st = 'not_found' THEN NULL ELSE res.ver END,
             CASE WHEN res.st = 'ok' THEN 'success' ELSE 'failure' END,
             CASE WHEN res.st = 'ok' THEN NULL ELSE pg_catalog.upper(res.st) END,
             NULLIF(p_ctx->>'request_id', ''), NULLIF(COALESCE(p_ctx, '{}'::jsonb) - 'actor' - 'request_id', '{}'::jsonb),
             CASE WHEN p_version = 0 THEN '{"stage":"previous"}'::jsonb
                  WHEN p_version IS NOT NULL AND res.st <> 'ok' THEN pg_catalog.jsonb_build_object('requested_version', p_version) END,
             'infinity'
        FROM res WHERE res.st NOT IN ('refused', 'invalid'))
    SELECT CASE WHEN :ONLY_OUR_TRIGGERS_ON_PENDING OR :FOREIGN_TRIGGER_ON_PENDING IS NULL THEN res.st
                WHEN :TS._ts_refuse_foreign_trigger(:FOREIGN_TRIGGER_ON_PENDING) THEN NULL END,
           CASE WHEN res.st IN ('ok', 'expired', 'integrity') THEN res.ver END,
           CASE WHEN res.st = 'ok' THEN res.skv END, CASE WHEN res.st = 'ok' THEN res.kmk END,
           CASE WHEN res.st = 'ok' THEN res.kwrapped END, CASE WHEN res.st = 'ok' THEN res.blob END,
           CASE WHEN res.st IN ('ok', 'expired') THEN res.exp END,
           res.akv, res.amk, res.adig
      INTO status, version, key_version, master_key_id, wrapped_key, sealed, expires_at, v_akv, v_amk, v_adig
      FROM res;
    active_key_version := CASE WHEN status = 'ok' THEN v_akv END;
    IF status NOT IN ('refused', 'invalid') THEN
      RETURN;
    END IF;
    -- Nothing was released or recorded: the inputs decide first, then the credentials.
    version := NULL;
    expires_at := NULL;
    v_bad := CASE WHEN :TS._ts_invalid_input(p_tenant_id, p_key_name) IS NOT NULL THEN :TS._ts_invalid_input(p_tenant_id, p_key_name)
                  WHEN p_key_name IS NULL THEN 'key_name'
                  WHEN NOT :TS._ts_creds_valid(p_creds) THEN 'credentials'
                  WHEN p_version < 0 THEN 'version' END;
  END IF;
  IF v_bad IS NOT NULL THEN
    v_done := :TS._ts_guard(false);
    v_done := :TS._ts_audit_invalid(p_tenant_id, 'secret.read', p_key_name, v_bad, p_ctx);
    status := 'invalid_input';
    detail := v_bad;
    active_key_version := NULL;
    RETURN;
  END IF;
  v_refusal := :TS._ts_creds_refusal(p_tenant_id, p_creds, v_akv, v_amk, v_adig, false);
  status := v_refusal.status;
  detail := v_refusal.detail;
  IF status <> 'enroll' THEN
    v_done := :TS._ts_guard(false);
    v_done := :TS._ts_audit(p_tenant_id, 'secret.read', p_key_name, NULL, 'failure', pg_catalog.upper(status), p_ctx,
      pg_catalog.jsonb_strip_nulls(pg_catalog.jsonb_build_object('master_key_id', detail,
        'requested_version', CASE WHEN p_version > 0 THEN p_version END,
        'stage', CASE WHEN p_version = 0 THEN 'previous' END)));
  END IF;
END
$$;

-- Up to 100 distinct names of one tenant, current versions, one token check, one audit record per
-- name in the order given. Rows: (key_name, status, version, key_version, master_key_id, wrapped_key,
-- sealed, expires_at, detail). A refused call returns one row with key_name NULL.
CREATE FUNCTION :TS.tenant_secret_fetch_many(
  p_tenant_id text, p_key_names text[], p_creds bytea, p_allow_expired boolean DEFAULT false, p_ctx jsonb DEFAULT '{}'::jsonb)
RETURNS TABLE (key_name text, status text, version integer, key_version integer, master_key_id text,
               wrapped_key bytea, sealed bytea, expires_at timestamptz, detail text, active_key_version integer)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = '' SET plan_cache_mode = force_generic_plan AS $$
#variable_conflict use_column
DECLARE
  v_bad text := CASE WHEN :TS._ts_ctx_invalid(p_ctx) IS NOT NULL THEN 'context'
                     WHEN :TS._ts_invalid_input(p_tenant_id, NULL) IS NOT NULL THEN 'tenant_id'
                     WHEN NOT :TS._ts_creds_valid(p_creds) THEN 'credentials'
                     WHEN p_key_names IS NULL OR pg_catalog.cardinality(p_key_names) NOT BETWEEN 1 AND 100 THEN 'key_names'
                     WHEN EXISTS (SELECT 1 FROM pg_catalog.unnest(p_key_names) n(name)
                                   WHERE n.name IS NULL OR :TS._ts_invalid_input(p_tenant_id, n.name) IS NOT NULL) THEN 'key_names' END;
  v_a record;
  v_refusal record;
  v_done boolean;
BEGIN
  IF v_bad IS NOT NULL THEN
    v_done := :TS._ts_guard(false);
    v_done := :TS._ts_audit_invalid(p_tenant_id, 'secret.read', NULL, v_bad, p_ctx);
    RETURN QUERY SELECT NULL::text, 'invalid_input'::text, NULL::integer, NULL::integer, NULL::text, NULL::bytea, NULL::bytea,
      NULL::timestamptz, v_bad, NULL::integer;
    RETURN;
  END IF;
  SELECT a.version AS akv, a.master_key_id AS amk, a.access_digest AS adig, a.wrapped_key AS awrapped,
         COALESCE(:PGC.digest(:TS._ts_creds_token(p_creds, a.master_key_id), 'sha256') = a.access_digest, false) AS authorized
    INTO v_a FROM (SELECT) z LEFT JOIN :TS.tenant_secret_keys a ON a.tenant_id = p_tenant_id AND a.state = 'active';
  IF NOT v_a.authorized THEN
    v_refusal := :TS._ts_creds_refusal(p_tenant_id, p_creds, v_a.akv, v_a.amk, v_a.adig, false);
    IF v_refusal.status = 'not_found' THEN
      -- A proven tenant without any data: every name is not found (the usual path below says so).
      NULL;
    ELSE
      IF v_refusal.status <> 'enroll' THEN
        v_done := :TS._ts_guard(false);
        v_done := :TS._ts_audit(p_tenant_id, 'secret.read', NULL, NULL, 'failure', pg_catalog.upper(v_refusal.status), p_ctx,
          pg_catalog.jsonb_strip_nulls(pg_catalog.jsonb_build_object('names', pg_catalog.cardinality(p_key_names), 'master_key_id', v_refusal.detail)));
      END IF;
      RETURN QUERY SELECT NULL::text, v_refusal.status, NULL::integer, NULL::integer, NULL::text, NULL::bytea, NULL::bytea,
        NULL::timestamptz, v_refusal.detail, NULL::integer;
      RETURN;
    END IF;
  END IF;
  RETURN QUERY
  WITH names AS (
    SELECT d.name, d.ord FROM (SELECT DISTINCT ON (u.name) u.name, u.ord
                                 FROM pg_catalog.unnest(p_key_names) WITH ORDINALITY AS u(name, ord)
                                ORDER BY u.name, u.ord) d),
  res AS (
    -- The data key of each value: the active one (read above) unless the value is older, so that
    -- the usual batch makes no lookup of the keys per name.
    SELECT x.*, CASE WHEN x.st0 = 'ok' AND x.kwrapped IS NULL THEN 'integrity' ELSE x.st0 END AS st
      FROM (SELECT n.name, n.ord, s.current_version AS ver, s.expires_at AS exp, s.encrypted_value AS blob, s.key_version AS skv,
                   CASE WHEN s.key_version = v_a.akv THEN v_a.amk
                        WHEN s.key_version IS NOT NULL
                        THEN (SELECT k.master_key_id FROM :TS.tenant_secret_keys k WHERE k.tenant_id = p_tenant_id AND k.version = s.key_version) END AS kmk,
                   CASE WHEN s.key_version = v_a.akv THEN v_a.awrapped
                        WHEN s.key_version IS NOT NULL
                        THEN (SELECT k.wrapped_key FROM :TS.tenant_secret_keys k WHERE k.tenant_id = p_tenant_id AND k.version = s.key_version) END AS kwrapped,
                   CASE WHEN s.current_version IS NULL OR s.deleted_at IS NOT NULL THEN 'not_found'
                        WHEN s.expires_at IS NOT NULL AND s.expires_at <= pg_catalog.now() AND NOT COALESCE(p_allow_expired, false) THEN 'expired'
                        ELSE 'ok' END AS st0
              FROM names n
              LEFT JOIN :TS.tenant_secrets s ON s.tenant_id = p_tenant_id AND s.key_name = n.name) x),
  aud AS (
    INSERT INTO :TS.tenant_secret_audit_pending
      (chain_id, occurred_at, tenant_id, db_role, actor, action, key_name, version, outcome, error_code,
       request_id, context, details, sealed_at)
    SELECT p_tenant_id, pg_catalog.clock_timestamp(), p_tenant_id, session_user,
           COALESCE(NULLIF(p_ctx->>'actor', ''), 'db:' || session_user), 'secret.read', res.name,
           CASE WHEN res.st = 'not_found' THEN NULL ELSE res.ver END,
           CASE WHEN res.st = 'ok' THEN 'success' ELSE 'failure' END,
           CASE WHEN res.st = 'ok' THEN NULL ELSE pg_catalog.upper(res.st) END,
           NULLIF(p_ctx->>'request_id', ''), NULLIF(COALESCE(p_ctx, '{}'::jsonb) - 'actor' - 'request_id', '{}'::jsonb),
           '{"bulk":true}'::jsonb, 'infinity'
      FROM res ORDER BY res.ord)
  SELECT res.name, CASE WHEN :ONLY_OUR_TRIGGERS_ON_PENDING OR :FOREIGN_TRIGGER_ON_PENDING IS NULL THEN res.st
                        WHEN :TS._ts_refuse_foreign_trigger(:FOREIGN_TRIGGER_ON_PENDING) THEN NULL END,
         CASE WHEN res.st <> 'not_found' THEN res.ver END,
         CASE WHEN res.st = 'ok' THEN res.skv END, CASE WHEN res.st = 'ok' THEN res.kmk END,
         CASE WHEN res.st = 'ok' THEN res.kwrapped END, CASE WHEN res.st = 'ok' THEN res.blob END,
         CASE WHEN res.st IN ('ok', 'expired') THEN res.exp END, NULL::text, v_a.akv
    FROM res ORDER BY res.ord;
END
$$;

-- Concurrent reads of current versions, sent together: item i is (p_tenant_ids[i], p_key_names[i],
-- p_creds[i], p_allow_expired[i], p_ctxs[i]), each of any tenant, each authorised by its own tenant's
-- access token, each with its own audit record (in item order) and its own context. The library sends
-- this when more reads arrive than it lets run at once (src/secrets/read-batches.ts), so that one
-- statement, one transaction and one commit serve them all. Each item answers as tenant_secret_fetch
-- does on its one-statement path; an item that path would not answer (not authorised by its token,
-- invalid input or context: the cases that are refused, enrolled or recorded differently) comes back
-- 'single', unrecorded and unreleased, and the library sends it as a call of its own. Rows: (ord,
-- status, version, key_version, master_key_id, wrapped_key, sealed, expires_at, active_key_version).
-- A distributed (Citus) installation routes each call to its tenant's worker, which a batch of
-- several tenants cannot be: it is refused there (0A000) and the library reads one call per secret.
CREATE FUNCTION :TS.tenant_secret_fetch_batch(
  p_tenant_ids text[], p_key_names text[], p_creds bytea[], p_allow_expired boolean[], p_ctxs jsonb[])
RETURNS TABLE (ord integer, status text, version integer, key_version integer, master_key_id text,
               wrapped_key bytea, sealed bytea, expires_at timestamptz, active_key_version integer)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = '' SET plan_cache_mode = force_generic_plan AS $$
#variable_conflict use_column
BEGIN
  IF p_tenant_ids IS NULL OR pg_catalog.cardinality(p_tenant_ids) NOT BETWEEN 1 AND 100
     OR pg_catalog.cardinality(p_key_names) IS DISTINCT FROM pg_catalog.cardinality(p_tenant_ids)
     OR pg_catalog.cardinality(p_creds) IS DISTINCT FROM pg_catalog.cardinality(p_tenant_ids)
     OR pg_catalog.cardinality(p_allow_expired) IS DISTINCT FROM pg_catalog.cardinality(p_tenant_ids)
     OR pg_catalog.cardinality(p_ctxs) IS DISTINCT FROM pg_catalog.cardinality(p_tenant_ids) THEN
    RAISE EXCEPTION 'tenant-secrets: a batch of reads takes 1 to 100 items, each with a tenant, a name, credentials, allow_expired and a context'
      USING ERRCODE = '22023';
  END IF;
  IF EXISTS (SELECT FROM :TS.tenant_secret_schema_state st WHERE st.key = 'citus_variants') THEN
    RAISE EXCEPTION 'tenant-secrets: reads of several tenants in one call are not routed on a distributed installation; read one secret per call'
      USING ERRCODE = '0A000';
  END IF;
  RETURN QUERY
  WITH r AS (
    SELECT i.ord::integer AS ord, i.t, i.k, i.x, COALESCE(i.ae, false) AS ae,
           a.version AS akv, a.master_key_id AS amk, a.wrapped_key AS awrapped,
           COALESCE(:TS._ts_creds_valid(i.c)
                    AND :PGC.digest(:TS._ts_creds_token(i.c, a.master_key_id), 'sha256') = a.access_digest
                    AND :TS._ts_ctx_invalid(i.x) IS NULL, false) AS authorized,
           s.deleted_at, s.expires_at AS exp, s.current_version AS ver, s.encrypted_value AS blob, s.key_version AS skv
      FROM ROWS FROM (pg_catalog.unnest(p_tenant_ids), pg_catalog.unnest(p_key_names), pg_catalog.unnest(p_creds),
                     pg_catalog.unnest(p_allow_expired), pg_catalog.unnest(p_ctxs)) WITH ORDINALITY AS i(t, k, c, ae, x, ord)
      LEFT JOIN :TS.tenant_secret_keys a ON a.tenant_id = i.t AND a.state = 'active'
      LEFT JOIN :TS.tenant_secrets s ON s.tenant_id = i.t AND s.key_name = i.k),
  res AS (
    SELECT r.*, q.kmk, q.kwrapped,
           CASE WHEN NOT r.authorized THEN 'single'
                WHEN r.ver IS NULL OR r.deleted_at IS NOT NULL THEN
                     CASE WHEN r.k IS NULL OR :TS._ts_invalid_input(r.t, r.k) IS NOT NULL THEN 'single' ELSE 'not_found' END
                WHEN r.exp IS NOT NULL AND r.exp <= pg_catalog.now() AND NOT r.ae THEN 'expired'
                WHEN q.kwrapped IS NULL THEN 'integrity'
                ELSE 'ok' END AS st
      FROM r
      -- The data key that wraps the value: the active one (already read) unless the value is older.
      CROSS JOIN LATERAL (
        SELECT CASE WHEN r.skv = r.akv THEN r.amk
                    ELSE (SELECT k.master_key_id FROM :TS.tenant_secret_keys k WHERE k.tenant_id = r.t AND k.version = r.skv) END AS kmk,
               CASE WHEN r.skv = r.akv THEN r.awrapped
                    ELSE (SELECT k.wrapped_key FROM :TS.tenant_secret_keys k WHERE k.tenant_id = r.t AND k.version = r.skv) END AS kwrapped) q),
  aud AS (
    INSERT INTO :TS.tenant_secret_audit_pending
      (chain_id, occurred_at, tenant_id, db_role, actor, action, key_name, version, outcome, error_code,
       request_id, context, details, sealed_at)
    SELECT res.t, pg_catalog.clock_timestamp(), res.t, session_user,
           COALESCE(NULLIF(res.x->>'actor', ''), 'db:' || session_user), 'secret.read', res.k,
           CASE WHEN res.st = 'not_found' THEN NULL ELSE res.ver END,
           CASE WHEN res.st = 'ok' THEN 'success' ELSE 'failure' END,
           CASE WHEN res.st = 'ok' THEN NULL ELSE pg_catalog.upper(res.st) END,
           NULLIF(res.x->>'request_id', ''), NULLIF(COALESCE(res.x, '{}'::jsonb) - 'actor' - 'request_id', '{}'::jsonb),
           NULL, 'infinity'
      FROM res WHERE res.st <> 'single' ORDER BY res.ord)
  SELECT res.ord,
         CASE WHEN :ONLY_OUR_TRIGGERS_ON_PENDING OR :FOREIGN_TRIGGER_ON_PENDING IS NULL THEN res.st
              WHEN :TS._ts_refuse_foreign_trigger(:FOREIGN_TRIGGER_ON_PENDING) THEN NULL END,
         CASE WHEN res.st IN ('ok', 'expired', 'integrity') THEN res.ver END,
         CASE WHEN res.st = 'ok' THEN res.skv END, CASE WHEN res.st = 'ok' THEN res.kmk END,
         CASE WHEN res.st = 'ok' THEN res.kwrapped END, CASE WHEN res.st = 'ok' THEN res.blob END,
         CASE WHEN res.st IN ('ok', 'expired') THEN res.exp END,
         CASE WHEN res.st = 'ok' THEN res.akv END
    FROM res ORDER BY res.ord;
END
$$;

-- An integrity failure found by the library when it opened what tenant_secret_fetch released (the
-- ciphertext or the wrapped data key failed authentication): recorded on the tenant's chain, like a
-- failure found by pgcrypto. Authorised by the access token; returns whether it was recorded.
CREATE FUNCTION :TS.tenant_secret_report(
  p_tenant_id text, p_key_name text, p_creds bytea, p_version integer, p_what text, p_ctx jsonb DEFAULT '{}'::jsonb)
RETURNS boolean
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = '' SET plan_cache_mode = force_generic_plan AS $$
DECLARE
  v_ok boolean;
BEGIN
  IF :TS._ts_ctx_invalid(p_ctx) IS NOT NULL OR :TS._ts_invalid_input(p_tenant_id, p_key_name) IS NOT NULL
     OR NOT COALESCE(:TS._ts_creds_valid(p_creds), false) OR p_what IS NULL OR p_what NOT IN ('value', 'data_key', 'unknown_master_key')
     OR p_version < 1 THEN
    RETURN false;
  END IF;
  SELECT EXISTS (SELECT 1 FROM :TS.tenant_secret_keys a
                  WHERE a.tenant_id = p_tenant_id AND a.state = 'active'
                    AND :PGC.digest(:TS._ts_creds_token(p_creds, a.master_key_id), 'sha256') = a.access_digest) INTO v_ok;
  IF NOT v_ok THEN
    RETURN false;
  END IF;
  PERFORM :TS._ts_guard(false);
  RETURN :TS._ts_audit(p_tenant_id, 'secret.read', p_key_name, p_version, 'failure',
    CASE WHEN p_what = 'unknown_master_key' THEN 'UNKNOWN_MASTER_KEY' ELSE 'INTEGRITY' END, p_ctx,
    pg_catalog.jsonb_build_object('found_by', 'library', 'failed', p_what));
END
$$;

-- ---------------------------------------------------------------------------------------------
-- Write
-- ---------------------------------------------------------------------------------------------

-- Create or replace (p_mode 'set') or replace an existing secret (p_mode 'rotate'), sealed by pgcrypto
-- under the data key p_dek of version p_key_version, which must be the tenant's active key (checked
-- against its dek_check). Options as in tenant_secret_write, as parameters: p_if_version (0 = create
-- only), p_max_versions (2-1000), p_grace_seconds (0-31536000), p_metadata (description, labels,
-- expires_at, rotate_after). Besides the outcomes of tenant_secret_write: 'stale_key' (another key
-- version is active, or p_key_version is NULL: its version, master key id and wrapped data key are
-- returned, for a caller presenting the access token), 'no_key' (a proven tenant without a data key:
-- write with the key bundle, which creates it) and 'enroll'.
CREATE FUNCTION :TS.tenant_secret_put(
  p_tenant_id text, p_key_name text, p_value bytea, p_creds bytea, p_key_version integer, p_dek bytea,
  p_mode text DEFAULT 'set', p_if_version integer DEFAULT NULL, p_max_versions integer DEFAULT 10,
  p_grace_seconds integer DEFAULT 86400, p_metadata jsonb DEFAULT NULL, p_ctx jsonb DEFAULT '{}'::jsonb,
  OUT status text, OUT version integer, OUT detail text,
  OUT key_version integer, OUT master_key_id text, OUT wrapped_key bytea)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = '' SET plan_cache_mode = force_generic_plan AS $$
#variable_conflict use_column
DECLARE
  v_action text := CASE p_mode WHEN 'rotate' THEN 'secret.rotated' ELSE 'secret.updated' END;
  v_md jsonb := COALESCE(p_metadata, '{}'::jsonb);
  v_bad text := CASE WHEN :TS._ts_ctx_invalid(p_ctx) IS NOT NULL THEN 'context'
                     WHEN :TS._ts_invalid_input(p_tenant_id, p_key_name) IS NOT NULL THEN :TS._ts_invalid_input(p_tenant_id, p_key_name)
                     WHEN p_key_name IS NULL THEN 'key_name'
                     WHEN NOT :TS._ts_creds_valid(p_creds) THEN 'credentials'
                     WHEN p_mode IS NULL OR p_mode NOT IN ('set', 'rotate') THEN 'mode'
                     WHEN p_value IS NULL OR pg_catalog.octet_length(p_value) NOT BETWEEN 1 AND 65536 THEN 'value'
                     WHEN p_if_version NOT BETWEEN 0 AND 999999999 THEN 'if_version'
                     WHEN p_max_versions IS NULL OR p_max_versions NOT BETWEEN 2 AND 1000 THEN 'max_versions'
                     WHEN p_grace_seconds IS NULL OR p_grace_seconds NOT BETWEEN 0 AND 31536000 THEN 'grace_seconds'
                     WHEN pg_catalog.jsonb_typeof(v_md) <> 'object' THEN 'metadata'
                     WHEN p_dek IS NOT NULL AND pg_catalog.octet_length(p_dek) NOT IN (32, 64) THEN 'data_key' END;
  v_new integer;
  v_akv integer;
  v_authorized boolean;
  v_done boolean;
  v_k record;
  v_refusal record;
BEGIN
  IF v_bad IS NULL AND v_md <> '{}'::jsonb THEN
    v_bad := COALESCE(CASE WHEN (v_md - '{description,labels,expires_at,rotate_after}'::text[]) <> '{}'::jsonb THEN 'metadata' END,
                      :TS._ts_metadata_invalid(v_md));
  END IF;
  IF v_bad IS NOT NULL THEN
    v_done := :TS._ts_guard(false);
    v_done := :TS._ts_audit_invalid(p_tenant_id, v_action, p_key_name, v_bad, p_ctx);
    status := 'invalid_input';
    detail := v_bad;
    RETURN;
  END IF;

  -- Concurrent writers of one secret queue here, on its row, before the statement below takes its
  -- snapshot: a statement that waited for the row inside would see the versions written by the
  -- writers it waited for only through the row itself, and leave them out of retention.
  PERFORM 1 FROM :TS.tenant_secrets s WHERE s.tenant_id = p_tenant_id AND s.key_name = p_key_name FOR UPDATE;
  -- Usual case, one statement: the data key checked, then an existing secret's value replaced, the
  -- version stored, what falls out of retention destroyed, the audit record appended. The CASE
  -- evaluates the trigger guard before the first data-modifying WITH clause runs.
  WITH a AS (
    SELECT k.version AS akv, COALESCE(k.version = p_key_version AND k.dek_check = :TS._ts_dek_check(p_dek), false) AS authorized
      FROM :TS.tenant_secret_keys k WHERE k.tenant_id = p_tenant_id AND k.state = 'active'),
  upd AS (
    UPDATE :TS.tenant_secrets s SET
        current_version = s.current_version + 1,
        encrypted_value = :TS._ts_seal_secret(p_value, p_dek, p_tenant_id, p_key_name, s.current_version + 1, p_key_version),
        key_version = p_key_version,
        previous_version = CASE WHEN s.deleted_at IS NULL THEN s.current_version END,
        previous_expires_at = CASE WHEN s.deleted_at IS NULL
                                   THEN pg_catalog.now() + pg_catalog.make_interval(secs => p_grace_seconds) END,
        description = CASE WHEN v_md ? 'description' THEN v_md->>'description' ELSE s.description END,
        labels = CASE WHEN v_md ? 'labels' THEN COALESCE(NULLIF(v_md->'labels', 'null'::jsonb), '{}'::jsonb) ELSE s.labels END,
        expires_at = CASE WHEN v_md ? 'expires_at' THEN (v_md->>'expires_at')::timestamptz ELSE s.expires_at END,
        rotate_after = CASE WHEN v_md ? 'rotate_after' THEN (v_md->>'rotate_after')::timestamptz ELSE s.rotate_after END,
        updated_at = pg_catalog.now(), updated_by = COALESCE(NULLIF(p_ctx->>'actor', ''), 'db:' || session_user),
        rotated_at = CASE WHEN p_mode = 'rotate' THEN pg_catalog.now() ELSE s.rotated_at END,
        deleted_at = NULL, purge_after = NULL
     WHERE s.tenant_id = p_tenant_id AND s.key_name = p_key_name
       AND (SELECT a.authorized FROM a)
       AND (p_mode = 'set' OR s.deleted_at IS NULL)
       AND (p_if_version IS NULL OR (s.current_version = p_if_version AND s.deleted_at IS NULL))
    RETURNING s.current_version, s.encrypted_value, s.previous_version),
  ver AS (
    INSERT INTO :TS.tenant_secret_versions (tenant_id, key_name, version, encrypted_value, key_version, state, origin, created_by)
    SELECT p_tenant_id, p_key_name, u.current_version, u.encrypted_value, p_key_version, 'enabled', p_mode,
           COALESCE(NULLIF(p_ctx->>'actor', ''), 'db:' || session_user) FROM upd u),
  gone AS (
    UPDATE :TS.tenant_secret_versions v
       SET encrypted_value = NULL, key_version = NULL, state = 'destroyed', destroyed_at = pg_catalog.now()
     WHERE v.tenant_id = p_tenant_id AND v.key_name = p_key_name AND v.encrypted_value IS NOT NULL
       AND v.version <= (SELECT u.current_version FROM upd u) - p_max_versions
    RETURNING v.version),
  aud AS (
    INSERT INTO :TS.tenant_secret_audit_pending
      (chain_id, occurred_at, tenant_id, db_role, actor, action, key_name, version, outcome, error_code,
       request_id, context, details, sealed_at)
    SELECT p_tenant_id, pg_catalog.clock_timestamp(), p_tenant_id, session_user,
           COALESCE(NULLIF(p_ctx->>'actor', ''), 'db:' || session_user), v_action, p_key_name, u.current_version,
           'success', NULL, NULLIF(p_ctx->>'request_id', ''), NULLIF(COALESCE(p_ctx, '{}'::jsonb) - 'actor' - 'request_id', '{}'::jsonb),
           pg_catalog.jsonb_strip_nulls(pg_catalog.jsonb_build_object(
             'previous_version', u.current_version - 1,
             'destroyed_versions', (SELECT pg_catalog.to_jsonb(pg_catalog.array_agg(g.version ORDER BY g.version)) FROM gone g),
             'undeleted', CASE WHEN u.previous_version IS NULL THEN true END)),
           'infinity'
      FROM upd u)
  SELECT CASE WHEN :ONLY_OUR_TRIGGERS_ON_WRITES OR :FOREIGN_TRIGGER_ON_WRITES IS NULL THEN (SELECT u.current_version FROM upd u)
              WHEN :TS._ts_refuse_foreign_trigger(:FOREIGN_TRIGGER_ON_WRITES) THEN NULL END,
         (SELECT a.akv FROM a), COALESCE((SELECT a.authorized FROM a), false)
    INTO v_new, v_akv, v_authorized;
  IF v_new IS NOT NULL THEN
    status := 'ok';
    version := v_new;
    RETURN;
  END IF;
  IF v_authorized THEN
    -- A new secret, a deleted one, a check-and-set conflict, or a concurrent change of the same name.
    SELECT w.status, w.version, w.detail INTO status, version, detail
      FROM :TS._ts_write_keyed(p_tenant_id, p_key_name, p_value, p_dek, p_key_version, p_mode, v_md,
                               p_if_version, p_max_versions, p_grace_seconds, p_ctx) w;
    RETURN;
  END IF;

  -- Not authorised by the data key. A caller presenting the access token of the active key gets that
  -- key (wrapped) to try again; anyone else is answered as a reader would be.
  SELECT k.version, k.master_key_id, k.wrapped_key, k.access_digest,
         COALESCE(:PGC.digest(:TS._ts_creds_token(p_creds, k.master_key_id), 'sha256') = k.access_digest, false) AS token_ok
    INTO v_k FROM :TS.tenant_secret_keys k WHERE k.tenant_id = p_tenant_id AND k.state = 'active';
  IF v_k.token_ok AND (p_key_version IS DISTINCT FROM v_k.version OR p_dek IS NULL) THEN
    status := 'stale_key';
    key_version := v_k.version;
    master_key_id := v_k.master_key_id;
    wrapped_key := v_k.wrapped_key;
    RETURN;
  END IF;
  IF v_k.token_ok AND (SELECT k.dek_check IS NULL FROM :TS.tenant_secret_keys k WHERE k.tenant_id = p_tenant_id AND k.version = v_k.version) THEN
    status := 'enroll';
    RETURN;
  END IF;
  IF v_k.token_ok THEN
    status := 'integrity';  -- the right token, and a data key that does not match its check
  ELSE
    v_refusal := :TS._ts_creds_refusal(p_tenant_id, p_creds, v_k.version, v_k.master_key_id, v_k.access_digest, true);
    status := v_refusal.status;
    detail := v_refusal.detail;
  END IF;
  IF status NOT IN ('enroll', 'no_key') THEN
    v_done := :TS._ts_guard(false);
    v_done := :TS._ts_audit(p_tenant_id, v_action, p_key_name, NULL, 'failure', pg_catalog.upper(status), p_ctx,
      CASE WHEN status = 'unknown_master_key' THEN pg_catalog.jsonb_build_object('master_key_id', detail) END);
  END IF;
END
$$;

-- Concurrent writes (set or rotate, without metadata) of existing secrets, sent together: item i is
-- (p_tenant_ids[i], p_key_names[i], p_values[i], p_key_versions[i], p_deks[i], p_modes[i],
-- p_if_versions[i], p_max_versions[i], p_grace_seconds[i], p_ctxs[i]), as tenant_secret_put takes them,
-- each of any tenant and authorised by its own tenant's data key. Each item is written exactly as the
-- one-statement path of tenant_secret_put writes it (value sealed by pgcrypto, version stored, what
-- falls out of retention destroyed, its own audit record). An item that path would not write comes
-- back 'single', untouched and unrecorded, for the library to send as a call of its own: a new, deleted
-- or conflicting secret, a key that does not authorise it, invalid input, a second write of the same
-- secret in the batch, a secret whose row another transaction holds, and one that another transaction
-- wrote since the statement began. The batch takes its rows with SKIP LOCKED, so it never waits on a
-- lock (nor deadlocks): a contended write waits on its own.
-- Rows: (ord, status, version). Refused on a distributed installation (0A000), as reads of several
-- tenants are.
CREATE FUNCTION :TS.tenant_secret_put_batch(
  p_tenant_ids text[], p_key_names text[], p_values bytea[], p_key_versions integer[], p_deks bytea[],
  p_modes text[], p_if_versions integer[], p_max_versions integer[], p_grace_seconds integer[], p_ctxs jsonb[])
RETURNS TABLE (ord integer, status text, version integer)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = '' SET plan_cache_mode = force_generic_plan AS $$
#variable_conflict use_column
DECLARE
  n integer := pg_catalog.cardinality(p_tenant_ids);
BEGIN
  IF n IS NULL OR n NOT BETWEEN 1 AND 100
     OR pg_catalog.cardinality(p_key_names) IS DISTINCT FROM n OR pg_catalog.cardinality(p_values) IS DISTINCT FROM n
     OR pg_catalog.cardinality(p_key_versions) IS DISTINCT FROM n OR pg_catalog.cardinality(p_deks) IS DISTINCT FROM n
     OR pg_catalog.cardinality(p_modes) IS DISTINCT FROM n OR pg_catalog.cardinality(p_if_versions) IS DISTINCT FROM n
     OR pg_catalog.cardinality(p_max_versions) IS DISTINCT FROM n OR pg_catalog.cardinality(p_grace_seconds) IS DISTINCT FROM n
     OR pg_catalog.cardinality(p_ctxs) IS DISTINCT FROM n THEN
    RAISE EXCEPTION 'tenant-secrets: a batch of writes takes 1 to 100 items, each with every field'
      USING ERRCODE = '22023';
  END IF;
  IF EXISTS (SELECT FROM :TS.tenant_secret_schema_state st WHERE st.key = 'citus_variants') THEN
    RAISE EXCEPTION 'tenant-secrets: writes of several tenants in one call are not routed on a distributed installation; write one secret per call'
      USING ERRCODE = '0A000';
  END IF;
  -- The tables locked and checked for foreign triggers before anything is written (once per batch).
  PERFORM :TS._ts_guard(false);
  RETURN QUERY
  WITH i AS (
    SELECT x.ord::integer AS ord, x.t, x.k, x.v, x.kv, x.dek, x.mode, x.ifv, x.maxv, x.grace, x.ctx,
           COALESCE(:TS._ts_ctx_invalid(x.ctx) IS NULL AND :TS._ts_invalid_input(x.t, x.k) IS NULL AND x.k IS NOT NULL
                    AND x.mode IN ('set', 'rotate') AND pg_catalog.octet_length(x.v) BETWEEN 1 AND 65536
                    AND (x.ifv IS NULL OR x.ifv BETWEEN 0 AND 999999999) AND x.maxv BETWEEN 2 AND 1000
                    AND x.grace BETWEEN 0 AND 31536000 AND pg_catalog.octet_length(x.dek) IN (32, 64) AND x.kv IS NOT NULL, false) AS valid
      FROM ROWS FROM (pg_catalog.unnest(p_tenant_ids), pg_catalog.unnest(p_key_names), pg_catalog.unnest(p_values),
                      pg_catalog.unnest(p_key_versions), pg_catalog.unnest(p_deks), pg_catalog.unnest(p_modes),
                      pg_catalog.unnest(p_if_versions), pg_catalog.unnest(p_max_versions), pg_catalog.unnest(p_grace_seconds),
                      pg_catalog.unnest(p_ctxs)) WITH ORDINALITY AS x(t, k, v, kv, dek, mode, ifv, maxv, grace, ctx, ord)),
  -- Valid items authorised by their tenant's active data key; one per secret (the first in the batch).
  ok AS MATERIALIZED (
    SELECT DISTINCT ON (i.t, i.k) i.*
      FROM i JOIN :TS.tenant_secret_keys a ON a.tenant_id = i.t AND a.state = 'active'
                                          AND a.version = i.kv AND a.dek_check = :TS._ts_dek_check(i.dek)
     WHERE i.valid
     ORDER BY i.t, i.k, i.ord),
  -- Their rows, locked in one order, skipping rows another transaction holds. A lock returns the row
  -- as it is now, which may be newer than this statement's snapshot.
  lk AS MATERIALIZED (
    SELECT s.tenant_id, s.key_name, s.current_version
      FROM :TS.tenant_secrets s JOIN ok ON s.tenant_id = ok.t AND s.key_name = ok.k
     WHERE (ok.mode = 'set' OR s.deleted_at IS NULL)
       AND (ok.ifv IS NULL OR (s.current_version = ok.ifv AND s.deleted_at IS NULL))
     ORDER BY s.tenant_id, s.key_name
       FOR UPDATE OF s SKIP LOCKED),
  -- The same rows as the snapshot sees them. A secret written and committed by others between the
  -- snapshot and the lock has versions the snapshot cannot see, which retention below would leave
  -- out: that item goes back to be written by a call of its own (which locks before its snapshot).
  seen AS MATERIALIZED (
    SELECT s.tenant_id, s.key_name, s.current_version
      FROM :TS.tenant_secrets s JOIN lk ON s.tenant_id = lk.tenant_id AND s.key_name = lk.key_name),
  upd AS (
    UPDATE :TS.tenant_secrets s SET
        current_version = s.current_version + 1,
        encrypted_value = :TS._ts_seal_secret(ok.v, ok.dek, ok.t, ok.k, s.current_version + 1, ok.kv),
        key_version = ok.kv,
        previous_version = CASE WHEN s.deleted_at IS NULL THEN s.current_version END,
        previous_expires_at = CASE WHEN s.deleted_at IS NULL
                                   THEN pg_catalog.now() + pg_catalog.make_interval(secs => ok.grace) END,
        updated_at = pg_catalog.now(), updated_by = COALESCE(NULLIF(ok.ctx->>'actor', ''), 'db:' || session_user),
        rotated_at = CASE WHEN ok.mode = 'rotate' THEN pg_catalog.now() ELSE s.rotated_at END,
        deleted_at = NULL, purge_after = NULL
      FROM ok JOIN lk ON lk.tenant_id = ok.t AND lk.key_name = ok.k
              JOIN seen ON seen.tenant_id = lk.tenant_id AND seen.key_name = lk.key_name AND seen.current_version = lk.current_version
     WHERE s.tenant_id = ok.t AND s.key_name = ok.k
    RETURNING ok.ord, ok.t, ok.k, ok.kv, ok.mode, ok.maxv, ok.ctx, s.current_version, s.encrypted_value, s.previous_version),
  ver AS (
    INSERT INTO :TS.tenant_secret_versions (tenant_id, key_name, version, encrypted_value, key_version, state, origin, created_by)
    SELECT u.t, u.k, u.current_version, u.encrypted_value, u.kv, 'enabled', u.mode,
           COALESCE(NULLIF(u.ctx->>'actor', ''), 'db:' || session_user) FROM upd u),
  gone AS (
    UPDATE :TS.tenant_secret_versions v
       SET encrypted_value = NULL, key_version = NULL, state = 'destroyed', destroyed_at = pg_catalog.now()
      FROM upd u
     WHERE v.tenant_id = u.t AND v.key_name = u.k AND v.encrypted_value IS NOT NULL
       AND v.version <= u.current_version - u.maxv
    RETURNING u.ord, v.version),
  aud AS (
    INSERT INTO :TS.tenant_secret_audit_pending
      (chain_id, occurred_at, tenant_id, db_role, actor, action, key_name, version, outcome, error_code,
       request_id, context, details, sealed_at)
    SELECT u.t, pg_catalog.clock_timestamp(), u.t, session_user,
           COALESCE(NULLIF(u.ctx->>'actor', ''), 'db:' || session_user),
           CASE u.mode WHEN 'rotate' THEN 'secret.rotated' ELSE 'secret.updated' END, u.k, u.current_version,
           'success', NULL, NULLIF(u.ctx->>'request_id', ''), NULLIF(COALESCE(u.ctx, '{}'::jsonb) - 'actor' - 'request_id', '{}'::jsonb),
           pg_catalog.jsonb_strip_nulls(pg_catalog.jsonb_build_object(
             'previous_version', u.current_version - 1,
             'destroyed_versions', (SELECT pg_catalog.to_jsonb(pg_catalog.array_agg(g.version ORDER BY g.version)) FROM gone g WHERE g.ord = u.ord),
             'undeleted', CASE WHEN u.previous_version IS NULL THEN true END)),
           'infinity'
      FROM upd u ORDER BY u.ord)
  SELECT i.ord, CASE WHEN u.ord IS NULL THEN 'single' ELSE 'ok' END, u.current_version
    FROM i LEFT JOIN upd u ON u.ord = i.ord
   ORDER BY i.ord;
END
$$;

COMMENT ON FUNCTION :TS.tenant_secret_fetch(text, text, bytea, integer, boolean, jsonb) IS
  'tenant-secrets: release a secret''s ciphertext and wrapped data key to a caller presenting the tenant''s access token (the library opens them); audited.';
COMMENT ON FUNCTION :TS.tenant_secret_fetch_many(text, text[], bytea, boolean, jsonb) IS
  'tenant-secrets: tenant_secret_fetch for up to 100 names of one tenant; one audit record per name.';
COMMENT ON FUNCTION :TS.tenant_secret_fetch_batch(text[], text[], bytea[], boolean[], jsonb[]) IS
  'tenant-secrets: tenant_secret_fetch for up to 100 concurrent reads of any tenants in one statement; one audit record each.';
COMMENT ON FUNCTION :TS.tenant_secret_report(text, text, bytea, integer, text, jsonb) IS
  'tenant-secrets: record an integrity failure the library found opening a fetched value (access token required).';
COMMENT ON FUNCTION :TS.tenant_secret_put_batch(text[], text[], bytea[], integer[], bytea[], text[], integer[], integer[], integer[], jsonb[]) IS
  'tenant-secrets: tenant_secret_put for up to 100 concurrent writes of existing secrets of any tenants in one statement; one audit record each.';
COMMENT ON FUNCTION :TS.tenant_secret_put(text, text, bytea, bytea, integer, bytea, text, integer, integer, integer, jsonb, jsonb) IS
  'tenant-secrets: create, replace or rotate a secret with the data key of the tenant''s active key version (no key-encryption key); audited.';
