//! The rules of ops that move channels without arithmetic: reshapes (channel shuffles among
//! them), transposes, concatenation, splits and slices.

use super::*;

pub(super) fn product(d: &[usize]) -> usize {
    d.iter().product()
}

/// Flatten, Reshape, Squeeze, Unsqueeze: the channel axis either survives
/// whole or absorbs the axes after it (each channel then spans their size).
pub(super) fn reshape(b: &mut Builder, _: usize, node: &Node) -> Outcome {
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
pub(super) fn channel_shuffle(b: &mut Builder, node: &Node, sin: &[usize], sout: &[usize]) -> Outcome {
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
pub(super) fn target_shape(b: &Builder, node: &Node) -> Result<Vec<i64>, String> {
    let name = input(node, 1)?;
    b.constant(name).ok_or("its target shape is computed at run time")?.to_i64_vec().map_err(|e| e.to_string())
}

pub(super) fn transpose(b: &mut Builder, _: usize, node: &Node) -> Outcome {
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
pub(super) fn concat(b: &mut Builder, _: usize, node: &Node) -> Outcome {
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
pub(super) fn tie_count_before(b: &mut Builder, l: &Layout, start: usize, end: usize, constant: &str, index: usize) {
    let before = l.between(start, end);
    b.tie_each(&before, |_, s| Tie::ShapeDim { constant: constant.to_string(), index, inner: s.inner });
}

/// A constant of integers read by exactly this node (so it may be rewritten).
pub(super) fn own_ints(b: &Builder, name: &str) -> Result<Vec<i64>, String> {
    if b.users(name) != 1 {
        return Err(format!("'{name}' is shared with other nodes"));
    }
    b.constant(name).ok_or(format!("'{name}' is computed at run time"))?.to_i64_vec().map_err(|e| e.to_string())
}

/// Split: along another axis every output keeps the channels; along the
/// channels each output takes its run of them (groups are cut at the split
/// points) and the split sizes shrink with what is removed.
pub(super) fn split(b: &mut Builder, _: usize, node: &Node) -> Outcome {
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
pub(super) fn slice(b: &mut Builder, _: usize, node: &Node) -> Outcome {
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
