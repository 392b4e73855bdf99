//! Writes the seed corpus: valid encodings of small values of every type plus a few
//! mutations of them (truncated, bit-flipped, extended), as files under
//! `seeds/<target>/` (default) or the directory given as the first argument.
//! Deterministic, so re-running it rewrites the same files.
//!
//!     cargo run --manifest-path fuzz/Cargo.toml --example gen_seeds [out_dir]

use std::fs;
use std::path::{Path, PathBuf};

use distributed_counter_core::cms::Cms;
use distributed_counter_core::crdt::{GCounter, PNCounter};
use distributed_counter_core::hash::hash_i64;
use distributed_counter_core::hll::Hll;
use distributed_counter_core::topk::TopK;

fn hll_values() -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    // Both formats: version 1 (the aggregates' state) and version 2 (sparse, list and
    // planes payloads).
    for (p, n) in [
        (4, 0),
        (4, 3),
        (4, 200),
        (8, 2000),
        (12, 5),
        (18, 1),
        (8, 150),
    ] {
        let mut h = Hll::new(p).unwrap();
        for i in 0..n {
            h.add_hash(hash_i64(i, 0));
        }
        out.push(h.encode_state());
        out.push(h.encode());
    }
    let mut d = Hll::new(5).unwrap();
    d.add_hash(hash_i64(42, 0));
    d.densify();
    out.push(d.encode_state());
    out.push(d.encode());
    out
}

fn cms_values() -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for (eps, delta, n) in [(0.5, 0.5, 0), (0.5, 0.5, 3), (0.3, 0.1, 10), (0.9, 0.9, 1)] {
        let mut c = Cms::new(eps, delta).unwrap();
        for i in 0..n {
            c.add_hash(hash_i64(i % 4, 0), (i + 1) as u64).unwrap();
        }
        out.push(c.encode());
    }
    out
}

fn topk_values() -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for (k, n) in [(1u32, 0u32), (1, 3), (2, 20), (3, 6)] {
        let mut t = TopK::new(k).unwrap();
        for i in 0..n {
            let item = format!("v{}", i % 11);
            t.add(item.as_bytes(), u64::from(i % 3 + 1)).unwrap();
        }
        out.push(t.encode());
    }
    let mut e = TopK::new(2).unwrap();
    e.add(b"", 1).unwrap();
    out.push(e.encode());
    out
}

fn gcounters() -> Vec<GCounter> {
    let mut out = vec![GCounter::new()];
    let mut g = GCounter::new();
    g.increment("a", 5).unwrap();
    out.push(g.clone());
    g.increment("node-2", 3).unwrap();
    g.increment("\u{e9}t\u{e9}", i64::MAX).unwrap();
    out.push(g);
    out
}

fn pncounters() -> Vec<PNCounter> {
    let mut out = vec![PNCounter::new()];
    let mut c = PNCounter::new();
    c.increment("a", 7).unwrap();
    c.decrement("b", 2).unwrap();
    out.push(c.clone());
    c.decrement("a", 1).unwrap();
    c.increment("n\"q\\", 1).unwrap();
    out.push(c);
    out
}

/// The value itself plus a handful of deterministic mutations near its structure.
fn with_mutations(valid: &[Vec<u8>]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for v in valid {
        out.push(v.clone());
        if v.len() > 1 {
            out.push(v[..v.len() - 1].to_vec());
            let mut flip = v.clone();
            let at = v.len() / 2;
            flip[at] ^= 0x01;
            out.push(flip);
        }
        let mut longer = v.clone();
        longer.push(0);
        out.push(longer);
    }
    out
}

fn write(dir: &Path, files: &[Vec<u8>]) {
    fs::create_dir_all(dir).unwrap();
    for (i, f) in files.iter().enumerate() {
        fs::write(dir.join(format!("seed-{i:02}")), f).unwrap();
    }
    println!("{}: {} files", dir.display(), files.len());
}

fn main() {
    let root = std::env::args()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("seeds"));
    // Keep the committed seed set small: mutate only the smaller values of each kind.
    let small =
        |v: Vec<Vec<u8>>| -> Vec<Vec<u8>> { v.into_iter().filter(|e| e.len() <= 4096).collect() };
    write(
        &root.join("hll_decode"),
        &with_mutations(&small(hll_values())),
    );
    write(
        &root.join("cms_decode"),
        &with_mutations(&small(cms_values())),
    );
    write(&root.join("topk_decode"), &with_mutations(&topk_values()));
    let g: Vec<Vec<u8>> = gcounters().iter().map(|g| g.encode()).collect();
    write(&root.join("gcounter_decode"), &with_mutations(&g));
    let p: Vec<Vec<u8>> = pncounters().iter().map(|c| c.encode()).collect();
    write(&root.join("pncounter_decode"), &with_mutations(&p));
    let mut gj: Vec<Vec<u8>> = gcounters()
        .iter()
        .map(|g| g.to_json().into_bytes())
        .collect();
    gj.push(b" { \"a\" : 1 , \"b\":0 }".to_vec());
    gj.push(b"{\"\\u00e9\\n\":12}".to_vec());
    write(&root.join("gcounter_json"), &with_mutations(&gj));
    let mut pj: Vec<Vec<u8>> = pncounters()
        .iter()
        .map(|c| c.to_json().into_bytes())
        .collect();
    pj.push(b"{\"n\":{\"x\":1},\"p\":{}}".to_vec());
    pj.push(b"{}".to_vec());
    write(&root.join("pncounter_json"), &with_mutations(&pj));
}
