//! `counter_add`'s write path, written against the heap and index AMs.
//!
//! The common call (`request_id` NULL, valid key and delta) is one heap + index insert
//! into `counter_pending`: the same row the PL/pgSQL statement `INSERT INTO
//! counter_pending SELECT ... FROM counter_registry` writes, without an executor start-up
//! per call (under 32 pgbench clients on one key the PL/pgSQL version took 24 % of server
//! CPU, this path about 12 %). Everything else goes through the PL/pgSQL function
//! `_counter_add_sql`, which has the same contract and raises the errors: a request_id, a
//! NULL or too-long argument, an unknown counter, a caller without the privileges, a
//! read-only transaction, a loaded permission-check hook (`ExecutorCheckPerms_hook`, e.g.
//! sepgsql), or a table that no longer has exactly the layout sql/counters.sql creates (a
//! user's trigger, RLS policy, CHECK constraint, expression or partial index, extra
//! column).
//!
//! The counter's `(id, shards)` comes from a per-backend cache (see [`Cache`]), filled by
//! probing the registry's unique name index (READ COMMITTED only: see [`find_counter`]).
//! An entry is dropped when the registry changes: triggers on `counter_registry`
//! (`_counter_registry_changed`: per row on INSERT, DELETE and UPDATE of id, name or
//! shards, per statement on TRUNCATE) send a relcache invalidation for the table, which
//! every backend receives before its next `counter_add` (each call first accepts pending
//! invalidation messages). A counter that does not exist is never cached: those calls
//! take the SQL path, which raises 42704.
//!
//! Like the executor, the insert uses the current command id, so the row is visible to
//! the following statements of the transaction and goes away on rollback; WAL and
//! logical decoding see an ordinary heap insert.

use crate::fmgr::{arg, datum_bool};
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
            if let (Some(rels), Some(name), Some(key), Some(delta), None) =
                (rels, arg(fcinfo, 0), arg(fcinfo, 1), arg(fcinfo, 2), arg(fcinfo, 3))
            {
                let key = pg_sys::pg_detoast_datum_packed(key.cast_mut_ptr());
                if varlena_len(key) <= KEY_MAX_BYTES && fast_insert(&rels, name, key, delta) {
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

crate::sql_function! {
    /// The row and TRUNCATE triggers on counter_registry: make every backend drop its cached
    /// counters (at the end of this command locally, at commit everywhere else).
    fn dc_counter_registry_changed(fcinfo) {
        unsafe {
            let context = (*fcinfo).context;
            if context.is_null() || (*context).type_ != pg_sys::NodeTag::T_TriggerData {
                error!("_counter_registry_changed: not called as a trigger");
            }
            let trigger = context.cast::<pg_sys::TriggerData>();
            pg_sys::CacheInvalidateRelcacheByRelid((*(*trigger).tg_relation).rd_id);
            pg_sys::Datum::from(0usize)
        }
    }
}

/// Where the extension's tables are, for the schema `counter_add` lives in.
#[derive(Clone, Copy)]
struct Rels {
    fn_oid: pg_sys::Oid,
    namespace: pg_sys::Oid,
    pending: pg_sys::Oid,
    registry: pg_sys::Oid,
    name_index: pg_sys::Oid,
}

/// The per-backend cache: the relations, and `name -> (id, shards)` of counters found.
/// Both are dropped on any relcache invalidation of the three relations (their DDL,
/// VACUUM's statistics update, the registry trigger) and on a full cache reset.
#[derive(Default)]
struct Cache {
    rels: Option<Rels>,
    counters: HashMap<Box<[u8]>, (i32, i32)>,
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
    let rels = Rels {
        fn_oid,
        namespace,
        pending: relation(namespace, c"counter_pending"),
        registry: relation(namespace, c"counter_registry"),
        name_index: relation(namespace, c"counter_registry_name_key"),
    };
    if [rels.pending, rels.registry, rels.name_index].contains(&pg_sys::InvalidOid) {
        return None;
    }
    CACHE.with_borrow_mut(|c| {
        *c = Cache {
            rels: Some(rels),
            counters: HashMap::new(),
        }
    });
    WATCHED.set([rels.pending, rels.registry, rels.name_index]);
    Some(rels)
}

/// The counter's (id, shards): cached, or looked up and cached. Under REPEATABLE READ
/// and SERIALIZABLE the lookup reads the transaction's snapshot, which may predate a
/// drop or re-create whose invalidation was already consumed; such transactions neither
/// use nor fill the cache (and keep the SQL path's read of the registry row, with its
/// predicate lock under SERIALIZABLE).
unsafe fn find_counter(rels: &Rels, name: pg_sys::Datum) -> Option<(i32, i32)> {
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

/// Payload length of a detoasted (possibly short-header) varlena.
unsafe fn varlena_len(v: *mut pg_sys::varlena) -> usize {
    crate::fmgr::varlena_bytes(pg_sys::Datum::from(v)).len()
}

unsafe fn relation(namespace: pg_sys::Oid, name: &CStr) -> pg_sys::Oid {
    pg_sys::get_relname_relid(name.as_ptr(), namespace)
}

unsafe fn may(rel: pg_sys::Oid, mode: pg_sys::AclMode) -> bool {
    pg_sys::pg_class_aclcheck(rel, pg_sys::GetUserId(), mode) == pg_sys::AclResult::ACLCHECK_OK
}

/// Whether the relation's first columns have exactly these types (none dropped), and,
/// when `exact`, no others.
unsafe fn has_columns(rel: pg_sys::Relation, types: &[pg_sys::Oid], exact: bool) -> bool {
    let desc = (*rel).rd_att;
    let attrs = (*desc).attrs.as_slice((*desc).natts as usize);
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

/// The counter's (id, shards), looked up through the registry's unique name index with
/// a fresh snapshot (what the PL/pgSQL statement sees), or None.
unsafe fn lookup_counter(rels: &Rels, name: pg_sys::Datum) -> Option<(i32, i32)> {
    let registry = pg_sys::table_open(rels.registry, pg_sys::AccessShareLock as pg_sys::LOCKMODE);
    let desc = (*registry).rd_att;
    // id, name, shards
    let layout_ok = has_columns(
        registry,
        &[pg_sys::INT4OID, pg_sys::TEXTOID, pg_sys::INT4OID],
        false,
    );
    let mut found = None;
    if layout_ok {
        // Compare with the column's collation, which the unique index was built with.
        let collation = (*desc).attrs.as_slice(3)[1].attcollation;
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
            let mut values = [pg_sys::Datum::from(0usize); 3];
            let mut nulls = [true; 3];
            for (i, (v, n)) in values.iter_mut().zip(nulls.iter_mut()).enumerate() {
                *v = pgrx::pg_sys::heap_getattr(tuple, i as i32 + 1, desc, n);
            }
            if !nulls[0] && !nulls[2] {
                found = Some((values[0].value() as i32, values[2].value() as i32));
            }
        }
        pg_sys::systable_endscan(scan);
        pg_sys::UnregisterSnapshot(snapshot);
    }
    // Keep the lock to the end of the transaction, as the executor would.
    pg_sys::table_close(registry, pg_sys::NoLock as pg_sys::LOCKMODE);
    found
}

/// Insert the delta row; false (nothing written) when the SQL path must handle the call.
unsafe fn fast_insert(
    rels: &Rels,
    name: pg_sys::Datum,
    key: *mut pg_sys::varlena,
    delta: pg_sys::Datum,
) -> bool {
    // A read-only transaction (or a standby) gets the SQL path's 25006; a loaded
    // permission-check hook (e.g. sepgsql) sees the SQL path's INSERT.
    if std::ptr::read_volatile(&raw const pg_sys::XactReadOnly)
        || std::ptr::read_volatile(&raw const pg_sys::ExecutorCheckPerms_hook).is_some()
    {
        return false;
    }
    // The privileges the SQL path's INSERT ... SELECT needs, checked on every call.
    if !may(rels.pending, pg_sys::ACL_INSERT as pg_sys::AclMode)
        || !may(rels.registry, pg_sys::ACL_SELECT as pg_sys::AclMode)
    {
        return false;
    }
    let Some((counter_id, shards)) = find_counter(rels, name) else {
        return false;
    };
    if shards < 1 {
        return false;
    }
    let pending = pg_sys::table_open(rels.pending, pg_sys::RowExclusiveLock as pg_sys::LOCKMODE);
    let plain = (*(*pending).rd_rel).relkind as u8 == pg_sys::RELKIND_RELATION
        && (*pending).trigdesc.is_null()
        && !(*(*pending).rd_rel).relrowsecurity
        && ((*(*pending).rd_att).constr.is_null() || (*(*(*pending).rd_att).constr).num_check == 0)
        // counter_id, shard, key, delta, added_at
        && has_columns(
            pending,
            &[
                pg_sys::INT4OID,
                pg_sys::INT2OID,
                pg_sys::TEXTOID,
                pg_sys::INT8OID,
                pg_sys::TIMESTAMPTZOID,
            ],
            true,
        );
    let mut inserted = false;
    if plain {
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
                pg_sys::Datum::from(pg_sys::GetCurrentTransactionStartTimestamp()),
            ];
            let mut nulls = [false; 5];
            let tuple =
                pg_sys::heap_form_tuple((*pending).rd_att, values.as_mut_ptr(), nulls.as_mut_ptr());
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

/// The general path: `<schema>._counter_add_sql(name, key, delta, request_id)`.
unsafe fn sql_path(fcinfo: pg_sys::FunctionCallInfo, namespace: pg_sys::Oid) -> pg_sys::Datum {
    let schema = pg_sys::quote_identifier(pg_sys::get_namespace_name(namespace));
    let schema = CStr::from_ptr(schema).to_string_lossy();
    let oids = [
        pg_sys::TEXTOID,
        pg_sys::TEXTOID,
        pg_sys::INT8OID,
        pg_sys::TEXTOID,
    ];
    let args: Vec<DatumWithOid> = oids
        .iter()
        .enumerate()
        .map(|(i, &oid)| match arg(fcinfo, i) {
            Some(d) => DatumWithOid::new(d, oid),
            None => DatumWithOid::null_oid(oid),
        })
        .collect();
    let added = Spi::get_one_with_args::<bool>(
        &format!("SELECT {schema}._counter_add_sql($1, $2, $3, $4)"),
        &args,
    )
    .unwrap_or_else(|e| error!("counter_add: {e}"))
    .unwrap_or(false);
    datum_bool(added)
}
