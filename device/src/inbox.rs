//! The inbox: the folder the scanner or PACS export writes scans to.
//!
//! A file counts only when it is complete. What says "complete":
//!
//! 1. **temp name → rename** (the recommended convention): files whose
//!    names start with `.` or end in `.part`, `.tmp` or `.partial` are being
//!    written and are ignored; a file renamed into the folder (or to its
//!    final name inside it) counts at once;
//! 2. **closed after writing**: the folder is watched with `notify`
//!    (inotify on Linux), and a file whose writer has closed it counts at
//!    once, as long as it has not been modified since;
//! 3. **settle time**: any other file (already there at start-up, written
//!    over a network share that sends no events, or linked in) counts once
//!    it has not been modified for `settle_ms`.
//!
//! A press lists the folder (the listing, not the events, decides what
//! exists), so a lost event can only delay a scan by the settle time,
//! never hide it. Classified scans are moved to `processed/` inside the
//! inbox, unreadable ones to `rejected/`; nothing is deleted, and a name
//! clash gets a numeric suffix.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, channel};
use std::time::{Duration, SystemTime};

use notify::event::{AccessKind, AccessMode, ModifyKind, RenameMode};
use notify::{EventKind, RecommendedWatcher, RecursiveMode, Watcher};

use crate::{Error, Result};

/// Name of the folder classified scans move to.
pub const PROCESSED_DIR: &str = "processed";

/// Name of the folder unreadable scans move to.
pub const REJECTED_DIR: &str = "rejected";

/// The inbox folder and what the watcher has seen finish.
pub struct Inbox {
    dir: PathBuf,
    settle: Duration,
    /// Files seen complete (closed after writing, or renamed in), with
    /// their modification time then: still complete while it is unchanged.
    completed: HashMap<PathBuf, SystemTime>,
    /// Filesystem events, while the watcher runs.
    watch: Option<(RecommendedWatcher, Receiver<notify::Result<notify::Event>>)>,
}

impl std::fmt::Debug for Inbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inbox")
            .field("dir", &self.dir)
            .field("completed", &self.completed.len())
            .field("watched", &self.watch.is_some())
            .finish()
    }
}

fn in_progress(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    name.starts_with('.')
        || [".part", ".tmp", ".partial"]
            .iter()
            .any(|s| lower.ends_with(s))
}

/// The modification time of a regular file with a final name (following
/// symbolic links: an export may link scans in), or `None`.
fn final_file_modified(path: &Path) -> Option<SystemTime> {
    let name = path.file_name()?.to_str()?;
    if in_progress(name) {
        return None;
    }
    let meta = std::fs::metadata(path).ok()?;
    if !meta.is_file() {
        return None;
    }
    meta.modified().ok()
}

impl Inbox {
    /// An inbox at `dir` (created if missing) with a settle time, watched
    /// for finished files. If the watcher cannot start (e.g. the inotify
    /// limit is reached), a warning is printed and only the settle time
    /// and renames from temp names count.
    pub fn open(dir: &Path, settle_ms: u64) -> Result<Self> {
        for sub in [PROCESSED_DIR, REJECTED_DIR] {
            std::fs::create_dir_all(dir.join(sub)).map_err(|e| Error::io(dir, e))?;
        }
        let (tx, rx) = channel();
        let watch = match notify::recommended_watcher(tx).and_then(|mut w| {
            w.watch(dir, RecursiveMode::NonRecursive)?;
            Ok(w)
        }) {
            Ok(w) => Some((w, rx)),
            Err(e) => {
                eprintln!(
                    "warning: cannot watch {} ({e}); scans count after the settle time",
                    dir.display()
                );
                None
            }
        };
        Ok(Inbox {
            dir: dir.to_path_buf(),
            settle: Duration::from_millis(settle_ms),
            completed: HashMap::new(),
            watch,
        })
    }

    /// The folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Whether the folder is watched.
    pub fn is_watched(&self) -> bool {
        self.watch.is_some()
    }

    /// Take in the watcher's events; returns how many files were seen
    /// finished (closed after writing or renamed in) since the last call.
    pub fn refresh(&mut self) -> usize {
        let Some((_, events)) = &self.watch else {
            return 0;
        };
        let mut finished = Vec::new();
        for event in events.try_iter().flatten() {
            match event.kind {
                EventKind::Access(AccessKind::Close(AccessMode::Write))
                | EventKind::Modify(ModifyKind::Name(RenameMode::To)) => {
                    finished.extend(event.paths)
                }
                // A rename inside the folder: the new name is the last path.
                EventKind::Modify(ModifyKind::Name(RenameMode::Both)) => {
                    finished.extend(event.paths.last().cloned())
                }
                EventKind::Remove(_) | EventKind::Modify(ModifyKind::Name(RenameMode::From)) => {
                    for path in &event.paths {
                        self.completed.remove(path);
                    }
                }
                _ => {}
            }
        }
        let mut count = 0;
        for path in finished {
            if path.parent() != Some(self.dir.as_path()) {
                continue;
            }
            if let Some(modified) = final_file_modified(&path) {
                count += usize::from(self.completed.insert(path, modified).is_none());
            }
        }
        count
    }

    /// Whether the file is complete at `now`.
    fn is_complete(&self, path: &Path, modified: SystemTime, now: SystemTime) -> bool {
        self.completed.get(path) == Some(&modified)
            || now.duration_since(modified).unwrap_or_default() >= self.settle
    }

    /// The newest complete, unclassified scan at `now` (by modification
    /// time, then name), if any.
    pub fn newest_ready(&mut self, now: SystemTime) -> Result<Option<PathBuf>> {
        self.refresh();
        let entries = std::fs::read_dir(&self.dir).map_err(|e| Error::io(&self.dir, e))?;
        let mut best: Option<(SystemTime, PathBuf)> = None;
        for entry in entries {
            let path = entry.map_err(|e| Error::io(&self.dir, e))?.path();
            let Some(modified) = final_file_modified(&path) else {
                continue;
            };
            if !self.is_complete(&path, modified, now) {
                continue;
            }
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
    pub fn mark_processed(&mut self, scan: &Path) -> Result<PathBuf> {
        self.move_to(scan, PROCESSED_DIR)
    }

    /// Move an unreadable scan to `rejected/`; returns its new path.
    pub fn mark_rejected(&mut self, scan: &Path) -> Result<PathBuf> {
        self.move_to(scan, REJECTED_DIR)
    }

    fn move_to(&mut self, scan: &Path, sub: &str) -> Result<PathBuf> {
        self.completed.remove(scan);
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
        assert_eq!(
            Inbox::open(dir.path(), 2000)
                .unwrap()
                .newest_ready(SystemTime::now())
                .unwrap(),
            None
        );
        // Files already there at start-up: only the settle time says
        // whether they are complete.
        touch(dir.path(), "old scan.png", 60);
        let newer = touch(dir.path(), "newer.jpg", 30);
        touch(dir.path(), "being written.jpg.part", 1);
        touch(dir.path(), ".hidden.jpg", 1);
        touch(dir.path(), "just arrived.jpg", 0);
        std::fs::create_dir(dir.path().join("a folder.jpg")).unwrap();
        let mut inbox = Inbox::open(dir.path(), 2000).unwrap();
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
        let mut inbox = Inbox::open(dir.path(), 0).unwrap();
        let a = touch(dir.path(), "scan.jpg", 10);
        let moved = inbox.mark_processed(&a).unwrap();
        assert_eq!(moved, dir.path().join("processed/scan.jpg"));
        let b = touch(dir.path(), "scan.jpg", 5);
        let moved_again = inbox.mark_processed(&b).unwrap();
        assert_eq!(moved_again, dir.path().join("processed/scan.jpg.1"));
        assert!(moved.exists() && moved_again.exists());
        assert_eq!(inbox.newest_ready(SystemTime::now()).unwrap(), None);
    }

    /// Wait (bounded) for the watcher to report `n` finished files.
    fn wait_for_events(inbox: &mut Inbox, n: usize) {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let mut seen = 0;
        while seen < n && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
            seen += inbox.refresh();
        }
        assert_eq!(seen, n, "the watcher missed a finished file");
    }

    #[test]
    fn closed_or_renamed_files_count_before_the_settle_time() {
        use std::io::Write;
        let dir = tempfile::tempdir().unwrap();
        let mut inbox = Inbox::open(dir.path(), 60_000).unwrap();
        assert!(inbox.is_watched());
        // Still open for writing: not complete (and not settled).
        let open = dir.path().join("still writing.jpg");
        let mut writer = std::fs::File::create(&open).unwrap();
        writer.write_all(b"half a scan").unwrap();
        assert_eq!(inbox.newest_ready(SystemTime::now()).unwrap(), None);
        // Closed after writing: complete at once.
        drop(writer);
        wait_for_events(&mut inbox, 1);
        assert_eq!(
            inbox.newest_ready(SystemTime::now()).unwrap(),
            Some(open.clone())
        );
        // Written again: no longer known complete until closed again.
        let mut again = std::fs::OpenOptions::new()
            .append(true)
            .open(&open)
            .unwrap();
        again.write_all(b" more").unwrap();
        again.sync_all().unwrap();
        let t = SystemTime::now() + Duration::from_secs(1);
        again.set_modified(t).unwrap();
        assert_eq!(inbox.newest_ready(t).unwrap(), None);
        drop(again);
        std::fs::remove_file(&open).unwrap();
        // Renamed from a temp name: complete at once.
        let part = dir.path().join("arriving.jpg.part");
        std::fs::write(&part, b"scan").unwrap();
        let done = dir.path().join("arriving.jpg");
        std::fs::rename(&part, &done).unwrap();
        wait_for_events(&mut inbox, 1);
        assert_eq!(
            inbox.newest_ready(SystemTime::now()).unwrap(),
            Some(done.clone())
        );
    }
}
