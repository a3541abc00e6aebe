//! Shapes of every tensor for given input shapes, from tract's type analysis.

use crate::ir::{DataType, Dim, Model};
use crate::runtime::{data_type_of, feed_inputs, typed_model};
use crate::Result;
use std::collections::BTreeMap;

/// Input shapes with every dynamic dimension set to 1, overridden by `given`.
pub fn concrete_input_shapes(model: &Model, given: &BTreeMap<String, Vec<usize>>) -> BTreeMap<String, Vec<usize>> {
    feed_inputs(model)
        .into_iter()
        .map(|i| {
            let shape = given.get(&i.name).cloned().unwrap_or_else(|| {
                i.shape()
                    .unwrap_or_default()
                    .iter()
                    .map(|d| match d {
                        Dim::Fixed(n) => *n as usize,
                        _ => 1,
                    })
                    .collect()
            });
            (i.name, shape)
        })
        .collect()
}

/// The concrete shape of every tensor tract could type, by ONNX name
/// (constants included).
pub fn infer_shapes(model: &Model, inputs: &BTreeMap<String, Vec<usize>>) -> Result<BTreeMap<String, Vec<usize>>> {
    let mut shapes: BTreeMap<String, Vec<usize>> =
        infer_types(model, inputs)?.into_iter().map(|(name, (_, dims))| (name, dims)).collect();
    for (name, dims) in inputs {
        shapes.entry(name.clone()).or_insert_with(|| dims.clone());
    }
    Ok(shapes)
}

/// The element type and concrete shape of every tensor tract could type, by ONNX name
/// (constants and graph inputs included).
pub fn infer_types(
    model: &Model,
    inputs: &BTreeMap<String, Vec<usize>>,
) -> Result<BTreeMap<String, (DataType, Vec<usize>)>> {
    let typed = typed_model(model, inputs)?;
    let mut types = BTreeMap::new();
    for node in typed.nodes() {
        for (slot, out) in node.outputs.iter().enumerate() {
            let outlet = tract_onnx::prelude::OutletId::new(node.id, slot);
            let Some(label) = typed.outlet_label(outlet) else {
                continue;
            };
            if let (Some(dims), Some(dtype)) = (out.fact.shape.as_concrete(), data_type_of(out.fact.datum_type)) {
                types.insert(label.to_string(), (dtype, dims.to_vec()));
            }
        }
    }
    for name in model.graph.constant_names() {
        if let Some(Ok(t)) = model.graph.constant(&name) {
            types.entry(name).or_insert_with(|| (t.dtype, t.shape()));
        }
    }
    // tract labels no outlet with a graph input's name: a layer reading the
    // input directly (a MatMul on `x`) needs it from here.
    for input in feed_inputs(model) {
        if let (Some(dims), Some(dtype)) = (inputs.get(&input.name), input.dtype()) {
            types.entry(input.name.clone()).or_insert_with(|| (dtype, dims.clone()));
        }
    }
    Ok(types)
}

/// Element type of every tensor whose type tract's (partial) analysis can tell with the model's
/// declared input shapes, shape computations included (empty when tract cannot read the model).
pub fn element_types(model: &Model) -> BTreeMap<String, crate::ir::DataType> {
    crate::runtime::inference_types(model).unwrap_or_default()
}

/// Rank of every tensor whose rank tract's (partial) analysis can tell with
/// the model's declared input shapes, symbolic dims and all.
pub fn rank_lookup(model: &Model) -> BTreeMap<String, usize> {
    super::ranks::propagate_ranks(model, crate::runtime::inference_ranks(model).unwrap_or_default())
}

/// `NAME=1x3x224x224` → (NAME, [1, 3, 224, 224]).
pub fn parse_shape(s: &str) -> std::result::Result<(String, Vec<usize>), String> {
    let (name, dims) = s.rsplit_once('=').ok_or("expected NAME=DxDxD, e.g. input=1x3x224x224")?;
    let dims = dims
        .split(['x', ','])
        .map(|d| d.trim().parse::<usize>().map_err(|_| format!("'{d}' is not a dimension")))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    Ok((name.to_string(), dims))
}

#[cfg(test)]
mod parse_tests {
    use super::parse_shape;

    #[test]
    fn input_shapes_read_as_name_and_dims() {
        assert_eq!(parse_shape("x=1x3x48x320"), Ok(("x".into(), vec![1, 3, 48, 320])));
        assert_eq!(parse_shape("a=b=2,3"), Ok(("a=b".into(), vec![2, 3])), "the last = splits");
        assert!(parse_shape("x").unwrap_err().contains("expected NAME=DxDxD"));
        assert!(parse_shape("x=1xa").unwrap_err().contains("'a' is not a dimension"));
    }
}

#[cfg(test)]
mod tests {
    use crate::ir::{testing, DataType};

    #[test]
    fn element_types_name_shape_computations_as_integers() {
        // y = reshape(x, shape(x)): `s` is a shape computation tract's typed form folds away.
        let model = testing::model(
            vec![
                testing::node("Shape", &["x"], "s", &[]),
                testing::node("Reshape", &["x", "s"], "y", &[]),
                testing::node("Relu", &["y"], "z", &[]),
            ],
            vec![],
            &[1, 2],
            &["z"],
            13,
        );
        let types = super::element_types(&model);
        assert_eq!(types.get("s"), Some(&DataType::INT64));
        assert_eq!(types.get("y"), Some(&DataType::FLOAT));
        assert_eq!(types.get("z"), Some(&DataType::FLOAT));
    }
}
