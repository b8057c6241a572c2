//! Exploratory comparisons behind the default head recipe: feature
//! transforms (some of which `train` does not offer: sqrt, sqrt + L2,
//! GeM), left–right asymmetry and its controls, ensembles, and block4 ‖
//! block5 features, each by the same
//! duplicate-grouped 5 × 3 cross-validation on cached features. Figures are
//! quoted in docs/training.md ("Choosing the head").
//!
//! ```sh
//! cargo run -p scanside --example feature_lab -- [TRANSFORMS] [HEADS]
//! # TRANSFORMS: comma list of avgmax, sqrt_avgmax, log_avgmax, l2sqrt_avgmax,
//! #   l2log_avgmax, gem3, gem3_max, lr_log, tb_log, lr_halves_log (default: all)
//! # HEADS: comma list of the head names below (default: all)
//! # LAB_B4=F: also append the same transform of block4 features from the
//! #   backbone F, imported with
//! #   scanside import-backbone --name block4 --out F \
//! #     --cut-at functional_1/block4_pool_1/MaxPool2d:0 --layout nhwc --normalisation caffe
//! # LAB_LOGIT=1: average members' logits instead of their probabilities
//! # LAB_STANDARD_AUG=1: augmented views without cutout (`train`'s default
//! #   before cutout; the lab table in docs/training.md was measured so)
//! ```
use scanside::features::{Asymmetry, FeatureTransform, Pooling, head_input};
use scanside::head::{HeadConfig, Samples, Stopping, fit};
use scanside::metrics::{Confusion, auc};
use scanside::train::{TrainOptions, prepare};
use scanside_shared::explain::{FeatureMap, half_columns};

type Transform = fn(&FeatureMap) -> Vec<f32>;

fn planes(m: &FeatureMap) -> std::slice::ChunksExact<'_, f32> {
    m.data.chunks_exact(m.height * m.width)
}
fn max(m: &FeatureMap) -> Vec<f32> {
    Pooling::Max.apply(m)
}
fn gem(m: &FeatureMap, p: f32) -> Vec<f32> {
    planes(m)
        .map(|pl| {
            (pl.iter().map(|v| v.max(0.0).powf(p)).sum::<f32>() / pl.len() as f32).powf(1.0 / p)
        })
        .collect()
}
fn avgmax(m: &FeatureMap) -> Vec<f32> {
    Pooling::AvgMax.apply(m)
}
fn sqrt_avgmax(m: &FeatureMap) -> Vec<f32> {
    avgmax(m).into_iter().map(|v| v.max(0.0).sqrt()).collect()
}
fn gem3(m: &FeatureMap) -> Vec<f32> {
    gem(m, 3.0)
}
fn gem3_max(m: &FeatureMap) -> Vec<f32> {
    let mut v = gem(m, 3.0);
    v.extend(max(m));
    v
}
fn l2(v: Vec<f32>) -> Vec<f32> {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-6);
    v.into_iter().map(|x| x / n).collect()
}
fn l2_avgmax(m: &FeatureMap) -> Vec<f32> {
    l2(sqrt_avgmax(m))
}
fn l2_log_avgmax(m: &FeatureMap) -> Vec<f32> {
    l2(log_avgmax(m))
}
fn log_avgmax(m: &FeatureMap) -> Vec<f32> {
    let mut v = avgmax(m);
    FeatureTransform::Log1p.apply(&mut v, 1);
    v
}

/// The default's features plus left–right asymmetry, as `train
/// --asymmetry left-right` computes them.
fn lr_log(m: &FeatureMap) -> Vec<f32> {
    head_input(
        m,
        Pooling::AvgMax,
        FeatureTransform::Log1p,
        Asymmetry::LeftRight,
        None,
    )
}
/// Control: the same features of the top and bottom halves (the map
/// transposed), which no anatomical symmetry motivates.
fn tb_log(m: &FeatureMap) -> Vec<f32> {
    let (h, w) = (m.height, m.width);
    let mut t = m.clone();
    t.height = w;
    t.width = h;
    for plane in 0..m.channels {
        for y in 0..h {
            for x in 0..w {
                t.data[plane * h * w + x * h + y] = m.data[plane * h * w + y * w + x];
            }
        }
    }
    let mut v = log_avgmax(m);
    let halves = head_input(
        &t,
        Pooling::AvgMax,
        FeatureTransform::Log1p,
        Asymmetry::LeftRight,
        None,
    );
    v.extend_from_slice(&halves[v.len()..]);
    v
}
/// Control: both halves' transformed poolings side by side, without the
/// absolute difference.
fn lr_halves_log(m: &FeatureMap) -> Vec<f32> {
    let mut v = log_avgmax(m);
    for cols in half_columns(m.width) {
        v.extend(log_avgmax(&m.columns(cols)));
    }
    v
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut opts = TrainOptions::new(
        "../shared/data/brain-mri",
        "backbones/vgg16-notop.onnx",
        "x",
    );
    opts.quiet = true;
    opts.augmented_views = 2;
    if std::env::var("LAB_STANDARD_AUG").is_ok() {
        opts.augmentation = scanside::augment::Augmentation::Standard;
    }
    // The lab pools block 4 from its own cut backbone (`LAB_B4`), so each
    // backbone is read for its cut alone.
    opts.head.blocks = scanside::features::Blocks::Last;
    let prep = prepare(&opts).expect("features");
    let prep4 = std::env::var("LAB_B4").ok().map(|b| {
        let mut o = opts.clone();
        o.backbone = b.into();
        prepare(&o).expect("block4 features")
    });
    let logit_avg = std::env::var("LAB_LOGIT").is_ok();
    let n = prep.labels.len();
    let fold_of = scanside::train::fold_assignment(&prep, &opts);
    let transforms: Vec<(&str, Transform)> = vec![
        ("avgmax", avgmax),
        ("sqrt_avgmax", sqrt_avgmax),
        ("log_avgmax", log_avgmax),
        ("l2sqrt_avgmax", l2_avgmax),
        ("l2log_avgmax", l2_log_avgmax),
        ("gem3", gem3),
        ("gem3_max", gem3_max),
        ("lr_log", lr_log),
        ("tb_log", tb_log),
        ("lr_halves_log", lr_halves_log),
    ];
    let which = args.first().cloned().unwrap_or_default();
    // One network per fit: the lab averages its own `ensemble` members.
    let d = HeadConfig {
        ensemble: 1,
        ..HeadConfig::default()
    };
    let e = Stopping::EarlyOnValidation;
    let with = |f: &dyn Fn(&mut HeadConfig)| {
        let mut h = d.clone();
        f(&mut h);
        h
    };
    let heads: Vec<(&str, HeadConfig, Stopping, usize)> = vec![
        ("early x5", d.clone(), e, 5),
        ("drop0.7 x5", with(&|h| h.dropout = 0.7), e, 5),
        ("early x10", d.clone(), e, 10),
        ("h512 x5", with(&|h| h.hidden = vec![512]), e, 5),
        ("h128 x5", with(&|h| h.hidden = vec![128]), e, 5),
        ("drop0.3 x5", with(&|h| h.dropout = 0.3), e, 5),
        ("drop0.7 x5", with(&|h| h.dropout = 0.7), e, 5),
        ("lr3e-4 x5", with(&|h| h.learning_rate = 3e-4), e, 5),
        ("patience12 x5", with(&|h| h.patience = 12), e, 5),
        ("wd1e-2 x5", with(&|h| h.weight_decay = 1e-2), e, 5),
        ("val0.25 x5", with(&|h| h.validation_fraction = 0.25), e, 5),
    ];
    for (tname, t) in &transforms {
        if !which.is_empty() && !which.split(',').any(|w| w == *tname) {
            continue;
        }
        let pooled: Vec<Vec<Vec<f32>>> = prep
            .maps
            .iter()
            .enumerate()
            .map(|(i, vs)| {
                vs.iter()
                    .enumerate()
                    .map(|(v, m)| {
                        let mut row = t(m);
                        if let Some(p4) = &prep4 {
                            row.extend(t(&p4.maps[i][v]));
                        }
                        row
                    })
                    .collect()
            })
            .collect();
        for (hname, head, stopping, ensemble) in &heads {
            if let Some(hs) = args.get(1)
                && !hs.split(',').any(|w| w == *hname)
            {
                continue;
            }
            let start = std::time::Instant::now();
            let mut aucs = Vec::new();
            let mut accs = Vec::new();
            let mut oof = vec![0f32; n];
            for (r, folds) in fold_of.iter().enumerate() {
                for f in 0..opts.folds {
                    let train: Vec<usize> = (0..n).filter(|&i| folds[i] != f).collect();
                    let test: Vec<usize> = (0..n).filter(|&i| folds[i] == f).collect();
                    let mut s = Samples::default();
                    for &i in &train {
                        for (v, row) in pooled[i].iter().enumerate() {
                            s.push(row, prep.labels[i], prep.groups.of_item[i], v == 0);
                        }
                    }
                    let x: Vec<f32> = test
                        .iter()
                        .flat_map(|&i| pooled[i][0].iter().copied())
                        .collect();
                    let mut p = vec![0f32; test.len()];
                    for e in 0..*ensemble {
                        let cfg = HeadConfig {
                            seed: head.seed + (r * 5 + f) as u64 + 100 * e as u64,
                            ..head.clone()
                        };
                        let h = fit(&s, &cfg, *stopping).unwrap();
                        for (a, b) in p.iter_mut().zip(h.predict(&x).unwrap()) {
                            if logit_avg {
                                let b = b.clamp(1e-7, 1.0 - 1e-7);
                                *a += (b / (1.0 - b)).ln() / *ensemble as f32;
                            } else {
                                *a += b / *ensemble as f32;
                            }
                        }
                    }
                    if logit_avg {
                        p.iter_mut().for_each(|a| *a = 1.0 / (1.0 + (-*a).exp()));
                    }
                    let y: Vec<u8> = test.iter().map(|&i| prep.labels[i]).collect();
                    aucs.push(auc(&p, &y));
                    accs.push(Confusion::at(&p, &y, 0.5).accuracy());
                    for (&i, &v) in test.iter().zip(&p) {
                        oof[i] += v / fold_of.len() as f32;
                    }
                }
            }
            let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
            println!(
                "{tname:14} {hname:30} auc {:.3} acc@0.5 {:.3} oof-auc {:.3}  {:.1}s",
                mean(&aucs),
                mean(&accs),
                auc(&oof, &prep.labels),
                start.elapsed().as_secs_f64()
            );
        }
    }
}
