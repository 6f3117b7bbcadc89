//! Case files, models and time integration for tessera.
pub mod case;
pub mod error;
pub mod expr;
pub mod flow;
pub mod flow_run;
pub mod heat;
pub mod linsolve;
pub mod output;
pub mod perf;
pub mod poisson;
pub mod run;
pub mod simd;

pub use case::Case;
pub use error::{CaseError, RunError};
