//! `rate_limit()`: a GCRA token bucket per key (src/core/src/rate_limit.rs), its state in
//! shared memory: no table, no WAL, no transaction. The table is sized once, at server
//! start, by `distributed_counter.rate_limit_keys` (src/guc.rs), and guarded by one
//! LWLock: a call holds it for one hash probe and O(log keys) heap steps.
//!
//! Only a preloaded library (shared_preload_libraries) can reserve shared memory;
//! without it the function raises 55000 saying so. The state is not persisted: after a
//! restart (or a crash, whose reinitialisation of shared memory starts afresh) every
//! bucket starts full.

use crate::error::{raise_as, OrRaise};
use crate::fmgr::{arg, arg_i64, varlena_bytes};
use crate::guc::RATE_LIMIT_KEYS;
use distributed_counter_core::rate_limit::{fingerprint, slots_for, Header, Params, Slot, Table};
use distributed_counter_core::CoreError;
use pgrx::pg_sys;
use pgrx::PgSqlErrorCode;
use std::mem::size_of;
use std::ptr::null_mut;

const NAME: &std::ffi::CStr = c"distributed_counter rate_limit";

/// Set in the postmaster by the startup hook; inherited by every backend.
static mut HEADER: *mut Header = null_mut();
static mut SLOTS: *mut Slot = null_mut();
static mut HEAP: *mut u32 = null_mut();
static mut POS: *mut u32 = null_mut();
static mut N_SLOTS: usize = 0;
static mut CAPACITY: usize = 0;
static mut LOCK: *mut pg_sys::LWLock = null_mut();

fn capacity() -> usize {
    RATE_LIMIT_KEYS.get().max(1) as usize
}

/// The segment: the header (a cache line), the hash slots, the heap, and each slot's
/// place in the heap. Offsets in bytes; every part 8-byte aligned.
fn layout() -> (usize, usize, usize, usize) {
    let n_slots = slots_for(capacity() as u64);
    let slots = size_of::<Header>().next_multiple_of(64);
    let heap = slots + n_slots * size_of::<Slot>();
    let pos = (heap + capacity() * size_of::<u32>()).next_multiple_of(8);
    let end = pos + n_slots * size_of::<u32>();
    (slots, heap, pos, end)
}

fn shmem_size() -> usize {
    layout().3
}

/// Reserve the table; called from `_PG_init` while the postmaster preloads the library.
pub fn register() {
    crate::shmem::register(crate::shmem::Region {
        name: NAME,
        size: shmem_size,
        attach,
    });
}

/// The segment attached (src/shmem.rs): a new one (server start, or the reinitialisation
/// after a crash) starts with every bucket full, i.e. no key has a state, and a new hash
/// seed.
unsafe fn attach(base: *mut u8, fresh: bool, lock: *mut pg_sys::LWLock) {
    unsafe {
        let (slots, heap, pos, end) = layout();
        let header = base as *mut Header;
        if fresh {
            std::ptr::write_bytes(base, 0, end);
            (*header).capacity = capacity() as u64;
            (*header).seed = crate::shmem::random_seed("rate_limit");
        }
        HEADER = header;
        SLOTS = base.add(slots) as *mut Slot;
        HEAP = base.add(heap) as *mut u32;
        POS = base.add(pos) as *mut u32;
        N_SLOTS = slots_for(capacity() as u64);
        CAPACITY = capacity();
        LOCK = lock;
    }
}

/// Microseconds of the system's monotonic clock: shared by every process of the
/// machine, and never stepped by NTP or an administrator, so a clock change cannot
/// refill buckets early (the wall clock could) or freeze them. Nothing stored outlives
/// the server, so its arbitrary origin does not matter.
fn monotonic_us() -> i64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid timespec to fill; CLOCK_MONOTONIC always exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec * 1_000_000 + ts.tv_nsec / 1_000
}

fn not_preloaded() -> ! {
    raise_as(
        PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
        CoreError::invalid_parameter("rate_limit() needs distributed_counter in shared_preload_libraries").with_hint(
            "Its buckets live in shared memory, which only a library loaded at server start can reserve: \
             add distributed_counter to shared_preload_libraries (postgresql.conf or ALTER SYSTEM) and restart the server.",
        ),
    )
}

fn null_argument(name: &str) -> ! {
    raise_as(
        PgSqlErrorCode::ERRCODE_NULL_VALUE_NOT_ALLOWED,
        CoreError::invalid_parameter(format!("rate_limit(): {name} must not be NULL")),
    )
}

/// `per` in microseconds; months have no fixed length and are refused, a day is 24 h.
fn interval_us(iv: &pg_sys::Interval) -> i64 {
    // PostgreSQL 17+ infinite intervals: every field at its extreme
    if iv.time == i64::MAX || iv.time == i64::MIN {
        crate::error::invalid_parameter("rate_limit(): per must be finite", None);
    }
    if iv.month != 0 {
        crate::error::invalid_parameter(
            "rate_limit(): per must not contain months or years (they have no fixed length)",
            Some("Use days, hours, minutes or seconds, e.g. '30 days'."),
        );
    }
    (iv.day as i128 * 86_400_000_000 + iv.time as i128).clamp(i64::MIN as i128, i64::MAX as i128)
        as i64
}

/// A palloc'd interval of `us` microseconds.
unsafe fn interval_datum(us: i64) -> pg_sys::Datum {
    unsafe {
        let iv = pg_sys::palloc(size_of::<pg_sys::Interval>()) as *mut pg_sys::Interval;
        *iv = pg_sys::Interval {
            time: us,
            day: 0,
            month: 0,
        };
        pg_sys::Datum::from(iv)
    }
}

/// The result row's descriptor, built once per call site and kept in fn_extra.
unsafe fn result_desc(fcinfo: pg_sys::FunctionCallInfo) -> pg_sys::TupleDesc {
    unsafe {
        let flinfo = (*fcinfo).flinfo;
        if (*flinfo).fn_extra.is_null() {
            let mut desc: pg_sys::TupleDesc = null_mut();
            if pg_sys::get_call_result_type(fcinfo, null_mut(), &mut desc)
                != pg_sys::TypeFuncClass::TYPEFUNC_COMPOSITE
            {
                pgrx::error!("rate_limit(): the function's result is not a row (is the declaration in sql/ wrong?)");
            }
            let old = pg_sys::MemoryContextSwitchTo((*flinfo).fn_mcxt);
            let copy = pg_sys::BlessTupleDesc(pg_sys::CreateTupleDescCopy(desc));
            pg_sys::MemoryContextSwitchTo(old);
            (*flinfo).fn_extra = copy.cast();
        }
        (*flinfo).fn_extra.cast()
    }
}

crate::sql_function! {
    /// `rate_limit(key text, rate int8, per interval, burst int8 DEFAULT NULL,
    /// cost int8 DEFAULT 1) -> TABLE(allowed, remaining, retry_after, reset_after)`:
    /// one row, returned in value-per-call mode as a single result.
    fn rate_limit(fcinfo) {
        unsafe {
            let header = HEADER;
            if header.is_null() {
                not_preloaded();
            }
            let key = arg(fcinfo, 0).map(|d| varlena_bytes(d)).unwrap_or_else(|| null_argument("key"));
            let rate = arg_i64(fcinfo, 1).unwrap_or_else(|| null_argument("rate"));
            let per = arg(fcinfo, 2).unwrap_or_else(|| null_argument("per"));
            let per_us = interval_us(&*per.cast_mut_ptr::<pg_sys::Interval>());
            let burst = arg_i64(fcinfo, 3).unwrap_or(rate);
            let cost = arg_i64(fcinfo, 4).unwrap_or_else(|| null_argument("cost"));
            let params = Params::new(rate, per_us, burst, cost).or_raise();
            // The seed is written once, before any backend exists: read without the lock.
            let fp = fingerprint((*header).seed, pg_sys::MyDatabaseId.to_u32(), key);
            let desc = result_desc(fcinfo);
            let now = monotonic_us();

            pg_sys::LWLockAcquire(LOCK, pg_sys::LWLockMode::LW_EXCLUSIVE);
            // SAFETY: the table is only touched under LOCK; nothing in between can
            // raise an ERROR (pure integer code over the shared arrays).
            let decision = Table {
                header: &mut *header,
                slots: std::slice::from_raw_parts_mut(SLOTS, N_SLOTS),
                heap: std::slice::from_raw_parts_mut(HEAP, CAPACITY),
                pos: std::slice::from_raw_parts_mut(POS, N_SLOTS),
            }
            .rate_limit(fp, now, &params);
            pg_sys::LWLockRelease(LOCK);

            let Ok(d) = decision else {
                raise_as(
                    PgSqlErrorCode::ERRCODE_CONFIGURATION_LIMIT_EXCEEDED,
                    CoreError::invalid_parameter(format!(
                        "rate_limit(): all {} key slots hold buckets that are still refilling",
                        (*header).capacity
                    ))
                    .with_hint(
                        "Raise distributed_counter.rate_limit_keys (at the next server start). \
                         A key's slot is freed once its bucket is full again.",
                    ),
                )
            };
            let mut values = [
                pg_sys::Datum::from(d.allowed),
                pg_sys::Datum::from(d.remaining),
                interval_datum(d.retry_after_us),
                interval_datum(d.reset_after_us),
            ];
            let mut nulls = [false; 4];
            let tuple = pg_sys::heap_form_tuple(desc, values.as_mut_ptr(), nulls.as_mut_ptr());
            pg_sys::HeapTupleHeaderGetDatum((*tuple).t_data)
        }
    }
}
