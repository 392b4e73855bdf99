//! The hll union's vector loops, with runtime-detected instruction sets: expanding
//! 4-bit codes into register bytes through a 16-entry table (SSSE3 `pshufb`, 16 codes
//! per instruction), replacing the bytes equal to a mark, in order, by the next of a
//! list of values (AVX-512 `vpexpandb`, 64 registers per step; elsewhere the marks
//! found 64 at a time with SSE2), and merging register arrays (the plain loop compiled
//! a second time for AVX2, 32 registers per step). Together most of the time a union
//! spends on a stored well-filled sketch.
//!
//! The one place in the core with `unsafe`: each fast path is checked against the
//! portable loop beside it, which is also what other CPUs run. The unsafe functions
//! only read and write within the lengths checked by their callers.
#![allow(unsafe_code)]

use super::registers::merge_register_pair;

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

/// Bit `i` of the result is set where `block[i] == mark`, for a block of at most 64
/// bytes.
#[inline]
pub(crate) fn mark_mask(block: &[u8], mark: u8) -> u64 {
    #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
    {
        if let Ok(block) = <&[u8; 64]>::try_from(block) {
            // SAFETY: SSE2 is part of x86-64; the four loads read the 64 bytes.
            return unsafe { mark_mask_sse2(block, mark) };
        }
    }
    mark_mask_scalar(block, mark)
}

/// The portable [`mark_mask`], and its tests' reference.
pub(crate) fn mark_mask_scalar(block: &[u8], mark: u8) -> u64 {
    debug_assert!(block.len() <= 64);
    block
        .iter()
        .enumerate()
        .fold(0u64, |bits, (i, &b)| bits | u64::from(b == mark) << i)
}

/// # Safety
/// The target must have SSE2 (every x86-64 one does, unless built without it).
#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
unsafe fn mark_mask_sse2(block: &[u8; 64], mark: u8) -> u64 {
    use std::arch::x86_64::*;
    // SAFETY: loads at offsets 0, 16, 32 and 48 of a 64-byte array.
    unsafe {
        let m = _mm_set1_epi8(mark as i8);
        let mut bits = 0u64;
        for k in 0..4 {
            let v = _mm_loadu_si128(block.as_ptr().add(16 * k) as *const __m128i);
            let eq = _mm_movemask_epi8(_mm_cmpeq_epi8(v, m)) as u16;
            bits |= u64::from(eq) << (16 * k);
        }
        bits
    }
}

/// Replace each byte of `regs` equal to `mark`, in order, by the next of `values`.
/// Returns how many were replaced, or None (with `regs` partly filled) when `regs`
/// holds more marks than there are values.
pub(crate) fn fill_marks(regs: &mut [u8], mark: u8, values: &[u8]) -> Option<usize> {
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx512bw") && std::is_x86_feature_detected!("avx512vbmi2")
        {
            // SAFETY: both features are present.
            return unsafe { fill_marks_avx512(regs, mark, values) };
        }
    }
    fill_marks_scalar(regs, mark, values)
}

/// The portable [`fill_marks`], 64 registers at a time through [`mark_mask`]; also
/// the tests' reference.
pub(crate) fn fill_marks_scalar(regs: &mut [u8], mark: u8, values: &[u8]) -> Option<usize> {
    let mut next = 0usize;
    for block in regs.chunks_mut(64) {
        let mut bits = mark_mask(block, mark);
        while bits != 0 {
            block[bits.trailing_zeros() as usize] = *values.get(next)?;
            bits &= bits - 1;
            next += 1;
        }
    }
    Some(next)
}

/// [`fill_marks`] with AVX-512's byte expansion (`vpexpandb`): per 64 registers one
/// compare and one load that places the next values at the marks, with no branch per
/// mark (whose count per block the scalar loop mispredicts).
///
/// # Safety
/// The CPU must support AVX512BW and AVX512_VBMI2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512bw,avx512vbmi2")]
unsafe fn fill_marks_avx512(regs: &mut [u8], mark: u8, values: &[u8]) -> Option<usize> {
    use std::arch::x86_64::*;
    let m = _mm512_set1_epi8(mark as i8);
    let mut next = 0usize;
    let mut blocks = regs.chunks_exact_mut(64);
    for block in &mut blocks {
        // SAFETY: the load and store cover the block's 64 bytes; the expanding load
        // reads exactly popcount(k) bytes at `next`, in bounds by the check before it
        // (masked-off lanes are not read).
        unsafe {
            let v = _mm512_loadu_si512(block.as_ptr() as *const _);
            let k = _mm512_cmpeq_epi8_mask(v, m);
            let n = k.count_ones() as usize;
            if next + n > values.len() {
                return None;
            }
            let filled = _mm512_mask_expandloadu_epi8(v, k, values.as_ptr().add(next) as *const i8);
            _mm512_storeu_si512(block.as_mut_ptr() as *mut _, filled);
            next += n;
        }
    }
    let rest = blocks.into_remainder();
    Some(next + fill_marks_scalar(rest, mark, values.get(next..)?)?)
}

/// `dst[i] = merge_register_pair(dst[i], src[i])` for every `i` of the shorter slice.
pub(crate) fn merge_registers(dst: &mut [u8], src: &[u8]) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx2") {
            // SAFETY: AVX2 is present; the loop is the portable one, bounds-checked.
            unsafe { merge_registers_avx2(dst, src) };
            return;
        }
    }
    merge_registers_scalar(dst, src);
}

/// The portable [`merge_registers`]: branch-free bytes, so the compiler vectorises it
/// for whatever the build targets (SSE2 on x86-64); also the tests' reference.
#[inline(always)]
pub(crate) fn merge_registers_scalar(dst: &mut [u8], src: &[u8]) {
    for (d, &s) in dst.iter_mut().zip(src) {
        *d = merge_register_pair(*d, s);
    }
}

/// # Safety
/// The CPU must support AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn merge_registers_avx2(dst: &mut [u8], src: &[u8]) {
    merge_registers_scalar(dst, src);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mark_mask_agrees_with_the_byte_comparison() {
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let mut block = [0u8; 64];
        for round in 0..2000 {
            for b in block.iter_mut() {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                // few distinct values, so marks are common
                *b = (state % 5) as u8;
            }
            for len in [64usize, 63, 17, 1, 0] {
                let mark = (round % 5) as u8;
                let fast = mark_mask(&block[..len], mark);
                let expect = (0..len)
                    .filter(|&i| block[i] == mark)
                    .fold(0u64, |b, i| b | 1 << i);
                assert_eq!(fast, expect, "round {round} len {len}");
                assert_eq!(mark_mask_scalar(&block[..len], mark), expect);
            }
        }
    }

    #[test]
    fn fill_marks_agrees_with_the_scalar_loop() {
        // The AVX-512 loop is called directly where the CPU has it (and the test says
        // when it could not be), so it is compared with the scalar loop, not with itself.
        #[cfg(target_arch = "x86_64")]
        let avx512 = std::is_x86_feature_detected!("avx512bw")
            && std::is_x86_feature_detected!("avx512vbmi2");
        #[cfg(not(target_arch = "x86_64"))]
        let avx512 = false;
        if !avx512 {
            eprintln!("fill_marks: no AVX-512 VBMI2 here; only the scalar loop is tested");
        }
        let fast_fill = |regs: &mut [u8], values: &[u8]| {
            #[cfg(target_arch = "x86_64")]
            if avx512 {
                // SAFETY: both features were detected above.
                return unsafe { fill_marks_avx512(regs, 1, values) };
            }
            fill_marks(regs, 1, values)
        };
        let mut state = 0x2545_F491_4F6C_DD1Du64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for round in 0..3000 {
            let len = [16usize, 32, 64, 100, 4096][round % 5];
            // marks at a density of 1/2 to 1/64
            let density = 1 + next() % 32;
            let regs: Vec<u8> = (0..len)
                .map(|_| {
                    if next() % (2 * density) == 0 {
                        1
                    } else {
                        3 + (next() % 50) as u8
                    }
                })
                .collect();
            let marks = regs.iter().filter(|&&b| b == 1).count();
            // as many values as marks, one fewer (an error), or more
            let extra = (next() % 3) as isize - 1;
            let n = (marks as isize + extra).max(0) as usize;
            let values: Vec<u8> = (0..n).map(|_| 100 + (next() % 100) as u8).collect();
            let (mut fast, mut slow) = (regs.clone(), regs.clone());
            let (f, s) = (
                fast_fill(&mut fast, &values),
                fill_marks_scalar(&mut slow, 1, &values),
            );
            assert_eq!(f, s, "round {round}");
            if n >= marks {
                assert_eq!(f, Some(marks));
                assert_eq!(fast, slow);
                // and what it means, independently: the marks in order take the values
                let mut taken = values.iter();
                for (r, &o) in fast.iter().zip(&regs) {
                    assert_eq!(*r, if o == 1 { *taken.next().unwrap() } else { o });
                }
            } else {
                assert_eq!(f, None);
            }
        }
    }

    #[test]
    fn merge_fast_path_agrees_with_the_pairwise_merge() {
        // The AVX2 loop called directly where the CPU has it, else the dispatcher (then
        // the scalar loop, said so). Every pair of bytes (a, b) once, in an order that
        // mixes both (pair j = (j mod 256, j * 257 / 256 mod 256)... by stepping 257
        // through the 65,536 pairs), then slices at several offsets and at lengths
        // around the vector widths, so heads and tails of every width run.
        #[cfg(target_arch = "x86_64")]
        let avx2 = std::is_x86_feature_detected!("avx2");
        #[cfg(not(target_arch = "x86_64"))]
        let avx2 = false;
        if !avx2 {
            eprintln!("merge_registers: no AVX2 here; only the portable loop is tested");
        }
        let merge = |dst: &mut [u8], src: &[u8]| {
            #[cfg(target_arch = "x86_64")]
            if avx2 {
                // SAFETY: AVX2 was detected above.
                return unsafe { merge_registers_avx2(dst, src) };
            }
            merge_registers(dst, src)
        };
        let pairs: Vec<(u8, u8)> = (0..65_536usize)
            .map(|j| (j * 257) % 65_536)
            .map(|x| ((x >> 8) as u8, x as u8))
            .collect();
        let mut seen = vec![false; 65_536];
        for &(a, b) in &pairs {
            seen[(a as usize) << 8 | b as usize] = true;
        }
        assert!(seen.iter().all(|&s| s), "every pair is in the list");
        let mut cases = vec![(0usize, pairs.len())];
        for start in [0usize, 1, 13, 100, 40_000] {
            for len in [1usize, 31, 32, 33, 63, 64, 65, 95, 4096, 4099] {
                cases.push((start, len));
            }
        }
        for (start, len) in cases {
            let (mut fast, src): (Vec<u8>, Vec<u8>) =
                pairs[start..start + len].iter().copied().unzip();
            let expect: Vec<u8> = fast
                .iter()
                .zip(&src)
                .map(|(&a, &b)| merge_register_pair(a, b))
                .collect();
            merge(&mut fast, &src);
            assert_eq!(fast, expect, "start {start} len {len}");
        }
    }

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
