//! How channels flow through each op type: one rule per op family, in one
//! table. A rule reads its inputs' layouts, sets its outputs' layouts, adds
//! ties and merges groups; an `Err` says why the op's channels cannot be
//! followed, and the builder blocks every group the op reads.

mod shapes;
use shapes::*;

use super::build::Builder;
use super::{Layout, Role, Segment, Tie};
use crate::ir::{ops, Node};

type Outcome = Result<(), String>;
pub type Rule = fn(&mut Builder, usize, &Node) -> Outcome;

/// The channel-flow rules, keyed by op type.
const RULES: &[(&[&str], Rule)] = &[
    (&["Conv"], conv),
    (&["ConvTranspose"], conv_transpose),
    (&["Gemm"], gemm),
    (&["MatMul"], matmul),
    (ops::CHANNEL_NORMALIZATION, norm),
    (ops::ELEMENTWISE_UNARY, unary),
    (ops::BROADCAST, elementwise),
    (ops::POOLING, pooling),
    (&["Pad"], pad),
    (&["Resize", "Upsample"], resize),
    (ops::RESHAPING, reshape),
    (&["Transpose"], transpose),
    (&["Concat"], concat),
    (&["Split"], split),
    (&["Slice"], slice),
    (ops::SOFTMAX, softmax),
    (ops::REDUCTIONS, reduce),
    (&["LayerNormalization"], layer_norm),
];

pub fn rule_for(node: &Node) -> Option<Rule> {
    if !node.is_onnx_op() {
        return None;
    }
    RULES.iter().find(|(ops, _)| ops.contains(&node.op_type.as_str())).map(|(_, r)| *r)
}

fn input(node: &Node, ix: usize) -> Result<&str, String> {
    node.input(ix).ok_or_else(|| format!("input {ix} is missing"))
}

fn output(node: &Node) -> Result<&str, String> {
    node.outputs.first().map(String::as_str).filter(|o| !o.is_empty()).ok_or_else(|| "no output".to_string())
}

/// Refuses a node whose optional outputs (`what`) are used.
fn only_first_output(node: &Node, what: &str) -> Outcome {
    if node.outputs.iter().skip(1).any(|o| !o.is_empty()) {
        return Err(format!("{what} are not handled"));
    }
    Ok(())
}

fn single(group: usize, channels: usize, axis: usize) -> Layout {
    Layout { axis, segments: vec![Segment { group: Some(group), channels, inner: 1 }] }
}

fn normalize_axis(axis: i64, rank: usize) -> Result<usize, String> {
    let a = if axis < 0 { axis + rank as i64 } else { axis };
    usize::try_from(a).ok().filter(|&a| a < rank).ok_or_else(|| format!("axis {axis} is out of range"))
}

/// Channels (of any width: a shuffle's channels span one element per run) must run along `axis`.
fn channels_on(layout: &Layout, axis: usize) -> Outcome {
    if layout.axis != axis {
        return Err(format!("expects channels on axis {axis}, they are on axis {}", layout.axis));
    }
    Ok(())
}

/// Conv: reads channels with its weight's axis 1 and makes new ones (axis 0);
/// a depthwise Conv keeps its input's channels, one filter each.
fn conv(b: &mut Builder, n: usize, node: &Node) -> Outcome {
    let (x, w, out) = (input(node, 0)?, input(node, 1)?, output(node)?);
    let weight = b.constant(w).ok_or("its weight is not a constant")?;
    let wshape = weight.shape();
    let group = node.attr_int("group").unwrap_or(1);
    let label = node.label();
    let inputs = b.layout(x);
    if group == 1 {
        if let Some(bias) = node.input(2) {
            b.constant(bias).ok_or("its bias is not a constant")?;
        }
        if let Some(l) = &inputs {
            channels_on(l, 1)?;
            b.tie_slices(l, w, 1, Role::Input { node: label.clone(), input: x.to_string() })?;
            b.carry(l, x);
        }
        let made = single(b.new_group(wshape[0], &label), wshape[0], 1);
        b.tie_slices(&made, w, 0, Role::Output { node: label })?;
        if let Some(bias) = node.input(2) {
            b.tie_slices(&made, bias, 0, Role::Param)?;
        }
        b.set_layout(out, made);
        return Ok(());
    }
    let cin = *b.shape(x)?.get(1).ok_or("its input has no channel axis")?;
    let depthwise = group as usize == cin && wshape.first() == Some(&cin) && wshape.get(1) == Some(&1);
    if !depthwise {
        return grouped_conv(b, node, group as usize, inputs);
    }
    let Some(l) = inputs else { return Ok(()) };
    channels_on(&l, 1)?;
    b.tie_slices(&l, w, 0, Role::Output { node: label })?;
    if let Some(bias) = node.input(2) {
        b.tie_slices(&l, bias, 0, Role::Param)?;
    }
    b.tie_each(&l, |_, s| Tie::ConvGroups { node: n, inner: s.inner });
    b.carry(&l, x);
    b.set_layout(out, l);
    Ok(())
}

/// A grouped (not depthwise) Conv, weight [Cout, Cin/groups, k…]: each of
/// its `groups` groups reads its own run of input channels with the same
/// weight columns, so an input channel can go only with the channel at the
/// same position of every other run (the runs are mirrored). Its filters make
/// channels in `groups` equal runs: removing the same number from each keeps
/// `group` as it is.
fn grouped_conv(b: &mut Builder, node: &Node, groups: usize, inputs: Option<Layout>) -> Outcome {
    let (x, w, out) = (input(node, 0)?, input(node, 1)?, output(node)?);
    let cout = b.constant(w).ok_or("its weight is not a constant")?.shape()[0];
    if let Some(bias) = node.input(2) {
        b.constant(bias).ok_or("its bias is not a constant")?;
    }
    if cout % groups != 0 {
        return Err(format!("{cout} filters do not split into {groups} groups"));
    }
    let label = node.label();
    if let Some(l) = &inputs {
        channels_on(l, 1)?;
        let reads = Role::Input { node: label.clone(), input: x.to_string() };
        match b.mirror(x, groups).and_then(|run| b.tie_slices(&run, w, 1, reads)) {
            Ok(()) => b.carry(&b.layout(x).expect("mirrored above"), x),
            Err(why) => {
                let why =
                    format!("{label} (Conv): a grouped convolution ({groups} groups) reads its input in runs: {why}");
                b.block_layout(&b.layout(x).unwrap_or_else(|| l.clone()), &why);
            }
        }
    }
    let made = single(b.new_group_in_blocks(cout, groups, &label), cout, 1);
    b.tie_slices(&made, w, 0, Role::Output { node: label })?;
    if let Some(bias) = node.input(2) {
        b.tie_slices(&made, bias, 0, Role::Param)?;
    }
    b.set_layout(out, made);
    Ok(())
}

/// ConvTranspose (group 1): weight [Cin, Cout, k…].
fn conv_transpose(b: &mut Builder, _: usize, node: &Node) -> Outcome {
    let (x, w, out) = (input(node, 0)?, input(node, 1)?, output(node)?);
    let weight = b.constant(w).ok_or("its weight is not a constant")?;
    if node.attr_int("group").unwrap_or(1) != 1 {
        return Err("grouped transposed convolution is not handled".into());
    }
    if node.attr("output_shape").is_some() {
        return Err("an explicit output_shape is not handled".into());
    }
    if let Some(bias) = node.input(2) {
        b.constant(bias).ok_or("its bias is not a constant")?;
    }
    let label = node.label();
    if let Some(l) = b.layout(x) {
        channels_on(&l, 1)?;
        b.tie_slices(&l, w, 0, Role::Input { node: label.clone(), input: x.to_string() })?;
        b.carry(&l, x);
    }
    let cout = weight.shape()[1];
    let made = single(b.new_group(cout, &label), cout, 1);
    b.tie_slices(&made, w, 1, Role::Output { node: label })?;
    if let Some(bias) = node.input(2) {
        b.tie_slices(&made, bias, 0, Role::Param)?;
    }
    b.set_layout(out, made);
    Ok(())
}

/// The axis of a Gemm bias C that runs along the N outputs, if any.
fn gemm_bias_axis(b: &Builder, node: &Node, n: usize) -> Result<Option<usize>, String> {
    let Some(c) = node.input(2) else { return Ok(None) };
    let t = b.constant(c).ok_or("its bias is not a constant")?;
    match t.shape()[..] {
        [] => Ok(None),
        [k] if k == n => Ok(Some(0)),
        [_] => Ok(None),
        [1, k] if k == n => Ok(Some(1)),
        [1, 1] => Ok(None),
        _ => Err("a 2-D bias per row is not handled".into()),
    }
}

/// Gemm with a constant B: reads features along A's axis 1, makes N neurons.
fn gemm(b: &mut Builder, _: usize, node: &Node) -> Outcome {
    if node.attr_int("transA").unwrap_or(0) != 0 {
        return Err("transA is not handled".into());
    }
    let (x, w, out) = (input(node, 0)?, input(node, 1)?, output(node)?);
    let weight = b.constant(w).ok_or("its B operand is not a constant")?;
    if weight.dims.len() != 2 {
        return Err("its weight is not 2-D".into());
    }
    let (in_axis, out_axis) = if node.attr_int("transB").unwrap_or(0) != 0 { (1, 0) } else { (0, 1) };
    let n = weight.shape()[out_axis];
    let bias_axis = gemm_bias_axis(b, node, n)?;
    let label = node.label();
    if let Some(l) = b.layout(x) {
        if l.axis != 1 {
            return Err(format!("expects features on axis 1, they are on axis {}", l.axis));
        }
        b.tie_slices(&l, w, in_axis, Role::Input { node: label.clone(), input: x.to_string() })?;
        b.carry(&l, x);
    }
    let made = single(b.new_group(n, &label), n, 1);
    b.tie_slices(&made, w, out_axis, Role::Output { node: label })?;
    if let (Some(axis), Some(c)) = (bias_axis, node.input(2)) {
        b.tie_slices(&made, c, axis, Role::Param)?;
    }
    b.set_layout(out, made);
    Ok(())
}

/// MatMul with a constant 2-D right operand: a fully connected layer.
fn matmul(b: &mut Builder, _: usize, node: &Node) -> Outcome {
    let (x, w, out) = (input(node, 0)?, input(node, 1)?, output(node)?);
    if b.constant(x).is_some() {
        return Err("its left operand is a constant".into());
    }
    let weight = b.constant(w).ok_or("both operands are activations")?;
    if weight.dims.len() != 2 {
        return Err("its weight is not 2-D".into());
    }
    let label = node.label();
    if let Some(l) = b.layout(x) {
        let rank = b.shape(x)?.len();
        if l.axis + 1 != rank {
            return Err(format!("expects features on the last axis, they are on axis {}", l.axis));
        }
        b.tie_slices(&l, w, 0, Role::Input { node: label.clone(), input: x.to_string() })?;
        b.carry(&l, x);
    }
    let n = weight.shape()[1];
    let rank = b.shape(out)?.len();
    let made = single(b.new_group(n, &label), n, rank - 1);
    b.tie_slices(&made, w, 1, Role::Output { node: label })?;
    b.set_layout(out, made);
    Ok(())
}

/// BatchNormalization / InstanceNormalization: per-channel parameters.
fn norm(b: &mut Builder, _: usize, node: &Node) -> Outcome {
    let (x, out) = (input(node, 0)?, output(node)?);
    let Some(l) = b.layout(x) else { return Ok(()) };
    channels_on(&l, 1)?;
    only_first_output(node, "training-mode outputs")?;
    let params = if node.op_type == "BatchNormalization" { 4 } else { 2 };
    for slot in 1..=params {
        let role = if slot == 1 { Role::NormScale } else { Role::Param };
        b.tie_slices(&l, input(node, slot)?, 0, role)?;
    }
    b.set_layout(out, l);
    Ok(())
}

/// One input, same shape out; extra inputs (Clip's bounds) must be scalars.
fn unary(b: &mut Builder, _: usize, node: &Node) -> Outcome {
    let (x, out) = (input(node, 0)?, output(node)?);
    for slot in 1..node.inputs.len() {
        let Some(extra) = node.input(slot) else { continue };
        let scalar = b.constant(extra).is_some_and(|t| t.numel() == Some(1));
        if !scalar && node.op_type != "Dropout" {
            return Err(format!("input '{extra}' is not a scalar constant"));
        }
    }
    if let Some(l) = b.layout(x) {
        b.set_layout(out, l);
    }
    Ok(())
}

/// Broadcasting element-wise ops: activations carrying channels share them
/// (groups merge); a constant that varies along the channels is tied to them.
fn elementwise(b: &mut Builder, _: usize, node: &Node) -> Outcome {
    let out = output(node)?;
    let rank = b.shape(out)?.len();
    let mut found: Option<Layout> = None;
    for i in node.inputs.iter().filter(|i| !i.is_empty()) {
        let Some(l) = b.layout(i) else { continue };
        let axis = l.axis + rank - b.shape(i)?.len();
        let l = Layout { axis, segments: l.segments };
        match &found {
            Some(f) if f.axis != axis => return Err("its inputs carry channels on different axes".into()),
            Some(f) => b.unify(f, &l)?,
            None => found = Some(l),
        }
    }
    let l = found.ok_or("no input carries channels")?;
    for i in node.inputs.iter().filter(|i| !i.is_empty()) {
        if b.layout(i).is_some() {
            continue;
        }
        let shape = b.shape(i)?.clone();
        let Some(k) = (l.axis + shape.len()).checked_sub(rank) else { continue };
        match shape[k] {
            1 => {}
            d if d == l.width() && b.constant(i).is_some() => b.tie_slices(&l, i, k, Role::Param)?,
            d if d == l.width() => return Err(format!("'{i}' varies along the channels but its origin is unknown")),
            d => return Err(format!("'{i}' has {d} elements along the channel axis, not {}", l.width())),
        }
    }
    b.set_layout(out, l);
    Ok(())
}

fn pooling(b: &mut Builder, _: usize, node: &Node) -> Outcome {
    let (x, out) = (input(node, 0)?, output(node)?);
    let Some(l) = b.layout(x) else { return Ok(()) };
    channels_on(&l, 1)?;
    only_first_output(node, "pooling indices")?;
    b.set_layout(out, l);
    Ok(())
}

fn pad(b: &mut Builder, _: usize, node: &Node) -> Outcome {
    let (x, out) = (input(node, 0)?, output(node)?);
    let Some(l) = b.layout(x) else { return Ok(()) };
    if node.input(3).is_some() {
        return Err("padding with explicit axes is not handled".into());
    }
    let pads = match node.input(1) {
        Some(p) => b.constant(p).ok_or("its pads are computed at run time")?.to_i64_vec().map_err(|e| e.to_string())?,
        None => node.attr_ints("pads").map(<[i64]>::to_vec).unwrap_or_default(),
    };
    let rank = b.shape(x)?.len();
    if pads.get(l.axis).copied().unwrap_or(0) != 0 || pads.get(l.axis + rank).copied().unwrap_or(0) != 0 {
        return Err("it pads the channel axis".into());
    }
    b.set_layout(out, l);
    Ok(())
}

fn resize(b: &mut Builder, _: usize, node: &Node) -> Outcome {
    let (x, out) = (input(node, 0)?, output(node)?);
    let Some(l) = b.layout(x) else { return Ok(()) };
    if node.op_type == "Resize" && node.input(3).is_some() {
        return Err("explicit output sizes are not handled".into());
    }
    if b.shape(x)?.get(l.axis) != b.shape(out)?.get(l.axis) {
        return Err("it resizes the channel axis".into());
    }
    b.set_layout(out, l);
    Ok(())
}

fn softmax(b: &mut Builder, _: usize, node: &Node) -> Outcome {
    let (x, out) = (input(node, 0)?, output(node)?);
    let Some(l) = b.layout(x) else { return Ok(()) };
    let rank = b.shape(x)?.len();
    let legacy = b.opset < 13;
    let axis = normalize_axis(node.attr_int("axis").unwrap_or(if legacy { 1 } else { -1 }), rank)?;
    if l.axis == axis || (legacy && l.axis > axis) {
        return Err("it normalizes over the channels".into());
    }
    b.set_layout(out, l);
    Ok(())
}

fn reduce(b: &mut Builder, _: usize, node: &Node) -> Outcome {
    let (x, out) = (input(node, 0)?, output(node)?);
    let Some(l) = b.layout(x) else { return Ok(()) };
    let rank = b.shape(x)?.len();
    let axes = match (node.attr_ints("axes"), node.input(1)) {
        (Some(a), _) => a.to_vec(),
        (None, Some(a)) => {
            b.constant(a).ok_or("its axes are computed at run time")?.to_i64_vec().map_err(|e| e.to_string())?
        }
        (None, None) => return Err("it reduces over every axis".into()),
    };
    let axes: Vec<usize> = axes.iter().map(|&a| normalize_axis(a, rank)).collect::<Result<_, _>>()?;
    if axes.contains(&l.axis) {
        return Err("it reduces over the channels".into());
    }
    let keep = node.attr_int("keepdims").unwrap_or(1) != 0;
    let axis = if keep { l.axis } else { l.axis - axes.iter().filter(|&&a| a < l.axis).count() };
    b.set_layout(out, Layout { axis, ..l });
    Ok(())
}

fn layer_norm(b: &mut Builder, _: usize, node: &Node) -> Outcome {
    let (x, out) = (input(node, 0)?, output(node)?);
    let Some(l) = b.layout(x) else { return Ok(()) };
    let rank = b.shape(x)?.len();
    let axis = normalize_axis(node.attr_int("axis").unwrap_or(-1), rank)?;
    if l.axis >= axis {
        return Err("it normalizes over the channels".into());
    }
    only_first_output(node, "mean / inverse deviation outputs")?;
    b.set_layout(out, l);
    Ok(())
}

#[cfg(test)]
mod tests;
