//! Format version 2: the compressed stored form of `hll` (docs/FORMAT.md).
//!
//! Aggregates keep version 1 (raw 8-bit registers or 32-bit tokens) as their working
//! state, updated in place; a value is compressed into version 2 when it leaves an
//! aggregate or a function returns it. Three payloads, chosen by content alone:
//!
//! * **sparse** (kind `0x01`, at most [`V2_SPARSE_MAX`] tokens): the token list with
//!   the 26-bit index gaps Rice-coded and `k26 - 1` in unary;
//! * **list** (kind `0x03`): the nonzero registers, index gaps Rice-coded, values as
//!   bytes. Small for lightly filled sketches;
//! * **planes** (kind `0x02`): every register as a 4-bit code into a per-sketch
//!   dictionary of its 15 most frequent values; code 15 escapes to a second 4-bit
//!   dictionary of the next 15, whose code 15 escapes to a raw byte. Well-filled
//!   UltraLogLog registers have about 4.0 bits of entropy; this costs about 4.5 bits
//!   and decodes with two table lookups per register pair, no bit-serial state.
//!
//! Dense sketches take whichever of list and planes is shorter (ties: planes), so the
//! same registers always give the same bytes. Rice coding: R. F. Rice, "Some practical
//! universal noiseless coding techniques", JPL 79-22 (1979); the parameter is chosen
//! by trying every width and keeping the shortest.

use super::*;

/// Format version byte of the compressed stored form.
pub const FORMAT_VERSION_2: u8 = 2;
/// Kind byte of the version-2 dense form as 4-bit planes.
pub const KIND_PLANES: u8 = 0x02;
/// Kind byte of the version-2 dense form as a list of nonzero registers.
pub const KIND_LIST: u8 = 0x03;
/// Most tokens a version-2 sparse value holds; larger token lists are stored dense.
/// 100, so that sets of up to 100 values stay exact to +-1; beyond that the register
/// list is smaller at every precision up to 14 (a token costs about 23 bits there).
pub const V2_SPARSE_MAX: usize = 100;
/// The escape code of both dictionaries.
const ESCAPE: u8 = 15;

// ---------------------------------------------------------------------------------
// Bits
// ---------------------------------------------------------------------------------

/// Little-endian bit writer: the first bit written is bit 0 of byte 0.
struct BitWriter {
    out: Vec<u8>,
    acc: u64,
    used: u32,
}

impl BitWriter {
    fn new(out: Vec<u8>) -> BitWriter {
        BitWriter {
            out,
            acc: 0,
            used: 0,
        }
    }

    /// Append the low `n <= 56` bits of `value`.
    fn bits(&mut self, value: u64, n: u32) {
        assert!(n <= 56);
        if n == 0 {
            return;
        }
        self.acc |= (value & ((1u64 << n) - 1)) << self.used;
        self.used += n;
        while self.used >= 8 {
            self.out.push(self.acc as u8);
            self.acc >>= 8;
            self.used -= 8;
        }
    }

    /// `q` one bits, then a zero.
    fn unary(&mut self, q: u64) {
        let mut left = q;
        while left >= 32 {
            self.bits(u32::MAX as u64, 32);
            left -= 32;
        }
        self.bits((1u64 << left) - 1, left as u32 + 1);
    }

    fn rice(&mut self, value: u64, b: u32) {
        self.unary(value >> b);
        self.bits(value, b);
    }

    /// Pad the last byte with zero bits.
    fn finish(mut self) -> Vec<u8> {
        if self.used > 0 {
            self.out.push(self.acc as u8);
        }
        self.out
    }
}

/// Bits needed to Rice-code `values` with parameter `b`.
fn rice_cost(values: &[u64], b: u32) -> u64 {
    values.iter().map(|&v| (v >> b) + 1 + b as u64).sum()
}

/// The Rice parameter in `0..=max_b` that codes `values` in the fewest bits (smallest
/// parameter on ties), and that many bits.
fn best_rice(values: &[u64], max_b: u32) -> (u32, u64) {
    (0..=max_b)
        .map(|b| (b, rice_cost(values, b)))
        .min_by_key(|&(b, cost)| (cost, b))
        .unwrap_or((0, 0))
}

/// Little-endian bit reader over a copy of the stream padded with eight zero bytes, so
/// every read is one unaligned 64-bit load.
struct BitReader {
    bytes: Vec<u8>,
    len: usize, // in bits
    pos: usize, // in bits, never past `len`
}

impl BitReader {
    fn new(stream: &[u8]) -> BitReader {
        let mut bytes = Vec::with_capacity(stream.len() + 8);
        bytes.extend_from_slice(stream);
        bytes.extend_from_slice(&[0u8; 8]);
        BitReader {
            bytes,
            len: 8 * stream.len(),
            pos: 0,
        }
    }

    /// The next (up to) 57 bits, zero past the end, without consuming them.
    #[inline(always)]
    fn peek(&self) -> u64 {
        let start = self.pos / 8;
        let word = self
            .bytes
            .get(start..start + 8)
            .and_then(|s| <[u8; 8]>::try_from(s).ok())
            .unwrap_or([0u8; 8]);
        u64::from_le_bytes(word) >> (self.pos % 8)
    }

    #[inline(always)]
    fn bits_left(&self) -> usize {
        self.len - self.pos
    }

    /// The next `n <= 32` bits; None past the end.
    #[inline(always)]
    fn bits(&mut self, n: u32) -> Option<u64> {
        if self.bits_left() < n as usize {
            return None;
        }
        let value = self.peek() & ((1u64 << n) - 1);
        self.pos += n as usize;
        Some(value)
    }

    /// Count one bits up to the terminating zero; None past `limit` ones or the end.
    #[inline(always)]
    fn unary(&mut self, limit: u64) -> Option<u64> {
        let mut q = 0u64;
        loop {
            let ones = (!self.peek()).trailing_zeros().min(56) as u64;
            if ones as usize >= self.bits_left() {
                return None;
            }
            q += ones;
            if q > limit {
                return None;
            }
            self.pos += ones as usize;
            if ones < 56 {
                self.pos += 1; // the zero
                return Some(q);
            }
        }
    }

    /// Count one bits up to a zero or until `cap` ones (then no zero follows).
    #[inline(always)]
    fn unary_capped(&mut self, cap: u64) -> Option<u64> {
        let ones = ((!self.peek()).trailing_zeros() as u64).min(cap);
        let used = ones + (ones < cap) as u64;
        if used as usize > self.bits_left() {
            return None;
        }
        self.pos += used as usize;
        Some(ones)
    }

    #[inline(always)]
    fn rice(&mut self, b: u32, max_value: u64) -> Option<u64> {
        let q = self.unary(max_value >> b)?;
        let value = (q << b) | self.bits(b)?;
        (value <= max_value).then_some(value)
    }

    /// True when only zero padding bits of the last byte remain.
    fn at_clean_end(&self) -> bool {
        self.bits_left() < 8 && self.peek() == 0
    }
}

pub(super) fn push_varint(out: &mut Vec<u8>, mut v: u32) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// LEB128 u32, canonical (no redundant zero groups); returns the value and its length.
pub(super) fn read_varint(bytes: &[u8]) -> Option<(u32, usize)> {
    let mut v = 0u64;
    for (i, &b) in bytes.iter().enumerate().take(5) {
        v |= ((b & 0x7F) as u64) << (7 * i);
        if b & 0x80 == 0 {
            if (i > 0 && b == 0) || v > u32::MAX as u64 {
                return None;
            }
            return Some((v as u32, i + 1));
        }
    }
    None
}

// ---------------------------------------------------------------------------------
// Encoding
// ---------------------------------------------------------------------------------

fn header(kind: u8, p: u8) -> Vec<u8> {
    vec![FORMAT_VERSION_2, kind, p]
}

/// The sparse payload: count, Rice parameter, then per token the index gap and `k26-1`.
pub(crate) fn encode_sparse(p: u8, tokens: &[u32]) -> Vec<u8> {
    debug_assert!(tokens.len() <= V2_SPARSE_MAX);
    let mut prev = 0u64;
    let gaps: Vec<u64> = tokens
        .iter()
        .map(|&t| {
            let index = (t >> 6) as u64;
            let gap = index - prev;
            prev = index;
            gap
        })
        .collect();
    let (b, _) = best_rice(&gaps, TOKEN_INDEX_BITS);
    let mut out = header(KIND_SPARSE, p);
    out.push(tokens.len() as u8);
    out.push(b as u8);
    let mut w = BitWriter::new(out);
    for (&t, &gap) in tokens.iter().zip(&gaps) {
        w.rice(gap, b);
        let k = (t & 63) as u64;
        if k == TOKEN_MAX_K as u64 {
            w.bits((1u64 << (k - 1)) - 1, k as u32 - 1); // the largest k: no terminator
        } else {
            w.unary(k - 1);
        }
    }
    w.finish()
}

/// The list payload (docs/FORMAT.md): the nonzero registers as index gaps in bytes
/// (a 255 adds 255 and continues) and values as 4-bit codes into a dictionary of the
/// 15 most frequent, code 15 escaping to a raw byte. Byte-aligned so a union decodes
/// it with one load per field and no bit-serial state.
fn encode_list(p: u8, regs: &[u8]) -> Vec<u8> {
    let set: Vec<u8> = regs.iter().copied().filter(|&r| r != 0).collect();
    let ranked = ranked_values(&set);
    let dictionary = &ranked[..ranked.len().min(15)];
    let mut code = [ESCAPE; 256];
    for (i, &v) in dictionary.iter().enumerate() {
        code[v as usize] = i as u8;
    }
    let mut gaps = Vec::with_capacity(set.len());
    let mut next = 0usize;
    for (i, &r) in regs.iter().enumerate() {
        if r != 0 {
            let mut gap = i - next;
            while gap >= 255 {
                gaps.push(255);
                gap -= 255;
            }
            gaps.push(gap as u8);
            next = i + 1;
        }
    }
    let mut out = header(KIND_LIST, p);
    push_varint(&mut out, set.len() as u32);
    push_varint(&mut out, gaps.len() as u32);
    out.push(dictionary.len() as u8);
    out.extend_from_slice(dictionary);
    out.extend_from_slice(&gaps);
    let mut raw = Vec::new();
    for pair in set.chunks(2) {
        let c: Vec<u8> = pair.iter().map(|&v| code[v as usize]).collect();
        out.push(c[0] | (c.get(1).copied().unwrap_or(0) << 4));
        raw.extend(pair.iter().filter(|&&v| code[v as usize] == ESCAPE));
    }
    out.extend_from_slice(&raw);
    out
}

/// Register values by falling frequency, ties by value: the dictionaries' order.
fn ranked_values(regs: &[u8]) -> Vec<u8> {
    let mut counts = [0usize; 256];
    for &r in regs {
        counts[r as usize] += 1;
    }
    let mut values: Vec<u8> = (0..=255u8).filter(|&v| counts[v as usize] > 0).collect();
    values.sort_by_key(|&v| (std::cmp::Reverse(counts[v as usize]), v));
    values
}

/// The planes payload (see the module comment and docs/FORMAT.md).
pub(super) fn encode_planes(p: u8, regs: &[u8]) -> Vec<u8> {
    let ranked = ranked_values(regs);
    let primary = &ranked[..ranked.len().min(15)];
    let secondary = &ranked[primary.len()..ranked.len().min(30)];
    let mut code1 = [ESCAPE; 256];
    let mut code2 = [ESCAPE; 256];
    for (i, &v) in primary.iter().enumerate() {
        code1[v as usize] = i as u8;
    }
    for (i, &v) in secondary.iter().enumerate() {
        code2[v as usize] = i as u8;
    }
    let mut second_codes = Vec::new();
    let mut raw = Vec::new();
    let mut codes = Vec::with_capacity(regs.len() / 2);
    for pair in regs.chunks_exact(2) {
        let (a, b) = (code1[pair[0] as usize], code1[pair[1] as usize]);
        codes.push(a | (b << 4));
        for (&r, c) in pair.iter().zip([a, b]) {
            if c == ESCAPE {
                let c2 = code2[r as usize];
                second_codes.push(c2);
                if c2 == ESCAPE {
                    raw.push(r);
                }
            }
        }
    }
    let mut out = header(KIND_PLANES, p);
    out.push(primary.len() as u8);
    out.extend_from_slice(primary);
    out.push(secondary.len() as u8);
    out.extend_from_slice(secondary);
    push_varint(&mut out, second_codes.len() as u32);
    out.extend_from_slice(&codes);
    for pair in second_codes.chunks(2) {
        out.push(pair[0] | (pair.get(1).copied().unwrap_or(0) << 4));
    }
    out.extend_from_slice(&raw);
    out
}

/// The canonical version-2 form of registers at precision `p`: the shorter of list and
/// planes (planes on a tie).
pub(crate) fn encode_dense(p: u8, regs: &[u8]) -> Vec<u8> {
    let planes = encode_planes(p, regs);
    let list = encode_list(p, regs);
    if list.len() < planes.len() {
        list
    } else {
        planes
    }
}

// ---------------------------------------------------------------------------------
// Decoding
// ---------------------------------------------------------------------------------

fn bad(message: String) -> CoreError {
    CoreError::invalid_binary(message)
}

/// Decode a version-2 value (header already checked: version 2, precision in range).
pub(crate) fn decode(bytes: &[u8]) -> Result<Hll> {
    let (kind, p) = (bytes[1], bytes[2]);
    match kind {
        KIND_SPARSE => Ok(Hll {
            p,
            repr: Repr::Sparse(decode_sparse_tokens(bytes)?),
        }),
        KIND_PLANES | KIND_LIST => {
            let mut regs = vec![0u8; 1usize << p];
            decode_registers_into(bytes, &mut regs)?;
            Ok(Hll {
                p,
                repr: Repr::Dense(regs),
            })
        }
        other => Err(bad(format!("unknown hll kind byte 0x{other:02x}"))),
    }
}

/// The tokens of a version-2 sparse value, validated.
fn decode_sparse_tokens(bytes: &[u8]) -> Result<Vec<u32>> {
    let body = &bytes[HEADER_LEN..];
    let (&count, rest) = body
        .split_first()
        .ok_or_else(|| bad("sparse hll value ends before its token count".into()))?;
    let count = count as usize;
    if count > V2_SPARSE_MAX {
        return Err(bad(format!(
            "sparse hll has {count} tokens, more than the {V2_SPARSE_MAX} allowed"
        )));
    }
    let (&b, stream) = rest
        .split_first()
        .ok_or_else(|| bad("sparse hll value ends before its Rice parameter".into()))?;
    if b as u32 > TOKEN_INDEX_BITS {
        return Err(bad(format!(
            "sparse hll Rice parameter {b} is out of range"
        )));
    }
    let mut r = BitReader::new(stream);
    let max_index = (1u64 << TOKEN_INDEX_BITS) - 1;
    let mut tokens: Vec<u32> = Vec::with_capacity(count);
    let mut index = 0u64;
    for i in 0..count {
        let truncated = || bad(format!("sparse hll token {i} is truncated or malformed"));
        let gap = r.rice(b as u32, max_index).ok_or_else(truncated)?;
        index += gap;
        if index > max_index {
            return Err(bad(format!(
                "sparse hll token {i} lies past the index range"
            )));
        }
        let k = 1 + r
            .unary_capped(TOKEN_MAX_K as u64 - 1)
            .ok_or_else(truncated)?;
        let token = ((index as u32) << 6) | k as u32;
        if let Some(&prev) = tokens.last() {
            if token <= prev {
                return Err(bad(format!(
                    "sparse hll tokens are not strictly ascending at token {i}"
                )));
            }
        }
        tokens.push(token);
    }
    if !r.at_clean_end() {
        return Err(bad(
            "sparse hll value has bytes or nonzero padding after its last token".into(),
        ));
    }
    Ok(tokens)
}

/// Decode the registers of a version-2 dense value into `regs` (`2^p` bytes, zeroed
/// by the caller), validating the structure and every register value.
fn decode_registers_into(bytes: &[u8], regs: &mut [u8]) -> Result<()> {
    match bytes[1] {
        KIND_PLANES => decode_planes(bytes, regs),
        _ => decode_list(bytes, 1usize << bytes[2], |i, v| regs[i] = v),
    }
}

/// Decode a list value of `m` registers, calling `put(index, value)` for each nonzero
/// register in ascending index order once its value is validated.
fn decode_list(bytes: &[u8], m: usize, mut put: impl FnMut(usize, u8)) -> Result<()> {
    let p = bytes[2];
    let body = &bytes[HEADER_LEN..];
    let malformed = |what: &str| bad(format!("hll register list has a malformed {what}"));
    let (count, used) = read_varint(body).ok_or_else(|| malformed("count"))?;
    let body = &body[used..];
    let (gap_len, used) = read_varint(body).ok_or_else(|| malformed("gap length"))?;
    let body = &body[used..];
    let (count, gap_len) = (count as usize, gap_len as usize);
    if count > m {
        return Err(bad(format!(
            "hll register list has {count} registers, more than {m}"
        )));
    }
    let (&n1, body) = body.split_first().ok_or_else(|| malformed("dictionary"))?;
    let n1 = n1 as usize;
    // An empty list has an empty dictionary; any other one 1..=15 values.
    if (count == 0) != (n1 == 0) || n1 > 15 || body.len() < n1 {
        return Err(malformed("dictionary"));
    }
    let (dictionary, body) = body.split_at(n1);
    let mut seen = [false; 256];
    for &v in dictionary {
        if v == 0 || !register_is_valid(v, p) || std::mem::replace(&mut seen[v as usize], true) {
            return Err(bad(format!(
                "hll register list dictionary value {v} is repeated or impossible at precision {p}"
            )));
        }
    }
    if gap_len
        .checked_add(count.div_ceil(2))
        .is_none_or(|need| body.len() < need)
    {
        return Err(bad("hll register list is truncated".into()));
    }
    let (gaps, body) = body.split_at(gap_len);
    let (codes, raw) = body.split_at(count.div_ceil(2));
    if count % 2 == 1 && codes[count / 2] >> 4 != 0 {
        return Err(bad("hll register list code padding is not zero".into()));
    }
    // No gap of 255 (which continues into the next byte): a fold without an early exit,
    // so it vectorises; `all` stopped at each byte.
    if gap_len == count && gaps.iter().fold(0u8, |any, &g| any | u8::from(g == 255)) == 0 {
        return decode_list_short_gaps(p, m, dictionary, &seen, gaps, codes, raw, put);
    }
    let mut gap_iter = gaps.iter();
    let mut raw_iter = raw.iter();
    let mut index = 0usize;
    for i in 0..count {
        let mut gap = 0usize;
        loop {
            let g = *gap_iter
                .next()
                .ok_or_else(|| bad(format!("hll register list gap {i} is truncated")))?;
            gap += g as usize;
            if g != 255 {
                break;
            }
        }
        index += gap;
        if index >= m {
            return Err(bad(format!(
                "hll register list entry {i} lies past register {m}"
            )));
        }
        let c = (codes[i / 2] >> (4 * (i % 2))) & 15;
        let v = if (c as usize) < n1 {
            dictionary[c as usize]
        } else if c == ESCAPE {
            escaped_value(&mut raw_iter, &seen, p)?
        } else {
            return Err(bad(format!("hll register list code {c} names no value")));
        };
        put(index, v);
        index += 1;
    }
    if gap_iter.next().is_some() || raw_iter.next().is_some() {
        return Err(bad(
            "hll register list has bytes after its last entry".into()
        ));
    }
    Ok(())
}

/// The next raw byte of a list, for an escaped code: a register value that is possible at
/// precision `p` and not in the dictionary (`seen`), so each value has one encoding.
#[inline(always)]
fn escaped_value(raw: &mut std::slice::Iter<'_, u8>, seen: &[bool; 256], p: u8) -> Result<u8> {
    let v = *raw
        .next()
        .ok_or_else(|| bad("hll register list is truncated".into()))?;
    if v == 0 || seen[v as usize] || !register_is_valid(v, p) {
        return Err(bad(format!(
            "hll register list raw value {v} is in the dictionary or impossible at precision {p}"
        )));
    }
    Ok(v)
}

/// Whether the 4-bit codes in `codes` (two a byte) include one that names no value of
/// a dictionary of `n` (1..=15) values: `n..=14`; 15 is the escape. Folded without an
/// early exit, so it vectorises.
fn holds_unnamed_code(codes: &[u8], n: usize) -> bool {
    let n = n as u8;
    let unnamed = |c: u8| u8::from(c != ESCAPE && c >= n);
    n < 15
        && codes
            .iter()
            .fold(0u8, |any, &b| any | unnamed(b & 15) | unnamed(b >> 4))
            != 0
}

/// [`decode_list`] when every gap is one byte (no gap of 255 or more): the union's
/// common case, with the checks done up front so the loop does one entry per few
/// instructions.
#[allow(clippy::too_many_arguments)]
fn decode_list_short_gaps(
    p: u8,
    m: usize,
    dictionary: &[u8],
    seen: &[bool; 256],
    gaps: &[u8],
    codes: &[u8],
    raw: &[u8],
    mut put: impl FnMut(usize, u8),
) -> Result<()> {
    let count = gaps.len();
    let last = gaps.iter().map(|&g| g as usize).sum::<usize>() + count;
    if last > m {
        return Err(bad(format!("hll register list lies past register {m}")));
    }
    let n1 = dictionary.len();
    if holds_unnamed_code(codes, n1) {
        return Err(bad(
            "hll register list holds a code that names no value".into()
        ));
    }
    let mut table = [0u8; 16];
    table[..n1].copy_from_slice(dictionary);
    let mut raw_iter = raw.iter();
    let mut index = 0usize;
    // Two entries per code byte (low nibble first); a last odd entry has a zero high
    // nibble, checked by the caller, and no gap.
    for (pair, &code_byte) in gaps.chunks(2).zip(codes) {
        for (&g, c) in pair.iter().zip([code_byte & 15, code_byte >> 4]) {
            index += g as usize;
            let mut v = table[c as usize];
            if c == ESCAPE {
                v = escaped_value(&mut raw_iter, seen, p)?;
            }
            put(index, v);
            index += 1;
        }
    }
    if raw_iter.next().is_some() {
        return Err(bad(
            "hll register list has bytes after its last entry".into()
        ));
    }
    Ok(())
}

/// Bytes no register holds at any precision (upper six bits `kmax + p - 2 = 0`, with
/// a flag; `decode_marks_are_no_register` checks every precision): what an escape
/// expands to before its value is known, and what an unnamed secondary code expands to.
pub(super) const ESCAPE_MARK: u8 = 1;
pub(super) const UNNAMED_MARK: u8 = 2;

/// Decode a planes value into `regs` (`2^p` bytes): every register through the primary
/// dictionary, escapes (code 15) as [`ESCAPE_MARK`]; then the escapes' values in order,
/// the secondary codes expanded the same way and raw bytes for their code 15; then each
/// mark in `regs`, found 64 registers at a time, takes the next value. On an error
/// `regs` holds a partial result.
fn decode_planes(bytes: &[u8], regs: &mut [u8]) -> Result<()> {
    let p = bytes[2];
    let m = regs.len();
    let body = &bytes[HEADER_LEN..];
    let short = || bad("hll planes value is truncated".into());
    let (&n1, rest) = body.split_first().ok_or_else(short)?;
    let n1 = n1 as usize;
    if !(1..=15).contains(&n1) || rest.len() < n1 {
        return Err(bad(format!(
            "hll planes primary dictionary has {n1} values, not 1..=15"
        )));
    }
    let (primary, rest) = rest.split_at(n1);
    let (&n2, rest) = rest.split_first().ok_or_else(short)?;
    let n2 = n2 as usize;
    if n2 > 15 || rest.len() < n2 {
        return Err(bad(format!(
            "hll planes secondary dictionary has {n2} values, more than 15"
        )));
    }
    let (secondary, rest) = rest.split_at(n2);
    let mut seen = [false; 256];
    for &v in primary.iter().chain(secondary) {
        if std::mem::replace(&mut seen[v as usize], true) {
            return Err(bad(format!(
                "hll planes dictionaries hold the value {v} twice"
            )));
        }
        if !register_is_valid(v, p) {
            return Err(bad(format!(
                "hll planes dictionary value {v} is impossible at precision {p}"
            )));
        }
    }
    let (escapes, used) = read_varint(rest)
        .ok_or_else(|| bad("hll planes value has a malformed escape count".into()))?;
    let escapes = escapes as usize;
    let rest = &rest[used..];
    if escapes > m || rest.len() < m / 2 + escapes.div_ceil(2) {
        return Err(short());
    }
    let (codes, rest) = rest.split_at(m / 2);
    let (second, raw) = rest.split_at(escapes.div_ceil(2));
    if escapes % 2 == 1 && second[escapes / 2] >> 4 != 0 {
        return Err(bad("hll planes secondary padding is not zero".into()));
    }
    if holds_unnamed_code(codes, n1) {
        let at = codes
            .iter()
            .position(|&b| holds_unnamed_code(&[b], n1))
            .unwrap_or_default();
        return Err(bad(format!(
            "hll planes byte {at} holds a code that names no value"
        )));
    }
    let mut table = [0u8; 16];
    table[..n1].copy_from_slice(primary);
    table[ESCAPE as usize] = ESCAPE_MARK;
    super::simd::expand_codes(codes, &table, regs);
    // The escapes' values, in register order.
    let mut values = vec![0u8; 2 * second.len()];
    let mut table = [UNNAMED_MARK; 16];
    table[..n2].copy_from_slice(secondary);
    table[ESCAPE as usize] = ESCAPE_MARK;
    super::simd::expand_codes(second, &table, &mut values);
    let values = &mut values[..escapes];
    let mut raw_iter = raw.iter();
    // (a raw byte or a defect is rare: the loop runs only when a vectorised look sees one)
    let marked = |v: u8| u8::from(v.wrapping_sub(ESCAPE_MARK) <= UNNAMED_MARK - ESCAPE_MARK);
    if values.iter().fold(0u8, |any, &v| any | marked(v)) != 0 {
        for (j, v) in values.iter_mut().enumerate() {
            if *v == UNNAMED_MARK {
                let c = (second[j / 2] >> (4 * (j % 2))) & 15;
                return Err(bad(format!("hll planes secondary code {c} names no value")));
            }
            if *v == ESCAPE_MARK {
                *v = *raw_iter.next().ok_or_else(short)?;
                if seen[*v as usize] || !register_is_valid(*v, p) {
                    return Err(bad(format!(
                        "hll planes raw value {v} is in a dictionary or impossible at precision {p}"
                    )));
                }
            }
        }
    }
    let raw_left = raw_iter.len();
    // Each escape mark takes the next value.
    let Some(next) = super::simd::fill_marks(regs, ESCAPE_MARK, values) else {
        return Err(bad(
            "hll planes value has more escapes than it counts".into()
        ));
    };
    if next != escapes || raw_left != 0 {
        return Err(bad(format!(
            "hll planes value counts {escapes} escapes and {} raw bytes, but holds {next} and {}",
            raw.len(),
            raw.len() - raw_left
        )));
    }
    Ok(())
}

/// Merge a version-2 dense or sparse value `src` into the version-1 dense state `dst`
/// in place, when the result keeps `dst`'s precision. Returns false when `src` is not
/// such a value (nothing changed) or is malformed (then `dst` may be partly merged):
/// either way the caller takes the general path, which decodes `src` again and raises
/// the defect, so a partly merged state is never used.
pub fn dense_merge_v2_in_place(dst: &mut [u8], src: &[u8]) -> bool {
    let Some(p) = dense_precision(dst) else {
        return false;
    };
    if src.len() < HEADER_LEN || src[0] != FORMAT_VERSION_2 || !(MIN_P..=MAX_P).contains(&src[2]) {
        return false;
    }
    match src[1] {
        KIND_PLANES if src[2] == p => {
            // Decoded whole into a buffer kept per thread (every register is written),
            // then merged by the vectorised loop: faster than merging as it decodes.
            thread_local! {
                static SCRATCH: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
            }
            SCRATCH.with(|scratch| {
                let mut scratch = scratch.borrow_mut();
                let m = 1usize << p;
                if scratch.len() < m {
                    scratch.resize(m, 0);
                }
                let regs = &mut scratch[..m];
                if decode_planes(src, regs).is_err() {
                    return false;
                }
                merge_registers(&mut dst[HEADER_LEN..], regs);
                true
            })
        }
        // A malformed list may have merged a prefix before failing: harmless, since
        // the general path then raises an error and the state is discarded.
        KIND_LIST if src[2] == p => {
            let regs = &mut dst[HEADER_LEN..];
            let m = regs.len();
            // A long list decodes faster into a scratch array merged by the vectorised
            // loop than register by register.
            if read_varint(&src[HEADER_LEN..]).is_some_and(|(count, _)| count as usize > m / 8) {
                let mut scratch = vec![0u8; m];
                if decode_list(src, m, |i, v| scratch[i] = v).is_err() {
                    return false;
                }
                merge_registers(regs, &scratch);
                return true;
            }
            decode_list(src, m, |i, v| {
                if let Some(r) = regs.get_mut(i) {
                    // A value whose maximum is 3 or more below the register's is past
                    // its two history bits and changes nothing: in a union over many
                    // rows nearly every entry, so a predictable branch skips the merge.
                    if (v >> 2) + 3 > (*r >> 2) {
                        *r = merge_register_pair(*r, v);
                    }
                }
            })
            .is_ok()
        }
        KIND_SPARSE if src[2] >= p => match decode_sparse_tokens(src) {
            Ok(tokens) => {
                add_tokens_to_registers(&mut dst[HEADER_LEN..], &tokens, p);
                true
            }
            Err(_) => false,
        },
        _ => false,
    }
}
