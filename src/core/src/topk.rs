//! Heavy hitters by Space-Saving (A. Metwally, D. Agrawal, A. El Abbadi, "Efficient
//! computation of frequent and top-k elements in data streams", ICDT 2005), made
//! mergeable as in P. Agarwal, G. Cormode, Z. Huang, J. Phillips, Z. Wei, K. Yi,
//! "Mergeable summaries", PODS 2012 (see also Cafaro et al., "A parallel space saving
//! algorithm for frequent items", 2016, for the same combine rule).
//!
//! A summary with parameter `k` keeps up to `capacity = TOPK_CAPACITY_FACTOR * k`
//! counters `(item, count, error)`; the extra counters make the counts of the top `k`
//! far more accurate on skewed data at a small constant cost. [`TopK::list`] returns the
//! top `k` of them. Writing `N` for the total and `f(x)` for the true count of `x`, every
//! reachable summary satisfies these invariants (checked by [`TopK::decode`]):
//!
//! * (I1) tracked `x`: `count(x) - error(x) <= f(x) <= count(x)`, and `error < count`;
//! * (I2) untracked `x`: `f(x) <= mu`, where `mu` = the minimum count if the summary is
//!   full (`n == capacity`), else 0 (a summary that was never full tracks every item);
//! * (I3) `sum of counts <= N` (equality while not full), every `error <= mu`.
//!
//! From (I3) the minimum of a full summary is `<= N / capacity <= N / k`, so by (I2)
//! every item with `f(x) > N / k` is tracked. At most `k - 1` tracked counts can exceed
//! `N / k` (k of them would sum past `N`), and such an item has `count >= f(x) > N/k`,
//! so it is ranked inside the top `k` by count: `list` shows every item with
//! `f(x) > N / k`. Proofs that `add` and `union` keep (I1)-(I3) are next to them.
//!
//! In memory the counters live in Metwally et al.'s Stream-Summary (buckets of equal
//! count in ascending order), so a unit increment or an eviction is O(1); the victim
//! among equal minimum counts is the entry that has held that count longest. That
//! choice depends on history, so a decoded copy (whose buckets are rebuilt in item
//! order) may later evict a different tied entry than the original would: both are
//! valid Space-Saving states with the same guarantees. Everything else (stored form,
//! union, list order) depends only on the contents.
//!
//! Stored form v1 (docs/FORMAT.md), little-endian:
//! `[1][0x20][k u32][total u64][n u32]` then `n` entries sorted by item bytes ascending,
//! each `[count u64][error u64][len u32][len bytes]`.

use crate::error::{CoreError, Result};
use crate::hash::hash_bytes;
use std::cmp::Ordering;

/// Format version byte this module writes.
pub const TOPK_FORMAT_VERSION: u8 = 1;
/// Kind byte of a top-k summary.
pub const TOPK_KIND: u8 = 0x20;
/// Largest accepted `k`.
pub const TOPK_MAX_K: u32 = 100_000;
/// Counters kept per unit of `k` (part of the v1 contract: capacity = 4k).
pub const TOPK_CAPACITY_FACTOR: u32 = 4;
/// The total stays within SQL `int8`.
pub const TOPK_MAX_TOTAL: u64 = i64::MAX as u64;
/// Largest stored form (well below PostgreSQL's 1 GB varlena limit).
pub const TOPK_MAX_ENCODED_LEN: usize = 256 * 1024 * 1024;
/// Bytes before the first entry.
pub const TOPK_HEADER_LEN: usize = 18;
/// Fixed bytes per entry before its item bytes.
pub const TOPK_ENTRY_HEADER_LEN: usize = 20;

const EMPTY: u32 = u32::MAX;
const NIL: u32 = u32::MAX;

#[derive(Debug, Clone)]
struct Entry {
    item: Vec<u8>,
    hash: u64,
    count: u64,
    error: u64,
    /// Bucket holding this entry and its neighbours in that bucket's list.
    bucket: u32,
    prev: u32,
    next: u32,
}

/// Total order used when a union must drop entries: the smallest under
/// `(count, xxh3(item), item)` go first, so the kept set depends only on contents.
#[inline(always)]
fn rank(a: &Entry, b: &Entry) -> Ordering {
    (a.count, a.hash)
        .cmp(&(b.count, b.hash))
        .then_with(|| a.item.cmp(&b.item))
}

/// All entries with one count, in a list ordered by when they reached that count; the
/// buckets form a list by ascending count (Metwally et al.'s Stream-Summary), so a unit
/// increment or an eviction is O(1).
#[derive(Debug, Clone, Copy)]
struct Bucket {
    count: u64,
    head: u32,
    tail: u32,
    prev: u32,
    next: u32,
}

/// A mergeable Space-Saving summary.
#[derive(Debug, Clone)]
pub struct TopK {
    k: u32,
    total: u64,
    /// Slots; a slot keeps its index for life (evictions overwrite it in place).
    entries: Vec<Entry>,
    /// Stream-Summary buckets (some may be free, see `free_buckets`).
    buckets: Vec<Bucket>,
    free_buckets: Vec<u32>,
    /// The bucket with the smallest count, or `NIL`.
    min_bucket: u32,
    /// Open addressing (linear probing) from item hash to slot id; power-of-two size,
    /// load <= 1/2; `EMPTY` marks a free cell. Grows with the number of entries.
    table: Vec<u32>,
    /// Current stored-form length, kept up to date to enforce the size limit.
    encoded_len: usize,
}

impl PartialEq for TopK {
    /// Same k, total and entries (the in-memory layout does not matter).
    fn eq(&self, other: &Self) -> bool {
        self.k == other.k
            && self.total == other.total
            && self.entries.len() == other.entries.len()
            && self.entries.iter().all(|e| {
                other
                    .find(e.hash, &e.item)
                    .map(|s| {
                        let o = &other.entries[s as usize];
                        o.count == e.count && o.error == e.error
                    })
                    .unwrap_or(false)
            })
    }
}
impl Eq for TopK {}

fn check_k(k: u32) -> Result<()> {
    if k == 0 || k > TOPK_MAX_K {
        return Err(CoreError::invalid_parameter(format!(
            "topk k must be between 1 and {TOPK_MAX_K}, got {k}"
        )));
    }
    Ok(())
}

fn total_overflow() -> CoreError {
    CoreError::overflow("topk total count would exceed the bigint range")
}

fn too_big(len: usize) -> CoreError {
    CoreError::invalid_parameter(format!(
        "topk summary would need {len} bytes, more than the maximum {TOPK_MAX_ENCODED_LEN}"
    ))
    .with_hint("use a smaller k or shorter values")
}

fn bad(msg: String) -> CoreError {
    CoreError::invalid_binary(msg)
}

impl TopK {
    /// An empty summary for the top `k` items (1..=100000).
    pub fn new(k: u32) -> Result<TopK> {
        check_k(k)?;
        Ok(TopK {
            k,
            total: 0,
            entries: Vec::new(),
            buckets: Vec::new(),
            free_buckets: Vec::new(),
            min_bucket: NIL,
            table: Vec::new(),
            encoded_len: TOPK_HEADER_LEN,
        })
    }

    pub fn k(&self) -> u32 {
        self.k
    }
    /// Number of counters kept: `TOPK_CAPACITY_FACTOR * k`.
    pub fn capacity(&self) -> usize {
        (self.k * TOPK_CAPACITY_FACTOR) as usize
    }
    /// Sum of all counts added.
    pub fn total(&self) -> u64 {
        self.total
    }
    /// Number of tracked items.
    pub fn len(&self) -> usize {
        self.entries.len()
    }
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
    /// Upper bound on the true count of any untracked item: the minimum tracked count
    /// if the summary is full, else 0.
    pub fn min_count(&self) -> u64 {
        if self.entries.len() >= self.capacity() {
            self.buckets
                .get(self.min_bucket as usize)
                .map(|b| b.count)
                .unwrap_or(0)
        } else {
            0
        }
    }
    /// Length of [`TopK::encode`]'s output.
    pub fn encoded_len(&self) -> usize {
        self.encoded_len
    }

    // ---- hash index -------------------------------------------------------------

    #[inline(always)]
    fn mask(&self) -> usize {
        self.table.len().wrapping_sub(1)
    }

    #[inline]
    fn find(&self, hash: u64, item: &[u8]) -> Option<u32> {
        if self.table.is_empty() {
            return None;
        }
        let mask = self.mask();
        let mut i = hash as usize & mask;
        loop {
            let s = self.table[i];
            if s == EMPTY {
                return None;
            }
            let e = &self.entries[s as usize];
            if e.hash == hash && e.item == item {
                return Some(s);
            }
            i = (i + 1) & mask;
        }
    }

    fn table_insert(&mut self, slot: u32) {
        let mask = self.mask();
        let mut i = self.entries[slot as usize].hash as usize & mask;
        while self.table[i] != EMPTY {
            i = (i + 1) & mask;
        }
        self.table[i] = slot;
    }

    /// Removes `slot` (whose entry still holds its hash) by backward-shift deletion,
    /// so no tombstones accumulate.
    fn table_remove(&mut self, slot: u32) {
        let mask = self.mask();
        let mut i = self.entries[slot as usize].hash as usize & mask;
        while self.table[i] != slot {
            i = (i + 1) & mask;
        }
        let mut hole = i;
        let mut j = i;
        loop {
            j = (j + 1) & mask;
            let s = self.table[j];
            if s == EMPTY {
                break;
            }
            let ideal = self.entries[s as usize].hash as usize & mask;
            // Move s into the hole if the hole lies on its probe path (ideal..=j).
            if (j.wrapping_sub(ideal) & mask) >= (j.wrapping_sub(hole) & mask) {
                self.table[hole] = s;
                hole = j;
            }
        }
        self.table[hole] = EMPTY;
    }

    /// Makes room for `n` entries at load <= 1/2.
    fn reserve_table(&mut self, n: usize) {
        if n * 2 <= self.table.len() {
            return;
        }
        let size = (n * 2).next_power_of_two().max(16);
        self.table = vec![EMPTY; size];
        for s in 0..self.entries.len() as u32 {
            self.table_insert(s);
        }
    }

    // ---- Stream-Summary buckets ---------------------------------------------------

    fn bucket_new(&mut self, count: u64) -> u32 {
        let b = Bucket {
            count,
            head: NIL,
            tail: NIL,
            prev: NIL,
            next: NIL,
        };
        if let Some(id) = self.free_buckets.pop() {
            self.buckets[id as usize] = b;
            id
        } else {
            self.buckets.push(b);
            (self.buckets.len() - 1) as u32
        }
    }

    /// Links bucket `id` after `after` (`NIL`: at the front).
    fn bucket_link_after(&mut self, id: u32, after: u32) {
        let next = if after == NIL {
            self.min_bucket
        } else {
            self.buckets[after as usize].next
        };
        let b = &mut self.buckets[id as usize];
        b.prev = after;
        b.next = next;
        if after == NIL {
            self.min_bucket = id;
        } else {
            self.buckets[after as usize].next = id;
        }
        if next != NIL {
            self.buckets[next as usize].prev = id;
        }
    }

    fn bucket_unlink(&mut self, id: u32) {
        let Bucket { prev, next, .. } = self.buckets[id as usize];
        if prev == NIL {
            self.min_bucket = next;
        } else {
            self.buckets[prev as usize].next = next;
        }
        if next != NIL {
            self.buckets[next as usize].prev = prev;
        }
        self.free_buckets.push(id);
    }

    /// The bucket for `count`, created if missing, searching forward from `from` (a
    /// bucket whose count is <= `count`, or `NIL` for the front). O(1) for unit steps.
    fn bucket_for(&mut self, count: u64, from: u32) -> u32 {
        let mut cur = from;
        loop {
            let next = if cur == NIL {
                self.min_bucket
            } else {
                self.buckets[cur as usize].next
            };
            if next != NIL && self.buckets[next as usize].count <= count {
                cur = next;
            } else {
                break;
            }
        }
        if cur != NIL && self.buckets[cur as usize].count == count {
            return cur;
        }
        let id = self.bucket_new(count);
        self.bucket_link_after(id, cur);
        id
    }

    /// Takes `slot` out of its bucket, freeing the bucket if it empties.
    fn entry_detach(&mut self, slot: u32) {
        let Entry {
            bucket, prev, next, ..
        } = self.entries[slot as usize];
        if prev == NIL {
            self.buckets[bucket as usize].head = next;
        } else {
            self.entries[prev as usize].next = next;
        }
        if next == NIL {
            self.buckets[bucket as usize].tail = prev;
        } else {
            self.entries[next as usize].prev = prev;
        }
        if self.buckets[bucket as usize].head == NIL {
            self.bucket_unlink(bucket);
        }
    }

    /// Appends `slot` to bucket `b` (whose count must equal the entry's).
    fn entry_append(&mut self, slot: u32, b: u32) {
        let tail = self.buckets[b as usize].tail;
        let e = &mut self.entries[slot as usize];
        e.bucket = b;
        e.prev = tail;
        e.next = NIL;
        if tail == NIL {
            self.buckets[b as usize].head = slot;
        } else {
            self.entries[tail as usize].next = slot;
        }
        self.buckets[b as usize].tail = slot;
    }

    /// Raises the count of tracked `slot` by `w >= 1`, moving it to the right bucket.
    fn increment(&mut self, slot: u32, w: u64) {
        let old = self.entries[slot as usize].bucket;
        let count = self.entries[slot as usize].count + w;
        // Fast path (the common case for heavy hitters, whose counts are unique): the
        // entry is alone in its bucket and no bucket lies in (old count, count], so the
        // bucket can simply be relabelled; order and tie-breaking are unchanged.
        let b = self.buckets[old as usize];
        if b.head == slot
            && b.tail == slot
            && (b.next == NIL || self.buckets[b.next as usize].count > count)
        {
            self.buckets[old as usize].count = count;
            self.entries[slot as usize].count = count;
            return;
        }
        // Find (or make) the target before detaching: it differs from `old`, and `old`
        // may be freed by the detach.
        let target = self.bucket_for(count, old);
        self.entry_detach(slot);
        self.entries[slot as usize].count = count;
        self.entry_append(slot, target);
    }

    /// Rebuilds buckets and index from `entries` (after decode or union). Within a
    /// bucket, entries are ordered by item bytes, so the result depends only on content.
    fn rebuild(&mut self) {
        let n = self.entries.len();
        self.buckets.clear();
        self.free_buckets.clear();
        self.min_bucket = NIL;
        let mut order: Vec<u32> = (0..n as u32).collect();
        order.sort_unstable_by(|&a, &b| {
            let (x, y) = (&self.entries[a as usize], &self.entries[b as usize]);
            x.count.cmp(&y.count).then_with(|| x.item.cmp(&y.item))
        });
        let mut last = NIL;
        for slot in order {
            let c = self.entries[slot as usize].count;
            last = self.bucket_for(c, last);
            self.entry_append(slot, last);
        }
        self.table.clear();
        self.reserve_table(n);
        self.encoded_len = TOPK_HEADER_LEN
            + self
                .entries
                .iter()
                .map(|e| TOPK_ENTRY_HEADER_LEN + e.item.len())
                .sum::<usize>();
    }

    // ---- operations -------------------------------------------------------------

    /// Adds `count` occurrences of `item`. Errors (leaving the summary unchanged) if the
    /// total would leave the `int8` range or the summary would grow past
    /// [`TOPK_MAX_ENCODED_LEN`].
    ///
    /// Invariants: an increment keeps (I1)-(I3) trivially (count and N grow by the same
    /// amount; mu can only grow). Inserting into a non-full summary: the item was
    /// untracked with f = 0 (I2 with mu = 0), so (count, error) = (w, 0) is exact.
    /// Replacing the minimum m of a full summary with (m + w, m): the new item had
    /// f <= m by (I2), so m + w bounds it and its error m <= new mu (every other count
    /// was >= m, the new one is m + w); the evicted item had f <= m <= new mu, so (I2)
    /// holds; the sum of counts grows by exactly w, like N.
    pub fn add(&mut self, item: &[u8], count: u64) -> Result<()> {
        let total = self.total.checked_add(count).ok_or_else(total_overflow)?;
        if total > TOPK_MAX_TOTAL {
            return Err(total_overflow());
        }
        if count == 0 {
            return Ok(());
        }
        let hash = hash_bytes(item, 0);
        if let Some(s) = self.find(hash, item) {
            // count <= sum of counts <= total: no overflow.
            self.increment(s, count);
        } else if self.entries.len() < self.capacity() {
            let len = self.encoded_len + TOPK_ENTRY_HEADER_LEN + item.len();
            if len > TOPK_MAX_ENCODED_LEN {
                return Err(too_big(len));
            }
            self.reserve_table(self.entries.len() + 1);
            let slot = self.entries.len() as u32;
            self.entries.push(Entry {
                item: item.to_vec(),
                hash,
                count,
                error: 0,
                bucket: NIL,
                prev: NIL,
                next: NIL,
            });
            self.table_insert(slot);
            let b = self.bucket_for(count, NIL);
            self.entry_append(slot, b);
            self.encoded_len = len;
        } else {
            // The victim: the entry that has held the minimum count longest.
            let slot = self.buckets[self.min_bucket as usize].head;
            let old_len = self.entries[slot as usize].item.len();
            let len = self.encoded_len - old_len + item.len();
            if len > TOPK_MAX_ENCODED_LEN {
                return Err(too_big(len));
            }
            self.table_remove(slot);
            let e = &mut self.entries[slot as usize];
            let min = e.count;
            // Reuse the evicted item's buffer: no allocation once it is large enough.
            e.item.clear();
            e.item.extend_from_slice(item);
            e.hash = hash;
            e.error = min;
            self.table_insert(slot);
            self.increment(slot, count); // min + count <= total

            self.encoded_len = len;
        }
        self.total = total;
        Ok(())
    }

    /// Merges `other` into `self`: the summary of the concatenated streams. If the k
    /// differ the result has the smaller k (no error), like hll_union with precisions.
    ///
    /// Rule: with mu_1, mu_2 the (I2) bounds of the inputs, every item tracked by either
    /// gets count c_1(x) + c_2(x) and error e_1(x) + e_2(x), where an input that does not
    /// track x contributes (mu_i, mu_i). Then the `capacity` largest by rank are kept.
    ///
    /// Why the invariants survive (m = resulting capacity <= both input capacities):
    /// * (I1): f = f_1 + f_2 and each part lies in [c_i - e_i, c_i] (by (I1), or by (I2)
    ///   as 0 <= f_i <= mu_i for an untracked part); error < count as one part has
    ///   c_i - e_i >= 1.
    /// * (I3) sum: for any set A of m items, sum_A c_1 <= sum of S_1's counts. If S_1 is
    ///   not full, c_1 = 0 off its tracked set T_1. If it is full, |A \ T_1| <= |T_1 \ A|
    ///   (as |A| <= |T_1|) and each x in A \ T_1 contributes mu_1, no more than a
    ///   distinct member of T_1 \ A. So the kept counts sum to <= N_1 + N_2.
    /// * (I2) and errors: every combined count is >= mu_1 + mu_2 (a tracked count is at
    ///   least its summary's minimum). If fewer than m items result, both inputs were
    ///   not full (mu = 0, no errors, everything seen is tracked) and nothing is dropped.
    ///   Otherwise the result is full with minimum M >= mu_1 + mu_2: an item in neither
    ///   input has f <= mu_1 + mu_2 <= M, a dropped item has f <= its count <= M, and
    ///   every error e_1 + e_2 <= mu_1 + mu_2 <= M.
    pub fn union(&mut self, other: &TopK) -> Result<()> {
        let total = self
            .total
            .checked_add(other.total)
            .ok_or_else(total_overflow)?;
        if total > TOPK_MAX_TOTAL {
            return Err(total_overflow());
        }
        let k = self.k.min(other.k);
        let cap = (k * TOPK_CAPACITY_FACTOR) as usize;
        let (mu_s, mu_o) = (self.min_count(), other.min_count());
        let sum = |a: u64, b: u64| a.checked_add(b).ok_or_else(total_overflow);
        let mut merged: Vec<Entry> = Vec::with_capacity(self.entries.len() + other.entries.len());
        for e in &self.entries {
            let (c, err) = match other.find(e.hash, &e.item) {
                Some(s) => {
                    let o = &other.entries[s as usize];
                    (sum(e.count, o.count)?, sum(e.error, o.error)?)
                }
                None => (sum(e.count, mu_o)?, sum(e.error, mu_o)?),
            };
            merged.push(Entry {
                item: e.item.clone(),
                hash: e.hash,
                count: c,
                error: err,
                bucket: NIL,
                prev: NIL,
                next: NIL,
            });
        }
        for o in &other.entries {
            if self.find(o.hash, &o.item).is_none() {
                merged.push(Entry {
                    item: o.item.clone(),
                    hash: o.hash,
                    count: sum(o.count, mu_s)?,
                    error: sum(o.error, mu_s)?,
                    bucket: NIL,
                    prev: NIL,
                    next: NIL,
                });
            }
        }
        if merged.len() > cap {
            // Largest first; the rank order is total, so the kept set is deterministic.
            merged.select_nth_unstable_by(cap, |a, b| rank(b, a));
            merged.truncate(cap);
        }
        let len = TOPK_HEADER_LEN
            + merged
                .iter()
                .map(|e| TOPK_ENTRY_HEADER_LEN + e.item.len())
                .sum::<usize>();
        if len > TOPK_MAX_ENCODED_LEN {
            return Err(too_big(len));
        }
        self.k = k;
        self.total = total;
        self.entries = merged;
        self.rebuild();
        Ok(())
    }

    /// Every tracked `(item, count, error)`, by count descending then item ascending.
    pub fn tracked(&self) -> Vec<(Vec<u8>, u64, u64)> {
        let mut v: Vec<&Entry> = self.entries.iter().collect();
        v.sort_unstable_by(|a, b| b.count.cmp(&a.count).then_with(|| a.item.cmp(&b.item)));
        v.into_iter()
            .map(|e| (e.item.clone(), e.count, e.error))
            .collect()
    }

    /// The top `k` `(item, count, error)` by count descending then item ascending. Lists
    /// every item whose true count exceeds `total / k`; `count - error <= true <= count`.
    pub fn list(&self) -> Vec<(Vec<u8>, u64, u64)> {
        let mut v = self.tracked();
        v.truncate(self.k as usize);
        v
    }

    /// The canonical stored form (entries sorted by item bytes).
    pub fn encode(&self) -> Vec<u8> {
        let mut v: Vec<&Entry> = self.entries.iter().collect();
        v.sort_unstable_by(|a, b| a.item.cmp(&b.item));
        let mut out = Vec::with_capacity(self.encoded_len);
        out.push(TOPK_FORMAT_VERSION);
        out.push(TOPK_KIND);
        out.extend_from_slice(&self.k.to_le_bytes());
        out.extend_from_slice(&self.total.to_le_bytes());
        out.extend_from_slice(&(v.len() as u32).to_le_bytes());
        for e in v {
            out.extend_from_slice(&e.count.to_le_bytes());
            out.extend_from_slice(&e.error.to_le_bytes());
            out.extend_from_slice(&(e.item.len() as u32).to_le_bytes());
            out.extend_from_slice(&e.item);
        }
        out
    }

    /// Decodes a stored form, validating the layout and invariants (I1)-(I3) as far as
    /// they can be checked without the stream: see docs/FORMAT.md.
    pub fn decode(bytes: &[u8]) -> Result<TopK> {
        let mut r = Reader { b: bytes, at: 0 };
        if bytes.len() < TOPK_HEADER_LEN {
            return Err(bad(format!(
                "topk value too short: {} bytes, the header alone is {TOPK_HEADER_LEN}",
                bytes.len()
            )));
        }
        if bytes.len() > TOPK_MAX_ENCODED_LEN {
            return Err(bad(format!(
                "topk value of {} bytes exceeds the maximum {TOPK_MAX_ENCODED_LEN}",
                bytes.len()
            )));
        }
        let version = r.u8()?;
        if version != TOPK_FORMAT_VERSION {
            return Err(bad(format!(
                "unsupported topk format version {version} (this build reads version {TOPK_FORMAT_VERSION})"
            )));
        }
        let kind = r.u8()?;
        if kind != TOPK_KIND {
            return Err(bad(format!(
                "not a topk value: kind byte 0x{kind:02x}, expected 0x{TOPK_KIND:02x}"
            )));
        }
        let k = r.u32()?;
        if k == 0 || k > TOPK_MAX_K {
            return Err(bad(format!("topk k {k} is not between 1 and {TOPK_MAX_K}")));
        }
        let total = r.u64()?;
        if total > TOPK_MAX_TOTAL {
            return Err(bad(format!("topk total {total} exceeds the bigint range")));
        }
        let n = r.u32()? as usize;
        let cap = (k * TOPK_CAPACITY_FACTOR) as usize;
        if n > cap {
            return Err(bad(format!(
                "topk has {n} entries, more than its capacity {cap}"
            )));
        }
        if n > (bytes.len() - TOPK_HEADER_LEN) / TOPK_ENTRY_HEADER_LEN {
            return Err(bad(format!("topk value too short for {n} entries")));
        }
        let mut entries: Vec<Entry> = Vec::with_capacity(n);
        let mut sum: u64 = 0;
        for i in 0..n {
            let count = r.u64()?;
            let error = r.u64()?;
            let len = r.u32()? as usize;
            let item = r.bytes(len)?;
            if count == 0 || count > total {
                return Err(bad(format!(
                    "topk entry {i} has count {count}, outside 1..total ({total})"
                )));
            }
            if error >= count {
                return Err(bad(format!(
                    "topk entry {i} has error {error} not below its count {count}"
                )));
            }
            if let Some(prev) = entries.last() {
                if prev.item.as_slice() >= item {
                    return Err(bad(format!(
                        "topk entries are not strictly ascending at entry {i}"
                    )));
                }
            }
            sum = match sum.checked_add(count) {
                Some(s) if s <= total => s,
                _ => {
                    return Err(bad(format!(
                        "topk counts sum to more than the total {total}"
                    )))
                }
            };
            entries.push(Entry {
                item: item.to_vec(),
                hash: hash_bytes(item, 0),
                count,
                error,
                bucket: NIL,
                prev: NIL,
                next: NIL,
            });
        }
        if r.at != bytes.len() {
            return Err(bad(format!(
                "topk value has {} trailing bytes",
                bytes.len() - r.at
            )));
        }
        if n < cap {
            if sum != total {
                return Err(bad(format!(
                    "topk is not full but its counts sum to {sum}, not the total {total}"
                )));
            }
            if entries.iter().any(|e| e.error != 0) {
                return Err(bad("topk is not full but has a nonzero error".to_string()));
            }
        } else {
            let min = entries.iter().map(|e| e.count).min().unwrap_or(0);
            if entries.iter().any(|e| e.error > min) {
                return Err(bad(format!(
                    "topk has an error above the minimum count {min}"
                )));
            }
        }
        let mut t = TopK::new(k).map_err(|e| bad(e.message))?;
        t.total = total;
        t.entries = entries;
        t.rebuild();
        Ok(t)
    }
}

struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn bytes(&mut self, n: usize) -> Result<&'a [u8]> {
        match self.at.checked_add(n) {
            Some(end) if end <= self.b.len() => {
                let s = &self.b[self.at..end];
                self.at = end;
                Ok(s)
            }
            _ => Err(bad(format!(
                "topk value truncated: need {n} bytes at offset {}, have {}",
                self.at,
                self.b.len() - self.at.min(self.b.len())
            ))),
        }
    }
    fn u8(&mut self) -> Result<u8> {
        Ok(self.bytes(1)?[0])
    }
    fn u32(&mut self) -> Result<u32> {
        let mut a = [0u8; 4];
        a.copy_from_slice(self.bytes(4)?);
        Ok(u32::from_le_bytes(a))
    }
    fn u64(&mut self) -> Result<u64> {
        let mut a = [0u8; 8];
        a.copy_from_slice(self.bytes(8)?);
        Ok(u64::from_le_bytes(a))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;
    use proptest::prelude::*;
    use rand::rngs::SmallRng;
    use rand::{Rng, SeedableRng};
    use std::collections::HashMap;

    type Truth = HashMap<Vec<u8>, u64>;

    /// Buckets ascend by count, links agree both ways, no bucket is empty, and
    /// the index finds every entry.
    fn assert_consistent(t: &TopK) {
        let mut seen = 0usize;
        let mut b = t.min_bucket;
        let mut prev_b = NIL;
        let mut last_count = 0u64;
        while b != NIL {
            let bk = t.buckets[b as usize];
            assert_eq!(bk.prev, prev_b);
            assert!(bk.count > last_count, "bucket counts must ascend");
            assert!(!t.free_buckets.contains(&b));
            last_count = bk.count;
            let mut e = bk.head;
            let mut prev_e = NIL;
            assert_ne!(e, NIL, "no empty bucket in the list");
            while e != NIL {
                let en = &t.entries[e as usize];
                assert_eq!((en.bucket, en.prev, en.count), (b, prev_e, bk.count));
                seen += 1;
                prev_e = e;
                e = en.next;
            }
            assert_eq!(bk.tail, prev_e);
            prev_b = b;
            b = bk.next;
        }
        assert_eq!(seen, t.entries.len());
        for (s, e) in t.entries.iter().enumerate() {
            assert_eq!(t.find(e.hash, &e.item), Some(s as u32));
        }
        let occupied = t.table.iter().filter(|&&s| s != EMPTY).count();
        assert_eq!(occupied, t.len());
    }

    /// Checks the public guarantees and the internal invariants against exact counts.
    fn check(t: &TopK, truth: &Truth) {
        assert_consistent(t);
        let total: u64 = truth.values().sum();
        assert_eq!(t.total(), total);
        let mu = t.min_count();
        let tracked: HashMap<Vec<u8>, (u64, u64)> = t
            .tracked()
            .into_iter()
            .map(|(i, c, e)| (i, (c, e)))
            .collect();
        assert_eq!(tracked.len(), t.len());
        assert!(t.len() <= t.capacity());
        for (item, &(c, e)) in &tracked {
            let f = truth.get(item).copied().unwrap_or(0);
            assert!(
                c - e <= f && f <= c,
                "item {item:?}: count {c} error {e} true {f}"
            );
            assert!(e <= mu);
        }
        for (item, &f) in truth {
            if !tracked.contains_key(item) {
                assert!(f <= mu, "untracked {item:?} has {f} > mu {mu}");
            }
        }
        let list = t.list();
        assert!(list.len() <= t.k() as usize);
        for w in list.windows(2) {
            assert!(w[0].1 > w[1].1 || (w[0].1 == w[1].1 && w[0].0 < w[1].0));
        }
        for (item, &f) in truth {
            if f * t.k() as u64 > total {
                assert!(
                    list.iter().any(|x| &x.0 == item),
                    "heavy {item:?} ({f}/{total}) missing"
                );
            }
        }
        // Round trip, and the decoded copy is equal.
        let enc = t.encode();
        assert_eq!(enc.len(), t.encoded_len());
        let d = TopK::decode(&enc).unwrap();
        assert_eq!(&d, t);
        assert_eq!(d.encode(), enc);
    }

    fn run(k: u32, stream: &[(Vec<u8>, u64)]) -> (TopK, Truth) {
        let mut t = TopK::new(k).unwrap();
        let mut truth = Truth::new();
        for (item, c) in stream {
            t.add(item, *c).unwrap();
            if *c > 0 {
                *truth.entry(item.clone()).or_default() += c;
            }
        }
        (t, truth)
    }

    fn zipf_items(rng: &mut SmallRng, n: usize, universe: usize, s: f64) -> Vec<Vec<u8>> {
        let mut cdf = Vec::with_capacity(universe);
        let mut acc = 0.0;
        for r in 1..=universe {
            acc += 1.0 / (r as f64).powf(s);
            cdf.push(acc);
        }
        (0..n)
            .map(|_| {
                let u = rng.gen::<f64>() * acc;
                let r = cdf.partition_point(|&c| c < u);
                format!("value-{r}").into_bytes()
            })
            .collect()
    }

    #[test]
    fn k_bounds() {
        assert_eq!(TopK::new(0).unwrap_err().kind, ErrorKind::InvalidParameter);
        assert_eq!(
            TopK::new(100_001).unwrap_err().kind,
            ErrorKind::InvalidParameter
        );
        assert!(TopK::new(1).is_ok());
        assert_eq!(TopK::new(100_000).unwrap().capacity(), 400_000);
    }

    #[test]
    fn exact_while_not_full() {
        let mut t = TopK::new(2).unwrap();
        for (i, c) in [(b"x", 3), (b"y", 1), (b"x", 2), (b"z", 0)] {
            t.add(i, c).unwrap();
        }
        assert_eq!(t.list(), vec![(b"x".to_vec(), 5, 0), (b"y".to_vec(), 1, 0)]);
        assert_eq!(t.total(), 6);
        assert_eq!(t.min_count(), 0);
    }

    /// Hand-derived from docs/FORMAT.md.
    #[test]
    fn golden_bytes() {
        let mut t = TopK::new(2).unwrap();
        t.add(b"b", 3).unwrap();
        t.add(b"a", 1).unwrap();
        #[rustfmt::skip]
        let expected = vec![
            0x01, 0x20,
            0x02, 0x00, 0x00, 0x00,                         // k 2
            0x04, 0, 0, 0, 0, 0, 0, 0,                      // total 4
            0x02, 0x00, 0x00, 0x00,                         // n 2
            0x01, 0, 0, 0, 0, 0, 0, 0,  0, 0, 0, 0, 0, 0, 0, 0,  0x01, 0, 0, 0,  b'a',
            0x03, 0, 0, 0, 0, 0, 0, 0,  0, 0, 0, 0, 0, 0, 0, 0,  0x01, 0, 0, 0,  b'b',
        ];
        assert_eq!(t.encode(), expected);
        assert_eq!(TopK::decode(&expected).unwrap(), t);

        // k = 1 (capacity 4): a5 b4 c3 d2 fill it; e1 evicts the unique minimum d (2),
        // so e gets count 3, error 2.
        let mut t = TopK::new(1).unwrap();
        for (i, c) in [(b"a", 5), (b"b", 4), (b"c", 3), (b"d", 2), (b"e", 1)] {
            t.add(i, c).unwrap();
        }
        #[rustfmt::skip]
        let expected = vec![
            0x01, 0x20,
            0x01, 0x00, 0x00, 0x00,                         // k 1
            0x0F, 0, 0, 0, 0, 0, 0, 0,                      // total 15
            0x04, 0x00, 0x00, 0x00,                         // n 4
            0x05, 0, 0, 0, 0, 0, 0, 0,  0, 0, 0, 0, 0, 0, 0, 0,  0x01, 0, 0, 0,  b'a',
            0x04, 0, 0, 0, 0, 0, 0, 0,  0, 0, 0, 0, 0, 0, 0, 0,  0x01, 0, 0, 0,  b'b',
            0x03, 0, 0, 0, 0, 0, 0, 0,  0, 0, 0, 0, 0, 0, 0, 0,  0x01, 0, 0, 0,  b'c',
            0x03, 0, 0, 0, 0, 0, 0, 0,  0x02, 0, 0, 0, 0, 0, 0, 0,  0x01, 0, 0, 0,  b'e',
        ];
        assert_eq!(t.encode(), expected);
        assert_eq!(t.list(), vec![(b"a".to_vec(), 5, 0)]);
        assert_eq!(t.min_count(), 3);
        assert_eq!(TopK::decode(&expected).unwrap(), t);
    }

    #[test]
    fn overflow_is_an_error_and_leaves_the_summary_unchanged() {
        let mut t = TopK::new(3).unwrap();
        t.add(b"a", i64::MAX as u64 - 1).unwrap();
        let before = t.clone();
        assert_eq!(t.add(b"b", 2).unwrap_err().kind, ErrorKind::Overflow);
        assert_eq!(t.add(b"a", u64::MAX).unwrap_err().kind, ErrorKind::Overflow);
        assert_eq!(t, before);
        t.add(b"b", 1).unwrap();
        assert_eq!(t.clone().union(&t).unwrap_err().kind, ErrorKind::Overflow);
    }

    #[test]
    fn zipf_stream_guarantees_and_top_items() {
        let mut rng = SmallRng::seed_from_u64(1);
        let items = zipf_items(&mut rng, 300_000, 100_000, 1.1);
        let stream: Vec<(Vec<u8>, u64)> = items.into_iter().map(|i| (i, 1)).collect();
        for k in [1, 5, 10, 50] {
            let (t, truth) = run(k, &stream);
            check(&t, &truth);
            // The true top 3 by count lead the list.
            let mut exact: Vec<(&Vec<u8>, &u64)> = truth.iter().collect();
            exact.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
            let listed: Vec<Vec<u8>> = t.list().into_iter().map(|x| x.0).collect();
            // (With k = 1 or 5 only 4 or 20 counters exist and the tail churns them; the
            // guarantee above still holds, but ranking is only expected from k = 10.)
            let want = if k >= 10 { 3 } else { 0 };
            for (item, _) in exact.iter().take(want) {
                assert!(listed.contains(item), "k={k}: {:?} not listed", item);
            }
        }
    }

    #[test]
    fn union_of_partitions_meets_guarantees_on_zipf() {
        let mut rng = SmallRng::seed_from_u64(2);
        let items = zipf_items(&mut rng, 200_000, 50_000, 1.05);
        let mut parts: Vec<TopK> = (0..7).map(|_| TopK::new(10).unwrap()).collect();
        let mut truth = Truth::new();
        for item in items {
            let p = rng.gen_range(0..parts.len());
            parts[p].add(&item, 1).unwrap();
            *truth.entry(item).or_default() += 1;
        }
        let mut acc = TopK::new(10).unwrap();
        for p in &parts {
            acc.union(p).unwrap();
        }
        check(&acc, &truth);
    }

    fn stream_strategy() -> impl Strategy<Value = Vec<(Vec<u8>, u64)>> {
        // A small alphabet with skew so summaries fill and evict; weights mostly 1.
        prop::collection::vec(
            (
                prop_oneof![3 => 0u8..4, 2 => 0u8..40],
                prop_oneof![6 => Just(1u64), 2 => 0u64..20],
            ),
            0..300,
        )
        .prop_map(|v| {
            v.into_iter()
                .map(|(i, c)| (format!("i{i}").into_bytes(), c))
                .collect()
        })
    }

    proptest! {
        #[test]
        fn guarantees_hold_on_random_streams(k in 1u32..6, s in stream_strategy()) {
            let (t, truth) = run(k, &s);
            check(&t, &truth);
        }

        #[test]
        fn union_of_partitions_meets_guarantees(
            s in stream_strategy(),
            assign in prop::collection::vec(0usize..4, 300),
            ks in prop::collection::vec(1u32..5, 4),
            order in Just(vec![0usize, 1, 2, 3]).prop_shuffle(),
        ) {
            let mut parts: Vec<TopK> = ks.iter().map(|&k| TopK::new(k).unwrap()).collect();
            let mut truth = Truth::new();
            for (i, (item, c)) in s.iter().enumerate() {
                parts[assign[i]].add(item, *c).unwrap();
                if *c > 0 { *truth.entry(item.clone()).or_default() += c; }
            }
            // Union in a random order, also through decode, and as a tree.
            let mut acc = TopK::decode(&parts[order[0]].encode()).unwrap();
            for &p in &order[1..] {
                acc.union(&parts[p]).unwrap();
            }
            prop_assert_eq!(acc.k(), *ks.iter().min().unwrap());
            check(&acc, &truth);
            let mut left = parts[0].clone();
            left.union(&parts[1]).unwrap();
            let mut right = parts[2].clone();
            right.union(&parts[3]).unwrap();
            left.union(&right).unwrap();
            check(&left, &truth);
        }

        #[test]
        fn union_is_commutative(a in stream_strategy(), b in stream_strategy(), ka in 1u32..4, kb in 1u32..4) {
            let (x, _) = run(ka, &a);
            let (y, _) = run(kb, &b);
            let mut xy = x.clone();
            xy.union(&y).unwrap();
            let mut yx = y.clone();
            yx.union(&x).unwrap();
            prop_assert_eq!(xy.encode(), yx.encode());
            // empty summary with the same k is an identity
            let mut xe = x.clone();
            xe.union(&TopK::new(ka).unwrap()).unwrap();
            prop_assert_eq!(xe, x);
        }

        #[test]
        fn decoded_copy_continues_correctly(k in 1u32..4, a in stream_strategy(), b in stream_strategy()) {
            let (mut t, mut truth) = run(k, &a);
            let mut d = TopK::decode(&t.encode()).unwrap();
            // Decoding twice gives the same in-memory order, so the same future.
            let mut d2 = TopK::decode(&t.encode()).unwrap();
            for (item, c) in &b {
                t.add(item, *c).unwrap();
                d.add(item, *c).unwrap();
                d2.add(item, *c).unwrap();
                if *c > 0 {
                    *truth.entry(item.clone()).or_default() += c;
                }
            }
            check(&t, &truth);
            check(&d, &truth);
            prop_assert_eq!(d.encode(), d2.encode());
        }

        #[test]
        fn decode_random_bytes_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
            if let Ok(t) = TopK::decode(&bytes) {
                prop_assert_eq!(t.encode(), bytes);
            }
        }

        #[test]
        fn decode_mutated_never_panics(k in 1u32..3, s in stream_strategy(),
                                       pos in any::<prop::sample::Index>(), bit in 0u8..8,
                                       cut in any::<prop::sample::Index>()) {
            let (t, _) = run(k, &s);
            let e = t.encode();
            let mut m = e.clone();
            let i = pos.index(m.len());
            m[i] ^= 1 << bit;
            match TopK::decode(&m) {
                Ok(d) => {
                    prop_assert_eq!(d.encode(), m);
                    // whatever decoded is still usable
                    let mut d2 = d.clone();
                    d2.add(b"zz", 1).ok();
                    d2.union(&t).ok();
                }
                Err(err) => prop_assert_eq!(err.kind, ErrorKind::InvalidBinary),
            }
            prop_assert!(TopK::decode(&e[..cut.index(e.len())]).is_err());
        }
    }

    #[test]
    fn decode_rejects_broken_invariants() {
        let mut t = TopK::new(1).unwrap();
        for (i, c) in [(b"a", 5), (b"b", 4), (b"c", 3), (b"d", 2), (b"e", 1)] {
            t.add(i, c).unwrap();
        }
        let good = t.encode();
        let kind = |b: &[u8]| TopK::decode(b).unwrap_err().kind;
        let entry = |i: usize| TOPK_HEADER_LEN + i * (TOPK_ENTRY_HEADER_LEN + 1);
        // error above the minimum count (3)
        let mut b = good.clone();
        b[entry(0) + 8] = 4;
        assert_eq!(kind(&b), ErrorKind::InvalidBinary);
        // error >= count
        let mut b = good.clone();
        b[entry(3) + 8] = 3;
        assert_eq!(kind(&b), ErrorKind::InvalidBinary);
        // duplicate / unsorted items
        let mut b = good.clone();
        b[entry(1) + 20] = b'a';
        assert_eq!(kind(&b), ErrorKind::InvalidBinary);
        // counts summing past the total
        let mut b = good.clone();
        b[6] = 14;
        assert_eq!(kind(&b), ErrorKind::InvalidBinary);
        // k = 0 and k too large
        let mut b = good.clone();
        b[2] = 0;
        assert_eq!(kind(&b), ErrorKind::InvalidBinary);
        let mut b = good.clone();
        b[2..6].copy_from_slice(&200_000u32.to_le_bytes());
        assert_eq!(kind(&b), ErrorKind::InvalidBinary);
        // a huge n is rejected before allocating
        let mut b = good.clone();
        b[2..6].copy_from_slice(&100_000u32.to_le_bytes());
        b[14..18].copy_from_slice(&399_999u32.to_le_bytes());
        assert_eq!(kind(&b), ErrorKind::InvalidBinary);
        // a huge item length
        let mut b = good.clone();
        b[entry(0) + 16..entry(0) + 20].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(kind(&b), ErrorKind::InvalidBinary);
        // not full, but with an error or a sum below the total
        let mut nf = TopK::new(2).unwrap();
        nf.add(b"a", 2).unwrap();
        let g = nf.encode();
        let mut b = g.clone();
        b[entry(0) + 8] = 1;
        assert_eq!(kind(&b), ErrorKind::InvalidBinary);
        let mut b = g.clone();
        b[6] = 3;
        assert_eq!(kind(&b), ErrorKind::InvalidBinary);
        // trailing byte, wrong version, wrong kind
        let mut b = good.clone();
        b.push(0);
        assert_eq!(kind(&b), ErrorKind::InvalidBinary);
        let mut b = good.clone();
        b[0] = 0;
        assert_eq!(kind(&b), ErrorKind::InvalidBinary);
        let mut b = good.clone();
        b[1] = 0x10;
        assert_eq!(kind(&b), ErrorKind::InvalidBinary);
    }

    #[test]
    fn table_survives_heavy_churn() {
        // Many evictions exercise backward-shift deletion; every tracked item must stay
        // findable.
        let mut rng = SmallRng::seed_from_u64(9);
        let mut t = TopK::new(8).unwrap();
        for _ in 0..50_000 {
            let v: u32 = rng.gen_range(0..500);
            t.add(&v.to_le_bytes(), rng.gen_range(1..3)).unwrap();
        }
        assert_consistent(&t);
    }

    /// `cargo test --release -p distributed_counter_core -- --ignored --nocapture topk_speed`
    #[test]
    #[ignore]
    fn topk_speed() {
        let mut rng = SmallRng::seed_from_u64(3);
        let items = zipf_items(&mut rng, 10_000_000, 1_000_000, 1.0);
        let start = std::time::Instant::now();
        let mut x = 0u64;
        for i in &items {
            x ^= hash_bytes(i, 0);
        }
        println!("hashing alone: {:?} ({x})", start.elapsed());
        for k in [100, 1000] {
            let start = std::time::Instant::now();
            let mut t = TopK::new(k).unwrap();
            for i in &items {
                t.add(i, 1).unwrap();
            }
            println!("k={k}: {:?}", start.elapsed());
        }
        let start = std::time::Instant::now();
        let mut t = TopK::new(10).unwrap();
        for i in &items {
            t.add(i, 1).unwrap();
        }
        let el = start.elapsed();
        println!(
            "10M Zipf adds, k=10: {:?} ({:.1} ns/add)",
            el,
            el.as_nanos() as f64 / 1e7
        );
        println!(
            "{:?}",
            t.list()
                .iter()
                .map(|x| (String::from_utf8_lossy(&x.0).to_string(), x.1, x.2))
                .collect::<Vec<_>>()
        );
    }
}
