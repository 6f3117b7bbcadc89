//! Fused element-wise kernels. A [`Program`] evaluates a set of field nodes one *row*
//! at a time (a row is a line along x in 2D, a z-plane in 3D: the unit the slowest axis
//! is cut into), every instruction one loop over the row, so a chain such as
//! `abs(ddx(v) - ddy(u))` runs as a few vectorisable passes over a cache-resident row
//! instead of materialising each intermediate field. Only sources and the arguments of
//! derivatives along the slowest axis live in whole buffers ([`Buf`]).
use crate::plan::{Bin, Id, Level, Op, Plan, Un};
use std::collections::HashMap;

/// Rows `lo .. lo + rows` (along the slowest axis) of one field. On a periodic axis
/// the range may extend past the mesh; those rows hold wrapped copies.
#[derive(Clone, Debug)]
pub struct Buf {
    /// First row (may be negative on a periodic axis).
    pub lo: isize,
    /// Number of rows.
    pub rows: usize,
    /// Values, row after row.
    pub data: Vec<f64>,
    /// Rows of the mesh when rows outside the buffer wrap around (a whole-mesh buffer
    /// on a periodic axis); 0 otherwise.
    pub wrap: usize,
}

impl Buf {
    /// Row `r` (global, extended index).
    #[inline]
    pub fn row(&self, r: isize, len: usize) -> &[f64] {
        let mut i = r - self.lo;
        if (i < 0 || i as usize >= self.rows) && self.wrap > 0 {
            i = r.rem_euclid(self.wrap as isize) - self.lo;
        }
        let i = i as usize;
        &self.data[i * len..(i + 1) * len]
    }
}

/// Geometry the kernels need.
#[derive(Clone, Debug)]
pub struct Geometry {
    /// 2 or 3.
    pub dims: usize,
    /// Cells per axis.
    pub cells: [usize; 3],
    /// Lower corner.
    pub lower: [f64; 3],
    /// Spacing.
    pub spacing: [f64; 3],
    /// Periodic axes.
    pub periodic: [bool; 3],
}

impl Geometry {
    /// The slowest axis.
    pub fn slow(&self) -> usize {
        self.dims - 1
    }
    /// Values per row.
    pub fn row_len(&self) -> usize {
        if self.dims == 2 {
            self.cells[0]
        } else {
            self.cells[0] * self.cells[1]
        }
    }
}

#[derive(Clone, Debug)]
enum Ins {
    /// reg = value of scalar node (per snapshot)
    Scalar(usize, Id),
    /// reg = coordinate along an in-row axis
    CoordIn(usize, usize),
    /// reg = coordinate of the row
    CoordRow(usize),
    Load(usize, usize),
    DiffRow {
        dst: usize,
        buf: usize,
        order: u8,
    },
    DiffIn {
        dst: usize,
        src: usize,
        axis: usize,
        order: u8,
    },
    Un(usize, Un, usize),
    Bin(usize, Bin, usize, usize),
}

/// A compiled kernel.
#[derive(Clone, Debug)]
pub struct Program {
    ins: Vec<Ins>,
    /// Register of each root, in the order given.
    pub roots: Vec<usize>,
    nregs: usize,
    /// Scalar nodes whose per-snapshot values the program needs.
    pub scalars: Vec<Id>,
    /// Per root: the buffer it is a plain load of. Such a root is read straight from its
    /// buffer ([`Program::output`]); its load is not run unless another instruction
    /// reads its register (no copy of the row only to hand it over).
    direct: Vec<Option<usize>>,
}

/// Scratch registers of one worker.
pub struct Regs {
    data: Vec<f64>,
    len: usize,
}

impl Regs {
    /// Register `r`.
    pub fn get(&self, r: usize) -> &[f64] {
        &self.data[r * self.len..(r + 1) * self.len]
    }
}

impl Program {
    /// Compiles `roots`. `bufs` maps materialised nodes to their buffer slot: they are
    /// loaded, never recomputed. Scalars (one number per snapshot) are broadcast.
    pub fn build(plan: &Plan, geo: &Geometry, roots: &[Id], bufs: &HashMap<Id, usize>) -> Program {
        let mut p = Program { ins: Vec::new(), roots: Vec::new(), nregs: 0, scalars: Vec::new(), direct: Vec::new() };
        let mut reg: HashMap<Id, usize> = HashMap::new();
        for &r in roots {
            let x = p.emit(plan, geo, r, bufs, &mut reg);
            p.roots.push(x);
        }
        // A root that is a load (a source or a time statistic) is read by the caller
        // straight from its buffer; its load runs only if another instruction reads it.
        let mut operand = vec![false; p.nregs];
        for ins in &p.ins {
            match ins {
                Ins::Un(_, _, a) => operand[*a] = true,
                Ins::Bin(_, _, x, y) => {
                    operand[*x] = true;
                    operand[*y] = true;
                }
                Ins::DiffIn { src, .. } => operand[*src] = true,
                _ => {}
            }
        }
        let loads: HashMap<usize, usize> =
            p.ins.iter().filter_map(|i| if let Ins::Load(d, b) = i { Some((*d, *b)) } else { None }).collect();
        p.direct = p.roots.iter().map(|r| loads.get(r).copied()).collect();
        let roots = p.roots.clone();
        p.ins.retain(|i| !matches!(i, Ins::Load(d, _) if !operand[*d] && roots.contains(d)));
        p
    }

    /// The values of root `k` at row `r` after [`Program::run`] for that row with the
    /// same `bufs`.
    #[inline]
    pub fn output<'a>(&self, k: usize, regs: &'a Regs, bufs: &[Option<&'a Buf>], r: isize) -> &'a [f64] {
        match self.direct_output(k, bufs, r, regs.len) {
            Some(x) => x,
            None => regs.get(self.roots[k]),
        }
    }

    /// Row `r` (of `len` values) of root `k` when it is read straight from a buffer
    /// (no [`Program::run`] needed); `None` otherwise.
    #[inline]
    pub fn direct_output<'a>(&self, k: usize, bufs: &[Option<&'a Buf>], r: isize, len: usize) -> Option<&'a [f64]> {
        self.direct[k].map(|b| bufs[b].expect("buffer present").row(r, len))
    }

    /// Whether root `k` is read straight from a buffer (its rows of several snapshots
    /// can then be held at once, without a register set per snapshot).
    pub fn is_direct(&self, k: usize) -> bool {
        self.direct[k].is_some()
    }

    /// Whether [`Program::run`] has anything to do (not when every root is direct).
    pub fn has_work(&self) -> bool {
        !self.ins.is_empty()
    }

    fn new_reg(&mut self) -> usize {
        self.nregs += 1;
        self.nregs - 1
    }

    fn emit(&mut self, plan: &Plan, geo: &Geometry, id: Id, bufs: &HashMap<Id, usize>, reg: &mut HashMap<Id, usize>) -> usize {
        if let Some(&r) = reg.get(&id) {
            return r;
        }
        let node = &plan.nodes[id];
        let ins = if node.level != Level::Field {
            self.scalars.push(id);
            let d = self.new_reg();
            Ins::Scalar(d, id)
        } else if let Some(&b) = bufs.get(&id) {
            let d = self.new_reg();
            Ins::Load(d, b)
        } else {
            match &node.op {
                Op::Coord(a) if *a == geo.slow() => Ins::CoordRow(self.new_reg()),
                Op::Coord(a) => {
                    let d = self.new_reg();
                    Ins::CoordIn(d, *a)
                }
                Op::Unary(u, a) => {
                    let s = self.emit(plan, geo, *a, bufs, reg);
                    Ins::Un(self.new_reg(), *u, s)
                }
                Op::Binary(b, x, y) => {
                    let s = self.emit(plan, geo, *x, bufs, reg);
                    let t = self.emit(plan, geo, *y, bufs, reg);
                    Ins::Bin(self.new_reg(), *b, s, t)
                }
                Op::Diff { axis, order, arg } if *axis == geo.slow() => {
                    let b = *bufs.get(arg).expect("the argument of a derivative along the slowest axis is materialised");
                    Ins::DiffRow { dst: self.new_reg(), buf: b, order: *order }
                }
                Op::Diff { axis, order, arg } => {
                    let s = self.emit(plan, geo, *arg, bufs, reg);
                    Ins::DiffIn { dst: self.new_reg(), src: s, axis: *axis, order: *order }
                }
                other => panic!("node {other:?} must be materialised before a kernel uses it"),
            }
        };
        let d = match &ins {
            Ins::Scalar(d, _) | Ins::CoordIn(d, _) | Ins::CoordRow(d) | Ins::Load(d, _) | Ins::Un(d, _, _) | Ins::Bin(d, _, _, _) => *d,
            Ins::DiffRow { dst, .. } | Ins::DiffIn { dst, .. } => *dst,
        };
        self.ins.push(ins);
        reg.insert(id, d);
        d
    }

    /// Fresh registers for one worker.
    pub fn regs(&self, len: usize) -> Regs {
        Regs { data: vec![0.0; self.nregs.max(1) * len], len }
    }

    /// Buffers read with an offset along the slowest axis (derivatives there).
    pub fn row_stencil_bufs(&self) -> Vec<usize> {
        self.ins.iter().filter_map(|i| if let Ins::DiffRow { buf, .. } = i { Some(*buf) } else { None }).collect()
    }

    /// Buffers read at the row itself.
    pub fn loaded_bufs(&self) -> Vec<usize> {
        self.ins
            .iter()
            .filter_map(|i| if let Ins::Load(_, b) = i { Some(*b) } else { None })
            .chain(self.direct.iter().flatten().copied())
            .collect()
    }

    /// Runs the program for row `r` (extended index: on a periodic axis it may lie past
    /// the mesh, where `rg`, the row it wraps to, gives its coordinate).
    /// `scalar` gives the per-snapshot value of scalar nodes.
    #[allow(clippy::too_many_arguments)]
    pub fn run(&self, geo: &Geometry, r: isize, rg: usize, bufs: &[Option<&Buf>], scalar: &HashMap<Id, f64>, regs: &mut Regs) {
        let len = regs.len;
        for ins in &self.ins {
            match ins {
                Ins::Scalar(d, id) => {
                    let v = scalar.get(id).copied().unwrap_or(f64::NAN);
                    regs.data[d * len..(d + 1) * len].fill(v);
                }
                Ins::CoordRow(d) => {
                    let a = geo.slow();
                    let v = geo.lower[a] + (rg as f64 + 0.5) * geo.spacing[a];
                    regs.data[d * len..(d + 1) * len].fill(v);
                }
                Ins::CoordIn(d, a) => {
                    let out = &mut regs.data[d * len..(d + 1) * len];
                    let (lo, h, nx) = (geo.lower[*a], geo.spacing[*a], geo.cells[0]);
                    for (k, o) in out.iter_mut().enumerate() {
                        let i = if *a == 0 { k % nx } else { k / nx };
                        *o = lo + (i as f64 + 0.5) * h;
                    }
                }
                Ins::Load(d, b) => {
                    let src = bufs[*b].expect("buffer present").row(r, len);
                    regs.data[d * len..(d + 1) * len].copy_from_slice(src);
                }
                Ins::DiffRow { dst, buf, order } => {
                    let b = bufs[*buf].expect("buffer present");
                    let a = geo.slow();
                    let out = &mut regs.data[dst * len..(dst + 1) * len];
                    diff_rows(out, b, r, len, geo.cells[a], geo.periodic[a], geo.spacing[a], *order);
                }
                Ins::DiffIn { dst, src, axis, order } => {
                    let (s, d) = two_regs(&mut regs.data, len, *src, *dst);
                    let (n, stride) = if *axis == 0 { (geo.cells[0], 1) } else { (geo.cells[1], geo.cells[0]) };
                    let lines = len / n;
                    for l in 0..lines {
                        // Lines along x are contiguous; along y (3D) they are strided.
                        let base = if *axis == 0 { l * n } else { l };
                        diff_line(d, s, base, stride, n, geo.periodic[*axis], geo.spacing[*axis], *order);
                    }
                }
                Ins::Un(d, u, a) => {
                    let (s, o) = two_regs(&mut regs.data, len, *a, *d);
                    unary_loop(*u, s, o);
                }
                Ins::Bin(d, b, x, y) => {
                    let (xs, ys, o) = three_regs(&mut regs.data, len, *x, *y, *d);
                    binary_loop(*b, xs, ys, o);
                }
            }
        }
    }
}

/// Source register (read) and destination register (written), distinct.
fn two_regs(data: &mut [f64], len: usize, src: usize, dst: usize) -> (&[f64], &mut [f64]) {
    debug_assert_ne!(src, dst);
    if src < dst {
        let (a, b) = data.split_at_mut(dst * len);
        (&a[src * len..(src + 1) * len], &mut b[..len])
    } else {
        let (a, b) = data.split_at_mut(src * len);
        (&b[..len], &mut a[dst * len..(dst + 1) * len])
    }
}

/// Two source registers (possibly equal) and a destination written after both.
fn three_regs(data: &mut [f64], len: usize, x: usize, y: usize, dst: usize) -> (&[f64], &[f64], &mut [f64]) {
    // Registers are allocated in emission order, so sources precede the destination.
    debug_assert!(x < dst && y < dst);
    let (a, b) = data.split_at_mut(dst * len);
    (&a[x * len..(x + 1) * len], &a[y * len..(y + 1) * len], &mut b[..len])
}

fn unary_fn(u: Un) -> fn(f64) -> f64 {
    match u {
        Un::Neg => |x| -x,
        Un::Abs => f64::abs,
        Un::Sqrt => f64::sqrt,
        Un::Exp => f64::exp,
        Un::Ln => f64::ln,
        Un::Log10 => f64::log10,
        Un::Sin => f64::sin,
        Un::Cos => f64::cos,
        Un::Tan => f64::tan,
        Un::Asin => f64::asin,
        Un::Acos => f64::acos,
        Un::Atan => f64::atan,
        Un::Sinh => f64::sinh,
        Un::Cosh => f64::cosh,
        Un::Tanh => f64::tanh,
        Un::Floor => f64::floor,
        Un::Ceil => f64::ceil,
        Un::Sign => |x: f64| {
            if x > 0.0 {
                1.0
            } else if x < 0.0 {
                -1.0
            } else {
                0.0
            }
        },
    }
}

/// The scalar form of a binary operation (also used for scalar arithmetic).
pub fn binary(b: Bin, x: f64, y: f64) -> f64 {
    match b {
        Bin::Add => x + y,
        Bin::Sub => x - y,
        Bin::Mul => x * y,
        Bin::Div => x / y,
        Bin::Pow => pow(x, y),
        Bin::Min => x.min(y),
        Bin::Max => x.max(y),
        Bin::Atan2 => x.atan2(y),
        Bin::Hypot => x.hypot(y),
    }
}

/// The scalar form of a unary operation.
pub fn unary(u: Un, x: f64) -> f64 {
    unary_fn(u)(x)
}

#[inline]
fn pow(x: f64, y: f64) -> f64 {
    if y == 2.0 {
        x * x
    } else if y == y.trunc() && y.abs() <= 16.0 {
        x.powi(y as i32)
    } else {
        x.powf(y)
    }
}

/// `o = u(s)` element-wise; the common operations get their own loop so they inline
/// and vectorise (a function pointer per element does neither).
fn unary_loop(u: Un, s: &[f64], o: &mut [f64]) {
    macro_rules! lp {
        ($f:expr) => {
            for (o, x) in o.iter_mut().zip(s) {
                *o = $f(*x);
            }
        };
    }
    match u {
        Un::Neg => lp!(|x: f64| -x),
        Un::Abs => lp!(|x: f64| x.abs()),
        Un::Sqrt => lp!(|x: f64| x.sqrt()),
        Un::Floor => lp!(|x: f64| x.floor()),
        Un::Ceil => lp!(|x: f64| x.ceil()),
        _ => {
            let f = unary_fn(u);
            lp!(f)
        }
    }
}

fn binary_loop(b: Bin, xs: &[f64], ys: &[f64], o: &mut [f64]) {
    macro_rules! lp {
        ($f:expr) => {
            for ((o, x), y) in o.iter_mut().zip(xs).zip(ys) {
                *o = $f(*x, *y);
            }
        };
    }
    match b {
        Bin::Add => lp!(|x: f64, y: f64| x + y),
        Bin::Sub => lp!(|x: f64, y: f64| x - y),
        Bin::Mul => lp!(|x: f64, y: f64| x * y),
        Bin::Div => lp!(|x: f64, y: f64| x / y),
        _ => lp!(|x, y| binary(b, x, y)),
    }
}

/// Most snapshots folded into the time statistics per pass over their accumulators
/// (the executor batches up to this many snapshots of a piece; longer lists are
/// folded in groups of this size).
pub const MAX_FOLD: usize = 8;

/// Cells updated together in registers by [`fold_rows`].
const LANES: usize = 8;

/// Folds the rows `xs` of one field at successive snapshots (in time order) into
/// per-cell running time statistics that have seen `n0` snapshots: the mean and `m2`
/// (the sum of squared deviations from the mean) by Welford's update, and the
/// minimum and maximum.
///
/// This is temporal blocking: each group of a few cells (8) loads its mean and M2
/// once, takes every snapshot's value in registers, and stores them once, instead of a
/// pass over the accumulators per snapshot. The arithmetic per cell and snapshot is
/// exactly the one-at-a-time update, in the same order, so the result is the same to
/// the bit however the snapshots are batched (and so does not depend on the memory
/// bound, which sets the batch size).
pub fn fold_rows(mean: &mut [f64], m2: Option<&mut [f64]>, min: Option<&mut [f64]>, max: Option<&mut [f64]>, xs: &[&[f64]], n0: usize) {
    let n = mean.len();
    assert!(xs.iter().all(|x| x.len() == n), "every snapshot row has the accumulator's length");
    let mut m2 = m2;
    for (g, group) in xs.chunks(MAX_FOLD).enumerate() {
        // 1 / (count after each snapshot): the same numbers the one-at-a-time update uses.
        let mut inv = [0.0; MAX_FOLD];
        for (i, v) in inv.iter_mut().enumerate().take(group.len()) {
            *v = 1.0 / (n0 + g * MAX_FOLD + i + 1) as f64;
        }
        let inv = &inv[..group.len()];
        match m2.as_deref_mut() {
            Some(q) => fold_mean_m2(mean, q, group, inv),
            None => fold_mean(mean, group, inv),
        }
    }
    if let Some(lo) = min {
        for x in xs {
            for (m, &v) in lo.iter_mut().zip(*x) {
                *m = m.min(v);
            }
        }
    }
    if let Some(hi) = max {
        for x in xs {
            for (m, &v) in hi.iter_mut().zip(*x) {
                *m = m.max(v);
            }
        }
    }
}

/// Welford's mean and M2 over the snapshots `xs`, `inv[i]` = 1 / count after `xs[i]`.
fn fold_mean_m2(mean: &mut [f64], m2: &mut [f64], xs: &[&[f64]], inv: &[f64]) {
    let n = mean.len();
    let body = n / LANES * LANES;
    for c in (0..body).step_by(LANES) {
        let mut m: [f64; LANES] = mean[c..c + LANES].try_into().expect("LANES values");
        let mut q: [f64; LANES] = m2[c..c + LANES].try_into().expect("LANES values");
        for (x, &iv) in xs.iter().zip(inv) {
            let x: &[f64; LANES] = x[c..c + LANES].try_into().expect("LANES values");
            for j in 0..LANES {
                let d = x[j] - m[j];
                m[j] += d * iv;
                q[j] += d * (x[j] - m[j]);
            }
        }
        mean[c..c + LANES].copy_from_slice(&m);
        m2[c..c + LANES].copy_from_slice(&q);
    }
    for c in body..n {
        let (mut m, mut q) = (mean[c], m2[c]);
        for (x, &iv) in xs.iter().zip(inv) {
            let d = x[c] - m;
            m += d * iv;
            q += d * (x[c] - m);
        }
        mean[c] = m;
        m2[c] = q;
    }
}

/// The running mean alone (no M2 wanted).
fn fold_mean(mean: &mut [f64], xs: &[&[f64]], inv: &[f64]) {
    let n = mean.len();
    let body = n / LANES * LANES;
    for c in (0..body).step_by(LANES) {
        let mut m: [f64; LANES] = mean[c..c + LANES].try_into().expect("LANES values");
        for (x, &iv) in xs.iter().zip(inv) {
            let x: &[f64; LANES] = x[c..c + LANES].try_into().expect("LANES values");
            for j in 0..LANES {
                m[j] += (x[j] - m[j]) * iv;
            }
        }
        mean[c..c + LANES].copy_from_slice(&m);
    }
    for c in body..n {
        let mut m = mean[c];
        for (x, &iv) in xs.iter().zip(inv) {
            m += (x[c] - m) * iv;
        }
        mean[c] = m;
    }
}

/// Derivative along a line of `n` values at `src[base + i*stride]`, into `dst` at the
/// same places: central differences inside, second-order one-sided at the ends of a
/// non-periodic axis (numpy.gradient's edge_order=2 for first derivatives), wrapped on a
/// periodic one.
#[allow(clippy::too_many_arguments)]
fn diff_line(dst: &mut [f64], src: &[f64], base: usize, stride: usize, n: usize, periodic: bool, h: f64, order: u8) {
    let at = |i: usize| src[base + i * stride];
    if order == 1 {
        let c = 0.5 / h;
        for i in 1..n.saturating_sub(1) {
            dst[base + i * stride] = (at(i + 1) - at(i - 1)) * c;
        }
        if periodic {
            dst[base] = (at(1 % n) - at(n - 1)) * c;
            dst[base + (n - 1) * stride] = (at(0) - at((n + n - 2) % n)) * c;
        } else {
            dst[base] = (-3.0 * at(0) + 4.0 * at(1) - at(2)) * c;
            dst[base + (n - 1) * stride] = (3.0 * at(n - 1) - 4.0 * at(n - 2) + at(n - 3)) * c;
        }
    } else {
        let c = 1.0 / (h * h);
        for i in 1..n.saturating_sub(1) {
            dst[base + i * stride] = (at(i + 1) - 2.0 * at(i) + at(i - 1)) * c;
        }
        if periodic {
            dst[base] = (at(1 % n) - 2.0 * at(0) + at(n - 1)) * c;
            dst[base + (n - 1) * stride] = (at(0) - 2.0 * at(n - 1) + at((n + n - 2) % n)) * c;
        } else {
            dst[base] = (2.0 * at(0) - 5.0 * at(1) + 4.0 * at(2) - at(3)) * c;
            dst[base + (n - 1) * stride] = (2.0 * at(n - 1) - 5.0 * at(n - 2) + 4.0 * at(n - 3) - at(n - 4)) * c;
        }
    }
}

/// Derivative along the slowest axis at row `r` from the rows of `b`.
#[allow(clippy::too_many_arguments)]
fn diff_rows(out: &mut [f64], b: &Buf, r: isize, len: usize, n: usize, periodic: bool, h: f64, order: u8) {
    let row = |k: isize| b.row(k, len);
    let last = n as isize - 1;
    macro_rules! comb {
        ($c:expr, [$(($w:expr, $k:expr)),+]) => {{
            let rows = [$(row($k)),+];
            let ws = [$($w),+];
            for (i, o) in out.iter_mut().enumerate() {
                let mut s = 0.0;
                for (w, rr) in ws.iter().zip(rows.iter()) {
                    s += w * rr[i];
                }
                *o = s * $c;
            }
        }};
    }
    if order == 1 {
        let c = 0.5 / h;
        if periodic || (r > 0 && r < last) {
            let (p, m) = (row(r + 1), row(r - 1));
            for ((o, a), b) in out.iter_mut().zip(p).zip(m) {
                *o = (a - b) * c;
            }
        } else if r == 0 {
            comb!(c, [(-3.0, 0), (4.0, 1), (-1.0, 2)]);
        } else {
            comb!(c, [(3.0, last), (-4.0, last - 1), (1.0, last - 2)]);
        }
    } else {
        let c = 1.0 / (h * h);
        if periodic || (r > 0 && r < last) {
            comb!(c, [(1.0, r + 1), (-2.0, r), (1.0, r - 1)]);
        } else if r == 0 {
            comb!(c, [(2.0, 0), (-5.0, 1), (4.0, 2), (-1.0, 3)]);
        } else {
            comb!(c, [(2.0, last), (-5.0, last - 1), (4.0, last - 2), (-1.0, last - 3)]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derivatives_of_quadratics_are_exact_everywhere() {
        // f = 3 i^2 h^2 + i h: f' = 6 x + 1, f'' = 6, exact for the second-order formulas
        // at interior and boundary points alike.
        let (n, h) = (7, 0.25);
        let src: Vec<f64> = (0..n).map(|i| (i as f64 + 0.5) * h).map(|x| 3.0 * x * x + x).collect();
        let mut d = vec![0.0; n];
        diff_line(&mut d, &src, 0, 1, n, false, h, 1);
        for (i, v) in d.iter().enumerate() {
            let x = (i as f64 + 0.5) * h;
            assert!((v - (6.0 * x + 1.0)).abs() < 1e-12, "{i}: {v}");
        }
        let src3: Vec<f64> = (0..n).map(|i| (i as f64 + 0.5) * h).map(|x| x * x * x).collect();
        diff_line(&mut d, &src3, 0, 1, n, false, h, 2);
        // Cubic: the one-sided second derivative is first order; interior exact.
        for (i, v) in d.iter().enumerate().take(n - 1).skip(1) {
            let x = (i as f64 + 0.5) * h;
            assert!((v - 6.0 * x).abs() < 1e-10, "{i}: {v}");
        }
        let sq: Vec<f64> = (0..n).map(|i| ((i as f64 + 0.5) * h).powi(2)).collect();
        diff_line(&mut d, &sq, 0, 1, n, false, h, 2);
        assert!(d.iter().all(|v| (v - 2.0).abs() < 1e-10), "{d:?}");
    }

    /// Snapshot rows like a velocity component: a spatial profile plus small temporal
    /// fluctuations (deterministic pseudo-random numbers).
    fn snapshots(n: usize, cells: usize, seed: u64) -> Vec<Vec<f64>> {
        let mut state = seed;
        let mut next = move || {
            // splitmix64
            state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64 - 0.5
        };
        let profile: Vec<f64> = (0..cells).map(|c| 1.0 + 0.3 * (c as f64 * 0.7).sin()).collect();
        (0..n).map(|_| profile.iter().map(|p| p + 0.05 * next()).collect()).collect()
    }

    /// Folds `xs` in batches of `batch` snapshots: (mean, m2, min, max).
    fn fold_in_batches(xs: &[Vec<f64>], batch: usize) -> (Vec<f64>, Vec<f64>, Vec<f64>, Vec<f64>) {
        let cells = xs[0].len();
        let (mut mean, mut m2, mut lo, mut hi) =
            (vec![0.0; cells], vec![0.0; cells], vec![f64::INFINITY; cells], vec![f64::NEG_INFINITY; cells]);
        let mut n0 = 0;
        for chunk in xs.chunks(batch) {
            let rows: Vec<&[f64]> = chunk.iter().map(|x| &x[..]).collect();
            fold_rows(&mut mean, Some(&mut m2), Some(&mut lo), Some(&mut hi), &rows, n0);
            n0 += chunk.len();
        }
        (mean, m2, lo, hi)
    }

    const BATCHES: [usize; 8] = [1, 2, 3, 5, 7, 8, 9, 16];

    #[test]
    fn blocked_welford_agrees_with_two_pass_statistics() {
        let eps = f64::EPSILON;
        // 37 cells: four register groups of 8 and a tail of 5.
        for n in [1usize, 2, 3, 7, 8, 9, 51] {
            let xs = snapshots(n, 37, n as u64);
            for batch in BATCHES {
                let (mean, m2, lo, hi) = fold_in_batches(&xs, batch);
                for c in 0..37 {
                    let vals: Vec<f64> = xs.iter().map(|x| x[c]).collect();
                    assert_eq!(lo[c], vals.iter().copied().fold(f64::INFINITY, f64::min));
                    assert_eq!(hi[c], vals.iter().copied().fold(f64::NEG_INFINITY, f64::max));
                    if n == 1 {
                        // One snapshot: the mean is the value and M2 is 0, exactly.
                        assert_eq!((mean[c], m2[c]), (vals[0], 0.0));
                        continue;
                    }
                    // Two-pass reference (numpy's mean and var).
                    let nf = n as f64;
                    let m_ref = vals.iter().sum::<f64>() / nf;
                    let var_ref = vals.iter().map(|v| (v - m_ref) * (v - m_ref)).sum::<f64>() / nf;
                    let amax = vals.iter().fold(0.0f64, |a, v| a.max(v.abs()));
                    // Each of the n Welford steps and of the reference's n additions
                    // rounds by a few eps of max|x|: 8 n eps max|x| bounds both.
                    assert!((mean[c] - m_ref).abs() <= 8.0 * nf * eps * amax, "n {n} batch {batch} cell {c}: mean {} vs {m_ref}", mean[c]);
                    // Welford's variance has relative error below about n kappa eps, with
                    // kappa = sqrt(1 + mean^2 / var) the condition number of the variance
                    // (Chan, Golub and LeVeque 1983); the two-pass reference's is smaller.
                    let kappa = (1.0 + m_ref * m_ref / var_ref).sqrt();
                    let var = m2[c] / nf;
                    assert!(
                        (var - var_ref).abs() <= 8.0 * nf * kappa * eps * var_ref,
                        "n {n} batch {batch} cell {c}: var {var} vs {var_ref} (kappa {kappa:.1})"
                    );
                }
            }
        }
    }

    #[test]
    fn blocked_welford_is_bitwise_independent_of_the_batching() {
        for n in [1usize, 6, 13, 51] {
            let xs = snapshots(n, 29, 7 + n as u64);
            // The update one snapshot at a time, as the executor did before blocking.
            let cells = xs[0].len();
            let (mut mean, mut m2) = (vec![0.0; cells], vec![0.0; cells]);
            for (k, x) in xs.iter().enumerate() {
                let inv = 1.0 / (k + 1) as f64;
                for ((m, q), &v) in mean.iter_mut().zip(&mut m2).zip(x) {
                    let d = v - *m;
                    *m += d * inv;
                    *q += d * (v - *m);
                }
            }
            for batch in BATCHES {
                let got = fold_in_batches(&xs, batch);
                assert!(got.0.iter().zip(&mean).all(|(a, b)| a.to_bits() == b.to_bits()), "mean, n {n} batch {batch}");
                assert!(got.1.iter().zip(&m2).all(|(a, b)| a.to_bits() == b.to_bits()), "m2, n {n} batch {batch}");
                // The mean-only update gives the same mean.
                let mut alone = vec![0.0; cells];
                let mut n0 = 0;
                for chunk in xs.chunks(batch) {
                    let rows: Vec<&[f64]> = chunk.iter().map(|x| &x[..]).collect();
                    fold_rows(&mut alone, None, None, None, &rows, n0);
                    n0 += chunk.len();
                }
                assert!(alone.iter().zip(&mean).all(|(a, b)| a.to_bits() == b.to_bits()), "mean alone, n {n} batch {batch}");
            }
        }
    }

    #[test]
    fn blocked_welford_of_a_constant_is_exact() {
        let xs = vec![vec![0.1; 11]; 10];
        for batch in BATCHES {
            let (mean, m2, lo, hi) = fold_in_batches(&xs, batch);
            assert!(mean.iter().all(|&m| m == 0.1) && m2.iter().all(|&q| q == 0.0), "batch {batch}: {mean:?} {m2:?}");
            assert!(lo.iter().chain(&hi).all(|&v| v == 0.1));
        }
    }

    #[test]
    fn periodic_wraps() {
        let n = 16;
        let h = 1.0 / n as f64;
        let src: Vec<f64> = (0..n).map(|i| (2.0 * std::f64::consts::PI * (i as f64 + 0.5) * h).sin()).collect();
        let mut d = vec![0.0; n];
        diff_line(&mut d, &src, 0, 1, n, true, h, 1);
        let k = 2.0 * std::f64::consts::PI;
        // Central difference of sin: exact value sin(k h)/h * cos(k x).
        for (i, v) in d.iter().enumerate() {
            let x = (i as f64 + 0.5) * h;
            assert!((v - (k * h).sin() / h * (k * x).cos()).abs() < 1e-12);
        }
    }
}
