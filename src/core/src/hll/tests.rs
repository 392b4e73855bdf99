//! Unit, property and golden-byte tests of the UltraLogLog sketch.
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
    let enc = sparse.encode_state();
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
    let mut bytes = dense.encode_state();
    assert!(dense_merge_sparse_in_place(&mut bytes, &enc));
    assert_eq!(bytes, expected.encode_state());
    // a lower-precision sparse input would lower the result's precision: refused
    let low = Hll::new(10).unwrap().encode_state();
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

#[test]
fn decode_marks_are_no_register() {
    // The planes decoder marks escapes and unnamed secondary codes with these bytes in
    // the register array: no precision may hold them as a register.
    for p in MIN_P..=MAX_P {
        for mark in [codec::ESCAPE_MARK, codec::UNNAMED_MARK] {
            assert!(!register_is_valid(mark, p), "p={p} mark={mark}");
        }
    }
}

#[test]
fn planes_with_escapes_in_many_blocks_decode_and_merge_exactly() {
    // Wide register distributions (many escapes: secondary codes and raw bytes) at
    // precisions whose registers span several 64-register blocks; then the escape
    // count off by one either way, and one raw byte too many or too few, are refused.
    for (p, seed) in [(7u8, 1u64), (8, 2), (10, 3), (12, 4)] {
        // every register drawn from all the values valid at p: a flat distribution
        let valid: Vec<u8> = (0..=255u8).filter(|&r| register_is_valid(r, p)).collect();
        let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        let regs: Vec<u8> = (0..1usize << p)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                valid[(state % valid.len() as u64) as usize]
            })
            .collect();
        let planes = codec::encode_planes(p, &regs);
        let decoded = Hll::decode(&planes).unwrap();
        let mut want = vec![1u8, 2, p];
        want.extend(&regs);
        assert_eq!(decoded.encode_state(), want, "p={p}");
        let mut state = vec![1u8, 2, p];
        state.extend(vec![0u8; 1 << p]);
        assert!(dense_merge_v2_in_place(&mut state, &planes), "p={p}");
        assert_eq!(state, want, "p={p}");
        // The escape count is the varint after both dictionaries.
        let n1 = planes[3] as usize;
        let n2 = planes[4 + n1] as usize;
        let at = 5 + n1 + n2;
        let (e, used) = codec::read_varint(&planes[at..]).unwrap();
        assert!(e > 64, "p={p}: {e} escapes");
        for bad_e in [e - 1, e + 1] {
            let mut bad = planes[..at].to_vec();
            let mut count = Vec::new();
            codec::push_varint(&mut count, bad_e);
            bad.extend(&count);
            let rest = &planes[at + used..];
            let second_len = (e as usize).div_ceil(2);
            let bad_second = (bad_e as usize).div_ceil(2);
            // keep the codes, resize the secondary section to the claimed count
            bad.extend(&rest[..(1 << p) / 2]);
            let second = &rest[(1 << p) / 2..(1 << p) / 2 + second_len];
            let mut s2 = second.to_vec();
            s2.resize(bad_second, 0);
            if bad_e % 2 == 1 {
                // zero padding nibble, so only the count is wrong
                let last = s2.len() - 1;
                s2[last] &= 0x0F;
            }
            bad.extend(&s2);
            bad.extend(&rest[(1 << p) / 2 + second_len..]);
            assert!(Hll::decode(&bad).is_err(), "p={p} escapes {bad_e} of {e}");
            let mut state = vec![1u8, 2, p];
            state.extend(vec![0u8; 1 << p]);
            assert!(
                !dense_merge_v2_in_place(&mut state, &bad),
                "p={p} escapes {bad_e}"
            );
        }
        // raw bytes: one more (a copy of the last) or one fewer
        let raw_count = {
            let second = &planes[at + used + (1 << p) / 2..][..(e as usize).div_ceil(2)];
            (0..e as usize)
                .filter(|&j| (second[j / 2] >> (4 * (j % 2))) & 15 == 15)
                .count()
        };
        assert!(raw_count > 0, "p={p}: no raw escape to test");
        let mut longer = planes.clone();
        longer.push(*planes.last().unwrap());
        assert!(Hll::decode(&longer).is_err(), "p={p}: extra raw byte");
        assert!(
            Hll::decode(&planes[..planes.len() - 1]).is_err(),
            "p={p}: raw byte missing"
        );
    }
}
