//! Small, explicit edits of ONNX graphs, on tract's own protobuf types.
//!
//! scanside never hand-writes protobuf: it decodes a model into
//! `tract_onnx::pb::ModelProto`, edits the structs here (cut a graph at a
//! tensor, free input dimensions, append nodes, set metadata) and encodes
//! them with `prost`.

use std::collections::{BTreeMap, HashMap, HashSet};

use prost::Message;
use sha2::{Digest, Sha256};
use tract_onnx::pb::{
    AttributeProto, GraphProto, ModelProto, NodeProto, StringStringEntryProto, TensorProto,
    TensorShapeProto, TypeProto, ValueInfoProto, attribute_proto::AttributeType,
    tensor_proto::DataType, tensor_shape_proto::Dimension, tensor_shape_proto::dimension,
    type_proto,
};

use crate::{Error, Result};

/// Encode a model to ONNX bytes.
pub fn encode(model: &ModelProto) -> Vec<u8> {
    model.encode_to_vec()
}

/// The graph of a model, or an error if it has none.
pub fn graph_mut(model: &mut ModelProto) -> Result<&mut GraphProto> {
    model
        .graph
        .as_mut()
        .ok_or_else(|| Error::Onnx("model has no graph".into()))
}

/// Cut `graph` so that `tensor` is its only output: keep only the nodes and
/// initializers `tensor` depends on.
pub fn cut_at(graph: &mut GraphProto, tensor: &str) -> Result<()> {
    let producer: HashMap<&str, usize> = graph
        .node
        .iter()
        .enumerate()
        .flat_map(|(i, n)| n.output.iter().map(move |o| (o.as_str(), i)))
        .collect();
    if !producer.contains_key(tensor) {
        let mut near: Vec<&str> = producer
            .keys()
            .copied()
            .filter(|k| k.contains("pool") || k.contains("Pool"))
            .collect();
        near.sort();
        return Err(Error::Onnx(format!(
            "no node produces tensor `{tensor}` (pooling outputs in this graph: {near:?})"
        )));
    }
    let mut needed: HashSet<String> = HashSet::new();
    let mut keep_nodes: HashSet<usize> = HashSet::new();
    let mut stack = vec![tensor.to_string()];
    while let Some(t) = stack.pop() {
        if !needed.insert(t.clone()) {
            continue;
        }
        if let Some(&i) = producer.get(t.as_str()) {
            keep_nodes.insert(i);
            stack.extend(
                graph.node[i]
                    .input
                    .iter()
                    .filter(|s| !s.is_empty())
                    .cloned(),
            );
        }
    }
    let nodes = std::mem::take(&mut graph.node);
    graph.node = nodes
        .into_iter()
        .enumerate()
        .filter(|(i, _)| keep_nodes.contains(i))
        .map(|(_, n)| n)
        .collect();
    graph.initializer.retain(|t| needed.contains(&t.name));
    graph.input.retain(|v| needed.contains(&v.name));
    graph.value_info.clear();
    graph.output = vec![value_info(tensor, None)];
    Ok(())
}

/// A float tensor value-info, with symbolic or fixed dims (`None`: unknown).
pub fn value_info(name: &str, dims: Option<&[DimSpec]>) -> ValueInfoProto {
    ValueInfoProto {
        name: name.into(),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: DataType::Float as i32,
                shape: dims.map(|d| TensorShapeProto {
                    dim: d.iter().map(DimSpec::to_proto).collect(),
                }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// One dimension of a declared shape.
#[derive(Clone, Debug, PartialEq)]
pub enum DimSpec {
    /// A fixed size.
    Fixed(i64),
    /// A named free dimension.
    Free(String),
    /// A dimension declared without a size or a name (tract infers it).
    Unknown,
}

impl DimSpec {
    fn to_proto(&self) -> Dimension {
        Dimension {
            value: match self {
                DimSpec::Fixed(v) => Some(dimension::Value::DimValue(*v)),
                DimSpec::Free(s) => Some(dimension::Value::DimParam(s.clone())),
                DimSpec::Unknown => None,
            },
            ..Default::default()
        }
    }
}

/// Replace the declared shape of graph input `name`.
pub fn set_input_dims(graph: &mut GraphProto, name: &str, dims: &[DimSpec]) -> Result<()> {
    let v = graph
        .input
        .iter_mut()
        .find(|v| v.name == name)
        .ok_or_else(|| Error::Onnx(format!("graph has no input `{name}`")))?;
    *v = value_info(name, Some(dims));
    Ok(())
}

/// Names of graph inputs that are not initializers (the real inputs).
pub fn real_inputs(graph: &GraphProto) -> Vec<String> {
    let inits: HashSet<&str> = graph.initializer.iter().map(|t| t.name.as_str()).collect();
    graph
        .input
        .iter()
        .filter(|v| !inits.contains(v.name.as_str()))
        .map(|v| v.name.clone())
        .collect()
}

/// A float initializer, little-endian raw data.
pub fn f32_tensor(name: &str, dims: &[i64], data: &[f32]) -> TensorProto {
    assert_eq!(dims.iter().product::<i64>() as usize, data.len(), "{name}");
    TensorProto {
        name: name.into(),
        dims: dims.to_vec(),
        data_type: DataType::Float as i32,
        raw_data: data.iter().flat_map(|v| v.to_le_bytes()).collect(),
        ..Default::default()
    }
}

/// An int64 initializer.
pub fn i64_tensor(name: &str, data: &[i64]) -> TensorProto {
    TensorProto {
        name: name.into(),
        dims: vec![data.len() as i64],
        data_type: DataType::Int64 as i32,
        raw_data: data.iter().flat_map(|v| v.to_le_bytes()).collect(),
        ..Default::default()
    }
}

/// Values of a float initializer (raw or `float_data`).
pub fn f32_values(t: &TensorProto) -> Result<Vec<f32>> {
    scanside_shared::explain::f32_values(t).map_err(Error::Onnx)
}

/// Little-endian bytes of a tensor's data, whatever field holds them.
fn le_bytes(t: &TensorProto) -> Vec<u8> {
    if !t.raw_data.is_empty() {
        return t.raw_data.clone();
    }
    let mut out = Vec::new();
    out.extend(t.float_data.iter().flat_map(|v| v.to_le_bytes()));
    out.extend(t.int32_data.iter().flat_map(|v| v.to_le_bytes()));
    out.extend(t.int64_data.iter().flat_map(|v| v.to_le_bytes()));
    out.extend(t.double_data.iter().flat_map(|v| v.to_le_bytes()));
    out.extend(t.uint64_data.iter().flat_map(|v| v.to_le_bytes()));
    out
}

/// SHA-256 over a graph's initializers, sorted by name: name, a zero byte,
/// dims (i64 LE), data type (i32 LE), little-endian data. Independent of
/// node names, metadata and protobuf field order, so it identifies weights.
/// `scripts/backbone_fingerprint.py` computes the same value with `onnx`.
pub fn weights_sha256(graph: &GraphProto) -> String {
    let mut inits: Vec<&TensorProto> = graph.initializer.iter().collect();
    inits.sort_by(|a, b| a.name.as_bytes().cmp(b.name.as_bytes()));
    let mut h = Sha256::new();
    for t in inits {
        h.update(t.name.as_bytes());
        h.update([0u8]);
        for d in &t.dims {
            h.update(d.to_le_bytes());
        }
        h.update(t.data_type.to_le_bytes());
        h.update(le_bytes(t));
    }
    hex::encode(h.finalize())
}

/// Build a node.
pub fn node(
    op_type: &str,
    name: &str,
    inputs: &[&str],
    outputs: &[&str],
    attributes: Vec<AttributeProto>,
) -> NodeProto {
    NodeProto {
        op_type: op_type.into(),
        name: name.into(),
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: outputs.iter().map(|s| s.to_string()).collect(),
        attribute: attributes,
        ..Default::default()
    }
}

/// An integer attribute.
pub fn attr_int(name: &str, value: i64) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: AttributeType::Int as i32,
        i: value,
        ..Default::default()
    }
}

/// An integer-list attribute.
pub fn attr_ints(name: &str, values: &[i64]) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: AttributeType::Ints as i32,
        ints: values.to_vec(),
        ..Default::default()
    }
}

/// Metadata of a model as a map.
pub fn metadata(model: &ModelProto) -> BTreeMap<String, String> {
    model
        .metadata_props
        .iter()
        .map(|p| (p.key.clone(), p.value.clone()))
        .collect()
}

/// Set metadata keys (replacing any with the same key).
pub fn set_metadata(model: &mut ModelProto, props: impl IntoIterator<Item = (String, String)>) {
    let mut map = metadata(model);
    map.extend(props);
    model.metadata_props = map
        .into_iter()
        .map(|(key, value)| StringStringEntryProto { key, value })
        .collect();
}
