//! `scanside evaluate`: a model's metrics on any labelled folder.
//!
//! The folder uses the same class-per-folder layout as training, with the
//! model's own labels as folder names. Every image goes through the shared
//! preprocessing and the model in tract, exactly as on the device; the
//! decision uses the model's recorded threshold.

use std::path::{Path, PathBuf};

use rayon::prelude::*;
use serde::Serialize;

use scanside_shared::classifier::{Classifier, NOTICE};
use scanside_shared::manifest::ModelManifest;

use crate::Result;
use crate::dataset::{Dataset, DatasetOptions, Item, Skipped};
use crate::metrics::Metrics;

/// The JSON `evaluate --json` prints.
#[derive(Debug, Serialize)]
pub struct Evaluation {
    /// Research notice.
    pub notice: &'static str,
    /// Model id.
    pub model_id: String,
    /// Model file SHA-256.
    pub model_sha256: String,
    /// Metrics at the model's threshold (`n`, `accuracy`, …, `confusion`).
    #[serde(flatten)]
    pub metrics: Metrics,
    /// Files skipped (unreadable), with reasons.
    pub skipped: Vec<Skipped>,
    /// The model's manifest (for the HTML report; not in the JSON).
    #[serde(skip)]
    pub manifest: ModelManifest,
    /// Every scored image (for the HTML report; not in the JSON).
    #[serde(skip)]
    pub predictions: Vec<Prediction>,
}

/// One scored image.
#[derive(Clone, Debug)]
pub struct Prediction {
    /// The file.
    pub path: PathBuf,
    /// True label (1 = positive class).
    pub label: u8,
    /// Positive-class probability.
    pub probability: f32,
}

/// Where `evaluate` writes its HTML report unless told otherwise:
/// `<model stem>.evaluation.html` in the working directory (never beside
/// the model, which may be in a system folder such as
/// `/usr/share/scanside/models/`).
pub fn default_report_path(model: &Path) -> PathBuf {
    let stem = model
        .file_stem()
        .map_or_else(|| "model".into(), |s| s.to_string_lossy().into_owned());
    PathBuf::from(format!("{stem}.evaluation.html"))
}

/// A folder scored by a model file: the images that were scored (in
/// order), their probabilities, and the files that were skipped.
struct Scoring {
    items: Vec<Item>,
    probabilities: Vec<f32>,
    skipped: Vec<Skipped>,
}

/// Score every image of the labelled folder `data` with `classifier`.
fn score_folder(classifier: &Classifier, data: &Path) -> Result<Scoring> {
    let m = classifier.manifest();
    let negative = m
        .labels
        .iter()
        .find(|l| **l != m.positive_class)
        .expect("two labels");
    let mut opts = DatasetOptions::new(data);
    opts.positive = m.positive_class.clone();
    opts.negative = negative.clone();
    let dataset = Dataset::load(&opts)?;
    let results: Vec<Result<f32>> = dataset
        .items
        .par_iter()
        .map(|item| Ok(classifier.classify_file(&item.path)?.probability))
        .collect();
    let mut scoring = Scoring {
        items: Vec::new(),
        probabilities: Vec::new(),
        skipped: dataset.skipped.clone(),
    };
    for (item, r) in dataset.items.into_iter().zip(results) {
        match r {
            Ok(p) => {
                scoring.items.push(item);
                scoring.probabilities.push(p);
            }
            Err(e) => scoring.skipped.push(Skipped {
                path: item.path.clone(),
                reason: e.to_string(),
            }),
        }
    }
    Ok(scoring)
}

/// Score `model` on each validation folder (`evaluate --validate`), with
/// the layout of `train --validate`. The model does not list its training
/// images, so copies of them cannot be left out here: use folders the
/// model was not trained on.
pub fn validate(model: &Path, folders: &[PathBuf], dedup_distance: u32) -> Result<Validated> {
    let classifier = Classifier::load(model)?;
    let m = classifier.manifest();
    let sets = folders
        .iter()
        .map(|folder| {
            let s = score_folder(&classifier, folder)?;
            Ok(crate::validation::score(
                folder.clone(),
                "model file",
                &s.items,
                &s.probabilities,
                m.threshold,
                dedup_distance,
                Vec::new(),
                s.skipped,
                0,
            ))
        })
        .collect::<Result<_>>()?;
    Ok(Validated {
        model_id: m.model_id.clone(),
        manifest: m.clone(),
        sets,
    })
}

/// What `evaluate --validate` found.
pub struct Validated {
    /// The model's id.
    pub model_id: String,
    /// The model's manifest.
    pub manifest: ModelManifest,
    /// One result per folder.
    pub sets: Vec<crate::validation::ValidationResult>,
}

/// Evaluate `model` on the labelled folder `data`.
pub fn run(model: &Path, data: &Path) -> Result<Evaluation> {
    let classifier = Classifier::load(model)?;
    let m = classifier.manifest();
    let s = score_folder(&classifier, data)?;
    let skipped = s.skipped;
    let predictions: Vec<Prediction> = s
        .items
        .iter()
        .zip(&s.probabilities)
        .map(|(item, &p)| Prediction {
            path: item.path.clone(),
            label: item.label,
            probability: p,
        })
        .collect();
    let probs: Vec<f32> = predictions.iter().map(|p| p.probability).collect();
    let labels: Vec<u8> = predictions.iter().map(|p| p.label).collect();
    Ok(Evaluation {
        notice: NOTICE,
        model_id: m.model_id.clone(),
        model_sha256: classifier.sha256().to_string(),
        metrics: Metrics::compute(&probs, &labels, m.threshold),
        skipped,
        predictions,
        manifest: m.clone(),
    })
}
