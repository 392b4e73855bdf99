//! The compaction background worker (registered only when preloaded).
//!
//! One process per cluster, connected to `distributed_counter.database` as the bootstrap
//! superuser. Each pass, in its own transactions: find the extension's objects by OID
//! (skip if not installed), then call `counter_compact_batch(NULL, compact_batch)` — the
//! same function `counter_compact()` runs — once per transaction, looping at once while
//! batches come back full; every so often purge expired request ids; after every
//! 50,000 folded rows (its own, or 50,000 dead rows in the statistics, which counts
//! those of `counter_compact()` calls too) vacuum `counter_pending` (see
//! `VACUUM_EVERY_ROWS`), and, at most every 10 s, `counter_totals` and `counter_buckets`
//! when the statistics count 50,000 dead rows (and a fifth of the live ones) in them
//! (folds update totals, retention
//! deletes buckets, faster than autovacuum's once-a-minute look keeps up with). The
//! counter_compact_batch call also enforces bucketed counters' retention. Passes start
//! every `compact_interval` (the latch wait is what is left of the interval after a
//! pass). It rereads the configuration on SIGHUP, exits on SIGTERM (exit code 1:
//! restarted after 5 s unless the server is shutting down), idles while
//! `worker_enabled` is off or the server is in recovery, never starts under pg_upgrade,
//! and runs with JIT off. An ERROR inside a transaction is caught, logged and rolled
//! back; the loop goes on (a crash is restarted by the postmaster after 5 s).
//!
//! Privileges. The worker is a superuser session that nobody logs into, so nothing a
//! database owner or any other role can change may steer it:
//! - settings a role or database can carry (`ALTER DATABASE/ROLE ... SET`: search_path,
//!   timeouts, read-only defaults, isolation, PL/pgSQL's extra checks) are overridden
//!   right after connecting, with the override source, which outranks all of them and
//!   survives configuration reloads ([`PINNED_SETTINGS`]);
//! - it builds no SQL text from catalog names: the functions it calls and the table it
//!   vacuums are found by OID through the extension's own dependency records and called
//!   through fmgr, and the functions themselves pin their search_path;
//! - the function bodies name the extension's schema as it was called at CREATE
//!   EXTENSION; each pass first takes SHARE on pg_namespace (so no schema can be
//!   renamed, created or dropped while it runs) and then checks that this name still
//!   is the extension's schema (`_counter_schema_intact`). After `ALTER SCHEMA ...
//!   RENAME` the check fails and the worker only logs a WARNING: the names in the
//!   bodies could now lead to objects someone else created.

use crate::guc;
use pgrx::bgworkers::{BackgroundWorker, BackgroundWorkerBuilder, SignalWakeFlags};
use pgrx::pg_sys;
use pgrx::pg_sys::panic::CaughtError;
use pgrx::prelude::*;
use std::ffi::{CStr, CString};
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

/// The shortest time between two vacuums the statistics' dead-row count starts (see the
/// main loop).
const STATS_VACUUM_GAP: Duration = Duration::from_secs(10);

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

/// Settings the worker runs with whatever the database, its roles or the configuration
/// file say. `jit`: every statement it runs is small, but planner estimates from a
/// once-large pending table can cross jit_above_cost, and then each pass spent far more
/// CPU compiling than working (most of a core while idle). The rest close the ways an
/// `ALTER DATABASE ... SET` by a database owner could make the worker run the owner's
/// objects (search_path), stall it (timeouts, read-only, serializable failures) or make
/// its PL/pgSQL fail (extra_errors).
const PINNED_SETTINGS: &[(&CStr, &CStr)] = &[
    (c"search_path", c"pg_catalog, pg_temp"),
    (c"role", c"none"),
    (c"jit", c"off"),
    (c"statement_timeout", c"0"),
    (c"lock_timeout", c"0"),
    (c"idle_in_transaction_session_timeout", c"0"),
    (c"default_transaction_read_only", c"off"),
    (c"default_transaction_isolation", c"read committed"),
    (c"default_transaction_deferrable", c"off"),
    (c"session_replication_role", c"origin"),
    (c"row_security", c"on"),
    (c"check_function_bodies", c"on"),
    (c"plpgsql.extra_errors", c"none"),
    (c"plpgsql.extra_warnings", c"none"),
    (c"plpgsql.variable_conflict", c"error"),
    (c"plpgsql.check_asserts", c"on"),
];

/// Undo every setting that came from `ALTER DATABASE/ROLE ... SET` (back to its built-in
/// default), then apply [`PINNED_SETTINGS`] (which also covers the configuration file
/// and settings PostgreSQL hides from pg_settings, such as `role`). A database owner can
/// otherwise slow or stall the worker with planner, cost or vacuum settings, or make it
/// act as another role (`SET role` at database level applies to superuser sessions).
fn pin_settings() {
    // First the pins: the query below must not run under the database's search_path.
    apply_pinned_settings();
    let from_roles_or_database: Vec<(String, String)> = unsafe {
        pg_sys::SetCurrentStatementStartTimestamp();
        pg_sys::StartTransactionCommand();
        pg_sys::PushActiveSnapshot(pg_sys::GetTransactionSnapshot());
        let rows = Spi::connect(|client| {
            client
                .select(
                    "SELECT name, boot_val FROM pg_catalog.pg_settings
                      WHERE source IN ('database', 'user', 'database user', 'global')
                        AND boot_val IS NOT NULL",
                    None,
                    &[],
                )?
                .map(|row| {
                    Ok((
                        row.get::<String>(1)?.unwrap_or_default(),
                        row.get::<String>(2)?.unwrap_or_default(),
                    ))
                })
                .collect::<Result<Vec<_>, pgrx::spi::Error>>()
        })
        .unwrap_or_else(|e| error!("reading pg_settings: {e}"));
        pg_sys::PopActiveSnapshot();
        pg_sys::CommitTransactionCommand();
        rows
    };
    for (name, boot_value) in &from_roles_or_database {
        let (Ok(name), Ok(value)) = (
            CString::new(name.as_str()),
            CString::new(boot_value.as_str()),
        ) else {
            continue;
        };
        // A value that does not apply (there should be none) is a WARNING, not an exit.
        unsafe {
            pg_sys::set_config_option(
                name.as_ptr(),
                value.as_ptr(),
                pg_sys::GucContext::PGC_SUSET,
                pg_sys::GucSource::PGC_S_OVERRIDE,
                pg_sys::GucAction::GUC_ACTION_SET,
                true,
                pg_sys::WARNING as std::ffi::c_int,
                false,
            );
        }
    }
    if !from_roles_or_database.is_empty() {
        let names: Vec<&str> = from_roles_or_database
            .iter()
            .map(|(n, _)| n.as_str())
            .collect();
        log!(
            "{WORKER_TYPE}: ignoring database and role settings of {}",
            names.join(", ")
        );
    }
    apply_pinned_settings();
}

fn apply_pinned_settings() {
    for (name, value) in PINNED_SETTINGS {
        unsafe {
            pg_sys::SetConfigOption(
                name.as_ptr(),
                value.as_ptr(),
                pg_sys::GucContext::PGC_SUSET,
                pg_sys::GucSource::PGC_S_OVERRIDE,
            );
        }
    }
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
    super::buffer::on_worker_start();
    pin_settings();
    log!("{WORKER_TYPE} started for database \"{database}\"");

    let mut last_purge: Option<Instant> = None;
    let mut rows_since_vacuum: i64 = 0;
    let mut last_vacuum = Instant::now();
    let mut last_row_vacuum = Instant::now();
    let mut next_pass = Instant::now();
    while !shutdown_requested() {
        reload_config_if_asked();
        flush_if_due();
        if Instant::now() >= next_pass {
            // Passes start at a fixed rate (every compact_interval from the start of the
            // previous one), not an interval after the previous one ended: a row waits at
            // most about one interval plus one pass, however long the passes take.
            let pass_started = Instant::now();
            if guc::WORKER_ENABLED.get() && !unsafe { pg_sys::RecoveryInProgress() } {
                compaction_pass(
                    &mut rows_since_vacuum,
                    &mut last_vacuum,
                    &mut last_row_vacuum,
                    &mut last_purge,
                );
            }
            let interval = Duration::from_millis(guc::COMPACT_INTERVAL_MS.get().max(1) as u64);
            next_pass = pass_started + interval;
        }
        let wake = match next_flush() {
            Some(f) if super::buffer::available() => f.min(next_pass),
            _ => next_pass,
        };
        let pause = wake
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(1));
        if !BackgroundWorker::wait_latch(Some(pause)) {
            break; // SIGTERM or postmaster death
        }
    }
    log!("{WORKER_TYPE} shutting down");
    final_flush();
    // Exit code 1, as PostgreSQL's own `die` handler would: at server shutdown nothing is
    // restarted anyway, and a worker stopped with pg_terminate_backend() comes back after
    // the restart time (pause it with worker_enabled = off instead). Exit code 0 would
    // unregister it until the next server start.
    unsafe { pg_sys::proc_exit(1) };
}

/// One compaction pass: fold until drained, vacuum what needs it, purge request ids.
fn compaction_pass(
    rows_since_vacuum: &mut i64,
    last_vacuum: &mut Instant,
    last_row_vacuum: &mut Instant,
    last_purge: &mut Option<Instant>,
) {
    *rows_since_vacuum += compact_until_drained();
    // Rows that counter_compact() calls folded count too: they leave dead rows
    // just the same, and autovacuum comes too late for a table this busy. (Not
    // more often than every STATS_VACUUM_GAP on that ground: dead rows an old
    // snapshot keeps alive would otherwise make every pass vacuum again.)
    // (The statistics are read only when the worker's own count does not already
    // call for a vacuum.)
    let due = *rows_since_vacuum >= VACUUM_EVERY_ROWS
        || (last_vacuum.elapsed() >= STATS_VACUUM_GAP
            && dead_rows(RowTable::Pending) >= VACUUM_EVERY_ROWS);
    if due && !shutdown_requested() {
        vacuum_table(RowTable::Pending);
        *rows_since_vacuum = 0;
        *last_vacuum = Instant::now();
    }
    // Totals (updated by every fold) and buckets (deleted by retention), by the
    // statistics, at most every STATS_VACUUM_GAP, once a fifth of the live rows
    // (at least VACUUM_EVERY_ROWS) are dead: a vacuum scans every index of the
    // table, so on a table of millions of keys it waits for more dead rows
    // rather than hold compaction up every few seconds.
    if last_row_vacuum.elapsed() >= STATS_VACUUM_GAP {
        for table in [RowTable::Totals, RowTable::Buckets] {
            flush_if_due();
            let (live, dead) = table_rows(table);
            if !shutdown_requested() && dead >= VACUUM_EVERY_ROWS.max(live / 5) {
                vacuum_table(table);
            }
        }
        *last_row_vacuum = Instant::now();
    }
    flush_if_due();
    if !shutdown_requested() && last_purge.is_none_or(|t| t.elapsed() >= PURGE_EVERY) {
        purge_requests();
        *last_purge = Some(Instant::now());
    }
}

thread_local! {
    /// When the last flush of buffered counters started (None: none yet).
    static LAST_FLUSH: std::cell::Cell<Option<Instant>> = const { std::cell::Cell::new(None) };
}

/// When the next flush is due: `flush_interval` (as configured now) after the start of the
/// last one; None when none ran yet (due now). None too without a buffer.
fn next_flush() -> Option<Instant> {
    let interval = Duration::from_millis(guc::FLUSH_INTERVAL_MS.get().max(1) as u64);
    LAST_FLUSH.get().map(|t| t + interval)
}

/// Flush the buffered counters' adds if `flush_interval` has passed since the start of the
/// last flush (called between the steps of a compaction pass too, so a long pass does not
/// hold flushes up). While a flush fails or cannot run (extension missing or renamed,
/// recovery), adds in this database take the durable path.
fn flush_if_due() {
    if !super::buffer::available() || next_flush().is_some_and(|t| Instant::now() < t) {
        return;
    }
    LAST_FLUSH.set(Some(Instant::now()));
    let database = unsafe { pg_sys::MyDatabaseId.to_u32() };
    let ok = !unsafe { pg_sys::RecoveryInProgress() } && flush_once();
    super::buffer::set_worker_database(if ok { database } else { 0 });
}

/// One flush in its own transaction; true when it committed.
fn flush_once() -> bool {
    let result = in_transaction(c"distributed_counter: flushing", "flush", || {
        let flush = Extension::find_intact()?.flush?;
        unsafe { call_function(flush, &[]) };
        Some(())
    });
    let ok = matches!(result, Some(Some(())));
    if ok {
        super::buffer::flushed(unsafe { pg_sys::GetCurrentTimestamp() });
    }
    ok
}

/// At shutdown (or pg_terminate_backend): adds stop being buffered, then flushes run
/// until a committed flush leaves nothing behind: no delta, and no transaction that holds
/// a pin and may still commit into its slot (at a fast shutdown the other backends are
/// ending at the same time; at a smart one they are gone already), or nothing of this
/// database is left in the buffer at all. Gives up after 30 s
/// with a WARNING saying how much is lost.
fn final_flush() {
    if !super::buffer::available() {
        return;
    }
    let database = unsafe { pg_sys::MyDatabaseId.to_u32() };
    super::buffer::set_worker_database(0);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if !unsafe { pg_sys::RecoveryInProgress() } {
            flush_once();
        }
        // (nothing left that could still count: done, whether or not this flush ran)
        if !super::buffer::has_unflushed(database) {
            return;
        }
        if Instant::now() >= deadline {
            warning!(
                "{WORKER_TYPE}: exiting with {} unflushed in buffered counters \
                 (lost if the server stops before a worker flushes them)",
                super::buffer::unflushed_amount(database)
            );
            return;
        }
        unsafe { pg_sys::pg_usleep(10_000) };
    }
}

/// Fold batches, one per transaction, until one comes back less than full (or an error,
/// or shutdown, or another compactor holds the compaction lock). Returns the number of
/// rows folded.
fn compact_until_drained() -> i64 {
    let mut total = 0i64;
    loop {
        let batch = guc::COMPACT_BATCH.get().max(1);
        let moved = in_transaction(c"distributed_counter: compacting", "compaction", || {
            let Some(ext) = Extension::find_intact() else {
                return 0;
            };
            // Another compaction (a counter_compact() call) is running: skip this pass
            // rather than wait behind that caller's transaction.
            if !unsafe { super::locks::acquire_compaction_lock(false) } {
                return 0;
            }
            let moved = unsafe {
                call_function(ext.compact_batch, &[None, Some(pg_sys::Datum::from(batch))])
            };
            moved.map_or(0, |d| d.value() as i64)
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
        flush_if_due();
        if !guc::WORKER_ENABLED.get() {
            return total;
        }
    }
}

/// `VACUUM (SKIP_LOCKED, TRUNCATE false) counter_pending`, run by the worker itself (see
/// [`VACUUM_EVERY_ROWS`]). No truncation: that would take an ACCESS EXCLUSIVE lock and
/// stall the writers. Called outside any transaction; vacuum runs its own. An error is
/// logged as a WARNING.
fn vacuum_table(table: RowTable) {
    let relid = in_transaction(c"distributed_counter: vacuuming", "vacuum", || {
        Extension::find_intact().and_then(|ext| table.oid(&ext))
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
            table.activity().as_ptr(),
        );
    }
    let result: Result<(), String> = PgTryBuilder::new(|| unsafe {
        crate::pg_compat::vacuum_relation(relid);
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
        warning!(
            "{WORKER_TYPE}: vacuum of {} failed: {message}",
            table.name()
        );
    }
}

/// The (live, dead) rows in `table`, from the cumulative statistics (which every
/// backend's compaction feeds, about once a second).
fn table_rows(table: RowTable) -> (i64, i64) {
    in_transaction(
        c"distributed_counter: reading statistics",
        "statistics read",
        || {
            let relid = table.oid(&Extension::find_intact()?)?;
            let counts = unsafe { crate::pg_compat::tuples(relid) };
            unsafe { pg_sys::pgstat_clear_snapshot() };
            Some(counts)
        },
    )
    .flatten()
    .unwrap_or((0, 0))
}

fn dead_rows(table: RowTable) -> i64 {
    table_rows(table).1
}

fn purge_requests() {
    in_transaction(
        c"distributed_counter: purging request ids",
        "request id purge",
        || {
            if let Some(ext) = Extension::find_intact() {
                let batch = guc::COMPACT_BATCH.get().max(1);
                unsafe { call_function(ext.purge_requests, &[Some(pg_sys::Datum::from(batch))]) };
            }
        },
    );
}

/// The extension's objects the worker uses, by OID.
struct Extension {
    compact_batch: pg_sys::Oid,
    purge_requests: pg_sys::Oid,
    pending: pg_sys::Oid,
    /// counter_totals and counter_buckets (absent before the upgrade to 0.3.0).
    totals: Option<pg_sys::Oid>,
    buckets: Option<pg_sys::Oid>,
    /// counter_flush() (absent before the upgrade to 0.3.0).
    flush: Option<pg_sys::Oid>,
}

/// The tables the worker vacuums itself: compaction deletes every pending row, and
/// updates totals and (with retention) deletes buckets at a rate autovacuum, which looks
/// once a minute, leaves to bloat between its visits.
#[derive(Clone, Copy)]
enum RowTable {
    Pending,
    Totals,
    Buckets,
}

impl RowTable {
    fn oid(self, ext: &Extension) -> Option<pg_sys::Oid> {
        match self {
            RowTable::Pending => Some(ext.pending),
            RowTable::Totals => ext.totals,
            RowTable::Buckets => ext.buckets,
        }
    }
    fn activity(self) -> &'static std::ffi::CStr {
        match self {
            RowTable::Pending => c"distributed_counter: vacuuming counter_pending",
            RowTable::Totals => c"distributed_counter: vacuuming counter_totals",
            RowTable::Buckets => c"distributed_counter: vacuuming counter_buckets",
        }
    }
    fn name(self) -> &'static str {
        match self {
            RowTable::Pending => "counter_pending",
            RowTable::Totals => "counter_totals",
            RowTable::Buckets => "counter_buckets",
        }
    }
}

thread_local! {
    /// Whether the last pass found the extension's schema renamed (to log the WARNING
    /// once per change, not once per pass).
    static SCHEMA_WAS_RENAMED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    /// Since when passes have found pg_namespace locked by schema DDL, and when that
    /// was last logged.
    static NAMESPACE_BUSY_SINCE: std::cell::Cell<Option<Instant>> = const { std::cell::Cell::new(None) };
    static LAST_BUSY_WARNING: std::cell::Cell<Option<Instant>> = const { std::cell::Cell::new(None) };
}

impl Extension {
    /// The extension's objects in this database, found through its own dependency
    /// records (`pg_depend` rows of kind 'e'), so no name of a schema is read or
    /// written; None when it is not installed (or not completely, e.g. mid-upgrade), or
    /// when its schema no longer has the name its function bodies use (see the module
    /// documentation). Called at the start of every transaction: the extension may be
    /// created, dropped or moved at any time. Holds SHARE on pg_namespace for the rest
    /// of the transaction, so the answer stays true until it ends.
    fn find_intact() -> Option<Extension> {
        let namespaces_locked = unsafe {
            pg_sys::ConditionalLockRelationOid(
                pg_sys::NamespaceRelationId,
                pg_sys::ShareLock as pg_sys::LOCKMODE,
            )
        };
        if !namespaces_locked {
            // Schema DDL in progress: try again next pass. A transaction that keeps
            // such a change open stops compaction meanwhile; say so once a minute.
            let now = Instant::now();
            let since = NAMESPACE_BUSY_SINCE.get().unwrap_or(now);
            NAMESPACE_BUSY_SINCE.set(Some(since));
            if since.elapsed() >= Duration::from_secs(60)
                && LAST_BUSY_WARNING
                    .get()
                    .is_none_or(|t| t.elapsed() >= Duration::from_secs(60))
            {
                LAST_BUSY_WARNING.set(Some(now));
                warning!(
                    "{WORKER_TYPE}: compaction has waited {} s for an open transaction that \
                     creates, renames or drops a schema (it holds pg_namespace)",
                    since.elapsed().as_secs()
                );
            }
            return None;
        }
        NAMESPACE_BUSY_SINCE.set(None);
        let oids = Spi::connect(|client| {
            let row = client.select(EXTENSION_OBJECTS, Some(1), &[])?.first();
            Ok::<_, pgrx::spi::Error>([
                row.get(1)?,
                row.get(2)?,
                row.get(3)?,
                row.get(4)?,
                row.get(5)?,
                row.get(6)?,
                row.get(7)?,
            ])
        })
        .unwrap_or_else(|e| error!("looking up the extension: {e}"));
        let [Some(compact_batch), Some(purge_requests), Some(pending), Some(intact_fn), totals, buckets, flush] =
            oids
        else {
            return None;
        };
        let intact = unsafe { call_function(intact_fn, &[]) }.is_some_and(|d| d.value() != 0);
        let was_renamed = SCHEMA_WAS_RENAMED.replace(!intact);
        if !intact && !was_renamed {
            warning!(
                "{WORKER_TYPE}: the schema of extension distributed_counter was renamed; \
                 compaction is paused until it has its old name again \
                 (ALTER SCHEMA ... RENAME TO) or the extension is reinstalled"
            );
        }
        intact.then_some(Extension {
            compact_batch,
            purge_requests,
            pending,
            totals,
            buckets,
            flush,
        })
    }
}

/// The OIDs of counter_compact_batch(text, int4), counter_purge_requests(int4), the
/// table counter_pending, _counter_schema_intact(), the tables counter_totals and
/// counter_buckets, and counter_flush() that belong to the extension:
/// always one row, NULLs where the extension (or the object) is absent. Only pg_catalog
/// objects are named (and the search_path is pinned to pg_catalog).
const EXTENSION_OBJECTS: &str = "
    WITH e AS (SELECT x.oid FROM pg_catalog.pg_extension x WHERE x.extname = 'distributed_counter'),
    member AS (SELECT d.classid, d.objid FROM pg_catalog.pg_depend d, e
                WHERE d.refclassid = 'pg_catalog.pg_extension'::pg_catalog.regclass
                  AND d.refobjid = e.oid AND d.deptype = 'e'),
    func AS (SELECT p.oid, p.proname, p.proargtypes FROM pg_catalog.pg_proc p JOIN member m
               ON m.classid = 'pg_catalog.pg_proc'::pg_catalog.regclass AND m.objid = p.oid)
    SELECT (SELECT f.oid FROM func f WHERE f.proname = 'counter_compact_batch'
               AND f.proargtypes = '25 23'::pg_catalog.oidvector),
           (SELECT f.oid FROM func f WHERE f.proname = 'counter_purge_requests'
               AND f.proargtypes = '23'::pg_catalog.oidvector),
           (SELECT c.oid FROM pg_catalog.pg_class c JOIN member m
              ON m.classid = 'pg_catalog.pg_class'::pg_catalog.regclass AND m.objid = c.oid
             WHERE c.relname = 'counter_pending' AND c.relkind = 'r'),
           (SELECT f.oid FROM func f WHERE f.proname = '_counter_schema_intact'
               AND f.proargtypes = ''::pg_catalog.oidvector),
           (SELECT c.oid FROM pg_catalog.pg_class c JOIN member m
              ON m.classid = 'pg_catalog.pg_class'::pg_catalog.regclass AND m.objid = c.oid
             WHERE c.relname = 'counter_totals' AND c.relkind = 'r'),
           (SELECT c.oid FROM pg_catalog.pg_class c JOIN member m
              ON m.classid = 'pg_catalog.pg_class'::pg_catalog.regclass AND m.objid = c.oid
             WHERE c.relname = 'counter_buckets' AND c.relkind = 'r'),
           (SELECT f.oid FROM func f WHERE f.proname = 'counter_flush'
               AND f.proargtypes = ''::pg_catalog.oidvector)";

/// Call the function `fn_oid` through fmgr (which applies its `SET` clauses), with
/// `None` for a NULL argument. Returns the result, None when it is NULL.
unsafe fn call_function(
    fn_oid: pg_sys::Oid,
    args: &[Option<pg_sys::Datum>],
) -> Option<pg_sys::Datum> {
    unsafe {
        let mut flinfo: pg_sys::FmgrInfo = std::mem::zeroed();
        pg_sys::fmgr_info(fn_oid, &mut flinfo);
        if flinfo.fn_nargs as usize != args.len() {
            error!(
                "{WORKER_TYPE}: function {fn_oid:?} takes {} arguments",
                flinfo.fn_nargs
            );
        }
        let size = std::mem::size_of::<pg_sys::FunctionCallInfoBaseData>()
            + args.len() * std::mem::size_of::<pg_sys::NullableDatum>();
        let fcinfo = pg_sys::palloc0(size).cast::<pg_sys::FunctionCallInfoBaseData>();
        (*fcinfo).flinfo = &mut flinfo;
        (*fcinfo).nargs = args.len() as i16;
        (*fcinfo).fncollation = pg_sys::InvalidOid;
        let slots = (*fcinfo).args.as_mut_slice(args.len());
        for (slot, arg) in slots.iter_mut().zip(args) {
            slot.isnull = arg.is_none();
            slot.value = arg.unwrap_or(pg_sys::Datum::from(0usize));
        }
        let Some(entry) = flinfo.fn_addr else {
            error!("{WORKER_TYPE}: function {fn_oid:?} has no entry point");
        };
        // Guarded: an ERROR inside becomes a Rust panic that `in_transaction` catches, logs
        // and rolls back, instead of a longjmp across these frames.
        let result = pg_sys::submodules::ffi::pg_guard_ffi_boundary(|| entry(fcinfo));
        let is_null = (*fcinfo).isnull;
        pg_sys::pfree(fcinfo.cast());
        (!is_null).then_some(result)
    }
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
