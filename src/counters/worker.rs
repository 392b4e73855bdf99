//! The compaction background worker (registered only when preloaded).
//!
//! One process per cluster, connected to `distributed_counter.database`. Each pass, in
//! its own transactions: find the extension's schema (skip if not installed), then run
//! `<schema>.counter_compact_batch(NULL, compact_batch)` — the same SQL that
//! `counter_compact()` runs — once per transaction, looping at once while batches come
//! back full; every so often purge expired request ids; after every 50,000 folded rows
//! vacuum `counter_pending` (see `VACUUM_EVERY_ROWS`). Passes start every
//! `compact_interval` (the latch wait is what is left of the interval after a pass).
//! It rereads the configuration on SIGHUP, exits on SIGTERM (exit code 1: restarted
//! after 5 s unless the server is shutting down), idles while `worker_enabled` is off
//! or the server is in recovery, never starts under pg_upgrade, and runs with JIT off.
//! An ERROR inside a transaction is caught, logged and rolled back; the loop goes on (a
//! crash is restarted by the postmaster after 5 s).

use crate::guc;
use pgrx::bgworkers::{BackgroundWorker, BackgroundWorkerBuilder, SignalWakeFlags};
use pgrx::pg_sys;
use pgrx::pg_sys::panic::CaughtError;
use pgrx::prelude::*;
use std::ffi::CStr;
use std::time::{Duration, Instant};

/// `pg_stat_activity.backend_type` (and process title) of the worker.
pub const WORKER_TYPE: &str = "distributed_counter compactor";

/// How often expired request ids are purged.
const PURGE_EVERY: Duration = Duration::from_secs(10);

/// The worker vacuums `counter_pending` itself after folding this many rows. Every
/// pending row becomes a dead row within about one interval; autovacuum looks at a
/// table at most once per `autovacuum_naptime` (1 min by default), by which time a hot
/// key has left hundreds of thousands of dead rows and index entries that every insert,
/// read and compaction wades through (a 32-client hot-key load lost about 15 % of its
/// throughput to that bloat; with a vacuum every 2 s it kept it).
const VACUUM_EVERY_ROWS: i64 = 50_000;

/// Register the worker; called from `_PG_init` during shared_preload_libraries.
pub fn register() {
    // pg_upgrade starts the server with -b: no worker may touch user tables then.
    if unsafe { pg_sys::IsBinaryUpgrade } {
        return;
    }
    BackgroundWorkerBuilder::new(WORKER_TYPE)
        .set_type(WORKER_TYPE)
        .set_library("distributed_counter")
        .set_function("distributed_counter_compactor_main")
        .enable_spi_access()
        .set_restart_time(Some(Duration::from_secs(5)))
        .load();
}

fn shutdown_requested() -> bool {
    unsafe { std::ptr::read_volatile(&raw const pg_sys::ShutdownRequestPending) != 0 }
}

fn reload_config_if_asked() {
    let asked = BackgroundWorker::sighup_received();
    unsafe {
        if asked || std::ptr::read_volatile(&raw const pg_sys::ConfigReloadPending) != 0 {
            std::ptr::write_volatile(&raw mut pg_sys::ConfigReloadPending, 0);
            pg_sys::ProcessConfigFile(pg_sys::GucContext::PGC_SIGHUP);
        }
    }
}

#[pg_guard]
#[unsafe(no_mangle)]
pub extern "C-unwind" fn distributed_counter_compactor_main(_arg: pg_sys::Datum) {
    BackgroundWorker::attach_signal_handlers(SignalWakeFlags::SIGHUP | SignalWakeFlags::SIGTERM);
    if unsafe { pg_sys::IsBinaryUpgrade } {
        return;
    }
    let database = guc::WORKER_DATABASE
        .get()
        .and_then(|c| c.to_str().ok().map(str::to_owned))
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "postgres".to_owned());
    BackgroundWorker::connect_worker_to_spi(Some(&database), None);
    // No JIT in this session: every statement it runs is small, but planner estimates
    // from a once-large pending table can cross jit_above_cost, and then each pass spent
    // far more CPU compiling than working (most of a core while idle). The override
    // source keeps it off across configuration reloads.
    unsafe {
        pg_sys::SetConfigOption(
            c"jit".as_ptr(),
            c"off".as_ptr(),
            pg_sys::GucContext::PGC_SUSET,
            pg_sys::GucSource::PGC_S_OVERRIDE,
        );
    }
    log!("{WORKER_TYPE} started for database \"{database}\"");

    let mut last_purge: Option<Instant> = None;
    let mut rows_since_vacuum: i64 = 0;
    while !shutdown_requested() {
        reload_config_if_asked();
        // Passes start at a fixed rate (every compact_interval from the start of the
        // previous one), not an interval after the previous one ended: a row waits at
        // most about one interval plus one pass, however long the passes take.
        let pass_started = Instant::now();
        if guc::WORKER_ENABLED.get() && !unsafe { pg_sys::RecoveryInProgress() } {
            rows_since_vacuum += compact_until_drained();
            if rows_since_vacuum >= VACUUM_EVERY_ROWS && !shutdown_requested() {
                vacuum_pending();
                rows_since_vacuum = 0;
            }
            if !shutdown_requested() && last_purge.is_none_or(|t| t.elapsed() >= PURGE_EVERY) {
                purge_requests();
                last_purge = Some(Instant::now());
            }
        }
        let interval = Duration::from_millis(guc::COMPACT_INTERVAL_MS.get().max(1) as u64);
        let pause = interval
            .saturating_sub(pass_started.elapsed())
            .max(Duration::from_millis(1));
        if !BackgroundWorker::wait_latch(Some(pause)) {
            break; // SIGTERM or postmaster death
        }
    }
    log!("{WORKER_TYPE} shutting down");
    // Exit code 1, as PostgreSQL's own `die` handler would: at server shutdown nothing is
    // restarted anyway, and a worker stopped with pg_terminate_backend() comes back after
    // the restart time (pause it with worker_enabled = off instead). Exit code 0 would
    // unregister it until the next server start.
    unsafe { pg_sys::proc_exit(1) };
}

/// Fold batches, one per transaction, until one comes back less than full (or an error,
/// or shutdown). Returns the number of rows folded.
fn compact_until_drained() -> i64 {
    let mut total = 0i64;
    loop {
        let batch = guc::COMPACT_BATCH.get().max(1);
        let moved = in_transaction(c"distributed_counter: compacting", "compaction", || {
            let Some(schema) = extension_schema() else {
                return 0;
            };
            Spi::get_one_with_args::<i64>(
                &format!("SELECT {schema}.counter_compact_batch(NULL, $1)"),
                &[batch.into()],
            )
            .unwrap_or_else(|e| error!("counter_compact_batch: {e}"))
            .unwrap_or(0)
        });
        let Some(n) = moved else {
            return total;
        };
        total += n;
        if n < batch as i64 || shutdown_requested() {
            return total;
        }
        pg_sys::check_for_interrupts!();
        reload_config_if_asked();
        if !guc::WORKER_ENABLED.get() {
            return total;
        }
    }
}

/// `VACUUM (SKIP_LOCKED, TRUNCATE false) counter_pending`, run by the worker itself (see
/// [`VACUUM_EVERY_ROWS`]). No truncation: that would take an ACCESS EXCLUSIVE lock and
/// stall the writers. Called outside any transaction; vacuum runs its own. An error is
/// logged as a WARNING.
#[cfg(feature = "pg15")]
fn vacuum_pending() {
    let relid = in_transaction(c"distributed_counter: vacuuming", "vacuum", || {
        let schema = extension_schema()?;
        Spi::get_one::<pg_sys::Oid>(&format!(
            "SELECT pg_catalog.to_regclass('{schema}.counter_pending')::pg_catalog.oid"
        ))
        .unwrap_or_else(|e| error!("looking up counter_pending: {e}"))
    });
    let Some(relid) = relid.flatten() else {
        return;
    };
    unsafe {
        // vacuum() keeps its cross-transaction state in a child of PortalContext, as
        // autovacuum sets one up; reset after each run.
        if pg_sys::PortalContext.is_null() {
            pg_sys::PortalContext = pg_sys::AllocSetContextCreateInternal(
                pg_sys::TopMemoryContext,
                c"distributed_counter vacuum".as_ptr(),
                0,
                8 * 1024,
                8 * 1024 * 1024,
            );
        }
        pg_sys::SetCurrentStatementStartTimestamp();
        pg_sys::StartTransactionCommand();
        pg_sys::pgstat_report_activity(
            pg_sys::BackendState::STATE_RUNNING,
            c"distributed_counter: vacuuming counter_pending".as_ptr(),
        );
    }
    let result: Result<(), String> = PgTryBuilder::new(|| unsafe {
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
        };
        let rel = pg_sys::makeVacuumRelation(std::ptr::null_mut(), relid, std::ptr::null_mut());
        let rels = pg_sys::lappend(std::ptr::null_mut(), rel.cast());
        pg_sys::vacuum(rels, &mut params, std::ptr::null_mut(), true);
        pg_sys::CommitTransactionCommand();
        Ok(())
    })
    .catch_others(|caught| Err(caught_message(&caught)))
    .execute();
    unsafe {
        if result.is_err() {
            pg_sys::AbortCurrentTransaction();
        }
        pg_sys::MemoryContextReset(pg_sys::PortalContext);
        pg_sys::pgstat_report_activity(pg_sys::BackendState::STATE_IDLE, std::ptr::null());
        pg_sys::pgstat_report_stat(true);
    }
    if let Err(message) = result {
        warning!("{WORKER_TYPE}: vacuum of counter_pending failed: {message}");
    }
}

/// Other PostgreSQL versions: vacuum()'s signature differs; autovacuum alone reclaims.
#[cfg(not(feature = "pg15"))]
fn vacuum_pending() {}

fn purge_requests() {
    in_transaction(
        c"distributed_counter: purging request ids",
        "request id purge",
        || {
            if let Some(schema) = extension_schema() {
                let batch = guc::COMPACT_BATCH.get().max(1);
                Spi::get_one_with_args::<i64>(
                    &format!("SELECT {schema}.counter_purge_requests($1)"),
                    &[batch.into()],
                )
                .unwrap_or_else(|e| error!("counter_purge_requests: {e}"));
            }
        },
    );
}

/// The quoted schema of the extension in this database, or None when it is not
/// installed (or its counters are not, e.g. mid-upgrade). Looked up every transaction:
/// the extension may be created, dropped or moved at any time.
fn extension_schema() -> Option<String> {
    Spi::get_one::<String>(
        "SELECT pg_catalog.quote_ident(n.nspname)
           FROM pg_catalog.pg_extension e
           JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace
          WHERE e.extname = 'distributed_counter'
            AND pg_catalog.to_regprocedure(pg_catalog.quote_ident(n.nspname)
                || '.counter_compact_batch(text,integer)') IS NOT NULL",
    )
    .unwrap_or_else(|e| error!("looking up the extension schema: {e}"))
}

/// Run `body` in its own transaction. An ERROR (or panic) inside is caught: the
/// transaction is aborted, the error logged as a WARNING, and None returned, so one bad
/// pass never ends the worker.
fn in_transaction<R>(
    activity: &'static CStr,
    what: &str,
    body: impl FnOnce() -> R + std::panic::UnwindSafe,
) -> Option<R> {
    unsafe {
        pg_sys::SetCurrentStatementStartTimestamp();
        pg_sys::StartTransactionCommand();
        pg_sys::PushActiveSnapshot(pg_sys::GetTransactionSnapshot());
        pg_sys::pgstat_report_activity(pg_sys::BackendState::STATE_RUNNING, activity.as_ptr());
    }
    let result: Result<R, String> = PgTryBuilder::new(|| {
        let value = body();
        unsafe {
            pg_sys::PopActiveSnapshot();
            pg_sys::CommitTransactionCommand();
        }
        Ok(value)
    })
    .catch_others(|caught| Err(caught_message(&caught)))
    .execute();
    if result.is_err() {
        unsafe { pg_sys::AbortCurrentTransaction() };
    }
    unsafe {
        pg_sys::pgstat_report_activity(pg_sys::BackendState::STATE_IDLE, std::ptr::null());
        pg_sys::pgstat_report_stat(true);
    }
    let result = match result {
        Ok(value) => Some(value),
        Err(message) => {
            warning!("{WORKER_TYPE}: {what} failed: {message}");
            None
        }
    };
    result
}

/// The message of an ERROR (or panic) caught around a worker step, for its WARNING.
fn caught_message(caught: &CaughtError) -> String {
    match caught {
        CaughtError::PostgresError(r) | CaughtError::ErrorReport(r) => {
            format!("{} (SQLSTATE {:?})", r.message(), r.sql_error_code())
        }
        CaughtError::RustPanic { ereport, .. } => ereport.message().to_owned(),
    }
}
