//! A model's content as one number: equal models (same graph, same constant
//! bytes) give the same fingerprint within a process, so a measurement made on
//! one can be reused for the other (see `quant::memo`). Not stable across
//! versions; never written anywhere.

use super::{Model, Tensor, TensorData};
use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};

/// Hashes everything a runtime would see of `model`: the graph's nodes, its
/// declared inputs and outputs, its constants' names, types, dims and bytes,
/// and the opsets.
pub fn fingerprint(model: &Model) -> u64 {
    let mut h = DefaultHasher::new();
    let g = &model.graph;
    format!("{:?}|{:?}|{:?}|{:?}", model.opset_import, g.nodes, g.inputs, g.outputs).hash(&mut h);
    for t in &g.initializers {
        tensor(t, &mut h);
    }
    h.finish()
}

/// Hashes a tensor's name, type, dims and values (not how the file stores it).
fn tensor(t: &Tensor, h: &mut DefaultHasher) {
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
    }
}
