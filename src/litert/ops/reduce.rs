//! Reductions, Softmax and LayerNormalization (written as the arithmetic LiteRT fuses).

use crate::ir::Node;
use crate::litert::builder::ElementType;
use crate::litert::lower::Lowering;
use crate::Result;
use prunq_litert_schema as lt;

/// ReduceMean / ReduceSum / ReduceMax → MEAN / SUM / REDUCE_MAX (axes from the attribute or,
/// from opset 13/18, the constant input), in the input's layout when the rank is kept.
pub(crate) fn reduce(cx: &mut Lowering, node: &Node) -> Result<()> {
    let shape = cx.shape(&node.inputs[0])?;
    let rank = shape.len() as i64;
    let axes: Vec<i64> = match node.attr_ints("axes") {
        Some(a) => a.to_vec(),
        None => match node.input(1) {
            Some(name) => match cx.constant_i64(name) {
                Some(v) => v?,
                None => return Err(cx.refuse(node, format!("its axes ({name}) are not a constant"))),
            },
            None => (0..rank).collect(),
        },
    };
    let keep = node.attr_int("keepdims").unwrap_or(1) != 0;
    let mut axes: Vec<usize> = axes.iter().map(|&a| if a < 0 { a + rank } else { a } as usize).collect();
    let v = cx.float_value(&node.inputs[0])?;
    let nhwc = v.nhwc && keep;
    let x = if nhwc { v.id } else { cx.onnx(&node.inputs[0])? };
    if nhwc {
        axes = axes.iter().map(|&a| [0, 3, 1, 2][a]).collect();
    }
    let axes: Vec<i32> = axes.iter().map(|&a| a as i32).collect();
    let a = cx.b.constant_i32("axes", &[axes.len()], &axes);
    let options = || Some(lt::BuiltinOptions::ReducerOptions(Box::new(lt::ReducerOptions { keep_dims: keep })));
    if node.op_type == "ReduceL2" {
        // √(Σ x²)
        let f = ElementType::F32;
        let name = &node.outputs[0];
        let squared = cx.scratch(&format!("{name}/squared"), f, &cx.b.shape(x));
        cx.b.op(lt::BuiltinOperator::Square, &[x], &[squared], None);
        let summed_shape = {
            let written = cx.shape(name)?;
            if nhwc {
                crate::litert::lower::permute(&written, &crate::litert::lower::TO_NHWC)
            } else {
                written
            }
        };
        let summed = cx.scratch(&format!("{name}/sum"), f, &summed_shape);
        cx.b.op(lt::BuiltinOperator::Sum, &[squared, a], &[summed], options());
        let out = cx.output(name, nhwc)?;
        cx.b.op(lt::BuiltinOperator::Sqrt, &[summed], &[out], None);
        return Ok(());
    }
    let out = cx.output(&node.outputs[0], nhwc)?;
    let code = match node.op_type.as_str() {
        "ReduceMean" => lt::BuiltinOperator::Mean,
        "ReduceSum" => lt::BuiltinOperator::Sum,
        _ => lt::BuiltinOperator::ReduceMax,
    };
    cx.b.op(
        code,
        &[x, a],
        &[out],
        Some(lt::BuiltinOptions::ReducerOptions(Box::new(lt::ReducerOptions { keep_dims: keep }))),
    );
    Ok(())
}

/// Softmax over the axis LiteRT's SOFTMAX takes: the last one as written (an NHWC image's
/// channels included).
pub(crate) fn softmax(cx: &mut Lowering, node: &Node) -> Result<()> {
    let rank = cx.shape(&node.inputs[0])?.len() as i64;
    // Before opset 13 the default axis was 1 and the op flattened the axes from it on: the
    // same as ours only where that axis is the last.
    let axis = node.attr_int("axis").unwrap_or(if cx.opset >= 13 { -1 } else { 1 });
    let axis = if axis < 0 { axis + rank } else { axis };
    let v = cx.float_value(&node.inputs[0])?;
    let (x, nhwc) = if v.nhwc && axis == 1 {
        (v.id, true)
    } else if axis == rank - 1 {
        (cx.onnx(&node.inputs[0])?, false)
    } else {
        return Err(cx.refuse(node, format!("softmax over axis {axis} of {rank}; LiteRT's is over the last axis")));
    };
    let out = cx.output(&node.outputs[0], nhwc)?;
    let options = lt::SoftmaxOptions { beta: 1.0 };
    cx.b.op(lt::BuiltinOperator::Softmax, &[x], &[out], Some(lt::BuiltinOptions::SoftmaxOptions(Box::new(options))));
    Ok(())
}

/// LayerNormalization over the last axis → MEAN, SQUARED_DIFFERENCE, MEAN, ADD ε, RSQRT, SUB,
/// MUL, MUL γ, ADD β.
pub(crate) fn layer_norm(cx: &mut Lowering, node: &Node) -> Result<()> {
    let shape = cx.shape(&node.inputs[0])?;
    let rank = shape.len() as i64;
    let axis = node.attr_int("axis").unwrap_or(-1);
    if axis != -1 && axis != rank - 1 {
        return Err(cx.refuse(node, "only a normalization over the last axis is converted"));
    }
    let eps = node.attr_float("epsilon").unwrap_or(1e-5);
    let name = node.outputs[0].clone();
    let x = cx.onnx(&node.inputs[0])?;
    let mut reduced = shape.clone();
    *reduced.last_mut().expect("rank ≥ 1") = 1;
    let f = ElementType::F32;
    let axes = cx.b.constant_i32("axes", &[1], &[(rank - 1) as i32]);
    let keep = || Some(lt::BuiltinOptions::ReducerOptions(Box::new(lt::ReducerOptions { keep_dims: true })));
    let mean = cx.scratch(&format!("{name}/mean"), f, &reduced);
    cx.b.op(lt::BuiltinOperator::Mean, &[x, axes], &[mean], keep());
    let sq = cx.scratch(&format!("{name}/squared"), f, &shape);
    cx.b.op(lt::BuiltinOperator::SquaredDifference, &[x, mean], &[sq], None);
    let var = cx.scratch(&format!("{name}/variance"), f, &reduced);
    cx.b.op(lt::BuiltinOperator::Mean, &[sq, axes], &[var], keep());
    let e = cx.b.constant_f32(&format!("{name}/epsilon"), &[], &[eps]);
    let var_eps = cx.scratch(&format!("{name}/variance_eps"), f, &reduced);
    cx.b.op(lt::BuiltinOperator::Add, &[var, e], &[var_eps], None);
    let rstd = cx.scratch(&format!("{name}/rstd"), f, &reduced);
    cx.b.op(lt::BuiltinOperator::Rsqrt, &[var_eps], &[rstd], None);
    let centered = cx.scratch(&format!("{name}/centered"), f, &shape);
    cx.b.op(lt::BuiltinOperator::Sub, &[x, mean], &[centered], None);
    let normed = cx.scratch(&format!("{name}/normalized"), f, &shape);
    cx.b.op(lt::BuiltinOperator::Mul, &[centered, rstd], &[normed], None);
    let gamma = cx.onnx(&node.inputs[1])?;
    let bias = node.input(2).map(str::to_string);
    let scaled =
        if bias.is_some() { cx.scratch(&format!("{name}/scaled"), f, &shape) } else { cx.output(&name, false)? };
    cx.b.op(lt::BuiltinOperator::Mul, &[normed, gamma], &[scaled], None);
    if let Some(bias) = bias {
        let beta = cx.onnx(&bias)?;
        let out = cx.output(&name, false)?;
        cx.b.op(lt::BuiltinOperator::Add, &[scaled, beta], &[out], None);
    }
    Ok(())
}
