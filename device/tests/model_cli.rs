//! `scanside-device model install | rollback | status`, the real binary on
//! real model files: what the links name after each step, refusals that
//! change nothing, adoption of a plain model file, and pruning.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use scanside_shared::shipped::SHIPPED_MODEL_FILE;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn shipped() -> Vec<u8> {
    std::fs::read(workspace().join("models").join(SHIPPED_MODEL_FILE)).unwrap()
}

/// The shipped model with an unknown protobuf field appended (field 99,
/// varint `tag`): the same network and manifest, a different file.
fn variant(dir: &Path, tag: u8) -> PathBuf {
    let mut bytes = shipped();
    bytes.extend([0x98, 0x06, tag]);
    let path = dir.join(format!("variant-{tag}.onnx"));
    std::fs::write(&path, bytes).unwrap();
    path
}

fn sha12(path: &Path) -> String {
    scanside_shared::sha256_hex(&std::fs::read(path).unwrap())[..12].to_string()
}

fn config(dir: &Path, model: &Path, extra: &str) -> PathBuf {
    let path = dir.join("device.toml");
    std::fs::write(
        &path,
        format!(
            "model = {model:?}\n{extra}inbox = {:?}\naudit_log = {:?}\nboard = \"sim\"\n",
            dir.join("inbox"),
            dir.join("audit.log")
        ),
    )
    .unwrap();
    path
}

fn device(config: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_scanside-device"))
        .arg("model")
        .args(args)
        .arg("--config")
        .arg(config)
        .output()
        .unwrap()
}

/// `(current, previous)` SHA-256 prefixes (or `none`) from `model status`.
fn status(config: &Path) -> (String, String) {
    let o = device(config, &["status"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = String::from_utf8(o.stdout).unwrap();
    let field = |role: &str| {
        let line = text
            .lines()
            .find(|l| l.starts_with(role))
            .unwrap_or_else(|| panic!("no {role} line in {text}"));
        match line.split_once('(') {
            Some((_, rest)) => rest[..12].to_string(),
            None => "none".to_string(),
        }
    };
    (field("current"), field("previous"))
}

fn installed_files(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(".installed.onnx")
        })
        .count()
}

#[test]
fn install_rollback_and_refusals() {
    let dir = tempfile::tempdir().unwrap();
    let models = dir.path().join("models");
    let link = models.join("current.onnx");
    let cfg = config(dir.path(), &link, "");
    let (a, b, c) = (
        variant(dir.path(), 1),
        variant(dir.path(), 2),
        variant(dir.path(), 3),
    );
    assert_eq!(status(&cfg), ("none".into(), "none".into()));

    let o = device(&cfg, &["install", a.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(link.symlink_metadata().unwrap().file_type().is_symlink());
    assert_eq!(status(&cfg), (sha12(&a), "none".into()));

    assert!(
        device(&cfg, &["install", b.to_str().unwrap()])
            .status
            .success()
    );
    assert_eq!(status(&cfg), (sha12(&b), sha12(&a)));

    // A damaged file is refused by name, and nothing changes.
    let broken = dir.path().join("broken.onnx");
    std::fs::write(&broken, &shipped()[..100_000]).unwrap();
    let o = device(&cfg, &["install", broken.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(
        stderr.contains("broken.onnx") && stderr.contains("refused"),
        "{stderr}"
    );
    assert_eq!(status(&cfg), (sha12(&b), sha12(&a)));

    // Rollback swaps current and previous; twice is back where it was.
    assert!(device(&cfg, &["rollback"]).status.success());
    assert_eq!(status(&cfg), (sha12(&a), sha12(&b)));
    assert!(device(&cfg, &["rollback"]).status.success());
    assert_eq!(status(&cfg), (sha12(&b), sha12(&a)));

    // A third model: the oldest file goes, two stay.
    assert!(
        device(&cfg, &["install", c.to_str().unwrap()])
            .status
            .success()
    );
    assert_eq!(status(&cfg), (sha12(&c), sha12(&b)));
    assert_eq!(installed_files(&models), 2);
    // Installing the model in service changes nothing.
    assert!(
        device(&cfg, &["install", c.to_str().unwrap()])
            .status
            .success()
    );
    assert_eq!(status(&cfg), (sha12(&c), sha12(&b)));
}

#[test]
fn a_pinned_box_refuses_installs_and_a_fresh_box_has_nothing_to_roll_back_to() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("model.onnx");
    std::fs::write(&model, shipped()).unwrap();
    let cfg = config(
        dir.path(),
        &model,
        &format!("model_sha256 = \"{}\"\n", "ab".repeat(32)),
    );
    let a = variant(dir.path(), 1);
    let o = device(&cfg, &["install", a.to_str().unwrap()]);
    assert!(!o.status.success());
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(stderr.contains("model_sha256"), "{stderr}");
    assert_eq!(std::fs::read(&model).unwrap(), shipped());

    let cfg = config(dir.path(), &model, "");
    let o = device(&cfg, &["rollback"]);
    assert!(!o.status.success());
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(stderr.contains("no previous model"), "{stderr}");
}

#[test]
fn the_first_install_adopts_a_plain_model_file_as_the_previous_model() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("model.onnx");
    std::fs::write(&model, shipped()).unwrap();
    let shipped_sha = sha12(&model);
    let cfg = config(dir.path(), &model, "");
    assert_eq!(status(&cfg), (shipped_sha.clone(), "none".into()));
    let a = variant(dir.path(), 7);
    assert!(
        device(&cfg, &["install", a.to_str().unwrap()])
            .status
            .success()
    );
    assert_eq!(status(&cfg), (sha12(&a), shipped_sha.clone()));
    assert!(device(&cfg, &["rollback"]).status.success());
    assert_eq!(status(&cfg), (shipped_sha, sha12(&a)));
}

/// Interrupt `model install` with SIGKILL at pseudo-random moments, 100
/// times, alternating between two models: after every kill the link names
/// one of the two, whole (its SHA-256 is one of theirs), and every tenth
/// time the firmware's own loader accepts it, as start-up would.
#[test]
fn a_killed_install_leaves_the_old_model_or_the_new_one() {
    let dir = tempfile::tempdir().unwrap();
    let link = dir.path().join("models/current.onnx");
    let cfg = config(dir.path(), &link, "");
    let (a, b) = (variant(dir.path(), 1), variant(dir.path(), 2));
    let shas = [sha12(&a), sha12(&b)];
    assert!(
        device(&cfg, &["install", a.to_str().unwrap()])
            .status
            .success()
    );
    let mut state = 0x2545_f491_u64;
    let (mut completed, mut interrupted) = (0, 0);
    for kill in 0..100 {
        let file = if kill % 2 == 0 { &b } else { &a };
        let mut child = Command::new(env!("CARGO_BIN_EXE_scanside-device"))
            .args(["model", "install"])
            .arg(file)
            .arg("--config")
            .arg(&cfg)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        std::thread::sleep(std::time::Duration::from_millis(state % 1500));
        match child.try_wait().unwrap() {
            Some(_) => completed += 1,
            None => {
                child.kill().unwrap();
                interrupted += 1;
            }
        }
        child.wait().unwrap();
        let current = sha12(&link);
        assert!(
            shas.contains(&current),
            "kill {kill}: the link names {current}"
        );
        if kill % 10 == 0 {
            scanside_device::worker::load_model(&link, None, false)
                .unwrap_or_else(|e| panic!("kill {kill}: {e}"));
        }
    }
    assert!(
        interrupted >= 30,
        "only {interrupted} installs were interrupted"
    );
    // A clean install afterwards tidies up whatever the kills left.
    assert!(
        device(&cfg, &["install", b.to_str().unwrap()])
            .status
            .success()
    );
    let mut left: Vec<String> = std::fs::read_dir(dir.path().join("models"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(left.len(), 4, "{left:?} ({completed} installs completed)");
    assert!(left.iter().all(|n| !n.ends_with(".part")), "{left:?}");
}
