-- Installer step 1: schema, pgcrypto, the migrations table, and one migrator at a time.
--
-- Placeholders (src/schema/installer.ts): :TS our schema (quoted identifier), :TS_NAME its name as a
-- literal, :LATEST_VERSION the newest table migration of this library.
--
-- Nothing here takes a lock that any login can take or hold: concurrent migrators queue on a table
-- lock of tenant_secret_migrations (owner only), not on an advisory lock. Every wait is bounded by
-- lock_timeout: migrate() sets a short one and retries; a script applied by hand gets 5 s when it has
-- none, so it can never queue traffic behind it for long.
DO $ts_prologue$
DECLARE
  v_pgc text;
  v_cols text[];
BEGIN
  IF pg_catalog.current_setting('lock_timeout') IN ('0', '0ms') THEN
    PERFORM pg_catalog.set_config('lock_timeout', '5s', true);
  END IF;
  IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_namespace n WHERE n.nspname = :TS_NAME) THEN
    EXECUTE 'CREATE SCHEMA :TS';
  END IF;
  SELECT n.nspname INTO v_pgc FROM pg_catalog.pg_extension e JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace
   WHERE e.extname = 'pgcrypto';
  IF v_pgc IS NULL THEN
    v_pgc := CASE WHEN EXISTS (SELECT 1 FROM pg_catalog.pg_namespace n WHERE n.nspname = 'extensions') THEN 'extensions' ELSE :TS_NAME END;
    EXECUTE pg_catalog.format('CREATE EXTENSION IF NOT EXISTS pgcrypto WITH SCHEMA %I', v_pgc);
    RAISE NOTICE 'tenant-secrets: installed pgcrypto in schema %', v_pgc;
  END IF;
  IF pg_catalog.to_regclass(':TS.tenant_secret_migrations') IS NULL THEN
    SELECT pg_catalog.array_agg(c.column_name::text) INTO v_cols FROM information_schema.columns c
     WHERE c.table_schema = :TS_NAME AND c.table_name = 'tenant_secrets';
    IF v_cols IS NOT NULL THEN
      IF v_cols @> ARRAY['encrypted_value', 'tenant_id', 'key_name'] THEN
        RAISE EXCEPTION 'tenant-secrets: found a "%.tenant_secrets" table in the shape of the original code (zero-IV AES-CBC without a MAC); nothing was changed. Convert it with "tenant-secrets import-legacy" (docs/runbooks/legacy-import.md), or install tenant-secrets in another schema.', :TS_NAME
          USING ERRCODE = 'TSLEG';
      END IF;
      RAISE EXCEPTION 'tenant-secrets: a table "%.tenant_secrets" already exists and was not created by tenant-secrets; nothing was changed. Rename it, or install tenant-secrets in another schema.', :TS_NAME
        USING ERRCODE = 'TSLEG';
    END IF;
    -- A first install: a concurrent one makes this fail on a unique catalog entry, and migrate()
    -- tries again (then the table exists, and the lock below orders the two).
    CREATE TABLE :TS.tenant_secret_migrations (
      id integer PRIMARY KEY,
      name text NOT NULL,
      applied_at timestamptz NOT NULL DEFAULT now()
    );
  END IF;
  -- One migrator at a time (SHARE ROW EXCLUSIVE conflicts with itself, not with the application,
  -- which never writes this table).
  LOCK TABLE :TS.tenant_secret_migrations IN SHARE ROW EXCLUSIVE MODE;
  IF (SELECT pg_catalog.max(m.id) FROM :TS.tenant_secret_migrations m) > :LATEST_VERSION THEN
    RAISE EXCEPTION 'tenant-secrets: the database schema is newer than this library; upgrade tenant-secrets' USING ERRCODE = 'TSNEW';
  END IF;
END
$ts_prologue$;
