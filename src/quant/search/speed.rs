//! Quantized only where it is faster: after the accuracy fallback, the model
//! with every chosen node in int8 is timed against the one with all activations
//! float, in the runtime that will run it; then, from the faster of the two,
//! groups of nodes of one kind (an op type; grouped convs apart, their integer
//! kernels differ most) are switched one at a time, and a switch is kept when it
//! measures clearly faster twice. The switches are screened together first (every
//! group's trial model and the current one taking turns in one measurement), so a
//! switch that is not faster costs its own runs only: ppocr_rec's six groups took
//! 4.9 s one pair at a time. Float-kept nodes keep int8 weights, in the form
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

/// What a pair's 15-round sizing run must see for the pair to be measured further: halfway to
/// [`REVERT_ABOVE`]. A ratio of 15 rounds scatters by about ±3 % from run to run (ppocr_rec_v4's
/// output against its input, six runs: 1.72–1.84×), so a pair seen under this is unlikely to
/// measure past REVERT_ABOVE twice; ppocr_rec_v4's dynamic-MatMul trial, about as fast as static,
/// was seen at 1.01× and, at a bar of 1.0, cost 3 s of judging and measuring before it was turned
/// down.
const SIZED_BAR: f64 = 1.04;

/// Rounds of a sizing run and of a screening. Whole runs differ from each other more than their
/// rounds do (a round's times scatter by under 1 %, p10–p90), so longer runs sharpen the ratio
/// little: ppocr_rec_v4's output against its input, 15 rounds 1.72–1.84× in six runs, 40 rounds
/// 1.77–1.81× in five, 130 rounds 1.74–1.79× in three.
const SHORT_ROUNDS: usize = 15;

/// The nodes that stay int8, and those kept float with the reason.
type SpeedChoice = (Vec<usize>, Vec<(usize, String)>);

/// Which nodes stay int8 and which float for speed, per models, data and runtime.
static SPEED_TRIALS: Memo<SpeedChoice> = Memo::new();

/// A screening's first rounds, after which a trial seen under [`SCREEN_CUT`] is decided: a fifth
/// of [`SHORT_ROUNDS`]' scatter is still far less than the 8 % between the cut and REVERT_ABOVE.
const SCREEN_FIRST_ROUNDS: usize = 5;
const SCREEN_CUT: f64 = 1.0;

/// Times pairs of models taking turns, each measurement [`crate::eval::MEASUREMENT_MS`] (15 to 200
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

    /// The speed-up of `b` over `a` when it measures past REVERT_ABOVE twice (`screened`: the
    /// first of the two, already measured by [`Timer::screen`]).
    fn faster(&self, a: &Model, b: &Model, screened: Option<f64>) -> Result<Option<f64>> {
        // The two sessions are built once for the sizing run and both measurements.
        self.with_pair(a, b, |contest| {
            let sized = self.sized(contest)?;
            // A pair the sizing run already measured under SIZED_BAR is decided there
            // (ppocr_rec's float model, 0.57× the int8 one's speed, and its dynamic-MatMul trial
            // each cost a measurement more).
            if screened.is_none() && sized.is_some_and(|speedup| speedup < SIZED_BAR) {
                return Ok(None);
            }
            let runs = self.runs();
            let measure = || -> Result<f64> { Ok(contest.time(runs, (runs / 10).max(3), &Silent)?.models[1].speedup) };
            let first = match screened {
                Some(speedup) => speedup,
                None => measure()?,
            };
            Ok((first >= REVERT_ABOVE && measure()? >= REVERT_ABOVE).then_some(first))
        })
    }

    /// The first pair's short run, which sizes every later measurement: its speed-up (`None` once
    /// sized). As in a screening, a pair seen under [`SCREEN_CUT`] after its first
    /// [`SCREEN_FIRST_ROUNDS`] is decided there, far under SIZED_BAR (ppocr_rec_v4's float model
    /// at 0.6×: 0.36 s of rounds less); any other runs its [`SHORT_ROUNDS`].
    fn sized(&self, contest: &Contest) -> Result<Option<f64>> {
        if self.round_ms.get().is_some() {
            return Ok(None);
        }
        let mut times = contest.round_ms(SCREEN_FIRST_ROUNDS, 3)?;
        if speedup_of_pair(&times) >= SCREEN_CUT {
            let more = contest.round_ms(SHORT_ROUNDS - SCREEN_FIRST_ROUNDS, 1)?;
            for (times, more) in times.iter_mut().zip(more) {
                times.extend(more);
            }
        }
        let rounds: Vec<f64> = times[0].iter().zip(&times[1]).map(|(a, b)| a + b).collect();
        self.round_ms.set(Some(crate::eval::median(&rounds)));
        Ok(Some(speedup_of_pair(&times)))
    }

    /// Runs `f` with `a` and `b` ready to be timed taking turns, their sessions built once. In
    /// LiteRT the two run as the converter writes them (at the data's sizes).
    fn with_pair<T>(&self, a: &Model, b: &Model, f: impl FnOnce(&Contest) -> Result<T>) -> Result<T> {
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
        f(&Contest::new(&pair, self.data, self.backend, &BenchOptions::default())?)
    }

    /// Rounds per measurement: MEASUREMENT_MS of a pair's rounds, sized by the first pair timed.
    fn runs(&self) -> usize {
        let ms = crate::eval::MEASUREMENT_MS;
        self.round_ms.get().map_or(SHORT_ROUNDS, |round| ((ms / round) as usize).clamp(SHORT_ROUNDS, 200))
    }

    /// Each of `trials`' speed-up over `current` from one measurement of them all taking turns,
    /// [`SHORT_ROUNDS`] of them: a trial that does not reach REVERT_ABOVE here is decided for the
    /// cost of its own runs, without sessions and warm-up of its own (ppocr_rec_v4's seven models,
    /// 30 rounds as a pair's measurement took: 2.4 s). A trial seen under [`SCREEN_CUT`] after
    /// [`SCREEN_FIRST_ROUNDS`] sits out the rest (ppocr_rec_v4: four of six, at 0.77–0.98×).
    fn screen(&self, current: &Model, trials: &[&Model]) -> Result<Vec<f64>> {
        let models: Vec<(String, &Model)> = std::iter::once(current)
            .chain(trials.iter().copied())
            .enumerate()
            .map(|(k, m)| (k.to_string(), m))
            .collect();
        let contest = Contest::new(&models, self.data, self.backend, &BenchOptions::default())?;
        let all: Vec<usize> = (0..models.len()).collect();
        let mut ratios = contest.ratios(&all, SCREEN_FIRST_ROUNDS, 3)?;
        let open: Vec<usize> = std::iter::once(0)
            .chain((1..models.len()).filter(|&k| crate::eval::speedup_of(&ratios[k]) >= SCREEN_CUT))
            .collect();
        if open.len() > 1 {
            let more = contest.ratios(&open, SHORT_ROUNDS - SCREEN_FIRST_ROUNDS, 1)?;
            for (&k, more) in open.iter().zip(more).skip(1) {
                ratios[k].extend(more);
            }
        }
        Ok(ratios[1..].iter().map(|r| crate::eval::speedup_of(r)).collect())
    }

    /// How many trial models one screening may hold sessions for: up to 8, fewer when each
    /// model's weights are large (every session holds its own), one (no screening) in LiteRT.
    fn at_once(&self, model: &Model) -> usize {
        const SCREEN_BYTES: usize = 512 << 20;
        let bytes: usize = model.graph.initializers.iter().map(|t| t.byte_size()).sum();
        match self.backend {
            crate::runtime::Backend::LiteRt => 1,
            _ => (SCREEN_BYTES / bytes.max(1)).clamp(1, 8),
        }
    }
}

/// The first of `trials` trial models (`build(k)` makes the k-th, only when it is reached) that
/// measures faster than `current` on `data` and whose output SQNR `sqnr_of` accepts (`None`:
/// under its floor); its index, the speed-up and the SQNR. Used for MatMuls with activations
/// quantized at run time (dynamic) inside a static model. The SQNR is judged before the timing's
/// measurements (only the first trial's short sizing run comes first): after the first trial
/// (which pays for the reference outputs) a judgement costs one run over a few calibration rows,
/// a timing two measurements — minilm_l6's two trials both measured faster and both missed the
/// floor, 6.4 s timed first, about half judged first. The same trial is chosen either way.
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
        // Timed before judged: a trial is taken when it is both faster and accurate enough, and
        // the timing is the cheaper test — its sizing run decides a trial it sees no faster, a
        // measurement (0.6 s) most others — while judging runs the reference, the static model
        // and the trial over the judge's rows (minilm_l6: 1.3 s, for a trial seen at 1.04× by
        // the sizing run in about half the runs, then judged 0.4 dB short).
        let Some(speedup) = timer.faster(current, &model, None)? else { continue };
        if let Some(sqnr) = sqnr_of(&model)? {
            progress.finish();
            return Ok(Some((k, speedup, sqnr)));
        }
    }
    progress.finish();
    Ok(None)
}

/// The second model's speed-up over the first from each one's milliseconds per round.
fn speedup_of_pair(times: &[Vec<f64>]) -> f64 {
    let ratios: Vec<f64> = times[1].iter().zip(&times[0]).map(|(b, a)| b / a.max(1e-9)).collect();
    crate::eval::speedup_of(&ratios)
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
/// where that is faster. Groups whose int8 kernels usually lose (the registry's
/// `int8_usually_slower`) start float either way and are quantized only where that
/// measures faster: each decision is then taken far from the switch threshold.
/// `litert`: timed in LiteRT (each model converted; its int8 kernels have no such
/// exception) rather than in the process's ONNX runtime.
pub fn keep_faster(
    prepared: &Model,
    chosen: &[usize],
    build: &(dyn Fn(&[usize]) -> Result<Model> + Sync),
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
        progress.start(groups.len() as u64 + 1, "speed trials");
        let float = build(&[])?;
        let from_float = timer.faster(&quantized, &float, None)?;
        progress.advance(1);
        progress.check_stop()?;
        let at_once = timer.at_once(&quantized);
        let starts_float = |nodes: &[usize]| {
            !litert && nodes.iter().all(|&n| crate::quant::registry::int8_usually_slower(&prepared.graph.nodes[n]))
        };
        let (mut current, mut current_model) = match from_float {
            Some(_) => (vec![], float),
            None if groups.values().any(|nodes| starts_float(nodes)) => {
                let current: Vec<usize> =
                    groups.values().filter(|nodes| !starts_float(nodes)).flatten().copied().collect();
                let model = build(&current)?;
                (current, model)
            }
            None => (chosen.to_vec(), quantized),
        };
        let mut kept_float = vec![];
        let mut pending: Vec<(String, Vec<usize>)> = groups.into_iter().collect();
        while !pending.is_empty() {
            // The next groups' trials from the current set, screened together; the fastest that
            // passes the screen and a second measurement of its own becomes the current set, and
            // every other group is screened again from there (a switch's worth depends on the
            // set: digits_resnet from its grouped convs float measured its plain convs 1.86×
            // faster float and its grouped ones 3.38× faster int8 — taking the first of the two
            // wrote a model 0.58× the input's speed, the fastest 1.0×).
            let take = pending.len().min(at_once);
            // Built in parallel (ppocr_rec_v4: six models).
            let trials = crate::parallel::map(&pending[..take], |(_, nodes)| {
                // A group float in the current set is tried int8, an int8 one float.
                let trial: Vec<usize> = if current.contains(&nodes[0]) {
                    current.iter().copied().filter(|n| !nodes.contains(n)).collect()
                } else {
                    current.iter().chain(nodes).copied().collect()
                };
                let model = build(&trial)?;
                Ok((trial, model))
            })
            .into_iter()
            .collect::<Result<Vec<_>>>()?;
            let screened: Vec<Option<f64>> = match take {
                1 => vec![None],
                _ => timer.screen(&current_model, &trials.iter().map(|(_, m)| m).collect::<Vec<_>>())?.into_iter().map(Some).collect(),
            };
            let mut fastest_first: Vec<usize> = (0..take).filter(|&k| screened[k].is_none_or(|s| s >= REVERT_ABOVE)).collect();
            fastest_first.sort_by(|&a, &b| screened[b].unwrap_or(0.0).total_cmp(&screened[a].unwrap_or(0.0)).then(a.cmp(&b)));
            let mut accepted = None;
            for k in fastest_first {
                if let Some(speedup) = timer.faster(&current_model, &trials[k].1, screened[k])? {
                    accepted = Some((k, speedup));
                    break;
                }
            }
            // The accepted group is decided; without one, every group screened is (not faster).
            let decided: Vec<usize> = accepted.map_or((0..take).collect(), |(k, _)| vec![k]);
            for &k in decided.iter().rev() {
                let (label, nodes) = pending.remove(k);
                let gain = accepted.map(|(_, speedup)| speedup);
                let tried_int8 = !current.contains(&nodes[0]);
                let float_wins = match (tried_int8, from_float, gain) {
                    (true, Some(speedup), None) => Some(format!("everything float measured {speedup:.2}× faster than everything int8, and int8 {label} did not measure faster")),
                    (true, None, None) => Some(format!("int8 {label} did not measure faster than float (its int8 kernels usually run slower)")),
                    (false, _, Some(speedup)) => Some(format!("the {label} group measured {speedup:.2}× faster in float than in int8")),
                    _ => None,
                };
                if let Some(why) = float_wins {
                    kept_float.extend(nodes.iter().map(|&n| (n, why.clone())));
                }
                progress.advance(1);
                progress.check_stop()?;
            }
            if let Some((k, _)) = accepted {
                (current, current_model) = trials.into_iter().nth(k).expect("a screened trial");
            }
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
