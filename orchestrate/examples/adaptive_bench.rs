//! Runs needed by `orchestrate::adaptive::Learner1D` to reach given interpolation errors on
//! a known 1-D function with a sharp feature; the Rust side of
//! benches/adaptive_vs_python.py (docs/BENCHMARKS.md §7), which drives python-adaptive's
//! `Learner1D` through the same protocol and the same error measure.
//!
//! ```text
//! cargo run --release -p orchestrate --example adaptive_bench -- \
//!     [--function peak|tanh] [--width 0.01] [--center 0] [--bounds -1,1] [--batch 1] \
//!     [--mode batch|inflight] [--budget 20000] [--grid 100000] \
//!     [--max-tol 1e-1,1e-2,1e-3,1e-4] [--l1-tol 1e-3,1e-4,1e-5,1e-6]
//! ```
//!
//! Functions (a = --width, x0 = --center): `peak` is python-adaptive's tutorial function
//! x + a²/(a² + (x − x0)²); `tanh` is tanh((x − x0)/a), a smoothed step.
//!
//! Protocols: `batch` asks `--batch` points, tells all of them, and measures; `inflight`
//! keeps `--batch` points pending: it asks that many, then tells the oldest, measures and
//! asks one more (a study with `max_parallel` runs at once, runs finishing in order).
//!
//! Error of the piecewise-linear interpolant of the completed points against the function
//! on `--grid` equally spaced points spanning the bounds (both included): the maximum, and
//! the L1 norm (b − a) · mean |error|; infinite until both bounds are complete. For every
//! tolerance, the number of completed points when the error first falls to it or below.
//! Prints one JSON object.

use orchestrate::adaptive::Learner1D;
use serde_json::{json, Value};
use std::collections::VecDeque;
use std::time::Instant;

struct Args {
    function: String,
    width: f64,
    center: f64,
    bounds: (f64, f64),
    batch: usize,
    mode: String,
    budget: usize,
    grid: usize,
    max_tol: Vec<f64>,
    l1_tol: Vec<f64>,
}

fn floats(s: &str) -> Result<Vec<f64>, String> {
    s.split(',').map(|t| t.trim().parse::<f64>().map_err(|e| format!("{t:?}: {e}"))).collect()
}

fn parse() -> Result<Args, String> {
    let mut a = Args {
        function: "peak".into(),
        width: 0.01,
        center: 0.0,
        bounds: (-1.0, 1.0),
        batch: 1,
        mode: "batch".into(),
        budget: 20000,
        grid: 100_000,
        max_tol: vec![1e-1, 1e-2, 1e-3, 1e-4],
        l1_tol: vec![1e-3, 1e-4, 1e-5, 1e-6],
    };
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let mut it = argv.iter();
    while let Some(k) = it.next() {
        let mut v = || it.next().cloned().ok_or_else(|| format!("{k} needs a value"));
        match k.as_str() {
            "--function" => a.function = v()?,
            "--width" => a.width = v()?.parse().map_err(|e| format!("--width: {e}"))?,
            "--center" => a.center = v()?.parse().map_err(|e| format!("--center: {e}"))?,
            "--bounds" => match floats(&v()?)?[..] {
                [lo, hi] => a.bounds = (lo, hi),
                _ => return Err("--bounds takes LO,HI".into()),
            },
            "--batch" => a.batch = v()?.parse().map_err(|e| format!("--batch: {e}"))?,
            "--mode" => a.mode = v()?,
            "--budget" => a.budget = v()?.parse().map_err(|e| format!("--budget: {e}"))?,
            "--grid" => a.grid = v()?.parse().map_err(|e| format!("--grid: {e}"))?,
            "--max-tol" => a.max_tol = floats(&v()?)?,
            "--l1-tol" => a.l1_tol = floats(&v()?)?,
            "-h" | "--help" => {
                println!("see the doc comment of orchestrate/examples/adaptive_bench.rs");
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if !["peak", "tanh"].contains(&a.function.as_str()) {
        return Err(format!("--function {}: peak or tanh", a.function));
    }
    if !["batch", "inflight"].contains(&a.mode.as_str()) {
        return Err(format!("--mode {}: batch or inflight", a.mode));
    }
    if a.batch == 0 || a.grid < 2 {
        return Err("--batch >= 1 and --grid >= 2".into());
    }
    Ok(a)
}

/// The dense grid and the function on it, and the errors of the piecewise-linear
/// interpolant of the completed points against them, kept up to date point by point.
///
/// Grid point x belongs to the interval (x_l, x_r] of consecutive completed points that
/// holds it (the first grid point, at the lower bound, to the first interval). A new point
/// splits one interval: only the grid points inside it are evaluated again. The L1 error
/// is kept as a running sum, the maximum in a heap of (error, interval) from which
/// intervals that were split since are dropped lazily.
struct Reference {
    xs: Vec<f64>,
    fs: Vec<f64>,
    length: f64,
    /// Completed points, sorted by x (empty until both bounds are complete).
    pts: Vec<(f64, f64)>,
    /// Max error of each interval, by the bits of its left end and right end.
    heap: std::collections::BinaryHeap<(Ordered, u64, u64)>,
    sum: f64,
}

/// f64 ordered by `total_cmp`, for the heap.
#[derive(PartialEq, Clone, Copy)]
struct Ordered(f64);
impl Eq for Ordered {}
impl PartialOrd for Ordered {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Ordered {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        self.0.total_cmp(&o.0)
    }
}

impl Reference {
    fn new(f: &dyn Fn(f64) -> f64, (lo, hi): (f64, f64), n: usize) -> Self {
        let xs: Vec<f64> = (0..n).map(|k| lo + (hi - lo) * k as f64 / (n - 1) as f64).collect();
        let fs = xs.iter().map(|&x| f(x)).collect();
        Reference { xs, fs, length: hi - lo, pts: Vec::new(), heap: Default::default(), sum: 0.0 }
    }

    /// (max, sum) of |interpolant - f| over the grid points of the interval (l, r].
    fn interval(&self, (x0, y0): (f64, f64), (x1, y1): (f64, f64)) -> (f64, f64) {
        let first = if x0 == self.xs[0] { 0 } else { self.xs.partition_point(|&x| x <= x0) };
        let last = self.xs.partition_point(|&x| x <= x1);
        let (mut max, mut sum) = (0.0f64, 0.0);
        for k in first..last {
            let e = (y0 + (y1 - y0) * (self.xs[k] - x0) / (x1 - x0) - self.fs[k]).abs();
            max = max.max(e);
            sum += e;
        }
        (max, sum)
    }

    fn add_interval(&mut self, p: (f64, f64), q: (f64, f64)) {
        let (max, sum) = self.interval(p, q);
        self.sum += sum;
        self.heap.push((Ordered(max), p.0.to_bits(), q.0.to_bits()));
    }

    /// Starts from the completed points `pts` (sorted, spanning the grid).
    fn start(&mut self, pts: Vec<(f64, f64)>) {
        self.pts = pts;
        for i in 1..self.pts.len() {
            self.add_interval(self.pts[i - 1], self.pts[i]);
        }
    }

    /// Adds a completed point inside the span.
    fn add(&mut self, x: f64, y: f64) {
        let i = self.pts.partition_point(|p| p.0 < x);
        if self.pts.get(i).is_some_and(|p| p.0 == x) || i == 0 || i == self.pts.len() {
            return;
        }
        let (l, r) = (self.pts[i - 1], self.pts[i]);
        self.sum -= self.interval(l, r).1;
        self.pts.insert(i, (x, y));
        self.add_interval(l, (x, y));
        self.add_interval((x, y), r);
    }

    fn started(&self) -> bool {
        !self.pts.is_empty()
    }

    /// (max, L1) error of the current interpolant.
    fn errors(&mut self) -> (f64, f64) {
        while let Some(&(Ordered(max), l, r)) = self.heap.peek() {
            let i = self.pts.partition_point(|p| p.0 < f64::from_bits(l));
            let alive = self.pts.get(i + 1).is_some_and(|p| p.0.to_bits() == r) && self.pts[i].0.to_bits() == l;
            if alive {
                return (max, self.length * self.sum / self.xs.len() as f64);
            }
            self.heap.pop();
        }
        (f64::INFINITY, f64::INFINITY)
    }
}

/// First point count at which each tolerance was met (None: not within the budget).
struct Milestones {
    tol: Vec<f64>,
    at: Vec<Option<(usize, f64)>>,
}

impl Milestones {
    fn new(tol: &[f64]) -> Self {
        Milestones { tol: tol.to_vec(), at: vec![None; tol.len()] }
    }
    fn update(&mut self, n: usize, err: f64, loss: f64) {
        for (t, at) in self.tol.iter().zip(self.at.iter_mut()) {
            if at.is_none() && err <= *t {
                *at = Some((n, loss));
            }
        }
    }
    fn done(&self) -> bool {
        self.at.iter().all(Option::is_some)
    }
    fn json(&self) -> Value {
        Value::Array(
            self.tol.iter().zip(&self.at).map(|(t, at)| json!({"tol": t, "points": at.map(|a| a.0), "loss": at.map(|a| a.1)})).collect(),
        )
    }
}

fn main() {
    let args = match parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("adaptive_bench: {e}");
            std::process::exit(2);
        }
    };
    let (a, x0) = (args.width, args.center);
    let f: Box<dyn Fn(f64) -> f64> = match args.function.as_str() {
        "peak" => Box::new(move |x: f64| x + a * a / (a * a + (x - x0) * (x - x0))),
        _ => Box::new(move |x: f64| ((x - x0) / a).tanh()),
    };
    let mut reference = Reference::new(&*f, args.bounds, args.grid);
    let mut learner = match Learner1D::new(args.bounds.0, args.bounds.1) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("adaptive_bench: {e}");
            std::process::exit(2);
        }
    };
    let (mut max_ms, mut l1_ms) = (Milestones::new(&args.max_tol), Milestones::new(&args.l1_tol));
    let (mut asked, mut told) = (0usize, 0usize);
    let mut pending: VecDeque<f64> = VecDeque::new();
    let mut last = (f64::INFINITY, f64::INFINITY);
    let (mut learner_seconds, mut error_seconds) = (0.0, 0.0);
    let t0 = Instant::now();
    'outer: while told < args.budget {
        let want = match args.mode.as_str() {
            "batch" => args.batch.min(args.budget - asked),
            _ => (args.batch - pending.len()).min(args.budget - asked),
        };
        let t = Instant::now();
        let xs = learner.ask(want);
        learner_seconds += t.elapsed().as_secs_f64();
        asked += xs.len();
        pending.extend(xs);
        if pending.is_empty() {
            break;
        }
        // batch: every pending point completes, then the error is measured; inflight: the
        // oldest one completes and the error is measured.
        let finishing = if args.mode == "batch" { pending.len() } else { 1 };
        for k in 0..finishing {
            let Some(x) = pending.pop_front() else { break };
            let y = f(x);
            let t = Instant::now();
            learner.tell(x, y);
            learner_seconds += t.elapsed().as_secs_f64();
            told += 1;
            let t = Instant::now();
            if reference.started() {
                reference.add(x, y);
            } else {
                let pts = learner.points();
                if pts.len() >= 2 && pts[0].0 == args.bounds.0 && pts[pts.len() - 1].0 == args.bounds.1 {
                    reference.start(pts);
                }
            }
            if reference.started() && k + 1 == finishing {
                let (emax, el1) = reference.errors();
                let loss = learner.loss();
                max_ms.update(told, emax, loss);
                l1_ms.update(told, el1, loss);
                last = (emax, el1);
            }
            error_seconds += t.elapsed().as_secs_f64();
            if max_ms.done() && l1_ms.done() {
                break 'outer;
            }
        }
    }
    let out = json!({
        "learner": "tessera",
        "function": args.function,
        "width": args.width,
        "center": args.center,
        "bounds": [args.bounds.0, args.bounds.1],
        "batch": args.batch,
        "mode": args.mode,
        "grid": args.grid,
        "budget": args.budget,
        "max": max_ms.json(),
        "l1": l1_ms.json(),
        "points": told,
        "final_max_error": last.0,
        "final_l1_error": last.1,
        "final_loss": learner.loss(),
        "learner_seconds": learner_seconds,
        "error_seconds": error_seconds,
        "seconds": t0.elapsed().as_secs_f64(),
    });
    println!("{out}");
}
