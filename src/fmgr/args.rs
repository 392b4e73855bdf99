//! Positional argument reads and result datums.

use pgrx::pg_sys;

/// True when called as an aggregate transition/combine function, i.e. the state
/// argument belongs to the aggregate and may be modified in place.
///
/// The same test AggCheckCallContext makes (is `fcinfo->context` an AggState or a
/// WindowAggState node?), done inline: it runs once per input row.
///
/// # Safety
/// `fcinfo` is the FunctionCallInfo of the current call, and argument `n` (when given) is below its `nargs` or checked against it.
#[inline(always)]
pub unsafe fn in_aggregate(fcinfo: pg_sys::FunctionCallInfo) -> bool {
    unsafe {
        let context = (*fcinfo).context;
        if context.is_null() {
            return false;
        }
        let tag = (*context).type_;
        tag == pg_sys::NodeTag::T_AggState || tag == pg_sys::NodeTag::T_WindowAggState
    }
}

/// # Safety
/// `fcinfo` is the FunctionCallInfo of the current call, and argument `n` (when given) is below its `nargs` or checked against it.
#[inline(always)]
pub unsafe fn arg_is_null(fcinfo: pg_sys::FunctionCallInfo, n: usize) -> bool {
    unsafe { (*fcinfo).args.as_slice((*fcinfo).nargs as usize)[n].isnull }
}

/// # Safety
/// `fcinfo` is the FunctionCallInfo of the current call, and argument `n` (when given) is below its `nargs` or checked against it.
#[inline(always)]
pub unsafe fn arg_datum(fcinfo: pg_sys::FunctionCallInfo, n: usize) -> pg_sys::Datum {
    unsafe { (*fcinfo).args.as_slice((*fcinfo).nargs as usize)[n].value }
}

/// # Safety
/// `fcinfo` is the FunctionCallInfo of the current call, and argument `n` (when given) is below its `nargs` or checked against it.
#[inline(always)]
pub unsafe fn nargs(fcinfo: pg_sys::FunctionCallInfo) -> usize {
    unsafe { (*fcinfo).nargs as usize }
}

/// Argument `n`, or None when SQL NULL (or absent).
///
/// # Safety
/// `fcinfo` is the FunctionCallInfo of the current call, and argument `n` (when given) is below its `nargs` or checked against it.
#[inline(always)]
pub unsafe fn arg(fcinfo: pg_sys::FunctionCallInfo, n: usize) -> Option<pg_sys::Datum> {
    unsafe {
        if n >= nargs(fcinfo) || arg_is_null(fcinfo, n) {
            None
        } else {
            Some(arg_datum(fcinfo, n))
        }
    }
}

/// # Safety
/// `fcinfo` is the FunctionCallInfo of the current call, and argument `n` (when given) is below its `nargs` or checked against it.
#[inline(always)]
pub unsafe fn arg_i32(fcinfo: pg_sys::FunctionCallInfo, n: usize) -> Option<i32> {
    unsafe { arg(fcinfo, n).map(|d| d.value() as i32) }
}

/// # Safety
/// `fcinfo` is the FunctionCallInfo of the current call, and argument `n` (when given) is below its `nargs` or checked against it.
#[inline(always)]
pub unsafe fn arg_i64(fcinfo: pg_sys::FunctionCallInfo, n: usize) -> Option<i64> {
    unsafe { arg(fcinfo, n).map(|d| d.value() as i64) }
}

/// # Safety
/// `fcinfo` is the FunctionCallInfo of the current call, and argument `n` (when given) is below its `nargs` or checked against it.
#[inline(always)]
pub unsafe fn arg_f64(fcinfo: pg_sys::FunctionCallInfo, n: usize) -> Option<f64> {
    unsafe { arg(fcinfo, n).map(|d| f64::from_bits(d.value() as u64)) }
}

/// # Safety
/// `fcinfo` is the FunctionCallInfo of the current call, and argument `n` (when given) is below its `nargs` or checked against it.
#[inline(always)]
pub unsafe fn return_null(fcinfo: pg_sys::FunctionCallInfo) -> pg_sys::Datum {
    unsafe {
        (*fcinfo).isnull = true;
        pg_sys::Datum::from(0usize)
    }
}

#[inline(always)]
pub fn datum_i64(v: i64) -> pg_sys::Datum {
    pg_sys::Datum::from(v)
}

#[inline(always)]
pub fn datum_f64(v: f64) -> pg_sys::Datum {
    pg_sys::Datum::from(v.to_bits())
}

#[inline(always)]
pub fn datum_bool(v: bool) -> pg_sys::Datum {
    pg_sys::Datum::from(v)
}
