-- cms: count-min frequency sketches. Byte layout: docs/FORMAT.md. Glue: src/cms.rs.

CREATE TYPE cms;

CREATE FUNCTION cms_in(cstring) RETURNS cms
    AS 'MODULE_PATHNAME', 'cms_in' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION cms_out(cms) RETURNS cstring
    AS 'MODULE_PATHNAME', 'cms_out' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION cms_recv(internal) RETURNS cms
    AS 'MODULE_PATHNAME', 'cms_recv' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION cms_send(cms) RETURNS bytea
    AS 'MODULE_PATHNAME', 'dc_bytes_send' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;

-- STORAGE = extended (the default): a default sketch is ~106 KB of mostly small
-- counters, which compresses well and belongs in TOAST.
CREATE TYPE cms (
    INPUT = cms_in,
    OUTPUT = cms_out,
    RECEIVE = cms_recv,
    SEND = cms_send,
    INTERNALLENGTH = VARIABLE,
    ALIGNMENT = int4,
    STORAGE = extended
);
COMMENT ON TYPE cms IS 'count-min frequency sketch (width ceil(e/eps), depth ceil(ln(1/delta)))';

CREATE FUNCTION cms_from_bytea(bytea) RETURNS cms
    AS 'MODULE_PATHNAME', 'cms_from_bytea' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE CAST (bytea AS cms) WITH FUNCTION cms_from_bytea(bytea);
CREATE CAST (cms AS bytea) WITHOUT FUNCTION;

CREATE FUNCTION cms_empty(eps float8 DEFAULT 0.001, delta float8 DEFAULT 0.01) RETURNS cms
    AS 'MODULE_PATHNAME', 'cms_empty' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION cms_empty(float8, float8) IS
    'empty count-min sketch: estimates exceed the true count by more than eps*total with probability at most delta';
CREATE FUNCTION cms_add(cms, anyelement, count int8 DEFAULT 1) RETURNS cms
    AS 'MODULE_PATHNAME', 'cms_add' LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION cms_add(cms, anyelement, int8) IS
    'adds count (>= 0) occurrences of a value; a NULL sketch starts as cms_empty(), a NULL value adds nothing';
CREATE FUNCTION cms_count(cms, anyelement) RETURNS int8
    AS 'MODULE_PATHNAME', 'cms_count' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION cms_count(cms, anyelement) IS
    'estimated count of a value: never below the true count, above it by more than eps*total with probability at most delta';
CREATE FUNCTION cms_total(cms) RETURNS int8
    AS 'MODULE_PATHNAME', 'cms_total' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION cms_eps(cms) RETURNS float8
    AS 'MODULE_PATHNAME', 'cms_eps' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION cms_delta(cms) RETURNS float8
    AS 'MODULE_PATHNAME', 'cms_delta' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION cms_union(cms, cms) RETURNS cms
    AS 'MODULE_PATHNAME', 'cms_union' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION cms_print(cms) RETURNS text
    AS 'MODULE_PATHNAME', 'cms_print' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;

CREATE OPERATOR || (LEFTARG = cms, RIGHTARG = cms, PROCEDURE = cms_union, COMMUTATOR = ||);

CREATE FUNCTION cms_eq(cms, cms) RETURNS bool
    AS 'MODULE_PATHNAME', 'dc_bytes_eq' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE LEAKPROOF;
CREATE FUNCTION cms_ne(cms, cms) RETURNS bool
    AS 'MODULE_PATHNAME', 'dc_bytes_ne' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE LEAKPROOF;
CREATE FUNCTION cms_hash(cms) RETURNS int4
    AS 'MODULE_PATHNAME', 'dc_bytes_hash' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE OPERATOR = (
    LEFTARG = cms, RIGHTARG = cms, PROCEDURE = cms_eq,
    COMMUTATOR = =, NEGATOR = <>, RESTRICT = eqsel, JOIN = eqjoinsel, HASHES, MERGES
);
CREATE OPERATOR <> (
    LEFTARG = cms, RIGHTARG = cms, PROCEDURE = cms_ne,
    COMMUTATOR = <>, NEGATOR = =, RESTRICT = neqsel, JOIN = neqjoinsel
);
-- Byte order of the canonical form: meaningless as a frequency order, but it lets
-- sorting plans (count(DISTINCT s), UNION, merge joins) and btree indexes work.
CREATE FUNCTION cms_cmp(cms, cms) RETURNS int4
    AS 'MODULE_PATHNAME', 'dc_bytes_cmp' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION cms_lt(cms, cms) RETURNS bool
    AS 'MODULE_PATHNAME', 'dc_bytes_lt' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION cms_le(cms, cms) RETURNS bool
    AS 'MODULE_PATHNAME', 'dc_bytes_le' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION cms_gt(cms, cms) RETURNS bool
    AS 'MODULE_PATHNAME', 'dc_bytes_gt' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION cms_ge(cms, cms) RETURNS bool
    AS 'MODULE_PATHNAME', 'dc_bytes_ge' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE OPERATOR < (LEFTARG = cms, RIGHTARG = cms, PROCEDURE = cms_lt, COMMUTATOR = >, NEGATOR = >=,
    RESTRICT = scalarltsel, JOIN = scalarltjoinsel);
CREATE OPERATOR <= (LEFTARG = cms, RIGHTARG = cms, PROCEDURE = cms_le, COMMUTATOR = >=, NEGATOR = >,
    RESTRICT = scalarlesel, JOIN = scalarlejoinsel);
CREATE OPERATOR > (LEFTARG = cms, RIGHTARG = cms, PROCEDURE = cms_gt, COMMUTATOR = <, NEGATOR = <=,
    RESTRICT = scalargtsel, JOIN = scalargtjoinsel);
CREATE OPERATOR >= (LEFTARG = cms, RIGHTARG = cms, PROCEDURE = cms_ge, COMMUTATOR = <=, NEGATOR = <,
    RESTRICT = scalargesel, JOIN = scalargejoinsel);
CREATE OPERATOR CLASS cms_btree_ops DEFAULT FOR TYPE cms USING btree AS
    OPERATOR 1 <, OPERATOR 2 <=, OPERATOR 3 =, OPERATOR 4 >=, OPERATOR 5 >,
    FUNCTION 1 cms_cmp(cms, cms);
CREATE OPERATOR CLASS cms_hash_ops DEFAULT FOR TYPE cms USING hash AS
    OPERATOR 1 =,
    FUNCTION 1 cms_hash(cms);

-- Aggregates: the state is cms itself (not internal), updated in place; the combine
-- function makes them parallel-safe and lets Citus aggregate partially on workers.
-- Transitions are STABLE: hashing a non-builtin type calls its send function.
CREATE FUNCTION cms_add_trans(cms, anyelement) RETURNS cms
    AS 'MODULE_PATHNAME', 'cms_add_trans' LANGUAGE C STABLE PARALLEL SAFE;
CREATE FUNCTION cms_add_trans(cms, anyelement, float8, float8) RETURNS cms
    AS 'MODULE_PATHNAME', 'cms_add_trans' LANGUAGE C STABLE PARALLEL SAFE;
CREATE FUNCTION cms_add_trans(cms, anyelement, int8, float8, float8) RETURNS cms
    AS 'MODULE_PATHNAME', 'cms_add_trans' LANGUAGE C STABLE PARALLEL SAFE;
CREATE FUNCTION cms_union_trans(cms, cms) RETURNS cms
    AS 'MODULE_PATHNAME', 'cms_union_trans' LANGUAGE C IMMUTABLE PARALLEL SAFE;
-- The unweighted cms_add_agg may keep its state in a staged form (docs/FORMAT.md) in a
-- plain, non-partial aggregation; this final function turns it back into a cms and
-- returns any other state unchanged.
CREATE FUNCTION cms_add_final(cms) RETURNS cms
    AS 'MODULE_PATHNAME', 'cms_add_final' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;

CREATE AGGREGATE cms_add_agg(anyelement) (
    SFUNC = cms_add_trans, STYPE = cms, FINALFUNC = cms_add_final,
    COMBINEFUNC = cms_union_trans, PARALLEL = SAFE
);
CREATE AGGREGATE cms_add_agg(anyelement, eps float8, delta float8) (
    SFUNC = cms_add_trans, STYPE = cms, FINALFUNC = cms_add_final,
    COMBINEFUNC = cms_union_trans, PARALLEL = SAFE
);
CREATE AGGREGATE cms_add_agg(anyelement, count int8, eps float8, delta float8) (
    SFUNC = cms_add_trans, STYPE = cms,
    COMBINEFUNC = cms_union_trans, PARALLEL = SAFE
);
CREATE AGGREGATE cms_union_agg(cms) (
    SFUNC = cms_union_trans, STYPE = cms,
    COMBINEFUNC = cms_union_trans, PARALLEL = SAFE
);
