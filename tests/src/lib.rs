//! End-to-end tests across crates live in `tests/tests/`; this library holds
//! the helpers they share.

pub mod corpus;
pub mod scope_corpus;

use std::path::{Path, PathBuf};

/// The workspace root.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ sits in the workspace")
        .to_path_buf()
}

/// The team dataset, read in place: `$SCANSIDE_SHARED/data/brain-mri`, by
/// default `../shared/data/brain-mri` beside the checkout.
pub fn team_data() -> PathBuf {
    std::env::var_os("SCANSIDE_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("../shared"))
        .join("data/brain-mri")
}

/// The team's DICOM samples, read in place: `$SCANSIDE_SHARED/data/dicom`.
pub fn team_dicom() -> PathBuf {
    team_data()
        .parent()
        .expect("data/brain-mri has a parent")
        .join("dicom")
}

/// Convert a JPEG to a DICOM MR object with dcmtk's `img2dcm` (installed by
/// `scripts/setup.sh`): JPEG Baseline transfer syntax, Modality MR. Fails
/// for what img2dcm cannot take (the team set has PNGs named `.jpg`, and
/// progressive JPEGs).
pub fn img2dcm(jpeg: &Path, out: &Path) -> Result<(), String> {
    let o = std::process::Command::new("img2dcm")
        .args(["-q", "-k", "Modality=MR", "-k", "PatientName=Test^Scan"])
        .arg(jpeg)
        .arg(out)
        .output()
        .expect("img2dcm (dcmtk) is installed: run scripts/setup.sh");
    if o.status.success() {
        Ok(())
    } else {
        let _ = std::fs::remove_file(out);
        Err(format!(
            "img2dcm {}: {}",
            jpeg.display(),
            String::from_utf8_lossy(&o.stderr).trim()
        ))
    }
}

/// The appliance on the simulated board (default polarity, a real clock),
/// with its button's handle and its LED log: how the end-to-end tests run
/// the box in process.
pub fn sim_appliance(
    config: &scanside_device::config::DeviceConfig,
) -> (
    SimAppliance,
    scanside_device::sim::ButtonHandle,
    scanside_device::sim::LedLog,
) {
    let (button, handle) = scanside_device::sim::SimButton::new();
    let leds = scanside_device::sim::LedLog::new(false);
    let app = scanside_device::appliance::Appliance::start(
        config,
        button,
        leds.leds(),
        scanside_device::clock::MonotonicClock::new(),
        scanside_device::panel::Polarity::default(),
    )
    .expect("the appliance starts");
    (app, handle, leds)
}

/// The appliance type [`sim_appliance`] gives.
pub type SimAppliance = scanside_device::appliance::Appliance<
    scanside_device::sim::SimButton,
    scanside_device::sim::SimLed,
    scanside_device::clock::MonotonicClock,
>;

/// Press the simulated button briefly, then run the loop until the press
/// is over and `done(state)` holds (or fail after 2 min).
pub fn press_until(
    app: &mut SimAppliance,
    button: &scanside_device::sim::ButtonHandle,
    done: impl Fn(scanside_device::controller::State) -> bool,
) {
    let b = button.clone();
    let presser = std::thread::spawn(move || b.press_for(std::time::Duration::from_millis(100)));
    let start = std::time::Instant::now();
    // The press is over (released and debounced) 100 + 20 ms after it
    // started; only then may the state be the answer to it.
    while !(start.elapsed() > std::time::Duration::from_millis(200) && done(app.state())) {
        app.step().expect("the appliance steps");
        assert!(
            start.elapsed() < std::time::Duration::from_secs(120),
            "stuck in {:?}",
            app.state()
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    presser.join().expect("the presser finishes");
}

/// Classify `files` with `classifier` as `classify --json` does, insist
/// none failed, and give the result lines, parsed.
pub fn classify_json(
    classifier: &scanside_shared::classifier::Classifier,
    files: &[PathBuf],
) -> Vec<serde_json::Value> {
    let mut out = Vec::new();
    let failures = scanside_shared::classifier::classify_files(
        classifier,
        files,
        scanside_shared::classifier::OutputFormat::Json,
        &mut out,
    )
    .expect("classify writes its lines");
    assert_eq!(failures, 0);
    let lines: Vec<serde_json::Value> = String::from_utf8(out)
        .expect("UTF-8 lines")
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    assert_eq!(lines.len(), files.len());
    lines
}

/// The event of the last record in an audit log.
pub fn last_event(log: &Path) -> scanside_shared::audit::AuditEvent {
    scanside_shared::audit::read_log(log)
        .expect("the audit log reads")
        .records
        .pop()
        .expect("a record")
        .event
}
