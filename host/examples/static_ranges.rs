//! Choose the static int8 scheme's activation-range method by measurement.
//!
//! ```sh
//! cargo run --release -p scanside --example static_ranges -- [F32_MODEL] [DATA] [OUT] [SEED]
//! PYTHON=/path/to/python-with-onnxruntime bench/static_ranges.py OUT
//! ```
//!
//! Calibrates the f32 model once in tract on a draw like the one
//! `scanside quantize --int8-scheme static` makes (64 images, stratified;
//! SEED defaults to its seed),
//! writes one static int8 model per range method (min/max and several
//! percentiles) from the same statistics, and the preprocessed tensors of
//! every image of DATA (`inputs.f32`, row-major NHWC) with `meta.json`
//! (files, labels, threshold, positive index, methods).
//! Decision agreement is then measured in tract, the device engine, with
//! `scanside classify --json --model OUT/static-<method>.onnx …` (see
//! docs/int8.md, "The static scheme's range method", for the images and
//! results).
//! `bench/static_ranges.py` runs every model on all images in ONNX Runtime,
//! which is fast but not a stand-in for tract: on AVX2 CPUs without VNNI
//! its u8×s8 kernels saturate and drift much further from f32.

use std::io::Write;
use std::path::PathBuf;

use scanside::calibrate::{self, RangeMethod};
use scanside::dataset::{Dataset, DatasetOptions};
use scanside::int8::{QuantizeOptions, calibration_files};
use scanside::onnx_graph;
use scanside::quantize::{self, QuantRecipe};
use scanside_shared::classifier::{manifest_of, parse_onnx};
use scanside_shared::preprocess::{DecodeLimits, preprocess_file};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize, default: &str| PathBuf::from(args.get(i).map_or(default, |s| s.as_str()));
    let f32_path = arg(0, "runs/shipped/model.onnx");
    let data = arg(1, "../shared/data/brain-mri");
    let out = arg(2, "runs/static-ranges");
    let defaults = QuantizeOptions::default();
    let seed: u64 = args.get(3).map_or(Ok(defaults.seed), |s| s.parse())?;
    std::fs::create_dir_all(&out)?;

    let bytes = std::fs::read(&f32_path)?;
    let proto = parse_onnx(&bytes, &f32_path)?;
    let manifest = manifest_of(&proto)?;
    let dataset = Dataset::load(&DatasetOptions::new(&data))?;
    let files: Vec<PathBuf> = dataset.items.iter().map(|i| i.path.clone()).collect();
    let labels: Vec<u8> = dataset.items.iter().map(|i| i.label).collect();

    let cal_files = calibration_files(&files, &labels, defaults.calibration_images, seed);
    let (_, observed) = quantize::conv_sites(&proto)?;
    eprintln!("calibrating on {} images in tract …", cal_files.len());
    let calibration = calibrate::calibrate(
        &proto,
        &observed,
        &cal_files,
        &manifest.preprocessing,
        &DecodeLimits::default(),
    )?;
    let methods = [
        RangeMethod::MinMax,
        RangeMethod::Percentile(99.9),
        RangeMethod::Percentile(99.99),
        RangeMethod::Percentile(99.999),
        RangeMethod::Percentile(99.9999),
    ];
    let f32_sha = scanside_shared::sha256_hex(&bytes);
    for method in methods {
        let recipe = QuantRecipe::new(method, cal_files.len(), &manifest.model_id, &f32_sha);
        let int8 = onnx_graph::encode(&quantize::quantize(&proto, &calibration, &recipe)?);
        std::fs::write(out.join(format!("static-{method}.onnx")), int8)?;
    }

    eprintln!("preprocessing {} images …", files.len());
    let mut inputs = std::io::BufWriter::new(std::fs::File::create(out.join("inputs.f32"))?);
    for f in &files {
        let t = preprocess_file(f, &manifest.preprocessing, &DecodeLimits::default())?;
        for v in &t.data {
            inputs.write_all(&v.to_le_bytes())?;
        }
    }
    inputs.flush()?;
    let meta = serde_json::json!({
        "f32_model": std::fs::canonicalize(&f32_path)?,
        "input_name": manifest.input_name,
        "input_shape": manifest.preprocessing.input_shape(1),
        "threshold": manifest.threshold,
        "positive_index": manifest.positive_index(),
        "calibration_images": cal_files.len(),
        "calibration_seed": seed,
        "methods": methods.iter().map(|m| m.to_string()).collect::<Vec<_>>(),
        "files": files,
        "labels": labels,
    });
    std::fs::write(out.join("meta.json"), serde_json::to_vec_pretty(&meta)?)?;
    eprintln!("wrote {}", out.display());
    Ok(())
}
