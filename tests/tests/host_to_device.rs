//! End to end across crates: a model trained and exported by the host
//! (`scanside`) is loaded and used through the shared classifier path that
//! the device firmware uses (`scanside_shared`). The class folders mix
//! JPEG/PNG files with DICOM objects made from team JPEGs by `img2dcm`,
//! and hold two DICOM files training must skip (a CT, a truncated MR).

use std::path::{Path, PathBuf};

use scanside::train::{TrainOptions, run};
use scanside_e2e::{img2dcm, team_data, team_dicom, workspace};
use scanside_shared::classifier::Classifier;

/// Eight images per class from the team set in `root`: the first two JPEGs
/// of each class converted to DICOM (named without an extension, as DICOM
/// files often are), the rest linked. Plus a CT and a truncated MR sample,
/// which training must skip.
fn subset(root: &Path) -> Vec<PathBuf> {
    let mut picked = Vec::new();
    for class in ["yes", "no"] {
        std::fs::create_dir_all(root.join(class)).unwrap();
        let mut files: Vec<PathBuf> = std::fs::read_dir(team_data().join(class))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        let mut converted = 0;
        for f in files.iter().rev().step_by(7).take(8) {
            let dicom = root.join(class).join(f.file_stem().unwrap());
            if converted < 2 && img2dcm(f, &dicom).is_ok() {
                picked.push(dicom);
                converted += 1;
            } else {
                let link = root.join(class).join(f.file_name().unwrap());
                std::os::unix::fs::symlink(f, &link).unwrap();
                picked.push(link);
            }
        }
        assert_eq!(converted, 2, "{class}: two JPEGs to convert");
    }
    for (class, sample) in [("no", "CT_small.dcm"), ("yes", "MR_truncated.dcm")] {
        std::os::unix::fs::symlink(team_dicom().join(sample), root.join(class).join(sample))
            .unwrap();
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

    // The DICOM files trained; the CT and the truncated MR were skipped,
    // each with its reason.
    assert_eq!(outcome.summary.n, files.len());
    let mut skipped: Vec<String> = outcome
        .skipped
        .iter()
        .map(|s| format!("{}: {}", s.path.display(), s.reason))
        .collect();
    skipped.sort();
    assert_eq!(skipped.len(), 2, "{skipped:?}");
    assert!(skipped[0].contains("CT_small.dcm") && skipped[0].contains("modality is CT"));
    assert!(skipped[1].contains("MR_truncated.dcm") && skipped[1].contains("truncated"));

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
    let lines = scanside_e2e::classify_json(&classifier, &files);
    for line in &lines {
        let p = line["probability"].as_f64().unwrap() as f32;
        // The model carries a guard (the default): a refused scan says so.
        let want = if line["scope"]["in_scope"] == false {
            "out_of_scope"
        } else if p >= m.threshold {
            "yes"
        } else {
            "no"
        };
        assert_eq!(line["label"], want, "{line}");
        assert_eq!(line["model_id"], m.model_id.as_str());
    }
}
