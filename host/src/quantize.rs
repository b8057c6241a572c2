//! Int8 post-training quantization of an exported model, in operators tract
//! executes correctly. Two schemes ([`Scheme`]):
//!
//! * **weights** ([`quantize_weights_only`]): convolution weights stored as
//!   int8 with per-channel scales and expanded to f32 by `Cast` → `Mul`,
//!   which tract constant-folds at load. A quarter of the size, f32 speed.
//! * **static** ([`quantize`]), described below: int8 compute.
//!
//! Every `Conv` (with the `Relu` after it, when there is one) becomes a
//! `QLinearConv`: uint8 activations with one scale per tensor, int8 weights
//! with one symmetric scale per output channel, int32 bias. With zero point 0
//! and the post-ReLU range, the uint8 output saturates at 0, so the ReLU is
//! exact and free. `MaxPool` runs directly on the uint8 tensor (max commutes
//! with a monotonic quantization). The graph input gets one per-tensor
//! `QuantizeLinear`, and a per-tensor `DequantizeLinear` hands the last
//! feature map back to the float pooling and dense head.
//!
//! tract reads only the first scale of a `QuantizeLinear`/`DequantizeLinear`,
//! so this module never emits a per-channel one: per-channel scales appear
//! only as `QLinearConv` weight scales, which tract supports.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::{Deserialize, Serialize};
use tract_onnx::pb::{ModelProto, NodeProto, TensorProto, tensor_proto::DataType};

use crate::calibrate::{Calibration, RangeMethod};
use crate::onnx_graph::{self, f32_tensor, f32_values, node};
use crate::{Error, Result};

/// Metadata key holding the quantization recipe.
pub const RECIPE_KEY: &str = "scanside.quantization";

/// Which int8 form to emit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scheme {
    /// Static quantization: int8 weights and uint8 activations, computed with
    /// `QLinearConv` (integer kernels). Needs calibration.
    Static,
    /// Int8 weights with per-channel scales, expanded to f32 when tract loads
    /// the model (`Cast` → `Mul`, constant-folded): a quarter of the file
    /// size, f32 speed and accuracy. No calibration.
    Weights,
}

impl std::fmt::Display for Scheme {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Scheme::Static => "static",
            Scheme::Weights => "weights",
        })
    }
}

impl std::str::FromStr for Scheme {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "static" => Ok(Scheme::Static),
            "weights" => Ok(Scheme::Weights),
            _ => Err(format!("`{s}`: expected `static` or `weights`")),
        }
    }
}

/// How the model was quantized (stored in its metadata).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct QuantRecipe {
    /// The int8 form.
    pub scheme: Scheme,
    /// Activation range method (static scheme).
    pub range: RangeMethod,
    /// Calibration images used.
    pub calibration_images: usize,
    /// Model id of the f32 model this was made from.
    pub f32_model_id: String,
    /// SHA-256 of the f32 model file.
    pub f32_sha256: String,
    /// Weight scheme.
    pub weights: String,
    /// Activation scheme.
    pub activations: String,
    /// Operators used.
    pub operators: String,
}

impl QuantRecipe {
    /// The recipe of the static scheme with `range` from `images` images.
    pub fn new(range: RangeMethod, images: usize, f32_model_id: &str, f32_sha256: &str) -> Self {
        QuantRecipe {
            scheme: Scheme::Static,
            range,
            calibration_images: images,
            f32_model_id: f32_model_id.into(),
            f32_sha256: f32_sha256.into(),
            weights: "int8, symmetric, one scale per output channel".into(),
            activations: "uint8, one scale per tensor".into(),
            operators: "QuantizeLinear → QLinearConv (ReLU fused) / MaxPool on uint8 → DequantizeLinear; pooling and dense head in f32".into(),
        }
    }

    /// The recipe of the weight-only scheme.
    pub fn weights_only(f32_model_id: &str, f32_sha256: &str) -> Self {
        QuantRecipe {
            scheme: Scheme::Weights,
            range: RangeMethod::MinMax,
            calibration_images: 0,
            f32_model_id: f32_model_id.into(),
            f32_sha256: f32_sha256.into(),
            weights: format!(
                "int8, symmetric, one scale per output channel; the first {F32_LEADING_CONVS} convolutions stay f32"
            ),
            activations: "f32".into(),
            operators: "convolution weights stored int8: Cast → Mul by per-channel scale → Conv (folded to f32 at load)".into(),
        }
    }
}

/// One convolution to quantize: its input, weights, bias and the tensor its
/// quantized output replaces (the ReLU output when a ReLU follows).
#[derive(Clone, Debug)]
pub struct ConvSite {
    /// Index of the `Conv` node.
    pub node: usize,
    /// Index of the fused `Relu`, if any.
    pub relu: Option<usize>,
    /// The float input tensor.
    pub input: String,
    /// The tensor the quantized output stands for.
    pub output: String,
}

/// Find the convolutions and the tensors whose ranges calibration must see.
pub fn conv_sites(model: &ModelProto) -> Result<(Vec<ConvSite>, Vec<String>)> {
    let graph = model
        .graph
        .as_ref()
        .ok_or_else(|| Error::Onnx("model has no graph".into()))?;
    let mut consumers: HashMap<&str, Vec<usize>> = HashMap::new();
    for (i, n) in graph.node.iter().enumerate() {
        for input in &n.input {
            consumers.entry(input.as_str()).or_default().push(i);
        }
    }
    let outputs: HashSet<&str> = graph.output.iter().map(|o| o.name.as_str()).collect();
    let mut sites = Vec::new();
    for (i, n) in graph
        .node
        .iter()
        .enumerate()
        .filter(|(_, n)| n.op_type == "Conv")
    {
        let out = n.output[0].as_str();
        let relu = match consumers.get(out).map(Vec::as_slice) {
            Some(&[j]) if graph.node[j].op_type == "Relu" && !outputs.contains(out) => Some(j),
            _ => None,
        };
        sites.push(ConvSite {
            node: i,
            relu,
            input: n.input[0].clone(),
            output: relu.map_or_else(|| out.to_string(), |j| graph.node[j].output[0].clone()),
        });
    }
    if sites.is_empty() {
        return Err(Error::Onnx("no Conv to quantize".into()));
    }
    let mut observed: Vec<String> = Vec::new();
    for s in &sites {
        for t in [&s.input, &s.output] {
            if !observed.contains(t) {
                observed.push(t.clone());
            }
        }
    }
    Ok((sites, observed))
}

/// Per-tensor uint8 parameters.
#[derive(Clone, Copy, Debug, PartialEq)]
struct QParams {
    scale: f32,
    zero_point: u8,
}

impl QParams {
    /// uint8 parameters covering `[lo, hi]` (widened to include 0).
    fn covering(lo: f32, hi: f32) -> QParams {
        let (lo, hi) = (lo.min(0.0), hi.max(0.0));
        if hi - lo <= f32::EPSILON {
            return QParams {
                scale: 1.0,
                zero_point: 0,
            };
        }
        let scale = (hi - lo) / 255.0;
        QParams {
            scale,
            zero_point: (-lo / scale).round().clamp(0.0, 255.0) as u8,
        }
    }
}

fn u8_scalar(name: &str, v: u8) -> TensorProto {
    TensorProto {
        name: name.into(),
        data_type: DataType::Uint8 as i32,
        raw_data: vec![v],
        ..Default::default()
    }
}

fn scalar(name: &str, v: f32) -> TensorProto {
    f32_tensor(name, &[], &[v])
}

/// Add the scale and zero-point initializers of `p`; returns their names.
fn add_qparams(base: &str, p: QParams, inits: &mut Vec<TensorProto>) -> (String, String) {
    let (s, z) = (format!("{base}/scale"), format!("{base}/zero_point"));
    inits.push(scalar(&s, p.scale));
    inits.push(u8_scalar(&z, p.zero_point));
    (s, z)
}

/// Symmetric per-output-channel int8 weights: (values, scales).
fn quantize_weights(w: &[f32], out_channels: usize) -> (Vec<i8>, Vec<f32>) {
    let per = w.len() / out_channels;
    let mut q = Vec::with_capacity(w.len());
    let mut scales = Vec::with_capacity(out_channels);
    for c in w.chunks_exact(per) {
        let m = c.iter().fold(0f32, |m, v| m.max(v.abs()));
        let s = if m > 0.0 { m / 127.0 } else { 1.0 };
        scales.push(s);
        q.extend(
            c.iter()
                .map(|v| (v / s).round_ties_even().clamp(-127.0, 127.0) as i8),
        );
    }
    (q, scales)
}

/// Convolutions at the start of the graph whose weights the weight-only
/// scheme keeps in f32. VGG16's block1 holds 0.3 % of its weights, but its
/// rounding error travels through all 13 layers: quantising it too flipped
/// 2 of 253 out-of-fold decisions at the log1p-ensemble head's operating
/// threshold (0.045), keeping it f32 flipped none (`scanside quantize`,
/// docs/int8.md).
pub const F32_LEADING_CONVS: usize = 2;

/// Store every convolution's weights but the first [`F32_LEADING_CONVS`]
/// as int8 with one symmetric scale per output channel; computation stays
/// f32 (tract folds `Cast` → `Mul` into
/// f32 weights when it loads the model).
pub fn quantize_weights_only(f32_model: &ModelProto, recipe: &QuantRecipe) -> Result<ModelProto> {
    let (sites, _) = conv_sites(f32_model)?;
    let mut model = f32_model.clone();
    let graph = onnx_graph::graph_mut(&mut model)?;
    let weight_names: HashSet<String> = sites
        .iter()
        .skip(F32_LEADING_CONVS)
        .map(|s| graph.node[s.node].input[1].clone())
        .collect();
    let mut expand = Vec::new();
    for t in graph
        .initializer
        .iter_mut()
        .filter(|t| weight_names.contains(&t.name))
    {
        let cout = *t
            .dims
            .first()
            .ok_or_else(|| Error::Onnx(format!("`{}` has no dims", t.name)))?;
        let (q, scales) = quantize_weights(&f32_values(t)?, cout as usize);
        let name = t.name.clone();
        let (qname, cast, sname) = (
            format!("{name}/int8"),
            format!("{name}/int8_as_f32"),
            format!("{name}/scale"),
        );
        let mut sdims = vec![1i64; t.dims.len()];
        sdims[0] = cout;
        expand.push(f32_tensor(&sname, &sdims, &scales));
        *t = TensorProto {
            name: qname.clone(),
            dims: t.dims.clone(),
            data_type: DataType::Int8 as i32,
            raw_data: q.iter().map(|v| *v as u8).collect(),
            ..Default::default()
        };
        expand_nodes(&mut graph.node, &name, &qname, &cast, &sname);
    }
    graph.initializer.extend(expand);
    tag(&mut model, recipe);
    Ok(model)
}

/// Insert `Cast(qname) → Mul(·, sname) → name` at the start of the graph.
fn expand_nodes(nodes: &mut Vec<NodeProto>, name: &str, qname: &str, cast: &str, sname: &str) {
    let to_float = tract_onnx::pb::AttributeProto {
        name: "to".into(),
        r#type: tract_onnx::pb::attribute_proto::AttributeType::Int as i32,
        i: DataType::Float as i64,
        ..Default::default()
    };
    nodes.insert(
        0,
        node(
            "Mul",
            &format!("{name}/dequantize"),
            &[cast, sname],
            &[name],
            vec![],
        ),
    );
    nodes.insert(0, node("Cast", cast, &[qname], &[cast], vec![to_float]));
}

/// Mark a quantized model: `-int8` model id and the recipe in metadata.
fn tag(model: &mut ModelProto, recipe: &QuantRecipe) {
    let id = onnx_graph::metadata(model)
        .get("scanside.model_id")
        .cloned()
        .unwrap_or_default();
    onnx_graph::set_metadata(
        model,
        [
            ("scanside.model_id".to_string(), format!("{id}-int8")),
            (
                RECIPE_KEY.to_string(),
                serde_json::to_string(recipe).expect("serialises"),
            ),
        ],
    );
}

/// Rewrite a float model into the static int8 model described in the module
/// comment, using `calibration` ranges chosen by the recipe's method.
pub fn quantize(
    f32_model: &ModelProto,
    calibration: &Calibration,
    recipe: &QuantRecipe,
) -> Result<ModelProto> {
    let (sites, _) = conv_sites(f32_model)?;
    let mut model = f32_model.clone();
    let graph = onnx_graph::graph_mut(&mut model)?;
    let inits: BTreeMap<String, TensorProto> = std::mem::take(&mut graph.initializer)
        .into_iter()
        .map(|t| (t.name.clone(), t))
        .collect();
    let stats = |t: &str| {
        calibration
            .get(t)
            .ok_or_else(|| Error::Onnx(format!("no calibration for tensor `{t}`")))
    };
    let params_of = |t: &str| -> Result<QParams> {
        let s = stats(t)?;
        let hi = s.upper(recipe.range);
        Ok(QParams::covering(s.min, hi))
    };

    let site_at: HashMap<usize, &ConvSite> = sites.iter().map(|s| (s.node, s)).collect();
    let fused: HashSet<usize> = sites.iter().filter_map(|s| s.relu).collect();
    let mut used_inits: HashSet<String> = HashSet::new();
    let mut new_inits: Vec<TensorProto> = Vec::new();
    // Float tensor name → (uint8 tensor, its scale name, zero-point name, params).
    let mut quantized: HashMap<String, (String, String, String, QParams)> = HashMap::new();
    let mut float_available: HashSet<String> = graph.input.iter().map(|i| i.name.clone()).collect();
    let mut nodes: Vec<NodeProto> = Vec::new();

    for (i, n) in graph.node.iter().enumerate() {
        if fused.contains(&i) {
            continue;
        }
        if let Some(site) = site_at.get(&i) {
            // Input: quantize it unless it already is.
            if !quantized.contains_key(&site.input) {
                let p = params_of(&site.input)?;
                let base = format!("{}/q", site.input);
                let (s, z) = add_qparams(&base, p, &mut new_inits);
                let q = format!("{}/u8", site.input);
                nodes.push(node(
                    "QuantizeLinear",
                    &format!("{base}/quantize"),
                    &[&site.input, &s, &z],
                    &[&q],
                    vec![],
                ));
                quantized.insert(site.input.clone(), (q, s, z, p));
            }
            let (xq, xs, xz, xp) = quantized[&site.input].clone();
            let w_name = n
                .input
                .get(1)
                .ok_or_else(|| Error::Onnx(format!("Conv `{}` has no weight input", n.name)))?;
            let w = inits.get(w_name).ok_or_else(|| {
                Error::Onnx(format!("Conv weight `{w_name}` is not an initializer"))
            })?;
            let cout = *w
                .dims
                .first()
                .ok_or_else(|| Error::Onnx(format!("`{w_name}` has no dims")))?
                as usize;
            let (wq, wscales) = quantize_weights(&f32_values(w)?, cout);
            let bias = match n.input.get(2).filter(|b| !b.is_empty()) {
                Some(b) => f32_values(inits.get(b).ok_or_else(|| {
                    Error::Onnx(format!("Conv bias `{b}` is not an initializer"))
                })?)?,
                None => vec![0.0; cout],
            };
            let base = format!("{}/qlinear", n.output[0]);
            let yp = params_of(&site.output)?;
            let (ys, yz) = add_qparams(&format!("{}/q", site.output), yp, &mut new_inits);
            let names = [
                format!("{base}/w"),
                format!("{base}/w_scale"),
                format!("{base}/w_zero_point"),
                format!("{base}/bias"),
            ];
            new_inits.push(TensorProto {
                name: names[0].clone(),
                dims: w.dims.clone(),
                data_type: DataType::Int8 as i32,
                raw_data: wq.iter().map(|v| *v as u8).collect(),
                ..Default::default()
            });
            new_inits.push(f32_tensor(&names[1], &[cout as i64], &wscales));
            new_inits.push(TensorProto {
                name: names[2].clone(),
                dims: vec![cout as i64],
                data_type: DataType::Int8 as i32,
                raw_data: vec![0; cout],
                ..Default::default()
            });
            let qbias: Vec<i32> = bias
                .iter()
                .zip(&wscales)
                .map(|(b, ws)| {
                    (f64::from(*b) / (f64::from(xp.scale) * f64::from(*ws))).round() as i32
                })
                .collect();
            new_inits.push(TensorProto {
                name: names[3].clone(),
                dims: vec![cout as i64],
                data_type: DataType::Int32 as i32,
                raw_data: qbias.iter().flat_map(|v| v.to_le_bytes()).collect(),
                ..Default::default()
            });
            let yq = format!("{}/u8", site.output);
            let mut q = node(
                "QLinearConv",
                &base,
                &[
                    &xq, &xs, &xz, &names[0], &names[1], &names[2], &ys, &yz, &names[3],
                ],
                &[&yq],
                n.attribute.clone(),
            );
            q.domain = String::new();
            nodes.push(q);
            quantized.insert(site.output.clone(), (yq, ys, yz, yp));
            continue;
        }
        if n.op_type == "MaxPool" && n.output.len() == 1 && quantized.contains_key(&n.input[0]) {
            let (xq, xs, xz, xp) = quantized[&n.input[0]].clone();
            let yq = format!("{}/u8", n.output[0]);
            let mut pool = n.clone();
            pool.input = vec![xq];
            pool.output = vec![yq.clone()];
            pool.name = format!("{}/u8", n.name);
            nodes.push(pool);
            quantized.insert(n.output[0].clone(), (yq, xs, xz, xp));
            continue;
        }
        // A float consumer: give it the float tensors it reads.
        for input in &n.input {
            if let Some((q, s, z, _)) = quantized.get(input)
                && !float_available.contains(input)
                && !inits.contains_key(input)
            {
                nodes.push(node(
                    "DequantizeLinear",
                    &format!("{input}/dequantize"),
                    &[q, s, z],
                    &[input],
                    vec![],
                ));
                float_available.insert(input.clone());
            }
            if inits.contains_key(input) {
                used_inits.insert(input.clone());
            }
        }
        float_available.extend(n.output.iter().cloned());
        nodes.push(n.clone());
    }
    for o in &graph.output {
        if !float_available.contains(&o.name) {
            return Err(Error::Onnx(format!(
                "graph output `{}` would be quantized; only inner tensors may be",
                o.name
            )));
        }
    }
    graph.node = nodes;
    graph.initializer = inits
        .into_iter()
        .filter(|(name, _)| used_inits.contains(name))
        .map(|(_, t)| t)
        .chain(new_inits)
        .collect();
    tag(&mut model, recipe);
    Ok(model)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_are_symmetric_per_channel() {
        let w = [0.5, -1.0, 0.25, 0.0, 2.0, -0.5, 1.0, 0.0];
        let (q, s) = quantize_weights(&w, 2);
        assert_eq!(s, vec![1.0 / 127.0, 2.0 / 127.0]);
        assert_eq!(q, vec![64, -127, 32, 0, 127, -32, 64, 0]);
    }

    #[test]
    fn params_cover_the_range_and_zero() {
        let p = QParams::covering(-123.68, 151.061);
        assert!((p.scale - 274.741 / 255.0).abs() < 1e-4);
        let back = |q: u8| (f32::from(q) - f32::from(p.zero_point)) * p.scale;
        assert!(back(0) <= -123.0 && back(255) >= 150.5);
        assert!(back(p.zero_point).abs() < 1e-6);
        let relu = QParams::covering(0.0, 10.2);
        assert_eq!(relu.zero_point, 0);
        assert_eq!(QParams::covering(0.0, 0.0).scale, 1.0);
    }
}
