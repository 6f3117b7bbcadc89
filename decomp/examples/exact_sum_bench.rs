//! Cost of reproducible (exact) sums and dot products against plain `f64` loops.
//!
//! ```text
//! cargo run --release -p decomp --example exact_sum_bench [-- --n N] [--reps R]
//! ```
//!
//! On `N` values (default 4M, about the size of one rank's vector), best of `R` trials
//! (default 10), in ns per element:
//! - `sum f64`: `xs.iter().sum()` (one sequential chain of additions);
//! - `sum f64 x4`: four interleaved partial sums (what a tuned plain sum does);
//! - `ExactSum::add_slice`;
//! - `dot f64`, `dot f64 x4`, `dot_exact`: the same for `a[i] * b[i]`;
//! - `ExactSum::add` one value at a time, and `to_f64` per call.
//!
//! The values span 40 binary orders of magnitude, so the exact sum touches several
//! limbs (a vector of values of one magnitude would flatter it).
use decomp::reduce::{dot_exact, ExactSum};
use std::hint::black_box;
use std::time::Instant;

/// Best time of `reps` runs of `f`, in ns per element of `n`.
fn best(reps: usize, n: usize, mut f: impl FnMut() -> f64) -> f64 {
    (0..reps)
        .map(|_| {
            let t = Instant::now();
            black_box(f());
            t.elapsed().as_secs_f64() * 1e9 / n as f64
        })
        .fold(f64::INFINITY, f64::min)
}

fn sum4(xs: &[f64]) -> f64 {
    let mut acc = [0.0; 4];
    let chunks = xs.chunks_exact(4);
    let tail: f64 = chunks.remainder().iter().sum();
    for c in chunks {
        for l in 0..4 {
            acc[l] += c[l];
        }
    }
    (acc[0] + acc[1]) + (acc[2] + acc[3]) + tail
}

fn dot4(a: &[f64], b: &[f64]) -> f64 {
    let mut acc = [0.0; 4];
    let (ca, cb) = (a.chunks_exact(4), b.chunks_exact(4));
    let tail: f64 = ca.remainder().iter().zip(cb.remainder()).map(|(x, y)| x * y).sum();
    for (x, y) in ca.zip(cb) {
        for l in 0..4 {
            acc[l] += x[l] * y[l];
        }
    }
    (acc[0] + acc[1]) + (acc[2] + acc[3]) + tail
}

fn main() {
    let mut n = 4 << 20;
    let mut reps = 10;
    let args: Vec<String> = std::env::args().skip(1).collect();
    for pair in args.chunks(2) {
        let value = || pair.get(1).and_then(|v| v.parse().ok()).unwrap_or_else(|| panic!("{} needs a number", pair[0]));
        match pair[0].as_str() {
            "--n" => n = value(),
            "--reps" => reps = value(),
            other => panic!("unknown argument {other} (expected --n N, --reps R)"),
        }
    }

    // xorshift values in [-1, 1) times 2^(-20..20).
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut value = || {
        let r = next();
        ((r >> 11) as f64 / (1u64 << 52) as f64 - 1.0) * 2f64.powi((r % 41) as i32 - 20)
    };
    let a: Vec<f64> = (0..n).map(|_| value()).collect();
    let b: Vec<f64> = (0..n).map(|_| value()).collect();

    println!("n = {n}, best of {reps}, ns/element");
    let rows: [(&str, f64); 7] = [
        ("sum f64", best(reps, n, || black_box(&a).iter().sum())),
        ("sum f64 x4", best(reps, n, || sum4(black_box(&a)))),
        ("ExactSum::add_slice", best(reps, n, || ExactSum::of(black_box(&a)).to_f64())),
        ("dot f64", best(reps, n, || black_box(&a).iter().zip(&b).map(|(x, y)| x * y).sum())),
        ("dot f64 x4", best(reps, n, || dot4(black_box(&a), &b))),
        ("dot_exact", best(reps, n, || dot_exact(black_box(&a), &b).to_f64())),
        (
            "ExactSum::add",
            best(reps, n, || {
                let mut s = ExactSum::new();
                black_box(&a).iter().for_each(|&x| s.add(x));
                s.to_f64()
            }),
        ),
    ];
    for (name, ns) in rows {
        println!("{name:<22} {ns:8.3}");
    }
    let s = ExactSum::of(&a);
    let calls = 100_000;
    let t = Instant::now();
    for _ in 0..calls {
        black_box(black_box(&s).to_f64());
    }
    println!("{:<22} {:8.1} ns per call", "ExactSum::to_f64", t.elapsed().as_secs_f64() * 1e9 / calls as f64);
    let (plain, exact) = (a.iter().sum::<f64>(), s.to_f64());
    println!("sum: plain {plain:.17e}, exact {exact:.17e}, relative difference {:.1e}", ((plain - exact) / exact).abs());
}
