-- tenant-secrets migration 000006: tables for concurrent audit appends, key proofs and self-repair.
--
-- Tables only: since this release every function lives in sql/functions/*.sql and is re-created by
-- migrate() whenever the catalog differs from the released definition (functions are code, tables are
-- data). The functions created by 000001-000005 are replaced right after this migration runs.
--
-- 1. Audit trail. Operations no longer chain their record under a per-tenant lock: they insert it as
--    *pending* (sealed_at = 'infinity', seq and hash NULL, a content digest set), and a sealer chains
--    pending records in batches afterwards. tenant_secret_audit becomes a table partitioned by
--    sealed_at: one partition for pending records, one per UTC day of sealing (created by the sealer),
--    and the 0.1.0 table attached as is (every record of it sealed at '-infinity'). Pruning drops whole
--    day partitions, so its cost follows what it removes.
-- 2. tenant_secret_master_keys: what the database holds to authorise creating a tenant's first data
--    key without being able to derive a key-encryption key: per master key, a proof key derived from
--    it (HKDF). Callers prove a tenant with HMAC(proof key, tenant id).
-- 3. tenant_secret_grants: the roles migrate() was told to grant, so a later migrate() keeps them and
--    revokes everything else.
-- 4. tenant_secret_schema_state: fingerprints of the installed functions, for drift detection.
-- 5. tenant_secret_versions: retention and key rotation read only live versions (partial index).

-- ---------------------------------------------------------------------------------------------
-- 1. Audit trail
-- ---------------------------------------------------------------------------------------------

ALTER TABLE :TS.tenant_secret_audit RENAME TO tenant_secret_audit_v1;
-- Records are found by (chain, seq); the id stays a column but needs no index (every table is keyed
-- by tenant first, so that the schema can be distributed by tenant, docs/scaling.md).
ALTER TABLE :TS.tenant_secret_audit_v1 DROP CONSTRAINT tenant_secret_audit_pkey;
ALTER INDEX :TS.tenant_secret_audit_chain_id_seq_key RENAME TO tenant_secret_audit_v1_chain_seq;
ALTER INDEX :TS.tenant_secret_audit_occurred RENAME TO tenant_secret_audit_v1_occurred;
ALTER TABLE :TS.tenant_secret_audit_v1 ALTER COLUMN id DROP IDENTITY;
ALTER TABLE :TS.tenant_secret_audit_v1 ADD COLUMN digest bytea;
ALTER TABLE :TS.tenant_secret_audit_v1 ADD COLUMN sealed_at timestamptz NOT NULL DEFAULT '-infinity';
ALTER TABLE :TS.tenant_secret_audit_v1 ALTER COLUMN sealed_at DROP DEFAULT;

CREATE SEQUENCE :TS.tenant_secret_audit_id_seq AS bigint;
SELECT pg_catalog.setval(':TS.tenant_secret_audit_id_seq',
  (SELECT COALESCE(pg_catalog.max(a.id), 0) + 1 FROM :TS.tenant_secret_audit_v1 a), false);

CREATE TABLE :TS.tenant_secret_audit (
  id           bigint      NOT NULL DEFAULT pg_catalog.nextval(':TS.tenant_secret_audit_id_seq'),
  chain_id     text        NOT NULL,
  seq          bigint,
  occurred_at  timestamptz NOT NULL,
  tenant_id    text,
  db_role      text        NOT NULL,
  actor        text        NOT NULL,
  action       text        NOT NULL,
  key_name     text,
  version      integer,
  outcome      text        NOT NULL,
  error_code   text,
  request_id   text,
  context      jsonb,
  details      jsonb,
  prev_hash    bytea,
  hash         bytea,
  digest       bytea,
  sealed_at    timestamptz NOT NULL,
  -- Named as the 0.1 table's constraint, which ATTACH matches by name.
  CONSTRAINT tenant_secret_audit_outcome_check CHECK (outcome IN ('success', 'failure'))
) PARTITION BY RANGE (sealed_at);
ALTER SEQUENCE :TS.tenant_secret_audit_id_seq OWNED BY :TS.tenant_secret_audit.id;
COMMENT ON TABLE :TS.tenant_secret_audit IS
  'tenant-secrets: audit trail, one hash chain per tenant (chain_id = tenant id, '''' for system events), partitioned by sealing day; pending records (sealed_at = infinity) wait for the sealer. Never holds values or key material.';

-- Pending records: no index, so an operation's append is one heap insert.
CREATE TABLE :TS.tenant_secret_audit_pending PARTITION OF :TS.tenant_secret_audit
  FOR VALUES FROM ('infinity') TO (MAXVALUE);
COMMENT ON TABLE :TS.tenant_secret_audit_pending IS
  'tenant-secrets: audit records appended by operations and not yet chained by the sealer.';
-- A queue table (every record is inserted, then deleted by the sealer, which reads it whole): vacuum it
-- after a fixed number of dead rows rather than a fraction of its size, so a burst does not leave it
-- bloated (and every sealing pass slower) until the default threshold is reached.
ALTER TABLE :TS.tenant_secret_audit_pending SET (autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 10000);

-- The 0.1.0 records, chained at append time, become the oldest partition. The CHECK lets ATTACH skip
-- its validation scan.
ALTER TABLE :TS.tenant_secret_audit_v1 ADD CONSTRAINT tenant_secret_audit_v1_sealed
  CHECK (sealed_at IS NOT NULL AND sealed_at < '1970-01-01 00:00:00+00');
ALTER TABLE :TS.tenant_secret_audit ATTACH PARTITION :TS.tenant_secret_audit_v1
  FOR VALUES FROM (MINVALUE) TO ('1970-01-01 00:00:00+00');
COMMENT ON TABLE :TS.tenant_secret_audit_v1 IS
  'tenant-secrets: audit records written before release 0.2 (chained at append time; prev_hash stored).';

-- The sealer's state: when it last ran and what it has done (one row).
CREATE TABLE :TS.tenant_secret_audit_sealer (
  id              integer     PRIMARY KEY CHECK (id = 1),
  last_sealed_at  timestamptz,
  sealed_total    bigint      NOT NULL DEFAULT 0,
  passes          bigint      NOT NULL DEFAULT 0
);
INSERT INTO :TS.tenant_secret_audit_sealer (id) VALUES (1);
COMMENT ON TABLE :TS.tenant_secret_audit_sealer IS
  'tenant-secrets: state of the audit sealer (last run, records sealed).';

-- ---------------------------------------------------------------------------------------------
-- 2. Registered master keys
-- ---------------------------------------------------------------------------------------------

CREATE TABLE :TS.tenant_secret_master_keys (
  master_key_id  text        PRIMARY KEY CHECK (master_key_id ~ '^mk_[0-9a-f]{16}$'),
  proof_key      bytea       NOT NULL CHECK (octet_length(proof_key) = 32),
  registered_at  timestamptz NOT NULL DEFAULT now(),
  registered_by  text        NOT NULL
);
COMMENT ON TABLE :TS.tenant_secret_master_keys IS
  'tenant-secrets: master keys allowed to create tenants. proof_key = HKDF(master key, proof label) verifies tenant proofs HMAC(proof_key, tenant id); it cannot derive a key-encryption key.';

-- ---------------------------------------------------------------------------------------------
-- 3. Grants migrate() manages, and 4. schema state
-- ---------------------------------------------------------------------------------------------

CREATE TABLE :TS.tenant_secret_grants (
  role_name  text NOT NULL CHECK (role_name ~ '^[A-Za-z_][A-Za-z0-9_$-]{0,62}$'),
  kind       text NOT NULL CHECK (kind IN ('app', 'operator')),
  granted_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (role_name, kind)
);
COMMENT ON TABLE :TS.tenant_secret_grants IS
  'tenant-secrets: roles granted EXECUTE by migrate() (app: data plane; operator: everything but audit pruning). Any other grant is revoked.';

CREATE TABLE :TS.tenant_secret_schema_state (
  key         text        PRIMARY KEY,
  value       jsonb       NOT NULL,
  updated_at  timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE :TS.tenant_secret_schema_state IS
  'tenant-secrets: fingerprints of the installed functions (drift detection) and other installation facts.';

-- ---------------------------------------------------------------------------------------------
-- 5. Live versions
-- ---------------------------------------------------------------------------------------------

DROP INDEX :TS.tenant_secret_versions_key_version;
CREATE INDEX tenant_secret_versions_live ON :TS.tenant_secret_versions (tenant_id, key_name, version)
  INCLUDE (key_version) WHERE encrypted_value IS NOT NULL;

-- Legacy import progress across runs.
CREATE TABLE :TS.tenant_secret_legacy_import (
  id        integer     PRIMARY KEY CHECK (id = 1),
  imported  bigint      NOT NULL DEFAULT 0,
  runs      integer     NOT NULL DEFAULT 0,
  updated_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO :TS.tenant_secret_legacy_import (id) VALUES (1);
COMMENT ON TABLE :TS.tenant_secret_legacy_import IS
  'tenant-secrets: rows imported from the legacy table across every import run.';
