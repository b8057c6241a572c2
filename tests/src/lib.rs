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

/// The event of the last record in an audit log.
pub fn last_event(log: &Path) -> scanside_shared::audit::AuditEvent {
    scanside_shared::audit::read_log(log)
        .expect("the audit log reads")
        .records
        .pop()
        .expect("a record")
        .event
}
