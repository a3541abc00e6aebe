//! Static quantization in QDQ form: activation ranges calibrated on real data,
//! `QuantizeLinear → DequantizeLinear` pairs inserted on the tensors around
//! every op the registry quantizes, weights per-channel int8, biases int32
//! with scale s_x · s_w. Runtimes fuse the pattern into integer kernels.

mod calibration;
mod choice;
mod switched;
#[cfg(test)]
mod tests;
mod write;

use crate::data::Dataset;
use crate::ir::{ops, DataType, Graph, GraphIndex, Model, Node, Tensor};
use crate::measure::Progress;
use crate::quant::calibrate::{calibrator, Calibrator, Method};
use crate::quant::pack::int_tensor;
use crate::quant::registry::{self, Activations};
use crate::quant::report::{QuantReport, Skipped, TensorRecord};
use crate::quant::scheme::{params_for_range, Granularity, QParams, QScheme, QType};
use crate::quant::weights::{replace_weight, replace_with_dequantize, WeightFormat};
use crate::runtime::{feed_inputs, Session, SessionOptions};
use crate::Result;
use calibration::*;
use choice::*;
use ndarray::ArrayD;
use std::collections::{BTreeMap, BTreeSet};
use write::*;
pub(in crate::quant) use write::{gathers, int8_weight, weight_inputs};

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
    /// The result runs in LiteRT (a `.tflite` output): those trials are timed there, not in the
    /// process's ONNX runtime, and the fallback's choice is checked there.
    pub in_litert: bool,
    /// Take each Conv/Gemm's mean output drift on the calibration data out of its
    /// bias (kept when the output SQNR on held-out calibration rows improves; see
    /// `bias_correction.rs`). Off by default: measured, it raises the output SQNR
    /// but can lower a task metric (ppocr_rec_v4 with the fallback: 82.8 → 79.7 %
    /// exact lines), while without the fallback it recovers it (66.4 → 83.6 %).
    pub bias_correction: bool,
    /// SmoothQuant's α: activation outliers of MatMuls moved into their weights
    /// first (see `smooth.rs`); `None`: off.
    pub smooth: Option<crate::quant::smooth::Alpha>,
    /// Round the weights of Conv/Gemm/MatMul layers by GPTQ on the calibration
    /// data (after SmoothQuant, on the grid round-to-nearest would use) instead of
    /// to nearest; see `gptq.rs`.
    pub gptq: bool,
    /// The weights GPTQ rounded, by name (filled by the pass when `gptq` is on).
    pub rounded: Option<std::sync::Arc<BTreeMap<String, crate::quant::gptq::Rounded>>>,
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
            percentile: crate::quant::calibrate::DEFAULT_PERCENTILE,
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
            in_litert: false,
            bias_correction: false,
            smooth: None,
            gptq: false,
            rounded: None,
            decided: None,
        }
    }
}

/// Which tensors get QDQ, and which share another's parameters.
pub(in crate::quant) struct Plan {
    pub nodes: Vec<usize>,
    /// The activation tensors each quantized node reads or writes.
    pub node_tensors: BTreeMap<usize, Vec<String>>,
    /// Tensors calibrated on their own.
    pub calibrated: BTreeSet<String>,
    /// Pass-through outputs and the tensor whose parameters they reuse.
    pub followers: Vec<(String, String)>,
    /// The weights' int8 forms, shared by every model the pass builds.
    pub weights: WeightCache,
}

pub(in crate::quant) fn plan(model: &Model, options: &StaticOptions) -> Result<Plan> {
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
        if rule.float_when.is_some_and(|stays_float| stays_float(g, &index, node)) {
            continue;
        }
        nodes.push(n);
        let mut mine = vec![];
        let inputs: Vec<usize> =
            if rule.every_input { (0..node.inputs.len()).collect() } else { rule.activation_inputs.to_vec() };
        for i in inputs {
            if let Some(t) = node.input(i).filter(|t| !is_const(t)) {
                mine.push(t.to_string());
            }
        }
        if let Some(y) = node.outputs.first().filter(|_| rule.output == registry::Output::Quantized) {
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
    // Outputs their op's entry keeps float stay float, whoever reads them.
    let float_output = |p: usize| registry::rule(&g.nodes[p]).is_some_and(|r| r.output == registry::Output::Float);
    calibrated.retain(|t| index.producer(t).is_none_or(|p| !float_output(p)));
    // A graph output no node reads gets no Q/DQ pair in ONNX: the pair's value would be read by
    // no one (the output stays the float op's), and it keeps ONNX Runtime from fusing the last
    // Gemm or MatMul into its integer kernel with a float output (digits_cnn: its last Gemm ran
    // float, every weight dequantized on every run). LiteRT's converter writes the pair's scale
    // as an int8 last layer's output: there it stays.
    let unread_output = |t: &str| g.outputs.iter().any(|o| o.name == t) && index.consumers(t).is_empty();
    if !options.in_litert {
        calibrated.retain(|t| !unread_output(t));
    }
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
            // A pass-through op's unread graph output, as above.
            if quantized.contains(x) && !quantized.contains(y) && (options.in_litert || !unread_output(y)) {
                followers.push((y.clone(), x.to_string()));
                quantized.insert(y.clone());
            }
        }
    }
    for tensors in node_tensors.values_mut() {
        tensors.retain(|t| calibrated.contains(t));
    }
    Ok(Plan { nodes, node_tensors, calibrated, followers, weights: WeightCache::default() })
}

/// The output of a Relu or Clip that alone consumes `y`, if there is one.
pub(in crate::quant) fn fused_activation_output(
    model: &Model,
    index: &GraphIndex,
    y: &str,
    options: &StaticOptions,
) -> Option<String> {
    let g = &model.graph;
    let [(c, _)] = index.consumers(y) else { return None };
    let consumer = &g.nodes[*c];
    let fusable = ops::is(registry::FUSED_ACTIVATIONS, &consumer.op_type) && !consumer.is_any_of(&options.exclude);
    (fusable && g.outputs.iter().all(|o| o.name != y)).then(|| consumer.outputs[0].clone())
}

/// Static quantization: Q/DQ pairs on calibrated activations and quantized weights, the fallback and speed trials as `options` say.
pub fn quantize_static(
    model: &mut Model,
    calib: &Dataset,
    options: &StaticOptions,
    report: &mut QuantReport,
    progress: &dyn Progress,
) -> Result<()> {
    progress.start(1, "folds");
    let ranks = crate::analysis::rank_lookup(model);
    // 16-bit Q/DQ arrived in opset 21; per-channel Q/DQ in 13.
    let opset = if options.activation_type.bits() > 8 { 21 } else { 13 };
    crate::transform::upgrade_opset(model, opset, &|n| ranks.get(n).copied())?;
    crate::transform::fold_batchnorm(model)?;
    // A constant per-channel Mul/Add right after a Conv (PP-LCNet's "learnable affine blocks")
    // stays float between int8 kernels with a Q/DQ boundary of its own: folded into the Conv,
    // ppocr_rec_v4's default output ran 1.66× fp32 instead of 1.31×, 18.2 dB instead of 13.5.
    let affines = crate::transform::fold_affine(model, true, false)?;
    if affines > 0 {
        report.notes.push(format!(
            "{affines} per-channel Mul/Add after a Conv folded into its weights and bias (the same up to float rounding)"
        ));
    }
    // A hard-swish written out as x · clip(x + 3, 0, 6) / 6 stays float between its convs'
    // int8 kernels, four passes over the activation: on ppocr_rec_v4 those float ops took 47 %
    // of the int8 model's time. One HardSwish (opset 14) computes the same up to float rounding.
    let hardswishes = crate::transform::fuse_hardswish(model)?;
    if hardswishes > 0 {
        report.notes.push(format!(
            "{hardswishes} hard-swishes written out as x·clip(x+3, 0, 6)/6 computed as one HardSwish each (the same \
             up to float rounding; opset 14)"
        ));
    }
    progress.finish();
    // SmoothQuant's observations ride on calibration's run where they can (see
    // `Observed::rides_along`); otherwise it runs before, as its own pass.
    let mut riding = None;
    if let Some(alpha) = options.smooth {
        match crate::quant::smooth::Observed::new(model, alpha) {
            Some(observed) if !options.gptq && observed.rides_along(calibration_rows(model, calib, options)?) => {
                riding = Some((alpha, observed));
            }
            _ => {
                progress.start(1, "SmoothQuant");
                let smoothed = crate::quant::smooth::smooth(model, calib, alpha, options.reduce_range)?;
                progress.finish();
                note_smoothing(report, alpha, smoothed);
            }
        }
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
    let mut plan = plan(model, options)?;
    let mut calibrated;
    if let Some((alpha, mut observed)) = riding {
        let served;
        (calibrated, served) = calibrate_with(model, calib, &plan.calibrated, options, Some(&mut observed), progress)?;
        progress.start(1, "SmoothQuant");
        let smoothed = match served {
            true => crate::quant::smooth::smooth_observed(model, observed, alpha, options.reduce_range)?,
            // Recalled from the memo, or its run failed: SmoothQuant's own pass.
            false => crate::quant::smooth::smooth(model, calib, alpha, options.reduce_range)?,
        };
        progress.finish();
        // Planned again: smoothing adds nodes and sorts them. A smoothed model is calibrated again.
        plan = self::plan(model, options)?;
        if !smoothed.is_empty() {
            calibrated = calibrate(model, calib, &plan.calibrated, options, progress)?;
        }
        note_smoothing(report, alpha, smoothed);
    } else {
        calibrated = calibrate(model, calib, &plan.calibrated, options, progress)?;
    }
    let float_model = options.bias_correction.then(|| model.clone());
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
        progress.start(1, "bias correction");
        let corrected = crate::quant::bias_correction::correct_biases(&float, model, calib, report)?;
        progress.finish();
        if let Some((before, after)) = corrected {
            report.notes.push(format!(
                "bias correction: {} layers' biases corrected, output SQNR on the calibration data {before:.1} → {after:.1} dB",
                report.bias_correction.len()
            ));
        }
    }
    Ok(())
}

/// The report's note and record of what SmoothQuant smoothed.
fn note_smoothing(report: &mut QuantReport, alpha: crate::quant::smooth::Alpha, smoothed: Vec<crate::quant::Smoothed>) {
    if !smoothed.is_empty() {
        let alphas: BTreeSet<String> = smoothed.iter().map(|s| s.alpha.to_string()).collect();
        report.notes.push(format!(
            "SmoothQuant (α {alpha}): the activations of {} MatMul groups divided per channel, their weights multiplied{}",
            smoothed.len(),
            if alpha == crate::quant::smooth::Alpha::Auto {
                format!(" (α chosen per group: {})", alphas.into_iter().collect::<Vec<_>>().join(", "))
            } else {
                String::new()
            }
        ));
    }
    report.smoothing = smoothed;
}

/// Each activation's scale and zero point, by tensor.
type ActivationParams = BTreeMap<String, (f32, i32)>;
