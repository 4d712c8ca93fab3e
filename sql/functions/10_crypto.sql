-- tenant-secrets functions: cryptographic helpers and key bundles.
--
-- Re-created by migrate() whenever the installed catalog differs from this source. Placeholders:
-- :TS (our schema) and :PGC (pgcrypto's schema). Helpers here are internal (EXECUTE for the owner
-- only), carry no SET clause and are written as single SQL expressions where possible, so that
-- PostgreSQL inlines them into the callers (which pin search_path = ''): every name is qualified.
--
-- Sealed blob ("format 1"):  0x01 || iv(16) || AES-256-CBC(plain) || HMAC-SHA256(0x01 || aad || iv || ct)
-- Encrypt-then-MAC with separate keys; the tag is checked before decrypting. Tags are compared
-- through SHA-256 of both sides, so the comparison's timing says nothing about the expected tag.

-- Length-prefixed encodings, so that concatenated fields can never be re-split differently.
CREATE FUNCTION :TS._ts_lp(p bytea) RETURNS bytea
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT CASE WHEN p IS NULL THEN '\xffffffff'::bytea ELSE pg_catalog.int4send(pg_catalog.octet_length(p)) || p END
$$;

CREATE FUNCTION :TS._ts_lpt(p text) RETURNS bytea
LANGUAGE sql STABLE PARALLEL SAFE AS $$
  SELECT :TS._ts_lp(pg_catalog.convert_to(p, 'UTF8'))
$$;

-- HKDF-Expand (RFC 5869) of one 32-byte block: the input key is already uniformly random.
CREATE FUNCTION :TS._ts_subkey(p_key bytea, p_label text) RETURNS bytea
LANGUAGE sql STABLE PARALLEL SAFE AS $$
  SELECT :PGC.hmac(pg_catalog.convert_to(p_label, 'UTF8') || '\x01'::bytea, p_key, 'sha256')
$$;

CREATE FUNCTION :TS._ts_seal(p_plain bytea, p_enc_key bytea, p_mac_key bytea, p_aad bytea) RETURNS bytea
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
  v_iv bytea := :PGC.gen_random_bytes(16);
  v_ct bytea;
BEGIN
  IF pg_catalog.octet_length(p_enc_key) IS DISTINCT FROM 32 OR pg_catalog.octet_length(p_mac_key) IS DISTINCT FROM 32 THEN
    RAISE EXCEPTION 'tenant-secrets: internal key length error' USING ERRCODE = 'TSINT';
  END IF;
  v_ct := :PGC.encrypt_iv(p_plain, p_enc_key, v_iv, 'aes-cbc/pad:pkcs');
  RETURN '\x01'::bytea || v_iv || v_ct || :PGC.hmac('\x01'::bytea || p_aad || v_iv || v_ct, p_mac_key, 'sha256');
END
$$;

-- PKCS#7 padding removed; NULL when it is not well-formed. Never raises. plpgsql, not SQL: its
-- argument (a decryption) is used several times, so a SQL body would not be inlined and would run as
-- a query of its own at every call.
CREATE FUNCTION :TS._ts_unpad(p bytea) RETURNS bytea
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
DECLARE
  v_n integer := pg_catalog.octet_length(p);
  v_pad integer;
BEGIN
  IF v_n IS NULL OR v_n < 16 OR v_n % 16 <> 0 THEN
    RETURN NULL;
  END IF;
  v_pad := pg_catalog.get_byte(p, v_n - 1);
  IF v_pad < 1 OR v_pad > 16 THEN
    RETURN NULL;
  END IF;
  RETURN pg_catalog.substring(p, 1, v_n - v_pad);
END
$$;

-- Verify, then decrypt. NULL when the blob is malformed or its tag does not match. Inlined into its
-- callers, and there the planner may compute the decryption ahead of the tag check when the blob and
-- key are known at planning time (a CASE does not stop constant folding): so the decryption must
-- never raise on a blob that fails the check. It runs without padding (no error for any whole
-- number of blocks, checked first), and the padding is removed afterwards.
CREATE FUNCTION :TS._ts_open(p_blob bytea, p_enc_key bytea, p_mac_key bytea, p_aad bytea) RETURNS bytea
LANGUAGE sql IMMUTABLE AS $$
  SELECT CASE
    WHEN pg_catalog.octet_length(p_blob) >= 65 AND (pg_catalog.octet_length(p_blob) - 33) % 16 = 0
     AND pg_catalog.get_byte(p_blob, 0) = 1
     AND pg_catalog.octet_length(p_enc_key) = 32 AND pg_catalog.octet_length(p_mac_key) = 32
     AND :PGC.digest(pg_catalog.substring(p_blob, pg_catalog.octet_length(p_blob) - 31, 32), 'sha256')
       = :PGC.digest(:PGC.hmac('\x01'::bytea || p_aad || pg_catalog.substring(p_blob, 2, pg_catalog.octet_length(p_blob) - 33),
                               p_mac_key, 'sha256'), 'sha256')
    THEN CASE
      WHEN pg_catalog.octet_length(p_blob) >= 65 AND (pg_catalog.octet_length(p_blob) - 33) % 16 = 0
       AND pg_catalog.octet_length(p_enc_key) = 32
      THEN :TS._ts_unpad(:PGC.decrypt_iv(pg_catalog.substring(p_blob, 18, pg_catalog.octet_length(p_blob) - 49), p_enc_key,
                                         pg_catalog.substring(p_blob, 2, 16), 'aes-cbc/pad:none'))
    END
  END
$$;

-- Associated data: a secret's ciphertext is bound to its tenant, key name, version and data-key
-- version; a wrapped data key to its tenant, key version and master key id.
CREATE FUNCTION :TS._ts_secret_aad(p_tenant text, p_name text, p_version integer, p_key_version integer)
RETURNS bytea LANGUAGE sql STABLE PARALLEL SAFE AS $$
  SELECT '\x00000018'::bytea || pg_catalog.convert_to('tenant-secrets:secret:v1', 'UTF8')
      || :TS._ts_lpt(p_tenant) || :TS._ts_lpt(p_name) || pg_catalog.int4send(p_version) || pg_catalog.int4send(p_key_version)
$$;

CREATE FUNCTION :TS._ts_dek_aad(p_tenant text, p_key_version integer, p_master_key_id text)
RETURNS bytea LANGUAGE sql STABLE PARALLEL SAFE AS $$
  SELECT '\x00000015'::bytea || pg_catalog.convert_to('tenant-secrets:dek:v1', 'UTF8')
      || :TS._ts_lpt(p_tenant) || pg_catalog.int4send(p_key_version) || :TS._ts_lpt(p_master_key_id)
$$;

-- Data keys. A data key made since release 0.2 is 64 bytes: its AES key and MAC key, drawn
-- independently. Keys from 0.1 are 32 bytes and expanded into the two with HKDF-Expand.
CREATE FUNCTION :TS._ts_dek_enc(p_dek bytea) RETURNS bytea
LANGUAGE sql STABLE PARALLEL SAFE AS $$
  SELECT CASE pg_catalog.octet_length(p_dek)
    WHEN 64 THEN pg_catalog.substring(p_dek, 1, 32)
    WHEN 32 THEN :TS._ts_subkey(p_dek, 'tenant-secrets:enc') END
$$;

CREATE FUNCTION :TS._ts_dek_mac(p_dek bytea) RETURNS bytea
LANGUAGE sql STABLE PARALLEL SAFE AS $$
  SELECT CASE pg_catalog.octet_length(p_dek)
    WHEN 64 THEN pg_catalog.substring(p_dek, 33, 32)
    WHEN 32 THEN :TS._ts_subkey(p_dek, 'tenant-secrets:mac') END
$$;

CREATE FUNCTION :TS._ts_wrap_dek(p_tenant text, p_key_version integer, p_dek bytea, p_master_key_id text, p_kek bytea)
RETURNS bytea LANGUAGE sql VOLATILE AS $$
  SELECT :TS._ts_seal(p_dek, pg_catalog.substring(p_kek, 1, 32), pg_catalog.substring(p_kek, 33, 32),
                      :TS._ts_dek_aad(p_tenant, p_key_version, p_master_key_id))
$$;

-- The data key, or NULL when the KEK is missing or the wrapped key does not authenticate under it.
-- An expression, inlined into callers that pass plain values (variables, columns).
CREATE FUNCTION :TS._ts_unwrap_dek(p_tenant text, p_key_version integer, p_master_key_id text, p_wrapped bytea, p_kek bytea)
RETURNS bytea LANGUAGE sql STABLE AS $$
  SELECT :TS._ts_open(p_wrapped, pg_catalog.substring(p_kek, 1, 32), pg_catalog.substring(p_kek, 33, 32),
                      :TS._ts_dek_aad(p_tenant, p_key_version, p_master_key_id))
$$;

CREATE FUNCTION :TS._ts_seal_secret(p_plain bytea, p_dek bytea, p_tenant text, p_name text, p_version integer, p_key_version integer)
RETURNS bytea LANGUAGE sql VOLATILE AS $$
  SELECT :TS._ts_seal(p_plain, :TS._ts_dek_enc(p_dek), :TS._ts_dek_mac(p_dek),
                      :TS._ts_secret_aad(p_tenant, p_name, p_version, p_key_version))
$$;

CREATE FUNCTION :TS._ts_open_secret(p_blob bytea, p_dek bytea, p_tenant text, p_name text, p_version integer, p_key_version integer)
RETURNS bytea LANGUAGE sql STABLE AS $$
  SELECT :TS._ts_open(p_blob, :TS._ts_dek_enc(p_dek), :TS._ts_dek_mac(p_dek),
                      :TS._ts_secret_aad(p_tenant, p_name, p_version, p_key_version))
$$;

-- ---------------------------------------------------------------------------------------------
-- Key bundles
-- ---------------------------------------------------------------------------------------------
-- What a caller passes for a tenant (built by the library's tenantKeyBundle()):
--   0x01 || n (1 byte, 1..16) || n entries of [ master key id (19 ASCII bytes, 'mk_' + 16 hex)
--                                               || KEK (64 bytes) || tenant proof (32 bytes) ]
-- The first entry is the current master key. KEK = HKDF(master key, tenant id) wraps the tenant's
-- data keys; proof = HMAC(proof key of that master key, tenant id) lets a registered master key
-- vouch for a tenant that has no data key yet.

CREATE FUNCTION :TS._ts_bundle_valid(p_bundle bytea) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT p_bundle IS NOT NULL AND pg_catalog.octet_length(p_bundle) >= 117
     AND pg_catalog.get_byte(p_bundle, 0) = 1
     AND pg_catalog.get_byte(p_bundle, 1) BETWEEN 1 AND 16
     AND pg_catalog.octet_length(p_bundle) = 2 + 115 * pg_catalog.get_byte(p_bundle, 1)
$$;

CREATE FUNCTION :TS._ts_bundle_count(p_bundle bytea) RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT pg_catalog.get_byte(p_bundle, 1)
$$;

-- Entry i (1-based): id, KEK, proof.
CREATE FUNCTION :TS._ts_bundle_id(p_bundle bytea, p_i integer) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT pg_catalog.encode(pg_catalog.substring(p_bundle, 3 + 115 * (p_i - 1), 19), 'escape')
$$;

CREATE FUNCTION :TS._ts_bundle_kek(p_bundle bytea, p_i integer) RETURNS bytea
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT pg_catalog.substring(p_bundle, 3 + 115 * (p_i - 1) + 19, 64)
$$;

CREATE FUNCTION :TS._ts_bundle_proof(p_bundle bytea, p_i integer) RETURNS bytea
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT pg_catalog.substring(p_bundle, 3 + 115 * (p_i - 1) + 83, 32)
$$;

-- The KEK of master key p_id in the bundle, or NULL. position() finds the id; it must sit at the
-- start of an entry (an id inside key bytes is not an id).
CREATE FUNCTION :TS._ts_bundle_kek_for(p_bundle bytea, p_id text) RETURNS bytea
LANGUAGE sql STABLE PARALLEL SAFE AS $$
  SELECT CASE WHEN pg_catalog.position(p_bundle, pg_catalog.convert_to(p_id, 'UTF8')) > 0
               AND (pg_catalog.position(p_bundle, pg_catalog.convert_to(p_id, 'UTF8')) - 3) % 115 = 0
              THEN pg_catalog.substring(p_bundle, pg_catalog.position(p_bundle, pg_catalog.convert_to(p_id, 'UTF8')) + 19, 64)
         END
$$;

-- Ids 3 to n of a well-formed bundle (see _ts_bundle_ids_valid).
CREATE FUNCTION :TS._ts_bundle_more_ids_valid(p_bundle bytea) RETURNS boolean
LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
  FOR i IN 3..:TS._ts_bundle_count(p_bundle) LOOP
    IF :TS._ts_bundle_id(p_bundle, i) !~ '^mk_[0-9a-f]*$' THEN
      RETURN false;
    END IF;
  END LOOP;
  RETURN true;
END
$$;

-- A well-formed bundle whose master key ids are all 'mk_' + 16 lowercase hex digits. An expression
-- (inlined into the entry functions) for the usual bundle of one or two keys; a loop beyond.
CREATE FUNCTION :TS._ts_bundle_ids_valid(p_bundle bytea) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT CASE
    WHEN NOT COALESCE(:TS._ts_bundle_valid(p_bundle), false) THEN false
    WHEN :TS._ts_bundle_id(p_bundle, 1) !~ '^mk_[0-9a-f]*$' THEN false
    WHEN pg_catalog.get_byte(p_bundle, 1) = 1 THEN true
    WHEN :TS._ts_bundle_id(p_bundle, 2) !~ '^mk_[0-9a-f]*$' THEN false
    WHEN pg_catalog.get_byte(p_bundle, 1) = 2 THEN true
    ELSE :TS._ts_bundle_more_ids_valid(p_bundle)
  END
$$;

-- HMAC message of a tenant proof. The system pseudo-tenant '' is used to prove a master key itself.
CREATE FUNCTION :TS._ts_proof_message(p_tenant text) RETURNS bytea
LANGUAGE sql STABLE PARALLEL SAFE AS $$
  SELECT '\x0000001e'::bytea || pg_catalog.convert_to('tenant-secrets:tenant-proof:v1', 'UTF8') || :TS._ts_lpt(p_tenant)
$$;

-- Whether some entry of the bundle proves p_tenant under a registered master key.
CREATE FUNCTION :TS._ts_proof_ok(p_tenant text, p_bundle bytea) RETURNS boolean
LANGUAGE plpgsql STABLE AS $$
DECLARE
  v_key bytea;
BEGIN
  IF NOT COALESCE(:TS._ts_bundle_valid(p_bundle), false) THEN
    RETURN false;
  END IF;
  FOR i IN 1..:TS._ts_bundle_count(p_bundle) LOOP
    SELECT m.proof_key INTO v_key FROM :TS.tenant_secret_master_keys m
     WHERE m.master_key_id = :TS._ts_bundle_id(p_bundle, i);
    IF FOUND AND :PGC.digest(:PGC.hmac(:TS._ts_proof_message(p_tenant), v_key, 'sha256'), 'sha256')
               = :PGC.digest(:TS._ts_bundle_proof(p_bundle, i), 'sha256') THEN
      RETURN true;
    END IF;
  END LOOP;
  RETURN false;
END
$$;

-- Whether any master key of the bundle is registered (says nothing about a tenant).
CREATE FUNCTION :TS._ts_bundle_registered(p_bundle bytea) RETURNS boolean
LANGUAGE plpgsql STABLE AS $$
BEGIN
  IF NOT COALESCE(:TS._ts_bundle_valid(p_bundle), false) THEN
    RETURN false;
  END IF;
  FOR i IN 1..:TS._ts_bundle_count(p_bundle) LOOP
    IF EXISTS (SELECT 1 FROM :TS.tenant_secret_master_keys m WHERE m.master_key_id = :TS._ts_bundle_id(p_bundle, i)) THEN
      RETURN true;
    END IF;
  END LOOP;
  RETURN false;
END
$$;
