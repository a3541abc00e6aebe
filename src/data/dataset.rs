//! A data file bound to a model's inputs: arrays matched by name, checked
//! against the declared shapes and types, served in batches.

use super::{npz, Array};
use crate::ir::{Dim, ValueInfo};
use crate::{Error, Result};
use ndarray::ArrayD;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Names tried, in order, for the label array when none is given.
pub const DEFAULT_LABEL_NAMES: [&str; 3] = ["label", "labels", "y"];

pub struct Dataset {
    pub path: PathBuf,
    pub arrays: BTreeMap<String, Array>,
}

/// Inputs (in the model's input order) and labels, all with the same number of rows.
#[derive(Debug)]
pub struct Bound {
    pub names: Vec<String>,
    pub inputs: Vec<Array>,
    pub labels: Option<ArrayD<i64>>,
    pub rows: usize,
    /// The batch size the model fixes (a declared `[1, …]` input), if any:
    /// batches never exceed it.
    pub max_batch: Option<usize>,
    /// Each input's batch axis; `None`: fed whole with every batch.
    pub axes: Vec<Option<usize>>,
}

impl Dataset {
    pub fn open(path: impl AsRef<Path>) -> Result<Dataset> {
        let path = path.as_ref().to_path_buf();
        let arrays = npz::read_any(&path)?;
        Ok(Dataset { path, arrays })
    }

    fn err(&self, why: String) -> Error {
        Error::Data(format!("{}: {why}", self.path.display()))
    }

    /// Matches arrays to `inputs` (the model's graph inputs that are not
    /// constants). A model with one input takes the one non-label array, whatever
    /// its name. `labels`: the label array's name; `None` looks for the usual names.
    pub fn bind(&self, inputs: &[ValueInfo], labels: Option<&str>) -> Result<Bound> {
        let label_name = match labels {
            Some(l) if !self.arrays.contains_key(l) => {
                return Err(self.err(format!("no label array '{l}' (arrays: {})", self.names())));
            }
            Some(l) => Some(l.to_string()),
            None => DEFAULT_LABEL_NAMES.iter().find(|n| self.arrays.contains_key(**n)).map(|n| n.to_string()),
        };
        let candidates: Vec<&String> =
            self.arrays.keys().filter(|k| Some(k.as_str()) != label_name.as_deref()).collect();
        let mut raw = Vec::new();
        for input in inputs {
            let array = match self.arrays.get(&input.name) {
                Some(a) => a,
                None if inputs.len() == 1 && candidates.len() == 1 => &self.arrays[candidates[0]],
                None => {
                    return Err(self.err(format!(
                        "no array for model input '{}' (arrays: {})",
                        input.name,
                        self.names()
                    )))
                }
            };
            raw.push(array);
        }
        let axes = super::batch_axis::infer(inputs, &raw);
        for ((input, array), axis) in inputs.iter().zip(&raw).zip(&axes) {
            if let Some(axis) = axis.filter(|a| *a >= array.ndim()) {
                return Err(self.err(format!(
                    "input '{}' has no axis {axis} to batch on: its data has shape {:?}",
                    input.name,
                    array.shape()
                )));
            }
        }
        let mut bound = Vec::new();
        for ((input, array), axis) in inputs.iter().zip(&raw).zip(&axes) {
            bound.push(self.check(input, array, *axis)?);
        }
        // Inputs without a batch axis (a sample rate, a flag) go whole with every batch.
        let batched: Vec<(&ValueInfo, &Array, usize)> =
            inputs.iter().zip(&bound).zip(&axes).filter_map(|((i, a), ax)| Some((i, a, (*ax)?))).collect();
        let rows = batched.first().map_or(1, |(_, a, ax)| a.shape()[*ax]);
        for (input, a, axis) in &batched {
            if a.shape()[*axis] != rows {
                let (first, first_array, first_axis) = batched[0];
                return Err(self.err(format!(
                    "input '{}' has {} rows along its batch axis {axis}, '{}' has {} along axis {first_axis} \
                     (say which axis is the batch with --batch-axis NAME=AXIS)",
                    input.name,
                    a.shape()[*axis],
                    first.name,
                    first_array.shape()[first_axis]
                )));
            }
        }
        // A model exported with a fixed batch (`[1, 16, 96]`) takes that many rows at a time.
        let max_batch = batched
            .iter()
            .filter_map(|(input, _, axis)| match input.shape()?.get(*axis)? {
                Dim::Fixed(n) if *n > 0 && (*n as usize) < rows => Some(*n as usize),
                _ => None,
            })
            .min();
        let labels = match label_name {
            None => None,
            Some(l) => {
                let a = self.arrays[&l].to_i64().map_err(|e| self.err(format!("labels '{l}': {e}")))?;
                if a.shape().first() != Some(&rows) {
                    return Err(self.err(format!("labels '{l}' have shape {:?}, expected {rows} rows", a.shape())));
                }
                Some(a)
            }
        };
        Ok(Bound {
            names: inputs.iter().map(|i| i.name.clone()).collect(),
            inputs: bound,
            labels,
            rows,
            max_batch,
            axes,
        })
    }

    /// The array cast to the input's type, if its shape fits the declared one
    /// (any size along the batch axis).
    fn check(&self, input: &ValueInfo, array: &Array, batch_axis: Option<usize>) -> Result<Array> {
        if let Some(shape) = input.shape() {
            let fits = shape.len() == array.shape().len()
                && shape.iter().zip(array.shape()).enumerate().all(|(i, (d, &a))| match d {
                    Dim::Fixed(n) => Some(i) == batch_axis || *n as usize == a,
                    _ => true,
                });
            if !fits {
                return Err(self.err(format!(
                    "input '{}' expects shape {}, the data has {:?}",
                    input.name,
                    show_dims(&shape),
                    array.shape()
                )));
            }
        }
        match input.dtype() {
            Some(dt) => array
                .cast(dt)
                .ok_or_else(|| self.err(format!("input '{}' expects {dt}, the data is {}", input.name, array.dtype()))),
            None => Ok(array.clone()),
        }
    }

    fn names(&self) -> String {
        self.arrays.keys().cloned().collect::<Vec<_>>().join(", ")
    }
}

impl Bound {
    /// Consecutive batches of at most `size` rows: (first row, inputs).
    pub fn batches(&self, size: usize) -> impl Iterator<Item = (usize, Vec<Array>)> + '_ {
        self.batches_upto(size, self.rows)
    }

    /// [`Bound::batches`] over the first `limit` rows only.
    pub fn batches_upto(&self, size: usize, limit: usize) -> impl Iterator<Item = (usize, Vec<Array>)> + '_ {
        let size = size.min(self.max_batch.unwrap_or(usize::MAX)).max(1);
        let limit = limit.min(self.rows);
        (0..limit).step_by(size).map(move |start| {
            let end = (start + size).min(limit);
            let slice = |(a, axis): (&Array, &Option<usize>)| match axis {
                Some(axis) => a.slice_along(*axis, start, end),
                None => a.clone(),
            };
            (start, self.inputs.iter().zip(&self.axes).map(slice).collect())
        })
    }

    /// Rows in `batch` (one of [`Bound::batches`]).
    pub fn rows_in(&self, batch: &[Array]) -> usize {
        batch.iter().zip(&self.axes).find_map(|(a, axis)| Some(a.shape()[(*axis)?])).unwrap_or(1)
    }
}

pub fn show_dims(dims: &[Dim]) -> String {
    let parts: Vec<String> = dims
        .iter()
        .map(|d| match d {
            Dim::Fixed(n) => n.to_string(),
            Dim::Symbolic(s) => s.clone(),
            Dim::Unknown => "?".into(),
        })
        .collect();
    format!("[{}]", parts.join(", "))
}
