//! Made-up inputs for checks and timings that have no data: one builder, shaped as the model
//! declares (symbolic and unknown dims at a chosen size), with values every model accepts.

use crate::data::Array;
use crate::ir::{DataType, Dim, Model};
use crate::runtime::feed_inputs;

/// What made-up floats hold (integers are always 1 and booleans true: valid ids and masks).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fill {
    /// Spread over [-1, 1) by a fixed generator: every channel and position differs, so a check
    /// sees what a constant input would hide.
    Spread,
    /// All ones: what timings run on without data (the same work whatever the values).
    Ones,
}

/// One input per model input: symbolic and unknown dims at `size`, floats as `fill` says.
pub fn made_up_inputs(model: &Model, size: usize, fill: Fill) -> std::result::Result<Vec<Array>, String> {
    feed_inputs(model)
        .iter()
        .map(|v| {
            let dims: Vec<usize> = v
                .shape()
                .ok_or_else(|| format!("input '{}' declares no shape", v.name))?
                .iter()
                .map(|d| match d {
                    Dim::Fixed(n) if *n >= 0 => *n as usize,
                    _ => size,
                })
                .collect();
            let dtype = v.dtype().unwrap_or(DataType::FLOAT);
            let zeros = Array::zeros(dtype, &dims).ok_or_else(|| format!("input '{}' is {dtype}", v.name))?;
            let mut state = 0x9e37_79b9_u32;
            let mut next = move || match fill {
                Fill::Ones => 1.0,
                Fill::Spread => {
                    state ^= state << 13;
                    state ^= state >> 17;
                    state ^= state << 5;
                    (state >> 8) as f32 / (1u32 << 23) as f32 - 1.0
                }
            };
            Ok(match zeros {
                Array::F32(a) => Array::F32(a.mapv(|_| next())),
                Array::F64(a) => Array::F64(a.mapv(|_| f64::from(next()))),
                Array::I64(a) => Array::I64(a.mapv(|_| 1)),
                Array::I32(a) => Array::I32(a.mapv(|_| 1)),
                Array::I8(a) => Array::I8(a.mapv(|_| 1)),
                Array::U8(a) => Array::U8(a.mapv(|_| 1)),
                Array::Bool(a) => Array::Bool(a.mapv(|_| true)),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::testing::{model, node};
    use crate::ir::ValueInfo;

    #[test]
    fn declared_dims_are_kept_and_symbolic_ones_take_the_size() {
        let mut m = model(vec![node("Relu", &["x"], "y", &[])], vec![], &[1, 3], &["y"], 17);
        m.graph.inputs[0] =
            ValueInfo::tensor("x", Some(DataType::FLOAT), Some(&[Dim::Symbolic("N".into()), Dim::Fixed(3)]));
        let spread = made_up_inputs(&m, 2, Fill::Spread).unwrap();
        let Array::F32(x) = &spread[0] else { panic!("float") };
        assert_eq!(x.shape(), [2, 3]);
        assert!(x.iter().all(|v| (-1.0..1.0).contains(v)) && x.iter().any(|v| *v != x[[0, 0]]), "{x:?}");
        let Array::F32(ones) = &made_up_inputs(&m, 1, Fill::Ones).unwrap()[0] else { panic!("float") };
        assert!(ones.shape() == [1, 3] && ones.iter().all(|v| *v == 1.0));
        assert_eq!(made_up_inputs(&m, 2, Fill::Spread).unwrap()[0], spread[0], "the same every time");
    }

    #[test]
    fn ids_are_one_and_an_input_without_shape_is_named() {
        let mut m = model(vec![node("Identity", &["x"], "y", &[])], vec![], &[4], &["y"], 17);
        m.graph.inputs[0] = ValueInfo::tensor("ids", Some(DataType::INT64), Some(&[Dim::Fixed(4)]));
        assert!(matches!(&made_up_inputs(&m, 1, Fill::Spread).unwrap()[0], Array::I64(a) if a.iter().all(|v| *v == 1)));
        m.graph.inputs[0] = ValueInfo::tensor("ids", Some(DataType::INT64), None);
        assert!(made_up_inputs(&m, 1, Fill::Ones).unwrap_err().contains("'ids' declares no shape"));
    }
}
