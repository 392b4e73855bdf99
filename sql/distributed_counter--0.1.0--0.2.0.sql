-- distributed_counter 0.1.0 -> 0.2.0: privilege hardening (CHANGELOG.md, 0.2.0).
-- Every SQL/PL/pgSQL function and trigger pins its search_path; compactions take one
-- lock; registry changes take SHARE on counter_pending before they touch a row;
-- counter_stats reads with its caller's rights. The C entry points are in the new
-- library; no stored value changes.
\echo Use "ALTER EXTENSION distributed_counter UPDATE TO '0.2.0'" to load this file. \quit

ALTER FUNCTION @extschema@._counter_missing(text) SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION @extschema@._counter_check_name(text) SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION @extschema@._counter_check_key(text) SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION @extschema@._counter_retention() SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION @extschema@.counter_create(text, int4) SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION @extschema@._counter_add_sql(text, text, int8, text) SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION @extschema@.counter_value(text, text) SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION @extschema@.counter_values(text, text[]) SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION @extschema@.counter_compact(text) SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION @extschema@.counter_set(text, text, int8) SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION @extschema@.counter_drop(text) SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION @extschema@.counter_purge_requests(int4) SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION @extschema@.gcounter_entries(@extschema@.gcounter) SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION @extschema@.pncounter_entries(@extschema@.pncounter) SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION @extschema@.crdt_insert_merge_trigger() SET search_path = pg_catalog, pg_temp;

CREATE FUNCTION @extschema@._counter_compaction_lock(wait bool) RETURNS bool
AS 'MODULE_PATHNAME', 'dc_counter_compaction_lock' LANGUAGE C VOLATILE STRICT;

CREATE FUNCTION @extschema@._counter_schema_intact() RETURNS bool
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
AS $$ SELECT pg_catalog.to_regnamespace('@extschema@') OPERATOR(pg_catalog.=)
             (SELECT e.extnamespace FROM pg_catalog.pg_extension e
               WHERE e.extname OPERATOR(pg_catalog.=) 'distributed_counter') $$;

CREATE OR REPLACE FUNCTION @extschema@.counter_compact_batch(name text, batch int4) RETURNS int8
LANGUAGE plpgsql VOLATILE SET enable_seqscan = off SET jit = off SET search_path = pg_catalog, pg_temp AS $$
#variable_conflict use_column
DECLARE
    cid int4;
    moved_rows int8;
BEGIN
    IF batch IS NULL OR batch < 1 THEN
        RAISE EXCEPTION 'invalid compaction batch: %', COALESCE(batch::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value', DETAIL = 'batch must be at least 1.';
    END IF;
    PERFORM @extschema@._counter_compaction_lock(true);
    IF counter_compact_batch.name IS NOT NULL THEN
        SELECT r.id INTO cid FROM @extschema@.counter_registry r
        WHERE r.name = counter_compact_batch.name;
        IF NOT FOUND THEN
            PERFORM @extschema@._counter_missing(counter_compact_batch.name);
        END IF;
    END IF;
    WITH picked AS (
        -- No row locks here (FOR UPDATE would WAL-log a lock per row on top of the
        -- delete): a row two compactions both pick is deleted, and RETURNed, by exactly
        -- one of them; the other waits for it and then skips the row.
        SELECT p.ctid AS tid FROM @extschema@.counter_pending p
        WHERE cid IS NULL OR p.counter_id = cid
        LIMIT batch
    ), moved AS (
        DELETE FROM @extschema@.counter_pending p
        WHERE p.ctid = ANY (ARRAY(SELECT tid FROM picked))
        RETURNING p.counter_id, p.key, p.delta
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
        RETURNING r.id
    ), folded AS (
        INSERT INTO @extschema@.counter_totals AS t (counter_id, key, value)
        SELECT m.counter_id, m.key, pg_catalog.sum(m.delta)
        FROM moved m
        WHERE m.counter_id IN (SELECT l.id FROM live l)
        GROUP BY m.counter_id, m.key
        ON CONFLICT (counter_id, key) DO UPDATE SET value = t.value + excluded.value
    )
    SELECT pg_catalog.count(*) INTO moved_rows FROM moved;
    RETURN moved_rows;
END
$$;

CREATE TRIGGER counter_registry_changing
    BEFORE DELETE OR UPDATE OF id, name, shards OR TRUNCATE ON @extschema@.counter_registry
    FOR EACH STATEMENT EXECUTE FUNCTION @extschema@._counter_registry_changed();

ALTER VIEW @extschema@.counter_stats SET (security_invoker = true);
