//! Static quantization in QDQ form: activation ranges calibrated on real data,
//! `QuantizeLinear → DequantizeLinear` pairs inserted on the tensors around
//! every op the registry quantizes, weights per-channel int8, biases int32
//! with scale s_x · s_w. Runtimes fuse the pattern into integer kernels.

use super::calibrate::{calibrator, Calibrator, Method};
use super::pack::int_tensor;
use super::registry::{self, Activations};
use super::report::{QuantReport, Skipped, TensorRecord};
use super::scheme::{params_for_range, Granularity, QParams, QScheme, QType};
use super::weights::{replace_weight, replace_with_dequantize, WeightFormat};
use crate::data::{Array, Dataset};
use crate::eval::Progress;
use crate::ir::{ops, DataType, Graph, GraphIndex, Model, Node, Tensor};
use crate::runtime::{feed_inputs, Session, SessionOptions};
use crate::Result;
use ndarray::ArrayD;
use std::collections::{BTreeMap, BTreeSet};

/// Output SQNR the automatic float fallback aims for by default: 0.5 % noise power.
pub const DEFAULT_FALLBACK_SQNR_DB: f64 = 23.0;

/// Static QDQ quantization's options.
#[derive(Clone, Debug)]
pub struct StaticOptions {
    /// How activation ranges are chosen.
    pub method: Method,
    /// For `Method::Percentile` (and `Auto`).
    pub percentile: f64,
    /// Activations: uint8 affine by default (ONNX Runtime's u8s8 kernels are
    /// the fast ones on x86 with VNNI); int8 symmetric on request.
    pub activation_type: QType,
    /// Symmetric activations (zero point 0).
    pub symmetric_activations: bool,
    /// Node names or op types left float.
    pub exclude: Vec<String>,
    /// Quantize only these op types (all the registry knows when empty).
    pub op_types: Vec<String>,
    /// Rows per calibration batch.
    pub batch_size: usize,
    /// Use at most this many calibration samples.
    pub max_samples: Option<usize>,
    /// A calibrated range beyond ±this marks a tensor carrying an attention
    /// mask (or another sentinel): it stays float.
    pub mask_threshold: f32,
    /// Keep the most sensitive layers float until the output's SQNR on the
    /// calibration data is estimated to reach this (dB); `None`: quantize all.
    pub fallback_sqnr_db: Option<f64>,
    /// Weights use 7 of their 8 bits.
    pub reduce_range: bool,
    /// Weights as uint8 around zero point 128 instead of int8: ONNX Runtime's
    /// remedy ("U8U8") for x86 CPUs without VNNI, whose u8×s8 kernels add pairs
    /// of products in 16 bits and saturate; the u8×u8 kernels do not, and keep
    /// all 8 bits (where 7-bit weights would cost accuracy).
    pub unsigned_weights: bool,
    /// Groups of nodes whose float form measures faster in the runtime stay float
    /// (see `speed.rs`). Off by default in the library, whose results then never
    /// depend on the machine; the CLI turns it on unless `--no-latency-check`.
    pub keep_faster: bool,
    /// Take each Conv/Gemm's mean output drift on the calibration data out of its
    /// bias (kept when the output SQNR on held-out calibration rows improves; see
    /// `bias_correction.rs`). Off by default: measured, it raises the output SQNR
    /// but can lower a task metric (ppocr_rec_v4 with the fallback: 82.8 → 79.7 %
    /// exact lines), while without the fallback it recovers it (66.4 → 83.6 %).
    pub bias_correction: bool,
    /// SmoothQuant's α: activation outliers of MatMuls moved into their weights
    /// first (see `smooth.rs`); `None`: off.
    pub smooth: Option<super::smooth::Alpha>,
    /// Round the weights of Conv/Gemm/MatMul layers by GPTQ on the calibration
    /// data (after SmoothQuant, on the grid round-to-nearest would use) instead of
    /// to nearest; see `gptq.rs`.
    pub gptq: bool,
    /// The weights GPTQ rounded, by name (filled by the pass when `gptq` is on).
    pub rounded: Option<std::sync::Arc<BTreeMap<String, super::gptq::Rounded>>>,
    /// The nodes an earlier run chose (its report's `decided`): used as they are,
    /// instead of the fallback and speed trials.
    pub decided: Option<StaticDecision>,
}

/// Which nodes static quantization ran in int8 and which with activations
/// quantized at run time (by label), after the fallback and the speed trials:
/// what a recipe records so that replaying it needs no timing.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StaticDecision {
    /// Groups that stay int8.
    pub int8: Vec<String>,
    /// Groups quantized dynamically.
    pub dynamic: Vec<String>,
    /// The activation ranges `Method::Auto` chose (min-max or percentile).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ranges: Option<Method>,
}

impl Default for StaticOptions {
    fn default() -> Self {
        StaticOptions {
            method: Method::Auto,
            percentile: 99.999,
            activation_type: QType::UInt8,
            symmetric_activations: false,
            exclude: vec![],
            op_types: vec![],
            batch_size: 8,
            max_samples: None,
            mask_threshold: 1e4,
            fallback_sqnr_db: Some(DEFAULT_FALLBACK_SQNR_DB),
            reduce_range: false,
            unsigned_weights: false,
            keep_faster: false,
            bias_correction: false,
            smooth: None,
            gptq: false,
            rounded: None,
            decided: None,
        }
    }
}

/// Which tensors get QDQ, and which share another's parameters.
pub(super) struct Plan {
    pub nodes: Vec<usize>,
    /// The activation tensors each quantized node reads or writes.
    pub node_tensors: BTreeMap<usize, Vec<String>>,
    /// Tensors calibrated on their own.
    pub calibrated: BTreeSet<String>,
    /// Pass-through outputs and the tensor whose parameters they reuse.
    pub followers: Vec<(String, String)>,
}

fn plan(model: &Model, options: &StaticOptions) -> Result<Plan> {
    let g = &model.graph;
    let index = GraphIndex::new(g);
    let is_const = |t: &str| g.constant_site(t).is_some();
    let mut nodes = vec![];
    let mut node_tensors = BTreeMap::new();
    let mut calibrated = BTreeSet::new();
    let order = g.topo_order()?;
    for &n in &order {
        let node = &g.nodes[n];
        let Some(rule) = registry::rule(node) else { continue };
        let chosen = options.op_types.is_empty() || options.op_types.contains(&node.op_type);
        if rule.activations != Activations::Quantize || node.is_any_of(&options.exclude) || !chosen {
            continue;
        }
        if is_normalization_epsilon(model, &index, node) {
            continue;
        }
        nodes.push(n);
        let mut mine = vec![];
        let inputs: Vec<usize> =
            if node.op_type == "Concat" { (0..node.inputs.len()).collect() } else { rule.activation_inputs.to_vec() };
        for i in inputs {
            if let Some(t) = node.input(i).filter(|t| !is_const(t)) {
                mine.push(t.to_string());
            }
        }
        if let Some(y) = node.outputs.first().filter(|_| !ops::is(registry::FLOAT_OUTPUT_KERNELS, &node.op_type)) {
            mine.push(fused_activation_output(model, &index, y, options).unwrap_or_else(|| y.clone()));
        }
        calibrated.extend(mine.iter().cloned());
        node_tensors.insert(n, mine);
    }
    // Inputs of a fused Relu/Clip are not quantized: the runtime fuses them.
    let fused: BTreeSet<String> = calibrated
        .iter()
        .filter_map(|t| index.producer(t).map(|p| &g.nodes[p]))
        .filter(|p| ops::is(registry::FUSED_ACTIVATIONS, &p.op_type))
        .filter_map(|p| p.input(0).map(str::to_string))
        .collect();
    calibrated.retain(|t| !fused.contains(t) || g.outputs.iter().any(|o| &o.name == t));
    // tract 0.23 fuses Softmax → QuantizeLinear(u8) into a quantized softmax
    // that saturates every value (seen on digits_vit: all 255), so Softmax
    // outputs stay float and the MatMul reading them dequantizes only V.
    calibrated.retain(|t| index.producer(t).is_none_or(|p| g.nodes[p].op_type != "Softmax"));
    // Pass-through ops keep their input's scale on their output.
    let mut followers = vec![];
    let mut quantized: BTreeSet<String> = calibrated.clone();
    for &n in &order {
        let node = &g.nodes[n];
        let Some(rule) = registry::rule(node) else { continue };
        if rule.activations != Activations::PassThrough || node.is_any_of(&options.exclude) {
            continue;
        }
        if let (Some(x), Some(y)) = (node.input(0), node.outputs.first()) {
            if quantized.contains(x) && !quantized.contains(y) {
                followers.push((y.clone(), x.to_string()));
                quantized.insert(y.clone());
            }
        }
    }
    for tensors in node_tensors.values_mut() {
        tensors.retain(|t| calibrated.contains(t));
    }
    Ok(Plan { nodes, node_tensors, calibrated, followers })
}

/// The `+ ε` of a decomposed LayerNorm or BatchNorm (`var + ε → Sqrt`): its input
/// is a variance, mostly tiny with rare large values, and quantizing it to
/// zero turns the division that follows into an explosion. Stays float, as
/// LayerNormalization itself does.
fn is_normalization_epsilon(model: &Model, index: &GraphIndex, node: &Node) -> bool {
    let g = &model.graph;
    node.op_type == "Add"
        && node.inputs.iter().any(|i| g.constant_site(i).is_some())
        && node.outputs.first().is_some_and(|y| {
            index.consumers(y).iter().any(|(c, _)| matches!(g.nodes[*c].op_type.as_str(), "Sqrt" | "Reciprocal"))
        })
}

/// The output of a Relu or Clip that alone consumes `y`, if there is one.
fn fused_activation_output(model: &Model, index: &GraphIndex, y: &str, options: &StaticOptions) -> Option<String> {
    let g = &model.graph;
    let [(c, _)] = index.consumers(y) else { return None };
    let consumer = &g.nodes[*c];
    let fusable = ops::is(registry::FUSED_ACTIVATIONS, &consumer.op_type) && !consumer.is_any_of(&options.exclude);
    (fusable && g.outputs.iter().all(|o| o.name != y)).then(|| consumer.outputs[0].clone())
}

/// Extremes of tensors computed inside the graph.
struct Reduced {
    /// Float tensors with finite extremes: their minimum and maximum.
    ranges: BTreeMap<String, (f32, f32)>,
    /// Tensors that turned out not to be float (shapes, indices): nothing to calibrate.
    not_float: BTreeSet<String>,
}

/// The minimum and maximum of each float tensor in `tensors` over the first
/// `rows` rows, by ReduceMin/ReduceMax nodes added to a copy of the model;
/// tensors with a non-finite extreme are in neither set. `None` when the runtime
/// will not run the augmented copy (a tensor ReduceMin does not take).
fn reduced_min_max(
    model: &Model,
    bound: &crate::data::Bound,
    rows: usize,
    tensors: &[String],
    batch_size: usize,
    progress: &dyn Progress,
) -> Result<Option<Reduced>> {
    if tensors.is_empty() {
        return Ok(Some(Reduced { ranges: BTreeMap::new(), not_float: BTreeSet::new() }));
    }
    // The pairs go at the end, the last-made tensor's first. ONNX Runtime's
    // default execution order is a depth-first walk up from the graph's
    // leaves taken from the last node back: so the first activation's pair
    // is reached first, runs as soon as its producer has, and each tensor is
    // freed right after it is reduced. ppocr_rec at batch 8: 136 MB and 3.5×
    // faster, against 1.7 GB with the pairs in production order at the end
    // (every activation held to the end) and 3.1 GB (prunq) with each pair
    // right after its producer.
    let wanted: BTreeSet<&String> = tensors.iter().collect();
    let reduce = |t: &String| {
        ["ReduceMin", "ReduceMax"].map(|op| crate::ir::Node {
            name: format!("{t}_prunq_{op}"),
            op_type: op.into(),
            inputs: vec![t.clone()],
            outputs: vec![format!("{t}_prunq_{op}")],
            attributes: vec![crate::ir::Attribute::int("keepdims", 0)],
            ..Default::default()
        })
    };
    let mut m = model.clone();
    let produced: Vec<&String> =
        model.graph.nodes.iter().flat_map(|n| n.outputs.iter()).filter(|t| wanted.contains(t)).collect();
    let placed: BTreeSet<&String> = produced.iter().copied().collect();
    for t in tensors.iter().filter(|t| !placed.contains(t)).chain(produced.into_iter().rev()) {
        m.graph.nodes.extend(reduce(t));
    }
    let capture: Vec<String> =
        tensors.iter().flat_map(|t| ["ReduceMin", "ReduceMax"].map(|op| format!("{t}_prunq_{op}"))).collect();
    let session = match Session::new(&m, &SessionOptions { capture, capture_only: true, ..Default::default() }) {
        Ok(s) => s,
        Err(_) => return Ok(None),
    };
    let mut ranges: BTreeMap<String, (f32, f32)> = BTreeMap::new();
    let mut not_float = BTreeSet::new();
    progress.start(rows as u64, "calibrate");
    let batches = bound.batches_upto(batch_size, rows).map(|b| b.map(|(_, batch)| batch));
    let run = crate::parallel::ordered(
        batches,
        |batch| session.run(batch),
        |batch, outputs| {
            for (t, pair) in tensors.iter().zip(outputs.chunks(2)) {
                let (Array::F32(lo), Array::F32(hi)) = (&pair[0], &pair[1]) else {
                    not_float.insert(t.clone());
                    continue;
                };
                let (lo, hi) =
                    (lo.iter().copied().fold(f32::NAN, f32::min), hi.iter().copied().fold(f32::NAN, f32::max));
                let r = ranges.entry(t.clone()).or_insert((lo, hi));
                // NaN wins here on purpose: any non-finite extreme sends the tensor to the full capture.
                r.0 = if r.0.is_nan() || lo.is_nan() { f32::NAN } else { r.0.min(lo) };
                r.1 = if r.1.is_nan() || hi.is_nan() { f32::NAN } else { r.1.max(hi) };
            }
            progress.advance(bound.rows_in(&batch) as u64);
            Ok(())
        },
    );
    progress.finish();
    if run.is_err() {
        return Ok(None);
    }
    ranges.retain(|t, (lo, hi)| lo.is_finite() && hi.is_finite() && !not_float.contains(t));
    Ok(Some(Reduced { ranges, not_float }))
}

/// What calibration found.
#[derive(Clone)]
struct Calibrated {
    /// Each calibrated float tensor's range.
    ranges: BTreeMap<String, (f32, f32)>,
    /// Each calibrated float tensor's smallest and largest value (min-max's ranges).
    extremes: BTreeMap<String, (f32, f32)>,
    /// Float tensors holding infinities or NaN on the calibration data (attention
    /// masks written as -inf): quantizing them would turn -inf into a finite value.
    non_finite: BTreeSet<String>,
}

/// Runs the calibration data through the model and returns each tensor's range.
fn calibrate(
    model: &Model,
    data: &Dataset,
    tensors: &BTreeSet<String>,
    options: &StaticOptions,
    progress: &dyn Progress,
) -> Result<Calibrated> {
    let bound = data.bind(&feed_inputs(model), None)?;
    let rows = options.max_samples.map_or(bound.rows, |m| m.min(bound.rows));
    // `optimize` calibrates one prepared model for several candidates (fallback targets):
    // the ranges depend only on what is keyed here, so they are measured once.
    let key = super::memo::key((
        crate::ir::fingerprint(model),
        super::memo::bound_fingerprint(&bound, options.batch_size, rows)?,
        tensors,
        format!("{:?} {} {:?} {}", options.method, options.percentile, options.activation_type, options.batch_size),
        format!("{:?}", crate::runtime::default_backend()?),
    ));
    CALIBRATION.get_or_measure(key, || measure_ranges(model, &bound, rows, tensors, options, progress))
}

/// Ranges measured once per process (see `calibrate`).
static CALIBRATION: super::memo::Memo<Calibrated> = super::memo::Memo::new();

fn measure_ranges(
    model: &Model,
    bound: &crate::data::Bound,
    rows: usize,
    tensors: &BTreeSet<String>,
    options: &StaticOptions,
    progress: &dyn Progress,
) -> Result<Calibrated> {
    let feeds: BTreeSet<&str> = bound.names.iter().map(String::as_str).collect();
    let mut captured: Vec<String> = tensors.iter().filter(|t| !feeds.contains(t.as_str())).cloned().collect();
    let mut cals: BTreeMap<String, Box<dyn Calibrator + Send>> =
        tensors.iter().map(|t| (t.clone(), calibrator(options.method, options.percentile))).collect();
    let mut float = BTreeSet::new();
    let mut non_finite = BTreeSet::new();
    // Each tensor's minimum and maximum computed inside the graph first: the
    // runtime hands back two numbers per tensor instead of the tensor
    // (gigabytes per batch on ppocr_rec). Min and max are exact, so for MinMax
    // these are the ranges of a full capture; the histogram methods capture
    // only the finite float tensors whole below.
    if let Some(reduced) = reduced_min_max(model, bound, rows, &captured, options.batch_size, progress)? {
        non_finite.extend(
            captured.iter().filter(|t| !reduced.ranges.contains_key(*t) && !reduced.not_float.contains(*t)).cloned(),
        );
        captured.retain(|t| reduced.ranges.contains_key(t) && options.method != Method::MinMax);
        // The histogram methods still count every value, but need no pass to find the range.
        for (name, (lo, hi)) in reduced.ranges {
            if let Some(cal) = cals.get_mut(&name) {
                cal.know_range(lo, hi);
                float.insert(name);
            }
        }
    }
    // Nothing left to capture: only the graph inputs are observed, straight from the data.
    let session = Session::capturing(model, &captured)?;
    let (batch_size, in_flight) = match &session {
        Some(s) => capture_batches(s, bound, options.batch_size)?,
        None => (options.batch_size, crate::parallel::threads()),
    };
    let passes = if cals.values().any(|c| c.needs_second_pass()) { 2 } else { 1 };
    progress.start((rows * passes) as u64, "calibrate");
    for pass in 0..passes {
        // A second pass runs the model again only for captured tensors that need it.
        let again: BTreeSet<String> =
            cals.iter().filter(|(_, c)| pass == 1 && c.needs_second_pass()).map(|(n, _)| n.clone()).collect();
        let run_model = pass == 0 || captured.iter().any(|t| again.contains(t));
        let batches = bound.batches_upto(batch_size, rows).map(|b| b.map(|(_, batch)| batch));
        // Batches run in parallel; the calibrators see them in order, as in one sequential pass.
        crate::parallel::ordered_upto(
            in_flight,
            batches,
            |batch| session.as_ref().filter(|_| run_model).map_or(Ok(vec![]), |s| s.run(batch)),
            |batch, outputs| {
                let named = captured.iter().zip(outputs.iter()).chain(bound.names.iter().zip(batch.iter()));
                for (name, value) in named {
                    if pass == 1 && !again.contains(name) {
                        continue;
                    }
                    let Some(cal) = cals.get_mut(name) else { continue };
                    let Array::F32(a) = value else { continue };
                    float.insert(name.clone());
                    let a = a.as_standard_layout();
                    let values = a.as_slice().expect("standard layout");
                    if values.iter().any(|v| !v.is_finite()) {
                        non_finite.insert(name.clone());
                    }
                    if pass == 0 {
                        cal.observe(values);
                    } else {
                        cal.observe_again(values);
                    }
                }
                progress.advance(bound.rows_in(&batch) as u64);
                Ok(())
            },
        )?;
    }
    progress.finish();
    let levels = 1usize << options.activation_type.bits();
    let kept: Vec<_> = cals.into_iter().filter(|(n, _)| float.contains(n) && !non_finite.contains(n)).collect();
    let ranges = kept.iter().map(|(n, c)| (n.clone(), c.range(levels))).collect();
    let extremes = kept.iter().map(|(n, c)| (n.clone(), c.extremes())).collect();
    Ok(Calibrated { ranges, extremes, non_finite })
}

/// Bytes of captured tensors the calibration batches in flight may hold together.
const CAPTURE_BYTES: usize = 256 << 20;

/// Rows per calibration batch and batches in flight when every captured
/// tensor comes back whole: as many as `CAPTURE_BYTES` hold across the batches
/// running at once (measured on one row), at most `wanted` rows and one batch
/// a thread. The histograms count the same values whatever the batch, and
/// memory stays bounded whatever `--threads` (each batch in flight is a
/// runtime session's arena holding it: ppocr_rec captures 178 MB a row, so
/// one row at a time — 8 threads peaked at 3.1 GB before this bound).
fn capture_batches(session: &Session, bound: &crate::data::Bound, wanted: usize) -> Result<(usize, usize)> {
    let threads = crate::parallel::threads().max(1);
    let Some(first) = bound.batches_upto(1, 1).next() else { return Ok((wanted, threads)) };
    let (_, batch) = first?;
    let bytes: usize = session.run(&batch)?.iter().map(|a| a.dtype().byte_len(a.len()).unwrap_or(a.len())).sum();
    let in_flight = (CAPTURE_BYTES / bytes.max(1)).clamp(1, threads);
    Ok(((CAPTURE_BYTES / (bytes.max(1) * in_flight)).clamp(1, wanted.max(1)), in_flight))
}

/// Static quantization: Q/DQ pairs on calibrated activations and quantized weights, the fallback and speed trials as `options` say.
pub fn quantize_static(
    model: &mut Model,
    calib: &Dataset,
    options: &StaticOptions,
    report: &mut QuantReport,
    progress: &dyn Progress,
) -> Result<()> {
    let ranks = crate::analysis::rank_lookup(model);
    // 16-bit Q/DQ arrived in opset 21; per-channel Q/DQ in 13.
    let opset = if options.activation_type.bits() > 8 { 21 } else { 13 };
    crate::transform::upgrade_opset(model, opset, &|n| ranks.get(n).copied())?;
    crate::transform::fold_batchnorm(model)?;
    if let Some(alpha) = options.smooth {
        let smoothed = super::smooth::smooth(model, calib, alpha, options.reduce_range)?;
        if !smoothed.is_empty() {
            let alphas: BTreeSet<String> = smoothed.iter().map(|s| s.alpha.to_string()).collect();
            report.notes.push(format!(
                "SmoothQuant (α {alpha}): the activations of {} MatMul groups divided per channel, their weights multiplied{}",
                smoothed.len(),
                if alpha == super::smooth::Alpha::Auto {
                    format!(" (α chosen per group: {})", alphas.into_iter().collect::<Vec<_>>().join(", "))
                } else {
                    String::new()
                }
            ));
        }
        report.smoothing = smoothed;
    }
    let rounded_options;
    let options = if options.gptq {
        let rounded = gptq_rounding(model, calib, options, progress)?;
        report
            .notes
            .push(format!("GPTQ: the weights of {} layers rounded from their inputs' statistics", rounded.len()));
        rounded_options = StaticOptions { rounded: Some(std::sync::Arc::new(rounded)), ..options.clone() };
        &rounded_options
    } else {
        options
    };
    let float_model = options.bias_correction.then(|| model.clone());
    let plan = plan(model, options)?;
    let calibrated = calibrate(model, calib, &plan.calibrated, options, progress)?;
    for name in &calibrated.non_finite {
        report
            .skipped
            .push(Skipped::new(name, "holds infinite or NaN values on the calibration data (a mask?)".into()));
    }
    let (ranges, params, skipped) = choose_ranges(model, &plan, &calibrated, options, calib, report, progress)?;
    report.skipped.extend(skipped);
    let (chosen, dynamic) = match &options.decided {
        Some(decided) => decided_nodes(model, &plan, decided)?,
        None => choose_nodes(model, &plan, &params, options, calib, report, progress)?,
    };
    let label = |n: &usize| model.graph.nodes[*n].label();
    report.decided = Some(StaticDecision {
        int8: chosen.iter().map(label).collect(),
        dynamic: dynamic.iter().map(label).collect(),
        ranges,
    });
    // Layers kept float still get int8 weights (weight-only): nearly free in
    // accuracy, and the file stays small.
    *model = with_dynamic(model, &plan, &chosen, &dynamic, &params, options, report)?;
    if let Some(float) = float_model {
        if let Some((before, after)) = super::bias_correction::correct_biases(&float, model, calib, report)? {
            report.notes.push(format!(
                "bias correction: {} layers' biases corrected, output SQNR on the calibration data {before:.1} → {after:.1} dB",
                report.bias_correction.len()
            ));
        }
    }
    Ok(())
}

/// Each activation's scale and zero point, by tensor.
type ActivationParams = BTreeMap<String, (f32, i32)>;

/// Each activation's quantization parameters from its calibrated range; the
/// tensors that stay float (masks, degenerate scales) with the reason.
fn activation_params(
    model: &Model,
    ranges: &BTreeMap<String, (f32, f32)>,
    options: &StaticOptions,
) -> Result<(ActivationParams, Vec<Skipped>)> {
    let mut params = ActivationParams::new();
    let mut skipped = vec![];
    for (name, &(lo, hi)) in ranges {
        if lo.abs().max(hi.abs()) > options.mask_threshold {
            skipped.push(Skipped::new(name, format!("range [{lo:.3e}, {hi:.3e}] carries a mask or sentinel")));
            continue;
        }
        let p = params_for_range(lo, hi, options.activation_type, options.symmetric_activations, false);
        params.insert(name.clone(), p);
    }
    for (tensor, why) in degenerate_scales(model, &params, options)? {
        params.remove(&tensor);
        skipped.push(Skipped::new(&tensor, why));
    }
    Ok((params, skipped))
}

/// Activation parameters from the method's ranges. `Method::Auto` builds the
/// all-int8 model with min-max and with percentile ranges and keeps the one
/// closer to the original on the calibration data (min-max on a tie), or the
/// choice `decided` recorded; which it was is returned. With bias correction
/// it keeps min-max: judged after each one's correction, percentile read
/// 13.8 dB against 12.3 on held-out calibration rows of ppocr_rec_v4 but
/// fewer test lines (77.3 % against 85.9 %), and the judging cost three
/// corrections (330 s against 60).
fn choose_ranges(
    model: &Model,
    plan: &Plan,
    calibrated: &Calibrated,
    options: &StaticOptions,
    calib: &Dataset,
    report: &mut QuantReport,
    progress: &dyn Progress,
) -> Result<(Option<Method>, ActivationParams, Vec<Skipped>)> {
    if options.method != Method::Auto {
        let (params, skipped) = activation_params(model, &calibrated.ranges, options)?;
        return Ok((None, params, skipped));
    }
    let min_max = activation_params(model, &calibrated.extremes, options)?;
    let percentile = activation_params(model, &calibrated.ranges, options)?;
    let recorded = options.decided.as_ref().and_then(|d| d.ranges);
    let chosen = match recorded {
        Some(m) => m,
        None if min_max.0 == percentile.0 || options.bias_correction => Method::MinMax,
        None => {
            let build = |params: &BTreeMap<String, (f32, i32)>| {
                apply(model, plan, &plan.nodes, &plan.nodes, params, options, &mut QuantReport::default())
            };
            progress.start(1, "ranges");
            let candidates = [build(&min_max.0)?, build(&percentile.0)?];
            let noise = super::sensitivity::noise_of(model, &candidates, calib, options.batch_size)?;
            progress.finish();
            let budget = 10f64.powf(-options.fallback_sqnr_db.unwrap_or(DEFAULT_FALLBACK_SQNR_DB) / 10.0);
            let (a, b) = (noise[0].against(budget), noise[1].against(budget));
            let chosen = if b < a { Method::Percentile } else { Method::MinMax };
            let db = |n: f64| -10.0 * n.max(f64::MIN_POSITIVE).log10();
            report.notes.push(format!(
                "activation ranges: {} (everything int8: output SQNR {:.1} dB with min-max ranges, {:.1} dB with \
                 the {} percentile, on the calibration data)",
                if chosen == Method::Percentile { "percentile" } else { "min-max" },
                db(noise[0].whole),
                db(noise[1].whole),
                options.percentile
            ));
            chosen
        }
    };
    let (params, skipped) = if chosen == Method::MinMax { min_max } else { percentile };
    Ok((Some(chosen), params, skipped))
}

/// The nodes of `decided`, by index; an unknown label or one the plan does not
/// quantize is an error (the recipe was made for another model).
fn decided_nodes(model: &Model, plan: &Plan, decided: &StaticDecision) -> Result<(Vec<usize>, Vec<usize>)> {
    let find = |labels: &[String]| -> Result<Vec<usize>> {
        let mut nodes = labels
            .iter()
            .map(|l| {
                plan.nodes.iter().copied().find(|&n| model.graph.nodes[n].label() == *l).ok_or_else(|| {
                    crate::Error::Usage(format!(
                        "decided: node '{l}' is not one static quantization can quantize in this model"
                    ))
                })
            })
            .collect::<Result<Vec<_>>>()?;
        nodes.sort_unstable();
        Ok(nodes)
    };
    Ok((find(&decided.int8)?, find(&decided.dynamic)?))
}

/// Which planned nodes run int8 and which dynamic: all of them, less those the
/// accuracy fallback keeps float, less those measured faster in float or dynamic.
fn choose_nodes(
    model: &Model,
    plan: &Plan,
    params: &BTreeMap<String, (f32, i32)>,
    options: &StaticOptions,
    calib: &Dataset,
    report: &mut QuantReport,
    progress: &dyn Progress,
) -> Result<(Vec<usize>, Vec<usize>)> {
    let mut chosen = plan.nodes.clone();
    if let Some(target) = options.fallback_sqnr_db {
        let build = |nodes: &[usize]| apply(model, plan, nodes, nodes, params, options, &mut QuantReport::default());
        let switched = |groups: &[super::sensitivity::Group]| {
            super::switched::switched_model(model, plan, params, groups, options)
        };
        let trials = super::sensitivity::Trials { build: &build, switched: Some(&switched) };
        let float = super::sensitivity::fallback(model, &plan.nodes, calib, target, &trials, report, progress)?;
        chosen.retain(|n| !float.contains(n));
    }
    if options.keep_faster && !chosen.is_empty() {
        let build =
            |nodes: &[usize]| apply(model, plan, nodes, &plan.nodes, params, options, &mut QuantReport::default());
        chosen = super::speed::keep_faster(model, &chosen, &build, calib, report, progress)?;
    }
    let dynamic = if options.keep_faster {
        dynamic_where_faster(model, plan, &chosen, params, options, calib, report, progress)?
    } else {
        vec![]
    };
    chosen.retain(|n| !dynamic.contains(n));
    let now_dynamic: BTreeSet<String> = dynamic.iter().map(|&n| model.graph.nodes[n].label()).collect();
    report.skipped.retain(|s| !now_dynamic.contains(&s.name));
    Ok((chosen, dynamic))
}

/// Activations whose scale is degenerate: not a normal float, or so small that
/// a layer reading them has a bias past int32 at scale s_x·s_w. Such a tensor
/// stays float even where its layer stays float: ONNX Runtime's optimizer
/// quantizes the float weight and bias of a layer behind a DequantizeLinear
/// itself, and the bias saturates (tiny activations measured: cosine 0.01 in
/// ONNX Runtime, 0.99998 in tract and with ORT's optimizations off).
fn degenerate_scales(
    model: &Model,
    params: &BTreeMap<String, (f32, i32)>,
    options: &StaticOptions,
) -> Result<Vec<(String, String)>> {
    let g = &model.graph;
    let index = GraphIndex::new(g);
    let mut found = vec![];
    for (x, &(s_x, _)) in params {
        if !s_x.is_normal() {
            found.push((x.clone(), format!("degenerate scale {s_x:e}: its range is (nearly) empty")));
            continue;
        }
        let mut worst: Option<(f64, String)> = None;
        for &(n, slot) in index.consumers(x) {
            let node = &g.nodes[n];
            let Some(rule) = registry::rule(node) else { continue };
            let (Some(b), true) = (rule.bias.and_then(|b| node.input(b)), slot == 0) else { continue };
            let Some(Ok(bias)) = g.constant(b) else { continue };
            let bias = bias.to_f32()?;
            for (_, w, axis) in weight_inputs(g, node) {
                let Some(Ok(t)) = g.constant(&w) else { continue };
                let Some(q) = int8_weight(&t, axis, options)? else { continue };
                // The layer's largest channel scale: a dead channel's tiny scale is the
                // weight's problem (its bias stays float, see `quantize_bias`), not the activation's.
                let s_w = q.params.scale.iter().copied().fold(0.0f32, f32::max);
                let b_max = bias.iter().fold(0.0f32, |m, v| m.max(v.abs()));
                let ratio = f64::from(b_max) / (f64::from(s_x) * f64::from(s_w));
                if ratio > f64::from(i32::MAX) && worst.as_ref().is_none_or(|(r, _)| ratio > *r) {
                    worst = Some((ratio, node.label()));
                }
            }
        }
        if let Some((ratio, node)) = worst {
            found.push((
                x.clone(),
                format!(
                    "degenerate scale {s_x:.1e}: {node}'s bias would be {ratio:.1e} steps of s_x·s_w, past int32 \
                     (ONNX Runtime quantizes it and saturates)"
                ),
            ));
        }
    }
    Ok(found)
}

/// `apply` with the MatMuls and Gemms of `dynamic` quantized dynamically
/// (activations quantized at run time, from each run's range) instead.
fn with_dynamic(
    prepared: &Model,
    plan: &Plan,
    statics: &[usize],
    dynamic: &[usize],
    params: &BTreeMap<String, (f32, i32)>,
    options: &StaticOptions,
    report: &mut QuantReport,
) -> Result<Model> {
    let weight_nodes: Vec<usize> = plan.nodes.iter().copied().filter(|n| !dynamic.contains(n)).collect();
    let mut m = apply(prepared, plan, statics, &weight_nodes, params, options, report)?;
    if dynamic.is_empty() {
        return Ok(m);
    }
    let outputs: BTreeSet<&String> = dynamic.iter().filter_map(|&n| prepared.graph.nodes[n].outputs.first()).collect();
    let only =
        (0..m.graph.nodes.len()).filter(|&i| m.graph.nodes[i].outputs.first().is_some_and(|o| outputs.contains(o)));
    let dynamic_options = super::DynamicOptions {
        only_nodes: Some(only.collect()),
        reduce_range: options.reduce_range,
        unsigned_weights: options.unsigned_weights,
        ..Default::default()
    };
    super::quantize_dynamic(&mut m, &dynamic_options, report)?;
    Ok(m)
}

/// How much lower than the static model's output SQNR a faster dynamic variant
/// may measure (when the static one is below the target): 0.5 dB is 12 % more
/// noise energy — minilm static 18.1 dB, all MatMuls dynamic 17.7 dB and 1.3×
/// faster, at the same test cosine (0.992) and nearest-neighbour agreement.
const DYNAMIC_SLACK_DB: f64 = 0.5;

/// The MatMuls and Gemms that run faster with activations quantized at run
/// time, where the output's SQNR on the calibration data stays at the target
/// or within DYNAMIC_SLACK_DB of the static model's: every such node
/// first, then only those the accuracy fallback kept float. Empty when neither
/// measures faster than the static model in the runtime that will run it.
#[allow(clippy::too_many_arguments)]
fn dynamic_where_faster(
    prepared: &Model,
    plan: &Plan,
    chosen: &[usize],
    params: &BTreeMap<String, (f32, i32)>,
    options: &StaticOptions,
    calib: &Dataset,
    report: &mut QuantReport,
    progress: &dyn Progress,
) -> Result<Vec<usize>> {
    let g = &prepared.graph;
    let candidates: Vec<usize> =
        plan.nodes.iter().copied().filter(|&n| super::dynamic::runs_dynamic(g, &g.nodes[n])).collect();
    if candidates.is_empty() {
        return Ok(vec![]);
    }
    let kept_float: Vec<usize> = candidates.iter().copied().filter(|n| !chosen.contains(n)).collect();
    let build = |dynamic: &[usize]| {
        let statics: Vec<usize> = chosen.iter().copied().filter(|n| !dynamic.contains(n)).collect();
        with_dynamic(prepared, plan, &statics, dynamic, params, options, &mut QuantReport::default())
    };
    let current = build(&[])?;
    let sqnr_now = super::speed::output_sqnr(prepared, &current, calib)?;
    let floor = options.fallback_sqnr_db.map_or(sqnr_now - DYNAMIC_SLACK_DB, |t| t.min(sqnr_now - DYNAMIC_SLACK_DB));
    let mut sets = vec![("every MatMul and Gemm".to_string(), candidates.clone())];
    if !kept_float.is_empty() && kept_float.len() < candidates.len() {
        sets.push(("the MatMuls and Gemms kept float".to_string(), kept_float));
    }
    let trials: Vec<(String, Model)> =
        sets.iter().map(|(label, set)| Ok((label.clone(), build(set)?))).collect::<Result<_>>()?;
    let Some((k, speedup, sqnr)) =
        super::speed::first_faster_trial(prepared, &current, &trials, floor, calib, progress)?
    else {
        return Ok(vec![]);
    };
    let runtime = crate::runtime::RuntimeInfo::of(crate::runtime::default_backend()?);
    report.notes.push(format!(
        "{} run with activations quantized at run time (dynamic): measured {speedup:.2}× faster than static in \
         {runtime}, output SQNR {sqnr:.1} dB on the calibration data (static: {sqnr_now:.1} dB)",
        sets[k].0
    ));
    Ok(sets[k].1.clone())
}

/// The prepared float model with `nodes` quantized (the QDQ pairs on their
/// tensors and on pass-through outputs of those) and the weights of
/// `weight_nodes` in int8 (biases in int32 where the input is quantized).
fn apply(
    prepared: &Model,
    plan: &Plan,
    nodes: &[usize],
    weight_nodes: &[usize],
    all_params: &BTreeMap<String, (f32, i32)>,
    options: &StaticOptions,
    report: &mut QuantReport,
) -> Result<Model> {
    let mut model = prepared.clone();
    let wanted: BTreeSet<&String> = nodes.iter().filter_map(|n| plan.node_tensors.get(n)).flatten().collect();
    let mut params: BTreeMap<String, (f32, i32)> =
        all_params.iter().filter(|(t, _)| wanted.contains(t)).map(|(t, p)| (t.clone(), *p)).collect();
    for (y, x) in &plan.followers {
        if let Some(&p) = params.get(x) {
            params.insert(y.clone(), p);
        }
    }
    quantize_node_weights(&mut model, weight_nodes, nodes, &params, options, report)?;
    insert_qdq(&mut model, &params, options.activation_type)?;
    for (name, &(s, z)) in &params {
        let scheme = QScheme {
            qtype: options.activation_type,
            symmetric: options.symmetric_activations,
            granularity: Granularity::PerTensor,
            reduce_range: false,
        };
        let p = QParams { scale: ArrayD::from_elem(vec![], s), zero_point: ArrayD::from_elem(vec![], z) };
        report.tensors.push(TensorRecord::new(name, &scheme, &p, 0, &[]));
    }
    crate::transform::remove_unused_constants(&mut model.graph);
    model.graph.sort_nodes()?;
    Ok(model)
}

/// Per-channel int8 weights of `nodes` (and Gather tables), and int32 biases
/// where the input's scale is known. A weight read by a node whose activations
/// are quantized (in `quantized`) goes behind a `DequantizeLinear`, which the
/// runtime fuses into an integer kernel; any other is written in the form the
/// runtime folds at load (a `DequantizeLinear` before a float op would run on
/// every inference — ONNX Runtime even turns DequantizeLinear → MatMul into its
/// MatMulNBits, slower than the float MatMul here).
fn quantize_node_weights(
    model: &mut Model,
    nodes: &[usize],
    quantized: &[usize],
    params: &BTreeMap<String, (f32, i32)>,
    options: &StaticOptions,
    report: &mut QuantReport,
) -> Result<()> {
    let g = &model.graph;
    // (weight, its channel axis, (bias, the input whose scale the bias takes))
    type Work = (String, Option<usize>, Option<(String, String)>);
    let integer: BTreeSet<String> =
        quantized.iter().flat_map(|&n| weight_inputs(g, &g.nodes[n]).into_iter().map(|(_, w, _)| w)).collect();
    let mut work: Vec<Work> = vec![];
    for n in nodes.iter().copied().chain(gathers(g)) {
        let node = &g.nodes[n];
        let Some(rule) = registry::rule(node) else { continue };
        for (_, w, axis) in weight_inputs(g, node) {
            let bias = rule.bias.and_then(|b| node.input(b)).filter(|b| g.constant_site(b).is_some());
            let x = node.input(0).filter(|x| params.contains_key(*x));
            let bias = match (bias, x) {
                (Some(b), Some(x)) => Some((b.to_string(), x.to_string())),
                _ => None,
            };
            work.push((w, axis, bias));
        }
    }
    let mut done = BTreeSet::new();
    for (w, axis, bias) in work {
        if !done.insert(w.clone()) {
            continue;
        }
        let Some(Ok(t)) = model.graph.constant(&w) else { continue };
        let Some(quantized) = int8_weight(&t, axis, options)? else {
            if t.to_f32().is_ok_and(|wf| wf.iter().any(|v| !v.is_finite())) {
                report.skipped.push(Skipped::new(&w, "contains NaN or infinite values".into()));
            }
            continue;
        };
        let Int8Weight { float: wf, q, params: p, scheme, gptq } = quantized;
        let mut record = TensorRecord::new(&w, &scheme, &p, t.byte_size(), wf.shape());
        record.gptq = gptq;
        report.tensors.push(record);
        let format = if integer.contains(&w) { WeightFormat::Qdq } else { WeightFormat::Portable };
        replace_weight(model, &w, &q, &p, scheme.qtype, scheme.granularity, format)?;
        if let (Some((b, x)), Some(_)) = (bias, axis) {
            quantize_bias(model, &b, params[&x].0, &p, report)?;
        }
    }
    Ok(())
}

/// Gather nodes: their tables get int8 weights whatever else is quantized.
pub(super) fn gathers(g: &Graph) -> impl Iterator<Item = usize> + '_ {
    g.nodes.iter().enumerate().filter(|(_, n)| n.op_type == "Gather").map(|(i, _)| i)
}

/// The constant weight inputs of `node` the registry names: (input index, name, channel axis).
pub(super) fn weight_inputs(g: &Graph, node: &Node) -> Vec<(usize, String, Option<usize>)> {
    let Some(rule) = registry::rule(node) else { return vec![] };
    rule.weights
        .iter()
        .filter_map(|slot| {
            let w = node.input(slot.input).filter(|w| g.constant_site(w).is_some())?;
            let rank = g.constant(w).and_then(|t| t.ok()).map_or(0, |t| t.dims.len());
            Some((slot.input, w.to_string(), (slot.channel_axis)(node, rank)))
        })
        .collect()
}

/// A weight in int8 as the static pass stores it.
pub(super) struct Int8Weight {
    pub float: ArrayD<f32>,
    pub q: ArrayD<i32>,
    pub params: QParams,
    pub scheme: QScheme,
    /// Rounded by GPTQ.
    pub gptq: bool,
}

/// The weight type static quantization writes.
fn weight_qtype(options: &StaticOptions) -> QType {
    if options.unsigned_weights {
        QType::UInt8
    } else {
        QType::Int8
    }
}

/// GPTQ on every layer with input statistics, onto the per-output-channel grid
/// `int8_weight` would round to.
fn gptq_rounding(
    model: &Model,
    calib: &Dataset,
    options: &StaticOptions,
    progress: &dyn Progress,
) -> Result<BTreeMap<String, super::gptq::Rounded>> {
    let qtype = weight_qtype(options);
    let grid_for = |layer: &crate::layerwise::Layer| {
        Some(super::gptq::Grid::per_row(&layer.rows, qtype, true, options.reduce_range))
    };
    super::gptq::round_layers(model, &options.exclude, calib, &grid_for, progress)
}

/// Symmetric int8 (uint8 around 128 with `unsigned_weights`) per channel along
/// `axis` (per tensor without one); `None` for
/// tensors left float: not float32, fewer than 16 values, or not finite.
pub(super) fn int8_weight(t: &Tensor, axis: Option<usize>, options: &StaticOptions) -> Result<Option<Int8Weight>> {
    if t.dtype != DataType::FLOAT || t.numel().unwrap_or(0) < 16 {
        return Ok(None);
    }
    let wf = t.to_f32()?;
    if wf.iter().any(|v| !v.is_finite()) {
        return Ok(None);
    }
    let granularity = axis.map_or(Granularity::PerTensor, |axis| Granularity::PerChannel { axis });
    let qtype = weight_qtype(options);
    let scheme = QScheme { qtype, symmetric: true, granularity, reduce_range: options.reduce_range };
    // GPTQ's integers where it rounded this weight per output channel on this type's grid.
    let rounded = options.rounded.as_ref().and_then(|r| r.get(&t.name)).filter(|r| {
        axis.is_some() && r.grid.scale.ncols() == 1 && (r.grid.qmin, r.grid.qmax) == qtype.range(options.reduce_range)
    });
    if let Some(r) = rounded {
        let q = r.layer.restore(&r.q.mapv(|v| v as f32))?.mapv(|v| v as i32);
        if q.shape() == wf.shape() {
            let params = QParams {
                scale: r.grid.scale.column(0).to_owned().into_dyn(),
                zero_point: r.grid.zero.column(0).to_owned().into_dyn(),
            };
            return Ok(Some(Int8Weight { float: wf, q, params, scheme, gptq: true }));
        }
    }
    let (q, params) = scheme.quantize_weight(&wf)?;
    Ok(Some(Int8Weight { float: wf, q, params, scheme, gptq: false }))
}

/// Bias as int32 with scale s_x · s_w per output channel, zero point 0.
fn quantize_bias(
    model: &mut Model,
    name: &str,
    input_scale: f32,
    weight: &QParams,
    report: &mut QuantReport,
) -> Result<()> {
    let Some(Ok(t)) = model.graph.constant(name) else { return Ok(()) };
    let b = t.to_f32()?;
    if b.ndim() != 1 || b.len() != weight.scale.len() {
        return Ok(());
    }
    let scale: ArrayD<f32> = weight.scale.mapv(|s| s * input_scale);
    let q: Vec<i64> =
        b.iter().zip(scale.iter()).map(|(&v, &s)| (v as f64 / s as f64).round_ties_even() as i64).collect();
    if q.iter().any(|v| i32::try_from(*v).is_err()) || scale.iter().any(|s| !s.is_normal()) {
        report.skipped.push(Skipped::new(name, "bias does not fit int32 at scale s_x·s_w".into()));
        return Ok(());
    }
    let qb = ArrayD::from_shape_vec(vec![q.len()], q.iter().map(|&v| v as i32).collect()).expect("1-d");
    let p = QParams { scale, zero_point: ArrayD::zeros(vec![q.len()]) };
    let qt = int_tensor(&format!("{name}_quantized"), &qb, QType::Int32);
    replace_with_dequantize(model, name, qt, &p, QType::Int32, Granularity::PerChannel { axis: 0 })?;
    let scheme = QScheme {
        qtype: QType::Int32,
        symmetric: true,
        granularity: Granularity::PerChannel { axis: 0 },
        reduce_range: false,
    };
    report.tensors.push(TensorRecord::new(name, &scheme, &p, t.byte_size(), b.shape()));
    Ok(())
}

/// A Q→DQ pair after each tensor with parameters; its consumers read the DQ output.
fn insert_qdq(model: &mut Model, params: &BTreeMap<String, (f32, i32)>, qtype: QType) -> Result<()> {
    let g = &mut model.graph;
    let mut added = vec![];
    for (t, &(s, z)) in params {
        let (sname, zname) = (format!("{t}_scale"), format!("{t}_zero_point"));
        let (qname, dqname) = (format!("{t}_quantized"), format!("{t}_dequantized"));
        g.initializers.push(Tensor::scalar(&sname, s));
        g.initializers.push(int_tensor(&zname, &ArrayD::from_elem(vec![], z), qtype));
        for node in g.nodes.iter_mut() {
            for i in node.inputs.iter_mut().filter(|i| *i == t) {
                *i = dqname.clone();
            }
        }
        let node = |op: &str, input: &str, output: &str| Node {
            name: format!("{output}_{op}"),
            op_type: op.into(),
            inputs: vec![input.into(), sname.clone(), zname.clone()],
            outputs: vec![output.into()],
            ..Default::default()
        };
        added.push(node("QuantizeLinear", t, &qname));
        added.push(node("DequantizeLinear", &qname, &dqname));
    }
    g.nodes.extend(added);
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::data::{Array, Dataset};
    use crate::eval::Silent;
    use crate::ir::testing::{int, ints, model, node, tensor, wavy};
    use crate::ir::{GraphIndex, Model};
    use crate::quant::{quantize, QuantConfig, QuantMode};
    use ndarray::{ArrayD, IxDyn};

    /// Conv → Relu → MaxPool → Flatten → Gemm → Softmax, as small classifiers are.
    fn classifier() -> Model {
        let inits = vec![
            tensor("w", &[4, 3, 3, 3], wavy),
            tensor("b", &[4], wavy),
            tensor("fc", &[5, 16], wavy),
            tensor("fc.b", &[5], wavy),
        ];
        let nodes = vec![
            node("Conv", &["x", "w", "b"], "c", &[("pads", ints(&[1, 1, 1, 1]))]),
            node("Relu", &["c"], "r", &[]),
            node("MaxPool", &["r"], "p", &[("kernel_shape", ints(&[2, 2])), ("strides", ints(&[2, 2]))]),
            node("Flatten", &["p"], "f", &[("axis", int(1))]),
            node("Gemm", &["f", "fc", "fc.b"], "logits", &[("transB", int(1))]),
            node("Softmax", &["logits"], "y", &[("axis", int(1))]),
        ];
        model(nodes, inits, &[1, 3, 4, 4], &["y"], 13)
    }

    fn calibration() -> Dataset {
        let x = ArrayD::from_shape_vec(IxDyn(&[8, 3, 4, 4]), (0..384).map(|i| wavy(i * 3) * 2.0).collect()).unwrap();
        Dataset::from_arrays("calibration", [("x".to_string(), Array::F32(x))].into())
    }

    /// The op reading `tensor` (its only consumer).
    fn reader<'a>(m: &'a Model, index: &GraphIndex, tensor: &str) -> &'a str {
        let [(c, _)] = index.consumers(tensor) else { panic!("'{tensor}' has one reader") };
        &m.graph.nodes[*c].op_type
    }

    /// `auto` keeps min-max or percentile ranges, whichever's all-int8 model is
    /// closer to the original; it records the choice, and asking for that method
    /// or replaying the record gives the same model (the other method does not).
    #[test]
    fn auto_ranges_are_one_of_the_two_and_replay() {
        use crate::ir::fingerprint;
        use crate::quant::calibrate::Method;
        // The 90th percentile: with a few hundred values per tensor, 99.999 would clip nothing.
        let auto = QuantConfig { mode: QuantMode::Static, target_sqnr: 0.0, percentile: 90.0, ..Default::default() };
        let run = |config: &QuantConfig| {
            let mut m = classifier();
            let report = quantize(&mut m, config, Some(&calibration()), &Silent).unwrap();
            (fingerprint(&m), report)
        };
        let (model, report) = run(&auto);
        let chosen = report.decided.as_ref().and_then(|d| d.ranges).expect("auto records its choice");
        assert!(report.notes.iter().any(|n| n.starts_with("activation ranges:")), "{:?}", report.notes);
        let other = if chosen == Method::MinMax { Method::Percentile } else { Method::MinMax };
        assert_eq!(run(&QuantConfig { method: chosen, ..auto.clone() }).0, model);
        assert_ne!(run(&QuantConfig { method: other, ..auto.clone() }).0, model, "the two differ here");
        assert_eq!(run(&QuantConfig { decided: report.decided.clone(), ..auto }).0, model);
    }

    /// A MatMul's output is quantized where a quantized op (Add) reads it, and left float where
    /// a float one (Softmax) does: ONNX Runtime runs DQ → MatMul without Q as MatMulIntegerToFloat.
    #[test]
    fn matmul_outputs_are_quantized_only_for_quantized_readers() {
        let inits = vec![tensor("w1", &[8, 8], wavy), tensor("bias", &[8], wavy), tensor("w2", &[8, 4], wavy)];
        let nodes = vec![
            node("MatMul", &["x", "w1"], "a", &[]),
            node("Add", &["a", "bias"], "b", &[]),
            node("MatMul", &["b", "w2"], "l", &[]),
            node("Softmax", &["l"], "y", &[("axis", int(1))]),
        ];
        let mut m = model(nodes, inits, &[1, 8], &["y"], 13);
        let x = ArrayD::from_shape_vec(IxDyn(&[8, 8]), (0..64).map(|i| wavy(i * 5) * 3.0).collect()).unwrap();
        let calib = Dataset::from_arrays("calibration", [("x".to_string(), Array::F32(x))].into());
        let config = QuantConfig { mode: QuantMode::Static, target_sqnr: 0.0, ..Default::default() };
        quantize(&mut m, &config, Some(&calib), &Silent).unwrap();
        let index = GraphIndex::new(&m.graph);
        assert_eq!(reader(&m, &index, "a"), "QuantizeLinear", "the Add reads the first MatMul's output quantized");
        assert_eq!(reader(&m, &index, "l"), "Softmax", "the second MatMul writes float");
        let second = m.graph.nodes.iter().find(|n| n.op_type == "MatMul" && n.outputs[0] == "l").unwrap();
        let producer = |t: &str| index.producer(t).map(|p| m.graph.nodes[p].op_type.as_str());
        assert!(second.inputs.iter().all(|i| producer(i) == Some("DequantizeLinear")), "its inputs are int8");
    }

    #[test]
    fn qdq_goes_where_runtimes_fuse_it() {
        let mut m = classifier();
        let config = QuantConfig { mode: QuantMode::Static, target_sqnr: 0.0, ..Default::default() };
        quantize(&mut m, &config, Some(&calibration()), &Silent).unwrap();
        let g = &m.graph;
        let index = GraphIndex::new(g);
        let producer = |t: &str| index.producer(t).map(|p| g.nodes[p].op_type.as_str());
        let count = |op: &str| g.nodes.iter().filter(|n| n.op_type == op).count();
        // The input, the activations after Relu and MaxPool, Flatten's output and the
        // logits: each quantized once.
        assert_eq!(reader(&m, &index, "x"), "QuantizeLinear");
        // The Relu is fused into the Conv: the Conv writes straight into it.
        assert_eq!(reader(&m, &index, "c"), "Relu");
        let conv = g.nodes.iter().find(|n| n.op_type == "Conv").unwrap();
        for input in &conv.inputs {
            assert_eq!(producer(input), Some("DequantizeLinear"), "Conv input '{input}' comes dequantized");
        }
        // MaxPool moves values: its output keeps its input's scale.
        let pool = g.nodes.iter().find(|n| n.op_type == "MaxPool").unwrap();
        let dq_in = &g.nodes[index.producer(&pool.inputs[0]).unwrap()];
        let q_out = &g.nodes[index.consumers(&pool.outputs[0])[0].0];
        assert_eq!(q_out.op_type, "QuantizeLinear");
        let value = |name: &str| g.constant(name).unwrap().unwrap().bytes().unwrap().to_vec();
        assert_eq!(value(&dq_in.inputs[1]), value(&q_out.inputs[1]), "one scale through the MaxPool");
        assert_eq!(value(&dq_in.inputs[2]), value(&q_out.inputs[2]), "one zero point through the MaxPool");
        // Softmax stays float: it reads dequantized logits and its output is the model's.
        let softmax = g.nodes.iter().find(|n| n.op_type == "Softmax").unwrap();
        assert_eq!(producer(&softmax.inputs[0]), Some("DequantizeLinear"));
        assert_eq!(softmax.outputs[0], "y");
        // Weights: per channel int8 with an int32 bias.
        let bias = g.constant(&g.nodes[index.producer(&conv.inputs[2]).unwrap()].inputs[0]).unwrap().unwrap();
        assert_eq!(bias.dtype, crate::ir::DataType::INT32);
        assert_eq!(count("QuantizeLinear"), 5, "x, relu, pool, flatten, logits");
    }
    /// uint8 weights sit around zero point 128 with the int8 grid's 127 steps a
    /// side: the same values, another type (ONNX Runtime's u8×u8 kernels).
    #[test]
    fn unsigned_weights_are_int8_shifted_by_128() {
        let weight = |unsigned: bool| {
            let mut m = classifier();
            let config = QuantConfig {
                mode: QuantMode::Static,
                target_sqnr: 0.0,
                unsigned_weights: Some(unsigned),
                ..Default::default()
            };
            quantize(&mut m, &config, Some(&calibration()), &Silent).unwrap();
            let index = GraphIndex::new(&m.graph);
            let conv = m.graph.nodes.iter().find(|n| n.op_type == "Conv").unwrap();
            let dq = &m.graph.nodes[index.producer(&conv.inputs[1]).unwrap()];
            let tensor = |slot: usize| m.graph.constant(&dq.inputs[slot]).unwrap().unwrap();
            let (q, zp) = (tensor(0), tensor(2));
            assert_eq!(q.dtype, zp.dtype);
            let values = |t: &crate::ir::Tensor| -> Vec<i32> {
                match t.dtype {
                    crate::ir::DataType::INT8 => t.to_array::<i8>().unwrap().iter().map(|&v| v as i32).collect(),
                    crate::ir::DataType::UINT8 => t.to_array::<u8>().unwrap().iter().map(|&v| v as i32).collect(),
                    other => panic!("weight of type {other:?}"),
                }
            };
            (q.dtype, values(&q), values(&zp))
        };
        let (signed_type, signed, signed_zp) = weight(false);
        let (unsigned_type, unsigned, unsigned_zp) = weight(true);
        assert_eq!((signed_type, unsigned_type), (crate::ir::DataType::INT8, crate::ir::DataType::UINT8));
        assert!(signed_zp.iter().all(|&z| z == 0) && unsigned_zp.iter().all(|&z| z == 128));
        assert!(signed.iter().any(|&v| v.abs() == 127), "the grid is used to its end");
        assert_eq!(unsigned, signed.iter().map(|v| v + 128).collect::<Vec<_>>());
    }
}
