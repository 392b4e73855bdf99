//! Every GUC of the extension, in one place. Contexts follow what each setting
//! controls: defaults users tune per session are USERSET, worker timing is SIGHUP
//! (the worker rereads it on SIGHUP), and which database the worker serves is
//! POSTMASTER-level (it connects once at start).

use pgrx::guc::{GucContext, GucFlags, GucRegistry, GucSetting};
use std::ffi::CString;

/// `distributed_counter.hll_default_precision` (USERSET, 4..18, default 12): precision
/// `p` (2^p registers) used by `hll_empty()`, `hll_add_agg(h)` and
/// `approx_count_distinct` when no precision is given. Dense size is 2^p bytes;
/// relative standard error is about 0.782 / sqrt(2^p) (1.2% at p = 12).
pub static HLL_DEFAULT_PRECISION: GucSetting<i32> = GucSetting::<i32>::new(12);

/// `distributed_counter.node_id` (SIGHUP, default empty = the cluster's system
/// identifier): the node name that `gcounter_increment` / `pncounter_*` credit when no
/// node is given. Must be 1..63 bytes when set. Only the server configuration sets it
/// (postgresql.conf or ALTER SYSTEM, then a reload): a session that could set it could
/// credit its increments to another node's entry, and the per-node maximum of the merge
/// would then lose increments across the cluster.
pub static NODE_ID: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);

/// `distributed_counter.database` (POSTMASTER, default 'postgres'): the database the
/// compaction worker connects to.
pub static WORKER_DATABASE: GucSetting<Option<CString>> =
    GucSetting::<Option<CString>>::new(Some(c"postgres"));

/// `distributed_counter.compact_interval` (SIGHUP, ms, default 1000): how often the
/// worker starts a compaction pass (measured start to start; a pass that finds full
/// batches keeps folding until a batch comes back less than full).
pub static COMPACT_INTERVAL_MS: GucSetting<i32> = GucSetting::<i32>::new(1000);

/// `distributed_counter.compact_batch` (SIGHUP, default 10000): the most shard rows
/// one compaction transaction folds; bounds lock time and WAL per transaction.
pub static COMPACT_BATCH: GucSetting<i32> = GucSetting::<i32>::new(10_000);

/// `distributed_counter.worker_enabled` (SIGHUP, default on): pause the worker's
/// compaction without restarting the server (its flushes of buffered counters go on:
/// they are what makes those adds durable).
pub static WORKER_ENABLED: GucSetting<bool> = GucSetting::<bool>::new(true);

/// `distributed_counter.dedupe_retention` (SIGHUP, seconds, default 86400): how long a
/// `request_id` passed to `counter_add` is remembered; a repeat within this window
/// adds nothing.
pub static DEDUPE_RETENTION_S: GucSetting<i32> = GucSetting::<i32>::new(86_400);

/// `distributed_counter.rate_limit_keys` (POSTMASTER, default 65536): how many keys
/// `rate_limit()` can hold state for at once, across all databases of the server (one
/// pool). The table is reserved in shared memory at server start: 60 to 116 bytes per
/// key (hash slots for at least twice the keys, rounded up to a power of two, 28 bytes
/// each with their heap position, and 4 bytes of heap per key). A key whose bucket is
/// full again needs no state and its slot is reused; when every slot holds a bucket that
/// is still refilling, a call for a new key fails with 53400.
pub static RATE_LIMIT_KEYS: GucSetting<i32> = GucSetting::<i32>::new(65_536);

/// `distributed_counter.flush_interval` (SIGHUP, ms, default 100): how often the worker
/// flushes the unflushed adds of buffered counters (`counter_create(..., mode =>
/// 'buffered')`) into the counter tables, one transaction per flush, measured start to
/// start. A crash (not a clean shutdown) loses the adds of about the last interval.
pub static FLUSH_INTERVAL_MS: GucSetting<i32> = GucSetting::<i32>::new(100);

/// `distributed_counter.buffer_keys` (POSTMASTER, default 16384): how many
/// (counter, key, bucket) entries the shared buffer of buffered counters holds at once,
/// across all databases. Reserved at server start: slots for at least twice as many,
/// rounded up to a power of two, of 208 bytes each (6.5 MB by default). An entry is freed
/// by the flush after its adds are flushed; while the buffer is full, adds to new
/// entries take the durable path (a row each, as a durable counter's).
pub static BUFFER_KEYS: GucSetting<i32> = GucSetting::<i32>::new(16_384);

pub fn register() {
    GucRegistry::define_int_guc(
        c"distributed_counter.hll_default_precision",
        c"Default hll precision p (2^p registers).",
        c"Used by hll_empty(), hll_add_agg(h) and approx_count_distinct() when no precision is given.",
        &HLL_DEFAULT_PRECISION,
        4,
        18,
        GucContext::Userset,
        GucFlags::default(),
    );
    GucRegistry::define_string_guc(
        c"distributed_counter.node_id",
        c"Node id credited by CRDT counter increments when none is given.",
        c"Empty means the cluster's system identifier. 1..63 bytes.",
        &NODE_ID,
        GucContext::Sighup,
        GucFlags::default(),
    );
    // A POSTMASTER-context GUC can only be defined while the postmaster loads the
    // library (defining it later is FATAL); these matter only to the worker and to the
    // shared memory, which exist only then anyway.
    if unsafe { pgrx::pg_sys::process_shared_preload_libraries_in_progress } {
        define_worker_database();
        define_rate_limit_keys();
        define_buffer_settings();
    }
    GucRegistry::define_int_guc(
        c"distributed_counter.compact_interval",
        c"Milliseconds from the start of one compaction pass to the start of the next.",
        c"Within a pass the worker folds batch after batch while they come back full.",
        &COMPACT_INTERVAL_MS,
        10,
        3_600_000,
        GucContext::Sighup,
        GucFlags::UNIT_MS,
    );
    GucRegistry::define_int_guc(
        c"distributed_counter.compact_batch",
        c"Maximum shard rows folded per compaction transaction.",
        c"Bounds lock time and WAL volume of one compaction transaction.",
        &COMPACT_BATCH,
        1,
        10_000_000,
        GucContext::Sighup,
        GucFlags::default(),
    );
    GucRegistry::define_bool_guc(
        c"distributed_counter.worker_enabled",
        c"Whether the compaction worker compacts.",
        c"When off the worker stays idle; counter_compact() still works.",
        &WORKER_ENABLED,
        GucContext::Sighup,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"distributed_counter.dedupe_retention",
        c"Seconds a counter_add request_id is remembered.",
        c"A repeated request_id within this window adds nothing.",
        &DEDUPE_RETENTION_S,
        1,
        i32::MAX,
        GucContext::Sighup,
        GucFlags::UNIT_S,
    );
}

fn define_buffer_settings() {
    GucRegistry::define_int_guc(
        c"distributed_counter.flush_interval",
        c"How often (ms) the worker flushes buffered counters' adds into the counter tables.",
        c"A crash loses the adds of about the last interval; a clean shutdown flushes them all.",
        &FLUSH_INTERVAL_MS,
        1,
        3_600_000,
        GucContext::Sighup,
        GucFlags::UNIT_MS,
    );
    GucRegistry::define_int_guc(
        c"distributed_counter.buffer_keys",
        c"Entries (counter, key, bucket) the buffer of buffered counters holds at once (shared memory, set at server start).",
        c"When it is full, adds to new entries take the durable path.",
        &BUFFER_KEYS,
        16,
        10_000_000,
        GucContext::Postmaster,
        GucFlags::default(),
    );
}

fn define_worker_database() {
    GucRegistry::define_string_guc(
        c"distributed_counter.database",
        c"Database the compaction worker connects to.",
        c"The worker compacts sharded counters of this database only.",
        &WORKER_DATABASE,
        GucContext::Postmaster,
        GucFlags::default(),
    );
}

fn define_rate_limit_keys() {
    GucRegistry::define_int_guc(
        c"distributed_counter.rate_limit_keys",
        c"Keys rate_limit() can hold state for at once (shared memory, set at server start).",
        c"60 to 116 bytes of shared memory per key. A key whose bucket is full again frees its slot.",
        &RATE_LIMIT_KEYS,
        16,
        10_000_000,
        GucContext::Postmaster,
        GucFlags::default(),
    );
}
