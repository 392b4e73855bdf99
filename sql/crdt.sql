-- crdt: state-based CRDT counters gcounter / pncounter (Shapiro et al., INRIA RR-7506).
-- Text form JSON, binary form the versioned stored bytes (docs/FORMAT.md).

CREATE TYPE gcounter;
CREATE FUNCTION gcounter_in(cstring) RETURNS gcounter
    AS 'MODULE_PATHNAME', 'gcounter_in' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION gcounter_out(gcounter) RETURNS cstring
    AS 'MODULE_PATHNAME', 'gcounter_out' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION gcounter_recv(internal) RETURNS gcounter
    AS 'MODULE_PATHNAME', 'gcounter_recv' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION gcounter_send(gcounter) RETURNS bytea
    AS 'MODULE_PATHNAME', 'dc_bytes_send' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE TYPE gcounter (
    INPUT = gcounter_in, OUTPUT = gcounter_out,
    RECEIVE = gcounter_recv, SEND = gcounter_send,
    INTERNALLENGTH = VARIABLE, ALIGNMENT = int4, STORAGE = extended
);
COMMENT ON TYPE gcounter IS 'grow-only CRDT counter: node id -> count, merged by per-node max';

CREATE TYPE pncounter;
CREATE FUNCTION pncounter_in(cstring) RETURNS pncounter
    AS 'MODULE_PATHNAME', 'pncounter_in' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION pncounter_out(pncounter) RETURNS cstring
    AS 'MODULE_PATHNAME', 'pncounter_out' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION pncounter_recv(internal) RETURNS pncounter
    AS 'MODULE_PATHNAME', 'pncounter_recv' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION pncounter_send(pncounter) RETURNS bytea
    AS 'MODULE_PATHNAME', 'dc_bytes_send' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE TYPE pncounter (
    INPUT = pncounter_in, OUTPUT = pncounter_out,
    RECEIVE = pncounter_recv, SEND = pncounter_send,
    INTERNALLENGTH = VARIABLE, ALIGNMENT = int4, STORAGE = extended
);
COMMENT ON TYPE pncounter IS 'increment/decrement CRDT counter: a gcounter of increments and one of decrements';

CREATE FUNCTION pncounter(gcounter) RETURNS pncounter
    AS 'MODULE_PATHNAME', 'pncounter_from_gcounter' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE CAST (gcounter AS pncounter) WITH FUNCTION pncounter(gcounter);

-- The stored bytes as bytea and back (the bytea -> counter direction validates: 22P03).
CREATE FUNCTION gcounter_from_bytea(bytea) RETURNS gcounter
    AS 'MODULE_PATHNAME', 'gcounter_from_bytea' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE CAST (bytea AS gcounter) WITH FUNCTION gcounter_from_bytea(bytea);
CREATE CAST (gcounter AS bytea) WITHOUT FUNCTION;
CREATE FUNCTION pncounter_from_bytea(bytea) RETURNS pncounter
    AS 'MODULE_PATHNAME', 'pncounter_from_bytea' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE CAST (bytea AS pncounter) WITH FUNCTION pncounter_from_bytea(bytea);
CREATE CAST (pncounter AS bytea) WITHOUT FUNCTION;

-- Counting. Not STRICT: a NULL counter is the empty one, a NULL node the default node
-- (GUC distributed_counter.node_id, else the system identifier), so STABLE.
CREATE FUNCTION gcounter_increment(gcounter, n int8 DEFAULT 1, node text DEFAULT NULL) RETURNS gcounter
    AS 'MODULE_PATHNAME', 'gcounter_increment' LANGUAGE C STABLE PARALLEL SAFE;
CREATE FUNCTION pncounter_increment(pncounter, n int8 DEFAULT 1, node text DEFAULT NULL) RETURNS pncounter
    AS 'MODULE_PATHNAME', 'pncounter_increment' LANGUAGE C STABLE PARALLEL SAFE;
CREATE FUNCTION pncounter_decrement(pncounter, n int8 DEFAULT 1, node text DEFAULT NULL) RETURNS pncounter
    AS 'MODULE_PATHNAME', 'pncounter_decrement' LANGUAGE C STABLE PARALLEL SAFE;

CREATE FUNCTION gcounter_merge(gcounter, gcounter) RETURNS gcounter
    AS 'MODULE_PATHNAME', 'gcounter_merge' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION pncounter_merge(pncounter, pncounter) RETURNS pncounter
    AS 'MODULE_PATHNAME', 'pncounter_merge' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION gcounter_value(gcounter) RETURNS int8
    AS 'MODULE_PATHNAME', 'gcounter_value' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION pncounter_value(pncounter) RETURNS int8
    AS 'MODULE_PATHNAME', 'pncounter_value' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;

CREATE OPERATOR || (LEFTARG = gcounter, RIGHTARG = gcounter, PROCEDURE = gcounter_merge, COMMUTATOR = ||);
CREATE OPERATOR || (LEFTARG = pncounter, RIGHTARG = pncounter, PROCEDURE = pncounter_merge, COMMUTATOR = ||);

-- Per-node view of a counter (reads the canonical JSON text).
CREATE FUNCTION gcounter_entries(gcounter, OUT node text, OUT count int8) RETURNS SETOF record
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    SET search_path = pg_catalog, pg_temp AS $$ SELECT e.key, e.value::pg_catalog.int8
          FROM pg_catalog.json_each_text($1::pg_catalog.text::pg_catalog.json) e ORDER BY 1 $$;
CREATE FUNCTION pncounter_entries(pncounter, OUT node text, OUT increments int8, OUT decrements int8)
    RETURNS SETOF record LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    SET search_path = pg_catalog, pg_temp AS $$ SELECT coalesce(p.key, n.key), coalesce(p.value::pg_catalog.int8, 0), coalesce(n.value::pg_catalog.int8, 0)
          FROM pg_catalog.json_each_text(($1::pg_catalog.text::pg_catalog.json) -> 'p') p
          FULL JOIN pg_catalog.json_each_text(($1::pg_catalog.text::pg_catalog.json) -> 'n') n ON p.key = n.key
          ORDER BY 1 $$;

-- Equality on the canonical bytes, with hash opclasses (GROUP BY / DISTINCT / hash joins).
-- The same byte comparison serves both types.
CREATE FUNCTION gcounter_eq(gcounter, gcounter) RETURNS bool
    AS 'MODULE_PATHNAME', 'dc_bytes_eq' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE LEAKPROOF;
CREATE FUNCTION gcounter_ne(gcounter, gcounter) RETURNS bool
    AS 'MODULE_PATHNAME', 'dc_bytes_ne' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE LEAKPROOF;
CREATE FUNCTION gcounter_hash(gcounter) RETURNS int4
    AS 'MODULE_PATHNAME', 'dc_bytes_hash' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION pncounter_eq(pncounter, pncounter) RETURNS bool
    AS 'MODULE_PATHNAME', 'dc_bytes_eq' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE LEAKPROOF;
CREATE FUNCTION pncounter_ne(pncounter, pncounter) RETURNS bool
    AS 'MODULE_PATHNAME', 'dc_bytes_ne' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE LEAKPROOF;
CREATE FUNCTION pncounter_hash(pncounter) RETURNS int4
    AS 'MODULE_PATHNAME', 'dc_bytes_hash' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;

CREATE OPERATOR = (
    LEFTARG = gcounter, RIGHTARG = gcounter, PROCEDURE = gcounter_eq,
    COMMUTATOR = =, NEGATOR = <>, RESTRICT = eqsel, JOIN = eqjoinsel, HASHES
);
CREATE OPERATOR <> (
    LEFTARG = gcounter, RIGHTARG = gcounter, PROCEDURE = gcounter_ne,
    COMMUTATOR = <>, NEGATOR = =, RESTRICT = neqsel, JOIN = neqjoinsel
);
CREATE OPERATOR CLASS gcounter_hash_ops DEFAULT FOR TYPE gcounter USING hash AS
    OPERATOR 1 =,
    FUNCTION 1 gcounter_hash(gcounter);
CREATE OPERATOR = (
    LEFTARG = pncounter, RIGHTARG = pncounter, PROCEDURE = pncounter_eq,
    COMMUTATOR = =, NEGATOR = <>, RESTRICT = eqsel, JOIN = eqjoinsel, HASHES
);
CREATE OPERATOR <> (
    LEFTARG = pncounter, RIGHTARG = pncounter, PROCEDURE = pncounter_ne,
    COMMUTATOR = <>, NEGATOR = =, RESTRICT = neqsel, JOIN = neqjoinsel
);
CREATE OPERATOR CLASS pncounter_hash_ops DEFAULT FOR TYPE pncounter USING hash AS
    OPERATOR 1 =,
    FUNCTION 1 pncounter_hash(pncounter);

-- Merge aggregates: the state is the counter type itself (not internal), raised in
-- place; the transition function doubles as the combine function. Not STRICT: NULL
-- inputs are skipped, no rows (or only NULLs) give NULL.
CREATE FUNCTION gcounter_merge_trans(gcounter, gcounter) RETURNS gcounter
    AS 'MODULE_PATHNAME', 'gcounter_merge_trans' LANGUAGE C IMMUTABLE PARALLEL SAFE;
CREATE FUNCTION pncounter_merge_trans(pncounter, pncounter) RETURNS pncounter
    AS 'MODULE_PATHNAME', 'pncounter_merge_trans' LANGUAGE C IMMUTABLE PARALLEL SAFE;
CREATE AGGREGATE gcounter_merge_agg(gcounter) (
    SFUNC = gcounter_merge_trans, STYPE = gcounter,
    COMBINEFUNC = gcounter_merge_trans, PARALLEL = SAFE
);
CREATE AGGREGATE pncounter_merge_agg(pncounter) (
    SFUNC = pncounter_merge_trans, STYPE = pncounter,
    COMBINEFUNC = pncounter_merge_trans, PARALLEL = SAFE
);

-- Replication triggers (see docs: multi-region recipe). Both avoid search_path lookups:
-- the apply worker runs with an empty search_path.
CREATE FUNCTION crdt_merge_trigger() RETURNS trigger
    AS 'MODULE_PATHNAME', 'crdt_merge_trigger' LANGUAGE C;
COMMENT ON FUNCTION crdt_merge_trigger() IS
    'BEFORE UPDATE row trigger: counter columns of NEW := merge(OLD, NEW); skips updates that change nothing';

-- BEFORE INSERT row trigger: turns the row into
--   INSERT ... ON CONFLICT ON CONSTRAINT <primary key> DO UPDATE SET c = merge(t.c, EXCLUDED.c)
-- for every counter column c (other columns of an existing row are left alone), and
-- skips the original insert. ON CONFLICT makes two concurrent first inserts of one key
-- (local sessions or apply workers) both succeed in READ COMMITTED. The nested INSERT
-- fires this trigger again; a transaction-local marker (relation + trigger depth) lets
-- that inner call through.
CREATE FUNCTION crdt_insert_merge_trigger() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $fn$
DECLARE
    marker text := TG_RELID::text || '@' || pg_catalog.pg_trigger_depth();
    pkey name;
    sets text;
BEGIN
    IF TG_OP <> 'INSERT' OR TG_LEVEL <> 'ROW' OR TG_WHEN <> 'BEFORE' THEN
        RAISE EXCEPTION 'crdt_insert_merge_trigger() must be fired BEFORE INSERT FOR EACH ROW'
            USING ERRCODE = '39P01';
    END IF;
    IF pg_catalog.current_setting('distributed_counter_crdt.insert_merge', true)
           = TG_RELID::text || '@' || (pg_catalog.pg_trigger_depth() - 1) THEN
        RETURN NEW;  -- the inner INSERT ... ON CONFLICT issued below
    END IF;
    SELECT c.conname INTO pkey FROM pg_catalog.pg_constraint c
     WHERE c.conrelid = TG_RELID AND c.contype = 'p';
    IF NOT FOUND THEN
        RAISE EXCEPTION 'crdt_insert_merge_trigger(): table %.% has no primary key',
            TG_TABLE_SCHEMA, TG_TABLE_NAME
            USING ERRCODE = '55000', HINT = 'Rows are merged by primary key; add one.';
    END IF;
    SELECT pg_catalog.string_agg(pg_catalog.format(
               '%1$I = CASE WHEN t.%1$I IS NULL THEN EXCLUDED.%1$I WHEN EXCLUDED.%1$I IS NULL THEN t.%1$I ELSE %2$s(t.%1$I, EXCLUDED.%1$I) END',
               a.attname,
               CASE WHEN a.atttypid = '@extschema@.gcounter'::pg_catalog.regtype
                    THEN '@extschema@.gcounter_merge' ELSE '@extschema@.pncounter_merge' END),
           ', ' ORDER BY a.attnum)
      INTO sets
      FROM pg_catalog.pg_attribute a
     WHERE a.attrelid = TG_RELID AND a.attnum > 0 AND NOT a.attisdropped
       AND a.atttypid IN ('@extschema@.gcounter'::pg_catalog.regtype, '@extschema@.pncounter'::pg_catalog.regtype);
    PERFORM pg_catalog.set_config('distributed_counter_crdt.insert_merge', marker, true);
    EXECUTE pg_catalog.format('INSERT INTO %I.%I AS t SELECT ($1).* ON CONFLICT ON CONSTRAINT %I DO %s',
                              TG_TABLE_SCHEMA, TG_TABLE_NAME, pkey,
                              CASE WHEN sets IS NULL THEN 'NOTHING' ELSE 'UPDATE SET ' || sets END)
        USING NEW;
    PERFORM pg_catalog.set_config('distributed_counter_crdt.insert_merge', '', true);
    RETURN NULL;
END
$fn$;
COMMENT ON FUNCTION crdt_insert_merge_trigger() IS
    'BEFORE INSERT row trigger: an insert of an existing primary key merges its counters into the row';
