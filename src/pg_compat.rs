//! What differs between the PostgreSQL versions this extension is built for (15 and 18),
//! in one place, so the rest of the glue reads the same for every version.

use pgrx::pg_sys;

/// The attributes of a tuple descriptor. PostgreSQL 18 moved them behind an array of
/// `CompactAttribute`s (`TupleDescAttr()` in C).
///
/// # Safety
/// `desc` is a valid tuple descriptor that outlives the returned slice.
#[inline]
pub unsafe fn attributes<'a>(desc: pg_sys::TupleDesc) -> &'a [pg_sys::FormData_pg_attribute] {
    let natts = unsafe { (*desc).natts } as usize;
    #[cfg(not(feature = "pg18"))]
    unsafe {
        (*desc).attrs.as_slice(natts)
    }
    #[cfg(feature = "pg18")]
    unsafe {
        let first = (*desc)
            .compact_attrs
            .as_ptr()
            .add(natts)
            .cast::<pg_sys::FormData_pg_attribute>();
        std::slice::from_raw_parts(first, natts)
    }
}

/// Whether the current user has USAGE on the schema `namespace`.
///
/// # Safety
/// Call inside a transaction.
pub unsafe fn may_use_schema(namespace: pg_sys::Oid) -> bool {
    #[cfg(feature = "pg15")]
    let result = unsafe {
        pg_sys::pg_namespace_aclcheck(
            namespace,
            pg_sys::GetUserId(),
            pg_sys::ACL_USAGE as pg_sys::AclMode,
        )
    };
    #[cfg(not(feature = "pg15"))]
    let result = unsafe {
        pg_sys::object_aclcheck(
            pg_sys::NamespaceRelationId,
            namespace,
            pg_sys::GetUserId(),
            pg_sys::ACL_USAGE as pg_sys::AclMode,
        )
    };
    result == pg_sys::AclResult::ACLCHECK_OK
}

/// `VACUUM (SKIP_LOCKED, TRUNCATE false)` of one relation, as autovacuum runs it: no
/// truncation, which would take an ACCESS EXCLUSIVE lock and stall writers.
///
/// # Safety
/// Call in a started transaction command outside any transaction block, with
/// `PortalContext` set to a context that survives the transactions vacuum starts and
/// commits (the caller resets it afterwards).
pub unsafe fn vacuum_relation(relid: pg_sys::Oid) {
    unsafe {
        let rel = pg_sys::makeVacuumRelation(std::ptr::null_mut(), relid, std::ptr::null_mut());
        let rels = pg_sys::lappend(std::ptr::null_mut(), rel.cast());
        // (On 15 every field is named; 18 adds two, set below.)
        #[allow(clippy::needless_update)]
        let mut params = pg_sys::VacuumParams {
            options: pg_sys::VACOPT_VACUUM | pg_sys::VACOPT_SKIP_LOCKED,
            freeze_min_age: -1,
            freeze_table_age: -1,
            multixact_freeze_min_age: -1,
            multixact_freeze_table_age: -1,
            is_wraparound: false,
            log_min_duration: -1,
            index_cleanup: pg_sys::VacOptValue::VACOPTVALUE_AUTO,
            truncate: pg_sys::VacOptValue::VACOPTVALUE_DISABLED,
            nworkers: -1,
            ..Default::default()
        };
        #[cfg(feature = "pg15")]
        pg_sys::vacuum(rels, &mut params, std::ptr::null_mut(), true);
        #[cfg(feature = "pg18")]
        {
            // Since 16 the main table and its TOAST table are processed only when asked
            // (PROCESS_MAIN/PROCESS_TOAST, on by default in VACUUM); the database-wide
            // statistics are left to autovacuum, as it does for itself.
            params.options |= pg_sys::VACOPT_PROCESS_MAIN
                | pg_sys::VACOPT_PROCESS_TOAST
                | pg_sys::VACOPT_SKIP_DATABASE_STATS;
            params.toast_parent = pg_sys::InvalidOid;
            // What VACUUM itself uses unless the table says otherwise.
            params.max_eager_freeze_failure_rate =
                std::ffi::CStr::from_ptr(pg_sys::GetConfigOption(
                    c"vacuum_max_eager_freeze_failure_rate".as_ptr(),
                    false,
                    false,
                ))
                .to_str()
                .ok()
                .and_then(|s| s.parse::<f64>().ok())
                .unwrap_or(0.03);
            // Cross-transaction state, as ExecVacuum makes it (freed with PortalContext).
            let vac_context = pg_sys::AllocSetContextCreateInternal(
                pg_sys::PortalContext,
                c"distributed_counter vacuum".as_ptr(),
                0,
                8 * 1024,
                8 * 1024 * 1024,
            );
            pg_sys::vacuum(rels, &mut params, std::ptr::null_mut(), vac_context, true);
        }
    }
}

/// The dead rows the cumulative statistics system counts in `relid` (0 when it has no
/// entry).
///
/// # Safety
/// Call inside a transaction; the caller clears the statistics snapshot afterwards.
pub unsafe fn dead_tuples(relid: pg_sys::Oid) -> i64 {
    unsafe { tuples(relid).1 }
}

/// (live, dead) tuples of a table in the cumulative statistics (0, 0 when it has none).
/// The fields were renamed in PostgreSQL 16.
///
/// # Safety
/// Call inside a transaction; the caller clears the statistics snapshot afterwards.
pub unsafe fn tuples(relid: pg_sys::Oid) -> (i64, i64) {
    unsafe {
        let entry = pg_sys::pgstat_fetch_stat_tabentry(relid);
        if entry.is_null() {
            return (0, 0);
        }
        #[cfg(feature = "pg18")]
        let counts = ((*entry).live_tuples, (*entry).dead_tuples);
        #[cfg(not(feature = "pg18"))]
        let counts = ((*entry).n_live_tuples, (*entry).n_dead_tuples);
        counts
    }
}
