-- pgcrypto's schema, quoted, as the installer finds it when it runs (Supabase keeps it in `extensions`).
(SELECT pg_catalog.quote_ident(n.nspname) FROM pg_catalog.pg_extension e
   JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace WHERE e.extname = 'pgcrypto')
