//! Crank–Nicolson viscous term of the incompressible model (`numerics.viscous =
//! "crank_nicolson"`), after Le & Moin (1991): in stage k of the Runge–Kutta step the
//! advection and the force stay explicit and the viscous term is split evenly between
//! the start and the end of the stage,
//!
//! `(u* - u)/Δt = γ_k N_k + ζ_k N_{k-1} + α_k ν (L u + L u*) - c_k G p`, `α_k = c_k / 2`,
//!
//! solved in delta form for `δ = u* - u`:
//!
//! `(I - α_k Δt ν L) δ = Δt (γ_k N_k + ζ_k N_{k-1}) + c_k Δt (ν L u - G p)`.
//!
//! The old pressure gradient in the predictor makes this an incremental
//! pressure-correction scheme (van Kan 1986): at a steady state the right-hand side is
//! the steady residual, so δ = 0 and the projection changes nothing, whatever Δt and
//! however loosely the Helmholtz systems are solved. The projection that follows
//! still solves for the whole pressure, warm-started from the old one, with the
//! velocity `u* + c_k Δt G p` — the same as solving for the increment.
//!
//! `L` is the operator of the explicit viscous term, boundary ghosts included: a
//! wall's tangential ghost `(8U - 6u₁ + u₂)/3` is affine in u, so δ's ghost is
//! `(-6δ₁ + δ₂)/3`. At an outlet δ's normal face copies the adjacent one, the rule of
//! the intermediate velocity there (it takes the adjacent face's increment over the
//! stage); after the projection the outlet velocity follows from continuity. The row
//! next to a wall is not symmetric (δ₂ enters with 4/3); scaling it by 3/4
//! makes the whole system symmetric positive definite, so it is solved by conjugate
//! gradients on `W (I - α_k Δt ν L) δ = W b`, W = (3/4)^m with m the number of such
//! walls next to the face. The system is well conditioned (κ ≤ 1 + 8 α_k Δt ν Σ 1/h²):
//! a few iterations from the explicit guess δ₀ = b reach `numerics.viscous_rtol`.
//!
//! A wall's or an inlet's velocity that changes in time changes within a stage by ΔU
//! (from its start to its end): δ is then ΔU on given normal faces and its tangential
//! ghost `(8ΔU - 6δ₁ + δ₂)/3`. The parts that do not depend on δ are known and move to
//! the right-hand side (the lifting, [`FlowSolver::lift_boundary`]):
//! `β ΔU / h²` on the faces next to a given normal face and `β (8/3) ΔU / h²` on the
//! faces next to a wall's tangential ghost. Without them the implicit half would see
//! the stage-start boundary values, first order in time next to such boundaries.
use super::{face_rows, layer_offsets, FaceKind, FlowSolver, Values};
use crate::linsolve::krylov::Sum;
use decomp::{Comm, Field};

/// Work space and totals of the Crank–Nicolson solves.
#[derive(Debug)]
pub(super) struct Implicit {
    /// ν L u of the current stage, per axis.
    pub visc: Vec<Field>,
    /// Row weights W, per axis.
    w: Vec<Field>,
    /// Right-hand side, solution and the CG vectors.
    pub rhs: Field,
    pub x: Field,
    r: Field,
    p: Field,
    q: Field,
    rtol: f64,
    max_iterations: usize,
    /// Boundary values at the start and the end of a stage, for the lifting.
    lift: (Vec<f64>, Vec<f64>),
    reproducible: bool,
    /// Solves, Σ iterations, the largest count, and solves that missed the tolerance.
    pub solves: u64,
    pub iterations: u64,
    pub max_iterations_seen: usize,
    pub not_converged: u64,
}

impl Implicit {
    /// Work space for `s` (its faces set) with tolerance `rtol`.
    pub fn new(s: &FlowSolver, rtol: f64, reproducible: bool) -> Implicit {
        let zero = || Field::zeros(s.p.block, s.dims, 1);
        let w = (0..s.dims)
            .map(|d| {
                let mut w = zero();
                w.as_slice_mut().fill(1.0);
                for a in (0..s.dims).filter(|&a| a != d) {
                    for side in 0..2 {
                        if matches!(s.faces[a][side], FaceKind::Given(_)) {
                            let (_, _, inner) = s.layer(a, side);
                            scale_layer(&mut w, a, inner, 0.75);
                        }
                    }
                }
                w
            })
            .collect();
        Implicit {
            visc: (0..s.dims).map(|_| zero()).collect(),
            w,
            rhs: zero(),
            x: zero(),
            r: zero(),
            p: zero(),
            q: zero(),
            rtol,
            max_iterations: 200,
            lift: (Vec::new(), Vec::new()),
            reproducible,
            solves: 0,
            iterations: 0,
            max_iterations_seen: 0,
            not_converged: 0,
        }
    }
}

/// Multiplies the layer at padded index `q` along axis `a` of `f` by `s`.
fn scale_layer(f: &mut Field, a: usize, q: usize, s: f64) {
    let (p, st) = (f.padded_shape(), f.strides());
    let data = f.as_slice_mut();
    for o in layer_offsets(p, st, a) {
        data[q * st[a] + o] *= s;
    }
}

impl FlowSolver {
    /// The homogeneous boundary rules of δ (component `d`) on the physical faces: the
    /// linear part of what `fill_boundary` does to the velocity.
    fn delta_boundary(&self, d: usize, f: &mut Field) {
        let p = f.padded_shape();
        let st = f.strides();
        for pass in 0..2 {
            for a in 0..self.dims {
                for side in 0..2 {
                    let (slot, ghost, inner) = self.layer(a, side);
                    let (b, c) = Self::others(a);
                    let data = f.as_slice_mut();
                    let kind = &self.faces[a][side];
                    for qc in 0..p[c] {
                        for qb in 0..p[b] {
                            let base = qb * st[b] + qc * st[c];
                            match (kind, pass, a == d) {
                                (FaceKind::Given(_), 0, true) => {
                                    data[slot * st[a] + base] = 0.0;
                                    if side == 0 {
                                        data[(slot - 1) * st[a] + base] = 0.0;
                                    }
                                }
                                (FaceKind::Outlet(_), 0, true) => {
                                    let adj = if side == 0 { 2 } else { slot - 1 };
                                    let v = data[adj * st[a] + base];
                                    data[slot * st[a] + base] = v;
                                    if side == 0 {
                                        data[(slot - 1) * st[a] + base] = v;
                                    }
                                }
                                (FaceKind::Given(_), 1, false) => {
                                    let inner2 = if side == 0 { inner + 1 } else { inner - 1 };
                                    data[ghost * st[a] + base] = (-6.0 * data[inner * st[a] + base] + data[inner2 * st[a] + base]) / 3.0;
                                }
                                (FaceKind::Outlet(_), 1, false) => data[ghost * st[a] + base] = data[inner * st[a] + base],
                                _ => {}
                            }
                        }
                    }
                }
            }
        }
    }

    /// Adds to `imp.rhs` (component `d`) the lifting of the boundary velocities that
    /// change in time from `ts` to `te` (see the module notes): `β ΔU / h²` on the faces
    /// next to a given normal face of component `d`, `β (8/3) ΔU / h²` on the faces
    /// next to a given face's tangential ghost. Constant and fixed values add nothing.
    pub(super) fn lift_boundary(&self, imp: &mut Implicit, d: usize, beta: f64, ts: f64, te: f64) {
        let (v0, v1) = &mut imp.lift;
        let st = imp.rhs.strides();
        let p = imp.rhs.padded_shape();
        for a in 0..self.dims {
            for side in 0..2 {
                let FaceKind::Given(v) = &self.faces[a][side] else { continue };
                let Values::Timed(e) = &v[d] else { continue };
                self.eval_face(e, a, side, Some(d), ts, v0);
                self.eval_face(e, a, side, Some(d), te, v1);
                let (slot, _, inner) = self.layer(a, side);
                let h2 = self.h[a] * self.h[a];
                // The first updated face inside a normal boundary face, or the first cell
                // layer inside a tangential ghost.
                let (row, coef) =
                    if a == d { (if side == 0 { slot + 1 } else { slot - 1 }, beta / h2) } else { (inner, beta * 8.0 / (3.0 * h2)) };
                let rhs = imp.rhs.as_slice_mut();
                for (o, (u1, u0)) in layer_offsets(p, st, a).zip(v1.iter().zip(v0.iter())) {
                    rhs[row * st[a] + o] += coef * (u1 - u0);
                }
            }
        }
    }

    /// `q = W (p - β L p)` at the faces of component `d` this rank updates (the ghosts
    /// of `p` filled). `row(range, p, q)` is called on each finished row of faces (the
    /// callers fuse their reductions and updates into the same pass).
    fn helmholtz(
        &self,
        d: usize,
        beta: f64,
        w: &Field,
        p: &Field,
        q: &mut Field,
        mut row: impl FnMut(std::ops::Range<usize>, &[f64], &[f64]),
    ) {
        let st = p.strides();
        let bh2 = self.h.map(|h| beta / (h * h));
        let centre = 1.0 + (0..self.dims).map(|e| 2.0 * bh2[e]).sum::<f64>();
        let (ps, ws) = (p.as_slice(), w.as_slice());
        let qs = q.as_slice_mut();
        let three = self.dims == 3;
        face_rows(&self.p, d, self.first_face(d), |r| {
            // Shifted views of the row, so the loop is a plain vectorisable one.
            let (c0, n) = (r.start, r.len());
            let at = |o: usize| &ps[o..o + n];
            let (pc, xm, xp) = (at(c0), at(c0 - 1), at(c0 + 1));
            let (ym, yp) = (at(c0 - st[1]), at(c0 + st[1]));
            let (wr, qr) = (&ws[r.clone()], &mut qs[r.clone()]);
            if three {
                let (zm, zp) = (at(c0 - st[2]), at(c0 + st[2]));
                for i in 0..n {
                    let off = bh2[0] * (xm[i] + xp[i]) + bh2[1] * (ym[i] + yp[i]) + bh2[2] * (zm[i] + zp[i]);
                    qr[i] = wr[i] * (centre * pc[i] - off);
                }
            } else {
                for i in 0..n {
                    let off = bh2[0] * (xm[i] + xp[i]) + bh2[1] * (ym[i] + yp[i]);
                    qr[i] = wr[i] * (centre * pc[i] - off);
                }
            }
            row(r, pc, qr);
        });
    }

    /// Solves `(I - β L) δ = imp.rhs` for component `d` into `imp.x` by CG on the
    /// symmetrised system, starting from δ = rhs. Every vector operation runs over the
    /// updated faces only. The set-up is one pass (`r = W b - M b` with both norms,
    /// the ghosts of b filled in `imp.rhs` itself, which then becomes `x`: `imp.rhs`
    /// is left undefined), and each iteration two: `q = M p` with `p · q`, then the
    /// updates of x, r (with `r · r`) and p. Returns false if it missed the tolerance.
    pub(super) fn viscous_solve(&mut self, comm: &dyn Comm, imp: &mut Implicit, d: usize, beta: f64) -> bool {
        let Implicit { w, rhs, x, r, p, q, .. } = imp;
        let w = &w[d];
        let first = self.first_face(d);
        let rep = imp.reproducible;
        // b's ghosts and boundary rules, in place: they lie outside the updated faces.
        self.halo.exchange(comm, rhs);
        self.delta_boundary(d, rhs);
        // r = W b - M x with x = b, p = r, in the pass that computes M b; the scale of
        // the stopping test is ‖W b‖ (W b is held in r until r is formed).
        let (mut bb, mut rr) = (Sum::new(rep), Sum::new(rep));
        {
            let (rs, ps, ws) = (r.as_slice_mut(), p.as_slice_mut(), w.as_slice());
            self.helmholtz(d, beta, w, rhs, q, |c, br, qr| {
                let rr_ = &mut rs[c.clone()];
                for ((rv, wv), b) in rr_.iter_mut().zip(&ws[c.clone()]).zip(br) {
                    *rv = wv * b;
                }
                bb.add_products(rr_, rr_);
                for (rv, qv) in rr_.iter_mut().zip(qr) {
                    *rv -= qv;
                }
                rr.add_products(rr_, rr_);
                ps[c].copy_from_slice(rr_);
            });
        }
        std::mem::swap(x, rhs);
        let mut sums = [bb, rr];
        Sum::reduce(comm, &mut sums);
        let (bb, mut rr) = (sums[0].value(), sums[1].value());
        let tol2 = imp.rtol * imp.rtol * bb;
        let mut its = 0;
        let mut ok = rr <= tol2;
        // A non-finite right-hand side (a blowing-up run) stops at once; the run's
        // divergence check reports it.
        let finite = rr.is_finite() && bb.is_finite();
        while !ok && finite && its < imp.max_iterations {
            its += 1;
            self.halo.exchange(comm, p);
            self.delta_boundary(d, p);
            let mut pq = [Sum::new(rep)];
            self.helmholtz(d, beta, w, p, q, |_, pr, qr| pq[0].add_products(pr, qr));
            Sum::reduce(comm, &mut pq);
            let pq = pq[0].value();
            if !(pq > 0.0 && pq.is_finite()) {
                break;
            }
            let alpha = rr / pq;
            let mut rn = [Sum::new(rep)];
            {
                let (xs, rs, ps, qs) = (x.as_slice_mut(), r.as_slice_mut(), p.as_slice(), q.as_slice());
                face_rows(&self.p, d, first, |c| {
                    for (xv, pv) in xs[c.clone()].iter_mut().zip(&ps[c.clone()]) {
                        *xv += alpha * pv;
                    }
                    let rr_ = &mut rs[c.clone()];
                    for (rv, qv) in rr_.iter_mut().zip(&qs[c]) {
                        *rv -= alpha * qv;
                    }
                    rn[0].add_products(rr_, rr_);
                });
            }
            Sum::reduce(comm, &mut rn);
            let rr_new = rn[0].value();
            ok = rr_new <= tol2;
            let b = rr_new / rr;
            rr = rr_new;
            if !ok {
                let (ps, rs) = (p.as_slice_mut(), r.as_slice());
                face_rows(&self.p, d, first, |c| {
                    for (pv, rv) in ps[c.clone()].iter_mut().zip(&rs[c]) {
                        *pv = rv + b * *pv;
                    }
                });
            }
        }
        imp.solves += 1;
        imp.iterations += its as u64;
        imp.max_iterations_seen = imp.max_iterations_seen.max(its);
        if !ok {
            imp.not_converged += 1;
        }
        ok
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::each_face;
    use decomp::comm::SerialComm;

    fn solver_for(boundary: &str, viscous_rtol: f64) -> (SerialComm, FlowSolver) {
        let three = boundary.contains("zlo");
        let mesh = if three { "cells = [5, 4, 3]\nupper = [1.0, 0.8, 0.6]" } else { "cells = [7, 5]\nupper = [1.0, 0.8]" };
        let text = format!(
            "[case]\nname = \"t\"\nmodel = \"incompressible\"\n[mesh]\n{mesh}\n\
             [physics]\nviscosity = 0.1\n[boundary]\n{boundary}\n[numerics]\nviscous = \"crank_nicolson\"\n\
             viscous_rtol = {viscous_rtol}\n[control]\nmax_steps = 1\n"
        );
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("tessera-viscous-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("case.toml");
        std::fs::write(&path, text).unwrap();
        let case = crate::case::load(&path, &[]).unwrap();
        let comm = SerialComm::new();
        let layout = crate::run::layout_for(&case, 1).unwrap();
        let s = FlowSolver::new(&comm, &case, layout).unwrap();
        (comm, s)
    }

    const CAVITY: &str = "xlo = { type = \"wall\" }\nxhi = { type = \"wall\" }\nylo = { type = \"wall\" }\n\
                          yhi = { type = \"moving_wall\", velocity = [1.0, 0.0] }";
    const BOX: &str = "xlo = { type = \"wall\" }\nxhi = { type = \"wall\" }\nylo = { type = \"wall\" }\n\
                       yhi = { type = \"moving_wall\", velocity = [1.0, 0.0, 0.5] }\nzlo = { type = \"wall\" }\n\
                       zhi = { type = \"outlet\", pressure = 0 }";
    const CHANNEL: &str = "xlo = { type = \"inlet\", velocity = [\"4*y*(0.8-y)\", 0] }\nxhi = { type = \"outlet\", pressure = 0 }\n\
                           ylo = { type = \"wall\" }\nyhi = { type = \"wall\" }";

    /// A pseudo-random field on the faces component `d` updates, zero elsewhere.
    fn random(s: &FlowSolver, d: usize, seed: u64) -> Field {
        let mut f = Field::zeros(s.p.block, s.dims, 1);
        let mut x = seed;
        let data = f.as_slice_mut();
        each_face(&s.p, d, s.first_face(d), |c| {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            data[c] = (x >> 11) as f64 / (1u64 << 53) as f64 - 0.5;
        });
        f
    }

    fn apply(comm: &SerialComm, s: &mut FlowSolver, d: usize, beta: f64, x: &Field) -> Field {
        let imp = s.imp.take().unwrap();
        let mut p = x.clone();
        s.halo.exchange(comm, &mut p);
        s.delta_boundary(d, &mut p);
        let mut q = Field::zeros(s.p.block, s.dims, 1);
        s.helmholtz(d, beta, &imp.w[d], &p, &mut q, |_, _, _| {});
        s.imp = Some(imp);
        q
    }

    fn dot(a: &Field, b: &Field) -> f64 {
        a.as_slice().iter().zip(b.as_slice()).map(|(x, y)| x * y).sum()
    }

    /// The scaled system is what CG needs: symmetric and positive definite, on walls,
    /// a moving lid, an inlet and an outlet.
    #[test]
    fn symmetrised_helmholtz_is_symmetric_positive_definite() {
        for bc in [CAVITY, CHANNEL, BOX] {
            let (comm, mut s) = solver_for(bc, 1e-10);
            for d in 0..s.dims {
                for seed in 1..4 {
                    let (x, y) = (random(&s, d, seed), random(&s, d, seed + 10));
                    let (mx, my) = (apply(&comm, &mut s, d, 0.3, &x), apply(&comm, &mut s, d, 0.3, &y));
                    let (a, b) = (dot(&mx, &y), dot(&x, &my));
                    assert!((a - b).abs() <= 1e-12 * a.abs().max(1.0), "component {d}: <Mx,y> = {a}, <x,My> = {b}");
                    assert!(dot(&mx, &x) > 0.0);
                }
            }
        }
    }

    /// The solve inverts `I - β L` with the explicit term's own `L`: applying the
    /// explicit viscous operator to the answer gives back the right-hand side.
    #[test]
    fn solve_inverts_the_explicit_viscous_operator() {
        for bc in [CAVITY, CHANNEL] {
            let (comm, mut s) = solver_for(bc, 1e-12);
            let beta = 0.02;
            for d in 0..2 {
                let mut imp = s.imp.take().unwrap();
                imp.rhs = random(&s, d, 7);
                let b = imp.rhs.clone();
                assert!(s.viscous_solve(&comm, &mut imp, d, beta));
                let x = imp.x.clone();
                s.imp = Some(imp);
                // L x through the velocity path: ghosts as fill_boundary sets them for a
                // field whose boundary values are zero.
                let mut p = x.clone();
                s.halo.exchange(&comm, &mut p);
                s.delta_boundary(d, &mut p);
                let st = p.strides();
                let ih2 = s.h.map(|h| 1.0 / (h * h));
                let ps = p.as_slice();
                let mut worst = 0.0f64;
                each_face(&s.p, d, s.first_face(d), |c| {
                    let lap: f64 = (0..2).map(|e| ih2[e] * (ps[c + st[e]] - 2.0 * ps[c] + ps[c - st[e]])).sum();
                    worst = worst.max((ps[c] - beta * lap - b.as_slice()[c]).abs());
                });
                assert!(worst < 1e-10, "component {d}: residual {worst}");
            }
        }
    }

    #[test]
    fn junk_outside_updated_faces_is_ignored() {
        for bc in [CAVITY, CHANNEL] {
            let (comm, mut s) = solver_for(bc, 1e-10);
            for d in 0..2 {
                let x = random(&s, d, 3);
                let mut xj = x.clone();
                for (i, v) in xj.as_slice_mut().iter_mut().enumerate() {
                    if *v == 0.0 {
                        *v = (i as f64).sin() * 100.0;
                    }
                }
                let (a, b) = (apply(&comm, &mut s, d, 0.3, &x), apply(&comm, &mut s, d, 0.3, &xj));
                let diff: f64 = a.as_slice().iter().zip(b.as_slice()).map(|(p, q)| (p - q).abs()).fold(0.0, f64::max);
                assert!(diff == 0.0, "bc {} d {d}: diff {diff}", bc.len());
            }
        }
    }
}
