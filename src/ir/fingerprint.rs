//! A model's content as one number: equal models (same graph, same constant
//! bytes) give the same fingerprint within a process, so a measurement made on
//! one can be reused for the other (see `quant::memo`). Not stable across
//! versions; never written anywhere.

use super::{AttrValue, Graph, Model, Node, Tensor, TensorData};
use std::hash::{BuildHasher, Hash, Hasher};

/// Hashes everything a runtime would see of `model`: the graph's nodes, its
/// declared inputs and outputs, its constants' names, types, dims and bytes
/// (initializers and `Constant` nodes' tensors alike), and the opsets.
pub fn fingerprint(model: &Model) -> u64 {
    // foldhash rather than SipHash, and constants hashed as bytes rather than as their Debug
    // text: ppocr_rec_v4 keeps its weights in 420 `Constant` nodes, and formatting them took
    // 0.1 s a fingerprint (five in a default static run); minilm_l6's 86 MB took 57 ms.
    let mut h = foldhash::quality::FixedState::with_seed(0).build_hasher();
    format!("{:?}", model.opset_import).hash(&mut h);
    graph(&model.graph, &mut h);
    h.finish()
}

fn graph(g: &Graph, h: &mut impl Hasher) {
    format!("{:?}|{:?}", g.inputs, g.outputs).hash(h);
    g.nodes.len().hash(h);
    for n in &g.nodes {
        node(n, h);
    }
    g.initializers.len().hash(h);
    for t in &g.initializers {
        tensor(t, h);
    }
}

/// A node's fields, its tensors' and subgraphs' attributes hashed as such, the rest as text.
fn node(n: &Node, h: &mut impl Hasher) {
    (&n.name, &n.op_type, &n.domain, &n.overload, &n.inputs, &n.outputs, &n.doc_string, &n.metadata_props).hash(h);
    format!("{:?}", n.device_configurations).hash(h);
    n.attributes.len().hash(h);
    for a in &n.attributes {
        (&a.name, &a.doc_string, &a.ref_attr_name).hash(h);
        match &a.value {
            AttrValue::Tensor(t) => tensor(t, h),
            AttrValue::Tensors(ts) => ts.iter().for_each(|t| tensor(t, h)),
            AttrValue::Graph(g) => graph(g, h),
            AttrValue::Graphs(gs) => gs.iter().for_each(|g| graph(g, h)),
            other => format!("{other:?}").hash(h),
        }
    }
}

/// Hashes a tensor's name, type, dims and values (not how the file stores it).
fn tensor(t: &Tensor, h: &mut impl Hasher) {
    (&t.name, t.dtype.0, &t.dims).hash(h);
    match &t.data {
        TensorData::Bytes(b) => b.as_ref().hash(h),
        TensorData::Strings(s) => s.hash(h),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::testing;

    #[test]
    fn a_changed_weight_changes_the_fingerprint_and_a_copy_does_not() {
        let conv = testing::node("Conv", &["x", "w"], "y", &[]);
        let model = testing::model(
            vec![conv],
            vec![testing::tensor("w", &[2, 1, 1, 1], testing::wavy)],
            &[1, 1, 2, 2],
            &["y"],
            13,
        );
        let copy = model.clone();
        assert_eq!(fingerprint(&model), fingerprint(&copy));
        let mut changed = model.clone();
        let w = &mut changed.graph.initializers[0];
        let mut bytes = w.bytes().unwrap().to_vec();
        bytes[0] ^= 1;
        w.data = TensorData::Bytes(bytes.into());
        assert_ne!(fingerprint(&model), fingerprint(&changed));
        // A weight held by a Constant node counts as much as an initializer.
        let constant = |v: f32| {
            let value = crate::ir::Tensor::from_array("c", &ndarray::arr1(&[v]).into_dyn());
            let node = crate::ir::Node {
                attributes: vec![crate::ir::Attribute::new("value", AttrValue::Tensor(Box::new(value)))],
                ..testing::node("Constant", &[], "c", &[])
            };
            testing::model(vec![node, testing::node("Add", &["x", "c"], "y", &[])], vec![], &[1, 2], &["y"], 13)
        };
        assert_eq!(fingerprint(&constant(1.0)), fingerprint(&constant(1.0)));
        assert_ne!(fingerprint(&constant(1.0)), fingerprint(&constant(2.0)));
    }
}
