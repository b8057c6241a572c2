//! The device configuration: one TOML file, every mistake reported with the
//! key that is wrong.
//!
//! ```toml
//! model = "/usr/share/scanside/models/brain-mri-vgg16-int8.onnx"
//! model_sha256 = "aaab6ba1…"            # optional: refuse any other model file
//! inbox = "/var/lib/scanside/inbox"
//! audit_log = "/var/lib/scanside/audit.log"
//! board = "sim"                         # "sim", "rpi" or "cdev"
//!
//! [pins]                                # BCM numbers (rpi) or line offsets (cdev)
//! chip = "/dev/gpiochip0"
//! button = 17
//! disagree = 24                         # optional second button: dispute the shown result
//! green = 22
//! amber = 27
//! red = 23
//! button_active_low = true
//! leds_active_low = false
//!
//! [decision]
//! uncertain_log_odds = 0.5             # amber within ± this of the threshold, in log-odds
//!
//! [timing]
//! debounce_ms = 30
//! long_press_ms = 2000
//! result_ms = 10000
//! poll_ms = 10
//! inbox_settle_ms = 2000                # a scan counts once unmodified this long
//!
//! [dicom]                               # optional: a DICOM Storage SCP
//! ae_title = "SCANSIDE"                 # our AE title (1–16 characters)
//! port = 11112
//! bind = "0.0.0.0"                      # address to listen on
//! calling_ae_titles = ["MRI1"]          # only these may send; others are rejected
//! max_associations = 4                  # at once; more are rejected
//! timeout_s = 30                        # idle time before a peer is dropped
//!
//! [archive]                             # optional: keep a copy of each classified scan
//! dir = "/var/lib/scanside/archive"     # created 0700; files named by content hash
//! max_mb = 1024                         # size cap; the oldest scans are evicted first
//! overlays = true                       # also save a Grad-CAM overlay per scan
//! ```
//!
//! Unknown keys are errors too (a misspelt key must not silently fall back
//! to a default).

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::{Error, Result};

/// Which pins drive the panel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BoardKind {
    /// A terminal: Enter is the button, LEDs are coloured dots.
    Sim,
    /// Raspberry Pi through rppal.
    Rpi,
    /// Any Linux board through the GPIO character device.
    Cdev,
}

/// Pin numbers and polarity.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pins {
    /// GPIO character device (cdev board).
    #[serde(default = "default_chip")]
    pub chip: PathBuf,
    /// Button input.
    pub button: u32,
    /// Optional "disagree" button input (same wiring as `button`).
    #[serde(default)]
    pub disagree: Option<u32>,
    /// Green LED.
    pub green: u32,
    /// Amber LED.
    pub amber: u32,
    /// Red LED.
    pub red: u32,
    /// Pressing pulls the button pin low (pull-up wiring).
    #[serde(default = "yes")]
    pub button_active_low: bool,
    /// A low pin lights an LED.
    #[serde(default)]
    pub leds_active_low: bool,
}

fn default_chip() -> PathBuf {
    PathBuf::from("/dev/gpiochip0")
}

fn yes() -> bool {
    true
}

/// How probabilities become colours.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecisionConfig {
    /// Half-width of the amber band around the model's threshold, in
    /// log-odds (`crate::controller::decide`): 0.5 puts the band around a
    /// threshold of 0.031 at 0.019–0.050, around 0.045 at 0.028–0.072,
    /// around 0.5 at 0.38–0.62.
    #[serde(default = "default_band")]
    pub uncertain_log_odds: f32,
    /// The band in probability that `uncertain_log_odds` replaced: read
    /// only to refuse it with what to write instead.
    #[serde(default)]
    uncertain_band: Option<f32>,
}

fn default_band() -> f32 {
    0.5
}

impl Default for DecisionConfig {
    fn default() -> Self {
        DecisionConfig {
            uncertain_log_odds: default_band(),
            uncertain_band: None,
        }
    }
}

/// Timings, milliseconds.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Timing {
    /// A button level must hold this long.
    pub debounce_ms: u64,
    /// Held this long, a press shows the last result again.
    pub long_press_ms: u64,
    /// A result or error stays lit this long.
    pub result_ms: u64,
    /// Main-loop period.
    pub poll_ms: u64,
    /// A scan file counts as complete once unmodified this long.
    pub inbox_settle_ms: u64,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            debounce_ms: 30,
            long_press_ms: 2000,
            result_ms: 10_000,
            poll_ms: 10,
            inbox_settle_ms: 2000,
        }
    }
}

/// The DICOM Storage SCP (`[dicom]`): present means on.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DicomConfig {
    /// Our application entity title (1–16 printable ASCII characters, no
    /// backslash).
    #[serde(default = "default_ae_title")]
    pub ae_title: String,
    /// TCP port (104 is DICOM's, 11112 the usual unprivileged one).
    #[serde(default = "default_dicom_port")]
    pub port: u16,
    /// Address to listen on.
    #[serde(default = "default_bind")]
    pub bind: std::net::IpAddr,
    /// The calling AE titles allowed to send; any other is rejected.
    pub calling_ae_titles: Vec<String>,
    /// Associations served at once; more are rejected.
    #[serde(default = "default_max_associations")]
    pub max_associations: usize,
    /// Seconds a peer may stay silent before it is dropped.
    #[serde(default = "default_dicom_timeout")]
    pub timeout_s: u64,
}

fn default_ae_title() -> String {
    "SCANSIDE".into()
}

fn default_dicom_port() -> u16 {
    11112
}

fn default_bind() -> std::net::IpAddr {
    std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED)
}

fn default_max_associations() -> usize {
    4
}

fn default_dicom_timeout() -> u64 {
    30
}

/// Why `title` is not a valid AE title, if it is not.
fn ae_title_problem(title: &str) -> Option<String> {
    let t = title.trim();
    if t.is_empty() || t.len() > 16 {
        return Some(format!("{title:?} must have 1 to 16 characters"));
    }
    if !t.bytes().all(|b| (0x20..0x7f).contains(&b) && b != b'\\') {
        return Some(format!(
            "{title:?} may hold printable ASCII only, no backslash"
        ));
    }
    None
}

/// The optional scan archive (see [`crate::archive`]).
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArchiveConfig {
    /// Folder for the copies (created if missing).
    pub dir: PathBuf,
    /// Size cap in MiB (1 MiB to 1 TiB); beyond it the oldest scans go first.
    #[serde(default = "default_archive_mb")]
    pub max_mb: u64,
    /// Also save a Grad-CAM overlay (`<hash>.gradcam.png`) of each scan.
    #[serde(default)]
    pub overlays: bool,
}

fn default_archive_mb() -> u64 {
    1024
}

/// The whole configuration.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceConfig {
    /// The model file.
    pub model: PathBuf,
    /// Expected SHA-256 of the model file (hex); checked at start-up.
    #[serde(default)]
    pub model_sha256: Option<String>,
    /// The folder scans arrive in.
    pub inbox: PathBuf,
    /// The audit log file.
    pub audit_log: PathBuf,
    /// The board backend.
    pub board: BoardKind,
    /// Pins (required for `rpi` and `cdev`).
    #[serde(default)]
    pub pins: Option<Pins>,
    /// Decision band.
    #[serde(default)]
    pub decision: DecisionConfig,
    /// Timings.
    #[serde(default)]
    pub timing: Timing,
    /// The DICOM storage node; off when absent.
    #[serde(default)]
    pub dicom: Option<DicomConfig>,
    /// The scan archive; off when absent.
    #[serde(default)]
    pub archive: Option<ArchiveConfig>,
}

impl DeviceConfig {
    /// Read and validate a configuration file.
    pub fn load(path: &Path) -> Result<Self> {
        if let Some(reason) = crate::access::writable_by_others(path) {
            return Err(Error::Config {
                path: path.to_path_buf(),
                reason: format!("refused: {reason}"),
            });
        }
        // A configuration that cannot be read is a configuration error too
        // (exit status 78: restarting will not help).
        let text = std::fs::read_to_string(path).map_err(|e| Error::Config {
            path: path.to_path_buf(),
            reason: format!("cannot read it: {e}"),
        })?;
        Self::parse(&text, path)
    }

    /// Parse and validate configuration text; `path` names it in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Self> {
        let bad = |reason: String| Error::Config {
            path: path.to_path_buf(),
            reason,
        };
        let c: DeviceConfig = toml::from_str(text).map_err(|e| bad(e.to_string()))?;
        if let Some(sha) = &c.model_sha256
            && (sha.len() != 64 || !sha.bytes().all(|b| b.is_ascii_hexdigit()))
        {
            return Err(bad(format!(
                "`model_sha256`: expected 64 hex digits, got {sha:?}"
            )));
        }
        if c.decision.uncertain_band.is_some() {
            return Err(bad(
                "`decision.uncertain_band` (a band in probability) is replaced by \
                 `decision.uncertain_log_odds` (default 0.5): near a low threshold a band in \
                 probability covered every no-tumour result"
                    .into(),
            ));
        }
        if !(0.0..=3.0).contains(&c.decision.uncertain_log_odds) {
            return Err(bad(format!(
                "`decision.uncertain_log_odds`: must be in [0, 3], got {}",
                c.decision.uncertain_log_odds
            )));
        }
        let t = &c.timing;
        if t.poll_ms == 0 || t.poll_ms > 100 {
            return Err(bad(format!(
                "`timing.poll_ms`: must be in 1..=100, got {}",
                t.poll_ms
            )));
        }
        if t.long_press_ms <= t.debounce_ms {
            return Err(bad(format!(
                "`timing.long_press_ms` ({}) must exceed `timing.debounce_ms` ({})",
                t.long_press_ms, t.debounce_ms
            )));
        }
        match (&c.pins, c.board) {
            (None, BoardKind::Rpi | BoardKind::Cdev) => {
                return Err(bad(format!(
                    "`pins`: required for board = \"{}\"",
                    if c.board == BoardKind::Rpi {
                        "rpi"
                    } else {
                        "cdev"
                    }
                )));
            }
            (Some(p), _) => {
                let mut all = vec![
                    ("pins.button", p.button),
                    ("pins.green", p.green),
                    ("pins.amber", p.amber),
                    ("pins.red", p.red),
                ];
                all.extend(p.disagree.map(|d| ("pins.disagree", d)));
                for (i, (a, x)) in all.iter().enumerate() {
                    if let Some((b, _)) = all[i + 1..].iter().find(|(_, y)| y == x) {
                        return Err(bad(format!("`{a}` and `{b}` are both pin {x}")));
                    }
                }
            }
            (None, BoardKind::Sim) => {}
        }
        if let Some(d) = &c.dicom {
            if let Some(problem) = ae_title_problem(&d.ae_title) {
                return Err(bad(format!("`dicom.ae_title`: {problem}")));
            }
            if d.calling_ae_titles.is_empty() {
                return Err(bad(
                    "`dicom.calling_ae_titles`: name at least one sender (the scanner's AE title)"
                        .into(),
                ));
            }
            if let Some(problem) = d.calling_ae_titles.iter().find_map(|t| ae_title_problem(t)) {
                return Err(bad(format!("`dicom.calling_ae_titles`: {problem}")));
            }
            if d.max_associations == 0 || d.timeout_s == 0 {
                return Err(bad(
                    "`dicom.max_associations` and `dicom.timeout_s` must be at least 1".into(),
                ));
            }
        }
        if let Some(a) = &c.archive
            && !(1..=1 << 20).contains(&a.max_mb)
        {
            return Err(bad(format!(
                "`archive.max_mb`: must be in 1..=1048576, got {}",
                a.max_mb
            )));
        }
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
model = "m.onnx"
inbox = "in"
audit_log = "audit.log"
board = "cdev"
[pins]
button = 17
green = 22
amber = 27
red = 23
"#;

    fn err(text: &str) -> String {
        DeviceConfig::parse(text, Path::new("device.toml"))
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn a_config_others_can_write_is_refused_by_name() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("device.toml");
        std::fs::write(&path, GOOD).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        DeviceConfig::load(&path).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).unwrap();
        let e = DeviceConfig::load(&path).unwrap_err().to_string();
        assert!(
            e.contains("device.toml") && e.contains("everyone") && e.contains("chmod go-w"),
            "{e}"
        );
    }

    #[test]
    fn a_good_file_gets_defaults() {
        let c = DeviceConfig::parse(GOOD, Path::new("device.toml")).unwrap();
        assert_eq!(c.board, BoardKind::Cdev);
        let p = c.pins.unwrap();
        assert!(p.button_active_low && !p.leds_active_low);
        assert_eq!(p.chip, PathBuf::from("/dev/gpiochip0"));
        assert_eq!(c.timing, Timing::default());
        assert_eq!(c.decision.uncertain_log_odds, 0.5);
        assert_eq!(c.dicom, None);
        let with_dicom = format!("{GOOD}[dicom]\ncalling_ae_titles = [\"MRI1\"]\n");
        let d = DeviceConfig::parse(&with_dicom, Path::new("device.toml"))
            .unwrap()
            .dicom
            .unwrap();
        assert_eq!(
            (d.ae_title.as_str(), d.port, d.max_associations),
            ("SCANSIDE", 11112, 4)
        );
        assert_eq!(c.archive, None);
        let with_archive = format!("{GOOD}[archive]\ndir = \"a\"\n");
        let a = DeviceConfig::parse(&with_archive, Path::new("device.toml"))
            .unwrap()
            .archive
            .unwrap();
        assert_eq!((a.max_mb, a.overlays), (1024, false));
    }

    #[test]
    fn the_shipped_configurations_are_valid() {
        for (name, text) in [
            (
                "device.example.toml",
                include_str!("../device.example.toml"),
            ),
            ("device.toml", include_str!("../device.toml")),
        ] {
            let c = DeviceConfig::parse(text, Path::new(name)).unwrap();
            assert!(c.pins.is_some() && c.model_sha256.is_some(), "{name}");
        }
    }

    #[test]
    fn every_error_names_its_key() {
        let e = err(&GOOD.replace("button = 17", "buton = 17"));
        assert!(e.contains("buton") && e.contains("device.toml"), "{e}");
        let e = err(&GOOD.replace("red = 23", "red = \"23\""));
        assert!(e.contains("red"), "{e}");
        let e = err(&GOOD.replace("red = 23", "red = 22"));
        assert!(e.contains("`pins.green` and `pins.red`"), "{e}");
        let e = err(&GOOD.replace("red = 23", "red = 23\ndisagree = 17"));
        assert!(e.contains("`pins.button` and `pins.disagree`"), "{e}");
        let e = err(&format!("{GOOD}[decision]\nuncertain_log_odds = 3.5\n"));
        assert!(e.contains("decision.uncertain_log_odds"), "{e}");
        let e = err(&format!("{GOOD}[decision]\nuncertain_band = 0.03\n"));
        assert!(
            e.contains("replaced by `decision.uncertain_log_odds`"),
            "{e}"
        );
        let e = err(&format!("{GOOD}[timing]\npoll_ms = 0\n"));
        assert!(e.contains("timing.poll_ms"), "{e}");
        let e = err(&GOOD.replace("inbox = \"in\"\n", ""));
        assert!(e.contains("inbox"), "{e}");
        let e = err(&format!("model_sha256 = \"abc\"\n{GOOD}"));
        assert!(e.contains("model_sha256"), "{e}");
        let dicom = format!("{GOOD}[dicom]\ncalling_ae_titles = []\n");
        assert!(err(&dicom).contains("dicom.calling_ae_titles"));
        let dicom =
            format!("{GOOD}[dicom]\nae_title = \"A\\\\B\"\ncalling_ae_titles = [\"MRI\"]\n");
        assert!(err(&dicom).contains("dicom.ae_title"), "{}", err(&dicom));
        let dicom = format!("{GOOD}[dicom]\ncalling_ae_titles = [\"MRI\"]\nport = 70000\n");
        assert!(err(&dicom).contains("port"), "{}", err(&dicom));
        let archive = format!("{GOOD}[archive]\ndir = \"a\"\nmax_mb = 0\n");
        assert!(
            err(&archive).contains("archive.max_mb"),
            "{}",
            err(&archive)
        );
        let archive = format!("{GOOD}[archive]\ndir = \"a\"\noverlay = true\n");
        assert!(err(&archive).contains("overlay"), "{}", err(&archive));
        let sim_without_pins = "model = \"m\"\ninbox = \"i\"\naudit_log = \"l\"\nboard = \"rpi\"\n";
        assert!(err(sim_without_pins).contains("`pins`"));
    }
}
