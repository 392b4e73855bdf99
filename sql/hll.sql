-- hll: UltraLogLog distinct-count sketches. Byte layout: docs/FORMAT.md.

CREATE TYPE hll;

CREATE FUNCTION hll_in(cstring, oid, int4) RETURNS hll
    AS 'MODULE_PATHNAME', 'hll_in' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION hll_out(hll) RETURNS cstring
    AS 'MODULE_PATHNAME', 'hll_out' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION hll_recv(internal, oid, int4) RETURNS hll
    AS 'MODULE_PATHNAME', 'hll_recv' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION hll_send(hll) RETURNS bytea
    AS 'MODULE_PATHNAME', 'dc_bytes_send' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION hll_typmod_in(cstring[]) RETURNS int4
    AS 'MODULE_PATHNAME', 'hll_typmod_in' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION hll_typmod_out(int4) RETURNS cstring
    AS 'MODULE_PATHNAME', 'hll_typmod_out' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;

-- STORAGE = main: a p = 12 sketch (4 KB) stays in the heap tuple (compressed only
-- if that pays), so hll_union_agg over stored sketches reads no TOAST table.
CREATE TYPE hll (
    INPUT = hll_in,
    OUTPUT = hll_out,
    RECEIVE = hll_recv,
    SEND = hll_send,
    TYPMOD_IN = hll_typmod_in,
    TYPMOD_OUT = hll_typmod_out,
    INTERNALLENGTH = VARIABLE,
    ALIGNMENT = int4,
    STORAGE = main
);
COMMENT ON TYPE hll IS 'UltraLogLog distinct-count sketch (precision 4..18)';

CREATE FUNCTION hll(hll, int4, bool) RETURNS hll
    AS 'MODULE_PATHNAME', 'hll_enforce_typmod' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE CAST (hll AS hll) WITH FUNCTION hll(hll, int4, bool) AS IMPLICIT;

CREATE FUNCTION hll_from_bytea(bytea) RETURNS hll
    AS 'MODULE_PATHNAME', 'hll_from_bytea' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE CAST (bytea AS hll) WITH FUNCTION hll_from_bytea(bytea);
CREATE CAST (hll AS bytea) WITHOUT FUNCTION;

CREATE FUNCTION hll_empty(p int4 DEFAULT NULL) RETURNS hll
    AS 'MODULE_PATHNAME', 'hll_empty' LANGUAGE C STABLE PARALLEL SAFE;
COMMENT ON FUNCTION hll_empty(int4) IS
    'empty sketch; NULL precision means distributed_counter.hll_default_precision';
-- Not strict: a NULL sketch is an empty one of precision 12 (a fixed precision, not the
-- setting: the function stays IMMUTABLE, which Citus requires of functions in an UPDATE's
-- SET list), a NULL hash adds nothing.
CREATE FUNCTION hll_add(hll, hll_hashval) RETURNS hll
    AS 'MODULE_PATHNAME', 'hll_add' LANGUAGE C IMMUTABLE PARALLEL SAFE;
CREATE FUNCTION hll_union(hll, hll) RETURNS hll
    AS 'MODULE_PATHNAME', 'hll_union' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION hll_cardinality(hll) RETURNS float8
    AS 'MODULE_PATHNAME', 'hll_cardinality' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION hll_cardinality_bounds(hll, confidence float8 DEFAULT 0.95,
        OUT estimate float8, OUT lower float8, OUT upper float8)
    AS 'MODULE_PATHNAME', 'hll_cardinality_bounds' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION hll_precision(hll) RETURNS int4
    AS 'MODULE_PATHNAME', 'hll_precision' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION hll_print(hll) RETURNS text
    AS 'MODULE_PATHNAME', 'hll_print' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
-- The compressed stored form (format 2) of any sketch; format 2 values come back as
-- they are. `UPDATE t SET h = hll_compact(h)` converts a table of format-1 values.
CREATE FUNCTION hll_compact(hll) RETURNS hll
    AS 'MODULE_PATHNAME', 'hll_compact' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;

CREATE OPERATOR || (LEFTARG = hll, RIGHTARG = hll_hashval, PROCEDURE = hll_add);
CREATE OPERATOR || (LEFTARG = hll, RIGHTARG = hll, PROCEDURE = hll_union, COMMUTATOR = ||);
CREATE OPERATOR # (RIGHTARG = hll, PROCEDURE = hll_cardinality);

CREATE FUNCTION hll_eq(hll, hll) RETURNS bool
    AS 'MODULE_PATHNAME', 'dc_bytes_eq' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE LEAKPROOF;
CREATE FUNCTION hll_ne(hll, hll) RETURNS bool
    AS 'MODULE_PATHNAME', 'dc_bytes_ne' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE LEAKPROOF;
CREATE FUNCTION hll_hash(hll) RETURNS int4
    AS 'MODULE_PATHNAME', 'dc_bytes_hash' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE OPERATOR = (
    LEFTARG = hll, RIGHTARG = hll, PROCEDURE = hll_eq,
    COMMUTATOR = =, NEGATOR = <>, RESTRICT = eqsel, JOIN = eqjoinsel, HASHES, MERGES
);
CREATE OPERATOR <> (
    LEFTARG = hll, RIGHTARG = hll, PROCEDURE = hll_ne,
    COMMUTATOR = <>, NEGATOR = =, RESTRICT = neqsel, JOIN = neqjoinsel
);
-- Byte order of the canonical form: meaningless as a size order, but it lets sorting
-- plans (count(DISTINCT h), UNION, merge joins) and btree indexes work.
CREATE FUNCTION hll_cmp(hll, hll) RETURNS int4
    AS 'MODULE_PATHNAME', 'dc_bytes_cmp' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION hll_lt(hll, hll) RETURNS bool
    AS 'MODULE_PATHNAME', 'dc_bytes_lt' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION hll_le(hll, hll) RETURNS bool
    AS 'MODULE_PATHNAME', 'dc_bytes_le' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION hll_gt(hll, hll) RETURNS bool
    AS 'MODULE_PATHNAME', 'dc_bytes_gt' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION hll_ge(hll, hll) RETURNS bool
    AS 'MODULE_PATHNAME', 'dc_bytes_ge' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE OPERATOR < (LEFTARG = hll, RIGHTARG = hll, PROCEDURE = hll_lt, COMMUTATOR = >, NEGATOR = >=,
    RESTRICT = scalarltsel, JOIN = scalarltjoinsel);
CREATE OPERATOR <= (LEFTARG = hll, RIGHTARG = hll, PROCEDURE = hll_le, COMMUTATOR = >=, NEGATOR = >,
    RESTRICT = scalarlesel, JOIN = scalarlejoinsel);
CREATE OPERATOR > (LEFTARG = hll, RIGHTARG = hll, PROCEDURE = hll_gt, COMMUTATOR = <, NEGATOR = <=,
    RESTRICT = scalargtsel, JOIN = scalargtjoinsel);
CREATE OPERATOR >= (LEFTARG = hll, RIGHTARG = hll, PROCEDURE = hll_ge, COMMUTATOR = <=, NEGATOR = <,
    RESTRICT = scalargesel, JOIN = scalargejoinsel);
CREATE OPERATOR CLASS hll_btree_ops DEFAULT FOR TYPE hll USING btree AS
    OPERATOR 1 <, OPERATOR 2 <=, OPERATOR 3 =, OPERATOR 4 >=, OPERATOR 5 >,
    FUNCTION 1 hll_cmp(hll, hll);

CREATE OPERATOR CLASS hll_hash_ops DEFAULT FOR TYPE hll USING hash AS
    OPERATOR 1 =,
    FUNCTION 1 hll_hash(hll);

-- Aggregates: the state is hll itself (not internal) in format 1, updated in place; the
-- final function hll_compact stores the result compressed (format 2). The combine
-- function makes them parallel-safe and lets Citus aggregate partially on workers.
CREATE FUNCTION hll_add_trans(hll, hll_hashval) RETURNS hll
    AS 'MODULE_PATHNAME', 'hll_add_trans' LANGUAGE C STABLE PARALLEL SAFE;
CREATE FUNCTION hll_add_trans(hll, hll_hashval, int4) RETURNS hll
    AS 'MODULE_PATHNAME', 'hll_add_trans_p' LANGUAGE C STABLE PARALLEL SAFE;
CREATE FUNCTION hll_union_trans(hll, hll) RETURNS hll
    AS 'MODULE_PATHNAME', 'hll_union_trans' LANGUAGE C IMMUTABLE PARALLEL SAFE;
CREATE FUNCTION approx_count_distinct_trans(hll, anyelement) RETURNS hll
    AS 'MODULE_PATHNAME', 'approx_count_distinct_trans' LANGUAGE C STABLE PARALLEL SAFE;
CREATE FUNCTION hll_agg_count(hll) RETURNS int8
    AS 'MODULE_PATHNAME', 'hll_agg_count' LANGUAGE C IMMUTABLE PARALLEL SAFE;

CREATE AGGREGATE hll_add_agg(hll_hashval) (
    SFUNC = hll_add_trans, STYPE = hll,
    FINALFUNC = hll_compact,
    COMBINEFUNC = hll_union_trans, PARALLEL = SAFE
);
CREATE AGGREGATE hll_add_agg(hll_hashval, int4) (
    SFUNC = hll_add_trans, STYPE = hll,
    FINALFUNC = hll_compact,
    COMBINEFUNC = hll_union_trans, PARALLEL = SAFE
);
CREATE AGGREGATE hll_union_agg(hll) (
    SFUNC = hll_union_trans, STYPE = hll,
    FINALFUNC = hll_compact,
    COMBINEFUNC = hll_union_trans, PARALLEL = SAFE
);
CREATE AGGREGATE approx_count_distinct(anyelement) (
    SFUNC = approx_count_distinct_trans, STYPE = hll,
    FINALFUNC = hll_agg_count,
    COMBINEFUNC = hll_union_trans, PARALLEL = SAFE
);
