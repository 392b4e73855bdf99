//! Accuracy of the count-min sketch and the top-k summary on streams of 10^7 events:
//! Zipf with s = 0.8, 1.1, 1.5 and uniform, over 10^6 distinct values.
//!
//! Run: `cargo run --release -p distributed_counter_core --example sketch_accuracy`
//! (`-- --events N` for a shorter run). Exits non-zero if a guarantee is violated:
//!
//! * cms (eps 0.001, delta 0.01): the estimate is never below the true count (checked for
//!   every distinct value seen), and the share of values whose estimate exceeds
//!   `true + eps * total` is at most delta;
//! * topk, k = 10 and 100: every value with true count > total/k is listed, and every
//!   listed row has `count - error <= true <= count`;
//! * merging: the union of per-partition cms sketches is exactly the cms of the whole
//!   stream, and the union of per-partition top-k summaries meets the same guarantees.
//!
//! Values are hashed as the SQL glue hashes integers (`hash_i64`, seed 0) and kept in
//! the top-k by their decimal text, as `topk_add_agg(bigint)` does.

use distributed_counter_core::cms::Cms;
use distributed_counter_core::hash::hash_i64;
use distributed_counter_core::topk::TopK;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use std::process::ExitCode;
use std::time::Instant;

const DISTINCT: usize = 1_000_000;
const PARTITIONS: usize = 8;
const EPS: f64 = 0.001;
const DELTA: f64 = 0.01;

enum Dist {
    Zipf(f64),
    Uniform,
}

/// Inverse-CDF sampler over ranks 1..=n.
struct Sampler {
    cdf: Vec<f64>,
}

impl Sampler {
    fn new(dist: &Dist) -> Sampler {
        let mut cdf = Vec::with_capacity(DISTINCT);
        let mut acc = 0.0;
        for rank in 1..=DISTINCT {
            acc += match dist {
                Dist::Zipf(s) => (rank as f64).powf(-s),
                Dist::Uniform => 1.0,
            };
            cdf.push(acc);
        }
        for c in &mut cdf {
            *c /= acc;
        }
        Sampler { cdf }
    }
    fn draw(&self, rng: &mut SmallRng) -> u32 {
        let u: f64 = rng.gen();
        self.cdf.partition_point(|&c| c < u).min(DISTINCT - 1) as u32
    }
}

fn decimal(v: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut at = buf.len();
    let mut n = v;
    loop {
        at -= 1;
        buf[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    &buf[at..]
}

struct TopkCheck {
    missing: usize,
    bad_bounds: usize,
    listed: usize,
    max_error: u64,
    /// How many of the k most frequent values are listed (not guaranteed; informative).
    top_k_recall: usize,
}

fn check_topk(t: &TopK, truth: &[u64], total: u64) -> TopkCheck {
    let listed = t.list();
    let k = t.k() as u64;
    let mut in_list = std::collections::HashSet::new();
    let mut bad_bounds = 0;
    let mut max_error = 0;
    for (item, count, error) in &listed {
        let v: usize = std::str::from_utf8(item)
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(usize::MAX);
        let f = truth.get(v).copied().unwrap_or(0);
        if !(count - error <= f && f <= *count) {
            bad_bounds += 1;
        }
        max_error = max_error.max(*error);
        in_list.insert(v);
    }
    // true count > total / k  <=>  true * k > total (exact in integers)
    let missing = truth
        .iter()
        .enumerate()
        .filter(|&(v, &f)| f * k > total && !in_list.contains(&v))
        .count();
    let mut by_count: Vec<usize> = (0..truth.len()).collect();
    by_count.sort_unstable_by(|&a, &b| truth[b].cmp(&truth[a]).then(a.cmp(&b)));
    let top_k_recall = by_count[..k as usize]
        .iter()
        .filter(|v| in_list.contains(v))
        .count();
    TopkCheck {
        missing,
        bad_bounds,
        listed: listed.len(),
        max_error,
        top_k_recall,
    }
}

fn main() -> ExitCode {
    let mut events: u64 = 10_000_000;
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--events") {
        events = args
            .get(i + 1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(events);
    }
    let mut failures = 0;
    println!(
        "sketch accuracy: {events} events per stream, {DISTINCT} possible values, {PARTITIONS} partitions for merges"
    );
    println!(
        "cms eps {EPS} delta {DELTA} (width {}, depth {})",
        Cms::new(EPS, DELTA).unwrap().width(),
        Cms::new(EPS, DELTA).unwrap().depth()
    );
    println!();
    for (name, dist) in [
        ("zipf s=0.8", Dist::Zipf(0.8)),
        ("zipf s=1.1", Dist::Zipf(1.1)),
        ("zipf s=1.5", Dist::Zipf(1.5)),
        ("uniform", Dist::Uniform),
    ] {
        let started = Instant::now();
        let sampler = Sampler::new(&dist);
        let mut rng = SmallRng::seed_from_u64(0x5eed);
        let mut truth = vec![0u64; DISTINCT];
        let mut cms = Cms::new(EPS, DELTA).unwrap();
        let mut part_cms: Vec<Cms> = (0..PARTITIONS)
            .map(|_| Cms::new(EPS, DELTA).unwrap())
            .collect();
        let ks = [10u32, 100];
        let mut topks: Vec<TopK> = ks.iter().map(|&k| TopK::new(k).unwrap()).collect();
        let mut part_topks: Vec<Vec<TopK>> = ks
            .iter()
            .map(|&k| (0..PARTITIONS).map(|_| TopK::new(k).unwrap()).collect())
            .collect();
        let mut buf = [0u8; 20];
        for i in 0..events {
            let v = sampler.draw(&mut rng);
            truth[v as usize] += 1;
            let h = hash_i64(v as i64, 0);
            // partitions: contiguous chunks of the stream (like parallel workers' blocks)
            let p = (i * PARTITIONS as u64 / events) as usize;
            cms.add_hash(h, 1).unwrap();
            part_cms[p].add_hash(h, 1).unwrap();
            let item = decimal(v as u64, &mut buf);
            for (j, t) in topks.iter_mut().enumerate() {
                t.add(item, 1).unwrap();
                part_topks[j][p].add(item, 1).unwrap();
            }
        }
        let total = events;
        let bound = EPS * total as f64;
        let mut seen = 0usize;
        let mut below = 0usize;
        let mut over = 0usize;
        let mut max_over = 0u64;
        for (v, &f) in truth.iter().enumerate() {
            if f == 0 {
                continue;
            }
            seen += 1;
            let est = cms.count_hash(hash_i64(v as i64, 0));
            if est < f {
                below += 1;
            }
            if est as f64 > f as f64 + bound {
                over += 1;
            }
            max_over = max_over.max(est.saturating_sub(f));
        }
        let share = over as f64 / seen as f64;
        let mut merged = part_cms[0].clone();
        for c in &part_cms[1..] {
            merged.union(c).unwrap();
        }
        let merge_exact = merged == cms;
        println!(
            "{name}: {seen} distinct values ({:.1} s)",
            started.elapsed().as_secs_f64()
        );
        println!(
            "  cms: below true {below} (must be 0); over true+eps*N {over} = {:.5} of values (delta {DELTA}); max overestimate {max_over} = {:.3} eps*N",
            share,
            max_over as f64 / bound
        );
        println!(
            "  cms: union of {PARTITIONS} partition sketches == whole-stream sketch: {merge_exact}"
        );
        if below > 0 || share > DELTA || !merge_exact {
            failures += 1;
            println!("  FAIL cms");
        }
        for (j, &k) in ks.iter().enumerate() {
            let whole = check_topk(&topks[j], &truth, total);
            let mut u = part_topks[j][0].clone();
            for t in &part_topks[j][1..] {
                u.union(t).unwrap();
            }
            let merged = check_topk(&u, &truth, total);
            let heavy = truth.iter().filter(|&&f| f * k as u64 > total).count();
            println!(
                "  topk k={k}: {heavy} values above N/k\n    whole stream: listed {}, heavy missing {}, bound violations {}, max error {}, true top-{k} listed {}\n    merged {PARTITIONS}: listed {}, heavy missing {}, bound violations {}, max error {}, true top-{k} listed {}",
                whole.listed, whole.missing, whole.bad_bounds, whole.max_error, whole.top_k_recall,
                merged.listed, merged.missing, merged.bad_bounds, merged.max_error, merged.top_k_recall
            );
            if whole.missing + whole.bad_bounds + merged.missing + merged.bad_bounds > 0
                || u.total() != total
            {
                failures += 1;
                println!("  FAIL topk k={k}");
            }
        }
    }
    println!();
    if failures == 0 {
        println!("all guarantees held");
        ExitCode::SUCCESS
    } else {
        println!("{failures} guarantee failures");
        ExitCode::FAILURE
    }
}
