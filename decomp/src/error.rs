//! Errors of the decomposition layer.
use std::path::PathBuf;

/// Errors raised by layout, communication and I/O.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The requested decomposition cannot be built.
    #[error("decomposition: {0}")]
    Layout(String),
    /// HDF5 failure, with the file it concerned.
    #[error("{path}: {message}")]
    Io {
        /// File being read or written.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// Communication failure.
    #[error("communication: {0}")]
    Comm(String),
}

impl Error {
    /// An I/O error about `path`.
    pub fn io(path: impl Into<PathBuf>, message: impl std::fmt::Display) -> Self {
        Error::Io { path: path.into(), message: message.to_string() }
    }
}

/// Result with [`Error`] as the default error type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
