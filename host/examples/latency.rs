//! Scan → probability latency of one model in tract, batch 1.
//!
//! `cargo run --release -p scanside --example latency -- MODEL IMAGE [RUNS] [THREADS]`
//! prints one JSON line: load time, median decode / preprocess / inference /
//! total milliseconds over RUNS scans of IMAGE (after one warm-up), the
//! inference threads, and the process's peak RSS. `bench/latency.sh` runs it
//! for the f32 and int8 models beside ONNX Runtime and prints a table.

use std::path::PathBuf;
use std::time::Instant;

use scanside_shared::classifier::Classifier;
use scanside_shared::preprocess::{DecodeLimits, decode, resize_rgb, tensor_from_rgb, to_rgb8};

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn ms(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1e3
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    anyhow::ensure!(
        args.len() >= 2,
        "usage: latency MODEL IMAGE [RUNS] [THREADS]"
    );
    let model = PathBuf::from(&args[0]);
    let image = PathBuf::from(&args[1]);
    let runs: usize = args.get(2).map_or(Ok(10), |r| r.parse())?;
    let threads: usize = match args.get(3) {
        Some(t) => t.parse()?,
        None => std::thread::available_parallelism().map_or(1, usize::from),
    };

    let t = Instant::now();
    let classifier = Classifier::load(&model)?.with_threads(threads);
    let load_ms = ms(t);
    let spec = classifier.manifest().preprocessing.clone();
    let limits = DecodeLimits::default();
    let bytes = std::fs::read(&image)?;

    let mut stages: [Vec<f64>; 4] = Default::default();
    let mut probability = 0.0;
    for run in 0..=runs {
        let start = Instant::now();
        let decoded = to_rgb8(decode(&bytes, &image, &limits)?);
        let decode_ms = ms(start);
        let t = Instant::now();
        let input = tensor_from_rgb(&resize_rgb(&decoded, &spec), &spec)?;
        let preprocess_ms = ms(t);
        let t = Instant::now();
        probability = classifier.positive_probability(&input)?;
        let inference_ms = ms(t);
        if run > 0 {
            for (s, v) in stages
                .iter_mut()
                .zip([decode_ms, preprocess_ms, inference_ms, ms(start)])
            {
                s.push(v);
            }
        }
    }
    let [decode_ms, preprocess_ms, inference_ms, total_ms] = stages.map(median);
    println!(
        "{}",
        serde_json::json!({
            "engine": "tract",
            "model": model,
            "model_id": classifier.manifest().model_id,
            "image": image,
            "runs": runs,
            "threads": threads,
            "load_ms": load_ms,
            "decode_ms": decode_ms,
            "preprocess_ms": preprocess_ms,
            "inference_ms": inference_ms,
            "total_ms": total_ms,
            "probability": probability,
            "peak_rss_mib": scanside::train::peak_rss_mib(),
        })
    );
    Ok(())
}
