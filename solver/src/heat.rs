//! The `heat` model: du/dt = D ∇²u + s(x, t), explicit Euler in time, second-order
//! central differences in space on cell centres.
//!
//! Every cell is updated by the same floating-point expression in the same order
//! whatever the decomposition, so results are bit-identical on any rank count.
use crate::case::{Bc, Case};
use crate::expr::Expr;
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
        self.max = self.max.max(o.max);
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

/// Updates the cells of `region`: `out = u + Σ c_a (u_{-a} - 2u + u_{+a}) + dt·s`.
/// `u`, `out` and `src` share the padded layout of `u` (ghost width 1 on used axes).
/// Returns the sweep statistics of the region.
pub fn sweep(u: &Field, out: &mut Field, src: Option<&Field>, k: StepCoefficients, region: Region, dims: usize) -> SweepStats {
    let p = u.padded_shape();
    let g = u.ghost;
    let (sy, sz) = (p[0], p[0] * p[1]);
    let uu = u.as_slice();
    let ss = src.map(|s| s.as_slice());
    let oo = out.as_slice_mut();
    let mut st = SweepStats::default();
    let (cx, cy, cz, dt) = (k.c[0], k.c[1], k.c[2], k.dt);
    let n = region.hi[0] - region.lo[0];
    if n == 0 {
        return st;
    }
    for kk in region.lo[2]..region.hi[2] {
        for j in region.lo[1]..region.hi[1] {
            let row = ((kk + g[2]) * p[1] + j + g[1]) * p[0] + g[0] + region.lo[0];
            let c = &uu[row..row + n];
            let w = &uu[row - 1..row - 1 + n];
            let e = &uu[row + 1..row + 1 + n];
            let s_ = &uu[row - sy..row - sy + n];
            let nn = &uu[row + sy..row + sy + n];
            let o = &mut oo[row..row + n];
            let (mut sum, mut sumsq, mut mn, mut mx, mut ch) = (0.0, 0.0, f64::INFINITY, f64::NEG_INFINITY, 0.0f64);
            if dims == 3 {
                let b = &uu[row - sz..row - sz + n];
                let t = &uu[row + sz..row + sz + n];
                for i in 0..n {
                    let ci = c[i];
                    let mut v = ci + cx * (w[i] - 2.0 * ci + e[i]) + cy * (s_[i] - 2.0 * ci + nn[i]) + cz * (b[i] - 2.0 * ci + t[i]);
                    if let Some(ss) = ss {
                        v += dt * ss[row + i];
                    }
                    o[i] = v;
                    sum += v;
                    sumsq += v * v;
                    mn = if v < mn { v } else { mn };
                    mx = if v > mx { v } else { mx };
                    let d = (v - ci).abs();
                    ch = if d > ch { d } else { ch };
                }
            } else {
                for i in 0..n {
                    let ci = c[i];
                    let mut v = ci + cx * (w[i] - 2.0 * ci + e[i]) + cy * (s_[i] - 2.0 * ci + nn[i]);
                    if let Some(ss) = ss {
                        v += dt * ss[row + i];
                    }
                    o[i] = v;
                    sum += v;
                    sumsq += v * v;
                    mn = if v < mn { v } else { mn };
                    mx = if v > mx { v } else { mx };
                    let d = (v - ci).abs();
                    ch = if d > ch { d } else { ch };
                }
            }
            // NaN never compares greater, so propagate it explicitly.
            if sum.is_nan() {
                mx = f64::NAN;
            }
            st.merge(&SweepStats { sum, sumsq, min: mn, max: mx, max_change: ch });
        }
    }
    st
}

/// Splits the block of extent `n` into an inner region (cells whose stencil needs no
/// ghost) and boundary slabs, disjoint and covering every cell once.
pub fn split_regions(n: [usize; 3], dims: usize) -> (Region, Vec<Region>) {
    let inner = |a: usize| if a < dims { (1.min(n[a]), n[a].saturating_sub(1).max(1.min(n[a]))) } else { (0, n[a]) };
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

/// One physical boundary face of this rank's block and its condition.
struct Face {
    axis: usize,
    side: usize,
    bc: Bc,
    /// Face-centre values (row-major over the other two axes), refreshed when time-dependent.
    values: Vec<f64>,
    /// Face-centre coordinates matching `values`.
    points: Vec<[f64; 3]>,
}

/// State and scratch of the heat model on one rank.
pub struct HeatSolver {
    /// Global layout.
    pub layout: BlockLayout,
    /// Current temperature (ghost width 1).
    pub u: Field,
    next: Field,
    source: Option<Field>,
    source_expr: Expr,
    halo: HaloPlan,
    faces: Vec<Face>,
    interior: Region,
    slabs: Vec<Region>,
    diffusivity: f64,
    /// Time spent in each phase (seconds): halo wait, compute, boundary conditions.
    pub timings: PhaseTimes,
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

impl HeatSolver {
    /// Sets up the model for `comm.rank()` of `layout` with the initial condition of `case`.
    pub fn new(case: &Case, layout: BlockLayout, comm: &dyn Comm) -> decomp::Result<Self> {
        let rank = comm.rank();
        let dims = layout.grid.dims;
        let block = layout.blocks[rank];
        let grid = &layout.grid;
        let mut u = Field::zeros(block, dims, 1);
        u.fill_with(|i, j, k| case.initial.eval(grid.centre(0, i), grid.centre(1, j), grid.centre(2, k), 0.0));
        let next = u.clone();
        let halo = HaloPlan::new(&layout, rank, 1, Stencil::Star, 0)?;
        let mut faces = Vec::new();
        let lo = block.lo;
        let n = block.shape();
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
                faces.push(Face { axis: a, side, bc: case.boundary[a][side].clone(), values: vec![0.0; points.len()], points });
            }
        }
        let (interior, slabs) = split_regions(n, dims);
        let mut s = HeatSolver {
            layout,
            u,
            next,
            source: None,
            source_expr: case.source.clone(),
            halo,
            faces,
            interior,
            slabs,
            diffusivity: case.diffusivity,
            timings: PhaseTimes::default(),
        };
        if s.source_expr.as_constant() != Some(0.0) {
            s.source = Some(Field::zeros(block, dims, 1));
            s.eval_source(0.0);
        }
        for f in &mut s.faces {
            Self::eval_face(f, 0.0);
        }
        Ok(s)
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
        for (v, p) in f.values.iter_mut().zip(&f.points) {
            *v = e.eval(p[0], p[1], p[2], t);
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
            let (ghost, inner) = if f.side == 0 { (0, g[a]) } else { (g[a] + n[a], g[a] + n[a] - 1) };
            let data = self.u.as_slice_mut();
            let mut idx = 0;
            for jc in 0..n[c] {
                for jb in 0..n[b] {
                    let base = (jb + g[b]) * stride[b] + (jc + g[c]) * stride[c];
                    let gi = base + ghost * stride[a];
                    let ii = base + inner * stride[a];
                    let v = f.values[idx];
                    data[gi] = match f.bc {
                        Bc::Dirichlet(_) => 2.0 * v - data[ii],
                        Bc::Neumann(_) => data[ii] + v * h[a],
                        Bc::Periodic => data[gi],
                    };
                    idx += 1;
                }
            }
        }
    }

    /// Advances from time `t` by `dt`, overlapping the halo exchange with the inner sweep.
    pub fn step(&mut self, comm: &dyn Comm, t: f64, dt: f64) -> SweepStats {
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
        let mut st = sweep(&self.u, &mut self.next, self.source.as_ref(), k, self.interior, dims);
        let t3 = std::time::Instant::now();
        self.halo.finish(comm, &mut self.u);
        let t4 = std::time::Instant::now();
        for r in &self.slabs {
            st.merge(&sweep(&self.u, &mut self.next, self.source.as_ref(), k, *r, dims));
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
