//! The appliance loop: panel + inbox + model + audit log.
//!
//! [`Appliance::start`] loads the model, checks its SHA-256 against the
//! configuration, runs one warm-up inference and opens the audit log; after
//! that a press only runs the already-optimised plan. [`Appliance::step`] is
//! one turn of the main loop: poll the panel; on a short press pick the
//! newest complete scan and classify it on a worker thread (the LEDs keep
//! blinking meanwhile); when the worker is done, show the decision, append
//! the audit record (fsynced) and move the scan out of the inbox. Every
//! outcome, including "no scan" and unreadable files, is recorded.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, TryRecvError, channel};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use embedded_hal::digital::{InputPin, OutputPin};

use scanside_shared::audit::{
    AUDIT_FORMAT_VERSION, AuditEvent, AuditRecord, AuditWriter, ErrorKind, ModelRef, ScanRef,
};
use scanside_shared::classifier::Classifier;
use scanside_shared::sha256_hex;

use crate::button::ButtonTiming;
use crate::clock::Clock;
use crate::config::DeviceConfig;
use crate::controller::{Command, ControllerConfig, Outcome};
use crate::inbox::Inbox;
use crate::panel::{Panel, Polarity};
use crate::{Error, Result, VERSION};

fn sha256(bytes: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    hex::decode_to_slice(sha256_hex(bytes), &mut out).expect("64 hex digits");
    out
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Load a model and check it: SHA-256 against `expected` (if given), then
/// one warm-up inference. Uses every core for each inference.
pub fn load_model(path: &Path, expected: Option<&str>) -> Result<Classifier> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let actual = sha256_hex(&bytes);
    if let Some(want) = expected
        && !want.eq_ignore_ascii_case(&actual)
    {
        return Err(Error::Model(format!(
            "{}: SHA-256 is {actual}, the configuration expects {want}; refusing to run it",
            path.display()
        )));
    }
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let classifier = Classifier::from_bytes(&bytes, path)?.with_threads(cores);
    let spec = &classifier.manifest().preprocessing;
    let zeros = scanside_shared::preprocess::InputTensor {
        shape: spec.input_shape(1),
        data: vec![0.0; spec.input_shape(1).iter().product()],
    };
    classifier.positive_probability(&zeros)?;
    Ok(classifier)
}

/// What the worker thread reports.
type WorkerResult = (
    PathBuf,
    std::result::Result<(ScanRef, f32), (Option<ScanRef>, ErrorKind, String)>,
);

/// The running appliance.
pub struct Appliance<B, L, C> {
    panel: Panel<B, L, C>,
    inbox: Inbox,
    audit: AuditWriter,
    classifier: Arc<Classifier>,
    model: ModelRef,
    worker: Option<(Receiver<WorkerResult>, Instant)>,
    poll: Duration,
}

impl<B, L, C, E> Appliance<B, L, C>
where
    B: InputPin<Error = E>,
    L: OutputPin<Error = E>,
    C: Clock,
    E: std::fmt::Debug,
{
    /// Start up: model, audit log, inbox, panel (idle).
    pub fn start(
        config: &DeviceConfig,
        button: B,
        leds: (L, L, L),
        clock: C,
        polarity: Polarity,
    ) -> Result<Self> {
        let classifier = load_model(&config.model, config.model_sha256.as_deref())?;
        let audit = AuditWriter::open(&config.audit_log)?;
        let inbox = Inbox::open(&config.inbox, config.timing.inbox_settle_ms)?;
        let m = classifier.manifest();
        let controller = ControllerConfig {
            threshold: m.threshold,
            uncertain_band: config.decision.uncertain_band,
            show_ms: config.timing.result_ms,
        };
        let timing = ButtonTiming {
            debounce_ms: config.timing.debounce_ms,
            long_press_ms: config.timing.long_press_ms,
        };
        let model = ModelRef {
            id: m.model_id.clone(),
            sha256: hex::decode(classifier.sha256())
                .ok()
                .and_then(|v| v.try_into().ok())
                .unwrap_or([0; 32]),
        };
        let mut panel = Panel::new(button, leds, clock, polarity, timing, controller);
        panel.poll().map_err(gpio)?;
        eprintln!(
            "scanside-device {VERSION}: model {} ({}) ready; inbox {}; audit log {}",
            m.model_id,
            config.model.display(),
            config.inbox.display(),
            config.audit_log.display()
        );
        Ok(Appliance {
            panel,
            inbox,
            audit,
            classifier: Arc::new(classifier),
            model,
            worker: None,
            poll: Duration::from_millis(config.timing.poll_ms),
        })
    }

    fn record(&mut self, event: AuditEvent) -> Result<()> {
        self.audit.append(&AuditRecord {
            format_version: AUDIT_FORMAT_VERSION,
            unix_ms: unix_ms(),
            firmware_version: VERSION.into(),
            event,
        })?;
        Ok(())
    }

    fn start_job(&mut self) -> Result<()> {
        let Some(scan) = self.inbox.newest_ready(SystemTime::now())? else {
            eprintln!("press: no complete scan in {}", self.inbox.dir().display());
            self.panel
                .finish(&Outcome::Failed(ErrorKind::NoScan))
                .map_err(gpio)?;
            return self.record(AuditEvent::Error {
                scan: None,
                model: Some(self.model.clone()),
                kind: ErrorKind::NoScan,
                detail: "no complete scan in the inbox".into(),
            });
        };
        let (tx, rx) = channel();
        let classifier = self.classifier.clone();
        std::thread::spawn(move || {
            let result = classify(&classifier, &scan);
            let _ = tx.send((scan, result));
        });
        self.worker = Some((rx, Instant::now()));
        Ok(())
    }

    fn finish_job(&mut self, (scan, result): WorkerResult, started: Instant) -> Result<()> {
        let latency_ms = started.elapsed().as_millis() as u32;
        match result {
            Ok((scan_ref, probability)) => {
                let decision = self
                    .panel
                    .finish(&Outcome::Classified { probability })
                    .map_err(gpio)?
                    .expect("a probability always gives a decision");
                self.record(AuditEvent::Classified {
                    scan: scan_ref,
                    model: self.model.clone(),
                    probability,
                    decision,
                    latency_ms,
                })?;
                let moved = self.inbox.mark_processed(&scan)?;
                eprintln!(
                    "classified {}: {decision:?} (p = {probability:.4}, {latency_ms} ms) → {}",
                    scan.display(),
                    moved.display()
                );
            }
            Err((scan_ref, kind, detail)) => {
                self.panel.finish(&Outcome::Failed(kind)).map_err(gpio)?;
                eprintln!("{}: {kind:?}: {detail}", scan.display());
                self.record(AuditEvent::Error {
                    scan: scan_ref,
                    model: Some(self.model.clone()),
                    kind,
                    detail: detail.clone(),
                })?;
                if kind == ErrorKind::UnreadableScan {
                    // Out of the way, kept: the next press must not pick it again.
                    self.inbox.mark_rejected(&scan)?;
                }
            }
        }
        Ok(())
    }

    /// One turn of the main loop (does not sleep).
    pub fn step(&mut self) -> Result<()> {
        if let Some(Command::ClassifyNewest) = self.panel.poll().map_err(gpio)? {
            self.start_job()?;
        }
        if let Some((rx, started)) = &self.worker {
            let started = *started;
            match rx.try_recv() {
                Ok(done) => {
                    self.worker = None;
                    self.finish_job(done, started)?;
                }
                Err(TryRecvError::Empty) => {}
                Err(TryRecvError::Disconnected) => {
                    self.worker = None;
                    self.panel
                        .finish(&Outcome::Failed(ErrorKind::ModelFailure))
                        .map_err(gpio)?;
                    self.record(AuditEvent::Error {
                        scan: None,
                        model: Some(self.model.clone()),
                        kind: ErrorKind::ModelFailure,
                        detail: "classification worker died".into(),
                    })?;
                }
            }
        }
        Ok(())
    }

    /// Loop until `stop` is set (by SIGINT/SIGTERM), calling `tick` once per
    /// turn (the systemd watchdog); then LEDs off. Waits for a running
    /// classification so its record is not lost.
    pub fn run_until(&mut self, stop: &AtomicBool, mut tick: impl FnMut()) -> Result<()> {
        while !stop.load(Ordering::SeqCst) || self.worker.is_some() {
            self.step()?;
            tick();
            std::thread::sleep(self.poll);
        }
        self.panel.dark().map_err(gpio)?;
        Ok(())
    }

    /// The panel's state machine state.
    pub fn state(&self) -> crate::controller::State {
        self.panel.state()
    }
}

fn gpio(e: impl std::fmt::Debug) -> Error {
    Error::Gpio(format!("{e:?}"))
}

/// Read, hash and classify one scan.
fn classify(
    classifier: &Classifier,
    scan: &Path,
) -> std::result::Result<(ScanRef, f32), (Option<ScanRef>, ErrorKind, String)> {
    let bytes =
        std::fs::read(scan).map_err(|e| (None, ErrorKind::UnreadableScan, e.to_string()))?;
    let name = scan
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let scan_ref = ScanRef {
        name_sha256: sha256(name.as_bytes()),
        content_sha256: sha256(&bytes),
    };
    match classifier.classify_bytes(&bytes, scan) {
        Ok(c) => Ok((scan_ref, c.probability)),
        Err(e @ scanside_shared::Error::Inference(_)) => {
            Err((Some(scan_ref), ErrorKind::ModelFailure, e.to_string()))
        }
        Err(e) => Err((Some(scan_ref), ErrorKind::UnreadableScan, e.to_string())),
    }
}
