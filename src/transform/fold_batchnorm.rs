//! Folds an inference-mode BatchNormalization into the Conv before it:
//! W' = W · γ/√(σ²+ε) per output channel, b' = (b − μ) · γ/√(σ²+ε) + β.
//! Quantizers need it: a quantized Conv output followed by a float BN with a
//! large γ/σ amplifies the rounding error by that factor.

use crate::ir::{GraphIndex, Model};
use crate::Result;
use ndarray::ArrayD;

/// Returns how many BatchNormalizations were folded.
pub fn fold_batchnorm(model: &mut Model) -> Result<usize> {
    let mut folded = 0;
    loop {
        let g = &model.graph;
        let index = GraphIndex::new(g);
        let candidate = g.nodes.iter().enumerate().find_map(|(bn_ix, bn)| {
            if bn.op_type != "BatchNormalization"
                || !bn.is_onnx_op()
                || bn.outputs.iter().skip(1).any(|o| !o.is_empty())
            {
                return None;
            }
            let x = bn.input(0)?;
            let conv_ix = index.producer(x)?;
            let conv = &g.nodes[conv_ix];
            let sole_use = index.consumers(x).len() == 1 && g.outputs.iter().all(|o| o.name != x);
            let constants = (1..5).all(|i| bn.input(i).is_some_and(|n| g.constant_site(n).is_some()));
            let weight_const = conv.input(1).is_some_and(|w| g.constant_site(w).is_some());
            let bias_ok = conv.input(2).is_none_or(|b| g.constant_site(b).is_some());
            (conv.op_type == "Conv" && conv.is_onnx_op() && sole_use && constants && weight_const && bias_ok)
                .then_some((conv_ix, bn_ix))
        });
        let Some((conv_ix, bn_ix)) = candidate else { break };
        fold_one(model, conv_ix, bn_ix)?;
        folded += 1;
    }
    if folded > 0 {
        super::remove_unused_constants(&mut model.graph);
    }
    Ok(folded)
}

fn fold_one(model: &mut Model, conv_ix: usize, bn_ix: usize) -> Result<()> {
    let g = &model.graph;
    let bn = &g.nodes[bn_ix];
    let get =
        |name: &str| -> Result<ArrayD<f32>> { g.constant(name).expect("checked: a constant").and_then(|t| t.to_f32()) };
    let [gamma, beta, mean, var] = [1, 2, 3, 4].map(|i| get(&bn.inputs[i]));
    let (gamma, beta, mean, var) = (gamma?, beta?, mean?, var?);
    let eps = bn.attr_float("epsilon").unwrap_or(1e-5);
    let c = gamma.len();
    let factor: Vec<f32> = (0..c).map(|i| gamma[[i]] / (var[[i]] + eps).sqrt()).collect();
    let minus_mean: Vec<f32> = (0..c).map(|i| -mean[[i]]).collect();
    let beta: Vec<f32> = beta.iter().copied().collect();
    super::fold_affine::fold_channel_affine(model, conv_ix, bn_ix, &minus_mean, &factor, &beta)
}
