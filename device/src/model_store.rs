//! Installed models: `scanside-device model install`, `rollback` and
//! `status`.
//!
//! The configured `model` path is a symbolic link to a file in the same
//! folder, `<model id>.<first 12 hex of its SHA-256>.installed.onnx`;
//! `<model>.previous` links to the model before it. Installing checks the
//! new file first (manifest, tract, one warm-up inference), copies it in
//! with a crash-safe write, points `.previous` at the current model and
//! then swaps the `model` link with one `rename`: after a crash or power
//! cut the link names either the old model or the new one, never a torn
//! file. Rolling back swaps the two links the same way. Only the current
//! and previous files are kept; older `*.installed.onnx` files are removed.
//!
//! A running appliance notices the new target within seconds
//! ([`crate::worker`]), checks it the same way, and records a
//! `ModelChanged` audit record before the new model's first decision. The
//! first install on a box whose `model` is a plain file adopts that file
//! as the previous model.
//!
//! A configuration that pins `model_sha256` runs only that file: install
//! refuses, so a pinned box never silently changes model.

use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use scanside_shared::classifier::{manifest_of, parse_onnx};
use scanside_shared::sha256_hex;

use crate::durable::write_atomically;
use crate::worker::{load_model, load_model_bytes};
use crate::{Error, Result};

/// Suffix of model files the store manages (and may remove).
pub const INSTALLED_SUFFIX: &str = ".installed.onnx";

/// The models behind a configured `model` link.
#[derive(Clone, Debug)]
pub struct ModelStore {
    link: PathBuf,
    dir: PathBuf,
}

/// One installed model.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Installed {
    /// Its model id.
    pub model_id: String,
    /// SHA-256 of the file (hex).
    pub sha256: String,
    /// The file in the store.
    pub file: PathBuf,
}

/// What the links point at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreStatus {
    /// The model in service.
    pub current: Option<Installed>,
    /// The one `rollback` returns to.
    pub previous: Option<Installed>,
}

impl ModelStore {
    /// The store of the configured model path.
    pub fn new(model: &Path) -> Self {
        let dir = match model.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        ModelStore {
            link: model.to_path_buf(),
            dir,
        }
    }

    /// The link to the previous model (`<model>.previous`).
    pub fn previous_link(&self) -> PathBuf {
        let mut name = self.link.file_name().unwrap_or_default().to_os_string();
        name.push(".previous");
        self.dir.join(name)
    }

    fn describe(&self, file: &Path) -> Result<Installed> {
        let bytes = std::fs::read(file).map_err(|e| Error::io(file, e))?;
        let manifest = manifest_of(&parse_onnx(&bytes, file)?)?;
        Ok(Installed {
            model_id: manifest.model_id,
            sha256: sha256_hex(&bytes),
            file: file.to_path_buf(),
        })
    }

    /// Where a link points (in the store's folder), if it is a link.
    fn target(&self, link: &Path) -> Option<PathBuf> {
        std::fs::read_link(link).ok().map(|t| self.dir.join(t))
    }

    /// What the links point at.
    pub fn status(&self) -> Result<StoreStatus> {
        let current = match self.target(&self.link) {
            Some(t) => Some(self.describe(&t)?),
            None if self.link.is_file() => Some(self.describe(&self.link)?),
            None => None,
        };
        let previous = self
            .target(&self.previous_link())
            .map(|t| self.describe(&t))
            .transpose()?;
        Ok(StoreStatus { current, previous })
    }

    /// Point `link` at `file_name` (in the store's folder) atomically.
    fn point(&self, link: &Path, file_name: &str) -> Result<()> {
        let temp = self.dir.join(format!(".link.{}.part", std::process::id()));
        let _ = std::fs::remove_file(&temp);
        std::os::unix::fs::symlink(file_name, &temp).map_err(|e| Error::io(&temp, e))?;
        std::fs::rename(&temp, link).map_err(|e| {
            let _ = std::fs::remove_file(&temp);
            Error::io(link, e)
        })?;
        if let Err(e) = std::fs::File::open(&self.dir).and_then(|d| d.sync_all()) {
            eprintln!("cannot sync folder {}: {e}", self.dir.display());
        }
        Ok(())
    }

    /// Copy `bytes` into the store under its installed name; returns the name.
    fn store(&self, model_id: &str, bytes: &[u8]) -> Result<String> {
        let sha = sha256_hex(bytes);
        let safe_id: String = model_id
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let name = format!("{safe_id}.{}{INSTALLED_SUFFIX}", &sha[..12]);
        let path = self.dir.join(&name);
        let present = std::fs::read(&path).is_ok_and(|b| sha256_hex(&b) == sha);
        if !present {
            write_atomically(&self.dir, &name, &[bytes]).map_err(|e| Error::io(&path, e))?;
        }
        Ok(name)
    }

    /// Install `candidate` as the model in service (see the module
    /// comment). `pinned` is the configuration's `model_sha256`.
    pub fn install(&self, candidate: &Path, pinned: Option<&str>) -> Result<StoreStatus> {
        if let Some(pin) = pinned {
            return Err(Error::Model(format!(
                "the configuration pins model_sha256 = {pin}: this box runs only that file; \
                 remove the pin to manage models with `model install`"
            )));
        }
        let bytes = std::fs::read(candidate).map_err(|e| Error::io(candidate, e))?;
        // The same checks the appliance makes before it serves a model, on
        // exactly the bytes that are stored.
        let checked = load_model_bytes(&bytes, candidate, None, false)
            .map_err(|e| Error::Model(format!("{}: refused: {e}", candidate.display())))?;
        let model_id = checked.manifest().model_id.clone();
        drop(checked);
        // Created 0755: the service refuses a model in a folder others can write.
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(&self.dir)
            .map_err(|e| Error::io(&self.dir, e))?;
        self.remove_leftovers();
        let current = match self.target(&self.link) {
            Some(t) => t.file_name().map(|n| n.to_string_lossy().into_owned()),
            None if self.link.is_file() => {
                // A plain file from before the store: adopt it.
                let old = std::fs::read(&self.link).map_err(|e| Error::io(&self.link, e))?;
                let id = manifest_of(&parse_onnx(&old, &self.link)?)?.model_id;
                Some(self.store(&id, &old)?)
            }
            None => None,
        };
        let new = self.store(&model_id, &bytes)?;
        if current.as_deref() != Some(new.as_str()) {
            if let Some(current) = &current {
                self.point(&self.previous_link(), current)?;
            }
            self.point(&self.link, &new)?;
        }
        self.prune();
        self.status()
    }

    /// Return to the previous model (checked first); the current one
    /// becomes the previous.
    pub fn rollback(&self) -> Result<StoreStatus> {
        let previous_link = self.previous_link();
        let previous = self.target(&previous_link).ok_or_else(|| {
            Error::Model(format!(
                "{}: no previous model to roll back to",
                previous_link.display()
            ))
        })?;
        let current = self.target(&self.link).ok_or_else(|| {
            Error::Model(format!(
                "{}: not a link managed by `model install`",
                self.link.display()
            ))
        })?;
        load_model(&previous, None, false)
            .map_err(|e| Error::Model(format!("{}: refused: {e}", previous.display())))?;
        let name = |p: &Path| {
            p.file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned()
        };
        self.point(&previous_link, &name(&current))?;
        self.point(&self.link, &name(&previous))?;
        self.status()
    }

    /// Remove what an interrupted install left: partial model files and
    /// link candidates (best effort).
    fn remove_leftovers(&self) {
        crate::durable::remove_stale_parts(&self.dir, |n| n.ends_with(INSTALLED_SUFFIX));
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with(".link.") && name.ends_with(".part") {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }

    /// Remove installed files neither link names (best effort).
    fn prune(&self) {
        let keep: Vec<PathBuf> = [self.target(&self.link), self.target(&self.previous_link())]
            .into_iter()
            .flatten()
            .collect();
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let ours = entry
                .file_name()
                .to_string_lossy()
                .ends_with(INSTALLED_SUFFIX);
            if ours
                && !keep.contains(&path)
                && let Err(e) = std::fs::remove_file(&path)
            {
                eprintln!("cannot remove old model {}: {e}", path.display());
            }
        }
    }
}
