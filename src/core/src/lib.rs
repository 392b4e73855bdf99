//! The algorithms of distributed_counter, free of PostgreSQL so they can be
//! tested with plain `cargo test -p distributed_counter_core`.
//!
//! Every stored form is `[format version][kind][params][payload]`, little-endian,
//! and every decoder validates lengths, ranges and ordering before use.

// No unsafe code, except the one module that allows it: the hll union's vector loops
// in hll/simd.rs, each checked against its portable reference.
#![deny(unsafe_code)]

pub mod buffer;
pub mod cms;
pub mod crdt;
pub mod error;
pub mod hash;
pub mod hex;
pub mod hll;
pub mod probing;
pub mod rate_limit;
pub mod topk;

pub use error::{CoreError, ErrorKind, Result};
