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
    /// The model's out-of-scope guard on this folder (`None` for a model
    /// without a guard). `metrics` above are over every scored image, as
    /// the model would answer them; this block says how many the box
    /// would not answer and how well it does on the rest.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<ScopeSummary>,
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
    /// Whether the model's guard refused it (never, without a guard).
    pub out_of_scope: bool,
}

/// What the out-of-scope guard did on a labelled folder.
#[derive(Clone, Debug, Serialize)]
pub struct ScopeSummary {
    /// Images the guard let through (the box answers them).
    pub passed: usize,
    /// Images it refused (the box gives no answer).
    pub refused: usize,
    /// Fraction passed.
    pub pass_rate: f64,
    /// Refusals by check (`features`, `colour`, …).
    pub refused_by: std::collections::BTreeMap<String, usize>,
    /// Metrics on the passed images only (what the box answers).
    pub passed_metrics: Option<Metrics>,
    /// Accuracy the model would have had on the refused images, at its
    /// threshold: a useful guard refuses where the model is more often
    /// wrong.
    pub refused_accuracy: Option<f64>,
}

impl ScopeSummary {
    /// Summarise `predictions` (with their guard verdicts) at `threshold`.
    pub fn of(predictions: &[Prediction], reasons: &[Option<String>], threshold: f32) -> Self {
        let (passed, refused): (Vec<&Prediction>, Vec<&Prediction>) =
            predictions.iter().partition(|p| !p.out_of_scope);
        let metrics = |set: &[&Prediction]| {
            let probs: Vec<f32> = set.iter().map(|p| p.probability).collect();
            let labels: Vec<u8> = set.iter().map(|p| p.label).collect();
            (!set.is_empty()).then(|| Metrics::compute(&probs, &labels, threshold))
        };
        let mut refused_by = std::collections::BTreeMap::new();
        for r in reasons.iter().flatten() {
            *refused_by.entry(r.clone()).or_insert(0) += 1;
        }
        ScopeSummary {
            passed: passed.len(),
            refused: refused.len(),
            pass_rate: passed.len() as f64 / predictions.len().max(1) as f64,
            refused_by,
            passed_metrics: metrics(&passed),
            refused_accuracy: metrics(&refused).map(|m| m.accuracy),
        }
    }
}

/// The name of the check that refused a scan, for [`ScopeSummary::refused_by`].
fn check_name(scope: &Option<scanside_shared::guard::ScopeCheck>) -> Option<String> {
    let reason = scope.as_ref().filter(|s| !s.in_scope)?.reason.as_ref()?;
    Some(reason.check().to_string())
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
    /// The guard's verdict per scored image.
    scopes: Vec<Option<scanside_shared::guard::ScopeCheck>>,
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
    let results: Vec<Result<_>> = dataset
        .items
        .par_iter()
        .map(|item| Ok(classifier.classify_file(&item.path)?))
        .collect();
    let mut scoring = Scoring {
        items: Vec::new(),
        probabilities: Vec::new(),
        scopes: Vec::new(),
        skipped: dataset.skipped.clone(),
    };
    for (item, r) in dataset.items.into_iter().zip(results) {
        match r {
            Ok(c) => {
                scoring.items.push(item);
                scoring.probabilities.push(c.probability);
                scoring.scopes.push(c.scope);
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
        .zip(&s.scopes)
        .map(|((item, &p), scope)| Prediction {
            path: item.path.clone(),
            label: item.label,
            probability: p,
            out_of_scope: scope.as_ref().is_some_and(|c| !c.in_scope),
        })
        .collect();
    let reasons: Vec<Option<String>> = s.scopes.iter().map(check_name).collect();
    let scope = classifier
        .guard()
        .map(|_| ScopeSummary::of(&predictions, &reasons, m.threshold));
    let probs: Vec<f32> = predictions.iter().map(|p| p.probability).collect();
    let labels: Vec<u8> = predictions.iter().map(|p| p.label).collect();
    Ok(Evaluation {
        notice: NOTICE,
        model_id: m.model_id.clone(),
        model_sha256: classifier.sha256().to_string(),
        metrics: Metrics::compute(&probs, &labels, m.threshold),
        scope,
        skipped,
        predictions,
        manifest: m.clone(),
    })
}
