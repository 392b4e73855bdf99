// #[pg_test]s for crdt; included into the tests module of src/lib.rs (no use lines here: the parent has them).

fn crdt_text(sql: &str) -> String {
    one::<String>(sql)
}

// ---- I/O ------------------------------------------------------------------------------------

#[pg_test]
fn crdt_text_io_is_canonical_json() {
    assert_eq!(
        crdt_text(r#"SELECT '{"b":3, "a":5, "z":0}'::gcounter::text"#),
        r#"{"a":5,"b":3}"#
    );
    assert_eq!(crdt_text("SELECT '{}'::gcounter::text"), "{}");
    assert_eq!(
        crdt_text(r#"SELECT ' { "n":{"b":2}, "p":{"a":5} } '::pncounter::text"#),
        r#"{"p":{"a":5},"n":{"b":2}}"#
    );
    assert_eq!(
        crdt_text("SELECT '{}'::pncounter::text"),
        r#"{"p":{},"n":{}}"#
    );
    // escapes round-trip
    assert_eq!(
        crdt_text(r#"SELECT '{"a\"b":1,"\u00e9":2}'::gcounter::text"#),
        r#"{"a\"b":1,"é":2}"#
    );
}

#[pg_test]
fn crdt_send_is_the_stored_form() {
    // docs/FORMAT.md golden example
    assert_eq!(
        crdt_text(r#"SELECT gcounter_send('{"a":5,"bc":3}')::text"#),
        "\\x013002000000016105000000000000000262630300000000000000"
    );
    assert_eq!(
        crdt_text("SELECT pncounter_send('{}')::text"),
        "\\x01310000000000000000"
    );
}

// ---- counting -------------------------------------------------------------------------------

#[pg_test]
fn crdt_increment_decrement_and_value() {
    assert_eq!(
        one::<i64>(
            "SELECT gcounter_value(gcounter_increment(gcounter_increment(NULL, 5, 'a'), 2, 'b'))"
        ),
        7
    );
    assert_eq!(
        crdt_text("SELECT gcounter_increment(gcounter_increment('{}', 5, 'a'), 2, 'a')::text"),
        r#"{"a":7}"#
    );
    assert_eq!(
        crdt_text("SELECT pncounter_decrement(pncounter_increment(NULL, 5, 'a'), 7, 'b')::text"),
        r#"{"p":{"a":5},"n":{"b":7}}"#
    );
    assert_eq!(
        one::<i64>(r#"SELECT pncounter_value('{"p":{"a":5},"n":{"b":7}}')"#),
        -2
    );
    // n = 0 records nothing; default n is 1
    assert_eq!(
        crdt_text("SELECT gcounter_increment(NULL, 0, 'a')::text"),
        "{}"
    );
    assert_eq!(
        crdt_text("SELECT pncounter_decrement(NULL, node => 'x')::text"),
        r#"{"p":{},"n":{"x":1}}"#
    );
    // either sum alone may exceed int8 while the difference fits
    assert_eq!(
        one::<i64>(
            r#"SELECT pncounter_value('{"p":{"a":9223372036854775807,"b":5},"n":{"c":9223372036854775807}}')"#
        ),
        5
    );
}

#[pg_test]
fn crdt_default_node_is_the_system_identifier_and_no_session_sets_it() {
    // The test cluster leaves node_id empty: the default node is the system identifier.
    let sysid: String = one("SELECT system_identifier::text FROM pg_control_system()");
    assert_eq!(
        crdt_text("SELECT gcounter_increment(NULL, 4)::text"),
        format!(r#"{{"{sysid}":4}}"#)
    );
    assert_eq!(
        crdt_text("SELECT pncounter_decrement(NULL, 3)::text"),
        format!(r#"{{"p":{{}},"n":{{"{sysid}":3}}}}"#)
    );
    // Only the server configuration sets it (sighup): not SET, not SET LOCAL, not
    // set_config(), whoever asks (this test runs as a superuser).
    for attempt in [
        "SET distributed_counter.node_id = 'node1'",
        "SET LOCAL distributed_counter.node_id = 'node1'",
        "SELECT set_config('distributed_counter.node_id', 'node1', true)",
    ] {
        assert_eq!(sqlstate(attempt), "55P02", "{attempt}");
    }
    assert_eq!(
        crdt_text("SELECT gcounter_increment(NULL)::text"),
        format!(r#"{{"{sysid}":1}}"#)
    );
}

#[pg_test]
fn crdt_merge_and_operators() {
    let a = r#"'{"x":5,"y":1}'::gcounter"#;
    let b = r#"'{"y":3,"z":2}'::gcounter"#;
    assert_eq!(
        crdt_text(&format!("SELECT ({a} || {b})::text")),
        r#"{"x":5,"y":3,"z":2}"#
    );
    assert!(one::<bool>(&format!(
        "SELECT ({a} || {b}) = ({b} || {a}) AND ({a} || {a}) = {a} AND gcounter_merge({a}, {b}) = ({a} || {b})"
    )));
    assert!(one::<bool>(&format!(
        "SELECT {a} <> {b} AND NOT ({a} = {b})"
    )));
    let p = r#"'{"p":{"x":5},"n":{"x":1}}'::pncounter"#;
    let q = r#"'{"p":{"x":2,"y":4},"n":{"x":3}}'::pncounter"#;
    assert_eq!(
        crdt_text(&format!("SELECT ({p} || {q})::text")),
        r#"{"p":{"x":5,"y":4},"n":{"x":3}}"#
    );
    assert_eq!(
        one::<i64>(&format!(
            "SELECT pncounter_value(pncounter_merge({p}, {q}))"
        )),
        6
    );
    // cast and per-node view
    assert_eq!(
        crdt_text(&format!("SELECT ({a})::pncounter::text")),
        r#"{"p":{"x":5,"y":1},"n":{}}"#
    );
    assert_eq!(
        crdt_text(&format!(
            "SELECT string_agg(node || '=' || count, ',') FROM gcounter_entries({a})"
        )),
        "x=5,y=1"
    );
    assert_eq!(
        crdt_text(&format!(
            "SELECT string_agg(node || '=' || increments || '/' || decrements, ',') FROM pncounter_entries({q})"
        )),
        "x=2/3,y=4/0"
    );
}

#[pg_test]
fn crdt_null_behaviour() {
    assert!(is_null("SELECT gcounter_value(NULL)"));
    assert!(is_null("SELECT pncounter_value(NULL)"));
    assert!(is_null(r#"SELECT gcounter_merge(NULL, '{"a":1}')"#));
    assert!(is_null(r#"SELECT '{"a":1}'::gcounter || NULL::gcounter"#));
    assert!(is_null(
        "SELECT gcounter_merge_agg(c) FROM (VALUES (NULL::gcounter)) v(c)"
    ));
    assert!(is_null(
        "SELECT pncounter_merge_agg(c) FROM (SELECT NULL::pncounter c WHERE false) v"
    ));
    // NULL counter = empty, NULL node = default node (the system identifier here)
    let sysid: String = one("SELECT system_identifier::text FROM pg_control_system()");
    assert_eq!(
        crdt_text("SELECT pncounter_increment(NULL, 2, NULL)::text"),
        format!(r#"{{"p":{{"{sysid}":2}},"n":{{}}}}"#)
    );
    // NULL inputs are skipped by the aggregates
    assert_eq!(
        crdt_text(
            r#"SELECT gcounter_merge_agg(c)::text FROM (VALUES (NULL), ('{"a":1}'::gcounter), (NULL)) v(c)"#
        ),
        r#"{"a":1}"#
    );
    // a NULL amount is an error, never a silently NULLed counter
    assert_eq!(
        sqlstate("SELECT gcounter_increment('{}', NULL)"),
        "22004"
    );
}

#[pg_test]
fn crdt_error_sqlstates() {
    // malformed / negative / duplicate JSON
    for bad in [
        r#"SELECT '{'::gcounter"#,
        r#"SELECT '{"a":-1}'::gcounter"#,
        r#"SELECT '{"a":1,"a":2}'::gcounter"#,
        r#"SELECT '{"a":1.5}'::gcounter"#,
        r#"SELECT '[1]'::gcounter"#,
        r#"SELECT '{"a":1} x'::gcounter"#,
        r#"SELECT '{"q":{}}'::pncounter"#,
        r#"SELECT '{"p":{},"p":{}}'::pncounter"#,
        r#"SELECT '{"p":{"a":-1}}'::pncounter"#,
        r#"SELECT '{"a":99999999999999999999}'::gcounter"#,
    ] {
        assert_eq!(sqlstate(bad), "22P02", "{bad}");
    }
    // bad parameters
    assert_eq!(
        sqlstate("SELECT gcounter_increment(NULL, -1, 'a')"),
        "22023"
    );
    assert_eq!(
        sqlstate("SELECT pncounter_decrement(NULL, -1, 'a')"),
        "22023"
    );
    assert_eq!(
        sqlstate("SELECT pncounter_increment(NULL, 1, '')"),
        "22023"
    );
    assert_eq!(
        sqlstate(&format!(
            "SELECT gcounter_increment(NULL, 1, '{}')",
            "x".repeat(64)
        )),
        "22023"
    );
    assert_eq!(
        sqlstate(&format!(
            "SELECT gcounter_increment(NULL, 1, '{}')",
            "x".repeat(63)
        )),
        "00000"
    );
    // overflow is an error, never a wrap
    assert_eq!(
        sqlstate(r#"SELECT gcounter_increment('{"a":9223372036854775807}', 1, 'a')"#),
        "22003"
    );
    assert_eq!(
        sqlstate(r#"SELECT pncounter_decrement('{"n":{"a":9223372036854775800}}', 8, 'a')"#),
        "22003"
    );
    assert_eq!(
        sqlstate(r#"SELECT gcounter_value('{"a":9223372036854775807,"b":1}')"#),
        "22003"
    );
    assert_eq!(
        sqlstate(r#"SELECT pncounter_value('{"n":{"a":9223372036854775807,"b":2}}')"#),
        "22003"
    );
    assert_eq!(
        sqlstate(r#"SELECT gcounter_increment('{"a":9223372036854775806}', 1, 'a')"#),
        "00000"
    );
}

#[pg_test]
fn crdt_equality_hash_group_by() {
    // DISTINCT / GROUP BY use the hash opclass (the types have no ordering)
    assert_eq!(
        one::<i64>(
            r#"SELECT count(*) FROM (SELECT DISTINCT c FROM (VALUES ('{"a":1,"b":2}'::gcounter), ('{"b":2,"a":1}'), ('{"a":1}'), ('{"a":1,"c":0}')) v(c)) d"#
        ),
        2
    );
    assert_eq!(
        one::<i64>(
            r#"SELECT count(*) FROM (SELECT c FROM (VALUES ('{"p":{"a":1}}'::pncounter), ('{"p":{"a":1},"n":{}}'), ('{}')) v(c) GROUP BY c) g"#
        ),
        2
    );
    // hash join on the counter
    Spi::run("SET LOCAL enable_mergejoin = off").unwrap();
    Spi::run("SET LOCAL enable_nestloop = off").unwrap();
    assert_eq!(
        one::<i64>(
            r#"SELECT count(*) FROM (VALUES ('{"a":1}'::gcounter), ('{"b":1}')) x(c) JOIN (VALUES ('{"a":1}'::gcounter)) y(c) USING (c)"#
        ),
        1
    );
}

// ---- aggregates -----------------------------------------------------------------------------

#[pg_test]
fn crdt_aggregates_equal_folded_merges() {
    // 300 counters over 8 nodes, nodes appearing late (slow path) and repeatedly (in-place path)
    Spi::run(
        "CREATE TEMP TABLE crdt_agg AS \
         SELECT i, gcounter_increment(gcounter_increment(NULL, (i * 7919) % 1000 + 1, 'n' || (i % 8)), \
                                      (i * 31) % 97 + 1, 'm' || (i / 40)) AS g, \
                pncounter_decrement(pncounter_increment(NULL, (i * 13) % 500 + 1, 'n' || (i % 8)), \
                                    (i * 17) % 300, 'n' || ((i + 3) % 8)) AS p \
         FROM generate_series(1, 300) i",
    )
    .unwrap();
    Spi::run(
        "CREATE OR REPLACE FUNCTION pg_temp.crdt_fold_g() RETURNS gcounter LANGUAGE plpgsql AS $f$ \
         DECLARE acc gcounter := '{}'; r record; BEGIN \
           FOR r IN SELECT g FROM crdt_agg ORDER BY i DESC LOOP acc := acc || r.g; END LOOP; RETURN acc; END $f$",
    )
    .unwrap();
    Spi::run(
        "CREATE OR REPLACE FUNCTION pg_temp.crdt_fold_p() RETURNS pncounter LANGUAGE plpgsql AS $f$ \
         DECLARE acc pncounter := '{}'; r record; BEGIN \
           FOR r IN SELECT p FROM crdt_agg ORDER BY i LOOP acc := pncounter_merge(acc, r.p); END LOOP; RETURN acc; END $f$",
    )
    .unwrap();
    assert!(one::<bool>(
        "SELECT gcounter_merge_agg(g) = pg_temp.crdt_fold_g() FROM crdt_agg"
    ));
    assert!(one::<bool>(
        "SELECT pncounter_merge_agg(p) = pg_temp.crdt_fold_p() FROM crdt_agg"
    ));
    // order does not matter, and grouping then merging groups gives the same
    assert!(one::<bool>(
        "SELECT (SELECT gcounter_merge_agg(g ORDER BY i DESC) FROM crdt_agg) = \
                (SELECT gcounter_merge_agg(m) FROM (SELECT gcounter_merge_agg(g) m FROM crdt_agg GROUP BY i % 5) s)"
    ));
    assert!(one::<bool>(
        "SELECT (SELECT pncounter_merge_agg(p ORDER BY i DESC) FROM crdt_agg) = \
                (SELECT pncounter_merge_agg(m) FROM (SELECT pncounter_merge_agg(p) m FROM crdt_agg GROUP BY i % 7) s)"
    ));
    // per-node maxima: the merged value equals the sum over nodes of each node's max
    assert!(one::<bool>(
        "SELECT gcounter_value(gcounter_merge_agg(g)) = \
                (SELECT sum(m) FROM (SELECT max(e.count) m FROM crdt_agg, gcounter_entries(g) e GROUP BY e.node) s) \
         FROM crdt_agg"
    ));
    // the aggregate does not modify stored values
    assert_eq!(
        one::<i64>("SELECT count(*) FROM crdt_agg WHERE gcounter_value(g) <> (SELECT sum(count) FROM gcounter_entries(g))"),
        0
    );
}

// ---- triggers -------------------------------------------------------------------------------

fn crdt_trigger_table() {
    Spi::run(
        "CREATE TABLE crdt_t (k text PRIMARY KEY, label text, g gcounter, p pncounter); \
         CREATE TRIGGER crdt_merge BEFORE UPDATE ON crdt_t FOR EACH ROW EXECUTE FUNCTION crdt_merge_trigger(); \
         CREATE TRIGGER crdt_insert BEFORE INSERT ON crdt_t FOR EACH ROW EXECUTE FUNCTION crdt_insert_merge_trigger(); \
         INSERT INTO crdt_t VALUES ('k', 'L', '{\"a\":5,\"b\":1}', '{\"p\":{\"a\":3},\"n\":{\"b\":1}}')",
    )
    .unwrap();
}

/// Rows an UPDATE reported as changed.
fn crdt_updated(set_and_where: &str) -> i64 {
    one::<i64>(&format!(
        "WITH u AS (UPDATE crdt_t SET {set_and_where} RETURNING 1) SELECT count(*) FROM u"
    ))
}

#[pg_test]
fn crdt_merge_trigger_merges_and_skips_no_ops() {
    crdt_trigger_table();
    // an older state (a subset) changes nothing: skipped, value kept
    assert_eq!(crdt_updated(r#"g = '{"a":3}' WHERE k = 'k'"#), 0);
    assert_eq!(crdt_text("SELECT g::text FROM crdt_t"), r#"{"a":5,"b":1}"#);
    // the same state: skipped
    assert_eq!(crdt_updated("g = g, p = p WHERE k = 'k'"), 0);
    // NULL is the empty counter: skipped, value kept
    assert_eq!(crdt_updated("g = NULL WHERE k = 'k'"), 0);
    assert_eq!(crdt_text("SELECT g::text FROM crdt_t"), r#"{"a":5,"b":1}"#);
    // a concurrent state is merged (per-node max), not overwritten
    assert_eq!(
        crdt_updated(r#"g = '{"a":2,"c":7}', p = '{"p":{"a":1,"z":4}}' WHERE k = 'k'"#),
        1
    );
    assert_eq!(
        crdt_text("SELECT g::text FROM crdt_t"),
        r#"{"a":5,"b":1,"c":7}"#
    );
    assert_eq!(
        crdt_text("SELECT p::text FROM crdt_t"),
        r#"{"p":{"a":3,"z":4},"n":{"b":1}}"#
    );
    // the usual increment path
    assert_eq!(
        crdt_updated("p = pncounter_decrement(p, 2, 'b') WHERE k = 'k'"),
        1
    );
    assert_eq!(one::<i64>("SELECT pncounter_value(p) FROM crdt_t"), 4);
    // a local change of another column alone is kept
    assert_eq!(crdt_updated("label = 'M' WHERE k = 'k'"), 1);
    assert_eq!(crdt_text("SELECT label FROM crdt_t"), "M");
    // works with an empty search_path (as in the apply worker)
    let t = crdt_text("SELECT relnamespace::regnamespace::text || '.crdt_t' FROM pg_class WHERE oid = 'crdt_t'::regclass");
    Spi::run("SET LOCAL search_path = ''").unwrap();
    assert_eq!(
        one::<i64>(&format!(
            "WITH u AS (UPDATE {t} SET g = g WHERE k = 'k' RETURNING 1) SELECT count(*) FROM u"
        )),
        0
    );
    assert_eq!(
        one::<i64>(&format!(
            r#"WITH u AS (UPDATE {t} SET g = '{{"zz":1}}' WHERE k = 'k' RETURNING 1) SELECT count(*) FROM u"#
        )),
        1
    );
    Spi::run("RESET search_path").unwrap();
}

#[pg_test]
fn crdt_merge_trigger_in_replica_role_ignores_other_columns() {
    crdt_trigger_table();
    Spi::run("ALTER TABLE crdt_t ENABLE ALWAYS TRIGGER crdt_merge").unwrap();
    Spi::run("SET LOCAL session_replication_role = replica").unwrap();
    // only a counter change makes a replicated update (stops echo loops)
    assert_eq!(crdt_updated("label = 'other' WHERE k = 'k'"), 0);
    assert_eq!(
        crdt_updated(r#"label = 'other', g = '{"a":6}' WHERE k = 'k'"#),
        1
    );
    assert_eq!(
        crdt_text("SELECT label || ' ' || g::text FROM crdt_t"),
        r#"other {"a":6,"b":1}"#
    );
}

#[pg_test]
fn crdt_insert_merge_trigger_merges_existing_keys() {
    crdt_trigger_table();
    Spi::run(r#"INSERT INTO crdt_t VALUES ('k', 'ignored', '{"a":1,"c":2}', '{"n":{"b":5}}')"#)
        .unwrap();
    assert_eq!(one::<i64>("SELECT count(*) FROM crdt_t"), 1);
    assert_eq!(
        crdt_text("SELECT label || ' ' || g::text || ' ' || p::text FROM crdt_t"),
        r#"L {"a":5,"b":1,"c":2} {"p":{"a":3},"n":{"b":5}}"#
    );
    // NULL counters on either side merge as empty
    Spi::run(
        r#"INSERT INTO crdt_t VALUES ('k', NULL, NULL, NULL), ('new', 'N', NULL, '{"p":{"x":1}}')"#,
    )
    .unwrap();
    assert_eq!(one::<i64>("SELECT count(*) FROM crdt_t"), 2);
    assert_eq!(
        crdt_text("SELECT g::text FROM crdt_t WHERE k = 'k'"),
        r#"{"a":5,"b":1,"c":2}"#
    );
    Spi::run(r#"INSERT INTO crdt_t VALUES ('new', 'N', '{"q":1}', NULL)"#).unwrap();
    assert_eq!(
        crdt_text("SELECT g::text || p::text FROM crdt_t WHERE k = 'new'"),
        r#"{"q":1}{"p":{"x":1},"n":{}}"#
    );
    // with an empty search_path
    let t = crdt_text("SELECT relnamespace::regnamespace::text || '.crdt_t' FROM pg_class WHERE oid = 'crdt_t'::regclass");
    Spi::run("SET LOCAL search_path = ''").unwrap();
    Spi::run(&format!(
        r#"INSERT INTO {t} VALUES ('new', 'N', '{{"q":3}}', NULL)"#
    ))
    .unwrap();
    Spi::run("RESET search_path").unwrap();
    assert_eq!(
        crdt_text("SELECT g::text FROM crdt_t WHERE k = 'new'"),
        r#"{"q":3}"#
    );
}

#[pg_test]
fn crdt_triggers_reject_misuse() {
    Spi::run(
        "CREATE TABLE crdt_nopk (k text, g gcounter); \
         CREATE TRIGGER ins BEFORE INSERT ON crdt_nopk FOR EACH ROW EXECUTE FUNCTION crdt_insert_merge_trigger(); \
         CREATE TABLE crdt_after (k text PRIMARY KEY, g gcounter); \
         CREATE TRIGGER upd AFTER UPDATE ON crdt_after FOR EACH ROW EXECUTE FUNCTION crdt_merge_trigger(); \
         INSERT INTO crdt_after VALUES ('k', '{}')",
    )
    .unwrap();
    assert_eq!(
        sqlstate("INSERT INTO crdt_nopk VALUES ('k', '{}')"),
        "55000"
    );
    assert_eq!(
        sqlstate("UPDATE crdt_after SET g = '{\"a\":1}'"),
        "39P01"
    );
}

#[pg_test]
fn crdt_bytea_casts_round_trip_and_validate() {
    assert!(one::<bool>(
        "SELECT c::bytea::gcounter = c FROM (SELECT gcounter_increment(gcounter_increment(NULL, 5, 'a'), 3, 'b') c) s"
    ));
    assert!(one::<bool>(
        "SELECT c::bytea::pncounter = c FROM (SELECT pncounter_decrement(pncounter_increment(NULL, 5, 'a'), 2, 'b') c) s"
    ));
    // the stored bytes of a gcounter are not a pncounter (kind byte differs): 22P03
    Spi::run(
        "DO $$ BEGIN \
           PERFORM gcounter_increment(NULL, 1, 'a')::bytea::pncounter; \
           RAISE EXCEPTION 'gcounter bytes were accepted as a pncounter'; \
         EXCEPTION WHEN invalid_binary_representation THEN NULL; END $$",
    )
    .unwrap();
}
