//! Raising a model's ONNX opset: the ops whose signature changed between
//! versions are rewritten (attributes that became inputs), the rest carry over.
//! Needed because per-channel quantization needs opset 13 and blocks 21, while
//! exporters such as Paddle2ONNX still write 11 and 12.

use crate::ir::{AttrValue, Graph, Model, Node, OpsetId, Tensor};
use crate::{Error, Result};
use ndarray::{ArrayD, IxDyn};

/// Ops that moved an attribute to an input at some version: (op, attribute, version).
const ATTRIBUTE_TO_INPUT: &[(&str, &str, i64)] = &[
    ("Squeeze", "axes", 13),
    ("Unsqueeze", "axes", 13),
    ("Split", "split", 13),
    ("ReduceSum", "axes", 13),
    ("ReduceMean", "axes", 18),
    ("ReduceMax", "axes", 18),
    ("ReduceMin", "axes", 18),
    ("ReduceProd", "axes", 18),
    ("ReduceL1", "axes", 18),
    ("ReduceL2", "axes", 18),
    ("ReduceLogSum", "axes", 18),
    ("ReduceLogSumExp", "axes", 18),
    ("ReduceSumSquare", "axes", 18),
];

/// Ops whose `axis` meant "flatten from here" before 13 and "this axis" since.
const FLATTENING_AXIS_BEFORE_13: &[&str] = &["Softmax", "LogSoftmax", "Hardmax"];

/// The lowest IR version a runtime accepts with each opset.
fn ir_version_for(opset: i64) -> i64 {
    match opset {
        ..=14 => 7,
        15..=18 => 8,
        19..=20 => 9,
        _ => 10,
    }
}

/// Raises the default-domain opset to at least `target`. `ranks` gives the
/// rank of a tensor by name where known (to check Softmax-style axes).
pub fn upgrade_opset(model: &mut Model, target: i64, ranks: &dyn Fn(&str) -> Option<usize>) -> Result<bool> {
    let from = model.onnx_opset().unwrap_or(1);
    if from >= target {
        return Ok(false);
    }
    if from < 11 {
        return Err(Error::Model(format!("upgrading from opset {from} is not supported (11 or later needed)")));
    }
    upgrade_graph(&mut model.graph, from, target, ranks)?;
    for o in model.opset_import.iter_mut() {
        if matches!(o.domain.as_deref(), None | Some("") | Some("ai.onnx")) {
            o.version = target;
        }
    }
    if model.onnx_opset().is_none() {
        model.opset_import.push(OpsetId { domain: Some(String::new()), version: target });
    }
    model.ir_version = model.ir_version.max(ir_version_for(target));
    Ok(true)
}

/// Rewrites the nodes of `g` and of its If/Loop/Scan bodies (which share the model's opset).
fn upgrade_graph(g: &mut Graph, from: i64, target: i64, ranks: &dyn Fn(&str) -> Option<usize>) -> Result<()> {
    let mut new_constants = Vec::new();
    for node in g.nodes.iter_mut() {
        for body in node.subgraphs_mut() {
            upgrade_graph(body, from, target, ranks)?;
        }
        if !node.is_onnx_op() {
            continue;
        }
        if let Some(&(_, attr, at)) = ATTRIBUTE_TO_INPUT.iter().find(|(op, _, _)| *op == node.op_type) {
            if from < at && at <= target {
                move_ints_attribute_to_input(node, attr, &mut new_constants);
            }
        }
        if from < 13 && 13 <= target && FLATTENING_AXIS_BEFORE_13.contains(&node.op_type.as_str()) {
            check_axis_is_last(node, ranks)?;
        }
        if node.op_type == "Dropout" && from < 12 {
            move_float_attribute_to_input(node, "ratio", &mut new_constants);
        }
    }
    g.initializers.extend(new_constants);
    Ok(())
}

fn unique_name(node: &Node, what: &str) -> String {
    format!("{}_{what}", node.outputs.first().map(String::as_str).unwrap_or(&node.name))
}

/// `attr=[…]` becomes a new int64 initializer fed as input 1 (absent stays absent).
fn move_ints_attribute_to_input(node: &mut Node, attr: &str, out: &mut Vec<Tensor>) {
    let Some(pos) = node.attributes.iter().position(|a| a.name == attr) else { return };
    let AttrValue::Ints(v) = node.attributes.remove(pos).value else { return };
    let name = unique_name(node, attr);
    out.push(Tensor::from_array(&name, &ArrayD::from_shape_vec(IxDyn(&[v.len()]), v).expect("1-d")));
    // Inputs after the data input (none for these ops before the change).
    node.inputs.truncate(1);
    node.inputs.push(name);
}

fn move_float_attribute_to_input(node: &mut Node, attr: &str, out: &mut Vec<Tensor>) {
    let Some(pos) = node.attributes.iter().position(|a| a.name == attr) else { return };
    let AttrValue::Float(v) = node.attributes.remove(pos).value else { return };
    let name = unique_name(node, attr);
    out.push(Tensor::scalar(&name, v));
    node.inputs.truncate(1);
    node.inputs.push(name);
}

fn check_axis_is_last(node: &Node, ranks: &dyn Fn(&str) -> Option<usize>) -> Result<()> {
    let axis = node.attr_int("axis").unwrap_or(1);
    if axis == -1 {
        return Ok(());
    }
    let rank = node.inputs.first().and_then(|i| ranks(i));
    match rank {
        Some(r) if axis == r as i64 - 1 => Ok(()),
        _ => Err(Error::Model(format!(
            "node '{}': {} with axis {axis} over a tensor of rank {} changes meaning at opset 13; \
             cannot upgrade it",
            node.label(),
            node.op_type,
            rank.map(|r| r.to_string()).unwrap_or_else(|| "unknown".into())
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::Array;
    use crate::ir::{Attribute, DataType, Dim, Graph, ValueInfo};
    use crate::runtime::{Backend, Session, SessionOptions};

    /// x [2, 1, 3] → Squeeze(axes=[1]) → Softmax(axis=1) → ReduceMean(axes=[1], keepdims) at opset 11.
    fn old() -> Model {
        let graph = Graph {
            nodes: vec![
                Node::single("s", "Squeeze", &["x"], vec![Attribute::new("axes", AttrValue::Ints(vec![1]))]),
                Node::single("p", "Softmax", &["s"], vec![Attribute::int("axis", 1)]),
                Node::single("y", "ReduceMean", &["p"], vec![Attribute::new("axes", AttrValue::Ints(vec![1]))]),
            ],
            inputs: vec![ValueInfo::tensor("x", Some(DataType::FLOAT), Some(&[2, 1, 3].map(Dim::Fixed)))],
            outputs: vec![ValueInfo::tensor("y", Some(DataType::FLOAT), None)],
            ..Default::default()
        };
        Model::from_graph(graph, 11)
    }

    fn run(m: &Model) -> ArrayD<f32> {
        let x = ArrayD::from_shape_vec(IxDyn(&[2, 1, 3]), vec![0.5, -1.0, 2.0, 3.0, 0.0, -2.0]).unwrap();
        let options = SessionOptions { backend: Some(Backend::Tract), ..Default::default() };
        Session::new(m, &options).unwrap().run(&[Array::F32(x)]).unwrap().remove(0).to_f32()
    }

    #[test]
    fn attributes_become_inputs_and_the_outputs_stay() {
        let before = old();
        let mut after = before.clone();
        let ranks = |n: &str| match n {
            "x" => Some(3),
            _ => Some(2),
        };
        assert!(upgrade_opset(&mut after, 18, &ranks).unwrap());
        assert_eq!(after.onnx_opset(), Some(18));
        for node in &after.graph.nodes {
            assert!(node.attr("axes").is_none(), "{}: axes is an input at 18", node.op_type);
        }
        let squeeze = &after.graph.nodes.iter().find(|n| n.op_type == "Squeeze").unwrap();
        let axes = after.graph.constant(squeeze.input(1).unwrap()).unwrap().unwrap();
        assert_eq!(axes.to_i64_vec().unwrap(), vec![1]);
        assert_eq!(run(&before), run(&after));
        // Nothing to do: the same opset again changes nothing.
        assert!(!upgrade_opset(&mut after, 13, &ranks).unwrap());
    }
}
