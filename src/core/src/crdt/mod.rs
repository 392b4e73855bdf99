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

mod binary;
pub mod in_place;
mod json;
#[cfg(test)]
mod tests;

use binary::Reader;
use json::{escape_for_message, write_json_object, Parser};

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

fn negative_amount(type_name: &str, what: &str, n: i64) -> CoreError {
    let hint = match (type_name, what) {
        ("pncounter", "decrement") => "use pncounter_increment to count up",
        ("pncounter", _) => "use pncounter_decrement to count down",
        _ => "a gcounter only grows; a pncounter can also count down (pncounter_decrement)",
    };
    CoreError::invalid_parameter(format!(
        "{type_name} {what} amount must not be negative, got {n}"
    ))
    .with_hint(hint)
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
            return Err(negative_amount(type_name, what, n));
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
