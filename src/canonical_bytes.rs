//! Equality, hashing, a total order and binary send on the canonical stored bytes,
//! shared by every varlena type of the extension.
//!
//! Each type's encoding is canonical (equal values <=> equal bytes), so equality, hashing
//! and a (meaningless but total) order are the same byte operations for all of them; the
//! SQL declarations of hll, cms, topk, gcounter and pncounter point at these symbols.

use crate::fmgr::{arg_datum, bytea_datum, datum_bool, varlena_bytes};
use pgrx::pg_sys;

unsafe fn compare_varlena_args(fcinfo: pg_sys::FunctionCallInfo) -> std::cmp::Ordering {
    unsafe { varlena_bytes(arg_datum(fcinfo, 0)).cmp(varlena_bytes(arg_datum(fcinfo, 1))) }
}
crate::sql_function! { fn dc_bytes_eq(fcinfo) {
    datum_bool(varlena_bytes(arg_datum(fcinfo, 0)) == varlena_bytes(arg_datum(fcinfo, 1)))
}}
crate::sql_function! { fn dc_bytes_ne(fcinfo) {
    datum_bool(varlena_bytes(arg_datum(fcinfo, 0)) != varlena_bytes(arg_datum(fcinfo, 1)))
}}
crate::sql_function! { fn dc_bytes_cmp(fcinfo) { pg_sys::Datum::from(compare_varlena_args(fcinfo) as i32) }}
crate::sql_function! { fn dc_bytes_lt(fcinfo) { datum_bool(compare_varlena_args(fcinfo).is_lt()) }}
crate::sql_function! { fn dc_bytes_le(fcinfo) { datum_bool(compare_varlena_args(fcinfo).is_le()) }}
crate::sql_function! { fn dc_bytes_gt(fcinfo) { datum_bool(compare_varlena_args(fcinfo).is_gt()) }}
crate::sql_function! { fn dc_bytes_ge(fcinfo) { datum_bool(compare_varlena_args(fcinfo).is_ge()) }}
crate::sql_function! { fn dc_bytes_hash(fcinfo) {
    let h = distributed_counter_core::hash::hash_bytes(varlena_bytes(arg_datum(fcinfo, 0)), 0);
    pg_sys::Datum::from(h as i32)
}}

// Binary send of every varlena type: the stored bytes, as they are.
crate::sql_function! { fn dc_bytes_send(fcinfo) { bytea_datum(varlena_bytes(arg_datum(fcinfo, 0))) }}
