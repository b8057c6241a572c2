//! The site-adaptation benchmark (`scanside::adaptation`): k scans of a new
//! site through import → review → the retrain candidate, scored on the
//! site's other scans. Prints a Markdown table of medians over draws and
//! writes every row (`rows.jsonl`), the table (`table.md`) and a plot of
//! AUC, sensitivity and specificity against k (`curve.svg`) to OUT.
//!
//! ```sh
//! cargo run --release -p scanside --example site_adaptation -- \
//!     [--team ../shared/data/brain-mri] [--site ../shared/data/external] \
//!     [--ks 0,25,50,100,200] [--draws 3] [--out runs/site-adaptation] \
//!     [--blocks last|block4-last] [--hidden 256|linear] \
//!     [--feature-transform none|log1p|sqrt-l2] [--logistic C] [--views N] \
//!     [--reviewed-weight W]
//! ```
//!
//! `--blocks`, `--hidden`, `--feature-transform`, `--logistic`,
//! `--reviewed-weight` and `--views` change the recipe from `train`'s default as the `train` flags
//! of the same names do (`--hidden linear`: no hidden layer).
//!
//! Research use only; not a medical device.
use std::fmt::Write as _;
use std::path::PathBuf;

use plotters::prelude::*;

use scanside::adaptation::{AdaptationOptions, AdaptationRow, run};
use scanside::features::{Blocks, FeatureTransform};
use scanside::head::Solver;
use scanside::operating_point::ThresholdRule;
use scanside::train::TrainOptions;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n == 0 {
        f64::NAN
    } else if n % 2 == 1 {
        v[n / 2]
    } else {
        0.5 * (v[n / 2 - 1] + v[n / 2])
    }
}

/// Median over draws of (AUC, sensitivity, specificity, threshold) per k.
fn summary(rows: &[AdaptationRow], rule: ThresholdRule, on: &str) -> Vec<(usize, [f64; 4])> {
    let mut ks: Vec<usize> = rows.iter().map(|r| r.k).collect();
    ks.sort_unstable();
    ks.dedup();
    ks.into_iter()
        .filter_map(|k| {
            let sel: Vec<&AdaptationRow> = rows
                .iter()
                .filter(|r| r.k == k && r.rule == rule && (r.threshold_on == on || r.k == 0))
                .collect();
            (!sel.is_empty()).then(|| {
                let m = |f: fn(&AdaptationRow) -> f64| median(sel.iter().map(|r| f(r)).collect());
                (
                    k,
                    [
                        m(|r| r.auc),
                        m(|r| r.metrics.sensitivity),
                        m(|r| r.metrics.specificity),
                        m(|r| f64::from(r.metrics.threshold)),
                    ],
                )
            })
        })
        .collect()
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let value = |flag: &str, default: &str| {
        args.iter()
            .position(|a| a == flag)
            .map_or(default.to_string(), |i| args[i + 1].clone())
    };
    let out = PathBuf::from(value("--out", "runs/site-adaptation"));
    std::fs::create_dir_all(&out).expect("output folder");
    let mut recipe = TrainOptions::new(
        value("--team", "../shared/data/brain-mri"),
        value("--backbone", "backbones/vgg16-notop.onnx"),
        out.join("unused"),
    );
    recipe.quiet = false;
    if let Some(i) = args.iter().position(|a| a == "--blocks") {
        recipe.head.blocks = match args[i + 1].as_str() {
            "last" => Blocks::Last,
            "block4-last" => Blocks::Block4Last,
            other => panic!("--blocks last|block4-last, not {other}"),
        };
    }
    if let Some(i) = args.iter().position(|a| a == "--hidden") {
        recipe.head.hidden = match args[i + 1].as_str() {
            "linear" => vec![],
            list => list
                .split(',')
                .map(|w| w.parse().expect("--hidden: widths"))
                .collect(),
        };
    }
    if let Some(i) = args.iter().position(|a| a == "--feature-transform") {
        recipe.head.transform = match args[i + 1].as_str() {
            "none" => FeatureTransform::None,
            "log1p" => FeatureTransform::Log1p,
            "sqrt-l2" => FeatureTransform::SqrtL2,
            other => panic!("--feature-transform none|log1p|sqrt-l2, not {other}"),
        };
    }
    if let Some(i) = args.iter().position(|a| a == "--logistic") {
        let c = args[i + 1].parse().expect("--logistic C");
        recipe.head.solver = Solver::Logistic { c };
        recipe.head.hidden = vec![];
        recipe.head.ensemble = 1;
    }
    if let Some(i) = args.iter().position(|a| a == "--reviewed-weight") {
        recipe.head.reviewed_weight = args[i + 1].parse().expect("--reviewed-weight W");
    }
    if let Some(i) = args.iter().position(|a| a == "--views") {
        recipe.augmented_views = args[i + 1].parse().expect("--views N");
    }
    let opts = AdaptationOptions {
        recipe,
        site: value("--site", "../shared/data/external").into(),
        ks: value("--ks", "0,25,50,100,200")
            .split(',')
            .map(|k| k.parse().expect("--ks: numbers"))
            .collect(),
        draws: value("--draws", "3").parse().expect("--draws N"),
        work: out.join("work"),
    };
    let rows = run(&opts).unwrap_or_else(|e| {
        eprintln!("error: {e}");
        std::process::exit(1)
    });
    let _ = std::fs::remove_dir_all(&opts.work);
    let jsonl: String = rows
        .iter()
        .map(|r| serde_json::to_string(r).expect("serialises") + "\n")
        .collect();
    std::fs::write(out.join("rows.jsonl"), jsonl).expect("rows.jsonl");

    let mut table = String::from(
        "Held-out site scans; medians over draws. Research use only; not a medical device.\n\n\
         | k | threshold rule | threshold on | AUC | sensitivity | specificity | threshold |\n\
         |---|---|---|---|---|---|---|\n",
    );
    for rule in [ThresholdRule::Quantile, ThresholdRule::LogitNormal] {
        for on in ["all", "site", "auto"] {
            for (k, [a, se, sp, t]) in summary(&rows, rule, on) {
                if on != "all" && k == 0 {
                    continue;
                }
                let _ = writeln!(
                    table,
                    "| {k} | {} | {on} | {a:.3} | {:.1} % | {:.1} % | {t:.4} |",
                    rule.name(),
                    100.0 * se,
                    100.0 * sp
                );
            }
        }
    }
    print!("{table}");
    std::fs::write(out.join("table.md"), &table).expect("table.md");

    let curve = summary(&rows, ThresholdRule::Quantile, "auto");
    let kmax = curve.last().map_or(1, |c| c.0).max(1) as f64;
    let svg = out.join("curve.svg");
    let root = SVGBackend::new(&svg, (560, 380)).into_drawing_area();
    root.fill(&WHITE).expect("draw");
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "New site: held-out figures vs site scans added",
            ("sans-serif", 16),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(48)
        .build_cartesian_2d(0f64..kmax, 0f64..1.02f64)
        .expect("draw");
    chart
        .configure_mesh()
        .x_desc("site scans added (k)")
        .y_desc("median over draws")
        .draw()
        .expect("draw");
    let series: [(&str, usize, RGBColor); 3] = [
        ("AUC", 0, RGBColor(31, 119, 180)),
        ("sensitivity (quantile, auto)", 1, RGBColor(214, 39, 40)),
        ("specificity (quantile, auto)", 2, RGBColor(255, 127, 14)),
    ];
    for (name, idx, colour) in series {
        chart
            .draw_series(
                LineSeries::new(
                    curve.iter().map(|(k, v)| (*k as f64, v[idx])),
                    colour.stroke_width(2),
                )
                .point_size(3),
            )
            .expect("draw")
            .label(name)
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 18, y)], colour));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.85))
        .draw()
        .expect("draw");
    root.present().expect("draw");
    eprintln!("rows, table and curve in {}", out.display());
}
