//! Backbone features for every (image, view), cached on disk.
//!
//! Extraction is the slow part of training (one VGG16 pass per view), so its
//! results are kept: one file per (image content, backbone weights,
//! preprocessing, view) under the cache folder, written atomically. An
//! interrupted run loses at most the images in flight, and a re-run with the
//! same inputs extracts nothing. Work is spread over all cores, one tract plan
//! shared by the workers, with a progress bar.
//!
//! The cached maps become the head's input through [`head_input`]: a
//! [`Pooling`], a [`FeatureTransform`], optionally left–right
//! [`Asymmetry`] features and, with [`Blocks::Block4Last`], the same
//! poolings of VGG16's block 4 map (taken from the same forward pass and
//! cached beside the last block's), exactly as the exported graph computes
//! them.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use indicatif::{ProgressBar, ProgressStyle};
use rayon::prelude::*;

use scanside_shared::explain::half_columns;
use scanside_shared::preprocess::{DecodeLimits, load_rgb, resize_rgb, tensor_from_rgb};

use crate::augment::{self, Augmentation};
use crate::backbone::{Backbone, FeatureMap};
use crate::dataset::Item;
use crate::{Error, Result};

const MAGIC: &[u8; 4] = b"SSF1";

/// The on-disk feature cache.
#[derive(Clone, Debug)]
pub struct FeatureCache {
    dir: PathBuf,
}

impl FeatureCache {
    /// A cache in `dir` (created on first write).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        FeatureCache { dir: dir.into() }
    }

    /// The default cache folder: `$SCANSIDE_CACHE`, else
    /// `$XDG_CACHE_HOME/scanside`, else `~/.cache/scanside`, else
    /// `.scanside-cache`.
    pub fn default_dir() -> PathBuf {
        if let Some(d) = std::env::var_os("SCANSIDE_CACHE") {
            return PathBuf::from(d);
        }
        if let Some(d) = std::env::var_os("XDG_CACHE_HOME") {
            return PathBuf::from(d).join("scanside");
        }
        if let Some(h) = std::env::var_os("HOME") {
            return PathBuf::from(h).join(".cache").join("scanside");
        }
        PathBuf::from(".scanside-cache")
    }

    /// Where the export verification of a model (by SHA-256) on a dataset
    /// (by content SHA-256) is recorded.
    pub fn verification_path(&self, model_sha256: &str, data_sha256: &str) -> PathBuf {
        self.dir.join("verified").join(format!(
            "{model_sha256}-{data_sha256}-{}.json",
            scanside_shared::SCANSIDE_VERSION
        ))
    }

    /// Where a record of `kind` (e.g. `calibration`) keyed by `key` lives.
    pub fn record_path(&self, kind: &str, key: &str) -> PathBuf {
        let key = format!("{key}|{}", scanside_shared::SCANSIDE_VERSION);
        self.dir.join(kind).join(format!(
            "{}.json",
            scanside_shared::sha256_hex(key.as_bytes())
        ))
    }

    /// Where the map of `tensor` (`None`: the backbone's cut) for one view
    /// is cached.
    fn path(
        &self,
        backbone: &Backbone,
        item: &Item,
        view: usize,
        augmentation: Augmentation,
        tensor: Option<&str>,
    ) -> PathBuf {
        let recipe = if view == 0 {
            "none"
        } else {
            augmentation.recipe()
        };
        let mut key = format!(
            "{}|{}|{}|{}|{view}",
            item.sha256,
            backbone.manifest.weights_sha256,
            backbone.spec.key(),
            recipe
        );
        if let Some(t) = tensor {
            key.push('|');
            key.push_str(t);
        }
        let name = scanside_shared::sha256_hex(key.as_bytes());
        self.dir.join("features").join(&name[..2]).join(&name)
    }

    fn read(path: &Path) -> Option<FeatureMap> {
        let bytes = std::fs::read(path).ok()?;
        if bytes.len() < 16 || &bytes[..4] != MAGIC {
            return None;
        }
        let dim = |i: usize| u32::from_le_bytes(bytes[i..i + 4].try_into().unwrap()) as usize;
        let (channels, height, width) = (dim(4), dim(8), dim(12));
        let n = channels * height * width;
        if bytes.len() != 16 + 4 * n {
            return None;
        }
        let data = bytes[16..]
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect();
        Some(FeatureMap {
            channels,
            height,
            width,
            data,
        })
    }

    fn write(path: &Path, map: &FeatureMap) -> Result<()> {
        let mut bytes = Vec::with_capacity(16 + 4 * map.data.len());
        bytes.extend_from_slice(MAGIC);
        for d in [map.channels, map.height, map.width] {
            bytes.extend_from_slice(&(d as u32).to_le_bytes());
        }
        bytes.extend(map.data.iter().flat_map(|v| v.to_le_bytes()));
        let dir = path.parent().expect("cache paths have a parent");
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(|e| Error::io(dir, e))?;
        tmp.write_all(&bytes).map_err(|e| Error::io(path, e))?;
        tmp.persist(path).map_err(|e| Error::io(path, e.error))?;
        Ok(())
    }
}

/// The maps of one (item, view): the cut's, then block 4's if extracted.
type ViewMaps = Vec<FeatureMap>;

/// Features of every view of every item: `maps[item][view]`.
pub struct Extracted {
    /// Feature maps per item, per view.
    pub maps: Vec<Vec<FeatureMap>>,
    /// Block 4's maps, the same way, when the backbone returns them
    /// ([`Backbone::load_with_block4`]).
    pub block4: Option<Vec<Vec<FeatureMap>>>,
    /// How many (item, view) pairs were computed (not read from the cache).
    pub computed: usize,
}

/// Compute one view's feature maps from the image file: the cut's, then
/// block 4's if the backbone returns it.
pub fn compute_view(
    backbone: &Backbone,
    item: &Item,
    view: usize,
    augmentation: Augmentation,
    limits: &DecodeLimits,
) -> Result<Vec<FeatureMap>> {
    let rgb = resize_rgb(&load_rgb(&item.path, limits)?, &backbone.spec);
    let input = tensor_from_rgb(
        &augment::view(&rgb, &item.sha256, view, augmentation),
        &backbone.spec,
    )?;
    backbone.all_features(&input)
}

/// Get features for views `0..views` of every item, from the cache where
/// possible, extracting the rest in parallel with a progress bar (hidden
/// when `quiet`).
pub fn extract_all(
    backbone: &Backbone,
    items: &[Item],
    views: usize,
    augmentation: Augmentation,
    cache: &FeatureCache,
    limits: &DecodeLimits,
    quiet: bool,
) -> Result<Extracted> {
    // The tensors cached per view: the cut, then block 4 if asked for.
    let tensors: Vec<Option<&str>> = std::iter::once(None)
        .chain(backbone.block4.as_deref().map(Some))
        .collect();
    let read = |i: usize, v: usize| -> Option<Vec<FeatureMap>> {
        tensors
            .iter()
            .map(|t| FeatureCache::read(&cache.path(backbone, &items[i], v, augmentation, *t)))
            .collect()
    };
    let mut maps: Vec<Vec<Option<Vec<FeatureMap>>>> = (0..items.len())
        .map(|i| (0..views).map(|v| read(i, v)).collect())
        .collect();
    let missing: Vec<(usize, usize)> = maps
        .iter()
        .enumerate()
        .flat_map(|(i, vs)| {
            vs.iter()
                .enumerate()
                .filter(|(_, m)| m.is_none())
                .map(move |(v, _)| (i, v))
        })
        .collect();
    let computed = missing.len();
    if !missing.is_empty() {
        let bar = if quiet {
            ProgressBar::hidden()
        } else {
            ProgressBar::new(missing.len() as u64)
        };
        bar.set_style(
            ProgressStyle::with_template(
                "features {bar:40} {pos}/{len} views [{elapsed_precise} < {eta_precise}]",
            )
            .expect("valid template"),
        );
        let failed = AtomicBool::new(false);
        let results: Vec<((usize, usize), Result<ViewMaps>)> = missing
            .into_par_iter()
            .map(|(i, v)| {
                if failed.load(Ordering::Relaxed) {
                    return (
                        (i, v),
                        Err(Error::Tract("stopped after an earlier error".into())),
                    );
                }
                let r = compute_view(backbone, &items[i], v, augmentation, limits).and_then(|ms| {
                    for (m, t) in ms.iter().zip(&tensors) {
                        FeatureCache::write(
                            &cache.path(backbone, &items[i], v, augmentation, *t),
                            m,
                        )?;
                    }
                    Ok(ms)
                });
                if r.is_err() {
                    failed.store(true, Ordering::Relaxed);
                }
                bar.inc(1);
                ((i, v), r)
            })
            .collect();
        bar.finish_and_clear();
        for ((i, v), r) in results {
            maps[i][v] = Some(r.map_err(|e| match e {
                Error::Shared(s) => Error::Shared(s),
                other => Error::Tract(format!("{}: {other}", items[i].path.display())),
            })?);
        }
    }
    let mut last = Vec::with_capacity(items.len());
    let mut block4 = backbone
        .block4
        .as_ref()
        .map(|_| Vec::with_capacity(items.len()));
    for vs in maps {
        let (mut l, mut b) = (Vec::with_capacity(views), Vec::with_capacity(views));
        for m in vs {
            let mut m = m.expect("filled").into_iter();
            l.push(m.next().expect("the cut's map"));
            b.extend(m.next());
        }
        last.push(l);
        if let Some(block4) = &mut block4 {
            block4.push(b);
        }
    }
    Ok(Extracted {
        maps: last,
        block4,
        computed,
    })
}

/// Which of the backbone's blocks feed the head.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Blocks {
    /// The last block's map only (the backbone's cut; recipes recorded
    /// before the option existed read back as this).
    #[default]
    Last,
    /// Also VGG16's block 4 map, from the same forward pass: its global
    /// poolings, with the same [`Pooling`] and [`FeatureTransform`] (no
    /// asymmetry), appended after everything the last block gives.
    Block4Last,
}

impl Blocks {
    /// `true` for [`Blocks::Last`].
    pub fn is_last(&self) -> bool {
        *self == Blocks::Last
    }
}

/// How a feature map becomes the head's input vector.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Pooling {
    /// Global average pooling (one value per channel).
    Avg,
    /// Global max pooling.
    Max,
    /// Global average and global max pooling, concatenated.
    AvgMax,
}

impl Pooling {
    /// Pool a feature map.
    pub fn apply(self, map: &FeatureMap) -> Vec<f32> {
        let hw = map.height * map.width;
        let planes = map.data.chunks_exact(hw);
        let avg = planes.clone().map(|p| p.iter().sum::<f32>() / hw as f32);
        let max = planes.map(|p| p.iter().copied().fold(f32::NEG_INFINITY, f32::max));
        match self {
            Pooling::Avg => avg.collect(),
            Pooling::Max => max.collect(),
            Pooling::AvgMax => avg.chain(max).collect(),
        }
    }

    /// How many vectors (one per pooling kind, each as long as the map has
    /// channels) [`Pooling::apply`] concatenates.
    pub fn parts(self) -> usize {
        match self {
            Pooling::Avg | Pooling::Max => 1,
            Pooling::AvgMax => 2,
        }
    }
}

/// Whether the head also reads how the two sides of the brain differ.
///
/// A tumour usually sits on one side of a brain that is otherwise roughly
/// mirror-symmetric in these axial slices. With [`Asymmetry::LeftRight`]
/// the head's input gains `|t(P(left)) − t(P(right))|`: the same poolings
/// `P` and transform `t` over the left and the right half of the feature
/// map's columns ([`half_columns`]). On the team set this lifted
/// duplicate-grouped CV AUC by about 0.02, across head variants; the same
/// features of the top and bottom halves (a control) did not help
/// (docs/training.md, "Choosing the head").
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Asymmetry {
    /// Global poolings only (recipes recorded before the option existed
    /// read back as this).
    #[default]
    None,
    /// Global poolings, then the left–right differences.
    LeftRight,
}

impl Asymmetry {
    /// `true` for [`Asymmetry::None`].
    pub fn is_none(&self) -> bool {
        *self == Asymmetry::None
    }
}

/// The head's input for one feature map, exactly as the exported graph
/// computes it up to [`crate::export::POOLED_NAME`]: the transformed
/// poolings of the whole map, then, with [`Asymmetry::LeftRight`],
/// `|left − right|` of the transformed poolings of its two halves, then
/// the transformed poolings of the `block4` map when given
/// ([`Blocks::Block4Last`]).
pub fn head_input(
    map: &FeatureMap,
    pooling: Pooling,
    transform: FeatureTransform,
    asymmetry: Asymmetry,
    block4: Option<&FeatureMap>,
) -> Vec<f32> {
    let pooled = |m: &FeatureMap| {
        let mut row = pooling.apply(m);
        transform.apply(&mut row, pooling.parts());
        row
    };
    let mut row = pooled(map);
    if asymmetry == Asymmetry::LeftRight {
        let [left, right] = half_columns(map.width).map(|cols| pooled(&map.columns(cols)));
        row.extend(left.iter().zip(&right).map(|(l, r)| (l - r).abs()));
    }
    if let Some(b4) = block4 {
        row.extend(pooled(b4));
    }
    row
}

/// A transform of the pooled vectors before the head.
///
/// VGG16's pooled activations are heavy-tailed (a few channels fire tens of
/// times harder than the rest), and a dense head on them leans on those few
/// channels. Compressing them (`ln(1 + x)`; the activations are ≥ 0 after
/// ReLU and pooling) lifted duplicate-grouped cross-validated AUC by about
/// 0.01 on the team set (docs/training.md, "Choosing the head").
/// [`FeatureTransform::SqrtL2`] compresses them the same way and also
/// removes each vector's overall scale, which differs between scanners and
/// contrasts (docs/validation.md, "A linear head on normalised features").
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FeatureTransform {
    /// Use the pooled values as they are (recipes recorded before the
    /// transform existed read back as this).
    #[default]
    None,
    /// `ln(1 + x)` element-wise, exported as ONNX `Add` then `Log`.
    Log1p,
    /// Square root, then each pooled vector (one per pooling kind and
    /// block) scaled to unit L2 length: `√(x / (Σ x + ε))` with
    /// [`scanside_shared::explain::SQRT_L2_EPSILON`], exported as `MatMul`
    /// with ones (the sum), `Add`, `Div` and `Sqrt`.
    SqrtL2,
}

impl FeatureTransform {
    /// Transform a pooled vector made of `parts` equally long vectors (one
    /// per pooling kind, [`Pooling::parts`]) in place, exactly as the
    /// exported graph does.
    pub fn apply(self, pooled: &mut [f32], parts: usize) {
        match self {
            FeatureTransform::None => {}
            FeatureTransform::Log1p => scanside_shared::explain::log1p_in_place(pooled),
            FeatureTransform::SqrtL2 => {
                let len = pooled.len() / parts.max(1);
                for part in pooled.chunks_mut(len.max(1)) {
                    scanside_shared::explain::sqrt_l2_in_place(part);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(channels: usize, height: usize, width: usize, seed: f32) -> FeatureMap {
        FeatureMap {
            channels,
            height,
            width,
            data: (0..channels * height * width)
                .map(|i| ((i as f32 * 0.37 + seed).sin() + 1.0) * 2.0)
                .collect(),
        }
    }

    #[test]
    fn block4_poolings_follow_everything_the_last_block_gives() {
        let (last, b4) = (map(3, 2, 4, 0.0), map(5, 4, 8, 1.0));
        for asymmetry in [Asymmetry::None, Asymmetry::LeftRight] {
            let (p, t) = (Pooling::AvgMax, FeatureTransform::Log1p);
            let without = head_input(&last, p, t, asymmetry, None);
            let with = head_input(&last, p, t, asymmetry, Some(&b4));
            assert_eq!(with[..without.len()], without[..]);
            let mut own = p.apply(&b4);
            t.apply(&mut own, p.parts());
            assert_eq!(with[without.len()..], own[..]);
            assert_eq!(own.len(), 10);
        }
    }

    #[test]
    fn sqrt_l2_gives_each_pooling_unit_length() {
        let m = map(6, 3, 3, 0.5);
        let mut row = Pooling::AvgMax.apply(&m);
        let raw = row.clone();
        FeatureTransform::SqrtL2.apply(&mut row, Pooling::AvgMax.parts());
        for (part, raw) in row.chunks(6).zip(raw.chunks(6)) {
            let norm: f32 = part.iter().map(|v| v * v).sum::<f32>().sqrt();
            assert!((norm - 1.0).abs() < 1e-5, "norm {norm}");
            // A monotone compression: the order of the channels is kept.
            for i in 0..6 {
                for j in 0..6 {
                    assert_eq!(raw[i] < raw[j], part[i] < part[j]);
                }
            }
        }
        // The overall scale of a map is removed.
        let mut brighter = m.clone();
        brighter.data.iter_mut().for_each(|v| *v *= 7.0);
        let mut scaled = Pooling::AvgMax.apply(&brighter);
        FeatureTransform::SqrtL2.apply(&mut scaled, 2);
        for (a, b) in row.iter().zip(&scaled) {
            assert!((a - b).abs() < 1e-5);
        }
    }
}
