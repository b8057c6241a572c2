//! `scanside retrain`: a new model version from the old data plus the
//! scans a box saw and a person labelled, promoted only if it is not worse.
//!
//! 1. **Split the data.** The regression set is the scans labelled in
//!    review (`DATASET/review/*.json` with a label, copied into the class
//!    folders by `scanside review`) that the base model never saw: not in
//!    its lineage's `reviewed_images`, and not elsewhere in the dataset.
//!    Everything else is the old data; its hash is checked against the
//!    base's `training_data_sha256`, and the comparison says whether it
//!    matched.
//! 2. **Cross-validate both recipes on the same folds.** The candidate
//!    (this command's recipe, on all images) and the parent (the base's own
//!    recipe from its metadata, trained on the old images of each training
//!    fold only) are scored on the same duplicate-grouped folds; every
//!    figure is out of fold.
//! 3. **Regression set.** The base model file itself classifies the
//!    regression scans (it never saw them); the candidate's figure is its
//!    out-of-fold prediction (it never saw them in their folds either).
//! 4. **Promotion rule.** The candidate is promoted only if no headline
//!    metric ([`HEADLINE_METRICS`], and regression-set accuracy) is worse
//!    than the parent's by more than the tolerance. A refused candidate is
//!    not even exported; the comparison says why.
//! 5. **Promotion.** Final fit, export, verification and int8 as in
//!    `train`, into `--out`; then the model (int8 if there is one) and a
//!    model card go into the models folder as `<model id>.onnx` and
//!    `<model id>.md`. The model's [`Lineage`] records its parent chain,
//!    the parent's data hash and what changed.
//!
//! `--out` always receives `comparison.json`, `comparison.md` and
//! `comparison.html`.

use std::collections::BTreeSet;
use std::fmt::Write;
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use serde::Serialize;

use scanside_shared::classifier::{Classifier, NOTICE};
use scanside_shared::manifest::{Lineage, ModelManifest};

use crate::augment::Augmentation;
use crate::backbone::write_atomically;
use crate::features::Blocks;
use crate::head::HeadConfig;
use crate::operating_point::ThresholdRule;
use crate::report::pct;
use crate::train::{self, F32_MODEL_FILE, INT8_MODEL_FILE, TrainOptions, TrainOutcome};
use crate::{Error, Result, html_report, review};

/// Cross-validated metrics the promotion rule compares.
pub const HEADLINE_METRICS: [&str; 4] = ["accuracy", "sensitivity", "specificity", "auc"];

/// Name of the regression-set metric in the comparison.
pub const REGRESSION_ACCURACY: &str = "regression_accuracy";

/// Default tolerance of the promotion rule (0.01 = 1 percentage point).
pub const DEFAULT_TOLERANCE: f64 = 0.01;

/// File names `retrain` writes into `--out`.
pub const COMPARISON_FILES: [&str; 3] = ["comparison.json", "comparison.md", "comparison.html"];

/// What `retrain` needs.
#[derive(Clone, Debug)]
pub struct RetrainOptions {
    /// The candidate's recipe, data, backbone, cache and output folder.
    pub train: TrainOptions,
    /// The model in service now (the parent).
    pub base: PathBuf,
    /// Where a promoted model and its card go.
    pub models_dir: PathBuf,
    /// How much worse (0–1) a headline metric may be and still promote.
    pub tolerance: f64,
    /// A sentence for the lineage's list of changes.
    pub note: Option<String>,
    /// Which out-of-fold predictions choose the candidate's threshold.
    pub threshold_on: ThresholdOn,
}

/// Which of the candidate's out-of-fold predictions its threshold is
/// chosen on (`retrain --threshold-on`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ThresholdOn {
    /// Every training image.
    All,
    /// The newly reviewed scans only (the site's own); refused with fewer
    /// than [`MIN_REVIEWED_FOR_THRESHOLD`] of either class.
    Reviewed,
    /// The newly reviewed scans when there are at least
    /// [`MIN_REVIEWED_FOR_THRESHOLD`] of each class, otherwise every image:
    /// after site adaptation the site's own scans set the operating point
    /// (docs/validation.md, "Weighting a site's own scans").
    #[default]
    Auto,
}

/// Reviewed scans of each class that `--threshold-on reviewed` needs.
pub const MIN_REVIEWED_FOR_THRESHOLD: usize = 20;

/// One metric, parent against candidate.
#[derive(Clone, Debug, Serialize)]
pub struct MetricComparison {
    /// Metric name.
    pub metric: String,
    /// The parent's value (NaN: not defined on this data).
    pub parent: f64,
    /// The candidate's value.
    pub candidate: f64,
    /// Worse than the parent by more than the tolerance.
    pub worse: bool,
}

/// An image the two models decide differently.
#[derive(Clone, Debug, Serialize)]
pub struct ChangedDecision {
    /// The image.
    pub file: PathBuf,
    /// Its label.
    pub label: String,
    /// `regression` (base model file vs candidate, out of fold) or
    /// `cross-validation` (parent recipe vs candidate, both out of fold).
    pub set: &'static str,
    /// Parent's positive-class probability.
    pub parent_probability: f32,
    /// Parent's decision.
    pub parent_decision: String,
    /// Candidate's positive-class probability.
    pub candidate_probability: f32,
    /// Candidate's decision.
    pub candidate_decision: String,
}

/// One regression-set scan.
#[derive(Clone, Debug, Serialize)]
pub struct RegressionScan {
    /// The image in the dataset.
    pub file: PathBuf,
    /// The label a reviewer gave.
    pub label: String,
    /// The box's radiographer disputed the device's result.
    pub disputed: bool,
    /// The base model file's probability.
    pub parent_probability: f32,
    /// The candidate's out-of-fold probability.
    pub candidate_probability: f32,
}

/// What `retrain` found and decided (`comparison.json`).
#[derive(Clone, Debug, Serialize)]
pub struct Comparison {
    /// Research notice.
    pub notice: &'static str,
    /// The parent model's id.
    pub parent_model_id: String,
    /// SHA-256 of the parent model file.
    pub parent_sha256: String,
    /// The candidate's id, when it was promoted (a refused one is not built).
    pub candidate_model_id: Option<String>,
    /// Whether the candidate was promoted.
    pub promoted: bool,
    /// The promoted model file in the models folder.
    pub promoted_to: Option<PathBuf>,
    /// Why it was refused (empty when promoted).
    pub reasons: Vec<String>,
    /// Tolerance of the rule.
    pub tolerance: f64,
    /// Images in the dataset.
    pub n: usize,
    /// Of those, the regression set.
    pub regression_images: usize,
    /// The images besides the regression set hash to the parent's
    /// `training_data_sha256` (so the parent's figures are comparable).
    pub parent_data_verified: bool,
    /// Folds per repeat.
    pub folds: usize,
    /// Repeats.
    pub repeats: usize,
    /// Parent and candidate, metric by metric.
    pub metrics: Vec<MetricComparison>,
    /// What changed against the parent (also in the lineage).
    pub changes: Vec<String>,
    /// Every regression-set scan.
    pub regression: Vec<RegressionScan>,
    /// Images whose decision changed.
    pub changed: Vec<ChangedDecision>,
}

/// The outcome of a retrain: the comparison, and the new model when
/// promoted.
pub struct Retrained {
    /// The comparison (also written to `--out`).
    pub comparison: Comparison,
    /// The candidate's training outcome, when promoted.
    pub outcome: Option<TrainOutcome>,
}

/// Which images are the regression set and which the old data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DataSplit {
    /// Per dataset item: in the regression set.
    pub regression: Vec<bool>,
    /// The old items hash to the parent's training-data hash.
    pub parent_data_verified: bool,
}

/// Split dataset items (by content SHA-256) into old data and regression
/// set: a scan is in the regression set if it was labelled in review,
/// the parent was not trained on reviewed scans of that content
/// (`parent_reviewed`) and no other dataset file has the same content.
pub fn split_data(
    item_sha256: &[&str],
    reviewed: &BTreeSet<String>,
    parent_reviewed: &BTreeSet<String>,
) -> Vec<bool> {
    // Content present under a non-reviewed name is old data whatever review says.
    let mut copies = std::collections::BTreeMap::<&str, usize>::new();
    for sha in item_sha256 {
        *copies.entry(sha).or_default() += 1;
    }
    item_sha256
        .iter()
        .map(|sha| reviewed.contains(*sha) && !parent_reviewed.contains(*sha) && copies[sha] == 1)
        .collect()
}

/// Compare two values of a metric: worse if the candidate is below the
/// parent by more than `tolerance` (a metric the parent cannot be scored on
/// is never worse; one the candidate loses is).
pub fn compare(metric: &str, parent: f64, candidate: f64, tolerance: f64) -> MetricComparison {
    // NaN (a metric the candidate cannot be scored on) counts as worse.
    let worse = parent.is_finite() && (candidate.is_nan() || candidate < parent - tolerance);
    MetricComparison {
        metric: metric.into(),
        parent,
        candidate,
        worse,
    }
}

/// The base's recipe: its head configuration, augmented views and
/// preprocessing, from its metadata.
fn parent_recipe(base: &ModelManifest, candidate: &TrainOptions) -> Result<TrainOptions> {
    let bad = |what: &str| {
        Error::Config(format!(
            "base model {}: its metadata has no usable {what}, so its recipe cannot be \
             cross-validated beside the candidate; retrain it with this scanside first",
            base.model_id
        ))
    };
    let head: HeadConfig =
        serde_json::from_value(base.head["config"].clone()).map_err(|_| bad("`head.config`"))?;
    let views = base.head["augmented_views"]
        .as_u64()
        .ok_or_else(|| bad("`head.augmented_views`"))? as usize;
    let augmentation = Augmentation::from_recipe(base.head["augmentation"].as_str().unwrap_or(""));
    let target = base.cv_metrics["target_sensitivity"]
        .as_f64()
        .unwrap_or(candidate.target_sensitivity);
    // Recorded only when not the default (older models have none).
    let threshold_rule = match base.head.get("threshold_rule") {
        None => ThresholdRule::default(),
        Some(v) => serde_json::from_value(v.clone()).map_err(|_| bad("`head.threshold_rule`"))?,
    };
    Ok(TrainOptions {
        size: base.preprocessing.size,
        crop: base.preprocessing.crop,
        augmented_views: views,
        augmentation,
        head,
        target_sensitivity: target,
        threshold_rule,
        size_candidates: Vec::new(),
        guard: crate::guard::GuardOptions::recorded(&base.head),
        ..candidate.clone()
    })
}

/// The candidate's recipe for a retrain: the parent's own (head, views,
/// input size, crop, target sensitivity, folds, repeats), except what the
/// user chose: `given(flag)` says whether a recipe flag was on the command
/// line, and then its value in `flags` wins. Everything else (data,
/// backbone, cache, output) comes from `flags`.
pub fn inherit(
    parent: &ModelManifest,
    flags: &TrainOptions,
    given: &dyn Fn(&str) -> bool,
) -> Result<TrainOptions> {
    if given("choose_size") {
        return Err(Error::Config(
            "--choose-size is for `train`; give `retrain` one --size".into(),
        ));
    }
    let mut o = parent_recipe(parent, flags)?;
    let recorded =
        |key: &str, fallback: usize| parent.head[key].as_u64().map_or(fallback, |v| v as usize);
    o.folds = if given("folds") {
        flags.folds
    } else {
        recorded("folds", flags.folds)
    };
    o.repeats = if given("repeats") {
        flags.repeats
    } else {
        recorded("repeats", flags.repeats)
    };
    // Each flag given overrides the same field of the parent's recipe.
    macro_rules! given_overrides {
        ($($flag:literal => $($field:ident).+;)*) => {$(
            if given($flag) {
                o.$($field).+ = flags.$($field).+.clone();
            }
        )*};
    }
    given_overrides! {
        "size" => size;
        "crop" => crop;
        "views" => augmented_views;
        "augmentation" => augmentation;
        "target_sensitivity" => target_sensitivity;
        "threshold_rule" => threshold_rule;
        "pooling" => head.pooling;
        "feature_transform" => head.transform;
        "asymmetry" => head.asymmetry;
        "blocks" => head.blocks;
        "ensemble" => head.ensemble;
        "hidden" => head.hidden;
        "dropout" => head.dropout;
        "learning_rate" => head.learning_rate;
        "weight_decay" => head.weight_decay;
        "max_epochs" => head.max_epochs;
        "patience" => head.patience;
        "seed" => head.seed;
        "logistic" => head.solver;
    }
    // How much the reviewed scans count is this retrain's setting (the
    // flag, or its default), not the base's: a base trained before the
    // setting existed, or on no reviewed scans, says nothing about it.
    o.head.reviewed_weight = flags.head.reviewed_weight;
    // `--logistic` also sets `hidden` and `ensemble`; a dense-network flag
    // on a logistic parent asks for the dense network again.
    if given("logistic") {
        o.head.hidden = Vec::new();
        o.head.ensemble = 1;
    } else if [
        "hidden",
        "ensemble",
        "dropout",
        "learning_rate",
        "weight_decay",
        "max_epochs",
        "patience",
    ]
    .iter()
    .any(|f| given(f))
        && !o.head.solver.is_adam()
    {
        o.head.solver = crate::head::Solver::Adam;
        if !given("hidden") {
            o.head.hidden = HeadConfig::default().hidden;
        }
        if !given("ensemble") {
            o.head.ensemble = HeadConfig::default().ensemble;
        }
    }
    // The guard: the base's options (the default if the base has none, so
    // every candidate carries one), each guard flag given overriding its
    // field; `--no-guard`, none.
    o.guard = match (given("no_guard"), flags.guard) {
        (true, _) => None,
        (false, from_flags) => {
            let mut g = o.guard.unwrap_or_default();
            if let Some(f) = from_flags {
                if given("guard_pass") {
                    g.pass_target = f.pass_target;
                }
                if given("guard_components") {
                    g.components = f.components;
                }
            }
            Some(g)
        }
    };
    Ok(o)
}

/// What differs between the parent's recipe and the candidate's, one
/// sentence per difference.
fn recipe_changes(parent: &TrainOptions, candidate: &TrainOptions) -> Vec<String> {
    let mut changes = Vec::new();
    // Fields left out of the recording at their old value (`asymmetry`,
    // `blocks`, `solver`, `reviewed_weight`) are compared at that value.
    let as_map = |h: &HeadConfig| match serde_json::to_value(h).expect("serialises") {
        serde_json::Value::Object(mut m) => {
            for (key, absent) in [
                ("asymmetry", serde_json::json!("none")),
                ("blocks", serde_json::json!("last")),
                ("solver", serde_json::json!("adam")),
                ("reviewed_weight", serde_json::json!(1.0)),
            ] {
                m.entry(key).or_insert(absent);
            }
            m
        }
        _ => unreachable!("a struct serialises to an object"),
    };
    let (p, c) = (as_map(&parent.head), as_map(&candidate.head));
    for (key, new) in &c {
        if p.get(key) != Some(new) {
            let old = p.get(key).map_or("-".into(), ToString::to_string);
            changes.push(format!("head {key}: {old} → {new}"));
        }
    }
    let mut differ = |name: &str, old: String, new: String| {
        if old != new {
            changes.push(format!("{name}: {old} → {new}"));
        }
    };
    differ(
        "augmented views",
        parent.augmented_views.to_string(),
        candidate.augmented_views.to_string(),
    );
    differ(
        "input size",
        parent.size.to_string(),
        candidate.size.to_string(),
    );
    differ(
        "crop",
        format!("{:?}", parent.crop.is_some()),
        format!("{:?}", candidate.crop.is_some()),
    );
    differ(
        "augmentation",
        parent.augmentation.recipe().to_string(),
        candidate.augmentation.recipe().to_string(),
    );
    differ(
        "target sensitivity",
        parent.target_sensitivity.to_string(),
        candidate.target_sensitivity.to_string(),
    );
    differ(
        "threshold rule",
        parent.threshold_rule.name().to_string(),
        candidate.threshold_rule.name().to_string(),
    );
    differ(
        "out-of-scope guard",
        crate::guard::GuardOptions::describe(parent.guard.as_ref()),
        crate::guard::GuardOptions::describe(candidate.guard.as_ref()),
    );
    changes
}

/// Run a retrain (see the module documentation).
pub fn run(opts: &RetrainOptions) -> Result<Retrained> {
    let cand = &opts.train;
    if !(0.0..=1.0).contains(&opts.tolerance) {
        return Err(Error::Config(format!(
            "--tolerance must be in [0, 1], got {}",
            opts.tolerance
        )));
    }
    let absolute = |p: &Path| std::fs::canonicalize(p).or_else(|_| std::path::absolute(p));
    if let (Ok(out), Ok(models)) = (absolute(&cand.out), absolute(&opts.models_dir))
        && out.starts_with(&models)
    {
        return Err(Error::Config(format!(
            "--out {} is inside the models folder {}: a refused candidate must leave it untouched",
            cand.out.display(),
            opts.models_dir.display()
        )));
    }
    let base_bytes = std::fs::read(&opts.base).map_err(|e| Error::io(&opts.base, e))?;
    let base = Classifier::from_bytes(&base_bytes, &opts.base)?;
    let parent = base.manifest().clone();
    let parent_opts = parent_recipe(&parent, cand)?;

    let prep = train::prepare(cand)?;
    if prep.backbone.manifest.weights_sha256 != parent.backbone.weights_sha256 {
        return Err(Error::Config(format!(
            "{}: the base model was built on backbone {} ({}), --backbone {} is {}; \
             retrain with the base's backbone",
            opts.base.display(),
            parent.backbone.name,
            parent.backbone.weights_sha256,
            cand.backbone.display(),
            prep.backbone.manifest.weights_sha256
        )));
    }

    // 1. Regression set and old data.
    let queue = review::queue(&cand.data.root)?;
    let reviewed: BTreeSet<String> = queue
        .iter()
        .filter(|(_, q)| q.label.is_some())
        .map(|(_, q)| q.content_sha256.clone())
        .collect();
    let disputed: BTreeSet<&str> = queue
        .iter()
        .filter(|(_, q)| q.disputed)
        .map(|(_, q)| q.content_sha256.as_str())
        .collect();
    let parent_reviewed: BTreeSet<String> = parent
        .lineage
        .as_ref()
        .map(|l| l.reviewed_images.iter().cloned().collect())
        .unwrap_or_default();
    let items = &prep.dataset.items;
    let shas: Vec<&str> = items.iter().map(|i| i.sha256.as_str()).collect();
    let in_regression = split_data(&shas, &reviewed, &parent_reviewed);
    let old: Vec<bool> = in_regression.iter().map(|r| !r).collect();
    let regression: Vec<usize> = (0..items.len()).filter(|&i| in_regression[i]).collect();
    // The old data is everything but the copies `review` made of newly
    // reviewed scans (`<sha256>.<ext>`), including copies of scans that
    // were already in the data under another name.
    let review_copy = |i: &crate::dataset::Item| {
        reviewed.contains(&i.sha256) && !parent_reviewed.contains(&i.sha256) && i.is_reviewed_scan()
    };
    let parent_data_verified =
        prep.dataset.content_sha256_of(|i| !review_copy(i)) == parent.training_data_sha256;

    // 2. Both recipes, same folds.
    let folds = train::fold_assignment(&prep, cand);
    let counts = [0u8, 1].map(|c| regression.iter().filter(|&&i| prep.labels[i] == c).count());
    let enough = counts.iter().all(|&c| c >= MIN_REVIEWED_FOR_THRESHOLD);
    let threshold_mask = if opts.threshold_on == ThresholdOn::Reviewed
        || (opts.threshold_on == ThresholdOn::Auto && enough)
    {
        if !enough {
            return Err(Error::Config(format!(
                "--threshold-on reviewed needs at least {MIN_REVIEWED_FOR_THRESHOLD} newly \
                 reviewed scans of each class; there are {} {} and {} {}",
                counts[1], prep.dataset.labels[1], counts[0], prep.dataset.labels[0]
            )));
        }
        Some(in_regression.clone())
    } else {
        None
    };
    let cand_cv = train::cross_validate_on(&prep, cand, &folds, None, threshold_mask.as_deref())?;
    let parent_prep;
    let parent_features = if parent_opts.size == cand.size
        && parent_opts.crop == cand.crop
        && parent_opts.augmentation == cand.augmentation
        && parent_opts.augmented_views <= cand.augmented_views
        // The candidate's features hold block 4's maps only if its recipe
        // reads them.
        && (parent_opts.head.blocks == Blocks::Last || prep.block4.is_some())
    {
        &prep
    } else {
        parent_prep = train::prepare(&parent_opts)?;
        &parent_prep
    };
    // The parent's thresholds are chosen on the same out-of-fold predictions
    // as the candidate's (the reviewed scans are scored in their folds,
    // though not trained on), so both are compared at like thresholds.
    let parent_cv = train::cross_validate_on(
        parent_features,
        &parent_opts,
        &folds,
        Some(&old),
        threshold_mask.as_deref(),
    )?;

    // 3. The base model file on the regression set.
    let base_p: Vec<f32> = regression
        .par_iter()
        .map(|&i| Ok(base.classify_file(&items[i].path)?.probability))
        .collect::<Result<_>>()?;

    // 4. The rule.
    let (ps, cs) = (&parent_cv.summary, &cand_cv.summary);
    let mut metrics: Vec<MetricComparison> = HEADLINE_METRICS
        .iter()
        .zip([
            (ps.accuracy, cs.accuracy),
            (ps.sensitivity, cs.sensitivity),
            (ps.specificity, cs.specificity),
            (ps.auc, cs.auc),
        ])
        .map(|(name, (p, c))| compare(name, p, c, opts.tolerance))
        .collect();
    let labels = &prep.labels;
    let decide = |p: f32, t: f32| u8::from(p >= t);
    if !regression.is_empty() {
        let right = |probs: &mut dyn Iterator<Item = (usize, f32)>, t: f32| {
            probs.filter(|&(i, p)| decide(p, t) == labels[i]).count() as f64
                / regression.len() as f64
        };
        let parent_acc = right(
            &mut regression.iter().copied().zip(base_p.iter().copied()),
            parent.threshold,
        );
        let cand_acc = right(
            &mut regression.iter().map(|&i| (i, cand_cv.oof_mean[i])),
            cs.threshold,
        );
        metrics.push(compare(
            REGRESSION_ACCURACY,
            parent_acc,
            cand_acc,
            opts.tolerance,
        ));
    }
    // 5. The validation folders: the base model file against the
    //    candidate's final model, each at its own threshold.
    let last = train::fit_final(&prep, &cand_cv, cand)?;
    for (set, result) in &last.validation {
        let base_on_set: Vec<f32> = set
            .dataset
            .items
            .par_iter()
            .map(|i| Ok(base.classify_file(&i.path)?.probability))
            .collect::<Result<_>>()?;
        let (y, _) = result.pairs();
        let parent_on_set = crate::metrics::Metrics::compute(&base_on_set, &y, parent.threshold);
        let folder = set.folder.display();
        metrics.push(compare(
            &format!("validation auc {folder}"),
            parent_on_set.auc,
            result.auc,
            opts.tolerance,
        ));
        metrics.push(compare(
            &format!("validation accuracy {folder}"),
            parent_on_set.accuracy,
            result.at_threshold.accuracy,
            opts.tolerance,
        ));
    }
    let reasons: Vec<String> = metrics
        .iter()
        .filter(|m| m.worse)
        .map(|m| {
            format!(
                "{} would drop from {} to {} (tolerance {})",
                m.metric,
                pct(m.parent),
                pct(m.candidate),
                pct(opts.tolerance)
            )
        })
        .collect();

    // What changed, and which decisions.
    let class = |y: u8| prep.dataset.labels[y as usize].clone();
    let mut changes = Vec::new();
    let added = regression.len();
    let positives = regression.iter().filter(|&&i| labels[i] == 1).count();
    changes.push(format!(
        "data: {} → {} images (+{added} reviewed device scans: {positives} {}, {} {})",
        items.len() - added,
        items.len(),
        prep.dataset.labels[1],
        added - positives,
        prep.dataset.labels[0],
    ));
    if !parent_data_verified {
        changes.push(
            "data: the images besides the reviewed scans are not the parent's training data \
             (its training-data hash does not match)"
                .into(),
        );
    }
    // The reviewed-scan weight is compared as recorded: 1 for data without
    // reviewed scans, where it changes nothing (train.rs records it so).
    let mut as_recorded = cand.clone();
    if !items.iter().any(|i| i.is_reviewed_scan()) {
        as_recorded.head.reviewed_weight = 1.0;
    }
    changes.extend(recipe_changes(&parent_opts, &as_recorded));
    if let Some(point) = cand_cv.operating_point.chosen_on.as_ref() {
        // Part of the model's identity (the lineage is): the same data and
        // recipe with a threshold chosen elsewhere is another model.
        changes.push(format!("threshold: chosen on {point}"));
    }
    changes.extend(opts.note.iter().map(|n| format!("note: {n}")));

    let regression_rows: Vec<RegressionScan> = regression
        .iter()
        .zip(&base_p)
        .map(|(&i, &p)| RegressionScan {
            file: items[i].path.clone(),
            label: class(labels[i]),
            disputed: disputed.contains(items[i].sha256.as_str()),
            parent_probability: p,
            candidate_probability: cand_cv.oof_mean[i],
        })
        .collect();
    let mut changed = Vec::new();
    for r in &regression_rows {
        let (pd, cd) = (
            decide(r.parent_probability, parent.threshold),
            decide(r.candidate_probability, cs.threshold),
        );
        if pd != cd {
            changed.push(ChangedDecision {
                file: r.file.clone(),
                label: r.label.clone(),
                set: "regression",
                parent_probability: r.parent_probability,
                parent_decision: class(pd),
                candidate_probability: r.candidate_probability,
                candidate_decision: class(cd),
            });
        }
    }
    for (i, item) in items.iter().enumerate() {
        let (pp, cp) = (parent_cv.oof_mean[i], cand_cv.oof_mean[i]);
        let (pd, cd) = (decide(pp, ps.threshold), decide(cp, cs.threshold));
        if !in_regression[i] && pd != cd {
            changed.push(ChangedDecision {
                file: item.path.clone(),
                label: class(labels[i]),
                set: "cross-validation",
                parent_probability: pp,
                parent_decision: class(pd),
                candidate_probability: cp,
                candidate_decision: class(cd),
            });
        }
    }

    let mut comparison = Comparison {
        notice: NOTICE,
        parent_model_id: parent.model_id.clone(),
        parent_sha256: base.sha256().to_string(),
        candidate_model_id: None,
        promoted: false,
        promoted_to: None,
        reasons,
        tolerance: opts.tolerance,
        n: items.len(),
        regression_images: regression.len(),
        parent_data_verified,
        folds: cand.folds,
        repeats: cand.repeats,
        metrics,
        changes: changes.clone(),
        regression: regression_rows,
        changed,
    };
    let outcome = if comparison.reasons.is_empty() {
        let mut reviewed_images: BTreeSet<String> = parent_reviewed;
        reviewed_images.extend(regression.iter().map(|&i| items[i].sha256.clone()));
        let mut chain = parent
            .lineage
            .as_ref()
            .map_or_else(Vec::new, |l| l.chain.clone());
        chain.push(parent.model_id.clone());
        let lineage = Lineage {
            chain,
            parent_sha256: base.sha256().to_string(),
            parent_training_data_sha256: parent.training_data_sha256.clone(),
            changes,
            reviewed_images: reviewed_images.into_iter().collect(),
        };
        let outcome = train::run_prepared(prep, cand_cv, last, cand, lineage)?;
        let id = outcome.manifest.model_id.clone();
        let source = match &outcome.int8 {
            Some(q) => q.model_path.clone(),
            None => cand.out.join(F32_MODEL_FILE),
        };
        std::fs::create_dir_all(&opts.models_dir).map_err(|e| Error::io(&opts.models_dir, e))?;
        let dest = opts.models_dir.join(format!("{id}.onnx"));
        let bytes = std::fs::read(&source).map_err(|e| Error::io(&source, e))?;
        comparison.promoted = true;
        comparison.candidate_model_id = Some(id.clone());
        comparison.promoted_to = Some(dest.clone());
        write_atomically(
            &opts.models_dir.join(format!("{id}.md")),
            model_card(&outcome, &comparison, &source, &bytes).as_bytes(),
        )?;
        write_atomically(&dest, &bytes)?;
        Some(outcome)
    } else {
        // Never leave an earlier candidate's model or figures beside this
        // comparison.
        for f in [
            F32_MODEL_FILE,
            INT8_MODEL_FILE,
            train::VALIDATION_FILE,
            "cv.json",
            "quantization.json",
            "report.md",
            train::HTML_REPORT_FILE,
        ] {
            let _ = std::fs::remove_file(cand.out.join(f));
        }
        None
    };
    write_comparison(&cand.out, &comparison)?;
    Ok(Retrained {
        comparison,
        outcome,
    })
}

fn write_comparison(out: &Path, c: &Comparison) -> Result<()> {
    std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
    let [json, md, html] = COMPARISON_FILES;
    write_atomically(
        &out.join(json),
        &serde_json::to_vec_pretty(c).expect("serialises"),
    )?;
    write_atomically(&out.join(md), markdown(c).as_bytes())?;
    write_atomically(&out.join(html), html_report::comparison(c)?.as_bytes())
}

/// The comparison as Markdown.
pub fn markdown(c: &Comparison) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# Retrain of {}\n\n{NOTICE}\n", c.parent_model_id);
    match &c.candidate_model_id {
        Some(id) => {
            let _ = writeln!(s, "**Promoted** as `{id}`.\n");
        }
        None => {
            let _ = writeln!(
                s,
                "**Refused**: nothing was written to the models folder.\n"
            );
            for r in &c.reasons {
                let _ = writeln!(s, "- {r}");
            }
            s.push('\n');
        }
    }
    let _ = writeln!(
        s,
        "{} images, {} of them the regression set (reviewed device scans the parent never saw); \
         {}×{} duplicate-grouped folds, the same for both; tolerance {}. The parent's other \
         training data {}.\n",
        c.n,
        c.regression_images,
        c.repeats,
        c.folds,
        pct(c.tolerance),
        if c.parent_data_verified {
            "matches its recorded hash"
        } else {
            "does NOT match its recorded hash"
        }
    );
    s.push_str("| metric | parent | candidate | |\n|---|---:|---:|---|\n");
    for m in &c.metrics {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} |",
            m.metric,
            pct(m.parent),
            pct(m.candidate),
            if m.worse { "worse" } else { "" }
        );
    }
    s.push_str("\n## What changed\n\n");
    for ch in &c.changes {
        let _ = writeln!(s, "- {ch}");
    }
    let _ = writeln!(s, "\n## Decisions that changed ({})\n", c.changed.len());
    if !c.changed.is_empty() {
        s.push_str("| image | label | set | parent | candidate |\n|---|---|---|---|---|\n");
        for d in &c.changed {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} ({:.3}) | {} ({:.3}) |",
                d.file.display(),
                d.label,
                d.set,
                d.parent_decision,
                d.parent_probability,
                d.candidate_decision,
                d.candidate_probability
            );
        }
    }
    s
}

/// The promoted model's card: identity, chain, changes, figures.
fn model_card(o: &TrainOutcome, c: &Comparison, source: &Path, bytes: &[u8]) -> String {
    let m = &o.manifest;
    let mut s = String::new();
    let _ = writeln!(s, "# Model card: {}\n\n{NOTICE}\n", m.model_id);
    let _ = writeln!(
        s,
        "- File: `{}.onnx` ({:.1} MB, SHA-256 `{}`), a copy of `{}`",
        m.model_id,
        bytes.len() as f64 / 1e6,
        scanside_shared::sha256_hex(bytes),
        source.display()
    );
    let _ = writeln!(
        s,
        "- Labels: {:?}, positive `{}`, threshold {:.4}",
        m.labels, m.positive_class, m.threshold
    );
    let _ = writeln!(
        s,
        "- Training data SHA-256: `{}` ({} images)",
        m.training_data_sha256, c.n
    );
    let _ = writeln!(
        s,
        "- Backbone: {} (`{}`)",
        m.backbone.name, m.backbone.weights_sha256
    );
    if let Some(l) = &m.lineage {
        let _ = writeln!(
            s,
            "- Version chain: {} → **{}**",
            l.chain.join(" → "),
            m.model_id
        );
        let _ = writeln!(
            s,
            "- Parent: `{}` (file SHA-256 `{}`, training data `{}`)",
            l.parent_model_id(),
            l.parent_sha256,
            l.parent_training_data_sha256
        );
        s.push_str("\n## What changed\n\n");
        for ch in &l.changes {
            let _ = writeln!(s, "- {ch}");
        }
    }
    s.push_str("\n## Against the parent (out of fold, same folds)\n\n");
    s.push_str("| metric | parent | this model |\n|---|---:|---:|\n");
    for x in &c.metrics {
        let _ = writeln!(
            s,
            "| {} | {} | {} |",
            x.metric,
            pct(x.parent),
            pct(x.candidate)
        );
    }
    let _ = writeln!(
        s,
        "\nFigures: `scanside retrain`, {}×{} duplicate-grouped folds; see `comparison.md` and `report.html` in the run folder.",
        c.repeats, c.folds
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(v: &[&str]) -> BTreeSet<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn the_regression_set_is_reviewed_scans_the_parent_never_saw() {
        // a, b: original data; c, d, e: reviewed; d was already reviewed
        // for the parent; e is also in the data under another name.
        let items = ["a", "b", "c", "d", "e", "e"];
        let split = split_data(&items, &set(&["c", "d", "e"]), &set(&["d"]));
        assert_eq!(split, [false, false, true, false, false, false]);
        assert_eq!(
            split_data(&items, &BTreeSet::new(), &BTreeSet::new()),
            [false; 6]
        );
    }

    #[test]
    fn the_rule_allows_the_tolerance_and_no_more() {
        assert!(!compare("accuracy", 0.90, 0.89, 0.01).worse);
        assert!(compare("accuracy", 0.90, 0.885, 0.01).worse);
        assert!(!compare("accuracy", 0.90, 0.95, 0.0).worse);
        // Undefined for the parent: not comparable, not worse.
        assert!(!compare("sensitivity", f64::NAN, 0.5, 0.01).worse);
        // Lost by the candidate: worse.
        assert!(compare("auc", 0.9, f64::NAN, 0.01).worse);
    }

    fn parent_manifest(head: &HeadConfig) -> ModelManifest {
        let prep = scanside_shared::preprocess::PreprocessSpec::vgg16_caffe(96);
        ModelManifest {
            format_version: 1,
            model_id: "scanside-parent".into(),
            scanside_version: "0".into(),
            input_name: "input".into(),
            preprocessing: prep,
            labels: vec!["no".into(), "yes".into()],
            positive_class: "yes".into(),
            threshold: 0.4,
            training_data_sha256: "00".repeat(32),
            backbone: scanside_shared::manifest::BackboneInfo {
                name: "b".into(),
                weights_sha256: "11".repeat(32),
                cut_at: "x".into(),
            },
            head: serde_json::json!({
                "config": head, "augmented_views": 1, "folds": 3, "repeats": 2,
                "guard": {"components": 32, "pass_target": 0.99},
            }),
            cv_metrics: serde_json::json!({"target_sensitivity": 0.9}),
            lineage: None,
            extra: Default::default(),
        }
    }

    #[test]
    fn the_reviewed_weight_is_the_retrains_not_the_bases() {
        // A base recorded before the setting (weight 1, not recorded).
        let parent_head = HeadConfig {
            reviewed_weight: 1.0,
            ..HeadConfig::default()
        };
        let parent = parent_manifest(&parent_head);
        assert!(parent.head["config"].get("reviewed_weight").is_none());
        let mut flags = TrainOptions::new("data", "backbone", "out");
        let o = inherit(&parent, &flags, &|_| false).unwrap();
        assert_eq!(o.head.reviewed_weight, crate::head::DEFAULT_REVIEWED_WEIGHT);
        let changes = recipe_changes(&parent_recipe(&parent, &flags).unwrap(), &o);
        assert_eq!(changes, ["head reviewed_weight: 1.0 → 10.0"]);
        flags.head.reviewed_weight = 4.0;
        let given = inherit(&parent, &flags, &|f| f == "reviewed_weight").unwrap();
        assert_eq!(given.head.reviewed_weight, 4.0);
    }

    #[test]
    fn a_logistic_parent_stays_logistic_until_a_network_flag_is_given() {
        use crate::head::Solver;
        let parent_head = HeadConfig {
            solver: Solver::Logistic { c: 2.0 },
            transform: crate::features::FeatureTransform::SqrtL2,
            hidden: vec![],
            ensemble: 1,
            ..HeadConfig::default()
        };
        let parent = parent_manifest(&parent_head);
        let mut flags = TrainOptions::new("data", "backbone", "out");
        let kept = inherit(&parent, &flags, &|_| false).unwrap();
        assert_eq!(kept.head, parent_head);
        // A new C.
        flags.head.solver = Solver::Logistic { c: 0.5 };
        flags.head.hidden = vec![];
        flags.head.ensemble = 1;
        let c = inherit(&parent, &flags, &|f| f == "logistic").unwrap();
        assert_eq!(c.head.solver, Solver::Logistic { c: 0.5 });
        let changes = recipe_changes(&parent_recipe(&parent, &flags).unwrap(), &c);
        assert_eq!(
            changes,
            ["head solver: {\"logistic\":{\"c\":2.0}} → {\"logistic\":{\"c\":0.5}}"]
        );
        // A dense-network flag asks for the network again, with the
        // default's width and members where not given.
        flags.head.dropout = 0.3;
        let net = inherit(&parent, &flags, &|f| f == "dropout").unwrap();
        assert_eq!(net.head.solver, Solver::Adam);
        assert_eq!(net.head.hidden, HeadConfig::default().hidden);
        assert_eq!(net.head.ensemble, HeadConfig::default().ensemble);
        assert_eq!(net.head.dropout, 0.3);
        assert_eq!(net.head.transform, parent_head.transform);
    }

    #[test]
    fn retrain_keeps_the_parent_recipe_except_what_is_given() {
        let parent_head = HeadConfig {
            hidden: vec![32],
            learning_rate: 1e-3,
            ..HeadConfig::default()
        };
        let parent = parent_manifest(&parent_head);
        let mut flags = TrainOptions::new("data", "backbone", "out");
        flags.head.learning_rate = 5e-4;
        flags.head.hidden = vec![8];
        let none = inherit(&parent, &flags, &|_| false).unwrap();
        assert_eq!(none.head, parent_head);
        assert_eq!((none.size, none.augmented_views), (96, 1));
        assert_eq!(
            (none.folds, none.repeats, none.target_sensitivity),
            (3, 2, 0.9)
        );
        assert!(recipe_changes(&parent_recipe(&parent, &flags).unwrap(), &none).is_empty());

        let lr = inherit(&parent, &flags, &|f| f == "learning_rate").unwrap();
        assert_eq!(lr.head.learning_rate, 5e-4);
        assert_eq!(lr.head.hidden, vec![32]);
        let changes = recipe_changes(&parent_recipe(&parent, &flags).unwrap(), &lr);
        assert_eq!(changes, ["head learning_rate: 0.001 → 0.0005"]);

        // The guard: the base's, a given guard flag overriding its field,
        // `--no-guard` none, and the default for a base without one.
        assert_eq!(none.guard, Some(crate::guard::GuardOptions::default()));
        flags.guard = Some(crate::guard::GuardOptions {
            components: 16,
            pass_target: 0.95,
        });
        let k = inherit(&parent, &flags, &|f| f == "guard_components").unwrap();
        assert_eq!(
            k.guard.map(|g| (g.components, g.pass_target)),
            Some((16, 0.99))
        );
        let changes = recipe_changes(&parent_recipe(&parent, &flags).unwrap(), &k);
        assert_eq!(
            changes,
            ["out-of-scope guard: 32 components, pass 0.99 → 16 components, pass 0.99"]
        );
        flags.guard = None;
        let off = inherit(&parent, &flags, &|f| f == "no_guard").unwrap();
        assert_eq!(off.guard, None);
        let changes = recipe_changes(&parent_recipe(&parent, &flags).unwrap(), &off);
        assert_eq!(
            changes,
            ["out-of-scope guard: 32 components, pass 0.99 → none"]
        );
        let mut unguarded = parent.clone();
        unguarded.head.as_object_mut().unwrap().remove("guard");
        let on = inherit(&unguarded, &flags, &|_| false).unwrap();
        assert_eq!(on.guard, Some(crate::guard::GuardOptions::default()));
        let changes = recipe_changes(&parent_recipe(&unguarded, &flags).unwrap(), &on);
        assert_eq!(
            changes,
            ["out-of-scope guard: none → 32 components, pass 0.99"]
        );

        let e = inherit(&parent, &flags, &|f| f == "choose_size").unwrap_err();
        assert!(e.to_string().contains("--choose-size"), "{e}");
        let mut old = parent.clone();
        old.head = serde_json::json!({"hidden": [1]});
        let e = inherit(&old, &flags, &|_| false).unwrap_err();
        assert!(e.to_string().contains("head.config"), "{e}");
    }
}
