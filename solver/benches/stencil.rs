//! The heat stencil sweep against STREAM-like kernels, measured in the same run.
//!
//! ```text
//! cargo bench -p solver --bench stencil              # everything, about 2 minutes
//! cargo bench -p solver --bench stencil -- 2d_2048   # cases whose name contains 2d_2048
//! ```
//!
//! Bytes counted (one convention for every kernel, reported twice):
//! - A ("STREAM", no write-allocate): every array read counts once, every array written
//!   counts once. Sweep `out = f(u)`: 16 B/cell. Triad `a = b + s*c`: 24 B/element.
//!   Scale `a = s*b`: 16 B/element.
//! - B (+ write-allocate): an ordinary store first reads the line, so each written array
//!   counts once more. Sweep 24 B/cell, triad 32 B/element, scale 24 B/element.
//!
//! Neighbour reads of the stencil are not counted (rows/planes are meant to be re-read
//! from cache). `*_nt` kernels store non-temporally, so they do no write-allocate: their
//! B figure overstates the traffic; it is there to compare times.
//!
//! Arrays: the heat fields are `Field::zeros(block, dims, g)` on each rank's block of
//! `BlockLayout::auto`, g = 2 where the block has exchanged faces (as `HeatSolver` lays
//! them out for two steps per pass), else 1; `pair` computes the intermediate step one
//! layer into the exchanged faces' ghosts, as `tessera run` does; the STREAM arrays have as many elements as the block has
//! cells, each allocated separately through the same `decomp::field::zeroed_storage`
//! (huge pages for both sides where the kernel grants them). "2 ranks" = two threads, each owning one block (or
//! its own STREAM arrays), allocated and first touched by that thread, started together
//! by a barrier; a trial lasts from the common start to the later finish.
//!
//! Kernels:
//! - `triad`, `scale`: the STREAM peers (`triad` is the reference of every ratio;
//!   `scale` has the sweep's own mix of one read and one write stream);
//! - `sweep`: `solver::heat::sweep` over the whole block, src = None (row kernels with
//!   vectorised statistics, AVX-512 or AVX2 when the CPU has it);
//! - `sweep_baseline`, `sweep_avx2`: the same forced to the x86-64 baseline (SSE2) or
//!   the AVX2 build (where `sweep` picks AVX-512);
//! - `step_regions`: the same over the interior region and the slabs of the faces
//!   another rank fills (`split_regions_open` with `open_faces`), as `HeatSolver::step`
//!   calls it;
//! - `no_stats`, `no_stats_avx2`: the same stencil without the statistics (baseline and
//!   runtime-dispatched AVX2 build of the same source);
//! - `rows1`, `rows3`, `rows3_pairs`: probes of the memory access pattern, no stencil
//!   arithmetic: `out = 0.5*u` (one input row per output row), `out = u[j-1]+u[j]+u[j+1]`
//!   (the three y-rows of the 5-point stencil), and the same two output rows per pass;
//! - `triad_nt`: the triad with non-temporal stores.
//!
//! After criterion's own measurement of `triad` and `sweep` for a case, an
//! interleaved comparison (one trial of every kernel in turn, repeated; medians) prints
//! GB/s in both conventions and each kernel's ratio to the triad.

use criterion::{black_box, Criterion, Throughput};
use decomp::{BlockLayout, Field, Grid};
use solver::heat::{open_faces, split_regions_open, sweep, sweep_pair, sweep_with, FaceGhost, Isa, Region, StepCoefficients};
use std::sync::Barrier;
use std::time::{Duration, Instant};

/// One problem size.
struct Case {
    name: &'static str,
    cells: &'static [usize],
    /// Beyond cache: gets every kernel and fewer rounds.
    big: bool,
}

const CASES: &[Case] = &[
    Case { name: "2d_2048", cells: &[2048, 2048], big: true },
    Case { name: "3d_160", cells: &[160, 160, 160], big: true },
    // In cache (the machine in docs/BENCHMARKS.md has 1 MiB of L2 per core): 2D rows of
    // 128 and 2048 cells, 3D rows of 32 and of 160 (as 3d_160's, to tell the arithmetic
    // of its rows from its memory traffic).
    Case { name: "2d_128", cells: &[128, 128], big: false },
    Case { name: "2d_2048x16", cells: &[2048, 16], big: false },
    Case { name: "3d_32", cells: &[32, 32, 32], big: false },
    Case { name: "3d_160x12", cells: &[160, 12, 12], big: false },
];

const COEF: StepCoefficients = StepCoefficients { c: [0.1, 0.1, 0.1], dt: 1e-3 };

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kernel {
    Triad,
    Scale,
    Sweep,
    Pair,
    StepRegions,
    NoStats,
    NoStatsAvx2,
    SweepBaseline,
    SweepAvx2,
    Rows1,
    Rows3,
    Rows3Pairs,
    TriadNt,
}

const BIG: &[Kernel] = &[
    Kernel::Triad,
    Kernel::Scale,
    Kernel::Sweep,
    Kernel::Pair,
    Kernel::StepRegions,
    Kernel::NoStats,
    Kernel::NoStatsAvx2,
    Kernel::SweepBaseline,
    Kernel::SweepAvx2,
    Kernel::Rows1,
    Kernel::Rows3,
    Kernel::Rows3Pairs,
    Kernel::TriadNt,
];
const SMALL: &[Kernel] = &[
    Kernel::Triad,
    Kernel::Scale,
    Kernel::Sweep,
    Kernel::Pair,
    Kernel::NoStats,
    Kernel::NoStatsAvx2,
    Kernel::SweepBaseline,
    Kernel::SweepAvx2,
];

impl Kernel {
    fn name(self) -> &'static str {
        match self {
            Kernel::Triad => "triad",
            Kernel::Scale => "scale",
            Kernel::Sweep => "sweep",
            Kernel::Pair => "pair",
            Kernel::StepRegions => "step_regions",
            Kernel::NoStats => "no_stats",
            Kernel::NoStatsAvx2 => "no_stats_avx2",
            Kernel::SweepBaseline => "sweep_baseline",
            Kernel::SweepAvx2 => "sweep_avx2",
            Kernel::Rows1 => "rows1",
            Kernel::Rows3 => "rows3",
            Kernel::Rows3Pairs => "rows3_pairs",
            Kernel::TriadNt => "triad_nt",
        }
    }
    /// Bytes per cell, convention A (no write-allocate) and B (+ write-allocate).
    fn bytes_per_cell(self) -> (usize, usize) {
        match self {
            Kernel::Triad | Kernel::TriadNt => (24, 32),
            // Two steps per pass: each step's bytes counted, as if it swept alone.
            Kernel::Pair => (32, 48),
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
    /// Faces whose ghosts another rank fills, `[axis][side]`.
    open: [[bool; 2]; 3],
    /// Dirichlet conditions on the other faces, for `pair`, and its scratch.
    faces: Vec<FaceGhost>,
    ring: Vec<Vec<f64>>,
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
        // As `HeatSolver` lays them out: two ghost layers where faces are exchanged
        // (the pair's intermediate step is computed one layer into them).
        let open = open_faces(layout, rank);
        let gw = if open.iter().flatten().any(|&o| o) { 2 } else { 1 };
        let mut u = Field::zeros(block, dims, gw);
        for (i, v) in u.as_slice_mut().iter_mut().enumerate() {
            *v = 1.0 + (i % 997) as f64 * 1e-3;
        }
        let mut out = Field::zeros(block, dims, gw);
        out.as_slice_mut().fill(1.0);
        let cells = block.count();
        // The triad's arrays get the fields' storage (huge pages where advised), so
        // the ratio compares kernels, not page sizes.
        let filled = |f: &dyn Fn(usize) -> f64| {
            let mut v = decomp::field::zeroed_storage(cells);
            v.iter_mut().enumerate().for_each(|(i, x)| *x = f(i));
            v
        };
        let a = filled(&|_| 1.0);
        let b = filled(&|i| 1.0 + (i % 991) as f64 * 1e-3);
        let c = filled(&|i| 2.0 - (i % 983) as f64 * 1e-3);
        let (interior, slabs) = split_regions_open(n, dims, open);
        let faces: Vec<FaceGhost> = (0..dims)
            .flat_map(|axis| (0..2).map(move |side| (axis, side)))
            .filter(|&(axis, side)| !open[axis][side])
            .map(|(axis, side)| {
                let count = n[(axis + 1) % 3] * n[(axis + 2) % 3];
                FaceGhost { axis, side, dirichlet: true, h: 1.0, values: vec![0.5; count] }
            })
            .collect();
        // The ring's three slices, first touched here.
        let mut ring = Vec::new();
        sweep_pair(&u, &mut out, None, COEF, dims, open, &faces, &mut ring, Isa::detect(), None);
        Rank { dims, u, out, whole: Region { lo: [0; 3], hi: n }, interior, slabs, open, faces, ring, a, b, c }
    }

    fn run(&mut self, k: Kernel) -> f64 {
        let (u, out, r, d) = (&self.u, &mut self.out, self.whole, self.dims);
        match k {
            Kernel::Triad => {
                triad(&mut self.a, &self.b, &self.c, 0.5);
                self.a[0]
            }
            Kernel::TriadNt => {
                triad_nt(&mut self.a, &self.b, &self.c, 0.5);
                self.a[0]
            }
            Kernel::Scale => {
                scale(&mut self.a, &self.b, 0.5);
                self.a[0]
            }
            Kernel::Sweep => sweep(u, out, None, COEF, r, d).sum,
            Kernel::Pair => sweep_pair(u, out, None, COEF, d, self.open, &self.faces, &mut self.ring, Isa::detect(), None)[1].sum,
            Kernel::StepRegions => {
                let mut s = sweep(u, out, None, COEF, self.interior, d).sum;
                for reg in &self.slabs {
                    s += sweep(u, out, None, COEF, *reg, d).sum;
                }
                s
            }
            Kernel::NoStats => {
                sweep_no_stats(u, out, COEF, r, d);
                out.as_slice()[0]
            }
            Kernel::NoStatsAvx2 => {
                sweep_no_stats_avx2(u, out, COEF, r, d);
                out.as_slice()[0]
            }
            Kernel::SweepBaseline => sweep_with(u, out, None, COEF, r, d, Isa::Baseline).sum,
            Kernel::SweepAvx2 => sweep_with(u, out, None, COEF, r, d, Isa::Avx2).sum,
            Kernel::Rows1 | Kernel::Rows3 | Kernel::Rows3Pairs => {
                rows_probe(u, out, r, k);
                out.as_slice()[0]
            }
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
fn scale(a: &mut [f64], b: &[f64], s: f64) {
    for (a, b) in a.iter_mut().zip(b) {
        *a = s * b;
    }
}

#[inline(never)]
fn triad_nt(a: &mut [f64], b: &[f64], c: &[f64], s: f64) {
    let n = a.len().min(b.len()).min(c.len());
    let (a, b, c) = (&mut a[..n], &b[..n], &c[..n]);
    // Scalar until `a` is 16-byte aligned, then streaming pairs, then a scalar tail.
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
    #[cfg(target_arch = "x86_64")]
    // SAFETY: sfence has no preconditions.
    unsafe {
        std::arch::x86_64::_mm_sfence()
    };
}

/// Non-temporal store of two values at a 16-byte aligned slot.
#[inline(always)]
fn nt_store2(dst: &mut [f64], v: [f64; 2]) {
    assert!(dst.len() == 2);
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_mm_set_pd, _mm_stream_pd};
        debug_assert!((dst.as_ptr() as usize) % 16 == 0);
        // SAFETY: dst holds two f64 and is 16-byte aligned (the caller peels to
        // alignment); SSE2 is part of the x86_64 baseline.
        unsafe { _mm_stream_pd(dst.as_mut_ptr(), _mm_set_pd(v[1], v[0])) };
    }
    #[cfg(not(target_arch = "x86_64"))]
    dst.copy_from_slice(&v);
}

/// Memory-pattern probes over the field rows (no stencil arithmetic).
#[inline(never)]
fn rows_probe(u: &Field, out: &mut Field, region: Region, k: Kernel) {
    let (p, g) = (u.padded_shape(), u.ghost);
    let sy = p[0];
    let uu = u.as_slice();
    let oo = out.as_slice_mut();
    let n = region.hi[0] - region.lo[0];
    for kk in region.lo[2]..region.hi[2] {
        let mut j = region.lo[1];
        while j < region.hi[1] {
            let row = row_start(p, g, &region, j, kk);
            let (r0, r1, r2) = (&uu[row - sy..row - sy + n], &uu[row..row + n], &uu[row + sy..row + sy + n]);
            if k == Kernel::Rows1 {
                for (o, c) in oo[row..row + n].iter_mut().zip(r1) {
                    *o = 0.5 * c;
                }
                j += 1;
            } else if k == Kernel::Rows3Pairs && j + 1 < region.hi[1] {
                let r3 = &uu[row + 2 * sy..row + 2 * sy + n];
                let (o0, o1) = oo[row..row + sy + n].split_at_mut(sy);
                let (o0, o1) = (&mut o0[..n], &mut o1[..n]);
                for i in 0..n {
                    o0[i] = r0[i] + r1[i] + r2[i];
                    o1[i] = r1[i] + r2[i] + r3[i];
                }
                j += 2;
            } else {
                let o = &mut oo[row..row + n];
                for i in 0..n {
                    o[i] = r0[i] + r1[i] + r2[i];
                }
                j += 1;
            }
        }
    }
}

/// Slices of one row: centre, west, east, south, north, bottom, top (bottom/top =
/// centre in 2D), all of length `n`.
#[inline(always)]
fn row_slices(uu: &[f64], row: usize, n: usize, sy: usize, sz: usize, dims: usize) -> [&[f64]; 7] {
    let c = &uu[row..row + n];
    let (b, t) = if dims == 3 { (&uu[row - sz..row - sz + n], &uu[row + sz..row + sz + n]) } else { (c, c) };
    [c, &uu[row - 1..row - 1 + n], &uu[row + 1..row + 1 + n], &uu[row - sy..row - sy + n], &uu[row + sy..row + sy + n], b, t]
}

/// Row start (storage index of the first cell of `region` in row (j, kk)).
#[inline(always)]
fn row_start(p: [usize; 3], g: [usize; 3], region: &Region, j: usize, kk: usize) -> usize {
    ((kk + g[2]) * p[1] + j + g[1]) * p[0] + g[0] + region.lo[0]
}

/// The stencil of `solver::heat::sweep` (src = None) without statistics.
#[inline(always)]
fn no_stats_body(u: &Field, out: &mut Field, k: StepCoefficients, region: Region, dims: usize) {
    let (p, g) = (u.padded_shape(), u.ghost);
    let (sy, sz) = (p[0], p[0] * p[1]);
    let uu = u.as_slice();
    let oo = out.as_slice_mut();
    let (cx, cy, cz) = (k.c[0], k.c[1], k.c[2]);
    let n = region.hi[0] - region.lo[0];
    for kk in region.lo[2]..region.hi[2] {
        for j in region.lo[1]..region.hi[1] {
            let row = row_start(p, g, &region, j, kk);
            let [c, w, e, s_, nn, b, t] = row_slices(uu, row, n, sy, sz, dims);
            let o = &mut oo[row..row + n];
            if dims == 3 {
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

#[inline(never)]
fn sweep_no_stats(u: &Field, out: &mut Field, k: StepCoefficients, region: Region, dims: usize) {
    no_stats_body(u, out, k, region, dims)
}

/// `no_stats_body` compiled for AVX2 when the CPU has it.
fn sweep_no_stats_avx2(u: &Field, out: &mut Field, k: StepCoefficients, region: Region, dims: usize) {
    #[cfg(target_arch = "x86_64")]
    {
        #[inline(never)]
        #[target_feature(enable = "avx2")]
        fn imp(u: &Field, out: &mut Field, k: StepCoefficients, region: Region, dims: usize) {
            no_stats_body(u, out, k, region, dims)
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU supports AVX2 (checked just above).
            return unsafe { imp(u, out, k, region, dims) };
        }
    }
    sweep_no_stats(u, out, k, region, dims)
}

/// Builds one `Rank` per block, each on its own thread (first touch on the owner).
fn make_ranks(layout: &BlockLayout) -> Vec<Rank> {
    std::thread::scope(|s| {
        let hs: Vec<_> = (0..layout.nranks()).map(|r| s.spawn(move || Rank::new(layout, r))).collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

/// Runs `reps` repetitions of `k` on every rank concurrently; returns the time from the
/// common start (barrier) to the last rank's finish.
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
    // Repetitions per trial: about 20 ms of work.
    let reps: Vec<u64> = kernels
        .iter()
        .map(|&k| {
            trial(ranks, k, 1);
            let t = trial(ranks, k, 1).as_secs_f64();
            ((0.02 / t).ceil() as u64).clamp(1, 100_000)
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
    println!("{:<14}{:>10}{:>9}{:>9}{:>10}{:>10}{:>10}", "kernel", "ms", "GB/s A", "GB/s B", "A/triad", "B/triad", "Gcell/s");
    for (i, k) in kernels.iter().enumerate() {
        let (a, b) = gbs(i);
        println!(
            "{:<14}{:>10.3}{:>9.2}{:>9.2}{:>9.1}%{:>9.1}%{:>10.3}",
            k.name(),
            med[i] * 1e3,
            a,
            b,
            100.0 * a / ta,
            100.0 * b / tb,
            cells as f64 / med[i] / 1e9
        );
    }
    println!("(A: sweep/scale 16 B/cell, triad 24; B: with write-allocate, 24 and 32; *_nt: no write-allocate)");
}

/// The variants must give `out` bit for bit as sweep() does, and the same statistics.
fn check_variants() {
    for cells in [&[37usize, 23][..], &[19, 11, 7][..]] {
        let d = cells.len();
        let grid = Grid::new(cells, &[0.0; 3][..d], &[1.0; 3][..d], &[false; 3][..d]);
        let layout = BlockLayout::new(&grid, &vec![1; d], 1).unwrap();
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
        for isa in [Isa::Baseline, Isa::Avx2, Isa::Avx512] {
            r.out.as_slice_mut().fill(0.0);
            let s1 = sweep_with(&r.u, &mut r.out, None, COEF, r.whole, r.dims, isa);
            assert!(o0 == inner(r.out.as_slice()), "sweep ({isa:?}) changed out");
            assert_eq!((s0.min, s0.max, s0.max_change), (s1.min, s1.max, s1.max_change));
            assert!((s0.sum - s1.sum).abs() <= 1e-12 * s0.sumsq.max(1.0));
            assert!((s0.sumsq - s1.sumsq).abs() <= 1e-12 * s0.sumsq.max(1.0));
        }
        // The no-statistics probes exist in a baseline and an AVX2 build.
        for avx2 in [false, true] {
            r.out.as_slice_mut().fill(0.0);
            if avx2 {
                sweep_no_stats_avx2(&r.u, &mut r.out, COEF, r.whole, r.dims);
            } else {
                sweep_no_stats(&r.u, &mut r.out, COEF, r.whole, r.dims);
            }
            assert!(o0 == inner(r.out.as_slice()), "no_stats (avx2 {avx2}) changed out");
        }
    }
}

fn main() {
    check_variants();
    let args: Vec<String> = std::env::args().collect();
    // `cargo bench` passes --bench; `cargo test --benches` does not (criterion then runs
    // each benchmark once as a test): the interleaved tables are skipped there.
    let full = args.iter().any(|a| a == "--bench");
    let filter: Option<&str> = args.iter().skip(1).find(|a| !a.starts_with('-')).map(|s| s.as_str());
    #[cfg(target_arch = "x86_64")]
    if !std::arch::is_x86_feature_detected!("avx2") {
        println!("note: no AVX2 on this CPU: the *_avx2 kernels run their baseline builds");
    }
    let mut crit = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_millis(1000))
        .without_plots()
        .configure_from_args();
    for case in CASES {
        let d = case.cells.len();
        let grid = Grid::new(case.cells, &vec![0.0; d], &vec![1.0; d], &vec![false; d]);
        for nranks in [1usize, 2] {
            let group_name = format!("stencil/{}/{}rank", case.name, nranks);
            if filter.is_some_and(|f| !group_name.contains(f)) {
                continue;
            }
            let layout = BlockLayout::auto(&grid, nranks, 1).unwrap();
            let mut ranks = make_ranks(&layout);
            let cells = grid.total_cells();
            {
                let mut g = crit.benchmark_group(&group_name);
                for k in [Kernel::Triad, Kernel::Sweep] {
                    g.throughput(Throughput::Bytes((k.bytes_per_cell().0 * cells) as u64));
                    g.bench_function(k.name(), |b| b.iter_custom(|iters| trial(&mut ranks, k, iters)));
                }
                g.finish();
            }
            if full {
                let title = format!("{} ({} cells, procs {:?}), {} rank(s)", case.name, cells, &layout.procs[..d], nranks);
                let (kernels, rounds) = if case.big { (BIG, 9) } else { (SMALL, 11) };
                compare(&title, &mut ranks, kernels, cells, rounds);
            }
        }
    }
    crit.final_summary();
}
