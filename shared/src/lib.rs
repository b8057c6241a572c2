//! What the scanside host trainer and the device firmware share.
//!
//! Everything that must behave the same on both sides of the product lives
//! here, so it exists exactly once:
//!
//! - [`preprocess`]: the one image path, decode → RGB → resize → normalise →
//!   tensor. Host and device call the same function and get bit-identical
//!   tensors for the same file.
//! - [`dicom`]: DICOM MR files, windowed to the 8-bit picture the model was
//!   trained on (the first step of [`preprocess`] for `.dcm` files);
//!   [`dicom_lengths`] first refuses a file whose declared element lengths
//!   run past its end; [`limits`] bounds what either decoder may allocate.
//! - [`manifest`]: the model manifest, the facts a model carries in its ONNX
//!   `metadata_props` (preprocessing, labels, threshold, model id, …).
//! - [`classifier`]: loading a scanside ONNX model in tract and classifying
//!   scans, and the result lines both binaries print.
//! - [`explain`]: Grad-CAM heatmaps of the dense head's evidence, and the
//!   overlay pictures both binaries write.
//! - [`audit`]: the audit log's record types and framing (postcard, COBS,
//!   CRC-32), its durable writer and its forgiving reader.
//! - [`bundle`]: export bundles (audit records, archived scans, overlays)
//!   that carry what a box saw to the host, in the audit log's framing.
//! - [`guard`]: the out-of-scope guard a model carries (cheap input checks
//!   and the distance of its features to the training images').
//! - [`shipped`]: where the shipped model is found when none is named.
//!
//! This crate has no command line, no GPIO and no file watching: those belong
//! to the binaries (`host/`, `device/`).
//!
//! scanside is research software, not a medical device.

pub mod audit;
pub mod bundle;
pub mod classifier;
pub mod dicom;
pub mod dicom_lengths;
pub mod error;
pub mod exit;
pub mod explain;
pub mod guard;
pub mod inputs;
pub mod limits;
pub mod manifest;
pub mod preprocess;
pub mod shipped;

pub use error::{Error, Result};

/// The scanside version, recorded in every model and result.
pub const SCANSIDE_VERSION: &str = env!("CARGO_PKG_VERSION");

/// Hex SHA-256 of a byte slice.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(sha256(bytes))
}

/// SHA-256 of `bytes`, raw (as the audit records store it).
pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    Sha256::digest(bytes).into()
}
