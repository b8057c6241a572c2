//! The retraining loop end to end, on the simulated board: a model trained
//! on a small set is installed on the box; the box classifies new scans and
//! the radiographer disputes one; the bundle goes to the host, a scripted
//! review labels the scans; `retrain` promotes a good update and refuses a
//! deliberately bad one; the promoted model is installed while the box
//! runs, and the next decision names it. Then a rollback.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use scanside::retrain::{RetrainOptions, inherit};
use scanside::train::TrainOptions;
use scanside_device::config::DeviceConfig;
use scanside_device::controller::State;
use scanside_device::model_store::ModelStore;
use scanside_device::sim::{ButtonHandle, SimButton};
use scanside_e2e::{SimAppliance, sim_appliance, team_data, workspace};
use scanside_shared::audit::{AuditEvent, read_log};
use scanside_shared::classifier::{manifest_of, parse_onnx};
use scanside_shared::guard::GuardSpec;
use scanside_shared::manifest::ModelManifest;

/// Training images per class. At 20, cross-validated AUC moved by up to
/// 6 pt when the three reviewed scans were added (0.933 → 0.870 with
/// cutout augmentation), beyond the 5 pt tolerance: "the same recipe with
/// more data is promoted" then depended on luck. 30 per class steadies it.
const PER_CLASS: usize = 30;

fn backbone() -> PathBuf {
    let b = workspace().join("backbones/vgg16-notop.onnx");
    assert!(b.is_file(), "{} missing: run scripts/setup.sh", b.display());
    b
}

fn sha_hex(path: &Path) -> String {
    scanside_shared::sha256_hex(&std::fs::read(path).unwrap())
}

fn manifest(path: &Path) -> ModelManifest {
    manifest_of(&parse_onnx(&std::fs::read(path).unwrap(), path).unwrap()).unwrap()
}

/// Team images per class, sorted: every `step`-th (from 0) goes into the
/// training set; the ones right after them are "new" scans for the box.
fn team_files(class: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(team_data().join(class))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files
}

/// Run the loop until `done(app)` (fail after `limit`).
fn run_until(app: &mut SimAppliance, limit: Duration, done: impl Fn(&SimAppliance) -> bool) {
    let start = Instant::now();
    while !done(app) {
        app.step().unwrap();
        assert!(start.elapsed() < limit, "stuck in {:?}", app.state());
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Put `scan` in the inbox, press, and wait for its result.
fn classify(app: &mut SimAppliance, button: &ButtonHandle, inbox: &Path, scan: &Path) {
    std::fs::copy(scan, inbox.join(scan.file_name().unwrap())).unwrap();
    let b = button.clone();
    let presser = std::thread::spawn(move || b.press_for(Duration::from_millis(100)));
    let start = Instant::now();
    run_until(app, Duration::from_secs(120), |a| {
        start.elapsed() > Duration::from_millis(200) && matches!(a.state(), State::Result(_))
    });
    presser.join().unwrap();
}

fn records(cfg: &DeviceConfig) -> Vec<AuditEvent> {
    read_log(&cfg.audit_log)
        .unwrap()
        .records
        .into_iter()
        .map(|r| r.event)
        .collect()
}

fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let p = e.unwrap().path();
            let bytes = std::fs::read(&p).unwrap();
            (p, bytes)
        })
        .collect()
}

#[test]
fn classify_dispute_export_review_retrain_install_and_roll_back() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let data = root.join("data");
    let cache = root.join("cache");
    let models = root.join("models");
    std::fs::create_dir_all(&models).unwrap();

    // A small training set, and new scans the model never saw in training
    // (the team set has exact duplicates: skip those).
    let mut training = std::collections::BTreeSet::new();
    let mut new_scans: Vec<(PathBuf, &str)> = Vec::new();
    for class in ["yes", "no"] {
        std::fs::create_dir_all(data.join(class)).unwrap();
        let files = team_files(class);
        for f in files
            .iter()
            .step_by(files.len() / PER_CLASS)
            .take(PER_CLASS)
        {
            std::os::unix::fs::symlink(f, data.join(class).join(f.file_name().unwrap())).unwrap();
            training.insert(sha_hex(f));
        }
        let fresh: Vec<PathBuf> = files
            .iter()
            .filter(|f| training.insert(sha_hex(f)))
            .take(2)
            .cloned()
            .collect();
        new_scans.extend(fresh.into_iter().map(|f| (f, class)));
    }
    // Three for the box before the retrain (yes, yes, no), one after.

    // 1. The base model.
    let mut recipe = TrainOptions::new(&data, backbone(), root.join("base-run"));
    recipe.cache = scanside::features::FeatureCache::new(&cache);
    recipe.size = 224;
    recipe.augmented_views = 1;
    recipe.folds = 3;
    recipe.repeats = 3;
    recipe.target_sensitivity = 0.9;
    recipe.quantize = None;
    recipe.quiet = true;
    let base_outcome = scanside::train::run(&recipe).unwrap();
    let base = models.join("base.onnx");
    std::fs::copy(&base_outcome.model_path, &base).unwrap();
    let base_id = base_outcome.manifest.model_id.clone();
    assert!(base_outcome.manifest.lineage.is_none());

    // 2. The box: the base installed through the model store.
    let device = root.join("device");
    let cfg = DeviceConfig::parse(
        &format!(
            "model = {:?}\ninbox = {:?}\naudit_log = {:?}\nboard = \"sim\"\n\
             [timing]\ndebounce_ms = 20\nlong_press_ms = 1000\nresult_ms = 300\npoll_ms = 5\ninbox_settle_ms = 0\n\
             [archive]\ndir = {:?}\noverlays = false\n",
            device.join("models/current.onnx"),
            device.join("inbox"),
            device.join("audit.log"),
            device.join("archive"),
        ),
        Path::new("device.toml"),
    )
    .unwrap();
    let store = ModelStore::new(&cfg.model);
    let status = store.install(&base, None).unwrap();
    assert_eq!(status.current.unwrap().model_id, base_id);
    assert!(status.previous.is_none());

    let (mut app, handle, _leds) = sim_appliance(&cfg);
    let (disagree, disagree_handle) = SimButton::new();
    app.add_disagree_button(disagree);
    assert_eq!(app.fault(), None);

    // 3. Classify the new scans; dispute the first wrong one (or the last).
    let inbox = device.join("inbox");
    let base_threshold = base_outcome.manifest.threshold;
    let mut disputed = None;
    for (i, (scan, class)) in new_scans.iter().take(3).enumerate() {
        classify(&mut app, &handle, &inbox, scan);
        let Some(AuditEvent::Classified { probability, .. }) = records(&cfg).pop() else {
            panic!("no Classified record for {}", scan.display());
        };
        let said_yes = probability >= base_threshold;
        if disputed.is_none() && (said_yes != (*class == "yes") || i == 2) {
            let d = disagree_handle.clone();
            let presser = std::thread::spawn(move || d.press_for(Duration::from_millis(100)));
            run_until(&mut app, Duration::from_secs(10), |_| {
                matches!(records(&cfg).last(), Some(AuditEvent::Disputed { .. }))
            });
            presser.join().unwrap();
            disputed = Some(sha_hex(scan));
        }
    }
    let disputed = disputed.unwrap();

    // 4. Export, import, scripted review with the true labels.
    let bundle = root.join("box.scanside");
    scanside_device::export::export(&cfg, 0, &bundle).unwrap();
    let imported = scanside::review::import_bundle(&bundle, &data).unwrap();
    assert_eq!((imported.queued, imported.disputed), (3, 1));
    let truth: BTreeMap<String, &str> = new_scans
        .iter()
        .map(|(p, class)| (sha_hex(p), *class))
        .collect();
    let queue = scanside::review::queue(&data).unwrap();
    assert_eq!(
        queue[0].1.content_sha256, disputed,
        "disputed scans come first"
    );
    let answers: String = queue
        .iter()
        .map(|(_, q)| {
            if truth[&q.content_sha256] == "yes" {
                "y\n"
            } else {
                "n\n"
            }
        })
        .collect();
    let reviewed = scanside::review::review(
        &data,
        "yes",
        "no",
        &mut answers.as_bytes(),
        &mut std::io::sink(),
        &mut |_| {},
    )
    .unwrap();
    assert_eq!(reviewed.labelled, 3);

    // 5. A deliberately worse update (a learning rate that learns nothing)
    //    is refused, and the models folder is left exactly as it was.
    let parent = manifest(&base);
    let retrain_opts = |out: &str, given: &dyn Fn(&str) -> bool, flags: &TrainOptions| {
        let mut flags = flags.clone();
        flags.out = root.join(out);
        RetrainOptions {
            train: inherit(&parent, &flags, given).unwrap(),
            base: base.clone(),
            models_dir: models.clone(),
            tolerance: 0.05,
            note: Some("test".into()),
            threshold_on: scanside::retrain::ThresholdOn::All,
        }
    };
    let mut bad_flags = recipe.clone();
    bad_flags.head.learning_rate = 1e-9;
    let before = snapshot(&models);
    let refused = scanside::retrain::run(&retrain_opts(
        "bad-run",
        &|f| f == "learning_rate",
        &bad_flags,
    ))
    .unwrap();
    let c = &refused.comparison;
    eprintln!("{}", scanside::retrain::markdown(c));
    assert!(!c.promoted && !c.reasons.is_empty(), "{c:#?}");
    assert!(c.candidate_model_id.is_none() && refused.outcome.is_none());
    assert_eq!(
        snapshot(&models),
        before,
        "a refused retrain touched models/"
    );
    for f in scanside::retrain::COMPARISON_FILES {
        assert!(root.join("bad-run").join(f).is_file(), "{f}");
    }
    assert!(!root.join("bad-run/model.onnx").exists());
    assert!(
        c.changes.iter().any(|ch| ch.contains("learning_rate")),
        "{:?}",
        c.changes
    );

    // 6. The same recipe with the reviewed scans is promoted.
    let good = scanside::retrain::run(&retrain_opts("good-run", &|_| false, &recipe)).unwrap();
    let c = &good.comparison;
    eprintln!("{}", scanside::retrain::markdown(c));
    assert!(c.promoted, "{c:#?}");
    assert_eq!(c.regression_images, 3);
    assert!(c.parent_data_verified, "the old images are the base's data");
    assert_eq!(c.n, 2 * PER_CLASS + 3);
    assert_eq!(c.parent_model_id, base_id);
    let metrics: Vec<&str> = c.metrics.iter().map(|m| m.metric.as_str()).collect();
    assert_eq!(
        metrics,
        [
            "accuracy",
            "sensitivity",
            "specificity",
            "auc",
            "regression_accuracy"
        ]
    );
    let new_id = c.candidate_model_id.clone().unwrap();
    assert_ne!(new_id, base_id);
    let promoted = c.promoted_to.clone().unwrap();
    assert_eq!(promoted, models.join(format!("{new_id}.onnx")));
    let card = std::fs::read_to_string(models.join(format!("{new_id}.md"))).unwrap();
    assert!(
        card.contains(&base_id) && card.contains("not a medical device"),
        "{card}"
    );
    // The version chain in the model itself.
    let m = manifest(&promoted);
    assert_eq!(m.model_id, new_id);
    let lineage = m.lineage.clone().unwrap();
    assert_eq!(lineage.chain, std::slice::from_ref(&base_id));
    assert_eq!(lineage.parent_sha256, sha_hex(&base));
    assert_eq!(
        lineage.parent_training_data_sha256,
        parent.training_data_sha256
    );
    assert_ne!(m.training_data_sha256, parent.training_data_sha256);
    let mut reviewed_shas: Vec<String> =
        new_scans.iter().take(3).map(|(p, _)| sha_hex(p)).collect();
    reviewed_shas.sort();
    assert_eq!(lineage.reviewed_images, reviewed_shas);
    // The retrained model's guard is refitted on its own training data, the
    // reviewed scans included, so they are in scope from now on.
    let guard_images = |m: &ModelManifest| {
        GuardSpec::from_json(&m.extra[scanside_shared::guard::MANIFEST_KEY])
            .unwrap()
            .fitted
            .images
    };
    assert_eq!(guard_images(&parent), 2 * PER_CLASS);
    assert_eq!(guard_images(&m), 2 * PER_CLASS + 3);
    assert!(
        lineage.changes.iter().any(|c| c.contains("+3 reviewed")),
        "{:?}",
        lineage.changes
    );

    // 7. Install the promoted model while the box runs: the next record is
    //    the change, and the next decision names the new model.
    let status = store.install(&promoted, None).unwrap();
    assert_eq!(status.current.as_ref().unwrap().model_id, new_id);
    assert_eq!(status.previous.as_ref().unwrap().model_id, base_id);
    run_until(&mut app, Duration::from_secs(30), |_| {
        matches!(records(&cfg).last(), Some(AuditEvent::ModelChanged { .. }))
    });
    let Some(AuditEvent::ModelChanged { previous, current }) = records(&cfg).pop() else {
        unreachable!()
    };
    assert_eq!(
        (previous.id, current.id.clone()),
        (base_id.clone(), new_id.clone())
    );
    assert_eq!(hex_of(&current.sha256), sha_hex(&promoted));
    classify(&mut app, &handle, &inbox, &new_scans[3].0);
    let Some(AuditEvent::Classified { model, .. }) = records(&cfg).pop() else {
        panic!("no Classified record after the install")
    };
    assert_eq!(model.id, new_id);

    // 8. Roll back: the base is back in service, and says so.
    let status = store.rollback().unwrap();
    assert_eq!(status.current.unwrap().model_id, base_id);
    assert_eq!(status.previous.unwrap().model_id, new_id);
    run_until(&mut app, Duration::from_secs(30), |_| {
        matches!(
            records(&cfg).last(),
            Some(AuditEvent::ModelChanged { current, .. }) if current.id == base_id
        )
    });
}

fn hex_of(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
