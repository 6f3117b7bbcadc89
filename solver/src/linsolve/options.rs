//! Options of the linear solvers (`[numerics.<solver>]` in a case file).

/// Multigrid cycle shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cycle {
    /// One coarse visit per level.
    V,
    /// Two coarse visits per level.
    W,
    /// An F cycle followed by a V cycle on each coarse level.
    F,
}

/// Multigrid smoother.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Smoother {
    /// Red-black Gauss–Seidel (symmetric: red-black before, black-red after).
    Rbgs,
    /// Chebyshev polynomial in the Jacobi-scaled operator.
    Chebyshev,
}

/// How multigrid interpolates a coarse correction (restriction is its adjoint).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Interpolation {
    /// From the two nearest coarse centres per axis (8 in 3D); restriction reads
    /// 4 fine cells per axis.
    Linear,
    /// Cubic Lagrange through four coarse centres per axis (64 in 3D); restriction
    /// reads 8 fine cells per axis. The two-grid contraction of red-black
    /// Gauss–Seidel V(2,2) on the 7-point Laplacian drops from about 0.19 to 0.09,
    /// close to a Galerkin coarse operator's, with the 7-point coarse stencils kept.
    /// Also fewer iterations with variable coefficients, smooth or with 100–1000×
    /// jumps (measured on 257² and 65³ Poisson cases). The default.
    Cubic,
}

/// Multigrid options.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MgOptions {
    /// Cycle shape.
    pub cycle: Cycle,
    /// Smoothing sweeps before the coarse-grid correction.
    pub pre_smooth: usize,
    /// Smoothing sweeps after it.
    pub post_smooth: usize,
    /// Smoother.
    pub smoother: Smoother,
    /// Chebyshev: the interval is `[λmax / ratio, λmax]`.
    pub chebyshev_ratio: f64,
    /// Coarsen until at most this many cells remain; that level is solved directly.
    pub coarse_max: usize,
    /// Gather a level on every rank once it has at most this many cells.
    pub agglomerate_below: usize,
    /// At most this many levels.
    pub max_levels: usize,
    /// Interpolation of the coarse corrections.
    pub interpolation: Interpolation,
}

impl Default for MgOptions {
    fn default() -> Self {
        MgOptions {
            cycle: Cycle::V,
            pre_smooth: 2,
            post_smooth: 2,
            smoother: Smoother::Rbgs,
            chebyshev_ratio: 4.0,
            coarse_max: 256,
            agglomerate_below: 4096,
            max_levels: 30,
            interpolation: Interpolation::Cubic,
        }
    }
}

/// Krylov method (or multigrid alone).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    /// Preconditioned conjugate gradients (three reductions per iteration).
    Cg,
    /// Chronopoulos–Gear CG: one fused reduction per iteration.
    Cg1,
    /// Flexible CG (Notay 2000): the Polak–Ribière β, one more dot product in the same
    /// reduction, so the preconditioner need not be symmetric or fixed (V(1,2) or F
    /// cycles).
    Fcg,
    /// Preconditioned BiCGStab, for non-symmetric operators.
    BiCgStab,
    /// Multigrid cycles alone (Richardson iteration with the cycle).
    Mg,
}

/// Preconditioner of a Krylov method.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Precond {
    /// One multigrid cycle.
    Mg,
    /// Diagonal scaling.
    Jacobi,
    /// None.
    None,
}

/// Everything a linear solve needs to know.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SolverOptions {
    /// Krylov method.
    pub method: Method,
    /// Preconditioner.
    pub precond: Precond,
    /// Stop when ‖r‖₂ ≤ rtol · ‖b‖₂ (unpreconditioned residual).
    pub rtol: f64,
    /// Or when ‖r‖₂ ≤ atol.
    pub atol: f64,
    /// Give up after this many iterations.
    pub max_iterations: usize,
    /// Dot products and norms exact then rounded once: iterates do not depend on the
    /// rank count.
    pub reproducible: bool,
    /// Treat non-convergence as a failed run instead of a reported result.
    pub error_if_not_converged: bool,
    /// Multigrid options (preconditioner or solver).
    pub mg: MgOptions,
}

impl Default for SolverOptions {
    fn default() -> Self {
        SolverOptions {
            method: Method::Cg,
            precond: Precond::Mg,
            rtol: 1e-8,
            atol: 0.0,
            max_iterations: 200,
            reproducible: false,
            error_if_not_converged: false,
            mg: MgOptions::default(),
        }
    }
}
