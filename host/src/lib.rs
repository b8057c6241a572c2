//! The scanside host trainer.
//!
//! Turns a folder of labelled brain-MRI slices into one verified ONNX
//! classifier, with an honest, out-of-fold estimate of how well it works.
//! The pipeline, module by module:
//!
//! 1. [`backbone`]: import the frozen ImageNet VGG16 (cut, verify, pin).
//! 2. [`dataset`] and [`dedup`]: read the class folders, skip bad files,
//!    group near-duplicates.
//! 3. [`augment`] and [`features`]: augmented views → backbone feature maps
//!    with tract, cached on disk.
//! 4. [`head`]: the dense head, trained with candle ([`adamw`]: its
//!    optimiser, in place).
//! 5. [`cv`] and [`metrics`]: stratified, duplicate-grouped k-fold; metrics,
//!    thresholds, bootstrap intervals.
//! 6. [`export`]: one ONNX graph (backbone + pooling + head + softmax) written
//!    with tract's protobuf types ([`onnx_graph`]) and verified in tract.
//! 7. [`train`] runs it all and writes the model, `cv.json`, [`report`]
//!    and [`html_report`] (plots from [`plots`]); [`evaluate`] scores any
//!    model on any labelled folder.
//! 8. [`review`]: a device's export bundle into a review queue, and the
//!    labelling session that turns queued scans into training data.
//! 9. [`retrain`]: old data plus reviewed scans → a candidate, compared
//!    with its parent on the same folds and a regression set, promoted
//!    only if it is not worse.
//! 10. [`explain`] draws where a model looked (Grad-CAM overlays).
//! 11. [`validation`] scores a finished model on folders it was never
//!     fitted to; [`operating_point`] chooses its threshold; [`adaptation`]
//!     measures how many reviewed scans of a new site it takes to adapt.
//! 12. [`guard`] fits the out-of-scope guard the model carries to its
//!     training features (threshold from out-of-fold scores).
//!
//! Image preprocessing and model loading are shared with the device through
//! `scanside_shared`. scanside is research software, not a medical device.

pub mod adamw;
pub mod adaptation;
pub mod augment;
pub mod backbone;
pub mod calibrate;
pub mod cv;
pub mod dataset;
pub mod dedup;
pub mod error;
pub mod evaluate;
pub mod explain;
pub mod export;
pub mod features;
pub mod guard;
pub mod head;
pub mod html_report;
pub mod int8;
pub mod logistic;
pub mod metrics;
pub mod onnx_graph;
pub mod operating_point;
pub mod plots;
pub mod quantize;
pub mod report;
pub mod retrain;
pub mod review;
pub mod train;
pub mod validation;

pub use error::{Error, Result};
