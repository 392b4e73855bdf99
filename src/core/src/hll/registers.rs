//! Register and token arithmetic, and the in-place hot paths on the stored dense form.

use super::*;

// ---------------------------------------------------------------------------------
// Register arithmetic
// ---------------------------------------------------------------------------------

/// Register -> bit set of seen update values (bit `k + p - 2` for value `k`).
///
/// Branch-free: the top bit sits at `register >> 2`, the two flags just below it. For
/// the empty register the shift amount wraps to 62 and `4 << 62` overflows to 0; no
/// input byte can make this panic.
#[inline(always)]
pub(crate) fn register_to_mask(register: u8) -> u64 {
    let r = register as u32;
    ((4 | (r & 3)) as u64).wrapping_shl((r >> 2).wrapping_sub(2))
}

/// Bit set -> register: position of the highest bit, then the two bits below it.
#[inline(always)]
pub(crate) fn mask_to_register(mask: u64) -> u8 {
    if mask == 0 {
        return 0;
    }
    let top = 63 - mask.leading_zeros();
    let flags = (mask >> top.saturating_sub(2)) & 3;
    ((top << 2) as u8) | flags as u8
}

/// Register index and mask bit of hash `h` at precision `p` (4..=26).
#[inline(always)]
pub(crate) fn hash_update(h: u64, p: u32) -> (usize, u32) {
    let index = (h >> (64 - p)) as usize;
    // Leading zeros of the 64-p bits below the index, at most 64-p (the sentinel bit).
    let nlz = ((h << p) | (1u64 << (p - 1))).leading_zeros();
    (index, nlz + p - 1) // = k + p - 2 with k = nlz + 1
}

/// `(register index, update value k)` of hash `h` at precision `p`.
pub fn hash_register_update(h: u64, p: u8) -> (usize, u32) {
    let (index, bit) = hash_update(h, p as u32);
    (index, bit + 2 - p as u32)
}

/// The sparse token of a hash: top 26 bits and `1 + nlz` of the low 38 bits.
#[inline]
pub fn token_of_hash(h: u64) -> u32 {
    let index26 = (h >> (64 - TOKEN_INDEX_BITS)) as u32;
    // Sentinel caps the count at 38 leading zeros when all low bits are zero.
    let nlz = ((h << TOKEN_INDEX_BITS) | (1u64 << (TOKEN_INDEX_BITS - 1))).leading_zeros();
    (index26 << 6) | (nlz + 1)
}

/// `(register index, update value k)` that the hash behind `token` has at precision `p`.
///
/// The `26 - p` index bits below the register index decide: if any is set, `k` is
/// 1 + their leading zeros; otherwise the zeros continue into the low 38 bits, whose
/// count the token carries (`k = 26 - p + k26`).
#[inline]
pub fn token_register_update(token: u32, p: u8) -> (usize, u32) {
    let p = p as u32;
    let index26 = token >> 6;
    let k26 = token & 63;
    let middle_bits = TOKEN_INDEX_BITS - p;
    let index = (index26 >> middle_bits) as usize;
    let middle = index26 & ((1u32 << middle_bits) - 1);
    let k = if middle != 0 {
        // leading zeros of `middle` within a field of `middle_bits` bits, plus one
        middle.leading_zeros() - (32 - middle_bits) + 1
    } else {
        middle_bits + k26
    };
    (index, k)
}

pub(crate) fn token_is_valid(token: u32) -> bool {
    (1..=TOKEN_MAX_K).contains(&(token & 63))
}

/// Is `register` a value that some set of hashes produces at precision `p`?
pub(crate) fn register_is_valid(register: u8, p: u8) -> bool {
    if register == 0 {
        return true;
    }
    let top = (register >> 2) as u32; // = kmax + p - 2, at most 63 for any byte
    let flags = register & 3;
    let p = p as u32;
    if top < p - 1 {
        false // kmax < 1
    } else if top == p - 1 {
        flags == 0 // kmax = 1: there is no k = 0 or k = -1
    } else if top == p {
        flags & 1 == 0 // kmax = 2: there is no k = 0
    } else {
        true
    }
}

/// The register of the union of two registers' hash sets, without unpacking to masks.
///
/// Registers order like their `kmax` (it sits in the upper 6 bits), so with `hi >= lo`
/// and `d` the difference of their `kmax`: `d = 0` ORs the flags; `d = 1` means `lo`
/// proves `kmax - 1` (flag 2) and its own `k - 1` flag proves `kmax - 2` (flag 1);
/// `d = 2` proves `kmax - 2`; `d >= 3` adds nothing. An empty `lo` has `d >= 3`
/// because a non-empty register's upper part is `kmax + p - 2 >= 3`. Written
/// branch-free on bytes so the loop vectorises; equal to the mask merge for every
/// pair of valid registers (tested exhaustively).
#[inline(always)]
pub(crate) fn merge_register_pair(a: u8, b: u8) -> u8 {
    let hi = a.max(b);
    let lo = a.min(b);
    let d = (hi >> 2).wrapping_sub(lo >> 2);
    let if_d0 = hi | lo;
    let if_d1 = hi | 2 | ((lo >> 1) & 1);
    let if_d2 = hi | 1;
    let m0 = 0u8.wrapping_sub((d == 0) as u8);
    let m1 = 0u8.wrapping_sub((d == 1) as u8);
    let m2 = 0u8.wrapping_sub((d == 2) as u8);
    let m3 = !(m0 | m1 | m2);
    (if_d0 & m0) | (if_d1 & m1) | (if_d2 & m2) | (hi & m3)
}

/// Whether the stored sparse sketch `encoded` already holds the token of hash `h`
/// (then adding `h` changes nothing). False for anything that is not sparse.
/// Binary search over the little-endian token array; O(log n), no allocation.
#[inline]
pub fn sparse_contains_hash(encoded: &[u8], h: u64) -> bool {
    if encoded.len() < HEADER_LEN || encoded[0] != FORMAT_VERSION || encoded[1] != KIND_SPARSE {
        return false;
    }
    let tokens = &encoded[HEADER_LEN..];
    if !tokens.len().is_multiple_of(4) {
        return false;
    }
    let want = token_of_hash(h);
    let (mut lo, mut hi) = (0usize, tokens.len() / 4);
    while lo < hi {
        let mid = (lo + hi) / 2;
        let c = &tokens[4 * mid..4 * mid + 4];
        let t = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        match t.cmp(&want) {
            std::cmp::Ordering::Equal => return true,
            std::cmp::Ordering::Less => lo = mid + 1,
            std::cmp::Ordering::Greater => hi = mid,
        }
    }
    false
}

/// Merge a stored sparse sketch `src` into a stored dense sketch `dst` in place, when
/// the result keeps `dst`'s precision (`src` precision >= `dst` precision; tokens are
/// precision-free). Returns false and changes nothing otherwise. `src` must be a
/// validated encoding (tokens are only bounds-checked here).
pub fn dense_merge_sparse_in_place(dst: &mut [u8], src: &[u8]) -> bool {
    let Some(p) = dense_precision(dst) else {
        return false;
    };
    if src.len() < HEADER_LEN
        || src[0] != FORMAT_VERSION
        || src[1] != KIND_SPARSE
        || src[2] < p
        || !(src.len() - HEADER_LEN).is_multiple_of(4)
    {
        return false;
    }
    for c in src[HEADER_LEN..].chunks_exact(4) {
        let t = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        let (index, k) = token_register_update(t, p);
        let bit = (k + p as u32).wrapping_sub(2) & 63;
        if let Some(r) = dst.get_mut(HEADER_LEN + index) {
            *r = mask_to_register(register_to_mask(*r) | (1u64 << bit));
        }
    }
    true
}

/// Fold registers of precision `q` into `2^p` registers of precision `p < q`.
///
/// Register `i` at `p` collects the `2^(q-p)` old registers whose index starts with `i`.
/// The first one (extra index bits all zero) keeps its mask unchanged: its values `k'`
/// become `k' + (q - p)` and the mask position `k + p - 2` is the same. Any other
/// non-empty old register proves a hash whose `k` at `p` is 1 + the leading zeros of
/// the extra index bits. (hash4j `UltraLogLog.add` with a larger-precision argument.)
pub(crate) fn downsize_registers(src: &[u8], q: u8, p: u8) -> Vec<u8> {
    let extra = (q - p) as u32;
    let group = 1usize << extra;
    let mut out = vec![0u8; 1usize << p];
    for (slot, chunk) in out.iter_mut().zip(src.chunks_exact(group)) {
        let mut mask = register_to_mask(chunk[0]);
        for (offset, &r) in chunk.iter().enumerate().skip(1) {
            if r != 0 {
                let bit_len = usize::BITS - offset.leading_zeros();
                let k = extra - bit_len + 1;
                mask |= 1u64 << (k + p as u32 - 2);
            }
        }
        *slot = mask_to_register(mask);
    }
    out
}

pub(crate) fn tokens_to_registers(tokens: &[u32], p: u8) -> Vec<u8> {
    let mut regs = vec![0u8; 1usize << p];
    add_tokens_to_registers(&mut regs, tokens, p);
    regs
}

pub(crate) fn add_tokens_to_registers(regs: &mut [u8], tokens: &[u32], p: u8) {
    for &t in tokens {
        let (index, k) = token_register_update(t, p);
        if let Some(r) = regs.get_mut(index) {
            *r = mask_to_register(register_to_mask(*r) | (1u64 << (k + p as u32 - 2)));
        }
    }
}

/// Union of two sorted, deduplicated token lists.
pub(crate) fn merge_sorted_tokens(a: &[u32], b: &[u32]) -> Vec<u32> {
    let mut out = Vec::with_capacity(a.len() + b.len());
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        match a[i].cmp(&b[j]) {
            std::cmp::Ordering::Less => {
                out.push(a[i]);
                i += 1;
            }
            std::cmp::Ordering::Greater => {
                out.push(b[j]);
                j += 1;
            }
            std::cmp::Ordering::Equal => {
                out.push(a[i]);
                i += 1;
                j += 1;
            }
        }
    }
    out.extend_from_slice(&a[i..]);
    out.extend_from_slice(&b[j..]);
    out
}

// ---------------------------------------------------------------------------------
// In-place hot path on the stored dense form
// ---------------------------------------------------------------------------------

/// Precision of `encoded` if it is a version-1 dense encoding of the right length.
///
/// Checks only the header and the length (O(1)); register contents are assumed to have
/// been validated by [`Hll::decode`] when the value entered the system.
#[inline]
pub fn dense_precision(encoded: &[u8]) -> Option<u8> {
    if encoded.len() < HEADER_LEN || encoded[0] != FORMAT_VERSION || encoded[1] != KIND_DENSE {
        return None;
    }
    let p = encoded[2];
    if (MIN_P..=MAX_P).contains(&p) && encoded.len() == encoded_len_dense(p) {
        Some(p)
    } else {
        None
    }
}

/// Add hash `h` to a stored dense sketch in place (the aggregate's per-row path).
///
/// Returns `false` and leaves the bytes untouched when `encoded` is not a dense
/// encoding (then use the generic decode / add / encode path). Never allocates and
/// never panics, whatever the bytes.
#[inline]
pub fn dense_add_in_place(encoded: &mut [u8], h: u64) -> bool {
    let Some(p) = dense_precision(encoded) else {
        return false;
    };
    let (index, bit) = hash_update(h, p as u32);
    if let Some(r) = encoded.get_mut(HEADER_LEN + index) {
        *r = mask_to_register(register_to_mask(*r) | (1u64 << bit));
    }
    true
}

/// Merge the stored dense sketch `src` into the stored dense sketch `dst` in place.
///
/// Returns `false` (nothing changed) unless both are dense encodings of the same
/// precision; then fall back to [`Hll::union`].
pub fn dense_merge_in_place(dst: &mut [u8], src: &[u8]) -> bool {
    match (dense_precision(dst), dense_precision(src)) {
        (Some(a), Some(b)) if a == b => {
            merge_registers(&mut dst[HEADER_LEN..], &src[HEADER_LEN..]);
            true
        }
        _ => false,
    }
}
