//! Constant folding by running: nodes that read only constants are run once (in tract) and their
//! outputs that the rest of the graph reads become initializers. `simplify` folds what tract's
//! symbolic analysis proves; this catches the rest once every size is fixed — a position-id
//! Slice of a constant buffer in a BERT export, for one — as a converter to a fixed-size format
//! needs.

use crate::data::Array;
use crate::ir::{Graph, GraphIndex, Model, Tensor};
use crate::runtime::{Backend, Session, SessionOptions};
use crate::Result;
use std::collections::{BTreeMap, BTreeSet};

/// A folded tensor larger than this stays computed.
const MAX_FOLDED_ELEMENTS: usize = 1 << 24;

/// Folds every node whose inputs are all constants (see the module comment), and every `Shape`
/// of a tensor whose size `shapes` gives; returns how many tensors became constants.
pub fn fold_constants(model: &mut Model, shapes: &BTreeMap<String, Vec<usize>>) -> Result<usize> {
    let shapes_folded = fold_shapes(&mut model.graph, shapes);
    Ok(shapes_folded + fold_computed(model, None)?)
}

/// Folds only the nodes whose inputs are all constants that compute `targets` (a layer's weight or
/// bias made by a Mul or Cast of constants); returns how many tensors became constants.
pub fn fold_constants_into(model: &mut Model, targets: &BTreeSet<String>) -> Result<usize> {
    fold_computed(model, Some(targets))
}

/// Folds the nodes computed from constants alone — those computing `targets`, when given.
fn fold_computed(model: &mut Model, targets: Option<&BTreeSet<String>>) -> Result<usize> {
    let g = &model.graph;
    let index = GraphIndex::new(g);
    let mut constant: BTreeSet<String> = g.constant_names().into_iter().collect();
    let mut foldable = vec![false; g.nodes.len()];
    let order = g.topo_order()?;
    for &n in &order {
        let node = &g.nodes[n];
        let computable = node.is_onnx_op()
            && node.op_type != "Constant"
            && node.subgraphs().next().is_none()
            && !super::simplify::NONDETERMINISTIC.contains(&node.op_type.as_str());
        if computable && node.inputs.iter().filter(|i| !i.is_empty()).all(|i| constant.contains(i)) {
            foldable[n] = true;
            constant.extend(node.outputs.iter().filter(|o| !o.is_empty()).cloned());
        }
    }
    if let Some(targets) = targets {
        // Only what the targets are computed from, walking back from the last node.
        let mut needed: BTreeSet<&String> = targets.iter().collect();
        for &n in order.iter().rev() {
            let node = &g.nodes[n];
            foldable[n] &= node.outputs.iter().any(|o| needed.contains(o));
            if foldable[n] {
                needed.extend(node.inputs.iter());
            }
        }
    }
    let outputs: BTreeSet<&str> = g.outputs.iter().map(|o| o.name.as_str()).collect();
    let wanted: Vec<String> = g
        .nodes
        .iter()
        .enumerate()
        .filter(|(n, _)| foldable[*n])
        .flat_map(|(_, node)| node.outputs.iter())
        .filter(|t| !t.is_empty() && !outputs.contains(t.as_str()))
        .filter(|t| index.consumers(t).iter().any(|(c, _)| !foldable[*c]))
        .cloned()
        .collect();
    if wanted.is_empty() {
        return Ok(0);
    }
    let values = run_foldable(g, &foldable, &wanted)?;
    let mut tensors = vec![];
    for (name, value) in wanted.iter().zip(values) {
        if value.len() > MAX_FOLDED_ELEMENTS {
            return Ok(0);
        }
        tensors.push(tensor_of(name, &value));
    }
    let folded = tensors.len();
    let g = &mut model.graph;
    let mut k = 0;
    g.nodes.retain(|_| {
        k += 1;
        !foldable[k - 1]
    });
    g.initializers.extend(tensors);
    super::remove_unused_constants(g);
    Ok(folded)
}

/// `Shape` nodes (their `start`/`end` included) of tensors of known size, as int64 constants.
fn fold_shapes(g: &mut Graph, shapes: &BTreeMap<String, Vec<usize>>) -> usize {
    let mut constants = vec![];
    g.nodes.retain(|node| {
        let known = node.op_type == "Shape" && node.is_onnx_op() && node.outputs.len() == 1;
        let Some(shape) = node.inputs.first().and_then(|i| shapes.get(i)).filter(|_| known) else { return true };
        let rank = shape.len() as i64;
        let at = |v: i64| (if v < 0 { v + rank } else { v }).clamp(0, rank) as usize;
        let (start, end) = (at(node.attr_int("start").unwrap_or(0)), at(node.attr_int("end").unwrap_or(rank)));
        let dims: Vec<i64> = shape[start..end.max(start)].iter().map(|&d| d as i64).collect();
        constants.push(Tensor::from_array(&node.outputs[0], &ndarray::Array1::from(dims).into_dyn()));
        false
    });
    let n = constants.len();
    g.initializers.extend(constants);
    n
}

/// Runs the foldable nodes alone (their constants as initializers, no inputs) in tract.
fn run_foldable(g: &Graph, foldable: &[bool], wanted: &[String]) -> Result<Vec<Array>> {
    let nodes: Vec<_> =
        g.nodes.iter().enumerate().filter(|(n, _)| foldable[*n]).map(|(_, node)| node.clone()).collect();
    let read: BTreeSet<String> = nodes.iter().flat_map(|n| n.inputs.iter().cloned()).collect();
    let mut sub = Graph { name: "constants".into(), nodes, ..Default::default() };
    for name in &read {
        if let Some(t) = g.constant(name) {
            sub.initializers.push(t?);
        }
    }
    sub.outputs = wanted.iter().map(|w| crate::ir::ValueInfo::tensor(w, None, None)).collect();
    let model = Model::from_graph(sub, 17);
    let options = SessionOptions { backend: Some(Backend::Tract), ..Default::default() };
    let session = Session::new(&model, &options)?;
    session.run(&[])
}

fn tensor_of(name: &str, value: &Array) -> Tensor {
    match value {
        Array::F32(a) => Tensor::from_array(name, a),
        Array::F64(a) => Tensor::from_array(name, a),
        Array::I64(a) => Tensor::from_array(name, a),
        Array::I32(a) => Tensor::from_array(name, a),
        Array::I8(a) => Tensor::from_array(name, a),
        Array::U8(a) => Tensor::from_array(name, a),
        Array::Bool(a) => {
            let dims = a.shape().iter().map(|&d| d as i64).collect();
            let bytes: Vec<u8> = a.iter().map(|&b| u8::from(b)).collect();
            Tensor::from_bytes(name, crate::ir::DataType::BOOL, dims, bytes.into())
        }
    }
}
