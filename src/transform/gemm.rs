//! Gemm with a constant B, transA = 0 and alpha = 1, rewritten as MatMul (+ Add):
//! the transposition folded into the constant, beta into the bias.

use crate::ir::{Graph, Node, Tensor};
use crate::Result;
use ndarray::Ix2;

/// Rewrites every Gemm as MatMul (+ Add of the bias); the count rewritten.
pub fn gemm_to_matmul(graph: &mut Graph) -> Result<usize> {
    let mut rewritten = 0;
    let mut new_nodes = vec![];
    let mut new_inits = vec![];
    for ix in 0..graph.nodes.len() {
        let node = &graph.nodes[ix];
        if node.op_type != "Gemm" || !node.is_onnx_op() || node.attr_int("transA").unwrap_or(0) != 0 {
            continue;
        }
        if node.attr_float("alpha").unwrap_or(1.0) != 1.0 {
            continue;
        }
        let beta = node.attr_float("beta").unwrap_or(1.0);
        let Some(Ok(b)) = node.input(1).and_then(|b| graph.constant(b)) else { continue };
        let bias = match node.input(2) {
            Some(c) => match graph.constant(c) {
                Some(Ok(t)) => Some(t),
                _ => continue,
            },
            None => None,
        };
        let y = node.outputs[0].clone();
        let mut w = b.to_f32()?;
        if node.attr_int("transB").unwrap_or(0) != 0 {
            let Ok(w2) = w.clone().into_dimensionality::<Ix2>() else { continue };
            w = w2.reversed_axes().as_standard_layout().into_owned().into_dyn();
        }
        let wname = format!("{y}_matmul_weight");
        new_inits.push(Tensor::from_array(&wname, &w));
        let product = if bias.is_some() { format!("{y}_matmul") } else { y.clone() };
        let a = node.inputs[0].clone();
        let label = node.label();
        graph.nodes[ix] = Node {
            name: format!("{label}_MatMul"),
            op_type: "MatMul".into(),
            inputs: vec![a, wname],
            outputs: vec![product.clone()],
            ..Default::default()
        };
        if let Some(c) = bias {
            let cname = format!("{y}_bias");
            new_inits.push(Tensor::from_array(&cname, &c.to_f32()?.mapv(|v| v * beta)));
            new_nodes.push(Node {
                name: format!("{y}_Add"),
                op_type: "Add".into(),
                inputs: vec![product, cname],
                outputs: vec![y],
                ..Default::default()
            });
        }
        rewritten += 1;
    }
    graph.initializers.extend(new_inits);
    graph.nodes.extend(new_nodes);
    super::remove_unused_constants(graph);
    graph.sort_nodes()?;
    Ok(rewritten)
}
