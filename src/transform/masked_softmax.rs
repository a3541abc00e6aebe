//! Softmax over masked scores with its entries floored at the row's maximum − 80.
//!
//! Transformer exports mask attention by adding `-inf` (or `float.min`, or −10000) to the scores of
//! padded positions. ONNX Runtime's Softmax then takes exp of entries more than 87 below the row's
//! maximum, where float32's exp underflows, and runs about 5× slower (minilm_l6's attention
//! Softmax, 1×12×64×64 with a padded sentence: 0.12–0.20 ms against 0.02–0.05 ms; 10 % of the fp32
//! model's time, 16 % of its int8 output's). Floored at `max − 80`, every exp stays a normal float:
//! an entry raised there weighs e⁻⁸⁰ ≈ 1.8·10⁻³⁵ against the maximum's 1, under float32's rounding
//! of the sum, so the probabilities differ from the original's by at most that much (an entry 0
//! becomes 1.8·10⁻³⁵), and a row that is all `-inf` stays NaN as before.

use crate::ir::{AttrValue, Attribute, DataType, Graph, GraphIndex, Model, Node, Tensor};
use crate::Result;

/// How far below its row's maximum an entry may sit: exp(−80) is a normal float32 (the smallest
/// is exp(−87.3)).
const FLOOR_BELOW_MAX: f32 = 80.0;

/// A mask constant at or below this makes the Softmax underflow (exp(−87.3) is float32's smallest
/// normal).
const MASK_AT_MOST: f32 = -87.0;

/// Floors every Softmax over the last axis whose input adds a mask (a `Where` or `Mul` with a
/// constant of −87 or less, through reshapes and casts) at its row's maximum − 80; returns how many.
pub fn floor_masked_softmax(model: &mut Model) -> Result<usize> {
    let opset = model.onnx_opset().unwrap_or(1);
    let sites: Vec<usize> = {
        let g = &model.graph;
        let index = GraphIndex::new(g);
        (0..g.nodes.len()).filter(|&i| is_masked_softmax(g, &index, i, opset)).collect()
    };
    let g = &mut model.graph;
    for &i in &sites {
        let x = g.nodes[i].inputs[0].clone();
        let y = g.nodes[i].outputs[0].clone();
        let (row_max, floor, floored, margin) =
            (format!("{y}_row_max"), format!("{y}_floor"), format!("{y}_floored"), format!("{y}_floor_margin"));
        let reduce = if opset >= 18 {
            let axes = format!("{y}_row_axes");
            g.initializers.push(Tensor::from_array(&axes, &ndarray::arr1(&[-1i64]).into_dyn()));
            Node::single(&row_max, "ReduceMax", &[&x, &axes], vec![Attribute::int("keepdims", 1)])
        } else {
            let axes = Attribute::new("axes", AttrValue::Ints(vec![-1]));
            Node::single(&row_max, "ReduceMax", &[&x], vec![Attribute::int("keepdims", 1), axes])
        };
        g.initializers.push(Tensor::from_array(&margin, &ndarray::arr0(FLOOR_BELOW_MAX).into_dyn()));
        g.nodes.push(reduce);
        g.nodes.push(Node::single(&floor, "Sub", &[&row_max, &margin], vec![]));
        g.nodes.push(Node::single(&floored, "Max", &[&x, &floor], vec![]));
        g.nodes[i].inputs[0] = floored;
    }
    if !sites.is_empty() {
        g.sort_nodes()?;
    }
    Ok(sites.len())
}

/// A float Softmax over the last axis (opset 13's meaning; before 13 only an explicit last axis
/// of a known rank means the same) whose input adds a mask.
fn is_masked_softmax(g: &Graph, index: &GraphIndex, i: usize, opset: i64) -> bool {
    let n = &g.nodes[i];
    if n.op_type != "Softmax" || !n.is_onnx_op() {
        return false;
    }
    let axis = n.attr_int("axis").unwrap_or(if opset >= 13 { -1 } else { 1 });
    if axis != -1 {
        return false;
    }
    let Some(x) = n.input(0) else { return false };
    // The scores are the Softmax's input or an Add's operand; the mask the other.
    let operands: Vec<&str> = match index.producer(x).map(|p| &g.nodes[p]) {
        Some(add) if add.op_type == "Add" => add.inputs.iter().map(String::as_str).collect(),
        _ => vec![x],
    };
    operands.into_iter().any(|t| is_mask(g, index, t, 0))
}

/// Whether `t` is made by a `Where` or `Mul` with a float32 constant holding −87 or less (so the
/// scores it is added to are float32 too), through ops that only move or cast values.
fn is_mask(g: &Graph, index: &GraphIndex, t: &str, depth: usize) -> bool {
    let Some(p) = index.producer(t) else { return false };
    let n = &g.nodes[p];
    match n.op_type.as_str() {
        "Where" | "Mul" => n.inputs.iter().any(|c| very_negative(g, c)),
        "Expand" | "Reshape" | "Unsqueeze" | "Squeeze" | "Cast" | "Transpose" if depth < 4 => {
            n.input(0).is_some_and(|i| is_mask(g, index, i, depth + 1))
        }
        _ => false,
    }
}

fn very_negative(g: &Graph, name: &str) -> bool {
    match g.constant(name) {
        Some(Ok(t)) if t.dtype == DataType::FLOAT => t.to_f32().is_ok_and(|a| a.iter().any(|&v| v <= MASK_AT_MOST)),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::Array;
    use crate::ir::{Dim, ValueInfo};
    use crate::runtime::{Backend, Session, SessionOptions};
    use ndarray::{ArrayD, IxDyn};

    /// scores `[1, 2, 4, 8]` + Where(keep, 0, -inf) → Softmax, opset 17.
    fn attention(mask_value: f32) -> Model {
        let nodes = vec![
            Node::single("mask", "Where", &["keep", "zero", "minus"], vec![]),
            Node::single("masked", "Add", &["scores", "mask"], vec![]),
            Node::single("p", "Softmax", &["masked"], vec![Attribute::int("axis", -1)]),
        ];
        let mut m = crate::ir::testing::model(
            nodes,
            vec![
                Tensor::from_array("zero", &ndarray::arr0(0f32).into_dyn()),
                Tensor::from_array("minus", &ndarray::arr0(mask_value).into_dyn()),
            ],
            &[1, 2, 4, 8],
            &["p"],
            17,
        );
        m.graph.inputs[0] = ValueInfo::tensor("scores", Some(DataType::FLOAT), Some(&[1, 2, 4, 8].map(Dim::Fixed)));
        m.graph.inputs.push(ValueInfo::tensor("keep", Some(DataType::BOOL), Some(&[1, 1, 1, 8].map(Dim::Fixed))));
        m
    }

    #[test]
    fn a_masked_softmax_is_floored_and_keeps_its_probabilities() {
        let original = attention(f32::NEG_INFINITY);
        let mut floored = original.clone();
        assert_eq!(floor_masked_softmax(&mut floored).unwrap(), 1);
        let ops: Vec<&str> = floored.graph.nodes.iter().map(|n| n.op_type.as_str()).collect();
        assert!(ops.contains(&"ReduceMax") && ops.contains(&"Max"), "{ops:?}");
        // Three positions padded; scores spread over ±150 so that some unmasked ones sit far below
        // their row's maximum too.
        let scores =
            ArrayD::from_shape_fn(IxDyn(&[1, 2, 4, 8]), |i| ((i[1] * 32 + i[2] * 8 + i[3]) as f32 * 1.7).sin() * 150.0);
        let keep = ArrayD::from_shape_fn(IxDyn(&[1, 1, 1, 8]), |i| i[3] < 5);
        let inputs = vec![Array::F32(scores), Array::Bool(keep)];
        for backend in [Backend::Tract, Backend::Ort] {
            let options = SessionOptions { backend: Some(backend), ..Default::default() };
            let run = |m: &Model| Session::new(m, &options).and_then(|s| s.run(&inputs)).map(|o| o[0].to_f32());
            let (Ok(before), Ok(after)) = (run(&original), run(&floored)) else {
                assert_eq!(backend, Backend::Ort, "tract runs both");
                continue;
            };
            let worst = before.iter().zip(after.iter()).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
            assert!(worst <= 2e-35, "{backend:?}: {worst}");
            assert!(after.iter().all(|v| v.is_finite()));
        }
    }

    #[test]
    fn a_softmax_without_a_mask_is_left_as_it_is() {
        let mut mild = attention(-30.0);
        assert_eq!(floor_masked_softmax(&mut mild).unwrap(), 0);
        let mut minus_1e4 = attention(-10000.0);
        assert_eq!(floor_masked_softmax(&mut minus_1e4).unwrap(), 1, "BERT's older −10000 mask underflows too");
    }
}
