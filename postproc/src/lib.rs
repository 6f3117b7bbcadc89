//! Post-processing of tessera run output: `tessera post RUN_DIR PIPELINE.toml`.
//!
//! A pipeline file (TOML, docs/POST.md) names derived fields and outputs; [`pipeline`]
//! parses and checks it, [`plan`] lowers every expression into one arena of typed nodes
//! with content keys (identical sub-expressions become one node), [`optimise`] culls
//! what no output needs and exports the plan as Graphviz, [`kernel`] fuses element-wise
//! chains into row kernels, and [`execute`] streams the snapshots through the plan
//! within a bound on bytes in flight, reads on their own thread, computes on the rayon
//! pool. [`sinks`] writes CSV, JSON, PNG and HDF5 + XDMF, each under a temporary name
//! renamed when complete, and a result cache keyed by content lets a re-run compute
//! only what changed.

pub mod error;
pub mod execute;
pub mod expr;
pub mod kernel;
pub mod optimise;
pub mod pipeline;
pub mod plan;
pub mod plot;
pub mod progress;
pub mod rundir;
pub mod sinks;

pub use error::{PostError, Result};
pub use sinks::{run_pipeline, PostOptions, PostReport};
