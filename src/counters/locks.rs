//! The two locks that keep the counter tables consistent across sessions (the lock order
//! is written at the top of sql/counters.sql):
//!
//! - `_counter_registry_changed`, the registry's triggers: a change that could make a
//!   backend's cached `(id, shards)` wrong takes SHARE on `counter_pending` before it
//!   touches a registry row and keeps it until its commit has sent the relcache
//!   invalidation. `counter_add` (fast or SQL path) holds ROW EXCLUSIVE on
//!   `counter_pending` from before it consults its cache, so it can never pair a registry
//!   that already shows the change with a cache that has not heard of it.
//! - `_counter_compaction_lock`: one compactor at a time (the worker and any
//!   `counter_compact()`), so two compactions never deadlock on each other's rows.

use crate::fmgr::{arg_datum, datum_bool};
use crate::sql_function;
use pgrx::pg_sys;
use pgrx::prelude::*;

/// `objsubid` of the compaction lock's object tag (the object is this extension).
const COMPACTION_LOCK_SUBID: u16 = 1;

crate::sql_function! {
    /// The triggers on counter_registry. BEFORE ... FOR EACH STATEMENT (delete, update of
    /// id/name/shards, truncate) and every row trigger take SHARE on counter_pending (a
    /// no-op when already held); the AFTER triggers also make every backend drop its
    /// cached counters (at the end of this command locally, at commit everywhere else).
    fn dc_counter_registry_changed(fcinfo) {
        unsafe {
            let context = (*fcinfo).context;
            if context.is_null() || (*context).type_ != pg_sys::NodeTag::T_TriggerData {
                error!("_counter_registry_changed: not called as a trigger");
            }
            let trigger = context.cast::<pg_sys::TriggerData>();
            let registry = (*trigger).tg_relation;
            // Only on this extension's own registry: elsewhere (anyone with CREATE in
            // the extension's schema could attach it to a table) its SHARE lock on
            // counter_pending would let that table's writers stall every counter_add.
            let namespace = pg_sys::get_func_namespace((*(*fcinfo).flinfo).fn_oid);
            let own_registry =
                pg_sys::get_relname_relid(c"counter_registry".as_ptr(), namespace);
            if (*registry).rd_id != own_registry {
                ereport!(
                    PgLogLevel::ERROR,
                    PgSqlErrorCode::ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED,
                    "_counter_registry_changed() fires only on the extension's counter_registry"
                );
            }
            let event = (*trigger).tg_event;
            let is_insert = event & pg_sys::TRIGGER_EVENT_OPMASK == pg_sys::TRIGGER_EVENT_INSERT;
            if !is_insert {
                let pending = pg_sys::get_relname_relid(c"counter_pending".as_ptr(), namespace);
                if pending != pg_sys::InvalidOid {
                    pg_sys::LockRelationOid(pending, pg_sys::ShareLock as pg_sys::LOCKMODE);
                }
            }
            let is_before = event & pg_sys::TRIGGER_EVENT_TIMINGMASK == pg_sys::TRIGGER_EVENT_BEFORE;
            if !is_before {
                pg_sys::CacheInvalidateRelcacheByRelid((*registry).rd_id);
            }
            pg_sys::Datum::from(0usize)
        }
    }
}

sql_function! {
    /// _counter_compaction_lock(wait bool) -> bool: see sql/counters.sql.
    fn dc_counter_compaction_lock(fcinfo) {
        unsafe {
            let wait = arg_datum(fcinfo, 0).value() != 0;
            let namespace = pg_sys::get_func_namespace((*(*fcinfo).flinfo).fn_oid);
            let pending = pg_sys::get_relname_relid(c"counter_pending".as_ptr(), namespace);
            let allowed = pending != pg_sys::InvalidOid
                && super::add::may(pending, pg_sys::ACL_DELETE as pg_sys::AclMode);
            if !allowed {
                ereport!(
                    PgLogLevel::ERROR,
                    PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
                    "permission denied to compact counters",
                    "Compaction needs DELETE on counter_pending (README.md, \"Security\")."
                );
            }
            datum_bool(acquire_compaction_lock(wait))
        }
    }
}

/// Take the compaction lock for the rest of the transaction; with `wait` false, give up
/// (false) instead of waiting. Callable from the worker without a SQL round trip.
///
/// # Safety
/// Call inside a transaction, in a backend connected to a database where the extension is installed.
pub unsafe fn acquire_compaction_lock(wait: bool) -> bool {
    unsafe {
        let extension = pg_sys::get_extension_oid(c"distributed_counter".as_ptr(), false);
        let tag = pg_sys::LOCKTAG {
            locktag_field1: pg_sys::MyDatabaseId.to_u32(),
            locktag_field2: pg_sys::ExtensionRelationId.to_u32(),
            locktag_field3: extension.to_u32(),
            locktag_field4: COMPACTION_LOCK_SUBID,
            locktag_type: pg_sys::LockTagType::LOCKTAG_OBJECT as u8,
            locktag_lockmethodid: pg_sys::DEFAULT_LOCKMETHOD as u8,
        };
        let result = pg_sys::LockAcquire(
            &tag,
            pg_sys::ExclusiveLock as pg_sys::LOCKMODE,
            false,
            !wait,
        );
        result != pg_sys::LockAcquireResult::LOCKACQUIRE_NOT_AVAIL
    }
}
