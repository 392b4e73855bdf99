//! SQL glue for the `hll` type (UltraLogLog, see `distributed_counter_core::hll`).
//!
//! Functions return the compressed stored form (format version 2). Aggregates keep the
//! `hll` value itself as their transition state, in format version 1 (raw registers or
//! tokens, see [`hll_state_datum`]), and compress it in their final function
//! `hll_compact`. When PostgreSQL
//! calls a transition function as an aggregate (AggCheckCallContext) and the state is a
//! plain 4-byte-header value we made, a dense state is updated in place and the same
//! pointer is returned, so PostgreSQL neither copies nor frees it (docs/DEVELOPING.md, "The per-row paths"). Sparse
//! states grow by returning a new value (PostgreSQL copies it into the aggregate
//! context and frees the old one); that happens at most `sparse_capacity(p)` times.

use crate::error::{invalid_parameter, OrRaise};
use crate::fmgr::*;
use crate::guc;
use crate::hashing::HashPlan;
use crate::sql_function;
use crate::sql_function_with_fast_path;
use distributed_counter_core::hex::{parse_hex, to_hex};
use distributed_counter_core::hll::{self as ull, Hll};
use distributed_counter_core::CoreError;
use pgrx::pg_sys;

// ---- conversions ------------------------------------------------------------------

/// Decode a stored hll datum (validating it).
unsafe fn hll_arg(datum: pg_sys::Datum) -> Hll {
    unsafe { Hll::decode(varlena_bytes(datum)).or_raise() }
}

/// A result value: the compressed stored form (version 2).
unsafe fn hll_datum(h: &Hll) -> pg_sys::Datum {
    unsafe { ptr_datum(bytes_to_varlena(&h.encode())) }
}

/// An aggregate's working state: the version-1 form, which the transition functions
/// update in place.
unsafe fn hll_state_datum(h: &Hll) -> pg_sys::Datum {
    unsafe { ptr_datum(bytes_to_varlena(&h.encode_state())) }
}

fn default_precision() -> i32 {
    guc::HLL_DEFAULT_PRECISION.get()
}

/// Fit a value to a column's `hll(p)` typmod. Sparse sketches move to any precision
/// losslessly, dense ones only down (precision reduction is exact); raising a dense
/// sketch's precision is impossible and an error.
fn apply_typmod(h: Hll, typmod: i32) -> Result<Hll, CoreError> {
    if typmod < 0 || h.precision() as i32 == typmod {
        return Ok(h);
    }
    h.with_precision(typmod).map_err(|e| {
        e.with_hint(format!(
            "The target type is hll({typmod}); a dense sketch can only become a sketch of its own or a lower precision."
        ))
    })
}

// ---- I/O ------------------------------------------------------------------------------

// The `\x` + hex text form: distributed_counter_core::hex.

/// An input value, validated. Format 1 keeps the given bytes (its decoder accepts only
/// the canonical form), so values stored before format 2 dump, restore and copy
/// exactly. Format 2 is re-encoded: its decoder accepts other encodings of the same
/// sketch (any Rice parameter, a longer payload kind), and `=` compares bytes, so only
/// the canonical form may be stored; every value this extension writes is canonical and
/// round-trips unchanged. A column's typmod that changes the precision re-encodes too.
unsafe fn input_datum(bytes: &[u8], h: Hll, typmod: i32) -> pg_sys::Datum {
    unsafe {
        if typmod >= 0 && h.precision() as i32 != typmod {
            hll_datum(&apply_typmod(h, typmod).or_raise())
        } else if bytes.first() == Some(&ull::FORMAT_VERSION) {
            ptr_datum(bytes_to_varlena(bytes))
        } else {
            hll_datum(&h)
        }
    }
}

sql_function! { fn hll_in(fcinfo) {
    let text = cstring_arg(arg_datum(fcinfo, 0));
    let typmod = arg_i32(fcinfo, 2).unwrap_or(-1);
    let bytes = parse_hex(text, "hll").or_raise();
    let h = Hll::decode(&bytes).or_raise_text();
    input_datum(&bytes, h, typmod)
}}

sql_function! { fn hll_out(fcinfo) {
    cstring_datum(&to_hex(varlena_bytes(arg_datum(fcinfo, 0))))
}}

sql_function! { fn hll_recv(fcinfo) {
    let typmod = arg_i32(fcinfo, 2).unwrap_or(-1);
    let bytes = recv_bytes(arg_datum(fcinfo, 0));
    let h = Hll::decode(bytes).or_raise();
    input_datum(bytes, h, typmod)
}}

sql_function! {
    /// `bytea -> hll` cast: validates (22P03 on bad bytes); format-1 bytes are kept as
    /// given, format-2 bytes re-encoded canonically (`input_datum`).
    fn hll_from_bytea(fcinfo) {
    let bytes = varlena_bytes(arg_datum(fcinfo, 0));
    let h = Hll::decode(bytes).or_raise();
    input_datum(bytes, h, -1)
}}

sql_function! { fn hll_typmod_in(fcinfo) {
    let arr = arg_datum(fcinfo, 0).cast_mut_ptr::<pg_sys::ArrayType>();
    let mut n: std::ffi::c_int = 0;
    let mods = pg_sys::ArrayGetIntegerTypmods(arr, &mut n);
    if n != 1 {
        invalid_parameter("hll takes exactly one type modifier, the precision", Some("Write hll(p) with p between 4 and 18."));
    }
    let p = *mods;
    if !(ull::MIN_P as i32..=ull::MAX_P as i32).contains(&p) {
        invalid_parameter(format!("hll precision {p} is out of range"), Some("Use a precision between 4 and 18 (2^p registers)."));
    }
    pg_sys::Datum::from(p)
}}

sql_function! { fn hll_typmod_out(fcinfo) {
    let typmod = arg_datum(fcinfo, 0).value() as i32;
    cstring_datum(&if typmod >= 0 { format!("({typmod})") } else { String::new() })
}}

sql_function! {
    /// Length-coercion cast `hll(hll, typmod, explicit)`, applied on assignment to `hll(p)`.
    fn hll_enforce_typmod(fcinfo) {
    let typmod = arg_i32(fcinfo, 1).unwrap_or(-1);
    let datum = arg_datum(fcinfo, 0);
    let bytes = varlena_bytes(datum);
    if typmod < 0 || bytes.get(2).map(|&p| p as i32) == Some(typmod) {
        return datum;
    }
    hll_datum(&apply_typmod(Hll::decode(bytes).or_raise(), typmod).or_raise())
}}

// ---- functions ---------------------------------------------------------------------

sql_function! { fn hll_empty(fcinfo) {
    let p = arg_i32(fcinfo, 0).unwrap_or_else(default_precision);
    hll_datum(&Hll::new(p).or_raise())
}}

/// The precision of the empty sketch `hll_add` starts from when given NULL.
const NULL_SKETCH_PRECISION: i32 = 12;

sql_function! {
    /// `hll_add(hll, hll_hashval)` and `hll || hll_hashval`. Not strict, under the one
    /// NULL rule of every add function: a NULL sketch is an empty one of precision 12
    /// (fixed: the function is IMMUTABLE; a typed column `hll(p)` converts the sparse
    /// result), a NULL hash adds nothing.
    fn hll_add(fcinfo) {
    let mut h = match arg(fcinfo, 0) {
        Some(d) => hll_arg(d),
        None => Hll::new(NULL_SKETCH_PRECISION).or_raise(),
    };
    if let Some(v) = arg(fcinfo, 1) {
        h.add_hash(v.value() as u64);
    }
    hll_datum(&h)
}}

sql_function! { fn hll_union(fcinfo) {
    let mut a = hll_arg(arg_datum(fcinfo, 0));
    a.union(&hll_arg(arg_datum(fcinfo, 1)));
    hll_datum(&a)
}}

sql_function! { fn hll_cardinality(fcinfo) {
    datum_f64(hll_arg(arg_datum(fcinfo, 0)).estimate())
}}

sql_function! { fn hll_precision(fcinfo) {
    pg_sys::Datum::from(hll_arg(arg_datum(fcinfo, 0)).precision() as i32)
}}

sql_function! { fn hll_print(fcinfo) {
    text_datum(&Hll::describe(varlena_bytes(arg_datum(fcinfo, 0))).or_raise())
}}

sql_function! {
    /// `hll_compact(hll)`: the same sketch in the compressed stored form (format 2),
    /// and the final function of `hll_add_agg` and `hll_union_agg`. A value already in
    /// format 2 is returned as it is.
    fn hll_compact(fcinfo) {
    let datum = arg_datum(fcinfo, 0);
    if varlena_bytes(datum).first() == Some(&ull::FORMAT_VERSION_2) {
        return datum;
    }
    hll_datum(&hll_arg(datum))
}}

sql_function! { fn hll_cardinality_bounds(fcinfo) {
    let h = hll_arg(arg_datum(fcinfo, 0));
    let confidence = arg_f64(fcinfo, 1).unwrap_or(0.95);
    let (lower, upper) = h.bounds(confidence).or_raise();
    float8_record(fcinfo, &[h.estimate(), lower, upper])
}}

/// Build the composite result of a function with float8 OUT parameters.
unsafe fn float8_record(fcinfo: pg_sys::FunctionCallInfo, values: &[f64]) -> pg_sys::Datum {
    unsafe {
        let mut tupdesc: pg_sys::TupleDesc = std::ptr::null_mut();
        if pg_sys::get_call_result_type(fcinfo, std::ptr::null_mut(), &mut tupdesc)
            != pg_sys::TypeFuncClass::TYPEFUNC_COMPOSITE
        {
            invalid_parameter(
                "function returning record called in a context that cannot accept it",
                None,
            );
        }
        let tupdesc = pg_sys::BlessTupleDesc(tupdesc);
        let mut datums: Vec<pg_sys::Datum> = values.iter().map(|&v| datum_f64(v)).collect();
        let mut nulls = vec![false; values.len()];
        let tuple = pg_sys::heap_form_tuple(tupdesc, datums.as_mut_ptr(), nulls.as_mut_ptr());
        pg_sys::HeapTupleHeaderGetDatum((*tuple).t_data)
    }
}

// ---- aggregates -----------------------------------------------------------------------

/// Add hash `h` to the state (argument 0), creating it at precision `p` if NULL.
#[inline(always)]
unsafe fn add_to_state(
    fcinfo: pg_sys::FunctionCallInfo,
    h: u64,
    p: impl FnOnce() -> i32,
) -> pg_sys::Datum {
    unsafe {
        if let Some(state) = owned_state(fcinfo) {
            if ull::dense_add_in_place(state, h) {
                return arg_datum(fcinfo, 0);
            }
            if ull::sparse_contains_hash(state, h) {
                return arg_datum(fcinfo, 0);
            }
        }
        let mut state = if arg_is_null(fcinfo, 0) {
            Hll::new(p()).or_raise()
        } else {
            hll_arg(arg_datum(fcinfo, 0))
        };
        state.add_hash(h);
        hll_state_datum(&state)
    }
}

/// The per-row fast path of the add aggregates: the state is the aggregate's own plain
/// dense sketch; add `h` in place. Guard-free (see `sql_function_with_fast_path!`):
/// inline header checks, shifts bounded by the checked precision, `get_mut`.
#[inline(always)]
unsafe fn add_fast(fcinfo: pg_sys::FunctionCallInfo, h: u64) -> Option<pg_sys::Datum> {
    unsafe {
        let state = owned_state(fcinfo)?;
        ull::dense_add_in_place(state, h).then(|| arg_datum(fcinfo, 0))
    }
}

/// [`add_fast`] of the `hll_hashval` argument (hll_add_agg): None when it is NULL.
#[inline(always)]
unsafe fn add_hashval_fast(fcinfo: pg_sys::FunctionCallInfo) -> Option<pg_sys::Datum> {
    unsafe {
        if arg_is_null(fcinfo, 1) {
            return None;
        }
        add_fast(fcinfo, arg_datum(fcinfo, 1).value() as u64)
    }
}

sql_function_with_fast_path! {
    /// `hll_add_agg(hll_hashval)` transition.
    fn hll_add_trans(fcinfo)
    fast { add_hashval_fast(fcinfo) }
    slow {
    if arg_is_null(fcinfo, 1) {
        return state_or_null(fcinfo);
    }
    add_to_state(fcinfo, arg_datum(fcinfo, 1).value() as u64, default_precision)
}}

sql_function_with_fast_path! {
    /// `hll_add_agg(hll_hashval, p)` transition.
    fn hll_add_trans_p(fcinfo)
    fast { add_hashval_fast(fcinfo) }
    slow {
    if arg_is_null(fcinfo, 1) {
        return state_or_null(fcinfo);
    }
    let p = arg_i32(fcinfo, 2);
    add_to_state(fcinfo, arg_datum(fcinfo, 1).value() as u64, || p.unwrap_or_else(default_precision))
}}

sql_function_with_fast_path! {
    /// `approx_count_distinct(anyelement)` transition: hashes inside (as hll_hash_any).
    fn approx_count_distinct_trans(fcinfo)
    fast { HashPlan::hash_arg_pure(fcinfo, 1).and_then(|h| add_fast(fcinfo, h)) }
    slow {
    if arg_is_null(fcinfo, 1) {
        return state_or_null(fcinfo);
    }
    let plan = HashPlan::for_arg(fcinfo, 1);
    let h = plan.hash(arg_datum(fcinfo, 1), 0);
    add_to_state(fcinfo, h, default_precision)
}}

sql_function! {
    /// `hll_union_agg` transition and the combine function of every hll aggregate.
    fn hll_union_trans(fcinfo) {
    if arg_is_null(fcinfo, 1) {
        return state_or_null(fcinfo);
    }
    let input = arg_datum(fcinfo, 1);
    if arg_is_null(fcinfo, 0) {
        // First value: validate it and take a private copy in the state form.
        return hll_state_datum(&hll_arg(input));
    }
    if let Some(state) = owned_state(fcinfo) {
        let bytes = varlena_bytes(input);
        if ull::dense_merge_v2_in_place(state, bytes)
            || ull::dense_merge_in_place(state, bytes)
            || ull::dense_merge_sparse_in_place(state, bytes)
        {
            return arg_datum(fcinfo, 0);
        }
    }
    let mut state = hll_arg(arg_datum(fcinfo, 0));
    state.union(&hll_arg(input));
    hll_state_datum(&state)
}}

sql_function! {
    /// Final function of `approx_count_distinct`: no rows -> 0, like count().
    fn hll_agg_count(fcinfo) {
    if arg_is_null(fcinfo, 0) {
        return datum_i64(0);
    }
    datum_i64(hll_arg(arg_datum(fcinfo, 0)).estimate().round() as i64)
}}
