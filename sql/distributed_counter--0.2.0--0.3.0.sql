-- distributed_counter 0.2.0 -> 0.3.0 (CHANGELOG.md, 0.3.0). Stored values stay readable
-- as they are; new hll values are stored in format 2 (section 5).
--
-- 1. Typed overloads of the anyelement aggregates, for Citus: the same text as
--    sql/typed_aggregates.sql, which a fresh install runs.
-- Typed overloads of the aggregates over anyelement: approx_count_distinct, cms_add_agg
-- and topk_add_agg. Locally they are the same aggregates (the same C transition
-- functions, so the same hashes and answers); they exist for Citus. Citus partially
-- aggregates a custom aggregate on its workers through worker_partial_agg, which refuses
-- an aggregate whose declared argument types differ from the actual ones (an anyelement
-- aggregate always does), and calls the transition function without an expression tree,
-- where only a concrete declared type says what is being hashed (src/hashing.rs).
--
-- typed_aggregates(t) creates the overloads for one type; the extension creates them
-- for the built-in types below, and a superuser may add any other type (an enum, an
-- array, citext, ...) on every node of a cluster.

CREATE FUNCTION _typed_aggregates_create(t regtype) RETURNS void
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $fn$
DECLARE
    -- @extschema@ is substituted already quoted where the name needs it: %s, never %I.
    s text := '@extschema@';
    ty text := format_type(t, NULL);
    present int;
BEGIN
    SELECT count(*) INTO present FROM unnest(ARRAY[
        format('%s.approx_count_distinct_trans(%s.hll, %s)', s, s, ty),
        format('%s.approx_count_distinct(%s)', s, ty),
        format('%s.cms_add_trans(%s.cms, %s)', s, s, ty),
        format('%s.cms_add_trans(%s.cms, %s, float8, float8)', s, s, ty),
        format('%s.cms_add_trans(%s.cms, %s, int8, float8, float8)', s, s, ty),
        format('%s.cms_add_agg(%s)', s, ty),
        format('%s.cms_add_agg(%s, float8, float8)', s, ty),
        format('%s.cms_add_agg(%s, int8, float8, float8)', s, ty),
        format('%s.topk_add_trans(%s.topk, %s)', s, s, ty),
        format('%s.topk_add_trans(%s.topk, %s, int4)', s, s, ty),
        format('%s.topk_add_agg(%s)', s, ty),
        format('%s.topk_add_agg(%s, int4)', s, ty)]) AS sig
    WHERE to_regprocedure(sig) IS NOT NULL;
    IF present = 12 THEN
        RETURN;  -- already there
    ELSIF present > 0 THEN
        RAISE EXCEPTION 'typed_aggregates: % of the 12 objects for type % exist already', present, ty
            USING ERRCODE = 'duplicate_function',
                  HINT = 'Drop the ones that exist (\df+ approx_count_distinct*, cms_add_*, topk_add_*), then call it again.';
    END IF;
    EXECUTE format($sql$
        CREATE FUNCTION %1$s.approx_count_distinct_trans(%1$s.hll, %2$s) RETURNS %1$s.hll
            AS 'MODULE_PATHNAME', 'approx_count_distinct_trans' LANGUAGE C STABLE PARALLEL SAFE;
        CREATE AGGREGATE %1$s.approx_count_distinct(%2$s) (
            SFUNC = %1$s.approx_count_distinct_trans, STYPE = %1$s.hll,
            FINALFUNC = %1$s.hll_agg_count, COMBINEFUNC = %1$s.hll_union_trans, PARALLEL = SAFE);

        CREATE FUNCTION %1$s.cms_add_trans(%1$s.cms, %2$s) RETURNS %1$s.cms
            AS 'MODULE_PATHNAME', 'cms_add_trans' LANGUAGE C STABLE PARALLEL SAFE;
        CREATE FUNCTION %1$s.cms_add_trans(%1$s.cms, %2$s, float8, float8) RETURNS %1$s.cms
            AS 'MODULE_PATHNAME', 'cms_add_trans' LANGUAGE C STABLE PARALLEL SAFE;
        CREATE FUNCTION %1$s.cms_add_trans(%1$s.cms, %2$s, int8, float8, float8) RETURNS %1$s.cms
            AS 'MODULE_PATHNAME', 'cms_add_trans' LANGUAGE C STABLE PARALLEL SAFE;
        CREATE AGGREGATE %1$s.cms_add_agg(%2$s) (
            SFUNC = %1$s.cms_add_trans, STYPE = %1$s.cms, FINALFUNC = %1$s.cms_add_final,
            COMBINEFUNC = %1$s.cms_union_trans, PARALLEL = SAFE);
        CREATE AGGREGATE %1$s.cms_add_agg(%2$s, eps float8, delta float8) (
            SFUNC = %1$s.cms_add_trans, STYPE = %1$s.cms, FINALFUNC = %1$s.cms_add_final,
            COMBINEFUNC = %1$s.cms_union_trans, PARALLEL = SAFE);
        CREATE AGGREGATE %1$s.cms_add_agg(%2$s, count int8, eps float8, delta float8) (
            SFUNC = %1$s.cms_add_trans, STYPE = %1$s.cms,
            COMBINEFUNC = %1$s.cms_union_trans, PARALLEL = SAFE);

        CREATE FUNCTION %1$s.topk_add_trans(%1$s.topk, %2$s) RETURNS %1$s.topk
            AS 'MODULE_PATHNAME', 'topk_add_trans' LANGUAGE C STABLE PARALLEL SAFE;
        CREATE FUNCTION %1$s.topk_add_trans(%1$s.topk, %2$s, int4) RETURNS %1$s.topk
            AS 'MODULE_PATHNAME', 'topk_add_trans' LANGUAGE C STABLE PARALLEL SAFE;
        CREATE AGGREGATE %1$s.topk_add_agg(%2$s) (
            SFUNC = %1$s.topk_add_trans, STYPE = %1$s.topk,
            COMBINEFUNC = %1$s.topk_union_trans, PARALLEL = SAFE);
        CREATE AGGREGATE %1$s.topk_add_agg(%2$s, k int4) (
            SFUNC = %1$s.topk_add_trans, STYPE = %1$s.topk,
            COMBINEFUNC = %1$s.topk_union_trans, PARALLEL = SAFE);
    $sql$, s, ty);
END
$fn$;
REVOKE ALL ON FUNCTION _typed_aggregates_create(regtype) FROM PUBLIC;

CREATE FUNCTION typed_aggregates(t regtype) RETURNS void
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $fn$
DECLARE
    s text := '@extschema@';
    src regtype;
BEGIN
    IF t IS NULL THEN
        RAISE EXCEPTION 'typed_aggregates: the type must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    -- The names below were written at install time: refuse to run if the extension's
    -- schema was renamed since (a look-alike could stand under the old name).
    IF to_regnamespace(s) IS DISTINCT FROM
       (SELECT e.extnamespace FROM pg_extension e WHERE e.extname = 'distributed_counter') THEN
        RAISE EXCEPTION 'typed_aggregates: the schema of extension distributed_counter was renamed'
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    IF NOT (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN
        RAISE EXCEPTION 'typed_aggregates: must be superuser (it creates C functions)'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF (SELECT typtype FROM pg_type WHERE oid = t) IN ('p', 'd') THEN
        RAISE EXCEPTION 'typed_aggregates: % is a %', t,
              CASE (SELECT typtype FROM pg_type WHERE oid = t) WHEN 'p' THEN 'pseudo-type' ELSE 'domain' END
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'A domain is aggregated as its base type; give that type.';
    END IF;
    -- A value of a type with an implicit cast to t would resolve to t's overloads and be
    -- hashed as a t instead of as itself: that type needs its own overloads first. An
    -- array coerces element by element (int2[] to int4[]): the same rule for the arrays
    -- of the element type's implicit sources.
    FOR src IN
        SELECT u.src FROM (
            SELECT c.castsource AS src FROM pg_cast c
            WHERE c.casttarget = t AND c.castcontext = 'i' AND c.castsource <> t
            UNION ALL
            SELECT st.typarray FROM pg_cast c
            JOIN pg_type at ON at.oid = t AND at.typcategory = 'A' AND at.typelem = c.casttarget
            JOIN pg_type st ON st.oid = c.castsource AND st.typarray <> 0
            WHERE c.castcontext = 'i' AND c.castsource <> c.casttarget) AS u
        WHERE to_regprocedure(format('%s.approx_count_distinct_trans(%s.hll, %s)', s, s,
                                     format_type(u.src, NULL))) IS NULL
    LOOP
        RAISE EXCEPTION 'typed_aggregates: values of type % would be cast to % and hashed as %', src, t, t
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = format('Call typed_aggregates(%L) first.', src);
    END LOOP;
    PERFORM @extschema@._typed_aggregates_create(t);
END
$fn$;
COMMENT ON FUNCTION typed_aggregates(regtype) IS
    'creates approx_count_distinct, cms_add_agg and topk_add_agg overloads for one type, so Citus can aggregate it partially on its workers (superuser)';
REVOKE ALL ON FUNCTION typed_aggregates(regtype) FROM PUBLIC;

-- The built-in types. The list is closed under implicit casts into it (a #[pg_test]
-- checks): every built-in type with an implicit cast to one of these is in the list
-- itself, so no value resolves to another type's overload and is hashed or printed as
-- that type ("char" and name -> text, int2 -> int4, float4 -> float8, date ->
-- timestamp, bpchar -> text, macaddr8 -> macaddr, the reg* types -> oid, ...; the
-- planner's pg_node_tree and extended-statistics types are no user's values).
SELECT @extschema@._typed_aggregates_create(t)
FROM pg_catalog.unnest(ARRAY[
    'bool', 'int2', 'int4', 'int8', 'oid', 'numeric', 'float4', 'float8',
    '"char"', 'name', 'text', 'varchar', 'bpchar', 'bytea', 'uuid',
    'date', 'time', 'timetz', 'timestamp', 'timestamptz', 'interval',
    'inet', 'cidr', 'macaddr', 'macaddr8', 'jsonb',
    'regproc', 'regprocedure', 'regoper', 'regoperator', 'regclass', 'regtype',
    'regrole', 'regnamespace', 'regconfig', 'regdictionary', 'regcollation']::pg_catalog.regtype[]) AS t;

-- A type of another extension with an implicit cast to one of these types (PostGIS's
-- geometry casts to text and bytea) would now resolve to one of the overloads, or be
-- ambiguous between two, where it used the anyelement aggregates before: name them.
DO $warn$
DECLARE
    src text;
BEGIN
    FOR src IN
        SELECT DISTINCT pg_catalog.format_type(c.castsource, NULL)
        FROM pg_catalog.pg_cast c
        WHERE c.castcontext OPERATOR(pg_catalog.=) 'i'
          AND c.castsource OPERATOR(pg_catalog.>=) 16384
          AND c.casttarget IN (SELECT p.proargtypes[1] FROM pg_catalog.pg_proc p
                               WHERE p.proname OPERATOR(pg_catalog.=) 'approx_count_distinct_trans'
                                 AND p.pronamespace OPERATOR(pg_catalog.=) pg_catalog.to_regnamespace('@extschema@'))
          AND c.castsource NOT IN (SELECT p.proargtypes[1] FROM pg_catalog.pg_proc p
                                   WHERE p.proname OPERATOR(pg_catalog.=) 'approx_count_distinct_trans'
                                     AND p.pronamespace OPERATOR(pg_catalog.=) pg_catalog.to_regnamespace('@extschema@'))
    LOOP
        RAISE WARNING 'type % casts implicitly to a type with typed aggregates of distributed_counter', src
            USING HINT = pg_catalog.format('Run SELECT @extschema@.typed_aggregates(%L) so that approx_count_distinct, cms_add_agg and topk_add_agg over it keep hashing it as itself.', src);
    END LOOP;
END
$warn$;

-- 2. Counters on Citus (sql/counters.sql, section "Citus"). Changed: counter_add's SQL
--    path reads the registry, then inserts (two statements); counter_values, compaction,
--    counter_compact, counter_drop and counter_purge_requests have a distributed form;
--    counter_stats is defined by _counter_define_stats_view(); counter_value(s) report
--    a value beyond int8 naming the counter and key (_counter_int8). The registry keeps
--    each counter's number of keys with a total row (compaction and counter_set
--    maintain it), so counter_stats no longer counts the totals table. Errors are
--    raised by _counter_raise, without the CONTEXT lines of the extension's own frames.
ALTER TABLE @extschema@.counter_registry ADD COLUMN keys int8 NOT NULL DEFAULT 0;
UPDATE @extschema@.counter_registry r
SET keys = (SELECT pg_catalog.count(*) FROM @extschema@.counter_totals t WHERE t.counter_id = r.id);

-- Bucketed counters (time windows, retention, leaderboards): the registry's bucket
-- columns, the pending rows' bucket, the buckets table and counter_top's index; new
-- signatures of counter_create (bucket, retention, mode) and counter_add (at).
ALTER TABLE @extschema@.counter_registry
    ADD COLUMN bucket interval,
    ADD COLUMN retention interval,
    ADD COLUMN bucket_us int8 NOT NULL DEFAULT 0,
    ADD COLUMN mode text NOT NULL DEFAULT 'durable';
ALTER TABLE @extschema@.counter_pending ADD COLUMN bucket int8 NOT NULL DEFAULT 0;
-- counter_top's order: a counter's keys by value, ties by key (exact leaderboards read
-- it from the top and stop after n keys).
CREATE INDEX counter_totals_top ON counter_totals (counter_id, value DESC, key);

-- The buckets of bucketed counters: the folded value of each (key, bucket), where
-- bucket = floor(microseconds since 1970-01-01 00:00 UTC / bucket_us), so boundaries
-- are UTC-aligned whatever the TimeZone. A bucketed counter's counter_totals row holds
-- the sum of its key's rows here (compaction adds to both in one statement; retention
-- deletes old buckets and subtracts them in one statement), so counter_top and the key
-- count treat plain and bucketed counters alike.
CREATE TABLE counter_buckets (
    counter_id int4 NOT NULL,
    key        text NOT NULL,
    bucket     int8 NOT NULL,
    value      numeric NOT NULL,
    PRIMARY KEY (counter_id, key, bucket)
) WITH (fillfactor = 70, autovacuum_vacuum_scale_factor = 0.02,
        autovacuum_vacuum_threshold = 1000);
-- retention's scan: the oldest buckets of a counter
CREATE INDEX counter_buckets_age ON counter_buckets (counter_id, bucket);

SELECT pg_catalog.pg_extension_config_dump('@extschema@.counter_buckets', '');

-- counter_add's cache follows bucket_us too.
DROP TRIGGER counter_registry_changing ON @extschema@.counter_registry;
DROP TRIGGER counter_registry_changed ON @extschema@.counter_registry;
CREATE TRIGGER counter_registry_changing
    BEFORE DELETE OR UPDATE OF id, name, shards, bucket_us, mode OR TRUNCATE ON counter_registry
    FOR EACH STATEMENT EXECUTE FUNCTION _counter_registry_changed();
-- Row triggers, because logical replication's apply worker fires only row triggers; the
-- statement trigger covers TRUNCATE (which has no row triggers). Repeated invalidations
-- of one table within a command are merged by PostgreSQL.
CREATE TRIGGER counter_registry_changed
    AFTER INSERT OR DELETE OR UPDATE OF id, name, shards, bucket_us, mode ON counter_registry
    FOR EACH ROW EXECUTE FUNCTION _counter_registry_changed();
ALTER TABLE @extschema@.counter_registry ENABLE ALWAYS TRIGGER counter_registry_changed;

DROP FUNCTION @extschema@.counter_create(text, int4);
DROP FUNCTION @extschema@.counter_add(text, text, int8, text);
DROP FUNCTION @extschema@._counter_add_sql(text, text, int8, text);

CREATE FUNCTION counter_create(name text, shards int4 DEFAULT 16, bucket interval DEFAULT NULL,
                               retention interval DEFAULT NULL, mode text DEFAULT 'durable')
RETURNS void
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
#variable_conflict use_column
DECLARE
    width_us int8 := 0;
BEGIN
    PERFORM @extschema@._counter_check_name(counter_create.name);
    IF counter_create.shards IS NULL OR counter_create.shards NOT BETWEEN 1 AND 1024 THEN
        PERFORM @extschema@._counter_raise('22023',
            'invalid shard count: ' || COALESCE(counter_create.shards::text, 'NULL'),
            'shards must be between 1 and 1024.');
    END IF;
    IF counter_create.mode IS NULL OR counter_create.mode NOT IN ('durable', 'buffered') THEN
        PERFORM @extschema@._counter_raise('22023',
            'invalid counter mode: ' || COALESCE(pg_catalog.quote_literal(counter_create.mode), 'NULL'),
            'A counter is ''durable'' (every add is a row of its transaction) or ''buffered'' (adds are kept in shared memory and flushed by the worker).');
    END IF;
    IF counter_create.mode = 'buffered' AND @extschema@._counter_distributed() THEN
        PERFORM @extschema@._counter_raise('0A000',
            'buffered counters are not available on a distributed (Citus) install',
            'Create the counter with mode => ''durable'', or on a single node.');
    END IF;
    IF counter_create.bucket IS NOT NULL THEN
        IF counter_create.bucket NOT IN (interval '1 second', interval '1 minute', interval '1 hour', interval '1 day')
           OR pg_catalog.date_part('month', counter_create.bucket) <> 0
           OR pg_catalog.date_part('year', counter_create.bucket) <> 0 THEN
            PERFORM @extschema@._counter_raise('22023',
                'invalid bucket: ' || counter_create.bucket::text,
                'A bucket is 1 second, 1 minute, 1 hour or 1 day.');
        END IF;
        width_us := (extract(epoch FROM counter_create.bucket) * 1000000)::int8;
        IF @extschema@._counter_distributed() THEN
            PERFORM @extschema@._counter_raise('0A000',
                'bucketed counters are not available on a distributed (Citus) install',
                'Create the counter without a bucket, or on a single node.');
        END IF;
    END IF;
    IF counter_create.retention IS NOT NULL THEN
        IF counter_create.bucket IS NULL THEN
            PERFORM @extschema@._counter_raise('22023', 'a retention needs a bucket',
                'Give the counter a bucket (1 second, 1 minute, 1 hour or 1 day) too.');
        END IF;
        IF counter_create.retention < counter_create.bucket
           OR counter_create.retention > interval '36500 days'
           OR pg_catalog.date_part('month', counter_create.retention) <> 0
           OR pg_catalog.date_part('year', counter_create.retention) <> 0 THEN
            PERFORM @extschema@._counter_raise('22023',
                'invalid retention: ' || counter_create.retention::text,
                'A retention is at least the bucket and at most 36500 days, in days, hours, minutes or seconds (no months or years).');
        END IF;
    END IF;
    INSERT INTO @extschema@.counter_registry (name, shards, bucket, retention, bucket_us, mode)
    VALUES (counter_create.name, counter_create.shards, counter_create.bucket, counter_create.retention, width_us,
            counter_create.mode)
    ON CONFLICT (name) DO NOTHING;
    IF NOT FOUND THEN
        PERFORM @extschema@._counter_raise('42710',
            pg_catalog.format('counter "%s" already exists', counter_create.name));
    END IF;
END
$$;

-- The write path, in SQL. counter_add (below, C) inserts the same delta row itself in
-- the common case and calls this for everything else (request_id, bad arguments,
-- unknown counter, missing privileges, a changed table layout); the two must agree.
CREATE FUNCTION _counter_add_sql(name text, key text, delta int8, request_id text, at timestamptz)
RETURNS bool LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
#variable_conflict use_column
DECLARE
    cid int4;
    nshards int4;
    width_us int8;
    b int8 := 0;
    now_ts timestamptz;
    expired timestamptz;
BEGIN
    -- _counter_check_key, inlined on the hot path.
    IF _counter_add_sql.key IS NULL OR pg_catalog.octet_length(_counter_add_sql.key) > 2000 THEN
        PERFORM @extschema@._counter_check_key(_counter_add_sql.key);
    END IF;
    IF _counter_add_sql.delta IS NULL THEN
        PERFORM @extschema@._counter_raise('22004', 'counter delta must not be NULL');
    END IF;
    -- Two statements, no lock: a concurrent drop leaves an orphan row that compaction
    -- deletes. (On Citus the registry is read on this node and the INSERT goes to the
    -- one shard of the key, in one round trip; an INSERT ... SELECT from the registry
    -- would be pulled through this node and committed with two-phase commit.)
    SELECT r.id, r.shards, r.bucket_us INTO cid, nshards, width_us
    FROM @extschema@.counter_registry r WHERE r.name = _counter_add_sql.name;
    IF NOT FOUND THEN
        PERFORM @extschema@._counter_missing(_counter_add_sql.name);
    END IF;
    IF width_us > 0 THEN
        IF NOT pg_catalog.isfinite(COALESCE(_counter_add_sql.at, now())) THEN
            PERFORM @extschema@._counter_raise('22023',
                pg_catalog.format('counter "%s": the time of an add must be finite, not %s', _counter_add_sql.name, _counter_add_sql.at));
        END IF;
        b := @extschema@._counter_bucket(COALESCE(_counter_add_sql.at, now()), width_us);
    END IF;
    IF _counter_add_sql.request_id IS NULL THEN
        INSERT INTO @extschema@.counter_pending (counter_id, shard, key, delta, bucket)
        VALUES (cid, (pg_catalog.pg_backend_pid() % nshards)::int2, _counter_add_sql.key, _counter_add_sql.delta, b);
        RETURN true;
    END IF;
    IF pg_catalog.octet_length(_counter_add_sql.request_id) > 512 THEN
        PERFORM @extschema@._counter_raise('22023',
            pg_catalog.format('request_id is too long (%s bytes)', pg_catalog.octet_length(_counter_add_sql.request_id)),
            'A request_id is at most 512 bytes.');
    END IF;
    -- The primary key makes concurrent duplicates wait for each other: exactly one
    -- commits a new row. An entry older than the retention is re-armed, as if purged.
    -- (The times are computed first: Citus takes only constants in DO UPDATE.)
    now_ts := now();
    expired := now_ts - @extschema@._counter_retention();
    INSERT INTO @extschema@.counter_requests AS q (counter_id, request_id, added_at)
    VALUES (cid, _counter_add_sql.request_id, now_ts)
    ON CONFLICT (counter_id, request_id) DO UPDATE SET added_at = now_ts
        WHERE q.added_at < expired;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    INSERT INTO @extschema@.counter_pending (counter_id, shard, key, delta, bucket)
    VALUES (cid, (pg_catalog.pg_backend_pid() % nshards)::int2, _counter_add_sql.key, _counter_add_sql.delta, b);
    RETURN true;
END
$$;

-- 0.2.0's signature: that version's library calls it, and it stays loaded in a running
-- server until the restart after an upgrade.
CREATE FUNCTION _counter_add_sql(name text, key text, delta int8, request_id text)
RETURNS bool LANGUAGE sql VOLATILE SET search_path = pg_catalog, pg_temp
AS $$ SELECT @extschema@._counter_add_sql(name, key, delta, request_id, NULL::timestamptz)
$$;

-- `at`: the time of the add, for a bucketed counter (default: the transaction's start,
-- now()); plain counters ignore it.
CREATE FUNCTION counter_add(name text, key text, delta int8 DEFAULT 1, request_id text DEFAULT NULL,
                            at timestamptz DEFAULT NULL)
RETURNS bool AS 'MODULE_PATHNAME', 'dc_counter_add' LANGUAGE C VOLATILE;

-- Raise an ERROR for the counter functions, without the CONTEXT lines of the
-- extension's own PL/pgSQL frames (a user's own frames below them stay):
-- src/counters/raise.rs.
CREATE FUNCTION _counter_raise(sqlstate text, message text, detail text DEFAULT NULL, hint text DEFAULT NULL)
RETURNS void AS 'MODULE_PATHNAME', 'dc_counter_raise' LANGUAGE C VOLATILE PARALLEL SAFE;
-- How _counter_raise learns which error-context callback is PL/pgSQL's executor's: the
-- C function notes the callback on top of the stack when this PL/pgSQL function calls
-- it from an assignment (a simple expression: no other frame in between).
CREATE FUNCTION _counter_note_plpgsql_frame() RETURNS bool
AS 'MODULE_PATHNAME', 'dc_counter_note_plpgsql_frame' LANGUAGE C VOLATILE PARALLEL SAFE;
CREATE FUNCTION _counter_plpgsql_probe() RETURNS bool
LANGUAGE plpgsql VOLATILE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    noted bool;
BEGIN
    noted := @extschema@._counter_note_plpgsql_frame();
    RETURN noted;
END
$$;

-- Buffered counters (src/counters/buffer.rs). The adds of counter cid (of key, or of every
-- key when key is NULL; of bucket, or of every bucket when bucket is NULL: a plain
-- counter's reads of one key pass 0, one hash probe instead of a scan of the buffer)
-- that the counter tables do not show the caller's snapshot: the
-- unflushed ones in shared memory, and the caller's own of its open transaction. The
-- caller needs SELECT on counter_pending, without row level security applying there
-- (42501). Reads call it in the statement that reads the tables (one snapshot).
CREATE FUNCTION _counter_unflushed(cid int4, key text, bucket int8)
RETURNS TABLE (key text, bucket int8, delta int8)
AS 'MODULE_PATHNAME', 'dc_counter_unflushed' LANGUAGE C STABLE PARALLEL RESTRICTED ROWS 4;

-- For counter_stats: counter cid's unflushed amount, and when the worker's last flush in
-- this database committed (NULL: none, or the worker does not serve this database).
CREATE FUNCTION _counter_buffer_state(cid int4, OUT unflushed numeric, OUT last_flush timestamptz)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'dc_counter_buffer_state' LANGUAGE C STABLE PARALLEL RESTRICTED ROWS 1;

-- The flush's insert (counter_flush() calls it with the rows it took from shared memory).
-- Rows of counters that no longer exist (dropped since the add) are dropped here.
CREATE FUNCTION _counter_flush_rows(counters int4[], keys text[], buckets int8[], deltas int8[])
RETURNS int8 LANGUAGE sql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
    WITH inserted AS (
        INSERT INTO @extschema@.counter_pending (counter_id, shard, key, delta, bucket)
        SELECT u.c, (pg_catalog.pg_backend_pid() OPERATOR(pg_catalog.%) r.shards)::int2, u.k, u.d, u.b
        FROM ROWS FROM (pg_catalog.unnest(counters), pg_catalog.unnest(keys),
                        pg_catalog.unnest(buckets), pg_catalog.unnest(deltas)) AS u(c, k, b, d)
        JOIN @extschema@.counter_registry r ON r.id OPERATOR(pg_catalog.=) u.c
        RETURNING 1)
    SELECT pg_catalog.count(*) FROM inserted
$$;

-- Flush this database's unflushed adds of buffered counters into counter_pending now, in
-- the calling transaction (the worker calls it every distributed_counter.flush_interval).
-- Returns the number of (counter, key, bucket) entries flushed. On rollback they are
-- unflushed again; while the transaction is open, the worker does not flush those entries
-- (and PREPARE TRANSACTION is refused). Reads in the same statement as the call miss
-- what it flushed (its rows are visible from the next statement on).
CREATE FUNCTION counter_flush() RETURNS int8
AS 'MODULE_PATHNAME', 'dc_counter_flush' LANGUAGE C VOLATILE;
-- The worker's (a superuser); a role granted it can hold the buffer's flushes back by
-- keeping its transaction open, so nobody may until granted. It refuses REPEATABLE READ
-- and SERIALIZABLE (0A000) and row level security on the counter tables (42501): its
-- insert must see every counter that exists.
REVOKE ALL ON FUNCTION counter_flush() FROM PUBLIC;
REVOKE ALL ON FUNCTION _counter_flush_rows(int4[], text[], int8[], int8[]) FROM PUBLIC;

-- Raise the right error for a name that is not a counter: 22004 NULL, 22023 malformed,
-- 42704 unknown. Never returns.
CREATE OR REPLACE FUNCTION _counter_missing(name text) RETURNS void
LANGUAGE plpgsql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM @extschema@._counter_check_name(name);
    PERFORM @extschema@._counter_raise('42704', pg_catalog.format('counter "%s" does not exist', name),
        hint => 'Create it with counter_create(name).');
END
$$;

CREATE OR REPLACE FUNCTION _counter_check_name(name text) RETURNS void
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF name IS NULL THEN
        PERFORM @extschema@._counter_raise('22004', 'counter name must not be NULL');
    END IF;
    IF name !~ '^[a-z_][a-z0-9_]{0,47}$' THEN
        PERFORM @extschema@._counter_raise('22023', 'invalid counter name: ' || pg_catalog.quote_literal(name),
            'A counter name is 1 to 48 characters: a lowercase letter or underscore, then lowercase letters, digits or underscores.');
    END IF;
END
$$;

CREATE OR REPLACE FUNCTION _counter_check_key(key text) RETURNS void
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF key IS NULL THEN
        PERFORM @extschema@._counter_raise('22004', 'counter key must not be NULL');
    END IF;
    IF pg_catalog.octet_length(key) > 2000 THEN
        PERFORM @extschema@._counter_raise('22023',
            pg_catalog.format('counter key is too long (%s bytes)', pg_catalog.octet_length(key)),
            'Keys are at most 2000 bytes.');
    END IF;
END
$$;

CREATE OR REPLACE FUNCTION counter_value(name text, key text) RETURNS int8
LANGUAGE plpgsql STABLE PARALLEL RESTRICTED SET search_path = pg_catalog, pg_temp AS $$
#variable_conflict use_column
DECLARE
    cid int4;
    width_us int8;
    buffered bool;
    h int8;
    result numeric;
BEGIN
    -- _counter_check_key, inlined; an unknown counter is reported first.
    IF counter_value.key IS NULL OR pg_catalog.octet_length(counter_value.key) > 2000 THEN
        PERFORM FROM @extschema@.counter_registry r WHERE r.name = counter_value.name;
        IF NOT FOUND THEN
            PERFORM @extschema@._counter_missing(counter_value.name);
        END IF;
        PERFORM @extschema@._counter_check_key(counter_value.key);
    END IF;
    -- One statement = one snapshot: a concurrent compaction moves rows from pending to
    -- totals (and buckets) atomically, so the sum is exact. The pending rows of the key
    -- are one index range (counter_id, key). (A bucketed counter's value is read below.)
    SELECT r.id, r.bucket_us, r.mode = 'buffered',
           CASE WHEN r.bucket_us = 0 THEN
               COALESCE((SELECT t.value FROM @extschema@.counter_totals t
                         WHERE t.counter_id = r.id AND t.key = counter_value.key), 0)
             + COALESCE((SELECT pg_catalog.sum(p.delta) FROM @extschema@.counter_pending p
                         WHERE p.counter_id = r.id AND p.key = counter_value.key), 0)
             + CASE WHEN r.mode = 'buffered' THEN
                   COALESCE((SELECT pg_catalog.sum(u.delta) FROM @extschema@._counter_unflushed(r.id, counter_value.key, 0) u), 0)
               ELSE 0 END END
    INTO cid, width_us, buffered, result
    FROM @extschema@.counter_registry r WHERE r.name = counter_value.name;
    IF NOT FOUND THEN
        PERFORM @extschema@._counter_missing(counter_value.name);
    END IF;
    IF width_us > 0 THEN
        SELECT @extschema@._counter_horizon(r.retention, r.bucket_us) INTO h
        FROM @extschema@.counter_registry r WHERE r.id = cid;
        -- A bucketed counter's total is the sum of its stored buckets (retention deletes
        -- a bucket and subtracts it in one statement): those older than the retention,
        -- not deleted yet, are taken off, and pending adds to them are left out.
        SELECT COALESCE((SELECT t.value FROM @extschema@.counter_totals t
                         WHERE t.counter_id = cid AND t.key = counter_value.key), 0)
             - COALESCE((SELECT pg_catalog.sum(b.value) FROM @extschema@.counter_buckets b
                         WHERE b.counter_id = cid AND b.key = counter_value.key
                           AND b.bucket < h), 0)
             + COALESCE((SELECT pg_catalog.sum(p.delta) FROM @extschema@.counter_pending p
                         WHERE p.counter_id = cid AND p.key = counter_value.key
                           AND p.bucket >= h), 0)
             + CASE WHEN buffered THEN
                   COALESCE((SELECT pg_catalog.sum(u.delta) FROM @extschema@._counter_unflushed(cid, counter_value.key, NULL) u
                             WHERE u.bucket >= h), 0)
               ELSE 0 END
        INTO result;
    END IF;
    IF result BETWEEN -9223372036854775808 AND 9223372036854775807 THEN
        RETURN result::int8;
    END IF;
    RETURN @extschema@._counter_int8(counter_value.name, counter_value.key, result);
END
$$;

CREATE OR REPLACE FUNCTION counter_values(name text, keys text[])
RETURNS TABLE (key text, value int8)
LANGUAGE plpgsql STABLE PARALLEL RESTRICTED SET search_path = pg_catalog, pg_temp AS $$
#variable_conflict use_column
DECLARE
    cid int4;
    width_us int8;
    h int8;
    buffered bool;
BEGIN
    SELECT r.id, r.bucket_us,
           CASE WHEN r.bucket_us > 0 THEN @extschema@._counter_horizon(r.retention, r.bucket_us) END,
           r.mode = 'buffered'
    INTO cid, width_us, h, buffered
    FROM @extschema@.counter_registry r WHERE r.name = counter_values.name;
    IF NOT FOUND THEN
        PERFORM @extschema@._counter_missing(counter_values.name);
    END IF;
    IF counter_values.keys IS NULL OR pg_catalog.array_position(counter_values.keys, NULL) IS NOT NULL THEN
        PERFORM @extschema@._counter_raise('22004', 'counter keys must not be NULL');
    END IF;
    IF @extschema@._counter_distributed() THEN
        -- On Citus: one statement over the shards of the keys, grouped by key (a key's
        -- rows are in one shard, read in one snapshot there), then in the order given.
        RETURN QUERY
        WITH v AS MATERIALIZED (
            SELECT u.key, pg_catalog.sum(u.v) AS v FROM (
                SELECT t.key, t.value AS v FROM @extschema@.counter_totals t
                WHERE t.counter_id = cid AND t.key = ANY (counter_values.keys)
                UNION ALL
                SELECT p.key, p.delta FROM @extschema@.counter_pending p
                WHERE p.counter_id = cid AND p.key = ANY (counter_values.keys)) AS u
            GROUP BY u.key)
        SELECT k.k,
               CASE WHEN COALESCE(v.v, 0) BETWEEN -9223372036854775808 AND 9223372036854775807
                    THEN COALESCE(v.v, 0)::int8
                    ELSE @extschema@._counter_int8(counter_values.name, k.k, v.v) END
        FROM pg_catalog.unnest(counter_values.keys) WITH ORDINALITY AS k(k, ord)
        LEFT JOIN v ON v.key = k.k
        ORDER BY k.ord;
        RETURN;
    END IF;
    IF width_us > 0 THEN
        -- A bucketed counter (as counter_value): in the order given, one snapshot.
        RETURN QUERY
        SELECT k.k,
               CASE WHEN s.v BETWEEN -9223372036854775808 AND 9223372036854775807 THEN s.v::int8
                    ELSE @extschema@._counter_int8(counter_values.name, k.k, s.v) END
        FROM pg_catalog.unnest(counter_values.keys) WITH ORDINALITY AS k(k, ord)
        LEFT JOIN @extschema@.counter_totals t ON t.counter_id = cid AND t.key = k.k
        CROSS JOIN LATERAL (
            SELECT COALESCE(t.value, 0)
                   - COALESCE((SELECT pg_catalog.sum(b.value) FROM @extschema@.counter_buckets b
                               WHERE b.counter_id = cid AND b.key = k.k AND b.bucket < h), 0)
                   + COALESCE((SELECT pg_catalog.sum(p.delta) FROM @extschema@.counter_pending p
                               WHERE p.counter_id = cid AND p.key = k.k AND p.bucket >= h), 0)
                   + CASE WHEN buffered THEN
                         COALESCE((SELECT pg_catalog.sum(u.delta) FROM @extschema@._counter_unflushed(cid, k.k, NULL) u
                                   WHERE u.bucket >= h), 0)
                     ELSE 0 END AS v
            OFFSET 0) AS s
        ORDER BY k.ord;
        RETURN;
    END IF;
    -- In the order given (duplicates repeated), one snapshot for all keys.
    RETURN QUERY
    -- (OFFSET 0 keeps the sum a subquery evaluated once per key, not pulled up and
    -- computed again in each arm of the range check.)
    SELECT k.k,
           CASE WHEN s.v BETWEEN -9223372036854775808 AND 9223372036854775807 THEN s.v::int8
                ELSE @extschema@._counter_int8(counter_values.name, k.k, s.v) END
    FROM pg_catalog.unnest(counter_values.keys) WITH ORDINALITY AS k(k, ord)
    LEFT JOIN @extschema@.counter_totals t ON t.counter_id = cid AND t.key = k.k
    CROSS JOIN LATERAL (
        SELECT COALESCE(t.value, 0)
               + COALESCE((SELECT pg_catalog.sum(p.delta) FROM @extschema@.counter_pending p
                           WHERE p.counter_id = cid AND p.key = k.k), 0)
               + CASE WHEN buffered THEN
                     COALESCE((SELECT pg_catalog.sum(u.delta) FROM @extschema@._counter_unflushed(cid, k.k, 0) u), 0)
                 ELSE 0 END AS v
        OFFSET 0) AS s
    ORDER BY k.ord;
END
$$;

-- Set a key to an exact value (correction / admin override). Semantics: the value as of
-- this call's snapshot (taken after the key is locked) becomes `value`; adds that commit
-- concurrently but are not in that snapshot still count on top, so a set never loses a
-- concurrent add. Implemented as a correction of the folded total while holding the
-- total row's lock (compaction of this key waits; counter_set calls on one key
-- serialize). The pending rows stay and are folded as usual. Under REPEATABLE READ or
-- SERIALIZABLE a concurrent compaction of the key makes this fail with 40001: retry.
CREATE OR REPLACE FUNCTION counter_set(name text, key text, value int8) RETURNS void
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
#variable_conflict use_column
DECLARE
    cid int4;
    width_us int8;
    pending_sum numeric;
    created bool;
    buffered bool;
BEGIN
    -- NO KEY UPDATE: a concurrent counter_drop waits for us (no orphan total row), and
    -- so does a compaction of the counter: both lock the registry row before the total
    -- rows, in that order, and this call may update the row's key count.
    SELECT r.id, r.bucket_us, r.mode = 'buffered' INTO cid, width_us, buffered
    FROM @extschema@.counter_registry r WHERE r.name = counter_set.name
    FOR NO KEY UPDATE;
    IF NOT FOUND THEN
        PERFORM @extschema@._counter_missing(counter_set.name);
    END IF;
    IF width_us > 0 THEN
        -- A value set now would be undone by retention, bucket by bucket.
        PERFORM @extschema@._counter_raise('0A000',
            pg_catalog.format('counter "%s" has buckets: counter_set applies to plain counters', counter_set.name),
            hint => 'Add the difference with counter_add(), which dates it.');
    END IF;
    PERFORM @extschema@._counter_check_key(counter_set.key);
    IF counter_set.value IS NULL THEN
        PERFORM @extschema@._counter_raise('22004', 'counter value must not be NULL');
    END IF;
    -- Create and/or lock the total row.
    INSERT INTO @extschema@.counter_totals AS t (counter_id, key, value)
    VALUES (cid, counter_set.key, 0)
    ON CONFLICT (counter_id, key) DO UPDATE SET value = t.value
    RETURNING (t.xmax OPERATOR(pg_catalog.=) 0) INTO created;
    IF created AND NOT @extschema@._counter_distributed() THEN
        UPDATE @extschema@.counter_registry r SET keys = r.keys + 1 WHERE r.id = cid;
    END IF;
    -- A new statement, a new snapshot (READ COMMITTED): it includes every compaction
    -- that committed before we got the lock; in-flight ones wait and their rows are
    -- still pending here.
    -- (a buffered counter's unflushed adds too, in the same statement: they are pending
    -- adds that a flush will turn into rows)
    SELECT COALESCE((SELECT pg_catalog.sum(p.delta) FROM @extschema@.counter_pending p
                     WHERE p.counter_id = cid AND p.key = counter_set.key), 0)
         + CASE WHEN buffered THEN
               COALESCE((SELECT pg_catalog.sum(u.delta) FROM @extschema@._counter_unflushed(cid, counter_set.key, 0) u), 0)
           ELSE 0 END
    INTO pending_sum;
    UPDATE @extschema@.counter_totals t SET value = counter_set.value - pending_sum
    WHERE t.counter_id = cid AND t.key = counter_set.key;
END
$$;

-- One bounded compaction batch: what the background worker runs once per transaction
-- and counter_compact() runs in a loop. Folds at most `batch` pending rows (of one
-- counter, or of all when name is NULL) into totals and returns how many it removed
-- (rows of dropped counters are removed without folding). Atomic: it is one statement.
-- `SET enable_seqscan = off` (for the call only) pins the plan of `ctid = ANY(array)` to
-- a TID scan: a plan cached while the table looked empty was a sequential scan testing
-- every row against the whole array (10,000 x table size comparisons per batch; under
-- load the worker fell minutes behind). The pick itself stays a sequential scan: there
-- is no other path for it. `SET jit = off`: the statement's estimated cost (from a
-- pending table that was large when last analyzed) can exceed jit_above_cost, and JIT
-- compiling it took more CPU than the batch itself: an idle worker, with nothing to fold,
-- burnt most of a core compiling this statement every compact_interval. The same
-- settings are on counter_drop and counter_purge_requests.
CREATE OR REPLACE FUNCTION counter_compact_batch(name text, batch int4) RETURNS int8
LANGUAGE plpgsql VOLATILE SET enable_seqscan = off SET jit = off SET search_path = pg_catalog, pg_temp AS $$
#variable_conflict use_column
DECLARE
    cid int4;
    moved_rows int8;
    new_ids int4[];
    new_keys int8[];
    bucketed text := '';
    plain_only text := '';
BEGIN
    IF batch IS NULL OR batch < 1 THEN
        PERFORM @extschema@._counter_raise('22023', 'invalid compaction batch: ' || COALESCE(batch::text, 'NULL'),
            'batch must be at least 1.');
    END IF;
    PERFORM @extschema@._counter_compaction_lock(true);
    IF counter_compact_batch.name IS NOT NULL THEN
        SELECT r.id INTO cid FROM @extschema@.counter_registry r
        WHERE r.name = counter_compact_batch.name;
        IF NOT FOUND THEN
            PERFORM @extschema@._counter_missing(counter_compact_batch.name);
        END IF;
    END IF;
    IF @extschema@._counter_distributed() THEN
        -- On Citus: the shards this node holds, on this node (section "Citus" below).
        RETURN @extschema@._counter_compact_local(cid, batch);
    END IF;
    -- The buckets' part only where a bucketed counter exists, so that the privileges
    -- (and row level security) compaction of plain counters needs stay what they were.
    IF EXISTS (SELECT FROM @extschema@.counter_registry r
               WHERE r.bucket_us > 0 AND (cid IS NULL OR r.id = cid)) THEN
        bucketed := $b$
    ), bucketed AS (
        -- a bucketed counter's adds also go to their buckets (the total is their sum)
        INSERT INTO @extschema@.counter_buckets AS b (counter_id, key, bucket, value)
        SELECT m.counter_id, m.key, m.bucket, pg_catalog.sum(m.delta)
        FROM moved m
        WHERE m.counter_id IN (SELECT l.id FROM live l WHERE l.bucket_us > 0)
        GROUP BY m.counter_id, m.key, m.bucket
        ON CONFLICT (counter_id, key, bucket) DO UPDATE SET value = b.value + excluded.value$b$;
    ELSE
        -- without the buckets' part, only plain counters' rows: a bucketed counter
        -- created since the check above waits for the next batch
        plain_only := $p$
          AND NOT EXISTS (SELECT FROM @extschema@.counter_registry r
                          WHERE r.id = p.counter_id AND r.bucket_us > 0)$p$;
    END IF;
    EXECUTE pg_catalog.format($q$
    WITH picked AS (
        -- No row locks here (FOR UPDATE would WAL-log a lock per row on top of the
        -- delete): a row two compactions both pick is deleted, and RETURNed, by exactly
        -- one of them; the other waits for it and then skips the row.
        SELECT p.ctid AS tid FROM @extschema@.counter_pending p
        WHERE ($1 IS NULL OR p.counter_id = $1)%s
        LIMIT $2
    ), moved AS (
        DELETE FROM @extschema@.counter_pending p
        WHERE p.ctid = ANY (ARRAY(SELECT tid FROM picked))
        RETURNING p.counter_id, p.key, p.delta, p.bucket
    ), per_counter AS (
        SELECT m.counter_id, pg_catalog.count(*) AS n FROM moved m GROUP BY m.counter_id
    ), live AS (
        -- Locks each live counter's registry row (a concurrent counter_drop waits, or
        -- wins and its counter is skipped): nothing is folded for a dropped counter.
        UPDATE @extschema@.counter_registry r
        SET last_compaction = pg_catalog.clock_timestamp(),
            compactions = r.compactions + 1,
            rows_compacted = r.rows_compacted + pc.n
        FROM per_counter pc
        WHERE r.id = pc.counter_id
        RETURNING r.id, r.bucket_us%s
    ), folded AS (
        INSERT INTO @extschema@.counter_totals AS t (counter_id, key, value)
        SELECT m.counter_id, m.key, pg_catalog.sum(m.delta)
        FROM moved m
        WHERE m.counter_id IN (SELECT l.id FROM live l)
        GROUP BY m.counter_id, m.key
        ON CONFLICT (counter_id, key) DO UPDATE SET value = t.value + excluded.value
        RETURNING t.counter_id, (t.xmax OPERATOR(pg_catalog.=) 0) AS inserted
    )
    SELECT (SELECT pg_catalog.count(*) FROM moved), pg_catalog.array_agg(f.counter_id), pg_catalog.array_agg(f.n)
    FROM (SELECT f.counter_id, pg_catalog.count(*) AS n FROM folded f WHERE f.inserted
          GROUP BY f.counter_id) AS f $q$, plain_only, bucketed)
    INTO moved_rows, new_ids, new_keys USING cid, batch;
    -- The keys that got their first total row (the registry rows are locked above).
    IF new_ids IS NOT NULL THEN
        UPDATE @extschema@.counter_registry r SET keys = r.keys + u.n
        FROM ROWS FROM (pg_catalog.unnest(new_ids), pg_catalog.unnest(new_keys)) AS u(id, n)
        WHERE r.id = u.id;
    END IF;
    -- Retention: buckets past it go, in the same bounded batches.
    RETURN moved_rows + @extschema@._counter_expire(cid, batch);
END
$$;

CREATE OR REPLACE FUNCTION counter_compact(name text DEFAULT NULL) RETURNS int8
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    batch int4 := COALESCE(NULLIF(pg_catalog.current_setting('distributed_counter.compact_batch', true), '')::int4, 10000);
    total int8 := 0;
    n int8;
BEGIN
    -- (Nested: citus_is_coordinator() exists only where Citus is installed.)
    IF @extschema@._counter_distributed() THEN IF pg_catalog.citus_is_coordinator() THEN
        -- On Citus the coordinator holds no shards: every worker node compacts its own.
        IF counter_compact.name IS NOT NULL THEN
            PERFORM FROM @extschema@.counter_registry r WHERE r.name = counter_compact.name;
            IF NOT FOUND THEN
                PERFORM @extschema@._counter_missing(counter_compact.name);
            END IF;
        END IF;
        -- (@extschema@ is substituted already quoted where needed: %s, not %I.)
        RETURN @extschema@._counter_on_workers(pg_catalog.format('SELECT %s.counter_compact(%L)',
                                                                  '@extschema@', counter_compact.name),
                                               'counter compaction');
    END IF; END IF;
    LOOP
        n := @extschema@.counter_compact_batch(name, batch);
        total := total + n;
        EXIT WHEN n < batch;
    END LOOP;
    RETURN total;
END
$$;

CREATE OR REPLACE FUNCTION counter_drop(name text) RETURNS void
LANGUAGE plpgsql VOLATILE SET enable_seqscan = off SET jit = off SET search_path = pg_catalog, pg_temp AS $$
#variable_conflict use_column
DECLARE
    cid int4;
    width_us int8;
BEGIN
    DELETE FROM @extschema@.counter_registry r WHERE r.name = counter_drop.name
    RETURNING r.id, r.bucket_us INTO cid, width_us;
    IF NOT FOUND THEN
        PERFORM @extschema@._counter_missing(counter_drop.name);
    END IF;
    DELETE FROM @extschema@.counter_totals t WHERE t.counter_id = cid;
    IF width_us > 0 THEN
        DELETE FROM @extschema@.counter_buckets b WHERE b.counter_id = cid;
    END IF;
    DELETE FROM @extschema@.counter_requests q WHERE q.counter_id = cid;
    IF @extschema@._counter_distributed() THEN
        -- On Citus the pending rows are left to each node's compaction, which deletes
        -- rows of a counter that no longer exists without folding them.
        RETURN;
    END IF;
    -- SKIP LOCKED: rows an in-flight compaction holds are left to it; it finds the
    -- counter gone and deletes them without folding (waiting here could deadlock).
    DELETE FROM @extschema@.counter_pending p
    WHERE p.ctid = ANY (ARRAY(SELECT p2.ctid FROM @extschema@.counter_pending p2
                              WHERE p2.counter_id = cid FOR UPDATE SKIP LOCKED));
END
$$;

-- Forget request_ids older than distributed_counter.dedupe_retention, at most `batch`
-- of them. The worker calls this periodically; returns the number removed.
CREATE OR REPLACE FUNCTION counter_purge_requests(batch int4 DEFAULT 10000) RETURNS int8
LANGUAGE plpgsql VOLATILE SET enable_seqscan = off SET jit = off SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    n int8;
BEGIN
    IF @extschema@._counter_distributed() THEN
        RETURN @extschema@._counter_purge_requests_local(batch);
    END IF;
    WITH gone AS (
        DELETE FROM @extschema@.counter_requests q
        WHERE q.ctid = ANY (ARRAY(
            SELECT q2.ctid FROM @extschema@.counter_requests q2
            WHERE q2.added_at < now() - @extschema@._counter_retention()
            LIMIT batch FOR UPDATE SKIP LOCKED))
        RETURNING 1
    )
    SELECT pg_catalog.count(*) INTO n FROM gone;
    RETURN n;
END
$$;

-- floor(x / w) for an integral numeric x and w > 0, exactly (numeric division would
-- round the quotient first).
CREATE FUNCTION _counter_div_floor(x numeric, w int8) RETURNS int8
LANGUAGE sql IMMUTABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp
AS $$ SELECT (pg_catalog.div(x, w::numeric)
              OPERATOR(pg_catalog.-) CASE WHEN pg_catalog.mod(x, w::numeric) OPERATOR(pg_catalog.<) 0
                                          THEN 1 ELSE 0 END)::int8
$$;

-- The bucket of time `at` for buckets of `width_us` microseconds: floor(microseconds
-- since 1970-01-01 00:00 UTC / width_us). An absolute count, so no TimeZone or DST rule
-- moves a boundary: day buckets start at 00:00 UTC. (The C fast path computes the same.)
CREATE FUNCTION _counter_bucket(at timestamptz, width_us int8) RETURNS int8
LANGUAGE sql IMMUTABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp
AS $$ SELECT @extschema@._counter_div_floor(extract(epoch FROM at) OPERATOR(pg_catalog.*) 1000000, width_us)
$$;

-- The start of bucket `b` of `width_us`-microsecond buckets.
CREATE FUNCTION _counter_bucket_start(b int8, width_us int8) RETURNS timestamptz
LANGUAGE sql IMMUTABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp
AS $$ SELECT pg_catalog.to_timestamp((b::numeric OPERATOR(pg_catalog.*) width_us
                                      OPERATOR(pg_catalog./) 1000000)::float8)
$$;

-- The oldest retained bucket of a counter: the bucket holding the time `retention`
-- before the start of the current statement (retention as a span of microseconds, a
-- day being 86,400 s: no TimeZone or DST rule changes it); int8's minimum when there is
-- no retention. Reads leave out older buckets, whether or not the worker has deleted
-- them yet. The statement's time, not the transaction's: the worker deletes a bucket
-- only once it is older than that as of its own later start, so a read's snapshot
-- either still holds a bucket it counts as retained, or was taken after a deletion of
-- a bucket it counts as expired too.
CREATE FUNCTION _counter_horizon(retention interval, width_us int8) RETURNS int8
LANGUAGE sql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp
AS $$ SELECT CASE WHEN retention IS NULL OR width_us OPERATOR(pg_catalog.=) 0
                  THEN '-9223372036854775808'::int8
                  ELSE @extschema@._counter_div_floor(
                           (extract(epoch FROM pg_catalog.statement_timestamp())
                            OPERATOR(pg_catalog.-) extract(epoch FROM retention))
                           OPERATOR(pg_catalog.*) 1000000, width_us) END
$$;

-- The number of buckets in `width` for a counter with buckets of `width_us` (22023 when
-- the counter has no bucket, or width is not a positive multiple of it).
CREATE FUNCTION _counter_window_buckets(name text, width_us int8, width interval) RETURNS int8
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    w numeric;
BEGIN
    IF width_us = 0 THEN
        PERFORM @extschema@._counter_raise('22023',
            pg_catalog.format('counter "%s" has no bucket', name),
            hint => 'Windows and series need a counter created with a bucket: counter_create(name, bucket => ''1 minute'').');
    END IF;
    IF width IS NULL THEN
        PERFORM @extschema@._counter_raise('22004', 'the window width must not be NULL');
    END IF;
    w := extract(epoch FROM width) * 1000000;
    IF w <= 0 OR w % width_us <> 0 OR pg_catalog.date_part('month', width) <> 0
       OR pg_catalog.date_part('year', width) <> 0 THEN
        PERFORM @extschema@._counter_raise('22023',
            pg_catalog.format('counter "%s": a window of %s is not a positive multiple of its bucket', name, width),
            hint => 'Use a width of whole buckets, in days, hours, minutes or seconds.');
    END IF;
    RETURN (w / width_us)::int8;
END
$$;

-- The exact sum of the width/bucket most recent buckets up to and including the bucket
-- holding `ending`, of the retained ones.
CREATE FUNCTION counter_window(name text, key text, width interval, ending timestamptz DEFAULT now())
RETURNS int8
LANGUAGE plpgsql STABLE PARALLEL RESTRICTED SET search_path = pg_catalog, pg_temp AS $$
#variable_conflict use_column
DECLARE
    c record;
    lo int8;
    hi int8;
    result numeric;
BEGIN
    SELECT r.id, r.bucket_us, @extschema@._counter_horizon(r.retention, r.bucket_us) AS h,
           r.mode = 'buffered' AS buffered INTO c
    FROM @extschema@.counter_registry r WHERE r.name = counter_window.name;
    IF NOT FOUND THEN
        PERFORM @extschema@._counter_missing(counter_window.name);
    END IF;
    PERFORM @extschema@._counter_check_key(counter_window.key);
    IF ending IS NULL OR NOT pg_catalog.isfinite(ending) THEN
        PERFORM @extschema@._counter_raise('22023', 'the end of a window must be a finite time');
    END IF;
    lo := @extschema@._counter_window_buckets(counter_window.name, c.bucket_us, width);
    hi := @extschema@._counter_bucket(ending, c.bucket_us);
    lo := GREATEST(hi - lo + 1, c.h);
    SELECT COALESCE((SELECT pg_catalog.sum(b.value) FROM @extschema@.counter_buckets b
                     WHERE b.counter_id = c.id AND b.key = counter_window.key
                       AND b.bucket BETWEEN lo AND hi), 0)
         + COALESCE((SELECT pg_catalog.sum(p.delta) FROM @extschema@.counter_pending p
                     WHERE p.counter_id = c.id AND p.key = counter_window.key
                       AND p.bucket BETWEEN lo AND hi), 0)
         + CASE WHEN c.buffered THEN
               COALESCE((SELECT pg_catalog.sum(u.delta) FROM @extschema@._counter_unflushed(c.id, counter_window.key, NULL) u
                         WHERE u.bucket BETWEEN lo AND hi), 0)
           ELSE 0 END
    INTO result;
    IF result BETWEEN -9223372036854775808 AND 9223372036854775807 THEN
        RETURN result::int8;
    END IF;
    RETURN @extschema@._counter_int8(counter_window.name, counter_window.key, result);
END
$$;

-- One row per bucket overlapping [start, stop), zeros included, ascending; buckets
-- older than the retention read 0. At most 1,000,000 rows (22023 beyond).
CREATE FUNCTION counter_series(name text, key text, start timestamptz, stop timestamptz)
RETURNS TABLE (bucket_start timestamptz, value int8)
LANGUAGE plpgsql STABLE PARALLEL RESTRICTED SET search_path = pg_catalog, pg_temp AS $$
#variable_conflict use_column
DECLARE
    c record;
    lo int8;
    hi int8;
BEGIN
    SELECT r.id, r.bucket_us, @extschema@._counter_horizon(r.retention, r.bucket_us) AS h,
           r.mode = 'buffered' AS buffered INTO c
    FROM @extschema@.counter_registry r WHERE r.name = counter_series.name;
    IF NOT FOUND THEN
        PERFORM @extschema@._counter_missing(counter_series.name);
    END IF;
    PERFORM @extschema@._counter_check_key(counter_series.key);
    -- (22023 for a counter without a bucket: a day is whole buckets of every width)
    PERFORM @extschema@._counter_window_buckets(counter_series.name, c.bucket_us, interval '1 day');
    IF start IS NULL OR stop IS NULL OR NOT pg_catalog.isfinite(start) OR NOT pg_catalog.isfinite(stop) THEN
        PERFORM @extschema@._counter_raise('22023', 'the start and stop of a series must be finite times');
    END IF;
    IF stop <= start THEN
        RETURN;
    END IF;
    lo := @extschema@._counter_bucket(start, c.bucket_us);
    -- the bucket holding the last microsecond before stop
    hi := @extschema@._counter_bucket(stop - interval '1 microsecond', c.bucket_us);
    IF hi - lo >= 1000000 THEN
        PERFORM @extschema@._counter_raise('22023',
            pg_catalog.format('a series of %s buckets is too long', hi - lo + 1),
            hint => 'Ask for at most 1000000 buckets at a time.');
    END IF;
    RETURN QUERY
    WITH v AS (
        SELECT u.bucket, pg_catalog.sum(u.v) AS v FROM (
            SELECT b.bucket, b.value AS v FROM @extschema@.counter_buckets b
            WHERE b.counter_id = c.id AND b.key = counter_series.key
              AND b.bucket BETWEEN GREATEST(lo, c.h) AND hi
            UNION ALL
            SELECT p.bucket, p.delta FROM @extschema@.counter_pending p
            WHERE p.counter_id = c.id AND p.key = counter_series.key
              AND p.bucket BETWEEN GREATEST(lo, c.h) AND hi
            UNION ALL
            SELECT f.bucket, f.delta FROM @extschema@._counter_unflushed(c.id, counter_series.key, NULL) f
            WHERE c.buffered AND f.bucket BETWEEN GREATEST(lo, c.h) AND hi) AS u
        GROUP BY u.bucket)
    SELECT @extschema@._counter_bucket_start(g.b, c.bucket_us),
           CASE WHEN COALESCE(v.v, 0) BETWEEN -9223372036854775808 AND 9223372036854775807
                THEN COALESCE(v.v, 0)::int8
                ELSE @extschema@._counter_int8(counter_series.name, counter_series.key, v.v) END
    FROM pg_catalog.generate_series(lo, hi) AS g(b)
    LEFT JOIN v ON v.bucket = g.b
    ORDER BY g.b;
END
$$;

-- The n largest keys, exact (pending rows included), ties by key: over everything the
-- counter holds (all time, or the retained buckets), or over a window of the most recent
-- buckets (width, as counter_window; bucketed counters only).
--
-- Without a width it reads counter_totals by (counter_id, value DESC, key) from the top:
-- a key with no pending rows (and no expired bucket not deleted yet) is exact there, so
-- the first n such keys are merged with the exact values of the others (a short list:
-- compaction keeps the pending rows to about a second of adds). With a width it sums the
-- window's buckets of every key (a scan of the window).
CREATE FUNCTION counter_top(name text, n int4 DEFAULT 10, width interval DEFAULT NULL)
RETURNS TABLE (key text, value int8)
LANGUAGE plpgsql STABLE PARALLEL RESTRICTED SET search_path = pg_catalog, pg_temp AS $$
#variable_conflict use_column
DECLARE
    c record;
    lo int8;
    hi int8;
    dirty text[];
BEGIN
    SELECT r.id, r.bucket_us, @extschema@._counter_horizon(r.retention, r.bucket_us) AS h,
           r.mode = 'buffered' AS buffered INTO c
    FROM @extschema@.counter_registry r WHERE r.name = counter_top.name;
    IF NOT FOUND THEN
        PERFORM @extschema@._counter_missing(counter_top.name);
    END IF;
    IF n IS NULL OR n < 1 THEN
        PERFORM @extschema@._counter_raise('22023', 'invalid n: ' || COALESCE(n::text, 'NULL'),
            'n is the number of keys to return, at least 1.');
    END IF;
    IF width IS NOT NULL THEN
        lo := @extschema@._counter_window_buckets(counter_top.name, c.bucket_us, width);
        hi := @extschema@._counter_bucket(now(), c.bucket_us);
        lo := GREATEST(hi - lo + 1, c.h);
        RETURN QUERY
        SELECT u.key,
               CASE WHEN pg_catalog.sum(u.v) BETWEEN -9223372036854775808 AND 9223372036854775807
                    THEN pg_catalog.sum(u.v)::int8
                    ELSE @extschema@._counter_int8(counter_top.name, u.key, pg_catalog.sum(u.v)) END
        FROM (SELECT b.key, b.value AS v FROM @extschema@.counter_buckets b
              WHERE b.counter_id = c.id AND b.bucket BETWEEN lo AND hi
              UNION ALL
              SELECT p.key, p.delta FROM @extschema@.counter_pending p
              WHERE p.counter_id = c.id AND p.bucket BETWEEN lo AND hi
              UNION ALL
              SELECT f.key, f.delta FROM @extschema@._counter_unflushed(c.id, NULL, NULL) f
              WHERE c.buffered AND f.bucket BETWEEN lo AND hi) AS u
        GROUP BY u.key
        ORDER BY pg_catalog.sum(u.v) DESC, u.key
        LIMIT n;
        RETURN;
    END IF;
    IF @extschema@._counter_distributed() THEN
        -- On Citus: grouped by key on the shards, ordered and cut here.
        RETURN QUERY
        SELECT u.key,
               CASE WHEN pg_catalog.sum(u.v) BETWEEN -9223372036854775808 AND 9223372036854775807
                    THEN pg_catalog.sum(u.v)::int8
                    ELSE @extschema@._counter_int8(counter_top.name, u.key, pg_catalog.sum(u.v)) END
        FROM (SELECT t.key, t.value AS v FROM @extschema@.counter_totals t WHERE t.counter_id = c.id
              UNION ALL
              SELECT p.key, p.delta FROM @extschema@.counter_pending p WHERE p.counter_id = c.id) AS u
        GROUP BY u.key
        ORDER BY pg_catalog.sum(u.v) DESC, u.key
        LIMIT n;
        RETURN;
    END IF;
    IF c.bucket_us = 0 THEN
        -- A plain counter: the keys with pending rows are the inexact ones; their pending
        -- sums come from one scan of the counter's pending rows.
        RETURN QUERY
        WITH dirty AS MATERIALIZED (
            SELECT u.key, pg_catalog.sum(u.delta) AS d
            FROM (SELECT p.key, p.delta FROM @extschema@.counter_pending p WHERE p.counter_id = c.id
                  UNION ALL
                  SELECT f.key, f.delta FROM @extschema@._counter_unflushed(c.id, NULL, NULL) f
                  WHERE c.buffered) AS u
            GROUP BY u.key
        ), candidates AS (
            SELECT d.key, COALESCE(t.value, 0) + d.d AS v
            FROM dirty d
            LEFT JOIN @extschema@.counter_totals t ON t.counter_id = c.id AND t.key = d.key
            UNION ALL
            -- (NOT IN over a hashed subplan: a filter on the ordered index scan, which
            -- stops after n rows)
            (SELECT t.key, t.value FROM @extschema@.counter_totals t
             WHERE t.counter_id = c.id AND t.key NOT IN (SELECT d.key FROM dirty d)
             ORDER BY t.value DESC, t.key
             LIMIT n)
        )
        SELECT x.key,
               CASE WHEN x.v BETWEEN -9223372036854775808 AND 9223372036854775807 THEN x.v::int8
                    ELSE @extschema@._counter_int8(counter_top.name, x.key, x.v) END
        FROM candidates x
        ORDER BY x.v DESC, x.key
        LIMIT n;
        RETURN;
    END IF;
    -- A bucketed counter: also the keys with stored buckets older than the retention
    -- (not deleted yet), which are taken off, and pending adds to them left out. One
    -- statement, one snapshot.
    RETURN QUERY
    WITH dirty AS MATERIALIZED (
        SELECT u.key, pg_catalog.sum(u.d) AS d
        FROM (SELECT p.key, CASE WHEN p.bucket >= c.h THEN p.delta ELSE 0 END::numeric AS d
              FROM @extschema@.counter_pending p WHERE p.counter_id = c.id
              UNION ALL
              SELECT f.key, CASE WHEN f.bucket >= c.h THEN f.delta ELSE 0 END::numeric
              FROM @extschema@._counter_unflushed(c.id, NULL, NULL) f WHERE c.buffered
              UNION ALL
              SELECT b.key, -b.value FROM @extschema@.counter_buckets b
              WHERE b.counter_id = c.id AND b.bucket < c.h) AS u
        GROUP BY u.key
    ), candidates AS (
        SELECT d.key, COALESCE(t.value, 0) + d.d AS v
        FROM dirty d
        LEFT JOIN @extschema@.counter_totals t ON t.counter_id = c.id AND t.key = d.key
        UNION ALL
        (SELECT t.key, t.value FROM @extschema@.counter_totals t
         WHERE t.counter_id = c.id AND t.key NOT IN (SELECT d.key FROM dirty d)
         ORDER BY t.value DESC, t.key
         LIMIT n)
    )
    SELECT x.key,
           CASE WHEN x.v BETWEEN -9223372036854775808 AND 9223372036854775807 THEN x.v::int8
                ELSE @extschema@._counter_int8(counter_top.name, x.key, x.v) END
    FROM candidates x
    ORDER BY x.v DESC, x.key
    LIMIT n;
END
$$;

-- Retention (for counter_compact_batch, which holds the compaction lock): deletes at most
-- `batch` stored buckets older than their counter's retention (of one counter, or of all
-- when cid is NULL) and subtracts them from the keys' totals, in one statement per
-- counter, so a read sees a bucket either stored and counted in the total or gone from
-- both. A key left without buckets loses its total row (it is 0), so keys that stop
-- being added to leave no rows behind: storage stays bounded under constant load.
-- Buckets older than the retention as of this transaction's start (less a second) are
-- deleted; reads leave out those older than it as of their statement's start
-- (_counter_horizon), which is later for every read that can see the deletion.
CREATE FUNCTION _counter_expire(cid int4, batch int4) RETURNS int8
LANGUAGE plpgsql VOLATILE SET enable_seqscan = off SET jit = off SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    c record;
    h int8;
    n int8;
    done int8 := 0;
    emptied text[];
    gone int8;
BEGIN
    FOR c IN SELECT r.id, r.retention, r.bucket_us FROM @extschema@.counter_registry r
             WHERE r.retention IS NOT NULL AND r.bucket_us > 0 AND (cid IS NULL OR r.id = cid)
             ORDER BY r.id LOOP
        -- (the worker's transaction started before any read that sees what it deletes;
        -- one second more for a clock that steps back)
        h := @extschema@._counter_div_floor(
                 (extract(epoch FROM now()) - extract(epoch FROM c.retention) - 1) * 1000000, c.bucket_us);
        CONTINUE WHEN NOT EXISTS (SELECT FROM @extschema@.counter_buckets b
                                  WHERE b.counter_id = c.id AND b.bucket < h);
        -- the registry row first, as compaction and counter_set lock it (a concurrent
        -- counter_drop wins or waits)
        PERFORM FROM @extschema@.counter_registry r WHERE r.id = c.id FOR NO KEY UPDATE;
        CONTINUE WHEN NOT FOUND;
        WITH old AS (
            DELETE FROM @extschema@.counter_buckets b
            WHERE b.ctid = ANY (ARRAY(SELECT b2.ctid FROM @extschema@.counter_buckets b2
                                      WHERE b2.counter_id = c.id AND b2.bucket < h
                                      LIMIT batch - done))
            RETURNING b.key, b.value
        ), per_key AS (
            SELECT o.key, pg_catalog.sum(o.value) AS v FROM old o GROUP BY o.key
        ), subtracted AS (
            UPDATE @extschema@.counter_totals t SET value = t.value - pk.v
            FROM per_key pk WHERE t.counter_id = c.id AND t.key = pk.key
        )
        SELECT (SELECT pg_catalog.count(*) FROM old), pg_catalog.array_agg(pk.key)
        INTO n, emptied FROM per_key pk;
        -- (a new statement: it sees the deletion above)
        WITH g AS (
            DELETE FROM @extschema@.counter_totals t
            WHERE t.counter_id = c.id AND t.key = ANY (emptied) AND t.value = 0
              AND NOT EXISTS (SELECT FROM @extschema@.counter_buckets b
                              WHERE b.counter_id = c.id AND b.key = t.key)
            RETURNING 1
        )
        SELECT pg_catalog.count(*) INTO gone FROM g;
        IF gone > 0 THEN
            UPDATE @extschema@.counter_registry r SET keys = r.keys - gone WHERE r.id = c.id;
        END IF;
        done := done + n;
        EXIT WHEN done >= batch;
    END LOOP;
    RETURN done;
END
$$;

-- A counter's value as int8, or 22003 naming the counter and the key when the exact sum
-- (totals are numeric, so compaction never overflows) is beyond int8.
CREATE FUNCTION _counter_int8(name text, key text, v numeric) RETURNS int8
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF v BETWEEN -9223372036854775808 AND 9223372036854775807 THEN
        RETURN v::int8;
    END IF;
    PERFORM @extschema@._counter_raise('22003',
        pg_catalog.format('counter "%s", key "%s": the value %s is out of range for bigint', name, key, v),
        hint => 'Bring it back into range with counter_set() or a negative delta.');
END
$$;

-- counter_stats. security_invoker: the view reads the tables with its caller's
-- privileges and row level security, so it shows no counter its caller could not see
-- directly. Defined by _counter_define_stats_view() in the form this install needs: the
-- local form (per-counter subqueries, cheap when filtered by name) or, after
-- counter_distribute(), a form Citus can plan (grouped subqueries it aggregates on the
-- workers). An upgrade script that changes the view calls this function again.
CREATE FUNCTION _counter_define_stats_view() RETURNS void
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $fn$
DECLARE
    propagation text;
BEGIN
    -- On a Citus worker node Citus refuses DDL it would propagate ("operation is not
    -- allowed on this node"); this view is each node's own, so nothing is propagated.
    IF pg_catalog.to_regproc('pg_catalog.citus_is_coordinator') IS NOT NULL THEN
        IF NOT pg_catalog.citus_is_coordinator() THEN
            propagation := pg_catalog.current_setting('citus.enable_ddl_propagation');
            PERFORM pg_catalog.set_config('citus.enable_ddl_propagation', 'off', true);
        END IF;
    END IF;
    IF NOT @extschema@._counter_distributed() THEN
        CREATE OR REPLACE VIEW @extschema@.counter_stats WITH (security_invoker = true) AS
        -- keys: those with a total row (kept in the registry) and those only pending (the
        -- pending table is small: the compaction worker keeps it so) or, for a buffered
        -- counter, only unflushed
        SELECT r.name,
               r.shards,
               r.keys + (SELECT pg_catalog.count(DISTINCT p.key)
                         FROM (SELECT q.key FROM @extschema@.counter_pending q WHERE q.counter_id = r.id
                               UNION ALL
                               SELECT f.key FROM @extschema@._counter_unflushed(r.id, NULL, NULL) f
                               WHERE r.mode = 'buffered') AS p
                         WHERE NOT EXISTS (SELECT FROM @extschema@.counter_totals t
                                           WHERE t.counter_id = r.id AND t.key = p.key)) AS keys,
               pend.pending_rows,
               now() - pend.oldest AS oldest_pending_age,
               r.last_compaction,
               r.compactions,
               r.rows_compacted,
               r.mode,
               -- (buffered counters only: for a durable one, no call and NULLs)
               CASE WHEN r.mode = 'buffered' THEN
                   (SELECT s.unflushed FROM @extschema@._counter_buffer_state(r.id) s) END AS unflushed,
               now() - CASE WHEN r.mode = 'buffered' THEN
                   (SELECT s.last_flush FROM @extschema@._counter_buffer_state(r.id) s) END AS last_flush_age
        FROM @extschema@.counter_registry r
        CROSS JOIN LATERAL (
            SELECT pg_catalog.count(*) AS pending_rows, pg_catalog.min(p.added_at) AS oldest
            FROM @extschema@.counter_pending p WHERE p.counter_id = r.id) AS pend;
    ELSE
        CREATE OR REPLACE VIEW @extschema@.counter_stats WITH (security_invoker = true) AS
        SELECT r.name,
               r.shards,
               COALESCE(k.keys, 0) AS keys,
               COALESCE(pend.pending_rows, 0) AS pending_rows,
               now() - pend.oldest AS oldest_pending_age,
               r.last_compaction,
               r.compactions,
               r.rows_compacted,
               r.mode,
               NULL::numeric AS unflushed,
               NULL::interval AS last_flush_age
        FROM @extschema@.counter_registry r
        LEFT JOIN (
            SELECT u.counter_id, pg_catalog.count(DISTINCT u.key) AS keys
            FROM (SELECT t.counter_id, t.key FROM @extschema@.counter_totals t
                  UNION ALL
                  SELECT p.counter_id, p.key FROM @extschema@.counter_pending p) AS u
            GROUP BY u.counter_id) AS k ON k.counter_id = r.id
        LEFT JOIN (
            SELECT p.counter_id, pg_catalog.count(*) AS pending_rows, pg_catalog.min(p.added_at) AS oldest
            FROM @extschema@.counter_pending p GROUP BY p.counter_id) AS pend ON pend.counter_id = r.id;
    END IF;
    IF propagation IS NOT NULL THEN
        PERFORM pg_catalog.set_config('citus.enable_ddl_propagation', propagation, true);
    END IF;
END
$fn$;

-- True once counter_distribute() made counter_pending a Citus table (on any node of the
-- cluster: Citus copies its metadata to the workers).
CREATE FUNCTION _counter_distributed() RETURNS bool
LANGUAGE plpgsql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF pg_catalog.to_regclass('pg_catalog.pg_dist_partition') IS NULL THEN
        RETURN false;
    END IF;
    RETURN EXISTS (SELECT FROM pg_catalog.pg_dist_partition d
                   WHERE d.logicalrelid OPERATOR(pg_catalog.=) '@extschema@.counter_pending'::pg_catalog.regclass);
END
$$;

-- Run `command` (which returns a number) on every worker node; the sum of the results.
-- A node that fails raises an error naming it and `what` was being done.
CREATE FUNCTION _counter_on_workers(command text, what text) RETURNS int8
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    w record;
    total int8 := 0;
BEGIN
    FOR w IN SELECT * FROM pg_catalog.run_command_on_workers(command) LOOP
        IF NOT w.success THEN
            PERFORM @extschema@._counter_raise(CASE WHEN w.result ~* 'connect' THEN '08006' ELSE '38000' END,
                pg_catalog.format('%s failed on worker node %s:%s: %s', what, w.nodename, w.nodeport, w.result));
        END IF;
        total := total + COALESCE(NULLIF(w.result, '')::int8, 0);
    END LOOP;
    RETURN total;
END
$$;

-- The shards of counter_pending this node holds (schema-qualified names: shard_name(...,
-- false)), each with its co-located counter_totals
-- shard, and this node's copy of the registry; in random order (compaction batches
-- reach every shard). Only on a distributed install.
CREATE FUNCTION _counter_local_shards(OUT pending regclass, OUT totals regclass, OUT registry regclass)
RETURNS SETOF record
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    RETURN QUERY
    SELECT pg_catalog.shard_name('@extschema@.counter_pending'::pg_catalog.regclass, sp.shardid, false)::pg_catalog.regclass,
           pg_catalog.shard_name('@extschema@.counter_totals'::pg_catalog.regclass, st.shardid, false)::pg_catalog.regclass,
           pg_catalog.shard_name('@extschema@.counter_registry'::pg_catalog.regclass, sr.shardid, false)::pg_catalog.regclass
    FROM pg_catalog.pg_dist_shard sp
    JOIN pg_catalog.pg_dist_placement pp ON pp.shardid OPERATOR(pg_catalog.=) sp.shardid
    JOIN pg_catalog.pg_dist_shard st
      ON st.logicalrelid OPERATOR(pg_catalog.=) '@extschema@.counter_totals'::pg_catalog.regclass
     AND st.shardminvalue OPERATOR(pg_catalog.=) sp.shardminvalue
    JOIN pg_catalog.pg_dist_placement pt
      ON pt.shardid OPERATOR(pg_catalog.=) st.shardid AND pt.groupid OPERATOR(pg_catalog.=) pp.groupid
    JOIN pg_catalog.pg_dist_shard sr
      ON sr.logicalrelid OPERATOR(pg_catalog.=) '@extschema@.counter_registry'::pg_catalog.regclass
    JOIN pg_catalog.pg_dist_placement pr
      ON pr.shardid OPERATOR(pg_catalog.=) sr.shardid AND pr.groupid OPERATOR(pg_catalog.=) pp.groupid
    WHERE sp.logicalrelid OPERATOR(pg_catalog.=) '@extschema@.counter_pending'::pg_catalog.regclass
      AND pp.groupid OPERATOR(pg_catalog.=) (SELECT g.groupid FROM pg_catalog.pg_dist_local_group g)
    ORDER BY pg_catalog.random();
END
$$;

-- One compaction batch over one local shard of counter_pending (of one counter, or of all
-- when cid is NULL): the statement of counter_compact_batch, on the shard tables, with a
-- KEY SHARE lock on the registry copy's rows instead of the statistics update.
CREATE FUNCTION _counter_compact_shard(pending regclass, totals regclass, registry regclass, cid int4, batch int4)
RETURNS int8
LANGUAGE plpgsql VOLATILE SET enable_seqscan = off SET jit = off SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    moved_rows int8;
BEGIN
    EXECUTE pg_catalog.format($q$
        WITH picked AS (
            SELECT p.ctid AS tid FROM %1$s p WHERE $1 IS NULL OR p.counter_id = $1 LIMIT $2
        ), moved AS (
            DELETE FROM %1$s p WHERE p.ctid = ANY (ARRAY(SELECT tid FROM picked))
            RETURNING p.counter_id, p.key, p.delta
        ), live AS (
            SELECT r.id FROM %3$s r WHERE r.id IN (SELECT m.counter_id FROM moved m) FOR KEY SHARE OF r
        ), folded AS (
            INSERT INTO %2$s AS t (counter_id, key, value)
            SELECT m.counter_id, m.key, pg_catalog.sum(m.delta)
            FROM moved m
            WHERE m.counter_id IN (SELECT l.id FROM live l)
            GROUP BY m.counter_id, m.key
            ON CONFLICT (counter_id, key) DO UPDATE SET value = t.value + excluded.value
        )
        SELECT pg_catalog.count(*) FROM moved $q$, pending, totals, registry)
    INTO moved_rows USING cid, batch;
    RETURN moved_rows;
END
$$;

-- At most `batch` pending rows of this node's shards folded, one statement per shard (the
-- caller holds the compaction lock).
CREATE FUNCTION _counter_compact_local(cid int4, batch int4) RETURNS int8
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    sh record;
    moved int8 := 0;
BEGIN
    FOR sh IN SELECT * FROM @extschema@._counter_local_shards() LOOP
        moved := moved + @extschema@._counter_compact_shard(sh.pending, sh.totals, sh.registry, cid, (batch - moved)::int4);
        EXIT WHEN moved >= batch;
    END LOOP;
    RETURN moved;
END
$$;

-- counter_purge_requests on this node's shards of counter_requests.
CREATE FUNCTION _counter_purge_requests_local(batch int4) RETURNS int8
LANGUAGE plpgsql VOLATILE SET enable_seqscan = off SET jit = off SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    shard regclass;
    n int8;
    total int8 := 0;
BEGIN
    FOR shard IN
        SELECT pg_catalog.shard_name('@extschema@.counter_requests'::pg_catalog.regclass, s.shardid, false)::pg_catalog.regclass
        FROM pg_catalog.pg_dist_shard s
        JOIN pg_catalog.pg_dist_placement p ON p.shardid OPERATOR(pg_catalog.=) s.shardid
        WHERE s.logicalrelid OPERATOR(pg_catalog.=) '@extschema@.counter_requests'::pg_catalog.regclass
          AND p.groupid OPERATOR(pg_catalog.=) (SELECT g.groupid FROM pg_catalog.pg_dist_local_group g)
    LOOP
        EXECUTE pg_catalog.format($q$
            WITH gone AS (
                DELETE FROM %1$s q WHERE q.ctid = ANY (ARRAY(
                    SELECT q2.ctid FROM %1$s q2 WHERE q2.added_at < now() - $1 LIMIT $2 FOR UPDATE SKIP LOCKED))
                RETURNING 1)
            SELECT pg_catalog.count(*) FROM gone $q$, shard)
        INTO n USING @extschema@._counter_retention(), batch - total;
        total := total + n;
        EXIT WHEN total >= batch;
    END LOOP;
    RETURN total;
END
$$;

CREATE FUNCTION counter_distribute() RETURNS void
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_extension e WHERE e.extname OPERATOR(pg_catalog.=) 'citus') THEN
        PERFORM @extschema@._counter_raise('55000', 'counter_distribute() needs Citus, which is not installed in this database',
            hint => 'On every node: shared_preload_libraries = ''citus,distributed_counter'', CREATE EXTENSION citus and CREATE EXTENSION distributed_counter; add the workers on the coordinator (citus_add_node), then call counter_distribute() there.');
    END IF;
    IF NOT pg_catalog.citus_is_coordinator() THEN
        PERFORM @extschema@._counter_raise('55000', 'counter_distribute() runs on the Citus coordinator');
    END IF;
    IF NOT @extschema@._counter_distributed() THEN
        -- (SHARE: a counter_create running now commits first, and is seen below)
        LOCK TABLE @extschema@.counter_registry IN SHARE MODE;
        IF EXISTS (SELECT FROM @extschema@.counter_registry r WHERE r.bucket_us > 0) THEN
            PERFORM @extschema@._counter_raise('0A000',
                'counter_distribute(): bucketed counters are not available on a distributed (Citus) install',
                hint => 'Drop the bucketed counters first (counter_drop), or keep this install on one node.');
        END IF;
        IF EXISTS (SELECT FROM @extschema@.counter_registry r WHERE r.mode = 'buffered') THEN
            PERFORM @extschema@._counter_raise('0A000',
                'counter_distribute(): buffered counters are not available on a distributed (Citus) install',
                hint => 'Drop the buffered counters first (counter_drop), or keep this install on one node.');
        END IF;
        PERFORM @extschema@._counter_distribute_tables();
    END IF;
    -- counter_stats in its cluster-wide form on every node: here, and on the workers
    -- (again on each call, so a call after adding a node reaches the new one too).
    PERFORM @extschema@._counter_define_stats_view();
    PERFORM @extschema@._counter_on_workers(
        pg_catalog.format('SELECT 0 FROM %s._counter_define_stats_view()', '@extschema@'),
        'defining counter_stats');
END
$$;

-- counter_distribute()'s move of the tables (on the coordinator, once).
CREATE FUNCTION _counter_distribute_tables() RETURNS void
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    -- No compaction on this node while the tables move (the worker skips its passes).
    PERFORM @extschema@._counter_compaction_lock(true);
    -- Citus distributes no table with triggers. These invalidate the per-backend cache of
    -- counter_add's C fast path, which a distributed install does not use.
    DROP TRIGGER counter_registry_changing ON @extschema@.counter_registry;
    DROP TRIGGER counter_registry_changed ON @extschema@.counter_registry;
    DROP TRIGGER counter_registry_truncated ON @extschema@.counter_registry;
    PERFORM pg_catalog.create_reference_table('@extschema@.counter_registry');
    PERFORM pg_catalog.create_distributed_table('@extschema@.counter_totals', 'key', colocate_with => 'none');
    PERFORM pg_catalog.create_distributed_table('@extschema@.counter_pending', 'key',
                                                colocate_with => '@extschema@.counter_totals');
    -- (no bucketed counters on Citus: empty, distributed so that reads of one key, which
    -- name it, stay single-shard statements)
    PERFORM pg_catalog.create_distributed_table('@extschema@.counter_buckets', 'key',
                                                colocate_with => '@extschema@.counter_totals');
    PERFORM pg_catalog.create_distributed_table('@extschema@.counter_requests', 'request_id', colocate_with => 'none');
    -- The rows were copied into the shards; the coordinator's local copies go.
    PERFORM pg_catalog.truncate_local_data_after_distributing_table(t)
    FROM pg_catalog.unnest(ARRAY['@extschema@.counter_registry', '@extschema@.counter_totals',
                                 '@extschema@.counter_pending', '@extschema@.counter_buckets',
                                 '@extschema@.counter_requests']::pg_catalog.regclass[]) AS t;
END
$$;

SELECT @extschema@._counter_define_stats_view();
COMMENT ON FUNCTION counter_distribute() IS
    'makes the counter tables Citus tables (registry: reference table; rows: distributed by key); run once on the coordinator';

-- 3. rate_limit() (sql/rate_limit.sql, the same text).
-- rate_limit: a GCRA token bucket per key, its state in shared memory (src/rate_limit.rs,
-- src/core/src/rate_limit.rs). Not STRICT: a NULL argument is an error (22004), and a NULL
-- burst means "as many as rate". One row, returned by a C function in value-per-call mode.
-- PARALLEL RESTRICTED: it changes shared state, so it runs in the leader only.
CREATE FUNCTION rate_limit(key text, rate int8, per interval, burst int8 DEFAULT NULL, cost int8 DEFAULT 1)
RETURNS TABLE (allowed bool, remaining int8, retry_after interval, reset_after interval)
    AS 'MODULE_PATHNAME', 'rate_limit' LANGUAGE C VOLATILE PARALLEL RESTRICTED ROWS 1;
COMMENT ON FUNCTION rate_limit(text, int8, interval, int8, int8) IS
    'take cost tokens from the key''s bucket (burst tokens, refilled at rate per per) if they are there';
-- The keys are one namespace per database, shared by every role that may call it: a role
-- could spend another's quota or fill the table. So nobody may until granted.
REVOKE ALL ON FUNCTION rate_limit(text, int8, interval, int8, int8) FROM PUBLIC;

-- 4. One NULL rule for the add functions: hll_add (and hll || hll_hashval) takes a NULL
--    sketch as an empty one (of precision 12). (cms_add, topk_add: the same rule, in their C code.)
ALTER FUNCTION hll_add(hll, hll_hashval) CALLED ON NULL INPUT;

-- 5. hll format 2 (docs/FORMAT.md): the aggregates that build a sketch compress their
--    result with hll_compact.
-- The compressed stored form (format 2) of any sketch; format 2 values come back as
-- they are. `UPDATE t SET h = hll_compact(h)` converts a table of format-1 values.
CREATE FUNCTION hll_compact(hll) RETURNS hll
    AS 'MODULE_PATHNAME', 'hll_compact' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE OR REPLACE AGGREGATE hll_add_agg(hll_hashval) (
    SFUNC = hll_add_trans, STYPE = hll,
    FINALFUNC = hll_compact,
    COMBINEFUNC = hll_union_trans, PARALLEL = SAFE
);
CREATE OR REPLACE AGGREGATE hll_add_agg(hll_hashval, int4) (
    SFUNC = hll_add_trans, STYPE = hll,
    FINALFUNC = hll_compact,
    COMBINEFUNC = hll_union_trans, PARALLEL = SAFE
);
CREATE OR REPLACE AGGREGATE hll_union_agg(hll) (
    SFUNC = hll_union_trans, STYPE = hll,
    FINALFUNC = hll_compact,
    COMBINEFUNC = hll_union_trans, PARALLEL = SAFE
);
