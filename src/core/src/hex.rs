//! The text form of the sketch types: `\x` followed by the hexadecimal digits of the
//! stored bytes (as PostgreSQL writes bytea).

use crate::error::CoreError;

/// Parse the text form `\x` + hexadecimal digits of a value of type `type_name`.
pub fn parse_hex(text: &[u8], type_name: &str) -> Result<Vec<u8>, CoreError> {
    let syntax = || CoreError::invalid_text(format!("invalid input syntax for type {type_name}"));
    let Some(hex) = text.strip_prefix(b"\\x") else {
        let article = match type_name.as_bytes().first() {
            Some(b'a' | b'e' | b'h' | b'i' | b'o' | b'u') => "An",
            _ => "A",
        };
        return Err(syntax().with_detail(format!(
            "{article} {type_name} text value starts with \\x followed by hexadecimal digits."
        )));
    };
    let digit = |c: u8, at: usize| -> Result<u8, CoreError> {
        match c {
            b'0'..=b'9' => Ok(c - b'0'),
            b'a'..=b'f' => Ok(c - b'a' + 10),
            b'A'..=b'F' => Ok(c - b'A' + 10),
            _ => {
                Err(syntax().with_detail(format!("invalid hexadecimal digit at offset {}", at + 2)))
            }
        }
    };
    // Every character must be a digit (a space or a stray character is reported where it
    // is, not as an odd count), then they must pair up.
    for (at, &c) in hex.iter().enumerate() {
        digit(c, at)?;
    }
    if hex.len() % 2 != 0 {
        return Err(syntax().with_detail("odd number of hexadecimal digits"));
    }
    let mut out = Vec::with_capacity(hex.len() / 2);
    for (i, pair) in hex.chunks_exact(2).enumerate() {
        out.push(digit(pair[0], 2 * i)? << 4 | digit(pair[1], 2 * i + 1)?);
    }
    Ok(out)
}

/// The text form `\x` + lowercase hexadecimal digits of `bytes`.
pub fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(2 + 2 * bytes.len());
    s.push_str("\\x");
    for &b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 15) as usize] as char);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;
    use proptest::prelude::*;

    #[test]
    fn errors_say_what_is_wrong() {
        let e = parse_hex(b"00ff", "hll").unwrap_err();
        assert_eq!(e.kind, ErrorKind::InvalidText);
        let e = parse_hex(b"\\x0", "cms").unwrap_err();
        assert_eq!(e.kind, ErrorKind::InvalidText);
        let e = parse_hex(b"\\x0g", "topk").unwrap_err();
        assert_eq!(e.kind, ErrorKind::InvalidText);
        let e = parse_hex(b"\\x0a 1b", "hll").unwrap_err();
        assert!(
            e.detail.as_deref().is_some_and(|d| d.contains("offset 4")),
            "{:?}",
            e.detail
        );
        assert_eq!(parse_hex(b"\\x", "hll").unwrap(), Vec::<u8>::new());
        assert_eq!(parse_hex(b"\\xA0ff", "hll").unwrap(), vec![0xa0, 0xff]);
    }

    proptest! {
        #[test]
        fn round_trip(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            prop_assert_eq!(parse_hex(to_hex(&bytes).as_bytes(), "hll").unwrap(), bytes);
        }

        #[test]
        fn arbitrary_text_never_panics(text in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = parse_hex(&text, "hll");
        }
    }
}
