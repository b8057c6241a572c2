//! The inbox: the folder the scanner or PACS export writes scans to.
//!
//! A file counts only when it is complete. Two conventions are honoured:
//!
//! 1. **temp name → rename**: files whose names start with `.` or end in
//!    `.part`, `.tmp` or `.partial` are being written and are ignored; the
//!    writer renames them when done (atomic on one file system);
//! 2. **settle time**: any other file counts once it has not been modified
//!    for `settle_ms` (so a slow copy is not read half-written).
//!
//! Classified scans are moved to `processed/` inside the inbox, unreadable
//! ones to `rejected/`; nothing is deleted, and a name clash gets a numeric
//! suffix.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::{Error, Result};

/// Name of the folder classified scans move to.
pub const PROCESSED_DIR: &str = "processed";

/// Name of the folder unreadable scans move to.
pub const REJECTED_DIR: &str = "rejected";

/// The inbox folder.
#[derive(Clone, Debug)]
pub struct Inbox {
    dir: PathBuf,
    settle: Duration,
}

fn in_progress(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    name.starts_with('.')
        || [".part", ".tmp", ".partial"]
            .iter()
            .any(|s| lower.ends_with(s))
}

impl Inbox {
    /// An inbox at `dir` (created if missing) with a settle time.
    pub fn open(dir: &Path, settle_ms: u64) -> Result<Self> {
        for sub in [PROCESSED_DIR, REJECTED_DIR] {
            std::fs::create_dir_all(dir.join(sub)).map_err(|e| Error::io(dir, e))?;
        }
        Ok(Inbox {
            dir: dir.to_path_buf(),
            settle: Duration::from_millis(settle_ms),
        })
    }

    /// The folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The newest complete, unclassified scan at `now` (by modification
    /// time, then name), if any.
    pub fn newest_ready(&self, now: SystemTime) -> Result<Option<PathBuf>> {
        let entries = std::fs::read_dir(&self.dir).map_err(|e| Error::io(&self.dir, e))?;
        let mut best: Option<(SystemTime, PathBuf)> = None;
        for entry in entries {
            let entry = entry.map_err(|e| Error::io(&self.dir, e))?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if in_progress(name) {
                continue;
            }
            // Follows symbolic links: an export may link scans in.
            let Ok(meta) = std::fs::metadata(entry.path()) else {
                continue;
            };
            if !meta.is_file() {
                continue;
            }
            let Ok(modified) = meta.modified() else {
                continue;
            };
            if now.duration_since(modified).unwrap_or_default() < self.settle {
                continue;
            }
            let path = entry.path();
            if best
                .as_ref()
                .is_none_or(|(t, p)| (modified, &path) > (*t, p))
            {
                best = Some((modified, path));
            }
        }
        Ok(best.map(|(_, p)| p))
    }

    /// Move a classified scan to `processed/`; returns its new path.
    pub fn mark_processed(&self, scan: &Path) -> Result<PathBuf> {
        self.move_to(scan, PROCESSED_DIR)
    }

    /// Move an unreadable scan to `rejected/`; returns its new path.
    pub fn mark_rejected(&self, scan: &Path) -> Result<PathBuf> {
        self.move_to(scan, REJECTED_DIR)
    }

    fn move_to(&self, scan: &Path, sub: &str) -> Result<PathBuf> {
        let name = scan
            .file_name()
            .ok_or_else(|| Error::io(scan, std::io::Error::other("not a file")))?;
        let dest_dir = self.dir.join(sub);
        let mut dest = dest_dir.join(name);
        let mut n = 1;
        while dest.exists() {
            dest = dest_dir.join(format!("{}.{n}", name.to_string_lossy()));
            n += 1;
        }
        std::fs::rename(scan, &dest).map_err(|e| Error::io(scan, e))?;
        Ok(dest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn touch(dir: &Path, name: &str, age_s: u64) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, name).unwrap();
        let t = SystemTime::now() - Duration::from_secs(age_s);
        std::fs::File::options()
            .write(true)
            .open(&p)
            .unwrap()
            .set_modified(t)
            .unwrap();
        p
    }

    #[test]
    fn newest_complete_scan_wins_and_unfinished_ones_are_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let inbox = Inbox::open(dir.path(), 2000).unwrap();
        assert_eq!(inbox.newest_ready(SystemTime::now()).unwrap(), None);
        touch(dir.path(), "old scan.png", 60);
        let newer = touch(dir.path(), "newer.jpg", 30);
        touch(dir.path(), "being written.jpg.part", 1);
        touch(dir.path(), ".hidden.jpg", 1);
        touch(dir.path(), "just arrived.jpg", 0);
        assert_eq!(
            inbox.newest_ready(SystemTime::now()).unwrap(),
            Some(newer.clone())
        );
        // Once it settles, the latest arrival is the newest.
        let later = SystemTime::now() + Duration::from_secs(3);
        assert_eq!(
            inbox.newest_ready(later).unwrap(),
            Some(dir.path().join("just arrived.jpg"))
        );
    }

    #[test]
    fn processed_scans_move_and_never_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let inbox = Inbox::open(dir.path(), 0).unwrap();
        let a = touch(dir.path(), "scan.jpg", 10);
        let moved = inbox.mark_processed(&a).unwrap();
        assert_eq!(moved, dir.path().join("processed/scan.jpg"));
        let b = touch(dir.path(), "scan.jpg", 5);
        let moved_again = inbox.mark_processed(&b).unwrap();
        assert_eq!(moved_again, dir.path().join("processed/scan.jpg.1"));
        assert!(moved.exists() && moved_again.exists());
        assert_eq!(inbox.newest_ready(SystemTime::now()).unwrap(), None);
    }
}
