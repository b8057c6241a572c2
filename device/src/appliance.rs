//! The appliance loop: panel + inbox + model + audit log.
//!
//! [`Appliance::start`] opens the audit log and the inbox, loads the model,
//! checks its SHA-256 against the configuration and runs one warm-up
//! inference; after that a press only runs the already-optimised plan. A
//! refused model puts the panel out of service (red blinking, presses
//! ignored) with the reason in the log and the audit log, rather than
//! exiting: the box says it is broken instead of going dark. [`Appliance::step`] is
//! one turn of the main loop: poll the panel; on a short press pick the
//! newest complete scan and hand it to the [`Worker`] thread (the LEDs keep
//! blinking meanwhile); when the worker is done, show the decision, append
//! the audit record (fsynced) and move the scan out of the inbox. Every
//! outcome, including "no scan" and unreadable files, is recorded.
//!
//! Log lines name a scan by a hash of its file name ([`scan_label`]), as
//! the audit log does: scanner exports often put patient names in file
//! names.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use embedded_hal::digital::{InputPin, OutputPin};

use scanside_shared::audit::{
    AUDIT_FORMAT_VERSION, AuditEvent, AuditRecord, AuditWriter, Decision, ErrorKind, ModelRef,
    ScanRef,
};
use scanside_shared::sha256_hex;

use crate::button::ButtonTiming;
use crate::clock::Clock;
use crate::config::DeviceConfig;
use crate::controller::{Command, ControllerConfig, Outcome};
use crate::inbox::Inbox;
use crate::panel::{Panel, Polarity};
use crate::worker::{LoadedModel, ScanOutcome, Worker, WorkerPoll};
use crate::{Error, Result, VERSION};

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// How a log line names a scan: `scan ` and the first 12 hex digits of
/// the SHA-256 of its file name (the audit log's `name_sha256`).
pub fn scan_label(path: &Path) -> String {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    format!("scan {}", &sha256_hex(name.as_bytes())[..12])
}

/// The running appliance.
pub struct Appliance<B, L, C> {
    panel: Panel<B, L, C>,
    inbox: Inbox,
    audit: AuditWriter,
    /// The worker with the verified model, or why the model was refused
    /// (out of service).
    model: std::result::Result<(Worker, ModelRef), String>,
    /// When the scan being classified was handed to the worker.
    busy_since: Option<Instant>,
    poll: Duration,
    /// Audit events from other threads (the DICOM storage node).
    events: Option<Receiver<AuditEvent>>,
    /// The last `Classified` record: its time, scan, model and decision
    /// (what a "disagree" press disputes).
    last_result: Option<(u64, ScanRef, ModelRef, Decision)>,
}

impl<B, L, C, E> Appliance<B, L, C>
where
    B: InputPin<Error = E>,
    L: OutputPin<Error = E>,
    C: Clock,
    E: std::fmt::Debug,
{
    /// Start up: panel, audit log, inbox, then the model. A wrong or
    /// unreadable model does not fail here: the appliance starts out of
    /// service ([`Appliance::fault`] says why). Errors are for what makes
    /// the box unable to record anything (audit log, inbox).
    pub fn start(
        config: &DeviceConfig,
        button: B,
        leds: (L, L, L),
        clock: C,
        polarity: Polarity,
    ) -> Result<Self> {
        let timing = ButtonTiming {
            debounce_ms: config.timing.debounce_ms,
            long_press_ms: config.timing.long_press_ms,
        };
        let audit = AuditWriter::open(&config.audit_log)?;
        let inbox = Inbox::open(&config.inbox, config.timing.inbox_settle_ms)?;
        let loaded = Worker::start(
            &config.model,
            config.model_sha256.as_deref(),
            config.archive.as_ref(),
        );
        // The threshold comes from the model; a refused model never decides.
        let threshold = loaded.as_ref().map_or(0.5, |(_, m)| m.manifest.threshold);
        let controller = ControllerConfig {
            threshold,
            uncertain_log_odds: config.decision.uncertain_log_odds,
            show_ms: config.timing.result_ms,
        };
        let mut panel = Panel::new(button, leds, clock, polarity, timing, controller);
        let model = match loaded {
            Ok((worker, loaded)) => {
                panel.poll().map_err(gpio)?;
                let m = &loaded.manifest;
                eprintln!(
                    "scanside-device {VERSION}: model {} ({}) ready; inbox {} ({}); audit log {}",
                    m.model_id,
                    config.model.display(),
                    config.inbox.display(),
                    if inbox.is_watched() {
                        "watched"
                    } else {
                        "not watched: settle time only"
                    },
                    config.audit_log.display()
                );
                Ok((worker, loaded.model))
            }
            Err(e) => {
                let reason = e.to_string();
                eprintln!("error: out of service: {reason}");
                panel.fault(ErrorKind::ModelFailure).map_err(gpio)?;
                Err(reason)
            }
        };
        let mut appliance = Appliance {
            panel,
            inbox,
            audit,
            model,
            busy_since: None,
            poll: Duration::from_millis(config.timing.poll_ms),
            events: None,
            last_result: None,
        };
        if let Err(reason) = &appliance.model {
            let detail = reason.clone();
            appliance.record(AuditEvent::Error {
                scan: None,
                model: None,
                kind: ErrorKind::ModelFailure,
                detail,
            })?;
        }
        Ok(appliance)
    }

    /// Why the appliance is out of service, if it is.
    pub fn fault(&self) -> Option<&str> {
        self.model.as_ref().err().map(String::as_str)
    }

    fn model_ref(&self) -> Option<ModelRef> {
        self.model.as_ref().ok().map(|(_, m)| m.clone())
    }

    /// Add the "disagree" button (same polarity and timing as the main
    /// one): pressed while a result is shown, it records a `Disputed`
    /// audit record referring to that result.
    pub fn add_disagree_button(&mut self, pin: B) {
        self.panel.add_disagree_button(pin);
    }

    /// Append `event` (fsynced); returns the record's `unix_ms`.
    fn record(&mut self, event: AuditEvent) -> Result<u64> {
        let at = unix_ms();
        self.audit.append(&AuditRecord {
            format_version: AUDIT_FORMAT_VERSION,
            unix_ms: at,
            firmware_version: VERSION.into(),
            event,
        })?;
        Ok(at)
    }

    /// The radiographer disputes the result being shown: record it.
    fn dispute(&mut self) -> Result<()> {
        let Some((refers_to_unix_ms, scan, model, decision)) = self.last_result.clone() else {
            return Ok(());
        };
        self.record(AuditEvent::Disputed {
            refers_to_unix_ms,
            scan: scan.clone(),
            model,
            decision,
        })?;
        eprintln!(
            "disagree: result {decision:?} of scan {} ({refers_to_unix_ms}) disputed",
            &hex::encode(scan.content_sha256)[..12]
        );
        Ok(())
    }

    fn start_job(&mut self) -> Result<()> {
        if self.model.is_err() {
            // Out of service: the panel ignores presses, so this is not reached.
            return Ok(());
        }
        let Some(scan) = self.inbox.newest_ready(SystemTime::now())? else {
            eprintln!("press: no complete scan in {}", self.inbox.dir().display());
            self.panel
                .finish(&Outcome::Failed(ErrorKind::NoScan))
                .map_err(gpio)?;
            self.record(AuditEvent::Error {
                scan: None,
                model: self.model_ref(),
                kind: ErrorKind::NoScan,
                detail: "no complete scan in the inbox".into(),
            })?;
            return Ok(());
        };
        eprintln!("press: classifying {}", scan_label(&scan));
        let submitted = matches!(&self.model, Ok((worker, _)) if worker.submit(scan));
        if submitted {
            self.busy_since = Some(Instant::now());
            Ok(())
        } else {
            self.worker_died()
        }
    }

    /// The worker thread is gone: out of service, recorded.
    fn worker_died(&mut self) -> Result<()> {
        self.busy_since = None;
        let model = self.model_ref();
        let detail = "the classifier thread died; restart the service".to_string();
        eprintln!("error: out of service: {detail}");
        self.model = Err(detail.clone());
        self.panel.fault(ErrorKind::ModelFailure).map_err(gpio)?;
        self.record(AuditEvent::Error {
            scan: None,
            model,
            kind: ErrorKind::ModelFailure,
            detail,
        })?;
        Ok(())
    }

    fn finish_job(&mut self, scan: PathBuf, result: ScanOutcome, started: Instant) -> Result<()> {
        let latency_ms = started.elapsed().as_millis() as u32;
        match result {
            Ok((scan_ref, c)) => {
                let probability = c.probability;
                let outcome = match c.out_of_scope() {
                    true => Outcome::OutOfScope,
                    false => Outcome::Classified { probability },
                };
                let decision = self
                    .panel
                    .finish(&outcome)
                    .map_err(gpio)?
                    .expect("a classification always gives a decision");
                let model = self.model_ref().expect("only a loaded model classifies");
                let event = match &c.scope {
                    Some(s) if !s.in_scope => AuditEvent::OutOfScope {
                        scan: scan_ref.clone(),
                        model: model.clone(),
                        probability,
                        score: s.score,
                        threshold: s.threshold,
                        reason: s.reason.as_ref().map_or(String::new(), ToString::to_string),
                        latency_ms,
                    },
                    _ => AuditEvent::Classified {
                        scan: scan_ref.clone(),
                        model: model.clone(),
                        probability,
                        decision,
                        latency_ms,
                    },
                };
                let at = self.record(event)?;
                self.last_result = Some((at, scan_ref, model, decision));
                let moved = self.inbox.mark_processed(&scan)?;
                eprintln!(
                    "classified {}: {decision:?} (p = {probability:.4}, {latency_ms} ms), moved to {}/",
                    scan_label(&scan),
                    moved.parent().unwrap_or(Path::new("")).display()
                );
            }
            Err((scan_ref, kind, detail)) => {
                self.panel.finish(&Outcome::Failed(kind)).map_err(gpio)?;
                // The detail may quote the path: log the label only.
                eprintln!("{}: {kind:?}", scan_label(&scan));
                self.record(AuditEvent::Error {
                    scan: scan_ref,
                    model: self.model_ref(),
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
        self.record_events()?;
        if self.inbox.is_watched() {
            let arrived = self.inbox.refresh();
            if arrived > 0 {
                eprintln!("inbox: {arrived} scan(s) arrived");
            }
        }
        match self.panel.poll().map_err(gpio)? {
            Some(Command::ClassifyNewest) => self.start_job()?,
            Some(Command::Dispute) => self.dispute()?,
            None => {}
        }
        if let Ok((worker, _)) = &self.model {
            match worker.poll() {
                WorkerPoll::Done(scan, outcome) => {
                    let started = self.busy_since.take().unwrap_or_else(Instant::now);
                    self.finish_job(scan, outcome, started)?;
                }
                WorkerPoll::ModelChanged(loaded) => self.model_changed(*loaded)?,
                WorkerPoll::ModelRefused(reason) => {
                    let detail = format!(
                        "a new model file was refused; still serving the previous model: {reason}"
                    );
                    eprintln!("error: {detail}");
                    self.record(AuditEvent::Error {
                        scan: None,
                        model: self.model_ref(),
                        kind: ErrorKind::ModelFailure,
                        detail,
                    })?;
                }
                WorkerPoll::Pending => {}
                WorkerPoll::Died => self.worker_died()?,
            }
        }
        Ok(())
    }

    /// The worker switched to a new model: decide with its threshold and
    /// record the change before any of its decisions.
    fn model_changed(&mut self, loaded: LoadedModel) -> Result<()> {
        let Ok((_, current)) = &mut self.model else {
            return Ok(());
        };
        let previous = std::mem::replace(current, loaded.model.clone());
        self.panel.set_threshold(loaded.manifest.threshold);
        eprintln!(
            "model changed: {} → {} (threshold {:.4})",
            previous.id, loaded.model.id, loaded.manifest.threshold
        );
        self.record(AuditEvent::ModelChanged {
            previous,
            current: loaded.model,
        })?;
        Ok(())
    }

    /// Loop until `stop` is set (by SIGINT/SIGTERM), calling `tick` once per
    /// turn (the systemd watchdog); then LEDs off. Waits for a running
    /// classification so its record is not lost.
    pub fn run_until(&mut self, stop: &AtomicBool, mut tick: impl FnMut()) -> Result<()> {
        while !stop.load(Ordering::SeqCst) || self.busy_since.is_some() {
            self.step()?;
            tick();
            std::thread::sleep(self.poll);
        }
        self.record_events()?;
        self.panel.dark().map_err(gpio)?;
        Ok(())
    }

    /// Record, in this loop (the audit log's one writer), the events other
    /// threads send on `events`: the DICOM storage node's receipts.
    pub fn record_events_from(&mut self, events: Receiver<AuditEvent>) {
        self.events = Some(events);
    }

    fn record_events(&mut self) -> Result<()> {
        let pending: Vec<AuditEvent> = match &self.events {
            Some(events) => events.try_iter().collect(),
            None => return Ok(()),
        };
        for event in pending {
            self.record(event)?;
        }
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
