//! The shipped model's out-of-scope guard on real data: the generated
//! non-brain corpus is refused, the team set passes, a passed scan gets the
//! answer the model without its guard gives, and on the box an out-of-scope
//! scan shows its own pattern and writes its own record.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use scanside_device::config::DeviceConfig;
use scanside_device::controller::State;
use scanside_e2e::{last_event, scope_corpus, team_data, team_dicom, workspace};
use scanside_shared::audit::{AuditEvent, Decision};
use scanside_shared::classifier::{Classifier, parse_onnx};
use scanside_shared::guard::{MANIFEST_KEY, OUT_OF_SCOPE};
use scanside_shared::shipped::SHIPPED_MODEL_FILE;

fn shipped() -> Classifier {
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    Classifier::load(&workspace().join("models").join(SHIPPED_MODEL_FILE))
        .unwrap()
        .with_threads(cores)
}

fn corpus(dir: &Path) -> Vec<scope_corpus::Picture> {
    scope_corpus::generate(
        dir,
        &workspace().join(scope_corpus::PHOTO_WHEEL),
        &team_dicom().join("CT_small.dcm"),
    )
    .unwrap()
}

#[test]
fn the_non_brain_corpus_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let pictures = corpus(dir.path());
    assert!(pictures.len() >= 200, "{} pictures", pictures.len());
    let c = shipped();
    let mut by: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    let mut let_through = Vec::new();
    for p in &pictures {
        let v = c.classify_file(&p.path).unwrap();
        let e = by.entry(p.category.name()).or_default();
        e.0 += 1;
        if v.out_of_scope() {
            e.1 += 1;
            assert_eq!(v.label, OUT_OF_SCOPE);
            let s = v.scope.as_ref().unwrap();
            assert!(s.reason.is_some());
        } else {
            let_through.push(p.path.display().to_string());
        }
    }
    let refused: usize = by.values().map(|v| v.1).sum();
    let rate = refused as f64 / pictures.len() as f64;
    eprintln!("refused per category (images, refused): {by:?}; let through: {let_through:?}");
    assert!(
        rate >= 0.95,
        "{refused} of {} refused ({:.1} %): {let_through:?}",
        pictures.len(),
        100.0 * rate
    );
    // Every category of junk is caught, not only the easy ones.
    for (name, (n, r)) in &by {
        assert!(*r * 10 >= *n * 8, "{name}: only {r} of {n} refused");
    }
    // Flat fills never reach the network's answer: the cheap check.
    let flat = pictures
        .iter()
        .find(|p| p.category == scope_corpus::Category::Flat)
        .unwrap();
    let v = c.classify_file(&flat.path).unwrap();
    assert_eq!(v.scope.unwrap().score, None);
}

#[test]
fn the_team_set_passes() {
    let c = shipped();
    let guard = c.guard().expect("the shipped model has a guard").clone();
    assert!(
        guard.fitted.oof_pass_rate >= 0.98,
        "out of fold: {}",
        guard.fitted.oof_pass_rate
    );
    let mut files: Vec<PathBuf> = ["yes", "no"]
        .iter()
        .flat_map(|d| std::fs::read_dir(team_data().join(d)).unwrap())
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    let lines = scanside_e2e::classify_json(&c, &files);
    let refused: Vec<&serde_json::Value> = lines
        .iter()
        .filter(|l| l["label"] == OUT_OF_SCOPE)
        .collect();
    // Every line carries the guard's verdict.
    assert!(lines.iter().all(|l| l["scope"]["threshold"].is_number()));
    assert!(
        refused.len() * 100 <= files.len(),
        "{} of {} team slices refused: {refused:?}",
        refused.len(),
        files.len()
    );
}

#[test]
fn the_guard_changes_no_answer_on_a_passed_scan() {
    let path = workspace().join("models").join(SHIPPED_MODEL_FILE);
    let bytes = std::fs::read(&path).unwrap();
    // The same model without its guard: no extra graph output, no verdict.
    let mut proto = parse_onnx(&bytes, &path).unwrap();
    let before = proto.metadata_props.len();
    proto.metadata_props.retain(|p| p.key != MANIFEST_KEY);
    assert_eq!(
        proto.metadata_props.len(),
        before - 1,
        "the shipped model has a guard"
    );
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let bare = Classifier::from_bytes(&scanside::onnx_graph::encode(&proto), &path)
        .unwrap()
        .with_threads(cores);
    assert!(bare.guard().is_none());
    let guarded = shipped();
    let mut compared = 0;
    for class in ["yes", "no"] {
        let mut files: Vec<PathBuf> = std::fs::read_dir(team_data().join(class))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        for f in files.iter().step_by(8) {
            let (g, b) = (
                guarded.classify_file(f).unwrap(),
                bare.classify_file(f).unwrap(),
            );
            assert!(b.scope.is_none() && g.scope.is_some());
            // The extra graph output may change tract's fusion (the last
            // digits), not the answer: the label below is the real check.
            let d = (g.probability - b.probability).abs();
            assert!(
                d <= 1e-5,
                "{}: {} vs {}",
                f.display(),
                g.probability,
                b.probability
            );
            assert_eq!(g.model_label, b.label, "{}", f.display());
            if !g.out_of_scope() {
                assert_eq!(g.label, b.label, "{}", f.display());
                compared += 1;
            }
        }
    }
    assert!(compared >= 25, "{compared} passed scans compared");
}

#[test]
fn an_out_of_scope_scan_on_the_box_shows_its_pattern_and_is_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let model = workspace().join("models").join(SHIPPED_MODEL_FILE);
    let text = format!(
        "model = {model:?}\ninbox = {:?}\naudit_log = {:?}\nboard = \"sim\"\n\
         [timing]\ndebounce_ms = 20\nlong_press_ms = 1000\nresult_ms = 2000\npoll_ms = 5\ninbox_settle_ms = 0\n",
        dir.path().join("inbox"),
        dir.path().join("audit.log"),
    );
    let cfg = DeviceConfig::parse(&text, Path::new("test.toml")).unwrap();
    let (mut app, button, leds) = scanside_e2e::sim_appliance(&cfg);
    // A page of text, as a scanner-side inbox might get a screenshot.
    let pictures = corpus(&dir.path().join("corpus"));
    let page = pictures
        .iter()
        .find(|p| p.category == scope_corpus::Category::Text)
        .unwrap();
    std::fs::copy(&page.path, dir.path().join("inbox/page.png")).unwrap();
    scanside_e2e::press_until(&mut app, &button, |s| {
        s == State::Result(Decision::OutOfScope)
    });
    // Amber and red take turns: both patterns are seen within 1.2 s.
    let shown = Instant::now();
    while shown.elapsed() < Duration::from_millis(1200) {
        app.step().unwrap();
        std::thread::sleep(Duration::from_millis(5));
    }
    let history = leds.history();
    assert!(history.contains(&(false, true, false)) && history.contains(&(false, false, true)));
    match last_event(&cfg.audit_log) {
        AuditEvent::OutOfScope {
            reason, threshold, ..
        } => {
            assert!(!reason.is_empty() && threshold > 0.0);
        }
        other => panic!("last record {other:?}"),
    }
}
