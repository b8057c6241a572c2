//! One ONNX model out of backbone + pooling + head + softmax, verified.
//!
//! The exported graph takes the preprocessed tensor (see
//! [`scanside_shared::preprocess`]) and returns class probabilities
//! `[batch, 2]` in manifest label order. Feature standardisation is folded
//! into the first dense layer, so the graph is exactly
//! `backbone → GlobalAveragePool (‖ GlobalMaxPool) → Flatten (→ Add 1 → Log)
//! → (Gemm → Relu)* → Gemm → Softmax`; with left–right asymmetry, the same
//! pooling branch also runs on the map's left and right halves (`Slice`),
//! and `Abs(left − right)` is concatenated after the global branch; with
//! block 4 (`--blocks block4-last`), the same pooling branch runs on VGG16's
//! `block4_pool` tensor of the same forward pass and its output
//! ([`BLOCK4_POOLED`], declared with its width) is concatenated last. An
//! ensemble head arrives already merged into one network
//! ([`crate::head::merge`]).
//! Before anything is written, [`verify`] runs the exported bytes in tract on
//! every training image and compares with the in-memory pipeline.

use std::path::{Path, PathBuf};

use rayon::prelude::*;
use tract_onnx::pb::GraphProto;

use scanside_shared::classifier::Classifier;
use scanside_shared::explain::{ASYMMETRY_NODE, BLOCK4_POOLED, half_columns};
use scanside_shared::manifest::ModelManifest;
use scanside_shared::preprocess::{DecodeLimits, Layout, preprocess_file};

use crate::backbone::Backbone;
use crate::features::{Asymmetry, Blocks, FeatureTransform, Pooling};
use crate::head::{HeadConfig, TrainedHead, fold_standardisation};
use crate::onnx_graph::{
    self, DimSpec, attr_int, attr_ints, f32_tensor, i64_tensor, node, value_info,
};
use crate::{Error, Result};

/// Name of the exported graph's output.
pub const OUTPUT_NAME: &str = "probabilities";

/// Name of the dense head's input in the graph: pooled backbone features,
/// after the feature transform.
pub const POOLED_NAME: &str = scanside_shared::guard::POOLED_TENSOR;

/// The shapes of the backbone's maps that the graph needs to know.
#[derive(Clone, Copy, Debug)]
pub struct MapShapes {
    /// Width of the last feature map at the model's input size (where the
    /// left and right halves split, for [`Asymmetry::LeftRight`]).
    pub width: usize,
    /// Channels of the last feature map.
    pub channels: usize,
    /// Channels of block 4's map, when the recipe reads it.
    pub block4_channels: Option<usize>,
}

/// Build the exported model's bytes.
pub fn build(
    backbone: &Backbone,
    recipe: &HeadConfig,
    head: &TrainedHead,
    manifest: &ModelManifest,
    shapes: MapShapes,
) -> Result<Vec<u8>> {
    let feature_width = shapes.width;
    let mut model = backbone.proto.clone();
    let bm = &backbone.manifest;
    let graph = onnx_graph::graph_mut(&mut model)?;
    let s = i64::from(backbone.spec.size);
    let batch = DimSpec::Free("batch".into());
    let dims = match bm.layout {
        Layout::Nhwc => [
            batch.clone(),
            DimSpec::Fixed(s),
            DimSpec::Fixed(s),
            DimSpec::Fixed(3),
        ],
        Layout::Nchw => [
            batch.clone(),
            DimSpec::Fixed(3),
            DimSpec::Fixed(s),
            DimSpec::Fixed(s),
        ],
    };
    onnx_graph::set_input_dims(graph, &bm.input_name, &dims)?;

    // A feature tap in NCHW: as it is, or through a `Transpose` node
    // (`node_name`, output `out`) for a backbone whose maps are NHWC.
    let nchw = |graph: &mut GraphProto, tensor: &str, node_name: &str, out: &str| -> String {
        if bm.feature_layout == Layout::Nhwc {
            graph.node.push(node(
                "Transpose",
                node_name,
                &[tensor],
                &[out],
                vec![attr_ints("perm", &[0, 3, 1, 2])],
            ));
            out.to_string()
        } else {
            tensor.to_string()
        }
    };
    let features = nchw(
        graph,
        &bm.cut_at,
        "scanside/to_nchw",
        "scanside/features_nchw",
    );
    let block4 = match recipe.blocks {
        Blocks::Last => None,
        Blocks::Block4Last => {
            let (Some(tensor), Some(channels)) = (&backbone.block4, shapes.block4_channels) else {
                return Err(Error::Config(
                    "the recipe reads block 4, but the backbone was loaded without it".into(),
                ));
            };
            let map = nchw(
                graph,
                tensor,
                "scanside/block4/to_nchw",
                "scanside/block4/map_nchw",
            );
            Some((map, channels))
        }
    };
    // The last block's part of the head input: all of it without block 4.
    let last = if block4.is_some() {
        "scanside/last"
    } else {
        POOLED_NAME
    };
    if recipe.asymmetry == Asymmetry::None {
        pooled_branch(graph, recipe, &features, shapes.channels, "scanside", last);
    } else {
        // Global poolings, then |left − right| of the halves' poolings.
        pooled_branch(
            graph,
            recipe,
            &features,
            shapes.channels,
            "scanside",
            "scanside/global",
        );
        graph
            .initializer
            .push(i64_tensor("scanside/width_axis", &[3]));
        let mut halves = Vec::new();
        for (side, cols) in ["left", "right"]
            .into_iter()
            .zip(half_columns(feature_width))
        {
            let (starts, ends) = (
                format!("scanside/{side}/start"),
                format!("scanside/{side}/end"),
            );
            graph
                .initializer
                .push(i64_tensor(&starts, &[cols.start as i64]));
            graph
                .initializer
                .push(i64_tensor(&ends, &[cols.end as i64]));
            let half = format!("scanside/{side}/map");
            graph.node.push(node(
                "Slice",
                &half,
                &[&features, &starts, &ends, "scanside/width_axis"],
                &[&half],
                vec![],
            ));
            let prefix = format!("scanside/{side}");
            let pooled = format!("{prefix}/pooled");
            pooled_branch(graph, recipe, &half, shapes.channels, &prefix, &pooled);
            halves.push(pooled);
        }
        graph.node.push(node(
            "Sub",
            "scanside/left_minus_right",
            &[&halves[0], &halves[1]],
            &["scanside/left_minus_right"],
            vec![],
        ));
        graph.node.push(node(
            "Abs",
            ASYMMETRY_NODE,
            &["scanside/left_minus_right"],
            &[ASYMMETRY_NODE],
            vec![],
        ));
        graph.node.push(node(
            "Concat",
            "scanside/concat_asymmetry",
            &["scanside/global", ASYMMETRY_NODE],
            &[last],
            vec![attr_int("axis", 1)],
        ));
    }
    if let Some((map, channels)) = block4 {
        pooled_branch(
            graph,
            recipe,
            &map,
            channels,
            "scanside/block4",
            BLOCK4_POOLED,
        );
        let pools = match recipe.pooling {
            Pooling::Avg | Pooling::Max => 1,
            Pooling::AvgMax => 2,
        };
        graph.value_info.push(value_info(
            BLOCK4_POOLED,
            // The batch is left unnamed: tract binds the input's batch
            // symbol at load, and a second name for it would not unify.
            Some(&[DimSpec::Unknown, DimSpec::Fixed((pools * channels) as i64)]),
        ));
        graph.node.push(node(
            "Concat",
            "scanside/concat_block4",
            &[last, BLOCK4_POOLED],
            &[POOLED_NAME],
            vec![attr_int("axis", 1)],
        ));
    }
    let mut x = POOLED_NAME.to_string();
    for (l, layer) in fold_standardisation(head).into_iter().enumerate() {
        let (wn, bn, yn) = (
            format!("scanside/dense{l}/W"),
            format!("scanside/dense{l}/b"),
            format!("scanside/dense{l}"),
        );
        graph.initializer.push(f32_tensor(
            &wn,
            &[layer.inputs as i64, layer.outputs as i64],
            &layer.weight,
        ));
        graph
            .initializer
            .push(f32_tensor(&bn, &[layer.outputs as i64], &layer.bias));
        graph
            .node
            .push(node("Gemm", &yn, &[&x, &wn, &bn], &[&yn], vec![]));
        x = yn;
        if l + 1 < head.layers.len() {
            let r = format!("scanside/relu{l}");
            graph.node.push(node("Relu", &r, &[&x], &[&r], vec![]));
            x = r;
        }
    }
    graph.node.push(node(
        "Softmax",
        "scanside/softmax",
        &[&x],
        &[OUTPUT_NAME],
        vec![attr_int("axis", 1)],
    ));
    graph.output = vec![value_info(OUTPUT_NAME, Some(&[batch, DimSpec::Fixed(2)]))];
    graph.name = "scanside".into();
    model.producer_name = "scanside".into();
    model.producer_version = scanside_shared::SCANSIDE_VERSION.into();
    onnx_graph::set_metadata(&mut model, manifest.to_props());
    Ok(onnx_graph::encode(&model))
}

/// Nodes that pool the NCHW map `input` (`channels` deep) as `recipe`
/// says, flatten it and apply its transform, writing the row vector
/// `output`. Node names start with `prefix`; the global branch
/// (`scanside`) keeps the names [`scanside_shared::explain::DenseHead`]
/// looks for.
fn pooled_branch(
    graph: &mut GraphProto,
    recipe: &HeadConfig,
    input: &str,
    channels: usize,
    prefix: &str,
    output: &str,
) {
    let pools: &[(&str, &str)] = match recipe.pooling {
        Pooling::Avg => &[("GlobalAveragePool", "avg")],
        Pooling::Max => &[("GlobalMaxPool", "max")],
        Pooling::AvgMax => &[("GlobalAveragePool", "avg"), ("GlobalMaxPool", "max")],
    };
    if recipe.transform == FeatureTransform::SqrtL2 {
        sqrt_l2_branch(graph, pools, input, channels, prefix, output);
        return;
    }
    let pooled: Vec<String> = pools
        .iter()
        .map(|(op, kind)| {
            let name = format!("{prefix}/{kind}");
            let pool = format!("{name}_pool");
            graph.node.push(node(op, &pool, &[input], &[&name], vec![]));
            name
        })
        .collect();
    let pooled4d = match &pooled[..] {
        [one] => one.clone(),
        both => {
            let concat = format!("{prefix}/pooled4d");
            let inputs: Vec<&str> = both.iter().map(String::as_str).collect();
            graph.node.push(node(
                "Concat",
                &format!("{prefix}/concat_pools"),
                &inputs,
                &[&concat],
                vec![attr_int("axis", 1)],
            ));
            concat
        }
    };
    let flat = match recipe.transform {
        FeatureTransform::None => output.to_string(),
        FeatureTransform::Log1p | FeatureTransform::SqrtL2 => format!("{prefix}/flat"),
    };
    graph.node.push(node(
        "Flatten",
        &format!("{prefix}/flatten"),
        &[&pooled4d],
        &[&flat],
        vec![attr_int("axis", 1)],
    ));
    if recipe.transform == FeatureTransform::Log1p {
        let (one, one_plus) = (format!("{prefix}/one"), format!("{prefix}/one_plus"));
        graph.initializer.push(f32_tensor(&one, &[], &[1.0]));
        graph
            .node
            .push(node("Add", &one_plus, &[&flat, &one], &[&one_plus], vec![]));
        // For the global branch (`scanside`) this is `LOG1P_NODE`, the node
        // explain looks for.
        let log = format!("{prefix}/log1p");
        graph
            .node
            .push(node("Log", &log, &[&one_plus], &[output], vec![]));
    }
}

/// [`pooled_branch`] for [`FeatureTransform::SqrtL2`]: each pooling
/// flattened to `[batch, channels]`, its sum (a `MatMul` with a column of
/// ones, which needs no opset-specific reduction), `+ ε`, the division and
/// the root (the node `{prefix}/{kind}_sqrt_l2`), then the poolings
/// concatenated.
fn sqrt_l2_branch(
    graph: &mut GraphProto,
    pools: &[(&str, &str)],
    input: &str,
    channels: usize,
    prefix: &str,
    output: &str,
) {
    let (ones, eps) = (format!("{prefix}/ones"), format!("{prefix}/sqrt_l2_eps"));
    graph.initializer.push(f32_tensor(
        &ones,
        &[channels as i64, 1],
        &vec![1.0; channels],
    ));
    graph.initializer.push(f32_tensor(
        &eps,
        &[],
        &[scanside_shared::explain::SQRT_L2_EPSILON],
    ));
    let mut parts = Vec::new();
    for (op, kind) in pools {
        let name = format!("{prefix}/{kind}");
        let step = |s: &str| format!("{name}_{s}");
        graph
            .node
            .push(node(op, &step("pool"), &[input], &[&name], vec![]));
        graph.node.push(node(
            "Flatten",
            &step("flatten"),
            &[&name],
            &[&step("flat")],
            vec![attr_int("axis", 1)],
        ));
        // Each step's node and output share a name.
        for (op, out, inputs) in [
            ("MatMul", "sum", [step("flat"), ones.clone()]),
            ("Add", "sum_eps", [step("sum"), eps.clone()]),
            ("Div", "share", [step("flat"), step("sum_eps")]),
        ] {
            let inputs = [inputs[0].as_str(), inputs[1].as_str()];
            graph
                .node
                .push(node(op, &step(out), &inputs, &[&step(out)], vec![]));
        }
        let root = format!("{name}{}", scanside_shared::explain::SQRT_L2_SUFFIX);
        let out = if pools.len() == 1 {
            output.to_string()
        } else {
            root.clone()
        };
        graph
            .node
            .push(node("Sqrt", &root, &[&step("share")], &[&out], vec![]));
        parts.push(out);
    }
    if parts.len() > 1 {
        let inputs: Vec<&str> = parts.iter().map(String::as_str).collect();
        graph.node.push(node(
            "Concat",
            &format!("{prefix}/concat_pools"),
            &inputs,
            &[output],
            vec![attr_int("axis", 1)],
        ));
    }
}

/// The result of checking an exported model against the in-memory pipeline.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Verification {
    /// Images compared.
    pub images: usize,
    /// Largest |Δ probability| seen.
    pub max_abs_diff: f32,
    /// The file with the largest difference.
    pub worst_file: Option<PathBuf>,
    /// For a model with a guard: the largest |Δ guard score| between the
    /// graph's head input and the in-memory one, as a fraction of the
    /// guard's threshold.
    #[serde(default)]
    pub guard_max_rel_diff: Option<f32>,
}

/// Largest |Δ guard score| over the threshold that [`verify`] accepts: the
/// graph and the in-memory pipeline must put every image on the same side
/// of the threshold but for rounding.
pub const GUARD_TOLERANCE: f32 = 1e-3;

/// Run `bytes` in tract on every file and compare its tumour probability with
/// `expected`; fail if any differs by more than `tolerance`. For a model
/// with a guard, `head_inputs` (the in-memory head input of each file) are
/// scored by the guard and compared with the scores of the graph's
/// [`scanside_shared::guard::POOLED_TENSOR`]: the guard the device runs must
/// score what it was fitted on.
pub fn verify(
    bytes: &[u8],
    name: &Path,
    files: &[PathBuf],
    expected: &[f32],
    head_inputs: Option<&[Vec<f32>]>,
    tolerance: f32,
    limits: &DecodeLimits,
) -> Result<Verification> {
    let classifier = Classifier::from_bytes(bytes, name)?;
    let spec = classifier.manifest().preprocessing.clone();
    let guard = classifier.guard().map(|g| &g.features);
    if expected.len() != files.len() {
        return Err(Error::Verification(format!(
            "{} expected probabilities for {} files",
            expected.len(),
            files.len()
        )));
    }
    match (guard, head_inputs) {
        (Some(_), None) => {
            return Err(Error::Verification(
                "the model has a guard but no in-memory head inputs were given".into(),
            ));
        }
        (Some(_), Some(h)) if h.len() != files.len() => {
            return Err(Error::Verification(format!(
                "{} in-memory head inputs for {} files",
                h.len(),
                files.len()
            )));
        }
        _ => {}
    }
    let diffs: Vec<(f32, Option<f32>)> = files
        .par_iter()
        .enumerate()
        .map(|(i, f)| {
            let input = preprocess_file(f, &spec, limits)?;
            let (p, pooled) = classifier.positive_with_head_input(&input)?;
            let guard_diff = match (guard, pooled, head_inputs) {
                (Some(g), Some(graph), Some(memory)) => {
                    let d = (g.score(&graph)? - g.score(&memory[i])?).abs() / g.threshold;
                    Some(if d.is_nan() { f32::INFINITY } else { d })
                }
                _ => None,
            };
            Ok(((p - expected[i]).abs(), guard_diff))
        })
        .collect::<Result<_>>()?;
    let worst_of = |values: &mut dyn Iterator<Item = f32>| {
        values.enumerate().fold((None, 0f32), |(wi, wm), (i, d)| {
            if d > wm || d.is_nan() {
                (Some(i), d)
            } else {
                (wi, wm)
            }
        })
    };
    let (worst, max) = worst_of(&mut diffs.iter().map(|d| d.0));
    let (guard_worst, guard_max) = worst_of(&mut diffs.iter().map(|d| d.1.unwrap_or(0.0)));
    let v = Verification {
        images: files.len(),
        max_abs_diff: max,
        worst_file: worst.map(|i| files[i].clone()),
        guard_max_rel_diff: guard.map(|_| guard_max),
    };
    if max.is_nan() || max > tolerance {
        return Err(Error::Verification(format!(
            "exported model differs from the in-memory pipeline by {max} (> {tolerance}) on {}",
            v.worst_file
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default()
        )));
    }
    if guard.is_some() && guard_max > GUARD_TOLERANCE {
        return Err(Error::Verification(format!(
            "the exported model's guard score differs from the in-memory one by {:.4} % \
             of the threshold (> {:.4} %) on {}",
            100.0 * guard_max,
            100.0 * GUARD_TOLERANCE,
            guard_worst
                .map(|i| files[i].display().to_string())
                .unwrap_or_default()
        )));
    }
    Ok(v)
}
