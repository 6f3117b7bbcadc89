//! Linear solvers on the decomposed grid: the matrix-free operator
//! `α u - β ∇·(k ∇u)` with Dirichlet / Neumann / periodic faces, geometric
//! multigrid (V, W, F cycles; red-black Gauss–Seidel or Chebyshev smoothing;
//! agglomerated coarse levels; a direct coarsest solve) and Krylov methods (CG,
//! single-reduction CG, BiCGStab) preconditioned by it.
pub mod axis;
pub mod krylov;
pub mod level;
pub mod mg;
pub mod options;
pub mod report;

pub use axis::BcKind;
pub use krylov::LinearSolver;
pub use mg::{Multigrid, OperatorSpec};
pub use options::{Cycle, Interpolation, Method, MgOptions, Precond, Smoother, SolverOptions};
pub use report::{Reason, SolveReport};

#[cfg(test)]
mod tests;
