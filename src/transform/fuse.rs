//! `fuse`: the rewrites that make a model cheaper to run without changing
//! what it computes beyond float rounding — BatchNormalization and per-channel
//! Mul/Add folded into the Conv before them, written-out hard-swish as one op.
//! A recipe step of its own (`kind = "fuse"`), so its effect is measured.

use crate::ir::Model;
use crate::Result;
use serde::{Deserialize, Serialize};

/// Which rewrites `fuse` does (all by default).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", default, deny_unknown_fields)]
pub struct FuseConfig {
    /// BatchNormalization after a Conv into the Conv.
    pub batchnorm: bool,
    /// Mul/Add by a per-channel constant after a Conv into the Conv.
    pub affine: bool,
    /// Mul/Add by a per-channel constant before a pointwise (unpadded, ungrouped) Conv into it.
    pub affine_forward: bool,
    /// `x · clip(x + 3, 0, 6) / 6` into `HardSwish` (opset raised to 14 when lower).
    pub hardswish: bool,
}

impl Default for FuseConfig {
    fn default() -> Self {
        FuseConfig { batchnorm: true, affine: true, affine_forward: true, hardswish: true }
    }
}

/// What `fuse` did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Fused {
    /// BatchNormalizations folded into the Conv before.
    pub batchnorms: usize,
    /// Per-channel Mul/Add folded into a Conv.
    pub affines: usize,
    /// Hard-swishes written out that became `HardSwish`.
    pub hardswishes: usize,
    /// Nodes before.
    pub nodes_before: usize,
    /// Nodes after.
    pub nodes_after: usize,
}

/// Applies the rewrites `config` turns on; the outputs stay equal up to float rounding.
pub fn fuse(model: &mut Model, config: &FuseConfig) -> Result<Fused> {
    let nodes_before = model.graph.nodes.len();
    let batchnorms = if config.batchnorm { super::fold_batchnorm(model)? } else { 0 };
    let affines = super::fold_affine(model, config.affine, config.affine_forward)?;
    let hardswishes = if config.hardswish { super::fuse_hardswish(model)? } else { 0 };
    Ok(Fused { batchnorms, affines, hardswishes, nodes_before, nodes_after: model.graph.nodes.len() })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::Array;
    use crate::ir::{AttrValue, Attribute, DataType, Dim, Graph, Node, Tensor, ValueInfo};
    use crate::runtime::{Backend, Session, SessionOptions};
    use ndarray::{ArrayD, IxDyn};

    fn node(op: &str, inputs: &[&str], output: &str) -> Node {
        Node::single(output, op, inputs, vec![])
    }

    fn t(name: &str, dims: &[usize], values: impl Fn(usize) -> f32) -> Tensor {
        let n = dims.iter().product();
        Tensor::from_array(name, &ArrayD::from_shape_vec(IxDyn(dims), (0..n).map(values).collect()).unwrap())
    }

    /// Conv (+BN) → Mul by a scalar → Add per channel → hard-swish written out
    /// as Paddle exports it → Mul, Add → pointwise Conv: PP-LCNet's block, opset 12.
    fn block() -> Model {
        let nodes = vec![
            Node::single(
                "c",
                "Conv",
                &["x", "w", "b"],
                vec![Attribute::new("pads", AttrValue::Ints(vec![1, 1, 1, 1]))],
            ),
            node("BatchNormalization", &["c", "gamma", "beta", "mean", "var"], "n"),
            node("Mul", &["scale", "n"], "m"),
            node("Add", &["m", "shift"], "a"),
            node("Add", &["a", "three"], "a3"),
            node("Clip", &["a3", "zero", "six"], "cl"),
            node("Mul", &["a", "cl"], "p"),
            node("Div", &["p", "six"], "hs"),
            node("Mul", &["hs", "scale2"], "m2"),
            node("Add", &["shift2", "m2"], "a2"),
            node("Conv", &["a2", "w2"], "y"),
        ];
        let graph = Graph {
            nodes,
            initializers: vec![
                t("w", &[4, 3, 3, 3], |i| ((i * 7 % 11) as f32 - 5.0) / 9.0),
                t("b", &[4], |i| i as f32 * 0.1 - 0.2),
                t("gamma", &[4], |i| 1.0 + i as f32 * 0.2),
                t("beta", &[4], |i| 0.3 - i as f32 * 0.1),
                t("mean", &[4], |i| i as f32 * 0.05),
                t("var", &[4], |i| 0.5 + i as f32),
                t("scale", &[1], |_| 1.7),
                t("shift", &[4, 1, 1], |i| i as f32 * 0.4 - 0.6),
                Tensor::scalar("three", 3.0f32),
                Tensor::scalar("zero", 0.0f32),
                Tensor::scalar("six", 6.0f32),
                t("w2", &[2, 4, 1, 1], |i| i as f32 * 0.25 - 0.9),
                t("scale2", &[1, 4, 1, 1], |i| 0.5 + i as f32 * 0.3),
                t("shift2", &[1], |_| -0.25),
            ],
            inputs: vec![ValueInfo::tensor("x", Some(DataType::FLOAT), Some(&[1, 3, 5, 5].map(Dim::Fixed)))],
            outputs: vec![ValueInfo::tensor("y", Some(DataType::FLOAT), None)],
            ..Default::default()
        };
        Model::from_graph(graph, 12)
    }

    fn run(m: &Model) -> ArrayD<f32> {
        let x = ArrayD::from_shape_vec(IxDyn(&[1, 3, 5, 5]), (0..75).map(|i| (i as f32 * 0.37).sin() * 4.0).collect())
            .unwrap();
        let options = SessionOptions { backend: Some(Backend::Tract), ..Default::default() };
        Session::new(m, &options).unwrap().run(&[Array::F32(x)]).unwrap().remove(0).to_f32()
    }

    #[test]
    fn a_pplcnet_block_becomes_conv_hardswish_conv_with_the_same_outputs() {
        let before = block();
        let mut after = before.clone();
        let fused = fuse(&mut after, &FuseConfig::default()).unwrap();
        assert_eq!((fused.batchnorms, fused.affines, fused.hardswishes), (1, 4, 1));
        let ops: Vec<&str> = after.graph.nodes.iter().map(|n| n.op_type.as_str()).collect();
        assert_eq!(ops, ["Conv", "HardSwish", "Conv"]);
        assert_eq!(after.onnx_opset(), Some(14), "HardSwish needs opset 14");
        assert_eq!(after.graph.nodes[1].outputs[0], "hs", "tensor names kept");
        assert_eq!(after.graph.nodes[2].inputs[0], "hs", "the pointwise conv reads the hard-swish");
        let (a, b) = (run(&before), run(&after));
        let worst = a.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(0.0f32, f32::max);
        assert!(worst < 1e-4, "outputs differ by {worst}");
    }

    #[test]
    fn what_does_not_match_is_left_alone() {
        // A Clip to 0..5 is not a hard-swish; a Mul by a [4,3,1,1] constant is not per channel;
        // a padded conv after an Add cannot take the offset.
        let mut m = block();
        m.graph.nodes.last_mut().unwrap().attributes.push(Attribute::new("pads", AttrValue::Ints(vec![1, 1, 1, 1])));
        m.graph.nodes[8].inputs[1] = "wide".into();
        m.graph.initializers.push(Tensor::scalar("five", 5.0f32));
        m.graph.nodes[5].inputs[2] = "five".into();
        m.graph.initializers.push(t("wide", &[4, 3, 1, 1], |i| i as f32));
        m.graph.nodes[2].inputs[0] = "wide".into();
        let mut after = m.clone();
        // The wide Mul broadcasts to another shape: the graph is not valid ONNX to run, only to rewrite.
        let fused = fuse(&mut after, &FuseConfig { batchnorm: false, ..Default::default() }).unwrap();
        let backward = FuseConfig { affine_forward: false, hardswish: false, ..Default::default() };
        assert_eq!(fuse(&mut block(), &backward).unwrap().affines, 2, "the two after the first conv");
        assert_eq!((fused.affines, fused.hardswishes), (0, 0), "{:?}", after.graph.nodes);
        assert_eq!(after.graph.nodes.len(), m.graph.nodes.len());
        let bn = FuseConfig { affine: false, affine_forward: false, hardswish: false, ..Default::default() };
        let only_bn = fuse(&mut block(), &bn).unwrap();
        assert_eq!((only_bn.batchnorms, only_bn.affines, only_bn.hardswishes), (1, 0, 0));
    }
}
