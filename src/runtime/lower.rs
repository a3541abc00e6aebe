//! Rewrites that let tract run what ONNX Runtime runs: tract 0.23 reads
//! QuantizeLinear / DequantizeLinear only in 8 bits, so 16-bit activation
//! pairs are run as the float arithmetic they stand for (and so are 8-bit
//! pairs after a Softmax, which tract would fuse into a saturating kernel);
//! symbolic `value_info` shapes, which tract cannot unify, are dropped. prunq's own
//! validation of a 16-bit model then measures exactly what ONNX Runtime computes.

use crate::ir::{DataType, Dim, GraphIndex, Model, Node, Tensor, ValueInfo};
use crate::Result;
use std::borrow::Cow;

/// `model` as tract can run it (unchanged when nothing needs rewriting).
pub fn for_tract(model: &Model) -> Result<Cow<'_, Model>> {
    let model = without_symbolic_value_info(model);
    match sixteen_bit_as_float(&model)? {
        Cow::Owned(m) => Ok(Cow::Owned(m)),
        Cow::Borrowed(_) => Ok(model),
    }
}

/// Declared shapes of intermediate tensors and outputs with named or unknown
/// dims, dropped (their element types kept). ONNX shape inference and many
/// exporters write them (`[batch, 32, 16, 16]`); tract takes each name for a
/// symbol of its own, which then fails to unify with the input's batch or a
/// concrete batch size. tract infers these shapes itself.
fn without_symbolic_value_info(model: &Model) -> Cow<'_, Model> {
    let symbolic = |v: &ValueInfo| v.shape().is_some_and(|dims| dims.iter().any(|d| !matches!(d, Dim::Fixed(_))));
    let g = &model.graph;
    if !g.value_info.iter().chain(&g.outputs).any(symbolic) {
        return Cow::Borrowed(model);
    }
    let mut m = model.clone();
    for v in m.graph.value_info.iter_mut().chain(m.graph.outputs.iter_mut()) {
        if symbolic(v) {
            let dtype = v.dtype();
            v.set_tensor_type(dtype, None);
        }
    }
    Cow::Owned(m)
}

fn sixteen_bit_as_float(model: &Model) -> Result<Cow<'_, Model>> {
    let g = &model.graph;
    let scalar = |name: &str| g.constant(name).and_then(|t| t.ok()).filter(|t| t.dims.is_empty());
    let sixteen_bit = |name: &str| scalar(name).filter(|t| matches!(t.dtype, DataType::INT16 | DataType::UINT16));
    let eight_bit = |name: &str| scalar(name).filter(|t| matches!(t.dtype, DataType::INT8 | DataType::UINT8));
    let index = GraphIndex::new(g);
    // tract 0.23 fuses Softmax → QuantizeLinear into a quantized softmax that
    // saturates (ONNX Runtime's own QDQ transformers read 9 % top-1 in it):
    // such 8-bit pairs are run as float arithmetic too.
    let after_softmax =
        |q: &Node| q.input(0).and_then(|x| index.producer(x)).is_some_and(|p| g.nodes[p].op_type == "Softmax");
    let mut pairs = vec![];
    for (i, q) in g.nodes.iter().enumerate() {
        if q.op_type != "QuantizeLinear" || !q.is_onnx_op() {
            continue;
        }
        let (Some(scale), Some(zp), Some(out)) = (q.input(1), q.input(2), q.outputs.first()) else { continue };
        let Some(zp) = sixteen_bit(zp).or_else(|| eight_bit(zp).filter(|_| after_softmax(q))) else { continue };
        let consumers = index.consumers(out);
        // Per-tensor pairs only: a scalar scale broadcasts the same in float arithmetic.
        let per_tensor_dequantizer = |&(c, slot): &(usize, usize)| {
            let dq = &g.nodes[c];
            slot == 0 && dq.op_type == "DequantizeLinear" && dq.input(1).is_some_and(|s| scalar(s).is_some())
        };
        let only_dequantized = !consumers.is_empty()
            && consumers.iter().all(per_tensor_dequantizer)
            && g.outputs.iter().all(|o| &o.name != out);
        if scalar(scale).is_some() && only_dequantized {
            pairs.push((i, zp, consumers.iter().map(|&(c, _)| c).collect::<Vec<_>>()));
        }
    }
    if pairs.is_empty() {
        return Ok(Cow::Borrowed(model));
    }
    let mut m = model.clone();
    let mut replaced = std::collections::BTreeMap::new();
    for (q, zp, dqs) in pairs {
        let (lo, hi) = match zp.dtype {
            DataType::INT16 => (-32768f32, 32767f32),
            DataType::UINT16 => (0f32, 65535f32),
            DataType::INT8 => (-128f32, 127f32),
            _ => (0f32, 255f32),
        };
        let node = &model.graph.nodes[q];
        let out = &node.outputs[0];
        let zf = format!("{out}_zero_point_float");
        m.graph.initializers.push(Tensor::scalar(&zf, scalar_value(&zp)?));
        m.graph.initializers.push(Tensor::scalar(format!("{out}_min"), lo));
        m.graph.initializers.push(Tensor::scalar(format!("{out}_max"), hi));
        let (x, s) = (node.inputs[0].clone(), node.inputs[1].clone());
        let step = |op: &str, inputs: Vec<String>, output: String| Node {
            name: format!("{output}_{op}"),
            op_type: op.into(),
            inputs,
            outputs: vec![output],
            ..Default::default()
        };
        // y = clip(round(x / s) + z): the integer grid, held in float.
        let t = |k: &str| format!("{out}_{k}");
        let mut nodes = vec![
            step("Div", vec![x, s], t("scaled")),
            step("Round", vec![t("scaled")], t("rounded")),
            step("Add", vec![t("rounded"), zf.clone()], t("shifted")),
            step("Clip", vec![t("shifted"), t("min"), t("max")], out.clone()),
        ];
        for d in dqs {
            // x̂ = (y − z) · s with the dequantizer's own parameters.
            let dq = &model.graph.nodes[d];
            let (ds, dz) = (dq.inputs[1].clone(), dq.input(2).map(|z| z.to_string()));
            let dout = dq.outputs[0].clone();
            let centred = match dz.and_then(|z| scalar(&z)) {
                Some(z) => {
                    let zf = format!("{dout}_zero_point_float");
                    m.graph.initializers.push(Tensor::scalar(&zf, scalar_value(&z)?));
                    nodes.push(step("Sub", vec![out.clone(), zf], format!("{dout}_centred")));
                    format!("{dout}_centred")
                }
                _ => out.clone(),
            };
            nodes.push(step("Mul", vec![centred, ds], dout));
            replaced.insert(d, vec![]);
        }
        replaced.insert(q, nodes);
    }
    let old = std::mem::take(&mut m.graph.nodes);
    for (i, n) in old.into_iter().enumerate() {
        match replaced.remove(&i) {
            Some(nodes) => m.graph.nodes.extend(nodes),
            None => m.graph.nodes.push(n),
        }
    }
    m.graph.sort_nodes()?;
    Ok(Cow::Owned(m))
}

/// The value of a scalar integer constant, as float.
fn scalar_value(t: &Tensor) -> Result<f32> {
    Ok(t.to_f32()?.iter().next().copied().unwrap_or(0.0))
}
