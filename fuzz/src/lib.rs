//! The properties checked by the fuzz targets (one function per target), kept in a
//! library so the seed generator and regression tests can call them without libFuzzer.
//!
//! Every target checks, for arbitrary input bytes:
//! * no panic (an `Err` is the expected answer for almost all inputs);
//! * anything accepted is canonical: it re-encodes to exactly the input bytes, and the
//!   re-encoding decodes to an equal value;
//! * the basic operations on an accepted value (estimate / count / list / value, merge
//!   with itself, the in-place hot paths used by the aggregates) do not panic and keep
//!   the value decodable.
//!
//! Unbounded allocation is caught by libFuzzer's `-malloc_limit_mb` / `-rss_limit_mb`
//! (set by scripts/fuzz.sh).

use distributed_counter_core::cms::Cms;
use distributed_counter_core::crdt::{self, GCounter, PNCounter};
use distributed_counter_core::hash::hash_bytes;
use distributed_counter_core::hex;
use distributed_counter_core::hll::{self, Hll};
use distributed_counter_core::topk::TopK;

/// A few hashes to probe a sketch with: fixed extremes plus one derived from the input.
fn probe_hashes(data: &[u8]) -> [u64; 4] {
    [0, u64::MAX, 0x8000_0000_0000_0001, hash_bytes(data, 0)]
}

pub fn hll_decode(data: &[u8]) {
    // The in-place hot paths take stored bytes that were validated on entry, but are
    // documented to stay in bounds on anything: exercise them on raw input too.
    for h in probe_hashes(data) {
        let _ = hll::sparse_contains_hash(data, h);
        let mut copy = data.to_vec();
        let _ = hll::dense_add_in_place(&mut copy, h);
    }
    let _ = hll::dense_precision(data);
    {
        let mut copy = data.to_vec();
        let _ = hll::dense_merge_in_place(&mut copy, data);
        let _ = hll::dense_merge_sparse_in_place(&mut copy, data);
    }
    // Format 2 merged into a dense state: never panics, and reports success only for
    // a value that decodes.
    for p in [
        hll::MIN_P,
        data.get(2).copied().unwrap_or(12).clamp(hll::MIN_P, 12),
    ] {
        let mut state = Hll::new(p as i32).unwrap();
        state.densify();
        let mut bytes = state.encode_state();
        if hll::dense_merge_v2_in_place(&mut bytes, data) {
            let stored = Hll::decode(data).expect("hll: merged in place but does not decode");
            state.union(&stored);
            assert_eq!(
                bytes,
                state.encode_state(),
                "hll: in-place format-2 merge differs from union"
            );
        }
    }

    let Ok(h) = Hll::decode(data) else { return };
    if data[0] == hll::FORMAT_VERSION {
        // Format 1 is exact; it re-encodes to the same state bytes and, as format 2, to
        // a value with the same estimate (or the registers of a long token list).
        let state = h.encode_state();
        assert_eq!(state, data, "hll: accepted format-1 input is not canonical");
        assert_eq!(state.len(), h.state_len());
    }
    // Format 2 (canonical or not) re-encodes to a canonical value of the same sketch.
    let enc = h.encode();
    let again = Hll::decode(&enc).expect("hll: re-encoding does not decode");
    assert_eq!(again.encode(), enc, "hll: canonical form is not stable");
    if !(h.is_sparse() && enc[1] != hll::KIND_SPARSE) {
        assert_eq!(again, h, "hll: format 2 does not keep the sketch");
    }

    let e = h.estimate();
    assert!(e.is_finite() && e >= 0.0, "hll estimate {e}");
    // FGRA (kept for comparison, not exposed in SQL) is +inf when every register is
    // saturated, as in Ertl's reference (hash4j): a cardinality beyond what the
    // sketch can represent. Only NaN or a negative value would be a defect.
    let f = h.estimate_fgra();
    assert!(!f.is_nan() && f >= 0.0, "hll fgra estimate {f}");
    let _ = h.bounds(0.95);
    let _ = h.certain_lower_bound();
    let _ = Hll::describe(data);
    let _ = h.is_empty();

    // Union is idempotent.
    let mut u = h.clone();
    u.union(&h);
    assert_eq!(
        u.estimate(),
        h.estimate(),
        "hll: union with itself changed the estimate"
    );
    Hll::decode(&u.encode()).expect("hll: union result does not decode");

    let mut d = h.clone();
    d.densify();
    Hll::decode(&d.encode()).expect("hll: densified value does not decode");
    for p in [hll::MIN_P as i32, h.precision() as i32] {
        if let Ok(r) = h.reduce_precision(p) {
            Hll::decode(&r.encode()).expect("hll: reduced value does not decode");
        }
    }

    let mut a = h.clone();
    for x in probe_hashes(data) {
        a.add_hash(x);
    }
    Hll::decode(&a.encode()).expect("hll: value after add does not decode");

    if hll::dense_precision(data).is_some() {
        // In-place ops on a valid dense value keep it valid; self-merge is a no-op.
        let mut m = data.to_vec();
        assert!(hll::dense_merge_in_place(&mut m, data));
        assert_eq!(m, data, "hll: dense self-merge changed the bytes");
        for x in probe_hashes(data) {
            assert!(hll::dense_add_in_place(&mut m, x));
        }
        Hll::decode(&m).expect("hll: dense value after in-place add does not decode");
    }
}

pub fn cms_decode(data: &[u8]) {
    // Layout-only checked in-place paths on raw bytes.
    for h in probe_hashes(data) {
        let _ = Cms::count_in_place(data, h);
        let mut copy = data.to_vec();
        let _ = Cms::add_in_place(&mut copy, h, 1);
    }
    let _ = Cms::read_header(data);
    {
        let mut copy = data.to_vec();
        let _ = Cms::merge_in_place(&mut copy, data);
    }

    let _ = Cms::elem_of(data);
    let _ = Cms::with_elem(data, b"bigint");
    let _ = Cms::unstage(data);

    let Ok(c) = Cms::decode(data) else { return };
    let enc = c.encode();
    // format 2 is canonical; a format 1 value re-encodes as format 2 with no element
    // type, the same bytes otherwise
    let data_v2 = Cms::with_elem(data, c.elem()).expect("cms: accepted input has no v2 form");
    assert_eq!(enc, data_v2, "cms: accepted input is not canonical");
    assert!(
        data[0] == 1 || enc == data,
        "cms: accepted v2 input is not canonical"
    );
    assert_eq!(enc.len(), c.encoded_len());
    let again = Cms::decode(&enc).expect("cms: re-encoding does not decode");
    assert_eq!(again, c);

    for h in probe_hashes(data) {
        let est = c.count_hash(h);
        assert!(
            est <= c.total(),
            "cms: estimate {est} above total {}",
            c.total()
        );
        assert_eq!(Cms::count_in_place(data, h).ok(), Some(est));
    }
    let _ = (c.width(), c.depth(), c.eps(), c.delta(), c.header());

    let mut u = c.clone();
    if u.union(&c).is_ok() {
        let d = Cms::decode(&u.encode()).expect("cms: union result does not decode");
        let mut m = data_v2.clone();
        Cms::merge_in_place(&mut m, data).expect("cms: in-place self-merge failed");
        assert_eq!(m, d.encode(), "cms: in-place merge differs from union");
    }
    let mut a = c.clone();
    if a.add_hash(hash_bytes(data, 1), 1).is_ok() {
        Cms::decode(&a.encode()).expect("cms: value after add does not decode");
    }
}

pub fn topk_decode(data: &[u8]) {
    let Ok(t) = TopK::decode(data) else { return };
    let enc = t.encode();
    assert_eq!(enc, data, "topk: accepted input is not canonical");
    assert_eq!(enc.len(), t.encoded_len());
    let again = TopK::decode(&enc).expect("topk: re-encoding does not decode");
    assert_eq!(again, t);

    let list = t.list();
    assert!(list.len() <= t.k() as usize);
    assert_eq!(t.tracked().len(), t.len());
    let _ = t.min_count();

    let mut u = t.clone();
    if u.union(&t).is_ok() {
        TopK::decode(&u.encode()).expect("topk: union result does not decode");
    }
    let mut a = t.clone();
    for item in [&b""[..], b"a", data.get(..8).unwrap_or(data)] {
        if a.add(item, 1).is_ok() {
            TopK::decode(&a.encode()).expect("topk: value after add does not decode");
        }
    }
}

fn check_gcounter(g: &GCounter) {
    let enc = g.encode();
    let again = GCounter::decode(&enc).expect("gcounter: encoding does not decode");
    assert_eq!(&again, g);
    let json = g.to_json();
    let parsed = GCounter::from_json(&json).expect("gcounter: to_json does not parse");
    assert_eq!(&parsed, g);
    assert_eq!(parsed.to_json(), json);
    let _ = g.value();
    assert_eq!(g.nodes().len(), g.len());
    for (node, n) in g.nodes() {
        assert_eq!(g.get(node), n);
    }
    let mut m = g.clone();
    m.merge(g).expect("gcounter: merge with itself failed");
    assert_eq!(&m, g, "gcounter: merge with itself is not idempotent");
}

fn check_pncounter(c: &PNCounter) {
    let enc = c.encode();
    let again = PNCounter::decode(&enc).expect("pncounter: encoding does not decode");
    assert_eq!(&again, c);
    let json = c.to_json();
    let parsed = PNCounter::from_json(&json).expect("pncounter: to_json does not parse");
    assert_eq!(&parsed, c);
    assert_eq!(parsed.to_json(), json);
    let _ = c.value();
    check_gcounter(c.p());
    check_gcounter(c.n());
    let mut m = c.clone();
    m.merge(c).expect("pncounter: merge with itself failed");
    assert_eq!(&m, c, "pncounter: merge with itself is not idempotent");
}

/// The merge aggregates' in-place path (`crdt::in_place`) on an arbitrary input merged
/// into a valid state: it either declines, leaving a state that still decodes (a partial
/// merge only raises counts), or gives exactly the full merge of the decoded input.
fn check_merge_in_place<C>(
    data: &[u8],
    kind: u8,
    parts: usize,
    decode: fn(&[u8]) -> Option<C>,
    merge: fn(&C, &C) -> C,
    encode: fn(&C) -> Vec<u8>,
    base: C,
) where
    C: PartialEq + std::fmt::Debug,
{
    let mut state = encode(&base);
    let done = crdt::in_place::merge_in_place(&mut state, data, kind, parts);
    let after = decode(&state).expect("crdt: the in-place merge left an undecodable state");
    if done {
        let input = decode(data).expect("crdt: the in-place merge accepted an invalid input");
        assert_eq!(
            after,
            merge(&base, &input),
            "crdt: in-place merge differs from the full merge"
        );
    }
}

pub fn gcounter_decode(data: &[u8]) {
    let mut base = GCounter::new();
    for node in ["a", "b", "node-1", "\u{e9}t\u{e9}"] {
        base.increment(node, 7).expect("valid increment");
    }
    check_merge_in_place(
        data,
        crdt::KIND_GCOUNTER,
        1,
        |b| GCounter::decode(b).ok(),
        |a, b| {
            let mut m = a.clone();
            m.merge(b).expect("merge of valid counters");
            m
        },
        GCounter::encode,
        base,
    );
    let Ok(g) = GCounter::decode(data) else {
        return;
    };
    assert_eq!(
        g.encode(),
        data,
        "gcounter: accepted input is not canonical"
    );
    check_gcounter(&g);
}

pub fn pncounter_decode(data: &[u8]) {
    let mut base = PNCounter::new();
    for node in ["a", "b", "node-1"] {
        base.increment(node, 5).expect("valid increment");
        base.decrement(node, 3).expect("valid decrement");
    }
    check_merge_in_place(
        data,
        crdt::KIND_PNCOUNTER,
        2,
        |b| PNCounter::decode(b).ok(),
        |a, b| {
            let mut m = a.clone();
            m.merge(b).expect("merge of valid counters");
            m
        },
        PNCounter::encode,
        base,
    );
    let Ok(c) = PNCounter::decode(data) else {
        return;
    };
    assert_eq!(
        c.encode(),
        data,
        "pncounter: accepted input is not canonical"
    );
    check_pncounter(&c);
}

pub fn gcounter_json(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(g) = GCounter::from_json(text) else {
        return;
    };
    check_gcounter(&g);
}

pub fn pncounter_json(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(c) = PNCounter::from_json(text) else {
        return;
    };
    check_pncounter(&c);
}

/// The sketch types' text form: never a panic, and anything accepted round-trips.
pub fn hex_text(data: &[u8]) {
    let Ok(bytes) = hex::parse_hex(data, "hll") else {
        return;
    };
    assert_eq!(
        hex::to_hex(&bytes).to_ascii_lowercase(),
        String::from_utf8_lossy(data).to_ascii_lowercase(),
        "hex: accepted text does not round-trip"
    );
}
