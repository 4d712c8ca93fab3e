-- Triggers, rules, policies, column defaults and foreign keys on our tables that tenant-secrets did
-- not create: (kind, table_name, object_name), tables schema-qualified whatever the search_path.
--   trigger      any trigger whose function is not one of our guard functions (a trigger runs with
--                the rights of whoever writes the table: inside our functions, the owner's);
--   rule, policy any (we create none);
--   default      a column default that depends on anything but pg_catalog's functions, operators,
--                types and collations, its own table and our sequences (ours call only now() and
--                nextval()): a function, an operator, a domain or a type of someone else's making
--                would run as whoever inserts;
--   check        a CHECK constraint that depends on anything but the same (it runs as whoever writes);
--   foreign_key  a foreign key of another table referencing ours (its checks read our tables as their
--                owner, which tells whether a row exists, and block our deletes); named by the table
--                that carries it.
-- Only catalog reads: the installer runs it before it writes anything.
SELECT 'trigger'::text AS kind, pg_catalog.format('%I.%I', n.nspname, c.relname) AS table_name, t.tgname::text AS object_name
  FROM pg_catalog.pg_trigger t JOIN pg_catalog.pg_class c ON c.oid = t.tgrelid JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
 WHERE t.tgrelid IN (:OUR_TABLES) AND NOT t.tgisinternal AND t.tgparentid = 0
   AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_proc p
                    WHERE p.oid = t.tgfoid AND p.pronamespace = c.relnamespace
                      AND p.proname IN ('_ts_guard_truncate', '_ts_guard_write'))
UNION ALL
SELECT 'rule', pg_catalog.format('%I.%I', n.nspname, c.relname), rw.rulename::text
  FROM pg_catalog.pg_rewrite rw JOIN pg_catalog.pg_class c ON c.oid = rw.ev_class JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
 WHERE rw.ev_class IN (:OUR_TABLES) AND rw.rulename <> '_RETURN'
UNION ALL
SELECT 'policy', pg_catalog.format('%I.%I', n.nspname, c.relname), p.polname::text
  FROM pg_catalog.pg_policy p JOIN pg_catalog.pg_class c ON c.oid = p.polrelid JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
 WHERE p.polrelid IN (:OUR_TABLES)
UNION ALL
SELECT 'default', pg_catalog.format('%I.%I', n.nspname, c.relname), a.attname::text
  FROM pg_catalog.pg_attrdef d
  JOIN pg_catalog.pg_class c ON c.oid = d.adrelid JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
  JOIN pg_catalog.pg_attribute a ON a.attrelid = d.adrelid AND a.attnum = d.adnum
 WHERE d.adrelid IN (:OUR_TABLES)
   AND EXISTS (SELECT 1 FROM pg_catalog.pg_depend dep
                WHERE dep.classid = 'pg_catalog.pg_attrdef'::pg_catalog.regclass AND dep.objid = d.oid
                  AND NOT CASE dep.refclassid
                    WHEN 'pg_catalog.pg_proc'::pg_catalog.regclass THEN EXISTS (SELECT 1 FROM pg_catalog.pg_proc f
                      WHERE f.oid = dep.refobjid AND f.pronamespace = 'pg_catalog'::pg_catalog.regnamespace)
                    WHEN 'pg_catalog.pg_operator'::pg_catalog.regclass THEN EXISTS (SELECT 1 FROM pg_catalog.pg_operator o
                      WHERE o.oid = dep.refobjid AND o.oprnamespace = 'pg_catalog'::pg_catalog.regnamespace)
                    WHEN 'pg_catalog.pg_type'::pg_catalog.regclass THEN EXISTS (SELECT 1 FROM pg_catalog.pg_type t
                      WHERE t.oid = dep.refobjid AND t.typnamespace = 'pg_catalog'::pg_catalog.regnamespace)
                    WHEN 'pg_catalog.pg_collation'::pg_catalog.regclass THEN EXISTS (SELECT 1 FROM pg_catalog.pg_collation l
                      WHERE l.oid = dep.refobjid AND l.collnamespace = 'pg_catalog'::pg_catalog.regnamespace)
                    WHEN 'pg_catalog.pg_class'::pg_catalog.regclass THEN dep.refobjid = d.adrelid
                      OR EXISTS (SELECT 1 FROM pg_catalog.pg_class s
                                  WHERE s.oid = dep.refobjid AND s.relkind = 'S' AND s.relnamespace = c.relnamespace)
                    ELSE false END)
UNION ALL
SELECT 'check', pg_catalog.format('%I.%I', n.nspname, c.relname), k.conname::text
  FROM pg_catalog.pg_constraint k
  JOIN pg_catalog.pg_class c ON c.oid = k.conrelid JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
 WHERE k.conrelid IN (:OUR_TABLES) AND k.contype = 'c' AND k.conislocal
   AND EXISTS (SELECT 1 FROM pg_catalog.pg_depend dep
                WHERE dep.classid = 'pg_catalog.pg_constraint'::pg_catalog.regclass AND dep.objid = k.oid
                  AND NOT CASE dep.refclassid
                    WHEN 'pg_catalog.pg_proc'::pg_catalog.regclass THEN EXISTS (SELECT 1 FROM pg_catalog.pg_proc f
                      WHERE f.oid = dep.refobjid AND f.pronamespace = 'pg_catalog'::pg_catalog.regnamespace)
                    WHEN 'pg_catalog.pg_operator'::pg_catalog.regclass THEN EXISTS (SELECT 1 FROM pg_catalog.pg_operator o
                      WHERE o.oid = dep.refobjid AND o.oprnamespace = 'pg_catalog'::pg_catalog.regnamespace)
                    WHEN 'pg_catalog.pg_type'::pg_catalog.regclass THEN EXISTS (SELECT 1 FROM pg_catalog.pg_type t
                      WHERE t.oid = dep.refobjid AND t.typnamespace = 'pg_catalog'::pg_catalog.regnamespace)
                    WHEN 'pg_catalog.pg_collation'::pg_catalog.regclass THEN EXISTS (SELECT 1 FROM pg_catalog.pg_collation l
                      WHERE l.oid = dep.refobjid AND l.collnamespace = 'pg_catalog'::pg_catalog.regnamespace)
                    WHEN 'pg_catalog.pg_class'::pg_catalog.regclass THEN dep.refobjid = k.conrelid
                      OR EXISTS (SELECT 1 FROM pg_catalog.pg_class s
                                  WHERE s.oid = dep.refobjid AND s.relkind = 'S' AND s.relnamespace = c.relnamespace)
                    ELSE false END)
UNION ALL
SELECT 'foreign_key', pg_catalog.format('%I.%I', n.nspname, c.relname), k.conname::text
  FROM pg_catalog.pg_constraint k
  JOIN pg_catalog.pg_class c ON c.oid = k.conrelid JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
 WHERE k.contype = 'f' AND k.confrelid IN (:OUR_TABLES) AND k.conrelid NOT IN (:OUR_TABLES)
