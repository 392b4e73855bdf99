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
