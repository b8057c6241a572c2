//! End to end across crates: a model trained and exported by the host
//! (`scanside`) is loaded and used through the shared classifier path that
//! the device firmware uses (`scanside_shared`).

use std::path::{Path, PathBuf};

use scanside::train::{TrainOptions, run};
use scanside_e2e::{team_data, workspace};
use scanside_shared::classifier::{Classifier, classify_files};

/// Eight images per class, linked from the team set into `root`.
fn subset(root: &Path) -> Vec<PathBuf> {
    let mut picked = Vec::new();
    for class in ["yes", "no"] {
        std::fs::create_dir_all(root.join(class)).unwrap();
        let mut files: Vec<PathBuf> = std::fs::read_dir(team_data().join(class))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        for f in files.iter().rev().step_by(7).take(8) {
            let link = root.join(class).join(f.file_name().unwrap());
            std::os::unix::fs::symlink(f, &link).unwrap();
            picked.push(link);
        }
    }
    picked
}

#[test]
fn host_model_runs_unchanged_on_the_device_path() {
    let dir = tempfile::tempdir().unwrap();
    let files = subset(&dir.path().join("data"));
    let mut opts = TrainOptions::new(
        dir.path().join("data"),
        workspace().join("backbones/vgg16-notop.onnx"),
        dir.path().join("out"),
    );
    opts.cache = scanside::features::FeatureCache::new(dir.path().join("cache"));
    opts.size = 64;
    opts.augmented_views = 0;
    opts.folds = 2;
    opts.repeats = 1;
    opts.head.hidden = vec![16];
    // The f32 path is under test here; int8 has its own tests.
    opts.quantize = None;
    opts.quiet = true;
    let outcome = run(&opts).unwrap();

    // The device path reads every manifest fact the host wrote.
    let classifier = Classifier::load(&outcome.model_path).unwrap();
    let m = classifier.manifest();
    assert_eq!(m, &outcome.manifest);
    assert_eq!(m.labels, ["no", "yes"]);
    assert_eq!(m.preprocessing.size, 64);
    assert_eq!(m.threshold, outcome.summary.threshold);
    assert_eq!(
        classifier.sha256(),
        scanside_shared::sha256_hex(&std::fs::read(&outcome.model_path).unwrap())
    );

    // Its result lines agree with the threshold and name the model.
    let mut out = Vec::new();
    let failures = classify_files(&classifier, &files, true, &mut out).unwrap();
    assert_eq!(failures, 0);
    let lines: Vec<serde_json::Value> = String::from_utf8(out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), files.len());
    for line in &lines {
        let p = line["probability"].as_f64().unwrap() as f32;
        let want = if p >= m.threshold { "yes" } else { "no" };
        assert_eq!(line["label"], want, "{line}");
        assert_eq!(line["model_id"], m.model_id.as_str());
    }
}
