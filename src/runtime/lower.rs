//! Rewrites that let tract run what ONNX Runtime runs: tract 0.23 reads
//! QuantizeLinear / DequantizeLinear only in 8 bits, so 16-bit activation
//! pairs are run as the float arithmetic they stand for. prunq's own
//! validation of a 16-bit model then measures exactly what ONNX Runtime computes.

use crate::ir::{DataType, GraphIndex, Model, Node, Tensor};
use crate::Result;
use std::borrow::Cow;

/// `model` as tract can run it (unchanged when nothing needs rewriting).
pub fn for_tract(model: &Model) -> Result<Cow<'_, Model>> {
    let g = &model.graph;
    let sixteen_bit = |name: &str| {
        g.constant(name)
            .and_then(|t| t.ok())
            .filter(|t| matches!(t.dtype, DataType::INT16 | DataType::UINT16) && t.dims.is_empty())
    };
    let index = GraphIndex::new(g);
    let mut pairs = vec![];
    for (i, q) in g.nodes.iter().enumerate() {
        if q.op_type != "QuantizeLinear" || !q.is_onnx_op() {
            continue;
        }
        let (Some(scale), Some(zp), Some(out)) = (q.input(1), q.input(2), q.outputs.first()) else { continue };
        let Some(zp) = sixteen_bit(zp) else { continue };
        let scalar_scale = g.constant(scale).and_then(|t| t.ok()).is_some_and(|t| t.dims.is_empty());
        let consumers = index.consumers(out);
        let only_dequantized = !consumers.is_empty()
            && consumers.iter().all(|&(c, slot)| slot == 0 && g.nodes[c].op_type == "DequantizeLinear")
            && g.outputs.iter().all(|o| &o.name != out);
        if scalar_scale && only_dequantized {
            pairs.push((i, zp, consumers.iter().map(|&(c, _)| c).collect::<Vec<_>>()));
        }
    }
    if pairs.is_empty() {
        return Ok(Cow::Borrowed(model));
    }
    let mut m = model.clone();
    let mut replaced = std::collections::BTreeMap::new();
    for (q, zp, dqs) in pairs {
        let (lo, hi) = if zp.dtype == DataType::INT16 { (-32768f32, 32767f32) } else { (0f32, 65535f32) };
        let node = &model.graph.nodes[q];
        let out = &node.outputs[0];
        let zf = format!("{out}_zero_point_float");
        let zero = zp.to_f32()?.iter().next().copied().unwrap_or(0.0);
        m.graph.initializers.push(Tensor::scalar(&zf, zero));
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
            let centred = match dz {
                Some(z) if sixteen_bit(&z).is_some() => {
                    let zf = format!("{dout}_zero_point_float");
                    let zero = sixteen_bit(&z).expect("checked").to_f32()?.iter().next().copied().unwrap_or(0.0);
                    m.graph.initializers.push(Tensor::scalar(&zf, zero));
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
    crate::transform::sort_nodes(&mut m.graph)?;
    Ok(Cow::Owned(m))
}
