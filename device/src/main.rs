//! `scanside-device`: the firmware's command line.
//!
//! `classify` prints the same result lines as the host's `scanside classify`
//! (both call `scanside_shared::classifier::classify_command`); `log` prints
//! the audit log; `run` is the appliance loop (the simulated board so far:
//! the Raspberry Pi and GPIO-character-device backends and systemd
//! notification are not built yet and say so).

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand};

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use scanside_device::appliance::Appliance;
use scanside_device::clock::MonotonicClock;
use scanside_device::config::{BoardKind, DeviceConfig};
use scanside_device::panel::Polarity;
use scanside_device::sim::{LedLog, SimButton};
use scanside_shared::audit::{AuditEvent, read_log};
use scanside_shared::classifier::classify_command;

/// scanside device firmware: brain-MRI tumour triage beside the scanner.
/// Research use only — not a medical device.
#[derive(Parser)]
#[command(version, about, long_about = None)]
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
        /// Image files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
    },
    /// Print the audit log; a torn or damaged record is reported and skipped.
    Log {
        /// The log file.
        path: PathBuf,
        /// One JSON object per record.
        #[arg(long)]
        json: bool,
    },
    /// The appliance loop: button, LEDs, inbox, audit log (board "sim" only so far).
    Run {
        /// Configuration file.
        #[arg(long, default_value = "/etc/scanside/device.toml")]
        config: PathBuf,
    },
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Classify { model, files, json } => {
            let failures = classify_command(model, &files, json)?;
            Ok(if failures == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::Log { path, json } => print_log(&path, json),
        Command::Run { config } => run_appliance(&config),
    }
}

fn run_appliance(config_path: &std::path::Path) -> Result<ExitCode> {
    let config = DeviceConfig::load(config_path)?;
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, stop.clone())?;
    }
    match config.board {
        BoardKind::Sim => {
            let (button, handle) = SimButton::new();
            let leds = LedLog::new(true);
            // Enter presses the button briefly; "l" + Enter holds it long.
            let long = Duration::from_millis(config.timing.long_press_ms + 200);
            std::thread::spawn(move || {
                for line in std::io::stdin().lines() {
                    let Ok(line) = line else { break };
                    let hold = if line.trim() == "l" {
                        long
                    } else {
                        Duration::from_millis(150)
                    };
                    handle.press_for(hold);
                }
            });
            eprintln!("sim board: Enter = press, l + Enter = long press, Ctrl-C = stop");
            let mut appliance = Appliance::start(
                &config,
                button,
                leds.leds(),
                MonotonicClock::new(),
                Polarity::default(),
            )?;
            appliance.run_until(&stop, || {})?;
            eprintln!("\nstopped; LEDs off, audit log flushed");
            Ok(ExitCode::SUCCESS)
        }
        BoardKind::Rpi | BoardKind::Cdev => anyhow::bail!(
            "{}: board {:?} is not built yet; use board = \"sim\"",
            config_path.display(),
            config.board
        ),
    }
}

fn print_log(path: &std::path::Path, json: bool) -> Result<ExitCode> {
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
                    r.unix_ms,
                    &hex::encode(scan.content_sha256)[..12],
                    model.id
                )?,
                AuditEvent::Error { kind, detail, .. } => {
                    writeln!(out, "{} error {kind:?}: {detail}", r.unix_ms)?
                }
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
