//! Export bundles: what a box saw, carried to the host for review and
//! retraining (`scanside-device export`, then `scanside import`).
//!
//! Wire format (version [`BUNDLE_FORMAT_VERSION`]): a sequence of frames
//! framed exactly like the audit log (see [`crate::audit`]: postcard,
//! CRC-32, COBS, `0x00` delimiter). The first frame is the
//! [`BundleManifest`]; every other frame is one [`BundleEntry`]: an audit
//! record, an archived scan, or a Grad-CAM overlay. The manifest carries the
//! counts and the SHA-256 of every entry's postcard bytes, so the reader can
//! tell which entries are missing. A damaged frame costs only that entry:
//! the reader skips to the next delimiter and reads on, and says what it
//! skipped.

use serde::{Deserialize, Serialize};

use crate::audit::{AuditRecord, LogProblem, decode_framed, encode_framed, split_frames};
use crate::sha256;

/// Version of the bundle encoding; bump on any change to the types below.
pub const BUNDLE_FORMAT_VERSION: u16 = 1;

/// The bytes every bundle's manifest starts with.
pub const BUNDLE_MAGIC: [u8; 8] = *b"SCANSIDE";

/// The first frame of a bundle.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BundleManifest {
    /// [`BUNDLE_MAGIC`].
    pub magic: [u8; 8],
    /// [`BUNDLE_FORMAT_VERSION`] at writing.
    pub format_version: u16,
    /// When the bundle was made (ms since the Unix epoch).
    pub created_unix_ms: u64,
    /// Firmware that made it.
    pub firmware_version: String,
    /// Records from this time on (ms since the Unix epoch) are included.
    pub since_unix_ms: u64,
    /// Audit records in the bundle.
    pub records: u32,
    /// Scans in the bundle.
    pub scans: u32,
    /// Overlays in the bundle.
    pub overlays: u32,
    /// SHA-256 of each entry's postcard bytes, in order.
    pub entries_sha256: Vec<[u8; 32]>,
}

/// One entry after the manifest.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum BundleEntry {
    /// An audit record, as on the device.
    Record(AuditRecord),
    /// An archived scan, named by its content.
    Scan {
        /// SHA-256 of `bytes` (the audit records' `content_sha256`).
        content_sha256: [u8; 32],
        /// Its extension in the archive (`jpg`, `dcm`, …).
        extension: String,
        /// The file as received.
        bytes: Vec<u8>,
    },
    /// The Grad-CAM overlay of a scan.
    Overlay {
        /// The scan's SHA-256.
        content_sha256: [u8; 32],
        /// PNG bytes.
        png: Vec<u8>,
    },
}

/// Encode a bundle: the manifest (counts and entry hashes computed here),
/// then the entries.
pub fn encode_bundle(
    created_unix_ms: u64,
    firmware_version: &str,
    since_unix_ms: u64,
    entries: &[BundleEntry],
) -> Vec<u8> {
    let count = |f: fn(&BundleEntry) -> bool| entries.iter().filter(|e| f(e)).count() as u32;
    let manifest = BundleManifest {
        magic: BUNDLE_MAGIC,
        format_version: BUNDLE_FORMAT_VERSION,
        created_unix_ms,
        firmware_version: firmware_version.into(),
        since_unix_ms,
        records: count(|e| matches!(e, BundleEntry::Record(_))),
        scans: count(|e| matches!(e, BundleEntry::Scan { .. })),
        overlays: count(|e| matches!(e, BundleEntry::Overlay { .. })),
        entries_sha256: entries.iter().map(entry_sha256).collect(),
    };
    let mut out = encode_framed(&manifest);
    for e in entries {
        out.extend(encode_framed(e));
    }
    out
}

fn entry_sha256(entry: &BundleEntry) -> [u8; 32] {
    sha256(&postcard::to_stdvec(entry).expect("bundle entries always serialise"))
}

/// What [`parse_bundle`] found.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct BundleContents {
    /// The manifest, unless its frame is damaged or it is not a bundle.
    pub manifest: Option<BundleManifest>,
    /// Every intact entry, in order.
    pub entries: Vec<BundleEntry>,
    /// Damaged frames that were skipped (and a torn end).
    pub damaged: Vec<LogProblem>,
    /// Intact entries whose hash the manifest does not list.
    pub unlisted: usize,
    /// Entries the manifest lists that were not found intact.
    pub missing: usize,
}

/// Parse a bundle's bytes: every intact entry, and what was skipped.
pub fn parse_bundle(bytes: &[u8]) -> BundleContents {
    let (frames, torn) = split_frames(bytes);
    let mut out = BundleContents::default();
    let mut frames = frames.into_iter().peekable();
    if let Some(&(offset, first)) = frames.peek() {
        match decode_framed::<BundleManifest>(first) {
            Ok(m) if m.magic == BUNDLE_MAGIC => {
                out.manifest = Some(m);
                frames.next();
            }
            Ok(_) => {
                frames.next();
                out.damaged.push(LogProblem {
                    offset,
                    len: first.len(),
                    reason: "not a scanside bundle (wrong magic)".into(),
                });
            }
            // Maybe the manifest is damaged, maybe the first frame is an
            // entry: try it as one below.
            Err(_) => {}
        }
    }
    for (offset, frame) in frames {
        match decode_framed::<BundleEntry>(frame) {
            Ok(e) => out.entries.push(e),
            Err(reason) => out.damaged.push(LogProblem {
                offset,
                len: frame.len(),
                reason,
            }),
        }
    }
    out.damaged.extend(torn);
    if let Some(m) = &out.manifest {
        let found: Vec<[u8; 32]> = out.entries.iter().map(entry_sha256).collect();
        out.unlisted = found
            .iter()
            .filter(|h| !m.entries_sha256.contains(h))
            .count();
        out.missing = m
            .entries_sha256
            .iter()
            .filter(|h| !found.contains(h))
            .count();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::{AUDIT_FORMAT_VERSION, AuditEvent, Decision, ModelRef, ScanRef};

    fn entries() -> Vec<BundleEntry> {
        let record = AuditRecord {
            format_version: AUDIT_FORMAT_VERSION,
            unix_ms: 1_795_000_000_000,
            firmware_version: "0.1.0".into(),
            event: AuditEvent::Classified {
                scan: ScanRef {
                    name_sha256: [1; 32],
                    content_sha256: sha256(b"scan"),
                },
                model: ModelRef {
                    id: "m".into(),
                    sha256: [2; 32],
                },
                probability: 0.75,
                decision: Decision::TumourSuspected,
                latency_ms: 400,
            },
        };
        vec![
            BundleEntry::Record(record),
            BundleEntry::Scan {
                content_sha256: sha256(b"scan"),
                extension: "jpg".into(),
                bytes: b"scan".to_vec(),
            },
            BundleEntry::Overlay {
                content_sha256: sha256(b"scan"),
                png: b"png".to_vec(),
            },
        ]
    }

    /// The bytes of a small bundle, frozen: a change to the format must
    /// bump [`BUNDLE_FORMAT_VERSION`] and this string together.
    const GOLDEN_SHA256: &str = "6761edf8c71cfebc6c479ec32e67d62c6997d402e69316c0064592fae011b7a0";

    #[test]
    fn a_bundle_round_trips_and_its_bytes_are_frozen() {
        let bytes = encode_bundle(1_795_000_100_000, "0.1.0", 1_794_000_000_000, &entries());
        assert_eq!(crate::sha256_hex(&bytes), GOLDEN_SHA256);
        assert_eq!(
            &bytes[1..9],
            b"SCANSIDE",
            "the manifest's magic comes first"
        );
        let read = parse_bundle(&bytes);
        let m = read.manifest.as_ref().unwrap();
        assert_eq!((m.records, m.scans, m.overlays), (1, 1, 1));
        assert_eq!(read.entries, entries());
        assert!(read.damaged.is_empty());
        assert_eq!((read.missing, read.unlisted), (0, 0));
    }

    #[test]
    fn a_damaged_entry_costs_only_itself() {
        let bytes = encode_bundle(1, "0.1.0", 0, &entries());
        let (frames, _) = split_frames(&bytes);
        // Flip a byte inside the second entry (the scan).
        let (offset, frame) = frames[2];
        let mut broken = bytes.clone();
        broken[offset + frame.len() / 2] ^= 0x40;
        let read = parse_bundle(&broken);
        assert!(read.manifest.is_some());
        assert_eq!(read.entries, [entries()[0].clone(), entries()[2].clone()]);
        assert_eq!(read.damaged.len(), 1);
        assert_eq!(read.damaged[0].offset, offset);
        assert_eq!(read.missing, 1);
        // A damaged manifest: the entries are still read, unverified.
        let mut no_manifest = bytes.clone();
        no_manifest[3] ^= 0x40;
        let read = parse_bundle(&no_manifest);
        assert!(read.manifest.is_none());
        assert_eq!(read.entries, entries());
        assert_eq!(read.damaged.len(), 1);
        // Cut short: the entries before the cut are intact.
        let read = parse_bundle(&bytes[..bytes.len() - 3]);
        assert_eq!(read.entries, entries()[..2]);
        assert_eq!(read.missing, 1);
    }

    #[test]
    fn other_files_are_not_bundles() {
        let read = parse_bundle(b"\xff\xd8\xff\xe0 a jpeg");
        assert!(read.manifest.is_none() && read.entries.is_empty());
        assert_eq!(read.damaged.len(), 1);
    }
}
