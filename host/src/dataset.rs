//! A labelled dataset: one folder per class, as Keras `flow_from_directory`.
//!
//! [`Dataset::load`] lists `ROOT/<negative>/` and `ROOT/<positive>/`
//! (default `no/` and `yes/`), reads and decodes every file once (in
//! parallel), and keeps for each image its content hash and perceptual hash.
//! A file that does not decode is reported by name with the reason and
//! skipped; the run goes on. Extensions are matched case-insensitively and
//! names with spaces are fine. Near-duplicates are grouped by [`crate::dedup`].
//!
//! Decoding and hashing every image is most of a warm re-train's scan
//! (about 1 s of 9 on the team set), so [`Dataset::load_cached`] records what
//! a file's decode established (its perceptual hash and dimensions) in the
//! feature cache, keyed by the file's content hash and the decode limits,
//! and a re-run reads that instead of decoding again.

use std::path::{Path, PathBuf};

use image_hasher::ImageHash;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use scanside_shared::preprocess::{DecodeLimits, decode};

use crate::backbone::write_atomically;
use crate::features::FeatureCache;
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
    /// Index of the source folder it came from ([`Dataset::roots`]).
    pub source: usize,
}

impl Item {
    /// Whether the file is a reviewed device scan: `scanside review` files
    /// each one under its content hash (`<sha256>.<ext>`), a name no other
    /// image carries.
    pub fn is_reviewed_scan(&self) -> bool {
        self.path.file_stem() == Some(std::ffi::OsStr::new(&self.sha256))
    }
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
    /// The root folder (the first source's).
    pub root: PathBuf,
    /// Every source folder, in the order given; [`Item::source`] indexes it.
    pub roots: Vec<PathBuf>,
    /// `[negative, positive]` labels.
    pub labels: [String; 2],
    /// Usable images: each source's sorted by path, sources in order.
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

/// What [`phasher`] computes; part of the decode records' key.
const PHASH_RECIPE: &str = "dct-mean-8x8";

/// What a successful decode established about a file.
#[derive(Serialize, Deserialize)]
struct DecodeFacts {
    /// [`phasher`]'s hash, base64.
    phash: String,
    width: u32,
    height: u32,
}

impl DecodeFacts {
    /// The record of a decode's results.
    fn json(phash: &ImageHash, (width, height): (u32, u32)) -> Vec<u8> {
        let facts = DecodeFacts {
            phash: phash.to_base64(),
            width,
            height,
        };
        serde_json::to_vec(&facts).expect("serialises")
    }

    /// A record's hash and dimensions, or `None` if it is missing or
    /// unreadable (then the file is decoded again).
    fn read(path: &Path) -> Option<(ImageHash, (u32, u32))> {
        let facts: DecodeFacts = serde_json::from_slice(&std::fs::read(path).ok()?).ok()?;
        let phash = ImageHash::from_base64(&facts.phash).ok()?;
        Some((phash, (facts.width, facts.height)))
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
        Dataset::load_with(opts, None)
    }

    /// [`Dataset::load`], reusing the decode records in `cache` for files
    /// whose bytes it has seen under the same decode limits (and recording
    /// the others). The items are the same as without the cache.
    pub fn load_cached(opts: &DatasetOptions, cache: &FeatureCache) -> Result<Dataset> {
        Dataset::load_with(opts, Some(cache))
    }

    fn load_with(opts: &DatasetOptions, cache: Option<&FeatureCache>) -> Result<Dataset> {
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
                let sha256 = scanside_shared::sha256_hex(&bytes);
                let record = cache.map(|c| {
                    c.record_path(
                        "decoded",
                        &format!("{sha256}|{:?}|{PHASH_RECIPE}", opts.limits),
                    )
                });
                let (phash, dims) = match record.as_deref().and_then(DecodeFacts::read) {
                    Some(known) => known,
                    None => {
                        let image = decode(&bytes, &path, &opts.limits)
                            .map_err(|e| skip(reason_only(&e)))?;
                        let (phash, dims) =
                            (hasher.hash_image(&image), (image.width(), image.height()));
                        if let Some(record) = &record {
                            // Only a speed-up: a cache that cannot be written
                            // (read-only, full) must not stop the scan.
                            let _ = write_atomically(record, &DecodeFacts::json(&phash, dims));
                        }
                        (phash, dims)
                    }
                };
                Ok(Item {
                    sha256,
                    phash,
                    dims,
                    path: path.clone(),
                    label,
                    source: 0,
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
            roots: vec![opts.root.clone()],
            labels: [opts.negative.clone(), opts.positive.clone()],
            items,
            skipped,
        })
    }

    /// Several source folders as one dataset (`train --data A --data B`):
    /// each loaded like [`Dataset::load_cached`] (every class must be in
    /// every source), their items in source order, each item tagged with
    /// its source. With one source this is exactly `load_cached`.
    pub fn load_sources(sources: &[DatasetOptions], cache: &FeatureCache) -> Result<Dataset> {
        let (first, rest) = sources
            .split_first()
            .ok_or_else(|| Error::Config("no data folder given".into()))?;
        let mut all = Dataset::load_cached(first, cache)?;
        for (source, opts) in rest.iter().enumerate() {
            let more = Dataset::load_cached(opts, cache)?;
            if all.roots.contains(&opts.root) {
                return Err(Error::Config(format!(
                    "--data {} is given twice",
                    opts.root.display()
                )));
            }
            all.roots.push(opts.root.clone());
            all.items.extend(more.items.into_iter().map(|i| Item {
                source: source + 1,
                ..i
            }));
            all.skipped.extend(more.skipped);
        }
        Ok(all)
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

    /// A path relative to its source folder, for reports (prefixed with
    /// the folder's name when there are several sources).
    pub fn relative(&self, path: &Path) -> PathBuf {
        for root in &self.roots {
            if let Ok(rel) = path.strip_prefix(root) {
                return match (self.roots.len(), root.file_name()) {
                    (1, _) | (_, None) => rel.to_path_buf(),
                    (_, Some(name)) => Path::new(name).join(rel),
                };
            }
        }
        path.to_path_buf()
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

#[cfg(test)]
mod tests {
    use super::*;

    /// `yes/` and `no/` with three small generated images each (one
    /// greyscale PNG with a space in its name, one RGB JPEG, one 16-bit
    /// PNG per class) and one file that is not an image.
    fn tiny_dataset(root: &Path) {
        for (class, shift) in [("no", 0u32), ("yes", 40)] {
            let dir = root.join(class);
            std::fs::create_dir_all(&dir).unwrap();
            let grey = image::GrayImage::from_fn(48 + shift, 40, |x, y| {
                image::Luma([((x * 5 + y * 3 + shift) % 256) as u8])
            });
            grey.save(dir.join("slice one.png")).unwrap();
            let rgb = image::RgbImage::from_fn(64, 32 + shift, |x, y| {
                image::Rgb([(x * 4) as u8, (y * 2 + shift) as u8, ((x ^ y) * 3) as u8])
            });
            rgb.save(dir.join("slice2.JPG")).unwrap();
            let deep = image::ImageBuffer::<image::Luma<u16>, Vec<u16>>::from_fn(30, 30, |x, y| {
                image::Luma([(x * 2000 + y * 37 + shift) as u16])
            });
            deep.save(dir.join("deep.png")).unwrap();
            std::fs::write(dir.join("broken.jpg"), b"\xff\xd8 not really a jpeg").unwrap();
        }
    }

    /// Everything an item says, one line per item.
    fn facts(d: &Dataset) -> Vec<String> {
        d.items
            .iter()
            .map(|i| {
                let (path, phash) = (i.path.display(), i.phash.to_base64());
                format!("{path} {} {} {phash} {:?}", i.label, i.sha256, i.dims)
            })
            .collect()
    }

    /// The cached load gives exactly the uncached items, records each
    /// decodable file once, reads those records on the next run, and falls
    /// back to decoding when a record is damaged.
    #[test]
    fn only_a_file_named_by_its_content_hash_is_a_reviewed_scan() {
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path().join("data");
        tiny_dataset(&data);
        // A copy as `scanside review` files it, and one renamed by a user.
        let bytes = std::fs::read(data.join("yes/slice2.JPG")).unwrap();
        let sha = scanside_shared::sha256_hex(&bytes);
        std::fs::write(data.join(format!("yes/{sha}.jpg")), &bytes).unwrap();
        std::fs::write(data.join("yes/reviewed-by-me.jpg"), &bytes).unwrap();
        let d = Dataset::load(&DatasetOptions::new(&data)).unwrap();
        let reviewed: Vec<String> = d
            .items
            .iter()
            .filter(|i| i.is_reviewed_scan())
            .map(|i| i.path.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(reviewed, [format!("{sha}.jpg")]);
    }

    #[test]
    fn cached_load_matches_decoding_and_survives_damaged_records() {
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path().join("data");
        tiny_dataset(&data);
        let opts = DatasetOptions::new(&data);
        let cache = FeatureCache::new(tmp.path().join("cache"));

        let plain = Dataset::load(&opts).unwrap();
        assert_eq!(plain.items.len(), 6);
        assert_eq!(plain.skipped.len(), 2, "{:?}", plain.skipped);

        let first = Dataset::load_cached(&opts, &cache).unwrap();
        assert_eq!(facts(&first), facts(&plain));
        assert_eq!(first.skipped.len(), 2, "bad files are still skipped");
        let records: Vec<PathBuf> = std::fs::read_dir(tmp.path().join("cache/decoded"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        assert_eq!(records.len(), 6, "one record per decodable file");

        // The second run reads the records: a doctored one shows through.
        let record = records
            .iter()
            .find(|r| std::fs::read_to_string(r).unwrap().contains("\"width\":30"))
            .expect("the 16-bit image's record");
        let doctored = std::fs::read_to_string(record)
            .unwrap()
            .replace("\"width\":30", "\"width\":31");
        std::fs::write(record, doctored).unwrap();
        let second = Dataset::load_cached(&opts, &cache).unwrap();
        assert_eq!(
            second.items.iter().filter(|i| i.dims == (31, 30)).count(),
            1
        );

        // A damaged record is ignored: the file is decoded (and re-recorded).
        std::fs::write(record, b"{ not json").unwrap();
        let third = Dataset::load_cached(&opts, &cache).unwrap();
        assert_eq!(facts(&third), facts(&plain));
    }
}
