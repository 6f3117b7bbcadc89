//! The heat stencil sweep against a STREAM-like triad, measured in the same run.
//!
//! `cargo bench -p solver --bench stencil` (add `-- 2d_2048` etc. to run one case).
//!
//! What is counted (the same convention for every kernel, reported twice):
//! - convention A ("STREAM", no write-allocate): each array read counts once, each array
//!   written counts once. Heat sweep `out = f(u)`: 16 B/cell (read u, write out).
//!   Triad `a = b + s*c`: 24 B/element (read b, read c, write a).
//! - convention B (+ write-allocate): a written array also counts once as read, because
//!   an ordinary store first loads the cache line. Sweep 24 B/cell, triad 32 B/element.
//!
//! Neighbour reads of the stencil are not counted (they hit in cache when rows/planes
//! fit; see docs/BENCHMARKS.md). The triad arrays hold as many elements as the block has
//! cells, each allocated separately. "2 ranks" = two threads, each owning one block of a
//! 2-rank `BlockLayout::auto` split (or its own triad arrays), allocated and first touched
//! by that thread, started together by a barrier; a trial lasts from the common start
//! to the later of the two finishes.
//!
//! After criterion's own measurements of each case, an interleaved comparison (trial of
//! every kernel in turn, repeated; medians) prints GB/s in both conventions and the
//! ratio of each kernel to the triad. The kernels besides `sweep` are experimental
//! variants of `solver::heat::sweep`, kept here to show what limits it:
//! - `step_regions`: the real sweep over the interior region and boundary slabs of
//!   `split_regions`, as `HeatSolver::step` calls it;
//! - `no_stats`: the same stencil without the statistics;
//! - `lanes`: the same stencil and statistics, but accumulated in LANES independent
//!   partial sums/minima/maxima per row, so the loop vectorises (out is bit-identical);
//! - `lanes_nt` (x86_64): `lanes` with non-temporal stores (no write-allocate);
//! - `triad_nt` (x86_64): the triad with non-temporal stores.
use criterion::{black_box, Criterion, Throughput};
use decomp::{BlockLayout, Field, Grid};
use solver::heat::{split_regions, sweep, Region, StepCoefficients, SweepStats};
use std::sync::Barrier;
use std::time::{Duration, Instant};

/// One problem size.
struct Case {
    name: &'static str,
    cells: &'static [usize],
    /// Beyond cache: gets the variants and more rounds.
    big: bool,
}

const CASES: &[Case] = &[
    Case { name: "2d_2048", cells: &[2048, 2048], big: true },
    Case { name: "3d_160", cells: &[160, 160, 160], big: true },
    // In cache (L2 is 1 MiB per core on the machine in docs/BENCHMARKS.md).
    Case { name: "2d_128", cells: &[128, 128], big: false },
    Case { name: "3d_32", cells: &[32, 32, 32], big: false },
];

const COEF: StepCoefficients = StepCoefficients { c: [0.1, 0.1, 0.1], dt: 1e-3 };

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kernel {
    Triad,
    TriadNt,
    Sweep,
    StepRegions,
    NoStats,
    Lanes,
    LanesNt,
}

impl Kernel {
    fn name(self) -> &'static str {
        match self {
            Kernel::Triad => "triad",
            Kernel::TriadNt => "triad_nt",
            Kernel::Sweep => "sweep",
            Kernel::StepRegions => "step_regions",
            Kernel::NoStats => "no_stats",
            Kernel::Lanes => "lanes",
            Kernel::LanesNt => "lanes_nt",
        }
    }
    /// Bytes per cell, convention A (no write-allocate) and B (+ write-allocate).
    fn bytes_per_cell(self) -> (usize, usize) {
        match self {
            Kernel::Triad | Kernel::TriadNt => (24, 32),
            _ => (16, 24),
        }
    }
}

/// What one rank (thread) owns.
struct Rank {
    dims: usize,
    u: Field,
    out: Field,
    whole: Region,
    interior: Region,
    slabs: Vec<Region>,
    a: Vec<f64>,
    b: Vec<f64>,
    c: Vec<f64>,
}

impl Rank {
    /// Allocates and first-touches everything (call on the owning thread).
    fn new(layout: &BlockLayout, rank: usize) -> Self {
        let dims = layout.grid.dims;
        let block = layout.blocks[rank];
        let n = block.shape();
        let mut u = Field::zeros(block, dims, 1);
        for (i, v) in u.as_slice_mut().iter_mut().enumerate() {
            *v = 1.0 + (i % 997) as f64 * 1e-3;
        }
        let mut out = Field::zeros(block, dims, 1);
        out.as_slice_mut().fill(1.0);
        let cells = block.count();
        let a = vec![1.0; cells];
        let b: Vec<f64> = (0..cells).map(|i| 1.0 + (i % 991) as f64 * 1e-3).collect();
        let c: Vec<f64> = (0..cells).map(|i| 2.0 - (i % 983) as f64 * 1e-3).collect();
        let (interior, slabs) = split_regions(n, dims);
        Rank { dims, u, out, whole: Region { lo: [0; 3], hi: n }, interior, slabs, a, b, c }
    }

    fn run(&mut self, k: Kernel) -> f64 {
        match k {
            Kernel::Triad => {
                triad(&mut self.a, &self.b, &self.c, 0.5);
                self.a[0]
            }
            Kernel::TriadNt => {
                triad_nt(&mut self.a, &self.b, &self.c, 0.5);
                self.a[0]
            }
            Kernel::Sweep => sweep(&self.u, &mut self.out, None, COEF, self.whole, self.dims).sum,
            Kernel::StepRegions => {
                let mut s = sweep(&self.u, &mut self.out, None, COEF, self.interior, self.dims).sum;
                for r in &self.slabs {
                    s += sweep(&self.u, &mut self.out, None, COEF, *r, self.dims).sum;
                }
                s
            }
            Kernel::NoStats => {
                sweep_no_stats(&self.u, &mut self.out, COEF, self.whole, self.dims);
                self.out.as_slice()[0]
            }
            Kernel::Lanes => sweep_lanes::<false>(&self.u, &mut self.out, COEF, self.whole, self.dims).sum,
            Kernel::LanesNt => sweep_lanes::<true>(&self.u, &mut self.out, COEF, self.whole, self.dims).sum,
        }
    }
}

#[inline(never)]
fn triad(a: &mut [f64], b: &[f64], c: &[f64], s: f64) {
    for ((a, b), c) in a.iter_mut().zip(b).zip(c) {
        *a = b + s * c;
    }
}

#[inline(never)]
fn triad_nt(a: &mut [f64], b: &[f64], c: &[f64], s: f64) {
    let n = a.len().min(b.len()).min(c.len());
    let (a, b, c) = (&mut a[..n], &b[..n], &c[..n]);
    // Scalar until `a` is 16-byte aligned, streaming pairs, scalar tail.
    let head = if (a.as_ptr() as usize) % 16 == 0 { 0 } else { 1.min(n) };
    for i in 0..head {
        a[i] = b[i] + s * c[i];
    }
    let mut i = head;
    while i + 2 <= n {
        nt_store2(&mut a[i..i + 2], [b[i] + s * c[i], b[i + 1] + s * c[i + 1]]);
        i += 2;
    }
    for j in i..n {
        a[j] = b[j] + s * c[j];
    }
    nt_fence();
}

/// Non-temporal store of two values at a 16-byte aligned slot.
#[inline(always)]
fn nt_store2(dst: &mut [f64], v: [f64; 2]) {
    assert!(dst.len() == 2);
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_mm_set_pd, _mm_stream_pd};
        debug_assert!((dst.as_ptr() as usize) % 16 == 0);
        // SAFETY: dst holds two f64 and is 16-byte aligned (callers peel to alignment);
        // SSE2 is part of the x86_64 baseline.
        unsafe { _mm_stream_pd(dst.as_mut_ptr(), _mm_set_pd(v[1], v[0])) };
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        dst[0] = v[0];
        dst[1] = v[1];
    }
}

#[inline(always)]
fn nt_fence() {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: sfence has no preconditions.
    unsafe {
        std::arch::x86_64::_mm_sfence()
    };
}

/// The stencil of `solver::heat::sweep` (src = None) without statistics.
#[inline(never)]
fn sweep_no_stats(u: &Field, out: &mut Field, k: StepCoefficients, region: Region, dims: usize) {
    let p = u.padded_shape();
    let g = u.ghost;
    let (sy, sz) = (p[0], p[0] * p[1]);
    let uu = u.as_slice();
    let oo = out.as_slice_mut();
    let (cx, cy, cz) = (k.c[0], k.c[1], k.c[2]);
    let n = region.hi[0] - region.lo[0];
    for kk in region.lo[2]..region.hi[2] {
        for j in region.lo[1]..region.hi[1] {
            let row = ((kk + g[2]) * p[1] + j + g[1]) * p[0] + g[0] + region.lo[0];
            let c = &uu[row..row + n];
            let w = &uu[row - 1..row - 1 + n];
            let e = &uu[row + 1..row + 1 + n];
            let s_ = &uu[row - sy..row - sy + n];
            let nn = &uu[row + sy..row + sy + n];
            let o = &mut oo[row..row + n];
            if dims == 3 {
                let b = &uu[row - sz..row - sz + n];
                let t = &uu[row + sz..row + sz + n];
                for i in 0..n {
                    let ci = c[i];
                    o[i] = ci + cx * (w[i] - 2.0 * ci + e[i]) + cy * (s_[i] - 2.0 * ci + nn[i]) + cz * (b[i] - 2.0 * ci + t[i]);
                }
            } else {
                for i in 0..n {
                    let ci = c[i];
                    o[i] = ci + cx * (w[i] - 2.0 * ci + e[i]) + cy * (s_[i] - 2.0 * ci + nn[i]);
                }
            }
        }
    }
}

/// Independent accumulators per row in `lanes`.
const LANES: usize = 4;

/// Per-lane statistics of one row.
#[derive(Clone, Copy)]
struct Acc {
    sum: [f64; LANES],
    sumsq: [f64; LANES],
    mn: [f64; LANES],
    mx: [f64; LANES],
    ch: [f64; LANES],
}

impl Acc {
    fn new() -> Self {
        Acc { sum: [0.0; LANES], sumsq: [0.0; LANES], mn: [f64::INFINITY; LANES], mx: [f64::NEG_INFINITY; LANES], ch: [0.0; LANES] }
    }
    #[inline(always)]
    fn add(&mut self, l: usize, v: f64, ci: f64) {
        self.sum[l] += v;
        self.sumsq[l] += v * v;
        self.mn[l] = if v < self.mn[l] { v } else { self.mn[l] };
        self.mx[l] = if v > self.mx[l] { v } else { self.mx[l] };
        let d = (v - ci).abs();
        self.ch[l] = if d > self.ch[l] { d } else { self.ch[l] };
    }
    fn row_stats(&self) -> SweepStats {
        let mut s = SweepStats { sum: 0.0, sumsq: 0.0, min: f64::INFINITY, max: f64::NEG_INFINITY, max_change: 0.0 };
        for l in 0..LANES {
            s.sum += self.sum[l];
            s.sumsq += self.sumsq[l];
            s.min = if self.mn[l] < s.min { self.mn[l] } else { s.min };
            s.max = if self.mx[l] > s.max { self.mx[l] } else { s.max };
            s.max_change = if self.ch[l] > s.max_change { self.ch[l] } else { s.max_change };
        }
        // As in sweep(): NaN never compares greater, so propagate it explicitly.
        if s.sum.is_nan() {
            s.max = f64::NAN;
        }
        s
    }
}

fn merge(a: &mut SweepStats, o: &SweepStats) {
    a.sum += o.sum;
    a.sumsq += o.sumsq;
    a.min = a.min.min(o.min);
    a.max = a.max.max(o.max);
    a.max_change = a.max_change.max(o.max_change);
}

/// `solver::heat::sweep` (src = None) with LANES-way accumulators: same `out` bit for
/// bit, same min/max/max_change, sums re-associated (differences of rounding only).
/// With `NT`, stores bypass the cache (x86_64 `movntpd`), avoiding write-allocate.
#[inline(never)]
fn sweep_lanes<const NT: bool>(u: &Field, out: &mut Field, k: StepCoefficients, region: Region, dims: usize) -> SweepStats {
    let p = u.padded_shape();
    let g = u.ghost;
    let (sy, sz) = (p[0], p[0] * p[1]);
    let uu = u.as_slice();
    let oo = out.as_slice_mut();
    let (cx, cy, cz) = (k.c[0], k.c[1], k.c[2]);
    let mut st = SweepStats { sum: 0.0, sumsq: 0.0, min: f64::INFINITY, max: f64::NEG_INFINITY, max_change: 0.0 };
    let n = region.hi[0] - region.lo[0];
    if n == 0 {
        return st;
    }
    for kk in region.lo[2]..region.hi[2] {
        for j in region.lo[1]..region.hi[1] {
            let row = ((kk + g[2]) * p[1] + j + g[1]) * p[0] + g[0] + region.lo[0];
            let mut acc = Acc::new();
            if dims == 3 {
                row_lanes::<3, NT>(uu, oo, row, n, sy, sz, cx, cy, cz, &mut acc);
            } else {
                row_lanes::<2, NT>(uu, oo, row, n, sy, sz, cx, cy, cz, &mut acc);
            }
            merge(&mut st, &acc.row_stats());
        }
    }
    if NT {
        nt_fence();
    }
    st
}

#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn row_lanes<const D: usize, const NT: bool>(
    uu: &[f64],
    oo: &mut [f64],
    row: usize,
    n: usize,
    sy: usize,
    sz: usize,
    cx: f64,
    cy: f64,
    cz: f64,
    acc: &mut Acc,
) {
    let c = &uu[row..row + n];
    let w = &uu[row - 1..row - 1 + n];
    let e = &uu[row + 1..row + 1 + n];
    let s_ = &uu[row - sy..row - sy + n];
    let nn = &uu[row + sy..row + sy + n];
    let (b, t) = if D == 3 { (&uu[row - sz..row - sz + n], &uu[row + sz..row + sz + n]) } else { (c, c) };
    let o = &mut oo[row..row + n];
    let val = |i: usize| {
        let ci = c[i];
        // The same expression, in the same order, as solver::heat::sweep.
        let v = if D == 3 {
            ci + cx * (w[i] - 2.0 * ci + e[i]) + cy * (s_[i] - 2.0 * ci + nn[i]) + cz * (b[i] - 2.0 * ci + t[i])
        } else {
            ci + cx * (w[i] - 2.0 * ci + e[i]) + cy * (s_[i] - 2.0 * ci + nn[i])
        };
        (v, ci)
    };
    // Non-temporal stores need 16-byte alignment of o: peel one cell if needed.
    let head = if NT && (o.as_ptr() as usize) % 16 != 0 { 1.min(n) } else { 0 };
    for i in 0..head {
        let (v, ci) = val(i);
        o[i] = v;
        acc.add(0, v, ci);
    }
    let body = (n - head) / LANES * LANES;
    let mut i0 = head;
    while i0 < head + body {
        let mut vs = [0.0; LANES];
        for l in 0..LANES {
            let (v, ci) = val(i0 + l);
            vs[l] = v;
            acc.add(l, v, ci);
        }
        if NT {
            for l in (0..LANES).step_by(2) {
                nt_store2(&mut o[i0 + l..i0 + l + 2], [vs[l], vs[l + 1]]);
            }
        } else {
            o[i0..i0 + LANES].copy_from_slice(&vs);
        }
        i0 += LANES;
    }
    for i in head + body..n {
        let (v, ci) = val(i);
        o[i] = v;
        acc.add(0, v, ci);
    }
}

/// Builds one `Rank` per block, each on its own thread (first touch on the owner).
fn make_ranks(layout: &BlockLayout) -> Vec<Rank> {
    std::thread::scope(|s| {
        let hs: Vec<_> = (0..layout.nranks()).map(|r| s.spawn(move || Rank::new(layout, r))).collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

/// Runs `reps` repetitions of `k` on every rank concurrently; returns the elapsed time
/// from the common start (barrier) to the last rank's finish.
fn trial(ranks: &mut [Rank], k: Kernel, reps: u64) -> Duration {
    if ranks.len() == 1 {
        let t0 = Instant::now();
        for _ in 0..reps {
            black_box(ranks[0].run(k));
        }
        return t0.elapsed();
    }
    let barrier = Barrier::new(ranks.len());
    let times: Vec<(Instant, Instant)> = std::thread::scope(|s| {
        let hs: Vec<_> = ranks
            .iter_mut()
            .map(|r| {
                let barrier = &barrier;
                s.spawn(move || {
                    barrier.wait();
                    let t0 = Instant::now();
                    for _ in 0..reps {
                        black_box(r.run(k));
                    }
                    (t0, Instant::now())
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let start = times.iter().map(|t| t.0).min().unwrap();
    let end = times.iter().map(|t| t.1).max().unwrap();
    end - start
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let m = v.len() / 2;
    if v.len() % 2 == 1 {
        v[m]
    } else {
        0.5 * (v[m - 1] + v[m])
    }
}

/// Interleaved comparison: every kernel in turn, `rounds` times; medians and ratios.
fn compare(title: &str, ranks: &mut [Rank], kernels: &[Kernel], cells: usize, rounds: usize) {
    // Repetitions per trial: about 25 ms of work.
    let reps: Vec<u64> = kernels
        .iter()
        .map(|&k| {
            trial(ranks, k, 1);
            let t = trial(ranks, k, 1).as_secs_f64();
            ((0.025 / t).ceil() as u64).clamp(1, 10_000)
        })
        .collect();
    let mut samples = vec![Vec::with_capacity(rounds); kernels.len()];
    for _ in 0..rounds {
        for (i, &k) in kernels.iter().enumerate() {
            samples[i].push(trial(ranks, k, reps[i]).as_secs_f64() / reps[i] as f64);
        }
    }
    let med: Vec<f64> = samples.iter_mut().map(|s| median(s)).collect();
    let gbs = |i: usize| {
        let (a, b) = kernels[i].bytes_per_cell();
        ((a * cells) as f64 / med[i] / 1e9, (b * cells) as f64 / med[i] / 1e9)
    };
    let tri = kernels.iter().position(|&k| k == Kernel::Triad).expect("triad is measured");
    let (ta, tb) = gbs(tri);
    println!("\n== {title}: interleaved, {rounds} rounds, median per repetition ==");
    println!("{:<14}{:>11}{:>11}{:>11}{:>11}{:>11}{:>11}", "kernel", "ms", "GB/s A", "GB/s B", "A/triad", "B/triad", "Gcell/s");
    for (i, k) in kernels.iter().enumerate() {
        let (a, b) = gbs(i);
        println!(
            "{:<14}{:>11.3}{:>11.2}{:>11.2}{:>10.1}%{:>10.1}%{:>11.3}",
            k.name(),
            med[i] * 1e3,
            a,
            b,
            100.0 * a / ta,
            100.0 * b / tb,
            cells as f64 / med[i] / 1e9
        );
    }
    println!("(A: sweep 16 B/cell, triad 24 B/elem; B: + write-allocate, sweep 24, triad 32; *_nt kernels do no write-allocate)");
}

/// The `lanes` variant must give `out` bit for bit and the same statistics.
fn check_variants() {
    for cells in [&[37usize, 23][..], &[19, 11, 7][..]] {
        let grid = Grid::new(cells, &[0.0; 3][..cells.len()], &[1.0; 3][..cells.len()], &[false; 3][..cells.len()]);
        let layout = BlockLayout::new(&grid, &vec![1; cells.len()], 1).unwrap();
        let mut r = Rank::new(&layout, 0);
        for (i, v) in r.u.as_slice_mut().iter_mut().enumerate() {
            *v = ((i * 7919) % 1009) as f64 * 0.01 - 3.0;
        }
        // Interior values of a field's storage, as bits.
        let (p, g, n) = (r.u.padded_shape(), r.u.ghost, r.u.shape());
        let inner = |f: &[f64]| -> Vec<u64> {
            let mut v = Vec::new();
            for k in 0..n[2] {
                for j in 0..n[1] {
                    for i in 0..n[0] {
                        v.push(f[((k + g[2]) * p[1] + j + g[1]) * p[0] + i + g[0]].to_bits());
                    }
                }
            }
            v
        };
        let s0 = sweep(&r.u, &mut r.out, None, COEF, r.whole, r.dims);
        let o0 = inner(r.out.as_slice());
        for nt in [false, true] {
            r.out.as_slice_mut().fill(0.0);
            let s1 = if nt {
                sweep_lanes::<true>(&r.u, &mut r.out, COEF, r.whole, r.dims)
            } else {
                sweep_lanes::<false>(&r.u, &mut r.out, COEF, r.whole, r.dims)
            };
            assert!(o0 == inner(r.out.as_slice()), "lanes (nt {nt}) changed out");
            assert_eq!((s0.min, s0.max, s0.max_change), (s1.min, s1.max, s1.max_change));
            assert!((s0.sum - s1.sum).abs() <= 1e-12 * s0.sumsq.max(1.0));
            assert!((s0.sumsq - s1.sumsq).abs() <= 1e-12 * s0.sumsq.max(1.0));
        }
        r.out.as_slice_mut().fill(0.0);
        sweep_no_stats(&r.u, &mut r.out, COEF, r.whole, r.dims);
        assert!(o0 == inner(r.out.as_slice()), "no_stats changed out");
    }
}

fn main() {
    check_variants();
    let args: Vec<String> = std::env::args().collect();
    // `cargo bench` passes --bench; `cargo test --benches` does not (criterion then runs
    // each benchmark once as a test): skip the interleaved tables there.
    let full = args.iter().any(|a| a == "--bench");
    let filter: Option<&str> = args.iter().skip(1).find(|a| !a.starts_with('-')).map(|s| s.as_str());
    let mut crit = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_millis(1200))
        .without_plots()
        .configure_from_args();
    for case in CASES {
        let grid = Grid::new(case.cells, &vec![0.0; case.cells.len()], &vec![1.0; case.cells.len()], &vec![false; case.cells.len()]);
        for nranks in [1usize, 2] {
            let group_name = format!("stencil/{}/{}rank", case.name, nranks);
            if filter.is_some_and(|f| !group_name.contains(f)) {
                continue;
            }
            let layout = BlockLayout::auto(&grid, nranks, 1).unwrap();
            let mut ranks = make_ranks(&layout);
            let cells = grid.total_cells();
            let kernels: &[Kernel] = if case.big {
                &[Kernel::Triad, Kernel::Sweep, Kernel::StepRegions, Kernel::NoStats, Kernel::Lanes, Kernel::LanesNt, Kernel::TriadNt]
            } else {
                &[Kernel::Triad, Kernel::Sweep, Kernel::NoStats, Kernel::Lanes]
            };
            {
                let mut g = crit.benchmark_group(&group_name);
                for &k in kernels {
                    // criterion gets the full-size kernels only; variants go to the table.
                    if !matches!(k, Kernel::Triad | Kernel::Sweep | Kernel::Lanes) {
                        continue;
                    }
                    g.throughput(Throughput::Bytes((k.bytes_per_cell().0 * cells) as u64));
                    g.bench_function(k.name(), |b| b.iter_custom(|iters| trial(&mut ranks, k, iters)));
                }
                g.finish();
            }
            if full {
                let title = format!(
                    "{} ({} cells, procs {:?}), {} rank(s)",
                    case.name,
                    cells,
                    &layout.procs[..grid.dims],
                    nranks
                );
                compare(&title, &mut ranks, kernels, cells, if case.big { 9 } else { 15 });
            }
        }
    }
    crit.final_summary();
}
