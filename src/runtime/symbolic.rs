//! What tract's inference analysis knows about every tensor with the inputs'
//! dims left symbolic: its shape as expressions of the input dims, and the
//! value of every tensor computed from shapes and constants alone (shape
//! computations, scales derived from a dim). Graph clean-up folds what this
//! proves constant; a maintained engine does the symbolic arithmetic.

use super::feed_inputs;
use super::tract::{inference_model, set_input_facts, weights_as_inputs};
use crate::ir::{DataType, Model};
use crate::Result;
use std::collections::BTreeMap;
use tract_onnx::prelude::*;
use tract_onnx::tract_hir::infer::Factoid;

/// One dim or one integer element: a number, or an expression of the
/// inputs' symbolic dims (tract's rendering, equal expressions render equally).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SymDim {
    /// A number.
    Known(i64),
    /// An expression of the input dims.
    Expr(String),
}

/// A tensor's value where the analysis computed it.
#[derive(Clone, Debug, PartialEq)]
pub enum SymValue {
    /// Integers (shape computations); `dtype` is the ONNX type they have.
    Ints {
        /// The ONNX element type.
        dtype: DataType,
        /// The tensor's dims.
        dims: Vec<usize>,
        /// The elements, in order.
        values: Vec<SymDim>,
    },
    /// Float values (constants folded by the analysis).
    Floats {
        /// The ONNX element type.
        dtype: DataType,
        /// The tensor's dims.
        dims: Vec<usize>,
        /// The elements, in order.
        values: Vec<f64>,
    },
}

/// What the analysis knows of one tensor.
#[derive(Clone, Debug, Default)]
pub struct SymbolicFact {
    /// The shape, when known.
    pub shape: Option<Vec<SymDim>>,
    /// The value, when computed.
    pub value: Option<SymValue>,
}

/// Facts for every tensor the analysis labels by its ONNX name, the declared
/// input shapes' named dims as symbols (float weights of 1 KiB or more are left
/// unknown: shapes never depend on their values).
pub fn symbolic_facts(model: &Model) -> Result<BTreeMap<String, SymbolicFact>> {
    super::guarded("analysing the model's shapes", || {
        let light = weights_as_inputs(model);
        let mut inference = inference_model(&light)?;
        set_input_facts(&mut inference, &feed_inputs(&light), &BTreeMap::new())?;
        // Obstinate: keep what it learns past a node it cannot analyse.
        let _ = inference.analyse(true);
        let mut facts = BTreeMap::new();
        for node in inference.nodes() {
            for (slot, out) in node.outputs.iter().enumerate() {
                // Graph inputs and initializers are unlabelled nodes of their own name.
                let label = match inference.outlet_label(OutletId::new(node.id, slot)) {
                    Some(label) => label,
                    None if node.inputs.is_empty() => node.name.as_str(),
                    None => continue,
                };
                let shape = out.fact.shape.concretize().map(|dims| dims.iter().map(sym_dim).collect());
                let value = out.fact.value.concretize().and_then(|t| sym_value(&t));
                facts.insert(label.to_string(), SymbolicFact { shape, value });
            }
        }
        Ok(facts)
    })
}

fn sym_dim(d: &TDim) -> SymDim {
    match d.to_i64() {
        Ok(n) => SymDim::Known(n),
        Err(_) => SymDim::Expr(d.to_string()),
    }
}

fn sym_value(t: &Tensor) -> Option<SymValue> {
    let dims = t.shape().to_vec();
    let ints = |dtype: DataType, t: &Tensor| -> Option<SymValue> {
        let t = t.cast_to::<TDim>().ok()?;
        let values = t.to_plain_array_view::<TDim>().ok()?.iter().map(sym_dim).collect();
        Some(SymValue::Ints { dtype, dims: dims.clone(), values })
    };
    let floats = |dtype: DataType, t: &Tensor| -> Option<SymValue> {
        let t = t.cast_to::<f64>().ok()?;
        Some(SymValue::Floats {
            dtype,
            dims: dims.clone(),
            values: t.to_plain_array_view::<f64>().ok()?.iter().copied().collect(),
        })
    };
    match t.datum_type() {
        DatumType::TDim | DatumType::I64 => ints(DataType::INT64, t),
        DatumType::I32 => ints(DataType::INT32, t),
        DatumType::F32 => floats(DataType::FLOAT, t),
        DatumType::F64 => floats(DataType::DOUBLE, t),
        _ => None,
    }
}
