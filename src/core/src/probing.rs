//! Open addressing with linear probing over a power-of-two array of slots, as the
//! shared-memory tables (rate_limit's buckets, buffered counters' deltas) use it.

/// Backward-shift deletion (no tombstones): slot `hole` is being emptied; each later slot
/// of its probe run that may move into the hole (its home is not cyclically between the
/// hole and itself) moves there, and leaves its own place as the next hole. `moved(from,
/// to)` is told of each move after it is made. Returns the last hole, which the caller
/// empties. `slots.len()` must be a power of two.
pub fn backward_shift<S: Copy>(
    slots: &mut [S],
    mut hole: usize,
    is_empty: impl Fn(&S) -> bool,
    home: impl Fn(&S) -> usize,
    mut moved: impl FnMut(usize, usize),
) -> usize {
    let mask = slots.len() - 1;
    let mut j = hole;
    loop {
        j = (j + 1) & mask;
        if is_empty(&slots[j]) {
            return hole;
        }
        // j may move to the hole iff the hole lies cyclically in [home, j)
        let h = home(&slots[j]) & mask;
        if (j.wrapping_sub(h) & mask) >= (j.wrapping_sub(hole) & mask) {
            slots[hole] = slots[j];
            moved(j, hole);
            hole = j;
        }
    }
}
