//! UltraLogLog (ULL) distinct counting: the algorithm behind the SQL type `hll`.
//!
//! Algorithm: O. Ertl, "UltraLogLog: A Practical and More Space-Efficient Alternative
//! to HyperLogLog for Approximate Distinct Counting", PVLDB 17(7), 2024
//! (arXiv:2308.16862). The register encoding, the lossless precision reduction, the
//! maximum-likelihood estimator of [`Hll::estimate`] (§5) and the FGRA estimator with its
//! small- and large-range corrections of [`Hll::estimate_fgra`] (§4) follow the paper and
//! the Apache-2.0 reference implementation in dynatrace-oss/hash4j (`UltraLogLog.java`,
//! `DistinctCountUtil.java`); this is an independent Rust implementation.
//!
//! # Registers
//! With precision `p` there are `m = 2^p` one-byte registers. A 64-bit hash `h` selects
//! register `h >> (64 - p)` and has the *update value* `k = 1 + nlz(remaining 64-p bits)`,
//! `k in 1..=65-p`. A register remembers the largest `k` seen (`kmax`) and whether
//! `kmax-1` and `kmax-2` were seen too:
//!
//! `register = 4 * (kmax + p - 2) + 2 * [kmax-1 seen] + [kmax-2 seen]`, `0` = empty.
//!
//! Equivalently, a register is a compressed bit set in which bit `k + p - 2` means
//! "update value `k` was seen" (the *mask*); only the top three bits survive packing.
//! Merging ORs masks, which yields exactly the register that the union of the hashes
//! would produce (max and the two flags are determined by the OR of the bit sets).
//!
//! # Sparse form
//! Small sets are kept as a sorted, deduplicated list of 32-bit *tokens*:
//! `token = (top 26 hash bits) << 6 | k26`, `k26 = 1 + nlz(low 38 bits)` in `1..=39`.
//! A token determines `(register, k)` for every precision `p <= 26`, so sparse sketches
//! convert to dense losslessly and merge across precisions.
//!
//! # Stored form (version 1), see docs/FORMAT.md
//! `[0x01 version][kind: 0x01 sparse | 0x02 dense][p][payload]`.

use std::sync::OnceLock;

use crate::error::{CoreError, Result};

/// Smallest supported precision (16 registers).
pub const MIN_P: u8 = 4;
/// Largest supported precision (262144 registers, 256 KiB dense).
pub const MAX_P: u8 = 18;
/// Format version byte of the stored form.
pub const FORMAT_VERSION: u8 = 1;
/// Kind byte of the sparse (token list) form.
pub const KIND_SPARSE: u8 = 0x01;
/// Kind byte of the dense (register array) form.
pub const KIND_DENSE: u8 = 0x02;
/// Bytes before the payload: version, kind, precision.
pub const HEADER_LEN: usize = 3;

/// Hash bits kept verbatim in a token (the register index for any `p <= 26`).
const TOKEN_INDEX_BITS: u32 = 26;
/// Largest `k26`: all 38 low hash bits zero.
const TOKEN_MAX_K: u32 = 64 - TOKEN_INDEX_BITS + 1;
/// Cells of the linear-counting estimate used by the sparse form (one per 26-bit index).
const SPARSE_CELLS: f64 = (1u64 << TOKEN_INDEX_BITS) as f64;

/// Most tokens a sparse sketch of precision `p` may hold: `max(m / 4, 128)`.
///
/// At `m / 4` tokens the sparse payload (4 bytes each) equals the dense one, so beyond
/// that dense is never larger; the floor of 128 keeps sets of up to 100 values sparse
/// (exact to +-1) at every precision.
pub fn sparse_capacity(p: u8) -> usize {
    ((1usize << p) / 4).max(128)
}

/// Length of the stored dense form for precision `p` (header + `2^p` registers).
pub fn encoded_len_dense(p: u8) -> usize {
    HEADER_LEN + (1usize << p)
}

fn check_precision(p: i64) -> Result<u8> {
    if (MIN_P as i64..=MAX_P as i64).contains(&p) {
        Ok(p as u8)
    } else {
        Err(
            CoreError::invalid_parameter(format!("hll precision {p} is out of range")).with_hint(
                format!("Use a precision between {MIN_P} and {MAX_P} (2^p registers)."),
            ),
        )
    }
}

// ---------------------------------------------------------------------------------
// Register arithmetic
// ---------------------------------------------------------------------------------

/// Register -> bit set of seen update values (bit `k + p - 2` for value `k`).
///
/// Branch-free: the top bit sits at `register >> 2`, the two flags just below it. For
/// the empty register the shift amount wraps to 62 and `4 << 62` overflows to 0; no
/// input byte can make this panic.
#[inline(always)]
fn register_to_mask(register: u8) -> u64 {
    let r = register as u32;
    ((4 | (r & 3)) as u64).wrapping_shl((r >> 2).wrapping_sub(2))
}

/// Bit set -> register: position of the highest bit, then the two bits below it.
#[inline(always)]
fn mask_to_register(mask: u64) -> u8 {
    if mask == 0 {
        return 0;
    }
    let top = 63 - mask.leading_zeros();
    let flags = (mask >> top.saturating_sub(2)) & 3;
    ((top << 2) as u8) | flags as u8
}

/// Register index and mask bit of hash `h` at precision `p` (4..=26).
#[inline(always)]
fn hash_update(h: u64, p: u32) -> (usize, u32) {
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

fn token_is_valid(token: u32) -> bool {
    (1..=TOKEN_MAX_K).contains(&(token & 63))
}

/// Is `register` a value that some set of hashes produces at precision `p`?
fn register_is_valid(register: u8, p: u8) -> bool {
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

/// OR `src` registers into `dst` (same precision).
fn merge_registers(dst: &mut [u8], src: &[u8]) {
    for (d, &s) in dst.iter_mut().zip(src) {
        *d = merge_register_pair(*d, s);
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
fn merge_register_pair(a: u8, b: u8) -> u8 {
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
fn downsize_registers(src: &[u8], q: u8, p: u8) -> Vec<u8> {
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

fn tokens_to_registers(tokens: &[u32], p: u8) -> Vec<u8> {
    let mut regs = vec![0u8; 1usize << p];
    add_tokens_to_registers(&mut regs, tokens, p);
    regs
}

fn add_tokens_to_registers(regs: &mut [u8], tokens: &[u32], p: u8) {
    for &t in tokens {
        let (index, k) = token_register_update(t, p);
        if let Some(r) = regs.get_mut(index) {
            *r = mask_to_register(register_to_mask(*r) | (1u64 << (k + p as u32 - 2)));
        }
    }
}

/// Union of two sorted, deduplicated token lists.
fn merge_sorted_tokens(a: &[u32], b: &[u32]) -> Vec<u32> {
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

// ---------------------------------------------------------------------------------
// The sketch
// ---------------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Eq)]
enum Repr {
    /// Sorted, deduplicated tokens; at most `sparse_capacity(p)` of them.
    Sparse(Vec<u32>),
    /// `2^p` registers.
    Dense(Vec<u8>),
}

/// An UltraLogLog sketch, sparse (token list) or dense (registers).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hll {
    p: u8,
    repr: Repr,
}

impl Hll {
    /// An empty sketch (sparse, no tokens). Precision outside 4..=18 is InvalidParameter.
    pub fn new(p: i32) -> Result<Hll> {
        let p = check_precision(p as i64)?;
        Ok(Hll {
            p,
            repr: Repr::Sparse(Vec::new()),
        })
    }

    /// Precision `p` (the sketch has `2^p` registers once dense).
    pub fn precision(&self) -> u8 {
        self.p
    }

    /// True while the sketch is a token list.
    pub fn is_sparse(&self) -> bool {
        matches!(self.repr, Repr::Sparse(_))
    }

    /// True when nothing has been added (either form).
    pub fn is_empty(&self) -> bool {
        match &self.repr {
            Repr::Sparse(t) => t.is_empty(),
            Repr::Dense(r) => r.iter().all(|&x| x == 0),
        }
    }

    /// Add one hashed value.
    pub fn add_hash(&mut self, h: u64) {
        let p = self.p;
        match &mut self.repr {
            Repr::Dense(regs) => {
                let (index, bit) = hash_update(h, p as u32);
                if let Some(r) = regs.get_mut(index) {
                    *r = mask_to_register(register_to_mask(*r) | (1u64 << bit));
                }
            }
            Repr::Sparse(tokens) => {
                let token = token_of_hash(h);
                if let Err(pos) = tokens.binary_search(&token) {
                    if tokens.len() < sparse_capacity(p) {
                        tokens.insert(pos, token);
                    } else {
                        self.densify();
                        self.add_hash(h);
                    }
                }
            }
        }
    }

    /// Add many hashed values; equal to calling [`Hll::add_hash`] for each, but sparse
    /// sketches sort the batch once instead of inserting one token at a time.
    pub fn add_hashes(&mut self, hashes: &[u64]) {
        if let Repr::Sparse(tokens) = &self.repr {
            let mut batch: Vec<u32> = hashes.iter().map(|&h| token_of_hash(h)).collect();
            batch.sort_unstable();
            batch.dedup();
            let merged = merge_sorted_tokens(tokens, &batch);
            self.set_tokens(merged);
        } else {
            for &h in hashes {
                self.add_hash(h);
            }
        }
    }

    /// Install a merged token list, switching to dense if it exceeds the capacity.
    fn set_tokens(&mut self, tokens: Vec<u32>) {
        if tokens.len() > sparse_capacity(self.p) {
            self.repr = Repr::Dense(tokens_to_registers(&tokens, self.p));
        } else {
            self.repr = Repr::Sparse(tokens);
        }
    }

    /// Switch to the dense form (no-op if already dense). Lossless for estimation.
    pub fn densify(&mut self) {
        if let Repr::Sparse(tokens) = &self.repr {
            self.repr = Repr::Dense(tokens_to_registers(tokens, self.p));
        }
    }

    /// The dense registers this sketch has at precision `p <= self.p`.
    fn registers_at(&self, p: u8) -> Vec<u8> {
        match &self.repr {
            Repr::Sparse(tokens) => tokens_to_registers(tokens, p),
            Repr::Dense(regs) if p == self.p => regs.clone(),
            Repr::Dense(regs) => downsize_registers(regs, self.p, p),
        }
    }

    /// The same set at a lower precision `p` (InvalidParameter if `p` is out of range or
    /// above the current precision). Lossless: equals adding the hashes at `p` directly.
    pub fn reduce_precision(&self, p: i32) -> Result<Hll> {
        let p = check_precision(p as i64)?;
        if p > self.p {
            return Err(CoreError::invalid_parameter(format!(
                "cannot raise hll precision from {} to {p}",
                self.p
            ))
            .with_hint("A sketch can only be reduced to a lower precision."));
        }
        let mut out = Hll {
            p,
            repr: Repr::Sparse(Vec::new()),
        };
        match &self.repr {
            Repr::Sparse(tokens) => out.set_tokens(tokens.clone()),
            Repr::Dense(_) => out.repr = Repr::Dense(self.registers_at(p)),
        }
        Ok(out)
    }

    /// The same set stored at precision `p` (a column's `hll(p)` typmod). Sparse sketches
    /// move to any precision losslessly (tokens do not depend on it); dense ones only
    /// down ([`Hll::reduce_precision`]); raising a dense sketch is InvalidParameter.
    pub fn with_precision(&self, p: i32) -> Result<Hll> {
        let target = check_precision(p as i64)?;
        match &self.repr {
            Repr::Sparse(tokens) => {
                let mut out = Hll {
                    p: target,
                    repr: Repr::Sparse(Vec::new()),
                };
                out.set_tokens(tokens.clone());
                Ok(out)
            }
            Repr::Dense(_) => self.reduce_precision(p),
        }
    }

    /// Merge `other` into `self`. The result has the lower of the two precisions and is
    /// exactly the sketch of the union of both hash sets at that precision. It stays
    /// sparse only if both are sparse and the merged tokens fit the capacity.
    pub fn union(&mut self, other: &Hll) {
        let p = self.p.min(other.p);
        match (&self.repr, &other.repr) {
            (Repr::Sparse(a), Repr::Sparse(b)) => {
                let merged = merge_sorted_tokens(a, b);
                self.p = p;
                self.set_tokens(merged);
            }
            (_, Repr::Sparse(b)) => {
                let mut regs = self.registers_at(p);
                add_tokens_to_registers(&mut regs, b, p);
                self.p = p;
                self.repr = Repr::Dense(regs);
            }
            (_, Repr::Dense(_)) => {
                let mut regs = self.registers_at(p);
                merge_registers(&mut regs, &other.registers_at(p));
                self.p = p;
                self.repr = Repr::Dense(regs);
            }
        }
    }

    /// Distinct values that are certainly present: every token (sparse) or every seen
    /// update value of every register (dense) stems from a different hash.
    pub fn certain_lower_bound(&self) -> u64 {
        match &self.repr {
            Repr::Sparse(tokens) => tokens.len() as u64,
            Repr::Dense(regs) => histogram_certain_count(&register_histogram(regs)),
        }
    }

    /// Estimated number of distinct values. Empty -> 0.
    ///
    /// Sparse: linear counting over the `2^26` token indices, `M ln(M / (M - c))`.
    /// Dense: the maximum-likelihood estimator (Ertl 2024, §5): RSE ~0.761/sqrt(m),
    /// memory-variance product 4.631, no bias bump over the whole range.
    /// Either way the result is never below [`Hll::certain_lower_bound`].
    pub fn estimate(&self) -> f64 {
        match &self.repr {
            Repr::Sparse(tokens) => sparse_estimate(tokens).max(tokens.len() as f64),
            Repr::Dense(regs) => {
                // One pass over the registers serves both the estimate and the clamp.
                let histogram = register_histogram(regs);
                ml_estimate_from_histogram(self.p, &histogram)
                    .max(histogram_certain_count(&histogram) as f64)
            }
        }
    }

    /// Like [`Hll::estimate`] but with the FGRA estimator for the dense form (Ertl 2024,
    /// §4; RSE ~0.782/sqrt(m), memory-variance product 4.895). Kept for comparison:
    /// cheaper (no equation to solve) but less accurate than the ML estimate.
    pub fn estimate_fgra(&self) -> f64 {
        let raw = match &self.repr {
            Repr::Sparse(tokens) => sparse_estimate(tokens),
            Repr::Dense(regs) => fgra_estimate(self.p, regs),
        };
        raw.max(self.certain_lower_bound() as f64)
    }

    /// Asymptotic relative standard error of the dense (maximum-likelihood) estimate,
    /// `sqrt(ln 2 / zeta(2, 5/4) / m)` ~ `0.7609 / sqrt(m)`, i.e. `sqrt(4.631 / (8 m))`.
    pub fn dense_relative_standard_error(p: u8) -> f64 {
        (ML_V / (1u64 << p) as f64).sqrt()
    }

    /// Two-sided `confidence` interval `(lower, upper)` around [`Hll::estimate`].
    ///
    /// * dense: `estimate * (1 -+ z * RSE)` with the ML estimator's asymptotic
    ///   `RSE = sqrt(0.5789 / m)` ([`Hll::dense_relative_standard_error`]; the
    ///   error is smaller for small counts, so this is conservative there);
    /// * sparse: linear-counting standard deviation `sqrt(M (e^t - t - 1))`,
    ///   `t = estimate / M` (Whang et al., TODS 1990), tiny for sparse sizes;
    ///
    /// with `z` the standard normal quantile of `(1 + confidence) / 2`. The lower bound
    /// is raised to [`Hll::certain_lower_bound`] and never drops below it; `lower <=
    /// estimate <= upper` always holds. `confidence` must lie strictly in (0, 1).
    pub fn bounds(&self, confidence: f64) -> Result<(f64, f64)> {
        if !(confidence > 0.0 && confidence < 1.0) {
            return Err(CoreError::invalid_parameter(format!(
                "confidence {confidence} is out of range"
            ))
            .with_hint("Use a confidence strictly between 0 and 1, such as 0.95."));
        }
        let z = inverse_normal_cdf(0.5 + confidence / 2.0);
        let estimate = self.estimate();
        let half_width = match &self.repr {
            Repr::Sparse(_) => {
                let t = estimate / SPARSE_CELLS;
                z * (SPARSE_CELLS * (t.exp_m1() - t)).max(0.0).sqrt()
            }
            Repr::Dense(_) => z * Self::dense_relative_standard_error(self.p) * estimate,
        };
        let certain = self.certain_lower_bound() as f64;
        let lower = (estimate - half_width).max(certain).min(estimate);
        let upper = estimate + half_width;
        Ok((lower, upper))
    }

    /// Length of [`Hll::encode`]'s output.
    pub fn encoded_len(&self) -> usize {
        HEADER_LEN
            + match &self.repr {
                Repr::Sparse(t) => 4 * t.len(),
                Repr::Dense(r) => r.len(),
            }
    }

    /// The canonical stored form (see docs/FORMAT.md).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.encoded_len());
        out.push(FORMAT_VERSION);
        match &self.repr {
            Repr::Sparse(tokens) => {
                out.push(KIND_SPARSE);
                out.push(self.p);
                for t in tokens {
                    out.extend_from_slice(&t.to_le_bytes());
                }
            }
            Repr::Dense(regs) => {
                out.push(KIND_DENSE);
                out.push(self.p);
                out.extend_from_slice(regs);
            }
        }
        out
    }

    /// Parse and fully validate a stored form; InvalidBinary on any defect.
    pub fn decode(bytes: &[u8]) -> Result<Hll> {
        let bad = CoreError::invalid_binary;
        if bytes.len() < HEADER_LEN {
            return Err(bad(format!(
                "hll value is {} bytes long, shorter than its 3-byte header",
                bytes.len()
            )));
        }
        let (version, kind, p) = (bytes[0], bytes[1], bytes[2]);
        if version != FORMAT_VERSION {
            return Err(bad(format!(
                "unsupported hll format version {version} (this build reads version {FORMAT_VERSION})"
            )));
        }
        if !(MIN_P..=MAX_P).contains(&p) {
            return Err(bad(format!(
                "hll precision {p} is out of range {MIN_P}..{MAX_P}"
            )));
        }
        let payload = &bytes[HEADER_LEN..];
        match kind {
            KIND_SPARSE => {
                if !payload.len().is_multiple_of(4) {
                    return Err(bad(format!(
                        "sparse hll payload is {} bytes, not a multiple of 4",
                        payload.len()
                    )));
                }
                let count = payload.len() / 4;
                if count > sparse_capacity(p) {
                    return Err(bad(format!(
                        "sparse hll has {count} tokens, more than the {} allowed at precision {p}",
                        sparse_capacity(p)
                    )));
                }
                let mut tokens = Vec::with_capacity(count);
                for (i, chunk) in payload.chunks_exact(4).enumerate() {
                    let token = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
                    if !token_is_valid(token) {
                        return Err(bad(format!(
                            "sparse hll token {i} (0x{token:08x}) has invalid rank {}",
                            token & 63
                        )));
                    }
                    if let Some(&prev) = tokens.last() {
                        if token <= prev {
                            return Err(bad(format!(
                                "sparse hll tokens are not strictly ascending at token {i}"
                            )));
                        }
                    }
                    tokens.push(token);
                }
                Ok(Hll {
                    p,
                    repr: Repr::Sparse(tokens),
                })
            }
            KIND_DENSE => {
                let m = 1usize << p;
                if payload.len() != m {
                    return Err(bad(format!(
                        "dense hll with precision {p} needs {m} register bytes, found {}",
                        payload.len()
                    )));
                }
                if let Some(i) = payload.iter().position(|&r| !register_is_valid(r, p)) {
                    return Err(bad(format!(
                        "dense hll register {i} has value {} impossible at precision {p}",
                        payload[i]
                    )));
                }
                Ok(Hll {
                    p,
                    repr: Repr::Dense(payload.to_vec()),
                })
            }
            other => Err(bad(format!("unknown hll kind byte 0x{other:02x}"))),
        }
    }

    /// One line for `hll_print`, e.g. `ULL v1, p=12, sparse, 10 tokens, 43 bytes`.
    pub fn describe(&self) -> String {
        match &self.repr {
            Repr::Sparse(t) => format!(
                "ULL v{FORMAT_VERSION}, p={}, sparse, {} tokens, {} bytes",
                self.p,
                t.len(),
                self.encoded_len()
            ),
            Repr::Dense(r) => format!(
                "ULL v{FORMAT_VERSION}, p={}, dense, {} registers, {} bytes",
                self.p,
                r.len(),
                self.encoded_len()
            ),
        }
    }
}

// ---------------------------------------------------------------------------------
// Estimators
// ---------------------------------------------------------------------------------

/// Linear counting over the distinct 26-bit token indices.
fn sparse_estimate(tokens: &[u32]) -> f64 {
    // Tokens are sorted, so equal indices are adjacent.
    let mut distinct = 0u64;
    let mut last = None;
    for &t in tokens {
        let idx = t >> 6;
        if last != Some(idx) {
            distinct += 1;
            last = Some(idx);
        }
    }
    // M ln(M / (M - c)) = -M ln(1 - c/M); c <= 65536 << M, so this is finite.
    -SPARSE_CELLS * (-(distinct as f64) / SPARSE_CELLS).ln_1p()
}

// Maximum-likelihood (ML) estimator, Ertl 2024, §5, and hash4j
// (`UltraLogLog.MaximumLikelihoodEstimator`, `DistinctCountUtil.solveMaximumLikelihoodEquation`).
//
// Poisson model: with `lambda` distinct values, each register sees update value `k`
// independently with probability `1 - exp(-x rho_k)`, `x = lambda / m`, where
// `rho_k = 2^-k` for `k <= 64 - p` and `rho_{65-p} = 2^-(64-p)` (all bits zero). A
// register tells us which of `kmax, kmax-1, kmax-2` were seen and that nothing above
// `kmax` was; smaller values are unknown. Collecting all registers, the log-likelihood is
//
//   ln L(x) = -A x + sum_j beta_j ln(1 - exp(-x 2^-j)),   j = 1..=64-p,
//
// with `A` the summed `rho` of all values known to be unseen and `beta_j` the number of
// seen values with `rho = 2^-j`. Setting the derivative to zero and multiplying by `x`:
//
//   G(x) := A x + sum_j beta_j h(x 2^-j) = B := sum_j beta_j,   h(z) = 1 - z / (e^z - 1).
//
// `h` is increasing and concave with `h(0) = 0`, `h'(0) = 1/2`, so `G` is increasing and
// concave and the root is unique. Newton's method started below the root stays below it
// (a concave function lies under its tangents) and rises monotonically to it; the
// bracket `[lower, B/A]` guards against rounding.

/// `ln 2 / zeta(2, 5/4)` (Hurwitz zeta): inverse Fisher information per register, so the
/// ML estimate has RSE `sqrt(ML_V / m)` (~0.761/sqrt(m)) and memory-variance product
/// `8 ML_V = 4.631` for 8-bit registers (Ertl 2024, §5; hash4j quotes sqrt(ML_V) =
/// 0.7608621002725182). `tests::ml_constants_follow_from_theory` recomputes it.
const ML_V: f64 = 0.5789111356311075;
/// First-order relative bias of the ML estimate is `ML_BIAS / m`, with
/// `ML_BIAS = 3/2 ln 2 zeta(3, 5/4) / zeta(2, 5/4)^2` (hash4j); divided out.
const ML_BIAS: f64 = 0.48147376527720065;
/// Newton stops once a step is below this relative size. Convergence is quadratic, so
/// the result is then within rounding of the root; being this tight (rather than a
/// fraction of the RSE) keeps the estimate a deterministic, smooth function of the
/// registers.
const ML_RELATIVE_TOLERANCE: f64 = 1e-13;

/// `h(z) = 1 - z / (e^z - 1)` and `h'(z)` for `z >= 0`.
#[inline]
fn ml_h_and_derivative(z: f64) -> (f64, f64) {
    if z.is_nan() || z >= 700.0 {
        return (1.0, 0.0); // z e^-z is below 1e-300
    }
    if z < 0.05 {
        // Bernoulli series; the first omitted terms are below 3e-17 relative here,
        // where the closed forms below would lose digits to cancellation.
        let z2 = z * z;
        let h = z * (0.5 + z * (-1.0 / 12.0 + z2 * (1.0 / 720.0 - z2 / 30240.0)));
        let dh = 0.5 + z * (-1.0 / 6.0 + z * (z * (1.0 / 180.0 - z2 / 5040.0)));
        (h, dh)
    } else {
        let e = z.exp_m1();
        let q = z / e;
        // h'(z) = (z e^z - (e^z - 1)) / (e^z - 1)^2 = q + (q - 1) / (e^z - 1)
        (1.0 - q, q + (q - 1.0) / e)
    }
}

#[cfg_attr(not(test), allow(dead_code))] // the public path goes through the histogram
/// Maximum-likelihood estimate of the distinct count behind the dense registers
/// `registers` of precision `p` (Ertl 2024, §5; see the derivation above). All empty
/// gives 0; if every register is saturated with both flags set (the likelihood then
/// grows without bound) the result is the finite estimate for "one such value short".
/// Returns NaN for a precision outside `MIN_P..=MAX_P`; never panics.
fn ml_estimate(p: u8, registers: &[u8]) -> f64 {
    ml_estimate_from_histogram(p, &register_histogram(registers))
}

/// How many registers hold each byte value. Four interleaved counters break the
/// store-to-load dependency when neighbouring registers are equal (e.g. all empty).
fn register_histogram(registers: &[u8]) -> [u32; 256] {
    let mut parts = [[0u32; 256]; 4];
    let mut chunks = registers.chunks_exact(4);
    for c in &mut chunks {
        parts[0][c[0] as usize] += 1;
        parts[1][c[1] as usize] += 1;
        parts[2][c[2] as usize] += 1;
        parts[3][c[3] as usize] += 1;
    }
    for &r in chunks.remainder() {
        parts[0][r as usize] += 1;
    }
    let mut out = parts[0];
    for part in &parts[1..] {
        for (o, &c) in out.iter_mut().zip(part) {
            *o += c;
        }
    }
    out
}

/// Distinct hashes certainly behind registers with this histogram: one per mask bit.
fn histogram_certain_count(histogram: &[u32; 256]) -> u64 {
    histogram
        .iter()
        .enumerate()
        .map(|(r, &c)| c as u64 * register_to_mask(r as u8).count_ones() as u64)
        .sum()
}

/// [`ml_estimate`] on the output of [`register_histogram`].
fn ml_estimate_from_histogram(p: u8, histogram: &[u32; 256]) -> f64 {
    let m_total: u64 = histogram.iter().map(|&c| c as u64).sum();
    if m_total == 0 {
        return 0.0;
    }
    if !(MIN_P..=MAX_P).contains(&p) {
        return f64::NAN;
    }
    let pu = p as u32;
    let top_exponent = 64 - pu; // exponent j of the rarest value(s)
                                // A in units of 2^-(64-p), exactly: at most 2^(64-p) per register.
    let mut a_units: u128 = 0;
    let mut beta = [0u64; 64];
    let units = |j: u32| 1u128 << (top_exponent - j.min(top_exponent));
    for (r, &count) in histogram.iter().enumerate() {
        if count == 0 {
            continue;
        }
        let count = count as u64;
        let mask = register_to_mask(r as u8);
        if mask == 0 {
            a_units += count as u128 * units(0); // nothing seen: rho sums to 1
            continue;
        }
        // Bit b of the mask is update value k = b + 2 - p; bits with k < 1 cannot occur
        // in a valid register and are ignored, so garbage cannot index out of range.
        let top = 63 - mask.leading_zeros();
        if top + 2 <= pu {
            a_units += count as u128 * units(0); // garbage below k = 1: as if empty
            continue;
        }
        let kmax = top + 2 - pu;
        beta[kmax.min(top_exponent) as usize] += count;
        if kmax <= top_exponent {
            // values above kmax unseen: sum of their rho is 2^-kmax
            a_units += count as u128 * units(kmax);
        }
        for k in [kmax - 1, kmax.wrapping_sub(2)] {
            if (1..kmax).contains(&k) {
                if mask >> (k + pu - 2) & 1 == 1 {
                    beta[k.min(top_exponent) as usize] += count;
                } else {
                    a_units += count as u128 * units(k);
                }
            }
        }
    }
    let terms: Vec<(f64, f64)> = beta
        .iter()
        .enumerate()
        .filter(|&(_, &b)| b > 0)
        .map(|(j, &b)| (b as f64, (-(j as f64)).exp2()))
        .collect();
    let b_total: f64 = terms.iter().map(|&(b, _)| b).sum();
    if b_total == 0.0 {
        return 0.0;
    }
    if a_units == 0 {
        // All registers saturated and full: pretend one of the rarest values is unseen.
        a_units = 1;
    }
    let a = a_units as f64 * (-(top_exponent as f64)).exp2();
    let m = m_total as f64;
    m * ml_solve(a, &terms, b_total) / (1.0 + ML_BIAS / m)
}

/// Root of `a x + sum b h(x w) = b_total` over `terms = (b, w)`, all positive (`a > 0`).
fn ml_solve(a: f64, terms: &[(f64, f64)], b_total: f64) -> f64 {
    // Lower bound from Jensen (h concave): G(x) <= a x + B h(x S / B) with
    // S = sum b w, which gives x* >= (B / S) ln(1 + S / a). Upper bound: h >= 0.
    let s: f64 = terms.iter().map(|&(b, w)| b * w).sum();
    let mut x = (b_total / s) * (s / a).ln_1p();
    let upper = b_total / a;
    if !(x > 0.0 && x.is_finite()) {
        x = f64::MIN_POSITIVE;
    }
    for _ in 0..200 {
        let (mut g, mut dg) = (a * x, a);
        for &(b, w) in terms {
            let (h, dh) = ml_h_and_derivative(x * w);
            g += b * h;
            dg += b * w * dh;
        }
        if g >= b_total {
            break; // at the root up to rounding
        }
        let next = (x + (b_total - g) / dg).min(upper);
        if next <= x || next.is_nan() {
            break; // no further progress in floating point
        }
        let step = next - x;
        x = next;
        if step <= x * ML_RELATIVE_TOLERANCE {
            break;
        }
    }
    x
}

// FGRA ("further generalized remaining area") estimator constants, Ertl 2024, §4 and
// hash4j `OptimalFGRAEstimator`. TAU minimises the variance factor V(tau); the ETAs are
// the optimal register weights for that tau. `tests::fgra_constants_follow_from_theory`
// recomputes all of them from the closed forms.
const FGRA_TAU: f64 = 0.8194911375910897;
const FGRA_V: f64 = 0.6118931496978437;
const FGRA_ETA: [f64; 4] = [
    4.663135422063788,
    2.1378502137958524,
    2.781144650979996,
    0.9824082545153715,
];

struct FgraTables {
    /// Weight of a register with kmax >= 3, indexed by `register - (4p + 4)`:
    /// `eta[flags] * 2^(-tau * kmax)`.
    register_weight: Vec<f64>,
    /// Per precision: `m^(1 + 1/tau) / (1 + V (1 + tau) / (2m))` (the denominator
    /// removes the first-order bias).
    factor: [f64; (MAX_P - MIN_P + 1) as usize],
    eta_x: f64,
    two_pow_minus_tau: f64,
    four_pow_minus_tau: f64,
}

fn fgra_tables() -> &'static FgraTables {
    static TABLES: OnceLock<FgraTables> = OnceLock::new();
    TABLES.get_or_init(|| {
        // kmax from 3 up to 64 - MIN_P (below the saturated level), 4 flag states each.
        let levels = (64 - MIN_P as usize) - 3 + 1;
        let register_weight = (0..4 * levels)
            .map(|j| FGRA_ETA[j & 3] * (-(FGRA_TAU) * ((j >> 2) + 3) as f64).exp2())
            .collect();
        let mut factor = [0.0; (MAX_P - MIN_P + 1) as usize];
        for (i, f) in factor.iter_mut().enumerate() {
            let m = (1u64 << (MIN_P as usize + i)) as f64;
            *f = m * m.powf(1.0 / FGRA_TAU) / (1.0 + FGRA_V * (1.0 + FGRA_TAU) / (2.0 * m));
        }
        FgraTables {
            register_weight,
            factor,
            eta_x: FGRA_ETA[0] - FGRA_ETA[1] - FGRA_ETA[2] + FGRA_ETA[3],
            two_pow_minus_tau: (-FGRA_TAU).exp2(),
            four_pow_minus_tau: (-2.0 * FGRA_TAU).exp2(),
        }
    })
}

/// Expected flag weight of a register whose `kmax - 1` value stays unseen with
/// probability `z` and `kmax - 2` with probability `z^2`:
/// `eta0 z^3 + eta1 z (1 - z^2) + eta2 z^2 (1 - z) + eta3 (1 - z)(1 - z^2)`.
fn psi(z: f64, t: &FgraTables) -> f64 {
    let [_, e1, e2, e3] = FGRA_ETA;
    e3 + z * ((e1 - e3) + z * ((e2 - e3) + z * t.eta_x))
}

/// Expected weight of an empty register given the small-range estimate `z`:
/// `(1/z) * sum_{j>=0} 2^(tau j) (z^(2^j) - z^(2^(j+1))) psi(z^(2^(j+1)))`.
fn sigma(z: f64, t: &FgraTables) -> f64 {
    if z <= 0.0 {
        return FGRA_ETA[3];
    }
    if z >= 1.0 {
        return f64::INFINITY;
    }
    let mut pow = z; // z^(2^j)
    let mut scale = 1.0; // 2^(tau j)
    let mut sum = 0.0;
    for _ in 0..200 {
        let next = pow * pow;
        let before = sum;
        sum += scale * (pow - next) * psi(next, t);
        if sum <= before {
            break;
        }
        pow = next;
        scale /= t.two_pow_minus_tau;
    }
    sum / z
}

/// Large-range counterpart of `sigma` for saturated registers (kmax = 65 - p), as a
/// series over the square roots `x^(1/2^j)` (Ertl 2024, appendix; hash4j `phi`).
fn phi(x: f64, t: &FgraTables) -> f64 {
    if x <= 0.0 {
        return 0.0;
    }
    if x >= 1.0 {
        let two_tau = 1.0 / t.two_pow_minus_tau;
        return FGRA_ETA[0] / (two_tau * (2.0 * two_tau - 1.0));
    }
    let mut current = x;
    let mut root = x.sqrt();
    let mut weight = t.four_pow_minus_tau / (2.0 - t.two_pow_minus_tau) / (1.0 + root);
    let mut psi_prev = psi(current, t);
    let mut sum = root * 2.0 * psi_prev * weight;
    for _ in 0..200 {
        current = root;
        root = current.sqrt();
        let psi_current = psi(current, t);
        weight *= t.two_pow_minus_tau / (1.0 + root);
        let before = sum;
        sum += root * (2.0 * psi_current - (current + root) * psi_prev) * weight;
        if sum <= before {
            break;
        }
        psi_prev = psi_current;
    }
    sum
}

/// FGRA estimate of a dense register array of precision `p`.
fn fgra_estimate(p: u8, regs: &[u8]) -> f64 {
    let t = fgra_tables();
    let m = regs.len() as f64;
    let base = 4 * p as u32 + 4; // smallest register value with kmax >= 3
                                 // Registers whose estimate needs the small-range correction: empty, kmax = 1,
                                 // kmax = 2 without / with value 1 seen.
    let (mut empty, mut k1, mut k2, mut k2_seen1) = (0u64, 0u64, 0u64, 0u64);
    // Saturated registers (kmax = 65 - p) by flags.
    let mut saturated = [0u64; 4];
    let mut sum = 0.0;
    for &r in regs {
        let r = r as u32;
        if r >= 252 {
            saturated[(r & 3) as usize] += 1;
        } else if r >= base {
            sum += t.register_weight[(r - base) as usize];
        } else if r == 0 {
            empty += 1;
        } else if r == base - 8 {
            k1 += 1;
        } else if r == base - 4 {
            k2 += 1;
        } else if r == base - 2 {
            k2_seen1 += 1;
        }
        // Other values are impossible at this precision; decode rejects them.
    }

    if empty + k1 + k2 + k2_seen1 > 0 {
        let (c0, c4, c8, c10) = (empty as f64, k1 as f64, k2 as f64, k2_seen1 as f64);
        // Small-range estimate of z = e^(-n/m), from a quadratic in z^(1/4).
        let alpha = m + 3.0 * (c0 + c4 + c8 + c10);
        let beta = m - c0 - c4;
        let gamma = 4.0 * c0 + 2.0 * c4 + 3.0 * c8 + c10;
        let fourth_root = ((beta * beta + 4.0 * alpha * gamma).sqrt() - beta) / (2.0 * alpha);
        let z = fourth_root.powi(4);
        let [e0, e1, e2, e3] = FGRA_ETA;
        if empty > 0 {
            sum += c0 * sigma(z, t);
        }
        if k1 > 0 {
            sum += c4 * t.two_pow_minus_tau * psi(z, t);
        }
        if k2 > 0 {
            sum += c8 * t.four_pow_minus_tau * (z * (e0 - e1) + e1);
        }
        if k2_seen1 > 0 {
            sum += c10 * t.four_pow_minus_tau * (z * (e2 - e3) + e3);
        }
    }

    let saturated_total: u64 = saturated.iter().sum();
    if saturated_total > 0 {
        let c = saturated.map(|x| x as f64);
        let [e0, e1, e2, e3] = FGRA_ETA;
        let alpha = m + 3.0 * (c[0] + c[1] + c[2] + c[3]);
        let beta = c[0] + c[1] + 2.0 * (c[2] + c[3]);
        let gamma = m + 2.0 * c[0] + c[2] - c[3];
        let z = (((beta * beta + 4.0 * alpha * gamma).sqrt() - beta) / (2.0 * alpha)).sqrt();
        let root_z = z.sqrt();
        let tp = t.two_pow_minus_tau;
        let mut s = phi(root_z, t) * saturated_total as f64;
        s += z * (1.0 + root_z) * (c[0] * e0 + c[1] * e1 + c[2] * e2 + c[3] * e3);
        s += root_z
            * ((c[0] + c[1]) * tp * (z * (e0 - e2) + e2)
                + (c[2] + c[3]) * tp * (z * (e1 - e3) + e3));
        let w = 65 - p as i32;
        sum += s * tp.powi(w) / ((1.0 + root_z) * (1.0 + z));
    }

    // sum = inf when all registers are empty, giving 0.
    t.factor[(p - MIN_P) as usize] * sum.powf(-1.0 / FGRA_TAU)
}

/// Standard normal quantile, P. J. Acklam's rational approximation (relative error
/// below 1.2e-9 on (0, 1)). `prob` must be in (0, 1).
pub fn inverse_normal_cdf(prob: f64) -> f64 {
    const A: [f64; 6] = [
        -3.969683028665376e+01,
        2.209460984245205e+02,
        -2.759285104469687e+02,
        1.38357751867269e+02,
        -3.066479806614716e+01,
        2.506628277459239e+00,
    ];
    const B: [f64; 5] = [
        -5.447609879822406e+01,
        1.615858368580409e+02,
        -1.556989798598866e+02,
        6.680131188771972e+01,
        -1.328068155288572e+01,
    ];
    const C: [f64; 6] = [
        -7.784894002430293e-03,
        -3.223964580411365e-01,
        -2.400758277161838e+00,
        -2.549732539343734e+00,
        4.374664141464968e+00,
        2.938163982698783e+00,
    ];
    const D: [f64; 4] = [
        7.784695709041462e-03,
        3.224671290700398e-01,
        2.445134137142996e+00,
        3.754408661907416e+00,
    ];
    const SPLIT: f64 = 0.02425;
    let tail = |q: f64| {
        (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    };
    if prob < SPLIT {
        tail((-2.0 * prob.ln()).sqrt())
    } else if prob <= 1.0 - SPLIT {
        let q = prob - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    } else {
        -tail((-2.0 * (1.0 - prob).ln()).sqrt())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn byte_merge_equals_mask_merge_for_every_valid_pair() {
        for p in MIN_P..=MAX_P {
            let valid: Vec<u8> = (0..=255u8).filter(|&r| register_is_valid(r, p)).collect();
            for &a in &valid {
                for &b in &valid {
                    let want = mask_to_register(register_to_mask(a) | register_to_mask(b));
                    assert_eq!(merge_register_pair(a, b), want, "p={p} a={a} b={b}");
                }
            }
        }
    }

    #[test]
    fn sparse_membership_and_sparse_into_dense_merge() {
        let mut sparse = Hll::new(14).unwrap();
        let hashes: Vec<u64> = (1..200u64)
            .map(|i| i.wrapping_mul(0x9E37_79B9_7F4A_7C15))
            .collect();
        for &h in &hashes[..100] {
            sparse.add_hash(h);
        }
        let enc = sparse.encode();
        assert!(hashes[..100].iter().all(|&h| sparse_contains_hash(&enc, h)));
        assert!(hashes[100..]
            .iter()
            .all(|&h| !sparse_contains_hash(&enc, h)));
        let mut dense = Hll::new(12).unwrap();
        for &h in &hashes[100..] {
            dense.add_hash(h);
        }
        dense.densify();
        let mut expected = dense.clone();
        expected.union(&sparse);
        let mut bytes = dense.encode();
        assert!(dense_merge_sparse_in_place(&mut bytes, &enc));
        assert_eq!(bytes, expected.encode());
        // a lower-precision sparse input would lower the result's precision: refused
        let low = Hll::new(10).unwrap().encode();
        assert!(!dense_merge_sparse_in_place(&mut bytes, &low));
    }

    #[test]
    fn with_precision_moves_sparse_both_ways_and_dense_only_down() {
        let mut h = Hll::new(10).unwrap();
        for i in 0..50u64 {
            h.add_hash(i.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        }
        let up = h.with_precision(14).unwrap();
        assert_eq!(up.precision(), 14);
        assert_eq!(up.with_precision(10).unwrap(), h);
        h.densify();
        assert!(h.with_precision(12).is_err());
        assert_eq!(h.with_precision(8).unwrap(), h.reduce_precision(8).unwrap());
    }

    use super::*;
    use proptest::prelude::*;

    /// Register straight from the definition: max update value and the two flags.
    fn register_from_values(values: &[u32], p: u8) -> u8 {
        let Some(&kmax) = values.iter().max() else {
            return 0;
        };
        let seen = |k: u32| k >= 1 && values.contains(&k);
        (4 * (kmax + p as u32 - 2)) as u8
            | if seen(kmax.wrapping_sub(1)) { 2 } else { 0 }
            | if seen(kmax.wrapping_sub(2)) { 1 } else { 0 }
    }

    /// Update value by walking the bits one at a time.
    fn naive_update(h: u64, p: u8) -> (usize, u32) {
        let index = (h >> (64 - p)) as usize;
        let mut k = 1;
        for bit in (0..64 - p as u32).rev() {
            if h >> bit & 1 == 1 {
                break;
            }
            k += 1;
        }
        (index, k)
    }

    #[test]
    fn register_packing_examples() {
        // Values pinned by hand from the layout (and matching hash4j's packing test).
        assert_eq!(register_to_mask(0), 0);
        assert_eq!(mask_to_register(0x4), 8);
        assert_eq!(mask_to_register(0x7), 11);
        assert_eq!(mask_to_register(0x8), 12);
        assert_eq!(mask_to_register(0xA), 13);
        assert_eq!(mask_to_register(1 << 63), 252);
        assert_eq!(mask_to_register(u64::MAX), 255);
        assert_eq!(register_to_mask(47), (1 << 11) | (1 << 10) | (1 << 9));
        assert_eq!(register_to_mask(255), 0xE000_0000_0000_0000);
        for r in 12..=255u8 {
            assert_eq!(mask_to_register(register_to_mask(r)), r);
        }
        // Garbage bytes must not panic anywhere in the register arithmetic.
        for r in 0..=255u8 {
            let _ = mask_to_register(register_to_mask(r) | 1 << 3);
        }
    }

    proptest! {
        #[test]
        fn hash_update_matches_bit_walk(h in any::<u64>(), shift in 0u32..64, p in MIN_P..=26u8) {
            // Also exercise long zero runs.
            let h = h >> shift;
            prop_assert_eq!(hash_register_update(h, p), naive_update(h, p));
        }

        #[test]
        fn token_derivation_equals_direct(h in any::<u64>(), shift in 0u32..64, p in MIN_P..=26u8) {
            let h = h >> shift | if shift == 0 { 0 } else { h << (64 - shift) >> 40 << 40 };
            let token = token_of_hash(h);
            prop_assert!(token_is_valid(token));
            prop_assert_eq!(token_register_update(token, p), hash_register_update(h, p));
        }

        #[test]
        fn masks_pack_to_definition(values in proptest::collection::vec(1u32..=61, 0..6), p in MIN_P..=MAX_P) {
            let values: Vec<u32> = values.into_iter().map(|k| k.min(65 - p as u32)).collect();
            let mask = values.iter().fold(0u64, |m, &k| m | 1 << (k + p as u32 - 2));
            let r = mask_to_register(mask);
            prop_assert_eq!(r, register_from_values(&values, p));
            prop_assert!(register_is_valid(r, p));
        }

        #[test]
        fn downsize_equals_direct(hashes in proptest::collection::vec(any::<u64>(), 0..300),
                                  q in 6u8..=12, d in 1u8..=4) {
            let p = q - d.min(q - MIN_P).max(1);
            let mut high = vec![0u8; 1 << q];
            let mut low = vec![0u8; 1 << p];
            for &h in &hashes {
                let h = h >> (h % 50); // many long zero runs
                let (i, b) = hash_update(h, q as u32);
                high[i] = mask_to_register(register_to_mask(high[i]) | 1 << b);
                let (i, b) = hash_update(h, p as u32);
                low[i] = mask_to_register(register_to_mask(low[i]) | 1 << b);
            }
            prop_assert_eq!(downsize_registers(&high, q, p), low);
        }
    }

    #[test]
    fn register_validity_rules() {
        for p in MIN_P..=MAX_P {
            let base = 4 * p as u32 - 4; // kmax = 1
            let valid: Vec<u32> = (0..=255u32)
                .filter(|&r| register_is_valid(r as u8, p))
                .collect();
            // empty, kmax=1 (no flags), kmax=2 (flag for k=1 only), then all values.
            let mut expected = vec![0, base, base + 4, base + 6];
            expected.extend(base + 8..=255);
            assert_eq!(valid, expected, "p={p}");
        }
    }

    // ---- FGRA constants from theory (Ertl 2024, §4; hash4j UltraLogLogTest) ----

    /// Lanczos approximation of the Gamma function (g = 7, n = 9), ~1e-15 relative.
    fn gamma(x: f64) -> f64 {
        const G: [f64; 9] = [
            0.999_999_999_999_809_9,
            676.520_368_121_885_1,
            -1_259.139_216_722_402_8,
            771.323_428_777_653_1,
            -176.615_029_162_140_6,
            12.507_343_278_686_905,
            -0.138_571_095_265_720_12,
            9.984_369_578_019_572e-6,
            1.505_632_735_149_311_6e-7,
        ];
        if x < 0.5 {
            return std::f64::consts::PI / ((std::f64::consts::PI * x).sin() * gamma(1.0 - x));
        }
        let x = x - 1.0;
        let mut a = G[0];
        let t = x + 7.5;
        for (i, g) in G.iter().enumerate().skip(1) {
            a += g / (x + i as f64);
        }
        (2.0 * std::f64::consts::PI).sqrt() * t.powf(x + 0.5) * (-t).exp() * a
    }

    /// omega_i(tau) for the four flag states (probability-weighted differences).
    fn omegas(tau: f64) -> [f64; 4] {
        let q = |b: f64| b.powf(-tau);
        [
            q(7.0) - q(8.0),
            q(3.0) - q(4.0) - q(7.0) + q(8.0),
            q(5.0) - q(6.0) - q(7.0) + q(8.0),
            1.0 - q(2.0) - q(3.0) + q(4.0) - q(5.0) + q(6.0) + q(7.0) - q(8.0),
        ]
    }

    fn eta_prefactor(tau: f64) -> f64 {
        let (w1, w2) = (omegas(tau), omegas(2.0 * tau));
        let s: f64 = (0..4).map(|i| w1[i] * w1[i] / w2[i]).sum();
        (std::f64::consts::LN_2 / gamma(tau)) / s
    }

    fn variance_factor(tau: f64) -> f64 {
        (eta_prefactor(tau) * gamma(2.0 * tau) / gamma(tau) - 1.0) / (tau * tau)
    }

    fn rel(a: f64, b: f64) -> f64 {
        ((a - b) / b).abs()
    }

    #[test]
    fn gamma_matches_reference_values() {
        assert!(rel(gamma(5.0), 24.0) < 1e-13);
        assert!(rel(gamma(0.5), std::f64::consts::PI.sqrt()) < 1e-13);
        // Values quoted in hash4j's UltraLogLogTest for Gamma(tau), Gamma(2 tau).
        assert!(rel(gamma(FGRA_TAU), 1.1430292525408) < 1e-12);
        assert!(rel(gamma(2.0 * FGRA_TAU), 0.8984962499780026) < 1e-13);
    }

    #[test]
    fn fgra_constants_follow_from_theory() {
        let (w1, w2) = (omegas(FGRA_TAU), omegas(2.0 * FGRA_TAU));
        let pre = eta_prefactor(FGRA_TAU);
        for i in 0..4 {
            let eta = pre * w1[i] / w2[i];
            assert!(
                rel(FGRA_ETA[i], eta) < 1e-12,
                "eta{i}: {} vs {eta}",
                FGRA_ETA[i]
            );
        }
        assert!(rel(FGRA_V, variance_factor(FGRA_TAU)) < 1e-12);
        // tau minimises the variance factor.
        for d in [1e-3, 1e-4] {
            assert!(variance_factor(FGRA_TAU - d) > FGRA_V);
            assert!(variance_factor(FGRA_TAU + d) > FGRA_V);
        }
        // Memory-variance product of 8-bit registers, and the RSE constant.
        assert!((8.0 * FGRA_V - 4.895).abs() < 1e-3);
        assert!((FGRA_V.sqrt() - 0.782).abs() < 1e-3);
    }

    #[test]
    fn fgra_tables_match_published_values() {
        let t = fgra_tables();
        // First entries of hash4j's REGISTER_CONTRIBUTIONS / ESTIMATION_FACTORS tables.
        assert!(rel(t.register_weight[0], 0.8484061093359406) < 1e-14);
        assert!(rel(t.register_weight[1], 0.38895829052007685) < 1e-14);
        assert!(rel(t.register_weight[7], 0.10128061935935387) < 1e-14);
        assert!(rel(t.factor[0], 455.6358404615186) < 1e-14); // p = 4
        assert!(rel(t.factor[8], 1.0479810199493326E8) < 1e-14); // p = 12
        assert!(rel(t.factor[14], 1.0730444972228585E12) < 1e-14); // p = 18
    }

    #[test]
    fn fgra_series_limits() {
        let t = fgra_tables();
        assert!(rel(sigma(1e-300, t), FGRA_ETA[3]) < 1e-9);
        assert!(sigma(1.0 - 1e-16, t).is_finite());
        let two_tau = (FGRA_TAU).exp2();
        let phi1 = FGRA_ETA[0] / (two_tau * (2.0 * two_tau - 1.0));
        assert!(rel(phi(1.0 - 1e-15, t), phi1) < 1e-6);
        // psi interpolates between "both lower values seen" and "neither".
        assert!(rel(psi(0.0, t), FGRA_ETA[3]) < 1e-15);
        assert!(rel(psi(1.0, t), FGRA_ETA[0]) < 1e-15);
    }

    // ---- maximum-likelihood estimator ----

    /// Hurwitz zeta `sum_{n>=0} (n + a)^-s` by direct summation plus Euler-Maclaurin tail.
    fn hurwitz_zeta(s: f64, a: f64) -> f64 {
        let n = 1000;
        let head: f64 = (0..n).rev().map(|i| (i as f64 + a).powf(-s)).sum();
        let x = n as f64 + a;
        head + x.powf(1.0 - s) / (s - 1.0) + x.powf(-s) / 2.0 + s * x.powf(-s - 1.0) / 12.0
            - s * (s + 1.0) * (s + 2.0) * x.powf(-s - 3.0) / 720.0
    }

    #[test]
    fn ml_constants_follow_from_theory() {
        let (z2, z3) = (hurwitz_zeta(2.0, 1.25), hurwitz_zeta(3.0, 1.25));
        assert!(rel(ML_V, std::f64::consts::LN_2 / z2) < 1e-13);
        assert!(rel(ML_BIAS, 1.5 * std::f64::consts::LN_2 * z3 / (z2 * z2)) < 1e-13);
        // The value hash4j quotes for sqrt(ln 2 / zeta(2, 5/4)).
        assert!(rel(ML_V.sqrt(), 0.7608621002725182) < 1e-15);
        // Memory-variance product of 8-bit registers: below FGRA's 4.895.
        assert!((8.0 * ML_V - 4.631).abs() < 1e-3);
        const { assert!(ML_V < FGRA_V) };
    }

    #[test]
    fn ml_h_branches_agree() {
        // Series (z < 0.05) and closed forms meet smoothly; limits are exact.
        for z in [0.049_999_999, 0.05, 0.050_000_001] {
            let (h, dh) = ml_h_and_derivative(z);
            let e = z.exp_m1();
            assert!(rel(h, 1.0 - z / e) < 1e-13, "{z}");
            assert!(rel(dh, (z * (e + 1.0) - e) / (e * e)) < 1e-11, "{z}");
        }
        assert_eq!(ml_h_and_derivative(0.0), (0.0, 0.5));
        let (h, dh) = ml_h_and_derivative(1e-300);
        assert!(rel(h, 5e-301) < 1e-15 && rel(dh, 0.5) < 1e-15);
        for z in [800.0, 1e300, f64::INFINITY] {
            let (h, dh) = ml_h_and_derivative(z);
            assert!(h == 1.0 && dh == 0.0, "{z}: {h} {dh}");
        }
        // Increasing and concave on a grid.
        let mut last = (0.0, 0.5);
        for i in 1..2000 {
            let cur = ml_h_and_derivative(i as f64 * 0.01);
            assert!(cur.0 >= last.0 && cur.1 <= last.1 + 1e-15, "{i}");
            last = cur;
        }
    }

    /// Derivative of the log-likelihood of the registers, straight from the model: every
    /// update value `k` has rate `x rho_k`; per register the top value is seen, the two
    /// below it are seen or not as the flags say, larger ones are unseen and smaller ones
    /// unknown. A seen value adds `ln(1 - e^(-x rho))`, an unseen one `-x rho`.
    fn log_likelihood_slope(p: u8, regs: &[u8], x: f64) -> f64 {
        let w = 65 - p as u32;
        let rho = |k: u32| (-(k.min(w - 1) as f64)).exp2();
        let mut slope = 0.0;
        for &r in regs {
            let mask = register_to_mask(r);
            let kmax = if mask == 0 {
                0
            } else {
                63 - mask.leading_zeros() + 2 - p as u32
            };
            for k in 1..=w {
                if mask >> (k + p as u32 - 2) & 1 == 1 {
                    slope += rho(k) / (x * rho(k)).exp_m1();
                } else if k + 2 >= kmax {
                    slope -= rho(k);
                }
            }
        }
        slope
    }

    /// Maximise the likelihood by bisecting its (decreasing) slope on `ln x`.
    fn brute_force_ml(p: u8, regs: &[u8]) -> f64 {
        let (mut lo, mut hi) = ((1e-9f64).ln(), (1e25f64).ln());
        for _ in 0..200 {
            let mid = (lo + hi) / 2.0;
            if log_likelihood_slope(p, regs, mid.exp()) > 0.0 {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        let m = regs.len() as f64;
        m * ((lo + hi) / 2.0).exp() / (1.0 + ML_BIAS / m)
    }

    fn random_registers(p: u8, n: usize, seed: u64, skew: bool) -> Vec<u8> {
        let mut regs = vec![0u8; 1 << p];
        let mut state = seed;
        for _ in 0..n {
            state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            // Skewed: long zero runs, up to saturated registers.
            let h = if skew { z >> (z % 64) | z << 63 } else { z };
            let (i, bit) = hash_update(h, p as u32);
            regs[i] = mask_to_register(register_to_mask(regs[i]) | 1 << bit);
        }
        regs
    }

    #[test]
    fn ml_solves_the_likelihood_equation() {
        for p in [4u8, 6, 8, 10] {
            for (i, n) in [1usize, 3, 20, 100, 1000, 30000].into_iter().enumerate() {
                for skew in [false, true] {
                    let regs = random_registers(p, n, (p as u64) << 8 | i as u64, skew);
                    let (ml, brute) = (ml_estimate(p, &regs), brute_force_ml(p, &regs));
                    assert!(
                        rel(ml, brute) < 1e-12,
                        "p={p} n={n} {skew}: {ml} vs {brute}"
                    );
                }
            }
        }
    }

    #[test]
    fn ml_edge_cases() {
        for p in MIN_P..=MAX_P {
            let m = 1usize << p;
            assert_eq!(ml_estimate(p, &vec![0; m]), 0.0);
            // Everything saturated with both flags: finite, and the largest estimate.
            let full = ml_estimate(p, &vec![255; m]);
            assert!(full.is_finite() && full > 1e18, "p={p}: {full}");
            let mut almost = vec![255u8; m];
            almost[0] = 254;
            let below = ml_estimate(p, &almost);
            assert!(below.is_finite() && below < full, "p={p}: {below} {full}");
            // One value seen: about one.
            let mut one = vec![0u8; m];
            one[0] = (4 * (p as u32 - 1)) as u8;
            assert!((ml_estimate(p, &one) - 1.0).abs() < 0.05, "p={p}");
        }
        assert_eq!(ml_estimate(10, &[]), 0.0);
        assert!(ml_estimate(3, &[1]).is_nan());
    }

    proptest! {
        #[test]
        fn ml_never_panics_on_any_bytes(regs in proptest::collection::vec(any::<u8>(), 16..=64),
                                        p in MIN_P..=MAX_P) {
            let e = ml_estimate(p, &regs);
            prop_assert!(e >= 0.0 && e.is_finite());
        }

        /// The ML estimate cannot fall when the registers gain information without
        /// forgetting any (the new mask contains the old one): then every register's
        /// set of known-unseen values shrinks and its set of seen values grows, which
        /// moves the likelihood equation's root up. (Jumps that push seen values below
        /// `kmax - 2` lose information and may lower it slightly, as with FGRA.)
        #[test]
        fn ml_monotone_without_forgetting(n in 0usize..3000, seed: u64, skew: bool,
                                          p in MIN_P..=10u8, index: usize, from in 0usize..256) {
            let mut regs = random_registers(p, n, seed, skew);
            let i = index % regs.len();
            let old = register_to_mask(regs[i]);
            let before = ml_estimate(p, &regs);
            // every valid successor of register i that keeps its bits
            for r in (from as u8..=255).filter(|&r| register_is_valid(r, p)) {
                let new = register_to_mask(r);
                if new & old == old && new != old {
                    let saved = regs[i];
                    regs[i] = r;
                    let after = ml_estimate(p, &regs);
                    prop_assert!(after >= before * (1.0 - 1e-9),
                        "p={} reg {} -> {}: {} -> {}", p, saved, r, before, after);
                    regs[i] = saved;
                }
            }
        }
    }

    #[test]
    fn inverse_normal_cdf_reference_values() {
        for (p, z) in [
            (0.5, 0.0),
            (0.975, 1.959963984540054),
            (0.95, 1.6448536269514722),
            (0.995, 2.5758293035489004),
            (0.999, 3.090232306167813),
            (0.01, -2.3263478740408408),
            (1e-10, -6.361340902404056),
            (0.8413447460685429, 1.0),
        ] {
            let got = inverse_normal_cdf(p);
            assert!(
                (got - z).abs() < 1e-8 * (1.0 + z.abs()),
                "p={p}: {got} vs {z}"
            );
        }
    }
}
