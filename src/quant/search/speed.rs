//! Quantized only where it is faster: after the accuracy fallback, the model
//! with every chosen node in int8 is timed against the one with all activations
//! float, in the runtime that will run it; then, from the faster of the two,
//! groups of nodes of one kind (an op type; grouped convs apart, their integer
//! kernels differ most) are switched one at a time, and a switch is kept when it
//! measures clearly faster twice. Float-kept nodes keep int8 weights, in the form
//! the runtime folds at load. Integer kernels differ by runtime and CPU — ONNX
//! Runtime's int8 convs on x86 without VNNI, tract's whole integer path on x86 —
//! so this is measured, not looked up.

use crate::data::Dataset;
use crate::eval::{BenchOptions, Contest};
use crate::ir::{fingerprint, Model};
use crate::measure::memo::{self, Memo};
use crate::measure::{Progress, Silent};
use crate::quant::report::{QuantReport, Skipped};
use crate::runtime::Runnable;
use crate::Result;
use std::collections::BTreeMap;

/// How much faster float must measure, in each of two measurements, before a
/// group is reverted: well past the few per cent by which rounds scatter on a
/// shared machine, so that the decision — and the output's bytes — repeat.
pub const REVERT_ABOVE: f64 = 1.08;

/// The nodes that stay int8, and those kept float with the reason.
type SpeedChoice = (Vec<usize>, Vec<(usize, String)>);

/// Which nodes stay int8 and which float for speed, per models, data and runtime.
static SPEED_TRIALS: Memo<SpeedChoice> = Memo::new();

/// Times pairs of models taking turns, each measurement ~0.6 s (15 to 200
/// rounds) sized by a short first run of the first pair.
struct Timer<'a> {
    data: &'a Dataset,
    backend: crate::runtime::Backend,
    round_ms: std::cell::Cell<Option<f64>>,
}

impl<'a> Timer<'a> {
    fn new(data: &'a Dataset, backend: crate::runtime::Backend) -> Self {
        Timer { data, backend, round_ms: std::cell::Cell::new(None) }
    }

    /// The speed-up of `b` over `a` when it measures past REVERT_ABOVE twice.
    fn faster(&self, a: &Model, b: &Model) -> Result<Option<f64>> {
        // In LiteRT the two run as the converter writes them (at the data's sizes).
        let converted = match self.backend {
            crate::runtime::Backend::LiteRt => {
                let options = crate::litert::sizes_from_data(a, Some(self.data), &Default::default())?;
                Some((crate::litert::convert(a, &options)?.bytes, crate::litert::convert(b, &options)?.bytes))
            }
            _ => None,
        };
        let pair: [(String, Runnable); 2] = match &converted {
            Some((a, b)) => [("a".into(), Runnable::LiteRt(a)), ("b".into(), Runnable::LiteRt(b))],
            None => [("a".into(), Runnable::Onnx(a)), ("b".into(), Runnable::Onnx(b))],
        };
        // The two sessions are built once for the sizing run and both measurements.
        let contest = Contest::new(&pair, self.data, self.backend, &BenchOptions::default())?;
        let time = |runs: usize| -> Result<(f64, f64)> {
            let r = contest.time(runs, (runs / 10).max(3), &Silent)?;
            Ok((r.models[1].speedup, r.models.iter().map(|m| m.median_ms).sum::<f64>()))
        };
        let round_ms = match self.round_ms.get() {
            Some(ms) => ms,
            // A short first run sizes every later measurement.
            None => time(15)?.1,
        };
        self.round_ms.set(Some(round_ms));
        let runs = ((600.0 / round_ms) as usize).clamp(15, 200);
        let first = time(runs)?.0;
        Ok((first >= REVERT_ABOVE && time(runs)?.0 >= REVERT_ABOVE).then_some(first))
    }
}

/// The first of `trials` trial models (`build(k)` makes the k-th, only when it is reached) that
/// measures faster than `current` on `data` and whose output SQNR `sqnr_of` accepts (`None`:
/// under its floor); its index, the speed-up and the SQNR. Used for MatMuls with activations
/// quantized at run time (dynamic) inside a static model.
pub fn first_faster_trial(
    current: &Model,
    trials: usize,
    build: &dyn Fn(usize) -> Result<Model>,
    sqnr_of: &dyn Fn(&Model) -> Result<Option<f64>>,
    data: &Dataset,
    progress: &dyn Progress,
) -> Result<Option<(usize, f64, f64)>> {
    let backend = crate::runtime::default_backend()?;
    let timer = Timer::new(data, backend);
    progress.start(trials as u64, "dynamic MatMul trials");
    for k in 0..trials {
        progress.advance(1);
        progress.check_stop()?;
        let model = build(k)?;
        let Some(speedup) = timer.faster(current, &model)? else { continue };
        if let Some(sqnr) = sqnr_of(&model)? {
            progress.finish();
            return Ok(Some((k, speedup, sqnr)));
        }
    }
    progress.finish();
    Ok(None)
}

/// What kind of group a node belongs to.
fn kind(model: &Model, node: usize) -> String {
    let n = &model.graph.nodes[node];
    match (n.op_type.as_str(), n.attr_int("group").unwrap_or(1)) {
        ("Conv", g) if g > 1 => "Conv (grouped)".into(),
        (op, _) => op.into(),
    }
}

/// `chosen` less the groups whose float form measures faster; `build` makes the
/// model with a given set of nodes quantized. Starts from the side that measures
/// faster: with everything quantized, groups are kept float one by one while
/// that is faster; when everything float is faster (float kernels beat integer
/// ones and every Q/DQ boundary costs), groups are quantized one by one only
/// where that is faster. `litert`: timed in LiteRT (each model converted) rather than in the
/// process's ONNX runtime.
pub fn keep_faster(
    prepared: &Model,
    chosen: &[usize],
    build: &dyn Fn(&[usize]) -> Result<Model>,
    data: &Dataset,
    litert: bool,
    report: &mut QuantReport,
    progress: &dyn Progress,
) -> Result<Vec<usize>> {
    let mut groups: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for &n in chosen {
        groups.entry(kind(prepared, n)).or_default().push(n);
    }
    let backend = if litert { crate::runtime::Backend::LiteRt } else { crate::runtime::default_backend()? };
    let runtime = crate::runtime::RuntimeInfo::of(backend);
    let quantized = build(chosen)?;
    // Timed once per process for the same models and data (see `memo`).
    let key = memo::key((fingerprint(prepared), fingerprint(&quantized), chosen, &data.path, format!("{runtime:?}")));
    let (mut current, kept_float) = SPEED_TRIALS.get_or_measure(key, || {
        let timer = Timer::new(data, backend);
        let faster = |a: &Model, b: &Model| timer.faster(a, b);
        progress.start(groups.len() as u64 + 1, "speed trials");
        let float = build(&[])?;
        let from_float = faster(&quantized, &float)?;
        progress.advance(1);
        progress.check_stop()?;
        let (mut current, mut current_model) = match from_float {
            Some(_) => (vec![], float),
            None => (chosen.to_vec(), quantized),
        };
        let mut kept_float = vec![];
        for (label, nodes) in groups {
            let trial: Vec<usize> = match from_float {
                Some(_) => current.iter().chain(&nodes).copied().collect(),
                None => current.iter().copied().filter(|n| !nodes.contains(n)).collect(),
            };
            let trial_model = build(&trial)?;
            let gain = faster(&current_model, &trial_model)?;
            let float_wins = match (from_float, gain) {
                (Some(speedup), None) => Some(format!("everything float measured {speedup:.2}× faster than everything int8, and int8 {label} did not measure faster")),
                (None, Some(speedup)) => Some(format!("the {label} group measured {speedup:.2}× faster in float than in int8")),
                _ => None,
            };
            if gain.is_some() {
                current = trial;
                current_model = trial_model;
            }
            if let Some(why) = float_wins {
                kept_float.extend(nodes.iter().map(|&n| (n, why.clone())));
            }
            progress.advance(1);
            progress.check_stop()?;
        }
        progress.finish();
        Ok((current, kept_float))
    })?;
    if current.is_empty() && !chosen.is_empty() {
        report.notes.push(format!(
            "no int8 kernel measured faster than float in {runtime} on this CPU: every layer computes in float, \
             from int8 weights the runtime unpacks at load — the file is smaller, the speed is float's"
        ));
    }
    for (n, why) in kept_float {
        let reason = format!("kept float: {why} in {runtime} (batch 1, one thread)");
        report.skipped.push(Skipped::new(&prepared.graph.nodes[n].label(), reason));
    }
    current.sort_unstable();
    Ok(current)
}
