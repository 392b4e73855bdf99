//! Merging a stored counter into another stored counter in place, without decoding
//! either: what the merge aggregates do per row when the state already holds every node
//! of the input (the common case: the same few nodes row after row). The input is
//! validated exactly as the decoder validates it (`binary.rs`); the state is trusted
//! (the aggregate made it). Anything unusual answers false, and the caller takes the
//! decode/merge/encode path, which reports the error or grows the state.

use super::{FORMAT_VERSION, MAX_COUNT, MAX_NODES, MAX_NODE_ID_BYTES};

#[inline(always)]
fn read_u32(bytes: &[u8], at: usize) -> Option<usize> {
    let b = bytes.get(at..at + 4)?;
    Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
}

#[inline(always)]
fn read_u64(bytes: &[u8], at: usize) -> Option<u64> {
    let b = bytes.get(at..at + 8)?;
    Some(u64::from_le_bytes(b.try_into().ok()?))
}

/// Merge the gcounter payload of `input` at `ip` into the (trusted, canonical) payload of
/// `state` at `sp` by raising counts in place. Validates the input payload exactly as
/// the core decoder does. Returns the end offsets of both payloads, or None when the
/// input is not valid (the caller's slow path reports why) or holds a node the state
/// lacks (the state must grow). Counts raised before a None stay raised: that is a
/// partial merge, which the slow path's full merge completes (merge is idempotent).
#[inline(always)]
fn merge_payload_in_place(
    state: &mut [u8],
    mut sp: usize,
    input: &[u8],
    mut ip: usize,
) -> Option<(usize, usize)> {
    let mut state_left = read_u32(state, sp)?;
    sp += 4;
    let n = read_u32(input, ip)?;
    ip += 4;
    if n > MAX_NODES || n * 10 > input.len().saturating_sub(ip) {
        return None;
    }
    let mut prev: &[u8] = &[];
    for _ in 0..n {
        let len = *input.get(ip)? as usize;
        if len == 0 || len > MAX_NODE_ID_BYTES {
            return None;
        }
        let id = input.get(ip + 1..ip + 1 + len)?;
        let count = read_u64(input, ip + 1 + len)?;
        ip += 9 + len;
        // Strictly ascending ids (prev starts empty, below every valid id), no NUL,
        // valid UTF-8, count in 1..=MAX_COUNT: the core decoder's rules.
        if id <= prev
            || count == 0
            || count > MAX_COUNT
            || id.contains(&0)
            || std::str::from_utf8(id).is_err()
        {
            return None;
        }
        prev = id;
        // Advance the state to this id; both lists are sorted by bytes.
        loop {
            if state_left == 0 {
                return None;
            }
            let slen = *state.get(sp)? as usize;
            let sid = state.get(sp + 1..sp + 1 + slen)?;
            state_left -= 1;
            match sid.cmp(id) {
                std::cmp::Ordering::Less => sp += 9 + slen,
                std::cmp::Ordering::Equal => {
                    let at = sp + 1 + slen;
                    if count > read_u64(state, at)? {
                        state
                            .get_mut(at..at + 8)?
                            .copy_from_slice(&count.to_le_bytes());
                    }
                    sp += 9 + slen;
                    break;
                }
                std::cmp::Ordering::Greater => return None,
            }
        }
    }
    for _ in 0..state_left {
        sp += 9 + *state.get(sp)? as usize;
    }
    Some((sp, ip))
}

/// Merge a stored counter `input` (`parts` gcounter payloads after the 2-byte header)
/// into `state` in place. True when done; false means "take the slow path".
pub fn merge_in_place(state: &mut [u8], input: &[u8], kind: u8, parts: usize) -> bool {
    if input.len() < 2 || input[0] != FORMAT_VERSION || input[1] != kind {
        return false;
    }
    let (mut sp, mut ip) = (2, 2);
    for _ in 0..parts {
        match merge_payload_in_place(state, sp, input, ip) {
            Some((s, i)) => (sp, ip) = (s, i),
            None => return false,
        }
    }
    ip == input.len() && sp == state.len()
}

#[cfg(test)]
mod tests {
    use super::super::{GCounter, PNCounter, KIND_GCOUNTER, KIND_PNCOUNTER};
    use super::merge_in_place;
    use proptest::prelude::*;

    fn gcounter(pairs: &[(u8, i64)]) -> GCounter {
        let mut c = GCounter::new();
        for &(node, n) in pairs {
            c.increment(&format!("node-{node}"), n).unwrap();
        }
        c
    }

    proptest! {
        /// Whenever it succeeds the result is byte for byte the full merge, and it
        /// succeeds whenever the input's nodes are a subset of the state's.
        #[test]
        fn gcounter_in_place_equals_full_merge(
            a in proptest::collection::vec((0u8..12, 0i64..1_000_000), 0..12),
            b in proptest::collection::vec((0u8..12, 0i64..1_000_000), 0..12),
        ) {
            let (ga, gb) = (gcounter(&a), gcounter(&b));
            let mut merged = ga.clone();
            merged.merge(&gb).unwrap();
            let mut state = ga.encode();
            let input = gb.encode();
            let subset = b.iter().all(|&(n, c)| c == 0 || a.iter().any(|&(m, d)| m == n && d > 0));
            let done = merge_in_place(&mut state, &input, KIND_GCOUNTER, 1);
            if done {
                prop_assert_eq!(&state, &merged.encode());
            } else {
                prop_assert!(!subset, "declined although every input node is in the state");
                // A partial merge leaves a valid state whose full merge is still right.
                let mut partial = GCounter::decode(&state).unwrap();
                partial.merge(&gb).unwrap();
                prop_assert_eq!(partial, merged);
            }
        }

        #[test]
        fn pncounter_in_place_equals_full_merge(
            p in proptest::collection::vec((0u8..6, 1i64..1000), 0..6),
            n in proptest::collection::vec((0u8..6, 1i64..1000), 0..6),
        ) {
            let mut base = PNCounter::new();
            for node in 0..6u8 {
                base.increment(&format!("node-{node}"), 1).unwrap();
                base.decrement(&format!("node-{node}"), 1).unwrap();
            }
            let mut other = PNCounter::new();
            for &(node, c) in &p { other.increment(&format!("node-{node}"), c).unwrap(); }
            for &(node, c) in &n { other.decrement(&format!("node-{node}"), c).unwrap(); }
            let mut merged = base.clone();
            merged.merge(&other).unwrap();
            let mut state = base.encode();
            prop_assert!(merge_in_place(&mut state, &other.encode(), KIND_PNCOUNTER, 2));
            prop_assert_eq!(state, merged.encode());
        }

        /// Arbitrary input bytes never panic, and a decline never corrupts the state.
        #[test]
        fn arbitrary_input_is_declined_or_merged(input in proptest::collection::vec(any::<u8>(), 0..200)) {
            let base = gcounter(&[(1, 5), (2, 7), (3, 9)]);
            let mut state = base.encode();
            let done = merge_in_place(&mut state, &input, KIND_GCOUNTER, 1);
            let after = GCounter::decode(&state).unwrap();
            if done {
                let mut merged = base.clone();
                merged.merge(&GCounter::decode(&input).unwrap()).unwrap();
                prop_assert_eq!(after, merged);
            }
        }
    }
}
