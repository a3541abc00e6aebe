//! Which axis of each model input is the batch: exports put it first, but a
//! streaming state may batch on axis 1 (`[2, N, 128]`) and a sample rate is not
//! batched at all. Read from the model's symbolic dims (the symbol most inputs
//! share), or said by the user (`--batch-axis NAME=AXIS`).

use super::Array;
use crate::ir::{Dim, ValueInfo};
use std::collections::BTreeMap;
use std::sync::RwLock;

static OVERRIDES: RwLock<BTreeMap<String, usize>> = RwLock::new(BTreeMap::new());

/// Batch axes by input name for every later binding in this process (the CLI's
/// `--batch-axis`); an input not named is inferred.
pub fn set_batch_axes(axes: BTreeMap<String, usize>) {
    *OVERRIDES.write().unwrap_or_else(|e| e.into_inner()) = axes;
}

pub(super) fn overridden(name: &str) -> Option<usize> {
    OVERRIDES.read().unwrap_or_else(|e| e.into_inner()).get(name).copied()
}

/// Each input's batch axis, `None` for an input fed whole with every batch.
pub(super) fn infer(inputs: &[ValueInfo], arrays: &[&Array]) -> Vec<Option<usize>> {
    let shapes: Vec<Option<Vec<Dim>>> = inputs.iter().map(ValueInfo::shape).collect();
    // How many inputs each symbol appears in: the batch is the one most share.
    let mut share: BTreeMap<&str, usize> = BTreeMap::new();
    for dims in shapes.iter().flatten() {
        let mut names: Vec<&str> =
            dims.iter().filter_map(|d| if let Dim::Symbolic(s) = d { Some(s.as_str()) } else { None }).collect();
        names.sort_unstable();
        names.dedup();
        for n in names {
            *share.entry(n).or_default() += 1;
        }
    }
    inputs
        .iter()
        .zip(&shapes)
        .zip(arrays)
        .map(|((input, dims), array)| {
            if let Some(axis) = overridden(&input.name) {
                return Some(axis);
            }
            if array.ndim() == 0 {
                return None;
            }
            let Some(dims) = dims else { return Some(0) };
            // A free dim scores the number of inputs that have its symbol (an unnamed
            // or unshared one scores 1); a symbol repeated within one input (`?`) counts once.
            let shared = |d: &Dim| match d {
                Dim::Symbolic(s) => share.get(s.as_str()).copied().unwrap_or(1),
                Dim::Unknown => 1,
                Dim::Fixed(_) => 0,
            };
            // The free dim most inputs share (the first on ties).
            let best = dims.iter().enumerate().max_by_key(|(i, d)| (shared(d), std::cmp::Reverse(*i)));
            match best {
                Some((axis, d)) if shared(d) > 0 => Some(axis),
                // Every dim fixed: the batch is where the data differs from the declared shape.
                _ => {
                    let fixed = dims.iter().map(|d| if let Dim::Fixed(n) = d { *n as usize } else { 0 });
                    let differ: Vec<usize> =
                        fixed.zip(array.shape()).enumerate().filter(|(_, (d, a))| d != *a).map(|(i, _)| i).collect();
                    match differ.as_slice() {
                        [] if dims.len() == array.ndim() => None,
                        [axis] => Some(*axis),
                        _ => Some(0),
                    }
                }
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::DataType;
    use ndarray::ArrayD;

    fn input(name: &str, dims: &[Dim]) -> ValueInfo {
        ValueInfo::tensor(name, Some(DataType::FLOAT), Some(dims))
    }

    fn data(shape: &[usize]) -> Array {
        Array::F32(ArrayD::zeros(shape))
    }

    #[test]
    fn the_symbol_inputs_share_is_the_batch_and_scalars_are_fed_whole() {
        let n = || Dim::Symbolic("N".into());
        let inputs = [
            input("input", &[n(), Dim::Fixed(512)]),
            input("state", &[Dim::Fixed(2), n(), Dim::Fixed(128)]),
            input("sr", &[]),
        ];
        let arrays = [data(&[64, 512]), data(&[2, 64, 128]), data(&[])];
        let refs: Vec<&Array> = arrays.iter().collect();
        assert_eq!(infer(&inputs, &refs), vec![Some(0), Some(1), None]);
    }

    #[test]
    fn a_fixed_batch_is_where_the_data_differs_and_a_detector_batches_first() {
        let fixed = [input("x", &[Dim::Fixed(1), Dim::Fixed(16), Dim::Fixed(96)])];
        assert_eq!(infer(&fixed, &[&data(&[20, 16, 96])]), vec![Some(0)]);
        assert_eq!(infer(&fixed, &[&data(&[1, 16, 96])]), vec![None]);
        let sym = |s: &str| Dim::Symbolic(s.into());
        let detector = [input("images", &[sym("batch"), Dim::Fixed(3), sym("height"), sym("width")])];
        assert_eq!(infer(&detector, &[&data(&[4, 3, 32, 48])]), vec![Some(0)]);
        // ONNX Runtime's quantizer writes [-1, 3, ?, ?]: the one '?' symbol twice is not a batch.
        let ort_style = [input("x", &[Dim::Unknown, Dim::Fixed(3), sym("?"), sym("?")])];
        assert_eq!(infer(&ort_style, &[&data(&[4, 3, 48, 192])]), vec![Some(0)]);
    }
}

/// `state=1` → ("state", 1).
pub fn parse_batch_axis(s: &str) -> std::result::Result<(String, usize), String> {
    let (name, axis) = s.rsplit_once('=').ok_or("expected NAME=AXIS, e.g. state=1")?;
    Ok((name.to_string(), axis.trim().parse().map_err(|_| format!("'{axis}' is not an axis"))?))
}

#[cfg(test)]
mod parse_tests {
    use super::parse_batch_axis;

    #[test]
    fn batch_axes_read_as_name_and_axis() {
        assert_eq!(parse_batch_axis("state=1"), Ok(("state".into(), 1)));
        assert!(parse_batch_axis("state").unwrap_err().contains("expected NAME=AXIS"));
        assert!(parse_batch_axis("state=x").unwrap_err().contains("'x' is not an axis"));
    }
}
