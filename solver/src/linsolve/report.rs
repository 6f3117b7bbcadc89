//! What a linear solve reports: why it stopped, how far it got, what it cost.
use super::options::Precond;
use serde::Serialize;

/// Why a solve stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// Still iterating (never in a finished report).
    Running,
    /// ‖r‖ ≤ rtol ‖b‖.
    ConvergedRtol,
    /// ‖r‖ ≤ atol.
    ConvergedAtol,
    /// The iteration limit was reached first.
    MaxIterations,
    /// A NaN or infinity appeared.
    DivergedNan,
    /// The operator or preconditioner is not positive definite (CG).
    Indefinite,
    /// A BiCGStab breakdown (ρ or ω became zero).
    Breakdown,
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Reason::Running => "running",
            Reason::ConvergedRtol => "converged (rtol)",
            Reason::ConvergedAtol => "converged (atol)",
            Reason::MaxIterations => "stopped at max_iterations",
            Reason::DivergedNan => "diverged (NaN or infinity)",
            Reason::Indefinite => "stopped: operator or preconditioner not positive definite",
            Reason::Breakdown => "stopped: BiCGStab breakdown",
        })
    }
}

impl Reason {
    /// True for the converged reasons.
    pub fn converged(self) -> bool {
        matches!(self, Reason::ConvergedRtol | Reason::ConvergedAtol)
    }
}

/// The result of one linear solve.
#[derive(Clone, Debug, Serialize)]
pub struct SolveReport {
    /// Method name (`cg`, `cg1`, `fcg`, `bicgstab`, `mg`).
    pub method: &'static str,
    /// Preconditioner name.
    pub precond: &'static str,
    /// Why it stopped.
    pub reason: Reason,
    /// Iterations done.
    pub iterations: usize,
    /// ‖b‖₂ (after removing the null space of a singular operator).
    pub rhs_norm: f64,
    /// Final ‖r‖₂ (unpreconditioned).
    pub final_residual: f64,
    /// ‖r‖₂ / ‖b‖₂ after each iteration, the initial residual first.
    pub history: Vec<f64>,
    /// Global reductions (allreduce calls) made.
    pub reductions: u64,
    /// Point-to-point messages this rank sent.
    pub messages: u64,
    /// Bytes this rank sent.
    pub bytes: u64,
    /// Wall seconds.
    pub seconds: f64,
    /// Mean removed from the right-hand side of a singular problem (0 otherwise): a
    /// large value means the data were incompatible (∫f + boundary flux ≠ 0).
    pub projected_mean: f64,
}

impl SolveReport {
    pub(crate) fn new(method: &'static str, precond: Precond) -> Self {
        let precond = match precond {
            Precond::Mg => "mg",
            Precond::Jacobi => "jacobi",
            Precond::None => "none",
        };
        SolveReport {
            method,
            precond,
            reason: Reason::Running,
            iterations: 0,
            rhs_norm: 0.0,
            final_residual: 0.0,
            history: Vec::new(),
            reductions: 0,
            messages: 0,
            bytes: 0,
            seconds: 0.0,
            projected_mean: 0.0,
        }
    }

    pub(crate) fn push(&mut self, rnorm: f64, bnorm: f64) {
        self.history.push(if bnorm > 0.0 { rnorm / bnorm } else { rnorm });
    }

    /// Final ‖r‖ / ‖b‖.
    pub fn relative_residual(&self) -> f64 {
        if self.rhs_norm > 0.0 {
            self.final_residual / self.rhs_norm
        } else {
            self.final_residual
        }
    }

    /// Mean reduction of the residual per iteration.
    pub fn convergence_factor(&self) -> f64 {
        match (self.history.first(), self.history.last()) {
            (Some(&a), Some(&b)) if self.iterations > 0 && a > 0.0 => (b / a).powf(1.0 / self.iterations as f64),
            _ => 0.0,
        }
    }
}
