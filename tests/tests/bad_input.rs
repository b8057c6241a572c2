//! The generated bad-input corpus ([`scanside_e2e::corpus`], over 200
//! files) through every entry point: `classify` (the function both
//! binaries' `classify` commands run), `train`, and the appliance loop on
//! the simulated board. Nothing may panic; every input is either used or
//! refused with its name and a reason; the program goes on, and keeps
//! working on good input afterwards.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use scanside_device::config::DeviceConfig;
use scanside_device::controller::State;
use scanside_e2e::corpus::{BadInput, generate};
use scanside_e2e::{SimAppliance, last_event, sim_appliance, team_data, team_dicom, workspace};
use scanside_shared::audit::{AuditEvent, ErrorKind, read_log};
use scanside_shared::classifier::{Classifier, OutputFormat, classify_files};
use scanside_shared::shipped::SHIPPED_MODEL_FILE;

fn source_scan() -> PathBuf {
    let mut files: Vec<PathBuf> = std::fs::read_dir(team_data().join("yes"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "jpg"))
        .collect();
    files.sort();
    files.remove(0)
}

fn dicom_sample() -> Option<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(team_dicom())
        .ok()?
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files.into_iter().next()
}

fn corpus(dir: &Path) -> Vec<BadInput> {
    let inputs = generate(dir, &source_scan(), dicom_sample().as_deref());
    assert!(inputs.len() >= 200, "only {} inputs", inputs.len());
    inputs
}

/// Kinds that no decoder may accept.
fn must_fail(kind: &str) -> bool {
    [
        "empty",
        "text named",
        "random bytes",
        "declaring",
        "signature then junk",
        "a link to",
        "a folder",
    ]
    .iter()
    .any(|k| kind.contains(k))
}

/// Kinds that are unusual but valid images.
fn must_work(kind: &str) -> bool {
    [
        "1 × 1",
        "16-bit",
        "RGBA",
        "grey + alpha",
        " × 1",
        " × 2",
        "named .",
    ]
    .iter()
    .any(|k| kind.contains(k))
        && !must_fail(kind)
}

fn model() -> PathBuf {
    workspace().join("models").join(SHIPPED_MODEL_FILE)
}

#[test]
fn classify_gives_one_line_per_input_and_names_every_failure() {
    let dir = tempfile::tempdir().unwrap();
    let inputs = corpus(dir.path());
    let classifier = Classifier::load(&model()).unwrap().with_threads(2);
    let paths: Vec<PathBuf> = inputs.iter().map(|i| i.path.clone()).collect();
    let mut out = Vec::new();
    let failures = classify_files(&classifier, &paths, OutputFormat::Json, &mut out).unwrap();
    let lines: Vec<serde_json::Value> = String::from_utf8(out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), inputs.len());
    let mut failed = 0;
    for (input, line) in inputs.iter().zip(&lines) {
        let name = input.path.display().to_string();
        assert_eq!(line["file"], name.as_str(), "{line}");
        match line["error"].as_str() {
            Some(error) => {
                failed += 1;
                assert!(
                    error.contains(&name),
                    "{}: error does not name it: {error}",
                    input.kind
                );
                assert!(!must_work(&input.kind), "{}: refused: {error}", input.kind);
            }
            None => {
                let p = line["probability"].as_f64().unwrap();
                assert!((0.0..=1.0).contains(&p), "{}: p = {p}", input.kind);
                assert!(!must_fail(&input.kind), "{}: classified", input.kind);
            }
        }
    }
    assert_eq!(failed, failures);
    assert!(failed >= 100, "only {failed} of {} refused", inputs.len());
    // And the next good file is still classified.
    let good = classifier.classify_file(&source_scan()).unwrap();
    assert!((0.0..=1.0).contains(&good.probability));
}

#[test]
fn train_skips_each_bad_file_by_name_and_still_trains() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    for class in ["yes", "no"] {
        std::fs::create_dir_all(data.join(class)).unwrap();
        let mut files: Vec<PathBuf> = std::fs::read_dir(team_data().join(class))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        for f in files.iter().step_by(files.len() / 8).take(8) {
            std::os::unix::fs::symlink(f, data.join(class).join(f.file_name().unwrap())).unwrap();
        }
    }
    // The corpus goes into the positive class folder.
    let inputs = corpus(&data.join("yes"));
    let mut opts = scanside::train::TrainOptions::new(
        &data,
        workspace().join("backbones/vgg16-notop.onnx"),
        dir.path().join("run"),
    );
    opts.cache = scanside::features::FeatureCache::new(dir.path().join("cache"));
    opts.size = 32;
    opts.augmented_views = 0;
    opts.folds = 3;
    opts.repeats = 1;
    opts.head.hidden = vec![8];
    opts.head.max_epochs = 5;
    opts.quantize = None;
    opts.quiet = true;
    let outcome = scanside::train::run(&opts).expect("training goes on past bad files");
    let skipped: BTreeSet<PathBuf> = outcome.skipped.iter().map(|s| s.path.clone()).collect();
    for s in &outcome.skipped {
        assert!(!s.reason.is_empty(), "{}: no reason", s.path.display());
    }
    let mut used = 0;
    for input in &inputs {
        if skipped.contains(&input.path) {
            assert!(!must_work(&input.kind), "{}: skipped", input.kind);
        } else {
            assert!(!must_fail(&input.kind), "{}: trained on", input.kind);
            used += 1;
        }
    }
    assert_eq!(outcome.summary.n, 16 + used);
    assert!(outcome.model_path.is_file());
}

#[test]
fn the_appliance_shows_an_error_for_each_bad_scan_and_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let inputs = corpus(&dir.path().join("corpus"));
    let inbox = dir.path().join("inbox");
    let cfg = DeviceConfig::parse(
        &format!(
            "model = {:?}\ninbox = {inbox:?}\naudit_log = {:?}\nboard = \"sim\"\n\
             [timing]\ndebounce_ms = 10\nlong_press_ms = 1000\nresult_ms = 50\npoll_ms = 2\ninbox_settle_ms = 0\n",
            model(),
            dir.path().join("audit.log"),
        ),
        Path::new("test.toml"),
    )
    .unwrap();
    let (mut app, handle, _leds) = sim_appliance(&cfg);
    let press = |app: &mut SimAppliance| {
        let b = handle.clone();
        let presser = std::thread::spawn(move || b.press_for(Duration::from_millis(30)));
        let start = Instant::now();
        while !(start.elapsed() > Duration::from_millis(60)
            && matches!(app.state(), State::Result(_) | State::Error(_)))
        {
            app.step().unwrap();
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "stuck in {:?}",
                app.state()
            );
            std::thread::sleep(Duration::from_millis(2));
        }
        presser.join().unwrap();
        // Let the result time out, back to idle.
        while !matches!(app.state(), State::Idle) {
            app.step().unwrap();
            std::thread::sleep(Duration::from_millis(2));
        }
    };
    let mut outcomes = Vec::new();
    for input in &inputs {
        let name = input.path.file_name().unwrap();
        std::fs::rename(&input.path, inbox.join(name)).unwrap();
        press(&mut app);
        assert_eq!(app.fault(), None, "{}: out of service", input.kind);
        match last_event(&cfg.audit_log) {
            AuditEvent::Classified { .. } => {
                assert!(!must_fail(&input.kind), "{}: classified", input.kind)
            }
            // Decoded, and the model's guard said "not for me" (a 1 × 1
            // picture is near-constant, 4000 × 1 too long and thin): an
            // answer, not a failure.
            AuditEvent::OutOfScope { reason, .. } => {
                assert!(!must_fail(&input.kind), "{}: out of scope", input.kind);
                assert!(!reason.is_empty(), "{}", input.kind);
            }
            AuditEvent::Error { kind, detail, .. } => {
                // Only what is not a file may go unseen ("no scan").
                let not_a_file =
                    input.kind.contains("a folder") || input.kind.contains("a link to");
                assert!(
                    kind == ErrorKind::UnreadableScan || (kind == ErrorKind::NoScan && not_a_file),
                    "{}: {kind:?} {detail}",
                    input.kind
                );
                assert!(!must_work(&input.kind), "{}: {detail}", input.kind);
            }
            other => panic!("{}: {other:?}", input.kind),
        }
        outcomes.push(input.kind.clone());
        // Whatever the box could not take is out of the inbox (rejected/),
        // or was never a scan to take (folders, dangling links).
        let left: Vec<_> = std::fs::read_dir(&inbox)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .filter(|n| n != "processed" && n != "rejected")
            .collect();
        for n in left {
            let p = inbox.join(&n);
            let _ = std::fs::remove_file(&p).or_else(|_| std::fs::remove_dir(&p));
        }
    }
    assert_eq!(outcomes.len(), inputs.len());
    // Still serving: a good scan after all that.
    std::fs::copy(source_scan(), inbox.join("good.jpg")).unwrap();
    press(&mut app);
    let last = last_event(&cfg.audit_log);
    assert!(matches!(last, AuditEvent::Classified { .. }), "{last:?}");
    let log = read_log(&cfg.audit_log).unwrap();
    assert!(log.damaged.is_empty() && log.torn_tail.is_none());
    assert_eq!(log.records.len(), inputs.len() + 1);
}

/// Broken models: each refused with an error naming the file and the
/// problem, before anything is classified.
#[test]
fn bad_models_are_refused_naming_the_problem() {
    use scanside_shared::classifier::{manifest_of, parse_onnx};
    use scanside_shared::preprocess::Layout;
    let dir = tempfile::tempdir().unwrap();
    let good = std::fs::read(model()).unwrap();
    let refuse = |name: &str, bytes: &[u8], expect: &[&str]| {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        let e = match Classifier::load(&path) {
            Ok(_) => panic!("{name}: accepted"),
            Err(e) => e.to_string(),
        };
        assert!(e.contains(name), "{name}: {e}");
        for word in expect {
            assert!(e.contains(word), "{name}: `{word}` not in: {e}");
        }
    };
    for cut in [0, 1, 100, good.len() / 2, good.len() - 1] {
        refuse(&format!("cut at {cut}.onnx"), &good[..cut], &[]);
    }
    refuse("text.onnx", b"this is not a model", &[]);

    let proto = parse_onnx(&good, &model()).unwrap();
    let mut no_metadata = proto.clone();
    no_metadata.metadata_props.clear();
    refuse(
        "no metadata.onnx",
        &scanside::onnx_graph::encode(&no_metadata),
        &["missing key"],
    );
    let mut no_threshold = proto.clone();
    no_threshold
        .metadata_props
        .retain(|p| p.key != "scanside.threshold");
    refuse(
        "no threshold.onnx",
        &scanside::onnx_graph::encode(&no_threshold),
        &["scanside.threshold"],
    );
    // The manifest says NCHW; the graph takes NHWC: the input shape is wrong.
    let mut manifest = manifest_of(&proto).unwrap();
    manifest.preprocessing.layout = Layout::Nchw;
    let mut wrong_layout = proto.clone();
    for p in &mut wrong_layout.metadata_props {
        if let Some((_, v)) = manifest.to_props().into_iter().find(|(k, _)| *k == p.key) {
            p.value = v;
        }
    }
    refuse(
        "wrong input shape.onnx",
        &scanside::onnx_graph::encode(&wrong_layout),
        &["[1, 3, 224, 224]"],
    );
}
