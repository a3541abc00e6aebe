//! Made-up inputs for checks that have no data: shaped as the model declares,
//! with values every model accepts.

use super::feed_inputs;
use crate::data::Array;
use crate::ir::{DataType, Dim, Model};

/// One input per model input: symbolic dims at `size`, floats spread over
/// [-1, 1), integers 1 and booleans true (valid ids and masks).
pub fn sample_inputs(model: &Model, size: usize) -> std::result::Result<Vec<Array>, String> {
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
            let mut next = move || {
                state ^= state << 13;
                state ^= state >> 17;
                state ^= state << 5;
                (state >> 8) as f32 / (1u32 << 23) as f32 - 1.0
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
