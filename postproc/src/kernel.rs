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
        let mut p = Program { ins: Vec::new(), roots: Vec::new(), nregs: 0, scalars: Vec::new() };
        let mut reg: HashMap<Id, usize> = HashMap::new();
        for &r in roots {
            let x = p.emit(plan, geo, r, bufs, &mut reg);
            p.roots.push(x);
        }
        p
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
        self.ins.iter().filter_map(|i| if let Ins::Load(_, b) = i { Some(*b) } else { None }).collect()
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
