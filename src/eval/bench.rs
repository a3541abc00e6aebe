//! Latency of several models side by side: runs interleaved (A, B, A, B …) so
//! that background load hits every model alike, and each model's speed given
//! as a ratio to the first one's, measured round by round.

use crate::data::{Array, Dataset};
use crate::ir::Model;
use crate::measure::Progress;
use crate::runtime::{Backend, Profile, Runnable, RuntimeInfo, Session, SessionOptions};
use crate::{Error, Result};
use serde::Serialize;
use std::time::Instant;

/// The median of `values` (by nearest rank).
pub fn median(values: &[f64]) -> f64 {
    percentile(values, 0.5)
}

/// Milliseconds of rounds in one measurement of a pair: the latency check's and each of a speed
/// trial's. Whole runs differ from each other more than their rounds do, so longer ones sharpen
/// the ratio little: ten latency checks each, the default static outputs against their inputs
/// (ONNX Runtime, AVX-512 VNNI Xeon), ppocr_rec_v4 1.72–1.77× in 20 rounds (0.6 s) and 1.70–1.79×
/// in 36 (1 s), minilm_l6 2.70–2.80× in 33 and 2.72–2.80× in 56; at ~3 s the check was a sixth
/// of a default static run.
pub const MEASUREMENT_MS: f64 = 600.0;

/// How `bench` times models.
#[derive(Clone, Debug)]
pub struct BenchOptions {
    /// Rows per run.
    pub batch_size: usize,
    /// Timed rounds (one run of every model each).
    pub runs: usize,
    /// Untimed rounds first (plans built, caches warm).
    pub warmup: usize,
    /// Threads inside one run (ONNX Runtime's intra-op pool; tract runs on one).
    pub threads: usize,
    /// Also time each op type (separate, profiled runs after the timed ones).
    pub profile: bool,
}

impl Default for BenchOptions {
    fn default() -> Self {
        BenchOptions { batch_size: 1, runs: 100, warmup: 10, threads: 1, profile: false }
    }
}

/// Models timed side by side.
#[derive(Clone, Debug, Serialize)]
pub struct BenchReport {
    /// The runtime that ran them.
    pub runtime: RuntimeInfo,
    /// Rows per run.
    pub batch_size: usize,
    /// Threads inside one run.
    pub threads: usize,
    /// Timed rounds.
    pub runs: usize,
    /// In the order given; the first is the reference of every ratio.
    pub models: Vec<ModelLatency>,
}

/// One model's times.
#[derive(Clone, Debug, Serialize)]
pub struct ModelLatency {
    /// The model's name (its file name).
    pub name: String,
    /// Median time of one run.
    pub median_ms: f64,
    /// The 10th percentile (with the 90th: the spread of single runs).
    pub p10_ms: f64,
    /// The 90th percentile.
    pub p90_ms: f64,
    /// Median over rounds of this model's time / the first model's time in the
    /// same round (1.0 for the first; below 1 is faster).
    pub time_ratio: f64,
    /// 1 / time_ratio: how many times faster than the first model.
    pub speedup: f64,
    /// The engine that ran it (LiteRT for a `.tflite`, else the report's runtime).
    pub runtime: String,
    /// Time per op type, when profiled.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub profile: Option<Profile>,
}

/// Times `models` (name, model) on `backend`, taking turns, on batches of `data`. A LiteRT
/// model among them runs in LiteRT (one thread as well), fed the same rows by input name.
pub fn bench<'m, M: Into<Runnable<'m>> + Copy>(
    models: &[(String, M)],
    data: &Dataset,
    backend: Backend,
    options: &BenchOptions,
    progress: &dyn Progress,
) -> Result<BenchReport> {
    Contest::new(models, data, backend, options)?.time(options.runs, options.warmup, progress)
}

/// Models ready to be timed side by side: each one's session and batches, built once for any
/// number of timings (a speed trial times the same pair two or three times).
pub struct Contest<'m> {
    models: Vec<(String, Runnable<'m>)>,
    prepared: Vec<(Session, Vec<Vec<Array>>)>,
    backend: Backend,
    options: BenchOptions,
}

impl<'m> Contest<'m> {
    /// Sessions and batches for `models` (see [`bench`]).
    pub fn new<M: Into<Runnable<'m>> + Copy>(
        models: &[(String, M)],
        data: &Dataset,
        backend: Backend,
        options: &BenchOptions,
    ) -> Result<Contest<'m>> {
        if models.is_empty() {
            return Err(Error::Usage("no model to time".into()));
        }
        let models: Vec<(String, Runnable<'m>)> = models.iter().map(|(n, m)| (n.clone(), (*m).into())).collect();
        let session_options = session_options(backend, options, false);
        let prepare = |(name, m): &(String, Runnable<'m>)| {
            let batches = batches_of(*m, data, options.batch_size)?;
            let session = m.session(&session_options, None).map_err(|e| named(name, e))?;
            Ok((session, batches))
        };
        // ONNX models' sessions are built in parallel (a speed trial's screening builds seven),
        // LiteRT's one after the other (its C library is not known to build models concurrently).
        let in_onnx = backend != Backend::LiteRt && models.iter().all(|(_, m)| matches!(m, Runnable::Onnx(_)));
        let prepared = match in_onnx {
            true => crate::parallel::map(&models, prepare),
            false => models.iter().map(prepare).collect(),
        }
        .into_iter()
        .collect::<Result<Vec<_>>>()?;
        Ok(Contest { models, prepared, backend, options: options.clone() })
    }

    /// `runs` timed rounds after `warmup` untimed ones, the models taking turns.
    pub fn time(&self, runs: usize, warmup: usize, progress: &dyn Progress) -> Result<BenchReport> {
        self.time_keeping(runs, warmup, None, progress)
    }

    /// [`Contest::time`], keeping each model's outputs of the batches `kept` has an empty slot for.
    fn time_keeping(
        &self,
        runs: usize,
        warmup: usize,
        kept: Option<&mut Kept>,
        progress: &dyn Progress,
    ) -> Result<BenchReport> {
        let (models, prepared, options) = (&self.models, &self.prepared, &self.options);
        let runs = runs.max(1);
        let all: Vec<usize> = (0..models.len()).collect();
        let times = self.round_times(&all, runs, warmup, kept, progress)?;
        let mut out = vec![];
        for (k, (name, model)) in models.iter().enumerate() {
            let ratios: Vec<f64> = times[k].iter().zip(&times[0]).map(|(t, r)| t / r.max(1e-9)).collect();
            let time_ratio = percentile(&ratios, 0.5);
            let profile = match (options.profile, model) {
                (true, Runnable::Onnx(model)) => Some(
                    profile_of(model, &prepared[k].1, &session_options(self.backend, options, true), runs.div_ceil(4))
                        .map_err(|e| named(name, e))?,
                ),
                _ => None,
            };
            out.push(ModelLatency {
                name: name.clone(),
                median_ms: percentile(&times[k], 0.5),
                p10_ms: percentile(&times[k], 0.1),
                p90_ms: percentile(&times[k], 0.9),
                time_ratio,
                speedup: speedup_of(&ratios),
                runtime: prepared[k].0.backend.name().to_string(),
                profile,
            });
        }
        // Models that all ran in LiteRT (`.tflite` files) were timed there, whatever `backend` says.
        let all_litert = prepared.iter().all(|(s, _)| s.backend == Backend::LiteRt);
        Ok(BenchReport {
            runtime: RuntimeInfo::of(if all_litert { Backend::LiteRt } else { self.backend }),
            batch_size: options.batch_size,
            threads: options.threads,
            runs,
            models: out,
        })
    }

    /// Each model's milliseconds in each of `runs` timed rounds after `warmup` untimed ones,
    /// taking turns.
    pub fn round_ms(&self, runs: usize, warmup: usize) -> Result<Vec<Vec<f64>>> {
        let all: Vec<usize> = (0..self.models.len()).collect();
        self.round_times(&all, runs.max(1), warmup, None, &crate::measure::Silent)
    }

    /// Each of `which`'s per-round time over the first of them's in the same round, over `runs`
    /// rounds after `warmup` untimed ones (the first's own: all 1): a screening times every model
    /// briefly, then only those still in question.
    pub fn ratios(&self, which: &[usize], runs: usize, warmup: usize) -> Result<Vec<Vec<f64>>> {
        let times = self.round_times(which, runs.max(1), warmup, None, &crate::measure::Silent)?;
        Ok(times.iter().map(|t| t.iter().zip(&times[0]).map(|(t, r)| t / r.max(1e-9)).collect()).collect())
    }

    /// Milliseconds of each of `which` in each timed round, taking turns; `kept`: the outputs of
    /// the batches it has an empty slot for, per model of `which`.
    fn round_times(
        &self,
        which: &[usize],
        runs: usize,
        warmup: usize,
        mut kept: Option<&mut Kept>,
        progress: &dyn Progress,
    ) -> Result<Vec<Vec<f64>>> {
        let mut times = vec![Vec::with_capacity(runs); which.len()];
        progress.start((warmup + runs) as u64, "bench");
        for round in 0..warmup + runs {
            // Every other round in reverse order, so that no model always runs right after
            // another (warm or cold caches, a clock that just rose) and biases the ratio.
            let order: Vec<usize> = match round % 2 {
                0 => (0..which.len()).collect(),
                _ => (0..which.len()).rev().collect(),
            };
            for k in order {
                let (session, batches) = &self.prepared[which[k]];
                let b = round % batches.len();
                let started = Instant::now();
                let outputs = session.run(&batches[b]).map_err(|e| named(&self.models[which[k]].0, e))?;
                let ms = started.elapsed().as_secs_f64() * 1e3;
                if round >= warmup {
                    times[k].push(ms);
                }
                if let Some(slot @ None) = kept.as_deref_mut().and_then(|kept| kept[k].get_mut(b)) {
                    *slot = Some(outputs);
                }
            }
            progress.advance(1);
            progress.check_stop()?;
        }
        progress.finish();
        Ok(times)
    }

    /// Fills `kept`'s empty slots (every model's, as `time_keeping` keeps them): the batches the
    /// rounds did not reach, each model's run on its own thread.
    fn fill(&self, kept: &mut Kept) -> Result<()> {
        let run_missing = |(k, slots): (usize, &mut Vec<Option<Vec<Array>>>)| -> Result<()> {
            let (session, batches) = &self.prepared[k];
            for (b, slot) in slots.iter_mut().enumerate().filter(|(_, slot)| slot.is_none()) {
                *slot = Some(session.run(&batches[b]).map_err(|e| named(&self.models[k].0, e))?);
            }
            Ok(())
        };
        match kept.as_mut_slice() {
            [a, b] => {
                let (a, b) = crate::parallel::join(|| run_missing((0, a)), || run_missing((1, b)));
                a.and(b)
            }
            all => all.iter_mut().enumerate().try_for_each(run_missing),
        }
    }
}

/// Outputs of the first batches, per model timed, filled as rounds run them: what a check of the
/// models' outputs reads from the timing's own runs.
type Kept = Vec<Vec<Option<Vec<Array>>>>;

/// How many times faster than the reference, from per-round time ratios (their median).
pub fn speedup_of(ratios: &[f64]) -> f64 {
    1.0 / percentile(ratios, 0.5).max(1e-12)
}

/// How a timed (or profiled) session runs: `backend`, the threads asked for.
fn session_options(backend: Backend, options: &BenchOptions, profile: bool) -> SessionOptions {
    SessionOptions {
        backend: Some(backend),
        intra_threads: Some(options.threads.max(1)),
        profile,
        ..Default::default()
    }
}

/// A written model's speed against its input, measured where it will run.
#[derive(Clone, Debug, Serialize)]
pub struct LatencyCheck {
    /// The runtime it was timed in.
    pub runtime: RuntimeInfo,
    /// Batch 1, one thread, the two models taking turns.
    pub runs: usize,
    /// "the calibration/validation data" or "inputs of ones" (no data given).
    pub inputs: String,
    /// The input's median time per run.
    pub input_ms: f64,
    /// The output's median time per run.
    pub output_ms: f64,
    /// Median over rounds of input time / output time: above 1 the output is faster.
    pub speedup: f64,
}

impl LatencyCheck {
    /// Below this the output counts as slower: rounds of one model against the other on a
    /// shared machine scatter by a few per cent.
    pub const SLOWER_BELOW: f64 = 0.95;

    /// Whether the output is slower than the input beyond the noise.
    pub fn slower(&self) -> bool {
        self.speedup < Self::SLOWER_BELOW
    }
}

/// Times `output` against `input` in the process's runtime at batch 1 on one
/// thread, the models taking turns, on `data` (or inputs of ones shaped as the
/// model declares, symbolic dims 1, when there is none), for [`MEASUREMENT_MS`].
pub fn latency_check<'i, 'o>(
    input: impl Into<Runnable<'i>>,
    output: impl Into<Runnable<'o>>,
    data: Option<&Dataset>,
    progress: &dyn Progress,
) -> Result<LatencyCheck> {
    Ok(latency_check_keeping(input, output, data, 0, progress)?.0)
}

/// The two models' outputs on a data set's first rows, one row a run: the input's, the output's.
pub type PairOutputs = [Vec<Vec<Array>>; 2];

/// [`latency_check`], also handing back both models' outputs on the data's first `rows` rows (one
/// a run): those the timing's rounds ran are kept from them, the rest run after it. A job checks
/// its result on them, without sessions and runs of its own (ppocr_rec_v4: ~1 s).
pub(super) fn latency_check_keeping<'i, 'o>(
    input: impl Into<Runnable<'i>>,
    output: impl Into<Runnable<'o>>,
    data: Option<&Dataset>,
    rows: usize,
    progress: &dyn Progress,
) -> Result<(LatencyCheck, PairOutputs)> {
    let (input, output): (Runnable, Runnable) = (input.into(), output.into());
    let backend = crate::runtime::default_backend()?;
    let ones;
    let (data, inputs) = match data {
        Some(d) => (d, "the given data".to_string()),
        None => {
            let said;
            (ones, said) = ones_for(input)?;
            (&ones, said)
        }
    };
    // The two sessions are built once for the sizing round and every measurement.
    let pair = [("input".into(), input), ("output".into(), output)];
    let contest = Contest::new(&pair, data, backend, &BenchOptions::default())?;
    let rows = rows.min(contest.prepared[0].1.len());
    let mut kept: Kept = vec![vec![None; rows]; 2];
    // One untimed round sizes the measurement: MEASUREMENT_MS, 20 to 400 rounds.
    let probe = contest.time_keeping(1, 1, Some(&mut kept), &crate::measure::Silent)?;
    let round_ms = probe.models.iter().map(|m| m.median_ms).sum::<f64>().max(1e-3);
    let runs = ((MEASUREMENT_MS / round_ms) as usize).clamp(20, 400);
    let warmup = (runs / 10).max(3);
    let r = contest.time_keeping(runs, warmup, Some(&mut kept), progress)?;
    let mut check = LatencyCheck {
        runtime: r.runtime,
        runs,
        inputs,
        input_ms: r.models[0].median_ms,
        output_ms: r.models[1].median_ms,
        speedup: r.models[1].speedup,
    };
    if check.slower() {
        // Before calling it slower, a second measurement: rounds on a shared machine
        // scatter, and a false alarm costs the user as much as a missed one.
        let again = contest.time(runs, warmup, progress)?;
        check.runs *= 2;
        check.input_ms = (check.input_ms + again.models[0].median_ms) / 2.0;
        check.output_ms = (check.output_ms + again.models[1].median_ms) / 2.0;
        check.speedup = (check.speedup * again.models[1].speedup).sqrt();
    }
    contest.fill(&mut kept)?;
    let mut kept = kept.into_iter().map(|slots| slots.into_iter().flatten().collect());
    Ok((check, [kept.next().unwrap_or_default(), kept.next().unwrap_or_default()]))
}

/// Where time goes in the input and the output, by op type (for the report's plot).
#[derive(Clone, Debug, Serialize)]
pub struct OpTimes {
    /// The runtime profiled in.
    pub runtime: RuntimeInfo,
    /// Profiled runs each `total_ms` sums (batch 1, one thread).
    pub runs: usize,
    /// The input model's time by op type.
    pub input: Profile,
    /// The output model's.
    pub output: Profile,
}

/// Profiles `input` and `output` by op type in the process's runtime, at batch 1
/// on one thread, on `data` (or inputs of ones).
pub fn op_times(input: &Model, output: &Model, data: Option<&Dataset>) -> Result<OpTimes> {
    let backend = crate::runtime::default_backend()?;
    let ones;
    let data = match data {
        Some(d) => d,
        None => {
            ones = ones_for(input.into())?.0;
            &ones
        }
    };
    let options = BenchOptions { runs: 20, warmup: 2, profile: true, ..Default::default() };
    let r =
        bench(&[("input".into(), input), ("output".into(), output)], data, backend, &options, &crate::measure::Silent)?;
    let mut profiles = r.models.into_iter().map(|m| m.profile.unwrap_or_default());
    Ok(OpTimes {
        runtime: r.runtime,
        runs: options.runs.div_ceil(4),
        input: profiles.next().unwrap_or_default(),
        output: profiles.next().unwrap_or_default(),
    })
}

/// Inputs of ones for timing `model` without data, shaped as it declares, its symbolic dims at the
/// smallest size it runs at (a reflect pad, a strided 1-D conv, a detector's strides reject the
/// smallest; the batch is timed at 1 all the same); and how the timing names them.
fn ones_for(model: Runnable) -> Result<(Dataset, String)> {
    let inputs = model.feeds()?;
    let feeds = Model::from_graph(crate::ir::Graph { inputs, ..Default::default() }, 17);
    let names: Vec<String> = feeds.graph.inputs.iter().map(|v| v.name.clone()).collect();
    let session = model.session(&SessionOptions::default(), Some(&names))?;
    let size = crate::measure::sizes_that_run(&feeds, &session, 1).map_err(Error::Model)?[0];
    let arrays = crate::measure::made_up_inputs(&feeds, size, crate::measure::Fill::Ones)
        .map_err(|e| Error::Model(format!("{e}: pass data to time the model on")))?;
    // The batch axis (a first symbolic dim) is timed at one row whatever `size` is.
    let sized = crate::measure::has_open_dims(&feeds);
    let said = if sized { format!("inputs of ones, open dims at {size}") } else { "inputs of ones".into() };
    Ok((Dataset::from_arrays("inputs of ones", names.into_iter().zip(arrays).collect()), said))
}

/// The data cut into batches of `size` rows (at most 64 distinct batches).
fn batches_of(model: Runnable, data: &Dataset, size: usize) -> Result<Vec<Vec<Array>>> {
    let bound = data.bind(&model.feeds()?, None)?;
    let size = size.max(1);
    if bound.rows < size {
        return Err(Error::Data(format!("the data has {} rows, fewer than a batch of {size}", bound.rows)));
    }
    // Full batches only: every run does the same amount of work.
    let mut batches = Vec::new();
    for batch in bound.batches(size).take(64) {
        let (_, b) = batch?;
        if bound.rows_in(&b) == size {
            batches.push(b);
        }
    }
    Ok(batches)
}

fn profile_of(model: &Model, batches: &[Vec<Array>], options: &SessionOptions, runs: usize) -> Result<Profile> {
    let session = Session::new(model, options)?;
    for round in 0..runs {
        session.run(&batches[round % batches.len()])?;
    }
    session.profile()
}

fn named(name: &str, e: Error) -> Error {
    Error::Runtime(format!("{name}: {e}"))
}

/// The `q` quantile (0..=1) of `values`, by nearest rank.
fn percentile(values: &[f64], q: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    v[((v.len() - 1) as f64 * q).round() as usize]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outputs_the_rounds_did_not_reach_are_run_after_them() {
        use crate::ir::testing::{model, node, tensor, wavy};
        let m =
            model(vec![node("MatMul", &["x", "w"], "y", &[])], vec![tensor("w", &[4, 3], wavy)], &[1, 4], &["y"], 17);
        let x = ndarray::ArrayD::from_shape_fn(ndarray::IxDyn(&[6, 4]), |i| (i[0] * 4 + i[1]) as f32);
        let data =
            Dataset::from_arrays("rows.npz", std::collections::BTreeMap::from([("x".to_string(), Array::F32(x))]));
        let contest =
            Contest::new(&[("a".to_string(), &m), ("b".to_string(), &m)], &data, Backend::Tract, &Default::default())
                .unwrap();
        let mut kept: Kept = vec![vec![None; 5]; 2];
        contest.time_keeping(2, 0, Some(&mut kept), &crate::measure::Silent).unwrap();
        let reached: Vec<usize> = kept[1].iter().enumerate().filter(|(_, s)| s.is_some()).map(|(b, _)| b).collect();
        assert_eq!(reached, [0, 1], "two rounds ran the first two rows");
        contest.fill(&mut kept).unwrap();
        let session = Session::new(&m, &Default::default()).unwrap();
        for (b, slot) in kept[0].iter().enumerate() {
            let Some(Array::F32(kept)) = slot.as_ref().map(|o| &o[0]) else { panic!("row {b} not kept") };
            let Array::F32(direct) = &session.run(&contest.prepared[0].1[b]).unwrap()[0] else { panic!() };
            assert_eq!(kept, direct, "row {b}: its own output");
        }
    }

    #[test]
    fn percentiles_by_nearest_rank() {
        let v = [5.0, 1.0, 3.0, 2.0, 4.0];
        assert_eq!(super::percentile(&v, 0.5), 3.0);
        assert_eq!(super::percentile(&v, 0.0), 1.0);
        assert_eq!(super::percentile(&v, 1.0), 5.0);
        assert!(super::percentile(&[], 0.5).is_nan());
    }
}
