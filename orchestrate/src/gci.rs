//! Grid convergence index (GCI) of Celik et al. (2008), "Procedure for estimation and
//! reporting of uncertainty due to discretization in CFD applications", J. Fluids Eng. 130,
//! 078001: one quantity computed on three systematically refined grids gives the apparent
//! order of accuracy, a Richardson-extrapolated value and an error band for the fine grid.
//!
//! Grids are numbered as in the paper: 1 is the finest (most cells), 3 the coarsest.

use std::fmt::{self, Write as _};

/// Factor of safety of the three-grid GCI (Celik et al. 2008, step 5).
pub const SAFETY_FACTOR: f64 = 1.25;

/// Smallest refinement ratio Celik et al. recommend. Smaller ratios (down to just above 1)
/// are accepted but flagged by [`GciResult::summary`].
pub const RECOMMENDED_MIN_RATIO: f64 = 1.3;

/// Iterations allowed to the fixed-point iteration for the apparent order.
const MAX_ITERATIONS: usize = 100;

/// Relative change of p at which the fixed-point iteration stops.
const TOLERANCE: f64 = 1e-12;

/// One quantity computed on three grids.
#[derive(Debug, Clone, PartialEq)]
pub struct GciInput {
    /// Cell counts N_i of the three grids, in any order.
    pub cells: [f64; 3],
    /// The quantity phi_i on each grid, in the same order as `cells`.
    pub values: [f64; 3],
    /// Spatial dimension (1, 2 or 3), for the cell size h = (1/N)^(1/dims).
    pub dims: usize,
}

/// Outcome of a three-grid study. Relative errors and GCIs are fractions (0.022 = 2.2 %).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct GciResult {
    /// Representative cell sizes h_i = (1/N_i)^(1/dims), finest first.
    pub h: [f64; 3],
    /// Refinement ratio h2/h1 (> 1).
    pub r21: f64,
    /// Refinement ratio h3/h2 (> 1).
    pub r32: f64,
    /// Apparent order p, from the fixed-point iteration of Celik eqs. (3)-(5).
    pub p: f64,
    /// Extrapolated value phi_ext^21 = (r21^p phi1 - phi2) / (r21^p - 1).
    pub extrapolated: f64,
    /// Approximate relative error e_a^21 = |(phi1 - phi2) / phi1|.
    pub e_a21: f64,
    /// Extrapolated relative error e_ext^21 = |(phi_ext - phi1) / phi_ext|.
    pub e_ext21: f64,
    /// Fine-grid convergence index GCI_fine^21 = 1.25 e_a^21 / (r21^p - 1).
    pub gci_fine: f64,
    /// Convergence index of the coarser pair, GCI^32 = 1.25 e_a^32 / (r32^p - 1).
    pub gci_coarse: f64,
    /// GCI^32 / (r21^p GCI^21): close to 1 when the grids are in the asymptotic range.
    pub asymptotic_ratio: f64,
    /// How the solution behaves under refinement.
    pub convergence: Convergence,
}

/// Behaviour under refinement, from R = eps21 / eps32 with eps21 = phi2 - phi1 and
/// eps32 = phi3 - phi2.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Convergence {
    /// 0 < R < 1: the changes shrink and keep their sign; the GCI is meaningful.
    Monotonic,
    /// R < 0: the changes alternate in sign; p and the GCI are rough indications only.
    Oscillatory,
    /// R >= 1: the changes do not shrink; the GCI is not an error bound.
    Divergent,
}

impl fmt::Display for Convergence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Convergence::Monotonic => "monotonic",
            Convergence::Oscillatory => "oscillatory",
            Convergence::Divergent => "divergent",
        })
    }
}

/// Why a GCI could not be computed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum GciError {
    /// The dimension is not 1, 2 or 3.
    #[error("GCI: the spatial dimension must be 1, 2 or 3, got {0}")]
    Dims(usize),
    /// A cell count is zero, negative or not finite.
    #[error("GCI: cell count {0} is not a positive finite number")]
    BadCells(f64),
    /// Two grids have the same cell count.
    #[error("GCI: two grids have the same cell count {0}; three distinct grids are needed")]
    RepeatedCells(f64),
    /// A solution value is NaN or infinite.
    #[error("GCI: solution value {0} is not finite (did that run fail or diverge?)")]
    NonFinite(f64),
    /// A refinement ratio is not clearly above 1.
    #[error("GCI: refinement ratio r{which} = {r:.6} is too close to 1 (Celik et al. recommend r > 1.3)")]
    RatioTooSmall {
        /// Which pair: "21" or "32".
        which: &'static str,
        /// The ratio.
        r: f64,
    },
    /// Two consecutive grids gave the same value, so no order can be observed.
    #[error(
        "GCI: grids {fine} and {coarse} give the same value {value}: the change is zero, so the apparent order is \
         undefined; the discretisation error is below what these grids resolve (report it as such) or the \
         quantity does not depend on the grid"
    )]
    ZeroChange {
        /// The finer grid of the pair (1 = finest).
        fine: usize,
        /// The coarser grid of the pair.
        coarse: usize,
        /// Their common value.
        value: f64,
    },
    /// A value the relative errors divide by is zero.
    #[error("GCI: the value on grid {grid} is zero, so relative errors are undefined; study a quantity offset from zero")]
    ZeroValue {
        /// The grid (1 or 2).
        grid: usize,
    },
    /// The apparent order came out as zero, below 1e-9 (the changes do not shrink at all).
    #[error("GCI: the apparent order is zero (|eps32| = |eps21| at a constant ratio): the solution is not converging")]
    ZeroOrder,
    /// The fixed-point iteration for p did not settle.
    #[error(
        "GCI: the iteration for the apparent order did not converge in {iterations} iterations (last p = {p}); \
         the refinement ratios r21 = {r21:.4} and r32 = {r32:.4} may be too different"
    )]
    NotConverged {
        /// Iterations done.
        iterations: usize,
        /// Last iterate.
        p: f64,
        /// Refinement ratio h2/h1.
        r21: f64,
        /// Refinement ratio h3/h2.
        r32: f64,
    },
}

/// Computes the grid convergence index of three solutions (Celik et al. 2008, steps 1-5).
pub fn gci(input: &GciInput) -> Result<GciResult, GciError> {
    if !(1..=3).contains(&input.dims) {
        return Err(GciError::Dims(input.dims));
    }
    if let Some(&n) = input.cells.iter().find(|n| !(n.is_finite() && **n > 0.0)) {
        return Err(GciError::BadCells(n));
    }
    if let Some(&v) = input.values.iter().find(|v| !v.is_finite()) {
        return Err(GciError::NonFinite(v));
    }
    let mut order = [0, 1, 2];
    order.sort_by(|&i, &j| input.cells[j].total_cmp(&input.cells[i]));
    let cells = order.map(|i| input.cells[i]);
    let phi = order.map(|i| input.values[i]);
    if let Some(w) = cells.windows(2).find(|w| w[0] == w[1]) {
        return Err(GciError::RepeatedCells(w[0]));
    }
    let h = cells.map(|n| n.recip().powf(1.0 / input.dims as f64));
    let (r21, r32) = (h[1] / h[0], h[2] / h[1]);
    for (which, r) in [("21", r21), ("32", r32)] {
        if r <= 1.0 + 1e-12 {
            return Err(GciError::RatioTooSmall { which, r });
        }
    }
    let (eps21, eps32) = (phi[1] - phi[0], phi[2] - phi[1]);
    for (fine, eps) in [(1, eps21), (2, eps32)] {
        if eps == 0.0 {
            return Err(GciError::ZeroChange { fine, coarse: fine + 1, value: phi[fine - 1] });
        }
    }
    if let Some(grid) = (1..=2).find(|&g| phi[g - 1] == 0.0) {
        return Err(GciError::ZeroValue { grid });
    }
    let p = apparent_order(r21, r32, eps21, eps32)?;
    // Below this, |eps32| and |eps21| agree to rounding: there is no observable order.
    if p < 1e-9 {
        return Err(GciError::ZeroOrder);
    }
    // r^p - 1 via expm1, accurate for small p.
    let (d21, d32) = ((p * r21.ln()).exp_m1(), (p * r32.ln()).exp_m1());
    let extrapolated = phi[0] + (phi[0] - phi[1]) / d21;
    let e_a21 = (eps21 / phi[0]).abs();
    let e_a32 = (eps32 / phi[1]).abs();
    let gci_fine = SAFETY_FACTOR * e_a21 / d21;
    let gci_coarse = SAFETY_FACTOR * e_a32 / d32;
    let ratio = eps21 / eps32;
    let convergence = if ratio < 0.0 {
        Convergence::Oscillatory
    } else if ratio < 1.0 {
        Convergence::Monotonic
    } else {
        Convergence::Divergent
    };
    Ok(GciResult {
        h,
        r21,
        r32,
        p,
        extrapolated,
        e_a21,
        e_ext21: ((extrapolated - phi[0]) / extrapolated).abs(),
        gci_fine,
        gci_coarse,
        asymptotic_ratio: gci_coarse / ((1.0 + d21) * gci_fine),
        convergence,
    })
}

/// Fixed-point iteration of Celik eqs. (3)-(5): p = |ln|eps32/eps21| + q(p)| / ln r21 with
/// q(p) = ln((r21^p - s) / (r32^p - s)), s = sign(eps32/eps21), starting from q = 0.
fn apparent_order(r21: f64, r32: f64, eps21: f64, eps32: f64) -> Result<f64, GciError> {
    let ratio = eps32 / eps21;
    let (ln21, ln32) = (r21.ln(), r32.ln());
    let q = |p: f64| {
        if ratio < 0.0 {
            ((r21.powf(p) + 1.0) / (r32.powf(p) + 1.0)).ln()
        } else if p == 0.0 {
            (ln21 / ln32).ln() // limit of (r21^p - 1) / (r32^p - 1) as p -> 0
        } else {
            ((p * ln21).exp_m1() / (p * ln32).exp_m1()).ln()
        }
    };
    let mut p = ratio.abs().ln().abs() / ln21;
    for _ in 0..MAX_ITERATIONS {
        let next = (ratio.abs().ln() + q(p)).abs() / ln21;
        if !next.is_finite() {
            break;
        }
        let settled = (next - p).abs() <= TOLERANCE * next;
        p = next;
        if settled {
            return Ok(p);
        }
    }
    Err(GciError::NotConverged { iterations: MAX_ITERATIONS, p, r21, r32 })
}

impl GciResult {
    /// A readable multi-line report of the study, percentages for the relative errors.
    pub fn summary(&self) -> String {
        let pct = |x: f64| format!("{:.4} %", 100.0 * x);
        let mut s = String::new();
        let _ = writeln!(s, "grid convergence index (Celik et al. 2008, safety factor {SAFETY_FACTOR})");
        let _ = writeln!(s, "  cell sizes h1, h2, h3     {:.6e}, {:.6e}, {:.6e}", self.h[0], self.h[1], self.h[2]);
        let _ = writeln!(s, "  refinement ratios         r21 = {:.4}, r32 = {:.4}", self.r21, self.r32);
        let _ = writeln!(s, "  apparent order p          {:.4}", self.p);
        let _ = writeln!(s, "  extrapolated value        {:.6e}", self.extrapolated);
        let _ = writeln!(s, "  approx. rel. error e_a21  {}", pct(self.e_a21));
        let _ = writeln!(s, "  extrap. rel. error e_ext  {}", pct(self.e_ext21));
        let _ = writeln!(s, "  GCI_fine (21)             {}", pct(self.gci_fine));
        let _ = writeln!(s, "  GCI_coarse (32)           {}", pct(self.gci_coarse));
        let _ = writeln!(s, "  asymptotic ratio          {:.4} (about 1 in the asymptotic range)", self.asymptotic_ratio);
        let _ = writeln!(s, "  convergence               {}", self.convergence);
        if self.r21.min(self.r32) < RECOMMENDED_MIN_RATIO {
            let _ = writeln!(s, "  note: a refinement ratio is below the recommended {RECOMMENDED_MIN_RATIO}");
        }
        if self.convergence != Convergence::Monotonic {
            let _ = writeln!(s, "  note: convergence is not monotonic, so the GCI is not a reliable error band");
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn study(cells: [f64; 3], values: [f64; 3], dims: usize) -> Result<GciResult, GciError> {
        gci(&GciInput { cells, values, dims })
    }

    /// Celik et al. (2008), Table 1, column phi = dimensionless reattachment length. The
    /// paper rounds its results, so each is checked to half a unit of its last printed digit.
    #[test]
    fn celik_table_1_reattachment_length() {
        let r = study([18000.0, 8000.0, 4500.0], [6.063, 5.972, 5.863], 2).unwrap();
        assert!((r.r21 - 1.5).abs() < 1e-12 && (r.r32 - 4.0 / 3.0).abs() < 1e-12);
        assert!((r.p - 1.53).abs() <= 0.005, "p = {}", r.p);
        assert!((r.extrapolated - 6.1685).abs() <= 0.00005, "phi_ext = {}", r.extrapolated);
        assert!((r.e_a21 - 0.015).abs() <= 0.0005, "e_a21 = {}", r.e_a21);
        assert!((r.e_ext21 - 0.017).abs() <= 0.0005, "e_ext21 = {}", r.e_ext21);
        assert!((r.gci_fine - 0.022).abs() <= 0.0005, "GCI_fine = {}", r.gci_fine);
        assert_eq!(r.convergence, Convergence::Monotonic);
        println!("{}", r.summary());
    }

    /// NASA NPARC "Examining spatial (grid) convergence" tutorial: the output of its
    /// `verify.f90` for h = 1, 2, 4 and f = 0.97050, 0.96854, 0.96178 (constant r = 2,
    /// safety factor 1.25). That program works in single precision: the differences
    /// f2 - f1 = -0.00196 keep only about 5 digits (6e-8 * 0.97 / 0.00196 = 3e-5 relative),
    /// so its p and GCIs are matched to 5e-5 relative and f_exact to 1e-7.
    #[test]
    fn nasa_verify_example() {
        let r = study([1.0, 0.5, 0.25], [0.97050, 0.96854, 0.96178], 1).unwrap();
        let close = |x: f64, published: f64| (x / published - 1.0).abs() <= 5e-5;
        assert!(close(r.p, 1.78618479), "p = {}", r.p);
        assert!((r.extrapolated - 0.971300304).abs() <= 1e-7, "f_exact = {}", r.extrapolated);
        assert!(close(100.0 * r.gci_fine, 0.103080), "GCI12 = {}", r.gci_fine);
        assert!(close(100.0 * r.gci_coarse, 0.356244), "GCI23 = {}", r.gci_coarse);
    }

    /// phi(h) = 3 + 5 h^2 on grids with h = 0.01, 0.02, 0.03 (r21 = 2, r32 = 1.5) is exactly
    /// a fixed point of the iteration: p = 2 and phi_ext = 3 up to rounding of the inputs
    /// (about 1e-16 / 1.5e-3 relative in the differences, far below 1e-10).
    #[test]
    fn exact_power_law_with_non_constant_ratio() {
        let hs = [0.01, 0.02, 0.03];
        let r = study(hs.map(|h: f64| h.powi(-2)), hs.map(|h| 3.0 + 5.0 * h * h), 2).unwrap();
        assert!((r.r21 - 2.0).abs() < 1e-12 && (r.r32 - 1.5).abs() < 1e-12);
        assert!((r.p - 2.0).abs() < 1e-10, "p = {}", r.p);
        assert!((r.extrapolated - 3.0).abs() < 1e-10, "phi_ext = {}", r.extrapolated);
        // Exact power law: GCI^32 = r21^p GCI^21 phi1/phi2.
        assert!((r.asymptotic_ratio - 3.0005 / 3.002).abs() < 1e-9, "ratio = {}", r.asymptotic_ratio);
        assert_eq!(r.convergence, Convergence::Monotonic);
    }

    #[test]
    fn order_of_inputs_is_irrelevant() {
        let hs: [f64; 3] = [0.1, 0.15, 0.25];
        let cells = hs.map(|h| h.powi(-3));
        let values = hs.map(|h| 1.0 - 0.3 * h.powf(1.7));
        let reference = study(cells, values, 3).unwrap();
        assert!((reference.p - 1.7).abs() < 1e-9 && (reference.extrapolated - 1.0).abs() < 1e-10);
        for perm in [[0, 2, 1], [1, 0, 2], [1, 2, 0], [2, 0, 1], [2, 1, 0]] {
            assert_eq!(study(perm.map(|i| cells[i]), perm.map(|i| values[i]), 3).unwrap(), reference);
        }
    }

    #[test]
    fn oscillatory_and_divergent_sequences() {
        // Changes -0.05 then +0.2 at r = 2: s = -1, q = 0, so p = ln 4 / ln 2 = 2.
        let r = study([4.0, 2.0, 1.0], [1.01, 0.96, 1.16], 1).unwrap();
        assert_eq!(r.convergence, Convergence::Oscillatory);
        assert!((r.p - 2.0).abs() < 1e-12, "p = {}", r.p);
        assert!(r.summary().contains("oscillatory") && r.summary().contains("not monotonic"));
        let r = study([4.0, 2.0, 1.0], [1.0, 1.1, 1.15], 1).unwrap();
        assert_eq!(r.convergence, Convergence::Divergent);
    }

    #[test]
    fn invalid_inputs_are_reported() {
        let ok_values = [1.0, 1.1, 1.3];
        let err = |cells, values, dims| study(cells, values, dims).unwrap_err();
        assert_eq!(err([4.0, 2.0, 1.0], ok_values, 4), GciError::Dims(4));
        assert_eq!(err([4.0, 0.0, 1.0], ok_values, 1), GciError::BadCells(0.0));
        assert!(matches!(err([4.0, f64::NAN, 1.0], ok_values, 1), GciError::BadCells(_)));
        assert_eq!(err([4.0, 4.0, 1.0], ok_values, 1), GciError::RepeatedCells(4.0));
        assert!(matches!(err([4.0, 2.0, 1.0], [1.0, f64::NAN, 1.3], 1), GciError::NonFinite(_)));
        let e = err([4.0, 4.0 - 1e-13, 1.0], ok_values, 1);
        assert!(matches!(e, GciError::RatioTooSmall { which: "21", .. }), "{e:?}");
        let e = err([4.0, 2.0, 1.0], [1.0, 1.0, 1.3], 1);
        assert_eq!(e, GciError::ZeroChange { fine: 1, coarse: 2, value: 1.0 });
        assert!(e.to_string().contains("apparent order is undefined"), "{e}");
        assert_eq!(err([4.0, 2.0, 1.0], [0.0, 1.0, 1.3], 1), GciError::ZeroValue { grid: 1 });
        assert_eq!(err([4.0, 2.0, 1.0], [1.0, 1.1, 1.2], 1), GciError::ZeroOrder);
    }

    #[test]
    fn summary_lists_every_quantity() {
        let s = study([18000.0, 8000.0, 4500.0], [6.063, 5.972, 5.863], 2).unwrap().summary();
        for key in ["apparent order", "extrapolated", "e_a21", "e_ext", "GCI_fine", "GCI_coarse", "asymptotic", "monotonic"] {
            assert!(s.contains(key), "{key} missing from\n{s}");
        }
        assert!(s.contains(" %"));
    }
}
