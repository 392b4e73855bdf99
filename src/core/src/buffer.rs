//! The write-behind buffer of buffered counters: committed deltas per
//! `(database, install, counter, bucket, key)`, kept in shared memory until the worker
//! flushes them
//! into the counter tables. This module is the table and its protocol; the extension
//! (src/counters/buffer.rs) puts it in shared memory behind one LWLock, and decides the
//! transaction questions (is a flush's transaction committed, and visible to a reader).
//!
//! A slot's amount lives in two parts:
//! - `delta`: committed adds that no flush has taken yet;
//! - `inflight`: what the flush of transaction `flush_xid` took. That transaction
//!   inserts the same amount as rows of `counter_pending`.
//!
//! **Reads.** A reader counts `delta` always. It counts `inflight` only while the flush's
//! rows are invisible to its snapshot: the flush has not committed, or committed after
//! the snapshot was taken. So at every moment each committed add is counted exactly
//! once: in the slot, or in the table's rows.
//!
//! **Settling.** The next flush settles `inflight` first, by the state of `flush_xid`:
//! - aborted: the amount goes back to `delta`;
//! - committed, and visible to every snapshot: it is dropped;
//! - still running, or committed but hidden from some older snapshot: the slot waits,
//!   and new adds collect in `delta`. After `SETTLE_GRACE` it is dropped anyway: a
//!   snapshot older than that then misses the amount (documented for long
//!   REPEATABLE READ transactions).
//!
//! This is what makes a crash of the flusher safe. Suppose the flusher dies between its
//! commit and the settling. The slot still names the transaction, and its state says
//! whether the rows exist. A crash of the whole server reinitialises shared memory, so
//! the slots are gone and nothing can count twice. The adds since the last flush are
//! lost.
//!
//! **Pins.** A transaction's adds stay backend-local until it commits. Its first add to a
//! slot pins the slot: the slot is created if needed (or the add takes the durable path
//! when the table is full). A pinned slot is never removed. So the merge at commit,
//! which must not fail, only finds a slot and adds to it.

/// Keys longer than this are not buffered (their adds take the durable path).
pub const KEY_MAX: usize = 128;

/// A flush's transaction may be hidden from old snapshots for at most this long before its
/// slots are settled anyway (see the module documentation).
pub const SETTLE_GRACE_US: i64 = 10_000_000;

/// One slot: an `(database, install, counter, bucket, key)` and its amounts. `hash == 0` marks an
/// empty slot. Amounts are 128-bit (stored as two words, so the struct needs only 8-byte
/// alignment in shared memory): the sum of many int8 adds cannot overflow it.
#[derive(Clone, Copy)]
#[repr(C)]
pub struct Slot {
    pub hash: u64,
    pub database: u32,
    pub counter: i32,
    pub bucket: i64,
    pub key_len: u32,
    /// Transactions in progress that hold a pin (see the module documentation).
    pub pins: u32,
    delta: [u64; 2],
    inflight: [u64; 2],
    /// The transaction of the flush that took `inflight` (when it is not zero).
    pub flush_xid: u32,
    /// The extension's install in the database (the OID of its counter_pending): a
    /// counter id of a dropped and re-created extension is another counter.
    pub install: u32,
    /// When that flush took it (µs, the caller's clock).
    pub flush_started_us: i64,
    pub key: [u8; KEY_MAX],
}

impl Default for Slot {
    fn default() -> Self {
        Slot {
            hash: 0,
            database: 0,
            counter: 0,
            bucket: 0,
            key_len: 0,
            pins: 0,
            delta: [0; 2],
            inflight: [0; 2],
            flush_xid: 0,
            install: 0,
            flush_started_us: 0,
            key: [0; KEY_MAX],
        }
    }
}

fn wide_get(w: [u64; 2]) -> i128 {
    ((w[1] as i128) << 64) | w[0] as i128
}

fn wide_set(w: &mut [u64; 2], v: i128) {
    *w = [v as u64, (v >> 64) as u64];
}

impl Slot {
    pub fn is_empty(&self) -> bool {
        self.hash == 0
    }
    pub fn key(&self) -> &[u8] {
        &self.key[..self.key_len as usize]
    }
    pub fn delta(&self) -> i128 {
        wide_get(self.delta)
    }
    pub fn inflight(&self) -> i128 {
        wide_get(self.inflight)
    }
    /// What a reader counts: `delta`, and `inflight` when `inflight_hidden` (the flush's
    /// rows are invisible to the reader's snapshot).
    pub fn amount(&self, inflight_hidden: bool) -> i128 {
        self.delta() + if inflight_hidden { self.inflight() } else { 0 }
    }
    fn is(&self, id: &Id<'_>, hash: u64) -> bool {
        self.hash == hash
            && self.database == id.database
            && self.install == id.install
            && self.counter == id.counter
            && self.bucket == id.bucket
            && self.key() == id.key
    }
}

/// What a slot is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Id<'a> {
    pub database: u32,
    pub install: u32,
    pub counter: i32,
    pub bucket: i64,
    pub key: &'a [u8],
}

/// The table's bookkeeping, beside the slots in shared memory.
#[derive(Debug, Clone, Copy, Default)]
#[repr(C)]
pub struct Header {
    /// Slots in use.
    pub used: u64,
    /// The most slots that may be in use (distributed_counter.buffer_keys).
    pub capacity: u64,
    /// The hash seed of this table's life.
    pub seed: u64,
    /// The database the worker flushes (0: no worker has started). Adds are buffered only
    /// in that database.
    pub worker_database: u32,
    /// The process id of the worker (0 when it is not running).
    pub worker_pid: i32,
    /// When the worker's last flush committed (PostgreSQL timestamp, µs; 0: none yet),
    /// and in which database.
    pub last_flush: i64,
    pub last_flush_database: u32,
    /// Flushes committed since the server started.
    pub flushes: u64,
    /// Adds that found the table full and took the durable path.
    pub full: u64,
}

/// The number of slots for a capacity: a power of two at least twice the capacity.
pub fn slots_for(capacity: u64) -> usize {
    (capacity.max(1) * 2).next_power_of_two() as usize
}

/// The slot's hash: XXH3-64 seeded with the table's seed, never zero.
pub fn hash_of(seed: u64, id: &Id<'_>) -> u64 {
    let mut h = xxhash_rust::xxh3::Xxh3::with_seed(seed);
    h.update(&id.database.to_le_bytes());
    h.update(&id.install.to_le_bytes());
    h.update(&id.counter.to_le_bytes());
    h.update(&id.bucket.to_le_bytes());
    h.update(id.key);
    h.digest().max(1)
}

/// The table is full (or the key too long): the add takes the durable path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NoRoom;

/// The state of a flush's transaction, as the caller sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlushState {
    /// Committed, and every snapshot sees it.
    VisibleToAll,
    /// Committed; some snapshot may not see it yet.
    Committed,
    /// Aborted, or never committed before a crash of its process.
    Aborted,
    InProgress,
}

/// A flush's share of one slot: rows to insert into `counter_pending`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlushRow {
    pub counter: i32,
    pub bucket: i64,
    pub key: Vec<u8>,
    pub amount: i128,
}

/// The table over shared memory (or any slice of slots).
pub struct Table<'a> {
    pub header: &'a mut Header,
    pub slots: &'a mut [Slot],
}

impl Table<'_> {
    fn mask(&self) -> usize {
        self.slots.len() - 1
    }

    /// The slot of `id`, or the empty slot where it would go.
    fn probe(&self, id: &Id<'_>, hash: u64) -> (usize, bool) {
        let mut i = hash as usize & self.mask();
        loop {
            let s = &self.slots[i];
            if s.is_empty() {
                return (i, false);
            }
            if s.is(id, hash) {
                return (i, true);
            }
            i = (i + 1) & self.mask();
        }
    }

    pub fn find(&self, id: &Id<'_>) -> Option<&Slot> {
        let hash = hash_of(self.header.seed, id);
        match self.probe(id, hash) {
            (i, true) => Some(&self.slots[i]),
            _ => None,
        }
    }

    /// Pin the slot of `id`, creating it if needed.
    pub fn pin(&mut self, id: &Id<'_>) -> Result<(), NoRoom> {
        if id.key.len() > KEY_MAX {
            return Err(NoRoom);
        }
        let hash = hash_of(self.header.seed, id);
        let (i, found) = self.probe(id, hash);
        if !found {
            if self.header.used >= self.header.capacity
                || self.header.used as usize + 1 >= self.slots.len()
            {
                self.header.full += 1;
                return Err(NoRoom);
            }
            let s = &mut self.slots[i];
            *s = Slot {
                hash,
                database: id.database,
                install: id.install,
                counter: id.counter,
                bucket: id.bucket,
                key_len: id.key.len() as u32,
                ..Slot::default()
            };
            s.key[..id.key.len()].copy_from_slice(id.key);
            self.header.used += 1;
        }
        self.slots[i].pins += 1;
        Ok(())
    }

    /// Release a pin without adding (the transaction rolled back). False if `id` had no
    /// pinned slot (a bug of the caller).
    pub fn unpin(&mut self, id: &Id<'_>) -> bool {
        self.commit(id, 0)
    }

    /// Add a committed transaction's `amount` to its pinned slot and release the pin.
    /// Never allocates: the pin kept the slot. False if `id` had no pinned slot.
    pub fn commit(&mut self, id: &Id<'_>, amount: i128) -> bool {
        let hash = hash_of(self.header.seed, id);
        match self.probe(id, hash) {
            (i, true) if self.slots[i].pins > 0 => {
                let s = &mut self.slots[i];
                s.pins -= 1;
                let d = s.delta() + amount;
                wide_set(&mut s.delta, d);
                true
            }
            _ => false,
        }
    }

    /// Start a flush (see [`Flush`]) of the slots of `install` in `database`: settle each
    /// slot's earlier flush (by `state_of` its transaction), then hand every settled
    /// slot's `delta` to this flush. Slots left with nothing and no pin are removed.
    /// Returns the rows the flush must insert, in the same transaction, before it commits.
    pub fn begin_flush(
        &mut self,
        flush: &Flush,
        mut state_of: impl FnMut(u32) -> FlushState,
    ) -> Vec<FlushRow> {
        let &Flush {
            database,
            install,
            xid,
            now_us,
            discard_other_installs,
        } = flush;
        let mut rows = Vec::new();
        let mut idle = Vec::new();
        for i in 0..self.slots.len() {
            let s = &mut self.slots[i];
            if s.is_empty() || s.database != database {
                continue;
            }
            if s.install != install {
                if s.pins == 0 && discard_other_installs {
                    idle.push(i);
                }
                continue;
            }
            if s.inflight() != 0 {
                let state = state_of(s.flush_xid);
                if state == FlushState::InProgress {
                    // the grace (SETTLE_GRACE_US) counts from the flush's commit, which
                    // is after the last time it was seen running
                    s.flush_started_us = now_us;
                }
                match settle(state, now_us - s.flush_started_us) {
                    Settle::Keep => continue,
                    Settle::Drop => wide_set(&mut s.inflight, 0),
                    Settle::Restore => {
                        let d = s.delta() + s.inflight();
                        wide_set(&mut s.delta, d);
                        wide_set(&mut s.inflight, 0);
                    }
                }
            }
            let d = s.delta();
            if let (true, Some(xid)) = (d != 0, xid) {
                wide_set(&mut s.inflight, d);
                wide_set(&mut s.delta, 0);
                s.flush_xid = xid;
                s.flush_started_us = now_us;
                rows.push(FlushRow {
                    counter: s.counter,
                    bucket: s.bucket,
                    key: s.key().to_vec(),
                    amount: d,
                });
            } else if s.pins == 0 && d == 0 {
                idle.push(i);
            }
        }
        // Removed by id after the scan: a backward shift moves slots, so the indexes
        // found above go stale as soon as one slot is removed.
        let ids: Vec<(u32, u32, i32, i64, Vec<u8>)> = idle
            .iter()
            .map(|&i| {
                let s = &self.slots[i];
                (s.database, s.install, s.counter, s.bucket, s.key().to_vec())
            })
            .collect();
        for (database, slot_install, counter, bucket, key) in &ids {
            self.remove(
                &Id {
                    database: *database,
                    install: *slot_install,
                    counter: *counter,
                    bucket: *bucket,
                    key,
                },
                *slot_install != install,
            );
        }
        rows
    }

    /// Remove the slot of `id` if it has no pin and, unless `discard`, nothing unflushed,
    /// by backward shift.
    fn remove(&mut self, id: &Id<'_>, discard: bool) {
        let hash = hash_of(self.header.seed, id);
        let (hole, found) = self.probe(id, hash);
        if !found {
            return;
        }
        let s = &self.slots[hole];
        if s.pins != 0 || (!discard && (s.delta() != 0 || s.inflight() != 0)) {
            return;
        }
        let hole = crate::probing::backward_shift(
            self.slots,
            hole,
            Slot::is_empty,
            |s| s.hash as usize,
            |_, _| {},
        );
        self.slots[hole] = Slot::default();
        self.header.used -= 1;
    }

    /// Every non-empty slot of `counter` of `install` in `database` (and of `key`, if
    /// given), in slot order.
    pub fn slots_of<'s>(
        &'s self,
        database: u32,
        install: u32,
        counter: i32,
        key: Option<&'s [u8]>,
    ) -> impl Iterator<Item = &'s Slot> + 's {
        self.slots.iter().filter(move |s| {
            !s.is_empty()
                && s.database == database
                && s.install == install
                && s.counter == counter
                && key.is_none_or(|k| s.key() == k)
        })
    }

    /// Check the table's invariants (tests and debugging): every slot reachable from its
    /// home without crossing an empty slot, and `used` equal to the slots in use.
    pub fn check(&self) -> Result<(), String> {
        let mask = self.mask();
        let mut used = 0;
        for (i, s) in self.slots.iter().enumerate() {
            if s.is_empty() {
                continue;
            }
            used += 1;
            let mut j = s.hash as usize & mask;
            while j != i {
                if self.slots[j].is_empty() {
                    return Err(format!("slot {i} is cut off from its home"));
                }
                j = (j + 1) & mask;
            }
        }
        if used != self.header.used {
            return Err(format!(
                "{used} slots in use, header says {}",
                self.header.used
            ));
        }
        Ok(())
    }
}

/// A flush's parameters.
#[derive(Debug, Clone, Copy)]
pub struct Flush {
    pub database: u32,
    /// The extension's install (counter_pending's OID) whose slots it flushes.
    pub install: u32,
    /// The flush's transaction; None: only settle earlier flushes and remove idle slots
    /// (nothing is taken, so no transaction id is needed).
    pub xid: Option<u32>,
    /// Now, in µs (the clock of `flush_started_us`).
    pub now_us: i64,
    /// Remove the unpinned slots of any other install of the database: one that was
    /// dropped, whose counters are gone. Only a flush whose transaction cannot see its
    /// own uncommitted DROP/CREATE EXTENSION may (the worker's).
    pub discard_other_installs: bool,
}

/// What a flush does with a slot's earlier flush.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settle {
    /// Wait: the earlier flush is running, or some snapshot may not see it yet.
    Keep,
    /// Its rows are in the table for everyone: forget the amount.
    Drop,
    /// Its transaction aborted: the amount is unflushed again.
    Restore,
}

/// The settling rule (see the module documentation).
pub fn settle(state: FlushState, age_us: i64) -> Settle {
    match state {
        FlushState::VisibleToAll => Settle::Drop,
        FlushState::Committed if age_us >= SETTLE_GRACE_US => Settle::Drop,
        FlushState::Committed | FlushState::InProgress => Settle::Keep,
        FlushState::Aborted => Settle::Restore,
    }
}

/// An amount as int8 rows: `amount` split into parts that each fit an int8, with the
/// same sign (one part unless it is beyond the int8 range).
pub fn int8_parts(amount: i128) -> Vec<i64> {
    let mut parts = Vec::new();
    let mut rest = amount;
    while rest != 0 {
        let part = rest.clamp(i64::MIN as i128, i64::MAX as i128);
        parts.push(part as i64);
        rest -= part;
    }
    parts
}

#[cfg(test)]
mod tests;
