//! A labelled dataset: one folder per class, as Keras `flow_from_directory`.
//!
//! [`Dataset::load`] lists `ROOT/<negative>/` and `ROOT/<positive>/`
//! (default `no/` and `yes/`), reads and decodes every file once (in
//! parallel), and keeps for each image its content hash and perceptual hash.
//! A file that does not decode is reported by name with the reason and
//! skipped; the run goes on. Extensions are matched case-insensitively and
//! names with spaces are fine. Near-duplicates are grouped by [`crate::dedup`].

use std::path::{Path, PathBuf};

use image_hasher::ImageHash;
use rayon::prelude::*;
use serde::Serialize;

use scanside_shared::preprocess::{DecodeLimits, decode};

use crate::{Error, Result};

/// Extensions considered images (compared case-insensitively). Files with no
/// extension are tried too: DICOM files often have none (their content says
/// what they are).
pub const IMAGE_EXTENSIONS: [&str; 8] =
    ["jpg", "jpeg", "png", "bmp", "tif", "tiff", "dcm", "dicom"];

/// Which folders hold which class.
#[derive(Clone, Debug)]
pub struct DatasetOptions {
    /// The dataset root.
    pub root: PathBuf,
    /// Folder (and label) of the negative class.
    pub negative: String,
    /// Folder (and label) of the positive class.
    pub positive: String,
    /// Decode bounds.
    pub limits: DecodeLimits,
}

impl DatasetOptions {
    /// `yes/` positive, `no/` negative, default decode limits.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        DatasetOptions {
            root: root.into(),
            negative: "no".into(),
            positive: "yes".into(),
            limits: DecodeLimits::default(),
        }
    }
}

/// One usable image.
#[derive(Clone, Debug)]
pub struct Item {
    /// Path of the file.
    pub path: PathBuf,
    /// 1 for the positive class, 0 for the negative.
    pub label: u8,
    /// SHA-256 of the file bytes.
    pub sha256: String,
    /// Perceptual hash (64-bit DCT mean hash).
    pub phash: ImageHash,
    /// Width and height as decoded.
    pub dims: (u32, u32),
}

/// A file that was not used, and why.
#[derive(Clone, Debug, Serialize)]
pub struct Skipped {
    /// The file.
    pub path: PathBuf,
    /// Why it was skipped.
    pub reason: String,
}

/// A loaded dataset.
#[derive(Clone, Debug)]
pub struct Dataset {
    /// The root folder.
    pub root: PathBuf,
    /// `[negative, positive]` labels.
    pub labels: [String; 2],
    /// Usable images, sorted by path.
    pub items: Vec<Item>,
    /// Files that were skipped, with reasons.
    pub skipped: Vec<Skipped>,
}

fn has_image_extension(path: &Path) -> bool {
    match path.extension().and_then(|e| e.to_str()) {
        Some(e) => IMAGE_EXTENSIONS.iter().any(|x| e.eq_ignore_ascii_case(x)),
        None => true,
    }
}

/// The perceptual hasher used for near-duplicate detection.
pub fn phasher() -> image_hasher::Hasher {
    image_hasher::HasherConfig::new()
        .hash_size(8, 8)
        .preproc_dct()
        .hash_alg(image_hasher::HashAlg::Mean)
        .to_hasher()
}

impl Dataset {
    /// List, read and decode the dataset. Fails only if a class folder is
    /// missing or a class ends up empty; bad files are skipped and listed.
    pub fn load(opts: &DatasetOptions) -> Result<Dataset> {
        let mut candidates: Vec<(PathBuf, u8)> = Vec::new();
        let mut skipped = Vec::new();
        for (label, class) in [(0u8, &opts.negative), (1u8, &opts.positive)] {
            let dir = opts.root.join(class);
            let entries = std::fs::read_dir(&dir).map_err(|e| Error::Dataset {
                path: opts.root.clone(),
                reason: format!("cannot list class folder `{}`: {e}", dir.display()),
            })?;
            for entry in entries {
                let entry = entry.map_err(|e| Error::io(&dir, e))?;
                let path = entry.path();
                if path.is_dir() {
                    skipped.push(Skipped {
                        path,
                        reason: "a folder, not an image file".into(),
                    });
                } else if has_image_extension(&path) {
                    candidates.push((path, label));
                } else {
                    skipped.push(Skipped {
                        path,
                        reason: format!(
                            "not an image extension (expected one of {}, or none)",
                            IMAGE_EXTENSIONS.join(", ")
                        ),
                    });
                }
            }
        }
        candidates.sort();
        let hasher = phasher();
        let results: Vec<std::result::Result<Item, Skipped>> = candidates
            .into_par_iter()
            .map(|(path, label)| {
                let skip = |reason: String| Skipped {
                    path: path.clone(),
                    reason,
                };
                let bytes = std::fs::read(&path).map_err(|e| skip(format!("cannot read: {e}")))?;
                let image =
                    decode(&bytes, &path, &opts.limits).map_err(|e| skip(reason_only(&e)))?;
                Ok(Item {
                    sha256: scanside_shared::sha256_hex(&bytes),
                    phash: hasher.hash_image(&image),
                    dims: (image.width(), image.height()),
                    path: path.clone(),
                    label,
                })
            })
            .collect();
        let mut items = Vec::new();
        for r in results {
            match r {
                Ok(item) => items.push(item),
                Err(s) => skipped.push(s),
            }
        }
        skipped.sort_by(|a, b| a.path.cmp(&b.path));
        for (label, class) in [(0u8, &opts.negative), (1u8, &opts.positive)] {
            if !items.iter().any(|i| i.label == label) {
                return Err(Error::Dataset {
                    path: opts.root.clone(),
                    reason: format!("class `{class}` has no readable image"),
                });
            }
        }
        Ok(Dataset {
            root: opts.root.clone(),
            labels: [opts.negative.clone(), opts.positive.clone()],
            items,
            skipped,
        })
    }

    /// Number of images of each class, `[negative, positive]`.
    pub fn class_counts(&self) -> [usize; 2] {
        let pos = self.items.iter().filter(|i| i.label == 1).count();
        [self.items.len() - pos, pos]
    }

    /// SHA-256 over the sorted `label sha256` lines: identifies the data.
    pub fn content_sha256(&self) -> String {
        self.content_sha256_of(|_| true)
    }

    /// [`Dataset::content_sha256`] of the items `keep` accepts: what the
    /// data hash of a model trained on just those would be.
    pub fn content_sha256_of(&self, keep: impl Fn(&Item) -> bool) -> String {
        let mut lines: Vec<String> = self
            .items
            .iter()
            .filter(|i| keep(i))
            .map(|i| format!("{} {}\n", self.labels[i.label as usize], i.sha256))
            .collect();
        lines.sort();
        scanside_shared::sha256_hex(lines.concat().as_bytes())
    }

    /// A path relative to the dataset root, for reports.
    pub fn relative<'a>(&self, path: &'a Path) -> &'a Path {
        path.strip_prefix(&self.root).unwrap_or(path)
    }
}

/// An error's message without the path prefix (the path is reported beside).
fn reason_only(e: &scanside_shared::Error) -> String {
    match e {
        scanside_shared::Error::Decode { reason, .. }
        | scanside_shared::Error::TooLarge { reason, .. } => reason.clone(),
        other => other.to_string(),
    }
}
