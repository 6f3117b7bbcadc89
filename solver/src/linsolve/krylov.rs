//! Krylov methods on the decomposed grid: preconditioned CG, single-reduction
//! (Chronopoulos–Gear) CG, BiCGStab, and multigrid as a stand-alone iteration.
//!
//! Vectors are fields of the finest level's shape; every operation touches interior
//! cells only. Several dot products are fused into one reduction where the method
//! allows, and in reproducible mode every reduction is exact then rounded once, so
//! iterates are bit-identical on any number of ranks.
use super::level::Slot;
use super::mg::Multigrid;
use super::options::{Method, Precond, SolverOptions};
use super::report::{Reason, SolveReport};
use crate::perf::{Mark, PhaseLog};
use decomp::reduce::{exact_allreduce, ExactSum};
use decomp::{Comm, Field, ReduceOp};
use std::time::Instant;

/// Visits the interior rows of `f`'s shape: `g(row range in storage)`.
#[inline]
fn rows(f: &Field, mut g: impl FnMut(std::ops::Range<usize>)) {
    let n = f.shape();
    for k in 0..n[2] {
        for j in 0..n[1] {
            let c = f.idx(0, j, k);
            g(c..c + n[0]);
        }
    }
}

/// A dot product being accumulated: sixteen lanes (four AVX accumulators, so the
/// additions of consecutive chunks do not wait on each other), or exact (reproducible mode: the
/// result does not depend on the rank count).
// A Sum lives on the stack for one reduction; boxing the exact one would allocate
// per CG iteration.
#[allow(clippy::large_enum_variant)]
pub enum Sum {
    Lanes([f64; LANES]),
    Exact(ExactSum),
}

/// Lanes of a [`Sum::Lanes`] accumulator.
const LANES: usize = 16;

impl Sum {
    pub fn new(reproducible: bool) -> Sum {
        if reproducible {
            Sum::Exact(ExactSum::new())
        } else {
            Sum::Lanes([0.0; LANES])
        }
    }

    pub fn add_products(&mut self, a: &[f64], b: &[f64]) {
        match self {
            Sum::Exact(e) => e.add_products(a, b),
            Sum::Lanes(s) => crate::simd::avx(
                #[inline(always)]
                || {
                    let (ca, cb) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
                    let (ra, rb) = (ca.remainder(), cb.remainder());
                    // A local copy stays in registers through the loop.
                    let mut acc = *s;
                    for (x, y) in ca.zip(cb) {
                        for l in 0..LANES {
                            acc[l] += x[l] * y[l];
                        }
                    }
                    for (x, y) in ra.iter().zip(rb) {
                        acc[0] += x * y;
                    }
                    *s = acc;
                },
            ),
        }
    }

    /// Sums every entry over the ranks, in one reduction.
    pub fn reduce(comm: &dyn Comm, sums: &mut [Sum]) {
        if let Some(Sum::Exact(_)) = sums.first() {
            let mut e: Vec<ExactSum> =
                sums.iter_mut().map(|s| if let Sum::Exact(e) = s { std::mem::take(e) } else { unreachable!("mixed sums") }).collect();
            exact_allreduce(comm, &mut e);
            for (s, v) in sums.iter_mut().zip(e) {
                *s = Sum::Exact(v);
            }
        } else {
            let mut v: Vec<f64> = sums.iter().map(|s| s.value()).collect();
            comm.allreduce_f64(&mut v, ReduceOp::Sum);
            for (s, x) in sums.iter_mut().zip(v) {
                let mut lanes = [0.0; LANES];
                lanes[0] = x;
                *s = Sum::Lanes(lanes);
            }
        }
    }

    pub fn value(&self) -> f64 {
        match self {
            Sum::Exact(e) => e.to_f64(),
            Sum::Lanes(s) => {
                // Pairwise: lanes l and l + half, halving until one is left.
                let mut v = *s;
                let mut half = LANES / 2;
                while half > 0 {
                    for l in 0..half {
                        v[l] += v[l + half];
                    }
                    half /= 2;
                }
                v[0]
            }
        }
    }
}

/// Dot products over interior cells, reduced over ranks in one call.
pub struct Dots<'c> {
    comm: &'c dyn Comm,
    reproducible: bool,
    /// Reductions done so far.
    pub count: u64,
    /// Seconds in dot products and their reductions.
    pub seconds: f64,
}

impl<'c> Dots<'c> {
    /// A reducer on `comm`.
    pub fn new(comm: &'c dyn Comm, reproducible: bool) -> Self {
        Dots { comm, reproducible, count: 0, seconds: 0.0 }
    }

    /// `pairs[i].0 · pairs[i].1` for every pair, globally.
    pub fn dots(&mut self, pairs: &[(&Field, &Field)]) -> Vec<f64> {
        let t = std::time::Instant::now();
        let v = self.dots_inner(pairs);
        self.seconds += t.elapsed().as_secs_f64();
        v
    }

    fn dots_inner(&mut self, pairs: &[(&Field, &Field)]) -> Vec<f64> {
        self.count += 1;
        let mut sums: Vec<Sum> = pairs
            .iter()
            .map(|(a, b)| {
                let mut s = Sum::new(self.reproducible);
                let (x, y) = (a.as_slice(), b.as_slice());
                rows(a, |r| s.add_products(&x[r.clone()], &y[r]));
                s
            })
            .collect();
        Sum::reduce(self.comm, &mut sums);
        sums.iter().map(Sum::value).collect()
    }

    /// The global values of sums accumulated elsewhere (one reduction).
    pub fn reduce(&mut self, sums: &mut [Sum]) -> Vec<f64> {
        let t = std::time::Instant::now();
        self.count += 1;
        Sum::reduce(self.comm, sums);
        self.seconds += t.elapsed().as_secs_f64();
        sums.iter().map(Sum::value).collect()
    }

    /// `r += a·q` and then `‖r‖²` globally, in one pass over memory.
    pub fn update_norm2(&mut self, a: f64, q: &Field, r: &mut Field) -> f64 {
        let t = std::time::Instant::now();
        self.count += 1;
        let n = r.shape();
        let qs = q.as_slice();
        let mut s = [Sum::new(self.reproducible)];
        for k in 0..n[2] {
            for j in 0..n[1] {
                let c = r.idx(0, j, k);
                let row = &mut r.as_slice_mut()[c..c + n[0]];
                let src = &qs[c..c + n[0]];
                crate::simd::avx(
                    #[inline(always)]
                    || {
                        for (d, v) in row.iter_mut().zip(src) {
                            *d += a * v;
                        }
                    },
                );
                s[0].add_products(row, row);
            }
        }
        Sum::reduce(self.comm, &mut s);
        self.seconds += t.elapsed().as_secs_f64();
        s[0].value()
    }

    /// Global sum of interior values of `a`.
    pub fn sum(&mut self, a: &Field) -> f64 {
        self.count += 1;
        let x = a.as_slice();
        if self.reproducible {
            let mut s = [ExactSum::new()];
            rows(a, |r| s[0].add_slice(&x[r]));
            exact_allreduce(self.comm, &mut s);
            return s[0].to_f64();
        }
        let mut s = 0.0;
        rows(a, |r| s += x[r].iter().sum::<f64>());
        self.comm.sum(s)
    }
}

/// `y = a·x + b·y` on interior cells.
fn axpby(a: f64, x: &Field, b: f64, y: &mut Field) {
    let xs = x.as_slice();
    let n = y.shape();
    for k in 0..n[2] {
        for j in 0..n[1] {
            let c = y.idx(0, j, k);
            let (src, dst) = (&xs[c..c + n[0]], &mut y.as_slice_mut()[c..c + n[0]]);
            crate::simd::avx(
                #[inline(always)]
                || {
                    for (d, s) in dst.iter_mut().zip(src) {
                        *d = a * s + b * *d;
                    }
                },
            );
        }
    }
}

/// `x += a·p`, then `p = z + b·p`, on interior cells in one pass.
fn update_xp(a: f64, x: &mut Field, z: &Field, b: f64, p: &mut Field) {
    let zs = z.as_slice();
    let n = p.shape();
    for k in 0..n[2] {
        for j in 0..n[1] {
            let c = p.idx(0, j, k);
            let (xr, pr, zr) = (&mut x.as_slice_mut()[c..c + n[0]], &mut p.as_slice_mut()[c..c + n[0]], &zs[c..c + n[0]]);
            crate::simd::avx(
                #[inline(always)]
                || {
                    for ((xv, pv), zv) in xr.iter_mut().zip(pr.iter_mut()).zip(zr) {
                        *xv += a * *pv;
                        *pv = zv + b * *pv;
                    }
                },
            );
        }
    }
}

/// `y = x` on interior cells (any ghost widths).
fn copy(x: &Field, y: &mut Field) {
    if x.padded_shape() == y.padded_shape() {
        axpby(1.0, x, 0.0, y);
    } else {
        y.interior_mut().assign(&x.interior());
    }
}

/// A linear solver for one operator on one layout: the multigrid hierarchy (whose
/// finest level is the operator) and the Krylov work vectors.
pub struct LinearSolver {
    /// The hierarchy; `levels[0]` is the operator being solved.
    pub mg: Multigrid,
    /// Options.
    pub opts: SolverOptions,
    work: Vec<Field>,
    /// Time and communication per Krylov phase (multigrid's own phases in `mg.log`).
    pub log: PhaseLog,
    /// Set by [`LinearSolver::solve`] while it runs: the initial guess is zero on every
    /// rank, so the initial residual is `b` itself.
    zero_guess: bool,
}

impl LinearSolver {
    /// A solver over `mg` with `opts`.
    pub fn new(mg: Multigrid, opts: SolverOptions) -> Self {
        let l0 = &mg.levels[0];
        // The method's vectors and, last, the right-hand side copy: no more than it uses.
        let vectors = match opts.method {
            Method::Cg => 4,
            Method::Cg1 => 5,
            Method::Fcg => 5,
            Method::BiCgStab => 7,
            Method::Mg => 2,
        };
        let work = (0..=vectors).map(|_| Field::zeros(l0.block(), l0.dims, l0.ghost)).collect();
        LinearSolver { mg, opts, work, log: PhaseLog::new(), zero_guess: false }
    }

    /// A zero field of the operator's shape (for right-hand sides and solutions).
    pub fn new_field(&self) -> Field {
        let l0 = &self.mg.levels[0];
        Field::zeros(l0.block(), l0.dims, l0.ghost)
    }

    /// `dst = A src` (ghosts of `src` exchanged, overlapped with the interior).
    pub fn apply(&mut self, comm: &dyn Comm, src: &mut Field, dst: &mut Field) {
        let m = Mark::now(comm);
        let lv = &mut self.mg.levels[0];
        std::mem::swap(&mut lv.t, src);
        std::mem::swap(&mut lv.r, dst);
        lv.apply_overlapped(comm, Slot::T, Slot::R);
        std::mem::swap(&mut lv.t, src);
        std::mem::swap(&mut lv.r, dst);
        self.log.add("operator apply", comm, m);
    }

    /// `dst = A src` and, in the same pass, `(src, dst)` globally.
    pub fn apply_dot(&mut self, comm: &dyn Comm, dots: &mut Dots, src: &mut Field, dst: &mut Field) -> f64 {
        let m = Mark::now(comm);
        let lv = &mut self.mg.levels[0];
        std::mem::swap(&mut lv.t, src);
        std::mem::swap(&mut lv.r, dst);
        let mut sum = [Sum::new(self.opts.reproducible)];
        let (pad, g) = (lv.t.padded_shape(), lv.t.ghost);
        lv.apply_overlapped_then(comm, Slot::T, Slot::R, |a, b, sp| {
            for k in sp.lo[2]..sp.hi[2] {
                for j in sp.lo[1]..sp.hi[1] {
                    let c = ((k + g[2]) * pad[1] + j + g[1]) * pad[0] + sp.lo[0] + g[0];
                    let w = sp.hi[0] - sp.lo[0];
                    sum[0].add_products(&a[c..c + w], &b[c..c + w]);
                }
            }
        });
        std::mem::swap(&mut lv.t, src);
        std::mem::swap(&mut lv.r, dst);
        self.log.add("operator apply", comm, m);
        dots.reduce(&mut sum)[0]
    }

    fn precondition(&mut self, comm: &dyn Comm, r: &mut Field, z: &mut Field) {
        let m = Mark::now(comm);
        self.precondition_inner(comm, r, z);
        self.log.add("preconditioner", comm, m);
    }

    fn precondition_inner(&mut self, comm: &dyn Comm, r: &mut Field, z: &mut Field) {
        match self.opts.precond {
            Precond::Mg => self.mg.precondition(comm, r, z),
            Precond::Jacobi => {
                let invd = &self.mg.levels[0].invd;
                let rs = r.as_slice();
                let n = z.shape();
                for k in 0..n[2] {
                    for j in 0..n[1] {
                        let c = z.idx(0, j, k);
                        for q in c..c + n[0] {
                            z.as_slice_mut()[q] = invd[q] * rs[q];
                        }
                    }
                }
            }
            Precond::None => copy(r, z),
        }
    }

    /// Solves `A x = b` from the initial guess in `x`. `b` is not modified (for singular
    /// operators its mean is removed from a copy).
    pub fn solve(&mut self, comm: &dyn Comm, b: &Field, x: &mut Field) -> SolveReport {
        let t0 = Instant::now();
        let stats0 = comm.stats();
        let mut dots = Dots::new(comm, self.opts.reproducible);
        let mut w = std::mem::take(&mut self.work);
        let last = w.len() - 1;
        let mut rhs = std::mem::replace(&mut w[last], Field::zeros(b.block, self.mg.levels[0].dims, 0));
        copy(b, &mut rhs);
        let mut projected = 0.0;
        if self.mg.singular {
            projected = self.remove_mean(&mut dots, &mut rhs);
        }
        // ‖b‖ and whether any rank's initial guess has a nonzero value, in one
        // reduction: a zero guess (what PETSc assumes unless told otherwise) makes the
        // initial residual b itself, without an operator application.
        let (bnorm, zero_guess) = {
            let t = Instant::now();
            let mut sums = [Sum::new(self.opts.reproducible), Sum::new(self.opts.reproducible)];
            let bs = rhs.as_slice();
            rows(&rhs, |r| sums[0].add_products(&bs[r.clone()], &bs[r]));
            let xs = x.as_slice();
            let mut nonzero = false;
            rows(x, |r| nonzero = nonzero || xs[r].iter().any(|&v| v != 0.0));
            sums[1].add_products(&[if nonzero { 1.0 } else { 0.0 }], &[1.0]);
            dots.seconds += t.elapsed().as_secs_f64();
            let v = dots.reduce(&mut sums);
            (v[0].sqrt(), v[1] == 0.0)
        };
        self.zero_guess = zero_guess;
        let mut report = match self.opts.method {
            Method::Cg => self.cg(comm, &mut dots, &rhs, x, &mut w, bnorm, false),
            Method::Cg1 => self.cg1(comm, &mut dots, &rhs, x, &mut w, bnorm),
            Method::Fcg => self.cg(comm, &mut dots, &rhs, x, &mut w, bnorm, true),
            Method::BiCgStab => self.bicgstab(comm, &mut dots, &rhs, x, &mut w, bnorm),
            Method::Mg => self.mg_iterate(comm, &mut dots, &rhs, x, &mut w, bnorm),
        };
        self.zero_guess = false;
        if self.mg.singular {
            self.remove_mean(&mut dots, x);
        }
        w[last] = rhs;
        self.work = w;
        report.rhs_norm = bnorm;
        report.projected_mean = projected;
        report.reductions = dots.count;
        let s = comm.stats();
        report.messages = s.messages - stats0.messages;
        report.bytes = s.bytes - stats0.bytes;
        report.seconds = t0.elapsed().as_secs_f64();
        let p = &mut self.log;
        p.add_seconds("dot products", dots.seconds);
        p.add_seconds("solve (total)", report.seconds);
        report
    }

    /// Every phase so far: the Krylov ones, then multigrid's (prefixed `mg `).
    pub fn phase_log(&self) -> PhaseLog {
        let mut l = self.log.clone();
        l.merge_prefixed("  mg: ", &self.mg.log);
        l
    }

    /// Removes the volume-weighted mean (the null space of a singular operator);
    /// returns the mean removed.
    fn remove_mean(&self, dots: &mut Dots, f: &mut Field) -> f64 {
        let total = dots.sum(f);
        let cells = self.mg.levels[0].global_cells() as f64;
        let mean = total / cells;
        let n = f.shape();
        for k in 0..n[2] {
            for j in 0..n[1] {
                let c = f.idx(0, j, k);
                for v in &mut f.as_slice_mut()[c..c + n[0]] {
                    *v -= mean;
                }
            }
        }
        mean
    }

    fn target(&self, bnorm: f64) -> f64 {
        (self.opts.rtol * bnorm).max(self.opts.atol)
    }

    /// `r = b - A x` at the start of a solve, and `‖r‖` when already known: with a zero
    /// guess on every rank `r = b` exactly (`b - A·0` is `b` bit for bit), so its norm
    /// is `bnorm`.
    fn initial_residual(&mut self, comm: &dyn Comm, b: &Field, x: &mut Field, r: &mut Field, bnorm: f64) -> Option<f64> {
        if self.zero_guess {
            copy(b, r);
            Some(bnorm)
        } else {
            self.residual(comm, b, x, r);
            None
        }
    }

    /// `r = b - A x`.
    fn residual(&mut self, comm: &dyn Comm, b: &Field, x: &mut Field, r: &mut Field) {
        self.apply(comm, x, r);
        axpby(1.0, b, -1.0, r);
    }

    fn finish(&self, mut rep: SolveReport, rnorm: f64, bnorm: f64, it: usize) -> SolveReport {
        rep.iterations = it;
        rep.final_residual = rnorm;
        if !rnorm.is_finite() {
            rep.reason = Reason::DivergedNan;
        } else if rnorm <= self.opts.atol {
            rep.reason = Reason::ConvergedAtol;
        } else if rnorm <= self.opts.rtol * bnorm {
            rep.reason = Reason::ConvergedRtol;
        } else if rep.reason == Reason::Running {
            rep.reason = Reason::MaxIterations;
        }
        rep
    }

    /// Preconditioned CG; with `flexible`, flexible CG (Notay 2000, the truncation to
    /// one previous direction): the Polak–Ribière `β = (r₊, z₊ - z) / (r, z)`, whose
    /// two dot products share one reduction. For a fixed symmetric preconditioner
    /// `(r₊, z) = 0` and it is CG; for a nonsymmetric one (a V(1,2) or F cycle) it
    /// stays convergent where CG's β would not. It keeps the previous z in `w[4]`.
    #[allow(clippy::too_many_arguments)]
    fn cg(
        &mut self,
        comm: &dyn Comm,
        dots: &mut Dots,
        b: &Field,
        x: &mut Field,
        w: &mut [Field],
        bnorm: f64,
        flexible: bool,
    ) -> SolveReport {
        let [r, z, p, q, rest @ ..] = w else { unreachable!() };
        let mut zold = if flexible { rest.first_mut() } else { None };
        let mut rep = SolveReport::new(if flexible { "fcg" } else { "cg" }, self.opts.precond);
        let known = self.initial_residual(comm, b, x, r, bnorm);
        let mut rnorm = known.unwrap_or_else(|| dots.dots(&[(r, r)])[0].sqrt());
        rep.push(rnorm, bnorm);
        let target = self.target(bnorm);
        if rnorm <= target || !rnorm.is_finite() {
            return self.finish(rep, rnorm, bnorm, 0);
        }
        self.precondition(comm, r, z);
        copy(z, p);
        let mut rz = dots.dots(&[(r, z)])[0];
        for it in 1..=self.opts.max_iterations {
            let pq = self.apply_dot(comm, dots, p, q);
            if pq <= 0.0 || !pq.is_finite() {
                rep.reason = if pq.is_finite() { Reason::Indefinite } else { Reason::DivergedNan };
                return self.finish(rep, rnorm, bnorm, it - 1);
            }
            let alpha = rz / pq;
            rnorm = dots.update_norm2(-alpha, q, r).sqrt();
            rep.push(rnorm, bnorm);
            if rnorm <= target || !rnorm.is_finite() {
                axpby(alpha, p, 1.0, x);
                return self.finish(rep, rnorm, bnorm, it);
            }
            if let Some(zo) = zold.as_deref_mut() {
                std::mem::swap(z, zo);
            }
            self.precondition(comm, r, z);
            let (rz_new, beta) = match zold.as_deref() {
                Some(zo) => {
                    let d = dots.dots(&[(r, z), (r, zo)]);
                    (d[0], (d[0] - d[1]) / rz)
                }
                None => {
                    let d = dots.dots(&[(r, z)])[0];
                    (d, d / rz)
                }
            };
            // x += α p with the p of this iteration, then the new p, in one pass.
            update_xp(alpha, x, z, beta, p);
            rz = rz_new;
        }
        let n = self.opts.max_iterations;
        self.finish(rep, rnorm, bnorm, n)
    }

    /// Chronopoulos–Gear CG: `γ = (r, u)`, `δ = (A u, u)` and `‖r‖²` in one reduction.
    fn cg1(&mut self, comm: &dyn Comm, dots: &mut Dots, b: &Field, x: &mut Field, w: &mut [Field], bnorm: f64) -> SolveReport {
        let [r, u, p, s, wv, ..] = w else { unreachable!() };
        let mut rep = SolveReport::new("cg1", self.opts.precond);
        let target = self.target(bnorm);
        self.initial_residual(comm, b, x, r, bnorm);
        self.precondition(comm, r, u);
        self.apply(comm, u, wv);
        let d = dots.dots(&[(r, u), (wv, u), (r, r)]);
        let (mut gamma, delta, mut rnorm) = (d[0], d[1], d[2].sqrt());
        rep.push(rnorm, bnorm);
        if rnorm <= target || !rnorm.is_finite() {
            return self.finish(rep, rnorm, bnorm, 0);
        }
        let mut alpha = gamma / delta;
        copy(u, p);
        copy(wv, s);
        for it in 1..=self.opts.max_iterations {
            axpby(alpha, p, 1.0, x);
            axpby(-alpha, s, 1.0, r);
            self.precondition(comm, r, u);
            self.apply(comm, u, wv);
            let d = dots.dots(&[(r, u), (wv, u), (r, r)]);
            let (g_new, delta) = (d[0], d[1]);
            rnorm = d[2].sqrt();
            rep.push(rnorm, bnorm);
            if rnorm <= target || !rnorm.is_finite() {
                return self.finish(rep, rnorm, bnorm, it);
            }
            let beta = g_new / gamma;
            let denom = delta - beta * g_new / alpha;
            if denom <= 0.0 || !denom.is_finite() {
                rep.reason = Reason::Indefinite;
                return self.finish(rep, rnorm, bnorm, it);
            }
            alpha = g_new / denom;
            gamma = g_new;
            axpby(1.0, u, beta, p);
            axpby(1.0, wv, beta, s);
        }
        let n = self.opts.max_iterations;
        self.finish(rep, rnorm, bnorm, n)
    }

    /// Right-preconditioned BiCGStab.
    fn bicgstab(&mut self, comm: &dyn Comm, dots: &mut Dots, b: &Field, x: &mut Field, w: &mut [Field], bnorm: f64) -> SolveReport {
        let [r, rhat, p, v, ph, sh, t, ..] = w else { unreachable!() };
        let mut rep = SolveReport::new("bicgstab", self.opts.precond);
        let target = self.target(bnorm);
        let known = self.initial_residual(comm, b, x, r, bnorm);
        let mut rnorm = known.unwrap_or_else(|| dots.dots(&[(r, r)])[0].sqrt());
        rep.push(rnorm, bnorm);
        if rnorm <= target || !rnorm.is_finite() {
            return self.finish(rep, rnorm, bnorm, 0);
        }
        copy(r, rhat);
        let (mut rho, mut alpha, mut omega) = (1.0, 1.0, 1.0);
        p.data.fill(0.0);
        v.data.fill(0.0);
        for it in 1..=self.opts.max_iterations {
            let rho_new = dots.dots(&[(rhat, r)])[0];
            if rho_new == 0.0 || !rho_new.is_finite() {
                rep.reason = Reason::Breakdown;
                return self.finish(rep, rnorm, bnorm, it - 1);
            }
            let beta = (rho_new / rho) * (alpha / omega);
            // p = r + β (p - ω v)
            axpby(-omega, v, 1.0, p);
            axpby(1.0, r, beta, p);
            self.precondition(comm, p, ph);
            self.apply(comm, ph, v);
            alpha = rho_new / dots.dots(&[(rhat, v)])[0];
            // s = r - α v, kept in r.
            axpby(-alpha, v, 1.0, r);
            axpby(alpha, ph, 1.0, x);
            let snorm = dots.dots(&[(r, r)])[0].sqrt();
            if snorm <= target || !snorm.is_finite() {
                rep.push(snorm, bnorm);
                return self.finish(rep, snorm, bnorm, it);
            }
            self.precondition(comm, r, sh);
            self.apply(comm, sh, t);
            let d = dots.dots(&[(t, r), (t, t)]);
            omega = d[0] / d[1];
            axpby(omega, sh, 1.0, x);
            axpby(-omega, t, 1.0, r);
            rnorm = dots.dots(&[(r, r)])[0].sqrt();
            rep.push(rnorm, bnorm);
            if rnorm <= target || !rnorm.is_finite() {
                return self.finish(rep, rnorm, bnorm, it);
            }
            if omega == 0.0 {
                rep.reason = Reason::Breakdown;
                return self.finish(rep, rnorm, bnorm, it);
            }
            rho = rho_new;
        }
        let n = self.opts.max_iterations;
        self.finish(rep, rnorm, bnorm, n)
    }

    /// Multigrid cycles alone: `x += M (b - A x)`.
    fn mg_iterate(&mut self, comm: &dyn Comm, dots: &mut Dots, b: &Field, x: &mut Field, w: &mut [Field], bnorm: f64) -> SolveReport {
        let [r, z, ..] = w else { unreachable!() };
        let mut rep = SolveReport::new("mg", self.opts.precond);
        let target = self.target(bnorm);
        let known = self.initial_residual(comm, b, x, r, bnorm);
        let mut rnorm = known.unwrap_or_else(|| dots.dots(&[(r, r)])[0].sqrt());
        rep.push(rnorm, bnorm);
        for it in 1..=self.opts.max_iterations {
            if rnorm <= target || !rnorm.is_finite() {
                return self.finish(rep, rnorm, bnorm, it - 1);
            }
            self.mg.precondition(comm, r, z);
            axpby(1.0, z, 1.0, x);
            self.residual(comm, b, x, r);
            rnorm = dots.dots(&[(r, r)])[0].sqrt();
            rep.push(rnorm, bnorm);
        }
        let n = self.opts.max_iterations;
        self.finish(rep, rnorm, bnorm, n)
    }
}
