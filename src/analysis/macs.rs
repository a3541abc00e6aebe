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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::testing::{int, node};

    fn shapes(pairs: &[(&str, &[usize])]) -> Shapes {
        pairs.iter().map(|(n, d)| (n.to_string(), d.to_vec())).collect()
    }

    #[test]
    fn convs_cost_each_output_its_input_channels_times_the_kernel() {
        let conv = node("Conv", &["x", "w"], "y", &[]);
        let s = shapes(&[("x", &[1, 3, 16, 16]), ("w", &[8, 3, 3, 3]), ("y", &[1, 8, 16, 16])]);
        assert_eq!(node_macs(&conv, &s), Some(8 * 16 * 16 * 3 * 3 * 3));
        // Depthwise: each output reads one channel.
        let s = shapes(&[("w", &[8, 1, 3, 3]), ("y", &[1, 8, 16, 16])]);
        assert_eq!(node_macs(&conv, &s), Some(8 * 16 * 16 * 9));
        assert_eq!(node_macs(&conv, &shapes(&[("w", &[8, 1, 3, 3])])), None, "the output shape is unknown");
    }

    #[test]
    fn gemm_and_matmul_count_m_n_k_with_transposes_and_broadcast_batches() {
        let gemm = node("Gemm", &["a", "b"], "y", &[("transB", int(1))]);
        assert_eq!(node_macs(&gemm, &shapes(&[("a", &[4, 64]), ("b", &[10, 64])])), Some(4 * 10 * 64));
        let matmul = node("MatMul", &["a", "b"], "y", &[]);
        let s = shapes(&[("a", &[2, 12, 64, 32]), ("b", &[2, 12, 32, 64])]);
        assert_eq!(node_macs(&matmul, &s), Some(2 * 12 * 64 * 64 * 32));
        let s = shapes(&[("a", &[2, 64, 384]), ("b", &[384, 1536])]);
        assert_eq!(node_macs(&matmul, &s), Some(2 * 64 * 1536 * 384), "a 2-D weight broadcasts over the batch");
    }

    #[test]
    fn ops_without_a_rule_cost_nothing() {
        assert_eq!(node_macs(&node("Relu", &["x"], "y", &[]), &Shapes::new()), Some(0));
        assert!(counts_macs("ConvInteger") && !counts_macs("Add"));
    }
}
