-- topk: mergeable Space-Saving heavy hitters. Byte layout: docs/FORMAT.md.
-- Glue: src/topk.rs (the aggregate state is an expanded object while aggregating).

CREATE TYPE topk;

CREATE FUNCTION topk_in(cstring) RETURNS topk
    AS 'MODULE_PATHNAME', 'topk_in' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION topk_out(topk) RETURNS cstring
    AS 'MODULE_PATHNAME', 'topk_out' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION topk_recv(internal) RETURNS topk
    AS 'MODULE_PATHNAME', 'topk_recv' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION topk_send(topk) RETURNS bytea
    AS 'MODULE_PATHNAME', 'dc_bytes_send' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;

CREATE TYPE topk (
    INPUT = topk_in,
    OUTPUT = topk_out,
    RECEIVE = topk_recv,
    SEND = topk_send,
    INTERNALLENGTH = VARIABLE,
    ALIGNMENT = int4,
    STORAGE = extended
);
COMMENT ON TYPE topk IS 'mergeable heavy-hitters summary (Space-Saving, 4k counters)';

CREATE FUNCTION topk_from_bytea(bytea) RETURNS topk
    AS 'MODULE_PATHNAME', 'topk_from_bytea' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE CAST (bytea AS topk) WITH FUNCTION topk_from_bytea(bytea);
CREATE CAST (topk AS bytea) WITHOUT FUNCTION;

CREATE FUNCTION topk_empty(k int4 DEFAULT 10) RETURNS topk
    AS 'MODULE_PATHNAME', 'topk_empty' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
-- Items are the value's text output: output functions may depend on settings (e.g.
-- DateStyle for dates), hence STABLE.
CREATE FUNCTION topk_add(topk, anyelement, count int8 DEFAULT 1) RETURNS topk
    AS 'MODULE_PATHNAME', 'topk_add' LANGUAGE C STABLE PARALLEL SAFE;
COMMENT ON FUNCTION topk_add(topk, anyelement, int8) IS
    'adds count (>= 0) occurrences of a value (by its text form); a NULL summary starts as topk_empty(), a NULL value adds nothing';
CREATE FUNCTION topk_union(topk, topk) RETURNS topk
    AS 'MODULE_PATHNAME', 'topk_union' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION topk_total(topk) RETURNS int8
    AS 'MODULE_PATHNAME', 'topk_total' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION topk_k(topk) RETURNS int4
    AS 'MODULE_PATHNAME', 'topk_k' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION topk_print(topk) RETURNS text
    AS 'MODULE_PATHNAME', 'topk_print' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION topk_list(topk) RETURNS TABLE (value text, count int8, error int8)
    AS 'MODULE_PATHNAME', 'topk_list' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE ROWS 10;
COMMENT ON FUNCTION topk_list(topk) IS
    'the top k values by count descending: every value with true count > total/k is listed, and count - error <= true count <= count';

CREATE OPERATOR || (LEFTARG = topk, RIGHTARG = topk, PROCEDURE = topk_union, COMMUTATOR = ||);

CREATE FUNCTION topk_eq(topk, topk) RETURNS bool
    AS 'MODULE_PATHNAME', 'dc_bytes_eq' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE LEAKPROOF;
CREATE FUNCTION topk_ne(topk, topk) RETURNS bool
    AS 'MODULE_PATHNAME', 'dc_bytes_ne' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE LEAKPROOF;
CREATE FUNCTION topk_hash(topk) RETURNS int4
    AS 'MODULE_PATHNAME', 'dc_bytes_hash' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE OPERATOR = (
    LEFTARG = topk, RIGHTARG = topk, PROCEDURE = topk_eq,
    COMMUTATOR = =, NEGATOR = <>, RESTRICT = eqsel, JOIN = eqjoinsel, HASHES, MERGES
);
CREATE OPERATOR <> (
    LEFTARG = topk, RIGHTARG = topk, PROCEDURE = topk_ne,
    COMMUTATOR = <>, NEGATOR = =, RESTRICT = neqsel, JOIN = neqjoinsel
);
-- Byte order of the canonical form, for sorting plans and btree indexes only.
CREATE FUNCTION topk_cmp(topk, topk) RETURNS int4
    AS 'MODULE_PATHNAME', 'dc_bytes_cmp' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION topk_lt(topk, topk) RETURNS bool
    AS 'MODULE_PATHNAME', 'dc_bytes_lt' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION topk_le(topk, topk) RETURNS bool
    AS 'MODULE_PATHNAME', 'dc_bytes_le' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION topk_gt(topk, topk) RETURNS bool
    AS 'MODULE_PATHNAME', 'dc_bytes_gt' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION topk_ge(topk, topk) RETURNS bool
    AS 'MODULE_PATHNAME', 'dc_bytes_ge' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE OPERATOR < (LEFTARG = topk, RIGHTARG = topk, PROCEDURE = topk_lt, COMMUTATOR = >, NEGATOR = >=,
    RESTRICT = scalarltsel, JOIN = scalarltjoinsel);
CREATE OPERATOR <= (LEFTARG = topk, RIGHTARG = topk, PROCEDURE = topk_le, COMMUTATOR = >=, NEGATOR = >,
    RESTRICT = scalarlesel, JOIN = scalarlejoinsel);
CREATE OPERATOR > (LEFTARG = topk, RIGHTARG = topk, PROCEDURE = topk_gt, COMMUTATOR = <, NEGATOR = <=,
    RESTRICT = scalargtsel, JOIN = scalargtjoinsel);
CREATE OPERATOR >= (LEFTARG = topk, RIGHTARG = topk, PROCEDURE = topk_ge, COMMUTATOR = <=, NEGATOR = <,
    RESTRICT = scalargesel, JOIN = scalargejoinsel);
CREATE OPERATOR CLASS topk_btree_ops DEFAULT FOR TYPE topk USING btree AS
    OPERATOR 1 <, OPERATOR 2 <=, OPERATOR 3 =, OPERATOR 4 >=, OPERATOR 5 >,
    FUNCTION 1 topk_cmp(topk, topk);
CREATE OPERATOR CLASS topk_hash_ops DEFAULT FOR TYPE topk USING hash AS
    OPERATOR 1 =,
    FUNCTION 1 topk_hash(topk);

-- Aggregates: the state type is topk itself (not internal); while aggregating it is an
-- expanded object updated in place. COMBINEFUNC + PARALLEL SAFE for parallel query and
-- Citus. (An aggregate cannot have DEFAULT arguments: k = 10 is the 1-argument form.)
CREATE FUNCTION topk_add_trans(topk, anyelement) RETURNS topk
    AS 'MODULE_PATHNAME', 'topk_add_trans' LANGUAGE C STABLE PARALLEL SAFE;
CREATE FUNCTION topk_add_trans(topk, anyelement, int4) RETURNS topk
    AS 'MODULE_PATHNAME', 'topk_add_trans' LANGUAGE C STABLE PARALLEL SAFE;
CREATE FUNCTION topk_union_trans(topk, topk) RETURNS topk
    AS 'MODULE_PATHNAME', 'topk_union_trans' LANGUAGE C IMMUTABLE PARALLEL SAFE;

CREATE AGGREGATE topk_add_agg(anyelement) (
    SFUNC = topk_add_trans, STYPE = topk,
    COMBINEFUNC = topk_union_trans, PARALLEL = SAFE
);
CREATE AGGREGATE topk_add_agg(anyelement, k int4) (
    SFUNC = topk_add_trans, STYPE = topk,
    COMBINEFUNC = topk_union_trans, PARALLEL = SAFE
);
CREATE AGGREGATE topk_union_agg(topk) (
    SFUNC = topk_union_trans, STYPE = topk,
    COMBINEFUNC = topk_union_trans, PARALLEL = SAFE
);
