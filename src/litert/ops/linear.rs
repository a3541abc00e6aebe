//! Gemm and MatMul: FULLY_CONNECTED where the weight is a constant matrix (its bias and a
//! following activation fused), BATCH_MATMUL where both sides are computed.

use super::conv::{int8_output, output_with_activation};
use super::elementwise::permute_bytes;
use crate::ir::Node;
use crate::litert::builder::{quantization, ElementType};
use crate::litert::lower::Lowering;
use crate::Result;
use ndarray::{Array2, Ix2};
use prunq_litert_schema as lt;

/// Writes FULLY_CONNECTED: `x` (ONNX order) times `weight` (`[N, K]`) plus `bias`, for ONNX
/// value `out_name` (or the activation after it). `transposed` says the ONNX weight is `[K, N]`
/// (its int8 form, when the QDQ table has one, is transposed the same way).
fn fully_connected(
    cx: &mut Lowering,
    x: &str,
    weight: &Array2<f32>,
    weight_name: &str,
    transposed: bool,
    bias: Option<Vec<f32>>,
    out_name: &str,
) -> Result<()> {
    let keep_num_dims = cx.shape(x)?.len() > 2;
    let (n, k) = (weight.nrows(), weight.ncols());
    let bias = bias.unwrap_or_else(|| vec![0.0; n]);
    let options = |act, asymmetric_quantize_inputs| fc_options(act, keep_num_dims, asymmetric_quantize_inputs);
    // int8: the per-output-channel symmetric weight as quantized, int32 bias at s_in × s_w.
    let quantized =
        cx.qdq.weights.get(weight_name).filter(|q| q.symmetric_int8 && q.axis == usize::from(transposed)).cloned();
    if let Some(qw) = &quantized {
        if let Some((out, act, params)) = int8_output(cx, out_name, &[x], false, true)? {
            let scales: Vec<f32> = if qw.scales.len() == 1 { vec![qw.scales[0]; n] } else { qw.scales.clone() };
            let w = int8_weight(cx, qw, weight_name, n, k, transposed);
            let bias_scales: Vec<f32> = scales.iter().map(|s| s * params[0].scale).collect();
            let ints: Vec<u8> =
                bias.iter().zip(&bias_scales).flat_map(|(b, s)| ((b / s).round() as i32).to_le_bytes()).collect();
            let qb = quantization(&bias_scales, &vec![0; n], 0);
            let b = cx.b.constant(&format!("{weight_name}/bias"), ElementType::I32, &[n], ints, Some(qb));
            let xq = cx.int8(x, false)?.expect("checked").0;
            cx.b.op(lt::BuiltinOperator::FullyConnected, &[xq, w, b], &[out], options(act, false));
            return Ok(());
        }
    }
    // A float layer whose weight the quantizer made symmetric int8: the int8 weight is read by
    // the FULLY_CONNECTED itself — LiteRT's dynamic-range form, whose activations XNNPACK
    // quantizes per row at run time.
    if let Some(qw) = quantized.filter(|_| cx.dynamic_range) {
        let w = int8_weight(cx, &qw, weight_name, n, k, transposed);
        let x = cx.onnx(x)?;
        let b = cx.b.constant_f32(&format!("{weight_name}/bias"), &[n], &bias);
        let (out, act) = output_with_activation(cx, out_name, false)?;
        cx.b.op(lt::BuiltinOperator::FullyConnected, &[x, w, b], &[out], options(act, true));
        cx.dynamic_range_layers += 1;
        return Ok(());
    }
    let x = cx.onnx(x)?;
    let perm: &[usize] = if transposed { &[1, 0] } else { &[0, 1] };
    let onnx_shape = if transposed { [k, n] } else { [n, k] };
    let w = match cx.dequantized_weight(weight_name, &onnx_shape, Some(perm)) {
        Some(w) => w,
        None => {
            let flat: Vec<f32> = weight.iter().copied().collect();
            cx.weight(weight_name, &[n, k], &flat)
        }
    };
    let b = cx.b.constant_f32(&format!("{weight_name}/bias"), &[n], &bias);
    let (out, act) = output_with_activation(cx, out_name, false)?;
    cx.b.op(lt::BuiltinOperator::FullyConnected, &[x, w, b], &[out], options(act, false));
    Ok(())
}

/// FULLY_CONNECTED's options: the fused activation, whether the output keeps the input's rank,
/// and whether a float input is quantized at run time with a zero point (dynamic range).
pub(crate) fn fc_options(
    act: lt::ActivationFunctionType,
    keep_num_dims: bool,
    asymmetric_quantize_inputs: bool,
) -> Option<lt::BuiltinOptions> {
    let options = lt::FullyConnectedOptions {
        fused_activation_function: act,
        keep_num_dims,
        asymmetric_quantize_inputs,
        ..Default::default()
    };
    Some(lt::BuiltinOptions::FullyConnectedOptions(Box::new(options)))
}

/// The `[N, K]` int8 tensor of a symmetric weight (per output channel), from the QDQ table's
/// values in ONNX layout (`[K, N]` when `transposed`).
pub(crate) fn int8_weight(
    cx: &mut Lowering,
    qw: &crate::litert::qdq::QWeight,
    name: &str,
    n: usize,
    k: usize,
    transposed: bool,
) -> crate::litert::builder::TensorId {
    let scales: Vec<f32> = if qw.scales.len() == 1 { vec![qw.scales[0]; n] } else { qw.scales.clone() };
    let bytes: Vec<u8> = qw.values.iter().map(|&v| v as i8 as u8).collect();
    let bytes = if transposed { permute_bytes(&bytes, &[k, n], &[1, 0], 1) } else { bytes };
    cx.b.constant(name, ElementType::I8, &[n, k], bytes, Some(quantization(&scales, &vec![0; n], 0)))
}

/// Gemm → FULLY_CONNECTED (α folded into the weight, β·C into the bias).
pub(crate) fn gemm(cx: &mut Lowering, node: &Node) -> Result<()> {
    if node.attr_int("transA").unwrap_or(0) != 0 {
        return Err(cx.refuse(node, "transA=1 is not converted"));
    }
    let Some(b) = cx.constant_f32(&node.inputs[1]) else {
        return Err(cx.refuse(node, "its weight is not a constant"));
    };
    let b = b?.into_dimensionality::<Ix2>().map_err(|e| cx.refuse(node, e))?;
    let alpha = node.attr_float("alpha").unwrap_or(1.0);
    let beta = node.attr_float("beta").unwrap_or(1.0);
    // FULLY_CONNECTED's weight is [N, K]: B as given with transB=1, B transposed without.
    let transposed = node.attr_int("transB").unwrap_or(0) == 0;
    let weight = if transposed { b.t().to_owned() } else { b };
    let weight = weight.mapv(|v| v * alpha);
    let n = weight.nrows();
    let bias = match node.input(2) {
        None => None,
        Some(c) => match cx.constant_f32(c) {
            Some(c) => {
                let c = c?;
                let values: Vec<f32> = c.iter().map(|v| v * beta).collect();
                match values.len() {
                    1 => Some(vec![values[0]; n]),
                    len if len == n => Some(values),
                    _ => {
                        return Err(
                            cx.refuse(node, format!("its bias has shape {:?}; a [N] bias is converted", c.shape()))
                        )
                    }
                }
            }
            None => return Err(cx.refuse(node, "its bias is not a constant")),
        },
    };
    // α ≠ 1 scales the weight: its int8 form no longer matches.
    let name = if alpha == 1.0 { node.inputs[1].clone() } else { format!("{}/scaled", node.inputs[1]) };
    fully_connected(cx, &node.inputs[0], &weight, &name, transposed, bias, &node.outputs[0])
}

/// MatMul → FULLY_CONNECTED when B is a constant matrix (a bias Add after it folded in), else
/// BATCH_MATMUL.
pub(crate) fn matmul(cx: &mut Lowering, node: &Node) -> Result<()> {
    if let Some(b) = cx.constant_f32(&node.inputs[1]) {
        let b = b?;
        if b.ndim() == 2 && cx.shape(&node.inputs[0])?.len() >= 2 {
            let weight = b.into_dimensionality::<Ix2>().map_err(|e| cx.refuse(node, e))?.t().to_owned();
            let (bias, out_name) = bias_after(cx, &node.outputs[0], weight.nrows())?;
            return fully_connected(cx, &node.inputs[0], &weight, &node.inputs[1], true, bias, &out_name);
        }
    }
    let a = cx.onnx(&node.inputs[0])?;
    let b = cx.onnx(&node.inputs[1])?;
    let out = cx.output(&node.outputs[0], false)?;
    let options = lt::BatchMatMulOptions { adj_x: false, adj_y: false, asymmetric_quantize_inputs: false };
    cx.b.op(
        lt::BuiltinOperator::BatchMatmul,
        &[a, b],
        &[out],
        Some(lt::BuiltinOptions::BatchMatMulOptions(Box::new(options))),
    );
    Ok(())
}

/// The Add of a constant `[N]` vector that alone reads `name`: its values (a bias) and its
/// output, which the FULLY_CONNECTED then writes.
pub(crate) fn bias_after(cx: &mut Lowering, name: &str, n: usize) -> Result<(Option<Vec<f32>>, String)> {
    let Some(reader) = cx.sole_reader(name) else { return Ok((None, name.to_string())) };
    let add = &cx.g.nodes[reader];
    if add.op_type != "Add" || add.inputs.len() != 2 {
        return Ok((None, name.to_string()));
    }
    let other = if add.inputs[0] == name { &add.inputs[1] } else { &add.inputs[0] };
    let Some(c) = cx.constant_f32(other) else { return Ok((None, name.to_string())) };
    let c = c?;
    let vector = c.len() == n && c.shape().last() == Some(&n);
    if !vector || cx.shape(&add.outputs[0])? != cx.shape(name)? {
        return Ok((None, name.to_string()));
    }
    let out = add.outputs[0].clone();
    cx.absorbed.insert(reader);
    Ok((Some(c.iter().copied().collect()), out))
}
