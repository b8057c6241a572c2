//! The appliance end to end on the simulated board: real shipped model,
//! real inbox folder, real audit log; the button is pressed from another
//! thread and the LEDs are read back from their log.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use scanside_device::config::DeviceConfig;
use scanside_device::controller::State;
use scanside_device::sim::{ButtonHandle, LedLog, SimButton};
use scanside_e2e::{press_until, team_data, workspace};
use scanside_shared::audit::{AuditEvent, Decision, ErrorKind, read_log};
use scanside_shared::shipped::SHIPPED_MODEL_FILE;

use scanside_e2e::SimAppliance;

fn config(dir: &Path, sha: Option<&str>) -> DeviceConfig {
    config_with(dir, sha, "")
}

/// [`config`] plus more TOML sections.
fn config_with(dir: &Path, sha: Option<&str>, extra: &str) -> DeviceConfig {
    let model = workspace().join("models").join(SHIPPED_MODEL_FILE);
    let sha = sha.map_or(String::new(), |s| format!("model_sha256 = \"{s}\"\n"));
    let text = format!(
        "model = {model:?}\n{sha}inbox = {:?}\naudit_log = {:?}\nboard = \"sim\"\n\
         [timing]\ndebounce_ms = 20\nlong_press_ms = 1000\nresult_ms = 400\npoll_ms = 5\ninbox_settle_ms = 0\n{extra}",
        dir.join("inbox"),
        dir.join("audit.log"),
    );
    DeviceConfig::parse(&text, Path::new("test.toml")).unwrap()
}

/// The appliance on the simulated board, its button and its LEDs.
fn start(cfg: &DeviceConfig) -> (SimAppliance, ButtonHandle, LedLog) {
    scanside_e2e::sim_appliance(cfg)
}

fn link(inbox: &Path, source: &Path) -> PathBuf {
    let dest = inbox.join(source.file_name().unwrap());
    std::os::unix::fs::symlink(source, &dest).unwrap();
    dest
}

#[test]
fn press_classifies_the_newest_scan_records_it_and_files_it() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), None);
    let (mut app, handle, leds) = start(&cfg);

    // Empty inbox: error pattern, recorded.
    press_until(&mut app, &handle, |s| s == State::Error(ErrorKind::NoScan));
    assert!(leds.history().contains(&(false, false, true)));

    // A tumour scan: busy (amber) then red, recorded, moved to processed/.
    let inbox = dir.path().join("inbox");
    let scan = link(&inbox, &team_data().join("yes/Y1.jpg"));
    press_until(&mut app, &handle, |s| {
        s == State::Result(Decision::TumourSuspected)
    });
    assert_eq!(leds.current(), (false, false, true));
    assert!(leds.history().contains(&(false, true, false)), "busy amber");
    assert!(!scan.exists() && inbox.join("processed/Y1.jpg").exists());

    // A no-tumour scan: green.
    link(&inbox, &team_data().join("no/1 no.jpeg"));
    press_until(&mut app, &handle, |s| {
        s == State::Result(Decision::NoTumour)
    });
    assert_eq!(leds.current(), (true, false, false));

    // An unreadable file: error, kept in rejected/.
    std::fs::write(inbox.join("broken.jpg"), b"not an image").unwrap();
    press_until(&mut app, &handle, |s| {
        s == State::Error(ErrorKind::UnreadableScan)
    });
    assert!(inbox.join("rejected/broken.jpg").exists());

    let log = read_log(&cfg.audit_log).unwrap();
    assert!(log.damaged.is_empty() && log.torn_tail.is_none());
    let kinds: Vec<String> = log
        .records
        .iter()
        .map(|r| match &r.event {
            AuditEvent::Classified { decision, .. } => format!("{decision:?}"),
            AuditEvent::Error { kind, .. } => format!("{kind:?}"),
            AuditEvent::Received { .. } => "Received".into(),
            AuditEvent::Disputed { .. } => "Disputed".into(),
            AuditEvent::ModelChanged { .. } => "ModelChanged".into(),
            AuditEvent::OutOfScope { .. } => "OutOfScope".into(),
        })
        .collect();
    assert_eq!(
        kinds,
        ["NoScan", "TumourSuspected", "NoTumour", "UnreadableScan"]
    );
    let AuditEvent::Classified {
        scan,
        probability,
        model,
        ..
    } = &log.records[1].event
    else {
        unreachable!()
    };
    let bytes = std::fs::read(team_data().join("yes/Y1.jpg")).unwrap();
    assert_eq!(scan.content_sha256, scanside_shared::sha256(&bytes));
    assert_eq!(scan.name_sha256, scanside_shared::sha256(b"Y1.jpg"));
    assert!(model.id.ends_with("-int8"));
    // The recorded decision of the shipped model for this scan.
    let expected = std::fs::read_to_string(workspace().join("models/expected.jsonl")).unwrap();
    let y1: serde_json::Value = serde_json::from_str(expected.lines().next().unwrap()).unwrap();
    assert_eq!(y1["file"], "yes/Y1.jpg");
    assert!((probability - y1["probability"].as_f64().unwrap() as f32).abs() < 1e-5);
}

#[test]
fn a_model_that_is_not_the_configured_one_puts_the_box_out_of_service() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), Some(&"0".repeat(64)));
    let (mut app, handle, leds) = start(&cfg);
    let reason = app.fault().expect("a mismatching model was accepted");
    assert!(
        reason.contains("SHA-256") && reason.contains("0000"),
        "{reason}"
    );
    assert_eq!(app.state(), State::Fault(ErrorKind::ModelFailure));
    assert_eq!(leds.current(), (false, false, true), "red blink starts lit");

    // A scan waits, the button is pressed: nothing is classified.
    let inbox = dir.path().join("inbox");
    let scan = link(&inbox, &team_data().join("yes/Y1.jpg"));
    let start = Instant::now();
    let b = handle.clone();
    let presser = std::thread::spawn(move || b.press_for(Duration::from_millis(100)));
    while start.elapsed() < Duration::from_millis(600) {
        app.step().unwrap();
        std::thread::sleep(Duration::from_millis(5));
    }
    presser.join().unwrap();
    assert_eq!(app.state(), State::Fault(ErrorKind::ModelFailure));
    assert!(scan.exists(), "the scan stays in the inbox");
    let history = leds.history();
    assert!(
        history.iter().all(|&(g, a, _)| !g && !a),
        "only red ever lit: {history:?}"
    );
    assert!(history.len() >= 4, "red keeps blinking: {history:?}");

    // The refusal is in the audit log.
    let log = read_log(&cfg.audit_log).unwrap();
    assert_eq!(log.records.len(), 1);
    let AuditEvent::Error {
        kind,
        detail,
        model,
        ..
    } = &log.records[0].event
    else {
        panic!("{:?}", log.records[0]);
    };
    assert_eq!(*kind, ErrorKind::ModelFailure);
    assert!(model.is_none() && detail.contains("SHA-256"), "{detail}");
}

#[test]
fn with_the_archive_on_each_classified_scan_is_kept_with_its_overlay() {
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("archive");
    let cfg = config_with(
        dir.path(),
        None,
        &format!("[archive]\ndir = {archive:?}\nmax_mb = 64\noverlays = true\n"),
    );
    let (mut app, handle, _leds) = start(&cfg);
    let inbox = dir.path().join("inbox");
    let mut kept = Vec::new();
    for (rel, decision) in [
        ("yes/Y1.jpg", Decision::TumourSuspected),
        ("no/1 no.jpeg", Decision::NoTumour),
    ] {
        let source = team_data().join(rel);
        link(&inbox, &source);
        press_until(&mut app, &handle, |s| s == State::Result(decision));
        kept.push(hex_sha(&std::fs::read(&source).unwrap()));
    }
    std::fs::write(inbox.join("broken.jpg"), b"not an image").unwrap();
    press_until(&mut app, &handle, |s| {
        s == State::Error(ErrorKind::UnreadableScan)
    });

    // Two classified scans, each with its overlay, named by content only.
    let mut names: Vec<String> = std::fs::read_dir(&archive)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let mut expected = vec![
        format!("{}.jpg", kept[0]),
        format!("{}.gradcam.png", kept[0]),
        format!("{}.jpeg", kept[1]),
        format!("{}.gradcam.png", kept[1]),
    ];
    expected.sort();
    assert_eq!(names, expected);
    let copy = std::fs::read(archive.join(format!("{}.jpg", kept[0]))).unwrap();
    assert_eq!(copy, std::fs::read(team_data().join("yes/Y1.jpg")).unwrap());
    for key in &kept {
        let overlay = image::open(archive.join(format!("{key}.gradcam.png")))
            .unwrap()
            .to_rgb8();
        assert_eq!(overlay.dimensions(), (224, 224 + 40));
    }

    // Explaining does not change the decision: the recorded probability is
    // the shipped model's reference value.
    let log = read_log(&cfg.audit_log).unwrap();
    let AuditEvent::Classified { probability, .. } = &log.records[0].event else {
        panic!("{:?}", log.records[0]);
    };
    let expected = std::fs::read_to_string(workspace().join("models/expected.jsonl")).unwrap();
    let y1: serde_json::Value = serde_json::from_str(expected.lines().next().unwrap()).unwrap();
    assert!((probability - y1["probability"].as_f64().unwrap() as f32).abs() < 1e-5);
}

fn hex_sha(bytes: &[u8]) -> String {
    scanside_shared::sha256_hex(bytes)
}

#[test]
fn disagree_disputes_the_shown_result_in_the_audit_log() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), None);
    let (mut app, handle, leds) = start(&cfg);
    let (disagree, disagree_handle) = SimButton::new();
    app.add_disagree_button(disagree);

    // Nothing shown yet: a disagree press records nothing.
    press_until(&mut app, &disagree_handle, |s| s == State::Idle);
    link(&dir.path().join("inbox"), &team_data().join("yes/Y1.jpg"));
    press_until(&mut app, &handle, |s| {
        s == State::Result(Decision::TumourSuspected)
    });
    press_until(&mut app, &disagree_handle, |s| s == State::Acknowledged);
    assert_eq!(leds.current(), (true, true, true), "all lamps acknowledge");
    // A second press on the same result is not a second dispute.
    press_until(&mut app, &handle, |s| s == State::Error(ErrorKind::NoScan));
    press_until(&mut app, &disagree_handle, |s| {
        s == State::Error(ErrorKind::NoScan)
    });

    let log = read_log(&cfg.audit_log).unwrap();
    assert_eq!(log.records.len(), 3, "{:?}", log.records);
    let AuditEvent::Classified {
        scan,
        model,
        decision,
        ..
    } = &log.records[0].event
    else {
        panic!("{:?}", log.records[0]);
    };
    assert_eq!(
        log.records[1].event,
        AuditEvent::Disputed {
            refers_to_unix_ms: log.records[0].unix_ms,
            scan: scan.clone(),
            model: model.clone(),
            decision: *decision,
        }
    );
    assert!(matches!(
        log.records[2].event,
        AuditEvent::Error {
            kind: ErrorKind::NoScan,
            ..
        }
    ));
}

/// Every file under `dir` with its size and modification time.
fn snapshot(dir: &Path) -> Vec<(PathBuf, u64, std::time::SystemTime)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let meta = std::fs::symlink_metadata(e.path()).unwrap();
            if meta.is_dir() {
                stack.push(e.path());
            } else {
                out.push((e.path(), meta.len(), meta.modified().unwrap()));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn export_bundles_records_scans_and_overlays_and_changes_nothing() {
    use scanside_shared::bundle::{BundleEntry, parse_bundle};

    let dir = tempfile::tempdir().unwrap();
    let device = dir.path().join("device");
    let archive = device.join("archive");
    let cfg = config_with(
        &device,
        None,
        &format!("[archive]\ndir = {archive:?}\noverlays = true\n"),
    );
    let (mut app, handle, _leds) = start(&cfg);
    let (disagree, disagree_handle) = SimButton::new();
    app.add_disagree_button(disagree);
    let inbox = device.join("inbox");
    let sources = [
        team_data().join("yes/Y1.jpg"),
        team_data().join("no/1 no.jpeg"),
    ];
    for (source, decision) in sources
        .iter()
        .zip([Decision::TumourSuspected, Decision::NoTumour])
    {
        link(&inbox, source);
        press_until(&mut app, &handle, |s| s == State::Result(decision));
    }
    press_until(&mut app, &disagree_handle, |s| s == State::Acknowledged);
    drop(app);

    let before = snapshot(&device);
    let bundle = dir.path().join("out/box.scanside");
    std::fs::create_dir_all(bundle.parent().unwrap()).unwrap();
    let export = |since: u64| {
        let s = scanside_device::export::export(&cfg, since, &bundle).unwrap();
        (s.records, s.scans, s.overlays, s.scans_not_archived)
    };
    assert_eq!(export(0), (3, 2, 2, 0));
    assert_eq!(snapshot(&device), before, "export changed the device");

    let bytes = std::fs::read(&bundle).unwrap();
    let read = parse_bundle(&bytes);
    let m = read.manifest.as_ref().expect("a manifest");
    assert_eq!((m.records, m.scans, m.overlays), (3, 2, 2));
    assert!(read.damaged.is_empty() && read.missing == 0 && read.unlisted == 0);
    let log = read_log(&cfg.audit_log).unwrap();
    let records: Vec<_> = read
        .entries
        .iter()
        .filter_map(|e| match e {
            BundleEntry::Record(r) => Some(r.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(records, log.records);
    for source in &sources {
        let want = std::fs::read(source).unwrap();
        let sha = scanside_shared::sha256(&want);
        assert!(read.entries.iter().any(|e| matches!(e,
            BundleEntry::Scan { content_sha256, bytes, .. } if *content_sha256 == sha && *bytes == want)));
        assert!(read.entries.iter().any(|e| matches!(e,
            BundleEntry::Overlay { content_sha256, png } if *content_sha256 == sha && png.starts_with(b"\x89PNG"))));
    }

    // A damaged scan entry: everything else is still read.
    let mut damaged = bytes.clone();
    let at = damaged
        .windows(8)
        .position(|w| w == &std::fs::read(&sources[0]).unwrap()[100..108])
        .expect("the scan's bytes are in the bundle");
    damaged[at] ^= 0x55;
    let read = parse_bundle(&damaged);
    assert_eq!(read.damaged.len(), 1);
    assert_eq!(read.missing, 1);
    assert_eq!(read.entries.len(), 3 + 2 + 2 - 1);

    // Since the second classification: it and the dispute, one scan.
    assert_eq!(export(log.records[1].unix_ms), (2, 1, 1, 0));
    assert_eq!(snapshot(&device), before);
}
