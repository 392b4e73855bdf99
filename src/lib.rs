//! distributed_counter: counting at scale inside PostgreSQL.
//!
//! Layout: `src/core` (crate `distributed_counter_core`) holds every algorithm with no
//! PostgreSQL dependency; the modules here are thin glue: argument conversion, varlena
//! handling, in-place aggregate state updates, and errors mapped to SQLSTATEs. All SQL
//! (types, functions, operators, aggregates) is hand-written in `sql/`.

use pgrx::prelude::*;

::pgrx::pg_module_magic!(name, version);

pub mod error;
pub mod fmgr;
pub mod guc;
pub mod hashing;
pub mod hll;

// The whole SQL surface, in dependency order. pgrx contributes no generated SQL: every
// function is declared by hand, pointing at the `sql_function!` symbols.
pgrx::extension_sql_file!("../sql/hashval.sql", name = "hashval", bootstrap);
pgrx::extension_sql_file!("../sql/hll.sql", name = "hll", requires = ["hashval"]);

#[pg_guard]
pub extern "C-unwind" fn _PG_init() {
    guc::register();
}

#[cfg(any(test, feature = "pg_test"))]
#[pg_schema]
mod tests {
    // #[pg_schema] needs an inline module; the tests live in their own file.
    include!("pg_tests.rs");
}

/// Required by `cargo pgrx test`.
#[cfg(test)]
pub mod pg_test {
    pub fn setup(_options: Vec<&str>) {}

    #[must_use]
    pub fn postgresql_conf_options() -> Vec<&'static str> {
        vec!["shared_preload_libraries = 'distributed_counter'"]
    }
}
