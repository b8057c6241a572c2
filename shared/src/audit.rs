//! The audit log: one record per classification or error, never lost.
//!
//! Wire format (version [`AUDIT_FORMAT_VERSION`]), one frame per record:
//!
//! ```text
//! COBS( postcard(AuditRecord) ‖ CRC-32/ISO-HDLC of those bytes, little-endian ) ‖ 0x00
//! ```
//!
//! COBS removes every zero byte from the frame body, so `0x00` only ever ends
//! a frame: after a power cut the reader finds the next record boundary no
//! matter where the last write stopped. The CRC catches a frame whose bytes
//! are wrong. [`AuditWriter::append`] writes one frame and `fdatasync`s the
//! file before it returns; [`read_log`] returns every complete record and
//! reports a torn tail or a damaged frame instead of failing.
//!
//! The log holds no patient data: a scan is identified by the SHA-256 of its
//! bytes and of its file name, never by the name itself.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// Version of the record encoding; bump on any change to how the types below
/// encode. New [`AuditEvent`] variants are only ever appended (postcard
/// numbers variants in order), so records already on a device keep their
/// bytes and stay readable.
pub const AUDIT_FORMAT_VERSION: u16 = 1;

/// The CRC used for each frame.
const CRC32: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISO_HDLC);

/// What the box decided for one scan.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Decision {
    /// Probability below the uncertain band: green.
    NoTumour,
    /// Probability within the band around the threshold: amber.
    Uncertain,
    /// Probability at or above the band: red.
    TumourSuspected,
    /// The model's guard refused the scan (not like its training slices):
    /// no answer, amber and red taking turns.
    OutOfScope,
}

/// Why a press produced no decision.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ErrorKind {
    /// The inbox held no unclassified scan.
    NoScan,
    /// The scan could not be read or decoded.
    UnreadableScan,
    /// The model failed to run.
    ModelFailure,
    /// The model file did not match its expected SHA-256.
    ModelMismatch,
}

/// A scan, identified without its name.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScanRef {
    /// SHA-256 of the file name (not the path).
    pub name_sha256: [u8; 32],
    /// SHA-256 of the file bytes.
    pub content_sha256: [u8; 32],
}

/// The model that produced a result.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelRef {
    /// The manifest's model id.
    pub id: String,
    /// SHA-256 of the model file.
    pub sha256: [u8; 32],
}

/// What happened.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum AuditEvent {
    /// A scan was classified.
    Classified {
        /// The scan.
        scan: ScanRef,
        /// The model.
        model: ModelRef,
        /// Positive-class probability.
        probability: f32,
        /// The decision shown.
        decision: Decision,
        /// Press → result time, milliseconds.
        latency_ms: u32,
    },
    /// A press ended in an error.
    Error {
        /// The scan, when one was involved.
        scan: Option<ScanRef>,
        /// The model, when one was loaded.
        model: Option<ModelRef>,
        /// The kind of error.
        kind: ErrorKind,
        /// A human-readable reason (no patient data).
        detail: String,
    },
    /// A DICOM object arrived over the network (the Storage SCP).
    Received {
        /// The file written to the inbox; `None` when the object was refused.
        scan: Option<ScanRef>,
        /// SHA-256 of the Study Instance UID (empty string when absent).
        study_uid_sha256: [u8; 32],
        /// SHA-256 of the SOP Instance UID.
        sop_instance_uid_sha256: [u8; 32],
        /// The sender's AE title (a machine's name, not patient data).
        calling_ae_title: String,
        /// Why the object was refused, when it was.
        refused: Option<String>,
    },
    /// The radiographer pressed "disagree" while a result was shown: the
    /// result of the `Classified` record written at `refers_to_unix_ms` is
    /// disputed (for review and retraining on the host).
    Disputed {
        /// `unix_ms` of the disputed `Classified` or `OutOfScope` record.
        refers_to_unix_ms: u64,
        /// Its scan.
        scan: ScanRef,
        /// Its model.
        model: ModelRef,
        /// The decision that was disputed.
        decision: Decision,
    },
    /// The running appliance took in another model (after `scanside-device
    /// model install` or `rollback`): every later decision is this model's.
    ModelChanged {
        /// The model in use until now.
        previous: ModelRef,
        /// The model in use from now on.
        current: ModelRef,
    },
    /// The model's out-of-scope guard refused a scan: no tumour / no-tumour
    /// answer was given ([`Decision::OutOfScope`] was shown).
    OutOfScope {
        /// The scan.
        scan: ScanRef,
        /// The model.
        model: ModelRef,
        /// The model's positive-class probability (not an answer).
        probability: f32,
        /// The guard's feature score; `None` when a cheap input check
        /// refused the picture.
        score: Option<f32>,
        /// The guard's threshold on the score.
        threshold: f32,
        /// Which check refused it, in words (no patient data).
        reason: String,
        /// Press → result time, milliseconds.
        latency_ms: u32,
    },
}

/// One audit record.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// [`AUDIT_FORMAT_VERSION`] at writing.
    pub format_version: u16,
    /// Milliseconds since the Unix epoch.
    pub unix_ms: u64,
    /// Version of the firmware that wrote it.
    pub firmware_version: String,
    /// What happened.
    pub event: AuditEvent,
}

/// Encode one record as a complete frame, delimiter included.
pub fn encode_frame(record: &AuditRecord) -> Vec<u8> {
    encode_framed(record)
}

/// Decode one frame body (without its delimiter).
pub fn decode_frame(frame: &[u8]) -> std::result::Result<AuditRecord, String> {
    decode_framed(frame)
}

/// The framing shared with export bundles: postcard with CRC-32, COBS,
/// then the `0x00` delimiter.
pub(crate) fn encode_framed<T: Serialize>(value: &T) -> Vec<u8> {
    let body = postcard::to_stdvec_crc32(value, CRC32.digest()).expect("frames always serialise");
    let mut frame = cobs::encode_vec(&body);
    frame.push(0);
    frame
}

/// Decode one frame made by [`encode_framed`] (without its delimiter).
pub(crate) fn decode_framed<T: serde::de::DeserializeOwned>(
    frame: &[u8],
) -> std::result::Result<T, String> {
    let body = cobs::decode_vec(frame).map_err(|e| format!("bad COBS framing: {e}"))?;
    postcard::from_bytes_crc32(&body, CRC32.digest())
        .map_err(|e| format!("bad record (CRC or encoding): {e}"))
}

/// Split framed bytes at the delimiters: every non-empty frame with its
/// offset, and an unterminated tail (a write cut short), if any.
pub(crate) fn split_frames(bytes: &[u8]) -> (Vec<(usize, &[u8])>, Option<LogProblem>) {
    let mut frames = Vec::new();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        if b == 0 {
            if i > start {
                frames.push((start, &bytes[start..i]));
            }
            start = i + 1;
        }
    }
    let torn = (start < bytes.len()).then(|| LogProblem {
        offset: start,
        len: bytes.len() - start,
        reason: "unterminated final frame (write cut short, e.g. power loss)".into(),
    });
    (frames, torn)
}

/// A problem found while reading a log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LogProblem {
    /// Byte offset of the frame.
    pub offset: usize,
    /// Length of the frame in bytes.
    pub len: usize,
    /// What is wrong.
    pub reason: String,
}

/// What [`read_log`] found.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LogContents {
    /// Every complete, valid record, in order.
    pub records: Vec<AuditRecord>,
    /// Damaged frames that were skipped.
    pub damaged: Vec<LogProblem>,
    /// An unterminated final frame (a write cut short), if any.
    pub torn_tail: Option<LogProblem>,
}

/// Parse a log's bytes: every complete record, and what was skipped.
pub fn parse_log(bytes: &[u8]) -> LogContents {
    let (frames, torn_tail) = split_frames(bytes);
    let mut out = LogContents {
        torn_tail,
        ..LogContents::default()
    };
    for (offset, frame) in frames {
        match decode_frame(frame) {
            Ok(r) => out.records.push(r),
            Err(reason) => out.damaged.push(LogProblem {
                offset,
                len: frame.len(),
                reason,
            }),
        }
    }
    out
}

/// Read and parse a log file.
pub fn read_log(path: &Path) -> Result<LogContents> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    Ok(parse_log(&bytes))
}

/// Appends records to a log file, durably.
pub struct AuditWriter {
    file: File,
    path: PathBuf,
}

impl AuditWriter {
    /// Open (or create) the log for appending. If the file ends in a torn
    /// frame, a delimiter is written first so the next record starts clean.
    pub fn open(path: &Path) -> Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        }
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| Error::io(path, e))?;
        let len = file.metadata().map_err(|e| Error::io(path, e))?.len();
        if len > 0 {
            let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
            if bytes.last() != Some(&0) {
                file.write_all(&[0])
                    .and_then(|()| file.sync_data())
                    .map_err(|e| Error::io(path, e))?;
            }
        }
        Ok(AuditWriter {
            file,
            path: path.to_path_buf(),
        })
    }

    /// Append one record and `fdatasync` before returning.
    pub fn append(&mut self, record: &AuditRecord) -> Result<()> {
        self.file
            .write_all(&encode_frame(record))
            .and_then(|()| self.file.sync_data())
            .map_err(|e| Error::io(&self.path, e))
    }
}
