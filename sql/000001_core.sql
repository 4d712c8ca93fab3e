-- tenant-secrets migration 000001: core schema.
--
-- Placeholders, substituted by the migration runner (src/db/migrate.ts):
--   :TS   the schema that holds tenant-secrets' objects (default "public", so the seed's
--         `SELECT encrypted_value FROM tenant_secrets` works unqualified)
--   :PGC  the schema where the pgcrypto extension lives ("public" or Supabase's "extensions")
--
-- Cryptographic design (docs/security-model.md has the full argument):
--   * The application derives, per tenant, a 64-byte key-encryption key (KEK) from each master key
--     with HKDF-SHA256 and sends only those KEKs (never a master key) as bind parameters, tagged with
--     the master key's fingerprint id.
--   * Each tenant has a random 256-bit data key (DEK) made here by gen_random_bytes; it is stored only
--     wrapped under the tenant's KEK.
--   * Every ciphertext ("sealed blob") is  0x01 || iv(16) || AES-256-CBC(ct) || HMAC-SHA256(tag), where
--     the tag covers 0x01 || associated data || iv || ct (encrypt-then-MAC, as Fernet). Associated data
--     binds a secret to its tenant, key name, version and data-key version, and a wrapped DEK to its
--     tenant, key version and master key id, so moving bytes between rows is detected.
--   * Separate encryption and MAC keys everywhere: the 64-byte KEK is split in two; the DEK is expanded
--     into two 32-byte subkeys with HKDF-Expand (one HMAC block each).
--
-- Every function that touches data is SECURITY DEFINER with `search_path = ''` and fully qualified
-- names, so callers cannot shadow tables, operators' functions or pgcrypto with their own objects.
-- Domain outcomes (not found, conflict, integrity failure, ...) are *returned* as a status, not raised,
-- so that the failure's audit record commits in the same transaction as the attempt.

-- ---------------------------------------------------------------------------------------------
-- Tables
-- ---------------------------------------------------------------------------------------------

CREATE TABLE :TS.tenant_secret_keys (
  tenant_id      text        NOT NULL,
  version        integer     NOT NULL CHECK (version > 0),
  state          text        NOT NULL CHECK (state IN ('active', 'retired', 'destroyed')),
  master_key_id  text,
  wrapped_key    bytea,
  created_at     timestamptz NOT NULL DEFAULT now(),
  retired_at     timestamptz,
  destroyed_at   timestamptz,
  PRIMARY KEY (tenant_id, version),
  CHECK ((state = 'destroyed') = (wrapped_key IS NULL)),
  CHECK ((wrapped_key IS NULL) = (master_key_id IS NULL))
);
CREATE UNIQUE INDEX tenant_secret_keys_one_active ON :TS.tenant_secret_keys (tenant_id) WHERE state = 'active';
CREATE INDEX tenant_secret_keys_by_master_key ON :TS.tenant_secret_keys (master_key_id) WHERE wrapped_key IS NOT NULL;
COMMENT ON TABLE :TS.tenant_secret_keys IS
  'tenant-secrets: per-tenant data keys, stored only wrapped under a KEK derived from a master key (identified by master_key_id, a fingerprint).';

CREATE TABLE :TS.tenant_secrets (
  tenant_id            text        NOT NULL,
  key_name             text        NOT NULL,
  current_version      integer     NOT NULL CHECK (current_version > 0),
  encrypted_value      bytea       NOT NULL,
  key_version          integer     NOT NULL,
  previous_version     integer,
  previous_expires_at  timestamptz,
  description          text,
  labels               jsonb       NOT NULL DEFAULT '{}'::jsonb CHECK (jsonb_typeof(labels) = 'object'),
  expires_at           timestamptz,
  rotate_after         timestamptz,
  created_at           timestamptz NOT NULL DEFAULT now(),
  created_by           text        NOT NULL,
  updated_at           timestamptz NOT NULL DEFAULT now(),
  updated_by           text        NOT NULL,
  rotated_at           timestamptz,
  deleted_at           timestamptz,
  purge_after          timestamptz,
  PRIMARY KEY (tenant_id, key_name),
  CHECK ((deleted_at IS NULL) = (purge_after IS NULL))
);
CREATE INDEX tenant_secrets_key_version ON :TS.tenant_secrets (tenant_id, key_version);
CREATE INDEX tenant_secrets_purge_after ON :TS.tenant_secrets (purge_after) WHERE purge_after IS NOT NULL;
COMMENT ON TABLE :TS.tenant_secrets IS
  'tenant-secrets: one row per secret; encrypted_value is the sealed ciphertext of current_version (never plaintext).';

CREATE TABLE :TS.tenant_secret_versions (
  tenant_id        text        NOT NULL,
  key_name         text        NOT NULL,
  version          integer     NOT NULL CHECK (version > 0),
  encrypted_value  bytea,
  key_version      integer,
  state            text        NOT NULL CHECK (state IN ('enabled', 'destroyed')),
  origin           text        NOT NULL CHECK (origin IN ('set', 'rotate', 'rollback', 'import')),
  created_at       timestamptz NOT NULL DEFAULT now(),
  created_by       text        NOT NULL,
  destroyed_at     timestamptz,
  PRIMARY KEY (tenant_id, key_name, version),
  FOREIGN KEY (tenant_id, key_name) REFERENCES :TS.tenant_secrets (tenant_id, key_name) ON DELETE CASCADE,
  CHECK ((state = 'destroyed') = (encrypted_value IS NULL))
);
CREATE INDEX tenant_secret_versions_key_version ON :TS.tenant_secret_versions (tenant_id, key_version)
  WHERE encrypted_value IS NOT NULL;
COMMENT ON TABLE :TS.tenant_secret_versions IS
  'tenant-secrets: every version of every secret (immutable; ciphertext removed when destroyed).';

CREATE TABLE :TS.tenant_secret_audit (
  id           bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  chain_id     text        NOT NULL,
  seq          bigint      NOT NULL,
  occurred_at  timestamptz NOT NULL,
  tenant_id    text,
  db_role      text        NOT NULL,
  actor        text        NOT NULL,
  action       text        NOT NULL,
  key_name     text,
  version      integer,
  outcome      text        NOT NULL CHECK (outcome IN ('success', 'failure')),
  error_code   text,
  request_id   text,
  context      jsonb,
  details      jsonb,
  prev_hash    bytea       NOT NULL,
  hash         bytea       NOT NULL,
  UNIQUE (chain_id, seq)
);
CREATE INDEX tenant_secret_audit_occurred ON :TS.tenant_secret_audit (chain_id, occurred_at);
COMMENT ON TABLE :TS.tenant_secret_audit IS
  'tenant-secrets: audit trail, one hash chain per tenant (chain_id = tenant id, '''' for system events). Never holds values or key material.';

CREATE TABLE :TS.tenant_secret_audit_heads (
  chain_id     text   PRIMARY KEY,
  seq          bigint NOT NULL,
  hash         bytea  NOT NULL,
  anchor_seq   bigint NOT NULL DEFAULT 0,
  anchor_hash  bytea  NOT NULL DEFAULT '\x0000000000000000000000000000000000000000000000000000000000000000'::bytea
);
COMMENT ON TABLE :TS.tenant_secret_audit_heads IS
  'tenant-secrets: head of each audit chain (last seq and hash), and the anchor the chain starts from after pruning.';

-- ---------------------------------------------------------------------------------------------
-- Internal helpers (not executable by anyone but the owner)
-- ---------------------------------------------------------------------------------------------

-- Length-prefixed encoding, so that concatenated fields can never be re-split differently.
CREATE FUNCTION :TS._ts_lp(p bytea) RETURNS bytea
LANGUAGE sql IMMUTABLE PARALLEL SAFE SET search_path = '' AS $$
  SELECT CASE WHEN p IS NULL THEN '\xffffffff'::bytea
              ELSE pg_catalog.int4send(pg_catalog.octet_length(p)) || p END
$$;

CREATE FUNCTION :TS._ts_lpt(p text) RETURNS bytea
LANGUAGE sql IMMUTABLE PARALLEL SAFE SET search_path = '' AS $$
  SELECT :TS._ts_lp(pg_catalog.convert_to(p, 'UTF8'))
$$;

-- HKDF-Expand (RFC 5869) for one 32-byte block: the input key is already uniformly random.
CREATE FUNCTION :TS._ts_subkey(p_key bytea, p_label text) RETURNS bytea
LANGUAGE sql IMMUTABLE PARALLEL SAFE SET search_path = '' AS $$
  SELECT :PGC.hmac(pg_catalog.convert_to(p_label, 'UTF8') || '\x01'::bytea, p_key, 'sha256')
$$;

-- Encrypt-then-MAC with AES-256-CBC and HMAC-SHA256. p_enc_key must be 32 bytes (AES-256).
CREATE FUNCTION :TS._ts_seal(p_plain bytea, p_enc_key bytea, p_mac_key bytea, p_aad bytea) RETURNS bytea
LANGUAGE plpgsql VOLATILE SET search_path = '' AS $$
DECLARE
  v_iv bytea := :PGC.gen_random_bytes(16);
  v_ct bytea;
BEGIN
  IF pg_catalog.octet_length(p_enc_key) <> 32 OR pg_catalog.octet_length(p_mac_key) <> 32 THEN
    RAISE EXCEPTION 'tenant-secrets: internal key length error' USING ERRCODE = 'TSINT';
  END IF;
  v_ct := :PGC.encrypt_iv(p_plain, p_enc_key, v_iv, 'aes-cbc/pad:pkcs');
  RETURN '\x01'::bytea || v_iv || v_ct
      || :PGC.hmac('\x01'::bytea || p_aad || v_iv || v_ct, p_mac_key, 'sha256');
END
$$;

-- Verify, then decrypt. Returns NULL when the blob is malformed or its tag does not match: callers
-- turn that into an integrity failure. The tag comparison is blinded (HMAC of both sides) so its
-- timing reveals nothing about the expected tag.
CREATE FUNCTION :TS._ts_open(p_blob bytea, p_enc_key bytea, p_mac_key bytea, p_aad bytea) RETURNS bytea
LANGUAGE plpgsql IMMUTABLE SET search_path = '' AS $$
DECLARE
  v_len integer := pg_catalog.octet_length(p_blob);
  v_iv bytea;
  v_ct bytea;
  v_tag bytea;
BEGIN
  IF p_blob IS NULL OR p_enc_key IS NULL OR p_mac_key IS NULL
     OR v_len < 1 + 16 + 16 + 32 OR (v_len - 1 - 32) % 16 <> 0
     OR pg_catalog.get_byte(p_blob, 0) <> 1 THEN
    RETURN NULL;
  END IF;
  v_iv := pg_catalog.substring(p_blob, 2, 16);
  v_ct := pg_catalog.substring(p_blob, 18, v_len - 1 - 16 - 32);
  v_tag := pg_catalog.substring(p_blob, v_len - 31, 32);
  IF :PGC.hmac(v_tag, p_mac_key, 'sha256')
     <> :PGC.hmac(:PGC.hmac('\x01'::bytea || p_aad || v_iv || v_ct, p_mac_key, 'sha256'), p_mac_key, 'sha256') THEN
    RETURN NULL;
  END IF;
  RETURN :PGC.decrypt_iv(v_ct, p_enc_key, v_iv, 'aes-cbc/pad:pkcs');
END
$$;

CREATE FUNCTION :TS._ts_secret_aad(p_tenant text, p_name text, p_version integer, p_key_version integer)
RETURNS bytea LANGUAGE sql IMMUTABLE PARALLEL SAFE SET search_path = '' AS $$
  SELECT :TS._ts_lpt('tenant-secrets:secret:v1') || :TS._ts_lpt(p_tenant) || :TS._ts_lpt(p_name)
      || pg_catalog.int4send(p_version) || pg_catalog.int4send(p_key_version)
$$;

CREATE FUNCTION :TS._ts_dek_aad(p_tenant text, p_key_version integer, p_master_key_id text)
RETURNS bytea LANGUAGE sql IMMUTABLE PARALLEL SAFE SET search_path = '' AS $$
  SELECT :TS._ts_lpt('tenant-secrets:dek:v1') || :TS._ts_lpt(p_tenant)
      || pg_catalog.int4send(p_key_version) || :TS._ts_lpt(p_master_key_id)
$$;

-- Unwrap a tenant data key with the KEK of the master key that wrapped it.
-- Returns the DEK, or NULL with p_status set to 'unknown_master_key' / 'integrity'.
CREATE FUNCTION :TS._ts_unwrap_dek(
  p_tenant text, p_key_version integer, p_master_key_id text, p_wrapped bytea,
  p_key_ids text[], p_keks bytea[], OUT dek bytea, OUT status text)
LANGUAGE plpgsql IMMUTABLE SET search_path = '' AS $$
DECLARE
  v_pos integer;
  v_kek bytea;
BEGIN
  IF p_wrapped IS NULL THEN
    status := 'key_destroyed';
    RETURN;
  END IF;
  v_pos := pg_catalog.array_position(p_key_ids, p_master_key_id);
  v_kek := CASE WHEN v_pos IS NULL THEN NULL ELSE p_keks[v_pos] END;
  IF v_kek IS NULL OR pg_catalog.octet_length(v_kek) <> 64 THEN
    status := 'unknown_master_key';
    RETURN;
  END IF;
  dek := :TS._ts_open(p_wrapped, pg_catalog.substring(v_kek, 1, 32), pg_catalog.substring(v_kek, 33, 32),
                      :TS._ts_dek_aad(p_tenant, p_key_version, p_master_key_id));
  status := CASE WHEN dek IS NULL OR pg_catalog.octet_length(dek) <> 32 THEN 'integrity' ELSE 'ok' END;
  IF status <> 'ok' THEN dek := NULL; END IF;
END
$$;

CREATE FUNCTION :TS._ts_wrap_dek(p_tenant text, p_key_version integer, p_dek bytea, p_master_key_id text, p_kek bytea)
RETURNS bytea LANGUAGE sql VOLATILE SET search_path = '' AS $$
  SELECT :TS._ts_seal(p_dek, pg_catalog.substring(p_kek, 1, 32), pg_catalog.substring(p_kek, 33, 32),
                      :TS._ts_dek_aad(p_tenant, p_key_version, p_master_key_id))
$$;

CREATE FUNCTION :TS._ts_seal_secret(p_plain bytea, p_dek bytea, p_tenant text, p_name text, p_version integer, p_key_version integer)
RETURNS bytea LANGUAGE sql VOLATILE SET search_path = '' AS $$
  SELECT :TS._ts_seal(p_plain, :TS._ts_subkey(p_dek, 'tenant-secrets:enc'), :TS._ts_subkey(p_dek, 'tenant-secrets:mac'),
                      :TS._ts_secret_aad(p_tenant, p_name, p_version, p_key_version))
$$;

CREATE FUNCTION :TS._ts_open_secret(p_blob bytea, p_dek bytea, p_tenant text, p_name text, p_version integer, p_key_version integer)
RETURNS bytea LANGUAGE sql IMMUTABLE SET search_path = '' AS $$
  SELECT :TS._ts_open(p_blob, :TS._ts_subkey(p_dek, 'tenant-secrets:enc'), :TS._ts_subkey(p_dek, 'tenant-secrets:mac'),
                      :TS._ts_secret_aad(p_tenant, p_name, p_version, p_key_version))
$$;

-- Input rules, mirrored by src/validation.ts (the library checks first; these are defence in depth
-- for SQL-side callers). Tenant ids cannot be empty: '' is the system audit chain.
CREATE FUNCTION :TS._ts_invalid_input(p_tenant text, p_name text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE SET search_path = '' AS $$
  SELECT CASE
    WHEN p_tenant IS NULL OR p_tenant !~ '^[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}$' THEN 'tenant_id'
    WHEN p_name IS NOT NULL AND p_name !~ '^[A-Za-z0-9_][A-Za-z0-9_./-]{0,255}$' THEN 'key_name'
    ELSE NULL END
$$;

-- ---------------------------------------------------------------------------------------------
-- Audit: append one record to the tenant's hash chain
-- ---------------------------------------------------------------------------------------------

CREATE FUNCTION :TS._ts_audit_hash(
  p_prev bytea, p_chain text, p_seq bigint, p_at timestamptz, p_tenant text, p_db_role text, p_actor text,
  p_action text, p_key text, p_version integer, p_outcome text, p_error text, p_request text,
  p_context jsonb, p_details jsonb)
RETURNS bytea LANGUAGE sql STABLE PARALLEL SAFE SET search_path = '' AS $$
  SELECT :PGC.digest(
    p_prev || :TS._ts_lpt('tenant-secrets:audit:v1') || :TS._ts_lpt(p_chain) || pg_catalog.int8send(p_seq)
    || pg_catalog.int8send((EXTRACT(EPOCH FROM p_at) * 1000000)::bigint)
    || :TS._ts_lpt(p_tenant) || :TS._ts_lpt(p_db_role) || :TS._ts_lpt(p_actor) || :TS._ts_lpt(p_action)
    || :TS._ts_lpt(p_key) || :TS._ts_lpt(p_version::text) || :TS._ts_lpt(p_outcome) || :TS._ts_lpt(p_error)
    || :TS._ts_lpt(p_request) || :TS._ts_lpt(p_context::text) || :TS._ts_lpt(p_details::text),
    'sha256')
$$;

-- p_ctx carries the caller's audit context: actor, request_id, and free-form caller context
-- (ip, user_agent, ...). The chain head row is locked only from here to commit, the last step of
-- every operation, so concurrent operations on one tenant serialise on the append alone.
CREATE FUNCTION :TS._ts_audit(
  p_tenant text, p_action text, p_key text, p_version integer, p_outcome text, p_error text,
  p_ctx jsonb, p_details jsonb DEFAULT NULL)
RETURNS void LANGUAGE plpgsql VOLATILE SET search_path = '' AS $$
DECLARE
  v_chain text := COALESCE(p_tenant, '');
  v_seq bigint;
  v_prev bytea;
  v_at timestamptz;
  v_actor text := COALESCE(NULLIF(p_ctx->>'actor', ''), 'db:' || session_user);
  v_request text := NULLIF(p_ctx->>'request_id', '');
  v_context jsonb := NULLIF(COALESCE(p_ctx, '{}'::jsonb) - 'actor' - 'request_id', '{}'::jsonb);
  v_hash bytea;
BEGIN
  SELECT h.seq, h.hash INTO v_seq, v_prev FROM :TS.tenant_secret_audit_heads h WHERE h.chain_id = v_chain FOR UPDATE;
  IF NOT FOUND THEN
    INSERT INTO :TS.tenant_secret_audit_heads (chain_id, seq, hash)
    VALUES (v_chain, 0, '\x0000000000000000000000000000000000000000000000000000000000000000'::bytea)
    ON CONFLICT (chain_id) DO NOTHING;
    SELECT h.seq, h.hash INTO STRICT v_seq, v_prev FROM :TS.tenant_secret_audit_heads h WHERE h.chain_id = v_chain FOR UPDATE;
  END IF;
  v_seq := v_seq + 1;
  v_at := pg_catalog.clock_timestamp();
  v_hash := :TS._ts_audit_hash(v_prev, v_chain, v_seq, v_at, p_tenant, session_user::text, v_actor, p_action, p_key,
                               p_version, p_outcome, p_error, v_request, v_context, p_details);
  INSERT INTO :TS.tenant_secret_audit
    (chain_id, seq, occurred_at, tenant_id, db_role, actor, action, key_name, version, outcome, error_code,
     request_id, context, details, prev_hash, hash)
  VALUES (v_chain, v_seq, v_at, p_tenant, session_user, v_actor, p_action, p_key, p_version, p_outcome, p_error,
          v_request, v_context, p_details, v_prev, v_hash);
  UPDATE :TS.tenant_secret_audit_heads SET seq = v_seq, hash = v_hash WHERE chain_id = v_chain;
END
$$;

-- ---------------------------------------------------------------------------------------------
-- Tenant data keys
-- ---------------------------------------------------------------------------------------------

-- The tenant's active data key, created on first use. Takes FOR KEY SHARE on the key row so that a
-- tenant-key rotation (which takes FOR UPDATE before retiring it) cannot retire the key under a
-- writer that is about to encrypt with it; a master-key re-wrap (a plain UPDATE) does not conflict.
CREATE FUNCTION :TS._ts_active_dek(
  p_tenant text, p_key_ids text[], p_keks bytea[],
  OUT key_version integer, OUT dek bytea, OUT status text, OUT master_key_id text)
LANGUAGE plpgsql VOLATILE SET search_path = '' AS $$
DECLARE
  v_wrapped bytea;
  v_new bytea;
  v_attempt integer := 0;
BEGIN
  IF p_key_ids IS NULL OR pg_catalog.cardinality(p_key_ids) = 0 OR p_keks[1] IS NULL
     OR pg_catalog.octet_length(p_keks[1]) <> 64 THEN
    status := 'unknown_master_key';
    RETURN;
  END IF;
  LOOP
    v_attempt := v_attempt + 1;
    SELECT k.version, k.wrapped_key, k.master_key_id INTO key_version, v_wrapped, master_key_id
      FROM :TS.tenant_secret_keys k WHERE k.tenant_id = p_tenant AND k.state = 'active' FOR KEY SHARE;
    IF FOUND THEN
      SELECT u.dek, u.status INTO dek, status
        FROM :TS._ts_unwrap_dek(p_tenant, key_version, master_key_id, v_wrapped, p_key_ids, p_keks) u;
      RETURN;
    END IF;
    EXIT WHEN v_attempt > 3;
    -- No active key: first write for this tenant (or a rotation is switching keys right now).
    SELECT COALESCE(max(k.version), 0) + 1 INTO key_version FROM :TS.tenant_secret_keys k WHERE k.tenant_id = p_tenant;
    v_new := :PGC.gen_random_bytes(32);
    INSERT INTO :TS.tenant_secret_keys (tenant_id, version, state, master_key_id, wrapped_key)
    VALUES (p_tenant, key_version, 'active', p_key_ids[1], :TS._ts_wrap_dek(p_tenant, key_version, v_new, p_key_ids[1], p_keks[1]))
    ON CONFLICT DO NOTHING;
  END LOOP;
  status := 'conflict';
  key_version := NULL;
  master_key_id := NULL;
END
$$;

-- ---------------------------------------------------------------------------------------------
-- Secret operations
-- ---------------------------------------------------------------------------------------------

-- Store p_plain as the next version of a secret whose row is already locked by the caller (or that
-- the caller is creating). Applies the retention limit and returns the destroyed versions.
-- p_sealed comes from _ts_seal_secret for exactly this (tenant, name, version, key version).
CREATE FUNCTION :TS._ts_store_version(
  p_tenant text, p_name text, p_sealed bytea, p_version integer, p_key_version integer,
  p_origin text, p_actor text, p_max_versions integer, OUT destroyed integer[])
LANGUAGE plpgsql VOLATILE SET search_path = '' AS $$
BEGIN
  INSERT INTO :TS.tenant_secret_versions (tenant_id, key_name, version, encrypted_value, key_version, state, origin, created_by)
  VALUES (p_tenant, p_name, p_version, p_sealed, p_key_version, 'enabled', p_origin, p_actor);
  WITH gone AS (
    UPDATE :TS.tenant_secret_versions v
       SET encrypted_value = NULL, key_version = NULL, state = 'destroyed', destroyed_at = pg_catalog.now()
     WHERE v.tenant_id = p_tenant AND v.key_name = p_name AND v.state = 'enabled'
       AND v.version <= p_version - GREATEST(p_max_versions, 2)
    RETURNING v.version)
  SELECT pg_catalog.array_agg(g.version ORDER BY g.version) INTO destroyed FROM gone g;
END
$$;

CREATE FUNCTION :TS._ts_ctx_actor(p_ctx jsonb) RETURNS text
LANGUAGE sql STABLE SET search_path = '' AS $$
  SELECT COALESCE(NULLIF(p_ctx->>'actor', ''), 'db:' || session_user)
$$;

-- Create or replace (p_mode 'set') or rotate (p_mode 'rotate': the secret must exist).
-- p_options: if_version (int; 0 = create only), max_versions (int, default 10), grace_seconds
-- (how long the previous version stays readable as "previous"; default 86400), and metadata:
-- description, labels (object of strings), expires_at, rotate_after (timestamps; JSON null clears).
CREATE FUNCTION :TS.tenant_secret_write(
  p_tenant_id text, p_key_name text, p_value bytea, p_key_ids text[], p_keks bytea[],
  p_mode text DEFAULT 'set', p_options jsonb DEFAULT '{}'::jsonb, p_ctx jsonb DEFAULT '{}'::jsonb)
RETURNS TABLE (status text, version integer, detail text)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = '' AS $$
#variable_conflict use_column
DECLARE
  v_opts jsonb := COALESCE(p_options, '{}'::jsonb);
  v_if integer := (v_opts->>'if_version')::integer;
  v_max integer := COALESCE((v_opts->>'max_versions')::integer, 10);
  v_grace integer := COALESCE((v_opts->>'grace_seconds')::integer, 86400);
  v_actor text := :TS._ts_ctx_actor(p_ctx);
  v_action text;
  v_invalid text := :TS._ts_invalid_input(p_tenant_id, p_key_name);
  v_row :TS.tenant_secrets%ROWTYPE;
  v_key record;
  v_new integer;
  v_sealed bytea;
  v_destroyed integer[];
  v_details jsonb;
BEGIN
  IF p_mode NOT IN ('set', 'rotate') THEN
    RAISE EXCEPTION 'tenant-secrets: unknown write mode' USING ERRCODE = 'TS400';
  END IF;
  v_action := CASE p_mode WHEN 'rotate' THEN 'secret.rotated' ELSE 'secret.updated' END;
  IF v_invalid IS NULL AND (p_key_name IS NULL OR p_value IS NULL OR pg_catalog.octet_length(p_value) > 65536) THEN
    v_invalid := 'value';
  END IF;
  IF v_invalid IS NOT NULL THEN
    PERFORM :TS._ts_audit(CASE WHEN v_invalid = 'tenant_id' THEN NULL ELSE p_tenant_id END, v_action,
      CASE WHEN v_invalid IN ('tenant_id', 'key_name') THEN NULL ELSE p_key_name END, NULL, 'failure', 'INVALID_INPUT',
      p_ctx, pg_catalog.jsonb_build_object('field', v_invalid));
    RETURN QUERY SELECT 'invalid_input'::text, NULL::integer, v_invalid;
    RETURN;
  END IF;

  SELECT * INTO v_key FROM :TS._ts_active_dek(p_tenant_id, p_key_ids, p_keks);
  IF v_key.status <> 'ok' THEN
    PERFORM :TS._ts_audit(p_tenant_id, v_action, p_key_name, NULL, 'failure', pg_catalog.upper(v_key.status), p_ctx,
      pg_catalog.jsonb_build_object('master_key_id', v_key.master_key_id));
    RETURN QUERY SELECT v_key.status, NULL::integer, v_key.master_key_id;
    RETURN;
  END IF;

  SELECT * INTO v_row FROM :TS.tenant_secrets s WHERE s.tenant_id = p_tenant_id AND s.key_name = p_key_name FOR UPDATE;
  IF NOT FOUND AND p_mode = 'set' AND COALESCE(v_if, 0) = 0 THEN
    -- Create. A concurrent creator may win the race: then fall through to the update path.
    v_sealed := :TS._ts_seal_secret(p_value, v_key.dek, p_tenant_id, p_key_name, 1, v_key.key_version);
    INSERT INTO :TS.tenant_secrets AS s (tenant_id, key_name, current_version, encrypted_value, key_version,
        description, labels, expires_at, rotate_after, created_by, updated_by)
    VALUES (p_tenant_id, p_key_name, 1, v_sealed, v_key.key_version, v_opts->>'description',
        COALESCE(v_opts->'labels', '{}'::jsonb), (v_opts->>'expires_at')::timestamptz,
        (v_opts->>'rotate_after')::timestamptz, v_actor, v_actor)
    ON CONFLICT (tenant_id, key_name) DO NOTHING;
    IF FOUND THEN
      PERFORM :TS._ts_store_version(p_tenant_id, p_key_name, v_sealed, 1, v_key.key_version, 'set', v_actor, v_max);
      PERFORM :TS._ts_audit(p_tenant_id, 'secret.created', p_key_name, 1, 'success', NULL, p_ctx, NULL);
      RETURN QUERY SELECT 'ok'::text, 1, NULL::text;
      RETURN;
    END IF;
    SELECT * INTO v_row FROM :TS.tenant_secrets s WHERE s.tenant_id = p_tenant_id AND s.key_name = p_key_name FOR UPDATE;
  END IF;

  IF v_row.tenant_id IS NULL OR (p_mode = 'rotate' AND v_row.deleted_at IS NOT NULL) THEN
    PERFORM :TS._ts_audit(p_tenant_id, v_action, p_key_name, NULL, 'failure',
      CASE WHEN p_mode = 'rotate' THEN 'NOT_FOUND' ELSE 'CONFLICT' END, p_ctx,
      CASE WHEN v_if IS NULL THEN NULL ELSE pg_catalog.jsonb_build_object('expected_version', v_if) END);
    RETURN QUERY SELECT CASE WHEN p_mode = 'rotate' THEN 'not_found' ELSE 'conflict' END, NULL::integer, NULL::text;
    RETURN;
  END IF;
  IF v_if IS NOT NULL AND (v_if <> v_row.current_version OR v_row.deleted_at IS NOT NULL) THEN
    PERFORM :TS._ts_audit(p_tenant_id, v_action, p_key_name, v_row.current_version, 'failure', 'CONFLICT', p_ctx,
      pg_catalog.jsonb_build_object('expected_version', v_if));
    RETURN QUERY SELECT 'conflict'::text, v_row.current_version, NULL::text;
    RETURN;
  END IF;

  v_new := v_row.current_version + 1;
  v_sealed := :TS._ts_seal_secret(p_value, v_key.dek, p_tenant_id, p_key_name, v_new, v_key.key_version);
  v_destroyed := :TS._ts_store_version(p_tenant_id, p_key_name, v_sealed, v_new, v_key.key_version, p_mode, v_actor, v_max);
  UPDATE :TS.tenant_secrets s SET
      current_version = v_new, encrypted_value = v_sealed, key_version = v_key.key_version,
      previous_version = CASE WHEN v_row.deleted_at IS NULL THEN v_row.current_version END,
      previous_expires_at = CASE WHEN v_row.deleted_at IS NULL
                                 THEN pg_catalog.now() + pg_catalog.make_interval(secs => v_grace) END,
      description = CASE WHEN v_opts ? 'description' THEN v_opts->>'description' ELSE s.description END,
      labels = CASE WHEN v_opts ? 'labels' THEN COALESCE(v_opts->'labels', '{}'::jsonb) ELSE s.labels END,
      expires_at = CASE WHEN v_opts ? 'expires_at' THEN (v_opts->>'expires_at')::timestamptz ELSE s.expires_at END,
      rotate_after = CASE WHEN v_opts ? 'rotate_after' THEN (v_opts->>'rotate_after')::timestamptz ELSE s.rotate_after END,
      updated_at = pg_catalog.now(), updated_by = v_actor,
      rotated_at = CASE WHEN p_mode = 'rotate' THEN pg_catalog.now() ELSE s.rotated_at END,
      deleted_at = NULL, purge_after = NULL
   WHERE s.tenant_id = p_tenant_id AND s.key_name = p_key_name;
  v_details := pg_catalog.jsonb_strip_nulls(pg_catalog.jsonb_build_object(
      'previous_version', v_row.current_version,
      'destroyed_versions', pg_catalog.to_jsonb(v_destroyed),
      'undeleted', CASE WHEN v_row.deleted_at IS NOT NULL THEN true END));
  PERFORM :TS._ts_audit(p_tenant_id, v_action, p_key_name, v_new, 'success', NULL, p_ctx, v_details);
  RETURN QUERY SELECT 'ok'::text, v_new, NULL::text;
END
$$;

-- Read the current version (default), a numbered version (p_options.version), or the previous
-- version while its grace period lasts (p_options.version = 'previous'). An expired secret
-- (expires_at in the past) is refused with status 'expired' unless p_options.allow_expired.
-- One statement reads the secret and its data key, so a concurrent key rotation cannot slip
-- between the two.
CREATE FUNCTION :TS.tenant_secret_read(
  p_tenant_id text, p_key_name text, p_key_ids text[], p_keks bytea[],
  p_options jsonb DEFAULT '{}'::jsonb, p_ctx jsonb DEFAULT '{}'::jsonb)
RETURNS TABLE (status text, value bytea, version integer, detail text)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = '' AS $$
#variable_conflict use_column
DECLARE
  v_opts jsonb := COALESCE(p_options, '{}'::jsonb);
  v_want text := v_opts->>'version';
  v_invalid text := :TS._ts_invalid_input(p_tenant_id, p_key_name);
  v record;
  v_unwrap record;
  v_plain bytea;
  v_status text;
BEGIN
  IF v_invalid IS NULL AND (p_key_name IS NULL OR (v_want IS NOT NULL AND v_want <> 'previous' AND v_want !~ '^[1-9][0-9]{0,8}$')) THEN
    v_invalid := CASE WHEN p_key_name IS NULL THEN 'key_name' ELSE 'version' END;
  END IF;
  IF v_invalid IS NOT NULL THEN
    PERFORM :TS._ts_audit(CASE WHEN v_invalid = 'tenant_id' THEN NULL ELSE p_tenant_id END, 'secret.read',
      CASE WHEN v_invalid IN ('tenant_id', 'key_name') THEN NULL ELSE p_key_name END, NULL, 'failure', 'INVALID_INPUT',
      p_ctx, pg_catalog.jsonb_build_object('field', v_invalid));
    RETURN QUERY SELECT 'invalid_input'::text, NULL::bytea, NULL::integer, v_invalid;
    RETURN;
  END IF;

  SELECT s.deleted_at, s.expires_at, s.current_version, s.previous_version, s.previous_expires_at,
         ver.version AS version, ver.state AS vstate, ver.blob, ver.key_version,
         k.wrapped_key, k.master_key_id
    INTO v
    FROM :TS.tenant_secrets s
    LEFT JOIN LATERAL (
      SELECT s.current_version AS version, 'enabled'::text AS state, s.encrypted_value AS blob, s.key_version
       WHERE v_want IS NULL
      UNION ALL
      SELECT tv.version, tv.state, tv.encrypted_value, tv.key_version
        FROM :TS.tenant_secret_versions tv
       WHERE v_want IS NOT NULL AND tv.tenant_id = s.tenant_id AND tv.key_name = s.key_name
         AND tv.version = CASE WHEN v_want = 'previous' THEN s.previous_version ELSE v_want::integer END
    ) ver ON true
    LEFT JOIN :TS.tenant_secret_keys k ON k.tenant_id = s.tenant_id AND k.version = ver.key_version
   WHERE s.tenant_id = p_tenant_id AND s.key_name = p_key_name;

  v_status := CASE
    WHEN v.current_version IS NULL OR v.deleted_at IS NOT NULL THEN 'not_found'
    WHEN v_want = 'previous' AND (v.previous_expires_at IS NULL OR v.previous_expires_at <= pg_catalog.now()) THEN 'not_found'
    WHEN v.version IS NULL OR v.vstate <> 'enabled' THEN 'not_found'
    WHEN v.expires_at IS NOT NULL AND v.expires_at <= pg_catalog.now()
         AND NOT COALESCE((v_opts->>'allow_expired')::boolean, false) THEN 'expired'
    ELSE NULL END;
  IF v_status IS NULL THEN
    SELECT * INTO v_unwrap FROM :TS._ts_unwrap_dek(p_tenant_id, v.key_version, v.master_key_id, v.wrapped_key, p_key_ids, p_keks);
    v_status := CASE WHEN v_unwrap.status = 'key_destroyed' THEN 'integrity' ELSE v_unwrap.status END;
    IF v_status = 'ok' THEN
      v_plain := :TS._ts_open_secret(v.blob, v_unwrap.dek, p_tenant_id, p_key_name, v.version, v.key_version);
      IF v_plain IS NULL THEN v_status := 'integrity'; END IF;
    END IF;
  END IF;

  IF v_status = 'ok' THEN
    PERFORM :TS._ts_audit(p_tenant_id, 'secret.read', p_key_name, v.version, 'success', NULL, p_ctx,
      CASE WHEN v_want = 'previous' THEN '{"stage":"previous"}'::jsonb END);
    RETURN QUERY SELECT 'ok'::text, v_plain, v.version, NULL::text;
  ELSE
    PERFORM :TS._ts_audit(p_tenant_id, 'secret.read', p_key_name, v.version, 'failure', pg_catalog.upper(v_status), p_ctx,
      pg_catalog.jsonb_strip_nulls(pg_catalog.jsonb_build_object(
        'requested_version', v_want,
        'master_key_id', CASE WHEN v_status = 'unknown_master_key' THEN v.master_key_id END)));
    RETURN QUERY SELECT v_status, NULL::bytea, v.version,
      CASE WHEN v_status = 'unknown_master_key' THEN v.master_key_id END;
  END IF;
END
$$;

-- Soft delete: the secret reads as not found from now on and can be restored until purge_after
-- (p_options.recovery_days, default 30); then tenant_secret_purge_deleted destroys it.
CREATE FUNCTION :TS.tenant_secret_delete(
  p_tenant_id text, p_key_name text, p_options jsonb DEFAULT '{}'::jsonb, p_ctx jsonb DEFAULT '{}'::jsonb)
RETURNS TABLE (status text, version integer, purge_after timestamptz)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = '' AS $$
#variable_conflict use_column
DECLARE
  v_days integer := COALESCE((p_options->>'recovery_days')::integer, 30);
  v_invalid text := :TS._ts_invalid_input(p_tenant_id, p_key_name);
  v_version integer;
  v_purge timestamptz;
BEGIN
  IF v_invalid IS NULL AND (p_key_name IS NULL OR v_days < 0 OR v_days > 3650) THEN
    v_invalid := CASE WHEN p_key_name IS NULL THEN 'key_name' ELSE 'recovery_days' END;
  END IF;
  IF v_invalid IS NOT NULL THEN
    PERFORM :TS._ts_audit(CASE WHEN v_invalid = 'tenant_id' THEN NULL ELSE p_tenant_id END, 'secret.deleted',
      CASE WHEN v_invalid IN ('tenant_id', 'key_name') THEN NULL ELSE p_key_name END, NULL, 'failure', 'INVALID_INPUT',
      p_ctx, pg_catalog.jsonb_build_object('field', v_invalid));
    RETURN QUERY SELECT 'invalid_input'::text, NULL::integer, NULL::timestamptz;
    RETURN;
  END IF;
  UPDATE :TS.tenant_secrets s
     SET deleted_at = pg_catalog.now(), purge_after = pg_catalog.now() + pg_catalog.make_interval(days => v_days),
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
-- include_deleted, after (key name to continue after: keyset pagination), limit (default 100, max 1000).
CREATE FUNCTION :TS.tenant_secret_list(p_tenant_id text, p_options jsonb DEFAULT '{}'::jsonb, p_ctx jsonb DEFAULT '{}'::jsonb)
RETURNS TABLE (key_name text, current_version integer, previous_version integer, description text, labels jsonb,
               expires_at timestamptz, rotate_after timestamptz, created_at timestamptz, created_by text,
               updated_at timestamptz, updated_by text, rotated_at timestamptz, deleted_at timestamptz,
               purge_after timestamptz, key_version integer)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = '' AS $$
#variable_conflict use_column
DECLARE
  v_opts jsonb := COALESCE(p_options, '{}'::jsonb);
  v_prefix text := v_opts->>'prefix';
  v_limit integer := LEAST(GREATEST(COALESCE((v_opts->>'limit')::integer, 100), 1), 1000);
  v_count integer;
BEGIN
  IF :TS._ts_invalid_input(p_tenant_id, NULL) IS NOT NULL
     OR (v_opts ? 'labels' AND pg_catalog.jsonb_typeof(v_opts->'labels') <> 'object') THEN
    PERFORM :TS._ts_audit(NULL, 'secret.listed', NULL, NULL, 'failure', 'INVALID_INPUT', p_ctx,
      pg_catalog.jsonb_build_object('field', CASE WHEN v_opts ? 'labels' THEN 'labels' ELSE 'tenant_id' END));
    RETURN;
  END IF;
  RETURN QUERY
    SELECT s.key_name, s.current_version, s.previous_version, s.description, s.labels, s.expires_at, s.rotate_after,
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
    pg_catalog.jsonb_build_object('count', v_count, 'prefix', v_prefix));
END
$$;

-- Version metadata of one secret (never values), newest first.
CREATE FUNCTION :TS.tenant_secret_list_versions(p_tenant_id text, p_key_name text, p_ctx jsonb DEFAULT '{}'::jsonb)
RETURNS TABLE (version integer, state text, origin text, created_at timestamptz, created_by text,
               destroyed_at timestamptz, is_current boolean, is_previous boolean)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = '' AS $$
#variable_conflict use_column
DECLARE
  v_count integer;
BEGIN
  IF :TS._ts_invalid_input(p_tenant_id, COALESCE(p_key_name, '')) IS NOT NULL THEN
    PERFORM :TS._ts_audit(NULL, 'secret.versions_listed', NULL, NULL, 'failure', 'INVALID_INPUT', p_ctx, NULL);
    RETURN;
  END IF;
  RETURN QUERY
    SELECT v.version, v.state, v.origin, v.created_at, v.created_by, v.destroyed_at,
           v.version = s.current_version,
           COALESCE(v.version = s.previous_version AND s.previous_expires_at > pg_catalog.now(), false)
      FROM :TS.tenant_secret_versions v
      JOIN :TS.tenant_secrets s ON s.tenant_id = v.tenant_id AND s.key_name = v.key_name
     WHERE v.tenant_id = p_tenant_id AND v.key_name = p_key_name AND s.deleted_at IS NULL
     ORDER BY v.version DESC;
  GET DIAGNOSTICS v_count = ROW_COUNT;
  PERFORM :TS._ts_audit(p_tenant_id, 'secret.versions_listed', p_key_name, NULL,
    CASE WHEN v_count > 0 THEN 'success' ELSE 'failure' END, CASE WHEN v_count > 0 THEN NULL ELSE 'NOT_FOUND' END,
    p_ctx, NULL);
END
$$;

-- ---------------------------------------------------------------------------------------------
-- The seed's SQL interface, kept for SQL-side callers and Supabase RPC. The master key never
-- reaches the database: callers pass the tenant's key bundle (p_key_ids, p_keks) that the library
-- derives (`tenantKeyBundle()` in TypeScript). Failures are raised with tenant-secrets' SQLSTATEs
-- (docs/errors.md); note that a raised error rolls back the caller's transaction, including the
-- failure's audit record, so prefer tenant_secret_read / tenant_secret_write, which return a status.
-- ---------------------------------------------------------------------------------------------

CREATE FUNCTION :TS._ts_raise_status(p_status text) RETURNS void
LANGUAGE plpgsql IMMUTABLE SET search_path = '' AS $$
BEGIN
  CASE p_status
    WHEN 'ok' THEN RETURN;
    WHEN 'not_found' THEN RAISE EXCEPTION 'tenant-secrets: secret not found' USING ERRCODE = 'TS404';
    WHEN 'conflict' THEN RAISE EXCEPTION 'tenant-secrets: version conflict' USING ERRCODE = 'TS409';
    WHEN 'expired' THEN RAISE EXCEPTION 'tenant-secrets: secret expired' USING ERRCODE = 'TS410';
    WHEN 'invalid_input' THEN RAISE EXCEPTION 'tenant-secrets: invalid input' USING ERRCODE = 'TS400';
    WHEN 'unknown_master_key' THEN RAISE EXCEPTION 'tenant-secrets: data is wrapped under a master key that is not in the key bundle' USING ERRCODE = 'TSKEY';
    ELSE RAISE EXCEPTION 'tenant-secrets: integrity check failed' USING ERRCODE = 'TSINT';
  END CASE;
END
$$;

CREATE FUNCTION :TS.upsert_tenant_secret(
  p_tenant_id text, p_key_name text, p_plain_value text, p_key_ids text[], p_keks bytea[])
RETURNS integer
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = '' AS $$
DECLARE
  r record;
BEGIN
  SELECT * INTO r FROM :TS.tenant_secret_write(p_tenant_id, p_key_name, pg_catalog.convert_to(p_plain_value, 'UTF8'),
                                                p_key_ids, p_keks, 'set', '{}'::jsonb, '{}'::jsonb);
  PERFORM :TS._ts_raise_status(r.status);
  RETURN r.version;
END
$$;

CREATE FUNCTION :TS.get_tenant_secret(p_tenant_id text, p_key_name text, p_key_ids text[], p_keks bytea[])
RETURNS text
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = '' AS $$
DECLARE
  r record;
BEGIN
  SELECT * INTO r FROM :TS.tenant_secret_read(p_tenant_id, p_key_name, p_key_ids, p_keks, '{}'::jsonb, '{}'::jsonb);
  IF r.status = 'not_found' THEN
    RETURN NULL;
  END IF;
  PERFORM :TS._ts_raise_status(r.status);
  RETURN pg_catalog.convert_from(r.value, 'UTF8');
END
$$;

COMMENT ON FUNCTION :TS.upsert_tenant_secret(text, text, text, text[], bytea[]) IS
  'tenant-secrets: create or replace a secret (seed interface). Pass the tenant key bundle from tenantKeyBundle(); never a master key.';
COMMENT ON FUNCTION :TS.get_tenant_secret(text, text, text[], bytea[]) IS
  'tenant-secrets: read a secret; NULL only when it does not exist (seed interface).';
COMMENT ON FUNCTION :TS.tenant_secret_write(text, text, bytea, text[], bytea[], text, jsonb, jsonb) IS
  'tenant-secrets: create, replace or rotate a secret; returns a status instead of raising so the audit record commits.';
COMMENT ON FUNCTION :TS.tenant_secret_read(text, text, text[], bytea[], jsonb, jsonb) IS
  'tenant-secrets: read the current, a numbered or the previous version of a secret; returns a status.';
COMMENT ON FUNCTION :TS.tenant_secret_delete(text, text, jsonb, jsonb) IS
  'tenant-secrets: soft-delete a secret with a recovery window.';
COMMENT ON FUNCTION :TS.tenant_secret_list(text, jsonb, jsonb) IS
  'tenant-secrets: list names and metadata of a tenant''s secrets (never values).';
COMMENT ON FUNCTION :TS.tenant_secret_list_versions(text, text, jsonb) IS
  'tenant-secrets: list version metadata of a secret (never values).';
