//! Which layers to keep float: each candidate group is quantized alone and the
//! model's output noise on a few calibration samples measured; the noisiest
//! groups fall back to float until the summed noise of the rest meets the
//! target. Noise powers of independent rounding errors add, so the sum is a
//! fair estimate of the whole model's noise.

use crate::data::{Array, Dataset};
use crate::ir::{fingerprint, Model};
use crate::measure::memo::{self, Memo};
use crate::measure::{Noise, Progress, Reference};
use crate::quant::registry;
use crate::quant::search::in_litert::{checked_in_litert, InLiteRt};
use crate::runtime::{feed_inputs, Session, SessionOptions};
use crate::Result;

/// At most this many samples of the calibration set measure sensitivity.
pub const SENSITIVITY_SAMPLES: usize = 16;
/// At most this fraction of the groups (of their weights, when sizes rank)
/// falls back to float.
pub const MAX_FALLBACK_FRACTION: f64 = 0.25;

/// Nodes judged together: one layer with weights, or every other node of an op type.
pub struct Group {
    /// A name for reports (the layer, or `all Softmax`).
    pub label: String,
    /// The node indices.
    pub nodes: Vec<usize>,
    /// Constant weight elements its nodes read (at least 1).
    pub weights: f64,
}

/// The groups a fallback judges, among `nodes`.
pub fn candidate_groups(model: &Model, nodes: &[usize]) -> Vec<Group> {
    let g = &model.graph;
    let mut groups: Vec<Group> = vec![];
    let mut by_type: std::collections::BTreeMap<String, Vec<usize>> = Default::default();
    for &n in nodes {
        let node = &g.nodes[n];
        let weighted = registry::rule(node).is_some_and(|r| {
            r.weights.iter().any(|s| node.input(s.input).is_some_and(|w| g.constant_site(w).is_some()))
        });
        if weighted {
            groups.push(Group { label: node.label(), nodes: vec![n], weights: weight_elements(model, n) });
        } else {
            by_type.entry(node.op_type.clone()).or_default().push(n);
        }
    }
    groups.extend(by_type.into_iter().map(|(op, nodes)| {
        let weights = nodes.iter().map(|&n| weight_elements(model, n)).sum();
        Group { label: format!("every quantized {op}"), nodes, weights }
    }));
    groups
}

/// The elements of node `n`'s constant weight inputs (1 when it has none).
fn weight_elements(model: &Model, n: usize) -> f64 {
    let (g, node) = (&model.graph, &model.graph.nodes[n]);
    let Some(rule) = registry::rule(node) else { return 1.0 };
    let elements = |w: &str| match g.constant_site(w) {
        Some(crate::ir::ConstantSite::Initializer(k)) => g.initializers[k].numel().unwrap_or(0),
        Some(_) => g.constant(w).and_then(|t| t.ok()).and_then(|t| t.numel()).unwrap_or(0),
        None => 0,
    };
    let total: usize = rule.weights.iter().filter_map(|s| node.input(s.input)).map(elements).sum();
    total.max(1) as f64
}

/// Makes the switched model of a list of groups.
pub type SwitchedBuilder<'a> = dyn Fn(&[Group]) -> Result<Model> + Sync + 'a;

/// How trial models are made.
pub struct Trials<'a> {
    /// The model with only the given nodes quantized, as the pass writes it.
    pub build: &'a (dyn Fn(&[usize]) -> Result<Model> + Sync),
    /// A model simulating every group's quantization behind one switch each
    /// (input [`SWITCHES`]): one session for all the per-group trials.
    pub switched: Option<&'a SwitchedBuilder<'a>>,
    /// Rank groups by output noise per weight element rather than by noise
    /// alone: a weight format's fallback costs file size, so several small
    /// layers may fall back where one large table would (minilm_l6 4-bit: the
    /// 30522×384 word table, half the model, is the 2nd noisiest layer but
    /// 20× costlier than a 384×1536 MatMul per unit of noise removed).
    pub by_size: bool,
    /// The result runs in LiteRT: the chosen set is checked there — each candidate converted
    /// and run at batch 1 — and groups fall back, or come back, by what LiteRT measures
    /// (its int8 kernels round differently from ONNX Runtime's, and the converter may compute
    /// a float-kept FULLY_CONNECTED from its int8 weights).
    pub in_litert: bool,
}

/// The extra input of a switched model: one element per group, 1 quantized, 0 float.
pub const SWITCHES: &str = "prunq_quantized_groups";

/// The simulation is trusted when, with every group quantized, its output noise
/// is within this factor (3 dB) of the real model's in the runtime; otherwise
/// (a CPU whose integer kernels saturate, an op the runtime computes
/// differently) every trial builds the real model.
const SIMULATION_SLACK: f64 = 2.0;

/// Trials are judged on enough samples for this many output values (at least
/// [`MIN_SENSITIVITY_SAMPLES`], at most [`SENSITIVITY_SAMPLES`]): 2 text lines
/// for ppocr_rec (265 000 values each), 2 sentence embeddings for minilm (384),
/// 16 images for a 10-class digit classifier. Trials cost one run each, so
/// this sets the search's time; on ppocr_rec and minilm 2 samples chose the
/// same layers as 16 (measured in ONNX Runtime, 2026-11).
const OUTPUT_VALUES: usize = 768;
/// Fewer calibration samples than this cannot rank layers.
pub const MIN_SENSITIVITY_SAMPLES: usize = 2;

/// Output noise with every candidate group quantized, per trial setup.
static EVERYTHING_QUANTIZED: Memo<Noise> = Memo::new();
/// Each group's output noise quantized alone, and whether simulated, per trial setup.
static GROUP_NOISE: Memo<(Vec<Noise>, bool)> = Memo::new();
/// The real model's noise with a set of groups float, per trial setup and set.
static READMISSION: Memo<Noise> = Memo::new();

/// What the sensitivity search measured: the nodes to keep float, each with
/// the reason, and each group's output SQNR when quantized alone.
pub struct Measured {
    /// Nodes kept float, each with the reason.
    pub float: Vec<(usize, String)>,
    /// Output SQNR with every candidate quantized.
    pub all_sqnr_db: f64,
    /// Empty when quantizing everything already met the target (no trial ran).
    pub groups: Vec<crate::quant::GroupSensitivity>,
    /// What the report should say besides (the check in LiteRT).
    pub notes: Vec<String>,
}

/// Output noise power relative to the signal's, in dB (300 dB for none).
fn db(noise: f64) -> f64 {
    -10.0 * noise.max(1e-30).log10()
}

/// Measures each group's effect on the output and picks the fewest to keep float so the output reaches `target_sqnr_db`.
pub fn choose_fallback(
    model: &Model,
    calib: &Dataset,
    groups: &[Group],
    trials: &Trials,
    target_sqnr_db: f64,
    batch_size: usize,
    progress: &dyn Progress,
) -> Result<Measured> {
    let bound = calib.bind(&feed_inputs(model), None)?;
    let batch_size = crate::measure::rows_per_run(model, batch_size);
    let float_model = Session::new(model, &Default::default())?;
    let judge = |rows: usize| Judge::new(&float_model, &bound, batch_size, rows);
    progress.start(1, "reference");
    let full = Judge::enough(&float_model, &bound, batch_size)?;
    progress.finish();
    let budget = 10f64.powf(-target_sqnr_db / 10.0);
    let real = |nodes: &[usize], judge: &Judge| -> Result<Noise> {
        judge.noise(&Session::new(&(trials.build)(nodes)?, &Default::default())?, None)
    };
    // One trial with every group quantized first: when that already meets the
    // target, nothing falls back and the per-group trials are not needed.
    let everything: Vec<usize> = groups.iter().flat_map(|g| g.nodes.iter().copied()).collect();
    let all_model = (trials.build)(&everything)?;
    // Everything measured below depends only on these (not on the target), so
    // it is measured once per process (see `memo`).
    let labels: Vec<(&str, &[usize])> = groups.iter().map(|g| (g.label.as_str(), g.nodes.as_slice())).collect();
    let key = memo::key((
        fingerprint(model),
        fingerprint(&all_model),
        labels,
        memo::batches_fingerprint(full.reference.batches()),
        format!("{:?}", crate::runtime::default_backend()?),
    ));
    // The simulation is built while the real model with every group quantized runs.
    let simulate = || -> Result<Option<(Session, Noise)>> {
        let Some(build) = trials.switched else { return Ok(None) };
        let session = Session::new(&build(groups)?, &Default::default())?;
        let simulated_all = full.noise(&session, Some(switches(groups.len(), None)))?;
        Ok(Some((session, simulated_all)))
    };
    let mut simulated = None;
    let real_all = EVERYTHING_QUANTIZED.get_or_measure(key, || {
        progress.start(1, "everything quantized");
        let (real_all, sim) =
            crate::parallel::join(|| full.noise(&Session::new(&all_model, &Default::default())?, None), simulate);
        progress.finish();
        simulated = Some(sim);
        real_all
    })?;
    // A `.tflite` output is judged in LiteRT as well, on more rows (see `in_litert`).
    let litert = match trials.in_litert {
        true => Some(InLiteRt::new(model, &float_model, &bound, calib, SENSITIVITY_SAMPLES.min(bound.rows))?),
        false => None,
    };
    // The nodes quantized when the groups in `float` stay float.
    let quantized_without = |float: &[usize]| -> Vec<usize> {
        (0..groups.len()).filter(|g| !float.contains(g)).flat_map(|g| groups[g].nodes.iter().copied()).collect()
    };
    let in_litert = |float: &[usize]| -> Result<f64> {
        let judge = litert.as_ref().expect("only called for a LiteRT output");
        Ok(judge.noise(&(trials.build)(&quantized_without(float))?)?.against(budget))
    };
    if real_all.against(budget) <= budget {
        let litert_met = match &litert {
            None => None,
            Some(judge) => Some(in_litert(&[])? <= budget).filter(|met| *met).map(|_| judge.rows),
        };
        if litert.is_none() || litert_met.is_some() {
            let mut notes = vec![];
            if let Some(rows) = litert_met {
                notes.push(format!("everything int8 meets the target in LiteRT too ({rows} calibration samples)"));
            }
            return Ok(Measured { float: vec![], all_sqnr_db: db(real_all.whole), groups: vec![], notes });
        }
    }
    let (measured, simulated) = GROUP_NOISE.get_or_measure(key, || {
        // A simulation the runtime cannot run only costs speed: each trial is then built for real.
        let switched = simulated.take().unwrap_or_else(simulate).ok().flatten().and_then(|(session, simulated_all)| {
            let ratio = simulated_all.whole.max(f64::MIN_POSITIVE) / real_all.whole;
            (1.0 / SIMULATION_SLACK..=SIMULATION_SLACK).contains(&ratio).then_some(session)
        });
        progress.start(groups.len() as u64, "sensitivity");
        // Each group's trial is independent: they run in parallel, results in group order.
        let all: Vec<usize> = (0..groups.len()).collect();
        let noise: Vec<Noise> =
            crate::parallel::map_upto(crate::parallel::MODEL_RUNS_IN_FLIGHT, &all, |&g| match &switched {
                Some(session) => full.noise(session, Some(switches(groups.len(), Some(g)))),
                None => real(&groups[g].nodes, &full),
            })
            .into_iter()
            .collect::<Result<_>>()?;
        progress.advance(groups.len() as u64);
        progress.finish();
        Ok((noise, switched.is_some()))
    })?;
    let how = if simulated { "simulated on" } else { "on" };
    let noise: Vec<f64> = measured.iter().map(|n| n.against(budget)).collect();
    let cost: Vec<f64> = groups.iter().map(|g| if trials.by_size { g.weights } else { 1.0 }).collect();
    let max_cost = cost.iter().sum::<f64>() * MAX_FALLBACK_FRACTION;
    let mut kept = most_sensitive(&noise, &cost, budget, max_cost);
    let mut notes = vec![];
    if let Some(judge) = &litert {
        let estimate = kept.len();
        progress.start(MAX_READMISSIONS as u64 + 4, "LiteRT checks");
        let mut measure = |float: &[usize]| {
            progress.advance(1);
            progress.check_stop()?;
            in_litert(float)
        };
        let (float, lt) = checked_in_litert(kept, &noise, &cost, max_cost, budget, &mut measure)?;
        progress.finish();
        notes.push(format!(
            "the float fallback was checked in LiteRT (the .tflite at batch 1, {} calibration samples): output SQNR \
             {:.1} dB (the worst slice weighed in) with {} of {} groups float ({} by ONNX Runtime's estimate){}",
            judge.rows,
            db(lt),
            float.len(),
            groups.len(),
            estimate,
            if lt > budget {
                " — short of the target with as many groups float as the fallback may keep"
            } else {
                ""
            }
        ));
        kept = float;
    } else if !kept.is_empty() {
        progress.start(kept.len().min(MAX_READMISSIONS) as u64 + 1, "re-admission");
        let mut wide = None;
        kept = readmit(kept, &noise, &cost, budget, &mut |float| {
            progress.advance(1);
            progress.check_stop()?;
            READMISSION
                .get_or_measure(memo::key((key, float)), || {
                    if wide.is_none() {
                        wide = Some(judge(SENSITIVITY_SAMPLES.min(bound.rows))?);
                    }
                    // Judged alone: its batches run in parallel, a session a thread.
                    let model = (trials.build)(&quantized_without(float))?;
                    let reference = &wide.as_ref().expect("set above").reference;
                    let options = SessionOptions { sessions: reference.sessions_in_parallel(), ..Default::default() };
                    reference.noise_in_parallel(&Session::new(&model, &options)?)
                })
                .map(|n| n.against(budget))
        })?;
        progress.finish();
    }
    let float = kept
        .iter()
        .flat_map(|&g| {
            let n = measured[g];
            let slice = match n.worst_slice * budget / SLICE_FLOOR > n.whole {
                true => format!(" (its worst output slice {:.1} dB)", db(n.worst_slice)),
                false => String::new(),
            };
            let why = format!(
                "kept float: quantized alone, {} gives output SQNR {:.1} dB{slice} {how} {} calibration samples",
                groups[g].label,
                db(n.whole),
                full.rows
            );
            groups[g].nodes.iter().map(move |&n| (n, why.clone()))
        })
        .collect();
    let measured = groups
        .iter()
        .zip(&measured)
        .enumerate()
        .map(|(g, (group, noise))| crate::quant::GroupSensitivity {
            group: group.label.clone(),
            sqnr_db: db(noise.whole),
            worst_slice_db: (noise.worst_slice > 0.0).then(|| db(noise.worst_slice)),
            kept_float: kept.contains(&g),
        })
        .collect();
    Ok(Measured { float, all_sqnr_db: db(real_all.whole), groups: measured, notes })
}

/// Each candidate's output noise against `model`'s, on the calibration samples
/// the fallback judges on; the candidates run in parallel.
pub fn noise_of(model: &Model, candidates: &[Model], calib: &Dataset, batch_size: usize) -> Result<Vec<Noise>> {
    let bound = calib.bind(&feed_inputs(model), None)?;
    let batch_size = crate::measure::rows_per_run(model, batch_size);
    let judge = Judge::enough(&Session::new(model, &Default::default())?, &bound, batch_size)?;
    crate::parallel::map(candidates, |m| judge.noise(&Session::new(m, &Default::default())?, None))
        .into_iter()
        .collect()
}

/// The float model's outputs on some calibration rows, against which trials are judged.
struct Judge {
    rows: usize,
    reference: Reference,
}

impl Judge {
    /// The float model's outputs on `rows` rows spread over the data.
    fn new(float_model: &Session, bound: &crate::data::Bound, batch_size: usize, rows: usize) -> Result<Judge> {
        Ok(Judge { rows, reference: Reference::on_rows(float_model, bound, batch_size, rows)? })
    }

    /// On as many rows as give [`OUTPUT_VALUES`] output values, within
    /// [`MIN_SENSITIVITY_SAMPLES`]..=[`SENSITIVITY_SAMPLES`].
    fn enough(float_model: &Session, bound: &crate::data::Bound, batch_size: usize) -> Result<Judge> {
        let within = (MIN_SENSITIVITY_SAMPLES, SENSITIVITY_SAMPLES);
        let (reference, rows) = Reference::for_values(float_model, bound, batch_size, OUTPUT_VALUES, within)?;
        Ok(Judge { rows, reference })
    }

    /// A trial's output noise, whole and in the worst slice.
    fn noise(&self, session: &Session, switches: Option<Array>) -> Result<Noise> {
        self.reference.noise(session, switches)
    }
}

/// No slice may have less than 10 dB SQNR (noise a tenth of its signal) —
/// what `compare` warns about — whatever the target for the whole output.
const SLICE_FLOOR: f64 = 0.1;

/// How a trial's noise is held against the fallback's budget.
pub(in crate::quant) trait AgainstBudget {
    /// One figure to hold against `budget` (the whole output's allowed noise):
    /// the whole output's noise, or the worst slice's scaled so that it
    /// reaches the budget at [`SLICE_FLOOR`].
    fn against(&self, budget: f64) -> f64;
}

impl AgainstBudget for Noise {
    fn against(&self, budget: f64) -> f64 {
        self.whole.max(self.worst_slice * budget / SLICE_FLOOR)
    }
}

/// The switches of a switched model: one group on, or every group.
fn switches(groups: usize, on: Option<usize>) -> Array {
    let mut s = ndarray::ArrayD::from_elem(vec![groups], if on.is_some() { 0f32 } else { 1.0 });
    if let Some(g) = on {
        s[g] = 1.0;
    }
    Array::F32(s)
}

/// Group indices, most noise per unit of cost first (ties by index).
pub(super) fn noisiest(noise: &[f64], cost: &[f64]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..noise.len()).collect();
    order.sort_by(|&a, &b| (noise[b] / cost[b]).total_cmp(&(noise[a] / cost[a])).then(a.cmp(&b)));
    order
}

/// The groups to keep float, most noise per cost first, until the rest's summed
/// noise meets `budget`; at most `max_cost` in all (at least one group).
fn most_sensitive(noise: &[f64], cost: &[f64], budget: f64, max_cost: f64) -> Vec<usize> {
    let mut remaining: f64 = noise.iter().sum();
    let mut spare = max_cost;
    let mut float = vec![];
    for g in noisiest(noise, cost) {
        if remaining <= budget {
            break;
        }
        if cost[g] > spare && !float.is_empty() {
            continue;
        }
        spare -= cost[g];
        remaining -= noise[g];
        float.push(g);
    }
    float
}

/// At most this many float groups are tried back in int8 by [`readmit`].
const MAX_READMISSIONS: usize = 8;

/// The summed-noise estimate is cautious — rounding errors partly cancel, and
/// each group's noise was measured with every other group float — so the
/// groups it keeps float are tried back in int8, least noisy first, each kept
/// quantized when the real model (`measure(float groups)`, on more samples than
/// the ranking) still meets `budget`. minilm_l6 static (SmoothQuant α 0.6): the
/// estimate kept 7 of 36 weight MatMuls float at 23 dB (test cosine 0.9991), the
/// real model met 23 dB with 2 (0.9976); at 25 dB, 4 (0.9985, NN 95.3 %).
/// Nothing changes when the chosen set itself misses the budget.
///
/// Every candidate is first tried back at once: noise grows as groups are quantized, so when
/// the model with all of them in int8 meets the budget, so does every step on the way, and one
/// trial stands for them all (minilm_l6: 2 real trials instead of 9, 1.9 → 0.4 s). Otherwise they
/// are tried one by one.
pub(super) fn readmit(
    kept: Vec<usize>,
    noise: &[f64],
    cost: &[f64],
    budget: f64,
    measure: &mut dyn FnMut(&[usize]) -> Result<f64>,
) -> Result<Vec<usize>> {
    if measure(&kept)? > budget {
        return Ok(kept);
    }
    let mut float = kept.clone();
    let mut order = kept;
    order.sort_by(|&a, &b| (noise[a] / cost[a]).total_cmp(&(noise[b] / cost[b])).then(a.cmp(&b)));
    order.truncate(MAX_READMISSIONS);
    let all_back: Vec<usize> = float.iter().copied().filter(|f| !order.contains(f)).collect();
    let all_tried = order.len() > 1;
    if all_tried && measure(&all_back)? <= budget {
        return Ok(all_back);
    }
    for g in order {
        let without: Vec<usize> = float.iter().copied().filter(|&f| f != g).collect();
        // The step to all of them back was measured above, and missed.
        if all_tried && without == all_back {
            continue;
        }
        if measure(&without)? <= budget {
            float = without;
        }
    }
    Ok(float)
}

/// The float fallback for a pass over candidate `nodes` of `model`:
/// `trials.build(only)` returns the model with only those nodes quantized. The
/// chosen nodes (indices into `model`) are recorded in `report` with the reason.
pub fn fallback(
    model: &Model,
    nodes: &[usize],
    calib: &Dataset,
    target_sqnr_db: f64,
    trials: &Trials,
    report: &mut crate::quant::QuantReport,
    progress: &dyn Progress,
) -> Result<Vec<usize>> {
    let groups = candidate_groups(model, nodes);
    let measured = choose_fallback(model, calib, &groups, trials, target_sqnr_db, 8, progress)?;
    for (n, why) in &measured.float {
        report.skipped.push(crate::quant::Skipped::new(&model.graph.nodes[*n].label(), why.clone()));
    }
    report.sensitivity = measured.groups;
    report.notes.extend(measured.notes);
    report.quantized_sqnr_db = Some(measured.all_sqnr_db);
    Ok(measured.float.into_iter().map(|(n, _)| n).collect())
}

/// A pass run on only some nodes (by index) of a model, recording into a report.
pub type QuantizeOnly<'a> = dyn Fn(&mut Model, Vec<usize>, &mut crate::quant::QuantReport) -> Result<()> + Sync + 'a;

/// Quantizes `model` with `quantize(model, only, report)` on the `nodes` that
/// measure safe: each candidate's sensitivity is measured on `calib` (trials built
/// by the same function), the worst stay float until the output SQNR meets
/// `target_sqnr_db`. Returns the first output of each node kept float (names
/// survive passes; indices do not).
pub fn quantize_with_fallback(
    model: &mut Model,
    nodes: &[usize],
    calib: &Dataset,
    target_sqnr_db: f64,
    quantize: &QuantizeOnly<'_>,
    report: &mut crate::quant::QuantReport,
    progress: &dyn Progress,
) -> Result<Vec<String>> {
    let prepared = model.clone();
    let build = |only: &[usize]| {
        let mut m = prepared.clone();
        quantize(&mut m, only.to_vec(), &mut crate::quant::QuantReport::default())?;
        Ok(m)
    };
    let trials = Trials { build: &build, switched: None, by_size: true, in_litert: false };
    let float = fallback(&prepared, nodes, calib, target_sqnr_db, &trials, report, progress)?;
    let keep: Vec<usize> = nodes.iter().copied().filter(|n| !float.contains(n)).collect();
    quantize(model, keep, report)?;
    Ok(float.iter().filter_map(|&n| prepared.graph.nodes[n].outputs.first().cloned()).collect())
}

#[cfg(test)]
mod tests {
    use super::{candidate_groups, choose_fallback, most_sensitive, readmit, Trials};
    use crate::data::{Array, Dataset};
    use crate::ir::testing::{int, model, node, tensor, wavy};
    use crate::ir::Model;

    /// A head concatenating a large quantity (×1000) and a small one (×0.01) into
    /// one `[N, 2]` output. "Quantizing" the small one's layer costs it half its
    /// value (6 dB: collapsed), the large one's a ten-thousandth: the output as a
    /// whole keeps 80 dB, so only the slice judge sees the collapse.
    #[test]
    fn a_collapsed_output_slice_keeps_its_layer_float_though_the_whole_output_meets_the_target_measured_once() {
        let head = model(
            vec![
                node("MatMul", &["x", "wa"], "a", &[]),
                node("MatMul", &["x", "wb"], "b", &[]),
                node("Concat", &["a", "b"], "y", &[("axis", int(1))]),
            ],
            vec![
                tensor("wa", &[3, 1], |i| 1000.0 * (1.0 + wavy(i))),
                tensor("wb", &[3, 1], |i| 0.01 * (1.0 + wavy(i))),
            ],
            &[8, 3],
            &["y"],
            13,
        );
        let builds = std::sync::atomic::AtomicUsize::new(0);
        let build = |only: &[usize]| -> crate::Result<Model> {
            builds.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let mut m = head.clone();
            for &n in only {
                let w = m.graph.nodes[n].inputs[1].clone();
                let error = if w == "wb" { 0.5 } else { 1e-4 };
                let t = m.graph.initializers.iter_mut().find(|t| t.name == w).expect("weight");
                let scaled = t.to_array::<f32>()?.mapv(|v| v * (1.0 + error));
                *t = crate::ir::Tensor::from_array(&w, &scaled);
            }
            Ok(m)
        };
        let x = ndarray::ArrayD::from_shape_fn(vec![8, 3], |i| wavy(i[0] * 3 + i[1]).abs() + 0.1);
        let calib = Dataset::from_arrays("made up", [("x".to_string(), Array::F32(x))].into());
        let groups = candidate_groups(&head, &[0, 1]);
        let trials = Trials { build: &build, switched: None, by_size: false, in_litert: false };
        let measured = choose_fallback(&head, &calib, &groups, &trials, 23.0, 8, &crate::measure::Silent).unwrap();
        let float: Vec<usize> = measured.float.iter().map(|(n, _)| *n).collect();
        assert_eq!(float, vec![1], "{:?}", measured.float);
        assert!(measured.all_sqnr_db > 60.0, "the whole output looks fine: {} dB", measured.all_sqnr_db);
        assert!(measured.float[0].1.contains("worst output slice"), "{}", measured.float[0].1);
        let b = measured.groups.iter().find(|g| g.kept_float).expect("the small head's group");
        assert!(b.worst_slice_db.is_some_and(|db| db < 10.0), "{:?}", b.worst_slice_db);
        // Measured once: at another target the same trials are not run again (only
        // the everything-quantized model is built, to recognise them).
        let first = builds.swap(0, std::sync::atomic::Ordering::Relaxed);
        assert!(first >= 3, "everything, then each group: {first}");
        let again = choose_fallback(&head, &calib, &groups, &trials, 20.0, 8, &crate::measure::Silent).unwrap();
        assert_eq!(again.float, measured.float);
        assert_eq!(builds.load(std::sync::atomic::Ordering::Relaxed), 1);
    }

    /// The estimate keeps two groups float; the real model (whose errors half cancel here) meets the
    /// budget with the less noisy one back in int8, not with both; a set that misses stays as chosen.
    #[test]
    fn readmission_takes_back_the_least_noisy_groups_while_the_real_model_meets_the_budget() {
        let noise = [0.004, 0.001, 0.002, 0.0005];
        let budget = 0.002;
        let cost = [1.0; 4];
        let kept = most_sensitive(&noise, &cost, budget, 4.0);
        assert_eq!(kept, vec![0, 2], "noisiest first until the summed rest meets the budget");
        let mut tried = vec![];
        let mut halved = |float: &[usize]| {
            tried.push(float.to_vec());
            Ok((0..noise.len()).filter(|g| !float.contains(g)).map(|g| noise[g]).sum::<f64>() / 2.0)
        };
        assert_eq!(readmit(kept.clone(), &noise, &cost, budget, &mut halved).unwrap(), vec![0]);
        let none_float: Vec<usize> = vec![];
        assert_eq!(
            tried,
            vec![vec![0, 2], none_float.clone(), vec![0]],
            "the chosen set, all back at once, then least noisy first (not all back again)"
        );
        let mut missing = |_: &[usize]| Ok(1.0);
        assert_eq!(readmit(kept.clone(), &noise, &cost, budget, &mut missing).unwrap(), vec![0, 2]);
        // Errors that cancel more: all back at once meets the budget, one trial for both.
        let mut tried = vec![];
        let mut quartered = |float: &[usize]| {
            tried.push(float.to_vec());
            Ok((0..noise.len()).filter(|g| !float.contains(g)).map(|g| noise[g]).sum::<f64>() / 4.0)
        };
        assert_eq!(readmit(kept, &noise, &cost, budget, &mut quartered).unwrap(), none_float);
        assert_eq!(tried, vec![vec![0, 2], none_float]);
    }

    /// Ranked by size, a large table that is the noisiest layer stays in the low-bit format when
    /// smaller layers carry enough of the noise; no more than the allowed cost falls back.
    #[test]
    fn ranked_by_size_small_noisy_layers_fall_back_before_a_large_table() {
        let noise = [0.004, 0.003, 0.003, 0.001];
        let cost = [80.0, 10.0, 10.0, 10.0];
        assert_eq!(most_sensitive(&noise, &[1.0; 4], 0.004, 4.0), vec![0, 1]);
        assert_eq!(most_sensitive(&noise, &[1.0; 4], 0.004, 1.0), vec![0], "at most the cost allowed");
        assert_eq!(most_sensitive(&noise, &cost, 0.004, 27.5), vec![1, 2], "the table (0) costs 8× per unit of noise");
        assert_eq!(most_sensitive(&noise, &cost, 0.0001, 27.5), vec![1, 2], "a third 10 passes the 27.5 allowed");
        assert_eq!(most_sensitive(&noise, &cost, 0.0001, 1.0), vec![1], "at least one group");
    }
}
