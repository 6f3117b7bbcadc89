//! One axis of a (possibly non-uniform) tensor-product grid level, and the 1D
//! operator and grid-transfer weights derived from it.
//!
//! Multigrid coarsens cell-centred grids by merging neighbouring global cells in
//! pairs; an odd count merges three of them into one coarse cell (see
//! [`Axis::coarsen`]), so a coarse level of e.g. 1025 cells has one cell 3/2 as wide
//! as the others. The three merged are the narrowest three (lowest first), so on
//! counts that stay odd level after level (127, 63, 31, ...) no coarse cell gets
//! more than 3/2 as wide as another: always merging the last three made the last
//! cell up to twice as wide as the rest on every level, and cost 127³ seven CG
//! iterations against 129³'s five. (Leaving one cell alone instead keeps it one
//! fine cell wide on every level, a width ratio of up to 2^levels.) Everything below
//! is written for arbitrary widths, and depends only on the global grid, never on
//! the decomposition: every rank count builds the same hierarchy.

/// Odd counts below this coarsen with one cell left alone instead of three merged.
pub const LONE_BELOW: usize = 9;

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
    /// The one coarse cell of an odd count that is not a pair, as (first fine cell,
    /// fine cells): the narrowest three, or on short axes the widest one alone (see
    /// [`Axis::coarsen`]); `(n, 2)` for even counts. The start is even, so the pairs
    /// before it start at even cells.
    group: (usize, usize),
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
        Axis::new(vec![h; n], edges, bc)
    }

    fn new(widths: Vec<f64>, edges: Vec<f64>, bc: [BcKind; 2]) -> Axis {
        let n = widths.len();
        // At even starts, the lowest of equals (within rounding, so the choice is the
        // same for widths that differ only in their last bits).
        let pick = |len: usize, better: &dyn Fn(f64, f64) -> bool| {
            let sum = |s: usize| widths[s..s + len].iter().sum::<f64>();
            (2..=n - len).step_by(2).fold(0, |b, s| if better(sum(s), sum(b)) { s } else { b })
        };
        let group = if n % 2 == 0 {
            (n, 2)
        } else if n < LONE_BELOW {
            (pick(1, &|a, b| a > b * (1.0 + 1e-12)), 1)
        } else {
            (pick(3, &|a, b| a < b * (1.0 - 1e-12)), 3)
        };
        Axis { widths, edges, bc, group }
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

    /// Number of cells of the coarse axis.
    pub fn coarse_n(&self) -> usize {
        let (t, len) = self.group;
        (t / 2) + usize::from(t < self.n()) + (self.n() - (t + len).min(self.n())) / 2
    }

    /// Global fine cells of coarse cell `c`: a pair, or the odd count's group.
    pub fn children(&self, c: usize) -> std::ops::Range<usize> {
        let (t, len) = self.group;
        match (2 * c).cmp(&t) {
            std::cmp::Ordering::Less => 2 * c..2 * c + 2,
            std::cmp::Ordering::Equal => t..t + len,
            std::cmp::Ordering::Greater => 2 * c + len - 2..2 * c + len,
        }
    }

    /// The coarse cell of global fine cell `f`.
    pub fn parent(&self, f: usize) -> usize {
        let (t, len) = self.group;
        if f < t {
            f / 2
        } else if f < t + len {
            t / 2
        } else {
            (f + 2 - len) / 2
        }
    }

    /// The number of coarse cells whose first child is below fine cell `x` (`x` in
    /// `0..=n`): the coarse index a fine block boundary at `x` maps to.
    pub fn coarse_below(&self, x: usize) -> usize {
        (0..self.coarse_n()).filter(|&c| self.children(c).start < x).count()
    }

    /// Whether a fine block boundary at `x` splits no coarse cell's children.
    pub fn splits_no_cell(&self, x: usize) -> bool {
        x == 0 || x >= self.n() || self.children(self.parent(x)).start == x
    }

    /// The coarse axis: cells merged in pairs; an odd count merges the narrowest three
    /// at an even start, or, below [`LONE_BELOW`] cells, leaves the widest one alone.
    /// (On so short an axis three cells are a large part of it: 7 cells coarsened to 3
    /// leave a coarse cell 7/3 fine cells wide on average, a gap between the modes the
    /// smoother damps and those the coarse level represents. That alone took 31³ from
    /// a first CG step of 5.8e-2 to 0.26.)
    pub fn coarsen(&self) -> Axis {
        let n = self.n();
        let nc = self.coarse_n();
        let mut edges: Vec<f64> = (0..nc).map(|c| self.edges[self.children(c).start]).collect();
        edges.push(self.edges[n]);
        // Widths as sums of the children's widths, not edge differences: pairs of
        // equal cells then give bitwise equal coarse widths (hence coefficients), which
        // keeps the smoothers' uniform fast path (`Level::xuni`) on coarse levels.
        let widths = (0..nc).map(|c| self.children(c).map(|f| self.widths[f]).sum()).collect();
        Axis::new(widths, edges, self.bc)
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
        let c = self.parent(f) as isize;
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
        // Cubic interpolation into fine cells whose coarse cell is c - 2..=c + 2 reads
        // c: with f0 the first child of c, at most f0 - 5..=f0 + 6 (a merged triple
        // among them); linear reads less.
        let f0 = self.children(c).start as isize;
        for f in f0 - 5..=f0 + 6 {
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
        // Uniform: the first three merge.
        assert!((c.widths[0] - 3.0 / 9.0).abs() < 1e-15);
        assert!((c.widths[3] - 2.0 / 9.0).abs() < 1e-15);
        assert_eq!((a.children(0), a.children(1), a.children(3)), (0..3, 3..5, 7..9));
        assert_eq!((a.parent(2), a.parent(3), a.parent(8)), (0, 1, 3));
        let e = Axis::uniform(8, 0.0, 1.0, [BcKind::Dirichlet; 2]);
        assert_eq!((e.coarse_n(), e.parent(7), e.children(3)), (4, 3, 6..8));
        let axis = |w: &[f64]| Axis::new(w.to_vec(), (0..=w.len()).map(|i| i as f64).collect(), [BcKind::Dirichlet; 2]);
        // The narrowest three at an even start (2..5; 0..3 would be wider).
        let eleven = axis(&[3.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0]);
        assert_eq!((eleven.children(0), eleven.children(1), eleven.children(2)), (0..2, 2..5, 5..7));
        assert_eq!(eleven.coarsen().widths, vec![5.0, 6.0, 4.0, 4.0, 4.0]);
        assert_eq!((eleven.parent(4), eleven.parent(5), eleven.parent(10)), (1, 2, 4));
        // Block boundaries: the coarse index they map to, and whether they split a cell.
        assert_eq!((0..=11).map(|x| eleven.coarse_below(x)).collect::<Vec<_>>(), [0, 1, 1, 2, 2, 2, 3, 3, 4, 4, 5, 5]);
        let clean: Vec<usize> = (0..=11).filter(|&x| eleven.splits_no_cell(x)).collect();
        assert_eq!(clean, [0, 2, 5, 7, 9, 11]);
        // A short axis leaves its widest cell at an even start alone.
        let seven = axis(&[2.0, 2.0, 3.0, 2.0, 2.0, 2.0, 2.0]);
        assert_eq!((seven.coarse_n(), seven.children(1), seven.children(2), seven.children(3)), (4, 2..3, 3..5, 5..7));
        assert_eq!(seven.coarsen().widths, vec![4.0, 3.0, 4.0, 4.0]);
        assert_eq!((seven.parent(2), seven.parent(3), seven.parent(6)), (1, 2, 3));
        assert_eq!((0..=7).filter(|&x| seven.splits_no_cell(x)).collect::<Vec<_>>(), [0, 2, 3, 5, 7]);
    }

    /// Counts that stay odd (2^k - 1) keep every coarse width within 3/2 of every
    /// other on every level coarsened by merging three; the short axes that leave
    /// one cell alone stay within 2.
    #[test]
    fn odd_counts_keep_coarse_widths_within_three_halves() {
        for n in [7usize, 31, 127, 1023, 2047, 129, 1025, 99] {
            let mut a = Axis::uniform(n, 0.0, 1.0, [BcKind::Dirichlet; 2]);
            while a.n() >= 2 {
                let bound = if a.n() >= LONE_BELOW { 1.5 } else { 2.0 };
                a = a.coarsen();
                let (lo, hi) = a.widths.iter().fold((f64::MAX, 0.0f64), |(l, h), &w| (l.min(w), h.max(w)));
                assert!(hi / lo <= bound + 1e-12, "n = {n}, level of {} cells: widths {lo}..{hi}", a.n());
                let sum: f64 = a.widths.iter().sum();
                assert!((sum - 1.0).abs() < 1e-12 && (a.edges[a.n()] - 1.0).abs() < 1e-15);
            }
        }
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
