//! Buffered (write-behind) counters: the shared buffer, the transaction hooks that fill
//! it, and the flush that empties it.
//!
//! The buffer is the table of src/core/src/buffer.rs, in shared memory, sized at server
//! start by `distributed_counter.buffer_keys`, behind one LWLock. Its module
//! documentation states the protocol. This one adds the PostgreSQL side:
//! - **adds** ([`try_add`], from counter_add's fast path): the first add of a
//!   transaction to a (counter, key, bucket) pins its slot; every add is kept
//!   backend-local per subtransaction level. At commit (`XACT_EVENT_COMMIT`, after the
//!   commit record, where nothing may fail) the local sums go into the pinned slots; at
//!   rollback the pins are released. A rolled-back subtransaction's adds are dropped.
//!   PREPARE TRANSACTION with buffered adds is refused (0A000): another session may
//!   commit it, and this backend's state would not follow.
//! - **where**: only in the database the worker serves, while it runs and can flush
//!   (`Header::worker_database`); elsewhere, or when the key is longer than
//!   `KEY_MAX` or the buffer is full, counter_add writes its row as for a durable counter.
//! - **flush** (`counter_flush()`, which the worker calls every `flush_interval`): hands
//!   the slots' deltas to the calling transaction and inserts them into counter_pending
//!   through `_counter_flush_rows` (which drops those of counters that no longer exist).
//!   The slots remember the transaction; the next flush settles them by its outcome.
//! - **reads** (`_counter_unflushed`): a slot's delta, plus its in-flight amount while the
//!   flush's transaction is invisible to the reader's snapshot, plus this backend's own
//!   adds of its open transaction (as a durable counter shows its own uncommitted rows).
//!   The caller needs SELECT on counter_pending, and row level security must not apply
//!   to it there: the policies cannot be evaluated on slots, so that is an error (42501).

use crate::error::raise_as;
use crate::fmgr::{arg, bytes_to_varlena, ptr_datum, varlena_bytes};
use crate::guc::BUFFER_KEYS;
use distributed_counter_core::buffer::{
    int8_parts, slots_for, Flush, FlushState, Header, Id, Slot, Table, KEY_MAX,
};
use distributed_counter_core::CoreError;
use pgrx::pg_sys;
use pgrx::PgSqlErrorCode;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::mem::size_of;
use std::ptr::null_mut;

const NAME: &std::ffi::CStr = c"distributed_counter buffer";

static mut HEADER: *mut Header = null_mut();
static mut SLOTS: *mut Slot = null_mut();
static mut N_SLOTS: usize = 0;
static mut LOCK: *mut pg_sys::LWLock = null_mut();

fn capacity() -> u64 {
    BUFFER_KEYS.get().max(1) as u64
}

fn slots_offset() -> usize {
    size_of::<Header>().next_multiple_of(64)
}

fn shmem_size() -> usize {
    slots_offset() + slots_for(capacity()) * size_of::<Slot>()
}

/// Reserve the buffer; called from `_PG_init` while the postmaster preloads the library.
pub fn register() {
    crate::shmem::register(crate::shmem::Region {
        name: NAME,
        size: shmem_size,
        attach,
    });
}

/// The segment attached (src/shmem.rs). A new one (server start, or the reinitialisation
/// after a crash) starts empty with a new seed: unflushed adds of a crashed server are
/// lost here (README.md, "Buffered counters").
unsafe fn attach(base: *mut u8, fresh: bool, lock: *mut pg_sys::LWLock) {
    unsafe {
        let header = base as *mut Header;
        let n_slots = slots_for(capacity());
        let slots = base.add(slots_offset()) as *mut Slot;
        if fresh {
            *header = Header {
                capacity: capacity(),
                seed: crate::shmem::random_seed("counter buffer"),
                ..Header::default()
            };
            for i in 0..n_slots {
                slots.add(i).write(Slot::default());
            }
        }
        HEADER = header;
        SLOTS = slots;
        N_SLOTS = n_slots;
        LOCK = lock;
    }
}

/// Whether the buffer exists (the library was preloaded).
pub fn available() -> bool {
    unsafe { !HEADER.is_null() }
}

/// Run `f` on the table under the lock. `f` must not raise an ERROR (plain Rust over the
/// shared arrays): the lock would be released by the abort, but the table could be left
/// half-changed.
unsafe fn with_table<R>(mode: pg_sys::LWLockMode::Type, f: impl FnOnce(&mut Table<'_>) -> R) -> R {
    unsafe {
        pg_sys::LWLockAcquire(LOCK, mode);
        let mut table = Table {
            header: &mut *HEADER,
            slots: std::slice::from_raw_parts_mut(SLOTS, N_SLOTS),
        };
        let r = f(&mut table);
        pg_sys::LWLockRelease(LOCK);
        r
    }
}

/// A local add's slot: (install, counter, bucket, key).
type LocalKey = (u32, i32, i64, Box<[u8]>);

thread_local! {
    /// This backend's adds in its open transaction: per slot, (subtransaction level,
    /// sum) from the outermost level in. Every key here holds one pin on its slot.
    static LOCAL: RefCell<HashMap<LocalKey, Vec<(i32, i128)>>> = RefCell::default();
    static CALLBACKS: Cell<bool> = const { Cell::new(false) };
    /// This transaction called counter_flush(): slots wait on its outcome, so it must not
    /// be prepared (another session could then end it after this backend is gone).
    static FLUSHED: Cell<bool> = const { Cell::new(false) };
    /// This process is the extension's worker (`on_worker_start`).
    static IS_WORKER: Cell<bool> = const { Cell::new(false) };
}

/// How long since the worker's last committed flush in a database adds may still be
/// buffered there: beyond it (a worker that died without its exit path, or is stuck),
/// adds are durable rows. 10 flush intervals, at least 2 s.
fn stale_after_us() -> i64 {
    (crate::guc::FLUSH_INTERVAL_MS.get().max(1) as i64 * 10_000).max(2_000_000)
}

/// Register this backend's transaction callbacks (once).
fn ensure_callbacks() {
    if !CALLBACKS.get() {
        unsafe {
            pg_sys::RegisterXactCallback(Some(on_xact), null_mut());
            pg_sys::RegisterSubXactCallback(Some(on_subxact), null_mut());
        }
        CALLBACKS.set(true);
    }
}

/// Buffer `delta` for the open transaction, or false: the add must take the durable path
/// (no buffer, another database than the worker's, no recent flush there, a key too
/// long, a full buffer, parallel mode). `install` is the OID of the extension's
/// counter_pending.
///
/// # Safety
/// In a backend, inside a transaction, with the caller's grants already checked.
pub unsafe fn try_add(
    install: pg_sys::Oid,
    counter: i32,
    bucket: i64,
    key: &[u8],
    delta: i64,
) -> bool {
    unsafe {
        // (a parallel worker's adds would end with it, unmerged: durable rows refuse
        // parallel mode with an ERROR, as they should)
        if HEADER.is_null() || key.len() > KEY_MAX || pg_sys::IsInParallelMode() {
            return false;
        }
        let install = install.to_u32();
        let database = pg_sys::MyDatabaseId.to_u32();
        // (a first look without the lock; see below)
        if std::ptr::read_volatile(&raw const (*HEADER).worker_database) != database {
            return false;
        }
        ensure_callbacks();
        let level = pg_sys::GetCurrentTransactionNestLevel();
        let local_key: LocalKey = (install, counter, bucket, key.into());
        let known = LOCAL.with_borrow_mut(|local| match local.get_mut(&local_key) {
            Some(levels) => {
                add_at(levels, level, delta as i128);
                true
            }
            None => false,
        });
        if known {
            return true;
        }
        let id = Id {
            database,
            install,
            counter,
            bucket,
            key,
        };
        let now = pg_sys::GetCurrentTimestamp();
        let stale = stale_after_us();
        // (checked again under the lock: once the worker has stopped buffering, at
        // shutdown, no new pin appears behind its back: see worker.rs, final_flush)
        let pinned = with_table(pg_sys::LWLockMode::LW_EXCLUSIVE, |t| {
            t.header.worker_database == database
                && t.header.last_flush_database == database
                && now - t.header.last_flush <= stale
                && t.pin(&id).is_ok()
        });
        if !pinned {
            return false;
        }
        LOCAL.with_borrow_mut(|local| local.insert(local_key, vec![(level, delta as i128)]));
        true
    }
}

fn add_at(levels: &mut Vec<(i32, i128)>, level: i32, amount: i128) {
    match levels.last_mut() {
        Some((l, sum)) if *l == level => *sum += amount,
        _ => levels.push((level, amount)),
    }
}

/// Commit or roll back every local add: into the pinned slots, or just unpin.
fn end_transaction(commit: bool) {
    FLUSHED.set(false);
    let local = LOCAL.with_borrow_mut(std::mem::take);
    if local.is_empty() {
        return;
    }
    let database = unsafe { pg_sys::MyDatabaseId.to_u32() };
    unsafe {
        with_table(pg_sys::LWLockMode::LW_EXCLUSIVE, |t| {
            for ((install, counter, bucket, key), levels) in &local {
                let id = Id {
                    database,
                    install: *install,
                    counter: *counter,
                    bucket: *bucket,
                    key,
                };
                let amount = if commit {
                    levels.iter().map(|(_, a)| a).sum()
                } else {
                    0
                };
                // (always found: the pin kept the slot)
                t.commit(&id, amount);
            }
        })
    }
}

#[pgrx::pg_guard]
unsafe extern "C-unwind" fn on_xact(event: pg_sys::XactEvent::Type, _arg: *mut std::ffi::c_void) {
    match event {
        pg_sys::XactEvent::XACT_EVENT_COMMIT => end_transaction(true),
        pg_sys::XactEvent::XACT_EVENT_ABORT => end_transaction(false),
        pg_sys::XactEvent::XACT_EVENT_PRE_PREPARE
            if FLUSHED.get() || LOCAL.with_borrow(|l| !l.is_empty()) =>
        {
                raise_as(
                    PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
                    CoreError::invalid_parameter(
                        "cannot PREPARE a transaction that has added to a buffered counter or called counter_flush()",
                    )
                    .with_hint("Add to buffered counters outside two-phase transactions, or use a durable counter."),
                )
        }
        _ => {}
    }
}

#[pgrx::pg_guard]
unsafe extern "C-unwind" fn on_subxact(
    event: pg_sys::SubXactEvent::Type,
    _my: pg_sys::SubTransactionId,
    _parent: pg_sys::SubTransactionId,
    _arg: *mut std::ffi::c_void,
) {
    let level = unsafe { pg_sys::GetCurrentTransactionNestLevel() };
    match event {
        // the subtransaction's adds (and its children's) count nothing; the pins stay
        // until the top-level transaction ends
        pg_sys::SubXactEvent::SUBXACT_EVENT_ABORT_SUB => LOCAL.with_borrow_mut(|local| {
            for levels in local.values_mut() {
                levels.retain(|(l, _)| *l < level);
            }
        }),
        // its adds now belong to the parent
        pg_sys::SubXactEvent::SUBXACT_EVENT_COMMIT_SUB => LOCAL.with_borrow_mut(|local| {
            for levels in local.values_mut() {
                if levels.last().is_some_and(|(l, _)| *l >= level) {
                    let (_, sum) = levels.pop().expect("checked");
                    add_at(levels, level - 1, sum);
                }
            }
        }),
        _ => {}
    }
}

// ---- reads --------------------------------------------------------------------------------

/// Whether the rows of the flush transaction `xid` are invisible to `snapshot`. The
/// reader's own transaction's flush is visible (its rows are, to the statements after
/// the counter_flush() call; a read in the same statement as the call misses them).
unsafe fn hidden_from(xid: u32, snapshot: pg_sys::Snapshot) -> bool {
    unsafe {
        let xid = pg_sys::TransactionId::from(xid);
        !pg_sys::TransactionIdIsCurrentTransactionId(xid)
            && (pg_sys::XidInMVCCSnapshot(xid, snapshot) || !pg_sys::TransactionIdDidCommit(xid))
    }
}

/// The relation `name` in the schema of the function being called.
unsafe fn own_relation(fcinfo: pg_sys::FunctionCallInfo, name: &std::ffi::CStr) -> pg_sys::Oid {
    unsafe {
        let namespace = pg_sys::get_func_namespace((*(*fcinfo).flinfo).fn_oid);
        let rel = super::add::relation(namespace, name);
        if rel == pg_sys::InvalidOid {
            pgrx::error!("counter buffer: the extension's table {name:?} is missing");
        }
        rel
    }
}

/// 42501 unless the current user holds `mode` on counter_pending (`pending`).
unsafe fn require(pending: pg_sys::Oid, mode: u32) {
    unsafe {
        if !super::add::may(pending, mode as pg_sys::AclMode) {
            raise_as(
                PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
                CoreError::invalid_parameter("permission denied for table counter_pending"),
            )
        }
    }
}

/// The caller may read counter_pending's rows, all of them: SELECT, and no row level
/// security that applies to it (the slots cannot be filtered by the policies).
unsafe fn check_read(pending: pg_sys::Oid) {
    unsafe {
        require(pending, pg_sys::ACL_SELECT);
        if super::add::row_security_applies(pending) {
            raise_as(
                PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
                CoreError::invalid_parameter(
                    "the unflushed adds of a buffered counter cannot be read under row level security on counter_pending",
                )
                .with_hint("Row level security policies cannot be applied to adds still in shared memory: read durable counters, or as a role the policies do not apply to."),
            )
        }
    }
}

/// The committed adds of `counter` (of `key` and `bucket` where given) in this
/// database's `install` that the counter tables do not show the caller's snapshot, per
/// slot: (key, bucket, amount).
unsafe fn unflushed(
    install: u32,
    counter: i32,
    key: Option<&[u8]>,
    bucket: Option<i64>,
) -> Vec<(Vec<u8>, i64, i128)> {
    unsafe {
        if HEADER.is_null() {
            return Vec::new();
        }
        let database = pg_sys::MyDatabaseId.to_u32();
        // (delta, inflight, flush xid) per slot, copied under the lock; the transaction
        // status is looked up after (it may read the commit log)
        let mut found: Vec<(Vec<u8>, i64, i128, i128, u32)> = Vec::new();
        with_table(pg_sys::LWLockMode::LW_SHARED, |t| {
            let mut take = |s: &Slot| {
                found.push((
                    s.key().to_vec(),
                    s.bucket,
                    s.delta(),
                    s.inflight(),
                    s.flush_xid,
                ))
            };
            match (key, bucket) {
                // one key of one bucket: a hash probe
                (Some(key), Some(bucket)) => {
                    let id = Id {
                        database,
                        install,
                        counter,
                        bucket,
                        key,
                    };
                    if let Some(s) = t.find(&id) {
                        take(s);
                    }
                }
                _ => t
                    .slots_of(database, install, counter, key)
                    .filter(|s| bucket.is_none_or(|b| s.bucket == b))
                    .for_each(take),
            }
        });
        let snapshot = if pg_sys::ActiveSnapshotSet() {
            pg_sys::GetActiveSnapshot()
        } else {
            pg_sys::GetTransactionSnapshot()
        };
        found
            .into_iter()
            .map(|(k, b, delta, inflight, xid)| {
                let hidden = inflight != 0 && hidden_from(xid, snapshot);
                (k, b, delta + if hidden { inflight } else { 0 })
            })
            .collect()
    }
}

crate::sql_function! {
    /// `_counter_unflushed(cid int4, key text, bucket int8) -> TABLE(key text, bucket int8,
    /// delta int8)`: the adds of counter `cid` (of `key` and `bucket`, or of every key or
    /// bucket where NULL) that the counter tables do not show the caller's snapshot, and
    /// the caller's own of its open transaction (see the module documentation). An
    /// amount beyond the int8 range comes as several rows.
    fn dc_counter_unflushed(fcinfo) {
        unsafe {
            let pending = own_relation(fcinfo, c"counter_pending");
            check_read(pending);
            let install = pending.to_u32();
            let key = arg(fcinfo, 1).map(|d| varlena_bytes(d).to_vec());
            let bucket = arg(fcinfo, 2).map(|d| d.value() as i64);
            pg_sys::InitMaterializedSRF(fcinfo, 0);
            let rsinfo = (*fcinfo).resultinfo as *mut pg_sys::ReturnSetInfo;
            let Some(counter) = arg(fcinfo, 0).map(|d| d.value() as i32) else {
                return pg_sys::Datum::from(0usize);
            };
            let mut rows = unflushed(install, counter, key.as_deref(), bucket);
            LOCAL.with_borrow(|local| {
                for ((i, c, b, k), levels) in local {
                    if *i == install
                        && *c == counter
                        && key.as_deref().is_none_or(|want| want == &k[..])
                        && bucket.is_none_or(|want| want == *b)
                    {
                        rows.push((k.to_vec(), *b, levels.iter().map(|(_, a)| a).sum()));
                    }
                }
            });
            for (k, bucket, amount) in rows {
                for part in int8_parts(amount) {
                    let mut values = [
                        ptr_datum(bytes_to_varlena(&k)),
                        pg_sys::Datum::from(bucket),
                        pg_sys::Datum::from(part),
                    ];
                    let mut nulls = [false; 3];
                    pg_sys::tuplestore_putvalues((*rsinfo).setResult, (*rsinfo).setDesc, values.as_mut_ptr(), nulls.as_mut_ptr());
                }
            }
            pg_sys::Datum::from(0usize)
        }
    }
}

crate::sql_function! {
    /// `_counter_buffer_state(cid int4) -> TABLE(unflushed numeric, last_flush timestamptz)`
    /// for counter_stats: the committed adds of counter `cid` not in the tables yet (as
    /// `_counter_unflushed` counts them, without the caller's open transaction) and when
    /// the worker's last flush in this database committed.
    fn dc_counter_buffer_state(fcinfo) {
        unsafe {
            let pending = own_relation(fcinfo, c"counter_pending");
            check_read(pending);
            let counter = arg(fcinfo, 0).map_or(0, |d| d.value() as i32);
            pg_sys::InitMaterializedSRF(fcinfo, 0);
            let rsinfo = (*fcinfo).resultinfo as *mut pg_sys::ReturnSetInfo;
            let total: i128 = unflushed(pending.to_u32(), counter, None, None)
                .iter()
                .map(|(_, _, a)| a)
                .sum();
            let database = pg_sys::MyDatabaseId.to_u32();
            let last_flush = if HEADER.is_null() {
                0
            } else {
                with_table(pg_sys::LWLockMode::LW_SHARED, |t| {
                    if t.header.last_flush_database == database { t.header.last_flush } else { 0 }
                })
            };
            let numeric = pgrx::IntoDatum::into_datum(pgrx::AnyNumeric::from(total))
                .expect("a numeric datum");
            let mut values = [numeric, pg_sys::Datum::from(last_flush)];
            let mut nulls = [false, last_flush == 0];
            pg_sys::tuplestore_putvalues((*rsinfo).setResult, (*rsinfo).setDesc, values.as_mut_ptr(), nulls.as_mut_ptr());
            pg_sys::Datum::from(0usize)
        }
    }
}

// ---- flush ----------------------------------------------------------------------------------

/// The state of an earlier flush's transaction (see the core module).
unsafe fn flush_state(xid: u32, pending: pg_sys::Relation) -> FlushState {
    unsafe {
        let x = pg_sys::TransactionId::from(xid);
        if pg_sys::TransactionIdIsInProgress(x) {
            FlushState::InProgress
        } else if pg_sys::TransactionIdDidCommit(x) {
            if pg_sys::GlobalVisCheckRemovableXid(pending, x) {
                FlushState::VisibleToAll
            } else {
                FlushState::Committed
            }
        } else {
            FlushState::Aborted
        }
    }
}

crate::sql_function! {
    /// `counter_flush() -> int8`: hand this database's unflushed adds of buffered counters
    /// to the calling transaction, and insert them into counter_pending (through
    /// `_counter_flush_rows`, as the caller). Returns the number of (counter, key, bucket)
    /// entries flushed. If the transaction rolls back, they are unflushed again.
    fn dc_counter_flush(fcinfo) {
        unsafe {
            if HEADER.is_null() {
                return pg_sys::Datum::from(0i64);
            }
            let pending_oid = own_relation(fcinfo, c"counter_pending");
            let registry_oid = own_relation(fcinfo, c"counter_registry");
            // Before the buffer is touched: what the insert needs, and a view of the
            // registry that drops no row of a counter that exists. (The insert keeps the
            // rows of counters its snapshot finds: an older snapshot, or row level
            // security on the registry, would drop those of counters it does not see.)
            require(pending_oid, pg_sys::ACL_INSERT);
            if std::ptr::read_volatile(&raw const pg_sys::XactIsoLevel)
                >= pg_sys::XACT_REPEATABLE_READ as std::ffi::c_int
            {
                raise_as(
                    PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
                    CoreError::invalid_parameter("counter_flush() runs in READ COMMITTED transactions only"),
                )
            }
            for rel in [pending_oid, registry_oid] {
                if super::add::row_security_applies(rel) {
                    raise_as(
                        PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
                        CoreError::invalid_parameter(
                            "counter_flush() cannot run under row level security on the counter tables",
                        ),
                    )
                }
            }
            let install = pending_oid.to_u32();
            let database = pg_sys::MyDatabaseId.to_u32();
            // One look at the database's slots: whether there are any (none: no
            // transaction id, no WAL), whether this install's hold deltas, and the
            // transactions of their earlier flushes, whose states are read outside the lock.
            let mut any = false;
            let mut deltas = false;
            let mut xids: Vec<u32> = Vec::new();
            with_table(pg_sys::LWLockMode::LW_SHARED, |t| {
                for s in t.slots.iter().filter(|s| !s.is_empty() && s.database == database) {
                    any = true;
                    if s.install == install {
                        deltas |= s.delta() != 0;
                        if s.inflight() != 0 {
                            xids.push(s.flush_xid);
                        }
                    }
                }
            });
            if !any {
                return pg_sys::Datum::from(0i64);
            }
            let now = pg_sys::GetCurrentTimestamp();
            xids.sort_unstable();
            xids.dedup();
            let pending = pg_sys::table_open(pending_oid, pg_sys::AccessShareLock as pg_sys::LOCKMODE);
            let states: HashMap<u32, FlushState> =
                xids.into_iter().map(|x| (x, flush_state(x, pending))).collect();
            pg_sys::table_close(pending, pg_sys::NoLock as pg_sys::LOCKMODE);
            // A transaction id (and a commit record) only when there is something to take:
            // a delta, or an aborted flush's amount to take again. Otherwise the flush
            // only settles earlier flushes and removes idle slots.
            let xid = (deltas || states.values().any(|&st| st == FlushState::Aborted)).then(|| {
                ensure_callbacks();
                FLUSHED.set(true);
                pg_sys::GetCurrentTransactionId().into_inner()
            });
            let flush = Flush {
                database,
                install,
                xid,
                now_us: now,
                // (the worker's transaction sees only a committed DROP EXTENSION of an
                // earlier install; a session's could see its own, not yet committed)
                discard_other_installs: IS_WORKER.get(),
            };
            // (a transaction not looked up above is a flush that began since: running)
            let rows = with_table(pg_sys::LWLockMode::LW_EXCLUSIVE, |t| {
                t.begin_flush(&flush, |x| states.get(&x).copied().unwrap_or(FlushState::InProgress))
            });
            if rows.is_empty() {
                return pg_sys::Datum::from(0i64);
            }
            let n = rows.len() as i64;
            let mut counters = Vec::new();
            let mut keys = Vec::new();
            let mut buckets = Vec::new();
            let mut deltas = Vec::new();
            for r in &rows {
                for part in int8_parts(r.amount) {
                    counters.push(r.counter);
                    keys.push(r.key.as_slice());
                    buckets.push(r.bucket);
                    deltas.push(part);
                }
            }
            insert_rows(fcinfo, &counters, &keys, &buckets, &deltas);
            pg_sys::Datum::from(n)
        }
    }
}

/// `<schema>._counter_flush_rows(counters, keys, buckets, deltas)`, through fmgr (its
/// SET search_path applies), as the caller.
unsafe fn insert_rows(
    fcinfo: pg_sys::FunctionCallInfo,
    counters: &[i32],
    keys: &[&[u8]],
    buckets: &[i64],
    deltas: &[i64],
) {
    unsafe {
        let target = super::add::own_function(
            pg_sys::get_func_namespace((*(*fcinfo).flinfo).fn_oid),
            c"_counter_flush_rows",
            &[
                pg_sys::INT4ARRAYOID,
                pg_sys::TEXTARRAYOID,
                pg_sys::INT8ARRAYOID,
                pg_sys::INT8ARRAYOID,
            ],
            false,
            "counter_flush",
        );
        let text_keys: Vec<pg_sys::Datum> = keys
            .iter()
            .map(|k| ptr_datum(bytes_to_varlena(k)))
            .collect();
        let args = [
            array(
                counters.iter().map(|&c| pg_sys::Datum::from(c)).collect(),
                pg_sys::INT4OID,
                4,
                true,
                b'i',
            ),
            array(text_keys, pg_sys::TEXTOID, -1, false, b'i'),
            array(
                buckets.iter().map(|&b| pg_sys::Datum::from(b)).collect(),
                pg_sys::INT8OID,
                8,
                true,
                b'd',
            ),
            array(
                deltas.iter().map(|&d| pg_sys::Datum::from(d)).collect(),
                pg_sys::INT8OID,
                8,
                true,
                b'd',
            ),
        ];
        pg_sys::OidFunctionCall4Coll(
            target,
            pg_sys::DEFAULT_COLLATION_OID,
            args[0],
            args[1],
            args[2],
            args[3],
        );
    }
}

unsafe fn array(
    mut elems: Vec<pg_sys::Datum>,
    elemtype: pg_sys::Oid,
    len: i16,
    byval: bool,
    align: u8,
) -> pg_sys::Datum {
    unsafe {
        let a = pg_sys::construct_array(
            elems.as_mut_ptr(),
            elems.len() as i32,
            elemtype,
            len.into(),
            byval,
            align as std::ffi::c_char,
        );
        pg_sys::Datum::from(a)
    }
}

// ---- the worker's side ------------------------------------------------------------------------

/// The worker serves `database` now (adds there are buffered), or none (0: adds are
/// durable, e.g. at shutdown or while it cannot flush).
pub fn set_worker_database(database: u32) {
    if available() {
        unsafe {
            with_table(pg_sys::LWLockMode::LW_EXCLUSIVE, |t| {
                t.header.worker_database = database;
                t.header.worker_pid = if database == 0 { 0 } else { pg_sys::MyProcPid };
            })
        }
    }
}

/// Record a committed flush of the worker.
pub fn flushed(at: pg_sys::TimestampTz) {
    if available() {
        unsafe {
            let database = pg_sys::MyDatabaseId.to_u32();
            with_table(pg_sys::LWLockMode::LW_EXCLUSIVE, |t| {
                t.header.last_flush = at;
                t.header.last_flush_database = database;
                t.header.flushes += 1;
            })
        }
    }
}

/// Whether `database` has adds that no committed flush has taken: a pinned slot (a
/// transaction that may still commit into it), a delta, or an amount taken by a flush
/// whose transaction has not committed (it may still abort and give it back).
pub fn has_unflushed(database: u32) -> bool {
    leftovers(database)
        .iter()
        .any(|l| l.pinned || l.delta != 0 || l.in_doubt != 0)
}

/// What a slot of the worker's database still holds that could count: a pin, its delta,
/// and the amount of a flush whose transaction has not committed (it may still abort
/// and give it back). Read under the lock; the commit log after it.
struct Leftover {
    pinned: bool,
    delta: i128,
    in_doubt: i128,
}

fn leftovers(database: u32) -> Vec<Leftover> {
    if !available() {
        return Vec::new();
    }
    let mut slots: Vec<(bool, i128, i128, u32)> = Vec::new();
    unsafe {
        with_table(pg_sys::LWLockMode::LW_SHARED, |t| {
            for s in t
                .slots
                .iter()
                .filter(|s| !s.is_empty() && s.database == database)
            {
                slots.push((s.pins > 0, s.delta(), s.inflight(), s.flush_xid));
            }
        });
    }
    slots
        .into_iter()
        .map(|(pinned, delta, inflight, xid)| {
            let committed = inflight == 0
                || unsafe { pg_sys::TransactionIdDidCommit(pg_sys::TransactionId::from(xid)) };
            Leftover {
                pinned,
                delta,
                in_doubt: if committed { 0 } else { inflight },
            }
        })
        .collect()
}

/// Called by the worker once connected: however it exits, adds stop being buffered for
/// it ([`on_worker_exit`]), and its flushes may discard the slots of a dropped install.
pub fn on_worker_start() {
    IS_WORKER.set(true);
    unsafe { pg_sys::before_shmem_exit(Some(on_worker_exit), pg_sys::Datum::from(0usize)) };
}

/// The worker's exit, whichever way (before shared memory is detached): adds in its
/// database stop being buffered, as nobody flushes them until it is back.
///
/// # Safety
/// Registered with `before_shmem_exit` by the worker; called by PostgreSQL only.
pub unsafe extern "C-unwind" fn on_worker_exit(_code: std::ffi::c_int, _arg: pg_sys::Datum) {
    if available() {
        unsafe {
            let me = pg_sys::MyProcPid;
            with_table(pg_sys::LWLockMode::LW_EXCLUSIVE, |t| {
                if t.header.worker_pid == me {
                    t.header.worker_database = 0;
                    t.header.worker_pid = 0;
                }
            })
        }
    }
}

/// The amount of `database` that could still count and is not in the tables: deltas,
/// and what flushes that have not committed took (for the worker's last words).
pub fn unflushed_amount(database: u32) -> i128 {
    leftovers(database)
        .iter()
        .map(|l| l.delta + l.in_doubt)
        .sum()
}
