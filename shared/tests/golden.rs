//! Golden preprocessing tests: scanside's tensors against tensors computed
//! independently with Pillow and numpy (`tests/golden/make_golden.py`),
//! with and without the head crop.

use std::path::{Path, PathBuf};

use scanside_shared::preprocess::{
    ContentCrop, DecodeLimits, Layout, Normalisation, PreprocessSpec, ResizeFilter, preprocess_file,
};
use serde::Deserialize;

#[derive(Deserialize)]
struct Case {
    image: String,
    size: u32,
    layout: String,
    normalisation: String,
    expected: String,
    exact: bool,
    tolerance_grey_levels: f32,
    /// The head crop, when the case crops.
    #[serde(default)]
    crop: Option<ContentCrop>,
}

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

fn read_f32(path: &Path) -> Vec<f32> {
    std::fs::read(path)
        .unwrap()
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

#[test]
fn tensors_match_pillow_and_numpy() {
    let cases: Vec<Case> =
        serde_json::from_slice(&std::fs::read(dir().join("golden.json")).unwrap()).unwrap();
    assert!(cases.len() >= 20, "golden.json lists {} cases", cases.len());
    let mut exact_cases = 0;
    for case in &cases {
        let (normalisation, grey_level) = match case.normalisation.as_str() {
            "caffe" => (Normalisation::CaffeBgrMean, 1.0),
            // One grey level is 1/255 before division by the smallest std.
            "torchvision" => (Normalisation::TorchvisionMeanStd, 1.0 / 255.0 / 0.224),
            "unit" => (Normalisation::UnitScale, 1.0 / 255.0),
            other => panic!("unknown normalisation {other}"),
        };
        let spec = PreprocessSpec {
            crop: case.crop,
            size: case.size,
            layout: if case.layout == "nchw" {
                Layout::Nchw
            } else {
                Layout::Nhwc
            },
            normalisation,
            resize: ResizeFilter::Triangle,
        };
        let got = preprocess_file(&dir().join(&case.image), &spec, &DecodeLimits::default())
            .unwrap_or_else(|e| panic!("{}: {e}", case.image));
        let want = read_f32(&dir().join(&case.expected));
        assert_eq!(got.shape, spec.input_shape(1), "{}", case.expected);
        assert_eq!(got.data.len(), want.len(), "{}", case.expected);
        if case.exact {
            exact_cases += 1;
            assert!(
                got.data
                    .iter()
                    .zip(&want)
                    .all(|(a, b)| a.to_bits() == b.to_bits()),
                "{}: not bit-identical",
                case.expected
            );
        } else {
            let tol = case.tolerance_grey_levels * grey_level * 1.0001;
            let (worst, mean) = got
                .data
                .iter()
                .zip(&want)
                .fold((0f32, 0f32), |(w, m), (a, b)| {
                    let d = (a - b).abs();
                    (w.max(d), m + d / want.len() as f32)
                });
            assert!(worst <= tol, "{}: max diff {worst} > {tol}", case.expected);
            assert!(mean <= 0.25 * tol, "{}: mean diff {mean}", case.expected);
        }
    }
    assert!(exact_cases >= 10);
    let cropped = cases.iter().filter(|c| c.crop.is_some()).count();
    assert!(cropped >= 6, "{cropped} cases with the head crop");
}

#[test]
fn same_file_gives_bit_identical_tensors_every_time() {
    let spec = PreprocessSpec::vgg16_caffe(224);
    let path = dir().join("rgb45x61 with spaces.png");
    let a = preprocess_file(&path, &spec, &DecodeLimits::default()).unwrap();
    let b = preprocess_file(&path, &spec, &DecodeLimits::default()).unwrap();
    assert_eq!(a, b);
}
