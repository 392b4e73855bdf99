// #[pg_test]s for hashing and hll; included into the tests module of src/lib.rs.

// ---- hashing ----------------------------------------------------------------------------

#[pg_test]
fn integer_widths_hash_alike() {
    let a: i64 = one("SELECT hll_hash_smallint(5::int2)::int8");
    let b: i64 = one("SELECT hll_hash_integer(5)::int8");
    let c: i64 = one("SELECT hll_hash_bigint(5)::int8");
    let d: i64 = one("SELECT hll_hash_any(5::int8)::int8");
    let e: i64 = one("SELECT hll_hash_any(5::int2)::int8");
    assert!(a == b && b == c && c == d && d == e);
}

#[pg_test]
fn golden_hash_values() {
    // Independent XXH3-64 values (Python xxhash / C xxHash) of the canonical encodings.
    let golden: [(&str, u64); 6] = [
        ("SELECT hll_hash_bigint(0)::int8", 0xc77b_3abb_6f87_acd9),
        ("SELECT hll_hash_integer(1)::int8", 0x2fbc_5935_64db_792e),
        ("SELECT hll_hash_smallint((-1)::int2)::int8", 0x5111_c7e4_7d78_4413),
        ("SELECT hll_hash_bigint(1, 42)::int8", 0xe3ac_d5de_c7d7_d3fb),
        ("SELECT hll_hash_text('hello')::int8", 0x9555_e855_5c62_dcfd),
        ("SELECT hll_hash_any('hello'::text, 42)::int8", 0xbafa_072f_07db_7937),
    ];
    for (sql, want) in golden {
        assert_eq!(one::<i64>(sql) as u64, want, "{sql}");
    }
    assert_eq!(one::<i64>("SELECT hll_hash_bytea(''::bytea)::int8") as u64, 0x2D06_8005_38D3_94C2);
}

#[pg_test]
fn text_varchar_bytea_and_any_agree() {
    let t: i64 = one("SELECT hll_hash_text('abc')::int8");
    assert_eq!(t, one::<i64>("SELECT hll_hash_text('abc'::varchar)::int8"));
    assert_eq!(t, one::<i64>("SELECT hll_hash_bytea('abc'::bytea)::int8"));
    assert_eq!(t, one::<i64>("SELECT hll_hash_any('abc'::varchar)::int8"));
    let u: i64 = one("SELECT hll_hash_uuid('a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11')::int8");
    assert_eq!(u, one::<i64>("SELECT hll_hash_bytea('\\xa0eebc999c0b4ef8bb6d6bb9bd380a11'::bytea)::int8"));
    assert_eq!(u, one::<i64>("SELECT hll_hash_any('a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'::uuid)::int8"));
    // types whose binary form is one per value hash it (as since 0.1.0) ...
    let d: i64 = one("SELECT hll_hash_any('2026-01-01'::date)::int8");
    assert_eq!(d, one::<i64>("SELECT hll_hash_bytea(date_send('2026-01-01'))::int8"));
    // ... the others their extended hash, so equal values hash alike
    let f: i64 = one("SELECT hll_hash_any(1.5::float8)::int8");
    assert_eq!(f, one::<i64>("SELECT hll_hash_bigint(hashfloat8extended(1.5, 0))::int8"));
}

#[pg_test]
fn hashval_casts_round_trip() {
    assert_eq!(one::<i64>("SELECT (-7)::int8::hll_hashval::int8"), -7);
    assert!(one::<bool>("SELECT 12::int8::hll_hashval = '12'::hll_hashval"));
}

// ---- hll ---------------------------------------------------------------------------------

#[pg_test]
fn empty_and_null() {
    assert_eq!(one::<f64>("SELECT hll_cardinality(hll_empty())"), 0.0);
    assert_eq!(one::<f64>("SELECT # hll_empty(10)"), 0.0);
    assert!(is_null("SELECT hll_cardinality(NULL::hll)"));
    assert_eq!(one::<i32>("SELECT hll_precision(hll_empty())"), 12);
    assert_eq!(one::<i32>("SELECT hll_precision(hll_empty(14))"), 14);
}

#[pg_test]
fn default_precision_follows_guc() {
    Spi::run("SET LOCAL distributed_counter.hll_default_precision = 9").unwrap();
    assert_eq!(one::<i32>("SELECT hll_precision(hll_empty())"), 9);
    assert_eq!(one::<i32>("SELECT hll_precision(hll_add_agg(hll_hash_integer(g))) FROM generate_series(1,10) g"), 9);
}

#[pg_test]
fn small_sets_are_exact_within_one_and_sparse() {
    for n in [1, 2, 10, 50, 100] {
        let est: f64 = one(&format!(
            "SELECT # hll_add_agg(hll_hash_integer(g)) FROM generate_series(1,{n}) g"
        ));
        assert!((est - n as f64).abs() <= 1.0, "n={n} est={est}");
        let acd: i64 = one(&format!("SELECT approx_count_distinct(g) FROM generate_series(1,{n}) g"));
        assert!((acd - n).abs() <= 1, "n={n} acd={acd}");
    }
    let size: i32 = one("SELECT pg_column_size(hll_add_agg(hll_hash_integer(g))) FROM generate_series(1,10) g");
    assert!(size <= 64, "10 values take {size} bytes");
}

#[pg_test]
fn aggregate_equals_chained_adds_and_union_laws() {
    let agg: String = one("SELECT hll_add_agg(hll_hash_integer(g))::text FROM generate_series(1,5000) g");
    // hll_add one value at a time (via a recursive fold) gives the same bytes
    let folded: String = one(
        "WITH RECURSIVE f(i, h) AS (SELECT 0, hll_empty() UNION ALL \
         SELECT i + 1, h || hll_hash_integer(i + 1) FROM f WHERE i < 5000) \
         SELECT h::text FROM f WHERE i = 5000",
    );
    assert_eq!(agg, folded);
    // union of halves == whole, commutative, idempotent
    assert!(one::<bool>(
        "WITH a AS (SELECT hll_add_agg(hll_hash_integer(g)) h FROM generate_series(1,3000) g), \
              b AS (SELECT hll_add_agg(hll_hash_integer(g)) h FROM generate_series(2001,5000) g), \
              w AS (SELECT hll_add_agg(hll_hash_integer(g)) h FROM generate_series(1,5000) g) \
         SELECT (a.h || b.h) = w.h AND (b.h || a.h) = w.h AND (w.h || w.h) = w.h FROM a, b, w"
    ));
}

#[pg_test]
fn mixed_precision_union_takes_the_lower() {
    assert_eq!(one::<i32>(
        "SELECT hll_precision(hll_union(hll_add_agg(hll_hash_integer(g), 14), hll_add_agg(hll_hash_integer(g), 10))) \
         FROM generate_series(1, 100000) g"), 10);
    assert_eq!(one::<i32>(
        "SELECT hll_precision(hll_union_agg(h)) FROM (VALUES (hll_empty(11)), (hll_empty(13))) v(h)"), 11);
}

#[pg_test]
fn estimate_is_close_for_large_sets() {
    let est: f64 = one("SELECT # hll_add_agg(hll_hash_integer(g), 14) FROM generate_series(1, 200000) g");
    // RSE at p=14 is 0.61%; 5 sigma
    assert!((est / 200000.0 - 1.0).abs() < 0.031, "est={est}");
}

#[pg_test]
fn bounds_bracket_the_estimate() {
    let (e, lo, hi): (f64, f64, f64) = Spi::get_three(
        "SELECT estimate, lower, upper FROM hll_cardinality_bounds(\
         (SELECT hll_add_agg(hll_hash_integer(g)) FROM generate_series(1,100000) g), 0.99)",
    )
    .map(|(a, b, c)| (a.unwrap(), b.unwrap(), c.unwrap()))
    .unwrap();
    assert!(lo <= e && e <= hi && lo < 100000.0 * 1.0 && hi > 100000.0 * 1.0, "{lo} {e} {hi}");
}

#[pg_test]
fn text_bytea_round_trip_and_print() {
    assert!(one::<bool>(
        "WITH s AS (SELECT hll_add_agg(hll_hash_integer(g)) h FROM generate_series(1,2000) g) \
         SELECT h::text::hll = h AND h::bytea::hll = h FROM s"
    ));
    let p: String = one("SELECT hll_print(hll_empty(12) || hll_hash_integer(1))");
    assert!(p.contains("p=12") && p.contains("sparse"), "{p}");
}

#[pg_test]
fn typmod_is_enforced() {
    Spi::run("CREATE TEMP TABLE t (h hll(10))").unwrap();
    Spi::run("INSERT INTO t VALUES (hll_empty(14) || hll_hash_integer(1))").unwrap();
    Spi::run("INSERT INTO t SELECT hll_add_agg(hll_hash_integer(g), 12) FROM generate_series(1,100000) g").unwrap();
    assert_eq!(one::<i64>("SELECT count(*) FROM t WHERE hll_precision(h) = 10"), 2);
    assert_eq!(one::<String>("SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = 't'::regclass AND attname = 'h'"), "hll(10)");
}

#[pg_test(error = "hll precision 3 is out of range")]
fn typmod_out_of_range() {
    Spi::run("CREATE TEMP TABLE bad (h hll(3))").unwrap();
}

#[pg_test(error = "cannot raise hll precision from 10 to 12")]
fn dense_cannot_be_raised() {
    Spi::run("CREATE TEMP TABLE t2 (h hll(12))").unwrap();
    Spi::run("INSERT INTO t2 SELECT hll_add_agg(hll_hash_integer(g), 10) FROM generate_series(1,10000) g").unwrap();
}

#[pg_test(error = "hll precision 19 is out of range")]
fn empty_precision_out_of_range() {
    Spi::run("SELECT hll_empty(19)").unwrap();
}

#[pg_test(error = "unsupported hll format version 3 (this build reads versions 1 and 2)")]
fn wrong_version_byte() {
    Spi::run("SELECT '\\x03010c'::hll").unwrap();
}

#[pg_test]
fn format_2_is_what_functions_return_and_format_1_keeps_working() {
    // Sketches at every form: sparse (<= 100 values), list, planes; p = 10 and 12.
    Spi::run(
        "CREATE TEMP TABLE f2 AS SELECT n, p, hll_add_agg(hll_hash_integer(g), p) AS h \
         FROM (VALUES (5), (100), (101), (1000), (50000)) v(n), (VALUES (10), (12)) q(p), \
         LATERAL generate_series(1, n) g GROUP BY n, p",
    )
    .unwrap();
    // Every result is format 2 (first byte 2), and hll_print says which payload.
    assert_eq!(one::<i64>("SELECT count(*) FROM f2 WHERE get_byte(h::bytea, 0) <> 2"), 0);
    assert_eq!(
        one::<String>(
            "SELECT string_agg(f, '; ' ORDER BY f) FROM \
             (SELECT DISTINCT split_part(hll_print(h), ', ', 3) f FROM f2 WHERE p = 12) s"
        ),
        "dense (list); dense (planes); sparse"
    );
    for sql in [
        "SELECT hll_empty(12)",
        "SELECT hll_empty(12) || hll_hash_integer(1)",
        "SELECT hll_union(hll_empty(12), hll_empty(10))",
        "SELECT hll_compact('\\x0101042600000027000080'::hll)",
        "SELECT hll_union_agg(h) FROM f2",
    ] {
        assert_eq!(one::<i32>(&format!("SELECT get_byte(({sql})::bytea, 0)")), 2, "{sql}");
    }
    // Input (text, bytea cast) keeps format-1 bytes as given and stores format 2 in its
    // canonical form, so dump and restore round-trip exactly and `=` stays an equality
    // of sketches: the single token 0x41 at p = 12, Rice-coded with b = 0 and b = 1.
    assert!(one::<bool>(
        "SELECT '\\x0101042600000027000080'::hll::bytea = '\\x0101042600000027000080'::bytea \
            AND '\\x0101042600000027000080'::bytea::hll::text = '\\x0101042600000027000080'"
    ));
    assert!(one::<bool>(
        "SELECT '\\x02010c010001'::hll = '\\x02010c010102'::hll \
            AND '\\x02010c010102'::bytea::hll::bytea = '\\x02010c010001'::bytea"
    ));
    assert!(one::<bool>("SELECT bool_and(h::text::hll::bytea = h::bytea AND h::bytea::hll = h) FROM f2"));
    // The same sketches in format 1 (the aggregates' state form, as 0.2.0 stored them):
    // equal estimates and bounds, and unions of any mix give format 2's bytes.
    Spi::run("CREATE TEMP TABLE f1 AS SELECT n, p, hll_union_trans(NULL, h) AS h FROM f2").unwrap();
    assert_eq!(one::<i64>("SELECT count(*) FROM f1 WHERE get_byte(h::bytea, 0) <> 1"), 0);
    assert!(one::<bool>(
        "SELECT bool_and(# a.h = # b.h AND hll_cardinality_bounds(a.h, 0.9) = hll_cardinality_bounds(b.h, 0.9) \
                 AND hll_precision(a.h) = hll_precision(b.h) AND hll_compact(b.h) = a.h) \
         FROM f2 a JOIN f1 b USING (n, p)"
    ));
    assert!(one::<bool>(
        "SELECT (SELECT hll_union_agg(h) FROM f2 WHERE p = 12) = \
                (SELECT hll_union_agg(h) FROM (SELECT h FROM f1 WHERE p = 12 AND n < 1000 \
                 UNION ALL SELECT h FROM f2 WHERE p = 12 AND n >= 1000) s) \
            AND (SELECT hll_union_agg(h) FROM f2) = (SELECT hll_union_agg(h) FROM f1)"
    ));
    assert!(one::<bool>(
        "SELECT bool_and(hll_union(a.h, c.h) = hll_union(b.h, c.h)) \
         FROM f2 a JOIN f1 b USING (n, p) JOIN f2 c ON c.p = a.p"
    ));
    // hll_compact converts a table of format-1 values in place; format 2 stays as is.
    Spi::run("UPDATE f1 SET h = hll_compact(h)").unwrap();
    assert!(one::<bool>("SELECT bool_and(a.h = b.h) FROM f2 a JOIN f1 b USING (n, p)"));
    assert!(one::<bool>("SELECT bool_and(hll_compact(h) = h) FROM f2"));
    // Format 2 takes less room than format 1 at every fill past the first few values.
    assert!(one::<bool>(
        "SELECT bool_and(pg_column_size(hll_compact(h)) < pg_column_size(hll_union_trans(NULL, h))) FROM f2 WHERE n >= 100"
    ));
}

#[pg_test]
fn group_by_and_distinct_on_hll() {
    // groups 0 and 2 hold {0}, groups 1 and 3 hold {1}: two distinct sketches
    let sub = "SELECT g % 4 AS grp, hll_add_agg(hll_hash_integer(g % 2)) h FROM generate_series(1,40) g GROUP BY 1";
    assert_eq!(one::<i64>(&format!("SELECT count(DISTINCT h) FROM ({sub}) s")), 2);
    assert_eq!(one::<i64>(&format!("SELECT count(*) FROM (SELECT h FROM ({sub}) s GROUP BY h) t")), 2);
    Spi::run("SET LOCAL enable_hashagg = off").unwrap();
    Spi::run("SET LOCAL enable_sort = off").unwrap();
    assert_eq!(one::<i64>(&format!("SELECT count(*) FROM (SELECT h FROM ({sub}) s GROUP BY h) t")), 2);
}

#[pg_test]
fn approx_count_distinct_matches_hll_add_agg() {
    assert!(one::<bool>(
        "SELECT approx_count_distinct(g) = round(# hll_add_agg(hll_hash_any(g)))::int8 FROM generate_series(1, 30000) g"
    ));
    assert!(one::<bool>(
        "SELECT approx_count_distinct(g::text) = round(# hll_add_agg(hll_hash_text(g::text)))::int8 FROM generate_series(1, 30000) g"
    ));
    assert_eq!(one::<i64>("SELECT approx_count_distinct(x) FROM (SELECT NULL::int) s(x)"), 0);
    assert_eq!(one::<i64>("SELECT approx_count_distinct(x) FROM (SELECT 1 WHERE false) s(x)"), 0);
}

#[pg_test]
fn hll_precision_raise_error_speaks_of_the_target_type() {
    let e = sql_error("SELECT hll_add_agg(hll_hash_integer(g), 12)::hll(14) FROM generate_series(1, 5000) g");
    assert_eq!(e.state, "22023");
    assert!(e.hint.contains("target type is hll(14)") && !e.hint.contains("column"), "{}", e.hint);
}
