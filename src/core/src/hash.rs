//! The one hash every sketch uses: XXH3-64 with a seed over a canonical byte
//! encoding of the value (docs/SQL.md, "Hashing").
//!
//! * integers (int2/int4/int8) hash as their value widened to a little-endian `i64`,
//!   so `5::int2`, `5::int4` and `5::int8` collide on purpose;
//! * text / varchar hash their bytes, bytea its raw bytes, uuid its 16 bytes;
//! * every other type hashes its binary send form (the glue produces those bytes).
//!
//! The SQL seed is an `int4`; it is sign-extended to 64 bits (`-1` becomes
//! `0xFFFF_FFFF_FFFF_FFFF`). XXH3 has been frozen since xxHash 0.8.0, so these values
//! are stable across platforms and releases; `tests` pins golden values.

use xxhash_rust::xxh3::xxh3_64_with_seed;

/// Widen the SQL `int4` seed to the 64-bit XXH3 seed.
#[inline(always)]
pub fn seed64(seed: i32) -> u64 {
    seed as i64 as u64
}

/// Hash raw bytes (text, varchar, bytea, uuid, binary send forms).
#[inline(always)]
pub fn hash_bytes(bytes: &[u8], seed: i32) -> u64 {
    xxh3_64_with_seed(bytes, seed64(seed))
}

/// Hash any SQL integer (int2, int4, int8) through its canonical little-endian `i64`.
#[inline(always)]
pub fn hash_i64(value: i64, seed: i32) -> u64 {
    xxh3_64_with_seed(&value.to_le_bytes(), seed64(seed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xxh3_reference_value_of_empty_input() {
        // The published XXH3-64 value of "" with seed 0 (frozen since xxHash 0.8.0).
        assert_eq!(hash_bytes(b"", 0), 0x2D06_8005_38D3_94C2);
    }

    #[test]
    fn integers_of_every_width_hash_alike() {
        for v in [-5i64, 0, 1, 5, i16::MAX as i64, i32::MIN as i64] {
            let widened = hash_i64(v, 7);
            assert_eq!(widened, hash_bytes(&v.to_le_bytes(), 7));
        }
    }

    #[test]
    fn seed_changes_the_hash_and_is_sign_extended() {
        assert_ne!(hash_i64(1, 0), hash_i64(1, 1));
        assert_eq!(hash_bytes(b"abc", -1), xxh3_64_with_seed(b"abc", u64::MAX));
    }

    /// Golden values: if any of these move, every stored sketch in the wild would
    /// silently stop merging with new ones. They come from an independent XXH3
    /// implementation (the C xxHash library via Python's `xxhash` package), not from
    /// this crate; never edit them.
    #[test]
    fn golden_values() {
        let got = [
            hash_i64(0, 0),
            hash_i64(1, 0),
            hash_i64(-1, 0),
            hash_i64(1, 42),
            hash_bytes(b"hello", 0),
            hash_bytes(b"hello", 42),
        ];
        assert_eq!(got, GOLDEN);
    }

    const GOLDEN: [u64; 6] = [
        0xc77b_3abb_6f87_acd9,
        0x2fbc_5935_64db_792e,
        0x5111_c7e4_7d78_4413,
        0xe3ac_d5de_c7d7_d3fb,
        0x9555_e855_5c62_dcfd,
        0xbafa_072f_07db_7937,
    ];
}
