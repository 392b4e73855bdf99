//! Hand-rolled fmgr plumbing. Every SQL function of this extension is a raw version-1 C
//! function declared with one of the macros in `macros.rs`, and all SQL is hand-written
//! in `sql/`: we own the types, their byte layouts and the aggregate definitions, and
//! the aggregate hot paths avoid per-row pgrx conversions (docs/DEVELOPING.md, "The
//! per-row paths").
//!
//! - `macros.rs`: `sql_function!` (panic-guarded), `sql_function_with_fast_path!` and
//!   `unguarded_sql_function!` (per-row code outside the guard, under strict rules);
//! - `args.rs`: positional argument reads and result datums;
//! - `varlena.rs`: inline varlena header checks (little-endian layout, PostgreSQL's
//!   varatt.h), so the per-row paths make no guarded `pg_sys` call, and value builders;
//! - `agg_state.rs`: when an aggregate state may be modified in place.
//!
//! Safety, for every `unsafe fn` here: `fcinfo` is the live call's FunctionCallInfo, an
//! argument index is below its `nargs` (the SQL declaration fixes it), and a datum read
//! as a pointer is a non-NULL value of the type the SQL declaration says.

mod agg_state;
mod args;
mod macros;
mod varlena;

pub use agg_state::*;
pub use args::*;
pub use varlena::*;
