//! `counter_add`'s write path, written against the heap and index AMs.
//!
//! The common call (`request_id` NULL, valid key and delta) is one heap + index insert
//! into `counter_pending`: the same row the PL/pgSQL function's `INSERT INTO
//! counter_pending VALUES (...)` writes, without an executor start-up
//! per call (under 32 pgbench clients on one key the PL/pgSQL version took 24 % of server
//! CPU, this path about 12 %). Everything else goes through the PL/pgSQL function
//! `_counter_add_sql`, which has the same contract and raises the errors: a request_id, a
//! NULL or too-long argument, an unknown counter, a caller without the privileges, row
//! level security that applies to the caller on either table, a read-only transaction,
//! a loaded permission-check hook (`ExecutorCheckPerms_hook`, e.g. sepgsql), a table made
//! a Citus table by `counter_distribute()` (Citus routes the SQL path's INSERT), or a table
//! that no longer has exactly the layout sql/counters.sql creates (a user's trigger,
//! rule, CHECK constraint, identity or generated column, expression or partial index,
//! extra column, other access method, partitioning).
//!
//! The counter's `(id, shards)` comes from a per-backend cache (see [`Cache`]), filled by
//! probing the registry's unique name index (READ COMMITTED only: see [`find_counter`]).
//! The cache is consulted only after the caller's grants and row level security have
//! been checked for this call, so it never answers a role that could not have read the
//! row itself (after `SET ROLE`, inside a SECURITY DEFINER function, ...). An entry is
//! dropped when the registry changes: triggers on `counter_registry` send a relcache
//! invalidation for the table, which every backend receives before its next
//! `counter_add` (each call takes ROW EXCLUSIVE on counter_pending and then accepts
//! pending invalidation messages; a change holds SHARE on counter_pending until its
//! invalidation is sent: src/counters/locks.rs). A counter that does not exist is never
//! cached: those calls take the SQL path, which raises 42704.
//!
//! A buffered counter's add (`mode = 'buffered'`) takes the same checks and, instead of
//! the row, goes to the shared buffer (src/counters/buffer.rs) when that takes it; when
//! it does not (full, another database than the worker's, a long key), the row is
//! written as for a durable counter.
//!
//! Like the executor, the insert uses the current command id, so the row is visible to
//! the following statements of the transaction and goes away on rollback; WAL and
//! logical decoding see an ordinary heap insert.

use crate::fmgr::{arg, datum_bool, nargs};
use pgrx::datum::DatumWithOid;
use pgrx::pg_sys;
use pgrx::prelude::*;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::ffi::CStr;

/// Keys longer than this are rejected (22023) by the SQL path.
const KEY_MAX_BYTES: usize = 2000;

/// At most this many counter names are cached per backend (the cache is emptied when full).
const CACHED_COUNTERS_MAX: usize = 1024;

crate::sql_function! {
    /// counter_add(name text, key text, delta int8, request_id text) -> bool
    fn dc_counter_add(fcinfo) {
        unsafe {
            let fn_oid = (*(*fcinfo).flinfo).fn_oid;
            let rels = resolve(fn_oid);
            // `at` (argument 5) is NULL or a time; NULL means the transaction's start
            let at = if nargs(fcinfo) >= 5 { arg(fcinfo, 4) } else { None };
            if let (Some(rels), Some(name), Some(key), Some(delta), None) =
                (rels, arg(fcinfo, 0), arg(fcinfo, 1), arg(fcinfo, 2), arg(fcinfo, 3))
            {
                let key = pg_sys::pg_detoast_datum_packed(key.cast_mut_ptr());
                if !rels.citus
                    && varlena_len(key) <= KEY_MAX_BYTES
                    && fast_insert(&rels, name, key, delta, at)
                {
                    return datum_bool(true);
                }
            }
            let namespace = match rels {
                Some(r) => r.namespace,
                None => pg_sys::get_func_namespace(fn_oid),
            };
            sql_path(fcinfo, namespace)
        }
    }
}

/// What the fast path needs of a counter: its id, shard count and bucket width in
/// microseconds (0: a plain counter).
#[derive(Clone, Copy)]
struct Counter {
    id: i32,
    shards: i32,
    bucket_us: i64,
    /// `mode = 'buffered'`: adds go to the shared buffer (src/counters/buffer.rs) when
    /// it takes them.
    buffered: bool,
}

/// Microseconds from 1970-01-01 to 2000-01-01 (PostgreSQL's timestamp epoch), both UTC.
const UNIX_TO_PG_EPOCH_US: i128 = 946_684_800_000_000;

/// The bucket of a timestamptz for buckets of `bucket_us` microseconds: floor(µs since
/// 1970-01-01 UTC / bucket_us), as `_counter_bucket` computes it in SQL. None for the
/// infinities (the SQL path reports them).
fn bucket_of(ts: i64, bucket_us: i64) -> Option<i64> {
    if ts == i64::MIN || ts == i64::MAX || bucket_us <= 0 {
        return None;
    }
    i64::try_from((ts as i128 + UNIX_TO_PG_EPOCH_US).div_euclid(bucket_us as i128)).ok()
}

/// Where the extension's tables are, for the schema `counter_add` lives in.
#[derive(Clone, Copy)]
struct Rels {
    fn_oid: pg_sys::Oid,
    namespace: pg_sys::Oid,
    pending: pg_sys::Oid,
    registry: pg_sys::Oid,
    name_index: pg_sys::Oid,
    /// counter_pending is a Citus table (after `counter_distribute()`): on the
    /// coordinator it is an empty shell whose rows live in shards on the workers, so
    /// every add takes the SQL path, which Citus routes.
    citus: bool,
}

/// The per-backend cache: the relations, and `name -> (id, shards)` of counters found.
/// Both are dropped on any relcache invalidation of the three relations (their DDL,
/// VACUUM's statistics update, the registry trigger) and on a full cache reset.
#[derive(Default)]
struct Cache {
    rels: Option<Rels>,
    counters: HashMap<Box<[u8]>, Counter>,
    /// Whether counter_pending is plain ([`pending_is_plain`]), once a buffered add has
    /// looked: whatever would change the answer (a trigger, a rule, row level security,
    /// a column, the access method) sends the relcache invalidation that empties the cache.
    pending_plain: Option<bool>,
}

thread_local! {
    static CACHE: RefCell<Cache> = RefCell::default();
    /// Set by the invalidation callback (which must not allocate or fail), acted on by
    /// the next call.
    static STALE: Cell<bool> = const { Cell::new(false) };
    /// The cached relations' OIDs, copied out of `CACHE` so that the callback reads
    /// them without borrowing it.
    static WATCHED: Cell<[pg_sys::Oid; 3]> = const { Cell::new([pg_sys::InvalidOid; 3]) };
    static CALLBACK_REGISTERED: Cell<bool> = const { Cell::new(false) };
}

unsafe extern "C-unwind" fn on_relcache_invalidation(_arg: pg_sys::Datum, relid: pg_sys::Oid) {
    let watched = WATCHED
        .try_with(Cell::get)
        .unwrap_or([pg_sys::InvalidOid; 3]);
    if relid == pg_sys::InvalidOid || watched.contains(&relid) {
        let _ = STALE.try_with(|s| s.set(true));
    }
}

/// Accepts pending invalidations, empties the cache if they touched it, and returns the
/// relations for the schema of the function `fn_oid` (None if one is missing).
unsafe fn resolve(fn_oid: pg_sys::Oid) -> Option<Rels> {
    unsafe {
        if !CALLBACK_REGISTERED.get() {
            pg_sys::CacheRegisterRelcacheCallback(
                Some(on_relcache_invalidation),
                pg_sys::Datum::from(0usize),
            );
            CALLBACK_REGISTERED.set(true);
        }
        pg_sys::AcceptInvalidationMessages();
        if STALE.replace(false) {
            CACHE.with_borrow_mut(|c| *c = Cache::default());
            WATCHED.set([pg_sys::InvalidOid; 3]);
        }
        if let Some(rels) = CACHE.with_borrow(|c| c.rels).filter(|r| r.fn_oid == fn_oid) {
            return Some(rels);
        }
        let namespace = pg_sys::get_func_namespace(fn_oid);
        let mut rels = Rels {
            fn_oid,
            namespace,
            pending: relation(namespace, c"counter_pending"),
            registry: relation(namespace, c"counter_registry"),
            name_index: relation(namespace, c"counter_registry_name_key"),
            citus: false,
        };
        if [rels.pending, rels.registry, rels.name_index].contains(&pg_sys::InvalidOid) {
            return None;
        }
        rels.citus = is_citus_table(rels.pending);
        CACHE.with_borrow_mut(|c| {
            *c = Cache {
                rels: Some(rels),
                counters: HashMap::new(),
                pending_plain: None,
            }
        });
        WATCHED.set([rels.pending, rels.registry, rels.name_index]);
        Some(rels)
    }
}

/// The counter's (id, shards): cached, or looked up and cached. Under REPEATABLE READ
/// and SERIALIZABLE the lookup reads the transaction's snapshot, which may predate a
/// drop or re-create whose invalidation was already consumed; such transactions neither
/// use nor fill the cache (and keep the SQL path's read of the registry row, with its
/// predicate lock under SERIALIZABLE).
unsafe fn find_counter(rels: &Rels, name: pg_sys::Datum) -> Option<Counter> {
    unsafe {
        let detoasted = pg_sys::Datum::from(pg_sys::pg_detoast_datum_packed(name.cast_mut_ptr()));
        if std::ptr::read_volatile(&raw const pg_sys::XactIsoLevel)
            >= pg_sys::XACT_REPEATABLE_READ as std::ffi::c_int
        {
            return lookup_counter(rels, detoasted);
        }
        let bytes = crate::fmgr::varlena_bytes(detoasted);
        if let Some(&found) = CACHE
            .with_borrow(|c| c.counters.get(bytes).copied())
            .as_ref()
        {
            return Some(found);
        }
        let found = lookup_counter(rels, detoasted)?;
        CACHE.with_borrow_mut(|c| {
            if c.counters.len() >= CACHED_COUNTERS_MAX {
                c.counters.clear();
            }
            c.counters.insert(bytes.into(), found);
        });
        Some(found)
    }
}

/// Payload length of a detoasted (possibly short-header) varlena.
unsafe fn varlena_len(v: *mut pg_sys::varlena) -> usize {
    unsafe { crate::fmgr::varlena_bytes(pg_sys::Datum::from(v)).len() }
}

/// Whether `rel` is a Citus table (it has a row in Citus's pg_dist_partition). Cached with
/// the relations: distributing a table invalidates its relcache entry. When in doubt (the
/// lookup failed), true: the SQL path is always correct.
unsafe fn is_citus_table(rel: pg_sys::Oid) -> bool {
    unsafe {
        if relation(pg_sys::PG_CATALOG_NAMESPACE.into(), c"pg_dist_partition") == pg_sys::InvalidOid
        {
            return false;
        }
        Spi::get_one_with_args::<bool>(
            "SELECT EXISTS (SELECT FROM pg_catalog.pg_dist_partition d
                            WHERE d.logicalrelid OPERATOR(pg_catalog.=) $1)",
            &[DatumWithOid::new(
                pg_sys::Datum::from(rel),
                pg_sys::REGCLASSOID,
            )],
        )
        .ok()
        .flatten()
        .unwrap_or(true)
    }
}

pub(super) unsafe fn relation(namespace: pg_sys::Oid, name: &CStr) -> pg_sys::Oid {
    unsafe { pg_sys::get_relname_relid(name.as_ptr(), namespace) }
}

/// Whether the current user holds `mode` on the relation `rel` (table-level grants).
pub(super) unsafe fn may(rel: pg_sys::Oid, mode: pg_sys::AclMode) -> bool {
    unsafe {
        pg_sys::pg_class_aclcheck(rel, pg_sys::GetUserId(), mode) == pg_sys::AclResult::ACLCHECK_OK
    }
}

/// Whether the relation's first columns have exactly these types (none dropped), and,
/// when `exact`, no others.
unsafe fn has_columns(rel: pg_sys::Relation, types: &[pg_sys::Oid], exact: bool) -> bool {
    unsafe {
        let desc = (*rel).rd_att;
        let attrs = crate::pg_compat::attributes(desc);
        let count_ok = if exact {
            attrs.len() == types.len()
        } else {
            attrs.len() >= types.len()
        };
        count_ok
            && attrs
                .iter()
                .zip(types)
                .all(|(a, &t)| !a.attisdropped && a.atttypid == t)
    }
}

/// The counter's id, shards and bucket width, looked up through the registry's unique
/// name index with a fresh snapshot (what the PL/pgSQL statement sees), or None.
unsafe fn lookup_counter(rels: &Rels, name: pg_sys::Datum) -> Option<Counter> {
    unsafe {
        let registry =
            pg_sys::table_open(rels.registry, pg_sys::AccessShareLock as pg_sys::LOCKMODE);
        let desc = (*registry).rd_att;
        // id, name, shards first; bucket_us (int8) and mode (text) by name
        let bucket_att = pg_sys::get_attnum(rels.registry, c"bucket_us".as_ptr());
        let mode_att = pg_sys::get_attnum(rels.registry, c"mode".as_ptr());
        let layout_ok = has_columns(
            registry,
            &[pg_sys::INT4OID, pg_sys::TEXTOID, pg_sys::INT4OID],
            false,
        ) && bucket_att > 0
            && crate::pg_compat::attributes(desc)
                .get(bucket_att as usize - 1)
                .is_some_and(|a| !a.attisdropped && a.atttypid == pg_sys::INT8OID)
            && mode_att > 0
            && crate::pg_compat::attributes(desc)
                .get(mode_att as usize - 1)
                .is_some_and(|a| !a.attisdropped && a.atttypid == pg_sys::TEXTOID);
        let mut found = None;
        if layout_ok {
            // Compare with the column's collation, which the unique index was built with.
            let collation = crate::pg_compat::attributes(desc)[1].attcollation;
            let mut key: pg_sys::ScanKeyData = std::mem::zeroed();
            pg_sys::ScanKeyEntryInitialize(
                &mut key,
                0,
                2,
                pg_sys::BTEqualStrategyNumber as pg_sys::StrategyNumber,
                pg_sys::InvalidOid,
                collation,
                pg_sys::RegProcedure::from(pg_sys::F_TEXTEQ),
                name,
            );
            let snapshot = pg_sys::RegisterSnapshot(pg_sys::GetTransactionSnapshot());
            let scan =
                pg_sys::systable_beginscan(registry, rels.name_index, true, snapshot, 1, &mut key);
            let tuple = pg_sys::systable_getnext(scan);
            if !tuple.is_null() {
                let mut values = [pg_sys::Datum::from(0usize); 5];
                let mut nulls = [true; 5];
                let atts = [1, 2, 3, bucket_att as i32, mode_att as i32];
                for ((v, n), att) in values.iter_mut().zip(nulls.iter_mut()).zip(atts) {
                    *v = pgrx::pg_sys::heap_getattr(tuple, att, desc, n);
                }
                if !nulls[0] && !nulls[2] && !nulls[3] && !nulls[4] {
                    let mode = pg_sys::pg_detoast_datum_packed(values[4].cast_mut_ptr());
                    found = Some(Counter {
                        id: values[0].value() as i32,
                        shards: values[2].value() as i32,
                        bucket_us: values[3].value() as i64,
                        buffered: crate::fmgr::varlena_bytes(pg_sys::Datum::from(mode))
                            == b"buffered",
                    });
                }
            }
            pg_sys::systable_endscan(scan);
            pg_sys::UnregisterSnapshot(snapshot);
        }
        // Keep the lock to the end of the transaction, as the executor would.
        pg_sys::table_close(registry, pg_sys::NoLock as pg_sys::LOCKMODE);
        found
    }
}

/// Whether row level security applies to the current user on `rel` now (policies, or
/// the table's RLS with `row_security = off`, which the SQL path turns into an ERROR).
pub(super) unsafe fn row_security_applies(rel: pg_sys::Oid) -> bool {
    unsafe {
        pg_sys::check_enable_rls(rel, pg_sys::InvalidOid, true)
            == pg_sys::CheckEnableRlsResult::RLS_ENABLED as std::ffi::c_int
    }
}

/// Whether `counter_pending` is still the plain heap table sql/counters.sql creates, so
/// that one heap + index insert is exactly what the SQL path's INSERT would do: no
/// trigger (foreign keys included), rule, CHECK constraint, identity or generated
/// column, partitioning or other table access method; exactly its six columns.
unsafe fn pending_is_plain(pending: pg_sys::Relation) -> bool {
    unsafe {
        let class = (*pending).rd_rel;
        let desc = (*pending).rd_att;
        let columns = [
            pg_sys::INT4OID,        // counter_id
            pg_sys::INT2OID,        // shard
            pg_sys::TEXTOID,        // key
            pg_sys::INT8OID,        // delta
            pg_sys::TIMESTAMPTZOID, // added_at
            pg_sys::INT8OID,        // bucket
        ];
        (*class).relkind as u8 == pg_sys::RELKIND_RELATION
            && !(*class).relispartition
            && (*class).relam == pg_sys::HEAP_TABLE_AM_OID
            && (*pending).trigdesc.is_null()
            && (*pending).rd_rules.is_null()
            && !(*class).relrowsecurity
            && ((*desc).constr.is_null() || (*(*desc).constr).num_check == 0)
            && has_columns(pending, &columns, true)
            && crate::pg_compat::attributes(desc)
                .iter()
                .all(|a| a.attidentity == 0 && a.attgenerated == 0)
    }
}

/// [`pending_is_plain`], cached until the next invalidation of the cached relations.
/// Called with ROW EXCLUSIVE held on counter_pending and invalidations accepted since.
unsafe fn pending_plain_cached(pending_oid: pg_sys::Oid) -> bool {
    unsafe {
        if let Some(plain) = CACHE.with_borrow(|c| c.pending_plain) {
            return plain;
        }
        let pending = pg_sys::table_open(pending_oid, pg_sys::NoLock as pg_sys::LOCKMODE);
        let plain = pending_is_plain(pending);
        pg_sys::table_close(pending, pg_sys::NoLock as pg_sys::LOCKMODE);
        CACHE.with_borrow_mut(|c| c.pending_plain = Some(plain));
        plain
    }
}

/// Insert the delta row; false (nothing written) when the SQL path must handle the call.
///
/// Every check the SQL path's executor would make for the current user is made here on
/// every call, before the cache is consulted: the grants on both tables, row level
/// security on both (where it applies, the SQL path runs instead, so the policies
/// decide), read-only transactions and permission-check hooks. The cache therefore only
/// ever answers a role that could have read the same registry row itself.
unsafe fn fast_insert(
    rels: &Rels,
    name: pg_sys::Datum,
    key: *mut pg_sys::varlena,
    delta: pg_sys::Datum,
    at: Option<pg_sys::Datum>,
) -> bool {
    unsafe {
        // A read-only transaction (or a standby) gets the SQL path's 25006; a loaded
        // permission-check hook (e.g. sepgsql) sees the SQL path's INSERT.
        if std::ptr::read_volatile(&raw const pg_sys::XactReadOnly)
            || std::ptr::read_volatile(&raw const pg_sys::ExecutorCheckPerms_hook).is_some()
        {
            return false;
        }
        // The privileges the SQL path's INSERT ... SELECT needs, checked on every call
        // (USAGE on the schema too: the call may have been resolved before it was revoked).
        if !crate::pg_compat::may_use_schema(rels.namespace)
            || !may(rels.pending, pg_sys::ACL_INSERT as pg_sys::AclMode)
            || !may(rels.registry, pg_sys::ACL_SELECT as pg_sys::AclMode)
            || row_security_applies(rels.registry)
            || row_security_applies(rels.pending)
        {
            return false;
        }
        // ROW EXCLUSIVE on counter_pending before the cache is read, then the invalidations
        // that arrived meanwhile: a registry change that could make an entry stale holds
        // SHARE on counter_pending until it has sent its invalidation (src/counters/locks.rs),
        // so no entry read after this point predates a change this transaction can see.
        pg_sys::LockRelationOid(rels.pending, pg_sys::RowExclusiveLock as pg_sys::LOCKMODE);
        pg_sys::AcceptInvalidationMessages();
        if STALE.get() {
            return false; // the next call starts from an empty cache
        }
        let Some(Counter {
            id: counter_id,
            shards,
            bucket_us,
            buffered,
        }) = find_counter(rels, name)
        else {
            return false;
        };
        if shards < 1 {
            return false;
        }
        let now = pg_sys::GetCurrentTransactionStartTimestamp();
        let bucket = if bucket_us == 0 {
            0
        } else {
            match bucket_of(at.map_or(now, |d| d.value() as i64), bucket_us) {
                Some(b) => b,
                None => return false,
            }
        };
        // A buffered counter's add goes to the shared buffer when it takes it; its row is
        // written by a flush later. (Only with the table as plain as for the row insert:
        // whatever a user attached to counter_pending then runs at the add, as the SQL
        // path's INSERT would run it.)
        if buffered
            && pending_plain_cached(rels.pending)
            && super::buffer::try_add(
                rels.pending,
                counter_id,
                bucket,
                crate::fmgr::varlena_bytes(pg_sys::Datum::from(key)),
                delta.value() as i64,
            )
        {
            return true;
        }
        let pending = pg_sys::table_open(rels.pending, pg_sys::NoLock as pg_sys::LOCKMODE);
        let mut inserted = false;
        if pending_is_plain(pending) {
            let indexes = pg_sys::CatalogOpenIndexes(pending);
            let n = (*indexes).ri_NumIndices as usize;
            let simple_indexes = (0..n).all(|i| {
                let info = *(*indexes).ri_IndexRelationInfo.add(i);
                let index = *(*indexes).ri_IndexRelationDescs.add(i);
                (*info).ii_Expressions.is_null()
                    && (*info).ii_Predicate.is_null()
                    && (*info).ii_ExclusionOps.is_null()
                    && (!(*info).ii_Unique || (*(*index).rd_index).indimmediate)
            });
            if simple_indexes {
                let shard = (pg_sys::MyProcPid % shards) as i16;
                let mut values = [
                    pg_sys::Datum::from(counter_id),
                    pg_sys::Datum::from(shard),
                    pg_sys::Datum::from(key),
                    delta,
                    pg_sys::Datum::from(now),
                    pg_sys::Datum::from(bucket),
                ];
                let mut nulls = [false; 6];
                let tuple = pg_sys::heap_form_tuple(
                    (*pending).rd_att,
                    values.as_mut_ptr(),
                    nulls.as_mut_ptr(),
                );
                // heap insert (toasting a long key if needed) + one entry per index
                pg_sys::CatalogTupleInsertWithInfo(pending, tuple, indexes);
                pg_sys::heap_freetuple(tuple);
                inserted = true;
            }
            pg_sys::CatalogCloseIndexes(indexes);
        }
        pg_sys::table_close(pending, pg_sys::NoLock as pg_sys::LOCKMODE);
        inserted
    }
}

/// The function `<schema>.name(argtypes)` of the extension's schema `namespace`, by its
/// qualified name (no search_path): InvalidOid if there is none and `missing_ok`.
/// `caller` names the function for the error when the schema itself is gone (dropped
/// by a concurrent DROP SCHEMA/EXTENSION since the call was resolved).
pub(super) unsafe fn own_function(
    namespace: pg_sys::Oid,
    name: &CStr,
    argtypes: &[pg_sys::Oid],
    missing_ok: bool,
    caller: &str,
) -> pg_sys::Oid {
    unsafe {
        let schema = pg_sys::get_namespace_name(namespace);
        if schema.is_null() {
            pgrx::error!("{caller}: the extension's schema no longer exists");
        }
        let names = pg_sys::lappend(
            pg_sys::lappend(std::ptr::null_mut(), pg_sys::makeString(schema).cast()),
            pg_sys::makeString(name.as_ptr().cast_mut()).cast(),
        );
        pg_sys::LookupFuncName(names, argtypes.len() as i32, argtypes.as_ptr(), missing_ok)
    }
}

/// The general path: `<schema>._counter_add_sql(name, key, delta, request_id, at)`, called
/// through fmgr with this call's arguments and collation. Not through SPI: an SPI
/// statement would add a CONTEXT line ("SQL statement "SELECT ..."") to the errors the
/// SQL path raises, which `_counter_raise` keeps to one clear message (raise.rs).
unsafe fn sql_path(fcinfo: pg_sys::FunctionCallInfo, namespace: pg_sys::Oid) -> pg_sys::Datum {
    unsafe {
        let argtypes = [
            pg_sys::TEXTOID,
            pg_sys::TEXTOID,
            pg_sys::INT8OID,
            pg_sys::TEXTOID,
            pg_sys::TIMESTAMPTZOID,
        ];
        // (before ALTER EXTENSION ... UPDATE to 0.3.0 the schema has the 4-argument
        // _counter_add_sql of 0.2.0, which this library keeps working with)
        let name = c"_counter_add_sql";
        let mut target = own_function(namespace, name, &argtypes, true, "counter_add");
        if target == pg_sys::InvalidOid {
            target = own_function(namespace, name, &argtypes[..4], false, "counter_add");
        }
        let nargs = pg_sys::get_func_nargs(target) as usize;
        let flinfo =
            pg_sys::palloc0(std::mem::size_of::<pg_sys::FmgrInfo>()).cast::<pg_sys::FmgrInfo>();
        pg_sys::fmgr_info(target, flinfo);
        let size = std::mem::size_of::<pg_sys::FunctionCallInfoBaseData>()
            + argtypes.len() * std::mem::size_of::<pg_sys::NullableDatum>();
        let call = pg_sys::palloc0(size).cast::<pg_sys::FunctionCallInfoBaseData>();
        (*call).flinfo = flinfo;
        // The default collation, as the SPI statement this call replaced had: the
        // caller's collation must not reach the registry lookup (a nondeterministic
        // one would match other names and defeat the name index).
        (*call).fncollation = pg_sys::DEFAULT_COLLATION_OID;
        (*call).nargs = nargs as i16;
        // (a call through an older 4-argument declaration has no `at`: NULL)
        let from = (*fcinfo).args.as_slice((*fcinfo).nargs as usize);
        let to = (*call).args.as_mut_slice(nargs.min(argtypes.len()));
        for (i, slot) in to.iter_mut().enumerate() {
            *slot = from.get(i).copied().unwrap_or(pg_sys::NullableDatum {
                value: pg_sys::Datum::from(0usize),
                isnull: true,
            });
        }
        let func = (*flinfo).fn_addr.expect("fmgr_info sets fn_addr");
        // An ERROR raised by the PL/pgSQL function longjmps from here through these
        // Rust frames, as it did through the SPI call before: nothing with a destructor
        // may be alive in this function or in dc_counter_add at this point. (Not through
        // pgrx's guard: its re-raise would add the caller's CONTEXT lines again.)
        let result = func(call);
        datum_bool(!(*call).isnull && result.value() != 0)
    }
}
