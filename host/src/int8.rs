//! The int8 step: calibrate → quantize → check in tract → accept or refuse.
//!
//! [`quantize_checked`] turns a verified f32 model into its int8 twin
//! ([`crate::quantize`]) and then runs that twin in tract, the engine the
//! device uses, on every training image. Two checks decide whether it may be
//! written:
//!
//! * decision agreement with the f32 model on the training images, at the
//!   model's threshold (and the largest |Δ probability|);
//! * the change of out-of-fold accuracy: the cross-validation fold heads are
//!   applied to the int8 backbone's features, so the comparison is as honest
//!   as the f32 estimate itself.
//!
//! A model that fails either check is refused with [`Error::Quantization`].

use std::path::{Path, PathBuf};

use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use tract_onnx::prelude::*;

use scanside_shared::classifier::{Classifier, manifest_of, parse_onnx};
use scanside_shared::guard::{FeatureGuard, GuardSpec};
use scanside_shared::preprocess::{DecodeLimits, preprocess_file};

use crate::calibrate::{self, Calibration, RangeMethod};
use crate::export::{OUTPUT_NAME, POOLED_NAME};
use crate::features::FeatureCache;
use crate::metrics::Metrics;
use crate::quantize::{self, QuantRecipe, Scheme};
use crate::train::FoldHead;
use crate::{Error, Result, onnx_graph};

/// The activation range method used unless told otherwise, chosen by
/// measured decision agreement with f32 in tract (docs/int8.md, "The static
/// scheme's range method": min/max flips 1 of the 30 team-set images
/// nearest the threshold, p99.999 flips 2; `examples/static_ranges.rs`
/// builds the models).
pub const DEFAULT_RANGE: RangeMethod = RangeMethod::MinMax;

/// The int8 form used unless told otherwise (chosen by measured latency in
/// tract; see docs/int8.md, "Why `weights` is the default", and the latency
/// table in docs/benchmarks.md).
pub const DEFAULT_SCHEME: Scheme = Scheme::Weights;

/// Options of the int8 step.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct QuantizeOptions {
    /// The int8 form.
    pub scheme: Scheme,
    /// Calibration images (static scheme), drawn from the training set across classes.
    pub calibration_images: usize,
    /// How activation ranges are chosen.
    pub range: RangeMethod,
    /// Smallest acceptable decision agreement with f32 on training images.
    pub min_agreement: f64,
    /// Largest acceptable drop of out-of-fold accuracy (fraction, 0.005 = 0.5 pt).
    pub max_accuracy_drop: f64,
    /// Seed of the calibration draw.
    pub seed: u64,
}

impl Default for QuantizeOptions {
    fn default() -> Self {
        QuantizeOptions {
            scheme: DEFAULT_SCHEME,
            calibration_images: 64,
            range: DEFAULT_RANGE,
            min_agreement: 0.99,
            max_accuracy_drop: 0.005,
            seed: 42,
        }
    }
}

impl QuantizeOptions {
    /// Check the options make sense.
    pub fn validate(&self) -> Result<()> {
        if self.calibration_images == 0 {
            return Err(Error::Config(
                "--calibration-images must be at least 1".into(),
            ));
        }
        if !(0.0..=1.0).contains(&self.min_agreement) {
            return Err(Error::Config(format!(
                "--min-agreement must be in [0, 1], got {}",
                self.min_agreement
            )));
        }
        if !(0.0..=1.0).contains(&self.max_accuracy_drop) {
            return Err(Error::Config(format!(
                "--max-accuracy-drop must be in [0, 1], got {}",
                self.max_accuracy_drop
            )));
        }
        Ok(())
    }
}

/// How the int8 model compares with the f32 model on the training images.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Agreement {
    /// Images compared.
    pub images: usize,
    /// Fraction with the same decision at the model's threshold.
    pub decision_agreement: f64,
    /// Largest |Δ probability|.
    pub max_abs_diff: f32,
    /// Mean |Δ probability|.
    pub mean_abs_diff: f32,
    /// The image with the largest difference.
    pub worst_file: Option<PathBuf>,
}

/// How the int8 model's out-of-scope guard compares with the f32 model's
/// on one set of images: the same guard statistics score each model's
/// head input.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GuardAgreement {
    /// Images compared.
    pub images: usize,
    /// Fraction with the same verdict (in or out of scope).
    pub verdict_agreement: f64,
    /// Fraction the f32 model's guard lets through.
    pub f32_pass_rate: f64,
    /// Fraction the int8 model's guard lets through.
    pub int8_pass_rate: f64,
    /// Largest |Δ score| as a fraction of the threshold.
    pub max_rel_diff: f32,
}

impl GuardAgreement {
    /// Compare the guard's verdicts on the f32 and the int8 head inputs.
    pub fn of(guard: &FeatureGuard, f32_rows: &[Vec<f32>], int8_rows: &[Vec<f32>]) -> Result<Self> {
        if f32_rows.len() != int8_rows.len() {
            return Err(Error::Verification(format!(
                "guard check: {} f32 head inputs against {} int8 ones",
                f32_rows.len(),
                int8_rows.len()
            )));
        }
        let n = f32_rows.len();
        let (mut same, mut pass_a, mut pass_b, mut max) = (0usize, 0usize, 0usize, 0f32);
        for (a, b) in f32_rows.iter().zip(int8_rows) {
            let (sa, sb) = (guard.score(a)?, guard.score(b)?);
            let (ia, ib) = (sa <= guard.threshold, sb <= guard.threshold);
            same += usize::from(ia == ib);
            pass_a += usize::from(ia);
            pass_b += usize::from(ib);
            let d = (sa - sb).abs() / guard.threshold;
            max = if d.is_nan() {
                f32::INFINITY
            } else {
                max.max(d)
            };
        }
        let rate = |k: usize| if n == 0 { 1.0 } else { k as f64 / n as f64 };
        Ok(GuardAgreement {
            images: n,
            verdict_agreement: rate(same),
            f32_pass_rate: rate(pass_a),
            int8_pass_rate: rate(pass_b),
            max_rel_diff: max,
        })
    }
}

/// Everything the int8 check measured.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Int8Report {
    /// The recipe stored in the model.
    pub recipe: QuantRecipe,
    /// Size of the f32 file.
    pub f32_bytes: usize,
    /// Size of the int8 file.
    pub int8_bytes: usize,
    /// The f32 model vs the int8 model, final head, training images.
    pub training: Agreement,
    /// Out-of-fold metrics of the f32 features at the operating threshold.
    pub oof_f32: Metrics,
    /// Out-of-fold metrics of the int8 features, same folds and threshold.
    pub oof_int8: Metrics,
    /// Out-of-fold decision agreement.
    pub oof_decision_agreement: f64,
    /// The thresholds the model had to meet.
    pub options: QuantizeOptions,
    /// `[f32, int8]` probability per training image (for the report's
    /// agreement plot; not serialised).
    #[serde(skip)]
    pub training_pairs: Vec<[f32; 2]>,
    /// The same comparison on every `--validate` folder.
    #[serde(default)]
    pub validation: Vec<Int8Validation>,
    /// For a model with a guard: its verdicts, f32 against int8, on the
    /// training images.
    #[serde(default)]
    pub guard: Option<GuardAgreement>,
}

/// The int8 model against the f32 model on one validation folder.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Int8Validation {
    /// The folder.
    pub folder: PathBuf,
    /// Decisions and probabilities, f32 against int8.
    pub agreement: Agreement,
    /// The f32 model's metrics at the threshold.
    pub f32: Metrics,
    /// The int8 model's metrics at the threshold.
    pub int8: Metrics,
    /// For a model with a guard: its verdicts, f32 against int8.
    #[serde(default)]
    pub guard: Option<GuardAgreement>,
    /// The int8 model's probability per image, in the folder's order (not
    /// serialised).
    #[serde(skip)]
    pub probabilities: Vec<f32>,
}

impl Int8Validation {
    /// Accuracy drop from f32 to int8 (positive = worse).
    pub fn accuracy_drop(&self) -> f64 {
        self.f32.accuracy - self.int8.accuracy
    }
}

/// A validation folder's images and the f32 model's probabilities on them.
pub struct ValidationReference<'a> {
    /// The folder.
    pub folder: &'a Path,
    /// Its scored images.
    pub files: Vec<PathBuf>,
    /// Their labels.
    pub labels: Vec<u8>,
    /// The f32 model's probabilities.
    pub probabilities: Vec<f32>,
    /// For a model with a guard, the f32 head input per image.
    pub head_inputs: Option<Vec<Vec<f32>>>,
}

impl Int8Report {
    /// Accuracy drop from f32 to int8 out of fold (positive = worse).
    pub fn accuracy_drop(&self) -> f64 {
        self.oof_f32.accuracy - self.oof_int8.accuracy
    }

    /// `Err` unless the int8 model passes both checks.
    pub fn accept(&self) -> Result<()> {
        let mut problems = Vec::new();
        if self.training.decision_agreement < self.options.min_agreement {
            problems.push(format!(
                "decision agreement with f32 on the training images is {:.2} % (< {:.2} %)",
                100.0 * self.training.decision_agreement,
                100.0 * self.options.min_agreement
            ));
        }
        if self.accuracy_drop() > self.options.max_accuracy_drop {
            problems.push(format!(
                "out-of-fold accuracy drops by {:.2} pt (> {:.2} pt)",
                100.0 * self.accuracy_drop(),
                100.0 * self.options.max_accuracy_drop
            ));
        }
        let guards = self
            .guard
            .iter()
            .map(|g| (g, "the training images".to_string()))
            .chain(self.validation.iter().filter_map(|v| {
                v.guard
                    .as_ref()
                    .map(|g| (g, v.folder.display().to_string()))
            }));
        for (g, set) in guards {
            if g.verdict_agreement < self.options.min_agreement {
                problems.push(format!(
                    "the out-of-scope guard's verdicts agree with f32 on {:.2} % of {set} (< {:.2} %)",
                    100.0 * g.verdict_agreement,
                    100.0 * self.options.min_agreement
                ));
            }
        }
        for v in &self.validation {
            if v.agreement.decision_agreement < self.options.min_agreement {
                problems.push(format!(
                    "decision agreement with f32 on {} is {:.2} % (< {:.2} %)",
                    v.folder.display(),
                    100.0 * v.agreement.decision_agreement,
                    100.0 * self.options.min_agreement
                ));
            }
            if v.accuracy_drop() > self.options.max_accuracy_drop {
                problems.push(format!(
                    "accuracy on {} drops by {:.2} pt (> {:.2} pt)",
                    v.folder.display(),
                    100.0 * v.accuracy_drop(),
                    100.0 * self.options.max_accuracy_drop
                ));
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(Error::Quantization(format!(
                "{}; try another --calibration-range or more --calibration-images",
                problems.join("; ")
            )))
        }
    }
}

/// The f32 side of the comparison, all computed by training.
pub struct F32Reference<'a> {
    /// The verified f32 model file.
    pub bytes: &'a [u8],
    /// Its path (for messages).
    pub path: &'a Path,
    /// Training images (originals), in item order.
    pub files: &'a [PathBuf],
    /// Their labels (1 = positive).
    pub labels: &'a [u8],
    /// The f32 model's positive probability per image.
    pub probabilities: &'a [f32],
    /// Out-of-fold f32 probability per image (mean over repeats).
    pub oof: &'a [f32],
    /// The cross-validation heads that produced `oof`.
    pub fold_heads: &'a [FoldHead],
    /// The `--validate` folders.
    pub validation: Vec<ValidationReference<'a>>,
    /// For a model with a guard, the f32 head input per training image.
    pub head_inputs: Option<&'a [Vec<f32>]>,
}

/// Pick `n` calibration images, the same share from each class, seeded.
pub fn calibration_files(files: &[PathBuf], labels: &[u8], n: usize, seed: u64) -> Vec<PathBuf> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let n = n.min(files.len());
    let mut chosen = Vec::with_capacity(n);
    for class in [0u8, 1] {
        let mut members: Vec<usize> = (0..files.len()).filter(|&i| labels[i] == class).collect();
        members.shuffle(&mut rng);
        let share = if class == 0 {
            (n * members.len()).div_ceil(files.len())
        } else {
            n - chosen.len()
        };
        chosen.extend(members.into_iter().take(share).map(|i| files[i].clone()));
    }
    chosen
}

/// Probabilities and pooled features of the int8 model, per image.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Int8Run {
    /// Positive-class probability per image.
    pub probabilities: Vec<f32>,
    /// Pooled backbone features per image (the dense head's input).
    pub pooled: Vec<Vec<f32>>,
}

/// Run a model in tract on every file, reading both its probabilities and
/// its pooled features in one pass.
pub fn run_with_features(bytes: &[u8], path: &Path, files: &[PathBuf]) -> Result<Int8Run> {
    let tract = |e: TractError| Error::Tract(format!("{}: {e:#}", path.display()));
    let proto = parse_onnx(bytes, path)?;
    let manifest = manifest_of(&proto)?;
    let spec = manifest.preprocessing.clone();
    let positive = manifest
        .labels
        .iter()
        .position(|l| *l == manifest.positive_class)
        .unwrap_or(1);
    let mut model = tract_onnx::onnx()
        .model_for_proto_model(&proto)
        .map_err(tract)?;
    model
        .select_outputs_by_name([OUTPUT_NAME, POOLED_NAME])
        .map_err(tract)?;
    let plan = model
        .with_input_fact(0, f32::fact(spec.input_shape(1)).into())
        .and_then(|m| m.into_optimized())
        .and_then(|m| m.into_runnable())
        .map_err(tract)?;
    let limits = DecodeLimits::default();
    let rows: Vec<(f32, Vec<f32>)> = files
        .par_iter()
        .map(|f| {
            let input = preprocess_file(f, &spec, &limits)?;
            let x = Tensor::from_shape(&input.shape, &input.data).map_err(tract)?;
            let out = plan.run(tvec!(x.into())).map_err(tract)?;
            let probs = out[0].to_plain_array_view::<f32>().map_err(tract)?;
            let pooled = out[1].to_plain_array_view::<f32>().map_err(tract)?;
            Ok((
                probs.iter().copied().nth(positive).unwrap_or(f32::NAN),
                pooled.iter().copied().collect(),
            ))
        })
        .collect::<Result<_>>()?;
    let (probabilities, pooled) = rows.into_iter().unzip();
    Ok(Int8Run {
        probabilities,
        pooled,
    })
}

/// Quantize `reference.bytes`, check the result in tract and return the int8
/// bytes with the report, or [`Error::Quantization`] if it fails the checks.
/// Calibration statistics and the int8 run are cached in `cache`.
pub fn quantize_checked(
    reference: &F32Reference<'_>,
    threshold: f32,
    opts: &QuantizeOptions,
    cache: &FeatureCache,
    quiet: bool,
) -> Result<(Vec<u8>, Int8Report)> {
    opts.validate()?;
    let proto = parse_onnx(reference.bytes, reference.path)?;
    let manifest = manifest_of(&proto)?;
    let f32_sha = scanside_shared::sha256_hex(reference.bytes);
    let (recipe, int8) = match opts.scheme {
        Scheme::Weights => {
            let recipe = QuantRecipe::weights_only(&manifest.model_id, &f32_sha);
            let int8 = onnx_graph::encode(&quantize::quantize_weights_only(&proto, &recipe)?);
            (recipe, int8)
        }
        Scheme::Static => {
            let cal_files = calibration_files(
                reference.files,
                reference.labels,
                opts.calibration_images,
                opts.seed,
            );
            let (_, observed) = quantize::conv_sites(&proto)?;
            let cal_path = cache.record_path("calibration", &files_key(&f32_sha, &cal_files));
            let calibration: Calibration = match read_record(&cal_path) {
                Some(c) => c,
                None => {
                    if !quiet {
                        eprintln!(
                            "calibrating int8 ranges on {} images in tract …",
                            cal_files.len()
                        );
                    }
                    let c = calibrate::calibrate(
                        &proto,
                        &observed,
                        &cal_files,
                        &manifest.preprocessing,
                        &DecodeLimits::default(),
                    )?;
                    write_record(&cal_path, &c)?;
                    c
                }
            };
            let recipe =
                QuantRecipe::new(opts.range, cal_files.len(), &manifest.model_id, &f32_sha);
            let int8 = onnx_graph::encode(&quantize::quantize(&proto, &calibration, &recipe)?);
            (recipe, int8)
        }
    };
    let int8_sha = scanside_shared::sha256_hex(&int8);
    let guard_spec = manifest
        .extra
        .get(scanside_shared::guard::MANIFEST_KEY)
        .map(|v| GuardSpec::from_json(v))
        .transpose()?;
    let guard_agreement =
        |f32_rows: Option<&[Vec<f32>]>, int8_rows: &[Vec<f32>]| match (&guard_spec, f32_rows) {
            (Some(g), Some(rows)) => GuardAgreement::of(&g.features, rows, int8_rows).map(Some),
            (Some(_), None) => Err(Error::Verification(
                "the model has a guard but no f32 head inputs were given".into(),
            )),
            (None, _) => Ok(None),
        };

    let cached_run = |files: &[PathBuf]| -> Result<Int8Run> {
        let run_path = cache.record_path("int8-runs", &files_key(&int8_sha, files));
        if let Some(r) = read_record(&run_path) {
            return Ok(r);
        }
        if !quiet {
            eprintln!(
                "checking the int8 model in tract on {} images …",
                files.len()
            );
        }
        let r = run_with_features(&int8, reference.path, files)?;
        write_record(&run_path, &r)?;
        Ok(r)
    };
    let run = cached_run(reference.files)?;
    let validation = reference
        .validation
        .iter()
        .map(|v| {
            let r = cached_run(&v.files)?;
            Ok(Int8Validation {
                folder: v.folder.to_path_buf(),
                agreement: agreement(&v.probabilities, &r.probabilities, threshold, &v.files),
                f32: Metrics::compute(&v.probabilities, &v.labels, threshold),
                int8: Metrics::compute(&r.probabilities, &v.labels, threshold),
                guard: guard_agreement(v.head_inputs.as_deref(), &r.pooled)?,
                probabilities: r.probabilities,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let guard = guard_agreement(reference.head_inputs, &run.pooled)?;
    // The device loads models through the shared classifier: make sure it
    // agrees with the two-output plan used above.
    let device = Classifier::from_bytes(&int8, reference.path)?;
    if let Some(first) = reference.files.first() {
        let p = device.classify_file(first)?.probability;
        if (p - run.probabilities[0]).abs() > 1e-6 {
            return Err(Error::Verification(format!(
                "int8 model: {}: the device classifier gives {p}, the checking plan {}",
                first.display(),
                run.probabilities[0]
            )));
        }
    }

    let training = agreement(
        reference.probabilities,
        &run.probabilities,
        threshold,
        reference.files,
    );
    let n = reference.labels.len();
    let repeats = reference
        .fold_heads
        .iter()
        .map(|f| f.repeat + 1)
        .max()
        .unwrap_or(1);
    let mut oof_int8 = vec![0f32; n];
    for fold in reference.fold_heads {
        let x: Vec<f32> = fold
            .test
            .iter()
            .flat_map(|&i| run.pooled[i].iter().copied())
            .collect();
        for (&i, p) in fold.test.iter().zip(fold.head.predict(&x)?) {
            oof_int8[i] += p / repeats as f32;
        }
    }
    let oof_agreement = agreement(reference.oof, &oof_int8, threshold, reference.files);
    let report = Int8Report {
        recipe,
        f32_bytes: reference.bytes.len(),
        int8_bytes: int8.len(),
        training,
        oof_f32: Metrics::compute(reference.oof, reference.labels, threshold),
        oof_int8: Metrics::compute(&oof_int8, reference.labels, threshold),
        oof_decision_agreement: oof_agreement.decision_agreement,
        options: opts.clone(),
        training_pairs: reference
            .probabilities
            .iter()
            .zip(&run.probabilities)
            .map(|(&a, &b)| [a, b])
            .collect(),
        validation,
        guard,
    };
    Ok((int8, report))
}

fn agreement(a: &[f32], b: &[f32], threshold: f32, files: &[PathBuf]) -> Agreement {
    let same = a
        .iter()
        .zip(b)
        .filter(|(x, y)| (**x >= threshold) == (**y >= threshold))
        .count();
    let diffs: Vec<f32> = a.iter().zip(b).map(|(x, y)| (x - y).abs()).collect();
    let worst = diffs
        .iter()
        .enumerate()
        .max_by(|x, y| x.1.total_cmp(y.1))
        .map(|(i, _)| i);
    Agreement {
        images: a.len(),
        decision_agreement: same as f64 / a.len().max(1) as f64,
        max_abs_diff: worst.map_or(0.0, |i| diffs[i]),
        mean_abs_diff: diffs.iter().sum::<f32>() / diffs.len().max(1) as f32,
        worst_file: worst.map(|i| files[i].clone()),
    }
}

/// A cache key: a model hash and the files it ran on.
fn files_key(model_sha256: &str, files: &[PathBuf]) -> String {
    let mut key = model_sha256.to_string();
    for f in files {
        key.push('|');
        key.push_str(&f.display().to_string());
    }
    key
}

fn read_record<T: serde::de::DeserializeOwned>(path: &Path) -> Option<T> {
    std::fs::read(path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
}

fn write_record<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    crate::backbone::write_atomically(path, &serde_json::to_vec(value).expect("serialises"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calibration_draw_is_stratified_and_seeded() {
        let files: Vec<PathBuf> = (0..100).map(|i| PathBuf::from(format!("{i}"))).collect();
        let labels: Vec<u8> = (0..100).map(|i| u8::from(i >= 40)).collect();
        let a = calibration_files(&files, &labels, 20, 7);
        assert_eq!(a, calibration_files(&files, &labels, 20, 7));
        assert_eq!(a.len(), 20);
        let negatives = a
            .iter()
            .filter(|p| p.to_str().unwrap().parse::<usize>().unwrap() < 40)
            .count();
        assert_eq!(negatives, 8);
        assert_ne!(a, calibration_files(&files, &labels, 20, 8));
        assert_eq!(calibration_files(&files, &labels, 500, 7).len(), 100);
    }

    #[test]
    fn agreement_counts_decisions_at_the_threshold() {
        let files: Vec<PathBuf> = (0..4).map(|i| PathBuf::from(format!("{i}"))).collect();
        let a = agreement(&[0.1, 0.6, 0.49, 0.9], &[0.2, 0.4, 0.51, 0.9], 0.5, &files);
        assert_eq!(a.decision_agreement, 0.5);
        assert!((a.max_abs_diff - 0.2).abs() < 1e-6);
        assert_eq!(a.worst_file, Some(PathBuf::from("1")));
    }

    #[test]
    fn report_refuses_low_agreement_and_accuracy_drop() {
        let m = |acc: f64| Metrics {
            accuracy: acc,
            ..Metrics::compute(&[0.9, 0.1], &[1, 0], 0.5)
        };
        let mut r = Int8Report {
            recipe: QuantRecipe::new(RangeMethod::MinMax, 1, "m", "s"),
            f32_bytes: 1,
            int8_bytes: 1,
            training: Agreement {
                images: 100,
                decision_agreement: 1.0,
                max_abs_diff: 0.0,
                mean_abs_diff: 0.0,
                worst_file: None,
            },
            oof_f32: m(0.80),
            oof_int8: m(0.797),
            oof_decision_agreement: 1.0,
            options: QuantizeOptions::default(),
            training_pairs: Vec::new(),
            validation: Vec::new(),
            guard: None,
        };
        assert!(r.accept().is_ok());
        r.oof_int8 = m(0.79);
        let e = r.accept().unwrap_err().to_string();
        assert!(e.contains("accuracy drops by 1.00 pt"), "{e}");
        r.oof_int8 = m(0.80);
        r.training.decision_agreement = 0.98;
        let e = r.accept().unwrap_err().to_string();
        assert!(e.contains("98.00 %"), "{e}");
        r.training.decision_agreement = 1.0;
        // A guard whose verdicts move under int8 is refused too.
        let guard = FeatureGuard {
            width: 2,
            mean: vec![0.0, 0.0],
            inv_std: vec![1.0, 1.0],
            components: vec![1.0, 0.0],
            variances: vec![1.0],
            residual_variance: 1.0,
            threshold: 1.0,
        };
        let f32_rows = vec![vec![0.1, 0.1]; 99]
            .into_iter()
            .chain([vec![1.0, 0.9]])
            .collect::<Vec<_>>();
        let mut int8_rows = f32_rows.clone();
        int8_rows[99] = vec![1.0, 1.1];
        let g = GuardAgreement::of(&guard, &f32_rows, &int8_rows).unwrap();
        assert_eq!((g.images, g.verdict_agreement), (100, 0.99));
        assert_eq!((g.f32_pass_rate, g.int8_pass_rate), (1.0, 0.99));
        assert!((g.max_rel_diff - 0.2).abs() < 1e-5, "{}", g.max_rel_diff);
        r.guard = Some(g);
        r.options.min_agreement = 0.995;
        let e = r.accept().unwrap_err().to_string();
        assert!(
            e.contains("guard's verdicts agree with f32 on 99.00 %"),
            "{e}"
        );
    }
}
