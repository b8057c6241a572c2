//! External validation: a finished model scored on labelled folders it was
//! never fitted to (`--validate DIR` on `train`, `retrain` and `evaluate`).
//!
//! Cross-validation on one small dataset says how the recipe does on more
//! scans *like those*; a folder from another scanner or site says whether
//! the answers hold elsewhere. The figures here come only from the
//! validation folder's own images:
//!
//! * an image whose bytes equal a training image's, or whose perceptual
//!   hash is within the near-duplicate distance of one, is **excluded** and
//!   listed with the training image it copies (a copy would measure memory);
//! * the threshold is the model's own, fixed before the folder is read;
//! * the bootstrap resamples the folder's own near-duplicate groups.
//!
//! [`score`] computes every figure from `(label, probability)` pairs;
//! where those come from (the in-memory final model on cached backbone
//! features during `train`, the model file in tract for `evaluate`) is the
//! caller's business. The JSON layout is [`ValidationResult`]'s, specified
//! in `docs/validation.md`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Serialize;

use crate::Result;
use crate::dataset::{Dataset, DatasetOptions, Item, Skipped};
use crate::dedup;
use crate::features::FeatureCache;
use crate::metrics::{Metrics, bootstrap_ci, roc_curve};

/// A validation image left out because the model was trained on it (or on
/// a near-copy of it).
#[derive(Clone, Debug, Serialize)]
pub struct Excluded {
    /// The validation image.
    pub file: PathBuf,
    /// The training image it copies.
    pub training_file: PathBuf,
    /// Perceptual-hash distance (0 for identical bytes).
    pub distance: u32,
}

/// A validation folder read and checked against the training data.
#[derive(Clone, Debug)]
pub struct ValidationSet {
    /// The folder as given.
    pub folder: PathBuf,
    /// Its usable images that are not copies of training images.
    pub dataset: Dataset,
    /// Images left out as copies of training images.
    pub excluded: Vec<Excluded>,
}

impl ValidationSet {
    /// Read `opts.root` (same class layout as training) and leave out every
    /// image within `max_distance` of a `training` image. Fails like
    /// [`Dataset::load`] (missing class folder, empty class), also when the
    /// exclusion leaves a class empty.
    pub fn load(
        opts: &DatasetOptions,
        cache: &FeatureCache,
        training: &[Item],
        max_distance: u32,
    ) -> Result<ValidationSet> {
        let mut dataset = Dataset::load_cached(opts, cache)?;
        let mut excluded = Vec::new();
        dataset.items.retain(|v| {
            let copy = training
                .iter()
                .map(|t| {
                    let d = if t.sha256 == v.sha256 {
                        0
                    } else {
                        t.phash.dist(&v.phash)
                    };
                    (d, t)
                })
                .filter(|(d, _)| *d <= max_distance)
                .min_by_key(|(d, _)| *d);
            match copy {
                Some((distance, t)) => {
                    excluded.push(Excluded {
                        file: v.path.clone(),
                        training_file: t.path.clone(),
                        distance,
                    });
                    false
                }
                None => true,
            }
        });
        for (label, class) in dataset.labels.iter().enumerate() {
            if !dataset.items.iter().any(|i| usize::from(i.label) == label) {
                return Err(crate::Error::Dataset {
                    path: opts.root.clone(),
                    reason: format!(
                        "validation class `{class}` has no image that is not a copy of a \
                         training image ({} excluded)",
                        excluded.len()
                    ),
                });
            }
        }
        Ok(ValidationSet {
            folder: opts.root.clone(),
            dataset,
            excluded,
        })
    }
}

/// One scored validation image.
#[derive(Clone, Debug, Serialize)]
pub struct Scored {
    /// The image.
    pub file: PathBuf,
    /// True label (1 = positive class).
    pub label: u8,
    /// Positive-class probability.
    pub probability: f32,
}

/// A model's figures on one validation folder (`validation.json`, one
/// entry of `sets`; specified in `docs/validation.md`).
#[derive(Clone, Debug, Serialize)]
pub struct ValidationResult {
    /// The folder as given on the command line.
    pub folder: PathBuf,
    /// What produced the probabilities, e.g. `f32` or `int8`.
    pub engine: String,
    /// Images scored.
    pub n: usize,
    /// Images scored per class, `[negative, positive]`.
    pub class_counts: [usize; 2],
    /// ROC AUC.
    pub auc: f64,
    /// 95 % bootstrap interval of the AUC (the folder's near-duplicate
    /// groups resampled).
    pub auc_ci: [f64; 2],
    /// Metrics at the model's threshold.
    pub at_threshold: Metrics,
    /// 95 % bootstrap intervals at the model's threshold: `accuracy_ci`,
    /// `sensitivity_ci`, `specificity_ci`, `precision_ci`, `f1_ci`.
    pub ci: BTreeMap<String, [f64; 2]>,
    /// Metrics at the plain 0.5 decision.
    pub at_half: Metrics,
    /// Images left out as copies of training images.
    pub excluded: Vec<Excluded>,
    /// Files that could not be read or scored, with reasons.
    pub skipped: Vec<Skipped>,
    /// Every scored image (not in the JSON; for plots and reports).
    #[serde(skip)]
    pub scored: Vec<Scored>,
}

/// Bootstrap resamples for the intervals.
pub const BOOTSTRAP: usize = 1000;

/// Every figure of one folder from its scored images. `items` are the
/// folder's images in the order of `probabilities` (used for the
/// near-duplicate groups of the bootstrap).
#[allow(clippy::too_many_arguments)]
pub fn score(
    folder: PathBuf,
    engine: &str,
    items: &[Item],
    probabilities: &[f32],
    threshold: f32,
    dedup_distance: u32,
    excluded: Vec<Excluded>,
    skipped: Vec<Skipped>,
    seed: u64,
) -> ValidationResult {
    let labels: Vec<u8> = items.iter().map(|i| i.label).collect();
    let groups = dedup::group(items, dedup_distance);
    let shifted: Vec<f32> = probabilities.iter().map(|p| p - threshold + 0.5).collect();
    let mut ci: BTreeMap<String, [f64; 2]> = bootstrap_ci(
        &[shifted],
        probabilities,
        &labels,
        &groups.of_item,
        BOOTSTRAP,
        seed,
    )
    .into_iter()
    .map(|(k, v)| (format!("{k}_ci"), v))
    .collect();
    let auc_ci = ci.remove("auc_ci").unwrap_or([f64::NAN; 2]);
    let at_threshold = Metrics::compute(probabilities, &labels, threshold);
    let positives = labels.iter().filter(|&&y| y == 1).count();
    ValidationResult {
        folder,
        engine: engine.into(),
        n: labels.len(),
        class_counts: [labels.len() - positives, positives],
        auc: at_threshold.auc,
        auc_ci,
        ci,
        at_half: Metrics::compute(probabilities, &labels, 0.5),
        at_threshold,
        excluded,
        skipped,
        scored: items
            .iter()
            .zip(probabilities)
            .map(|(i, &p)| Scored {
                file: i.path.clone(),
                label: i.label,
                probability: p,
            })
            .collect(),
    }
}

impl ValidationResult {
    /// The labels and probabilities of the scored images.
    pub fn pairs(&self) -> (Vec<u8>, Vec<f32>) {
        self.scored.iter().map(|s| (s.label, s.probability)).unzip()
    }

    /// The ROC curve of the scored images.
    pub fn roc(&self) -> Vec<(f64, f64)> {
        let (y, p) = self.pairs();
        roc_curve(&p, &y)
    }

    /// The short form stored in a model's metadata (`scanside.validation`).
    pub fn summary(&self) -> serde_json::Value {
        serde_json::json!({
            "folder": self.folder,
            "engine": self.engine,
            "n": self.n,
            "excluded": self.excluded.len(),
            "auc": self.auc,
            "auc_ci": self.auc_ci,
            "threshold": self.at_threshold.threshold,
            "accuracy": self.at_threshold.accuracy,
            "sensitivity": self.at_threshold.sensitivity,
            "specificity": self.at_threshold.specificity,
            "at_half": {
                "accuracy": self.at_half.accuracy,
                "sensitivity": self.at_half.sensitivity,
                "specificity": self.at_half.specificity,
            },
        })
    }
}

/// The `validation.json` a run writes: every set's result.
#[derive(Clone, Debug, Serialize)]
pub struct ValidationFile<'a> {
    /// Research notice.
    pub notice: &'static str,
    /// Layout version of this file (`docs/validation.md`).
    pub format_version: u32,
    /// The model scored.
    pub model_id: &'a str,
    /// One entry per validation folder, in command-line order.
    pub sets: &'a [ValidationResult],
}

/// Layout version of `validation.json`.
pub const VALIDATION_FORMAT_VERSION: u32 = 1;

/// Metadata key of the validation summary in a model.
pub const MANIFEST_KEY: &str = "scanside.validation";

#[cfg(test)]
mod tests {
    use super::*;
    use image_hasher::ImageHash;

    fn item(name: &str, label: u8, sha: &str, bits: u64) -> Item {
        Item {
            path: PathBuf::from(name),
            label,
            sha256: sha.into(),
            phash: ImageHash::from_bytes(&bits.to_be_bytes()).unwrap(),
            dims: (8, 8),
            source: 0,
        }
    }

    #[test]
    fn figures_use_the_models_threshold_and_count_classes() {
        let items = [
            item("a", 0, "1", 0x0000_0000_0000_0000),
            item("b", 0, "2", 0xffff_0000_0000_0000),
            item("c", 1, "3", 0x0000_ffff_0000_0000),
            item("d", 1, "4", 0x0000_0000_ffff_0000),
        ];
        let p = [0.1, 0.4, 0.3, 0.9];
        let r = score("v".into(), "f32", &items, &p, 0.35, 6, vec![], vec![], 1);
        assert_eq!(r.n, 4);
        assert_eq!(r.class_counts, [2, 2]);
        // At 0.35: a→no, b→yes (false positive), c→no (false negative), d→yes.
        assert_eq!(r.at_threshold.accuracy, 0.5);
        assert_eq!(r.at_threshold.sensitivity, 0.5);
        assert_eq!(r.at_threshold.specificity, 0.5);
        // At 0.5 only d is positive.
        assert_eq!(r.at_half.sensitivity, 0.5);
        assert_eq!(r.at_half.specificity, 1.0);
        assert!((r.auc - 0.75).abs() < 1e-12);
        assert!(r.auc_ci[0] <= r.auc && r.auc <= r.auc_ci[1]);
        assert!(r.ci.contains_key("sensitivity_ci"));
        assert!(!r.ci.contains_key("auc_ci"));
    }
}
