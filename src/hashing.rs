//! Hashing SQL values (docs/SQL.md, "Hashing"): the canonical byte encoding of each type,
//! fed to `distributed_counter_core::hash`. `hll_hash_any`, `approx_count_distinct`,
//! cms and topk all go through [`HashPlan`], so one value hashes alike everywhere.
//!
//! Values equal under the type's default equality must hash alike (count(DISTINCT)
//! counts them once). Integers, text, varchar, bytea and uuid hash their bytes (stable
//! since 0.1.0), and so do name and enums (their name or label: what their send form
//! carried, without its conversion to the client's encoding); types whose binary form
//! is one per value (bool, "char", oid and the reg* types, date, time, timetz,
//! timestamp, timestamptz, macaddr, macaddr8, money) hash their binary send form (also
//! stable since 0.1.0); every other type
//! with a default hash opclass hashes the 64-bit result of its extended hash function
//! (seed 0: the function PostgreSQL keeps stable for hash partitioning), which makes
//! 1.5 and 1.50, 0 and -0, '1 day' and '24 hours', char(n) padding and the key order of
//! jsonb hash alike; a type with none hashes its send form.

use crate::fmgr::*;
use crate::sql_function;
use crate::unguarded_sql_function;
use distributed_counter_core::hash::{hash_bytes, hash_i64};
use pgrx::pg_sys;
use std::cell::UnsafeCell;

/// How to turn a datum of one type into hash input. Built once per call site and
/// cached in `flinfo->fn_extra`.
#[repr(C)]
pub struct HashPlan {
    pub type_oid: pg_sys::Oid,
    strategy: Strategy,
    /// Binary send function (`Strategy::SendForm`) or extended hash function
    /// (`Strategy::ExtendedHash`). In an `UnsafeCell`: calling through an FmgrInfo
    /// writes to it (fn_extra, fn_mcxt caches), while the plan is shared by reference.
    send: UnsafeCell<pg_sys::FmgrInfo>,
    /// The collation the extended hash function runs with (the call's input collation,
    /// else the type's).
    collation: pg_sys::Oid,
    /// UTC, for the text form (see `text_of`).
    utc: *mut pg_sys::pg_tz,
    /// Text output function (topk keeps a value's text form). See `send`.
    output: UnsafeCell<pg_sys::FmgrInfo>,
    /// A per-call-site decision an aggregate caches with the plan (0 = not made yet);
    /// cms_add_agg keeps whether its state may be staged (src/cms.rs).
    pub site_flag: std::cell::Cell<u8>,
    /// The type's name as a cms records it (see [`type_name_of`]): `type_name_len` bytes.
    type_name: [u8; 63],
    type_name_len: u8,
}

#[derive(Clone, Copy, PartialEq, Eq)]
#[repr(C)]
enum Strategy {
    Int2,
    Int4,
    Int8,
    /// text, varchar, bytea: the varlena payload bytes
    VarlenaBytes,
    Uuid,
    SendForm,
    ExtendedHash,
    /// name: its bytes (what namesend sends, without the client-encoding conversion)
    NameBytes,
    /// an enum: its label's bytes (what enum_send sends, without the conversion)
    EnumLabel,
}

/// Built-in types whose binary send form is the same for equal values: they keep hashing
/// it, as every type did before 0.3.0 (sketches stored earlier stay valid for them).
fn send_form_is_canonical(type_oid: pg_sys::Oid) -> bool {
    matches!(
        type_oid,
        pg_sys::BOOLOID
            | pg_sys::CHAROID
            | pg_sys::OIDOID
            | pg_sys::REGPROCOID
            | pg_sys::REGPROCEDUREOID
            | pg_sys::REGOPEROID
            | pg_sys::REGOPERATOROID
            | pg_sys::REGCLASSOID
            | pg_sys::REGTYPEOID
            | pg_sys::REGROLEOID
            | pg_sys::REGNAMESPACEOID
            | pg_sys::REGCONFIGOID
            | pg_sys::REGDICTIONARYOID
            | pg_sys::REGCOLLATIONOID
            | pg_sys::DATEOID
            | pg_sys::TIMEOID
            | pg_sys::TIMETZOID
            | pg_sys::TIMESTAMPOID
            | pg_sys::TIMESTAMPTZOID
            | pg_sys::MACADDROID
            | pg_sys::MACADDR8OID
            | pg_sys::MONEYOID
    )
}

impl HashPlan {
    /// The plan for argument `argno` of the current call, cached in fn_extra. The
    /// cached case is inlined into the per-row paths; building the plan is not.
    ///
    /// # Safety
    /// `fcinfo` is the FunctionCallInfo of the current call, and every datum is a non-NULL value of this plan's type.
    #[inline(always)]
    pub unsafe fn for_arg(fcinfo: pg_sys::FunctionCallInfo, argno: i32) -> &'static HashPlan {
        unsafe {
            match Self::cached(fcinfo) {
                Some(plan) => plan,
                None => Self::build(fcinfo, argno),
            }
        }
    }

    /// This call site's plan if it is already built (no `pg_sys` call: usable in the
    /// guard-free fast paths).
    ///
    /// # Safety
    /// `fcinfo` is the FunctionCallInfo of the current call, and every datum is a non-NULL value of this plan's type.
    #[inline(always)]
    pub unsafe fn cached(fcinfo: pg_sys::FunctionCallInfo) -> Option<&'static HashPlan> {
        unsafe { ((*(*fcinfo).flinfo).fn_extra as *const HashPlan).as_ref() }
    }

    #[cold]
    #[inline(never)]
    unsafe fn build(fcinfo: pg_sys::FunctionCallInfo, argno: i32) -> &'static HashPlan {
        unsafe {
            let flinfo = (*fcinfo).flinfo;
            let mut declared = pg_sys::get_fn_expr_argtype(flinfo, argno);
            if declared == pg_sys::InvalidOid {
                // Called without an expression tree: Citus's worker_partial_agg calls a
                // transition function through an FmgrInfo of its own. The function's
                // declared type then says it, when it is concrete (the typed overloads
                // of sql/typed_aggregates.sql).
                declared = declared_arg_type((*flinfo).fn_oid, argno);
            }
            if declared == pg_sys::InvalidOid {
                crate::error::invalid_parameter(
                    "could not determine the data type of the value to hash",
                    Some("A transition function over anyelement was called without an expression tree (as Citus does): create typed aggregates for the type with typed_aggregates()."),
                );
            }
            let type_oid = pg_sys::getBaseType(declared);
            let strategy = match type_oid {
                pg_sys::INT2OID => Strategy::Int2,
                pg_sys::INT4OID => Strategy::Int4,
                pg_sys::INT8OID => Strategy::Int8,
                pg_sys::TEXTOID | pg_sys::VARCHAROID | pg_sys::BYTEAOID => Strategy::VarlenaBytes,
                pg_sys::UUIDOID => Strategy::Uuid,
                pg_sys::NAMEOID => Strategy::NameBytes,
                t if pg_sys::get_typtype(t) as u8 == pg_sys::TYPTYPE_ENUM => Strategy::EnumLabel,
                t if send_form_is_canonical(t) => Strategy::SendForm,
                t => {
                    let entry =
                        pg_sys::lookup_type_cache(t, pg_sys::TYPECACHE_HASH_EXTENDED_PROC as i32);
                    if (*entry).hash_extended_proc != pg_sys::InvalidOid {
                        Strategy::ExtendedHash
                    } else {
                        Strategy::SendForm
                    }
                }
            };
            let plan =
                pg_sys::MemoryContextAllocZero((*flinfo).fn_mcxt, std::mem::size_of::<HashPlan>())
                    as *mut HashPlan;
            (*plan).type_oid = type_oid;
            (*plan).strategy = strategy;
            if strategy == Strategy::SendForm {
                let mut send_oid = pg_sys::InvalidOid;
                let mut is_varlena = false;
                pg_sys::getTypeBinaryOutputInfo(type_oid, &mut send_oid, &mut is_varlena);
                pg_sys::fmgr_info_cxt(send_oid, (*plan).send.get(), (*flinfo).fn_mcxt);
            }
            if strategy == Strategy::ExtendedHash {
                let entry = pg_sys::lookup_type_cache(
                    type_oid,
                    pg_sys::TYPECACHE_HASH_EXTENDED_PROC as i32,
                );
                pg_sys::fmgr_info_cxt(
                    (*entry).hash_extended_proc,
                    (*plan).send.get(),
                    (*flinfo).fn_mcxt,
                );
                (*plan).collation = if (*fcinfo).fncollation != pg_sys::InvalidOid {
                    (*fcinfo).fncollation
                } else {
                    pg_sys::get_typcollation(type_oid)
                };
            }
            let name = type_name_of(type_oid);
            (&mut (*plan).type_name)[..name.len()].copy_from_slice(&name);
            (*plan).type_name_len = name.len() as u8;
            (*plan).utc = pg_sys::pg_tzset(c"UTC".as_ptr());
            if (*plan).utc.is_null() {
                pgrx::error!("distributed_counter: could not load the time zone UTC");
            }
            let mut out_oid = pg_sys::InvalidOid;
            let mut is_varlena = false;
            pg_sys::getTypeOutputInfo(type_oid, &mut out_oid, &mut is_varlena);
            pg_sys::fmgr_info_cxt(out_oid, (*plan).output.get(), (*flinfo).fn_mcxt);
            (*flinfo).fn_extra = plan as *mut std::ffi::c_void;
            &*plan
        }
    }
}

impl HashPlan {
    /// The name a cms records for the values it counts (docs/FORMAT.md, cms format 2).
    pub fn type_name(&self) -> &[u8] {
        &self.type_name[..self.type_name_len as usize]
    }
}

/// How a cms names a type: a built-in type by its SQL name (`numeric`, `timestamp with
/// time zone`, `uuid[]`: the same in every database, whatever the search_path, which
/// could otherwise make PostgreSQL qualify it), any other by its unqualified
/// `pg_type.typname`, which a dump and restore keeps (its OID it does not). Types whose
/// equal values hash alike share a name, so their sketches are equal too: every integer
/// width is `bigint`, and varchar and name are `text`, also as array elements
/// (`bigint[]`, `text[]`). At most 63 bytes, cut at a character boundary.
unsafe fn type_name_of(type_oid: pg_sys::Oid) -> Vec<u8> {
    unsafe {
        let element = pg_sys::get_element_type(type_oid);
        let text = if element != pg_sys::InvalidOid && family_name(element).is_some() {
            let mut name = family_name(element).unwrap_or_default().to_vec();
            name.extend_from_slice(b"[]");
            name
        } else if let Some(family) = family_name(type_oid) {
            family.to_vec()
        } else if u32::from(type_oid) < pg_sys::FirstNormalObjectId {
            // (forced qualification names every built-in type the same way; the
            // schema is then taken off)
            let name = std::ffi::CStr::from_ptr(pg_sys::format_type_extended(
                type_oid,
                -1,
                pg_sys::FORMAT_TYPE_FORCE_QUALIFY as pg_sys::bits16,
            ))
            .to_bytes()
            .to_vec();
            match name.strip_prefix(b"pg_catalog.") {
                Some(rest) => rest.to_vec(),
                None => name,
            }
        } else {
            let tuple = pg_sys::SearchSysCache1(
                pg_sys::SysCacheIdentifier::TYPEOID as std::ffi::c_int,
                pg_sys::Datum::from(type_oid),
            );
            if tuple.is_null() {
                pgrx::error!("cache lookup failed for type {}", u32::from(type_oid));
            }
            let form = pg_sys::heap_tuple_get_struct::<pg_sys::FormData_pg_type>(tuple);
            let name = std::ffi::CStr::from_ptr((*form).typname.data.as_ptr())
                .to_bytes()
                .to_vec();
            pg_sys::ReleaseSysCache(tuple);
            name
        };
        let mut end = text.len().min(63);
        while std::str::from_utf8(&text[..end]).is_err() {
            end -= 1;
        }
        text[..end].to_vec()
    }
}

/// The shared name of the types whose equal values hash alike (see [`type_name_of`]).
fn family_name(type_oid: pg_sys::Oid) -> Option<&'static [u8]> {
    match type_oid {
        pg_sys::INT2OID | pg_sys::INT4OID | pg_sys::INT8OID => Some(b"bigint"),
        pg_sys::TEXTOID | pg_sys::VARCHAROID | pg_sys::NAMEOID => Some(b"text"),
        _ => None,
    }
}

/// The declared type of argument `argno` of function `fn_oid`, or InvalidOid when the
/// function does not have that argument or declares it polymorphic.
///
/// # Safety
/// Calls the catalog cache: only outside the guard-free blocks.
unsafe fn declared_arg_type(fn_oid: pg_sys::Oid, argno: i32) -> pg_sys::Oid {
    unsafe {
        let mut argtypes: *mut pg_sys::Oid = std::ptr::null_mut();
        let mut nargs: std::ffi::c_int = 0;
        pg_sys::get_func_signature(fn_oid, &mut argtypes, &mut nargs);
        if argno < 0 || argno >= nargs || argtypes.is_null() {
            return pg_sys::InvalidOid;
        }
        let t = *argtypes.add(argno as usize);
        if pg_sys::get_typtype(t) as u8 == pg_sys::TYPTYPE_PSEUDO {
            pg_sys::InvalidOid
        } else {
            t
        }
    }
}

impl HashPlan {
    /// The hash (seed 0) of argument `argno`, for guard-free fast paths (see
    /// `sql_function_with_fast_path!`): None unless the argument is not NULL, this call
    /// site's plan is already built and the type hashes without a `pg_sys` call.
    ///
    /// # Safety
    /// `fcinfo` is the FunctionCallInfo of the current call, and every datum is a non-NULL value of this plan's type.
    #[inline(always)]
    pub unsafe fn hash_arg_pure(fcinfo: pg_sys::FunctionCallInfo, argno: usize) -> Option<u64> {
        unsafe {
            if arg_is_null(fcinfo, argno) {
                return None;
            }
            Self::cached(fcinfo)?.hash_pure(arg_datum(fcinfo, argno), 0)
        }
    }

    /// The hash of a (non-null) datum when it needs no `pg_sys` call (integers, uuid),
    /// else None.
    #[inline(always)]
    unsafe fn hash_pure(&self, datum: pg_sys::Datum, seed: i32) -> Option<u64> {
        unsafe {
            match self.strategy {
                Strategy::Int8 => Some(hash_i64(datum.value() as i64, seed)),
                Strategy::Int4 => Some(hash_i64(datum.value() as i32 as i64, seed)),
                Strategy::Int2 => Some(hash_i64(datum.value() as i16 as i64, seed)),
                Strategy::Uuid => Some(hash_bytes(uuid_bytes(datum), seed)),
                Strategy::VarlenaBytes
                | Strategy::SendForm
                | Strategy::ExtendedHash
                | Strategy::NameBytes
                | Strategy::EnumLabel => None,
            }
        }
    }

    /// Hash a (non-null) datum of this plan's type.
    ///
    /// # Safety
    /// `fcinfo` is the FunctionCallInfo of the current call, and every datum is a non-NULL value of this plan's type.
    #[inline(always)]
    pub unsafe fn hash(&self, datum: pg_sys::Datum, seed: i32) -> u64 {
        unsafe {
            if let Some(h) = self.hash_pure(datum, seed) {
                return h;
            }
            match self.strategy {
                Strategy::VarlenaBytes => hash_bytes(varlena_bytes(datum), seed),
                Strategy::NameBytes => hash_bytes(
                    std::ffi::CStr::from_ptr(datum.cast_mut_ptr::<std::ffi::c_char>()).to_bytes(),
                    seed,
                ),
                Strategy::EnumLabel => {
                    let label = pg_sys::OutputFunctionCall(self.output.get(), datum);
                    let h = hash_bytes(std::ffi::CStr::from_ptr(label).to_bytes(), seed);
                    pg_sys::pfree(label.cast());
                    h
                }
                Strategy::ExtendedHash => {
                    let h = pg_sys::FunctionCall2Coll(
                        self.send.get(),
                        self.collation,
                        datum,
                        pg_sys::Datum::from(0i64),
                    );
                    hash_i64(h.value() as i64, seed)
                }
                _ => {
                    let bytea = pg_sys::SendFunctionCall(self.send.get(), datum);
                    hash_bytes(varlena_bytes(pg_sys::Datum::from(bytea)), seed)
                }
            }
        }
    }

    /// The value's text form (what `topk_list` shows and counts by), the same for
    /// equal values whatever the session's settings: the output function runs with
    /// DateStyle ISO, IntervalStyle postgres, TimeZone UTC, extra_float_digits 1
    /// (shortest exact floats); bytea prints as hex whatever bytea_output says, and the few built-in types whose equal values print
    /// differently are canonicalised (numeric trailing zeros, float -0, char(n) padding,
    /// intervals justified).
    ///
    /// # Safety
    /// `fcinfo` is the FunctionCallInfo of the current call, and every datum is a non-NULL value of this plan's type.
    pub unsafe fn text_of(&self, datum: pg_sys::Datum) -> Vec<u8> {
        unsafe {
            if self.type_oid == pg_sys::BYTEAOID {
                return distributed_counter_core::hex::to_hex(varlena_bytes(datum)).into_bytes();
            }
            let datum = if self.type_oid == pg_sys::INTERVALOID {
                canonical_interval(datum)
            } else {
                datum
            };
            let settings = OutputSettings::fixed(self.utc);
            let cstr = pg_sys::OutputFunctionCall(self.output.get(), datum);
            drop(settings);
            let mut bytes = std::ffi::CStr::from_ptr(cstr).to_bytes().to_vec();
            pg_sys::pfree(cstr as *mut std::ffi::c_void);
            match self.type_oid {
                pg_sys::NUMERICOID => trim_numeric_zeros(&mut bytes),
                pg_sys::FLOAT4OID | pg_sys::FLOAT8OID if bytes == b"-0" => bytes = b"0".to_vec(),
                pg_sys::BPCHAROID => {
                    while bytes.last() == Some(&b' ') {
                        bytes.pop();
                    }
                }
                _ => {}
            }
            bytes
        }
    }
}

/// The settings that change how values print, fixed while one value is printed and
/// restored on drop (also when the output function raises an ERROR: pgrx turns it into
/// an unwinding panic, which runs this drop).
struct OutputSettings {
    date_style: i32,
    date_order: i32,
    interval_style: i32,
    extra_float_digits: i32,
    timezone: *mut pg_sys::pg_tz,
}

impl OutputSettings {
    unsafe fn fixed(utc: *mut pg_sys::pg_tz) -> OutputSettings {
        unsafe {
            let saved = OutputSettings {
                date_style: pg_sys::DateStyle,
                date_order: pg_sys::DateOrder,
                interval_style: pg_sys::IntervalStyle,
                extra_float_digits: pg_sys::extra_float_digits,
                timezone: pg_sys::session_timezone,
            };
            pg_sys::DateStyle = pg_sys::USE_ISO_DATES as i32;
            pg_sys::DateOrder = pg_sys::DATEORDER_YMD as i32;
            pg_sys::IntervalStyle = pg_sys::INTSTYLE_POSTGRES as i32;
            pg_sys::extra_float_digits = 1;
            pg_sys::session_timezone = utc;
            saved
        }
    }
}

impl Drop for OutputSettings {
    fn drop(&mut self) {
        unsafe {
            pg_sys::DateStyle = self.date_style;
            pg_sys::DateOrder = self.date_order;
            pg_sys::IntervalStyle = self.interval_style;
            pg_sys::extra_float_digits = self.extra_float_digits;
            pg_sys::session_timezone = self.timezone;
        }
    }
}

/// Equal intervals ('1 day' and '24 hours', '1 mon' and '30 days': PostgreSQL compares
/// their total span, a month counting 30 days) as one interval: the span split into
/// months, days and time, every part with the span's sign. A span beyond that form's
/// range is left as it is.
unsafe fn canonical_interval(datum: pg_sys::Datum) -> pg_sys::Datum {
    const DAY: i128 = 86_400_000_000;
    unsafe {
        let iv = &*datum.cast_mut_ptr::<pg_sys::Interval>();
        let span = iv.time as i128 + iv.day as i128 * DAY + iv.month as i128 * 30 * DAY;
        let (month, rest) = (span / (30 * DAY), span % (30 * DAY));
        let Ok(month) = i32::try_from(month) else {
            return datum;
        };
        let out = pg_sys::palloc(std::mem::size_of::<pg_sys::Interval>()) as *mut pg_sys::Interval;
        *out = pg_sys::Interval {
            time: (rest % DAY) as i64,
            day: (rest / DAY) as i32,
            month,
        };
        pg_sys::Datum::from(out)
    }
}

/// numeric_out prints the scale ("1.50"); equal numerics print alike without the
/// fractional part's trailing zeros ("1.5", "2", "0").
fn trim_numeric_zeros(bytes: &mut Vec<u8>) {
    if bytes.contains(&b'.') {
        while bytes.last() == Some(&b'0') {
            bytes.pop();
        }
        if bytes.last() == Some(&b'.') {
            bytes.pop();
        }
    }
}

#[inline(always)]
unsafe fn uuid_bytes<'a>(datum: pg_sys::Datum) -> &'a [u8] {
    unsafe { std::slice::from_raw_parts(datum.cast_mut_ptr::<u8>(), 16) }
}

#[inline(always)]
unsafe fn seed_arg(fcinfo: pg_sys::FunctionCallInfo) -> i32 {
    unsafe { arg_i32(fcinfo, 1).unwrap_or(0) }
}

#[inline(always)]
fn hashval(h: u64) -> pg_sys::Datum {
    pg_sys::Datum::from(h as i64)
}

// All STRICT in SQL: a NULL value (or seed) gives NULL. The integer ones run once per
// row under hll_add_agg: unguarded (pure arithmetic on by-value arguments).
unguarded_sql_function! { fn hll_hash_smallint(fcinfo) {
    hashval(hash_i64(arg_datum(fcinfo, 0).value() as i16 as i64, seed_arg(fcinfo)))
}}
unguarded_sql_function! { fn hll_hash_integer(fcinfo) {
    hashval(hash_i64(arg_datum(fcinfo, 0).value() as i32 as i64, seed_arg(fcinfo)))
}}
unguarded_sql_function! { fn hll_hash_bigint(fcinfo) {
    hashval(hash_i64(arg_datum(fcinfo, 0).value() as i64, seed_arg(fcinfo)))
}}
sql_function! { fn hll_hash_varlena(fcinfo) {
    hashval(hash_bytes(varlena_bytes(arg_datum(fcinfo, 0)), seed_arg(fcinfo)))
}}
sql_function! { fn hll_hash_uuid(fcinfo) {
    hashval(hash_bytes(uuid_bytes(arg_datum(fcinfo, 0)), seed_arg(fcinfo)))
}}
sql_function! { fn hll_hash_any(fcinfo) {
    let plan = HashPlan::for_arg(fcinfo, 0);
    hashval(plan.hash(arg_datum(fcinfo, 0), seed_arg(fcinfo)))
}}
