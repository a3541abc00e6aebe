//! Convolutions and pools: NHWC in, NHWC out. Weights OIHW → OHWI (depthwise: `[1,kh,kw,C·M]`),
//! ONNX padding as SAME or VALID where it is one of them and as an explicit PAD before a VALID op
//! where it is not, and a Relu/Clip after the op fused into it.

use crate::ir::Node;
use crate::litert::builder::{quantization, ElementType};
use crate::litert::lower::Lowering;
use crate::litert::qdq::QParams;
use crate::Result;
use ndarray::{ArrayD, IxDyn};
use prunq_litert_schema as lt;

/// How an ONNX window's padding is written.
enum Pads {
    Same,
    Valid,
    /// `[top, bottom, left, right]`, written as a PAD before a VALID op.
    Explicit([usize; 4]),
}

/// A 2-D window: kernel, strides, dilations and ONNX pads `[top, left, bottom, right]`.
struct Window {
    kernel: [usize; 2],
    strides: [usize; 2],
    dilations: [usize; 2],
    pads: [usize; 4],
}

impl Window {
    fn of(cx: &Lowering, node: &Node, kernel: [usize; 2], input_hw: [usize; 2]) -> Result<Window> {
        let two = |name: &str| -> Result<[usize; 2]> {
            match node.attr_ints(name) {
                None => Ok([1, 1]),
                Some([a, b]) if *a > 0 && *b > 0 => Ok([*a as usize, *b as usize]),
                Some(v) => Err(cx.refuse(node, format!("{name} {v:?}: only 2-D windows are converted"))),
            }
        };
        let (strides, dilations) = (two("strides")?, two("dilations")?);
        let auto_pad = node.attr_string("auto_pad").unwrap_or_default();
        let pads = match auto_pad.as_str() {
            "SAME_UPPER" | "SAME_LOWER" => {
                let mut p = [0; 4];
                for axis in 0..2 {
                    let total = same_total(input_hw[axis], kernel[axis], strides[axis], dilations[axis]);
                    let small = total / 2;
                    let (before, after) =
                        if auto_pad == "SAME_UPPER" { (small, total - small) } else { (total - small, small) };
                    p[axis] = before;
                    p[axis + 2] = after;
                }
                p
            }
            "VALID" => [0; 4],
            _ => match node.attr_ints("pads") {
                None => [0; 4],
                Some(p) if p.len() == 4 && p.iter().all(|&v| v >= 0) => {
                    [p[0] as usize, p[1] as usize, p[2] as usize, p[3] as usize]
                }
                Some(p) => return Err(cx.refuse(node, format!("pads {p:?}: only 2-D windows are converted"))),
            },
        };
        Ok(Window { kernel, strides, dilations, pads })
    }

    /// SAME when the pads are TensorFlow's SAME for this input, VALID when none, else explicit.
    fn pads(&self, input_hw: [usize; 2]) -> Pads {
        if self.pads == [0; 4] {
            return Pads::Valid;
        }
        let same = (0..2).all(|axis| {
            let total = same_total(input_hw[axis], self.kernel[axis], self.strides[axis], self.dilations[axis]);
            self.pads[axis] == total / 2 && self.pads[axis + 2] == total - total / 2
        });
        if same {
            Pads::Same
        } else {
            Pads::Explicit([self.pads[0], self.pads[2], self.pads[1], self.pads[3]])
        }
    }
}

/// TensorFlow's SAME padding in total along one axis.
fn same_total(size: usize, kernel: usize, stride: usize, dilation: usize) -> usize {
    let out = size.div_ceil(stride);
    let span = (kernel - 1) * dilation + 1;
    ((out - 1) * stride + span).saturating_sub(size)
}

/// Writes the padding a window needs before the op and returns the op's input and padding kind;
/// `int8` reads the input as int8 (padded with its zero point, or with −128 before a max pool).
fn padded_input(
    cx: &mut Lowering,
    input: &str,
    window: &Window,
    fill: Option<f32>,
    int8: bool,
) -> Result<(i32, lt::Padding)> {
    let x = if int8 {
        cx.int8(input, true)?.expect("int8 is asked for a value with parameters").0
    } else {
        cx.nhwc(input)?
    };
    let shape = cx.shape(input)?;
    match window.pads([shape[2], shape[3]]) {
        Pads::Same => Ok((x, lt::Padding::Same)),
        Pads::Valid => Ok((x, lt::Padding::Valid)),
        Pads::Explicit([top, bottom, left, right]) => {
            let padded = [shape[0], shape[2] + top + bottom, shape[3] + left + right, shape[1]];
            let p =
                cx.b.constant_i32("pads", &[4, 2], &[0, 0, top as i32, bottom as i32, left as i32, right as i32, 0, 0]);
            let out = cx.b.like(x, &format!("{input}/padded"), &padded);
            match (fill, int8) {
                (None, _) => cx.b.op(lt::BuiltinOperator::Pad, &[x, p], &[out], None),
                (Some(v), false) => {
                    let value = cx.b.constant_f32("pad_value", &[], &[v]);
                    cx.b.op(lt::BuiltinOperator::Padv2, &[x, p, value], &[out], None)
                }
                (Some(_), true) => {
                    let q = cx.b.quantization_of(x);
                    let value = cx.b.constant("pad_value", ElementType::I8, &[], vec![0x80], q);
                    cx.b.op(lt::BuiltinOperator::Padv2, &[x, p, value], &[out], None)
                }
            }
            Ok((out, lt::Padding::Valid))
        }
    }
}

/// The activation LiteRT can fuse into the op writing `name` — its single reader, a Relu or a
/// Clip LiteRT has a fused form of — with the reader's index and output.
fn fusable_activation(cx: &Lowering, name: &str) -> Result<Option<(lt::ActivationFunctionType, usize, String)>> {
    let Some(reader) = cx.sole_reader(name) else { return Ok(None) };
    let node = &cx.g.nodes[reader];
    let kind = match node.op_type.as_str() {
        "Relu" => Some(lt::ActivationFunctionType::Relu),
        "Clip" => match super::elementwise::clip_bounds(cx, node)? {
            (lo, hi) if lo == 0.0 && hi == 6.0 => Some(lt::ActivationFunctionType::Relu6),
            (lo, hi) if lo == 0.0 && hi == f32::INFINITY => Some(lt::ActivationFunctionType::Relu),
            (lo, hi) if lo == -1.0 && hi == 1.0 => Some(lt::ActivationFunctionType::ReluN1To1),
            _ => None,
        },
        _ => None,
    };
    Ok(kind.map(|k| (k, reader, node.outputs[0].clone())))
}

/// The output tensor of an op writing ONNX value `name` (NHWC when `nhwc`), with a following
/// activation fused: the tensor then stands for the activation's output.
pub(crate) fn output_with_activation(
    cx: &mut Lowering,
    name: &str,
    nhwc: bool,
) -> Result<(i32, lt::ActivationFunctionType)> {
    let (target, kind, reader) = activation_target(cx, name)?;
    if let Some(r) = reader {
        cx.absorbed.insert(r);
    }
    Ok((cx.output(&target, nhwc)?, kind))
}

/// The ONNX value an op writing `name` ends up writing (the fusable activation's output, or
/// `name`), the activation, and the reader to absorb.
pub(crate) fn activation_target(
    cx: &Lowering,
    name: &str,
) -> Result<(String, lt::ActivationFunctionType, Option<usize>)> {
    Ok(match fusable_activation(cx, name)? {
        Some((kind, reader, out)) => (out, kind, Some(reader)),
        None => (name.to_string(), lt::ActivationFunctionType::None, None),
    })
}

/// The int8 output of an op writing `name` (its fused activation's, when there is one), when
/// that value and every input in `inputs` have int8 parameters: its tensor, the activation and
/// the input parameters. `None` keeps the op float.
pub(crate) fn int8_output(
    cx: &mut Lowering,
    name: &str,
    inputs: &[&str],
    nhwc: bool,
    fuse: bool,
) -> Result<Option<(i32, lt::ActivationFunctionType, Vec<QParams>)>> {
    let (target, kind, reader) =
        if fuse { activation_target(cx, name)? } else { (name.to_string(), lt::ActivationFunctionType::None, None) };
    let Some(out_q) = cx.params(&target) else { return Ok(None) };
    let mut params = vec![];
    for input in inputs {
        match cx.params(input) {
            Some(q) => params.push(q),
            None => return Ok(None),
        }
    }
    if let Some(r) = reader {
        cx.absorbed.insert(r);
    }
    Ok(Some((cx.output_q(&target, nhwc, out_q)?, kind, params)))
}

/// Conv → CONV_2D, DEPTHWISE_CONV_2D, or (grouped) CONV_2D with the group's input channels.
pub(crate) fn conv(cx: &mut Lowering, node: &Node) -> Result<()> {
    let x_shape = cx.shape(&node.inputs[0])?;
    let Some(w) = cx.constant_f32(&node.inputs[1]) else {
        return Err(cx.refuse(node, "its weight is not a constant"));
    };
    let w = w?;
    if x_shape.len() != 4 || w.ndim() != 4 {
        return Err(
            cx.refuse(node, format!("a {}-D convolution; LiteRT converts 2-D ones", x_shape.len().saturating_sub(2)))
        );
    }
    let (m, cg, kh, kw) = (w.shape()[0], w.shape()[1], w.shape()[2], w.shape()[3]);
    let group = node.attr_int("group").unwrap_or(1) as usize;
    let c = x_shape[1];
    let bias: Vec<f32> = match node.input(2) {
        Some(b) => match cx.constant_f32(b) {
            Some(v) => v?.iter().copied().collect(),
            None => return Err(cx.refuse(node, "its bias is not a constant")),
        },
        None => vec![0.0; m],
    };
    let window = Window::of(cx, node, [kh, kw], [x_shape[2], x_shape[3]])?;
    let depthwise = group == c && group > 1 && cg == 1 && m % c == 0;
    // OIHW → OHWI, or for a depthwise conv [C·M, 1, kh, kw] → [1, kh, kw, C·M].
    let (perm, channel_axis) = if depthwise { ([1, 2, 3, 0], 3) } else { ([0, 2, 3, 1], 0) };
    let quantized = cx.qdq.weights.get(&node.inputs[1]).filter(|q| q.symmetric_int8 && q.axis == 0).cloned();
    let int8 = match quantized {
        Some(_) => int8_output(cx, &node.outputs[0], &[&node.inputs[0]], true, true)?,
        None => None,
    };
    let (x, f, b, out, act, padding);
    if let (Some((o, a, params)), Some(qw)) = (int8, quantized) {
        // int8: per-channel symmetric weights, int32 bias at input scale × weight scale.
        (out, act) = (o, a);
        let s_in = params[0].scale;
        let scales: Vec<f32> = if qw.scales.len() == 1 { vec![qw.scales[0]; m] } else { qw.scales.clone() };
        let bytes: Vec<u8> = qw.values.iter().map(|&v| v as i8 as u8).collect();
        let filter = super::elementwise::permute_bytes(&bytes, w.shape(), &perm, 1);
        let shape = crate::litert::lower::permute(w.shape(), &perm);
        let q = quantization(&scales, &vec![0; m], channel_axis);
        f = cx.b.constant(&node.inputs[1], ElementType::I8, &shape, filter, Some(q));
        let bias_scales: Vec<f32> = scales.iter().map(|s| s * s_in).collect();
        let ints: Vec<u8> =
            bias.iter().zip(&bias_scales).flat_map(|(b, s)| ((b / s).round() as i32).to_le_bytes()).collect();
        let qb = quantization(&bias_scales, &vec![0; m], 0);
        b = cx.b.constant(&format!("{}/bias", node.inputs[1]), ElementType::I32, &[m], ints, Some(qb));
        (x, padding) = padded_input(cx, &node.inputs[0], &window, None, true)?;
    } else {
        (x, padding) = padded_input(cx, &node.inputs[0], &window, None, false)?;
        f = match cx.dequantized_weight(&node.inputs[1], w.shape(), Some(&perm)) {
            Some(f) => f,
            None => constant(cx, &node.inputs[1], &w.permuted_axes(IxDyn(&perm)).as_standard_layout().to_owned()),
        };
        b = cx.b.constant_f32(&format!("{}/bias", node.inputs[1]), &[m], &bias);
        (out, act) = output_with_activation(cx, &node.outputs[0], true)?;
    }
    let [sh, sw] = window.strides;
    let [dh, dw] = window.dilations;
    let options = if depthwise {
        lt::BuiltinOptions::DepthwiseConv2DOptions(Box::new(lt::DepthwiseConv2DOptions {
            padding,
            stride_w: sw as i32,
            stride_h: sh as i32,
            depth_multiplier: (m / c) as i32,
            fused_activation_function: act,
            dilation_w_factor: dw as i32,
            dilation_h_factor: dh as i32,
        }))
    } else {
        lt::BuiltinOptions::Conv2DOptions(Box::new(lt::Conv2DOptions {
            padding,
            stride_w: sw as i32,
            stride_h: sh as i32,
            fused_activation_function: act,
            dilation_w_factor: dw as i32,
            dilation_h_factor: dh as i32,
            ..Default::default()
        }))
    };
    let code = if depthwise { lt::BuiltinOperator::DepthwiseConv2d } else { lt::BuiltinOperator::Conv2d };
    cx.b.op(code, &[x, f, b], &[out], Some(options));
    Ok(())
}

fn constant(cx: &mut Lowering, name: &str, values: &ArrayD<f32>) -> i32 {
    let flat: Vec<f32> = values.iter().copied().collect();
    cx.weight(name, values.shape(), &flat)
}

/// MaxPool / AveragePool → MAX_POOL_2D / AVERAGE_POOL_2D.
pub(crate) fn pool(cx: &mut Lowering, node: &Node) -> Result<()> {
    let shape = cx.shape(&node.inputs[0])?;
    let kernel = match node.attr_ints("kernel_shape") {
        Some([a, b]) => [*a as usize, *b as usize],
        other => return Err(cx.refuse(node, format!("kernel_shape {other:?}: only 2-D pools are converted"))),
    };
    if shape.len() != 4 {
        return Err(cx.refuse(node, "only 2-D pools are converted"));
    }
    if node.attr_int("ceil_mode").unwrap_or(0) != 0 {
        let floor_shape = pooled(&shape, kernel, node);
        if floor_shape != cx.shape(&node.outputs[0])? {
            return Err(cx.refuse(node, "ceil_mode changes this pool's output size; LiteRT pools round down"));
        }
    }
    let window = Window::of(cx, node, kernel, [shape[2], shape[3]])?;
    if window.dilations != [1, 1] {
        return Err(cx.refuse(node, "dilated pools have no LiteRT form"));
    }
    let max = node.op_type == "MaxPool";
    let explicit = matches!(window.pads([shape[2], shape[3]]), Pads::Explicit(_));
    let include_pad = node.attr_int("count_include_pad").unwrap_or(0) != 0;
    if !max && (explicit != include_pad) && window.pads != [0; 4] {
        // LiteRT's SAME average excludes the padding; a PAD before it includes it.
        return Err(
            cx.refuse(node, "this average pool's padding rule (count_include_pad) has no LiteRT form at these pads")
        );
    }
    // int8 pools keep their input's parameters (LiteRT's spec ties them): the values are the
    // input's own, picked or averaged.
    let (out, act, int8) = match cx.params(&node.inputs[0]).filter(|_| cx.params(&node.outputs[0]).is_some()) {
        Some(q) => (cx.output_q(&node.outputs[0], true, q)?, lt::ActivationFunctionType::None, true),
        None => {
            let (out, act) = output_with_activation(cx, &node.outputs[0], true)?;
            (out, act, false)
        }
    };
    let (x, padding) = padded_input(cx, &node.inputs[0], &window, max.then_some(f32::MIN), int8)?;
    let options = lt::Pool2DOptions {
        padding,
        stride_w: window.strides[1] as i32,
        stride_h: window.strides[0] as i32,
        filter_width: kernel[1] as i32,
        filter_height: kernel[0] as i32,
        fused_activation_function: act,
    };
    let code = if max { lt::BuiltinOperator::MaxPool2d } else { lt::BuiltinOperator::AveragePool2d };
    cx.b.op(code, &[x], &[out], Some(lt::BuiltinOptions::Pool2DOptions(Box::new(options))));
    Ok(())
}

/// The output shape of a pool rounding down.
fn pooled(shape: &[usize], kernel: [usize; 2], node: &Node) -> Vec<usize> {
    let strides = node.attr_ints("strides").map(|s| [s[0] as usize, s[1] as usize]).unwrap_or([1, 1]);
    let pads =
        node.attr_ints("pads").map(|p| [p[0] as usize, p[1] as usize, p[2] as usize, p[3] as usize]).unwrap_or([0; 4]);
    let out = |axis: usize| (shape[axis + 2] + pads[axis] + pads[axis + 2] - kernel[axis]) / strides[axis] + 1;
    vec![shape[0], shape[1], out(0), out(1)]
}

/// GlobalAveragePool / GlobalMaxPool → MEAN / REDUCE_MAX over H and W, kept as `[N,1,1,C]`.
pub(crate) fn global_pool(cx: &mut Lowering, node: &Node) -> Result<()> {
    if cx.shape(&node.inputs[0])?.len() != 4 {
        return Err(cx.refuse(node, "only 2-D pools are converted"));
    }
    let axes = cx.b.constant_i32("axes", &[2], &[1, 2]);
    let (x, out) = match int8_output(cx, &node.outputs[0], &[&node.inputs[0]], true, false)? {
        Some((out, _, _)) => (cx.int8(&node.inputs[0], true)?.expect("checked").0, out),
        None => (cx.nhwc(&node.inputs[0])?, cx.output(&node.outputs[0], true)?),
    };
    let code = if node.op_type == "GlobalMaxPool" { lt::BuiltinOperator::ReduceMax } else { lt::BuiltinOperator::Mean };
    let options = lt::BuiltinOptions::ReducerOptions(Box::new(lt::ReducerOptions { keep_dims: true }));
    cx.b.op(code, &[x, axes], &[out], Some(options));
    Ok(())
}
