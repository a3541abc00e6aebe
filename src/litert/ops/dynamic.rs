//! DynamicQuantizeLinear → MatMulInteger → Cast → Mul (by x_scale · w_scale) [→ Add bias]: a
//! MatMul whose activations are quantized at run time, as prunq's dynamic mode (and static's
//! dynamic-MatMul trials) and ONNX Runtime's `quantize_dynamic` write it. LiteRT has the same
//! computation as one op: the dynamic-range FULLY_CONNECTED, float input quantized per row at
//! run time against an int8 weight — a finer activation scale than one per tensor.

use super::conv::output_with_activation;
use super::linear::{fc_options, int8_weight};
use crate::ir::{DataType, Node};
use crate::litert::lower::Lowering;
use crate::litert::qdq::QWeight;
use crate::Result;
use prunq_litert_schema as lt;

/// The nodes of one dynamic MatMul read from a DynamicQuantizeLinear.
struct Chain {
    /// MatMulInteger, Cast, the scale product's Mul, the output's Mul.
    nodes: [usize; 4],
    weight: String,
    /// `[K, N]`, row-major, as the MatMulInteger reads it.
    values: Vec<i32>,
    k: usize,
    n: usize,
    /// One per output channel, or one for all.
    scales: Vec<f32>,
    /// The Mul's output: what the FULLY_CONNECTED writes (or the bias Add's).
    out: String,
}

/// Writes every dynamic MatMul `node` (a DynamicQuantizeLinear) feeds as a dynamic-range
/// FULLY_CONNECTED; the DynamicQuantizeLinear itself has no op of its own.
pub(crate) fn dynamic_quantize(cx: &mut Lowering, node: &Node) -> Result<()> {
    let readers: Vec<usize> = node.outputs.iter().flat_map(|o| cx.index.consumers(o).iter().map(|&(r, _)| r)).collect();
    let mut chains: Vec<Chain> = vec![];
    for r in readers {
        if chains.iter().any(|c| c.nodes.contains(&r)) {
            continue;
        }
        match chain(cx, node, r) {
            Some(c) => chains.push(c),
            None => {
                return Err(cx.refuse(
                    node,
                    format!(
                        "{} reads it: a DynamicQuantizeLinear is converted only where it feeds MatMulInteger with a \
                         constant symmetric int8 weight, dequantized by Cast and Mul by the two scales (a dynamic \
                         MatMul as prunq and ONNX Runtime write it)",
                        cx.g.nodes[r].label()
                    ),
                ))
            }
        }
    }
    if node.outputs.iter().any(|o| cx.g.outputs.iter().any(|g| &g.name == o)) {
        return Err(cx.refuse(node, "its quantized output is a graph output"));
    }
    for c in chains {
        cx.absorbed.extend(c.nodes);
        let qw = QWeight {
            values: c.values,
            zero_points: vec![0; c.scales.len()],
            scales: c.scales,
            axis: 1,
            symmetric_int8: true,
            int8: true,
        };
        let w = int8_weight(cx, &qw, &c.weight, c.n, c.k, true);
        let (bias, out_name) = super::linear::bias_after(cx, &c.out, c.n)?;
        let keep_num_dims = cx.shape(&node.inputs[0])?.len() > 2;
        let x = cx.onnx(&node.inputs[0])?;
        let b = cx.b.constant_f32(&format!("{}/bias", c.weight), &[c.n], &bias.unwrap_or_else(|| vec![0.0; c.n]));
        let (out, act) = output_with_activation(cx, &out_name, false)?;
        cx.b.op(lt::BuiltinOperator::FullyConnected, &[x, w, b], &[out], fc_options(act, keep_num_dims, true));
        cx.dynamic_range_layers += 1;
    }
    Ok(())
}

/// The dynamic MatMul that starts at `reader` of `dql`'s outputs, when it has the expected form.
fn chain(cx: &Lowering, dql: &Node, reader: usize) -> Option<Chain> {
    let g = cx.g;
    let mm = &g.nodes[reader];
    let (x_q, x_scale, x_zero) = (&dql.outputs[0], dql.outputs.get(1)?, dql.outputs.get(2)?);
    if mm.op_type != "MatMulInteger" || mm.inputs.first() != Some(x_q) || mm.input(2) != Some(x_zero.as_str()) {
        return None;
    }
    // The weight: a constant int8 [K, N] matrix, zero points absent or zero.
    let w = cx.constant(mm.input(1)?)?.ok()?;
    if w.dtype != DataType::INT8 || w.dims.len() != 2 {
        return None;
    }
    if let Some(z) = mm.input(3) {
        if cx.constant_f32(z)?.ok()?.iter().any(|v| *v != 0.0) {
            return None;
        }
    }
    let (k, n) = (usize::try_from(w.dims[0]).ok()?, usize::try_from(w.dims[1]).ok()?);
    let values: Vec<i32> = w.to_f32().ok()?.iter().map(|v| *v as i32).collect();
    let cast_ix = cx.sole_reader(&mm.outputs[0])?;
    let cast = &g.nodes[cast_ix];
    if cast.op_type != "Cast" || cast.attr_int("to") != Some(i64::from(DataType::FLOAT.0)) {
        return None;
    }
    let mul_ix = cx.sole_reader(&cast.outputs[0])?;
    let mul = &g.nodes[mul_ix];
    let scale_name = mul.inputs.iter().find(|i| **i != cast.outputs[0])?;
    if mul.op_type != "Mul" || mul.inputs.len() != 2 {
        return None;
    }
    // The scale: x_scale · w_scale, w_scale one constant or one per output channel.
    let scale_ix = cx.index.producer(scale_name)?;
    let scale_mul = &g.nodes[scale_ix];
    if scale_mul.op_type != "Mul" || cx.sole_reader(scale_name) != Some(mul_ix) {
        return None;
    }
    let w_scale = scale_mul.inputs.iter().find(|i| *i != x_scale)?;
    if !scale_mul.inputs.iter().any(|i| i == x_scale) {
        return None;
    }
    let scales: Vec<f32> = cx.constant_f32(w_scale)?.ok()?.iter().copied().collect();
    if scales.len() != 1 && scales.len() != n {
        return None;
    }
    Some(Chain {
        nodes: [reader, cast_ix, scale_ix, mul_ix],
        weight: mm.inputs[1].clone(),
        values,
        k,
        n,
        scales,
        out: mul.outputs[0].clone(),
    })
}
