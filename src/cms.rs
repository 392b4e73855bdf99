//! SQL glue for `cms` (count-min sketch, see `distributed_counter_core::cms`).
//!
//! The stored form has a fixed size for given eps/delta, so the aggregates update the
//! transition state (the `cms` value itself) in place when PostgreSQL calls them as
//! aggregates and the state is a plain 4-byte-header value, returning the same pointer
//! (no copy; docs/DEVELOPING.md, "The per-row paths"). Values hash exactly as `hll_hash_any`
//! (seed 0), so `cms_count(s, 5)` finds what `cms_add_agg(5::bigint)` added.
//!
//! The unweighted `cms_add_agg` keeps its state in the staged form of
//! `Cms::empty_staged` (docs/FORMAT.md) when it can be sure its final function
//! `cms_add_final` turns it back into a stored cms before anyone else sees it (see
//! [`staging_allowed`]): a row then updates one byte per sketch row in a 13.6 KB array
//! that stays in the L1 cache, instead of a 64-bit counter in a 109 KB one that does not
//! (with the stored form, the counter updates were about half of the aggregate's cost).

use crate::error::{invalid_parameter, null_count, OrRaise};
use crate::fmgr::*;
use crate::hashing::HashPlan;
use crate::sql_function;
use crate::sql_function_with_fast_path;
use distributed_counter_core::cms::{Cms, CmsDivisor};
use distributed_counter_core::hex::{parse_hex, to_hex};
use pgrx::pg_sys;
use std::ffi::c_int;

/// The documented defaults (docs/SQL.md) of `cms_empty` and the one-argument `cms_add_agg`.
const DEFAULT_EPS: f64 = 0.001;
const DEFAULT_DELTA: f64 = 0.01;

// ---- conversions ------------------------------------------------------------------------

/// The payload of a stored cms datum after an O(1) header check (layout, parameters).
/// Values reach SQL only through validating input functions, so the counters are trusted.
unsafe fn cms_bytes<'a>(datum: pg_sys::Datum) -> &'a [u8] {
    unsafe {
        let bytes = varlena_bytes(datum);
        Cms::read_header(bytes).or_raise();
        bytes
    }
}

unsafe fn cms_datum(bytes: &[u8]) -> pg_sys::Datum {
    unsafe { ptr_datum(bytes_to_varlena(bytes)) }
}

/// A copy of the sketch `bytes` that counts values of `plan`'s type: one of no known type
/// takes it (a format 1 value becomes format 2); one of another type is 42804.
fn typed_copy(bytes: &[u8], plan: &HashPlan, function: &str) -> Vec<u8> {
    let elem = Cms::elem_of(bytes).or_raise();
    Cms::check_elem(elem, plan.type_name(), function).or_raise();
    let elem = if elem.is_empty() {
        plan.type_name()
    } else {
        elem
    };
    Cms::with_elem(bytes, elem).or_raise()
}

#[inline(always)]
fn check_count(count: i64) -> u64 {
    if count < 0 {
        invalid_parameter(
            format!("cms count must not be negative, got {count}"),
            Some("A count-min sketch only counts additions; use a count >= 0."),
        );
    }
    count as u64
}

// ---- I/O ----------------------------------------------------------------------------------

sql_function! { fn cms_in(fcinfo) {
    let bytes = parse_hex(cstring_arg(arg_datum(fcinfo, 0)), "cms").or_raise();
    Cms::validate(&bytes).or_raise_text();
    cms_datum(&bytes)
}}

sql_function! { fn cms_out(fcinfo) {
    cstring_datum(&to_hex(varlena_bytes(arg_datum(fcinfo, 0))))
}}

sql_function! { fn cms_recv(fcinfo) {
    let bytes = recv_bytes(arg_datum(fcinfo, 0));
    Cms::validate(bytes).or_raise();
    cms_datum(bytes)
}}

sql_function! {
    /// `bytea -> cms` cast: validates (22P03 on bad bytes).
    fn cms_from_bytea(fcinfo) {
    let bytes = varlena_bytes(arg_datum(fcinfo, 0));
    Cms::validate(bytes).or_raise();
    cms_datum(bytes)
}}

// ---- functions --------------------------------------------------------------------------

sql_function! { fn cms_empty(fcinfo) {
    let eps = arg_f64(fcinfo, 0).unwrap_or(DEFAULT_EPS);
    let delta = arg_f64(fcinfo, 1).unwrap_or(DEFAULT_DELTA);
    cms_datum(&Cms::empty_encoded(eps, delta).or_raise())
}}

sql_function! {
    /// `cms_add(cms, anyelement, count DEFAULT 1)`. Not strict, under the one NULL rule
    /// of every add function: a NULL sketch is an empty one (`cms_empty()`), a NULL
    /// value adds nothing, a NULL count is an error (22004).
    fn cms_add(fcinfo) {
    if arg_is_null(fcinfo, 1) {
        // nothing to add (whatever the count, as the aggregates skip such a row)
        return match arg(fcinfo, 0) {
            Some(sketch) => sketch,
            None => cms_datum(&Cms::empty_encoded(DEFAULT_EPS, DEFAULT_DELTA).or_raise()),
        };
    }
    let count = if nargs(fcinfo) >= 3 { arg_i64(fcinfo, 2) } else { Some(1) };
    let count = check_count(count.unwrap_or_else(|| null_count("cms_add")));
    let plan = HashPlan::for_arg(fcinfo, 1);
    let mut bytes = if arg_is_null(fcinfo, 0) {
        typed_copy(&Cms::empty_encoded(DEFAULT_EPS, DEFAULT_DELTA).or_raise(), plan, "cms_add")
    } else {
        typed_copy(cms_bytes(arg_datum(fcinfo, 0)), plan, "cms_add")
    };
    let h = plan.hash(arg_datum(fcinfo, 1), 0);
    Cms::add_in_place(&mut bytes, h, count).or_raise();
    cms_datum(&bytes)
}}

sql_function! { fn cms_count(fcinfo) {
    let bytes = cms_bytes(arg_datum(fcinfo, 0));
    let plan = HashPlan::for_arg(fcinfo, 1);
    Cms::check_elem(Cms::elem_of(bytes).or_raise(), plan.type_name(), "cms_count").or_raise();
    let h = plan.hash(arg_datum(fcinfo, 1), 0);
    datum_i64(Cms::count_in_place(bytes, h).or_raise() as i64)
}}

sql_function! { fn cms_total(fcinfo) {
    datum_i64(Cms::read_header(varlena_bytes(arg_datum(fcinfo, 0))).or_raise().total as i64)
}}

sql_function! { fn cms_eps(fcinfo) {
    datum_f64(Cms::read_header(varlena_bytes(arg_datum(fcinfo, 0))).or_raise().eps)
}}

sql_function! { fn cms_delta(fcinfo) {
    datum_f64(Cms::read_header(varlena_bytes(arg_datum(fcinfo, 0))).or_raise().delta)
}}

/// A copy of sketch `a` (format 2) with the element type it has merged with `b`.
fn merged_copy(a: &[u8], b: &[u8]) -> Vec<u8> {
    let elem = Cms::merged_elem(Cms::elem_of(a).or_raise(), Cms::elem_of(b).or_raise()).or_raise();
    Cms::with_elem(a, elem).or_raise()
}

sql_function! { fn cms_union(fcinfo) {
    let b = varlena_bytes(arg_datum(fcinfo, 1));
    let mut a = merged_copy(cms_bytes(arg_datum(fcinfo, 0)), b);
    Cms::merge_in_place(&mut a, b).or_raise();
    cms_datum(&a)
}}

sql_function! { fn cms_print(fcinfo) {
    let bytes = varlena_bytes(arg_datum(fcinfo, 0));
    let h = Cms::read_header(bytes).or_raise();
    let elem = Cms::elem_of(bytes).or_raise();
    let of = if elem.is_empty() {
        "values of a type not known yet".to_string()
    } else {
        format!("{} values", String::from_utf8_lossy(elem))
    };
    text_datum(&format!(
        "cms v{}: {of}, eps {}, delta {}, width {}, depth {}, total {}, {} bytes",
        bytes[0], h.eps, h.delta, h.width, h.depth, h.total, bytes.len()
    ))
}}

// ---- aggregates ---------------------------------------------------------------------------

/// The remainder helper of the sketch width this backend last added to, so the per-row
/// path multiplies instead of dividing. A PostgreSQL backend is single-threaded; a stale
/// or foreign divisor is harmless (core recomputes one that does not fit the width).
static mut LAST_DIVISOR: Option<CmsDivisor> = None;

#[inline(always)]
unsafe fn divisor_for(state: &[u8]) -> CmsDivisor {
    unsafe {
        let width = match state.get(2..6) {
            Some(b) => u32::from_le_bytes([b[0], b[1], b[2], b[3]]),
            None => 1,
        };
        match LAST_DIVISOR {
            Some(d) if d.width() == width => d,
            _ => {
                let d = CmsDivisor::new(width);
                LAST_DIVISOR = Some(d);
                d
            }
        }
    }
}

sql_function_with_fast_path! {
    /// Transition of every `cms_add_agg`: (state, value), (state, value, eps, delta) and
    /// (state, value, count, eps, delta). eps/delta are read when the state is created
    /// (first non-NULL value of a group); NULL eps/delta mean the defaults. A NULL value
    /// adds nothing; a NULL count with a value is an error (22004).
    fn cms_add_trans(fcinfo)
    fast {
        // unweighted rows into the aggregate's own sketch; the first row, weighted adds
        // and anything unusual take the guarded path
        if nargs(fcinfo) == 5 {
            None
        } else {
            match (HashPlan::hash_arg_pure(fcinfo, 1), owned_state(fcinfo)) {
                (Some(h), Some(state)) => {
                    let divisor = divisor_for(state);
                    let added = if Cms::is_staged(state) {
                        Cms::add_one_staged(state, &divisor, h)
                    } else {
                        Cms::add_one_in_place(state, &divisor, h)
                    };
                    added.then(|| arg_datum(fcinfo, 0))
                }
                _ => None,
            }
        }
    }
    slow {
    if arg_is_null(fcinfo, 1) {
        return state_or_null(fcinfo);
    }
    let weighted = nargs(fcinfo) == 5;
    let count = if weighted {
        check_count(arg_i64(fcinfo, 2).unwrap_or_else(|| null_count("cms_add_agg")))
    } else {
        1
    };
    let plan = HashPlan::for_arg(fcinfo, 1);
    let h = plan.hash(arg_datum(fcinfo, 1), 0);
    if let Some(state) = owned_state(fcinfo) {
        // the state was created for this call site's type (below), unless an aggregate
        // of the user's starts from an INITCOND sketch
        Cms::check_elem(Cms::elem_of(state).or_raise(), plan.type_name(), "cms_add_agg").or_raise();
        let divisor = divisor_for(state);
        if Cms::is_staged(state) {
            // only the unweighted aggregates stage their state (count is 1)
            Cms::add_one_staged_checked(state, &divisor, h).or_raise();
        } else {
            Cms::add_in_place_with(state, &divisor, h, count).or_raise();
        }
        return arg_datum(fcinfo, 0);
    }
    let mut bytes = if arg_is_null(fcinfo, 0) {
        let at = if weighted { 3 } else { 2 };
        let eps = arg_f64(fcinfo, at).unwrap_or(DEFAULT_EPS);
        let delta = arg_f64(fcinfo, at + 1).unwrap_or(DEFAULT_DELTA);
        if !weighted && staging_allowed(fcinfo) {
            let staged = Cms::empty_staged(eps, delta).or_raise();
            let mut staged = Cms::with_elem(&staged, plan.type_name()).or_raise();
            let divisor = divisor_for(&staged);
            Cms::add_one_staged_checked(&mut staged, &divisor, h).or_raise();
            return cms_datum(&staged);
        }
        typed_copy(&Cms::empty_encoded(eps, delta).or_raise(), plan, "cms_add_agg")
    } else {
        typed_copy(cms_bytes(arg_datum(fcinfo, 0)), plan, "cms_add_agg")
    };
    Cms::add_in_place(&mut bytes, h, count).or_raise();
    // A new value in CurrentMemoryContext: PostgreSQL copies it into the aggregate
    // context once; from the next row on the state is updated in place.
    cms_datum(&bytes)
}}

sql_function! {
    /// Final function of the unweighted `cms_add_agg`s (strict): the stored form of the
    /// state. A staged state is converted into a new value (the state itself is left as
    /// it is: FINALFUNC_MODIFY = READ_ONLY holds); a stored one is returned unchanged.
    fn cms_add_final(fcinfo) {
    let bytes = varlena_bytes(arg_datum(fcinfo, 0));
    if Cms::is_staged(bytes) {
        cms_datum(&Cms::unstage(bytes).or_raise())
    } else {
        arg_datum(fcinfo, 0)
    }
}}

/// Whether this call of `cms_add_trans` may create its state in the staged form, which
/// only `cms_add_final` turns back into a cms: when it runs for a plain (not partial)
/// Aggref of an aggregate whose transition function is this very function and whose
/// final function is `cms_add_final`, and that does not share its state with other
/// aggregates. Not for a partial aggregate of a parallel plan (its state goes to the
/// combine function, no final function), a window aggregate (no Aggref), a state shared
/// with another aggregate built on this transition function, or another aggregate that
/// wraps this transition function (for example Citus's worker_partial_agg, which
/// outputs the state itself). Decided once per call
/// site and cached with its hash plan.
unsafe fn staging_allowed(fcinfo: pg_sys::FunctionCallInfo) -> bool {
    unsafe {
        let plan = HashPlan::for_arg(fcinfo, 1);
        match plan.site_flag.get() {
            1 => return true,
            2 => return false,
            _ => {}
        }
        let allowed = staging_allowed_here(fcinfo);
        plan.site_flag.set(if allowed { 1 } else { 2 });
        allowed
    }
}

unsafe fn staging_allowed_here(fcinfo: pg_sys::FunctionCallInfo) -> bool {
    unsafe {
        let aggref = pg_sys::AggGetAggref(fcinfo);
        // A transition state shared with other aggregates (same inputs, transition and
        // combine functions) is finished by each of their final functions, and
        // AggGetAggref shows only the first of them: never stage one.
        if aggref.is_null()
            || (*aggref).aggsplit != pg_sys::AggSplit::AGGSPLIT_SIMPLE
            || pg_sys::AggStateIsShared(fcinfo)
        {
            return false;
        }
        let cache = pg_sys::SysCacheIdentifier::AGGFNOID as c_int;
        let tuple = pg_sys::SearchSysCache1(cache, pg_sys::Datum::from((*aggref).aggfnoid));
        if tuple.is_null() {
            return false;
        }
        // pg_aggregate: attribute 4 is aggtransfn, 5 is aggfinalfn (regproc, never NULL)
        let mut isnull = false;
        let transfn = pg_sys::SysCacheGetAttr(cache, tuple, 4, &mut isnull).value() as u32;
        let finalfn = pg_sys::SysCacheGetAttr(cache, tuple, 5, &mut isnull).value() as u32;
        pg_sys::ReleaseSysCache(tuple);
        if pg_sys::Oid::from(transfn) != (*(*fcinfo).flinfo).fn_oid || finalfn == 0 {
            return false;
        }
        let mut finfo: pg_sys::FmgrInfo = std::mem::zeroed();
        pg_sys::fmgr_info(pg_sys::Oid::from(finalfn), &mut finfo);
        finfo.fn_addr.map(|f| f as *const ()) == Some(cms_add_final as *const ())
    }
}

sql_function! {
    /// `cms_union_agg` transition and the combine function of every cms aggregate.
    fn cms_union_trans(fcinfo) {
    if arg_is_null(fcinfo, 1) {
        return state_or_null(fcinfo);
    }
    let input = varlena_bytes(arg_datum(fcinfo, 1));
    if arg_is_null(fcinfo, 0) {
        // First value: validate it and take a private copy (in format 2).
        Cms::validate(input).or_raise();
        return cms_datum(&merged_copy(input, input));
    }
    if let Some(state) = owned_state(fcinfo) {
        // in place, unless the state has to take the input's element type (a state of
        // no known type yet: its trailer grows)
        let elem = Cms::elem_of(state).or_raise();
        if !elem.is_empty() || Cms::elem_of(input).or_raise().is_empty() {
            Cms::merge_in_place(state, input).or_raise();
            return arg_datum(fcinfo, 0);
        }
    }
    let mut bytes = merged_copy(cms_bytes(arg_datum(fcinfo, 0)), input);
    Cms::merge_in_place(&mut bytes, input).or_raise();
    cms_datum(&bytes)
}}
