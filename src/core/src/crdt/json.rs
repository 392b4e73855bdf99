//! The JSON text form of gcounter and pncounter, written and parsed by hand (no serde):
//! one object of node id -> non-negative integer (docs/FORMAT.md has the grammar).

use super::*;

// ---------------------------------------------------------------------------------------
// JSON output
// ---------------------------------------------------------------------------------------

pub(super) fn write_json_object(out: &mut String, g: &GCounter) {
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
pub(super) fn write_json_string(out: &mut String, s: &str) {
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
pub(super) fn escape_for_message(s: &str) -> String {
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

pub(super) struct Parser<'a> {
    pub(super) s: &'a [u8],
    pub(super) pos: usize,
    pub(super) type_name: &'static str,
}

impl<'a> Parser<'a> {
    pub(super) fn new(text: &'a str, type_name: &'static str) -> Self {
        Parser {
            s: text.as_bytes(),
            pos: 0,
            type_name,
        }
    }

    pub(super) fn hint(&self) -> &'static str {
        if self.type_name == "pncounter" {
            r#"a pncounter is written as {"p":{"node-a":5},"n":{"node-b":2}}"#
        } else {
            r#"a gcounter is written as {"node-a":5,"node-b":3}"#
        }
    }

    pub(super) fn err_at(&self, at: usize, what: &str) -> CoreError {
        CoreError::invalid_text(format!(
            "malformed {} literal: {what} at byte offset {at}",
            self.type_name
        ))
        .with_hint(self.hint())
    }

    /// Error at the current position, saying so when the input ran out.
    pub(super) fn err(&self, what: &str) -> CoreError {
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

    pub(super) fn peek(&self) -> Option<u8> {
        self.s.get(self.pos).copied()
    }

    /// JSON whitespace: space, tab, LF, CR.
    pub(super) fn skip_ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.pos += 1;
        }
    }

    pub(super) fn expect_byte(&mut self, b: u8, name: &str) -> Result<()> {
        if self.peek() == Some(b) {
            self.pos += 1;
            Ok(())
        } else {
            Err(self.err(&format!("expected {name}")))
        }
    }

    pub(super) fn expect_end(&mut self) -> Result<()> {
        self.skip_ws();
        if self.pos < self.s.len() {
            return Err(self.err("unexpected characters after the end of the object"));
        }
        Ok(())
    }

    /// `{ "node": count, ... }` into a G-Counter. Zero counts are accepted and dropped,
    /// but still count as entries for the duplicate and size checks.
    pub(super) fn parse_counts(&mut self) -> Result<GCounter> {
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
    pub(super) fn parse_count(&mut self) -> Result<u64> {
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
    pub(super) fn parse_string(&mut self) -> Result<String> {
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
    pub(super) fn parse_unicode_escape(&mut self, esc_at: usize) -> Result<char> {
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

    pub(super) fn hex4(&mut self, esc_at: usize) -> Result<u32> {
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
