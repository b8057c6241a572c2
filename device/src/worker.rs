//! The classification worker: one long-lived thread that owns the model.
//!
//! The worker loads and verifies the model (SHA-256, then one warm-up
//! inference) on its own thread, so the thread that classifies every scan
//! is the one whose buffers are already warm, and the main loop never
//! blocks on inference: it hands over a scan path and polls for the
//! answer while the LEDs keep blinking. One thread for the whole run (not
//! one per press) also keeps memory flat: every new thread would bring its
//! own allocator arena and tract scratch space.
//!
//! Between scans, and at least every [`MODEL_CHECK_INTERVAL`], the worker
//! looks at the model path: when it names another file (`scanside-device
//! model install` or `rollback` swapped the link, or the file was
//! replaced), it loads and checks that one the same way and switches to it
//! only if it passes; either way the main loop hears of it
//! ([`WorkerPoll::ModelChanged`], [`WorkerPoll::ModelRefused`]).

use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, TryRecvError, channel};
use std::time::Duration;

use scanside_shared::audit::{ErrorKind, ModelRef, ScanRef};
use scanside_shared::classifier::{Classification, Classifier};
use scanside_shared::explain::png_bytes;
use scanside_shared::manifest::ModelManifest;
use scanside_shared::{sha256, sha256_hex};

use crate::archive::Archive;
use crate::config::ArchiveConfig;
use crate::{Error, Result};

/// A scan's outcome: its reference and classification (with the guard's
/// verdict), or what went wrong (with the reference when the file could be
/// read).
pub type ScanOutcome =
    std::result::Result<(ScanRef, Classification), (Option<ScanRef>, ErrorKind, String)>;

/// What [`Worker::poll`] finds.
#[derive(Debug)]
pub enum WorkerPoll {
    /// Still working (or idle).
    Pending,
    /// A scan is done.
    Done(PathBuf, ScanOutcome),
    /// The model file changed and the new one passed its checks: every
    /// later scan is classified by it.
    ModelChanged(Box<LoadedModel>),
    /// The model file changed but the new one failed its checks (the
    /// reason); the worker goes on with the model it had.
    ModelRefused(String),
    /// The thread is gone (it panicked): no more classifications.
    Died,
}

/// The model's identity, as loaded and verified by the worker.
#[derive(Clone, Debug)]
pub struct LoadedModel {
    /// The model's manifest (threshold, id, preprocessing).
    pub manifest: ModelManifest,
    /// How audit records name it (id and SHA-256 of the file).
    pub model: ModelRef,
}

/// How often an idle worker looks for a new model file.
pub const MODEL_CHECK_INTERVAL: Duration = Duration::from_secs(2);

/// Handle to the worker thread; dropping it ends the thread.
#[derive(Debug)]
pub struct Worker {
    jobs: Sender<PathBuf>,
    done: Receiver<WorkerPoll>,
}

/// Which file a path names now (following links), and its size and
/// modification time: a change means another model.
fn file_identity(path: &Path) -> Option<(PathBuf, u64, u64, std::time::SystemTime)> {
    use std::os::unix::fs::MetadataExt;
    let target = std::fs::canonicalize(path).ok()?;
    let meta = std::fs::metadata(&target).ok()?;
    Some((target, meta.ino(), meta.len(), meta.modified().ok()?))
}

fn loaded_model(c: &Classifier) -> LoadedModel {
    let mut sha256 = [0u8; 32];
    hex::decode_to_slice(c.sha256(), &mut sha256).expect("64 hex digits");
    LoadedModel {
        manifest: c.manifest().clone(),
        model: ModelRef {
            id: c.manifest().model_id.clone(),
            sha256,
        },
    }
}

/// Load a model and check it: SHA-256 against `expected` (if given), then
/// one warm-up inference whose probability must be a number in [0, 1].
/// Uses every core for each inference. With
/// `explaining`, the classifier can also draw Grad-CAM maps (the model
/// must have a scanside dense head).
pub fn load_model(path: &Path, expected: Option<&str>, explaining: bool) -> Result<Classifier> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    load_model_bytes(&bytes, path, expected, explaining)
}

/// [`load_model`] on bytes already read (`path` names them in errors), so
/// a caller can check exactly the bytes it then stores.
pub fn load_model_bytes(
    bytes: &[u8],
    path: &Path,
    expected: Option<&str>,
    explaining: bool,
) -> Result<Classifier> {
    let actual = sha256_hex(bytes);
    if let Some(want) = expected
        && !want.eq_ignore_ascii_case(&actual)
    {
        return Err(Error::Model(format!(
            "{}: SHA-256 is {actual}, the configuration expects {want}; refusing to run it",
            path.display()
        )));
    }
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let classifier = if explaining {
        Classifier::from_bytes_explaining(bytes, path)?
    } else {
        Classifier::from_bytes(bytes, path)?
    }
    .with_threads(cores);
    let spec = &classifier.manifest().preprocessing;
    let zeros = scanside_shared::preprocess::InputTensor {
        shape: spec.input_shape(1),
        data: vec![0.0; spec.input_shape(1).iter().product()],
    };
    let p = classifier.positive_probability(&zeros)?;
    if !(0.0..=1.0).contains(&p) {
        return Err(Error::Model(format!(
            "{}: the test inference gave a probability of {p}, not one in [0, 1]",
            path.display()
        )));
    }
    Ok(classifier)
}

/// [`load_model`] for the model the appliance serves: first refuse it if
/// anyone but its owner could change it ([`crate::access`]).
pub fn load_served_model(
    path: &Path,
    expected: Option<&str>,
    explaining: bool,
) -> Result<Classifier> {
    if let Some(reason) = crate::access::check_model(path) {
        return Err(Error::Model(format!("refused: {reason}")));
    }
    load_model(path, expected, explaining)
}

impl Worker {
    /// Start the thread and wait until it has loaded and verified the
    /// model at `path` (see [`load_served_model`]). With `archive`, every
    /// classified scan is also kept there (see [`crate::archive`]).
    pub fn start(
        path: &Path,
        expected: Option<&str>,
        archive: Option<&ArchiveConfig>,
    ) -> Result<(Worker, LoadedModel)> {
        let archive = archive.map(Archive::open).transpose()?;
        let explaining = archive.as_ref().is_some_and(Archive::wants_overlays);
        let (jobs, job_rx) = channel::<PathBuf>();
        let (done_tx, done) = channel();
        let (ready_tx, ready) = channel();
        let (path, expected) = (path.to_path_buf(), expected.map(str::to_owned));
        std::thread::Builder::new()
            .name("classifier".into())
            .spawn(move || {
                let mut identity = file_identity(&path);
                let mut classifier = match load_served_model(&path, expected.as_deref(), explaining)
                {
                    Ok(c) => {
                        let _ = ready_tx.send(Ok(loaded_model(&c)));
                        c
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                loop {
                    let job = match job_rx.recv_timeout(MODEL_CHECK_INTERVAL) {
                        Ok(scan) => Some(scan),
                        Err(RecvTimeoutError::Timeout) => None,
                        Err(RecvTimeoutError::Disconnected) => break,
                    };
                    let now = file_identity(&path);
                    // A missing file is a swap in progress: keep the model.
                    if now.is_some() && now != identity {
                        identity = now;
                        let event = match load_served_model(&path, expected.as_deref(), explaining)
                        {
                            Ok(c) => {
                                classifier = c;
                                WorkerPoll::ModelChanged(Box::new(loaded_model(&classifier)))
                            }
                            Err(e) => WorkerPoll::ModelRefused(e.to_string()),
                        };
                        if done_tx.send(event).is_err() {
                            break;
                        }
                    }
                    if let Some(scan) = job {
                        let outcome = classify(&classifier, &scan, archive.as_ref());
                        if done_tx.send(WorkerPoll::Done(scan, outcome)).is_err() {
                            break;
                        }
                    }
                }
            })
            .map_err(|e| Error::Model(format!("cannot start the classifier thread: {e}")))?;
        let loaded = ready
            .recv()
            .map_err(|_| Error::Model("the classifier thread died while loading".into()))??;
        Ok((Worker { jobs, done }, loaded))
    }

    /// Hand over a scan; `false` if the thread is gone.
    pub fn submit(&self, scan: PathBuf) -> bool {
        self.jobs.send(scan).is_ok()
    }

    /// Whether a scan is done or the model changed, without waiting.
    pub fn poll(&self) -> WorkerPoll {
        match self.done.try_recv() {
            Ok(event) => event,
            Err(TryRecvError::Empty) => WorkerPoll::Pending,
            Err(TryRecvError::Disconnected) => WorkerPoll::Died,
        }
    }
}

/// Read, hash and classify one scan; keep it (and its overlay) in the
/// archive if there is one. A scan the archive cannot take is still
/// classified: the problem goes to the journal.
fn classify(classifier: &Classifier, scan: &Path, archive: Option<&Archive>) -> ScanOutcome {
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
    let (result, overlay) = if classifier.can_explain() {
        match classifier.explain_bytes(&bytes, scan) {
            Ok(x) => {
                let png = png_bytes(&x.overlay(classifier.manifest().threshold));
                (Ok(x.classification), Some(png))
            }
            Err(e) => (Err(e), None),
        }
    } else {
        (classifier.classify_bytes(&bytes, scan), None)
    };
    if let (Ok(_), Some(archive)) = (&result, archive)
        && let Err(e) = archive.store(&scan_ref.content_sha256, scan, &bytes, overlay.as_deref())
    {
        eprintln!("archive: {e}");
    }
    match result {
        Ok(c) => Ok((scan_ref, c)),
        Err(e @ scanside_shared::Error::Inference(_)) => {
            Err((Some(scan_ref), ErrorKind::ModelFailure, e.to_string()))
        }
        Err(e) => Err((Some(scan_ref), ErrorKind::UnreadableScan, e.to_string())),
    }
}
