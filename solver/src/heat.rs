//! The `heat` model: du/dt = D ∇²u + s(x, t), explicit Euler in time, second-order
//! central differences in space on cell centres.
//!
//! Every cell is updated by the same floating-point expression in the same order
//! whatever the decomposition, so results are bit-identical on any rank count.
use crate::case::{Bc, Case, TimeScheme};
use crate::expr::Expr;
use crate::linsolve::{BcKind, LinearSolver, Multigrid, OperatorSpec, Reason, SolveReport};
use decomp::{BlockLayout, Comm, Field, HaloPlan, Stencil};

/// Statistics of one sweep over this rank's cells, reduced later across ranks.
#[derive(Clone, Copy, Debug)]
pub struct SweepStats {
    /// Sum of new values.
    pub sum: f64,
    /// Sum of squares of new values.
    pub sumsq: f64,
    /// Minimum new value.
    pub min: f64,
    /// Maximum new value.
    pub max: f64,
    /// Max |new - old|.
    pub max_change: f64,
}

impl Default for SweepStats {
    fn default() -> Self {
        SweepStats { sum: 0.0, sumsq: 0.0, min: f64::INFINITY, max: f64::NEG_INFINITY, max_change: 0.0 }
    }
}

impl SweepStats {
    fn merge(&mut self, o: &SweepStats) {
        self.sum += o.sum;
        self.sumsq += o.sumsq;
        self.min = self.min.min(o.min);
        // f64::max drops NaN; keep it, so a blow-up anywhere shows in the max.
        self.max = if self.max.is_nan() || o.max.is_nan() { f64::NAN } else { self.max.max(o.max) };
        self.max_change = self.max_change.max(o.max_change);
    }
}

/// Coefficients of one explicit step: `D·dt/h²` per axis and `dt` for the source.
#[derive(Clone, Copy, Debug)]
pub struct StepCoefficients {
    /// D·dt/h² per axis (z unused in 2D).
    pub c: [f64; 3],
    /// Time step.
    pub dt: f64,
}

/// Local (ghost-excluded) index ranges of a sub-box of the block: [lo, hi) per axis.
#[derive(Clone, Copy, Debug)]
pub struct Region {
    /// First local cell per axis.
    pub lo: [usize; 3],
    /// One past the last local cell per axis.
    pub hi: [usize; 3],
}

/// Instruction set the sweep's row kernels run with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Isa {
    /// The target's baseline (SSE2 on x86-64): 2 lanes per statistic.
    Baseline,
    /// AVX2 with FMA (x86-64 only, detected at run time): 8 lanes per statistic.
    Avx2,
    /// AVX-512 F + VL (x86-64 only, detected at run time): the same 8 lanes, but 32
    /// vector registers, so the five statistics' lanes, the coefficients and the
    /// stencil's rows all stay in registers (the AVX2 build spills some of them to the
    /// stack inside the row loop).
    Avx512,
}

impl Isa {
    /// The best instruction set this CPU supports.
    pub fn detect() -> Isa {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512f")
                && std::arch::is_x86_feature_detected!("avx512vl")
                && std::arch::is_x86_feature_detected!("fma")
            {
                return Isa::Avx512;
            }
            if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
                return Isa::Avx2;
            }
        }
        Isa::Baseline
    }
}

/// Statistics kept in `L` independent lanes so the row loop vectorises; combined
/// once per row.
struct Lanes<const L: usize> {
    sum: [f64; L],
    sumsq: [f64; L],
    min: [f64; L],
    max: [f64; L],
    change: [f64; L],
}

impl<const L: usize> Lanes<L> {
    #[inline(always)]
    fn new() -> Self {
        Lanes { sum: [0.0; L], sumsq: [0.0; L], min: [f64::INFINITY; L], max: [f64::NEG_INFINITY; L], change: [0.0; L] }
    }

    /// `F`: fused multiply-add available (see [`cell`]): the sum of squares is then
    /// accumulated in one rounding.
    #[inline(always)]
    fn add<const F: bool>(&mut self, l: usize, v: f64, old: f64) {
        self.sum[l] += v;
        self.sumsq[l] = if F { v.mul_add(v, self.sumsq[l]) } else { self.sumsq[l] + v * v };
        self.min[l] = if v < self.min[l] { v } else { self.min[l] };
        self.max[l] = if v > self.max[l] { v } else { self.max[l] };
        let d = (v - old).abs();
        self.change[l] = if d > self.change[l] { d } else { self.change[l] };
    }

    #[inline(always)]
    fn total(&self) -> SweepStats {
        let mut s = SweepStats::default();
        for l in 0..L {
            s.sum += self.sum[l];
            s.sumsq += self.sumsq[l];
            s.min = if self.min[l] < s.min { self.min[l] } else { s.min };
            s.max = if self.max[l] > s.max { self.max[l] } else { s.max };
            s.change_max(self.change[l]);
        }
        // NaN never compares greater, so propagate it explicitly.
        if s.sum.is_nan() {
            s.max = f64::NAN;
        }
        s
    }
}

impl SweepStats {
    #[inline(always)]
    fn change_max(&mut self, c: f64) {
        self.max_change = if c > self.max_change { c } else { self.max_change };
    }
}

/// The explicit update of one cell from its value `ci`, its neighbours `[w, e, s, n,
/// b, t]` and the source, with `k = [cx, cy, cz, dt]`: the one per-cell expression,
/// `ci + cx·((w - 2ci) + e) + cy·((s - 2ci) + n) [+ cz·((b - 2ci) + t)] [+ dt·src]`,
/// each operation rounded as written.
///
/// `F` (fused multiply-add available, as in the AVX2 + FMA and AVX-512 builds) forms
/// `w - 2ci` as `fma(ci, -2, w)`: `2ci` is exact, so the one rounding of the fused
/// operation is the rounding of the subtraction, and the result is the same bits. It
/// takes the subtraction (and the doubling) off the add pipes, which bound the row loop
/// on Zen 4 (two 256-bit add pipes, each 512-bit add taking two cycles). The products
/// with the coefficients stay unfused: fusing them would change the rounding.
#[inline(always)]
fn cell<const D3: bool, const SRC: bool, const F: bool>(k: [f64; 4], ci: f64, nb: [f64; 6], src: f64) -> f64 {
    let [w, e, s, nn, b, t] = nb;
    let lap = |lo: f64, hi: f64| if F { ci.mul_add(-2.0, lo) + hi } else { lo - 2.0 * ci + hi };
    let mut v = ci + k[0] * lap(w, e) + k[1] * lap(s, nn);
    if D3 {
        v += k[2] * lap(b, t);
    }
    if SRC {
        v += k[3] * src;
    }
    v
}

/// Software prefetches along one row kernel call: one cache line (8 values) per 8 cells
/// of each stream, [`Prefetch::ahead`] of the row being computed. `read` streams (the
/// leading row or plane of `u`, the source) go to L2, `write` (the output row) gets the
/// for-ownership hint (issued as `prefetcht0`: `prefetchw` needs the `prfchw` target
/// feature, not stable in Rust); null pointers issue nothing. Beyond cache the hardware
/// prefetchers alone left the two-step pass a third slower than its arithmetic plus
/// one stream of memory (2D 2048², one rank: 7.3 ms a pass, 5.0 ms with these).
#[derive(Clone, Copy)]
struct Prefetch {
    read: [*const f64; 2],
    write: *const f64,
}

impl Prefetch {
    /// How far ahead, in values, for storage rows of `p0` values: about 32 KiB, and at
    /// least two rows. Measured on Zen 4 (2D 2048² and 3D 160³): into L1 (`T0`), or four
    /// rows ahead in 2D, were slower; 8–256 KiB ahead in 3D were within the noise.
    #[inline(always)]
    fn ahead(p0: usize) -> usize {
        (4096 / p0).max(2) * p0
    }

    /// Streams `ahead` values past the given rows: each `(storage, offset of the row's
    /// first value)`, the written one with the length of the whole field its storage is
    /// part of (a thread's part of `out`); `None` for none, and none for fields that fit
    /// in a core's L2 (1 MiB on Zen 4), where prefetches only cost (3D 32³ in cache:
    /// 26 % slower).
    #[inline(always)]
    fn at(read: [Option<(&[f64], usize)>; 2], write: Option<(&[f64], usize, usize)>, ahead: usize) -> Prefetch {
        const BEYOND: usize = 1 << 17;
        let ptr = |b: &[f64], o: usize, len: usize| if len > BEYOND { b.as_ptr().wrapping_add(o + ahead) } else { std::ptr::null() };
        let rd = |x: Option<(&[f64], usize)>| x.map_or(std::ptr::null(), |(b, o)| ptr(b, o, b.len()));
        Prefetch { read: [rd(read[0]), rd(read[1])], write: write.map_or(std::ptr::null(), |(b, o, len)| ptr(b, o, len)) }
    }

    #[inline(always)]
    fn issue(&self, i: usize) {
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::x86_64::{_mm_prefetch, _MM_HINT_ET0, _MM_HINT_T1};
            // SAFETY: a prefetch never faults, whatever the address.
            unsafe {
                for r in self.read {
                    if !r.is_null() {
                        _mm_prefetch::<_MM_HINT_T1>(r.wrapping_add(i) as *const i8);
                    }
                }
                if !self.write.is_null() {
                    _mm_prefetch::<_MM_HINT_ET0>(self.write.wrapping_add(i) as *const i8);
                }
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = i;
    }
}

/// One row of the explicit update: `o[i]` from the centre row `c` and its neighbours
/// `[c, w, e, s, n, b, t]` (west/east along x, south/north along y, bottom/top along z;
/// `b`, `t` unread in 2D, `src` unread without a source), statistics into `acc` with
/// the centre as the old value (`ST`; without it `acc` is not touched). `pf` are the
/// software prefetches issued along the row.
#[inline(always)]
fn row_kernel<const L: usize, const D3: bool, const SRC: bool, const F: bool, const ST: bool>(
    r: [&[f64]; 7],
    src: &[f64],
    o: &mut [f64],
    k: StepCoefficients,
    acc: &mut Lanes<L>,
    pf: Prefetch,
) {
    let (cx, cy, cz, dt) = (k.c[0], k.c[1], k.c[2], k.dt);
    let n = o.len();
    let body = n - n % L;
    let [c, w, e, s, nn, b, t] = r;
    let (c, w, e, s, nn, b, t, src) = (&c[..n], &w[..n], &e[..n], &s[..n], &nn[..n], &b[..n], &t[..n], &src[..n]);
    let cell = |ci: f64, w: f64, e: f64, s: f64, nn: f64, b: f64, t: f64, src: f64| {
        cell::<D3, SRC, F>([cx, cy, cz, dt], ci, [w, e, s, nn, b, t], src)
    };
    // Zipped exact chunks: no bounds checks inside, fixed-length inner loop.
    let chunks = o[..body]
        .chunks_exact_mut(L)
        .zip(c.chunks_exact(L))
        .zip(w.chunks_exact(L).zip(e.chunks_exact(L)))
        .zip(s.chunks_exact(L).zip(nn.chunks_exact(L)))
        .zip(b.chunks_exact(L).zip(t.chunks_exact(L)))
        .zip(src.chunks_exact(L));
    for (ci, (((((o8, c8), (w8, e8)), (s8, n8)), (b8, t8)), r8)) in chunks.enumerate() {
        if (ci * L) % 8 == 0 {
            pf.issue(ci * L);
        }
        for l in 0..L {
            let v = cell(c8[l], w8[l], e8[l], s8[l], n8[l], b8[l], t8[l], r8[l]);
            o8[l] = v;
            if ST {
                acc.add::<F>(l, v, c8[l]);
            }
        }
    }
    for i in body..n {
        let v = cell(c[i], w[i], e[i], s[i], nn[i], b[i], t[i], src[i]);
        o[i] = v;
        if ST {
            acc.add::<F>(0, v, c[i]);
        }
    }
}

/// The explicit update of `region`, row by row. `D3` adds the z neighbours; `SRC`
/// adds `dt·src`. The per-cell expression (and its evaluation order) is the same for
/// every lane count, instruction set and decomposition, so fields are bit-identical
/// whatever runs them; only the statistics' summation order depends on `L`. The
/// statistics stay in `L` lanes across the whole region (short 3D rows need that).
#[inline(always)]
fn region_kernel<const L: usize, const D3: bool, const SRC: bool, const F: bool>(
    uu: &[f64],
    ss: &[f64],
    oo: &mut [f64],
    base: usize,
    p: [usize; 3],
    g: [usize; 3],
    region: Region,
    k: StepCoefficients,
) -> SweepStats {
    let (sy, sz) = (p[0], p[0] * p[1]);
    let n = region.hi[0] - region.lo[0];
    let mut acc = Lanes::<L>::new();
    for kk in region.lo[2]..region.hi[2] {
        for j in region.lo[1]..region.hi[1] {
            let row = ((kk + g[2]) * p[1] + j + g[1]) * p[0] + g[0] + region.lo[0];
            let c = &uu[row..row + n];
            // Rows that a variant does not read: the centre row stands in.
            let (b, t) = if D3 { (&uu[row - sz..row - sz + n], &uu[row + sz..row + sz + n]) } else { (c, c) };
            let src = if SRC { &ss[row..row + n] } else { c };
            let rows =
                [c, &uu[row - 1..row - 1 + n], &uu[row + 1..row + 1 + n], &uu[row - sy..row - sy + n], &uu[row + sy..row + sy + n], b, t];
            let lead = if D3 { sz } else { sy };
            let (ro, big) = (row - base, uu.len());
            let pf = Prefetch::at([Some((uu, row + lead)), SRC.then_some((ss, row))], Some((&*oo, ro, big)), Prefetch::ahead(p[0]));
            row_kernel::<L, D3, SRC, F, true>(rows, src, &mut oo[ro..ro + n], k, &mut acc, pf);
        }
    }
    acc.total()
}

/// Non-inlined instances of [`region_kernel`]. `u` (and the source) and `out` are
/// separate arguments, so the compiler knows the rows read never alias the row
/// written, which the vectoriser needs.
macro_rules! region_instances {
    ($($name:ident: $l:literal, $d3:literal, $src:literal, $f:literal $(, $feat:literal)?;)*) => {$(
        $(#[cfg(target_arch = "x86_64")] #[target_feature(enable = $feat)])?
        #[inline(never)]
        fn $name(uu: &[f64], ss: &[f64], oo: &mut [f64], base: usize, p: [usize; 3], g: [usize; 3], region: Region, k: StepCoefficients) -> SweepStats {
            region_kernel::<$l, $d3, $src, $f>(uu, ss, oo, base, p, g, region, k)
        }
    )*};
}

region_instances! {
    sweep2: 2, false, false, false;
    sweep2s: 2, false, true, false;
    sweep3: 2, true, false, false;
    sweep3s: 2, true, true, false;
    sweep2_avx2: 8, false, false, true, "avx2,fma";
    sweep2s_avx2: 8, false, true, true, "avx2,fma";
    sweep3_avx2: 8, true, false, true, "avx2,fma";
    sweep3s_avx2: 8, true, true, true, "avx2,fma";
    sweep2_avx512: 8, false, false, true, "avx512f,avx512vl,fma";
    sweep2s_avx512: 8, false, true, true, "avx512f,avx512vl,fma";
    sweep3_avx512: 8, true, false, true, "avx512f,avx512vl,fma";
    sweep3s_avx512: 8, true, true, true, "avx512f,avx512vl,fma";
}

/// Updates the cells of `region`: `out = u + Σ c_a (u_{-a} - 2u + u_{+a}) + dt·s`.
/// `u`, `out` and `src` share the padded layout of `u` (ghost width 1 on used axes).
/// Returns the sweep statistics of the region. Uses AVX-512 or AVX2 when the CPU has
/// them; every instruction set gives the same `out` bit for bit, and AVX2 and AVX-512
/// the same statistics too (both keep 8 lanes).
pub fn sweep(u: &Field, out: &mut Field, src: Option<&Field>, k: StepCoefficients, region: Region, dims: usize) -> SweepStats {
    sweep_with(u, out, src, k, region, dims, Isa::detect())
}

/// [`sweep`] with an explicit instruction set (benches compare them), lowered to the
/// best one the CPU has when it lacks `isa`.
pub fn sweep_with(
    u: &Field,
    out: &mut Field,
    src: Option<&Field>,
    k: StepCoefficients,
    region: Region,
    dims: usize,
    isa: Isa,
) -> SweepStats {
    sweep_threads(u, out, src, k, region, dims, isa, None)
}

/// A thread's part of a sweep: the slices `[slices[0], slices[1])` of the block along
/// its slowest axis (owned cells, from 0), whose storage starts at `base` in the field.
#[derive(Clone, Copy, Debug)]
struct Part {
    slices: [usize; 2],
    base: usize,
}

/// Fewest cells a thread's part of a sweep gets: below that, waking a thread costs
/// about what the part's work does (a few microseconds).
/// (Unit tests cut their small blocks into parts of any size.)
const MIN_PART_CELLS: usize = if cfg!(test) { 1 } else { 32 * 1024 };

/// Cuts the slices `[lo, hi)` along the slowest axis into at most `threads` parts of
/// balanced thickness (within one slice), each of at least [`MIN_PART_CELLS`] cells
/// when a slice has `per_slice` cells, and splits `oo`, the storage of a field with
/// ghost width `g` and `sl` values per slice, into the parts' disjoint slices.
fn cut_parts<'a>(oo: &'a mut [f64], lo: usize, hi: usize, per_slice: usize, threads: usize, g: usize, sl: usize) -> Vec<(Part, &'a mut [f64])> {
    let count = threads.min(hi - lo).min((per_slice * (hi - lo) / MIN_PART_CELLS).max(1)).max(1);
    let mut parts = Vec::with_capacity(count);
    let mut rest = oo;
    let mut at = 0;
    for i in 0..count {
        let (a, b) = (lo + (hi - lo) * i / count, lo + (hi - lo) * (i + 1) / count);
        let (start, end) = ((a + g) * sl, (b + g) * sl);
        let (_, tail) = std::mem::take(&mut rest).split_at_mut(start - at);
        let (mine, tail) = tail.split_at_mut(end - start);
        parts.push((Part { slices: [a, b], base: start }, mine));
        rest = tail;
        at = end;
    }
    parts
}

/// Runs `f` on every part, on the pool's threads when there is more than one part,
/// and returns the results in the parts' order.
fn run_parts<T: Send, R: Send>(pool: Option<&rayon::ThreadPool>, parts: Vec<T>, f: impl Fn(T) -> R + Sync + Send) -> Vec<R> {
    use rayon::prelude::*;
    match pool {
        Some(pool) if parts.len() > 1 => pool.install(|| parts.into_par_iter().map(&f).collect()),
        _ => parts.into_iter().map(f).collect(),
    }
}

/// The slowest axis of a `dims`-dimensional block and the values per storage slice
/// across it.
fn slow_axis(p: [usize; 3], dims: usize) -> (usize, usize) {
    if dims == 3 {
        (2, p[0] * p[1])
    } else {
        (1, p[0])
    }
}

type RegionFn = unsafe fn(&[f64], &[f64], &mut [f64], usize, [usize; 3], [usize; 3], Region, StepCoefficients) -> SweepStats;

/// The instance of [`region_kernel`] for a dimension, a source or none, and an
/// instruction set the CPU has; calling it is safe for such an `isa`.
fn region_instance(d3: bool, src: bool, isa: Isa) -> RegionFn {
    match (d3, src, isa) {
        #[cfg(target_arch = "x86_64")]
        (false, false, Isa::Avx512) => sweep2_avx512,
        #[cfg(target_arch = "x86_64")]
        (false, true, Isa::Avx512) => sweep2s_avx512,
        #[cfg(target_arch = "x86_64")]
        (true, false, Isa::Avx512) => sweep3_avx512,
        #[cfg(target_arch = "x86_64")]
        (true, true, Isa::Avx512) => sweep3s_avx512,
        #[cfg(target_arch = "x86_64")]
        (false, false, Isa::Avx2) => sweep2_avx2,
        #[cfg(target_arch = "x86_64")]
        (false, true, Isa::Avx2) => sweep2s_avx2,
        #[cfg(target_arch = "x86_64")]
        (true, false, Isa::Avx2) => sweep3_avx2,
        #[cfg(target_arch = "x86_64")]
        (true, true, Isa::Avx2) => sweep3s_avx2,
        (false, false, _) => sweep2,
        (false, true, _) => sweep2s,
        (true, false, _) => sweep3,
        (true, true, _) => sweep3s,
    }
}

/// [`sweep_with`] on the threads of `pool` (none: the calling thread): the region is
/// cut along the slowest axis into one part per thread ([`cut_parts`]). `out` is the
/// same bits whatever the thread count; the statistics are summed part by part.
#[allow(clippy::too_many_arguments)]
pub fn sweep_threads(
    u: &Field,
    out: &mut Field,
    src: Option<&Field>,
    k: StepCoefficients,
    region: Region,
    dims: usize,
    isa: Isa,
    pool: Option<&rayon::ThreadPool>,
) -> SweepStats {
    if (0..3).any(|a| region.hi[a] <= region.lo[a]) {
        return SweepStats::default();
    }
    assert_eq!(out.padded_shape(), u.padded_shape(), "out must share u's layout");
    let isa = isa.min(Isa::detect());
    let f = region_instance(dims == 3, src.is_some(), isa);
    let (p, g) = (u.padded_shape(), u.ghost);
    let (slow, sl) = slow_axis(p, dims);
    let uu = u.as_slice();
    let ss = src.map_or(uu, |s| s.as_slice());
    let per_slice: usize = (0..slow).map(|a| region.hi[a] - region.lo[a]).product();
    let threads = pool.map_or(1, |t| t.current_num_threads());
    let parts = cut_parts(out.as_slice_mut(), region.lo[slow], region.hi[slow], per_slice, threads, g[slow], sl);
    let stats = run_parts(pool, parts, |(part, o)| {
        let mut r = region;
        r.lo[slow] = part.slices[0];
        r.hi[slow] = part.slices[1];
        // SAFETY: `isa` is at most what the CPU supports (detected above).
        unsafe { f(uu, ss, o, part.base, p, g, r, k) }
    });
    let mut st = SweepStats::default();
    for s in &stats {
        st.merge(s);
    }
    st
}

/// A physical face's condition for the intermediate field of [`sweep_pair`]: its ghost
/// is `2v - inner` (Dirichlet) or `inner + v·h` (Neumann), exactly as the boundary fill
/// before a single sweep sets it, with `v` the boundary value at the intermediate time.
#[derive(Clone, Debug)]
pub struct FaceGhost {
    /// Axis normal to the face.
    pub axis: usize,
    /// 0: lower face, 1: upper face.
    pub side: usize,
    /// Dirichlet (else Neumann).
    pub dirichlet: bool,
    /// Cell size along `axis` (for Neumann).
    pub h: f64,
    /// One value per face cell, axis `(axis + 2) % 3` outer, `(axis + 1) % 3` inner.
    pub values: Vec<f64>,
}

/// The ghost value beyond a physical face from the adjacent interior value `inner` and
/// the face's boundary value `v`: `2v - inner` (Dirichlet, the face value the mean of
/// the two) or `inner + v·h` (Neumann, `v` the outward gradient). The one expression of
/// every boundary fill, so that a pair of steps and two single steps agree bit for bit.
#[inline(always)]
fn ghost_value(dirichlet: bool, v: f64, inner: f64, h: f64) -> f64 {
    if dirichlet {
        2.0 * v - inner
    } else {
        inner + v * h
    }
}

impl FaceGhost {
    #[inline(always)]
    fn ghost(&self, at: usize, inner: f64) -> f64 {
        ghost_value(self.dirichlet, self.values[at], inner, self.h)
    }

    /// Index into `values` of the face cell at local coordinates `l`.
    #[inline(always)]
    fn at(&self, l: [usize; 3], n: [usize; 3]) -> usize {
        let (b, c) = ((self.axis + 1) % 3, (self.axis + 2) % 3);
        l[c] * n[b] + l[b]
    }
}

/// The intermediate field of [`sweep_pair`] on `len` cells of one row: `w[o..o+len]`
/// of a ring slice from `u` at storage offset `row`, statistics into `acc`.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn mid_row<const L: usize, const D3: bool, const SRC: bool, const F: bool, const ST: bool>(
    uu: &[f64],
    ss: &[f64],
    w: &mut [f64],
    row: usize,
    o: usize,
    len: usize,
    p0: usize,
    sl: usize,
    k: StepCoefficients,
    acc: &mut Lanes<L>,
) {
    let c = &uu[row..row + len];
    let (b, t) = if D3 { (&uu[row - sl..row - sl + len], &uu[row + sl..row + sl + len]) } else { (c, c) };
    let src = if SRC { &ss[row..row + len] } else { c };
    let r =
        [c, &uu[row - 1..row - 1 + len], &uu[row + 1..row + 1 + len], &uu[row - p0..row - p0 + len], &uu[row + p0..row + p0 + len], b, t];
    let pf = Prefetch::at([Some((uu, row + sl)), SRC.then_some((ss, row))], None, Prefetch::ahead(p0));
    row_kernel::<L, D3, SRC, F, ST>(r, src, &mut w[o..o + len], k, acc, pf);
}

/// Two explicit steps in one pass over memory (temporal blocking): the intermediate
/// field lives only in `ring`, three slices (rows in 2D, planes in 3D) along the
/// slowest axis. Slice `q` of it is computed from `u` with [`row_kernel`], its ghosts on
/// the faster axes set from `faces`, and as soon as slices `q-1..=q+1` exist, slice `q`
/// of `out` is computed from them. Every value is the same expression on the same
/// inputs as two [`region_kernel`] sweeps with the boundary fill (and, on `open` faces,
/// the exchange) between them, so `out` is bit-identical to that.
///
/// On an open face (`open[axis][side]`: ghosts from another rank or a periodic image)
/// the intermediate field is computed one layer into the ghosts too, from `u`'s two
/// exchanged layers, instead of being exchanged: the same expression on the same values
/// as on the rank that owns those cells. Those cells do not enter the statistics, which
/// are over the block's own cells in the order [`region_kernel`] visits them. Only the
/// ghost cells next to a face are computed (not edges), which is all the second step
/// reads. `g` is the ghost width of the storage on every axis in use.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn pair_kernel<const L: usize, const D3: bool, const SRC: bool, const F: bool>(
    uu: &[f64],
    ss: &[f64],
    oo: &mut [f64],
    ring: &mut [f64],
    part: Part,
    p: [usize; 3],
    n: [usize; 3],
    g: usize,
    open: [[bool; 2]; 3],
    k: StepCoefficients,
    faces: &[FaceGhost],
) -> [SweepStats; 2] {
    let slow = if D3 { 2 } else { 1 };
    let sl = if D3 { p[0] * p[1] } else { p[0] };
    let (nx, p0) = (n[0], p[0]);
    // The storage slices of the part: [qb, qe). A side of the part inside the block is
    // treated as an open face: the intermediate field is computed one slice beyond it,
    // from `u`'s cells there, which are the block's own.
    let (qb, qe) = (g + part.slices[0], g + part.slices[1]);
    let mut open = open;
    open[slow][0] |= part.slices[0] > 0;
    open[slow][1] |= part.slices[1] < n[slow];
    let base = part.base;
    let big = uu.len();
    let rows = if D3 { n[1] } else { 1 };
    let ext = |a: usize, side: usize| usize::from(open[a][side]);
    let (ex0, ex1) = (open[0][0], open[0][1]);
    // Storage rows of a slice: the owned ones, and in 3D the y ghost rows of open faces.
    let (ry0, ry1) = if D3 { (g - ext(1, 0), g + rows + ext(1, 1)) } else { (0, 1) };
    // Offset within a slice of x = 0 on storage row `jr`.
    let off = |jr: usize| if D3 { jr * p0 + g } else { g };
    let owned_row = |jr: usize| !D3 || (g..g + rows).contains(&jr);
    let (mut a1, mut a2) = (Lanes::<L>::new(), Lanes::<L>::new());
    // No closures call the row kernels below: a closure does not inherit the target
    // features of the instance it is in, so its row kernels would not vectorise.
    for qs in qb - ext(slow, 0)..=qe {
        let owned_slice = (qb..qe).contains(&qs);
        if qs < qe + ext(slow, 1) {
            // Slice qs of the intermediate field, from u.
            let w0 = (qs % 3) * sl;
            let w = &mut ring[w0..w0 + sl];
            // A ghost slice is read only next to owned cells: its owned rows.
            let (r0, r1) = if owned_slice || !D3 { (ry0, ry1) } else { (g, g + rows) };
            for jr in r0..r1 {
                let o = off(jr);
                let row = qs * sl + o;
                let own = owned_slice && owned_row(jr);
                // Rows outside the block (ghost rows, the x ghost cells beside a row)
                // take no statistics (`ST = false`): no lanes to keep for them, which
                // left room enough in the registers for the lanes that are kept (the
                // 3D pass spilled one inside its row loop while a third set existed).
                if own {
                    mid_row::<L, D3, SRC, F, true>(uu, ss, w, row, o, nx, p0, sl, k, &mut a1);
                } else {
                    mid_row::<L, D3, SRC, F, false>(uu, ss, w, row, o, nx, p0, sl, k, &mut a1);
                }
                if own && ex0 {
                    mid_row::<L, D3, SRC, F, false>(uu, ss, w, row - 1, o - 1, 1, p0, sl, k, &mut a1);
                }
                if own && ex1 {
                    mid_row::<L, D3, SRC, F, false>(uu, ss, w, row + nx, o + nx, 1, p0, sl, k, &mut a1);
                }
            }
            // Its ghosts on the faster axes' physical faces (next to owned cells only).
            if owned_slice {
                let l_s = qs - g;
                for f in faces.iter().filter(|f| f.axis < slow) {
                    if f.axis == 0 {
                        for j in 0..rows {
                            let o = off(j + g);
                            let l = if D3 { [0, j, l_s] } else { [0, l_s, 0] };
                            let (gi, i) = if f.side == 0 { (o - 1, o) } else { (o + nx, o + nx - 1) };
                            w[gi] = f.ghost(f.at(l, n), w[i]);
                        }
                    } else {
                        let (gi, i) = if f.side == 0 { (off(g - 1), off(g)) } else { (off(g + rows), off(g + rows - 1)) };
                        for x in 0..nx {
                            w[gi + x] = f.ghost(f.at([x, 0, l_s], n), w[i + x]);
                        }
                    }
                }
            }
        }
        // Physical ghost slices along the slowest axis, once their neighbour exists
        // (and, at the top, after slice ns-3, whose place in the ring the ghost takes,
        // has been used).
        for (qg, qi, side, now) in [(qb - 1, qb, 0, qs == qb), (qe, qe - 1, 1, qs == qe)] {
            if !now || open[slow][side] {
                continue;
            }
            let f = faces.iter().find(|f| f.axis == slow && f.side == side).expect("a face not open is physical");
            let (gs, is) = ((qg % 3) * sl, (qi % 3) * sl);
            for j in 0..rows {
                let o = off(j + g);
                for x in 0..nx {
                    let l = if D3 { [x, j, qi - g] } else { [x, qi - g, 0] };
                    ring[gs + o + x] = f.ghost(f.at(l, n), ring[is + o + x]);
                }
            }
        }
        // Slice qs-1 of out, from slices qs-2..=qs of the intermediate field.
        if qs > qb {
            let qo = qs - 1;
            let (pv, cu, nt) = (((qo - 1) % 3) * sl, (qo % 3) * sl, ((qo + 1) % 3) * sl);
            for j in 0..rows {
                let o = off(j + g);
                let c = &ring[cu + o..cu + o + nx];
                let (s, nn, b, t) = if D3 {
                    (
                        &ring[cu + o - p0..cu + o - p0 + nx],
                        &ring[cu + o + p0..cu + o + p0 + nx],
                        &ring[pv + o..pv + o + nx],
                        &ring[nt + o..nt + o + nx],
                    )
                } else {
                    (&ring[pv + o..pv + o + nx], &ring[nt + o..nt + o + nx], c, c)
                };
                let row = qo * sl + o;
                let src = if SRC { &ss[row..row + nx] } else { c };
                let r = [c, &ring[cu + o - 1..cu + o - 1 + nx], &ring[cu + o + 1..cu + o + 1 + nx], s, nn, b, t];
                let ro = row - base;
                let pf = Prefetch::at([None; 2], Some((&*oo, ro, big)), Prefetch::ahead(p0));
                row_kernel::<L, D3, SRC, F, true>(r, src, &mut oo[ro..ro + nx], k, &mut a2, pf);
            }
        }
    }
    [a1.total(), a2.total()]
}

macro_rules! pair_instances {
    ($($name:ident: $l:literal, $d3:literal, $src:literal, $f:literal $(, $feat:literal)?;)*) => {$(
        $(#[cfg(target_arch = "x86_64")] #[target_feature(enable = $feat)])?
        #[inline(never)]
        #[allow(clippy::too_many_arguments)]
        fn $name(uu: &[f64], ss: &[f64], oo: &mut [f64], ring: &mut [f64], part: Part, p: [usize; 3], n: [usize; 3], g: usize, open: [[bool; 2]; 3], k: StepCoefficients, faces: &[FaceGhost]) -> [SweepStats; 2] {
            pair_kernel::<$l, $d3, $src, $f>(uu, ss, oo, ring, part, p, n, g, open, k, faces)
        }
    )*};
}

pair_instances! {
    pair2: 2, false, false, false;
    pair2s: 2, false, true, false;
    pair3: 2, true, false, false;
    pair3s: 2, true, true, false;
    pair2_avx2: 8, false, false, true, "avx2,fma";
    pair2s_avx2: 8, false, true, true, "avx2,fma";
    pair3_avx2: 8, true, false, true, "avx2,fma";
    pair3s_avx2: 8, true, true, true, "avx2,fma";
    pair2_avx512: 8, false, false, true, "avx512f,avx512vl,fma";
    pair2s_avx512: 8, false, true, true, "avx512f,avx512vl,fma";
    pair3_avx512: 8, true, false, true, "avx512f,avx512vl,fma";
    pair3s_avx512: 8, true, true, true, "avx512f,avx512vl,fma";
}

/// Two explicit steps with coefficients `k` over the whole block in one pass: `out`
/// gets what [`sweep`], the boundary fill of the intermediate field from `faces` (its
/// values at the intermediate time) and, on `open` faces, a halo exchange, then
/// [`sweep`] again would give, bit for bit. `u`'s ghosts must be filled for the first
/// step: on physical faces the innermost layer, on open faces (`open[axis][side]`) two
/// layers and the edge ghosts next to the face (a width-2 box exchange), with the
/// physical ghosts of the neighbouring blocks beside them (where a physical face meets
/// an open one). `u` is not modified. The source, if any, is the same for both steps,
/// and shares `u`'s layout (ghosts on open faces filled alike). Every face not open has
/// one entry in `faces`; `rings` is scratch, one per thread, resized as needed. With a
/// `pool`, the block is cut along its slowest axis into one part per thread
/// ([`cut_parts`]), each computing the intermediate field one slice past its inner
/// sides as on an open face: `out` is the same bits whatever the thread count, the
/// statistics are summed part by part. Returns the statistics of each step over the
/// block's own cells.
#[allow(clippy::too_many_arguments)]
pub fn sweep_pair(
    u: &Field,
    out: &mut Field,
    src: Option<&Field>,
    k: StepCoefficients,
    dims: usize,
    open: [[bool; 2]; 3],
    faces: &[FaceGhost],
    rings: &mut Vec<Vec<f64>>,
    isa: Isa,
    pool: Option<&rayon::ThreadPool>,
) -> [SweepStats; 2] {
    assert_eq!(out.padded_shape(), u.padded_shape(), "out must share u's layout");
    let g = u.ghost[0];
    assert!(u.ghost[..dims].iter().all(|&w| w == g) && g >= 1, "sweep_pair needs one ghost width on every axis in use");
    assert!(g >= 2 || !open.iter().flatten().any(|&o| o), "sweep_pair needs ghost width 2 on open faces");
    assert!(
        (0..dims).all(|a| (0..2).all(|side| faces.iter().filter(|f| f.axis == a && f.side == side).count() == usize::from(!open[a][side]))),
        "sweep_pair needs one face condition for every face that is not open, and none for open ones"
    );
    let (p, n) = (u.padded_shape(), u.shape());
    if n.contains(&0) {
        return [SweepStats::default(); 2];
    }
    let mut open = open;
    for o in open.iter_mut().skip(dims) {
        *o = [false; 2];
    }
    let (slow, sl) = slow_axis(p, dims);
    let isa = isa.min(Isa::detect());
    let f = pair_instance(dims == 3, src.is_some(), isa);
    let uu = u.as_slice();
    let ss = src.map_or(uu, |s| s.as_slice());
    let per_slice: usize = n[..slow].iter().product();
    let threads = pool.map_or(1, |t| t.current_num_threads());
    let parts = cut_parts(out.as_slice_mut(), 0, n[slow], per_slice, threads, g, sl);
    rings.resize_with(parts.len().max(rings.len()), Vec::new);
    for r in rings.iter_mut() {
        r.resize(3 * sl, 0.0);
    }
    let work: Vec<_> = parts.into_iter().zip(rings.iter_mut()).collect();
    let stats = run_parts(pool, work, |((part, o), ring)| {
        // SAFETY: `isa` is at most what the CPU supports (detected above).
        unsafe { f(uu, ss, o, ring, part, p, n, g, open, k, faces) }
    });
    let mut st = [SweepStats::default(); 2];
    for s in &stats {
        st[0].merge(&s[0]);
        st[1].merge(&s[1]);
    }
    st
}

type PairFn = unsafe fn(&[f64], &[f64], &mut [f64], &mut [f64], Part, [usize; 3], [usize; 3], usize, [[bool; 2]; 3], StepCoefficients, &[FaceGhost]) -> [SweepStats; 2];

/// The instance of [`pair_kernel`] for a dimension, a source or none, and an
/// instruction set the CPU has; calling it is safe for such an `isa`.
fn pair_instance(d3: bool, src: bool, isa: Isa) -> PairFn {
    match (d3, src, isa) {
        #[cfg(target_arch = "x86_64")]
        (false, false, Isa::Avx512) => pair2_avx512,
        #[cfg(target_arch = "x86_64")]
        (false, true, Isa::Avx512) => pair2s_avx512,
        #[cfg(target_arch = "x86_64")]
        (true, false, Isa::Avx512) => pair3_avx512,
        #[cfg(target_arch = "x86_64")]
        (true, true, Isa::Avx512) => pair3s_avx512,
        #[cfg(target_arch = "x86_64")]
        (false, false, Isa::Avx2) => pair2_avx2,
        #[cfg(target_arch = "x86_64")]
        (false, true, Isa::Avx2) => pair2s_avx2,
        #[cfg(target_arch = "x86_64")]
        (true, false, Isa::Avx2) => pair3_avx2,
        #[cfg(target_arch = "x86_64")]
        (true, true, Isa::Avx2) => pair3s_avx2,
        (false, false, _) => pair2,
        (false, true, _) => pair2s,
        (true, false, _) => pair3,
        (true, true, _) => pair3s,
    }
}

/// Splits the block of extent `n` into an inner region (cells whose stencil needs no
/// ghost) and boundary slabs, disjoint and covering every cell once.
pub fn split_regions(n: [usize; 3], dims: usize) -> (Region, Vec<Region>) {
    split_regions_open(n, dims, [[true; 2]; 3])
}

/// [`split_regions`] where only the faces marked in `open[axis][side]` have ghosts
/// worth waiting for: the inner region reaches the other faces.
pub fn split_regions_open(n: [usize; 3], dims: usize, open: [[bool; 2]; 3]) -> (Region, Vec<Region>) {
    let inner = |a: usize| {
        if a < dims {
            let lo = if open[a][0] { 1.min(n[a]) } else { 0 };
            let hi = if open[a][1] { n[a].saturating_sub(1).max(lo) } else { n[a] };
            (lo, hi)
        } else {
            (0, n[a])
        }
    };
    let (ix, iy, iz) = (inner(0), inner(1), inner(2));
    let interior = Region { lo: [ix.0, iy.0, iz.0], hi: [ix.1, iy.1, iz.1] };
    let mut slabs = Vec::new();
    let mut push = |r: Region| {
        if (0..3).all(|a| r.hi[a] > r.lo[a]) {
            slabs.push(r);
        }
    };
    // Whole planes in z, then rows in y within inner z, then columns in x within both.
    if dims == 3 {
        push(Region { lo: [0, 0, 0], hi: [n[0], n[1], iz.0] });
        push(Region { lo: [0, 0, iz.1], hi: [n[0], n[1], n[2]] });
    }
    push(Region { lo: [0, 0, iz.0], hi: [n[0], iy.0, iz.1] });
    push(Region { lo: [0, iy.1, iz.0], hi: [n[0], n[1], iz.1] });
    push(Region { lo: [0, iy.0, iz.0], hi: [ix.0, iy.1, iz.1] });
    push(Region { lo: [ix.1, iy.0, iz.0], hi: [n[0], iy.1, iz.1] });
    (interior, slabs)
}

/// The faces of `rank`'s block whose ghosts come from an exchange (another rank's
/// cells or a periodic image), `[axis][side]`: only those are worth waiting for, so
/// only their layers are swept after the exchange. Faces on the physical boundary have
/// their ghosts filled before the sweep starts, so the inner region reaches them (one
/// rank without periodic axes sweeps its whole block in one pass).
pub fn open_faces(layout: &BlockLayout, rank: usize) -> [[bool; 2]; 3] {
    std::array::from_fn(|a| std::array::from_fn(|side| a < layout.grid.dims && !layout.on_boundary(rank, a, side)))
}

/// One physical boundary face of this rank's block and its condition.
struct Face {
    axis: usize,
    side: usize,
    bc: Bc,
    /// Face-centre values (row-major over the other two axes), refreshed when time-dependent.
    values: Vec<f64>,
    /// Face-centre coordinates matching `values`.
    points: Vec<[f64; 3]>,
    /// Ghosts of this face beside the block, next to an open face of another axis
    /// (where the block's edge meets a neighbour's physical face): the neighbour's own
    /// physical ghosts, which [`sweep_pair`] reads. (ghost, inner) storage indices, the
    /// face-centre coordinates (of the periodic image across a periodic axis), values.
    rim: Vec<(usize, usize)>,
    rim_points: Vec<[f64; 3]>,
    rim_values: Vec<f64>,
}

/// The pool of `threads` threads that sweep a rank's block, none for one thread (the
/// calling thread sweeps).
pub fn sweep_pool(threads: usize) -> decomp::Result<Option<rayon::ThreadPool>> {
    if threads <= 1 {
        return Ok(None);
    }
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .thread_name(|i| format!("tessera-sweep-{i}"))
        .build()
        .map(Some)
        .map_err(|e| decomp::Error::Layout(format!("cannot start {threads} threads for decomposition.threads_per_rank: {e}")))
}

/// State and scratch of the heat model on one rank.
pub struct HeatSolver {
    /// Global layout.
    pub layout: BlockLayout,
    /// Current temperature (ghost width 1; 2 where pairs of steps are taken across
    /// exchanged faces).
    pub u: Field,
    next: Field,
    source: Option<Field>,
    source_expr: Expr,
    halo: HaloPlan,
    /// The width-2 box exchange before a pair of steps, where the block has open faces.
    halo2: Option<HaloPlan>,
    /// Faces whose ghosts come from an exchange, `[axis][side]`.
    open: [[bool; 2]; 3],
    /// Whether [`HeatSolver::step_pair`] may advance this layout (the same on every rank).
    pairable: bool,
    faces: Vec<Face>,
    interior: Region,
    slabs: Vec<Region>,
    /// The faces' conditions at the intermediate time of [`HeatSolver::step_pair`].
    pair_faces: Vec<FaceGhost>,
    /// Scratch of [`sweep_pair`], one per thread.
    ring: Vec<Vec<f64>>,
    /// The threads that sweep the block (`decomposition.threads_per_rank` > 1).
    pool: Option<rayon::ThreadPool>,
    /// Coefficients of the latest pair of steps.
    pair_k: StepCoefficients,
    diffusivity: f64,
    /// Time spent in each phase (seconds): halo wait, compute, boundary conditions.
    pub timings: PhaseTimes,
    /// Linear solver and totals of an implicit scheme.
    pub implicit: Option<Implicit>,
}

/// The linear solve of an implicit time scheme and what it has done so far.
pub struct Implicit {
    scheme: TimeScheme,
    solver: LinearSolver,
    rhs: Field,
    x: Field,
    /// The field at the start of the step (kept allocated across steps).
    prev: Field,
    /// β of `u/dt - β ∇²u`: D (backward Euler) or D/2 (Crank–Nicolson).
    beta: f64,
    error_if_not_converged: bool,
    /// Solves done.
    pub solves: u64,
    /// Iterations over all solves.
    pub iterations: u64,
    /// Most iterations in one solve.
    pub max_iterations: usize,
    /// Solves that stopped without converging.
    pub not_converged: u64,
    /// Seconds in solves.
    pub seconds: f64,
    /// The latest report.
    pub last: Option<SolveReport>,
    /// Set when a solve failed and the case asks to stop on it.
    pub failure: Option<String>,
}

/// Accumulated wall time per phase of the time step.
#[derive(Clone, Copy, Debug, Default)]
pub struct PhaseTimes {
    /// Posting and completing halo exchanges.
    pub halo: f64,
    /// Stencil sweeps.
    pub compute: f64,
    /// Boundary ghost fill and time-dependent source evaluation.
    pub boundary: f64,
}

impl Implicit {
    /// The linear solver's phases (Krylov and multigrid).
    pub fn phase_log(&self) -> crate::perf::PhaseLog {
        self.solver.phase_log()
    }
}

impl HeatSolver {
    /// Sets up the model for `comm.rank()` of `layout` with the initial condition of `case`.
    pub fn new(case: &Case, layout: BlockLayout, comm: &dyn Comm) -> decomp::Result<Self> {
        let rank = comm.rank();
        let dims = layout.grid.dims;
        let block = layout.blocks[rank];
        let grid = &layout.grid;
        // Pairs of explicit steps (temporal blocking) need a source constant in time
        // and, across exchanged faces, two ghost layers: every block at least 2 cells
        // thick along every axis with exchanges. Decided from the layout alone, so alike
        // on every rank.
        let exchanged: Vec<usize> = (0..dims).filter(|&a| layout.procs[a] > 1 || grid.periodic[a]).collect();
        let pairable = !case.time_scheme.implicit()
            && !case.source.depends_on_time()
            && case.steps_per_pass == 2
            && layout.blocks.iter().all(|b| exchanged.iter().all(|&a| b.shape()[a] >= 2));
        let gw = if pairable && !exchanged.is_empty() { 2 } else { 1 };
        let mut u = Field::zeros(block, dims, gw);
        u.fill_with(|i, j, k| case.initial.eval(grid.centre(0, i), grid.centre(1, j), grid.centre(2, k), 0.0));
        let next = u.clone();
        let halo = HaloPlan::with_width(&layout, rank, gw, 1, Stencil::Star, 0)?;
        let halo2 = if gw == 2 { Some(HaloPlan::new(&layout, rank, 2, Stencil::Box, 32)?) } else { None };
        let open = open_faces(&layout, rank);
        let mut faces = Vec::new();
        let lo = block.lo;
        let n = block.shape();
        let p = u.padded_shape();
        let stride = [1, p[0], p[0] * p[1]];
        for a in 0..dims {
            for side in 0..2 {
                if !layout.on_boundary(rank, a, side) {
                    continue;
                }
                let coord = if side == 0 { grid.lower[a] } else { grid.upper[a] };
                let (b, c) = ((a + 1) % 3, (a + 2) % 3);
                let mut points = Vec::with_capacity(n[b] * n[c]);
                // Ordered with axis c outer, axis b inner.
                for jc in 0..n[c] {
                    for jb in 0..n[b] {
                        let mut p = [0.0; 3];
                        p[a] = coord;
                        p[b] = grid.centre(b, lo[b] + jb);
                        p[c] = grid.centre(c, lo[c] + jc);
                        points.push(p);
                    }
                }
                // The rim: transverse positions one cell into open faces of axes b and c.
                let (mut rim, mut rim_points) = (Vec::new(), Vec::new());
                if gw == 2 {
                    let range = |x: usize| -> (isize, isize) {
                        let e = |side: usize| isize::from(x < dims && open[x][side]);
                        (-e(0), n[x] as isize + e(1))
                    };
                    let (rb, rc) = (range(b), range(c));
                    let gi = if side == 0 { gw - 1 } else { gw + n[a] };
                    let ii = if side == 0 { gw } else { gw + n[a] - 1 };
                    let at = |x: usize, j: isize| if x < dims { (j + gw as isize) as usize * stride[x] } else { 0 };
                    // The global cell, across a periodic axis its image.
                    let centre = |x: usize, j: isize| {
                        let cells = grid.cells[x] as isize;
                        grid.centre(x, (lo[x] as isize + j).rem_euclid(cells) as usize)
                    };
                    for jc in rc.0..rc.1 {
                        for jb in rb.0..rb.1 {
                            let owned = (0..n[b] as isize).contains(&jb) && (0..n[c] as isize).contains(&jc);
                            if owned {
                                continue;
                            }
                            let base = at(b, jb) + at(c, jc);
                            rim.push((base + gi * stride[a], base + ii * stride[a]));
                            let mut pt = [0.0; 3];
                            pt[a] = coord;
                            pt[b] = centre(b, jb);
                            pt[c] = centre(c, jc);
                            rim_points.push(pt);
                        }
                    }
                }
                let rim_values = vec![0.0; rim.len()];
                faces.push(Face {
                    axis: a,
                    side,
                    bc: case.boundary[a][side].clone(),
                    values: vec![0.0; points.len()],
                    points,
                    rim,
                    rim_points,
                    rim_values,
                });
            }
        }
        let (interior, slabs) = split_regions_open(n, dims, open);
        let mut s = HeatSolver {
            layout,
            u,
            next,
            source: None,
            source_expr: case.source.clone(),
            halo,
            halo2,
            open,
            pairable,
            faces,
            interior,
            slabs,
            pair_faces: Vec::new(),
            ring: Vec::new(),
            pool: sweep_pool(case.threads_per_rank)?,
            pair_k: StepCoefficients { c: [0.0; 3], dt: 0.0 },
            diffusivity: case.diffusivity,
            timings: PhaseTimes::default(),
            implicit: None,
        };
        if case.time_scheme.implicit() {
            let dt = case.dt.expect("validated: implicit schemes have a dt");
            let beta = if case.time_scheme == TimeScheme::CrankNicolson { 0.5 * case.diffusivity } else { case.diffusivity };
            let mut bc = [[BcKind::Neumann; 2]; 3];
            for a in 0..dims {
                for side in 0..2 {
                    bc[a][side] = match case.boundary[a][side] {
                        Bc::Dirichlet(_) => BcKind::Dirichlet,
                        Bc::Neumann(_) => BcKind::Neumann,
                        Bc::Periodic => BcKind::Periodic,
                    };
                }
            }
            let spec = OperatorSpec { alpha: 1.0 / dt, beta, coefficient: None, bc };
            let mg = Multigrid::new(comm, &s.layout, &spec, case.solver.mg)?;
            let solver = LinearSolver::new(mg, case.solver);
            let (rhs, x) = (solver.new_field(), solver.new_field());
            s.implicit = Some(Implicit {
                scheme: case.time_scheme,
                solver,
                rhs,
                x,
                prev: s.u.clone(),
                beta,
                error_if_not_converged: case.solver.error_if_not_converged,
                solves: 0,
                iterations: 0,
                max_iterations: 0,
                not_converged: 0,
                seconds: 0.0,
                last: None,
                failure: None,
            });
        }
        if s.source_expr.as_constant() != Some(0.0) {
            s.source = Some(Field::zeros(block, dims, gw));
            s.eval_source(0.0);
            // Constant in time wherever pairs are taken: its ghosts once, for the
            // intermediate step computed in the open faces' first ghost layer.
            if let (Some(h2), Some(src)) = (&mut s.halo2, &mut s.source) {
                h2.exchange(comm, src);
            }
        }
        for f in &mut s.faces {
            Self::eval_face(f, 0.0);
        }
        let h = s.layout.grid.spacing();
        s.pair_faces = s
            .faces
            .iter()
            .map(|f| FaceGhost {
                axis: f.axis,
                side: f.side,
                dirichlet: matches!(f.bc, Bc::Dirichlet(_)),
                h: h[f.axis],
                values: f.values.clone(),
            })
            .collect();
        Ok(s)
    }

    /// Can [`HeatSolver::step_pair`] advance this layout? An explicit scheme, a source
    /// constant in time, `numerics.steps_per_pass = 2`, and, where faces are exchanged,
    /// every block at least two cells thick across them. The same on every rank.
    pub fn can_pair(&self) -> bool {
        self.pairable
    }

    /// Advances from `t` by two explicit steps of `dt` in one pass over memory
    /// ([`sweep_pair`]), bit for bit what two [`HeatSolver::step`]s give. The field at
    /// `t` is kept until the next step: [`HeatSolver::undo_pair`] returns to it, and
    /// [`HeatSolver::intermediate_value`] gives a cell of the step between. Returns
    /// the statistics of both steps. Only where [`HeatSolver::can_pair`].
    pub fn step_pair(&mut self, comm: &dyn Comm, t: f64, dt: f64) -> [SweepStats; 2] {
        debug_assert!(self.can_pair());
        let dims = self.layout.grid.dims;
        let h = self.layout.grid.spacing();
        let mut c = [0.0; 3];
        for a in 0..dims {
            c[a] = self.diffusivity * dt / (h[a] * h[a]);
        }
        let k = StepCoefficients { c, dt };
        let th = std::time::Instant::now();
        if let Some(h2) = &mut self.halo2 {
            h2.exchange(comm, &mut self.u);
        }
        let t0 = std::time::Instant::now();
        self.fill_boundary_ghosts(t);
        self.fill_rim();
        for (f, pf) in self.faces.iter_mut().zip(&mut self.pair_faces) {
            let time_dependent = match &f.bc {
                Bc::Dirichlet(e) | Bc::Neumann(e) => e.depends_on_time(),
                Bc::Periodic => false,
            };
            if time_dependent {
                Self::eval_face(f, t + dt);
                pf.values.copy_from_slice(&f.values);
            }
        }
        let t1 = std::time::Instant::now();
        let st =
            sweep_pair(&self.u, &mut self.next, self.source.as_ref(), k, dims, self.open, &self.pair_faces, &mut self.ring, Isa::detect(), self.pool.as_ref());
        std::mem::swap(&mut self.u, &mut self.next);
        self.pair_k = k;
        self.timings.halo += (t0 - th).as_secs_f64();
        self.timings.boundary += (t1 - t0).as_secs_f64();
        self.timings.compute += t1.elapsed().as_secs_f64();
        st
    }

    /// Returns to the field before the latest [`HeatSolver::step_pair`].
    pub fn undo_pair(&mut self) {
        std::mem::swap(&mut self.u, &mut self.next);
    }

    /// The value at local cell `c` of the step between the two of the latest
    /// [`HeatSolver::step_pair`], recomputed from the field before it: the same
    /// expression on the same values, so the same bits.
    pub fn intermediate_value(&self, c: [usize; 3]) -> f64 {
        let (u, k) = (&self.next, self.pair_k);
        let p = u.padded_shape();
        let (sy, sz) = (p[0], p[0] * p[1]);
        let at = u.idx(c[0], c[1], c[2]);
        let d = u.as_slice();
        let ci = d[at];
        let kk = [k.c[0], k.c[1], k.c[2], k.dt];
        let src = self.source.as_ref().map_or(0.0, |s| s.as_slice()[at]);
        let nb2 = [d[at - 1], d[at + 1], d[at - sy], d[at + sy], ci, ci];
        match (self.layout.grid.dims == 3, self.source.is_some()) {
            (false, false) => cell::<false, false, false>(kk, ci, nb2, src),
            (false, true) => cell::<false, true, false>(kk, ci, nb2, src),
            (true, has_src) => {
                let nb3 = [d[at - 1], d[at + 1], d[at - sy], d[at + sy], d[at - sz], d[at + sz]];
                if has_src {
                    cell::<true, true, false>(kk, ci, nb3, src)
                } else {
                    cell::<true, false, false>(kk, ci, nb3, src)
                }
            }
        }
    }

    fn eval_source(&mut self, t: f64) {
        let grid = &self.layout.grid;
        let e = &self.source_expr;
        if let Some(src) = &mut self.source {
            src.fill_with(|i, j, k| e.eval(grid.centre(0, i), grid.centre(1, j), grid.centre(2, k), t));
        }
    }

    fn eval_face(f: &mut Face, t: f64) {
        let e = match &f.bc {
            Bc::Dirichlet(e) | Bc::Neumann(e) => e,
            Bc::Periodic => return,
        };
        for (v, p) in f.values.iter_mut().zip(&f.points).chain(f.rim_values.iter_mut().zip(&f.rim_points)) {
            *v = e.eval(p[0], p[1], p[2], t);
        }
    }

    /// Fills the rim ghosts (see [`Face`]) with the boundary values last evaluated (by
    /// [`HeatSolver::fill_boundary_ghosts`] at the step's time), after the exchange that
    /// fills the open ghosts they are computed from: what the neighbouring rank's boundary
    /// fill puts there, the same expression on the same values.
    fn fill_rim(&mut self) {
        let h = self.layout.grid.spacing();
        let data = self.u.as_slice_mut();
        for f in &self.faces {
            for (&(gi, ii), &v) in f.rim.iter().zip(&f.rim_values) {
                data[gi] = ghost_value(matches!(f.bc, Bc::Dirichlet(_)), v, data[ii], h[f.axis]);
            }
        }
    }

    /// Fills ghost cells on physical faces from the boundary conditions at time `t`.
    fn fill_boundary_ghosts(&mut self, t: f64) {
        let h = self.layout.grid.spacing();
        let n = self.u.shape();
        let p = self.u.padded_shape();
        let g = self.u.ghost;
        let stride = [1, p[0], p[0] * p[1]];
        for f in &mut self.faces {
            let time_dependent = match &f.bc {
                Bc::Dirichlet(e) | Bc::Neumann(e) => e.depends_on_time(),
                Bc::Periodic => false,
            };
            if time_dependent {
                Self::eval_face(f, t);
            }
            let a = f.axis;
            let (b, c) = ((a + 1) % 3, (a + 2) % 3);
            // Storage index along `a` of the ghost and of the adjacent interior cell.
            let (ghost, inner) = if f.side == 0 { (g[a] - 1, g[a]) } else { (g[a] + n[a], g[a] + n[a] - 1) };
            let data = self.u.as_slice_mut();
            let mut idx = 0;
            for jc in 0..n[c] {
                for jb in 0..n[b] {
                    let base = (jb + g[b]) * stride[b] + (jc + g[c]) * stride[c];
                    let gi = base + ghost * stride[a];
                    let ii = base + inner * stride[a];
                    let v = f.values[idx];
                    data[gi] = match f.bc {
                        Bc::Dirichlet(_) => ghost_value(true, v, data[ii], h[a]),
                        Bc::Neumann(_) => ghost_value(false, v, data[ii], h[a]),
                        Bc::Periodic => data[gi],
                    };
                    idx += 1;
                }
            }
        }
    }

    /// Advances from time `t` by `dt`: one explicit sweep, or one linear solve.
    pub fn step(&mut self, comm: &dyn Comm, t: f64, dt: f64) -> SweepStats {
        if self.implicit.is_some() {
            return self.step_implicit(comm, t, dt);
        }
        self.step_explicit(comm, t, dt, 1.0)
    }

    /// `u/dt - β∇²u = rhs` for the new `u`: backward Euler (`rhs = uⁿ/dt + sⁿ⁺¹`) or
    /// Crank–Nicolson (`rhs = uⁿ/dt + (D∇²uⁿ + sⁿ + sⁿ⁺¹)/2`), boundary values at
    /// `t + dt` folded into the right-hand side.
    fn step_implicit(&mut self, comm: &dyn Comm, t: f64, dt: f64) -> SweepStats {
        let scheme = {
            let imp = self.implicit.as_mut().expect("implicit");
            imp.prev.data.assign(&self.u.data);
            imp.scheme
        };
        // The explicit part: a half step (CN) into `u`, or nothing (BE).
        if scheme == TimeScheme::CrankNicolson {
            self.step_explicit(comm, t, dt, 0.5);
        }
        let t1 = t + dt;
        if self.source_expr.depends_on_time() {
            self.eval_source(t1);
        }
        let w_src = if scheme == TimeScheme::CrankNicolson { 0.5 } else { 1.0 };
        let h = self.layout.grid.spacing();
        let imp = self.implicit.as_mut().expect("implicit");
        if imp.solver.mg.alpha() != 1.0 / dt {
            imp.solver.mg.set_alpha(1.0 / dt);
        }
        {
            let mut rhs = imp.rhs.interior_mut();
            let u = self.u.interior();
            for ((kji, r), v) in rhs.indexed_iter_mut().zip(u.iter()) {
                let s = self.source.as_ref().map_or(0.0, |s| s.data[[kji.0 + s.ghost[2], kji.1 + s.ghost[1], kji.2 + s.ghost[0]]]);
                *r = v / dt + w_src * s;
            }
        }
        // Boundary values at t + dt: the ghost each condition implies (Dirichlet
        // 2g - u_b, Neumann u_b + h q) contributes β/h² times its known part.
        let n = self.u.shape();
        for f in &mut self.faces {
            let time_dependent = match &f.bc {
                Bc::Dirichlet(e) | Bc::Neumann(e) => e.depends_on_time(),
                Bc::Periodic => false,
            };
            if time_dependent {
                Self::eval_face(f, t1);
            }
            let a = f.axis;
            let inner = if f.side == 0 { 0 } else { n[a] - 1 };
            let mut values = f.values.iter();
            decomp::grid::for_each_in_layer(n, a, inner, |l| {
                let v = *values.next().expect("one value per face cell");
                let add = match f.bc {
                    Bc::Dirichlet(_) => imp.beta * 2.0 * v / (h[a] * h[a]),
                    Bc::Neumann(_) => imp.beta * v / h[a],
                    Bc::Periodic => 0.0,
                };
                let at = imp.rhs.idx(l[0], l[1], l[2]);
                imp.rhs.as_slice_mut()[at] += add;
            });
        }
        imp.x.interior_mut().assign(&imp.prev.interior());
        let report = imp.solver.solve(comm, &imp.rhs, &mut imp.x);
        self.u.interior_mut().assign(&imp.x.interior());
        imp.solves += 1;
        imp.iterations += report.iterations as u64;
        imp.max_iterations = imp.max_iterations.max(report.iterations);
        imp.seconds += report.seconds;
        if !report.reason.converged() {
            imp.not_converged += 1;
            if imp.error_if_not_converged && report.reason != Reason::DivergedNan && imp.failure.is_none() {
                imp.failure = Some(format!(
                    "the linear solve of the step from t={t:.6e} did not converge ({} after {} iterations, |r|/|b| = {:.3e}) and numerics.solver.error_if_not_converged is set",
                    report.reason,
                    report.iterations,
                    report.relative_residual()
                ));
            }
        }
        imp.last = Some(report);
        // Statistics of the new field, as the explicit sweep reports them.
        let mut lanes = Lanes::<1>::new();
        for (v, o) in self.u.interior().iter().zip(imp.prev.interior().iter()) {
            lanes.add::<false>(0, *v, *o);
        }
        lanes.total()
    }

    /// The message of a linear solve that failed with `error_if_not_converged` set.
    pub fn solve_failure(&self) -> Option<&str> {
        self.implicit.as_ref().and_then(|i| i.failure.as_deref())
    }

    /// One explicit sweep from `t` over `frac·dt` (the source weighted alike),
    /// overlapping the halo exchange with the inner sweep.
    fn step_explicit(&mut self, comm: &dyn Comm, t: f64, dt: f64, frac: f64) -> SweepStats {
        let dt = dt * frac;
        let dims = self.layout.grid.dims;
        let h = self.layout.grid.spacing();
        let mut c = [0.0; 3];
        for a in 0..dims {
            c[a] = self.diffusivity * dt / (h[a] * h[a]);
        }
        let k = StepCoefficients { c, dt };
        let t0 = std::time::Instant::now();
        self.halo.begin(comm, &self.u);
        let t1 = std::time::Instant::now();
        if self.source_expr.depends_on_time() {
            self.eval_source(t);
        }
        self.fill_boundary_ghosts(t);
        let t2 = std::time::Instant::now();
        let (isa, pool) = (Isa::detect(), self.pool.as_ref());
        let mut st = sweep_threads(&self.u, &mut self.next, self.source.as_ref(), k, self.interior, dims, isa, pool);
        let t3 = std::time::Instant::now();
        self.halo.finish(comm, &mut self.u);
        let t4 = std::time::Instant::now();
        for r in &self.slabs {
            st.merge(&sweep_threads(&self.u, &mut self.next, self.source.as_ref(), k, *r, dims, isa, pool));
        }
        let t5 = std::time::Instant::now();
        std::mem::swap(&mut self.u, &mut self.next);
        self.timings.halo += (t1 - t0).as_secs_f64() + (t4 - t3).as_secs_f64();
        self.timings.boundary += (t2 - t1).as_secs_f64();
        self.timings.compute += (t3 - t2).as_secs_f64() + (t5 - t4).as_secs_f64();
        st
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use decomp::IndexBox;

    /// The textbook loop, cell by cell, for comparison.
    fn reference(u: &Field, src: Option<&Field>, k: StepCoefficients, dims: usize) -> Vec<f64> {
        let mut out = u.as_slice().to_vec();
        let p = u.padded_shape();
        let (sy, sz) = (p[0], p[0] * p[1]);
        let n = u.shape();
        for kk in 0..n[2] {
            for j in 0..n[1] {
                for i in 0..n[0] {
                    let c = u.idx(i, j, kk);
                    let uu = u.as_slice();
                    let ci = uu[c];
                    let mut v = ci + k.c[0] * (uu[c - 1] - 2.0 * ci + uu[c + 1]) + k.c[1] * (uu[c - sy] - 2.0 * ci + uu[c + sy]);
                    if dims == 3 {
                        v += k.c[2] * (uu[c - sz] - 2.0 * ci + uu[c + sz]);
                    }
                    if let Some(s) = src {
                        v += k.dt * s.as_slice()[c];
                    }
                    out[c] = v;
                }
            }
        }
        out
    }

    #[test]
    fn sweep_matches_the_scalar_reference_bit_for_bit_on_every_isa() {
        for dims in [2, 3] {
            for nx in [1, 7, 8, 9, 33] {
                let hi = if dims == 3 { [nx, 5, 4] } else { [nx, 6, 1] };
                let b = IndexBox { lo: [0; 3], hi };
                let mut u = Field::zeros(b, dims, 1);
                for (i, v) in u.as_slice_mut().iter_mut().enumerate() {
                    *v = ((i * 7919) % 101) as f64 / 37.0 - 1.0;
                }
                let mut src = Field::zeros(b, dims, 1);
                src.fill_with(|i, j, k| (i + 2 * j + 3 * k) as f64 * 0.25);
                let k = StepCoefficients { c: [0.11, 0.07, 0.05], dt: 0.013 };
                for s in [None, Some(&src)] {
                    let want = reference(&u, s, k, dims);
                    let whole = Region { lo: [0; 3], hi };
                    for isa in [Isa::Baseline, Isa::Avx2, Isa::Avx512] {
                        let mut out = u.clone();
                        let st = sweep_with(&u, &mut out, s, k, whole, dims, isa);
                        let n = u.shape();
                        let mut cells = Vec::new();
                        for kk in 0..n[2] {
                            for j in 0..n[1] {
                                for i in 0..n[0] {
                                    let c = u.idx(i, j, kk);
                                    assert_eq!(out.as_slice()[c].to_bits(), want[c].to_bits(), "{dims}D nx={nx} {isa:?} cell {i},{j},{kk}");
                                    cells.push((want[c], u.as_slice()[c]));
                                }
                            }
                        }
                        let sum: f64 = cells.iter().map(|c| c.0).sum();
                        let max = cells.iter().map(|c| c.0).fold(f64::MIN, f64::max);
                        let min = cells.iter().map(|c| c.0).fold(f64::MAX, f64::min);
                        let ch = cells.iter().map(|c| (c.0 - c.1).abs()).fold(0.0, f64::max);
                        assert!((st.sum - sum).abs() <= 1e-12 * sum.abs().max(1.0));
                        assert_eq!((st.min, st.max, st.max_change), (min, max, ch));
                    }
                }
            }
        }
    }

    /// Sets the ghosts of `f` on every face from `faces`, as the boundary fill does.
    fn fill_faces(f: &mut Field, faces: &[FaceGhost]) {
        let n = f.shape();
        let p = f.padded_shape();
        let stride = [1, p[0], p[0] * p[1]];
        for fc in faces {
            let a = fc.axis;
            for z in 0..n[2] {
                for y in 0..n[1] {
                    for x in 0..n[0] {
                        let l = [x, y, z];
                        if l[a] != if fc.side == 0 { 0 } else { n[a] - 1 } {
                            continue;
                        }
                        let inner = f.idx(x, y, z);
                        let ghost = if fc.side == 0 { inner - stride[a] } else { inner + stride[a] };
                        let v = fc.ghost(fc.at(l, n), f.as_slice()[inner]);
                        f.as_slice_mut()[ghost] = v;
                    }
                }
            }
        }
    }

    /// No pool (the calling thread), and pools of 2 and 3 threads.
    fn test_pools() -> Vec<Option<rayon::ThreadPool>> {
        vec![None, sweep_pool(2).unwrap(), sweep_pool(3).unwrap()]
    }

    #[test]
    fn sweep_threads_equals_sweep_bit_for_bit_on_every_region() {
        let pools = test_pools();
        for dims in [2, 3] {
            for shape in [[1, 1, 1], [9, 2, 1], [5, 7, 2], [17, 6, 5], [8, 8, 3]] {
                let hi = if dims == 3 { shape } else { [shape[0], shape[1], 1] };
                let b = IndexBox { lo: [0; 3], hi };
                let mut u = Field::zeros(b, dims, 1);
                for (i, v) in u.as_slice_mut().iter_mut().enumerate() {
                    *v = ((i * 7919) % 101) as f64 / 37.0 - 1.0;
                }
                let mut src = Field::zeros(b, dims, 1);
                src.fill_with(|i, j, k| (i + 2 * j + 3 * k) as f64 * 0.25);
                let k = StepCoefficients { c: [0.11, 0.07, 0.05], dt: 0.013 };
                let (inner, slabs) = split_regions(hi, dims);
                for s in [None, Some(&src)] {
                    for region in std::iter::once(inner).chain(slabs.iter().copied()) {
                        let mut want = u.clone();
                        let e = sweep_with(&u, &mut want, s, k, region, dims, Isa::detect());
                        for pool in &pools[1..] {
                            let mut out = u.clone();
                            let g = sweep_threads(&u, &mut out, s, k, region, dims, Isa::detect(), pool.as_ref());
                            let tag = format!("{dims}D {hi:?} region {region:?} src {}", s.is_some());
                            assert!(out.as_slice().iter().zip(want.as_slice()).all(|(a, b)| a.to_bits() == b.to_bits()), "{tag}: fields differ");
                            assert_eq!((g.min, g.max, g.max_change), (e.min, e.max, e.max_change), "{tag}");
                            assert!((g.sum - e.sum).abs() <= 1e-12 * e.sumsq.max(1.0), "{tag}");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn sweep_pair_equals_two_sweeps_with_the_boundary_fill_between_bit_for_bit() {
        let pools = test_pools();
        for dims in [2, 3] {
            for shape in [[1, 1, 1], [9, 1, 1], [1, 7, 2], [17, 6, 5], [33, 9, 3], [8, 8, 1]] {
                let hi = if dims == 3 { shape } else { [shape[0], shape[1], 1] };
                let b = IndexBox { lo: [0; 3], hi };
                let mut u = Field::zeros(b, dims, 1);
                for (i, v) in u.as_slice_mut().iter_mut().enumerate() {
                    *v = ((i * 7919) % 101) as f64 / 37.0 - 1.0;
                }
                let mut src = Field::zeros(b, dims, 1);
                src.fill_with(|i, j, k| (i + 2 * j + 3 * k) as f64 * 0.25);
                let mut faces = Vec::new();
                for a in 0..dims {
                    for side in 0..2 {
                        let (bb, cc) = ((a + 1) % 3, (a + 2) % 3);
                        let count = hi[bb] * hi[cc];
                        let values = (0..count).map(|i| ((i * 31 + a * 7 + side) % 13) as f64 * 0.1 - 0.5).collect();
                        faces.push(FaceGhost { axis: a, side, dirichlet: (a + side) % 2 == 0, h: 0.125 * (a + 1) as f64, values });
                    }
                }
                let k = StepCoefficients { c: [0.11, 0.07, 0.05], dt: 0.013 };
                let whole = Region { lo: [0; 3], hi };
                for s in [None, Some(&src)] {
                    let mut w = u.clone();
                    let st1 = sweep_with(&u, &mut w, s, k, whole, dims, Isa::Baseline);
                    fill_faces(&mut w, &faces);
                    let mut want = w.clone();
                    let st2 = sweep_with(&w, &mut want, s, k, whole, dims, Isa::Baseline);
                    for (isa, pool) in [Isa::Baseline, Isa::Avx2, Isa::Avx512].into_iter().flat_map(|i| pools.iter().map(move |p| (i, p))) {
                        let mut out = u.clone();
                        let mut ring = Vec::new();
                        let before = u.as_slice().to_vec();
                        let [p1, p2] = sweep_pair(&u, &mut out, s, k, dims, [[false; 2]; 3], &faces, &mut ring, isa, pool.as_ref());
                        assert!(u.as_slice() == before.as_slice(), "u changed");
                        let threads = pool.as_ref().map_or(1, |p| p.current_num_threads());
                        let tag = format!("{dims}D {hi:?} src {} {isa:?} {threads} thread(s)", s.is_some());
                        assert!(
                            out.interior().iter().zip(want.interior().iter()).all(|(a, b)| a.to_bits() == b.to_bits()),
                            "{tag}: fields differ"
                        );
                        for (got, exp) in [(p1, st1), (p2, st2)] {
                            assert_eq!((got.min, got.max, got.max_change), (exp.min, exp.max, exp.max_change), "{tag}");
                            assert!((got.sum - exp.sum).abs() <= 1e-12 * exp.sumsq.max(1.0), "{tag}");
                            assert!((got.sumsq - exp.sumsq).abs() <= 1e-12 * exp.sumsq.max(1.0), "{tag}");
                        }
                    }
                }
            }
        }
    }

    /// A block of a larger domain, as a rank holds it before [`sweep_pair`]: ghost width
    /// 2, values copied from the global field `gf` (ghost width 1, physical ghosts
    /// filled) wherever the exchange and the boundary fill define them, NaN elsewhere, so
    /// a read of anything else shows in the result.
    fn block_of(gf: &Field, lo: [usize; 3], hi: [usize; 3], dims: usize, open: [[bool; 2]; 3], physical_too: bool) -> Field {
        let b = IndexBox { lo: [0; 3], hi: std::array::from_fn(|a| hi[a] - lo[a]) };
        let mut f = Field::zeros(b, dims, 2);
        let (n, p, gp) = (f.shape(), f.padded_shape(), gf.padded_shape());
        for (s, v) in f.as_slice_mut().iter_mut().enumerate() {
            let st = [s % p[0], s / p[0] % p[1], s / (p[0] * p[1])];
            // Per axis: 0 owned, 1 open ghost (layer 1), 2 open ghost (layer 2),
            // 3 physical ghost (layer 1), 4 undefined.
            let class: Vec<usize> = (0..3)
                .map(|a| {
                    if a >= dims {
                        return 0;
                    }
                    let l = st[a] as isize - 2;
                    let side = usize::from(l >= n[a] as isize);
                    let layer = if l < 0 { -l } else { l - n[a] as isize + 1 };
                    match (layer, open[a][side]) {
                        (x, _) if x <= 0 => 0,
                        (x, true) => x as usize,
                        (1, false) => 3,
                        _ => 4,
                    }
                })
                .collect();
            let exchanged = class.iter().all(|&c| c <= 2);
            let rim = class.iter().filter(|&&c| c == 3).count() == 1 && class.iter().all(|&c| c <= 1 || c == 3);
            *v = if exchanged || (physical_too && rim) {
                let gs: Vec<usize> = (0..3).map(|a| if a < dims { lo[a] + st[a] + 1 - 2 } else { 0 }).collect();
                gf.as_slice()[(gs[2] * gp[1] + gs[1]) * gp[0] + gs[0]]
            } else {
                f64::NAN
            };
        }
        f
    }

    #[test]
    fn sweep_pair_on_blocks_with_open_faces_equals_two_sweeps_of_the_whole_domain_bit_for_bit() {
        let pools = test_pools();
        for dims in [2, 3] {
            let (nn, cuts): ([usize; 3], [Vec<usize>; 3]) = if dims == 2 {
                ([19, 13, 1], [vec![0, 7, 12, 19], vec![0, 4, 9, 13], vec![0, 1]])
            } else {
                ([12, 10, 9], [vec![0, 4, 8, 12], vec![0, 3, 7, 10], vec![0, 3, 5, 9]])
            };
            let gb = IndexBox { lo: [0; 3], hi: nn };
            let mut u = Field::zeros(gb, dims, 1);
            for (i, v) in u.as_slice_mut().iter_mut().enumerate() {
                *v = ((i * 7919) % 101) as f64 / 37.0 - 1.0;
            }
            let mut src = Field::zeros(gb, dims, 1);
            src.fill_with(|i, j, k| (i + 2 * j + 3 * k) as f64 * 0.25);
            let mut faces = Vec::new();
            for a in 0..dims {
                for side in 0..2 {
                    let (bb, cc) = ((a + 1) % 3, (a + 2) % 3);
                    let values = (0..nn[bb] * nn[cc]).map(|i| ((i * 31 + a * 7 + side) % 13) as f64 * 0.1 - 0.5).collect();
                    faces.push(FaceGhost { axis: a, side, dirichlet: (a + side) % 2 == 0, h: 0.125 * (a + 1) as f64, values });
                }
            }
            let k = StepCoefficients { c: [0.11, 0.07, 0.05], dt: 0.013 };
            let whole = Region { lo: [0; 3], hi: nn };
            for s in [None, Some(&src)] {
                let mut w = u.clone();
                sweep_with(&u, &mut w, s, k, whole, dims, Isa::Baseline);
                fill_faces(&mut w, &faces);
                let mut want = w.clone();
                sweep_with(&w, &mut want, s, k, whole, dims, Isa::Baseline);
                for bz in 0..cuts[2].len() - 1 {
                    for by in 0..cuts[1].len() - 1 {
                        for bx in 0..cuts[0].len() - 1 {
                            let bi = [bx, by, bz];
                            let lo: [usize; 3] = std::array::from_fn(|a| cuts[a][bi[a]]);
                            let hi: [usize; 3] = std::array::from_fn(|a| cuts[a][bi[a] + 1]);
                            let n: [usize; 3] = std::array::from_fn(|a| hi[a] - lo[a]);
                            let open: [[bool; 2]; 3] = std::array::from_fn(|a| [a < dims && lo[a] > 0, a < dims && hi[a] < nn[a]]);
                            let bu = block_of(&u, lo, hi, dims, open, true);
                            let bs = s.map(|s| block_of(s, lo, hi, dims, open, false));
                            let bf: Vec<FaceGhost> = faces
                                .iter()
                                .filter(|f| !open[f.axis][f.side])
                                .map(|f| {
                                    let (bb, cc) = ((f.axis + 1) % 3, (f.axis + 2) % 3);
                                    let mut values = Vec::new();
                                    for jc in 0..n[cc] {
                                        for jb in 0..n[bb] {
                                            values.push(f.values[(lo[cc] + jc) * nn[bb] + lo[bb] + jb]);
                                        }
                                    }
                                    FaceGhost { values, ..f.clone() }
                                })
                                .collect();
                            let region = Region { lo, hi };
                            for (isa, pool) in [Isa::Baseline, Isa::Avx2, Isa::Avx512].into_iter().flat_map(|i| pools.iter().map(move |p| (i, p))) {
                                let threads = pool.as_ref().map_or(1, |p| p.current_num_threads());
                                let tag = format!("{dims}D block {lo:?}..{hi:?} src {} {isa:?} {threads} thread(s)", s.is_some());
                                let (mut t1, mut t2) = (u.clone(), w.clone());
                                let st1 = sweep_with(&u, &mut t1, s, k, region, dims, isa);
                                let st2 = sweep_with(&w, &mut t2, s, k, region, dims, isa);
                                let mut out = bu.clone();
                                let mut ring = Vec::new();
                                let got = sweep_pair(&bu, &mut out, bs.as_ref(), k, dims, open, &bf, &mut ring, isa, pool.as_ref());
                                for z in 0..n[2] {
                                    for y in 0..n[1] {
                                        for x in 0..n[0] {
                                            let (a, b) = (
                                                out.as_slice()[out.idx(x, y, z)],
                                                want.as_slice()[want.idx(lo[0] + x, lo[1] + y, lo[2] + z)],
                                            );
                                            assert_eq!(a.to_bits(), b.to_bits(), "{tag}: cell {x},{y},{z}: {a} against {b}");
                                        }
                                    }
                                }
                                for (g, e) in got.iter().zip([st1, st2]) {
                                    // One thread: the same order of summation, so the same
                                    // bits; more: the parts' sums added.
                                    if threads == 1 {
                                        let bits = |t: &SweepStats| [t.sum, t.sumsq, t.min, t.max, t.max_change].map(f64::to_bits);
                                        assert_eq!(bits(g), bits(&e), "{tag}: statistics");
                                    } else {
                                        assert_eq!((g.min, g.max, g.max_change), (e.min, e.max, e.max_change), "{tag}");
                                        assert!((g.sum - e.sum).abs() <= 1e-12 * e.sumsq.max(1.0), "{tag}");
                                        assert!((g.sumsq - e.sumsq).abs() <= 1e-12 * e.sumsq.max(1.0), "{tag}");
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn nan_propagates_into_max() {
        let b = IndexBox { lo: [0; 3], hi: [9, 3, 1] };
        let mut u = Field::zeros(b, 2, 1);
        let c = u.idx(4, 1, 0);
        u.as_slice_mut()[c] = f64::NAN;
        let mut out = u.clone();
        for isa in [Isa::Baseline, Isa::Avx2, Isa::Avx512] {
            let st =
                sweep_with(&u, &mut out, None, StepCoefficients { c: [0.1; 3], dt: 1.0 }, Region { lo: [0; 3], hi: [9, 3, 1] }, 2, isa);
            assert!(st.max.is_nan() && st.sum.is_nan());
        }
    }

    #[test]
    fn regions_cover_every_cell_once() {
        for dims in [2, 3] {
            for n in [[1, 1, 1], [2, 3, 1], [5, 4, 3], [7, 1, 2], [3, 3, 3]] {
                let n = if dims == 2 { [n[0], n[1], 1] } else { n };
                let (inner, slabs) = split_regions(n, dims);
                let mut count = vec![0; n[0] * n[1] * n[2]];
                for r in std::iter::once(&inner).chain(&slabs) {
                    for k in r.lo[2]..r.hi[2] {
                        for j in r.lo[1]..r.hi[1] {
                            for i in r.lo[0]..r.hi[0] {
                                count[(k * n[1] + j) * n[0] + i] += 1;
                            }
                        }
                    }
                }
                assert!(count.iter().all(|&c| c == 1), "dims {dims} n {n:?}: {count:?}");
            }
        }
    }
}
