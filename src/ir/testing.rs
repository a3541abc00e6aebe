//! Small graphs for unit tests, built in Rust: no files, no Python.

use super::{AttrValue, Attribute, DataType, Dim, Graph, Model, Node, Tensor, ValueInfo};
use ndarray::{ArrayD, IxDyn};

/// A node with one output and integer-list or integer attributes.
pub fn node(op: &str, inputs: &[&str], output: &str, attrs: &[(&str, AttrValue)]) -> Node {
    let attrs = attrs.iter().map(|(n, v)| Attribute::new(n, v.clone())).collect();
    Node::single(output, op, inputs, attrs)
}

/// A float constant of `dims` whose element `i` is `value(i)`.
pub fn tensor(name: &str, dims: &[usize], value: impl Fn(usize) -> f32) -> Tensor {
    let n = dims.iter().product();
    let values = ArrayD::from_shape_vec(IxDyn(dims), (0..n).map(value).collect()).expect("dims match");
    Tensor::from_array(name, &values)
}

/// Values that vary without pattern, in about [-1, 1].
pub fn wavy(i: usize) -> f32 {
    ((i as f32 + 1.0) * 0.731).sin()
}

/// A model of `nodes` reading the float input `x` of shape `dims`, with
/// `outputs` declared float of unknown shape.
pub fn model(nodes: Vec<Node>, initializers: Vec<Tensor>, dims: &[i64], outputs: &[&str], opset: i64) -> Model {
    let shape: Vec<Dim> = dims.iter().map(|&d| Dim::Fixed(d)).collect();
    let graph = Graph {
        nodes,
        initializers,
        inputs: vec![ValueInfo::tensor("x", Some(DataType::FLOAT), Some(&shape))],
        outputs: outputs.iter().map(|o| ValueInfo::tensor(*o, Some(DataType::FLOAT), None)).collect(),
        ..Default::default()
    };
    Model::from_graph(graph, opset)
}

/// `AttrValue::Int`, for short attribute lists.
pub fn int(v: i64) -> AttrValue {
    AttrValue::Int(v)
}

/// `AttrValue::Ints`, for short attribute lists.
pub fn ints(v: &[i64]) -> AttrValue {
    AttrValue::Ints(v.to_vec())
}
