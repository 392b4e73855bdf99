//! hll accuracy against theory: bias and relative standard error over a log grid of
//! distinct counts, for p = 10, 12, 14, with real XXH3 hashes of consecutive integers
//! under independent seeds -- exactly what `hll_add_agg(hll_hash_bigint(v, seed), p)`
//! computes in SQL (benches/hll_accuracy.sh checks that equality and runs
//! postgresql-hll in SQL next to it).
//!
//! Output: CSV on stdout `impl,p,n,trials,bias,rse,bytes,maxabs` (maxabs = largest
//! |estimate - n| over the trials) (bytes = mean stored size as
//! pg_column_size reports it: payload + 1-byte header up to 126 bytes, else 4).
//! Usage: cargo bench -p distributed_counter_core --bench hll_accuracy -- [trials] [max_n]

use distributed_counter_core::hash::hash_i64;
use distributed_counter_core::hll::Hll;
use std::sync::mpsc;

const PRECISIONS: [i32; 4] = [8, 10, 12, 14];

/// 1-2-5 grid from 1 to max_n.
fn grid(max_n: u64) -> Vec<u64> {
    let mut out = Vec::new();
    let mut decade = 1u64;
    while decade <= max_n {
        for step in [1, 2, 5] {
            let n = decade * step;
            if n <= max_n {
                out.push(n);
            }
        }
        decade *= 10;
    }
    out
}

fn stored_bytes(payload: usize) -> usize {
    if payload < 127 {
        payload + 1
    } else {
        payload + 4
    }
}

/// One trial: estimates and stored sizes at every grid point, per precision.
fn trial(seed: i32, points: &[u64]) -> Vec<Vec<(f64, usize)>> {
    let mut sketches: Vec<Hll> = PRECISIONS.iter().map(|&p| Hll::new(p).unwrap()).collect();
    let mut out = vec![Vec::with_capacity(points.len()); PRECISIONS.len()];
    let mut v = 0u64;
    for &n in points {
        while v < n {
            v += 1;
            let h = hash_i64(v as i64, seed);
            for s in sketches.iter_mut() {
                s.add_hash(h);
            }
        }
        for (i, s) in sketches.iter().enumerate() {
            out[i].push((s.estimate(), stored_bytes(s.encode().len())));
        }
    }
    out
}

fn main() {
    let args: Vec<String> = std::env::args().filter(|a| !a.starts_with("--")).collect();
    let trials: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(300);
    let max_n: u64 = args
        .get(2)
        .and_then(|s| s.parse().ok())
        .unwrap_or(10_000_000);
    let points = grid(max_n);
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let (tx, rx) = mpsc::channel();
    let mut handles = Vec::new();
    for t in 0..threads {
        let tx = tx.clone();
        let points = points.clone();
        handles.push(std::thread::spawn(move || {
            for seed in (t..trials).step_by(threads) {
                tx.send(trial(seed as i32, &points)).unwrap();
            }
        }));
    }
    drop(tx);
    // sums per precision per point: (sum rel err, sum rel err^2, sum bytes)
    let mut acc = vec![vec![(0.0f64, 0.0f64, 0.0f64, 0.0f64); points.len()]; PRECISIONS.len()];
    let mut done = 0;
    let seed0_path = std::env::var("HLL_ACCURACY_SEED0").ok();
    if let Some(path) = &seed0_path {
        // seed 0 at p = 12, for the SQL cross-check in benches/hll_accuracy.sh
        let first = trial(0, &points);
        let lines: Vec<String> = points
            .iter()
            .zip(&first[PRECISIONS.iter().position(|&p| p == 12).unwrap()])
            .map(|(n, (est, _))| format!("{n},{est}"))
            .collect();
        std::fs::write(path, lines.join("\n") + "\n").expect("write seed-0 estimates");
    }
    for result in rx {
        for (i, per_p) in result.iter().enumerate() {
            for (j, &(est, bytes)) in per_p.iter().enumerate() {
                let rel = est / points[j] as f64 - 1.0;
                acc[i][j].0 += rel;
                acc[i][j].1 += rel * rel;
                acc[i][j].2 += bytes as f64;
                acc[i][j].3 = acc[i][j].3.max((est - points[j] as f64).abs());
            }
        }
        done += 1;
        if done % 50 == 0 {
            eprintln!("hll_accuracy: {done}/{trials} trials");
        }
    }
    for h in handles {
        h.join().unwrap();
    }
    println!("impl,p,n,trials,bias,rse,bytes,maxabs");
    for (i, &p) in PRECISIONS.iter().enumerate() {
        for (j, &n) in points.iter().enumerate() {
            let (s, s2, b, maxabs) = acc[i][j];
            let t = trials as f64;
            println!(
                "distributed_counter,{p},{n},{trials},{:.6e},{:.6e},{:.1},{:.3}",
                s / t,
                (s2 / t).sqrt(),
                b / t,
                maxabs
            );
        }
    }
}
