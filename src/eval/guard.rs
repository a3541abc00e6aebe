//! The check every model gets before it is written: run beside the original on
//! a few rows of data (made-up inputs when there is none) in each runtime that
//! can run the original, output by output. Outputs that turn non-finite where
//! the original's are finite are an error; large divergence is reported.

use super::metrics::OutputComparison;
use crate::data::{Array, Dataset};
use crate::ir::Model;
use crate::measure::{made_up_inputs, sizes_that_run, Fill};
use crate::runtime::{feed_inputs, Backend, Session, SessionOptions};
use crate::{Error, Result};
use serde::Serialize;

/// Rows of data the check runs (the first ones; all of them when fewer).
pub const CHECK_ROWS: usize = 32;
/// Below this output SQNR the output is said to diverge (a warning, not an error:
/// an aggressive pruning may want it).
pub const DIVERGED_SQNR_DB: f64 = 10.0;

/// One output in one runtime.
#[derive(Clone, Debug, Serialize)]
pub struct CheckedOutput {
    /// The output's name.
    pub name: String,
    /// The runtime that ran both models.
    pub runtime: String,
    /// Values that are NaN or infinite where the original's are finite.
    pub turned_non_finite: usize,
    /// Values compared.
    pub values: usize,
    /// SQNR against the original's output.
    #[serde(serialize_with = "super::metrics::finite_or_string")]
    pub sqnr_db: f64,
    /// The lowest per-row cosine.
    pub cosine_min: f64,
    /// The mean per-row cosine.
    pub cosine_mean: f64,
    /// Top-1 agreement along the last axis (every position).
    pub top1_agreement: f64,
    /// The worst quantity along the last axis (see `OutputMetrics::worst_slice`).
    pub worst_slice: Option<super::metrics::WorstSlice>,
}

impl CheckedOutput {
    /// The output's quality in one line: what `compare` shows, the worst slice included.
    pub fn quality(&self) -> String {
        let mut line = format!(
            "output '{}': top-1 agreement {:.2} %, cosine {:.5} (min {:.5}), SQNR {:.1} dB",
            self.name,
            100.0 * self.top1_agreement,
            self.cosine_mean,
            self.cosine_min,
            self.sqnr_db
        );
        if let Some(w) = &self.worst_slice {
            line += &format!(", worst slice {} {:.1} dB", w.place(), w.sqnr_db);
        }
        line
    }

    /// Whether the output as a whole diverges from the original's.
    pub fn diverges(&self) -> bool {
        self.sqnr_db < DIVERGED_SQNR_DB
    }

    /// A slice that diverges while the whole output does not (scores beside boxes).
    pub fn slice_diverges(&self) -> Option<&super::metrics::WorstSlice> {
        self.worst_slice.as_ref().filter(|w| !self.diverges() && w.sqnr_db < DIVERGED_SQNR_DB)
    }
}

/// What the check found; `skipped` says which runtimes could not run the original.
#[derive(Clone, Debug, Default, Serialize)]
pub struct OutputCheck {
    /// Each output in each runtime.
    pub outputs: Vec<CheckedOutput>,
    /// Runtimes that could not run the original (nothing to compare).
    pub skipped: Vec<String>,
    /// Whether made-up inputs were used (no data given).
    pub synthetic: bool,
    /// Rows of data the check ran (the data's first ones); none on made-up inputs.
    pub rows: Option<usize>,
    /// The size made-up inputs' open dims (past the batch) took, when the model has any.
    pub made_up_size: Option<usize>,
}

impl OutputCheck {
    /// The error to refuse the model with, when an output turned non-finite.
    pub fn refusal(&self) -> Option<Error> {
        let bad: Vec<String> = self
            .outputs
            .iter()
            .filter(|o| o.turned_non_finite > 0)
            .map(|o| {
                format!(
                    "output '{}' in {}: {} of {} values non-finite where the original's are finite",
                    o.name, o.runtime, o.turned_non_finite, o.values
                )
            })
            .collect();
        (!bad.is_empty()).then(|| Error::Model(format!("the result is broken, not written: {}", bad.join("; "))))
    }
}

/// Runs `candidate` beside `original` in each of `backends`. A runtime that
/// cannot run the original is skipped (and listed); one that runs the original
/// but not the candidate is an error.
pub fn check_outputs(
    original: &Model,
    candidate: &Model,
    data: Option<&Dataset>,
    backends: &[Backend],
) -> Result<OutputCheck> {
    // Without data the made-up size is found once (a session and a few runs) for the batch and the line.
    let size = data.is_none().then(|| made_up_size(original));
    let batches = match size {
        Some(size) => vec![made_up_inputs(original, size, Fill::Spread).map_err(Error::Model)?],
        None => check_batches(original, data, CHECK_ROWS, crate::measure::rows_per_run(original, 8))?,
    };
    let rows = checked_rows(original, data, CHECK_ROWS)?;
    let made_up_size = size.filter(|_| crate::measure::has_open_dims(original));
    let mut check = OutputCheck { synthetic: data.is_none(), rows, made_up_size, ..Default::default() };
    for &backend in backends {
        let options = SessionOptions { backend: Some(backend), ..Default::default() };
        // The two run at once (each session runs on one thread; the outputs are the same either way).
        let (reference, outputs) = crate::parallel::join(
            || Session::new(original, &options).and_then(|s| run_all(&s, &batches)),
            || Session::new(candidate, &options).and_then(|s| run_all(&s, &batches)),
        );
        let reference = match reference {
            Ok(r) => r,
            Err(e) => {
                check.skipped.push(format!("{backend}: {e}"));
                continue;
            }
        };
        let outputs =
            outputs.map_err(|e| Error::Runtime(format!("{backend} runs the original but not the result: {e}")))?;
        check.outputs.extend(judge_outputs(original, &reference, &outputs, backend.name())?);
    }
    Ok(check)
}

/// [`check_outputs`] in the process's runtime together with the latency check (see
/// [`super::latency_check`]) from one pair of sessions: the check's rows, one a run, are read from
/// the timing's own runs (those its rounds did not reach run after it). A job that times its
/// result checks it this way: ppocr_rec_v4's check cost ~1 s of sessions and runs on its own.
pub fn check_outputs_timed(
    original: &Model,
    candidate: &Model,
    data: &Dataset,
    progress: &dyn crate::measure::Progress,
) -> Result<(OutputCheck, super::LatencyCheck)> {
    let rows = checked_rows(original, Some(data), CHECK_ROWS)?;
    let (latency, [reference, outputs]) =
        super::bench::latency_check_keeping(original, candidate, Some(data), rows.unwrap_or(0), progress)?;
    let outputs = judge_outputs(original, &reference, &outputs, latency.runtime.backend.name())?;
    Ok((OutputCheck { outputs, skipped: vec![], synthetic: false, rows, made_up_size: None }, latency))
}

/// Runs a converted `.tflite` model (`bytes`, in LiteRT) beside `original` (in `backend`) on
/// `batches` (what [`check_batches`] makes, at the sizes the converted model was written for) —
/// `rows` of data, none when made up.
pub fn check_converted(
    original: &Model,
    bytes: &[u8],
    batches: &[Vec<Array>],
    backend: Backend,
    rows: Option<usize>,
) -> Result<OutputCheck> {
    let options = SessionOptions { backend: Some(backend), ..Default::default() };
    let reference = Session::new(original, &options).and_then(|s| run_all(&s, batches))?;
    let feeds: Vec<String> = feed_inputs(original).into_iter().map(|i| i.name).collect();
    let outputs = Session::litert(bytes.to_vec(), Some(&feeds), &SessionOptions::default())
        .and_then(|s| run_all(&s, batches))
        .map_err(|e| Error::Runtime(format!("{backend} runs the original but LiteRT does not run the result: {e}")))?;
    let runtime = format!("litert vs {backend}");
    let outputs = judge_outputs(original, &reference, &outputs, &runtime)?;
    Ok(OutputCheck { outputs, skipped: vec![], synthetic: rows.is_none(), rows, made_up_size: None })
}

/// Each float output of `outputs` judged against the same output of `reference` (batch by
/// batch): non-finite values where the reference's are finite, and the metrics over the values
/// both have finite.
fn judge_outputs(
    original: &Model,
    reference: &[Vec<Array>],
    outputs: &[Vec<Array>],
    runtime: &str,
) -> Result<Vec<CheckedOutput>> {
    let mut judged = vec![];
    for (i, output) in original.graph.outputs.iter().enumerate() {
        let name = &output.name;
        let mut cmp = OutputComparison::declared(output.shape());
        let (mut values, mut turned) = (0, 0);
        for (r, c) in reference.iter().zip(outputs) {
            let (Some(Array::F32(r)), Some(Array::F32(c))) = (r.get(i), c.get(i)) else { continue };
            if r.shape() != c.shape() {
                return Err(Error::Model(format!(
                    "output '{name}' has shape {:?} in the result, {:?} in the original ({runtime})",
                    c.shape(),
                    r.shape()
                )));
            }
            values += r.len();
            turned += r.iter().zip(c).filter(|(r, c)| r.is_finite() && !c.is_finite()).count();
            // The comparison is over the values both have finite.
            let clean = |a: &ndarray::ArrayD<f32>, b: &ndarray::ArrayD<f32>| {
                ndarray::Zip::from(a).and(b).map_collect(|&x, &y| if x.is_finite() && y.is_finite() { x } else { 0.0 })
            };
            cmp.update(&clean(r, c), &clean(c, r));
        }
        if values == 0 {
            continue;
        }
        let m = cmp.finish(name);
        judged.push(CheckedOutput {
            name: name.clone(),
            runtime: runtime.to_string(),
            turned_non_finite: turned,
            values,
            sqnr_db: m.sqnr_db,
            cosine_min: m.cosine_min,
            cosine_mean: m.cosine_mean,
            top1_agreement: m.top1_agreement,
            worst_slice: m.worst_slice,
        });
    }
    Ok(judged)
}

fn run_all(session: &Session, batches: &[Vec<Array>]) -> Result<Vec<Vec<Array>>> {
    batches.iter().map(|b| session.run(b)).collect()
}

/// The first `rows` rows of `data` in batches of `batch` (one batch of made-up
/// inputs without data): what checks of a result run on.
pub fn check_batches(model: &Model, data: Option<&Dataset>, rows: usize, batch: usize) -> Result<Vec<Vec<Array>>> {
    let Some(data) = data else {
        return Ok(vec![made_up_inputs(model, made_up_size(model), Fill::Spread).map_err(Error::Model)?]);
    };
    let bound = data.bind(&feed_inputs(model), None)?;
    bound.batches_upto(batch, rows).map(|b| b.map(|(_, b)| b)).collect()
}

/// The smallest made-up size `model` runs at (2 for most; longer for a conv over audio). A model
/// the runtime cannot run at all (a custom op) gets 2: the check then says which runtime could
/// not run it, as it does with data.
fn made_up_size(model: &Model) -> usize {
    let runs = Session::new(model, &SessionOptions::default()).ok();
    runs.and_then(|s| sizes_that_run(model, &s, 1).ok()).map_or(2, |sizes| sizes[0])
}

/// How many rows [`check_batches`] takes from `data` when asked for `rows`: none without data.
pub fn checked_rows(model: &Model, data: Option<&Dataset>, rows: usize) -> Result<Option<usize>> {
    data.map(|d| Ok(d.bind(&feed_inputs(model), None)?.rows.min(rows))).transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn output(name: &str, sqnr_db: f64, turned: usize, slice_db: Option<f64>) -> CheckedOutput {
        CheckedOutput {
            name: name.into(),
            runtime: "tract".into(),
            turned_non_finite: turned,
            values: 100,
            sqnr_db,
            cosine_min: 0.9,
            cosine_mean: 0.95,
            top1_agreement: 0.5,
            worst_slice: slice_db.map(|sqnr_db| super::super::metrics::WorstSlice { index: 4, axis: None, sqnr_db }),
        }
    }

    #[test]
    fn non_finite_outputs_refuse_the_result_naming_each() {
        let check = OutputCheck {
            outputs: vec![output("boxes", 30.0, 0, None), output("scores", 30.0, 3, None), output("y", 2.0, 1, None)],
            ..Default::default()
        };
        let e = check.refusal().expect("refused").to_string();
        assert!(e.contains("not written") && e.contains("'scores' in tract: 3 of 100") && e.contains("'y'"), "{e}");
        assert!(!e.contains("boxes"), "{e}");
        let fine = OutputCheck { outputs: vec![output("y", 3.0, 0, None)], ..Default::default() };
        assert!(fine.refusal().is_none(), "divergence alone is a warning, not a refusal");
    }

    #[test]
    fn a_slice_diverges_only_where_the_whole_output_does_not() {
        assert!(output("y", 5.0, 0, None).diverges());
        assert!(!output("y", DIVERGED_SQNR_DB, 0, None).diverges(), "the level itself passes");
        let hidden = output("det", 26.0, 0, Some(3.0));
        assert_eq!(hidden.slice_diverges().map(|w| w.index), Some(4), "scores lost beside good boxes");
        assert!(output("det", 4.0, 0, Some(3.0)).slice_diverges().is_none(), "said once, for the whole output");
        assert!(output("det", 26.0, 0, Some(12.0)).slice_diverges().is_none());
    }

    /// `y = x · W` on `[N, 4]` inputs, W `[4, 16]` scaled by `scale`.
    fn matmul(scale: f32) -> Model {
        use crate::ir::testing::{model, node, tensor, wavy};
        let w = tensor("w", &[4, 16], |i| scale * wavy(i));
        let mut m = model(vec![node("MatMul", &["x", "w"], "y", &[])], vec![w], &[1, 4], &["y"], 17);
        let shape = [crate::ir::Dim::Symbolic("N".into()), crate::ir::Dim::Fixed(4)];
        m.graph.inputs[0] = crate::ir::ValueInfo::tensor("x", Some(crate::ir::DataType::FLOAT), Some(&shape));
        m
    }

    #[test]
    fn the_check_read_from_the_timing_runs_judges_as_the_check_on_its_own() {
        let x = ndarray::ArrayD::from_shape_fn(ndarray::IxDyn(&[40, 4]), |i| ((i[0] * 7 + i[1] * 3) % 11) as f32 - 5.0);
        let data =
            Dataset::from_arrays("rows.npz", std::collections::BTreeMap::from([("x".to_string(), Array::F32(x))]));
        let (original, candidate) = (matmul(1.0), matmul(1.01));
        let alone =
            check_outputs(&original, &candidate, Some(&data), &[crate::runtime::default_backend().unwrap()]).unwrap();
        let (timed, latency) = check_outputs_timed(&original, &candidate, &data, &crate::measure::Silent).unwrap();
        assert_eq!((timed.rows, alone.rows), (Some(CHECK_ROWS), Some(CHECK_ROWS)));
        let (a, t) = (&alone.outputs[0], &timed.outputs[0]);
        assert_eq!((t.values, a.values), (CHECK_ROWS * 16, CHECK_ROWS * 16), "every checked row, once");
        assert!((t.sqnr_db - a.sqnr_db).abs() < 1e-6 && t.sqnr_db.is_finite() && t.sqnr_db < 60.0, "{t:?} {a:?}");
        assert!((t.cosine_min - a.cosine_min).abs() < 1e-9, "{t:?} {a:?}");
        assert!(latency.runs >= 20 && latency.speedup > 0.0);
    }

    #[test]
    fn the_quality_line_says_what_compare_shows() {
        let line = output("det", 26.04, 0, Some(3.0)).quality();
        assert_eq!(
            line,
            "output 'det': top-1 agreement 50.00 %, cosine 0.95000 (min 0.90000), SQNR 26.0 dB, worst slice [4] 3.0 dB"
        );
    }
}
