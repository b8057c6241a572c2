//! The error type of the device library.

use std::path::PathBuf;

/// Result alias for the device library.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What can go wrong on the device.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The configuration file is unreadable or wrong; names the key.
    #[error("{path}: {reason}")]
    Config {
        /// The configuration file.
        path: PathBuf,
        /// What is wrong, naming the key.
        reason: String,
    },
    /// A file or folder could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The model is unusable or not the expected one.
    #[error("model: {0}")]
    Model(String),
    /// An error from the shared crate.
    #[error(transparent)]
    Shared(#[from] scanside_shared::Error),
    /// The DICOM storage node could not start.
    #[error("DICOM: {0}")]
    Dicom(String),
    /// A GPIO pin failed.
    #[error("GPIO: {0}")]
    Gpio(String),
}

impl Error {
    /// An I/O error on `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}
