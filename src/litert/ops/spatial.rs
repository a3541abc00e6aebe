//! Ops that move an image's pixels: Pad (PAD, PADV2 or MIRROR_PAD, in the input's layout) and
//! Resize (RESIZE_NEAREST_NEIGHBOR or RESIZE_BILINEAR, NHWC) — where ONNX's coordinate rules have
//! an exact LiteRT form; others are refused naming the attribute.

use crate::ir::Node;
use crate::litert::lower::Lowering;
use crate::Result;
use prunq_litert_schema as lt;

/// Pad with constant pads: `constant` → PAD (value 0) or PADV2, `reflect` → MIRROR_PAD; int8
/// with its input's parameters where the quantizer made it int8 and the value is 0 (LiteRT pads
/// an int8 tensor with its zero point).
pub(crate) fn pad(cx: &mut Lowering, node: &Node) -> Result<()> {
    let shape = cx.shape(&node.inputs[0])?;
    let rank = shape.len();
    let pads: Vec<i64> = match (node.input(1), node.attr_ints("pads")) {
        (Some(p), _) => match cx.constant_i64(p) {
            Some(p) => p?,
            None => return Err(cx.refuse(node, "its pads are computed; LiteRT's are constants")),
        },
        (None, Some(p)) => p.to_vec(),
        (None, None) => vec![0; 2 * rank],
    };
    if node.input(3).is_some() {
        return Err(cx.refuse(node, "pads over chosen axes (input `axes`) are not converted"));
    }
    if pads.len() != 2 * rank || pads.iter().any(|&p| p < 0) {
        return Err(cx.refuse(node, format!("pads {pads:?}: LiteRT pads by a non-negative amount on each axis")));
    }
    let value = match node.input(2).and_then(|v| cx.constant_f32(v)) {
        Some(v) => v?.iter().next().copied().unwrap_or(0.0),
        None if node.input(2).is_some() => return Err(cx.refuse(node, "its pad value is computed")),
        None => node.attr_float("value").unwrap_or(0.0),
    };
    let mode = node.attr_string("mode").unwrap_or_else(|| "constant".into());
    let v = cx.get(&node.inputs[0])?;
    let int8 = v.q.is_some() && cx.params(&node.outputs[0]).is_some() && mode != "edge" && value == 0.0;
    let mode = mode.as_str();
    let (x, nhwc) = match (int8, v.nhwc) {
        (true, nhwc) => (cx.int8(&node.inputs[0], nhwc)?.expect("int8 checked").0, nhwc),
        (false, true) => (cx.nhwc(&node.inputs[0])?, true),
        (false, false) => (cx.onnx(&node.inputs[0])?, false),
    };
    // ONNX gives every axis's start, then every axis's end; LiteRT [rank, 2] in the written order.
    let order: Vec<usize> = if nhwc { vec![0, 2, 3, 1] } else { (0..rank).collect() };
    let pairs: Vec<i32> = order.iter().flat_map(|&a| [pads[a] as i32, pads[a + rank] as i32]).collect();
    let p = cx.b.constant_i32("pads", &[rank, 2], &pairs);
    let out = match int8 {
        true => cx.output_q(&node.outputs[0], nhwc, v.q.expect("int8 checked"))?,
        false => cx.output(&node.outputs[0], nhwc)?,
    };
    match mode {
        "constant" if value == 0.0 => cx.b.op(lt::BuiltinOperator::Pad, &[x, p], &[out], None),
        "constant" => {
            let value = cx.b.constant_f32("pad_value", &[], &[value]);
            cx.b.op(lt::BuiltinOperator::Padv2, &[x, p, value], &[out], None)
        }
        "reflect" => {
            let options = lt::MirrorPadOptions { mode: lt::MirrorPadMode::Reflect };
            let options = Some(lt::BuiltinOptions::MirrorPadOptions(Box::new(options)));
            cx.b.op(lt::BuiltinOperator::MirrorPad, &[x, p], &[out], options)
        }
        other => return Err(cx.refuse(node, format!("pad mode {other} has no LiteRT form"))),
    }
    Ok(())
}

/// Resize of an image's height and width (NHWC inside): nearest with `asymmetric` coordinates
/// and `floor` rounding (PyTorch's `nearest`), or with `tf_half_pixel_for_nn`; bilinear with
/// `half_pixel`/`pytorch_half_pixel` (PyTorch's `align_corners=False`), `align_corners` or
/// `asymmetric`. The output's size is the model's (fixed before conversion).
pub(crate) fn resize(cx: &mut Lowering, node: &Node) -> Result<()> {
    let (shape, out_shape) = (cx.shape(&node.inputs[0])?, cx.shape(&node.outputs[0])?);
    if shape.len() != 4 || shape[..2] != out_shape[..2] {
        return Err(cx.refuse(node, "only the height and width of an NCHW image are resized in LiteRT"));
    }
    let mode = node.attr_string("mode").unwrap_or_else(|| "nearest".into());
    let transform = node.attr_string("coordinate_transformation_mode").unwrap_or_else(|| "half_pixel".into());
    let rounding = node.attr_string("nearest_mode").unwrap_or_else(|| "round_prefer_floor".into());
    // pytorch_half_pixel differs from half_pixel only for an output of size 1.
    let pytorch_like = transform == "pytorch_half_pixel" && out_shape[2] > 1 && out_shape[3] > 1;
    let (code, align_corners, half_pixel_centers) = match (mode.as_str(), transform.as_str(), rounding.as_str()) {
        ("nearest", "asymmetric", "floor") => (lt::BuiltinOperator::ResizeNearestNeighbor, false, false),
        ("nearest", "tf_half_pixel_for_nn", "floor") => (lt::BuiltinOperator::ResizeNearestNeighbor, false, true),
        ("linear", "half_pixel", _) => (lt::BuiltinOperator::ResizeBilinear, false, true),
        ("linear", "pytorch_half_pixel", _) if pytorch_like => (lt::BuiltinOperator::ResizeBilinear, false, true),
        ("linear", "align_corners", _) => (lt::BuiltinOperator::ResizeBilinear, true, false),
        ("linear", "asymmetric", _) => (lt::BuiltinOperator::ResizeBilinear, false, false),
        _ => {
            return Err(cx.refuse(
                node,
                format!(
                    "resize mode {mode} with coordinate_transformation_mode {transform}{} has no exact LiteRT form",
                    if mode == "nearest" { format!(" and nearest_mode {rounding}") } else { String::new() }
                ),
            ))
        }
    };
    if node.attr_int("antialias").unwrap_or(0) != 0 {
        return Err(cx.refuse(node, "antialiased resizing has no LiteRT form"));
    }
    // Int8 keeps its input's parameters (LiteRT's spec ties a resize's).
    let q = cx.params(&node.inputs[0]).filter(|_| cx.params(&node.outputs[0]).is_some());
    let x = match q {
        Some(_) => cx.int8(&node.inputs[0], true)?.expect("int8 checked").0,
        None => cx.nhwc(&node.inputs[0])?,
    };
    let size = cx.b.constant_i32("size", &[2], &[out_shape[2] as i32, out_shape[3] as i32]);
    let out = match q {
        Some(q) => cx.output_q(&node.outputs[0], true, q)?,
        None => cx.output(&node.outputs[0], true)?,
    };
    let options = match code {
        lt::BuiltinOperator::ResizeBilinear => {
            lt::BuiltinOptions::ResizeBilinearOptions(Box::new(lt::ResizeBilinearOptions {
                align_corners,
                half_pixel_centers,
            }))
        }
        _ => lt::BuiltinOptions::ResizeNearestNeighborOptions(Box::new(lt::ResizeNearestNeighborOptions {
            align_corners,
            half_pixel_centers,
        })),
    };
    cx.b.op(code, &[x, size], &[out], Some(options));
    Ok(())
}
