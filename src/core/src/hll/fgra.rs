//! The FGRA estimator (Ertl 2024, §4), not used by SQL: the accuracy benchmark and the
//! fuzz targets compare the ML estimator against it, and its tests recompute every
//! constant from theory.

use super::*;
use std::sync::OnceLock;

// FGRA ("further generalized remaining area") estimator constants, Ertl 2024, §4 and
// hash4j `OptimalFGRAEstimator`. TAU minimises the variance factor V(tau); the ETAs are
// the optimal register weights for that tau. `tests::fgra_constants_follow_from_theory`
// recomputes all of them from the closed forms.
pub(crate) const FGRA_TAU: f64 = 0.8194911375910897;
pub(crate) const FGRA_V: f64 = 0.6118931496978437;
pub(crate) const FGRA_ETA: [f64; 4] = [
    4.663135422063788,
    2.1378502137958524,
    2.781144650979996,
    0.9824082545153715,
];

pub(crate) struct FgraTables {
    /// Weight of a register with kmax >= 3, indexed by `register - (4p + 4)`:
    /// `eta[flags] * 2^(-tau * kmax)`.
    pub(crate) register_weight: Vec<f64>,
    /// Per precision: `m^(1 + 1/tau) / (1 + V (1 + tau) / (2m))` (the denominator
    /// removes the first-order bias).
    pub(crate) factor: [f64; (MAX_P - MIN_P + 1) as usize],
    pub(crate) eta_x: f64,
    pub(crate) two_pow_minus_tau: f64,
    pub(crate) four_pow_minus_tau: f64,
}

pub(crate) fn fgra_tables() -> &'static FgraTables {
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
pub(crate) fn psi(z: f64, t: &FgraTables) -> f64 {
    let [_, e1, e2, e3] = FGRA_ETA;
    e3 + z * ((e1 - e3) + z * ((e2 - e3) + z * t.eta_x))
}

/// Expected weight of an empty register given the small-range estimate `z`:
/// `(1/z) * sum_{j>=0} 2^(tau j) (z^(2^j) - z^(2^(j+1))) psi(z^(2^(j+1)))`.
pub(crate) fn sigma(z: f64, t: &FgraTables) -> f64 {
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
pub(crate) fn phi(x: f64, t: &FgraTables) -> f64 {
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
pub(crate) fn fgra_estimate(p: u8, regs: &[u8]) -> f64 {
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
