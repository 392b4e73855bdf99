//! distributed_counter: counting at scale inside PostgreSQL.
//!
//! Layout: `src/core` (crate `distributed_counter_core`) holds every algorithm with no
//! PostgreSQL dependency; the modules here are thin glue: argument conversion, varlena
//! handling, in-place aggregate state updates, and errors mapped to SQLSTATEs. All SQL
//! (types, functions, operators, aggregates) is hand-written in `sql/`.

use pgrx::prelude::*;

::pgrx::pg_module_magic!(name, version);

pub mod canonical_bytes;
pub mod cms;
pub mod counters;
pub mod crdt;
pub mod error;
pub mod fmgr;
pub mod guc;
pub mod hashing;
pub mod hll;
pub mod pg_compat;
pub mod rate_limit;
pub mod shmem;
pub mod topk;

// The whole SQL surface, in dependency order. pgrx contributes no generated SQL: every
// function is declared by hand, pointing at the `sql_function!` symbols.
pgrx::extension_sql_file!("../sql/hashval.sql", name = "hashval", bootstrap);
pgrx::extension_sql_file!("../sql/hll.sql", name = "hll", requires = ["hashval"]);
pgrx::extension_sql_file!("../sql/cms.sql", name = "cms", requires = ["hll"]);
pgrx::extension_sql_file!("../sql/topk.sql", name = "topk", requires = ["cms"]);
pgrx::extension_sql_file!(
    "../sql/typed_aggregates.sql",
    name = "typed_aggregates",
    requires = ["topk"]
);
pgrx::extension_sql_file!(
    "../sql/crdt.sql",
    name = "crdt",
    requires = ["typed_aggregates"]
);
pgrx::extension_sql_file!(
    "../sql/counters.sql",
    name = "counters",
    requires = ["crdt"]
);
pgrx::extension_sql_file!(
    "../sql/rate_limit.sql",
    name = "rate_limit",
    requires = ["counters"]
);

#[pg_guard]
pub extern "C-unwind" fn _PG_init() {
    guc::register();
    // The worker exists only when the library is preloaded; everything else works
    // from a plain CREATE EXTENSION.
    if unsafe { pg_sys::process_shared_preload_libraries_in_progress } {
        counters::worker::register();
        rate_limit::register();
        counters::buffer::register();
    }
}

#[cfg(any(test, feature = "pg_test"))]
#[pg_schema]
mod tests {
    // #[pg_schema] needs an inline module; the tests live in their own file.
    include!("pg_tests/common.rs");
    include!("pg_tests/hll.rs");
    include!("pg_tests/sketches.rs");
    include!("pg_tests/typed_aggregates.rs");
    include!("pg_tests/crdt.rs");
    include!("pg_tests/counters.rs");
    include!("pg_tests/rate_limit.rs");
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
