// #[pg_test]s for cms and topk; included into the tests module of src/lib.rs (no use
// lines here: the parent has them). Server-level checks (parallel plans, dump/restore,
// COPY, fuzzed input) are in pg_test/sql/sketches.sql.

// ---- cms ---------------------------------------------------------------------------------

#[pg_test]
fn cms_empty_and_parameters() {
    assert_eq!(one::<i64>("SELECT cms_total(cms_empty())"), 0);
    assert_eq!(one::<f64>("SELECT cms_eps(cms_empty())"), 0.001);
    assert_eq!(one::<f64>("SELECT cms_delta(cms_empty())"), 0.01);
    assert_eq!(
        one::<i32>("SELECT pg_column_size(cms_empty())"),
        4 + 34 + 2719 * 5 * 8 + 1
    );
    assert_eq!(
        one::<i32>("SELECT pg_column_size(cms_empty(0.1, 0.1))"),
        4 + 34 + 28 * 3 * 8 + 1
    );
    let p: String = one("SELECT cms_print(cms_empty(0.01, 0.05))");
    assert!(
        p.contains("width 272") && p.contains("depth 3") && p.contains("total 0"),
        "{p}"
    );
    assert_eq!(one::<i64>("SELECT cms_count(cms_empty(), 42)"), 0);
    assert_eq!(sql_error("SELECT cms_empty(0, 0.01)").state, "22023");
    assert_eq!(sql_error("SELECT cms_empty(0.01, 1)").state, "22023");
    assert_eq!(sql_error("SELECT cms_empty(1e-12, 0.01)").state, "22023");
    assert!(is_null("SELECT cms_empty(NULL, 0.01)"));
}

#[pg_test]
fn cms_add_count_and_nulls() {
    assert_eq!(
        one::<i64>("SELECT cms_count(cms_add(cms_empty(), 'a'::text), 'a'::text)"),
        1
    );
    assert_eq!(
        one::<i64>("SELECT cms_count(cms_add(cms_empty(), 'a'::text, 7), 'a'::text)"),
        7
    );
    assert_eq!(
        one::<i64>("SELECT cms_total(cms_add(cms_add(cms_empty(), 1, 3), 2, 4))"),
        7
    );
    // NULL sketch starts empty (default parameters); NULL value adds nothing; NULL
    // count is 22004 (the one NULL rule: nulls_follow_one_rule below)
    assert_eq!(one::<i64>("SELECT cms_count(cms_add(NULL::cms, 5), 5)"), 1);
    assert_eq!(one::<f64>("SELECT cms_eps(cms_add(NULL::cms, 5))"), 0.001);
    assert_eq!(
        one::<i64>("SELECT cms_total(cms_add(cms_empty(), NULL::int4))"),
        0
    );
    assert_eq!(sqlstate("SELECT cms_add(cms_empty(), 5, NULL)"), "22004");
    assert_eq!(one::<i64>("SELECT cms_total(cms_add(NULL::cms, NULL::int4))"), 0);
    assert!(is_null("SELECT cms_count(NULL::cms, 5)"));
    assert!(is_null("SELECT cms_count(cms_empty(), NULL::int4)"));
    assert!(is_null("SELECT cms_total(NULL)"));
    // count 0 is allowed, negative is 22023
    assert_eq!(
        one::<i64>("SELECT cms_total(cms_add(cms_empty(), 5, 0))"),
        0
    );
    let SqlError { state, hint, .. } = sql_error("SELECT cms_add(cms_empty(), 5, -1)");
    assert_eq!(state, "22023");
    assert!(hint.contains(">= 0"), "{hint}");
    assert_eq!(
        sql_error(
            "SELECT cms_add_agg(g, -1::int8, 0.01, 0.01) FROM generate_series(1, 3) g"
        )
        .state,
        "22023"
    );
    // total overflow is 22003
    assert_eq!(
        sql_error("SELECT cms_add(cms_add(cms_empty(0.1, 0.1), 1, 9223372036854775807), 2)")
            .state,
        "22003"
    );
}

#[pg_test]
fn cms_aggregates_and_nulls() {
    assert!(is_null(
        "SELECT cms_add_agg(g) FROM generate_series(1, 0) g"
    ));
    assert!(is_null(
        "SELECT cms_add_agg(NULL::int4) FROM generate_series(1, 3)"
    ));
    assert!(is_null(
        "SELECT cms_union_agg(NULL::cms) FROM generate_series(1, 3)"
    ));
    assert_eq!(one::<i64>("SELECT cms_total(cms_add_agg(CASE WHEN g % 2 = 0 THEN g END)) FROM generate_series(1, 10) g"), 5);
    assert_eq!(
        one::<i64>("SELECT cms_count(cms_add_agg(g % 3), 1) FROM generate_series(1, 30) g"),
        10
    );
    let p: String =
        one("SELECT cms_print(cms_add_agg(g, 0.01, 0.05)) FROM generate_series(1, 100) g");
    assert!(
        p.contains("width 272") && p.contains("depth 3") && p.contains("total 100"),
        "{p}"
    );
    // weighted: sum of counts; a NULL count with a value is 22004, a NULL value with
    // any count adds nothing
    assert_eq!(one::<i64>("SELECT cms_count(cms_add_agg(g % 2, g::int8, 0.001, 0.01), 0) FROM generate_series(1, 10) g"), 30);
    assert_eq!(sqlstate("SELECT cms_total(cms_add_agg(g, CASE WHEN g > 5 THEN 1 END::int8, 0.001, 0.01)) FROM generate_series(1, 10) g"), "22004");
    assert_eq!(one::<i64>("SELECT cms_total(cms_add_agg(CASE WHEN g > 5 THEN g END, CASE WHEN g > 5 THEN 1 END::int8, 0.001, 0.01)) FROM generate_series(1, 10) g"), 5);
    // aggregate and scalar adds build identical sketches
    assert!(one::<bool>(
        "SELECT cms_add_agg(g::text) = (SELECT cms_add(cms_add(cms_add(cms_empty(), '1'::text), '2'::text), '3'::text)) FROM generate_series(1, 3) g"
    ));
    // never below the true count, on a skewed column
    assert_eq!(
        one::<i64>(
            "WITH d AS (SELECT (g * g) % 1000 AS v FROM generate_series(1, 20000) g), \
             s AS (SELECT cms_add_agg(v, 0.01, 0.01) AS s FROM d) \
             SELECT count(*) FROM (SELECT v, count(*) AS n FROM d GROUP BY v) t, s WHERE cms_count(s.s, t.v) < t.n"
        ),
        0
    );
}

#[pg_test]
fn cms_hashing_agrees_across_int_widths_and_with_hll_hash_any() {
    let q = |add: &str, probe: &str| -> i64 {
        one(&format!(
            "SELECT cms_count(cms_add_agg({add}), {probe}) FROM generate_series(1, 5) g"
        ))
    };
    assert_eq!(q("5::bigint", "5"), 5);
    assert_eq!(q("5::int2", "5::int8"), 5);
    assert_eq!(q("5::int4", "5::int2"), 5);
    assert_eq!(q("'abc'::varchar", "'abc'::text"), 5);
    assert_eq!(q("'abc'::name", "'abc'::varchar"), 5);
    // values that hash alike (hll_hash_any) build identical sketches: every integer
    // width, and text, varchar and name, also record the same element type
    assert!(one::<bool>(
        "SELECT cms_add_agg(g::int2) = cms_add_agg(g::int8) FROM generate_series(1, 100) g"
    ));
    assert!(one::<bool>(
        "SELECT cms_add_agg(g::text) = cms_add_agg(g::text::varchar) FROM generate_series(1, 100) g"
    ));
    // other types hash as in hll_hash_any (their sketches differ only in the element
    // type they record): text == its bytes as bytea, uuid == its 16 bytes, date == its
    // send form, float8 == its extended hash as an int8
    let same_counters = |a: &str, b: &str| -> bool {
        let counters = |e: &str| {
            format!(
                "(SELECT substr(b, 1, octet_length(b) - 1 - get_byte(b, octet_length(b) - 1)) \
                  FROM (SELECT cms_send({e}) AS b) x)"
            )
        };
        one(&format!("SELECT {} = {}", counters(a), counters(b)))
    };
    assert!(same_counters(
        "(SELECT cms_add_agg(g::text) FROM generate_series(1, 100) g)",
        "(SELECT cms_add_agg(g::text::bytea) FROM generate_series(1, 100) g)"
    ));
    assert!(same_counters(
        "cms_add(cms_empty(), 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'::uuid)",
        "cms_add(cms_empty(), '\\xa0eebc999c0b4ef8bb6d6bb9bd380a11'::bytea)"
    ));
    assert!(same_counters(
        "cms_add(cms_empty(), '2026-01-01'::date)",
        "cms_add(cms_empty(), date_send('2026-01-01'))"
    ));
    assert!(same_counters(
        "cms_add(cms_empty(), 1.5::float8)",
        "cms_add(cms_empty(), hashfloat8extended(1.5, 0))"
    ));
    assert!(!same_counters(
        "cms_add(cms_empty(), 1.5::float8)",
        "cms_add(cms_empty(), hashfloat8extended(2.5, 0))"
    ));
    // hll_hash_any agrees, so the above pins cms to hll_hash_any
    assert!(one::<bool>(
        "SELECT hll_hash_any(1.5::float8)::int8 = hll_hash_bigint(hashfloat8extended(1.5, 0))::int8"
    ));
}

#[pg_test]
fn cms_remembers_its_element_type() {
    // Sketches of 100 copies of the value 7 in each type; a lookup with a value of any
    // type either finds all 100 (the same kind of type) or is 42804 naming both: never
    // a silent 0 from another type's hash.
    Spi::run("CREATE TYPE pg_temp.mood AS ENUM ('7', 'x')").unwrap();
    let types = [
        ("int2", "bigint"),
        ("int4", "bigint"),
        ("int8", "bigint"),
        ("text", "text"),
        ("varchar", "text"),
        ("name", "text"),
        ("numeric", "numeric"),
        ("float8", "double precision"),
        ("bytea", "bytea"),
        ("char(3)", "character"),
        ("pg_temp.mood", "mood"),
    ];
    for (built, family) in types {
        let sketch = format!(
            "(SELECT cms_add_agg('7'::{built}) FROM generate_series(1, 100))"
        );
        let print: String = one(&format!("SELECT cms_print({sketch})"));
        assert!(print.contains(&format!("{family} values")), "{built}: {print}");
        for (probe, probe_family) in types {
            let q = format!("SELECT cms_count({sketch}, '7'::{probe})");
            if family == probe_family {
                assert_eq!(one::<i64>(&q), 100, "{built} probed with {probe}");
                // and the scalar add keeps counting into it
                assert_eq!(
                    one::<i64>(&format!(
                        "SELECT cms_count(cms_add({sketch}, '7'::{probe}), '7'::{built})"
                    )),
                    101
                );
            } else {
                let e = sql_error(&q);
                assert_eq!(e.state, "42804", "{built} probed with {probe}: {}", e.message);
                assert!(
                    e.message.contains(&format!("type {family},"))
                        && e.message.ends_with(&format!("not {probe_family}")),
                    "{}",
                    e.message
                );
                assert!(e.hint.starts_with(&format!("Cast the value to {family}.")), "{}", e.hint);
                assert_eq!(
                    sql_error(&format!("SELECT cms_add({sketch}, '7'::{probe})")).state,
                    "42804"
                );
                let merge = format!(
                    "SELECT cms_union({sketch}, (SELECT cms_add_agg('7'::{probe}) FROM generate_series(1, 3)))"
                );
                assert_eq!(sql_error(&merge).state, "42804", "{merge}");
            }
        }
    }
    // Arrays: integer arrays of every width are one type, as are text, varchar and name
    // arrays (their elements hash alike); a uuid array is another.
    assert!(one::<String>("SELECT cms_print(cms_add_agg(ARRAY[g]::int4[])) FROM generate_series(1, 3) g")
        .contains("bigint[] values"));
    assert_eq!(
        one::<i64>("SELECT cms_count(cms_add_agg(ARRAY[g % 3]::int2[]), ARRAY[1]::int8[]) FROM generate_series(1, 30) g"),
        10
    );
    assert!(one::<bool>(
        "SELECT cms_add_agg(ARRAY[g]::int4[]) = cms_add_agg(ARRAY[g]::int8[]) FROM generate_series(1, 50) g"
    ));
    assert_eq!(
        one::<i64>("SELECT cms_count(cms_add_agg(ARRAY[g::text]::varchar[]), ARRAY['1']::text[]) FROM generate_series(1, 3) g"),
        1
    );
    assert_eq!(
        sql_error("SELECT cms_count(cms_add_agg(ARRAY[g]::int4[]), ARRAY['a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11']::uuid[]) FROM generate_series(1, 3) g").state,
        "42804"
    );
    // A built-in type's name does not depend on the search_path: a temporary table
    // named uuid shadows the type's name in this session, and the sketch still says uuid.
    Spi::run("CREATE TEMP TABLE uuid (x int)").unwrap();
    assert!(one::<String>(
        "SELECT cms_print(cms_add(NULL, 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'::pg_catalog.uuid))"
    )
    .starts_with("cms v2: uuid values"));
    // a sketch of no known type (cms_empty()) takes the type of its first add, through
    // the scalar add, the aggregates and unions
    assert!(one::<String>("SELECT cms_print(cms_empty())").contains("not known yet"));
    assert_eq!(
        sql_error("SELECT cms_count(cms_add(cms_empty(), 1.5::numeric), 1.5::float8)").state,
        "42804"
    );
    assert_eq!(
        one::<i64>("SELECT cms_count(cms_union(cms_empty(), cms_add(cms_empty(), 2::int8)), 2::int2)"),
        1
    );
    assert_eq!(
        sql_error("SELECT cms_count(cms_union_agg(s), 'a'::text) FROM (VALUES (cms_empty()), (cms_add(cms_empty(), 1))) v(s)")
            .state,
        "42804"
    );
    assert_eq!(
        sql_error("SELECT cms_union_agg(s) FROM (VALUES (cms_empty()), (cms_add(cms_empty(), 1)), (cms_add(cms_empty(), 'a'::text))) v(s)")
            .state,
        "42804"
    );
    // the weighted aggregate
    assert_eq!(
        sql_error("SELECT cms_count(s, 'a'::text) FROM (SELECT cms_add_agg(g, 2, 0.01, 0.01) AS s FROM generate_series(1, 3) g) x").state,
        "42804"
    );
    // A format 1 value (what 0.2.0 stored: no element type) reads with the same
    // answers, is not type-checked, and becomes format 2 of the added type when written.
    Spi::run(
        "CREATE TEMP TABLE v1 AS SELECT set_byte(substr(b, 1, octet_length(b) - 1 - get_byte(b, octet_length(b) - 1)), 0, 1)::cms AS s \
         FROM (SELECT cms_send(cms_add_agg(g % 10)) AS b FROM generate_series(1, 1000) g) x",
    )
    .unwrap();
    assert!(one::<String>("SELECT cms_print(s) FROM v1").starts_with("cms v1: values of a type not known yet"));
    assert_eq!(one::<i64>("SELECT cms_count(s, 3) FROM v1"), 100);
    assert_eq!(one::<i64>("SELECT cms_count(s, 3::numeric) FROM v1"), 0);
    assert!(one::<String>("SELECT cms_print(cms_add(s, 3)) FROM v1").starts_with("cms v2: bigint values"));
    assert_eq!(one::<i64>("SELECT cms_count(cms_add(s, 3), 3::int2) FROM v1"), 101);
    assert_eq!(one::<i64>("SELECT cms_count(cms_union(s, s), 3) FROM v1"), 200);
    assert!(one::<bool>(
        "SELECT cms_union(s, cms_add(cms_empty(), 3)) = cms_add(cms_add_agg(g % 10), 3) FROM v1, generate_series(1, 1000) g GROUP BY s"
    ));
}

#[pg_test]
fn cms_union_equals_whole_and_mismatch_is_22023() {
    assert!(one::<bool>(
        "WITH parts AS (SELECT g % 4 AS p, cms_add_agg(g % 97) AS s FROM generate_series(1, 5000) g GROUP BY 1) \
         SELECT (SELECT cms_union_agg(s) FROM parts) = (SELECT cms_add_agg(g % 97) FROM generate_series(1, 5000) g)"
    ));
    assert!(one::<bool>(
        "SELECT cms_union(cms_add(cms_empty(), 1), cms_add(cms_empty(), 2)) = cms_add(cms_add(cms_empty(), 1), 2)"
    ));
    assert!(one::<bool>("SELECT (cms_add(cms_empty(), 1) || cms_add(cms_empty(), 2)) = cms_add(cms_add(cms_empty(), 2), 1)"));
    assert!(is_null("SELECT cms_union(cms_empty(), NULL)"));
    let SqlError { state, hint, .. } =
        sql_error("SELECT cms_union(cms_empty(0.01, 0.01), cms_empty(0.001, 0.01))");
    assert_eq!(state, "22023");
    assert!(hint.contains("same eps and delta"), "{hint}");
    let SqlError { state, hint, .. } = sql_error(
        "SELECT cms_union_agg(s) FROM (VALUES (cms_empty(0.01, 0.01)), (cms_empty(0.01, 0.001))) v(s)",
    );
    assert_eq!(state, "22023");
    assert!(hint.contains("same eps and delta"), "{hint}");
}

#[pg_test]
fn cms_io_casts_and_equality() {
    assert!(one::<bool>("SELECT s::text::cms = s FROM (SELECT cms_add_agg(g, 0.1, 0.1) AS s FROM generate_series(1, 50) g) t"));
    assert!(one::<bool>("SELECT s::bytea::cms = s FROM (SELECT cms_add_agg(g, 0.1, 0.1) AS s FROM generate_series(1, 50) g) t"));
    assert!(one::<bool>(
        "SELECT cms_send(s) = s::bytea FROM (SELECT cms_add(cms_empty(0.1, 0.1), 3) AS s) t"
    ));
    assert!(one::<String>("SELECT cms_empty(0.5, 0.5)::text").starts_with("\\x0210"));
    assert!(one::<bool>(
        "SELECT cms_empty(0.1, 0.1) <> cms_add(cms_empty(0.1, 0.1), 1)"
    ));
    assert_eq!(one::<i64>("SELECT count(DISTINCT s) FROM (VALUES (cms_empty(0.1,0.1)), (cms_empty(0.1,0.1)), (cms_empty(0.2,0.1))) v(s)"), 2);
    assert_eq!(sql_error("SELECT 'nothex'::cms").state, "22P02");
    assert_eq!(sql_error("SELECT '\\x0110'::cms").state, "22P02");
    assert_eq!(sql_error("SELECT '\\x0110'::bytea::cms").state, "22P03");
    // a counter changed so its row no longer sums to the total
    assert_eq!(
        sql_error("SELECT set_byte(cms_add(cms_empty(0.5, 0.5), 1)::bytea, 40, 7)::cms").state,
        "22P03"
    );
}

// ---- topk --------------------------------------------------------------------------------

#[pg_test]
fn topk_list_order_and_counts() {
    Spi::run("CREATE TEMP TABLE tk AS SELECT v FROM (VALUES ('a', 5), ('b', 3), ('c', 9), ('d', 1)) s(v, n), generate_series(1, n)")
        .unwrap();
    let rows: Vec<(String, i64, i64)> = Spi::connect(|c| {
        c.select(
            "SELECT value, count, error FROM topk_list((SELECT topk_add_agg(v, 3) FROM tk))",
            None,
            &[],
        )
        .unwrap()
        .map(|r| {
            (
                r.get::<String>(1).unwrap().unwrap(),
                r.get::<i64>(2).unwrap().unwrap(),
                r.get::<i64>(3).unwrap().unwrap(),
            )
        })
        .collect()
    });
    assert_eq!(
        rows,
        vec![("c".into(), 9, 0), ("a".into(), 5, 0), ("b".into(), 3, 0)]
    );
    assert_eq!(one::<i64>("SELECT topk_total(topk_add_agg(v)) FROM tk"), 18);
    assert_eq!(one::<i32>("SELECT topk_k(topk_add_agg(v)) FROM tk"), 10);
    assert_eq!(
        one::<i64>("SELECT count(*) FROM topk_list((SELECT topk_add_agg(v) FROM tk))"),
        4
    );
    let p: String = one("SELECT topk_print(topk_add_agg(v, 2)) FROM tk");
    assert!(
        p.contains("k 2")
            && p.contains("capacity 8")
            && p.contains("tracked 4")
            && p.contains("total 18"),
        "{p}"
    );
    // ties: count descending, then value ascending
    assert_eq!(
        one::<String>("SELECT string_agg(value, ',') FROM topk_list((SELECT topk_add_agg(v) FROM unnest(ARRAY['y','x','z','x','z']) v))"),
        "x,z,y"
    );
}

#[pg_test]
fn topk_nulls_and_parameters() {
    assert!(is_null(
        "SELECT topk_add_agg(g) FROM generate_series(1, 0) g"
    ));
    assert!(is_null(
        "SELECT topk_add_agg(NULL::text) FROM generate_series(1, 3)"
    ));
    assert!(is_null(
        "SELECT topk_union_agg(NULL::topk) FROM generate_series(1, 3)"
    ));
    assert_eq!(one::<i64>("SELECT topk_total(topk_add_agg(CASE WHEN g % 2 = 0 THEN g END)) FROM generate_series(1, 10) g"), 5);
    assert_eq!(
        one::<i64>("SELECT topk_total(topk_add(NULL, 'x'::text, 4))"),
        4
    );
    assert_eq!(one::<i64>("SELECT topk_total(topk_add(NULL, NULL::text))"), 0);
    assert_eq!(sqlstate("SELECT topk_add(topk_empty(), 'x'::text, NULL)"), "22004");
    assert_eq!(
        sql_error("SELECT topk_add(topk_empty(), 1, -2)").state,
        "22023"
    );
    assert_eq!(sql_error("SELECT topk_empty(0)").state, "22023");
    assert_eq!(sql_error("SELECT topk_empty(100001)").state, "22023");
    assert_eq!(
        sql_error("SELECT topk_add_agg(g, 0) FROM generate_series(1, 3) g").state,
        "22023"
    );
    assert_eq!(sql_error("SELECT 'nothex'::topk").state, "22P02");
    assert_eq!(sql_error("SELECT '\\x0120'::topk").state, "22P02");
    assert_eq!(sql_error("SELECT '\\x0120'::bytea::topk").state, "22P03");
    assert!(one::<bool>("SELECT t::text::topk = t AND t::bytea::topk = t AND topk_send(t) = t::bytea FROM (SELECT topk_add_agg(g % 7) AS t FROM generate_series(1, 100) g) s"));
    // scalar and aggregate builds agree
    assert!(one::<bool>("SELECT topk_add(topk_add(topk_empty(), 'a'::text), 'b'::text) = (SELECT topk_add_agg(v) FROM unnest(ARRAY['b','a']) v)"));
}

#[pg_test]
fn topk_items_are_text_forms() {
    // int2/int4/int8 5 all print as '5'; other types use their output function
    assert!(one::<bool>(
        "SELECT topk_add_agg(v::int2) = topk_add_agg(v::int8) AND topk_add_agg(v::int4) = topk_add_agg(v::text) \
         FROM (SELECT (g % 5) - 2 AS v FROM generate_series(1, 100) g) s"
    ));
    assert_eq!(
        one::<String>("SELECT string_agg(value, ',' ORDER BY value) FROM topk_list((SELECT topk_add_agg(v) FROM (VALUES ((-9223372036854775808)::int8), (9223372036854775807), (0)) s(v)))"),
        "-9223372036854775808,0,9223372036854775807"
    );
    assert_eq!(
        one::<String>("SELECT value FROM topk_list((SELECT topk_add_agg(1.50::numeric)))"),
        "1.5"
    );
    assert_eq!(
        one::<String>("SELECT value FROM topk_list((SELECT topk_add_agg(DATE '2024-02-29')))"),
        "2024-02-29"
    );
}

#[pg_test]
fn topk_guarantees_on_a_zipf_column() {
    // ~Zipf(1.1) over 5000 values, 50000 rows
    Spi::run(
        "CREATE TEMP TABLE z AS SELECT floor(pow(1 - random() * (1 - pow(5000, -0.1)), -10))::int8 AS v \
         FROM generate_series(1, 50000)",
    )
    .unwrap();
    Spi::run("CREATE TEMP TABLE truth AS SELECT v::text AS value, count(*) AS n FROM z GROUP BY v")
        .unwrap();
    for k in [5, 10, 50] {
        Spi::run(&format!("CREATE TEMP TABLE l{k} AS SELECT * FROM topk_list((SELECT topk_add_agg(v, {k}) FROM z))")).unwrap();
        // every value with true count > total/k is listed
        assert_eq!(
            one::<i64>(&format!("SELECT count(*) FROM truth WHERE n > 50000 / {k}.0 AND value NOT IN (SELECT value FROM l{k})")),
            0,
            "k {k}"
        );
        // count - error <= true <= count
        assert_eq!(
            one::<i64>(&format!("SELECT count(*) FROM l{k} JOIN truth USING (value) WHERE NOT (l{k}.count - error <= n AND n <= l{k}.count)")),
            0
        );
        assert_eq!(
            one::<i64>(&format!(
                "SELECT count(*) FROM l{k} WHERE value NOT IN (SELECT value FROM truth)"
            )),
            0
        );
        assert!(one::<i64>(&format!("SELECT count(*) FROM l{k}")) == k);
        // ordered by count descending
        assert!(one::<bool>(&format!(
            "SELECT bool_and(c <= p) FROM (SELECT count AS c, lag(count) OVER () AS p FROM l{k}) s WHERE p IS NOT NULL"
        )));
    }
    // merging partitions keeps the guarantees
    Spi::run(
        "CREATE TEMP TABLE parts AS SELECT v % 4 AS p, topk_add_agg(v, 10) AS t FROM z GROUP BY 1",
    )
    .unwrap();
    Spi::run(
        "CREATE TEMP TABLE lu AS SELECT * FROM topk_list((SELECT topk_union_agg(t) FROM parts))",
    )
    .unwrap();
    assert_eq!(
        one::<i64>(
            "SELECT count(*) FROM truth WHERE n > 5000 AND value NOT IN (SELECT value FROM lu)"
        ),
        0
    );
    assert_eq!(one::<i64>("SELECT count(*) FROM lu JOIN truth USING (value) WHERE NOT (lu.count - error <= n AND n <= lu.count)"), 0);
    assert_eq!(
        one::<i64>("SELECT topk_total(topk_union_agg(t)) FROM parts"),
        50000
    );
}

#[pg_test]
fn topk_union_agg_and_window_use() {
    assert!(one::<bool>(
        "WITH parts AS (SELECT g % 3 AS p, topk_add_agg(g % 5) AS t FROM generate_series(1, 300) g GROUP BY 1) \
         SELECT topk_union_agg(t) = (SELECT topk_add_agg(g % 5) FROM generate_series(1, 300) g) FROM parts"
    ));
    // a running aggregate in a window re-reads the state every row without breaking it
    assert_eq!(
        one::<i64>("SELECT sum(topk_total(t))::int8 FROM (SELECT topk_add_agg(g % 3) OVER (ORDER BY g) AS t FROM generate_series(1, 10) g) s"),
        55
    );
    // many groups (hash aggregate), each its own expanded state
    assert_eq!(
        one::<i64>("SELECT sum(topk_total(t))::int8 FROM (SELECT g % 100 AS grp, topk_add_agg(g % 17, 3) AS t FROM generate_series(1, 10000) g GROUP BY 1) s"),
        10000
    );
}

/// The guard-free per-row paths (dense hll in place, unweighted cms in place) give the
/// very bytes the general paths give: folding the scalar functions row by row outside
/// an aggregate, and the weighted cms aggregate (which never takes the fast path).
#[pg_test]
fn sketch_fast_paths_equal_the_general_paths() {
    Spi::run(
        "CREATE TEMP TABLE fp AS
           SELECT i::int8 AS b, (i % 30000)::int4 AS n, (i % 300)::int2 AS s
           FROM generate_series(-20000, 40000) i;
         CREATE FUNCTION pg_temp.fold_hll(p int4) RETURNS hll LANGUAGE plpgsql AS $$
         DECLARE h hll := hll_empty(p); r record;
         BEGIN FOR r IN SELECT b FROM fp LOOP h := hll_add(h, hll_hash_bigint(r.b)); END LOOP; RETURN h; END $$;
         CREATE FUNCTION pg_temp.fold_cms() RETURNS cms LANGUAGE plpgsql AS $$
         DECLARE c cms := cms_empty(0.01, 0.01); r record;
         BEGIN FOR r IN SELECT b FROM fp LOOP c := cms_add(c, r.b); END LOOP; RETURN c; END $$;",
    )
    .unwrap();
    for p in [10, 14] {
        assert!(
            one::<bool>(&format!(
                "SELECT (SELECT hll_add_agg(hll_hash_bigint(b), {p}) FROM fp) = pg_temp.fold_hll({p})"
            )),
            "hll_add_agg p={p}"
        );
    }
    // approx_count_distinct hashes as hll_hash_any: every integer width alike
    let folded: i64 = one("SELECT hll_cardinality(pg_temp.fold_hll(NULL))::int8");
    assert_eq!(one::<i64>("SELECT approx_count_distinct(b) FROM fp"), folded);
    assert_eq!(
        one::<i64>("SELECT approx_count_distinct(n) FROM fp"),
        one::<i64>("SELECT approx_count_distinct(n::int8) FROM fp")
    );
    assert_eq!(
        one::<i64>("SELECT approx_count_distinct(s) FROM fp"),
        one::<i64>("SELECT approx_count_distinct(s::text::int8) FROM fp")
    );
    // cms: fast (unweighted) = weighted count 1 (general path) = scalar fold
    assert!(one::<bool>(
        "SELECT (SELECT cms_add_agg(b, 0.01, 0.01) FROM fp) = (SELECT cms_add_agg(b, 1, 0.01, 0.01) FROM fp)"
    ));
    assert!(one::<bool>(
        "SELECT (SELECT cms_add_agg(b, 0.01, 0.01) FROM fp) = pg_temp.fold_cms()"
    ));
    assert!(one::<bool>(
        "SELECT (SELECT cms_add_agg(n, 0.01, 0.01) FROM fp) = (SELECT cms_add_agg(n::int8, 1, 0.01, 0.01) FROM fp)"
    ));
    // topk: integers (guard-free path, text form formatted in Rust) = their text forms
    // (guarded path, the type's output), with evictions, repeats and the extremes
    Spi::run(
        "INSERT INTO fp VALUES (-9223372036854775808, -2147483648, -32768),
                               (9223372036854775807, 2147483647, 32767), (0, 0, 0)",
    )
    .unwrap();
    for (col, k) in [("b", 10), ("b", 100), ("n", 10), ("s", 10), ("s", 1000)] {
        assert!(
            one::<bool>(&format!(
                "SELECT (SELECT topk_add_agg({col}, {k}) FROM fp) = (SELECT topk_add_agg({col}::text, {k}) FROM fp)"
            )),
            "topk_add_agg({col}, {k})"
        );
    }
    assert_eq!(
        one::<i64>("SELECT count(*) FROM topk_list((SELECT topk_add_agg(s, 1000) FROM fp)) WHERE value IN ('-32768', '32767', '0')"),
        3
    );
}

/// The unweighted cms_add_agg keeps a staged state (one byte per counter, carried into
/// the 64-bit counter every 256 adds) only where its final function turns it back into a
/// cms. Wherever the state could escape otherwise, or the plan is of another shape, the
/// result is the same bytes as the weighted aggregate's (which never stages): values
/// repeated across many carries, hash aggregation with spilling, window use, shared
/// transition states, and an aggregate a user (or Citus) builds on cms_add_trans without
/// the final function, which must get a valid, stored-form cms. (Parallel plans, where
/// partial states are never staged, are compared with serial ones in
/// pg_test/sql/sketches.sql.)
#[pg_test]
fn cms_staged_state_never_escapes() {
    Spi::run(
        "CREATE TEMP TABLE st AS
           SELECT (i % 7) AS g, CASE WHEN i % 3 = 0 THEN 42 ELSE i END::int8 AS b
           FROM generate_series(1, 60000) i;
         ANALYZE st;
         CREATE AGGREGATE pg_temp.bare_cms(anyelement) (SFUNC = cms_add_trans, STYPE = cms);
         CREATE AGGREGATE pg_temp.bare_cms_combinable(anyelement)
             (SFUNC = cms_add_trans, STYPE = cms, COMBINEFUNC = cms_union_trans);",
    )
    .unwrap();
    // 42 occurs 20,000 times: 78 carries in each of its counters
    assert!(one::<bool>(
        "SELECT (SELECT cms_add_agg(b) FROM st) = (SELECT cms_add_agg(b, 1, 0.001, 0.01) FROM st)"
    ));
    // never below the truth, within eps * total above it (deterministic data and hash)
    let c42 = one::<i64>("SELECT cms_count(cms_add_agg(b), 42::int8) FROM st");
    assert!((20000..=20060).contains(&c42), "{c42}");
    // the result is a stored cms: it survives text and binary I/O
    assert!(one::<bool>(
        "SELECT c = c::text::cms AND c = (c::bytea)::cms FROM (SELECT cms_add_agg(b, 0.01, 0.01) AS c FROM st) s"
    ));
    // shared transition state (two identical aggregates), and a transition-only aggregate
    assert!(one::<bool>(
        "SELECT a = b AND a = c FROM (SELECT cms_add_agg(b) AS a, cms_add_agg(b) AS b,
                pg_temp.bare_cms(b) AS c FROM st) s"
    ));
    assert!(one::<bool>(
        "SELECT c = c::text::cms FROM (SELECT pg_temp.bare_cms(b) AS c FROM st) s"
    ));
    // same inputs, transition and combine function: PostgreSQL shares one transition
    // state between the two, and the second has no final function
    assert!(one::<bool>(
        "SELECT a = c AND c = c::text::cms FROM (SELECT cms_add_agg(b) AS a,
                pg_temp.bare_cms_combinable(b) AS c FROM st) s"
    ));
    // grouped: sorted, hashed, and hashed with spilling to disk (tiny work_mem)
    let grouped = |setup: &str| {
        Spi::run(setup).unwrap();
        let ok = one::<bool>(
            "SELECT bool_and(s = w) FROM
               (SELECT g, cms_add_agg(b, 0.01, 0.01) AS s FROM st GROUP BY g) x
               JOIN (SELECT g, cms_add_agg(b, 1, 0.01, 0.01) AS w FROM st GROUP BY g) y USING (g)",
        );
        Spi::run("RESET enable_hashagg; RESET enable_sort; RESET work_mem").unwrap();
        ok
    };
    assert!(grouped("SET enable_hashagg = off"));
    assert!(grouped("SET enable_sort = off"));
    assert!(grouped("SET enable_sort = off; SET work_mem = '64kB'"));
    // window use: a running sketch per row (no final-function-free escape)
    assert!(one::<bool>(
        "SELECT bool_and(cms_count(c, b) >= 1 AND cms_total(c) = n) FROM
           (SELECT b, cms_add_agg(b, 0.01, 0.01) OVER (ORDER BY g, b ROWS UNBOUNDED PRECEDING) AS c,
                   count(*) OVER (ORDER BY g, b ROWS UNBOUNDED PRECEDING) AS n
            FROM st WHERE g = 1) w"
    ));
}

/// The one NULL rule of every function that adds to a sketch or counter: a NULL sketch
/// or counter is an empty one, a NULL value adds nothing, a NULL count is 22004. Each
/// row: the add function applied to NULL, the same applied to its empty value (they must
/// be equal), and a call with a NULL count.
#[pg_test]
fn nulls_follow_one_rule() {
    for (from_null, from_empty, null_count) in [
        ("hll_add(NULL::hll, hll_hash_integer(7))", "hll_add(hll_empty(12), hll_hash_integer(7))", None),
        ("NULL::hll || hll_hash_integer(7)", "hll_empty(12) || hll_hash_integer(7)", None),
        ("hll_add(NULL::hll, NULL::hll_hashval)", "hll_empty(12)", None),
        ("cms_add(NULL::cms, 7)", "cms_add(cms_empty(), 7)", Some("cms_add(NULL::cms, 7, NULL)")),
        ("cms_add(NULL::cms, NULL::int4, NULL)", "cms_empty()", Some("cms_add(cms_empty(), 7, NULL)")),
        ("topk_add(NULL::topk, 7)", "topk_add(topk_empty(), 7)", Some("topk_add(NULL::topk, 7, NULL)")),
        ("topk_add(NULL::topk, NULL::int4, NULL)", "topk_empty()", Some("topk_add(topk_empty(), 7, NULL)")),
        ("gcounter_increment(NULL::gcounter, 2, 'a')", "gcounter_increment('{}'::gcounter, 2, 'a')", Some("gcounter_increment(NULL::gcounter, NULL, 'a')")),
        ("pncounter_increment(NULL::pncounter, 2, 'a')", "pncounter_increment('{}'::pncounter, 2, 'a')", Some("pncounter_increment(NULL::pncounter, NULL, 'a')")),
        ("pncounter_decrement(NULL::pncounter, 2, 'a')", "pncounter_decrement('{}'::pncounter, 2, 'a')", Some("pncounter_decrement('{}'::pncounter, NULL, 'a')")),
    ] {
        assert!(
            one::<bool>(&format!("SELECT ({from_null})::text = ({from_empty})::text")),
            "{from_null} is not {from_empty}"
        );
        if let Some(call) = null_count {
            assert_eq!(sqlstate(&format!("SELECT {call}")), "22004", "{call}");
        }
    }
    // the case users hit: an UPDATE that adds to a NULL column
    Spi::run("CREATE TEMP TABLE null_rule (h hll, c cms, t topk)").unwrap();
    Spi::run("INSERT INTO null_rule VALUES (NULL, NULL, NULL)").unwrap();
    Spi::run(
        "UPDATE null_rule SET h = h || hll_hash_text('a'), c = cms_add(c, 'a'::text), t = topk_add(t, 'a'::text)",
    )
    .unwrap();
    assert_eq!(
        one::<String>("SELECT round(# h)::text || cms_count(c, 'a'::text) || topk_total(t) FROM null_rule"),
        "111"
    );
    // counter_add: a NULL delta is 22004 too
    Spi::run("SELECT counter_create('null_rule')").unwrap();
    assert_eq!(sqlstate("SELECT counter_add('null_rule', 'k', NULL)"), "22004");
}

/// Values equal under their type's default equality count as one value everywhere:
/// hll_hash_any, approx_count_distinct, cms and topk agree with count(DISTINCT).
#[pg_test]
fn equal_values_count_as_one() {
    for (a, b) in [
        ("1.5::numeric", "1.50::numeric"),
        ("0::numeric", "0.000::numeric"),
        ("0::float8", "'-0'::float8"),
        ("0::float4", "'-0'::float4"),
        ("'NaN'::float8", "'NaN'::float8"),
        ("'a'::char(3)", "'a'::char(5)"),
        ("'1 day'::interval", "'24 hours'::interval"),
        ("'1 mon'::interval", "'30 days'::interval"),
        ("'-1 mon 29 days'::interval", "'-1 day'::interval"),
        ("'{\"a\": 1.0, \"b\": [2]}'::jsonb", "'{\"b\": [2], \"a\": 1.00}'::jsonb"),
        ("ARRAY[1.0]::numeric[]", "ARRAY[1.00]::numeric[]"),
        ("'10.0.0.0/8'::cidr::inet", "'10.0.0.0/8'::inet"),
    ] {
        assert!(one::<bool>(&format!("SELECT {a} = {b}")), "{a} = {b} is not true in SQL");
        assert!(
            one::<bool>(&format!("SELECT hll_hash_any({a}) = hll_hash_any({b})")),
            "hll_hash_any({a}) <> hll_hash_any({b})"
        );
        let q = format!("(SELECT {a} AS v UNION ALL SELECT {b}) s");
        assert_eq!(one::<i64>(&format!("SELECT approx_count_distinct(v) FROM {q}")), 1, "{a}, {b}");
        assert_eq!(one::<i64>(&format!("SELECT count(DISTINCT v) FROM {q}")), 1, "{a}, {b}");
        assert_eq!(one::<i64>(&format!("SELECT cms_count(cms_add_agg(v), {a}) FROM {q}")), 2, "{a}, {b}");
        // topk counts by text form, canonical for scalars only: jsonb and arrays print
        // the numbers inside them with their scale (documented)
        if !a.contains("jsonb") && !a.contains("[]") {
            assert_eq!(
                one::<i64>(&format!("SELECT count(*) FROM topk_list((SELECT topk_add_agg(v) FROM {q}))")),
                1,
                "topk counts {a} and {b} as two"
            );
        }
    }
    // many numerics, each in three scales: as many distinct values as count(DISTINCT) says
    let est = one::<i64>(
        "SELECT approx_count_distinct(v) FROM (SELECT round((g * 0.37)::numeric, 2) + 0 * s AS v \
         FROM generate_series(1, 80) g, generate_series(0, 2) s) x",
    );
    let exact = one::<i64>(
        "SELECT count(DISTINCT v) FROM (SELECT round((g * 0.37)::numeric, 2) + 0 * s AS v \
         FROM generate_series(1, 80) g, generate_series(0, 2) s) x",
    );
    assert!((est - exact).abs() <= 1, "{est} vs {exact}");
    // unequal values still differ
    assert!(!one::<bool>("SELECT hll_hash_any(1.5::numeric) = hll_hash_any(1.51::numeric)"));
    assert!(!one::<bool>("SELECT hll_hash_any('a'::char(3)) = hll_hash_any('b'::char(3))"));
}

/// topk counts a value under its canonical text form, whatever the session's TimeZone,
/// DateStyle, IntervalStyle or extra_float_digits.
#[pg_test]
fn topk_text_is_independent_of_session_settings() {
    Spi::run("CREATE TEMP TABLE tk (t topk)").unwrap();
    Spi::run("INSERT INTO tk VALUES (topk_empty())").unwrap();
    for settings in [
        "SET LOCAL TimeZone = 'UTC'; SET LOCAL DateStyle = 'ISO, YMD'; SET LOCAL IntervalStyle = 'postgres'; SET LOCAL extra_float_digits = 1",
        "SET LOCAL TimeZone = 'America/New_York'; SET LOCAL DateStyle = 'SQL, DMY'; SET LOCAL IntervalStyle = 'iso_8601'; SET LOCAL extra_float_digits = 0",
        "SET LOCAL TimeZone = 'Asia/Kolkata'; SET LOCAL DateStyle = 'German'; SET LOCAL IntervalStyle = 'sql_standard'; SET LOCAL extra_float_digits = 3",
    ] {
        Spi::run(settings).unwrap();
        Spi::run(
            "UPDATE tk SET t = topk_add(topk_add(topk_add(topk_add(t, \
               '2026-03-29 01:30:00+00'::timestamptz), '2026-03-29'::date), \
               '1 day 2 hours'::interval), 0.1::float8)",
        )
        .unwrap();
    }
    Spi::run("SET LOCAL TimeZone = 'UTC'; SET LOCAL DateStyle = 'ISO, YMD'; SET LOCAL extra_float_digits = 1").unwrap();
    assert_eq!(
        one::<String>("SELECT string_agg(value || '=' || count, ', ' ORDER BY value) FROM topk_list((SELECT t FROM tk))"),
        "0.1=3, 1 day 02:00:00=3, 2026-03-29=3, 2026-03-29 01:30:00+00=3"
    );
    // the session's settings are back as they were after each value was printed (in a
    // zone other than the UTC the printing uses)
    Spi::run("SET LOCAL TimeZone = 'Asia/Kolkata'; SET LOCAL DateStyle = 'SQL, DMY'").unwrap();
    Spi::run("UPDATE tk SET t = topk_add(t, '2026-03-29 01:30:00+00'::timestamptz)").unwrap();
    assert_eq!(
        one::<String>("SELECT '2026-03-29 01:30:00+00'::timestamptz::text"),
        "29/03/2026 07:00:00 IST"
    );
}
