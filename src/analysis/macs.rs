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

/// Whether op type `op_type` costs multiply-accumulates.
pub fn counts_macs(op_type: &str) -> bool {
    RULES.iter().any(|(op, _)| *op == op_type)
}

fn shape<'a>(node: &Node, ix: usize, outputs: bool, shapes: &'a Shapes) -> Option<&'a Vec<usize>> {
    let name = if outputs { node.outputs.get(ix)? } else { node.inputs.get(ix)? };
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

/// M·N·K from the input shapes (with `transA`/`transB`).
fn gemm(node: &Node, shapes: &Shapes) -> Option<u64> {
    let (a, b) = (shape(node, 0, false, shapes)?, shape(node, 1, false, shapes)?);
    let [a0, a1] = a[..] else { return None };
    let [b0, b1] = b[..] else { return None };
    let (m, k) = if node.attr_int("transA").unwrap_or(0) != 0 { (a1, a0) } else { (a0, a1) };
    let n = if node.attr_int("transB").unwrap_or(0) != 0 { b0 } else { b1 };
    Some(m as u64 * n as u64 * k as u64)
}

/// Batch · M · N · K from the input shapes, with NumPy broadcasting of the
/// batch dims and 1-D operands promoted as the spec says.
fn matmul(node: &Node, shapes: &Shapes) -> Option<u64> {
    let (a, b) = (shape(node, 0, false, shapes)?, shape(node, 1, false, shapes)?);
    let (m, k) = match a.len() {
        0 => return None,
        1 => (1, a[0]),
        r => (a[r - 2], a[r - 1]),
    };
    let n = match b.len() {
        0 => return None,
        1 => 1,
        r => b[r - 1],
    };
    let batch_a = &a[..a.len().saturating_sub(2)];
    let batch_b = &b[..b.len().saturating_sub(2)];
    let rank = batch_a.len().max(batch_b.len());
    let dim = |d: &[usize], i: usize| {
        if i + d.len() >= rank {
            d[i + d.len() - rank]
        } else {
            1
        }
    };
    let batch: u64 = (0..rank).map(|i| dim(batch_a, i).max(dim(batch_b, i)) as u64).product();
    Some(batch * m as u64 * n as u64 * k as u64)
}
