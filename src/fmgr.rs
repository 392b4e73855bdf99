//! Thin, hand-rolled fmgr plumbing. Every SQL function of this extension is a raw
//! version-1 C function written with [`sql_function!`], and all SQL is hand-written in
//! `sql/`: we own the types, their byte layouts and the aggregate definitions, and the
//! aggregate hot paths avoid per-row pgrx conversions (see BUILD.md on call overhead).
//!
//! Varlena headers are checked inline here (little-endian layout, see PostgreSQL's
//! varatt.h) so the per-row paths make no guarded `pg_sys` call.

use pgrx::pg_sys;

/// `pg_finfo_<name>`: declares `<name>` a version-1 function (for the macros below).
#[doc(hidden)]
#[macro_export]
macro_rules! __dc_finfo {
    ($name:ident) => {
        ::paste::paste! {
            #[unsafe(no_mangle)]
            #[doc(hidden)]
            pub extern "C" fn [<pg_finfo_ $name>]() -> &'static ::pgrx::pg_sys::Pg_finfo_record {
                const V1: ::pgrx::pg_sys::Pg_finfo_record = ::pgrx::pg_sys::Pg_finfo_record { api_version: 1 };
                &V1
            }
        }
    };
}

/// Declare a version-1 SQL-callable function: emits `pg_finfo_<name>` and a
/// panic-guarded `extern "C-unwind"` entry point.
#[macro_export]
macro_rules! sql_function {
    ($(#[$meta:meta])* fn $name:ident($fcinfo:ident) $body:block) => {
        $crate::__dc_finfo!($name);
        $(#[$meta])*
        #[unsafe(no_mangle)]
        pub unsafe extern "C-unwind" fn $name($fcinfo: ::pgrx::pg_sys::FunctionCallInfo) -> ::pgrx::pg_sys::Datum {
            #[allow(unused_unsafe)]
            unsafe {
                ::pgrx::pg_sys::submodules::panic::pgrx_extern_c_guard(move || $body)
            }
        }
    };
}

/// Like [`sql_function!`], with a `fast` block that runs first, outside the panic
/// guard, for an aggregate's per-row path: the guard's call and result copy cost about
/// as much as the work of a row. The fast block returns `Some(datum)` when it handled
/// the call and `None` to fall through to the guarded `slow` block. It must make no
/// `pg_sys` call (an ERROR's longjmp would cross Rust frames) and must not be able to
/// panic: plain integer arithmetic that cannot overflow, slice `get`/`get_mut`, and the
/// inline header checks of this module only.
// The blocks are unsafe code by design (raw fcinfo access), like sql_function!'s body.
#[macro_export]
macro_rules! sql_function_with_fast_path {
    ($(#[$meta:meta])* fn $name:ident($fcinfo:ident) fast $fast:block slow $slow:block) => {
        $crate::__dc_finfo!($name);
        $(#[$meta])*
        #[unsafe(no_mangle)]
        #[allow(clippy::macro_metavars_in_unsafe)]
        pub unsafe extern "C-unwind" fn $name($fcinfo: ::pgrx::pg_sys::FunctionCallInfo) -> ::pgrx::pg_sys::Datum {
            #[allow(unused_unsafe)]
            let fast: Option<::pgrx::pg_sys::Datum> = unsafe { $fast };
            if let Some(datum) = fast {
                return datum;
            }
            #[allow(unused_unsafe)]
            unsafe {
                ::pgrx::pg_sys::submodules::panic::pgrx_extern_c_guard(move || $slow)
            }
        }
    };
}

/// A SQL-callable function with no panic guard at all, for tiny per-row functions
/// (the integer hash functions) under the rules of `sql_function_with_fast_path!`'s
/// fast block: no `pg_sys` call, nothing that can panic.
// The blocks are unsafe code by design (raw fcinfo access), like sql_function!'s body.
#[macro_export]
macro_rules! pure_sql_function {
    ($(#[$meta:meta])* fn $name:ident($fcinfo:ident) $body:block) => {
        $crate::__dc_finfo!($name);
        $(#[$meta])*
        #[unsafe(no_mangle)]
        #[allow(clippy::macro_metavars_in_unsafe)]
        pub unsafe extern "C" fn $name($fcinfo: ::pgrx::pg_sys::FunctionCallInfo) -> ::pgrx::pg_sys::Datum {
            #[allow(unused_unsafe)]
            unsafe { $body }
        }
    };
}

/// True when called as an aggregate transition/combine function, i.e. the state
/// argument belongs to the aggregate and may be modified in place.
///
/// The same test AggCheckCallContext makes (is `fcinfo->context` an AggState or a
/// WindowAggState node?), done inline: it runs once per input row.
#[inline(always)]
pub unsafe fn in_aggregate(fcinfo: pg_sys::FunctionCallInfo) -> bool {
    let context = (*fcinfo).context;
    if context.is_null() {
        return false;
    }
    let tag = (*context).type_;
    tag == pg_sys::NodeTag::T_AggState || tag == pg_sys::NodeTag::T_WindowAggState
}

#[inline(always)]
pub unsafe fn arg_is_null(fcinfo: pg_sys::FunctionCallInfo, n: usize) -> bool {
    (*fcinfo).args.as_slice((*fcinfo).nargs as usize)[n].isnull
}

#[inline(always)]
pub unsafe fn arg_datum(fcinfo: pg_sys::FunctionCallInfo, n: usize) -> pg_sys::Datum {
    (*fcinfo).args.as_slice((*fcinfo).nargs as usize)[n].value
}

#[inline(always)]
pub unsafe fn nargs(fcinfo: pg_sys::FunctionCallInfo) -> usize {
    (*fcinfo).nargs as usize
}

/// Argument `n`, or None when SQL NULL (or absent).
#[inline(always)]
pub unsafe fn arg(fcinfo: pg_sys::FunctionCallInfo, n: usize) -> Option<pg_sys::Datum> {
    if n >= nargs(fcinfo) || arg_is_null(fcinfo, n) {
        None
    } else {
        Some(arg_datum(fcinfo, n))
    }
}

#[inline(always)]
pub unsafe fn arg_i32(fcinfo: pg_sys::FunctionCallInfo, n: usize) -> Option<i32> {
    arg(fcinfo, n).map(|d| d.value() as i32)
}

#[inline(always)]
pub unsafe fn arg_i64(fcinfo: pg_sys::FunctionCallInfo, n: usize) -> Option<i64> {
    arg(fcinfo, n).map(|d| d.value() as i64)
}

#[inline(always)]
pub unsafe fn arg_f64(fcinfo: pg_sys::FunctionCallInfo, n: usize) -> Option<f64> {
    arg(fcinfo, n).map(|d| f64::from_bits(d.value() as u64))
}

#[inline(always)]
pub unsafe fn return_null(fcinfo: pg_sys::FunctionCallInfo) -> pg_sys::Datum {
    (*fcinfo).isnull = true;
    pg_sys::Datum::from(0usize)
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

// ---- varlena headers (little-endian) -------------------------------------------------

/// Plain in-memory value with a 4-byte header (not compressed, not external, not short).
#[inline(always)]
pub unsafe fn is_plain_4b(ptr: *const u8) -> bool {
    (*ptr & 0x03) == 0x00
}

/// Payload (after the header) of a plain 4-byte-header varlena.
#[inline(always)]
pub unsafe fn plain_4b_payload<'a>(ptr: *mut u8) -> &'a mut [u8] {
    let header = u32::from_le_bytes([*ptr, *ptr.add(1), *ptr.add(2), *ptr.add(3)]);
    let total = (header >> 2) as usize;
    std::slice::from_raw_parts_mut(ptr.add(4), total.saturating_sub(4))
}

/// Read-only view of a varlena datum's payload, detoasting/decompressing only when
/// needed (short 1-byte headers are read in place). The returned slice lives in the
/// current memory context or in the datum itself.
#[inline(always)]
pub unsafe fn varlena_bytes<'a>(datum: pg_sys::Datum) -> &'a [u8] {
    let ptr = datum.cast_mut_ptr::<u8>();
    let first = *ptr;
    if first & 0x03 == 0x00 {
        return plain_4b_payload(ptr);
    }
    if first & 0x01 == 0x01 && first != 0x01 {
        // short header: size in the upper 7 bits, includes the header byte
        let total = ((first >> 1) & 0x7F) as usize;
        return std::slice::from_raw_parts(ptr.add(1), total.saturating_sub(1));
    }
    // compressed or external (TOAST pointer): let PostgreSQL fetch/decompress it
    let detoasted = pg_sys::pg_detoast_datum_packed(ptr as *mut pg_sys::varlena) as *mut u8;
    varlena_bytes(pg_sys::Datum::from(detoasted))
}

/// A private, writable 4-byte-header copy of a varlena datum's payload (detoasted).
pub unsafe fn varlena_copy(datum: pg_sys::Datum) -> *mut u8 {
    let bytes = varlena_bytes(datum);
    bytes_to_varlena(bytes)
}

/// palloc a new varlena in the current memory context holding `bytes`.
pub unsafe fn bytes_to_varlena(bytes: &[u8]) -> *mut u8 {
    let ptr = alloc_varlena(bytes.len());
    std::ptr::copy_nonoverlapping(bytes.as_ptr(), ptr.add(4), bytes.len());
    ptr
}

/// palloc a varlena with a payload of `len` bytes (uninitialised payload).
pub unsafe fn alloc_varlena(len: usize) -> *mut u8 {
    let total = len + 4;
    if total > 0x3FFF_FFFF {
        crate::error::invalid_parameter(
            format!("value of {total} bytes exceeds the 1 GB varlena limit"),
            None,
        );
    }
    let ptr = pg_sys::palloc(total) as *mut u8;
    let header = (total as u32) << 2;
    std::ptr::copy_nonoverlapping(header.to_le_bytes().as_ptr(), ptr, 4);
    ptr
}

#[inline(always)]
pub fn ptr_datum(ptr: *mut u8) -> pg_sys::Datum {
    pg_sys::Datum::from(ptr)
}

/// A `text` datum from a Rust string (palloc'd in the current context).
pub unsafe fn text_datum(s: &str) -> pg_sys::Datum {
    ptr_datum(bytes_to_varlena(s.as_bytes()))
}

/// A `cstring` datum (palloc'd, NUL-terminated).
pub unsafe fn cstring_datum(s: &str) -> pg_sys::Datum {
    let ptr = pg_sys::palloc(s.len() + 1) as *mut u8;
    std::ptr::copy_nonoverlapping(s.as_ptr(), ptr, s.len());
    *ptr.add(s.len()) = 0;
    pg_sys::Datum::from(ptr)
}

/// Read a `cstring` argument.
pub unsafe fn cstring_arg<'a>(datum: pg_sys::Datum) -> &'a [u8] {
    std::ffi::CStr::from_ptr(datum.cast_mut_ptr::<std::ffi::c_char>()).to_bytes()
}

/// Read the remaining bytes of a `internal` StringInfo argument (binary recv) and
/// mark them consumed.
pub unsafe fn recv_bytes<'a>(datum: pg_sys::Datum) -> &'a [u8] {
    let buf = datum.cast_mut_ptr::<pg_sys::StringInfoData>();
    let start = (*buf).cursor as usize;
    let len = ((*buf).len as usize).saturating_sub(start);
    let bytes = std::slice::from_raw_parts(((*buf).data as *const u8).add(start), len);
    (*buf).cursor = (*buf).len;
    bytes
}

/// A `bytea` datum for a send function (identical layout to our varlena types).
pub unsafe fn bytea_datum(bytes: &[u8]) -> pg_sys::Datum {
    ptr_datum(bytes_to_varlena(bytes))
}

// ---- hex text form (`\x` + hex of the stored bytes), shared by the sketch types ----------

/// Parse the text form `\x` + hexadecimal digits of a value of type `type_name`.
pub fn parse_hex(
    text: &[u8],
    type_name: &str,
) -> Result<Vec<u8>, distributed_counter_core::CoreError> {
    use distributed_counter_core::CoreError;
    let syntax = || CoreError::invalid_text(format!("invalid input syntax for type {type_name}"));
    let Some(hex) = text.strip_prefix(b"\\x") else {
        let article = match type_name.as_bytes().first() {
            Some(b'a' | b'e' | b'h' | b'i' | b'o' | b'u') => "An",
            _ => "A",
        };
        return Err(syntax().with_detail(format!(
            "{article} {type_name} text value starts with \\x followed by hexadecimal digits."
        )));
    };
    if hex.len() % 2 != 0 {
        return Err(syntax().with_detail("odd number of hexadecimal digits"));
    }
    let digit = |c: u8, at: usize| -> Result<u8, CoreError> {
        match c {
            b'0'..=b'9' => Ok(c - b'0'),
            b'a'..=b'f' => Ok(c - b'a' + 10),
            b'A'..=b'F' => Ok(c - b'A' + 10),
            _ => {
                Err(syntax().with_detail(format!("invalid hexadecimal digit at offset {}", at + 2)))
            }
        }
    };
    let mut out = Vec::with_capacity(hex.len() / 2);
    for (i, pair) in hex.chunks_exact(2).enumerate() {
        out.push(digit(pair[0], 2 * i)? << 4 | digit(pair[1], 2 * i + 1)?);
    }
    Ok(out)
}

/// The text form `\x` + lowercase hexadecimal digits of `bytes`.
pub fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(2 + 2 * bytes.len());
    s.push_str("\\x");
    for &b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 15) as usize] as char);
    }
    s
}

// ---- comparisons on canonical bytes, shared by every varlena type -----------------------
//
// Each type's encoding is canonical (equal values <=> equal bytes), so equality, hashing
// and a (meaningless but total) order are the same byte operations for all of them; the
// SQL declarations of hll, cms, topk, gcounter and pncounter point at these symbols.

unsafe fn compare_varlena_args(fcinfo: pg_sys::FunctionCallInfo) -> std::cmp::Ordering {
    varlena_bytes(arg_datum(fcinfo, 0)).cmp(varlena_bytes(arg_datum(fcinfo, 1)))
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

/// A transition function's answer for a NULL input: the state unchanged (or NULL).
#[inline(always)]
pub unsafe fn state_or_null(fcinfo: pg_sys::FunctionCallInfo) -> pg_sys::Datum {
    if arg_is_null(fcinfo, 0) {
        return_null(fcinfo)
    } else {
        arg_datum(fcinfo, 0)
    }
}

/// An aggregate's transition state (argument 0) as a writable byte slice, if it may be
/// modified in place: we are called as an aggregate and the state is a plain
/// 4-byte-header value (not a short, compressed or TOASTed one).
#[inline(always)]
pub unsafe fn owned_state<'a>(fcinfo: pg_sys::FunctionCallInfo) -> Option<&'a mut [u8]> {
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
