//! State-based CRDT counters: the G-Counter (grow-only) and the PN-Counter
//! (increment/decrement), after Shapiro, Preguiça, Baquero and Zawirski,
//! "A comprehensive study of Convergent and Commutative Replicated Data Types",
//! INRIA RR-7506 (2011), specifications 6 and 7.
//!
//! A G-Counter maps each node id to the number of increments that node made; merge is
//! the per-node maximum (a join of the product order), so it is commutative,
//! associative and idempotent, and the value (sum over nodes) only grows. A PN-Counter
//! is a pair of G-Counters `P` (increments) and `N` (decrements); its value is
//! `sum(P) - sum(N)`.
//!
//! Canonical form (so SQL `=` can compare stored bytes): nodes sorted by their UTF-8
//! bytes and zero counts never stored. A zero entry carries no information for a
//! G-Counter (the join with a missing entry is the same), so dropping it everywhere
//! keeps `merge(a, {x:0})` byte-identical to `a`.
//!
//! Limits: node ids are 1..=63 bytes of UTF-8 without U+0000 (PostgreSQL text cannot
//! hold NUL); a per-node count is at most `i64::MAX` (the SQL type is `int8`); a
//! G-Counter (and each part of a PN-Counter) holds at most [`MAX_NODES`] nodes, so a
//! runaway node map fails with a clear error instead of exhausting memory.
//!
//! Text form is JSON, parsed and written by hand here (no serde); see
//! docs/FORMAT.md for the grammar and the byte layout.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use crate::error::{CoreError, Result};

/// Stored format version written by [`GCounter::encode`] / [`PNCounter::encode`].
pub const FORMAT_VERSION: u8 = 1;
/// Kind byte of a stored `gcounter`.
pub const KIND_GCOUNTER: u8 = 0x30;
/// Kind byte of a stored `pncounter`.
pub const KIND_PNCOUNTER: u8 = 0x31;
/// Longest node id, in bytes (one less than PostgreSQL's NAMEDATALEN).
pub const MAX_NODE_ID_BYTES: usize = 63;
/// Most nodes a G-Counter (or each of the two parts of a PN-Counter) may hold.
pub const MAX_NODES: usize = 10_000;
/// Largest per-node count: the SQL side is `int8`.
pub const MAX_COUNT: u64 = i64::MAX as u64;

/// Smallest stored entry: length byte, one node byte, 8-byte count.
const MIN_ENTRY_BYTES: usize = 1 + 1 + 8;

/// Why a node id is unacceptable, or `None` when it is fine.
fn node_id_problem(node: &str) -> Option<String> {
    if node.is_empty() {
        Some("node id must not be empty".to_string())
    } else if node.len() > MAX_NODE_ID_BYTES {
        Some(format!(
            "node id is {} bytes long; at most {MAX_NODE_ID_BYTES} bytes are allowed",
            node.len()
        ))
    } else if node.contains('\0') {
        Some("node id must not contain the character U+0000".to_string())
    } else {
        None
    }
}

/// Check a node id given as a function argument (InvalidParameter on failure).
pub fn validate_node_id(node: &str) -> Result<()> {
    match node_id_problem(node) {
        None => Ok(()),
        Some(p) => Err(CoreError::invalid_parameter(p).with_hint(format!(
            "node ids are 1 to {MAX_NODE_ID_BYTES} bytes of text"
        ))),
    }
}

fn too_many_nodes(type_name: &str) -> CoreError {
    CoreError::invalid_parameter(format!(
        "{type_name} would hold more than {MAX_NODES} distinct node ids"
    ))
    .with_hint("use a small, stable set of node ids (one per replica)")
}

fn negative_amount(what: &str, n: i64) -> CoreError {
    CoreError::invalid_parameter(format!("{what} amount must not be negative, got {n}"))
        .with_hint("use pncounter_decrement to count down")
}

// ---------------------------------------------------------------------------------------
// G-Counter
// ---------------------------------------------------------------------------------------

/// Grow-only counter: node id -> count. Invariant: every count is in `1..=MAX_COUNT`,
/// every node id passes [`validate_node_id`], at most [`MAX_NODES`] entries.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GCounter {
    counts: BTreeMap<String, u64>,
}

impl GCounter {
    /// The empty counter (value 0).
    pub fn new() -> Self {
        GCounter::default()
    }

    /// True when no node has counted anything.
    pub fn is_empty(&self) -> bool {
        self.counts.is_empty()
    }

    /// Number of nodes with a nonzero count.
    pub fn len(&self) -> usize {
        self.counts.len()
    }

    /// The count of one node (0 when absent).
    pub fn get(&self, node: &str) -> i64 {
        // Counts never exceed MAX_COUNT, so the conversion is lossless.
        self.counts.get(node).map_or(0, |&c| c as i64)
    }

    /// Nodes and their counts, sorted by node id bytes.
    pub fn nodes(&self) -> impl ExactSizeIterator<Item = (&str, i64)> + '_ {
        self.counts.iter().map(|(k, &v)| (k.as_str(), v as i64))
    }

    /// Add `n` to `node`'s count. `n < 0` and bad node ids are InvalidParameter; a count
    /// above `i64::MAX` is Overflow. `n == 0` validates the node id but records nothing.
    /// On error the counter is unchanged.
    pub fn increment(&mut self, node: &str, n: i64) -> Result<()> {
        self.increment_as(node, n, "gcounter", "increment")
    }

    fn increment_as(&mut self, node: &str, n: i64, type_name: &str, what: &str) -> Result<()> {
        validate_node_id(node)?;
        if n < 0 {
            return Err(negative_amount(what, n));
        }
        if n == 0 {
            return Ok(());
        }
        let n = n as u64;
        let overflow = || {
            CoreError::overflow(format!(
                "{type_name} count of node \"{node}\" would exceed {MAX_COUNT}"
            ))
        };
        match self.counts.get_mut(node) {
            Some(c) => {
                let sum = c
                    .checked_add(n)
                    .filter(|&s| s <= MAX_COUNT)
                    .ok_or_else(overflow)?;
                *c = sum;
            }
            None => {
                if self.counts.len() >= MAX_NODES {
                    return Err(too_many_nodes(type_name));
                }
                self.counts.insert(node.to_string(), n);
            }
        }
        Ok(())
    }

    /// Sum of all counts, or Overflow when it does not fit an `int8`.
    pub fn value(&self) -> Result<i64> {
        i64::try_from(self.sum_i128())
            .map_err(|_| CoreError::overflow("gcounter value is out of range for type bigint"))
    }

    /// Exact sum: at most MAX_NODES * i64::MAX < 2^77, so i128 cannot overflow.
    fn sum_i128(&self) -> i128 {
        self.counts.values().map(|&c| c as i128).sum()
    }

    /// How many of `other`'s nodes are missing here.
    fn new_nodes_from(&self, other: &GCounter) -> usize {
        other
            .counts
            .keys()
            .filter(|k| !self.counts.contains_key(*k))
            .count()
    }

    fn check_merge_capacity(&self, other: &GCounter, type_name: &str) -> Result<()> {
        if self.counts.len() + other.counts.len() <= MAX_NODES {
            return Ok(()); // cannot exceed the cap; skip the lookups
        }
        if self.counts.len() + self.new_nodes_from(other) > MAX_NODES {
            return Err(too_many_nodes(type_name));
        }
        Ok(())
    }

    /// Apply the per-node max; the caller has checked capacity.
    fn merge_unchecked(&mut self, other: &GCounter) -> bool {
        let mut changed = false;
        for (k, &v) in &other.counts {
            // Look up first so existing nodes (the common case) cost no allocation.
            match self.counts.get_mut(k) {
                Some(c) => {
                    if v > *c {
                        *c = v;
                        changed = true;
                    }
                }
                None => {
                    self.counts.insert(k.clone(), v);
                    changed = true;
                }
            }
        }
        changed
    }

    /// Join: per-node maximum. Fails (leaving `self` unchanged) only when the result would
    /// hold more than [`MAX_NODES`] nodes.
    pub fn merge(&mut self, other: &GCounter) -> Result<()> {
        self.merge_changed(other).map(|_| ())
    }

    /// Like [`merge`](Self::merge), and report whether `self` changed (the trigger skips
    /// updates that change nothing).
    pub fn merge_changed(&mut self, other: &GCounter) -> Result<bool> {
        self.check_merge_capacity(other, "gcounter")?;
        Ok(self.merge_unchecked(other))
    }

    /// Canonical JSON text, e.g. `{"a":5,"b":3}`; `{}` when empty.
    pub fn to_json(&self) -> String {
        let mut out = String::with_capacity(2 + self.counts.len() * 16);
        write_json_object(&mut out, self);
        out
    }

    /// Parse the JSON text form (errors are InvalidText).
    pub fn from_json(text: &str) -> Result<Self> {
        let mut p = Parser::new(text, "gcounter");
        p.skip_ws();
        let g = p.parse_counts()?;
        p.expect_end()?;
        Ok(g)
    }

    /// Stored form: `[1][0x30][payload]`, see docs/FORMAT.md.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(2 + self.payload_len());
        out.push(FORMAT_VERSION);
        out.push(KIND_GCOUNTER);
        self.encode_payload(&mut out);
        out
    }

    /// Validate and decode a stored gcounter (errors are InvalidBinary).
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        let mut r = Reader::new(bytes, "gcounter");
        r.header(KIND_GCOUNTER)?;
        let g = r.counts("")?;
        r.expect_end()?;
        Ok(g)
    }

    fn payload_len(&self) -> usize {
        4 + self.counts.keys().map(|k| 1 + k.len() + 8).sum::<usize>()
    }

    fn encode_payload(&self, out: &mut Vec<u8>) {
        // len() <= MAX_NODES and node ids <= 63 bytes by invariant.
        out.extend_from_slice(&(self.counts.len() as u32).to_le_bytes());
        for (k, &v) in &self.counts {
            out.push(k.len() as u8);
            out.extend_from_slice(k.as_bytes());
            out.extend_from_slice(&v.to_le_bytes());
        }
    }
}

impl fmt::Display for GCounter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_json())
    }
}

impl FromStr for GCounter {
    type Err = CoreError;
    fn from_str(s: &str) -> Result<Self> {
        GCounter::from_json(s)
    }
}

// ---------------------------------------------------------------------------------------
// PN-Counter
// ---------------------------------------------------------------------------------------

/// Increment/decrement counter: two G-Counters, `p` for increments and `n` for
/// decrements (Shapiro et al. 2011, specification 7).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PNCounter {
    p: GCounter,
    n: GCounter,
}

impl PNCounter {
    /// The empty counter (value 0).
    pub fn new() -> Self {
        PNCounter::default()
    }

    /// Build from the two parts (each already a valid G-Counter).
    pub fn from_parts(p: GCounter, n: GCounter) -> Self {
        PNCounter { p, n }
    }

    /// Increments per node.
    pub fn p(&self) -> &GCounter {
        &self.p
    }

    /// Decrements per node.
    pub fn n(&self) -> &GCounter {
        &self.n
    }

    /// True when neither part holds anything.
    pub fn is_empty(&self) -> bool {
        self.p.is_empty() && self.n.is_empty()
    }

    /// Count up by `n` on `node` (`n < 0` is InvalidParameter).
    pub fn increment(&mut self, node: &str, n: i64) -> Result<()> {
        self.p.increment_as(node, n, "pncounter", "increment")
    }

    /// Count down by `n` on `node`: adds `n` to the N part (`n < 0` is InvalidParameter).
    pub fn decrement(&mut self, node: &str, n: i64) -> Result<()> {
        self.n.increment_as(node, n, "pncounter", "decrement")
    }

    /// `sum(P) - sum(N)`, computed exactly; Overflow when it does not fit an `int8`.
    /// (Either sum alone may exceed `i64::MAX` while the difference fits.)
    pub fn value(&self) -> Result<i64> {
        i64::try_from(self.p.sum_i128() - self.n.sum_i128())
            .map_err(|_| CoreError::overflow("pncounter value is out of range for type bigint"))
    }

    /// Per-part join. Fails (leaving `self` unchanged) only when a part would hold more
    /// than [`MAX_NODES`] nodes.
    pub fn merge(&mut self, other: &PNCounter) -> Result<()> {
        self.merge_changed(other).map(|_| ())
    }

    /// Like [`merge`](Self::merge), and report whether `self` changed.
    pub fn merge_changed(&mut self, other: &PNCounter) -> Result<bool> {
        // Check both parts before touching either so a failure changes nothing.
        self.p.check_merge_capacity(&other.p, "pncounter")?;
        self.n.check_merge_capacity(&other.n, "pncounter")?;
        let cp = self.p.merge_unchecked(&other.p);
        let cn = self.n.merge_unchecked(&other.n);
        Ok(cp || cn)
    }

    /// Canonical JSON text `{"p":{...},"n":{...}}` (both parts always present).
    pub fn to_json(&self) -> String {
        let mut out = String::with_capacity(16 + (self.p.len() + self.n.len()) * 16);
        out.push_str("{\"p\":");
        write_json_object(&mut out, &self.p);
        out.push_str(",\"n\":");
        write_json_object(&mut out, &self.n);
        out.push('}');
        out
    }

    /// Parse the JSON text form (errors are InvalidText). Keys `"p"` and `"n"` may come
    /// in either order, each at most once; a missing part is empty.
    pub fn from_json(text: &str) -> Result<Self> {
        let mut p = Parser::new(text, "pncounter");
        p.skip_ws();
        let mut parts: [Option<GCounter>; 2] = [None, None];
        p.expect_byte(b'{', "'{'")?;
        p.skip_ws();
        if p.peek() == Some(b'}') {
            p.pos += 1;
        } else {
            loop {
                p.skip_ws();
                let key_at = p.pos;
                if p.peek() != Some(b'"') {
                    return Err(p.err_at(key_at, "expected \"p\" or \"n\""));
                }
                let key = p.parse_string()?;
                let slot = match key.as_str() {
                    "p" => 0,
                    "n" => 1,
                    _ => {
                        return Err(p.err_at(
                            key_at,
                            &format!(
                                "unknown key \"{}\" (expected \"p\" or \"n\")",
                                escape_for_message(&key)
                            ),
                        ))
                    }
                };
                if parts[slot].is_some() {
                    return Err(p.err_at(key_at, &format!("duplicate key \"{key}\"")));
                }
                p.skip_ws();
                p.expect_byte(b':', "':'")?;
                p.skip_ws();
                parts[slot] = Some(p.parse_counts()?);
                p.skip_ws();
                match p.peek() {
                    Some(b',') => p.pos += 1,
                    Some(b'}') => {
                        p.pos += 1;
                        break;
                    }
                    _ => return Err(p.err("expected ',' or '}'")),
                }
            }
        }
        p.expect_end()?;
        let [pp, nn] = parts;
        Ok(PNCounter {
            p: pp.unwrap_or_default(),
            n: nn.unwrap_or_default(),
        })
    }

    /// Stored form: `[1][0x31][P payload][N payload]`, see docs/FORMAT.md.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(2 + self.p.payload_len() + self.n.payload_len());
        out.push(FORMAT_VERSION);
        out.push(KIND_PNCOUNTER);
        self.p.encode_payload(&mut out);
        self.n.encode_payload(&mut out);
        out
    }

    /// Validate and decode a stored pncounter (errors are InvalidBinary).
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        let mut r = Reader::new(bytes, "pncounter");
        r.header(KIND_PNCOUNTER)?;
        let p = r.counts("P part: ")?;
        let n = r.counts("N part: ")?;
        r.expect_end()?;
        Ok(PNCounter { p, n })
    }
}

impl fmt::Display for PNCounter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_json())
    }
}

impl FromStr for PNCounter {
    type Err = CoreError;
    fn from_str(s: &str) -> Result<Self> {
        PNCounter::from_json(s)
    }
}

// ---------------------------------------------------------------------------------------
// JSON output
// ---------------------------------------------------------------------------------------

fn write_json_object(out: &mut String, g: &GCounter) {
    out.push('{');
    for (i, (k, v)) in g.counts.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_json_string(out, k);
        out.push(':');
        out.push_str(&v.to_string());
    }
    out.push('}');
}

/// Minimal JSON escaping: quote, backslash and C0 controls; everything else verbatim.
fn write_json_string(out: &mut String, s: &str) {
    out.push('"');
    for ch in s.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0C}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Node ids quoted inside error messages: escape like the output so control
/// characters cannot garble the message.
fn escape_for_message(s: &str) -> String {
    let mut out = String::new();
    write_json_string(&mut out, s);
    // Drop the surrounding quotes; callers add their own.
    out.get(1..out.len().saturating_sub(1))
        .unwrap_or_default()
        .to_string()
}

// ---------------------------------------------------------------------------------------
// JSON input (RFC 8259 subset: one object of string -> non-negative integer)
// ---------------------------------------------------------------------------------------

struct Parser<'a> {
    s: &'a [u8],
    pos: usize,
    type_name: &'static str,
}

impl<'a> Parser<'a> {
    fn new(text: &'a str, type_name: &'static str) -> Self {
        Parser {
            s: text.as_bytes(),
            pos: 0,
            type_name,
        }
    }

    fn hint(&self) -> &'static str {
        if self.type_name == "pncounter" {
            r#"a pncounter is written as {"p":{"node-a":5},"n":{"node-b":2}}"#
        } else {
            r#"a gcounter is written as {"node-a":5,"node-b":3}"#
        }
    }

    fn err_at(&self, at: usize, what: &str) -> CoreError {
        CoreError::invalid_text(format!(
            "malformed {} literal: {what} at byte offset {at}",
            self.type_name
        ))
        .with_hint(self.hint())
    }

    /// Error at the current position, saying so when the input ran out.
    fn err(&self, what: &str) -> CoreError {
        if self.pos >= self.s.len() {
            CoreError::invalid_text(format!(
                "malformed {} literal: {what} but the input ended at byte offset {}",
                self.type_name, self.pos
            ))
            .with_hint(self.hint())
        } else {
            self.err_at(self.pos, what)
        }
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.pos).copied()
    }

    /// JSON whitespace: space, tab, LF, CR.
    fn skip_ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.pos += 1;
        }
    }

    fn expect_byte(&mut self, b: u8, name: &str) -> Result<()> {
        if self.peek() == Some(b) {
            self.pos += 1;
            Ok(())
        } else {
            Err(self.err(&format!("expected {name}")))
        }
    }

    fn expect_end(&mut self) -> Result<()> {
        self.skip_ws();
        if self.pos < self.s.len() {
            return Err(self.err("unexpected characters after the end of the object"));
        }
        Ok(())
    }

    /// `{ "node": count, ... }` into a G-Counter. Zero counts are accepted and dropped,
    /// but still count as entries for the duplicate and size checks.
    fn parse_counts(&mut self) -> Result<GCounter> {
        self.expect_byte(b'{', "'{'")?;
        let mut seen: BTreeMap<String, u64> = BTreeMap::new();
        self.skip_ws();
        if self.peek() == Some(b'}') {
            self.pos += 1;
            return Ok(GCounter::new());
        }
        loop {
            self.skip_ws();
            let key_at = self.pos;
            if self.peek() != Some(b'"') {
                return Err(self.err("expected a node id string"));
            }
            let key = self.parse_string()?;
            if let Some(problem) = node_id_problem(&key) {
                return Err(self.err_at(key_at, &problem));
            }
            if seen.contains_key(&key) {
                return Err(self.err_at(
                    key_at,
                    &format!("duplicate node \"{}\"", escape_for_message(&key)),
                ));
            }
            if seen.len() >= MAX_NODES {
                return Err(self.err_at(key_at, &format!("more than {MAX_NODES} nodes")));
            }
            self.skip_ws();
            self.expect_byte(b':', "':' after the node id")?;
            self.skip_ws();
            let count = self.parse_count()?;
            seen.insert(key, count);
            self.skip_ws();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b'}') => {
                    self.pos += 1;
                    break;
                }
                _ => return Err(self.err("expected ',' or '}'")),
            }
        }
        seen.retain(|_, c| *c != 0);
        Ok(GCounter { counts: seen })
    }

    /// A JSON number restricted to a non-negative integer in `0..=i64::MAX`.
    fn parse_count(&mut self) -> Result<u64> {
        let start = self.pos;
        match self.peek() {
            Some(b'-') => return Err(self.err("counts must be non-negative integers (found '-')")),
            Some(b'0'..=b'9') => {}
            _ => return Err(self.err("expected a non-negative integer count")),
        }
        let mut value: u64 = 0;
        let mut too_large = false;
        while let Some(d @ b'0'..=b'9') = self.peek() {
            if self.pos == start + 1 && value == 0 {
                return Err(self.err_at(start, "leading zeros are not allowed in a count"));
            }
            match value
                .checked_mul(10)
                .and_then(|v| v.checked_add(u64::from(d - b'0')))
            {
                Some(v) if v <= MAX_COUNT => value = v,
                _ => too_large = true,
            }
            self.pos += 1;
        }
        if too_large {
            return Err(self.err_at(start, &format!("count exceeds the maximum {MAX_COUNT}")));
        }
        if let Some(b'.' | b'e' | b'E') = self.peek() {
            return Err(self.err_at(
                start,
                "counts must be integers without a fraction or exponent",
            ));
        }
        Ok(value)
    }

    /// A JSON string starting at the opening quote, with all RFC 8259 escapes.
    fn parse_string(&mut self) -> Result<String> {
        self.expect_byte(b'"', "'\"'")?;
        let mut buf: Vec<u8> = Vec::new();
        loop {
            let Some(b) = self.peek() else {
                return Err(self.err("unterminated string"));
            };
            match b {
                b'"' => {
                    self.pos += 1;
                    break;
                }
                b'\\' => {
                    let esc_at = self.pos;
                    self.pos += 1;
                    let Some(e) = self.peek() else {
                        return Err(self.err("unterminated escape sequence"));
                    };
                    self.pos += 1;
                    let ch = match e {
                        b'"' => '"',
                        b'\\' => '\\',
                        b'/' => '/',
                        b'b' => '\u{08}',
                        b'f' => '\u{0C}',
                        b'n' => '\n',
                        b'r' => '\r',
                        b't' => '\t',
                        b'u' => self.parse_unicode_escape(esc_at)?,
                        _ => return Err(self.err_at(esc_at, "invalid escape sequence in string")),
                    };
                    let mut tmp = [0u8; 4];
                    buf.extend_from_slice(ch.encode_utf8(&mut tmp).as_bytes());
                }
                0x00..=0x1F => {
                    return Err(self.err("unescaped control character in string"));
                }
                _ => {
                    // Input is a &str, so raw bytes copied whole keep UTF-8 valid.
                    buf.push(b);
                    self.pos += 1;
                }
            }
        }
        String::from_utf8(buf).map_err(|_| self.err("invalid UTF-8 in string"))
    }

    /// After `\u`: four hex digits, combining a surrogate pair when present.
    fn parse_unicode_escape(&mut self, esc_at: usize) -> Result<char> {
        let hi = self.hex4(esc_at)?;
        let code = match hi {
            0xD800..=0xDBFF => {
                if self.s.get(self.pos) != Some(&b'\\') || self.s.get(self.pos + 1) != Some(&b'u') {
                    return Err(self.err_at(esc_at, "lone high surrogate in \\u escape"));
                }
                let lo_at = self.pos;
                self.pos += 2;
                let lo = self.hex4(lo_at)?;
                if !(0xDC00..=0xDFFF).contains(&lo) {
                    return Err(self.err_at(esc_at, "lone high surrogate in \\u escape"));
                }
                0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00)
            }
            0xDC00..=0xDFFF => {
                return Err(self.err_at(esc_at, "lone low surrogate in \\u escape"));
            }
            c => c,
        };
        char::from_u32(code).ok_or_else(|| self.err_at(esc_at, "invalid \\u escape"))
    }

    fn hex4(&mut self, esc_at: usize) -> Result<u32> {
        let mut v = 0u32;
        for _ in 0..4 {
            let d = match self.peek() {
                Some(c @ b'0'..=b'9') => c - b'0',
                Some(c @ b'a'..=b'f') => c - b'a' + 10,
                Some(c @ b'A'..=b'F') => c - b'A' + 10,
                _ => return Err(self.err_at(esc_at, "\\u escape needs exactly four hex digits")),
            };
            v = v * 16 + u32::from(d);
            self.pos += 1;
        }
        Ok(v)
    }
}

// ---------------------------------------------------------------------------------------
// Binary decoding
// ---------------------------------------------------------------------------------------

struct Reader<'a> {
    b: &'a [u8],
    pos: usize,
    type_name: &'static str,
}

impl<'a> Reader<'a> {
    fn new(b: &'a [u8], type_name: &'static str) -> Self {
        Reader {
            b,
            pos: 0,
            type_name,
        }
    }

    fn err(&self, what: impl fmt::Display) -> CoreError {
        CoreError::invalid_binary(format!("invalid {} value: {what}", self.type_name))
    }

    fn remaining(&self) -> usize {
        self.b.len().saturating_sub(self.pos)
    }

    fn take(&mut self, n: usize, what: fmt::Arguments<'_>) -> Result<&'a [u8]> {
        let end = self.pos.checked_add(n);
        match end.and_then(|e| self.b.get(self.pos..e)) {
            Some(s) => {
                self.pos += n;
                Ok(s)
            }
            None => Err(self.err(format_args!(
                "truncated: {what} needs {n} bytes at offset {} but only {} remain",
                self.pos,
                self.remaining()
            ))),
        }
    }

    fn u8(&mut self, what: fmt::Arguments<'_>) -> Result<u8> {
        Ok(self.take(1, what)?[0])
    }

    fn u32(&mut self, what: fmt::Arguments<'_>) -> Result<u32> {
        let s = self.take(4, what)?;
        Ok(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
    }

    fn u64(&mut self, what: fmt::Arguments<'_>) -> Result<u64> {
        let s = self.take(8, what)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(s);
        Ok(u64::from_le_bytes(a))
    }

    fn header(&mut self, kind: u8) -> Result<()> {
        let version = self.u8(format_args!("format version"))?;
        if version != FORMAT_VERSION {
            return Err(self.err(format_args!("unsupported format version {version}")));
        }
        let k = self.u8(format_args!("kind byte"))?;
        if k != kind {
            let other = match k {
                KIND_GCOUNTER => " (a gcounter)",
                KIND_PNCOUNTER => " (a pncounter)",
                _ => "",
            };
            return Err(self.err(format_args!(
                "kind byte is 0x{k:02x}{other}, expected 0x{kind:02x}"
            )));
        }
        Ok(())
    }

    /// `[n u32][n x (len u8, node bytes, count u64)]`, strictly ascending, canonical.
    fn counts(&mut self, part: &str) -> Result<GCounter> {
        let n = self.u32(format_args!("{part}node count"))? as usize;
        if n > MAX_NODES {
            return Err(self.err(format_args!(
                "{part}{n} nodes declared, at most {MAX_NODES} allowed"
            )));
        }
        if n.saturating_mul(MIN_ENTRY_BYTES) > self.remaining() {
            return Err(self.err(format_args!(
                "{part}{n} nodes declared but only {} bytes follow",
                self.remaining()
            )));
        }
        let mut entries: Vec<(String, u64)> = Vec::with_capacity(n);
        for i in 0..n {
            let at = self.pos;
            let len = self.u8(format_args!("{part}length of node {i}"))? as usize;
            if len == 0 || len > MAX_NODE_ID_BYTES {
                return Err(self.err(format_args!(
                    "{part}node {i} at offset {at} has length {len}, expected 1..={MAX_NODE_ID_BYTES}"
                )));
            }
            let raw = self.take(len, format_args!("{part}node id {i}"))?;
            let node = std::str::from_utf8(raw).map_err(|_| {
                self.err(format_args!(
                    "{part}node id {i} at offset {at} is not valid UTF-8"
                ))
            })?;
            if node.contains('\0') {
                return Err(self.err(format_args!(
                    "{part}node id {i} at offset {at} contains NUL"
                )));
            }
            if let Some((prev, _)) = entries.last() {
                if prev.as_bytes() >= raw {
                    return Err(self.err(format_args!(
                        "{part}node ids are not strictly ascending at node {i} (offset {at})"
                    )));
                }
            }
            let count = self.u64(format_args!("{part}count of node {i}"))?;
            if count == 0 || count > MAX_COUNT {
                return Err(self.err(format_args!(
                    "{part}count {count} of node {i} (offset {at}) is outside 1..={MAX_COUNT}"
                )));
            }
            entries.push((node.to_string(), count));
        }
        // Sorted input: BTreeMap builds it in bulk.
        Ok(GCounter {
            counts: entries.into_iter().collect(),
        })
    }

    fn expect_end(&self) -> Result<()> {
        if self.pos != self.b.len() {
            return Err(self.err(format_args!(
                "{} unexpected trailing bytes at offset {}",
                self.remaining(),
                self.pos
            )));
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;
    use proptest::prelude::*;

    fn g(pairs: &[(&str, i64)]) -> GCounter {
        let mut c = GCounter::new();
        for &(k, v) in pairs {
            c.increment(k, v).unwrap();
        }
        c
    }

    fn kind<T: fmt::Debug>(r: Result<T>) -> ErrorKind {
        r.unwrap_err().kind
    }

    // ----- unit tests -----------------------------------------------------------------

    #[test]
    fn increment_value_merge_basics() {
        let mut a = GCounter::new();
        assert_eq!(a.value().unwrap(), 0);
        a.increment("a", 5).unwrap();
        a.increment("a", 2).unwrap();
        a.increment("b", 3).unwrap();
        a.increment("c", 0).unwrap();
        assert_eq!(a.value().unwrap(), 10);
        assert_eq!(a.len(), 2);
        assert_eq!(a.get("a"), 7);
        assert_eq!(a.get("c"), 0);
        let b = g(&[("a", 4), ("c", 9)]);
        let mut m = a.clone();
        assert!(m.merge_changed(&b).unwrap());
        assert_eq!(m, g(&[("a", 7), ("b", 3), ("c", 9)]));
        assert!(!m.merge_changed(&b).unwrap());
        assert!(!m.merge_changed(&a).unwrap());
        assert!(!m.merge_changed(&GCounter::new()).unwrap());
        let nodes: Vec<_> = m.nodes().collect();
        assert_eq!(nodes, vec![("a", 7), ("b", 3), ("c", 9)]);
    }

    #[test]
    fn parameter_errors() {
        let mut a = GCounter::new();
        assert_eq!(kind(a.increment("a", -1)), ErrorKind::InvalidParameter);
        assert_eq!(kind(a.increment("", 1)), ErrorKind::InvalidParameter);
        assert_eq!(kind(a.increment("", 0)), ErrorKind::InvalidParameter);
        assert_eq!(
            kind(a.increment(&"x".repeat(64), 1)),
            ErrorKind::InvalidParameter
        );
        assert_eq!(kind(a.increment("a\0b", 1)), ErrorKind::InvalidParameter);
        a.increment(&"x".repeat(63), 1).unwrap();
        // 63 bytes of multi-byte characters is fine; 64 is not.
        a.increment(&"é".repeat(31), 1).unwrap(); // 62 bytes
        assert_eq!(
            kind(a.increment(&"é".repeat(32), 1)),
            ErrorKind::InvalidParameter
        );
        let mut p = PNCounter::new();
        assert_eq!(kind(p.decrement("a", -3)), ErrorKind::InvalidParameter);
        assert_eq!(
            kind(p.increment("a", i64::MIN)),
            ErrorKind::InvalidParameter
        );
        assert!(p.is_empty());
    }

    #[test]
    fn overflow_errors_leave_counter_unchanged() {
        let mut a = g(&[("a", i64::MAX)]);
        let before = a.clone();
        assert_eq!(kind(a.increment("a", 1)), ErrorKind::Overflow);
        assert_eq!(a, before);
        assert_eq!(a.value().unwrap(), i64::MAX);
        a.increment("b", 1).unwrap();
        assert_eq!(kind(a.value()), ErrorKind::Overflow);

        // PN: each sum may exceed i64 while the difference fits.
        let mut p = PNCounter::new();
        p.increment("a", i64::MAX).unwrap();
        p.increment("b", 10).unwrap();
        p.decrement("a", i64::MAX).unwrap();
        p.decrement("c", 4).unwrap();
        assert_eq!(p.value().unwrap(), 6);
        // -(2^63) fits exactly, one more does not.
        let mut q = PNCounter::new();
        q.decrement("a", i64::MAX).unwrap();
        q.decrement("b", 1).unwrap();
        assert_eq!(q.value().unwrap(), i64::MIN);
        q.decrement("c", 1).unwrap();
        assert_eq!(kind(q.value()), ErrorKind::Overflow);
        let mut r = PNCounter::new();
        r.increment("a", i64::MAX).unwrap();
        r.increment("b", 1).unwrap();
        assert_eq!(kind(r.value()), ErrorKind::Overflow);
    }

    fn full(prefix: &str, n: usize) -> GCounter {
        let mut c = GCounter::new();
        for i in 0..n {
            c.increment(&format!("{prefix}{i}"), 1).unwrap();
        }
        c
    }

    #[test]
    fn node_cap() {
        let mut a = full("n", MAX_NODES);
        assert_eq!(a.len(), MAX_NODES);
        a.increment("n0", 1).unwrap(); // existing node: fine
        let before = a.clone();
        assert_eq!(kind(a.increment("new", 1)), ErrorKind::InvalidParameter);
        a.increment("new", 0).unwrap(); // records nothing
        assert_eq!(a, before);
        let b = g(&[("n1", 50), ("zz", 1)]);
        assert_eq!(kind(a.merge(&b)), ErrorKind::InvalidParameter);
        assert_eq!(a, before, "failed merge must not change anything");
        a.merge(&g(&[("n1", 50)])).unwrap();
        assert_eq!(a.get("n1"), 50);

        // PN: a failing N part must not half-apply the P part.
        let mut p = PNCounter::from_parts(GCounter::new(), full("n", MAX_NODES));
        let before = p.clone();
        let other = PNCounter::from_parts(g(&[("x", 1)]), g(&[("y", 1)]));
        assert_eq!(kind(p.merge(&other)), ErrorKind::InvalidParameter);
        assert_eq!(p, before);

        // Text and binary reject more than MAX_NODES entries.
        let mut text = String::from("{");
        for i in 0..=MAX_NODES {
            if i > 0 {
                text.push(',');
            }
            text.push_str(&format!("\"k{i}\":0"));
        }
        text.push('}');
        assert_eq!(kind(GCounter::from_json(&text)), ErrorKind::InvalidText);
        let mut bytes = vec![1, 0x30];
        bytes.extend_from_slice(&((MAX_NODES as u32) + 1).to_le_bytes());
        assert_eq!(kind(GCounter::decode(&bytes)), ErrorKind::InvalidBinary);
        // Exactly MAX_NODES round-trips.
        let m = full("n", MAX_NODES);
        assert_eq!(GCounter::decode(&m.encode()).unwrap(), m);
        assert_eq!(GCounter::from_json(&m.to_json()).unwrap(), m);
    }

    #[test]
    fn pn_basics_and_merge_changed() {
        let mut a = PNCounter::new();
        a.increment("a", 5).unwrap();
        a.decrement("b", 2).unwrap();
        a.decrement("a", 1).unwrap();
        assert_eq!(a.value().unwrap(), 2);
        let mut b = PNCounter::new();
        b.increment("c", 10).unwrap();
        let mut m = a.clone();
        assert!(m.merge_changed(&b).unwrap());
        assert_eq!(m.value().unwrap(), 12);
        assert!(!m.merge_changed(&a).unwrap());
        assert!(!m.merge_changed(&b).unwrap());
        let mut only_n = PNCounter::new();
        only_n.decrement("b", 3).unwrap();
        assert!(m.merge_changed(&only_n).unwrap());
        assert_eq!(m.value().unwrap(), 11);
    }

    // ----- JSON -------------------------------------------------------------------------

    #[test]
    fn json_output() {
        assert_eq!(GCounter::new().to_json(), "{}");
        assert_eq!(
            g(&[("node-b", 3), ("node-a", 5)]).to_json(),
            r#"{"node-a":5,"node-b":3}"#
        );
        assert_eq!(
            g(&[("q\"\\/\n\u{1}\u{7f}é😀", 1)]).to_json(),
            "{\"q\\\"\\\\/\\n\\u0001\u{7f}é😀\":1}"
        );
        assert_eq!(PNCounter::new().to_json(), r#"{"p":{},"n":{}}"#);
        let mut p = PNCounter::new();
        p.increment("a", 5).unwrap();
        p.decrement("b", 2).unwrap();
        assert_eq!(p.to_json(), r#"{"p":{"a":5},"n":{"b":2}}"#);
        assert_eq!(p.to_string(), p.to_json());
        // Sorted by bytes: uppercase before lowercase, multi-byte after ASCII.
        assert_eq!(
            g(&[("é", 1), ("b", 1), ("B", 1)]).to_json(),
            r#"{"B":1,"b":1,"é":1}"#
        );
    }

    #[test]
    fn json_input_accepts() {
        let cases: &[(&str, &str)] = &[
            ("{}", "{}"),
            (" \t\r\n{ \n} \n", "{}"),
            (r#"{"b":3,"a":5}"#, r#"{"a":5,"b":3}"#),
            (" { \"a\" : 5 , \"b\"\n:\t3 } ", r#"{"a":5,"b":3}"#),
            (r#"{"a":0}"#, "{}"),
            (r#"{"a":0,"b":7}"#, r#"{"b":7}"#),
            (
                r#"{"a":9223372036854775807}"#,
                r#"{"a":9223372036854775807}"#,
            ),
            (r#"{"\u0061\u00e9":1}"#, r#"{"aé":1}"#),
            (r#"{"\ud83d\ude00":1}"#, r#"{"😀":1}"#),
            (r#"{"\uD83D\uDE00":1}"#, r#"{"😀":1}"#),
            (r#"{"\"\\\/\b\f\n\r\t":1}"#, r#"{"\"\\/\b\f\n\r\t":1}"#),
            (r#"{"\u001F":1}"#, r#"{"\u001f":1}"#),
        ];
        for (input, want) in cases {
            let c = GCounter::from_json(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(&c.to_json(), want, "input {input}");
            assert_eq!(input.parse::<GCounter>().unwrap(), c);
        }
        let pn: &[(&str, &str)] = &[
            ("{}", r#"{"p":{},"n":{}}"#),
            (
                r#"{"n":{"b":2},"p":{"a":5}}"#,
                r#"{"p":{"a":5},"n":{"b":2}}"#,
            ),
            (r#" { "p" : { "a" : 5 } } "#, r#"{"p":{"a":5},"n":{}}"#),
            (r#"{"n":{"b":2}}"#, r#"{"p":{},"n":{"b":2}}"#),
            (r#"{"\u0070":{"a":0},"n":{}}"#, r#"{"p":{},"n":{}}"#),
        ];
        for (input, want) in pn {
            let c = PNCounter::from_json(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(&c.to_json(), want, "input {input}");
        }
    }

    #[test]
    fn json_input_rejects() {
        let long = format!(r#"{{"{}":1}}"#, "x".repeat(64));
        let cases: &[(&str, &str)] = &[
            ("", "'{'"),
            ("   ", "'{'"),
            ("[]", "'{'"),
            ("null", "'{'"),
            (r#"{"a":-1}"#, "non-negative"),
            (r#"{"a":-0}"#, "non-negative"),
            (r#"{"a":+1}"#, "expected a non-negative integer"),
            (r#"{"a":1,"a":2}"#, "duplicate node \"a\" at byte offset 7"),
            (r#"{"a":0,"a":0}"#, "duplicate node"),
            (r#"{"a":1,"\u0061":2}"#, "duplicate node"),
            (r#"{"a":1"#, "input ended"),
            (r#"{"a":1,"#, "input ended"),
            (r#"{"a"#, "unterminated string"),
            (r#"{"a":"#, "input ended"),
            (
                r#"{"a":1}x"#,
                "after the end of the object at byte offset 7",
            ),
            (r#"{"a":1}{}"#, "after the end"),
            (r#"{"a":1,}"#, "expected a node id string at byte offset 7"),
            (r#"{,}"#, "expected a node id string"),
            (r#"{"a" 1}"#, "':'"),
            (r#"{"a":1 "b":2}"#, "expected ',' or '}'"),
            (r#"{"a":9223372036854775808}"#, "exceeds the maximum"),
            (r#"{"a":18446744073709551616}"#, "exceeds the maximum"),
            (
                r#"{"a":99999999999999999999999999999}"#,
                "exceeds the maximum",
            ),
            (r#"{"a":1.0}"#, "fraction or exponent"),
            (r#"{"a":1e3}"#, "fraction or exponent"),
            (r#"{"a":1E3}"#, "fraction or exponent"),
            (r#"{"a":01}"#, "leading zeros"),
            (r#"{"a":00}"#, "leading zeros"),
            (r#"{"a":"1"}"#, "expected a non-negative integer"),
            (r#"{"a":null}"#, "expected a non-negative integer"),
            (r#"{"a":true}"#, "expected a non-negative integer"),
            (r#"{"":1}"#, "must not be empty"),
            (&long, "64 bytes long"),
            (r#"{"\x":1}"#, "invalid escape"),
            (r#"{"\u12":1}"#, "four hex digits"),
            (r#"{"\u12g4":1}"#, "four hex digits"),
            (r#"{"\ud800":1}"#, "lone high surrogate"),
            (r#"{"\ud800\u0041":1}"#, "lone high surrogate"),
            (r#"{"\ud800\ud800":1}"#, "lone high surrogate"),
            (r#"{"\udc00":1}"#, "lone low surrogate"),
            (r#"{"\u0000":1}"#, "U+0000"),
            ("{\"a\nb\":1}", "unescaped control character"),
            ("{\"a\":1}\u{0}", "after the end"),
            ("{\u{a0}}", "expected a node id string"), // NBSP is not JSON whitespace
            (r#"{a:1}"#, "expected a node id string"),
            (r#"{"a":1}}"#, "after the end"),
            (r#"{"a"#, "unterminated"),
            (r#"{"a\"#, "unterminated escape"),
        ];
        for (input, want) in cases {
            let e = GCounter::from_json(input).expect_err(input);
            assert_eq!(e.kind, ErrorKind::InvalidText, "{input}");
            assert!(
                e.message.contains(want),
                "input {input:?}: message {:?}",
                e.message
            );
            assert!(
                e.message.starts_with("malformed gcounter literal: "),
                "{}",
                e.message
            );
            assert!(e.message.contains("byte offset"), "{}", e.message);
        }
        let pn: &[(&str, &str)] = &[
            (r#"{"p":{},"p":{}}"#, "duplicate key \"p\""),
            (r#"{"x":{}}"#, "unknown key \"x\""),
            (r#"{"P":{}}"#, "unknown key"),
            (r#"{"p":{"a":-1}}"#, "non-negative"),
            (r#"{"p":{"a":1,"a":1}}"#, "duplicate node"),
            (r#"{"p":5}"#, "'{'"),
            (r#"{"p":{},}"#, "expected \"p\" or \"n\""),
            (r#"{"p":{}} x"#, "after the end"),
            (r#"{"p":{}"#, "input ended"),
            (r#"{"a":1}"#, "unknown key"),
        ];
        for (input, want) in pn {
            let e = PNCounter::from_json(input).expect_err(input);
            assert_eq!(e.kind, ErrorKind::InvalidText, "{input}");
            assert!(
                e.message.contains(want),
                "input {input:?}: message {:?}",
                e.message
            );
            assert!(
                e.message.starts_with("malformed pncounter literal: "),
                "{}",
                e.message
            );
        }
    }

    // ----- binary -----------------------------------------------------------------------

    #[test]
    fn golden_bytes_gcounter() {
        // {"a":5,"bc":3}, derived by hand from docs/FORMAT.md.
        let want: Vec<u8> = vec![
            0x01, 0x30, // version 1, kind gcounter
            0x02, 0x00, 0x00, 0x00, // 2 entries
            0x01, b'a', 0x05, 0, 0, 0, 0, 0, 0, 0, // "a" -> 5
            0x02, b'b', b'c', 0x03, 0, 0, 0, 0, 0, 0, 0, // "bc" -> 3
        ];
        let c = g(&[("bc", 3), ("a", 5)]);
        assert_eq!(c.encode(), want);
        assert_eq!(GCounter::decode(&want).unwrap(), c);
        assert_eq!(GCounter::new().encode(), vec![0x01, 0x30, 0, 0, 0, 0]);
    }

    #[test]
    fn golden_bytes_pncounter() {
        // {"p":{"a":5},"n":{"b":2}}
        let want: Vec<u8> = vec![
            0x01, 0x31, // version 1, kind pncounter
            0x01, 0x00, 0x00, 0x00, // P: 1 entry
            0x01, b'a', 0x05, 0, 0, 0, 0, 0, 0, 0, // "a" -> 5
            0x01, 0x00, 0x00, 0x00, // N: 1 entry
            0x01, b'b', 0x02, 0, 0, 0, 0, 0, 0, 0, // "b" -> 2
        ];
        let p = PNCounter::from_json(r#"{"p":{"a":5},"n":{"b":2}}"#).unwrap();
        assert_eq!(p.encode(), want);
        assert_eq!(PNCounter::decode(&want).unwrap(), p);
        assert_eq!(
            PNCounter::new().encode(),
            vec![0x01, 0x31, 0, 0, 0, 0, 0, 0, 0, 0]
        );
        // Big count, little-endian.
        let big = g(&[("z", i64::MAX)]);
        assert_eq!(
            big.encode(),
            vec![1, 0x30, 1, 0, 0, 0, 1, b'z', 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f]
        );
    }

    #[test]
    fn binary_rejects() {
        let good = g(&[("a", 5), ("bc", 3)]).encode();
        let mut cases: Vec<(Vec<u8>, &str)> = vec![
            (vec![], "truncated"),
            (vec![1], "truncated"),
            (vec![2, 0x30, 0, 0, 0, 0], "unsupported format version 2"),
            (vec![0, 0x30, 0, 0, 0, 0], "unsupported format version 0"),
            (vec![1, 0x31, 0, 0, 0, 0, 0, 0, 0, 0], "(a pncounter)"),
            (vec![1, 0x01, 0, 0, 0, 0], "kind byte is 0x01"),
            (vec![1, 0x30, 0, 0, 0], "truncated"),
            (
                vec![1, 0x30, 1, 0, 0, 0],
                "1 nodes declared but only 0 bytes follow",
            ),
            (vec![1, 0x30, 0xff, 0xff, 0xff, 0xff], "at most 10000"),
            (vec![1, 0x30, 0, 0, 0, 0, 0], "1 unexpected trailing bytes"),
            (
                vec![1, 0x30, 1, 0, 0, 0, 0, 5, 0, 0, 0, 0, 0, 0, 0, 0],
                "length 0",
            ),
            (
                vec![1, 0x30, 1, 0, 0, 0, 64, 5, 0, 0, 0, 0, 0, 0, 0, 0],
                "length 64",
            ),
            (
                vec![1, 0x30, 1, 0, 0, 0, 1, b'a', 0, 0, 0, 0, 0, 0, 0, 0],
                "count 0",
            ),
            (
                vec![1, 0x30, 1, 0, 0, 0, 1, b'a', 0, 0, 0, 0, 0, 0, 0, 0x80],
                "outside",
            ),
            (
                vec![1, 0x30, 1, 0, 0, 0, 1, 0xff, 1, 0, 0, 0, 0, 0, 0, 0],
                "not valid UTF-8",
            ),
            (
                vec![1, 0x30, 1, 0, 0, 0, 1, 0x00, 1, 0, 0, 0, 0, 0, 0, 0],
                "contains NUL",
            ),
            (
                vec![
                    1, 0x30, 1, 0, 0, 0, 9, b'a', b'a', b'a', b'a', b'a', b'a', b'a', b'a', b'a',
                ],
                "count of node 0 needs 8 bytes",
            ),
            (good[..good.len() - 1].to_vec(), "truncated"),
        ];
        // Unsorted and duplicate nodes.
        let mut unsorted = vec![1, 0x30, 2, 0, 0, 0];
        unsorted.extend_from_slice(&[1, b'b', 1, 0, 0, 0, 0, 0, 0, 0]);
        unsorted.extend_from_slice(&[1, b'a', 1, 0, 0, 0, 0, 0, 0, 0]);
        cases.push((unsorted, "not strictly ascending"));
        let mut dup = vec![1, 0x30, 2, 0, 0, 0];
        dup.extend_from_slice(&[1, b'a', 1, 0, 0, 0, 0, 0, 0, 0]);
        dup.extend_from_slice(&[1, b'a', 2, 0, 0, 0, 0, 0, 0, 0]);
        cases.push((dup, "not strictly ascending"));
        for (bytes, want) in &cases {
            let e = GCounter::decode(bytes).expect_err(&format!("{bytes:?}"));
            assert_eq!(e.kind, ErrorKind::InvalidBinary);
            assert!(e.message.contains(want), "{bytes:?}: {}", e.message);
        }
        // pncounter: a gcounter is not a pncounter; the N part is validated too.
        let e = PNCounter::decode(&good).unwrap_err();
        assert!(e.message.contains("(a gcounter)"), "{}", e.message);
        let e = PNCounter::decode(&[1, 0x31, 0, 0, 0, 0, 1, 0, 0]).unwrap_err();
        assert!(e.message.contains("N part"), "{}", e.message);
        let e = PNCounter::decode(&[1, 0x31, 0, 0, 0, 0, 0, 0, 0, 0, 9]).unwrap_err();
        assert!(e.message.contains("trailing"), "{}", e.message);
    }

    // ----- property tests ---------------------------------------------------------------

    /// Node ids: mostly from a tiny alphabet (so replicas share nodes), sometimes
    /// arbitrary valid text including escapes-worthy characters.
    fn node_id() -> impl Strategy<Value = String> {
        prop_oneof![
            4 => "[a-d]{1,2}",
            1 => any::<String>().prop_map(|s| {
                // Keep whole characters up to 63 bytes; NUL is not allowed.
                let mut out = String::new();
                for ch in s.chars().filter(|&c| c != '\0') {
                    if out.len() + ch.len_utf8() > MAX_NODE_ID_BYTES {
                        break;
                    }
                    out.push(ch);
                }
                if out.is_empty() { "x".to_string() } else { out }
            }),
            1 => prop::sample::select(vec!["\"", "\\", "\n", "é", "😀", "\u{1f}", "/"])
                .prop_map(String::from),
        ]
    }

    fn count() -> impl Strategy<Value = i64> {
        prop_oneof![4 => 0i64..1000, 1 => 0i64..=i64::MAX]
    }

    /// Built directly (max per node) so large counts do not trip increment overflow.
    fn gcounter_with(counts: impl Strategy<Value = i64>) -> impl Strategy<Value = GCounter> {
        prop::collection::vec((node_id(), counts), 0..8).prop_map(|v| {
            let mut c = GCounter::new();
            for (k, n) in v {
                c.merge(&g(&[(&k, n)])).unwrap();
            }
            c
        })
    }

    fn gcounter() -> impl Strategy<Value = GCounter> {
        gcounter_with(count())
    }

    fn pncounter() -> impl Strategy<Value = PNCounter> {
        (gcounter(), gcounter()).prop_map(|(p, n)| PNCounter::from_parts(p, n))
    }

    fn merged(a: &GCounter, b: &GCounter) -> GCounter {
        let mut m = a.clone();
        m.merge(b).unwrap();
        m
    }

    fn pmerged(a: &PNCounter, b: &PNCounter) -> PNCounter {
        let mut m = a.clone();
        m.merge(b).unwrap();
        m
    }

    /// Write `c` as JSON with random whitespace, random key order, zero entries and
    /// needless `\uXXXX` escapes; parsing it must give `c` back.
    fn noisy_json(c: &GCounter, seed: u64, zeros: &[String]) -> String {
        use rand::{rngs::SmallRng, seq::SliceRandom, Rng, SeedableRng};
        let mut rng = SmallRng::seed_from_u64(seed);
        let ws = |rng: &mut SmallRng| -> String {
            let n = rng.gen_range(0..3);
            (0..n)
                .map(|_| *[" ", "\t", "\n", "\r"].choose(rng).unwrap())
                .collect()
        };
        let mut entries: Vec<(String, u64)> =
            c.nodes().map(|(k, v)| (k.to_string(), v as u64)).collect();
        for z in zeros {
            if c.get(z) == 0 && !entries.iter().any(|(k, _)| k == z) {
                entries.push((z.clone(), 0));
            }
        }
        entries.shuffle(&mut rng);
        let mut out = ws(&mut rng) + "{";
        for (i, (k, v)) in entries.iter().enumerate() {
            if i > 0 {
                out += &(ws(&mut rng) + ",");
            }
            out += &(ws(&mut rng) + "\"");
            for ch in k.chars() {
                let escape = matches!(ch, '"' | '\\') || (ch as u32) < 0x20 || rng.gen_bool(0.3);
                if escape {
                    let mut units = [0u16; 2];
                    for u in ch.encode_utf16(&mut units) {
                        if rng.gen_bool(0.5) {
                            out += &format!("\\u{u:04x}");
                        } else {
                            out += &format!("\\u{u:04X}");
                        }
                    }
                } else {
                    out.push(ch);
                }
            }
            out += &format!("\"{}:{}{v}", ws(&mut rng), ws(&mut rng));
        }
        out += &(ws(&mut rng) + "}" + &ws(&mut rng));
        out
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn merge_commutative(a in gcounter(), b in gcounter()) {
            prop_assert_eq!(merged(&a, &b), merged(&b, &a));
        }

        #[test]
        fn merge_associative(a in gcounter(), b in gcounter(), c in gcounter()) {
            prop_assert_eq!(merged(&merged(&a, &b), &c), merged(&a, &merged(&b, &c)));
        }

        #[test]
        fn merge_idempotent(a in gcounter(), b in gcounter()) {
            prop_assert_eq!(merged(&a, &a), a.clone());
            let ab = merged(&a, &b);
            prop_assert_eq!(merged(&ab, &b), ab.clone());
            let mut x = ab.clone();
            prop_assert!(!x.merge_changed(&a).unwrap());
            prop_assert!(!x.merge_changed(&b).unwrap());
        }

        #[test]
        fn merge_changed_iff_different(a in gcounter(), b in gcounter()) {
            let mut x = a.clone();
            let changed = x.merge_changed(&b).unwrap();
            prop_assert_eq!(changed, x != a);
        }

        #[test]
        fn pn_merge_laws(a in pncounter(), b in pncounter(), c in pncounter()) {
            prop_assert_eq!(pmerged(&a, &b), pmerged(&b, &a));
            prop_assert_eq!(pmerged(&pmerged(&a, &b), &c), pmerged(&a, &pmerged(&b, &c)));
            prop_assert_eq!(pmerged(&a, &a), a.clone());
            let mut x = a.clone();
            let changed = x.merge_changed(&b).unwrap();
            prop_assert_eq!(changed, x != a);
        }

        #[test]
        fn value_monotone(a in gcounter_with(0i64..1_000_000), b in gcounter_with(0i64..1_000_000),
                          node in node_id(), n in 0i64..1_000_000) {
            let va = a.value().unwrap();
            let m = merged(&a, &b);
            prop_assert!(m.value().unwrap() >= va);
            prop_assert!(m.value().unwrap() >= b.value().unwrap());
            let mut i = a.clone();
            i.increment(&node, n).unwrap();
            prop_assert_eq!(i.value().unwrap(), va + n);
        }

        /// For a node owned by replica `a` (so `a` has the largest count for it),
        /// incrementing before or after merging with `b` gives the same state.
        #[test]
        fn increment_commutes_with_merge(a in gcounter(), b in gcounter(),
                                         node in node_id(), n in 0i64..1000) {
            let mut a = a;
            // Make room so the increment cannot overflow.
            if a.get(&node) > i64::MAX - 1000 {
                a.counts.insert(node.clone(), 1);
            }
            let mut b = b;
            let own = a.get(&node);
            if b.get(&node) > own {
                if own == 0 { b.counts.remove(&node); } else { b.counts.insert(node.clone(), own as u64); }
            }
            let mut x = a.clone();
            x.increment(&node, n).unwrap();
            x.merge(&b).unwrap();
            let mut y = merged(&a, &b);
            y.increment(&node, n).unwrap();
            prop_assert_eq!(x, y);
        }

        /// Replicas each count on their own node, merge at random, then all merge:
        /// every replica converges and the value is sum(incs) - sum(decs).
        #[test]
        fn pn_replicas_converge(ops in prop::collection::vec(
            (0usize..4, 0u8..3, 0i64..1000, 0usize..4), 0..60)) {
            let names = ["r0", "r1", "r2", "r3"];
            let mut reps = vec![PNCounter::new(); 4];
            let mut gs = vec![GCounter::new(); 4];
            let mut expected: i64 = 0;
            let mut incs: i64 = 0;
            for (r, op, n, other) in ops {
                match op {
                    0 => {
                        reps[r].increment(names[r], n).unwrap();
                        gs[r].increment(names[r], n).unwrap();
                        expected += n;
                        incs += n;
                    }
                    1 => {
                        reps[r].decrement(names[r], n).unwrap();
                        expected -= n;
                    }
                    _ => {
                        let o = reps[other].clone();
                        reps[r].merge(&o).unwrap();
                        let og = gs[other].clone();
                        gs[r].merge(&og).unwrap();
                    }
                }
            }
            let mut all = PNCounter::new();
            let mut gall = GCounter::new();
            for (p, gg) in reps.iter().zip(&gs) {
                all.merge(p).unwrap();
                gall.merge(gg).unwrap();
            }
            for p in reps.iter_mut() {
                p.merge(&all).unwrap();
                prop_assert_eq!(&*p, &all);
            }
            prop_assert_eq!(all.value().unwrap(), expected);
            prop_assert_eq!(gall.value().unwrap(), incs);
        }

        #[test]
        fn json_round_trip(a in gcounter(), p in pncounter()) {
            prop_assert_eq!(GCounter::from_json(&a.to_json()).unwrap(), a.clone());
            prop_assert_eq!(PNCounter::from_json(&p.to_json()).unwrap(), p.clone());
        }

        #[test]
        fn json_noisy_input_is_canonicalised(a in gcounter(), b in gcounter(),
                                             zeros in prop::collection::vec(node_id(), 0..3),
                                             seed in any::<u64>()) {
            let text = noisy_json(&a, seed, &zeros);
            let parsed = GCounter::from_json(&text);
            prop_assert!(parsed.is_ok(), "{:?}: {:?}", text, parsed);
            let parsed = parsed.unwrap();
            prop_assert_eq!(&parsed, &a);
            prop_assert_eq!(parsed.to_json(), a.to_json());
            let pn = format!(" {{ \"n\" :{} , \"p\":{} }}", noisy_json(&b, seed ^ 1, &[]),
                             noisy_json(&a, seed ^ 2, &zeros));
            let parsed = PNCounter::from_json(&pn);
            prop_assert!(parsed.is_ok(), "{:?}: {:?}", pn, parsed);
            prop_assert_eq!(parsed.unwrap(), PNCounter::from_parts(a, b));
        }

        #[test]
        fn json_parser_never_panics(s in any::<String>()) {
            let _ = GCounter::from_json(&s);
            let _ = PNCounter::from_json(&s);
        }

        #[test]
        fn json_parser_never_panics_jsonish(s in r#"[ {}":,0-9a-z\\u\-.eEpn\x00\n]{0,40}"#) {
            for r in [GCounter::from_json(&s).map(|c| c.to_json()),
                      PNCounter::from_json(&s).map(|c| c.to_json())] {
                match r {
                    Ok(_) => {}
                    Err(e) => prop_assert_eq!(e.kind, ErrorKind::InvalidText),
                }
            }
            // Whatever parses, re-parses to the same thing from its canonical text.
            if let Ok(c) = GCounter::from_json(&s) {
                prop_assert_eq!(GCounter::from_json(&c.to_json()).unwrap(), c);
            }
        }

        #[test]
        fn json_mutations_never_panic(a in gcounter(), pos in any::<prop::sample::Index>(),
                                      byte in 0u8..128) {
            let mut text = a.to_json().into_bytes();
            let i = pos.index(text.len());
            text[i] = byte;
            if let Ok(s) = String::from_utf8(text) {
                if let Ok(c) = GCounter::from_json(&s) {
                    prop_assert_eq!(GCounter::from_json(&c.to_json()).unwrap(), c);
                }
            }
        }

        #[test]
        fn binary_round_trip(a in gcounter(), p in pncounter()) {
            prop_assert_eq!(GCounter::decode(&a.encode()).unwrap(), a.clone());
            prop_assert_eq!(PNCounter::decode(&p.encode()).unwrap(), p.clone());
            // Equal values, equal bytes (canonical), whatever the build order.
            let mut rebuilt = GCounter::new();
            for (k, v) in a.nodes().collect::<Vec<_>>().into_iter().rev() {
                rebuilt.increment(k, v).unwrap();
            }
            prop_assert_eq!(rebuilt.encode(), a.encode());
        }

        #[test]
        fn decode_random_bytes_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..64),
                                            prefix in any::<bool>(), kind_pn in any::<bool>()) {
            let mut b = bytes;
            if prefix {
                b.splice(0..0, [1u8, if kind_pn { 0x31 } else { 0x30 }]);
            }
            if let Ok(c) = GCounter::decode(&b) {
                prop_assert_eq!(c.encode(), b.clone());
            }
            if let Ok(c) = PNCounter::decode(&b) {
                prop_assert_eq!(c.encode(), b);
            }
        }

        #[test]
        fn decode_truncated_or_mutated(a in gcounter(), p in pncounter(),
                                       cut in any::<prop::sample::Index>(),
                                       pos in any::<prop::sample::Index>(),
                                       bit in 0u8..8) {
            for enc in [a.encode(), p.encode()] {
                let n = cut.index(enc.len());
                let t = &enc[..n];
                prop_assert!(GCounter::decode(t).is_err());
                prop_assert!(PNCounter::decode(t).is_err());
                let mut m = enc.clone();
                let i = pos.index(m.len());
                m[i] ^= 1 << bit;
                if let Ok(c) = GCounter::decode(&m) {
                    prop_assert_eq!(c.encode(), m.clone());
                }
                if let Ok(c) = PNCounter::decode(&m) {
                    prop_assert_eq!(c.encode(), m.clone());
                }
            }
        }
    }
}
