-- Installer step 3, once per table migration of this library: applied when not yet recorded. The
-- tables it changes were locked up front by step 2 (ACCESS EXCLUSIVE, in name order).
-- Placeholders: :TS, :MIGRATION_ID, :MIGRATION_NAME (a literal), :MIGRATION_SQL (dollar-quoted).
DO $ts_migration$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM :TS.tenant_secret_migrations m WHERE m.id = :MIGRATION_ID) THEN
    EXECUTE pg_catalog.replace(:MIGRATION_SQL, ':PGC', :PGC_LOOKUP);
    INSERT INTO :TS.tenant_secret_migrations (id, name) VALUES (:MIGRATION_ID, :MIGRATION_NAME);
  END IF;
END
$ts_migration$;
