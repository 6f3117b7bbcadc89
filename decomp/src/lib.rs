//! Domain decomposition core of tessera.
//!
//! Structured grids and index boxes ([`grid`]), the Cartesian block layout
//! ([`layout`]), fields with ghost layers ([`field`]), the [`Comm`] trait with
//! its MPI, in-process thread and serial backends ([`comm`]), halo exchange
//! ([`halo`]), partitioned parallel-HDF5 field I/O ([`io`]) and reproducible
//! (bit-identical for any rank count) global sums and dot products ([`reduce`]).
//!
//! Only this crate talks to MPI and HDF5; physics code sees [`Comm`].

pub mod comm;
pub mod error;
pub mod field;
pub mod grid;
pub mod h5read;
pub mod halo;
pub mod io;
pub mod layout;
pub mod reduce;
pub mod xdmf;

pub use comm::{Comm, ReduceOp};
pub use error::{Error, Result};
pub use field::Field;
pub use grid::{Grid, IndexBox};
pub use halo::{HaloPlan, Stencil};

pub use layout::BlockLayout;
