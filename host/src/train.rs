//! `scanside train`: dataset → features → cross-validation → final fit →
//! export → verification → report.
//!
//! The numbers this writes come only from images a model never saw: every
//! metric is out-of-fold, from stratified k-fold repeated with different
//! seeds, where near-duplicate groups never straddle folds and the augmented
//! views of an image stay in its fold. The operating threshold is the
//! highest one that reaches the target sensitivity on out-of-fold
//! predictions; per-fold figures use a threshold chosen on the *other* folds
//! of the same repeat, so even the threshold is not fitted to the fold it
//! scores.

use std::path::{Path, PathBuf};
use std::time::Instant;

use rayon::prelude::*;
use serde::Serialize;

use scanside_shared::manifest::{BackboneInfo, Lineage, MANIFEST_FORMAT_VERSION, ModelManifest};
use scanside_shared::preprocess::ContentCrop;

use crate::augment::Augmentation;
use crate::backbone::{Backbone, write_atomically};
use crate::dataset::{Dataset, DatasetOptions, Skipped};
use crate::features::{Asymmetry, Blocks, FeatureCache, extract_all, head_input};
use crate::head::{HeadConfig, Samples, Stopping, TrainedHead, fit};
use crate::int8::{self, F32Reference, Int8Report, QuantizeOptions};
use crate::metrics::{Confusion, METRIC_NAMES, Metrics, bootstrap_ci, mean_std};
use crate::operating_point::{self, OperatingPoint, ThresholdRule};
use crate::validation::{self, ValidationResult, ValidationSet};
use crate::{Error, Result, cv, dedup, export, html_report, report};

/// Everything `train` needs to know.
#[derive(Clone, Debug)]
pub struct TrainOptions {
    /// The labelled dataset (the first source; `retrain` keeps its review
    /// queue here).
    pub data: DatasetOptions,
    /// Further source folders trained on with it (`--data` repeated), with
    /// the same class folders and decode limits.
    pub more_data: Vec<PathBuf>,
    /// The imported backbone file.
    pub backbone: PathBuf,
    /// Output folder.
    pub out: PathBuf,
    /// Feature cache.
    pub cache: FeatureCache,
    /// Square input size.
    pub size: u32,
    /// Crop scans to the head before resizing.
    pub crop: Option<ContentCrop>,
    /// Augmented views per training image (in addition to the original).
    pub augmented_views: usize,
    /// How the augmented views are made (default: with cutout, chosen by
    /// grouped CV and the occlusion probe; docs/training.md, "Choosing the
    /// head").
    pub augmentation: Augmentation,
    /// Head architecture and recipe.
    pub head: HeadConfig,
    /// Folds per repeat.
    pub folds: usize,
    /// Repeats of k-fold with different seeds.
    pub repeats: usize,
    /// Sensitivity the operating threshold must reach.
    pub target_sensitivity: f64,
    /// How the threshold is chosen from out-of-fold predictions.
    pub threshold_rule: ThresholdRule,
    /// Labelled folders the final model is scored on (never fitted to):
    /// `--validate`.
    pub validate: Vec<PathBuf>,
    /// Perceptual-hash distance that links near-duplicates.
    pub dedup_distance: u32,
    /// Bootstrap resamples for intervals.
    pub bootstrap: usize,
    /// Tolerance of the export verification.
    pub verify_tolerance: f32,
    /// Int8 quantization after export (`None`: f32 only).
    pub quantize: Option<QuantizeOptions>,
    /// Input sizes to compare before training; when not empty, `size` is
    /// replaced by the smallest whose cross-validated accuracy is within
    /// [`SIZE_TOLERANCE`] of the best.
    pub size_candidates: Vec<u32>,
    /// The out-of-scope guard the model carries (`None`: no guard, the
    /// model answers every scan that decodes; `--no-guard`).
    pub guard: Option<crate::guard::GuardOptions>,
    /// Hide progress bars.
    pub quiet: bool,
}

impl TrainOptions {
    /// Defaults for a dataset, backbone and output folder.
    pub fn new(
        data: impl Into<PathBuf>,
        backbone: impl Into<PathBuf>,
        out: impl Into<PathBuf>,
    ) -> Self {
        TrainOptions {
            data: DatasetOptions::new(data),
            more_data: Vec::new(),
            backbone: backbone.into(),
            out: out.into(),
            cache: FeatureCache::new(FeatureCache::default_dir()),
            size: 224,
            crop: None,
            augmented_views: 2,
            augmentation: Augmentation::Cutout,
            head: HeadConfig::default(),
            folds: 5,
            repeats: 3,
            target_sensitivity: 0.97,
            threshold_rule: ThresholdRule::default(),
            validate: Vec::new(),
            dedup_distance: dedup::DEFAULT_MAX_DISTANCE,
            bootstrap: 1000,
            verify_tolerance: 1e-4,
            quantize: Some(QuantizeOptions::default()),
            size_candidates: Vec::new(),
            guard: Some(crate::guard::GuardOptions::default()),
            quiet: false,
        }
    }

    /// Every source folder, the first being [`TrainOptions::data`].
    pub fn sources(&self) -> Vec<DatasetOptions> {
        std::iter::once(self.data.clone())
            .chain(self.more_data.iter().map(|root| DatasetOptions {
                root: root.clone(),
                ..self.data.clone()
            }))
            .collect()
    }

    fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::Config(m));
        if self.folds < 2 {
            return bad(format!("--folds must be at least 2, got {}", self.folds));
        }
        if self.repeats == 0 {
            return bad("--repeats must be at least 1".into());
        }
        if !(32..=1024).contains(&self.size) || !self.size.is_multiple_of(32) {
            return bad(format!(
                "--size must be a multiple of 32 in 32..=1024, got {}",
                self.size
            ));
        }
        if !(1..=64).contains(&self.head.ensemble) {
            return bad(format!(
                "--ensemble must be in 1..=64, got {}",
                self.head.ensemble
            ));
        }
        if !(self.head.reviewed_weight > 0.0 && self.head.reviewed_weight.is_finite()) {
            return bad(format!(
                "--reviewed-weight must be a positive number, got {}",
                self.head.reviewed_weight
            ));
        }
        if let crate::head::Solver::Logistic { c } = self.head.solver
            && !(c > 0.0 && c.is_finite())
        {
            return bad(format!("--logistic C must be a positive number, got {c}"));
        }
        if let Some(g) = &self.guard {
            if !(g.pass_target > 0.5 && g.pass_target <= 1.0) {
                return bad(format!(
                    "--guard-pass must be in (0.5, 1], got {}",
                    g.pass_target
                ));
            }
            if !(1..=256).contains(&g.components) {
                return bad(format!(
                    "--guard-components must be in 1..=256, got {}",
                    g.components
                ));
            }
        }
        if !(0.0..=1.0).contains(&self.target_sensitivity) {
            return bad(format!(
                "--target-sensitivity must be in [0, 1], got {}",
                self.target_sensitivity
            ));
        }
        Ok(())
    }
}

/// One fold's result.
#[derive(Clone, Debug, Serialize)]
pub struct FoldResult {
    /// Repeat index.
    pub repeat: usize,
    /// Fold index.
    pub fold: usize,
    /// Epoch whose weights were kept.
    pub best_epoch: usize,
    /// Metrics at the threshold chosen on the other folds of the repeat.
    #[serde(flatten)]
    pub metrics: Metrics,
}

/// The cross-validation summary: the JSON `train --json` prints.
#[derive(Clone, Debug, Serialize)]
pub struct CvSummary {
    /// Research notice.
    pub notice: &'static str,
    /// Images used.
    pub n: usize,
    /// Images per class, `[negative, positive]`.
    pub class_counts: [usize; 2],
    /// Files skipped.
    pub skipped: usize,
    /// Folds per repeat.
    pub folds: usize,
    /// Repeats.
    pub repeats: usize,
    /// Near-duplicate groups with more than one image.
    pub duplicate_groups: usize,
    /// Images in such groups.
    pub images_in_duplicate_groups: usize,
    /// Linked near-duplicate pairs.
    pub near_duplicate_pairs: usize,
    /// Target sensitivity of the operating threshold.
    pub target_sensitivity: f64,
    /// Operating threshold on the tumour probability (from all OOF predictions).
    pub threshold: f32,
    /// Mean over folds.
    pub accuracy: f64,
    /// Mean over folds.
    pub sensitivity: f64,
    /// Mean over folds.
    pub specificity: f64,
    /// Mean over folds.
    pub precision: f64,
    /// Mean over folds.
    pub f1: f64,
    /// Mean over folds.
    pub auc: f64,
    /// Standard deviations over folds.
    pub std: std::collections::BTreeMap<String, f64>,
    /// 95 % bootstrap intervals (groups resampled; per-fold thresholds;
    /// AUC on repeat-averaged probabilities), `accuracy_ci` etc.
    #[serde(flatten)]
    pub ci: std::collections::BTreeMap<String, [f64; 2]>,
    /// Confusion of the repeat-averaged OOF probabilities at `threshold`.
    pub confusion: Confusion,
    /// Mean metrics at the plain 0.5 (argmax) decision.
    pub at_half: std::collections::BTreeMap<String, f64>,
    /// Every fold.
    pub per_fold: Vec<FoldResult>,
    /// With several `--data` folders: each source's figures (omitted with
    /// one).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub per_source: Vec<SourceSummary>,
}

/// One source folder's share of the cross-validation: its images' out-of-fold
/// probabilities (averaged over repeats) at the model's threshold.
#[derive(Clone, Debug, Serialize)]
pub struct SourceSummary {
    /// The folder.
    pub folder: PathBuf,
    /// Metrics of its images' out-of-fold probabilities at the threshold
    /// (`n`, `accuracy`, …, `auc`, `confusion`).
    #[serde(flatten)]
    pub metrics: Metrics,
}

/// Wall time and peak memory of one stage.
#[derive(Clone, Debug, Serialize)]
pub struct StageTiming {
    /// Stage name.
    pub stage: &'static str,
    /// Wall time, seconds.
    pub seconds: f64,
    /// Peak resident memory of the process so far, MiB (Linux; 0 elsewhere).
    pub peak_rss_mib: f64,
}

/// What a finished run produced.
pub struct TrainOutcome {
    /// The cross-validation summary.
    pub summary: CvSummary,
    /// The exported model's manifest.
    pub manifest: ModelManifest,
    /// Path of the model file.
    pub model_path: PathBuf,
    /// Export verification.
    pub verification: export::Verification,
    /// Stage timings.
    pub timings: Vec<StageTiming>,
    /// Skipped files.
    pub skipped: Vec<Skipped>,
    /// The final head (loss history for the report).
    pub head: TrainedHead,
    /// Out-of-fold probability per image, averaged over repeats.
    pub oof: Vec<f32>,
    /// Loss per epoch of every cross-validation fold's head.
    pub fold_histories: Vec<Vec<crate::head::EpochLoss>>,
    /// How many views were extracted (not cached).
    pub views_computed: usize,
    /// The int8 model and its check, when quantization was asked for.
    pub int8: Option<Int8Outcome>,
    /// The input-size comparison, when sizes were compared.
    pub sizes: Vec<SizeResult>,
    /// Figures on every `--validate` folder: the f32 model's, then the
    /// int8 model's when it was checked.
    pub validation: Vec<ValidationResult>,
    /// How the threshold was chosen.
    pub operating_point: OperatingPoint,
}

/// File name of the validation figures in the output folder.
pub const VALIDATION_FILE: &str = "validation.json";

/// Accuracy a smaller input may lose against the best size and still be
/// chosen (0.005 = 0.5 percentage points).
pub const SIZE_TOLERANCE: f64 = 0.005;

/// One input size's cross-validated result and backbone latency.
#[derive(Clone, Debug, Serialize)]
pub struct SizeResult {
    /// Square input size.
    pub size: u32,
    /// Cross-validated accuracy at the operating threshold.
    pub accuracy: f64,
    /// Cross-validated accuracy at 0.5.
    pub accuracy_at_half: f64,
    /// Cross-validated ROC AUC.
    pub auc: f64,
    /// Median f32 backbone time for one scan in tract, one thread, ms.
    pub backbone_ms: f64,
    /// Whether this size was chosen.
    pub chosen: bool,
}

/// Cross-validate the recipe at each candidate size and pick the smallest
/// within [`SIZE_TOLERANCE`] of the best accuracy.
pub fn compare_sizes(opts: &TrainOptions) -> Result<Vec<SizeResult>> {
    let mut results = Vec::new();
    for &size in &opts.size_candidates {
        let at_size = TrainOptions {
            size,
            ..opts.clone()
        };
        if !opts.quiet {
            eprintln!("input size {size}: features and cross-validation …");
        }
        let prep = prepare(&at_size)?;
        let cv = cross_validate(&prep, &at_size)?;
        let first = &prep.dataset.items[0].path;
        let input = scanside_shared::preprocess::preprocess_file(
            first,
            &prep.backbone.spec,
            &opts.data.limits,
        )?;
        let mut times = Vec::new();
        for _ in 0..3 {
            let t = Instant::now();
            prep.backbone.features(&input)?;
            times.push(t.elapsed().as_secs_f64() * 1e3);
        }
        times.sort_by(f64::total_cmp);
        results.push(SizeResult {
            size,
            accuracy: cv.summary.accuracy,
            accuracy_at_half: cv.summary.at_half["accuracy"],
            auc: cv.summary.auc,
            backbone_ms: times[1],
            chosen: false,
        });
    }
    let best = results
        .iter()
        .map(|r| r.accuracy)
        .fold(f64::NEG_INFINITY, f64::max);
    if let Some(pick) = results
        .iter_mut()
        .filter(|r| r.accuracy >= best - SIZE_TOLERANCE)
        .min_by_key(|r| r.size)
    {
        pick.chosen = true;
    }
    Ok(results)
}

/// The int8 model written next to the f32 one.
pub struct Int8Outcome {
    /// Path of the int8 model file.
    pub model_path: PathBuf,
    /// What the check in tract measured.
    pub report: Int8Report,
}

/// File name of the f32 model in the output folder.
pub const F32_MODEL_FILE: &str = "model.onnx";
/// File name of the int8 model in the output folder.
pub const INT8_MODEL_FILE: &str = "model-int8.onnx";

/// File name of the HTML report in the output folder.
pub const HTML_REPORT_FILE: &str = "report.html";

/// Peak RSS of this process in MiB, from `/proc/self/status` (0 if unknown).
pub fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(0.0, |kib| kib / 1024.0)
}

struct Stopwatch {
    timings: Vec<StageTiming>,
    at: Instant,
}

impl Stopwatch {
    fn new() -> Self {
        Stopwatch {
            timings: Vec::new(),
            at: Instant::now(),
        }
    }

    fn lap(&mut self, stage: &'static str) {
        self.timings.push(StageTiming {
            stage,
            seconds: self.at.elapsed().as_secs_f64(),
            peak_rss_mib: peak_rss_mib(),
        });
        self.at = Instant::now();
    }
}

/// Pooled rows for the given items and views.
fn samples(
    pooled: &[Vec<Vec<f32>>],
    labels: &[u8],
    group: &[usize],
    weight: &[f32],
    items: &[usize],
    views: usize,
) -> Samples {
    let mut s = Samples::default();
    for &i in items {
        for (v, row) in pooled[i].iter().take(views).enumerate() {
            s.push_weighted(row, labels[i], group[i], v == 0, weight[i]);
        }
    }
    s
}

fn flat(pooled: &[Vec<Vec<f32>>], items: &[usize]) -> Vec<f32> {
    items
        .iter()
        .flat_map(|&i| pooled[i][0].iter().copied())
        .collect()
}

/// A dataset read, grouped and turned into backbone features: everything
/// cross-validation and the final fit need, computed once.
pub struct Prepared {
    /// The loaded backbone.
    pub backbone: Backbone,
    /// The dataset.
    pub dataset: Dataset,
    /// Near-duplicate groups.
    pub groups: dedup::Groups,
    /// Label per item.
    pub labels: Vec<u8>,
    /// Feature maps per item, per view.
    pub maps: Vec<Vec<crate::backbone::FeatureMap>>,
    /// Block 4's maps per item, per view, when the recipe reads them
    /// ([`crate::features::Blocks::Block4Last`]).
    pub block4: Option<Vec<Vec<crate::backbone::FeatureMap>>>,
    /// Views extracted (not read from the cache).
    pub views_computed: usize,
}

impl Prepared {
    /// The loss weight of each item for `head`: its
    /// [`HeadConfig::reviewed_weight`] for a reviewed device scan
    /// ([`crate::dataset::Item::is_reviewed_scan`]), 1 otherwise.
    pub fn item_weights(&self, head: &HeadConfig) -> Vec<f32> {
        self.dataset
            .items
            .iter()
            .map(|i| {
                if i.is_reviewed_scan() {
                    head.reviewed_weight
                } else {
                    1.0
                }
            })
            .collect()
    }

    /// Head input rows `[item][view]` for a head configuration: pooled, then
    /// transformed.
    ///
    /// # Panics
    /// If `head` reads block 4 and the features were prepared without it
    /// (a recipe that reads block 4 makes [`prepare`] extract it).
    pub fn pooled(&self, head: &HeadConfig) -> Vec<Vec<Vec<f32>>> {
        let block4 = match head.blocks {
            Blocks::Last => None,
            Blocks::Block4Last => Some(
                self.block4
                    .as_ref()
                    .expect("features prepared for a recipe that reads block 4"),
            ),
        };
        self.maps
            .iter()
            .enumerate()
            .map(|(i, vs)| {
                vs.iter()
                    .enumerate()
                    .map(|(v, m)| {
                        let b4 = block4.map(|b| &b[i][v]);
                        head_input(m, head.pooling, head.transform, head.asymmetry, b4)
                    })
                    .collect()
            })
            .collect()
    }
}

/// Load the backbone and dataset, group near-duplicates and get features.
pub fn prepare(opts: &TrainOptions) -> Result<Prepared> {
    let mut watch = Stopwatch::new();
    prepare_timed(opts, &mut watch)
}

fn prepare_timed(opts: &TrainOptions, watch: &mut Stopwatch) -> Result<Prepared> {
    opts.validate()?;
    let backbone = match opts.head.blocks {
        Blocks::Last => Backbone::load(&opts.backbone, opts.size)?,
        Blocks::Block4Last => Backbone::load_with_block4(&opts.backbone, opts.size)?,
    }
    .with_crop(opts.crop);
    watch.lap("load backbone");
    let dataset = Dataset::load_sources(&opts.sources(), &opts.cache)?;
    for s in &dataset.skipped {
        eprintln!("skipped {}: {}", s.path.display(), s.reason);
    }
    let labels: Vec<u8> = dataset.items.iter().map(|i| i.label).collect();
    let groups = dedup::group(&dataset.items, opts.dedup_distance);
    let min_class = *dataset.class_counts().iter().min().expect("two classes");
    if min_class < opts.folds {
        return Err(Error::Dataset {
            path: dataset.root.clone(),
            reason: format!(
                "{min_class} images in the smaller class: too few for {} folds",
                opts.folds
            ),
        });
    }
    watch.lap("scan + deduplicate");
    let extracted = extract_all(
        &backbone,
        &dataset.items,
        1 + opts.augmented_views,
        opts.augmentation,
        &opts.cache,
        &opts.data.limits,
        opts.quiet,
    )?;
    watch.lap("features");
    let map_width = extracted.maps.iter().flatten().map(|m| m.width).min();
    if opts.head.asymmetry == Asymmetry::LeftRight && map_width.is_some_and(|w| w < 2) {
        return Err(Error::Config(format!(
            "--asymmetry left-right compares the left and right halves of the feature map, \
             but at --size {} the backbone's map is 1 column wide; use a larger --size \
             or --asymmetry none",
            opts.size
        )));
    }
    Ok(Prepared {
        backbone,
        dataset,
        groups,
        labels,
        maps: extracted.maps,
        block4: extracted.block4,
        views_computed: extracted.computed,
    })
}

/// What cross-validation of one recipe produced.
pub struct CvResult {
    /// The summary.
    pub summary: CvSummary,
    /// Out-of-fold probability per item, averaged over repeats.
    pub oof_mean: Vec<f32>,
    /// Median best epoch over the folds (the final fit's epoch count).
    pub final_epochs: usize,
    /// Every fold's head and held-out items, to score other features
    /// (e.g. the int8 model's) out of fold.
    pub fold_heads: Vec<FoldHead>,
    /// How the threshold was chosen from `oof_mean`.
    pub operating_point: OperatingPoint,
}

/// A head trained on all folds but one, and the items it never saw.
#[derive(Clone, Debug)]
pub struct FoldHead {
    /// The repeat it belongs to.
    pub repeat: usize,
    /// Held-out item indices.
    pub test: Vec<usize>,
    /// The head.
    pub head: TrainedHead,
}

/// One fold's fit: repeat, fold, best epoch, test items, their probabilities, head.
type FoldFit = (usize, usize, usize, Vec<usize>, Vec<f32>, TrainedHead);

/// The fold of every item in every repeat, for the recipe in `opts`
/// (stratified, duplicate-grouped; seeded by the head's seed).
pub fn fold_assignment(prep: &Prepared, opts: &TrainOptions) -> Vec<Vec<usize>> {
    (0..opts.repeats)
        .map(|r| {
            cv::assign_folds(
                &prep.labels,
                &prep.groups.of_item,
                opts.folds,
                opts.head.seed + 1000 * r as u64,
            )
        })
        .collect()
}

/// Cross-validate the head recipe in `opts` on prepared features.
pub fn cross_validate(prep: &Prepared, opts: &TrainOptions) -> Result<CvResult> {
    cross_validate_on(prep, opts, &fold_assignment(prep, opts), None, None)
}

/// Cross-validate on given folds (`fold_of[repeat][item]`, one entry per
/// repeat in `opts`). With `trainable`, only items marked `true` are
/// trained on; every item of a held-out fold is still scored. This is how
/// `retrain` scores the parent's recipe, trained on the old data only, on
/// exactly the candidate's folds. With `threshold_on`, thresholds (the
/// model's and each fold's) are chosen on the out-of-fold predictions of
/// the items marked `true` only: how a site's own reviewed scans set the
/// operating point after site adaptation.
pub fn cross_validate_on(
    prep: &Prepared,
    opts: &TrainOptions,
    fold_of: &[Vec<usize>],
    trainable: Option<&[bool]>,
    threshold_on: Option<&[bool]>,
) -> Result<CvResult> {
    let sets_threshold = |i: usize| threshold_on.is_none_or(|m| m[i]);
    let pooled = prep.pooled(&opts.head);
    let weights = prep.item_weights(&opts.head);
    let labels = &prep.labels;
    let group = &prep.groups.of_item;
    let views = 1 + opts.augmented_views;
    let n = labels.len();
    let jobs: Vec<(usize, usize)> = (0..opts.repeats)
        .flat_map(|r| (0..opts.folds).map(move |f| (r, f)))
        .collect();
    let fits: Vec<FoldFit> = jobs
        .par_iter()
        .map(|&(r, f)| {
            let train: Vec<usize> = (0..n)
                .filter(|&i| fold_of[r][i] != f && trainable.is_none_or(|t| t[i]))
                .collect();
            let test: Vec<usize> = (0..n).filter(|&i| fold_of[r][i] == f).collect();
            let cfg = HeadConfig {
                seed: opts.head.seed + (r * opts.folds + f) as u64,
                ..opts.head.clone()
            };
            let head = fit(
                &samples(&pooled, labels, group, &weights, &train, views),
                &cfg,
                Stopping::EarlyOnValidation,
            )?;
            let p = head.predict(&flat(&pooled, &test))?;
            Ok((r, f, head.best_epoch, test, p, head))
        })
        .collect::<Result<_>>()?;
    let mut oof = vec![vec![f32::NAN; n]; opts.repeats];
    for (r, _, _, test, p, _) in &fits {
        for (&i, &v) in test.iter().zip(p) {
            oof[*r][i] = v;
        }
    }
    let mut per_fold = Vec::new();
    let mut best_epochs = Vec::new();
    // Per repeat and item: probability shifted by the fold's own threshold.
    let mut decisions = vec![vec![f32::NAN; n]; opts.repeats];
    for (r, f, best_epoch, test, p, _) in &fits {
        let others: Vec<usize> = (0..n)
            .filter(|&i| fold_of[*r][i] != *f && sets_threshold(i))
            .collect();
        let t = opts.threshold_rule.threshold(
            &others.iter().map(|&i| oof[*r][i]).collect::<Vec<_>>(),
            &others.iter().map(|&i| labels[i]).collect::<Vec<_>>(),
            opts.target_sensitivity,
        );
        for (&i, &v) in test.iter().zip(p) {
            decisions[*r][i] = v - t + 0.5;
        }
        let y: Vec<u8> = test.iter().map(|&i| labels[i]).collect();
        per_fold.push(FoldResult {
            repeat: *r,
            fold: *f,
            best_epoch: *best_epoch,
            metrics: Metrics::compute(p, &y, t),
        });
        best_epochs.push(*best_epoch);
    }
    let oof_mean: Vec<f32> = (0..n)
        .map(|i| oof.iter().map(|r| r[i]).sum::<f32>() / opts.repeats as f32)
        .collect();
    let chosen: Vec<usize> = (0..n).filter(|&i| sets_threshold(i)).collect();
    let mut operating_point = opts.threshold_rule.choose(
        &chosen.iter().map(|&i| oof_mean[i]).collect::<Vec<_>>(),
        &chosen.iter().map(|&i| labels[i]).collect::<Vec<_>>(),
        opts.target_sensitivity,
    );
    if threshold_on.is_some() {
        operating_point.chosen_on = Some(format!(
            "{} of the {n} training images (the reviewed scans)",
            chosen.len()
        ));
    }
    let threshold = operating_point.threshold;
    let at_half: Vec<(Vec<u8>, Vec<f32>)> = fits
        .iter()
        .map(|(_, _, _, test, p, _)| (test.iter().map(|&i| labels[i]).collect(), p.clone()))
        .collect();
    let summary = summarise(
        opts, prep, &decisions, &oof_mean, threshold, per_fold, &at_half,
    );
    best_epochs.sort_unstable();
    Ok(CvResult {
        summary,
        oof_mean,
        final_epochs: best_epochs[best_epochs.len() / 2].max(1),
        fold_heads: fits
            .into_iter()
            .map(|(repeat, _, _, test, _, head)| FoldHead { repeat, test, head })
            .collect(),
        operating_point,
    })
}

/// The f32 model made from a recipe, verified, not yet written.
struct Fitted {
    prep: Prepared,
    cv: CvResult,
    head: TrainedHead,
    manifest: ModelManifest,
    bytes: Vec<u8>,
    /// The final head's probability per item, in memory.
    in_memory: Vec<f32>,
    verification: export::Verification,
    files: Vec<PathBuf>,
    /// Every `--validate` folder and the final model's figures on it.
    validation: Vec<(ValidationSet, ValidationResult)>,
    /// For a model with a guard, the head's input per item (original view).
    head_inputs: Option<Vec<Vec<f32>>>,
}

/// Score the final head on every `--validate` folder, with backbone
/// features computed (and cached) like the training images' original view.
/// The exported model reproduces this pipeline within the verification
/// tolerance, so these are the f32 model's figures.
fn validate_final(
    prep: &Prepared,
    opts: &TrainOptions,
    head: &TrainedHead,
    threshold: f32,
) -> Result<Vec<(ValidationSet, ValidationResult)>> {
    let mut out = Vec::new();
    for folder in &opts.validate {
        let data = DatasetOptions {
            root: folder.clone(),
            ..opts.data.clone()
        };
        let set =
            ValidationSet::load(&data, &opts.cache, &prep.dataset.items, opts.dedup_distance)?;
        if !opts.quiet {
            eprintln!(
                "validating on {}: {} images ({} left out as copies of training images, {} unreadable)",
                folder.display(),
                set.dataset.items.len(),
                set.excluded.len(),
                set.dataset.skipped.len()
            );
        }
        let probabilities = predict_items(prep, opts, head, &set.dataset.items)?;
        let result = validation::score(
            folder.clone(),
            "f32",
            &set.dataset.items,
            &probabilities,
            threshold,
            opts.dedup_distance,
            set.excluded.clone(),
            set.dataset.skipped.clone(),
            opts.head.seed,
        );
        out.push((set, result));
    }
    Ok(out)
}

/// A head's probabilities for items outside the training data, from their
/// original view's backbone features (cached).
pub fn predict_items(
    prep: &Prepared,
    opts: &TrainOptions,
    head: &TrainedHead,
    items: &[crate::dataset::Item],
) -> Result<Vec<f32>> {
    let rows: Vec<f32> = head_inputs_of(prep, opts, items)?
        .into_iter()
        .flatten()
        .collect();
    head.predict(&rows)
}

/// The head's input (the pooled, transformed backbone features) of items
/// outside the training data, one row per item, from their original view's
/// backbone features (cached).
pub fn head_inputs_of(
    prep: &Prepared,
    opts: &TrainOptions,
    items: &[crate::dataset::Item],
) -> Result<Vec<Vec<f32>>> {
    let extracted = extract_all(
        &prep.backbone,
        items,
        1,
        opts.augmentation,
        &opts.cache,
        &opts.data.limits,
        opts.quiet,
    )?;
    if opts.head.blocks == Blocks::Block4Last && extracted.block4.is_none() {
        return Err(Error::Config(
            "the recipe reads block 4, but the features were prepared without it".into(),
        ));
    }
    Ok(extracted
        .maps
        .iter()
        .enumerate()
        .map(|(i, vs)| {
            let b4 = match opts.head.blocks {
                Blocks::Last => None,
                Blocks::Block4Last => extracted.block4.as_ref().map(|b| &b[i][0]),
            };
            head_input(
                &vs[0],
                opts.head.pooling,
                opts.head.transform,
                opts.head.asymmetry,
                b4,
            )
        })
        .collect())
}

/// Cross-validate, fit the final head, export and verify.
fn fit_export_verify(opts: &TrainOptions, watch: &mut Stopwatch) -> Result<Fitted> {
    let prep = prepare_timed(opts, watch)?;
    let cv = cross_validate(&prep, opts)?;
    watch.lap("cross-validation");
    let last = fit_final(&prep, &cv, opts)?;
    watch.lap(if opts.validate.is_empty() {
        "final fit"
    } else {
        "final fit + external validation"
    });
    export_verified(prep, cv, last, opts, None, watch)
}

/// The head fitted on every image, its probability per image, and its
/// figures on every `--validate` folder.
pub struct FinalFit {
    /// The head.
    pub head: TrainedHead,
    /// Its positive-class probability per dataset item, in memory.
    pub in_memory: Vec<f32>,
    /// Every `--validate` folder and the head's figures on it, at the
    /// cross-validated threshold (empty without `--validate`).
    pub validation: Vec<(ValidationSet, ValidationResult)>,
}

/// Fit the final head on every image for the folds' median epoch count,
/// and score it on the `--validate` folders.
pub fn fit_final(prep: &Prepared, cv: &CvResult, opts: &TrainOptions) -> Result<FinalFit> {
    let pooled = prep.pooled(&opts.head);
    let all: Vec<usize> = (0..prep.labels.len()).collect();
    let head = fit(
        &samples(
            &pooled,
            &prep.labels,
            &prep.groups.of_item,
            &prep.item_weights(&opts.head),
            &all,
            1 + opts.augmented_views,
        ),
        &opts.head,
        Stopping::FixedEpochs(cv.final_epochs),
    )?;
    let in_memory = head.predict(&flat(&pooled, &all))?;
    let validation = validate_final(prep, opts, &head, cv.summary.threshold)?;
    Ok(FinalFit {
        head,
        in_memory,
        validation,
    })
}

/// Build the model from the final head (with `lineage` for a retrained
/// one), export and verify it.
fn export_verified(
    prep: Prepared,
    cv: CvResult,
    last: FinalFit,
    opts: &TrainOptions,
    lineage: Option<Lineage>,
    watch: &mut Stopwatch,
) -> Result<Fitted> {
    let Prepared {
        backbone, dataset, ..
    } = &prep;
    let FinalFit {
        head,
        in_memory,
        validation,
    } = last;

    // With a guard: the head's input of every view (the guard's training
    // rows) and of every original (what the export verification compares).
    let pooled = opts.guard.map(|_| prep.pooled(&opts.head));
    let head_inputs: Option<Vec<Vec<f32>>> = pooled
        .as_ref()
        .map(|p| p.iter().map(|views| views[0].clone()).collect());
    let guard = match opts.guard.zip(pooled.as_ref()) {
        Some((g, pooled)) => {
            let folds = fold_assignment(&prep, opts).swap_remove(0);
            let spec = crate::guard::fit(pooled, &folds, opts.folds, g)?;
            if !opts.quiet {
                eprintln!(
                    "out-of-scope guard: {:.1} % of training images pass out of fold \
                     (threshold {:.3}, {} components)",
                    100.0 * spec.fitted.oof_pass_rate,
                    spec.features.threshold,
                    spec.features.rank()
                );
            }
            watch.lap("out-of-scope guard");
            Some(spec)
        }
        None => None,
    };
    drop(pooled);
    let data_sha = dataset.content_sha256();
    // The reviewed-scan weight changes nothing for data without reviewed
    // scans: recorded as 1 then, so a model trained on such data keeps the
    // id (and recipe) it had before the setting existed.
    let mut recorded_head = opts.head.clone();
    if !dataset.items.iter().any(|i| i.is_reviewed_scan()) {
        recorded_head.reviewed_weight = 1.0;
    }
    let mut head_json = serde_json::json!({
        "config": recorded_head,
        "final_epochs": cv.final_epochs,
        "augmented_views": opts.augmented_views,
        "augmentation": opts.augmentation.recipe(),
        "folds": opts.folds,
        "repeats": opts.repeats,
    });
    if let Some(g) = &opts.guard {
        // A guard changes what the model answers: part of its identity.
        head_json["guard"] = serde_json::json!({
            "components": g.components,
            "pass_target": g.pass_target,
        });
    }
    if opts.threshold_rule != ThresholdRule::default() {
        // Recorded only when not the default, so default models keep their
        // id; the chosen point itself is in `extra` either way.
        head_json["threshold_rule"] = serde_json::json!(opts.threshold_rule);
    }
    // The parent is part of a model's identity: the same data and recipe
    // reached from another parent is another version.
    let id_source = format!(
        "{data_sha}|{}|{}|{}{}",
        backbone.manifest.weights_sha256,
        serde_json::to_string(&head.layers).expect("serialises"),
        head_json,
        lineage.as_ref().map_or(String::new(), |l| format!(
            "|{}",
            serde_json::to_string(l).expect("serialises")
        ))
    );
    let manifest = ModelManifest {
        format_version: MANIFEST_FORMAT_VERSION,
        model_id: format!(
            "scanside-{}",
            &scanside_shared::sha256_hex(id_source.as_bytes())[..12]
        ),
        scanside_version: scanside_shared::SCANSIDE_VERSION.into(),
        input_name: backbone.manifest.input_name.clone(),
        preprocessing: backbone.spec.clone(),
        labels: dataset.labels.to_vec(),
        positive_class: dataset.labels[1].clone(),
        threshold: cv.summary.threshold,
        training_data_sha256: data_sha,
        backbone: BackboneInfo {
            name: backbone.manifest.name.clone(),
            weights_sha256: backbone.manifest.weights_sha256.clone(),
            cut_at: backbone.manifest.cut_at.clone(),
        },
        head: head_json,
        cv_metrics: headline(&cv.summary),
        lineage,
        // Keep the backbone's own record (its source hash) in the model.
        extra: [
            (
                crate::backbone::MANIFEST_KEY.to_string(),
                serde_json::to_string(&backbone.manifest).expect("serialises"),
            ),
            (
                operating_point::MANIFEST_KEY.to_string(),
                serde_json::to_string(&cv.operating_point).expect("serialises"),
            ),
        ]
        .into_iter()
        .chain((!validation.is_empty()).then(|| {
            let sets: Vec<_> = validation.iter().map(|(_, r)| r.summary()).collect();
            (
                validation::MANIFEST_KEY.to_string(),
                serde_json::to_string(&sets).expect("serialises"),
            )
        }))
        .chain(guard.as_ref().map(|g| {
            (
                scanside_shared::guard::MANIFEST_KEY.to_string(),
                g.to_json(),
            )
        }))
        .collect(),
    };
    let shapes = export::MapShapes {
        width: prep.maps[0][0].width,
        channels: prep.maps[0][0].channels,
        block4_channels: prep.block4.as_ref().map(|b| b[0][0].channels),
    };
    let bytes = export::build(backbone, &opts.head, &head, &manifest, shapes)?;
    watch.lap("export");

    let model_path = opts.out.join(F32_MODEL_FILE);
    let files: Vec<PathBuf> = dataset.items.iter().map(|i| i.path.clone()).collect();
    // Verification is a pure function of the model bytes, the images and
    // this scanside: an identical re-run reuses the recorded result.
    let record = opts.cache.verification_path(
        &scanside_shared::sha256_hex(&bytes),
        &manifest.training_data_sha256,
    );
    // A record from before the guard check does not vouch for a guard.
    let verification = match std::fs::read(&record)
        .ok()
        .and_then(|b| serde_json::from_slice::<export::Verification>(&b).ok())
        .filter(|v| head_inputs.is_none() || v.guard_max_rel_diff.is_some())
    {
        Some(v) => v,
        None => {
            let v = export::verify(
                &bytes,
                &model_path,
                &files,
                &in_memory,
                head_inputs.as_deref(),
                opts.verify_tolerance,
                &opts.data.limits,
            )?;
            write_atomically(&record, &serde_json::to_vec(&v).expect("serialises"))?;
            v
        }
    };
    watch.lap("verify export in tract");
    Ok(Fitted {
        prep,
        cv,
        head,
        manifest,
        bytes,
        in_memory,
        verification,
        files,
        validation,
        head_inputs,
    })
}

/// Quantize a fitted model and check it in tract.
fn quantize_fitted(
    fitted: &Fitted,
    model_path: &Path,
    qopts: &QuantizeOptions,
    opts: &TrainOptions,
) -> Result<(Vec<u8>, Int8Report)> {
    let reference = F32Reference {
        bytes: &fitted.bytes,
        path: model_path,
        files: &fitted.files,
        labels: &fitted.prep.labels,
        probabilities: &fitted.in_memory,
        oof: &fitted.cv.oof_mean,
        fold_heads: &fitted.cv.fold_heads,
        validation: fitted
            .validation
            .iter()
            .map(|(set, result)| {
                let (labels, probabilities) = result.pairs();
                Ok(int8::ValidationReference {
                    folder: &set.folder,
                    files: set.dataset.items.iter().map(|i| i.path.clone()).collect(),
                    labels,
                    probabilities,
                    head_inputs: fitted
                        .head_inputs
                        .as_ref()
                        .map(|_| head_inputs_of(&fitted.prep, opts, &set.dataset.items))
                        .transpose()?,
                })
            })
            .collect::<Result<_>>()?,
        head_inputs: fitted.head_inputs.as_deref(),
    };
    int8::quantize_checked(
        &reference,
        fitted.manifest.threshold,
        qopts,
        &opts.cache,
        opts.quiet,
    )
}

/// Run the whole training job: writes `model.onnx`, `cv.json`, `report.md`
/// and, unless quantization is off, `quantization.json` and (if it passes
/// the check) `model-int8.onnx`. A refused int8 model is an error returned
/// after everything else has been written.
pub fn run(opts: &TrainOptions) -> Result<TrainOutcome> {
    let mut watch = Stopwatch::new();
    let sizes = if opts.size_candidates.is_empty() {
        Vec::new()
    } else {
        let sizes = compare_sizes(opts)?;
        watch.lap("compare input sizes");
        sizes
    };
    let chosen = TrainOptions {
        size: sizes
            .iter()
            .find(|r| r.chosen)
            .map_or(opts.size, |r| r.size),
        ..opts.clone()
    };
    let opts = &chosen;
    let fitted = fit_export_verify(opts, &mut watch)?;
    write_outputs(fitted, opts, watch, sizes)
}

/// Finish a retrain whose cross-validation and final fit are done: export
/// with the model's `lineage`, verify, quantize, and write everything
/// `train` writes into `opts.out`.
pub fn run_prepared(
    prep: Prepared,
    cv: CvResult,
    last: FinalFit,
    opts: &TrainOptions,
    lineage: Lineage,
) -> Result<TrainOutcome> {
    let mut watch = Stopwatch::new();
    let fitted = export_verified(prep, cv, last, opts, Some(lineage), &mut watch)?;
    write_outputs(fitted, opts, watch, Vec::new())
}

/// Write the model, int8 model, summaries and reports of a fitted run.
fn write_outputs(
    fitted: Fitted,
    opts: &TrainOptions,
    mut watch: Stopwatch,
    sizes: Vec<SizeResult>,
) -> Result<TrainOutcome> {
    let model_path = opts.out.join(F32_MODEL_FILE);
    write_atomically(&model_path, &fitted.bytes)?;

    let mut refused = None;
    let int8 = match &opts.quantize {
        None => None,
        Some(q) => {
            let (bytes, report) = quantize_fitted(&fitted, &model_path, q, opts)?;
            watch.lap("int8 quantize + check in tract");
            write_atomically(
                &opts.out.join("quantization.json"),
                &serde_json::to_vec_pretty(&report).expect("serialises"),
            )?;
            let path = opts.out.join(INT8_MODEL_FILE);
            match report.accept() {
                Ok(()) => write_atomically(&path, &bytes)?,
                Err(e) => {
                    // Never leave an older int8 model beside a new f32 one.
                    let _ = std::fs::remove_file(&path);
                    refused = Some(e);
                }
            }
            Some(Int8Outcome {
                model_path: path,
                report,
            })
        }
    };

    let mut validation: Vec<ValidationResult> =
        fitted.validation.iter().map(|(_, r)| r.clone()).collect();
    if let Some(q) = &int8 {
        for ((set, f32_result), v) in fitted.validation.iter().zip(&q.report.validation) {
            validation.push(validation::score(
                set.folder.clone(),
                "int8",
                &set.dataset.items,
                &v.probabilities,
                fitted.manifest.threshold,
                opts.dedup_distance,
                f32_result.excluded.clone(),
                f32_result.skipped.clone(),
                opts.head.seed,
            ));
        }
    }
    let Fitted {
        prep,
        cv,
        head,
        manifest,
        verification,
        ..
    } = fitted;
    let outcome = TrainOutcome {
        summary: cv.summary,
        manifest,
        model_path,
        verification,
        timings: watch.timings,
        skipped: prep.dataset.skipped.clone(),
        head,
        oof: cv.oof_mean,
        fold_histories: cv
            .fold_heads
            .iter()
            .map(|f| f.head.history.clone())
            .collect(),
        views_computed: prep.views_computed,
        int8,
        sizes,
        validation,
        operating_point: cv.operating_point,
    };
    if outcome.validation.is_empty() {
        // Never leave an earlier run's figures beside this model.
        let _ = std::fs::remove_file(opts.out.join(VALIDATION_FILE));
    } else {
        let file = validation::ValidationFile {
            notice: scanside_shared::classifier::NOTICE,
            format_version: validation::VALIDATION_FORMAT_VERSION,
            model_id: &outcome.manifest.model_id,
            sets: &outcome.validation,
        };
        write_atomically(
            &opts.out.join(VALIDATION_FILE),
            &serde_json::to_vec_pretty(&file).expect("serialises"),
        )?;
    }
    let summary_json = serde_json::to_vec_pretty(&outcome.summary).expect("serialises");
    write_atomically(&opts.out.join("cv.json"), &summary_json)?;
    write_atomically(
        &opts.out.join("report.md"),
        report::markdown(&outcome, &prep.dataset, &prep.groups, opts).as_bytes(),
    )?;
    write_atomically(
        &opts.out.join(HTML_REPORT_FILE),
        html_report::training(&outcome, &prep.dataset, &prep.groups)?.as_bytes(),
    )?;
    match refused {
        Some(e) => Err(e),
        None => Ok(outcome),
    }
}

/// Quantize an existing f32 model: re-derive it from its recipe and data
/// (features and verification come from the cache), insist the result is
/// byte-identical to `model`, then quantize, check and write `out`.
pub fn quantize_existing(
    opts: &TrainOptions,
    qopts: &QuantizeOptions,
    model: &Path,
    out: &Path,
) -> Result<Int8Report> {
    let given = std::fs::read(model).map_err(|e| Error::io(model, e))?;
    // A model trained with `--validate` records its folders (and figures)
    // in its metadata: re-derive it with the same folders.
    let mut opts = opts.clone();
    if opts.validate.is_empty() {
        opts.validate = recorded_validation_folders(&given, model);
    }
    // Its guard, as its recipe records it (none for a model without one).
    opts.guard = scanside_shared::classifier::parse_onnx(&given, model)
        .ok()
        .and_then(|p| scanside_shared::classifier::manifest_of(&p).ok())
        .and_then(|m| crate::guard::GuardOptions::recorded(&m.head));
    let opts = &opts;
    let mut watch = Stopwatch::new();
    let fitted = fit_export_verify(opts, &mut watch)?;
    if fitted.bytes != given {
        return Err(Error::Config(format!(
            "{}: this model was not trained with these options on this data \
             (re-training gives {}); pass the same options as `train`, or re-run `train`",
            model.display(),
            fitted.manifest.model_id
        )));
    }
    let (bytes, report) = quantize_fitted(&fitted, model, qopts, opts)?;
    report.accept()?;
    write_atomically(out, &bytes)?;
    Ok(report)
}

/// The `--validate` folders a model's metadata records (none if it has no
/// `scanside.validation` key or it cannot be read).
fn recorded_validation_folders(bytes: &[u8], path: &Path) -> Vec<PathBuf> {
    let manifest = scanside_shared::classifier::parse_onnx(bytes, path)
        .ok()
        .and_then(|p| scanside_shared::classifier::manifest_of(&p).ok());
    let Some(text) = manifest
        .as_ref()
        .and_then(|m| m.extra.get(validation::MANIFEST_KEY))
    else {
        return Vec::new();
    };
    let sets: Vec<serde_json::Value> = serde_json::from_str(text).unwrap_or_default();
    sets.iter()
        .filter_map(|s| s["folder"].as_str().map(PathBuf::from))
        .collect()
}

/// The headline numbers stored in the model's metadata.
pub fn headline(s: &CvSummary) -> serde_json::Value {
    serde_json::json!({
        "n": s.n,
        "folds": s.folds,
        "repeats": s.repeats,
        "duplicate_groups": s.duplicate_groups,
        "accuracy": s.accuracy,
        "sensitivity": s.sensitivity,
        "specificity": s.specificity,
        "auc": s.auc,
        "accuracy_ci": s.ci.get("accuracy_ci"),
        "auc_ci": s.ci.get("auc_ci"),
        "threshold": s.threshold,
        "target_sensitivity": s.target_sensitivity,
    })
}

fn summarise(
    opts: &TrainOptions,
    prep: &Prepared,
    decisions: &[Vec<f32>],
    oof_mean: &[f32],
    threshold: f32,
    per_fold: Vec<FoldResult>,
    fold_predictions: &[(Vec<u8>, Vec<f32>)],
) -> CvSummary {
    let (dataset, groups, labels) = (&prep.dataset, &prep.groups, &prep.labels);
    let metric = |name: &str, m: &Metrics| {
        m.named()
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| *v)
            .unwrap()
    };
    let mut means = std::collections::BTreeMap::new();
    let mut std = std::collections::BTreeMap::new();
    for name in METRIC_NAMES {
        let values: Vec<f64> = per_fold.iter().map(|f| metric(name, &f.metrics)).collect();
        let (m, s) = mean_std(&values);
        means.insert(name, m);
        std.insert(name.to_string(), s);
    }
    let mut at_half = std::collections::BTreeMap::new();
    for name in METRIC_NAMES {
        let values: Vec<f64> = fold_predictions
            .iter()
            .map(|(y, p)| metric(name, &Metrics::compute(p, y, 0.5)))
            .collect();
        at_half.insert(name.to_string(), mean_std(&values).0);
    }
    let ci = bootstrap_ci(
        decisions,
        oof_mean,
        labels,
        &groups.of_item,
        opts.bootstrap,
        opts.head.seed,
    )
    .into_iter()
    .map(|(k, v)| (format!("{k}_ci"), v))
    .collect();
    let multi = groups.multi_member();
    let per_source = if dataset.roots.len() > 1 {
        dataset
            .roots
            .iter()
            .enumerate()
            .map(|(source, folder)| {
                let (p, y): (Vec<f32>, Vec<u8>) = dataset
                    .items
                    .iter()
                    .zip(oof_mean)
                    .filter(|(i, _)| i.source == source)
                    .map(|(i, &p)| (p, i.label))
                    .unzip();
                SourceSummary {
                    folder: folder.clone(),
                    metrics: Metrics::compute(&p, &y, threshold),
                }
            })
            .collect()
    } else {
        Vec::new()
    };
    CvSummary {
        notice: scanside_shared::classifier::NOTICE,
        n: dataset.items.len(),
        class_counts: dataset.class_counts(),
        skipped: dataset.skipped.len(),
        folds: opts.folds,
        repeats: opts.repeats,
        duplicate_groups: multi.len(),
        images_in_duplicate_groups: multi.iter().map(Vec::len).sum(),
        near_duplicate_pairs: groups.pairs.len(),
        target_sensitivity: opts.target_sensitivity,
        threshold,
        accuracy: means["accuracy"],
        sensitivity: means["sensitivity"],
        specificity: means["specificity"],
        precision: means["precision"],
        f1: means["f1"],
        auc: means["auc"],
        std,
        ci,
        confusion: Confusion::at(oof_mean, labels, threshold),
        at_half,
        per_fold,
        per_source,
    }
}
