//! `scanside-device export`: the audit records since a time, with the
//! archived scans and overlays they refer to, in one bundle file
//! ([`scanside_shared::bundle`]) for the host.
//!
//! Exporting only reads: the audit log and the archive are opened for
//! reading, nothing on the device is changed or deleted. The bundle is
//! written atomically to `--out` ([`crate::durable`]).

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use scanside_shared::audit::{AuditEvent, AuditRecord, read_log};
use scanside_shared::bundle::{BundleEntry, encode_bundle};

use crate::archive::OVERLAY_SUFFIX;
use crate::config::DeviceConfig;
use crate::{Error, Result, VERSION};

/// What an export wrote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExportSummary {
    /// Audit records included.
    pub records: usize,
    /// Archived scans included.
    pub scans: usize,
    /// Overlays included.
    pub overlays: usize,
    /// Scans the records refer to that the archive does not hold (archive
    /// off, or evicted).
    pub scans_not_archived: usize,
    /// Size of the bundle, bytes.
    pub bytes: usize,
}

/// The scan a record refers to, if any.
fn scan_of(record: &AuditRecord) -> Option<[u8; 32]> {
    match &record.event {
        AuditEvent::Classified { scan, .. }
        | AuditEvent::Disputed { scan, .. }
        | AuditEvent::OutOfScope { scan, .. } => Some(scan.content_sha256),
        AuditEvent::Error { scan, .. } | AuditEvent::Received { scan, .. } => {
            scan.as_ref().map(|s| s.content_sha256)
        }
        AuditEvent::ModelChanged { .. } => None,
    }
}

/// Parse `--since`: milliseconds since the Unix epoch, or a UTC date
/// `YYYY-MM-DD` (from its midnight); a date that does not exist
/// (`2026-02-31`) is refused.
pub fn parse_since(text: &str) -> std::result::Result<u64, String> {
    if let Ok(ms) = text.parse::<u64>() {
        return Ok(ms);
    }
    let bad = |why: String| {
        format!("`{text}`: expected milliseconds since 1970 or a date YYYY-MM-DD ({why})")
    };
    // Exactly a date: jiff's parser would also take a date-time and drop
    // the time, which would export more than asked for.
    let date = jiff::civil::Date::strptime("%Y-%m-%d", text).map_err(|e| bad(e.to_string()))?;
    let ms = jiff::tz::TimeZone::UTC
        .to_timestamp(date.to_datetime(jiff::civil::Time::midnight()))
        .map_err(|e| bad(e.to_string()))?
        .as_millisecond();
    u64::try_from(ms).map_err(|_| bad("before 1970".into()))
}

/// A record time (milliseconds since 1970) as a UTC date-time,
/// `2026-11-28T10:12:43.54Z`.
pub fn utc(unix_ms: u64) -> String {
    i64::try_from(unix_ms)
        .ok()
        .and_then(|ms| jiff::Timestamp::from_millisecond(ms).ok())
        .map_or_else(|| format!("{unix_ms} ms"), |t| t.to_string())
}

/// Write the records at or after `since_unix_ms`, with the archived scans
/// and overlays they refer to, to `out`.
pub fn export(config: &DeviceConfig, since_unix_ms: u64, out: &Path) -> Result<ExportSummary> {
    let log = read_log(&config.audit_log)?;
    for p in log.damaged.iter().chain(&log.torn_tail) {
        eprintln!(
            "{}: record at byte {} skipped: {}",
            config.audit_log.display(),
            p.offset,
            p.reason
        );
    }
    let records: Vec<AuditRecord> = log
        .records
        .into_iter()
        .filter(|r| r.unix_ms >= since_unix_ms)
        .collect();
    let wanted: BTreeSet<[u8; 32]> = records.iter().filter_map(scan_of).collect();
    let mut entries: Vec<BundleEntry> = records.iter().cloned().map(BundleEntry::Record).collect();
    let mut summary = ExportSummary {
        records: records.len(),
        scans: 0,
        overlays: 0,
        scans_not_archived: 0,
        bytes: 0,
    };
    let archived = match &config.archive {
        Some(a) => archive_files(&a.dir)?,
        None => Vec::new(),
    };
    for sha in &wanted {
        let key = hex::encode(sha);
        let mut found = false;
        for (name, path) in archived.iter().filter(|(n, _)| n.starts_with(&key)) {
            let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
            if name.ends_with(OVERLAY_SUFFIX) {
                entries.push(BundleEntry::Overlay {
                    content_sha256: *sha,
                    png: bytes,
                });
                summary.overlays += 1;
            } else {
                found = true;
                entries.push(BundleEntry::Scan {
                    content_sha256: *sha,
                    extension: name.rsplit('.').next().unwrap_or_default().to_string(),
                    bytes,
                });
                summary.scans += 1;
            }
        }
        summary.scans_not_archived += usize::from(!found);
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let bundle = encode_bundle(now, VERSION, since_unix_ms, &entries);
    summary.bytes = bundle.len();
    let dir = match out.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = out
        .file_name()
        .ok_or_else(|| Error::io(out, std::io::Error::other("not a file name")))?
        .to_string_lossy();
    crate::durable::write_atomically(dir, &name, &[&bundle]).map_err(|e| Error::io(out, e))?;
    Ok(summary)
}

/// The archive's files (name, path), sorted; none if it does not exist yet.
fn archive_files(dir: &Path) -> Result<Vec<(String, std::path::PathBuf)>> {
    let listing = match std::fs::read_dir(dir) {
        Ok(l) => l,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(dir, e)),
    };
    let mut files: Vec<(String, std::path::PathBuf)> = listing
        .flatten()
        .map(|e| (e.file_name().to_string_lossy().into_owned(), e.path()))
        .filter(|(n, p)| !n.starts_with('.') && p.is_file())
        .collect();
    files.sort();
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_takes_milliseconds_or_a_utc_date() {
        assert_eq!(parse_since("1795000000000").unwrap(), 1_795_000_000_000);
        assert_eq!(parse_since("1970-01-01").unwrap(), 0);
        // `date -u -d 2026-11-27 +%s` = 1795737600
        assert_eq!(parse_since("2026-11-27").unwrap(), 1_795_737_600_000);
        assert_eq!(parse_since("2024-02-29").unwrap(), 1_709_164_800_000);
        for bad in [
            "yesterday",
            "2026-13-01",
            "2026-11",
            "-5",
            "2026-02-31",
            "2025-02-29",
            "2026-11-27T15:00",
            "2026-11-27 15:00",
        ] {
            assert!(parse_since(bad).unwrap_err().contains(bad), "{bad}");
        }
        assert!(
            parse_since("1969-12-31")
                .unwrap_err()
                .contains("before 1970")
        );
    }

    #[test]
    fn record_times_print_as_utc() {
        assert_eq!(utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(utc(1_796_167_963_540), "2026-12-01T23:32:43.54Z");
        assert_eq!(utc(u64::MAX), format!("{} ms", u64::MAX));
    }
}
