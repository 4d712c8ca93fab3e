-- tenant-secrets functions: input rules, audit context and metadata validation.
--
-- The library checks the same rules in Node first (src/validation.ts, src/audit/context.ts,
-- src/secrets/metadata.ts); these hold for every caller that reaches the SQL functions directly.

-- Tenant ids cannot be empty ('' is the system audit chain).
-- Lengths are checked apart from the patterns: a bounded repetition such as {0,127} makes
-- PostgreSQL's regex engine build a large automaton, and matching it cost ~30 µs per call, on every
-- operation; the same rule as an unbounded pattern plus a length check costs well under 1 µs.
CREATE FUNCTION :TS._ts_invalid_input(p_tenant text, p_name text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT CASE
    WHEN p_tenant IS NULL OR pg_catalog.octet_length(p_tenant) > 128 OR p_tenant !~ '^[A-Za-z0-9][A-Za-z0-9._:@-]*$' THEN 'tenant_id'
    WHEN p_name IS NOT NULL AND (pg_catalog.octet_length(p_name) > 256 OR p_name !~ '^[A-Za-z0-9_][A-Za-z0-9_./-]*$') THEN 'key_name'
    ELSE NULL END
$$;

CREATE FUNCTION :TS._ts_master_key_id_valid(p_id text) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT p_id IS NOT NULL AND pg_catalog.octet_length(p_id) = 19 AND p_id ~ '^mk_[0-9a-f]*$'
$$;

-- Free text stored in clear (audit context, descriptions, labels): no control characters (C0, DEL,
-- C1), so that a terminal or log viewer shows what was stored.
CREATE FUNCTION :TS._ts_printable(p text) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT p !~ '[\x01-\x1f\x7f-\x9f]'
$$;

-- One audit context field: a printable string of 1 to p_max characters.
CREATE FUNCTION :TS._ts_ctx_text_ok(p_value jsonb, p_max integer) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT pg_catalog.jsonb_typeof(p_value) = 'string'
     AND pg_catalog.length(p_value #>> '{}') BETWEEN 1 AND p_max
     AND :TS._ts_printable(p_value #>> '{}')
$$;

-- The caller's audit context: an object with at most actor (1-200 characters), request_id (1-200),
-- ip (1-64), user_agent (1-512), all printable strings. Returns the offending field, or NULL.
-- One SQL expression (no loop, no query), so that it is inlined into every entry function: it runs
-- on every call.
CREATE FUNCTION :TS._ts_ctx_invalid(p_ctx jsonb) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT CASE
    WHEN p_ctx IS NULL THEN NULL
    WHEN pg_catalog.jsonb_typeof(p_ctx) <> 'object' THEN 'context'
    WHEN (p_ctx - '{actor,request_id,ip,user_agent}'::text[]) <> '{}'::jsonb THEN 'context'
    WHEN p_ctx ? 'actor' AND NOT :TS._ts_ctx_text_ok(p_ctx -> 'actor', 200) THEN 'actor'
    WHEN p_ctx ? 'request_id' AND NOT :TS._ts_ctx_text_ok(p_ctx -> 'request_id', 200) THEN 'request_id'
    WHEN p_ctx ? 'ip' AND NOT :TS._ts_ctx_text_ok(p_ctx -> 'ip', 64) THEN 'ip'
    WHEN p_ctx ? 'user_agent' AND NOT :TS._ts_ctx_text_ok(p_ctx -> 'user_agent', 512) THEN 'user_agent'
  END
$$;

CREATE FUNCTION :TS._ts_ctx_actor(p_ctx jsonb) RETURNS text
LANGUAGE sql STABLE AS $$
  SELECT COALESCE(NULLIF(p_ctx->>'actor', ''), 'db:' || session_user)
$$;

-- Description (string <= 1000 characters or null), labels (object of at most 50 string values
-- <= 256 characters, keys as LABEL_KEY in src/secrets/metadata.ts), expires_at / rotate_after
-- (timestamps within 1970..9999 or null). Every text printable. Returns the offending field, or NULL.
CREATE FUNCTION :TS._ts_metadata_invalid(p_md jsonb) RETURNS text
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
  v_at timestamptz;
  f text;
BEGIN
  IF NOT p_md ?| '{description,labels,expires_at,rotate_after}'::text[] THEN
    RETURN NULL;
  END IF;
  IF p_md ? 'description' AND pg_catalog.jsonb_typeof(p_md->'description') <> 'null'
     AND (pg_catalog.jsonb_typeof(p_md->'description') <> 'string'
          OR pg_catalog.length(p_md->>'description') > 1000
          OR NOT :TS._ts_printable(pg_catalog.translate(p_md->>'description', E'\n\t', ''))) THEN
    RETURN 'description';
  END IF;
  IF p_md ? 'labels' AND pg_catalog.jsonb_typeof(p_md->'labels') <> 'null'
     AND (pg_catalog.jsonb_typeof(p_md->'labels') <> 'object'
          OR (SELECT pg_catalog.count(*) FROM pg_catalog.jsonb_object_keys(p_md->'labels')) > 50
          OR EXISTS (SELECT 1 FROM pg_catalog.jsonb_each(p_md->'labels') e(k, val)
                      WHERE pg_catalog.octet_length(e.k) NOT BETWEEN 1 AND 63 OR e.k !~ '^[A-Za-z0-9_./-]*$' OR pg_catalog.jsonb_typeof(e.val) <> 'string'
                         OR pg_catalog.length(e.val #>> '{}') > 256
                         OR NOT :TS._ts_printable(e.val #>> '{}'))) THEN
    RETURN 'labels';
  END IF;
  FOREACH f IN ARRAY ARRAY['expires_at', 'rotate_after'] LOOP
    IF p_md ? f AND pg_catalog.jsonb_typeof(p_md->f) <> 'null' THEN
      IF pg_catalog.jsonb_typeof(p_md->f) <> 'string' THEN
        RETURN f;
      END IF;
      BEGIN
        v_at := (p_md->>f)::timestamptz;
      EXCEPTION WHEN invalid_datetime_format OR datetime_field_overflow OR invalid_text_representation
                     OR invalid_parameter_value OR invalid_time_zone_displacement_value THEN
        RETURN f;
      END;
      IF v_at < '1970-01-01 00:00:00+00' OR v_at >= '10000-01-01 00:00:00+00' THEN
        RETURN f;
      END IF;
    END IF;
  END LOOP;
  RETURN NULL;
END
$$;

-- Parses JSON text given by a caller (options, metadata). NUL characters, invalid escapes or
-- invalid Unicode make it NULL (the caller reports invalid input, audited) instead of an error.
CREATE FUNCTION :TS._ts_json(p_text text) RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
  IF p_text IS NULL OR p_text = '' OR p_text = '{}' THEN
    RETURN '{}'::jsonb;  -- the common case, without the cost of an exception block
  END IF;
  BEGIN
    RETURN p_text::jsonb;
  EXCEPTION WHEN OTHERS THEN
    RETURN NULL;
  END;
END
$$;

-- An integer option from JSON: NULL when absent, p_bad when present but not an integer in range.
CREATE FUNCTION :TS._ts_json_int(p_opts jsonb, p_key text, p_min bigint, p_max bigint) RETURNS bigint
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT CASE
    WHEN NOT p_opts ? p_key OR pg_catalog.jsonb_typeof(p_opts->p_key) = 'null' THEN NULL
    WHEN pg_catalog.jsonb_typeof(p_opts->p_key) = 'number' AND pg_catalog.octet_length(p_opts->>p_key) <= 18 AND (p_opts->>p_key) ~ '^-?[0-9][0-9]*$'
         AND (p_opts->>p_key)::bigint BETWEEN p_min AND p_max THEN (p_opts->>p_key)::bigint
    ELSE -9223372036854775808 END
$$;
