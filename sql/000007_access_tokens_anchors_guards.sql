-- tenant-secrets migration 000007: access tokens, audit anchors, sealer health, tenant pins and purges.
--
-- 1. tenant_secret_keys gains what lets the library read and write without handing the database a
--    key-encryption key:
--      access_digest = SHA-256(access token), the token being HMAC(KEK MAC half, "tenant-secrets:access:v1")
--                      for the master key that wraps the row: a read releases ciphertext and the wrapped
--                      data key only to a caller presenting the token (opened in the library);
--      dek_check     = HMAC-SHA256(data key, "tenant-secrets:dek-check:v1"): a write may send the data
--                      key of the active version instead of the tenant's KEK, and the database checks it.
--    Neither decrypts anything. Both are filled when a key is created or re-wrapped, and for keys of
--    earlier releases the first time the library presents the tenant's key bundle after this upgrade.
-- 2. tenant_secret_audit_anchors: signed checkpoints of the whole audit trail, one row per checkpoint,
--    each signing the digest of every chain's checkpointed head, a counter and the previous
--    checkpoint's MAC, so that removing or rolling back checkpoints is detected, and the newest can be
--    kept outside the database (an anchor).
-- 3. tenant_secret_audit_sealer records its health (last attempt, last error, consecutive failures,
--    the batch size it adapted to), so status() can tell a failing or stalled sealer at once.
-- 4. tenant_secret_pins: optional pins of tenant ids (exact, or by prefix) to the master keys allowed
--    to create their first data key.
-- 5. tenant_secret_purges: a tenant being crypto-shredded (no new data key for it meanwhile).
-- 6. The audit id sequence cycles instead of failing at its end: a role that moved it there (after a
--    hostile GRANT ALL ON ALL SEQUENCES) cannot stop every operation; migrate() puts it back.
-- 7. The pending partition gets an index on id (with occurred_at): the sealer finds what is pending,
--    oldest first, and counts it, through it. The partition keeps the size its largest backlog gave
--    it (VACUUM frees the space, but cannot return it while live records sit at its end), and reading
--    all of it twice per sealing pass cost 200 ms per pass once 1.5 million records had gone through.

ALTER TABLE :TS.tenant_secret_keys ADD COLUMN access_digest bytea CHECK (octet_length(access_digest) = 32);
ALTER TABLE :TS.tenant_secret_keys ADD COLUMN dek_check bytea CHECK (octet_length(dek_check) = 32);
COMMENT ON COLUMN :TS.tenant_secret_keys.access_digest IS
  'tenant-secrets: SHA-256 of the tenant''s access token under master_key_id; authorises releasing ciphertext, never decrypts.';
COMMENT ON COLUMN :TS.tenant_secret_keys.dek_check IS
  'tenant-secrets: HMAC-SHA256 of the data key with a fixed label; lets a write prove it holds this key version.';

CREATE TABLE :TS.tenant_secret_audit_anchors (
  counter        bigint      PRIMARY KEY CHECK (counter > 0),
  created_at     timestamptz NOT NULL DEFAULT now(),
  master_key_id  text        NOT NULL CHECK (master_key_id ~ '^mk_[0-9a-f]{16}$'),
  chains         bigint      NOT NULL CHECK (chains >= 0),
  records        bigint      NOT NULL CHECK (records >= 0),
  heads_digest   bytea       NOT NULL CHECK (octet_length(heads_digest) = 32),
  prev_mac       bytea       NOT NULL CHECK (octet_length(prev_mac) = 32),
  mac            bytea       NOT NULL CHECK (octet_length(mac) = 32)
);
COMMENT ON TABLE :TS.tenant_secret_audit_anchors IS
  'tenant-secrets: signed checkpoints of the whole audit trail (digest of every chain''s checkpointed head, counter, previous MAC), chained; the newest is the anchor verification returns.';

ALTER TABLE :TS.tenant_secret_audit_sealer
  ADD COLUMN last_attempt_at timestamptz,
  ADD COLUMN last_error text,
  ADD COLUMN consecutive_failures integer NOT NULL DEFAULT 0,
  ADD COLUMN batch_limit integer;

CREATE TABLE :TS.tenant_secret_pins (
  kind            text        NOT NULL CHECK (kind IN ('tenant', 'prefix')),
  pattern         text        NOT NULL CHECK (pattern <> '' AND octet_length(pattern) <= 256),
  master_key_ids  text[]      NOT NULL CHECK (cardinality(master_key_ids) BETWEEN 1 AND 16),
  created_at      timestamptz NOT NULL DEFAULT now(),
  created_by      text        NOT NULL,
  PRIMARY KEY (kind, pattern)
);
COMMENT ON TABLE :TS.tenant_secret_pins IS
  'tenant-secrets: tenant ids (exact, or by prefix) whose first data key only the listed master keys may create.';

CREATE TABLE :TS.tenant_secret_purges (
  tenant_id     text        PRIMARY KEY,
  requested_at  timestamptz NOT NULL DEFAULT now(),
  requested_by  text        NOT NULL
);
COMMENT ON TABLE :TS.tenant_secret_purges IS
  'tenant-secrets: tenants being crypto-shredded; no data key is created for them until the purge ends.';

ALTER SEQUENCE :TS.tenant_secret_audit_id_seq CYCLE;

CREATE INDEX tenant_secret_audit_pending_id ON :TS.tenant_secret_audit_pending (id) INCLUDE (occurred_at);
COMMENT ON INDEX :TS.tenant_secret_audit_pending_id IS
  'tenant-secrets: what the sealer reads, oldest first, without reading the whole pending partition.';

-- Every sealing pass rewrites the head of each chain it extends: room on the page lets the new row
-- version stay there (a HOT update, no new index entry), so the heads' index does not grow with passes.
ALTER TABLE :TS.tenant_secret_audit_heads SET (fillfactor = 50);
