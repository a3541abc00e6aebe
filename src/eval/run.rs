//! Running models over a data set: `evaluate` (accuracy, latency,
//! throughput) and `compare` (a candidate's outputs against a reference's).

use super::metrics::{argmax, OutputComparison, OutputMetrics};
use crate::data::{Array, Dataset};
use crate::measure::Progress;
use crate::runtime::{Runnable, RuntimeInfo, SessionOptions};
use crate::{Error, Result};
use serde::Serialize;
use std::time::{Duration, Instant};

/// How `evaluate` and `compare` run models.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// Rows per run.
    pub batch_size: usize,
    /// Label array name; `None` looks for `label`/`labels`/`y`.
    pub labels: Option<String>,
    /// Expected text per sample: the first output is CTC-decoded with the
    /// model's dictionary and scored by exact-line match and CER.
    pub texts: Option<Vec<String>>,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions { batch_size: 32, labels: None, texts: None }
    }
}

/// A model run over data.
#[derive(Clone, Debug, Serialize)]
pub struct EvalReport {
    /// Rows run.
    pub samples: usize,
    /// Top-1 accuracy of the first output against the labels, if there are labels.
    pub accuracy: Option<f64>,
    /// With expected texts: the fraction of lines read exactly right…
    pub exact_match: Option<f64>,
    /// …and the character error rate (edit distance / reference length).
    pub cer: Option<f64>,
    /// Rows per run.
    pub batch_size: usize,
    /// What ran the model.
    pub runtime: RuntimeInfo,
    /// Median time of one batch.
    pub latency_ms_median: f64,
    /// Rows per second.
    pub throughput_per_s: f64,
    /// Each output's name and shape (first batch).
    pub outputs: Vec<(String, Vec<usize>)>,
}

/// Two models run over the same data, output by output.
#[derive(Clone, Debug, Serialize)]
pub struct CompareReport {
    /// Rows compared.
    pub samples: usize,
    /// What ran both models.
    pub runtime: RuntimeInfo,
    /// The runtime that ran the candidate (LiteRT for a `.tflite`, else the same).
    pub candidate_runtime: RuntimeInfo,
    /// Each output compared.
    pub outputs: Vec<OutputMetrics>,
}

/// Runs the model over the data: accuracy when there are labels, latency per batch.
/// A LiteRT model runs in LiteRT (texts are decoded with the alphabet prunq's converter carried
/// over from the ONNX model's metadata).
pub fn evaluate<'m>(
    model: impl Into<Runnable<'m>>,
    data: &Dataset,
    options: &RunOptions,
    progress: &dyn Progress,
) -> Result<EvalReport> {
    let model = model.into();
    let bound = data.bind(&model.feeds()?, options.labels.as_deref())?;
    let session = model.session(&SessionOptions::default(), None)?;
    let decoder = match &options.texts {
        None => None,
        Some(_) => Some(super::CtcDecoder::from_model(model)?),
    };
    if let Some(t) = &options.texts {
        if t.len() != bound.rows {
            return Err(Error::Data(format!("{} expected texts for {} samples", t.len(), bound.rows)));
        }
    }
    let (mut exact, mut edits, mut chars) = (0usize, 0usize, 0usize);
    let mut correct = 0usize;
    let mut times = Vec::new();
    let mut shapes = Vec::new();
    // A model with a fixed batch (a .tflite's is 1) runs fewer rows at a time than asked.
    let mut largest_batch = 0usize;
    progress.start(bound.rows as u64, "eval");
    let started = Instant::now();
    for batch in bound.batches(options.batch_size) {
        let (start, batch) = batch?;
        let t = Instant::now();
        let outputs = session.run(&batch)?;
        times.push(t.elapsed());
        let rows = bound.rows_in(&batch);
        largest_batch = largest_batch.max(rows);
        if let (Some(labels), Some(first)) = (&bound.labels, outputs.first()) {
            let predicted = row_argmax(first, rows)?;
            correct += predicted.iter().enumerate().filter(|(i, p)| labels[[start + i]] == **p as i64).count();
        }
        if let (Some(d), Some(texts), Some(first)) = (&decoder, &options.texts, outputs.first()) {
            for (i, got) in d.decode(first)?.iter().enumerate() {
                let (same, line_edits, line_chars) = super::score_line(got, &texts[start + i]);
                exact += same as usize;
                edits += line_edits;
                chars += line_chars;
            }
        }
        shapes = outputs.iter().zip(&session.outputs).map(|(o, n)| (n.clone(), o.shape().to_vec())).collect();
        progress.advance(rows as u64);
        progress.check_stop()?;
    }
    let total = started.elapsed();
    progress.finish();
    Ok(EvalReport {
        samples: bound.rows,
        accuracy: bound.labels.as_ref().map(|_| correct as f64 / bound.rows.max(1) as f64),
        exact_match: decoder.as_ref().map(|_| exact as f64 / bound.rows.max(1) as f64),
        cer: decoder.as_ref().map(|_| edits as f64 / chars.max(1) as f64),
        batch_size: largest_batch.max(1),
        runtime: RuntimeInfo::of(session.backend),
        latency_ms_median: median_ms(&mut times),
        throughput_per_s: bound.rows as f64 / total.as_secs_f64().max(1e-9),
        outputs: shapes,
    })
}

/// Runs both models on the same batches and compares every output. Either may be a LiteRT
/// model (run in LiteRT, fed the reference's batches by input name). A candidate may take fewer
/// inputs than the reference (specialised with `--fix-input`): it is fed those it takes.
pub fn compare<'r, 'c>(
    reference: impl Into<Runnable<'r>>,
    candidate: impl Into<Runnable<'c>>,
    data: &Dataset,
    options: &RunOptions,
    progress: &dyn Progress,
) -> Result<CompareReport> {
    let (reference, candidate) = (reference.into(), candidate.into());
    let feeds = reference.feeds()?;
    let names: Vec<String> = feeds.iter().map(|i| i.name.clone()).collect();
    let given: Vec<String> = candidate.feeds()?.into_iter().map(|i| i.name).collect();
    let onnx_pair = reference.onnx().is_some() && candidate.onnx().is_some();
    // A candidate specialised with --fix-input takes fewer inputs: it is fed its own, in order.
    let fed: Vec<usize> = (0..names.len()).filter(|&i| given.contains(&names[i])).collect();
    let fed_names: Vec<String> = fed.iter().map(|&i| names[i].clone()).collect();
    let (mut theirs, mut ours) = (given, fed_names.clone());
    if !onnx_pair {
        // Across formats the inputs are matched by name, in any order.
        theirs.sort();
        ours.sort();
    }
    if theirs != ours {
        return Err(Error::Usage("the two models take different inputs".into()));
    }
    let bound = data.bind(&feeds, options.labels.as_deref())?;
    let a = reference.session(&Default::default(), None)?;
    let b = candidate.session(&Default::default(), Some(&fed_names))?;
    let (mut x, mut y) = (a.outputs.clone(), b.outputs.clone());
    if !onnx_pair {
        x.sort();
        y.sort();
    }
    if x != y {
        return Err(Error::Usage(format!("the two models have different outputs: {:?} vs {:?}", a.outputs, b.outputs)));
    }
    // The candidate's outputs in the reference's order.
    let order: Vec<usize> =
        a.outputs.iter().map(|n| b.outputs.iter().position(|m| m == n).expect("same names")).collect();
    let mut cmps: Vec<OutputComparison> = a.declared.iter().map(|d| OutputComparison::declared(d.clone())).collect();
    progress.start(bound.rows as u64, "compare");
    let run = |(_, batch): &(usize, Vec<Array>)| {
        let theirs = b.run(&fed.iter().map(|&i| batch[i].clone()).collect::<Vec<_>>())?;
        Ok((a.run(batch)?, order.iter().map(|&k| theirs[k].clone()).collect::<Vec<_>>()))
    };
    crate::parallel::ordered(bound.batches(options.batch_size), run, |(_, batch), (ra, rb)| {
        for ((cmp, x), (y, name)) in cmps.iter_mut().zip(&ra).zip(rb.iter().zip(&a.outputs)) {
            if x.shape() != y.shape() {
                return Err(Error::Model(format!(
                    "output '{name}' has shape {:?} in the reference but {:?} in the candidate",
                    x.shape(),
                    y.shape()
                )));
            }
            cmp.update(&x.to_f32(), &y.to_f32());
        }
        progress.advance(bound.rows_in(&batch) as u64);
        progress.check_stop()?;
        Ok(())
    })?;
    progress.finish();
    let outputs = cmps.into_iter().zip(&a.outputs).map(|(c, n)| c.finish(n)).collect();
    Ok(CompareReport {
        samples: bound.rows,
        runtime: RuntimeInfo::of(a.backend),
        candidate_runtime: RuntimeInfo::of(b.backend),
        outputs,
    })
}

/// Arg-max of each row of a [rows, …] output, over everything after the batch axis.
fn row_argmax(output: &Array, rows: usize) -> Result<Vec<usize>> {
    let f = output.to_f32();
    if rows == 0 || !f.len().is_multiple_of(rows) {
        return Err(Error::Model(format!("output of shape {:?} has no row per sample", f.shape())));
    }
    let width = f.len() / rows;
    let flat = f.as_standard_layout();
    let flat = flat.as_slice().expect("standard layout");
    Ok(flat.chunks(width).map(|row| argmax(row.iter())).collect())
}

fn median_ms(times: &mut [Duration]) -> f64 {
    if times.is_empty() {
        return 0.0;
    }
    times.sort();
    times[times.len() / 2].as_secs_f64() * 1e3
}
