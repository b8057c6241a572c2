//! The error type of the shared crate.

use std::path::PathBuf;

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in shared code. Messages name the file and the
/// problem, so a binary can print them as they are.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file could not be read.
    #[error("{path}: cannot read: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The bytes are not an image this build can decode.
    #[error("{path}: not a readable image: {reason}")]
    Decode {
        /// The file (or a label for in-memory bytes).
        path: PathBuf,
        /// What the decoder said.
        reason: String,
    },
    /// A readable file the model is not for: a DICOM object of another
    /// modality, without pixel data, or in a transfer syntax this build
    /// cannot decode.
    #[error("{path}: refused: {reason}")]
    Refused {
        /// The file.
        path: PathBuf,
        /// Why the model is not for it.
        reason: String,
    },
    /// The image would need more memory (or pixels) than the decode limit.
    #[error("{path}: image refused: {reason}")]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// Dimensions or size, and the limit.
        reason: String,
    },
    /// A model file is unusable: not ONNX, wrong shape, tract refused it.
    #[error("{path}: unusable model: {reason}")]
    Model {
        /// The model file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A model's scanside metadata is missing or malformed.
    #[error("model metadata: {0}")]
    Manifest(String),
    /// Inference failed at run time.
    #[error("inference failed: {0}")]
    Inference(String),
}

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}
