//! The review queue: scans a box saw, waiting for a person's label.
//!
//! `scanside import` ([`import_bundle`]) reads a device's export bundle
//! and puts each archived scan into `DATASET/review/` as
//! `<sha256>.<ext>` with a sidecar `<sha256>.json` ([`QueueItem`]): what
//! the device decided, with which model, and whether the radiographer
//! disputed it. Nothing goes into the labelled class folders at import;
//! importing the same bundle again adds nothing.
//!
//! `scanside review` ([`review`]) asks for a label per unlabelled scan,
//! disputed ones first: `y` (positive class), `n` (negative), `s` (skip),
//! `q` (stop). Each answer is saved at once (the sidecar is rewritten
//! atomically, and a labelled scan is copied into its class folder as
//! `<sha256>.<ext>`), so stopping halfway loses nothing.

use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use scanside_shared::audit::{AuditEvent, Decision};
use scanside_shared::bundle::{BundleEntry, parse_bundle};

use crate::backbone::write_atomically;
use crate::{Error, Result};

/// Folder of the review queue inside a dataset.
pub const REVIEW_DIR: &str = "review";

/// A queued scan's sidecar (`<sha256>.json`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct QueueItem {
    /// SHA-256 of the scan (hex).
    pub content_sha256: String,
    /// The scan's file in the queue.
    pub file: String,
    /// The device's last decision for it, if a record says.
    pub device_decision: Option<Decision>,
    /// The device's tumour probability.
    pub device_probability: Option<f32>,
    /// The model that decided.
    pub device_model_id: Option<String>,
    /// When (ms since 1970).
    pub classified_unix_ms: Option<u64>,
    /// The radiographer pressed "disagree" on it.
    pub disputed: bool,
    /// SHA-256 of the bundle it came from.
    pub bundle_sha256: String,
    /// The label a reviewer gave (a class folder name), once given.
    pub label: Option<String>,
}

/// What an import did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ImportSummary {
    /// Scans newly queued.
    pub queued: usize,
    /// Scans already in the queue (same content), left as they were.
    pub already_queued: usize,
    /// Of the new ones, disputed on the device.
    pub disputed: usize,
    /// Audit records read.
    pub records: usize,
    /// Damaged entries skipped (and scans that do not match their hash).
    pub damaged: usize,
    /// Listed entries not found intact.
    pub missing: usize,
}

fn sidecar(dir: &Path, sha: &str) -> PathBuf {
    dir.join(format!("{sha}.json"))
}

fn read_item(path: &Path) -> Result<QueueItem> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    serde_json::from_slice(&bytes).map_err(|e| Error::Dataset {
        path: path.to_path_buf(),
        reason: format!("not a review sidecar: {e}"),
    })
}

fn write_item(path: &Path, item: &QueueItem) -> Result<()> {
    write_atomically(
        path,
        &serde_json::to_vec_pretty(item).expect("sidecars serialise"),
    )
}

/// Import the bundle at `bundle` into `dataset`'s review queue.
pub fn import_bundle(bundle: &Path, dataset: &Path) -> Result<ImportSummary> {
    let bytes = std::fs::read(bundle).map_err(|e| Error::io(bundle, e))?;
    let read = parse_bundle(&bytes);
    if read.manifest.is_none() && read.entries.is_empty() {
        return Err(Error::Dataset {
            path: bundle.to_path_buf(),
            reason: "not a scanside bundle (no manifest and no readable entry)".into(),
        });
    }
    for p in &read.damaged {
        eprintln!(
            "{}: entry at byte {} skipped: {}",
            bundle.display(),
            p.offset,
            p.reason
        );
    }
    let bundle_sha256 = scanside_shared::sha256_hex(&bytes);
    let mut summary = ImportSummary {
        damaged: read.damaged.len(),
        missing: read.missing,
        ..ImportSummary::default()
    };
    // What the records say about each scan: the last decision, disputes.
    let mut decided: BTreeMap<[u8; 32], (Decision, f32, String, u64)> = BTreeMap::new();
    let mut disputed: Vec<[u8; 32]> = Vec::new();
    for e in &read.entries {
        if let BundleEntry::Record(r) = e {
            summary.records += 1;
            match &r.event {
                AuditEvent::Classified {
                    scan,
                    model,
                    probability,
                    decision,
                    ..
                } => {
                    decided.insert(
                        scan.content_sha256,
                        (*decision, *probability, model.id.clone(), r.unix_ms),
                    );
                }
                AuditEvent::OutOfScope {
                    scan,
                    model,
                    probability,
                    ..
                } => {
                    decided.insert(
                        scan.content_sha256,
                        (
                            Decision::OutOfScope,
                            *probability,
                            model.id.clone(),
                            r.unix_ms,
                        ),
                    );
                }
                AuditEvent::Disputed { scan, .. } => disputed.push(scan.content_sha256),
                _ => {}
            }
        }
    }
    let dir = dataset.join(REVIEW_DIR);
    std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    for e in &read.entries {
        let BundleEntry::Scan {
            content_sha256,
            extension,
            bytes: scan,
        } = e
        else {
            continue;
        };
        if scanside_shared::sha256(scan) != *content_sha256 {
            eprintln!(
                "{}: a scan does not match its hash; skipped",
                bundle.display()
            );
            summary.damaged += 1;
            continue;
        }
        let sha = hex::encode(content_sha256);
        let ext: String = extension
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .take(5)
            .collect();
        let file = format!("{sha}.{}", if ext.is_empty() { "scan" } else { &ext });
        let meta = sidecar(&dir, &sha);
        if meta.exists() {
            summary.already_queued += 1;
            continue;
        }
        write_atomically(&dir.join(&file), scan)?;
        let d = decided.get(content_sha256);
        let is_disputed = disputed.contains(content_sha256);
        write_item(
            &meta,
            &QueueItem {
                content_sha256: sha,
                file,
                device_decision: d.map(|d| d.0),
                device_probability: d.map(|d| d.1),
                device_model_id: d.map(|d| d.2.clone()),
                classified_unix_ms: d.map(|d| d.3),
                disputed: is_disputed,
                bundle_sha256: bundle_sha256.clone(),
                label: None,
            },
        )?;
        summary.queued += 1;
        summary.disputed += usize::from(is_disputed);
    }
    Ok(summary)
}

/// Every queued item of `dataset` with its sidecar path: disputed first,
/// then oldest first.
pub fn queue(dataset: &Path) -> Result<Vec<(PathBuf, QueueItem)>> {
    let dir = dataset.join(REVIEW_DIR);
    let listing = match std::fs::read_dir(&dir) {
        Ok(l) => l,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(&dir, e)),
    };
    let mut items = Vec::new();
    for entry in listing.flatten() {
        let path = entry.path();
        if path.extension().is_some_and(|e| e == "json") {
            let item = read_item(&path)?;
            items.push((path, item));
        }
    }
    items.sort_by(|a, b| {
        (!a.1.disputed, a.1.classified_unix_ms, &a.1.content_sha256).cmp(&(
            !b.1.disputed,
            b.1.classified_unix_ms,
            &b.1.content_sha256,
        ))
    });
    Ok(items)
}

/// What a review session did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ReviewSummary {
    /// Labels given in this session.
    pub labelled: usize,
    /// Scans skipped.
    pub skipped: usize,
    /// Unlabelled scans left in the queue.
    pub left: usize,
}

/// Ask for a label for every unlabelled queued scan of `dataset`, reading
/// answers from `answers` and writing prompts to `prompts`; `open` is
/// called with each scan's path before its question (e.g. to show it in
/// an image viewer). `positive` and `negative` are the class folders.
pub fn review(
    dataset: &Path,
    positive: &str,
    negative: &str,
    answers: &mut dyn BufRead,
    prompts: &mut dyn Write,
    open: &mut dyn FnMut(&Path),
) -> Result<ReviewSummary> {
    let io = |e| Error::io("<terminal>", e);
    let dir = dataset.join(REVIEW_DIR);
    let pending: Vec<(PathBuf, QueueItem)> = queue(dataset)?
        .into_iter()
        .filter(|(_, i)| i.label.is_none())
        .collect();
    let total = pending.len();
    let mut summary = ReviewSummary {
        left: total,
        ..ReviewSummary::default()
    };
    'items: for (n, (meta, mut item)) in pending.into_iter().enumerate() {
        let scan = dir.join(&item.file);
        open(&scan);
        let device = match (item.device_decision, item.device_probability) {
            (Some(d), Some(p)) => format!("device said {d:?} (p = {p:.3})"),
            _ => "no device decision recorded".into(),
        };
        loop {
            write!(
                prompts,
                "[{}/{}] {}: {device}{}\n  label? {positive} = y, {negative} = n, skip = s, quit = q: ",
                n + 1,
                total,
                scan.display(),
                if item.disputed { "; DISPUTED by the radiographer" } else { "" },
            )
            .map_err(io)?;
            prompts.flush().map_err(io)?;
            let mut line = String::new();
            if answers.read_line(&mut line).map_err(io)? == 0 {
                break 'items;
            }
            let label = match line.trim() {
                "y" => positive,
                "n" => negative,
                "s" => {
                    summary.skipped += 1;
                    continue 'items;
                }
                "q" => break 'items,
                other => {
                    writeln!(prompts, "  `{other}`: answer y, n, s or q").map_err(io)?;
                    continue;
                }
            };
            let bytes = std::fs::read(&scan).map_err(|e| Error::io(&scan, e))?;
            let class = dataset.join(label);
            std::fs::create_dir_all(&class).map_err(|e| Error::io(&class, e))?;
            write_atomically(&class.join(&item.file), &bytes)?;
            item.label = Some(label.to_string());
            write_item(&meta, &item)?;
            summary.labelled += 1;
            summary.left -= 1;
            continue 'items;
        }
    }
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;
    use scanside_shared::audit::{AUDIT_FORMAT_VERSION, AuditRecord, ModelRef, ScanRef};
    use scanside_shared::bundle::encode_bundle;

    fn record(unix_ms: u64, event: AuditEvent) -> BundleEntry {
        BundleEntry::Record(AuditRecord {
            format_version: AUDIT_FORMAT_VERSION,
            unix_ms,
            firmware_version: "0.1.0".into(),
            event,
        })
    }

    fn scan_ref(bytes: &[u8]) -> ScanRef {
        ScanRef {
            name_sha256: [0; 32],
            content_sha256: scanside_shared::sha256(bytes),
        }
    }

    /// Two classified scans, the second disputed.
    fn bundle() -> Vec<u8> {
        let model = ModelRef {
            id: "scanside-m".into(),
            sha256: [7; 32],
        };
        let (a, b): (&[u8], &[u8]) = (b"scan a", b"scan b");
        let classified = |bytes: &[u8], p: f32, d: Decision| AuditEvent::Classified {
            scan: scan_ref(bytes),
            model: model.clone(),
            probability: p,
            decision: d,
            latency_ms: 400,
        };
        encode_bundle(
            10,
            "0.1.0",
            0,
            &[
                record(1, classified(a, 0.9, Decision::TumourSuspected)),
                record(2, classified(b, 0.05, Decision::NoTumour)),
                record(
                    3,
                    AuditEvent::Disputed {
                        refers_to_unix_ms: 2,
                        scan: scan_ref(b),
                        model: model.clone(),
                        decision: Decision::NoTumour,
                    },
                ),
                BundleEntry::Scan {
                    content_sha256: scanside_shared::sha256(a),
                    extension: "jpg".into(),
                    bytes: a.to_vec(),
                },
                BundleEntry::Scan {
                    content_sha256: scanside_shared::sha256(b),
                    extension: "dcm".into(),
                    bytes: b.to_vec(),
                },
            ],
        )
    }

    #[test]
    fn import_queues_once_and_never_touches_the_class_folders() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("box.scanside");
        std::fs::write(&path, bundle()).unwrap();
        let data = dir.path().join("data");
        let s = import_bundle(&path, &data).unwrap();
        assert_eq!(
            (s.queued, s.disputed, s.already_queued, s.records),
            (2, 1, 0, 3)
        );
        let q = queue(&data).unwrap();
        assert_eq!(q.len(), 2);
        assert!(q[0].1.disputed, "disputed first");
        assert_eq!(q[0].1.device_decision, Some(Decision::NoTumour));
        assert_eq!(q[1].1.device_probability, Some(0.9));
        assert!(!data.join("yes").exists() && !data.join("no").exists());
        let again = import_bundle(&path, &data).unwrap();
        assert_eq!((again.queued, again.already_queued), (0, 2));

        // A damaged scan entry: the other is still queued.
        let mut broken = bundle();
        let at = broken.windows(6).position(|w| w == b"scan a").unwrap();
        broken[at] ^= 0x20;
        std::fs::write(&path, &broken).unwrap();
        let fresh = dir.path().join("fresh");
        let s = import_bundle(&path, &fresh).unwrap();
        assert_eq!((s.queued, s.damaged, s.missing), (1, 1, 1));

        std::fs::write(&path, b"not a bundle").unwrap();
        let err = import_bundle(&path, &fresh).unwrap_err().to_string();
        assert!(
            err.contains("box.scanside") && err.contains("not a scanside bundle"),
            "{err}"
        );
    }

    #[test]
    fn review_saves_each_answer_so_stopping_halfway_loses_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("box.scanside");
        std::fs::write(&path, bundle()).unwrap();
        let data = dir.path().join("data");
        import_bundle(&path, &data).unwrap();
        let mut shown = Vec::new();
        let mut prompts = Vec::new();
        // One answer, then the input ends (the reviewer walked away).
        let s = review(
            &data,
            "yes",
            "no",
            &mut &b"y\n"[..],
            &mut prompts,
            &mut |p| shown.push(p.to_path_buf()),
        )
        .unwrap();
        assert_eq!((s.labelled, s.skipped, s.left), (1, 0, 1));
        let text = String::from_utf8(prompts).unwrap();
        assert!(text.contains("DISPUTED"), "{text}");
        let b = hex::encode(scanside_shared::sha256(b"scan b"));
        assert_eq!(shown[0], data.join("review").join(format!("{b}.dcm")));
        assert_eq!(
            std::fs::read(data.join("yes").join(format!("{b}.dcm"))).unwrap(),
            b"scan b"
        );
        // The next session asks only about the other scan; a wrong answer
        // is asked again.
        let mut prompts = Vec::new();
        let s = review(
            &data,
            "yes",
            "no",
            &mut &b"maybe\nn\n"[..],
            &mut prompts,
            &mut |_| {},
        )
        .unwrap();
        assert_eq!((s.labelled, s.left), (1, 0));
        assert!(String::from_utf8(prompts).unwrap().contains("`maybe`"));
        let labels: Vec<Option<String>> = queue(&data)
            .unwrap()
            .into_iter()
            .map(|(_, i)| i.label)
            .collect();
        assert_eq!(labels, [Some("yes".to_string()), Some("no".to_string())]);
        let s = review(
            &data,
            "yes",
            "no",
            &mut &b""[..],
            &mut Vec::new(),
            &mut |_| {},
        )
        .unwrap();
        assert_eq!(s, ReviewSummary::default());
    }
}
