-- distributed_counter 0.2.0 -> 0.3.0 (CHANGELOG.md, 0.3.0): typed overloads of the
-- anyelement aggregates for Citus; the same text as sql/typed_aggregates.sql.
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
    s text := '@extschema@';
    ty text := format_type(t, NULL);
BEGIN
    IF to_regprocedure(format('%I.approx_count_distinct_trans(%I.hll, %s)', s, s, ty)) IS NOT NULL THEN
        RETURN;  -- already there
    END IF;
    EXECUTE format($sql$
        CREATE FUNCTION %1$I.approx_count_distinct_trans(%1$I.hll, %2$s) RETURNS %1$I.hll
            AS 'MODULE_PATHNAME', 'approx_count_distinct_trans' LANGUAGE C STABLE PARALLEL SAFE;
        CREATE AGGREGATE %1$I.approx_count_distinct(%2$s) (
            SFUNC = %1$I.approx_count_distinct_trans, STYPE = %1$I.hll,
            FINALFUNC = %1$I.hll_agg_count, COMBINEFUNC = %1$I.hll_union_trans, PARALLEL = SAFE);

        CREATE FUNCTION %1$I.cms_add_trans(%1$I.cms, %2$s) RETURNS %1$I.cms
            AS 'MODULE_PATHNAME', 'cms_add_trans' LANGUAGE C STABLE PARALLEL SAFE;
        CREATE FUNCTION %1$I.cms_add_trans(%1$I.cms, %2$s, float8, float8) RETURNS %1$I.cms
            AS 'MODULE_PATHNAME', 'cms_add_trans' LANGUAGE C STABLE PARALLEL SAFE;
        CREATE FUNCTION %1$I.cms_add_trans(%1$I.cms, %2$s, int8, float8, float8) RETURNS %1$I.cms
            AS 'MODULE_PATHNAME', 'cms_add_trans' LANGUAGE C STABLE PARALLEL SAFE;
        CREATE AGGREGATE %1$I.cms_add_agg(%2$s) (
            SFUNC = %1$I.cms_add_trans, STYPE = %1$I.cms, FINALFUNC = %1$I.cms_add_final,
            COMBINEFUNC = %1$I.cms_union_trans, PARALLEL = SAFE);
        CREATE AGGREGATE %1$I.cms_add_agg(%2$s, eps float8, delta float8) (
            SFUNC = %1$I.cms_add_trans, STYPE = %1$I.cms, FINALFUNC = %1$I.cms_add_final,
            COMBINEFUNC = %1$I.cms_union_trans, PARALLEL = SAFE);
        CREATE AGGREGATE %1$I.cms_add_agg(%2$s, count int8, eps float8, delta float8) (
            SFUNC = %1$I.cms_add_trans, STYPE = %1$I.cms,
            COMBINEFUNC = %1$I.cms_union_trans, PARALLEL = SAFE);

        CREATE FUNCTION %1$I.topk_add_trans(%1$I.topk, %2$s) RETURNS %1$I.topk
            AS 'MODULE_PATHNAME', 'topk_add_trans' LANGUAGE C STABLE PARALLEL SAFE;
        CREATE FUNCTION %1$I.topk_add_trans(%1$I.topk, %2$s, int4) RETURNS %1$I.topk
            AS 'MODULE_PATHNAME', 'topk_add_trans' LANGUAGE C STABLE PARALLEL SAFE;
        CREATE AGGREGATE %1$I.topk_add_agg(%2$s) (
            SFUNC = %1$I.topk_add_trans, STYPE = %1$I.topk,
            COMBINEFUNC = %1$I.topk_union_trans, PARALLEL = SAFE);
        CREATE AGGREGATE %1$I.topk_add_agg(%2$s, k int4) (
            SFUNC = %1$I.topk_add_trans, STYPE = %1$I.topk,
            COMBINEFUNC = %1$I.topk_union_trans, PARALLEL = SAFE);
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
    -- hashed as a t instead of as itself: that type needs its own overloads first.
    FOR src IN
        SELECT c.castsource FROM pg_cast c
        WHERE c.casttarget = t AND c.castcontext = 'i' AND c.castsource <> t
          AND to_regprocedure(format('%I.approx_count_distinct_trans(%I.hll, %s)', s, s,
                                     format_type(c.castsource, NULL))) IS NULL
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
-- itself, so no value resolves to another type's overload and is hashed as that type
-- ("char" and name -> text, int2 -> int4, float4 -> float8, date -> timestamp, bpchar
-- -> text, macaddr8 -> macaddr, ...). Exceptions: the reg* types cast to oid without
-- changing their bytes; the planner's pg_node_tree and extended-statistics types are
-- no user's values.
SELECT _typed_aggregates_create(t::regtype)
FROM unnest(ARRAY[
    'bool', 'int2', 'int4', 'int8', 'oid', 'numeric', 'float4', 'float8',
    '"char"', 'name', 'text', 'varchar', 'bpchar', 'bytea', 'uuid',
    'date', 'time', 'timetz', 'timestamp', 'timestamptz', 'interval',
    'inet', 'cidr', 'macaddr', 'macaddr8', 'jsonb']) AS t;
