//! SQL glue for `topk` (mergeable Space-Saving heavy hitters, see
//! `distributed_counter_core::topk`).
//!
//! Items are a value's text output bytes, so `topk_list` can return them as `text`
//! (`5::int2`, `5::int4` and `5::int8` all print as `5` and count as one value).
//!
//! # Aggregate state
//! The stored form varies in length, so decoding and re-encoding it per row would be far
//! too slow. Inside an aggregate the state is a PostgreSQL *expanded object*
//! (utils/expandeddatum.h) wrapping the Rust [`TopK`]: the first transition call creates
//! it in a child context of the aggregate context and returns its read-write pointer;
//! PostgreSQL keeps such a value without copying (ExecAggTransReparent adopts an R/W
//! expanded object whose context is a child of the aggregate context) and hands the same
//! pointer back on every row, where we update the `TopK` in place. A reset callback on
//! the object's context drops the Rust value, so nothing leaks when the aggregate
//! context is reset or deleted. Everything else that reads a topk (final results,
//! partial-aggregate output, combine inputs, storage) gets the flattened stored form,
//! which PostgreSQL produces through the object's `flatten_into` method.

use crate::error::{invalid_parameter, raise_as, OrRaise};
use crate::fmgr::*;
use crate::hashing::HashPlan;
use crate::sql_function;
use crate::sql_function_with_fast_path;
use distributed_counter_core::hex::{parse_hex, to_hex};
use distributed_counter_core::topk::TopK;
use distributed_counter_core::CoreError;
use pgrx::pg_sys;
use pgrx::prelude::pg_guard;
use pgrx::PgSqlErrorCode;
use std::ffi::c_void;

/// The documented default (docs/SQL.md) of `topk_add_agg`'s k.
const DEFAULT_K: i32 = 10;

// ---- conversions ------------------------------------------------------------------------

fn k_of(k: i32) -> u32 {
    if k < 1 {
        invalid_parameter(
            format!(
                "topk k must be between 1 and {}, got {k}",
                distributed_counter_core::topk::TOPK_MAX_K
            ),
            Some("k is the number of heavy hitters to keep, e.g. 10"),
        );
    }
    k as u32
}

/// Items must be text in the database encoding (topk_list returns them as `text`);
/// values built by our aggregates always are, a hand-made binary value may not be.
unsafe fn check_items(t: &TopK) -> Result<(), CoreError> {
    unsafe {
        for (item, _, _) in t.tracked() {
            let ok = i32::try_from(item.len()).is_ok_and(|len| {
                pg_sys::pg_verifymbstr(item.as_ptr() as *const std::ffi::c_char, len, true)
            });
            if !ok {
                return Err(CoreError::invalid_binary(
                    "topk item is not valid text in the database encoding",
                ));
            }
        }
        Ok(())
    }
}

/// Decode and fully validate stored bytes (input functions).
unsafe fn topk_from_input(bytes: &[u8]) -> TopK {
    unsafe {
        let t = TopK::decode(bytes).or_raise();
        check_items(&t).or_raise();
        t
    }
}

/// Decode a stored topk datum (already validated on input; decode re-checks the layout).
/// Expanded objects arrive flattened through `varlena_bytes`.
unsafe fn topk_arg(datum: pg_sys::Datum) -> TopK {
    unsafe { TopK::decode(varlena_bytes(datum)).or_raise() }
}

unsafe fn topk_datum(t: &TopK) -> pg_sys::Datum {
    unsafe { ptr_datum(bytes_to_varlena(&t.encode())) }
}

/// Calls `f` with the text form of `datum`. Integers and text-like values are formatted
/// here exactly as their output functions would (no palloc, no fmgr call per row);
/// every other type goes through its output function.
#[inline(always)]
unsafe fn with_text_of<R>(plan: &HashPlan, datum: pg_sys::Datum, f: impl FnOnce(&[u8]) -> R) -> R {
    unsafe {
        if let Some(v) = int_value(plan, datum) {
            return with_decimal(v, f);
        }
        match plan.type_oid {
            // textout/varcharout return the payload bytes unchanged
            pg_sys::TEXTOID | pg_sys::VARCHAROID => f(varlena_bytes(datum)),
            _ => f(&plan.text_of(datum)),
        }
    }
}

/// The value of a datum of an integer type (whose text form [`with_decimal`] makes), or
/// None for other types.
#[inline(always)]
fn int_value(plan: &HashPlan, datum: pg_sys::Datum) -> Option<i64> {
    match plan.type_oid {
        pg_sys::INT8OID => Some(datum.value() as i64),
        pg_sys::INT4OID => Some(datum.value() as i32 as i64),
        pg_sys::INT2OID => Some(datum.value() as i16 as i64),
        _ => None,
    }
}

/// `int8out`'s format: optional '-', decimal digits. Two digits per step (a 200-byte
/// table), which halves the dependent division chain of the per-row path.
#[inline(always)]
fn with_decimal<R>(v: i64, f: impl FnOnce(&[u8]) -> R) -> R {
    const PAIRS: &[u8; 200] = b"0001020304050607080910111213141516171819\
        2021222324252627282930313233343536373839\
        4041424344454647484950515253545556575859\
        6061626364656667686970717273747576777879\
        8081828384858687888990919293949596979899";
    let mut buf = [0u8; 20];
    let mut at = buf.len();
    let mut n = v.unsigned_abs();
    while n >= 100 {
        let pair = (n % 100) as usize * 2;
        n /= 100;
        at -= 2;
        buf[at] = PAIRS[pair];
        buf[at + 1] = PAIRS[pair + 1];
    }
    if n >= 10 {
        let pair = n as usize * 2;
        at -= 2;
        buf[at] = PAIRS[pair];
        buf[at + 1] = PAIRS[pair + 1];
    } else {
        at -= 1;
        buf[at] = b'0' + n as u8;
    }
    if v < 0 {
        at -= 1;
        buf[at] = b'-';
    }
    f(&buf[at..])
}

#[cfg(test)]
mod decimal_tests {
    #[test]
    fn decimal_matches_display() {
        let mut cases = vec![
            0i64,
            1,
            9,
            10,
            11,
            99,
            100,
            101,
            999,
            1000,
            12345,
            -1,
            -10,
            -99,
            -100,
            i64::MIN,
            i64::MAX,
        ];
        let mut x: i64 = 7;
        for _ in 0..2000 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            cases.push(x >> (x as u64 % 60));
        }
        for v in cases {
            super::with_decimal(v, |b| assert_eq!(b, v.to_string().as_bytes(), "{v}"));
        }
    }
}

// ---- the expanded-object aggregate state ------------------------------------------------------

/// Our expanded object: PostgreSQL's header first, then the Rust summary.
#[repr(C)]
struct TopkExpanded {
    hdr: pg_sys::ExpandedObjectHeader,
    /// `Box::into_raw`; dropped by `drop_topk` when the object's context goes away.
    topk: *mut TopK,
    reset_callback: pg_sys::MemoryContextCallback,
}

static TOPK_EXPANDED_METHODS: pg_sys::ExpandedObjectMethods = pg_sys::ExpandedObjectMethods {
    get_flat_size: Some(topk_flat_size),
    flatten_into: Some(topk_flatten_into),
};

#[pg_guard]
unsafe extern "C-unwind" fn topk_flat_size(eoh: *mut pg_sys::ExpandedObjectHeader) -> pg_sys::Size {
    unsafe {
        let e = eoh as *mut TopkExpanded;
        4 + (*(*e).topk).encoded_len()
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn topk_flatten_into(
    eoh: *mut pg_sys::ExpandedObjectHeader,
    result: *mut c_void,
    allocated_size: pg_sys::Size,
) {
    unsafe {
        let e = eoh as *mut TopkExpanded;
        let bytes = (*(*e).topk).encode();
        let total = bytes.len() + 4;
        if total != allocated_size {
            invalid_parameter("topk flat size changed while flattening", None);
        }
        let out = result as *mut u8;
        std::ptr::copy_nonoverlapping(((total as u32) << 2).to_le_bytes().as_ptr(), out, 4);
        std::ptr::copy_nonoverlapping(bytes.as_ptr(), out.add(4), bytes.len());
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn drop_topk(arg: *mut c_void) {
    unsafe {
        let e = arg as *mut TopkExpanded;
        let t = std::mem::replace(&mut (*e).topk, std::ptr::null_mut());
        if !t.is_null() {
            drop(Box::from_raw(t));
        }
    }
}

/// Wrap `t` in a new expanded object whose context is a child of the aggregate context
/// (so PostgreSQL adopts it without copying) and return its read-write datum.
unsafe fn expanded_datum(fcinfo: pg_sys::FunctionCallInfo, t: TopK) -> pg_sys::Datum {
    unsafe {
        let mut aggcontext: pg_sys::MemoryContext = std::ptr::null_mut();
        if pg_sys::AggCheckCallContext(fcinfo, &mut aggcontext) == 0 || aggcontext.is_null() {
            return topk_datum(&t);
        }
        let ctx = pg_sys::AllocSetContextCreateInternal(
            aggcontext,
            c"topk aggregate state".as_ptr(),
            pg_sys::ALLOCSET_SMALL_MINSIZE as usize,
            pg_sys::ALLOCSET_SMALL_INITSIZE as usize,
            pg_sys::ALLOCSET_SMALL_MAXSIZE as usize,
        );
        let e = pg_sys::MemoryContextAllocZero(ctx, std::mem::size_of::<TopkExpanded>())
            as *mut TopkExpanded;
        pg_sys::EOH_init_header(&mut (*e).hdr, &TOPK_EXPANDED_METHODS, ctx);
        (*e).topk = Box::into_raw(Box::new(t));
        (*e).reset_callback.func = Some(drop_topk);
        (*e).reset_callback.arg = e as *mut c_void;
        pg_sys::MemoryContextRegisterResetCallback(ctx, &mut (*e).reset_callback);
        // EOHPGetRWDatum: the datum points at the header's R/W external pointer.
        pg_sys::Datum::from((*e).hdr.eoh_rw_ptr.as_mut_ptr())
    }
}

/// The summary behind argument 0 if it is a read-write pointer to one of our expanded
/// objects (so we may modify it). Checked inline:
/// an external varlena (first byte 0x01) tagged VARTAG_EXPANDED_RW whose object uses
/// our methods.
#[inline(always)]
unsafe fn expanded_state<'a>(fcinfo: pg_sys::FunctionCallInfo) -> Option<&'a mut TopK> {
    unsafe {
        if arg_is_null(fcinfo, 0) {
            return None;
        }
        let ptr = arg_datum(fcinfo, 0).cast_mut_ptr::<u8>();
        if *ptr != 0x01 || *ptr.add(1) != pg_sys::vartag_external::VARTAG_EXPANDED_RW as u8 {
            return None;
        }
        let e = std::ptr::read_unaligned(ptr.add(2) as *const *mut TopkExpanded);
        // A read-write pointer may be modified by its receiver (utils/expandeddatum.h), and
        // we only create these objects inside aggregates, so no AggCheckCallContext here.
        if e.is_null()
            || !std::ptr::eq((*e).hdr.eoh_methods, &TOPK_EXPANDED_METHODS)
            || (*e).topk.is_null()
        {
            return None;
        }
        Some(&mut *(*e).topk)
    }
}

/// Return `t` as the new aggregate state (an expanded object) or, outside an aggregate,
/// as a plain value.
unsafe fn new_state(fcinfo: pg_sys::FunctionCallInfo, t: TopK) -> pg_sys::Datum {
    unsafe {
        if in_aggregate(fcinfo) {
            expanded_datum(fcinfo, t)
        } else {
            topk_datum(&t)
        }
    }
}

// ---- I/O ----------------------------------------------------------------------------------

sql_function! { fn topk_in(fcinfo) {
    let bytes = parse_hex(cstring_arg(arg_datum(fcinfo, 0)), "topk").or_raise();
    let t = match TopK::decode(&bytes) {
        Ok(t) => t,
        Err(e) => raise_as(PgSqlErrorCode::ERRCODE_INVALID_TEXT_REPRESENTATION, e),
    };
    check_items(&t).or_raise_text();
    topk_datum(&t)
}}

sql_function! { fn topk_out(fcinfo) {
    cstring_datum(&to_hex(varlena_bytes(arg_datum(fcinfo, 0))))
}}

sql_function! { fn topk_recv(fcinfo) {
    topk_datum(&topk_from_input(recv_bytes(arg_datum(fcinfo, 0))))
}}

sql_function! {
    /// `bytea -> topk` cast: validates (22P03 on bad bytes).
    fn topk_from_bytea(fcinfo) {
    topk_datum(&topk_from_input(varlena_bytes(arg_datum(fcinfo, 0))))
}}

// ---- functions --------------------------------------------------------------------------

sql_function! { fn topk_empty(fcinfo) {
    let k = k_of(arg_i32(fcinfo, 0).unwrap_or(DEFAULT_K));
    topk_datum(&TopK::new(k).or_raise())
}}

sql_function! {
    /// `topk_add(topk, anyelement, count DEFAULT 1)`. Not strict, under the one NULL rule
    /// of every add function: a NULL summary is an empty one (`topk_empty()`), a NULL
    /// value adds nothing, a NULL count is an error (22004).
    fn topk_add(fcinfo) {
    if arg_is_null(fcinfo, 1) {
        // nothing to add (whatever the count, as the aggregates skip such a row)
        return match arg(fcinfo, 0) {
            Some(summary) => summary,
            None => topk_datum(&TopK::new(DEFAULT_K as u32).or_raise()),
        };
    }
    let count = if nargs(fcinfo) >= 3 { arg_i64(fcinfo, 2) } else { Some(1) };
    let count = count.unwrap_or_else(|| crate::error::null_count("topk_add"));
    if count < 0 {
        invalid_parameter(
            format!("topk count must not be negative, got {count}"),
            Some("A top-k summary only counts additions; use a count >= 0."),
        );
    }
    let mut t = if arg_is_null(fcinfo, 0) {
        TopK::new(DEFAULT_K as u32).or_raise()
    } else {
        topk_arg(arg_datum(fcinfo, 0))
    };
    let plan = HashPlan::for_arg(fcinfo, 1);
    with_text_of(plan, arg_datum(fcinfo, 1), |item| t.add(item, count as u64)).or_raise();
    topk_datum(&t)
}}

sql_function! { fn topk_union(fcinfo) {
    let mut a = topk_arg(arg_datum(fcinfo, 0));
    a.union(&topk_arg(arg_datum(fcinfo, 1))).or_raise();
    topk_datum(&a)
}}

sql_function! { fn topk_total(fcinfo) {
    datum_i64(topk_arg(arg_datum(fcinfo, 0)).total() as i64)
}}

sql_function! { fn topk_k(fcinfo) {
    pg_sys::Datum::from(topk_arg(arg_datum(fcinfo, 0)).k() as i32)
}}

sql_function! { fn topk_print(fcinfo) {
    let bytes = varlena_bytes(arg_datum(fcinfo, 0));
    let t = TopK::decode(bytes).or_raise();
    text_datum(&format!(
        "topk v{}: k {}, capacity {}, tracked {}, total {}, min count {}, {} bytes",
        bytes[0],
        t.k(),
        t.capacity(),
        t.len(),
        t.total(),
        t.min_count(),
        bytes.len()
    ))
}}

sql_function! {
    /// `topk_list(topk) -> TABLE(value text, count int8, error int8)`: the top k by count
    /// descending (then value bytes ascending), as a materialized set.
    fn topk_list(fcinfo) {
    let t = topk_arg(arg_datum(fcinfo, 0));
    pg_sys::InitMaterializedSRF(fcinfo, 0);
    let rsinfo = (*fcinfo).resultinfo as *mut pg_sys::ReturnSetInfo;
    for (item, count, error) in t.list() {
        let mut values = [ptr_datum(bytes_to_varlena(&item)), datum_i64(count as i64), datum_i64(error as i64)];
        let mut nulls = [false; 3];
        pg_sys::tuplestore_putvalues((*rsinfo).setResult, (*rsinfo).setDesc, values.as_mut_ptr(), nulls.as_mut_ptr());
    }
    pg_sys::Datum::from(0usize)
}}

// ---- aggregates ---------------------------------------------------------------------------

thread_local! {
    /// Set when the guard-free path caught a panic; the guarded path then raises.
    static FAST_PATH_PANICKED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// An integer argument's value, when this call site's hash plan is built and its type is
/// an integer (whose text form `with_decimal` produces without a `pg_sys` call).
#[inline(always)]
unsafe fn int_arg(fcinfo: pg_sys::FunctionCallInfo, argno: usize) -> Option<i64> {
    unsafe {
        if arg_is_null(fcinfo, argno) {
            return None;
        }
        int_value(HashPlan::cached(fcinfo)?, arg_datum(fcinfo, argno))
    }
}

sql_function_with_fast_path! {
    /// Transition of `topk_add_agg(anyelement [, k])`: k is read when the state is created
    /// (first non-NULL value of a group); a NULL k means the default 10.
    fn topk_add_trans(fcinfo)
    fast {
        // An integer into the aggregate's own expanded state: no `pg_sys` call (the text
        // form is formatted here), so no panic guard. `TopK::add` is safe Rust but not
        // built to be panic-free, so a panic is caught here and the guarded path raises
        // an ERROR without adding again; an error (total at its limit, state too big)
        // changes nothing and the guarded path raises it. Anything else goes to the
        // guarded path.
        match (int_arg(fcinfo, 1), expanded_state(fcinfo)) {
            (Some(v), Some(t)) => {
                match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    with_decimal(v, |item| t.add(item, 1).is_ok())
                })) {
                    Ok(true) => Some(arg_datum(fcinfo, 0)),
                    Ok(false) => None,
                    Err(_) => {
                        // the state may be half-updated: the guarded path must not add
                        // again, only report
                        FAST_PATH_PANICKED.set(true);
                        None
                    }
                }
            }
            _ => None,
        }
    }
    slow {
    if FAST_PATH_PANICKED.replace(false) {
        pgrx::error!("topk_add_agg: internal error while adding a value; the aggregate state is not usable");
    }
    if arg_is_null(fcinfo, 1) {
        return state_or_null(fcinfo);
    }
    let plan = HashPlan::for_arg(fcinfo, 1);
    let value = arg_datum(fcinfo, 1);
    if let Some(t) = expanded_state(fcinfo) {
        with_text_of(plan, value, |item| t.add(item, 1)).or_raise();
        return arg_datum(fcinfo, 0);
    }
    let mut t = if arg_is_null(fcinfo, 0) {
        TopK::new(k_of(arg_i32(fcinfo, 2).unwrap_or(DEFAULT_K))).or_raise()
    } else {
        topk_arg(arg_datum(fcinfo, 0))
    };
    with_text_of(plan, value, |item| t.add(item, 1)).or_raise();
    new_state(fcinfo, t)
    }
}

sql_function! {
    /// `topk_union_agg` transition and the combine function of every topk aggregate.
    /// The state may arrive expanded (ours, updated in place) or flat.
    fn topk_union_trans(fcinfo) {
    if arg_is_null(fcinfo, 1) {
        return state_or_null(fcinfo);
    }
    let input = topk_arg(arg_datum(fcinfo, 1));
    if let Some(t) = expanded_state(fcinfo) {
        t.union(&input).or_raise();
        return arg_datum(fcinfo, 0);
    }
    let t = if arg_is_null(fcinfo, 0) {
        input
    } else {
        let mut t = topk_arg(arg_datum(fcinfo, 0));
        t.union(&input).or_raise();
        t
    };
    new_state(fcinfo, t)
}}
