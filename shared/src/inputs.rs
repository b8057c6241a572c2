//! The scans a command is given: files as they are, folders expanded.
//!
//! `classify` (host and device) and `explain` accept folders as well as
//! files, as batch tools for image classifiers do: a folder stands for
//! every file below it, recursively, in sorted path order, skipping hidden
//! files and folders (names starting with `.`). Files are not filtered by
//! extension (a DICOM object often has none); a file the classifier cannot
//! read, or a broken link, gets its own error line as before. A folder with
//! no files in it is an error naming it.

use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// Expand `paths`: each folder to the files below it (sorted, hidden ones
/// skipped), each other path kept as given (a missing file stays, so the
/// caller reports it with the others). An entry below a folder that cannot
/// be followed (a broken link, an unreadable subfolder) is kept as a path
/// too, for the same reason. A folder with no files below it is an error
/// naming it.
pub fn expand(paths: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for path in paths {
        if path.is_dir() {
            let files = walk(path)?;
            if files.is_empty() {
                return Err(Error::io(
                    path,
                    std::io::Error::new(std::io::ErrorKind::NotFound, "no files in this folder"),
                ));
            }
            out.extend(files);
        } else {
            out.push(path.clone());
        }
    }
    Ok(out)
}

fn hidden(entry: &walkdir::DirEntry) -> bool {
    entry.depth() > 0 && entry.file_name().to_string_lossy().starts_with('.')
}

/// The files below `dir`, sorted by path; entries that cannot be followed
/// are kept as paths (their readers report them).
fn walk(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for entry in walkdir::WalkDir::new(dir)
        .follow_links(true)
        .sort_by_file_name()
        .into_iter()
        .filter_entry(|e| !hidden(e))
    {
        match entry {
            Ok(e) if e.file_type().is_file() => files.push(e.into_path()),
            Ok(_) => {}
            Err(e) => match e.path() {
                Some(p) if p != dir => files.push(p.to_path_buf()),
                _ => {
                    let io = e
                        .into_io_error()
                        .unwrap_or_else(|| std::io::Error::other("a symbolic link loops back"));
                    return Err(Error::io(dir, io));
                }
            },
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

    #[cfg(unix)]
    #[test]
    fn a_broken_link_stays_for_its_reader_and_an_empty_folder_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::write(root.join("a.jpg"), b"x").unwrap();
        std::os::unix::fs::symlink(root.join("gone.jpg"), root.join("b.jpg")).unwrap();
        let got = expand(&[root.to_path_buf()]).unwrap();
        assert_eq!(got, vec![root.join("a.jpg"), root.join("b.jpg")]);
        let empty = root.join("empty");
        std::fs::create_dir_all(empty.join(".hidden")).unwrap();
        std::fs::write(empty.join(".hidden/x.jpg"), b"x").unwrap();
        let err = expand(std::slice::from_ref(&empty))
            .unwrap_err()
            .to_string();
        assert!(err.contains("empty") && err.contains("no files"), "{err}");
    }
}
