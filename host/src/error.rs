//! The error type of the host trainer library.

use std::path::PathBuf;

/// Result alias for the host library.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What can go wrong while importing, training, exporting or evaluating.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An error from the shared crate (decoding, model loading, inference).
    #[error(transparent)]
    Shared(#[from] scanside_shared::Error),
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A malformed or unexpected ONNX graph.
    #[error("ONNX: {0}")]
    Onnx(String),
    /// A backbone failed verification (wrong, truncated or tampered file).
    #[error("backbone {path}: {reason}")]
    Backbone {
        /// The source file.
        path: PathBuf,
        /// What did not match.
        reason: String,
    },
    /// The dataset cannot be trained on (missing folder, too few images, …).
    #[error("dataset {path}: {reason}")]
    Dataset {
        /// The dataset folder.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// tract failed while extracting features.
    #[error("feature extraction: {0}")]
    Tract(String),
    /// candle failed while training the head.
    #[error("head training: {0}")]
    Training(String),
    /// The exported model does not reproduce the in-memory pipeline.
    #[error("export verification failed: {0}")]
    Verification(String),
    /// The int8 model does not keep the f32 model's decisions.
    #[error("int8 model refused: {0}")]
    Quantization(String),
    /// An option has a value that cannot work.
    #[error("invalid option: {0}")]
    Config(String),
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

impl From<candle_core::Error> for Error {
    fn from(e: candle_core::Error) -> Self {
        Error::Training(e.to_string())
    }
}
