//! Sharded exact counters: the SQL API (hand-written PL/pgSQL in sql/counters.sql, with
//! `counter_add`'s common case in Rust: `add`) and the compaction background worker.
//!
//! The write path only INSERTs delta rows into an append-only table, so concurrent
//! writers of one hot key never queue on a row lock; reads add the folded total and the
//! pending deltas in one snapshot (exact); compaction folds bounded batches of deltas
//! into totals, one atomic statement per transaction, shared by `counter_compact()` and
//! the worker (see `worker`).

pub mod add;
pub mod buffer;
pub mod locks;
pub mod raise;
pub mod worker;
