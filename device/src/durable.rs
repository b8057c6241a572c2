//! Crash-safe file writes, shared by the DICOM node and the scan archive.
//!
//! The bytes go to a temporary file in the target folder with a name no
//! other writer uses (`.<name>.<pid>-<n>.part`, created with `create_new`),
//! are fsynced, renamed into place, and the folder is fsynced: after a
//! power cut the folder holds either no file or the whole file, never a
//! torn one. Files are created mode 0644 whatever the umask (the service
//! refuses a model its group could change). The inbox ignores `.part` files, and start-up removes stale
//! ones ([`remove_stale_parts`]).

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Write `parts`, concatenated, to `dir/name` atomically (see the module
/// comment). A failed folder sync only weakens durability across a power
/// cut, so it is logged rather than returned.
pub fn write_atomically(dir: &Path, name: &str, parts: &[&[u8]]) -> std::io::Result<()> {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let temp = dir.join(format!(
        ".{name}.{}-{}.part",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::SeqCst)
    ));
    let result = (|| {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .open(&temp)?;
        for part in parts {
            file.write_all(part)?;
        }
        file.sync_all()?;
        drop(file);
        std::fs::rename(&temp, dir.join(name))
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&temp);
        return Err(e);
    }
    if let Err(e) = std::fs::File::open(dir).and_then(|d| d.sync_all()) {
        eprintln!("cannot sync folder {}: {e}", dir.display());
    }
    Ok(())
}

/// Remove temporary files that [`write_atomically`] left in `dir` for a
/// name accepted by `ours` (a crash or power cut mid-write). Returns how
/// many were removed.
pub fn remove_stale_parts(dir: &Path, ours: impl Fn(&str) -> bool) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .filter(|entry| {
            let name = entry.file_name().to_string_lossy().into_owned();
            let target = name
                .strip_prefix('.')
                .and_then(|n| n.strip_suffix(".part"))
                .and_then(|n| n.rsplit_once('.'))
                .map(|(target, _)| target);
            target.is_some_and(&ours) && std::fs::remove_file(entry.path()).is_ok()
        })
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_whole_files_and_cleans_only_its_own_leftovers() {
        let dir = tempfile::tempdir().unwrap();
        write_atomically(dir.path(), "a.bin", &[b"ab", b"cd"]).unwrap();
        assert_eq!(std::fs::read(dir.path().join("a.bin")).unwrap(), b"abcd");
        // Leftovers of an interrupted write, and files that are not ours.
        for name in [
            ".b.dcm.42-7.part",
            ".c.png.1-0.part",
            ".export.part",
            "d.dcm",
        ] {
            std::fs::write(dir.path().join(name), b"x").unwrap();
        }
        let removed = remove_stale_parts(dir.path(), |n| n.ends_with(".dcm"));
        assert_eq!(removed, 1);
        let mut left: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, [".c.png.1-0.part", ".export.part", "a.bin", "d.dcm"]);
    }
}
