//! Permission checks: the service runs only a configuration and a model
//! that nobody but their owner can change.
//!
//! A configuration or model file writable by its group or by everyone,
//! or a model in a folder others can write (where the file or the
//! `model install` link could be swapped), would let any local user
//! change what the box decides. Such files are refused with the mode and
//! the `chmod` that fixes it.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// Why `path` (a file or a folder) must not be trusted, or `None` if only
/// its owner can write it. Sticky folders such as `/tmp` are refused too:
/// a model link there is not safe from other users.
pub fn writable_by_others(path: &Path) -> Option<String> {
    let meta = std::fs::metadata(path).ok()?;
    let mode = meta.permissions().mode();
    (mode & 0o022 != 0).then(|| {
        format!(
            "{} is writable by {} (mode {:o}): anyone who can write it can change what the box decides; \
             run `chmod go-w {}`",
            path.display(),
            if mode & 0o002 != 0 {
                "everyone"
            } else {
                "its group"
            },
            mode & 0o7777,
            path.display()
        )
    })
}

/// Refuse a model path whose file (after links) or whose folder others can
/// write.
pub fn check_model(path: &Path) -> Option<String> {
    let target = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let folder = |p: &Path| {
        p.parent()
            .filter(|d| !d.as_os_str().is_empty())
            .map_or_else(|| Path::new(".").to_path_buf(), Path::to_path_buf)
    };
    writable_by_others(&target)
        .or_else(|| writable_by_others(&folder(path)))
        .or_else(|| writable_by_others(&folder(&target)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_or_world_writable_files_and_folders_are_named() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let file = dir.path().join("m.onnx");
        std::fs::write(&file, b"x").unwrap();
        let set = |p: &Path, mode| {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap()
        };
        set(&file, 0o644);
        assert_eq!(writable_by_others(&file), None);
        assert_eq!(check_model(&file), None);
        set(&file, 0o664);
        let why = check_model(&file).unwrap();
        assert!(
            why.contains("m.onnx") && why.contains("its group") && why.contains("664"),
            "{why}"
        );
        set(&file, 0o646);
        assert!(writable_by_others(&file).unwrap().contains("everyone"));
        set(&file, 0o644);
        set(dir.path(), 0o777);
        let why = check_model(&file).unwrap();
        assert!(why.contains("777") && !why.contains("m.onnx is"), "{why}");
        set(dir.path(), 0o755);
        // Through a link: the target is checked.
        let link = dir.path().join("current.onnx");
        std::os::unix::fs::symlink("m.onnx", &link).unwrap();
        assert_eq!(check_model(&link), None);
        set(&file, 0o666);
        assert!(check_model(&link).unwrap().contains("m.onnx"));
    }
}
