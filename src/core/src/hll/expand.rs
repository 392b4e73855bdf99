//! Expanding 4-bit codes into register bytes through a 16-entry table: the first pass
//! of decoding the planes form, and most of the time a union spends on a stored
//! well-filled sketch.
//!
//! The one place in the core with `unsafe`: with SSSE3 (every x86-64 CPU since 2006,
//! detected at run time) the byte shuffle `pshufb` looks up 16 codes per instruction.
//! Elsewhere, and as the reference the tests compare against, a scalar loop. The
//! unsafe function only reads `codes` and writes `out` within the lengths checked by
//! its caller.
#![allow(unsafe_code)]

/// `out[2i] = table[codes[i] & 15]`, `out[2i + 1] = table[codes[i] >> 4]` for every
/// `i < min(codes.len(), out.len() / 2)`.
pub(crate) fn expand_codes(codes: &[u8], table: &[u8; 16], out: &mut [u8]) {
    let n = codes.len().min(out.len() / 2);
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("ssse3") {
            // SAFETY: SSSE3 is present; `n` bounds every access in both slices.
            unsafe { expand_ssse3(&codes[..n], table, &mut out[..2 * n]) };
            return;
        }
    }
    expand_scalar(&codes[..n], table, &mut out[..2 * n]);
}

/// The portable loop; also the reference for [`expand_codes`]'s tests.
pub(crate) fn expand_scalar(codes: &[u8], table: &[u8; 16], out: &mut [u8]) {
    for (o, &b) in out.chunks_exact_mut(2).zip(codes) {
        o[0] = table[(b & 15) as usize];
        o[1] = table[(b >> 4) as usize];
    }
}

/// # Safety
/// The CPU must support SSSE3, and `out.len() >= 2 * codes.len()`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "ssse3")]
unsafe fn expand_ssse3(codes: &[u8], table: &[u8; 16], out: &mut [u8]) {
    use std::arch::x86_64::*;
    assert!(out.len() >= 2 * codes.len());
    let n = codes.len();
    // SAFETY (whole block): loads read 16 bytes at `i < n - 15` of `codes`, stores
    // write 32 bytes at `2i <= 2n - 32` of `out`; both in bounds by the loop condition
    // and the assertion. Unaligned loads and stores are used throughout.
    unsafe {
        let t = _mm_loadu_si128(table.as_ptr() as *const __m128i);
        let low = _mm_set1_epi8(0x0F);
        let mut i = 0;
        while i + 16 <= n {
            let c = _mm_loadu_si128(codes.as_ptr().add(i) as *const __m128i);
            let lo = _mm_shuffle_epi8(t, _mm_and_si128(c, low));
            let hi = _mm_shuffle_epi8(t, _mm_and_si128(_mm_srli_epi16(c, 4), low));
            let dst = out.as_mut_ptr().add(2 * i);
            _mm_storeu_si128(dst as *mut __m128i, _mm_unpacklo_epi8(lo, hi));
            _mm_storeu_si128(dst.add(16) as *mut __m128i, _mm_unpackhi_epi8(lo, hi));
            i += 16;
        }
        expand_scalar(&codes[i..], table, &mut out[2 * i..]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn simd_and_scalar_agree_on_every_code_and_length() {
        // (on x86-64 the fast path must be the SSSE3 one, or this compares the scalar
        // loop with itself; every x86-64 CPU since 2006 has SSSE3)
        #[cfg(target_arch = "x86_64")]
        assert!(std::is_x86_feature_detected!("ssse3"));
        let table: [u8; 16] = std::array::from_fn(|i| (i as u8).wrapping_mul(37) ^ 0xA5);
        // every byte value, at every length and offset around the 16-byte steps
        let codes: Vec<u8> = (0..=255u8).chain((0..=255u8).rev()).collect();
        for start in [0usize, 1, 7, 15, 16] {
            for len in [0usize, 1, 15, 16, 17, 31, 32, 33, 100, 255, 511 - start] {
                let c = &codes[start..start + len];
                let mut fast = vec![0u8; 2 * len + 3];
                let mut slow = vec![0u8; 2 * len + 3];
                expand_codes(c, &table, &mut fast);
                expand_scalar(c, &table, &mut slow);
                assert_eq!(fast, slow, "start {start} len {len}");
                // and what the expansion means, independently: low nibble first
                for (i, &b) in c.iter().enumerate() {
                    assert_eq!(fast[2 * i], table[(b & 15) as usize]);
                    assert_eq!(fast[2 * i + 1], table[(b >> 4) as usize]);
                }
                assert!(fast[2 * len..].iter().all(|&b| b == 0));
            }
        }
    }
}
