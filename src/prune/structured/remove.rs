//! Physical removal: every tied constant is sliced, shape constants and
//! depthwise group counts shrink, declared shapes follow. Also what removal
//! would cost, without doing it (for target searches).

use crate::analysis::dependency::{DependencyGraph, Tie};
use crate::analysis::node_macs;
use crate::ir::{AttrValue, Dim, Model, Tensor};
use crate::{Error, Result};
use std::collections::{BTreeMap, BTreeSet};

/// Channels to remove, per group id (sorted, distinct).
pub type Plan = BTreeMap<usize, Vec<usize>>;
type Shapes = BTreeMap<String, Vec<usize>>;

/// Positions to cut along each (constant, axis), from every tie of every planned group.
fn cuts(deps: &DependencyGraph, plan: &Plan) -> BTreeMap<(String, usize), BTreeSet<usize>> {
    let mut out: BTreeMap<(String, usize), BTreeSet<usize>> = BTreeMap::new();
    for (&g, removed) in plan {
        for tie in &deps.groups[g].ties {
            if let Tie::Slice { constant, axis, offset, inner, .. } = tie {
                let set = out.entry((constant.clone(), *axis)).or_default();
                set.extend(removed.iter().flat_map(|c| (0..*inner).map(move |j| offset + c * inner + j)));
            }
        }
    }
    out
}

/// How much a tensor's channel axis shrinks under `plan`.
fn shrink(deps: &DependencyGraph, plan: &Plan, tensor: &str) -> Option<(usize, usize)> {
    let l = deps.layouts.get(tensor)?;
    let gone = l.segments.iter().filter_map(|s| Some(plan.get(&s.group?)?.len() * s.inner)).sum::<usize>();
    Some((l.axis, gone))
}

/// Every tensor's shape after `plan` (activations and constants).
pub fn shapes_after(shapes: &Shapes, deps: &DependencyGraph, plan: &Plan) -> Shapes {
    let mut out = shapes.clone();
    for (name, dims) in out.iter_mut() {
        if let Some((axis, gone)) = shrink(deps, plan, name) {
            if let Some(d) = dims.get_mut(axis) {
                *d = d.saturating_sub(gone);
            }
        }
    }
    for ((constant, axis), set) in cuts(deps, plan) {
        if let Some(d) = out.get_mut(&constant).and_then(|dims| dims.get_mut(axis)) {
            *d = d.saturating_sub(set.len());
        }
    }
    out
}

/// MACs and float parameters of `model` with the given tensor shapes.
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize)]
pub struct Cost {
    /// Multiply-accumulates of one run.
    pub macs: u64,
    /// Float parameters.
    pub params: u64,
}

/// Counts MACs and parameters of one model for any set of shapes.
pub struct Costing<'a> {
    model: &'a Model,
    /// Names of the float constants (the parameters).
    floats: Vec<String>,
}

impl<'a> Costing<'a> {
    pub fn new(model: &'a Model) -> Costing<'a> {
        let g = &model.graph;
        let floats = g
            .constant_names()
            .into_iter()
            .filter(|c| g.constant(c).and_then(|t| t.ok()).is_some_and(|t| t.dtype.is_float()))
            .collect();
        Costing { model, floats }
    }

    pub fn cost(&self, shapes: &Shapes) -> Cost {
        let macs = self.model.graph.nodes.iter().filter_map(|n| node_macs(n, shapes)).sum();
        let params = self.floats.iter().filter_map(|c| shapes.get(c)).map(|d| d.iter().product::<usize>() as u64).sum();
        Cost { macs, params }
    }
}

/// Removes the planned channels from `model` (analysed as `deps`).
pub fn remove_channels(model: &mut Model, deps: &DependencyGraph, plan: &Plan) -> Result<()> {
    let g = &mut model.graph;
    for ((constant, axis), set) in cuts(deps, plan) {
        let t = g.constant(&constant).ok_or_else(|| Error::Model(format!("'{constant}' is not a constant")))??;
        g.set_constant(&constant, drop_along(&t, axis, &set)?)?;
    }
    let mut dims: BTreeMap<(String, usize), usize> = BTreeMap::new();
    let mut groups: BTreeMap<usize, usize> = BTreeMap::new();
    for (&grp, removed) in plan {
        for tie in &deps.groups[grp].ties {
            match tie {
                Tie::ShapeDim { constant, index, inner } => {
                    *dims.entry((constant.clone(), *index)).or_default() += removed.len() * inner
                }
                Tie::ConvGroups { node, inner } => *groups.entry(*node).or_default() += removed.len() * inner,
                Tie::Slice { .. } => {}
            }
        }
    }
    for ((constant, index), gone) in dims {
        let t = g.constant(&constant).ok_or_else(|| Error::Model(format!("'{constant}' is not a constant")))??;
        let mut v = t.to_i64_vec()?;
        v[index] -= gone as i64;
        let shape = ndarray::ArrayD::from_shape_vec(t.shape(), v).map_err(|e| Error::Model(e.to_string()))?;
        let new = match t.dtype {
            crate::ir::DataType::INT32 => Tensor::from_array(&constant, &shape.mapv(|x| x as i32)),
            _ => Tensor::from_array(&constant, &shape),
        };
        g.set_constant(&constant, new)?;
    }
    for (node, gone) in groups {
        let n = &mut g.nodes[node];
        let left = n.attr_int("group").unwrap_or(1) - gone as i64;
        if let Some(a) = n.attributes.iter_mut().find(|a| a.name == "group") {
            a.value = AttrValue::Int(left);
        }
    }
    for vi in g.value_info.iter_mut() {
        let Some((axis, gone)) = shrink(deps, plan, &vi.name) else { continue };
        if gone > 0 {
            resize_declared(vi, axis, gone);
        }
    }
    Ok(())
}

/// Shrinks a declared fixed dimension (symbolic ones stay as they are).
fn resize_declared(vi: &mut crate::ir::ValueInfo, axis: usize, gone: usize) {
    if let Some(Dim::Fixed(n)) = vi.shape().and_then(|s| s.get(axis).cloned()) {
        vi.set_dim(axis, Dim::Fixed(n - gone as i64));
    }
}

/// `t` without the positions `gone` along `axis` (any byte-sized element type).
fn drop_along(t: &Tensor, axis: usize, gone: &BTreeSet<usize>) -> Result<Tensor> {
    let bad = |why: &str| Error::Model(format!("cannot slice constant '{}': {why}", t.name));
    t.check()?;
    let size = t.dtype.bits().filter(|b| b % 8 == 0).ok_or_else(|| bad("sub-byte element type"))? / 8;
    let bytes = t.bytes().ok_or_else(|| bad("not numeric"))?;
    let shape = t.shape();
    let len = *shape.get(axis).ok_or_else(|| bad("no such axis"))?;
    if gone.iter().any(|&i| i >= len) {
        return Err(bad("a removed channel is out of range"));
    }
    let outer: usize = shape[..axis].iter().product();
    let inner: usize = shape[axis + 1..].iter().product::<usize>() * size;
    let mut out = Vec::with_capacity(bytes.len() / len.max(1) * (len - gone.len()));
    for o in 0..outer {
        for i in (0..len).filter(|i| !gone.contains(i)) {
            let at = (o * len + i) * inner;
            out.extend_from_slice(&bytes[at..at + inner]);
        }
    }
    let mut dims = t.dims.clone();
    dims[axis] -= gone.len() as i64;
    let mut new = Tensor::from_bytes(t.name.clone(), t.dtype, dims, out.into());
    new.doc_string = t.doc_string.clone();
    new.metadata_props = t.metadata_props.clone();
    Ok(new)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{ArrayD, IxDyn};

    #[test]
    fn dropping_keeps_the_other_positions_in_order() {
        let a = ArrayD::from_shape_vec(IxDyn(&[2, 3, 2]), (0..12).map(|v| v as f32).collect()).unwrap();
        let t = Tensor::from_array("w", &a);
        let out = drop_along(&t, 1, &BTreeSet::from([1])).unwrap().to_f32().unwrap();
        assert_eq!(out.shape(), &[2, 2, 2]);
        assert_eq!(out.iter().copied().collect::<Vec<_>>(), vec![0., 1., 4., 5., 6., 7., 10., 11.]);
    }
}
