//! One level of the multigrid hierarchy: its block of a (possibly non-uniform)
//! tensor-product grid, the matrix-free operator `A u = α u - ∇·(k ∇u)` (the
//! diffusion part scaled by β), smoothers and the grid transfers to the next level.
//!
//! Homogeneous physical boundary conditions are folded into the 1D coefficients
//! (no ghost fill is ever needed for them); ghosts are only filled by halo exchange
//! across rank boundaries and periodic faces.
use super::axis::Axis;
use decomp::{BlockLayout, Comm, Field, Grid, HaloPlan, IndexBox, Stencil};

/// 1D operator coefficients of the local cells of one axis, β folded in.
#[derive(Clone, Debug, Default)]
struct Coefs {
    ow: Vec<f64>,
    oe: Vec<f64>,
    dw: Vec<f64>,
    de: Vec<f64>,
    /// `dw + de`.
    dg: Vec<f64>,
}

/// A sub-box of local cells `[lo, hi)` per axis.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Span {
    /// First local cell per axis.
    pub lo: [usize; 3],
    /// One past the last per axis.
    pub hi: [usize; 3],
}

/// Which field of a level an operation reads or writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Slot {
    /// The unknown (solution or correction).
    U,
    /// The right-hand side.
    F,
    /// The residual.
    R,
    /// Scratch.
    T,
}

/// One multigrid level on one rank.
pub struct Level {
    /// 2 or 3.
    pub dims: usize,
    /// Global geometry per axis (z is one Neumann cell in 2D).
    pub axes: [Axis; 3],
    /// The block layout of this level (one block when replicated).
    pub layout: BlockLayout,
    /// This rank's index in `layout`.
    pub rank: usize,
    /// Every rank holds the whole level (coarse levels agglomerated).
    pub replicated: bool,
    /// Ghost width of the level's fields (2 when restriction reads two layers).
    pub ghost: usize,
    /// Mass coefficient α.
    pub alpha: f64,
    coefs: [Coefs; 3],
    /// Face coefficients (β-free): `kf[a][c]` on the lower face along `a` of padded cell `c`.
    kf: Option<[Vec<f64>; 3]>,
    /// Inverse diagonal over padded storage.
    pub invd: Vec<f64>,
    /// Unknown.
    pub u: Field,
    /// Right-hand side.
    pub f: Field,
    /// Residual.
    pub r: Field,
    /// Scratch (Chebyshev direction).
    pub t: Field,
    star: HaloPlan,
    box1: HaloPlan,
    /// Two layers, corners included, when the ghost width allows (cubic prolongation).
    box2: Option<HaloPlan>,
    boxg: HaloPlan,
    /// Largest eigenvalue bound of D⁻¹A (Gershgorin), for Chebyshev.
    pub lambda_max: f64,
    /// Local x range whose 1D coefficients are bitwise equal (uniform cells away
    /// from physical faces): there a row's diagonal is one number.
    xuni: (usize, usize),
    /// Faces of this block (`[axis][side]`) whose ghosts come from an exchange (a
    /// neighbour rank or a periodic image); the others lie on physical faces.
    open: [[bool; 2]; 3],
}

/// Face coefficient between cells of widths `wl`, `wr` and coefficients `kl`, `kr`
/// in the form `k_f (u_r - u_l) / d` with `d` the centre distance: harmonic in the
/// resistances `w / 2k`.
#[inline]
pub fn face_coefficient(wl: f64, kl: f64, wr: f64, kr: f64) -> f64 {
    (wl + wr) / (wl / kl + wr / kr)
}

impl Level {
    /// A level over `axes` split by `layout` (`rank`'s block), with mass term `alpha`,
    /// diffusion scale `beta` and optional cell coefficients `kc` (this block, ghosts
    /// filled by the caller, physical-face ghosts mirroring the boundary cell).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        dims: usize,
        axes: [Axis; 3],
        layout: BlockLayout,
        rank: usize,
        replicated: bool,
        ghost: usize,
        alpha: f64,
        beta: f64,
        kc: Option<&Field>,
        tag: i32,
    ) -> decomp::Result<Level> {
        let block = layout.blocks[rank];
        let mk = || Field::zeros(block, dims, ghost);
        let (u, f, r, t) = (mk(), mk(), mk(), mk());
        let mut coefs: [Coefs; 3] = Default::default();
        for a in 0..3 {
            let c = &mut coefs[a];
            for gi in block.lo[a]..block.hi[a] {
                let c1 = if a < dims { axes[a].coef(gi) } else { Default::default() };
                c.ow.push(beta * c1.ow);
                c.oe.push(beta * c1.oe);
                c.dw.push(beta * c1.dw);
                c.de.push(beta * c1.de);
                c.dg.push(beta * (c1.dw + c1.de));
            }
        }
        let kf = kc.map(|kc| {
            let p = u.padded_shape();
            let s = u.strides();
            let g = u.ghost;
            let n = block.shape();
            let mut kf: [Vec<f64>; 3] = std::array::from_fn(|_| decomp::field::zeroed_storage(u.as_slice().len()));
            let kcs = kc.as_slice();
            assert_eq!(kc.padded_shape(), p, "coefficient field must match the level's storage");
            for (a, kfa) in kf.iter_mut().enumerate().take(dims) {
                // Lower faces of cells 0..=n along a (the last is the upper face of n-1),
                // over the interior range of the other axes.
                for k in 0..n[2] + usize::from(a == 2) {
                    for j in 0..n[1] + usize::from(a == 1) {
                        for i in 0..n[0] + usize::from(a == 0) {
                            let l = [i, j, k];
                            let c = (k + g[2]) * s[2] + (j + g[1]) * s[1] + i + g[0];
                            let gl = block.lo[a] as isize + l[a] as isize;
                            let wr = axes[a].width_ext(gl);
                            let wl = axes[a].width_ext(gl - 1);
                            kfa[c] = face_coefficient(wl, kcs[c - s[a]], wr, kcs[c]);
                        }
                    }
                }
            }
            kf
        });
        let star = HaloPlan::with_width(&layout, rank, ghost, 1, Stencil::Star, tag)?;
        let box1 = HaloPlan::with_width(&layout, rank, ghost, 1, Stencil::Box, tag + 32)?;
        let boxg = HaloPlan::with_width(&layout, rank, ghost, ghost, Stencil::Box, tag + 64)?;
        let box2 = if ghost >= 2 { Some(HaloPlan::with_width(&layout, rank, ghost, 2, Stencil::Box, tag + 96)?) } else { None };
        let mut lv = Level {
            dims,
            axes,
            layout,
            rank,
            replicated,
            ghost,
            alpha,
            coefs,
            kf,
            invd: decomp::field::zeroed_storage(u.as_slice().len()),
            u,
            f,
            r,
            t,
            star,
            box1,
            box2,
            boxg,
            lambda_max: 2.0,
            xuni: (0, 0),
            open: [[false; 2]; 3],
        };
        for a in 0..dims {
            let per = lv.axes[a].periodic();
            lv.open[a] = [per || block.lo[a] > 0, per || block.hi[a] < lv.axes[a].n()];
        }
        lv.xuni = uniform_run(&lv.coefs[0]);
        lv.compute_diagonal();
        Ok(lv)
    }

    /// Replaces the coefficient on this rank's physical boundary faces by
    /// `k(axis, side, local cell)` (the exact face value, rather than the boundary
    /// cell's, keeps variable-coefficient problems second order at the boundary).
    /// Only for variable coefficients; recomputes the diagonal.
    pub fn set_boundary_faces(&mut self, k: impl Fn(usize, usize, [usize; 3]) -> f64) {
        let Some(kf) = self.kf.as_mut() else { return };
        let b = self.u.block;
        let n = b.shape();
        let s = self.u.strides();
        for a in 0..self.dims {
            if self.axes[a].periodic() {
                continue;
            }
            for side in 0..2 {
                let at_face = if side == 0 { b.lo[a] == 0 } else { b.hi[a] == self.axes[a].n() };
                if !at_face {
                    continue;
                }
                let layer = if side == 0 { 0 } else { n[a] - 1 };
                let u = &self.u;
                decomp::grid::for_each_in_layer(n, a, layer, |l| {
                    let c = u.idx(l[0], l[1], l[2]) + if side == 1 { s[a] } else { 0 };
                    kf[a][c] = k(a, side, l);
                });
            }
        }
        self.compute_diagonal();
    }

    /// Changes the mass coefficient α (a new time step) and recomputes the diagonal.
    pub fn set_alpha(&mut self, alpha: f64) {
        self.alpha = alpha;
        self.compute_diagonal();
    }

    /// This rank's block.
    pub fn block(&self) -> IndexBox {
        self.u.block
    }

    /// Local extent.
    pub fn shape(&self) -> [usize; 3] {
        self.u.shape()
    }

    /// All local cells.
    pub fn all(&self) -> Span {
        Span { lo: [0; 3], hi: self.shape() }
    }

    /// Number of cells on every rank together.
    pub fn global_cells(&self) -> usize {
        self.axes.iter().take(self.dims).map(|a| a.n()).product()
    }

    /// Cell volume of local cell `(i, j, k)`.
    pub fn volume(&self, i: usize, j: usize, k: usize) -> f64 {
        let b = self.block();
        let l = [i, j, k];
        (0..self.dims).map(|a| self.axes[a].widths[b.lo[a] + l[a]]).product()
    }

    /// The grid this level discretises (cells and bounds; widths may be non-uniform).
    pub fn grid(&self) -> &Grid {
        &self.layout.grid
    }

    fn compute_diagonal(&mut self) {
        let n = self.shape();
        let mut lmax: f64 = 0.0;
        for k in 0..n[2] {
            for j in 0..n[1] {
                for i in 0..n[0] {
                    let c = self.u.idx(i, j, k);
                    let (d, off) = self.diag_offsum(c, [i, j, k]);
                    self.invd[c] = 1.0 / d;
                    lmax = lmax.max(1.0 + off / d);
                }
            }
        }
        self.lambda_max = lmax;
    }

    /// Diagonal and sum of |off-diagonals| of the row of cell `c` (local `l`).
    fn diag_offsum(&self, c: usize, l: [usize; 3]) -> (f64, f64) {
        let s = self.u.strides();
        let mut d = self.alpha;
        let mut off = 0.0;
        for a in 0..self.dims {
            let cf = &self.coefs[a];
            let (kw, ke) = match &self.kf {
                Some(kf) => (kf[a][c], kf[a][c + s[a]]),
                None => (1.0, 1.0),
            };
            d += cf.dw[l[a]] * kw + cf.de[l[a]] * ke;
            off += cf.ow[l[a]] * kw + cf.oe[l[a]] * ke;
        }
        (d, off)
    }

    /// Fills `slot`'s ghosts across rank boundaries and periodic faces (width 1, faces
    /// only). Blocking, so faces that are one contiguous run of storage (a 2D block's
    /// y faces) go straight from and into the field, without the split phase's copies.
    pub fn exchange(&mut self, comm: &dyn Comm, slot: Slot) {
        let (star, field) = self.star_and(slot);
        star.exchange(comm, field);
    }

    /// Starts a face exchange of `slot` (finish with [`Level::finish_exchange`]).
    pub fn begin_exchange(&mut self, comm: &dyn Comm, slot: Slot) {
        let (star, field) = self.star_and(slot);
        star.begin(comm, field);
    }

    /// Completes the exchange started by [`Level::begin_exchange`].
    pub fn finish_exchange(&mut self, comm: &dyn Comm, slot: Slot) {
        let (star, field) = self.star_and(slot);
        star.finish(comm, field);
    }

    /// The face-exchange plan and the field in `slot`, borrowed together.
    fn star_and(&mut self, slot: Slot) -> (&mut HaloPlan, &mut Field) {
        let field = match slot {
            Slot::U => &mut self.u,
            Slot::F => &mut self.f,
            Slot::R => &mut self.r,
            Slot::T => &mut self.t,
        };
        (&mut self.star, field)
    }

    /// Fills every ghost layer of the residual, corners included (restriction reads them).
    pub fn exchange_residual_full(&mut self, comm: &dyn Comm) {
        self.boxg.exchange(comm, &mut self.r);
    }

    /// Fills the first `width` (1 or 2) ghost layers of `u`, corners included
    /// (prolongation reads them).
    pub fn exchange_u_box(&mut self, comm: &dyn Comm, width: usize) {
        match self.box2.as_mut() {
            Some(plan) if width == 2 => plan.exchange(comm, &mut self.u),
            _ => {
                // One ghost layer is only enough where no face is open (nothing is
                // read across a physical face: it folds onto the cells it mirrors).
                assert!(width == 1 || self.closed(), "{width} ghost layers needed");
                self.box1.exchange(comm, &mut self.u)
            }
        }
    }

    /// `out = A·src` (or `out = rhs - A·src` when `residual`) on `span`, reading
    /// `src`'s ghosts as they are.
    pub fn apply_span(&self, src: &[f64], rhs: Option<&[f64]>, out: &mut [f64], span: Span) {
        self.apply_span_at(src, rhs, out, 0, span)
    }

    /// [`Level::apply_span`] writing cell `c` (storage index) to `out[c - base]`.
    fn apply_span_at(&self, src: &[f64], rhs: Option<&[f64]>, out: &mut [f64], base: usize, span: Span) {
        crate::simd::avx(
            #[inline(always)]
            || match (self.dims == 3, self.kf.is_some()) {
                (false, false) => self.apply_kernel::<false, false>(src, rhs, out, base, span),
                (false, true) => self.apply_kernel::<false, true>(src, rhs, out, base, span),
                (true, false) => self.apply_kernel::<true, false>(src, rhs, out, base, span),
                (true, true) => self.apply_kernel::<true, true>(src, rhs, out, base, span),
            },
        )
    }

    /// `r = f - A u` on the layers (as deep as `r`'s ghost width) along every open
    /// face: the cells a full exchange of `r` sends. Reads `u`'s ghosts as they are.
    pub fn residual_open_layers(&mut self) {
        let n = self.shape();
        let w = self.r.ghost;
        let mut r = std::mem::take(&mut self.r.data);
        {
            let u = self.u.data.as_slice().expect("contiguous");
            let f = self.f.data.as_slice().expect("contiguous");
            let out = r.as_slice_mut().expect("contiguous");
            for a in 0..self.dims {
                for side in 0..2 {
                    if !self.open[a][side] {
                        continue;
                    }
                    let mut sp = self.all();
                    if side == 0 {
                        sp.hi[a] = w[a].min(n[a]);
                    } else {
                        sp.lo[a] = n[a].saturating_sub(w[a]);
                    }
                    self.apply_span(u, Some(f), out, sp);
                }
            }
        }
        self.r.data = r;
    }

    /// `out = f - A u` on the local cells of slab `t` of the last axis (row `t` in 2D,
    /// plane `t` in 3D); `out` is one padded slab, indexed as the field's slab.
    /// Reads `u`'s ghosts as they are.
    pub fn residual_slab(&self, t: usize, out: &mut [f64]) {
        let ta = self.dims - 1;
        let p = self.u.padded_shape();
        let g = self.u.ghost;
        let base = if ta == 2 { (t + g[2]) * p[1] * p[0] } else { (t + g[1]) * p[0] };
        let mut span = self.all();
        (span.lo[ta], span.hi[ta]) = (t, t + 1);
        let u = self.u.data.as_slice().expect("contiguous");
        let f = self.f.data.as_slice().expect("contiguous");
        self.apply_span_at(u, Some(f), out, base, span);
    }

    #[inline(always)]
    fn apply_kernel<const D3: bool, const VAR: bool>(&self, u: &[f64], rhs: Option<&[f64]>, out: &mut [f64], base: usize, span: Span) {
        let s = self.u.strides();
        let (cx, cy, cz) = (&self.coefs[0], &self.coefs[1], &self.coefs[2]);
        let (lo, hi) = (span.lo[0], span.hi[0]);
        if hi <= lo {
            return;
        }
        let nrow = hi - lo;
        let empty: [f64; 0] = [];
        for k in span.lo[2]..span.hi[2] {
            for j in span.lo[1]..span.hi[1] {
                let c0 = self.u.idx(lo, j, k);
                let um = &u[c0 - 1..c0 + nrow + 1];
                let us = &u[c0 - s[1]..c0 - s[1] + nrow];
                let un = &u[c0 + s[1]..c0 + s[1] + nrow];
                let (ub, ut) =
                    if D3 { (&u[c0 - s[2]..c0 - s[2] + nrow], &u[c0 + s[2]..c0 + s[2] + nrow]) } else { (&empty[..], &empty[..]) };
                let (owx, oex, dwx, dex, dgx) = (&cx.ow[lo..hi], &cx.oe[lo..hi], &cx.dw[lo..hi], &cx.de[lo..hi], &cx.dg[lo..hi]);
                let (owy, oey, dwy, dey) = (cy.ow[j], cy.oe[j], cy.dw[j], cy.de[j]);
                let (owz, oez, dwz, dez) = if D3 { (cz.ow[k], cz.oe[k], cz.dw[k], cz.de[k]) } else { (0.0, 0.0, 0.0, 0.0) };
                let dyz = self.alpha + if VAR { 0.0 } else { cy.dg[j] + if D3 { cz.dg[k] } else { 0.0 } };
                let row = &mut out[c0 - base..c0 - base + nrow];
                let rr = rhs.map(|r| &r[c0..c0 + nrow]);
                if VAR {
                    let kf = self.kf.as_ref().expect("variable coefficients");
                    let kx = &kf[0][c0..c0 + nrow + 1];
                    let kys = &kf[1][c0..c0 + nrow];
                    let kyn = &kf[1][c0 + s[1]..c0 + s[1] + nrow];
                    let (kzb, kzt) =
                        if D3 { (&kf[2][c0..c0 + nrow], &kf[2][c0 + s[2]..c0 + s[2] + nrow]) } else { (&empty[..], &empty[..]) };
                    for i in 0..nrow {
                        let mut d = dyz + dwx[i] * kx[i] + dex[i] * kx[i + 1] + dwy * kys[i] + dey * kyn[i];
                        let mut o = owx[i] * kx[i] * um[i] + oex[i] * kx[i + 1] * um[i + 2] + owy * kys[i] * us[i] + oey * kyn[i] * un[i];
                        if D3 {
                            d += dwz * kzb[i] + dez * kzt[i];
                            o += owz * kzb[i] * ub[i] + oez * kzt[i] * ut[i];
                        }
                        let au = d * um[i + 1] - o;
                        row[i] = match rr {
                            Some(r) => r[i] - au,
                            None => au,
                        };
                    }
                } else {
                    for i in 0..nrow {
                        let mut o = owx[i] * um[i] + oex[i] * um[i + 2] + owy * us[i] + oey * un[i];
                        if D3 {
                            o += owz * ub[i] + oez * ut[i];
                        }
                        let au = (dyz + dgx[i]) * um[i + 1] - o;
                        row[i] = match rr {
                            Some(r) => r[i] - au,
                            None => au,
                        };
                    }
                }
            }
        }
    }

    /// One Gauss–Seidel half sweep over the cells of colour `colour` (parity of the
    /// global `i + j + k`): `u ← D⁻¹ (f + off-diagonal part · u)`. Needs `u`'s ghosts.
    #[cfg(test)]
    pub(crate) fn gs_colour(&mut self, colour: usize) {
        let all = self.all();
        self.gs_span(colour, all);
    }

    /// [`Level::gs_colour`] restricted to the cells of `span`.
    pub fn gs_span(&mut self, colour: usize, span: Span) {
        crate::simd::avx(
            #[inline(always)]
            || match (self.dims == 3, self.kf.is_some()) {
                (false, false) => self.gs_kernel::<false, false>(colour, span),
                (false, true) => self.gs_kernel::<false, true>(colour, span),
                (true, false) => self.gs_kernel::<true, false>(colour, span),
                (true, true) => self.gs_kernel::<true, true>(colour, span),
            },
        )
    }

    #[inline(always)]
    fn gs_kernel<const D3: bool, const VAR: bool>(&mut self, colour: usize, span: Span) {
        if (0..3).any(|a| span.hi[a] <= span.lo[a]) {
            return;
        }
        let s = self.u.strides();
        let b = self.block();
        let (cx, cy, cz) = (&self.coefs[0], &self.coefs[1], &self.coefs[2]);
        let f = self.f.data.as_slice().expect("contiguous");
        let invd = &self.invd[..];
        let kf = self.kf.as_ref();
        let (g, p) = (self.u.ghost, self.u.padded_shape());
        let u = self.u.data.as_slice_mut().expect("contiguous");
        let (owx, oex) = (&cx.ow[..], &cx.oe[..]);
        for k in span.lo[2]..span.hi[2] {
            for j in span.lo[1]..span.hi[1] {
                // First i in the span whose global i + j + k has parity `colour`.
                let start = span.lo[0] + ((colour + b.lo[0] + span.lo[0] + b.lo[1] + j + b.lo[2] + k) & 1);
                let c0 = ((k + g[2]) * p[1] + j + g[1]) * p[0] + g[0];
                let (owy, oey) = (cy.ow[j], cy.oe[j]);
                let (owz, oez) = if D3 { (cz.ow[k], cz.oe[k]) } else { (0.0, 0.0) };
                let mut i = start;
                if !VAR {
                    // Uniform stretch: one diagonal per row, scalar coefficients; the
                    // same arithmetic as below, without the inverse-diagonal stream.
                    let (u0, u1) = (self.xuni.0.max(span.lo[0]), self.xuni.1.min(span.hi[0]));
                    while i < u0 && i < span.hi[0] {
                        let c = c0 + i;
                        let mut o = (owx[i] * u[c - 1] + oex[i] * u[c + 1]) + (owy * u[c - s[1]] + oey * u[c + s[1]]);
                        if D3 {
                            o += owz * u[c - s[2]] + oez * u[c + s[2]];
                        }
                        u[c] = (f[c] + o) * invd[c];
                        i += 2;
                    }
                    if i < u1 {
                        // The row's one inverse diagonal, formed as `compute_diagonal` forms
                        // it (same operations, same order, so bitwise equal) instead of
                        // loaded: that load would touch a new cache line every row.
                        let mut d = self.alpha + (cx.dw[i] + cx.de[i]);
                        d += cy.dw[j] + cy.de[j];
                        if D3 {
                            d += cz.dw[k] + cz.de[k];
                        }
                        let inv = 1.0 / d;
                        debug_assert_eq!(inv.to_bits(), invd[c0 + i].to_bits());
                        let (ow, oe) = (owx[i], oex[i]);
                        // Every index below lies in [c0 + i - reach, c0 + u1 + reach): check
                        // that range once instead of each access.
                        let reach = if D3 { s[2] } else { s[1] };
                        assert!(c0 + i >= reach && c0 + u1 + reach <= u.len() && c0 + u1 <= f.len());
                        let up = u.as_mut_ptr();
                        // SAFETY (both closures' callers): c - reach >= 0 and c + reach <
                        // u.len() by the assert above (c < c0 + u1), and s[1] <= reach; f
                        // has the same length as u.
                        let new = |c: usize| unsafe {
                            let mut o = (ow * *up.add(c - 1) + oe * *up.add(c + 1)) + (owy * *up.add(c - s[1]) + oey * *up.add(c + s[1]));
                            if D3 {
                                o += owz * *up.add(c - s[2]) + oez * *up.add(c + s[2]);
                            }
                            (*f.get_unchecked(c) + o) * inv
                        };
                        #[cfg(target_arch = "x86_64")]
                        if std::arch::is_x86_feature_detected!("avx") {
                            let w6 = [ow, oe, owy, oey, owz, oez];
                            // SAFETY: AVX is present; the cells it reads and writes lie in
                            // [c0 + i - reach, c0 + u1 + reach) (see `rb_quads`), checked above.
                            i = unsafe { rb_quads::<D3>(up, f.as_ptr(), c0 + i, c0 + u1, s[1], s[2], w6, inv) } - c0;
                        }
                        // Two cells per step, both read before either is written: the
                        // compiler cannot tell that the strided stores never meet the
                        // loads (they are of the other colour), and this order lets it
                        // pair the two updates in SIMD registers anyway.
                        while i + 2 < u1 {
                            let c = c0 + i;
                            let (a, b) = (new(c), new(c + 2));
                            unsafe {
                                *up.add(c) = a;
                                *up.add(c + 2) = b;
                            }
                            i += 4;
                        }
                        if i < u1 {
                            let c = c0 + i;
                            let a = new(c);
                            unsafe { *up.add(c) = a };
                            i += 2;
                        }
                    }
                }
                while i < span.hi[0] {
                    let c = c0 + i;
                    let o = if VAR {
                        let kf = kf.expect("variable coefficients");
                        let mut o = owx[i] * kf[0][c] * u[c - 1]
                            + oex[i] * kf[0][c + 1] * u[c + 1]
                            + owy * kf[1][c] * u[c - s[1]]
                            + oey * kf[1][c + s[1]] * u[c + s[1]];
                        if D3 {
                            o += owz * kf[2][c] * u[c - s[2]] + oez * kf[2][c + s[2]] * u[c + s[2]];
                        }
                        o
                    } else {
                        let mut o = (owx[i] * u[c - 1] + oex[i] * u[c + 1]) + (owy * u[c - s[1]] + oey * u[c + s[1]]);
                        if D3 {
                            o += owz * u[c - s[2]] + oez * u[c + s[2]];
                        }
                        o
                    };
                    u[c] = (f[c] + o) * invd[c];
                    i += 2;
                }
            }
        }
    }

    /// One red-black sweep (`first` colour, then the other) in a single pass over
    /// memory: the second colour trails the first by one row (2D) or plane (3D), so
    /// every update sees exactly the values the two separate half sweeps would give;
    /// cells whose stencil reads ghosts get their second-colour update after the
    /// exchange of the first colour's new values. Bit-identical to two half sweeps
    /// with an exchange in between, for any decomposition.
    pub fn gs_fused(&mut self, comm: &dyn Comm, first: usize, exchange_first: bool) {
        self.gs_fused_from(comm, first, exchange_first, false)
    }

    /// The first colour of a fused sweep from `u = 0`, whatever `u` holds: the first
    /// colour's cells get `D⁻¹ f`, the others 0 (no read of `u`, so no zero fill).
    fn gs_zero_rows(&mut self, colour: usize, span: Span) {
        let b = self.block();
        let (g, p) = (self.u.ghost, self.u.padded_shape());
        let f = self.f.data.as_slice().expect("contiguous");
        let invd = &self.invd[..];
        let u = self.u.data.as_slice_mut().expect("contiguous");
        for k in span.lo[2]..span.hi[2] {
            for j in span.lo[1]..span.hi[1] {
                let c0 = ((k + g[2]) * p[1] + j + g[1]) * p[0] + g[0];
                let first = (colour + b.lo[0] + b.lo[1] + j + b.lo[2] + k) & 1;
                for i in span.lo[0]..span.hi[0] {
                    let c = c0 + i;
                    // (f + 0) D⁻¹: the arithmetic of a sweep over zero neighbours.
                    u[c] = if (i & 1) == first { (f[c] + 0.0) * invd[c] } else { 0.0 };
                }
            }
        }
    }

    /// [`Level::gs_fused`]; `from_zero`: `u` is taken as zero (ghosts included) and
    /// is not read or cleared first.
    pub fn gs_fused_from(&mut self, comm: &dyn Comm, first: usize, exchange_first: bool, from_zero: bool) {
        if exchange_first && !from_zero {
            self.exchange(comm, Slot::U);
        }
        let n = self.shape();
        let second = 1 - first;
        // Cells of the second colour that read no exchanged ghost.
        let (inner, shell) = split_spans(n, self.dims, self.open);
        let first_pass = |lv: &mut Level, sp: Span| {
            if from_zero {
                lv.gs_zero_rows(first, sp);
            } else {
                lv.gs_span(first, sp);
            }
        };
        // Slab by slab along the last axis (planes in 3D, rows in 2D): after the first
        // colour of slab t, the second colour of slab t - 1, whose neighbours (slabs
        // t - 2..=t) are now all final; one step past the end finishes the last slab
        // when it lies on a physical face (so in the inner span).
        let ta = self.dims - 1;
        let slab = |sp: Span, t: usize| slab_of(sp, ta, t);
        for t in 0..=n[ta] {
            if t < n[ta] {
                first_pass(self, slab(self.all(), t));
            }
            if t > inner.lo[ta] && t - 1 < inner.hi[ta] {
                self.gs_span(second, slab(inner, t - 1));
            }
        }
        self.exchange(comm, Slot::U);
        for sp in shell {
            self.gs_span(second, sp);
        }
    }

    /// `r = f - A u` on every local cell (ghosts of `u` exchanged here).
    pub fn residual(&mut self, comm: &dyn Comm) {
        self.exchange(comm, Slot::U);
        let span = self.all();
        let u = self.u.data.as_slice().expect("contiguous");
        let f = self.f.data.as_slice().expect("contiguous");
        let mut r = std::mem::take(&mut self.r.data);
        self.apply_span(u, Some(f), r.as_slice_mut().expect("contiguous"), span);
        self.r.data = r;
    }

    /// `dst = A src` with the halo exchange of `src` overlapped with the interior.
    pub fn apply_overlapped(&mut self, comm: &dyn Comm, src: Slot, dst: Slot) {
        self.apply_overlapped_then(comm, src, dst, |_, _, _| {});
    }

    /// [`Level::apply_overlapped`], calling `then(src, dst, span)` on each part of
    /// the block as soon as it is written (a plane at a time in the interior, while
    /// it is still in cache); the parts cover every local cell once.
    pub fn apply_overlapped_then(&mut self, comm: &dyn Comm, src: Slot, dst: Slot, mut then: impl FnMut(&[f64], &[f64], Span)) {
        assert_ne!(src, dst);
        self.begin_exchange(comm, src);
        let n = self.shape();
        let (inner, shell) = split_spans(n, self.dims, self.open);
        let mut out = std::mem::take(&mut self.slot_mut(dst).data);
        let ta = self.dims - 1;
        {
            let srcs = self.slot(src).data.as_slice().expect("contiguous");
            let outs = out.as_slice_mut().expect("contiguous");
            for t in inner.lo[ta]..inner.hi[ta] {
                let mut sp = inner;
                (sp.lo[ta], sp.hi[ta]) = (t, t + 1);
                self.apply_span(srcs, None, outs, sp);
                then(srcs, outs, sp);
            }
        }
        self.finish_exchange(comm, src);
        {
            let srcs = self.slot(src).data.as_slice().expect("contiguous");
            let outs = out.as_slice_mut().expect("contiguous");
            for sp in shell {
                self.apply_span(srcs, None, outs, sp);
                then(srcs, outs, sp);
            }
        }
        self.slot_mut(dst).data = out;
    }

    /// The field in `slot`.
    pub fn slot(&self, slot: Slot) -> &Field {
        match slot {
            Slot::U => &self.u,
            Slot::F => &self.f,
            Slot::R => &self.r,
            Slot::T => &self.t,
        }
    }

    /// The field in `slot`, mutable.
    pub fn slot_mut(&mut self, slot: Slot) -> &mut Field {
        self.star_and(slot).1
    }

    /// Symmetric red-black Gauss–Seidel: `sweeps` sweeps, red then black (`forward`)
    /// or black then red (the adjoint, for post-smoothing). `zero_start` skips the
    /// first exchange when `u` is known to be zero (ghosts included).
    pub fn smooth_rbgs(&mut self, comm: &dyn Comm, sweeps: usize, forward: bool, zero_start: bool) {
        if self.pipelines(sweeps) {
            return self.gs_pipelined(comm, if forward { 0 } else { 1 }, sweeps, false, !zero_start);
        }
        for s in 0..sweeps {
            self.gs_fused(comm, if forward { 0 } else { 1 }, !(zero_start && s == 0));
        }
    }

    /// [`Level::smooth_rbgs`] from `u = 0` without clearing `u` first (`sweeps >= 1`).
    pub fn smooth_rbgs_from_zero(&mut self, comm: &dyn Comm, sweeps: usize) {
        if self.pipelines(sweeps) {
            return self.gs_pipelined(comm, 0, sweeps, true, false);
        }
        for s in 0..sweeps {
            self.gs_fused_from(comm, 0, s > 0, s == 0);
        }
    }

    /// Whether `sweeps` sweeps run as one [`Level::gs_pipelined`] pass: more than one
    /// sweep, and no open face except across the slab axis (the last one: z in 3D,
    /// y in 2D), as when the ranks split only that axis.
    fn pipelines(&self, sweeps: usize) -> bool {
        let ta = self.dims - 1;
        sweeps > 1 && self.open.iter().enumerate().all(|(a, o)| a == ta || o.iter().all(|o| !o))
    }

    /// No open face: nothing of this block is exchanged.
    fn closed(&self) -> bool {
        self.open.iter().flatten().all(|o| !o)
    }

    /// `sweeps` red-black sweeps (colours `first`, other, `first`, ...) in one pass
    /// over memory, on a level whose only open faces are across the slab axis (the
    /// last one). Slab by slab along that axis: half sweep `h` trails half sweep
    /// `h - 1` by one slab, so when it updates slab `t - h` its neighbours (slabs
    /// `t - h - 1..=t - h + 1`) hold exactly the values of the half sweeps before it,
    /// as with one whole pass per half sweep: the results are bitwise those of
    /// [`Level::gs_fused`] repeated, and `u` and `f` stream through the cache once
    /// instead of once per sweep.
    ///
    /// Across an open face, slab `k` at half sweep `h` depends on the neighbour's
    /// half sweep `h - 1 - d` (`d`: its distance from the face), so the pass leaves out
    /// the slabs with `k < h` (lower face open) or `k + h >= n` (upper face open):
    /// none of the others depends on them, and none of them is overtaken by one of the
    /// others. They follow, half sweep by half sweep, each after an exchange of `u`
    /// that delivers the neighbour's half sweep `h - 1`: `2·sweeps` exchanges of one
    /// slab per face, as many as the sweeps would do one by one.
    ///
    /// `from_zero`: `u` is taken as zero and is not read (the first half sweep writes
    /// every cell); `exchange_first`: the ghosts of `u` are not current yet.
    fn gs_pipelined(&mut self, comm: &dyn Comm, first: usize, sweeps: usize, from_zero: bool, exchange_first: bool) {
        let ta = self.dims - 1;
        let (n, halves) = (self.shape()[ta], 2 * sweeps);
        let [lo_open, hi_open] = self.open[ta];
        if exchange_first && !from_zero && (lo_open || hi_open) {
            self.exchange(comm, Slot::U);
        }
        let free = |k: usize, h: usize| (!lo_open || k >= h) && (!hi_open || k + h < n);
        let update = |lv: &mut Level, k: usize, h: usize| {
            let sp = slab_of(lv.all(), ta, k);
            let colour = (first + h) & 1;
            if h == 0 && from_zero {
                lv.gs_zero_rows(colour, sp);
            } else {
                lv.gs_span(colour, sp);
            }
        };
        for t in 0..n + halves - 1 {
            for h in (0..halves).filter(|&h| h <= t && t - h < n) {
                if free(t - h, h) {
                    update(self, t - h, h);
                }
            }
        }
        if !(lo_open || hi_open) {
            return;
        }
        for h in 1..halves {
            self.exchange(comm, Slot::U);
            // The slabs left out: within h of an open face.
            let near = (0..h.min(n)).chain(n.saturating_sub(h).max(h.min(n))..n);
            for k in near.filter(|&k| !free(k, h)) {
                update(self, k, h);
            }
        }
    }

    /// [`Level::smooth_rbgs`] as two separate half sweeps per sweep (the reference
    /// the fused sweep is tested against).
    #[cfg(test)]
    pub(crate) fn smooth_rbgs_unfused(&mut self, comm: &dyn Comm, sweeps: usize, forward: bool, zero_start: bool) {
        for s in 0..sweeps {
            for half in 0..2 {
                let colour = if forward { half } else { 1 - half };
                if !(zero_start && s == 0 && half == 0) {
                    self.exchange(comm, Slot::U);
                }
                self.gs_colour(colour);
            }
        }
    }

    /// Chebyshev smoothing of degree `degree` with Jacobi scaling, on the interval
    /// `[lambda_max / ratio, lambda_max]` of D⁻¹A's spectrum.
    pub fn smooth_chebyshev(&mut self, comm: &dyn Comm, degree: usize, ratio: f64) {
        let b = self.lambda_max * 1.05;
        let a = b / ratio;
        let theta = 0.5 * (b + a);
        let delta = 0.5 * (b - a);
        let sigma = theta / delta;
        let mut rho = 1.0 / sigma;
        for it in 0..degree {
            self.residual(comm);
            let n = self.shape();
            let (u, r, t, invd) = (
                self.u.data.as_slice_mut().expect("contiguous"),
                self.r.data.as_slice().expect("contiguous"),
                self.t.data.as_slice_mut().expect("contiguous"),
                &self.invd,
            );
            let rho_new = if it == 0 { rho } else { 1.0 / (2.0 * sigma - rho) };
            for k in 0..n[2] {
                for j in 0..n[1] {
                    let c0 = self.f.idx(0, j, k);
                    for c in c0..c0 + n[0] {
                        let z = invd[c] * r[c];
                        t[c] = if it == 0 { z / theta } else { rho_new * rho * t[c] + 2.0 * rho_new / delta * z };
                        u[c] += t[c];
                    }
                }
            }
            rho = rho_new;
        }
    }
}

/// Red-black Gauss–Seidel on a uniform run, four cells of one colour per step
/// (`c, c + 2, c + 4, c + 6`), from cell `c` while `c + 8 <= end`; returns the first
/// cell not done. The same IEEE operations in the same order as the scalar update
/// (no fused multiply-add), so the result is bitwise the scalar one.
///
/// Lanes hold the cells `[c, c + 4, c + 2, c + 6]`: `unpacklo(load(p), load(p + 4))`
/// gathers any stream in that order, and the east neighbours are the other colour's
/// lanes of the two centre loads. Both 4-cell stores write the other colour's cells
/// back unchanged (the values just loaded; nothing else writes them meanwhile), and
/// the next step's west load is issued before them, so no load waits on a partially
/// overlapping store.
///
/// # Safety
/// AVX must be available; `up` and `f` must be valid for reads (and `up` for writes)
/// over `[c - max(1, s2), end + s2 + 3)` when `D3`, `[c - s1, end + s1 + 3)` otherwise,
/// with `s1 >= 3`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx")]
#[allow(clippy::too_many_arguments)]
unsafe fn rb_quads<const D3: bool>(
    up: *mut f64,
    f: *const f64,
    mut c: usize,
    end: usize,
    s1: usize,
    s2: usize,
    w: [f64; 6],
    inv: f64,
) -> usize {
    // SAFETY: the caller's contract (see above).
    unsafe {
        use std::arch::x86_64::*;
        macro_rules! ld {
            ($p:expr, $o:expr) => {
                _mm256_loadu_pd($p.add($o))
            };
        }
        macro_rules! pat {
            ($p:expr, $o:expr) => {
                _mm256_unpacklo_pd(ld!($p, $o), ld!($p, $o + 4))
            };
        }
        let [ow, oe, owy, oey, owz, oez] = w.map(|x| _mm256_set1_pd(x));
        let vinv = _mm256_set1_pd(inv);
        let up_c = up as *const f64;
        let mut w0 = ld!(up_c, c - 1);
        while c + 8 <= end {
            let (u0, u1) = (ld!(up_c, c), ld!(up_c, c + 4));
            let west = _mm256_unpacklo_pd(w0, ld!(up_c, c + 3));
            let east = _mm256_unpackhi_pd(u0, u1);
            let x = _mm256_add_pd(_mm256_mul_pd(ow, west), _mm256_mul_pd(oe, east));
            let y = _mm256_add_pd(_mm256_mul_pd(owy, pat!(up_c, c - s1)), _mm256_mul_pd(oey, pat!(up_c, c + s1)));
            let mut o = _mm256_add_pd(x, y);
            if D3 {
                o = _mm256_add_pd(o, _mm256_add_pd(_mm256_mul_pd(owz, pat!(up_c, c - s2)), _mm256_mul_pd(oez, pat!(up_c, c + s2))));
            }
            let v = _mm256_mul_pd(_mm256_add_pd(pat!(f, c), o), vinv);
            w0 = ld!(up_c, c + 7);
            _mm256_storeu_pd(up.add(c), _mm256_unpacklo_pd(v, east));
            _mm256_storeu_pd(up.add(c + 4), _mm256_unpackhi_pd(v, east));
            c += 8;
        }
    }
    c
}

/// `sp` cut to its slab `t` along axis `ta`.
fn slab_of(mut sp: Span, ta: usize, t: usize) -> Span {
    (sp.lo[ta], sp.hi[ta]) = (t, t + 1);
    sp
}

/// The contiguous run of local x cells around the middle whose coefficients equal the
/// middle cell's bit for bit.
fn uniform_run(c: &Coefs) -> (usize, usize) {
    let n = c.ow.len();
    if n == 0 {
        return (0, 0);
    }
    let m = n / 2;
    let same = |i: usize| {
        c.ow[i].to_bits() == c.ow[m].to_bits()
            && c.oe[i].to_bits() == c.oe[m].to_bits()
            && c.dw[i].to_bits() == c.dw[m].to_bits()
            && c.de[i].to_bits() == c.de[m].to_bits()
    };
    let mut lo = m;
    while lo > 0 && same(lo - 1) {
        lo -= 1;
    }
    let mut hi = m + 1;
    while hi < n && same(hi) {
        hi += 1;
    }
    (lo, hi)
}

/// Splits a block of extent `n` into the cells whose stencil reads no exchanged ghost
/// and the shell around them (disjoint, covering every cell once).
/// Only the faces in `open[axis][side]` count: the others are physical faces, whose
/// ghosts no stencil needs (their weights are zero).
pub fn split_spans(n: [usize; 3], dims: usize, open: [[bool; 2]; 3]) -> (Span, Vec<Span>) {
    let (inner, shell) = crate::heat::split_regions_open(n, dims, open);
    (Span { lo: inner.lo, hi: inner.hi }, shell.into_iter().map(|r| Span { lo: r.lo, hi: r.hi }).collect())
}
