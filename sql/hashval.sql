-- hll_hashval: a 64-bit hash, passed by value. Its representation is exactly int8's,
-- so I/O and comparisons reuse PostgreSQL's int8 functions (LANGUAGE internal).

CREATE TYPE hll_hashval;

CREATE FUNCTION hll_hashval_in(cstring) RETURNS hll_hashval
    AS 'int8in' LANGUAGE internal IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION hll_hashval_out(hll_hashval) RETURNS cstring
    AS 'int8out' LANGUAGE internal IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION hll_hashval_recv(internal) RETURNS hll_hashval
    AS 'int8recv' LANGUAGE internal IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION hll_hashval_send(hll_hashval) RETURNS bytea
    AS 'int8send' LANGUAGE internal IMMUTABLE STRICT PARALLEL SAFE;

CREATE TYPE hll_hashval (
    INPUT = hll_hashval_in,
    OUTPUT = hll_hashval_out,
    RECEIVE = hll_hashval_recv,
    SEND = hll_hashval_send,
    INTERNALLENGTH = 8,
    PASSEDBYVALUE,
    ALIGNMENT = double,
    STORAGE = plain
);
COMMENT ON TYPE hll_hashval IS '64-bit XXH3 hash of a value, input to hll_add / hll_add_agg';

CREATE FUNCTION hll_hashval_eq(hll_hashval, hll_hashval) RETURNS bool
    AS 'int8eq' LANGUAGE internal IMMUTABLE STRICT PARALLEL SAFE LEAKPROOF;
CREATE FUNCTION hll_hashval_ne(hll_hashval, hll_hashval) RETURNS bool
    AS 'int8ne' LANGUAGE internal IMMUTABLE STRICT PARALLEL SAFE LEAKPROOF;
CREATE FUNCTION hll_hashval_hash(hll_hashval) RETURNS int4
    AS 'hashint8' LANGUAGE internal IMMUTABLE STRICT PARALLEL SAFE;

CREATE OPERATOR = (
    LEFTARG = hll_hashval, RIGHTARG = hll_hashval, PROCEDURE = hll_hashval_eq,
    COMMUTATOR = =, NEGATOR = <>, RESTRICT = eqsel, JOIN = eqjoinsel, HASHES, MERGES
);
CREATE OPERATOR <> (
    LEFTARG = hll_hashval, RIGHTARG = hll_hashval, PROCEDURE = hll_hashval_ne,
    COMMUTATOR = <>, NEGATOR = =, RESTRICT = neqsel, JOIN = neqjoinsel
);
CREATE OPERATOR CLASS hll_hashval_hash_ops DEFAULT FOR TYPE hll_hashval USING hash AS
    OPERATOR 1 =,
    FUNCTION 1 hll_hashval_hash(hll_hashval);

-- Same representation as int8: the casts are binary coercions. Explicit only, so a
-- plain integer is never silently taken for a hash.
CREATE CAST (int8 AS hll_hashval) WITHOUT FUNCTION;
CREATE CAST (hll_hashval AS int8) WITHOUT FUNCTION;

-- Hash functions (docs/SQL.md, "Hashing"): XXH3-64 over the canonical encoding.
CREATE FUNCTION hll_hash_smallint(v int2, seed int4 DEFAULT 0) RETURNS hll_hashval
    AS 'MODULE_PATHNAME', 'hll_hash_smallint' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION hll_hash_integer(v int4, seed int4 DEFAULT 0) RETURNS hll_hashval
    AS 'MODULE_PATHNAME', 'hll_hash_integer' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION hll_hash_bigint(v int8, seed int4 DEFAULT 0) RETURNS hll_hashval
    AS 'MODULE_PATHNAME', 'hll_hash_bigint' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION hll_hash_text(v text, seed int4 DEFAULT 0) RETURNS hll_hashval
    AS 'MODULE_PATHNAME', 'hll_hash_varlena' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION hll_hash_bytea(v bytea, seed int4 DEFAULT 0) RETURNS hll_hashval
    AS 'MODULE_PATHNAME', 'hll_hash_varlena' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION hll_hash_uuid(v uuid, seed int4 DEFAULT 0) RETURNS hll_hashval
    AS 'MODULE_PATHNAME', 'hll_hash_uuid' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION hll_hash_any(v anyelement, seed int4 DEFAULT 0) RETURNS hll_hashval
    AS 'MODULE_PATHNAME', 'hll_hash_any' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
