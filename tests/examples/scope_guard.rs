//! Benchmark of the out-of-scope guard: what a model refuses, what it lets
//! through, and what the guard costs.
//!
//! ```text
//! cargo run --profile dev -p scanside-e2e --example scope_guard -- \
//!     [--model FILE] [--team DIR] [--external DIR] [--json]
//! ```
//!
//! Prints, for the model (default: the shipped one): the refusal rate on
//! each category of the generated non-brain corpus
//! (`tests/src/scope_corpus.rs`) and overall; the pass rate on the team set
//! (in sample for a model trained on it; the out-of-fold rate recorded in
//! the model is printed beside it); on the external set, the pass rate and
//! the model's accuracy on the passed and on the refused slices; and the
//! guard's cost per scan next to the scan's latency, and end to end against
//! the same model with its guard stripped. Research use only.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use scanside_e2e::{scope_corpus, team_data, team_dicom, workspace};
use scanside_shared::classifier::{Classification, Classifier, parse_onnx};

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

/// The labelled files of a class-per-folder set: (path, 1 for `yes`).
fn labelled(root: &Path) -> Vec<(PathBuf, u8)> {
    let mut out = Vec::new();
    for (class, label) in [("no", 0u8), ("yes", 1)] {
        let mut files: Vec<PathBuf> = std::fs::read_dir(root.join(class))
            .unwrap_or_else(|e| panic!("{}: {e}", root.join(class).display()))
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file())
            .collect();
        files.sort();
        out.extend(files.into_iter().map(|p| (p, label)));
    }
    out
}

fn classify(c: &Classifier, path: &Path) -> Option<Classification> {
    match c.classify_file(path) {
        Ok(v) => Some(v),
        Err(e) => {
            eprintln!("skipped {}: {e}", path.display());
            None
        }
    }
}

fn main() {
    let model = arg("--model").map_or_else(
        || workspace().join("models/brain-mri-vgg16-int8.onnx"),
        PathBuf::from,
    );
    let team = arg("--team").map_or_else(team_data, PathBuf::from);
    let external = arg("--external").map_or_else(
        || team.parent().expect("a data folder").join("external"),
        PathBuf::from,
    );
    let threads = std::thread::available_parallelism().map_or(1, usize::from);
    let classifier = Classifier::load(&model)
        .unwrap_or_else(|e| panic!("{e}"))
        .with_threads(threads);
    let Some(guard) = classifier.guard().cloned() else {
        eprintln!("{}: this model has no out-of-scope guard", model.display());
        std::process::exit(1);
    };
    let mut report = serde_json::Map::new();
    report.insert(
        "model_id".into(),
        classifier.manifest().model_id.clone().into(),
    );
    report.insert("notice".into(), scanside_shared::classifier::NOTICE.into());

    // 1. The non-brain corpus.
    let dir = tempfile::tempdir().expect("a temporary folder");
    let corpus = scope_corpus::generate(
        dir.path(),
        &workspace().join(scope_corpus::PHOTO_WHEEL),
        &team_dicom().join("CT_small.dcm"),
    )
    .unwrap_or_else(|e| panic!("corpus: {e}"));
    let mut by_category: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    let mut latencies = Vec::new();
    for p in &corpus {
        let t = Instant::now();
        let Some(c) = classify(&classifier, &p.path) else {
            continue;
        };
        latencies.push(t.elapsed().as_secs_f64());
        let e = by_category.entry(p.category.name()).or_default();
        e.0 += 1;
        e.1 += usize::from(c.out_of_scope());
    }
    let (n, refused) = by_category
        .values()
        .fold((0, 0), |(n, r), (a, b)| (n + a, r + b));
    println!(
        "non-brain corpus: {refused} of {n} refused ({:.1} %)",
        100.0 * refused as f64 / n as f64
    );
    for (name, (a, b)) in &by_category {
        println!("  {name:<9} {b:>3} of {a:>3} refused");
    }
    report.insert(
        "corpus".into(),
        serde_json::json!({
            "images": n, "refused": refused,
            "by_category": by_category.iter().map(|(k, (a, b))| (k.to_string(), serde_json::json!({"images": a, "refused": b}))).collect::<serde_json::Map<_, _>>()
        }),
    );

    // 2. In-distribution sets.
    for (name, root) in [("team", &team), ("external", &external)] {
        if !root.join("yes").is_dir() {
            println!("{name} set: {} not found, skipped", root.display());
            continue;
        }
        let (mut passed, mut refused) = (Vec::new(), Vec::new());
        let mut refused_by: BTreeMap<&str, usize> = BTreeMap::new();
        for (path, label) in labelled(root) {
            let t = Instant::now();
            let Some(c) = classify(&classifier, &path) else {
                continue;
            };
            latencies.push(t.elapsed().as_secs_f64());
            let right = (c.model_label == classifier.manifest().positive_class) == (label == 1);
            if c.out_of_scope() {
                refused.push(right);
                let check = c
                    .scope
                    .as_ref()
                    .and_then(|s| s.reason.as_ref())
                    .map_or("?", |r| r.check());
                *refused_by.entry(check).or_default() += 1;
                eprintln!("{name} set: refused {} ({check})", path.display());
            } else {
                passed.push(right);
            }
        }
        let accuracy = |v: &[bool]| {
            (!v.is_empty()).then(|| v.iter().filter(|&&r| r).count() as f64 / v.len() as f64)
        };
        let total = passed.len() + refused.len();
        println!(
            "{name} set ({}): {} of {total} pass ({:.1} %); model accuracy on the passed {}, on the refused {}; refused by {refused_by:?}",
            root.display(),
            passed.len(),
            100.0 * passed.len() as f64 / total as f64,
            accuracy(&passed).map_or("-".into(), |a| format!("{:.1} %", 100.0 * a)),
            accuracy(&refused).map_or("-".into(), |a| format!("{:.1} %", 100.0 * a)),
        );
        report.insert(
            name.into(),
            serde_json::json!({
                "images": total, "passed": passed.len(), "refused_by": refused_by,
                "accuracy_passed": accuracy(&passed), "accuracy_refused": accuracy(&refused),
            }),
        );
    }
    println!(
        "team set out of fold (recorded at training): {:.1} % pass at threshold {:.3}",
        100.0 * guard.fitted.oof_pass_rate,
        guard.features.threshold
    );

    // 3. Cost: the guard's arithmetic per scan against a scan's latency.
    let features = guard.features.mean.clone();
    let reps = 2000;
    let t = Instant::now();
    let mut sink = 0.0;
    for _ in 0..reps {
        sink += guard
            .features
            .score(std::hint::black_box(&features))
            .unwrap_or(0.0);
    }
    let score_s = t.elapsed().as_secs_f64() / reps as f64;
    let picture = image::RgbImage::from_pixel(512, 512, image::Rgb([80, 80, 80]));
    let t = Instant::now();
    for _ in 0..20 {
        std::hint::black_box(guard.check_input(std::hint::black_box(&picture)));
    }
    let input_s = t.elapsed().as_secs_f64() / 20.0;
    latencies.sort_by(f64::total_cmp);
    let median = latencies[latencies.len() / 2];
    println!(
        "cost: feature score {:.3} ms + input checks (512 × 512) {:.3} ms per scan; \
         median scan latency {:.0} ms ({threads} threads): {:.2} % (checksum {sink:.0})",
        1e3 * score_s,
        1e3 * input_s,
        1e3 * median,
        100.0 * (score_s + input_s) / median
    );
    // The whole cost as a scan sees it: the same model without its guard
    // (no extra graph output, no checks) against the model, same scans,
    // interleaved, median of each.
    let bytes = std::fs::read(&model).unwrap_or_else(|e| panic!("{}: {e}", model.display()));
    let mut proto = parse_onnx(&bytes, &model).unwrap_or_else(|e| panic!("{e}"));
    proto
        .metadata_props
        .retain(|p| p.key != scanside_shared::guard::MANIFEST_KEY);
    let bare = Classifier::from_bytes(&scanside::onnx_graph::encode(&proto), &model)
        .unwrap_or_else(|e| panic!("{e}"))
        .with_threads(threads);
    if !team.join("yes").is_dir() {
        println!("no team set at {}: end-to-end cost skipped", team.display());
        return;
    }
    let scans: Vec<PathBuf> = labelled(&team)
        .into_iter()
        .map(|(p, _)| p)
        .step_by(25)
        .collect();
    let (mut with, mut without) = (Vec::new(), Vec::new());
    for _ in 0..3 {
        for path in &scans {
            for (c, out) in [(&classifier, &mut with), (&bare, &mut without)] {
                let t = Instant::now();
                let _ = classify(c, path);
                out.push(t.elapsed().as_secs_f64());
            }
        }
    }
    let med = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (with, without) = (med(&mut with), med(&mut without));
    println!(
        "end to end, {} team scans × 3: median {:.1} ms with the guard, {:.1} ms without ({:+.2} %)",
        scans.len(),
        1e3 * with,
        1e3 * without,
        100.0 * (with - without) / without
    );
    let guard_bytes = guard.to_json().len();
    println!(
        "stored: {guard_bytes} bytes of guard metadata ({:.2} % of the {} byte model)",
        100.0 * guard_bytes as f64 / bytes.len() as f64,
        bytes.len()
    );
    report.insert(
        "cost".into(),
        serde_json::json!({
            "score_ms": 1e3 * score_s, "input_checks_ms": 1e3 * input_s, "median_scan_ms": 1e3 * median,
            "end_to_end_ms_with_guard": 1e3 * with, "end_to_end_ms_without_guard": 1e3 * without,
            "guard_metadata_bytes": guard_bytes,
        }),
    );
    if std::env::args().any(|a| a == "--json") {
        println!("{}", serde_json::Value::Object(report));
    }
}
