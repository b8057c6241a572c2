//! Loading a scanside model in tract and classifying scans with it.
//!
//! [`Classifier::load`] reads the ONNX file once, checks its manifest, fixes
//! the input to a batch of one at the manifest's size and optimises the graph:
//! every later scan only runs the plan. [`classify_files`] prints the result
//! lines that both `scanside classify` and `scanside-device classify` emit, so
//! the two binaries cannot drift apart.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Serialize;
use tract_linalg::multithread::{Executor, multithread_tract_scope};
use tract_onnx::prelude::*;

use crate::dicom::FrameChoice;
use crate::explain::{DenseHead, FeatureMap, Heatmap};
use crate::guard::{self, GuardSpec, OUT_OF_SCOPE, ScopeCheck};
use crate::manifest::ModelManifest;
use crate::preprocess::{
    DecodeLimits, InputTensor, decode_frame, resize_rgb, tensor_from_rgb, to_rgb8,
};
use crate::{Error, Result};

/// Every result says this: scanside is research software.
pub const NOTICE: &str = "research use only; not a medical device, not a diagnosis";

/// A model loaded, verified against its manifest and optimised for batch 1.
pub struct Classifier {
    plan: Arc<TypedRunnableModel>,
    manifest: ModelManifest,
    sha256: String,
    path: PathBuf,
    limits: DecodeLimits,
    frame: FrameChoice,
    executor: Executor,
    /// Set when the plan also returns the feature map (second output).
    head: Option<DenseHead>,
    /// The model's out-of-scope guard, when it has one.
    guard: Option<GuardSpec>,
    /// Index of the plan output holding the head's input, for the guard.
    pooled_output: Option<usize>,
}

impl Explanation {
    /// The picture `explain` writes: the heat blended over the slice, with
    /// the label, probability and threshold underneath.
    pub fn overlay(&self, threshold: f32) -> image::RgbImage {
        let c = &self.classification;
        let first = match &c.scope {
            Some(s) if !s.in_scope => format!(
                "{OUT_OF_SCOPE}: {}",
                s.reason.as_ref().map_or(String::new(), ToString::to_string)
            ),
            _ => format!("{} p={:.3} thr={:.3}", c.label, c.probability, threshold),
        };
        crate::explain::overlay(
            &self.slice,
            &self.heatmap,
            &[
                first,
                format!("Grad-CAM: evidence for '{}'", c.model_label),
                "research use only".to_string(),
            ],
        )
    }
}

/// Largest |Δp| allowed between the model's output and the head read back
/// from its file before [`Classifier::explain_bytes`] refuses to draw a map.
pub const HEAD_READBACK_TOLERANCE: f32 = 1e-4;

/// A classification with its Grad-CAM evidence (see [`crate::explain`]).
#[derive(Clone, Debug)]
pub struct Explanation {
    /// The verdict, as [`Classifier::classify_bytes`] gives it.
    pub classification: Classification,
    /// The class the map explains (the label given), as a label index.
    pub class: usize,
    /// The preprocessed picture the model saw (after crop and resize).
    pub slice: image::RgbImage,
    /// The backbone's last feature map.
    pub features: FeatureMap,
    /// The earlier block's transformed poolings the head also read (empty
    /// for a head without them; see [`DenseHead::earlier`]).
    pub earlier: Vec<f32>,
    /// The Grad-CAM map at the feature map's resolution.
    pub heatmap: Heatmap,
}

/// The verdict on one scan.
#[derive(Clone, Debug, PartialEq)]
pub struct Classification {
    /// Positive-class ("tumour") probability. Computed for every scan; for
    /// an out-of-scope scan it is not an answer.
    pub probability: f32,
    /// The answer: the label at the model's threshold, or
    /// [`OUT_OF_SCOPE`] when the model's guard refused the scan.
    pub label: String,
    /// The label at the model's threshold, whatever the guard said.
    pub model_label: String,
    /// The guard's verdict (`None` for a model without a guard).
    pub scope: Option<ScopeCheck>,
}

impl Classification {
    /// Whether the guard refused the scan.
    pub fn out_of_scope(&self) -> bool {
        self.scope.as_ref().is_some_and(|s| !s.in_scope)
    }
}

/// Parse ONNX bytes into tract's protobuf model, naming the file on failure.
pub fn parse_onnx(bytes: &[u8], path: &Path) -> Result<tract_onnx::pb::ModelProto> {
    tract_onnx::onnx()
        .proto_model_for_read(&mut &bytes[..])
        .map_err(|e| Error::Model {
            path: path.to_path_buf(),
            reason: format!("not a readable ONNX file: {e}"),
        })
}

/// The scanside manifest stored in a parsed model's metadata.
pub fn manifest_of(proto: &tract_onnx::pb::ModelProto) -> Result<ModelManifest> {
    ModelManifest::from_props(
        proto
            .metadata_props
            .iter()
            .map(|p| (p.key.as_str(), p.value.as_str())),
    )
}

impl Classifier {
    /// Load a model file: parse, read the manifest, optimise for batch 1.
    pub fn load(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        Self::from_bytes(&bytes, path)
    }

    /// Load a model already in memory; `path` names it in errors.
    pub fn from_bytes(bytes: &[u8], path: &Path) -> Result<Self> {
        Self::build(bytes, path, false)
    }

    /// Like [`Classifier::from_bytes`], and able to explain: the plan also
    /// returns the backbone's feature map, and the dense head is read back
    /// from the file (see [`Classifier::explain_bytes`]). Classification
    /// results are unchanged.
    pub fn from_bytes_explaining(bytes: &[u8], path: &Path) -> Result<Self> {
        Self::build(bytes, path, true)
    }

    fn build(bytes: &[u8], path: &Path, explaining: bool) -> Result<Self> {
        let model_err = |reason: String| Error::Model {
            path: path.to_path_buf(),
            reason,
        };
        let proto = parse_onnx(bytes, path)?;
        let manifest = manifest_of(&proto).map_err(|e| model_err(e.to_string()))?;
        let shape = manifest.preprocessing.input_shape(1);
        let head = match explaining {
            true => Some(DenseHead::from_proto(&proto).map_err(|e| model_err(e.to_string()))?),
            false => None,
        };
        let guard = manifest
            .extra
            .get(guard::MANIFEST_KEY)
            .map(|v| GuardSpec::from_json(v))
            .transpose()
            .map_err(|e| model_err(e.to_string()))?;
        // Outputs: probabilities; with `head`, the feature map (and the
        // earlier block's poolings); with a guard, the head's input.
        let mut taps: Vec<&str> = Vec::new();
        if let Some(h) = &head {
            taps.push(&h.feature_tensor);
            if let Some(e) = &h.earlier {
                taps.push(&e.tensor);
            }
        }
        let pooled_output = guard.as_ref().map(|_| {
            taps.push(guard::POOLED_TENSOR);
            taps.len()
        });
        let plan = tract_onnx::onnx()
            .model_for_proto_model(&proto)
            .and_then(|m| {
                if taps.is_empty() {
                    return Ok(m);
                }
                let mut outlets = vec![m.output_outlets()?[0]];
                for t in &taps {
                    outlets.push(m.find_outlet_label(t).ok_or_else(|| {
                        tract_onnx::prelude::tract_data::internal::anyhow!(
                            "no tensor `{t}` in the graph"
                        )
                    })?);
                }
                m.with_output_outlets(&outlets)
            })
            .and_then(|m| m.with_input_fact(0, f32::fact(shape).into()))
            .and_then(|m| m.into_optimized())
            .and_then(|m| m.into_runnable())
            .map_err(|e| model_err(format!("tract cannot run it at input {shape:?}: {e:#}")))?;
        let classifier = Classifier {
            plan,
            manifest,
            sha256: crate::sha256_hex(bytes),
            path: path.to_path_buf(),
            limits: DecodeLimits::default(),
            frame: FrameChoice::Middle,
            executor: Executor::SingleThread,
            head,
            guard,
            pooled_output,
        };
        classifier.check_output_shape()?;
        Ok(classifier)
    }

    fn check_output_shape(&self) -> Result<()> {
        let fact = self.plan.model().output_fact(0).map_err(|e| Error::Model {
            path: self.path.clone(),
            reason: e.to_string(),
        })?;
        let dims: Vec<_> = fact.shape.iter().map(|d| d.to_i64().ok()).collect();
        if dims != [Some(1), Some(self.manifest.labels.len() as i64)] {
            return Err(Error::Model {
                path: self.path.clone(),
                reason: format!(
                    "output shape is {:?}, expected [1, {}] class probabilities",
                    fact.shape,
                    self.manifest.labels.len()
                ),
            });
        }
        Ok(())
    }

    /// The model's manifest.
    pub fn manifest(&self) -> &ModelManifest {
        &self.manifest
    }

    /// SHA-256 of the model file.
    pub fn sha256(&self) -> &str {
        &self.sha256
    }

    /// Run each inference on `threads` cores (tract's multithreaded matrix
    /// kernels). The default, 1, suits callers that already classify many
    /// scans in parallel; one scan at a time (the device) wants all cores.
    pub fn with_threads(mut self, threads: usize) -> Self {
        self.executor = if threads > 1 {
            Executor::multithread_with_name(threads, "scanside-tract")
        } else {
            Executor::SingleThread
        };
        self
    }

    /// Class probabilities (softmax output) for one preprocessed input.
    pub fn probabilities(&self, input: &InputTensor) -> Result<Vec<f32>> {
        Ok(self.run(input)?.swap_remove(0).1)
    }

    /// Run the plan: each output's shape and values.
    fn run(&self, input: &InputTensor) -> Result<Vec<(Vec<usize>, Vec<f32>)>> {
        let tensor = Tensor::from_shape(&input.shape, &input.data)
            .map_err(|e| Error::Inference(e.to_string()))?;
        let outputs = multithread_tract_scope(self.executor.clone(), || {
            self.plan.run(tvec!(tensor.into()))
        })
        .map_err(|e| Error::Inference(format!("{e:#}")))?;
        outputs
            .iter()
            .map(|o| {
                let view = o
                    .to_plain_array_view::<f32>()
                    .map_err(|e| Error::Inference(e.to_string()))?;
                Ok((view.shape().to_vec(), view.iter().copied().collect()))
            })
            .collect()
    }

    /// The model's out-of-scope guard, when it has one.
    pub fn guard(&self) -> Option<&GuardSpec> {
        self.guard.as_ref()
    }

    /// The verdict from the plan's outputs for a decoded picture: the
    /// label at the threshold, unless the guard refuses the picture (its
    /// cheap checks) or the head's input (its feature score).
    fn verdict(
        &self,
        picture: &image::RgbImage,
        outputs: &[(Vec<usize>, Vec<f32>)],
    ) -> Result<Classification> {
        let probability = outputs[0].1[self.manifest.positive_index()];
        let model_label = self.manifest.label_for(probability).to_string();
        let scope = match (&self.guard, self.pooled_output) {
            (Some(g), Some(at)) => Some(match g.check_input(picture) {
                Some(refused) => refused,
                None => g.check_features(&outputs[at].1)?,
            }),
            _ => None,
        };
        let label = match &scope {
            Some(s) if !s.in_scope => OUT_OF_SCOPE.to_string(),
            _ => model_label.clone(),
        };
        Ok(Classification {
            probability,
            label,
            model_label,
            scope,
        })
    }

    /// Whether [`Classifier::explain_bytes`] is available (the classifier
    /// was made by [`Classifier::from_bytes_explaining`]).
    pub fn can_explain(&self) -> bool {
        self.head.is_some()
    }

    /// Classify image bytes and compute the Grad-CAM map of the label
    /// given. Fails if the classifier was not made to explain, or if the
    /// dense head read back from the file does not reproduce the model's
    /// probabilities within [`HEAD_READBACK_TOLERANCE`].
    pub fn explain_bytes(&self, bytes: &[u8], origin: &Path) -> Result<Explanation> {
        let head = self.head.as_ref().ok_or_else(|| Error::Model {
            path: self.path.clone(),
            reason: "loaded without the feature-map output; cannot explain".into(),
        })?;
        let picture = self.picture(bytes, origin)?;
        let slice = resize_rgb(&picture, &self.manifest.preprocessing);
        let all = self.run(&tensor_from_rgb(&slice, &self.manifest.preprocessing)?)?;
        let classification = self.verdict(&picture, &all)?;
        let mut outputs = all.into_iter();
        let probabilities = outputs.next().expect("probabilities").1;
        let (shape, data) = outputs.next().expect("the feature map");
        let earlier = match &head.earlier {
            Some(_) => outputs.next().expect("the earlier block's poolings").1,
            None => Vec::new(),
        };
        let features = match shape[..] {
            [1, channels, height, width] => FeatureMap {
                channels,
                height,
                width,
                data,
            },
            _ => {
                return Err(Error::Inference(format!(
                    "feature map of shape {shape:?}, expected [1, C, H, W]"
                )));
            }
        };
        let readback = head.probabilities(&features, &earlier)?;
        // NaN counts as infinitely far (f32::max would skip it).
        let diff = readback
            .iter()
            .zip(&probabilities)
            .map(|(a, b)| (a - b).abs())
            .fold(
                0.0f32,
                |m, d| if d.is_nan() { f32::INFINITY } else { m.max(d) },
            );
        if diff > HEAD_READBACK_TOLERANCE {
            return Err(Error::Model {
                path: self.path.clone(),
                reason: format!(
                    "the dense head read from the file gives probabilities {diff:.1e} away \
                     from the model's own; refusing to explain with it"
                ),
            });
        }
        let positive = self.manifest.positive_index();
        let class = if classification.model_label == self.manifest.positive_class {
            positive
        } else {
            1 - positive
        };
        let heatmap = head.grad_cam(&features, &earlier, class)?;
        Ok(Explanation {
            classification,
            class,
            slice,
            features,
            earlier,
            heatmap,
        })
    }

    /// The head read back from the file, when explaining.
    pub fn dense_head(&self) -> Option<&DenseHead> {
        self.head.as_ref()
    }

    /// Positive-class probability for one preprocessed input.
    pub fn positive_probability(&self, input: &InputTensor) -> Result<f32> {
        Ok(self.probabilities(input)?[self.manifest.positive_index()])
    }

    /// Positive-class probability and, for a model with a guard, the head's
    /// input the guard scores ([`guard::POOLED_TENSOR`]), from one run.
    pub fn positive_with_head_input(&self, input: &InputTensor) -> Result<(f32, Option<Vec<f32>>)> {
        let mut outputs = self.run(input)?;
        let pooled = self
            .pooled_output
            .map(|at| std::mem::take(&mut outputs[at].1));
        Ok((outputs[0].1[self.manifest.positive_index()], pooled))
    }

    /// Which frame of a multi-frame DICOM object to classify (default: the
    /// middle one).
    pub fn with_dicom_frame(mut self, frame: FrameChoice) -> Self {
        self.frame = frame;
        self
    }

    /// Decode image bytes (the chosen DICOM frame) to 8-bit RGB: the
    /// picture the guard's cheap checks read.
    fn picture(&self, bytes: &[u8], origin: &Path) -> Result<image::RgbImage> {
        Ok(to_rgb8(decode_frame(
            bytes,
            origin,
            &self.limits,
            self.frame,
        )?))
    }

    /// Decode, preprocess and classify image bytes; `origin` names them.
    pub fn classify_bytes(&self, bytes: &[u8], origin: &Path) -> Result<Classification> {
        let picture = self.picture(bytes, origin)?;
        let slice = resize_rgb(&picture, &self.manifest.preprocessing);
        let outputs = self.run(&tensor_from_rgb(&slice, &self.manifest.preprocessing)?)?;
        self.verdict(&picture, &outputs)
    }

    /// Read, preprocess and classify one file.
    pub fn classify_file(&self, path: &Path) -> Result<Classification> {
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        self.classify_bytes(&bytes, path)
    }
}

/// One line of `classify` output (JSON form).
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum ResultLine<'a> {
    /// A scan that was classified.
    Classified {
        /// The file as given.
        file: String,
        /// The label at the threshold, or `out_of_scope` when the model's
        /// guard refused the scan.
        label: &'a str,
        /// Positive-class probability (for an out-of-scope scan, not an
        /// answer).
        probability: f32,
        /// The model's operating threshold.
        threshold: f32,
        /// The guard's verdict, for a model with a guard.
        #[serde(skip_serializing_if = "Option::is_none")]
        scope: Option<&'a ScopeCheck>,
        /// The model's id.
        model_id: &'a str,
        /// SHA-256 of the model file.
        model_sha256: &'a str,
        /// [`NOTICE`].
        notice: &'static str,
    },
    /// A scan that could not be classified.
    Failed {
        /// The file as given.
        file: String,
        /// Why.
        error: String,
    },
}

/// How `classify` writes its result lines.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum OutputFormat {
    /// One readable line per file.
    #[default]
    Text,
    /// One JSON object per line ([`ResultLine`]).
    Json,
    /// RFC 4180 CSV with a header row ([`CSV_HEADER`]); a failed file has
    /// its `error` column set and the result columns empty.
    Csv,
}

/// The header row of [`OutputFormat::Csv`].
pub const CSV_HEADER: &str = "file,label,probability,threshold,scope_score,scope_threshold,\
                              scope_reason,model_id,model_sha256,error,notice";

/// One CSV field: quoted (quotes doubled) when it holds a comma, a quote or
/// a line break.
fn csv_field(value: &str) -> String {
    if value.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", value.replace('"', "\"\""))
    } else {
        value.to_string()
    }
}

/// Classify each file and write one line per file to `out` in `format`. A
/// file that fails gets an error line and the rest are still classified.
/// Returns how many files failed.
pub fn classify_files(
    classifier: &Classifier,
    files: &[PathBuf],
    format: OutputFormat,
    out: &mut dyn Write,
) -> std::io::Result<usize> {
    let manifest = classifier.manifest();
    let mut failures = 0;
    if format == OutputFormat::Csv {
        writeln!(out, "{CSV_HEADER}")?;
    }
    for file in files {
        let name = file.display().to_string();
        let result = classifier.classify_file(file);
        let line = match &result {
            Ok(c) => ResultLine::Classified {
                file: name,
                label: &c.label,
                probability: c.probability,
                threshold: manifest.threshold,
                scope: c.scope.as_ref(),
                model_id: &manifest.model_id,
                model_sha256: classifier.sha256(),
                notice: NOTICE,
            },
            Err(e) => {
                failures += 1;
                ResultLine::Failed {
                    file: name,
                    error: e.to_string(),
                }
            }
        };
        match format {
            OutputFormat::Json => {
                serde_json::to_writer(&mut *out, &line)?;
                writeln!(out)?;
            }
            OutputFormat::Csv => {
                let row: Vec<String> = match &line {
                    ResultLine::Classified {
                        file,
                        label,
                        probability,
                        threshold,
                        scope,
                        model_id,
                        model_sha256,
                        notice,
                    } => vec![
                        file.clone(),
                        label.to_string(),
                        probability.to_string(),
                        threshold.to_string(),
                        scope
                            .and_then(|s| s.score)
                            .map_or(String::new(), |v| v.to_string()),
                        scope.map_or(String::new(), |s| s.threshold.to_string()),
                        scope
                            .and_then(|s| s.reason.as_ref())
                            .map_or(String::new(), ToString::to_string),
                        model_id.to_string(),
                        model_sha256.to_string(),
                        String::new(),
                        notice.to_string(),
                    ],
                    ResultLine::Failed { file, error } => {
                        let mut row = vec![String::new(); 11];
                        row[0] = file.clone();
                        row[9] = error.clone();
                        row[10] = NOTICE.to_string();
                        row
                    }
                };
                let row: Vec<String> = row.iter().map(|f| csv_field(f)).collect();
                writeln!(out, "{}", row.join(","))?;
            }
            OutputFormat::Text => match &line {
                ResultLine::Classified {
                    file,
                    probability,
                    scope:
                        Some(
                            scope @ ScopeCheck {
                                in_scope: false, ..
                            },
                        ),
                    ..
                } => writeln!(
                    out,
                    "{file}: {OUT_OF_SCOPE} ({}{}; not answered; {NOTICE})",
                    scope
                        .reason
                        .as_ref()
                        .map_or(String::new(), ToString::to_string),
                    scope.score.map_or(String::new(), |v| format!(
                        ": score {v:.2} > {:.2}, model p = {probability:.4}",
                        scope.threshold
                    )),
                )?,
                ResultLine::Classified {
                    file,
                    label,
                    probability,
                    threshold,
                    ..
                } => writeln!(
                    out,
                    "{file}: {label} (p = {probability:.4}, threshold {threshold:.4}; {NOTICE})"
                )?,
                ResultLine::Failed { file: _, error } => writeln!(out, "error: {error}")?,
            },
        }
    }
    Ok(failures)
}

/// The `classify` command of both binaries: load `model` (the shipped model
/// when `None`) on all cores and print one result line per file (folders
/// expanded, [`crate::inputs::expand`]) to stdout in `format`; `frame` picks
/// the frame of multi-frame DICOM objects (`None`: the middle one). Returns
/// the exit status ([`crate::exit::for_batch`]).
pub fn classify_command(
    model: Option<PathBuf>,
    files: &[PathBuf],
    format: OutputFormat,
    frame: Option<u32>,
) -> Result<u8> {
    let files = crate::inputs::expand(files)?;
    let path = crate::shipped::resolve(model)?;
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let classifier = Classifier::load(&path)?
        .with_threads(cores)
        .with_dicom_frame(frame.map_or(FrameChoice::Middle, FrameChoice::Index));
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let failures = classify_files(&classifier, &files, format, &mut out)
        .and_then(|n| out.flush().map(|()| n))
        .map_err(|e| Error::io("<stdout>", e))?;
    Ok(crate::exit::for_batch(files.len(), failures))
}
