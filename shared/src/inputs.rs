//! The scans a command is given: files as they are, folders expanded.
//!
//! `classify`, `explain` and `evaluate` (host and device) accept folders as
//! well as files, as batch tools for image classifiers do: a folder stands
//! for every file below it, recursively, in sorted path order, skipping
//! hidden files and folders (names starting with `.`). Files are not
//! filtered by extension (a DICOM object often has none); a file the
//! classifier cannot read gets its own error line as before.

use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// Expand `paths`: each folder to the files below it (sorted, hidden ones
/// skipped), each other path kept as given (a missing file stays, so the
/// caller reports it with the others). A folder that cannot be read is an
/// error naming it.
pub fn expand(paths: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for path in paths {
        if path.is_dir() {
            out.extend(walk(path)?);
        } else {
            out.push(path.clone());
        }
    }
    Ok(out)
}

fn hidden(entry: &walkdir::DirEntry) -> bool {
    entry.depth() > 0 && entry.file_name().to_string_lossy().starts_with('.')
}

/// The files below `dir`, sorted by path.
fn walk(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for entry in walkdir::WalkDir::new(dir)
        .follow_links(true)
        .sort_by_file_name()
        .into_iter()
        .filter_entry(|e| !hidden(e))
    {
        let entry = entry.map_err(|e| {
            let at = e.path().unwrap_or(dir).to_path_buf();
            let io = e
                .into_io_error()
                .unwrap_or_else(|| std::io::Error::other("a symbolic link loops back"));
            Error::io(at, io)
        })?;
        if entry.file_type().is_file() {
            files.push(entry.into_path());
        }
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folders_expand_recursively_in_order_without_hidden_files() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for f in [
            "b.png",
            "a.jpg",
            "sub/z.dcm",
            "sub/.hidden.jpg",
            ".git/x.jpg",
            "IM0001",
        ] {
            let p = root.join(f);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, b"x").unwrap();
        }
        let single = root.join("b.png");
        let missing = root.join("no such file.jpg");
        let got = expand(&[missing.clone(), root.to_path_buf(), single.clone()]).unwrap();
        let expected: Vec<PathBuf> = vec![
            missing,
            root.join("IM0001"),
            root.join("a.jpg"),
            root.join("b.png"),
            root.join("sub/z.dcm"),
            single,
        ];
        assert_eq!(got, expected);
    }
}
