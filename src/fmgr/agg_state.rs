//! Aggregate transition states: NULL handling and when a state may be edited in place.

use super::{arg_datum, arg_is_null, in_aggregate, is_plain_4b, plain_4b_payload, return_null};
use pgrx::pg_sys;

/// A transition function's answer for a NULL input: the state unchanged (or NULL).
///
/// # Safety
/// `fcinfo` is the FunctionCallInfo of the current call, with at least one argument.
#[inline(always)]
pub unsafe fn state_or_null(fcinfo: pg_sys::FunctionCallInfo) -> pg_sys::Datum {
    unsafe {
        if arg_is_null(fcinfo, 0) {
            return_null(fcinfo)
        } else {
            arg_datum(fcinfo, 0)
        }
    }
}

/// An aggregate's transition state (argument 0) as a writable byte slice, if it may be
/// modified in place: we are called as an aggregate and the state is a plain
/// 4-byte-header value (not a short, compressed or TOASTed one).
///
/// # Safety
/// `fcinfo` is the FunctionCallInfo of the current call, with at least one argument.
#[inline(always)]
pub unsafe fn owned_state<'a>(fcinfo: pg_sys::FunctionCallInfo) -> Option<&'a mut [u8]> {
    unsafe {
        if arg_is_null(fcinfo, 0) {
            return None;
        }
        let ptr = arg_datum(fcinfo, 0).cast_mut_ptr::<u8>();
        if is_plain_4b(ptr) && in_aggregate(fcinfo) {
            Some(plain_4b_payload(ptr))
        } else {
            None
        }
    }
}
