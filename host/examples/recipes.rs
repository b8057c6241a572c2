//! Compare head recipes by duplicate-grouped cross-validation on cached
//! features (no export): the table "Choosing the head" in docs/training.md.
//!
//! ```sh
//! cargo run -p scanside --example recipes -- [DATA] [--views N] [--crop] [--standard-augmentation] [--backbone F] [--only TEXT] [--validate DIR] [--block4]
//! ```
//!
//! `--block4` also extracts VGG16's block 4 maps and adds the recipes that
//! read them (`--blocks block4-last`).
//!
//! With `--validate DIR`, each recipe's final model (fitted on all of DATA)
//! is also scored on DIR, never fitted to (copies of training images left
//! out): its AUC, and sensitivity / specificity at the threshold of each
//! threshold rule.
//!
//! Augmented views use `train`'s default (with cutout);
//! `--standard-augmentation` uses the recipe every row measured before
//! cutout became the default.
use scanside::features::{Asymmetry, Blocks, FeatureTransform, Pooling};
use scanside::head::{HeadConfig, Solver};
use scanside::operating_point::ThresholdRule;
use scanside::train::{TrainOptions, cross_validate, prepare};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let value = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .map(|i| args[i + 1].clone())
    };
    let data = args.first().filter(|a| !a.starts_with("--")).cloned();
    let mut opts = TrainOptions::new(
        data.unwrap_or_else(|| "../shared/data/brain-mri".into()),
        value("--backbone").unwrap_or_else(|| "backbones/vgg16-notop.onnx".into()),
        "unused",
    );
    opts.quiet = true;
    opts.crop = args.iter().any(|a| a == "--crop").then(Default::default);
    opts.augmented_views = value("--views").map_or(2, |v| v.parse().expect("--views N"));
    if args.iter().any(|a| a == "--standard-augmentation") {
        opts.augmentation = scanside::augment::Augmentation::Standard;
    }
    let block4 = args.iter().any(|a| a == "--block4");
    opts.head.blocks = if block4 {
        Blocks::Block4Last
    } else {
        Blocks::Last
    };
    let prep = prepare(&opts).expect("features");
    let validation = value("--validate").map(|dir| {
        let data = scanside::dataset::DatasetOptions {
            root: dir.into(),
            ..opts.data.clone()
        };
        scanside::validation::ValidationSet::load(
            &data,
            &opts.cache,
            &prep.dataset.items,
            opts.dedup_distance,
        )
        .expect("validation folder")
    });
    // The rows below compare heads on block 5 alone (the default before
    // block 4); `--block4` adds the rows that read block 4 too.
    let d = HeadConfig {
        blocks: Blocks::Last,
        ..HeadConfig::default()
    };
    // The single-network recipe the log1p ensemble replaced.
    let single = HeadConfig {
        transform: FeatureTransform::None,
        ensemble: 1,
        dropout: 0.5,
        ..d.clone()
    };
    let fast = |hidden: Vec<usize>, pooling| HeadConfig {
        hidden,
        pooling,
        learning_rate: 1e-3,
        batch_size: 64,
        ..single.clone()
    };
    let recipes = [
        (
            "seed 1024-1024-512 lr1e-4 b32 avg",
            HeadConfig {
                hidden: vec![1024, 1024, 512],
                pooling: Pooling::Avg,
                learning_rate: 1e-4,
                batch_size: 32,
                patience: 15,
                ..single.clone()
            },
        ),
        ("256 avg", fast(vec![256], Pooling::Avg)),
        ("256 avg+max", single.clone()),
        ("256 max", fast(vec![256], Pooling::Max)),
        (
            "512-256 lr3e-4 avg+max",
            HeadConfig {
                learning_rate: 3e-4,
                ..fast(vec![512, 256], Pooling::AvgMax)
            },
        ),
        (
            "128 lr3e-4 dropout0.3 avg+max",
            HeadConfig {
                learning_rate: 3e-4,
                dropout: 0.3,
                ..fast(vec![128], Pooling::AvgMax)
            },
        ),
        ("linear avg+max", fast(vec![], Pooling::AvgMax)),
        (
            "256 avg+max log1p",
            HeadConfig {
                transform: FeatureTransform::Log1p,
                ..single.clone()
            },
        ),
        (
            "256 avg+max x5",
            HeadConfig {
                ensemble: 5,
                ..single.clone()
            },
        ),
        (
            "256 avg+max log1p x5",
            HeadConfig {
                dropout: 0.5,
                ..d.clone()
            },
        ),
        (
            "256 avg+max log1p x5 dropout0.7 (block 5 default)",
            d.clone(),
        ),
        (
            "256 avg+max log1p x5 dropout0.7 left-right",
            HeadConfig {
                asymmetry: Asymmetry::LeftRight,
                ..d.clone()
            },
        ),
        (
            "128 avg+max log1p x5 dropout0.7",
            HeadConfig {
                hidden: vec![128],
                ..d.clone()
            },
        ),
        (
            "linear avg+max log1p x5",
            HeadConfig {
                hidden: vec![],
                ..d.clone()
            },
        ),
    ];
    let with_block4 = |name: &str, head: HeadConfig| {
        (
            name.to_string(),
            HeadConfig {
                blocks: Blocks::Block4Last,
                ..head
            },
        )
    };
    let logistic = |c: f64| HeadConfig {
        transform: FeatureTransform::SqrtL2,
        solver: Solver::Logistic { c },
        hidden: vec![],
        ensemble: 1,
        ..d.clone()
    };
    let block4_recipes: Vec<(String, HeadConfig)> = if block4 {
        vec![
            with_block4("256 avg+max log1p x5 dropout0.7 block4", d.clone()),
            with_block4(
                "linear avg+max log1p x5 block4",
                HeadConfig {
                    hidden: vec![],
                    ..d.clone()
                },
            ),
            with_block4(
                "linear avg+max sqrt-l2 x5 block4",
                HeadConfig {
                    hidden: vec![],
                    transform: FeatureTransform::SqrtL2,
                    ..d.clone()
                },
            ),
            with_block4(
                "256 avg+max sqrt-l2 x5 dropout0.7 block4",
                HeadConfig {
                    transform: FeatureTransform::SqrtL2,
                    ..d.clone()
                },
            ),
            with_block4("logistic C1 avg+max sqrt-l2 block4", logistic(1.0)),
            with_block4("logistic C0.3 avg+max sqrt-l2 block4", logistic(0.3)),
            with_block4("logistic C3 avg+max sqrt-l2 block4", logistic(3.0)),
            with_block4("logistic C10 avg+max sqrt-l2 block4", logistic(10.0)),
            with_block4("logistic C100 avg+max sqrt-l2 block4", logistic(100.0)),
            with_block4(
                "256 avg+max log1p x5 dropout0.7 left-right block4",
                HeadConfig {
                    asymmetry: Asymmetry::LeftRight,
                    ..d.clone()
                },
            ),
        ]
    } else {
        vec![]
    };
    // The default with one setting changed: how flat the optimum is.
    let variants = [
        (
            "default, lr 3e-4",
            HeadConfig {
                learning_rate: 3e-4,
                ..d.clone()
            },
        ),
        (
            "default, lr 3e-4, patience 10",
            HeadConfig {
                learning_rate: 3e-4,
                patience: 10,
                ..d.clone()
            },
        ),
        (
            "default, 10 members",
            HeadConfig {
                ensemble: 10,
                ..d.clone()
            },
        ),
        (
            "default, hidden 512",
            HeadConfig {
                hidden: vec![512],
                ..d.clone()
            },
        ),
        (
            "default, batch 32",
            HeadConfig {
                batch_size: 32,
                ..d.clone()
            },
        ),
        (
            "default, batch 128",
            HeadConfig {
                batch_size: 128,
                ..d.clone()
            },
        ),
        (
            "default, dropout 0.8",
            HeadConfig {
                dropout: 0.8,
                ..d.clone()
            },
        ),
        (
            "default, weight decay 1e-2",
            HeadConfig {
                weight_decay: 1e-2,
                ..d.clone()
            },
        ),
        (
            "default, validation 25 %",
            HeadConfig {
                validation_fraction: 0.25,
                ..d.clone()
            },
        ),
    ];
    let only = value("--only");
    let all = recipes
        .into_iter()
        .chain(variants)
        .map(|(n, h)| (n.to_string(), h))
        .chain(block4_recipes);
    for (name, head) in all {
        if only.as_ref().is_some_and(|o| !name.contains(o.as_str())) {
            continue;
        }
        let t = std::time::Instant::now();
        let o = TrainOptions {
            head,
            ..opts.clone()
        };
        let r = cross_validate(&prep, &o).expect("cv");
        let s = &r.summary;
        println!(
            "{name:42} auc {:.3}  acc@0.5 {:.3}  acc@thr {:.3} (sens {:.3} spec {:.3})  {:.1} s",
            s.auc,
            s.at_half["accuracy"],
            s.accuracy,
            s.sensitivity,
            s.specificity,
            t.elapsed().as_secs_f64()
        );
        if let Some(v) = &validation {
            let last = scanside::train::fit_final(&prep, &r, &o).expect("final fit");
            let p = scanside::train::predict_items(&prep, &o, &last.head, &v.dataset.items)
                .expect("validation features");
            let y: Vec<u8> = v.dataset.items.iter().map(|i| i.label).collect();
            let mut line = format!(
                "{:42} validation n {} auc {:.3}",
                "",
                y.len(),
                scanside::metrics::auc(&p, &y)
            );
            for rule in [ThresholdRule::Quantile, ThresholdRule::LogitNormal] {
                let t = rule.threshold(&r.oof_mean, &prep.labels, o.target_sensitivity);
                let m = scanside::metrics::Metrics::compute(&p, &y, t);
                line += &format!(
                    "  {} t {:.4} sens {:.3} spec {:.3}",
                    rule.name(),
                    t,
                    m.sensitivity,
                    m.specificity
                );
            }
            println!("{line}");
        }
    }
}
