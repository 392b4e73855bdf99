//! Unit and property tests of the CRDT counters and their codecs.
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
