// #[pg_test]s for counters; included into the tests module of src/lib.rs (no use lines here: the parent has them).
// SQL behaviour only: each test runs in one rolled-back transaction, so the worker never
// sees these rows. Worker, crash and concurrency behaviour: scripts/tests/counters_*.sh.

fn counters_value(name: &str, key: &str) -> i64 {
    one::<i64>(&format!("SELECT counter_value('{name}', '{key}')"))
}

#[pg_test]
fn counters_create_accepts_valid_names() {
    Spi::run("SELECT counter_create('likes')").unwrap();
    Spi::run("SELECT counter_create('_x9', 1)").unwrap();
    Spi::run("SELECT counter_create('a')").unwrap();
    let longest = format!("a{}", "b".repeat(47));
    Spi::run(&format!("SELECT counter_create('{longest}', 1024)")).unwrap();
    assert_eq!(one::<i64>("SELECT count(*) FROM counter_stats"), 4);
    assert_eq!(
        one::<i32>("SELECT shards FROM counter_stats WHERE name = 'likes'"),
        16
    );
    assert_eq!(
        one::<i32>("SELECT shards FROM counter_stats WHERE name = '_x9'"),
        1
    );
}

#[pg_test]
fn counters_create_rejects_bad_names() {
    let too_long = format!("a{}", "b".repeat(48));
    for bad in [
        "A",
        "Likes",
        "a; drop table x",
        "x'); drop table counter_totals; --",
        "1abc",
        "",
        "a-b",
        "a b",
        "abc\n",
        "caf\u{e9}",
        too_long.as_str(),
    ] {
        let sql = format!("SELECT counter_create({})", pg_quote(bad));
        assert_eq!(sqlstate(&sql), "22023", "{bad:?}");
        // the same check guards every other entry point
        let sql = format!("SELECT counter_value({}, 'k')", pg_quote(bad));
        assert_eq!(sqlstate(&sql), "22023", "{bad:?}");
        let sql = format!("SELECT counter_add({}, 'k')", pg_quote(bad));
        assert_eq!(sqlstate(&sql), "22023", "{bad:?}");
    }
    assert_eq!(sqlstate("SELECT counter_create(NULL)"), "22004");
    assert_eq!(sqlstate("SELECT counter_create('ok', 0)"), "22023");
    assert_eq!(
        sqlstate("SELECT counter_create('ok', 1025)"),
        "22023"
    );
    assert_eq!(
        sqlstate("SELECT counter_create('ok', NULL)"),
        "22023"
    );
    // nothing was created, and the injection attempt did not drop anything
    assert_eq!(one::<i64>("SELECT count(*) FROM counter_stats"), 0);
    assert_eq!(one::<i64>("SELECT count(*) FROM counter_totals"), 0);
}

/// A text literal for `s` (E'' form so a newline survives).
fn pg_quote(s: &str) -> String {
    format!(
        "E'{}'",
        s.replace('\\', "\\\\")
            .replace('\'', "\\'")
            .replace('\n', "\\n")
    )
}

#[pg_test]
fn counters_create_existing_name_is_42710() {
    Spi::run("SELECT counter_create('dup')").unwrap();
    assert_eq!(sqlstate("SELECT counter_create('dup')"), "42710");
    assert_eq!(
        sqlstate("SELECT counter_create('dup', 4)"),
        "42710"
    );
}

#[pg_test]
fn counters_unknown_counter_is_42704() {
    for sql in [
        "SELECT counter_add('nope', 'k')",
        "SELECT counter_value('nope', 'k')",
        "SELECT * FROM counter_values('nope', ARRAY['k'])",
        "SELECT counter_compact('nope')",
        "SELECT counter_set('nope', 'k', 1)",
        "SELECT counter_drop('nope')",
    ] {
        assert_eq!(sqlstate(sql), "42704", "{sql}");
    }
}

#[pg_test]
fn counters_nulls_are_22004() {
    Spi::run("SELECT counter_create('c')").unwrap();
    for sql in [
        "SELECT counter_add(NULL, 'k')",
        "SELECT counter_add('c', NULL)",
        "SELECT counter_add('c', 'k', NULL)",
        "SELECT counter_value(NULL, 'k')",
        "SELECT counter_value('c', NULL)",
        "SELECT * FROM counter_values('c', NULL)",
        "SELECT * FROM counter_values('c', ARRAY['a', NULL])",
        "SELECT counter_set('c', NULL, 1)",
        "SELECT counter_set('c', 'k', NULL)",
        "SELECT counter_drop(NULL)",
    ] {
        assert_eq!(sqlstate(sql), "22004", "{sql}");
    }
    // a NULL request_id just means "no dedupe"
    assert!(one::<bool>("SELECT counter_add('c', 'k', 1, NULL)"));
    assert!(one::<bool>("SELECT counter_add('c', 'k', 1, NULL)"));
    assert_eq!(counters_value("c", "k"), 2);
}

#[pg_test]
fn counters_add_and_read() {
    Spi::run("SELECT counter_create('likes')").unwrap();
    assert_eq!(counters_value("likes", "post1"), 0);
    assert!(one::<bool>("SELECT counter_add('likes', 'post1')"));
    assert!(one::<bool>("SELECT counter_add('likes', 'post1', 5)"));
    assert!(one::<bool>("SELECT counter_add('likes', 'post1', -2)"));
    assert!(one::<bool>("SELECT counter_add('likes', 'post2', 7)"));
    // keys are arbitrary text, including quotes and the empty string
    assert!(one::<bool>(
        "SELECT counter_add('likes', 'it''s; drop table x', 3)"
    ));
    assert!(one::<bool>("SELECT counter_add('likes', '', 1)"));
    assert_eq!(counters_value("likes", "post1"), 4);
    assert_eq!(counters_value("likes", "post2"), 7);
    assert_eq!(
        one::<i64>("SELECT counter_value('likes', 'it''s; drop table x')"),
        3
    );
    assert_eq!(counters_value("likes", ""), 1);
    assert_eq!(counters_value("likes", "Post1"), 0);
    // another counter is independent
    Spi::run("SELECT counter_create('views', 1)").unwrap();
    Spi::run("SELECT counter_add('views', 'post1', 100)").unwrap();
    assert_eq!(counters_value("likes", "post1"), 4);
    assert_eq!(counters_value("views", "post1"), 100);
}

#[pg_test]
fn counters_key_and_request_id_limits() {
    Spi::run("SELECT counter_create('c')").unwrap();
    assert_eq!(
        sqlstate("SELECT counter_add('c', repeat('k', 2000))"),
        "00000"
    );
    assert_eq!(
        sqlstate("SELECT counter_add('c', repeat('k', 2001))"),
        "22023"
    );
    assert_eq!(
        sqlstate("SELECT counter_value('c', repeat('k', 2001))"),
        "22023"
    );
    assert_eq!(
        sqlstate("SELECT counter_add('c', 'k', 1, repeat('r', 513))"),
        "22023"
    );
    assert_eq!(
        one::<i64>("SELECT counter_value('c', repeat('k', 2000))"),
        1
    );
}

#[pg_test]
fn counters_rollback_never_counts() {
    Spi::run("SELECT counter_create('c')").unwrap();
    Spi::run("SELECT counter_add('c', 'k', 10)").unwrap();
    // a rolled-back subtransaction (as a failed statement in a client transaction)
    Spi::run(
        "DO $$ BEGIN
           PERFORM counter_add('c', 'k', 1000);
           PERFORM counter_add('c', 'k', 1000, 'req-1');
           RAISE EXCEPTION 'abort';
         EXCEPTION WHEN raise_exception THEN NULL; END $$",
    )
    .unwrap();
    assert_eq!(counters_value("c", "k"), 10);
    // the rolled-back request id was not remembered either
    assert!(one::<bool>("SELECT counter_add('c', 'k', 1, 'req-1')"));
    assert_eq!(counters_value("c", "k"), 11);
    assert_eq!(one::<i64>("SELECT counter_compact()"), 2);
    assert_eq!(counters_value("c", "k"), 11);
}

#[pg_test]
fn counters_request_id_dedupes() {
    Spi::run("SELECT counter_create('c')").unwrap();
    Spi::run("SELECT counter_create('d')").unwrap();
    assert!(one::<bool>("SELECT counter_add('c', 'k', 5, 'order-42')"));
    assert!(!one::<bool>("SELECT counter_add('c', 'k', 5, 'order-42')"));
    // the request id is per counter, not per key
    assert!(!one::<bool>(
        "SELECT counter_add('c', 'other', 5, 'order-42')"
    ));
    assert!(one::<bool>("SELECT counter_add('d', 'k', 5, 'order-42')"));
    assert_eq!(counters_value("c", "k"), 5);
    assert_eq!(counters_value("c", "other"), 0);
    assert_eq!(counters_value("d", "k"), 5);
    // still deduped after compaction
    Spi::run("SELECT counter_compact()").unwrap();
    assert!(!one::<bool>("SELECT counter_add('c', 'k', 5, 'order-42')"));
    assert_eq!(counters_value("c", "k"), 5);
    // after the retention the id is forgotten (expired entries count as absent even
    // before the purge removes them)
    Spi::run("UPDATE counter_requests SET added_at = now() - interval '2 days'").unwrap();
    assert!(one::<bool>("SELECT counter_add('c', 'k', 5, 'order-42')"));
    assert_eq!(counters_value("c", "k"), 10);
    assert_eq!(one::<i64>("SELECT counter_purge_requests()"), 1); // d's entry
    assert_eq!(one::<i64>("SELECT count(*) FROM counter_requests"), 1);
    assert_eq!(one::<i64>("SELECT counter_purge_requests()"), 0);
}

#[pg_test]
fn counters_retention_reads_the_guc() {
    // The GUC (SIGHUP, so not SETtable here) prints with a unit ('1d'); a placeholder
    // set before the library is loaded is a bare number of seconds. Both parse.
    assert_eq!(
        one::<String>("SELECT current_setting('distributed_counter.dedupe_retention')"),
        "1d"
    );
    assert_eq!(one::<String>("SELECT _counter_retention()::text"), "1 day");
    for (shown, want) in [
        ("90s", "00:01:30"),
        ("86400", "24:00:00"),
        ("5min", "00:05:00"),
        ("2h", "02:00:00"),
    ] {
        assert_eq!(
            one::<String>(&format!("SELECT '{shown}'::interval::text")),
            want
        );
    }
}

#[pg_test]
fn counters_set_overrides_value() {
    Spi::run("SELECT counter_create('c')").unwrap();
    Spi::run("SELECT counter_add('c', 'k', 10)").unwrap();
    Spi::run("SELECT counter_set('c', 'k', 3)").unwrap();
    assert_eq!(counters_value("c", "k"), 3);
    Spi::run("SELECT counter_add('c', 'k', 2)").unwrap();
    assert_eq!(counters_value("c", "k"), 5);
    Spi::run("SELECT counter_compact()").unwrap();
    assert_eq!(counters_value("c", "k"), 5);
    assert_eq!(one::<i64>("SELECT count(*) FROM counter_pending"), 0);
    // a key never added, negative values, and repeated sets
    Spi::run("SELECT counter_set('c', 'new', -7)").unwrap();
    assert_eq!(counters_value("c", "new"), -7);
    Spi::run("SELECT counter_add('c', 'new', 1)").unwrap();
    Spi::run("SELECT counter_set('c', 'new', 100)").unwrap();
    Spi::run("SELECT counter_set('c', 'new', 100)").unwrap();
    assert_eq!(counters_value("c", "new"), 100);
    Spi::run("SELECT counter_compact('c')").unwrap();
    assert_eq!(counters_value("c", "new"), 100);
    assert_eq!(counters_value("c", "k"), 5);
}

#[pg_test]
fn counters_values_batch_read() {
    Spi::run("SELECT counter_create('c')").unwrap();
    Spi::run("SELECT counter_add('c', 'a', 1), counter_add('c', 'b', 2), counter_add('c', 'b', 3)")
        .unwrap();
    Spi::run("SELECT counter_compact()").unwrap();
    Spi::run("SELECT counter_add('c', 'a', 10)").unwrap();
    // in the order given, duplicates repeated, unknown keys 0
    let got: String = one(
        "SELECT string_agg(key || '=' || value, ',' ORDER BY ord)
           FROM counter_values('c', ARRAY['b', 'zz', 'a', 'b']) WITH ORDINALITY AS v(key, value, ord)",
    );
    assert_eq!(got, "b=5,zz=0,a=11,b=5");
    assert_eq!(
        one::<i64>("SELECT count(*) FROM counter_values('c', ARRAY[]::text[])"),
        0
    );
}

#[pg_test]
fn counters_compact_folds_exactly() {
    Spi::run("SELECT counter_create('c', 4)").unwrap();
    Spi::run("SELECT counter_create('d', 4)").unwrap();
    Spi::run("SELECT counter_add('c', 'k' || (i % 7), i) FROM generate_series(1, 500) i").unwrap();
    Spi::run("SELECT counter_add('d', 'k', 1) FROM generate_series(1, 30) i").unwrap();
    let before: i64 = one("SELECT sum(value)::int8 FROM counter_values('c', ARRAY['k0','k1','k2','k3','k4','k5','k6'])");
    assert_eq!(before, 500 * 501 / 2);
    // one batch of a given size, one counter only
    assert_eq!(one::<i64>("SELECT counter_compact_batch('c', 100)"), 100);
    assert_eq!(
        one::<i64>("SELECT pending_rows FROM counter_stats WHERE name = 'c'"),
        400
    );
    assert_eq!(one::<i64>("SELECT counter_compact('c')"), 400);
    assert_eq!(
        one::<i64>("SELECT pending_rows FROM counter_stats WHERE name = 'd'"),
        30
    );
    let after: i64 = one("SELECT sum(value)::int8 FROM counter_values('c', ARRAY['k0','k1','k2','k3','k4','k5','k6'])");
    assert_eq!(after, before);
    assert_eq!(one::<i64>("SELECT counter_compact()"), 30);
    assert_eq!(one::<i64>("SELECT counter_compact()"), 0);
    assert_eq!(counters_value("d", "k"), 30);
    assert_eq!(
        sqlstate("SELECT counter_compact_batch(NULL, 0)"),
        "22023"
    );
}

#[pg_test]
fn counters_stats_view() {
    Spi::run("SELECT counter_create('c', 8)").unwrap();
    let empty: String = one("SELECT format('%s %s %s %s %s %s %s', shards, keys, pending_rows, oldest_pending_age IS NULL, last_compaction IS NULL, compactions, rows_compacted) FROM counter_stats WHERE name = 'c'");
    assert_eq!(empty, "8 0 0 t t 0 0");
    Spi::run("SELECT counter_add('c', 'k' || (i % 3)) FROM generate_series(1, 9) i").unwrap();
    Spi::run("SELECT counter_compact()").unwrap();
    Spi::run("SELECT counter_add('c', 'k0'), counter_add('c', 'new')").unwrap();
    let s: String = one("SELECT format('%s %s %s %s %s %s', keys, pending_rows, oldest_pending_age >= '0'::interval, last_compaction IS NOT NULL, compactions, rows_compacted) FROM counter_stats WHERE name = 'c'");
    assert_eq!(s, "4 2 t t 1 9");
}

#[pg_test]
fn counters_drop_and_recreate() {
    Spi::run("SELECT counter_create('c')").unwrap();
    Spi::run("SELECT counter_add('c', 'k', 5, 'r1')").unwrap();
    Spi::run("SELECT counter_compact()").unwrap();
    Spi::run("SELECT counter_add('c', 'k', 5)").unwrap();
    Spi::run("SELECT counter_drop('c')").unwrap();
    assert_eq!(sqlstate("SELECT counter_value('c', 'k')"), "42704");
    assert_eq!(one::<i64>("SELECT count(*) FROM counter_totals"), 0);
    assert_eq!(one::<i64>("SELECT count(*) FROM counter_pending"), 0);
    assert_eq!(one::<i64>("SELECT count(*) FROM counter_requests"), 0);
    // a new counter of the same name starts from zero
    Spi::run("SELECT counter_create('c')").unwrap();
    assert_eq!(counters_value("c", "k"), 0);
    assert!(one::<bool>("SELECT counter_add('c', 'k', 1, 'r1')"));
    assert_eq!(counters_value("c", "k"), 1);
}

#[pg_test]
fn counters_orphan_rows_are_not_folded() {
    // What a counter_add racing a counter_drop leaves behind: a pending row whose
    // counter is gone. Compaction deletes it without folding it anywhere.
    Spi::run("SELECT counter_create('c')").unwrap();
    Spi::run(
        "INSERT INTO counter_pending (counter_id, shard, key, delta) VALUES (999999, 0, 'k', 5)",
    )
    .unwrap();
    assert_eq!(one::<i64>("SELECT counter_compact()"), 1);
    assert_eq!(one::<i64>("SELECT count(*) FROM counter_pending"), 0);
    assert_eq!(one::<i64>("SELECT count(*) FROM counter_totals"), 0);
}

#[pg_test]
fn counters_int8_overflow_is_22003_and_does_not_stall_compaction() {
    Spi::run("SELECT counter_create('c')").unwrap();
    Spi::run("SELECT counter_add('c', 'big', 9223372036854775807)").unwrap();
    Spi::run("SELECT counter_add('c', 'big', 9223372036854775807)").unwrap();
    Spi::run("SELECT counter_add('c', 'small', 1)").unwrap();
    assert_eq!(
        sqlstate("SELECT counter_value('c', 'big')"),
        "22003"
    );
    assert_eq!(one::<i64>("SELECT counter_compact()"), 3);
    assert_eq!(
        sqlstate("SELECT counter_value('c', 'big')"),
        "22003"
    );
    Spi::run("SELECT counter_add('c', 'big', -9223372036854775807)").unwrap();
    assert_eq!(counters_value("c", "big"), i64::MAX);
    assert_eq!(counters_value("c", "small"), 1);
}

#[pg_test]
fn counters_reads_are_stable_functions_of_one_snapshot() {
    // honest labels: reads STABLE + PARALLEL RESTRICTED (a buffered counter's reads add
    // the open transaction's own adds, which live in its backend), writes VOLATILE
    let labels: String = one(
        "SELECT string_agg(proname || ':' || provolatile::text || proparallel::text, ' ' ORDER BY proname)
           FROM pg_proc WHERE proname IN ('counter_value', 'counter_values', 'counter_window',
                                          'counter_series', 'counter_top', 'counter_add', 'counter_set')",
    );
    assert_eq!(
        labels,
        "counter_add:vu counter_series:sr counter_set:vu counter_top:sr counter_value:sr counter_values:sr counter_window:sr"
    );
}

#[pg_test]
fn counters_tables_are_dumped() {
    let dumped: String = one("SELECT string_agg(c.relname, ',' ORDER BY c.relname)
           FROM pg_extension e, unnest(e.extconfig) AS cfg(oid) JOIN pg_class c ON c.oid = cfg.oid
          WHERE e.extname = 'distributed_counter'");
    for t in [
        "counter_id_seq",
        "counter_pending",
        "counter_registry",
        "counter_requests",
        "counter_totals",
    ] {
        assert!(dumped.split(',').any(|d| d == t), "{t} not in {dumped}");
    }
}

/// The C fast path of counter_add writes exactly the row the SQL path writes.
#[pg_test]
fn counters_add_fast_path_writes_the_sql_paths_row() {
    Spi::run("SELECT counter_create('fast', 7)").unwrap();
    let long_key = "x".repeat(2000);
    for (key, delta) in [("k", 1i64), ("", -5), ("caf\u{e9} \u{1f600}", i64::MAX), (long_key.as_str(), 0)] {
        let k = pg_quote(key);
        Spi::run(&format!("SELECT counter_add('fast', {k}, {delta})")).unwrap();
        Spi::run(&format!("SELECT _counter_add_sql('fast', {k}, {delta}, NULL, NULL)")).unwrap();
        // two rows, identical in every column
        let rows = one::<i64>(&format!(
            "SELECT count(*) FROM (SELECT DISTINCT counter_id, shard, key, delta, added_at, p.bucket
               FROM counter_pending p JOIN counter_registry r ON r.id = p.counter_id
              WHERE r.name = 'fast' AND p.key = {k}) d"
        ));
        assert_eq!(rows, 1, "{key:?}");
        assert_eq!(
            one::<i64>(&format!("SELECT count(*) FROM counter_pending WHERE key = {k} AND shard = pg_backend_pid() % 7 AND added_at = now()")),
            2
        );
    }
    // A bucketed counter: both paths put an add in the same bucket, from `at` or from the
    // transaction's start, also before 1970 and at the edges of a bucket.
    Spi::run("SELECT counter_create('fastb', 3, bucket => '1 minute')").unwrap();
    for at in [
        "NULL",
        "'2026-03-08 06:59:59.999999+00'",
        "'2026-03-08 07:00:00+00'",
        "'1969-12-31 23:59:30+00'",
        "'1900-01-01 00:00:00.000001+00'",
        "'4000-06-01 12:34:56+05:30'",
    ] {
        Spi::run(&format!("SELECT counter_add('fastb', 'k', 1, NULL, {at})")).unwrap();
        Spi::run(&format!("SELECT _counter_add_sql('fastb', 'k', 1, NULL, {at})")).unwrap();
        let buckets: Vec<i64> = Spi::connect(|c| {
            c.select(
                "SELECT p.bucket FROM counter_pending p JOIN counter_registry r ON r.id = p.counter_id
                  WHERE r.name = 'fastb' ORDER BY p.bucket",
                None,
                &[],
            )
            .unwrap()
            .map(|r| r.get::<i64>(1).unwrap().unwrap())
            .collect()
        });
        let want: i64 = one(&format!(
            "SELECT (extract(epoch FROM date_trunc('minute', COALESCE({at}, now()) AT TIME ZONE 'UTC')) / 60)::int8"
        ));
        assert_eq!(buckets, vec![want, want], "at {at}");
        Spi::run("DELETE FROM counter_pending p USING counter_registry r WHERE r.id = p.counter_id AND r.name = 'fastb'").unwrap();
    }
    // which path served: PL/pgSQL calls of _counter_add_sql in this transaction
    Spi::run("SET LOCAL track_functions = 'pl'").unwrap();
    let sql_calls = || {
        one::<i64>(
            "SELECT coalesce(sum(calls), 0)::int8 FROM pg_stat_xact_user_functions
              WHERE funcname = '_counter_add_sql'",
        )
    };
    let before = sql_calls();
    Spi::run("SELECT counter_add('fast', 'k'), counter_add('fast', 'k', 2)").unwrap();
    assert_eq!(sql_calls(), before, "the common call must not take the SQL path");
    Spi::run("SELECT counter_add('fast', 'k', 1, 'req-1')").unwrap();
    assert_eq!(sql_calls(), before + 1, "a request_id goes through the SQL path");
    // the index finds what the fast path inserted (index entries were written)
    Spi::run("SET LOCAL enable_seqscan = off").unwrap();
    assert_eq!(one::<i64>("SELECT counter_value('fast', '')"), -10);
    assert_eq!(
        one::<i64>("SELECT count(*) FROM counter_pending WHERE counter_id = (SELECT id FROM counter_registry WHERE name = 'fast') AND key = 'k'"),
        5
    );
    assert_eq!(one::<i64>("SELECT counter_value('fast', 'k')"), 6);
}

/// A user's trigger, RLS policy or CHECK constraint on counter_pending is honoured: the
/// call goes through the SQL path (the fast path only serves the stock table).
#[pg_test]
fn counters_add_honours_triggers_policies_and_checks() {
    Spi::run("SELECT counter_create('guarded')").unwrap();
    Spi::run(
        "CREATE TABLE pg_temp.audit (key text);
         CREATE FUNCTION pg_temp.audit_fn() RETURNS trigger LANGUAGE plpgsql AS
           $$ BEGIN INSERT INTO pg_temp.audit VALUES (NEW.key); RETURN NEW; END $$;
         CREATE TRIGGER audit AFTER INSERT ON counter_pending FOR EACH ROW EXECUTE FUNCTION pg_temp.audit_fn()",
    )
    .unwrap();
    Spi::run("SELECT counter_add('guarded', 'a', 2)").unwrap();
    assert_eq!(one::<i64>("SELECT count(*) FROM pg_temp.audit WHERE key = 'a'"), 1);
    Spi::run("DROP TRIGGER audit ON counter_pending").unwrap();
    Spi::run("ALTER TABLE counter_pending ADD CONSTRAINT small CHECK (delta < 100)").unwrap();
    assert_eq!(sqlstate("SELECT counter_add('guarded', 'a', 100)"), "23514");
    Spi::run("ALTER TABLE counter_pending DROP CONSTRAINT small").unwrap();
    assert_eq!(counters_value("guarded", "a"), 2);
    // after the layout is back to stock, the fast path serves again (no trigger fires)
    Spi::run("SELECT counter_add('guarded', 'a', 3)").unwrap();
    assert_eq!(counters_value("guarded", "a"), 5);
    assert_eq!(one::<i64>("SELECT count(*) FROM pg_temp.audit"), 1);
}

/// Privileges are those of the INSERT the SQL path runs: no INSERT on counter_pending,
/// or no SELECT on counter_registry, is 42501; granting them makes adds work.
#[pg_test]
fn counters_add_checks_privileges() {
    Spi::run("SELECT counter_create('priv')").unwrap();
    assert_eq!(sqlstate("SELECT 1"), "00000");
    Spi::run("CREATE ROLE dc_counter_writer").unwrap();
    Spi::run(
        "DO $$ BEGIN EXECUTE format('GRANT USAGE ON SCHEMA %I TO dc_counter_writer',
           (SELECT n.nspname FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
             WHERE e.extname = 'distributed_counter')); END $$",
    )
    .unwrap();
    Spi::run("SET LOCAL ROLE dc_counter_writer").unwrap();
    assert_eq!(sqlstate("SELECT counter_add('priv', 'k')"), "42501");
    Spi::run("RESET ROLE").unwrap();
    Spi::run("GRANT SELECT ON counter_registry TO dc_counter_writer").unwrap();
    Spi::run("SET LOCAL ROLE dc_counter_writer").unwrap();
    assert_eq!(sqlstate("SELECT counter_add('priv', 'k')"), "42501");
    Spi::run("RESET ROLE").unwrap();
    Spi::run("GRANT INSERT ON counter_pending TO dc_counter_writer").unwrap();
    Spi::run("SET LOCAL ROLE dc_counter_writer").unwrap();
    assert_eq!(sqlstate("SELECT counter_add('priv', 'k', 4)"), "00000");
    Spi::run("RESET ROLE").unwrap();
    assert_eq!(counters_value("priv", "k"), 4);
}

/// A read-only transaction cannot add (25006, as the SQL INSERT says); reads still work.
#[pg_test]
fn counters_add_in_a_read_only_transaction_is_25006() {
    Spi::run("SELECT counter_create('ro')").unwrap();
    Spi::run("SELECT counter_add('ro', 'k', 2)").unwrap();
    assert_eq!(sqlstate("SELECT 1"), "00000"); // creates the helper first
    Spi::run("SET LOCAL transaction_read_only = on").unwrap();
    assert_eq!(sqlstate("SELECT counter_add('ro', 'k')"), "25006");
    assert_eq!(sqlstate("SELECT counter_add('ro', 'k', 1, 'req')"), "25006");
    assert_eq!(counters_value("ro", "k"), 2);
}

/// Counter names are found whatever the database's collation (the registry's unique
/// index is probed with the column's collation), and only exact matches count.
#[pg_test]
fn counters_add_finds_names_exactly() {
    for name in ["a", "a_", "a_b", "ab", "b", "z9", "_"] {
        Spi::run(&format!("SELECT counter_create('{name}')")).unwrap();
    }
    for (i, name) in ["a", "a_", "a_b", "ab", "b", "z9", "_"].iter().enumerate() {
        for _ in 0..=i {
            Spi::run(&format!("SELECT counter_add('{name}', 'k')")).unwrap();
        }
    }
    for (i, name) in ["a", "a_", "a_b", "ab", "b", "z9", "_"].iter().enumerate() {
        assert_eq!(counters_value(name, "k"), i as i64 + 1, "{name}");
    }
    assert_eq!(sqlstate("SELECT counter_add('a_c', 'k')"), "42704");
    assert_eq!(sqlstate("SELECT counter_add('A', 'k')"), "22023");
}

/// counter_add's per-backend (id, shards) cache follows every change of the registry:
/// counter_drop, a re-create, a user's own DELETE/UPDATE/TRUNCATE, and a rolled-back
/// subtransaction. After each change the next add lands where the SQL path would put it
/// (or fails like it), never under a stale id or shard count.
#[pg_test]
fn counters_add_cache_follows_registry_changes() {
    let id = || one::<i32>("SELECT id FROM counter_registry WHERE name = 'cc'");
    let shards_used = || {
        one::<i64>(
            "SELECT count(DISTINCT shard) FROM counter_pending \
             WHERE counter_id = (SELECT id FROM counter_registry WHERE name = 'cc')",
        )
    };
    let max_shard = || {
        one::<i32>(
            "SELECT max(shard)::int4 FROM counter_pending \
             WHERE counter_id = (SELECT id FROM counter_registry WHERE name = 'cc')",
        )
    };
    Spi::run("SELECT counter_create('cc', 1024)").unwrap();
    Spi::run("SELECT counter_add('cc', 'k')").unwrap(); // cached now
    let first = id();
    // drop: the cached entry must not be used
    Spi::run("SELECT counter_drop('cc')").unwrap();
    assert_eq!(sqlstate("SELECT counter_add('cc', 'k')"), "42704");
    // re-create with one shard: a new id, and shard 0 only
    Spi::run("SELECT counter_create('cc', 1)").unwrap();
    Spi::run("SELECT counter_add('cc', 'k', 2)").unwrap();
    assert_ne!(id(), first);
    assert_eq!(counters_value("cc", "k"), 2);
    assert_eq!(max_shard(), 0);
    // a user's UPDATE of shards: adds now spread over 1024 shards (pid % 1024)
    Spi::run("UPDATE counter_registry SET shards = 1024 WHERE name = 'cc'").unwrap();
    Spi::run("SELECT counter_add('cc', 'k', 3)").unwrap();
    let pid = one::<i32>("SELECT pg_backend_pid()");
    assert_eq!(max_shard(), pid % 1024);
    assert_eq!(shards_used(), if pid % 1024 == 0 { 1 } else { 2 });
    assert_eq!(counters_value("cc", "k"), 5);
    // a user's UPDATE of the name: the old name is unknown, the new one works
    Spi::run("UPDATE counter_registry SET name = 'cd' WHERE name = 'cc'").unwrap();
    assert_eq!(sqlstate("SELECT counter_add('cc', 'k')"), "42704");
    Spi::run("SELECT counter_add('cd', 'k')").unwrap();
    assert_eq!(counters_value("cd", "k"), 6);
    // a user's DELETE, then a TRUNCATE
    Spi::run("SELECT counter_create('cc')").unwrap();
    Spi::run("SELECT counter_add('cc', 'k')").unwrap();
    Spi::run("DELETE FROM counter_registry WHERE name = 'cc'").unwrap();
    assert_eq!(sqlstate("SELECT counter_add('cc', 'k')"), "42704");
    Spi::run("SELECT counter_add('cd', 'k')").unwrap();
    Spi::run("TRUNCATE counter_registry").unwrap();
    assert_eq!(sqlstate("SELECT counter_add('cd', 'k')"), "42704");
    // a counter created in a subtransaction that rolls back is forgotten with it
    Spi::run("SELECT counter_create('ce')").unwrap();
    Spi::run(
        "DO $$ BEGIN
             BEGIN
                 PERFORM counter_drop('ce');
                 PERFORM counter_create('ce', 1);
                 PERFORM counter_add('ce', 'k');
                 RAISE EXCEPTION 'roll back';
             EXCEPTION WHEN raise_exception THEN NULL;
             END;
         END $$",
    )
    .unwrap();
    Spi::run("SELECT counter_add('ce', 'k', 7)").unwrap();
    assert_eq!(counters_value("ce", "k"), 7);
    // ... and so is one that only existed in it
    Spi::run(
        "DO $$ BEGIN
             BEGIN
                 PERFORM counter_create('cf', 1);
                 PERFORM counter_add('cf', 'k');
                 RAISE EXCEPTION 'roll back';
             EXCEPTION WHEN raise_exception THEN NULL;
             END;
         END $$",
    )
    .unwrap();
    assert_eq!(sqlstate("SELECT counter_add('cf', 'k')"), "42704");
}

/// Compaction deletes the rows it picked by TID: the rows a batch reads stay
/// proportional to the batch, also with plans cached while the pending table was empty
/// (such a plan once tested every row against the whole TID array in a sequential
/// scan). seq_tup_read counts rows returned by sequential scans.
#[pg_test]
fn counters_compaction_reads_proportional_to_the_batch() {
    Spi::run("SELECT counter_create('tids', 4)").unwrap();
    Spi::run("ANALYZE counter_pending").unwrap();
    // plans cached while the table is empty (the generic plan after 5 calls)
    for _ in 0..8 {
        assert_eq!(one::<i64>("SELECT counter_compact_batch(NULL, 100)"), 0);
    }
    Spi::run(
        "INSERT INTO counter_pending (counter_id, shard, key, delta)
         SELECT (SELECT id FROM counter_registry WHERE name = 'tids'), (i % 4)::int2, 'k' || (i % 7), 1
         FROM generate_series(1, 4000) i",
    )
    .unwrap();
    let read = || {
        one::<i64>(
            "SELECT coalesce(seq_tup_read, 0) FROM pg_stat_xact_user_tables WHERE relname = 'counter_pending'",
        )
    };
    let before = read();
    let mut moved = 0;
    for _ in 0..40 {
        moved += one::<i64>("SELECT counter_compact_batch(NULL, 100)");
    }
    assert_eq!(moved, 4000);
    let scanned = read() - before;
    // each batch's pick reads its 100 rows; a per-row TID-array filter would read all
    // remaining rows in every batch (about 80,000 here)
    assert!(scanned <= 2 * 4000, "compaction read {scanned} rows to move 4000");
    assert_eq!(counters_value("tids", "k0"), 571);
}

/// Without Citus, counter_distribute() refuses with 55000 and says how to set Citus up;
/// the install stays local (the fast path and counter_stats keep working).
#[pg_test]
fn counter_distribute_needs_citus() {
    let e = sql_error("SELECT counter_distribute()");
    assert_eq!(e.state, "55000");
    assert!(e.hint.contains("CREATE EXTENSION citus"), "{}", e.hint);
    assert!(!one::<bool>("SELECT _counter_distributed()"));
    Spi::run("SELECT counter_create('cd_local', 2)").unwrap();
    assert!(one::<bool>("SELECT counter_add('cd_local', 'k', 5)"));
    assert_eq!(one::<i64>("SELECT counter_value('cd_local', 'k')"), 5);
    assert_eq!(
        one::<i64>("SELECT pending_rows FROM counter_stats WHERE name = 'cd_local'"),
        1
    );
}

#[pg_test]
fn counters_overflow_names_the_counter_and_the_key() {
    Spi::run("SELECT counter_create('big')").unwrap();
    Spi::run("SELECT counter_add('big', 'k', 9223372036854775807), counter_add('big', 'k', 1)").unwrap();
    Spi::run("SELECT counter_add('big', 'ok', 5)").unwrap();
    // before compaction (pending rows) and after (a numeric total beyond int8)
    for compacted in [false, true] {
        if compacted {
            Spi::run("SELECT counter_compact('big')").unwrap();
        }
        for sql in [
            "SELECT counter_value('big', 'k')",
            "SELECT * FROM counter_values('big', ARRAY['ok', 'k'])",
        ] {
            let e = sql_error(sql);
            assert_eq!(e.state, "22003", "{sql}");
            assert!(
                e.message.contains("\"big\"") && e.message.contains("\"k\"") && e.message.contains("9223372036854775808"),
                "{sql}: {}",
                e.message
            );
            assert!(e.hint.contains("counter_set"), "{sql}: {}", e.hint);
        }
        assert_eq!(counters_value("big", "ok"), 5, "other keys still read");
    }
    // and a correction brings it back
    Spi::run("SELECT counter_set('big', 'k', 7)").unwrap();
    assert_eq!(counters_value("big", "k"), 7);
    assert_eq!(
        one::<i64>("SELECT sum(value)::int8 FROM counter_values('big', ARRAY['ok', 'k'])"),
        12
    );
}

/// counter_stats.keys equals the number of distinct keys whatever mix of pending rows,
/// folded totals, counter_set on new and old keys and partial compactions produced it
/// (the registry keeps the count of keys with a total row; the view adds pending-only
/// keys).
#[pg_test]
fn counters_stats_keys_follow_every_path() {
    Spi::run("SELECT counter_create('kc', 4), counter_create('kc_other', 4)").unwrap();
    let keys = |name: &str| one::<i64>(&format!("SELECT keys FROM counter_stats WHERE name = '{name}'"));
    let truth = |name: &str| {
        one::<i64>(&format!(
            "SELECT count(*) FROM (SELECT t.key FROM counter_totals t JOIN counter_registry r ON r.id = t.counter_id \
             WHERE r.name = '{name}' UNION SELECT p.key FROM counter_pending p JOIN counter_registry r \
             ON r.id = p.counter_id WHERE r.name = '{name}') k"
        ))
    };
    let mut seed = 7u64;
    for round in 0..12 {
        for _ in 0..40 {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let key = (seed >> 33) % 60;
            match (seed >> 20) % 6 {
                0 => Spi::run(&format!("SELECT counter_set('kc', 'k{key}', {})", (seed >> 40) % 9)).unwrap(),
                1 => Spi::run(&format!("SELECT counter_add('kc_other', 'k{key}')")).unwrap(),
                _ => Spi::run(&format!("SELECT counter_add('kc', 'k{key}', 2)")).unwrap(),
            }
        }
        match round % 3 {
            0 => Spi::run("SELECT counter_compact_batch('kc', 7)").unwrap(),
            1 => Spi::run("SELECT counter_compact()").unwrap(),
            _ => {}
        }
        assert_eq!(keys("kc"), truth("kc"), "round {round}");
        assert_eq!(keys("kc_other"), truth("kc_other"), "round {round}");
    }
    // a dropped and re-created counter starts from zero keys
    Spi::run("SELECT counter_drop('kc'), counter_create('kc')").unwrap();
    assert_eq!(keys("kc"), 0);
}

/// Bucketed counters: bad buckets, retentions, modes, windows and series are 22023 (NULL
/// widths 22004), and a plain counter has no windows.
#[pg_test]
fn counters_buckets_reject_bad_arguments() {
    for bad in [
        "counter_create('b1', bucket => '2 minutes')",
        "counter_create('b1', bucket => '1 month')",
        "counter_create('b1', bucket => '0 seconds')",
        "counter_create('b1', bucket => '1 hour', retention => '30 minutes')",
        "counter_create('b1', bucket => '1 hour', retention => '1 year')",
        "counter_create('b1', bucket => '1 hour', retention => '36501 days')",
        "counter_create('b1', retention => '1 day')",
        "counter_create('b1', mode => 'eventual')",
        "counter_create('b1', mode => NULL)",
    ] {
        assert_eq!(sql_error(&format!("SELECT {bad}")).state, "22023", "{bad}");
    }
    Spi::run("SELECT counter_create('b1', bucket => '60 seconds', retention => '2 hours')").unwrap();
    Spi::run("SELECT counter_create('plain1')").unwrap();
    assert_eq!(
        one::<String>("SELECT bucket || ' ' || retention || ' ' || bucket_us FROM counter_registry WHERE name = 'b1'"),
        "00:01:00 02:00:00 60000000"
    );
    for bad in [
        "counter_window('b1', 'k', '90 seconds')",
        "counter_window('b1', 'k', '0 minutes')",
        "counter_window('b1', 'k', '-5 minutes')",
        "counter_window('b1', 'k', '1 mon')",
        "counter_window('b1', 'k', '5 minutes', 'infinity')",
        "counter_window('plain1', 'k', '1 minute')",
        "counter_series('plain1', 'k', now(), now() + interval '1 hour')",
        "counter_series('b1', 'k', '-infinity', now())",
        "counter_series('b1', 'k', now(), now() + interval '2 years')",
        "counter_top('b1', 0)",
        "counter_top('b1', NULL)",
        "counter_top('b1', 5, '90 seconds')",
        "counter_top('plain1', 5, '1 minute')",
        "counter_add('b1', 'k', 1, NULL, 'infinity')",
    ] {
        assert_eq!(sql_error(&format!("SELECT * FROM {bad}")).state, "22023", "{bad}");
    }
    assert_eq!(sql_error("SELECT counter_window('b1', 'k', NULL)").state, "22004");
    assert_eq!(sql_error("SELECT counter_set('b1', 'k', 5)").state, "0A000");
    assert_eq!(sql_error("SELECT counter_window('nope', 'k', '1 minute')").state, "42704");
    assert_eq!(sql_error("SELECT * FROM counter_top('nope')").state, "42704");
    // an empty range is no rows; a plain counter ignores `at`
    assert_eq!(one::<i64>("SELECT count(*) FROM counter_series('b1', 'k', now(), now())"), 0);
    Spi::run("SELECT counter_add('plain1', 'k', 5, NULL, '1999-01-01')").unwrap();
    assert_eq!(one::<i64>("SELECT counter_value('plain1', 'k')"), 5);
    assert_eq!(
        one::<i64>("SELECT p.bucket FROM counter_pending p JOIN counter_registry r ON r.id = p.counter_id WHERE r.name = 'plain1'"),
        0
    );
}

/// counter_top of a plain counter: exact with pending rows, after compaction, and with a
/// mix (keys with both), ties by key, negative values, against GROUP BY on a ledger.
#[pg_test]
fn counters_top_is_exact() {
    Spi::run("SELECT counter_create('lb')").unwrap();
    Spi::run(
        "CREATE TEMP TABLE lb_ledger AS SELECT 'u' || (i % 37) AS key, ((i * 7919) % 23 - 5)::int8 AS delta
           FROM generate_series(1, 3000) i",
    )
    .unwrap();
    let check = |label: &str| {
        for n in [1, 3, 10, 40] {
            let got: String = one(&format!(
                "SELECT string_agg(key || '=' || value, ',' ORDER BY ord) FROM counter_top('lb', {n}) WITH ORDINALITY t(key, value, ord)"
            ));
            let want: String = one(&format!(
                "SELECT string_agg(key || '=' || s, ',' ORDER BY s DESC, key) FROM
                   (SELECT key, sum(delta) AS s FROM lb_ledger GROUP BY key ORDER BY s DESC, key LIMIT {n}) x"
            ));
            assert_eq!(got, want, "{label}, n = {n}");
        }
    };
    Spi::run("SELECT count(counter_add('lb', key, delta)) FROM lb_ledger WHERE key < 'u2'").unwrap();
    Spi::run("SELECT counter_compact('lb')").unwrap();
    Spi::run("SELECT count(counter_add('lb', key, delta)) FROM lb_ledger WHERE key >= 'u2'").unwrap();
    check("totals and pending");
    // ties: three keys at the top with one value
    Spi::run("INSERT INTO lb_ledger VALUES ('tie_c', 100000), ('tie_a', 100000), ('tie_b', 100000)").unwrap();
    Spi::run("SELECT counter_add('lb', 'tie_c', 100000), counter_add('lb', 'tie_a', 100000)").unwrap();
    Spi::run("SELECT counter_compact('lb')").unwrap();
    Spi::run("SELECT counter_add('lb', 'tie_b', 100000)").unwrap();
    check("ties");
    // a key that falls: pending rows below its stored total
    Spi::run("INSERT INTO lb_ledger VALUES ('tie_a', -200000)").unwrap();
    Spi::run("SELECT counter_add('lb', 'tie_a', -200000)").unwrap();
    check("a falling key");
    Spi::run("SELECT counter_compact('lb')").unwrap();
    check("compacted");
}

/// A bucketed counter with stored buckets past the retention that are not deleted yet
/// (the worker may not have run since they expired): counter_value, counter_values and
/// counter_top leave them out, exactly, against a ledger; compaction deletes them and
/// keeps the totals equal to the sum of the buckets.
#[pg_test]
fn counters_buckets_past_retention_are_left_out() {
    Spi::run("SELECT counter_create('ret', bucket => '1 minute', retention => '5 minutes')").unwrap();
    // ledger times relative to the statement's time, which reads use for the retention
    Spi::run(
        "CREATE TEMP TABLE ret_ledger AS
         SELECT 'k' || (i % 7) AS key, (i % 5 - 1)::int8 AS delta,
                statement_timestamp() - (i % 4) * interval '1 minute' AS at
         FROM generate_series(1, 700) i",
    )
    .unwrap();
    Spi::run("SELECT count(counter_add('ret', key, delta, NULL, at)) FROM ret_ledger").unwrap();
    Spi::run("SELECT counter_compact('ret')").unwrap();
    // Buckets 8 to 12 minutes old, stored as compaction would have stored them before
    // they expired (bucket rows and their sum in the totals), and pending adds to them.
    Spi::run(
        "CREATE TEMP TABLE ret_old AS
         SELECT 'k' || (i % 9) AS key, (10 * i)::int8 AS delta,
                statement_timestamp() - (8 + i % 5) * interval '1 minute' AS at
         FROM generate_series(1, 40) i",
    )
    .unwrap();
    Spi::run(
        "WITH r AS (SELECT id FROM counter_registry WHERE name = 'ret'),
              b AS (INSERT INTO counter_buckets
                    SELECT r.id, o.key, _counter_bucket(o.at, 60000000), sum(o.delta)
                    FROM ret_old o, r GROUP BY 1, 2, 3 RETURNING counter_id, key, value),
              t AS (INSERT INTO counter_totals AS t SELECT counter_id, key, sum(value) FROM b GROUP BY 1, 2
                    ON CONFLICT (counter_id, key) DO UPDATE SET value = t.value + excluded.value
                    RETURNING t.counter_id, t.xmax = 0 AS inserted)
         UPDATE counter_registry r SET keys = r.keys + (SELECT count(*) FROM t WHERE t.inserted)
         WHERE r.name = 'ret'",
    )
    .unwrap();
    Spi::run("SELECT count(counter_add('ret', key, 1000, NULL, at)) FROM ret_old").unwrap();
    let check = |label: &str| {
        let bad: i64 = one(
            "SELECT count(*) FROM (SELECT key, sum(delta) AS s FROM ret_ledger GROUP BY key
                                   UNION ALL SELECT key, 0 FROM ret_old) l
             WHERE counter_value('ret', l.key) <> COALESCE((SELECT sum(delta) FROM ret_ledger x WHERE x.key = l.key), 0)
                OR (SELECT value FROM counter_values('ret', ARRAY[l.key])) <> COALESCE((SELECT sum(delta) FROM ret_ledger x WHERE x.key = l.key), 0)",
        );
        assert_eq!(bad, 0, "{label}: counter_value");
        let got: String = one(
            "SELECT string_agg(key || '=' || value, ',' ORDER BY ord) FROM counter_top('ret', 4) WITH ORDINALITY t(key, value, ord)",
        );
        let want: String = one(
            "SELECT string_agg(key || '=' || s, ',' ORDER BY s DESC, key) FROM (
               SELECT key, sum(s) AS s FROM (SELECT key, delta AS s FROM ret_ledger UNION ALL SELECT key, 0 FROM ret_old) u
               GROUP BY key ORDER BY s DESC, key LIMIT 4) x",
        );
        assert_eq!(got, want, "{label}: counter_top");
        let windowed: String = one(
            "SELECT string_agg(key || '=' || value, ',' ORDER BY ord) FROM counter_top('ret', 3, '10 minutes') WITH ORDINALITY t(key, value, ord)",
        );
        let want: String = one(
            "SELECT string_agg(key || '=' || s, ',' ORDER BY s DESC, key) FROM (
               SELECT key, sum(delta) AS s FROM ret_ledger GROUP BY key ORDER BY s DESC, key LIMIT 3) x",
        );
        assert_eq!(windowed, want, "{label}: windowed counter_top");
    };
    check("expired buckets stored, and pending adds to them");
    Spi::run("SELECT counter_compact('ret')").unwrap();
    let stored_expired: i64 = one(
        "SELECT count(*) FROM counter_buckets b JOIN counter_registry r ON r.id = b.counter_id
          WHERE r.name = 'ret' AND b.bucket < _counter_horizon(r.retention, r.bucket_us)",
    );
    assert_eq!(stored_expired, 0, "compaction kept buckets past the retention");
    let off: i64 = one(
        "SELECT count(*) FROM counter_totals t JOIN counter_registry r ON r.id = t.counter_id
          WHERE r.name = 'ret' AND t.value <> (SELECT sum(b.value) FROM counter_buckets b
                                               WHERE b.counter_id = t.counter_id AND b.key = t.key)",
    );
    assert_eq!(off, 0, "totals differ from their buckets");
    let keys: i64 = one(
        "SELECT keys - (SELECT count(*) FROM counter_totals t WHERE t.counter_id = r.id) FROM counter_registry r WHERE r.name = 'ret'",
    );
    assert_eq!(keys, 0, "the registry's key count");
    check("compacted");
}

/// Buffered counters outside the database the worker serves (the tests' database): the
/// mode is recorded and shown, and every add is a durable row, so nothing can wait in a
/// buffer that no worker flushes. (Buffering itself, flushes, shutdowns and crashes:
/// scripts/tests/counters_buffered.sh, in the worker's database.)
#[pg_test]
fn counters_buffered_elsewhere_are_durable() {
    Spi::run("SELECT counter_create('bf', mode => 'buffered')").unwrap();
    Spi::run("SELECT counter_create('bfw', bucket => '1 minute', retention => '1 hour', mode => 'buffered')")
        .unwrap();
    assert_eq!(
        one::<String>("SELECT string_agg(name || '=' || mode, ',' ORDER BY name) FROM counter_stats"),
        "bf=buffered,bfw=buffered"
    );
    for i in 1..=5 {
        Spi::run(&format!("SELECT counter_add('bf', 'k', {i})")).unwrap();
        Spi::run(&format!("SELECT counter_add('bfw', 'k', {i})")).unwrap();
    }
    let id = one::<i32>("SELECT id FROM counter_registry WHERE name = 'bf'");
    assert_eq!(
        one::<i64>(&format!(
            "SELECT count(*) FROM counter_pending WHERE counter_id = {id}"
        )),
        5
    );
    assert_eq!(counters_value("bf", "k"), 15);
    assert_eq!(one::<i64>("SELECT counter_window('bfw', 'k', '1 hour')"), 15);
    assert_eq!(
        one::<i64>(&format!("SELECT count(*) FROM _counter_unflushed({id}, NULL, NULL)")),
        0
    );
    assert_eq!(
        one::<pgrx::AnyNumeric>("SELECT unflushed FROM counter_stats WHERE name = 'bf'"),
        pgrx::AnyNumeric::from(0)
    );
    // the tests' database is not the worker's: no flush time to show
    assert!(is_null(
        "SELECT last_flush_age FROM counter_stats WHERE name = 'bf'"
    ));
    // nothing is buffered here, so a flush has nothing to take
    assert_eq!(one::<i64>("SELECT counter_flush()"), 0);
}
