//! What the scan archive with Grad-CAM overlays adds per scan.
//!
//! `cargo run --release -p scanside-device --example overlay_cost -- [MODEL] [RUNS] IMAGE…`
//!
//! For each image, RUNS times after one warm-up, on all cores: the plain
//! classification the device does without the archive
//! (`Classifier::classify_bytes`), and what it does with `[archive]
//! overlays = true`: the two-output plan plus Grad-CAM
//! (`Classifier::explain_bytes`), the overlay drawn and PNG-encoded, and
//! the scan and overlay written to an archive in a temporary folder
//! (fsync included). Prints one JSON line with the medians over all runs.
//! `bench/device.sh` runs it; see docs/benchmarks.md, "Device figures".

use std::path::PathBuf;
use std::time::Instant;

use scanside_device::archive::Archive;
use scanside_device::config::ArchiveConfig;
use scanside_shared::classifier::Classifier;
use scanside_shared::explain::png_bytes;
use scanside_shared::shipped;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn ms(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1e3
}

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let model = shipped::resolve(args.next().filter(|a| a != "-").map(PathBuf::from))?;
    let runs: usize = args.next().map_or(Ok(5), |r| r.parse())?;
    let images: Vec<PathBuf> = args.map(PathBuf::from).collect();
    anyhow::ensure!(!images.is_empty(), "name at least one image");
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let bytes = std::fs::read(&model)?;
    let plain = Classifier::from_bytes(&bytes, &model)?.with_threads(cores);
    let explaining = Classifier::from_bytes_explaining(&bytes, &model)?.with_threads(cores);
    let threshold = plain.manifest().threshold;
    let dir = tempfile::tempdir()?;
    let archive = Archive::open(&ArchiveConfig {
        dir: dir.path().join("archive"),
        max_mb: 1024,
        overlays: true,
    })?;
    let (mut classify, mut explain, mut draw, mut store) = (vec![], vec![], vec![], vec![]);
    for image in &images {
        let scan = std::fs::read(image)?;
        let sha = scanside_shared::sha256(&scan);
        for run in 0..=runs {
            let t = Instant::now();
            let c = plain.classify_bytes(&scan, image)?;
            let t_classify = ms(t);
            let t = Instant::now();
            let x = explaining.explain_bytes(&scan, image)?;
            let t_explain = ms(t);
            anyhow::ensure!(
                (x.classification.probability - c.probability).abs() <= 1e-6,
                "{}: explaining changed the probability",
                image.display()
            );
            let t = Instant::now();
            let png = png_bytes(&x.overlay(threshold));
            let t_draw = ms(t);
            let t = Instant::now();
            archive.store(&sha, image, &scan, Some(&png))?;
            let t_store = ms(t);
            if run > 0 {
                classify.push(t_classify);
                explain.push(t_explain);
                draw.push(t_draw);
                store.push(t_store);
            }
        }
    }
    let (c, e, d, s) = (
        median(classify),
        median(explain),
        median(draw),
        median(store),
    );
    println!(
        "{}",
        serde_json::json!({
            "images": images.len(),
            "runs_per_image": runs,
            "cores": cores,
            "classify_ms": c,
            "explain_ms": e,
            "overlay_png_ms": d,
            "archive_store_ms": s,
            "added_ms": e + d + s - c,
        })
    );
    Ok(())
}
