//! 4-bit weights that every runtime can load: two values packed per uint8 and
//! unpacked by plain ONNX ops (BitwiseAnd, BitShift, Concat, Cast, Sub, Mul),
//! with one float16 scale per block. Runtimes fold the unpacking at load time,
//! so the file is small and inference runs at float speed. (The int4 type
//! with blocked `DequantizeLinear`, opset 21, runs in ONNX Runtime only.)

use super::pack::nibbles;
use super::scheme::{params_for_range, QType};
use crate::ir::{AttrValue, Attribute, Model, Node, Tensor};
use crate::{Error, Result};
use ndarray::{Array2, ArrayD, Axis, Ix2, IxDyn};

/// The opset the unpacking needs (BitwiseAnd).
pub const PORTABLE_INT4_OPSET: i64 = 18;

/// Replaces the 2-D float weight `name` by its packed int4 form and the
/// unpacking subgraph; blocks of `block` run along `block_axis`.
/// Returns the scales' (min, max).
pub fn replace_with_portable_int4(
    model: &mut Model,
    name: &str,
    w: &ArrayD<f32>,
    block_axis: usize,
    block: usize,
) -> Result<(f32, f32)> {
    let w2 = w.view().into_dimensionality::<Ix2>().map_err(|_| Error::Model(format!("'{name}' is not 2-D")))?;
    // Rows are output channels, blocks run along each row.
    let m: Array2<f32> = if block_axis == 1 { w2.to_owned() } else { w2.t().to_owned() };
    let (rows, len) = m.dim();
    let padded = len.div_ceil(block) * block;
    let blocks = padded / block;
    let (qmin, qmax) = QType::Int4.range(false);
    let mut stored = Vec::with_capacity(rows * padded);
    let mut scales = Vec::with_capacity(rows * blocks);
    for row in m.axis_iter(Axis(0)) {
        for b in 0..blocks {
            let lane: Vec<f32> = (b * block..(b + 1) * block).map(|i| if i < len { row[i] } else { 0.0 }).collect();
            let s = best_scale(&lane, qmin, qmax);
            scales.push(half::f16::from_f32(s));
            stored.extend(super::scheme::quantize_lane_keeping_sum(&lane, s, 0, qmin, qmax).into_iter().map(|v| v + 8));
        }
    }
    let (smin, smax) = scales.iter().fold((f32::INFINITY, 0f32), |(a, b), s| (a.min(s.to_f32()), b.max(s.to_f32())));
    model.graph.remove_constant(name)?;
    let n = |s: &str| format!("{name}_int4_{s}");
    let g = &mut model.graph;
    let packed = nibbles(stored.into_iter());
    g.initializers.push(Tensor::from_bytes(
        n("packed"),
        crate::ir::DataType::UINT8,
        vec![packed.len() as i64],
        packed.into(),
    ));
    let scale = ArrayD::from_shape_vec(IxDyn(&[rows, blocks, 1]), scales).expect("sized");
    g.initializers.push(Tensor::from_array(n("scale"), &scale));
    let int64 = |v: Vec<i64>| ArrayD::from_shape_vec(IxDyn(&[v.len()]), v).expect("1-d");
    g.initializers.push(Tensor::scalar(n("mask"), 15u8));
    g.initializers.push(Tensor::scalar(n("shift"), 4u8));
    g.initializers.push(Tensor::scalar(n("zero"), 8.0f32));
    g.initializers.push(Tensor::from_array(n("axes"), &int64(vec![1])));
    g.initializers.push(Tensor::from_array(n("blocked_shape"), &int64(vec![rows as i64, blocks as i64, block as i64])));
    g.initializers.push(Tensor::from_array(n("padded_shape"), &int64(vec![rows as i64, padded as i64])));
    let attr = |k: &str, v: AttrValue| Attribute {
        name: k.into(),
        value: v,
        doc_string: String::new(),
        ref_attr_name: String::new(),
    };
    let mut nodes = vec![
        node(&n("low"), "BitwiseAnd", &[&n("packed"), &n("mask")], vec![]),
        node(
            &n("high"),
            "BitShift",
            &[&n("packed"), &n("shift")],
            vec![attr("direction", AttrValue::String(b"RIGHT".to_vec()))],
        ),
        node(&n("low2"), "Unsqueeze", &[&n("low"), &n("axes")], vec![]),
        node(&n("high2"), "Unsqueeze", &[&n("high"), &n("axes")], vec![]),
        node(&n("pairs"), "Concat", &[&n("low2"), &n("high2")], vec![attr("axis", AttrValue::Int(1))]),
        node(&n("blocked"), "Reshape", &[&n("pairs"), &n("blocked_shape")], vec![]),
        node(&n("float"), "Cast", &[&n("blocked")], vec![attr("to", AttrValue::Int(1))]),
        node(&n("centred"), "Sub", &[&n("float"), &n("zero")], vec![]),
        node(&n("scale_f32"), "Cast", &[&n("scale")], vec![attr("to", AttrValue::Int(1))]),
        node(&n("scaled"), "Mul", &[&n("centred"), &n("scale_f32")], vec![]),
    ];
    let mut last = n("rows");
    nodes.push(node(&last, "Reshape", &[&n("scaled"), &n("padded_shape")], vec![]));
    if padded != len {
        g.initializers.push(Tensor::from_array(n("starts"), &int64(vec![0])));
        g.initializers.push(Tensor::from_array(n("ends"), &int64(vec![len as i64])));
        nodes.push(node(&n("sliced"), "Slice", &[&last, &n("starts"), &n("ends"), &n("axes")], vec![]));
        last = n("sliced");
    }
    let final_op = if block_axis == 1 {
        node(name, "Identity", &[&last], vec![])
    } else {
        node(name, "Transpose", &[&last], vec![attr("perm", AttrValue::Ints(vec![1, 0]))])
    };
    nodes.push(final_op);
    g.nodes.extend(nodes);
    Ok((smin, smax))
}

/// With 16 levels, clipping a block's largest values a little often lowers its
/// total squared error: try scales from 70 % to 100 % of the min-max one and
/// keep the best (as stored, in float16).
fn best_scale(lane: &[f32], qmin: i32, qmax: i32) -> f32 {
    let (lo, hi) = super::scheme::finite_range(lane.iter());
    let (full, _) = params_for_range(lo, hi, QType::Int4, true, false);
    let error = |s: f32| -> f32 {
        lane.iter().map(|&x| (x - super::scheme::quantize_value(x, s, 0, qmin, qmax) as f32 * s).powi(2)).sum()
    };
    (70..=100)
        .step_by(2)
        .map(|pct| half::f16::from_f32(full * pct as f32 / 100.0).to_f32().max(f32::from(half::f16::MIN_POSITIVE)))
        .min_by(|a, b| error(*a).total_cmp(&error(*b)))
        .unwrap_or(1.0)
}

fn node(output: &str, op: &str, inputs: &[&str], attributes: Vec<Attribute>) -> Node {
    Node {
        name: format!("{output}_{op}"),
        op_type: op.into(),
        inputs: inputs.iter().map(|s| s.to_string()).collect(),
        outputs: vec![output.into()],
        attributes,
        ..Default::default()
    }
}
