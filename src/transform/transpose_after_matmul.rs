//! `Transpose(perm) → MatMul(·, W)` with a 2-D constant W and a perm that
//! keeps the last axis becomes `MatMul(·, W) → Transpose(perm)`: a MatMul by a
//! 2-D right operand works row by row, so it commutes with any shuffle of the
//! leading axes. Same result, bit for bit.
//!
//! Why: ONNX Runtime 1.32 segfaults at its default optimization level on a
//! float16 Transpose([1, 0, 2]) feeding such a MatMul (the attention input
//! projection of a PyTorch `nn.MultiheadAttention` export); the swapped form
//! runs. Applied by the fp16 pass.

use crate::ir::{Graph, GraphIndex};
use crate::Result;

/// Swaps every such pair; returns how many.
pub fn transpose_after_matmul(graph: &mut Graph) -> Result<usize> {
    let mut swapped = 0;
    loop {
        let index = GraphIndex::new(graph);
        let found = graph.nodes.iter().enumerate().find_map(|(m, matmul)| {
            if matmul.op_type != "MatMul" || !matmul.is_onnx_op() {
                return None;
            }
            let (a, w) = (matmul.input(0)?, matmul.input(1)?);
            let weight = graph.constant(w)?.ok()?;
            let t = index.producer(a)?;
            let transpose = &graph.nodes[t];
            let perm = transpose.attr_ints("perm")?;
            let keeps_last = perm.last().is_some_and(|&p| p == perm.len() as i64 - 1) && perm.len() >= 3;
            let is_transpose = transpose.op_type == "Transpose" && transpose.is_onnx_op();
            (is_transpose && weight.dims.len() == 2 && keeps_last).then_some((t, m))
        });
        let Some((t, m)) = found else { break };
        // Before: x → Transpose → a → MatMul → y.  After: x → MatMul → p → Transpose → y
        // (the old Transpose stays for any other reader of `a`, e.g. a Shape).
        let x = graph.nodes[t].inputs[0].clone();
        let a = graph.nodes[t].outputs[0].clone();
        let y = graph.nodes[m].outputs[0].clone();
        let product = format!("{y}_before_transpose");
        let mut moved = graph.nodes[t].clone();
        moved.name = format!("{}_after_matmul", graph.nodes[m].label());
        moved.inputs = vec![product.clone()];
        moved.outputs = vec![y];
        graph.nodes[m].inputs[0] = x;
        graph.nodes[m].outputs[0] = product;
        graph.nodes.push(moved);
        let still_read = graph.nodes.iter().any(|n| n.inputs.contains(&a)) || graph.outputs.iter().any(|o| o.name == a);
        if !still_read {
            graph.nodes.remove(t);
        }
        graph.sort_nodes()?;
        swapped += 1;
    }
    Ok(swapped)
}
