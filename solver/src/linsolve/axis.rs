//! One axis of a (possibly non-uniform) tensor-product grid level, and the 1D
//! operator and grid-transfer weights derived from it.
//!
//! Multigrid coarsens cell-centred grids by merging global cell pairs (2c, 2c+1);
//! an odd count merges its last three cells, so coarse levels of e.g. 1025 cells
//! have one cell 3/2 as wide as the others (then 5/4, 9/8, ...). (Leaving the last
//! cell alone instead keeps it one fine cell wide on every level, a width ratio of
//! up to 2^levels that spoils the coarse corrections near that face.) Everything below is written for
//! arbitrary widths, and depends only on the global grid, never on the
//! decomposition: every rank count builds the same hierarchy.

/// Homogeneous boundary condition of the linear operator on one face.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BcKind {
    /// Value zero on the face.
    Dirichlet,
    /// Normal derivative zero.
    Neumann,
    /// Periodic axis (both faces).
    Periodic,
}

impl BcKind {
    /// Ghost value as a multiple of the boundary cell's value (mirror image).
    pub fn mirror(self) -> f64 {
        match self {
            BcKind::Dirichlet => -1.0,
            BcKind::Neumann | BcKind::Periodic => 1.0,
        }
    }
}

/// Global geometry of one axis on one level.
#[derive(Clone, Debug, PartialEq)]
pub struct Axis {
    /// Cell widths, one per global cell.
    pub widths: Vec<f64>,
    /// Face positions, `widths.len() + 1` of them.
    pub edges: Vec<f64>,
    /// Condition on the lower and upper face.
    pub bc: [BcKind; 2],
}

/// 1D operator coefficients of one cell: off-diagonal weights towards the lower and
/// upper neighbour (zero across a physical boundary) and the diagonal contributions
/// of both faces (a Dirichlet face counts twice, a Neumann face not at all).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Coef1 {
    /// Off-diagonal weight of the lower neighbour.
    pub ow: f64,
    /// Off-diagonal weight of the upper neighbour.
    pub oe: f64,
    /// Diagonal contribution of the lower face.
    pub dw: f64,
    /// Diagonal contribution of the upper face.
    pub de: f64,
}

impl Axis {
    /// `n` equal cells over `[lo, hi]`.
    pub fn uniform(n: usize, lo: f64, hi: f64, bc: [BcKind; 2]) -> Axis {
        let h = (hi - lo) / n as f64;
        let mut edges: Vec<f64> = (0..=n).map(|i| lo + i as f64 * h).collect();
        edges[n] = hi;
        Axis { widths: vec![h; n], edges, bc }
    }

    /// Number of cells.
    pub fn n(&self) -> usize {
        self.widths.len()
    }

    /// True for a periodic axis.
    pub fn periodic(&self) -> bool {
        self.bc[0] == BcKind::Periodic
    }

    /// Whether pairs can still be merged (at least 2 cells, and a periodic axis keeps 2).
    pub fn can_coarsen(&self) -> bool {
        if self.periodic() {
            self.n() >= 4
        } else {
            self.n() >= 2
        }
    }

    /// Number of cells of the coarse axis (`n / 2`: an odd count's last three merge).
    pub fn coarse_n(n: usize) -> usize {
        (n / 2).max(1)
    }

    /// Global fine cells of coarse cell `c` of an axis of `n` fine cells: the pair
    /// (2c, 2c+1), or the last three when `n` is odd.
    pub fn children(n: usize, c: usize) -> std::ops::Range<usize> {
        let last = c + 1 == Self::coarse_n(n);
        2 * c..if last { n } else { 2 * c + 2 }
    }

    /// The coarse cell of global fine cell `f`, for an axis of `n` fine cells.
    pub fn parent(n: usize, f: usize) -> usize {
        (f / 2).min(Self::coarse_n(n) - 1)
    }

    /// The coarse axis: global pairs (2c, 2c+1) merged, the last three cells if `n`
    /// is odd.
    pub fn coarsen(&self) -> Axis {
        let n = self.n();
        let nc = Self::coarse_n(n);
        let mut edges = Vec::with_capacity(nc + 1);
        for c in 0..nc {
            edges.push(self.edges[2 * c]);
        }
        edges.push(self.edges[n]);
        // Widths as sums of the children's widths, not edge differences: pairs of
        // equal cells then give bitwise equal coarse widths (hence coefficients), which
        // keeps the smoothers' uniform fast path (`Level::xuni`) on coarse levels.
        let widths = (0..nc).map(|c| Self::children(n, c).map(|f| self.widths[f]).sum()).collect();
        Axis { widths, edges, bc: self.bc }
    }

    /// Centre of cell `i`, for `i` in `-2..=n + 1`: a ghost beyond a physical face is
    /// the mirror image of the cell it mirrors (`-1` of `0`, `-2` of `1`); beyond a
    /// periodic face it is the image of the cell on the other side.
    pub fn centre(&self, i: isize) -> f64 {
        let n = self.n() as isize;
        let (e0, en) = (self.edges[0], self.edges[n as usize]);
        if self.periodic() && !(0..n).contains(&i) {
            // The image of the cell one period away.
            self.centre(i.rem_euclid(n)) + i.div_euclid(n) as f64 * (en - e0)
        } else if i < 0 {
            2.0 * e0 - self.centre(-i - 1)
        } else if i >= n {
            2.0 * en - self.centre(2 * n - 1 - i)
        } else {
            0.5 * (self.edges[i as usize] + self.edges[i as usize + 1])
        }
    }

    /// Operator coefficients of global cell `i` for `-d²/dx²` in finite-volume form,
    /// divided by the cell width: `(u_i - u_nb) / (w_i · |x_i - x_nb|)` per face.
    pub fn coef(&self, i: usize) -> Coef1 {
        let n = self.n();
        let w = self.widths[i];
        // Centre distances from the widths (the ghost mirrors or wraps), so that equal
        // widths give bitwise equal coefficients: smoothers use that.
        let cw = 1.0 / (w * (0.5 * (w + self.width_ext(i as isize - 1))));
        let ce = 1.0 / (w * (0.5 * (w + self.width_ext(i as isize + 1))));
        let mut c = Coef1 { ow: cw, oe: ce, dw: cw, de: ce };
        if i == 0 && !self.periodic() {
            c.ow = 0.0;
            c.dw = cw * (1.0 - self.bc[0].mirror());
        }
        if i + 1 == n && !self.periodic() {
            c.oe = 0.0;
            c.de = ce * (1.0 - self.bc[1].mirror());
        }
        c
    }

    /// Width of cell `i` for `i` in `-1..=n`: a ghost beyond a physical face mirrors the
    /// boundary cell, beyond a periodic face it is the cell on the other side.
    pub fn width_ext(&self, i: isize) -> f64 {
        let n = self.n() as isize;
        if i < 0 {
            self.widths[if self.periodic() { (n - 1) as usize } else { 0 }]
        } else if i >= n {
            self.widths[if self.periodic() { 0 } else { (n - 1) as usize }]
        } else {
            self.widths[i as usize]
        }
    }

    /// Interpolation of fine cell `f` (of `self`) from the coarse axis `coarse`:
    /// (coarse index in `-2..=nc + 1`, weight) pairs, linear (two coarse centres) or,
    /// with `cubic` and at least four coarse cells, cubic (Lagrange through four).
    /// Ghost indices stand for the mirror (physical face) or periodic image. A fine
    /// cell centred on its coarse cell (the middle of a merged triple) takes its value.
    pub fn interp(&self, coarse: &Axis, f: usize, cubic: bool) -> Vec<(isize, f64)> {
        let c = Self::parent(self.n(), f) as isize;
        let xf = self.centre(f as isize);
        let xc = coarse.centre(c);
        let tol = 1e-12 * coarse.widths[c as usize];
        if (xf - xc).abs() <= tol {
            return vec![(c, 1.0)];
        }
        let side = if xf < xc { -1 } else { 1 };
        let nb = c + side;
        let xn = coarse.centre(nb);
        let w = (xn - xf) / (xn - xc);
        let linear = vec![(c, w), (nb, 1.0 - w)];
        if !(cubic && coarse.n() >= 4) {
            return linear;
        }
        // The two coarse centres on either side of the fine one.
        let lo = c.min(nb) - 1;
        let xs: Vec<f64> = (lo..lo + 4).map(|i| coarse.centre(i)).collect();
        let pairs: Vec<(isize, f64)> = (0..4)
            .map(|a| {
                let mut w = 1.0;
                for (b, &xb) in xs.iter().enumerate() {
                    if b != a {
                        w *= (xf - xb) / (xs[a] - xb);
                    }
                }
                (lo + a as isize, w)
            })
            .collect();
        // On strongly uneven coarse cells a cubic overshoots; there the interpolation
        // stays linear. The weights' absolute sum is 152/128 on equal cells and at
        // most 1.29 next to a merged triple (widths 3:2); a lone fine cell among
        // 32-times-wider coarse cells, as pair-only coarsening left, gave far more.
        if pairs.iter().map(|p| p.1.abs()).sum::<f64>() > 1.5 {
            return linear;
        }
        pairs
    }

    /// Global coarse index `i` (possibly a ghost, `-2..=-1` or `nc..=nc + 1`) folded
    /// onto the coarse cell whose value it stands for, with the mirror factor of a
    /// physical face.
    pub fn fold(&self, i: isize) -> (isize, f64) {
        let n = self.n() as isize;
        if i < 0 {
            if self.periodic() {
                (n + i, 1.0)
            } else {
                (-i - 1, self.bc[0].mirror())
            }
        } else if i >= n {
            if self.periodic() {
                (i - n, 1.0)
            } else {
                (2 * n - 1 - i, self.bc[1].mirror())
            }
        } else {
            (i, 1.0)
        }
    }

    /// Restriction weights onto coarse cell `c`: the transpose of [`Axis::interp`]
    /// (ghosts folded onto the cells they mirror), scaled by fine/coarse widths so
    /// that `R = V_c⁻¹ Pᵀ V_f`. Fine indices are global and unwrapped: `-4..=-1` or
    /// `n..n + 4` name fine ghosts beyond a periodic face. Zero weights are dropped.
    pub fn restrict_weights(&self, coarse: &Axis, c: usize, cubic: bool) -> Vec<(isize, f64)> {
        let n = self.n() as isize;
        let mut out = Vec::with_capacity(8);
        // Linear interpolation reaches fine cells 2c - 1..=2c + 2, cubic 2c - 3..=2c + 4
        // (2c + 6 through the last of a merged triple).
        for f in 2 * c as isize - 4..=2 * c as isize + 6 {
            // The fine cell this position stands for (periodic image) and whether it exists.
            let wrapped = if self.periodic() { f.rem_euclid(n) } else { f };
            if wrapped < 0 || wrapped >= n || (!self.periodic() && f != wrapped) {
                continue;
            }
            if self.periodic() && (f < -n || f >= 2 * n) {
                continue;
            }
            let mut w = 0.0;
            for (ci, wi) in coarse_of(self, coarse, wrapped as usize, f, cubic) {
                // Periodic: compare unwrapped positions, so each fine cell counts once
                // (at the image whose stencil covers `c`). Physical faces: ghosts fold
                // onto the cells they mirror, with the mirror factor.
                let (cf, s) = if self.periodic() { (ci, 1.0) } else { coarse.fold(ci) };
                if cf == c as isize {
                    w += s * wi;
                }
            }
            if w != 0.0 {
                out.push((f, w * self.widths[wrapped as usize] / coarse.widths[c]));
            }
        }
        out
    }
}

/// Interpolation pairs of the fine cell at unwrapped position `f` (image of cell
/// `wrapped`): across a periodic face the coarse indices shift with the image.
fn coarse_of(fine: &Axis, coarse: &Axis, wrapped: usize, f: isize, cubic: bool) -> Vec<(isize, f64)> {
    let mut p = fine.interp(coarse, wrapped, cubic);
    if f != wrapped as isize {
        // An image one period away: its coarse partners move by one coarse period.
        let shift = if f < 0 { -(coarse.n() as isize) } else { coarse.n() as isize };
        for e in &mut p {
            e.0 += shift;
        }
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prolong(fine: &Axis, coarse: &Axis, uc: &[f64], cubic: bool) -> Vec<f64> {
        (0..fine.n())
            .map(|f| {
                fine.interp(coarse, f, cubic)
                    .iter()
                    .map(|&(c, w)| {
                        let (cf, s) = coarse.fold(c);
                        w * s * uc[cf as usize]
                    })
                    .sum()
            })
            .collect()
    }

    #[test]
    fn coarsening_keeps_the_domain_and_pairs_cells() {
        let a = Axis::uniform(9, 0.0, 1.0, [BcKind::Dirichlet; 2]);
        let c = a.coarsen();
        assert_eq!(c.n(), 4);
        assert_eq!(c.edges[0], 0.0);
        assert_eq!(c.edges[4], 1.0);
        assert!((c.widths[3] - 3.0 / 9.0).abs() < 1e-15);
        assert!((c.widths[0] - 2.0 / 9.0).abs() < 1e-15);
        assert_eq!(Axis::children(9, 3), 6..9);
        assert_eq!((Axis::parent(9, 8), Axis::parent(9, 5), Axis::parent(8, 7)), (3, 2, 3));
    }

    #[test]
    fn interpolation_is_exact_for_linear_functions_inside() {
        for n in [8usize, 9, 17] {
            let a = Axis::uniform(n, 0.0, 2.0, [BcKind::Neumann; 2]);
            let c = a.coarsen();
            let uc: Vec<f64> = (0..c.n()).map(|i| 3.0 * c.centre(i as isize) + 1.0).collect();
            let uf = prolong(&a, &c, &uc, false);
            for f in 1..n - 1 {
                let x = a.centre(f as isize);
                assert!((uf[f] - (3.0 * x + 1.0)).abs() < 1e-12, "n={n} f={f}");
            }
        }
    }

    #[test]
    fn cubic_interpolation_is_exact_for_cubics_inside_and_folds_like_linear_at_faces() {
        let p = |x: f64| ((2.0 * x - 1.0) * x + 0.5) * x - 3.0;
        // 33 cells coarsen to 16 of uneven widths (the last merges three).
        for n in [16usize, 33, 40] {
            let a = Axis::uniform(n, 0.0, 2.0, [BcKind::Dirichlet, BcKind::Neumann]);
            let c = a.coarsen();
            let uc: Vec<f64> = (0..c.n()).map(|i| p(c.centre(i as isize))).collect();
            let uf = prolong(&a, &c, &uc, true);
            // Fine cells whose four coarse points are real cells.
            for f in 4..n - 4 {
                let x = a.centre(f as isize);
                assert!((uf[f] - p(x)).abs() < 1e-12, "n={n} f={f}: {} vs {}", uf[f], p(x));
            }
            for f in 0..n {
                let w: f64 = a.interp(&c, f, true).iter().map(|e| e.1).sum();
                assert!((w - 1.0).abs() < 1e-14, "weights of fine cell {f} sum to {w}");
            }
        }
        // Odd reflection at a Dirichlet face: an odd function through the face is kept.
        let a = Axis::uniform(32, 0.0, 1.0, [BcKind::Dirichlet; 2]);
        let c = a.coarsen();
        let odd = |x: f64| x * (1.0 + x * x);
        let uc: Vec<f64> = (0..c.n()).map(|i| odd(c.centre(i as isize))).collect();
        let uf = prolong(&a, &c, &uc, true);
        for f in 0..4 {
            let x = a.centre(f as isize);
            assert!((uf[f] - odd(x)).abs() < 1e-12, "f={f}");
        }
        // Fewer than four coarse cells: linear.
        let a = Axis::uniform(6, 0.0, 1.0, [BcKind::Dirichlet; 2]);
        assert_eq!(a.interp(&a.coarsen(), 2, true), a.interp(&a.coarsen(), 2, false));
    }

    #[test]
    fn restriction_is_the_scaled_transpose_of_interpolation() {
        for (bc, cubic) in [[BcKind::Dirichlet; 2], [BcKind::Neumann, BcKind::Dirichlet], [BcKind::Periodic; 2]]
            .into_iter()
            .flat_map(|bc| [(bc, false), (bc, true)])
        {
            for n in [8usize, 9, 12, 13, 21] {
                let a = Axis::uniform(n, 0.0, 1.0, bc);
                let a = if n == 13 { a.coarsen() } else { a }; // non-uniform fine axis too
                let c = a.coarsen();
                // <R r, e>_{V_c} == <r, P e>_{V_f} for unit vectors.
                for ce in 0..c.n() {
                    let mut e = vec![0.0; c.n()];
                    e[ce] = 1.0;
                    let pe = prolong(&a, &c, &e, cubic);
                    for fr in 0..a.n() {
                        let rhs = a.widths[fr] * pe[fr];
                        let lhs: f64 = a
                            .restrict_weights(&c, ce, cubic)
                            .iter()
                            .filter(|(f, _)| (if a.periodic() { f.rem_euclid(a.n() as isize) } else { *f }) == fr as isize)
                            .map(|(_, w)| w * c.widths[ce])
                            .sum();
                        assert!((lhs - rhs).abs() < 1e-14, "bc {bc:?} cubic {cubic} n {n} coarse {ce} fine {fr}: {lhs} vs {rhs}");
                    }
                }
            }
        }
    }

    #[test]
    fn restriction_of_a_constant_is_the_constant_inside() {
        let a = Axis::uniform(16, 0.0, 1.0, [BcKind::Periodic; 2]);
        let c = a.coarsen();
        for cubic in [false, true] {
            for ce in 0..c.n() {
                let s: f64 = a.restrict_weights(&c, ce, cubic).iter().map(|(_, w)| w).sum();
                assert!((s - 1.0).abs() < 1e-14);
            }
        }
    }

    #[test]
    fn operator_rows_match_the_standard_stencil_on_uniform_grids() {
        let a = Axis::uniform(4, 0.0, 1.0, [BcKind::Dirichlet, BcKind::Neumann]);
        let h2 = 1.0 / 16.0;
        let c0 = a.coef(0);
        assert_eq!(c0.ow, 0.0);
        assert!((c0.dw * h2 - 2.0).abs() < 1e-12 && (c0.oe * h2 - 1.0).abs() < 1e-12);
        let c3 = a.coef(3);
        assert_eq!((c3.oe, c3.de), (0.0, 0.0));
        let c1 = a.coef(1);
        assert!((c1.ow * h2 - 1.0).abs() < 1e-12 && (c1.dw + c1.de) * h2 - 2.0 < 1e-12);
    }
}
