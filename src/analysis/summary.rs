//! What `inspect` reports: opsets, inputs and outputs, op histogram,
//! parameters, weight bytes, sparsity, and MACs per layer.

use super::macs::{counts_macs, node_macs};
use super::shapes::{concrete_input_shapes, infer_shapes};
use crate::data::show_dims;
use crate::ir::{Graph, Model, Tensor};
use crate::Result;
use serde::Serialize;
use std::collections::BTreeMap;

/// A declared input or output.
#[derive(Clone, Debug, Serialize)]
pub struct ValueSummary {
    /// Its name.
    pub name: String,
    /// Its element type.
    pub dtype: String,
    /// Its declared shape, e.g. `Nx3x48x320`.
    pub shape: String,
}

/// One float constant with more than one element.
#[derive(Clone, Debug, Serialize)]
pub struct WeightSummary {
    /// The constant's name.
    pub name: String,
    /// Its element type.
    pub dtype: String,
    /// Its shape.
    pub shape: Vec<usize>,
    /// Its elements.
    pub elements: u64,
    /// How many are zero.
    pub zeros: u64,
    /// The zero fraction.
    pub sparsity: f64,
}

/// One node that costs multiply-accumulates.
#[derive(Clone, Debug, Serialize)]
pub struct LayerSummary {
    /// The node's name.
    pub name: String,
    /// Its op type.
    pub op_type: String,
    /// `None` when tract could not give the shapes it needs.
    pub macs: Option<u64>,
    /// Elements of the layer's constant inputs (weight, bias).
    pub parameters: u64,
    /// Its weight's name.
    pub weight: Option<String>,
    /// Its weight's zero fraction.
    pub sparsity: Option<f64>,
    /// Its output shape for the input shapes counted.
    pub output_shape: Option<Vec<usize>>,
}

/// What `inspect` shows about a model.
#[derive(Clone, Debug, Serialize)]
pub struct Summary {
    /// `ModelProto.ir_version`.
    pub ir_version: i64,
    /// Opset version per domain.
    pub opsets: BTreeMap<String, i64>,
    /// The tool that wrote the file, with its version.
    pub producer: String,
    /// Declared inputs.
    pub inputs: Vec<ValueSummary>,
    /// Declared outputs.
    pub outputs: Vec<ValueSummary>,
    /// The input shapes MACs were counted for.
    pub input_shapes: BTreeMap<String, Vec<usize>>,
    /// How many nodes.
    pub nodes: usize,
    /// Nodes per op type.
    pub ops: BTreeMap<String, usize>,
    /// Elements of all float constants (initializers and `Constant` nodes).
    pub parameters: u64,
    /// Multiply-accumulates of one run at the input shapes.
    pub macs: u64,
    /// True when every layer's MACs could be counted.
    pub macs_complete: bool,
    /// Why shapes could not be inferred (then pass concrete input shapes).
    pub shape_error: Option<String>,
    /// The encoded model's size (protobuf plus external data).
    pub size_bytes: u64,
    /// Bytes of weights per element type.
    pub weight_bytes: BTreeMap<String, u64>,
    /// Zero fraction over all weights below.
    pub sparsity: f64,
    /// Float constants with more than one element.
    pub weights: Vec<WeightSummary>,
    /// Nodes that cost multiply-accumulates.
    pub layers: Vec<LayerSummary>,
}

/// Summarises `model` for the given input shapes (dynamic dims default to 1).
/// `size_bytes` is the model's size on disk, if known.
pub fn summarize(model: &Model, shapes: &BTreeMap<String, Vec<usize>>, size_bytes: Option<u64>) -> Result<Summary> {
    let g = &model.graph;
    let input_shapes = concrete_input_shapes(model, shapes);
    // Without shapes the rest of the summary still stands; MACs are then unknown.
    let (tensor_shapes, shape_error) = match infer_shapes(model, &input_shapes) {
        Ok(s) => (s, None),
        Err(e) => (BTreeMap::new(), Some(e.to_string())),
    };
    let constants = all_constants(g)?;
    let mut ops = BTreeMap::new();
    count_ops(g, &mut ops);
    let mut weight_bytes = BTreeMap::new();
    let (mut parameters, mut weights) = (0u64, vec![]);
    for t in constants.values() {
        *weight_bytes.entry(t.dtype.to_string()).or_insert(0) += t.byte_size() as u64;
        if t.dtype.is_float() {
            let n = t.numel().unwrap_or(0) as u64;
            parameters += n;
            if n > 1 {
                let zeros = t.count_zeros().unwrap_or(0) as u64;
                weights.push(WeightSummary {
                    name: t.name.clone(),
                    dtype: t.dtype.to_string(),
                    shape: t.shape(),
                    elements: n,
                    zeros,
                    sparsity: zeros as f64 / n as f64,
                });
            }
        }
    }
    let (total_w, total_z) = weights.iter().fold((0, 0), |(e, z), w| (e + w.elements, z + w.zeros));
    let layers: Vec<LayerSummary> = g
        .nodes
        .iter()
        .filter(|n| counts_macs(&n.op_type))
        .map(|n| {
            let consts: Vec<&Tensor> = n.inputs.iter().filter_map(|i| constants.get(i)).collect();
            let weight = n.input(1).filter(|w| constants.contains_key(*w));
            LayerSummary {
                name: n.label(),
                op_type: n.op_type.clone(),
                macs: node_macs(n, &tensor_shapes),
                parameters: consts.iter().filter(|t| t.dtype.is_float()).map(|t| t.numel().unwrap_or(0) as u64).sum(),
                weight: weight.map(str::to_string),
                sparsity: weight.and_then(|w| weights.iter().find(|s| s.name == w)).map(|s| s.sparsity),
                output_shape: n.outputs.first().and_then(|o| tensor_shapes.get(o)).cloned(),
            }
        })
        .collect();
    let value = |v: &crate::ir::ValueInfo| ValueSummary {
        name: v.name.clone(),
        dtype: v.dtype().map(|d| d.to_string()).unwrap_or_else(|| "?".into()),
        shape: v.shape().map(|s| show_dims(&s)).unwrap_or_else(|| "?".into()),
    };
    let size_bytes = match size_bytes {
        Some(s) => s,
        None => crate::onnx::encode(model).map(|b| b.len() as u64).unwrap_or(0),
    };
    Ok(Summary {
        ir_version: model.ir_version,
        opsets: model
            .opset_import
            .iter()
            .map(|o| (o.domain.clone().filter(|d| !d.is_empty()).unwrap_or_else(|| "ai.onnx".into()), o.version))
            .collect(),
        producer: format!("{} {}", model.producer_name, model.producer_version).trim().to_string(),
        inputs: crate::runtime::feed_inputs(model).iter().map(value).collect(),
        outputs: g.outputs.iter().map(value).collect(),
        input_shapes,
        nodes: g.nodes.len(),
        ops,
        parameters,
        macs: layers.iter().filter_map(|l| l.macs).sum(),
        macs_complete: layers.iter().all(|l| l.macs.is_some()),
        shape_error,
        size_bytes,
        weight_bytes,
        sparsity: if total_w == 0 { 0.0 } else { total_z as f64 / total_w as f64 },
        weights,
        layers,
    })
}

/// Every constant of the graph and its subgraphs, by name.
fn all_constants(g: &Graph) -> Result<BTreeMap<String, Tensor>> {
    let mut out = BTreeMap::new();
    for name in g.constant_names() {
        if let Some(t) = g.constant(&name) {
            out.insert(name, t?);
        }
    }
    for sub in g.nodes.iter().flat_map(|n| n.subgraphs()) {
        out.extend(all_constants(sub)?);
    }
    Ok(out)
}

fn count_ops(g: &Graph, ops: &mut BTreeMap<String, usize>) {
    for n in &g.nodes {
        let key = if n.is_onnx_op() { n.op_type.clone() } else { format!("{}:{}", n.domain, n.op_type) };
        *ops.entry(key).or_insert(0) += 1;
        for sub in n.subgraphs() {
            count_ops(sub, ops);
        }
    }
}
