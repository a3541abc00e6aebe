//! Folds reshapes of constants (Reshape, Flatten, Squeeze, Unsqueeze,
//! Identity whose inputs are all constants) into `Constant` nodes. Paddle
//! exports a conv bias as `Add(x, Reshape(b, [1, C, 1, 1]))`; folded, the
//! bias is a plain constant that passes can slice.

use crate::ir::{AttrValue, Attribute, Model, Node};
use crate::Result;
use std::collections::BTreeMap;

const RESHAPES: &[&str] = &["Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity"];

/// Returns how many nodes were folded. `shapes` gives every tensor's shape
/// (from [`crate::analysis::infer_shapes`]); a reshape keeps the element order,
/// so the folded constant is the same bytes with the output's dims.
pub fn fold_constant_reshapes(model: &mut Model, shapes: &BTreeMap<String, Vec<usize>>) -> Result<usize> {
    let mut folded = 0;
    for n in model.graph.topo_order()? {
        let node = &model.graph.nodes[n];
        if !node.is_onnx_op() || !RESHAPES.contains(&node.op_type.as_str()) || node.outputs.len() != 1 {
            continue;
        }
        let Some(data) = node.input(0) else { continue };
        let all_constant = node.inputs.iter().filter(|i| !i.is_empty()).all(|i| model.graph.constant_site(i).is_some());
        let (Some(dims), true) = (shapes.get(&node.outputs[0]), all_constant) else { continue };
        let Some(Ok(mut value)) = model.graph.constant(data) else { continue };
        if value.numel() != Some(dims.iter().product()) {
            continue;
        }
        value.dims = dims.iter().map(|&d| d as i64).collect();
        value.name.clear();
        value.storage = crate::ir::Storage::Raw;
        let node = &mut model.graph.nodes[n];
        *node = Node {
            name: node.name.clone(),
            op_type: "Constant".into(),
            outputs: node.outputs.clone(),
            attributes: vec![Attribute {
                name: "value".into(),
                value: AttrValue::Tensor(Box::new(value)),
                doc_string: String::new(),
                ref_attr_name: String::new(),
            }],
            ..Default::default()
        };
        folded += 1;
    }
    if folded > 0 {
        super::remove_unused_constants(&mut model.graph);
    }
    Ok(folded)
}
