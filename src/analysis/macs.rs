//! Multiply-accumulates per node: one rule per op type, in one table.

use crate::ir::Node;
use std::collections::BTreeMap;

type Shapes = BTreeMap<String, Vec<usize>>;
/// MACs of one node from the shapes of its tensors; `None` if a shape is unknown.
type MacRule = fn(&Node, &Shapes) -> Option<u64>;

/// The op types that cost multiply-accumulates, and how to count them.
const RULES: &[(&str, MacRule)] = &[
    ("Conv", conv),
    ("ConvTranspose", conv_transpose),
    ("Gemm", gemm),
    ("MatMul", matmul),
    ("MatMulInteger", matmul),
    ("ConvInteger", conv),
];

/// MACs of `node`: `Some(0)` for ops that cost none, `None` when shapes are missing.
pub fn node_macs(node: &Node, shapes: &Shapes) -> Option<u64> {
    match RULES.iter().find(|(op, _)| *op == node.op_type) {
        Some((_, rule)) => rule(node, shapes),
        None => Some(0),
    }
}

pub fn counts_macs(op_type: &str) -> bool {
    RULES.iter().any(|(op, _)| *op == op_type)
}

fn shape<'a>(node: &Node, ix: usize, outputs: bool, shapes: &'a Shapes) -> Option<&'a Vec<usize>> {
    let name = if outputs {
        node.outputs.get(ix)?
    } else {
        node.inputs.get(ix)?
    };
    shapes.get(name)
}

fn product(dims: &[usize]) -> u64 {
    dims.iter().map(|&d| d as u64).product()
}

/// Every output element sums Cin/group × kernel products.
fn conv(node: &Node, shapes: &Shapes) -> Option<u64> {
    let out = shape(node, 0, true, shapes)?;
    let w = shape(node, 1, false, shapes)?;
    Some(product(out) * product(w.get(1..)?))
}

/// Every input element is spread over Cout/group × kernel outputs.
fn conv_transpose(node: &Node, shapes: &Shapes) -> Option<u64> {
    let x = shape(node, 0, false, shapes)?;
    let w = shape(node, 1, false, shapes)?;
    Some(product(x) * product(w.get(1..)?))
}

fn gemm(node: &Node, shapes: &Shapes) -> Option<u64> {
    let out = shape(node, 0, true, shapes)?;
    let a = shape(node, 0, false, shapes)?;
    let k = if node.attr_int("transA").unwrap_or(0) != 0 {
        *a.first()?
    } else {
        *a.last()?
    };
    Some(product(out) * k as u64)
}

fn matmul(node: &Node, shapes: &Shapes) -> Option<u64> {
    let out = shape(node, 0, true, shapes)?;
    let k = *shape(node, 0, false, shapes)?.last()?;
    Some(product(out) * k as u64)
}
