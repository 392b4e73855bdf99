//! SQL glue for the CRDT counters `gcounter` and `pncounter`
//! (see `distributed_counter_core::crdt`; byte layout in docs/FORMAT.md).
//!
//! * Text I/O is the canonical JSON form, binary send/recv the versioned stored bytes.
//! * `=` compares stored bytes: the encoding is canonical, so equal counters have equal
//!   bytes (and the hash opclass hashes those bytes).
//! * The merge aggregates keep the SQL type itself as state. When called as an aggregate
//!   with a state we made, an input whose nodes the state already holds is merged by
//!   raising counts in place (no allocation, same pointer returned, so PostgreSQL neither
//!   copies nor frees it); anything else takes the decode/merge/encode path.
//! * `crdt_merge_trigger()` works on the tuple directly (no SQL name lookup), so it runs
//!   in a logical-replication apply worker whose search_path is empty.

use crate::error::{invalid_parameter, OrRaise};
use crate::fmgr::*;
use crate::guc;
use crate::sql_function;
use distributed_counter_core::crdt::in_place::merge_in_place;
use distributed_counter_core::crdt::{GCounter, PNCounter, KIND_GCOUNTER, KIND_PNCOUNTER};
use distributed_counter_core::Result as CoreResult;
use pgrx::pg_sys;
use pgrx::PgSqlErrorCode;

// ---- the two types behind one interface ------------------------------------------------

/// What the glue needs from a counter type; lets one generic body serve both types.
trait Counter: Sized + PartialEq + Default {
    fn decode(bytes: &[u8]) -> CoreResult<Self>;
    fn encode(&self) -> Vec<u8>;
    fn from_json(text: &str) -> CoreResult<Self>;
    fn to_json(&self) -> String;
    fn merge_changed(&mut self, other: &Self) -> CoreResult<bool>;
    fn value(&self) -> CoreResult<i64>;
    /// Merge the stored payload `input` into `state` in place (core's `merge_in_place`).
    fn merge_in_place(state: &mut [u8], input: &[u8]) -> bool;
}

impl Counter for GCounter {
    fn decode(bytes: &[u8]) -> CoreResult<Self> {
        GCounter::decode(bytes)
    }
    fn encode(&self) -> Vec<u8> {
        GCounter::encode(self)
    }
    fn from_json(text: &str) -> CoreResult<Self> {
        GCounter::from_json(text)
    }
    fn to_json(&self) -> String {
        GCounter::to_json(self)
    }
    fn merge_changed(&mut self, other: &Self) -> CoreResult<bool> {
        GCounter::merge_changed(self, other)
    }
    fn value(&self) -> CoreResult<i64> {
        GCounter::value(self)
    }
    fn merge_in_place(state: &mut [u8], input: &[u8]) -> bool {
        merge_in_place(state, input, KIND_GCOUNTER, 1)
    }
}

impl Counter for PNCounter {
    fn decode(bytes: &[u8]) -> CoreResult<Self> {
        PNCounter::decode(bytes)
    }
    fn encode(&self) -> Vec<u8> {
        PNCounter::encode(self)
    }
    fn from_json(text: &str) -> CoreResult<Self> {
        PNCounter::from_json(text)
    }
    fn to_json(&self) -> String {
        PNCounter::to_json(self)
    }
    fn merge_changed(&mut self, other: &Self) -> CoreResult<bool> {
        PNCounter::merge_changed(self, other)
    }
    fn value(&self) -> CoreResult<i64> {
        PNCounter::value(self)
    }
    fn merge_in_place(state: &mut [u8], input: &[u8]) -> bool {
        merge_in_place(state, input, KIND_PNCOUNTER, 2)
    }
}

/// Decode (and so validate) a stored counter datum.
unsafe fn counter_arg<C: Counter>(datum: pg_sys::Datum) -> C {
    unsafe { C::decode(varlena_bytes(datum)).or_raise() }
}

unsafe fn counter_datum<C: Counter>(c: &C) -> pg_sys::Datum {
    unsafe { ptr_datum(bytes_to_varlena(&c.encode())) }
}

/// Argument `n` as a counter; SQL NULL is the empty counter.
unsafe fn counter_arg_or_empty<C: Counter>(fcinfo: pg_sys::FunctionCallInfo, n: usize) -> C {
    unsafe { arg(fcinfo, n).map_or_else(C::default, |d| counter_arg(d)) }
}

// ---- node ids -----------------------------------------------------------------------------

/// The node credited when none is given: `distributed_counter.node_id`, or the cluster's
/// system identifier (decimal) when that is empty.
fn default_node() -> String {
    match guc::NODE_ID.get() {
        Some(id) if !id.as_bytes().is_empty() => match id.to_str() {
            Ok(s) => s.to_string(),
            Err(_) => invalid_parameter(
                "distributed_counter.node_id is not valid UTF-8",
                Some("Set distributed_counter.node_id to 1 to 63 bytes of UTF-8 text."),
            ),
        },
        _ => unsafe { pg_sys::GetSystemIdentifier() }.to_string(),
    }
}

/// The `node text` argument at `n`, or the default node when NULL / absent.
unsafe fn node_arg(fcinfo: pg_sys::FunctionCallInfo, n: usize) -> String {
    unsafe {
        match arg(fcinfo, n) {
            None => default_node(),
            Some(d) => match std::str::from_utf8(varlena_bytes(d)) {
                Ok(s) => s.to_string(),
                Err(_) => invalid_parameter("node id is not valid UTF-8", None),
            },
        }
    }
}

/// The `n int8` argument at `n`; NULL is an error (a NULL would otherwise wipe a
/// counter column in `SET c = gcounter_increment(c, $1)`).
unsafe fn amount_arg(fcinfo: pg_sys::FunctionCallInfo, n: usize) -> i64 {
    unsafe {
        match arg_i64(fcinfo, n) {
            Some(v) => v,
            None if n >= nargs(fcinfo) => 1,
            None => {
                pgrx::ereport!(
                    ERROR,
                    PgSqlErrorCode::ERRCODE_NULL_VALUE_NOT_ALLOWED,
                    "the amount to count must not be NULL"
                );
            }
        }
    }
}

// ---- I/O ----------------------------------------------------------------------------------

unsafe fn counter_in<C: Counter>(
    fcinfo: pg_sys::FunctionCallInfo,
    type_name: &str,
) -> pg_sys::Datum {
    unsafe {
        let text = cstring_arg(arg_datum(fcinfo, 0));
        let Ok(text) = std::str::from_utf8(text) else {
            pgrx::ereport!(
                ERROR,
                PgSqlErrorCode::ERRCODE_INVALID_TEXT_REPRESENTATION,
                format!("malformed {type_name} literal: input is not valid UTF-8")
            );
        };
        counter_datum(&C::from_json(text).or_raise_text())
    }
}

unsafe fn counter_out<C: Counter>(fcinfo: pg_sys::FunctionCallInfo) -> pg_sys::Datum {
    unsafe { cstring_datum(&counter_arg::<C>(arg_datum(fcinfo, 0)).to_json()) }
}

unsafe fn counter_recv<C: Counter>(fcinfo: pg_sys::FunctionCallInfo) -> pg_sys::Datum {
    unsafe {
        let bytes = recv_bytes(arg_datum(fcinfo, 0));
        C::decode(bytes).or_raise();
        // Canonical: the accepted bytes are the stored form.
        ptr_datum(bytes_to_varlena(bytes))
    }
}

/// `bytea -> gcounter/pncounter` casts: the stored bytes, validated (22P03).
unsafe fn counter_from_bytea<C: Counter>(fcinfo: pg_sys::FunctionCallInfo) -> pg_sys::Datum {
    unsafe {
        let bytes = varlena_bytes(arg_datum(fcinfo, 0));
        C::decode(bytes).or_raise();
        ptr_datum(bytes_to_varlena(bytes))
    }
}

sql_function! { fn gcounter_from_bytea(fcinfo) { counter_from_bytea::<GCounter>(fcinfo) }}
sql_function! { fn pncounter_from_bytea(fcinfo) { counter_from_bytea::<PNCounter>(fcinfo) }}
sql_function! { fn gcounter_in(fcinfo) { counter_in::<GCounter>(fcinfo, "gcounter") }}
sql_function! { fn gcounter_out(fcinfo) { counter_out::<GCounter>(fcinfo) }}
sql_function! { fn gcounter_recv(fcinfo) { counter_recv::<GCounter>(fcinfo) }}
sql_function! { fn pncounter_in(fcinfo) { counter_in::<PNCounter>(fcinfo, "pncounter") }}
sql_function! { fn pncounter_out(fcinfo) { counter_out::<PNCounter>(fcinfo) }}
sql_function! { fn pncounter_recv(fcinfo) { counter_recv::<PNCounter>(fcinfo) }}

sql_function! {
    /// `gcounter -> pncounter` cast: the increments become the P part.
    fn pncounter_from_gcounter(fcinfo) {
    let g: GCounter = counter_arg(arg_datum(fcinfo, 0));
    counter_datum(&PNCounter::from_parts(g, GCounter::new()))
}}

// ---- functions ----------------------------------------------------------------------------

sql_function! {
    /// `gcounter_increment(gcounter, n int8 DEFAULT 1, node text DEFAULT NULL)`;
    /// a NULL counter is empty, a NULL node the default node.
    fn gcounter_increment(fcinfo) {
    let mut g: GCounter = counter_arg_or_empty(fcinfo, 0);
    let n = amount_arg(fcinfo, 1);
    g.increment(&node_arg(fcinfo, 2), n).or_raise();
    counter_datum(&g)
}}

sql_function! { fn pncounter_increment(fcinfo) {
    let mut c: PNCounter = counter_arg_or_empty(fcinfo, 0);
    let n = amount_arg(fcinfo, 1);
    c.increment(&node_arg(fcinfo, 2), n).or_raise();
    counter_datum(&c)
}}

sql_function! { fn pncounter_decrement(fcinfo) {
    let mut c: PNCounter = counter_arg_or_empty(fcinfo, 0);
    let n = amount_arg(fcinfo, 1);
    c.decrement(&node_arg(fcinfo, 2), n).or_raise();
    counter_datum(&c)
}}

unsafe fn counter_merge<C: Counter>(fcinfo: pg_sys::FunctionCallInfo) -> pg_sys::Datum {
    unsafe {
        let a = arg_datum(fcinfo, 0);
        let b = arg_datum(fcinfo, 1);
        let mut m: C = counter_arg(a);
        if m.merge_changed(&counter_arg(b)).or_raise() {
            counter_datum(&m)
        } else {
            a // unchanged (and validated): hand back the left value itself
        }
    }
}

sql_function! { fn gcounter_merge(fcinfo) { counter_merge::<GCounter>(fcinfo) }}
sql_function! { fn pncounter_merge(fcinfo) { counter_merge::<PNCounter>(fcinfo) }}

unsafe fn counter_value<C: Counter>(fcinfo: pg_sys::FunctionCallInfo) -> pg_sys::Datum {
    unsafe { datum_i64(counter_arg::<C>(arg_datum(fcinfo, 0)).value().or_raise()) }
}

sql_function! { fn gcounter_value(fcinfo) { counter_value::<GCounter>(fcinfo) }}
sql_function! { fn pncounter_value(fcinfo) { counter_value::<PNCounter>(fcinfo) }}

// Equality, hashing and ordering compare canonical encodings (crate::canonical_bytes).

// ---- aggregates ---------------------------------------------------------------------------

/// The merge-aggregate transition function (also the combine function).
#[inline(always)]
unsafe fn merge_trans<C: Counter>(fcinfo: pg_sys::FunctionCallInfo) -> pg_sys::Datum {
    unsafe {
        if arg_is_null(fcinfo, 1) {
            return if arg_is_null(fcinfo, 0) {
                return_null(fcinfo)
            } else {
                arg_datum(fcinfo, 0)
            };
        }
        let input = varlena_bytes(arg_datum(fcinfo, 1));
        if arg_is_null(fcinfo, 0) {
            // First value: validate it and take a private 4-byte-header copy.
            C::decode(input).or_raise();
            return ptr_datum(bytes_to_varlena(input));
        }
        let state_ptr = arg_datum(fcinfo, 0).cast_mut_ptr::<u8>();
        if is_plain_4b(state_ptr)
            && in_aggregate(fcinfo)
            && C::merge_in_place(plain_4b_payload(state_ptr), input)
        {
            return arg_datum(fcinfo, 0);
        }
        let mut state: C = counter_arg(arg_datum(fcinfo, 0));
        state.merge_changed(&C::decode(input).or_raise()).or_raise();
        counter_datum(&state)
    }
}

sql_function! {
    /// `gcounter_merge_agg` transition and combine function.
    fn gcounter_merge_trans(fcinfo) { merge_trans::<GCounter>(fcinfo) }
}
sql_function! {
    /// `pncounter_merge_agg` transition and combine function.
    fn pncounter_merge_trans(fcinfo) { merge_trans::<PNCounter>(fcinfo) }
}

// ---- the replication merge trigger --------------------------------------------------------

/// OIDs of `gcounter` and `pncounter` in the schema of the called trigger function,
/// cached in `flinfo->fn_extra` (found through the syscache, not the search_path).
#[derive(Clone, Copy)]
struct CounterTypes {
    gcounter: pg_sys::Oid,
    pncounter: pg_sys::Oid,
}

unsafe fn counter_types(fcinfo: pg_sys::FunctionCallInfo) -> CounterTypes {
    unsafe {
        let flinfo = (*fcinfo).flinfo;
        if !(*flinfo).fn_extra.is_null() {
            return *((*flinfo).fn_extra as *const CounterTypes);
        }
        let nsp = pg_sys::get_func_namespace((*flinfo).fn_oid);
        let lookup = |name: &std::ffi::CStr| {
            pg_sys::GetSysCacheOid(
                pg_sys::SysCacheIdentifier::TYPENAMENSP as i32,
                pg_sys::Anum_pg_type_oid as pg_sys::AttrNumber,
                pg_sys::Datum::from(name.as_ptr()),
                pg_sys::Datum::from(nsp),
                pg_sys::Datum::from(0usize),
                pg_sys::Datum::from(0usize),
            )
        };
        let types = CounterTypes {
            gcounter: lookup(c"gcounter"),
            pncounter: lookup(c"pncounter"),
        };
        if types.gcounter == pg_sys::InvalidOid || types.pncounter == pg_sys::InvalidOid {
            pgrx::ereport!(
            ERROR,
            PgSqlErrorCode::ERRCODE_UNDEFINED_OBJECT,
            "crdt_merge_trigger(): types gcounter and pncounter not found in the trigger function's schema"
        );
        }
        let slot =
            pg_sys::MemoryContextAlloc((*flinfo).fn_mcxt, std::mem::size_of::<CounterTypes>())
                as *mut CounterTypes;
        slot.write(types);
        (*flinfo).fn_extra = slot.cast();
        types
    }
}

/// Binary equality of two non-NULL values of one attribute (as datumIsEqual).
unsafe fn datums_equal(
    a: pg_sys::Datum,
    b: pg_sys::Datum,
    attr: &pg_sys::FormData_pg_attribute,
) -> bool {
    unsafe {
        if attr.attbyval {
            a == b
        } else if attr.attlen > 0 {
            let len = attr.attlen as usize;
            std::slice::from_raw_parts(a.cast_mut_ptr::<u8>(), len)
                == std::slice::from_raw_parts(b.cast_mut_ptr::<u8>(), len)
        } else if attr.attlen == -1 {
            varlena_bytes(a) == varlena_bytes(b)
        } else {
            cstring_arg(a) == cstring_arg(b)
        }
    }
}

/// Merge OLD's counter into NEW's (both non-NULL). Returns (OLD changed, the merged value
/// when it differs from NEW's).
unsafe fn merge_column<C: Counter>(
    old: pg_sys::Datum,
    new: pg_sys::Datum,
) -> (bool, Option<pg_sys::Datum>) {
    unsafe {
        let old_bytes = varlena_bytes(old);
        let new_bytes = varlena_bytes(new);
        if old_bytes == new_bytes {
            C::decode(new_bytes).or_raise();
            return (false, None);
        }
        let mut merged: C = C::decode(old_bytes).or_raise();
        let incoming: C = C::decode(new_bytes).or_raise();
        let changed = merged.merge_changed(&incoming).or_raise();
        let replacement = (merged != incoming).then(|| counter_datum(&merged));
        (changed, replacement)
    }
}

sql_function! {
    /// BEFORE UPDATE FOR EACH ROW trigger: sets every gcounter/pncounter column of NEW to
    /// merge(OLD, NEW) (NULL counts as empty) and skips the update (returns NULL) when
    /// that changes nothing. Other columns: taken from NEW; in a local session a change
    /// to one of them alone still updates the row, in a replica session (the
    /// logical-replication apply worker) only a counter change does, which is what
    /// stops echo loops under bidirectional replication.
    fn crdt_merge_trigger(fcinfo) {
    let context = (*fcinfo).context;
    if context.is_null() || (*context).type_ != pg_sys::NodeTag::T_TriggerData {
        pgrx::ereport!(ERROR, PgSqlErrorCode::ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED,
            "crdt_merge_trigger() was not called by the trigger manager");
    }
    let td = context as *mut pg_sys::TriggerData;
    let event = (*td).tg_event;
    if event & pg_sys::TRIGGER_EVENT_OPMASK != pg_sys::TRIGGER_EVENT_UPDATE
        || event & pg_sys::TRIGGER_EVENT_ROW == 0
        || event & pg_sys::TRIGGER_EVENT_TIMINGMASK != pg_sys::TRIGGER_EVENT_BEFORE
    {
        pgrx::ereport!(ERROR, PgSqlErrorCode::ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED,
            "crdt_merge_trigger() must be fired BEFORE UPDATE FOR EACH ROW");
    }
    let types = counter_types(fcinfo);
    let tupdesc = (*(*td).tg_relation).rd_att;
    let natts = (*tupdesc).natts as usize;
    let (old, new) = ((*td).tg_trigtuple, (*td).tg_newtuple);
    let zero = pg_sys::Datum::from(0usize);
    let (mut old_values, mut old_nulls) = (vec![zero; natts], vec![false; natts]);
    let (mut new_values, mut new_nulls) = (vec![zero; natts], vec![false; natts]);
    pg_sys::heap_deform_tuple(old, tupdesc, old_values.as_mut_ptr(), old_nulls.as_mut_ptr());
    pg_sys::heap_deform_tuple(new, tupdesc, new_values.as_mut_ptr(), new_nulls.as_mut_ptr());
    let replica = pg_sys::SessionReplicationRole == pg_sys::SESSION_REPLICATION_ROLE_REPLICA as i32;

    let mut replace = vec![false; natts];
    let mut changed = false;
    for (i, attr) in crate::pg_compat::attributes(tupdesc).iter().enumerate() {
        if attr.attisdropped {
            continue;
        }
        let is_g = attr.atttypid == types.gcounter;
        if !is_g && attr.atttypid != types.pncounter {
            // Not a counter: a difference counts only in a local session (see above).
            if !replica && !changed {
                changed = match (old_nulls[i], new_nulls[i]) {
                    (true, true) => false,
                    (false, false) => !datums_equal(old_values[i], new_values[i], attr),
                    _ => true,
                };
            }
            continue;
        }
        match (old_nulls[i], new_nulls[i]) {
            (true, true) => {}
            (true, false) => {
                // A first value: validate it (replicated bytes are stored as sent).
                if is_g {
                    counter_arg::<GCounter>(new_values[i]);
                } else {
                    counter_arg::<PNCounter>(new_values[i]);
                }
                changed = true;
            }
            (false, true) => {
                // NULL is the empty counter: the merge is OLD's value.
                replace[i] = true;
                new_values[i] = old_values[i];
                new_nulls[i] = false;
            }
            (false, false) => {
                let (col_changed, merged) = if is_g {
                    merge_column::<GCounter>(old_values[i], new_values[i])
                } else {
                    merge_column::<PNCounter>(old_values[i], new_values[i])
                };
                changed |= col_changed;
                if let Some(m) = merged {
                    replace[i] = true;
                    new_values[i] = m;
                }
            }
        }
    }
    if !changed {
        // Skip the update. A trigger returns a NULL pointer (not an SQL NULL) for this.
        return zero;
    }
    if replace.iter().any(|&r| r) {
        let tuple = pg_sys::heap_modify_tuple(new, tupdesc, new_values.as_mut_ptr(), new_nulls.as_mut_ptr(), replace.as_mut_ptr());
        return pg_sys::Datum::from(tuple);
    }
    pg_sys::Datum::from(new)
}}
