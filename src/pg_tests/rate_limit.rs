// #[pg_test]s for rate_limit(); included into the tests module of src/lib.rs. The
// buckets live in shared memory and outlive each test's transaction, so every test uses
// keys of its own (a random suffix).

/// A key no other test (or earlier run on the same server) has used.
fn rl_key(name: &str) -> String {
    format!("{name}:{}", one::<String>("SELECT gen_random_uuid()::text"))
}

/// One call: (allowed, remaining, retry_after in µs, reset_after in µs).
fn rl_call(key: &str, rate: i64, per: &str, burst: Option<i64>, cost: i64) -> (bool, i64, i64, i64) {
    let burst = burst.map_or("NULL".to_string(), |b| b.to_string());
    let row = one::<String>(&format!(
        "SELECT allowed || '|' || remaining || '|' || (extract(epoch FROM retry_after) * 1000000)::int8
                || '|' || (extract(epoch FROM reset_after) * 1000000)::int8
         FROM rate_limit('{key}', {rate}, '{per}', {burst}, {cost})"
    ));
    let f: Vec<&str> = row.split('|').collect();
    (f[0] == "true", f[1].parse().unwrap(), f[2].parse().unwrap(), f[3].parse().unwrap())
}

#[pg_test]
fn rate_limit_drains_a_bucket_and_says_when_to_retry() {
    let k = rl_key("drain");
    // 10 a minute, a bucket of 3: T = 6 s (far longer than the calls take)
    for want_remaining in [2, 1, 0] {
        let (allowed, remaining, retry, reset) = rl_call(&k, 10, "1 minute", Some(3), 1);
        assert!(allowed);
        assert_eq!(remaining, want_remaining);
        assert_eq!(retry, 0);
        assert!(reset > 0 && reset <= (3 - want_remaining) * 6_000_000, "reset_after {reset}");
    }
    let (allowed, remaining, retry, reset) = rl_call(&k, 10, "1 minute", Some(3), 1);
    assert!(!allowed);
    assert_eq!(remaining, 0);
    // the next token is due 6 s after the first call, less the time the calls took
    assert!(retry > 0 && retry <= 6_000_000, "retry_after {retry}");
    assert!(reset > 12_000_000 && reset <= 18_000_000, "reset_after {reset}");
    // other keys are untouched
    assert_eq!(rl_call(&rl_key("other"), 10, "1 minute", Some(3), 1), (true, 2, 0, 6_000_000));
    // a smaller bucket than the key's debt: nothing remains, never less than nothing
    assert_eq!(rl_call(&k, 10, "1 minute", Some(1), 1).1, 0);
}

#[pg_test]
fn rate_limit_burst_defaults_to_rate_and_cost_takes_several_tokens() {
    let k = rl_key("default-burst");
    for i in 0..5 {
        assert!(rl_call(&k, 5, "1 hour", None, 1).0, "call {i}");
    }
    assert!(!rl_call(&k, 5, "1 hour", None, 1).0);

    let k = rl_key("cost");
    assert_eq!(rl_call(&k, 1, "1 hour", Some(5), 3).0, true);
    let (allowed, remaining, retry, _) = rl_call(&k, 1, "1 hour", Some(5), 3);
    assert!(!allowed, "3 + 3 > 5");
    assert_eq!(remaining, 2, "a refused call takes nothing");
    assert!(retry > 3_599_000_000 && retry <= 3_600_000_000, "one more token in an hour: {retry}");
    assert!(rl_call(&k, 1, "1 hour", Some(5), 2).0, "the 2 left are still there");
}

#[pg_test]
fn rate_limit_one_token_per_call_however_it_is_called() {
    let k = rl_key("forms");
    one::<i64>(&format!("SELECT remaining FROM rate_limit('{k}', 10, '1 hour')"));
    assert_eq!(one::<i64>(&format!("SELECT (rate_limit('{k}', 10, '1 hour')).remaining")), 8);
    assert_eq!(one::<String>(&format!("SELECT rate_limit('{k}', 10, '1 hour')::text"))[..5].to_string(), "(t,7,");
    // In FROM, once per row of the outer query when its arguments refer to the row
    // (LATERAL); an uncorrelated call is one call whose row is rescanned, as for any
    // function in FROM.
    assert_eq!(
        one::<i64>(&format!(
            "SELECT count(*) FILTER (WHERE r.allowed) FROM generate_series(1, 10) g, \
             LATERAL rate_limit('{k}', 10 + 0 * g, '1 hour') r"
        )),
        7
    );
    assert_eq!(rl_call(&k, 10, "1 hour", None, 1).0, false);
}

#[pg_test]
fn rate_limit_is_not_transactional() {
    // Shared memory, not a table: a call in a transaction that rolls back has still
    // spent its tokens (as with Redis). docs/SQL.md says so.
    let k = rl_key("rollback");
    Spi::run(&format!(
        "DO $$ BEGIN PERFORM rate_limit('{k}', 3, '1 hour'); RAISE EXCEPTION 'roll back'; \
         EXCEPTION WHEN raise_exception THEN NULL; END $$"
    ))
    .unwrap();
    assert_eq!(rl_call(&k, 3, "1 hour", None, 1).1, 1);
}

#[pg_test]
fn rate_limit_bad_arguments() {
    for args in [
        "'k', 0, '1 second'",
        "'k', -5, '1 second'",
        "'k', 1, '0 seconds'",
        "'k', 1, '-1 second'",
        "'k', 1, '1 month'",
        "'k', 1, '1 year 1 day'",
        "'k', 1, '1 second', 0",
        "'k', 1, '1 second', -1",
        "'k', 1, '1 second', 5, 0",
        "'k', 1, '1 second', 5, -2",
        "'k', 1, '1 second', 5, 6",
        "'k', 1, '100 days', 1000",
        "'k', 9223372036854775807, '1 second'",
        "'k', 1000001, '1 second'",
        "'k', 1, '2147483647 days', 1",
        "'k', 1, '1 second', 9223372036854775807, 9223372036854775807",
    ] {
        assert_eq!(sqlstate(&format!("SELECT * FROM rate_limit({args})")), "22023", "{args}");
    }
    for args in [
        "NULL, 1, '1 second'",
        "'k', NULL, '1 second'",
        "'k', 1, NULL",
        "'k', 1, '1 second', 1, NULL",
    ] {
        assert_eq!(sqlstate(&format!("SELECT * FROM rate_limit({args})")), "22004", "{args}");
    }
    assert_eq!(sqlstate("SELECT * FROM rate_limit('k', 1, '1 day', NULL)"), "00000", "NULL burst = rate");
    let k = rl_key("mixed-signs");
    assert_eq!(
        sqlstate(&format!("SELECT * FROM rate_limit('{k}', 1000000, '-1 day 24 hours 1 second')")),
        "00000",
        "an interval whose parts have mixed signs but a positive sum (1 s)"
    );
    if one::<i32>("SELECT current_setting('server_version_num')::int") >= 170000 {
        assert_eq!(sqlstate("SELECT * FROM rate_limit('k', 1, 'infinity'::interval)"), "22023");
        assert_eq!(sqlstate("SELECT * FROM rate_limit('k', 1, '-infinity'::interval)"), "22023");
    }
}

#[pg_test]
fn rate_limit_is_not_granted_to_public() {
    assert!(!one::<bool>(
        "SELECT has_function_privilege('public', 'rate_limit(text, int8, interval, int8, int8)', 'EXECUTE')"
    ));
}
