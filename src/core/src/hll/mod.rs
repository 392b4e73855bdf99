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
//! # Files
//! `registers.rs`: register and token arithmetic and the in-place hot paths on stored
//! bytes; `estimate.rs`: the maximum-likelihood estimator (what SQL uses) and the
//! confidence bounds; `fgra.rs`: the paper's FGRA estimator, kept as the reference the
//! accuracy benchmark and the fuzz targets compare against; `tests.rs`.
//!
//! # Stored forms, see docs/FORMAT.md
//! `[version][kind][p][payload]`. Version 2 (`codec.rs`) is what functions return and
//! tables store: compressed registers or Rice-coded tokens. Version 1 (`0x01 sparse |
//! 0x02 dense`, raw tokens or registers) is the aggregates' working state, updated in
//! place, and what releases before 0.3.0 stored; it is read forever.

use crate::error::{CoreError, Result};

mod codec;
mod estimate;
mod fgra;
mod registers;
mod simd;
#[cfg(test)]
mod tests;

pub use codec::{dense_merge_v2_in_place, FORMAT_VERSION_2, KIND_LIST, KIND_PLANES, V2_SPARSE_MAX};
pub use estimate::*;
use fgra::*;
pub use registers::*;
use simd::merge_registers;

/// Smallest supported precision (16 registers).
pub const MIN_P: u8 = 4;
/// Largest supported precision (262144 registers, 256 KiB dense).
pub const MAX_P: u8 = 18;
/// Format version byte of version 1: the aggregates' in-place state (and the stored
/// form before 0.3.0). [`FORMAT_VERSION_2`] is the compressed stored form.
pub const FORMAT_VERSION: u8 = 1;
/// Kind byte of the sparse (token list) form.
pub const KIND_SPARSE: u8 = 0x01;
/// Kind byte of the dense (register array) form.
pub const KIND_DENSE: u8 = 0x02;
/// Bytes before the payload: version, kind, precision.
pub const HEADER_LEN: usize = 3;

/// Hash bits kept verbatim in a token (the register index for any `p <= 26`).
pub(crate) const TOKEN_INDEX_BITS: u32 = 26;
/// Largest `k26`: all 38 low hash bits zero.
pub(crate) const TOKEN_MAX_K: u32 = 64 - TOKEN_INDEX_BITS + 1;
/// Cells of the linear-counting estimate used by the sparse form (one per 26-bit index).
pub(crate) const SPARSE_CELLS: f64 = (1u64 << TOKEN_INDEX_BITS) as f64;

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

pub(crate) fn check_precision(p: i64) -> Result<u8> {
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

    /// The dense form of a token list longer than [`V2_SPARSE_MAX`]: what storing it
    /// makes of it. The estimates use it, so a sketch estimates the same whether or not
    /// it has been stored.
    fn as_stored(&self) -> Option<Hll> {
        match &self.repr {
            Repr::Sparse(tokens) if tokens.len() > V2_SPARSE_MAX => Some(Hll {
                p: self.p,
                repr: Repr::Dense(tokens_to_registers(tokens, self.p)),
            }),
            _ => None,
        }
    }

    /// Distinct values that are certainly present: every token (sparse) or every seen
    /// update value of every register (dense) stems from a different hash.
    pub fn certain_lower_bound(&self) -> u64 {
        if let Some(stored) = self.as_stored() {
            return stored.certain_lower_bound();
        }
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
    /// Either way the result is never below [`Hll::certain_lower_bound`]. A token list
    /// longer than [`V2_SPARSE_MAX`] is estimated as the registers it is stored as.
    pub fn estimate(&self) -> f64 {
        if let Some(stored) = self.as_stored() {
            return stored.estimate();
        }
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
        if let Some(stored) = self.as_stored() {
            return stored.estimate_fgra();
        }
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
        if let Some(stored) = self.as_stored() {
            return stored.bounds(confidence);
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

    /// Length of [`Hll::encode_state`]'s output.
    pub fn state_len(&self) -> usize {
        HEADER_LEN
            + match &self.repr {
                Repr::Sparse(t) => 4 * t.len(),
                Repr::Dense(r) => r.len(),
            }
    }

    /// The canonical stored form, version 2 (see docs/FORMAT.md): sparse while there
    /// are at most [`V2_SPARSE_MAX`] tokens, otherwise the registers, compressed. A
    /// sparse sketch with more tokens is stored dense (its estimate then comes from the
    /// registers), so the same set may read back a little differently from how an
    /// aggregate that never stored it estimates it.
    pub fn encode(&self) -> Vec<u8> {
        match &self.repr {
            Repr::Sparse(tokens) if tokens.len() <= V2_SPARSE_MAX => {
                codec::encode_sparse(self.p, tokens)
            }
            Repr::Sparse(tokens) => {
                codec::encode_dense(self.p, &tokens_to_registers(tokens, self.p))
            }
            Repr::Dense(regs) => codec::encode_dense(self.p, regs),
        }
    }

    /// The version-1 form: raw tokens or registers, which the aggregates update in place.
    pub fn encode_state(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.state_len());
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
        if version != FORMAT_VERSION && version != FORMAT_VERSION_2 {
            return Err(bad(format!(
                "unsupported hll format version {version} (this build reads versions 1 and 2)"
            )));
        }
        if !(MIN_P..=MAX_P).contains(&p) {
            return Err(bad(format!(
                "hll precision {p} is out of range {MIN_P}..{MAX_P}"
            )));
        }
        if version == FORMAT_VERSION_2 {
            return codec::decode(bytes);
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

    /// One line for `hll_print` of the stored bytes `encoded` (validated by
    /// [`Hll::decode`]), e.g. `ULL v2, p=12, sparse, 10 tokens, 42 bytes`.
    pub fn describe(encoded: &[u8]) -> Result<String> {
        let h = Hll::decode(encoded)?;
        let what = match (&h.repr, encoded[0], encoded[1]) {
            (Repr::Sparse(t), _, _) => format!("sparse, {} tokens", t.len()),
            (Repr::Dense(r), FORMAT_VERSION_2, KIND_PLANES) => {
                format!("dense (planes), {} registers", r.len())
            }
            (Repr::Dense(r), FORMAT_VERSION_2, _) => format!(
                "dense (list), {} of {} registers set",
                r.iter().filter(|&&x| x != 0).count(),
                r.len()
            ),
            (Repr::Dense(r), _, _) => format!("dense, {} registers", r.len()),
        };
        Ok(format!(
            "ULL v{}, p={}, {what}, {} bytes",
            encoded[0],
            h.p,
            encoded.len()
        ))
    }
}
