//! `scanside-device`: the firmware's command line.
//!
//! `classify` prints the same result lines as the host's `scanside classify`
//! (both call `scanside_shared::classifier::classify_command`); `log` prints
//! the audit log; `run` is the appliance loop on the board the configuration
//! names (`sim` always; `rpi` and `cdev` when built with those features),
//! under systemd as a `Type=notify` service with a watchdog.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Result;
use clap::{CommandFactory, Parser, Subcommand, ValueEnum};
use embedded_hal::digital::{InputPin, OutputPin};

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use scanside_device::appliance::Appliance;
use scanside_device::boards::BoardPins;
use scanside_device::clock::MonotonicClock;
use scanside_device::config::{BoardKind, DeviceConfig};
use scanside_device::dicom_scp::StorageScp;
use scanside_device::export::utc;
use scanside_device::panel::Polarity;
use scanside_device::sim::{LedLog, SimButton};
use scanside_device::systemd::Systemd;
use scanside_shared::audit::{AuditEvent, read_log};
use scanside_shared::classifier::{OutputFormat, classify_command};
use scanside_shared::exit;

/// scanside device firmware: brain-MRI tumour triage beside the scanner.
///
/// A radiographer presses a button; the box classifies the newest scan in
/// its inbox with the configured model and shows the result on three LEDs
/// (green: no tumour, amber: uncertain, red: tumour suspected; amber and
/// red taking turns: out of scope, the scan is unlike what the model was
/// trained on); every result is recorded in an append-only audit log. Configuration:
/// /etc/scanside/device.toml. Logs: journalctl -u scanside-device.
///
/// Research use only: not a medical device, not a diagnosis.
#[derive(Parser)]
#[command(version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Classify image files (same result lines as `scanside classify`).
    Classify {
        /// Model file [default: the shipped model].
        #[arg(long)]
        model: Option<PathBuf>,
        /// Image or DICOM files, or folders (every file below them, sorted,
        /// hidden ones skipped).
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Result lines: readable text, one JSON object per line, or CSV
        /// with a header row.
        #[arg(long, value_enum, default_value = "text")]
        format: FormatArg,
        /// Same as `--format json`.
        #[arg(long, conflicts_with = "format")]
        json: bool,
        /// Frame of multi-frame DICOM objects to classify, counting from 0
        /// [default: the middle one].
        #[arg(long, value_name = "N")]
        frame: Option<u32>,
    },
    /// Print the audit log; a torn or damaged record is reported and skipped.
    Log {
        /// The log file.
        path: PathBuf,
        /// One JSON object per record.
        #[arg(long)]
        json: bool,
    },
    /// The appliance loop: button, LEDs, inbox, audit log.
    Run {
        /// Configuration file.
        #[arg(long, default_value = "/etc/scanside/device.toml")]
        config: PathBuf,
    },
    /// Write the audit records since a time, with the archived scans and
    /// overlays they refer to, to one bundle file for the host. Changes
    /// nothing on the device.
    Export {
        /// Configuration file (where the audit log and archive are).
        #[arg(long, default_value = "/etc/scanside/device.toml")]
        config: PathBuf,
        /// Records from this time on: milliseconds since 1970, or a UTC
        /// date YYYY-MM-DD [default: everything].
        #[arg(long, value_name = "TIME", value_parser = scanside_device::export::parse_since)]
        since: Option<u64>,
        /// The bundle file to write.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
    /// Install a new model, roll back to the previous one, or show both.
    /// The configured `model` path becomes a link swapped atomically; a
    /// running appliance switches within seconds and records the change.
    Model {
        /// Configuration file (where the model link is).
        #[arg(long, default_value = "/etc/scanside/device.toml", global = true)]
        config: PathBuf,
        #[command(subcommand)]
        action: ModelAction,
    },
    /// Check the configuration without starting the box: exit 0 and a
    /// summary if it is valid, 78 (EX_CONFIG) with the reason if not.
    Config {
        #[command(subcommand)]
        action: ConfigAction,
    },
    /// Print a shell completion script (bash, zsh, fish, elvish,
    /// powershell); the .deb installs bash, zsh and fish ones.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
}

#[derive(Subcommand)]
enum ConfigAction {
    /// Parse and validate a configuration file.
    Check {
        /// Configuration file.
        #[arg(long, default_value = "/etc/scanside/device.toml")]
        config: PathBuf,
    },
}

/// `classify --format`.
#[derive(Clone, Copy, ValueEnum)]
enum FormatArg {
    Text,
    Json,
    Csv,
}

#[derive(Subcommand)]
enum ModelAction {
    /// Check a model file (manifest, tract, one inference) and put it in
    /// service; the current model becomes the previous one.
    Install {
        /// The model file (e.g. `models/<model id>.onnx` from `scanside retrain`).
        file: PathBuf,
    },
    /// Put the previous model back in service (checked first).
    Rollback,
    /// Show the current and previous model.
    Status,
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            // A bad configuration will not fix itself: the unit does not
            // restart on this status (RestartPreventExitStatus=78).
            let config = e.chain().any(|c| {
                matches!(
                    c.downcast_ref::<scanside_device::Error>(),
                    Some(scanside_device::Error::Config { .. })
                )
            });
            ExitCode::from(if config { exit::CONFIG } else { exit::FAILURE })
        }
    }
}

fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Classify {
            model,
            files,
            format,
            json,
            frame,
        } => {
            let format = match (json, format) {
                (true, _) | (false, FormatArg::Json) => OutputFormat::Json,
                (false, FormatArg::Text) => OutputFormat::Text,
                (false, FormatArg::Csv) => OutputFormat::Csv,
            };
            Ok(ExitCode::from(classify_command(
                model, &files, format, frame,
            )?))
        }
        Command::Log { path, json } => print_log(&path, json),
        Command::Completions { shell } => {
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "scanside-device",
                &mut std::io::stdout(),
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Config {
            action: ConfigAction::Check { config },
        } => {
            let c = DeviceConfig::load(&config)?;
            println!(
                "{}: valid (model {}, inbox {}, audit log {}, board {:?})",
                config.display(),
                c.model.display(),
                c.inbox.display(),
                c.audit_log.display(),
                c.board
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Run { config } => run_appliance(&config),
        Command::Export { config, since, out } => {
            let config = DeviceConfig::load(&config)?;
            let s = scanside_device::export::export(&config, since.unwrap_or(0), &out)?;
            println!(
                "{}: {} records, {} scans, {} overlays ({} bytes); {} referenced scans not in the archive",
                out.display(),
                s.records,
                s.scans,
                s.overlays,
                s.bytes,
                s.scans_not_archived
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Model { config, action } => {
            let config = DeviceConfig::load(&config)?;
            let store = scanside_device::model_store::ModelStore::new(&config.model);
            let status = match action {
                ModelAction::Install { file } => {
                    store.install(&file, config.model_sha256.as_deref())?
                }
                ModelAction::Rollback => store.rollback()?,
                ModelAction::Status => store.status()?,
            };
            for (role, m) in [("current", &status.current), ("previous", &status.previous)] {
                match m {
                    Some(m) => println!(
                        "{role:<8} {} ({}) {}",
                        m.model_id,
                        &m.sha256[..12],
                        m.file.display()
                    ),
                    None => println!("{role:<8} none"),
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn run_appliance(config_path: &Path) -> Result<ExitCode> {
    let config = DeviceConfig::load(config_path)?;
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, stop.clone())?;
    }
    let polarity = config
        .pins
        .as_ref()
        .map_or(Polarity::default(), |p| Polarity {
            button_active_low: p.button_active_low,
            leds_active_low: p.leds_active_low,
        });
    match config.board {
        BoardKind::Sim => {
            let (button, handle) = SimButton::new();
            let (disagree, disagree_handle) = SimButton::new();
            let leds = LedLog::new(true);
            // Enter presses the button briefly; "l" + Enter holds it long;
            // "d" + Enter presses the disagree button.
            let long = Duration::from_millis(config.timing.long_press_ms + 200);
            let short = Duration::from_millis((config.timing.debounce_ms * 3).max(100));
            std::thread::spawn(move || {
                for line in std::io::stdin().lines() {
                    let Ok(line) = line else { break };
                    match line.trim() {
                        "l" => handle.press_for(long),
                        "d" => disagree_handle.press_for(short),
                        _ => handle.press_for(short),
                    }
                }
            });
            eprintln!(
                "sim board: Enter = press, l + Enter = long press, d + Enter = disagree, Ctrl-C = stop"
            );
            if polarity != Polarity::default() {
                // Simulated pins have no wiring: a press reads high and a
                // lit LED is high, whatever the config says for real pins.
                eprintln!(
                    "sim board: [pins] button_active_low / leds_active_low are for real wiring \
                     and are ignored here"
                );
            }
            let pins = BoardPins {
                button,
                disagree: Some(disagree),
                leds: leds.leds(),
            };
            serve(&config, pins, Polarity::default(), &stop)
        }
        #[cfg(feature = "rpi")]
        BoardKind::Rpi => {
            let pins = config.pins.as_ref().expect("validated: rpi has pins");
            let pins = scanside_device::boards::rpi::pins(pins)
                .map_err(|e| anyhow::anyhow!("{}: {e}", config_path.display()))?;
            serve(&config, pins, polarity, &stop)
        }
        #[cfg(feature = "cdev")]
        BoardKind::Cdev => {
            let pins = config.pins.as_ref().expect("validated: cdev has pins");
            let pins = scanside_device::boards::cdev::pins(pins)
                .map_err(|e| anyhow::anyhow!("{}: {e}", config_path.display()))?;
            serve(&config, pins, polarity, &stop)
        }
        #[allow(unreachable_patterns)]
        other => anyhow::bail!(
            "{}: `board` = {other:?}, but this build has no such backend; \
             rebuild with `--features {}`",
            config_path.display(),
            format!("{other:?}").to_lowercase()
        ),
    }
}

/// Run the appliance on any board until SIGINT/SIGTERM.
fn serve<B, L, E>(
    config: &DeviceConfig,
    pins: BoardPins<B, L>,
    polarity: Polarity,
    stop: &AtomicBool,
) -> Result<ExitCode>
where
    B: InputPin<Error = E>,
    L: OutputPin<Error = E>,
    E: std::fmt::Debug,
{
    let mut systemd = Systemd::from_env();
    let mut appliance = Appliance::start(
        config,
        pins.button,
        pins.leds,
        MonotonicClock::new(),
        polarity,
    )?;
    if let Some(disagree) = pins.disagree {
        appliance.add_disagree_button(disagree);
    }
    if let Some(dicom) = &config.dicom {
        let (events, received) = std::sync::mpsc::channel();
        StorageScp::spawn(dicom, &config.inbox, events)?;
        appliance.record_events_from(received);
    }
    match appliance.fault() {
        None => systemd.ready("ready"),
        Some(reason) => systemd.ready(&format!("out of service: {reason}")),
    }
    appliance.run_until(stop, || systemd.tick())?;
    systemd.stopping();
    eprintln!("\nstopped; LEDs off, audit log flushed");
    Ok(ExitCode::SUCCESS)
}

fn print_log(path: &Path, json: bool) -> Result<ExitCode> {
    let log = read_log(path)?;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    for r in &log.records {
        if json {
            serde_json::to_writer(&mut out, &record_json(r))?;
            writeln!(out)?;
        } else {
            match &r.event {
                AuditEvent::Classified {
                    scan,
                    model,
                    probability,
                    decision,
                    latency_ms,
                } => writeln!(
                    out,
                    "{} classified scan {} with {}: {decision:?} (p = {probability:.4}, {latency_ms} ms)",
                    utc(r.unix_ms),
                    &hex::encode(scan.content_sha256)[..12],
                    model.id
                )?,
                AuditEvent::Error { kind, detail, .. } => {
                    writeln!(out, "{} error {kind:?}: {detail}", utc(r.unix_ms))?
                }
                AuditEvent::Received {
                    scan,
                    sop_instance_uid_sha256,
                    calling_ae_title,
                    refused,
                    ..
                } => {
                    let object = &hex::encode(sop_instance_uid_sha256)[..12];
                    match (scan, refused) {
                        (_, Some(reason)) => writeln!(
                            out,
                            "{} DICOM object {object} from {calling_ae_title} refused: {reason}",
                            utc(r.unix_ms)
                        )?,
                        (Some(scan), None) => writeln!(
                            out,
                            "{} DICOM object {object} from {calling_ae_title} stored as scan {}",
                            utc(r.unix_ms),
                            &hex::encode(scan.content_sha256)[..12]
                        )?,
                        (None, None) => writeln!(
                            out,
                            "{} DICOM object {object} from {calling_ae_title}",
                            utc(r.unix_ms)
                        )?,
                    }
                }
                AuditEvent::Disputed {
                    refers_to_unix_ms,
                    scan,
                    decision,
                    ..
                } => writeln!(
                    out,
                    "{} disputed: result {decision:?} of {} for scan {}",
                    utc(r.unix_ms),
                    utc(*refers_to_unix_ms),
                    &hex::encode(scan.content_sha256)[..12]
                )?,
                AuditEvent::ModelChanged { previous, current } => writeln!(
                    out,
                    "{} model changed: {} ({}) → {} ({})",
                    utc(r.unix_ms),
                    previous.id,
                    &hex::encode(previous.sha256)[..12],
                    current.id,
                    &hex::encode(current.sha256)[..12]
                )?,
                AuditEvent::OutOfScope {
                    scan,
                    model,
                    score,
                    threshold,
                    reason,
                    latency_ms,
                    ..
                } => writeln!(
                    out,
                    "{} out of scope: scan {} with {}: {reason}{} ({latency_ms} ms)",
                    utc(r.unix_ms),
                    &hex::encode(scan.content_sha256)[..12],
                    model.id,
                    score.map_or(String::new(), |s| format!(
                        " (guard score {s:.2} > {threshold:.2})"
                    )),
                )?,
            }
        }
    }
    out.flush()?;
    for p in &log.damaged {
        eprintln!(
            "{}: damaged record at byte {} ({} bytes) skipped: {}",
            path.display(),
            p.offset,
            p.len,
            p.reason
        );
    }
    if let Some(p) = &log.torn_tail {
        eprintln!(
            "{}: torn final record at byte {} ({} bytes) skipped: {}",
            path.display(),
            p.offset,
            p.len,
            p.reason
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn record_json(r: &scanside_shared::audit::AuditRecord) -> serde_json::Value {
    let mut v = serde_json::to_value(r).expect("records serialise");
    // Hashes as hex rather than arrays of numbers.
    fn hexify(v: &mut serde_json::Value) {
        match v {
            serde_json::Value::Object(m) => m.values_mut().for_each(hexify),
            serde_json::Value::Array(a)
                if a.len() == 32 && a.iter().all(|x| x.as_u64().is_some_and(|n| n < 256)) =>
            {
                let bytes: Vec<u8> = a.iter().map(|x| x.as_u64().unwrap() as u8).collect();
                *v = serde_json::Value::String(hex::encode(bytes));
            }
            serde_json::Value::Array(a) => a.iter_mut().for_each(hexify),
            _ => {}
        }
    }
    hexify(&mut v);
    v
}

#[cfg(test)]
mod tests {
    use super::Cli;
    use clap::CommandFactory;

    /// The packaged man pages (`device/man/`: the command and each
    /// subcommand) are rendered from the clap definition and must match it.
    /// Regenerate with `SCANSIDE_BLESS=1 cargo test -p scanside-device --bin scanside-device`.
    #[test]
    fn the_man_pages_are_current() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("man");
        let command = Cli::command();
        let mut pages = vec![command.clone()];
        for sub in command.get_subcommands() {
            let name = format!("scanside-device-{}", sub.get_name());
            // clap names are `&'static str`: leak the few bytes in this test.
            pages.push(
                sub.clone()
                    .name(&*name.leak())
                    .version(env!("CARGO_PKG_VERSION")),
            );
        }
        let bless = std::env::var_os("SCANSIDE_BLESS").is_some();
        for page in pages {
            let mut rendered = Vec::new();
            clap_mangen::Man::new(page.clone())
                .render(&mut rendered)
                .unwrap();
            let path = dir.join(format!("{}.1", page.get_name()));
            if bless {
                std::fs::create_dir_all(&dir).unwrap();
                std::fs::write(&path, &rendered).unwrap();
            }
            let committed = std::fs::read(&path).unwrap_or_default();
            assert!(
                committed == rendered,
                "{} is stale: run SCANSIDE_BLESS=1 cargo test -p scanside-device --bin scanside-device",
                path.display()
            );
        }
    }

    /// The packaged completion scripts (`device/completions/`) are
    /// generated from the clap definition and must match it. Regenerate
    /// with `SCANSIDE_BLESS=1 cargo test -p scanside-device --bin scanside-device`.
    #[test]
    fn the_completion_scripts_are_current() {
        use clap_complete::Shell;
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("completions");
        let bless = std::env::var_os("SCANSIDE_BLESS").is_some();
        for (shell, file) in [
            (Shell::Bash, "scanside-device.bash"),
            (Shell::Zsh, "_scanside-device"),
            (Shell::Fish, "scanside-device.fish"),
        ] {
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "scanside-device", &mut script);
            let text = String::from_utf8(script.clone()).unwrap();
            for sub in ["classify", "run", "export", "config", "completions"] {
                assert!(text.contains(sub), "{shell}: no `{sub}`");
            }
            let path = dir.join(file);
            if bless {
                std::fs::create_dir_all(&dir).unwrap();
                std::fs::write(&path, &script).unwrap();
            }
            assert!(
                std::fs::read(&path).unwrap_or_default() == script,
                "{} is stale: run SCANSIDE_BLESS=1 cargo test -p scanside-device --bin scanside-device",
                path.display()
            );
        }
    }

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }
}
