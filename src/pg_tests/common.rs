// Helpers shared by the #[pg_test] files of this folder, which src/lib.rs includes into
// one test module. #[pg_test]s check SQL behaviour inside a backend (each test runs in a
// transaction that is rolled back). Server-level behaviour (worker, parallel plans,
// dump/restore, COPY) lives in pg_test/ and scripts/.

use pgrx::prelude::*;

fn one<T: pgrx::datum::FromDatum + pgrx::IntoDatum>(sql: &str) -> T {
    Spi::get_one::<T>(sql)
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .unwrap_or_else(|| panic!("{sql}: NULL"))
}

fn is_null(sql: &str) -> bool {
    Spi::get_one::<pgrx::datum::AnyElement>(sql).map(|v| v.is_none()).unwrap_or(false)
}

/// What a statement raised: its SQLSTATE ("00000" when it succeeded) and hint.
struct SqlError {
    state: String,
    hint: String,
    message: String,
}

/// Run `sql` (one SQL statement) and report what it raised. The error is caught in a
/// PL/pgSQL block, so the test's transaction survives.
fn sql_error(sql: &str) -> SqlError {
    // Created once per session (tests may call this under another role).
    if one::<bool>("SELECT to_regprocedure('pg_temp.dc_sql_error(text)') IS NULL") {
        Spi::run(
            "CREATE FUNCTION pg_temp.dc_sql_error(q text, OUT state text, OUT hint text, OUT message text)
             LANGUAGE plpgsql AS $$
             BEGIN EXECUTE q; state := '00000'; hint := ''; message := '';
             EXCEPTION WHEN OTHERS THEN
               GET STACKED DIAGNOSTICS state = RETURNED_SQLSTATE, hint = PG_EXCEPTION_HINT,
                                       message = MESSAGE_TEXT;
             END $$",
        )
        .expect("create helper");
    }
    let quoted = sql.replace('\'', "''");
    let (state, hint, message) = Spi::get_three::<String, String, String>(&format!(
        "SELECT state, hint, message FROM pg_temp.dc_sql_error('{quoted}')"
    ))
    .unwrap_or_else(|e| panic!("{sql}: {e}"));
    SqlError {
        state: state.unwrap_or_default(),
        hint: hint.unwrap_or_default(),
        message: message.unwrap_or_default(),
    }
}

/// The SQLSTATE `sql` raises, "00000" when it succeeds.
fn sqlstate(sql: &str) -> String {
    sql_error(sql).state
}
