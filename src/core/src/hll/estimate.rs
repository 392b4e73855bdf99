//! Estimators: linear counting over sparse tokens, the maximum-likelihood estimator
//! (Ertl 2024, §5) that `Hll::estimate` uses, and the normal quantile for the bounds.

use super::*;

// ---------------------------------------------------------------------------------
// Estimators
// ---------------------------------------------------------------------------------

/// Linear counting over the distinct 26-bit token indices.
pub(crate) fn sparse_estimate(tokens: &[u32]) -> f64 {
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
pub(crate) const ML_V: f64 = 0.5789111356311075;
/// First-order relative bias of the ML estimate is `ML_BIAS / m`, with
/// `ML_BIAS = 3/2 ln 2 zeta(3, 5/4) / zeta(2, 5/4)^2` (hash4j); divided out.
pub(crate) const ML_BIAS: f64 = 0.48147376527720065;
/// Newton stops once a step is below this relative size. Convergence is quadratic, so
/// the result is then within rounding of the root; being this tight (rather than a
/// fraction of the RSE) keeps the estimate a deterministic, smooth function of the
/// registers.
pub(crate) const ML_RELATIVE_TOLERANCE: f64 = 1e-13;

/// `h(z) = 1 - z / (e^z - 1)` and `h'(z)` for `z >= 0`.
#[inline]
pub(crate) fn ml_h_and_derivative(z: f64) -> (f64, f64) {
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
pub(crate) fn ml_estimate(p: u8, registers: &[u8]) -> f64 {
    ml_estimate_from_histogram(p, &register_histogram(registers))
}

/// How many registers hold each byte value. Four interleaved counters break the
/// store-to-load dependency when neighbouring registers are equal (e.g. all empty).
pub(crate) fn register_histogram(registers: &[u8]) -> [u32; 256] {
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
pub(crate) fn histogram_certain_count(histogram: &[u32; 256]) -> u64 {
    histogram
        .iter()
        .enumerate()
        .map(|(r, &c)| c as u64 * register_to_mask(r as u8).count_ones() as u64)
        .sum()
}

/// [`ml_estimate`] on the output of [`register_histogram`].
pub(crate) fn ml_estimate_from_histogram(p: u8, histogram: &[u32; 256]) -> f64 {
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
pub(crate) fn ml_solve(a: f64, terms: &[(f64, f64)], b_total: f64) -> f64 {
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
