//! Tensor ranks by propagation through the IR, for when shapes cannot be
//! inferred (symbolic sizes tract cannot reason about, as in Paddle exports).
//! Ranks alone are enough to read axis attributes correctly.

use crate::ir::{ops, Graph, Model, Node};
use std::collections::BTreeMap;

/// Ops whose output has the rank of their first input, besides the
/// element-wise, normalization, pooling and softmax families (`ir::ops`).
const SAME_AS_FIRST: &[&str] = &[
    "LayerNormalization",
    "Conv",
    "ConvTranspose",
    "Slice",
    "Concat",
    "Split",
    "Pad",
    "Resize",
    "DequantizeLinear",
    "QuantizeLinear",
    "CumSum",
    "LRN",
    "Tile",
    "TopK",
];

fn same_as_first(op: &str) -> bool {
    [ops::ELEMENTWISE_UNARY, ops::CHANNEL_NORMALIZATION, ops::POOLING, ops::SOFTMAX, SAME_AS_FIRST]
        .iter()
        .any(|family| ops::is(family, op))
}

/// Ranks by propagation; `known` (e.g. from tract) fills in where a rule
/// cannot tell, and propagation continues from there.
pub fn propagate_ranks(model: &Model, known: BTreeMap<String, usize>) -> BTreeMap<String, usize> {
    let mut ranks = known;
    propagate(&model.graph, &mut ranks);
    ranks
}

fn propagate(g: &Graph, ranks: &mut BTreeMap<String, usize>) {
    // Lengths of 1-D integer tensors that hold shapes, so that a Reshape to a
    // computed shape (Shape → Slice → Concat) still has a known rank.
    let mut lens: BTreeMap<String, usize> = BTreeMap::new();
    for i in &g.inputs {
        if let Some(s) = i.shape() {
            ranks.insert(i.name.clone(), s.len());
        }
    }
    for t in &g.initializers {
        ranks.insert(t.name.clone(), t.dims.len());
    }
    let Ok(order) = g.topo_order() else { return };
    for n in order {
        let node = &g.nodes[n];
        if node.op_type == "Constant" {
            if let Some(Ok(t)) = node.outputs.first().and_then(|o| g.constant(o)) {
                ranks.insert(node.outputs[0].clone(), t.dims.len());
            }
            continue;
        }
        if let (Some(len), Some(out)) = (shape_length(node, g, ranks, &lens), node.outputs.first()) {
            lens.insert(out.clone(), len);
        }
        if let Some(r) = rank_of(node, g, ranks, &lens) {
            for o in node.outputs.iter().filter(|o| !o.is_empty()) {
                ranks.insert(o.clone(), r);
            }
        }
    }
}

/// A constant int vector input's length (shape and axes inputs).
fn const_len(g: &Graph, name: Option<&str>) -> Option<usize> {
    g.constant(name?)?.ok().and_then(|t| t.numel())
}

/// Length of a 1-D shape-like tensor a node produces, where it can be told.
fn shape_length(
    node: &Node,
    g: &Graph,
    ranks: &BTreeMap<String, usize>,
    lens: &BTreeMap<String, usize>,
) -> Option<usize> {
    let len = |i: usize| {
        let name = node.input(i)?;
        lens.get(name).copied().or_else(|| g.constant(name)?.ok().filter(|t| t.dims.len() <= 1)?.numel())
    };
    match node.op_type.as_str() {
        "Shape" if node.attr_int("start").is_none() && node.attr_int("end").is_none() => {
            node.input(0).and_then(|i| ranks.get(i)).copied()
        }
        "Cast" | "Identity" => len(0),
        "Concat" => (0..node.inputs.len()).map(len).sum(),
        "Slice" => {
            let n = len(0)? as i64;
            let value = |i: usize| g.constant(node.input(i)?)?.ok()?.to_i64_vec().ok();
            let (starts, ends) = (value(1)?, value(2)?);
            let step = node.input(4).map(|_| value(4)).unwrap_or(Some(vec![1]))?;
            let clamp = |v: i64| if v < 0 { (v + n).max(0) } else { v.min(n) };
            match (&starts[..], &ends[..], &step[..]) {
                ([s], [e], [1]) => Some((clamp(*e) - clamp(*s)).max(0) as usize),
                _ => None,
            }
        }
        _ => None,
    }
}

fn rank_of(node: &Node, g: &Graph, ranks: &BTreeMap<String, usize>, lens: &BTreeMap<String, usize>) -> Option<usize> {
    let r = |i: usize| node.input(i).and_then(|n| ranks.get(n)).copied();
    let op = node.op_type.as_str();
    let axes_len = || node.attr_ints("axes").map(<[i64]>::len).or_else(|| const_len(g, node.input(1)));
    Some(match op {
        _ if same_as_first(op) => r(0)?,
        _ if ops::is(ops::BROADCAST, op) => {
            (0..node.inputs.len()).map(r).collect::<Option<Vec<_>>>()?.into_iter().max()?
        }
        "MatMul" | "MatMulInteger" => r(0)?.max(r(1)?),
        "Gemm" | "Flatten" => 2,
        "Shape" | "Range" | "NonZero" => {
            if op == "NonZero" {
                2
            } else {
                1
            }
        }
        "Size" => 0,
        "Transpose" => node.attr_ints("perm").map(<[i64]>::len).or_else(|| r(0))?,
        "Reshape" => const_len(g, node.input(1)).or_else(|| lens.get(node.input(1)?).copied())?,
        "ConstantOfShape" => const_len(g, node.input(0))?,
        "Expand" => r(0)?.max(const_len(g, node.input(1))?),
        "Squeeze" => r(0)?.checked_sub(axes_len()?)?,
        "Unsqueeze" => r(0)? + axes_len()?,
        "Gather" => (r(0)? + r(1)?).checked_sub(1)?,
        "ArgMax" | "ArgMin" => r(0)?.checked_sub(usize::from(node.attr_int("keepdims").unwrap_or(1) == 0))?,
        _ if ops::is(ops::REDUCTIONS, op) => {
            if node.attr_int("keepdims").unwrap_or(1) != 0 {
                r(0)?
            } else {
                r(0)?.checked_sub(axes_len().unwrap_or(r(0)?))?
            }
        }
        _ => return None,
    })
}
