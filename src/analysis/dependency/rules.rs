//! How channels flow through each op type: one rule per op family, in one
//! table. A rule reads its inputs' layouts, sets its outputs' layouts, adds
//! ties and merges groups; an `Err` says why the op's channels cannot be
//! followed, and the builder blocks every group the op reads.

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

fn product(d: &[usize]) -> usize {
    d.iter().product()
}

/// Flatten, Reshape, Squeeze, Unsqueeze: the channel axis either survives
/// whole or absorbs the axes after it (each channel then spans their size).
fn reshape(b: &mut Builder, _: usize, node: &Node) -> Outcome {
    let (x, out) = (input(node, 0)?, output(node)?);
    let Some(l) = b.layout(x) else { return Ok(()) };
    let (sin, sout) = (b.shape(x)?.clone(), b.shape(out)?.clone());
    let c = l.axis;
    let len = *sin.get(c).ok_or("its input has no channel axis")?;
    let (pre, post) = (product(&sin[..c]), product(&sin[c + 1..]));
    let fits = |j: usize, width: usize| {
        product(&sout[..j]) == pre && sout[j] == width && product(&sout[j + 1..]) * width == len * post
    };
    let (j, spread) = if let Some(j) = (0..sout.len()).find(|&j| fits(j, len)) {
        (j, 1)
    } else if let Some(j) = (0..sout.len()).find(|&j| fits(j, len * post)) {
        (j, post)
    } else {
        return channel_shuffle(b, node, &sin, &sout);
    };
    let segments = l.segments.iter().map(|s| Segment { inner: s.inner * spread, ..s.clone() }).collect();
    let moved = Layout { axis: j, segments };
    if node.op_type == "Reshape" {
        let shape_name = input(node, 1)?;
        let target = b.constant(shape_name).ok_or("its target shape is computed at run time")?;
        let target = target.to_i64_vec().map_err(|e| e.to_string())?;
        match target.get(j).copied() {
            Some(-1) => {}
            Some(0) if j == c => {}
            Some(v) if v > 0 && b.users(shape_name) == 1 => {
                b.tie_each(&moved, |_, s| Tie::ShapeDim { constant: shape_name.to_string(), index: j, inner: s.inner })
            }
            Some(v) if v > 0 => return Err(format!("its target shape '{shape_name}' is shared with other nodes")),
            _ => return Err(format!("its target shape {target:?} cannot follow the channels")),
        }
    }
    b.set_layout(out, moved);
    Ok(())
}

/// A channel shuffle (ShuffleNet): Reshape [.., C, ..] → [.., g, C/g, ..], a
/// Transpose swapping those two axes, Reshape back to [.., C, ..]. Position k
/// of run i ends at k·g + i, so the g runs are mirrored (a removal takes the
/// same position from each) and each channel of a run spans g consecutive
/// positions of the result. The layout goes straight to the last Reshape's
/// output (the two tensors between carry none).
fn channel_shuffle(b: &mut Builder, node: &Node, sin: &[usize], sout: &[usize]) -> Outcome {
    let x = input(node, 0)?;
    let c = b.layout(x).ok_or("no channels")?.axis;
    let reshapes = format!("it reshapes the channel axis ({sin:?} -> {sout:?})");
    let splits = node.op_type == "Reshape"
        && sout.len() == sin.len() + 1
        && sout[..c] == sin[..c]
        && sout[c + 2..] == sin[c + 1..]
        && sout[c] * sout[c + 1] == sin[c];
    if !splits {
        return Err(reshapes);
    }
    let runs = sout[c];
    let swapped: Vec<i64> = (0..sout.len())
        .map(|a| match a {
            _ if a == c => c as i64 + 1,
            _ if a == c + 1 => c as i64,
            _ => a as i64,
        })
        .collect();
    let swaps = |t: &&Node| t.op_type == "Transpose" && t.attr_ints("perm") == Some(&swapped[..]);
    let not_shuffle = || format!("{reshapes}, and no Transpose and Reshape after it shuffle the channels back");
    let swap = b.sole_reader(output(node)?).filter(swaps).ok_or_else(not_shuffle)?;
    let merge = b.sole_reader(output(swap)?).filter(|m| m.op_type == "Reshape").ok_or_else(not_shuffle)?;
    let merged = output(merge)?;
    if b.shape(merged)?.as_slice() != sin {
        return Err(not_shuffle());
    }
    // Shape constants: the run length (split) and the channel count (merge) shrink.
    let split_shape = target_shape(b, node)?;
    if split_shape.get(c) != Some(&(runs as i64)) && split_shape.get(c) != Some(&-1) {
        return Err(format!("its target shape {split_shape:?} does not split off {runs} runs"));
    }
    let run_len = *split_shape.get(c + 1).ok_or("its target shape is too short")?;
    let merge_len = *target_shape(b, merge)?.get(c).ok_or("the shuffle's last target shape is too short")?;
    if run_len == 0 || merge_len == 0 || run_len < -1 || merge_len < -1 {
        return Err("the shuffle's target shapes copy the channel count".into());
    }
    let shapes = [(input(node, 1)?, run_len), (input(merge, 1)?, merge_len)];
    for (name, len) in &shapes {
        if *len > 0 && b.users(name) != 1 {
            return Err(format!("its target shape '{name}' is shared with other nodes"));
        }
    }
    let run = b.mirror(x, runs)?;
    let shuffled = Layout {
        axis: c,
        segments: run.segments.iter().map(|s| Segment { inner: s.inner * runs, ..s.clone() }).collect(),
    };
    for ((name, len), (layout, index)) in shapes.iter().zip([(&run, c + 1), (&shuffled, c)]) {
        if *len > 0 {
            b.tie_each(layout, |_, s| Tie::ShapeDim { constant: name.to_string(), index, inner: s.inner });
        }
    }
    b.set_layout(merged, shuffled);
    Ok(())
}

/// A Reshape's constant target shape.
fn target_shape(b: &Builder, node: &Node) -> Result<Vec<i64>, String> {
    let name = input(node, 1)?;
    b.constant(name).ok_or("its target shape is computed at run time")?.to_i64_vec().map_err(|e| e.to_string())
}

fn transpose(b: &mut Builder, _: usize, node: &Node) -> Outcome {
    let (x, out) = (input(node, 0)?, output(node)?);
    let Some(l) = b.layout(x) else { return Ok(()) };
    let rank = b.shape(x)?.len();
    let perm: Vec<usize> = match node.attr_ints("perm") {
        Some(p) => p.iter().map(|&a| a as usize).collect(),
        None => (0..rank).rev().collect(),
    };
    let axis = perm.iter().position(|&a| a == l.axis).ok_or("its permutation drops the channel axis")?;
    b.set_layout(out, Layout { axis, ..l });
    Ok(())
}

/// Concat along the channels lays its inputs' channels side by side; along
/// another axis, the inputs share their channels.
fn concat(b: &mut Builder, _: usize, node: &Node) -> Outcome {
    let out = output(node)?;
    let rank = b.shape(out)?.len();
    let axis = normalize_axis(node.attr_int("axis").ok_or("no axis")?, rank)?;
    let inputs: Vec<&String> = node.inputs.iter().filter(|i| !i.is_empty()).collect();
    let channel_axis = inputs.iter().find_map(|i| b.layout(i)).map(|l| l.axis).ok_or("no input carries channels")?;
    if inputs.iter().filter_map(|i| b.layout(i)).any(|l| l.axis != channel_axis) {
        return Err("its inputs carry channels on different axes".into());
    }
    if axis == channel_axis {
        let mut segments = vec![];
        for i in &inputs {
            match b.layout(i) {
                Some(l) => segments.extend(l.segments),
                None => segments.push(Segment { group: None, channels: b.shape(i)?[axis], inner: 1 }),
            }
        }
        b.set_layout(out, Layout { axis, segments });
        return Ok(());
    }
    let first = inputs.iter().find_map(|i| b.layout(i)).expect("checked above");
    for i in &inputs {
        match b.layout(i) {
            Some(l) => b.unify(&first, &l)?,
            None if b.constant(i).is_some() => b.tie_slices(&first, i, channel_axis, Role::Param)?,
            None => return Err(format!("'{i}' has the same channels but its origin is unknown")),
        }
    }
    b.set_layout(out, first);
    Ok(())
}

/// Elements along the axis of the group channels before `end` each tie counts
/// (a split size or slice bound shrinks by the channels removed before it).
fn tie_count_before(b: &mut Builder, l: &Layout, start: usize, end: usize, constant: &str, index: usize) {
    let before = l.between(start, end);
    b.tie_each(&before, |_, s| Tie::ShapeDim { constant: constant.to_string(), index, inner: s.inner });
}

/// A constant of integers read by exactly this node (so it may be rewritten).
fn own_ints(b: &Builder, name: &str) -> Result<Vec<i64>, String> {
    if b.users(name) != 1 {
        return Err(format!("'{name}' is shared with other nodes"));
    }
    b.constant(name).ok_or(format!("'{name}' is computed at run time"))?.to_i64_vec().map_err(|e| e.to_string())
}

/// Split: along another axis every output keeps the channels; along the
/// channels each output takes its run of them (groups are cut at the split
/// points) and the split sizes shrink with what is removed.
fn split(b: &mut Builder, _: usize, node: &Node) -> Outcome {
    let x = input(node, 0)?;
    let Some(l) = b.layout(x) else { return Ok(()) };
    let rank = b.shape(x)?.len();
    let axis = normalize_axis(node.attr_int("axis").unwrap_or(0), rank)?;
    let outputs: Vec<&String> = node.outputs.iter().filter(|o| !o.is_empty()).collect();
    if axis != l.axis {
        outputs.iter().for_each(|o| b.set_layout(o, l.clone()));
        return Ok(());
    }
    let sizes_name = node.input(1).ok_or("its split sizes are implicit (an equal split cannot follow pruning)")?;
    if own_ints(b, sizes_name)?.len() != node.outputs.len() {
        return Err("its split sizes do not match its outputs".into());
    }
    let widths: Vec<usize> = node.outputs.iter().map(|o| b.shape(o).map(|s| s[axis])).collect::<Result<_, _>>()?;
    let ends: Vec<usize> = widths
        .iter()
        .scan(0, |at, w| {
            *at += w;
            Some(*at)
        })
        .collect();
    let l = b.cut_at(x, &ends)?;
    let mut start = 0;
    for (k, (out, end)) in node.outputs.iter().zip(&ends).enumerate() {
        tie_count_before(b, &l, start, *end, sizes_name, k);
        if !out.is_empty() {
            b.set_layout(out, l.between(start, *end));
        }
        start = *end;
    }
    Ok(())
}

/// Slice: along another axis the channels stay whole; along the channels
/// (constant bounds, step 1) the output takes a run of them and the bounds
/// move down by what is removed before them.
fn slice(b: &mut Builder, _: usize, node: &Node) -> Outcome {
    let (x, out) = (input(node, 0)?, output(node)?);
    let Some(l) = b.layout(x) else { return Ok(()) };
    let shape = b.shape(x)?.clone();
    if b.shape(out)?.len() != shape.len() {
        return Err("it changes the rank".into());
    }
    if b.shape(out)?[l.axis] == shape[l.axis] {
        b.set_layout(out, l);
        return Ok(());
    }
    if node.input(1).is_none() {
        return Err("its bounds are attributes (opset < 10)".into());
    }
    let (starts_name, ends_name) = (input(node, 1)?, input(node, 2)?);
    let (starts, ends) = (own_ints(b, starts_name)?, own_ints(b, ends_name)?);
    let axes = match node.input(3) {
        Some(a) => b.constant(a).ok_or("its axes are computed at run time")?.to_i64_vec().map_err(|e| e.to_string())?,
        None => (0..starts.len() as i64).collect(),
    };
    let k = axes
        .iter()
        .map(|&a| normalize_axis(a, shape.len()))
        .collect::<Result<Vec<_>, _>>()?
        .iter()
        .position(|&a| a == l.axis)
        .ok_or("it cuts the channels without saying so")?;
    if let Some(steps) = node.input(4) {
        if b.constant(steps).ok_or("its steps are computed at run time")?.to_i64_vec().map_err(|e| e.to_string())?[k]
            != 1
        {
            return Err("it steps through the channels".into());
        }
    }
    let len = l.width() as i64;
    let (start, end) = (starts[k], ends[k]);
    if start < 0 || end < 0 {
        return Err("negative bounds along the channels are not handled".into());
    }
    let (start, end) = (start.min(len) as usize, end.min(len) as usize);
    let l = b.cut_at(x, &[start, end])?;
    tie_count_before(b, &l, 0, start, starts_name, k);
    if (ends[k]) < len {
        tie_count_before(b, &l, 0, end, ends_name, k);
    }
    b.set_layout(out, l.between(start, end.max(start)));
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
mod tests {
    use super::super::{build::build, DependencyGraph, Role, Tie};
    use crate::analysis::infer_shapes;
    use crate::ir::testing::{int, ints, model, node, tensor, wavy};
    use crate::ir::{Model, Node, Tensor};

    /// A Conv of `cin → cout` channels, 3×3 padded, named after its output.
    fn conv(x: &str, y: &str, cin: usize, cout: usize, inits: &mut Vec<Tensor>) -> Node {
        inits.push(tensor(&format!("{y}.w"), &[cout, cin, 3, 3], wavy));
        inits.push(tensor(&format!("{y}.b"), &[cout], wavy));
        node("Conv", &[x, &format!("{y}.w"), &format!("{y}.b")], y, &[("pads", ints(&[1, 1, 1, 1]))])
    }

    fn graph_of(m: &Model) -> DependencyGraph {
        let shapes = infer_shapes(m, &[("x".to_string(), vec![1, 3, 4, 4])].into()).expect("shapes");
        build(m, &shapes).expect("dependency graph")
    }

    /// The group whose channels the Conv writing `output` makes.
    fn group<'a>(d: &'a DependencyGraph, output: &str) -> &'a super::super::Group {
        let layer = format!("{output}_Conv");
        d.groups.iter().find(|g| g.sources.contains(&layer)).expect("a group made by the layer")
    }

    fn sliced(g: &super::super::Group) -> Vec<(&str, usize, usize, usize)> {
        let mut v: Vec<_> = g
            .ties
            .iter()
            .filter_map(|t| match t {
                Tie::Slice { constant, axis, offset, inner, .. } => Some((constant.as_str(), *axis, *offset, *inner)),
                _ => None,
            })
            .collect();
        v.sort();
        v
    }

    #[test]
    fn conv_batchnorm_relu_conv_ties_every_slice_of_the_channel() {
        let mut inits = vec![];
        let mut nodes = vec![conv("x", "a", 3, 4, &mut inits)];
        for p in ["gamma", "beta", "mean", "var"] {
            inits.push(tensor(p, &[4], |i| 1.0 + i as f32));
        }
        nodes.push(node("BatchNormalization", &["a", "gamma", "beta", "mean", "var"], "n", &[]));
        nodes.push(node("Relu", &["n"], "r", &[]));
        nodes.push(conv("r", "y", 4, 2, &mut inits));
        let d = graph_of(&model(nodes, inits, &[1, 3, 4, 4], &["y"], 13));
        let g = group(&d, "a");
        assert!(g.prunable(), "{:?}", g.blocked);
        assert_eq!(g.channels, 4);
        let want = [("a.b", 0, 0, 1), ("a.w", 0, 0, 1), ("beta", 0, 0, 1), ("gamma", 0, 0, 1)];
        assert_eq!(sliced(g)[..4], want);
        assert!(sliced(g).contains(&("y.w", 1, 0, 1)), "the next conv's input slice");
        let scales = g.ties.iter().filter(|t| matches!(t, Tie::Slice { role: Role::NormScale, .. })).count();
        assert_eq!(scales, 1);
        assert!(!group(&d, "y").prunable(), "the model's output channels stay");
    }

    #[test]
    fn a_residual_add_merges_both_branches_into_one_group() {
        let mut inits = vec![];
        let nodes = vec![
            conv("x", "a", 3, 4, &mut inits),
            node("Relu", &["a"], "r", &[]),
            conv("r", "b", 4, 4, &mut inits),
            node("Add", &["r", "b"], "s", &[]),
            conv("s", "y", 4, 2, &mut inits),
        ];
        let d = graph_of(&model(nodes, inits, &[1, 3, 4, 4], &["y"], 13));
        let g = group(&d, "a");
        assert!(g.sources.contains(&"b_Conv".to_string()), "b's channels are a's: {:?}", g.sources);
        assert!(g.prunable());
        // b reads a's channels and makes them again: both its input and output slices go.
        assert!(sliced(g).contains(&("b.w", 0, 0, 1)) && sliced(g).contains(&("b.w", 1, 0, 1)));
    }

    #[test]
    fn concat_and_flatten_place_each_group_at_its_offset_and_stride() {
        let mut inits = vec![tensor("fc", &[(4 + 2) * 16, 5], wavy)];
        let nodes = vec![
            conv("x", "a", 3, 4, &mut inits),
            conv("x", "b", 3, 2, &mut inits),
            node("Concat", &["a", "b"], "c", &[("axis", int(1))]),
            node("Flatten", &["c"], "f", &[("axis", int(1))]),
            node("MatMul", &["f", "fc"], "y", &[]),
        ];
        let d = graph_of(&model(nodes, inits, &[1, 3, 4, 4], &["y"], 13));
        // Channel c of `a` is rows 16c..16c+16 of fc; `b`'s start after a's 4 × 16.
        assert!(sliced(group(&d, "a")).contains(&("fc", 0, 0, 16)), "{:?}", sliced(group(&d, "a")));
        assert!(sliced(group(&d, "b")).contains(&("fc", 0, 64, 16)), "{:?}", sliced(group(&d, "b")));
        assert!(group(&d, "a").prunable() && group(&d, "b").prunable());
    }

    #[test]
    fn a_depthwise_conv_passes_channels_and_counts_them_in_its_group_attribute() {
        let mut inits = vec![tensor("dw.w", &[4, 1, 3, 3], wavy)];
        let nodes = vec![
            conv("x", "a", 3, 4, &mut inits),
            node("Conv", &["a", "dw.w"], "dw", &[("group", int(4)), ("pads", ints(&[1, 1, 1, 1]))]),
            conv("dw", "y", 4, 2, &mut inits),
        ];
        let d = graph_of(&model(nodes, inits, &[1, 3, 4, 4], &["y"], 13));
        let g = group(&d, "a");
        assert!(g.prunable(), "{:?}", g.blocked);
        assert!(g.ties.iter().any(|t| matches!(t, Tie::ConvGroups { node: 1, inner: 1 })));
        assert!(sliced(g).contains(&("dw.w", 0, 0, 1)) && sliced(g).contains(&("y.w", 1, 0, 1)));
    }

    /// ResNeXt-style: a Conv with 2 groups reads `a`'s 4 channels in two
    /// mirrored runs (with the same weight columns) and makes 4 channels in two runs, joined by a residual Add
    /// to a plain Conv's (the merged group keeps both runs).
    #[test]
    fn a_grouped_conv_reads_mirrored_runs_and_makes_channels_in_equal_runs() {
        let mut inits = vec![tensor("g.w", &[4, 2, 3, 3], wavy)];
        let nodes = vec![
            conv("x", "a", 3, 4, &mut inits),
            node("Conv", &["a", "g.w"], "g", &[("group", int(2)), ("pads", ints(&[1, 1, 1, 1]))]),
            conv("x", "b", 3, 4, &mut inits),
            node("Add", &["g", "b"], "s", &[]),
            conv("s", "y", 4, 2, &mut inits),
        ];
        let d = graph_of(&model(nodes, inits, &[1, 3, 4, 4], &["y"], 13));
        let a = group(&d, "a");
        assert!(a.prunable(), "{:?}", a.blocked);
        assert_eq!(a.channels, 2, "channel k of each run goes with the other run's");
        assert_eq!(sliced(a)[..3], [("a.b", 0, 0, 1), ("a.b", 0, 2, 1), ("a.w", 0, 0, 1)]);
        assert!(sliced(a).contains(&("a.w", 0, 2, 1)) && sliced(a).contains(&("g.w", 1, 0, 1)), "{:?}", sliced(a));
        let g = d.groups.iter().find(|g| g.sources.contains(&"g_Conv".to_string())).expect("the grouped conv's group");
        assert!(g.prunable(), "{:?}", g.blocked);
        assert_eq!((g.channels, g.blocks), (4, 2));
        assert!(g.sources.contains(&"b_Conv".to_string()), "{:?}", g.sources);
        assert!(sliced(g).contains(&("g.w", 0, 0, 1)) && sliced(g).contains(&("y.w", 1, 0, 1)));
        assert!(!sliced(g).iter().any(|t| t.0 == "g.w" && t.1 == 1), "its input slices are a's");
    }

    fn shape_constant(name: &str, v: &[i64]) -> Tensor {
        Tensor::from_array(name, &ndarray::arr1(v).into_dyn())
    }

    /// `source`'s output through ShuffleNet's shuffle of `runs` runs into `y`.
    fn shuffled(source: Node, channels: usize, runs: i64, mut inits: Vec<Tensor>) -> Model {
        let c = channels as i64;
        inits.push(shape_constant("split", &[0, runs, c / runs, 4, 4]));
        inits.push(shape_constant("merge", &[0, c, -1, 4]));
        let nodes = vec![
            source,
            node("Reshape", &["a", "split"], "s", &[]),
            node("Transpose", &["s"], "t", &[("perm", ints(&[0, 2, 1, 3, 4]))]),
            node("Reshape", &["t", "merge"], "m", &[]),
            conv("m", "y", channels, 2, &mut inits),
        ];
        model(nodes, inits, &[1, 3, 4, 4], &["y"], 13)
    }

    fn shape_ties(g: &super::super::Group) -> Vec<(&str, usize, usize)> {
        let mut v: Vec<_> = g
            .ties
            .iter()
            .filter_map(|t| match t {
                Tie::ShapeDim { constant, index, inner } => Some((constant.as_str(), *index, *inner)),
                _ => None,
            })
            .collect();
        v.sort();
        v
    }

    #[test]
    fn a_channel_shuffle_mirrors_its_runs_and_spreads_each_channel_over_them() {
        let mut inits = vec![];
        let a = conv("x", "a", 3, 8, &mut inits);
        let d = graph_of(&shuffled(a, 8, 2, inits));
        let g = group(&d, "a");
        assert!(g.prunable(), "{:?}", g.blocked);
        assert_eq!(g.channels, 4, "channel k of run 0 goes with channel k of run 1");
        let ties = sliced(g);
        assert!(ties.contains(&("a.w", 0, 0, 1)) && ties.contains(&("a.w", 0, 4, 1)), "{ties:?}");
        assert!(ties.contains(&("y.w", 1, 0, 2)), "after the shuffle they sit side by side: {ties:?}");
        assert_eq!(shape_ties(g), [("merge", 1, 2), ("split", 2, 1)]);
        assert!(d.layouts.get("m").is_some_and(|l| l.segments[0].inner == 2));
    }

    #[test]
    fn a_shuffle_after_a_grouped_conv_takes_one_filter_from_each_of_its_groups() {
        let inits = vec![tensor("a.w", &[6, 1, 3, 3], wavy)];
        let a = node("Conv", &["x", "a.w"], "a", &[("group", int(3)), ("pads", ints(&[1, 1, 1, 1]))]);
        let d = graph_of(&shuffled(a, 6, 3, inits));
        let g = group(&d, "a");
        assert!(g.prunable(), "{:?}", g.blocked);
        assert_eq!((g.channels, g.blocks), (2, 1), "each channel is one filter of each of the 3 groups");
        let ties = sliced(g);
        assert!([0, 2, 4].iter().all(|&o| ties.contains(&("a.w", 0, o, 1))), "{ties:?}");
        assert!(ties.contains(&("y.w", 1, 0, 3)), "{ties:?}");
    }

    #[test]
    fn a_reshape_that_only_splits_the_channels_still_blocks_them() {
        let mut inits = vec![shape_constant("split", &[0, 2, 4, 4, 4])];
        let nodes = vec![
            conv("x", "a", 3, 8, &mut inits),
            node("Reshape", &["a", "split"], "s", &[]),
            node("ReduceMean", &["s"], "y", &[("axes", ints(&[1])), ("keepdims", int(0))]),
        ];
        let d = graph_of(&model(nodes, inits, &[1, 3, 4, 4], &["y"], 13));
        let g = group(&d, "a");
        assert!(g.blocked.iter().any(|b| b.contains("no Transpose and Reshape after it shuffle")), "{:?}", g.blocked);
    }

    #[test]
    fn an_op_without_a_rule_blocks_the_channels_it_reads_and_says_which() {
        let mut inits = vec![];
        let nodes = vec![
            conv("x", "a", 3, 4, &mut inits),
            node("Hardmax", &["a"], "h", &[("axis", int(1))]),
            conv("h", "y", 4, 2, &mut inits),
        ];
        let d = graph_of(&model(nodes, inits, &[1, 3, 4, 4], &["y"], 13));
        let g = group(&d, "a");
        assert!(!g.prunable());
        assert!(g.blocked.iter().any(|b| b.contains("Hardmax") && b.contains("not understood")), "{:?}", g.blocked);
    }

    /// Squeeze-excitation (ReduceMean → Conv → HardSigmoid → Mul), then a
    /// channels-last Transpose, a Softmax along width and a MatMul head.
    fn se_then_channels_last(softmax_axis: i64) -> Model {
        let mut inits = vec![tensor("head", &[4, 5], wavy)];
        let nodes = vec![
            conv("x", "a", 3, 4, &mut inits),
            node("ReduceMean", &["a"], "m", &[("axes", ints(&[2, 3])), ("keepdims", int(1))]),
            conv("m", "s", 4, 4, &mut inits),
            node("HardSigmoid", &["s"], "h", &[]),
            node("Mul", &["a", "h"], "e", &[]),
            node("Transpose", &["e"], "t", &[("perm", ints(&[0, 2, 3, 1]))]),
            node("Softmax", &["t"], "p", &[("axis", int(softmax_axis))]),
            node("MatMul", &["p", "head"], "y", &[]),
        ];
        model(nodes, inits, &[1, 3, 4, 4], &["y"], 13)
    }

    #[test]
    fn squeeze_excitation_and_a_channels_last_head_keep_one_group() {
        let d = graph_of(&se_then_channels_last(2));
        let g = group(&d, "a");
        assert!(g.prunable(), "{:?}", g.blocked);
        assert!(g.sources.contains(&"s_Conv".to_string()), "the excitation's channels are a's: {:?}", g.sources);
        let ties = sliced(g);
        assert!(ties.contains(&("s.w", 1, 0, 1)), "the excitation reads the pooled channels: {ties:?}");
        assert!(ties.contains(&("head", 0, 0, 1)), "the head's rows, channels last after the Transpose: {ties:?}");
    }

    #[test]
    fn a_softmax_over_the_channels_blocks_them() {
        let d = graph_of(&se_then_channels_last(-1));
        let g = group(&d, "a");
        assert!(g.blocked.iter().any(|b| b.contains("normalizes over the channels")), "{:?}", g.blocked);
    }
}
