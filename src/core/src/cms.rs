//! Count-Min sketch (G. Cormode and S. Muthukrishnan, "An improved data stream summary:
//! the count-min sketch and its applications", J. Algorithms 55(1), 2005).
//!
//! `depth` rows of `width` 64-bit counters. Adding `count` occurrences of a value adds
//! `count` to one counter per row; the estimate is the minimum over the rows. With
//! `width = ceil(e / eps)` and `depth = ceil(ln(1 / delta))` the estimate is never below
//! the true count and exceeds it by more than `eps * total` with probability at most
//! `delta`.
//!
//! Row indexes come from the single 64-bit value hash by double hashing (A. Kirsch and
//! M. Mitzenmacher, "Less hashing, same performance", ESA 2006):
//!
//! ```text
//! h1 = h & 0xFFFF_FFFF          (low 32 bits)
//! h2 = (h >> 32) | 1            (high 32 bits, forced odd so it is never 0)
//! index(row i) = (h1 + i * h2) mod width,   i = 0 .. depth-1
//! ```
//!
//! evaluated exactly (as if in unbounded integers; the code steps `h1 mod width` by
//! `h2 mod width` with a conditional subtraction, which is the same value and cannot
//! overflow). This mapping is part of the stored-format contract: sketches built with a
//! different mapping would merge into nonsense, so changing it needs a new format version.
//!
//! Stored form v2 (see docs/FORMAT.md), all little-endian:
//! `[2][0x10][width u32][depth u32][eps f64][delta f64][total u64][counters u64 x depth*width]
//! [element type name, 0..=63 bytes][its length u8]` with the counters row-major (row 0
//! first). The trailer names the type of the values counted (empty: not known yet), so a
//! lookup with a value of another type is an error instead of a silent 0 (its hash would
//! find other counters). Version 1 is the same without the trailer; it is read as a sketch
//! of unknown type, and anything that writes a sketch writes version 2.

use crate::error::{CoreError, Result};

/// Format version byte of the stored form this module writes.
pub const CMS_FORMAT_VERSION: u8 = 2;
/// The first format version (no element type), still read.
pub const CMS_FORMAT_V1: u8 = 1;
/// Longest element type name a sketch keeps (PostgreSQL's NAMEDATALEN - 1).
pub const CMS_ELEM_MAX: usize = 63;
/// Kind byte of a count-min sketch.
pub const CMS_KIND: u8 = 0x10;
/// Bytes before the first counter.
pub const CMS_HEADER_LEN: usize = 34;
/// First byte of the staged transition state of `cms_add_agg` (docs/FORMAT.md, "cms:
/// the staged transition state"). It lives only in an aggregate's memory and is turned
/// into the stored form by the aggregate's final function; `decode` and `validate`
/// reject it (it is not a format version).
pub const CMS_STAGED_TAG: u8 = 0x81;
/// At most this many counters (64 MiB of them): a tiny `eps` must fail, not allocate.
pub const CMS_MAX_COUNTERS: u64 = 8 * 1024 * 1024;
/// The total (and so every counter) stays within SQL `int8`.
pub const CMS_MAX_TOTAL: u64 = i64::MAX as u64;

/// A count-min sketch.
#[derive(Debug, Clone, PartialEq)]
pub struct Cms {
    width: u32,
    depth: u32,
    eps: f64,
    delta: f64,
    total: u64,
    /// Row-major, `depth * width` counters.
    counters: Vec<u64>,
    /// The name of the counted values' type; empty when not known yet.
    elem: Vec<u8>,
}

/// The parameters stored in front of the counters, readable without decoding them all.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CmsHeader {
    pub width: u32,
    pub depth: u32,
    pub eps: f64,
    pub delta: f64,
    pub total: u64,
}

/// `ceil(e / eps)`; IEEE division and `ceil` are exact operations, so this is the same
/// on every platform (decode relies on that).
fn width_for(eps: f64) -> f64 {
    (std::f64::consts::E / eps).ceil()
}

/// `ceil(ln(1 / delta))`, at least 1. Written as `-ln(delta)` so a tiny `delta` does not
/// overflow `1 / delta` to infinity.
fn depth_for(delta: f64) -> f64 {
    (-delta.ln()).ceil().max(1.0)
}

/// `ln` is not correctly rounded on every platform; a stored depth is accepted if it is
/// what `depth_for` gives with `ln(1/delta)` nudged by a relative 1e-12 either way, so a
/// sketch written on one machine always reads on another.
fn depth_consistent(delta: f64, depth: u32) -> bool {
    let x = -delta.ln();
    let d = depth as f64;
    let lo = (x * (1.0 - 1e-12)).ceil().max(1.0);
    let hi = (x * (1.0 + 1e-12)).ceil().max(1.0);
    d == lo || d == hi
}

fn check_eps_delta(eps: f64, delta: f64) -> Result<()> {
    if !eps.is_finite() || eps <= 0.0 || eps >= 1.0 {
        return Err(
            CoreError::invalid_parameter(format!("cms eps must be in (0, 1), got {eps}"))
                .with_hint("eps is the relative error bound, e.g. 0.001"),
        );
    }
    if !delta.is_finite() || delta <= 0.0 || delta >= 1.0 {
        return Err(CoreError::invalid_parameter(format!(
            "cms delta must be in (0, 1), got {delta}"
        ))
        .with_hint("delta is the probability of exceeding the error bound, e.g. 0.01"));
    }
    Ok(())
}

#[inline(always)]
fn read_u32(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(a)
}

#[inline(always)]
fn read_u64(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

#[inline(always)]
fn write_u64(b: &mut [u8], at: usize, v: u64) {
    b[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

/// Column of row 0 and the per-row step, both `< width` (see the module comment).
#[inline(always)]
fn first_and_step(h: u64, width: u32) -> (u64, u64) {
    let w = width as u64;
    let h1 = h & 0xFFFF_FFFF;
    let h2 = (h >> 32) | 1;
    (h1 % w, h2 % w)
}

/// `a % width` for `a < 2^32` without a division instruction (D. Lemire, O. Kaser,
/// N. Kurz, "Faster remainder by direct computation", 2019): exact for every 32-bit `a`
/// and `width >= 1`. The aggregate's per-row path keeps one per sketch width, so the
/// two remainders of [`first_and_step`] cost two multiplications instead of two
/// divisions; the result is the same, so the stored-format mapping is unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CmsDivisor {
    width: u32,
    magic: u64,
}

impl CmsDivisor {
    /// The divisor for `width` (>= 1).
    pub fn new(width: u32) -> CmsDivisor {
        let width = width.max(1);
        CmsDivisor {
            width,
            magic: (u64::MAX / width as u64).wrapping_add(1),
        }
    }
    pub fn width(&self) -> u32 {
        self.width
    }
    /// This divisor if it is for `width`, else a new one.
    #[inline(always)]
    fn for_width(&self, width: u32) -> CmsDivisor {
        if self.width == width {
            *self
        } else {
            CmsDivisor::new(width)
        }
    }
    /// `a % width` for `a < 2^32`.
    #[inline(always)]
    fn rem(&self, a: u64) -> u64 {
        let low = self.magic.wrapping_mul(a);
        ((low as u128 * self.width as u128) >> 64) as u64
    }
}

/// Calls `f(row_offset + column)` for every row, i.e. the counter index in row-major order.
#[inline(always)]
fn for_each_index(h: u64, width: u32, depth: u32, f: impl FnMut(usize)) {
    let (col, step) = first_and_step(h, width);
    for_each_index_from(col, step, width, depth, f);
}

/// [`for_each_index`] with `divisor`'s multiply-based remainders (no division), for the
/// per-row paths. `divisor` must be for the sketch's width; nothing here can panic.
#[inline(always)]
fn for_each_index_fast(divisor: &CmsDivisor, h: u64, depth: u32, f: impl FnMut(usize)) {
    let col = divisor.rem(h & 0xFFFF_FFFF);
    let step = divisor.rem((h >> 32) | 1);
    for_each_index_from(col, step, divisor.width, depth, f);
}

/// The row walk from row 0's column and the step (both `< width`).
#[inline(always)]
fn for_each_index_from(mut col: u64, step: u64, width: u32, depth: u32, mut f: impl FnMut(usize)) {
    let w = width as u64;
    let mut base = 0u64;
    for _ in 0..depth {
        f((base + col) as usize);
        // col + step < 2 * width < 2^33: no overflow; one subtraction brings it back.
        col += step;
        if col >= w {
            col -= w;
        }
        base += w;
    }
}

/// Length of the element-type trailer of a buffer: 0 for format version 1, else one
/// more than its last byte (stored version 2 and the staged state). None when the last
/// byte is out of range. Panic-free.
#[inline(always)]
fn trailer_len(buf: &[u8]) -> Option<usize> {
    if buf.first() == Some(&CMS_FORMAT_V1) {
        return Some(0);
    }
    let n = *buf.last()? as usize;
    (n <= CMS_ELEM_MAX).then_some(n + 1)
}

/// (width, depth, total, cells) when `buf` starts with `version` and the cms kind byte
/// and is exactly the header plus `bytes_per_cell` per counter, plus the trailer, long. Built only from
/// operations that cannot panic (the aggregate's guard-free per-row paths).
#[inline(always)]
fn checked_layout(
    buf: &[u8],
    version: u8,
    bytes_per_cell: usize,
) -> Option<(u32, u32, u64, usize)> {
    if buf.first() != Some(&version) || buf.get(1) != Some(&CMS_KIND) {
        return None;
    }
    let width = u32::from_le_bytes(buf.get(2..6)?.try_into().ok()?);
    let depth = u32::from_le_bytes(buf.get(6..10)?.try_into().ok()?);
    let total = u64::from_le_bytes(buf.get(26..34)?.try_into().ok()?);
    let cells = (width as usize).checked_mul(depth as usize)?;
    let expected = cells
        .checked_mul(bytes_per_cell)?
        .checked_add(CMS_HEADER_LEN)?
        .checked_add(trailer_len(buf)?)?;
    if width == 0 || depth == 0 || expected != buf.len() {
        return None;
    }
    Some((width, depth, total, cells))
}

/// [`checked_layout`] of a staged state: the stored layout with [`CMS_STAGED_TAG`] as its
/// first byte, followed by one low-order byte per counter.
#[inline(always)]
fn staged_layout(buf: &[u8]) -> Option<(u32, u32, u64, usize)> {
    checked_layout(buf, CMS_STAGED_TAG, 9)
}

/// Adds `count` to the counter of `h` in each of `depth` rows of a stored-form buffer,
/// panic-free. If one would overflow (or lies outside the buffer: corrupt bytes), the
/// rows already updated are put back and false is returned, the buffer unchanged.
#[inline(always)]
fn bump_all_or_none(
    encoded: &mut [u8],
    divisor: &CmsDivisor,
    h: u64,
    depth: u32,
    count: u64,
) -> bool {
    let mut bumped = 0u32;
    let mut failed = false;
    for_each_index_fast(divisor, h, depth, |i| {
        if failed {
            return;
        }
        let at = CMS_HEADER_LEN + i * 8;
        let ok = encoded
            .get_mut(at..at + 8)
            .and_then(|cell| {
                let v = u64::from_le_bytes((&*cell).try_into().ok()?).checked_add(count)?;
                cell.copy_from_slice(&v.to_le_bytes());
                Some(())
            })
            .is_some();
        if ok {
            bumped += 1;
        } else {
            failed = true;
        }
    });
    if failed {
        for_each_index_fast(divisor, h, bumped, |i| {
            let at = CMS_HEADER_LEN + i * 8;
            if let Some(cell) = encoded.get_mut(at..at + 8) {
                if let Ok(b) = (&*cell).try_into() {
                    cell.copy_from_slice(&u64::from_le_bytes(b).wrapping_sub(count).to_le_bytes());
                }
            }
        });
    }
    !failed
}

/// Checks what memory safety needs (version, kind, dimensions, exact length) and
/// returns (width, depth). O(1).
#[inline(always)]
fn layout(bytes: &[u8]) -> Result<(u32, u32)> {
    if bytes.len() < CMS_HEADER_LEN {
        return Err(CoreError::invalid_binary(format!(
            "cms value too short: {} bytes, the header alone is {CMS_HEADER_LEN}",
            bytes.len()
        )));
    }
    if bytes[0] != CMS_FORMAT_VERSION && bytes[0] != CMS_FORMAT_V1 {
        return Err(CoreError::invalid_binary(format!(
            "unsupported cms format version {} (this build reads versions 1 and 2)",
            bytes[0]
        )));
    }
    if bytes[1] != CMS_KIND {
        return Err(CoreError::invalid_binary(format!(
            "not a cms value: kind byte 0x{:02x}, expected 0x{CMS_KIND:02x}",
            bytes[1]
        )));
    }
    let width = read_u32(bytes, 2);
    let depth = read_u32(bytes, 6);
    if width == 0 || depth == 0 {
        return Err(CoreError::invalid_binary(format!(
            "cms width and depth must be at least 1, got width {width}, depth {depth}"
        )));
    }
    let cells = width as u64 * depth as u64;
    if cells > CMS_MAX_COUNTERS {
        return Err(CoreError::invalid_binary(format!(
            "cms has {cells} counters, more than the maximum {CMS_MAX_COUNTERS}"
        )));
    }
    let Some(trailer) = trailer_len(bytes) else {
        return Err(CoreError::invalid_binary(format!(
            "cms element type name is longer than {CMS_ELEM_MAX} bytes"
        )));
    };
    let expected = CMS_HEADER_LEN as u64 + cells * 8 + trailer as u64;
    if bytes.len() as u64 != expected {
        return Err(CoreError::invalid_binary(format!(
            "cms value has {} bytes, expected {expected} for width {width} and depth {depth}",
            bytes.len()
        )));
    }
    let elem = &bytes[bytes.len() - trailer..bytes.len() - trailer.min(1)];
    if std::str::from_utf8(elem).is_err() || elem.contains(&0) {
        return Err(CoreError::invalid_binary(
            "cms element type name is not a valid name",
        ));
    }
    Ok((width, depth))
}

/// The element type name of a buffer whose layout was checked (stored or staged).
fn elem_slice(bytes: &[u8]) -> &[u8] {
    match trailer_len(bytes) {
        Some(t) if t > 0 && t <= bytes.len() => &bytes[bytes.len() - t..bytes.len() - 1],
        _ => &[],
    }
}

/// Types whose values hash alike for equal values (docs/SQL.md, "Hashing"), so a sketch
/// of one answers lookups with another: the integer widths, and text, varchar and name.
fn elem_family(e: &[u8]) -> &[u8] {
    match e {
        b"smallint" | b"integer" | b"bigint" => b"bigint",
        b"text" | b"character varying" | b"name" => b"text",
        _ => e,
    }
}

fn elem_text(e: &[u8]) -> String {
    String::from_utf8_lossy(e).into_owned()
}

const ELEM_FAMILIES_HINT: &str =
    "smallint, integer and bigint are interchangeable, and so are text, varchar and name.";

fn check_elem_name(elem: &[u8]) -> Result<()> {
    if elem.len() > CMS_ELEM_MAX || std::str::from_utf8(elem).is_err() || elem.contains(&0) {
        return Err(CoreError::invalid_parameter(format!(
            "invalid cms element type name ({} bytes)",
            elem.len()
        )));
    }
    Ok(())
}

fn mismatch(a: (u32, u32), b: (u32, u32)) -> CoreError {
    CoreError::invalid_parameter("cannot combine count-min sketches of different dimensions")
        .with_detail(format!(
            "width {} depth {} versus width {} depth {}",
            a.0, a.1, b.0, b.1
        ))
        .with_hint("build both sketches with the same eps and delta")
}

fn total_overflow() -> CoreError {
    CoreError::overflow("cms total count would exceed the bigint range")
}

fn within_total_range(total: u64) -> Result<u64> {
    if total > CMS_MAX_TOTAL {
        Err(total_overflow())
    } else {
        Ok(total)
    }
}

impl Cms {
    /// The (width, depth) an `eps`, `delta` pair gives, after validating both.
    pub fn dimensions(eps: f64, delta: f64) -> Result<(u32, u32)> {
        check_eps_delta(eps, delta)?;
        let w = width_for(eps);
        let d = depth_for(delta);
        // Both are >= 1 here; compare in f64 so huge values never reach an integer cast.
        if w * d > CMS_MAX_COUNTERS as f64 {
            return Err(CoreError::invalid_parameter(format!(
                "cms with eps {eps} and delta {delta} would need {w} x {d} counters, \
                 more than the maximum {CMS_MAX_COUNTERS} (64 MiB)"
            ))
            .with_hint("raise eps (or delta) to make the sketch smaller"));
        }
        Ok((w as u32, d as u32))
    }

    /// An empty sketch with `width = ceil(e/eps)`, `depth = ceil(ln(1/delta))`.
    pub fn new(eps: f64, delta: f64) -> Result<Cms> {
        let (width, depth) = Self::dimensions(eps, delta)?;
        Ok(Cms {
            width,
            depth,
            eps,
            delta,
            total: 0,
            counters: vec![0; width as usize * depth as usize],
            elem: Vec::new(),
        })
    }

    /// The name of the type of the values counted; empty when not known yet (a new
    /// sketch, or a format 1 value).
    pub fn elem(&self) -> &[u8] {
        &self.elem
    }

    /// Names the type of the values counted (at most [`CMS_ELEM_MAX`] bytes of UTF-8).
    pub fn set_elem(&mut self, elem: &[u8]) -> Result<()> {
        check_elem_name(elem)?;
        self.elem = elem.to_vec();
        Ok(())
    }

    /// The element type name of a stored form or staged state (layout checked).
    pub fn elem_of(bytes: &[u8]) -> Result<&[u8]> {
        if Self::is_staged(bytes) {
            staged_layout(bytes)
                .ok_or_else(|| CoreError::invalid_binary("corrupt cms aggregate state"))?;
        } else {
            layout(bytes)?;
        }
        Ok(elem_slice(bytes))
    }

    /// Ok when a value of type `value` may be counted or looked up in a sketch of type
    /// `sketch`: either is not known, or both hash alike (the integer widths; text,
    /// varchar and name). `function` names the caller in the 42804 error.
    pub fn check_elem(sketch: &[u8], value: &[u8], function: &str) -> Result<()> {
        if sketch.is_empty() || value.is_empty() || elem_family(sketch) == elem_family(value) {
            return Ok(());
        }
        Err(CoreError::type_mismatch(format!(
            "{function}: the sketch counts values of type {}, not {}",
            elem_text(sketch),
            elem_text(value)
        ))
        .with_hint(format!(
            "Cast the value to {}.{}",
            elem_text(sketch),
            match elem_family(sketch) {
                b"bigint" => " smallint, integer and bigint are interchangeable.",
                b"text" => " text, varchar and name are interchangeable.",
                _ => "",
            }
        )))
    }

    /// The element type two sketches merge into: either's when the other's is not
    /// known, the left one's when both are; 42804 when they differ.
    pub fn merged_elem<'a>(a: &'a [u8], b: &'a [u8]) -> Result<&'a [u8]> {
        if a.is_empty() {
            return Ok(b);
        }
        if b.is_empty() || elem_family(a) == elem_family(b) {
            return Ok(a);
        }
        Err(CoreError::type_mismatch(format!(
            "cannot combine count-min sketches of values of type {} and {}",
            elem_text(a),
            elem_text(b)
        ))
        .with_hint(ELEM_FAMILIES_HINT))
    }

    /// `bytes` (a stored form of either version, or a staged state) with its element
    /// type set to `elem`: a stored form comes back in version 2.
    pub fn with_elem(bytes: &[u8], elem: &[u8]) -> Result<Vec<u8>> {
        check_elem_name(elem)?;
        Self::elem_of(bytes)?;
        let trailer = trailer_len(bytes).unwrap_or(0);
        let mut out = Vec::with_capacity(bytes.len() - trailer + elem.len() + 1);
        out.extend_from_slice(&bytes[..bytes.len() - trailer]);
        if out[0] == CMS_FORMAT_V1 {
            out[0] = CMS_FORMAT_VERSION;
        }
        out.extend_from_slice(elem);
        out.push(elem.len() as u8);
        Ok(out)
    }

    pub fn width(&self) -> u32 {
        self.width
    }
    pub fn depth(&self) -> u32 {
        self.depth
    }
    /// The eps the sketch was created with (informational; merges compare dimensions).
    pub fn eps(&self) -> f64 {
        self.eps
    }
    pub fn delta(&self) -> f64 {
        self.delta
    }
    /// Sum of all counts added.
    pub fn total(&self) -> u64 {
        self.total
    }
    /// The counters, row-major.
    pub fn counters(&self) -> &[u64] {
        &self.counters
    }
    pub fn header(&self) -> CmsHeader {
        CmsHeader {
            width: self.width,
            depth: self.depth,
            eps: self.eps,
            delta: self.delta,
            total: self.total,
        }
    }

    /// True if `other` can be merged into `self` (same width and depth).
    pub fn is_compatible(&self, other: &Cms) -> bool {
        self.width == other.width && self.depth == other.depth
    }

    /// Adds `count` occurrences of the value with hash `h`. Fails (leaving the sketch
    /// unchanged) if the total would exceed the `int8` range.
    pub fn add_hash(&mut self, h: u64, count: u64) -> Result<()> {
        let total = within_total_range(self.total.checked_add(count).ok_or_else(total_overflow)?)?;
        if count == 0 {
            return Ok(());
        }
        let counters = &mut self.counters;
        // Every counter is <= total (each row sums to total), so no counter can overflow
        // once the total did not.
        for_each_index(h, self.width, self.depth, |i| counters[i] += count);
        self.total = total;
        Ok(())
    }

    /// The estimate for the value with hash `h`: the minimum over the rows.
    pub fn count_hash(&self, h: u64) -> u64 {
        let mut est = u64::MAX;
        for_each_index(h, self.width, self.depth, |i| {
            est = est.min(self.counters[i])
        });
        est
    }

    /// Adds `other` into `self` counter by counter (the sketch of the concatenated
    /// streams). Dimensions must match; `self` keeps its own eps/delta.
    pub fn union(&mut self, other: &Cms) -> Result<()> {
        let elem = Self::merged_elem(&self.elem, &other.elem)?.to_vec();
        if !self.is_compatible(other) {
            return Err(mismatch(
                (self.width, self.depth),
                (other.width, other.depth),
            ));
        }
        let total = within_total_range(
            self.total
                .checked_add(other.total)
                .ok_or_else(total_overflow)?,
        )?;
        for (a, b) in self.counters.iter_mut().zip(&other.counters) {
            *a += *b; // both <= their totals, whose sum fits
        }
        self.total = total;
        self.elem = elem;
        Ok(())
    }

    /// Length of the stored form.
    pub fn encoded_len(&self) -> usize {
        CMS_HEADER_LEN + 8 * self.counters.len() + self.elem.len() + 1
    }

    /// The canonical stored form.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.encoded_len());
        out.push(CMS_FORMAT_VERSION);
        out.push(CMS_KIND);
        out.extend_from_slice(&self.width.to_le_bytes());
        out.extend_from_slice(&self.depth.to_le_bytes());
        out.extend_from_slice(&self.eps.to_le_bytes());
        out.extend_from_slice(&self.delta.to_le_bytes());
        out.extend_from_slice(&self.total.to_le_bytes());
        for c in &self.counters {
            out.extend_from_slice(&c.to_le_bytes());
        }
        out.extend_from_slice(&self.elem);
        out.push(self.elem.len() as u8);
        out
    }

    /// Validates the header (layout, eps/delta ranges and their consistency with the
    /// dimensions, total range) without looking at the counters. O(1).
    pub fn read_header(bytes: &[u8]) -> Result<CmsHeader> {
        let (width, depth) = layout(bytes)?;
        let eps = f64::from_le_bytes(bytes[10..18].try_into().unwrap_or([0; 8]));
        let delta = f64::from_le_bytes(bytes[18..26].try_into().unwrap_or([0; 8]));
        let total = read_u64(bytes, 26);
        if check_eps_delta(eps, delta).is_err() {
            return Err(CoreError::invalid_binary(format!(
                "cms eps {eps} and delta {delta} must both be in (0, 1)"
            )));
        }
        if width_for(eps) != width as f64 || !depth_consistent(delta, depth) {
            return Err(CoreError::invalid_binary(format!(
                "cms width {width} and depth {depth} do not match eps {eps} and delta {delta}"
            )));
        }
        if total > CMS_MAX_TOTAL {
            return Err(CoreError::invalid_binary(format!(
                "cms total {total} exceeds the bigint range"
            )));
        }
        Ok(CmsHeader {
            width,
            depth,
            eps,
            delta,
            total,
        })
    }

    /// Full validation of a stored form without allocating: the header, and every row
    /// summing to exactly the total (each added event adds to each row once).
    pub fn validate(bytes: &[u8]) -> Result<CmsHeader> {
        let h = Self::read_header(bytes)?;
        let w = h.width as usize;
        for row in 0..h.depth as usize {
            let start = CMS_HEADER_LEN + row * w * 8;
            let mut sum: u64 = 0;
            for col in 0..w {
                let c = read_u64(bytes, start + col * 8);
                sum = match sum.checked_add(c) {
                    Some(s) if s <= h.total => s,
                    _ => {
                        return Err(CoreError::invalid_binary(format!(
                            "cms row {row} sums to more than the total {}",
                            h.total
                        )))
                    }
                };
            }
            if sum != h.total {
                return Err(CoreError::invalid_binary(format!(
                    "cms row {row} sums to {sum}, not the total {}",
                    h.total
                )));
            }
        }
        Ok(h)
    }

    /// Decodes and fully validates a stored form.
    pub fn decode(bytes: &[u8]) -> Result<Cms> {
        let h = Self::validate(bytes)?;
        let cells = h.width as usize * h.depth as usize;
        let counters = (0..cells)
            .map(|i| read_u64(bytes, CMS_HEADER_LEN + i * 8))
            .collect();
        Ok(Cms {
            width: h.width,
            depth: h.depth,
            eps: h.eps,
            delta: h.delta,
            total: h.total,
            counters,
            elem: elem_slice(bytes).to_vec(),
        })
    }

    /// The stored form of an empty sketch.
    pub fn empty_encoded(eps: f64, delta: f64) -> Result<Vec<u8>> {
        Ok(Self::new(eps, delta)?.encode())
    }

    /// [`Cms::add_hash`] directly on a stored form (the aggregate's transition state),
    /// without allocating. Only the layout is checked here (O(1)); the buffer is expected
    /// to come from [`Cms::encode`] / a validated value. Arithmetic is checked, so a
    /// corrupt buffer yields an error, never a panic. On error the buffer is unchanged.
    pub fn add_in_place(encoded: &mut [u8], h: u64, count: u64) -> Result<()> {
        let (width, _) = layout(encoded)?;
        Self::add_in_place_with(encoded, &CmsDivisor::new(width), h, count)
    }

    /// [`Cms::add_in_place`] with a precomputed [`CmsDivisor`] (the per-row path of an
    /// aggregate keeps one). A divisor for another width is ignored (recomputed), so the
    /// result never depends on it.
    #[inline]
    pub fn add_in_place_with(
        encoded: &mut [u8],
        divisor: &CmsDivisor,
        h: u64,
        count: u64,
    ) -> Result<()> {
        let (width, depth) = layout(encoded)?;
        let divisor = &divisor.for_width(width);
        let total = read_u64(encoded, 26);
        let new_total = within_total_range(total.checked_add(count).ok_or_else(total_overflow)?)?;
        if count == 0 {
            return Ok(());
        }
        // One pass (this is the aggregate's per-row path). In a well-formed buffer every
        // counter is <= total, so no counter can overflow once the total did not; a
        // corrupt buffer may still overflow one, and then the rows already updated are
        // rolled back so the buffer is unchanged.
        if !bump_all_or_none(encoded, divisor, h, depth, count) {
            return Err(CoreError::overflow("cms counter overflow"));
        }
        write_u64(encoded, 26, new_total);
        Ok(())
    }

    /// An empty sketch in the staged transition form (docs/FORMAT.md): the stored form
    /// with [`CMS_STAGED_TAG`] first, followed by a zeroed low-order byte per counter.
    /// Counter `i` is `high[i] + low[i]`; an add increments the byte and carries 256
    /// into the 64-bit counter when it wraps. The bytes of a default sketch (13.6 KB)
    /// stay in a core's L1 cache, where the 64-bit counters (109 KB) cannot: an add
    /// touches them once per 256 increments of a counter instead of on every row.
    pub fn empty_staged(eps: f64, delta: f64) -> Result<Vec<u8>> {
        let mut v = Self::empty_encoded(eps, delta)?;
        let trailer = v.split_off(v.len() - 1);
        let cells = (v.len() - CMS_HEADER_LEN) / 8;
        v[0] = CMS_STAGED_TAG;
        v.resize(v.len() + cells, 0);
        v.extend_from_slice(&trailer);
        Ok(v)
    }

    /// Whether `buf` is in the staged transition form (by its first byte only).
    #[inline(always)]
    pub fn is_staged(buf: &[u8]) -> bool {
        buf.first() == Some(&CMS_STAGED_TAG)
    }

    /// One occurrence of `h` into a staged state, built only from operations that
    /// cannot panic (the aggregate's guard-free per-row path). Returns `false`, with the
    /// buffer unchanged, when it is not a well-formed staged state of `divisor`'s width
    /// or its total is at the limit. A state built by this code keeps every counter
    /// (high + low) <= total <= 2^63 - 1, so the carry cannot overflow.
    #[inline]
    pub fn add_one_staged(buf: &mut [u8], divisor: &CmsDivisor, h: u64) -> bool {
        let Some((width, depth, total, cells)) = staged_layout(buf) else {
            return false;
        };
        if width != divisor.width || total >= CMS_MAX_TOTAL {
            return false;
        }
        let Some((high, low)) = buf.split_at_mut_checked(CMS_HEADER_LEN + cells * 8) else {
            return false;
        };
        // every index is < cells: in range by construction
        for_each_index_fast(divisor, h, depth, |i| {
            if let Some(byte) = low.get_mut(i) {
                let (v, carry) = byte.overflowing_add(1);
                *byte = v;
                if carry {
                    let at = CMS_HEADER_LEN + i * 8;
                    if let Some(cell) = high.get_mut(at..at + 8) {
                        if let Ok(b) = (&*cell).try_into() {
                            let v = u64::from_le_bytes(b).wrapping_add(256);
                            cell.copy_from_slice(&v.to_le_bytes());
                        }
                    }
                }
            }
        });
        if let Some(t) = high.get_mut(26..34) {
            t.copy_from_slice(&(total + 1).to_le_bytes());
        }
        true
    }

    /// [`Cms::add_one_staged`] with errors: 22003 when the total is at its limit,
    /// invalid binary when `buf` is not a staged state.
    pub fn add_one_staged_checked(buf: &mut [u8], divisor: &CmsDivisor, h: u64) -> Result<()> {
        let Some((width, _, total, _)) = staged_layout(buf) else {
            return Err(CoreError::invalid_binary("corrupt cms aggregate state"));
        };
        within_total_range(total + 1)?;
        let divisor = &divisor.for_width(width);
        if Self::add_one_staged(buf, divisor, h) {
            Ok(())
        } else {
            Err(CoreError::invalid_binary("corrupt cms aggregate state"))
        }
    }

    /// The stored form of a staged state: every counter high + low, then validated
    /// (each row sums to the total).
    pub fn unstage(buf: &[u8]) -> Result<Vec<u8>> {
        let corrupt = || CoreError::invalid_binary("corrupt cms aggregate state");
        let (_, _, _, cells) = staged_layout(buf).ok_or_else(corrupt)?;
        let split = CMS_HEADER_LEN + cells * 8;
        let mut out = buf[..split].to_vec();
        out[0] = CMS_FORMAT_VERSION;
        for (i, &low) in buf[split..split + cells].iter().enumerate() {
            let at = CMS_HEADER_LEN + i * 8;
            let v = read_u64(&out, at)
                .checked_add(low as u64)
                .ok_or_else(corrupt)?;
            write_u64(&mut out, at, v);
        }
        out.extend_from_slice(&buf[split + cells..]);
        Self::validate(&out)?;
        Ok(out)
    }

    /// [`Cms::add_in_place_with`] for one occurrence of `h`, built only from operations
    /// that cannot panic (`get`/`get_mut`, checked arithmetic, no allocation): for an
    /// aggregate's per-row path that runs outside a panic guard. Returns `false`, with
    /// the buffer unchanged, when the bytes are not a well-formed sketch of
    /// `divisor`'s width, the total is at its limit, or a counter could overflow
    /// (corrupt bytes); the caller then takes the checked path, which reports errors.
    #[inline]
    pub fn add_one_in_place(encoded: &mut [u8], divisor: &CmsDivisor, h: u64) -> bool {
        let Some((width, depth, total, _)) = checked_layout(encoded, CMS_FORMAT_VERSION, 8) else {
            return false;
        };
        if width != divisor.width
            || total >= CMS_MAX_TOTAL
            || !bump_all_or_none(encoded, divisor, h, depth, 1)
        {
            return false;
        }
        if let Some(t) = encoded.get_mut(26..34) {
            t.copy_from_slice(&(total + 1).to_le_bytes());
        }
        true
    }

    /// [`Cms::count_hash`] on a stored form (layout checked, O(depth)).
    pub fn count_in_place(encoded: &[u8], h: u64) -> Result<u64> {
        let (width, depth) = layout(encoded)?;
        let mut est = u64::MAX;
        for_each_index(h, width, depth, |i| {
            est = est.min(read_u64(encoded, CMS_HEADER_LEN + i * 8))
        });
        Ok(est)
    }

    /// [`Cms::union`] on stored forms: adds `src` into `dst` without allocating. `src` is
    /// fully validated (it may come from storage); `dst` is layout-checked and its
    /// additions are overflow-checked. `dst` keeps its eps/delta and its element type (give it the merged one first: [`Cms::merged_elem`], [`Cms::with_elem`]). On error `dst` is
    /// unchanged.
    pub fn merge_in_place(dst: &mut [u8], src: &[u8]) -> Result<()> {
        let (dw, dd) = layout(dst)?;
        let s = Self::validate(src)?;
        Self::merged_elem(elem_slice(dst), elem_slice(src))?;
        if (dw, dd) != (s.width, s.depth) {
            return Err(mismatch((dw, dd), (s.width, s.depth)));
        }
        let total = read_u64(dst, 26);
        let new_total = within_total_range(total.checked_add(s.total).ok_or_else(total_overflow)?)?;
        let body = CMS_HEADER_LEN..CMS_HEADER_LEN + 8 * dw as usize * dd as usize;
        let overflow = dst[body.clone()]
            .chunks_exact(8)
            .zip(src[body.clone()].chunks_exact(8))
            .any(|(a, b)| {
                let a = u64::from_le_bytes(a.try_into().unwrap_or([0; 8]));
                let b = u64::from_le_bytes(b.try_into().unwrap_or([0; 8]));
                a.checked_add(b).is_none()
            });
        if overflow {
            return Err(CoreError::overflow("cms counter overflow"));
        }
        for (a, b) in dst[body.clone()]
            .chunks_exact_mut(8)
            .zip(src[body].chunks_exact(8))
        {
            let x = u64::from_le_bytes((&*a).try_into().unwrap_or([0; 8]));
            let y = u64::from_le_bytes(b.try_into().unwrap_or([0; 8]));
            a.copy_from_slice(&(x + y).to_le_bytes());
        }
        write_u64(dst, 26, new_total);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;
    use crate::hash::hash_i64;
    use proptest::prelude::*;
    use rand::rngs::SmallRng;
    use rand::{Rng, SeedableRng};
    use std::collections::HashMap;

    #[test]
    fn dimensions_follow_the_paper() {
        let c = Cms::new(0.001, 0.01).unwrap();
        assert_eq!((c.width(), c.depth()), (2719, 5));
        let c = Cms::new(0.5, 0.2).unwrap();
        assert_eq!((c.width(), c.depth()), (6, 2));
        let c = Cms::new(0.9, 0.9).unwrap();
        assert_eq!((c.width(), c.depth()), (4, 1));
        // delta this close to 1 gives depth 1, never 0.
        let c = Cms::new(0.5, 1.0 - f64::EPSILON).unwrap();
        assert_eq!(c.depth(), 1);
        // the smallest positive delta still works (depth 745).
        let c = Cms::new(0.9, f64::from_bits(1)).unwrap();
        assert_eq!(c.depth(), 745);
    }

    #[test]
    fn bad_parameters_are_rejected() {
        for (e, d) in [
            (0.0, 0.01),
            (1.0, 0.01),
            (-0.1, 0.01),
            (f64::NAN, 0.01),
            (f64::INFINITY, 0.01),
            (0.01, 0.0),
            (0.01, 1.0),
            (0.01, f64::NAN),
            (0.01, -1.0),
        ] {
            let err = Cms::new(e, d).unwrap_err();
            assert_eq!(err.kind, ErrorKind::InvalidParameter, "{e} {d}");
        }
        let err = Cms::new(1e-12, 0.01).unwrap_err();
        assert_eq!(err.kind, ErrorKind::InvalidParameter);
        assert!(err.hint.unwrap().contains("raise eps"));
        let err = Cms::new(f64::MIN_POSITIVE, 0.01).unwrap_err();
        assert_eq!(err.kind, ErrorKind::InvalidParameter);
        // 2719 * 5 fits; 1e-5 * ... also fits; 3e-7 does not.
        assert!(Cms::new(1e-5, 0.01).is_ok());
        assert!(Cms::new(3e-7, 0.01).is_err());
    }

    #[test]
    fn overflow_is_an_error_and_leaves_the_sketch_unchanged() {
        let mut c = Cms::new(0.1, 0.1).unwrap();
        c.add_hash(1, i64::MAX as u64).unwrap();
        let before = c.clone();
        let err = c.add_hash(2, 1).unwrap_err();
        assert_eq!(err.kind, ErrorKind::Overflow);
        assert_eq!(c, before);
        assert_eq!(
            c.add_hash(3, u64::MAX).unwrap_err().kind,
            ErrorKind::Overflow
        );
        let mut enc = c.encode();
        assert_eq!(
            Cms::add_in_place(&mut enc, 2, 1).unwrap_err().kind,
            ErrorKind::Overflow
        );
        assert_eq!(enc, c.encode());
        let mut d = before.clone();
        assert_eq!(d.union(&before).unwrap_err().kind, ErrorKind::Overflow);
        let mut enc2 = before.encode();
        assert_eq!(
            Cms::merge_in_place(&mut enc2, &enc).unwrap_err().kind,
            ErrorKind::Overflow
        );
        assert_eq!(enc2, before.encode());
    }

    #[test]
    fn divisor_remainder_is_exact() {
        let mut rng = SmallRng::seed_from_u64(7);
        let mut widths = vec![1u32, 2, 3, 6, 7, 272, 2719, 65536, u32::MAX - 1, u32::MAX];
        widths.extend((0..200).map(|_| rng.gen_range(1..=u32::MAX)));
        for &w in &widths {
            let d = CmsDivisor::new(w);
            let mut values = vec![
                0u64,
                1,
                w as u64 - 1,
                w as u64,
                u32::MAX as u64,
                u32::MAX as u64 - 1,
            ];
            values.extend((0..2000).map(|_| rng.gen::<u32>() as u64));
            for a in values {
                assert_eq!(d.rem(a), a % w as u64, "{a} % {w}");
            }
        }
    }

    #[test]
    fn add_in_place_with_any_divisor_matches_add_hash() {
        let mut c = Cms::new(0.01, 0.01).unwrap();
        let mut enc = c.encode();
        let right = CmsDivisor::new(c.width());
        let wrong = CmsDivisor::new(c.width() + 1);
        for i in 0..5000i64 {
            let h = hash_i64(i % 377, 0);
            c.add_hash(h, 2).unwrap();
            let d = if i % 2 == 0 { &right } else { &wrong };
            Cms::add_in_place_with(&mut enc, d, h, 2).unwrap();
        }
        assert_eq!(enc, c.encode());
    }

    #[test]
    fn add_in_place_rolls_back_on_a_corrupt_counter() {
        // A counter above the total (corrupt, never produced by this code) in the last
        // row overflows after the earlier rows were updated: they are rolled back.
        let c = Cms::new(0.5, 0.01).unwrap();
        assert_eq!(c.depth(), 5);
        let h = 0x1234_5678_9abc_def0;
        let mut last = 0;
        for_each_index(h, c.width(), c.depth(), |i| last = i);
        let mut enc = c.encode();
        write_u64(&mut enc, CMS_HEADER_LEN + last * 8, u64::MAX);
        let before = enc.clone();
        assert_eq!(
            Cms::add_in_place(&mut enc, h, 3).unwrap_err().kind,
            ErrorKind::Overflow
        );
        assert_eq!(enc, before);
    }

    #[test]
    fn mismatched_dimensions_error_with_hint() {
        let mut a = Cms::new(0.01, 0.01).unwrap();
        let b = Cms::new(0.02, 0.01).unwrap();
        let err = a.union(&b).unwrap_err();
        assert_eq!(err.kind, ErrorKind::InvalidParameter);
        assert_eq!(
            err.hint.as_deref(),
            Some("build both sketches with the same eps and delta")
        );
        let mut ea = a.encode();
        let err = Cms::merge_in_place(&mut ea, &b.encode()).unwrap_err();
        assert_eq!(err.kind, ErrorKind::InvalidParameter);
        // Same dimensions from slightly different eps merge; the left side keeps its eps.
        let mut x = Cms::new(0.001, 0.01).unwrap();
        let y = Cms::new(0.0010001, 0.01).unwrap();
        assert!(x.union(&y).is_ok());
        assert_eq!(x.eps(), 0.001);
    }

    /// Hand-derived from docs/FORMAT.md: eps 0.5 -> width ceil(5.4366) = 6,
    /// delta 0.2 -> depth ceil(1.609) = 2.
    /// h = 0x0000_0003_0000_0007, count 5: h1 = 7, h2 = 3|1 = 3; row 0 col 7%6 = 1,
    ///   row 1 col (7+3)%6 = 4.
    /// h = 0x0000_0002_0000_0000, count 2: h1 = 0, h2 = 2|1 = 3; row 0 col 0, row 1 col 3.
    /// The format 1 bytes of the golden sketch (no element type trailer).
    fn golden_v1() -> Vec<u8> {
        #[rustfmt::skip]
        let mut bytes: Vec<u8> = vec![
            0x01, 0x10,
            0x06, 0x00, 0x00, 0x00,                         // width 6
            0x02, 0x00, 0x00, 0x00,                         // depth 2
            0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xE0, 0x3F, // eps 0.5
            0x9A, 0x99, 0x99, 0x99, 0x99, 0x99, 0xC9, 0x3F, // delta 0.2
            0x07, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // total 7
        ];
        let row0 = [2u64, 5, 0, 0, 0, 0];
        let row1 = [0u64, 0, 0, 2, 5, 0];
        for v in row0.iter().chain(&row1) {
            bytes.extend_from_slice(&v.to_le_bytes());
        }
        bytes
    }

    #[test]
    fn golden_bytes() {
        let mut c = Cms::new(0.5, 0.2).unwrap();
        c.add_hash(0x0000_0003_0000_0007, 5).unwrap();
        c.add_hash(0x0000_0002_0000_0000, 2).unwrap();
        // format 2: version 2, the same header and counters, then the element type
        // trailer: no type known yet is one byte, 0
        let mut expected = golden_v1();
        expected[0] = 0x02;
        expected.push(0x00);
        assert_eq!(c.encode(), expected);
        assert_eq!(Cms::decode(&expected).unwrap(), c);
        assert_eq!(c.count_hash(0x0000_0003_0000_0007), 5);
        assert_eq!(c.count_hash(0x0000_0002_0000_0000), 2);
        // a value hitting (row0 col1, row1 col 3): h1 = 1, h2 = 2|1 = 3 -> cols 1, 4 -> 5
        assert_eq!(c.count_hash(0x0000_0002_0000_0001), 5);
        // in-place add yields the same bytes
        let mut e = Cms::empty_encoded(0.5, 0.2).unwrap();
        Cms::add_in_place(&mut e, 0x0000_0003_0000_0007, 5).unwrap();
        Cms::add_in_place(&mut e, 0x0000_0002_0000_0000, 2).unwrap();
        assert_eq!(e, expected);
        assert_eq!(Cms::count_in_place(&e, 0x0000_0002_0000_0001).unwrap(), 5);
        // a typed sketch: the name's bytes, then their count
        c.set_elem(b"bigint").unwrap();
        let mut typed = golden_v1();
        typed[0] = 0x02;
        typed.extend_from_slice(b"bigint");
        typed.push(6);
        assert_eq!(c.encode(), typed);
        assert_eq!(Cms::decode(&typed).unwrap(), c);
        assert_eq!(Cms::elem_of(&typed).unwrap(), b"bigint");
        assert_eq!(Cms::with_elem(&expected, b"bigint").unwrap(), typed);
    }

    #[test]
    fn format_1_reads_forever_with_the_same_answers() {
        let v1 = golden_v1();
        let c = Cms::decode(&v1).unwrap();
        assert_eq!(c.elem(), b"");
        assert_eq!(c.total(), 7);
        for (h, want) in [
            (0x0000_0003_0000_0007u64, 5u64),
            (0x0000_0002_0000_0000, 2),
            (0x0000_0002_0000_0001, 5),
        ] {
            assert_eq!(c.count_hash(h), want);
            assert_eq!(Cms::count_in_place(&v1, h).unwrap(), want);
        }
        assert_eq!(Cms::elem_of(&v1).unwrap(), b"");
        // anything that writes it writes format 2, with the same counters
        let v2 = Cms::with_elem(&v1, b"").unwrap();
        assert_eq!(v2[0], 2);
        assert_eq!(&v2[1..v1.len()], &v1[1..]);
        assert_eq!(Cms::decode(&v2).unwrap(), c);
        let mut merged = v2.clone();
        Cms::merge_in_place(&mut merged, &v1).unwrap();
        assert_eq!(Cms::decode(&merged).unwrap().total(), 14);
    }

    #[test]
    fn element_types_check_lookups_and_merges() {
        let family = [&b"smallint"[..], b"integer", b"bigint"];
        for a in family {
            for b in family {
                Cms::check_elem(a, b, "cms_count").unwrap();
            }
        }
        Cms::check_elem(b"text", b"character varying", "cms_count").unwrap();
        Cms::check_elem(b"name", b"text", "cms_count").unwrap();
        Cms::check_elem(b"", b"numeric", "cms_count").unwrap();
        Cms::check_elem(b"numeric", b"", "cms_count").unwrap();
        for (a, b) in [
            (&b"bigint"[..], &b"text"[..]),
            (b"bigint", b"numeric"),
            (b"text", b"character(3)"),
            (b"mood", b"text"),
            (b"date", b"timestamp with time zone"),
        ] {
            let e = Cms::check_elem(a, b, "cms_count").unwrap_err();
            assert_eq!(e.kind, ErrorKind::TypeMismatch);
            let a_text = std::str::from_utf8(a).unwrap();
            let b_text = std::str::from_utf8(b).unwrap();
            assert!(
                e.message.contains(a_text) && e.message.contains(b_text),
                "{}",
                e.message
            );
            assert_eq!(
                Cms::merged_elem(a, b).unwrap_err().kind,
                ErrorKind::TypeMismatch
            );
        }
        assert_eq!(Cms::merged_elem(b"", b"uuid").unwrap(), b"uuid");
        assert_eq!(Cms::merged_elem(b"integer", b"bigint").unwrap(), b"integer");
        // merging sketches of two types fails and leaves the destination unchanged
        let mut a = Cms::new(0.5, 0.2).unwrap();
        a.set_elem(b"bigint").unwrap();
        a.add_hash(1, 1).unwrap();
        let mut b = Cms::new(0.5, 0.2).unwrap();
        b.set_elem(b"text").unwrap();
        b.add_hash(2, 1).unwrap();
        let mut ea = a.encode();
        let before = ea.clone();
        let e = Cms::merge_in_place(&mut ea, &b.encode()).unwrap_err();
        assert_eq!(e.kind, ErrorKind::TypeMismatch);
        assert_eq!(ea, before);
        assert_eq!(
            a.clone().union(&b).unwrap_err().kind,
            ErrorKind::TypeMismatch
        );
        // a staged state keeps its type through unstaging
        let staged = Cms::with_elem(&Cms::empty_staged(0.5, 0.2).unwrap(), b"uuid").unwrap();
        let mut staged = staged;
        let divisor = CmsDivisor::new(6);
        assert!(Cms::add_one_staged(&mut staged, &divisor, 42));
        let stored = Cms::unstage(&staged).unwrap();
        assert_eq!(Cms::elem_of(&stored).unwrap(), b"uuid");
        assert_eq!(Cms::decode(&stored).unwrap().total(), 1);
    }

    #[test]
    fn element_type_names_are_validated() {
        let mut e = Cms::empty_encoded(0.5, 0.2).unwrap();
        // a length byte beyond the maximum, or one that does not fit the value
        *e.last_mut().unwrap() = 64;
        assert_eq!(Cms::decode(&e).unwrap_err().kind, ErrorKind::InvalidBinary);
        *e.last_mut().unwrap() = 5;
        assert_eq!(Cms::decode(&e).unwrap_err().kind, ErrorKind::InvalidBinary);
        // not UTF-8, or a NUL
        let good = Cms::with_elem(&Cms::empty_encoded(0.5, 0.2).unwrap(), b"ab").unwrap();
        for bad in [[0xFFu8, b'b'], [b'a', 0]] {
            let mut v = good.clone();
            let n = v.len();
            v[n - 3..n - 1].copy_from_slice(&bad);
            assert_eq!(Cms::decode(&v).unwrap_err().kind, ErrorKind::InvalidBinary);
        }
        assert!(Cms::with_elem(&good, &[b'x'; 64]).is_err());
        assert!(Cms::with_elem(&good, &[b'x'; 63]).is_ok());
    }

    #[test]
    fn index_mapping_matches_the_formula_for_large_values() {
        // The stepping must equal (h1 + i*h2) mod width computed in wide integers.
        let mut rng = SmallRng::seed_from_u64(7);
        for _ in 0..2000 {
            let h: u64 = rng.gen();
            let width: u32 = rng.gen_range(1..3_000_000);
            let depth: u32 = rng.gen_range(1..8);
            let mut got = vec![];
            for_each_index(h, width, depth, |i| got.push(i as u128));
            let h1 = (h & 0xFFFF_FFFF) as u128;
            let h2 = ((h >> 32) | 1) as u128;
            let want: Vec<u128> = (0..depth as u128)
                .map(|i| i * width as u128 + (h1 + i * h2) % width as u128)
                .collect();
            assert_eq!(got, want);
        }
    }

    fn zipf_stream(rng: &mut SmallRng, n: usize, universe: usize, s: f64) -> Vec<i64> {
        let mut cdf = Vec::with_capacity(universe);
        let mut acc = 0.0;
        for r in 1..=universe {
            acc += 1.0 / (r as f64).powf(s);
            cdf.push(acc);
        }
        (0..n)
            .map(|_| {
                let u = rng.gen::<f64>() * acc;
                cdf.partition_point(|&c| c < u) as i64
            })
            .collect()
    }

    #[test]
    fn error_bound_holds_on_zipf_streams() {
        // eps = 0.005 (width 544), delta = 0.05 (depth 3). Over several independent hash
        // seeds, the share of values overestimated by more than eps*total must stay below
        // delta (the theory bound; in practice it is far lower).
        let mut rng = SmallRng::seed_from_u64(42);
        let stream = zipf_stream(&mut rng, 200_000, 20_000, 1.1);
        let mut truth: HashMap<i64, u64> = HashMap::new();
        for &v in &stream {
            *truth.entry(v).or_default() += 1;
        }
        let (eps, delta) = (0.005, 0.05);
        let mut bad = 0usize;
        let mut queries = 0usize;
        for seed in 0..5 {
            let mut c = Cms::new(eps, delta).unwrap();
            for &v in &stream {
                c.add_hash(hash_i64(v, seed), 1).unwrap();
            }
            assert_eq!(c.total(), stream.len() as u64);
            let bound = eps * c.total() as f64;
            // Query every universe value, including ones never seen (true count 0).
            for v in 0..20_000i64 {
                let t = truth.get(&v).copied().unwrap_or(0);
                let est = c.count_hash(hash_i64(v, seed));
                assert!(est >= t, "under-count for {v}: {est} < {t}");
                queries += 1;
                if (est - t) as f64 > bound {
                    bad += 1;
                }
            }
        }
        let rate = bad as f64 / queries as f64;
        assert!(rate <= delta, "failure rate {rate} above delta {delta}");
    }

    fn stream_strategy() -> impl Strategy<Value = Vec<(u64, u64)>> {
        prop::collection::vec((0u64..64, 0u64..1000), 0..200).prop_map(|v| {
            v.into_iter()
                .map(|(x, c)| (hash_i64(x as i64, 0), c))
                .collect()
        })
    }

    fn build(eps: f64, delta: f64, s: &[(u64, u64)]) -> Cms {
        let mut c = Cms::new(eps, delta).unwrap();
        for &(h, n) in s {
            c.add_hash(h, n).unwrap();
        }
        c
    }

    proptest! {
        /// Folding a stream through the staged form and unstaging it gives exactly the
        /// stored form of adding the same stream directly, also across carries (values
        /// repeated more than 256 and 65,536 times) and for any sketch size.
        #[test]
        fn staged_adds_equal_plain_adds(values in prop::collection::vec((0u64..40, 1usize..900), 0..30),
                                        eps in 0.002f64..0.9,
                                        delta in prop_oneof![Just(0.01f64), Just(0.0001), 0.01f64..0.9]) {
            let mut staged = Cms::empty_staged(eps, delta).unwrap();
            let mut plain = Cms::empty_encoded(eps, delta).unwrap();
            let (width, _) = layout(&plain).unwrap();
            let d = CmsDivisor::new(width);
            for &(x, times) in &values {
                let h = hash_i64(x as i64, 0);
                for _ in 0..times {
                    prop_assert!(Cms::is_staged(&staged));
                    prop_assert!(Cms::add_one_staged(&mut staged, &d, h));
                }
                Cms::add_in_place_with(&mut plain, &d, h, times as u64).unwrap();
            }
            prop_assert_eq!(Cms::unstage(&staged).unwrap(), plain);
        }

        /// A staged buffer is never read as a stored sketch, and damaged or truncated
        /// staged buffers are declined unchanged or fail cleanly, never panic.
        #[test]
        fn staged_buffers_are_checked(s in stream_strategy(), pos in any::<prop::sample::Index>(),
                                      bit in 0u8..8, cut in any::<prop::sample::Index>(), h in any::<u64>()) {
            let mut staged = Cms::empty_staged(0.3, 0.1).unwrap();
            let (width, _) = staged_layout(&staged).map(|(w, d, _, _)| (w, d)).unwrap();
            let d = CmsDivisor::new(width);
            for &(x, _) in &s {
                prop_assert!(Cms::add_one_staged(&mut staged, &d, x));
            }
            prop_assert_eq!(Cms::decode(&staged).unwrap_err().kind, ErrorKind::InvalidBinary);
            prop_assert_eq!(Cms::validate(&staged).unwrap_err().kind, ErrorKind::InvalidBinary);
            let plain = Cms::unstage(&staged).unwrap();
            // a stored sketch is not a staged one, and the other way round
            prop_assert!(!Cms::add_one_staged(&mut plain.clone(), &d, h));
            prop_assert!(!Cms::add_one_in_place(&mut staged.clone(), &d, h));
            // another width: declined
            prop_assert!(!Cms::add_one_staged(&mut staged.clone(), &CmsDivisor::new(width + 1), h));
            let mut flipped = staged.clone();
            let i = pos.index(flipped.len());
            flipped[i] ^= 1 << bit;
            for corrupt in [flipped, staged[..cut.index(staged.len())].to_vec()] {
                let mut b = corrupt.clone();
                if !Cms::add_one_staged(&mut b, &d, h) {
                    prop_assert_eq!(&b, &corrupt);
                }
                let _ = Cms::unstage(&corrupt);
                let _ = Cms::add_one_staged_checked(&mut corrupt.clone(), &d, h);
            }
        }
    }

    #[test]
    fn staged_total_limit_is_an_overflow_error() {
        let mut staged = Cms::empty_staged(0.5, 0.2).unwrap();
        let d = CmsDivisor::new(staged_layout(&staged).unwrap().0);
        staged[26..34].copy_from_slice(&CMS_MAX_TOTAL.to_le_bytes());
        let before = staged.clone();
        assert!(!Cms::add_one_staged(&mut staged, &d, 7));
        assert_eq!(staged, before);
        assert_eq!(
            Cms::add_one_staged_checked(&mut staged, &d, 7)
                .unwrap_err()
                .kind,
            ErrorKind::Overflow
        );
        assert_eq!(staged, before);
    }

    proptest! {
        #[test]
        fn never_under_counts(s in stream_strategy(), eps in 0.01f64..0.9, delta in 0.01f64..0.9) {
            let c = build(eps, delta, &s);
            let mut truth: HashMap<u64, u64> = HashMap::new();
            for &(h, n) in &s {
                *truth.entry(h).or_default() += n;
            }
            for (h, t) in truth {
                prop_assert!(c.count_hash(h) >= t);
            }
            prop_assert_eq!(c.total(), s.iter().map(|x| x.1).sum::<u64>());
        }

        #[test]
        fn union_equals_sketch_of_concatenation(a in stream_strategy(), b in stream_strategy()) {
            let mut x = build(0.1, 0.05, &a);
            let y = build(0.1, 0.05, &b);
            x.union(&y).unwrap();
            let mut ab = a.clone();
            ab.extend_from_slice(&b);
            prop_assert_eq!(&x, &build(0.1, 0.05, &ab));
            // byte-slice version agrees
            let mut e = build(0.1, 0.05, &a).encode();
            Cms::merge_in_place(&mut e, &y.encode()).unwrap();
            prop_assert_eq!(e, x.encode());
        }

        #[test]
        fn union_commutative_associative(a in stream_strategy(), b in stream_strategy(), c in stream_strategy()) {
            let (x, y, z) = (build(0.2, 0.1, &a), build(0.2, 0.1, &b), build(0.2, 0.1, &c));
            let mut xy = x.clone(); xy.union(&y).unwrap();
            let mut yx = y.clone(); yx.union(&x).unwrap();
            prop_assert_eq!(&xy, &yx);
            let mut xy_z = xy.clone(); xy_z.union(&z).unwrap();
            let mut yz = y.clone(); yz.union(&z).unwrap();
            let mut x_yz = x.clone(); x_yz.union(&yz).unwrap();
            prop_assert_eq!(xy_z, x_yz);
        }

        #[test]
        fn in_place_add_matches(s in stream_strategy()) {
            let c = build(0.05, 0.02, &s);
            let mut e = Cms::empty_encoded(0.05, 0.02).unwrap();
            for &(h, n) in &s {
                Cms::add_in_place(&mut e, h, n).unwrap();
            }
            prop_assert_eq!(&e, &c.encode());
            for &(h, _) in &s {
                prop_assert_eq!(Cms::count_in_place(&e, h).unwrap(), c.count_hash(h));
            }
        }

        #[test]
        fn round_trip(s in stream_strategy(), eps in 0.01f64..0.99, delta in 1e-9f64..0.99) {
            let c = build(eps, delta, &s);
            let e = c.encode();
            prop_assert_eq!(e.len(), c.encoded_len());
            let d = Cms::decode(&e).unwrap();
            prop_assert_eq!(&d, &c);
            prop_assert_eq!(d.encode(), e.clone());
            prop_assert_eq!(Cms::read_header(&e).unwrap(), c.header());
        }

        /// The guard-free one-occurrence add equals the checked add, byte for byte, and
        /// on any corrupt buffer it either equals it too or declines with the buffer
        /// unchanged (never a panic, never a different result).
        #[test]
        fn add_one_in_place_equals_the_checked_add(s in stream_strategy(), h in any::<u64>(),
                                                   pos in any::<prop::sample::Index>(), bit in 0u8..8,
                                                   cut in any::<prop::sample::Index>()) {
            let e = build(0.3, 0.1, &s).encode();
            let (width, _) = layout(&e).unwrap();
            let d = CmsDivisor::new(width);
            let mut fast = e.clone();
            let mut checked = e.clone();
            prop_assert!(Cms::add_one_in_place(&mut fast, &d, h));
            Cms::add_in_place_with(&mut checked, &d, h, 1).unwrap();
            prop_assert_eq!(&fast, &checked);
            // another width's divisor: declined
            let mut other = e.clone();
            prop_assert!(!Cms::add_one_in_place(&mut other, &CmsDivisor::new(width + 1), h));
            prop_assert_eq!(&other, &e);
            // flipped bit / truncation
            let mut flipped = e.clone();
            let i = pos.index(flipped.len());
            flipped[i] ^= 1 << bit;
            for corrupt in [flipped, e[..cut.index(e.len())].to_vec()] {
                let mut fast = corrupt.clone();
                let mut checked = corrupt.clone();
                let checked_ok = Cms::add_in_place_with(&mut checked, &d, h, 1).is_ok();
                if Cms::add_one_in_place(&mut fast, &d, h) {
                    prop_assert!(checked_ok);
                    prop_assert_eq!(&fast, &checked);
                } else {
                    prop_assert_eq!(&fast, &corrupt);
                }
            }
        }

        #[test]
        fn decode_random_bytes_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
            if let Ok(c) = Cms::decode(&bytes) {
                prop_assert_eq!(c.encode(), bytes);
            }
        }

        #[test]
        fn decode_mutated_never_panics(s in stream_strategy(), pos in any::<prop::sample::Index>(),
                                       bit in 0u8..8, cut in any::<prop::sample::Index>()) {
            let e = build(0.3, 0.1, &s).encode();
            let mut flipped = e.clone();
            let i = pos.index(flipped.len());
            flipped[i] ^= 1 << bit;
            match Cms::decode(&flipped) {
                Ok(c) => prop_assert_eq!(c.encode(), flipped.clone()),
                Err(err) => prop_assert_eq!(err.kind, ErrorKind::InvalidBinary),
            }
            // in-place functions on corrupt input: error or success, never a panic
            let _ = Cms::add_in_place(&mut flipped.clone(), 5, 1);
            let _ = Cms::count_in_place(&flipped, 5);
            let _ = Cms::merge_in_place(&mut e.clone(), &flipped);
            let _ = Cms::merge_in_place(&mut flipped.clone(), &e);
            let truncated = &e[..cut.index(e.len())];
            prop_assert!(Cms::decode(truncated).is_err());
            prop_assert!(Cms::add_in_place(&mut truncated.to_vec(), 1, 1).is_err());
        }
    }

    #[test]
    fn add_one_in_place_declines_at_the_limits() {
        let mut c = Cms::new(0.5, 0.2).unwrap();
        c.add_hash(7, 3).unwrap();
        let good = c.encode();
        let d = CmsDivisor::new(layout(&good).unwrap().0);
        // total at the int8 limit
        let mut b = good.clone();
        b[26..34].copy_from_slice(&CMS_MAX_TOTAL.to_le_bytes());
        let before = b.clone();
        assert!(!Cms::add_one_in_place(&mut b, &d, 7));
        assert_eq!(b, before);
        // a counter at u64::MAX in the last row: earlier rows are rolled back
        let mut b = good.clone();
        let n = b.len() - 1; // before the (empty) element type trailer
        for at in (n - 8 * c.width as usize..n).step_by(8) {
            b[at..at + 8].copy_from_slice(&u64::MAX.to_le_bytes());
        }
        let before = b.clone();
        assert!(!Cms::add_one_in_place(&mut b, &d, 7));
        assert_eq!(b, before);
        assert!(Cms::add_in_place_with(&mut b.clone(), &d, 7, 1).is_err());
        // a well-formed sketch is accepted
        let mut b = good.clone();
        assert!(Cms::add_one_in_place(&mut b, &d, 7));
        assert_eq!(Cms::count_in_place(&b, 7).unwrap(), 4);
    }

    #[test]
    fn decode_rejects_inconsistent_values() {
        let mut c = Cms::new(0.5, 0.2).unwrap();
        c.add_hash(99, 3).unwrap();
        let good = c.encode();
        let kind = |b: &[u8]| Cms::decode(b).unwrap_err().kind;
        // wrong version / kind
        for version in [0u8, 3, 0x81] {
            let mut b = good.clone();
            b[0] = version;
            assert_eq!(kind(&b), ErrorKind::InvalidBinary);
        }
        let mut b = good.clone();
        b[1] = 0x20;
        assert_eq!(kind(&b), ErrorKind::InvalidBinary);
        // a row that no longer sums to the total
        let mut b = good.clone();
        b[CMS_HEADER_LEN] ^= 1;
        assert_eq!(kind(&b), ErrorKind::InvalidBinary);
        // total changed
        let mut b = good.clone();
        b[26] = 4;
        assert_eq!(kind(&b), ErrorKind::InvalidBinary);
        // eps not matching the width
        let mut b = good.clone();
        b[10..18].copy_from_slice(&0.1f64.to_le_bytes());
        assert_eq!(kind(&b), ErrorKind::InvalidBinary);
        // huge dimensions are rejected before any allocation
        let mut b = good.clone();
        b[2..6].copy_from_slice(&u32::MAX.to_le_bytes());
        b[6..10].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(kind(&b), ErrorKind::InvalidBinary);
        // trailing byte
        let mut b = good.clone();
        b.push(0);
        assert_eq!(kind(&b), ErrorKind::InvalidBinary);
        // total beyond int8 (with matching rows) is rejected
        let mut b = Cms::new(0.9, 0.9).unwrap().encode();
        b[26..34].copy_from_slice(&u64::MAX.to_le_bytes());
        b[CMS_HEADER_LEN..CMS_HEADER_LEN + 8].copy_from_slice(&u64::MAX.to_le_bytes());
        assert_eq!(kind(&b), ErrorKind::InvalidBinary);
    }
}
