//! float16: every float32 constant and computation in half precision, with the
//! graph's float32 inputs and outputs kept (Casts at the edges) so callers do
//! not change.

use super::report::{QuantReport, Skipped};
use crate::ir::{AttrValue, Attribute, DataType, Graph, Model, Node, Tensor, TensorData};
use crate::proto::type_proto;
use crate::Result;

/// Inputs that must stay float32 whatever the data type: (op, input slot).
const FLOAT32_ONLY: &[(&str, usize)] = &[("Resize", 1), ("Resize", 2), ("Upsample", 1)];

#[derive(Clone, Debug)]
pub struct Fp16Options {
    /// Keep float32 graph inputs and outputs (Casts inserted at the edges).
    pub keep_io_types: bool,
}

impl Default for Fp16Options {
    fn default() -> Self {
        Fp16Options { keep_io_types: true }
    }
}

pub fn convert_fp16(model: &mut Model, options: &Fp16Options, report: &mut QuantReport) -> Result<()> {
    // tract 0.23 types a float16 Gemm's output as float32; MatMul + Add is the same maths.
    crate::transform::gemm_to_matmul(&mut model.graph)?;
    // ONNX Runtime 1.32 crashes on a float16 Transpose feeding a MatMul; MatMul first is the same maths.
    crate::transform::transpose_after_matmul(&mut model.graph)?;
    let g = &mut model.graph;
    let keep32: Vec<String> = g
        .nodes
        .iter()
        .flat_map(|n| FLOAT32_ONLY.iter().filter(|(op, _)| *op == n.op_type).filter_map(|(_, i)| n.input(*i)))
        .map(str::to_string)
        .collect();
    for t in g.initializers.iter_mut() {
        if !keep32.contains(&t.name) {
            to_half(t, report)?;
        }
    }
    for node in g.nodes.iter_mut() {
        let is_kept = node.op_type == "Constant" && node.outputs.iter().any(|o| keep32.contains(o));
        for a in node.attributes.iter_mut() {
            match &mut a.value {
                AttrValue::Tensor(t) if !is_kept => to_half(t, report)?,
                // Cast(to=float) and ConstantOfShape-like dtype attributes follow the model.
                AttrValue::Int(v) if a.name == "to" && *v == DataType::FLOAT.0 as i64 => {
                    *v = DataType::FLOAT16.0 as i64
                }
                _ => {}
            }
        }
    }
    for v in g.value_info.iter_mut() {
        set_elem_type(v.ty.as_mut(), DataType::FLOAT16);
    }
    if options.keep_io_types {
        cast_edges(g);
    } else {
        for v in g.inputs.iter_mut().chain(g.outputs.iter_mut()) {
            set_elem_type(v.ty.as_mut(), DataType::FLOAT16);
        }
    }
    g.sort_nodes()
}

fn to_half(t: &mut Tensor, report: &mut QuantReport) -> Result<()> {
    if t.dtype != DataType::FLOAT {
        return Ok(());
    }
    let a = t.to_f32()?;
    let overflow = a.iter().filter(|v| v.is_finite() && v.abs() > 65504.0).count();
    if overflow > 0 {
        report
            .skipped
            .push(Skipped::new(&t.name, format!("{overflow} values beyond float16's range saturate to ±65504")));
    }
    let h = a.mapv(|v| half::f16::from_f32(v.clamp(-65504.0, 65504.0)));
    let mut new = Tensor::from_array(&t.name, &h);
    new.doc_string = std::mem::take(&mut t.doc_string);
    new.metadata_props = std::mem::take(&mut t.metadata_props);
    if let TensorData::Bytes(_) = &new.data {
        *t = new;
    }
    Ok(())
}

fn set_elem_type(ty: Option<&mut crate::proto::TypeProto>, to: DataType) {
    if let Some(type_proto::Value::TensorType(tt)) = ty.and_then(|t| t.value.as_mut()) {
        if tt.elem_type == Some(DataType::FLOAT.0) {
            tt.elem_type = Some(to.0);
        }
    }
}

/// float32 graph inputs feed a Cast to float16; float32 outputs come from a Cast back.
fn cast_edges(g: &mut Graph) {
    let cast = |name: String, input: &str, output: &str, to: DataType| Node {
        name,
        op_type: "Cast".into(),
        inputs: vec![input.into()],
        outputs: vec![output.into()],
        attributes: vec![Attribute {
            name: "to".into(),
            value: AttrValue::Int(to.0 as i64),
            doc_string: String::new(),
            ref_attr_name: String::new(),
        }],
        ..Default::default()
    };
    let inits: Vec<String> = g.initializers.iter().map(|t| t.name.clone()).collect();
    let float_inputs: Vec<String> = g
        .inputs
        .iter()
        .filter(|i| i.dtype() == Some(DataType::FLOAT) && !inits.contains(&i.name))
        .map(|i| i.name.clone())
        .collect();
    for x in float_inputs {
        let half = format!("{x}_fp16");
        for node in g.nodes.iter_mut() {
            node.inputs.iter_mut().filter(|i| **i == x).for_each(|i| *i = half.clone());
        }
        g.nodes.push(cast(format!("{x}_Cast_fp16"), &x, &half, DataType::FLOAT16));
    }
    let float_outputs: Vec<String> =
        g.outputs.iter().filter(|o| o.dtype() == Some(DataType::FLOAT)).map(|o| o.name.clone()).collect();
    for y in float_outputs {
        let half = format!("{y}_fp16");
        for node in g.nodes.iter_mut() {
            node.outputs.iter_mut().filter(|o| **o == y).for_each(|o| *o = half.clone());
            node.inputs.iter_mut().filter(|i| **i == y).for_each(|i| *i = half.clone());
        }
        g.nodes.push(cast(format!("{y}_Cast_fp32"), &half, &y, DataType::FLOAT));
    }
}
