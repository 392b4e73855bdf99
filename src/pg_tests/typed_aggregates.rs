// #[pg_test]s for the typed aggregate overloads (sql/typed_aggregates.sql); included into
// the tests module of src/lib.rs. Their Citus behaviour is tested on a real cluster by
// scripts/citus_test.sh.

/// A value of each type the extension creates typed overloads for.
const TYPED_SAMPLES: &[(&str, &str)] = &[
    ("bool", "true"),
    ("int2", "-7"),
    ("int4", "123456"),
    ("int8", "-9000000000"),
    ("oid", "4000000000"),
    ("numeric", "1.50"),
    ("float4", "-0.5"),
    ("float8", "3.25e100"),
    ("\"char\"", "'x'"),
    ("name", "'a name'"),
    ("text", "'some text'"),
    ("varchar", "'var'"),
    ("bpchar", "'pad'::char(6)"),
    ("bytea", "'\\x00ff10'"),
    ("uuid", "'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'"),
    ("date", "'2026-12-01'"),
    ("time", "'12:34:56'"),
    ("timetz", "'12:34:56+02'"),
    ("timestamp", "'2026-12-01 12:00'"),
    ("timestamptz", "'2026-12-01 12:00+00'"),
    ("interval", "'1 day 2 hours'"),
    ("inet", "'10.1.2.3/24'"),
    ("cidr", "'10.1.0.0/16'"),
    ("macaddr", "'08:00:2b:01:02:03'"),
    ("macaddr8", "'08:00:2b:01:02:03:04:05'"),
    ("jsonb", "'{\"k\": [1, 2]}'"),
];

/// Citus calls a transition function through an FmgrInfo of its own, without an
/// expression tree. Called that way, every typed `cms_add_trans` and `topk_add_trans`
/// must hash and key a value exactly as the anyelement functions do when SQL calls them.
#[pg_test]
fn typed_transitions_without_an_expression_tree_match_anyelement() {
    for (ty, literal) in TYPED_SAMPLES {
        let sql = format!(
            "SELECT cms_empty(0.1, 0.1), ({literal})::{ty}, topk_empty(3),
                    'cms_add_trans(cms, {ty})'::regprocedure::oid,
                    'topk_add_trans(topk, {ty})'::regprocedure::oid,
                    cms_add(cms_empty(0.1, 0.1), ({literal})::{ty})::bytea,
                    topk_add(topk_empty(3), ({literal})::{ty})::bytea"
        );
        Spi::connect(|client| {
            let row = client.select(&sql, None, &[]).unwrap().first();
            let cms = row.get::<pgrx::datum::AnyElement>(1).unwrap().unwrap();
            let value = row.get::<pgrx::datum::AnyElement>(2).unwrap().unwrap();
            let topk = row.get::<pgrx::datum::AnyElement>(3).unwrap().unwrap();
            let cms_fn = row.get::<pg_sys::Oid>(4).unwrap().unwrap();
            let topk_fn = row.get::<pg_sys::Oid>(5).unwrap().unwrap();
            let cms_want = row.get::<Vec<u8>>(6).unwrap().unwrap();
            let topk_want = row.get::<Vec<u8>>(7).unwrap().unwrap();
            // OidFunctionCall2Coll: a bare FmgrInfo, fn_expr NULL, as Citus does
            let (cms_got, topk_got) = unsafe {
                let c = pg_sys::OidFunctionCall2Coll(
                    cms_fn,
                    pg_sys::InvalidOid,
                    cms.datum(),
                    value.datum(),
                );
                let t = pg_sys::OidFunctionCall2Coll(
                    topk_fn,
                    pg_sys::InvalidOid,
                    topk.datum(),
                    value.datum(),
                );
                (
                    crate::fmgr::varlena_bytes(c).to_vec(),
                    crate::fmgr::varlena_bytes(t).to_vec(),
                )
            };
            assert_eq!(cms_got, cms_want, "cms_add_trans(cms, {ty}) without fn_expr");
            assert_eq!(topk_got, topk_want, "topk_add_trans(topk, {ty}) without fn_expr");
        });
    }
}

/// The anyelement functions still need their expression tree: called bare, they raise
/// 22023 instead of guessing a type.
#[pg_test]
fn anyelement_transition_without_an_expression_tree_is_an_error() {
    let got = Spi::connect(|client| {
        let row = client
            .select(
                "SELECT cms_empty(0.1, 0.1), 5::int4, 'cms_add_trans(cms, anyelement)'::regprocedure::oid",
                None,
                &[],
            )
            .unwrap()
            .first();
        let cms = row.get::<pgrx::datum::AnyElement>(1).unwrap().unwrap();
        let value = row.get::<pgrx::datum::AnyElement>(2).unwrap().unwrap();
        let f = row.get::<pg_sys::Oid>(3).unwrap().unwrap();
        PgTryBuilder::new(|| unsafe {
            pg_sys::OidFunctionCall2Coll(f, pg_sys::InvalidOid, cms.datum(), value.datum());
            None
        })
        .catch_others(|e| match e {
            pg_sys::panic::CaughtError::PostgresError(r) => Some(r.sql_error_code()),
            _ => None,
        })
        .execute()
    });
    assert_eq!(got, Some(PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE));
}

/// Every built-in type with an implicit cast into a typed overload's type has overloads
/// of its own, so adding them never made a value resolve to another type's overload.
/// The exceptions: the planner's internal pg_node_tree and extended-statistics types,
/// which no user value has.
#[pg_test]
fn typed_overloads_are_closed_under_implicit_casts() {
    let uncovered: String = one(
        "WITH typed AS (
           SELECT p.proargtypes[1] AS t FROM pg_proc p
           WHERE p.proname = 'approx_count_distinct_trans' AND p.proargtypes[1] <> 'anyelement'::regtype)
         SELECT coalesce(string_agg(DISTINCT c.castsource::regtype::text, ',' ORDER BY c.castsource::regtype::text), '')
         FROM pg_cast c
         WHERE c.castcontext = 'i' AND c.casttarget IN (SELECT t FROM typed)
           AND c.castsource NOT IN (SELECT t FROM typed)
           AND c.castsource::regtype::text NOT IN ('pg_node_tree', 'pg_ndistinct', 'pg_dependencies', 'pg_mcv_list')",
    );
    assert_eq!(uncovered, "", "implicit casts into typed overload types from types without overloads");
    assert_eq!(
        one::<i64>(
            "SELECT count(*) FROM pg_proc WHERE proname = 'approx_count_distinct_trans' AND proargtypes[1] <> 'anyelement'::regtype"
        ),
        TYPED_SAMPLES.len() as i64 + 11 // and the 11 reg* types
    );
}

/// Resolution with overloads present: each typed value (and a reg* value, and a domain
/// over a typed type) resolves to the overloads of its own type, and they hash and print
/// it exactly as the anyelement scalar functions (cms_add, topk_add) do.
#[pg_test]
fn typed_overloads_resolve_and_agree() {
    Spi::run("CREATE DOMAIN dc_posint AS int4 CHECK (VALUE > 0)").unwrap();
    let mut samples: Vec<(&str, &str)> = TYPED_SAMPLES.to_vec();
    samples.push(("regclass", "'pg_class'"));
    samples.push(("regtype", "'int4'"));
    samples.push(("dc_posint", "7"));
    for (ty, literal) in samples {
        // the overload each aggregate call resolves to, read from a view's dependencies
        Spi::run(&format!(
            "CREATE TEMP VIEW dc_resolved AS SELECT approx_count_distinct(v) a, cms_add_agg(v) c1,
                    cms_add_agg(v, 0.1, 0.1) c2, cms_add_agg(v, 2, 0.1, 0.1) c3, topk_add_agg(v) t1,
                    topk_add_agg(v, 3) t2
             FROM (SELECT ({literal})::{ty} AS v) s"
        ))
        .unwrap();
        let base = if ty == "dc_posint" { "integer" } else { "" };
        let resolved: String = one(&format!(
            "SELECT string_agg(DISTINCT format_type(p.proargtypes[0], NULL), ',')
             FROM pg_depend d JOIN pg_rewrite r ON r.oid = d.objid JOIN pg_proc p ON p.oid = d.refobjid
             WHERE r.ev_class = 'dc_resolved'::regclass AND p.prokind = 'a'"
        ));
        let want: String = if base.is_empty() {
            one(&format!("SELECT format_type('{ty}'::regtype, NULL)"))
        } else {
            base.to_string()
        };
        assert_eq!(resolved, want, "{ty}: the aggregates resolved to");
        Spi::run("DROP VIEW dc_resolved").unwrap();
        let same: bool = one(&format!(
            "WITH s AS (SELECT ({literal})::{ty} AS v)
             SELECT (SELECT cms_add_agg(v) FROM s)::bytea = (SELECT cms_add(NULL::cms, v) FROM s)::bytea
                AND (SELECT topk_add_agg(v) FROM s)::bytea = (SELECT topk_add(NULL::topk, v) FROM s)::bytea
                AND (SELECT approx_count_distinct(v) FROM s) = 1"
        ));
        assert!(same, "{ty}: the typed aggregates and the anyelement functions disagree");
    }
    // a literal of unknown type is text
    assert_eq!(one::<i64>("SELECT approx_count_distinct('abc')"), 1);
    assert_eq!(one::<i64>("SELECT cms_count(cms_add_agg('abc'), 'abc'::text)"), 1);
    // 5::int2, 5::int4 and 5::int8 still count as one value
    assert_eq!(
        one::<i64>(
            "SELECT approx_count_distinct(v) FROM (SELECT 5::int2 v UNION ALL SELECT 5::int4 UNION ALL SELECT 5::int8) s"
        ),
        1
    );
}

#[pg_test]
fn typed_aggregates_for_a_user_type() {
    Spi::run("CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy')").unwrap();
    Spi::run("SELECT typed_aggregates('mood')").unwrap();
    Spi::run("SELECT typed_aggregates('mood')").unwrap(); // idempotent
    assert_eq!(
        one::<i64>("SELECT count(*) FROM pg_proc WHERE proname IN ('approx_count_distinct', 'cms_add_agg', 'topk_add_agg') AND 'mood'::regtype = ANY (proargtypes::oid[])"),
        6
    );
    assert_eq!(
        one::<i64>("SELECT approx_count_distinct(m) FROM unnest(enum_range(NULL::mood)) m"),
        3
    );
    assert_eq!(sqlstate("SELECT typed_aggregates(NULL)"), "22004");
    assert_eq!(sqlstate("SELECT typed_aggregates('anyelement')"), "22023");
    Spi::run("CREATE DOMAIN posint AS int4 CHECK (VALUE > 0)").unwrap();
    assert_eq!(sqlstate("SELECT typed_aggregates('posint')"), "22023");
    // a type that another type without overloads casts to implicitly
    Spi::run("CREATE TYPE feeling AS ENUM ('meh')").unwrap();
    Spi::run("CREATE TYPE verdict AS ENUM ('meh')").unwrap();
    Spi::run(
        "CREATE FUNCTION feeling_verdict(feeling) RETURNS verdict LANGUAGE sql AS $$ SELECT 'meh'::verdict $$",
    )
    .unwrap();
    Spi::run("CREATE CAST (feeling AS verdict) WITH FUNCTION feeling_verdict(feeling) AS IMPLICIT").unwrap();
    let e = sql_error("SELECT typed_aggregates('verdict')");
    assert_eq!(e.state, "22023");
    assert!(e.hint.contains("feeling"), "{}", e.hint);
    Spi::run("SELECT typed_aggregates('feeling')").unwrap();
    Spi::run("SELECT typed_aggregates('verdict')").unwrap();
    // arrays coerce element by element: int4[] needs int2[] first
    let e = sql_error("SELECT typed_aggregates('int4[]')");
    assert_eq!(e.state, "22023");
    assert!(e.hint.contains("smallint[]"), "{}", e.hint);
    Spi::run("SELECT typed_aggregates('int2[]')").unwrap();
    // a partial set of the twelve objects is refused, not silently completed
    Spi::run("DROP AGGREGATE topk_add_agg(mood, int4)").unwrap();
    assert_eq!(sqlstate("SELECT typed_aggregates('mood')"), "42723");
    // superuser only
    Spi::run("CREATE ROLE dc_typed_nobody").unwrap();
    Spi::run("SET LOCAL ROLE dc_typed_nobody").unwrap();
    assert_eq!(sqlstate("SELECT typed_aggregates('mood')"), "42501");
    assert_eq!(sqlstate("SELECT _typed_aggregates_create('mood')"), "42501");
    Spi::run("RESET ROLE").unwrap();
    // granted EXECUTE, a non-superuser still cannot create C functions through it
    Spi::run("GRANT EXECUTE ON FUNCTION typed_aggregates(regtype) TO dc_typed_nobody").unwrap();
    Spi::run("SET LOCAL ROLE dc_typed_nobody").unwrap();
    assert_eq!(sqlstate("SELECT typed_aggregates('mood')"), "42501");
    Spi::run("RESET ROLE").unwrap();
}
