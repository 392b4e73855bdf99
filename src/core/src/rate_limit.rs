//! Rate limiting: the generic cell rate algorithm (GCRA) per key, and the fixed-capacity
//! table of per-key states that the extension keeps in shared memory.
//!
//! GCRA (ATM Forum Traffic Management 4.0; the same decision as a token bucket, from
//! one timestamp per key) keeps the key's *theoretical arrival time* `tat`: the time at
//! which the bucket would be full again. With emission interval `T` (the time one token
//! takes to come back) and a bucket of `burst` tokens, a request of `cost` tokens at
//! `now` is allowed iff `max(tat, now) + cost·T - burst·T <= now`, and then `tat`
//! becomes `max(tat, now) + cost·T`. redis-cell's CL.THROTTLE answers the same
//! questions (remaining, retry after, reset after) the same way.
//!
//! The bound: every allowed request advances `tat` by its `cost·T`, `tat` is at least
//! the time of the first allowed request of an interval and at most `now + burst·T`,
//! so over any interval of length `t` the allowed cost is at most `burst + t/T`. `T` is
//! `per/rate` rounded *up* to the microsecond, so `t/T <= rate·t/per`: rounding can
//! only make the limit stricter, never looser.
//!
//! Times are microseconds (PostgreSQL's clock). A `tat` at or before `now` means a full
//! bucket: the same state as a key never seen, which is why only such keys may be
//! evicted from the table.

use crate::error::{CoreError, Result};

/// The parameters of one call, in microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Params {
    /// `T`: per/rate, rounded up to a whole microsecond (at least 1).
    pub emission_us: i64,
    /// `burst·T`: how far `tat` may run ahead of now.
    pub tolerance_us: i64,
    /// `cost·T`: how far an allowed request moves `tat`.
    pub cost_us: i64,
}

impl Params {
    /// Validate and convert: every argument must be positive, and `cost` at most
    /// `burst` (a request larger than the bucket could never pass).
    pub fn new(rate: i64, per_us: i64, burst: i64, cost: i64) -> Result<Params> {
        if rate <= 0 {
            return Err(CoreError::invalid_parameter(format!(
                "rate must be positive, got {rate}"
            )));
        }
        if per_us <= 0 {
            return Err(CoreError::invalid_parameter(
                "per must be a positive interval",
            ));
        }
        if burst <= 0 {
            return Err(CoreError::invalid_parameter(format!(
                "burst must be positive, got {burst}"
            )));
        }
        if cost <= 0 {
            return Err(CoreError::invalid_parameter(format!(
                "cost must be positive, got {cost}"
            )));
        }
        if cost > burst {
            return Err(CoreError::invalid_parameter(format!(
                "cost {cost} exceeds the bucket's capacity (burst {burst}): such a request could never be allowed"
            )));
        }
        if (rate as i128) > per_us as i128 {
            return Err(CoreError::invalid_parameter(format!(
                "rate {rate} per {per_us} microseconds is more than one per microsecond, the clock's resolution"
            ))
            .with_hint("Use a rate of at most 1000000 per second."));
        }
        let emission_us = (per_us as i128 + rate as i128 - 1) / rate as i128; // ceil, >= 1
        let too_long = || {
            CoreError::invalid_parameter("burst × per / rate is too long (over 100 years)")
                .with_hint("Use a smaller burst or per, or a larger rate.")
        };
        let tolerance = emission_us * burst as i128;
        if tolerance > MAX_SPAN_US as i128 {
            return Err(too_long());
        }
        Ok(Params {
            emission_us: emission_us as i64,
            tolerance_us: tolerance as i64,
            cost_us: (emission_us * cost as i128) as i64,
        })
    }
}

/// About 100 years: the longest time a bucket may take to refill (keeps every sum of
/// times below i64::MAX).
pub const MAX_SPAN_US: i64 = 100 * 366 * 86_400 * 1_000_000;

/// What a call returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    /// Whole tokens left in the bucket after this call.
    pub remaining: i64,
    /// When a refused request of the same cost would be allowed (0 when allowed).
    pub retry_after_us: i64,
    /// When the bucket is full again.
    pub reset_after_us: i64,
}

/// One GCRA step: the decision, and the key's new `tat` (None: unchanged).
/// `tat` is the stored value, or `now` for a key with no state.
pub fn decide(tat: i64, now: i64, p: &Params) -> (Decision, Option<i64>) {
    let tat = tat.max(now);
    let new_tat = tat + p.cost_us;
    if new_tat - now <= p.tolerance_us {
        let d = Decision {
            allowed: true,
            remaining: (p.tolerance_us - (new_tat - now)) / p.emission_us,
            retry_after_us: 0,
            reset_after_us: new_tat - now,
        };
        (d, Some(new_tat))
    } else {
        let d = Decision {
            allowed: false,
            // a call with a smaller burst than earlier calls may find more debt than it
            // allows: nothing remains, not less
            remaining: ((p.tolerance_us - (tat - now)) / p.emission_us).max(0),
            retry_after_us: new_tat - p.tolerance_us - now,
            reset_after_us: tat - now,
        };
        (d, None)
    }
}

/// One key's state: a 128-bit fingerprint of (database, key) and its `tat`. An all-zero
/// fingerprint marks an empty slot (fingerprints are made non-zero).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[repr(C)]
pub struct Slot {
    pub fingerprint: [u64; 2],
    pub tat: i64,
}

impl Slot {
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.fingerprint == [0, 0]
    }
}

/// The fingerprint of a key in a database: XXH3-128, seeded with the table's random seed
/// (drawn when the table is created, so nobody can precompute keys that collide or
/// share a probe run), of the database's OID and the key's bytes; never all zero. Two
/// different keys share a state only if their 128-bit hashes collide.
pub fn fingerprint(seed: u64, database: u32, key: &[u8]) -> [u64; 2] {
    let mut h = xxhash_rust::xxh3::Xxh3::with_seed(seed);
    h.update(&database.to_le_bytes());
    h.update(key);
    let v = h.digest128();
    let (hi, lo) = ((v >> 64) as u64, v as u64);
    if hi == 0 && lo == 0 {
        [0, 1]
    } else {
        [hi, lo]
    }
}

/// The table's bookkeeping, beside the arrays in shared memory.
#[derive(Debug, Clone, Copy, Default)]
#[repr(C)]
pub struct Header {
    /// Keys stored now (the length of the heap).
    pub count: u64,
    /// The most keys it may hold (distributed_counter.rate_limit_keys).
    pub capacity: u64,
    /// The hash seed of this table's life.
    pub seed: u64,
    /// Keys evicted because their bucket was full again and a new key needed the room.
    pub evictions: u64,
}

/// The number of hash slots for a capacity: a power of two at least twice the capacity,
/// so the load stays at most 1/2 and probe runs stay short.
pub fn slots_for(capacity: u64) -> usize {
    (capacity.max(1) * 2).next_power_of_two() as usize
}

/// The keys' states: open addressing with linear probing over `slots` (a power of two
/// in length, more than the capacity), deletion by backward shift (no tombstones); and
/// a binary min-heap of the occupied slots ordered by `tat` (`heap`, `capacity` long,
/// and `pos`, each slot's place in it), so the key whose bucket fills up first is
/// always at hand. Every operation is O(log capacity): a full table finds a key to evict,
/// or knows there is none, without scanning.
pub struct Table<'a> {
    pub header: &'a mut Header,
    pub slots: &'a mut [Slot],
    pub heap: &'a mut [u32],
    pub pos: &'a mut [u32],
}

/// The table holds `capacity` keys whose buckets are all still refilling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TableFull;

impl Table<'_> {
    #[inline]
    fn mask(&self) -> usize {
        self.slots.len() - 1
    }

    #[inline]
    fn home(&self, fp: &[u64; 2]) -> usize {
        fp[1] as usize & self.mask()
    }

    /// The slot of `fp`, or the empty slot where it would go.
    fn probe(&self, fp: &[u64; 2]) -> (usize, bool) {
        let mask = self.mask();
        let mut i = self.home(fp);
        loop {
            let s = &self.slots[i];
            if s.is_empty() {
                return (i, false);
            }
            if s.fingerprint == *fp {
                return (i, true);
            }
            i = (i + 1) & mask;
        }
    }

    /// The decision for one call, with the key's state updated: the whole of
    /// `rate_limit` under the table's lock.
    pub fn rate_limit(
        &mut self,
        fp: [u64; 2],
        now: i64,
        p: &Params,
    ) -> std::result::Result<Decision, TableFull> {
        let (mut i, found) = self.probe(&fp);
        let tat = if found { self.slots[i].tat } else { now };
        let (decision, new_tat) = decide(tat, now, p);
        if let Some(new_tat) = new_tat {
            if found {
                self.slots[i].tat = new_tat; // later than before: it moves down the heap
                self.sift_down(self.pos[i] as usize);
            } else {
                if self.header.count >= self.header.capacity {
                    // Room for one more only if the earliest-filling bucket is full now.
                    if self.slots[self.heap[0] as usize].tat > now {
                        return Err(TableFull);
                    }
                    self.evict_min();
                    self.header.evictions += 1;
                    i = self.probe(&fp).0; // the eviction may have moved slots
                }
                self.slots[i] = Slot {
                    fingerprint: fp,
                    tat: new_tat,
                };
                let n = self.header.count as usize;
                self.heap[n] = i as u32;
                self.pos[i] = n as u32;
                self.header.count += 1;
                self.sift_up(n);
            }
        }
        Ok(decision)
    }

    #[inline]
    fn heap_tat(&self, k: usize) -> i64 {
        self.slots[self.heap[k] as usize].tat
    }

    #[inline]
    fn heap_swap(&mut self, a: usize, b: usize) {
        self.heap.swap(a, b);
        self.pos[self.heap[a] as usize] = a as u32;
        self.pos[self.heap[b] as usize] = b as u32;
    }

    fn sift_up(&mut self, mut k: usize) {
        while k > 0 {
            let parent = (k - 1) / 2;
            if self.heap_tat(parent) <= self.heap_tat(k) {
                break;
            }
            self.heap_swap(parent, k);
            k = parent;
        }
    }

    fn sift_down(&mut self, mut k: usize) {
        let n = self.header.count as usize;
        loop {
            let (l, r) = (2 * k + 1, 2 * k + 2);
            let mut least = k;
            if l < n && self.heap_tat(l) < self.heap_tat(least) {
                least = l;
            }
            if r < n && self.heap_tat(r) < self.heap_tat(least) {
                least = r;
            }
            if least == k {
                break;
            }
            self.heap_swap(k, least);
            k = least;
        }
    }

    /// Remove the key whose bucket fills up first (the heap's root).
    fn evict_min(&mut self) {
        let slot = self.heap[0] as usize;
        let last = self.header.count as usize - 1;
        self.heap_swap(0, last);
        self.header.count -= 1;
        self.sift_down(0);
        self.remove_slot(slot);
    }

    /// Backward-shift deletion: empty slot `hole`, then move each later key of the probe
    /// run whose home is not between the hole and itself into the hole (updating its
    /// place in the heap).
    fn remove_slot(&mut self, hole: usize) {
        let (pos, heap) = (&mut *self.pos, &mut *self.heap);
        let last = crate::probing::backward_shift(
            self.slots,
            hole,
            Slot::is_empty,
            |s| s.fingerprint[1] as usize,
            |from, to| {
                let k = pos[from] as usize;
                pos[to] = k as u32;
                heap[k] = to as u32;
            },
        );
        self.slots[last] = Slot::default();
    }

    /// The stored `tat` of a key, if it has a state (tests, statistics).
    pub fn get(&self, fp: &[u64; 2]) -> Option<i64> {
        match self.probe(fp) {
            (i, true) => Some(self.slots[i].tat),
            _ => None,
        }
    }

    /// Check every invariant (tests): the heap holds exactly the occupied slots, in heap
    /// order, `pos` is its inverse, and every key is reachable from its home slot.
    pub fn check(&self) -> std::result::Result<(), String> {
        let n = self.header.count as usize;
        let occupied = self.slots.iter().filter(|s| !s.is_empty()).count();
        if occupied != n {
            return Err(format!("{occupied} occupied slots, count {n}"));
        }
        for k in 0..n {
            let slot = self.heap[k] as usize;
            if self.slots[slot].is_empty() || self.pos[slot] as usize != k {
                return Err(format!("heap[{k}] = {slot} is empty or pos disagrees"));
            }
            if k > 0 && self.heap_tat((k - 1) / 2) > self.heap_tat(k) {
                return Err(format!("heap order broken at {k}"));
            }
        }
        for (i, s) in self.slots.iter().enumerate() {
            if !s.is_empty() && self.probe(&s.fingerprint) != (i, true) {
                return Err(format!("slot {i} unreachable from its home"));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
