//! Ops that move data without computing: Reshape, Flatten, Squeeze and Unsqueeze as RESHAPE (in
//! ONNX order: their meaning is the ONNX byte order), Transpose composed with the input's
//! layout, Concat along the axis in the inputs' layout, Slice as STRIDED_SLICE, Gather.

use crate::ir::Node;
use crate::litert::lower::{Lowering, TO_NCHW};
use crate::Result;
use prunq_litert_schema as lt;

/// Reshape, Flatten, Squeeze, Unsqueeze → RESHAPE to the output's shape.
pub(crate) fn reshape(cx: &mut Lowering, node: &Node) -> Result<()> {
    // An int8 value stays int8 with its parameters (a reshape moves no value).
    if let Some(q) = cx.get(&node.inputs[0])?.q {
        let x = cx.int8(&node.inputs[0], false)?.expect("int8").0;
        let out = cx.output_q(&node.outputs[0], false, q)?;
        cx.reshape(x, out);
        return Ok(());
    }
    let x = cx.onnx(&node.inputs[0])?;
    let out = cx.output(&node.outputs[0], false)?;
    cx.reshape(x, out);
    Ok(())
}

/// Transpose → TRANSPOSE, composed with an NHWC input's layout (a RESHAPE when only axes of
/// size 1 move).
pub(crate) fn transpose(cx: &mut Lowering, node: &Node) -> Result<()> {
    let shape = cx.shape(&node.inputs[0])?;
    let perm: Vec<usize> = match node.attr_ints("perm") {
        Some(p) => p.iter().map(|&a| a as usize).collect(),
        None => (0..shape.len()).rev().collect(),
    };
    // An int8 value stays int8 with its parameters (LiteRT's spec ties a TRANSPOSE's).
    let v = cx.get(&node.inputs[0])?;
    let v = if v.q.is_some() { v } else { cx.float_value(&node.inputs[0])? };
    let (perm, from_shape) =
        if v.nhwc { (perm.iter().map(|&a| TO_NCHW[a]).collect::<Vec<_>>(), cx.b.shape(v.id)) } else { (perm, shape) };
    let out = match v.q {
        Some(q) => cx.output_q(&node.outputs[0], false, q)?,
        None => cx.output(&node.outputs[0], false)?,
    };
    cx.relayout(v.id, out, &from_shape, &perm);
    Ok(())
}

/// Concat → CONCATENATION, along the axis where the inputs' layout puts it.
pub(crate) fn concat(cx: &mut Lowering, node: &Node) -> Result<()> {
    let rank = cx.shape(&node.outputs[0])?.len() as i64;
    let axis = node.attr_int("axis").unwrap_or(0);
    let axis = if axis < 0 { axis + rank } else { axis } as usize;
    let mut all_nhwc = rank == 4;
    for name in &node.inputs {
        all_nhwc &= cx.constant(name).is_none() && cx.get(name)?.nhwc;
    }
    // Int8 when the quantizer made every input and the output int8: LiteRT's spec ties the
    // parameters, so an input with other ones is requantized to the output's first.
    let out_q = cx.params(&node.outputs[0]).filter(|_| node.inputs.iter().all(|i| cx.params(i).is_some()));
    let mut ids = vec![];
    for name in &node.inputs {
        ids.push(match out_q {
            Some(q) => cx.requantized(name, all_nhwc, q)?,
            None if all_nhwc => cx.nhwc(name)?,
            None => cx.onnx(name)?,
        });
    }
    // Where ONNX axis `axis` sits in NHWC order.
    let written_axis = if all_nhwc { [0, 3, 1, 2][axis] } else { axis };
    let out = match out_q {
        Some(q) => cx.output_q(&node.outputs[0], all_nhwc, q)?,
        None => cx.output(&node.outputs[0], all_nhwc)?,
    };
    let options = lt::ConcatenationOptions { axis: written_axis as i32, ..Default::default() };
    cx.b.op(
        lt::BuiltinOperator::Concatenation,
        &ids,
        &[out],
        Some(lt::BuiltinOptions::ConcatenationOptions(Box::new(options))),
    );
    Ok(())
}

/// Slice (constant starts/ends/axes/steps, positive steps) → STRIDED_SLICE in ONNX order.
pub(crate) fn slice(cx: &mut Lowering, node: &Node) -> Result<()> {
    let shape = cx.shape(&node.inputs[0])?;
    let rank = shape.len();
    let ints = |cx: &Lowering, ix: usize, attr: &str| -> Result<Option<Vec<i64>>> {
        if let Some(v) = node.attr_ints(attr) {
            return Ok(Some(v.to_vec()));
        }
        match node.input(ix) {
            None => Ok(None),
            Some(name) => match cx.constant_i64(name) {
                Some(v) => v.map(Some),
                None => Err(cx.refuse(node, format!("its {attr} ({name}) is not a constant"))),
            },
        }
    };
    let starts = ints(cx, 1, "starts")?.unwrap_or_default();
    let ends = ints(cx, 2, "ends")?.unwrap_or_default();
    let axes = ints(cx, 3, "axes")?.unwrap_or_else(|| (0..starts.len() as i64).collect());
    let steps = ints(cx, 4, "steps")?.unwrap_or_else(|| vec![1; starts.len()]);
    let mut begin = vec![0i32; rank];
    let mut end: Vec<i32> = shape.iter().map(|&d| d as i32).collect();
    let mut stride = vec![1i32; rank];
    for (k, &axis) in axes.iter().enumerate() {
        let axis = if axis < 0 { axis + rank as i64 } else { axis } as usize;
        let dim = shape[axis] as i64;
        if steps[k] <= 0 {
            return Err(cx.refuse(node, "a slice with a negative step is not converted"));
        }
        let clamp = |v: i64| (if v < 0 { v + dim } else { v }).clamp(0, dim) as i32;
        begin[axis] = clamp(starts[k]);
        end[axis] = clamp(ends[k]);
        stride[axis] = steps[k] as i32;
    }
    let x = cx.onnx(&node.inputs[0])?;
    let b = cx.b.constant_i32("begin", &[rank], &begin);
    let e = cx.b.constant_i32("end", &[rank], &end);
    let s = cx.b.constant_i32("strides", &[rank], &stride);
    let out = cx.output(&node.outputs[0], false)?;
    let options = lt::StridedSliceOptions::default();
    cx.b.op(
        lt::BuiltinOperator::StridedSlice,
        &[x, b, e, s],
        &[out],
        Some(lt::BuiltinOptions::StridedSliceOptions(Box::new(options))),
    );
    Ok(())
}

/// Gather → GATHER in ONNX order.
pub(crate) fn gather(cx: &mut Lowering, node: &Node) -> Result<()> {
    let rank = cx.shape(&node.inputs[0])?.len() as i64;
    let axis = node.attr_int("axis").unwrap_or(0);
    let axis = if axis < 0 { axis + rank } else { axis };
    let data = cx.onnx(&node.inputs[0])?;
    let indices = cx.onnx(&node.inputs[1])?;
    let out = cx.output(&node.outputs[0], false)?;
    let options = lt::GatherOptions { axis: axis as i32, batch_dims: 0 };
    cx.b.op(
        lt::BuiltinOperator::Gather,
        &[data, indices],
        &[out],
        Some(lt::BuiltinOptions::GatherOptions(Box::new(options))),
    );
    Ok(())
}
