//! Made-up inputs for checks and timings that have no data: one builder, shaped as the model
//! declares (symbolic and unknown dims at a chosen size), with values every model accepts.

use crate::data::Array;
use crate::ir::{DataType, Dim, Model};
use crate::runtime::{feed_inputs, Session};

/// Sizes tried for symbolic dims, smallest first, until the model runs: a 1-D conv over audio, a
/// reflect pad of 32, a detector whose strides need 32 pixels reject the smallest ones.
pub const TRIED_SIZES: [usize; 7] = [2, 3, 8, 32, 64, 128, 320];

/// Past this size, a symbolic first axis (the batch, almost always) stays at 2: the sizes grow
/// for the model's sake, not to feed it hundreds of samples.
const BATCH_AT_MOST: usize = 3;

/// What made-up floats hold (integers are always 1 and booleans true: valid ids and masks).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fill {
    /// Spread over [-1, 1) by a fixed generator: every channel and position differs, so a check
    /// sees what a constant input would hide.
    Spread,
    /// All ones: what timings run on without data (the same work whatever the values).
    Ones,
}

/// The first `count` sizes of [`TRIED_SIZES`] at which `session` (running `model`) runs on made-up
/// inputs; an error naming the sizes tried and the runtime's last word when none does.
pub fn sizes_that_run(model: &Model, session: &Session, count: usize) -> std::result::Result<Vec<usize>, String> {
    let mut found = vec![];
    let mut last = String::new();
    for size in TRIED_SIZES {
        // A run whose outputs are empty (a window longer than the input) leaves nothing to judge.
        match made_up_inputs(model, size, Fill::Spread).and_then(|x| session.run(&x).map_err(|e| e.to_string())) {
            Ok(outputs) if outputs.iter().all(|o| !o.is_empty()) => found.push(size),
            Ok(_) => last = format!("empty outputs at {size}"),
            Err(e) => last = e,
        }
        if found.len() == count {
            return Ok(found);
        }
    }
    if let Some(&size) = found.last() {
        return Ok(vec![size; count]);
    }
    Err(format!(
        "the model does not run on made-up inputs (symbolic dims tried at {}; last: {last}): pass data to judge it on",
        TRIED_SIZES.map(|s| s.to_string()).join(", ")
    ))
}

/// Whether an input of `model` has a symbolic or unknown dim past its first axis (the batch): a
/// made-up size then matters, and is said.
pub fn has_open_dims(model: &Model) -> bool {
    feed_inputs(model)
        .iter()
        .any(|v| v.shape().is_some_and(|dims| dims.iter().skip(1).any(|d| !matches!(d, Dim::Fixed(n) if *n >= 0))))
}

/// One input per model input: symbolic and unknown dims at `size` (a symbolic first axis at most
/// 3), floats as `fill` says.
pub fn made_up_inputs(model: &Model, size: usize, fill: Fill) -> std::result::Result<Vec<Array>, String> {
    feed_inputs(model)
        .iter()
        .map(|v| {
            let dims: Vec<usize> = v
                .shape()
                .ok_or_else(|| format!("input '{}' declares no shape", v.name))?
                .iter()
                .enumerate()
                .map(|(axis, d)| match d {
                    Dim::Fixed(n) if *n >= 0 => *n as usize,
                    _ if axis == 0 && size > BATCH_AT_MOST => 2,
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

    /// A 1-D conv with a kernel of 5 over `[N, 1, L]`, unpadded: L under 5 makes no output.
    #[test]
    fn sizes_grow_until_the_model_runs_and_the_batch_stays_small() {
        let w = crate::ir::testing::tensor("w", &[1, 1, 5], |_| 0.2);
        let mut m = model(vec![node("Conv", &["x", "w"], "y", &[])], vec![w], &[1, 1, 1], &["y"], 17);
        m.graph.inputs[0] = ValueInfo::tensor(
            "x",
            Some(DataType::FLOAT),
            Some(&[Dim::Symbolic("N".into()), Dim::Fixed(1), Dim::Symbolic("L".into())]),
        );
        let session = Session::new(&m, &Default::default()).unwrap();
        let sizes = sizes_that_run(&m, &session, 2).unwrap();
        assert_eq!(sizes, [8, 32], "2 and 3 are shorter than the kernel");
        let Array::F32(x) = &made_up_inputs(&m, 32, Fill::Spread).unwrap()[0] else { panic!("float") };
        assert_eq!(x.shape(), [2, 1, 32], "the batch stays at 2");
    }
}
