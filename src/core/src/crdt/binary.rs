//! Decoding of the stored bytes, validated as it reads (docs/FORMAT.md).

use super::*;

// ---------------------------------------------------------------------------------------
// Binary decoding
// ---------------------------------------------------------------------------------------

pub(super) struct Reader<'a> {
    pub(super) b: &'a [u8],
    pub(super) pos: usize,
    pub(super) type_name: &'static str,
}

impl<'a> Reader<'a> {
    pub(super) fn new(b: &'a [u8], type_name: &'static str) -> Self {
        Reader {
            b,
            pos: 0,
            type_name,
        }
    }

    pub(super) fn err(&self, what: impl fmt::Display) -> CoreError {
        CoreError::invalid_binary(format!("invalid {} value: {what}", self.type_name))
    }

    pub(super) fn remaining(&self) -> usize {
        self.b.len().saturating_sub(self.pos)
    }

    pub(super) fn take(&mut self, n: usize, what: fmt::Arguments<'_>) -> Result<&'a [u8]> {
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

    pub(super) fn u8(&mut self, what: fmt::Arguments<'_>) -> Result<u8> {
        Ok(self.take(1, what)?[0])
    }

    pub(super) fn u32(&mut self, what: fmt::Arguments<'_>) -> Result<u32> {
        let s = self.take(4, what)?;
        Ok(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
    }

    pub(super) fn u64(&mut self, what: fmt::Arguments<'_>) -> Result<u64> {
        let s = self.take(8, what)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(s);
        Ok(u64::from_le_bytes(a))
    }

    pub(super) fn header(&mut self, kind: u8) -> Result<()> {
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
    pub(super) fn counts(&mut self, part: &str) -> Result<GCounter> {
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

    pub(super) fn expect_end(&self) -> Result<()> {
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
