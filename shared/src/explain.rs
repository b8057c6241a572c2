//! Grad-CAM heatmaps: which part of a slice drove a decision.
//!
//! A scanside model is `backbone → pooling → dense head → softmax` (see the
//! host's `export` module). The backbone's last feature map `A` (channels
//! `k`, positions `i, j`; 7 × 7 × 512 for VGG16 at 224²) is pooled per
//! channel (global average, global max, or both concatenated), optionally
//! compressed by `ln(1 + x)` or by a square root with each pooling's vector
//! scaled to unit length, and the head turns the pooled vector into two
//! logits `z`. For the label the model
//! gave, class `c`, the *evidence* is the log-odds `s = z_c − z_other`
//! (`log p_c / p_other`).
//!
//! Grad-CAM weighs each channel by the mean gradient of `s` over the map,
//! `α_k = mean_ij ∂s/∂A_kij`, and draws `ReLU(Σ_k α_k A_k)`: where the
//! channels that pushed towards `c` were active. For this architecture the
//! gradient is exact and cheap: back-propagation through the dense layers
//! (ReLU masks from the forward pass) gives `∂s/∂pooled`; average pooling
//! spreads it as `1/(HW)` over every position and max pooling hands it to the
//! arg-max position, so `α_k = (g_avg,k + g_max,k) / (HW)` (each `g`
//! times `1 / (1 + pooled)` behind the `ln(1 + x)` transform, and through
//! the Jacobian of `√(x / Σ x)` behind the square-root unit-length one,
//! [`PooledTransform`]). The tests check these gradients against finite
//! differences of the head itself.
//!
//! A head may also read the brain's left–right asymmetry: the same poolings
//! over the left and right halves of the map's columns ([`half_columns`]),
//! each transformed, and `|left − right|` appended to the pooled vector (an
//! [`ASYMMETRY_NODE`] in the graph). Its gradient goes to the half each
//! value came from, signed by which side was larger.
//!
//! A head may also read an earlier block's poolings (VGG16's block 4,
//! `--blocks block4-last`): the same poolings and transform of that
//! block's map, appended to the pooled vector as the [`BLOCK4_POOLED`]
//! tensor. That map lies *before* the last one in the backbone, so
//! nothing in it depends on `A`: its values enter the head as constants
//! ([`DenseHead::earlier`]), and `∂s/∂A` (hence Grad-CAM on `A`) is the
//! gradient through the last block's poolings alone.
//!
//! The head's weights are read back from the model file (the exporter's
//! `scanside/dense{l}/W` and `/b` initializers and its pooling nodes), and
//! [`crate::classifier::Classifier::explain_bytes`] refuses to draw a map if
//! the read-back head does not reproduce the model's own output.
//!
//! A heatmap shows where the evidence came from at the backbone's coarse
//! resolution (one cell per 32 × 32 pixels); it is not a segmentation and
//! not a proof that the model is right.

use std::convert::Infallible;

use embedded_graphics::mono_font::MonoTextStyle;
use embedded_graphics::mono_font::ascii::FONT_6X10;
use embedded_graphics::pixelcolor::Rgb888;
use embedded_graphics::prelude::*;
use embedded_graphics::text::Text;
use image::{ImageBuffer, Luma, Rgb, RgbImage};
use tract_onnx::pb::{
    ModelProto, TensorProto, ValueInfoProto, tensor_proto::DataType, tensor_shape_proto, type_proto,
};

use crate::{Error, Result};

/// Name of the `Log` node that ends the exporter's `ln(1 + x)` transform of
/// the pooled vector, when the model has one.
pub const LOG1P_NODE: &str = "scanside/log1p";

/// `ln(1 + x)` of every value, as the exported graph computes it (`1 + x`
/// rounded to f32, then `ln`); the host applies the same function to its
/// training rows.
pub fn log1p_in_place(values: &mut [f32]) {
    values.iter_mut().for_each(|v| *v = (1.0 + *v).ln());
}

/// Suffix of the `Sqrt` node that ends the exporter's square-root and unit
/// length transform of one pooled vector (`scanside/avg_sqrt_l2`,
/// `scanside/max_sqrt_l2`, …), when the model has it.
pub const SQRT_L2_SUFFIX: &str = "_sqrt_l2";

/// The ε in `√(x / (Σ x + ε))` ([`sqrt_l2_in_place`]).
pub const SQRT_L2_EPSILON: f32 = 1e-6;

/// The square root of one pooled vector scaled to unit L2 length,
/// `√(x / (Σ x + ε))` (the values are ≥ 0 after ReLU and pooling, and
/// `‖√x‖² = Σ x`), as the exported graph computes it: the sum, `+ ε`, the
/// division, then the root.
pub fn sqrt_l2_in_place(values: &mut [f32]) {
    let sum = values.iter().sum::<f32>() + SQRT_L2_EPSILON;
    values.iter_mut().for_each(|v| *v = (*v / sum).sqrt());
}

/// The transform between a head's poolings and its dense layers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PooledTransform {
    /// The pooled values as they are.
    None,
    /// `ln(1 + x)` element-wise (a [`LOG1P_NODE`] in the graph).
    Log1p,
    /// [`sqrt_l2_in_place`] on each pooling's vector (nodes named with
    /// [`SQRT_L2_SUFFIX`]).
    SqrtL2,
}

impl PooledTransform {
    /// Transform the concatenated poolings of one region (`pools` vectors
    /// of equal length) in place.
    fn apply(self, values: &mut [f32], pools: usize) {
        match self {
            PooledTransform::None => {}
            PooledTransform::Log1p => log1p_in_place(values),
            PooledTransform::SqrtL2 => {
                let len = (values.len() / pools.max(1)).max(1);
                values.chunks_mut(len).for_each(sqrt_l2_in_place);
            }
        }
    }

    /// Turn `∂s/∂t` (gradient with respect to the transformed values `t`)
    /// into `∂s/∂x` (with respect to the raw poolings `x`), in place.
    ///
    /// For `ln(1 + x)`: `1 / (1 + x)`. For `t = √(x / S)`, `S = Σ x + ε`:
    /// `∂s/∂x_k = g_k / (2 t_k S) − Σ_i g_i t_i / (2 S)`; where `t_k = 0`
    /// (a channel that is zero everywhere) the first term is taken as 0,
    /// the one-sided derivative being infinite and the channel adding
    /// nothing to a Grad-CAM map.
    fn backward(self, g: &mut [f32], raw: &[f32], pools: usize) {
        match self {
            PooledTransform::None => {}
            PooledTransform::Log1p => g.iter_mut().zip(raw).for_each(|(gj, x)| *gj /= 1.0 + x),
            PooledTransform::SqrtL2 => {
                let len = (raw.len() / pools.max(1)).max(1);
                for (g, x) in g.chunks_mut(len).zip(raw.chunks(len)) {
                    let sum = x.iter().sum::<f32>() + SQRT_L2_EPSILON;
                    let t: Vec<f32> = x.iter().map(|v| (v / sum).sqrt()).collect();
                    let shared: f32 =
                        g.iter().zip(&t).map(|(a, b)| a * b).sum::<f32>() / (2.0 * sum);
                    for (gk, tk) in g.iter_mut().zip(&t) {
                        let own = if *tk > 0.0 {
                            *gk / (2.0 * tk * sum)
                        } else {
                            0.0
                        };
                        *gk = own - shared;
                    }
                }
            }
        }
    }
}

/// Name of the `Abs` node that computes the exporter's left–right
/// asymmetry features, when the model has them.
pub const ASYMMETRY_NODE: &str = "scanside/asymmetry";

/// Name of the tensor with an earlier block's transformed poolings, which
/// the exporter appends to the head's input after the last block's (and
/// declares, with its width, in the graph's `value_info`).
pub const BLOCK4_POOLED: &str = "scanside/block4/pooled";

/// The column ranges of the left and right halves of a map `width` wide
/// (the middle column of an odd width belongs to neither).
pub fn half_columns(width: usize) -> [std::ops::Range<usize>; 2] {
    [0..width / 2, width - width / 2..width]
}

/// One global pooling of the feature map, in the order the head reads them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pool {
    /// Mean over positions.
    Average,
    /// Maximum over positions.
    Max,
}

/// One dense layer, `y = x · weight + bias` (ONNX `Gemm`, no transposes).
#[derive(Clone, Debug, PartialEq)]
pub struct Dense {
    /// Input width.
    pub inputs: usize,
    /// Output width.
    pub outputs: usize,
    /// Row-major `inputs × outputs`.
    pub weight: Vec<f32>,
    /// `outputs` biases.
    pub bias: Vec<f32>,
}

impl Dense {
    fn forward(&self, x: &[f32]) -> Vec<f32> {
        let mut y = self.bias.clone();
        for (j, &xj) in x.iter().enumerate() {
            if xj != 0.0 {
                let row = &self.weight[j * self.outputs..(j + 1) * self.outputs];
                for (yo, w) in y.iter_mut().zip(row) {
                    *yo += xj * w;
                }
            }
        }
        y
    }

    /// `∂s/∂x` from `∂s/∂y`.
    fn backward(&self, gy: &[f32]) -> Vec<f32> {
        (0..self.inputs)
            .map(|j| {
                let row = &self.weight[j * self.outputs..(j + 1) * self.outputs];
                row.iter().zip(gy).map(|(w, g)| w * g).sum()
            })
            .collect()
    }
}

/// A backbone feature map for one image, channels first:
/// `data[c * h * w + y * w + x]`.
#[derive(Clone, Debug, PartialEq)]
pub struct FeatureMap {
    /// Channels.
    pub channels: usize,
    /// Rows.
    pub height: usize,
    /// Columns.
    pub width: usize,
    /// `channels × height × width` values.
    pub data: Vec<f32>,
}

impl FeatureMap {
    fn positions(&self) -> usize {
        self.height * self.width
    }

    fn channel(&self, k: usize) -> &[f32] {
        &self.data[k * self.positions()..(k + 1) * self.positions()]
    }

    /// The sub-map of columns `cols` (all rows, all channels).
    pub fn columns(&self, cols: std::ops::Range<usize>) -> FeatureMap {
        let data = self
            .data
            .chunks_exact(self.width)
            .flat_map(|row| &row[cols.clone()])
            .copied()
            .collect();
        FeatureMap {
            channels: self.channels,
            height: self.height,
            width: cols.len(),
            data,
        }
    }
}

/// The pooling and dense head of a scanside model, read back from its file.
#[derive(Clone, Debug, PartialEq)]
pub struct DenseHead {
    /// The poolings, concatenated in this order.
    pub pools: Vec<Pool>,
    /// The transform between the poolings and the dense layers.
    pub transform: PooledTransform,
    /// Whether `|left − right|` of the transformed half-map poolings
    /// follows the global ones (an [`ASYMMETRY_NODE`] in the graph).
    pub asymmetry: bool,
    /// The dense layers; ReLU between them, softmax after the last.
    pub layers: Vec<Dense>,
    /// Name of the feature-map tensor the poolings read (channels first).
    pub feature_tensor: String,
    /// Values the head reads after the map's poolings that the map does not
    /// influence: an earlier block's poolings ([`BLOCK4_POOLED`]).
    pub earlier: Option<EarlierBlock>,
}

/// Head inputs from an earlier block of the backbone (see the module
/// comment): a tensor the model computes, and how many values it holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EarlierBlock {
    /// Name of the tensor in the graph (`[1, width]`).
    pub tensor: String,
    /// Number of values.
    pub width: usize,
}

/// The evidence's gradient with respect to the (untransformed) poolings of
/// one region of the map.
struct Region {
    /// The map's columns the region covers (all rows).
    columns: std::ops::Range<usize>,
    /// `∂ evidence / ∂ pooled`, pooling-major like the head's input.
    gradient: Vec<f32>,
}

/// The head's forward pass on one feature map, kept for back-propagation.
struct Forward {
    /// Pooled features, then each layer's output before its ReLU.
    activations: Vec<Vec<f32>>,
}

impl Forward {
    fn logits(&self) -> &[f32] {
        self.activations
            .last()
            .expect("at least the pooled features")
    }
}

/// The declared dimensions of a tensor (`None` for a free one), if it
/// declares a shape.
fn onnx_dims(info: &ValueInfoProto) -> Option<Vec<Option<i64>>> {
    let Some(type_proto::Value::TensorType(t)) = info.r#type.as_ref()?.value.as_ref() else {
        return None;
    };
    Some(
        t.shape
            .as_ref()?
            .dim
            .iter()
            .map(|d| match d.value {
                Some(tensor_shape_proto::dimension::Value::DimValue(v)) => Some(v),
                _ => None,
            })
            .collect(),
    )
}

/// Values of a float initializer (`raw_data` or `float_data`).
pub fn f32_values(t: &TensorProto) -> std::result::Result<Vec<f32>, String> {
    if t.data_type != DataType::Float as i32 {
        return Err(format!("initializer `{}` is not float", t.name));
    }
    if t.raw_data.is_empty() {
        return Ok(t.float_data.clone());
    }
    if !t.raw_data.len().is_multiple_of(4) {
        return Err(format!("initializer `{}` is truncated", t.name));
    }
    Ok(t.raw_data
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect())
}

impl DenseHead {
    /// Read the head of a model written by scanside's exporter.
    pub fn from_proto(proto: &ModelProto) -> Result<DenseHead> {
        let bad = |reason: String| Error::Manifest(format!("cannot read the dense head: {reason}"));
        let graph = proto.graph.as_ref().ok_or_else(|| bad("no graph".into()))?;
        let node = |name: &str| graph.node.iter().find(|n| n.name == name);
        let mut pools = Vec::new();
        let mut feature_tensor = None;
        for (name, pool) in [
            ("scanside/avg_pool", Pool::Average),
            ("scanside/max_pool", Pool::Max),
        ] {
            if let Some(n) = node(name) {
                pools.push(pool);
                feature_tensor = n.input.first().cloned();
            }
        }
        let feature_tensor =
            feature_tensor.ok_or_else(|| bad("no scanside pooling node".into()))?;
        let init = |name: &str| graph.initializer.iter().find(|t| t.name == name);
        let mut layers: Vec<Dense> = Vec::new();
        while let Some(w) = init(&format!("scanside/dense{}/W", layers.len())) {
            let l = layers.len();
            let b = init(&format!("scanside/dense{l}/b"))
                .ok_or_else(|| bad(format!("dense layer {l} has no bias")))?;
            let (weight, bias) = (f32_values(w).map_err(bad)?, f32_values(b).map_err(bad)?);
            let [inputs, outputs] = match w.dims[..] {
                [i, o] if i > 0 && o > 0 => [i as usize, o as usize],
                _ => return Err(bad(format!("dense layer {l} has dims {:?}", w.dims))),
            };
            if weight.len() != inputs * outputs || bias.len() != outputs {
                return Err(bad(format!("dense layer {l} has inconsistent sizes")));
            }
            if let Some(prev) = layers.last()
                && prev.outputs != inputs
            {
                return Err(bad(format!(
                    "dense layer {l} does not follow layer {}",
                    l - 1
                )));
            }
            layers.push(Dense {
                inputs,
                outputs,
                weight,
                bias,
            });
        }
        let asymmetry = node(ASYMMETRY_NODE).is_some();
        let blocks = if asymmetry { 2 } else { 1 };
        let earlier = match graph.value_info.iter().find(|v| v.name == BLOCK4_POOLED) {
            None => None,
            Some(info) => {
                let width = onnx_dims(info)
                    .and_then(|d| match d[..] {
                        [_, Some(w)] if w > 0 => Some(w as usize),
                        _ => None,
                    })
                    .ok_or_else(|| bad(format!("`{BLOCK4_POOLED}` has no [batch, width] shape")))?;
                Some(EarlierBlock {
                    tensor: BLOCK4_POOLED.into(),
                    width,
                })
            }
        };
        let own = |first: &Dense| {
            first
                .inputs
                .checked_sub(earlier.as_ref().map_or(0, |e| e.width))
        };
        match layers.last() {
            None => Err(bad("no scanside/dense0 layer".into())),
            Some(last) if last.outputs != 2 => Err(bad(format!(
                "the last layer has {} outputs, expected 2 classes",
                last.outputs
            ))),
            Some(_)
                if !own(&layers[0])
                    .is_some_and(|n| n > 0 && n.is_multiple_of(pools.len() * blocks)) =>
            {
                Err(bad(format!(
                    "the first layer's {} inputs do not split into {} poolings{}",
                    layers[0].inputs,
                    pools.len() * blocks,
                    earlier.as_ref().map_or(String::new(), |e| format!(
                        " and {} earlier-block values",
                        e.width
                    ))
                )))
            }
            Some(_) => {
                Ok(DenseHead {
                    pools,
                    transform: if node(LOG1P_NODE).is_some() {
                        PooledTransform::Log1p
                    } else if graph.node.iter().any(|n| {
                        n.name.starts_with("scanside/") && n.name.ends_with(SQRT_L2_SUFFIX)
                    }) {
                        PooledTransform::SqrtL2
                    } else {
                        PooledTransform::None
                    },
                    asymmetry,
                    layers,
                    feature_tensor,
                    earlier,
                })
            }
        }
    }

    /// Channels the head expects in the feature map.
    pub fn channels(&self) -> usize {
        (self.layers[0].inputs - self.earlier_width()) / (self.pools.len() * self.blocks())
    }

    /// How many earlier-block values follow the map's poolings (0 without).
    pub fn earlier_width(&self) -> usize {
        self.earlier.as_ref().map_or(0, |e| e.width)
    }

    /// Blocks of pooled values: the global poolings, then (with asymmetry)
    /// the `|left − right|` ones.
    fn blocks(&self) -> usize {
        if self.asymmetry { 2 } else { 1 }
    }

    fn check(&self, map: &FeatureMap, earlier: &[f32]) -> Result<()> {
        if earlier.len() != self.earlier_width() {
            return Err(Error::Inference(format!(
                "{} earlier-block values given to a head reading {}",
                earlier.len(),
                self.earlier_width()
            )));
        }
        if map.channels != self.channels()
            || map.positions() == 0
            || (self.asymmetry && map.width < 2)
            || map.data.len() != map.channels * map.positions()
        {
            return Err(Error::Inference(format!(
                "feature map {}×{}×{} does not fit a head reading {} channels",
                map.channels,
                map.height,
                map.width,
                self.channels()
            )));
        }
        Ok(())
    }

    /// Per-channel pooled features, in the order the head reads them, after
    /// the feature transform.
    pub fn pooled(&self, map: &FeatureMap) -> Vec<f32> {
        let mut out = self.pooled_block(map);
        if self.asymmetry {
            let [left, right] = self.half_blocks(map);
            out.extend(left.iter().zip(&right).map(|(l, r)| (l - r).abs()));
        }
        out
    }

    /// The transformed poolings of the left and right halves.
    fn half_blocks(&self, map: &FeatureMap) -> [Vec<f32>; 2] {
        half_columns(map.width).map(|cols| self.pooled_block(&map.columns(cols)))
    }

    /// The global poolings of `map`, transformed.
    fn pooled_block(&self, map: &FeatureMap) -> Vec<f32> {
        let mut out = self.raw_block(map);
        self.transform.apply(&mut out, self.pools.len());
        out
    }

    /// The global poolings of `map`, before the transform.
    fn raw_block(&self, map: &FeatureMap) -> Vec<f32> {
        let mut out = Vec::with_capacity(self.pools.len() * map.channels);
        for pool in &self.pools {
            out.extend((0..map.channels).map(|k| {
                let c = map.channel(k);
                match pool {
                    Pool::Average => c.iter().sum::<f32>() / c.len() as f32,
                    Pool::Max => c.iter().copied().fold(f32::NEG_INFINITY, f32::max),
                }
            }));
        }
        out
    }

    fn forward(&self, map: &FeatureMap, earlier: &[f32]) -> Forward {
        let mut input = self.pooled(map);
        input.extend_from_slice(earlier);
        let mut activations = vec![input];
        for (l, layer) in self.layers.iter().enumerate() {
            let x = activations.last().expect("non-empty");
            let y = if l == 0 {
                layer.forward(x)
            } else {
                layer.forward(&x.iter().map(|v| v.max(0.0)).collect::<Vec<_>>())
            };
            activations.push(y);
        }
        Forward { activations }
    }

    /// Softmax class probabilities, as the model's output, from the map
    /// and the `earlier` block's values ([`DenseHead::earlier`]; empty
    /// when the head has none).
    pub fn probabilities(&self, map: &FeatureMap, earlier: &[f32]) -> Result<Vec<f32>> {
        self.check(map, earlier)?;
        let forward = self.forward(map, earlier);
        let z = forward.logits();
        let m = z.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let e: Vec<f32> = z.iter().map(|v| (v - m).exp()).collect();
        let sum: f32 = e.iter().sum();
        Ok(e.iter().map(|v| v / sum).collect())
    }

    /// The evidence for class `class` (0 or 1): `z_class − z_other`.
    pub fn evidence(&self, map: &FeatureMap, earlier: &[f32], class: usize) -> Result<f32> {
        self.check(map, earlier)?;
        let forward = self.forward(map, earlier);
        let z = forward.logits();
        Ok(z[class] - z[1 - class])
    }

    /// `∂ evidence / ∂ pooled features` (before the transform), by
    /// back-propagation: one gradient block per pooled region of the map
    /// (all columns; then, with asymmetry, the left and the right half).
    fn pooled_gradient(&self, map: &FeatureMap, forward: &Forward, class: usize) -> Vec<Region> {
        let mut g = vec![0.0f32; 2];
        g[class] = 1.0;
        g[1 - class] = -1.0;
        for (l, layer) in self.layers.iter().enumerate().rev() {
            g = layer.backward(&g);
            if l > 0 {
                // The input of layer l is ReLU(output of layer l - 1).
                for (gj, pre) in g.iter_mut().zip(&forward.activations[l]) {
                    if *pre <= 0.0 {
                        *gj = 0.0;
                    }
                }
            }
        }
        let width = self.pools.len() * map.channels;
        let pools = self.pools.len();
        // The earlier block's values do not depend on the map.
        g.truncate(width * self.blocks());
        let asymmetry = g.split_off(width);
        self.transform.backward(&mut g, &self.raw_block(map), pools);
        let mut regions = vec![Region {
            columns: 0..map.width,
            gradient: g,
        }];
        if self.asymmetry {
            // |l − r| passes its gradient to l with the sign of l − r, and
            // to r with the opposite sign (none where they are equal).
            let [left, right] = self.half_blocks(map);
            let sign = |j: usize| match left[j] - right[j] {
                d if d > 0.0 => 1.0,
                d if d < 0.0 => -1.0,
                _ => 0.0,
            };
            let [left_cols, right_cols] = half_columns(map.width);
            for (cols, side) in [(left_cols, 1.0f32), (right_cols, -1.0)] {
                let mut gradient: Vec<f32> =
                    (0..width).map(|j| side * asymmetry[j] * sign(j)).collect();
                let raw = self.raw_block(&map.columns(cols.clone()));
                self.transform.backward(&mut gradient, &raw, pools);
                regions.push(Region {
                    columns: cols,
                    gradient,
                });
            }
        }
        regions
    }

    /// Check the inputs, run the head and back-propagate to the regions'
    /// poolings.
    fn regions(&self, map: &FeatureMap, earlier: &[f32], class: usize) -> Result<Vec<Region>> {
        self.check(map, earlier)?;
        Ok(self.pooled_gradient(map, &self.forward(map, earlier), class))
    }

    /// `∂ evidence / ∂ A` for every value of the feature map (same layout).
    pub fn feature_gradient(
        &self,
        map: &FeatureMap,
        earlier: &[f32],
        class: usize,
    ) -> Result<Vec<f32>> {
        let regions = self.regions(map, earlier, class)?;
        let n = map.positions();
        let mut out = vec![0.0f32; map.data.len()];
        for region in &regions {
            let sub = map.columns(region.columns.clone());
            let cells = sub.positions();
            // Position in `map` of position `i` of `sub`.
            let at = |i: usize| (i / sub.width) * map.width + region.columns.start + i % sub.width;
            for (p, pool) in self.pools.iter().enumerate() {
                for k in 0..map.channels {
                    let gk = region.gradient[p * map.channels + k];
                    let cell = &mut out[k * n..(k + 1) * n];
                    match pool {
                        Pool::Average => (0..cells).for_each(|i| cell[at(i)] += gk / cells as f32),
                        Pool::Max => cell[at(arg_max(sub.channel(k)))] += gk,
                    }
                }
            }
        }
        Ok(out)
    }

    /// Grad-CAM channel weights `α_k = mean_ij ∂ evidence / ∂A_kij`.
    pub fn channel_weights(
        &self,
        map: &FeatureMap,
        earlier: &[f32],
        class: usize,
    ) -> Result<Vec<f32>> {
        let regions = self.regions(map, earlier, class)?;
        let n = map.positions() as f32;
        // Each pooling of a region hands its gradient to the map once in
        // total (spread by averaging, or to one cell by max).
        Ok((0..map.channels)
            .map(|k| {
                regions
                    .iter()
                    .map(|r| {
                        (0..self.pools.len())
                            .map(|p| r.gradient[p * map.channels + k])
                            .sum::<f32>()
                    })
                    .sum::<f32>()
                    / n
            })
            .collect())
    }

    /// The Grad-CAM map for class `class`, at the feature map's resolution.
    pub fn grad_cam(&self, map: &FeatureMap, earlier: &[f32], class: usize) -> Result<Heatmap> {
        let alpha = self.channel_weights(map, earlier, class)?;
        let n = map.positions();
        let mut cam = vec![0.0f32; n];
        for (k, a) in alpha.iter().enumerate() {
            for (c, v) in cam.iter_mut().zip(map.channel(k)) {
                *c += a * v;
            }
        }
        cam.iter_mut().for_each(|v| *v = v.max(0.0));
        let peak = cam.iter().copied().fold(0.0f32, f32::max);
        if peak > 0.0 {
            cam.iter_mut().for_each(|v| *v /= peak);
        }
        Ok(Heatmap {
            height: map.height,
            width: map.width,
            values: cam,
            peak,
        })
    }
}

/// First position of the largest value (where max pooling takes it from).
fn arg_max(values: &[f32]) -> usize {
    let mut best = 0;
    for (i, v) in values.iter().enumerate() {
        if *v > values[best] {
            best = i;
        }
    }
    best
}

/// A class-activation map, scaled so its largest value is 1.
#[derive(Clone, Debug, PartialEq)]
pub struct Heatmap {
    /// Rows (the feature map's).
    pub height: usize,
    /// Columns.
    pub width: usize,
    /// Row-major values in `[0, 1]`; all zero when nothing pushed towards the
    /// class.
    pub values: Vec<f32>,
    /// The largest value before scaling (evidence units; 0 = no evidence).
    pub peak: f32,
}

impl Heatmap {
    /// The map resized to `size × size` with bilinear interpolation.
    pub fn upsampled(&self, size: u32) -> ImageBuffer<Luma<f32>, Vec<f32>> {
        let small = ImageBuffer::<Luma<f32>, _>::from_raw(
            self.width as u32,
            self.height as u32,
            self.values.clone(),
        )
        .expect("width × height values");
        image::imageops::resize(&small, size, size, image::imageops::FilterType::Triangle)
    }
}

/// Height of the caption band under an overlay, pixels.
const CAPTION_LINE: u32 = 12;

/// Blend `heat` over `slice` (the preprocessed picture the model saw) with
/// the Turbo colour map, weighted by the heat so cold regions show the slice
/// as it is, and write `caption` lines in a band underneath.
pub fn overlay(slice: &RgbImage, heat: &Heatmap, caption: &[String]) -> RgbImage {
    let (w, h) = slice.dimensions();
    let band = CAPTION_LINE * caption.len() as u32 + 4;
    let mut out = RgbImage::new(w, h + band);
    let up = heat.upsampled(w.max(h));
    for (x, y, px) in slice.enumerate_pixels() {
        let t = up.get_pixel(x, y).0[0].clamp(0.0, 1.0);
        let c = colorous::TURBO.eval_continuous(f64::from(t));
        let a = 0.6 * t;
        let mix = |s: u8, m: u8| ((1.0 - a) * f32::from(s) + a * f32::from(m)).round() as u8;
        out.put_pixel(
            x,
            y,
            Rgb([mix(px[0], c.r), mix(px[1], c.g), mix(px[2], c.b)]),
        );
    }
    let mut canvas = Canvas(&mut out);
    let style = MonoTextStyle::new(&FONT_6X10, Rgb888::WHITE);
    for (i, line) in caption.iter().enumerate() {
        let y = (h + 10 + CAPTION_LINE * i as u32) as i32;
        let _ = Text::new(line, Point::new(3, y), style).draw(&mut canvas);
    }
    out
}

/// Encode an overlay as PNG bytes.
pub fn png_bytes(image: &RgbImage) -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    image
        .write_to(&mut out, image::ImageFormat::Png)
        .expect("PNG encoding into memory cannot fail");
    out.into_inner()
}

/// An `RgbImage` as an embedded-graphics draw target (captions here, and
/// any other text drawn on a picture); pixels outside it are dropped.
pub struct Canvas<'a>(pub &'a mut RgbImage);

impl OriginDimensions for Canvas<'_> {
    fn size(&self) -> Size {
        Size::new(self.0.width(), self.0.height())
    }
}

impl DrawTarget for Canvas<'_> {
    type Color = Rgb888;
    type Error = Infallible;

    fn draw_iter<I: IntoIterator<Item = Pixel<Rgb888>>>(
        &mut self,
        pixels: I,
    ) -> Result<(), Infallible> {
        for Pixel(p, c) in pixels {
            if let (Ok(x), Ok(y)) = (u32::try_from(p.x), u32::try_from(p.y))
                && x < self.0.width()
                && y < self.0.height()
            {
                self.0.put_pixel(x, y, Rgb([c.r(), c.g(), c.b()]));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    fn random_head(rng: &mut rand_chacha::ChaCha8Rng, pools: Vec<Pool>, c: usize) -> DenseHead {
        random_head_reading(rng, pools, c, false)
    }

    fn random_head_reading(
        rng: &mut rand_chacha::ChaCha8Rng,
        pools: Vec<Pool>,
        c: usize,
        asymmetry: bool,
    ) -> DenseHead {
        with_earlier(rng, pools, c, asymmetry, 0)
    }

    /// A random head; `earlier` > 0 adds that many earlier-block inputs.
    fn with_earlier(
        rng: &mut rand_chacha::ChaCha8Rng,
        pools: Vec<Pool>,
        c: usize,
        asymmetry: bool,
        earlier: usize,
    ) -> DenseHead {
        let dims = [
            c * pools.len() * if asymmetry { 2 } else { 1 } + earlier,
            6,
            5,
            2,
        ];
        let layers = dims
            .windows(2)
            .map(|d| Dense {
                inputs: d[0],
                outputs: d[1],
                weight: (0..d[0] * d[1])
                    .map(|_| rng.random_range(-1.0..1.0))
                    .collect(),
                bias: (0..d[1]).map(|_| rng.random_range(-0.5..0.5)).collect(),
            })
            .collect();
        DenseHead {
            pools,
            transform: PooledTransform::None,
            asymmetry,
            layers,
            feature_tensor: "features".into(),
            earlier: (earlier > 0).then(|| EarlierBlock {
                tensor: BLOCK4_POOLED.into(),
                width: earlier,
            }),
        }
    }

    fn random_map(rng: &mut rand_chacha::ChaCha8Rng, c: usize) -> FeatureMap {
        FeatureMap {
            channels: c,
            height: 3,
            width: 4,
            data: (0..c * 12).map(|_| rng.random_range(0.0..2.0)).collect(),
        }
    }

    /// Central difference of the evidence along `direction`, in f64 steps
    /// small enough to keep ReLU masks and arg-max positions.
    fn directional(
        head: &DenseHead,
        map: &FeatureMap,
        earlier: &[f32],
        class: usize,
        direction: &[f32],
    ) -> f32 {
        let eps = 1e-3f32;
        let shifted = |sign: f32| FeatureMap {
            data: map
                .data
                .iter()
                .zip(direction)
                .map(|(a, d)| a + sign * eps * d)
                .collect(),
            ..map.clone()
        };
        let up = head.evidence(&shifted(1.0), earlier, class).unwrap();
        let down = head.evidence(&shifted(-1.0), earlier, class).unwrap();
        (up - down) / (2.0 * eps)
    }

    #[test]
    fn gradients_match_finite_differences_for_every_pooling() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        use PooledTransform::{Log1p, None as Plain, SqrtL2};
        for (pools, transform, asymmetry, earlier) in [
            (vec![Pool::Average], Plain, false, 0),
            (vec![Pool::Max], Plain, false, 0),
            (vec![Pool::Average, Pool::Max], Plain, false, 0),
            (vec![Pool::Average, Pool::Max], Log1p, false, 0),
            (vec![Pool::Average], Plain, true, 0),
            (vec![Pool::Max], Log1p, true, 0),
            (vec![Pool::Average, Pool::Max], Log1p, true, 0),
            (vec![Pool::Average, Pool::Max], Log1p, false, 6),
            (vec![Pool::Average, Pool::Max], Log1p, true, 6),
            (vec![Pool::Average], SqrtL2, false, 0),
            (vec![Pool::Average, Pool::Max], SqrtL2, false, 0),
            (vec![Pool::Average, Pool::Max], SqrtL2, true, 0),
            (vec![Pool::Average, Pool::Max], SqrtL2, false, 6),
        ] {
            let head = DenseHead {
                transform,
                ..with_earlier(&mut rng, pools.clone(), 4, asymmetry, earlier)
            };
            let map = random_map(&mut rng, 4);
            let fixed: Vec<f32> = (0..earlier).map(|_| rng.random_range(0.0..2.0)).collect();
            for class in 0..2 {
                let grad = head.feature_gradient(&map, &fixed, class).unwrap();
                for idx in [0, 5, 13, 30, 47] {
                    let mut e = vec![0.0; map.data.len()];
                    e[idx] = 1.0;
                    let fd = directional(&head, &map, &fixed, class, &e);
                    assert!(
                        (fd - grad[idx]).abs() < 2e-3,
                        "{pools:?} {transform:?} asymmetry {asymmetry} earlier {earlier} class {class} index {idx}: analytic {} vs finite difference {fd}",
                        grad[idx]
                    );
                }
                // α_k · HW is the derivative along "raise all of channel k".
                let alpha = head.channel_weights(&map, &fixed, class).unwrap();
                for (k, a) in alpha.iter().enumerate() {
                    let mut e = vec![0.0; map.data.len()];
                    e[k * 12..(k + 1) * 12].iter_mut().for_each(|v| *v = 1.0);
                    let fd = directional(&head, &map, &fixed, class, &e) / 12.0;
                    assert!(
                        (fd - a).abs() < 2e-3,
                        "{pools:?} asymmetry {asymmetry} earlier {earlier} α_{k}: {a} vs {fd}"
                    );
                }
            }
        }
    }

    #[test]
    fn earlier_block_values_reach_the_output_and_are_checked() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
        let head = with_earlier(&mut rng, vec![Pool::Average, Pool::Max], 3, false, 4);
        assert_eq!(head.channels(), 3);
        let map = random_map(&mut rng, 3);
        let a = head.evidence(&map, &[0.0; 4], 1).unwrap();
        let b = head.evidence(&map, &[1.0, 0.0, 0.5, 2.0], 1).unwrap();
        assert!((a - b).abs() > 1e-4, "the head reads its earlier inputs");
        let err = head.probabilities(&map, &[0.0; 3]).unwrap_err().to_string();
        assert!(
            err.contains("3 earlier-block values") && err.contains("reading 4"),
            "{err}"
        );
    }

    #[test]
    fn evidence_is_the_log_odds_of_the_probabilities() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        let head = random_head(&mut rng, vec![Pool::Average, Pool::Max], 3);
        let map = random_map(&mut rng, 3);
        let p = head.probabilities(&map, &[]).unwrap();
        assert!((p[0] + p[1] - 1.0).abs() < 1e-6);
        let s = head.evidence(&map, &[], 1).unwrap();
        assert!((s - (p[1] / p[0]).ln()).abs() < 1e-4);
        assert_eq!(head.evidence(&map, &[], 0).unwrap(), -s);
    }

    #[test]
    fn the_map_follows_the_channel_that_carries_the_evidence() {
        // One channel, average pooling, a head whose evidence for class 1
        // grows with that channel: the map is the channel, scaled to 1.
        let head = DenseHead {
            pools: vec![Pool::Average],
            transform: PooledTransform::None,
            asymmetry: false,
            layers: vec![Dense {
                inputs: 1,
                outputs: 2,
                weight: vec![-1.0, 1.0],
                bias: vec![0.0, 0.0],
            }],
            feature_tensor: "f".into(),
            earlier: None,
        };
        let map = FeatureMap {
            channels: 1,
            height: 2,
            width: 2,
            data: vec![0.0, 1.0, 2.0, 4.0],
        };
        let cam = head.grad_cam(&map, &[], 1).unwrap();
        assert_eq!(cam.values, vec![0.0, 0.25, 0.5, 1.0]);
        // For the other class the same channel is counter-evidence: no map.
        let none = head.grad_cam(&map, &[], 0).unwrap();
        assert_eq!(none.peak, 0.0);
        assert!(none.values.iter().all(|v| *v == 0.0));
    }

    #[test]
    fn a_feature_map_of_the_wrong_width_is_an_error() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        let head = random_head(&mut rng, vec![Pool::Average], 4);
        let map = random_map(&mut rng, 3);
        let err = head.grad_cam(&map, &[], 1).unwrap_err().to_string();
        assert!(err.contains("reading 4 channels"), "{err}");
    }

    #[test]
    fn overlay_keeps_cold_pixels_and_adds_a_caption_band() {
        let slice = RgbImage::from_pixel(8, 8, Rgb([100, 100, 100]));
        let heat = Heatmap {
            height: 2,
            width: 2,
            values: vec![0.0, 0.0, 0.0, 0.0],
            peak: 0.0,
        };
        let out = overlay(&slice, &heat, &["yes 0.93".into()]);
        assert_eq!(out.dimensions(), (8, 8 + CAPTION_LINE + 4));
        assert_eq!(out.get_pixel(3, 3), &Rgb([100, 100, 100]));
    }
}
