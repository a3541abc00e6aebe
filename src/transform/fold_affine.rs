//! Folds a per-channel affine step after a Conv into the Conv: `Mul` by a
//! constant c gives W' = c·W, b' = c·b; `Add` of a constant d gives b' = b + d.
//! Exports of re-parameterised nets (PP-LCNet's "learnable affine blocks",
//! scale layers) keep such steps apart; each costs a pass over the activation,
//! and a quantized Conv before one needs its own Q/DQ boundary. Equal up to
//! float rounding (one product or sum per weight).

use crate::ir::{Graph, GraphIndex, Model, Tensor};
use crate::Result;
use ndarray::{ArrayD, Axis, IxDyn};

/// Folds into the Conv before (`backward`) and into a pointwise Conv after
/// (`forward`); returns how many Mul/Add nodes were folded.
pub fn fold_affine(model: &mut Model, backward: bool, forward: bool) -> Result<usize> {
    let mut folded = 0;
    loop {
        if let Some((conv_ix, node_ix, factor, offset)) = next_fold(&model.graph)?.filter(|_| backward) {
            let none = vec![0.0; factor.len()];
            fold_channel_affine(model, conv_ix, node_ix, &none, &factor, &offset)?;
        } else if let Some((node_ix, conv_ix, factor, offset)) = next_fold_forward(&model.graph)?.filter(|_| forward) {
            fold_into_next_conv(model, node_ix, conv_ix, &factor, &offset)?;
        } else {
            break;
        }
        folded += 1;
    }
    if folded > 0 {
        super::remove_unused_constants(&mut model.graph);
    }
    Ok(folded)
}

/// Two node indices (the Conv and the Mul/Add, in graph order) and the
/// factor and offset per channel.
type Fold = (usize, usize, Vec<f32>, Vec<f32>);

/// Whether `node` may be a per-channel affine step: a default-domain Mul or Add of two inputs.
fn is_affine_op(node: &crate::ir::Node) -> bool {
    (node.op_type == "Mul" || node.op_type == "Add") && node.is_onnx_op() && node.inputs.len() == 2
}

/// Constant `c` of the Mul/Add `node` as (factor, offset) per channel, when it
/// broadcasts as one value per channel of a `rank`-d tensor with `channels` on axis 1.
fn affine_of(
    g: &Graph,
    node: &crate::ir::Node,
    c: &str,
    channels: usize,
    rank: usize,
) -> Result<Option<(Vec<f32>, Vec<f32>)>> {
    let Some(Ok(constant)) = g.constant(c) else { return Ok(None) };
    if constant.dtype != crate::ir::DataType::FLOAT {
        return Ok(None);
    }
    let Some(values) = per_channel(&constant.to_f32()?, channels, rank) else { return Ok(None) };
    Ok(Some(match node.op_type.as_str() {
        "Mul" => (values, vec![0.0; channels]),
        _ => (vec![1.0; channels], values),
    }))
}

/// The first Conv → Mul/Add-by-a-per-channel-constant pair: (conv, node, factor, offset).
fn next_fold(g: &Graph) -> Result<Option<Fold>> {
    let index = GraphIndex::new(g);
    for (ix, node) in g.nodes.iter().enumerate().filter(|(_, n)| is_affine_op(n)) {
        for (x_slot, c_slot) in [(0, 1), (1, 0)] {
            let (Some(x), Some(c)) = (node.input(x_slot), node.input(c_slot)) else { continue };
            let Some(conv_ix) = index.producer(x) else { continue };
            let conv = &g.nodes[conv_ix];
            let sole_use = index.consumers(x).len() == 1 && g.outputs.iter().all(|o| o.name != x);
            let Some(Ok(w)) = conv.input(1).and_then(|w| g.constant(w)) else { continue };
            if conv.op_type != "Conv" || !conv.is_onnx_op() || !sole_use || !foldable_weights(g, conv, &w) {
                continue;
            }
            if let Some((factor, offset)) = affine_of(g, node, c, w.dims[0] as usize, w.dims.len())? {
                return Ok(Some((conv_ix, ix, factor, offset)));
            }
        }
    }
    Ok(None)
}

/// The first Mul/Add by a per-channel constant whose only reader is a Conv
/// without padding and groups (a pointwise conv): (node, conv, factor, offset).
/// Padding would see the zeros the Conv pads with where the folded form assumes
/// the offset, so padded convs are left alone.
fn next_fold_forward(g: &Graph) -> Result<Option<Fold>> {
    let index = GraphIndex::new(g);
    for (ix, node) in g.nodes.iter().enumerate().filter(|(_, n)| is_affine_op(n)) {
        let y = &node.outputs[0];
        let readers = index.consumers(y);
        let [(conv_ix, 0)] = readers[..] else { continue };
        let conv = &g.nodes[conv_ix];
        let unpadded = conv.attr_ints("pads").is_none_or(|p| p.iter().all(|&v| v == 0))
            && conv
                .attr("auto_pad")
                .is_none_or(|a| matches!(a, crate::ir::AttrValue::String(s) if s == b"NOTSET" || s == b"VALID"));
        let plain = conv.op_type == "Conv" && conv.is_onnx_op() && conv.attr_int("group").unwrap_or(1) == 1;
        let Some(Ok(w)) = conv.input(1).and_then(|w| g.constant(w)) else { continue };
        if !(unpadded && plain && foldable_weights(g, conv, &w)) || g.outputs.iter().any(|o| &o.name == y) {
            continue;
        }
        for (c_slot, x_slot) in [(1, 0), (0, 1)] {
            let (Some(c), Some(x)) = (node.input(c_slot), node.input(x_slot)) else { continue };
            if g.constant_site(x).is_some() {
                continue;
            }
            if let Some((factor, offset)) = affine_of(g, node, c, w.dims[1] as usize, w.dims.len())? {
                return Ok(Some((ix, conv_ix, factor, offset)));
            }
        }
    }
    Ok(None)
}

/// Makes Conv `conv_ix` read the input of node `node_ix` (x·factor + offset per
/// input channel) directly: W'[o,i] = W[o,i]·factor[i], b'[o] = b[o] + Σ W[o,i]·offset[i].
fn fold_into_next_conv(
    model: &mut Model,
    node_ix: usize,
    conv_ix: usize,
    factor: &[f32],
    offset: &[f32],
) -> Result<()> {
    let g = &model.graph;
    let (node, conv) = (&g.nodes[node_ix], &g.nodes[conv_ix]);
    let get =
        |name: &str| -> Result<ArrayD<f32>> { g.constant(name).expect("checked: a constant").and_then(|t| t.to_f32()) };
    let w = get(&conv.inputs[1])?;
    let o = w.shape()[0];
    let mut bias = match conv.input(2) {
        Some(b) => get(b)?,
        None => ArrayD::zeros(IxDyn(&[o])),
    };
    let mut w2 = w.clone();
    for (oc, mut filter) in w2.axis_iter_mut(Axis(0)).enumerate() {
        for (ic, mut lane) in filter.axis_iter_mut(Axis(0)).enumerate() {
            // Σ over the kernel of W·offset first, from the weights as they were.
            bias[[oc]] += lane.iter().map(|v| v * offset[ic]).sum::<f32>();
            lane.mapv_inplace(|v| v * factor[ic]);
        }
    }
    let x = node.inputs.iter().find(|i| g.constant_site(i).is_none()).expect("checked: one non-constant input").clone();
    let y = node.outputs[0].clone();
    let (wname, bname) = (format!("{y}_into_weight"), format!("{y}_into_bias"));
    let g = &mut model.graph;
    g.initializers.push(Tensor::from_array(&wname, &w2));
    g.initializers.push(Tensor::from_array(&bname, &bias));
    let conv = &mut g.nodes[conv_ix];
    conv.inputs.truncate(1);
    conv.inputs[0] = x;
    conv.inputs.extend([wname, bname]);
    g.nodes.remove(node_ix);
    Ok(())
}

/// Whether a Conv's float weight (and bias, when present) are constants a fold can rewrite.
fn foldable_weights(g: &Graph, conv: &crate::ir::Node, w: &Tensor) -> bool {
    w.dims.len() >= 3
        && w.dtype == crate::ir::DataType::FLOAT
        && conv.input(2).is_none_or(|b| g.constant_site(b).is_some())
}

/// The constant's value per output channel when it broadcasts against a
/// Conv output of `rank` as one value per channel (a scalar, `[C,1,1]`,
/// `[1,C,1,1]` …) without changing the output's shape.
fn per_channel(c: &ArrayD<f32>, channels: usize, rank: usize) -> Option<Vec<f32>> {
    let shape = c.shape();
    if shape.len() > rank {
        return None;
    }
    let offset = rank - shape.len();
    let fits = shape.iter().enumerate().all(|(i, &d)| d == 1 || (i + offset == 1 && d == channels));
    if !fits {
        return None;
    }
    let flat: Vec<f32> = c.iter().copied().collect();
    Some(if flat.len() == 1 { vec![flat[0]; channels] } else { flat })
}

/// Makes Conv `conv_ix` compute `(conv(x)[c] + before[c])·factor[c] + after[c]` and
/// take the output of node `absorbed_ix`, which is removed: W' = W·factor,
/// b' = (b + before)·factor + after.
pub(super) fn fold_channel_affine(
    model: &mut Model,
    conv_ix: usize,
    absorbed_ix: usize,
    before: &[f32],
    factor: &[f32],
    after: &[f32],
) -> Result<()> {
    let g = &model.graph;
    let conv = &g.nodes[conv_ix];
    let get =
        |name: &str| -> Result<ArrayD<f32>> { g.constant(name).expect("checked: a constant").and_then(|t| t.to_f32()) };
    let w = get(&conv.inputs[1])?;
    let c = w.shape()[0];
    let bias = match conv.input(2) {
        Some(b) => get(b)?,
        None => ArrayD::zeros(IxDyn(&[c])),
    };
    let mut w2 = w.clone();
    for (i, mut lane) in w2.axis_iter_mut(Axis(0)).enumerate() {
        lane.mapv_inplace(|v| v * factor[i]);
    }
    let b2 =
        ArrayD::from_shape_vec(IxDyn(&[c]), (0..c).map(|i| (bias[[i]] + before[i]) * factor[i] + after[i]).collect())
            .expect("1-d");
    let y = g.nodes[absorbed_ix].outputs[0].clone();
    let (wname, bname) = (format!("{y}_folded_weight"), format!("{y}_folded_bias"));
    let g = &mut model.graph;
    g.initializers.push(Tensor::from_array(&wname, &w2));
    g.initializers.push(Tensor::from_array(&bname, &b2));
    let conv = &mut g.nodes[conv_ix];
    conv.inputs.truncate(1);
    conv.inputs.extend([wname, bname]);
    conv.outputs[0] = y;
    g.nodes.remove(absorbed_ix);
    Ok(())
}
