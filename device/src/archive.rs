//! The scan archive: an optional, size-capped copy of every classified scan.
//!
//! Off by default (`[archive]` in the configuration turns it on). Each scan
//! is kept under its content hash, `<sha256>.<ext>`, so a reviewer can see
//! what the box saw and the host can retrain on it; with `overlays = true`
//! the Grad-CAM picture of the decision sits beside it as
//! `<sha256>.gradcam.png`. The same scan classified twice is stored once
//! (its age is refreshed). Files are written atomically
//! ([`crate::durable`]). When the folder outgrows `max_mb`, whole entries
//! (scan and overlay together) are evicted oldest first; the entry just
//! stored is never evicted.
//!
//! The archive holds the scans themselves, with whatever patient data a
//! DICOM header carries: its folder is created readable by the service's
//! user only (mode 0700).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::config::ArchiveConfig;
use crate::{Error, Result};

/// Suffix of overlay files.
pub const OVERLAY_SUFFIX: &str = ".gradcam.png";

/// An open archive folder.
#[derive(Debug)]
pub struct Archive {
    dir: PathBuf,
    max_bytes: u64,
    overlays: bool,
}

/// What [`Archive::store`] did.
#[derive(Debug, PartialEq, Eq)]
pub struct Stored {
    /// The scan's file in the archive.
    pub scan: PathBuf,
    /// The overlay's file, when one was written.
    pub overlay: Option<PathBuf>,
    /// Entries evicted to stay under the cap.
    pub evicted: usize,
}

/// The extension a scan keeps in the archive: `dcm` for DICOM files
/// (whatever their name), else its own, lower-cased, when it is a short
/// alphanumeric one, else `scan`.
fn extension(original: &Path, bytes: &[u8]) -> String {
    if bytes.get(128..132) == Some(b"DICM") {
        return "dcm".into();
    }
    match original
        .extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase())
    {
        Some(e)
            if !e.is_empty() && e.len() <= 5 && e.bytes().all(|b| b.is_ascii_alphanumeric()) =>
        {
            e
        }
        _ => "scan".into(),
    }
}

impl Archive {
    /// Open (create) the archive folder and remove unfinished writes.
    pub fn open(config: &ArchiveConfig) -> Result<Archive> {
        let dir = &config.dir;
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
                .map_err(|e| Error::io(dir, e))?;
        }
        crate::durable::remove_stale_parts(dir, |_| true);
        Ok(Archive {
            dir: dir.clone(),
            max_bytes: config.max_mb * 1024 * 1024,
            overlays: config.overlays,
        })
    }

    /// Whether overlays are wanted.
    pub fn wants_overlays(&self) -> bool {
        self.overlays
    }

    /// Keep `bytes` (a scan read from `original`, with content hash
    /// `content_sha256`) and its overlay PNG, then evict old entries beyond
    /// the cap.
    pub fn store(
        &self,
        content_sha256: &[u8; 32],
        original: &Path,
        bytes: &[u8],
        overlay_png: Option<&[u8]>,
    ) -> Result<Stored> {
        let key = hex::encode(content_sha256);
        let scan_name = format!("{key}.{}", extension(original, bytes));
        let scan = self.dir.join(&scan_name);
        let io = |p: &Path, e| Error::io(p, e);
        if scan.is_file() {
            // Stored before: refresh its age so eviction keeps it.
            std::fs::File::options()
                .append(true)
                .open(&scan)
                .and_then(|f| f.set_modified(SystemTime::now()))
                .map_err(|e| io(&scan, e))?;
        } else {
            crate::durable::write_atomically(&self.dir, &scan_name, &[bytes])
                .map_err(|e| io(&scan, e))?;
        }
        let overlay = match overlay_png {
            Some(png) if self.overlays => {
                let name = format!("{key}{OVERLAY_SUFFIX}");
                let path = self.dir.join(&name);
                crate::durable::write_atomically(&self.dir, &name, &[png])
                    .map_err(|e| io(&path, e))?;
                Some(path)
            }
            _ => None,
        };
        let evicted = self.evict(&key)?;
        Ok(Stored {
            scan,
            overlay,
            evicted,
        })
    }

    /// Remove whole entries, oldest first, until the folder fits the cap;
    /// never the entry `keep`. Returns how many entries went.
    fn evict(&self, keep: &str) -> Result<usize> {
        let mut entries: BTreeMap<String, Entry> = BTreeMap::new();
        let listing = std::fs::read_dir(&self.dir).map_err(|e| Error::io(&self.dir, e))?;
        let mut total = 0u64;
        for file in listing.flatten() {
            let name = file.file_name().to_string_lossy().into_owned();
            let Ok(meta) = file.metadata() else { continue };
            if !meta.is_file() || name.starts_with('.') {
                continue;
            }
            let key = name.split('.').next().unwrap_or_default().to_string();
            let entry = entries.entry(key).or_insert_with(|| Entry {
                newest: SystemTime::UNIX_EPOCH,
                bytes: 0,
                files: Vec::new(),
            });
            entry.newest = entry
                .newest
                .max(meta.modified().unwrap_or(SystemTime::UNIX_EPOCH));
            entry.bytes += meta.len();
            entry.files.push(file.path());
            total += meta.len();
        }
        let mut oldest: Vec<(String, Entry)> =
            entries.into_iter().filter(|(k, _)| k != keep).collect();
        oldest.sort_by(|a, b| a.1.newest.cmp(&b.1.newest).then_with(|| a.0.cmp(&b.0)));
        let mut evicted = 0;
        for (_, entry) in oldest {
            if total <= self.max_bytes {
                break;
            }
            for f in &entry.files {
                std::fs::remove_file(f).map_err(|e| Error::io(f, e))?;
            }
            total -= entry.bytes;
            evicted += 1;
        }
        Ok(evicted)
    }
}

/// One archived scan and its overlay, as eviction sees them.
struct Entry {
    /// Latest modification of its files.
    newest: SystemTime,
    /// Their total size.
    bytes: u64,
    files: Vec<PathBuf>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn archive(dir: &Path, max_mb: u64, overlays: bool) -> Archive {
        Archive::open(&ArchiveConfig {
            dir: dir.to_path_buf(),
            max_mb,
            overlays,
        })
        .unwrap()
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut n: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        n.sort();
        n
    }

    #[test]
    fn stores_by_content_hash_once_with_its_overlay() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("archive");
        let a = archive(&root, 1, true);
        let sha = scanside_shared::sha256(b"scan");
        let s = a
            .store(
                &sha,
                Path::new("in/Patient Name.JPG"),
                b"scan",
                Some(b"png"),
            )
            .unwrap();
        let key = hex::encode(sha);
        assert_eq!(s.scan, root.join(format!("{key}.jpg")));
        assert_eq!(s.overlay, Some(root.join(format!("{key}.gradcam.png"))));
        assert_eq!(std::fs::read(&s.scan).unwrap(), b"scan");
        // Again (another name, same bytes): still one entry, no patient name.
        a.store(&sha, Path::new("in/copy.jpg"), b"scan", Some(b"png"))
            .unwrap();
        assert_eq!(
            names(&root),
            [format!("{key}.gradcam.png"), format!("{key}.jpg")]
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&root).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o700);
        }
    }

    #[test]
    fn evicts_whole_entries_oldest_first_but_never_the_new_one() {
        let dir = tempfile::tempdir().unwrap();
        let a = archive(dir.path(), 1, true);
        let half = vec![7u8; 400 * 1024];
        let mut keys = Vec::new();
        for i in 0..4u8 {
            let mut bytes = half.clone();
            bytes[0] = i;
            let sha = scanside_shared::sha256(&bytes);
            keys.push(hex::encode(sha));
            let s = a
                .store(&sha, Path::new("x.png"), &bytes, Some(b"overlay"))
                .unwrap();
            // 1 MiB holds two 400 KiB scans: from the third on, one goes.
            assert_eq!(s.evicted, usize::from(i >= 2), "store {i}");
            // Distinct modification times on coarse file systems.
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let left = names(dir.path());
        assert_eq!(left.len(), 4, "{left:?}");
        for k in &keys[2..] {
            assert!(
                left.contains(&format!("{k}.png")) && left.contains(&format!("{k}.gradcam.png"))
            );
        }
        // A scan larger than the cap is still kept (alone).
        let big = vec![1u8; 2 * 1024 * 1024];
        let sha = scanside_shared::sha256(&big);
        let s = a.store(&sha, Path::new("big.dcm"), &big, None).unwrap();
        assert_eq!(s.evicted, 2);
        assert_eq!(names(dir.path()), [format!("{}.dcm", hex::encode(sha))]);
    }

    #[test]
    fn dicom_without_extension_keeps_dcm() {
        let mut bytes = vec![0u8; 140];
        bytes[128..132].copy_from_slice(b"DICM");
        assert_eq!(extension(Path::new("1.2.840.99"), &bytes), "dcm");
        assert_eq!(extension(Path::new("IM0001"), &bytes), "dcm");
        assert_eq!(extension(Path::new("scan.JPEG"), b"x"), "jpeg");
        assert_eq!(extension(Path::new("scan"), b"x"), "scan");
    }
}
